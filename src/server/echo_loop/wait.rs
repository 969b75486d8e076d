//! The echo loop's step between requests: the next request's header, taken at
//! once when it is already here, else waited for under the idle timeout and the
//! session's time limit, watching for the server's stop and for a reload that
//! revokes the client's key; the session's expanded cipher keys are released
//! once it has been quiet for a while (see [`WaitTimer`]). The stop and reloads
//! come through one channel, the reload trigger, which the server pulls when it
//! stops: a watch on each cost two registrations and two removals per wait,
//! about 1,100 instructions per request (docs/BENCHMARKS.md, session 9).

use std::ops::ControlFlow;
use std::pin::{pin, Pin};
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::{Instant, Sleep};

use super::{poll_once, still_authorized, EchoEnd, InFlight};
use crate::identity::PublicKey;
use crate::server::connection::{Handler, Summary};
use crate::wire::{NextRecord, RecvHalf, SendHalf, WireError};

/// How far ahead of a wait's start a new quiet mark is set: once a session has
/// waited that long for its next request, its expanded cipher keys (AES-256-GCM's,
/// about 650 bytes each way; see `src/wire/cipher.rs`) are released. Rebuilding
/// them costs about a microsecond, for the second message after a quiet spell;
/// keeping them in every quiet session would be two fifths more idle memory.
pub(super) const QUIET_AFTER: Duration = Duration::from_millis(100);

/// A quiet mark set by an earlier wait is kept while it is due at least this
/// long after the wait's start, and set afresh once it is not: the keys go after
/// between this and [`QUIET_AFTER`] of quiet.
///
/// Why a mark is kept, and why at least this far ahead: while any timer is set,
/// the runtime's wait for the network (`epoll_wait`) has a timeout, the time to
/// the earliest timer as tokio's wheel reports it, and the wheel reports a timer
/// 64 ms to 4 s ahead as due at the start of its 64 ms slot (it then moves the
/// timer down a level). A timeout under the kernel's tick (4 ms here) makes the
/// kernel program the timer hardware at each wait, and again when the network
/// wakes it first: on the VMs this runs on, 8 to 10 us more latency at p99. A
/// mark set 50 ms ahead at every wait, as before, fell into such a slot start
/// within 4 ms in 6 % of the waits (latency p99 28 us against 20 us without the
/// timer, docs/BENCHMARKS.md, session 13). A mark at least 75 ms ahead is
/// reported at least 11 ms ahead (but for the last 4 ms before each 4.096 s
/// boundary, where a mark that straddles it sits in the next level: 0.1 % of
/// the time); kept from wait to wait, it is also set once
/// per 25 ms of a busy session rather than once per request (a registration and
/// a removal under the timer wheel's lock each time). Extending the timer
/// (`Sleep::reset` to a later instant) would not do: tokio leaves an extended
/// timer where it was in the wheel, which still reports the old due time. (A
/// timer kept and extended so was tried in session 9: 130 fewer instructions per
/// request, but p99 3 to 4 us worse, which this explains.)
pub(super) const QUIET_AT_LEAST: Duration = Duration::from_millis(75);

/// The session's one timer for its waits between requests (see
/// [`QUIET_AT_LEAST`]), kept by the echo loop from one wait to the next.
#[derive(Default)]
pub(super) struct WaitTimer {
    /// The timer: made (and registered with the runtime) when the session first
    /// waits, replaced in its box rather than extended (see [`QUIET_AT_LEAST`]).
    /// Boxed: held inline, it would sit beside the echo loop's steps rather than
    /// inside the wait's future, 64 bytes more in every connection's task (2,080
    /// bytes against 1,968 boxed; an idle session takes 45 bytes more than with
    /// the old per-wait timer).
    sleep: Option<Pin<Box<Sleep>>>,
    /// Whether it is set for the quiet mark; if not, for a wait's end (the idle
    /// timeout or the time limit), or not yet set.
    for_quiet_mark: bool,
}

impl WaitTimer {
    /// Sets the timer for a wait that starts at `started` and ends at `end`: the
    /// quiet mark, kept if it is still due [`QUIET_AT_LEAST`] ahead, else set
    /// [`QUIET_AFTER`] ahead; or `end`, if that comes first.
    fn set_for_wait(&mut self, started: Instant, end: Instant) {
        if let Some(mark) = self.quiet_mark() {
            if mark >= started + QUIET_AT_LEAST && mark < end {
                return;
            }
        }
        let quiet_at = started + QUIET_AFTER;
        if quiet_at < end {
            self.set(quiet_at, true);
        } else {
            self.set(end, false);
        }
    }

    /// A new timer, due `at`, for the quiet mark or not. (A new one, not the old
    /// one reset: see [`QUIET_AT_LEAST`].)
    fn set(&mut self, at: Instant, for_quiet_mark: bool) {
        let sleep = tokio::time::sleep_until(at);
        match &mut self.sleep {
            Some(old) => old.set(sleep),
            None => self.sleep = Some(Box::pin(sleep)),
        }
        self.for_quiet_mark = for_quiet_mark;
    }

    /// When the timer is due, if it is set for the quiet mark.
    fn quiet_mark(&self) -> Option<Instant> {
        let sleep = self.sleep.as_ref().filter(|_| self.for_quiet_mark)?;
        Some(sleep.deadline())
    }
}

/// How a turn of the wait ended.
enum Turn<T> {
    /// The read finished: its result.
    Read(T),
    /// The session has been quiet for the quiet mark: the read is dropped to
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
        // Set when the wait starts, with the timer (for the quiet mark until the
        // keys are released, then for this deadline). The first turn's read
        // serves both the poll for a request already here and the wait, so the
        // timer is looked at only once the read would wait (a read made afresh for
        // the wait, with the timer made before the loop, was 140 more instructions
        // per round trip in callgrind).
        let mut deadline = None;
        loop {
            let turn = {
                // Dropped only while it waits for the network, which loses nothing
                // and leaves the half usable (see `RecvHalf::next_record`).
                let mut next = pin!(rx.next_record_within(allowance));
                if deadline.is_none() {
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
                    in_flight.wait_timer.set_for_wait(started, end);
                    deadline = Some(end);
                }
                let timer = &mut in_flight.wait_timer;
                let quiet = timer.for_quiet_mark;
                let sleep = timer.sleep.as_mut().expect("set for the wait");
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
                        () = sleep.as_mut() => break if quiet { Turn::Quiet } else { Turn::Deadline },
                    }
                }
            };
            match turn {
                Turn::Read(read) => return Ok(ControlFlow::Continue(read?)),
                Turn::Quiet => {
                    in_flight
                        .wait_timer
                        .set(deadline.expect("set for the wait"), false);
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

    /// A server's handler and one session with it (protocol 2, AES-GCM), with what
    /// the server's echo loop carries from one request to the next (its wait
    /// timer among it).
    struct Session {
        /// Kept alive for the handler, whose state it shares.
        _server: crate::server::Server,
        /// The server's side of the session, whose `next_request` is tested.
        handler: Handler,
        /// What the echo loop would carry between requests, the wait timer in it.
        in_flight: InFlight,
        /// The client's halves of the session.
        client: (Rx, Tx),
        /// The server's halves of the session.
        server: (Rx, Tx),
    }

    impl Session {
        async fn new() -> Self {
            let (server_side, handler) = test_handler("127.0.0.1:1".parse().unwrap());
            let (client, server, _) = v2_pair(Suite::AesGcmSha256, RekeyPolicy::DEFAULT).await;
            Session {
                _server: server_side,
                handler,
                in_flight: InFlight::default(),
                client,
                server,
            }
        }

        /// Whether the server's halves hold their expanded keys (receive, send).
        fn server_holds_keys(&self) -> (bool, bool) {
            let (rx, tx) = &self.server;
            (rx.holds_expanded_key(), tx.holds_expanded_key())
        }

        /// When the server's wait timer is due, if it is set for the quiet mark.
        fn quiet_mark(&self) -> Option<Instant> {
            self.in_flight.wait_timer.quiet_mark()
        }

        /// One request, sent by the client after `delay`, its header taken by
        /// `next_request` and answered: the round trip of an unpipelined client.
        async fn round_trip(&mut self, request: &[u8], delay: Duration) {
            let client = Identity::from_seed(&[1; 32], "client").public_key();
            let ((client_rx, client_tx), (server_rx, server_tx)) =
                (&mut self.client, &mut self.server);
            let send = async {
                tokio::time::sleep(delay).await;
                client_tx
                    .write_record(RecordType::Request, request)
                    .await
                    .unwrap();
                client_tx.flush().await.unwrap();
            };
            let mut summary = Summary::default();
            let moved = AtomicU64::new(0);
            let (next, ()) = tokio::join!(
                self.handler.next_request(
                    server_rx,
                    server_tx,
                    &client,
                    &mut self.in_flight,
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
    }

    /// A busy session keeps its expanded AES keys from one request to the next;
    /// one that waits past its quiet mark releases them while it waits, then
    /// answers as before (with keys built for that one message), and keeps them
    /// again once it is busy. Time is paused: the quiet spell is exact.
    #[tokio::test(start_paused = true)]
    async fn a_quiet_session_releases_its_keys_while_it_waits() {
        let mut session = Session::new().await;
        let kept = cfg!(feature = "aws-lc");
        let (busy, quiet) = (Duration::ZERO, 2 * QUIET_AFTER);
        for (request, delay, expected) in [
            (&b"one"[..], busy, (false, false)),
            (b"two", busy, (kept, kept)),
            (b"late", quiet, (false, false)),
            (b"again", busy, (kept, kept)),
        ] {
            session.round_trip(request, delay).await;
            assert_eq!(
                session.server_holds_keys(),
                expected,
                "after {}",
                String::from_utf8_lossy(request)
            );
        }
    }

    /// A busy session keeps its quiet mark from one wait to the next while the
    /// mark is due at least `QUIET_AT_LEAST` after the wait's start, then sets a
    /// new one `QUIET_AFTER` ahead: waits 10 ms apart see one mark for three
    /// waits (at 0, 10 and 20 ms: due at 100), then the next (at 30, 40, 50: due
    /// at 130), and so on. Time is paused: every instant is exact.
    #[tokio::test(start_paused = true)]
    async fn a_busy_session_keeps_its_quiet_mark_until_it_is_due_too_soon() {
        let mut session = Session::new().await;
        assert_eq!(
            (QUIET_AFTER, QUIET_AT_LEAST),
            (Duration::from_millis(100), Duration::from_millis(75)),
            "the marks below assume these"
        );
        let start = Instant::now();
        let mut marks = Vec::new();
        for index in 0..9 {
            let request = format!("request {index}");
            let delay = Duration::from_millis(10);
            session.round_trip(request.as_bytes(), delay).await;
            let mark = session
                .quiet_mark()
                .expect("a busy session's timer is its quiet mark");
            marks.push((mark - start).as_millis());
        }
        assert_eq!(marks, [100, 100, 100, 130, 130, 130, 160, 160, 160]);
    }

    /// The keys go once a wait outlasts its quiet mark, and only then: a mark is
    /// due between `QUIET_AT_LEAST` and `QUIET_AFTER` after its wait's start, so
    /// never before 75 ms of quiet and always by 100. Each row is a wait of
    /// `delay` ms and its mark (kept from the wait before or set afresh), in ms
    /// from the first wait's start. Time is paused: every instant is exact, and
    /// no wait ends at its mark.
    #[tokio::test(start_paused = true)]
    async fn the_keys_go_once_a_wait_outlasts_its_quiet_mark() {
        let mut session = Session::new().await;
        let start = Instant::now();
        // (delay, the wait's mark, whether the keys went)
        let rows: [(u64, u64, bool); 8] = [
            (10, 100, false), // 0 to 10: a new mark
            (10, 100, false), // 10 to 20: kept, due 90 ms ahead
            (74, 100, false), // 20 to 94: kept, due 80 ms ahead; 74 ms of quiet
            (10, 194, false), // 94 to 104: a new mark (the kept one was due 6 ms ahead)
            (95, 194, true),  // 104 to 199: kept, due 90 ms ahead: gone after 90 ms
            (30, 299, false), // 199 to 229: a new mark (the timer was set for the end)
            (101, 329, true), // 229 to 330: a new mark (70 ms ahead): gone after 100 ms
            (99, 430, false), // 330 to 429: a new mark; 99 ms of quiet
        ];
        for (index, &(delay, mark, gone)) in rows.iter().enumerate() {
            let request = format!("request {index}");
            let delay = Duration::from_millis(delay);
            session.round_trip(request.as_bytes(), delay).await;
            let expected_mark = (!gone).then(|| start + Duration::from_millis(mark));
            assert_eq!(session.quiet_mark(), expected_mark, "row {index}");
            if gone {
                assert_eq!(session.server_holds_keys(), (false, false), "row {index}");
            }
        }
        assert_eq!(Instant::now() - start, Duration::from_millis(429));
    }
}
