//! Protocol v2's negotiation as the client runs it: which version and suite to
//! offer ([`Protocol`], the first [`Offer`]), and what to do with the server's
//! refusing answer (docs/PROTOCOL.md, section 13): one automatic retry with a suite
//! the server listed, on a new connection; an error naming the fix otherwise. The
//! client never falls back to v1 by itself (section 14).

use std::fmt;
use std::str::FromStr;

use crate::client::ClientError;
use crate::wire::{Mismatch, Offer, ProtocolVersion, Suite, UnknownVersion};

/// Which protocol version the client speaks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Protocol {
    /// The newest version this client speaks: v2. A server that speaks only v1
    /// makes the connection fail with an error naming `--protocol 1`; there is no
    /// silent fallback, which a man in the middle could trigger. The default.
    #[default]
    Auto,
    /// Protocol v1: the one suite (ChaChaPoly), no offer, no server parameters.
    V1,
    /// Protocol v2.
    V2,
}

impl Protocol {
    /// The version this choice speaks.
    pub fn version(self) -> ProtocolVersion {
        match self {
            Protocol::V1 => ProtocolVersion::V1,
            Protocol::Auto | Protocol::V2 => ProtocolVersion::V2,
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Protocol::Auto => f.write_str("auto"),
            Protocol::V1 | Protocol::V2 => write!(f, "{}", self.version()),
        }
    }
}

impl FromStr for Protocol {
    type Err = UnknownVersion;

    /// Parses `auto`, `1`, `2` (or `v1`, `v2`).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.eq_ignore_ascii_case("auto") {
            return Ok(Protocol::Auto);
        }
        Ok(match text.parse::<ProtocolVersion>()? {
            ProtocolVersion::V1 => Protocol::V1,
            _ => Protocol::V2,
        })
    }
}

/// The first attempt's offer: `None` for protocol v1, which has none; else the
/// forced suite, or the one this CPU runs fastest.
pub(super) fn first_offer(protocol: Protocol, cipher: Option<Suite>) -> Option<Offer> {
    match protocol.version() {
        ProtocolVersion::V1 => None,
        _ => Some(Offer::new(cipher.unwrap_or_else(Suite::preferred))),
    }
}

/// What to do after the server refused an offer.
#[derive(Debug)]
pub(super) enum Reaction {
    /// Offer this on a new connection.
    Retry(Offer),
    /// Give up with this error.
    Fail(ClientError),
}

/// The reaction to `mismatch`, the server's answer to `offer`. `forced`: the user
/// chose the suite, so no other is tried. `can_reconnect`: a retry is possible (a
/// caller's stream cannot be opened again).
pub(super) fn react(
    mismatch: Mismatch,
    offer: &Offer,
    forced: bool,
    can_reconnect: bool,
) -> Reaction {
    // A suite that is not one we run was never offered: the name came from us.
    let offered = offer.suite().unwrap_or_else(Suite::preferred);
    match mismatch {
        Mismatch::UnsupportedSuite { accepted, .. } => {
            let other = accepted
                .iter()
                .filter_map(|name| Suite::from_noise_name(name.as_bytes()))
                .find(|&suite| suite != offered);
            match (other, forced || offer.retry().is_some(), can_reconnect) {
                // At most one retry: an offer carrying a retry field is not retried.
                (Some(suite), false, true) => Reaction::Retry(Offer::retrying(suite, offered)),
                (Some(_), false, false) => {
                    Reaction::Fail(ClientError::SuiteRetryNeeded { offered, accepted })
                }
                (_, _, _) => Reaction::Fail(ClientError::NoCommonSuite {
                    offered,
                    accepted,
                    forced,
                }),
            }
        }
        Mismatch::UnsupportedVersion { offered, accepted } => {
            Reaction::Fail(ClientError::VersionNotSpoken { offered, accepted })
        }
        Mismatch::RetryRefused { rejected } => {
            Reaction::Fail(ClientError::RetryRefused { rejected })
        }
        other => Reaction::Fail(ClientError::Wire(other.into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_automatic_choice_retries_once_with_the_first_listed_suite_it_runs() {
        let first = Offer::new(Suite::AesGcmSha256);
        let refused = || Mismatch::UnsupportedSuite {
            offered: first.name().to_owned(),
            accepted: vec![
                "Noise_XX_448_Future_SHA512".to_owned(),
                Suite::ChaChaPolyBlake2s.noise_name().to_owned(),
            ],
        };
        let Reaction::Retry(retry) = react(refused(), &first, false, true) else {
            panic!("no retry");
        };
        assert_eq!(
            retry,
            Offer::retrying(Suite::ChaChaPolyBlake2s, Suite::AesGcmSha256)
        );
        // Refused again: no second retry.
        let again = react(refused(), &retry, false, true);
        assert!(
            matches!(
                again,
                Reaction::Fail(ClientError::NoCommonSuite { forced: false, .. })
            ),
            "{again:?}"
        );
        // Forced: the user's choice is not replaced.
        let forced = react(refused(), &first, true, true);
        let Reaction::Fail(error) = forced else {
            panic!()
        };
        assert!(
            error
                .to_string()
                .ends_with("connect with --cipher chachapoly"),
            "{error}"
        );
        // Over a caller's stream: the error carries the list.
        let Reaction::Fail(error) = react(refused(), &first, false, false) else {
            panic!()
        };
        assert!(
            matches!(&error, ClientError::SuiteRetryNeeded { accepted, .. } if accepted.len() == 2),
            "{error:?}"
        );
    }

    #[test]
    fn no_suite_in_common_lists_the_servers() {
        let offer = Offer::new(Suite::AesGcmSha256);
        let mismatch = Mismatch::UnsupportedSuite {
            offered: offer.name().to_owned(),
            accepted: vec!["Noise_XX_448_Future_SHA512".to_owned()],
        };
        let Reaction::Fail(error) = react(mismatch, &offer, false, true) else {
            panic!()
        };
        assert_eq!(
            error.to_string(),
            "the server accepts none of the cipher suites this client runs (aesgcm, chachapoly); \
             it accepts Noise_XX_448_Future_SHA512"
        );
    }

    #[test]
    fn an_unsupported_version_names_protocol_1_when_the_server_speaks_it() {
        let offer = Offer::new(Suite::AesGcmSha256);
        for (accepted, text) in [
            (vec![1], "the server does not speak protocol version 2; it speaks 1: connect with --protocol 1"),
            (vec![3], "the server does not speak protocol version 2; it speaks 3, none of which this client speaks"),
            (vec![], "the server does not speak protocol version 2; it speaks none"),
        ] {
            let mismatch = Mismatch::UnsupportedVersion { offered: 2, accepted };
            let Reaction::Fail(error) = react(mismatch, &offer, false, true) else { panic!() };
            assert_eq!(error.to_string(), text);
        }
    }

    #[test]
    fn protocol_choices_parse_and_v1_has_no_offer() {
        assert_eq!("1".parse::<Protocol>().unwrap(), Protocol::V1);
        assert_eq!("2".parse::<Protocol>().unwrap(), Protocol::V2);
        assert_eq!("auto".parse::<Protocol>().unwrap(), Protocol::Auto);
        assert!("3".parse::<Protocol>().is_err());
        assert_eq!(first_offer(Protocol::V1, Some(Suite::AesGcmSha256)), None);
        assert_eq!(
            first_offer(Protocol::Auto, None),
            Some(Offer::new(Suite::preferred()))
        );
        assert_eq!(
            first_offer(Protocol::V2, Some(Suite::ChaChaPolyBlake2s)),
            Some(Offer::new(Suite::ChaChaPolyBlake2s))
        );
    }
}
