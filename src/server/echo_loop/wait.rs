//! The echo loop's step between requests: the next request's header, taken at
//! once when it is already here, else waited for under the idle timeout and the
//! session's time limit, watching for the server's stop and for a reload that
//! revokes the client's key; the session's expanded cipher keys are released
//! once it has been quiet for [`QUIET_AFTER`]. The stop and reloads come through
//! one channel, the reload trigger, which the server pulls when it stops: a
//! watch on each cost two registrations and two removals per wait, about 1,100
//! instructions per request (docs/BENCHMARKS.md, session 9).
//!
//! A wait has one timer, set first for the quiet mark, then for the deadline. A
//! timer kept by the session from one wait to the next, armed lazily, was tried
//! (session 9): 130 fewer instructions per request on the server, but latency
//! p50 0.1 us and p99 3 to 4 us worse in interleaved runs, so it was not kept.

use std::ops::ControlFlow;
use std::pin::pin;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;

use super::{poll_once, still_authorized, EchoEnd, InFlight};
use crate::identity::PublicKey;
use crate::server::connection::{Handler, Summary};
use crate::wire::{NextRecord, RecvHalf, SendHalf, WireError};

/// How long a session waits for its next request before it releases its
/// expanded cipher keys (AES-256-GCM's, about 650 bytes each way; see
/// `src/wire/cipher.rs`). Rebuilding them costs about a microsecond, for the
/// second message after a quiet spell; keeping them in every quiet session
/// would be two fifths more idle memory.
pub(super) const QUIET_AFTER: Duration = Duration::from_millis(50);

/// How a turn of the wait ended.
enum Turn<T> {
    /// The read finished: its result.
    Read(T),
    /// The session has been quiet for [`QUIET_AFTER`]: the read is dropped to
    /// release the keys, then the wait goes on.
    Quiet,
    /// The idle timeout or the time limit.
    Deadline,
}

impl Handler {
    /// The next request's header (see the module's doc), as
    /// [`RecvHalf::next_record_within`] gives it. Once the server is stopping,
    /// only requests already here are taken. Before it waits, the replies queued
    /// are written.
    pub(super) async fn next_request<R, W>(
        &mut self,
        rx: &mut RecvHalf<R>,
        tx: &mut SendHalf<W>,
        client: &PublicKey,
        in_flight: &mut InFlight,
        summary: &mut Summary,
        moved: &AtomicU64,
    ) -> Result<ControlFlow<EchoEnd, NextRecord>, WireError>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let allowance = in_flight.allowance();
        let has_buffered_input = rx.has_buffered_input();
        // Set when the wait starts: the deadline, and the quiet mark until the
        // keys are released. The first turn's read serves both the poll for a
        // request already here and the wait, so the timer is made only once the
        // read would wait (a read made afresh for the wait, with the timer made
        // before the loop, was 140 more instructions per round trip in callgrind).
        let mut deadline = None;
        let mut quiet_at = None;
        let mut timer = pin!(None::<tokio::time::Sleep>);
        loop {
            let turn = {
                // Dropped only while it waits for the network, which loses nothing
                // and leaves the half usable (see `RecvHalf::next_record`).
                let mut next = pin!(rx.next_record_within(allowance));
                let deadline = match deadline {
                    Some(deadline) => deadline,
                    None => {
                        // A pipelined request is usually already buffered: take it
                        // without arming the idle timer or the shutdown and reload
                        // waits (a clock read, a timer and two watch registrations
                        // per request otherwise), and without looking at the
                        // server's state (a read lock and two loads): that is
                        // looked at once per read from the socket, before it. A
                        // stopping server answers the requests it has read, not
                        // those still in the kernel: a client that keeps sending
                        // cannot keep it going; a reload that revokes the key ends
                        // the session before the next read, so the requests
                        // answered after it are at most those already read when it
                        // was seen (one socket read's worth), as for a stop. Only
                        // when it would wait, or a reload is pending, does it go
                        // the long way.
                        if has_buffered_input
                            || (!*self.shutdown_signal.borrow()
                                && matches!(self.reload.has_changed(), Ok(false)))
                        {
                            if let Some(read) = poll_once(next.as_mut()).await {
                                return Ok(ControlFlow::Continue(read?));
                            }
                        }
                        if *self.shutdown_signal.borrow() {
                            // Stopping, and nothing more has arrived: every request
                            // read is answered. (The half is only drained from
                            // here on.)
                            return Ok(ControlFlow::Break(EchoEnd::Stopping));
                        }
                        // About to wait for the client: what is queued must reach
                        // it first (a reply held back while we wait is latency,
                        // and memory). (Boxed: rare, and its futures would
                        // otherwise enlarge every task.)
                        if in_flight.unflushed > 0 {
                            if let ControlFlow::Break(end) =
                                Box::pin(self.flush_queued(tx, in_flight, summary, moved)).await?
                            {
                                return Ok(ControlFlow::Break(end));
                            }
                        }
                        let started = Instant::now();
                        let idle_deadline = started + self.shared.config.idle_timeout;
                        let end = in_flight
                            .time_limit
                            .map_or(idle_deadline, |end| end.min(idle_deadline));
                        quiet_at = Some(started + QUIET_AFTER).filter(|&at| at < end);
                        timer.set(Some(tokio::time::sleep_until(quiet_at.unwrap_or(end))));
                        *deadline.insert(end)
                    }
                };
                let mut sleep = timer.as_mut().as_pin_mut().expect("set with the deadline");
                loop {
                    let reload = &mut self.reload;
                    let reloaded = async {
                        if reload.changed().await.is_err() {
                            // The trigger lives as long as the config: never, in practice.
                            std::future::pending::<()>().await;
                        }
                    };
                    tokio::select! {
                        read = &mut next => break Turn::Read(read),
                        () = reloaded => {
                            // The server's stop pulls the trigger too (see `Server::run_on`).
                            if *self.shutdown_signal.borrow() {
                                return Ok(ControlFlow::Break(EchoEnd::Stopping));
                            }
                            if !still_authorized(self, client) {
                                return Ok(ControlFlow::Break(EchoEnd::Revoked));
                            }
                        }
                        () = &mut sleep => {
                            if quiet_at.take().is_some() {
                                sleep.as_mut().reset(deadline);
                                break Turn::Quiet;
                            }
                            break Turn::Deadline;
                        }
                    }
                }
            };
            match turn {
                Turn::Read(read) => return Ok(ControlFlow::Continue(read?)),
                Turn::Quiet => {
                    rx.release_expanded_key();
                    tx.release_expanded_key();
                }
                Turn::Deadline => {
                    let time_limit = in_flight
                        .time_limit
                        .is_some_and(|end| Instant::now() >= end);
                    let end = if time_limit {
                        EchoEnd::TimeLimit
                    } else {
                        EchoEnd::Idle
                    };
                    return Ok(ControlFlow::Break(end));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Identity;
    use crate::server::connection::test_handler;
    use crate::wire::session_tests::{v2_pair, Rx, Tx};
    use crate::wire::{RecordType, RekeyPolicy, Reply, Suite, DEFAULT_REQUEST_LIMIT};

    /// One request, sent by the client after `delay`, its header taken by
    /// `next_request` and answered: the round trip of an unpipelined client.
    async fn round_trip(
        handler: &mut Handler,
        (client_rx, client_tx): &mut (Rx, Tx),
        (server_rx, server_tx): &mut (Rx, Tx),
        request: &[u8],
        delay: Duration,
    ) {
        let client = Identity::from_seed(&[1; 32], "client").public_key();
        let send = async {
            tokio::time::sleep(delay).await;
            client_tx
                .write_record(RecordType::Request, request)
                .await
                .unwrap();
            client_tx.flush().await.unwrap();
        };
        let (mut in_flight, mut summary) = (InFlight::default(), Summary::default());
        let moved = AtomicU64::new(0);
        let (next, ()) = tokio::join!(
            handler.next_request(
                server_rx,
                server_tx,
                &client,
                &mut in_flight,
                &mut summary,
                &moved,
            ),
            send
        );
        assert!(matches!(
            next.unwrap(),
            ControlFlow::Continue(NextRecord::Header(Some(_)))
        ));
        let mut body = Vec::new();
        server_rx
            .read_body(&mut body, DEFAULT_REQUEST_LIMIT)
            .await
            .unwrap();
        assert_eq!(body, request);
        body.make_ascii_uppercase();
        server_tx
            .write_record(RecordType::Response, &body)
            .await
            .unwrap();
        server_tx.flush().await.unwrap();
        let reply = client_rx.read_reply(DEFAULT_REQUEST_LIMIT).await.unwrap();
        assert_eq!(reply, Some(Reply::Response(body)));
    }

    /// A busy session keeps its expanded AES keys from one request to the next;
    /// one that waits past `QUIET_AFTER` releases them while it waits, then
    /// answers as before (with keys built for that one message), and keeps them
    /// again once it is busy. Time is paused: the quiet spell is exact.
    #[tokio::test(start_paused = true)]
    async fn a_quiet_session_releases_its_keys_while_it_waits() {
        let (_server, mut handler) = test_handler("127.0.0.1:1".parse().unwrap());
        let (mut client, mut server, _) = v2_pair(Suite::AesGcmSha256, RekeyPolicy::DEFAULT).await;
        let kept = cfg!(feature = "aws-lc");
        let holds = |(rx, tx): &(Rx, Tx)| (rx.holds_expanded_key(), tx.holds_expanded_key());
        let (busy, quiet) = (Duration::ZERO, 2 * QUIET_AFTER);
        for (request, delay, expected) in [
            (&b"one"[..], busy, (false, false)),
            (b"two", busy, (kept, kept)),
            (b"late", quiet, (false, false)),
            (b"again", busy, (kept, kept)),
        ] {
            round_trip(&mut handler, &mut client, &mut server, request, delay).await;
            assert_eq!(
                holds(&server),
                expected,
                "after {}",
                String::from_utf8_lossy(request)
            );
        }
    }
}
