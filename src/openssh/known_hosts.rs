//! The client's memory of servers: which Ed25519 key each host presented before,
//! kept in OpenSSH's known_hosts syntax (wire-v1 sections 7 and 8).
//!
//! A line is `[marker] hostpatterns keytype BASE64 [comment]`. The host field is a
//! comma-separated pattern list (see [`crate::openssh::pattern`]) naming a host on a port
//! other than 22 as `[host]:port`, or one hashed name `|1|salt|hmac` as written by
//! `ssh-keygen -H` and `HashKnownHosts yes`.
//!
//! The file is often shared with ssh, so:
//! - keys of other types are ignored (an RSA key listed for ssh's sake does not make
//!   an Ed25519 key "changed"); they are noted in [`KnownHosts::ignored`];
//! - `@revoked` is honoured (for host keys and for CA keys), and
//!   `@cert-authority PATTERNS KEY` lines trust the host certificates their Ed25519
//!   CA key signs for those hosts ([`HostCertAuthority`], [`KnownHosts::verify_host`]
//!   in the `host_certificate` submodule);
//! - malformed lines are skipped with a warning naming `path:line`, and the rest of
//!   the file still counts.
//!
//! Parsing never logs: problems come back as [`Diagnostic`]s for the caller.

use std::io;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha1::Sha1;

use crate::identity::{Fingerprint, PublicKey, SSH_ED25519};
use crate::openssh::authorized_keys::append_line;
pub use crate::openssh::authorized_keys::Diagnostic;
use crate::openssh::lexer::{is_known_key_type, line_text, numbered_lines, split_field, LineText};
use crate::openssh::pattern::match_hostname;

mod host_certificate;
pub use host_certificate::{HostCertificateRefusal, HostTrustedBy, HostVerdict};

/// Length of the salt, and of the HMAC-SHA1, in a hashed host name. OpenSSH refuses
/// other salt lengths.
pub const HASH_LEN: usize = 20;

/// The start of a hashed host name: OpenSSH's HMAC-SHA1 scheme, version 1.
const HASH_MAGIC: &str = "|1|";

/// The host field of a known_hosts line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPatterns {
    /// A comma-separated pattern list, as written.
    Plain(String),
    /// One host name hidden as `|1|base64(salt)|base64(HMAC-SHA1(salt, name))`.
    Hashed {
        /// The HMAC key.
        salt: [u8; HASH_LEN],
        /// HMAC-SHA1 of the host field (`host` or `[host]:port`) under `salt`.
        hmac: [u8; HASH_LEN],
    },
}

impl HostPatterns {
    /// Parses a host field.
    ///
    /// # Errors
    /// A description of the problem when a hashed field is not `|1|salt|hmac` with a
    /// 20-byte salt and a 20-byte HMAC in base64.
    pub fn parse(field: &str) -> Result<Self, String> {
        if !field.starts_with('|') {
            return Ok(Self::Plain(field.to_owned()));
        }
        let bad = || format!("bad hashed host name \"{field}\" (expected |1|salt|hmac)");
        let rest = field.strip_prefix(HASH_MAGIC).ok_or_else(bad)?;
        let (salt, hmac) = rest.split_once('|').ok_or_else(bad)?;
        let decode =
            |text: &str| -> Option<[u8; HASH_LEN]> { STANDARD.decode(text).ok()?.try_into().ok() };
        Ok(Self::Hashed {
            salt: decode(salt).ok_or_else(bad)?,
            hmac: decode(hmac).ok_or_else(bad)?,
        })
    }

    /// Whether this field names `field`, the lowercased output of [`host_field`]:
    /// a positive, un-negated pattern match, or an equal HMAC.
    pub fn matches(&self, field: &str) -> bool {
        match self {
            Self::Plain(patterns) => match_hostname(field, patterns).is_positive(),
            Self::Hashed { salt, hmac } => host_hmac(field, salt) == *hmac,
        }
    }
}

/// One usable line of a known_hosts file: an Ed25519 key for some hosts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownHost {
    /// The 1-based line number.
    pub line: usize,
    /// Whether the line is `@revoked`: the key must never be accepted for these hosts.
    pub revoked: bool,
    /// The hosts the line is about.
    pub hosts: HostPatterns,
    /// The host key.
    pub key: PublicKey,
    /// The text after the key; empty when absent.
    pub comment: String,
}

/// A `@cert-authority PATTERNS ssh-ed25519 KEY` line: the CA whose host certificates
/// are trusted for the hosts the patterns match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostCertAuthority {
    /// The 1-based line number.
    pub line: usize,
    /// The hosts the CA may certify.
    pub hosts: HostPatterns,
    /// The CA key (never trusted as a host key itself).
    pub key: PublicKey,
    /// The text after the key; empty when absent.
    pub comment: String,
}

/// A parsed known_hosts file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KnownHosts {
    /// The file the entries came from.
    pub path: PathBuf,
    /// The Ed25519 lines (revoked or not), in file order.
    pub entries: Vec<KnownHost>,
    /// The `@cert-authority` lines with Ed25519 CA keys, in file order.
    pub cert_authorities: Vec<HostCertAuthority>,
    /// Lines skipped because they are malformed or unsupported, for the caller to
    /// show the user.
    pub warnings: Vec<Diagnostic>,
    /// Lines of other key types, skipped because they are not noise-echo's business;
    /// worth a debug-level log at most.
    pub ignored: Vec<Diagnostic>,
}

impl KnownHosts {
    /// Reads and parses the file at `path`. A missing file is an empty one: every
    /// host is then unknown.
    ///
    /// # Errors
    /// Any error reading the file other than [`io::ErrorKind::NotFound`].
    pub fn load(path: &Path) -> io::Result<Self> {
        match std::fs::read(path) {
            Ok(bytes) => Ok(Self::parse(&bytes, path)),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(Self {
                path: path.to_owned(),
                ..Self::default()
            }),
            Err(error) => Err(error),
        }
    }

    /// Parses the contents of a known_hosts file; `path` names it in diagnostics and
    /// in [`HostVerdict`]. Never fails: unusable lines become diagnostics.
    pub fn parse(bytes: &[u8], path: &Path) -> Self {
        let mut hosts = Self {
            path: path.to_owned(),
            ..Self::default()
        };
        for (number, line) in numbered_lines(bytes) {
            let diagnostic = |message: String| Diagnostic {
                path: path.to_owned(),
                line: number,
                message,
            };
            let lossy;
            let text = match line_text(line) {
                LineText::Skip => continue,
                // ssh ignores the comment's bytes: an @revoked line must not be lost
                // to a Latin-1 comment.
                LineText::NotUtf8 => match text_if_only_the_comment_is_not_utf8(line) {
                    Some(text) => {
                        lossy = text;
                        lossy.as_str()
                    }
                    None => {
                        let message = "malformed line skipped: not valid UTF-8".to_owned();
                        hosts.warnings.push(diagnostic(message));
                        continue;
                    }
                },
                LineText::Text(text) => text,
            };
            match parse_line(text, number) {
                Ok(Line::Host(entry)) => hosts.entries.push(entry),
                Ok(Line::Authority(authority)) => hosts.cert_authorities.push(authority),
                Err(Skip::Ignored(message)) => hosts.ignored.push(diagnostic(message)),
                Err(Skip::Warning(message)) => hosts.warnings.push(diagnostic(message)),
            }
        }
        hosts
    }

    /// What the file says about `key` presented by `host` on `port`, as a plain key
    /// (no certificate: [`verify_host`](Self::verify_host) is the whole decision).
    /// Host names are compared without regard to ASCII case. Returns
    /// [`HostVerdict::Trusted`] by [`HostTrustedBy::Key`], [`HostVerdict::Unknown`],
    /// [`HostVerdict::Changed`] or [`HostVerdict::Revoked`].
    ///
    /// As in OpenSSH, a matching `@revoked` line beats everything, then any
    /// non-revoked line holding the key makes it trusted; otherwise a non-revoked
    /// line with another key means the key changed. `@revoked` lines apply only to
    /// the hosts their patterns match (OpenSSH writes `*` to revoke a key everywhere).
    /// For a changed key this reports the first offending line, where ssh names the
    /// last; either is enough to find and fix the entry.
    pub fn check(&self, host: &str, port: u16, key: &PublicKey) -> HostVerdict {
        self.check_key(&host_field(host, port), key, None)
    }

    /// [`check`](Self::check) on a host field already built; `ignored_certificate_ca`
    /// goes into an [`HostVerdict::Unknown`] verdict.
    fn check_key(
        &self,
        field: &str,
        key: &PublicKey,
        ignored_certificate_ca: Option<Fingerprint>,
    ) -> HostVerdict {
        let matching = self
            .entries
            .iter()
            .filter(|entry| entry.hosts.matches(field));
        if let Some(entry) = matching
            .clone()
            .find(|entry| entry.revoked && entry.key == *key)
        {
            return HostVerdict::Revoked {
                path: self.path.clone(),
                line: entry.line,
                revoked_key: entry.key.fingerprint(),
            };
        }
        let mut first_other = None;
        for entry in matching.filter(|entry| !entry.revoked) {
            if entry.key == *key {
                return HostVerdict::Trusted(HostTrustedBy::Key { line: entry.line });
            }
            first_other.get_or_insert(entry);
        }
        match first_other {
            Some(entry) => HostVerdict::Changed {
                path: self.path.clone(),
                line: entry.line,
                known_fingerprint: entry.key.fingerprint(),
            },
            None => HostVerdict::Unknown {
                ignored_certificate_ca,
            },
        }
    }
}

/// A known_hosts line that holds a key under other names than the host being
/// checked, as ssh lists them under "This host key is known by the following other
/// names/addresses".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtherName {
    /// The 1-based line number, so the user can find the line.
    pub line: usize,
    /// The line's host patterns as written, or `[hashed name]` for a hashed one,
    /// which hides the name (as ssh shows it).
    pub name: String,
}

impl KnownHosts {
    /// The lines that hold `key` (not `@revoked`) for hosts other than `host` on
    /// `port`, in file order: ssh shows them when it asks about an unknown host, so
    /// that a user who knows the key under another name can recognise it.
    pub fn other_names(&self, host: &str, port: u16, key: &PublicKey) -> Vec<OtherName> {
        let field = host_field(host, port);
        self.entries
            .iter()
            .filter(|entry| !entry.revoked && entry.key == *key && !entry.hosts.matches(&field))
            .map(|entry| OtherName {
                line: entry.line,
                name: match &entry.hosts {
                    HostPatterns::Plain(patterns) => patterns.clone(),
                    HostPatterns::Hashed { .. } => "[hashed name]".to_owned(),
                },
            })
            .collect()
    }
}

/// Why a line yields no entry.
enum Skip {
    /// Not about Ed25519 keys; not worth the user's attention.
    Ignored(String),
    /// Malformed or unsupported: the user should know.
    Warning(String),
}

/// The line with its bad bytes replaced by U+FFFD, if they are all in the comment:
/// the line cut before the first of them must already say the same thing.
fn text_if_only_the_comment_is_not_utf8(line: &[u8]) -> Option<String> {
    let blank = |c: char| matches!(c, ' ' | '\t' | '\r');
    let valid = std::str::from_utf8(line).err()?.valid_up_to();
    let before = std::str::from_utf8(&line[..valid])
        .ok()?
        .trim_matches(blank);
    let lossy = String::from_utf8_lossy(line).trim_matches(blank).to_owned();
    let (whole, cut) = (parse_line(&lossy, 0).ok()?, parse_line(before, 0).ok()?);
    let same = match (whole, cut) {
        (Line::Host(whole), Line::Host(cut)) => {
            whole.key == cut.key && whole.hosts == cut.hosts && whole.revoked == cut.revoked
        }
        (Line::Authority(whole), Line::Authority(cut)) => {
            whole.key == cut.key && whole.hosts == cut.hosts
        }
        _ => false,
    };
    same.then_some(lossy)
}

/// A usable known_hosts line.
enum Line {
    /// A host key, maybe `@revoked`.
    Host(KnownHost),
    /// A `@cert-authority` line.
    Authority(HostCertAuthority),
}

fn parse_line(text: &str, line: usize) -> Result<Line, Skip> {
    let malformed = |reason: String| Skip::Warning(format!("malformed line skipped: {reason}"));
    let (mut field, mut rest) = split_field(text);
    let mut revoked = false;
    let mut authority = false;
    if field.starts_with('@') {
        match field {
            "@revoked" => revoked = true,
            "@cert-authority" => authority = true,
            other => return Err(malformed(format!("unknown marker \"{other}\""))),
        }
        (field, rest) = split_field(rest);
    }
    if field.is_empty() {
        return Err(malformed("the host patterns are missing".to_owned()));
    }
    let (key_type, rest) = split_field(rest);
    if key_type.is_empty() {
        return Err(malformed("the key type is missing".to_owned()));
    }
    if key_type != SSH_ED25519 {
        if authority && is_known_key_type(key_type) {
            return Err(Skip::Warning(format!(
                "@cert-authority line with a {key_type} CA key skipped: noise-echo trusts \
                 ssh-ed25519 CAs only"
            )));
        }
        if is_known_key_type(key_type) {
            return Err(Skip::Ignored(format!(
                "{key_type} key ignored: noise-echo only uses ssh-ed25519 keys"
            )));
        }
        return Err(malformed(format!("unknown key type \"{key_type}\"")));
    }
    let (blob, comment) = split_field(rest);
    if blob.is_empty() {
        return Err(malformed("the key data is missing".to_owned()));
    }
    let key = PublicKey::from_openssh_fields(key_type, blob)
        .map_err(|error| malformed(error.to_string()))?;
    let hosts = HostPatterns::parse(field).map_err(malformed)?;
    let comment = comment.trim_end().to_owned();
    Ok(if authority {
        Line::Authority(HostCertAuthority {
            line,
            hosts,
            key,
            comment,
        })
    } else {
        Line::Host(KnownHost {
            line,
            revoked,
            hosts,
            key,
            comment,
        })
    })
}

/// The host field OpenSSH writes and looks up for `host` on `port`: the host name for
/// port 22, `[host]:port` otherwise (IPv6 literals too: `[::1]:1234`).
///
/// The name is lowercased (ASCII), as ssh does before writing or looking up, so that
/// hashed entries match however the user typed the name.
pub fn host_field(host: &str, port: u16) -> String {
    let host = host.to_ascii_lowercase();
    if port == 22 {
        host
    } else {
        format!("[{host}]:{port}")
    }
}

fn host_hmac(field: &str, salt: &[u8; HASH_LEN]) -> [u8; HASH_LEN] {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(salt).expect("HMAC takes any key length");
    mac.update(field.as_bytes());
    mac.finalize().into_bytes().into()
}

/// Hashes a host field (the output of [`host_field`]) as OpenSSH's `HashKnownHosts`
/// does: `|1|` base64(salt) `|` base64(HMAC-SHA1(key = salt, message = field)).
/// The salt should be fresh random bytes for each line.
pub fn hash_host_field(field: &str, salt: &[u8; HASH_LEN]) -> String {
    format!(
        "{HASH_MAGIC}{}|{}",
        STANDARD.encode(salt),
        STANDARD.encode(host_hmac(field, salt))
    )
}

/// Returns `original` with the line `host_field ssh-ed25519 BASE64` appended, after
/// adding a final newline to `original` if it lacks one. `host_field` is the output
/// of [`host_field`] or [`hash_host_field`].
pub fn append_entry(original: &[u8], host_field: &str, key: &PublicKey) -> Vec<u8> {
    append_line(
        original,
        &format!("{host_field} {}", key.to_openssh_line("")),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Identity;
    use proptest::prelude::*;

    /// Made with `ssh-keygen -H -f known_hosts` (OpenSSH) from the lines
    /// `example.com KEY` and `[example.com]:2222 KEY`.
    const SSH_KEYGEN_HASHED: &str = "\
|1|r89AJQGky7SdJ41dDYxHXrnnwes=|A8cgmXKap9DDApwbgxv6QSxSd0g= ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE7+/RD7emPsQtVteJIEtL5HVfNDYJwexH8enuFSlIih
|1|FyvMMe4yDcH6/hKUs4pucpgV5Vk=|qEoHvC47pDgBkStZeht3phKnp3k= ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE7+/RD7emPsQtVteJIEtL5HVfNDYJwexH8enuFSlIih
";
    const SSH_KEYGEN_KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE7+/RD7emPsQtVteJIEtL5HVfNDYJwexH8enuFSlIih";
    /// `ssh-keygen -lf` of SSH_KEYGEN_KEY.
    const SSH_KEYGEN_FINGERPRINT: &str = "SHA256:xJcjXmE+OEQNvS/wxxfnHzFFUuraUiYap+hy7+/WQjA";

    fn key(seed: u8) -> PublicKey {
        Identity::from_seed(&[seed; 32], "").public_key()
    }

    fn key_text(seed: u8) -> String {
        key(seed).to_openssh_line("")
    }

    fn parse(text: &str) -> KnownHosts {
        KnownHosts::parse(text.as_bytes(), Path::new("/home/u/kh"))
    }

    #[test]
    fn host_field_brackets_non_default_ports() {
        assert_eq!(host_field("example.com", 22), "example.com");
        assert_eq!(host_field("Example.COM", 2222), "[example.com]:2222");
        assert_eq!(host_field("::1", 1234), "[::1]:1234");
        assert_eq!(host_field("::1", 22), "::1");
        assert_eq!(host_field("10.0.0.1", 1234), "[10.0.0.1]:1234");
    }

    #[test]
    fn plain_entries_trust_the_listed_key_for_the_listed_hosts_and_ports() {
        let kh = parse(&format!(
            "# servers\nalpha,beta.example.com {} alpha key\n[gamma]:2222,[10.0.0.5]:1234 {}\n",
            key_text(1),
            key_text(2)
        ));
        assert!(kh.warnings.is_empty(), "{:?}", kh.warnings);
        assert_eq!(kh.entries[0].comment, "alpha key");
        assert_eq!(
            kh.check("alpha", 22, &key(1)),
            HostVerdict::Trusted(HostTrustedBy::Key { line: 2 })
        );
        assert_eq!(
            kh.check("beta.example.com", 22, &key(1)),
            HostVerdict::Trusted(HostTrustedBy::Key { line: 2 })
        );
        assert_eq!(
            kh.check("gamma", 2222, &key(2)),
            HostVerdict::Trusted(HostTrustedBy::Key { line: 3 })
        );
        assert_eq!(
            kh.check("10.0.0.5", 1234, &key(2)),
            HostVerdict::Trusted(HostTrustedBy::Key { line: 3 })
        );
        // The port is part of the name.
        assert_eq!(
            kh.check("alpha", 2222, &key(1)),
            HostVerdict::Unknown {
                ignored_certificate_ca: None
            }
        );
        assert_eq!(
            kh.check("gamma", 22, &key(2)),
            HostVerdict::Unknown {
                ignored_certificate_ca: None
            }
        );
        assert_eq!(
            kh.check("delta", 22, &key(1)),
            HostVerdict::Unknown {
                ignored_certificate_ca: None
            }
        );
    }

    /// sshd's hostfile.c ends the marker and host fields at the first blank and
    /// gives double quotes no meaning there (only authorized_keys options are
    /// quoted), so a quoted host field with a space is two fields, not one.
    #[test]
    fn quotes_do_not_group_host_fields_and_crlf_lines_keep_their_comment() {
        let kh = parse(&format!(
            "\"alpha beta\" {}\r\nalpha {} note here\r\n",
            key_text(1),
            key_text(2)
        ));
        assert_eq!(kh.entries.len(), 1, "{:?}", kh.entries);
        assert_eq!(kh.warnings.len(), 1, "{:?}", kh.warnings);
        assert_eq!(kh.warnings[0].line, 1);
        assert_eq!(kh.entries[0].comment, "note here");
        assert_eq!(
            kh.check("alpha", 22, &key(2)),
            HostVerdict::Trusted(HostTrustedBy::Key { line: 2 })
        );
    }

    #[test]
    fn host_names_are_case_insensitive() {
        let kh = parse(&format!("Alpha.Example.COM,[BETA]:2222 {}\n", key_text(1)));
        assert_eq!(
            kh.check("alpha.example.com", 22, &key(1)),
            HostVerdict::Trusted(HostTrustedBy::Key { line: 1 })
        );
        assert_eq!(
            kh.check("ALPHA.example.com", 22, &key(1)),
            HostVerdict::Trusted(HostTrustedBy::Key { line: 1 })
        );
        assert_eq!(
            kh.check("Beta", 2222, &key(1)),
            HostVerdict::Trusted(HostTrustedBy::Key { line: 1 })
        );
    }

    #[test]
    fn wildcards_and_negation_select_hosts() {
        let kh = parse(&format!(
            "*.example.com,!bad.example.com,h?st {}\n",
            key_text(1)
        ));
        assert_eq!(
            kh.check("a.example.com", 22, &key(1)),
            HostVerdict::Trusted(HostTrustedBy::Key { line: 1 })
        );
        assert_eq!(
            kh.check("host", 22, &key(1)),
            HostVerdict::Trusted(HostTrustedBy::Key { line: 1 })
        );
        assert_eq!(
            kh.check("bad.example.com", 22, &key(1)),
            HostVerdict::Unknown {
                ignored_certificate_ca: None
            }
        );
        assert_eq!(
            kh.check("bad.example.com", 22, &key(2)),
            HostVerdict::Unknown {
                ignored_certificate_ca: None
            }
        );
    }

    #[test]
    fn a_different_key_is_changed_with_the_first_offending_line() {
        let kh = parse(&format!(
            "alpha {}\nalpha {}\nalpha {}\n",
            key_text(1),
            key_text(2),
            key_text(3)
        ));
        assert_eq!(
            kh.check("alpha", 22, &key(9)),
            HostVerdict::Changed {
                path: PathBuf::from("/home/u/kh"),
                line: 1,
                known_fingerprint: key(1).fingerprint(),
            }
        );
        // Any line holding the key trusts it, even after lines holding others.
        assert_eq!(
            kh.check("alpha", 22, &key(3)),
            HostVerdict::Trusted(HostTrustedBy::Key { line: 3 })
        );
    }

    #[test]
    fn other_key_types_never_make_a_key_changed() {
        let kh = parse(&format!(
            "alpha ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQC7\n\
             alpha ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTY=\n\
             beta {}\n",
            key_text(1)
        ));
        assert!(kh.warnings.is_empty(), "{:?}", kh.warnings);
        assert_eq!(kh.ignored.len(), 2);
        assert_eq!(kh.ignored[0].line, 1);
        assert_eq!(
            kh.check("alpha", 22, &key(1)),
            HostVerdict::Unknown {
                ignored_certificate_ca: None
            }
        );
    }

    #[test]
    fn revoked_keys_are_never_trusted() {
        let kh = parse(&format!(
            "@revoked * {}\nalpha {}\n@revoked beta {}\nbeta {}\n",
            key_text(1),
            key_text(1),
            key_text(2),
            key_text(3)
        ));
        let revoked_at = |line, revoked: usize| HostVerdict::Revoked {
            path: PathBuf::from("/home/u/kh"),
            line,
            revoked_key: key(revoked as u8).fingerprint(),
        };
        assert_eq!(kh.check("alpha", 22, &key(1)), revoked_at(1, 1));
        assert_eq!(kh.check("anything", 4444, &key(1)), revoked_at(1, 1));
        assert_eq!(kh.check("beta", 22, &key(2)), revoked_at(3, 2));
        // Revocation is for the hosts the line matches, as in OpenSSH.
        assert_eq!(
            kh.check("gamma", 22, &key(2)),
            HostVerdict::Unknown {
                ignored_certificate_ca: None
            }
        );
        // A revoked line is not a known key: it neither trusts nor makes "changed".
        assert_eq!(
            kh.check("beta", 22, &key(3)),
            HostVerdict::Trusted(HostTrustedBy::Key { line: 4 })
        );
        let only_revoked = parse(&format!("@revoked delta {}\n", key_text(2)));
        assert_eq!(
            only_revoked.check("delta", 22, &key(5)),
            HostVerdict::Unknown {
                ignored_certificate_ca: None
            }
        );
    }

    #[test]
    fn unknown_markers_are_skipped_and_cert_authority_lines_are_cas_not_keys() {
        let kh = parse(&format!(
            "@cert-authority *.example.com {} fleet ca\n@bogus alpha {}\n{}\n\
             @cert-authority * ssh-rsa AAAAB3NzaC1yc2E=\n",
            key_text(1),
            key_text(1),
            format_args!("alpha {}", key_text(2))
        ));
        assert_eq!(kh.entries.len(), 1);
        assert_eq!(kh.cert_authorities.len(), 1);
        let authority = &kh.cert_authorities[0];
        assert_eq!(
            (authority.line, authority.key, authority.comment.as_str()),
            (1, key(1), "fleet ca")
        );
        assert_eq!(kh.warnings.len(), 2);
        assert!(kh.warnings[0]
            .to_string()
            .starts_with("/home/u/kh:2: malformed"));
        assert!(kh.warnings[1]
            .to_string()
            .starts_with("/home/u/kh:4: @cert-authority line with a ssh-rsa CA key skipped"));
        // A CA key is not a host key.
        assert_eq!(
            kh.check("x.example.com", 22, &key(1)),
            HostVerdict::Unknown {
                ignored_certificate_ca: None
            }
        );
    }

    #[test]
    fn ssh_keygen_hashed_lines_match_their_hosts() {
        let kh = parse(SSH_KEYGEN_HASHED);
        assert!(kh.warnings.is_empty(), "{:?}", kh.warnings);
        let (key, _) = PublicKey::parse_openssh_line(SSH_KEYGEN_KEY).unwrap();
        assert_eq!(key.fingerprint().to_string(), SSH_KEYGEN_FINGERPRINT);
        assert_eq!(
            kh.check("example.com", 22, &key),
            HostVerdict::Trusted(HostTrustedBy::Key { line: 1 })
        );
        assert_eq!(
            kh.check("EXAMPLE.com", 22, &key),
            HostVerdict::Trusted(HostTrustedBy::Key { line: 1 })
        );
        assert_eq!(
            kh.check("example.com", 2222, &key),
            HostVerdict::Trusted(HostTrustedBy::Key { line: 2 })
        );
        assert_eq!(
            kh.check("example.org", 22, &key),
            HostVerdict::Unknown {
                ignored_certificate_ca: None
            }
        );
        assert!(matches!(
            kh.check("example.com", 2222, &self::key(1)),
            HostVerdict::Changed { line: 2, .. }
        ));
        // Re-hashing with ssh-keygen's salt reproduces its field exactly.
        let first_field = SSH_KEYGEN_HASHED.split(' ').next().unwrap();
        let HostPatterns::Hashed { salt, .. } = &kh.entries[0].hosts else {
            panic!("not hashed")
        };
        assert_eq!(hash_host_field("example.com", salt), first_field);
    }

    #[test]
    fn our_hashed_entries_match_only_their_host_and_port() {
        let salt = [7u8; HASH_LEN];
        let field = hash_host_field(&host_field("Server.Example", 2222), &salt);
        assert!(field.starts_with("|1|BwcHBwcHBwcHBwcHBwcHBwcHBwc=|"));
        let kh = KnownHosts::parse(&append_entry(b"", &field, &key(1)), Path::new("kh"));
        assert_eq!(
            kh.check("server.example", 2222, &key(1)),
            HostVerdict::Trusted(HostTrustedBy::Key { line: 1 })
        );
        assert_eq!(
            kh.check("server.example", 22, &key(1)),
            HostVerdict::Unknown {
                ignored_certificate_ca: None
            }
        );
    }

    #[test]
    fn malformed_lines_are_reported_and_neighbours_still_count() {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(format!("alpha {}\n", key_text(1)).as_bytes());
        for bad in [
            "lonely-host".to_owned(),
            "beta ssh-ed25519".to_owned(),
            "beta ssh-ed25519 !!!".to_owned(),
            format!("beta {}", &key_text(2)[..50]),
            "beta ssh-foo AAAA".to_owned(),
            format!("|1|abc|def {}", key_text(2)),
            format!(
                "|2|{}|{} {}",
                STANDARD.encode([0; 20]),
                STANDARD.encode([0; 20]),
                key_text(2)
            ),
            format!(
                "|1|{}|{} {}",
                STANDARD.encode([0; 16]),
                STANDARD.encode([0; 20]),
                key_text(2)
            ),
            "@revoked".to_owned(),
        ] {
            bytes.extend_from_slice(bad.as_bytes());
            bytes.push(b'\n');
        }
        bytes.extend_from_slice(b"gamma \xff\xfe ssh-ed25519 x\n#\xff comment\n");
        bytes.extend_from_slice(format!("beta {}", key_text(2)).as_bytes());
        let kh = KnownHosts::parse(&bytes, Path::new("kh"));
        assert_eq!(
            kh.entries.iter().map(|e| e.line).collect::<Vec<_>>(),
            [1, 13]
        );
        assert_eq!(
            kh.warnings.iter().map(|w| w.line).collect::<Vec<_>>(),
            (2..=11).collect::<Vec<_>>()
        );
        assert!(kh
            .warnings
            .iter()
            .all(|w| w.message.starts_with("malformed")));
        assert_eq!(
            kh.warnings[9].to_string(),
            "kh:11: malformed line skipped: not valid UTF-8"
        );
        assert_eq!(
            kh.check("beta", 22, &key(2)),
            HostVerdict::Trusted(HostTrustedBy::Key { line: 13 })
        );
    }

    #[test]
    fn a_comment_that_is_not_utf8_keeps_its_line_even_revoked() {
        let mut bytes = format!("@revoked * {} caf", key_text(1)).into_bytes();
        bytes.extend_from_slice(b"\xe9\nbeta ");
        bytes.extend_from_slice(format!("{} x", key_text(2)).as_bytes());
        bytes.extend_from_slice(b"\xff\n");
        let kh = KnownHosts::parse(&bytes, Path::new("kh"));
        assert!(kh.warnings.is_empty(), "{:?}", kh.warnings);
        assert_eq!(kh.entries[0].comment, "caf\u{fffd}");
        assert!(matches!(
            kh.check("beta", 22, &key(1)),
            HostVerdict::Revoked { line: 1, .. }
        ));
        assert_eq!(
            kh.check("beta", 22, &key(2)),
            HostVerdict::Trusted(HostTrustedBy::Key { line: 2 })
        );
        // Bad bytes in the host patterns still make the line malformed.
        let mut bytes = b"be\xfft".to_vec();
        bytes.extend_from_slice(format!("a {}\n", key_text(2)).as_bytes());
        let kh = KnownHosts::parse(&bytes, Path::new("kh"));
        assert_eq!(kh.entries.len(), 0);
        assert_eq!(kh.warnings.len(), 1);
    }

    #[test]
    fn load_treats_a_missing_file_as_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("known_hosts");
        let kh = KnownHosts::load(&path).unwrap();
        assert!(kh.entries.is_empty() && kh.warnings.is_empty());
        assert_eq!(
            kh.check("alpha", 22, &key(1)),
            HostVerdict::Unknown {
                ignored_certificate_ca: None
            }
        );
        std::fs::write(&path, append_entry(b"", &host_field("alpha", 22), &key(1))).unwrap();
        let kh = KnownHosts::load(&path).unwrap();
        assert_eq!(
            kh.check("alpha", 22, &key(1)),
            HostVerdict::Trusted(HostTrustedBy::Key { line: 1 })
        );
        assert!(
            KnownHosts::load(dir.path()).is_err(),
            "a directory is not a file"
        );
    }

    #[test]
    fn append_entry_keeps_old_bytes_and_adds_a_missing_newline() {
        let old = b"# mine\nalpha ssh-rsa AAAA\n\xff odd";
        let new = append_entry(old, &host_field("::1", 1234), &key(1));
        let expected_tail = format!("\n[::1]:1234 {}\n", key_text(1));
        assert_eq!(&new[..old.len()], old);
        assert_eq!(&new[old.len()..], expected_tail.as_bytes());
        let kh = KnownHosts::parse(&new, Path::new("kh"));
        assert_eq!(
            kh.check("::1", 1234, &key(1)),
            HostVerdict::Trusted(HostTrustedBy::Key { line: 4 })
        );
    }

    proptest! {
        #[test]
        fn parser_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let kh = KnownHosts::parse(&bytes, Path::new("f"));
            let _ = kh.check("alpha", 22, &key(1));
        }

        #[test]
        fn parser_never_panics_on_host_like_lines(
            parts in proptest::collection::vec(prop_oneof![
                Just("@revoked ".to_owned()),
                Just("@cert-authority ".to_owned()),
                Just("|1|".to_owned()),
                Just("|".to_owned()),
                Just(STANDARD.encode([1u8; 20])),
                Just(" ssh-ed25519 ".to_owned()),
                Just(" ssh-rsa ".to_owned()),
                Just("AAAAC3NzaC1lZDI1NTE5AAAAIE7+/RD7emPsQtVteJIEtL5HVfNDYJwexH8enuFSlIih".to_owned()),
                Just("[".to_owned()),
                Just("]:".to_owned()),
                Just(",!*?".to_owned()),
                "\\PC{0,6}",
            ], 0..12),
            host in "[a-z.:*]{0,10}",
            port in any::<u16>(),
        ) {
            let kh = KnownHosts::parse(parts.concat().as_bytes(), Path::new("f"));
            prop_assert!(kh.entries.len() + kh.warnings.len() + kh.ignored.len() <= 1);
            let _ = kh.check(&host, port, &key(1));
        }

        #[test]
        fn appended_entries_parse_back_and_are_trusted(
            specs in proptest::collection::vec(
                ("[a-z][a-z0-9.-]{0,15}|[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}|::[0-9a-f]{1,4}",
                 any::<u16>(), any::<[u8; 32]>(), proptest::option::of(any::<[u8; HASH_LEN]>())),
                0..8,
            ),
        ) {
            let mut file = Vec::new();
            for (host, port, seed, salt) in &specs {
                let plain = host_field(host, *port);
                let field = salt.map_or(plain.clone(), |salt| hash_host_field(&plain, &salt));
                file = append_entry(&file, &field, &Identity::from_seed(seed, "").public_key());
            }
            let kh = KnownHosts::parse(&file, Path::new("f"));
            prop_assert!(kh.warnings.is_empty(), "{:?}", kh.warnings);
            prop_assert_eq!(kh.entries.len(), specs.len());
            for (entry, (host, port, seed, _)) in kh.entries.iter().zip(&specs) {
                let key = Identity::from_seed(seed, "").public_key();
                prop_assert_eq!(entry.key, key);
                prop_assert_eq!(&entry.comment, "");
                let trusted = matches!(kh.check(host, *port, &key), HostVerdict::Trusted { .. });
                prop_assert!(trusted, "{} {} not trusted", host, port);
            }
        }
    }

    #[test]
    fn other_names_list_the_lines_holding_the_key_for_other_hosts_as_ssh_shows_them() {
        let salt = [7u8; HASH_LEN];
        let kh = parse(&format!(
            "alpha,beta {k1}\n[gamma]:2222 {k2}\n{hashed} {k1}\n@revoked delta {k1}\n[new]:1234 {k2}\n",
            k1 = key_text(1),
            k2 = key_text(2),
            hashed = hash_host_field("[epsilon]:1234", &salt),
        ));
        let names = kh.other_names("new", 1234, &key(1));
        assert_eq!(
            names,
            vec![
                OtherName {
                    line: 1,
                    name: "alpha,beta".to_owned()
                },
                OtherName {
                    line: 3,
                    name: "[hashed name]".to_owned()
                },
            ],
            "revoked lines and other keys are not listed"
        );
        // The host's own line is not an "other" name.
        assert_eq!(
            kh.other_names("gamma", 2222, &key(2)),
            vec![OtherName {
                line: 5,
                name: "[new]:1234".to_owned()
            }]
        );
        assert!(kh.other_names("new", 1234, &key(3)).is_empty());
    }
}
