//! The session `connect` runs once connected: a writer task pipelines the requests
//! (from the command line or standard input) while this task prints each reply in
//! order, notices at once when the server ends the session, and turns how it ended
//! into the documented exit status.

use anyhow::Context;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use tracing::debug;

use super::{classify, connect_failed};
use crate::{ExitStatus, StatusError};

use noise_echo::client::{self, ClientConfig, Target};
use noise_echo::wire::{reply_limit, RecordType, RecvHalf, Reply, WireError};

/// Where requests come from.
pub(super) enum Requests {
    Arguments(Vec<String>),
    Stdin,
}

pub(super) async fn session(
    target: Target,
    config: ClientConfig,
    messages: Vec<String>,
) -> anyhow::Result<()> {
    let connection = client::connect(&target, config)
        .await
        .map_err(|error| connect_failed(error, &target))?;
    if let Some(host_field) = connection.newly_known_as() {
        // Not eprintln!, which panics when stderr is closed.
        stderr_line!(
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
    // v2: a request over the server's limit is refused here, before sending it.
    let max_request = connection.max_request();
    let (mut receiver, mut sender) = connection.into_halves();
    let requests = if messages.is_empty() {
        Requests::Stdin
    } else {
        Requests::Arguments(messages)
    };
    let (lengths_tx, mut lengths) = tokio::sync::mpsc::channel::<usize>(MAX_IN_FLIGHT);
    let (state_tx, mut writer_state) = tokio::sync::watch::channel(WriterState::Sending);
    let mut writer = tokio::spawn(async move {
        let mut limits = Limits {
            max_request,
            sent: 0,
        };
        let result =
            send_requests(&mut sender, requests, &lengths_tx, &state_tx, &mut limits).await;
        state_tx.send_replace(WriterState::Done);
        drop(lengths_tx);
        // Our end of stream tells the server we are done; it answers what it has
        // (also the requests before one refused here).
        let shutdown = match result {
            Ok(()) | Err(SendError::TooLarge { .. }) => {
                sender.shutdown().await.map_err(SendError::Network)
            }
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
    // Whether the last reply was an ERROR: a server that refuses a request too
    // large for it closes at once, and TCP may then reset the connection under our
    // unsent rest of it. The reset after the ERROR is that close, not a failure.
    let mut last_was_refusal = false;
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
            Err(WireError::Io(error)) if last_was_refusal && is_reset(&error) => {
                debug!("the connection was reset after the server's refusal: {error}");
                break;
            }
            Err(error) => {
                stdout.flush().await?;
                return Err(session_error(target, error, replies.answered));
            }
        };
        last_was_refusal = matches!(reply, Reply::Error(_));
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
                stderr_line!(
                    "error: request {} refused: {}",
                    replies.answered,
                    crate::printable(&reason)
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

/// Whether `error` is the peer's reset of the connection (or our write's
/// consequence of it).
fn is_reset(error: &std::io::Error) -> bool {
    use std::io::ErrorKind;
    matches!(
        error.kind(),
        ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe
    )
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
            Some(reason) => format!("; the server closed it: {}", crate::printable(reason)),
            None => String::new(),
        }
    );
    if let Some(Err(SendError::Input(error))) = writer {
        return Err(error.context("cannot read standard input"));
    }
    if let Some(Err(SendError::TooLarge { number, len, limit })) = writer {
        // Refused before anything of it was sent, and nothing after it either.
        let earlier = match replies.refused {
            0 => String::new(),
            refused => format!(
                "; the server refused {refused} of the {} before it",
                number - 1
            ),
        };
        return Err(StatusError {
            status: ExitStatus::Failure,
            message: format!(
                "request {number} not sent: {}{earlier}",
                client::ClientError::RequestTooLarge { len, limit }
            ),
        }
        .into());
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
            .map(|reason| format!(": {}", crate::printable(reason)))
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
    /// Request `number` (from 1) is longer than the server's limit (v2): neither
    /// it nor any request after it was sent.
    TooLarge {
        /// Which request.
        number: u64,
        /// Its length.
        len: usize,
        /// The server's max_request.
        limit: u32,
    },
}

/// The server's request limit, and how many requests went out.
struct Limits {
    /// The server's max_request (v2), `None` when it did not say (v1).
    max_request: Option<u32>,
    /// Requests sent so far.
    sent: u64,
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
                    crate::printable(detail)
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
    limits: &mut Limits,
) -> Result<(), SendError>
where
    W: tokio::io::AsyncWrite + Unpin,
{
    match requests {
        Requests::Arguments(messages) => {
            for message in messages {
                send_one(sender, lengths, limits, message.as_bytes()).await?;
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
                send_one(sender, lengths, limits, &line).await?;
                if input.buffer().is_empty() {
                    sender.flush().await.map_err(SendError::Network)?;
                }
            }
        }
    }
    sender.flush().await.map_err(SendError::Network)
}

/// Queues one request's length for the reader, then the request itself; refuses
/// it first if it is over the server's limit.
async fn send_one<W>(
    sender: &mut noise_echo::wire::SendHalf<W>,
    lengths: &tokio::sync::mpsc::Sender<usize>,
    limits: &mut Limits,
    body: &[u8],
) -> Result<(), SendError>
where
    W: tokio::io::AsyncWrite + Unpin,
{
    if let Some(limit) = limits.max_request {
        if body.len() > limit as usize {
            return Err(SendError::TooLarge {
                number: limits.sent + 1,
                len: body.len(),
                limit,
            });
        }
    }
    limits.sent += 1;
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
