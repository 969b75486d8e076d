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
fn body_cost(len: u64) -> u64 {
    len + len.min(TRANSPORT_BUFFER)
}

/// The memory a request of `len` bytes may need before its reply is known: its
/// body, and the longest reply it can have.
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
}

/// The server-wide budget for request and reply bodies in flight.
#[derive(Debug)]
pub(crate) struct MemoryBudget {
    /// One permit per KiB of the budget; a request holds its reservation's worth.
    permits: Arc<Semaphore>,
    /// The budget in KiB, to tell how much is in use from what is left.
    total_kib: u32,
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
}

/// Half the budget, in KiB, or one worst case if that is more: what one key's
/// sessions may hold at once.
fn key_share_kib(budget: u64, max_request: u32) -> u32 {
    kib(budget / 2)
        .max(kib(worst_case(max_request)))
        .min(kib(budget))
}

impl MemoryBudget {
    /// A budget of `bytes` (rounded up to a KiB).
    pub(super) fn new(bytes: u64, stats: Arc<ServerStats>) -> Self {
        let total_kib = kib(bytes).min(u32::try_from(Semaphore::MAX_PERMITS).unwrap_or(u32::MAX));
        Self {
            permits: Arc::new(Semaphore::new(total_kib as usize)),
            total_kib,
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
        let stats = &self.stats;
        stats.add(&stats.memory_waits);
        struct Waiting<'a>(&'a ServerStats);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0.sub(&self.0.memory_waits);
            }
        }
        let _waiting = Waiting(stats);
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

    /// Whether some session is waiting for memory.
    pub(super) fn under_pressure(&self) -> bool {
        self.stats.memory_waits.load(Ordering::Relaxed) > 0
    }

    /// The memory in flight now.
    pub(super) fn usage(&self) -> MemoryUse {
        let in_use = u64::from(self.total_kib) - self.permits.available_permits() as u64;
        MemoryUse {
            budget: u64::from(self.total_kib) * 1024,
            in_flight: in_use * 1024,
            peak: self.peak_kib.load(Ordering::Relaxed) * 1024,
        }
    }

    fn note(&self, permit: OwnedSemaphorePermit, key_permit: OwnedSemaphorePermit) -> Reservation {
        let in_use = u64::from(self.total_kib) - self.permits.available_permits() as u64;
        self.peak_kib.fetch_max(in_use, Ordering::Relaxed);
        Reservation(Box::new(Permits { permit, key_permit }))
    }
}

impl Reservation {
    /// Takes over `other`'s share (of the same session): one reservation for both.
    pub(super) fn merge(&mut self, other: Reservation) {
        let other = *other.0;
        self.0.permit.merge(other.permit);
        self.0.key_permit.merge(other.key_permit);
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
    /// KiB of the budget one key's sessions may hold at once.
    share_kib: u32,
    /// The keys with sessions open.
    open: Arc<Mutex<HashMap<PublicKey, KeyEntry>>>,
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
    /// The table to count a session out of (weak: the table holds this).
    open: std::sync::Weak<Mutex<HashMap<PublicKey, KeyEntry>>>,
}

/// One open session of a key, counted until dropped.
#[derive(Debug)]
pub(super) struct KeySession(Arc<KeyShared>);

impl SessionsPerKey {
    /// A table for `limit` sessions per key (0: no limit) and, for each key, a
    /// share of a `budget` of bytes that holds at least one request of
    /// `max_request` bytes.
    pub(super) fn new(limit: usize, budget: u64, max_request: u32) -> Self {
        Self {
            limit,
            share_kib: key_share_kib(budget, max_request),
            open: Arc::default(),
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
                share: Arc::new(Semaphore::new(self.share_kib as usize)),
                share_kib: self.share_kib,
                open: Arc::downgrade(&self.open),
            }),
        });
        if self.limit != 0 && entry.sessions >= self.limit {
            return None;
        }
        entry.sessions += 1;
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
}

impl Drop for KeySession {
    fn drop(&mut self) {
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
        let budget = MemoryBudget::new(10 * 1024, Arc::default());
        // A share as large as the budget (one request of 1 KiB needs 8 KiB).
        let table = SessionsPerKey::new(0, 10 * 1024, 1024);
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
        let budget = MemoryBudget::new(1 << 20, Arc::default());
        let table = SessionsPerKey::new(0, 1 << 20, 1024);
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
        let table = SessionsPerKey::new(2, 1 << 20, 1024);
        let first = table.enter(&alice).unwrap();
        let _second = table.enter(&alice).unwrap();
        assert!(table.enter(&alice).is_none());
        assert!(table.enter(&bob).is_some(), "other keys are not limited");
        drop(first);
        assert!(table.enter(&alice).is_some());
        let unlimited = SessionsPerKey::new(0, 1 << 20, 1024);
        let held: Vec<_> = (0..100).map(|_| unlimited.enter(&alice).unwrap()).collect();
        assert_eq!(held.len(), 100);
    }
}
