//! What sessions share and must not exhaust: the memory budget for request and reply
//! bodies in flight, and the count of open sessions per client key.
//!
//! The budget is a semaphore of KiB. A session reserves the worst case of a request
//! (its body, and a reply up to three times longer, with the session buffers that
//! hold a copy of each) from its header, before reading any of the body, and trims
//! the reservation to the real size once the reply is known. It gives it all back
//! once the reply is written. When the budget is spent, sessions wait at the header
//! instead of reading and allocating: back-pressure, since the rest of their request
//! stays in the kernel's receive buffer and TCP's window stops the client. The
//! semaphore is fair (first come, first served), so a large request is not starved
//! by small ones, and a session holds at most one reservation at a time, so it
//! cannot wait while holding: no deadlock, as long as one request's worst case fits
//! (checked by [`ServerConfig::validate`](super::ServerConfig::validate)).
//!
//! Part of the budget (a quarter, leaving room for the largest request) is kept for
//! the sessions' input buffers outside a request body: before reading a transport
//! message longer than [`FREE_INPUT`](crate::wire::FREE_INPUT) bytes that may hold a request's header, a
//! session reserves the buffer for it from that part (its *frame* memory), waiting
//! with only the message's length prefix read. A session that waits for memory
//! for its request holds its frame memory meanwhile, never request memory, and
//! sessions with request memory never wait for frame memory (they write what they
//! have queued first), so neither part can be held by sessions that wait for it:
//! thousands of sessions waiting for memory cost a few KiB each beyond the budget.
//!
//! One client key may hold at most half the budget (or one worst case, if that is
//! more): a reservation takes its key's share first, then the budget's, always in
//! that order, so no cycle of waits can form. Sessions of one key (an insider
//! opening a thousand sessions that never read) then queue behind each other, and
//! the other keys' requests find the other half free.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::identity::PublicKey;

use super::stats::ServerStats;

/// The most of one record that a session's transport buffers hold at once, on
/// either side: a bulk read or write batch (256 KiB) and one transport message
/// (64 KiB). Counted with each body, since those buffers hold a copy of it.
pub(super) const TRANSPORT_BUFFER: u64 = 320 * 1024;

/// How much longer than its request a reply can be: uppercasing turns some
/// characters into three times their bytes (`ΐ`, 2 bytes, into `Ϊ́`, 6).
pub(super) const REPLY_GROWTH: u64 = 3;

/// What a body of `len` bytes costs while in flight: itself, and the copy of it in
/// the session's transport buffer.
#[inline]
fn body_cost(len: u64) -> u64 {
    len + len.min(TRANSPORT_BUFFER)
}

/// The memory a request of `len` bytes may need before its reply is known: its
/// body, and the longest reply it can have.
#[inline]
pub(super) fn worst_case(len: u32) -> u64 {
    let len = u64::from(len);
    body_cost(len) + body_cost(len * REPLY_GROWTH)
}

/// The memory a request of `len` bytes needs once its reply of `reply_len` bytes
/// is known.
pub(super) fn real_cost(len: usize, reply_len: usize) -> u64 {
    body_cost(len as u64) + body_cost(reply_len as u64)
}

/// Bytes to whole KiB, rounded up (the budget's unit), saturating.
fn kib(bytes: u64) -> u32 {
    u32::try_from(bytes.div_ceil(1024)).unwrap_or(u32::MAX)
}

/// The memory in flight, for an embedder's monitoring and for tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct MemoryUse {
    /// The budget, in bytes (rounded up to a KiB).
    pub budget: u64,
    /// Reserved now by requests in flight, in bytes.
    pub in_flight: u64,
    /// The most reserved at once since the server started, in bytes.
    pub peak: u64,
    /// The part of `in_flight` reserved for sessions' input buffers outside a
    /// request body (frame memory), in bytes.
    pub frames: u64,
}

/// The frame memory a session reserves at least (in bytes): one maximal transport
/// message with its length prefix and the first read, so that one reservation
/// serves every message of a pipelined burst.
pub(super) const FRAME_MEMORY: usize =
    crate::wire::FRAME_HEADER_LEN + crate::wire::MAX_FRAME_LEN + 256;

/// How a budget of `bytes` is split, in KiB: (request memory, frame memory). Frames
/// get a quarter, at most what leaves one worst-case request, but at least one
/// maximal transport message (beyond the budget, if it has no room for one).
fn split_kib(bytes: u64, max_request: u32) -> (u32, u32) {
    let total = kib(bytes);
    let carved = (total / 4).min(total.saturating_sub(kib(worst_case(max_request))));
    (total - carved, carved.max(kib(FRAME_MEMORY as u64)))
}

/// The server-wide budget for request and reply bodies in flight, and for input
/// buffers outside a body.
#[derive(Debug)]
pub(crate) struct MemoryBudget {
    /// One permit per KiB of request memory; a request holds its reservation's worth.
    permits: Arc<Semaphore>,
    /// One permit per KiB of frame memory, for input buffers outside a body.
    frames: Arc<Semaphore>,
    /// Both parts in KiB, to tell how much is in use from what is left.
    total_kib: u32,
    /// The frame part in KiB.
    frames_kib: u32,
    /// The highest reservation total seen, in KiB.
    peak_kib: AtomicU64,
    /// Where the gauge of sessions waiting for memory is kept.
    stats: Arc<ServerStats>,
}

/// A request's share of the budget, given back when dropped. Boxed: sessions keep
/// a place for one in their task, and most of them hold none.
#[derive(Debug)]
pub(super) struct Reservation(Box<Permits>);

/// The permits of a [`Reservation`].
#[derive(Debug)]
struct Permits {
    /// The permits held in the server's budget, one per KiB.
    permit: OwnedSemaphorePermit,
    /// As many permits of the client key's share.
    key_permit: OwnedSemaphorePermit,
    /// For frame memory: the input buffer this lets a session hold, in bytes. More
    /// than the permits when a session's buffer already held more than its key's
    /// share of frame memory (what a large body left behind); the share is then
    /// all taken.
    allowance: usize,
}

/// Half the request memory, in KiB, or one worst case if that is more: what one
/// key's sessions may hold at once; and half the frame memory, or one frame.
fn key_share_kib(budget: u64, max_request: u32) -> (u32, u32) {
    let (requests, frames) = split_kib(budget, max_request);
    let share = (requests / 2)
        .max(kib(worst_case(max_request)))
        .min(requests);
    (
        share,
        (frames / 2).max(kib(FRAME_MEMORY as u64)).min(frames),
    )
}

impl MemoryBudget {
    /// A budget of `bytes` (rounded up to a KiB) for requests of at most
    /// `max_request` bytes.
    pub(super) fn new(bytes: u64, max_request: u32, stats: Arc<ServerStats>) -> Self {
        let max = u32::try_from(Semaphore::MAX_PERMITS / 2).unwrap_or(u32::MAX);
        let (requests_kib, frames_kib) = split_kib(bytes, max_request);
        let (requests_kib, frames_kib) = (requests_kib.min(max), frames_kib.min(max));
        Self {
            permits: Arc::new(Semaphore::new(requests_kib as usize)),
            frames: Arc::new(Semaphore::new(frames_kib as usize)),
            total_kib: requests_kib + frames_kib,
            frames_kib,
            peak_kib: AtomicU64::new(0),
            stats,
        }
    }

    /// Reserves `bytes` for a session of `key` if that much is free now, in the
    /// key's share and in the budget.
    pub(super) fn try_reserve(&self, key: &KeySession, bytes: u64) -> Option<Reservation> {
        let wanted = key.clamp(bytes);
        let key_permit = Arc::clone(key.share())
            .try_acquire_many_owned(wanted)
            .ok()?;
        let permit = Arc::clone(&self.permits)
            .try_acquire_many_owned(wanted)
            .ok()?;
        Some(self.note(permit, key_permit))
    }

    /// Reserves `bytes`, waiting (in turn, first come first served) until they are
    /// free. Counted in the `memory_waits` gauge while it waits, which is what makes
    /// sessions that hold memory without progress give it up.
    pub(super) async fn reserve(&self, key: &KeySession, bytes: u64) -> Reservation {
        let _waiting = Waiting::new(&self.stats);
        let wanted = key.clamp(bytes);
        // The key's share first, then the budget: always in this order.
        let key_permit = Arc::clone(key.share())
            .acquire_many_owned(wanted)
            .await
            .expect("a key's share is never closed");
        let permit = Arc::clone(&self.permits)
            .acquire_many_owned(wanted)
            .await
            .expect("the budget's semaphore is never closed");
        self.note(permit, key_permit)
    }

    /// Reserves `bytes` of frame memory for a session of `key` if that much is free
    /// now, in the key's share and in the budget's frame part.
    pub(super) fn try_reserve_frame(&self, key: &KeySession, bytes: u64) -> Option<Reservation> {
        self.try_take_frames(key, key.clamp_frame(bytes))
    }

    /// `kib` KiB of frame memory for a session of `key`, if the key's share and the
    /// budget's frame part both have them free now.
    fn try_take_frames(&self, key: &KeySession, kib: u32) -> Option<Reservation> {
        let key_permit = Arc::clone(&key.0.frames).try_acquire_many_owned(kib).ok()?;
        let permit = Arc::clone(&self.frames).try_acquire_many_owned(kib).ok()?;
        Some(self.note(permit, key_permit))
    }

    /// Frame memory to read ahead with, which no session needs yet (see the echo
    /// loop's `Handler::spare_frame_for_reply`): up to `bytes`, of what is free
    /// beyond one maximal transport message in both the key's share and the
    /// budget's frame part, so that it never leaves another session waiting for
    /// the message it has to read; and none while any session waits for memory.
    pub(super) fn try_reserve_spare_frame(
        &self,
        key: &KeySession,
        bytes: u64,
    ) -> Option<Reservation> {
        if self.under_pressure() {
            return None;
        }
        let keep = kib(FRAME_MEMORY as u64) as usize;
        let spare = |pool: &Semaphore| pool.available_permits().saturating_sub(keep);
        let wanted = (kib(bytes) as usize)
            .min(spare(&key.0.frames))
            .min(spare(&self.frames));
        let wanted = u32::try_from(wanted).ok().filter(|&wanted| wanted > 0)?;
        self.try_take_frames(key, wanted)
    }

    /// Reserves `bytes` of frame memory, waiting in turn, as [`MemoryBudget::reserve`].
    pub(super) async fn reserve_frame(&self, key: &KeySession, bytes: u64) -> Reservation {
        let _waiting = Waiting::new(&self.stats);
        let wanted = key.clamp_frame(bytes);
        let key_permit = Arc::clone(&key.0.frames)
            .acquire_many_owned(wanted)
            .await
            .expect("a key's share is never closed");
        let permit = Arc::clone(&self.frames)
            .acquire_many_owned(wanted)
            .await
            .expect("the budget's semaphore is never closed");
        self.note(permit, key_permit)
    }

    /// Whether some session is waiting for memory.
    pub(super) fn under_pressure(&self) -> bool {
        self.stats.memory_waits.load(Ordering::Relaxed) > 0
    }

    /// KiB of both parts in use now.
    fn in_use_kib(&self) -> u64 {
        u64::from(self.total_kib)
            - self.permits.available_permits() as u64
            - self.frames.available_permits() as u64
    }

    /// The memory in flight now (both parts).
    pub(super) fn usage(&self) -> MemoryUse {
        let in_use = self.in_use_kib();
        MemoryUse {
            budget: u64::from(self.total_kib) * 1024,
            in_flight: in_use * 1024,
            peak: self.peak_kib.load(Ordering::Relaxed) * 1024,
            frames: self.frames_in_use(),
        }
    }

    /// The frame memory in use now, in bytes.
    fn frames_in_use(&self) -> u64 {
        (u64::from(self.frames_kib) - self.frames.available_permits() as u64) * 1024
    }

    fn note(&self, permit: OwnedSemaphorePermit, key_permit: OwnedSemaphorePermit) -> Reservation {
        let in_use = self.in_use_kib();
        self.peak_kib.fetch_max(in_use, Ordering::Relaxed);
        let allowance = permit.num_permits() * 1024;
        Reservation(Box::new(Permits {
            permit,
            key_permit,
            allowance,
        }))
    }
}

/// Counts a session in the `memory_waits` gauge while it waits for memory.
struct Waiting<'a>(&'a ServerStats);

impl<'a> Waiting<'a> {
    fn new(stats: &'a ServerStats) -> Self {
        stats.add(&stats.memory_waits);
        Self(stats)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.sub(&self.0.memory_waits);
    }
}

impl Reservation {
    /// For frame memory: how large an input buffer it lets a session hold.
    pub(super) fn allowance(&self) -> usize {
        self.0.allowance
    }

    /// The bytes of request memory it holds (whole KiB).
    pub(super) fn bytes(&self) -> u64 {
        self.0.permit.num_permits() as u64 * 1024
    }

    /// For frame memory: lets the session hold an input buffer of `bytes`, though
    /// the reservation was cut to its key's share.
    pub(super) fn allow(&mut self, bytes: usize) {
        self.0.allowance = self.0.allowance.max(bytes);
    }

    /// Takes over `other`'s share (of the same session): one reservation for both.
    pub(super) fn merge(&mut self, other: Reservation) {
        let other = *other.0;
        self.0.permit.merge(other.permit);
        self.0.key_permit.merge(other.key_permit);
    }

    /// Splits off what is reserved beyond `bytes` (whole KiB) as a reservation of
    /// its own, if anything is.
    pub(super) fn split_beyond(&mut self, bytes: u64) -> Option<Reservation> {
        let keep = kib(bytes) as usize;
        let permits = &mut *self.0;
        let held = permits.permit.num_permits();
        if keep >= held {
            return None;
        }
        let permit = permits.permit.split(held - keep)?;
        // The key's share was taken in the same amount (`try_reserve`).
        let key_permit = permits.key_permit.split(held - keep)?;
        Some(Reservation(Box::new(Permits {
            permit,
            key_permit,
            allowance: 0,
        })))
    }

    /// Gives back what is reserved beyond `bytes`, once the real size is known.
    pub(super) fn shrink_to(&mut self, bytes: u64) {
        let keep = kib(bytes) as usize;
        let permits = &mut *self.0;
        for permit in [&mut permits.permit, &mut permits.key_permit] {
            let held = permit.num_permits();
            if keep < held {
                drop(permit.split(held - keep));
            }
        }
    }
}

/// Open sessions per client key, against `max_sessions_per_key`, and each key's
/// share of the memory budget.
#[derive(Debug)]
pub(crate) struct SessionsPerKey {
    /// The most sessions one key may have open; 0 for no limit.
    limit: usize,
    /// KiB of the budget one key's sessions may hold at once: request memory,
    /// frame memory.
    share_kib: (u32, u32),
    /// The keys with sessions open.
    open: Arc<Mutex<HashMap<PublicKey, KeyEntry>>>,
    /// Where the open sessions are counted (the `sessions_open` gauge).
    stats: Arc<ServerStats>,
}

/// A key with sessions open.
#[derive(Debug)]
struct KeyEntry {
    /// How many.
    sessions: usize,
    /// What its sessions share.
    shared: Arc<KeyShared>,
}

/// What the sessions of one key share: behind one pointer, since every session
/// holds it for its whole life.
#[derive(Debug)]
struct KeyShared {
    /// Whose sessions these are.
    key: PublicKey,
    /// The key's share of the budget, one permit per KiB.
    share: Arc<Semaphore>,
    /// The share's size, in KiB: no reservation asks for more.
    share_kib: u32,
    /// The key's share of the frame memory, one permit per KiB.
    frames: Arc<Semaphore>,
    /// Its size, in KiB.
    frames_kib: u32,
    /// The table to count a session out of (weak: the table holds this).
    open: std::sync::Weak<Mutex<HashMap<PublicKey, KeyEntry>>>,
    /// Where a session is counted out of the `sessions_open` gauge: one pointer per
    /// key, not per session.
    stats: Arc<ServerStats>,
}

/// One open session of a key, counted until dropped.
#[derive(Debug)]
pub(super) struct KeySession(Arc<KeyShared>);

impl SessionsPerKey {
    /// A table for `limit` sessions per key (0: no limit) and, for each key, a
    /// share of a `budget` of bytes that holds at least one request of
    /// `max_request` bytes. Open sessions are counted in `stats`.
    pub(super) fn new(
        limit: usize,
        budget: u64,
        max_request: u32,
        stats: Arc<ServerStats>,
    ) -> Self {
        Self {
            limit,
            share_kib: key_share_kib(budget, max_request),
            open: Arc::default(),
            stats,
        }
    }

    /// Counts a new session of `key`, or `None` when the key has its most open.
    pub(super) fn enter(&self, key: &PublicKey) -> Option<KeySession> {
        let mut open = self
            .open
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let entry = open.entry(*key).or_insert_with(|| KeyEntry {
            sessions: 0,
            shared: Arc::new(KeyShared {
                key: *key,
                share: Arc::new(Semaphore::new(self.share_kib.0 as usize)),
                share_kib: self.share_kib.0,
                frames: Arc::new(Semaphore::new(self.share_kib.1 as usize)),
                frames_kib: self.share_kib.1,
                open: Arc::downgrade(&self.open),
                stats: Arc::clone(&self.stats),
            }),
        });
        if self.limit != 0 && entry.sessions >= self.limit {
            return None;
        }
        entry.sessions += 1;
        self.stats.add(&self.stats.sessions_open);
        Some(KeySession(Arc::clone(&entry.shared)))
    }
}

impl KeySession {
    /// Whose session this is.
    pub(super) fn key(&self) -> &PublicKey {
        &self.0.key
    }

    /// The key's share of the budget.
    fn share(&self) -> &Arc<Semaphore> {
        &self.0.share
    }

    /// A reservation of `bytes`, in KiB, never more than the key's share (which
    /// holds the largest request's worst case; this keeps an embedder's mistake
    /// from waiting forever).
    fn clamp(&self, bytes: u64) -> u32 {
        kib(bytes).min(self.0.share_kib)
    }

    /// As [`KeySession::clamp`], for frame memory.
    fn clamp_frame(&self, bytes: u64) -> u32 {
        kib(bytes).min(self.0.frames_kib)
    }
}

impl Drop for KeySession {
    fn drop(&mut self) {
        self.0.stats.sub(&self.0.stats.sessions_open);
        let Some(open) = self.0.open.upgrade() else {
            return;
        };
        let mut open = open.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(entry) = open.get_mut(&self.0.key) {
            entry.sessions -= 1;
            if entry.sessions == 0 {
                open.remove(&self.0.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Identity;

    #[test]
    fn the_worst_case_covers_a_reply_three_times_longer() {
        let len = 1 << 20;
        let body = "ΐ".repeat(len / 2);
        let reply = body.to_uppercase();
        assert_eq!(reply.len(), 3 * body.len());
        assert!(real_cost(body.len(), reply.len()) <= worst_case(len as u32));
        assert_eq!(worst_case(0), 0);
        // Small requests cost twice their size on each side, not a whole buffer.
        assert_eq!(worst_case(10), 20 + 60);
    }

    fn key(n: u8) -> PublicKey {
        Identity::from_seed(&[n; 32], "key").public_key()
    }

    #[test]
    fn reservations_count_against_the_budget_and_shrink_to_the_real_size() {
        // 13 KiB: 10 for requests, a quarter (3 KiB, rounded down) carved out for
        // frames (which then get one transport message's worth).
        let budget = MemoryBudget::new(13 * 1024, 1024, Arc::default());
        // A share as large as the request part (one request of 1 KiB needs 8 KiB).
        let table = SessionsPerKey::new(0, 13 * 1024, 1024, Arc::default());
        let (alice, bob) = (table.enter(&key(1)).unwrap(), table.enter(&key(2)).unwrap());
        let mut first = budget.try_reserve(&alice, 8 * 1024).unwrap();
        assert!(
            budget.try_reserve(&bob, 4 * 1024).is_none(),
            "only 2 KiB left"
        );
        first.shrink_to(5 * 1024);
        let second = budget.try_reserve(&bob, 4 * 1024).unwrap();
        assert_eq!(budget.usage().in_flight, 9 * 1024);
        assert_eq!(budget.usage().peak, 9 * 1024);
        drop((first, second));
        assert_eq!(budget.usage().in_flight, 0);
        // A reservation over the whole share takes the whole share, not forever.
        assert!(budget.try_reserve(&alice, 1 << 30).is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn one_key_holds_at_most_half_the_budget_and_others_get_the_rest() {
        // 1 MiB of request memory, once a quarter is carved out for frames.
        let budget = MemoryBudget::new(1365 * 1024, 1024, Arc::default());
        let table = SessionsPerKey::new(0, 1365 * 1024, 1024, Arc::default());
        let insider: Vec<_> = (0..4).map(|_| table.enter(&key(1)).unwrap()).collect();
        let held: Vec<_> = insider[..2]
            .iter()
            .map(|session| budget.try_reserve(session, 256 * 1024).unwrap())
            .collect();
        // Half the budget is the insider's: its next request waits, though the
        // budget has room.
        assert!(budget.try_reserve(&insider[2], 256 * 1024).is_none());
        let waiting = budget.reserve(&insider[2], 256 * 1024);
        tokio::pin!(waiting);
        assert!(futures_poll_once(waiting.as_mut()).await.is_none());
        // Another key gets the other half at once.
        let other = table.enter(&key(2)).unwrap();
        let theirs = budget.try_reserve(&other, 512 * 1024).unwrap();
        assert_eq!(budget.usage().in_flight, 1 << 20);
        drop((held, theirs));
        assert!(futures_poll_once(waiting.as_mut()).await.is_some());
    }

    #[test]
    fn frames_get_a_quarter_but_leave_one_worst_case_and_hold_one_message() {
        let worst = kib(worst_case(1 << 20));
        assert_eq!(split_kib(64 << 20, 1 << 20), (48 * 1024, 16 * 1024));
        // Just room for the largest request: frames get one message beyond it.
        assert_eq!(
            split_kib(u64::from(worst) * 1024, 1 << 20),
            (worst, kib(FRAME_MEMORY as u64))
        );
        // A key's share: half of each part.
        assert_eq!(key_share_kib(64 << 20, 1 << 20), (24 * 1024, 8 * 1024));
    }

    /// Frame memory to read ahead with is only what no session needs: up to what
    /// was asked, never a key's last message's worth nor the frame part's, and
    /// none while a session waits for memory.
    #[tokio::test(start_paused = true)]
    async fn spare_frame_memory_leaves_a_message_free_and_yields_to_waiters() {
        // Frames get 16 MiB, a key's share of them 8 MiB.
        let bytes = 64 << 20;
        let budget = MemoryBudget::new(bytes, 1 << 20, Arc::default());
        let table = SessionsPerKey::new(0, bytes, 1 << 20, Arc::default());
        let [alice, bob, carol] = [1, 2, 3].map(|n| table.enter(&key(n)).unwrap());
        let message = u64::from(kib(FRAME_MEMORY as u64)) * 1024;
        let first = budget.try_reserve_spare_frame(&alice, 1 << 20).unwrap();
        assert_eq!(first.bytes(), 1 << 20);
        // All of alice's share but one message, which stays for a session of hers
        // that must read one.
        let rest = budget.try_reserve_spare_frame(&alice, 64 << 20).unwrap();
        assert_eq!(first.bytes() + rest.bytes(), (8 << 20) - message);
        assert!(budget.try_reserve_spare_frame(&alice, 1).is_none());
        drop(
            budget
                .try_reserve_frame(&alice, FRAME_MEMORY as u64)
                .unwrap(),
        );
        // The frame part keeps one too: bob's share leaves two messages in it,
        // of which carol may read ahead with one.
        let bobs = budget.try_reserve_spare_frame(&bob, 64 << 20).unwrap();
        assert_eq!(bobs.bytes(), (8 << 20) - message);
        let carols = budget.try_reserve_spare_frame(&carol, 64 << 20).unwrap();
        assert_eq!(carols.bytes(), message);
        assert!(budget.try_reserve_spare_frame(&carol, 1).is_none());
        // While alice waits for more than her share has left, nobody reads ahead,
        // though the frame part has room.
        drop(carols);
        let waiting = budget.reserve_frame(&alice, 2 * FRAME_MEMORY as u64);
        tokio::pin!(waiting);
        assert!(futures_poll_once(waiting.as_mut()).await.is_none());
        assert!(budget.try_reserve_spare_frame(&carol, 1).is_none());
        drop(first);
        let _granted = futures_poll_once(waiting.as_mut()).await.unwrap();
        assert!(budget.try_reserve_spare_frame(&carol, 1).is_some());
        drop((rest, bobs));
    }

    #[tokio::test(start_paused = true)]
    async fn frame_memory_is_apart_from_request_memory_and_shared_by_keys() {
        let bytes = 64 << 20;
        let budget = MemoryBudget::new(bytes, 1 << 20, Arc::default());
        let table = SessionsPerKey::new(0, bytes, 1 << 20, Arc::default());
        let insider = table.enter(&key(1)).unwrap();
        let frame = FRAME_MEMORY as u64;
        // One key takes half the frame part (8 MiB), one message at a time.
        let held: Vec<_> = std::iter::from_fn(|| budget.try_reserve_frame(&insider, frame))
            .take(1000)
            .collect();
        assert_eq!(held.len(), (8 << 20) / (kib(frame) as usize * 1024));
        assert_eq!(
            budget.usage().frames,
            held.len() as u64 * u64::from(kib(frame)) * 1024
        );
        // Its next one waits; request memory is untouched by frames.
        let waiting = budget.reserve_frame(&insider, frame);
        tokio::pin!(waiting);
        assert!(futures_poll_once(waiting.as_mut()).await.is_none());
        assert!(budget.under_pressure());
        assert!(budget.try_reserve(&insider, 24 << 20).is_some());
        // Another key has the other half.
        let other = table.enter(&key(2)).unwrap();
        assert!(budget.try_reserve_frame(&other, frame).is_some());
        drop(held);
        let mut reservation = futures_poll_once(waiting.as_mut()).await.unwrap();
        assert!(!budget.under_pressure());
        // A buffer larger than the key's share takes the share and is let through.
        assert_eq!(reservation.allowance(), kib(frame) as usize * 1024);
        reservation.allow(64 << 20);
        assert_eq!(reservation.allowance(), 64 << 20);
    }

    /// Polls once: the output if ready.
    async fn futures_poll_once<F: std::future::Future + ?Sized>(
        mut future: std::pin::Pin<&mut F>,
    ) -> Option<F::Output> {
        std::future::poll_fn(|cx| match future.as_mut().poll(cx) {
            std::task::Poll::Ready(output) => std::task::Poll::Ready(Some(output)),
            std::task::Poll::Pending => std::task::Poll::Ready(None),
        })
        .await
    }

    #[test]
    fn sessions_per_key_are_counted_until_they_end() {
        let (alice, bob) = (key(1), key(2));
        let table = SessionsPerKey::new(2, 1 << 20, 1024, Arc::default());
        let first = table.enter(&alice).unwrap();
        let _second = table.enter(&alice).unwrap();
        assert!(table.enter(&alice).is_none());
        assert!(table.enter(&bob).is_some(), "other keys are not limited");
        drop(first);
        assert!(table.enter(&alice).is_some());
        let unlimited = SessionsPerKey::new(0, 1 << 20, 1024, Arc::default());
        let held: Vec<_> = (0..100).map(|_| unlimited.enter(&alice).unwrap()).collect();
        assert_eq!(held.len(), 100);
    }
}
