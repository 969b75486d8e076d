//! The payloads of protocol v2's handshake messages 2 and 3 (docs/PROTOCOL.md,
//! "Handshake payloads"): a sequence of fields `type u16 | len u16 | value`, so later
//! versions can add what v1's fixed 32-byte key could not (a certificate, limits).
//!
//! Bit 15 of a type marks it critical: a receiver that does not know a critical
//! field aborts, and skips an unknown non-critical one. Decoding checks every length
//! against what remains before it reads (or allocates) anything, and the whole
//! payload against [`MAX_V2_PAYLOAD`] first.
//!
//! The optional openssh_certificate field ([`FIELD_OPENSSH_CERTIFICATE`]) carries an
//! OpenSSH certificate blob; [`certificate_for`] is the handshake's check of it (it
//! parses, it is Ed25519, it certifies the key the handshake authenticated). Whether
//! its CA is trusted is the caller's policy (authorized_keys, known_hosts).

use std::fmt;
use std::time::Duration;

use crate::identity::PublicKey;
use crate::openssh::certificate::{Certificate, CertificateError};
use crate::wire::error::PayloadProblem;
use crate::wire::rekey::RekeyPolicy;

/// The largest v2 handshake payload.
pub const MAX_V2_PAYLOAD: usize = 4096;

/// Field type of the sender's Ed25519 public key (critical; messages 2 and 3).
pub const FIELD_IDENTITY_ED25519: u16 = 0x8001;
/// Field type of the largest REQUEST body the server accepts (message 2).
pub const FIELD_MAX_REQUEST: u16 = 0x0002;
/// Field type of the server's rekey policy (message 2).
pub const FIELD_REKEY_POLICY: u16 = 0x0003;

/// Field type of an OpenSSH certificate for the sender's key (messages 2 and 3;
/// optional, not critical): a receiver that does not check certificates skips it
/// and judges the key alone, as sshd falls back from a certificate to the plain key.
pub const FIELD_OPENSSH_CERTIFICATE: u16 = 0x0004;

/// Bit 15 of a field type: a receiver that does not know the field must abort.
pub const CRITICAL: u16 = 0x8000;

/// Bytes of a field's type and length.
const FIELD_HEADER_LEN: usize = 4;
const IDENTITY_LEN: usize = 32;
const MAX_REQUEST_LEN: usize = 4;
const REKEY_POLICY_LEN: usize = 20;

/// The smallest message 2 payload: its three required fields.
pub const MIN_MESSAGE2_PAYLOAD: usize =
    3 * FIELD_HEADER_LEN + IDENTITY_LEN + MAX_REQUEST_LEN + REKEY_POLICY_LEN;
/// The smallest message 3 payload: the identity field.
pub const MIN_MESSAGE3_PAYLOAD: usize = FIELD_HEADER_LEN + IDENTITY_LEN;

/// The largest certificate blob a handshake carries: what fits in message 2 beside
/// its required fields (message 3 has 20 bytes more room; one bound serves both, so
/// an identity's certificate fits whichever side it plays). An Ed25519 certificate
/// is about 300 bytes plus its principals and options.
pub const MAX_CERTIFICATE_FIELD: usize = MAX_V2_PAYLOAD - MIN_MESSAGE2_PAYLOAD - FIELD_HEADER_LEN;

/// What is wrong with a peer's openssh_certificate field, at the handshake level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CertificateProblem {
    /// Not a well-formed certificate blob (or an empty field).
    Malformed,
    /// A certificate of another key type than `ssh-ed25519-cert-v01@openssh.com`.
    NotEd25519,
    /// Signed by a CA key that is not Ed25519.
    CaNotEd25519,
    /// The CA's signature does not verify over the certificate.
    BadSignature,
    /// It certifies another key than the one the peer proved it holds.
    KeyMismatch,
}

impl fmt::Display for CertificateProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Malformed => "a malformed OpenSSH certificate",
            Self::NotEd25519 => "a certificate that is not ssh-ed25519-cert-v01@openssh.com",
            Self::CaNotEd25519 => "a certificate signed by a CA key that is not Ed25519",
            Self::BadSignature => "a certificate whose CA signature does not verify",
            Self::KeyMismatch => "a certificate for another key than the one the peer proved",
        })
    }
}

/// The handshake's check of a received certificate blob: it decodes (its CA
/// signature verifies), it is an Ed25519 certificate, and it certifies
/// `authenticated`, the key the handshake proved the peer holds.
///
/// # Errors
/// [`PayloadProblem::Certificate`] naming the [`CertificateProblem`].
pub fn certificate_for(
    blob: &[u8],
    authenticated: &PublicKey,
) -> Result<Certificate, PayloadProblem> {
    let certificate = Certificate::from_blob(blob).map_err(|error| {
        PayloadProblem::Certificate(match error {
            CertificateError::UnsupportedType(_) => CertificateProblem::NotEd25519,
            CertificateError::UnsupportedCa(_) => CertificateProblem::CaNotEd25519,
            CertificateError::BadSignature => CertificateProblem::BadSignature,
            _ => CertificateProblem::Malformed,
        })
    })?;
    if certificate.key != *authenticated {
        return Err(PayloadProblem::Certificate(CertificateProblem::KeyMismatch));
    }
    Ok(certificate)
}

/// What a v2 server tells the client in message 2, authenticated by the handshake.
///
/// Non-exhaustive: a later parameter (a new field of message 2) is not a breaking
/// change; build it with [`ServerParams::new`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerParams {
    /// The largest REQUEST body the server accepts: the client refuses a longer one
    /// before sending it.
    pub max_request: u32,
    /// When both directions must rekey.
    pub rekey: RekeyPolicy,
}

impl ServerParams {
    /// The parameters of a server accepting requests of up to `max_request` bytes
    /// and rekeying by `rekey`.
    pub const fn new(max_request: u32, rekey: RekeyPolicy) -> Self {
        Self { max_request, rekey }
    }
}

/// The fields of a message 2 payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Message2Payload<'a> {
    /// The server's Ed25519 public key, as sent (the handshake validates it).
    pub identity: [u8; IDENTITY_LEN],
    /// The server's parameters.
    pub params: ServerParams,
    /// The server's host certificate blob, if it sent one (not yet checked).
    pub certificate: Option<&'a [u8]>,
}

/// The fields of a message 3 payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Message3Payload<'a> {
    /// The client's Ed25519 public key, as sent (the handshake validates it).
    pub identity: [u8; IDENTITY_LEN],
    /// The client's user certificate blob, if it sent one (not yet checked).
    pub certificate: Option<&'a [u8]>,
}

/// The rekey policy as the wire carries it: whole seconds (at least 1, at most
/// `u32::MAX`) and counts of at least 1. Both ends run exactly this one.
pub fn wire_rekey_policy(policy: RekeyPolicy) -> RekeyPolicy {
    let seconds = policy.max_interval.as_secs().clamp(1, u64::from(u32::MAX));
    RekeyPolicy {
        max_messages: policy.max_messages.max(1),
        max_bytes: policy.max_bytes.max(1),
        max_interval: Duration::from_secs(seconds),
    }
}

fn push_field(out: &mut Vec<u8>, field: u16, value: &[u8]) {
    out.extend_from_slice(&field.to_be_bytes());
    out.extend_from_slice(&(value.len() as u16).to_be_bytes());
    out.extend_from_slice(value);
}

/// Encodes a message 2 payload without a certificate, fields in table order.
pub fn encode_message2(identity: &[u8; IDENTITY_LEN], params: &ServerParams) -> Vec<u8> {
    encode_message2_with_certificate(identity, params, None)
}

/// Encodes a message 2 payload, fields in table order, with the server's host
/// certificate blob last when there is one. The caller keeps the blob within
/// [`MAX_CERTIFICATE_FIELD`] (`LocalIdentity::with_certificate` checks it).
pub fn encode_message2_with_certificate(
    identity: &[u8; IDENTITY_LEN],
    params: &ServerParams,
    certificate: Option<&[u8]>,
) -> Vec<u8> {
    let rekey = wire_rekey_policy(params.rekey);
    let mut policy = [0u8; REKEY_POLICY_LEN];
    policy[..8].copy_from_slice(&rekey.max_messages.to_be_bytes());
    policy[8..16].copy_from_slice(&rekey.max_bytes.to_be_bytes());
    // Clamped to u32 by wire_rekey_policy.
    let seconds = rekey.max_interval.as_secs() as u32;
    policy[16..].copy_from_slice(&seconds.to_be_bytes());
    let extra = certificate.map_or(0, |blob| FIELD_HEADER_LEN + blob.len());
    let mut out = Vec::with_capacity(MIN_MESSAGE2_PAYLOAD + extra);
    push_field(&mut out, FIELD_IDENTITY_ED25519, identity);
    push_field(
        &mut out,
        FIELD_MAX_REQUEST,
        &params.max_request.to_be_bytes(),
    );
    push_field(&mut out, FIELD_REKEY_POLICY, &policy);
    if let Some(blob) = certificate {
        push_field(&mut out, FIELD_OPENSSH_CERTIFICATE, blob);
    }
    out
}

/// Encodes a message 3 payload without a certificate.
pub fn encode_message3(identity: &[u8; IDENTITY_LEN]) -> Vec<u8> {
    encode_message3_with_certificate(identity, None)
}

/// Encodes a message 3 payload, with the client's user certificate blob after the
/// identity when there is one (within [`MAX_CERTIFICATE_FIELD`], as for message 2).
pub fn encode_message3_with_certificate(
    identity: &[u8; IDENTITY_LEN],
    certificate: Option<&[u8]>,
) -> Vec<u8> {
    let extra = certificate.map_or(0, |blob| FIELD_HEADER_LEN + blob.len());
    let mut out = Vec::with_capacity(MIN_MESSAGE3_PAYLOAD + extra);
    push_field(&mut out, FIELD_IDENTITY_ED25519, identity);
    if let Some(blob) = certificate {
        push_field(&mut out, FIELD_OPENSSH_CERTIFICATE, blob);
    }
    out
}

/// Walks the fields of `payload`, calling `known` for each type of `required` and
/// `optional` and checking the rest: duplicates, overruns, unknown critical fields,
/// known fields of the other message, and missing required fields are refused.
fn walk<'a>(
    payload: &'a [u8],
    required: &[u16],
    optional: &[u16],
    mut known: impl FnMut(u16, &'a [u8]) -> Result<(), PayloadProblem>,
) -> Result<(), PayloadProblem> {
    if payload.len() > MAX_V2_PAYLOAD {
        return Err(PayloadProblem::TooLong(payload.len()));
    }
    // Every known type, whichever message it belongs to.
    const ALL_KNOWN: [u16; 4] = [
        FIELD_IDENTITY_ED25519,
        FIELD_MAX_REQUEST,
        FIELD_REKEY_POLICY,
        FIELD_OPENSSH_CERTIFICATE,
    ];
    let mut seen: Vec<u16> = Vec::new();
    let mut rest = payload;
    // Bounded: each turn consumes at least the 4-byte header of a <= 4096-byte input.
    while !rest.is_empty() {
        let Some((header, after)) = rest.split_first_chunk::<FIELD_HEADER_LEN>() else {
            return Err(PayloadProblem::TruncatedField {
                remaining: rest.len(),
            });
        };
        let field = u16::from_be_bytes([header[0], header[1]]);
        let len = usize::from(u16::from_be_bytes([header[2], header[3]]));
        if len > after.len() {
            return Err(PayloadProblem::FieldOverrun {
                field,
                len,
                remaining: after.len(),
            });
        }
        let (value, after) = after.split_at(len);
        rest = after;
        if seen.contains(&field) {
            return Err(PayloadProblem::DuplicateField(field));
        }
        // At most MAX_V2_PAYLOAD / 4 entries, and usually 1 to 3.
        seen.push(field);
        if required.contains(&field) || optional.contains(&field) {
            known(field, value)?;
        } else if ALL_KNOWN.contains(&field) {
            return Err(PayloadProblem::FieldInWrongMessage(field));
        } else if field & CRITICAL != 0 {
            return Err(PayloadProblem::UnknownCriticalField(field));
        }
    }
    if let Some(&missing) = required.iter().find(|field| !seen.contains(field)) {
        return Err(PayloadProblem::MissingField(missing));
    }
    Ok(())
}

fn fixed<const N: usize>(field: u16, value: &[u8]) -> Result<[u8; N], PayloadProblem> {
    value.try_into().map_err(|_| PayloadProblem::FieldLength {
        field,
        len: value.len(),
        expected: N,
    })
}

/// Decodes a message 2 payload.
///
/// # Errors
/// [`PayloadProblem`] for a payload over [`MAX_V2_PAYLOAD`], a field running past
/// the payload, a duplicate, a known field of message 3 only, an unknown critical
/// field, a missing required field, a field of the wrong size (an empty certificate
/// among them), or a rekey limit of 0.
pub fn decode_message2(payload: &[u8]) -> Result<Message2Payload<'_>, PayloadProblem> {
    let mut identity = [0; IDENTITY_LEN];
    let mut max_request = 0;
    let mut rekey = RekeyPolicy::DEFAULT;
    let mut certificate = None;
    walk(
        payload,
        &[
            FIELD_IDENTITY_ED25519,
            FIELD_MAX_REQUEST,
            FIELD_REKEY_POLICY,
        ],
        &[FIELD_OPENSSH_CERTIFICATE],
        |field, value| {
            match field {
                FIELD_IDENTITY_ED25519 => identity = fixed(field, value)?,
                FIELD_MAX_REQUEST => max_request = u32::from_be_bytes(fixed(field, value)?),
                FIELD_OPENSSH_CERTIFICATE => certificate = Some(certificate_value(value)?),
                _ => rekey = decode_rekey(fixed(field, value)?)?,
            }
            Ok(())
        },
    )?;
    Ok(Message2Payload {
        identity,
        params: ServerParams { max_request, rekey },
        certificate,
    })
}

/// The openssh_certificate field's value: any non-empty bytes (the handshake
/// decodes them with [`certificate_for`]).
fn certificate_value(value: &[u8]) -> Result<&[u8], PayloadProblem> {
    if value.is_empty() {
        return Err(PayloadProblem::Certificate(CertificateProblem::Malformed));
    }
    Ok(value)
}

fn decode_rekey(value: [u8; REKEY_POLICY_LEN]) -> Result<RekeyPolicy, PayloadProblem> {
    let u64_at = |at: usize| {
        let mut bytes = [0; 8];
        bytes.copy_from_slice(&value[at..at + 8]);
        u64::from_be_bytes(bytes)
    };
    let (max_messages, max_bytes) = (u64_at(0), u64_at(8));
    let seconds = u32::from_be_bytes([value[16], value[17], value[18], value[19]]);
    if max_messages == 0 || max_bytes == 0 || seconds == 0 {
        return Err(PayloadProblem::ZeroRekeyLimit);
    }
    Ok(RekeyPolicy {
        max_messages,
        max_bytes,
        max_interval: Duration::from_secs(u64::from(seconds)),
    })
}

/// Decodes a message 3 payload: the client's Ed25519 key, as sent (a certificate,
/// if any, is checked and dropped; [`decode_message3_fields`] keeps it).
///
/// # Errors
/// As [`decode_message2`], for message 3's one required field.
pub fn decode_message3(payload: &[u8]) -> Result<[u8; IDENTITY_LEN], PayloadProblem> {
    decode_message3_fields(payload).map(|fields| fields.identity)
}

/// Decodes a message 3 payload: the client's Ed25519 key and its certificate blob,
/// if it sent one.
///
/// # Errors
/// As [`decode_message2`], for message 3's fields.
pub fn decode_message3_fields(payload: &[u8]) -> Result<Message3Payload<'_>, PayloadProblem> {
    let mut identity = [0; IDENTITY_LEN];
    let mut certificate = None;
    walk(
        payload,
        &[FIELD_IDENTITY_ED25519],
        &[FIELD_OPENSSH_CERTIFICATE],
        |field, value| {
            match field {
                FIELD_IDENTITY_ED25519 => identity = fixed(field, value)?,
                _ => certificate = Some(certificate_value(value)?),
            }
            Ok(())
        },
    )?;
    Ok(Message3Payload {
        identity,
        certificate,
    })
}

#[cfg(test)]
mod tests;
