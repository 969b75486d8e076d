//! The client's host-key decision, without I/O: given what known_hosts says about
//! the server (or a pinned fingerprint), the key the server presented and the
//! caller's policy, decide whether to go ahead, to remember a new key, to ask the
//! user, or to refuse, and why ([`HostKeyError`]). The caller ([`super::connect`])
//! does the reading, asking and appending.

use std::io;
use std::path::PathBuf;

use crate::identity::{Fingerprint, PublicKey};
use crate::openssh::known_hosts::HostStatus;

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
    /// The presented key is marked `@revoked`. Nothing may override this.
    #[error("host key {presented} for '{host_field}' is @revoked in {}:{line}", path.display())]
    Revoked {
        /// The known_hosts name of the server.
        host_field: String,
        /// The known_hosts file.
        path: PathBuf,
        /// The `@revoked` line.
        line: usize,
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
    /// What known_hosts says about this host and key.
    KnownHosts {
        /// The file's verdict.
        status: HostStatus,
        /// The policy for an unknown key.
        policy: &'a UnknownHostPolicy,
        /// Whether a prompt is available to ask.
        can_prompt: bool,
    },
}

/// Decides about `presented`, the key the server known as `host_field` sent.
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
            status,
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
            match (status, pin_mismatch) {
                // Nothing overrides these two, not even a pin the key matches: the
                // user must look at known_hosts.
                (HostStatus::Revoked { path, line }, _) => {
                    Decision::Refuse(HostKeyError::Revoked {
                        host_field,
                        path,
                        line,
                        presented,
                    })
                }
                (
                    HostStatus::Changed {
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
                (HostStatus::Trusted { .. }, None) => Decision::Trusted,
                (HostStatus::Unknown, None) => match policy {
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

    fn statuses(other: Fingerprint) -> Vec<HostStatus> {
        vec![
            HostStatus::Trusted { line: 1 },
            HostStatus::Unknown,
            HostStatus::Changed {
                path: "kh".into(),
                line: 3,
                known_fingerprint: other,
            },
            HostStatus::Revoked {
                path: "kh".into(),
                line: 4,
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
        for status in statuses(other) {
            for policy in &policies {
                for can_prompt in [false, true] {
                    let label = format!("{status:?} {policy:?} {can_prompt}");
                    let decision = decide(
                        Known::KnownHosts {
                            status: status.clone(),
                            policy,
                            can_prompt,
                        },
                        "h",
                        &key,
                    );
                    match (&status, policy) {
                        (HostStatus::Trusted { .. }, UnknownHostPolicy::ExpectFingerprint(f))
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
                        (HostStatus::Trusted { .. }, _) => {
                            assert!(matches!(decision, Decision::Trusted), "{label}")
                        }
                        (HostStatus::Changed { .. }, _) => assert!(
                            matches!(
                                decision,
                                Decision::Refuse(HostKeyError::Changed { line: 3, expected, presented, .. })
                                    if expected == other && presented == key.fingerprint()
                            ),
                            "{label}"
                        ),
                        (HostStatus::Revoked { .. }, _) => assert!(
                            matches!(
                                decision,
                                Decision::Refuse(HostKeyError::Revoked { line: 4, .. })
                            ),
                            "{label}"
                        ),
                        (HostStatus::Unknown, UnknownHostPolicy::AcceptNew) => {
                            assert!(matches!(decision, Decision::Remember), "{label}")
                        }
                        (HostStatus::Unknown, UnknownHostPolicy::ExpectFingerprint(f))
                            if *f == key.fingerprint() =>
                        {
                            assert!(matches!(decision, Decision::Remember), "{label}")
                        }
                        (HostStatus::Unknown, UnknownHostPolicy::ExpectFingerprint(_)) => {
                            assert!(
                                matches!(
                                    decision,
                                    Decision::Refuse(HostKeyError::Mismatch { expected, .. })
                                        if expected == other
                                ),
                                "{label}"
                            )
                        }
                        (HostStatus::Unknown, _) if can_prompt => {
                            assert!(matches!(decision, Decision::Ask), "{label}")
                        }
                        (HostStatus::Unknown, _) => assert!(
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
