//! The noise-echo wire protocol, versions 1 and 2 (see `docs/PROTOCOL.md`): framing,
//! v2's negotiation, the Noise XX handshake, and the encrypted record stream. Only
//! the protocol: accepting connections, trust files and terminals belong to the
//! callers.
//!
//! Layers, bottom up (each item has this one path, `wire::Item`):
//! - framing ([`decode_frame`], [`read_frame`]): `u16` big-endian length + 1..=65535
//!   bytes, for every Noise message;
//! - the handshake ([`Initiator`], [`Responder`] and their `Expect*` states):
//!   `Noise_XX_25519_ChaChaPoly_BLAKE2s` with prologue `noise-echo/1`, each side's
//!   Ed25519 key as payload, checked against its Noise static key: a sans-I/O core of
//!   typestates over byte slices;
//! - v2's negotiation ([`Offer`], [`Answer`], [`FirstFrame`]) and handshake
//!   payloads ([`encode_message2`], [`decode_message2`]...);
//! - the async drivers running that core over a stream ([`initiate`], [`respond`]
//!   for v1; [`initiate_v2`], and [`respond_any`] for a server of either version);
//! - the session ([`RecvHalf`], [`SendHalf`]): transport messages carrying the record
//!   stream, in two halves;
//! - records ([`RecordDecoder`], [`encode_record`]): `type | u32 len | body`, decoded
//!   without buffering bodies;
//! - [`WireError`]: one error type, grouped by who is at fault.
//!
//! A server connection:
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use noise_echo::wire::*;
//! # async fn serve(stream: tokio::net::TcpStream, local: Arc<LocalIdentity>,
//! #     authorized: impl Fn(&noise_echo::identity::PublicKey) -> bool) -> Result<()> {
//! let mut stream = stream;
//! let established = respond(&mut stream, &local).await?;
//! let allowed = authorized(established.peer());
//! let (reader, writer) = stream.into_split();
//! let (mut rx, mut tx) = established.into_halves(reader, writer);
//! if !allowed {
//!     tx.write_record(RecordType::Error, b"permission denied: unknown key").await?;
//!     return tx.shutdown().await;
//! }
//! let mut body = Vec::new();
//! while let Some(header) = rx.next_record().await? {
//!     if header.len > DEFAULT_REQUEST_LIMIT {
//!         tx.write_record(RecordType::Error, b"request too large").await?;
//!         break;
//!     }
//!     rx.read_body(&mut body, DEFAULT_REQUEST_LIMIT).await?;
//!     match std::str::from_utf8(&body) {
//!         Ok(text) => tx.write_record(RecordType::Response, text.to_uppercase().as_bytes()).await?,
//!         Err(_) => tx.write_record(RecordType::Error, b"not UTF-8").await?,
//!     }
//!     // Answer as soon as nothing more is already here, never waiting for EOF.
//!     if !rx.has_buffered_input() {
//!         tx.flush().await?;
//!     }
//! }
//! // Shut down our side first. Closing a socket with unread input makes TCP send a
//! // reset that can destroy an ERROR still in flight, so a server that stops reading
//! // early should keep draining (with a time limit) until the client closes.
//! tx.shutdown().await
//! # }
//! ```

#[cfg(not(feature = "internals"))]
mod cipher;
#[cfg(feature = "internals")]
#[doc(hidden)]
pub mod cipher;
mod dh;
mod drive;
mod drive_v2;
mod error;
mod established;
#[cfg(test)]
pub(crate) use error::tests as error_tests;
mod frame;
mod handshake;
mod negotiation;
mod payload;
mod record;
mod rekey;
mod resolver;
mod session;
/// Test helpers of the session halves, for the server's tests.
#[cfg(test)]
pub(crate) use session::rekey_tests as session_tests;
mod suite;

#[doc(hidden)]
pub use dh::X25519;
pub use drive::{initiate, initiate_checked, respond, AwaitingServerApproval};
#[doc(hidden)]
pub use drive::{
    initiate_with_fixed_ephemeral_for_testing_only, respond_with_fixed_ephemeral_for_testing_only,
};
pub use drive_v2::{initiate_v2, respond_any, ResponderSettings};
#[doc(hidden)]
pub use drive_v2::{
    initiate_v2_with_fixed_ephemeral_for_testing_only,
    respond_any_with_fixed_ephemeral_for_testing_only,
};
pub use error::{
    Bug, ForeignProtocol, Mismatch, PayloadProblem, Refusal, Result, TruncatedAt, Violation,
    WireError,
};
pub use frame::{
    decode_frame, encode_frame, frame_len_prefix, frame_payload_len, read_frame, write_frame,
    Decoded, FRAME_HEADER_LEN, MAX_FRAME_LEN,
};
pub use handshake::{
    Established, ExpectApproval, ExpectMessage1, ExpectMessage2, ExpectMessage3, Initiator,
    LocalIdentity, Responder, HANDSHAKE_HASH_LEN, MSG1_LEN, MSG2_LEN, MSG2_V2_MAX, MSG2_V2_MIN,
    MSG3_LEN, MSG3_V2_MAX, MSG3_V2_MIN, NOISE_PROTOCOL, PROLOGUE,
};
pub use negotiation::{
    Answer, AnswerProblem, FirstFrame, Offer, OfferProblem, ProtocolVersion, UnknownVersion, MAGIC,
    MAX_ANSWER_LEN, MAX_NAME_LEN, MAX_OFFER_LEN,
};
pub use payload::{
    certificate_for, decode_message2, decode_message3, decode_message3_fields, encode_message2,
    encode_message2_with_certificate, encode_message3, encode_message3_with_certificate,
    wire_rekey_policy, CertificateProblem, Message2Payload, Message3Payload, ServerParams,
    CRITICAL, FIELD_IDENTITY_ED25519, FIELD_MAX_REQUEST, FIELD_OPENSSH_CERTIFICATE,
    FIELD_REKEY_POLICY, MAX_CERTIFICATE_FIELD, MAX_V2_PAYLOAD, MIN_MESSAGE2_PAYLOAD,
    MIN_MESSAGE3_PAYLOAD,
};
pub use record::{
    encode_record, response_limit, RecordDecoder, RecordEvent, RecordHeader, RecordType, Role,
    DEFAULT_REQUEST_LIMIT, MAX_ERROR_REASON_LEN, MAX_RECORD_LEN, MIN_RESPONSE_LIMIT,
    RECORD_HEADER_LEN, REKEY_RECORD, REKEY_RECORD_TYPE, UPPERCASE_EXPANSION,
};
pub use rekey::RekeyPolicy;
pub use session::{
    reply_limit, BufferedBody, BufferedRecord, NextRecord, RecvHalf, Reply, SendHalf, FREE_INPUT,
    MAX_PLAINTEXT_LEN, PERMISSION_DENIED_PREFIX, TAG_LEN,
};
pub use suite::{Suite, UnknownSuite};
