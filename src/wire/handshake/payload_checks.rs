//! What a peer's handshake payload must be, beyond its encoding: the identity (v1's
//! three checks: an Ed25519 key, not of small order, equal to the Noise static key)
//! and, in v2, the certificate (an Ed25519 certificate of that key); and this side's
//! own certificate ([`LocalIdentity::with_certificate`]), checked the same way
//! before it is ever sent.

use super::*;

impl LocalIdentity {
    /// This identity with an OpenSSH certificate (the blob a `-cert.pub` line's
    /// base64 decodes to) to send in protocol v2 handshakes: a client's user
    /// certificate in message 3, a server's host certificate in message 2. v1
    /// handshakes never carry one. Whether the peer trusts its CA is the peer's
    /// business; this checks only what would make the peer close the connection.
    ///
    /// # Errors
    /// The [`CertificateError`] of [`Certificate::from_blob`] (malformed, not
    /// Ed25519, a bad CA signature); [`CertificateError::KeyMismatch`] when it
    /// certifies another key than this identity's;
    /// [`CertificateError::TooLargeForHandshake`] over [`MAX_CERTIFICATE_FIELD`].
    pub fn with_certificate(self, blob: impl Into<Vec<u8>>) -> Result<Self, CertificateError> {
        let blob = blob.into();
        if blob.len() > MAX_CERTIFICATE_FIELD {
            return Err(CertificateError::TooLargeForHandshake {
                len: blob.len(),
                max: MAX_CERTIFICATE_FIELD,
            });
        }
        let certificate = Certificate::from_blob(&blob)?;
        if certificate.key != self.public_key {
            return Err(CertificateError::KeyMismatch {
                certified: certificate.key.fingerprint(),
                authenticated: self.public_key.fingerprint(),
            });
        }
        Ok(self.with_any_certificate_for_testing_only(blob))
    }

    /// [`with_certificate`](Self::with_certificate) without its checks, so tests can
    /// send what an honest peer never would (another key's certificate, garbage).
    /// The blob must still fit in [`MAX_CERTIFICATE_FIELD`] bytes, or the handshake
    /// message would overflow its field's 16-bit length.
    #[doc(hidden)]
    pub fn with_any_certificate_for_testing_only(mut self, blob: Vec<u8>) -> Self {
        self.certificate = Some(blob.into());
        self
    }

    /// The certificate blob this side presents in v2 handshakes, if any.
    pub fn certificate(&self) -> Option<&[u8]> {
        self.certificate.as_deref()
    }
}

/// Checks the certificate the peer sent in `message`, if any, against the key it
/// proved: boxed, as [`Established`] holds it for the session's life.
pub(super) fn peer_certificate(
    message: u8,
    blob: Option<&[u8]>,
    key: &PublicKey,
) -> Result<Option<Box<Certificate>>, Violation> {
    blob.map(|blob| {
        payload::certificate_for(blob, key)
            .map(Box::new)
            .map_err(|problem| Violation::BadHandshakePayload { message, problem })
    })
    .transpose()
}

/// Checks a handshake payload (wire-v1 section 3): exactly 32 bytes, a valid Ed25519
/// key, whose Montgomery form is the static key the peer used in this handshake.
pub(super) fn validate_payload(
    message: u8,
    payload: &[u8],
    remote_static: Option<&[u8]>,
) -> Result<PublicKey, Violation> {
    let bad = |problem| Violation::BadHandshakePayload { message, problem };
    let (key, x25519) =
        PublicKey::from_bytes_with_x25519(payload).map_err(|error| match error {
            PublicKeyError::WrongLength(len) => bad(PayloadProblem::WrongLength(len)),
            _ => bad(PayloadProblem::InvalidPoint),
        })?;
    // Both values are public, so a variable-time comparison leaks nothing.
    if remote_static != Some(&x25519[..]) {
        return Err(bad(PayloadProblem::StaticKeyMismatch));
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::handshake::tests::identity;

    fn violation(result: Result<impl fmt::Debug>) -> Violation {
        match result {
            Err(WireError::PeerMisbehaved(violation)) => violation,
            other => panic!("expected a violation, got {other:?}"),
        }
    }

    /// A fixture identity and its certificate blob from keys/ (made by ssh-keygen).
    fn fixture_identity(key: &str, certificate: &str) -> (Identity, Vec<u8>) {
        use base64::Engine as _;
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("keys");
        let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap();
        let identity = crate::openssh::keyfile::parse_identity(&read(key), &dir.join(key)).unwrap();
        let line = read(&format!("certs/{certificate}-cert.pub"));
        let blob = base64::engine::general_purpose::STANDARD
            .decode(line.split_whitespace().nth(1).unwrap())
            .unwrap();
        (identity, blob)
    }

    /// Runs a v2 handshake over byte slices: the host certificate the client saw
    /// in message 2 (or its error), and the server's end when the client got as far
    /// as message 3.
    fn v2_pair(
        client: &LocalIdentity,
        server: &LocalIdentity,
    ) -> (Result<Option<Certificate>>, Option<Result<Established>>) {
        let offer = Offer::new(Suite::AesGcmSha256);
        let params = ServerParams {
            max_request: 1024,
            rekey: crate::wire::rekey::RekeyPolicy::DEFAULT,
        };
        let (initiator, message1) = Initiator::start_v2(client, &offer).unwrap();
        let (responder, message2) = Responder::new_v2(server, &offer, params)
            .unwrap()
            .read(&message1)
            .unwrap();
        let approval = match initiator.read(&message2) {
            Ok(approval) => approval,
            Err(error) => return (Err(error), None),
        };
        let seen = approval.server_certificate().cloned();
        let (message3, client_end) = approval.approve().unwrap();
        assert_eq!(client_end.peer_certificate(), seen.as_ref());
        (Ok(seen), Some(responder.read(&message3)))
    }

    #[test]
    fn v2_certificates_travel_both_ways_and_are_exposed() {
        let (client_id, user_cert) = fixture_identity("client_ed25519", "valid");
        let (host_id, host_cert) = fixture_identity("host_ed25519_key", "host");
        let client = LocalIdentity::new(&client_id)
            .with_certificate(user_cert.clone())
            .unwrap();
        let server = LocalIdentity::new(&host_id)
            .with_certificate(host_cert.clone())
            .unwrap();
        assert_eq!(client.certificate(), Some(&user_cert[..]));
        let (seen, server_end) = v2_pair(&client, &server);
        let host = seen.unwrap().unwrap();
        assert_eq!(host.key_id, "host-localhost");
        assert_eq!(host.key, host_id.public_key());
        let server_end = server_end.unwrap().unwrap();
        let user = server_end.peer_certificate().unwrap();
        assert_eq!((user.key_id.as_str(), user.serial), ("alice-valid", 1));
        // Without certificates, none is exposed.
        let (seen, server_end) = v2_pair(
            &LocalIdentity::new(&client_id),
            &LocalIdentity::new(&host_id),
        );
        assert!(seen.unwrap().is_none());
        assert!(server_end.unwrap().unwrap().peer_certificate().is_none());
    }

    #[test]
    fn v1_never_carries_a_certificate() {
        let (client_id, user_cert) = fixture_identity("client_ed25519", "valid");
        let client = LocalIdentity::new(&client_id)
            .with_certificate(user_cert)
            .unwrap();
        let server_local = LocalIdentity::new(&identity(2));
        let (initiator, message1) = Initiator::start(&client).unwrap();
        let (responder, message2) = Responder::new(&server_local)
            .unwrap()
            .read(&message1)
            .unwrap();
        let (message3, _) = initiator.read(&message2).unwrap().approve().unwrap();
        assert_eq!(message3.len(), MSG3_LEN);
        assert!(responder
            .read(&message3)
            .unwrap()
            .peer_certificate()
            .is_none());
    }

    #[test]
    fn with_certificate_refuses_another_keys_certificate() {
        let (_, user_cert) = fixture_identity("client_ed25519", "valid");
        let error = LocalIdentity::new(&identity(1))
            .with_certificate(user_cert)
            .unwrap_err();
        assert!(
            matches!(error, CertificateError::KeyMismatch { .. }),
            "{error}"
        );
        let error = LocalIdentity::new(&identity(1))
            .with_certificate(vec![0; MAX_CERTIFICATE_FIELD + 1])
            .unwrap_err();
        assert!(
            matches!(error, CertificateError::TooLargeForHandshake { .. }),
            "{error}"
        );
        let error = LocalIdentity::new(&identity(1))
            .with_certificate(vec![0, 0, 0, 100])
            .unwrap_err();
        assert!(matches!(error, CertificateError::Malformed(_)), "{error}");
    }

    #[test]
    fn a_certificate_for_another_key_is_a_violation_on_either_side() {
        let (client_id, user_cert) = fixture_identity("client_ed25519", "valid");
        let (host_id, host_cert) = fixture_identity("host_ed25519_key", "host");
        let mismatch = Violation::BadHandshakePayload {
            message: 3,
            problem: PayloadProblem::Certificate(payload::CertificateProblem::KeyMismatch),
        };
        // The client presents the host's certificate.
        let client =
            LocalIdentity::new(&client_id).with_any_certificate_for_testing_only(host_cert);
        let (_, server_end) = v2_pair(&client, &LocalIdentity::new(&host_id));
        assert_eq!(violation(server_end.unwrap()), mismatch);
        // The server presents the user's.
        let server = LocalIdentity::new(&host_id).with_any_certificate_for_testing_only(user_cert);
        let (approval, _) = v2_pair(&LocalIdentity::new(&client_id), &server);
        assert_eq!(
            violation(approval),
            Violation::BadHandshakePayload {
                message: 2,
                problem: PayloadProblem::Certificate(payload::CertificateProblem::KeyMismatch),
            }
        );
        // Garbage in the field.
        let client =
            LocalIdentity::new(&client_id).with_any_certificate_for_testing_only(vec![7; 40]);
        let (_, server_end) = v2_pair(&client, &LocalIdentity::new(&host_id));
        assert_eq!(
            violation(server_end.unwrap()),
            Violation::BadHandshakePayload {
                message: 3,
                problem: PayloadProblem::Certificate(payload::CertificateProblem::Malformed),
            }
        );
    }
}
