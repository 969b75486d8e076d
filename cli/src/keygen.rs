//! `noise-echo keygen`: make a new Ed25519 identity with the flags ssh-keygen users
//! type (`-t ed25519 -f FILE -C COMMENT -N PASSPHRASE -q`), or print the public key of
//! a private key (`-y`).
//!
//! On a terminal it asks for a passphrase twice, as ssh-keygen does; without one (a
//! script, the demo, the benchmarks) and without `-N` it writes an unencrypted key.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use zeroize::Zeroizing;

use crate::passphrase;
use crate::paths::IDENTITY_FILE;
use noise_echo::identity::Identity;
use noise_echo::openssh::keyfile::{self, KeyFileError};

/// How many times a new passphrase may be mistyped before keygen gives up.
const NEW_PASSPHRASE_ATTEMPTS: u32 = 3;

#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES, after_long_help = HELP)]
pub(super) struct Args {
    /// Private key file to write (or to read, with -y); the public key goes to FILE.pub
    /// [default: id_ed25519 in the noise-echo config directory]
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    file: Option<PathBuf>,
    /// Comment stored with the key [default: USER@HOSTNAME]
    #[arg(short = 'C', long = "comment", value_name = "COMMENT")]
    comment: Option<String>,
    /// Key type: only ed25519, accepted for ssh-keygen's habit
    #[arg(short = 't', value_name = "TYPE", default_value = "ed25519", value_parser = parse_key_type)]
    key_type: KeyType,
    /// Passphrase for the new key ('' for none) [default: asked on a terminal, none otherwise]
    #[arg(short = 'N', value_name = "PASSPHRASE")]
    new_passphrase: Option<String>,
    /// Print nothing on success
    #[arg(short = 'q')]
    quiet: bool,
    /// Print the public key line of the private key FILE instead of making a key
    #[arg(short = 'y', conflicts_with_all = ["comment", "new_passphrase", "force"])]
    print_public: bool,
    /// With -y: the passphrase of FILE, if it has one [default: asked as ssh asks]
    #[arg(short = 'P', value_name = "PASSPHRASE", requires = "print_public")]
    old_passphrase: Option<String>,
    /// Replace FILE and FILE.pub if they exist
    #[arg(long)]
    force: bool,
}

/// The one key type noise-echo makes; `-t` exists so ssh-keygen's habit works.
#[derive(Debug, Clone, Copy)]
pub(super) struct KeyType;

fn parse_key_type(name: &str) -> Result<KeyType, String> {
    match name.to_ascii_lowercase().as_str() {
        "ed25519" | "ssh-ed25519" => Ok(KeyType),
        _ => Err(format!(
            "noise-echo keys are Ed25519 only: the Noise handshake's X25519 key is derived from \
             the Ed25519 key, so {name} cannot be used (use -t ed25519, or leave -t out)"
        )),
    }
}

/// The end of `-h`: examples.
const EXAMPLES: &str = "Examples:
  noise-echo keygen                          # ~/.config/noise-echo/id_ed25519, asks for a passphrase on a terminal
  noise-echo keygen -t ed25519 -N '' -f robot -C robot@ci
  noise-echo keygen -y -f ~/.ssh/id_ed25519   # print the public key line";

/// The end of `--help`: examples and exit statuses.
const HELP: &str = "Examples:
  noise-echo keygen                          # ~/.config/noise-echo/id_ed25519, asks for a passphrase on a terminal
  noise-echo keygen -t ed25519 -N '' -f robot -C robot@ci
  noise-echo keygen -y -f ~/.ssh/id_ed25519   # print the public key line

Exit statuses:
  0  the key was written (with -y: the public key printed)
  1  an error: the file exists (without --force), its directory is missing, a wrong
     passphrase, a write failed
  2  the command line could not be parsed, or -t names another key type";

pub(super) fn run(args: Args) -> anyhow::Result<()> {
    // -t was checked by its parser: ed25519 is the only type there is.
    let _ = args.key_type;
    if args.print_public {
        return print_public_key(args);
    }
    let path = match args.file {
        Some(path) => {
            refuse_missing_directory(&path)?;
            path
        }
        None => {
            // Only the default directory is created, as ssh-keygen creates ~/.ssh.
            let path = crate::paths::default_file(IDENTITY_FILE)?;
            let dir = crate::paths::config_dir()?;
            noise_echo::fsutil::create_private_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            path
        }
    };
    if !args.force {
        // Before asking for a passphrase: typing one for nothing is no help.
        for existing in [path.clone(), keyfile::public_key_path(&path)] {
            if std::fs::symlink_metadata(&existing).is_ok() {
                return Err(KeyFileError::AlreadyExists { path: existing })
                    .context("cannot write the new key");
            }
        }
    }
    let new_passphrase = match args.new_passphrase {
        Some(given) => Some(Zeroizing::new(given)),
        None if std::io::stdin().is_terminal() => ask_new_passphrase()?,
        None => None,
    };
    let comment = args.comment.unwrap_or_else(default_comment);
    let identity = Identity::generate(comment);
    let public_path = keyfile::write_identity_with_passphrase(
        &path,
        &identity,
        args.force,
        new_passphrase.as_deref().map(String::as_str),
    )
    .context("cannot write the new key")?;
    if args.quiet {
        return Ok(());
    }
    let public_key = identity.public_key();
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "Wrote private key: {}", path.display())?;
    writeln!(stdout, "Wrote public key:  {}", public_path.display())?;
    writeln!(
        stdout,
        "Fingerprint: {} {}",
        public_key.fingerprint(),
        identity.comment()
    )?;
    writeln!(stdout, "{}", public_key.to_openssh_line(identity.comment()))?;
    Ok(())
}

/// ssh-keygen's refusal of `-f missing/dir/key`: keys are never scattered into
/// directories made by a typo.
fn refuse_missing_directory(path: &Path) -> anyhow::Result<()> {
    let parent = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => return Ok(()),
    };
    if parent.is_dir() {
        return Ok(());
    }
    bail!(
        "Saving key \"{}\" failed: No such file or directory (create the directory first: mkdir -p {})",
        path.display(),
        parent.display()
    )
}

/// Asks twice on the terminal, as ssh-keygen does; an empty passphrase means none.
fn ask_new_passphrase() -> anyhow::Result<Option<Zeroizing<String>>> {
    let ask = |prompt: &str| passphrase::ask_terminal(prompt).map_err(anyhow::Error::msg);
    for _ in 0..NEW_PASSPHRASE_ATTEMPTS {
        let first = ask("Enter passphrase (empty for no passphrase): ")?;
        let second = ask("Enter same passphrase again: ")?;
        if first.as_deref() == second.as_deref() {
            return Ok(first);
        }
        stderr_line!("Passphrases do not match.  Try again.");
    }
    bail!("the passphrases did not match {NEW_PASSPHRASE_ATTEMPTS} times; no key was written")
}

/// `-y`: the public key line of a private key, as `ssh-keygen -y -f FILE` prints it.
/// An encrypted key's comment is encrypted too, so its passphrase is asked for (as
/// ssh-keygen does) unless the key is not ed25519, whose public half is printed alone.
fn print_public_key(args: Args) -> anyhow::Result<()> {
    let path = super::path_or_default(args.file, IDENTITY_FILE)?;
    let text = Zeroizing::new(
        noise_echo::fsutil::read_regular(&path)
            .map_err(anyhow::Error::from)
            .and_then(|bytes| String::from_utf8(bytes).map_err(anyhow::Error::from))
            .with_context(|| format!("cannot read {}", path.display()))?,
    );
    let public = keyfile::parse_public_half(&text, &path)?;
    let line = if public.algorithm().is_ed25519() {
        let identity = match args.old_passphrase {
            Some(given) => {
                let mut once = Some(Zeroizing::new(given));
                // -P is one answer: asked again means it was wrong.
                keyfile::read_identity_with_passphrase(&path, &mut |_| Ok(once.take())).map_err(
                    |error| match error {
                        KeyFileError::NoPassphraseGiven { path } => {
                            KeyFileError::WrongPassphrase { path, attempts: 1 }
                        }
                        other => other,
                    },
                )?
            }
            None => keyfile::read_identity_with_passphrase(&path, &mut passphrase::for_key)?,
        };
        identity.public_key().to_openssh_line(identity.comment())
    } else {
        public.to_openssh()?
    };
    writeln!(std::io::stdout().lock(), "{line}")?;
    Ok(())
}

/// `user@host`, as ssh-keygen's default comment; empty parts are left out. The user
/// is `$USER`, else the password database's entry for our uid (containers and cron
/// often have no `$USER`), else `$LOGNAME`.
fn default_comment() -> String {
    let from_env = |name: &str| std::env::var(name).ok().filter(|value| !value.is_empty());
    let user = from_env("USER")
        .or_else(user_from_password_database)
        .or_else(|| from_env("LOGNAME"))
        .unwrap_or_default();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|name| name.trim().to_owned())
        .unwrap_or_default();
    match (user.is_empty(), host.is_empty()) {
        (false, false) => format!("{user}@{host}"),
        (false, true) => user,
        (true, false) => host,
        (true, true) => String::new(),
    }
}

/// The name of our real uid in the password database (getpwuid_r, through NSS).
fn user_from_password_database() -> Option<String> {
    nix::unistd::User::from_uid(nix::unistd::getuid())
        .ok()
        .flatten()
        .map(|user| user.name)
        .filter(|name| !name.is_empty())
}
