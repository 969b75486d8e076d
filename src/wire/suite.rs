//! The cipher suites of protocol v2: which Noise protocol a session runs, how it is
//! named on the wire, and which one a client prefers on this CPU.
//!
//! Protocol v1 has one suite, [`Suite::ChaChaPolyBlake2s`], fixed by its prologue.
//! Protocol v2 names the suite in the client's offer (docs/PROTOCOL.md, "Protocol
//! v2"); the names are the Noise protocol names, so an implementer needs no table.

use std::fmt;
use std::str::FromStr;

/// A Noise protocol this implementation runs: the handshake pattern and DH are
/// always XX and X25519; the suites differ in cipher and hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Suite {
    /// `Noise_XX_25519_ChaChaPoly_BLAKE2s`: protocol v1's only suite, and v2's for
    /// CPUs without AES instructions (constant-time in software everywhere).
    ChaChaPolyBlake2s,
    /// `Noise_XX_25519_AESGCM_SHA256`: AES-256-GCM, several times faster than
    /// ChaCha20-Poly1305 where the CPU has AES and carry-less multiply instructions.
    AesGcmSha256,
}

impl Suite {
    /// Every suite, in the order a server prefers them by default.
    pub const ALL: [Suite; 2] = [Suite::AesGcmSha256, Suite::ChaChaPolyBlake2s];

    /// The Noise protocol name, as sent in a v2 offer.
    pub fn noise_name(self) -> &'static str {
        match self {
            Suite::ChaChaPolyBlake2s => "Noise_XX_25519_ChaChaPoly_BLAKE2s",
            Suite::AesGcmSha256 => "Noise_XX_25519_AESGCM_SHA256",
        }
    }

    /// The short name used by `--cipher` and `--ciphers`.
    pub fn short_name(self) -> &'static str {
        match self {
            Suite::ChaChaPolyBlake2s => "chachapoly",
            Suite::AesGcmSha256 => "aesgcm",
        }
    }

    /// The suite whose Noise protocol name is `name`, if we run it.
    pub fn from_noise_name(name: &[u8]) -> Option<Suite> {
        Suite::ALL
            .into_iter()
            .find(|suite| suite.noise_name().as_bytes() == name)
    }

    /// The suite a client offers first on this CPU: AES-GCM when the CPU has AES
    /// and carry-less multiplication instructions (as rustls and BoringSSL order
    /// their suites), ChaCha20-Poly1305 otherwise, where it is the faster one and
    /// AES in software would be slow and hard to make constant-time.
    pub fn preferred() -> Suite {
        if cpu_has_aes() {
            Suite::AesGcmSha256
        } else {
            Suite::ChaChaPolyBlake2s
        }
    }
}

impl fmt::Display for Suite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.noise_name())
    }
}

/// A `--cipher` value that names no suite.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown cipher {0:?}: expected aesgcm or chachapoly")]
pub struct UnknownSuite(pub String);

impl FromStr for Suite {
    type Err = UnknownSuite;

    /// Parses a short name (`aesgcm`, `chachapoly`) or a Noise protocol name.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Suite::ALL
            .into_iter()
            .find(|suite| {
                suite.short_name().eq_ignore_ascii_case(text) || suite.noise_name() == text
            })
            .ok_or_else(|| UnknownSuite(text.to_owned()))
    }
}

#[cfg(target_arch = "x86_64")]
fn cpu_has_aes() -> bool {
    std::arch::is_x86_feature_detected!("aes") && std::arch::is_x86_feature_detected!("pclmulqdq")
}

#[cfg(target_arch = "aarch64")]
fn cpu_has_aes() -> bool {
    std::arch::is_aarch64_feature_detected!("aes")
        && std::arch::is_aarch64_feature_detected!("pmull")
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn cpu_has_aes() -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_parse_as_noise_names() {
        for suite in Suite::ALL {
            assert_eq!(
                Suite::from_noise_name(suite.noise_name().as_bytes()),
                Some(suite)
            );
            assert_eq!(suite.short_name().parse::<Suite>(), Ok(suite));
            assert_eq!(suite.noise_name().parse::<Suite>(), Ok(suite));
            let params: Result<snow::params::NoiseParams, _> = suite.noise_name().parse();
            assert!(params.is_ok(), "{suite}");
        }
        assert_eq!(
            Suite::from_noise_name(b"Noise_XX_25519_AESGCM_BLAKE2s"),
            None
        );
        assert!("des".parse::<Suite>().is_err());
    }
}
