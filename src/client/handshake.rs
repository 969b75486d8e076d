//! One handshake attempt and its trust decision: the server's key and its host
//! certificate, if it sent one, are checked (a revoked-keys file, known_hosts with
//! its `@cert-authority` and `@revoked` lines, a pin, the user at a prompt) after
//! message 2 and BEFORE message 3 reveals our identity (and our certificate); an
//! accepted key is saved at once, a certificate-trusted one never.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tracing::debug;

use crate::client::trust::{self, Decision, HostKeyError, Known, UnknownReason};
use crate::client::{
    within, ClientError, HostKeyPrompt, HostTrust, Target, TimeoutStage, UnknownHost,
};
use crate::fsutil;
use crate::identity::{Fingerprint, PublicKey};
use crate::openssh::certificate::Certificate;
use crate::openssh::known_hosts::{self, HostTrustedBy, HostVerdict, KnownHosts, OtherName};
use crate::wire::{self, LocalIdentity, Offer};

/// known_hosts is private to the user, as `~/.ssh/known_hosts`.
const KNOWN_HOSTS_MODE: u32 = 0o600;

/// One handshake attempt and its trust decision.
pub(super) struct Handshake<'a> {
    /// Who we are (revealed in message 3 only).
    pub(super) identity: &'a LocalIdentity,
    /// How the server is trusted; the prompt is taken out when used, so a second
    /// attempt cannot ask again.
    pub(super) trust: &'a mut HostTrust,
    /// The server's name and port, as known_hosts records them.
    pub(super) target: &'a Target,
    /// The handshake's time budget, not counting the prompt.
    pub(super) timeout: Option<Duration>,
    /// The key the user accepted in an earlier attempt whose server hung up: trusted
    /// again without asking, even if the known_hosts file kept nothing (`/dev/null`).
    pub(super) accepted_at_prompt: Option<&'a PublicKey>,
    /// Protocol v2's offer (the suite, and on a retry the rejected one); `None`
    /// runs protocol v1.
    pub(super) offer: Option<&'a Offer>,
}

/// The trust decision before any prompt, and what the prompt would show.
struct Judged {
    decision: Decision,
    /// The known_hosts file used (`None` for a pin).
    path: Option<PathBuf>,
    /// The other names the key is known by there.
    other_names: Vec<OtherName>,
    /// The CA of a host certificate no `@cert-authority` line trusts.
    ignored_certificate_ca: Option<Fingerprint>,
}

/// How a handshake attempt ended, when it did not fail.
pub(super) enum Outcome {
    /// Authenticated: the session, the server's key and, if it was added to
    /// known_hosts now, its host field.
    Established {
        /// Boxed: a session's state is several times the other variant's.
        session: Box<wire::Established>,
        server_key: PublicKey,
        newly_known_as: Option<String>,
    },
    /// The user accepted `accepted` at the prompt (and it was saved), but the server
    /// had hung up by then: connect again.
    ClosedDuringPrompt { accepted: PublicKey },
}

impl Handshake<'_> {
    pub(super) async fn run<S>(mut self, stream: &mut S) -> Result<Outcome, ClientError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        let target = self.target;
        let started = tokio::time::Instant::now();
        // -> e
        // <- e, ee, s, es   (the server's payload is checked against its static key)
        let identity = self.identity;
        let initiating = async {
            match self.offer {
                // The offer and message 1 in one write; the answer and message 2.
                Some(offer) => wire::initiate_v2(stream, identity, offer).await,
                None => wire::initiate(stream, identity).await,
            }
        };
        let pending = within(self.timeout, initiating, target, TimeoutStage::Handshake).await??;
        // As ssh -v's "kex: ... cipher: ...".
        debug!("protocol {}, suite {}", pending.version(), pending.suite());
        let server_key = *pending.server_key();
        debug!("server host key {}", server_key.fingerprint());
        if let Some(certificate) = pending.server_certificate() {
            debug!(
                "server host certificate: {}, signed by CA {}",
                super::describe_certificate(certificate, SystemTime::now()),
                certificate.signature_key.fingerprint()
            );
        }
        let host_field = known_hosts::host_field(&target.host, target.port);
        let Judged {
            decision,
            path,
            other_names,
            ignored_certificate_ca,
        } = self.decide(&host_field, &server_key, pending.server_certificate())?;
        let prompted_at = tokio::time::Instant::now();
        let (decision, asked) = match decision {
            Decision::Ask => match self.take_prompt() {
                Some(prompt) => {
                    let unknown = UnknownHost {
                        host_field: host_field.clone(),
                        key: server_key,
                        known_hosts: path.clone().unwrap_or_default(),
                        other_names,
                        ignored_certificate_ca,
                    };
                    (ask(unknown, prompt).await, true)
                }
                None => (unknown_refusal(&host_field, &server_key), false),
            },
            decision => (decision, false),
        };
        let remember = match decision {
            Decision::Trusted => false,
            Decision::Remember => true,
            Decision::Ask => unreachable!("asked above"),
            Decision::Refuse(error) => {
                // The typestate's refusal says the same; ours carries the details.
                let _ = pending.reject(error.to_string());
                return Err(error.into());
            }
        };
        // The key is saved as soon as it is accepted, as ssh does: an answer the
        // user gave is never lost, whatever happens to this connection.
        let newly_known_as = match (remember, &path) {
            (true, Some(path)) => {
                add_known_host(path, &host_field, &server_key)?;
                Some(host_field)
            }
            _ => None,
        };
        if asked && peer_has_closed(stream).await {
            let _ = pending.reject("the server closed the connection during the prompt");
            return Ok(Outcome::ClosedDuringPrompt {
                accepted: server_key,
            });
        }
        // The user's time at the prompt is not the server's.
        let remaining = self.timeout.map(|budget| {
            let spent = prompted_at.duration_since(started);
            budget.saturating_sub(spent)
        });
        // -> s, se   (only now does the server learn who we are)
        debug!(
            "host key trusted; authenticating as {} (handshake message 3)",
            self.identity.public_key().fingerprint()
        );
        let approving = pending.approve(stream);
        let session = within(remaining, approving, target, TimeoutStage::Handshake).await??;
        Ok(Outcome::Established {
            session: Box::new(session),
            server_key,
            newly_known_as,
        })
    }

    /// The trust decision before any prompt, with what the prompt shows.
    fn decide(
        &self,
        host_field: &str,
        server_key: &PublicKey,
        certificate: Option<&Certificate>,
    ) -> Result<Judged, ClientError> {
        let target = self.target;
        Ok(match &*self.trust {
            HostTrust::Pinned(fingerprint) => Judged {
                decision: trust::decide(Known::Pinned(fingerprint), host_field, server_key),
                path: None,
                other_names: Vec::new(),
                ignored_certificate_ca: None,
            },
            HostTrust::KnownHosts {
                path,
                unknown,
                prompt,
                revoked,
            } => {
                let known = KnownHosts::load(path).map_err(|cause| ClientError::KnownHosts {
                    path: path.clone(),
                    cause,
                })?;
                let verdict = known.verify_host_revocable(
                    &target.host,
                    target.port,
                    server_key,
                    certificate,
                    revoked.as_deref(),
                    SystemTime::now(),
                );
                log_verdict(&verdict, host_field, path);
                let ignored_certificate_ca = match &verdict {
                    HostVerdict::Unknown {
                        ignored_certificate_ca,
                    } => *ignored_certificate_ca,
                    _ => None,
                };
                let decision = trust::decide(
                    Known::KnownHosts {
                        verdict,
                        policy: unknown,
                        can_prompt: prompt.is_some() || self.accepted_at_prompt.is_some(),
                    },
                    host_field,
                    server_key,
                );
                let decision = match decision {
                    // Accepted by the user a moment ago, on the connection the server
                    // closed; the file may have kept nothing (`/dev/null`).
                    Decision::Ask if self.accepted_at_prompt == Some(server_key) => {
                        Decision::Trusted
                    }
                    decision => decision,
                };
                Judged {
                    decision,
                    path: Some(path.clone()),
                    other_names: known.other_names(&target.host, target.port, server_key),
                    ignored_certificate_ca,
                }
            }
        })
    }

    fn take_prompt(&mut self) -> Option<HostKeyPrompt> {
        match &mut *self.trust {
            HostTrust::KnownHosts { prompt, .. } => prompt.take(),
            HostTrust::Pinned(_) => None,
        }
    }
}

/// What `-v` says about the verdict that leads to going ahead (a refusal says it in
/// its error).
fn log_verdict(verdict: &HostVerdict, host_field: &str, path: &Path) {
    match verdict {
        HostVerdict::Trusted(HostTrustedBy::Key { line }) => {
            debug!("host key found in {}:{line}", path.display());
        }
        HostVerdict::Trusted(HostTrustedBy::Certificate {
            line, principal, ..
        }) => {
            debug!(
                "host certificate for principal \"{principal}\" trusted by the @cert-authority line {}:{line}",
                path.display()
            );
        }
        HostVerdict::Unknown {
            ignored_certificate_ca: Some(ca),
        } => {
            debug!(
                "no @cert-authority line in {} trusts the certificate's CA {ca} for {host_field}: checking the host key alone",
                path.display()
            );
            debug!("no key for {host_field} in {}", path.display());
        }
        HostVerdict::Unknown { .. } => {
            debug!("no key for {host_field} in {}", path.display());
        }
        _ => {}
    }
}

/// The refusal of an unknown key when there is no prompt (left) to ask.
fn unknown_refusal(host_field: &str, key: &PublicKey) -> Decision {
    Decision::Refuse(HostKeyError::Unknown {
        host_field: host_field.to_owned(),
        presented: key.fingerprint(),
        reason: UnknownReason::NoPrompt,
    })
}

/// Whether the server has closed (or reset) the connection, without waiting: after
/// message 2 it sends nothing until message 3, so anything readable now is its end
/// of stream.
async fn peer_has_closed<S>(stream: &mut S) -> bool
where
    S: AsyncRead + Unpin,
{
    let mut probe = [0u8; 1];
    tokio::select! {
        biased;
        read = stream.read(&mut probe) => matches!(read, Ok(0) | Err(_)),
        () = std::future::ready(()) => false,
    }
}

/// Asks the user about an unknown key, on a blocking thread.
async fn ask(unknown: UnknownHost, prompt: HostKeyPrompt) -> Decision {
    let host_field = unknown.host_field.clone();
    let presented = unknown.key.fingerprint();
    let failed = |cause| {
        Decision::Refuse(HostKeyError::PromptFailed {
            host_field: host_field.clone(),
            cause,
        })
    };
    match tokio::task::spawn_blocking(move || prompt(&unknown)).await {
        Ok(Ok(true)) => Decision::Remember,
        Ok(Ok(false)) => Decision::Refuse(HostKeyError::Unknown {
            host_field: host_field.clone(),
            presented,
            reason: UnknownReason::Declined,
        }),
        Ok(Err(error)) => failed(error),
        Err(error) => failed(io::Error::other(error.to_string())),
    }
}

/// Appends `host_field key` to known_hosts, under a lock, atomically.
fn add_known_host(path: &Path, host_field: &str, key: &PublicKey) -> Result<(), ClientError> {
    fsutil::update_locked(path, KNOWN_HOSTS_MODE, |old| {
        Ok::<_, io::Error>((Some(known_hosts::append_entry(old, host_field, key)), ()))
    })
    .map_err(|cause| ClientError::KnownHosts {
        path: path.to_path_buf(),
        cause,
    })
}
