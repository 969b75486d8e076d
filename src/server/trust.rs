//! The server's certificate trust and revocation files, beside authorized_keys:
//! sshd's `TrustedUserCAKeys` with its `AuthorizedPrincipalsFile`, and `RevokedKeys`
//! ([`ServerConfig::trusted_user_ca_keys`], [`ServerConfig::authorized_principals`],
//! [`ServerConfig::revoked_keys`]), and the one decision that admits or refuses a
//! client from all of them ([`decide`]).
//!
//! The files are small and rarely change, so every new connection looks at their
//! versions (one `stat` each) and a changed file is read again, off the async
//! threads, one load at a time ([`TrustFiles::current`]). A load that sees a file
//! change while it is read tries again, then gives up on that file: for the
//! revoked-keys file that refuses every client (fail closed), as an unreadable one
//! does, since a half-read list would admit the keys it no longer shows.
//!
//! Open sessions are checked again on a reload ([`ReloadTrigger`](super::ReloadTrigger),
//! SIGHUP in `serve`), against the loaded versions, never waiting for I/O; the
//! [`watch`] task reloads the files on the same trigger (and, with `revoke_live`,
//! whenever one changes) and pulls the trigger again when a new version came in, so
//! sessions get a second look with the files as they are now. A revoked-keys file
//! that became unusable ends no session (it proves nothing about any one of them)
//! but refuses every new one.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tracing::{info, warn};

use super::authorized::{AllowListError, FileVersion, MAX_LOGGED_LINE_PROBLEMS};
use super::config::ServerConfig;
use super::Shared;
use crate::identity::PublicKey;
use crate::openssh::authorized_keys::{AuthorizedKeys, ClientAdmission, ClientDenial, Diagnostic};
use crate::openssh::certificate::{Certificate, CertificateError};
use crate::openssh::revoked::RevokedKeys;
use crate::openssh::trusted_user_ca::{AuthorizedPrincipals, TrustedUserCas};

/// Reads of a file that changes while it is read, before it counts as unusable.
const MAX_READ_ATTEMPTS: usize = 5;
/// The pause between two such reads.
const READ_RETRY_PAUSE: Duration = Duration::from_millis(20);

/// The configured files and their last loaded versions.
#[derive(Debug)]
pub(crate) struct TrustFiles {
    /// `TrustedUserCAKeys` and `AuthorizedPrincipalsFile`: both or neither
    /// ([`ServerConfig::validate`]).
    user_cas: Option<(PathBuf, PathBuf)>,
    /// `RevokedKeys`.
    revoked: Option<PathBuf>,
    /// The last load; empty (nothing configured, or nothing loaded yet) at first.
    snapshot: Mutex<Arc<TrustSnapshot>>,
    /// Held while the files are read: one load at a time.
    loading: tokio::sync::Mutex<()>,
}

/// What one load of the files found.
#[derive(Debug, Default)]
pub(super) struct TrustSnapshot {
    /// The files' versions when read (`None`: could not be examined), in the order
    /// CA keys, principals, revoked keys; `None` before the first load.
    versions: Option<[Option<FileVersion>; 3]>,
    /// The trusted user CAs with the principals accepted from them, or why they
    /// cannot be used (then no certificate is admitted through them).
    user_cas: Option<Result<(TrustedUserCas, AuthorizedPrincipals), String>>,
    /// The revoked keys, or why the file cannot be used (then every new client is
    /// refused).
    revoked: Option<Result<RevokedKeys, String>>,
}

impl TrustFiles {
    /// The files `config` names (none: every check here passes).
    pub(super) fn new(config: &ServerConfig) -> Self {
        let user_cas = config
            .trusted_user_ca_keys
            .clone()
            .zip(config.authorized_principals.clone());
        Self {
            user_cas,
            revoked: config.revoked_keys.clone(),
            snapshot: Mutex::default(),
            loading: tokio::sync::Mutex::new(()),
        }
    }

    /// Whether any file is configured.
    pub(super) fn configured(&self) -> bool {
        self.user_cas.is_some() || self.revoked.is_some()
    }

    /// The last load, without I/O (for open sessions).
    pub(super) fn snapshot(&self) -> Arc<TrustSnapshot> {
        Arc::clone(
            &self
                .snapshot
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        )
    }

    /// The files' versions now (a `stat` each).
    fn versions(&self) -> [Option<FileVersion>; 3] {
        let of = |path: Option<&PathBuf>| path.and_then(|path| FileVersion::of(path).ok());
        let (cas, principals) = match &self.user_cas {
            Some((cas, principals)) => (Some(cas), Some(principals)),
            None => (None, None),
        };
        [of(cas), of(principals), of(self.revoked.as_ref())]
    }

    /// The files as they are now, read again if one changed since the last load.
    pub(super) async fn current(&self) -> Arc<TrustSnapshot> {
        self.refresh().await.0
    }

    /// [`current`](Self::current), and whether a new version was loaded.
    pub(super) async fn refresh(&self) -> (Arc<TrustSnapshot>, bool) {
        if !self.configured() {
            return (self.snapshot(), false);
        }
        let fresh = |snapshot: &Arc<TrustSnapshot>| snapshot.versions == Some(self.versions());
        let snapshot = self.snapshot();
        if fresh(&snapshot) {
            return (snapshot, false);
        }
        let _loading = self.loading.lock().await;
        // Another connection may have loaded it while this one waited.
        let snapshot = self.snapshot();
        if fresh(&snapshot) {
            return (snapshot, false);
        }
        let (user_cas, revoked) = (self.user_cas.clone(), self.revoked.clone());
        let loaded = tokio::task::spawn_blocking(move || load(user_cas, revoked))
            .await
            .unwrap_or_else(|panic| TrustSnapshot {
                versions: None,
                user_cas: Some(Err(format!("loading the trusted CA keys failed: {panic}"))),
                revoked: Some(Err(format!("loading the revoked keys failed: {panic}"))),
            });
        loaded.log();
        let loaded = Arc::new(loaded);
        *self
            .snapshot
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::clone(&loaded);
        (loaded, true)
    }
}

/// The trusted user CA keys or principals file cannot be used: a server told to
/// trust certificates through them would admit none (`serve` refuses to start).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct TrustFilesError {
    /// What failed, naming the file.
    pub message: String,
}

impl TrustSnapshot {
    /// Why the trusted user CA files cannot be used, if they cannot.
    pub(super) fn user_cas_error(&self) -> Option<TrustFilesError> {
        match &self.user_cas {
            Some(Err(message)) => Some(TrustFilesError {
                message: message.clone(),
            }),
            _ => None,
        }
    }
}

/// Reads `path` with `load` until the file stayed the same version over a read.
fn read_stable<T>(
    path: &Path,
    load: impl Fn(&Path) -> Result<T, String>,
) -> (Option<FileVersion>, Result<T, String>) {
    for attempt in 1..=MAX_READ_ATTEMPTS {
        let before = FileVersion::of(path).ok();
        let result = load(path);
        let after = FileVersion::of(path).ok();
        if before == after {
            return (after, result);
        }
        if attempt < MAX_READ_ATTEMPTS {
            std::thread::sleep(READ_RETRY_PAUSE);
        }
    }
    let error = format!(
        "{} kept changing while it was read ({MAX_READ_ATTEMPTS} attempts); write it to a \
         temporary file and rename it into place",
        path.display()
    );
    (FileVersion::of(path).ok(), Err(error))
}

/// Loads the files. Blocking: run off the async threads.
fn load(user_cas: Option<(PathBuf, PathBuf)>, revoked: Option<PathBuf>) -> TrustSnapshot {
    let mut versions = [None; 3];
    let user_cas = user_cas.map(|(cas_path, principals_path)| {
        let (cas_version, cas) = read_stable(&cas_path, |path| {
            TrustedUserCas::load(path).map_err(|error| {
                format!(
                    "cannot read the trusted user CA keys file {}: {error}",
                    path.display()
                )
            })
        });
        let (principals_version, principals) = read_stable(&principals_path, |path| {
            AuthorizedPrincipals::load(path).map_err(|error| {
                format!(
                    "cannot read the authorized principals file {}: {error}",
                    path.display()
                )
            })
        });
        versions[0] = cas_version;
        versions[1] = principals_version;
        Ok((cas?, principals?))
    });
    let revoked = revoked.map(|path| {
        let (version, revoked) = read_stable(&path, |path| {
            RevokedKeys::load(path).map_err(|error| error.to_string())
        });
        versions[2] = version;
        revoked
    });
    TrustSnapshot {
        versions: Some(versions),
        user_cas,
        revoked,
    }
}

/// Logs the first [`MAX_LOGGED_LINE_PROBLEMS`] of `warnings`, then a count.
fn log_line_problems(warnings: &[Diagnostic]) {
    for warning in warnings.iter().take(MAX_LOGGED_LINE_PROBLEMS) {
        warn!("{warning}");
    }
    if warnings.len() > MAX_LOGGED_LINE_PROBLEMS {
        warn!(
            "{} more problems in the same file not shown",
            warnings.len() - MAX_LOGGED_LINE_PROBLEMS
        );
    }
}

impl TrustSnapshot {
    /// Logs what a new load found: the per-line problems, and a file that cannot
    /// be used with what that does and how to fix it.
    fn log(&self) {
        match &self.user_cas {
            Some(Ok((cas, principals))) => {
                log_line_problems(&cas.warnings);
                log_line_problems(&principals.warnings);
                info!(
                    "trusting user certificates of {} CA keys ({}) for {} principals ({})",
                    cas.keys.len(),
                    cas.path.display(),
                    principals.names.len(),
                    principals.path.display()
                );
            }
            Some(Err(error)) => warn!(
                "{error}: no certificate is admitted through the trusted user CAs until it \
                 can be read"
            ),
            None => {}
        }
        match &self.revoked {
            Some(Ok(revoked)) => log_line_problems(&revoked.warnings),
            Some(Err(error)) => warn!(
                "{error}: every client is refused until the revoked keys file can be used \
                 (make it readable by the server; an empty file revokes nothing)"
            ),
            None => {}
        }
    }

    /// Why the revoked-keys file refuses `client` (and its `certificate`): `None`
    /// when it does not, `Some(Err)` when the file cannot be used.
    fn revocation(
        &self,
        client: &PublicKey,
        certificate: Option<&Certificate>,
    ) -> Option<Result<Refusal, &str>> {
        let revoked = match self.revoked.as_ref()? {
            Ok(revoked) => revoked,
            Err(error) => return Some(Err(error)),
        };
        let path = revoked.path.display();
        if revoked.is_revoked_key(client) {
            let fingerprint = client.fingerprint();
            return Some(Ok(Refusal {
                client: format!("key {fingerprint} is revoked"),
                log: format!("key {fingerprint} is revoked by {path}"),
                comment: Box::default(),
            }));
        }
        let certificate = certificate?;
        let why = revoked.certificate_revocation(certificate)?;
        Some(Ok(Refusal {
            client: format!(
                "certificate \"{}\" serial {} is revoked",
                certificate.key_id, certificate.serial
            ),
            log: format!(
                "{} refused: {why} by {path}",
                certificate_text(certificate, None)
            ),
            comment: certificate_comment(certificate, None),
        }))
    }
}

/// How a client was admitted.
#[derive(Debug)]
pub(super) struct Admission {
    /// For the session's log lines: the authorized_keys comment, or the
    /// certificate's key id, serial and principal.
    pub(super) comment: Box<str>,
    /// What admitted it, for the log: `key allowed by FILE:LINE` or
    /// `certificate key_id="..." serial=N principal=P CA SHA256:... (...)`.
    pub(super) log: String,
    /// Whether a certificate admitted it (logged at info, as sshd logs the
    /// certificate's id and serial; plain keys at debug).
    pub(super) by_certificate: bool,
}

/// Why a client was refused.
#[derive(Debug)]
pub(super) struct Refusal {
    /// What the client is told (after `permission denied: `): never a file.
    pub(super) client: String,
    /// What the log says: the files and lines that decided.
    pub(super) log: String,
    /// The comment of the line that refused it, if any.
    pub(super) comment: Box<str>,
}

/// `certificate key_id="..." serial=N [principal=P] CA SHA256:...`.
fn certificate_text(certificate: &Certificate, principal: Option<&str>) -> String {
    let principal = principal.map_or_else(String::new, |name| format!(" principal={name}"));
    format!(
        "certificate key_id=\"{}\" serial={}{principal} CA {}",
        certificate.key_id,
        certificate.serial,
        certificate.signature_key.fingerprint()
    )
}

/// The session comment of a certificate session.
fn certificate_comment(certificate: &Certificate, principal: Option<&str>) -> Box<str> {
    let principal = principal.map_or_else(String::new, |name| format!(" principal={name}"));
    format!(
        "key_id=\"{}\" serial={}{principal}",
        certificate.key_id, certificate.serial
    )
    .into()
}

/// The whole admission decision for a client that proved `client` (and sent
/// `certificate`) from `addr` at `now`, in sshd's order: the revoked-keys file
/// first (a listed key, certificate or CA is refused however it would be trusted;
/// an unusable file refuses everyone), then authorized_keys (`keys`: a key line,
/// or a `cert-authority` line for the certificate), then the trusted user CAs.
/// `keys` is the error when authorized_keys cannot be used: then only a trusted
/// user CA can admit.
///
/// # Errors
/// The [`Refusal`], with the client's text and the log's.
pub(super) fn decide(
    keys: Result<&AuthorizedKeys, &AllowListError>,
    trust: &TrustSnapshot,
    client: &PublicKey,
    certificate: Option<&Certificate>,
    addr: IpAddr,
    now: SystemTime,
) -> Result<Admission, Refusal> {
    match trust.revocation(client, certificate) {
        None => {}
        Some(Ok(refusal)) => return Err(refusal),
        Some(Err(error)) => {
            // Formatted here only: an admitted client pays no fingerprint for it.
            let not_authorized = format!(
                "key {} is not authorized on this server",
                client.fingerprint()
            );
            return Err(Refusal {
                log: format!(
                    "{not_authorized}: {error}: every client is refused until the revoked keys \
                     file can be used (make it readable by the server; an empty file revokes \
                     nothing)"
                ),
                client: not_authorized,
                comment: Box::default(),
            });
        }
    }
    admit(keys, trust, client, certificate, addr, now)
}

/// [`decide`] after the revoked-keys file: authorized_keys, then the trusted user
/// CAs.
fn admit(
    keys: Result<&AuthorizedKeys, &AllowListError>,
    trust: &TrustSnapshot,
    client: &PublicKey,
    certificate: Option<&Certificate>,
    addr: IpAddr,
    now: SystemTime,
) -> Result<Admission, Refusal> {
    let not_authorized = || {
        format!(
            "key {} is not authorized on this server",
            client.fingerprint()
        )
    };
    let refusal = match keys {
        Ok(keys) => match keys.authorize_client(client, certificate, addr, now) {
            Ok(ClientAdmission::Key(entry)) => {
                return Ok(Admission {
                    comment: entry.comment.as_str().into(),
                    // The key's fingerprint is on the handshake's line just before.
                    log: format!("key allowed by {}:{}", keys.path.display(), entry.line),
                    by_certificate: false,
                });
            }
            Ok(ClientAdmission::Certificate(admission)) => {
                let certificate = certificate.expect("a certificate admission has a certificate");
                let principal = Some(admission.principal.as_str());
                return Ok(Admission {
                    comment: certificate_comment(certificate, principal),
                    log: format!(
                        "{} ({}:{})",
                        certificate_text(certificate, principal),
                        keys.path.display(),
                        admission.authority.line
                    ),
                    by_certificate: true,
                });
            }
            Err(denial) => {
                let line = match &denial {
                    ClientDenial::Key(denial) => denial.line(),
                    ClientDenial::Certificate(denial) => {
                        denial.reason.line().or_else(|| denial.key.line())
                    }
                };
                let comment = line
                    .and_then(|line| keys.comment_at(line))
                    .unwrap_or_default();
                Refusal {
                    client: denial.to_string(),
                    log: denial.log_text(&keys.path),
                    comment: comment.into(),
                }
            }
        },
        Err(error) => Refusal {
            client: not_authorized(),
            // The file and why it cannot be used (unreadable, unsafe permissions...).
            log: format!("{}: {error}", not_authorized()),
            comment: Box::default(),
        },
    };
    let Some(certificate) = certificate else {
        return Err(refusal);
    };
    match &trust.user_cas {
        None => Err(refusal),
        Some(Err(error)) => Err(Refusal {
            log: format!("{}; and {error}", refusal.log),
            ..refusal
        }),
        Some(Ok((cas, principals))) => {
            match cas.check(certificate, client, principals, addr, now) {
                Ok(admitted) => {
                    let principal = Some(admitted.principal.name.as_str());
                    Ok(Admission {
                        comment: certificate_comment(certificate, principal),
                        log: format!(
                            "{} (TrustedUserCAKeys {}:{}, principal at {}:{})",
                            certificate_text(certificate, principal),
                            cas.path.display(),
                            admitted.ca.line,
                            principals.path.display(),
                            admitted.principal.line
                        ),
                        by_certificate: true,
                    })
                }
                // Neither file trusts its CA: authorized_keys' refusal says it all.
                Err(CertificateError::UntrustedCa(_)) => Err(refusal),
                // A trusted CA signed it: its refusal is the one that matters.
                Err(reason) => {
                    let place = match &reason {
                        CertificateError::PrincipalNotAllowed { line, .. } => format!(
                            "TrustedUserCAKeys {}:{line}, none in {}",
                            cas.path.display(),
                            principals.path.display()
                        ),
                        _ => format!("TrustedUserCAKeys {}", cas.path.display()),
                    };
                    Err(Refusal {
                        client: format!(
                            "key {} is not authorized on this server; its certificate \"{}\" is refused: {reason}",
                            client.fingerprint(),
                            certificate.key_id
                        ),
                        log: format!(
                            "{} refused ({place}): {reason}",
                            certificate_text(certificate, None)
                        ),
                        comment: certificate_comment(certificate, None),
                    })
                }
            }
        }
    }
}

/// After a reload: whether an open session may go on. Its key, certificate and CA
/// against the revoked keys loaded now (a file that cannot be used ends nobody);
/// then the full decision against a settled authorized_keys (`keys`; `None`
/// while it is being written or cannot be used, when only a revocation ends the
/// session).
pub(super) fn session_still_allowed(
    keys: Option<&AuthorizedKeys>,
    trust: &TrustSnapshot,
    peer: SocketAddr,
    client: &PublicKey,
    certificate: Option<&Certificate>,
) -> bool {
    if let Some(Ok(_)) = trust.revocation(client, certificate) {
        return false;
    }
    let Some(keys) = keys else {
        return true;
    };
    let addr = super::listener::canonical_ip(peer.ip());
    admit(
        Ok(keys),
        trust,
        client,
        certificate,
        addr,
        SystemTime::now(),
    )
    .is_ok()
}

/// Reloads the files on every reload trigger and, with `poll`, whenever one
/// changes; pulls the trigger again when a new version was loaded, so that open
/// sessions are checked against it.
pub(super) async fn watch(shared: Arc<Shared>, poll: Option<Duration>) {
    let mut reload = shared.reload.subscribe();
    let mut interval = poll.map(|every| {
        let mut interval = tokio::time::interval(every);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        interval
    });
    // The load this task last had sessions checked against: a connection may load
    // a new version first, and open sessions must still hear of it.
    let mut seen = shared.trust.snapshot();
    loop {
        let tick = async {
            match &mut interval {
                Some(interval) => {
                    interval.tick().await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            changed = reload.changed() => if changed.is_err() { return },
            () = tick => {}
        }
        let (now, _) = shared.trust.refresh().await;
        if !Arc::ptr_eq(&now, &seen) {
            seen = now;
            info!("certificate trust or revocation files changed: checking open sessions");
            shared.reload.trigger();
        }
    }
}
