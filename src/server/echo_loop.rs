//! The session's echo loop: requests answered in order under the idle timeout, live
//! revocation, the session time limit and the server's stop, each request's share of
//! the memory budget reserved before its body is read and given back as its reply is
//! written; the input buffer outside a body is reserved too (frame memory), before
//! a transport message that may hold a request's header is read.
//!
//! Small requests are free while what the session has queued stays within
//! [`FREE_IN_FLIGHT`]; past it, in a pipelined burst, the budget is reserved in
//! batches of [`SMALL_BATCH`] rather than per request (a reservation and a release
//! each, taking the semaphores' locks: 5 % of the server's time per request).
//!
//! While a long reply waits for the client to take it, the client's next requests
//! are read ahead into the receive half's buffer, with frame memory that no other
//! session needs (see [`write_reading_ahead`]): the connection carries both ways
//! at once rather than one way at a time.

mod buffered;
mod read_ahead;
mod wait;

use std::future::Future;
use std::ops::ControlFlow;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::Poll;

use tokio::io::AsyncRead;

use super::connection::{Handler, Summary, FREE_IN_FLIGHT};
use super::resources::{self, KeySession, Reservation, FRAME_MEMORY, TRANSPORT_BUFFER};
use super::stats::{Batch, ClockNanos};
use super::trust;
use crate::identity::PublicKey;
use crate::wire::{NextRecord, RecordType, RecvHalf, SendHalf, WireError};
use read_ahead::write_reading_ahead;
use wait::WaitTimer;

/// How much more than a small request needs is reserved at once, past
/// [`FREE_IN_FLIGHT`], so that the next small requests of a burst are covered
/// without a reservation each. A session holds at most about twice this beyond
/// its queued replies, and only until it flushes them; a large request (worst
/// case over `FREE_IN_FLIGHT`) reserves exactly its own worst case, as before.
const SMALL_BATCH: u64 = 16 * 1024;

/// What a session carries from one request to the next: what it has in flight
/// against the memory budget, the batch it is answering, its body buffer, its
/// time limit and the timer of its waits.
#[derive(Default)]
pub(super) struct InFlight {
    /// Reply bytes queued in the send half since its last flush.
    unflushed: u64,
    /// The budget held for them once they are over [`FREE_IN_FLIGHT`]: all of
    /// their cost, and up to two [`SMALL_BATCH`]es more.
    held: Option<Reservation>,
    /// The frame memory held for the receive half's input buffer outside a body.
    frame: Option<Reservation>,
    /// What was answered since the last publication to the server's stats; its
    /// start is `Summary::latency_clock`.
    batch: Batch,
    /// The request body being answered (kept between requests, as its capacity
    /// is reused).
    body: Vec<u8>,
    /// When the session's time limit, if any, ends.
    time_limit: Option<tokio::time::Instant>,
    /// The timer of its waits for the next request, kept from one wait to the next.
    wait_timer: WaitTimer,
}

impl InFlight {
    /// After a flush: nothing is queued any more.
    fn flushed(&mut self) {
        self.unflushed = 0;
        self.held = None;
    }

    /// The part of the queued replies that the budget must cover.
    #[inline]
    fn queued_cost(&self) -> u64 {
        self.unflushed.min(TRANSPORT_BUFFER)
    }

    /// What a request of worst case `worst` may use without reserving: the free
    /// share, or what is held, if more, beyond what is queued. (Inlined: once per
    /// pipelined request.)
    #[inline]
    fn covers(&self, worst: u64) -> bool {
        let held = self.held.as_ref().map_or(0, Reservation::bytes);
        self.queued_cost() + worst <= FREE_IN_FLIGHT.max(held)
    }

    /// How large the receive half's input buffer may grow outside a body.
    fn allowance(&self) -> usize {
        self.frame.as_ref().map_or(0, Reservation::allowance)
    }
}

impl Handler {
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
        // Every way out of the loop passes the end below, where what the session
        // answered is counted (the caller flushes the replies still queued): a
        // loop of breaks rather than a wrapper future, which would keep every
        // argument twice in every session's task.
        macro_rules! or_break {
            ($result:expr) => {
                match $result {
                    Ok(value) => value,
                    Err(error) => break Err(error),
                }
            };
        }
        let mut in_flight = InFlight {
            time_limit: self
                .shared
                .config
                .max_session_time
                .map(|limit| tokio::time::Instant::now() + limit),
            ..InFlight::default()
        };
        let end = loop {
            if in_flight
                .time_limit
                .is_some_and(|end| tokio::time::Instant::now() >= end)
            {
                break Ok(EchoEnd::TimeLimit);
            }
            // A pipelined burst: the requests already here whole are answered in
            // one pass (see `buffered`), and their replies written, as after any
            // request, once no more input is expected without waiting (see
            // `RecvHalf::expects_more_input`).
            let answered = or_break!(self.answer_buffered(rx, tx, summary, &mut in_flight));
            if answered > 0 && !rx.expects_more_input() {
                if let ControlFlow::Break(end) =
                    or_break!(self.flush_queued(tx, &mut in_flight, summary, moved).await)
                {
                    break Ok(end);
                }
            }
            // Each step is its own future, awaited in turn, so the task holds the
            // larger of the two rather than both.
            let header = match or_break!(
                self.next_request(rx, tx, key.key(), &mut in_flight, summary, moved)
                    .await
            ) {
                ControlFlow::Continue(NextRecord::Header(Some(header))) => header,
                ControlFlow::Continue(NextRecord::Header(None)) => break Ok(EchoEnd::Done),
                ControlFlow::Continue(NextRecord::Released) => {
                    in_flight.frame = None;
                    continue;
                }
                ControlFlow::Continue(NextRecord::Admit(bytes)) => {
                    match or_break!(
                        self.frame_memory(bytes, key, tx, &mut in_flight, summary, moved)
                            .await
                    ) {
                        ControlFlow::Continue(()) => continue,
                        ControlFlow::Break(end) => break Ok(end),
                    }
                }
                ControlFlow::Break(end) => break Ok(end),
            };
            // Only REQUEST can arrive here: the decoder refuses the server's own types.
            if header.len > self.shared.config.max_request {
                break Ok(EchoEnd::TooLarge { len: header.len });
            }
            // Most requests are small enough to be free: decided here, without
            // making (and dropping) `memory_for`'s future for them.
            let mut reservation = if in_flight.covers(resources::worst_case(header.len)) {
                Answered::Reserved(None)
            } else {
                match or_break!(
                    self.memory_for(header.len, key, tx, &mut in_flight, summary, moved)
                        .await
                ) {
                    ControlFlow::Continue(reservation) => reservation,
                    ControlFlow::Break(end) => break Ok(end),
                }
            };
            // A small request whose body is here (every unpipelined one): answered
            // at once, as the fast path answers a burst, and written unless more
            // requests are here.
            if matches!(reservation, Answered::Reserved(None))
                && or_break!(self.answer_here(rx, tx, summary, &mut in_flight))
            {
                if !rx.expects_more_input() {
                    if let ControlFlow::Break(end) =
                        or_break!(self.flush_queued(tx, &mut in_flight, summary, moved).await)
                    {
                        break Ok(end);
                    }
                }
                continue;
            }
            if let ControlFlow::Break(end) = or_break!(
                self.answer_in_time(rx, tx, summary, &mut in_flight, &mut reservation, moved)
                    .await
            ) {
                break Ok(end);
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
                    // Keep a batch in hand for the next small requests (until the
                    // flush), but not much more: what a large request's worst
                    // case left beyond its reply goes back.
                    let cost = in_flight.queued_cost();
                    if let Some(held) = held.as_mut() {
                        if held.bytes() > cost + 2 * SMALL_BATCH {
                            held.shrink_to(cost + SMALL_BATCH);
                        }
                    }
                    in_flight.held = held;
                }
                Answered::Reserved(_) => unreachable!("answer_in_time settles the reservation"),
            }
            // Keep the buffer of a large request only while it is in use.
            if in_flight.body.capacity() > 64 * 1024 {
                in_flight.body = Vec::new();
            }
        };
        self.publish(&mut in_flight, summary);
        end
    }

    /// Memory for a request of `len` bytes: free for a small one (or covered by
    /// what the session holds), else from the budget, at once if it has room (for
    /// a small request, a [`SMALL_BATCH`] more if that has room too); if not, the
    /// replies queued so far are written
    /// first (a session never waits for memory while holding some), then the session
    /// waits its turn, up to the idle timeout. Meanwhile the rest of the request
    /// stays in the kernel and TCP's window holds the client back.
    pub(super) async fn memory_for<W>(
        &self,
        len: u32,
        key: &KeySession,
        tx: &mut SendHalf<W>,
        in_flight: &mut InFlight,
        summary: &mut Summary,
        moved: &AtomicU64,
    ) -> Result<ControlFlow<EchoEnd, Answered>, WireError>
    where
        W: tokio::io::AsyncWrite + Unpin,
    {
        let worst = resources::worst_case(len);
        let memory = &self.shared.memory;
        if in_flight.covers(worst) {
            return Ok(ControlFlow::Continue(Answered::Reserved(None)));
        }
        // A small request in a burst: the next ones are likely small too. The
        // batch is held with the queued replies; the request keeps its own part.
        if worst <= FREE_IN_FLIGHT {
            if let Some(mut reservation) = memory.try_reserve(key, worst + SMALL_BATCH) {
                if let Some(batch) = reservation.split_beyond(worst) {
                    match in_flight.held.as_mut() {
                        Some(held) => held.merge(batch),
                        None => in_flight.held = Some(batch),
                    }
                }
                return Ok(ControlFlow::Continue(Answered::Reserved(Some(reservation))));
            }
        }
        if let Some(reservation) = memory.try_reserve(key, worst) {
            // Here (every large request comes this way), not in the echo loop: the
            // header kept across the loop's awaits would enlarge every task.
            self.spare_frame_for_reply(len, key, in_flight);
            return Ok(ControlFlow::Continue(Answered::Reserved(Some(reservation))));
        }
        // The slow path is boxed: its futures would otherwise enlarge every task.
        Box::pin(async {
            if in_flight.unflushed > 0 {
                if let ControlFlow::Break(end) =
                    self.flush_queued(tx, in_flight, summary, moved).await?
                {
                    return Ok(ControlFlow::Break(end));
                }
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

    /// Frame memory for an input buffer of `bytes` (a maximal transport message at
    /// least, so one reservation serves a pipelined burst): at once if the budget's
    /// frame part has room; if not, the replies queued so far are written first
    /// (a session never waits for memory while holding request memory), then the
    /// session waits its turn, up to the idle timeout, with nothing read of the
    /// message but its length prefix. Replaces what the session held before.
    pub(super) async fn frame_memory<W>(
        &self,
        bytes: usize,
        key: &KeySession,
        tx: &mut SendHalf<W>,
        in_flight: &mut InFlight,
        summary: &mut Summary,
        moved: &AtomicU64,
    ) -> Result<ControlFlow<EchoEnd>, WireError>
    where
        W: tokio::io::AsyncWrite + Unpin,
    {
        let memory = &self.shared.memory;
        // What it held was too small: give it back before asking for more.
        in_flight.frame = None;
        let wanted = bytes.max(FRAME_MEMORY) as u64;
        let mut reservation = match memory.try_reserve_frame(key, wanted) {
            Some(reservation) => reservation,
            // The slow path is boxed, as in `memory_for`.
            None => {
                let waited = Box::pin(async {
                    if in_flight.unflushed > 0 {
                        if let ControlFlow::Break(end) =
                            self.flush_queued(tx, in_flight, summary, moved).await?
                        {
                            return Ok(ControlFlow::Break(end));
                        }
                    }
                    let wait = memory.reserve_frame(key, wanted);
                    match tokio::time::timeout(self.shared.config.idle_timeout, wait).await {
                        Ok(reservation) => Ok(ControlFlow::Continue(reservation)),
                        Err(_) => Ok::<_, WireError>(ControlFlow::Break(EchoEnd::NoMemory)),
                    }
                })
                .await?;
                match waited {
                    ControlFlow::Continue(reservation) => reservation,
                    ControlFlow::Break(end) => return Ok(ControlFlow::Break(end)),
                }
            }
        };
        reservation.allow(bytes);
        in_flight.frame = Some(reservation);
        Ok(ControlFlow::Continue(()))
    }

    /// Counts the batch answered so far in the server's stats, its latency up to
    /// now; the next request starts a new one.
    fn publish(&self, in_flight: &mut InFlight, summary: &mut Summary) {
        self.publish_batch(&mut in_flight.batch, summary);
    }

    /// [`Handler::publish`] of `batch`, the session's.
    fn publish_batch(&self, batch: &mut Batch, summary: &mut Summary) {
        let started = summary.latency_clock.take();
        if batch.requests > 0 {
            self.shared.stats.answered(std::mem::take(batch), started);
        }
    }

    /// Before a wait for the network or for memory: publishes the batch and writes
    /// the replies queued, under [`Handler::watched`].
    async fn flush_queued<W>(
        &self,
        tx: &mut SendHalf<W>,
        in_flight: &mut InFlight,
        summary: &mut Summary,
        moved: &AtomicU64,
    ) -> Result<ControlFlow<EchoEnd>, WireError>
    where
        W: tokio::io::AsyncWrite + Unpin,
    {
        self.publish(in_flight, summary);
        match self.watched(tx.flush(), moved).await {
            ControlFlow::Continue(result) => result?,
            ControlFlow::Break(end) => return Ok(ControlFlow::Break(end)),
        }
        in_flight.flushed();
        Ok(ControlFlow::Continue(()))
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
        summary: &mut Summary,
        in_flight: &mut InFlight,
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
        let answer = self.answer(rx, tx, summary, in_flight, reservation);
        tokio::pin!(answer);
        // A pipelined request is answered at once (its body buffered, its reply
        // queued): polled here, its future is not moved into `watched`'s (a copy
        // of a few hundred bytes per request).
        let result = match poll_once(answer.as_mut()).await {
            Some(result) => result,
            None => match self.watched(answer, moved).await {
                ControlFlow::Continue(result) => result,
                ControlFlow::Break(end) => return Ok(ControlFlow::Break(end)),
            },
        };
        result?;
        Ok(ControlFlow::Continue(()))
    }

    /// Reads one request's body and queues its reply, flushing unless more requests
    /// are expected without waiting. Trims the request's memory to its real size
    /// once the reply is known, and settles `reservation` into [`Answered::Flushed`] or
    /// [`Answered::Queued`]. Counts it in the session's batch (see [`Batch`]), which starts
    /// with its first body read and is published, with the batch's time as each
    /// request's latency, before the replies are flushed or the session waits for
    /// the network: a body still to come from the network ends the batch before
    /// it (the transfer is not the server's time), and starts the next one once
    /// it is read.
    pub(super) async fn answer<R, W>(
        &self,
        rx: &mut RecvHalf<R>,
        tx: &mut SendHalf<W>,
        summary: &mut Summary,
        in_flight: &mut InFlight,
        reservation: &mut Answered,
    ) -> Result<(), WireError>
    where
        R: AsyncRead + Unpin,
        W: tokio::io::AsyncWrite + Unpin,
    {
        if !rx.body_buffered() {
            self.publish(in_flight, summary);
        }
        let body = &mut in_flight.body;
        rx.read_body(body, self.shared.config.max_request).await?;
        if summary.latency_clock.is_none() {
            summary.latency_clock = Some(ClockNanos::now());
        }
        let bytes_in = body.len() as u64;
        summary.requests += 1;
        summary.bytes_in += bytes_in;
        // The reply is the body, uppercased in place, unless it needs a text of its
        // own (non-ASCII uppercase, or the ERROR reason).
        let (record_type, text) = match crate::echo::answer(body) {
            crate::echo::Answer::InPlace => (RecordType::Response, None),
            crate::echo::Answer::Converted(upper) => (RecordType::Response, Some(upper)),
            reply @ crate::echo::Answer::NotUtf8 { .. } => (RecordType::Error, reply.error_text()),
        };
        let reply = text.as_deref().map_or(&body[..], str::as_bytes);
        let reply_len = reply.len();
        let bytes_out = match record_type {
            RecordType::Response => reply_len as u64,
            _ => 0,
        };
        reservation.shrink_to(resources::real_cost(body.len(), reply_len));
        summary.bytes_out += bytes_out;
        let batch = &mut in_flight.batch;
        batch.requests += 1;
        batch.bytes_in += bytes_in;
        batch.bytes_out += bytes_out;
        // A reply of a transport message or more is worth a write of its own, and
        // its tail (up to a batch) would otherwise wait while the next request's body
        // is read: 1 MiB throughput measured 9% higher flushing it at once. It is
        // written while the next requests are read (boxed: its futures would
        // otherwise enlarge every session's task).
        if reply_len >= crate::wire::MAX_PLAINTEXT_LEN {
            let write = async {
                tx.write_record(record_type, reply).await?;
                self.publish_batch(batch, summary);
                tx.flush().await
            };
            let capacity = in_flight.frame.as_ref().map_or(0, Reservation::allowance);
            Box::pin(write_reading_ahead(rx, capacity, write)).await?;
            // Only now is the request's memory free: its reply was in the buffer.
            *reservation = Answered::Flushed;
            return Ok(());
        }
        tx.write_record(record_type, reply).await?;
        drop(text);
        // Answer now unless more requests are already here, or the last read filled
        // its buffer (the kernel likely holds more, and the next read, which flushes
        // before it would wait, takes them): never wait for the client's end of
        // stream, but batch the replies of a pipelined burst in one write.
        // Decided before the flush's await, so that nothing of this request but the
        // decision is kept across it: every byte kept there is in every session's task.
        if rx.expects_more_input() {
            let Answered::Reserved(reserved) = std::mem::replace(reservation, Answered::Flushed)
            else {
                unreachable!("a request is answered once")
            };
            *reservation = Answered::Queued {
                reply_len: crate::wire::RECORD_HEADER_LEN as u64 + reply_len as u64,
                reservation: reserved,
            };
        } else {
            self.publish(in_flight, summary);
            tx.flush().await?;
            *reservation = Answered::Flushed;
        }
        Ok(())
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

/// After a reload: whether a session may go on ([`trust::session_still_allowed`]):
/// its key, certificate and CA not revoked, and still admitted by a settled
/// version of authorized_keys and the trusted user CAs. A file still being written
/// (checked again once it settles), or one that cannot be used (missing,
/// unreadable), keeps the session: neither is proof that this key was revoked.
pub(super) fn still_authorized(handler: &Handler, client: &PublicKey) -> bool {
    let keys = handler.authorized_keys.settled_now();
    trust::session_still_allowed(
        keys.as_deref(),
        &handler.shared.trust.snapshot(),
        handler.peer,
        client,
        handler.certificate.as_deref(),
    )
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
