//! A server's trusted user CAs kept apart from authorized_keys, as sshd's
//! `TrustedUserCAKeys` and `AuthorizedPrincipalsFile` keep them: one file of CA public
//! keys ([`TrustedUserCas`]) and one of the principal names accepted from any of them
//! ([`AuthorizedPrincipals`]). A fleet installs the same two files everywhere instead
//! of a `cert-authority` line in every authorized_keys.
//!
//! The CA file: one `ssh-ed25519 BASE64 [comment]` per line, `#` comments and blank
//! lines allowed, as sshd reads `TrustedUserCAKeys`. Keys of other types are skipped
//! with a warning (noise-echo certificates are signed by Ed25519 CAs); a line with
//! options is malformed (sshd takes none in this file either).
//!
//! The principals file: one name per line, `#` comments and blank lines allowed, as
//! sshd's `AuthorizedPrincipalsFile`. sshd also allows authorized_keys options before
//! a name; noise-echo does not, and skips such a line with a warning rather than
//! accept the name without the restriction its author wrote (fail closed).
//!
//! [`TrustedUserCas::check`] decides a certificate against both, with the checks of
//! [`Certificate::check_user_terms`]. Parsing never fails and never logs: problems
//! come back as [`Diagnostic`]s for the caller.

use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::identity::{PublicKey, SSH_ED25519};
use crate::openssh::authorized_keys::Diagnostic;
use crate::openssh::certificate::{Certificate, CertificateError};
use crate::openssh::lexer::{
    is_field_separator, is_known_key_type, line_text, numbered_lines, split_field, LineText,
};

/// One CA key of a `TrustedUserCAKeys` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedCa {
    /// The CA key: user certificates it signs are trusted.
    pub key: PublicKey,
    /// The text after the key; empty when absent.
    pub comment: String,
    /// The 1-based line number, for the log.
    pub line: usize,
}

/// A parsed `TrustedUserCAKeys` file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TrustedUserCas {
    /// The file the keys came from.
    pub path: PathBuf,
    /// The trusted CA keys, in file order.
    pub keys: Vec<TrustedCa>,
    /// One per skipped line, for the caller to log.
    pub warnings: Vec<Diagnostic>,
}

/// One name of an `AuthorizedPrincipalsFile`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The name, compared exactly with a certificate's principals.
    pub name: String,
    /// The 1-based line number, for the log.
    pub line: usize,
}

/// A parsed `AuthorizedPrincipalsFile`: the principals accepted from the trusted CAs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AuthorizedPrincipals {
    /// The file the names came from.
    pub path: PathBuf,
    /// The accepted names, in file order.
    pub names: Vec<Principal>,
    /// One per skipped line, for the caller to log.
    pub warnings: Vec<Diagnostic>,
}

/// A certificate admitted by [`TrustedUserCas::check`]: what the log names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedAdmission<'a> {
    /// The CA line that signed it.
    pub ca: &'a TrustedCa,
    /// The principals-file entry it was admitted as.
    pub principal: &'a Principal,
}

/// Reads `path` with `parse`; a missing file is an error of kind
/// [`io::ErrorKind::NotFound`], so the caller can refuse to start (or trust nobody).
fn load<T>(path: &Path, parse: fn(&[u8], &Path) -> T) -> io::Result<T> {
    Ok(parse(&std::fs::read(path)?, path))
}

/// The lines of `bytes` that hold text, with their numbers; a line that is not UTF-8
/// becomes a warning.
fn collect_lines<'a>(
    bytes: &'a [u8],
    path: &Path,
    warnings: &mut Vec<Diagnostic>,
) -> Vec<(usize, &'a str)> {
    let mut lines = Vec::new();
    for (number, line) in numbered_lines(bytes) {
        match line_text(line) {
            LineText::Skip => {}
            LineText::NotUtf8 => warnings.push(Diagnostic {
                path: path.to_owned(),
                line: number,
                message: "malformed line skipped: not valid UTF-8".to_owned(),
            }),
            LineText::Text(text) => lines.push((number, text)),
        }
    }
    lines
}

impl TrustedUserCas {
    /// Reads and parses the file at `path`.
    ///
    /// # Errors
    /// The error of reading the file (kind [`io::ErrorKind::NotFound`] when missing).
    pub fn load(path: &Path) -> io::Result<Self> {
        load(path, Self::parse)
    }

    /// Parses a `TrustedUserCAKeys` file; `path` names it in diagnostics.
    pub fn parse(bytes: &[u8], path: &Path) -> Self {
        let mut cas = Self {
            path: path.to_owned(),
            ..Self::default()
        };
        for (line, text) in collect_lines(bytes, path, &mut cas.warnings) {
            let (key_type, rest) = split_field(text);
            let problem = if key_type == SSH_ED25519 {
                let (blob, comment) = split_field(rest);
                match PublicKey::from_openssh_fields(key_type, blob) {
                    Ok(key) => {
                        cas.keys.push(TrustedCa {
                            key,
                            comment: comment.trim_end().to_owned(),
                            line,
                        });
                        continue;
                    }
                    Err(error) => format!("malformed line skipped: {error}"),
                }
            } else if is_known_key_type(key_type) {
                format!("{key_type} CA key skipped: noise-echo trusts ssh-ed25519 CAs only")
            } else {
                "malformed line skipped: expected 'ssh-ed25519 BASE64 [comment]' \
                 (this file takes no options)"
                    .to_owned()
            };
            cas.warnings.push(Diagnostic {
                path: path.to_owned(),
                line,
                message: problem,
            });
        }
        cas
    }

    /// Decides whether `certificate`, sent by a client that proved `authenticated`
    /// from `client_addr`, is admitted at `now`: it certifies `authenticated`, one of
    /// these CAs signed it, it passes [`Certificate::check_user_terms`] (type user,
    /// validity with [`CLOCK_SKEW`](crate::openssh::certificate::CLOCK_SKEW),
    /// `source-address`, no other critical option, some principal), and one of its
    /// principals is in `principals`.
    ///
    /// # Errors
    /// [`CertificateError::KeyMismatch`], [`CertificateError::UntrustedCa`], the
    /// errors of [`Certificate::check_user_terms`], and
    /// [`CertificateError::PrincipalNotAllowed`] (its `line` is the CA's line here).
    pub fn check<'a>(
        &'a self,
        certificate: &Certificate,
        authenticated: &PublicKey,
        principals: &'a AuthorizedPrincipals,
        client_addr: IpAddr,
        now: SystemTime,
    ) -> Result<TrustedAdmission<'a>, CertificateError> {
        certificate.check_key(authenticated)?;
        let ca = self
            .keys
            .iter()
            .find(|ca| ca.key == certificate.signature_key)
            .ok_or_else(|| {
                CertificateError::UntrustedCa(certificate.signature_key.fingerprint())
            })?;
        certificate.check_user_terms(client_addr, now)?;
        let principal = principals
            .names
            .iter()
            .find(|entry| certificate.principals.contains(&entry.name))
            .ok_or_else(|| CertificateError::PrincipalNotAllowed {
                principals: certificate.principals.clone(),
                line: ca.line,
            })?;
        Ok(TrustedAdmission { ca, principal })
    }
}

impl AuthorizedPrincipals {
    /// Reads and parses the file at `path`.
    ///
    /// # Errors
    /// The error of reading the file (kind [`io::ErrorKind::NotFound`] when missing).
    pub fn load(path: &Path) -> io::Result<Self> {
        load(path, Self::parse)
    }

    /// Parses a principals file; `path` names it in diagnostics.
    pub fn parse(bytes: &[u8], path: &Path) -> Self {
        let mut principals = Self {
            path: path.to_owned(),
            ..Self::default()
        };
        for (line, text) in collect_lines(bytes, path, &mut principals.warnings) {
            if text.contains(is_field_separator) {
                principals.warnings.push(Diagnostic {
                    path: path.to_owned(),
                    line,
                    message: "line skipped: options before a principal are not supported \
                              (one name per line)"
                        .to_owned(),
                });
                continue;
            }
            principals.names.push(Principal {
                name: text.to_owned(),
                line,
            });
        }
        principals
    }

    /// Whether `name` is accepted.
    pub fn contains(&self, name: &str) -> bool {
        self.names.iter().any(|entry| entry.name == name)
    }
}

#[cfg(test)]
mod tests;
