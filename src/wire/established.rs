//! A completed handshake ([`Established`]): the authenticated peer, the version,
//! suite and (v2) server parameters negotiated, and the transport keys of the Noise
//! split, until it becomes a session (`session.rs`).

use std::fmt;

use snow::HandshakeState;
use zeroize::Zeroizing;

use crate::identity::PublicKey;
use crate::openssh::certificate::Certificate;
use crate::wire::cipher::{CipherKey, SessionKeys};
use crate::wire::error::{Bug, Result};
use crate::wire::handshake::{Mode, HANDSHAKE_HASH_LEN};
use crate::wire::negotiation::ProtocolVersion;
use crate::wire::payload::{self, ServerParams};
use crate::wire::record::Role;
use crate::wire::rekey::RekeyPolicy;
use crate::wire::suite::Suite;

/// A completed handshake: the authenticated peer and the transport keys.
///
/// Turn it into a session with [`Established::into_halves`] or
/// [`Established::into_split`].
pub struct Established {
    pub(crate) keys: SessionKeys,
    pub(crate) peer: PublicKey,
    pub(crate) role: Role,
    /// Which protocol the handshake ran: the session's record rules follow it.
    version: ProtocolVersion,
    /// The server's request limit from message 2 (v2; `None` in v1): the client
    /// refuses longer requests before sending them.
    max_request: Option<u32>,
    /// When the session halves must rekey: v2's policy from message 2 as both ends
    /// run it (whole seconds), `None` in v1, which never rekeys.
    /// Boxed: read once, by `into_halves`, while an `Established` is moved through
    /// clients and held in the server's connection task.
    pub(crate) rekey: Option<Box<RekeyPolicy>>,
    handshake_hash: [u8; HANDSHAKE_HASH_LEN],
    /// Transport bytes that arrived with the last handshake message (a client's
    /// first request usually does) and were read along with it: the session's
    /// receiving half starts with them.
    pub(crate) early_input: Vec<u8>,
    /// The OpenSSH certificate the peer sent (v2), checked to certify `peer`.
    /// Boxed: 8 bytes in every session, most of which have none.
    pub(crate) peer_certificate: Option<Box<Certificate>>,
}

impl Established {
    /// The peer's Ed25519 key, validated and proven to match its Noise static key.
    /// The server must still check it against authorized_keys.
    pub fn peer(&self) -> &PublicKey {
        &self.peer
    }

    /// The OpenSSH certificate the peer sent in the handshake (v2 only; never in
    /// v1): an Ed25519 certificate of [`peer`](Self::peer) whose CA signature
    /// verifies. Trusting it is the caller's policy: on a server,
    /// `AuthorizedKeys::authorize_client` or `TrustedUserCas::check`; on a client,
    /// `KnownHosts::verify_host`.
    pub fn peer_certificate(&self) -> Option<&Certificate> {
        self.peer_certificate.as_deref()
    }

    /// Which side of the session this is.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The suite the session runs (protocol v1 runs only
    /// [`Suite::ChaChaPolyBlake2s`]).
    pub fn suite(&self) -> Suite {
        self.keys.send.suite()
    }

    /// The protocol version the handshake ran.
    pub fn version(&self) -> ProtocolVersion {
        self.version
    }

    /// The parameters the server sent in message 2 (v2 only; on the server, its
    /// own as sent).
    pub fn server_params(&self) -> Option<ServerParams> {
        Some(ServerParams {
            max_request: self.max_request?,
            rekey: *self.rekey.as_deref()?,
        })
    }

    /// The rekey policy both directions follow (v2 only).
    pub fn rekey_policy(&self) -> Option<&RekeyPolicy> {
        self.rekey.as_deref()
    }

    /// The Noise handshake hash, identical on both sides: a session identifier
    /// usable for channel binding.
    pub fn handshake_hash(&self) -> &[u8; HANDSHAKE_HASH_LEN] {
        &self.handshake_hash
    }

    pub(crate) fn finish(
        mut state: HandshakeState,
        peer: PublicKey,
        role: Role,
        mode: Mode,
    ) -> Result<Self> {
        if !state.is_handshake_finished() {
            return Err(Bug::Noise {
                during: "entering transport mode",
                cause: snow::Error::State(snow::error::StateProblem::HandshakeNotFinished),
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
            send: CipherKey::new(mode.suite, send),
            recv: CipherKey::new(mode.suite, recv),
        };
        Ok(Self {
            keys,
            peer,
            role,
            version: mode.version,
            max_request: mode.params.map(|params| params.max_request),
            rekey: mode
                .params
                .map(|params| Box::new(payload::wire_rekey_policy(params.rekey))),
            handshake_hash,
            early_input: Vec::new(),
            peer_certificate: None,
        })
    }
}

impl fmt::Debug for Established {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Established")
            .field("peer", &self.peer)
            .field("role", &self.role)
            .field("version", &self.version)
            .field("suite", &self.suite())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every session holds one until it splits, and a server holds thousands: the
    /// certificate field costs 8 bytes (a niche-optimised `Option<Box<_>>`): 176
    /// bytes before it, 184 with it, on x86_64; each direction's kept AES key
    /// (`src/wire/cipher.rs`) 16 more (a pointer, and the key's alignment going
    /// from 1 to 8), 216 with both.
    #[test]
    fn established_stays_small() {
        let size = std::mem::size_of::<Established>();
        println!("size_of::<Established>() = {size}");
        assert_eq!(std::mem::size_of::<Option<Box<Certificate>>>(), 8);
        assert!(size <= 216, "Established grew to {size} bytes");
    }
}
