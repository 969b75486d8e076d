//! `noise-echo serve`: run the echo server until Ctrl-C or SIGTERM; SIGHUP makes open
//! sessions check their key against authorized_keys again. Under systemd it reports
//! its readiness, reloads and stop (`notify`); `--metrics-listen` serves Prometheus
//! metrics (`crate::metrics`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tracing::{debug, info, warn};

use crate::paths::{AUTHORIZED_KEYS_FILE, HOST_KEY_FILE};
use noise_echo::identity::Identity;
use noise_echo::openssh::keyfile;
use noise_echo::openssh::pattern::AddressPatterns;
use noise_echo::server::penalty;
use noise_echo::server::{self, ReloadTrigger, Server, ServerConfig};
use noise_echo::wire::{LocalIdentity, RekeyPolicy, MAX_RECORD_LEN};

mod activation;
mod check;
mod host_certificate;
mod notify;
mod protocols;

use notify::Notifier;

/// Where `serve` listens without --listen nor sockets from systemd.
const DEFAULT_LISTEN: &str = "127.0.0.1:1234";

#[derive(Debug, clap::Args)]
#[command(after_long_help = HELP)]
pub(super) struct Args {
    /// Address to listen on: HOST:PORT, [IPV6]:PORT, or :PORT for every address
    /// (0.0.0.0 and [::]); may be given several times. Listening sockets passed by
    /// systemd (socket activation, LISTEN_FDS) are served too
    /// [default: 127.0.0.1:1234, unless systemd passed sockets]
    #[arg(long, value_name = "ADDR")]
    listen: Vec<String>,
    /// The server's private host key, unencrypted (as sshd's); created on first start only
    /// at the default path or with --create-host-key
    /// [default: host_ed25519_key in the noise-echo config directory]
    #[arg(long, value_name = "FILE")]
    host_key: Option<PathBuf>,
    /// Create the --host-key FILE if it does not exist (a new server identity)
    #[arg(long, requires = "host_key")]
    create_host_key: bool,
    /// The clients allowed to connect, re-read when it changes
    /// [default: authorized_keys in the noise-echo config directory]
    #[arg(long, value_name = "FILE")]
    authorized_keys: Option<PathBuf>,
    /// The OpenSSH host certificate to present to protocol 2 clients (ssh-keygen -s CA -h),
    /// as sshd's HostCertificate; it must certify the host key and be valid now
    /// [default: the host key's path with -cert.pub, when that file exists]
    #[arg(long, value_name = "FILE")]
    host_certificate: Option<PathBuf>,
    /// CA keys whose user certificates are trusted, as sshd's TrustedUserCAKeys (one
    /// ssh-ed25519 key per line); needs --authorized-principals
    #[arg(long, value_name = "FILE", requires = "authorized_principals")]
    trusted_user_ca_keys: Option<PathBuf>,
    /// The certificate principals admitted from --trusted-user-ca-keys, one per line, as
    /// sshd's AuthorizedPrincipalsFile
    #[arg(long, value_name = "FILE", requires = "trusted_user_ca_keys")]
    authorized_principals: Option<PathBuf>,
    /// Keys, certificates and CA keys refused however they are trusted, as sshd's
    /// RevokedKeys: a list of public keys or an OpenSSH KRL (ssh-keygen -k); while it
    /// is missing or unreadable every client is refused
    #[arg(long, value_name = "FILE")]
    revoked_keys: Option<PathBuf>,
    /// Largest request body accepted: bytes, or with a unit (64K, 8M, 1GiB; K, M, G are powers of 1024)
    #[arg(long, value_name = "SIZE", default_value = "1MiB", value_parser = parse_max_request)]
    max_request: u32,
    /// Most connections open at once; more are closed on arrival
    #[arg(long, value_name = "N", default_value_t = server::DEFAULT_MAX_CONNECTIONS)]
    max_connections: usize,
    /// Seconds a client has to complete the handshake
    #[arg(long, value_name = "SECONDS", default_value_t = server::DEFAULT_HANDSHAKE_TIMEOUT.as_secs())]
    handshake_timeout: u64,
    /// Seconds an established session may wait between requests, or take to read a reply
    #[arg(long, value_name = "SECONDS", default_value_t = server::DEFAULT_IDLE_TIMEOUT.as_secs())]
    idle_timeout: u64,
    /// Most handshakes in progress at once; past it, a newcomer evicts the oldest unfinished one
    #[arg(long, value_name = "N", default_value_t = server::DEFAULT_MAX_HANDSHAKES)]
    max_handshakes: usize,
    /// Most handshakes in progress from one address (IPv6: one /64); 0 for no limit
    #[arg(long, value_name = "N", default_value_t = penalty::DEFAULT_MAX_HANDSHAKES_PER_SOURCE)]
    max_handshakes_per_source: usize,
    /// Failed handshakes or denied keys from one address before it is refused for a while; 0 turns penalties off
    #[arg(long, value_name = "N", default_value_t = penalty::DEFAULT_PENALTY_THRESHOLD)]
    penalty_threshold: u32,
    /// Seconds of an address's first refusal (a burst of failures is one offence); each repeat offence after a refusal has ended doubles it
    #[arg(long, value_name = "SECONDS", default_value_t = penalty::DEFAULT_PENALTY_BASE.as_secs())]
    penalty_base: u64,
    /// Longest refusal, in seconds
    #[arg(long, value_name = "SECONDS", default_value_t = penalty::DEFAULT_PENALTY_MAX.as_secs())]
    penalty_max: u64,
    /// Addresses never refused nor limited per source, as in from="..." (e.g. 10.0.0.0/8,::1)
    #[arg(long, value_name = "PATTERNS")]
    penalty_exempt: Option<AddressPatterns>,
    /// Load balancers in front of the server, as in from="..." (e.g. 10.0.0.0/8,::1):
    /// each of their connections must open with a PROXY protocol header (v1 or v2,
    /// HAProxy's send-proxy-v2), and is served as the client the header names
    #[arg(long, value_name = "ADDRESSES")]
    proxy_protocol: Option<AddressPatterns>,
    /// End open sessions as soon as their key or certificate is no longer admitted: its
    /// line or CA leaves authorized_keys or --trusted-user-ca-keys, or --revoked-keys
    /// lists it (SIGHUP does it once)
    #[arg(long)]
    revoke_live: bool,
    /// Refuse an authorized_keys that others could change (group/world writable, owned by another user, or under such a directory), as sshd's StrictModes; "no" turns the check off
    #[arg(long, value_name = "yes|no", default_value = "yes", value_parser = parse_yes_no, action = clap::ArgAction::Set)]
    strict_modes: bool,
    /// Memory for request and reply bodies in flight, server-wide (e.g. 64MiB, 1GiB); when it is spent, sessions wait before reading more
    #[arg(long, value_name = "SIZE", default_value_t = bytesize::ByteSize::b(server::DEFAULT_MEMORY_BUDGET))]
    memory_budget: bytesize::ByteSize,
    /// Kernel buffer of each connection, each way (SO_RCVBUF, SO_SNDBUF): what a client that never reads can make the kernel hold, and the TCP window of a session; 0 leaves it to the kernel's tuning
    #[arg(long, value_name = "SIZE", default_value_t = bytesize::ByteSize::b(server::DEFAULT_SOCKET_BUFFER as u64))]
    socket_buffer: bytesize::ByteSize,
    /// Most sessions open at once with one client key; 0 for no limit
    /// [default: a quarter of --max-connections, 1024]
    #[arg(long, value_name = "N")]
    max_sessions_per_key: Option<usize>,
    /// Longest a session may last, in seconds, however busy; 0 for no limit
    #[arg(long, value_name = "SECONDS", default_value_t = 0)]
    max_session_time: u64,
    /// Protocol versions served, comma-separated: 1, 2 or 1,2. A client of another
    /// version is refused (a protocol 2 client is told which versions are served)
    #[arg(
        long,
        value_name = "LIST",
        value_enum,
        value_delimiter = ',',
        default_value = "1,2"
    )]
    protocols: Vec<protocols::Protocol>,
    /// Ciphers accepted from protocol 2 clients, comma-separated, preferred first (the
    /// order a client whose cipher is refused is told); protocol 1 needs chachapoly
    #[arg(
        long,
        value_name = "LIST",
        value_enum,
        value_delimiter = ',',
        default_value = "aesgcm,chachapoly"
    )]
    ciphers: Vec<protocols::Cipher>,
    /// Protocol 2 sessions change keys, each way, after this much data under one key
    /// (as ssh's RekeyLimit): bytes, or with a unit (512M, 1G)
    #[arg(long, value_name = "SIZE", default_value = "1G", value_parser = crate::units::size_in(1..=1 << 50))]
    rekey_limit: u64,
    /// Protocol 2 sessions also change keys once a key is this old: seconds, or with
    /// units as in sshd_config (30m, 1h, 1h30m)
    #[arg(long, value_name = "INTERVAL", default_value = "1h", value_parser = protocols::parse_interval)]
    rekey_interval: Duration,
    /// Protocol 2 sessions also change keys after this many messages under one key
    #[arg(long, value_name = "N", default_value_t = RekeyPolicy::DEFAULT.max_messages, value_parser = clap::value_parser!(u64).range(1..))]
    rekey_messages: u64,
    /// Check the settings, the host key and certificate, the CA, principals and revoked-keys files and authorized_keys, print what is wrong, and
    /// exit (0: all good, 1: a problem) without listening, as `sshd -t`
    #[arg(long)]
    check: bool,
    /// Serve Prometheus metrics on http://ADDR/metrics (HOST:PORT, [IPV6]:PORT or :PORT);
    /// keep it on loopback or a management network
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<String>,
    /// Log format: text for people, json (one object per line) for log pipelines
    #[arg(long, value_name = "FORMAT", value_enum, default_value_t)]
    log_format: super::LogFormat,
    /// Log each connection's steps (-v), and more (-vv); RUST_LOG=... filters instead
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
}

/// sshd_config's yes/no.
fn parse_yes_no(text: &str) -> Result<bool, String> {
    match text {
        "yes" => Ok(true),
        "no" => Ok(false),
        _ => Err(format!("expected yes or no, not {text:?}")),
    }
}

const HELP: &str = "\
Examples:
  noise-echo serve                                  # 127.0.0.1:1234, files in the config directory
  noise-echo serve --listen 0.0.0.0:4000 --max-request 65536
  noise-echo serve --check && systemctl restart noise-echo   # as sshd -t
  noise-echo serve --log-format json 2>&1 | jq -c 'select(.peer)'
  noise-echo serve --metrics-listen 127.0.0.1:9184  # Prometheus scrapes /metrics
  noise-echo serve -v                               # each handshake step of each connection
  noise-echo serve --protocols 2 --ciphers chachapoly   # protocol 2 clients with ChaCha20-Poly1305 only
  noise-echo serve --rekey-limit 512M --rekey-interval 30m  # as ssh's RekeyLimit 512M 30m
  noise-echo serve --trusted-user-ca-keys user_ca.pub --authorized-principals principals --revoked-keys revoked.krl --revoke-live
  kill -HUP PID                                     # open sessions check their key again

Exit statuses:
  0  stopped cleanly (Ctrl-C or SIGTERM), or --check found nothing wrong
  1  cannot start (bad setting, host key, address), or --check found a problem
  2  the command line could not be parsed";

impl Args {
    /// `-v` given how many times.
    pub(super) fn verbose(&self) -> u8 {
        self.verbose
    }

    /// `--check`.
    pub(super) fn check(&self) -> bool {
        self.check
    }

    /// `--log-format`.
    pub(super) fn log_format(&self) -> super::LogFormat {
        self.log_format
    }
}

pub(super) fn run(args: Args) -> anyhow::Result<()> {
    let host_key = match &args.host_key {
        Some(path) if args.create_host_key => HostKey::CreateIfMissing(path.clone()),
        Some(path) => HostKey::MustExist(path.clone()),
        None => HostKey::Default(crate::paths::default_file(HOST_KEY_FILE)?),
    };
    let authorized_keys =
        super::path_or_default(args.authorized_keys.clone(), AUTHORIZED_KEYS_FILE)?;
    if args.check {
        return check::run(&args, &host_key, &authorized_keys);
    }
    // Before any thread starts: the variables are removed once read, as
    // sd_listen_fds(1) does, so that nothing this process starts takes them too.
    let inherited = activation::inherited_listeners()?;
    // The settings first, with a stand-in identity: a bad flag must not leave a new
    // host key behind. The library checks the limits (a zero would refuse
    // everyone); the setting it names is the flag with dashes.
    let stand_in = Identity::generate("serve: settings check");
    let mut config = ServerConfig::new(
        Arc::new(LocalIdentity::new(&stand_in)),
        authorized_keys.clone(),
    );
    drop(stand_in);
    let max_connections = args.max_connections;
    apply_settings(&args, &mut config);
    config.validate().map_err(settings_error)?;
    let identity = load_or_create_host_key(&host_key)?;
    debug!(
        "host key {} ({}); authorized_keys {}",
        host_key.path().display(),
        identity.public_key().fingerprint(),
        authorized_keys.display()
    );
    let (host, certificate_file) = host_certificate::attach(
        args.host_certificate.as_deref(),
        host_key.path(),
        LocalIdentity::new(&identity),
        std::time::SystemTime::now(),
    )?;
    drop(identity);
    if let Some(file) = certificate_file {
        debug!("host certificate {}", file.display());
    }
    config.host = Arc::new(host);
    let server = Server::new(config).map_err(settings_error)?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        // Before listening: a file that cannot be used (unsafe permissions, not a
        // regular file...) is an error now; its per-line problems are logged now.
        match server.load_allow_list().await {
            Ok(_) => {}
            Err(error) if error.is_missing() => warn!(
                "{} does not exist: every client will be refused until keys are added (noise-echo authorize --authorized-keys {} KEY)",
                authorized_keys.display(),
                authorized_keys.display()
            ),
            Err(error) => return Err(error).context("cannot use the allow-list"),
        }
        server
            .load_trust_files()
            .await
            .context("cannot use the trusted user CAs")?;
        let mut listeners = Vec::new();
        for listener in inherited {
            listeners.push(
                tokio::net::TcpListener::from_std(listener)
                    .context("cannot use a listening socket passed by systemd")?,
            );
        }
        let defaults = [DEFAULT_LISTEN.to_owned()];
        let listen = if args.listen.is_empty() && listeners.is_empty() {
            &defaults[..]
        } else {
            &args.listen[..]
        };
        for listen in listen {
            let bound = server::bind_all(listen)
                .await
                .with_context(|| format!("cannot listen on {listen}"))?;
            listeners.extend(bound);
        }
        if let Some(listen) = &args.metrics_listen {
            let bound = server::bind_all(listen)
                .await
                .with_context(|| format!("cannot listen for metrics on {listen}"))?;
            crate::metrics::spawn(bound, server.stats());
        }
        check_open_files_limit(max_connections, listeners.len());
        let notifier = Notifier::from_env().map(Arc::new);
        // Installed before serving: SIGHUP's default action would kill the server.
        let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .context("cannot handle SIGHUP")?;
        let reload = server.reload_trigger();
        let reload_notifier = notifier.clone();
        tokio::spawn(async move {
            while hangup.recv().await.is_some() {
                on_hangup(&reload, reload_notifier.as_deref());
            }
        });
        // Every socket is bound and listening: connections wait in the backlog
        // until the accept loops, which start at once, take them.
        if let Some(notifier) = &notifier {
            notifier.send("READY=1\nSTATUS=serving");
        }
        let stopping = async {
            shutdown_signal().await;
            if let Some(notifier) = &notifier {
                notifier.send("STOPPING=1");
            }
        };
        server.run_on(listeners, stopping).await?;
        info!("stopped");
        Ok(())
    })
}

/// File descriptors the server needs besides one per connection and per listener:
/// standard streams, the runtime's epoll and wake-up descriptors, authorized_keys
/// and the host key while being read, with room to spare.
const OTHER_FILES: u64 = 64;

/// Raises the soft open-files limit (`RLIMIT_NOFILE`) to the hard limit, as a server
/// that accepts thousands of connections must: with the common soft default of
/// 1,024, `--max-connections` 4,096 could never be reached and accepts would fail
/// with "Too many open files". Warns when even the hard limit is below what the caps
/// need. In the CLI, not the library: the limit belongs to the whole process, which
/// an embedder manages itself.
fn check_open_files_limit(max_connections: usize, listeners: usize) {
    let needed = (max_connections as u64)
        .saturating_add(listeners as u64)
        .saturating_add(OTHER_FILES);
    let Ok((soft, hard)) = rlimit::Resource::NOFILE.get() else {
        warn!("cannot read the open-files limit (RLIMIT_NOFILE); --max-connections {max_connections} needs {needed} file descriptors");
        return;
    };
    let limit = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(raised) => {
            if raised > soft {
                info!("raised the open-files limit (RLIMIT_NOFILE) from {soft} to {raised}");
            }
            raised
        }
        Err(error) => {
            warn!("cannot raise the open-files limit (RLIMIT_NOFILE) from {soft}: {error}");
            soft
        }
    };
    if needed > limit {
        warn!(
            "--max-connections {max_connections} with {listeners} listener(s) needs {needed} open files, but the open-files limit is {limit} (hard limit {hard}): past about {} connections, accepts fail with \"Too many open files\". Raise the hard limit (ulimit -Hn, LimitNOFILE= in systemd) or lower --max-connections",
            limit.saturating_sub(listeners as u64 + OTHER_FILES)
        );
    }
}

/// Copies the flags' settings into `config` (the check uses the same).
fn apply_settings(args: &Args, config: &mut ServerConfig) {
    config.max_request = args.max_request;
    config.max_connections = args.max_connections;
    config.handshake_timeout = Duration::from_secs(args.handshake_timeout);
    config.idle_timeout = Duration::from_secs(args.idle_timeout);
    config.max_handshakes = args.max_handshakes;
    config.penalties.max_handshakes_per_source = args.max_handshakes_per_source;
    config.penalties.threshold = args.penalty_threshold;
    config.penalties.base = Duration::from_secs(args.penalty_base.max(1));
    config.penalties.max = Duration::from_secs(args.penalty_max.max(args.penalty_base).max(1));
    config.penalties.exempt = args.penalty_exempt.clone();
    config.proxy_protocol = args.proxy_protocol.clone();
    config.revoke_live = args.revoke_live;
    config.trusted_user_ca_keys = args.trusted_user_ca_keys.clone();
    config.authorized_principals = args.authorized_principals.clone();
    config.revoked_keys = args.revoked_keys.clone();
    config.strict_modes = args.strict_modes;
    config.memory_budget = args.memory_budget.as_u64();
    config.socket_buffer = usize::try_from(args.socket_buffer.as_u64()).unwrap_or(usize::MAX);
    // One key may hold a quarter of the connection slots, whatever their number.
    config.max_sessions_per_key = args
        .max_sessions_per_key
        .unwrap_or((args.max_connections / 4).max(1));
    config.max_session_time =
        (args.max_session_time > 0).then(|| Duration::from_secs(args.max_session_time));
    config.protocols = args
        .protocols
        .iter()
        .map(|&protocol| protocol.into())
        .collect();
    config.suites = args.ciphers.iter().map(|&cipher| cipher.into()).collect();
    config.rekey_policy = RekeyPolicy {
        max_messages: args.rekey_messages,
        max_bytes: args.rekey_limit,
        max_interval: args.rekey_interval,
    };
}

/// A setting the library refused, named as its flag.
fn settings_error(error: server::ConfigError) -> anyhow::Error {
    let message = protocols::flag_error(&error)
        .unwrap_or_else(|| format!("--{}", error.to_string().replace('_', "-")));
    anyhow::anyhow!(message).context("invalid server settings")
}

/// Where the host key comes from, and whether a missing one may be created: a new
/// host key is a new server identity, which every client then sees as "REMOTE HOST
/// IDENTIFICATION HAS CHANGED", so a mistyped `--host-key` must not make one.
enum HostKey {
    /// The default path: created on first start, as sshd's init scripts do.
    Default(PathBuf),
    /// `--host-key FILE`: must exist.
    MustExist(PathBuf),
    /// `--host-key FILE --create-host-key`.
    CreateIfMissing(PathBuf),
}

impl HostKey {
    /// The file, whichever the case.
    fn path(&self) -> &std::path::Path {
        let (Self::Default(path) | Self::MustExist(path) | Self::CreateIfMissing(path)) = self;
        path
    }
}

fn load_or_create_host_key(host_key: &HostKey) -> anyhow::Result<Identity> {
    let (HostKey::Default(path) | HostKey::MustExist(path) | HostKey::CreateIfMissing(path)) =
        host_key;
    if std::fs::symlink_metadata(path).is_ok() {
        // sshd refuses encrypted host keys too: a server starts unattended, with
        // nobody to type a passphrase.
        return keyfile::read_identity(path).map_err(|error| {
            let context = match error {
                keyfile::KeyFileError::PassphraseProtected { .. } => {
                    "cannot load the host key (a host key must not have a passphrase, as for \
                     sshd: the server starts with nobody to type it)"
                }
                _ => "cannot load the host key",
            };
            anyhow::Error::new(error).context(context)
        });
    }
    match host_key {
        HostKey::MustExist(_) => anyhow::bail!(
            "no host key at {path} (create one with: noise-echo keygen -f {path} -N '', \
             or pass --create-host-key, or run serve without --host-key)",
            path = path.display()
        ),
        HostKey::Default(_) => {
            if let Some(dir) = path.parent() {
                noise_echo::fsutil::create_private_dir_all(dir)
                    .with_context(|| format!("cannot create {}", dir.display()))?;
            }
        }
        HostKey::CreateIfMissing(_) => {}
    }
    let identity = Identity::generate(format!("noise-echo host key of {}", hostname()));
    keyfile::write_identity(path, &identity, false).context("cannot create the host key")?;
    // Logged, not printed: with --log-format json every line of stderr is JSON.
    info!(
        "created host key {} ({})",
        path.display(),
        identity.public_key().fingerprint()
    );
    Ok(identity)
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_owned())
        .unwrap_or_else(|_| "this server".to_owned())
}

/// SIGHUP: every open session checks its key against authorized_keys again (and
/// systemd hears of the reload, begun and done).
fn on_hangup(reload: &ReloadTrigger, notifier: Option<&Notifier>) {
    info!("SIGHUP: checking the keys of open sessions against authorized_keys");
    if let Some(notifier) = notifier {
        notifier.reloading();
    }
    reload.trigger();
    if let Some(notifier) = notifier {
        notifier.send("READY=1");
    }
}

/// Completes on Ctrl-C (SIGINT) or SIGTERM.
async fn shutdown_signal() {
    let mut terminate =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let terminated = async {
        match terminate.as_mut() {
            Some(signal) => {
                signal.recv().await;
            }
            None => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => info!("interrupted"),
        _ = terminated => info!("terminated"),
    }
}

/// `--max-request`: at least one byte, and at most the longest record the protocol
/// can announce.
fn parse_max_request(text: &str) -> Result<u32, String> {
    let size = crate::units::size_in(1..=u64::from(MAX_RECORD_LEN))(text)?;
    u32::try_from(size).map_err(|_| format!("{text} is over the protocol's limit"))
}

#[cfg(test)]
mod max_request_tests {
    use super::*;
    use noise_echo::wire::DEFAULT_REQUEST_LIMIT;

    #[test]
    fn the_default_is_the_protocols_default_limit() {
        assert_eq!(parse_max_request("1MiB"), Ok(DEFAULT_REQUEST_LIMIT));
        assert_eq!(parse_max_request("8M"), Ok(8 << 20));
        assert!(parse_max_request("0").is_err());
        assert!(parse_max_request("4GiB").is_err());
    }
}
