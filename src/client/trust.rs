//! The client's host-key decision, without I/O: given known_hosts' verdict on the
//! server's key and certificate ([`HostVerdict`], from
//! [`KnownHosts::verify_host_revocable`](crate::openssh::known_hosts::KnownHosts::verify_host_revocable))
//! or a pinned fingerprint, and the caller's policy, decide whether to go ahead, to
//! remember a new key, to ask the user, or to refuse, and why ([`HostKeyError`]).
//! The caller ([`super::connect`]) does the reading, asking and appending.
//!
//! One model, two layers: the verdict says what the files say (trusted by a key
//! line or by a host certificate, unknown, changed, revoked, an invalid
//! certificate), the [`Decision`] what to do about it under the policy. Only an
//! unknown host reaches the first-use policy: a host certificate that a trusted CA
//! signed but that fails its checks is refused, never downgraded to first use.

use std::io;
use std::path::PathBuf;

use crate::identity::{Fingerprint, PublicKey};
use crate::openssh::certificate::CertificateError;
use crate::openssh::known_hosts::HostVerdict;
use crate::openssh::krl::Revocation;

/// What to do with a server whose key known_hosts does not have.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum UnknownHostPolicy {
    /// Refuse it, unless the prompt accepts it (the default without a terminal).
    Refuse,
    /// Trust it and remember it (`--accept-new-host`, SSH's `accept-new`).
    AcceptNew,
    /// A pin (`--expect-fingerprint`): the server's key must have this fingerprint
    /// on every connection, whether known_hosts knows the host or not. An unknown
    /// key with it is trusted and remembered; a known one without it is refused
    /// ([`HostKeyError::Mismatch`]), even though known_hosts trusts it.
    ExpectFingerprint(Fingerprint),
}

/// Why an unknown key was not trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum UnknownReason {
    /// The policy refuses unknown keys and there was no prompt to ask.
    NoPrompt,
    /// The user answered no at the prompt.
    Declined,
}

/// Why the server's key is not trusted. Nothing revealing our identity was sent.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HostKeyError {
    /// The key is not known and was not accepted.
    #[error("host key for '{host_field}' ({presented}) is not known and was not accepted")]
    Unknown {
        /// The known_hosts name of the server, e.g. `[localhost]:1234`.
        host_field: String,
        /// The key the server presented.
        presented: Fingerprint,
        /// No prompt, or declined at it.
        reason: UnknownReason,
    },
    /// known_hosts holds another key for this host. Nothing may override this.
    #[error("host key for '{host_field}' has changed (old key in {}:{line})", path.display())]
    Changed {
        /// The known_hosts name of the server.
        host_field: String,
        /// The known_hosts file.
        path: PathBuf,
        /// The line of the old key.
        line: usize,
        /// The old key's fingerprint.
        expected: Fingerprint,
        /// The key the server presented.
        presented: Fingerprint,
    },
    /// The presented key, or the CA key of its certificate, is marked `@revoked`.
    /// Nothing may override this.
    #[error("{} for '{host_field}' is @revoked in {}:{line}", revoked_what(presented, authority.as_deref()), path.display())]
    Revoked {
        /// The known_hosts name of the server.
        host_field: String,
        /// The known_hosts file.
        path: PathBuf,
        /// The `@revoked` line.
        line: usize,
        /// The key the server presented.
        presented: Fingerprint,
        /// `None` when the line revokes `presented` itself; else the CA key of the
        /// host certificate, which the line revokes (boxed: the error stays small).
        authority: Option<Box<Fingerprint>>,
    },
    /// A revoked-keys file (`RevokedHostKeys`, a text list or a KRL) revokes the
    /// presented key or its certificate. Nothing may override this.
    #[error("host key {presented} for '{host_field}' is refused by the revoked keys file {}: {revocation}", path.display())]
    RevokedByFile {
        /// The known_hosts name of the server.
        host_field: String,
        /// The revoked-keys file.
        path: PathBuf,
        /// What it revokes.
        revocation: Revocation,
        /// The key the server presented.
        presented: Fingerprint,
    },
    /// The server sent a host certificate from a CA a `@cert-authority` line trusts
    /// for this host, and the certificate fails a check (expired, not yet valid,
    /// another host's principals, a user certificate, a critical option). Never
    /// downgraded to first use: a man in the middle cannot make it look unknown.
    #[error("host certificate of {presented} for '{host_field}' is refused: {reason} (its CA is trusted in {}:{line})", path.display())]
    CertificateInvalid {
        /// The known_hosts name of the server.
        host_field: String,
        /// The known_hosts file.
        path: PathBuf,
        /// The `@cert-authority` line trusting the certificate's CA for the host.
        line: usize,
        /// The check that failed (boxed: it is the largest field of any refusal).
        reason: Box<CertificateError>,
        /// The key the server presented.
        presented: Fingerprint,
    },
    /// The key is not the one the caller expected (a pin or `--expect-fingerprint`),
    /// whatever known_hosts says about it.
    #[error("host key for '{host_field}' is {presented}, not the expected {expected}")]
    Mismatch {
        /// The known_hosts name of the server.
        host_field: String,
        /// The fingerprint the caller expected.
        expected: Fingerprint,
        /// The key the server presented.
        presented: Fingerprint,
    },
    /// The prompt could not ask the user.
    #[error("host key prompt failed: {cause}")]
    PromptFailed {
        /// The known_hosts name of the server.
        host_field: String,
        /// What failed; in the message, so not a `source()`.
        cause: io::Error,
    },
}

/// `host key X`, or `the CA key Y of host key X's certificate`.
fn revoked_what(presented: &Fingerprint, authority: Option<&Fingerprint>) -> String {
    match authority {
        None => format!("host key {presented}"),
        Some(ca) => format!("the CA key {ca} that certified host key {presented}"),
    }
}

/// What the trust decision says to do next.
#[derive(Debug)]
#[non_exhaustive]
pub enum Decision {
    /// Trusted; nothing to write.
    Trusted,
    /// Trusted as a new key: add it to known_hosts after the handshake.
    Remember,
    /// Unknown: ask the user; yes means [`Decision::Remember`].
    Ask,
    /// Refused.
    Refuse(HostKeyError),
}

/// Where the server's key is checked, before the policy applies.
#[derive(Debug)]
#[non_exhaustive]
pub enum Known<'a> {
    /// A pinned fingerprint: no file involved.
    Pinned(&'a Fingerprint),
    /// What known_hosts (and a revoked-keys file) say about this host's key and
    /// certificate.
    KnownHosts {
        /// The files' verdict.
        verdict: HostVerdict,
        /// The policy for an unknown key.
        policy: &'a UnknownHostPolicy,
        /// Whether a prompt is available to ask.
        can_prompt: bool,
    },
}

/// Decides about `presented`, the key the server known as `host_field` sent.
///
/// A revocation, a changed key and an invalid certificate are refused whatever the
/// policy; a pin (`ExpectFingerprint`) is then checked for every host, known or
/// trusted through a certificate; a trusted host goes ahead without writing
/// anything; only an unknown one meets the first-use policy.
pub fn decide(known: Known<'_>, host_field: &str, presented: &PublicKey) -> Decision {
    let presented = presented.fingerprint();
    let host_field = host_field.to_owned();
    match known {
        Known::Pinned(expected) if *expected == presented => Decision::Trusted,
        Known::Pinned(expected) => Decision::Refuse(HostKeyError::Mismatch {
            host_field,
            expected: *expected,
            presented,
        }),
        Known::KnownHosts {
            verdict,
            policy,
            can_prompt,
        } => {
            // The pin, when the presented key does not have it.
            let pin_mismatch = match policy {
                UnknownHostPolicy::ExpectFingerprint(expected) if *expected != presented => {
                    Some(*expected)
                }
                _ => None,
            };
            match (verdict, pin_mismatch) {
                // Nothing overrides these, not even a pin the key matches: the user
                // must look at known_hosts (or the revoked-keys file, or the CA).
                (
                    HostVerdict::Revoked {
                        path,
                        line,
                        revoked_key,
                    },
                    _,
                ) => Decision::Refuse(HostKeyError::Revoked {
                    host_field,
                    path,
                    line,
                    authority: (revoked_key != presented).then(|| Box::new(revoked_key)),
                    presented,
                }),
                (HostVerdict::RevokedByFile { path, revocation }, _) => {
                    Decision::Refuse(HostKeyError::RevokedByFile {
                        host_field,
                        path,
                        revocation,
                        presented,
                    })
                }
                (HostVerdict::CertInvalid { path, line, reason }, _) => {
                    Decision::Refuse(HostKeyError::CertificateInvalid {
                        host_field,
                        path,
                        line,
                        reason: Box::new(reason),
                        presented,
                    })
                }
                (
                    HostVerdict::Changed {
                        path,
                        line,
                        known_fingerprint,
                    },
                    _,
                ) => Decision::Refuse(HostKeyError::Changed {
                    host_field,
                    path,
                    line,
                    expected: known_fingerprint,
                    presented,
                }),
                // A pin is checked on every connection: a known host with another
                // key is refused, so a wrong pin in a script fails the first time.
                (_, Some(expected)) => Decision::Refuse(HostKeyError::Mismatch {
                    host_field,
                    expected,
                    presented,
                }),
                (HostVerdict::Trusted(_), None) => Decision::Trusted,
                (HostVerdict::Unknown { .. }, None) => match policy {
                    UnknownHostPolicy::ExpectFingerprint(_) | UnknownHostPolicy::AcceptNew => {
                        Decision::Remember
                    }
                    UnknownHostPolicy::Refuse if can_prompt => Decision::Ask,
                    UnknownHostPolicy::Refuse => Decision::Refuse(HostKeyError::Unknown {
                        host_field,
                        presented,
                        reason: UnknownReason::NoPrompt,
                    }),
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::identity::Identity;

    /// One verdict of each kind, trusted ones both by a key and by a certificate.
    fn statuses(key: Fingerprint, other: Fingerprint) -> Vec<HostVerdict> {
        use crate::openssh::known_hosts::HostTrustedBy;
        vec![
            HostVerdict::Trusted(HostTrustedBy::Key { line: 1 }),
            HostVerdict::Trusted(HostTrustedBy::Certificate {
                line: 2,
                principal: "h".into(),
                key_id: "id".into(),
                serial: 7,
            }),
            HostVerdict::Unknown {
                ignored_certificate_ca: None,
            },
            HostVerdict::Unknown {
                ignored_certificate_ca: Some(other),
            },
            HostVerdict::Changed {
                path: "kh".into(),
                line: 3,
                known_fingerprint: other,
            },
            HostVerdict::Revoked {
                path: "kh".into(),
                line: 4,
                revoked_key: key,
            },
            HostVerdict::RevokedByFile {
                path: "revoked".into(),
                revocation: Revocation::Serial(9),
            },
            HostVerdict::CertInvalid {
                path: "kh".into(),
                line: 5,
                reason: CertificateError::Expired(1),
            },
        ]
    }

    #[test]
    fn every_status_policy_and_prompt_combination_decides_as_ssh_does() {
        let key = Identity::generate("server").public_key();
        let other = Identity::generate("other").public_key().fingerprint();
        let policies = [
            UnknownHostPolicy::Refuse,
            UnknownHostPolicy::AcceptNew,
            UnknownHostPolicy::ExpectFingerprint(key.fingerprint()),
            UnknownHostPolicy::ExpectFingerprint(other),
        ];
        for status in statuses(key.fingerprint(), other) {
            for policy in &policies {
                for can_prompt in [false, true] {
                    let label = format!("{status:?} {policy:?} {can_prompt}");
                    let decision = decide(
                        Known::KnownHosts {
                            verdict: status.clone(),
                            policy,
                            can_prompt,
                        },
                        "h",
                        &key,
                    );
                    match (&status, policy) {
                        (HostVerdict::Trusted(_), UnknownHostPolicy::ExpectFingerprint(f))
                            if *f == other =>
                        {
                            assert!(
                                matches!(
                                    decision,
                                    Decision::Refuse(HostKeyError::Mismatch { expected, presented, .. })
                                        if expected == other && presented == key.fingerprint()
                                ),
                                "a pin is checked for a known host too: {label}"
                            )
                        }
                        (HostVerdict::Trusted(_), _) => {
                            assert!(matches!(decision, Decision::Trusted), "{label}")
                        }
                        (HostVerdict::Changed { .. }, _) => assert!(
                            matches!(
                                decision,
                                Decision::Refuse(HostKeyError::Changed { line: 3, expected, presented, .. })
                                    if expected == other && presented == key.fingerprint()
                            ),
                            "{label}"
                        ),
                        (HostVerdict::Revoked { .. }, _) => assert!(
                            matches!(
                                decision,
                                Decision::Refuse(HostKeyError::Revoked { line: 4, .. })
                            ),
                            "{label}"
                        ),
                        (HostVerdict::RevokedByFile { .. }, _) => assert!(
                            matches!(
                                decision,
                                Decision::Refuse(HostKeyError::RevokedByFile {
                                    revocation: Revocation::Serial(9),
                                    ..
                                })
                            ),
                            "{label}"
                        ),
                        (HostVerdict::CertInvalid { .. }, _) => assert!(
                            matches!(
                                decision,
                                Decision::Refuse(HostKeyError::CertificateInvalid {
                                    line: 5,
                                    reason,
                                    ..
                                }) if *reason == CertificateError::Expired(1)
                            ),
                            "invalid certificates are never first use: {label}"
                        ),
                        (HostVerdict::Unknown { .. }, UnknownHostPolicy::AcceptNew) => {
                            assert!(matches!(decision, Decision::Remember), "{label}")
                        }
                        (HostVerdict::Unknown { .. }, UnknownHostPolicy::ExpectFingerprint(f))
                            if *f == key.fingerprint() =>
                        {
                            assert!(matches!(decision, Decision::Remember), "{label}")
                        }
                        (HostVerdict::Unknown { .. }, UnknownHostPolicy::ExpectFingerprint(_)) => {
                            assert!(
                                matches!(
                                    decision,
                                    Decision::Refuse(HostKeyError::Mismatch { expected, .. })
                                        if expected == other
                                ),
                                "{label}"
                            )
                        }
                        (HostVerdict::Unknown { .. }, _) if can_prompt => {
                            assert!(matches!(decision, Decision::Ask), "{label}")
                        }
                        (HostVerdict::Unknown { .. }, _) => assert!(
                            matches!(
                                decision,
                                Decision::Refuse(HostKeyError::Unknown {
                                    reason: UnknownReason::NoPrompt,
                                    ..
                                })
                            ),
                            "{label}"
                        ),
                    }
                }
            }
        }
    }

    #[test]
    fn a_pin_trusts_only_its_own_key() {
        let key = Identity::generate("server").public_key();
        let other = Identity::generate("other").public_key().fingerprint();
        assert!(matches!(
            decide(Known::Pinned(&key.fingerprint()), "h", &key),
            Decision::Trusted
        ));
        assert!(matches!(
            decide(Known::Pinned(&other), "h", &key),
            Decision::Refuse(HostKeyError::Mismatch { expected, presented, .. })
                if expected == other && presented == key.fingerprint()
        ));
    }
}
