//! Logging that stays readable under a flood: a condition that repeats (refusals at
//! a cap, an allow-list that cannot be used) is logged once per burst, with a count.
//! One type serves every such condition, so they all behave alike: the first
//! occurrence is logged at once, a different condition (a new error) at once too,
//! and repeats at most once per interval with how many there were.

use std::time::{Duration, Instant};

/// Repeated log lines about refusals at a cap are written at most this often, with
/// a count.
pub(super) const LOG_INTERVAL: Duration = Duration::from_secs(1);

/// Counts occurrences of one condition and says when to log them: the first at
/// once, then at most one line per interval ([`LOG_INTERVAL`] by default) with how
/// many there were.
#[derive(Debug)]
pub(super) struct BurstLog {
    /// The shortest time between two lines about the same condition.
    interval: Duration,
    /// Occurrences not yet logged.
    unlogged: u64,
    /// When the last line was written; `None` before the first, and after
    /// [`BurstLog::clear`].
    last_log: Option<Instant>,
    /// The text of the condition last logged, for conditions that can change (an
    /// error): a different one is logged at once.
    last_condition: Option<String>,
}

impl Default for BurstLog {
    fn default() -> Self {
        Self::every(LOG_INTERVAL)
    }
}

impl BurstLog {
    /// A log of one condition written at most once per `interval`.
    pub(super) fn every(interval: Duration) -> Self {
        Self {
            interval,
            unlogged: 0,
            last_log: None,
            last_condition: None,
        }
    }

    /// Counts one occurrence; returns how many to report (this one included) if a
    /// line is due now.
    pub(super) fn note(&mut self, now: Instant) -> Option<u64> {
        self.unlogged += 1;
        let due = self
            .last_log
            .is_none_or(|last| now.saturating_duration_since(last) >= self.interval);
        if !due {
            return None;
        }
        self.last_log = Some(now);
        Some(std::mem::take(&mut self.unlogged))
    }

    /// [`BurstLog::note`] for a condition whose text can change: a different text
    /// than the last one logged is due at once.
    pub(super) fn note_condition(&mut self, now: Instant, condition: &str) -> Option<u64> {
        if self.last_condition.as_deref() != Some(condition) {
            self.last_log = None;
            self.last_condition = Some(condition.to_owned());
        }
        self.note(now)
    }

    /// The condition is over: the next occurrence is logged at once. Returns whether
    /// one had been logged, so the caller can say it ended.
    pub(super) fn clear(&mut self) -> bool {
        let was_active = self.last_log.is_some();
        self.unlogged = 0;
        self.last_log = None;
        self.last_condition = None;
        was_active
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_condition_is_logged_at_once_and_clear_starts_over() {
        let mut log = BurstLog::every(Duration::from_secs(60));
        let start = Instant::now();
        assert_eq!(log.note_condition(start, "no such file"), Some(1));
        for n in 1..=50 {
            assert_eq!(
                log.note_condition(start + Duration::from_secs(n), "no such file"),
                None
            );
        }
        // A different error is news: logged at once, with the repeats before it.
        assert_eq!(
            log.note_condition(start + Duration::from_secs(51), "permission denied"),
            Some(51)
        );
        assert_eq!(
            log.note_condition(start + Duration::from_secs(52), "permission denied"),
            None
        );
        // The same error after the interval is logged again, with its count.
        assert_eq!(
            log.note_condition(start + Duration::from_secs(111), "permission denied"),
            Some(2)
        );
        assert!(log.clear());
        assert!(!log.clear());
        assert_eq!(
            log.note_condition(start + Duration::from_secs(112), "permission denied"),
            Some(1)
        );
    }
}
