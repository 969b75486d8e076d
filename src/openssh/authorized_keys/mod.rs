//! The server's allow-list: which client keys may connect, read from a file in
//! OpenSSH's authorized_keys syntax (wire-v1 section 8).
//!
//! People keep one file for both sshd and noise-echo, so the parser takes every line
//! sshd takes and decides what noise-echo can honour:
//! - `ssh-ed25519` lines are trusted, with the options `from="pattern-list"` and
//!   `expiry-time="timespec"`. `expiry-time` is always read as UTC (OpenSSH uses the
//!   server's local time zone unless the value ends in `Z`; see [`Expiry`]).
//! - Options that only take away sshd features noise-echo does not offer
//!   (`restrict`, `no-pty`, `no-port-forwarding`...) are accepted and change nothing.
//! - Lines of other key types (RSA, ECDSA, security keys, certificates...) are
//!   skipped with a warning.
//! - `cert-authority principals="name,..."` lines trust the user certificates their
//!   key signs for those principals ([`CertAuthority`], [`AuthorizedKeys::cert_authorities`]),
//!   not the key itself. `cert-authority` without `principals=` is not trusted: sshd
//!   would match the login user, which noise-echo does not have.
//! - A line with an option that grants or changes something (`command=`,
//!   `permitopen=`, `pty`...) is not trusted, with a warning, and
//!   kept in [`AuthorizedKeys::untrusted`] so that a refusal can name its line:
//!   noise-echo cannot enforce the option, and trusting the key without it would
//!   grant more than the file's author meant (fail closed). The full list of options
//!   and what happens to each is in the `options` module's documentation.
//! - A malformed line is skipped with a warning naming `path:line`; the rest of the
//!   file still loads.
//! - The comment is free text: bytes that are not UTF-8 are shown as U+FFFD, as sshd
//!   ignores the comment. Elsewhere in the line they make it malformed.
//!
//! Parsing never logs: problems come back as [`Diagnostic`]s for the caller to report.
//! The editing helpers ([`remove_key`], [`append_line`]) are pure, so that locking and
//! atomic replacement can live with the caller.

use std::borrow::Cow;
use std::fmt;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::identity::{Fingerprint, PublicKey, SSH_ED25519};
use crate::openssh::lexer::{
    is_known_key_type, line_text, numbered_lines, read_ssh_string, split_field, split_quoted_field,
    LineText,
};
use crate::openssh::pattern::AddressPatterns;

mod cert_authority;
mod edit;
mod expiry;
mod options;

pub use edit::{append_key, append_line, remove_key, remove_keys, RemovedLine};

pub use cert_authority::{
    CertAuthority, CertificateAdmission, CertificateDenial, ClientAdmission, ClientDenial,
};
pub(crate) use expiry::civil_from_days;
pub use expiry::Expiry;
pub use options::UnsupportedOption;
use options::{parse_options, OptionsError};

/// A problem with one line of a trust file, which was skipped because of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file the line came from.
    pub path: PathBuf,
    /// The 1-based line number.
    pub line: usize,
    /// What is wrong, and what happened to the line.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.path.display(), self.line, self.message)
    }
}

/// One trusted line of an authorized_keys file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizedKey {
    /// The client key this line admits.
    pub key: PublicKey,
    /// The text after the key, often `user@host`; empty when absent.
    pub comment: String,
    /// The `from="..."` restriction: only client addresses it admits may use the key.
    pub from: Option<AddressPatterns>,
    /// The `expiry-time="..."` restriction (the earliest, if several are given).
    pub expiry: Option<Expiry>,
    /// The 1-based line number in the file.
    pub line: usize,
    /// The options field as written, empty when the line has none.
    pub options: String,
}

/// An ssh-ed25519 line that is not trusted because of its options: kept so that a
/// refused client can be told apart from an unknown one in the server's log, and so
/// that `authorize --list` can show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UntrustedKey {
    /// The client key the line names.
    pub key: PublicKey,
    /// The text after the key; empty when absent.
    pub comment: String,
    /// The 1-based line number in the file.
    pub line: usize,
    /// The options field as written.
    pub options: String,
    /// What is wrong with the options.
    pub reason: UntrustedReason,
}

/// Why the options of an ssh-ed25519 line make it untrusted.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum UntrustedReason {
    /// Options noise-echo will not honour, in the order written.
    Unsupported(Vec<UnsupportedOption>),
    /// The options field cannot be parsed (a typo, an option sshd does not know, a bad
    /// `from=` pattern...): sshd refuses such a line too.
    Malformed(String),
}

impl fmt::Display for UntrustedReason {
    /// `the option command= (forces a command), pty (gives back ...)`, or `malformed
    /// options: ...`, for warnings and the server's log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unsupported(options) => {
                let described: Vec<String> = options
                    .iter()
                    .map(|option| format!("{option} ({})", option.why))
                    .collect();
                write!(f, "the option {}", described.join(", "))
            }
            Self::Malformed(reason) => write!(f, "malformed options: {reason}"),
        }
    }
}

impl AuthorizedKey {
    /// The line as it would be written to an authorized_keys file (no newline):
    /// options, key and comment.
    pub fn to_line(&self) -> String {
        let key_line = self.key.to_openssh_line(&self.comment);
        if self.options.is_empty() {
            key_line
        } else {
            format!("{} {key_line}", self.options)
        }
    }

    /// Whether this line's options admit a connection from `addr` at `now`.
    ///
    /// # Errors
    /// The [`Denial`] explaining which option refuses it. Expiry is checked first,
    /// as sshd does.
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

/// The `expiry-time=` then `from=` checks of one line for `key`, shared by key lines
/// and `cert-authority` lines. Expiry first, as sshd does.
fn check_restrictions(
    key: &PublicKey,
    from: Option<&AddressPatterns>,
    expiry: Option<Expiry>,
    line: usize,
    addr: IpAddr,
    now: SystemTime,
) -> Result<(), Denial> {
    let fingerprint = key.fingerprint();
    if let Some(expiry) = expiry.filter(|expiry| expiry.has_passed(now)) {
        return Err(Denial::Expired {
            fingerprint,
            expiry,
            line,
        });
    }
    if let Some(from) = from.filter(|from| !from.matches(addr)) {
        return Err(Denial::NotFromHere {
            fingerprint,
            addr: addr.to_canonical(),
            line,
            patterns: from.as_str().to_owned(),
        });
    }
    Ok(())
}

/// Why a client key is refused.
///
/// The `Display` text is meant for the client, after `permission denied: `: it never
/// names the file, a line or an option. [`Denial::log_text`] is the server's side,
/// which does.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Denial {
    /// No line of the file names the key.
    #[error("key {0} is not in authorized_keys")]
    NotListed(Fingerprint),
    /// The key's `from=` list does not admit the client's address.
    #[error("key {fingerprint} is not allowed from {addr}")]
    NotFromHere {
        /// The client key.
        fingerprint: Fingerprint,
        /// The client address, IPv4-mapped IPv6 shown as IPv4.
        addr: IpAddr,
        /// The 1-based number of the line that refused it, for the log.
        line: usize,
        /// That line's `from=` list, for the log.
        patterns: String,
    },
    /// The key's `expiry-time` has passed.
    #[error("key {fingerprint} expired on {expiry}")]
    Expired {
        /// The client key.
        fingerprint: Fingerprint,
        /// When it expired.
        expiry: Expiry,
        /// The 1-based number of the line that refused it, for the log.
        line: usize,
    },
    /// The only lines naming the key have options noise-echo will not honour. The
    /// client is not told which: that is the file's business.
    #[error("key {fingerprint} is not authorized on this server")]
    Untrusted {
        /// The client key.
        fingerprint: Fingerprint,
        /// The 1-based number of the first such line, for the log.
        line: usize,
        /// What is wrong with its options, for the log.
        reason: UntrustedReason,
    },
}

impl Denial {
    /// The 1-based line that refused the key; `None` when no line names it.
    pub fn line(&self) -> Option<usize> {
        match self {
            Self::NotListed(_) => None,
            Self::NotFromHere { line, .. }
            | Self::Expired { line, .. }
            | Self::Untrusted { line, .. } => Some(*line),
        }
    }

    /// The refusal as the server logs it: the file and line that decided, and the
    /// option or reason, so that the administrator knows what to change. Never sent
    /// to the client. `path` is the file the keys were read from.
    pub fn log_text(&self, path: &Path) -> String {
        let path = path.display();
        match self {
            Self::NotListed(fingerprint) => {
                format!("key {fingerprint} is not in {path}")
            }
            Self::NotFromHere {
                fingerprint,
                addr,
                line,
                patterns,
            } => format!(
                "{path}:{line}: key {fingerprint} is not allowed from {addr} \
                 (from=\"{patterns}\")"
            ),
            Self::Expired {
                fingerprint,
                expiry,
                line,
            } => format!("{path}:{line}: key {fingerprint} expired on {expiry} (expiry-time=)"),
            Self::Untrusted {
                fingerprint,
                line,
                reason: reason @ UntrustedReason::Unsupported(_),
            } => format!("{path}:{line}: key {fingerprint} is not trusted because of {reason}"),
            Self::Untrusted {
                fingerprint,
                line,
                reason,
            } => format!("{path}:{line}: key {fingerprint} is not trusted: {reason}"),
        }
    }
}

/// A parsed authorized_keys file: the trusted lines, and what was skipped and why.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AuthorizedKeys {
    /// The file the entries came from.
    pub path: PathBuf,
    /// Trusted lines, in file order.
    pub entries: Vec<AuthorizedKey>,
    /// One per skipped line, in file order, for the caller to log.
    pub warnings: Vec<Diagnostic>,
    /// The ssh-ed25519 lines skipped for their options (each also has a warning), in
    /// file order.
    pub untrusted: Vec<UntrustedKey>,
    /// The lines of other key types, skipped (each also has a warning), in file
    /// order: a forge's `USER.keys` or a file shared with sshd holds many.
    pub other_key_types: Vec<OtherKeyLine>,
    /// The trusted `cert-authority principals="..."` lines, in file order: their keys
    /// sign user certificates and are not in [`AuthorizedKeys::entries`]. A boxed
    /// slice (16 bytes, not a `Vec`'s 24): the server's reload cache holds this struct
    /// inline, and it is never added to after parsing.
    pub cert_authorities: Box<[CertAuthority]>,
}

/// A well-formed line holding a key of a type noise-echo does not use, described
/// as `ssh-keygen -lf` would show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtherKeyLine {
    /// The 1-based line number in the file.
    pub line: usize,
    /// The key type as written (`ssh-rsa`, `ecdsa-sha2-nistp256`...).
    pub key_type: String,
    /// The key size in bits, as ssh-keygen prints it; `None` when the blob does not
    /// say (a truncated or unusual blob).
    pub bits: Option<u32>,
    /// `SHA256:...` of the key blob; `None` when the base64 does not decode.
    pub fingerprint: Option<String>,
    /// ssh-keygen's name for the type: `RSA`, `ECDSA`, `ED25519-SK`, `RSA-CERT`...
    pub label: String,
    /// The text after the key; empty when absent.
    pub comment: String,
}

impl OtherKeyLine {
    /// Describes the key fields of a line of another key type.
    fn describe(line: usize, key_type: &str, blob: &str, comment: &str) -> Self {
        use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
        use base64::Engine as _;
        use sha2::Digest as _;
        let decoded = STANDARD.decode(blob).ok();
        let base = key_type
            .strip_suffix(crate::openssh::lexer::CERTIFICATE_SUFFIX)
            .unwrap_or(key_type);
        let (fixed_bits, name) = match base {
            "ssh-ed25519" => (Some(256), "ED25519"),
            "ssh-rsa" | "rsa-sha2-256" | "rsa-sha2-512" => (None, "RSA"),
            "ssh-dss" => (None, "DSA"),
            "ecdsa-sha2-nistp256" => (Some(256), "ECDSA"),
            "ecdsa-sha2-nistp384" => (Some(384), "ECDSA"),
            "ecdsa-sha2-nistp521" => (Some(521), "ECDSA"),
            "sk-ecdsa-sha2-nistp256@openssh.com" => (Some(256), "ECDSA-SK"),
            "sk-ssh-ed25519@openssh.com" => (Some(256), "ED25519-SK"),
            "ssh-xmss@openssh.com" => (None, "XMSS"),
            _ => (None, "UNKNOWN"),
        };
        let cert = if base.len() < key_type.len() {
            "-CERT"
        } else {
            ""
        };
        // RSA's size is its modulus, DSA's its p: the first big number after the
        // type for DSA, the second (after e) for RSA. Certificates add a nonce first.
        let measured = decoded.as_deref().and_then(|blob| {
            let (_, mut rest) = read_ssh_string(blob)?;
            if !cert.is_empty() {
                rest = read_ssh_string(rest)?.1;
            }
            let skip = usize::from(name == "RSA");
            for _ in 0..skip {
                rest = read_ssh_string(rest)?.1;
            }
            let (number, _) = read_ssh_string(rest)?;
            let number = &number[number.iter().position(|&b| b != 0)?..];
            let bits = u32::try_from(number.len()).ok()?.checked_mul(8)?;
            Some(bits - number[0].leading_zeros())
        });
        let bits = match name {
            "RSA" | "DSA" => measured,
            _ => fixed_bits,
        };
        Self {
            line,
            key_type: key_type.to_owned(),
            bits,
            fingerprint: decoded.map(|blob| {
                format!(
                    "SHA256:{}",
                    STANDARD_NO_PAD.encode(sha2::Sha256::digest(blob))
                )
            }),
            label: format!("{name}{cert}"),
            comment: comment.to_owned(),
        }
    }
}

impl AuthorizedKeys {
    /// Reads and parses the file at `path`.
    ///
    /// # Errors
    /// The error of reading the file. A missing file is an error of kind
    /// [`io::ErrorKind::NotFound`], so that the caller can tell it apart (and then
    /// deny everyone) from an empty file.
    pub fn load(path: &Path) -> io::Result<Self> {
        let bytes = std::fs::read(path)?;
        Ok(Self::parse(&bytes, path))
    }

    /// Parses the contents of an authorized_keys file; `path` names it in diagnostics.
    /// Never fails: each line that cannot be trusted becomes a warning.
    pub fn parse(bytes: &[u8], path: &Path) -> Self {
        let mut keys = Self {
            path: path.to_owned(),
            ..Self::default()
        };
        let mut cert_authorities = Vec::new();
        for (number, line) in numbered_lines(bytes) {
            let mut warn = |message: String| {
                keys.warnings.push(Diagnostic {
                    path: path.to_owned(),
                    line: number,
                    message,
                });
            };
            let text: Cow<'_, str> = match line_text(line) {
                LineText::Skip => continue,
                // sshd ignores the comment's bytes: decode lossily, and refuse the
                // line only if the damage is outside the comment (see below).
                LineText::NotUtf8 => Cow::Owned(
                    String::from_utf8_lossy(line)
                        .trim_matches(|c| matches!(c, ' ' | '\t' | '\r'))
                        .to_owned(),
                ),
                LineText::Text(text) => Cow::Borrowed(text),
            };
            let fields = match split_key_line(&text) {
                Ok(fields) => fields,
                Err(LineError::OtherKeyType {
                    key_type,
                    blob,
                    comment,
                }) => {
                    warn(format!(
                        "{key_type} key skipped: noise-echo only uses ssh-ed25519 keys"
                    ));
                    keys.other_key_types
                        .push(OtherKeyLine::describe(number, key_type, blob, comment));
                    continue;
                }
                Err(LineError::Malformed(reason)) => {
                    warn(format!("malformed line skipped: {reason}"));
                    continue;
                }
            };
            // A key type or base64 blob with bad bytes cannot have parsed, so only the
            // options can still hold a replacement character that was not in the file.
            let options = if matches!(text, Cow::Owned(_)) && fields.options.contains('\u{fffd}') {
                Err(OptionsError::Malformed("not valid UTF-8".to_owned()))
            } else {
                parse_options(fields.options)
            };
            let mut untrusted = |reason: UntrustedReason| {
                keys.untrusted.push(UntrustedKey {
                    key: fields.key,
                    comment: fields.comment.to_owned(),
                    line: number,
                    options: fields.options.to_owned(),
                    reason,
                });
            };
            match options {
                Ok(restrictions) if restrictions.principals.is_some() => {
                    cert_authorities.push(CertAuthority {
                        key: fields.key,
                        principals: restrictions.principals.unwrap_or_default(),
                        from: restrictions.from,
                        expiry: restrictions.expiry,
                        comment: fields.comment.to_owned(),
                        line: number,
                        options: fields.options.to_owned(),
                    });
                }
                Ok(restrictions) => keys.entries.push(AuthorizedKey {
                    key: fields.key,
                    comment: fields.comment.to_owned(),
                    from: restrictions.from,
                    expiry: restrictions.expiry,
                    line: number,
                    options: fields.options.to_owned(),
                }),
                Err(OptionsError::Malformed(reason)) => {
                    warn(format!("malformed options, line skipped: {reason}"));
                    untrusted(UntrustedReason::Malformed(reason));
                }
                Err(OptionsError::Unsupported(unsupported)) => {
                    let reason = UntrustedReason::Unsupported(unsupported);
                    warn(format!(
                        "key {} not trusted: noise-echo does not support {reason} \
                         and will not ignore what it cannot enforce (fail closed)",
                        fields.key.fingerprint(),
                    ));
                    untrusted(reason);
                }
            }
        }
        keys.cert_authorities = cert_authorities.into_boxed_slice();
        keys
    }

    /// The comment of the ssh-ed25519 line numbered `line` (trusted or not), so that a
    /// refusal can be logged with it.
    pub fn comment_at(&self, line: usize) -> Option<&str> {
        let trusted = self
            .entries
            .iter()
            .map(|entry| (entry.line, &entry.comment));
        let untrusted = self
            .untrusted
            .iter()
            .map(|entry| (entry.line, &entry.comment));
        trusted
            .chain(untrusted)
            .find(|(number, _)| *number == line)
            .map(|(_, comment)| comment.as_str())
    }

    /// Whether some trusted line holds `key`, whatever its options.
    pub fn contains(&self, key: &PublicKey) -> bool {
        self.entries.iter().any(|entry| entry.key == *key)
    }

    /// Decides whether `key` may connect from `client_addr` at `now`.
    ///
    /// As sshd does, the lines holding the key are tried in file order and the first
    /// whose options admit the connection wins: a line refused by its `from=` does not
    /// hide a later line for the same key that allows it.
    ///
    /// # Errors
    /// A [`Denial`]: [`Denial::NotListed`] when no line names the key, otherwise the
    /// refusal of the first line (in file order) that names it, trusted or not.
    pub fn authorize(
        &self,
        key: &PublicKey,
        client_addr: IpAddr,
        now: SystemTime,
    ) -> Result<&AuthorizedKey, Denial> {
        let mut first_refusal: Option<Denial> = None;
        for entry in self.entries.iter().filter(|entry| entry.key == *key) {
            match entry.permits(client_addr, now) {
                Ok(()) => return Ok(entry),
                Err(denial) => {
                    first_refusal.get_or_insert(denial);
                }
            }
        }
        let untrusted = self.untrusted.iter().find(|entry| entry.key == *key);
        if let Some(untrusted) = untrusted {
            let earlier = first_refusal
                .as_ref()
                .and_then(Denial::line)
                .is_some_and(|line| line < untrusted.line);
            if !earlier {
                first_refusal = Some(Denial::Untrusted {
                    fingerprint: key.fingerprint(),
                    line: untrusted.line,
                    reason: untrusted.reason.clone(),
                });
            }
        }
        Err(first_refusal.unwrap_or(Denial::NotListed(key.fingerprint())))
    }
}

/// Why a line yields no key.
enum LineError<'a> {
    /// A key of another algorithm, which noise-echo does not use.
    OtherKeyType {
        /// The type as written.
        key_type: &'a str,
        /// The base64 field (maybe empty).
        blob: &'a str,
        /// The rest of the line.
        comment: &'a str,
    },
    /// Not a key line.
    Malformed(String),
}

/// The fields of an ssh-ed25519 authorized_keys line.
struct KeyLine<'a> {
    options: &'a str,
    key: PublicKey,
    comment: &'a str,
}

/// Splits `[options] keytype base64 [comment]` as sshd does: if the first field is
/// not a key type, it is the options field, which ends at the first blank outside
/// double quotes.
fn split_key_line(text: &str) -> Result<KeyLine<'_>, LineError<'_>> {
    let (first, rest) = split_field(text);
    let (options, key_type, rest) = if is_known_key_type(first) {
        ("", first, rest)
    } else {
        let (options, rest) = split_quoted_field(text).map_err(LineError::Malformed)?;
        let (key_type, rest) = split_field(rest);
        if !is_known_key_type(key_type) {
            return Err(LineError::Malformed(
                "no known key type found (expected '[options] ssh-ed25519 BASE64 [comment]')"
                    .to_owned(),
            ));
        }
        (options, key_type, rest)
    };
    let (blob, comment) = split_field(rest);
    if key_type != SSH_ED25519 {
        return Err(LineError::OtherKeyType {
            key_type,
            blob,
            comment: comment.trim_end(),
        });
    }
    if blob.is_empty() {
        return Err(LineError::Malformed("the key data is missing".to_owned()));
    }
    let key = PublicKey::from_openssh_fields(key_type, blob)
        .map_err(|error| LineError::Malformed(error.to_string()))?;
    Ok(KeyLine {
        options,
        key,
        comment: comment.trim_end(),
    })
}

#[cfg(test)]
mod tests;
