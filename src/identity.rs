//! Ed25519 identities, their OpenSSH public-key text and fingerprints, and the
//! Noise static X25519 key pair derived from them (wire-v1 section 3).
//!
//! Every peer is one Ed25519 key pair, the same kind of key `ssh-keygen -t ed25519`
//! makes. Noise XX needs X25519 keys, so both are derived from the Ed25519 identity
//! the way libsodium's `crypto_sign_ed25519_{sk,pk}_to_curve25519` do it; the peer's
//! Ed25519 key travels in the handshake payload and must map onto the Noise static
//! key the peer actually used.

use std::fmt;
use std::str::FromStr;

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use base64::Engine as _;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use ed25519_dalek::SigningKey;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::openssh::lexer::read_ssh_string;

/// The OpenSSH name of the only key algorithm noise-echo accepts.
pub const SSH_ED25519: &str = "ssh-ed25519";

/// Length in bytes of an Ed25519 public key, and of its seed.
pub const ED25519_KEY_LEN: usize = 32;

/// The SSH wire encoding of an ed25519 public key: string "ssh-ed25519", string key.
const BLOB_LEN: usize = 4 + SSH_ED25519.len() + 4 + ED25519_KEY_LEN;

/// Why a byte string or a text line is not a usable Ed25519 public key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PublicKeyError {
    /// The key is of another algorithm (rsa, ecdsa...), which noise-echo does not support.
    #[error("unsupported key type '{0}': only ssh-ed25519 keys are supported")]
    UnsupportedType(String),
    /// Not exactly 32 bytes.
    #[error("an Ed25519 public key is 32 bytes, not {0}")]
    WrongLength(usize),
    /// The encoding is not canonical, does not decode to a curve point, or is a
    /// small-order point (which would make the Diffie-Hellman output predictable).
    #[error("not a valid Ed25519 public key (non-canonical, not on the curve, or of small order)")]
    InvalidPoint,
    /// The base64 text does not decode.
    #[error("the key's base64 text is malformed")]
    Base64,
    /// The decoded SSH key blob is not `string "ssh-ed25519", string key[32]`.
    #[error("the key blob is malformed")]
    MalformedBlob,
    /// The blob says one algorithm and the text field another.
    #[error("the key type field says '{text}' but the key blob says '{blob}'")]
    TypeMismatch {
        /// Algorithm named in the text line.
        text: String,
        /// Algorithm named inside the blob.
        blob: String,
    },
    /// The line has no key type or no key data.
    #[error("expected 'ssh-ed25519 BASE64 [comment]'")]
    MissingField,
}

/// Whether the y coordinate of an Ed25519 encoding (its low 255 bits, little-endian)
/// is below p = 2^255 - 19. The only values at or above p are p ..= 2^255 - 1: a low
/// byte of at least 0xed, then thirty 0xff bytes, then 0x7f once the sign bit is
/// masked off.
fn y_is_canonical(bytes: &[u8; ED25519_KEY_LEN]) -> bool {
    let at_least_p = bytes[0] >= 0xed
        && bytes[1..31].iter().all(|&byte| byte == 0xff)
        && bytes[31] & 0x7f == 0x7f;
    !at_least_p
}

/// A validated Ed25519 public key: canonically encoded, on the curve, not of small order.
///
/// Constructing one is the validation of wire-v1 section 7, so any `PublicKey` value
/// can be used in the handshake check and in trust files without re-checking.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey {
    /// The 32-byte compressed Edwards encoding (RFC 8032), as it appears in SSH blobs
    /// and in the handshake payload.
    bytes: [u8; ED25519_KEY_LEN],
}

impl PublicKey {
    /// Validates a 32-byte Ed25519 public key.
    ///
    /// # Errors
    /// [`PublicKeyError::WrongLength`] unless exactly 32 bytes;
    /// [`PublicKeyError::InvalidPoint`] when the encoding is non-canonical (y >= p, or
    /// x = 0 with the sign bit set), does not decode, or is one of the 8 small-order points.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, PublicKeyError> {
        Self::decode(bytes).map(|(key, _)| key)
    }

    /// [`PublicKey::from_bytes`], also returning the X25519 public key
    /// ([`PublicKey::to_x25519`]) from the same decoded point: the handshake needs
    /// both for every peer, and decoding a point costs a field exponentiation.
    ///
    /// # Errors
    /// As [`PublicKey::from_bytes`].
    pub(crate) fn from_bytes_with_x25519(bytes: &[u8]) -> Result<(Self, [u8; 32]), PublicKeyError> {
        Self::decode(bytes).map(|(key, point)| (key, point.to_montgomery().to_bytes()))
    }

    fn decode(bytes: &[u8]) -> Result<(Self, EdwardsPoint), PublicKeyError> {
        let bytes: [u8; ED25519_KEY_LEN] = bytes
            .try_into()
            .map_err(|_| PublicKeyError::WrongLength(bytes.len()))?;
        // decompress() reduces y mod p and ignores a sign bit on x = 0, so both are
        // checked here. x = 0 only for y = 1 and y = -1, two small-order points the
        // last check refuses, sign bit or not.
        if !y_is_canonical(&bytes) {
            return Err(PublicKeyError::InvalidPoint);
        }
        let point = CompressedEdwardsY(bytes)
            .decompress()
            .ok_or(PublicKeyError::InvalidPoint)?;
        if point.is_small_order() {
            return Err(PublicKeyError::InvalidPoint);
        }
        Ok((Self { bytes }, point))
    }

    /// The 32-byte Ed25519 encoding.
    pub fn as_bytes(&self) -> &[u8; ED25519_KEY_LEN] {
        &self.bytes
    }

    /// The X25519 public key (Montgomery u = (1 + y) / (1 - y)) this identity uses as
    /// its Noise static key.
    pub fn to_x25519(&self) -> [u8; 32] {
        // Validated in from_bytes, so decompression cannot fail here.
        CompressedEdwardsY(self.bytes)
            .decompress()
            .map(|point| point.to_montgomery().to_bytes())
            .unwrap_or_default()
    }

    /// The SSH wire-format key blob: `string "ssh-ed25519" || string key`.
    pub fn to_blob(&self) -> Vec<u8> {
        let mut blob = Vec::with_capacity(BLOB_LEN);
        blob.extend_from_slice(&(SSH_ED25519.len() as u32).to_be_bytes());
        blob.extend_from_slice(SSH_ED25519.as_bytes());
        blob.extend_from_slice(&(ED25519_KEY_LEN as u32).to_be_bytes());
        blob.extend_from_slice(&self.bytes);
        blob
    }

    /// Parses an SSH key blob, which must be an ssh-ed25519 key.
    ///
    /// # Errors
    /// [`PublicKeyError::UnsupportedType`] for other algorithms,
    /// [`PublicKeyError::MalformedBlob`] for anything that is not a well-formed blob,
    /// and the errors of [`PublicKey::from_bytes`].
    pub fn from_blob(blob: &[u8]) -> Result<Self, PublicKeyError> {
        let (algorithm, rest) = read_ssh_string(blob).ok_or(PublicKeyError::MalformedBlob)?;
        if algorithm != SSH_ED25519.as_bytes() {
            return Err(PublicKeyError::UnsupportedType(
                String::from_utf8_lossy(algorithm).into_owned(),
            ));
        }
        let (key, rest) = read_ssh_string(rest).ok_or(PublicKeyError::MalformedBlob)?;
        if !rest.is_empty() {
            return Err(PublicKeyError::MalformedBlob);
        }
        Self::from_bytes(key)
    }

    /// Parses the two key fields of an OpenSSH public key line: the algorithm name and
    /// the base64 blob. The name must agree with the blob.
    ///
    /// # Errors
    /// [`PublicKeyError::UnsupportedType`] when the name is not `ssh-ed25519`, and the
    /// errors of [`PublicKey::from_blob`].
    pub fn from_openssh_fields(algorithm: &str, base64_blob: &str) -> Result<Self, PublicKeyError> {
        if algorithm != SSH_ED25519 {
            return Err(PublicKeyError::UnsupportedType(algorithm.to_owned()));
        }
        let blob = STANDARD
            .decode(base64_blob)
            .map_err(|_| PublicKeyError::Base64)?;
        match Self::from_blob(&blob) {
            Err(PublicKeyError::UnsupportedType(blob_type)) => Err(PublicKeyError::TypeMismatch {
                text: algorithm.to_owned(),
                blob: blob_type,
            }),
            other => other,
        }
    }

    /// Parses a public key line as OpenSSH writes it: `ssh-ed25519 BASE64 [comment]`.
    /// Returns the key and its comment (empty when absent).
    ///
    /// # Errors
    /// [`PublicKeyError::MissingField`] when a field is missing, and the errors of
    /// [`PublicKey::from_openssh_fields`].
    pub fn parse_openssh_line(line: &str) -> Result<(Self, String), PublicKeyError> {
        let line = line.trim();
        let mut fields = line.splitn(2, char::is_whitespace);
        let algorithm = fields.next().filter(|field| !field.is_empty());
        let rest = fields.next().unwrap_or("").trim_start();
        let mut rest_fields = rest.splitn(2, char::is_whitespace);
        let blob = rest_fields.next().filter(|field| !field.is_empty());
        let comment = rest_fields.next().unwrap_or("").trim();
        match (algorithm, blob) {
            (Some(algorithm), Some(blob)) => Ok((
                Self::from_openssh_fields(algorithm, blob)?,
                comment.to_owned(),
            )),
            (Some(algorithm), None) if algorithm != SSH_ED25519 => {
                Err(PublicKeyError::UnsupportedType(algorithm.to_owned()))
            }
            _ => Err(PublicKeyError::MissingField),
        }
    }

    /// The OpenSSH public key line, `ssh-ed25519 BASE64` followed by ` comment` when
    /// the comment is not empty. No trailing newline.
    pub fn to_openssh_line(&self, comment: &str) -> String {
        let mut line = format!("{SSH_ED25519} {}", STANDARD.encode(self.to_blob()));
        if !comment.is_empty() {
            line.push(' ');
            line.push_str(comment);
        }
        line
    }

    /// The SHA-256 fingerprint, as `ssh-keygen -l` prints it.
    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint(Sha256::digest(self.to_blob()).into())
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.fingerprint())
    }
}

/// An OpenSSH SHA-256 key fingerprint: SHA-256 of the key blob.
///
/// Displays as `SHA256:` followed by unpadded base64, as `ssh-keygen -lf` prints it.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    /// The raw SHA-256 digest.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SHA256:{}", STANDARD_NO_PAD.encode(self.0))
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Why a text is not a fingerprint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not a SHA256 fingerprint (expected SHA256: and 43 base64 characters, as ssh-keygen -l prints)")]
pub struct ParseFingerprintError(String);

impl FromStr for Fingerprint {
    type Err = ParseFingerprintError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let error = || ParseFingerprintError(text.to_owned());
        let encoded = text.strip_prefix("SHA256:").ok_or_else(error)?;
        // Accept the padded form too: some tools print it.
        let encoded = encoded.strip_suffix('=').unwrap_or(encoded);
        let digest = STANDARD_NO_PAD.decode(encoded).map_err(|_| error())?;
        Ok(Self(digest.try_into().map_err(|_| error())?))
    }
}

/// An Ed25519 identity: the private seed, which never leaves this process, and a
/// comment (OpenSSH's, often `user@host`).
///
/// The seed is zeroized when the identity is dropped (`ed25519_dalek::SigningKey`
/// does that), and `Debug` shows only the public fingerprint.
#[derive(Clone)]
pub struct Identity {
    /// The Ed25519 secret: everything else about the identity is derived from it.
    signing_key: SigningKey,
    /// Free text stored with the key in OpenSSH files; shown next to fingerprints.
    comment: String,
}

impl Identity {
    /// Generates a new identity from the operating system's random source.
    pub fn generate(comment: impl Into<String>) -> Self {
        Self {
            signing_key: SigningKey::generate(&mut rand_core::OsRng),
            comment: comment.into(),
        }
    }

    /// Builds an identity from a 32-byte Ed25519 seed (RFC 8032's private key).
    pub fn from_seed(seed: &[u8; ED25519_KEY_LEN], comment: impl Into<String>) -> Self {
        Self {
            signing_key: SigningKey::from_bytes(seed),
            comment: comment.into(),
        }
    }

    /// The 32-byte Ed25519 seed. Handle with care: this is the secret.
    pub fn seed(&self) -> Zeroizing<[u8; ED25519_KEY_LEN]> {
        Zeroizing::new(self.signing_key.to_bytes())
    }

    /// The identity's public key.
    pub fn public_key(&self) -> PublicKey {
        // A key derived from a seed is always a valid, prime-order point.
        PublicKey {
            bytes: self.signing_key.verifying_key().to_bytes(),
        }
    }

    /// The comment stored with the key.
    pub fn comment(&self) -> &str {
        &self.comment
    }

    /// The Noise static X25519 key pair derived from this identity (wire-v1 section 3).
    ///
    /// Derive it once and keep it: this costs a SHA-512 and a point decompression.
    pub fn noise_keypair(&self) -> NoiseKeypair {
        NoiseKeypair {
            // The first half of SHA-512(seed), unclamped: X25519 clamps it itself.
            private: Zeroizing::new(self.signing_key.to_scalar_bytes()),
            public: self.public_key().to_x25519(),
        }
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("fingerprint", &self.public_key().fingerprint())
            .field("comment", &self.comment)
            .finish_non_exhaustive()
    }
}

/// A Noise static X25519 key pair derived from an [`Identity`].
#[derive(Clone)]
pub struct NoiseKeypair {
    /// The X25519 private scalar bytes, zeroized on drop.
    private: Zeroizing<[u8; 32]>,
    /// The X25519 public key (Montgomery u-coordinate).
    public: [u8; 32],
}

impl NoiseKeypair {
    /// The X25519 private key bytes, to hand to the Noise library.
    pub fn private(&self) -> &[u8; 32] {
        &self.private
    }

    /// The X25519 public key.
    pub fn public(&self) -> &[u8; 32] {
        &self.public
    }
}

impl fmt::Debug for NoiseKeypair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NoiseKeypair")
            .field("public", &STANDARD.encode(self.public))
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use curve25519_dalek::constants::EIGHT_TORSION;
    use curve25519_dalek::montgomery::MontgomeryPoint;

    /// The public key of RFC 8032's test 1 (seed 9d61b1...).
    const RFC8032_SEED: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
    const RFC8032_PUBLIC: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";

    fn hex(text: &str) -> [u8; 32] {
        let mut out = [0u8; 32];
        for (index, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&text[2 * index..2 * index + 2], 16).unwrap();
        }
        out
    }

    #[test]
    fn derived_x25519_private_key_matches_derived_public_key_for_many_identities() {
        for round in 0..256 {
            let identity = Identity::generate(format!("round {round}"));
            let noise = identity.noise_keypair();
            let from_private = MontgomeryPoint::mul_base_clamped(*noise.private());
            assert_eq!(from_private.to_bytes(), *noise.public(), "round {round}");
            // The responder side only sees the Ed25519 key: it must agree too.
            assert_eq!(identity.public_key().to_x25519(), *noise.public());
        }
    }

    #[test]
    fn rfc8032_seed_gives_rfc8032_public_key() {
        let identity = Identity::from_seed(&hex(RFC8032_SEED), "");
        assert_eq!(identity.public_key().as_bytes(), &hex(RFC8032_PUBLIC));
    }

    #[test]
    fn x25519_private_key_is_first_half_of_sha512_of_seed() {
        use sha2::Sha512;
        let seed = hex(RFC8032_SEED);
        let digest = Sha512::digest(seed);
        let identity = Identity::from_seed(&seed, "");
        assert_eq!(identity.noise_keypair().private()[..], digest[..32]);
    }

    #[test]
    fn small_order_points_are_refused() {
        for point in EIGHT_TORSION {
            let bytes = point.compress().to_bytes();
            assert_eq!(
                PublicKey::from_bytes(&bytes),
                Err(PublicKeyError::InvalidPoint)
            );
        }
    }

    #[test]
    fn non_canonical_encodings_are_refused() {
        // y = p (= 0 mod p) and y = p + 1 (the identity's y, encoded non-canonically).
        let mut y_is_p = [0xff_u8; 32];
        y_is_p[0] = 0xed;
        y_is_p[31] = 0x7f;
        assert_eq!(
            PublicKey::from_bytes(&y_is_p),
            Err(PublicKeyError::InvalidPoint)
        );
        let mut y_is_p_plus_one = y_is_p;
        y_is_p_plus_one[0] = 0xee;
        assert_eq!(
            PublicKey::from_bytes(&y_is_p_plus_one),
            Err(PublicKeyError::InvalidPoint)
        );
        // y = p + k for small k: the non-canonical twin of y = k. Wherever y = k is
        // a valid key (not of small order), its twin must still be refused.
        let mut twins_checked = 0;
        for k in 0u8..19 {
            let mut canonical = [0u8; 32];
            canonical[0] = k;
            let mut twin = y_is_p;
            twin[0] = 0xed + k;
            for sign in [0, 0x80] {
                canonical[31] = sign;
                twin[31] = 0x7f | sign;
                if PublicKey::from_bytes(&canonical).is_ok() {
                    twins_checked += 1;
                    assert_eq!(
                        PublicKey::from_bytes(&twin),
                        Err(PublicKeyError::InvalidPoint),
                        "y = p + {k}"
                    );
                }
            }
        }
        assert!(twins_checked > 0);
        // A valid key with the sign bit flipped where x = 0 is not possible for a
        // prime-order point, so flip it on y = 1 (the identity): x = 0, sign set.
        let mut negative_zero = [0u8; 32];
        negative_zero[0] = 1;
        negative_zero[31] = 0x80;
        assert_eq!(
            PublicKey::from_bytes(&negative_zero),
            Err(PublicKeyError::InvalidPoint)
        );
    }

    #[test]
    fn wrong_lengths_are_refused() {
        assert_eq!(
            PublicKey::from_bytes(&[0; 31]),
            Err(PublicKeyError::WrongLength(31))
        );
        assert_eq!(
            PublicKey::from_bytes(&[0; 33]),
            Err(PublicKeyError::WrongLength(33))
        );
    }

    #[test]
    fn openssh_line_round_trips_and_fingerprint_is_sha256_of_blob() {
        let identity = Identity::from_seed(&hex(RFC8032_SEED), "alice@example");
        let line = identity.public_key().to_openssh_line(identity.comment());
        assert!(
            line.starts_with("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI"),
            "{line}"
        );
        assert!(line.ends_with(" alice@example"));
        let (key, comment) = PublicKey::parse_openssh_line(&line).unwrap();
        assert_eq!(key, identity.public_key());
        assert_eq!(comment, "alice@example");
        let fingerprint = key.fingerprint();
        assert_eq!(
            fingerprint.as_bytes()[..],
            Sha256::digest(key.to_blob())[..]
        );
        let text = fingerprint.to_string();
        assert!(text.starts_with("SHA256:") && !text.ends_with('='));
        assert_eq!(text.len(), 7 + 43);
        assert_eq!(text.parse::<Fingerprint>().unwrap(), fingerprint);
    }

    #[test]
    fn comments_with_spaces_are_kept_and_missing_comments_are_empty() {
        let key = Identity::generate("").public_key();
        let line = key.to_openssh_line("");
        assert_eq!(line.split(' ').count(), 2);
        assert_eq!(PublicKey::parse_openssh_line(&line).unwrap().1, "");
        let spaced = key.to_openssh_line("work laptop  2026");
        assert_eq!(
            PublicKey::parse_openssh_line(&spaced).unwrap().1,
            "work laptop  2026"
        );
    }

    #[test]
    fn other_key_types_and_mismatched_blobs_are_refused_by_name() {
        let rsa = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQC7 user@host";
        assert_eq!(
            PublicKey::parse_openssh_line(rsa),
            Err(PublicKeyError::UnsupportedType("ssh-rsa".into()))
        );
        let key = Identity::generate("").public_key();
        let blob = STANDARD.encode(key.to_blob());
        let mut blob_says_rsa = key.to_blob();
        blob_says_rsa[4..15].copy_from_slice(b"ssh-rsa\0\0\0\0");
        assert!(PublicKey::from_blob(&blob_says_rsa).is_err());
        assert_eq!(
            PublicKey::from_openssh_fields("ssh-ed25519", "!!!"),
            Err(PublicKeyError::Base64)
        );
        assert_eq!(
            PublicKey::from_openssh_fields("ssh-ed25519", &blob[..20]),
            Err(PublicKeyError::MalformedBlob)
        );
        assert_eq!(
            PublicKey::parse_openssh_line("ssh-ed25519"),
            Err(PublicKeyError::MissingField)
        );
        assert_eq!(
            PublicKey::parse_openssh_line(""),
            Err(PublicKeyError::MissingField)
        );
        let mut long_blob = key.to_blob();
        long_blob.push(0);
        assert_eq!(
            PublicKey::from_blob(&long_blob),
            Err(PublicKeyError::MalformedBlob)
        );
    }

    #[test]
    fn debug_output_never_shows_the_seed() {
        let seed = hex(RFC8032_SEED);
        let identity = Identity::from_seed(&seed, "c");
        let debug = format!("{identity:?} {:?}", identity.noise_keypair());
        assert!(debug.contains("SHA256:"));
        for secret in [
            STANDARD.encode(seed),
            RFC8032_SEED.to_owned(),
            STANDARD.encode(identity.noise_keypair().private()),
            format!("{:?}", seed),
        ] {
            assert!(!debug.contains(&secret), "{debug}");
        }
    }
}
