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

/// A request's share of the budget, given back when dropped.
#[derive(Debug)]
pub(super) struct Reservation {
    /// The permits held, one per KiB.
    permit: OwnedSemaphorePermit,
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

    /// Reserves `bytes` if that much is free now.
    pub(super) fn try_reserve(&self, bytes: u64) -> Option<Reservation> {
        let permit = Arc::clone(&self.permits)
            .try_acquire_many_owned(self.clamp(bytes))
            .ok()?;
        Some(self.note(permit))
    }

    /// Reserves `bytes`, waiting (in turn, first come first served) until they are
    /// free. Counted in the `memory_waits` gauge while it waits, which is what makes
    /// sessions that hold memory without progress give it up.
    pub(super) async fn reserve(&self, bytes: u64) -> Reservation {
        let stats = &self.stats;
        stats.add(&stats.memory_waits);
        struct Waiting<'a>(&'a ServerStats);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0.sub(&self.0.memory_waits);
            }
        }
        let _waiting = Waiting(stats);
        let permit = Arc::clone(&self.permits)
            .acquire_many_owned(self.clamp(bytes))
            .await
            .expect("the budget's semaphore is never closed");
        self.note(permit)
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

    /// A reservation is never larger than the whole budget (validation makes sure
    /// one request's worst case fits; this keeps an embedder's mistake from hanging).
    fn clamp(&self, bytes: u64) -> u32 {
        kib(bytes).min(self.total_kib)
    }

    fn note(&self, permit: OwnedSemaphorePermit) -> Reservation {
        let in_use = u64::from(self.total_kib) - self.permits.available_permits() as u64;
        self.peak_kib.fetch_max(in_use, Ordering::Relaxed);
        Reservation { permit }
    }
}

impl Reservation {
    /// Takes over `other`'s share: one reservation for both.
    pub(super) fn merge(&mut self, other: Reservation) {
        self.permit.merge(other.permit);
    }

    /// Gives back what is reserved beyond `bytes`, once the real size is known.
    pub(super) fn shrink_to(&mut self, bytes: u64) {
        let keep = kib(bytes) as usize;
        let held = self.permit.num_permits();
        if keep < held {
            drop(self.permit.split(held - keep));
        }
    }
}

/// Open sessions per client key, against `--max-sessions-per-key`.
#[derive(Debug)]
pub(crate) struct SessionsPerKey {
    /// The most sessions one key may have open; 0 for no limit.
    limit: usize,
    /// Open sessions of each key that has any.
    open: Arc<Mutex<HashMap<PublicKey, usize>>>,
}

/// One open session of a key, counted until dropped.
#[derive(Debug)]
pub(super) struct KeySession {
    /// The table to decrement; `None` when there is no limit (nothing is counted).
    open: Option<Arc<Mutex<HashMap<PublicKey, usize>>>>,
    /// Whose session this is.
    key: PublicKey,
}

impl SessionsPerKey {
    pub(super) fn new(limit: usize) -> Self {
        Self {
            limit,
            open: Arc::default(),
        }
    }

    /// Counts a new session of `key`, or `None` when the key has its most open.
    pub(super) fn enter(&self, key: &PublicKey) -> Option<KeySession> {
        if self.limit == 0 {
            return Some(KeySession {
                open: None,
                key: *key,
            });
        }
        let mut open = self
            .open
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let count = open.entry(*key).or_insert(0);
        if *count >= self.limit {
            return None;
        }
        *count += 1;
        Some(KeySession {
            open: Some(Arc::clone(&self.open)),
            key: *key,
        })
    }
}

impl Drop for KeySession {
    fn drop(&mut self) {
        let Some(open) = &self.open else { return };
        let mut open = open.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(count) = open.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.key);
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

    #[test]
    fn reservations_count_against_the_budget_and_shrink_to_the_real_size() {
        let budget = MemoryBudget::new(10 * 1024, Arc::default());
        let mut first = budget.try_reserve(8 * 1024).unwrap();
        assert!(budget.try_reserve(4 * 1024).is_none(), "only 2 KiB left");
        first.shrink_to(5 * 1024);
        let second = budget.try_reserve(4 * 1024).unwrap();
        assert_eq!(budget.usage().in_flight, 9 * 1024);
        assert_eq!(budget.usage().peak, 9 * 1024);
        drop((first, second));
        assert_eq!(budget.usage().in_flight, 0);
        // A reservation over the whole budget takes the whole budget, not forever.
        assert!(budget.try_reserve(1 << 30).is_some());
    }

    #[test]
    fn sessions_per_key_are_counted_until_they_end() {
        let alice = Identity::from_seed(&[1; 32], "alice").public_key();
        let bob = Identity::from_seed(&[2; 32], "bob").public_key();
        let table = SessionsPerKey::new(2);
        let first = table.enter(&alice).unwrap();
        let _second = table.enter(&alice).unwrap();
        assert!(table.enter(&alice).is_none());
        assert!(table.enter(&bob).is_some(), "other keys are not limited");
        drop(first);
        assert!(table.enter(&alice).is_some());
        let unlimited = SessionsPerKey::new(0);
        let held: Vec<_> = (0..100).map(|_| unlimited.enter(&alice).unwrap()).collect();
        assert_eq!(held.len(), 100);
    }
}
