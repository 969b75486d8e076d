//! The snow crypto resolver every handshake uses: ring's ChaCha20-Poly1305 and
//! hashes where it has them, snow's defaults for the rest, and an X25519 that knows
//! our static key pair.
//!
//! snow hands the static private key to its `Dh::set` on every handshake, and its
//! default X25519 then derives the public key again (a base-point multiplication
//! and a field inversion): public-key work repeated per connection although
//! [`LocalIdentity`](crate::wire::LocalIdentity) derived it once. [`StaticAwareDh`]
//! recognises that private key and copies the public key it was given instead.
//! Every other operation is the same curve25519-dalek call snow's default makes.

use curve25519_dalek::montgomery::MontgomeryPoint;
use snow::params::{CipherChoice, DHChoice, HashChoice};
use snow::resolvers::{CryptoResolver, DefaultResolver, FallbackResolver, RingResolver};
use snow::types::{Cipher, Dh, Hash, Random};
use zeroize::{Zeroize, Zeroizing};

use crate::identity::NoiseKeypair;

const KEY_LEN: usize = 32;

/// The resolver for a handshake with `static_keys` as our Noise static key pair.
pub(crate) fn resolver(static_keys: &NoiseKeypair) -> snow::resolvers::BoxedCryptoResolver {
    let ours = StaticAwareResolver {
        static_private: Zeroizing::new(*static_keys.private()),
        static_public: *static_keys.public(),
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
struct StaticAwareResolver {
    static_private: Zeroizing<[u8; KEY_LEN]>,
    static_public: [u8; KEY_LEN],
}

impl CryptoResolver for StaticAwareResolver {
    fn resolve_rng(&self) -> Option<Box<dyn Random>> {
        None
    }

    fn resolve_dh(&self, choice: &DHChoice) -> Option<Box<dyn Dh>> {
        match choice {
            DHChoice::Curve25519 => Some(Box::new(StaticAwareDh {
                static_private: self.static_private.clone(),
                static_public: self.static_public,
                private: Zeroizing::new([0; KEY_LEN]),
                public: [0; KEY_LEN],
            })),
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

/// X25519 as snow's default implements it, except that setting our own static
/// private key reuses its known public key.
struct StaticAwareDh {
    static_private: Zeroizing<[u8; KEY_LEN]>,
    static_public: [u8; KEY_LEN],
    private: Zeroizing<[u8; KEY_LEN]>,
    public: [u8; KEY_LEN],
}

impl StaticAwareDh {
    fn derive_public(&mut self) {
        self.public = MontgomeryPoint::mul_base_clamped(*self.private).to_bytes();
    }
}

/// Compares two secrets without an early exit (both are ours, but stay careful).
fn same_secret(a: &[u8; KEY_LEN], b: &[u8; KEY_LEN]) -> bool {
    a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

impl Dh for StaticAwareDh {
    fn name(&self) -> &'static str {
        "25519"
    }

    fn pub_len(&self) -> usize {
        KEY_LEN
    }

    fn priv_len(&self) -> usize {
        KEY_LEN
    }

    fn set(&mut self, privkey: &[u8]) {
        let mut key = [0u8; KEY_LEN];
        let len = privkey.len().min(KEY_LEN);
        key[..len].copy_from_slice(&privkey[..len]);
        *self.private = key;
        key.zeroize();
        if same_secret(&self.private, &self.static_private) {
            self.public = self.static_public;
        } else {
            self.derive_public();
        }
    }

    fn generate(&mut self, rng: &mut dyn Random) -> Result<(), snow::Error> {
        rng.try_fill_bytes(&mut self.private[..])?;
        self.derive_public();
        Ok(())
    }

    fn pubkey(&self) -> &[u8] {
        &self.public
    }

    fn privkey(&self) -> &[u8] {
        &self.private[..]
    }

    fn dh(&self, pubkey: &[u8], out: &mut [u8]) -> Result<(), snow::Error> {
        let peer: [u8; KEY_LEN] = pubkey
            .get(..KEY_LEN)
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or(snow::Error::Dh)?;
        let shared = Zeroizing::new(MontgomeryPoint(peer).mul_clamped(*self.private).to_bytes());
        out.get_mut(..KEY_LEN)
            .ok_or(snow::Error::Dh)?
            .copy_from_slice(&shared[..]);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Identity;

    #[test]
    fn the_static_key_gives_its_known_public_key_and_others_are_derived() {
        let keys = Identity::from_seed(&[7; 32], "t").noise_keypair();
        let mut dh = StaticAwareDh {
            static_private: Zeroizing::new(*keys.private()),
            static_public: *keys.public(),
            private: Zeroizing::new([0; KEY_LEN]),
            public: [0; KEY_LEN],
        };
        dh.set(keys.private());
        assert_eq!(dh.pubkey(), keys.public());
        // The known public key is the one derivation gives (so the shortcut is sound).
        dh.derive_public();
        assert_eq!(dh.pubkey(), keys.public());

        let other = Identity::from_seed(&[8; 32], "u").noise_keypair();
        dh.set(other.private());
        assert_eq!(dh.pubkey(), other.public());
        // DH agrees both ways.
        let mut ab = [0u8; 32];
        dh.dh(keys.public(), &mut ab).unwrap();
        dh.set(keys.private());
        let mut ba = [0u8; 32];
        dh.dh(other.public(), &mut ba).unwrap();
        assert_eq!(ab, ba);
        assert!(dh.dh(&[0; 31], &mut ba).is_err());
    }
}
