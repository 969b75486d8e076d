//! `serve --check`: everything `serve` would refuse at start (host key, host
//! certificate, the certificate trust and revocation files), and every line of
//! authorized_keys it would skip, found without listening or creating a file, as
//! `sshd -t`. Good news goes to stdout, problems to stderr; the exit status says
//! whether there was any problem.

use std::net::ToSocketAddrs;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use anyhow::Context;

use noise_echo::identity::Identity;
use noise_echo::openssh::authorized_keys::AuthorizedKeys;
use noise_echo::openssh::certificate::{format_time, Certificate};
use noise_echo::openssh::keyfile;
use noise_echo::openssh::revoked::RevokedKeys;
use noise_echo::openssh::trusted_user_ca::{AuthorizedPrincipals, TrustedUserCas};
use noise_echo::server::{Server, ServerConfig};
use noise_echo::wire::LocalIdentity;

use super::{Args, HostKey};
use crate::{ExitStatus, StatusError};

/// Runs every check, reports each finding, and fails (exit 1) if any is a problem.
pub(super) fn run(args: &Args, host_key: &HostKey, authorized_keys: &Path) -> anyhow::Result<()> {
    let mut problems = Vec::new();

    let path = host_key.path();
    let mut host_identity = None;
    match std::fs::symlink_metadata(path) {
        Ok(_) => match keyfile::read_identity(path) {
            Ok(identity) => {
                println!(
                    "host key {}: {}",
                    path.display(),
                    identity.public_key().fingerprint()
                );
                host_identity = Some(identity);
            }
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

    if let Some(identity) = host_identity {
        check_host_certificate(args, path, &identity, &mut problems);
    }
    check_trust_files(args, &mut problems);

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
        stderr_line!("problem: {problem}");
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

/// The host certificate `serve` would present (`--host-certificate`, or the one
/// beside the host key), judged as at start.
fn check_host_certificate(
    args: &Args,
    host_key: &Path,
    identity: &Identity,
    problems: &mut Vec<String>,
) {
    match super::host_certificate::attach(
        args.host_certificate.as_deref(),
        host_key,
        LocalIdentity::new(identity),
        SystemTime::now(),
    ) {
        Ok((host, Some(file))) => match host.certificate().map(Certificate::from_blob) {
            Some(Ok(certificate)) => println!(
                "host certificate {}: key ID \"{}\", serial {}, principals {}, valid until {}",
                file.display(),
                certificate.key_id,
                certificate.serial,
                certificate.principals.join(","),
                format_time(certificate.valid_before)
            ),
            _ => println!("host certificate {}", file.display()),
        },
        Ok((_, None)) => println!("host certificate: none (clients trust the host key itself)"),
        Err(error) => problems.push(format!("{error:#}")),
    }
}

/// The certificate trust files (`--trusted-user-ca-keys`, `--authorized-principals`)
/// and `--revoked-keys`, read as `serve` reads them: a revoked-keys file that cannot
/// be read refuses every client, and a line skipped is a problem to fix.
fn check_trust_files(args: &Args, problems: &mut Vec<String>) {
    if let Some(path) = &args.trusted_user_ca_keys {
        match TrustedUserCas::load(path) {
            Ok(cas) => {
                println!(
                    "trusted user CA keys {}: {} CA {}",
                    path.display(),
                    cas.keys.len(),
                    if cas.keys.len() == 1 { "key" } else { "keys" }
                );
                if cas.keys.is_empty() {
                    problems.push(format!(
                        "trusted user CA keys {}: no CA key, so no certificate is admitted by it",
                        path.display()
                    ));
                }
                problems.extend(cas.warnings.iter().map(ToString::to_string));
            }
            Err(error) => problems.push(format!(
                "cannot read the trusted user CA keys {}: {error}",
                path.display()
            )),
        }
    }
    if let Some(path) = &args.authorized_principals {
        match AuthorizedPrincipals::load(path) {
            Ok(principals) => {
                println!(
                    "authorized principals {}: {} {}",
                    path.display(),
                    principals.names.len(),
                    if principals.names.len() == 1 {
                        "principal"
                    } else {
                        "principals"
                    }
                );
                if principals.names.is_empty() {
                    problems.push(format!(
                        "authorized principals {}: no principal, so no certificate is admitted by a trusted CA",
                        path.display()
                    ));
                }
                problems.extend(principals.warnings.iter().map(ToString::to_string));
            }
            Err(error) => problems.push(format!(
                "cannot read the authorized principals {}: {error}",
                path.display()
            )),
        }
    }
    if let Some(path) = &args.revoked_keys {
        match RevokedKeys::load(path) {
            Ok(revoked) => {
                match revoked.krl() {
                    Some(_) => println!("revoked keys {}: an OpenSSH KRL", path.display()),
                    None => println!(
                        "revoked keys {}: {} keys listed",
                        path.display(),
                        revoked.listed_keys()
                    ),
                }
                problems.extend(revoked.warnings.iter().map(ToString::to_string));
            }
            Err(error) => problems.push(format!("{error}: every client would be refused")),
        }
    }
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
