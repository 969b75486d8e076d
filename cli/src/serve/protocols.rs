//! The `serve` flags that choose what is negotiated: `--protocols`, `--ciphers` and
//! the rekey limits of protocol v2 (`--rekey-limit`, `--rekey-interval`,
//! `--rekey-messages`, after ssh's `RekeyLimit 1G 1h`), their values, and the
//! library errors about them worded as these flags.

use std::time::Duration;

use noise_echo::server::ConfigError;
use noise_echo::wire::{ProtocolVersion, Suite};

/// A `--ciphers` name: clap lists these in its help and in the error for any other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(super) enum Cipher {
    /// AES-256-GCM with SHA-256 (Noise_XX_25519_AESGCM_SHA256)
    Aesgcm,
    /// ChaCha20-Poly1305 with BLAKE2s (Noise_XX_25519_ChaChaPoly_BLAKE2s), protocol 1's only cipher
    Chachapoly,
}

impl From<Cipher> for Suite {
    fn from(cipher: Cipher) -> Self {
        match cipher {
            Cipher::Aesgcm => Suite::AesGcmSha256,
            Cipher::Chachapoly => Suite::ChaChaPolyBlake2s,
        }
    }
}

/// A `--protocols` version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(super) enum Protocol {
    /// Protocol 1: ChaChaPoly only, no rekeying (clients older than protocol 2)
    #[value(name = "1")]
    V1,
    /// Protocol 2: negotiated ciphers, advertised limits, rekeying
    #[value(name = "2")]
    V2,
}

impl From<Protocol> for ProtocolVersion {
    fn from(protocol: Protocol) -> Self {
        match protocol {
            Protocol::V1 => ProtocolVersion::V1,
            Protocol::V2 => ProtocolVersion::V2,
        }
    }
}

/// The longest rekey interval the protocol carries: `u32::MAX` seconds.
const MAX_INTERVAL_SECONDS: u64 = u32::MAX as u64;

/// The forms an interval may take, for error messages.
const INTERVAL_FORMS: &str = "seconds, or a number with a unit s, m, h, d or w, \
                              several in a row as in sshd_config (90, 30m, 1h, 1h30m)";

/// `--rekey-interval`: sshd_config's time format (`90`, `30m`, `1h30m`; a bare
/// number is seconds; units s, m, h, d, w, case-insensitive), from one second to
/// `u32::MAX` seconds, the protocol's range.
///
/// # Errors
/// A message naming the text and the accepted forms, or the range.
pub(super) fn parse_interval(text: &str) -> Result<Duration, String> {
    let malformed = || format!("'{text}' is not an interval: expected {INTERVAL_FORMS}");
    if text.is_empty() {
        return Err(malformed());
    }
    let mut seconds: u64 = 0;
    let mut rest = text;
    // Bounded: each turn consumes at least one digit of `text`.
    while !rest.is_empty() {
        let digits_end = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits_end == 0 {
            return Err(malformed());
        }
        let number: u64 = rest[..digits_end].parse().map_err(|_| malformed())?;
        rest = &rest[digits_end..];
        let unit = match rest.chars().next() {
            Some(unit) if unit.is_ascii_alphabetic() => {
                rest = &rest[1..];
                unit.to_ascii_lowercase()
            }
            _ => 's',
        };
        let multiplier = match unit {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'w' => 604_800,
            _ => return Err(malformed()),
        };
        seconds = number
            .checked_mul(multiplier)
            .and_then(|part| seconds.checked_add(part))
            .ok_or_else(|| format!("'{text}' is too long an interval"))?;
    }
    if !(1..=MAX_INTERVAL_SECONDS).contains(&seconds) {
        return Err(format!(
            "{text} is out of range: the interval must be from 1 second to {MAX_INTERVAL_SECONDS} seconds"
        ));
    }
    Ok(Duration::from_secs(seconds))
}

/// The message for a library [`ConfigError`] about these settings, worded as the
/// flags; `None` for any other error.
pub(super) fn flag_error(error: &ConfigError) -> Option<String> {
    let message = match error {
        ConfigError::V1WithoutChaChaPoly => "--protocols 1 needs chachapoly in --ciphers (protocol 1's only cipher): add it, or serve --protocols 2".to_owned(),
        ConfigError::Duplicate { setting: "suites", value } => {
            let cipher: &str = match value.parse::<Suite>() {
                Ok(suite) => suite.short_name(),
                Err(_) => value,
            };
            format!("--ciphers lists {cipher} twice")
        }
        ConfigError::Duplicate { setting: "protocols", value } => {
            format!("--protocols lists {value} twice")
        }
        ConfigError::CaKeysWithoutPrincipals => "--trusted-user-ca-keys needs --authorized-principals: list the certificate principals to admit from those CAs, one per line (sshd matches the login user when no principals file is set, and a noise-echo session has none)".to_owned(),
        ConfigError::PrincipalsWithoutCaKeys => "--authorized-principals applies to the CAs of --trusted-user-ca-keys, which is not set: set it too, or use principals=\"...\" on the cert-authority lines of authorized_keys".to_owned(),
        _ => return None,
    };
    Some(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_read_as_in_sshd_config() {
        for (text, seconds) in [
            ("1", 1),
            ("90", 90),
            ("90s", 90),
            ("30m", 1800),
            ("1h", 3600),
            ("1H", 3600),
            ("1h30m", 5400),
            ("2d", 172_800),
            ("1w", 604_800),
            ("4294967295", u64::from(u32::MAX)),
        ] {
            assert_eq!(
                parse_interval(text),
                Ok(Duration::from_secs(seconds)),
                "{text}"
            );
        }
        for bad in ["", "h", "1x", "1.5h", "-1", " 1", "1h ", "m30"] {
            let error = parse_interval(bad).unwrap_err();
            assert!(error.contains("expected seconds"), "{bad}: {error}");
        }
        for out_of_range in ["0", "0s", "4294967296", "200000w"] {
            let error = parse_interval(out_of_range).unwrap_err();
            assert!(error.contains("out of range"), "{out_of_range}: {error}");
        }
        assert!(parse_interval("9999999999999999w")
            .unwrap_err()
            .contains("too long"));
    }

    #[test]
    fn the_library_errors_are_worded_as_the_flags() {
        let error = flag_error(&ConfigError::V1WithoutChaChaPoly).unwrap();
        assert!(error.contains("--protocols 2"), "{error}");
        let duplicate = ConfigError::Duplicate {
            setting: "suites",
            value: Suite::AesGcmSha256.to_string(),
        };
        assert_eq!(
            flag_error(&duplicate).unwrap(),
            "--ciphers lists aesgcm twice"
        );
        assert_eq!(flag_error(&ConfigError::NoProtocol), None);
    }
}
