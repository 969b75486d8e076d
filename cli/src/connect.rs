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

use std::io::{IsTerminal, Write as _};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use tracing::debug;

use super::{ExitStatus, StatusError};
use crate::client_config::{self, ClientConfigFile, HostConfig, StrictHostKeyChecking};
use noise_echo::client::{self, ClientConfig, ClientError, Target, UnknownHost};
use noise_echo::identity::Fingerprint;
use noise_echo::wire::{reply_limit, RecordType, RecvHalf, Refusal, Reply, Violation, WireError};

/// What `connect --help` says after the options: the output rule and the statuses.
const AFTER_HELP: &str = "\
Output:
  Each reply goes to standard output on its own line, in the order of the requests.
  A refused request prints nothing there (so an empty line is always the reply to an
  empty request) and 'error: request N refused: REASON' on standard error; the
  other requests still get their replies (unless the refusal ends the session: a
  request over the server's limit), and the exit status is 1.
  When the server ends the session (idle timeout, shutdown, a revoked key), connect
  says 'Connection to HOST closed by remote host[: REASON]' at once, even while it
  waits for input.

Exit status:
  0  every request answered (also when a reader such as head closes our output)
  1  a request was refused, or another error (a bad key file, unreadable input)
  2  the command line could not be parsed
  3  the connection failed or broke, or the server closed the session
  4  the server's host key is not trusted (unknown and not accepted, changed, revoked)
  5  permission denied: the server refused our key, or revoked it during the session
  6  the server broke the protocol";

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
Also read: UserKnownHostsFile, IgnoreUnknown. The first value found wins; flags win
over the file.";

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
    let trust = args.trust.load()?;
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
        .connect_timeout(timeout(
            args.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT),
        ))
        .handshake_timeout(timeout(args.handshake_timeout));
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

/// Where requests come from.
enum Requests {
    Arguments(Vec<String>),
    Stdin,
}

async fn session(
    target: Target,
    config: ClientConfig,
    messages: Vec<String>,
) -> anyhow::Result<()> {
    let connection = client::connect(&target, config)
        .await
        .map_err(|error| connect_failed(error, &target))?;
    if let Some(host_field) = connection.newly_known_as() {
        eprintln!(
            "Warning: Permanently added '{host_field}' (ED25519) to the list of known hosts."
        );
    }
    debug!("session established with {target}");
    exchange(&target, connection, messages).await
}

/// The most requests sent and not yet answered: the writer waits beyond it, so a
/// server that reads requests and never answers costs bounded memory (the length
/// of each unanswered request is kept, for its reply's limit).
const MAX_IN_FLIGHT: usize = 1 << 16;

/// What the request writer is doing, for the reader to tell, when the server
/// closes, a session it ended on its own (we were waiting for input) from one that
/// broke while requests were on their way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WriterState {
    /// Sending requests, or about to read more input that is already buffered.
    Sending,
    /// Waiting for the next line of standard input, which may never come.
    WaitingForInput,
    /// Done with the input (its end, or an error reading it): the writer ends by
    /// itself.
    Done,
}

/// Sends the requests from one task and prints the replies in this one, until
/// both are done or the server ends the session.
///
/// Every reply's limit follows its request (the writer queues each request's
/// length before sending it), so a server with any request limit works and none
/// can make us buffer more than the uppercase of what we sent. When the server
/// closes while we wait for input, this says so at once, with the server's
/// reason if it sent one, instead of at the next line.
async fn exchange(
    target: &Target,
    connection: client::Connection,
    messages: Vec<String>,
) -> anyhow::Result<()> {
    let (mut receiver, mut sender) = connection.into_halves();
    let requests = if messages.is_empty() {
        Requests::Stdin
    } else {
        Requests::Arguments(messages)
    };
    let (lengths_tx, mut lengths) = tokio::sync::mpsc::channel::<usize>(MAX_IN_FLIGHT);
    let (state_tx, mut writer_state) = tokio::sync::watch::channel(WriterState::Sending);
    let mut writer = tokio::spawn(async move {
        let result = send_requests(&mut sender, requests, &lengths_tx, &state_tx).await;
        state_tx.send_replace(WriterState::Done);
        drop(lengths_tx);
        // Our end of stream tells the server we are done; it answers what it has.
        let shutdown = match result {
            Ok(()) => sender.shutdown().await.map_err(SendError::Network),
            Err(_) => Ok(()),
        };
        result.and(shutdown)
    });

    let replies = match print_replies(target, &mut receiver, &mut lengths).await {
        Ok(replies) => replies,
        // Includes a reader of our output that went away (`| head -1`): a broken
        // pipe is success (main), and waiting for more input would be pointless.
        Err(error) => {
            writer.abort();
            return Err(error);
        }
    };
    // No request sent from now on can be answered: a writer waiting for room in
    // the queue stops (what is queued stays readable, to count it).
    lengths.close();
    // The server ended the session. If the writer is waiting for a line, it would
    // only notice at the next one: say so now, and leave it (the runtime is shut
    // down without waiting for standard input). Otherwise it ends soon: either it
    // is done, or its writes fail on the closed connection.
    let writer_result = tokio::select! {
        result = &mut writer => Some(result.context("the request writer panicked")?),
        Ok(_) = writer_state.wait_for(|state| *state == WriterState::WaitingForInput) => {
            writer.abort();
            None
        }
    };
    let unanswered = std::iter::from_fn(|| lengths.try_recv().ok()).count() as u64;
    verdict(target, &replies, writer_result, unanswered)
}

/// What the reader saw of the session.
struct Replies {
    /// Replies received, RESPONSE or ERROR: each answers one request, in order.
    answered: u64,
    /// Of those, the ERRORs.
    refused: u64,
    /// An ERROR that answered no request: the server's reason for closing.
    closing_reason: Option<String>,
}

/// Prints each RESPONSE on stdout and each refusal on stderr until the server
/// ends its stream. `lengths` has the length of each request sent and not yet
/// answered, oldest first.
async fn print_replies<R: tokio::io::AsyncRead + Unpin>(
    target: &Target,
    receiver: &mut RecvHalf<R>,
    lengths: &mut tokio::sync::mpsc::Receiver<usize>,
) -> anyhow::Result<Replies> {
    let mut stdout = tokio::io::BufWriter::new(tokio::io::stdout());
    let mut replies = Replies {
        answered: 0,
        refused: 0,
        closing_reason: None,
    };
    loop {
        let mut answers_a_request = false;
        let reply = receiver
            .read_reply_with(|header| match lengths.try_recv() {
                Ok(len) => {
                    answers_a_request = true;
                    reply_limit(header.record_type, len)
                }
                // Nothing was asked: only an ERROR (a reason) may come.
                Err(_) => reply_limit(header.record_type, 0),
            })
            .await;
        let reply = match reply {
            Ok(Some(reply)) => reply,
            Ok(None) => break,
            Err(error) => {
                stdout.flush().await?;
                return Err(session_error(target, error, replies.answered));
            }
        };
        match (reply, answers_a_request) {
            (Reply::Response(mut body), true) => {
                body.push(b'\n');
                stdout.write_all(&body).await?;
                replies.answered += 1;
            }
            (Reply::Error(reason), true) => {
                // Nothing on stdout: every line there is a reply, so a refusal
                // cannot be mistaken for the reply to an empty request. What was
                // printed so far goes out first, so both streams stay in order.
                replies.answered += 1;
                replies.refused += 1;
                stdout.flush().await?;
                // The server's text: escaped, so it cannot drive our terminal.
                eprintln!(
                    "error: request {} refused: {}",
                    replies.answered,
                    super::printable(&reason)
                );
            }
            (Reply::Error(reason), false) => replies.closing_reason = Some(reason),
            (Reply::Response(_), false) => {
                stdout.flush().await?;
                return Err(StatusError {
                    status: ExitStatus::ProtocolError,
                    message: "the peer broke the protocol: the server sent a RESPONSE to no \
                              request"
                        .into(),
                }
                .into());
            }
        }
        if !receiver.has_buffered_input() {
            stdout.flush().await?;
        }
    }
    stdout.flush().await?;
    Ok(replies)
}

/// The run's result once the server has ended its stream: `writer` is the
/// writer's result, or `None` if it was left waiting for input, and `unanswered`
/// counts the requests sent that got no reply.
fn verdict(
    target: &Target,
    replies: &Replies,
    writer: Option<Result<(), SendError>>,
    unanswered: u64,
) -> anyhow::Result<()> {
    let sent = replies.answered + unanswered;
    debug!(
        "session ended: {} replies to {sent} requests ({} refused){}",
        replies.answered,
        replies.refused,
        match &replies.closing_reason {
            Some(reason) => format!("; the server closed it: {}", super::printable(reason)),
            None => String::new(),
        }
    );
    if let Some(Err(SendError::Input(error))) = writer {
        return Err(error.context("cannot read standard input"));
    }
    if replies.refused > 0 {
        // The refusals were printed; a refusal of a request over the limit is also
        // why the server closed, with the rest unanswered.
        let refused = replies.refused;
        return Err(StatusError {
            status: ExitStatus::Failure,
            message: match unanswered {
                0 => format!("the server refused {refused} of {sent} requests"),
                _ => format!(
                    "the server refused {refused} of {sent} requests and closed the \
                     connection with {unanswered} unanswered"
                ),
            },
        }
        .into());
    }
    let cut_short = matches!(writer, None | Some(Err(SendError::SessionOver)));
    if unanswered > 0 || replies.closing_reason.is_some() || cut_short {
        let reason = replies
            .closing_reason
            .as_deref()
            .map(|reason| format!(": {}", super::printable(reason)))
            .unwrap_or_default();
        let lost = match unanswered {
            0 => String::new(),
            _ => format!(" with {unanswered} of {sent} requests unanswered"),
        };
        return Err(StatusError {
            status: ExitStatus::ConnectionFailed,
            message: format!(
                "Connection to {} closed by remote host{reason}{lost}",
                target.host
            ),
        }
        .into());
    }
    match writer {
        // Every request was answered, but our end of stream did not get through.
        Some(Err(SendError::Network(error))) => Err(session_error(target, error, replies.answered)),
        _ => Ok(()),
    }
}

/// Why the request writer stopped.
#[derive(Debug)]
enum SendError {
    /// Standard input could not be read.
    Input(anyhow::Error),
    /// The connection failed while sending.
    Network(WireError),
    /// The server ended the session before this request could be sent.
    SessionOver,
}

/// An error of the established session, with its exit status. A refusal of our
/// key once the session is under way (after a reply, or for a revoked key) is the
/// server ending it: ssh's "Connection to HOST closed by remote host", with the
/// server's reason, and still status 5. `answered` counts the replies before it.
fn session_error(target: &Target, error: WireError, answered: u64) -> anyhow::Error {
    if let WireError::NotAllowed(noise_echo::wire::Refusal::PermissionDenied(reason)) = &error {
        let detail = reason
            .strip_prefix(noise_echo::wire::PERMISSION_DENIED_PREFIX)
            .map(|rest| rest.trim_start_matches(':').trim_start())
            .unwrap_or(reason);
        if answered > 0 || detail == noise_echo::server::KEY_REVOKED {
            return StatusError {
                status: ExitStatus::PermissionDenied,
                message: format!(
                    "Connection to {} closed by remote host: {}",
                    target.host,
                    super::printable(detail)
                ),
            }
            .into();
        }
    }
    classify(error.into())
}

/// Sends every request, flushing whenever no more input is immediately available.
/// Each request's length is queued for the reader before the request is written,
/// so the reply can never arrive before the reader knows its limit.
async fn send_requests<W>(
    sender: &mut noise_echo::wire::SendHalf<W>,
    requests: Requests,
    lengths: &tokio::sync::mpsc::Sender<usize>,
    state: &tokio::sync::watch::Sender<WriterState>,
) -> Result<(), SendError>
where
    W: tokio::io::AsyncWrite + Unpin,
{
    match requests {
        Requests::Arguments(messages) => {
            for message in messages {
                send_one(sender, lengths, message.as_bytes()).await?;
            }
        }
        Requests::Stdin => {
            let mut input = BufReader::with_capacity(64 * 1024, tokio::io::stdin());
            let mut line = Vec::new();
            loop {
                line.clear();
                if input.buffer().is_empty() {
                    state.send_replace(WriterState::WaitingForInput);
                }
                let read = input
                    .read_until(b'\n', &mut line)
                    .await
                    .map_err(|error| SendError::Input(error.into()))?;
                state.send_if_modified(|state| {
                    let waited = *state == WriterState::WaitingForInput;
                    *state = WriterState::Sending;
                    waited
                });
                if read == 0 {
                    break;
                }
                if line.last() == Some(&b'\n') {
                    line.pop();
                    if line.last() == Some(&b'\r') {
                        line.pop();
                    }
                }
                send_one(sender, lengths, &line).await?;
                if input.buffer().is_empty() {
                    sender.flush().await.map_err(SendError::Network)?;
                }
            }
        }
    }
    sender.flush().await.map_err(SendError::Network)
}

/// Queues one request's length for the reader, then the request itself.
async fn send_one<W>(
    sender: &mut noise_echo::wire::SendHalf<W>,
    lengths: &tokio::sync::mpsc::Sender<usize>,
    body: &[u8],
) -> Result<(), SendError>
where
    W: tokio::io::AsyncWrite + Unpin,
{
    // Waits while MAX_IN_FLIGHT requests are unanswered, after sending what is
    // queued (the replies that make room may depend on it); fails once the reader
    // has seen the end of the session.
    use tokio::sync::mpsc::error::TrySendError;
    match lengths.try_send(body.len()) {
        Ok(()) => {}
        Err(TrySendError::Closed(_)) => return Err(SendError::SessionOver),
        Err(TrySendError::Full(len)) => {
            sender.flush().await.map_err(SendError::Network)?;
            lengths
                .send(len)
                .await
                .map_err(|_| SendError::SessionOver)?;
        }
    }
    sender
        .write_record(RecordType::Request, body)
        .await
        .map_err(SendError::Network)
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
        ClientError::Wire(WireError::PeerMisbehaved(Violation::NotNoiseEcho { sent, .. })) => (
            ExitStatus::ProtocolError,
            format!("{target} is not a noise-echo server: {sent}"),
        ),
        _ => return classify(error),
    };
    StatusError { status, message }.into()
}

/// Gives a client error the exit status that says what kind of failure it was.
pub(super) fn classify(error: ClientError) -> anyhow::Error {
    let status = match &error {
        ClientError::Connect { .. } | ClientError::Timeout { .. } => ExitStatus::ConnectionFailed,
        ClientError::ClosedDuringPrompt => ExitStatus::ConnectionFailed,
        ClientError::HostKeyNotTrusted(_) => ExitStatus::HostKeyNotTrusted,
        ClientError::KnownHosts { .. } => ExitStatus::Failure,
        ClientError::Closed => ExitStatus::ConnectionFailed,
        ClientError::Wire(wire) => match wire {
            WireError::Io(_) => ExitStatus::ConnectionFailed,
            WireError::PeerMisbehaved(_) => ExitStatus::ProtocolError,
            WireError::NotAllowed(Refusal::PermissionDenied(_)) => ExitStatus::PermissionDenied,
            WireError::NotAllowed(Refusal::ClosedBeforeHandshake) => ExitStatus::ConnectionFailed,
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

/// How the user is asked about an unknown host key, as ssh asks: `$SSH_ASKPASS`
/// when ssh would use it (`SSH_ASKPASS_REQUIRE`, a display without a terminal: the
/// same rule as for passphrases), else the terminal, even when standard input is a
/// pipe. With neither (scripts, CI, tests), there is no prompt and unknown hosts are
/// refused.
fn host_key_prompt() -> Option<client::HostKeyPrompt> {
    if let Some(program) = super::passphrase::askpass_for_questions() {
        return Some(Box::new(move |unknown: &UnknownHost| {
            ask_with_askpass(&program, unknown)
        }));
    }
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .ok()?;
    Some(Box::new(move |unknown: &UnknownHost| {
        ask_on_terminal(tty, unknown)
    }))
}

/// Runs the askpass program with the question as its argument; its first line of
/// output is the answer. A program that fails or prints nothing declines.
fn ask_with_askpass(program: &str, unknown: &UnknownHost) -> std::io::Result<bool> {
    let question = super::render::unknown_host_prompt(unknown);
    let answer =
        super::passphrase::ask_askpass(program, &question).map_err(std::io::Error::other)?;
    let answer = answer.as_deref().map(String::as_str).unwrap_or_default();
    Ok(parse_answer(answer, &unknown.key.fingerprint()) == Some(true))
}

/// `Some(true)` for yes or the right fingerprint, `Some(false)` for no or a wrong
/// fingerprint, `None` for anything else.
fn parse_answer(answer: &str, fingerprint: &Fingerprint) -> Option<bool> {
    let answer = answer.trim();
    if answer.eq_ignore_ascii_case("yes") {
        return Some(true);
    }
    if answer.eq_ignore_ascii_case("no") {
        return Some(false);
    }
    answer
        .parse::<Fingerprint>()
        .ok()
        .map(|typed| typed == *fingerprint)
}

fn ask_on_terminal(tty: std::fs::File, unknown: &UnknownHost) -> std::io::Result<bool> {
    use std::io::BufRead;
    let fingerprint = unknown.key.fingerprint();
    let mut writer = &tty;
    write!(writer, "{}", super::render::unknown_host_prompt(unknown))?;
    let mut reader = std::io::BufReader::new(&tty);
    // Bounded: after a few unclear answers, treat it as no.
    for _ in 0..5 {
        let mut answer = String::new();
        if reader.read_line(&mut answer)? == 0 {
            return Ok(false);
        }
        match parse_answer(&answer, &fingerprint) {
            Some(true) => return Ok(true),
            Some(false) if answer.trim().eq_ignore_ascii_case("no") => return Ok(false),
            Some(false) => {
                writeln!(writer, "Warning: the fingerprint you typed does not match.")?;
                return Ok(false);
            }
            None => write!(writer, "Please type 'yes', 'no' or the fingerprint: ")?,
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_yes_no_or_the_fingerprint() {
        let key = noise_echo::identity::Identity::generate("k")
            .public_key()
            .fingerprint();
        let other = noise_echo::identity::Identity::generate("o")
            .public_key()
            .fingerprint();
        assert_eq!(parse_answer(" YES\n", &key), Some(true));
        assert_eq!(parse_answer("no", &key), Some(false));
        assert_eq!(parse_answer(&key.to_string(), &key), Some(true));
        assert_eq!(parse_answer(&other.to_string(), &key), Some(false));
        assert_eq!(parse_answer("y", &key), None);
    }
}
