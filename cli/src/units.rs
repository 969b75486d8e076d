//! Sizes on the command line: `65536`, `64K`, `8M`, `8MiB`, `1GiB`, `10MB`, for
//! any flag that takes a number of bytes (`serve --max-request`, a memory budget).
//!
//! As in sshd_config and ssh-keygen, a bare `K`, `M`, `G` or `T` is a power of 1024;
//! the IEC forms `KiB`, `MiB`, `GiB`, `TiB` say the same explicitly, and only the SI
//! forms `kB`, `MB`, `GB`, `TB` are powers of 1000, so each spelling means what it
//! means elsewhere. Suffixes are case-insensitive and a trailing `B` alone means
//! bytes. Fractions, signs, spaces and overflow are refused with the accepted forms.
//!
//! [`parse_size`] reads a size; [`size_in`] makes a clap value parser that also
//! checks a range, so an absurd value is a usage error (exit status 2) that names
//! the flag, the bounds and the accepted forms:
//!
//! ```text
//! #[arg(long, value_name = "SIZE", value_parser = units::size_in(1..=1 << 40))]
//! memory_budget: Option<u64>,
//! ```

use std::ops::RangeInclusive;

/// The forms a size may take, for error messages.
const ACCEPTED: &str = "a number of bytes, optionally with a unit: K, M, G, T or KiB, MiB, \
                        GiB, TiB (powers of 1024), kB, MB, GB, TB (powers of 1000); e.g. 65536, \
                        8M, 1GiB";

/// Reads a size in bytes, such as `65536`, `8M`, `8MiB`, `1GiB` or `10MB`.
///
/// # Errors
/// A message naming the text and the accepted forms, for an empty text, a missing
/// or malformed number, an unknown unit, or a size over `u64::MAX` bytes.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(digits_end);
    if digits.is_empty() {
        return Err(format!("'{text}' is not a size: expected {ACCEPTED}"));
    }
    let multiplier: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        _ => {
            return Err(format!(
                "'{text}' has an unknown unit '{unit}': expected {ACCEPTED}"
            ))
        }
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|number| number.checked_mul(multiplier))
        .ok_or_else(|| format!("'{text}' is too large a size"))
}

/// Shows a size in the largest power-of-1024 unit that divides it exactly, so that
/// bounds print as they are typed: `1048576` is `1MiB`, `4294967295` stays a number.
pub fn format_size(bytes: u64) -> String {
    const UNITS: [(u32, &str); 4] = [(40, "TiB"), (30, "GiB"), (20, "MiB"), (10, "KiB")];
    for (shift, unit) in UNITS {
        if bytes != 0 && bytes.trailing_zeros() >= shift {
            return format!("{}{unit}", bytes >> shift);
        }
    }
    match bytes {
        1 => "1 byte".to_owned(),
        _ => format!("{bytes} bytes"),
    }
}

/// A clap value parser for a size within `range` (inclusive), as `u64`.
///
/// # Errors
/// The value parser returns [`parse_size`]'s errors, and for a size outside
/// `range` a message that gives both bounds.
pub fn size_in(
    range: RangeInclusive<u64>,
) -> impl Fn(&str) -> Result<u64, String> + Clone + Send + Sync + 'static {
    move |text| {
        let size = parse_size(text)?;
        if range.contains(&size) {
            Ok(size)
        } else {
            Err(format!(
                "{text} is out of range: the size must be from {} to {}",
                format_size(*range.start()),
                format_size(*range.end())
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_numbers_and_every_unit_parse() {
        let cases = [
            ("0", 0),
            ("65536", 65_536),
            ("65536B", 65_536),
            ("64K", 64 << 10),
            ("64k", 64 << 10),
            ("64KiB", 64 << 10),
            ("8M", 8 << 20),
            ("8MiB", 8 << 20),
            ("8mib", 8 << 20),
            ("1G", 1 << 30),
            ("1GiB", 1 << 30),
            ("2T", 2 << 40),
            ("2TiB", 2 << 40),
            ("10kB", 10_000),
            ("10MB", 10_000_000),
            ("1GB", 1_000_000_000),
            ("1TB", 1_000_000_000_000),
        ];
        for (text, bytes) in cases {
            assert_eq!(parse_size(text), Ok(bytes), "{text}");
        }
    }

    #[test]
    fn malformed_sizes_are_refused_with_the_accepted_forms() {
        for text in [
            "", "M", "-1", "+1", "1.5M", "8 M", " 8M", "8Mi", "8X", "8MBB", "0x10",
        ] {
            let error = parse_size(text).unwrap_err();
            assert!(error.contains(&format!("'{text}'")), "{text}: {error}");
            assert!(error.contains("8M, 1GiB"), "{text}: {error}");
        }
        assert!(parse_size("99999999999999999999")
            .unwrap_err()
            .contains("too large"));
        assert!(parse_size("20000000T").unwrap_err().contains("too large"));
    }

    #[test]
    fn size_in_is_a_clap_value_parser() {
        #[derive(Debug, clap::Parser)]
        struct Flags {
            #[arg(long, value_parser = size_in(1..=1 << 30))]
            budget: u64,
        }
        use clap::Parser as _;
        let flags = Flags::try_parse_from(["x", "--budget", "512MiB"]).unwrap();
        assert_eq!(flags.budget, 512 << 20);
        let error = Flags::try_parse_from(["x", "--budget", "2G"]).unwrap_err();
        assert_eq!(error.kind(), clap::error::ErrorKind::ValueValidation);
        assert!(error.to_string().contains("from 1 byte to 1GiB"), "{error}");
    }

    #[test]
    fn ranges_are_checked_and_named_in_units() {
        let parse = size_in(1..=u64::from(u32::MAX));
        assert_eq!(parse("8M"), Ok(8 << 20));
        assert_eq!(parse("4294967295"), Ok(u64::from(u32::MAX)));
        let zero = parse("0").unwrap_err();
        assert!(zero.contains("from 1 byte to 4294967295 bytes"), "{zero}");
        let huge = parse("4GiB").unwrap_err();
        assert!(huge.contains("4GiB is out of range"), "{huge}");
        assert_eq!(format_size(1 << 20), "1MiB");
        assert_eq!(format_size(3 << 10), "3KiB");
        assert_eq!(format_size(1000), "1000 bytes");
        assert_eq!(format_size(0), "0 bytes");
    }
}
