//! The transport cipher of an established session: ChaCha20-Poly1305 (ring) or
//! AES-256-GCM (aws-lc-rs with the `aws-lc` feature, else ring) with the raw keys of
//! the Noise split, sealing and opening in place in our own frame buffers, and
//! Noise's `Rekey()`.
//!
//! Which library runs which cipher was measured (docs/BENCHMARKS.md, session 7;
//! `tools/examples/aead_compare.rs`, AMD EPYC with VAES and AVX-512): aws-lc-rs's
//! AES-256-GCM seals a full message in 16 % less time than ring's and opens it in
//! 8 % less; for ChaCha20-Poly1305 the two are level on full messages and ring is
//! 9 % faster on small ones, so it stays on ring.
//!
//! snow's transport API takes a plaintext and an output buffer and copies one into
//! the other before ring encrypts in place; doing it ourselves on the frame buffer
//! saves that copy (and a zero-fill) per transport message on each side. The bytes on
//! the wire are exactly Noise's cipher functions (Noise spec 5.1, 12.3 and 12.4): the
//! nonce is 4 zero bytes then the 64-bit counter, little-endian for `ChaChaPoly` and
//! big-endian for `AESGCM`; the associated data is empty, and the 16-byte tag
//! follows the ciphertext.
//!
//! Each key is used by one half only, which owns its direction's counter and
//! advances it once per message ([`next_nonce`]), so a nonce is never reused.

use zeroize::Zeroizing;

use crate::wire::error::{Bug, Result, Violation};
use crate::wire::suite::Suite;

// The library that runs AES-256-GCM: aws-lc-rs's assembly where it is built (the
// `aws-lc` feature), else ring's; both have ring's AEAD API.
#[cfg(feature = "aws-lc")]
use aws_lc_rs as aes;
#[cfg(not(feature = "aws-lc"))]
use ring as aes;

/// Seals `in_out` in place with `$key` (a `LessSafeKey` of `$lib`) and `$nonce`:
/// `Some(tag)`, or `None` if the library refuses.
macro_rules! seal_with {
    ($lib:ident, $key:expr, $nonce:expr, $in_out:expr) => {{
        use $lib::aead::{Aad, Nonce};
        $key.seal_in_place_separate_tag(Nonce::assume_unique_for_key($nonce), Aad::empty(), $in_out)
            .ok()
            .map(|tag| {
                let mut out = [0; TAG_LEN];
                out.copy_from_slice(tag.as_ref());
                out
            })
    }};
}

/// Opens `in_out` (ciphertext then tag) in place as `seal_with!` seals: `Some` of
/// the plaintext's length, or `None` if it does not authenticate.
macro_rules! open_with {
    ($lib:ident, $key:expr, $nonce:expr, $in_out:expr) => {{
        use $lib::aead::{Aad, Nonce};
        $key.open_in_place(Nonce::assume_unique_for_key($nonce), Aad::empty(), $in_out)
            .ok()
            .map(|plaintext| plaintext.len())
    }};
}

/// `$lib`'s key object for `$alg` under the raw key.
macro_rules! library_key {
    ($lib:ident, $alg:ident, $raw:expr) => {{
        use $lib::aead::{$alg, LessSafeKey, UnboundKey};
        LessSafeKey::new(
            UnboundKey::new(&$alg, $raw)
                .unwrap_or_else(|_| unreachable!("a 32-byte key is valid for both ciphers")),
        )
    }};
}

/// The authentication tag ChaChaPoly appends to every transport message.
pub const TAG_LEN: usize = 16;

/// The length of a raw cipher key from the Noise split.
pub const KEY_LEN: usize = 32;

/// Both directions' keys of a session, from the Noise split.
pub struct SessionKeys {
    /// Encrypts what this side sends.
    pub send: CipherKey,
    /// Decrypts what the peer sends.
    pub recv: CipherKey,
}

/// One direction's transport key, for its suite's cipher.
///
/// The 32 raw bytes are kept for the key's life, wiped on drop. The library's key
/// object is what encrypts. For ChaCha20-Poly1305 it is built on the stack for each
/// message: ChaCha20 has no key schedule, so that is a copy of 32 bytes, and ring's
/// `LessSafeKey` is sized for its largest algorithm (~0.5 KiB), too much to keep
/// in every session. For AES-256-GCM on AWS-LC it is built at the second message
/// and kept until [`release_expanded`](Self::release_expanded) or a rekey:
/// expanding an AES key (its schedule and GHASH table, which AWS-LC allocates,
/// about 650 bytes) costs more than sealing a small message, about 2,600
/// instructions per request and side (docs/BENCHMARKS.md, session 9). A session
/// that goes quiet releases it, and one that sends a single message never keeps
/// it, so idle sessions do not hold it. AWS-LC wipes it as it frees it (`OPENSSL_free`
/// cleanses), so keeping it leaves no key bytes behind; ring's AES key (without the
/// `aws-lc` feature) is a Rust value that is not wiped when dropped, so it stays on
/// the stack, built per message.
pub struct CipherKey {
    /// The raw key: the Noise split's, or its last `Rekey()`.
    raw: Zeroizing<[u8; KEY_LEN]>,
    /// Which cipher the key is for, and so the nonce encoding.
    suite: Suite,
    /// AES-256-GCM on AWS-LC: `raw` expanded, while the session is busy (boxed:
    /// 8 bytes in every session rather than 32, for one allocation per busy spell).
    #[cfg(feature = "aws-lc")]
    expanded: Option<Box<aws_lc_rs::aead::LessSafeKey>>,
    /// Whether a message used the key since it was released (or made): the
    /// next one keeps it expanded.
    #[cfg(feature = "aws-lc")]
    used_since_release: bool,
}

impl CipherKey {
    /// Takes a raw key from the Noise split (wiped when this key is dropped) for the
    /// cipher of `suite`.
    pub fn new(suite: Suite, raw: Zeroizing<[u8; KEY_LEN]>) -> Self {
        Self {
            raw,
            suite,
            #[cfg(feature = "aws-lc")]
            expanded: None,
            #[cfg(feature = "aws-lc")]
            used_since_release: false,
        }
    }

    /// Frees the library's expanded key, if one is kept (AES-256-GCM on AWS-LC), for
    /// a session gone quiet: the next message builds it again.
    pub fn release_expanded(&mut self) {
        #[cfg(feature = "aws-lc")]
        {
            self.expanded = None;
            self.used_since_release = false;
        }
    }

    /// Whether the library's expanded key is kept now.
    #[cfg(test)]
    pub(crate) fn holds_expanded(&self) -> bool {
        #[cfg(feature = "aws-lc")]
        return self.expanded.is_some();
        #[cfg(not(feature = "aws-lc"))]
        return false;
    }

    /// Runs `op` with the AES-256-GCM key object: the kept one, or one built now,
    /// which is kept if this is the second message since the key was released
    /// (or made). A session that sends one message and goes quiet, as most idle
    /// ones do, never holds it; one that goes on pays for one build per busy spell.
    #[cfg(feature = "aws-lc")]
    fn with_aes_key<T>(&mut self, op: impl FnOnce(&aws_lc_rs::aead::LessSafeKey) -> T) -> T {
        if let Some(key) = &self.expanded {
            return op(key);
        }
        let key = library_key!(aws_lc_rs, AES_256_GCM, self.raw.as_ref());
        let output = op(&key);
        if self.used_since_release {
            self.expanded = Some(Box::new(key));
        }
        self.used_since_release = true;
        output
    }

    /// Runs `op` with the AES-256-GCM key object on ring, built for this message
    /// (see the type).
    #[cfg(not(feature = "aws-lc"))]
    fn with_aes_key<T>(&mut self, op: impl FnOnce(&ring::aead::LessSafeKey) -> T) -> T {
        op(&library_key!(ring, AES_256_GCM, self.raw.as_ref()))
    }

    /// The suite this key's cipher belongs to.
    pub fn suite(&self) -> Suite {
        self.suite
    }

    /// A copy of this key, to follow its rekeys from the outside in tests.
    #[cfg(test)]
    pub(crate) fn duplicate(&self) -> Self {
        Self::new(self.suite, self.raw.clone())
    }

    /// Whether two keys are the same key for the same cipher.
    #[cfg(test)]
    pub(crate) fn same_key(&self, other: &CipherKey) -> bool {
        self.suite == other.suite && self.raw[..] == other.raw[..]
    }

    /// The 96-bit nonce of message `counter` for this key's cipher.
    fn nonce(&self, counter: u64) -> [u8; 12] {
        let mut bytes = [0; 12];
        match self.suite {
            Suite::ChaChaPolyBlake2s => bytes[4..].copy_from_slice(&counter.to_le_bytes()),
            Suite::AesGcmSha256 => bytes[4..].copy_from_slice(&counter.to_be_bytes()),
        }
        bytes
    }

    /// Noise's `Rekey()` (spec 11.3 and 4.2): the key becomes the first 32 bytes of
    /// the encryption of 32 zero bytes at nonce 2^64 - 1 with empty associated data.
    /// The message counter is not reset: nonces keep increasing across rekeys.
    ///
    /// # Errors
    /// [`Bug::Seal`] if the library refuses the encryption (it does not for 32
    /// bytes).
    pub fn rekey(&mut self) -> Result<()> {
        let mut next = Zeroizing::new([0u8; KEY_LEN]);
        // The tag is not part of the new key.
        let _tag = self.seal_in_place(u64::MAX, &mut next[..])?;
        self.raw = next;
        self.release_expanded();
        Ok(())
    }

    /// Encrypts `in_out` in place with `nonce` and returns the tag to append.
    ///
    /// # Errors
    /// [`Bug::Seal`] if the library refuses the encryption (it does not below
    /// 2^36 bytes, far above a transport message).
    pub fn seal_in_place(&mut self, nonce: u64, in_out: &mut [u8]) -> Result<[u8; TAG_LEN]> {
        let nonce = self.nonce(nonce);
        let tag = match self.suite {
            Suite::ChaChaPolyBlake2s => {
                let key = library_key!(ring, CHACHA20_POLY1305, self.raw.as_ref());
                seal_with!(ring, key, nonce, in_out)
            }
            Suite::AesGcmSha256 => self.with_aes_key(|key| seal_with!(aes, key, nonce, in_out)),
        };
        tag.ok_or_else(|| Bug::Seal.into())
    }

    /// Authenticates and decrypts `in_out` (ciphertext then tag) in place with
    /// `nonce`; returns the plaintext's length, at the start of `in_out`.
    ///
    /// # Errors
    /// [`Violation::TransportDecrypt`] when the message is shorter than a tag or
    /// does not authenticate: fatal to the session.
    pub fn open_in_place(&mut self, nonce: u64, in_out: &mut [u8]) -> Result<usize> {
        if in_out.len() < TAG_LEN {
            return Err(Violation::TransportDecrypt.into());
        }
        let nonce = self.nonce(nonce);
        let len = match self.suite {
            Suite::ChaChaPolyBlake2s => {
                let key = library_key!(ring, CHACHA20_POLY1305, self.raw.as_ref());
                open_with!(ring, key, nonce, in_out)
            }
            Suite::AesGcmSha256 => self.with_aes_key(|key| open_with!(aes, key, nonce, in_out)),
        };
        len.ok_or_else(|| Violation::TransportDecrypt.into())
    }
}

/// Returns the next nonce of a direction and advances its counter, refusing to
/// wrap (Noise reserves 2^64 - 1; we stop one short of it).
pub fn next_nonce(nonce: &mut u64) -> Result<u64> {
    let current = *nonce;
    *nonce = current.checked_add(1).ok_or(Bug::NonceExhausted)?;
    Ok(current)
}

#[cfg(test)]
mod tests {
    use super::*;
    use snow::params::NoiseParams;

    /// The in-place seal and open agree byte for byte with snow's transport state
    /// for the same handshake, for each suite's cipher, in both directions, at
    /// several nonces, and again after each side's `Rekey()`.
    #[test]
    fn in_place_cipher_matches_snow_transport() {
        for (suite, name) in [
            (
                Suite::ChaChaPolyBlake2s,
                "Noise_NN_25519_ChaChaPoly_BLAKE2s",
            ),
            (Suite::AesGcmSha256, "Noise_NN_25519_AESGCM_SHA256"),
        ] {
            let params: NoiseParams = name.parse().unwrap();
            let mut initiator = snow::Builder::new(params.clone())
                .build_initiator()
                .unwrap();
            let mut responder = snow::Builder::new(params).build_responder().unwrap();
            let mut buf = [0u8; 128];
            let mut scratch = [0u8; 128];
            let len = initiator.write_message(&[], &mut buf).unwrap();
            responder.read_message(&buf[..len], &mut scratch).unwrap();
            let len = responder.write_message(&[], &mut buf).unwrap();
            initiator.read_message(&buf[..len], &mut scratch).unwrap();
            let (i_send, i_recv) = initiator.dangerously_get_raw_split();
            let mut initiator = initiator.into_stateless_transport_mode().unwrap();
            let mut responder = responder.into_stateless_transport_mode().unwrap();
            let mut send = CipherKey::new(suite, Zeroizing::new(i_send));
            let mut recv = CipherKey::new(suite, Zeroizing::new(i_recv));
            for epoch in 0..3 {
                let context = format!("{suite} after {epoch} rekeys");
                agree_with_snow(&mut send, &mut recv, &initiator, &responder, &context);
                send.rekey().unwrap();
                recv.rekey().unwrap();
                initiator.rekey_outgoing();
                responder.rekey_incoming();
                initiator.rekey_incoming();
                responder.rekey_outgoing();
            }
        }
    }

    fn agree_with_snow(
        send: &mut CipherKey,
        recv: &mut CipherKey,
        initiator: &snow::StatelessTransportState,
        responder: &snow::StatelessTransportState,
        context: &str,
    ) {
        let plaintext = b"hello, transport".to_vec();
        for nonce in [0u64, 1, 255, 256, 1 << 40, u64::MAX - 1] {
            // Ours to snow's.
            let mut message = plaintext.clone();
            let tag = send.seal_in_place(nonce, &mut message).unwrap();
            message.extend_from_slice(&tag);
            let mut expected = vec![0; plaintext.len() + TAG_LEN];
            initiator
                .write_message(nonce, &plaintext, &mut expected)
                .unwrap();
            assert_eq!(message, expected, "{context}, nonce {nonce}");
            let mut out = vec![0; message.len()];
            let len = responder.read_message(nonce, &message, &mut out).unwrap();
            assert_eq!(&out[..len], plaintext);
            // Snow's to ours.
            let mut reply = vec![0; plaintext.len() + TAG_LEN];
            responder
                .write_message(nonce, &plaintext, &mut reply)
                .unwrap();
            let len = recv.open_in_place(nonce, &mut reply).unwrap();
            assert_eq!(&reply[..len], plaintext, "{context}, nonce {nonce}");
            // A flipped bit, the wrong nonce or a short message: refused.
            reply[0] ^= 1;
            assert!(recv.open_in_place(nonce, &mut reply).is_err());
            assert!(recv.open_in_place(nonce, &mut [0; TAG_LEN - 1]).is_err());
        }
    }

    /// The two suites' keys are not interchangeable: the same raw key and nonce
    /// give different ciphertexts, and one cannot open the other's.
    #[test]
    fn suites_differ() {
        let raw = || Zeroizing::new([9u8; KEY_LEN]);
        let mut chacha = CipherKey::new(Suite::ChaChaPolyBlake2s, raw());
        let mut aes = CipherKey::new(Suite::AesGcmSha256, raw());
        let mut message = b"same plaintext".to_vec();
        let tag = chacha.seal_in_place(7, &mut message).unwrap();
        message.extend_from_slice(&tag);
        assert!(aes.open_in_place(7, &mut message.clone()).is_err());
        assert!(chacha.open_in_place(7, &mut message).is_ok());
    }

    /// An AES key is kept from the second message on (seal or open), and a kept
    /// key seals and opens exactly as one built for each message; it is let go on
    /// release and on rekey, and kept again from the second message after that
    /// (with the new key after a rekey).
    #[test]
    fn a_kept_aes_key_is_released_and_rebuilt_without_changing_a_byte() {
        let raw = || Zeroizing::new([5u8; KEY_LEN]);
        let mut kept = CipherKey::new(Suite::AesGcmSha256, raw());
        // Released before every message: always built for that message alone.
        let mut fresh = CipherKey::new(Suite::AesGcmSha256, raw());
        let seal = |key: &mut CipherKey, nonce| {
            let mut message = b"kept or not".to_vec();
            let tag = key.seal_in_place(nonce, &mut message).unwrap();
            message.extend_from_slice(&tag);
            message
        };
        let seal_fresh = |fresh: &mut CipherKey, nonce| {
            fresh.release_expanded();
            let message = seal(fresh, nonce);
            assert!(!fresh.holds_expanded());
            message
        };
        let expanded = cfg!(feature = "aws-lc");
        assert_eq!(seal(&mut kept, 0), seal_fresh(&mut fresh, 0));
        assert!(!kept.holds_expanded(), "one message keeps nothing");
        assert_eq!(seal(&mut kept, 1), seal_fresh(&mut fresh, 1));
        assert_eq!(kept.holds_expanded(), expanded);
        assert_eq!(seal(&mut kept, 2), seal_fresh(&mut fresh, 2));
        kept.release_expanded();
        assert!(!kept.holds_expanded());
        // Opening counts as a use too.
        for nonce in 3..5 {
            let mut message = seal_fresh(&mut fresh, nonce);
            assert_eq!(kept.open_in_place(nonce, &mut message).unwrap(), 11);
        }
        assert_eq!(kept.holds_expanded(), expanded);
        // A rekey lets the old schedule go; the next messages use the new key.
        kept.rekey().unwrap();
        assert!(!kept.holds_expanded());
        fresh.rekey().unwrap();
        for nonce in 5..8 {
            assert_eq!(seal(&mut kept, nonce), seal_fresh(&mut fresh, nonce));
        }
        assert_eq!(kept.holds_expanded(), expanded);
        let mut stale = CipherKey::new(Suite::AesGcmSha256, raw());
        assert!(stale.open_in_place(8, &mut seal(&mut kept, 8)).is_err());
    }

    #[test]
    fn nonce_counter_stops_before_wrapping() {
        let mut nonce = u64::MAX - 1;
        assert_eq!(next_nonce(&mut nonce).unwrap(), u64::MAX - 1);
        assert!(next_nonce(&mut nonce).is_err());
        assert_eq!(nonce, u64::MAX);
    }
}
