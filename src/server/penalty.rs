//! Per-source admission control, like sshd's `PerSourceMaxStartups` and
//! `PerSourcePenalties`: a source address whose handshakes keep failing (garbage,
//! timeouts, denied keys) is refused for a time that doubles with each offence, and
//! no source may hold more than a set number of handshakes in progress.
//!
//! An offence is one refusal earned, however many handshakes failed at once: the
//! failures of handshakes that were already in progress when the refusal began (a
//! burst of 64 failing together) belong to that offence, and escalation comes only
//! from failures admitted after a refusal has ended. A client that closes after the
//! server's key was sent (it declined an unknown host key, sshd's "noauth") is not
//! an attacker: [`DECLINES_PER_FAILURE`] declines weigh as one failure.
//!
//! The table is a plain struct that takes the current time as an argument, so tests
//! drive it with a synthetic clock; the server keeps it behind a mutex and holds the
//! lock only for a hash lookup.
//!
//! Memory is bounded: at most [`PenaltyConfig::capacity`] sources are tracked. When
//! the table is full, sources that are neither refused nor mid-handshake are evicted
//! (they only hold a partial failure count, the cheapest thing to forget); if every
//! entry is pinned, new sources go untracked (sshd's "permissive" overflow), still
//! subject to the server-wide handshake cap. A flood of spoofed or rotating addresses
//! therefore costs a bounded table and cannot evict a source that earned its refusal.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::openssh::pattern::AddressPatterns;

/// Default number of failed handshakes before a source is refused.
pub const DEFAULT_PENALTY_THRESHOLD: u32 = 10;
/// Default length of a source's first refusal; each later one doubles it.
pub const DEFAULT_PENALTY_BASE: Duration = Duration::from_secs(5);
/// Default longest refusal.
pub const DEFAULT_PENALTY_MAX: Duration = Duration::from_secs(600);
/// Default cap on handshakes in progress from one source.
pub const DEFAULT_MAX_HANDSHAKES_PER_SOURCE: usize = 64;
/// Default number of sources tracked at most (about 64 bytes each).
pub const DEFAULT_PENALTY_CAPACITY: usize = 65_536;

/// How many declines (a client closing after the server's key was sent, before
/// proving its own) weigh as one failure: a script that declines an unknown host
/// key now and then is not locked out, while a source that makes the server do
/// Diffie-Hellman work for nothing, thousands of times, still is.
pub const DECLINES_PER_FAILURE: u32 = 10;

/// How often, at most, a full table is swept for evictable entries: a sweep walks the
/// whole table, so a flood of new sources must not trigger one per connection.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// Settings of the per-source limits.
#[derive(Debug, Clone)]
pub struct PenaltyConfig {
    /// Failed handshakes (within one refusal period of each other) before the source
    /// is refused; 0 turns penalties off.
    pub threshold: u32,
    /// The first refusal lasts this long; each further one twice the last.
    pub base: Duration,
    /// No refusal lasts longer than this; a source quiet for this long is forgotten.
    pub max: Duration,
    /// Handshakes one source may have in progress at once; 0 means no per-source cap.
    pub max_handshakes_per_source: usize,
    /// Most sources tracked at once.
    pub capacity: usize,
    /// Sources never refused nor capped (sshd's `PerSourcePenaltyExemptList`).
    pub exempt: Option<AddressPatterns>,
}

impl Default for PenaltyConfig {
    fn default() -> Self {
        Self {
            threshold: DEFAULT_PENALTY_THRESHOLD,
            base: DEFAULT_PENALTY_BASE,
            max: DEFAULT_PENALTY_MAX,
            max_handshakes_per_source: DEFAULT_MAX_HANDSHAKES_PER_SOURCE,
            capacity: DEFAULT_PENALTY_CAPACITY,
            exempt: None,
        }
    }
}

/// Whether a new connection from a source may start a handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Go ahead; call [`PenaltyBox::finish`] when the handshake is over.
    Admitted,
    /// Go ahead, untracked: the source is exempt, or the table is full. There is
    /// nothing to [`finish`](PenaltyBox::finish).
    Untracked,
    /// The source is refused for this much longer.
    Penalized {
        /// Time left on the refusal.
        remaining: Duration,
    },
    /// The source already has the most handshakes in progress it may have.
    TooManyInProgress,
}

/// How a handshake admitted by [`PenaltyBox::admit`] ended, as far as penalties go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The client proved an authorized key: its failure count is cleared.
    Success,
    /// Garbage, a protocol violation, a handshake timeout or a denied key.
    Failure,
    /// The client closed after the server's key was sent, before sending its own:
    /// most likely it does not trust this host key. Weighs a fraction of a failure
    /// ([`DECLINES_PER_FAILURE`]).
    Declined,
    /// Nothing to hold against the source (the server stopped, say).
    Neutral,
}

/// What the table knows about one source.
#[derive(Debug, Clone, Copy)]
struct Entry {
    /// Failures since the last refusal (or success).
    failures: u32,
    /// Declines not yet counted as a failure.
    declines: u32,
    /// When the latest refusal began: handshakes admitted before it are part of the
    /// offence it punishes, and their failures do not escalate it.
    offence_began: Option<Instant>,
    /// Refusals so far: the next one lasts `base * 2^strikes`.
    strikes: u32,
    /// Refused until then.
    refused_until: Option<Instant>,
    /// Handshakes admitted and not yet finished.
    in_progress: usize,
    /// The last failure, for forgetting quiet sources.
    last_failure: Instant,
}

impl Entry {
    fn new(now: Instant) -> Self {
        Self {
            failures: 0,
            declines: 0,
            offence_began: None,
            strikes: 0,
            refused_until: None,
            in_progress: 0,
            last_failure: now,
        }
    }

    fn refused_at(&self, now: Instant) -> bool {
        self.refused_until.is_some_and(|until| until > now)
    }

    /// Holds nothing the table must keep: no refusal running, no handshake in
    /// progress, and either a clean record or no failure for a whole `forget_after`.
    fn forgettable(&self, now: Instant, forget_after: Duration) -> bool {
        !self.refused_at(now)
            && self.in_progress == 0
            && ((self.failures == 0 && self.declines == 0 && self.strikes == 0)
                || now.saturating_duration_since(self.quiet_since()) >= forget_after)
    }

    /// The end of the last failure or refusal, whichever is later.
    fn quiet_since(&self) -> Instant {
        self.refused_until
            .map_or(self.last_failure, |until| until.max(self.last_failure))
    }
}

/// The per-source table.
#[derive(Debug)]
pub struct PenaltyBox {
    /// The limits.
    config: PenaltyConfig,
    /// One entry per tracked source (IPv4 address, or IPv6 /64 network).
    entries: HashMap<IpAddr, Entry>,
    /// When a full table was last swept.
    last_sweep: Option<Instant>,
    /// Admissions of sources that could not be tracked because the table was full.
    untracked: u64,
}

impl PenaltyBox {
    /// An empty table with these limits.
    pub fn new(config: PenaltyConfig) -> Self {
        Self {
            config,
            entries: HashMap::new(),
            last_sweep: None,
            untracked: 0,
        }
    }

    /// How many sources are tracked.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no source is tracked.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Admissions that went untracked because the table was full of pinned entries.
    pub fn untracked(&self) -> u64 {
        self.untracked
    }

    /// Decides whether `addr` may start a handshake at `now`, and if so counts it as
    /// in progress until [`finish`](Self::finish).
    pub fn admit(&mut self, addr: IpAddr, now: Instant) -> Admission {
        let Some(source) = self.source(addr) else {
            return Admission::Untracked;
        };
        let cap = self.config.max_handshakes_per_source;
        let Some(entry) = self.entry(source, now) else {
            self.untracked += 1;
            return Admission::Untracked;
        };
        if let Some(until) = entry.refused_until {
            if until > now {
                return Admission::Penalized {
                    remaining: until - now,
                };
            }
        }
        if cap != 0 && entry.in_progress >= cap {
            return Admission::TooManyInProgress;
        }
        entry.in_progress += 1;
        Admission::Admitted
    }

    /// Records how a handshake that [`admit`](Self::admit) answered `Admitted` for
    /// `addr` at `admitted_at` ended, at `now`. A failure that reaches the threshold
    /// refuses the source for `base * 2^strikes`, at most `max`, and returns that
    /// period (for the log). Failures of handshakes admitted before the current
    /// refusal began are part of the offence it punishes and count for nothing.
    pub fn finish(
        &mut self,
        addr: IpAddr,
        admitted_at: Instant,
        now: Instant,
        verdict: Verdict,
    ) -> Option<Duration> {
        let source = self.source(addr)?;
        let (threshold, base, max) = (self.config.threshold, self.config.base, self.config.max);
        // Untracked at admission (table full) or forgotten since: nothing to undo.
        let entry = self.entries.get_mut(&source)?;
        entry.in_progress = entry.in_progress.saturating_sub(1);
        match verdict {
            Verdict::Neutral => return None,
            Verdict::Success => {
                entry.failures = 0;
                entry.declines = 0;
                return None;
            }
            Verdict::Declined => {
                entry.declines += 1;
                if entry.declines < DECLINES_PER_FAILURE {
                    return None;
                }
                entry.declines = 0;
            }
            Verdict::Failure => {}
        }
        if threshold == 0
            || entry.refused_at(now)
            || entry
                .offence_began
                .is_some_and(|began| admitted_at <= began)
        {
            return None;
        }
        // Failures long ago do not add up with today's.
        if now.saturating_duration_since(entry.quiet_since()) >= max {
            entry.failures = 0;
            entry.strikes = 0;
        }
        entry.last_failure = now;
        entry.failures += 1;
        if entry.failures < threshold {
            return None;
        }
        let factor = 1u32 << entry.strikes.min(20);
        let period = base.saturating_mul(factor).min(max);
        entry.refused_until = Some(now + period);
        entry.offence_began = Some(now);
        entry.strikes = entry.strikes.saturating_add(1);
        entry.failures = 0;
        Some(period)
    }

    /// The table key of `addr`, or `None` when it is exempt. IPv6 sources are
    /// grouped by /64, the usual size of one site's network: one host can use a whole
    /// /64 of addresses.
    fn source(&self, addr: IpAddr) -> Option<IpAddr> {
        let addr = addr.to_canonical();
        if self
            .config
            .exempt
            .as_ref()
            .is_some_and(|exempt| exempt.matches(addr))
        {
            return None;
        }
        Some(match addr {
            IpAddr::V6(v6) => {
                let bits = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(bits.into())
            }
            v4 => v4,
        })
    }

    /// The entry of `source`, created if there is room (sweeping a full table at most
    /// once per [`SWEEP_INTERVAL`]).
    fn entry(&mut self, source: IpAddr, now: Instant) -> Option<&mut Entry> {
        if !self.entries.contains_key(&source) && self.entries.len() >= self.config.capacity {
            let due = self
                .last_sweep
                .is_none_or(|last| now.saturating_duration_since(last) >= SWEEP_INTERVAL);
            if !due {
                return None;
            }
            self.last_sweep = Some(now);
            let forget_after = self.config.max;
            self.entries
                .retain(|_, entry| !entry.forgettable(now, forget_after));
            if self.entries.len() >= self.config.capacity {
                // Everything left holds a refusal or a handshake in progress; evict
                // the partial failure counts too, which an attacker can re-earn only
                // by failing again.
                self.entries
                    .retain(|_, entry| entry.refused_at(now) || entry.in_progress > 0);
            }
            if self.entries.len() >= self.config.capacity {
                return None;
            }
        }
        Some(
            self.entries
                .entry(source)
                .or_insert_with(|| Entry::new(now)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn config() -> PenaltyConfig {
        PenaltyConfig {
            threshold: 3,
            base: Duration::from_secs(10),
            max: Duration::from_secs(100),
            max_handshakes_per_source: 2,
            capacity: 8,
            exempt: None,
        }
    }

    /// Admits and fails one handshake.
    fn fail(table: &mut PenaltyBox, addr: IpAddr, now: Instant) -> Admission {
        let admission = table.admit(addr, now);
        if admission == Admission::Admitted {
            table.finish(addr, now, now, Verdict::Failure);
        }
        admission
    }

    #[test]
    fn refusals_start_at_the_threshold_and_double_up_to_the_max() {
        let mut table = PenaltyBox::new(config());
        let start = Instant::now();
        let source = ip("192.0.2.1");
        let mut now = start;
        let mut periods = Vec::new();
        for _ in 0..6 {
            for _ in 0..3 {
                assert_eq!(fail(&mut table, source, now), Admission::Admitted);
            }
            let Admission::Penalized { remaining } = table.admit(source, now) else {
                panic!("not refused after 3 failures");
            };
            periods.push(remaining.as_secs());
            // Still refused a moment before the end, admitted at the end.
            assert!(matches!(
                table.admit(source, now + remaining - Duration::from_millis(1)),
                Admission::Penalized { .. }
            ));
            now += remaining;
        }
        assert_eq!(periods, [10, 20, 40, 80, 100, 100]);
        // Another source is not affected.
        assert_eq!(table.admit(ip("192.0.2.2"), now), Admission::Admitted);
    }

    #[test]
    fn a_burst_is_one_offence_with_the_base_refusal() {
        let mut config = config();
        config.max_handshakes_per_source = 0;
        let mut table = PenaltyBox::new(config);
        let start = Instant::now();
        let source = ip("192.0.2.1");
        // 64 handshakes in progress at once, all failing within a millisecond.
        for _ in 0..64 {
            assert_eq!(table.admit(source, start), Admission::Admitted);
        }
        let mut refusals = Vec::new();
        for n in 0..64u64 {
            let now = start + Duration::from_micros(n * 15);
            refusals.extend(table.finish(source, start, now, Verdict::Failure));
        }
        assert_eq!(
            refusals,
            [Duration::from_secs(10)],
            "one refusal, of the base time"
        );
        let end_of_burst = start + Duration::from_millis(1);
        let Admission::Penalized { remaining } = table.admit(source, end_of_burst) else {
            panic!("not refused after the burst");
        };
        assert!(remaining <= Duration::from_secs(10));
        // Admitted again once it has ended; a repeat then escalates, once.
        let after = start + Duration::from_secs(10) + Duration::from_millis(1);
        for _ in 0..3 {
            assert_eq!(fail(&mut table, source, after), Admission::Admitted);
        }
        let Admission::Penalized { remaining } = table.admit(source, after) else {
            panic!("a repeat offence was not refused");
        };
        assert_eq!(remaining, Duration::from_secs(20));
    }

    #[test]
    fn handshakes_admitted_before_a_refusal_do_not_escalate_it_when_they_end_later() {
        let mut config = config();
        config.max_handshakes_per_source = 0;
        let mut table = PenaltyBox::new(config);
        let start = Instant::now();
        let source = ip("192.0.2.1");
        // A slowloris: 3 garbage handshakes and 20 silent ones, admitted together.
        for _ in 0..23 {
            assert_eq!(table.admit(source, start), Admission::Admitted);
        }
        for _ in 0..3 {
            table.finish(source, start, start, Verdict::Failure);
        }
        // The silent ones time out after the 10 s refusal is over.
        let timeout = start + Duration::from_secs(15);
        for _ in 0..20 {
            assert_eq!(
                table.finish(source, start, timeout, Verdict::Failure),
                None,
                "part of the first offence"
            );
        }
        assert_eq!(table.admit(source, timeout), Admission::Admitted);
    }

    #[test]
    fn declines_weigh_a_tenth_of_a_failure() {
        let mut table = PenaltyBox::new(config());
        let now = Instant::now();
        let source = ip("192.0.2.1");
        let decline = |table: &mut PenaltyBox| {
            assert_eq!(table.admit(source, now), Admission::Admitted);
            table.finish(source, now, now, Verdict::Declined)
        };
        // 20 declines are 2 failures: under the threshold of 3.
        for _ in 0..20 {
            assert_eq!(decline(&mut table), None);
        }
        assert_eq!(table.admit(source, now), Admission::Admitted);
        table.finish(source, now, now, Verdict::Neutral);
        // The 30th is the third failure.
        for _ in 0..9 {
            assert_eq!(decline(&mut table), None);
        }
        assert_eq!(decline(&mut table), Some(Duration::from_secs(10)));
        // A success clears the part-counted declines too.
        let mut table = PenaltyBox::new(config());
        for _ in 0..9 {
            decline(&mut table);
        }
        assert_eq!(table.admit(source, now), Admission::Admitted);
        table.finish(source, now, now, Verdict::Success);
        assert_eq!(decline(&mut table), None);
        assert_eq!(table.entries[&source].declines, 1);
    }

    #[test]
    fn success_clears_the_failure_count_and_quiet_sources_are_forgiven() {
        let mut table = PenaltyBox::new(config());
        let now = Instant::now();
        let source = ip("192.0.2.1");
        fail(&mut table, source, now);
        fail(&mut table, source, now);
        assert_eq!(table.admit(source, now), Admission::Admitted);
        table.finish(source, now, now, Verdict::Success);
        fail(&mut table, source, now);
        fail(&mut table, source, now);
        assert_eq!(table.admit(source, now), Admission::Admitted);
        table.finish(source, now, now, Verdict::Neutral);
        // Two failures, then a long quiet spell: the old ones no longer count.
        let later = now + Duration::from_secs(100);
        fail(&mut table, source, later);
        assert_eq!(table.admit(source, later), Admission::Admitted);
    }

    #[test]
    fn handshakes_in_progress_are_capped_per_source() {
        let mut table = PenaltyBox::new(config());
        let now = Instant::now();
        let source = ip("192.0.2.1");
        assert_eq!(table.admit(source, now), Admission::Admitted);
        assert_eq!(table.admit(source, now), Admission::Admitted);
        assert_eq!(table.admit(source, now), Admission::TooManyInProgress);
        assert_eq!(table.admit(ip("192.0.2.9"), now), Admission::Admitted);
        table.finish(source, now, now, Verdict::Neutral);
        assert_eq!(table.admit(source, now), Admission::Admitted);
    }

    #[test]
    fn ipv6_sources_are_grouped_by_64_and_mapped_ipv4_is_ipv4() {
        let mut table = PenaltyBox::new(config());
        let now = Instant::now();
        for host in 1..=3 {
            fail(&mut table, ip(&format!("2001:db8:1:2::{host}")), now);
        }
        assert!(matches!(
            table.admit(ip("2001:db8:1:2:ffff::1"), now),
            Admission::Penalized { .. }
        ));
        assert_eq!(table.admit(ip("2001:db8:1:3::1"), now), Admission::Admitted);
        for _ in 0..3 {
            fail(&mut table, ip("::ffff:192.0.2.7"), now);
        }
        assert!(matches!(
            table.admit(ip("192.0.2.7"), now),
            Admission::Penalized { .. }
        ));
    }

    #[test]
    fn exempt_sources_are_never_refused_nor_tracked() {
        let mut config = config();
        config.exempt = Some(AddressPatterns::parse("127.0.0.0/8,::1").unwrap());
        let mut table = PenaltyBox::new(config);
        let now = Instant::now();
        for _ in 0..50 {
            assert_eq!(fail(&mut table, ip("127.0.0.1"), now), Admission::Untracked);
            assert_eq!(table.admit(ip("::1"), now), Admission::Untracked);
        }
        assert!(table.is_empty());
    }

    #[test]
    fn threshold_zero_turns_penalties_off() {
        let mut config = config();
        config.threshold = 0;
        let mut table = PenaltyBox::new(config);
        let now = Instant::now();
        for _ in 0..50 {
            assert_eq!(fail(&mut table, ip("192.0.2.1"), now), Admission::Admitted);
        }
    }

    #[test]
    fn a_flood_of_sources_keeps_the_table_bounded_and_refusals_in_force() {
        let mut table = PenaltyBox::new(config());
        let start = Instant::now();
        let offender = ip("192.0.2.1");
        for _ in 0..3 {
            fail(&mut table, offender, start);
        }
        // 100,000 one-off sources, each failing once, over 8 seconds.
        for n in 0u32..100_000 {
            let now = start + Duration::from_micros(80 * u64::from(n));
            let addr = IpAddr::V4((0x0a00_0000 + n).into());
            fail(&mut table, addr, now);
            assert!(table.len() <= 8);
        }
        // The offender earned its refusal: the flood did not evict it.
        assert!(matches!(
            table.admit(offender, start + Duration::from_secs(9)),
            Admission::Penalized { .. }
        ));
        // Sources mid-handshake pin their entries; the rest go untracked, admitted.
        let mut table = PenaltyBox::new(config());
        for n in 0u32..8 {
            assert_eq!(
                table.admit(IpAddr::V4(n.into()), start),
                Admission::Admitted
            );
        }
        assert_eq!(table.admit(ip("192.0.2.99"), start), Admission::Untracked);
        assert_eq!(table.untracked(), 1);
        assert_eq!(table.len(), 8);
    }
}
