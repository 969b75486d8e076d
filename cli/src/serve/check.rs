//! `serve --check`: everything `serve` would refuse at start, and every line of
//! authorized_keys it would skip, found without listening or creating a file, as
//! `sshd -t`. Good news goes to stdout, problems to stderr; the exit status says
//! whether there was any problem.

use std::net::ToSocketAddrs;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;

use noise_echo::identity::Identity;
use noise_echo::openssh::authorized_keys::AuthorizedKeys;
use noise_echo::openssh::keyfile;
use noise_echo::server::{Server, ServerConfig};
use noise_echo::wire::LocalIdentity;

use super::{Args, HostKey};
use crate::{ExitStatus, StatusError};

/// Runs every check, reports each finding, and fails (exit 1) if any is a problem.
pub(super) fn run(args: &Args, host_key: &HostKey, authorized_keys: &Path) -> anyhow::Result<()> {
    let mut problems = Vec::new();

    let path = host_key.path();
    match std::fs::symlink_metadata(path) {
        Ok(_) => match keyfile::read_identity(path) {
            Ok(identity) => println!(
                "host key {}: {}",
                path.display(),
                identity.public_key().fingerprint()
            ),
            Err(error @ keyfile::KeyFileError::PassphraseProtected { .. }) => problems.push(
                format!("host key: {error} (a host key must not have one, as for sshd: the server starts with nobody to type it)"),
            ),
            Err(error) => problems.push(format!("host key: {error}")),
        },
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => match host_key {
            HostKey::MustExist(_) => problems.push(format!(
                "no host key at {path} (create one with: noise-echo keygen -f {path} -N '', \
                 or pass --create-host-key, or run serve without --host-key)",
                path = path.display()
            )),
            HostKey::Default(_) | HostKey::CreateIfMissing(_) => println!(
                "host key {}: does not exist yet; serve creates it on first start",
                path.display()
            ),
        },
        Err(error) => problems.push(format!("host key {}: {error}", path.display())),
    }

    for listen in &args.listen {
        check_listen(listen, &mut problems);
    }
    if args.listen.is_empty() {
        check_listen(super::DEFAULT_LISTEN, &mut problems);
    }

    // The limits, checked by the library exactly as `serve` would; the identity is
    // a stand-in, since the real one may not exist yet.
    let stand_in = Identity::generate("serve --check");
    let mut config = ServerConfig::new(
        Arc::new(LocalIdentity::new(&stand_in)),
        authorized_keys.to_path_buf(),
    );
    super::apply_settings(args, &mut config);
    match Server::new(config) {
        Ok(server) => {
            println!("settings: valid");
            check_allow_list(&server, authorized_keys, &mut problems)?;
        }
        Err(error) => {
            problems.push(format!("{:#}", super::settings_error(error)));
            // The file is still worth checking, under the same StrictModes.
            let mut config = ServerConfig::new(
                Arc::new(LocalIdentity::new(&stand_in)),
                authorized_keys.to_path_buf(),
            );
            config.strict_modes = args.strict_modes;
            let server = Server::new(config).context("the default settings are invalid")?;
            check_allow_list(&server, authorized_keys, &mut problems)?;
        }
    }

    if problems.is_empty() {
        return Ok(());
    }
    for problem in &problems {
        eprintln!("problem: {problem}");
    }
    Err(StatusError {
        status: ExitStatus::Failure,
        message: format!(
            "the check found {} {}",
            problems.len(),
            if problems.len() == 1 {
                "problem"
            } else {
                "problems"
            }
        ),
    }
    .into())
}

/// One `--listen` value, read as `serve` reads it (`:PORT` for every address, else
/// `HOST:PORT` resolved), without binding.
fn check_listen(listen: &str, problems: &mut Vec<String>) {
    if let Some(port) = listen.strip_prefix(':') {
        match port.parse::<u16>() {
            Ok(port) => println!("listen {listen}: 0.0.0.0:{port} and [::]:{port}"),
            Err(_) => problems.push(format!(
                "--listen {listen}: the port must be a number from 0 to 65535 (as in :1234)"
            )),
        }
        return;
    }
    match listen.to_socket_addrs() {
        Ok(addresses) => {
            let addresses: Vec<String> = addresses.map(|address| address.to_string()).collect();
            if addresses.is_empty() {
                problems.push(format!("--listen {listen}: resolves to no address"));
            } else {
                println!("listen {listen}: {}", addresses.join(", "));
            }
        }
        Err(error) => problems.push(format!(
            "--listen {listen}: {error} (expected HOST:PORT, [IPv6]:PORT or :PORT, e.g. 127.0.0.1:1234)"
        )),
    }
}

/// authorized_keys as `serve` would take it at start (a regular file or /dev/null,
/// safe under `--strict-modes`), then each line it would skip.
fn check_allow_list(
    server: &Server,
    authorized_keys: &Path,
    problems: &mut Vec<String>,
) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    match runtime.block_on(server.load_allow_list()) {
        Ok(_) => {}
        Err(error) if error.is_missing() => {
            problems.push(format!(
                "authorized_keys {} does not exist: every client would be refused \
                 (add keys with: noise-echo authorize --authorized-keys {} KEY)",
                authorized_keys.display(),
                authorized_keys.display()
            ));
            return Ok(());
        }
        Err(error) => {
            problems.push(format!("authorized_keys: {error}"));
            return Ok(());
        }
    }
    // Usable, so a regular file or /dev/null: reading it cannot block.
    let keys = match AuthorizedKeys::load(authorized_keys) {
        Ok(keys) => keys,
        Err(error) => {
            problems.push(format!(
                "authorized_keys {}: {error}",
                authorized_keys.display()
            ));
            return Ok(());
        }
    };
    let count = keys.entries.len();
    println!(
        "authorized_keys {}: {count} trusted {}",
        authorized_keys.display(),
        if count == 1 { "key" } else { "keys" }
    );
    for warning in &keys.warnings {
        let other_key_type = keys
            .other_key_types
            .iter()
            .any(|other| other.line == warning.line);
        if other_key_type {
            // A file shared with sshd holds RSA and ECDSA keys: not a problem.
            println!("note: {warning}");
        } else {
            problems.push(warning.to_string());
        }
    }
    Ok(())
}
