//! Latency samples and their percentiles.
//!
//! Every sample is kept (a `u32` of nanoseconds each, so ten million round trips are
//! 40 MB) and sorted once at the end: exact percentiles, no histogram bucketing error,
//! which matters when the target is a ratio of two p50s within 15%.

use std::time::Duration;

/// Round-trip or handshake times, in nanoseconds (saturating at about 4.3 s).
#[derive(Debug, Default, Clone)]
pub struct Samples {
    nanos: Vec<u32>,
}

/// The summary of a set of samples.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Percentiles {
    /// How many samples.
    pub count: usize,
    /// Median, microseconds.
    pub p50_us: f64,
    /// 99th percentile, microseconds.
    pub p99_us: f64,
    /// Largest, microseconds.
    pub max_us: f64,
}

impl Samples {
    /// Records one duration.
    pub fn push(&mut self, elapsed: Duration) {
        self.nanos
            .push(u32::try_from(elapsed.as_nanos()).unwrap_or(u32::MAX));
    }

    /// Adds another set (from another task).
    pub fn merge(&mut self, other: Samples) {
        self.nanos.extend(other.nanos);
    }

    /// Sorts and summarises; `None` when empty.
    pub fn percentiles(mut self) -> Option<Percentiles> {
        if self.nanos.is_empty() {
            return None;
        }
        self.nanos.sort_unstable();
        let count = self.nanos.len();
        // Nearest-rank percentile: the smallest sample with at least p% at or below it.
        let rank = |p: f64| {
            let index = ((p / 100.0) * count as f64).ceil() as usize;
            self.nanos[index.clamp(1, count) - 1]
        };
        let us = |nanos: u32| f64::from(nanos) / 1000.0;
        Some(Percentiles {
            count,
            p50_us: us(rank(50.0)),
            p99_us: us(rank(99.0)),
            max_us: us(self.nanos[count - 1]),
        })
    }
}

/// The nearest-rank `q` quantile (0.0 to 1.0) of `values`: the smallest value with at
/// least a fraction `q` of them at or below it. `None` when empty. The same
/// definition as [`Samples::percentiles`], for callers that keep `Duration`s.
pub fn quantile(values: &[Duration], q: f64) -> Option<Duration> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    let index = (q.clamp(0.0, 1.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[index.clamp(1, sorted.len()) - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut samples = Samples::default();
        for micros in 1..=100u64 {
            samples.push(Duration::from_micros(micros));
        }
        let p = samples.percentiles().unwrap();
        assert_eq!(
            (p.count, p.p50_us, p.p99_us, p.max_us),
            (100, 50.0, 99.0, 100.0)
        );
        assert!(Samples::default().percentiles().is_none());
    }

    #[test]
    fn quantile_uses_the_same_nearest_rank() {
        let values: Vec<Duration> = (1..=100u64).rev().map(Duration::from_micros).collect();
        assert_eq!(quantile(&values, 0.5), Some(Duration::from_micros(50)));
        assert_eq!(quantile(&values, 0.99), Some(Duration::from_micros(99)));
        assert_eq!(quantile(&values, 1.0), Some(Duration::from_micros(100)));
        assert_eq!(quantile(&values, 0.0), Some(Duration::from_micros(1)));
        assert_eq!(quantile(&[], 0.5), None);
    }
}
