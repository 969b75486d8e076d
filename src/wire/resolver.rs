//! The snow crypto resolver every handshake uses: ring's ChaCha20-Poly1305 and
//! hashes where it has them, snow's defaults for the rest, and our X25519
//! ([`dh`](crate::wire::dh)): the fastest implementation built, knowing our static
//! key pair.
//!
//! snow hands the static private key to its `Dh::set` on every handshake, and its
//! default X25519 then derives the public key again (a base-point multiplication
//! and a field inversion): public-key work repeated per connection although
//! [`LocalIdentity`](crate::wire::LocalIdentity) derived it once. Our Dh recognises
//! that private key and reuses the [`StaticKey`] prepared with the identity.

use std::sync::Arc;

use snow::params::{CipherChoice, DHChoice, HashChoice};
use snow::resolvers::{CryptoResolver, DefaultResolver, FallbackResolver, RingResolver};
use snow::types::{Cipher, Dh, Hash, Random};

use crate::wire::dh::{StaticKey, X25519Dh};

/// The resolver for a handshake with `static_key` as our Noise static key pair.
pub(crate) fn resolver(static_key: &Arc<StaticKey>) -> snow::resolvers::BoxedCryptoResolver {
    let ours = X25519Resolver {
        static_key: Arc::clone(static_key),
    };
    // What snow::Builder::new uses with ring-accelerated, behind our X25519.
    let ring_then_default =
        FallbackResolver::new(Box::new(RingResolver), Box::new(DefaultResolver));
    Box::new(FallbackResolver::new(
        Box::new(ours),
        Box::new(ring_then_default),
    ))
}

/// Resolves only X25519; everything else falls through to ring and snow's defaults.
struct X25519Resolver {
    static_key: Arc<StaticKey>,
}

impl CryptoResolver for X25519Resolver {
    fn resolve_rng(&self) -> Option<Box<dyn Random>> {
        None
    }

    fn resolve_dh(&self, choice: &DHChoice) -> Option<Box<dyn Dh>> {
        match choice {
            DHChoice::Curve25519 => Some(Box::new(X25519Dh::new(Arc::clone(&self.static_key)))),
            _ => None,
        }
    }

    fn resolve_hash(&self, _choice: &HashChoice) -> Option<Box<dyn Hash>> {
        None
    }

    fn resolve_cipher(&self, _choice: &CipherChoice) -> Option<Box<dyn Cipher>> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Identity;
    use crate::wire::dh::X25519;

    #[test]
    fn x25519_is_ours_and_the_rest_falls_through() {
        let keys = Identity::from_seed(&[7; 32], "t").noise_keypair();
        for &implementation in X25519::ALL {
            let resolver = resolver(&StaticKey::new(&keys, implementation));
            let mut dh = resolver.resolve_dh(&DHChoice::Curve25519).unwrap();
            dh.set(keys.private());
            assert_eq!(dh.pubkey(), keys.public());
            assert!(resolver.resolve_rng().is_some());
            assert!(resolver.resolve_hash(&HashChoice::Blake2s).is_some());
            assert!(resolver.resolve_cipher(&CipherChoice::ChaChaPoly).is_some());
        }
    }
}
