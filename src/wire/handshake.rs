//! The sans-I/O core of the Noise XX handshake (docs/PROTOCOL.md, v1 sections 2 to
//! 4 and v2's handshake): typestates
//! over byte slices, with no sockets, no async and no framing. Each transition
//! consumes its state and returns the next one together with the message to send,
//! or takes the message received (a frame's payload, without its length prefix).
//!
//! ```text
//! client (initiator)                               server (responder)
//! Initiator::start       -> e           32 bytes   ExpectMessage1::read
//! ExpectMessage2::read   <- e, ee, s, es 128 bytes (payload: server's Ed25519 key)
//! [ExpectApproval: the client checks the server's key: known_hosts, fingerprint]
//! ExpectApproval::approve -> s, se      96 bytes   ExpectMessage3::read
//!                                                  [server checks authorized_keys]
//! ```
//!
//! [`ExpectApproval`] holds the server's validated key; only its
//! [`approve`](ExpectApproval::approve) produces message 3. Dropping it (or calling
//! [`reject`](ExpectApproval::reject)) produces nothing, so a server the client does
//! not trust never learns the client's identity.
//!
//! The same states run both versions. v1: prologue `noise-echo/1`, ChaChaPoly, and
//! each payload exactly the 32-byte Ed25519 key. v2 ([`Initiator::start_v2`],
//! [`Responder::new_v2`]): the offer's bytes as prologue, the offered suite, and
//! payloads of fields ([`payload`](crate::wire::payload)) carrying the key and, in
//! message 2, the server's parameters. A v2 side whose [`LocalIdentity`] has a
//! certificate ([`LocalIdentity::with_certificate`]) sends it too; a received one is
//! checked to be an Ed25519 certificate of the key the handshake proved
//! ([`payload::certificate_for`]) and exposed for the caller's policy
//! ([`ExpectApproval::server_certificate`], [`Established::peer_certificate`]).
//!
//! Every received message's size is checked against its version's bounds before it
//! is processed, and every key must be an Ed25519 key whose Montgomery form is the
//! static key the peer proved it holds (decoded once per handshake). Any failure
//! consumes the state: nothing more can be sent.
//!
//! The async driver over a stream (framing, early input) is
//! [`drive`](crate::wire::drive).

use std::fmt;
use std::sync::Arc;

use snow::params::NoiseParams;
use snow::HandshakeState;

pub use crate::wire::established::Established;

use crate::identity::{Identity, NoiseKeypair, PublicKey, PublicKeyError};
use crate::openssh::certificate::{Certificate, CertificateError};
use crate::wire::dh::{StaticKey, X25519};
use crate::wire::error::{Bug, PayloadProblem, Refusal, Result, Violation, WireError};
use crate::wire::negotiation::{Offer, ProtocolVersion};
use crate::wire::payload::{self, ServerParams, MAX_CERTIFICATE_FIELD, MAX_V2_PAYLOAD};
use crate::wire::record::Role;
use crate::wire::suite::Suite;

/// The Noise protocol name.
pub const NOISE_PROTOCOL: &str = "Noise_XX_25519_ChaChaPoly_BLAKE2s";

/// The Noise prologue: both sides hash it in, so a peer speaking another protocol
/// or version fails at the first encrypted handshake message.
pub const PROLOGUE: &[u8; 12] = b"noise-echo/1";

/// Size of handshake message 1 (`-> e`): an ephemeral key, empty payload.
pub const MSG1_LEN: usize = 32;
/// Size of handshake message 2 (`<- e, ee, s, es`): ephemeral, encrypted static and
/// tag, encrypted 32-byte payload and tag.
pub const MSG2_LEN: usize = 32 + 32 + 16 + 32 + 16;
/// Size of handshake message 3 (`-> s, se`): encrypted static and tag, encrypted
/// 32-byte payload and tag.
pub const MSG3_LEN: usize = 32 + 16 + 32 + 16;

/// Length of the handshake hash (BLAKE2s and SHA-256 alike).
pub const HANDSHAKE_HASH_LEN: usize = 32;

/// What Noise adds to message 2 around its payload: the ephemeral key, the
/// encrypted static key and its tag, and the payload's tag.
const MSG2_OVERHEAD: usize = 32 + 32 + 16 + 16;
/// What Noise adds to message 3: the encrypted static key, its tag, the payload's.
const MSG3_OVERHEAD: usize = 32 + 16 + 16;

/// The smallest v2 message 2: its required fields.
pub const MSG2_V2_MIN: usize = MSG2_OVERHEAD + payload::MIN_MESSAGE2_PAYLOAD;
/// The largest v2 message 2: a payload of [`MAX_V2_PAYLOAD`] bytes.
pub const MSG2_V2_MAX: usize = MSG2_OVERHEAD + MAX_V2_PAYLOAD;
/// The smallest v2 message 3: the identity field.
pub const MSG3_V2_MIN: usize = MSG3_OVERHEAD + payload::MIN_MESSAGE3_PAYLOAD;
/// The largest v2 message 3.
pub const MSG3_V2_MAX: usize = MSG3_OVERHEAD + MAX_V2_PAYLOAD;

mod local_identity;
pub use local_identity::LocalIdentity;

fn noise_params(suite: Suite) -> NoiseParams {
    // Constants that are known to parse; the suite test pins them.
    suite
        .noise_name()
        .parse()
        .unwrap_or_else(|_| unreachable!("{suite} is a valid Noise protocol name"))
}

/// Which protocol a handshake runs, carried from state to state.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Mode {
    /// v1 or v2: the payload encoding and the message sizes.
    pub(crate) version: ProtocolVersion,
    /// The Noise protocol (v1: ChaChaPoly).
    pub(crate) suite: Suite,
    /// v2's server parameters: the server's own from the start, the client's once
    /// message 2 is read.
    pub(crate) params: Option<ServerParams>,
}

impl Mode {
    const V1: Mode = Mode {
        version: ProtocolVersion::V1,
        suite: Suite::ChaChaPolyBlake2s,
        params: None,
    };
}

/// The client before the handshake (wire-v1 section 2).
#[derive(Debug)]
pub struct Initiator;

impl Initiator {
    /// Starts the handshake as the client: returns the state awaiting message 2 and
    /// message 1 to send.
    ///
    /// # Errors
    /// [`WireError::Internal`] on a Noise library failure.
    pub fn start(local: &LocalIdentity) -> Result<(ExpectMessage2, [u8; MSG1_LEN])> {
        Self::start_with(local, None)
    }

    /// [`start`](Self::start) with a fixed ephemeral private key, to reproduce the
    /// golden test vectors. Never use it for a real connection: reusing an ephemeral
    /// key destroys forward secrecy and identity hiding.
    ///
    /// # Errors
    /// As [`start`](Self::start).
    #[doc(hidden)]
    pub fn start_with_fixed_ephemeral_for_testing_only(
        local: &LocalIdentity,
        ephemeral_private: &[u8; 32],
    ) -> Result<(ExpectMessage2, [u8; MSG1_LEN])> {
        Self::start_with(local, Some(ephemeral_private))
    }

    /// Starts a v2 handshake as the client: `offer` (sent as the frame before
    /// message 1) names the suite and is the prologue. Returns the state awaiting
    /// message 2 and message 1 to send.
    ///
    /// # Errors
    /// [`Bug::UnknownSuite`] when the offer names a suite this implementation does
    /// not run; [`WireError::Internal`] on a Noise library failure.
    pub fn start_v2(
        local: &LocalIdentity,
        offer: &Offer,
    ) -> Result<(ExpectMessage2, [u8; MSG1_LEN])> {
        Self::start_v2_with(local, offer, None)
    }

    /// [`start_v2`](Self::start_v2) with a fixed ephemeral private key, for the
    /// golden test vectors only.
    ///
    /// # Errors
    /// As [`start_v2`](Self::start_v2).
    #[doc(hidden)]
    pub fn start_v2_with_fixed_ephemeral_for_testing_only(
        local: &LocalIdentity,
        offer: &Offer,
        ephemeral_private: &[u8; 32],
    ) -> Result<(ExpectMessage2, [u8; MSG1_LEN])> {
        Self::start_v2_with(local, offer, Some(ephemeral_private))
    }

    fn start_v2_with(
        local: &LocalIdentity,
        offer: &Offer,
        ephemeral: Option<&[u8; 32]>,
    ) -> Result<(ExpectMessage2, [u8; MSG1_LEN])> {
        let suite = offer
            .suite()
            .ok_or_else(|| Bug::UnknownSuite(offer.name().to_owned()))?;
        let mode = Mode {
            version: ProtocolVersion::V2,
            suite,
            params: None,
        };
        Self::start_mode(local, mode, &offer.encode(), ephemeral)
    }

    fn start_with(
        local: &LocalIdentity,
        ephemeral: Option<&[u8; 32]>,
    ) -> Result<(ExpectMessage2, [u8; MSG1_LEN])> {
        Self::start_mode(local, Mode::V1, PROLOGUE, ephemeral)
    }

    fn start_mode(
        local: &LocalIdentity,
        mode: Mode,
        prologue: &[u8],
        ephemeral: Option<&[u8; 32]>,
    ) -> Result<(ExpectMessage2, [u8; MSG1_LEN])> {
        let mut state = local
            .builder(mode.suite, prologue, ephemeral)?
            .build_initiator()
            .map_err(Bug::noise("starting the handshake"))?;
        // -> e
        // snow wants room for a payload and tag beyond the ephemeral key.
        let mut buffer = [0u8; MSG2_LEN];
        let len = state
            .write_message(&[], &mut buffer)
            .map_err(Bug::noise("writing handshake message 1"))?;
        debug_assert_eq!(len, MSG1_LEN);
        let mut message = [0u8; MSG1_LEN];
        message.copy_from_slice(&buffer[..MSG1_LEN]);
        let next = ExpectMessage2 {
            state: Box::new(state),
            client_key: local.public_key,
            client_certificate: local.certificate.clone(),
            mode,
        };
        Ok((next, message))
    }
}

/// The client after message 1, waiting for message 2.
pub struct ExpectMessage2 {
    state: Box<HandshakeState>,
    client_key: PublicKey,
    /// Sent in a v2 message 3.
    client_certificate: Option<Arc<[u8]>>,
    mode: Mode,
}

impl ExpectMessage2 {
    /// Processes message 2 (a frame's payload) and validates the server's key (and,
    /// in v2, its parameters).
    ///
    /// # Errors
    /// [`WireError::PeerMisbehaved`]: [`Violation::HandshakeMessageSize`] (v1),
    /// [`Violation::HandshakeMessageOutOfRange`] (v2),
    /// [`Violation::HandshakeDecrypt`], [`Violation::BadHandshakePayload`];
    /// [`WireError::Internal`] on a Noise library failure.
    pub fn read(mut self, message: &[u8]) -> Result<ExpectApproval> {
        // <- e, ee, s, es
        let mut mode = self.mode;
        let mut server_certificate = None;
        let server_key = match mode.version {
            ProtocolVersion::V1 => {
                check_size(2, MSG2_LEN, message)?;
                let mut payload = [0u8; MSG2_LEN];
                let len = read_noise_message(&mut self.state, 2, message, &mut payload)?;
                validate_payload(2, &payload[..len], self.state.get_remote_static())?
            }
            ProtocolVersion::V2 => {
                check_range(2, MSG2_V2_MIN, MSG2_V2_MAX, message)?;
                let mut payload = vec![0u8; message.len()];
                let len = read_noise_message(&mut self.state, 2, message, &mut payload)?;
                let fields = payload::decode_message2(&payload[..len]).map_err(|problem| {
                    Violation::BadHandshakePayload {
                        message: 2,
                        problem,
                    }
                })?;
                mode.params = Some(fields.params);
                let key = validate_payload(2, &fields.identity, self.state.get_remote_static())?;
                server_certificate = peer_certificate(2, fields.certificate, &key)?;
                key
            }
        };
        Ok(ExpectApproval {
            state: self.state,
            server_key,
            server_certificate,
            client_key: self.client_key,
            client_certificate: self.client_certificate,
            mode,
        })
    }
}

impl fmt::Debug for ExpectMessage2 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExpectMessage2").finish_non_exhaustive()
    }
}

/// The client with message 2 read and the server's key validated, message 3 not yet
/// produced: check [`server_key`](Self::server_key), then
/// [`approve`](Self::approve) or [`reject`](Self::reject). Dropping it rejects too.
#[must_use = "dropping this aborts the handshake; call approve() or reject()"]
pub struct ExpectApproval {
    state: Box<HandshakeState>,
    server_key: PublicKey,
    /// The server's host certificate (v2), checked to certify `server_key`.
    server_certificate: Option<Box<Certificate>>,
    client_key: PublicKey,
    client_certificate: Option<Arc<[u8]>>,
    mode: Mode,
}

impl ExpectApproval {
    /// The server's Ed25519 key: a valid point, proven to be its Noise static key.
    pub fn server_key(&self) -> &PublicKey {
        &self.server_key
    }

    /// The parameters the server sent (v2; `None` in v1), authenticated by its key.
    pub fn server_params(&self) -> Option<&ServerParams> {
        self.mode.params.as_ref()
    }

    /// The host certificate the server sent (v2; never in v1): an Ed25519
    /// certificate of [`server_key`](Self::server_key) whose CA signature verifies.
    /// Whether its CA is trusted for the host, its type, principals and validity are
    /// the caller's checks (`KnownHosts::verify_host`).
    pub fn server_certificate(&self) -> Option<&Certificate> {
        self.server_certificate.as_deref()
    }

    /// The protocol version this handshake runs.
    pub fn version(&self) -> ProtocolVersion {
        self.mode.version
    }

    /// The suite this handshake runs.
    pub fn suite(&self) -> Suite {
        self.mode.suite
    }

    /// The server is trusted: returns message 3 (which reveals our identity) and the
    /// established client side.
    ///
    /// # Errors
    /// [`WireError::Internal`] on a Noise library failure.
    pub fn approve(mut self) -> Result<(Vec<u8>, Established)> {
        // -> s, se
        let message = match self.mode.version {
            ProtocolVersion::V1 => {
                write_noise_message(&mut self.state, 3, self.client_key.as_bytes(), MSG3_LEN)?
            }
            ProtocolVersion::V2 => {
                let payload = payload::encode_message3_with_certificate(
                    self.client_key.as_bytes(),
                    self.client_certificate.as_deref(),
                );
                write_noise_message(&mut self.state, 3, &payload, MSG3_OVERHEAD + payload.len())?
            }
        };
        let mut established =
            Established::finish(*self.state, self.server_key, Role::Client, self.mode)?;
        established.peer_certificate = self.server_certificate;
        Ok((message, established))
    }

    /// The server is not trusted: abandons the handshake, producing nothing to send,
    /// and returns the error to report ([`Refusal::HostKeyRejected`]).
    pub fn reject(self, reason: impl Into<String>) -> WireError {
        Refusal::HostKeyRejected {
            fingerprint: self.server_key.fingerprint(),
            reason: reason.into(),
        }
        .into()
    }
}

impl fmt::Debug for ExpectApproval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExpectApproval")
            .field("server_key", &self.server_key)
            .finish_non_exhaustive()
    }
}

/// The server before the handshake (wire-v1 section 2).
#[derive(Debug)]
pub struct Responder;

impl Responder {
    /// Prepares the server's side: the state awaiting message 1.
    ///
    /// # Errors
    /// [`WireError::Internal`] on a Noise library failure.
    #[allow(clippy::new_ret_no_self)]
    pub fn new(local: &LocalIdentity) -> Result<ExpectMessage1> {
        Self::new_with(local, None)
    }

    /// [`new`](Self::new) with a fixed ephemeral private key, to reproduce the golden
    /// test vectors. Never use it for a real connection.
    ///
    /// # Errors
    /// As [`new`](Self::new).
    #[doc(hidden)]
    pub fn with_fixed_ephemeral_for_testing_only(
        local: &LocalIdentity,
        ephemeral_private: &[u8; 32],
    ) -> Result<ExpectMessage1> {
        Self::new_with(local, Some(ephemeral_private))
    }

    /// Prepares the server's side of a v2 handshake after accepting `offer` (the
    /// prologue), with `params` to send in message 2.
    ///
    /// # Errors
    /// [`Bug::UnknownSuite`] when the offer names a suite this implementation does
    /// not run (accept only offers whose [`Offer::suite`] is some);
    /// [`WireError::Internal`] on a Noise library failure.
    pub fn new_v2(
        local: &LocalIdentity,
        offer: &Offer,
        params: ServerParams,
    ) -> Result<ExpectMessage1> {
        Self::new_v2_with(local, offer, params, None)
    }

    /// [`new_v2`](Self::new_v2) with a fixed ephemeral private key, for the golden
    /// test vectors only.
    ///
    /// # Errors
    /// As [`new_v2`](Self::new_v2).
    #[doc(hidden)]
    pub fn new_v2_with_fixed_ephemeral_for_testing_only(
        local: &LocalIdentity,
        offer: &Offer,
        params: ServerParams,
        ephemeral_private: &[u8; 32],
    ) -> Result<ExpectMessage1> {
        Self::new_v2_with(local, offer, params, Some(ephemeral_private))
    }

    pub(crate) fn new_v2_with(
        local: &LocalIdentity,
        offer: &Offer,
        params: ServerParams,
        ephemeral: Option<&[u8; 32]>,
    ) -> Result<ExpectMessage1> {
        let suite = offer
            .suite()
            .ok_or_else(|| Bug::UnknownSuite(offer.name().to_owned()))?;
        let mode = Mode {
            version: ProtocolVersion::V2,
            suite,
            params: Some(params),
        };
        Self::new_mode(local, mode, &offer.encode(), ephemeral)
    }

    pub(crate) fn new_with(
        local: &LocalIdentity,
        ephemeral: Option<&[u8; 32]>,
    ) -> Result<ExpectMessage1> {
        Self::new_mode(local, Mode::V1, PROLOGUE, ephemeral)
    }

    fn new_mode(
        local: &LocalIdentity,
        mode: Mode,
        prologue: &[u8],
        ephemeral: Option<&[u8; 32]>,
    ) -> Result<ExpectMessage1> {
        let state = local
            .builder(mode.suite, prologue, ephemeral)?
            .build_responder()
            .map_err(Bug::noise("starting the handshake"))?;
        Ok(ExpectMessage1 {
            state: Box::new(state),
            server_key: local.public_key,
            server_certificate: local.certificate.clone(),
            mode,
        })
    }
}

/// The server waiting for message 1.
pub struct ExpectMessage1 {
    /// Boxed, as in every state: snow's state is over 1 KiB, and with the states held
    /// by value the driver's `respond` future (several states live across its
    /// awaits) was 3.8 KiB instead of 0.45 KiB, for every handshake in progress.
    state: Box<HandshakeState>,
    server_key: PublicKey,
    /// Sent in a v2 message 2.
    server_certificate: Option<Arc<[u8]>>,
    mode: Mode,
}

impl ExpectMessage1 {
    /// Processes message 1 and returns the state awaiting message 3 and message 2 to
    /// send.
    ///
    /// # Errors
    /// [`WireError::PeerMisbehaved`] with [`Violation::HandshakeMessageSize`] (a
    /// message 1 with a payload, say); [`WireError::Internal`] on a Noise library
    /// failure.
    pub fn read(mut self, message: &[u8]) -> Result<(ExpectMessage3, Vec<u8>)> {
        // -> e
        check_size(1, MSG1_LEN, message)?;
        read_noise_message(&mut self.state, 1, message, &mut [0u8; MSG2_LEN])?;
        // <- e, ee, s, es
        let reply = match self.mode.params {
            None => write_noise_message(&mut self.state, 2, self.server_key.as_bytes(), MSG2_LEN)?,
            Some(params) => {
                let payload = payload::encode_message2_with_certificate(
                    self.server_key.as_bytes(),
                    &params,
                    self.server_certificate.as_deref(),
                );
                write_noise_message(&mut self.state, 2, &payload, MSG2_OVERHEAD + payload.len())?
            }
        };
        let next = ExpectMessage3 {
            state: self.state,
            mode: self.mode,
        };
        Ok((next, reply))
    }
}

impl fmt::Debug for ExpectMessage1 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExpectMessage1").finish_non_exhaustive()
    }
}

/// The server after message 2, waiting for message 3.
pub struct ExpectMessage3 {
    state: Box<HandshakeState>,
    mode: Mode,
}

impl ExpectMessage3 {
    /// Processes message 3 and validates the client's key: the handshake is done.
    /// Authorizing that key is the caller's job.
    ///
    /// # Errors
    /// [`WireError::PeerMisbehaved`]: [`Violation::HandshakeMessageSize`],
    /// [`Violation::HandshakeDecrypt`], [`Violation::BadHandshakePayload`];
    /// [`WireError::Internal`] on a Noise library failure.
    pub fn read(mut self, message: &[u8]) -> Result<Established> {
        // -> s, se
        let mut client_certificate = None;
        let client_key = match self.mode.version {
            ProtocolVersion::V1 => {
                check_size(3, MSG3_LEN, message)?;
                let mut payload = [0u8; MSG3_LEN];
                let len = read_noise_message(&mut self.state, 3, message, &mut payload)?;
                validate_payload(3, &payload[..len], self.state.get_remote_static())?
            }
            ProtocolVersion::V2 => {
                check_range(3, MSG3_V2_MIN, MSG3_V2_MAX, message)?;
                let mut payload = vec![0u8; message.len()];
                let len = read_noise_message(&mut self.state, 3, message, &mut payload)?;
                let fields =
                    payload::decode_message3_fields(&payload[..len]).map_err(|problem| {
                        Violation::BadHandshakePayload {
                            message: 3,
                            problem,
                        }
                    })?;
                let key = validate_payload(3, &fields.identity, self.state.get_remote_static())?;
                client_certificate = peer_certificate(3, fields.certificate, &key)?;
                key
            }
        };
        let mut established =
            Established::finish(*self.state, client_key, Role::Server, self.mode)?;
        established.peer_certificate = client_certificate;
        Ok(established)
    }
}

impl fmt::Debug for ExpectMessage3 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExpectMessage3").finish_non_exhaustive()
    }
}

/// Refuses a handshake message of any size but the table's (wire-v1 section 2).
pub(crate) fn check_size(message: u8, expected: usize, received: &[u8]) -> Result<(), Violation> {
    if received.len() == expected {
        Ok(())
    } else {
        Err(Violation::HandshakeMessageSize {
            message,
            expected,
            actual: received.len(),
        })
    }
}

/// Refuses a v2 handshake message outside `min..=max` bytes, before decrypting it.
pub(crate) fn check_range(
    message: u8,
    min: usize,
    max: usize,
    received: &[u8],
) -> Result<(), Violation> {
    if (min..=max).contains(&received.len()) {
        Ok(())
    } else {
        Err(Violation::HandshakeMessageOutOfRange {
            message,
            min,
            max,
            actual: received.len(),
        })
    }
}

/// Writes handshake message `message` with `payload`: exactly `len` bytes.
fn write_noise_message(
    state: &mut HandshakeState,
    message: u8,
    payload: &[u8],
    len: usize,
) -> Result<Vec<u8>> {
    let mut out = vec![0u8; len];
    let written = state
        .write_message(payload, &mut out)
        .map_err(Bug::noise(match message {
            2 => "writing handshake message 2",
            _ => "writing handshake message 3",
        }))?;
    debug_assert_eq!(written, len);
    out.truncate(written);
    Ok(out)
}

/// Processes a received handshake message: a failure to decrypt is the peer's fault,
/// anything else (the sizes were checked) is ours.
fn read_noise_message(
    state: &mut HandshakeState,
    message: u8,
    received: &[u8],
    payload: &mut [u8],
) -> Result<usize> {
    state
        .read_message(received, payload)
        .map_err(|error| match error {
            snow::Error::Decrypt => Violation::HandshakeDecrypt { message }.into(),
            source => Bug::Noise {
                during: "reading a handshake message",
                cause: source,
            }
            .into(),
        })
}

mod payload_checks;
use payload_checks::{peer_certificate, validate_payload};

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::wire::drive::{initiate, initiate_checked, respond};
    use crate::wire::error::TruncatedAt;
    use crate::wire::frame::{read_frame, write_frame};
    use curve25519_dalek::constants::EIGHT_TORSION;
    use tokio::io::{duplex, AsyncReadExt, DuplexStream};

    pub(crate) fn identity(byte: u8) -> Identity {
        Identity::from_seed(&[byte; 32], format!("test {byte}"))
    }

    /// Runs a full, honest handshake over a duplex pipe.
    pub(crate) async fn handshake_pair() -> (Established, DuplexStream, Established, DuplexStream) {
        let client_local = LocalIdentity::new(&identity(1));
        let server_local = LocalIdentity::new(&identity(2));
        let (mut client_io, mut server_io) = duplex(1 << 16);
        let (client, server) = tokio::join!(
            initiate_checked(&mut client_io, &client_local, |_| Ok::<(), String>(())),
            respond(&mut server_io, &server_local),
        );
        (client.unwrap(), client_io, server.unwrap(), server_io)
    }

    /// A hand-driven Noise peer: `static_seed`'s derived static key, any prologue,
    /// and whatever payload a test wants to send.
    fn raw_builder<'a>(
        params: NoiseParams,
        noise: &'a NoiseKeypair,
        prologue: &'a [u8],
    ) -> snow::Builder<'a> {
        snow::Builder::new(params)
            .local_private_key(noise.private())
            .unwrap()
            .prologue(prologue)
            .unwrap()
    }

    /// A fake server that answers message 1 with `payload` in message 2.
    async fn fake_server(
        stream: &mut DuplexStream,
        static_identity: Identity,
        prologue: &[u8],
        payload: &[u8],
    ) {
        let noise = static_identity.noise_keypair();
        let mut state = raw_builder(noise_params(Suite::ChaChaPolyBlake2s), &noise, prologue)
            .build_responder()
            .unwrap();
        let mut buf = Vec::new();
        read_frame(stream, &mut buf).await.unwrap().unwrap();
        state.read_message(&buf, &mut [0; 64]).unwrap();
        let mut message = [0u8; 1024];
        let len = state.write_message(payload, &mut message).unwrap();
        write_frame(stream, &message[..len]).await.unwrap();
    }

    /// A fake client that sends message 1 with `msg1_payload`, and, if message 2
    /// arrives, message 3 with `msg3_payload`.
    async fn fake_client(
        stream: &mut DuplexStream,
        static_identity: Identity,
        msg1_payload: &[u8],
        msg3_payload: &[u8],
    ) {
        let noise = static_identity.noise_keypair();
        let mut state = raw_builder(noise_params(Suite::ChaChaPolyBlake2s), &noise, PROLOGUE)
            .build_initiator()
            .unwrap();
        let mut message = [0u8; 1024];
        let len = state.write_message(msg1_payload, &mut message).unwrap();
        write_frame(stream, &message[..len]).await.unwrap();
        let mut buf = Vec::new();
        if read_frame(stream, &mut buf).await.unwrap().is_none() {
            return;
        }
        state.read_message(&buf, &mut [0; 64]).unwrap();
        let len = state.write_message(msg3_payload, &mut message).unwrap();
        write_frame(stream, &message[..len]).await.unwrap();
    }

    fn violation(result: Result<impl fmt::Debug>) -> Violation {
        match result {
            Err(WireError::PeerMisbehaved(violation)) => violation,
            other => panic!("expected a violation, got {other:?}"),
        }
    }

    #[test]
    fn protocol_name_parses_and_sizes_add_up() {
        let params = noise_params(Suite::ChaChaPolyBlake2s);
        assert_eq!(params.name, NOISE_PROTOCOL);
        assert_eq!((MSG1_LEN, MSG2_LEN, MSG3_LEN), (32, 128, 96));
    }

    #[tokio::test]
    async fn honest_handshake_authenticates_both_sides() {
        let (client, _, server, _) = handshake_pair().await;
        assert_eq!(client.peer(), &identity(2).public_key());
        assert_eq!(server.peer(), &identity(1).public_key());
        assert_eq!(client.handshake_hash(), server.handshake_hash());
        assert_eq!((client.role(), server.role()), (Role::Client, Role::Server));
    }

    #[tokio::test]
    async fn refused_server_never_receives_message_3() {
        let client_local = LocalIdentity::new(&identity(1));
        let server_local = LocalIdentity::new(&identity(2));
        let (mut client_io, mut server_io) = duplex(1 << 16);
        let client = async {
            let result = initiate_checked(&mut client_io, &client_local, |key: &PublicKey| {
                assert_eq!(key, &identity(2).public_key());
                Err("not in known_hosts")
            })
            .await;
            drop(client_io);
            result
        };
        let (client, server) = tokio::join!(client, respond(&mut server_io, &server_local));
        match client {
            Err(WireError::NotAllowed(Refusal::HostKeyRejected {
                reason,
                fingerprint,
            })) => {
                assert_eq!(reason, "not in known_hosts");
                assert_eq!(fingerprint, identity(2).public_key().fingerprint());
            }
            other => panic!("{other:?}"),
        }
        // The server saw a clean end of stream where message 3 should be: a
        // decline, told apart from a close before message 1.
        assert_eq!(
            violation(server),
            Violation::Truncated(TruncatedAt::AfterMessage2)
        );
    }

    #[tokio::test]
    async fn message_1_with_a_payload_is_refused_unprocessed() {
        let server_local = LocalIdentity::new(&identity(2));
        let (mut client_io, mut server_io) = duplex(1 << 16);
        let server = async {
            let result = respond(&mut server_io, &server_local).await;
            drop(server_io);
            result
        };
        let (_, server) = tokio::join!(fake_client(&mut client_io, identity(1), b"x", b""), server);
        assert_eq!(
            violation(server),
            Violation::HandshakeMessageSize {
                message: 1,
                expected: 32,
                actual: 33
            }
        );
        // And the server wrote nothing back.
        let mut rest = Vec::new();
        client_io.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty());
    }

    #[tokio::test]
    async fn server_whose_payload_is_another_key_is_refused() {
        let client_local = LocalIdentity::new(&identity(1));
        let (mut client_io, mut server_io) = duplex(1 << 16);
        let impostor_payload = identity(3).public_key();
        let (client, ()) = tokio::join!(
            initiate(&mut client_io, &client_local),
            fake_server(
                &mut server_io,
                identity(2),
                PROLOGUE,
                impostor_payload.as_bytes()
            ),
        );
        assert_eq!(
            violation(client),
            Violation::BadHandshakePayload {
                message: 2,
                problem: PayloadProblem::StaticKeyMismatch
            }
        );
    }

    #[tokio::test]
    async fn server_payload_that_is_a_small_order_point_is_refused() {
        let client_local = LocalIdentity::new(&identity(1));
        for point in EIGHT_TORSION {
            let (mut client_io, mut server_io) = duplex(1 << 16);
            let payload = point.compress().to_bytes();
            let (client, ()) = tokio::join!(
                initiate(&mut client_io, &client_local),
                fake_server(&mut server_io, identity(2), PROLOGUE, &payload),
            );
            assert_eq!(
                violation(client),
                Violation::BadHandshakePayload {
                    message: 2,
                    problem: PayloadProblem::InvalidPoint
                }
            );
        }
    }

    #[tokio::test]
    async fn server_message_2_of_the_wrong_size_is_refused() {
        let client_local = LocalIdentity::new(&identity(1));
        let (mut client_io, mut server_io) = duplex(1 << 16);
        let long_payload = [identity(2).public_key().as_bytes().as_slice(), &[0]].concat();
        let (client, ()) = tokio::join!(
            initiate(&mut client_io, &client_local),
            fake_server(&mut server_io, identity(2), PROLOGUE, &long_payload),
        );
        assert_eq!(
            violation(client),
            Violation::HandshakeMessageSize {
                message: 2,
                expected: 128,
                actual: 129
            }
        );
    }

    #[tokio::test]
    async fn server_with_another_prologue_fails_to_decrypt() {
        let client_local = LocalIdentity::new(&identity(1));
        let (mut client_io, mut server_io) = duplex(1 << 16);
        let payload = identity(2).public_key();
        let (client, ()) = tokio::join!(
            initiate(&mut client_io, &client_local),
            fake_server(
                &mut server_io,
                identity(2),
                b"noise-echo/2",
                payload.as_bytes()
            ),
        );
        assert_eq!(
            violation(client),
            Violation::HandshakeDecrypt { message: 2 }
        );
    }

    #[tokio::test]
    async fn client_whose_payload_is_another_key_or_small_order_is_refused() {
        let server_local = LocalIdentity::new(&identity(2));
        let small_order = EIGHT_TORSION[1].compress().to_bytes();
        let another_key = *identity(3).public_key().as_bytes();
        for (payload, problem) in [
            (another_key, PayloadProblem::StaticKeyMismatch),
            (small_order, PayloadProblem::InvalidPoint),
        ] {
            let (mut client_io, mut server_io) = duplex(1 << 16);
            let (_, server) = tokio::join!(
                fake_client(&mut client_io, identity(1), b"", &payload),
                respond(&mut server_io, &server_local),
            );
            assert_eq!(
                violation(server),
                Violation::BadHandshakePayload {
                    message: 3,
                    problem
                }
            );
        }
    }

    #[tokio::test]
    async fn zero_length_and_truncated_handshake_frames_are_refused() {
        let server_local = LocalIdentity::new(&identity(2));
        for (bytes, expected) in [
            (&[0u8, 0][..], Violation::ZeroLengthFrame),
            (
                &[0, 32, 1, 2, 3][..],
                Violation::Truncated(TruncatedAt::Frame),
            ),
            (&[0][..], Violation::Truncated(TruncatedAt::Frame)),
            (&[][..], Violation::Truncated(TruncatedAt::Handshake)),
        ] {
            let (mut client_io, mut server_io) = duplex(1 << 16);
            tokio::io::AsyncWriteExt::write_all(&mut client_io, bytes)
                .await
                .unwrap();
            drop(client_io);
            assert_eq!(
                violation(respond(&mut server_io, &server_local).await),
                expected
            );
        }
    }

    /// The core alone, over byte slices: no stream, no runtime.
    #[test]
    fn core_handshake_pair_in_memory() {
        let client_local = LocalIdentity::new(&identity(1));
        let server_local = LocalIdentity::new(&identity(2));
        let (client, message1) = Initiator::start(&client_local).unwrap();
        let server = Responder::new(&server_local).unwrap();
        let (server, message2) = server.read(&message1).unwrap();
        let client = client.read(&message2).unwrap();
        assert_eq!(client.server_key(), &identity(2).public_key());
        let (message3, client) = client.approve().unwrap();
        let server = server.read(&message3).unwrap();
        assert_eq!(server.peer(), &identity(1).public_key());
        assert_eq!(client.handshake_hash(), server.handshake_hash());
    }

    #[test]
    fn core_refuses_truncated_and_garbage_messages() {
        let client_local = LocalIdentity::new(&identity(1));
        let server_local = LocalIdentity::new(&identity(2));
        let (_, message1) = Initiator::start(&client_local).unwrap();
        let responder = Responder::new(&server_local).unwrap();
        assert_eq!(
            violation(responder.read(&message1[..31])),
            Violation::HandshakeMessageSize {
                message: 1,
                expected: 32,
                actual: 31
            }
        );
        let (client, message1) = Initiator::start(&client_local).unwrap();
        let (server, _) = Responder::new(&server_local)
            .unwrap()
            .read(&message1)
            .unwrap();
        assert_eq!(
            violation(client.read(&[0x55; MSG2_LEN])),
            Violation::HandshakeDecrypt { message: 2 }
        );
        assert_eq!(
            violation(server.read(&[0x55; MSG3_LEN])),
            Violation::HandshakeDecrypt { message: 3 }
        );
    }

    /// A reject produces no bytes at all: the only way to message 3 is approve().
    #[test]
    fn core_reject_reveals_nothing() {
        let client_local = LocalIdentity::new(&identity(1));
        let server_local = LocalIdentity::new(&identity(2));
        let (client, message1) = Initiator::start(&client_local).unwrap();
        let (_, message2) = Responder::new(&server_local)
            .unwrap()
            .read(&message1)
            .unwrap();
        let error = client.read(&message2).unwrap().reject("unknown host");
        assert!(matches!(
            error,
            WireError::NotAllowed(Refusal::HostKeyRejected { .. })
        ));
        assert!(!message1
            .windows(32)
            .any(|w| w == identity(1).public_key().as_bytes()));
    }

    #[test]
    fn debug_output_shows_no_secrets() {
        let local = LocalIdentity::new(&identity(1));
        let debug = format!("{local:?}");
        assert!(debug.contains("SHA256:"), "{debug}");
        assert!(!debug.contains("private"), "{debug}");
    }
}
