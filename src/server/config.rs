//! What a server is configured with: its identity, its allow-list, its limits and
//! timeouts (with their defaults), and the trigger that makes open sessions check
//! their key again.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::penalty::PenaltyConfig;
use crate::openssh::authorized_keys::AuthorizedKeys;
use crate::openssh::pattern::AddressPatterns;

use crate::wire::{
    LocalIdentity, ProtocolVersion, RekeyPolicy, ResponderSettings, ServerParams, Suite,
    DEFAULT_REQUEST_LIMIT,
};

/// Default cap on open connections. Each costs a file descriptor and a few KiB.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
/// Default cap on handshakes in progress (sshd's `MaxStartups`). A silent peer costs
/// only a file descriptor and a task until the handshake deadline or its eviction,
/// so the cap is set to ride out a thousand of them; per-source caps and penalties
/// keep one source from using it all.
pub const DEFAULT_MAX_HANDSHAKES: usize = 2048;
/// Default time between two checks of authorized_keys for a change, with
/// [`ServerConfig::revoke_live`].
pub const DEFAULT_REVOKE_POLL: Duration = Duration::from_secs(1);
/// The ERROR sent to a session whose key was removed from authorized_keys.
pub const KEY_REVOKED: &str = "key revoked";
/// The start of the ERROR (after `permission denied: `) refusing a session whose key
/// has [`ServerConfig::max_sessions_per_key`] sessions open.
pub const TOO_MANY_SESSIONS: &str = "too many sessions for this key";
/// The start of the ERROR (after `permission denied: `) ending a session at
/// [`ServerConfig::max_session_time`].
pub const SESSION_TIME_LIMIT: &str = "session time limit reached";
/// Default time a client has to complete the handshake.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time an established session may sit without sending a request.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// How long a stopping server waits for requests in flight.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// Default budget for request and reply bodies in flight, server-wide: 64 MiB. It
/// holds 13 of the worst requests at once (1 MiB that grows to 3 MiB when
/// uppercased, 4.6 MiB with their buffers) or thousands of ordinary ones, and with
/// 4,096 sessions' own buffers still fits a 256 MiB VM or container.
pub const DEFAULT_MEMORY_BUDGET: u64 = 64 << 20;
/// Default kernel buffer of each accepted connection, each way: see
/// [`ServerConfig::socket_buffer`]. Linux makes it 128 KiB, the initial size of its
/// own tuning (`tcp_rmem`'s default), which then grows a buffer its reader keeps up
/// with to 32 MiB; with the cap, 1,000 sessions that never read hold 122 MiB of the
/// server's kernel memory instead of 753 MiB (496 MiB with a 256 KiB cap). The
/// cost is one session's bulk rate: on loopback, 1 MiB requests 4 in flight moved
/// about 650 to 700 MB/s with this cap (docs/BENCHMARKS.md, session 11), against
/// 1,250 with the kernel's tuning (session 10, when the cap gave 500, 128 KiB 600 and
/// 256 KiB 720), as the session reads a request and writes its reply in turn and
/// each refill of a small window costs a wake-up; and over a 10 ms path it allows
/// about 10 MB/s: raise it for bulk transfers or long paths.
pub const DEFAULT_SOCKET_BUFFER: usize = 64 << 10;
/// Default time a session may hold memory of the budget without moving a byte, while
/// other sessions wait for memory, before it is closed: a client that sends and never
/// reads gives its memory back to the others this long after they start waiting.
pub const DEFAULT_MEMORY_STALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Default cap on sessions open with one client key: a quarter of the connections,
/// so one key (leaked, or a runaway script) cannot take every slot.
pub const DEFAULT_MAX_SESSIONS_PER_KEY: usize = DEFAULT_MAX_CONNECTIONS / 4;

/// Where the server's allow-list comes from.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum AllowList {
    /// An authorized_keys file, re-read whenever it changes so edits apply to the
    /// next connection (and, with [`ServerConfig::revoke_live`], to open sessions).
    File(PathBuf),
    /// Keys held in memory by an embedder that keeps its allow-list elsewhere; they
    /// never change while the server runs.
    Keys(Arc<AuthorizedKeys>),
}

/// Everything a server needs to run. Start from [`ServerConfig::new`] (the default
/// limits) and change the fields you need; [`Server::new`](super::Server::new)
/// checks them with [`ServerConfig::validate`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServerConfig {
    /// The host identity with its Noise key derived once, shared by every connection.
    pub host: Arc<LocalIdentity>,
    /// The allow-list of client keys.
    pub allow_list: AllowList,
    /// Largest REQUEST body accepted; one byte more gets an ERROR and the connection
    /// ends. At least [`MIN_REQUEST_LIMIT`].
    pub max_request: u32,
    /// Connections open at once; past it, new connections are closed straight away.
    /// At least 1.
    pub max_connections: usize,
    /// Handshakes in progress at once; past it, a new connection evicts an
    /// unfinished handshake (the oldest still waiting for message 1, else the
    /// oldest) instead of being refused. At least 1.
    pub max_handshakes: usize,
    /// Per-source limits: handshakes in progress, and refusals after failures.
    pub penalties: PenaltyConfig,
    /// End open sessions whose key leaves authorized_keys, checking the file every
    /// `revoke_poll`. Without it, only a [`ReloadTrigger`] pull does.
    pub revoke_live: bool,
    /// How often `revoke_live` looks at the file. Not zero.
    pub revoke_poll: Duration,
    /// Total time allowed for the handshake, however the peer paces its bytes. Not zero.
    pub handshake_timeout: Duration,
    /// Time an established session may wait for its next request. Not zero.
    pub idle_timeout: Duration,
    /// On shutdown, how long requests in flight get to finish and clients get to
    /// take their replies and close.
    pub shutdown_grace: Duration,
    /// sshd's `StrictModes` for the allow-list file: refuse it (deny every client)
    /// while it, or a directory above it, can be changed by anyone but root and the
    /// server's user, since they could then let themselves in. On by default; turn
    /// it off only for a setup where that is intended.
    pub strict_modes: bool,
    /// Bytes of request and reply bodies in flight at once, server-wide; when it is
    /// spent, sessions wait before reading another request body. At least one
    /// largest request with its largest reply (see [`ConfigError::BudgetTooSmall`]).
    pub memory_budget: u64,
    /// How long a session may hold memory of the budget without moving a byte while
    /// others wait for memory, before it is closed. Not zero.
    pub memory_stall_timeout: Duration,
    /// Bytes of kernel buffer for each accepted connection, each way (`SO_RCVBUF`,
    /// `SO_SNDBUF`; Linux doubles the figure for its bookkeeping): what a client
    /// that sends and never reads can make the kernel hold for it, outside the
    /// memory budget, and the TCP window a session gets (so one session's rate is
    /// at most about this per round trip). 0 leaves the buffers to the kernel's
    /// tuning, which grows them up to `net.ipv4.tcp_rmem`'s and `tcp_wmem`'s
    /// maximum (often 6 to 32 MiB, and 4 MiB).
    pub socket_buffer: usize,
    /// Sessions open at once with one client key; past it, a new session gets
    /// `permission denied: too many sessions for this key`. 0 for no limit.
    pub max_sessions_per_key: usize,
    /// The longest a session may last, however busy; `None` for no limit. At the
    /// end the request in progress is answered, then the session is closed with
    /// `permission denied: session time limit reached`.
    pub max_session_time: Option<Duration>,
    /// The load balancers in front of the server (`serve --proxy-protocol`): a
    /// connection from one of these addresses must open with a PROXY protocol
    /// header (v1 or v2, see [`proxy_protocol`](super::proxy_protocol)) within
    /// `handshake_timeout`, else it is closed before any cryptography; the client
    /// address it names then stands for the connection's peer everywhere (`from=`,
    /// per-source caps and penalties, the log). A v2 LOCAL header (a health check)
    /// is closed at once and counts as nothing against anyone. Connections from
    /// other addresses are served as they are, so a header from them is a failed
    /// handshake. `None`: no proxies.
    pub proxy_protocol: Option<AddressPatterns>,
    /// The cipher suites accepted from protocol v2 clients, the server's preference
    /// first (the order an UNSUPPORTED_SUITE answer lists them in; the client
    /// chooses, so the order matters only to a client whose suite is refused).
    /// Protocol v1 runs ChaChaPoly only, so serving v1 needs
    /// [`Suite::ChaChaPolyBlake2s`] here. Default: [`DEFAULT_SUITES`].
    pub suites: Vec<Suite>,
    /// The protocol versions served; a client of another version is told (v2) or
    /// closed on (v1, which has no way to say why). Default: [`DEFAULT_PROTOCOLS`].
    pub protocols: Vec<ProtocolVersion>,
    /// When the sessions of v2 clients rekey, advertised in message 2 and followed
    /// by both directions (v1 sessions never rekey). Each limit at least 1; the
    /// interval in whole seconds, at least one. Default: [`RekeyPolicy::DEFAULT`].
    pub rekey_policy: RekeyPolicy,
    /// sshd's `TrustedUserCAKeys`: a file of CA public keys whose user certificates
    /// are trusted, beside the `cert-authority` lines of authorized_keys, for the
    /// principals of [`authorized_principals`](Self::authorized_principals), which
    /// it needs. sshd accepts a certificate whose principal is the login user when
    /// no principals file is set; a noise-echo session has no login user, so that
    /// rule would either admit no certificate or, widened to "any principal", every
    /// certificate the CA ever signed for anyone: neither is what a fleet means, so
    /// a principals file is required ([`ConfigError::CaKeysWithoutPrincipals`]).
    /// Unreadable: no certificate is admitted through it. `None`: none trusted.
    pub trusted_user_ca_keys: Option<PathBuf>,
    /// sshd's `AuthorizedPrincipalsFile` for [`trusted_user_ca_keys`](Self::trusted_user_ca_keys):
    /// one principal name per line; a certificate from a trusted CA is admitted when
    /// one of its principals is listed. Only with `trusted_user_ca_keys`
    /// (`cert-authority` lines carry their own `principals=`).
    pub authorized_principals: Option<PathBuf>,
    /// sshd's `RevokedKeys`: a text list of keys and certificates, or an OpenSSH KRL
    /// (`ssh-keygen -k`). A listed key is refused however it is trusted; a listed
    /// certificate (by serial or key id in a KRL, or its key) is refused, and a
    /// listed CA key refuses every certificate it signed. Re-read when it changes;
    /// with [`revoke_live`](Self::revoke_live), open sessions it now revokes are
    /// ended. A file that is missing or cannot be read or parsed refuses every new
    /// client (fail closed, as sshd does) and ends no open session. `None`: nothing
    /// revoked.
    pub revoked_keys: Option<PathBuf>,
}

/// The suites a server accepts by default: both, AES-GCM first. A fixed order, not
/// this CPU's preference: the client chooses among the suites accepted (by its own
/// CPU, which decides its own speed), so the server's order only decides which
/// suite a client is told to retry with, and that answer should be the same from
/// every host of a fleet.
pub const DEFAULT_SUITES: [Suite; 2] = Suite::ALL;
/// The protocol versions served by default: both, so that v1 clients keep working.
pub const DEFAULT_PROTOCOLS: [ProtocolVersion; 2] = ProtocolVersion::ALL;

/// The smallest request limit a server may set: with 0, every request but the empty
/// one would be refused.
pub const MIN_REQUEST_LIMIT: u32 = 1;

/// A [`ServerConfig`] that cannot work, naming the setting and what it must be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A count or size that must be at least `minimum` was below it.
    #[error("{setting} must be at least {minimum} (it is {value})")]
    TooSmall {
        /// The field of [`ServerConfig`] (or of its penalties).
        setting: &'static str,
        /// The smallest value that works.
        minimum: u64,
        /// The value given.
        value: u64,
    },
    /// A timeout or interval that must not be zero was zero.
    #[error("{setting} must not be zero")]
    ZeroDuration {
        /// The field of [`ServerConfig`].
        setting: &'static str,
    },
    /// The memory budget cannot hold one largest request and its largest reply, so
    /// such a request would wait forever.
    #[error(
        "memory_budget of {value} bytes cannot hold one request of max_request ({max_request} bytes) with its largest reply: make it at least {minimum} bytes, or lower max_request"
    )]
    BudgetTooSmall {
        /// The budget given, in bytes.
        value: u64,
        /// The request limit it must hold.
        max_request: u32,
        /// The smallest budget that holds it, in bytes.
        minimum: u64,
    },
    /// `protocols` is empty: nobody could be served.
    #[error("protocols is empty: serve protocol 1, 2 or both")]
    NoProtocol,
    /// Protocol 2 is served but `suites` is empty: every v2 client would be refused.
    #[error(
        "suites is empty but protocol 2 is served: accept at least one suite ({}), or serve protocol 1 only",
        suite_names(&Suite::ALL)
    )]
    NoSuite,
    /// Protocol 1 is served but ChaChaPoly, its only suite, is not accepted.
    #[error(
        "protocol 1 is served but suites leaves out chachapoly, protocol 1's only suite: add chachapoly to suites, or serve protocol 2 only"
    )]
    V1WithoutChaChaPoly,
    /// A suite or protocol listed twice: a mistake in the list, most likely.
    #[error("{setting} lists {value} twice")]
    Duplicate {
        /// The field of [`ServerConfig`].
        setting: &'static str,
        /// The value listed twice.
        value: String,
    },
    /// `trusted_user_ca_keys` without `authorized_principals`: with no login user to
    /// match, nothing would say which of the CA's certificates to admit.
    #[error(
        "trusted_user_ca_keys needs authorized_principals: list the certificate principals to admit from those CAs, one per line (sshd matches the login user when no principals file is set, and a noise-echo session has none)"
    )]
    CaKeysWithoutPrincipals,
    /// `authorized_principals` without `trusted_user_ca_keys`: it would apply to
    /// nothing.
    #[error(
        "authorized_principals applies to the CAs of trusted_user_ca_keys, which is not set: set it too, or use principals=\"...\" on the cert-authority lines of authorized_keys"
    )]
    PrincipalsWithoutCaKeys,
    /// A rekey interval under one second: the protocol carries whole seconds.
    #[error("rekey_policy.max_interval must be at least 1 second, the protocol's unit (it is {value:?})")]
    RekeyIntervalTooShort {
        /// The interval given.
        value: Duration,
    },
}

fn suite_names(suites: &[Suite]) -> String {
    let names: Vec<&str> = suites.iter().map(|suite| suite.short_name()).collect();
    names.join(", ")
}

impl ServerConfig {
    /// A configuration with the default limits and the allow-list in the
    /// authorized_keys file `authorized_keys`.
    pub fn new(host: Arc<LocalIdentity>, authorized_keys: PathBuf) -> Self {
        Self::with_allow_list(host, AllowList::File(authorized_keys))
    }

    /// A configuration with the default limits and the given allow-list.
    pub fn with_allow_list(host: Arc<LocalIdentity>, allow_list: AllowList) -> Self {
        Self {
            host,
            allow_list,
            max_request: DEFAULT_REQUEST_LIMIT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_handshakes: DEFAULT_MAX_HANDSHAKES,
            penalties: PenaltyConfig::default(),
            revoke_live: false,
            revoke_poll: DEFAULT_REVOKE_POLL,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            strict_modes: true,
            memory_budget: DEFAULT_MEMORY_BUDGET,
            memory_stall_timeout: DEFAULT_MEMORY_STALL_TIMEOUT,
            socket_buffer: DEFAULT_SOCKET_BUFFER,
            max_sessions_per_key: DEFAULT_MAX_SESSIONS_PER_KEY,
            max_session_time: None,
            proxy_protocol: None,
            suites: DEFAULT_SUITES.to_vec(),
            protocols: DEFAULT_PROTOCOLS.to_vec(),
            rekey_policy: RekeyPolicy::DEFAULT,
            trusted_user_ca_keys: None,
            authorized_principals: None,
            revoked_keys: None,
        }
    }

    /// Whether `version` is among the protocols served.
    pub fn serves(&self, version: ProtocolVersion) -> bool {
        self.protocols.contains(&version)
    }

    /// What the handshake of every connection negotiates with: the suites (none
    /// when v2 is not served), whether v1 is served, and the parameters message 2
    /// advertises. Built once, when the server starts.
    pub fn responder_settings(&self) -> ResponderSettings {
        let v2 = self.serves(ProtocolVersion::V2);
        ResponderSettings {
            suites: if v2 { self.suites.clone() } else { Vec::new() },
            v1_enabled: self.serves(ProtocolVersion::V1),
            params: ServerParams {
                max_request: self.max_request,
                rekey: self.rekey_policy,
            },
        }
    }

    /// Checks that every limit can work: a server with no connection slots, or a
    /// zero handshake deadline, would refuse everyone while looking healthy.
    ///
    /// # Errors
    /// The first setting that cannot work, as a [`ConfigError`].
    pub fn validate(&self) -> Result<(), ConfigError> {
        let at_least = |setting, minimum: u64, value: u64| {
            if value < minimum {
                Err(ConfigError::TooSmall {
                    setting,
                    minimum,
                    value,
                })
            } else {
                Ok(())
            }
        };
        let not_zero = |setting, value: Duration| {
            if value.is_zero() {
                Err(ConfigError::ZeroDuration { setting })
            } else {
                Ok(())
            }
        };
        at_least(
            "max_request",
            MIN_REQUEST_LIMIT.into(),
            self.max_request.into(),
        )?;
        at_least("max_connections", 1, self.max_connections as u64)?;
        at_least("max_handshakes", 1, self.max_handshakes as u64)?;
        not_zero("handshake_timeout", self.handshake_timeout)?;
        not_zero("idle_timeout", self.idle_timeout)?;
        not_zero("revoke_poll", self.revoke_poll)?;
        not_zero("memory_stall_timeout", self.memory_stall_timeout)?;
        if let Some(limit) = self.max_session_time {
            not_zero("max_session_time", limit)?;
        }
        self.validate_protocols()?;
        match (&self.trusted_user_ca_keys, &self.authorized_principals) {
            (Some(_), None) => return Err(ConfigError::CaKeysWithoutPrincipals),
            (None, Some(_)) => return Err(ConfigError::PrincipalsWithoutCaKeys),
            _ => {}
        }
        let minimum = super::resources::worst_case(self.max_request).next_multiple_of(1024);
        if self.memory_budget < minimum {
            return Err(ConfigError::BudgetTooSmall {
                value: self.memory_budget,
                max_request: self.max_request,
                minimum,
            });
        }
        Ok(())
    }

    /// The protocol settings: something served, suites that can serve it, rekey
    /// limits the protocol can carry.
    fn validate_protocols(&self) -> Result<(), ConfigError> {
        if let Some(value) = first_duplicate(&self.protocols) {
            let setting = "protocols";
            return Err(ConfigError::Duplicate { setting, value });
        }
        if let Some(value) = first_duplicate(&self.suites) {
            let setting = "suites";
            return Err(ConfigError::Duplicate { setting, value });
        }
        if self.protocols.is_empty() {
            return Err(ConfigError::NoProtocol);
        }
        if self.serves(ProtocolVersion::V2) && self.suites.is_empty() {
            return Err(ConfigError::NoSuite);
        }
        if self.serves(ProtocolVersion::V1) && !self.suites.contains(&Suite::ChaChaPolyBlake2s) {
            return Err(ConfigError::V1WithoutChaChaPoly);
        }
        let policy = &self.rekey_policy;
        for (setting, value) in [
            ("rekey_policy.max_messages", policy.max_messages),
            ("rekey_policy.max_bytes", policy.max_bytes),
        ] {
            if value == 0 {
                let (minimum, value) = (1, 0);
                return Err(ConfigError::TooSmall {
                    setting,
                    minimum,
                    value,
                });
            }
        }
        if policy.max_interval < Duration::from_secs(1) {
            let value = policy.max_interval;
            return Err(ConfigError::RekeyIntervalTooShort { value });
        }
        Ok(())
    }
}

/// The first item of `items` that appears twice, shown.
fn first_duplicate<T: PartialEq + std::fmt::Display>(items: &[T]) -> Option<String> {
    let mut seen = Vec::new();
    for item in items {
        if seen.contains(&item) {
            return Some(item.to_string());
        }
        seen.push(item);
    }
    None
}

/// Makes the open sessions of a running server check their key against
/// authorized_keys again, ending those no longer allowed. `serve` pulls it on SIGHUP;
/// tests pull it directly. Clones pull the same trigger.
#[derive(Debug, Clone)]
pub struct ReloadTrigger {
    /// The generation number, bumped on each pull; sessions watch it.
    pub(super) generation: Arc<watch::Sender<u64>>,
}

impl Default for ReloadTrigger {
    fn default() -> Self {
        Self {
            generation: Arc::new(watch::Sender::new(0)),
        }
    }
}

impl ReloadTrigger {
    /// Asks every open session to re-check its key now.
    pub fn trigger(&self) {
        self.generation.send_modify(|generation| *generation += 1);
    }

    pub(super) fn subscribe(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Identity;

    fn config() -> ServerConfig {
        let host = Identity::from_seed(&[7; 32], "host");
        ServerConfig::new(
            Arc::new(LocalIdentity::new(&host)),
            "authorized_keys".into(),
        )
    }

    #[test]
    fn the_defaults_are_valid() {
        assert_eq!(config().validate(), Ok(()));
    }

    #[test]
    fn limits_that_would_refuse_everyone_are_refused_naming_the_setting() {
        let mut zero_connections = config();
        zero_connections.max_connections = 0;
        assert_eq!(
            zero_connections.validate(),
            Err(ConfigError::TooSmall {
                setting: "max_connections",
                minimum: 1,
                value: 0
            })
        );
        let mut zero_handshakes = config();
        zero_handshakes.max_handshakes = 0;
        assert!(matches!(
            zero_handshakes.validate(),
            Err(ConfigError::TooSmall {
                setting: "max_handshakes",
                ..
            })
        ));
        let mut zero_request = config();
        zero_request.max_request = 0;
        assert!(matches!(
            zero_request.validate(),
            Err(ConfigError::TooSmall {
                setting: "max_request",
                ..
            })
        ));
        for (setting, set) in [
            (
                "handshake_timeout",
                (|c: &mut ServerConfig| c.handshake_timeout = Duration::ZERO)
                    as fn(&mut ServerConfig),
            ),
            ("idle_timeout", |c: &mut ServerConfig| {
                c.idle_timeout = Duration::ZERO
            }),
            ("revoke_poll", |c: &mut ServerConfig| {
                c.revoke_poll = Duration::ZERO
            }),
        ] {
            let mut zero = config();
            set(&mut zero);
            assert_eq!(zero.validate(), Err(ConfigError::ZeroDuration { setting }));
            assert_eq!(
                zero.validate().unwrap_err().to_string(),
                format!("{setting} must not be zero")
            );
        }
        let mut small_budget = config();
        small_budget.memory_budget = 4 << 20;
        let error = small_budget.validate().unwrap_err();
        assert_eq!(
            error,
            ConfigError::BudgetTooSmall {
                value: 4 << 20,
                max_request: 1 << 20,
                minimum: super::super::resources::worst_case(1 << 20)
            }
        );
        assert!(error.to_string().contains("lower max_request"), "{error}");
        // Exactly one worst case is enough: that request can always proceed.
        small_budget.memory_budget = super::super::resources::worst_case(1 << 20);
        assert_eq!(small_budget.validate(), Ok(()));
        // No per-source cap (0) is a documented choice, not a mistake.
        let mut no_source_cap = config();
        no_source_cap.penalties.max_handshakes_per_source = 0;
        assert_eq!(no_source_cap.validate(), Ok(()));
    }

    #[test]
    fn the_default_serves_both_versions_and_both_suites() {
        let settings = config().responder_settings();
        assert_eq!(settings.suites, Suite::ALL);
        assert!(settings.serves_v1());
        assert_eq!(settings.versions(), [1, 2]);
        assert_eq!(settings.params.max_request, DEFAULT_REQUEST_LIMIT);
        assert_eq!(settings.params.rekey, RekeyPolicy::DEFAULT);
    }

    #[test]
    fn the_responder_settings_follow_the_protocols_served() {
        let mut v1_only = config();
        v1_only.protocols = vec![ProtocolVersion::V1];
        assert_eq!(v1_only.validate(), Ok(()));
        assert_eq!(v1_only.responder_settings().versions(), [1]);
        let mut v2_only = config();
        v2_only.protocols = vec![ProtocolVersion::V2];
        v2_only.suites = vec![Suite::AesGcmSha256];
        v2_only.max_request = 4096;
        assert_eq!(v2_only.validate(), Ok(()));
        let settings = v2_only.responder_settings();
        assert_eq!(settings.versions(), [2]);
        assert_eq!(settings.suites, [Suite::AesGcmSha256]);
        assert_eq!(settings.params.max_request, 4096);
    }

    #[test]
    fn protocol_settings_that_serve_nobody_are_refused_naming_the_fix() {
        let refused = |adjust: fn(&mut ServerConfig)| {
            let mut config = config();
            adjust(&mut config);
            config.validate().unwrap_err()
        };
        let error = refused(|c| c.protocols.clear());
        assert_eq!(error, ConfigError::NoProtocol);
        assert!(error.to_string().contains("serve protocol 1, 2 or both"));
        let error = refused(|c| c.suites.clear());
        assert_eq!(error, ConfigError::NoSuite);
        assert!(error.to_string().contains("aesgcm, chachapoly"), "{error}");
        let error = refused(|c| c.suites = vec![Suite::AesGcmSha256]);
        assert_eq!(error, ConfigError::V1WithoutChaChaPoly);
        assert!(error.to_string().contains("serve protocol 2 only"));
        let error = refused(|c| c.suites = vec![Suite::AesGcmSha256, Suite::AesGcmSha256]);
        assert_eq!(
            error,
            ConfigError::Duplicate {
                setting: "suites",
                value: Suite::AesGcmSha256.to_string()
            }
        );
        let error = refused(|c| c.protocols = vec![ProtocolVersion::V2, ProtocolVersion::V2]);
        assert_eq!(error.to_string(), "protocols lists 2 twice");
        // A v2-only server needs no ChaChaPoly; a v1-only one needs no v2 suites.
        let mut fine = config();
        fine.protocols = vec![ProtocolVersion::V2];
        fine.suites = vec![Suite::AesGcmSha256];
        assert_eq!(fine.validate(), Ok(()));
    }

    #[test]
    fn rekey_limits_of_zero_are_refused() {
        let mut zero = config();
        zero.rekey_policy.max_messages = 0;
        assert_eq!(
            zero.validate(),
            Err(ConfigError::TooSmall {
                setting: "rekey_policy.max_messages",
                minimum: 1,
                value: 0
            })
        );
        let mut zero = config();
        zero.rekey_policy.max_bytes = 0;
        assert!(matches!(
            zero.validate(),
            Err(ConfigError::TooSmall {
                setting: "rekey_policy.max_bytes",
                ..
            })
        ));
        let mut short = config();
        short.rekey_policy.max_interval = Duration::from_millis(500);
        let error = short.validate().unwrap_err();
        assert!(error.to_string().contains("at least 1 second"), "{error}");
        let mut tiny = config();
        tiny.rekey_policy = RekeyPolicy {
            max_messages: 1,
            max_bytes: 1,
            max_interval: Duration::from_secs(1),
        };
        assert_eq!(tiny.validate(), Ok(()));
    }

    #[test]
    fn debug_shows_no_key_material() {
        let host = Identity::from_seed(&[7; 32], "host");
        let shown = format!("{:?}", config());
        for secret in [hex(&[7; 32]), format!("{:?}", [7u8; 32])] {
            assert!(!shown.contains(&secret), "{shown}");
        }
        assert!(shown.contains("authorized_keys"), "{shown}");
        drop(host);
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|byte| format!("{byte:02x}")).collect()
    }
}
