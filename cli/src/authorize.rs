//! `noise-echo authorize`: manage the server's authorized_keys, as `ssh-copy-id` does
//! for sshd, plus listing and revoking.
//!
//! Every change is a read-modify-write under an exclusive lock, written to a temporary
//! file, fsynced and renamed, so two runs at the same moment both land and a crash
//! never leaves a half-written file. A running server sees the change on its next
//! connection.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use crate::paths::AUTHORIZED_KEYS_FILE;
use noise_echo::fsutil;
use noise_echo::identity::{Fingerprint, PublicKey};
use noise_echo::openssh::authorized_keys::{self, AuthorizedKeys};
use noise_echo::openssh::keyfile::PRIVATE_KEY_MODE;
use noise_echo::openssh::lexer;

#[derive(Debug, clap::Args)]
pub(super) struct Args {
    /// Public keys to add: a .pub file, a key line ('ssh-ed25519 AAAA... comment'), or - for stdin
    #[arg(value_name = "KEY", required_unless_present_any = ["list", "remove"], conflicts_with_all = ["list", "remove"])]
    keys: Vec<String>,
    /// The authorized_keys file [default: authorized_keys in the noise-echo config directory]
    #[arg(long, value_name = "FILE")]
    authorized_keys: Option<PathBuf>,
    /// Show every authorized key with its fingerprint and comment
    #[arg(long, conflicts_with = "remove")]
    list: bool,
    /// Remove every line holding the key with this fingerprint (SHA256:...)
    #[arg(long, value_name = "FINGERPRINT")]
    remove: Option<Fingerprint>,
    /// Show what would change without changing anything
    #[arg(long, conflicts_with = "list")]
    dry_run: bool,
}

pub(super) fn run(args: Args) -> anyhow::Result<()> {
    let path = super::path_or_default(args.authorized_keys, AUTHORIZED_KEYS_FILE)?;
    if args.list {
        return list(&path);
    }
    if let Some(fingerprint) = args.remove {
        return remove(&path, &fingerprint, args.dry_run);
    }
    let keys = collect_keys(&args.keys)?;
    add(&path, &keys, args.dry_run)
}

/// A key to add, with the comment to write beside it.
struct NewKey {
    key: PublicKey,
    comment: String,
}

/// Reads every KEY argument; any bad one fails the whole run before anything is written.
fn collect_keys(arguments: &[String]) -> anyhow::Result<Vec<NewKey>> {
    let mut keys = Vec::new();
    for argument in arguments {
        if argument == "-" {
            let stdin = std::io::stdin();
            let text = stdin
                .lock()
                .lines()
                .collect::<Result<Vec<_>, _>>()
                .context("cannot read keys from standard input")?;
            keys.extend(keys_in_text(&text.join("\n"), "standard input")?);
        } else if looks_like_key_line(argument) {
            keys.extend(keys_in_text(argument, "the command line")?);
        } else {
            let path = Path::new(argument);
            let text = std::fs::read_to_string(path).with_context(|| {
                format!(
                    "cannot read {argument} (KEY must be a .pub file, a key line, or - for stdin)"
                )
            })?;
            if text.trim_start().starts_with("-----BEGIN") {
                bail!("{argument} is a private key: pass the public key ({argument}.pub) instead");
            }
            keys.extend(keys_in_text(&text, argument)?);
        }
    }
    Ok(keys)
}

/// Whether a KEY argument is a key line rather than a file name: its first field
/// is an OpenSSH key type (so `sk-` and certificate types count too).
fn looks_like_key_line(argument: &str) -> bool {
    lexer::fields(argument)
        .next()
        .is_some_and(lexer::is_known_key_type)
}

/// Every non-blank, non-comment line of `text` must be a public key line.
fn keys_in_text(text: &str, source: &str) -> anyhow::Result<Vec<NewKey>> {
    let mut keys = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, comment) = PublicKey::parse_openssh_line(line)
            .with_context(|| format!("{source}:{}: not a usable public key", index + 1))?;
        keys.push(NewKey { key, comment });
    }
    if keys.is_empty() {
        bail!("{source}: no public key found");
    }
    Ok(keys)
}

fn add(path: &Path, keys: &[NewKey], dry_run: bool) -> anyhow::Result<()> {
    let plan = |old: &[u8]| -> anyhow::Result<(Vec<u8>, Vec<String>, usize)> {
        let mut contents = old.to_vec();
        let mut messages = Vec::new();
        let mut added = 0;
        for new in keys {
            let fingerprint = new.key.fingerprint();
            let label = format!("{fingerprint} {}", super::printable(&new.comment));
            let (_, holding_lines) = authorized_keys::remove_key(&contents, &fingerprint);
            if let Some(existing) = holding_lines.first() {
                messages.push(format!(
                    "already present: {} (line {})",
                    label.trim_end(),
                    existing.line
                ));
                continue;
            }
            contents = authorized_keys::append_key(&contents, &new.key, &new.comment);
            added += 1;
            let verb = if dry_run { "would add" } else { "added" };
            messages.push(format!("{verb} {} to {}", label.trim_end(), path.display()));
        }
        Ok((contents, messages, added))
    };
    let messages = if dry_run {
        let old = read_if_exists(path)?;
        plan(&old)?.1
    } else {
        fsutil::update_locked(path, PRIVATE_KEY_MODE, |old| {
            let (contents, messages, added) = plan(old)?;
            Ok::<_, anyhow::Error>(((added > 0).then_some(contents), messages))
        })
        .with_context(|| format!("cannot update {}", path.display()))?
    };
    let mut stdout = std::io::stdout().lock();
    for message in messages {
        writeln!(stdout, "{message}")?;
    }
    Ok(())
}

fn read_if_exists(path: &Path) -> anyhow::Result<Vec<u8>> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(bytes),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(error) => Err(error).with_context(|| format!("cannot read {}", path.display())),
    }
}

fn remove(path: &Path, fingerprint: &Fingerprint, dry_run: bool) -> anyhow::Result<()> {
    if !path.exists() {
        bail!("{} does not exist, so no key is authorized", path.display());
    }
    let removed = if dry_run {
        authorized_keys::remove_key(&read_if_exists(path)?, fingerprint).1
    } else {
        fsutil::update_locked(path, PRIVATE_KEY_MODE, |old| {
            let (contents, removed) = authorized_keys::remove_key(old, fingerprint);
            Ok::<_, anyhow::Error>(((!removed.is_empty()).then_some(contents), removed))
        })
        .with_context(|| format!("cannot update {}", path.display()))?
    };
    if removed.is_empty() {
        bail!(
            "no key with fingerprint {fingerprint} in {} (see: noise-echo authorize --list)",
            path.display()
        );
    }
    let verb = if dry_run { "would remove" } else { "removed" };
    let mut stdout = std::io::stdout().lock();
    for line in removed {
        writeln!(
            stdout,
            "{verb} {}:{}: {}",
            path.display(),
            line.line,
            super::printable(&line.text)
        )?;
    }
    Ok(())
}

fn list(path: &Path) -> anyhow::Result<()> {
    let keys =
        AuthorizedKeys::load(path).with_context(|| format!("cannot read {}", path.display()))?;
    for warning in &keys.warnings {
        eprintln!("warning: {}", super::printable(&warning.to_string()));
    }
    let mut stdout = std::io::stdout().lock();
    if keys.entries.is_empty() {
        eprintln!("{}: no usable key: nobody can connect", path.display());
    }
    for entry in &keys.entries {
        let comment = if entry.comment.is_empty() {
            "no comment"
        } else {
            &entry.comment
        };
        write!(
            stdout,
            "256 {} {} (ED25519)",
            entry.key.fingerprint(),
            super::printable(comment)
        )?;
        if !entry.options.is_empty() {
            write!(stdout, " [{}]", super::printable(&entry.options))?;
        }
        writeln!(stdout)?;
    }
    Ok(())
}
