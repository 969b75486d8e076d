//! The echo client: connects, runs the initiator side of the handshake, checks the
//! server's key against known_hosts BEFORE revealing its own identity (msg 3), and
//! then sends requests and reads replies.
//!
//! Trust on first use works as in SSH: a known key goes ahead silently, an unknown
//! one is accepted only by the user (a prompt), by the caller's explicit policy
//! (`--accept-new-host`) or by a fingerprint the caller already has
//! (`--expect-fingerprint`), and a changed or revoked key is refused whatever the
//! policy says. An embedder can instead pin the server's fingerprint
//! ([`ClientConfig::pinned`]), and no file is read or written.
//!
//! OpenSSH certificates (protocol v2), as ssh uses them:
//! - our own: a user certificate set on the identity
//!   ([`LocalIdentity::with_certificate`]) goes in message 3, so a server that
//!   trusts its CA admits us without our key in its authorized_keys;
//! - the server's: a host certificate from a CA that a `@cert-authority` line of
//!   known_hosts trusts for the name connected to (`[host]:port` off port 22) is
//!   trusted when its principals name the host: no prompt, nothing written, and a
//!   rotated host key under the same CA is not "changed". One that such a CA
//!   signed but that fails a check (expired, another host, a user certificate) is
//!   refused ([`HostKeyError::CertificateInvalid`]), never treated as first use; a
//!   certificate from a CA no line trusts is ignored and the key is checked alone.
//!   `@revoked` lines (for host keys and CA keys) and a revoked-keys file
//!   ([`ClientConfig::revoked_host_keys`], a text list or a KRL) refuse first.
//!   [`Connection::server_certificate`] shows what the server sent.
//!
//! [`decide`] is the decision itself, without I/O; this module runs the handshake
//! ([`connect`] over TCP, [`connect_stream`] over any stream) around it, under a
//! connect timeout and a handshake timeout (as ssh's `ConnectTimeout`) that do not
//! count the time the user spends at the prompt.
//!
//! A server gives a client a bounded time to finish the handshake (10 s by
//! default), and a user comparing fingerprints may take longer. The user's answer is
//! not lost to that: the key is saved as soon as it is accepted, and if the server
//! hung up meanwhile, [`connect`] connects again, once, to a server that is now
//! known.

mod connection;
mod errors;
mod handshake;
mod negotiate;
mod trust;

pub use connection::Connection;
pub use errors::{permission_denied_reason, ClientError, TimeoutStage};
pub use negotiate::Protocol;
pub use trust::{decide, Decision, HostKeyError, Known, UnknownHostPolicy, UnknownReason};

use handshake::{Handshake, Outcome};
use negotiate::Reaction;

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv6Addr};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::io::{AsyncRead, AsyncWrite, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tracing::debug;

use crate::identity::{Fingerprint, PublicKey};
use crate::openssh::certificate::{format_time, Certificate};
use crate::openssh::known_hosts::{self, OtherName};
use crate::openssh::revoked::RevokedKeys;
use crate::wire::{LocalIdentity, Suite, WireError};

/// The port a server listens on when none is given.
pub const DEFAULT_PORT: u16 = 1234;

/// How long [`connect`] waits for the TCP connection by default: ample on any
/// working network, and a black-holed address fails instead of hanging.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the handshake may take by default, not counting the time at the host-key
/// prompt: twice the server's own default deadline, so the server gives up first.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(20);

/// Where to connect: a host name or address, and a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// As the user wrote it (without brackets): it is also the known_hosts name.
    pub host: String,
    /// The TCP port.
    pub port: u16,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl FromStr for Target {
    type Err = String;

    /// Accepts `host`, `host:port`, `[v6]`, `[v6]:port` and a bare IPv6 address.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad =
            || format!("'{text}' is not an address (expected HOST, HOST:PORT or [IPv6]:PORT)");
        let parse_port = |port: &str| port.parse::<u16>().ok().filter(|&port| port != 0);
        let (host, port) = if let Some(rest) = text.strip_prefix('[') {
            let (host, after) = rest.split_once(']').ok_or_else(bad)?;
            let port = match after {
                "" => DEFAULT_PORT,
                _ => after
                    .strip_prefix(':')
                    .and_then(parse_port)
                    .ok_or_else(bad)?,
            };
            (host, port)
        } else if text.parse::<Ipv6Addr>().is_ok() {
            (text, DEFAULT_PORT)
        } else if let Some((host, port)) = text.rsplit_once(':') {
            (host, parse_port(port).ok_or_else(bad)?)
        } else {
            (text, DEFAULT_PORT)
        };
        if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c == ',') {
            return Err(bad());
        }
        Ok(Self {
            host: host.to_owned(),
            port,
        })
    }
}

/// Asks the user about an unknown host key; `true` means trust it. Runs on a
/// blocking thread, so it may read a terminal.
pub type HostKeyPrompt = Box<dyn FnOnce(&UnknownHost) -> io::Result<bool> + Send>;

/// What the user is shown about an unknown server.
#[derive(Debug, Clone)]
pub struct UnknownHost {
    /// The name it will be recorded under, e.g. `[localhost]:1234`.
    pub host_field: String,
    /// The key the server presented.
    pub key: PublicKey,
    /// The known_hosts file, which [`UnknownHost::other_names`] are lines of.
    pub known_hosts: PathBuf,
    /// Lines of known_hosts holding the same key under other names, as ssh lists
    /// them ("This host key is known by the following other names/addresses"): a
    /// user who knows the key under another name can recognise it.
    pub other_names: Vec<OtherName>,
    /// The CA of a host certificate the server sent that no `@cert-authority` line
    /// trusts for this host: ignored, so the key is asked about as if none had come
    /// (the question can say so; the user may be missing a `@cert-authority` line).
    pub ignored_certificate_ca: Option<Fingerprint>,
}

/// How the server's key is trusted.
#[non_exhaustive]
pub enum HostTrust {
    /// Only the key with this fingerprint; no file is read or written.
    Pinned(Fingerprint),
    /// known_hosts, as SSH: a known key goes ahead, a changed or revoked one is
    /// refused, an unknown one follows `unknown` and then `prompt`.
    KnownHosts {
        /// The known_hosts file to check and to add to.
        path: PathBuf,
        /// What to do with an unknown server key when there is no prompt, or before it.
        unknown: UnknownHostPolicy,
        /// Asks the user about an unknown key; `None` when there is no terminal.
        prompt: Option<HostKeyPrompt>,
        /// A revoked-keys file (ssh's `RevokedHostKeys`: a text list or a KRL),
        /// checked before known_hosts; shared, as one file serves every connection.
        revoked: Option<Arc<RevokedKeys>>,
    },
}

impl fmt::Debug for HostTrust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Pinned(fingerprint) => f.debug_tuple("Pinned").field(fingerprint).finish(),
            Self::KnownHosts {
                path,
                unknown,
                prompt,
                revoked,
            } => f
                .debug_struct("KnownHosts")
                .field("path", path)
                .field("unknown", unknown)
                .field("prompt", &prompt.as_ref().map(|_| "<prompt>"))
                .field("revoked", &revoked.as_ref().map(|file| &file.path))
                .finish(),
        }
    }
}

/// How to connect: our identity, the rules for the server's, and how long to wait.
///
/// A user certificate travels with the identity: build it with
/// [`LocalIdentity::with_certificate`], which refuses a certificate of another key.
/// It is sent in handshake message 3 of protocol v2 (only after the server's key is
/// trusted); protocol v1 has no field for it, so a v1 connection sends the key
/// alone.
#[derive(Debug)]
#[non_exhaustive]
pub struct ClientConfig {
    /// Our identity, with its Noise key derived.
    pub identity: LocalIdentity,
    /// How the server's key is trusted.
    pub trust: HostTrust,
    /// How long [`connect`] waits for the TCP connection; `None` waits as long as
    /// the operating system does (minutes, against a black-holed address).
    pub connect_timeout: Option<Duration>,
    /// How long the handshake may take, not counting the time at the prompt; `None`
    /// waits forever for a server that accepted and never answers.
    pub handshake_timeout: Option<Duration>,
    /// The local address [`connect`] connects from (ssh's `-b` / `BindAddress`),
    /// on a machine with several; `None` lets the system choose.
    pub bind_address: Option<IpAddr>,
    /// The protocol version to speak (default [`Protocol::Auto`]: v2, never
    /// falling back to v1 by itself; only v2 carries certificates).
    pub protocol: Protocol,
    /// The v2 cipher suite to offer: `None` chooses [`Suite::preferred`] and, if
    /// the server does not accept it, retries once with one it lists; `Some` forces
    /// that suite (a server that refuses it fails the connection). Ignored in v1.
    pub cipher: Option<Suite>,
}

impl ClientConfig {
    /// Trusts only the server key with `fingerprint`, without any file. To pin a
    /// key and keep known_hosts too, use [`ClientConfig::known_hosts`] with
    /// [`UnknownHostPolicy::ExpectFingerprint`].
    pub fn pinned(identity: LocalIdentity, fingerprint: Fingerprint) -> Self {
        Self::with_trust(identity, HostTrust::Pinned(fingerprint))
    }

    /// Checks the server against the known_hosts file at `path`, refusing unknown
    /// keys (change it with [`ClientConfig::unknown_host`] and [`ClientConfig::prompt`]).
    pub fn known_hosts(identity: LocalIdentity, path: PathBuf) -> Self {
        Self::with_trust(
            identity,
            HostTrust::KnownHosts {
                path,
                unknown: UnknownHostPolicy::Refuse,
                prompt: None,
                revoked: None,
            },
        )
    }

    fn with_trust(identity: LocalIdentity, trust: HostTrust) -> Self {
        Self {
            identity,
            trust,
            connect_timeout: Some(DEFAULT_CONNECT_TIMEOUT),
            handshake_timeout: Some(DEFAULT_HANDSHAKE_TIMEOUT),
            bind_address: None,
            protocol: Protocol::default(),
            cipher: None,
        }
    }

    /// Sets the local address [`connect`] connects from (`None`: the system's
    /// choice). Only the server's addresses of the same family are tried.
    #[must_use]
    pub fn bind_address(mut self, address: Option<IpAddr>) -> Self {
        self.bind_address = address;
        self
    }

    /// Sets the protocol version to speak (default `Protocol::default()`).
    #[must_use]
    pub fn protocol(mut self, protocol: Protocol) -> Self {
        self.protocol = protocol;
        self
    }

    /// Forces the v2 cipher suite (`None`, the default: the CPU's preferred one,
    /// with one automatic retry if the server refuses it).
    #[must_use]
    pub fn cipher(mut self, suite: Option<Suite>) -> Self {
        self.cipher = suite;
        self
    }

    /// Sets how long [`connect`] waits for the TCP connection (default
    /// [`DEFAULT_CONNECT_TIMEOUT`]; `None` for the operating system's own).
    #[must_use]
    pub fn connect_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets how long the handshake may take, not counting the time at the prompt
    /// (default [`DEFAULT_HANDSHAKE_TIMEOUT`]; `None` for no limit).
    #[must_use]
    pub fn handshake_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// Sets the policy for unknown keys (known_hosts trust only; a pin ignores it).
    /// [`UnknownHostPolicy::ExpectFingerprint`] is checked for known hosts too.
    #[must_use]
    pub fn unknown_host(mut self, policy: UnknownHostPolicy) -> Self {
        if let HostTrust::KnownHosts { unknown, .. } = &mut self.trust {
            *unknown = policy;
        }
        self
    }

    /// Sets the revoked-keys file for server keys (known_hosts trust only; a pin
    /// ignores it), as ssh's `RevokedHostKeys`: a host key it lists, or a host
    /// certificate it revokes (by key, CA key, serial or key ID), is refused with
    /// [`HostKeyError::RevokedByFile`] whatever known_hosts says. Load it with
    /// [`RevokedKeys::load`], whose errors name the file.
    #[must_use]
    pub fn revoked_host_keys(mut self, file: Option<Arc<RevokedKeys>>) -> Self {
        if let HostTrust::KnownHosts { revoked, .. } = &mut self.trust {
            *revoked = file;
        }
        self
    }

    /// Sets the prompt for unknown keys (known_hosts trust only; a pin ignores it).
    #[must_use]
    pub fn prompt(mut self, ask: Option<HostKeyPrompt>) -> Self {
        if let HostTrust::KnownHosts { prompt, .. } = &mut self.trust {
            *prompt = ask;
        }
        self
    }
}

/// A certificate in one line, as `connect -v` shows ours and the server's:
/// `key_id "ID" serial N, principals A,B, valid until T`, and the reason when it is
/// not valid at `now` (` (certificate expired on T)`): an expired certificate is
/// still sent, as ssh sends it, and the peer refuses it.
pub fn describe_certificate(certificate: &Certificate, now: SystemTime) -> String {
    let principals = match certificate.principals.is_empty() {
        true => "(none)".to_owned(),
        // The CA's text, from a file or the peer: escaped, so it cannot drive a terminal.
        false => certificate.principals.join(",").escape_debug().to_string(),
    };
    let state = match certificate.check_validity(now) {
        Err(reason) => format!(" ({reason})"),
        Ok(()) => String::new(),
    };
    format!(
        "key_id \"{}\" serial {}, principals {principals}, valid until {}{state}",
        certificate.key_id.escape_debug(),
        certificate.serial,
        format_time(certificate.valid_before)
    )
}

/// Connects to `target` over TCP, then runs [`connect_stream`]'s handshake and
/// trust decision, each under its timeout.
///
/// If the server closed the connection while the user was at the host-key prompt
/// (its handshake deadline is shorter than a careful user), the accepted key is
/// saved and `connect` connects again, once; the server is then known, so nobody is
/// asked twice.
///
/// # Errors
/// [`ClientError::Connect`] if the server cannot be reached,
/// [`ClientError::Timeout`] if it does not answer in time, and those of
/// [`connect_stream`].
pub async fn connect(target: &Target, config: ClientConfig) -> Result<Connection, ClientError> {
    let ClientConfig {
        identity,
        mut trust,
        connect_timeout,
        handshake_timeout,
        bind_address,
        protocol,
        cipher,
    } = config;
    let mut offer = negotiate::first_offer(protocol, cipher);
    let mut accepted_at_prompt = None;
    // Bounded: at most one reconnection after the prompt (the next attempt has no
    // prompt left to wait for) and one retry after an unsupported suite (a retry
    // offer is never retried).
    for _attempt in 0..3 {
        let mut stream = open_tcp(target, connect_timeout, bind_address).await?;
        let steps = Handshake {
            identity: &identity,
            trust: &mut trust,
            target,
            timeout: handshake_timeout,
            accepted_at_prompt: accepted_at_prompt.as_ref(),
            offer: offer.as_ref(),
        };
        let outcome = match steps.run(&mut stream).await {
            Err(ClientError::Wire(WireError::Mismatch(mismatch))) => {
                let refused = offer.as_ref().expect("only a v2 offer is answered");
                match negotiate::react(mismatch, refused, cipher.is_some(), true) {
                    Reaction::Retry(retry) => {
                        debug!(
                            "the server does not accept {}; retrying with {} on a new connection",
                            refused.name(),
                            retry.name()
                        );
                        offer = Some(retry);
                        continue;
                    }
                    Reaction::Fail(error) => return Err(error),
                }
            }
            outcome => outcome?,
        };
        match outcome {
            Outcome::Established {
                session,
                server_key,
                newly_known_as,
            } => {
                // TCP's owned halves need no lock between the reader and the writer.
                let (reader, writer) = stream.into_split();
                // Added by the first attempt when this is the second.
                let newly_known_as = newly_known_as.or_else(|| {
                    accepted_at_prompt.map(|_| known_hosts::host_field(&target.host, target.port))
                });
                return Ok(Connection::new(
                    *session,
                    server_key,
                    newly_known_as,
                    reader,
                    writer,
                ));
            }
            Outcome::ClosedDuringPrompt { accepted } => accepted_at_prompt = Some(accepted),
        }
    }
    Err(ClientError::ClosedDuringPrompt)
}

/// Opens the TCP connection, within `timeout`.
async fn open_tcp(
    target: &Target,
    timeout: Option<Duration>,
    bind: Option<IpAddr>,
) -> Result<TcpStream, ClientError> {
    debug!("connecting to {target}");
    let connecting = async {
        match bind {
            None => TcpStream::connect((target.host.as_str(), target.port)).await,
            Some(local) => connect_from(local, target).await,
        }
    };
    let stream = within(timeout, connecting, target, TimeoutStage::Connect)
        .await?
        .map_err(|cause| ClientError::Connect {
            target: target.to_string(),
            cause,
        })?;
    if let (Ok(local), Ok(peer)) = (stream.local_addr(), stream.peer_addr()) {
        debug!("connected to {peer} from {local}");
    }
    // Requests are small and latency matters: don't let Nagle hold them back.
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// Connects to `target` from the local address `local`: each of the target's
/// addresses of the same family in turn, as [`TcpStream::connect`] does.
async fn connect_from(local: IpAddr, target: &Target) -> io::Result<TcpStream> {
    let mut last_error = None;
    for remote in tokio::net::lookup_host((target.host.as_str(), target.port)).await? {
        if remote.is_ipv4() != local.is_ipv4() {
            continue;
        }
        let socket = if local.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        if let Err(error) = socket.bind(std::net::SocketAddr::new(local, 0)) {
            return Err(io::Error::new(
                error.kind(),
                format!("cannot bind to the local address {local}: {error}"),
            ));
        }
        match socket.connect(remote).await {
            Ok(stream) => return Ok(stream),
            Err(error) => last_error = Some(error),
        }
    }
    Err(last_error.unwrap_or_else(|| {
        let family = if local.is_ipv4() { "IPv4" } else { "IPv6" };
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("it has no {family} address to reach from {local}"),
        )
    }))
}

/// Runs `step` within `timeout` (if any), or fails with [`ClientError::Timeout`].
pub(crate) async fn within<T>(
    timeout: Option<Duration>,
    step: impl std::future::Future<Output = T>,
    target: &Target,
    stage: TimeoutStage,
) -> Result<T, ClientError> {
    let Some(after) = timeout else {
        return Ok(step.await);
    };
    tokio::time::timeout(after, step)
        .await
        .map_err(|_| ClientError::Timeout {
            target: target.to_string(),
            stage,
            after,
        })
}

/// Runs the handshake over `io`, an already connected stream to the server known
/// as `server` (its name and port are what known_hosts is checked under), and
/// decides whether to trust its key BEFORE revealing our identity (message 3). The
/// handshake runs under [`ClientConfig::handshake_timeout`]; the connect timeout is
/// the caller's, who opened `io`.
///
/// # Errors
/// [`ClientError::HostKeyNotTrusted`] with the [`HostKeyError`] saying why,
/// [`ClientError::KnownHosts`] if the file cannot be read or updated,
/// [`ClientError::Timeout`] if the server does not complete the handshake in time,
/// [`ClientError::ClosedDuringPrompt`] if it hung up while the user was deciding
/// (the key is saved), and [`ClientError::Wire`] for a handshake failure.
pub async fn connect_stream<S>(
    mut io: S,
    server: &Target,
    config: ClientConfig,
) -> Result<Connection<ReadHalf<S>, WriteHalf<S>>, ClientError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let ClientConfig {
        identity,
        mut trust,
        handshake_timeout,
        protocol,
        cipher,
        ..
    } = config;
    let offer = negotiate::first_offer(protocol, cipher);
    let steps = Handshake {
        identity: &identity,
        trust: &mut trust,
        target: server,
        timeout: handshake_timeout,
        accepted_at_prompt: None,
        offer: offer.as_ref(),
    };
    match steps.run(&mut io).await {
        Ok(Outcome::Established {
            session,
            server_key,
            newly_known_as,
        }) => {
            let (reader, writer) = tokio::io::split(io);
            Ok(Connection::new(
                *session,
                server_key,
                newly_known_as,
                reader,
                writer,
            ))
        }
        Ok(Outcome::ClosedDuringPrompt { .. }) => Err(ClientError::ClosedDuringPrompt),
        // This stream cannot be opened again: no retry.
        Err(ClientError::Wire(WireError::Mismatch(mismatch))) => {
            let refused = offer.as_ref().expect("only a v2 offer is answered");
            match negotiate::react(mismatch, refused, cipher.is_some(), false) {
                Reaction::Fail(error) => Err(error),
                Reaction::Retry(_) => unreachable!("no retry without reconnecting"),
            }
        }
        Err(error) => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Identity;
    use crate::wire::{self, Reply, WireError};

    #[test]
    fn no_client_error_repeats_its_cause_even_through_anyhow() {
        let refused = || io::Error::new(io::ErrorKind::ConnectionRefused, "Connection refused");
        let target: Target = "example.org:4000".parse().unwrap();
        let fingerprint = Identity::generate("k").public_key().fingerprint();
        let errors = vec![
            ClientError::Connect {
                target: target.to_string(),
                cause: refused(),
            },
            ClientError::KnownHosts {
                path: "/kh".into(),
                cause: refused(),
            },
            ClientError::Timeout {
                target: target.to_string(),
                stage: TimeoutStage::Connect,
                after: Duration::from_millis(1500),
            },
            ClientError::ClosedDuringPrompt,
            WireError::from(refused()).into(),
            WireError::from(wire::Violation::Truncated(wire::TruncatedAt::Frame)).into(),
            HostKeyError::PromptFailed {
                host_field: "h".into(),
                cause: refused(),
            }
            .into(),
            HostKeyError::Mismatch {
                host_field: "h".into(),
                expected: fingerprint,
                presented: fingerprint,
            }
            .into(),
        ];
        for error in errors {
            crate::wire::error_tests::assert_each_cause_said_once(&error);
            let text = error.to_string();
            // As the CLI prints it: the whole chain, with a context on top.
            let chained = format!("{:#}", anyhow::Error::from(error).context("connecting"));
            assert_eq!(chained, format!("connecting: {text}"));
            assert!(
                chained.matches("Connection refused").count() <= 1,
                "{chained}"
            );
        }
    }

    #[test]
    fn timeouts_say_which_step_and_how_long() {
        let target: Target = "[::1]:9".parse().unwrap();
        let connect = ClientError::Timeout {
            target: target.to_string(),
            stage: TimeoutStage::Connect,
            after: Duration::from_millis(1500),
        };
        assert_eq!(
            connect.to_string(),
            "connecting to [::1]:9 timed out after 1.5 s"
        );
        let config = ClientConfig::pinned(
            LocalIdentity::new(&Identity::generate("me")),
            Identity::generate("server").public_key().fingerprint(),
        );
        assert_eq!(config.connect_timeout, Some(DEFAULT_CONNECT_TIMEOUT));
        assert_eq!(config.handshake_timeout, Some(DEFAULT_HANDSHAKE_TIMEOUT));
        let config = config
            .connect_timeout(None)
            .handshake_timeout(Some(Duration::from_secs(3)));
        assert_eq!(config.connect_timeout, None);
        assert_eq!(config.handshake_timeout, Some(Duration::from_secs(3)));
    }

    /// The connect timeout, on a connection attempt that never completes (a
    /// black-holed address cannot be reached on loopback, so the attempt is a
    /// future that never resolves, under tokio's paused clock).
    #[tokio::test(start_paused = true)]
    async fn a_step_that_never_completes_fails_at_its_timeout() {
        let target: Target = "192.0.2.1:1234".parse().unwrap();
        let never = std::future::pending::<io::Result<TcpStream>>();
        let error = within(
            Some(DEFAULT_CONNECT_TIMEOUT),
            never,
            &target,
            TimeoutStage::Connect,
        )
        .await
        .unwrap_err();
        assert!(
            matches!(
                &error,
                ClientError::Timeout { stage: TimeoutStage::Connect, after, .. }
                    if *after == DEFAULT_CONNECT_TIMEOUT
            ),
            "{error:?}"
        );
        assert_eq!(
            error.to_string(),
            "connecting to 192.0.2.1:1234 timed out after 10 s"
        );
        // Without a timeout the step is simply awaited.
        let done = within(None, async { 7 }, &target, TimeoutStage::Connect).await;
        assert_eq!(done.unwrap(), 7);
    }

    /// A pin with known_hosts (what `--expect-fingerprint` builds) refuses a known
    /// host whose key is not the pinned one, before message 3.
    #[tokio::test]
    async fn an_embedder_pin_is_checked_against_a_host_known_hosts_trusts() {
        let server = Identity::generate("server");
        let client = Identity::generate("client");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("known_hosts");
        let target: Target = "srv:4000".parse().unwrap();
        std::fs::write(
            &path,
            known_hosts::append_entry(b"", "[srv]:4000", &server.public_key()),
        )
        .unwrap();
        let wrong = Identity::generate("other").public_key().fingerprint();
        let (client_io, mut server_io) = tokio::io::duplex(4096);
        let local = LocalIdentity::new(&server);
        let responder = tokio::spawn(async move { wire::respond(&mut server_io, &local).await });
        let config = ClientConfig::known_hosts(LocalIdentity::new(&client), path)
            .unknown_host(UnknownHostPolicy::ExpectFingerprint(wrong))
            .protocol(Protocol::V1);
        let error = connect_stream(client_io, &target, config)
            .await
            .unwrap_err();
        assert!(
            matches!(
                &error,
                ClientError::HostKeyNotTrusted(HostKeyError::Mismatch { expected, presented, .. })
                    if *expected == wrong && *presented == server.public_key().fingerprint()
            ),
            "{error:?}"
        );
        // The server never got message 3: it saw the stream end.
        assert!(responder.await.unwrap().is_err());
    }

    #[test]
    fn config_debug_shows_the_policy_and_hides_the_prompt_and_secrets() {
        let me = Identity::generate("me");
        let config = ClientConfig::known_hosts(LocalIdentity::new(&me), "kh".into())
            .unknown_host(UnknownHostPolicy::AcceptNew)
            .prompt(Some(Box::new(|_: &UnknownHost| Ok(true))));
        let text = format!("{config:?}");
        assert!(text.contains("AcceptNew"), "{text}");
        assert!(text.contains("<prompt>"), "{text}");
        assert!(text.contains("public_key"), "{text}");
        let pinned = format!(
            "{:?}",
            ClientConfig::pinned(LocalIdentity::new(&me), me.public_key().fingerprint())
        );
        assert!(pinned.contains("Pinned"), "{pinned}");
    }

    /// `Connection::request` accepts the reply to a request as large as the
    /// server's limit allows, here 8 MiB whose uppercase is 24 MiB: the reply limit
    /// follows the request, not a constant 3 MiB.
    #[tokio::test]
    async fn request_works_up_to_any_server_limit() {
        use crate::openssh::authorized_keys::{self, AuthorizedKeys};
        use crate::server::{AllowList, Server, ServerConfig};
        use std::sync::Arc;
        const LIMIT: usize = 8 << 20;
        let client = Identity::from_seed(&[1; 32], "client");
        let host = Identity::from_seed(&[2; 32], "host");
        let line = authorized_keys::append_key(&[], &client.public_key(), "client");
        let mut config = ServerConfig::with_allow_list(
            Arc::new(LocalIdentity::new(&host)),
            AllowList::Keys(Arc::new(AuthorizedKeys::parse(&line, "(test)".as_ref()))),
        );
        config.max_request = LIMIT as u32;
        let server = Server::new(config).unwrap();
        let (client_io, server_io) = tokio::io::duplex(1 << 20);
        let serving = tokio::spawn(async move {
            server
                .serve_connection(server_io, "127.0.0.1:40000".parse().unwrap())
                .await;
        });
        let target = Target {
            host: "in-memory".into(),
            port: DEFAULT_PORT,
        };
        let config =
            ClientConfig::pinned(LocalIdentity::new(&client), host.public_key().fingerprint())
                .protocol(Protocol::V1);
        let mut connection = connect_stream(client_io, &target, config).await.unwrap();
        let request = "\u{390}".repeat(LIMIT / 2);
        match connection.request(request.as_bytes()).await.unwrap() {
            Reply::Response(body) => {
                assert_eq!(body.len(), 3 * LIMIT);
                assert!(body == request.to_uppercase().into_bytes());
            }
            other => panic!("{other:?}"),
        }
        drop(connection);
        serving.await.unwrap();
    }

    /// A server that ends the session instead of answering is a close, not a
    /// protocol violation.
    #[tokio::test]
    async fn a_server_closing_instead_of_answering_is_closed() {
        let client = Identity::from_seed(&[1; 32], "client");
        let host = Identity::from_seed(&[2; 32], "host");
        let (client_io, mut server_io) = tokio::io::duplex(64 * 1024);
        let server = tokio::spawn(async move {
            let established = wire::respond(&mut server_io, &LocalIdentity::new(&host))
                .await
                .unwrap();
            let (mut rx, mut tx) = established.into_split(server_io);
            rx.next_record().await.unwrap().unwrap();
            rx.read_body(&mut Vec::new(), 100).await.unwrap();
            // End our direction without a reply, and keep reading.
            tx.shutdown().await.unwrap();
            assert_eq!(rx.next_record().await.unwrap(), None);
        });
        let target = Target {
            host: "in-memory".into(),
            port: DEFAULT_PORT,
        };
        let pin = Identity::from_seed(&[2; 32], "host")
            .public_key()
            .fingerprint();
        let config = ClientConfig::pinned(LocalIdentity::new(&client), pin).protocol(Protocol::V1);
        let mut connection = connect_stream(client_io, &target, config).await.unwrap();
        assert!(matches!(
            connection.request(b"anyone?").await,
            Err(ClientError::Closed)
        ));
        let (_, mut sender) = connection.into_halves();
        sender.shutdown().await.unwrap();
        server.await.unwrap();
    }

    #[test]
    fn targets_parse_like_ssh_destinations() {
        let cases = [
            ("localhost", "localhost", DEFAULT_PORT),
            ("example.org:22", "example.org", 22),
            ("127.0.0.1:4000", "127.0.0.1", 4000),
            ("[::1]:4000", "::1", 4000),
            ("[::1]", "::1", DEFAULT_PORT),
            ("::1", "::1", DEFAULT_PORT),
            ("fe80::1", "fe80::1", DEFAULT_PORT),
        ];
        for (text, host, port) in cases {
            let target: Target = text.parse().unwrap();
            assert_eq!((target.host.as_str(), target.port), (host, port), "{text}");
        }
        for bad in [
            "",
            ":80",
            "host:",
            "host:0",
            "host:99999",
            "[::1",
            "[::1]x",
            "a b",
            "a,b",
        ] {
            assert!(bad.parse::<Target>().is_err(), "{bad}");
        }
        assert_eq!("[::1]:9".parse::<Target>().unwrap().to_string(), "[::1]:9");
    }
}
