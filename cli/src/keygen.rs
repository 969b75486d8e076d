//! `noise-echo keygen`: make a new Ed25519 identity, as `ssh-keygen -t ed25519 -N ''`.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;

use crate::paths::IDENTITY_FILE;
use noise_echo::identity::Identity;
use noise_echo::openssh::keyfile;

#[derive(Debug, clap::Args)]
pub(super) struct Args {
    /// Private key file to write; the public key goes to FILE.pub
    /// [default: id_ed25519 in the noise-echo config directory]
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    file: Option<PathBuf>,
    /// Comment stored with the key [default: USER@HOSTNAME]
    #[arg(short = 'C', long = "comment", value_name = "COMMENT")]
    comment: Option<String>,
    /// Replace FILE and FILE.pub if they exist
    #[arg(long)]
    force: bool,
}

pub(super) fn run(args: Args) -> anyhow::Result<()> {
    let path = super::path_or_default(args.file, IDENTITY_FILE)?;
    let comment = args.comment.unwrap_or_else(default_comment);
    let identity = Identity::generate(comment);
    let public_path = keyfile::write_identity(&path, &identity, args.force)
        .context("cannot write the new key")?;
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

/// `user@host`, as ssh-keygen's default comment; empty parts are left out.
fn default_comment() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
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
