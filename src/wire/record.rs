//! The record layer (wire-v1 section 5): inside each direction's decrypted byte
//! stream, records `type: u8 | len: u32 big-endian | body: len bytes`.
//!
//! Records ignore transport message boundaries: one may span several messages, and
//! one message may carry several records or parts of them. [`RecordDecoder`] is
//! therefore a streaming state machine fed arbitrary plaintext chunks. It hands out
//! a record's header before any of its body, and then borrowed slices of the body
//! as they arrive, never copying a body itself: the server can compare the announced
//! length with its limit before it buffers a byte of it.
//!
//! Protocol v2 adds the REKEY record (type 4, empty body, from either side), which
//! the session layer consumes itself; a v1 decoder refuses type 4 as unknown.

use std::fmt;

use crate::wire::error::{Bug, Result, TruncatedAt, Violation};

/// Length of a record header: the type byte and the u32 length.
pub const RECORD_HEADER_LEN: usize = 5;

/// The server's default limit on a REQUEST body: 1 MiB (wire-v1 section 6).
pub const DEFAULT_REQUEST_LIMIT: u32 = 1 << 20;

/// The longest body a record can announce: its length is a u32 (wire-v1 section 5).
/// No request limit can be larger.
pub const MAX_RECORD_LEN: u32 = u32::MAX;

/// How many times longer than its request a RESPONSE can be. Uppercasing maps each
/// character on its own (Unicode's full case mapping, with SpecialCasing.txt), and
/// no character's uppercase takes more than three times its UTF-8 bytes: the worst
/// are 2-byte Greek letters with two accents, such as U+0390 (ΐ) which becomes the
/// three 2-byte characters U+0399 U+0308 U+0301. A test checks every character.
/// SpecialCasing.txt's language-conditional rules (Turkish, Lithuanian) are not
/// applied by `str::to_uppercase`, and would stay within the bound anyway: the
/// Turkish `i` becomes the 2-byte `İ`.
pub const UPPERCASE_EXPANSION: u32 = 3;

/// The longest ERROR reason a client accepts: the server's reasons are one short
/// sentence, and an ERROR never echoes the request.
pub const MAX_ERROR_REASON_LEN: u32 = 64 * 1024;

/// The response limit for a request of the default limit's size: what a client
/// that does not track its requests' sizes must accept (wire-v1 section 7).
/// [`response_limit`] is the tighter limit for one request.
pub const MIN_RESPONSE_LIMIT: u32 = UPPERCASE_EXPANSION * DEFAULT_REQUEST_LIMIT;

/// The longest RESPONSE body a client accepts to a REQUEST of `request_len`
/// bytes: its uppercase is at most [`UPPERCASE_EXPANSION`] times longer. It follows
/// what was sent, so a server with a large request limit works with every client,
/// and a server cannot make a client buffer more than that.
pub fn response_limit(request_len: usize) -> u32 {
    let limit = (request_len as u64).saturating_mul(u64::from(UPPERCASE_EXPANSION));
    u32::try_from(limit).unwrap_or(MAX_RECORD_LEN)
}

/// The type byte of protocol v2's REKEY record: the sender replaced its key after
/// the transport message that ends with it (docs/PROTOCOL.md, "Protocol v2").
pub const REKEY_RECORD_TYPE: u8 = 4;

/// A whole REKEY record: its type and an empty body's length. A sender appends it
/// as the last bytes of a transport message's plaintext.
pub const REKEY_RECORD: [u8; RECORD_HEADER_LEN] = [REKEY_RECORD_TYPE, 0, 0, 0, 0];

/// Which end of a session: who sends a record decides which types are valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// The connecting side, the Noise initiator.
    Client,
    /// The accepting side, the Noise responder.
    Server,
}

impl Role {
    /// The other end.
    pub fn peer(self) -> Self {
        match self {
            Self::Client => Self::Server,
            Self::Server => Self::Client,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Client => "client",
            Self::Server => "server",
        })
    }
}

/// The record types of wire-v1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum RecordType {
    /// Client to server: bytes to uppercase.
    Request = 1,
    /// Server to client: the uppercase of one request's body.
    Response = 2,
    /// Server to client: a UTF-8 reason in place of a response.
    Error = 3,
}

impl RecordType {
    /// Parses a type byte sent by `sender`: only that side's types are valid.
    ///
    /// # Errors
    /// [`Violation::UnknownRecordType`] for any other byte, including a valid type
    /// sent in the wrong direction (wire-v1 section 7).
    pub fn from_byte(byte: u8, sender: Role) -> Result<Self, Violation> {
        match (byte, sender) {
            (1, Role::Client) => Ok(Self::Request),
            (2, Role::Server) => Ok(Self::Response),
            (3, Role::Server) => Ok(Self::Error),
            _ => Err(Violation::UnknownRecordType {
                record_type: byte,
                sender,
            }),
        }
    }

    /// The side that may send records of this type.
    pub fn sender(self) -> Role {
        match self {
            Self::Request => Role::Client,
            Self::Response | Self::Error => Role::Server,
        }
    }
}

impl fmt::Display for RecordType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Request => "REQUEST",
            Self::Response => "RESPONSE",
            Self::Error => "ERROR",
        })
    }
}

/// A decoded record header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHeader {
    /// The record's type, valid for its sender.
    pub record_type: RecordType,
    /// The body length announced.
    pub len: u32,
}

impl RecordHeader {
    /// The header's 5 bytes.
    #[inline]
    pub fn to_bytes(self) -> [u8; RECORD_HEADER_LEN] {
        let mut bytes = [0; RECORD_HEADER_LEN];
        bytes[0] = self.record_type as u8;
        bytes[1..].copy_from_slice(&self.len.to_be_bytes());
        bytes
    }
}

/// Appends one whole record to a plaintext buffer.
///
/// # Errors
/// [`Bug::RecordLength`] when the body is longer than `u32::MAX` bytes.
pub fn encode_record(record_type: RecordType, body: &[u8], out: &mut Vec<u8>) -> Result<()> {
    let len = u32::try_from(body.len()).map_err(|_| Bug::RecordLength(body.len()))?;
    out.reserve(RECORD_HEADER_LEN + body.len());
    out.extend_from_slice(&RecordHeader { record_type, len }.to_bytes());
    out.extend_from_slice(body);
    Ok(())
}

/// What the decoder found in the input it was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordEvent<'a> {
    /// The input is used up in the middle of a header, or between records: feed more.
    NeedMore,
    /// A whole header. Its body (possibly empty) follows as [`RecordEvent::Body`].
    Header(RecordHeader),
    /// The next part of the current body (never empty); `last` when it completes it.
    Body {
        /// Body bytes, borrowed from the input.
        chunk: &'a [u8],
        /// Whether this chunk ends the body.
        last: bool,
    },
    /// A whole REKEY record (only from a [`RecordDecoder::v2`]): the sender's key
    /// changes after the transport message that carries it, which must end here.
    Rekey,
}

/// Where the decoder is in the record stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Collecting a header; `filled` of its bytes are in `header`. A `u8`: the
    /// decoder lives in every idle session, where a `usize` would cost 8 bytes.
    Header {
        header: [u8; RECORD_HEADER_LEN],
        filled: u8,
    },
    /// Passing a body through; `remaining` bytes of it are still to come.
    Body {
        header: RecordHeader,
        remaining: u32,
    },
}

const AT_BOUNDARY: State = State::Header {
    header: [0; RECORD_HEADER_LEN],
    filled: 0,
};

/// A streaming record decoder for one direction of a session.
///
/// Call [`RecordDecoder::decode`] with the unread plaintext; it returns an event and
/// how many input bytes it used. It keeps at most a partial 5-byte header; bodies
/// are handed back as slices of the input.
#[derive(Debug, Clone)]
pub struct RecordDecoder {
    /// Who sends the records being decoded.
    sender: Role,
    /// Whether REKEY records are valid (protocol v2); in v1 type 4 is unknown.
    rekey: bool,
    /// Where in the record stream the input has brought us.
    state: State,
}

impl RecordDecoder {
    /// A protocol v1 decoder for records sent by `sender`, at a record boundary.
    pub fn new(sender: Role) -> Self {
        Self {
            sender,
            rekey: false,
            state: AT_BOUNDARY,
        }
    }

    /// A protocol v2 decoder: as [`RecordDecoder::new`], and REKEY records are
    /// reported as [`RecordEvent::Rekey`].
    pub fn v2(sender: Role) -> Self {
        Self {
            rekey: true,
            ..Self::new(sender)
        }
    }

    /// Checks a type byte: `Some` for a record type the sender may send, `None`
    /// for REKEY where it is valid.
    #[inline]
    fn record_type(&self, byte: u8) -> Result<Option<RecordType>, Violation> {
        if self.rekey && byte == REKEY_RECORD_TYPE {
            return Ok(None);
        }
        RecordType::from_byte(byte, self.sender).map(Some)
    }

    /// Decodes the next event from `input`, returning it and how many bytes of
    /// `input` it used. `NeedMore` always uses all of `input`.
    ///
    /// # Errors
    /// [`Violation::UnknownRecordType`] as soon as the type byte arrives;
    /// [`Violation::RekeyWithBody`] for a REKEY header announcing a body. The decoder
    /// must not be used after an error.
    pub fn decode<'a>(&mut self, input: &'a [u8]) -> Result<(RecordEvent<'a>, usize), Violation> {
        match &mut self.state {
            State::Header { header, filled } => {
                let at = usize::from(*filled);
                let (bytes, take) = if at == 0 && input.len() >= RECORD_HEADER_LEN {
                    // The common case, every pipelined record: a whole header in the
                    // input, read from there without staging it byte by byte.
                    let mut bytes = [0; RECORD_HEADER_LEN];
                    bytes.copy_from_slice(&input[..RECORD_HEADER_LEN]);
                    (bytes, RECORD_HEADER_LEN)
                } else {
                    let take = (RECORD_HEADER_LEN - at).min(input.len());
                    header[at..at + take].copy_from_slice(&input[..take]);
                    // At most RECORD_HEADER_LEN: fits.
                    *filled = (at + take) as u8;
                    if at + take < RECORD_HEADER_LEN {
                        // Check the type byte as soon as it arrives, so a stream of
                        // garbage is refused before we wait for the rest of its header.
                        let first = (at == 0 && take > 0).then_some(header[0]);
                        if let Some(type_byte) = first {
                            self.record_type(type_byte)?;
                        }
                        return Ok((RecordEvent::NeedMore, take));
                    }
                    (*header, take)
                };
                let [type_byte, len @ ..] = bytes;
                let len = u32::from_be_bytes(len);
                let Some(record_type) = self.record_type(type_byte)? else {
                    if len != 0 {
                        return Err(Violation::RekeyWithBody { len });
                    }
                    self.state = AT_BOUNDARY;
                    return Ok((RecordEvent::Rekey, take));
                };
                let header = RecordHeader { record_type, len };
                self.state = if header.len == 0 {
                    AT_BOUNDARY
                } else {
                    State::Body {
                        header,
                        remaining: header.len,
                    }
                };
                Ok((RecordEvent::Header(header), take))
            }
            State::Body { remaining, .. } => {
                if input.is_empty() {
                    return Ok((RecordEvent::NeedMore, 0));
                }
                // `remaining` fits in usize on every platform tokio supports.
                let take = usize::try_from(*remaining).map_or(input.len(), |r| r.min(input.len()));
                // `take <= remaining`, so this cannot underflow or truncate.
                *remaining -= take as u32;
                let last = *remaining == 0;
                if last {
                    self.state = AT_BOUNDARY;
                }
                Ok((
                    RecordEvent::Body {
                        chunk: &input[..take],
                        last,
                    },
                    take,
                ))
            }
        }
    }

    /// Who sends the records this decoder reads.
    pub fn sender(&self) -> Role {
        self.sender
    }

    /// Whether the stream may end here: between two records.
    #[inline]
    pub fn at_record_boundary(&self) -> bool {
        // A header with none of its bytes is always `AT_BOUNDARY` (its bytes are
        // written only with `filled`); matching the count alone is a fraction of
        // the derived comparison of both variants' fields, once per pipelined record.
        matches!(self.state, State::Header { filled: 0, .. })
    }

    /// Where an end of stream now would be a truncation, if it would be.
    pub fn truncated_at(&self) -> Option<TruncatedAt> {
        match self.state {
            State::Header { filled: 0, .. } => None,
            State::Header { .. } => Some(TruncatedAt::RecordHeader),
            State::Body { .. } => Some(TruncatedAt::RecordBody),
        }
    }

    /// The record that starts `input`, if the decoder is at a record boundary and
    /// `input` holds all of it: its header and its whole length, header included.
    /// Nothing changes here: a caller that takes the record skips that many bytes,
    /// and the decoder, which would be back at a boundary after decoding it, is
    /// already there. `None` inside a record, for a record cut short, and for
    /// REKEY, whose key change [`decode`](Self::decode) reports.
    ///
    /// # Errors
    /// [`Violation::UnknownRecordType`], as [`decode`](Self::decode) (the decoder
    /// must not be used after it).
    #[inline]
    pub fn whole_record(&self, input: &[u8]) -> Result<Option<(RecordHeader, usize)>, Violation> {
        if !self.at_record_boundary() {
            return Ok(None);
        }
        let Some(&[type_byte, a, b, c, d]) = input.first_chunk::<RECORD_HEADER_LEN>() else {
            return Ok(None);
        };
        let Some(record_type) = self.record_type(type_byte)? else {
            return Ok(None);
        };
        let len = u32::from_be_bytes([a, b, c, d]);
        let whole = usize::try_from(len)
            .ok()
            .and_then(|len| len.checked_add(RECORD_HEADER_LEN))
            .filter(|&whole| whole <= input.len());
        Ok(whole.map(|whole| (RecordHeader { record_type, len }, whole)))
    }

    /// The header of the record whose body is being decoded, and how many of its
    /// bytes are still to come; `None` between bodies.
    pub fn body_in_progress(&self) -> Option<(RecordHeader, u32)> {
        match self.state {
            State::Body { header, remaining } => Some((header, remaining)),
            State::Header { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bound behind [`response_limit`]: no character's uppercase is more than
    /// three times as long in UTF-8, and some reach exactly three times.
    #[test]
    fn no_characters_uppercase_is_over_three_times_longer() {
        let mut worst = (0.0f64, 'a');
        for character in (0..=u32::from(char::MAX)).filter_map(char::from_u32) {
            let upper: usize = character.to_uppercase().map(char::len_utf8).sum();
            let ratio = upper as f64 / character.len_utf8() as f64;
            assert!(
                upper <= UPPERCASE_EXPANSION as usize * character.len_utf8(),
                "U+{:04X} uppercases to {upper} bytes",
                u32::from(character)
            );
            if ratio > worst.0 {
                worst = (ratio, character);
            }
        }
        assert_eq!(worst, (3.0, '\u{390}'));
        // And a whole string is the concatenation of its characters' uppercase.
        let text = "\u{390}\u{3b0}ﬃ";
        assert_eq!(text.to_uppercase().len(), 3 * 2 + 3 * 2 + 3);
    }

    #[test]
    fn response_limits_follow_the_request_and_saturate() {
        assert_eq!(response_limit(0), 0);
        assert_eq!(response_limit(8 << 20), 24 << 20);
        assert_eq!(
            response_limit(DEFAULT_REQUEST_LIMIT as usize),
            MIN_RESPONSE_LIMIT
        );
        assert_eq!(response_limit(usize::MAX), MAX_RECORD_LEN);
        assert_eq!(response_limit(2_000_000_000), MAX_RECORD_LEN);
    }
    use proptest::prelude::*;

    type Records = Vec<(RecordType, Vec<u8>)>;

    /// Decodes `input` fed in `chunk`-byte pieces into (type, body) pairs.
    fn decode_all(
        sender: Role,
        input: &[u8],
        chunk: usize,
    ) -> Result<(Records, RecordDecoder), Violation> {
        let mut decoder = RecordDecoder::new(sender);
        let mut records: Records = Vec::new();
        for mut piece in input.chunks(chunk.max(1)) {
            loop {
                let (event, used) = decoder.decode(piece)?;
                piece = &piece[used..];
                match event {
                    RecordEvent::NeedMore => break,
                    RecordEvent::Header(header) => records.push((header.record_type, Vec::new())),
                    RecordEvent::Body { chunk, .. } => {
                        records.last_mut().unwrap().1.extend_from_slice(chunk)
                    }
                    RecordEvent::Rekey => panic!("a v1 decoder reported REKEY"),
                }
            }
        }
        Ok((records, decoder))
    }

    #[test]
    fn header_is_reported_before_any_body_byte_arrives() {
        let mut decoder = RecordDecoder::new(Role::Client);
        let (event, used) = decoder.decode(&[1, 0, 0x10, 0, 1]).unwrap();
        assert_eq!(used, 5);
        assert_eq!(
            event,
            RecordEvent::Header(RecordHeader {
                record_type: RecordType::Request,
                len: (1 << 20) + 1
            })
        );
        assert_eq!(
            decoder.truncated_at(),
            Some(TruncatedAt::RecordBody),
            "the body is still owed"
        );
    }

    #[test]
    fn empty_body_returns_to_a_boundary() {
        let mut out = Vec::new();
        encode_record(RecordType::Request, b"", &mut out).unwrap();
        assert_eq!(out, [1, 0, 0, 0, 0]);
        let (records, decoder) = decode_all(Role::Client, &out, 100).unwrap();
        assert_eq!(records, [(RecordType::Request, vec![])]);
        assert!(decoder.at_record_boundary());
    }

    #[test]
    fn wrong_direction_and_unknown_types_are_refused_at_the_first_byte() {
        for (sender, byte) in [
            (Role::Client, 2),
            (Role::Client, 3),
            (Role::Server, 1),
            (Role::Client, 0),
            (Role::Server, 4),
            (Role::Server, 0xff),
        ] {
            let mut decoder = RecordDecoder::new(sender);
            assert_eq!(
                decoder.decode(&[byte]),
                Err(Violation::UnknownRecordType {
                    record_type: byte,
                    sender
                })
            );
        }
    }

    /// A v2 decoder reports REKEY from either side, between records and however
    /// the header is cut; a REKEY with a body is refused; v1 refuses type 4.
    #[test]
    fn v2_decoder_reports_rekey_records() {
        let mut stream = Vec::new();
        encode_record(RecordType::Response, b"ab", &mut stream).unwrap();
        stream.extend_from_slice(&REKEY_RECORD);
        encode_record(RecordType::Error, b"c", &mut stream).unwrap();
        for chunk in 1..=stream.len() {
            let mut decoder = RecordDecoder::v2(Role::Server);
            let mut events = Vec::new();
            for mut piece in stream.chunks(chunk) {
                while !piece.is_empty() {
                    let (event, used) = decoder.decode(piece).unwrap();
                    piece = &piece[used..];
                    match event {
                        RecordEvent::Header(header) => {
                            events.push(format!("{}", header.record_type))
                        }
                        RecordEvent::Rekey => events.push("REKEY".to_owned()),
                        RecordEvent::NeedMore | RecordEvent::Body { .. } => {}
                    }
                }
            }
            assert_eq!(events, ["RESPONSE", "REKEY", "ERROR"], "chunk {chunk}");
            assert!(decoder.at_record_boundary());
        }
        for sender in [Role::Client, Role::Server] {
            assert_eq!(
                RecordDecoder::v2(sender).decode(&REKEY_RECORD),
                Ok((RecordEvent::Rekey, RECORD_HEADER_LEN))
            );
            assert_eq!(
                RecordDecoder::v2(sender).decode(&[4, 0, 0, 1, 0]),
                Err(Violation::RekeyWithBody { len: 256 })
            );
            assert_eq!(
                RecordDecoder::new(sender).decode(&REKEY_RECORD),
                Err(Violation::UnknownRecordType {
                    record_type: 4,
                    sender
                })
            );
        }
    }

    #[test]
    fn truncation_points_are_named() {
        let mut decoder = RecordDecoder::new(Role::Server);
        assert_eq!(decoder.truncated_at(), None);
        decoder.decode(&[2, 0]).unwrap();
        assert_eq!(decoder.truncated_at(), Some(TruncatedAt::RecordHeader));
        // The header needs 3 more bytes: the 'a' is left for the next call.
        let (_, used) = decoder.decode(&[0, 0, 3, b'a']).unwrap();
        assert_eq!(used, 3);
        decoder.decode(b"a").unwrap();
        assert_eq!(decoder.truncated_at(), Some(TruncatedAt::RecordBody));
        assert_eq!(decoder.body_in_progress().unwrap().1, 2);
        let (event, used) = decoder.decode(b"bcd").unwrap();
        assert_eq!(used, 2);
        assert_eq!(
            event,
            RecordEvent::Body {
                chunk: b"bc",
                last: true
            }
        );
        assert!(decoder.at_record_boundary());
    }

    fn record_strategy() -> impl Strategy<Value = (RecordType, Vec<u8>)> {
        (
            prop_oneof![Just(RecordType::Response), Just(RecordType::Error)],
            prop::collection::vec(any::<u8>(), 0..300),
        )
    }

    proptest! {
        #[test]
        fn records_round_trip_whatever_the_chunking(
            records in prop::collection::vec(record_strategy(), 0..10),
            chunk in 1usize..64,
        ) {
            let mut stream = Vec::new();
            for (record_type, body) in &records {
                encode_record(*record_type, body, &mut stream).unwrap();
            }
            let (decoded, decoder) = decode_all(Role::Server, &stream, chunk).unwrap();
            prop_assert_eq!(decoded, records);
            prop_assert!(decoder.at_record_boundary());
        }

        #[test]
        fn arbitrary_bytes_never_panic(
            bytes in prop::collection::vec(any::<u8>(), 0..400),
            chunk in 1usize..32,
            client in any::<bool>(),
        ) {
            let sender = if client { Role::Client } else { Role::Server };
            let mut decoder = RecordDecoder::new(sender);
            for mut piece in bytes.chunks(chunk) {
                // Every call uses at least one byte or reports NeedMore: bounded loop.
                for _ in 0..=piece.len() {
                    match decoder.decode(piece) {
                        Ok((RecordEvent::NeedMore, used)) => { prop_assert_eq!(used, piece.len()); break; }
                        Ok((_, used)) => { prop_assert!(used <= piece.len()); piece = &piece[used..]; }
                        Err(Violation::UnknownRecordType { sender: s, .. }) => { prop_assert_eq!(s, sender); return Ok(()); }
                        Err(other) => prop_assert!(false, "unexpected {other:?}"),
                    }
                }
            }
        }
    }
}
