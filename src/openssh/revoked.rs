//! sshd's `RevokedKeys` file: keys and certificates that must not be accepted, even
//! when authorized_keys or a trusted CA would admit them.
//!
//! The file is either an OpenSSH KRL ([`crate::openssh::krl`], made by `ssh-keygen
//! -k`), recognised by its magic bytes, or else a text list as sshd reads one: a
//! public key or certificate per line (`TYPE BASE64 [comment]`), with blank lines
//! and `#` comments. As sshd does (authfile.c's `sshkey_in_file` with `check_ca`), a
//! listed key revokes the key and every certificate of it, a listed certificate
//! revokes the key it certifies, and a certificate is revoked when its CA key is
//! listed.
//!
//! A text line that cannot be read is reported as a [`Diagnostic`] naming the file
//! and line, and the rest of the file is still used. sshd instead refuses every key
//! when its revoked-keys file has a bad line; a server that wants that should refuse
//! to start (or to reload) when [`RevokedKeys::warnings`] is not empty. Lines of key
//! types noise-echo never accepts (`ssh-rsa`, ...) are well-formed but can revoke
//! none of its keys: they are counted in [`RevokedKeys::other_key_types`], not
//! warned about. A KRL that does not parse is an error: nothing of it can be trusted.

use std::collections::HashSet;
use std::io;
use std::path::{Path, PathBuf};

use crate::identity::{PublicKey, SSH_ED25519};
use crate::openssh::authorized_keys::Diagnostic;
use crate::openssh::certificate::{Certificate, ED25519_CERT};
use crate::openssh::krl::{Krl, KrlError, Revocation, KRL_MAGIC, MAX_KRL_LEN};
use crate::openssh::lexer::{self, LineText};

/// Why a revoked-keys file could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RevokedKeysError {
    /// The file could not be read (missing, unreadable, not a regular file...).
    #[error("cannot read the revoked keys file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The file is larger than [`MAX_KRL_LEN`], for a KRL and a text list alike.
    #[error("the revoked keys file {} is {len} bytes, more than the {MAX_KRL_LEN} read", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        len: u64,
    },
    /// The file starts as a KRL but is not a valid one.
    #[error("the revoked keys file {} is not a valid KRL: {source} (regenerate it with ssh-keygen -k)", path.display())]
    Krl {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        source: KrlError,
    },
}

/// What the file is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    /// A binary KRL.
    Krl(Krl),
    /// A text list: the keys it names (certificates contribute the key they certify).
    List(HashSet<PublicKey>),
}

/// A loaded revoked-keys file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokedKeys {
    /// The file it was read from.
    pub path: PathBuf,
    source: Source,
    /// Text lines that could not be read, each naming the file and line; the
    /// other lines are in force. Always empty for a KRL.
    pub warnings: Vec<Diagnostic>,
    /// Text lines holding keys of types noise-echo never accepts (they revoke
    /// nothing it could admit). Always 0 for a KRL.
    pub other_key_types: usize,
}

impl RevokedKeys {
    /// Reads a revoked-keys file: a KRL if it starts with the KRL magic, else a
    /// text list of keys and certificates.
    ///
    /// # Errors
    /// [`RevokedKeysError::Read`] when the file cannot be read (a server must then
    /// refuse every key, as sshd does, rather than accept revoked ones),
    /// [`RevokedKeysError::TooLarge`], and [`RevokedKeysError::Krl`] for a broken KRL.
    pub fn load(path: &Path) -> Result<Self, RevokedKeysError> {
        let read_error = |source| RevokedKeysError::Read {
            path: path.to_path_buf(),
            source,
        };
        let (file, metadata) = crate::fsutil::open_regular(path).map_err(read_error)?;
        // Checked before reading, so a huge file is not read into memory.
        let limit = MAX_KRL_LEN as u64;
        if metadata.len() > limit {
            return Err(RevokedKeysError::TooLarge {
                path: path.to_path_buf(),
                len: metadata.len(),
            });
        }
        let mut bytes = Vec::new();
        // The file may grow after the check: read one byte more than allowed at most.
        io::Read::read_to_end(&mut io::Read::take(file, limit + 1), &mut bytes)
            .map_err(read_error)?;
        if bytes.len() > MAX_KRL_LEN {
            return Err(RevokedKeysError::TooLarge {
                path: path.to_path_buf(),
                len: bytes.len() as u64,
            });
        }
        Self::parse(&bytes, path)
    }

    /// Parses the contents of a revoked-keys file; `path` names it in messages.
    ///
    /// # Errors
    /// [`RevokedKeysError::Krl`] when `bytes` start as a KRL that is not valid, and
    /// [`RevokedKeysError::TooLarge`] for more than [`MAX_KRL_LEN`] bytes.
    pub fn parse(bytes: &[u8], path: &Path) -> Result<Self, RevokedKeysError> {
        if bytes.len() > MAX_KRL_LEN {
            return Err(RevokedKeysError::TooLarge {
                path: path.to_path_buf(),
                len: bytes.len() as u64,
            });
        }
        if bytes.starts_with(KRL_MAGIC) {
            let krl = Krl::parse(bytes).map_err(|source| RevokedKeysError::Krl {
                path: path.to_path_buf(),
                source,
            })?;
            return Ok(Self {
                path: path.to_path_buf(),
                source: Source::Krl(krl),
                warnings: Vec::new(),
                other_key_types: 0,
            });
        }
        let mut keys = HashSet::new();
        let mut warnings = Vec::new();
        let mut other_key_types = 0;
        for (line, raw) in lexer::numbered_lines(bytes) {
            let warn = |message: String| Diagnostic {
                path: path.to_path_buf(),
                line,
                message: format!("{message}; line ignored, the others still revoke"),
            };
            let text = match lexer::line_text(raw) {
                LineText::Skip => continue,
                LineText::NotUtf8 => {
                    warnings.push(warn("not UTF-8 text".to_owned()));
                    continue;
                }
                LineText::Text(text) => text,
            };
            match key_of_line(text) {
                Ok(Some(key)) => {
                    keys.insert(key);
                }
                Ok(None) => other_key_types += 1,
                Err(reason) => warnings.push(warn(reason)),
            }
        }
        Ok(Self {
            path: path.to_path_buf(),
            source: Source::List(keys),
            warnings,
            other_key_types,
        })
    }

    /// The KRL, when the file is one.
    pub fn krl(&self) -> Option<&Krl> {
        match &self.source {
            Source::Krl(krl) => Some(krl),
            Source::List(_) => None,
        }
    }

    /// The number of keys a text list names (0 for a KRL: see [`Krl::summary`]).
    pub fn listed_keys(&self) -> usize {
        match &self.source {
            Source::Krl(_) => 0,
            Source::List(keys) => keys.len(),
        }
    }

    /// Whether a plain key is revoked. Check it for every client or host key
    /// offered, trusted through a key line or not.
    pub fn is_revoked_key(&self, key: &PublicKey) -> bool {
        match &self.source {
            Source::Krl(krl) => krl.is_revoked_key(key),
            Source::List(keys) => keys.contains(key),
        }
    }

    /// Why a certificate is revoked, if it is: its serial or key ID under its CA is
    /// revoked (KRL only), its own key is, or its CA key is.
    pub fn certificate_revocation(&self, certificate: &Certificate) -> Option<Revocation> {
        match &self.source {
            Source::Krl(krl) => krl.certificate_revocation(certificate),
            Source::List(keys) => {
                if keys.contains(&certificate.key) {
                    Some(Revocation::Key)
                } else if keys.contains(&certificate.signature_key) {
                    Some(Revocation::CaKey)
                } else {
                    None
                }
            }
        }
    }

    /// Whether a certificate is revoked ([`RevokedKeys::certificate_revocation`] says
    /// why).
    pub fn is_revoked_certificate(&self, certificate: &Certificate) -> bool {
        self.certificate_revocation(certificate).is_some()
    }
}

/// The key a text line revokes: `Some` for an Ed25519 key or certificate, `None`
/// for a well-formed line of another key type, an error naming what is wrong.
fn key_of_line(text: &str) -> Result<Option<PublicKey>, String> {
    let (algorithm, rest) = lexer::split_field(text);
    let (blob, _comment) = lexer::split_field(rest);
    if algorithm == SSH_ED25519 {
        return PublicKey::from_openssh_fields(algorithm, blob)
            .map(Some)
            .map_err(|error| format!("malformed ssh-ed25519 key: {error}"));
    }
    if algorithm == ED25519_CERT {
        return Certificate::from_openssh_line(text)
            .map(|certificate| Some(certificate.key))
            .map_err(|error| format!("unreadable certificate: {error}"));
    }
    if lexer::is_known_key_type(algorithm) {
        if blob.is_empty() {
            return Err(format!("{algorithm} with no key data"));
        }
        return Ok(None);
    }
    Err(format!(
        "expected a public key or certificate ('ssh-ed25519 AAAA... comment'), found '{}'",
        algorithm.chars().take(40).collect::<String>()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Identity;

    #[test]
    fn a_text_list_revokes_its_keys_and_names_bad_lines() {
        let revoked = Identity::generate("").public_key();
        let kept = Identity::generate("").public_key();
        let text = format!(
            "# revoked\n\n  {}\nnot a key\nssh-ed25519 AAAA\nssh-rsa AAAAB3NzaC1yc2E= other\n",
            revoked.to_openssh_line("gone")
        );
        let list = RevokedKeys::parse(text.as_bytes(), Path::new("revoked")).unwrap();
        assert!(list.is_revoked_key(&revoked));
        assert!(!list.is_revoked_key(&kept));
        assert_eq!(list.listed_keys(), 1);
        assert_eq!(list.other_key_types, 1);
        let lines: Vec<usize> = list.warnings.iter().map(|w| w.line).collect();
        assert_eq!(lines, [4, 5]);
        assert!(list.warnings[0]
            .to_string()
            .starts_with("revoked:4: expected a public key"));
        assert!(list.krl().is_none());
    }

    #[test]
    fn an_empty_file_revokes_nothing_and_a_broken_krl_is_an_error() {
        let empty = RevokedKeys::parse(b"", Path::new("empty")).unwrap();
        assert!(!empty.is_revoked_key(&Identity::generate("").public_key()));
        let error = RevokedKeys::parse(b"SSHKRL\n\0\0\0", Path::new("bad.krl")).unwrap_err();
        assert!(
            error.to_string().contains("bad.krl is not a valid KRL"),
            "{error}"
        );
    }
}
