//! OpenSSH key revocation lists (KRLs), the binary files `ssh-keygen -k` writes and
//! sshd reads through `RevokedKeys`: parsing (OpenSSH's PROTOCOL.krl, as krl.c's
//! `ssh_krl_from_blob` reads it) and the revocation checks of krl.c's
//! `ssh_krl_check_key`.
//!
//! A KRL revokes certificates by serial number (lists, ranges and bitmaps) or by key
//! ID, under one CA or under any CA; plain keys explicitly or by their SHA-1 or
//! SHA-256 fingerprint. A certificate is also revoked when its own key or its CA key
//! is.
//!
//! Keys are kept as the raw SSH blobs the KRL holds, of whatever type, and compared
//! with the blob of the key being checked: noise-echo's keys are Ed25519, whose blob
//! encoding is unique, so comparing blobs is comparing keys.
//!
//! **Signatures are ignored**, as OpenSSH does: the signature section
//! (`KRL_SECTION_SIGNATURE`) is skipped unverified. OpenSSH removed the checking of
//! KRL signatures (they were never used by sshd, and krl.c now skips them): a KRL's
//! integrity comes from how it is delivered, as for authorized_keys.
//!
//! Parsing works on the bytes in place and bounds every length by the bytes left, so
//! nothing is allocated for a length a file merely claims; what is kept grows at most
//! linearly with the input, whose size [`MAX_KRL_LEN`] bounds.

use std::fmt;

use sha1::Sha1;
use sha2::{Digest as _, Sha256};

use crate::identity::PublicKey;
use crate::openssh::certificate::Certificate;

/// The first 8 bytes of every KRL (`KRL_MAGIC`, "SSHKRL\n\0").
pub const KRL_MAGIC: &[u8; 8] = b"SSHKRL\n\0";

/// The only KRL format version there is (`KRL_FORMAT_VERSION`).
const KRL_FORMAT_VERSION: u32 = 1;

/// The largest KRL read: 64 MiB holds over a million revoked keys, and OpenSSH's
/// own buffers stop at 128 MiB.
pub const MAX_KRL_LEN: usize = 64 * 1024 * 1024;

/// The largest serial bitmap: OpenSSH reads it as an mpint of at most 2048 bytes
/// (`SSHBUF_MAX_BIGNUM`), plus the leading zero an mpint may need.
const MAX_BITMAP_LEN: usize = 2048 + 1;

const SECTION_CERTIFICATES: u8 = 1;
const SECTION_EXPLICIT_KEY: u8 = 2;
const SECTION_FINGERPRINT_SHA1: u8 = 3;
const SECTION_SIGNATURE: u8 = 4;
const SECTION_FINGERPRINT_SHA256: u8 = 5;
const SECTION_EXTENSION: u8 = 255;

const CERT_SERIAL_LIST: u8 = 0x20;
const CERT_SERIAL_RANGE: u8 = 0x21;
const CERT_SERIAL_BITMAP: u8 = 0x22;
const CERT_KEY_ID: u8 = 0x23;
const CERT_EXTENSION: u8 = 0x39;

/// Why a KRL could not be read. A KRL that fails to parse revokes nothing it could
/// be trusted to, so the caller must refuse every key rather than none (sshd does).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KrlError {
    /// The data does not start with [`KRL_MAGIC`]: not a KRL (sshd then reads the
    /// file as a list of keys).
    #[error("not an OpenSSH KRL (it does not start with \"SSHKRL\\n\\0\")")]
    BadMagic,
    /// More than [`MAX_KRL_LEN`] bytes.
    #[error("the KRL is {0} bytes, more than the {MAX_KRL_LEN} read")]
    TooLarge(usize),
    /// A format version other than 1.
    #[error("unsupported KRL format version {0} (only version 1 exists)")]
    UnsupportedVersion(u32),
    /// A malformed field, at a byte offset from the start of the KRL.
    #[error("malformed KRL at byte {offset}: {what}")]
    Malformed {
        /// Where the bad field starts.
        offset: usize,
        /// What is wrong with it.
        what: String,
    },
    /// A critical extension noise-echo does not know (OpenSSH knows none either).
    #[error("the KRL has the critical extension \"{0}\", which is not supported")]
    CriticalExtension(String),
}

/// A cursor over the KRL bytes that knows its offset, for the errors.
#[derive(Clone, Copy)]
struct Reader<'a> {
    data: &'a [u8],
    offset: usize,
}

impl<'a> Reader<'a> {
    fn new(data: &'a [u8], offset: usize) -> Self {
        Self { data, offset }
    }

    fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    fn error(&self, what: impl Into<String>) -> KrlError {
        KrlError::Malformed {
            offset: self.offset,
            what: what.into(),
        }
    }

    fn take(&mut self, len: usize, field: &str) -> Result<&'a [u8], KrlError> {
        if self.data.len() < len {
            return Err(self.error(format!(
                "truncated {field}: {len} bytes needed, {} left",
                self.data.len()
            )));
        }
        let (taken, rest) = self.data.split_at(len);
        self.data = rest;
        self.offset += len;
        Ok(taken)
    }

    fn u8(&mut self, field: &str) -> Result<u8, KrlError> {
        Ok(self.take(1, field)?[0])
    }

    fn u32(&mut self, field: &str) -> Result<u32, KrlError> {
        let bytes = self.take(4, field)?;
        Ok(u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }

    fn u64(&mut self, field: &str) -> Result<u64, KrlError> {
        let mut bytes = [0; 8];
        bytes.copy_from_slice(self.take(8, field)?);
        Ok(u64::from_be_bytes(bytes))
    }

    /// An SSH `string`; its length is checked against the bytes left before anything
    /// is taken.
    fn string(&mut self, field: &str) -> Result<&'a [u8], KrlError> {
        let start = *self;
        let len = self.u32(field)?;
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        if len > self.data.len() {
            return Err(start.error(format!(
                "truncated {field}: it claims {len} bytes, only {} are left",
                self.data.len()
            )));
        }
        self.take(len, field)
    }

    /// An SSH `string` read as a nested reader, keeping offsets absolute.
    fn section(&mut self, field: &str) -> Result<Reader<'a>, KrlError> {
        let data = self.string(field)?;
        Ok(Reader::new(data, self.offset - data.len()))
    }

    /// A C string as sshbuf_get_cstring reads it: no NUL inside.
    fn cstring(&mut self, field: &str) -> Result<&'a [u8], KrlError> {
        let start = *self;
        let value = self.string(field)?;
        if value.contains(&0) {
            return Err(start.error(format!("{field} contains a NUL byte")));
        }
        Ok(value)
    }
}

/// Serial numbers and key IDs revoked under one CA, or under any CA.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct CertificateRevocations {
    /// The CA's key blob; `None` for the section that applies to every CA.
    ca: Option<Vec<u8>>,
    /// Inclusive serial ranges, from lists and ranges; sorted and merged once parsed.
    serial_ranges: Vec<(u64, u64)>,
    /// Bitmaps as written (leading zeros dropped), sorted by offset once parsed:
    /// bit N of the big-endian integer revokes `offset + N`.
    bitmaps: Vec<(u64, Vec<u8>)>,
    /// Revoked key IDs, sorted once parsed.
    key_ids: Vec<Vec<u8>>,
}

impl CertificateRevocations {
    fn revokes(&self, certificate: &Certificate) -> Option<Revocation> {
        let key_id = certificate.key_id.as_bytes();
        if self
            .key_ids
            .binary_search_by(|id| id.as_slice().cmp(key_id))
            .is_ok()
        {
            return Some(Revocation::KeyId(certificate.key_id.clone()));
        }
        // Serial 0 is what a CA writes when it gives none: never revoked by serial.
        let serial = certificate.serial;
        if serial == 0 {
            return None;
        }
        let index = self.serial_ranges.partition_point(|&(lo, _)| lo <= serial);
        let in_range = index
            .checked_sub(1)
            .is_some_and(|i| self.serial_ranges[i].1 >= serial);
        // Bitmaps are sorted by offset and none spans more than MAX_BITMAP_LEN * 8
        // serials: only those starting within that distance below can hold it.
        let window = (MAX_BITMAP_LEN * 8) as u64;
        let end = self
            .bitmaps
            .partition_point(|&(offset, _)| offset <= serial);
        let in_bitmap = self.bitmaps[..end]
            .iter()
            .rev()
            .take_while(|&&(offset, _)| serial - offset < window)
            .any(|(offset, bitmap)| bitmap_has(*offset, bitmap, serial));
        (in_range || in_bitmap).then_some(Revocation::Serial(serial))
    }
}

/// Whether the bitmap (big-endian, bit 0 the last byte's lowest) revoking from
/// `offset` has the bit of `serial`.
fn bitmap_has(offset: u64, bitmap: &[u8], serial: u64) -> bool {
    let Some(bit) = serial.checked_sub(offset) else {
        return false;
    };
    let byte_from_end = usize::try_from(bit / 8).unwrap_or(usize::MAX);
    if byte_from_end >= bitmap.len() {
        return false;
    }
    bitmap[bitmap.len() - 1 - byte_from_end] & (1 << (bit % 8)) != 0
}

/// Why a key or certificate is revoked: what the KRL (or revoked-keys file) lists.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Revocation {
    /// The key itself (for a certificate: the key it certifies).
    Key,
    /// The certificate's CA key.
    CaKey,
    /// The certificate's serial number, under its CA.
    Serial(u64),
    /// The certificate's key ID, under its CA.
    KeyId(String),
}

impl fmt::Display for Revocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Key => f.write_str("the key is revoked"),
            Self::CaKey => f.write_str("the certificate's CA key is revoked"),
            Self::Serial(serial) => write!(f, "the certificate's serial {serial} is revoked"),
            Self::KeyId(id) => write!(f, "the certificate's key ID \"{id}\" is revoked"),
        }
    }
}

/// A parsed KRL.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Krl {
    /// The KRL's own version number (`ssh-keygen -k -z`), increasing on each update.
    pub version: u64,
    /// When it was generated, in seconds since the epoch.
    pub generated_date: u64,
    /// Its comment (`ssh-keygen -k -c`... as written; not necessarily UTF-8).
    pub comment: String,
    certificates: Vec<CertificateRevocations>,
    /// Explicitly revoked plain key blobs, sorted.
    explicit_keys: Vec<Vec<u8>>,
    /// SHA-1 digests of revoked key blobs, sorted.
    sha1: Vec<[u8; 20]>,
    /// SHA-256 digests of revoked key blobs, sorted.
    sha256: Vec<[u8; 32]>,
}

/// Counts of what a KRL revokes, for a log line and for tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KrlSummary {
    /// Certificate sections (one per CA, plus one for any CA).
    pub certificate_authorities: usize,
    /// Serial ranges (single serials count as ranges of one).
    pub serial_ranges: usize,
    /// Serial bitmaps.
    pub serial_bitmaps: usize,
    /// Key IDs.
    pub key_ids: usize,
    /// Explicit keys.
    pub explicit_keys: usize,
    /// SHA-1 fingerprints.
    pub sha1_fingerprints: usize,
    /// SHA-256 fingerprints.
    pub sha256_fingerprints: usize,
}

impl Krl {
    /// Parses a KRL as `ssh-keygen -k` writes it.
    ///
    /// # Errors
    /// [`KrlError::BadMagic`] when `data` is not a KRL at all, [`KrlError::TooLarge`],
    /// [`KrlError::UnsupportedVersion`], [`KrlError::CriticalExtension`], and
    /// [`KrlError::Malformed`] naming the byte offset of any other bad field (the
    /// same cases krl.c refuses: a truncated field, an unknown section type, trailing
    /// data in a section, a fingerprint of the wrong length, serial 0, a range whose
    /// end is below its start, a bitmap that is negative, too long or wraps).
    pub fn parse(data: &[u8]) -> Result<Self, KrlError> {
        if !data.starts_with(KRL_MAGIC) {
            return Err(KrlError::BadMagic);
        }
        if data.len() > MAX_KRL_LEN {
            return Err(KrlError::TooLarge(data.len()));
        }
        let mut reader = Reader::new(&data[KRL_MAGIC.len()..], KRL_MAGIC.len());
        let format_version = reader.u32("format version")?;
        if format_version != KRL_FORMAT_VERSION {
            return Err(KrlError::UnsupportedVersion(format_version));
        }
        let mut krl = Krl {
            version: reader.u64("KRL version")?,
            generated_date: reader.u64("generated date")?,
            ..Krl::default()
        };
        // The flags (none defined) and the reserved field are ignored, as krl.c does.
        reader.u64("flags")?;
        reader.string("reserved field")?;
        krl.comment = String::from_utf8_lossy(reader.cstring("comment")?).into_owned();
        while !reader.is_empty() {
            let section_type = reader.u8("section type")?;
            let mut section = reader.section("section")?;
            match section_type {
                SECTION_CERTIFICATES => krl.parse_certificates(&mut section)?,
                SECTION_EXPLICIT_KEY => {
                    while !section.is_empty() {
                        krl.explicit_keys
                            .push(section.string("revoked key")?.to_vec());
                    }
                }
                SECTION_FINGERPRINT_SHA1 => {
                    while !section.is_empty() {
                        krl.sha1
                            .push(fixed_hash(&mut section, "SHA-1 fingerprint")?);
                    }
                }
                SECTION_FINGERPRINT_SHA256 => {
                    while !section.is_empty() {
                        krl.sha256
                            .push(fixed_hash(&mut section, "SHA-256 fingerprint")?);
                    }
                }
                SECTION_EXTENSION => extension(&mut section, "")?,
                SECTION_SIGNATURE => {
                    // The section's string was the signing key; the signature
                    // follows as a second string. Skipped, not verified: see the
                    // module documentation.
                    reader.string("signature")?;
                    continue;
                }
                other => return Err(section.error(format!("unknown section type {other}"))),
            }
            if !section.is_empty() {
                return Err(section.error("unparsed data at the end of a section"));
            }
        }
        krl.explicit_keys.sort_unstable();
        krl.explicit_keys.dedup();
        krl.sha1.sort_unstable();
        krl.sha1.dedup();
        krl.sha256.sort_unstable();
        krl.sha256.dedup();
        for revocations in &mut krl.certificates {
            revocations.serial_ranges =
                merge_ranges(std::mem::take(&mut revocations.serial_ranges));
            revocations.bitmaps.sort_unstable();
            revocations.key_ids.sort_unstable();
            revocations.key_ids.dedup();
        }
        Ok(krl)
    }

    /// A certificates section: the CA, then subsections of serials and key IDs.
    fn parse_certificates(&mut self, section: &mut Reader<'_>) -> Result<(), KrlError> {
        let ca = section.string("CA key")?;
        section.string("reserved field")?;
        let ca = (!ca.is_empty()).then(|| ca.to_vec());
        // Sections for the same CA add up, as krl.c merges them into one.
        let index = match self.certificates.iter().position(|entry| entry.ca == ca) {
            Some(index) => index,
            None => {
                self.certificates.push(CertificateRevocations {
                    ca,
                    ..CertificateRevocations::default()
                });
                self.certificates.len() - 1
            }
        };
        let revocations = &mut self.certificates[index];
        while !section.is_empty() {
            let subsection_type = section.u8("certificate subsection type")?;
            let mut subsection = section.section("certificate subsection")?;
            match subsection_type {
                CERT_SERIAL_LIST => {
                    while !subsection.is_empty() {
                        let at = subsection;
                        let serial = subsection.u64("serial")?;
                        if serial == 0 {
                            return Err(at.error("serial 0 cannot be revoked"));
                        }
                        revocations.serial_ranges.push((serial, serial));
                    }
                }
                CERT_SERIAL_RANGE => {
                    let at = subsection;
                    let lo = subsection.u64("serial range start")?;
                    let hi = subsection.u64("serial range end")?;
                    if lo == 0 || lo > hi {
                        return Err(at.error(format!("invalid serial range {lo}-{hi}")));
                    }
                    revocations.serial_ranges.push((lo, hi));
                }
                CERT_SERIAL_BITMAP => {
                    let offset = subsection.u64("bitmap offset")?;
                    let at = subsection;
                    let bitmap = subsection.string("serial bitmap")?;
                    revocations
                        .bitmaps
                        .push(bitmap_section(at, offset, bitmap)?);
                }
                CERT_KEY_ID => {
                    while !subsection.is_empty() {
                        revocations
                            .key_ids
                            .push(subsection.cstring("key ID")?.to_vec());
                    }
                }
                CERT_EXTENSION => extension(&mut subsection, "certificate ")?,
                other => {
                    return Err(
                        subsection.error(format!("unknown certificate subsection type {other}"))
                    )
                }
            }
            if !subsection.is_empty() {
                return Err(
                    subsection.error("unparsed data at the end of a certificate subsection")
                );
            }
        }
        Ok(())
    }

    /// Counts of what the KRL revokes.
    pub fn summary(&self) -> KrlSummary {
        KrlSummary {
            certificate_authorities: self.certificates.len(),
            serial_ranges: self
                .certificates
                .iter()
                .map(|c| c.serial_ranges.len())
                .sum(),
            serial_bitmaps: self.certificates.iter().map(|c| c.bitmaps.len()).sum(),
            key_ids: self.certificates.iter().map(|c| c.key_ids.len()).sum(),
            explicit_keys: self.explicit_keys.len(),
            sha1_fingerprints: self.sha1.len(),
            sha256_fingerprints: self.sha256.len(),
        }
    }

    /// Whether a plain key is revoked: explicitly, or by its SHA-1 or SHA-256
    /// fingerprint (krl.c's `is_key_revoked` for a key).
    pub fn is_revoked_key(&self, key: &PublicKey) -> bool {
        let blob = key.to_blob();
        let sha1: [u8; 20] = Sha1::digest(&blob).into();
        let sha256: [u8; 32] = Sha256::digest(&blob).into();
        self.sha1.binary_search(&sha1).is_ok()
            || self.sha256.binary_search(&sha256).is_ok()
            || self.explicit_keys.binary_search(&blob).is_ok()
    }

    /// Why a certificate is revoked, if it is: its key is revoked, its serial or key
    /// ID is revoked under its CA or under any CA, or its CA key is revoked (krl.c's
    /// `ssh_krl_check_key`, in its order).
    pub fn certificate_revocation(&self, certificate: &Certificate) -> Option<Revocation> {
        if self.is_revoked_key(&certificate.key) {
            return Some(Revocation::Key);
        }
        let ca = certificate.signature_key.to_blob();
        let under_ca = self
            .certificates
            .iter()
            .find(|entry| entry.ca.as_deref() == Some(ca.as_slice()));
        let under_any = self.certificates.iter().find(|entry| entry.ca.is_none());
        if let Some(revocation) = under_ca
            .into_iter()
            .chain(under_any)
            .find_map(|entry| entry.revokes(certificate))
        {
            return Some(revocation);
        }
        self.is_revoked_key(&certificate.signature_key)
            .then_some(Revocation::CaKey)
    }

    /// Whether a certificate is revoked ([`Krl::certificate_revocation`] says why).
    pub fn is_revoked_certificate(&self, certificate: &Certificate) -> bool {
        self.certificate_revocation(certificate).is_some()
    }
}

/// A fingerprint of exactly `N` bytes.
fn fixed_hash<const N: usize>(section: &mut Reader<'_>, field: &str) -> Result<[u8; N], KrlError> {
    let at = *section;
    let hash = section.string(field)?;
    hash.try_into()
        .map_err(|_| at.error(format!("{field} of {} bytes, {N} expected", hash.len())))
}

/// A serial bitmap as OpenSSH reads its mpint: not negative, at most
/// [`MAX_BITMAP_LEN`] bytes, leading zeros dropped, and no bit at serial 0 or past
/// `u64::MAX`.
fn bitmap_section(at: Reader<'_>, offset: u64, bitmap: &[u8]) -> Result<(u64, Vec<u8>), KrlError> {
    if bitmap.first().is_some_and(|byte| byte & 0x80 != 0) {
        return Err(at.error("the serial bitmap is a negative number"));
    }
    if bitmap.len() > MAX_BITMAP_LEN || (bitmap.len() == MAX_BITMAP_LEN && bitmap[0] != 0) {
        return Err(at.error(format!(
            "the serial bitmap is {} bytes, more than the {} OpenSSH reads",
            bitmap.len(),
            MAX_BITMAP_LEN - 1
        )));
    }
    let start = bitmap
        .iter()
        .position(|&byte| byte != 0)
        .unwrap_or(bitmap.len());
    let bitmap = &bitmap[start..];
    if let Some(&top) = bitmap.first() {
        // The highest bit set: its serial must not pass u64::MAX.
        let bits = (bitmap.len() - 1) * 8 + (8 - top.leading_zeros() as usize);
        let highest = u64::try_from(bits - 1).unwrap_or(u64::MAX);
        if offset.checked_add(highest).is_none() {
            return Err(at.error("the serial bitmap runs past the largest serial"));
        }
        if offset == 0 && bitmap[bitmap.len() - 1] & 1 != 0 {
            return Err(at.error("serial 0 cannot be revoked"));
        }
    }
    Ok((offset, bitmap.to_vec()))
}

/// An extension section or subsection: `string name, boolean critical, string
/// contents`. No extension is known, so a critical one refuses the KRL.
fn extension(section: &mut Reader<'_>, kind: &str) -> Result<(), KrlError> {
    let name = section.cstring(&format!("{kind}extension name"))?;
    let critical = section.u8(&format!("{kind}extension criticality"))?;
    section.string(&format!("{kind}extension contents"))?;
    if critical != 0 {
        return Err(KrlError::CriticalExtension(
            String::from_utf8_lossy(name).into_owned(),
        ));
    }
    Ok(())
}

/// Sorts inclusive ranges and merges those that overlap or touch.
fn merge_ranges(mut ranges: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    ranges.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::with_capacity(ranges.len());
    for (lo, hi) in ranges {
        match merged.last_mut() {
            Some(last) if lo <= last.1.saturating_add(1) => last.1 = last.1.max(hi),
            _ => merged.push((lo, hi)),
        }
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Identity;

    fn string(data: &[u8]) -> Vec<u8> {
        let mut out = (data.len() as u32).to_be_bytes().to_vec();
        out.extend_from_slice(data);
        out
    }

    /// A KRL header (version 7, generated at 1000, comment "c") then `sections`.
    fn krl(sections: &[(u8, Vec<u8>)]) -> Vec<u8> {
        let mut out = KRL_MAGIC.to_vec();
        out.extend_from_slice(&1u32.to_be_bytes());
        out.extend_from_slice(&7u64.to_be_bytes());
        out.extend_from_slice(&1000u64.to_be_bytes());
        out.extend_from_slice(&0u64.to_be_bytes());
        out.extend(string(b""));
        out.extend(string(b"c"));
        for (section_type, data) in sections {
            out.push(*section_type);
            out.extend(string(data));
        }
        out
    }

    /// A certificates section for `ca` (empty: any CA) with `subsections`.
    fn certificates(ca: &[u8], subsections: &[(u8, Vec<u8>)]) -> (u8, Vec<u8>) {
        let mut data = string(ca);
        data.extend(string(b""));
        for (kind, body) in subsections {
            data.push(*kind);
            data.extend(string(body));
        }
        (SECTION_CERTIFICATES, data)
    }

    fn serials(list: &[u64]) -> Vec<u8> {
        list.iter()
            .flat_map(|serial| serial.to_be_bytes())
            .collect()
    }

    fn malformed(bytes: &[u8]) -> String {
        match Krl::parse(bytes) {
            Err(KrlError::Malformed { what, .. }) => what,
            other => panic!("expected Malformed, got {other:?}"),
        }
    }

    #[test]
    fn the_header_is_read_and_checked() {
        let parsed = Krl::parse(&krl(&[])).unwrap();
        assert_eq!((parsed.version, parsed.generated_date), (7, 1000));
        assert_eq!(parsed.comment, "c");
        assert_eq!(Krl::parse(b"SSHKRL"), Err(KrlError::BadMagic));
        assert_eq!(Krl::parse(b"ssh-ed25519 AAAA"), Err(KrlError::BadMagic));
        let mut version_2 = krl(&[]);
        version_2[11] = 2;
        assert_eq!(Krl::parse(&version_2), Err(KrlError::UnsupportedVersion(2)));
        let header = krl(&[]);
        for cut in KRL_MAGIC.len()..header.len() {
            assert!(
                malformed(&header[..cut]).contains("truncated"),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn signatures_are_skipped_and_extensions_obey_their_criticality() {
        let key = Identity::generate("").public_key();
        let mut bytes = krl(&[(SECTION_EXPLICIT_KEY, string(&key.to_blob()))]);
        // A signature section: the signing key, then the signature string.
        bytes.push(SECTION_SIGNATURE);
        bytes.extend(string(b"ca key blob"));
        bytes.extend(string(b"signature"));
        assert!(Krl::parse(&bytes).unwrap().is_revoked_key(&key));

        let extension = |critical: u8| {
            let mut data = string(b"x@example.org");
            data.push(critical);
            data.extend(string(b"body"));
            data
        };
        assert!(Krl::parse(&krl(&[(SECTION_EXTENSION, extension(0))])).is_ok());
        assert_eq!(
            Krl::parse(&krl(&[(SECTION_EXTENSION, extension(1))])),
            Err(KrlError::CriticalExtension("x@example.org".to_owned()))
        );
        let sub = certificates(b"", &[(CERT_EXTENSION, extension(1))]);
        assert!(matches!(
            Krl::parse(&krl(&[sub])),
            Err(KrlError::CriticalExtension(_))
        ));
        assert!(Krl::parse(&krl(&[certificates(
            b"",
            &[(CERT_EXTENSION, extension(0))]
        )]))
        .is_ok());
    }

    #[test]
    fn what_krl_c_refuses_is_refused() {
        assert!(malformed(&krl(&[(9, Vec::new())])).contains("unknown section type 9"));
        assert!(malformed(&krl(&[certificates(b"", &[(0x30, Vec::new())])]))
            .contains("unknown certificate subsection"));
        assert!(
            malformed(&krl(&[(SECTION_FINGERPRINT_SHA256, string(&[0; 31]))]))
                .contains("31 bytes, 32 expected")
        );
        assert!(
            malformed(&krl(&[(SECTION_FINGERPRINT_SHA1, string(&[0; 32]))]))
                .contains("32 bytes, 20 expected")
        );
        let serial_0 = certificates(b"", &[(CERT_SERIAL_LIST, serials(&[3, 0]))]);
        assert!(malformed(&krl(&[serial_0])).contains("serial 0"));
        let backwards = certificates(b"", &[(CERT_SERIAL_RANGE, serials(&[9, 3]))]);
        assert!(malformed(&krl(&[backwards])).contains("invalid serial range 9-3"));
        let long_range = certificates(b"", &[(CERT_SERIAL_RANGE, serials(&[1, 2, 3]))]);
        assert!(malformed(&krl(&[long_range])).contains("unparsed data"));
        let bitmap = |offset: u64, bits: &[u8]| {
            let mut body = offset.to_be_bytes().to_vec();
            body.extend(string(bits));
            certificates(b"", &[(CERT_SERIAL_BITMAP, body)])
        };
        assert!(malformed(&krl(&[bitmap(0, &[0x01])])).contains("serial 0"));
        assert!(malformed(&krl(&[bitmap(1, &[0x80])])).contains("negative"));
        assert!(malformed(&krl(&[bitmap(u64::MAX, &[0x02])])).contains("past the largest"));
        assert!(malformed(&krl(&[bitmap(1, &vec![1; MAX_BITMAP_LEN])])).contains("more than"));
        assert!(Krl::parse(&krl(&[bitmap(u64::MAX, &[0x01])])).is_ok());
        // A string that claims more than is left is refused before anything is taken.
        let mut claims = krl(&[]);
        claims.push(SECTION_EXPLICIT_KEY);
        claims.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(malformed(&claims).contains("claims 4294967295 bytes"));
        let key_id_nul = certificates(b"", &[(CERT_KEY_ID, string(b"a\0b"))]);
        assert!(malformed(&krl(&[key_id_nul])).contains("NUL"));
    }

    #[test]
    fn serials_lists_ranges_and_bitmaps_revoke_under_their_ca_only() {
        let ca = Identity::generate("").public_key();
        let other_ca = Identity::generate("").public_key();
        let mut bitmap = 100u64.to_be_bytes().to_vec();
        // Bits 0, 9 and 16: serials 100, 109, 116 (a leading zero byte is allowed).
        bitmap.extend(string(&[0x00, 0x01, 0x02, 0x01]));
        let bytes = krl(&[
            certificates(
                &ca.to_blob(),
                &[
                    (CERT_SERIAL_LIST, serials(&[5, 3])),
                    (CERT_SERIAL_RANGE, serials(&[10, 20])),
                    (CERT_SERIAL_BITMAP, bitmap),
                ],
            ),
            // A second section for the same CA adds to the first.
            certificates(&ca.to_blob(), &[(CERT_SERIAL_RANGE, serials(&[21, 30]))]),
            certificates(
                b"",
                &[(CERT_KEY_ID, [string(b"gone"), string(b"lost")].concat())],
            ),
        ]);
        let parsed = Krl::parse(&bytes).unwrap();
        // 3, 5, and 10-30 merged into one range.
        assert_eq!(parsed.summary().serial_ranges, 3);
        assert_eq!(parsed.summary().certificate_authorities, 2);
        let certificate = |serial: u64, signer: PublicKey, key_id: &str| Certificate {
            key: Identity::generate("").public_key(),
            serial,
            cert_type: crate::openssh::certificate::CertType::User,
            key_id: key_id.to_owned(),
            principals: vec!["alice".to_owned()],
            valid_after: 0,
            valid_before: u64::MAX,
            critical_options: Vec::new(),
            extensions: Vec::new(),
            signature_key: signer,
        };
        let revoked: Vec<u64> = (0..130)
            .filter(|&serial| parsed.is_revoked_certificate(&certificate(serial, ca, "id")))
            .collect();
        let expected: Vec<u64> = [3, 5]
            .into_iter()
            .chain(10..=30)
            .chain([100, 109, 116])
            .collect();
        assert_eq!(revoked, expected);
        assert!(!parsed.is_revoked_certificate(&certificate(5, other_ca, "id")));
        assert_eq!(
            parsed.certificate_revocation(&certificate(0, other_ca, "lost")),
            Some(Revocation::KeyId("lost".to_owned()))
        );
        assert!(!parsed.is_revoked_certificate(&certificate(0, ca, "kept")));
    }

    #[test]
    fn fingerprints_revoke_keys_and_the_certificates_of_them() {
        let key = Identity::generate("").public_key();
        let ca = Identity::generate("").public_key();
        let blob = key.to_blob();
        let sha1: [u8; 20] = Sha1::digest(&blob).into();
        let sha256: [u8; 32] = Sha256::digest(ca.to_blob()).into();
        let by_sha1 = Krl::parse(&krl(&[(SECTION_FINGERPRINT_SHA1, string(&sha1))])).unwrap();
        let by_sha256 = Krl::parse(&krl(&[(SECTION_FINGERPRINT_SHA256, string(&sha256))])).unwrap();
        assert!(by_sha1.is_revoked_key(&key) && !by_sha1.is_revoked_key(&ca));
        assert!(by_sha256.is_revoked_key(&ca) && !by_sha256.is_revoked_key(&key));
        assert_eq!(
            merge_ranges(vec![(5, 9), (1, 2), (3, 4), (u64::MAX, u64::MAX)]),
            [(1, 9), (u64::MAX, u64::MAX)]
        );
        assert!(
            bitmap_has(0, &[0x80], 7) && !bitmap_has(0, &[0x80], 6) && !bitmap_has(8, &[0xff], 3)
        );
    }
}
