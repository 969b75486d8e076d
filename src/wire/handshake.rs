//! The Noise XX handshake of wire-v1 sections 2 to 4, over any
//! `AsyncRead + AsyncWrite + Unpin` stream.
//!
//! ```text
//! client (initiator)                               server (responder)
//! -> e                                  32 bytes
//!                    <- e, ee, s, es   128 bytes   payload: server's Ed25519 key
//! [client checks the server's key: known_hosts, fingerprint, user]
//! -> s, se                              96 bytes   payload: client's Ed25519 key
//!                                                  [server checks authorized_keys]
//! ```
//!
//! The initiator side is a typestate: [`initiate`] returns an
//! [`AwaitingServerApproval`] holding the server's validated key, and only its
//! [`approve`](AwaitingServerApproval::approve) writes message 3. Dropping it (or
//! calling [`reject`](AwaitingServerApproval::reject)) sends nothing more, so a server
//! the client does not trust never learns the client's identity; and the check may
//! take as long as it likes (an interactive yes/no prompt, say).
//!
//! Every received message's size is checked against the table before it is
//! processed, and every payload must be the 32-byte Ed25519 key whose Montgomery
//! form is the static key the peer proved it holds. Any failure aborts: nothing more
//! is written.

use std::fmt;

use snow::params::NoiseParams;
use snow::HandshakeState;
use zeroize::Zeroizing;

use crate::wire::cipher::{CipherKey, SessionKeys};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};

use crate::identity::{Identity, NoiseKeypair, PublicKey, PublicKeyError};
use crate::wire::error::{Bug, PayloadProblem, Refusal, Result, TruncatedAt, Violation, WireError};
use crate::wire::frame::{write_frame, FRAME_HEADER_LEN};
use crate::wire::record::Role;

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

/// Length of the handshake hash of BLAKE2s.
pub const HANDSHAKE_HASH_LEN: usize = 32;

/// This side's identity, prepared once for any number of handshakes: the Ed25519
/// public key sent as payload, the derived Noise static key pair, and the parsed
/// protocol parameters. A server builds one and shares it (through an `Arc`) with
/// every connection.
#[derive(Clone)]
pub struct LocalIdentity {
    public_key: PublicKey,
    noise: NoiseKeypair,
    params: NoiseParams,
}

impl LocalIdentity {
    /// Derives the Noise static key pair of `identity` (wire-v1 section 3).
    pub fn new(identity: &Identity) -> Self {
        Self {
            public_key: identity.public_key(),
            noise: identity.noise_keypair(),
            params: noise_params(),
        }
    }

    /// The Ed25519 public key this side presents.
    pub fn public_key(&self) -> &PublicKey {
        &self.public_key
    }

    /// A Noise builder with our static key and the prologue; `ephemeral` fixes the
    /// ephemeral private key, for golden vectors only.
    fn builder<'a>(&'a self, ephemeral: Option<&'a [u8; 32]>) -> Result<snow::Builder<'a>> {
        // Our resolver: ring's cipher, and no re-derivation of our static public key.
        let resolver = crate::wire::resolver::resolver(&self.noise);
        let builder = snow::Builder::with_resolver(self.params.clone(), resolver)
            .local_private_key(self.noise.private())
            .and_then(|builder| builder.prologue(PROLOGUE))
            .map_err(Bug::noise("configuring the handshake"))?;
        Ok(match ephemeral {
            Some(key) => builder.fixed_ephemeral_key_for_testing_only(key),
            None => builder,
        })
    }
}

impl fmt::Debug for LocalIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalIdentity")
            .field("public_key", &self.public_key)
            .finish_non_exhaustive()
    }
}

fn noise_params() -> NoiseParams {
    // A constant that is known to parse; the test `protocol_name_parses` pins it.
    NOISE_PROTOCOL
        .parse()
        .unwrap_or_else(|_| unreachable!("{NOISE_PROTOCOL} is a valid Noise protocol name"))
}

/// A completed handshake: the authenticated peer and the transport keys.
///
/// Turn it into a session with [`Established::into_halves`] or
/// [`Established::into_split`].
pub struct Established {
    pub(crate) keys: SessionKeys,
    pub(crate) peer: PublicKey,
    pub(crate) role: Role,
    handshake_hash: [u8; HANDSHAKE_HASH_LEN],
    /// Transport bytes that arrived with the last handshake message (a client's
    /// first request usually does) and were read along with it: the session's
    /// receiving half starts with them.
    pub(crate) early_input: Vec<u8>,
}

impl Established {
    /// The peer's Ed25519 key, validated and proven to match its Noise static key.
    /// The server must still check it against authorized_keys.
    pub fn peer(&self) -> &PublicKey {
        &self.peer
    }

    /// Which side of the session this is.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The Noise handshake hash, identical on both sides: a session identifier
    /// usable for channel binding.
    pub fn handshake_hash(&self) -> &[u8; HANDSHAKE_HASH_LEN] {
        &self.handshake_hash
    }

    fn finish(mut state: HandshakeState, peer: PublicKey, role: Role) -> Result<Self> {
        if !state.is_handshake_finished() {
            return Err(Bug::Noise {
                during: "entering transport mode",
                source: snow::Error::State(snow::error::StateProblem::HandshakeNotFinished),
            }
            .into());
        }
        let mut handshake_hash = [0; HANDSHAKE_HASH_LEN];
        handshake_hash.copy_from_slice(state.get_handshake_hash());
        // The Noise split: the first key encrypts initiator (client) to responder.
        let (first, second) = state.dangerously_get_raw_split();
        let (first, second) = (Zeroizing::new(first), Zeroizing::new(second));
        let (send, recv) = match role {
            Role::Client => (first, second),
            Role::Server => (second, first),
        };
        let keys = SessionKeys {
            send: CipherKey::new(send),
            recv: CipherKey::new(recv),
        };
        Ok(Self {
            keys,
            peer,
            role,
            handshake_hash,
            early_input: Vec::new(),
        })
    }
}

impl fmt::Debug for Established {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Established")
            .field("peer", &self.peer)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

/// The client half-way through the handshake: message 2 is read and the server's
/// key validated, message 3 not yet written.
///
/// Check [`server_key`](Self::server_key), then [`approve`](Self::approve) or
/// [`reject`](Self::reject). Dropping it also rejects, silently.
#[must_use = "dropping this aborts the handshake; call approve() or reject()"]
pub struct AwaitingServerApproval {
    state: HandshakeState,
    server_key: PublicKey,
    client_key: PublicKey,
}

impl AwaitingServerApproval {
    /// The server's Ed25519 key: a valid point, proven to be its Noise static key.
    pub fn server_key(&self) -> &PublicKey {
        &self.server_key
    }

    /// The server is trusted: sends message 3, revealing our identity to it.
    ///
    /// # Errors
    /// [`WireError::Io`] when the write fails; [`WireError::Internal`] on a Noise
    /// library failure.
    pub async fn approve<S>(mut self, stream: &mut S) -> Result<Established>
    where
        S: AsyncRead + AsyncWrite + Unpin + ?Sized,
    {
        // -> s, se
        let mut message = [0u8; MSG3_LEN];
        let len = self
            .state
            .write_message(self.client_key.as_bytes(), &mut message)
            .map_err(Bug::noise("writing handshake message 3"))?;
        debug_assert_eq!(len, MSG3_LEN);
        write_frame(stream, &message[..len]).await?;
        Established::finish(self.state, self.server_key, Role::Client)
    }

    /// The server is not trusted: abandons the handshake without writing anything,
    /// and returns the error to report.
    pub fn reject(self, reason: impl Into<String>) -> WireError {
        Refusal::HostKeyRejected {
            fingerprint: self.server_key.fingerprint(),
            reason: reason.into(),
        }
        .into()
    }
}

impl fmt::Debug for AwaitingServerApproval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwaitingServerApproval")
            .field("server_key", &self.server_key)
            .finish_non_exhaustive()
    }
}

/// Starts the handshake as the client: writes message 1, reads and validates
/// message 2, and stops before message 3 so the caller can check the server's key.
///
/// # Errors
/// [`WireError::PeerMisbehaved`] for a wrong-size or undecryptable message 2, a bad
/// payload, or an early end of stream; [`WireError::Io`].
pub async fn initiate<S>(stream: &mut S, local: &LocalIdentity) -> Result<AwaitingServerApproval>
where
    S: AsyncRead + AsyncWrite + Unpin + ?Sized,
{
    initiate_with(stream, local, None).await
}

/// The whole client handshake, with a synchronous check of the server's key run
/// between messages 2 and 3. Use [`initiate`] when the check must be async.
///
/// # Errors
/// [`Refusal::HostKeyRejected`] (as [`WireError::NotAllowed`]) with the check's
/// reason when it refuses, in which case message 3 is never written; and the errors
/// of [`initiate`] and [`AwaitingServerApproval::approve`].
pub async fn initiate_checked<S, F, E>(
    stream: &mut S,
    local: &LocalIdentity,
    check_server: F,
) -> Result<Established>
where
    S: AsyncRead + AsyncWrite + Unpin + ?Sized,
    F: FnOnce(&PublicKey) -> std::result::Result<(), E>,
    E: fmt::Display,
{
    let pending = initiate(stream, local).await?;
    match check_server(pending.server_key()) {
        Ok(()) => pending.approve(stream).await,
        Err(reason) => Err(pending.reject(reason.to_string())),
    }
}

/// Runs the handshake as the server: reads message 1, writes message 2, reads and
/// validates message 3. Authorizing the client's key is the caller's job.
///
/// # Errors
/// [`WireError::PeerMisbehaved`] for a wrong-size or undecryptable message, a bad
/// payload, or an early end of stream; [`WireError::Io`].
pub async fn respond<S>(stream: &mut S, local: &LocalIdentity) -> Result<Established>
where
    S: AsyncRead + AsyncWrite + Unpin + ?Sized,
{
    respond_with(stream, local, None).await
}

/// [`initiate`] with a fixed ephemeral private key, to reproduce the golden test
/// vectors. Never use it for a real connection: reusing an ephemeral key destroys
/// forward secrecy and identity hiding.
///
/// # Errors
/// As [`initiate`].
#[doc(hidden)]
pub async fn initiate_with_fixed_ephemeral_for_testing_only<S>(
    stream: &mut S,
    local: &LocalIdentity,
    ephemeral_private: &[u8; 32],
) -> Result<AwaitingServerApproval>
where
    S: AsyncRead + AsyncWrite + Unpin + ?Sized,
{
    initiate_with(stream, local, Some(ephemeral_private)).await
}

/// [`respond`] with a fixed ephemeral private key, to reproduce the golden test
/// vectors. Never use it for a real connection.
///
/// # Errors
/// As [`respond`].
#[doc(hidden)]
pub async fn respond_with_fixed_ephemeral_for_testing_only<S>(
    stream: &mut S,
    local: &LocalIdentity,
    ephemeral_private: &[u8; 32],
) -> Result<Established>
where
    S: AsyncRead + AsyncWrite + Unpin + ?Sized,
{
    respond_with(stream, local, Some(ephemeral_private)).await
}

async fn initiate_with<S>(
    stream: &mut S,
    local: &LocalIdentity,
    ephemeral: Option<&[u8; 32]>,
) -> Result<AwaitingServerApproval>
where
    S: AsyncRead + AsyncWrite + Unpin + ?Sized,
{
    let mut state = local
        .builder(ephemeral)?
        .build_initiator()
        .map_err(Bug::noise("starting the handshake"))?;

    // -> e
    let mut message = [0u8; MSG2_LEN];
    let len = state
        .write_message(&[], &mut message)
        .map_err(Bug::noise("writing handshake message 1"))?;
    debug_assert_eq!(len, MSG1_LEN);
    write_frame(stream, &message[..len]).await?;

    // <- e, ee, s, es
    // Nothing follows message 2 before we answer it: read exactly the frame.
    let (received, _) = read_handshake_message(stream, 2, MSG2_LEN, 0).await?;
    let mut payload = [0u8; MSG2_LEN];
    let payload_len = read_noise_message(&mut state, 2, &received, &mut payload)?;
    let server_key = validate_payload(2, &payload[..payload_len], state.get_remote_static())?;

    Ok(AwaitingServerApproval {
        state,
        server_key,
        client_key: local.public_key,
    })
}

async fn respond_with<S>(
    stream: &mut S,
    local: &LocalIdentity,
    ephemeral: Option<&[u8; 32]>,
) -> Result<Established>
where
    S: AsyncRead + AsyncWrite + Unpin + ?Sized,
{
    let mut state = local
        .builder(ephemeral)?
        .build_responder()
        .map_err(Bug::noise("starting the handshake"))?;
    let mut payload = [0u8; MSG2_LEN];

    // -> e
    let (received, _) = read_handshake_message(stream, 1, MSG1_LEN, 0).await?;
    read_noise_message(&mut state, 1, &received, &mut payload)?;

    // <- e, ee, s, es
    let mut message = [0u8; MSG2_LEN];
    let len = state
        .write_message(local.public_key.as_bytes(), &mut message)
        .map_err(Bug::noise("writing handshake message 2"))?;
    debug_assert_eq!(len, MSG2_LEN);
    write_frame(stream, &message[..len]).await?;

    // -> s, se
    // The client sends its first request right behind message 3: read what is
    // already there of it in the same system call (the session takes it over).
    let (received, early_input) =
        read_handshake_message(stream, 3, MSG3_LEN, EARLY_INPUT_LEN).await?;
    let payload_len = read_noise_message(&mut state, 3, &received, &mut payload)?;
    let client_key = validate_payload(3, &payload[..payload_len], state.get_remote_static())?;

    let mut established = Established::finish(state, client_key, Role::Server)?;
    established.early_input = early_input;
    Ok(established)
}

/// How many bytes beyond message 3 the server reads with it: a small first request
/// (a 16-byte one is a 39-byte frame) without growing an idle session's buffer.
const EARLY_INPUT_LEN: usize = 256;

/// Reads one handshake frame, refusing any size but `expected` as soon as its length
/// prefix is in.
///
/// The size is known in advance, so the prefix and the payload are read together:
/// usually one read system call per message instead of two. Up to `early` bytes
/// beyond the frame may be read with it; they are returned second (transport data,
/// for the session). With `early` 0 nothing of what follows is consumed.
async fn read_handshake_message<S>(
    stream: &mut S,
    message: u8,
    expected: usize,
    early: usize,
) -> Result<(Vec<u8>, Vec<u8>)>
where
    S: AsyncRead + Unpin + ?Sized,
{
    let frame_len = FRAME_HEADER_LEN + expected;
    let mut frame = vec![0u8; frame_len + early];
    let mut filled = 0;
    let mut checked = false;
    while filled < frame_len {
        let read = stream.read(&mut frame[filled..]).await?;
        if read == 0 {
            let at = match filled {
                0 => TruncatedAt::Handshake,
                _ => TruncatedAt::Frame,
            };
            return Err(Violation::Truncated(at).into());
        }
        filled += read;
        if !checked && filled >= FRAME_HEADER_LEN {
            checked = true;
            let len = usize::from(u16::from_be_bytes([frame[0], frame[1]]));
            if len == 0 {
                return Err(Violation::ZeroLengthFrame.into());
            }
            if len != expected {
                return Err(Violation::HandshakeMessageSize {
                    message,
                    expected,
                    actual: len,
                }
                .into());
            }
        }
    }
    let early_input = frame[frame_len..filled].to_vec();
    frame.truncate(frame_len);
    frame.drain(..FRAME_HEADER_LEN);
    Ok((frame, early_input))
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
                source,
            }
            .into(),
        })
}

/// Checks a handshake payload (wire-v1 section 3): exactly 32 bytes, a valid Ed25519
/// key, whose Montgomery form is the static key the peer used in this handshake.
fn validate_payload(
    message: u8,
    payload: &[u8],
    remote_static: Option<&[u8]>,
) -> Result<PublicKey, Violation> {
    let bad = |problem| Violation::BadHandshakePayload { message, problem };
    let (key, x25519) =
        PublicKey::from_bytes_with_x25519(payload).map_err(|error| match error {
            PublicKeyError::WrongLength(len) => bad(PayloadProblem::WrongLength(len)),
            _ => bad(PayloadProblem::InvalidPoint),
        })?;
    // Both values are public, so a variable-time comparison leaks nothing.
    if remote_static != Some(&x25519[..]) {
        return Err(bad(PayloadProblem::StaticKeyMismatch));
    }
    Ok(key)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::wire::frame::read_frame;
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
        let mut state = raw_builder(noise_params(), &noise, prologue)
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
        let mut state = raw_builder(noise_params(), &noise, PROLOGUE)
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
        let params = noise_params();
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
        // The server saw a clean end of stream where message 3 should be: nothing.
        assert_eq!(
            violation(server),
            Violation::Truncated(TruncatedAt::Handshake)
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

    #[test]
    fn debug_output_shows_no_secrets() {
        let local = LocalIdentity::new(&identity(1));
        let debug = format!("{local:?}");
        assert!(debug.contains("SHA256:"), "{debug}");
        assert!(!debug.contains("private"), "{debug}");
    }
}
