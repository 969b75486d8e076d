//! X25519 for the Noise handshake, as snow's [`Dh`] trait wants it, on one of two
//! implementations: curve25519-dalek (pure Rust, always built) or aws-lc-rs
//! (AWS-LC's assembly, through the `aws-lc` cargo feature, on by default).
//!
//! A responder computes four X25519 operations per handshake (its ephemeral
//! public key, `ee`, `es`, `se`) and an initiator as many; they are most of a
//! handshake's CPU time. curve25519-dalek's Montgomery ladder runs at about half the
//! speed of AWS-LC's (s2n-bignum's, with MULX/ADX where the CPU has them), which
//! is what TLS stacks built on AWS-LC or OpenSSL get.
//!
//! Both give the same bytes for every input: RFC 7748's function, with the scalar
//! clamped and the top bit of the peer's u-coordinate ignored. One difference is
//! hidden: AWS-LC refuses to return an all-zero shared secret (the result of a
//! low-order peer key), which curve25519-dalek and snow's default return and which
//! the protocol accepts for ephemeral keys (docs/PROTOCOL.md, "Why the payload
//! check"). When AWS-LC refuses, the result is computed again with
//! curve25519-dalek, so the output, and whether a handshake goes on, never depends
//! on the implementation.
//!
//! Our static key pair is prepared once per [`LocalIdentity`](crate::wire::LocalIdentity)
//! ([`StaticKey`]): snow hands the static private key to [`Dh::set`] on every
//! handshake, and deriving its public key (a base-point multiplication) or building
//! AWS-LC's key object again each time would repeat public-key work.
//!
//! Private keys are wiped: the raw bytes are held in [`Zeroizing`], and AWS-LC
//! clears its key objects when it frees them (`OPENSSL_free` cleanses).

use std::sync::Arc;

use curve25519_dalek::montgomery::MontgomeryPoint;
use snow::types::{Dh, Random};
use zeroize::Zeroizing;

use crate::identity::NoiseKeypair;

/// Length of an X25519 private key, public key and shared secret.
const KEY_LEN: usize = 32;

/// Which implementation computes X25519. Both give identical bytes; the choice
/// only changes speed (and what the build needs: AWS-LC is C and assembly).
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum X25519 {
    /// curve25519-dalek: pure Rust, always available.
    Dalek,
    /// aws-lc-rs (the `aws-lc` feature): AWS-LC's assembly.
    #[cfg(feature = "aws-lc")]
    AwsLc,
}

impl X25519 {
    /// The implementation a [`LocalIdentity`](crate::wire::LocalIdentity) uses unless
    /// told otherwise: the fastest one built.
    #[cfg(feature = "aws-lc")]
    pub const DEFAULT: X25519 = X25519::AwsLc;
    /// The implementation a [`LocalIdentity`](crate::wire::LocalIdentity) uses unless
    /// told otherwise: the fastest one built.
    #[cfg(not(feature = "aws-lc"))]
    pub const DEFAULT: X25519 = X25519::Dalek;

    /// Every implementation built, [`DEFAULT`](Self::DEFAULT) last.
    pub const ALL: &'static [X25519] = &[
        #[cfg(feature = "aws-lc")]
        X25519::Dalek,
        X25519::DEFAULT,
    ];
}

/// Our static key pair, prepared once for every handshake of one identity.
pub(crate) struct StaticKey {
    implementation: X25519,
    private: Zeroizing<[u8; KEY_LEN]>,
    public: [u8; KEY_LEN],
    /// AWS-LC's key object for `private`, built once (it derives the public key
    /// again when built).
    #[cfg(feature = "aws-lc")]
    aws_lc: Option<Arc<aws_lc_rs::agreement::PrivateKey>>,
}

impl StaticKey {
    /// Prepares `keys` for `implementation`.
    ///
    /// AWS-LC accepts every 32-byte private key; should it still fail (it can only
    /// fail to allocate), the key falls back to curve25519-dalek, which gives the
    /// same results.
    pub(crate) fn new(keys: &NoiseKeypair, implementation: X25519) -> Arc<Self> {
        #[cfg(feature = "aws-lc")]
        let aws_lc = match implementation {
            X25519::AwsLc => aws_lc::private_key(keys.private()).map(Arc::new),
            X25519::Dalek => None,
        };
        Arc::new(Self {
            implementation,
            private: Zeroizing::new(*keys.private()),
            public: *keys.public(),
            #[cfg(feature = "aws-lc")]
            aws_lc,
        })
    }

    /// The implementation this key's handshakes use.
    pub(crate) fn implementation(&self) -> X25519 {
        self.implementation
    }
}

/// The private key a [`X25519Dh`] holds, in the form its implementation uses.
enum Key {
    /// No key set yet (snow resolves a Dh before it sets or generates one).
    Unset,
    /// curve25519-dalek works from the bytes in [`X25519Dh::private`].
    Dalek,
    /// Our static key's shared AWS-LC object.
    #[cfg(feature = "aws-lc")]
    SharedAwsLc(Arc<aws_lc_rs::agreement::PrivateKey>),
    /// An ephemeral (or another) key's own AWS-LC object.
    #[cfg(feature = "aws-lc")]
    AwsLc(aws_lc_rs::agreement::PrivateKey),
}

/// snow's X25519, on the implementation `static_key` was prepared for; setting our
/// static private key reuses its prepared form instead of deriving it again.
pub(crate) struct X25519Dh {
    static_key: Arc<StaticKey>,
    private: Zeroizing<[u8; KEY_LEN]>,
    public: [u8; KEY_LEN],
    key: Key,
}

impl X25519Dh {
    /// A Dh with no key yet, for the handshakes of `static_key`'s identity.
    pub(crate) fn new(static_key: Arc<StaticKey>) -> Self {
        Self {
            static_key,
            private: Zeroizing::new([0; KEY_LEN]),
            public: [0; KEY_LEN],
            key: Key::Unset,
        }
    }

    /// Takes `self.private` as the key: derives its public key and, for AWS-LC,
    /// builds its key object (AWS-LC derives the public key while building it).
    fn use_new_private_key(&mut self) {
        #[cfg(feature = "aws-lc")]
        if self.static_key.implementation == X25519::AwsLc {
            if let Some(key) = aws_lc::private_key(&self.private) {
                if let Some(public) = aws_lc::public_key(&key) {
                    self.public = public;
                    self.key = Key::AwsLc(key);
                    return;
                }
            }
        }
        self.public = MontgomeryPoint::mul_base_clamped(*self.private).to_bytes();
        self.key = Key::Dalek;
    }
}

/// Compares two secrets without an early exit (both are ours, but stay careful).
fn same_secret(a: &[u8; KEY_LEN], b: &[u8; KEY_LEN]) -> bool {
    a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

/// X25519 with curve25519-dalek: the call snow's default makes.
fn dalek_dh(private: &[u8; KEY_LEN], peer: [u8; KEY_LEN]) -> Zeroizing<[u8; KEY_LEN]> {
    Zeroizing::new(MontgomeryPoint(peer).mul_clamped(*private).to_bytes())
}

impl Dh for X25519Dh {
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
        // As snow's default: a shorter key is zero-padded, a longer one cut.
        let len = privkey.len().min(KEY_LEN);
        *self.private = [0; KEY_LEN];
        self.private[..len].copy_from_slice(&privkey[..len]);
        if same_secret(&self.private, &self.static_key.private) {
            self.public = self.static_key.public;
            self.key = Key::Dalek;
            #[cfg(feature = "aws-lc")]
            if let Some(key) = &self.static_key.aws_lc {
                self.key = Key::SharedAwsLc(Arc::clone(key));
            }
        } else {
            self.use_new_private_key();
        }
    }

    fn generate(&mut self, rng: &mut dyn Random) -> Result<(), snow::Error> {
        // snow's random source, as its default does, so that a resolver's RNG
        // (and only it) decides the ephemeral keys.
        rng.try_fill_bytes(&mut self.private[..])?;
        self.use_new_private_key();
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
        let out = out.get_mut(..KEY_LEN).ok_or(snow::Error::Dh)?;
        if matches!(self.key, Key::Unset) {
            // snow sets or generates a key before any DH; not doing so is a bug.
            return Err(snow::Error::Dh);
        }
        #[cfg(feature = "aws-lc")]
        {
            let key = match &self.key {
                Key::SharedAwsLc(key) => Some(&**key),
                Key::AwsLc(key) => Some(key),
                Key::Unset | Key::Dalek => None,
            };
            // None: AWS-LC refused an all-zero result (a low-order peer key);
            // curve25519-dalek below gives that result, as snow's default would.
            if let Some(()) = key.and_then(|key| aws_lc::agree(key, &peer, out)) {
                return Ok(());
            }
        }
        out.copy_from_slice(&dalek_dh(&self.private, peer)[..]);
        Ok(())
    }
}

/// The aws-lc-rs calls, each `None` where AWS-LC fails.
#[cfg(feature = "aws-lc")]
mod aws_lc {
    use aws_lc_rs::agreement::{self, PrivateKey, UnparsedPublicKey, X25519};

    use super::KEY_LEN;

    /// AWS-LC's key object for `private` (it clamps, and derives the public key).
    pub(super) fn private_key(private: &[u8; KEY_LEN]) -> Option<PrivateKey> {
        PrivateKey::from_private_key(&X25519, private).ok()
    }

    /// The public key AWS-LC derived when it built `key`.
    pub(super) fn public_key(key: &PrivateKey) -> Option<[u8; KEY_LEN]> {
        key.compute_public_key().ok()?.as_ref().try_into().ok()
    }

    /// X25519 of `key` and `peer` into `out`; `None` if AWS-LC refuses (an all-zero
    /// result, from a low-order `peer`) or fails.
    pub(super) fn agree(key: &PrivateKey, peer: &[u8; KEY_LEN], out: &mut [u8]) -> Option<()> {
        agreement::agree(key, UnparsedPublicKey::new(&X25519, peer), (), |shared| {
            out.copy_from_slice(shared.get(..KEY_LEN).ok_or(())?);
            Ok(())
        })
        .ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Identity;
    use curve25519_dalek::constants::EIGHT_TORSION;

    fn keys(seed: u8) -> NoiseKeypair {
        Identity::from_seed(&[seed; 32], "t").noise_keypair()
    }

    fn dh_with(implementation: X25519, static_keys: &NoiseKeypair) -> X25519Dh {
        X25519Dh::new(StaticKey::new(static_keys, implementation))
    }

    fn shared(dh: &X25519Dh, peer: &[u8; KEY_LEN]) -> [u8; KEY_LEN] {
        let mut out = [0u8; KEY_LEN];
        dh.dh(peer, &mut out).unwrap();
        out
    }

    #[test]
    fn the_static_key_gives_its_known_public_key_and_others_are_derived() {
        let ours = keys(7);
        let other = keys(8);
        for &implementation in X25519::ALL {
            let mut dh = dh_with(implementation, &ours);
            dh.set(ours.private());
            assert_eq!(dh.pubkey(), ours.public(), "{implementation:?}");
            assert_eq!(dh.privkey(), ours.private());
            dh.set(other.private());
            assert_eq!(dh.pubkey(), other.public(), "{implementation:?}");
            // DH agrees both ways.
            let ab = shared(&dh, ours.public());
            dh.set(ours.private());
            assert_eq!(shared(&dh, other.public()), ab, "{implementation:?}");
            assert!(dh.dh(&[0; 31], &mut [0; 32]).is_err());
            assert!(dh.dh(ours.public(), &mut [0; 31]).is_err());
        }
    }

    #[test]
    fn rfc_7748_vectors_on_every_implementation() {
        let hex = |text: &str| -> [u8; 32] {
            let bytes: Vec<u8> = (0..text.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
                .collect();
            bytes.try_into().unwrap()
        };
        // RFC 7748 section 6.1: Alice's key pair; section 5.2: the first X25519 vector.
        let alice = hex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a");
        let alice_public = hex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a");
        let scalar = hex("a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4");
        let u = hex("e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c");
        let output = hex("c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552");
        let unrelated = keys(1);
        for &implementation in X25519::ALL {
            let mut dh = dh_with(implementation, &unrelated);
            dh.set(&alice);
            assert_eq!(dh.pubkey(), alice_public, "{implementation:?}");
            dh.set(&scalar);
            assert_eq!(shared(&dh, &u), output, "{implementation:?}");
        }
    }

    #[test]
    fn implementations_agree_on_edge_inputs() {
        let ours = keys(3);
        let mut peers: Vec<[u8; KEY_LEN]> = vec![*keys(4).public()];
        // The top bit set (ignored), u = p and u = p + 1 (non-canonical), 2^255 - 1.
        let mut top_bit = *keys(5).public();
        top_bit[31] |= 0x80;
        peers.push(top_bit);
        let mut p = [0xff; 32];
        p[0] = 0xed;
        p[31] = 0x7f;
        peers.push(p);
        p[0] = 0xee;
        peers.push(p);
        peers.push([0xff; 32]);
        // Low-order points: all-zero results.
        peers.extend(
            EIGHT_TORSION
                .iter()
                .map(|point| point.to_montgomery().to_bytes()),
        );
        peers.push([0; 32]);
        for (index, peer) in peers.iter().enumerate() {
            let results: Vec<_> = X25519::ALL
                .iter()
                .map(|&implementation| {
                    let mut dh = dh_with(implementation, &ours);
                    dh.set(ours.private());
                    shared(&dh, peer)
                })
                .collect();
            assert_eq!(
                results[0],
                dalek_dh(ours.private(), *peer)[..],
                "peer {index}"
            );
            assert!(results.iter().all(|r| *r == results[0]), "peer {index}");
        }
    }

    #[test]
    fn a_low_order_peer_key_gives_the_all_zero_secret_as_snow_does() {
        let ours = keys(9);
        for &implementation in X25519::ALL {
            for point in EIGHT_TORSION {
                let mut dh = dh_with(implementation, &ours);
                dh.set(ours.private());
                let peer = point.to_montgomery().to_bytes();
                assert_eq!(shared(&dh, &peer), [0; 32], "{implementation:?}");
            }
        }
    }

    #[test]
    fn generated_keys_come_from_snows_random_source() {
        struct Fixed;
        impl Random for Fixed {
            fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), snow::Error> {
                dest.fill(0x42);
                Ok(())
            }
        }
        let expected = MontgomeryPoint::mul_base_clamped([0x42; 32]).to_bytes();
        for &implementation in X25519::ALL {
            let mut dh = dh_with(implementation, &keys(1));
            dh.generate(&mut Fixed).unwrap();
            assert_eq!(dh.privkey(), [0x42; 32]);
            assert_eq!(dh.pubkey(), expected, "{implementation:?}");
        }
    }
}
