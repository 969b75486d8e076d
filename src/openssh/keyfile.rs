//! Identity key files in OpenSSH's formats: the private key as an `openssh-key-v1` PEM
//! file (what `ssh-keygen -t ed25519` writes), unencrypted or protected by a passphrase
//! (bcrypt-pbkdf and aes256-ctr, as ssh-keygen writes them), and the public key as a
//! one-line `FILE.pub`.
//!
//! Reading refuses private keys that group or others can read, as OpenSSH does. The
//! passphrase of an encrypted key comes from a caller's function
//! ([`read_identity_with_passphrase`]): the library never touches a terminal. Writing
//! creates each file with its final mode in one step (0600 for the private key, 0644
//! for the public one), never follows a symlink, never overwrites unless asked to and
//! never creates directories (as ssh-keygen, which refuses a missing directory).

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use ssh_key::private::{Ed25519Keypair, Ed25519PrivateKey, KeypairData};
use ssh_key::public::Ed25519PublicKey;
use ssh_key::{Algorithm, LineEnding, PrivateKey};
use zeroize::Zeroizing;

use crate::fsutil;
use crate::identity::{Identity, PublicKey, PublicKeyError, SSH_ED25519};
use crate::openssh::lexer::{self, read_ssh_string};

/// Mode of a private key file: readable and writable by its owner only.
pub const PRIVATE_KEY_MODE: u32 = 0o600;
/// Mode of a public key file.
pub const PUBLIC_KEY_MODE: u32 = 0o644;

/// Private key files are a few hundred bytes; anything far larger is not one, and
/// reading it whole would only waste memory.
const MAX_KEY_FILE_LEN: u64 = 64 * 1024;

const OPENSSH_PEM_BEGIN: &str = "-----BEGIN OPENSSH PRIVATE KEY-----";

/// How many passphrases [`read_identity_with_passphrase`] tries before giving up, as
/// ssh's `NumberOfPasswordPrompts` (3).
pub const PASSPHRASE_ATTEMPTS: u32 = 3;

/// What a passphrase function is told when it is asked for the passphrase of a key.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct PassphraseRequest<'a> {
    /// The encrypted key file, for the prompt (`Enter passphrase for key 'FILE': `).
    pub path: &'a Path,
    /// 1 for the first question, up to [`PASSPHRASE_ATTEMPTS`]; more than 1 means the
    /// previous passphrase was wrong, so a prompt can say so.
    pub attempt: u32,
}

/// The answer of a passphrase function: `Ok(None)` when the user gave none (an empty
/// answer or end of input, where ssh stops asking), `Err(reason)` when there is no way
/// to ask (no terminal, a failing askpass program); the reason is shown to the user.
pub type PassphraseAnswer = Result<Option<Zeroizing<String>>, String>;

/// Why a key file could not be read or written. Every variant names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyFileError {
    /// The file could not be opened, read or written.
    // The cause is part of the message and deliberately not a `source()`, so that
    // printing the error chain (`{:#}`) does not say it twice.
    #[error("{}: {cause}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        cause: io::Error,
    },
    /// The private key file is readable by group or others.
    #[error(
        "{path}: permissions {mode:04o} are too open: a private key must be readable by its owner only \
         (fix: chmod 600 {path})",
        path = path.display()
    )]
    PermissionsTooOpen {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The private key is protected by a passphrase and this reader cannot ask for
    /// one ([`read_identity`]; [`read_identity_with_passphrase`] can).
    #[error(
        "{path}: the key is protected by a passphrase, and it is read here without one \
         (remove the passphrase with: ssh-keygen -p -N '' -f {path})",
        path = path.display()
    )]
    PassphraseProtected {
        /// The file.
        path: PathBuf,
    },
    /// Every passphrase given for an encrypted key was wrong.
    #[error(
        "{path}: incorrect passphrase ({attempts} tried); the key stays locked \
         (the passphrase is the one given to ssh-keygen -N or -p for this file)",
        path = path.display()
    )]
    WrongPassphrase {
        /// The file.
        path: PathBuf,
        /// How many passphrases were tried.
        attempts: u32,
    },
    /// The key is encrypted and no passphrase was given (an empty answer).
    #[error(
        "{path}: the key is protected by a passphrase and none was given",
        path = path.display()
    )]
    NoPassphraseGiven {
        /// The file.
        path: PathBuf,
    },
    /// The key is encrypted and the passphrase could not be asked for.
    #[error(
        "{path}: the key is protected by a passphrase, which cannot be asked for: {reason}",
        path = path.display()
    )]
    PassphraseUnavailable {
        /// The file.
        path: PathBuf,
        /// Why not, with the fix (from the passphrase function).
        reason: String,
    },
    /// The key is encrypted in a way this build cannot decrypt (a cipher or KDF
    /// other than OpenSSH's usual ones).
    #[error(
        "{path}: cannot decrypt the key ({cause}); re-encrypt it as ssh-keygen does by default: ssh-keygen -p -f {path}",
        path = path.display()
    )]
    UnsupportedEncryption {
        /// The file.
        path: PathBuf,
        /// What ssh-key said.
        cause: String,
    },
    /// The key is not an Ed25519 key.
    #[error(
        "{}: this is a {algorithm} key: only ssh-ed25519 keys are supported \
         (make one with: noise-echo keygen, or ssh-keygen -t ed25519)",
        path.display()
    )]
    UnsupportedAlgorithm {
        /// The file.
        path: PathBuf,
        /// The algorithm the file holds.
        algorithm: String,
    },
    /// The file is not an OpenSSH private key at all.
    #[error("{}: not an OpenSSH private key ({reason})", path.display())]
    NotAPrivateKey {
        /// The file.
        path: PathBuf,
        /// What was found instead.
        reason: String,
    },
    /// The public key stored in the file does not belong to its private key.
    #[error("{}: the public key stored in the file does not match its private key (the file is corrupt)", path.display())]
    CorruptKeyPair {
        /// The file.
        path: PathBuf,
    },
    /// A public key file does not hold a usable key line.
    #[error("{}: {cause}", path.display())]
    BadPublicKey {
        /// The file.
        path: PathBuf,
        /// Why the line was refused.
        cause: PublicKeyError,
    },
    /// keygen was asked to replace something that is not a file.
    #[error(
        "{}: not a regular file (a directory, device, FIFO or socket); refusing to replace it \
         with a key (choose another path)",
        path.display()
    )]
    NotARegularFile {
        /// The path.
        path: PathBuf,
    },
    /// keygen would overwrite a file.
    #[error("{}: already exists; refusing to overwrite it (use --force to replace it)", path.display())]
    AlreadyExists {
        /// The file.
        path: PathBuf,
    },
}

impl KeyFileError {
    fn io(path: &Path, cause: io::Error) -> Self {
        Self::Io {
            path: path.to_path_buf(),
            cause,
        }
    }
}

/// The public key file that goes with a private key file: `FILE.pub`.
pub fn public_key_path(private_key_path: &Path) -> PathBuf {
    let mut name = private_key_path.as_os_str().to_owned();
    name.push(".pub");
    PathBuf::from(name)
}

/// Reads an unencrypted OpenSSH ed25519 private key file.
///
/// # Errors
/// [`KeyFileError::PermissionsTooOpen`] if group or others may read it (checked on
/// the opened file, before reading a byte), [`KeyFileError::PassphraseProtected`],
/// [`KeyFileError::UnsupportedAlgorithm`] for rsa/ecdsa/... keys,
/// [`KeyFileError::NotAPrivateKey`] for anything else that is not a private key, and
/// [`KeyFileError::CorruptKeyPair`] when the stored public key does not match.
pub fn read_identity(path: &Path) -> Result<Identity, KeyFileError> {
    let text = read_private_key_text(path)?;
    parse_identity(&text, path)
}

/// Reads an OpenSSH ed25519 private key file, asking `passphrase` for the passphrase
/// if the key is encrypted (up to [`PASSPHRASE_ATTEMPTS`] times while the answers are
/// wrong). An unencrypted key never calls it. The passphrases and the decrypted key
/// bytes are zeroized once used.
///
/// # Errors
/// As [`read_identity`], except that an encrypted key is decrypted:
/// [`KeyFileError::WrongPassphrase`] when every answer was wrong,
/// [`KeyFileError::NoPassphraseGiven`] for an empty answer,
/// [`KeyFileError::PassphraseUnavailable`] when `passphrase` cannot ask, and
/// [`KeyFileError::UnsupportedEncryption`] for a cipher this build lacks.
pub fn read_identity_with_passphrase(
    path: &Path,
    passphrase: &mut dyn FnMut(PassphraseRequest<'_>) -> PassphraseAnswer,
) -> Result<Identity, KeyFileError> {
    let text = read_private_key_text(path)?;
    parse_identity_with_passphrase(&text, path, passphrase)
}

/// Opens a key file without blocking on a FIFO, refusing anything but a regular file.
fn open_key_file(path: &Path) -> Result<(File, std::fs::Metadata), KeyFileError> {
    fsutil::open_regular(path).map_err(|error| KeyFileError::io(path, error))
}

/// The text of a private key file, refused before reading a byte if group or others
/// may read it.
fn read_private_key_text(path: &Path) -> Result<Zeroizing<String>, KeyFileError> {
    let (file, metadata) = open_key_file(path)?;
    let mode = metadata.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(KeyFileError::PermissionsTooOpen {
            path: path.to_path_buf(),
            mode,
        });
    }
    let mut text = Zeroizing::new(String::new());
    file.take(MAX_KEY_FILE_LEN)
        .read_to_string(&mut text)
        .map_err(|error| match error.kind() {
            io::ErrorKind::InvalidData => KeyFileError::NotAPrivateKey {
                path: path.to_path_buf(),
                reason: "the file is not text".into(),
            },
            _ => KeyFileError::io(path, error),
        })?;
    Ok(text)
}

/// Parses the text of an OpenSSH private key file; `path` is only used in errors.
///
/// # Errors
/// As [`read_identity`], except the permission check.
pub fn parse_identity(text: &str, path: &Path) -> Result<Identity, KeyFileError> {
    let key = parse_ed25519_container(text, path)?;
    if key.is_encrypted() {
        return Err(KeyFileError::PassphraseProtected {
            path: path.to_path_buf(),
        });
    }
    identity_of(&key, path)
}

/// Parses the text of an OpenSSH private key file, decrypting it with the answers of
/// `passphrase` if it is encrypted; `path` is only used in errors and requests.
///
/// # Errors
/// As [`read_identity_with_passphrase`], except the permission check.
pub fn parse_identity_with_passphrase(
    text: &str,
    path: &Path,
    passphrase: &mut dyn FnMut(PassphraseRequest<'_>) -> PassphraseAnswer,
) -> Result<Identity, KeyFileError> {
    let key = parse_ed25519_container(text, path)?;
    if !key.is_encrypted() {
        return identity_of(&key, path);
    }
    for attempt in 1..=PASSPHRASE_ATTEMPTS {
        let answer = passphrase(PassphraseRequest { path, attempt }).map_err(|reason| {
            KeyFileError::PassphraseUnavailable {
                path: path.to_path_buf(),
                reason,
            }
        })?;
        let Some(answer) = answer.filter(|answer| !answer.is_empty()) else {
            return Err(KeyFileError::NoPassphraseGiven {
                path: path.to_path_buf(),
            });
        };
        match key.decrypt(answer.as_bytes()) {
            // The decrypted key zeroizes its private half when dropped.
            Ok(decrypted) => return identity_of(&decrypted, path),
            // A wrong passphrase decrypts to garbage whose check integers differ.
            Err(ssh_key::Error::Crypto) => continue,
            // The decrypted private half belongs to another public key.
            Err(ssh_key::Error::PublicKey) => {
                return Err(KeyFileError::CorruptKeyPair {
                    path: path.to_path_buf(),
                })
            }
            Err(error) => {
                return Err(KeyFileError::UnsupportedEncryption {
                    path: path.to_path_buf(),
                    cause: error.to_string(),
                })
            }
        }
    }
    Err(KeyFileError::WrongPassphrase {
        path: path.to_path_buf(),
        attempts: PASSPHRASE_ATTEMPTS,
    })
}

/// The public key and comment an OpenSSH private key file holds in clear text, of any
/// algorithm, encrypted or not (an encrypted key's comment is encrypted, so it is
/// empty then). This is what `ssh-keygen -l` and `-y` show without a passphrase.
///
/// # Errors
/// [`KeyFileError::NotAPrivateKey`] when the text is not an `openssh-key-v1` file.
pub fn parse_public_half(text: &str, path: &Path) -> Result<ssh_key::PublicKey, KeyFileError> {
    let trimmed = text.trim_start();
    if !trimmed.starts_with(OPENSSH_PEM_BEGIN) {
        return Err(classify_foreign_key_text(trimmed, path));
    }
    let key = PrivateKey::from_openssh(trimmed).map_err(|error| KeyFileError::NotAPrivateKey {
        path: path.to_path_buf(),
        reason: format!("malformed openssh-key-v1 data: {error}"),
    })?;
    Ok(key.public_key().clone())
}

/// Parses an `openssh-key-v1` container and checks that it holds an ed25519 key
/// (readable in clear even when the key is encrypted, so nobody is asked for the
/// passphrase of a key that would be refused anyway).
fn parse_ed25519_container(text: &str, path: &Path) -> Result<PrivateKey, KeyFileError> {
    let not_a_key = |reason: &str| KeyFileError::NotAPrivateKey {
        path: path.to_path_buf(),
        reason: reason.to_owned(),
    };
    let trimmed = text.trim_start();
    if !trimmed.starts_with(OPENSSH_PEM_BEGIN) {
        return Err(classify_foreign_key_text(trimmed, path));
    }
    let key = match PrivateKey::from_openssh(trimmed) {
        Ok(key) => key,
        Err(error) => {
            // ssh-key is built without the rsa/ecdsa code, so their keys fail to
            // parse; name their algorithm rather than report a parse error.
            return Err(match container_algorithm(trimmed) {
                Some(algorithm) if algorithm != SSH_ED25519 => KeyFileError::UnsupportedAlgorithm {
                    path: path.to_path_buf(),
                    algorithm,
                },
                _ => not_a_key(&format!("malformed openssh-key-v1 data: {error}")),
            });
        }
    };
    if key.algorithm() != Algorithm::Ed25519 {
        return Err(KeyFileError::UnsupportedAlgorithm {
            path: path.to_path_buf(),
            algorithm: algorithm_name(&key.algorithm()),
        });
    }
    Ok(key)
}

/// The identity of a decrypted ed25519 key, checked against its stored public key.
fn identity_of(key: &PrivateKey, path: &Path) -> Result<Identity, KeyFileError> {
    let KeypairData::Ed25519(keypair) = key.key_data() else {
        return Err(KeyFileError::UnsupportedAlgorithm {
            path: path.to_path_buf(),
            algorithm: algorithm_name(&key.algorithm()),
        });
    };
    let seed = Zeroizing::new(keypair.private.to_bytes());
    let identity = Identity::from_seed(&seed, key.comment());
    if identity.public_key().as_bytes() != keypair.public.as_ref() {
        return Err(KeyFileError::CorruptKeyPair {
            path: path.to_path_buf(),
        });
    }
    Ok(identity)
}

fn algorithm_name(algorithm: &Algorithm) -> String {
    algorithm.as_str().to_owned()
}

/// Explains what a file that is not an OpenSSH private key is instead.
fn classify_foreign_key_text(text: &str, path: &Path) -> KeyFileError {
    let first_line = text.lines().next().unwrap_or("");
    let algorithm = match first_line {
        line if line.contains("BEGIN RSA PRIVATE KEY") => Some("RSA (PEM)"),
        line if line.contains("BEGIN EC PRIVATE KEY") => Some("ECDSA (PEM)"),
        line if line.contains("BEGIN DSA PRIVATE KEY") => Some("DSA (PEM)"),
        line if line.contains("BEGIN PRIVATE KEY") => Some("PKCS#8"),
        _ => None,
    };
    if let Some(algorithm) = algorithm {
        return KeyFileError::UnsupportedAlgorithm {
            path: path.to_path_buf(),
            algorithm: algorithm.to_owned(),
        };
    }
    let first_field = lexer::fields(first_line).next().unwrap_or("");
    let reason = if PublicKey::parse_openssh_line(first_line).is_ok()
        || lexer::is_known_key_type(first_field)
    {
        "this is a public key; pass the private key file, without .pub".to_owned()
    } else {
        format!("expected a file starting with {OPENSSH_PEM_BEGIN}")
    };
    KeyFileError::NotAPrivateKey {
        path: path.to_path_buf(),
        reason,
    }
}

/// Reads the algorithm of the first public key stored in an openssh-key-v1 container,
/// which is in clear text even when the private part is encrypted.
fn container_algorithm(pem: &str) -> Option<String> {
    let body: String = pem
        .lines()
        .skip_while(|line| !line.starts_with("-----BEGIN"))
        .skip(1)
        .take_while(|line| !line.starts_with("-----END"))
        .collect();
    let data = STANDARD.decode(body.trim()).ok()?;
    let mut rest = data.strip_prefix(b"openssh-key-v1\0")?;
    for _field in ["ciphername", "kdfname", "kdfoptions"] {
        rest = read_ssh_string(rest)?.1;
    }
    let (_count, rest) = rest.split_first_chunk::<4>()?;
    let (public_blob, _) = read_ssh_string(rest)?;
    let (algorithm, _) = read_ssh_string(public_blob)?;
    Some(String::from_utf8_lossy(algorithm).into_owned())
}

/// The text of an unencrypted OpenSSH private key file for `identity`, as
/// `ssh-keygen -t ed25519 -N ''` would write it.
///
/// # Errors
/// Only if the encoder fails, which would be a bug.
pub fn encode_identity(identity: &Identity) -> Result<Zeroizing<String>, ssh_key::Error> {
    encode_identity_with_passphrase(identity, None)
}

/// The text of an OpenSSH private key file for `identity`, encrypted with
/// `passphrase` as `ssh-keygen -t ed25519 -N PASSPHRASE` does (bcrypt-pbkdf with 16
/// rounds and a random salt, aes256-ctr), or unencrypted for `None` or `""`.
///
/// # Errors
/// Only if the encoder fails, which would be a bug.
pub fn encode_identity_with_passphrase(
    identity: &Identity,
    passphrase: Option<&str>,
) -> Result<Zeroizing<String>, ssh_key::Error> {
    let seed = identity.seed();
    let keypair = Ed25519Keypair {
        public: Ed25519PublicKey(*identity.public_key().as_bytes()),
        private: Ed25519PrivateKey::from_bytes(&seed),
    };
    let key = PrivateKey::new(KeypairData::Ed25519(keypair), identity.comment())?;
    match passphrase.filter(|passphrase| !passphrase.is_empty()) {
        Some(passphrase) => key
            .encrypt(&mut rand_core::OsRng, passphrase.as_bytes())?
            .to_openssh(LineEnding::LF),
        None => key.to_openssh(LineEnding::LF),
    }
}

/// Reads a public key file (`ssh-ed25519 BASE64 comment`): the first line that is
/// not blank or a `#` comment.
///
/// # Errors
/// [`KeyFileError::Io`] and [`KeyFileError::BadPublicKey`].
pub fn read_public_key(path: &Path) -> Result<(PublicKey, String), KeyFileError> {
    let (file, _) = open_key_file(path)?;
    let mut text = Vec::new();
    file.take(MAX_KEY_FILE_LEN)
        .read_to_end(&mut text)
        .map_err(|error| KeyFileError::io(path, error))?;
    let text = String::from_utf8_lossy(&text);
    let line = text
        .lines()
        .map(str::trim)
        .find(|line| !line.is_empty() && !line.starts_with('#'))
        .unwrap_or("");
    PublicKey::parse_openssh_line(line).map_err(|cause| KeyFileError::BadPublicKey {
        path: path.to_path_buf(),
        cause,
    })
}

/// Writes `identity` unencrypted to `private_path` (mode 0600) and its public key line
/// to `private_path.pub` (mode 0644); see [`write_identity_with_passphrase`].
///
/// # Errors
/// As [`write_identity_with_passphrase`].
pub fn write_identity(
    private_path: &Path,
    identity: &Identity,
    overwrite: bool,
) -> Result<PathBuf, KeyFileError> {
    write_identity_with_passphrase(private_path, identity, overwrite, None)
}

/// Writes `identity` to `private_path` (mode 0600), encrypted with `passphrase` unless
/// it is `None` or empty, and its public key line to `private_path.pub` (mode 0644).
/// The directory must exist: as ssh-keygen, this never creates one, so a mistyped
/// path fails instead of scattering keys.
///
/// Each file is written to a temporary file created with its final mode, fsynced and
/// renamed into place, so a crash never leaves a partial key. Without `overwrite`,
/// an existing file (or a symlink, even a dangling one) at either path is an error
/// and nothing is written. With `overwrite`, existing files are replaced, never
/// written through.
///
/// # Errors
/// [`KeyFileError::AlreadyExists`], [`KeyFileError::NotARegularFile`] (even with
/// `overwrite`) and [`KeyFileError::Io`] (with "No such file or directory" for a
/// missing directory).
pub fn write_identity_with_passphrase(
    private_path: &Path,
    identity: &Identity,
    overwrite: bool,
    passphrase: Option<&str>,
) -> Result<PathBuf, KeyFileError> {
    let public_path = public_key_path(private_path);
    for path in [private_path, public_path.as_path()] {
        let Ok(existing) = std::fs::symlink_metadata(path) else {
            continue;
        };
        let kind = existing.file_type();
        if !overwrite {
            return Err(KeyFileError::AlreadyExists {
                path: path.to_path_buf(),
            });
        }
        // --force replaces a key file or a symlink, never a directory, device, FIFO or
        // socket (`keygen -f /dev/null --force` as root must not delete the device).
        if !kind.is_file() && !kind.is_symlink() {
            return Err(KeyFileError::NotARegularFile {
                path: path.to_path_buf(),
            });
        }
    }
    let private_text = encode_identity_with_passphrase(identity, passphrase).map_err(|error| {
        KeyFileError::io(
            private_path,
            io::Error::other(format!("encoding failed: {error}")),
        )
    })?;
    let public_text = format!(
        "{}\n",
        identity.public_key().to_openssh_line(identity.comment())
    );
    // Both files are written before either is put in place: a disk that fills up
    // between the two must not leave a private key without its public key, or a new
    // private key beside the old public key.
    let private = fsutil::Staged::new(private_path, private_text.as_bytes(), PRIVATE_KEY_MODE)
        .map_err(failed(private_path))?;
    let public = fsutil::Staged::new(&public_path, public_text.as_bytes(), PUBLIC_KEY_MODE)
        .map_err(failed(&public_path))?;
    if overwrite {
        private.replace().map_err(failed(private_path))?;
        public.replace().map_err(failed(&public_path))?;
    } else {
        private.create().map_err(failed(private_path))?;
        if let Err(error) = public.create() {
            // Undo our own half: the private key we just created, nobody else's.
            let _ = std::fs::remove_file(private_path);
            return Err(failed(&public_path)(error));
        }
    }
    Ok(public_path)
}

/// Maps a failure to write the key file at `path` to its error.
fn failed(path: &Path) -> impl Fn(io::Error) -> KeyFileError + '_ {
    move |error| match error.kind() {
        io::ErrorKind::AlreadyExists => KeyFileError::AlreadyExists {
            path: path.to_path_buf(),
        },
        _ => KeyFileError::io(path, error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::MetadataExt;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().mode() & 0o777
    }

    /// A FIFO would block the read until someone writes to it (the command hangs);
    /// it, a directory and a device are refused at once, naming the file.
    #[test]
    fn key_files_that_are_not_regular_files_are_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo_key");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        for path in [fifo.as_path(), dir.path(), Path::new("/dev/null")] {
            for error in [
                read_identity(path).unwrap_err(),
                read_public_key(path).unwrap_err(),
            ] {
                let text = error.to_string();
                assert!(matches!(error, KeyFileError::Io { .. }), "{text}");
                assert!(text.contains(&path.display().to_string()), "{text}");
                assert!(
                    text.contains("not a regular file") || text.contains("is a directory"),
                    "{text}"
                );
            }
        }
    }

    #[test]
    fn written_identity_reads_back_with_modes_0600_and_0644() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("id_ed25519");
        let identity = Identity::generate("me@host");
        let public_path = write_identity(&path, &identity, false).unwrap();
        assert_eq!(public_path, dir.path().join("id_ed25519.pub"));
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&public_path), 0o644);
        let read = read_identity(&path).unwrap();
        assert_eq!(read.public_key(), identity.public_key());
        assert_eq!(*read.seed(), *identity.seed());
        assert_eq!(read.comment(), "me@host");
        let (public, comment) = read_public_key(&public_path).unwrap();
        assert_eq!(public, identity.public_key());
        assert_eq!(comment, "me@host");
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("-----BEGIN OPENSSH PRIVATE KEY-----\n"));
        assert!(text.ends_with("-----END OPENSSH PRIVATE KEY-----\n"));
    }

    #[test]
    fn a_missing_directory_is_an_error_and_is_never_created() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing/dir/id");
        let error = write_identity(&path, &Identity::generate(""), false).unwrap_err();
        let KeyFileError::Io { cause, .. } = &error else {
            panic!("{error}");
        };
        assert_eq!(cause.kind(), io::ErrorKind::NotFound, "{error}");
        assert!(!dir.path().join("missing").exists());
    }

    /// A passphrase function that gives `answers` in turn and records each request.
    fn answers<'a>(
        answers: &'a [&'a str],
        asked: &'a mut Vec<u32>,
    ) -> impl FnMut(PassphraseRequest<'_>) -> PassphraseAnswer + 'a {
        move |request| {
            asked.push(request.attempt);
            Ok(answers
                .get(asked.len() - 1)
                .map(|answer| Zeroizing::new((*answer).to_owned())))
        }
    }

    #[test]
    fn an_encrypted_key_round_trips_and_needs_its_passphrase() {
        let identity = Identity::generate("enc@host");
        let text = encode_identity_with_passphrase(&identity, Some("secret")).unwrap();
        assert!(matches!(
            parse_identity(&text, Path::new("f")),
            Err(KeyFileError::PassphraseProtected { .. })
        ));
        let public = parse_public_half(&text, Path::new("f")).unwrap();
        assert_eq!(
            public.key_data().ed25519().unwrap().as_ref(),
            identity.public_key().as_bytes()
        );
        assert_eq!(public.comment(), "", "an encrypted key's comment is secret");

        let mut asked = Vec::new();
        let read = parse_identity_with_passphrase(
            &text,
            Path::new("f"),
            &mut answers(&["secret"], &mut asked),
        )
        .unwrap();
        assert_eq!(asked, [1]);
        assert_eq!(*read.seed(), *identity.seed());
        assert_eq!(read.comment(), "enc@host");

        // Wrong twice, then right: asked three times, each told its attempt.
        let mut asked = Vec::new();
        let read = parse_identity_with_passphrase(
            &text,
            Path::new("f"),
            &mut answers(&["no", "nope", "secret"], &mut asked),
        );
        assert!(read.is_ok());
        assert_eq!(asked, [1, 2, 3]);
    }

    #[test]
    fn wrong_missing_and_unavailable_passphrases_are_told_apart() {
        let text =
            encode_identity_with_passphrase(&Identity::generate(""), Some("secret")).unwrap();
        let mut asked = Vec::new();
        let error = parse_identity_with_passphrase(
            &text,
            Path::new("f"),
            &mut answers(&["a", "b", "c", "secret"], &mut asked),
        )
        .unwrap_err();
        assert!(
            matches!(error, KeyFileError::WrongPassphrase { attempts: 3, .. }),
            "{error}"
        );
        assert!(
            error.to_string().starts_with("f: incorrect passphrase"),
            "{error}"
        );
        assert_eq!(asked.len(), PASSPHRASE_ATTEMPTS as usize, "bounded");

        let mut asked = Vec::new();
        let error =
            parse_identity_with_passphrase(&text, Path::new("f"), &mut answers(&[""], &mut asked))
                .unwrap_err();
        assert!(
            matches!(error, KeyFileError::NoPassphraseGiven { .. }),
            "{error}"
        );

        let error = parse_identity_with_passphrase(&text, Path::new("f"), &mut |_| {
            Err("no terminal".to_owned())
        })
        .unwrap_err();
        assert!(
            error
                .to_string()
                .ends_with("cannot be asked for: no terminal"),
            "{error}"
        );
    }

    #[test]
    fn an_unencrypted_key_never_asks() {
        let text = encode_identity_with_passphrase(&Identity::generate(""), Some("")).unwrap();
        let read = parse_identity_with_passphrase(&text, Path::new("f"), &mut |_| {
            panic!("asked for the passphrase of an unencrypted key")
        });
        assert!(read.is_ok());
    }

    #[test]
    fn refuses_to_overwrite_either_file_without_force() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("id");
        fs::write(public_key_path(&path), "old public\n").unwrap();
        let error = write_identity(&path, &Identity::generate(""), false).unwrap_err();
        assert!(matches!(error, KeyFileError::AlreadyExists { .. }));
        assert!(error.to_string().contains("--force"), "{error}");
        assert!(!path.exists(), "nothing may be written when refusing");
        assert_eq!(
            fs::read_to_string(public_key_path(&path)).unwrap(),
            "old public\n"
        );

        let first = Identity::generate("first");
        fs::remove_file(public_key_path(&path)).unwrap();
        write_identity(&path, &first, false).unwrap();
        assert!(write_identity(&path, &Identity::generate(""), false).is_err());
        assert_eq!(
            read_identity(&path).unwrap().public_key(),
            first.public_key()
        );

        let second = Identity::generate("second");
        write_identity(&path, &second, true).unwrap();
        assert_eq!(
            read_identity(&path).unwrap().public_key(),
            second.public_key()
        );
        assert_eq!(mode(&path), 0o600);
    }

    #[test]
    fn force_never_replaces_a_directory_or_a_socket() {
        let dir = tempfile::tempdir().unwrap();
        let directory = dir.path().join("a_directory");
        fs::create_dir(&directory).unwrap();
        let socket = dir.path().join("a_socket");
        let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        for path in [&directory, &socket] {
            let error = write_identity(path, &Identity::generate(""), true).unwrap_err();
            assert!(
                matches!(error, KeyFileError::NotARegularFile { .. }),
                "{error}"
            );
            assert!(!public_key_path(path).exists(), "nothing written");
        }
        assert!(directory.is_dir());
        assert!(!fs::symlink_metadata(&socket).unwrap().file_type().is_file());
        // The .pub path counts too.
        let key = dir.path().join("key");
        fs::create_dir(public_key_path(&key)).unwrap();
        let error = write_identity(&key, &Identity::generate(""), true).unwrap_err();
        assert!(
            matches!(error, KeyFileError::NotARegularFile { .. }),
            "{error}"
        );
        assert!(!key.exists());
    }

    #[test]
    fn never_writes_through_a_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        let path = dir.path().join("id");
        std::os::unix::fs::symlink(&target, &path).unwrap();
        let error = write_identity(&path, &Identity::generate(""), false).unwrap_err();
        assert!(
            matches!(error, KeyFileError::AlreadyExists { .. }),
            "{error}"
        );
        assert!(!target.exists());
        // --force replaces the link itself; the file it pointed to is never created.
        write_identity(&path, &Identity::generate(""), true).unwrap();
        assert!(!target.exists());
        assert!(fs::symlink_metadata(&path).unwrap().file_type().is_file());
    }

    #[test]
    fn refuses_group_or_world_readable_private_keys_naming_mode_and_fix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("id");
        write_identity(&path, &Identity::generate(""), false).unwrap();
        for bad_mode in [0o640, 0o604, 0o644, 0o660] {
            fs::set_permissions(&path, fs::Permissions::from_mode(bad_mode)).unwrap();
            let error = read_identity(&path).unwrap_err();
            let text = error.to_string();
            assert!(text.contains(&format!("{bad_mode:04o}")), "{text}");
            assert!(
                text.contains(&format!("chmod 600 {}", path.display())),
                "{text}"
            );
        }
        fs::set_permissions(&path, fs::Permissions::from_mode(0o400)).unwrap();
        assert!(read_identity(&path).is_ok());
    }

    #[test]
    fn a_public_key_passed_as_private_key_gets_a_hint() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("id");
        write_identity(&path, &Identity::generate(""), false).unwrap();
        let public_path = public_key_path(&path);
        fs::set_permissions(&public_path, fs::Permissions::from_mode(0o600)).unwrap();
        let error = read_identity(&public_path).unwrap_err();
        assert!(
            error.to_string().contains("this is a public key"),
            "{error}"
        );
    }

    /// keyfile once had its own "starts with ssh- or ecdsa-" check; it now asks the
    /// lexer's key-type table, so security keys and certificates get the hint too.
    #[test]
    fn public_keys_of_every_openssh_type_get_the_hint() {
        for line in [
            "sk-ssh-ed25519@openssh.com AAAA me",
            "ssh-ed25519-cert-v01@openssh.com AAAA me",
            "ecdsa-sha2-nistp256 AAAA me",
        ] {
            let error = classify_foreign_key_text(line, Path::new("k"));
            assert!(
                error.to_string().contains("this is a public key"),
                "{error}"
            );
        }
        let error = classify_foreign_key_text("ssh-nonsense AAAA", Path::new("k"));
        assert!(
            !error.to_string().contains("this is a public key"),
            "{error}"
        );
    }

    #[test]
    fn pem_keys_of_other_algorithms_are_named() {
        let error = parse_identity(
            "-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----\n",
            Path::new("k"),
        )
        .unwrap_err();
        assert!(
            error
                .to_string()
                .contains("only ssh-ed25519 keys are supported"),
            "{error}"
        );
    }

    #[test]
    fn garbage_is_not_a_private_key_and_never_panics() {
        for text in [
            "",
            "hello",
            "-----BEGIN OPENSSH PRIVATE KEY-----\n",
            "-----BEGIN OPENSSH PRIVATE KEY-----\n!!!!\n-----END OPENSSH PRIVATE KEY-----\n",
            "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEA\n-----END OPENSSH PRIVATE KEY-----\n",
        ] {
            let error = parse_identity(text, Path::new("f")).unwrap_err();
            assert!(error.to_string().starts_with("f: "), "{error}");
        }
    }

    #[test]
    fn a_tampered_public_half_is_detected() {
        let identity = Identity::generate("");
        let other = Identity::generate("");
        let keypair = Ed25519Keypair {
            public: Ed25519PublicKey(*other.public_key().as_bytes()),
            private: Ed25519PrivateKey::from_bytes(&identity.seed()),
        };
        let text = PrivateKey::new(KeypairData::Ed25519(keypair), "")
            .unwrap()
            .to_openssh(LineEnding::LF)
            .unwrap();
        let error = parse_identity(&text, Path::new("f")).unwrap_err();
        assert!(
            matches!(error, KeyFileError::CorruptKeyPair { .. }),
            "{error}"
        );
    }

    #[test]
    fn private_key_text_is_never_in_errors_or_debug() {
        let identity = Identity::generate("");
        let text = encode_identity(&identity).unwrap();
        let body_line = text.lines().nth(1).unwrap().to_owned();
        let mut broken = text.to_string();
        broken.push_str("trailing garbage");
        let rendered = match parse_identity(&broken, Path::new("f")) {
            Ok(identity) => format!("{identity:?}"),
            Err(error) => format!("{error} {error:?}"),
        };
        assert!(!rendered.contains(&body_line), "{rendered}");
    }
}
