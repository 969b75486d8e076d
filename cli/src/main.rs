//! The `noise-echo` command line: argument parsing, dispatch to one module per
//! subcommand, exit codes, and error printing.
//!
//! `main` returns an exit code instead of calling `process::exit` deep inside, and
//! prints errors once, as `error: {:#}` (the whole context chain on one line).

#![forbid(unsafe_code)]

use std::io::{self, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Writes one line to stderr, as `eprintln!` does, but never panics: `eprintln!`
/// panics when stderr is closed (`noise-echo ... 2>&-`, a collector that stopped),
/// which would turn a warning into a crash. A line that cannot be written is lost,
/// as a log line is.
macro_rules! stderr_line {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

mod attack;
mod authorize;
mod bench;
mod client_config;
mod completions;
mod connect;
mod demo;
mod fingerprint;
mod keygen;
mod man;
mod metrics;
mod passphrase;
mod paths;
mod render;
mod serve;
mod units;

/// Exit statuses, documented in the README. Scripts can tell a network failure from
/// a trust failure from a refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ExitStatus {
    /// Everything worked.
    Success = 0,
    /// Any other failure: bad files, bad arguments detected after parsing, I/O.
    Failure = 1,
    /// The command line could not be parsed (clap's own status).
    Usage = 2,
    /// The server could not be reached, or the connection broke.
    ConnectionFailed = 3,
    /// The server's host key is unknown and was not accepted, or it changed, or it is revoked.
    HostKeyNotTrusted = 4,
    /// The server refused our key (`permission denied`).
    PermissionDenied = 5,
    /// The peer broke the protocol (bad frame, decryption failure, truncation...).
    ProtocolError = 6,
}

impl From<ExitStatus> for ExitCode {
    fn from(status: ExitStatus) -> Self {
        ExitCode::from(status as u8)
    }
}

/// An error that knows which exit status it should produce.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct StatusError {
    /// The exit status.
    pub status: ExitStatus,
    /// The message printed after `error: `.
    pub message: String,
}

#[derive(Debug, Parser)]
#[command(
    name = "noise-echo",
    version,
    about = "An encrypted echo service: Noise XX with OpenSSH-compatible Ed25519 keys",
    long_about = "An encrypted echo service: every connection is a Noise XX handshake in which \
                  both ends prove an Ed25519 identity kept in OpenSSH's file formats, and the \
                  server answers each request with its uppercase form.",
    after_long_help = TOP_LEVEL_HELP
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Generate an Ed25519 identity (private key FILE, public key FILE.pub), or print a key's public half (-y).
    Keygen(keygen::Args),
    /// Print the fingerprint of each key in key, certificate, authorized_keys or known_hosts files, as ssh-keygen -lf.
    Fingerprint(fingerprint::Args),
    /// Add keys to the server's authorized_keys, list them, or remove some.
    Authorize(authorize::Args),
    /// Run the server.
    Serve(Box<serve::Args>),
    /// Connect to a server, send requests, print the replies.
    Connect(connect::Args),
    /// Show the whole product in one process: keys, server, client, a refusal.
    Demo(demo::Args),
    /// Measure the server: handshakes, latency, throughput, pipelining, idle memory.
    Bench(bench::Args),
    /// A test tool: flood or load a server on this machine (loopback only).
    Attack(attack::Args),
    /// Print a shell completion script (bash, zsh or fish) for noise-echo.
    Completions(completions::Args),
    /// Print the manual page (roff) of noise-echo or of one of its commands.
    Man(man::Args),
}

/// The top-level `--help`'s closing text: a first session, and the exit statuses.
const TOP_LEVEL_HELP: &str = "\
Examples:
  noise-echo keygen                         # your identity, in the config directory
  noise-echo serve --listen 0.0.0.0:1234    # on the server
  noise-echo authorize ann.pub              # on the server: let ann's key in
  noise-echo connect server.example hello   # prints HELLO
  noise-echo connect prod hello             # with 'Host prod' in the config file
  noise-echo help connect                   # every flag of one command

Exit statuses:
  0  success
  1  any other error (bad file, refused request, ...)
  2  the command line could not be parsed
  3  the connection failed (unreachable, broken, busy or refused)
  4  the server's host key is not trusted (unknown, changed, revoked)
  5  permission denied: the server does not accept our key
  6  protocol error: the peer broke the protocol

Files are in the noise-echo config directory (~/.config/noise-echo on Linux):
id_ed25519, host_ed25519_key, authorized_keys, known_hosts, config.";

/// The format of the server's log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub(crate) enum LogFormat {
    /// One line of text per event, for people.
    #[default]
    Text,
    /// One JSON object per line, with each event's fields, for log pipelines.
    Json,
}

/// Runs the command line and returns the process exit code.
fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            // --help and --version are "errors" to clap that print to stdout and exit 0.
            let _ = error.print();
            return if error.use_stderr() {
                ExitStatus::Usage.into()
            } else {
                ExitStatus::Success.into()
            };
        }
    };
    // The server's log is its output; other commands only log what goes wrong.
    // `-v` shows each step (debug), `-vv` more (trace), as `ssh -v` and `-vv`.
    let (default_level, verbose, log_format) = match &cli.command {
        // --check reports every problem itself: the library's log would repeat them.
        Command::Serve(args) if args.check() => ("error", args.verbose(), args.log_format()),
        Command::Serve(args) => ("info", args.verbose(), args.log_format()),
        Command::Connect(args) => ("warn", args.verbose(), LogFormat::Text),
        _ => ("warn", 0, LogFormat::Text),
    };
    init_logging(default_level, verbose, log_format);
    let result = match cli.command {
        Command::Keygen(args) => keygen::run(args),
        Command::Fingerprint(args) => fingerprint::run(args),
        Command::Authorize(args) => authorize::run(args),
        Command::Serve(args) => serve::run(*args),
        Command::Connect(args) => connect::run(args),
        Command::Demo(args) => demo::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Attack(args) => attack::run(args),
        Command::Completions(args) => completions::run(args),
        Command::Man(args) => man::run(args),
    };
    match result {
        Ok(()) => ExitStatus::Success.into(),
        Err(error) if is_broken_pipe(&error) => ExitStatus::Success.into(),
        Err(error) => {
            match log_format {
                // A log pipeline reads every line of stderr as JSON: the last one too.
                LogFormat::Json => tracing::error!("{error:#}"),
                // Not eprintln!, which panics when stderr is closed.
                LogFormat::Text => {
                    let _ = writeln!(io::stderr(), "error: {error:#}");
                }
            }
            exit_status_of(&error).into()
        }
    }
}

/// The clap definition of the whole command line, for completions and man pages.
pub(crate) fn command_definition() -> clap::Command {
    <Cli as clap::CommandFactory>::command()
}

/// Logs go to stderr, so they never mix with replies on stdout. `-v` (debug) and
/// `-vv` (trace) win over `RUST_LOG`, which wins over `default_level`.
fn init_logging(default_level: &str, verbose: u8, format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = match verbose {
        0 => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level)),
        1 => EnvFilter::new("debug"),
        _ => EnvFilter::new("trace"),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr)
        // A log line that cannot be written (stderr closed: a stopped collector,
        // a closed terminal) is dropped. The default reports it with eprintln!,
        // which panics on that same stderr: a server would die of its own log.
        .log_internal_errors(false)
        .with_target(false);
    let _ = match format {
        LogFormat::Text => builder
            .with_ansi(io::IsTerminal::is_terminal(&io::stderr()))
            .try_init(),
        // Flattened: `jq .peer` rather than `jq .fields.peer`.
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// A reader closing our stdout early (`noise-echo ... | head -1`) is not an error.
/// A broken pipe on the network is one: a server that closes while we send (after
/// refusing a request over its limit) made a refused request exit 0.
fn is_broken_pipe(error: &anyhow::Error) -> bool {
    let from_the_network = error.chain().any(|cause| {
        cause.is::<noise_echo::wire::WireError>() || cause.is::<noise_echo::client::ClientError>()
    });
    !from_the_network
        && error.chain().any(|cause| {
            cause
                .downcast_ref::<io::Error>()
                .is_some_and(|io_error| io_error.kind() == io::ErrorKind::BrokenPipe)
        })
}

fn exit_status_of(error: &anyhow::Error) -> ExitStatus {
    error
        .chain()
        .find_map(|cause| {
            cause
                .downcast_ref::<StatusError>()
                .map(|status| status.status)
        })
        .unwrap_or(ExitStatus::Failure)
}

/// Text from a file (a key comment, a line) made safe to print on a terminal: control
/// characters are shown escaped, so a hostile comment cannot move the cursor, recolour
/// or retitle the terminal of the administrator who lists the keys.
pub(crate) fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut escaped = String::with_capacity(text.len() + 8);
    for character in text.chars() {
        if character.is_control() {
            escaped.extend(character.escape_default());
        } else {
            escaped.push(character);
        }
    }
    std::borrow::Cow::Owned(escaped)
}

/// How a client proves itself and decides whether to trust a server: the flags
/// `connect` and `bench` share.
#[derive(Debug, clap::Args)]
pub(crate) struct ClientTrustArgs {
    /// Our private key [default: id_ed25519 in the noise-echo config directory]
    #[arg(short = 'i', long = "identity", value_name = "FILE")]
    identity: Option<PathBuf>,
    /// Servers we trust [default: known_hosts in the noise-echo config directory]
    #[arg(long, value_name = "FILE")]
    known_hosts: Option<PathBuf>,
    /// Trust an unknown server's key and remember it (never a changed one)
    #[arg(long, conflicts_with = "expect_fingerprint")]
    accept_new_host: bool,
    /// Require the server's key to have this fingerprint, on every connection (an unknown server with it is remembered)
    #[arg(long, value_name = "SHA256:...")]
    expect_fingerprint: Option<noise_echo::identity::Fingerprint>,
}

/// What [`ClientTrustArgs`] resolve to.
pub(crate) struct ClientTrust {
    /// Our identity, with its Noise key derived.
    pub identity: noise_echo::wire::LocalIdentity,
    /// The known_hosts file.
    pub known_hosts: PathBuf,
    /// What to do with an unknown server key.
    pub unknown_host: noise_echo::client::UnknownHostPolicy,
}

impl ClientTrustArgs {
    /// Loads the identity and resolves the default paths.
    pub(crate) fn load(&self) -> anyhow::Result<ClientTrust> {
        use noise_echo::client::UnknownHostPolicy;
        let identity_path = path_or_default(self.identity.clone(), paths::IDENTITY_FILE)?;
        let known_hosts = path_or_default(self.known_hosts.clone(), paths::KNOWN_HOSTS_FILE)?;
        // An encrypted key is decrypted with a passphrase asked as ssh asks it.
        let identity = noise_echo::openssh::keyfile::read_identity_with_passphrase(
            &identity_path,
            &mut passphrase::for_key,
        )
        .map_err(|error| {
            let missing = matches!(&error, noise_echo::openssh::keyfile::KeyFileError::Io { cause, .. }
                if cause.kind() == io::ErrorKind::NotFound);
            let context = if missing {
                format!(
                    "cannot load the identity (make one with: noise-echo keygen -f {})",
                    identity_path.display()
                )
            } else {
                "cannot load the identity".to_owned()
            };
            anyhow::Error::new(error).context(context)
        })?;
        tracing::debug!(
            "identity file {} ({})",
            identity_path.display(),
            identity.public_key().fingerprint()
        );
        let unknown_host = match (self.expect_fingerprint, self.accept_new_host) {
            (Some(fingerprint), _) => UnknownHostPolicy::ExpectFingerprint(fingerprint),
            (None, true) => UnknownHostPolicy::AcceptNew,
            (None, false) => UnknownHostPolicy::Refuse,
        };
        Ok(ClientTrust {
            identity: noise_echo::wire::LocalIdentity::new(&identity),
            known_hosts,
            unknown_host,
        })
    }
}

/// Uses `explicit` if given, else the default file `name` in the config directory.
fn path_or_default(explicit: Option<PathBuf>, name: &str) -> anyhow::Result<PathBuf> {
    match explicit {
        Some(path) => Ok(path),
        None => paths::default_file(name),
    }
}

#[cfg(test)]
mod tests {
    use super::printable;

    #[test]
    fn only_a_closed_stdout_is_a_broken_pipe_that_succeeds() {
        use std::io::{Error, ErrorKind};
        let pipe = || Error::from(ErrorKind::BrokenPipe);
        let stdout = anyhow::Error::from(pipe()).context("cannot write");
        assert!(super::is_broken_pipe(&stdout));
        let network = anyhow::Error::from(noise_echo::wire::WireError::Io(pipe()))
            .context("cannot send requests");
        assert!(!super::is_broken_pipe(&network));
        let connect = anyhow::Error::from(noise_echo::client::ClientError::Wire(
            noise_echo::wire::WireError::Io(pipe()),
        ));
        assert!(!super::is_broken_pipe(&connect));
        assert!(!super::is_broken_pipe(&anyhow::anyhow!("other")));
    }

    #[test]
    fn control_characters_are_escaped_and_other_text_kept() {
        assert_eq!(printable("alice@host ß 안녕"), "alice@host ß 안녕");
        assert_eq!(
            printable("evil\u{1b}[31mred\u{7}"),
            "evil\\u{1b}[31mred\\u{7}"
        );
        assert_eq!(printable("tab\there"), "tab\\there");
    }
}
