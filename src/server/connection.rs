//! One connection, from the first handshake byte to the close: the responder side of
//! the handshake under its deadline, the allow-list check and the per-key session
//! cap, the echo loop with its idle timeout, live revocation, session time limit and
//! its share of the memory budget, refusals that reach the client, and the graceful
//! close on shutdown (every request read is answered, then FIN, then the client's
//! remaining bytes are drained so the close is never a reset).

use std::future::Future;
use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant, SystemTime};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tracing::{debug, info};

use super::penalty::Verdict;
use crate::wire::RecordHeader;

use super::authorized::AuthorizedKeysCache;
use super::config::{KEY_REVOKED, SESSION_TIME_LIMIT, TOO_MANY_SESSIONS};
use super::listener::{canonical_ip, Admitted};
use super::resources::{self, KeySession, Reservation, TRANSPORT_BUFFER};
use super::Shared;
use crate::identity::PublicKey;
use crate::wire::{self, RecordType, RecvHalf, SendHalf, WireError};

/// After refusing a client, how long and how much we keep reading (and discarding)
/// before closing, so the client reads our ERROR instead of a connection reset.
pub(super) const REFUSAL_DRAIN_TIME: Duration = Duration::from_millis(500);
pub(super) const REFUSAL_DRAIN_BYTES: usize = 4 << 20;
/// How long sending a final ERROR and closing may take: a peer that does not read
/// must not hold the connection open.
pub(super) const REFUSAL_SEND_TIME: Duration = Duration::from_secs(2);
/// The memory a session may have in flight without drawing on the budget (a small
/// request's worst case, with the replies queued but not yet written): small
/// requests never wait for memory, so honest clients are answered while large
/// requests of others wait. Part of every session's constant cost.
pub(super) const FREE_IN_FLIGHT: u64 = 16 * 1024;
/// How long before the end of the shutdown grace period a session stops draining
/// and closes, so the server is done by then.
pub(super) const STOP_MARGIN: Duration = Duration::from_millis(100);

/// Serves one connection.
pub(super) struct Handler {
    /// The client's address, for `from=` and the log.
    pub(super) peer: SocketAddr,
    /// Shared, read-only settings.
    pub(super) shared: Arc<Shared>,
    /// The allow-list, consulted once the client's key is known.
    pub(super) authorized_keys: Arc<AuthorizedKeysCache>,
    /// Tells the handler the server is stopping.
    pub(super) shutdown_signal: watch::Receiver<bool>,
    /// Changes when open sessions must check their key again.
    pub(super) reload: watch::Receiver<u64>,
    /// Dropped with the handler: lets shutdown know this connection is finished.
    /// `None` outside the accept loop.
    pub(super) _connection_done: Option<mpsc::Sender<()>>,
}

/// What a connection did, for its one log line.
#[derive(Debug, Default)]
pub(super) struct Summary {
    /// The client's key, once the handshake has proven it.
    pub(super) client: Option<PublicKey>,
    /// The comment of the authorized_keys line that admitted it.
    pub(super) comment: String,
    /// Requests answered.
    pub(super) requests: u64,
    /// Request body bytes received.
    pub(super) bytes_in: u64,
    /// Reply body bytes sent.
    pub(super) bytes_out: u64,
}

/// How a connection ended.
pub(super) enum Outcome {
    /// The client finished and closed, or the server stopped.
    Closed,
    /// The client's key is not allowed.
    Denied(String),
    /// The client's key was removed from authorized_keys during the session.
    Revoked,
    /// The client sent a request over the limit.
    TooLarge { len: u32 },
    /// The handshake did not complete in time.
    HandshakeTimeout,
    /// The client closed after the server's key was sent, without sending its own
    /// (it declined an unknown host key, most likely).
    Declined,
    /// The handshake was closed unfinished to make room for a newcomer.
    Evicted,
    /// The session sat idle too long.
    IdleTimeout,
    /// The client did not take its replies within the idle timeout.
    Stalled,
    /// The session held memory without moving a byte while others waited for it.
    MemoryStalled,
    /// No memory for the session's request came free within the idle timeout.
    NoMemory,
    /// The client's key already had its most sessions open.
    TooManySessions,
    /// The session reached its time limit.
    TimeLimit,
    /// The server stopped: requests read were answered, then the session closed.
    Stopped,
    /// The connection or the peer failed.
    Failed(WireError),
}

/// A stream the handler can serve: read and written during the handshake, then
/// split into halves for the session's two directions.
pub(super) trait Transport: AsyncRead + AsyncWrite + Unpin + Send {
    /// The reading half, borrowed from the stream.
    type Reader<'a>: AsyncRead + Unpin + Send
    where
        Self: 'a;
    /// The writing half, borrowed from the stream.
    type Writer<'a>: AsyncWrite + Unpin + Send
    where
        Self: 'a;
    /// Splits the stream for the session.
    fn halves(&mut self) -> (Self::Reader<'_>, Self::Writer<'_>);
}

/// TCP splits for free: the halves are plain borrows, with no lock between them.
impl Transport for TcpStream {
    type Reader<'a> = tokio::net::tcp::ReadHalf<'a>;
    type Writer<'a> = tokio::net::tcp::WriteHalf<'a>;

    fn halves(&mut self) -> (Self::Reader<'_>, Self::Writer<'_>) {
        self.split()
    }
}

/// Any other stream, split with [`tokio::io::split`].
pub(super) struct AnyStream<S>(pub(super) S);

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Transport for AnyStream<S> {
    type Reader<'a>
        = tokio::io::ReadHalf<&'a mut S>
    where
        Self: 'a;
    type Writer<'a>
        = tokio::io::WriteHalf<&'a mut S>
    where
        Self: 'a;

    fn halves(&mut self) -> (Self::Reader<'_>, Self::Writer<'_>) {
        tokio::io::split(&mut self.0)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for AnyStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        context: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(context, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for AnyStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        context: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(context, buf)
    }

    fn poll_flush(
        mut self: Pin<&mut Self>,
        context: &mut std::task::Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(context)
    }

    fn poll_shutdown(
        mut self: Pin<&mut Self>,
        context: &mut std::task::Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(context)
    }
}

/// A half of the session's stream that counts the bytes it moves, so a session can
/// tell a slow client (some bytes move) from one that has stopped (none do).
pub(super) struct Metered<'a, T> {
    /// The half itself.
    inner: T,
    /// Bytes read or written so far, shared by both halves of the session.
    moved: &'a AtomicU64,
}

impl<T: AsyncRead + Unpin> AsyncRead for Metered<'_, T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        context: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(context, buf);
        let read = buf.filled().len() - before;
        self.moved.fetch_add(read as u64, Ordering::Relaxed);
        result
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Metered<'_, T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        context: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(context, buf);
        if let Poll::Ready(Ok(written)) = &result {
            self.moved.fetch_add(*written as u64, Ordering::Relaxed);
        }
        result
    }

    fn poll_flush(
        mut self: Pin<&mut Self>,
        context: &mut std::task::Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(context)
    }

    fn poll_shutdown(
        mut self: Pin<&mut Self>,
        context: &mut std::task::Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(context)
    }
}

/// What a session has in flight against the memory budget between two requests.
#[derive(Default)]
pub(super) struct InFlight {
    /// Reply bytes queued in the send half since its last flush.
    unflushed: u64,
    /// The budget held for them, beyond [`FREE_IN_FLIGHT`].
    held: Option<Reservation>,
}

impl InFlight {
    /// After a flush: nothing is queued any more.
    fn flushed(&mut self) {
        self.unflushed = 0;
        self.held = None;
    }

    /// The part of the queued replies that the budget must cover.
    fn queued_cost(&self) -> u64 {
        self.unflushed.min(TRANSPORT_BUFFER)
    }
}

impl Handler {
    /// The connection's whole life, as the future the accept loop spawns.
    ///
    /// A plain function returning an `async move` block, not an `async fn`: an async
    /// fn keeps its by-value parameters twice in its state (as captured arguments and
    /// again as the body's locals), 232 bytes that every open connection's task would
    /// carry for its whole life; the block captures them once and uses them in place.
    #[allow(
        clippy::manual_async_fn,
        reason = "an async fn would store its arguments twice"
    )]
    pub(super) fn run<S: Transport>(
        mut self,
        mut socket: S,
        mut admitted: Admitted,
    ) -> impl Future<Output = ()> {
        async move {
            let started = Instant::now();
            let mut summary = Summary::default();
            let outcome = self.serve(&mut socket, &mut admitted, &mut summary).await;
            drop(admitted);
            let stats = &self.shared.stats;
            match &outcome {
                Outcome::HandshakeTimeout => stats.add(&stats.handshake_timeouts),
                Outcome::Declined => stats.add(&stats.handshake_declines),
                Outcome::Failed(_) if summary.client.is_none() => {
                    stats.add(&stats.handshake_failures)
                }
                Outcome::Denied(_) => stats.add(&stats.denied),
                Outcome::Revoked => stats.add(&stats.revoked),
                Outcome::IdleTimeout | Outcome::Stalled | Outcome::NoMemory => {
                    stats.add(&stats.idle_timeouts)
                }
                Outcome::MemoryStalled => stats.add(&stats.memory_stalls),
                Outcome::TooManySessions => stats.add(&stats.refused_key_cap),
                Outcome::TimeLimit => stats.add(&stats.session_time_limits),
                _ => {}
            }
            let client = summary
                .client
                .map(|key| key.fingerprint().to_string())
                .unwrap_or_else(|| "-".to_owned());
            let duration_ms = started.elapsed().as_millis() as u64;
            let peer = self.peer;
            let (requests, bytes_in, bytes_out) =
                (summary.requests, summary.bytes_in, summary.bytes_out);
            let comment = summary.comment;
            match outcome {
                Outcome::Closed => {
                    info!(%peer, client, comment, requests, bytes_in, bytes_out, duration_ms, "closed")
                }
                Outcome::Denied(reason) => {
                    info!(%peer, client, comment, duration_ms, "denied: {reason}")
                }
                Outcome::Revoked => {
                    info!(%peer, client, comment, requests, bytes_in, bytes_out, duration_ms, "closed: key revoked")
                }
                Outcome::TooLarge { len } => {
                    info!(%peer, client, comment, requests, bytes_in, bytes_out, duration_ms, "closed: request of {len} bytes over the limit of {}", self.shared.config.max_request)
                }
                Outcome::HandshakeTimeout => {
                    info!(%peer, duration_ms, "closed: handshake not completed within {:?}", self.shared.config.handshake_timeout)
                }
                Outcome::IdleTimeout => {
                    info!(%peer, client, comment, requests, bytes_in, bytes_out, duration_ms, "closed: idle for {:?}", self.shared.config.idle_timeout)
                }
                Outcome::Stalled => {
                    info!(%peer, client, comment, requests, bytes_in, bytes_out, duration_ms, "closed: the client took no replies for {:?}", self.shared.config.idle_timeout)
                }
                Outcome::Declined => {
                    info!(%peer, duration_ms, "closed: the client closed the connection after the server's key was sent (it may not trust this host key)")
                }
                // Counted and logged once per burst by the accept loop.
                Outcome::Evicted => {
                    debug!(%peer, duration_ms, "closed: oldest unfinished handshake, evicted for a newcomer")
                }
                Outcome::MemoryStalled => {
                    info!(%peer, client, comment, requests, bytes_in, bytes_out, duration_ms, "closed: held memory for {:?} without taking its replies while other sessions waited for memory", self.shared.config.memory_stall_timeout)
                }
                Outcome::NoMemory => {
                    info!(%peer, client, comment, requests, bytes_in, bytes_out, duration_ms, "closed: no memory for its request came free within {:?} (memory budget of {} bytes spent)", self.shared.config.idle_timeout, self.shared.config.memory_budget)
                }
                Outcome::TooManySessions => {
                    info!(%peer, client, comment, duration_ms, "refused: the key has {} sessions open, the limit", self.shared.config.max_sessions_per_key)
                }
                Outcome::TimeLimit => {
                    info!(%peer, client, comment, requests, bytes_in, bytes_out, duration_ms, "closed: session time limit of {:?} reached", self.shared.config.max_session_time.unwrap_or_default())
                }
                Outcome::Stopped => {
                    info!(%peer, client, comment, requests, bytes_in, bytes_out, duration_ms, "closed: server stopping")
                }
                Outcome::Failed(error) => {
                    info!(%peer, client, comment, requests, bytes_in, bytes_out, duration_ms, "failed: {error}")
                }
            }
        }
    }

    pub(super) async fn serve<S: Transport>(
        &mut self,
        socket: &mut S,
        admitted: &mut Admitted,
        summary: &mut Summary,
    ) -> Outcome {
        debug!(peer = %self.peer, "connection accepted: handshake started");
        // The table learns when message 1 is in, which decides who is evicted first.
        let mut watched = admitted.watch(socket);
        // One deadline for the whole handshake: a peer trickling a byte at a time
        // gains nothing, unlike with a per-read timeout.
        let handshake = tokio::time::timeout(
            self.shared.config.handshake_timeout,
            // Boxed: the handshake's state lives on the heap only while it runs,
            // instead of enlarging every connection's task for its whole life.
            Box::pin(wire::respond(&mut watched, &self.shared.config.host)),
        );
        let result = tokio::select! {
            result = handshake => result,
            // A stopping server does not wait for handshakes: nothing is in flight.
            _ = self.shutdown_signal.changed() => return Outcome::Closed,
            // The handshake cap was reached and this was the oldest unfinished one.
            () = admitted.evicted() => return Outcome::Evicted,
        };
        admitted.handshake = None;
        let established = match result {
            Err(_) => {
                admitted.source_verdict(Verdict::Failure);
                return Outcome::HandshakeTimeout;
            }
            Ok(Err(WireError::PeerMisbehaved(wire::Violation::Truncated(
                wire::TruncatedAt::AfterMessage2,
            )))) => {
                admitted.source_verdict(Verdict::Declined);
                return Outcome::Declined;
            }
            Ok(Err(error)) => {
                admitted.source_verdict(Verdict::Failure);
                return Outcome::Failed(error);
            }
            Ok(Ok(established)) => established,
        };
        let client = *established.peer();
        summary.client = Some(client);
        debug!(peer = %self.peer, "handshake completed: client key {}", client.fingerprint());
        let moved = AtomicU64::new(0);
        let (reader, writer) = socket.halves();
        let (reader, writer) = (
            Metered {
                inner: reader,
                moved: &moved,
            },
            Metered {
                inner: writer,
                moved: &moved,
            },
        );
        let (mut rx, mut tx) = established.into_halves(reader, writer);

        if let Err((reason, logged)) = self.authorize(&client, summary).await {
            admitted.source_verdict(Verdict::Failure);
            let message = format!("{}: {reason}", wire::PERMISSION_DENIED_PREFIX);
            send_refusal(&mut tx, rx, &message).await;
            return Outcome::Denied(logged);
        }
        admitted.source_verdict(Verdict::Success);
        // Held for the whole session: one of the key's sessions.
        let Some(key_session) = self.shared.sessions_per_key.enter(&client) else {
            let message = format!(
                "{}: {TOO_MANY_SESSIONS} (it has {} open, the most this server allows); end one and retry",
                wire::PERMISSION_DENIED_PREFIX,
                self.shared.config.max_sessions_per_key
            );
            send_refusal(&mut tx, rx, &message).await;
            return Outcome::TooManySessions;
        };
        let stats = &self.shared.stats;
        stats.add(&stats.sessions);
        // Sessions check their key on the next reload, not on one that came before.
        self.reload.mark_unchanged();
        let end = self
            .echo(&mut rx, &mut tx, &key_session, summary, &moved)
            .await;
        // Closing the socket (when the handler returns) sends our FIN: the replies
        // only need flushing, and nothing is left unread that would turn the close
        // into a reset (the client ended its stream, or went quiet). No separate
        // shutdown(2): one system call less per session.
        match end {
            Ok(EchoEnd::Done) => {
                let _ = tokio::time::timeout(REFUSAL_SEND_TIME, tx.flush()).await;
                Outcome::Closed
            }
            Ok(EchoEnd::Idle) => {
                let _ = tokio::time::timeout(REFUSAL_SEND_TIME, tx.flush()).await;
                Outcome::IdleTimeout
            }
            // Our writes are stuck: don't wait on them again, just close.
            Ok(EchoEnd::Stalled) => Outcome::Stalled,
            Ok(EchoEnd::MemoryStalled) => Outcome::MemoryStalled,
            Ok(EchoEnd::NoMemory) => {
                let _ = tokio::time::timeout(REFUSAL_SEND_TIME, tx.flush()).await;
                Outcome::NoMemory
            }
            Ok(EchoEnd::Stopping) => {
                // Every request read is answered; now FIN, then take what the client
                // still sends until it closes too, so our close is never a reset
                // (which would destroy replies still in flight).
                let deadline = self.stop_deadline();
                Box::pin(close_gracefully(
                    &mut tx,
                    rx,
                    None,
                    Some(deadline),
                    usize::MAX,
                ))
                .await;
                Outcome::Stopped
            }
            Ok(EchoEnd::TimeLimit) => {
                let limit = self.shared.config.max_session_time.unwrap_or_default();
                let message = format!(
                    "{}: {SESSION_TIME_LIMIT} ({} s); reconnect to go on",
                    wire::PERMISSION_DENIED_PREFIX,
                    limit.as_secs()
                );
                send_refusal(&mut tx, rx, &message).await;
                Outcome::TimeLimit
            }
            Ok(EchoEnd::Revoked) => {
                let message = format!("{}: {KEY_REVOKED}", wire::PERMISSION_DENIED_PREFIX);
                send_refusal(&mut tx, rx, &message).await;
                Outcome::Revoked
            }
            Ok(EchoEnd::TooLarge { len }) => {
                let message = crate::echo::too_large(
                    u64::from(len),
                    u64::from(self.shared.config.max_request),
                );
                send_refusal(&mut tx, rx, &message).await;
                Outcome::TooLarge { len }
            }
            Err(error) => {
                // Replies to the complete requests before the failure point may still
                // be waiting to batch with the next one; they are owed (wire-v1
                // section 7, truncation). Bounded, so a peer that stops reading
                // cannot hold the connection open.
                if !matches!(error, WireError::Io(_)) {
                    let _ = tokio::time::timeout(REFUSAL_DRAIN_TIME, tx.flush()).await;
                }
                Outcome::Failed(error)
            }
        }
    }

    /// Checks the client's key against the current authorized_keys. A missing or
    /// unreadable file denies everyone. A refusal is what the client is told, then
    /// what the log says (the file, line and option, which the client never learns).
    pub(super) async fn authorize(
        &self,
        client: &PublicKey,
        summary: &mut Summary,
    ) -> Result<(), (String, String)> {
        let keys = self.authorized_keys.current().await.map_err(|error| {
            let reason = format!(
                "key {} is not authorized on this server",
                client.fingerprint()
            );
            // The file and why it cannot be used (unreadable, unsafe permissions...).
            let logged = format!("{reason}: {error}");
            (reason, logged)
        })?;
        let address = canonical_ip(self.peer.ip());
        match keys.authorize(client, address, SystemTime::now()) {
            Ok(entry) => {
                summary.comment = entry.comment.clone();
                debug!(
                    peer = %self.peer,
                    "key allowed by {}:{}",
                    keys.path.display(),
                    entry.line
                );
                Ok(())
            }
            Err(denial) => {
                let comment = denial.line().and_then(|line| keys.comment_at(line));
                summary.comment = comment.unwrap_or_default().to_owned();
                Err((denial.to_string(), denial.log_text(&keys.path)))
            }
        }
    }

    /// Answers requests until the client ends its stream, the server stops, the
    /// session idles out or reaches its time limit, the key is revoked, a request is
    /// over the limit, or the session holds memory others need without progress.
    pub(super) async fn echo<R, W>(
        &mut self,
        rx: &mut RecvHalf<R>,
        tx: &mut SendHalf<W>,
        key: &KeySession,
        summary: &mut Summary,
        moved: &AtomicU64,
    ) -> Result<EchoEnd, WireError>
    where
        R: AsyncRead + Unpin,
        W: tokio::io::AsyncWrite + Unpin,
    {
        let mut body = Vec::new();
        let mut in_flight = InFlight::default();
        let time_limit = self
            .shared
            .config
            .max_session_time
            .map(|limit| tokio::time::Instant::now() + limit);
        loop {
            if time_limit.is_some_and(|end| tokio::time::Instant::now() >= end) {
                return Ok(EchoEnd::TimeLimit);
            }
            // Each step is its own future, awaited in turn, so the task holds the
            // larger of the two rather than both.
            let header = match self
                .next_request(rx, tx, key.key(), time_limit, &mut in_flight, moved)
                .await?
            {
                ControlFlow::Continue(header) => header,
                ControlFlow::Break(end) => return Ok(end),
            };
            // Only REQUEST can arrive here: the decoder refuses the server's own types.
            if header.len > self.shared.config.max_request {
                return Ok(EchoEnd::TooLarge { len: header.len });
            }
            let mut reservation = match self
                .memory_for(header.len, key, tx, &mut in_flight, moved)
                .await?
            {
                ControlFlow::Continue(reservation) => reservation,
                ControlFlow::Break(end) => return Ok(end),
            };
            if let ControlFlow::Break(end) = self
                .answer_in_time(rx, tx, &mut body, summary, &mut reservation, moved)
                .await?
            {
                return Ok(end);
            }
            match reservation {
                // Flushed: everything this session had in flight is written.
                Answered::Flushed => in_flight.flushed(),
                // Batched with the next reply: keep the budget for what is queued,
                // beyond the free share.
                Answered::Queued {
                    reply_len,
                    reservation,
                } => {
                    in_flight.unflushed += reply_len;
                    let mut held = match (in_flight.held.take(), reservation) {
                        (Some(mut held), Some(reservation)) => {
                            held.merge(reservation);
                            Some(held)
                        }
                        (held, reservation) => held.or(reservation),
                    };
                    let cost = in_flight.queued_cost();
                    if cost <= FREE_IN_FLIGHT {
                        held = None;
                    } else if let Some(held) = held.as_mut() {
                        held.shrink_to(cost);
                    }
                    in_flight.held = held;
                }
                Answered::Reserved(_) => unreachable!("answer_in_time settles the reservation"),
            }
            // Keep the buffer of a large request only while it is in use.
            if body.capacity() > 64 * 1024 {
                body = Vec::new();
            }
        }
    }

    /// Memory for a request of `len` bytes: free for a small one, else from the
    /// budget, at once if it has room; if not, the replies queued so far are written
    /// first (a session never waits for memory while holding some), then the session
    /// waits its turn, up to the idle timeout. Meanwhile the rest of the request
    /// stays in the kernel and TCP's window holds the client back.
    pub(super) async fn memory_for<W>(
        &self,
        len: u32,
        key: &KeySession,
        tx: &mut SendHalf<W>,
        in_flight: &mut InFlight,
        moved: &AtomicU64,
    ) -> Result<ControlFlow<EchoEnd, Answered>, WireError>
    where
        W: tokio::io::AsyncWrite + Unpin,
    {
        let worst = resources::worst_case(len);
        let memory = &self.shared.memory;
        if in_flight.queued_cost() + worst <= FREE_IN_FLIGHT {
            return Ok(ControlFlow::Continue(Answered::Reserved(None)));
        }
        if let Some(reservation) = memory.try_reserve(key, worst) {
            return Ok(ControlFlow::Continue(Answered::Reserved(Some(reservation))));
        }
        // The slow path is boxed: its futures would otherwise enlarge every task.
        Box::pin(async {
            if in_flight.unflushed > 0 {
                match self.watched(tx.flush(), moved).await {
                    ControlFlow::Continue(result) => result?,
                    ControlFlow::Break(end) => return Ok(ControlFlow::Break(end)),
                }
                in_flight.flushed();
                if worst <= FREE_IN_FLIGHT {
                    return Ok(ControlFlow::Continue(Answered::Reserved(None)));
                }
            }
            let wait = memory.reserve(key, worst);
            match tokio::time::timeout(self.shared.config.idle_timeout, wait).await {
                Ok(reservation) => Ok(ControlFlow::Continue(Answered::Reserved(Some(reservation)))),
                Err(_) => Ok(ControlFlow::Break(EchoEnd::NoMemory)),
            }
        })
        .await
    }

    /// Waits for the next request's header, under the idle timeout and the session
    /// time limit, watching for shutdown and for a reload that revokes the client's
    /// key. Once the server is stopping, only requests already here are taken.
    pub(super) async fn next_request<R, W>(
        &mut self,
        rx: &mut RecvHalf<R>,
        tx: &mut SendHalf<W>,
        client: &PublicKey,
        time_limit: Option<tokio::time::Instant>,
        in_flight: &mut InFlight,
        moved: &AtomicU64,
    ) -> Result<ControlFlow<EchoEnd, RecordHeader>, WireError>
    where
        R: AsyncRead + Unpin,
        W: tokio::io::AsyncWrite + Unpin,
    {
        // The wait for the next request is never cancelled while the session goes
        // on (a cancelled read leaves its half unusable): a reload that leaves
        // the key allowed goes back to the same wait.
        let has_buffered_input = rx.has_buffered_input();
        let header = {
            let next = rx.next_record();
            tokio::pin!(next);
            let stopping = *self.shutdown_signal.borrow();
            // A pipelined request is usually already buffered: take it without
            // arming the idle timer or the shutdown and reload waits (a clock read,
            // a timer and two watch registrations per request otherwise). Only
            // when it would wait, or a reload is pending, does it go the long way.
            // A stopping server answers the requests it has read, not those still
            // in the kernel: a client that keeps sending cannot keep it going.
            let ready = match (stopping, self.reload.has_changed()) {
                (true, _) if !has_buffered_input => None,
                (true, _) | (false, Ok(false)) => poll_once(next.as_mut()).await,
                _ => None,
            };
            if let Some(header) = ready {
                Ok(header)
            } else if stopping {
                // Stopping, and nothing more has arrived: every request read is
                // answered. (Dropping the read in progress is fine: the half is
                // only drained from here on.)
                return Ok(ControlFlow::Break(EchoEnd::Stopping));
            } else {
                // About to wait for the client: what is queued must reach it first
                // (a reply held back while we wait is latency, and memory).
                // (Boxed: rare, and its timer would otherwise enlarge every task.)
                if in_flight.unflushed > 0 {
                    match Box::pin(self.watched(tx.flush(), moved)).await {
                        ControlFlow::Continue(result) => result?,
                        ControlFlow::Break(end) => return Ok(ControlFlow::Break(end)),
                    }
                    in_flight.flushed();
                }
                // One timer: the idle deadline, or the session's end if sooner.
                let idle_deadline = tokio::time::Instant::now() + self.shared.config.idle_timeout;
                let deadline = time_limit.map_or(idle_deadline, |end| end.min(idle_deadline));
                let next = tokio::time::timeout_at(deadline, next);
                tokio::pin!(next);
                loop {
                    let reload = &mut self.reload;
                    let reloaded = async {
                        if reload.changed().await.is_err() {
                            // The trigger lives as long as the config: never, in practice.
                            std::future::pending::<()>().await;
                        }
                    };
                    tokio::select! {
                        header = &mut next => break header,
                        _ = self.shutdown_signal.changed() => return Ok(ControlFlow::Break(EchoEnd::Stopping)),
                        () = reloaded => {
                            if !still_authorized(&self.authorized_keys, self.peer, client) {
                                return Ok(ControlFlow::Break(EchoEnd::Revoked));
                            }
                        }
                    }
                }
            }
        };
        let header = match header {
            Err(_) if time_limit.is_some_and(|end| tokio::time::Instant::now() >= end) => {
                return Ok(ControlFlow::Break(EchoEnd::TimeLimit))
            }
            Err(_) => return Ok(ControlFlow::Break(EchoEnd::Idle)),
            Ok(header) => header?,
        };
        let Some(header) = header else {
            return Ok(ControlFlow::Break(EchoEnd::Done));
        };
        Ok(ControlFlow::Continue(header))
    }

    /// Runs `future` (a step that moves the session's bytes) under the idle timeout;
    /// and while other sessions wait for memory, cuts it short when no byte has moved
    /// for `memory_stall_timeout`: the memory it holds goes to those that use it.
    pub(super) async fn watched<F: Future>(
        &self,
        future: F,
        moved: &AtomicU64,
    ) -> ControlFlow<EchoEnd, F::Output> {
        tokio::pin!(future);
        // As in `next_request`: no timer unless the step has to wait.
        if let Some(output) = poll_once(future.as_mut()).await {
            return ControlFlow::Continue(output);
        }
        // One timer for both deadlines (each is part of every session's task):
        // the next stall check, or the idle deadline if that comes first.
        let idle_deadline = tokio::time::Instant::now() + self.shared.config.idle_timeout;
        let next_check = || {
            (tokio::time::Instant::now() + self.shared.config.memory_stall_timeout)
                .min(idle_deadline)
        };
        let timer = tokio::time::sleep_until(next_check());
        tokio::pin!(timer);
        let mut last = moved.load(Ordering::Relaxed);
        loop {
            tokio::select! {
                output = &mut future => return ControlFlow::Continue(output),
                () = &mut timer => {
                    if tokio::time::Instant::now() >= idle_deadline {
                        return ControlFlow::Break(EchoEnd::Stalled);
                    }
                    let now = moved.load(Ordering::Relaxed);
                    if now == last && self.shared.memory.under_pressure() {
                        return ControlFlow::Break(EchoEnd::MemoryStalled);
                    }
                    last = now;
                    timer.as_mut().reset(next_check());
                }
            }
        }
    }

    /// [`Handler::answer`] under the idle timeout and the memory stall check; settles
    /// `reservation` into [`Answered::Flushed`] or [`Answered::Queued`].
    pub(super) async fn answer_in_time<R, W>(
        &self,
        rx: &mut RecvHalf<R>,
        tx: &mut SendHalf<W>,
        body: &mut Vec<u8>,
        summary: &mut Summary,
        reservation: &mut Answered,
        moved: &AtomicU64,
    ) -> Result<ControlFlow<EchoEnd>, WireError>
    where
        R: AsyncRead + Unpin,
        W: tokio::io::AsyncWrite + Unpin,
    {
        // The body and the reply get the idle timeout too: a client trickling its
        // body, or not reading our replies (TCP back pressure stalls our writes),
        // is cut off instead of holding the connection and its buffers forever.
        let answer = self.answer(rx, tx, body, summary, reservation);
        match self.watched(answer, moved).await {
            ControlFlow::Continue(result) => result?,
            ControlFlow::Break(end) => return Ok(ControlFlow::Break(end)),
        }
        Ok(ControlFlow::Continue(()))
    }

    /// Reads one request's body and queues its reply, flushing unless more requests
    /// are already here. Trims the request's memory to its real size once the reply
    /// is known.
    pub(super) async fn answer<R, W>(
        &self,
        rx: &mut RecvHalf<R>,
        tx: &mut SendHalf<W>,
        body: &mut Vec<u8>,
        summary: &mut Summary,
        reservation: &mut Answered,
    ) -> Result<(), WireError>
    where
        R: AsyncRead + Unpin,
        W: tokio::io::AsyncWrite + Unpin,
    {
        rx.read_body(body, self.shared.config.max_request).await?;
        summary.requests += 1;
        summary.bytes_in += body.len() as u64;
        let reply_len = match crate::echo::answer(body) {
            crate::echo::Answer::InPlace => {
                reservation.shrink_to(resources::real_cost(body.len(), body.len()));
                summary.bytes_out += body.len() as u64;
                tx.write_record(RecordType::Response, body).await?;
                body.len()
            }
            crate::echo::Answer::Converted(upper) => {
                reservation.shrink_to(resources::real_cost(body.len(), upper.len()));
                summary.bytes_out += upper.len() as u64;
                tx.write_record(RecordType::Response, upper.as_bytes())
                    .await?;
                upper.len()
            }
            reply @ crate::echo::Answer::NotUtf8 { .. } => {
                let reason = reply.error_text().unwrap_or_default();
                reservation.shrink_to(resources::real_cost(body.len(), reason.len()));
                tx.write_record(RecordType::Error, reason.as_bytes())
                    .await?;
                reason.len()
            }
        };
        let stats = &self.shared.stats;
        stats.add(&stats.requests);
        // Answer now unless more requests are already here: never wait for the
        // client's end of stream, but batch the replies of a pipelined burst.
        if !rx.has_buffered_input() {
            tx.flush().await?;
            *reservation = Answered::Flushed;
        } else {
            let Answered::Reserved(reserved) = std::mem::replace(reservation, Answered::Flushed)
            else {
                unreachable!("a request is answered once")
            };
            *reservation = Answered::Queued {
                reply_len: crate::wire::RECORD_HEADER_LEN as u64 + reply_len as u64,
                reservation: reserved,
            };
        }
        Ok(())
    }

    /// When a stopping session must be closed by: the end of the server's grace
    /// period, less a margin to close in.
    pub(super) fn stop_deadline(&self) -> tokio::time::Instant {
        let since = *self
            .shared
            .stopping_since
            .get_or_init(tokio::time::Instant::now);
        let grace = self.shared.config.shutdown_grace;
        since + grace.saturating_sub(STOP_MARGIN).max(grace / 2)
    }
}

/// One request's memory, from its header to its reply.
pub(super) enum Answered {
    /// Before the reply: the budget reserved for the worst case (`None` when the
    /// request is small enough to be free).
    Reserved(Option<Reservation>),
    /// The reply and everything queued before it are written.
    Flushed,
    /// The reply is queued with the next ones; the budget still held for it.
    Queued {
        /// Bytes of the reply record.
        reply_len: u64,
        /// The budget reserved for it, trimmed to its real size.
        reservation: Option<Reservation>,
    },
}

impl Answered {
    /// Trims the reservation, if any, to `bytes`.
    fn shrink_to(&mut self, bytes: u64) {
        if let Answered::Reserved(Some(reservation)) = self {
            reservation.shrink_to(bytes);
        }
    }
}

/// Polls `future` once: its output if it is ready, `None` if it would wait (it is
/// left in progress, with this task's waker registered, to be polled again).
pub(super) async fn poll_once<F: Future + ?Sized>(mut future: Pin<&mut F>) -> Option<F::Output> {
    std::future::poll_fn(|cx| match future.as_mut().poll(cx) {
        Poll::Ready(output) => Poll::Ready(Some(output)),
        Poll::Pending => Poll::Ready(None),
    })
    .await
}

/// After a reload: whether a session's key is still allowed by a settled version of
/// the file. A file still being written (checked again once it settles), or one
/// that cannot be used (missing, unreadable), keeps the session: neither is proof
/// that this key was revoked.
pub(super) fn still_authorized(
    keys: &Arc<AuthorizedKeysCache>,
    peer: SocketAddr,
    client: &PublicKey,
) -> bool {
    match keys.settled_now() {
        Some(keys) => keys
            .authorize(client, canonical_ip(peer.ip()), SystemTime::now())
            .is_ok(),
        None => true,
    }
}

/// Why the echo loop stopped without an error.
pub(super) enum EchoEnd {
    /// End of stream.
    Done,
    /// No request within the idle timeout.
    Idle,
    /// A request's body or reply did not get through within the idle timeout.
    Stalled,
    /// The client's key is no longer authorized.
    Revoked,
    /// A request over the limit (its body was not read).
    TooLarge { len: u32 },
    /// The server is stopping, and every request read has been answered.
    Stopping,
    /// The session reached its time limit.
    TimeLimit,
    /// The session held memory without progress while others waited for it.
    MemoryStalled,
    /// No memory for the request came free within the idle timeout.
    NoMemory,
}

/// Sends a final ERROR, closes our direction, and drains what the client still
/// sends for a short while, so its kernel does not receive a reset that could
/// destroy the ERROR before the client reads it. Bounded in time: a client that
/// does not read cannot hold the connection open.
pub(super) async fn send_refusal<R, W>(tx: &mut SendHalf<W>, rx: RecvHalf<R>, reason: &str)
where
    R: AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    // Boxed: only the end of a session needs this state, not every idle one.
    Box::pin(close_gracefully(
        tx,
        rx,
        Some(reason),
        None,
        REFUSAL_DRAIN_BYTES,
    ))
    .await;
}

/// Writes what is queued (and a final ERROR if `reason` is set), shuts down our
/// direction (FIN), then reads and discards what the client still sends until it
/// closes its side, `drain_until` passes (by default [`REFUSAL_DRAIN_TIME`] after
/// the sending), or `drain_bytes` have come: closing with unread input would make
/// the kernel send a reset, and a reset destroys the replies still on their way.
/// Sending gets at most [`REFUSAL_SEND_TIME`], and never past `drain_until`.
pub(super) async fn close_gracefully<R, W>(
    tx: &mut SendHalf<W>,
    rx: RecvHalf<R>,
    reason: Option<&str>,
    drain_until: Option<tokio::time::Instant>,
    drain_bytes: usize,
) where
    R: AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    let send = async {
        if let Some(reason) = reason {
            tx.write_record(RecordType::Error, reason.as_bytes())
                .await?;
        }
        tx.shutdown().await
    };
    let send_until = tokio::time::Instant::now() + REFUSAL_SEND_TIME;
    let send_until = drain_until.map_or(send_until, |until| until.min(send_until));
    match tokio::time::timeout_at(send_until, send).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => {
            debug!("could not send the last replies: {error}");
            return;
        }
        Err(_) => {
            debug!("could not send the last replies in time");
            return;
        }
    }
    let drain_until =
        drain_until.unwrap_or_else(|| tokio::time::Instant::now() + REFUSAL_DRAIN_TIME);
    let mut reader = rx.into_inner();
    // On the heap: an array here would be part of every connection's task (async
    // state is sized for its largest state), idle or not.
    let mut scratch = vec![0u8; 4096];
    let mut drained = 0usize;
    let drain = async {
        while drained < drain_bytes {
            match reader.read(&mut scratch).await {
                Ok(0) | Err(_) => break,
                Ok(read) => drained += read,
            }
        }
    };
    let _ = tokio::time::timeout_at(drain_until, drain).await;
    debug!("drained {drained} bytes before closing");
}
