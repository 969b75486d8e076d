//! The one error type of the protocol layer, grouped by who is at fault, the way
//! rustls groups its errors: the local system ([`WireError::Io`]), the peer
//! ([`WireError::PeerMisbehaved`]), a policy decision ([`WireError::NotAllowed`]),
//! or noise-echo itself ([`WireError::Internal`]).
//!
//! No variant carries key material: at most a public-key fingerprint, sizes, record
//! types and human-readable reasons.
//!
//! Every message includes the text of what caused it, so `to_string()` (a log line)
//! says everything; and so that a chain printed with its causes (`{:#}` in anyhow)
//! says nothing twice, no type here also returns that cause from
//! [`std::error::Error::source`]. The causes stay reachable as fields.

use std::fmt;
use std::io;

use crate::identity::Fingerprint;
use crate::wire::negotiation::{AnswerProblem, OfferProblem};
use crate::wire::record::{RecordType, Role};

/// Everything that can end a handshake or a session.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// Reading from or writing to the connection failed locally (reset, broken pipe,
    /// timeout...). An end of stream inside a frame is reported as
    /// [`Violation::Truncated`] instead, because the peer caused it.
    #[error("I/O error on the connection: {0}")]
    Io(io::Error),
    /// The peer broke wire-v1. The connection must be closed at once, with no reply.
    #[error("the peer broke the protocol: {0}")]
    PeerMisbehaved(Violation),
    /// The protocol worked but a policy said no.
    #[error("not allowed: {0}")]
    NotAllowed(Refusal),
    /// A mistake in noise-echo (or a caller of this module), never the peer's doing.
    #[error("internal error (a bug in noise-echo): {0}")]
    Internal(Bug),
    /// Protocol v2's negotiation found no common ground, honestly: an offered suite
    /// or version the server does not run, or a retry it refused. The server
    /// answered (see [`Mismatch`]) and the connection ends; it is no attack on the
    /// server, so no cause for a penalty.
    #[error("{0}")]
    Mismatch(Mismatch),
}

/// How a v2 negotiation failed without anyone breaking the protocol. The server's
/// driver returns it after writing its answer; the client's after reading it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Mismatch {
    /// The offered suite is not one the server accepts.
    #[error("the server does not accept the cipher suite {offered}; it accepts {}", .accepted.join(", "))]
    UnsupportedSuite {
        /// The Noise protocol name offered.
        offered: String,
        /// The names the server accepts, its preference first.
        accepted: Vec<String>,
    },
    /// The offered protocol version is not one the server speaks.
    #[error("the server does not speak protocol version {offered}; it speaks {}", versions(.accepted))]
    UnsupportedVersion {
        /// The version offered.
        offered: u8,
        /// The versions the server speaks.
        accepted: Vec<u8>,
    },
    /// The server refused a retry: the suite the retry names as rejected is one it
    /// accepts, so the rejection did not come from it (a man in the middle?).
    #[error("the server refused the retry: its earlier answer (that {rejected} is not accepted) did not come from it (a man in the middle?)")]
    RetryRefused {
        /// The suite the retry named as rejected.
        rejected: String,
    },
    /// A v1 message 1 reached a server that does not serve v1 (disabled, or
    /// ChaChaPoly not among its suites). v1 has no answer: the server closed.
    #[error("a protocol v1 client, and protocol v1 is not served here")]
    V1NotServed,
}

fn versions(list: &[u8]) -> String {
    let shown: Vec<String> = list.iter().map(u8::to_string).collect();
    if shown.is_empty() {
        "none".to_owned()
    } else {
        shown.join(", ")
    }
}

// Written out instead of `#[from]`, which would also make each one the `source()`
// of a message that already includes its text (see the module documentation).
impl From<io::Error> for WireError {
    fn from(error: io::Error) -> Self {
        Self::Io(error)
    }
}

impl From<Violation> for WireError {
    fn from(violation: Violation) -> Self {
        Self::PeerMisbehaved(violation)
    }
}

impl From<Refusal> for WireError {
    fn from(refusal: Refusal) -> Self {
        Self::NotAllowed(refusal)
    }
}

impl From<Mismatch> for WireError {
    fn from(mismatch: Mismatch) -> Self {
        Self::Mismatch(mismatch)
    }
}

impl From<Bug> for WireError {
    fn from(bug: Bug) -> Self {
        Self::Internal(bug)
    }
}

impl WireError {
    /// The protocol violation, when the peer is at fault.
    pub fn violation(&self) -> Option<&Violation> {
        match self {
            Self::PeerMisbehaved(violation) => Some(violation),
            _ => None,
        }
    }
}

/// Where the stream ended early (wire-v1 section 6: "truncated").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TruncatedAt {
    /// Before the handshake was complete.
    Handshake,
    /// Between handshake messages 2 and 3: the client received the server's key
    /// and closed without sending its own (it may not trust this host key).
    AfterMessage2,
    /// Inside a frame: after some of its length prefix or payload.
    Frame,
    /// Inside a record's 5-byte header.
    RecordHeader,
    /// Inside a record's body.
    RecordBody,
}

impl fmt::Display for TruncatedAt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Handshake => "the handshake",
            Self::AfterMessage2 => "the handshake, after the server's key was sent",
            Self::Frame => "a frame",
            Self::RecordHeader => "a record header",
            Self::RecordBody => "a record body",
        })
    }
}

/// What is wrong with a peer's handshake payload (wire-v1 sections 3 and 7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PayloadProblem {
    /// Not exactly 32 bytes.
    WrongLength(usize),
    /// Not a canonical, decodable Ed25519 point of large order.
    InvalidPoint,
    /// A valid Ed25519 key whose Montgomery form is not the Noise static key the
    /// peer used: someone is presenting a key it cannot prove it holds.
    StaticKeyMismatch,
    /// v2: a payload over [`MAX_V2_PAYLOAD`](crate::wire::MAX_V2_PAYLOAD) bytes.
    TooLong(usize),
    /// v2: the payload ends inside a field's 4-byte header.
    TruncatedField {
        /// Bytes left where a header should be.
        remaining: usize,
    },
    /// v2: a field's length runs past the end of the payload.
    FieldOverrun {
        /// The field's type.
        field: u16,
        /// Its announced length.
        len: usize,
        /// The bytes that remain.
        remaining: usize,
    },
    /// v2: a field type sent twice.
    DuplicateField(u16),
    /// v2: a known field in the message it does not belong to.
    FieldInWrongMessage(u16),
    /// v2: a critical field (bit 15 set) this implementation does not know.
    UnknownCriticalField(u16),
    /// v2: a required field is missing.
    MissingField(u16),
    /// v2: a known field of the wrong size.
    FieldLength {
        /// The field's type.
        field: u16,
        /// Its length.
        len: usize,
        /// Its required length.
        expected: usize,
    },
    /// v2: a rekey policy with a limit of 0.
    ZeroRekeyLimit,
    /// v2: an openssh_certificate field that is no Ed25519 certificate of the key
    /// the peer proved (its trust is the caller's policy, not this check).
    Certificate(crate::wire::payload::CertificateProblem),
}

impl fmt::Display for PayloadProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::WrongLength(len) => write!(f, "{len} bytes instead of a 32-byte Ed25519 key"),
            Self::InvalidPoint => f.write_str(
                "not a valid Ed25519 public key (non-canonical, not on the curve, or of small order)",
            ),
            Self::StaticKeyMismatch => {
                f.write_str("the Ed25519 key does not match the peer's Noise static key")
            }
            Self::TooLong(len) => write!(
                f,
                "{len} bytes, over the limit of {}",
                crate::wire::MAX_V2_PAYLOAD
            ),
            Self::TruncatedField { remaining } => {
                write!(f, "it ends {remaining} bytes into a 4-byte field header")
            }
            Self::FieldOverrun {
                field,
                len,
                remaining,
            } => write!(
                f,
                "field {field:#06x} claims {len} bytes where {remaining} remain"
            ),
            Self::DuplicateField(field) => write!(f, "field {field:#06x} appears twice"),
            Self::FieldInWrongMessage(field) => {
                write!(f, "field {field:#06x} does not belong in this message")
            }
            Self::UnknownCriticalField(field) => {
                write!(f, "unknown critical field {field:#06x}")
            }
            Self::MissingField(field) => write!(f, "required field {field:#06x} is missing"),
            Self::FieldLength {
                field,
                len,
                expected,
            } => write!(
                f,
                "field {field:#06x} is {len} bytes instead of {expected}"
            ),
            Self::ZeroRekeyLimit => f.write_str("a rekey policy limit of 0"),
            Self::Certificate(problem) => write!(f, "{problem}"),
        }
    }
}

/// A way the peer broke wire-v1. Each one is fatal: close the connection, no reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Violation {
    /// A frame length prefix of 0 (wire-v1 section 1).
    #[error("zero-length frame")]
    ZeroLengthFrame,
    /// The stream ended where it must not.
    #[error("the connection ended inside {0} (truncated)")]
    Truncated(TruncatedAt),
    /// A handshake message of the wrong size (wire-v1 section 2), refused before
    /// processing it.
    #[error("handshake message {message} is {actual} bytes; wire-v1 requires exactly {expected}")]
    HandshakeMessageSize {
        /// 1, 2 or 3.
        message: u8,
        /// What wire-v1 requires.
        expected: usize,
        /// What the length prefix said.
        actual: usize,
    },
    /// A v2 handshake message whose size no valid one has, refused before
    /// processing it.
    #[error("handshake message {message} is {actual} bytes; protocol v2 allows {min} to {max}")]
    HandshakeMessageOutOfRange {
        /// 2 or 3.
        message: u8,
        /// The smallest valid size (the required fields).
        min: usize,
        /// The largest (a payload of MAX_V2_PAYLOAD bytes).
        max: usize,
        /// What the length prefix said.
        actual: usize,
    },
    /// The client's first frame starts like an offer but is none (or is neither
    /// a v1 message 1 nor an offer).
    #[error("a malformed protocol offer: {0}")]
    MalformedOffer(OfferProblem),
    /// The server's answer to the offer is malformed.
    #[error("a malformed answer to the protocol offer: {0}")]
    MalformedAnswer(AnswerProblem),
    /// A handshake message did not authenticate: the peer uses another prologue,
    /// protocol name or keys, or the message was tampered with.
    #[error("handshake message {message} failed to decrypt (different protocol or prologue, or tampering)")]
    HandshakeDecrypt {
        /// 2 or 3.
        message: u8,
    },
    /// The handshake payload is not an acceptable Ed25519 key for the peer.
    #[error("bad payload in handshake message {message}: {problem}")]
    BadHandshakePayload {
        /// 2 (server's key) or 3 (client's key).
        message: u8,
        /// What is wrong with it.
        problem: PayloadProblem,
    },
    /// A transport message failed to decrypt or authenticate.
    #[error("a transport message failed to decrypt")]
    TransportDecrypt,
    /// A transport message whose plaintext is empty (wire-v1 section 7).
    #[error("a transport message carried an empty plaintext")]
    EmptyTransportMessage,
    /// A record type byte that is not valid in this direction (wire-v1 section 7).
    #[error("record type {record_type:#04x} is not one the {sender} may send")]
    UnknownRecordType {
        /// The type byte received.
        record_type: u8,
        /// Who sent it.
        sender: Role,
    },
    /// The peer speaks another protocol: its first bytes are an SSH banner, a TLS
    /// record, an HTTP response or text, where a handshake frame should be. Reported
    /// instead of the absurd frame size those bytes make ("handshake message 2 is
    /// 21331 bytes"), so the user sees what they reached.
    #[error("this is not a noise-echo {sender}: {sent}")]
    NotNoiseEcho {
        /// Who sent it: the server for a client, the client for a server.
        sender: Role,
        /// What it sent, recognised.
        sent: ForeignProtocol,
    },
    /// A record body over the receiver's limit (a REQUEST over the server's limit,
    /// or a RESPONSE or ERROR larger than the client accepts).
    #[error("{record_type} body of {len} bytes is over the limit of {limit} bytes")]
    RecordTooLarge {
        /// The record's type.
        record_type: RecordType,
        /// The length its header announced.
        len: u32,
        /// The receiver's limit.
        limit: u32,
    },
    /// A REKEY record (protocol v2) whose header announced a body: REKEY has none.
    #[error("a REKEY record announced a {len}-byte body; REKEY records are empty")]
    RekeyWithBody {
        /// The length its header announced.
        len: u32,
    },
    /// A REKEY record that was not the last bytes of its transport message: data
    /// followed it, or its header began in an earlier message (protocol v2).
    #[error("a REKEY record was not the last bytes of its transport message")]
    RekeyNotLast,
    /// A transport message that brought the sender's count under one key to the
    /// rekey policy's message or byte limit did not end with REKEY (protocol v2).
    #[error(
        "the {sender} did not rekey: its transport message reached the rekey limit \
         ({max_messages} messages or {max_bytes} bytes under one key) without ending in a REKEY record"
    )]
    MissedRekey {
        /// Who sent it.
        sender: Role,
        /// The policy's message limit.
        max_messages: u64,
        /// The policy's byte limit.
        max_bytes: u64,
    },
}

/// What another protocol's first bytes are, seen where a noise-echo handshake frame
/// should be. The text is the peer's, escaped (control characters as `\\n`,
/// `\\u{1b}`...) and cut to [`ForeignProtocol::MAX_SHOWN`] characters, so it is safe
/// to print on a terminal and in a log.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ForeignProtocol {
    /// An SSH identification string, e.g. `SSH-2.0-OpenSSH_9.2p1`: an SSH port.
    Ssh {
        /// The banner's first line.
        banner: String,
    },
    /// A TLS record (an HTTPS or other TLS port).
    Tls {
        /// `true` for an alert (content type 21), `false` for a handshake record (22).
        alert: bool,
    },
    /// An HTTP response, e.g. `HTTP/1.1 400 Bad Request`.
    Http {
        /// Its status line.
        status_line: String,
    },
    /// Other printable text (an SMTP or FTP greeting, an error message...).
    Text {
        /// Its first line.
        start: String,
    },
}

impl ForeignProtocol {
    /// The most characters of the peer's text kept (before escaping).
    pub const MAX_SHOWN: usize = 80;

    /// Recognises `bytes`, the first bytes received where a handshake frame should
    /// be; `None` when they could be a (wrong-size) frame after all.
    pub fn recognise(bytes: &[u8]) -> Option<Self> {
        match bytes {
            [0x16, 0x03, ..] => return Some(Self::Tls { alert: false }),
            [0x15, 0x03, ..] => return Some(Self::Tls { alert: true }),
            _ => {}
        }
        // Text: a length prefix of two printable ASCII characters would announce a
        // frame of 8224 bytes or more, which no handshake message is. Show the first
        // line, decoded as well as it can be.
        if bytes.len() < 2 || !bytes[..2].iter().all(|byte| (0x20..0x7f).contains(byte)) {
            return None;
        }
        let line = bytes
            .split(|&byte| byte == b'\n')
            .next()
            .unwrap_or_default();
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let cut = &line[..line.len().min(Self::MAX_SHOWN * 4)];
        let text = String::from_utf8_lossy(cut);
        let shown = escape(&text);
        Some(if text.starts_with("SSH-") {
            Self::Ssh { banner: shown }
        } else if text.starts_with("HTTP/") {
            Self::Http { status_line: shown }
        } else {
            Self::Text { start: shown }
        })
    }
}

/// At most [`ForeignProtocol::MAX_SHOWN`] characters of `text`, control
/// characters escaped, `...` when cut.
fn escape(text: &str) -> String {
    let mut shown = String::new();
    for (index, character) in text.chars().enumerate() {
        if index == ForeignProtocol::MAX_SHOWN {
            shown.push_str("...");
            break;
        }
        if character.is_control() {
            shown.extend(character.escape_default());
        } else {
            shown.push(character);
        }
    }
    shown
}

impl fmt::Display for ForeignProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ssh { banner } => write!(f, "it sent '{banner}' (an SSH server's banner)"),
            Self::Tls { alert: true } => f.write_str("it answered with a TLS alert (a TLS port)"),
            Self::Tls { alert: false } => f.write_str("it sent a TLS record (a TLS port)"),
            Self::Http { status_line } => write!(f, "it sent '{status_line}' (an HTTP server)"),
            Self::Text { start } => write!(f, "it sent '{start}'"),
        }
    }
}

/// A policy refusal: the protocol ran correctly but one side does not accept the other.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// The client's check (known_hosts, a fingerprint, the user) refused the server's
    /// key. Nothing was sent after that: the server never learned who the client is.
    #[error("the server's host key {fingerprint} was rejected: {reason}")]
    HostKeyRejected {
        /// The rejected key's fingerprint (public information).
        fingerprint: Fingerprint,
        /// The checker's reason.
        reason: String,
    },
    /// The server refused the client's key: it sent an ERROR starting with
    /// `permission denied` (wire-v1 section 6). Carries the server's full reason.
    #[error("the server refused this client: {0}")]
    PermissionDenied(String),
    /// The server closed (or reset) the connection before sending handshake message
    /// 2. Servers do that to a connection they will not serve: at their connection
    /// or handshake cap, or to an address that failed too often. Which one, the
    /// client cannot know; trying again later is the answer to each.
    #[error("the server closed the connection before the handshake: it may be busy, or refusing this address after failed attempts; try again later")]
    ClosedBeforeHandshake,
    /// The server closed (or reset) the connection before answering a v2 offer:
    /// it may speak only protocol v1 (which closes on an offer), or refuse the
    /// connection as in [`Refusal::ClosedBeforeHandshake`].
    #[error("the server closed the connection before answering the protocol 2 offer: it may speak only protocol 1 (retry with: connect --protocol 1), or be busy or refusing this address after failed attempts (try again later)")]
    ClosedBeforeAnswer,
}

/// A mistake of noise-echo's own, or of code using this module; never the peer's.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Bug {
    /// The Noise library refused an operation that wire-v1's fixed sizes make valid.
    #[error("the Noise library failed while {during}: {cause}")]
    Noise {
        /// What noise-echo was doing.
        during: &'static str,
        /// The library's error (it never contains keys); in the message, so not a
        /// `source()`.
        cause: snow::Error,
    },
    /// Asked to frame 0 or more than 65535 bytes.
    #[error("cannot frame {0} bytes: a frame holds 1 to 65535")]
    FrameLength(usize),
    /// Asked to send a record body longer than a u32 length can say.
    #[error("cannot send a {0}-byte record body: the length field is 32 bits")]
    RecordLength(usize),
    /// Asked to send a record type this side may not send.
    #[error("the {role} may not send {record_type} records")]
    WrongDirection {
        /// The type the caller wanted to send.
        record_type: RecordType,
        /// This side.
        role: Role,
    },
    /// The cipher refused to seal a transport message (ring and aws-lc-rs only
    /// refuse inputs far larger than a frame).
    #[error("sealing a transport message failed")]
    Seal,
    /// 2^64 - 1 transport messages in one direction: the nonce would repeat.
    #[error("transport nonces exhausted")]
    NonceExhausted,
    /// A session half was used after an earlier call failed or was cancelled midway,
    /// which leaves its cipher or stream state unknown.
    #[error("the session was used after a fatal error or a cancelled call")]
    UsedAfterFailure,
    /// Asked to start a v2 handshake with an offer of a suite this implementation
    /// does not run.
    #[error("cannot run the offered suite {0:?}")]
    UnknownSuite(String),
    /// Asked to rekey a protocol v1 session, which has no REKEY record.
    #[error("cannot rekey a protocol v1 session: only protocol v2 has REKEY records")]
    RekeyInV1,
}

impl Bug {
    /// Wraps a Noise library error with what we were doing.
    pub(crate) fn noise(during: &'static str) -> impl FnOnce(snow::Error) -> WireError {
        move |cause| WireError::Internal(Bug::Noise { during, cause })
    }
}

/// Result alias for this module.
pub type Result<T, E = WireError> = std::result::Result<T, E>;

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn other_protocols_first_bytes_are_recognised_and_shown_escaped_and_bounded() {
        assert_eq!(
            ForeignProtocol::recognise(b"SSH-2.0-OpenSSH_9.2\r\nmore"),
            Some(ForeignProtocol::Ssh {
                banner: "SSH-2.0-OpenSSH_9.2".to_owned()
            })
        );
        assert_eq!(
            ForeignProtocol::recognise(b"HTTP/1.0 200 OK\r\n"),
            Some(ForeignProtocol::Http {
                status_line: "HTTP/1.0 200 OK".to_owned()
            })
        );
        assert_eq!(
            ForeignProtocol::recognise(&[0x15, 0x03, 0x01, 0, 2, 2, 40]),
            Some(ForeignProtocol::Tls { alert: true })
        );
        assert_eq!(
            ForeignProtocol::recognise(&[0x16, 0x03, 0x03, 0, 9]),
            Some(ForeignProtocol::Tls { alert: false })
        );
        assert_eq!(
            ForeignProtocol::recognise(b"OK \x1b]0;title\x07 \xff"),
            Some(ForeignProtocol::Text {
                start: "OK \\u{1b}]0;title\\u{7} \u{fffd}".to_owned()
            })
        );
        let long = "x".repeat(10_000);
        let Some(ForeignProtocol::Text { start }) = ForeignProtocol::recognise(long.as_bytes())
        else {
            panic!("text");
        };
        assert_eq!(
            start,
            format!("{}...", "x".repeat(ForeignProtocol::MAX_SHOWN))
        );
        // What could be a frame of the wrong size is left to the size check.
        for frame_like in [
            &[0x00, 0x60, 1, 2][..],
            &[0x01, 0x00][..],
            &[b'A'][..],
            &[][..],
        ] {
            assert_eq!(
                ForeignProtocol::recognise(frame_like),
                None,
                "{frame_like:?}"
            );
        }
    }

    /// Walks `error`'s chain of causes: no message may contain the next one's,
    /// which would print it twice in a `{:#}` chain.
    pub(crate) fn assert_each_cause_said_once(error: &(dyn std::error::Error + 'static)) {
        let mut current = error;
        // Bounded: chains here are a few levels deep.
        for _ in 0..16 {
            let Some(source) = current.source() else {
                return;
            };
            let (outer, inner) = (current.to_string(), source.to_string());
            assert!(
                !outer.contains(&inner),
                "{outer:?} repeats its source {inner:?}"
            );
            current = source;
        }
        panic!("a chain of more than 16 causes");
    }

    #[test]
    fn no_wire_error_repeats_its_cause() {
        let errors: Vec<WireError> = vec![
            io::Error::new(io::ErrorKind::ConnectionRefused, "refused").into(),
            Violation::Truncated(TruncatedAt::Frame).into(),
            Violation::NotNoiseEcho {
                sender: Role::Server,
                sent: ForeignProtocol::Tls { alert: true },
            }
            .into(),
            Refusal::PermissionDenied("permission denied: unknown key".to_owned()).into(),
            Refusal::ClosedBeforeHandshake.into(),
            Bug::noise("testing")(snow::Error::Decrypt),
            Bug::UsedAfterFailure.into(),
        ];
        for error in &errors {
            assert_each_cause_said_once(error);
            // And each message still says what caused it.
            assert!(error.to_string().len() > 20, "{error}");
        }
        assert!(
            errors[0].to_string().ends_with(": refused"),
            "{}",
            errors[0]
        );
    }
}
