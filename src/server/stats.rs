//! The server's live counters, read by `serve`'s log and its Prometheus metrics, by
//! tests that wait on events instead of sleeping, and by the benchmarks.
//!
//! Nothing here is touched per request: a session counts what it answers in a
//! [`Batch`] and publishes it with a few atomic adds (the latency histogram's
//! buckets are atomics too) and one clock read whenever it writes its replies or
//! waits for the network, so measuring costs no lock and no clock read per
//! request of a pipelined burst. Waking the
//! tests and tools that wait for a count ([`ServerStats::wait_for`]) costs a lock,
//! so it is done only while one waits: a counter changed with nobody waiting is one
//! atomic add and one load.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::wire::Suite;

/// Defines [`ServerStats`] (atomic counters), [`StatsSnapshot`] (plain copies) and
/// `ServerStats::snapshot` from one list, so a counter is named once.
macro_rules! counters {
    ($($(#[doc = $doc:literal])* $name:ident,)*) => {
        /// Live counters of a server. Gauges go up and down; the rest only go up.
        #[derive(Debug, Default)]
        pub struct ServerStats {
            $($(#[doc = $doc])* pub $name: AtomicU64,)*
            /// Request body bytes received (not counted in `changed`: no test waits
            /// on it, and a wake-up per request would cost a lock).
            pub bytes_in: AtomicU64,
            /// Reply body bytes queued.
            pub bytes_out: AtomicU64,
            /// How long requests waited in the server for their replies: from the
            /// first body of their batch read to the batch's last reply queued,
            /// just before the batch's replies are written together (a batch ends
            /// whenever the session writes its replies or waits for the network).
            /// A request of a pipelined burst counts the burst's time, which is
            /// what its reply waits before it is written.
            pub request_latency: LatencyHistogram,
            /// When each refusal in force ends, soonest first: how many sources are
            /// penalised now, without locking or walking the penalty table. Pushed
            /// once per penalty (rare), popped when read or pushed, so it holds at
            /// most the refusals in force.
            penalty_ends: Mutex<BinaryHeap<Reverse<Instant>>>,
            /// Woken on every change while someone waits, for [`ServerStats::wait_for`].
            changed: Notify,
            /// How many [`ServerStats::wait_for`] calls are in progress: with none,
            /// a change wakes nobody and skips `changed` (whose `notify_waiters`
            /// takes its lock every time, even with no waiter: 9 % of the server's
            /// time per pipelined request).
            waiting: AtomicUsize,
        }

        /// A copy of [`ServerStats`] at one moment.
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        pub struct StatsSnapshot {
            $($(#[doc = $doc])* pub $name: u64,)*
        }

        impl ServerStats {
            /// The current values.
            pub fn snapshot(&self) -> StatsSnapshot {
                // Sequentially consistent loads (plain loads on x86): see
                // `ServerStats::add` for why a waiter needs them.
                StatsSnapshot {
                    $($name: self.$name.load(Ordering::SeqCst),)*
                }
            }
        }
    };
}

counters! {
    /// Connections open now (gauge).
    connections_open,
    /// Sessions open now: authorized, not yet closed (gauge).
    sessions_open,
    /// Handshakes in progress now (gauge).
    handshakes_in_progress,
    /// Connections accepted from the listener, refused or not.
    accepted,
    /// Closed on arrival: the open-connections cap was reached.
    refused_connection_cap,
    /// Closed on arrival: the source had its most handshakes in progress.
    refused_source_cap,
    /// Closed on arrival: the source is serving a penalty.
    refused_penalized,
    /// Refusals begun: a source reached the failure threshold (one per offence,
    /// however many of its handshakes failed at once).
    penalties_imposed,
    /// Handshakes that failed: garbage, protocol violations, early close.
    handshake_failures,
    /// Handshakes the client ended after the server's key was sent, before sending
    /// its own (it declined an unknown host key, most likely): sshd's "noauth", as
    /// opposed to a failure.
    handshake_declines,
    /// Unfinished handshakes closed to make room for a newcomer when the
    /// handshakes-in-progress cap was reached (the oldest goes first).
    handshakes_evicted,
    /// Handshakes not completed in time.
    handshake_timeouts,
    /// Clients whose key was refused.
    denied,
    /// Sessions that passed authorization.
    sessions,
    /// Sessions ended because their key was revoked.
    revoked,
    /// Sessions closed for idling or for not taking their replies.
    idle_timeouts,
    /// Sessions waiting for the memory budget now (gauge).
    memory_waits,
    /// Sessions closed for holding memory without progress while others waited.
    memory_stalls,
    /// Sessions refused because their key had its most sessions open.
    refused_key_cap,
    /// Sessions closed at the end of their time limit.
    session_time_limits,
    /// Requests answered.
    requests,
    /// Connections from a configured proxy whose PROXY protocol header named a
    /// client (counted in `accepted` too, once).
    proxied,
    /// PROXY protocol LOCAL headers (a proxy's health checks), closed at once.
    proxy_health_checks,
    /// Connections from a configured proxy closed for a missing, malformed,
    /// truncated or late PROXY protocol header.
    proxy_header_errors,
    /// Sessions the client ended, or that ended as the client was done.
    closed,
    /// Sessions closed because the server stopped (after answering what they had read).
    stopped,
    /// Sessions closed for a request over the size limit.
    too_large,
    /// Sessions that failed after authorization (the peer reset, a bad record...).
    session_failures,
    /// Handshakes ended by an honest mismatch: a protocol version or suite not
    /// served here (the client was told, or for v1 closed on). Not a failure.
    handshake_mismatches,
    /// Of `sessions`, those running AES-GCM (protocol v2); the rest run ChaChaPoly.
    sessions_aesgcm,
    /// Of `sessions_open`, those running AES-GCM (gauge).
    sessions_open_aesgcm,
}

/// A label value and the counter of the snapshot it names.
type Labelled = (&'static str, fn(&StatsSnapshot) -> u64);

/// The `outcome` label of each way a connection that was admitted ends, and the
/// counter that counts it: one place for the names, so that the metrics, the docs and
/// the tests agree. Together with the refusals on arrival they account for every
/// accepted connection once it is over.
const OUTCOMES: [Labelled; 15] = [
    ("closed", |s| s.closed),
    ("stopped", |s| s.stopped),
    ("handshake_failed", |s| s.handshake_failures),
    ("handshake_timeout", |s| s.handshake_timeouts),
    ("handshake_declined", |s| s.handshake_declines),
    ("handshake_evicted", |s| s.handshakes_evicted),
    ("denied", |s| s.denied),
    ("too_many_sessions", |s| s.refused_key_cap),
    ("revoked", |s| s.revoked),
    ("idle_timeout", |s| s.idle_timeouts),
    ("memory_stalled", |s| s.memory_stalls),
    ("time_limit", |s| s.session_time_limits),
    ("too_large", |s| s.too_large),
    ("failed", |s| s.session_failures),
    ("protocol_mismatch", |s| s.handshake_mismatches),
];

/// The `reason` label of each refusal on arrival (closed before a byte is read).
const REFUSALS: [Labelled; 3] = [
    ("connection_cap", |s| s.refused_connection_cap),
    ("source_cap", |s| s.refused_source_cap),
    ("penalized", |s| s.refused_penalized),
];

/// Sessions running one Noise protocol suite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SuiteSessions {
    /// The full Noise protocol name, as in the handshake (`Noise_XX_25519_ChaChaPoly_BLAKE2s`).
    pub suite: &'static str,
    /// Open now.
    pub open: u64,
    /// Opened since the server started.
    pub total: u64,
}

impl StatsSnapshot {
    /// How the connections that were admitted and are over ended, by outcome label
    /// (`closed`, `denied`, `idle_timeout`...).
    pub fn outcomes(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        OUTCOMES
            .iter()
            .map(move |(name, count)| (*name, count(self)))
    }

    /// Connections closed on arrival, by reason label (`connection_cap`,
    /// `source_cap`, `penalized`).
    pub fn refusals(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        REFUSALS
            .iter()
            .map(move |(name, count)| (*name, count(self)))
    }

    /// Sessions by Noise suite, named as [`Suite::noise_name`]: ChaChaPoly (v1's
    /// and v2's), then AES-GCM (v2).
    pub fn sessions_by_suite(&self) -> [SuiteSessions; 2] {
        [
            SuiteSessions {
                suite: Suite::ChaChaPolyBlake2s.noise_name(),
                open: self.sessions_open.saturating_sub(self.sessions_open_aesgcm),
                total: self.sessions.saturating_sub(self.sessions_aesgcm),
            },
            SuiteSessions {
                suite: Suite::AesGcmSha256.noise_name(),
                open: self.sessions_open_aesgcm,
                total: self.sessions_aesgcm,
            },
        ]
    }
}

/// Upper bounds of the latency buckets, in nanoseconds: a small request is answered
/// in microseconds, a 1 MiB one in about a millisecond, one whose client stops
/// reading waits up to the idle timeout.
pub const LATENCY_BUCKETS_NANOS: [u64; 16] = [
    1_000,
    2_500,
    5_000,
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    100_000_000,
    1_000_000_000,
    10_000_000_000,
];

/// A histogram of durations in fixed buckets of atomics: recording is two relaxed
/// adds and a binary search of 16 bounds, with no lock, so every request can be measured.
#[derive(Debug, Default)]
pub struct LatencyHistogram {
    /// Observations per bucket (not cumulative); the last one is over every bound.
    buckets: [AtomicU64; LATENCY_BUCKETS_NANOS.len() + 1],
    /// The sum of all observations, in nanoseconds (584 years before it wraps).
    sum_nanos: AtomicU64,
}

/// A copy of a [`LatencyHistogram`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LatencySnapshot {
    /// `(upper bound in nanoseconds, observations over the previous bound and at or
    /// under this one)` for each bound of [`LATENCY_BUCKETS_NANOS`], in order.
    pub buckets: Vec<(u64, u64)>,
    /// Every observation, those over the last bound included.
    pub count: u64,
    /// Their sum, in nanoseconds.
    pub sum_nanos: u64,
}

impl LatencyHistogram {
    /// Counts one observation.
    pub fn record(&self, elapsed: Duration) {
        self.record_nanos(u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX));
    }

    /// Counts one observation of `nanos` nanoseconds.
    pub fn record_nanos(&self, nanos: u64) {
        self.record_many(nanos, 1);
    }

    /// Counts `count` observations of `nanos` nanoseconds each: a batch's
    /// requests, whose replies waited for the same time.
    pub fn record_many(&self, nanos: u64, count: u64) {
        if count == 0 {
            return;
        }
        let bucket = LATENCY_BUCKETS_NANOS.partition_point(|&bound| bound < nanos);
        self.buckets[bucket].fetch_add(count, Ordering::Relaxed);
        self.sum_nanos
            .fetch_add(nanos.saturating_mul(count), Ordering::Relaxed);
    }

    /// The observations so far. Read bucket by bucket while requests go on, so the
    /// count may lag the sum by the requests of that instant.
    pub fn snapshot(&self) -> LatencySnapshot {
        let buckets: Vec<(u64, u64)> = LATENCY_BUCKETS_NANOS
            .iter()
            .zip(&self.buckets)
            .map(|(&bound, bucket)| (bound, bucket.load(Ordering::Relaxed)))
            .collect();
        let over = self.buckets[LATENCY_BUCKETS_NANOS.len()].load(Ordering::Relaxed);
        LatencySnapshot {
            count: buckets.iter().map(|(_, count)| count).sum::<u64>() + over,
            buckets,
            sum_nanos: self.sum_nanos.load(Ordering::Relaxed),
        }
    }
}

impl ServerStats {
    /// Waits until `condition` holds for the counters, or `timeout` passes; returns
    /// the last snapshot and whether the condition held. Wakes on every change, so
    /// tests wait on events instead of sleeping.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        condition: impl Fn(&StatsSnapshot) -> bool,
    ) -> (StatsSnapshot, bool) {
        let deadline = tokio::time::Instant::now() + timeout;
        // Counted before the first snapshot: a change from here on either wakes
        // us or is in that snapshot (see `ServerStats::add`).
        let _waiting = Waiter::new(&self.waiting);
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let snapshot = self.snapshot();
            if condition(&snapshot) {
                return (snapshot, true);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                let snapshot = self.snapshot();
                return (snapshot, condition(&snapshot));
            }
        }
    }

    /// Sources refused now for failed handshakes (each IPv4 address or IPv6 /64
    /// serving a penalty at this moment).
    pub fn penalized_sources(&self) -> u64 {
        let mut ends = self.lock_penalty_ends();
        pop_ended(&mut ends, Instant::now());
        ends.len() as u64
    }

    /// A penalty began that lasts until `until`.
    pub(super) fn penalty_imposed(&self, until: Instant) {
        {
            let mut ends = self.lock_penalty_ends();
            pop_ended(&mut ends, Instant::now());
            ends.push(Reverse(until));
        }
        self.add(&self.penalties_imposed);
    }

    /// A batch of requests answered (see [`Batch`]): its body bytes each way,
    /// `requests` at once, and as each one's latency the batch's time, from
    /// `started` (the first of its bodies read; unknown counts as now) to now (its
    /// last reply queued, just before the replies go to the socket together).
    /// Atomic adds only, one clock read; `requests` wakes the waiters.
    pub(super) fn answered(&self, batch: Batch, started: Option<ClockNanos>) {
        let elapsed = started.map_or(0, |started| ClockNanos::now().since(started));
        self.bytes_in.fetch_add(batch.bytes_in, Ordering::Relaxed);
        self.bytes_out.fetch_add(batch.bytes_out, Ordering::Relaxed);
        self.request_latency.record_many(elapsed, batch.requests);
        self.requests.fetch_add(batch.requests, Ordering::SeqCst);
        self.changed_now();
    }

    /// The heap stays consistent whatever a panicking holder did (pushes and pops
    /// are single steps).
    fn lock_penalty_ends(&self) -> std::sync::MutexGuard<'_, BinaryHeap<Reverse<Instant>>> {
        self.penalty_ends
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Counts one up, waking whoever waits for a change.
    ///
    /// Why no change is missed without a wake-up: the add, the load of `waiting`,
    /// a waiter's increment of `waiting` and its snapshot's loads are all
    /// sequentially consistent, so they fall in one total order. If this load sees
    /// no waiter, the waiter's increment, and so its snapshot, come after the add:
    /// the snapshot sees it. If it sees one, `notify_waiters` wakes its pending
    /// `notified()` (a `Notified` made after the call sees the add through the
    /// `Notify`'s own synchronisation, in its snapshot). On x86 the add is the same
    /// locked instruction as a relaxed one and the loads are plain loads.
    pub(super) fn add(&self, counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::SeqCst);
        self.changed_now();
    }

    /// Counts one down (a gauge), waking whoever waits for a change, as
    /// [`ServerStats::add`].
    pub(super) fn sub(&self, counter: &AtomicU64) {
        counter.fetch_sub(1, Ordering::SeqCst);
        self.changed_now();
    }

    /// Wakes the waiters, if any, after a change.
    fn changed_now(&self) {
        if self.waiting.load(Ordering::SeqCst) > 0 {
            self.changed.notify_waiters();
        }
    }
}

/// One [`ServerStats::wait_for`] in progress, counted in `waiting` until dropped
/// (a cancelled wait included).
struct Waiter<'a>(&'a AtomicUsize);

impl<'a> Waiter<'a> {
    fn new(waiting: &'a AtomicUsize) -> Self {
        waiting.fetch_add(1, Ordering::SeqCst);
        Self(waiting)
    }
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// What one session answered since it last published to [`ServerStats`]: counted
/// by the session alone, in plain integers, and published with one clock read and
/// a few atomic adds per batch ([`ServerStats::answered`]) where it was once per
/// request (about 85 instructions of some 1,400 per pipelined request). A batch
/// ends whenever the session is about to write its queued replies or to wait for
/// the network, so the counters a client can see never lag its replies.
#[derive(Debug, Default)]
pub(super) struct Batch {
    /// Requests answered.
    pub(super) requests: u64,
    /// Their body bytes.
    pub(super) bytes_in: u64,
    /// Their replies' body bytes (0 for an ERROR).
    pub(super) bytes_out: u64,
}

/// A reading of the monotonic clock in nanoseconds: what the latency histogram
/// measures with. A plain integer, so the difference of two is one subtraction (an
/// `Instant`'s takes some 50 instructions, as much as the rest of the measurement),
/// and 8 bytes where a session keeps one (an `Instant` is 16).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct ClockNanos(std::num::NonZeroU64);

impl ClockNanos {
    /// Now (`CLOCK_MONOTONIC`, read through the vDSO: no system call).
    pub(super) fn now() -> Self {
        // Cannot fail for CLOCK_MONOTONIC on Linux; a zero would only make one
        // observation wrong, never panic.
        let nanos = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
            .map(|now| {
                (now.tv_sec() as u64)
                    .wrapping_mul(1_000_000_000)
                    .wrapping_add(now.tv_nsec() as u64)
            })
            .unwrap_or(0);
        // Zero only at the very instant of boot.
        Self(std::num::NonZeroU64::new(nanos).unwrap_or(std::num::NonZeroU64::MIN))
    }

    /// Nanoseconds from `earlier` to this reading (0 if it is not earlier).
    pub(super) fn since(self, earlier: Self) -> u64 {
        self.0.get().saturating_sub(earlier.0.get())
    }
}

/// Drops the refusals over at `now`.
fn pop_ended(ends: &mut BinaryHeap<Reverse<Instant>>, now: Instant) {
    while ends.peek().is_some_and(|Reverse(end)| *end <= now) {
        ends.pop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_bounds_are_inclusive_and_the_count_includes_the_overflow() {
        let histogram = LatencyHistogram::default();
        histogram.record(Duration::from_nanos(1_000));
        histogram.record(Duration::from_nanos(1_001));
        histogram.record(Duration::from_micros(40));
        histogram.record(Duration::from_secs(3_600));
        let snapshot = histogram.snapshot();
        assert_eq!(snapshot.buckets[0], (1_000, 1));
        assert_eq!(snapshot.buckets[1], (2_500, 1));
        assert_eq!(snapshot.buckets[4], (25_000, 0));
        assert_eq!(snapshot.buckets[5], (50_000, 1));
        assert_eq!(snapshot.buckets.last(), Some(&(10_000_000_000, 0)));
        assert_eq!(snapshot.count, 4);
        assert_eq!(snapshot.sum_nanos, 3_600_000_000_000 + 42_001);
    }

    #[test]
    fn a_batch_counts_every_request_it_answered_at_the_batch_time() {
        let stats = ServerStats::default();
        let batch = |requests, bytes_in, bytes_out| Batch {
            requests,
            bytes_in,
            bytes_out,
        };
        // No start known: the batch took no time.
        stats.answered(batch(3, 30, 24), None);
        let started = ClockNanos::now();
        stats.answered(batch(2, 5, 0), Some(started));
        let latency = stats.request_latency.snapshot();
        assert_eq!(latency.count, 5);
        // The first three took no time: the first bucket.
        assert!(latency.buckets[0].1 >= 3, "{latency:?}");
        // Both requests of the second batch have its one time.
        assert_eq!(latency.sum_nanos % 2, 0);
        assert_eq!(stats.snapshot().requests, 5);
        assert_eq!(stats.bytes_in.load(Ordering::Relaxed), 35);
        assert_eq!(stats.bytes_out.load(Ordering::Relaxed), 24);
        // An empty batch records nothing.
        stats.request_latency.record_many(1_000, 0);
        assert_eq!(stats.request_latency.snapshot(), latency);
    }

    #[test]
    fn penalized_sources_counts_the_refusals_in_force() {
        let stats = ServerStats::default();
        let now = Instant::now();
        stats.penalty_imposed(now + Duration::from_secs(60));
        stats.penalty_imposed(now + Duration::from_secs(120));
        // One already over when it is read: not counted, and dropped.
        stats.penalty_imposed(now);
        assert_eq!(stats.penalized_sources(), 2);
        assert_eq!(stats.snapshot().penalties_imposed, 3);
        assert_eq!(stats.lock_penalty_ends().len(), 2);
    }

    #[test]
    fn every_outcome_and_refusal_has_its_own_counter_and_label() {
        let snapshot = StatsSnapshot {
            closed: 1,
            stopped: 2,
            handshake_failures: 3,
            handshake_timeouts: 4,
            handshake_declines: 5,
            handshakes_evicted: 6,
            denied: 7,
            refused_key_cap: 8,
            revoked: 9,
            idle_timeouts: 10,
            memory_stalls: 11,
            session_time_limits: 12,
            too_large: 13,
            session_failures: 14,
            handshake_mismatches: 15,
            refused_connection_cap: 16,
            refused_source_cap: 17,
            refused_penalized: 18,
            ..StatsSnapshot::default()
        };
        let values: Vec<u64> = snapshot
            .outcomes()
            .chain(snapshot.refusals())
            .map(|(_, count)| count)
            .collect();
        assert_eq!(values, (1..=18).collect::<Vec<_>>());
        let mut names: Vec<&str> = snapshot.outcomes().map(|(name, _)| name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), OUTCOMES.len());
        assert_eq!(
            snapshot.sessions_by_suite()[0].suite,
            crate::wire::NOISE_PROTOCOL
        );
    }
}
