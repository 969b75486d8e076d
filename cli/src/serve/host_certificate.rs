//! `serve --host-certificate`: the OpenSSH host certificate the server presents in
//! protocol v2's message 2, so that clients trusting its CA (`@cert-authority` in
//! known_hosts) accept the host without a first-use prompt, and its key can rotate.
//!
//! As sshd's `HostCertificate`, read beside the host key by default
//! (`<host key>-cert.pub`) when that file exists. A certificate that is named or
//! found but cannot serve (unreadable, not a certificate, a user certificate, for
//! another key, expired or not yet valid) stops the server at start: clients would
//! refuse it, and quietly serving without it would turn every certified host into
//! a trust-on-first-use one.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use base64::Engine as _;
use noise_echo::openssh::certificate::{CertType, Certificate, CertificateError};
use noise_echo::wire::LocalIdentity;

/// How to make a host certificate, for every error message.
fn fix(host_key: &Path) -> String {
    format!(
        "make one with: ssh-keygen -s CA -h -I ID -n NAMES {}.pub",
        host_key.display()
    )
}

/// The host certificate for `identity` (whose private key is at `host_key`):
/// `explicit`, else `<host_key>-cert.pub` if it exists; `identity` presents it.
/// Returns the identity and the file it came from (`None`: no certificate).
///
/// # Errors
/// The certificate file cannot serve: the message names the file, what is wrong
/// and how to make a good one.
pub(super) fn attach(
    explicit: Option<&Path>,
    host_key: &Path,
    identity: LocalIdentity,
    now: SystemTime,
) -> anyhow::Result<(LocalIdentity, Option<PathBuf>)> {
    let default = PathBuf::from(format!("{}-cert.pub", host_key.display()));
    let path = match explicit {
        Some(path) => path.to_path_buf(),
        None if std::fs::symlink_metadata(&default).is_ok() => default,
        None => return Ok((identity, None)),
    };
    let fail = |what: String| {
        anyhow::anyhow!(
            "cannot use the host certificate {}: {what} ({})",
            path.display(),
            fix(host_key)
        )
    };
    let text = std::fs::read_to_string(&path).map_err(|error| fail(error.to_string()))?;
    let line = text
        .lines()
        .map(str::trim)
        .find(|line| !line.is_empty() && !line.starts_with('#'))
        .ok_or_else(|| fail("the file is empty".to_owned()))?;
    let certificate =
        Certificate::from_openssh_line(line).map_err(|error| fail(error.to_string()))?;
    if certificate.cert_type != CertType::Host {
        return Err(fail(format!(
            "it is a {} certificate (\"{}\"), not a host certificate (ssh-keygen -h)",
            certificate.cert_type, certificate.key_id
        )));
    }
    if &certificate.key != identity.public_key() {
        return Err(fail(format!(
            "it certifies key {}, not this host key {} ({})",
            certificate.key.fingerprint(),
            identity.public_key().fingerprint(),
            host_key.display()
        )));
    }
    certificate
        .check_validity(now)
        .map_err(|error: CertificateError| fail(error.to_string()))?;
    // The line parsed, so its second field is valid base64.
    let blob = line
        .split_ascii_whitespace()
        .nth(1)
        .and_then(|field| base64::engine::general_purpose::STANDARD.decode(field).ok())
        .ok_or_else(|| fail("the base64 field cannot be read".to_owned()))?;
    let identity = identity
        .with_certificate(blob)
        .map_err(|error| fail(error.to_string()))?;
    Ok((identity, Some(path)))
}
