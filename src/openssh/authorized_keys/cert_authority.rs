//! `cert-authority` lines of authorized_keys: a CA key whose user certificates are
//! trusted for the principals the line names, as sshd reads the line.
//!
//! sshd matches the certificate's principals against `principals="..."` when the line
//! has it, and against the login user otherwise. noise-echo has no login user, so the
//! parser only accepts `cert-authority` together with `principals=` (a line with one
//! and not the other is not trusted, with a warning naming its file and line). The
//! line's `from=` and `expiry-time=` apply to every certificate it admits, as in sshd.
//! The certificate itself is checked by [`crate::openssh::certificate`].
//!
//! [`AuthorizedKeys::authorize_client`] is the server's whole decision for a client
//! that may have sent a certificate: its plain key line first (as
//! [`AuthorizedKeys::authorize`]), else a `cert-authority` line trusting the
//! certificate, the way sshd accepts a user by key or by certificate.

use std::net::IpAddr;
use std::path::Path;
use std::time::SystemTime;

use crate::identity::{Fingerprint, PublicKey};
use crate::openssh::certificate::{Certificate, CertificateError};
use crate::openssh::pattern::AddressPatterns;

use super::{check_restrictions, AuthorizedKey, AuthorizedKeys, Denial, Expiry};

/// A trusted `cert-authority principals="..."` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertAuthority {
    /// The CA key: certificates it signed are trusted, the key itself is not.
    pub key: PublicKey,
    /// The `principals=` names, in the order written: a certificate is admitted when
    /// one of its principals is one of these, compared exactly as sshd does.
    pub principals: Vec<String>,
    /// The `from="..."` restriction on the client address, for every certificate.
    pub from: Option<AddressPatterns>,
    /// The `expiry-time="..."` of the line itself (the earliest, if several).
    pub expiry: Option<Expiry>,
    /// The text after the key; empty when absent.
    pub comment: String,
    /// The 1-based line number in the file, for the log.
    pub line: usize,
    /// The options field as written.
    pub options: String,
}

impl CertAuthority {
    /// The first of `certificate_principals` this line admits, if any.
    pub fn admitted_principal<'a>(&self, certificate_principals: &'a [String]) -> Option<&'a str> {
        certificate_principals
            .iter()
            .find(|principal| self.principals.contains(principal))
            .map(String::as_str)
    }

    /// Whether this line's `from=` and `expiry-time=` admit a connection from `addr`
    /// at `now`.
    ///
    /// # Errors
    /// The [`Denial`] naming the CA key and the option that refuses it.
    pub fn permits(&self, addr: IpAddr, now: SystemTime) -> Result<(), Denial> {
        check_restrictions(
            &self.key,
            self.from.as_ref(),
            self.expiry,
            self.line,
            addr,
            now,
        )
    }
}

/// What admitted a client ([`AuthorizedKeys::authorize_client`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientAdmission<'a> {
    /// A plain `ssh-ed25519` line holding the client's key.
    Key(&'a AuthorizedKey),
    /// The client's certificate, through a `cert-authority` line.
    Certificate(CertificateAdmission<'a>),
}

/// A certificate admitted through a `cert-authority` line: what the log names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateAdmission<'a> {
    /// The line trusting the certificate's CA.
    pub authority: &'a CertAuthority,
    /// The certificate principal that line's `principals=` lists.
    pub principal: String,
    /// The certificate's key id (`ssh-keygen -I`).
    pub key_id: String,
    /// The certificate's serial (`ssh-keygen -z`).
    pub serial: u64,
}

impl ClientAdmission<'_> {
    /// The 1-based line of authorized_keys that admitted the client.
    pub fn line(&self) -> usize {
        match self {
            Self::Key(entry) => entry.line,
            Self::Certificate(admission) => admission.authority.line,
        }
    }

    /// That line's comment.
    pub fn comment(&self) -> &str {
        match self {
            Self::Key(entry) => &entry.comment,
            Self::Certificate(admission) => &admission.authority.comment,
        }
    }

    /// What admitted the client, for the server's log: the file and line, and for a
    /// certificate its principal, key id, serial and CA.
    pub fn log_text(&self, path: &Path) -> String {
        let path = path.display();
        match self {
            Self::Key(entry) => format!("{path}:{}: key {}", entry.line, entry.key.fingerprint()),
            Self::Certificate(admission) => format!(
                "{path}:{}: certificate \"{}\" serial {} as principal \"{}\", signed by CA {}",
                admission.authority.line,
                admission.key_id,
                admission.serial,
                admission.principal,
                admission.authority.key.fingerprint(),
            ),
        }
    }
}

/// Why [`AuthorizedKeys::authorize_client`] refused a client.
///
/// As for [`Denial`], the `Display` text is for the client (after
/// `permission denied: `) and names no file or line; [`ClientDenial::log_text`] is
/// the server's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientDenial {
    /// No certificate was sent, and the key alone is refused.
    #[error(transparent)]
    Key(Denial),
    /// The key alone is refused, and so is the certificate sent with it (boxed: a
    /// refusal is the rare path, and a `Result` carrying it stays small).
    #[error(transparent)]
    Certificate(Box<CertificateDenial>),
}

/// Both refusals of a client that sent a certificate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}; its certificate \"{key_id}\" is refused: {reason}")]
pub struct CertificateDenial {
    /// Why the plain key was refused.
    pub key: Denial,
    /// The certificate's key id, for the log.
    pub key_id: String,
    /// Its serial.
    pub serial: u64,
    /// Its CA.
    pub ca: Fingerprint,
    /// Why the certificate was refused.
    pub reason: CertificateError,
}

impl ClientDenial {
    /// The refusal as the server logs it, naming `path` and the lines that decided.
    pub fn log_text(&self, path: &Path) -> String {
        match self {
            Self::Key(denial) => denial.log_text(path),
            Self::Certificate(denial) => {
                let CertificateDenial {
                    key,
                    key_id,
                    serial,
                    ca,
                    reason,
                } = &**denial;
                let line = reason
                    .line()
                    .map_or_else(String::new, |line| format!(" (line {line})"));
                format!(
                    "{}; certificate \"{key_id}\" serial {serial} from CA {ca} refused{line}: {reason}",
                    key.log_text(path)
                )
            }
        }
    }
}

impl AuthorizedKeys {
    /// Decides whether a client that proved `key`, and sent `certificate` with it
    /// (`Established::peer_certificate`), may connect from `client_addr` at `now`.
    ///
    /// The plain key first, exactly as [`authorize`](Self::authorize); if that
    /// refuses and there is a certificate, the `cert-authority` lines
    /// ([`Certificate::check_user_against`]): a trusted CA, type user, validity
    /// with [`CLOCK_SKEW`](crate::openssh::certificate::CLOCK_SKEW) on its start,
    /// `source-address` against `client_addr` (the real client address: behind a
    /// PROXY-protocol balancer, the header's), no other critical option, a principal
    /// the line's `principals=` lists, and the line's own `from=` and `expiry-time=`.
    ///
    /// # Errors
    /// [`ClientDenial::Key`] without a certificate; [`ClientDenial::Certificate`]
    /// naming both refusals with one.
    pub fn authorize_client<'a>(
        &'a self,
        key: &PublicKey,
        certificate: Option<&Certificate>,
        client_addr: IpAddr,
        now: SystemTime,
    ) -> Result<ClientAdmission<'a>, ClientDenial> {
        let key_denial = match self.authorize(key, client_addr, now) {
            Ok(entry) => return Ok(ClientAdmission::Key(entry)),
            Err(denial) => denial,
        };
        let Some(certificate) = certificate else {
            return Err(ClientDenial::Key(key_denial));
        };
        match certificate.check_user_against(key, &self.cert_authorities, client_addr, now) {
            Ok((authority, principal)) => Ok(ClientAdmission::Certificate(CertificateAdmission {
                authority,
                principal: principal.to_owned(),
                key_id: certificate.key_id.clone(),
                serial: certificate.serial,
            })),
            Err(reason) => Err(ClientDenial::Certificate(Box::new(CertificateDenial {
                key: key_denial,
                key_id: certificate.key_id.clone(),
                serial: certificate.serial,
                ca: certificate.signature_key.fingerprint(),
                reason,
            }))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn fixture(name: &str) -> String {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("keys")
            .join(name);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    #[test]
    fn the_plain_key_first_then_the_certificate_and_both_refusals_named() {
        let client = PublicKey::parse_openssh_line(fixture("client_ed25519.pub").trim())
            .unwrap()
            .0;
        let valid = Certificate::from_openssh_line(&fixture("certs/valid-cert.pub")).unwrap();
        let expired = Certificate::from_openssh_line(&fixture("certs/expired-cert.pub")).unwrap();
        let now = UNIX_EPOCH + Duration::from_secs(1_767_225_600);
        let addr: IpAddr = "127.0.0.1".parse().unwrap();
        let path = Path::new("ak");
        let ca_line = format!(
            "# fleet\ncert-authority,principals=\"alice\" {}",
            fixture("certs/user_ca.pub")
        );
        let ca_only = AuthorizedKeys::parse(ca_line.as_bytes(), path);
        let with_key = format!("{ca_line}{}", fixture("client_ed25519.pub"));
        let with_key = AuthorizedKeys::parse(with_key.as_bytes(), path);

        let admitted = ca_only
            .authorize_client(&client, Some(&valid), addr, now)
            .unwrap();
        assert_eq!(
            (admitted.line(), admitted.comment()),
            (2, "user-ca@noise-echo-test")
        );
        assert!(
            admitted.log_text(path).starts_with(
                "ak:2: certificate \"alice-valid\" serial 1 as principal \"alice\", signed by CA SHA256:"
            ),
            "{}",
            admitted.log_text(path)
        );
        // A plain line wins, certificate or not.
        let admitted = with_key
            .authorize_client(&client, Some(&expired), addr, now)
            .unwrap();
        assert!(matches!(admitted, ClientAdmission::Key(entry) if entry.line == 3));
        // No certificate: the plain refusal, as authorize gives it.
        let denial = ca_only
            .authorize_client(&client, None, addr, now)
            .unwrap_err();
        assert_eq!(
            denial,
            ClientDenial::Key(ca_only.authorize(&client, addr, now).unwrap_err())
        );
        // A refused certificate: both reasons, the log with the file.
        let denial = ca_only
            .authorize_client(&client, Some(&expired), addr, now)
            .unwrap_err();
        assert!(
            denial.to_string().ends_with(
                "its certificate \"alice-expired\" is refused: certificate expired on 2021-01-01T00:00:00"
            ),
            "{denial}"
        );
        let log = denial.log_text(path);
        assert!(
            log.starts_with("key SHA256:")
                && log.contains(
                    " is not in ak; certificate \"alice-expired\" serial 3 from CA SHA256:"
                ),
            "{log}"
        );
    }
}
