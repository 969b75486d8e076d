//! `noise-echo connect`: send requests to a server and print each reply on its own
//! line, in order. A refused request prints nothing on stdout and its reason on
//! stderr, so stdout holds replies only; a session the server ends is reported at
//! once, even while waiting for input (see `AFTER_HELP`).
//!
//! Requests come from the command line or, without MESSAGE, one per line of standard
//! input. Requests are pipelined: a writer task sends them as fast as they come (in
//! batches when they arrive faster than the network takes them) while this task
//! prints replies, so `seq 1 100000 | noise-echo connect` does not wait a round trip
//! per line, and typing at a terminal still gets each answer at once.

use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;

use tracing::debug;

use crate::client_config::{self, ClientConfigFile, HostConfig, StrictHostKeyChecking};
use crate::{ExitStatus, StatusError};
use noise_echo::client::{self, ClientConfig, ClientError, Protocol, Target};
use noise_echo::openssh::revoked::RevokedKeys;
use noise_echo::wire::{Refusal, Suite, Violation, WireError};

mod certificate;
mod prompt;
mod session;

use prompt::host_key_prompt;
use session::session;

/// What `connect --help` says after the options: the output rule and the statuses.
const AFTER_HELP: &str = "\
Output:
  Each reply goes to standard output on its own line, in the order of the requests.
  A refused request prints nothing there (so an empty line is always the reply to an
  empty request) and 'error: request N refused: REASON' on standard error; the
  other requests still get their replies (unless the refusal ends the session: a
  request over the server's limit), and the exit status is 1. With protocol 2 the
  server states its limit, and a longer request is not sent at all: connect stops
  there with 'error: request N not sent: request of L bytes exceeds the server's
  limit of M bytes' (status 1), after the replies to the requests before it.
  When the server ends the session (idle timeout, shutdown, a revoked key), connect
  says 'Connection to HOST closed by remote host[: REASON]' at once, even while it
  waits for input.

Exit status:
  0  every request answered (also when a reader such as head closes our output)
  1  a request was refused, or another error (a bad key file, unreadable input)
  2  the command line could not be parsed
  3  the connection failed or broke, or the server closed the session
  4  the server's host key is not trusted (unknown and not accepted, changed, revoked,
     or a host certificate from a trusted CA that fails its checks)
  5  permission denied: the server refused our key, or revoked it during the session
  6  the server broke the protocol, or has no protocol version or cipher in common
     with us (the message names what it accepts and the flag to use)";

#[derive(Debug, clap::Args)]
#[command(after_help = AFTER_HELP, after_long_help = long_help())]
pub(super) struct Args {
    /// Server: HOST, HOST:PORT, [IPv6]:PORT, or a Host of the config file (port 1234 if
    /// neither ADDR, -p nor the config file gives one)
    #[arg(value_name = "ADDR", default_value = "localhost", value_parser = parse_destination)]
    addr: String,
    /// Requests to send; without any, each line of standard input is a request
    #[arg(value_name = "MESSAGE")]
    messages: Vec<String>,
    /// Port to connect to; wins over the config file's Port
    #[arg(short = 'p', long, value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    port: Option<u16>,
    /// Configuration file in ssh_config's syntax, or 'none' for no file
    /// [default: config in the noise-echo config directory, if it exists]
    #[arg(short = 'F', value_name = "FILE")]
    config_file: Option<PathBuf>,
    /// Print the settings for ADDR once the config file and the flags are applied,
    /// and exit without connecting (as ssh -G)
    #[arg(short = 'G')]
    print_settings: bool,
    /// Show each step (-v): the address, the key files, the known_hosts line that
    /// matched, the handshake, why the session ended; -vv shows more
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(flatten)]
    trust: super::ClientTrustArgs,
    /// Give up if the server does not accept the TCP connection within SECONDS, as
    /// ssh's ConnectTimeout (0: wait as long as the system does); without it, the
    /// config file's ConnectTimeout [default: 10]
    #[arg(long, value_name = "SECONDS")]
    connect_timeout: Option<u64>,
    /// Give up if the handshake takes longer than SECONDS, not counting the time
    /// spent at the host-key prompt (0: no limit)
    #[arg(long, value_name = "SECONDS", default_value_t = 20)]
    handshake_timeout: u64,
    /// Connect from ADDRESS, one of this machine's addresses, as ssh -b (the server
    /// sees it in from= and its log)
    #[arg(short = 'b', value_name = "ADDRESS", value_parser = parse_bind_address)]
    bind_address: Option<std::net::IpAddr>,
    /// The cipher suite (protocol 2): aesgcm (AES-256-GCM) or chachapoly
    /// (ChaCha20-Poly1305); a server that refuses it fails the connection. Without
    /// it (or the config file's Ciphers): aesgcm on a CPU with AES instructions,
    /// else chachapoly, and one retry with a suite the server lists
    #[arg(long, value_name = "CIPHER", value_parser = parse_cipher())]
    cipher: Option<Suite>,
    /// The protocol version: 2, or 1 for a server that speaks only version 1. Never
    /// chosen for you: a v2 connection to a v1-only server fails, naming this flag
    /// [default: 2, or the config file's Protocol]
    #[arg(long, value_name = "VERSION", value_parser = parse_protocol())]
    protocol: Option<Protocol>,
}

/// `--cipher`: the short names, listed in clap's error and in the completions.
pub(super) fn parse_cipher() -> impl clap::builder::TypedValueParser<Value = Suite> {
    use clap::builder::TypedValueParser as _;
    clap::builder::PossibleValuesParser::new(Suite::ALL.map(Suite::short_name))
        .map(|name| name.parse::<Suite>().expect("one of the listed names"))
}

/// `--protocol`: the versions this client speaks.
pub(super) fn parse_protocol() -> impl clap::builder::TypedValueParser<Value = Protocol> {
    use clap::builder::TypedValueParser as _;
    clap::builder::PossibleValuesParser::new(["1", "2"]).map(|version| {
        version
            .parse::<Protocol>()
            .expect("one of the listed versions")
    })
}

/// `-b`: an IP address, not a name (ssh resolves one; a server's from= sees the
/// address, so naming it is clearer).
fn parse_bind_address(text: &str) -> Result<std::net::IpAddr, String> {
    text.parse().map_err(|_| {
        "not an IP address: give one of this machine's addresses, as 127.0.0.5 or ::1".to_owned()
    })
}

/// `--connect-timeout` when neither the flag nor the config file gives one.
const DEFAULT_CONNECT_TIMEOUT: u64 = 10;

/// `0` turns a timeout off, as with ssh's `ConnectTimeout=0`.
fn timeout(seconds: u64) -> Option<Duration> {
    (seconds > 0).then(|| Duration::from_secs(seconds))
}

/// `--help`'s closing text: the examples and the config file, then [`AFTER_HELP`].
fn long_help() -> String {
    format!("{HELP}\n\n{AFTER_HELP}")
}

/// Examples and the config file, for `--help`.
const HELP: &str = "\
Examples:
  noise-echo connect server.example hello           # prints HELLO
  seq 1 3 | noise-echo connect server.example:4000  # one request per line of stdin
  noise-echo connect -p 4000 -i ~/.ssh/id_ed25519 10.0.0.5 ping
  noise-echo connect --expect-fingerprint SHA256:2JJSAdPq... server.example ping
  noise-echo connect -v prod hello                  # each step, as ssh -v
  noise-echo connect --cipher chachapoly prod hello # force a cipher suite
  noise-echo connect --protocol 1 old.example hello # a server of protocol 1 only
  noise-echo connect -G prod                        # the settings for prod, as ssh -G

Configuration file (~/.config/noise-echo/config, or -F FILE), as ssh_config:
  Host prod prod.*
      HostName 10.0.0.5
      Port 4000
      IdentityFile ~/keys/robot
      FingerprintPin SHA256:2JJSAdPq...
  Host *
      StrictHostKeyChecking accept-new
      ConnectTimeout 10
Also read: UserKnownHostsFile, Ciphers (aesgcm, chachapoly or both), Protocol (1 or
2), CertificateFile (the user certificate to present; default: IDENTITY-cert.pub
beside the identity, if it exists), RevokedHostKeys (host keys and certificates to
refuse: a text list or a KRL from ssh-keygen -k), IgnoreUnknown. The first value
found wins; flags win over the file.

Host certificates: a known_hosts line '@cert-authority *.example.com ssh-ed25519 KEY'
trusts the host certificates that CA signs for those hosts: no prompt, nothing
written, and a rotated host key certified by it is not 'changed'. A certificate from
that CA that fails (expired, another host, a user certificate) is refused, never
trusted on first use. '@revoked PATTERNS KEY' refuses a host key or a CA key.";

/// Checks ADDR's syntax at parse time, and keeps it as typed: whether it names a
/// port, and the name a config file's Host lines match, come from the text.
fn parse_destination(text: &str) -> Result<String, String> {
    text.parse::<Target>()?;
    Ok(text.to_owned())
}

impl Args {
    /// `-v` given how many times.
    pub(super) fn verbose(&self) -> u8 {
        self.verbose
    }
}

/// Where to connect once ADDR, -p and the config file are combined.
#[derive(Debug)]
struct Destination {
    /// The address and port: the config file's HostName, if any, is what known_hosts
    /// names, as in ssh.
    target: Target,
    /// What the config file said about the host typed.
    config: HostConfig,
}

/// Applies the config file under the flags: ADDR's port, then -p, then the file's
/// Port, then the default; every trust flag wins over the file's setting.
fn resolve(args: &mut Args) -> anyhow::Result<Destination> {
    let typed: Target = args.addr.parse().map_err(anyhow::Error::msg)?;
    let names_port = names_port(&args.addr, &typed);
    let config = match config_file(args.config_file.as_deref()) {
        Some(path) => {
            debug!("reading configuration file {}", path.display());
            let home = directories::BaseDirs::new().map(|dirs| dirs.home_dir().to_path_buf());
            // As ssh: the default file must be the user's own; `-F FILE` is the
            // user's explicit choice (`-F /dev/null` included).
            let check_owner = args.config_file.is_none();
            ClientConfigFile::load(&path, home.as_deref(), check_owner)?.for_host(&typed.host)
        }
        None => HostConfig::default(),
    };
    if let (true, Some(port)) = (names_port, args.port) {
        if port != typed.port {
            return Err(StatusError {
                status: ExitStatus::Usage,
                message: format!(
                    "the port is given twice: {} in '{}' and -p {port}; give it once",
                    typed.port, args.addr
                ),
            }
            .into());
        }
    }
    let host = match &config.host_name {
        // An IPv6 address, or a name that must parse as ADDR's host does.
        Some(name) if name.parse::<std::net::Ipv6Addr>().is_ok() => name.clone(),
        Some(name) if name.contains(':') => anyhow::bail!(
            "HostName '{name}' for '{}' has a port in it; use Port for that",
            typed.host
        ),
        Some(name) => {
            name.parse::<Target>()
                .map_err(|error| anyhow::anyhow!("HostName for '{}': {error}", typed.host))?
                .host
        }
        None => typed.host.clone(),
    };
    let port = match names_port {
        true => typed.port,
        false => args.port.or(config.port).unwrap_or(client::DEFAULT_PORT),
    };
    let trust = &mut args.trust;
    if trust.identity.is_none() {
        trust.identity = config.identity_file.clone();
    }
    if trust.known_hosts.is_none() {
        trust.known_hosts = config.known_hosts_file.clone();
    }
    if !trust.accept_new_host && trust.expect_fingerprint.is_none() {
        trust.expect_fingerprint = config.fingerprint_pin;
        if trust.expect_fingerprint.is_none() {
            trust.accept_new_host = matches!(
                config.strict_host_key_checking,
                Some(StrictHostKeyChecking::AcceptNew | StrictHostKeyChecking::No)
            );
        }
    }
    if args.connect_timeout.is_none() {
        args.connect_timeout = config.connect_timeout;
    }
    if args.cipher.is_none() {
        args.cipher = config.ciphers.flatten();
    }
    if args.protocol.is_none() {
        args.protocol = config.protocol;
    }
    Ok(Destination {
        target: Target { host, port },
        config,
    })
}

/// Whether ADDR itself names a port (`host:1`, `[::1]:1`), not just a host.
fn names_port(text: &str, parsed: &Target) -> bool {
    text != parsed.host && text != format!("[{}]", parsed.host)
}

/// The configuration file to read: `-F FILE` (which must exist), none for `-F none`,
/// else the default one if it exists (without a home directory there is none, and
/// every setting comes from the flags).
fn config_file(explicit: Option<&std::path::Path>) -> Option<PathBuf> {
    match explicit {
        Some(path) if path.as_os_str() == "none" => None,
        Some(path) => Some(path.to_path_buf()),
        None => crate::paths::default_file(client_config::FILE_NAME)
            .ok()
            .filter(|path| path.exists()),
    }
}

pub(super) fn run(mut args: Args) -> anyhow::Result<()> {
    let destination = resolve(&mut args)?;
    if args.print_settings {
        return print_settings(&args, &destination);
    }
    let mut trust = args.trust.load()?;
    let protocol = args.protocol.unwrap_or_default();
    let identity_path =
        super::path_or_default(args.trust.identity.clone(), crate::paths::IDENTITY_FILE)?;
    trust.identity = certificate::attach(
        trust.identity,
        &identity_path,
        destination.config.certificate_file.as_deref(),
        protocol,
    )?;
    let revoked = revoked_host_keys(destination.config.revoked_host_keys.as_deref())?;
    // Before connecting: a known_hosts that is a FIFO or a directory fails now.
    noise_echo::fsutil::check_updatable(&trust.known_hosts).context("cannot use known_hosts")?;
    debug!("known_hosts file {}", trust.known_hosts.display());
    // StrictHostKeyChecking yes: never ask, as ssh.
    let prompt = match destination.config.strict_host_key_checking {
        Some(StrictHostKeyChecking::Yes) => None,
        _ => host_key_prompt(),
    };
    let config = ClientConfig::known_hosts(trust.identity, trust.known_hosts)
        .unknown_host(trust.unknown_host)
        .prompt(prompt)
        .revoked_host_keys(revoked)
        .connect_timeout(timeout(
            args.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT),
        ))
        .handshake_timeout(timeout(args.handshake_timeout))
        .bind_address(args.bind_address)
        .protocol(protocol)
        .cipher(args.cipher);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let result = runtime.block_on(session(destination.target, config, args.messages));
    // A read of standard input cannot be cancelled: don't wait for one in progress
    // (the server closed the session while we waited for a line).
    runtime.shutdown_background();
    result
}

/// `RevokedHostKeys FILE`: loaded before connecting, so a file that cannot be read
/// (or a broken KRL) fails at once, naming it, rather than trusting revoked keys.
/// Lines of a text list that cannot be read are reported and skipped, as
/// authorized_keys lines are; the others still revoke.
fn revoked_host_keys(
    path: Option<&std::path::Path>,
) -> anyhow::Result<Option<std::sync::Arc<RevokedKeys>>> {
    let Some(path) = path else {
        return Ok(None);
    };
    let revoked = RevokedKeys::load(path).context("RevokedHostKeys")?;
    for warning in &revoked.warnings {
        stderr_line!("warning: {}", super::printable(&warning.to_string()));
    }
    debug!("revoked host keys file {}", path.display());
    Ok(Some(std::sync::Arc::new(revoked)))
}

/// `-G`: what `connect` would use, one `keyword value` line each, as `ssh -G`.
fn print_settings(args: &Args, destination: &Destination) -> anyhow::Result<()> {
    let trust = &args.trust;
    let identity = super::path_or_default(trust.identity.clone(), crate::paths::IDENTITY_FILE)?;
    let known_hosts =
        super::path_or_default(trust.known_hosts.clone(), crate::paths::KNOWN_HOSTS_FILE)?;
    let strict = match (
        trust.accept_new_host,
        destination.config.strict_host_key_checking,
    ) {
        (true, _) => "accept-new",
        (false, Some(StrictHostKeyChecking::Yes)) => "yes",
        (false, _) => "ask",
    };
    let mut lines = vec![
        format!("hostname {}", destination.target.host),
        format!("port {}", destination.target.port),
        format!("identityfile {}", identity.display()),
        format!("userknownhostsfile {}", known_hosts.display()),
        format!("stricthostkeychecking {strict}"),
    ];
    lines.push(format!(
        "connecttimeout {}",
        args.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT)
    ));
    if let Some(pin) = trust.expect_fingerprint {
        lines.push(format!("fingerprintpin {pin}"));
    }
    if let Some(address) = args.bind_address {
        lines.push(format!("bindaddress {address}"));
    }
    // As given (flag or file); the defaults are in --help.
    if let Some(protocol) = args.protocol {
        lines.push(format!("protocol {}", protocol.version()));
    }
    if let Some(suite) = args.cipher {
        lines.push(format!("ciphers {}", suite.short_name()));
    }
    // As ssh -G: only when set (the file beside the identity is found at connect time).
    if let Some(file) = &destination.config.certificate_file {
        lines.push(format!("certificatefile {}", file.display()));
    }
    if let Some(file) = &destination.config.revoked_host_keys {
        lines.push(format!("revokedhostkeys {}", file.display()));
    }
    let mut out = String::new();
    for line in &lines {
        // Names from the file and the command line: escaped, one line each.
        out.push_str(&super::printable(line));
        out.push('\n');
    }
    std::io::stdout()
        .write_all(out.as_bytes())
        .context("cannot write the settings to standard output")
}

/// [`classify`] for the errors of connecting, which can name the server: a refusal
/// before the handshake, or something that is not a noise-echo server at all.
fn connect_failed(error: ClientError, target: &Target) -> anyhow::Error {
    let (status, message) = match &error {
        ClientError::Wire(WireError::NotAllowed(Refusal::ClosedBeforeHandshake)) => (
            ExitStatus::ConnectionFailed,
            // We cannot know which of these it was: say each, truthfully.
            format!(
                "the server at {target} closed the connection before the handshake: it may be \
                 busy, or refusing this address after failed attempts; try again later"
            ),
        ),
        ClientError::Wire(WireError::NotAllowed(Refusal::ClosedBeforeAnswer)) => (
            ExitStatus::ConnectionFailed,
            // Never a silent fallback to v1: the library's text says what each cause
            // needs; the CLI adds which server.
            with_target(&Refusal::ClosedBeforeAnswer.to_string(), target),
        ),
        ClientError::Wire(WireError::PeerMisbehaved(Violation::NotNoiseEcho { sent, .. })) => (
            ExitStatus::ProtocolError,
            format!("{target} is not a noise-echo server: {sent}"),
        ),
        _ => return classify(error),
    };
    StatusError { status, message }.into()
}

/// `the server closed ...` as `the server at TARGET closed ...`: one text for the
/// library and the CLI, which knows the address.
fn with_target(text: &str, target: &Target) -> String {
    match text.strip_prefix("the server ") {
        Some(rest) => format!("the server at {target} {rest}"),
        None => format!("{target}: {text}"),
    }
}

/// Gives a client error the exit status that says what kind of failure it was.
pub(super) fn classify(error: ClientError) -> anyhow::Error {
    let status = match &error {
        ClientError::Connect { .. } | ClientError::Timeout { .. } => ExitStatus::ConnectionFailed,
        ClientError::ClosedDuringPrompt => ExitStatus::ConnectionFailed,
        ClientError::HostKeyNotTrusted(_) => ExitStatus::HostKeyNotTrusted,
        ClientError::KnownHosts { .. } => ExitStatus::Failure,
        ClientError::Closed => ExitStatus::ConnectionFailed,
        // No version or suite in common: the server answered, as the protocol says.
        ClientError::NoCommonSuite { .. }
        | ClientError::SuiteRetryNeeded { .. }
        | ClientError::RetryRefused { .. }
        | ClientError::VersionNotSpoken { .. } => ExitStatus::ProtocolError,
        // Refused here, before sending, as the server would have refused it.
        ClientError::RequestTooLarge { .. } => ExitStatus::Failure,
        ClientError::Wire(wire) => match wire {
            WireError::Io(_) => ExitStatus::ConnectionFailed,
            WireError::PeerMisbehaved(_) => ExitStatus::ProtocolError,
            WireError::NotAllowed(Refusal::PermissionDenied(_)) => ExitStatus::PermissionDenied,
            WireError::NotAllowed(Refusal::ClosedBeforeHandshake | Refusal::ClosedBeforeAnswer) => {
                ExitStatus::ConnectionFailed
            }
            WireError::Mismatch(_) => ExitStatus::ProtocolError,
            WireError::NotAllowed(_) => ExitStatus::HostKeyNotTrusted,
            WireError::Internal(_) => ExitStatus::Failure,
            _ => ExitStatus::Failure,
        },
        // Today's variants are all above; a new one is a plain failure until mapped.
        _ => ExitStatus::Failure,
    };
    let message = match (&error, client::permission_denied_reason(&error)) {
        (_, Some(reason)) => format!("the server refused this key: {}", super::printable(reason)),
        (ClientError::HostKeyNotTrusted(refusal), None) => super::render::host_key_error(refusal),
        // Every message includes its causes' text (see the library's error types):
        // the chain adds nothing.
        (_, None) => error.to_string(),
    };
    StatusError { status, message }.into()
}
