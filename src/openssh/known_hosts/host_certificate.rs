//! Host certificates against known_hosts: `@cert-authority PATTERNS KEY` lines
//! trust the CA for the hosts they match, and [`KnownHosts::verify_host`] is the
//! client's whole decision about a server's key and its optional certificate.
//!
//! As in OpenSSH's ssh: a certificate whose CA some `@cert-authority` line trusts
//! for the host must be valid (type host, a principal naming the host, the validity
//! window with [`CLOCK_SKEW`](crate::openssh::certificate::CLOCK_SKEW), no critical
//! option), and if it is not the server is
//! refused ([`HostVerdict::CertInvalid`]), never asked about as an unknown host. A
//! certificate from a CA no line trusts for the host changes nothing: the key is
//! checked as if none had been sent (ssh's "no matching CA, retry with the plain
//! key"). Refusing that would protect nothing, since a man in the middle can as
//! well send no certificate; the verdict still says the certificate was ignored, so
//! that the prompt can say so. `@revoked` applies to the host key and to the CA
//! key alike, before anything else.

use std::path::PathBuf;
use std::time::SystemTime;

use crate::identity::{Fingerprint, PublicKey};
use crate::openssh::certificate::{CertType, Certificate, CertificateError};
use crate::openssh::krl::Revocation;
use crate::openssh::revoked::RevokedKeys;

use super::{host_field, HostCertAuthority, KnownHosts};

/// What made a host trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostTrustedBy {
    /// A plain line holding the host's key.
    Key {
        /// That line's number.
        line: usize,
    },
    /// A valid host certificate from a CA a `@cert-authority` line trusts.
    Certificate {
        /// The `@cert-authority` line's number.
        line: usize,
        /// The certificate principal that named the host.
        principal: String,
        /// The certificate's key id, for the log.
        key_id: String,
        /// Its serial.
        serial: u64,
    },
}

/// Why [`KnownHosts::check_host_certificate`] refused a certificate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct HostCertificateRefusal {
    /// The `@cert-authority` line trusting the certificate's CA for the host;
    /// `None` when no line does.
    pub line: Option<usize>,
    /// What failed.
    pub reason: CertificateError,
}

/// The client's verdict on a server: what known_hosts (and a revoked-keys file)
/// say about its key and certificate ([`KnownHosts::verify_host`],
/// [`KnownHosts::verify_host_revocable`]; [`KnownHosts::check`] for a key alone).
/// The client's policy (`crate::client::decide`) turns it into a decision.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HostVerdict {
    /// Connect.
    Trusted(HostTrustedBy),
    /// Nothing is known about the host: the first-use policy decides (ask, accept,
    /// refuse).
    Unknown {
        /// The CA of a certificate the server sent that no `@cert-authority` line
        /// trusts for this host, so it was ignored.
        ignored_certificate_ca: Option<Fingerprint>,
    },
    /// The host is known with another key, and no trusted certificate vouches for
    /// this one. Refuse.
    Changed {
        /// The known_hosts file.
        path: PathBuf,
        /// The first line holding a different key for the host.
        line: usize,
        /// That line's key.
        known_fingerprint: Fingerprint,
    },
    /// The host key, or the CA that certified it, is `@revoked`. Refuse.
    Revoked {
        /// The known_hosts file.
        path: PathBuf,
        /// The `@revoked` line.
        line: usize,
        /// The key that line revokes: the host key, or the certificate's CA key.
        revoked_key: Fingerprint,
    },
    /// A revoked-keys file ([`KnownHosts::verify_host_revocable`]) revokes the host
    /// key or its certificate. Refuse.
    RevokedByFile {
        /// The revoked-keys file.
        path: PathBuf,
        /// What it revokes.
        revocation: Revocation,
    },
    /// A CA trusted for this host signed the certificate, but the certificate fails
    /// a check. Refuse: never fall back to first-use trust.
    CertInvalid {
        /// The known_hosts file.
        path: PathBuf,
        /// The `@cert-authority` line that trusts the CA.
        line: usize,
        /// What failed.
        reason: CertificateError,
    },
}

impl KnownHosts {
    /// The `@cert-authority` line trusting `certificate`'s CA for `host` on `port`,
    /// and the certificate's checks against it: type host, a principal equal to
    /// `host` (ASCII case aside, as DNS names compare; the port is not part of a
    /// principal), the validity window at `now` with
    /// [`CLOCK_SKEW`](crate::openssh::certificate::CLOCK_SKEW) on its start, and no
    /// critical option (OpenSSH defines none for host certificates). Returns the
    /// line and the principal that named the host.
    ///
    /// # Errors
    /// A [`HostCertificateRefusal`]: [`CertificateError::UntrustedCa`] without a line
    /// when no line trusts the CA for the host; with the line whose CA signed it,
    /// [`CertificateError::WrongType`], [`CertificateError::NotYetValid`],
    /// [`CertificateError::Expired`], [`CertificateError::UnsupportedCriticalOption`],
    /// [`CertificateError::NoPrincipals`], [`CertificateError::HostNotCertified`].
    pub fn check_host_certificate<'c>(
        &self,
        certificate: &'c Certificate,
        host: &str,
        port: u16,
        now: SystemTime,
    ) -> Result<(&HostCertAuthority, &'c str), HostCertificateRefusal> {
        let field = host_field(host, port);
        let authority = self
            .cert_authorities
            .iter()
            .find(|authority| {
                authority.key == certificate.signature_key && authority.hosts.matches(&field)
            })
            .ok_or_else(|| HostCertificateRefusal {
                line: None,
                reason: CertificateError::UntrustedCa(certificate.signature_key.fingerprint()),
            })?;
        let refuse = |reason| HostCertificateRefusal {
            line: Some(authority.line),
            reason,
        };
        if certificate.cert_type != CertType::Host {
            return Err(refuse(CertificateError::WrongType {
                expected: CertType::Host,
                found: certificate.cert_type,
            }));
        }
        certificate.check_validity(now).map_err(refuse)?;
        if let Some((name, _)) = certificate.critical_options.first() {
            return Err(refuse(CertificateError::UnsupportedCriticalOption(
                name.clone(),
            )));
        }
        if certificate.principals.is_empty() {
            return Err(refuse(CertificateError::NoPrincipals));
        }
        let principal = certificate
            .principals
            .iter()
            .find(|principal| principal.eq_ignore_ascii_case(host))
            .ok_or_else(|| {
                refuse(CertificateError::HostNotCertified {
                    host: host.to_owned(),
                    principals: certificate.principals.clone(),
                })
            })?;
        Ok((authority, principal.as_str()))
    }

    /// The client's decision about a server at `host`:`port` that proved `key` and
    /// sent `certificate` (`ExpectApproval::server_certificate`), at `now`.
    ///
    /// In order: an `@revoked` line for the host matching `key` or the certificate's
    /// CA: [`HostVerdict::Revoked`]. A certificate whose CA a `@cert-authority` line
    /// trusts for the host: [`HostVerdict::Trusted`] if it passes
    /// [`check_host_certificate`](Self::check_host_certificate) (whatever plain
    /// lines say: host keys rotate under a CA), else [`HostVerdict::CertInvalid`].
    /// Otherwise the key alone, as [`check`](Self::check) decides it.
    pub fn verify_host(
        &self,
        host: &str,
        port: u16,
        key: &PublicKey,
        certificate: Option<&Certificate>,
        now: SystemTime,
    ) -> HostVerdict {
        let field = host_field(host, port);
        let ca = certificate.map(|certificate| &certificate.signature_key);
        if let Some(entry) = self.entries.iter().find(|entry| {
            entry.revoked
                && (entry.key == *key || Some(&entry.key) == ca)
                && entry.hosts.matches(&field)
        }) {
            return HostVerdict::Revoked {
                path: self.path.clone(),
                line: entry.line,
                revoked_key: entry.key.fingerprint(),
            };
        }
        let mut ignored_certificate_ca = None;
        if let Some(certificate) = certificate {
            match self.check_host_certificate(certificate, host, port, now) {
                Ok((authority, principal)) => {
                    return HostVerdict::Trusted(HostTrustedBy::Certificate {
                        line: authority.line,
                        principal: principal.to_owned(),
                        key_id: certificate.key_id.clone(),
                        serial: certificate.serial,
                    })
                }
                Err(HostCertificateRefusal {
                    line: Some(line),
                    reason,
                }) => {
                    return HostVerdict::CertInvalid {
                        path: self.path.clone(),
                        line,
                        reason,
                    }
                }
                Err(HostCertificateRefusal { line: None, .. }) => {
                    ignored_certificate_ca = Some(certificate.signature_key.fingerprint());
                }
            }
        }
        self.check_key(&field, key, ignored_certificate_ca)
    }

    /// [`verify_host`](Self::verify_host) after a revoked-keys file (ssh's
    /// `RevokedHostKeys`, a text list or a KRL): a host key it revokes, or a
    /// certificate it revokes (by its key, its CA key, its serial or key ID), is
    /// [`HostVerdict::RevokedByFile`] whatever known_hosts says, as ssh checks that
    /// file first.
    pub fn verify_host_revocable(
        &self,
        host: &str,
        port: u16,
        key: &PublicKey,
        certificate: Option<&Certificate>,
        revoked: Option<&RevokedKeys>,
        now: SystemTime,
    ) -> HostVerdict {
        if let Some(revoked) = revoked {
            let revocation = match certificate {
                Some(certificate) => revoked.certificate_revocation(certificate),
                None => revoked.is_revoked_key(key).then_some(Revocation::Key),
            };
            if let Some(revocation) = revocation {
                return HostVerdict::RevokedByFile {
                    path: revoked.path.clone(),
                    revocation,
                };
            }
        }
        self.verify_host(host, port, key, certificate, now)
    }
}

#[cfg(test)]
mod tests;
