//! This side's identity as every handshake uses it: the Ed25519 key, the Noise
//! static key derived from it once, the parsed Noise protocols, and the optional
//! OpenSSH certificate (set in [`payload_checks`](super::payload_checks)).

use super::*;

/// This side's identity, prepared once for any number of handshakes: the Ed25519
/// public key sent as payload, the derived Noise static key pair, and the parsed
/// protocol parameters. A server builds one and shares it (through an `Arc`) with
/// every connection.
#[derive(Clone)]
pub struct LocalIdentity {
    /// Sent as (or in) the handshake payload.
    pub(super) public_key: PublicKey,
    /// The Noise static key pair derived from the Ed25519 key.
    pub(super) noise: NoiseKeypair,
    /// The same key pair prepared for our X25519 implementation.
    pub(super) x25519: Arc<StaticKey>,
    /// The parsed Noise protocols, one per suite in [`Suite::ALL`] order, so a
    /// handshake clones instead of parsing.
    pub(super) params: [NoiseParams; 2],
    /// An OpenSSH certificate blob for `public_key`, sent in v2's message 2 or 3.
    /// Shared: a server's connections all send the same one.
    pub(super) certificate: Option<Arc<[u8]>>,
}

impl LocalIdentity {
    /// Derives the Noise static key pair of `identity` (wire-v1 section 3).
    pub fn new(identity: &Identity) -> Self {
        Self::with_x25519(identity, X25519::DEFAULT)
    }

    /// [`new`](Self::new) on a chosen X25519 implementation, for the tests and
    /// measurements that compare them; every implementation gives the same bytes.
    #[doc(hidden)]
    pub fn with_x25519(identity: &Identity, implementation: X25519) -> Self {
        let noise = identity.noise_keypair();
        Self {
            public_key: identity.public_key(),
            x25519: StaticKey::new(&noise, implementation),
            noise,
            params: Suite::ALL.map(noise_params),
            certificate: None,
        }
    }

    /// The Ed25519 public key this side presents.
    pub fn public_key(&self) -> &PublicKey {
        &self.public_key
    }

    /// A Noise builder for `suite` with our static key and `prologue`; `ephemeral`
    /// fixes the ephemeral private key, for golden vectors only.
    pub(super) fn builder<'a>(
        &'a self,
        suite: Suite,
        prologue: &'a [u8],
        ephemeral: Option<&'a [u8; 32]>,
    ) -> Result<snow::Builder<'a>> {
        let index = Suite::ALL.iter().position(|s| *s == suite).unwrap_or(0);
        // Our resolver: ring's cipher, our X25519, and no re-derivation of our static key.
        let resolver = crate::wire::resolver::resolver(&self.x25519);
        let builder = snow::Builder::with_resolver(self.params[index].clone(), resolver)
            .local_private_key(self.noise.private())
            .and_then(|builder| builder.prologue(prologue))
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
            .field("x25519", &self.x25519.implementation())
            .finish_non_exhaustive()
    }
}
