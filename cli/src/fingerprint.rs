//! `noise-echo fingerprint FILE`: one line per key, as `ssh-keygen -lf` prints it:
//! `256 SHA256:... comment (ED25519)`.
//!
//! FILE may be a private key, a public key, an authorized_keys file or a known_hosts
//! file. This is a display tool: it shows every ed25519 key a line holds, whatever
//! options or markers come with it, and says on stderr which lines it skipped.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use noise_echo::identity::PublicKey;
use noise_echo::openssh::{keyfile, lexer};

#[derive(Debug, clap::Args)]
pub(super) struct Args {
    /// A private key, public key, authorized_keys or known_hosts file
    #[arg(value_name = "FILE")]
    file: PathBuf,
}

pub(super) fn run(args: Args) -> anyhow::Result<()> {
    let path = args.file;
    let bytes = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let text = String::from_utf8_lossy(&bytes);
    let mut stdout = std::io::stdout().lock();
    if text.trim_start().starts_with("-----BEGIN") {
        // Only the public half is needed, so the private key's mode is not checked.
        let identity = keyfile::parse_identity(&text, &path)?;
        writeln!(
            stdout,
            "{}",
            format_line(&identity.public_key(), identity.comment())
        )?;
        return Ok(());
    }
    let mut shown = 0usize;
    for (index, line) in text.lines().enumerate() {
        // The text was decoded lossily, so every line is UTF-8 here.
        let lexer::LineText::Text(line) = lexer::line_text(line.as_bytes()) else {
            continue;
        };
        match key_in_line(line) {
            Ok((key, label)) => {
                writeln!(stdout, "{}", format_line(&key, &label))?;
                shown += 1;
            }
            Err(reason) => eprintln!("{}:{}: skipped: {reason}", path.display(), index + 1),
        }
    }
    if shown == 0 {
        bail!(
            "{}: no ssh-ed25519 key found (expected a key file, authorized_keys or known_hosts)",
            display(&path)
        );
    }
    Ok(())
}

fn display(path: &Path) -> String {
    path.display().to_string()
}

/// `256 SHA256:... label (ED25519)`; ssh-keygen says `no comment` for an empty one.
fn format_line(key: &PublicKey, label: &str) -> String {
    let label = if label.is_empty() {
        "no comment"
    } else {
        label
    };
    format!(
        "256 {} {} (ED25519)",
        key.fingerprint(),
        super::printable(label)
    )
}

/// Finds the key in a public key, authorized_keys or known_hosts line, and the text
/// ssh-keygen would show beside it: the comment, else the host patterns.
fn key_in_line(line: &str) -> Result<(PublicKey, String), String> {
    let fields: Vec<&str> = lexer::fields(line).collect();
    let Some(type_index) = fields
        .iter()
        .position(|field| lexer::is_known_key_type(field))
    else {
        return Err("no key type field (ssh-ed25519 ...) on this line".into());
    };
    let algorithm = fields[type_index];
    let blob = fields
        .get(type_index + 1)
        .ok_or_else(|| format!("{algorithm} with no key data"))?;
    let key = PublicKey::from_openssh_fields(algorithm, blob).map_err(|error| error.to_string())?;
    let comment = fields[type_index + 2..].join(" ");
    let label = if comment.is_empty() {
        fields[..type_index].join(" ")
    } else {
        comment
    };
    Ok((key, label))
}

#[cfg(test)]
mod tests {
    use super::*;
    use noise_echo::identity::Identity;

    #[test]
    fn finds_keys_after_options_and_host_patterns() {
        let key = Identity::generate("").public_key();
        let bare = key.to_openssh_line("");
        let cases = [
            (key.to_openssh_line("alice"), "alice"),
            (
                format!("from=\"10.0.0.1, ssh-x\",no-pty {bare} opt comment"),
                "opt comment",
            ),
            (format!("[host]:2222,other {bare}"), "[host]:2222,other"),
            (format!("@revoked bad {bare}"), "@revoked bad"),
            (bare.clone(), ""),
        ];
        for (line, label) in cases {
            let (found, found_label) = key_in_line(&line).unwrap();
            assert_eq!(found, key, "{line}");
            assert_eq!(found_label, label, "{line}");
        }
        assert!(key_in_line("ssh-rsa AAAAB3NzaC1yc2E= bob")
            .unwrap_err()
            .contains("only ssh-ed25519"));
        assert!(key_in_line("garbage line").is_err());
        assert!(key_in_line("ssh-ed25519").is_err());
    }

    /// The fingerprint command once had its own splitter (any whitespace, any
    /// backslash escape inside quotes); it now splits as sshd does.
    #[test]
    fn lines_split_as_sshd_splits_them() {
        let key = Identity::generate("").public_key();
        let bare = key.to_openssh_line("");
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
        let key = Identity::generate("").public_key();
        let line = format_line(&key, "me@host");
        assert_eq!(line, format!("256 {} me@host (ED25519)", key.fingerprint()));
        assert!(format_line(&key, "").contains(" no comment "));
    }
}
