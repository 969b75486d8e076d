//! Logging that stays readable under a flood: a condition that repeats (refusals at
//! a cap) is logged once per burst, with a count.

use std::time::{Duration, Instant};

/// Repeated log lines about the same condition (refusals at a cap, an unreadable
/// authorized_keys) are written at most this often, with a count.
pub(super) const LOG_INTERVAL: Duration = Duration::from_secs(1);

/// Counts refusals of one kind and says when to log them: the first of a burst at
/// once, then at most one line per [`LOG_INTERVAL`] with how many there were.
#[derive(Debug, Default)]
pub(super) struct BurstLog {
    /// Refusals not yet logged.
    pub(super) unlogged: u64,
    /// When the last line was written.
    pub(super) last_log: Option<Instant>,
}

impl BurstLog {
    /// Counts one refusal; returns how many to report if a line is due now.
    pub(super) fn note(&mut self, now: Instant) -> Option<u64> {
        self.unlogged += 1;
        let due = self
            .last_log
            .is_none_or(|last| now.saturating_duration_since(last) >= LOG_INTERVAL);
        if !due {
            return None;
        }
        self.last_log = Some(now);
        Some(std::mem::take(&mut self.unlogged))
    }
}
