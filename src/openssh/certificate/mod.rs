//! OpenSSH user and host certificates (`ssh-ed25519-cert-v01@openssh.com`, as
//! `ssh-keygen -s` makes them): decoding, and the checks a server makes before it
//! trusts a user certificate the way sshd does (PROTOCOL.certkeys, sshd's
//! `sshkey_cert_check_authority` and `sshauthopt_from_cert`).
//!
//! The decoder is this module's own, not the ssh-key crate's: ssh-key 0.6.7 refuses a
//! `valid before` above `i64::MAX` ("invalid time"), and `u64::MAX` is what
//! `ssh-keygen` writes for `forever`, its default. Only Ed25519 certificates signed by
//! an Ed25519 CA are read: noise-echo keys are Ed25519, and a CA of another type is
//! refused with an error naming it.
//!
//! [`check_user_certificate`] runs the checks in the order sshd does and stops at the
//! first failure, which [`CertificateError`] names for the server's log and the denial.

use std::fmt;
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ed25519_dalek::{Signature, VerifyingKey};

use crate::identity::{Fingerprint, PublicKey, SSH_ED25519};
use crate::openssh::authorized_keys::{CertAuthority, Denial};
use crate::openssh::lexer::read_ssh_string;
use crate::openssh::pattern::AddressPatterns;

/// The certificate key type noise-echo reads.
pub const ED25519_CERT: &str = "ssh-ed25519-cert-v01@openssh.com";

/// How far ahead of the server's clock a certificate's `valid after` may be and the
/// certificate still be accepted: a CA whose clock runs a little fast must not make
/// a certificate it just issued unusable. Expiry is not extended: a certificate never
/// outlives what its CA granted.
pub const CLOCK_SKEW: Duration = Duration::from_secs(60);

/// The largest certificate blob decoded: an Ed25519 certificate is about 300 bytes
/// plus its principals and options; this bounds what a hostile peer makes us parse.
pub const MAX_CERTIFICATE_LEN: usize = 16 * 1024;

/// The `source-address` critical option, the only one noise-echo honours.
const SOURCE_ADDRESS: &str = "source-address";

/// Whom a certificate is for: a user (client) or a host (server).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertType {
    /// `SSH2_CERT_TYPE_USER` (1): identifies a client.
    User,
    /// `SSH2_CERT_TYPE_HOST` (2): identifies a server.
    Host,
}

impl fmt::Display for CertType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::User => "user",
            Self::Host => "host",
        })
    }
}

/// A decoded certificate whose CA signature has been verified (but not yet trusted:
/// that is [`check_user_certificate`]'s work).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Certificate {
    /// The certified key: the one the holder must prove it has.
    pub key: PublicKey,
    /// The CA's serial number, for revocation and logs.
    pub serial: u64,
    /// User or host.
    pub cert_type: CertType,
    /// The CA's free-text name for the certificate (`-I`), for logs.
    pub key_id: String,
    /// The names the certificate is valid for (`-n`); empty means none.
    pub principals: Vec<String>,
    /// Seconds since the epoch from which the certificate is valid.
    pub valid_after: u64,
    /// Seconds since the epoch from which it no longer is (`u64::MAX`: forever).
    pub valid_before: u64,
    /// Critical options (name, data) in the order written: a verifier must refuse
    /// the certificate if it does not understand one. The data of the known ones is
    /// one SSH string ([`option_value`]); it stays raw so a listing can show others.
    pub critical_options: Vec<(String, Vec<u8>)>,
    /// Extension names (`permit-pty`...), informative only.
    pub extensions: Vec<String>,
    /// The CA key that signed it.
    pub signature_key: PublicKey,
}

/// Why a certificate is refused: which check failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CertificateError {
    /// The bytes are not a well-formed certificate.
    #[error("malformed certificate: {0}")]
    Malformed(String),
    /// A certificate of a key type noise-echo does not use.
    #[error("certificate type {0} is not supported: noise-echo uses {ED25519_CERT}")]
    UnsupportedType(String),
    /// The CA key is not Ed25519.
    #[error("certificate signed by a {0} CA: noise-echo trusts ssh-ed25519 CAs only")]
    UnsupportedCa(String),
    /// The CA's signature does not verify: forged or damaged.
    #[error("certificate signature does not verify")]
    BadSignature,
    /// The certificate certifies another key than the one the handshake authenticated.
    #[error("certificate is for key {certified}, not the authenticated key {authenticated}")]
    KeyMismatch {
        /// The key in the certificate.
        certified: Fingerprint,
        /// The key the handshake proved.
        authenticated: Fingerprint,
    },
    /// No `cert-authority` line trusts the signing CA.
    #[error("certificate signed by CA {0}, which is not trusted")]
    UntrustedCa(Fingerprint),
    /// A host certificate offered as a user's, or the reverse.
    #[error("certificate is a {found} certificate, a {expected} certificate is needed")]
    WrongType {
        /// The type needed.
        expected: CertType,
        /// The certificate's type.
        found: CertType,
    },
    /// `valid after` is still ahead (beyond [`CLOCK_SKEW`]).
    #[error("certificate is not valid before {}", format_time(*.0))]
    NotYetValid(u64),
    /// `valid before` has passed.
    #[error("certificate expired on {}", format_time(*.0))]
    Expired(u64),
    /// A critical option noise-echo does not honour (sshd refuses unknown ones).
    #[error("certificate has the critical option {0}, which noise-echo does not support")]
    UnsupportedCriticalOption(String),
    /// `source-address` does not admit the client address.
    #[error("certificate is not valid from {addr} (source-address {list})")]
    SourceAddress {
        /// The client address.
        addr: IpAddr,
        /// The option's value.
        list: String,
    },
    /// The certificate names no principal: sshd refuses such a user certificate too.
    #[error("certificate names no principals")]
    NoPrincipals,
    /// None of the certificate's principals is in a trusting line's `principals=`.
    #[error("certificate principals {} are not accepted", .principals.join(","))]
    PrincipalNotAllowed {
        /// The certificate's principals.
        principals: Vec<String>,
        /// The first line trusting the CA, for the log.
        line: usize,
    },
    /// The `cert-authority` line's own `from=` or `expiry-time=` refuses it.
    #[error(transparent)]
    Line(Denial),
    /// A host certificate whose principals do not name the host connected to.
    #[error("host certificate is not valid for {host} (its principals: {})", .principals.join(","))]
    HostNotCertified {
        /// The name the client connected to.
        host: String,
        /// The certificate's principals.
        principals: Vec<String>,
    },
    /// Too long to travel in a protocol v2 handshake payload.
    #[error("certificate of {len} bytes is longer than the {max} bytes a handshake carries")]
    TooLargeForHandshake {
        /// The blob's length.
        len: usize,
        /// The largest that fits.
        max: usize,
    },
}

impl CertificateError {
    /// The authorized_keys line that decided, when one did.
    pub fn line(&self) -> Option<usize> {
        match self {
            Self::PrincipalNotAllowed { line, .. } => Some(*line),
            Self::Line(denial) => denial.line(),
            _ => None,
        }
    }
}

/// A certificate accepted by [`check_user_certificate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted<'a> {
    /// The certificate.
    pub certificate: Certificate,
    /// The line that trusted it.
    pub authority: &'a CertAuthority,
    /// The principal it was admitted as, for the log.
    pub principal: String,
}

/// `YYYY-MM-DDTHH:MM:SS` UTC, as `ssh-keygen -L` prints validity (but in UTC), or
/// `forever`.
pub fn format_time(secs: u64) -> String {
    if secs == u64::MAX {
        return "forever".to_owned();
    }
    let days = secs / 86_400;
    let rest = secs % 86_400;
    let (year, month, day) = crate::openssh::authorized_keys::civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// Reads an SSH `uint64`.
fn read_u64(data: &[u8]) -> Option<(u64, &[u8])> {
    let (bytes, rest) = data.split_first_chunk::<8>()?;
    Some((u64::from_be_bytes(*bytes), rest))
}

/// Reads an SSH `uint32`.
fn read_u32(data: &[u8]) -> Option<(u32, &[u8])> {
    let (bytes, rest) = data.split_first_chunk::<4>()?;
    Some((u32::from_be_bytes(*bytes), rest))
}

/// Cursor over a certificate blob: each read names the field for the error.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn string(&mut self, field: &str) -> Result<&'a [u8], CertificateError> {
        let (value, rest) = read_ssh_string(self.0).ok_or_else(|| truncated(field))?;
        self.0 = rest;
        Ok(value)
    }

    fn text(&mut self, field: &str) -> Result<String, CertificateError> {
        let bytes = self.string(field)?;
        String::from_utf8(bytes.to_vec())
            .map_err(|_| CertificateError::Malformed(format!("{field} is not UTF-8")))
    }

    fn u64(&mut self, field: &str) -> Result<u64, CertificateError> {
        let (value, rest) = read_u64(self.0).ok_or_else(|| truncated(field))?;
        self.0 = rest;
        Ok(value)
    }

    fn u32(&mut self, field: &str) -> Result<u32, CertificateError> {
        let (value, rest) = read_u32(self.0).ok_or_else(|| truncated(field))?;
        self.0 = rest;
        Ok(value)
    }
}

fn truncated(field: &str) -> CertificateError {
    CertificateError::Malformed(format!("truncated at the {field}"))
}

/// An Ed25519 key blob (`string "ssh-ed25519"`, `string key`) to its key.
fn ed25519_blob(blob: &[u8], what: &str) -> Result<PublicKey, CertificateError> {
    let mut reader = Reader(blob);
    let key_type = reader.string(what)?;
    if key_type != SSH_ED25519.as_bytes() {
        return Err(CertificateError::UnsupportedCa(
            String::from_utf8_lossy(key_type).into_owned(),
        ));
    }
    let key = reader.string(what)?;
    if !reader.0.is_empty() {
        return Err(CertificateError::Malformed(format!(
            "bytes after the {what}"
        )));
    }
    PublicKey::from_bytes(key)
        .map_err(|error| CertificateError::Malformed(format!("{what}: {error}")))
}

impl Certificate {
    /// Decodes a certificate blob (as in a `-cert.pub` file's base64, or on the wire)
    /// and verifies its CA signature.
    ///
    /// # Errors
    /// [`CertificateError::Malformed`] for bad encoding (also more than
    /// [`MAX_CERTIFICATE_LEN`] bytes), [`CertificateError::UnsupportedType`],
    /// [`CertificateError::UnsupportedCa`], [`CertificateError::BadSignature`].
    pub fn from_blob(blob: &[u8]) -> Result<Self, CertificateError> {
        if blob.len() > MAX_CERTIFICATE_LEN {
            return Err(CertificateError::Malformed(format!(
                "{} bytes, more than the {MAX_CERTIFICATE_LEN} accepted",
                blob.len()
            )));
        }
        let mut reader = Reader(blob);
        let key_type = reader.string("key type")?;
        if key_type != ED25519_CERT.as_bytes() {
            return Err(CertificateError::UnsupportedType(
                String::from_utf8_lossy(key_type).into_owned(),
            ));
        }
        reader.string("nonce")?;
        let key = PublicKey::from_bytes(reader.string("public key")?)
            .map_err(|error| CertificateError::Malformed(format!("public key: {error}")))?;
        let serial = reader.u64("serial")?;
        let cert_type = match reader.u32("type")? {
            1 => CertType::User,
            2 => CertType::Host,
            other => {
                return Err(CertificateError::Malformed(format!(
                    "unknown certificate type {other}"
                )))
            }
        };
        let key_id = reader.text("key id")?;
        let principals = packed_strings(reader.string("principals")?, "principals")?;
        let valid_after = reader.u64("valid after")?;
        let valid_before = reader.u64("valid before")?;
        let critical_options = options(reader.string("critical options")?, "critical options")?;
        let extensions = options(reader.string("extensions")?, "extensions")?
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        reader.string("reserved")?;
        let signature_key = ed25519_blob(reader.string("signature key")?, "signature key")?;
        let signed_len = blob.len() - reader.0.len();
        let signature_blob = reader.string("signature")?;
        if !reader.0.is_empty() {
            return Err(CertificateError::Malformed(
                "bytes after the signature".to_owned(),
            ));
        }
        let mut signature_reader = Reader(signature_blob);
        if signature_reader.string("signature")? != SSH_ED25519.as_bytes() {
            return Err(CertificateError::BadSignature);
        }
        let signature = Signature::from_slice(signature_reader.string("signature")?)
            .map_err(|_| CertificateError::BadSignature)?;
        if !signature_reader.0.is_empty() {
            return Err(CertificateError::Malformed(
                "bytes after the signature".to_owned(),
            ));
        }
        VerifyingKey::from_bytes(signature_key.as_bytes())
            .and_then(|ca| ca.verify_strict(&blob[..signed_len], &signature))
            .map_err(|_| CertificateError::BadSignature)?;
        Ok(Self {
            key,
            serial,
            cert_type,
            key_id,
            principals,
            valid_after,
            valid_before,
            critical_options,
            extensions,
            signature_key,
        })
    }

    /// Decodes the first line of a `-cert.pub` file: `TYPE BASE64 [comment]`.
    ///
    /// # Errors
    /// As [`Certificate::from_blob`], and [`CertificateError::Malformed`] when the line
    /// is not `TYPE BASE64` or the type field disagrees with the blob.
    pub fn from_openssh_line(line: &str) -> Result<Self, CertificateError> {
        use base64::engine::general_purpose::STANDARD;
        use base64::Engine as _;
        let mut fields = line.split_ascii_whitespace();
        let (Some(key_type), Some(data)) = (fields.next(), fields.next()) else {
            return Err(CertificateError::Malformed(
                "expected 'TYPE BASE64 [comment]'".to_owned(),
            ));
        };
        if key_type != ED25519_CERT {
            return Err(CertificateError::UnsupportedType(key_type.to_owned()));
        }
        if data.len() > MAX_CERTIFICATE_LEN * 4 / 3 + 4 {
            return Err(CertificateError::Malformed(
                "the base64 field is too long".to_owned(),
            ));
        }
        let blob = STANDARD
            .decode(data)
            .map_err(|error| CertificateError::Malformed(format!("base64: {error}")))?;
        Self::from_blob(&blob)
    }

    /// The `valid after`/`valid before` checks at `now`, with [`CLOCK_SKEW`] on the start.
    ///
    /// # Errors
    /// [`CertificateError::NotYetValid`] or [`CertificateError::Expired`].
    pub fn check_validity(&self, now: SystemTime) -> Result<(), CertificateError> {
        // Before 1970 is no time a certificate can be checked at: treat it as 0.
        let now = now
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        if now.saturating_add(CLOCK_SKEW.as_secs()) < self.valid_after {
            return Err(CertificateError::NotYetValid(self.valid_after));
        }
        if now >= self.valid_before {
            return Err(CertificateError::Expired(self.valid_before));
        }
        Ok(())
    }

    /// The critical options checked against the client address: `source-address`
    /// must admit it, and any other option refuses the certificate.
    ///
    /// # Errors
    /// [`CertificateError::UnsupportedCriticalOption`], [`CertificateError::SourceAddress`],
    /// or [`CertificateError::Malformed`] for a `source-address` that is not a list of
    /// addresses and CIDR networks.
    pub fn check_critical_options(&self, client_addr: IpAddr) -> Result<(), CertificateError> {
        for (name, data) in &self.critical_options {
            if name != SOURCE_ADDRESS {
                return Err(CertificateError::UnsupportedCriticalOption(name.clone()));
            }
            let value = option_value(data).ok_or_else(|| {
                CertificateError::Malformed("source-address is not one string".to_owned())
            })?;
            // sshd reads it with addr_match_cidr_list: addresses and networks only,
            // no wildcards or negation (which AddressPatterns would take).
            let only_cidr = !value.is_empty()
                && value.split(',').all(|entry| {
                    let (addr, len) = entry.split_once('/').unwrap_or((entry, ""));
                    addr.parse::<IpAddr>().is_ok() && (len.is_empty() || len.parse::<u8>().is_ok())
                });
            let patterns = AddressPatterns::parse(&value)
                .ok()
                .filter(|_| only_cidr)
                .ok_or_else(|| {
                    CertificateError::Malformed(format!(
                        "source-address \"{value}\" is not a list of addresses and networks"
                    ))
                })?;
            if !patterns.matches(client_addr) {
                return Err(CertificateError::SourceAddress {
                    addr: client_addr.to_canonical(),
                    list: value,
                });
            }
        }
        Ok(())
    }
}

/// A packed list of SSH strings (the principals field).
fn packed_strings(mut data: &[u8], field: &str) -> Result<Vec<String>, CertificateError> {
    let mut out = Vec::new();
    while !data.is_empty() {
        let (value, rest) = read_ssh_string(data).ok_or_else(|| truncated(field))?;
        out.push(
            String::from_utf8(value.to_vec())
                .map_err(|_| CertificateError::Malformed(format!("{field}: not UTF-8")))?,
        );
        data = rest;
    }
    Ok(out)
}

/// The value of a known option: its data is exactly one UTF-8 SSH string.
pub fn option_value(data: &[u8]) -> Option<String> {
    let (value, rest) = read_ssh_string(data)?;
    rest.is_empty().then_some(())?;
    String::from_utf8(value.to_vec()).ok()
}

/// Critical options or extensions: pairs of `string name`, `string data`. Names must
/// be unique, as sshd requires.
fn options(mut data: &[u8], field: &str) -> Result<Vec<(String, Vec<u8>)>, CertificateError> {
    let mut out: Vec<(String, Vec<u8>)> = Vec::new();
    while !data.is_empty() {
        let mut reader = Reader(data);
        let name = reader.text(field)?;
        let inner = reader.string(field)?;
        data = reader.0;
        if out.iter().any(|(seen, _)| *seen == name) {
            return Err(CertificateError::Malformed(format!(
                "{field}: {name} appears twice"
            )));
        }
        out.push((name, inner.to_vec()));
    }
    Ok(out)
}

/// Decides whether `blob`, offered by a client that proved `authenticated` from
/// `client_addr`, is a user certificate one of `authorities` trusts at `now`.
///
/// The checks, in order: the encoding and the CA signature; the certificate key is
/// `authenticated`; some line trusts the CA; the type is user; the validity window
/// (with [`CLOCK_SKEW`]); the critical options (`source-address` against
/// `client_addr`, any other refuses); the certificate names principals; then the lines
/// trusting the CA, in file order, until one admits a principal and its own `from=`
/// and `expiry-time=` admit the connection.
///
/// # Errors
/// The [`CertificateError`] of the first check that fails; for the lines, the first
/// line's refusal.
pub fn check_user_certificate<'a>(
    blob: &[u8],
    authenticated: &PublicKey,
    authorities: &'a [CertAuthority],
    client_addr: IpAddr,
    now: SystemTime,
) -> Result<Accepted<'a>, CertificateError> {
    let certificate = Certificate::from_blob(blob)?;
    let (authority, principal) =
        certificate.check_user_against(authenticated, authorities, client_addr, now)?;
    let principal = principal.to_owned();
    Ok(Accepted {
        certificate,
        authority,
        principal,
    })
}

impl Certificate {
    /// [`check_user_certificate`] for a certificate already decoded (as the handshake
    /// does: `Established::peer_certificate`): returns the line that admitted it and
    /// the principal it was admitted as.
    ///
    /// # Errors
    /// As [`check_user_certificate`], from the key check on.
    pub fn check_user_against<'a, 'c>(
        &'c self,
        authenticated: &PublicKey,
        authorities: &'a [CertAuthority],
        client_addr: IpAddr,
        now: SystemTime,
    ) -> Result<(&'a CertAuthority, &'c str), CertificateError> {
        self.check_key(authenticated)?;
        let mut trusting = authorities
            .iter()
            .filter(|authority| authority.key == self.signature_key)
            .peekable();
        if trusting.peek().is_none() {
            return Err(CertificateError::UntrustedCa(
                self.signature_key.fingerprint(),
            ));
        }
        self.check_user_terms(client_addr, now)?;
        let mut first_refusal = None;
        for authority in trusting {
            let refusal = match authority.admitted_principal(&self.principals) {
                None => CertificateError::PrincipalNotAllowed {
                    principals: self.principals.clone(),
                    line: authority.line,
                },
                Some(principal) => match authority.permits(client_addr, now) {
                    Ok(()) => return Ok((authority, principal)),
                    Err(denial) => CertificateError::Line(denial),
                },
            };
            first_refusal.get_or_insert(refusal);
        }
        // `trusting` was not empty, so some line refused.
        Err(first_refusal
            .unwrap_or_else(|| CertificateError::UntrustedCa(self.signature_key.fingerprint())))
    }

    /// The certificate certifies `authenticated`, the key the handshake proved.
    ///
    /// # Errors
    /// [`CertificateError::KeyMismatch`].
    pub fn check_key(&self, authenticated: &PublicKey) -> Result<(), CertificateError> {
        if self.key != *authenticated {
            return Err(CertificateError::KeyMismatch {
                certified: self.key.fingerprint(),
                authenticated: authenticated.fingerprint(),
            });
        }
        Ok(())
    }

    /// What a user certificate must satisfy whichever CA list trusts it, in sshd's
    /// order: the type is user, the validity window holds at `now` (with
    /// [`CLOCK_SKEW`]), the critical options admit `client_addr`, and it names
    /// principals.
    ///
    /// # Errors
    /// [`CertificateError::WrongType`], [`CertificateError::NotYetValid`],
    /// [`CertificateError::Expired`], the errors of
    /// [`check_critical_options`](Self::check_critical_options),
    /// [`CertificateError::NoPrincipals`].
    pub fn check_user_terms(
        &self,
        client_addr: IpAddr,
        now: SystemTime,
    ) -> Result<(), CertificateError> {
        if self.cert_type != CertType::User {
            return Err(CertificateError::WrongType {
                expected: CertType::User,
                found: self.cert_type,
            });
        }
        self.check_validity(now)?;
        self.check_critical_options(client_addr)?;
        if self.principals.is_empty() {
            return Err(CertificateError::NoPrincipals);
        }
        Ok(())
    }
}

mod listing;

#[cfg(test)]
mod tests;
