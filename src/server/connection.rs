//! One connection, from the first handshake byte to the close: the responder side of
//! the handshake under its deadline, the allow-list check and the per-key session
//! cap, refusals that reach the client, and the graceful close on shutdown (every
//! request read is answered, then FIN, then the client's remaining bytes are drained
//! so the close is never a reset). The echo loop between is in
//! [`echo_loop`](super::echo_loop), the streams it runs over in
//! [`transport`](super::transport).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::{mpsc, watch};
use tracing::{debug, info};

use super::penalty::Verdict;
use super::stats::{ClockNanos, ServerStats};

use super::authorized::AuthorizedKeysCache;
use super::config::{KEY_REVOKED, SESSION_TIME_LIMIT, TOO_MANY_SESSIONS};
use super::echo_loop::EchoEnd;
use super::listener::{canonical_ip, Admitted};
use super::transport::{Metered, Transport};
use super::trust;
use super::Shared;
use crate::identity::PublicKey;
use crate::openssh::certificate::Certificate;
use crate::wire::{self, ProtocolVersion, RecordType, RecvHalf, SendHalf, Suite, WireError};

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
    /// Changes when open sessions must check their key again, and when the
    /// server stops (after `shutdown_signal`): a waiting session watches only
    /// this.
    pub(super) reload: watch::Receiver<u64>,
    /// The certificate the client sent with its key, kept for the checks after a
    /// reload (boxed: 8 bytes in every session's task, the certificate only in
    /// those that sent one).
    pub(super) certificate: Option<Box<Certificate>>,
    /// Dropped with the handler: lets shutdown know this connection is finished.
    /// `None` outside the accept loop.
    pub(super) _connection_done: Option<mpsc::Sender<()>>,
}

/// What a connection did, for its one log line.
#[derive(Debug, Default)]
pub(super) struct Summary {
    /// The client's key, once the handshake has proven it.
    pub(super) client: Option<PublicKey>,
    /// The comment of the authorized_keys line that admitted it (a boxed str: 8
    /// bytes less than a String in every session's task, which pays for
    /// `latency_clock`).
    pub(super) comment: Box<str>,
    /// Requests answered.
    pub(super) requests: u64,
    /// Request body bytes received.
    pub(super) bytes_in: u64,
    /// Reply body bytes sent.
    pub(super) bytes_out: u64,
    /// Not for the log: when the batch being answered started (its first body
    /// read), for the latency histogram; `None` between batches. Here because the connection keeps its summary
    /// anyway: a field elsewhere would be one more in every session's task.
    pub(super) latency_clock: Option<ClockNanos>,
    /// The protocol version and suite the handshake negotiated, once it completed.
    pub(super) protocol: Option<(ProtocolVersion, Suite)>,
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
    /// An honest mismatch: the client's protocol version or suite is not served
    /// here, and it was told so (a v1 client, which has no answer, was closed on).
    Mismatch(wire::Mismatch),
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
                Outcome::Mismatch(_) => stats.add(&stats.handshake_mismatches),
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
                Outcome::Closed => stats.add(&stats.closed),
                Outcome::Stopped => stats.add(&stats.stopped),
                Outcome::TooLarge { .. } => stats.add(&stats.too_large),
                Outcome::Failed(_) => stats.add(&stats.session_failures),
                // Counted when it happened, by the accept loop that evicted it.
                Outcome::Evicted => {}
            }
            let client = summary
                .client
                .map(|key| key.fingerprint().to_string())
                .unwrap_or_else(|| "-".to_owned());
            let duration_ms = started.elapsed().as_millis() as u64;
            let peer = self.peer;
            let (requests, bytes_in, bytes_out) =
                (summary.requests, summary.bytes_in, summary.bytes_out);
            let comment: &str = &summary.comment;
            // `protocol=2 suite="aesgcm"` on every line of a session (a `None` field
            // is left out, before the handshake completed).
            let protocol = summary.protocol.map(|(version, _)| version.number());
            let suite = summary.protocol.map(|(_, suite)| suite.short_name());
            match outcome {
                Outcome::Closed => {
                    info!(%peer, client, comment, protocol, suite, requests, bytes_in, bytes_out, duration_ms, "closed")
                }
                Outcome::Denied(reason) => {
                    info!(%peer, client, comment, protocol, suite, duration_ms, "denied: {reason}")
                }
                Outcome::Revoked => {
                    info!(%peer, client, comment, protocol, suite, requests, bytes_in, bytes_out, duration_ms, "closed: key revoked")
                }
                Outcome::TooLarge { len } => {
                    info!(%peer, client, comment, protocol, suite, requests, bytes_in, bytes_out, duration_ms, "closed: request of {len} bytes over the limit of {}", self.shared.config.max_request)
                }
                Outcome::HandshakeTimeout => {
                    info!(%peer, duration_ms, "closed: handshake not completed within {:?}", self.shared.config.handshake_timeout)
                }
                Outcome::IdleTimeout => {
                    info!(%peer, client, comment, protocol, suite, requests, bytes_in, bytes_out, duration_ms, "closed: idle for {:?}", self.shared.config.idle_timeout)
                }
                Outcome::Stalled => {
                    info!(%peer, client, comment, protocol, suite, requests, bytes_in, bytes_out, duration_ms, "closed: the client took no replies for {:?}", self.shared.config.idle_timeout)
                }
                Outcome::Declined => {
                    info!(%peer, duration_ms, "closed: the client closed the connection after the server's key was sent (it may not trust this host key)")
                }
                // Counted and logged once per burst by the accept loop.
                Outcome::Evicted => {
                    debug!(%peer, duration_ms, "closed: oldest unfinished handshake, evicted for a newcomer")
                }
                Outcome::MemoryStalled => {
                    info!(%peer, client, comment, protocol, suite, requests, bytes_in, bytes_out, duration_ms, "closed: held memory for {:?} without taking its replies while other sessions waited for memory", self.shared.config.memory_stall_timeout)
                }
                Outcome::NoMemory => {
                    info!(%peer, client, comment, protocol, suite, requests, bytes_in, bytes_out, duration_ms, "closed: no memory for its request came free within {:?} (memory budget of {} bytes spent)", self.shared.config.idle_timeout, self.shared.config.memory_budget)
                }
                Outcome::TooManySessions => {
                    info!(%peer, client, comment, protocol, suite, duration_ms, "refused: the key has {} sessions open, the limit", self.shared.config.max_sessions_per_key)
                }
                Outcome::TimeLimit => {
                    info!(%peer, client, comment, protocol, suite, requests, bytes_in, bytes_out, duration_ms, "closed: session time limit of {:?} reached", self.shared.config.max_session_time.unwrap_or_default())
                }
                Outcome::Stopped => {
                    info!(%peer, client, comment, protocol, suite, requests, bytes_in, bytes_out, duration_ms, "closed: server stopping")
                }
                Outcome::Failed(error) => {
                    info!(%peer, client, comment, protocol, suite, requests, bytes_in, bytes_out, duration_ms, "failed: {error}")
                }
                Outcome::Mismatch(mismatch) => {
                    info!(%peer, duration_ms, "closed: protocol mismatch: {mismatch}")
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
        let moved = AtomicU64::new(0);
        // In a block: the handshake's result and the `Established` end with it, so
        // their storage is not kept in the task across the session's awaits (which
        // made every connection's future hundreds of bytes larger).
        let (mut rx, mut tx, client) = {
            let handshake = tokio::time::timeout(
                self.shared.config.handshake_timeout,
                // Boxed: the handshake's state lives on the heap only while it runs,
                // instead of enlarging every connection's task for its whole life.
                Box::pin(wire::respond_any(
                    &mut watched,
                    &self.shared.config.host,
                    &self.shared.responder,
                )),
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
                // An honest client of another version or suite, told so (or, for
                // v1, closed on): no attack, so nothing against its address.
                Ok(Err(WireError::Mismatch(mismatch))) => {
                    admitted.source_verdict(Verdict::Neutral);
                    return Outcome::Mismatch(mismatch);
                }
                Ok(Err(error)) => {
                    admitted.source_verdict(Verdict::Failure);
                    return Outcome::Failed(error);
                }
                Ok(Ok(established)) => established,
            };
            let client = *established.peer();
            // Kept before `Established` is split into the session's halves.
            self.certificate = established.peer_certificate().cloned().map(Box::new);
            summary.client = Some(client);
            summary.protocol = Some((established.version(), established.suite()));
            debug!(
                peer = %self.peer,
                "handshake completed: client key {}, protocol {} {}",
                client.fingerprint(),
                established.version(),
                established.suite()
            );
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
            let (rx, tx) = established.into_halves(reader, writer);
            (rx, tx, client)
        };

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
        // Counted out when dropped, so also when the session's task is cancelled
        // (an aborted task, a runtime shut down past the grace period), as the
        // open-sessions gauge is by its `Admitted`.
        let _aesgcm_open = matches!(summary.protocol, Some((_, Suite::AesGcmSha256))).then(|| {
            stats.add(&stats.sessions_aesgcm);
            OpenAesGcmSession::enter(Arc::clone(stats))
        });
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

    /// Decides the client's admission ([`trust::decide`]): the revoked keys, then
    /// its key or certificate against the current authorized_keys, then the trusted
    /// user CAs. A missing or unreadable authorized_keys admits nobody through it;
    /// an unusable revoked-keys file admits nobody at all. A refusal is what the
    /// client is told, then what the log says (the files, lines and options, which
    /// the client never learns).
    pub(super) async fn authorize(
        &self,
        client: &PublicKey,
        summary: &mut Summary,
    ) -> Result<(), (String, String)> {
        let keys = self.authorized_keys.current().await;
        let trust = self.shared.trust.current().await;
        let address = canonical_ip(self.peer.ip());
        let decision = trust::decide(
            keys.as_deref(),
            &trust,
            client,
            self.certificate.as_deref(),
            address,
            SystemTime::now(),
        );
        match decision {
            Ok(admission) => {
                summary.comment = admission.comment;
                if admission.by_certificate {
                    info!(peer = %self.peer, "admitted: {}", admission.log);
                } else {
                    debug!(peer = %self.peer, "{}", admission.log);
                }
                Ok(())
            }
            Err(refusal) => {
                summary.comment = refusal.comment;
                Err((refusal.client, refusal.log))
            }
        }
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

/// One open AES-GCM session in the `sessions_open_aesgcm` gauge, for as long as it
/// lives: a guard rather than a decrement after the echo loop, which a cancelled
/// task never reaches.
struct OpenAesGcmSession(Arc<ServerStats>);

impl OpenAesGcmSession {
    fn enter(stats: Arc<ServerStats>) -> Self {
        stats.add(&stats.sessions_open_aesgcm);
        Self(stats)
    }
}

impl Drop for OpenAesGcmSession {
    fn drop(&mut self) {
        self.0.sub(&self.0.sessions_open_aesgcm);
    }
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

/// For tests that drive a handler's steps directly: a server with an empty
/// allow list and default settings, and a handler of it for a client at `peer`
/// (the server is returned too: its stop signal ends with it).
#[cfg(test)]
pub(super) fn test_handler(peer: SocketAddr) -> (crate::server::Server, Handler) {
    use crate::identity::Identity;
    use crate::openssh::authorized_keys::AuthorizedKeys;
    use crate::server::{AllowList, Server, ServerConfig};
    use crate::wire::LocalIdentity;

    let host = Identity::from_seed(&[7; 32], "host");
    let keys = AuthorizedKeys::parse(b"", "(empty)".as_ref());
    let config = ServerConfig::with_allow_list(
        Arc::new(LocalIdentity::new(&host)),
        AllowList::Keys(Arc::new(keys)),
    );
    let server = Server::new(config).unwrap();
    let handler = server.untracked_handler(peer);
    (server, handler)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The most bytes the future of one connection may take (in the test build):
    /// every open connection's task holds it for the whole session, idle or not
    /// (tokio adds its header). With v1's handshake and the `Established` in the
    /// function's scope it was 2,368 bytes; serving both versions, with the
    /// handshake scoped, 2,016.
    const MAX_CONNECTION_FUTURE: usize = 2_048;

    #[tokio::test]
    async fn the_connection_future_stays_small() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = tokio::net::TcpStream::connect(listener.local_addr().unwrap());
        let ((socket, peer), _client) =
            tokio::join!(async { listener.accept().await.unwrap() }, async {
                client.await.unwrap()
            });
        let (_server, handler) = test_handler(peer);
        let future = handler.run(socket, Admitted::untracked(peer));
        let size = std::mem::size_of_val(&future);
        println!("connection future: {size} bytes");
        assert!(
            size <= MAX_CONNECTION_FUTURE,
            "the connection future grew to {size} bytes"
        );
    }
}
