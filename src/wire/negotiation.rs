//! Protocol versions and the v2 negotiation (docs/PROTOCOL.md, "Recognising the
//! version" and "The offer and the answer"): the client's offer, sent as the first
//! frame before message 1, the server's answer, sent before message 2, and how a
//! server tells a v1 message 1, a v2 offer and garbage apart in the first frame.
//!
//! Pure codecs over byte slices: no I/O. Every length is checked against what
//! remains before anything is allocated, and every name must be printable ASCII, so
//! what a peer sent can be logged as it is.

use std::fmt;
use std::str::FromStr;

use crate::wire::handshake::MSG1_LEN;
use crate::wire::suite::Suite;

/// The 10 bytes every offer starts with.
pub const MAGIC: &[u8; 10] = b"noise-echo";

/// The longest Noise protocol name an offer or answer may carry.
pub const MAX_NAME_LEN: usize = 64;

/// The shortest name an offer may carry. Every Noise protocol name is longer (the
/// shortest XX one is 26 bytes); the bound makes every offer at least 33 bytes, so
/// none is ever taken for a 32-byte v1 message 1.
pub const MIN_OFFER_NAME_LEN: usize = 20;

/// The longest valid v2 offer: magic, version, two names of the longest length.
pub const MAX_OFFER_LEN: usize = MAGIC.len() + 1 + 1 + MAX_NAME_LEN + 1 + MAX_NAME_LEN;

/// The longest valid answer: an UNSUPPORTED_SUITE list of 255 longest names.
pub const MAX_ANSWER_LEN: usize = 2 + 255 * (1 + MAX_NAME_LEN);

/// The version byte of a v2 offer.
const VERSION_2: u8 = 2;

/// Answer status bytes.
const ACCEPT: u8 = 0x00;
const UNSUPPORTED_SUITE: u8 = 0x01;
const UNSUPPORTED_VERSION: u8 = 0x02;
const RETRY_REFUSED: u8 = 0x03;

/// A version of the noise-echo protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum ProtocolVersion {
    /// Version 1: prologue `noise-echo/1`, ChaChaPoly only, 32-byte payloads.
    V1,
    /// Version 2: an offer naming the suite, field payloads, rekeying.
    V2,
}

impl ProtocolVersion {
    /// Every version this implementation speaks, oldest first.
    pub const ALL: [ProtocolVersion; 2] = [ProtocolVersion::V1, ProtocolVersion::V2];

    /// The version's number, as in an UNSUPPORTED_VERSION answer.
    pub fn number(self) -> u8 {
        match self {
            ProtocolVersion::V1 => 1,
            ProtocolVersion::V2 => VERSION_2,
        }
    }

    /// The version numbered `number`, if this implementation speaks it.
    pub fn from_number(number: u8) -> Option<ProtocolVersion> {
        Self::ALL
            .into_iter()
            .find(|version| version.number() == number)
    }
}

impl fmt::Display for ProtocolVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.number())
    }
}

/// A `--protocol` value that names no version this implementation speaks.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown protocol version {0:?}: expected 1 or 2")]
pub struct UnknownVersion(pub String);

impl FromStr for ProtocolVersion {
    type Err = UnknownVersion;

    /// Parses `1`, `2` (or `v1`, `v2`).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let digits = text.strip_prefix(['v', 'V']).unwrap_or(text);
        digits
            .parse::<u8>()
            .ok()
            .and_then(ProtocolVersion::from_number)
            .ok_or_else(|| UnknownVersion(text.to_owned()))
    }
}

/// A v2 offer: the Noise protocol name the client runs this connection with, and,
/// on a retry, the name the server (it was told) rejected. Its encoding is the v2
/// handshake's prologue, so no byte of it can be altered unnoticed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Offer {
    /// The Noise protocol name offered: printable ASCII, 1 to 64 bytes. A server
    /// decodes names it does not run too, to answer UNSUPPORTED_SUITE.
    name: String,
    /// The rejected name this offer retries after, if any: the server refuses the
    /// retry when it accepts that name (the rejection was forged).
    retry: Option<String>,
}

impl Offer {
    /// A first attempt with `suite`.
    pub fn new(suite: Suite) -> Self {
        Self {
            name: suite.noise_name().to_owned(),
            retry: None,
        }
    }

    /// A retry with `suite` after the server answered UNSUPPORTED_SUITE to an offer
    /// of `rejected`.
    pub fn retrying(suite: Suite, rejected: Suite) -> Self {
        Self {
            name: suite.noise_name().to_owned(),
            retry: Some(rejected.noise_name().to_owned()),
        }
    }

    /// The offered Noise protocol name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The offered suite, when it is one this implementation runs.
    pub fn suite(&self) -> Option<Suite> {
        Suite::from_noise_name(self.name.as_bytes())
    }

    /// The rejected name this offer retries after.
    pub fn retry(&self) -> Option<&str> {
        self.retry.as_deref()
    }

    /// The offer's bytes: the first frame's payload and the v2 prologue.
    pub fn encode(&self) -> Vec<u8> {
        let retry = self.retry.as_deref().unwrap_or("");
        let mut out = Vec::with_capacity(MAGIC.len() + 3 + self.name.len() + retry.len());
        out.extend_from_slice(MAGIC);
        out.push(VERSION_2);
        push_name(&mut out, &self.name);
        push_name(&mut out, retry);
        out
    }

    /// Decodes a v2 offer (magic and version 2 included).
    ///
    /// # Errors
    /// [`OfferProblem`] for anything but exactly one well-formed offer.
    pub fn decode(bytes: &[u8]) -> Result<Offer, OfferProblem> {
        let mut reader = Reader(bytes);
        if reader.take(MAGIC.len()) != Some(MAGIC) {
            return Err(OfferProblem::NoMagic);
        }
        match reader.byte() {
            Some(VERSION_2) => {}
            Some(other) => return Err(OfferProblem::Version(other)),
            None => return Err(OfferProblem::Truncated),
        }
        let name = match read_name(&mut reader, MIN_OFFER_NAME_LEN)? {
            Some(name) => name,
            None => return Err(OfferProblem::NameLength(0)),
        };
        let retry = read_name(&mut reader, MIN_OFFER_NAME_LEN)?;
        if !reader.0.is_empty() {
            return Err(OfferProblem::TrailingBytes(reader.0.len()));
        }
        Ok(Offer { name, retry })
    }
}

fn push_name(out: &mut Vec<u8>, name: &str) {
    debug_assert!(name.len() <= MAX_NAME_LEN);
    out.push(name.len() as u8);
    out.extend_from_slice(name.as_bytes());
}

/// Reads `len u8 | name`: `None` for an empty name, else `min..=64` bytes.
fn read_name(reader: &mut Reader<'_>, min: usize) -> Result<Option<String>, OfferProblem> {
    let len = reader.byte().ok_or(OfferProblem::Truncated)?;
    if len != 0 && (usize::from(len) < min || usize::from(len) > MAX_NAME_LEN) {
        return Err(OfferProblem::NameLength(len));
    }
    let bytes = reader
        .take(usize::from(len))
        .ok_or(OfferProblem::Truncated)?;
    if len == 0 {
        return Ok(None);
    }
    printable(bytes).map(Some).ok_or(OfferProblem::NameNotAscii)
}

/// `bytes` as a string when all are printable ASCII (no spaces, no controls).
fn printable(bytes: &[u8]) -> Option<String> {
    bytes
        .iter()
        .all(u8::is_ascii_graphic)
        .then(|| String::from_utf8_lossy(bytes).into_owned())
}

/// A byte cursor that never reads past its slice.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Option<u8> {
        let (&first, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(first)
    }

    fn take(&mut self, len: usize) -> Option<&'a [u8]> {
        if len > self.0.len() {
            return None;
        }
        let (head, rest) = self.0.split_at(len);
        self.0 = rest;
        Some(head)
    }
}

/// What is wrong with a first frame that starts with [`MAGIC`] but is no valid
/// offer. The server closes without a reply, as for any garbage.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OfferProblem {
    /// It does not start with `noise-echo`.
    #[error("it does not start with \"noise-echo\"")]
    NoMagic,
    /// The version byte is not 2 (only [`Offer::decode`] reports this; a server
    /// answers UNSUPPORTED_VERSION instead).
    #[error("version {0} is not 2")]
    Version(u8),
    /// It ends inside a field.
    #[error("it is truncated")]
    Truncated,
    /// A name length outside the bounds: 20 to 64 in an offer (or 0 for no
    /// retry), 1 to 64 in an answer.
    #[error("a name length of {0} (names are 20 to 64 bytes in an offer, 1 to 64 in an answer)")]
    NameLength(u8),
    /// A name byte that is not printable ASCII.
    #[error("a name that is not printable ASCII")]
    NameNotAscii,
    /// Bytes after the retry field.
    #[error("{0} bytes follow the retry field")]
    TrailingBytes(usize),
    /// A first frame longer than any offer, that is not a v1 message 1 either.
    #[error("a first frame of {0} bytes, neither a v1 message 1 ({MSG1_LEN} bytes) nor an offer (at most {MAX_OFFER_LEN})")]
    Size(usize),
}

/// What a server's first frame is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FirstFrame {
    /// Exactly 32 bytes: protocol v1's message 1.
    V1Message1,
    /// A well-formed v2 offer.
    Offer(Offer),
    /// `noise-echo` and a version byte other than 2: a later (or bogus) version,
    /// answered UNSUPPORTED_VERSION.
    OtherVersion(u8),
    /// Anything else: closed without a reply.
    Garbage(OfferProblem),
}

impl FirstFrame {
    /// Classifies the payload of a connection's first frame (the recognition rule).
    pub fn classify(payload: &[u8]) -> FirstFrame {
        if payload.len() == MSG1_LEN {
            return FirstFrame::V1Message1;
        }
        match payload.strip_prefix(MAGIC.as_slice()) {
            None if payload.len() > MAX_OFFER_LEN => {
                FirstFrame::Garbage(OfferProblem::Size(payload.len()))
            }
            None => FirstFrame::Garbage(OfferProblem::NoMagic),
            Some([]) => FirstFrame::Garbage(OfferProblem::Truncated),
            Some([VERSION_2, ..]) => match Offer::decode(payload) {
                Ok(offer) => FirstFrame::Offer(offer),
                Err(problem) => FirstFrame::Garbage(problem),
            },
            Some([version, ..]) => FirstFrame::OtherVersion(*version),
        }
    }
}

/// The server's answer to an offer, the first frame it sends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// The offer is accepted: message 2 follows.
    Accept,
    /// The offered suite is not accepted; these are (Noise protocol names, the
    /// server's preference first). The server closes.
    UnsupportedSuite(Vec<String>),
    /// The offered version is not spoken; these are. The server closes.
    UnsupportedVersion(Vec<u8>),
    /// The offer's retry field names a suite this server accepts: the rejection it
    /// retries after did not come from this server. The server closes.
    RetryRefused,
}

impl Answer {
    /// The answer's bytes (a frame's payload).
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Answer::Accept => vec![ACCEPT],
            Answer::UnsupportedSuite(names) => {
                let names = &names[..names.len().min(255)];
                let mut out = vec![UNSUPPORTED_SUITE, names.len() as u8];
                for name in names {
                    push_name(&mut out, name);
                }
                out
            }
            Answer::UnsupportedVersion(versions) => {
                let versions = &versions[..versions.len().min(255)];
                let mut out = vec![UNSUPPORTED_VERSION, versions.len() as u8];
                out.extend_from_slice(versions);
                out
            }
            Answer::RetryRefused => vec![RETRY_REFUSED],
        }
    }

    /// Decodes an answer.
    ///
    /// # Errors
    /// [`AnswerProblem`] for anything but exactly one well-formed answer.
    pub fn decode(bytes: &[u8]) -> Result<Answer, AnswerProblem> {
        let mut reader = Reader(bytes);
        let status = reader.byte().ok_or(AnswerProblem::Truncated)?;
        let answer = match status {
            ACCEPT => Answer::Accept,
            RETRY_REFUSED => Answer::RetryRefused,
            UNSUPPORTED_SUITE => {
                let count = reader.byte().ok_or(AnswerProblem::Truncated)?;
                if count == 0 {
                    return Err(AnswerProblem::EmptySuiteList);
                }
                // At most 255 names of at most 64 bytes: bounded before reading.
                let mut names = Vec::with_capacity(usize::from(count));
                for _ in 0..count {
                    match read_name(&mut reader, 1).map_err(AnswerProblem::Name)? {
                        Some(name) => names.push(name),
                        None => return Err(AnswerProblem::Name(OfferProblem::NameLength(0))),
                    }
                }
                Answer::UnsupportedSuite(names)
            }
            UNSUPPORTED_VERSION => {
                let count = reader.byte().ok_or(AnswerProblem::Truncated)?;
                let versions = reader
                    .take(usize::from(count))
                    .ok_or(AnswerProblem::Truncated)?;
                Answer::UnsupportedVersion(versions.to_vec())
            }
            other => return Err(AnswerProblem::UnknownStatus(other)),
        };
        if !reader.0.is_empty() {
            return Err(AnswerProblem::TrailingBytes(reader.0.len()));
        }
        Ok(answer)
    }
}

/// What is wrong with a server's answer: a protocol violation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AnswerProblem {
    /// It ends inside a field.
    #[error("it is truncated")]
    Truncated,
    /// A status byte that is not 0 to 3.
    #[error("unknown status {0:#04x}")]
    UnknownStatus(u8),
    /// An UNSUPPORTED_SUITE list with no suite.
    #[error("an empty list of suites")]
    EmptySuiteList,
    /// A malformed suite name.
    #[error("a bad suite name: {0}")]
    Name(OfferProblem),
    /// Bytes after the answer.
    #[error("{0} bytes follow the answer")]
    TrailingBytes(usize),
    /// A frame longer than any answer.
    #[error("an answer frame of {0} bytes (at most {MAX_ANSWER_LEN})")]
    TooLong(usize),
    /// RETRY_REFUSED to an offer that was no retry.
    #[error("RETRY_REFUSED to a first attempt")]
    RetryRefusedWithoutRetry,
}

#[cfg(test)]
mod tests;
