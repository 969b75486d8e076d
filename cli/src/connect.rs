//! `noise-echo connect`: send requests to a server and print each reply on its own
//! line, in order.
//!
//! Requests come from the command line or, without MESSAGE, one per line of standard
//! input. Requests are pipelined: a writer task sends them as fast as they come (in
//! batches when they arrive faster than the network takes them) while this task
//! prints replies, so `seq 1 100000 | noise-echo connect` does not wait a round trip
//! per line, and typing at a terminal still gets each answer at once.

use std::io::{IsTerminal, Write as _};
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use super::{ExitStatus, StatusError};
use noise_echo::client::{self, ClientConfig, ClientError, Target, UnknownHost};
use noise_echo::identity::Fingerprint;
use noise_echo::wire::{RecordType, Refusal, Reply, Violation, WireError, MIN_RESPONSE_LIMIT};

#[derive(Debug, clap::Args)]
pub(super) struct Args {
    /// Server address: HOST, HOST:PORT or [IPv6]:PORT (port 1234 if not given)
    #[arg(value_name = "ADDR", default_value = "localhost:1234")]
    addr: Target,
    /// Requests to send; without any, each line of standard input is a request
    #[arg(value_name = "MESSAGE")]
    messages: Vec<String>,
    #[command(flatten)]
    trust: super::ClientTrustArgs,
    /// Give up if the server does not accept the TCP connection within SECONDS, as
    /// ssh's ConnectTimeout (0: wait as long as the system does)
    #[arg(long, value_name = "SECONDS", default_value_t = 10)]
    connect_timeout: u64,
    /// Give up if the handshake takes longer than SECONDS, not counting the time
    /// spent at the host-key prompt (0: no limit)
    #[arg(long, value_name = "SECONDS", default_value_t = 20)]
    handshake_timeout: u64,
}

/// `0` turns a timeout off, as with ssh's `ConnectTimeout=0`.
fn timeout(seconds: u64) -> Option<Duration> {
    (seconds > 0).then(|| Duration::from_secs(seconds))
}

pub(super) fn run(args: Args) -> anyhow::Result<()> {
    let trust = args.trust.load()?;
    // Before connecting: a known_hosts that is a FIFO or a directory fails now.
    noise_echo::fsutil::check_updatable(&trust.known_hosts).context("cannot use known_hosts")?;
    let config = ClientConfig::known_hosts(trust.identity, trust.known_hosts)
        .unknown_host(trust.unknown_host)
        .prompt(host_key_prompt())
        .connect_timeout(timeout(args.connect_timeout))
        .handshake_timeout(timeout(args.handshake_timeout));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let result = runtime.block_on(session(args.addr, config, args.messages));
    // A read of stdin may still be blocked in a thread (the server ended the
    // session first): don't wait for it to exit.
    runtime.shutdown_background();
    result
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
    let (mut receiver, mut sender) = connection.into_halves();
    let requests = if messages.is_empty() {
        Requests::Stdin
    } else {
        Requests::Arguments(messages)
    };
    let (sent_tx, mut sent_rx) = tokio::sync::watch::channel(0u64);
    let writer = tokio::spawn(async move {
        let result = send_requests(&mut sender, requests, &sent_tx).await;
        // Our end of stream tells the server we are done; it answers what it has.
        let shutdown = sender.shutdown().await;
        result.and(shutdown.map_err(anyhow::Error::from))
    });

    let mut stdout = tokio::io::BufWriter::new(tokio::io::stdout());
    let mut replies = 0u64;
    let mut refused = 0u64;
    let read_result: anyhow::Result<()> = async {
        while let Some(reply) = receiver
            .read_reply(MIN_RESPONSE_LIMIT)
            .await
            .map_err(|error| classify(error.into()))?
        {
            replies += 1;
            match reply {
                Reply::Response(mut body) => {
                    body.push(b'\n');
                    stdout.write_all(&body).await?;
                }
                Reply::Error(reason) => {
                    // One line per reply keeps stdout aligned with the requests; the
                    // reason goes to stderr.
                    refused += 1;
                    stdout.write_all(b"\n").await?;
                    stdout.flush().await?;
                    // The server's text: escaped, so it cannot drive our terminal.
                    eprintln!(
                        "error: the server refused request {replies}: {}",
                        super::printable(&reason)
                    );
                }
            }
            if !receiver.has_buffered_input() {
                stdout.flush().await?;
            }
        }
        stdout.flush().await?;
        Ok(())
    }
    .await;
    // The server has ended the session (a refusal, its time limit, its shutdown):
    // stop sending, or a writer waiting on an open stdin would hang us forever.
    writer.abort();
    let writer_result = match writer.await {
        Ok(result) => result,
        Err(error) if error.is_cancelled() => Ok(()),
        Err(error) => return Err(error).context("the request writer panicked"),
    };
    read_result?;
    let sent = *sent_rx.borrow_and_update();
    if let Err(error) = writer_result {
        // The server may close early on purpose (a request over its limit); what it
        // said was printed already.
        if replies >= sent {
            return Err(error.context("cannot send requests"));
        }
    }
    if replies < sent {
        return Err(StatusError {
            status: ExitStatus::Failure,
            message: format!(
                "the server closed the connection with {} of {sent} requests unanswered",
                sent - replies
            ),
        }
        .into());
    }
    if refused > 0 {
        return Err(StatusError {
            status: ExitStatus::Failure,
            message: format!("the server refused {refused} of {sent} requests"),
        }
        .into());
    }
    Ok(())
}

/// Sends every request, flushing whenever no more input is immediately available,
/// and publishes how many were sent.
async fn send_requests<W>(
    sender: &mut noise_echo::wire::SendHalf<W>,
    requests: Requests,
    sent: &tokio::sync::watch::Sender<u64>,
) -> anyhow::Result<()>
where
    W: tokio::io::AsyncWrite + Unpin,
{
    let mut count = 0u64;
    match requests {
        Requests::Arguments(messages) => {
            for message in messages {
                sender
                    .write_record(RecordType::Request, message.as_bytes())
                    .await?;
                count += 1;
                sent.send_replace(count);
            }
            sender.flush().await?;
        }
        Requests::Stdin => {
            let mut input = BufReader::with_capacity(64 * 1024, tokio::io::stdin());
            let mut line = Vec::new();
            loop {
                line.clear();
                let read = input
                    .read_until(b'\n', &mut line)
                    .await
                    .context("cannot read standard input")?;
                if read == 0 {
                    break;
                }
                if line.last() == Some(&b'\n') {
                    line.pop();
                    if line.last() == Some(&b'\r') {
                        line.pop();
                    }
                }
                sender.write_record(RecordType::Request, &line).await?;
                count += 1;
                sent.send_replace(count);
                if input.buffer().is_empty() {
                    sender.flush().await?;
                }
            }
            sender.flush().await?;
        }
    }
    Ok(())
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
fn classify(error: ClientError) -> anyhow::Error {
    let status = match &error {
        ClientError::Connect { .. } | ClientError::Timeout { .. } => ExitStatus::ConnectionFailed,
        ClientError::ClosedDuringPrompt => ExitStatus::ConnectionFailed,
        ClientError::HostKeyNotTrusted(_) => ExitStatus::HostKeyNotTrusted,
        ClientError::KnownHosts { .. } => ExitStatus::Failure,
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
