//! `noise-echo fingerprint FILE...`: one line per key, as `ssh-keygen -lf` prints it:
//! `BITS SHA256:... comment (TYPE)`, for every key type OpenSSH has (RSA with its
//! bits, ECDSA, DSA, security keys, certificates as `ED25519-CERT`...).
//!
//! Each FILE may be a private key (encrypted or not: the public half is in clear
//! text), a public key, a certificate (`*-cert.pub`), an authorized_keys or a
//! known_hosts file, `-` for standard input, or a key line itself. This is a display
//! tool: it shows every key a line holds, whatever options or markers come with it,
//! and says on stderr which lines it skipped.
//!
//! With `-L` it shows certificates instead, as `ssh-keygen -L -f` does: for every
//! certificate line of each FILE, a `FILE:` (or `FILE:LINE:`) heading and the
//! certificate's type, key, CA, key ID, serial, validity, principals, critical
//! options and extensions, in ssh-keygen's layout. Times are UTC (ssh-keygen uses
//! the local time zone: under `TZ=UTC` the two agree byte for byte).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use ssh_key::public::KeyData;
use ssh_key::HashAlg;

use noise_echo::openssh::{keyfile, lexer};

#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES, after_long_help = HELP)]
pub(super) struct Args {
    /// Key, authorized_keys or known_hosts files, `-` for stdin, or key lines
    #[arg(value_name = "FILE", required = true)]
    files: Vec<String>,
    /// Show each certificate's contents instead (type, key, CA, key ID, serial, validity in UTC, principals, critical options, extensions), as ssh-keygen -L -f
    #[arg(short = 'L', long = "certificates")]
    certificates: bool,
}

/// The end of `-h`: examples.
const EXAMPLES: &str = "Examples:
  noise-echo fingerprint ~/.ssh/id_ed25519.pub
  noise-echo fingerprint ~/.config/noise-echo/authorized_keys known_hosts
  curl -s https://forge.example/ann.keys | noise-echo fingerprint -
  noise-echo fingerprint 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA... ann@laptop'
  noise-echo fingerprint -L ~/.ssh/id_ed25519-cert.pub";

/// The end of `--help`: examples and exit statuses.
const HELP: &str = "Examples:
  noise-echo fingerprint ~/.ssh/id_ed25519.pub
  noise-echo fingerprint ~/.config/noise-echo/authorized_keys known_hosts
  curl -s https://forge.example/ann.keys | noise-echo fingerprint -
  noise-echo fingerprint 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA... ann@laptop'
  noise-echo fingerprint -L ~/.ssh/id_ed25519-cert.pub

The lines are those of ssh-keygen -lf; with -L, the listing of ssh-keygen -L -f
(times in UTC). -L reads ssh-ed25519 certificates signed by an ssh-ed25519 CA,
the kind noise-echo uses, and names the lines it cannot show on stderr.

Exit statuses:
  0  every argument had a key (with -L: a certificate)
  1  an argument could not be read or held no key (the others are still printed)
  2  the command line could not be parsed";

pub(super) fn run(args: Args) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    let mut failed = Vec::new();
    for argument in &args.files {
        let lines = if args.certificates {
            certificate_listings(argument)
        } else {
            fingerprint_argument(argument)
        };
        match lines {
            Ok(lines) => {
                for line in lines {
                    writeln!(stdout, "{line}")?;
                }
            }
            Err(error) if args.files.len() == 1 => return Err(error),
            Err(error) => {
                stderr_line!("error: {error:#}");
                failed.push(argument.as_str());
            }
        }
    }
    if !failed.is_empty() {
        bail!("no key shown for {}", failed.join(", "));
    }
    Ok(())
}

/// `ssh-keygen -L -f FILE`: the listing of every certificate line of a file or of
/// `-`, each after its heading: `FILE:` for the first line of a file, else
/// `FILE:LINE:` (standard input is `(stdin)` and always numbered). Other lines are
/// named on stderr, as ssh-keygen does.
fn certificate_listings(argument: &str) -> anyhow::Result<Vec<String>> {
    let (bytes, name, numbered) = if argument == "-" {
        let mut bytes = Vec::new();
        std::io::stdin()
            .lock()
            .read_to_end(&mut bytes)
            .context("cannot read standard input")?;
        (bytes, "(stdin)", true)
    } else {
        let bytes = noise_echo::fsutil::read_regular(Path::new(argument))
            .with_context(|| format!("cannot read {argument}"))?;
        (bytes, argument, false)
    };
    let text = String::from_utf8_lossy(&bytes);
    let mut listings = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        let line = line
            .strip_suffix('\r')
            .unwrap_or(line)
            .trim_start_matches([' ', '\t']);
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let key_type = lexer::split_field(line).0;
        if !key_type.ends_with(lexer::CERTIFICATE_SUFFIX) {
            stderr_line!("{name}:{number} is not a certificate");
            continue;
        }
        match noise_echo::openssh::certificate::Certificate::from_openssh_line(line) {
            Ok(certificate) => {
                let heading = if number == 1 && !numbered {
                    format!("{name}:")
                } else {
                    format!("{name}:{number}:")
                };
                // Key IDs, principals and option values are the CA's free text:
                // shown escaped, line by line, so none can drive the terminal. The
                // listing's last newline is the one the caller writes.
                let listing: Vec<String> = certificate
                    .to_keygen_listing()
                    .lines()
                    .map(|line| super::printable(line).into_owned())
                    .collect();
                listings.push(format!(
                    "{}\n{}",
                    super::printable(&heading),
                    listing.join("\n")
                ));
            }
            Err(error) => stderr_line!(
                "{name}:{number}: cannot show the certificate: {}",
                super::printable(&error.to_string())
            ),
        }
    }
    if listings.is_empty() {
        bail!("{name}: no certificate shown (expected a -cert.pub file, as ssh-keygen -s writes)");
    }
    Ok(listings)
}

/// The output lines for one argument: a file, `-`, or a key line.
fn fingerprint_argument(argument: &str) -> anyhow::Result<Vec<String>> {
    if argument == "-" {
        let mut bytes = Vec::new();
        std::io::stdin()
            .lock()
            .read_to_end(&mut bytes)
            .context("cannot read standard input")?;
        let text = String::from_utf8_lossy(&bytes);
        let stdin = Path::new("(stdin)");
        if text.trim_start().starts_with("-----BEGIN") {
            let public = keyfile::parse_public_half(&text, stdin)?;
            let key = Key::Plain(public.key_data().clone());
            return Ok(vec![format_line(&key, public.comment())]);
        }
        return fingerprint_text(&text, stdin);
    }
    let path = PathBuf::from(argument);
    match noise_echo::fsutil::read_regular(&path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            if text.trim_start().starts_with("-----BEGIN") {
                return fingerprint_private_key(&text, &path).map(|line| vec![line]);
            }
            fingerprint_text(&text, &path)
        }
        // Not a file: it may be a key line given on the command line.
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            match key_in_line(argument.trim()) {
                Ok((key, label)) => Ok(vec![format_line(&key, &label)]),
                Err(_) => Err(error).with_context(|| {
                    format!("cannot read {argument} (it is neither a file nor a key line)")
                }),
            }
        }
        Err(error) => Err(error).with_context(|| format!("cannot read {argument}")),
    }
}

/// A private key file: as ssh-keygen, the key of FILE.pub if there is one (it keeps
/// the comment, which an encrypted key hides), else the public half stored in clear
/// text in the private key file, so no passphrase is needed.
fn fingerprint_private_key(text: &str, path: &Path) -> anyhow::Result<String> {
    let public_path = keyfile::public_key_path(path);
    if let Ok(public_text) = noise_echo::fsutil::read_regular(&public_path) {
        let public_text = String::from_utf8_lossy(&public_text);
        if let Some(Ok((key, label))) = public_text
            .lines()
            .map(str::trim)
            .find(|line| !line.is_empty() && !line.starts_with('#'))
            .map(key_in_line)
        {
            return Ok(format_line(&key, &label));
        }
    }
    // Only the public half is read, so the private key's mode is not checked.
    let public = keyfile::parse_public_half(text, path).map_err(|error| {
        let pem = matches!(error, keyfile::KeyFileError::UnsupportedAlgorithm { .. });
        let error = anyhow::Error::new(error);
        if pem {
            // A PEM (PKCS#1, PKCS#8) private key: only ssh-keygen's own format is read.
            error.context(format!(
                "cannot show the key of {0} (fingerprint {0}.pub instead, or rewrite the key \
                 in OpenSSH's format: ssh-keygen -p -f {0})",
                path.display()
            ))
        } else {
            error
        }
    })?;
    Ok(format_line(
        &Key::Plain(public.key_data().clone()),
        public.comment(),
    ))
}

/// Every key of a public key, authorized_keys or known_hosts text, one output line each.
fn fingerprint_text(text: &str, path: &Path) -> anyhow::Result<Vec<String>> {
    let mut lines = Vec::new();
    for (index, line) in text.lines().enumerate() {
        // Trailing blanks stay: ssh-keygen shows the rest of the line verbatim. The CR
        // of a CRLF file goes.
        let line = line.strip_suffix('\r').unwrap_or(line);
        let trimmed = line.trim_start_matches([' ', '\t']);
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        match key_in_line(line) {
            Ok((key, label)) => lines.push(format_line(&key, &label)),
            Err(reason) => stderr_line!("{}:{}: skipped: {reason}", path.display(), index + 1),
        }
    }
    if lines.is_empty() {
        bail!(
            "{}: no key found (expected a key file, a certificate, authorized_keys or known_hosts)",
            path.display()
        );
    }
    Ok(lines)
}

/// A key as ssh-keygen fingerprints it: a certificate's fingerprint is that of the
/// key it certifies, and its type gets `-CERT`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Key {
    /// A plain public key.
    Plain(KeyData),
    /// The key a certificate certifies.
    Certified(KeyData),
}

impl Key {
    fn data(&self) -> &KeyData {
        match self {
            Key::Plain(data) | Key::Certified(data) => data,
        }
    }
}

/// `BITS SHA256:... label (TYPE)`; ssh-keygen says `no comment` for an empty one.
fn format_line(key: &Key, label: &str) -> String {
    let label = if label.is_empty() {
        "no comment"
    } else {
        label
    };
    let (bits, type_name) = size_and_type(key.data());
    let suffix = match key {
        Key::Plain(_) => "",
        Key::Certified(_) => "-CERT",
    };
    format!(
        "{bits} {} {} ({type_name}{suffix})",
        key.data().fingerprint(HashAlg::Sha256),
        super::printable(label)
    )
}

/// The size and type name ssh-keygen shows (`sshkey_size`, `sshkey_type`).
fn size_and_type(data: &KeyData) -> (usize, &'static str) {
    match data {
        KeyData::Ed25519(_) => (256, "ED25519"),
        KeyData::SkEd25519(_) => (256, "ED25519-SK"),
        KeyData::SkEcdsaSha2NistP256(_) => (256, "ECDSA-SK"),
        KeyData::Ecdsa(key) => (
            match key.curve() {
                ssh_key::EcdsaCurve::NistP256 => 256,
                ssh_key::EcdsaCurve::NistP384 => 384,
                ssh_key::EcdsaCurve::NistP521 => 521,
            },
            "ECDSA",
        ),
        KeyData::Rsa(key) => (bit_length(key.n.as_positive_bytes()), "RSA"),
        KeyData::Dsa(key) => (bit_length(key.p.as_positive_bytes()), "DSA"),
        _ => (0, "UNKNOWN"),
    }
}

/// The number of significant bits of a big-endian unsigned integer.
fn bit_length(bytes: Option<&[u8]>) -> usize {
    let bytes = bytes.unwrap_or_default();
    let Some(position) = bytes.iter().position(|&byte| byte != 0) else {
        return 0;
    };
    (bytes.len() - position) * 8 - bytes[position].leading_zeros() as usize
}

/// The key a certificate (`TYPE-cert-v01@openssh.com BASE64`) certifies, read from its
/// blob (`string type, string nonce, key fields..., serial, ...`, PROTOCOL.certkeys)
/// without judging the rest: ssh-keygen -l shows expired and odd certificates too,
/// where ssh-key's full parser refuses some validity periods ssh-keygen writes.
fn certified_key(base64_blob: &str) -> Result<KeyData, String> {
    use base64::Engine as _;
    let blob = base64::engine::general_purpose::STANDARD
        .decode(base64_blob)
        .map_err(|error| format!("bad base64: {error}"))?;
    let (certificate_type, rest) = ssh_string(&blob).ok_or("truncated")?;
    let certificate_type = std::str::from_utf8(certificate_type).map_err(|_| "bad type name")?;
    let stem = certificate_type
        .strip_suffix(lexer::CERTIFICATE_SUFFIX)
        .ok_or("not a certificate type")?;
    // The plain type, and how many SSH strings (mpints are strings too) its key has.
    let (plain_type, key_fields) = match stem {
        "ssh-ed25519" => ("ssh-ed25519".to_owned(), 1),
        "ssh-rsa" => ("ssh-rsa".to_owned(), 2),
        "ssh-dss" => ("ssh-dss".to_owned(), 4),
        "sk-ssh-ed25519" => ("sk-ssh-ed25519@openssh.com".to_owned(), 2),
        "sk-ecdsa-sha2-nistp256" => ("sk-ecdsa-sha2-nistp256@openssh.com".to_owned(), 3),
        ecdsa if ecdsa.starts_with("ecdsa-sha2-") => (ecdsa.to_owned(), 2),
        other => return Err(format!("unknown certified key type {other}")),
    };
    let (_nonce, mut rest) = ssh_string(rest).ok_or("truncated")?;
    let key_start = rest;
    for _ in 0..key_fields {
        rest = ssh_string(rest).ok_or("truncated")?.1;
    }
    let key_bytes = &key_start[..key_start.len() - rest.len()];
    let mut plain = Vec::with_capacity(4 + plain_type.len() + key_bytes.len());
    let type_len = u32::try_from(plain_type.len()).map_err(|_| "type name too long")?;
    plain.extend_from_slice(&type_len.to_be_bytes());
    plain.extend_from_slice(plain_type.as_bytes());
    plain.extend_from_slice(key_bytes);
    ssh_key::PublicKey::from_bytes(&plain)
        .map(|key| key.key_data().clone())
        .map_err(|error| error.to_string())
}

/// Splits one SSH `string` (u32 big-endian length, then the bytes) off `data`.
fn ssh_string(data: &[u8]) -> Option<(&[u8], &[u8])> {
    let (len, rest) = data.split_first_chunk::<4>()?;
    let len = usize::try_from(u32::from_be_bytes(*len)).ok()?;
    (rest.len() >= len).then(|| rest.split_at(len))
}

/// Finds the key in a public key, certificate, authorized_keys or known_hosts line as
/// ssh-keygen's `do_fingerprint` does: a key at the start of the line, else after its
/// first field (options, or host names), which sshd splits honouring quotes. The text
/// shown beside it is the rest of the line after the key, verbatim, else that first
/// field. Marker lines (`@revoked`, `@cert-authority`) have two fields before the key,
/// so ssh-keygen shows no key for them, and neither does this.
fn key_in_line(line: &str) -> Result<(Key, String), String> {
    let line = line.trim_start_matches([' ', '\t']);
    if let Some(found) = key_at_start(line) {
        let (key, comment) = found?;
        return Ok((key, comment.unwrap_or_default().to_owned()));
    }
    let (first_field, rest) = lexer::split_quoted_field(line)?;
    match key_at_start(rest) {
        Some(found) => {
            let (key, comment) = found?;
            Ok((key, comment.unwrap_or(first_field).to_owned()))
        }
        None if first_field.starts_with('@') => Err(format!(
            "{first_field} lines are not shown (as by ssh-keygen -l)"
        )),
        None => Err(
            "no key type (ssh-ed25519 ...) at the start of the line or after its first field"
                .into(),
        ),
    }
}

/// `TYPE BLOB [comment]` at the start of `text`: None if `text` does not start with a
/// key type, else the key and the comment (None when absent or a `#` remark).
fn key_at_start(text: &str) -> Option<Result<(Key, Option<&str>), String>> {
    let (algorithm, rest) = lexer::split_field(text);
    if !lexer::is_known_key_type(algorithm) {
        return None;
    }
    let (blob, comment) = lexer::split_field(rest);
    if blob.is_empty() {
        return Some(Err(format!("{algorithm} with no key data")));
    }
    let malformed =
        |error: &dyn std::fmt::Display| format!("{algorithm} key data is malformed ({error})");
    let key = if algorithm.ends_with(lexer::CERTIFICATE_SUFFIX) {
        certified_key(blob)
            .map(Key::Certified)
            .map_err(|error| malformed(&error))
    } else {
        ssh_key::PublicKey::from_openssh(&format!("{algorithm} {blob}"))
            .map(|key| Key::Plain(key.key_data().clone()))
            .map_err(|error| malformed(&error))
    };
    let comment = Some(comment).filter(|comment| !comment.is_empty() && !comment.starts_with('#'));
    Some(key.map(|key| (key, comment)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use noise_echo::identity::Identity;

    fn plain(identity: &Identity) -> Key {
        Key::Plain(KeyData::Ed25519(ssh_key::public::Ed25519PublicKey(
            *identity.public_key().as_bytes(),
        )))
    }

    #[test]
    fn finds_keys_after_options_and_host_patterns() {
        let identity = Identity::generate("");
        let key = plain(&identity);
        let bare = identity.public_key().to_openssh_line("");
        let cases = [
            (identity.public_key().to_openssh_line("alice"), "alice"),
            (
                format!("from=\"10.0.0.1, ssh-x\",no-pty {bare} opt comment"),
                "opt comment",
            ),
            (format!("[host]:2222,other {bare}"), "[host]:2222,other"),
            (bare.clone(), ""),
        ];
        for (line, label) in cases {
            let (found, found_label) = key_in_line(&line).unwrap();
            assert_eq!(found, key, "{line}");
            assert_eq!(found_label, label, "{line}");
        }
        assert!(key_in_line("ssh-rsa AAAAB3NzaC1yc2E= bob")
            .unwrap_err()
            .contains("malformed"));
        assert!(key_in_line(&format!("@revoked bad {bare}"))
            .unwrap_err()
            .contains("@revoked lines are not shown"));
        // The comment is the rest of the line, verbatim, as ssh-keygen shows it.
        let (_, label) = key_in_line(&format!("{} two  spaces ", bare.trim_end())).unwrap();
        assert_eq!(label, "two  spaces ");
        assert!(key_in_line("garbage line").is_err());
        assert!(key_in_line("ssh-ed25519").is_err());
    }

    /// The fingerprint command once had its own splitter (any whitespace, any
    /// backslash escape inside quotes); it now splits as sshd does.
    #[test]
    fn lines_split_as_sshd_splits_them() {
        let bare = Identity::generate("").public_key().to_openssh_line("");
        // `\\` is no escape to sshd, so the quote after it ends the value.
        let line = format!(r#"command="a\\" b",no-pty {bare} c"#);
        assert_eq!(key_in_line(&line).unwrap().1, "c");
        // Only spaces and tabs separate fields: a no-break space is part of one.
        assert!(key_in_line(&format!("{}\u{a0}x", bare.trim_end())).is_err());
        // A comment after the key and a CR from a CRLF file.
        let line = format!("{bare} me@host\r");
        assert_eq!(
            key_in_line(line.trim_end_matches('\r')).unwrap().1,
            "me@host"
        );
        // A name that merely starts like a key type is not one.
        assert!(key_in_line("ssh-x AAAA").is_err());
    }

    #[test]
    fn format_matches_ssh_keygen() {
        let identity = Identity::generate("");
        let line = format_line(&plain(&identity), "me@host");
        assert_eq!(
            line,
            format!(
                "256 {} me@host (ED25519)",
                identity.public_key().fingerprint()
            )
        );
        assert!(format_line(&plain(&identity), "").contains(" no comment "));
        let Key::Plain(data) = plain(&identity) else {
            unreachable!()
        };
        assert!(format_line(&Key::Certified(data), "c").ends_with(" c (ED25519-CERT)"));
    }

    proptest::proptest! {
        /// Certificate blobs and lines come from anywhere: never a panic.
        #[test]
        fn any_certificate_blob_or_line_is_an_answer_not_a_panic(
            blob in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200),
            line in "\\PC{0,120}",
        ) {
            use base64::Engine as _;
            let encoded = base64::engine::general_purpose::STANDARD.encode(&blob);
            let _ = certified_key(&encoded);
            let _ = key_in_line(&format!("ssh-ed25519-cert-v01@openssh.com {encoded}"));
            let _ = key_in_line(&line);
        }
    }

    #[test]
    fn a_truncated_certificate_is_malformed() {
        let line = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../keys/client_ed25519-cert.pub"
        ))
        .unwrap();
        let blob = line.split(' ').nth(1).unwrap();
        assert!(key_in_line(line.trim_end()).is_ok());
        use base64::Engine as _;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(blob)
            .unwrap();
        for cut in [0, 10, 40, 70] {
            let short = base64::engine::general_purpose::STANDARD.encode(&bytes[..cut]);
            assert!(certified_key(&short).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn bit_lengths_count_significant_bits() {
        assert_eq!(bit_length(Some(&[0x01, 0x00])), 9);
        assert_eq!(bit_length(Some(&[0x00, 0x80, 0x00])), 16);
        assert_eq!(bit_length(Some(&[0xff; 384])), 3072);
        assert_eq!(bit_length(Some(&[])), 0);
        assert_eq!(bit_length(None), 0);
    }
}
