//! The `expiry-time="timespec"` option's instant: parsing OpenSSH's
//! `YYYYMMDD[HHMM[SS]][Z]` timespec (always as UTC) and showing it back.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// An `expiry-time` instant: the key is refused after it.
///
/// OpenSSH reads `expiry-time` in the server's local time zone unless it ends in `Z`
/// (or `UTC`). noise-echo always reads it as UTC, with or without the suffix, so the
/// meaning of a file does not depend on the server's `TZ`; write the `Z` to keep both
/// programs in agreement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Expiry {
    /// Seconds since the Unix epoch.
    unix_seconds: u64,
}

impl Expiry {
    /// Parses `YYYYMMDD[HHMM[SS]][Z]`, the format sshd accepts; a `UTC` suffix is
    /// accepted as a synonym of `Z`, as in sshd. Read as UTC in every case.
    ///
    /// # Errors
    /// A description of the problem when the text has another length or shape, names
    /// an impossible date or time, or lies at or before the Unix epoch (which sshd
    /// also refuses).
    pub fn parse(text: &str) -> Result<Self, String> {
        let invalid = |why: &str| format!("invalid expiry-time \"{text}\": {why}");
        let digits = if text.len() > 1 && (text.ends_with('Z') || text.ends_with('z')) {
            &text[..text.len() - 1]
        } else if let Some(digits) = text
            .len()
            .checked_sub(3)
            .filter(|&start| start > 0)
            .and_then(|start| text.get(..start).zip(text.get(start..)))
            .filter(|(_, suffix)| suffix.eq_ignore_ascii_case("UTC"))
            .map(|(digits, _)| digits)
        {
            digits
        } else {
            text
        };
        if !matches!(digits.len(), 8 | 12 | 14) || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid("expected YYYYMMDD[HHMM[SS]][Z]"));
        }
        let field = |range: std::ops::Range<usize>| -> u64 {
            digits
                .get(range)
                .and_then(|part| part.parse().ok())
                .unwrap_or(0)
        };
        let (year, month, day) = (field(0..4), field(4..6), field(6..8));
        let (hour, minute, second) = (field(8..10), field(10..12), field(12..14));
        if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
            return Err(invalid("no such date"));
        }
        if hour > 23 || minute > 59 || second > 59 {
            return Err(invalid("no such time of day"));
        }
        if year < 1970 {
            return Err(invalid("before 1970"));
        }
        let days = days_from_civil(year, month, day);
        let unix_seconds = days * 86_400 + hour * 3600 + minute * 60 + second;
        if unix_seconds == 0 {
            return Err(invalid("before 1970"));
        }
        Ok(Self { unix_seconds })
    }

    /// Seconds since the Unix epoch.
    pub fn unix_seconds(&self) -> u64 {
        self.unix_seconds
    }

    /// The instant as a [`SystemTime`].
    pub fn to_system_time(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(self.unix_seconds)
    }

    /// Whether a connection at `now` comes after the expiry. As in sshd, the key is
    /// still good during the expiry second itself.
    pub fn has_passed(&self, now: SystemTime) -> bool {
        let now = now
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        self.unix_seconds < now
    }
}

impl fmt::Display for Expiry {
    /// `YYYY-MM-DD HH:MM:SS UTC`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (year, month, day) = civil_from_days(self.unix_seconds / 86_400);
        let seconds = self.unix_seconds % 86_400;
        write!(
            f,
            "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
            seconds / 3600,
            seconds / 60 % 60,
            seconds % 60
        )
    }
}

fn is_leap(year: u64) -> bool {
    year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400))
}

fn days_in_month(year: u64, month: u64) -> u64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to a date in or after 1970 (Howard Hinnant's algorithm,
/// restricted to non-negative values).
fn days_from_civil(year: u64, month: u64, day: u64) -> u64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year / 400;
    let year_of_era = year - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The date of a day count since 1970-01-01, inverse of [`days_from_civil`].
pub(crate) fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let shifted = days + 719_468;
    let era = shifted / 146_097;
    let day_of_era = shifted - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn expiry_parsing_and_display() {
        assert_eq!(Expiry::parse("19700102").unwrap().unix_seconds(), 86_400);
        assert_eq!(
            Expiry::parse("20000229123456z").unwrap().to_string(),
            "2000-02-29 12:34:56 UTC"
        );
        assert_eq!(
            Expiry::parse("20240229").unwrap().unix_seconds(),
            1_709_164_800
        );
        for bad in [
            "",
            "Z",
            "2026",
            "2026010",
            "20260101T1200",
            "19690101",
            "a\u{20ac}b",
            "2026010\u{20ac}",
            "\u{20ac}UTC",
            "UTC",
            "20260101utc\u{20ac}",
            "19700101",
            "20230229",
            "20261301",
            "20260100",
            "20260101240000",
            "202601012360",
            "2026-1-01",
            "+2026010",
        ] {
            assert!(Expiry::parse(bad).is_err(), "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn expiry_parsing_never_panics_and_round_trips(text in "\\PC{0,16}", seconds in 1u64..100_000_000_000) {
            let _ = Expiry::parse(&text);
            let expiry = Expiry { unix_seconds: seconds };
            let shown = expiry.to_string();
            let compact: String = shown.chars().filter(char::is_ascii_digit).collect();
            if seconds / 86_400 < 2_932_896 {
                // Up to year 9999, the display parses back to the same instant.
                prop_assert_eq!(Expiry::parse(&format!("{compact}Z")), Ok(expiry));
            }
        }
    }
}
