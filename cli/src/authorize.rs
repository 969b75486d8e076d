//! `noise-echo authorize`: manage the server's authorized_keys, as `ssh-copy-id` does
//! for sshd, plus listing and revoking.
//!
//! KEY arguments are read as authorized_keys text, so a `.pub` file, a forge's
//! `USER.keys`, a key line and a key line with options (`from="..." ssh-ed25519 ...`)
//! all work. Their ssh-ed25519 keys are added. A line of another key type is skipped
//! with one warning. Anything else (a malformed line, or an option noise-echo would
//! not trust) fails the run before anything is written.
//!
//! Every change is a read-modify-write under an exclusive lock, written to a temporary
//! file, fsynced and renamed, so two runs at the same moment both land and a crash
//! never leaves a half-written file. A running server sees the change on its next
//! connection.

use std::collections::BTreeSet;
use std::ffi::{OsStr, OsString};
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{bail, Context};

use crate::paths::AUTHORIZED_KEYS_FILE;
use noise_echo::fsutil;
use noise_echo::identity::{Fingerprint, PublicKey};
use noise_echo::openssh::authorized_keys::{self, AuthorizedKeys, Expiry, UntrustedReason};
use noise_echo::openssh::keyfile::PRIVATE_KEY_MODE;
use noise_echo::openssh::lexer;
use noise_echo::openssh::pattern::AddressPatterns;

/// Shown after the options in `authorize --help`.
const AFTER_HELP: &str = "\
Examples:
  noise-echo authorize ann.pub
  curl -s https://github.com/ann.keys | noise-echo authorize --from 10.0.0.0/8 -
  noise-echo authorize --expires 20271231 'restrict ssh-ed25519 AAAA... ann@laptop'
  noise-echo authorize --list
  noise-echo authorize --remove SHA256:Hl89vtBpmaia3eHr2UYTwpPBkibZvlcqHiBxDI2sa0w old.pub

Exit status:
  0  every ssh-ed25519 key given is now present (lines of other key types are
     skipped with a warning); --remove removed at least one line (keys that
     matched nothing are warned about); --list printed the file
  1  nothing to add (no ssh-ed25519 key), a malformed key line, an option noise-echo
     would not trust (command=, ...), a bad --from or --expires, nothing removed, or
     a file that cannot be read or written: nothing was changed
  2  bad usage";

#[derive(Debug, clap::Args)]
#[command(after_help = AFTER_HELP)]
pub(super) struct Args {
    /// Public keys to add: a .pub or keys file (such as a forge's USER.keys; other key types are skipped with a warning), a key line ('ssh-ed25519 AAAA... comment', options allowed: 'from="10.0.0.0/8" ssh-ed25519 ...'), or - for stdin
    #[arg(value_name = "KEY", required_unless_present_any = ["list", "remove"], conflicts_with_all = ["list", "remove"])]
    keys: Vec<OsString>,
    /// The authorized_keys file [default: authorized_keys in the noise-echo config directory]
    #[arg(long, value_name = "FILE")]
    authorized_keys: Option<PathBuf>,
    /// Show every key line with its fingerprint and comment, as ssh-keygen -lf, marking expired and untrusted ones and the principals of cert-authority lines
    #[arg(long, conflicts_with = "remove")]
    list: bool,
    /// Remove every line holding these keys: fingerprints (SHA256:...), .pub or keys files, key lines, or - for stdin
    #[arg(long, value_name = "KEY", num_args = 1..)]
    remove: Vec<OsString>,
    /// Accept the added keys only from these client addresses (sshd's from="PATTERNS", e.g. 10.0.0.0/8,!10.0.9.*)
    #[arg(long, value_name = "PATTERNS", conflicts_with_all = ["list", "remove"])]
    from: Option<String>,
    /// Refuse the added keys after this instant, read as UTC (sshd's expiry-time)
    #[arg(long, value_name = "YYYYMMDD[HHMM[SS]]", conflicts_with_all = ["list", "remove"])]
    expires: Option<String>,
    /// Show what would change without changing anything
    #[arg(long, conflicts_with = "list")]
    dry_run: bool,
}

pub(super) fn run(args: Args) -> anyhow::Result<()> {
    let path = super::path_or_default(args.authorized_keys, AUTHORIZED_KEYS_FILE)?;
    // Before reading keys from stdin: a FIFO or a directory fails now.
    fsutil::check_updatable(&path).context("cannot use the authorized_keys file")?;
    if args.list {
        return list(&path);
    }
    if !args.remove.is_empty() {
        let fingerprints = fingerprints_to_remove(&args.remove)?;
        return remove(&path, &fingerprints, args.dry_run);
    }
    let extra = ExtraOptions::parse(args.from.as_deref(), args.expires.as_deref())?;
    let keys = keys_to_add(&args.keys, &extra)?;
    add(&path, &keys, args.dry_run)
}

/// The options `--from` and `--expires` put on every added line, validated.
#[derive(Default)]
struct ExtraOptions {
    /// `from="..."`, as given.
    from: Option<String>,
    /// `expiry-time="...Z"`: written with the `Z`, so that sshd (which reads a
    /// timespec without it in local time) and noise-echo agree on the instant.
    expires: Option<String>,
}

impl ExtraOptions {
    fn parse(from: Option<&str>, expires: Option<&str>) -> anyhow::Result<Self> {
        let mut extra = Self::default();
        if let Some(from) = from {
            if from.contains(['"', ' ', '\t', '\r', '\n']) {
                bail!(
                    "--from {from:?}: a pattern list has no quotes or blanks \
                     (example: --from 10.0.0.0/8,!10.0.9.*,192.0.2.7)"
                );
            }
            AddressPatterns::parse(from).with_context(|| {
                format!("--from {from:?} is not a valid pattern list (example: --from 10.0.0.0/8,192.0.2.7)")
            })?;
            extra.from = Some(from.to_owned());
        }
        if let Some(expires) = expires {
            let expiry = Expiry::parse(expires).map_err(|error| {
                anyhow::anyhow!("--expires: {error} (example: --expires 20271231 or 202712311800)")
            })?;
            if expiry.has_passed(SystemTime::now()) {
                bail!(
                    "--expires {expires}: {expiry} is already past, so the key would be refused at once"
                );
            }
            // The canonical YYYYMMDDHHMMSSZ form of the same instant.
            let digits: String = expiry
                .to_string()
                .chars()
                .filter(char::is_ascii_digit)
                .collect();
            extra.expires = Some(format!("{digits}Z"));
        }
        Ok(extra)
    }
}

/// The text of one KEY argument, and how to name it in messages.
struct Source {
    /// The file name, `standard input` or `the command line`.
    name: String,
    /// Its contents.
    bytes: Vec<u8>,
}

/// Reads a KEY argument: `-` for stdin, a key line, or a file. Arguments need not
/// be UTF-8: a key line's comment may be Latin-1, and so may a file name.
fn read_source(argument: &OsStr) -> anyhow::Result<Source> {
    let shown = argument.to_string_lossy();
    if argument == "-" {
        let mut bytes = Vec::new();
        std::io::stdin()
            .lock()
            .read_to_end(&mut bytes)
            .context("cannot read keys from standard input")?;
        return Ok(Source {
            name: "standard input".to_owned(),
            bytes,
        });
    }
    if looks_like_key_line(&shown) {
        return Ok(Source {
            name: "the command line".to_owned(),
            bytes: argument.as_bytes().to_vec(),
        });
    }
    let bytes = noise_echo::fsutil::read_regular(Path::new(argument)).with_context(|| {
        format!("cannot read {shown} (KEY must be a .pub file, a key line, or - for stdin)")
    })?;
    if String::from_utf8_lossy(&bytes)
        .trim_start()
        .starts_with("-----BEGIN")
    {
        bail!("{shown} is a private key: pass the public key ({shown}.pub) instead");
    }
    Ok(Source {
        name: shown.into_owned(),
        bytes,
    })
}

/// Whether a KEY argument is a key line rather than a file name: its first field,
/// or its second after an options field, is an OpenSSH key type (so `sk-` and
/// certificate types count too, to be skipped with a warning).
fn looks_like_key_line(argument: &str) -> bool {
    lexer::fields(argument)
        .take(2)
        .any(lexer::is_known_key_type)
}

/// What the keys of a source are read for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Purpose {
    /// To be added: a line noise-echo would not trust is an error.
    Add,
    /// To be removed: any line naming a key names it.
    Remove,
}

/// The keys of one source: its ssh-ed25519 keys, and a warning per line of another
/// key type.
///
/// # Errors
/// A malformed line, or (to add) a line with an option noise-echo would not trust:
/// both fail the whole run, as the user asked for something that would not work.
fn keys_in_source(
    source: &Source,
    purpose: Purpose,
) -> anyhow::Result<(AuthorizedKeys, Vec<String>)> {
    let parsed = AuthorizedKeys::parse(&source.bytes, Path::new(&source.name));
    if let Some(untrusted) = parsed.untrusted.first().filter(|_| purpose == Purpose::Add) {
        let at = format!("{}:{}", source.name, untrusted.line);
        match &untrusted.reason {
            UntrustedReason::Malformed(reason) => bail!(
                "{at}: not a usable public key: {}",
                super::printable(reason)
            ),
            reason => bail!(
                "{at}: noise-echo would not trust this key line because of {}: \
                 remove the option (or give the key without it)",
                super::printable(&reason.to_string())
            ),
        }
    }
    let other_types: BTreeSet<usize> = parsed
        .other_key_types
        .iter()
        .map(|other| other.line)
        .collect();
    let untrusted: BTreeSet<usize> = parsed.untrusted.iter().map(|entry| entry.line).collect();
    let mut warnings = Vec::new();
    for warning in &parsed.warnings {
        if other_types.contains(&warning.line) {
            warnings.push(warning.to_string());
            continue;
        }
        if untrusted.contains(&warning.line) {
            continue;
        }
        let reason = warning
            .message
            .strip_prefix("malformed line skipped: ")
            .or_else(|| {
                warning
                    .message
                    .strip_prefix("malformed options, line skipped: ")
            })
            .unwrap_or(&warning.message);
        bail!(
            "{}:{}: not a usable public key: {}",
            source.name,
            warning.line,
            super::printable(reason)
        );
    }
    Ok((parsed, warnings))
}

/// A key to add, with the line to write for it.
struct NewKey {
    /// The key, to find it in the file.
    key: PublicKey,
    /// Its comment, for messages.
    comment: String,
    /// The authorized_keys line to append: options, key and comment.
    line: String,
}

/// Reads every KEY argument; any bad one fails the whole run before anything is
/// written. Lines of other key types are skipped with a warning each.
fn keys_to_add(arguments: &[OsString], extra: &ExtraOptions) -> anyhow::Result<Vec<NewKey>> {
    let mut keys = Vec::new();
    let mut warnings = Vec::new();
    let mut names = Vec::new();
    for argument in arguments {
        let source = read_source(argument)?;
        let (parsed, skipped) = keys_in_source(&source, Purpose::Add)?;
        warnings.extend(skipped);
        for entry in &parsed.entries {
            let mut options = Vec::new();
            if !entry.options.is_empty() {
                options.push(entry.options.clone());
            }
            let at = format!("{}:{}", source.name, entry.line);
            if let Some(from) = &extra.from {
                if entry.from.is_some() {
                    bail!("{at}: the line already has a from= option: give it or --from, not both");
                }
                options.push(format!("from=\"{from}\""));
            }
            if let Some(expires) = &extra.expires {
                if entry.expiry.is_some() {
                    bail!("{at}: the line already has an expiry-time= option: give it or --expires, not both");
                }
                options.push(format!("expiry-time=\"{expires}\""));
            }
            let comment = entry.comment.trim().to_owned();
            let key_line = entry.key.to_openssh_line(&comment);
            let line = if options.is_empty() {
                key_line
            } else {
                format!("{} {key_line}", options.join(","))
            };
            // What is written must be what the server will read.
            let check = AuthorizedKeys::parse(line.as_bytes(), Path::new(&at));
            if check.entries.len() != 1 {
                let why = check
                    .warnings
                    .first()
                    .map_or_else(String::new, ToString::to_string);
                bail!("{at}: the line to add would not be trusted: {why}");
            }
            keys.push(NewKey {
                key: entry.key,
                comment,
                line,
            });
        }
        names.push(source.name);
    }
    for warning in &warnings {
        stderr_line!("warning: {}", super::printable(warning));
    }
    if keys.is_empty() {
        bail!(
            "no ssh-ed25519 key in {}: noise-echo only uses ssh-ed25519 keys (make one with: noise-echo keygen, or ssh-keygen -t ed25519)",
            names.join(", ")
        );
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
                // Options asked for (on the line or by flag) are not merged into the
                // existing line: that would change a restriction someone wrote.
                let unchanged = if new.line == new.key.to_openssh_line(&new.comment) {
                    ""
                } else {
                    "; its options were not changed (remove it first to change them)"
                };
                messages.push(format!(
                    "already present: {} (line {}){unchanged}",
                    label.trim_end(),
                    existing.line
                ));
                continue;
            }
            contents = authorized_keys::append_line(&contents, &new.line);
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

/// The keys `--remove` names: fingerprints as given, and the keys of key lines and
/// files (of any type: a line `--list` shows can be removed), without repeats.
fn fingerprints_to_remove(values: &[OsString]) -> anyhow::Result<Vec<Fingerprint>> {
    let mut fingerprints: Vec<Fingerprint> = Vec::new();
    let mut push = |fingerprint: Fingerprint| {
        if !fingerprints.contains(&fingerprint) {
            fingerprints.push(fingerprint);
        }
    };
    for value in values {
        let shown = value.to_string_lossy();
        if shown.starts_with("SHA256:") {
            push(shown.parse::<Fingerprint>()?);
            continue;
        }
        let source = read_source(value).with_context(|| {
            format!("--remove {shown}: not a fingerprint (SHA256:...), a key line or a readable key file")
        })?;
        let (parsed, _) = keys_in_source(&source, Purpose::Remove)?;
        let others = parsed
            .other_key_types
            .iter()
            .filter_map(|other| other.fingerprint.as_deref()?.parse::<Fingerprint>().ok());
        let found: Vec<Fingerprint> = parsed
            .entries
            .iter()
            .map(|entry| entry.key.fingerprint())
            .chain(parsed.untrusted.iter().map(|entry| entry.key.fingerprint()))
            .chain(others)
            .collect();
        if found.is_empty() {
            bail!("--remove {shown}: no key in {}", source.name);
        }
        found.into_iter().for_each(&mut push);
    }
    Ok(fingerprints)
}

fn remove(path: &Path, fingerprints: &[Fingerprint], dry_run: bool) -> anyhow::Result<()> {
    if !path.exists() {
        bail!("{} does not exist, so no key is authorized", path.display());
    }
    let removed = if dry_run {
        authorized_keys::remove_keys(&read_if_exists(path)?, fingerprints).1
    } else {
        fsutil::update_locked(path, PRIVATE_KEY_MODE, |old| {
            let (contents, removed) = authorized_keys::remove_keys(old, fingerprints);
            Ok::<_, anyhow::Error>(((!removed.is_empty()).then_some(contents), removed))
        })
        .with_context(|| format!("cannot update {}", path.display()))?
    };
    let missing: Vec<&Fingerprint> = fingerprints
        .iter()
        .filter(|fingerprint| !removed.iter().any(|line| line.fingerprint == **fingerprint))
        .collect();
    if removed.is_empty() {
        match missing.as_slice() {
            [only] => bail!(
                "no key with fingerprint {only} in {} (see: noise-echo authorize --list)",
                path.display()
            ),
            _ => bail!(
                "none of the {} keys is in {} (see: noise-echo authorize --list)",
                missing.len(),
                path.display()
            ),
        }
    }
    for fingerprint in missing {
        stderr_line!(
            "warning: no key with fingerprint {fingerprint} in {}",
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

/// `256 SHA256:... comment (ED25519)`, as `ssh-keygen -lf` prints a key.
fn key_columns(bits: Option<u32>, fingerprint: Option<&str>, comment: &str, label: &str) -> String {
    let comment = if comment.is_empty() {
        "no comment"
    } else {
        comment
    };
    let bits = bits.map_or_else(|| "?".to_owned(), |bits| bits.to_string());
    format!(
        "{bits} {} {} ({label})",
        fingerprint.unwrap_or("?"),
        super::printable(comment)
    )
}

fn list(path: &Path) -> anyhow::Result<()> {
    let keys =
        AuthorizedKeys::load(path).with_context(|| format!("cannot read {}", path.display()))?;
    for warning in &keys.warnings {
        stderr_line!("warning: {}", super::printable(&warning.to_string()));
    }
    let now = SystemTime::now();
    let mut rows: Vec<(usize, String)> = Vec::new();
    let with_options = |mut row: String, options: &str| {
        if !options.is_empty() {
            row.push_str(&format!(" [{}]", super::printable(options)));
        }
        row
    };
    let mut usable = 0;
    for entry in &keys.entries {
        let fingerprint = entry.key.fingerprint().to_string();
        let mut row = with_options(
            key_columns(Some(256), Some(&fingerprint), &entry.comment, "ED25519"),
            &entry.options,
        );
        match entry.expiry {
            Some(expiry) if expiry.has_passed(now) => {
                row.push_str(&format!(" [expired {expiry}]"));
            }
            _ => usable += 1,
        }
        rows.push((entry.line, row));
    }
    // cert-authority lines: the CA key, then whose user certificates it vouches for.
    for authority in keys.cert_authorities.iter() {
        let fingerprint = authority.key.fingerprint().to_string();
        let mut row = with_options(
            key_columns(Some(256), Some(&fingerprint), &authority.comment, "ED25519"),
            &authority.options,
        );
        let principals: Vec<String> = authority
            .principals
            .iter()
            .map(|principal| super::printable(principal).into_owned())
            .collect();
        // Its from= and expiry-time= are in the options shown: they apply to every
        // certificate the line admits.
        row.push_str(&format!(
            " [CA: user certificates for principals {}]",
            principals.join(", ")
        ));
        match authority.expiry {
            Some(expiry) if expiry.has_passed(now) => {
                row.push_str(&format!(" [expired {expiry}]"));
            }
            _ => usable += 1,
        }
        rows.push((authority.line, row));
    }
    for entry in &keys.untrusted {
        let fingerprint = entry.key.fingerprint().to_string();
        let why = match &entry.reason {
            UntrustedReason::Unsupported(options) => {
                let names: Vec<String> = options.iter().map(ToString::to_string).collect();
                let noun = if names.len() == 1 {
                    "option"
                } else {
                    "options"
                };
                format!("{} {noun}", names.join(", "))
            }
            _ => "malformed options".to_owned(),
        };
        let row = with_options(
            key_columns(Some(256), Some(&fingerprint), &entry.comment, "ED25519"),
            &entry.options,
        );
        rows.push((
            entry.line,
            format!("{row} [untrusted: {}]", super::printable(&why)),
        ));
    }
    for other in &keys.other_key_types {
        let row = key_columns(
            other.bits,
            other.fingerprint.as_deref(),
            &other.comment,
            &other.label,
        );
        rows.push((
            other.line,
            format!(
                "{row} [untrusted: {} key]",
                super::printable(&other.key_type)
            ),
        ));
    }
    rows.sort_by_key(|(line, _)| *line);
    if usable == 0 {
        stderr_line!("{}: no usable key: nobody can connect", path.display());
    }
    let mut stdout = std::io::stdout().lock();
    for (_, row) in rows {
        writeln!(stdout, "{row}")?;
    }
    Ok(())
}
