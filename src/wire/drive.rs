//! The thin async driver of the handshake (wire-v1 sections 1, 2 and 4): runs the
//! sans-I/O core of [`handshake`](crate::wire::handshake) over any
//! `AsyncRead + AsyncWrite + Unpin` stream. It owns the framing of handshake
//! messages and the server's early input (the client's first request, read together
//! with message 3); the handshake deadline is the caller's.
//!
//! The client's side is a typestate: [`initiate`] returns an
//! [`AwaitingServerApproval`] holding the server's validated key, and only its
//! [`approve`](AwaitingServerApproval::approve) writes message 3. Dropping it (or
//! calling [`reject`](AwaitingServerApproval::reject)) writes nothing more, and the
//! check may take as long as it likes (an interactive yes/no prompt, say).

use std::fmt;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tracing::trace;

use crate::identity::PublicKey;
use crate::wire::error::{ForeignProtocol, Refusal, Result, TruncatedAt, Violation, WireError};
use crate::wire::frame::{decode_frame, frame_payload_len, write_frame, Decoded, FRAME_HEADER_LEN};
use crate::wire::handshake::{
    Established, ExpectApproval, Initiator, LocalIdentity, Responder, MSG1_LEN, MSG2_LEN, MSG3_LEN,
};
use crate::wire::record::Role;

/// The client half-way through the handshake: message 2 is read and the server's
/// key validated, message 3 not yet written.
///
/// Check [`server_key`](Self::server_key), then [`approve`](Self::approve) or
/// [`reject`](Self::reject). Dropping it also rejects, silently.
#[must_use = "dropping this aborts the handshake; call approve() or reject()"]
pub struct AwaitingServerApproval {
    core: ExpectApproval,
    /// Bytes read past message 2 (v2's reader may read ahead), for the session.
    early_input: Vec<u8>,
}

impl AwaitingServerApproval {
    pub(crate) fn new(core: ExpectApproval, early_input: Vec<u8>) -> Self {
        Self { core, early_input }
    }

    /// The parameters the server sent in message 2 (v2; `None` in v1): its request
    /// limit and rekey policy, authenticated by its key.
    pub fn server_params(&self) -> Option<&crate::wire::payload::ServerParams> {
        self.core.server_params()
    }

    /// The protocol version negotiated.
    pub fn version(&self) -> crate::wire::negotiation::ProtocolVersion {
        self.core.version()
    }

    /// The suite negotiated.
    pub fn suite(&self) -> crate::wire::suite::Suite {
        self.core.suite()
    }

    /// The server's Ed25519 key: a valid point, proven to be its Noise static key.
    pub fn server_key(&self) -> &PublicKey {
        self.core.server_key()
    }

    /// The host certificate the server sent in message 2 (v2; never in v1): an
    /// Ed25519 certificate of [`server_key`](Self::server_key) whose CA signature
    /// verifies. Whether to trust it (its CA for the host, type, principals,
    /// validity, revocation) is the caller's decision:
    /// `KnownHosts::verify_host_revocable`, as the client does.
    pub fn server_certificate(&self) -> Option<&crate::openssh::certificate::Certificate> {
        self.core.server_certificate()
    }

    /// The server is trusted: sends message 3, revealing our identity to it.
    ///
    /// # Errors
    /// [`WireError::Io`] when the write fails; [`WireError::Internal`] on a Noise
    /// library failure.
    pub async fn approve<S>(self, stream: &mut S) -> Result<Established>
    where
        S: AsyncRead + AsyncWrite + Unpin + ?Sized,
    {
        // -> s, se
        let (message, mut established) = self.core.approve()?;
        established.early_input = self.early_input;
        write_frame(stream, &message).await?;
        trace!("sent handshake message 3 ({} bytes)", message.len());
        Ok(established)
    }

    /// The server is not trusted: abandons the handshake without writing anything,
    /// and returns the error to report.
    pub fn reject(self, reason: impl Into<String>) -> WireError {
        self.core.reject(reason)
    }

    /// The sans-I/O state inside, for a caller that writes message 3 itself.
    pub fn into_core(self) -> ExpectApproval {
        self.core
    }
}

impl fmt::Debug for AwaitingServerApproval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwaitingServerApproval")
            .field("server_key", self.server_key())
            .finish_non_exhaustive()
    }
}

/// Starts the handshake as the client: writes message 1, reads and validates
/// message 2, and stops before message 3 so the caller can check the server's key.
///
/// # Errors
/// [`Refusal::ClosedBeforeHandshake`] (as [`WireError::NotAllowed`]) when the server
/// closes or resets the connection before message 2, as servers do at a cap or to a
/// penalised address; [`Violation::NotNoiseEcho`] when it speaks another protocol;
/// [`WireError::PeerMisbehaved`] for a wrong-size or undecryptable message 2, a bad
/// payload, or an end of stream inside it; [`WireError::Io`].
pub async fn initiate<S>(stream: &mut S, local: &LocalIdentity) -> Result<AwaitingServerApproval>
where
    S: AsyncRead + AsyncWrite + Unpin + ?Sized,
{
    initiate_with(stream, Initiator::start(local)?).await
}

/// The whole client handshake, with a synchronous check of the server's key run
/// between messages 2 and 3. Use [`initiate`] when the check must be async.
///
/// # Errors
/// [`Refusal::HostKeyRejected`](crate::wire::Refusal::HostKeyRejected) (as
/// [`WireError::NotAllowed`]) with the check's reason when it refuses, in which case
/// message 3 is never written; and the errors of [`initiate`] and
/// [`AwaitingServerApproval::approve`].
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
    respond_with(stream, || Responder::new(local)).await
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
    let start = Initiator::start_with_fixed_ephemeral_for_testing_only(local, ephemeral_private)?;
    initiate_with(stream, start).await
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
    respond_with(stream, || {
        Responder::with_fixed_ephemeral_for_testing_only(local, ephemeral_private)
    })
    .await
}

async fn initiate_with<S>(
    stream: &mut S,
    (core, message1): (crate::wire::handshake::ExpectMessage2, [u8; MSG1_LEN]),
) -> Result<AwaitingServerApproval>
where
    S: AsyncRead + AsyncWrite + Unpin + ?Sized,
{
    // -> e
    write_frame(stream, &message1)
        .await
        .map_err(closed_before_message_2)?;
    trace!("sent handshake message 1 ({MSG1_LEN} bytes)");
    // <- e, ee, s, es
    // Nothing follows message 2 before we answer it: read exactly the frame.
    let (received, _) = read_handshake_message(stream, 2, MSG2_LEN, 0)
        .await
        .map_err(closed_before_message_2)?;
    let core = core.read(&received)?;
    trace!("received handshake message 2 ({MSG2_LEN} bytes): the server proved its key");
    Ok(AwaitingServerApproval::new(core, Vec::new()))
}

/// A server that hangs up before message 2 (an end of stream before any byte of it,
/// or a reset, which is what closing a socket with our message 1 unread sends) has
/// refused the connection, not broken the protocol.
fn closed_before_message_2(error: WireError) -> WireError {
    closed_by_peer(error, Refusal::ClosedBeforeHandshake)
}

/// `refusal` when `error` is an end of stream before the server's first byte, or
/// a reset; `error` otherwise.
pub(crate) fn closed_by_peer(error: WireError, refusal: Refusal) -> WireError {
    use std::io::ErrorKind;
    match &error {
        WireError::PeerMisbehaved(Violation::Truncated(TruncatedAt::Handshake)) => refusal.into(),
        WireError::Io(io)
            if matches!(
                io.kind(),
                ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe
            ) =>
        {
            refusal.into()
        }
        _ => error,
    }
}

/// The responder's state is made only once message 1 is in: a connection that never
/// sends one (a scan, a slowloris) costs no Noise state.
async fn respond_with<S>(
    stream: &mut S,
    start: impl FnOnce() -> Result<crate::wire::handshake::ExpectMessage1>,
) -> Result<Established>
where
    S: AsyncRead + AsyncWrite + Unpin + ?Sized,
{
    // -> e
    let (received, _) = read_handshake_message(stream, 1, MSG1_LEN, 0).await?;
    trace!("received handshake message 1 ({MSG1_LEN} bytes)");
    let (core, message2) = start()?.read(&received)?;
    // <- e, ee, s, es
    write_frame(stream, &message2).await?;
    trace!("sent handshake message 2 ({MSG2_LEN} bytes)");
    // -> s, se
    // The client sends its first request right behind message 3: read what is
    // already there of it in the same system call (the session takes it over).
    let (received, early_input) =
        read_handshake_message(stream, 3, MSG3_LEN, EARLY_INPUT_LEN).await?;
    let mut established = core.read(&received)?;
    trace!(
        "received handshake message 3 ({MSG3_LEN} bytes, {} bytes of requests behind it): the client proved its key",
        early_input.len()
    );
    established.early_input = early_input;
    Ok(established)
}

/// How many bytes beyond message 3 the server reads with it: a small first request
/// (a 16-byte one is a 39-byte frame) without growing an idle session's buffer.
pub(crate) const EARLY_INPUT_LEN: usize = 256;

/// Reads one handshake frame, refusing any size but `expected` as soon as its length
/// prefix is in. The prefix is parsed by [`frame`](crate::wire::frame) only.
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
    let mut frame = vec![0u8; FRAME_HEADER_LEN + expected + early];
    let mut filled = 0;
    loop {
        let read = stream.read(&mut frame[filled..]).await?;
        if read == 0 {
            let at = match filled {
                // The client saw the server's key and left without answering: most
                // likely it declined an unknown host key, which is no attack.
                0 if message == 3 => TruncatedAt::AfterMessage2,
                0 => TruncatedAt::Handshake,
                _ => TruncatedAt::Frame,
            };
            return Err(Violation::Truncated(at).into());
        }
        filled += read;
        if let Some(len) = frame_payload_len(&frame[..filled])? {
            if len != expected {
                // Message 2 comes from the server, messages 1 and 3 from the client.
                let sender = if message == 2 {
                    Role::Server
                } else {
                    Role::Client
                };
                if let Some(sent) = ForeignProtocol::recognise(&frame[..filled]) {
                    return Err(Violation::NotNoiseEcho { sender, sent }.into());
                }
                return Err(Violation::HandshakeMessageSize {
                    message,
                    expected,
                    actual: len,
                }
                .into());
            }
        }
        if let Decoded::Frame { consumed, .. } = decode_frame(&frame[..filled])? {
            let early_input = frame[consumed..filled].to_vec();
            frame.truncate(consumed);
            frame.drain(..FRAME_HEADER_LEN);
            return Ok((frame, early_input));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Identity;
    use tokio::io::{duplex, AsyncWriteExt};

    fn local(seed: u8) -> LocalIdentity {
        LocalIdentity::new(&Identity::from_seed(&[seed; 32], ""))
    }

    #[tokio::test]
    async fn a_server_that_hangs_up_before_message_2_refused_the_connection() {
        let (mut client_io, server_io) = duplex(4096);
        // The server reads nothing and closes, as a server at its cap does.
        drop(server_io);
        let error = initiate(&mut client_io, &local(1)).await.unwrap_err();
        assert!(
            matches!(error, WireError::NotAllowed(Refusal::ClosedBeforeHandshake)),
            "{error:?}"
        );

        // A server that has begun message 2 and stops broke the protocol instead.
        let (mut client_io, mut server_io) = duplex(4096);
        let server = async move {
            let mut message1 = [0u8; FRAME_HEADER_LEN + MSG1_LEN];
            server_io.read_exact(&mut message1).await.unwrap();
            server_io
                .write_all(&[0, MSG2_LEN as u8, 1, 2])
                .await
                .unwrap();
        };
        let client = local(1);
        let (result, ()) = tokio::join!(initiate(&mut client_io, &client), server);
        let error = result.unwrap_err();
        assert_eq!(
            error.violation(),
            Some(&Violation::Truncated(TruncatedAt::Frame))
        );
    }

    #[tokio::test]
    async fn a_peer_speaking_another_protocol_is_named_on_either_side() {
        let (mut client_io, mut server_io) = duplex(4096);
        server_io
            .write_all(b"SSH-2.0-OpenSSH_9.2\r\n")
            .await
            .unwrap();
        let error = initiate(&mut client_io, &local(1)).await.unwrap_err();
        assert_eq!(
            error.to_string(),
            "the peer broke the protocol: this is not a noise-echo server: it sent 'SSH-2.0-OpenSSH_9.2' (an SSH server's banner)"
        );

        // The server's log names an HTTP client the same way.
        let (mut client_io, mut server_io) = duplex(4096);
        client_io
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let error = respond(&mut server_io, &local(2)).await.unwrap_err();
        assert_eq!(
            error.violation(),
            Some(&Violation::NotNoiseEcho {
                sender: Role::Client,
                sent: ForeignProtocol::Text {
                    start: "GET / HTTP/1.1".to_owned()
                },
            })
        );
    }
}
