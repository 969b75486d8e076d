//! The user certificate `connect` presents, found as ssh finds it: the config file's
//! `CertificateFile` if set, else `IDENTITY-cert.pub` beside the identity file (the
//! default one or `-i FILE`).
//!
//! ssh warns about a certificate it cannot use and connects without it; `connect`
//! refuses instead, naming the file: a certificate left out silently turns into a
//! "permission denied" from a server that admits only through it, far from the
//! cause. An expired (or not yet valid) certificate is still sent, as ssh sends it:
//! the server's clock decides, and `-v` says it is expired. Protocol 1 has no field
//! for a certificate: it is then not sent, and `-v` says so.

use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::Context as _;
use base64::Engine as _;
use tracing::debug;

use noise_echo::client::{describe_certificate, Protocol};
use noise_echo::openssh::certificate::{Certificate, CertificateError};
use noise_echo::wire::LocalIdentity;

/// `IDENTITY-cert.pub`: where ssh looks for an identity's certificate.
pub(super) fn beside(identity: &Path) -> PathBuf {
    let mut name = OsString::from(identity.as_os_str());
    name.push("-cert.pub");
    PathBuf::from(name)
}

/// `identity` (loaded from `identity_path`) with its certificate, if it has one:
/// `configured` (`CertificateFile`), which must exist, else the file beside the
/// identity, if it exists.
///
/// # Errors
/// The certificate file cannot be read (a missing `CertificateFile` included), is
/// not an Ed25519 certificate, or certifies another key than the identity's.
pub(super) fn attach(
    identity: LocalIdentity,
    identity_path: &Path,
    configured: Option<&Path>,
    protocol: Protocol,
) -> anyhow::Result<LocalIdentity> {
    let path = configured.map_or_else(|| beside(identity_path), Path::to_path_buf);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == io::ErrorKind::NotFound && configured.is_none() => {
            debug!("no certificate beside the identity ({})", path.display());
            return Ok(identity);
        }
        Err(error) => {
            return Err(error).with_context(|| {
                format!(
                    "cannot read the certificate file {} (CertificateFile)",
                    path.display()
                )
            })
        }
    };
    let unusable = |error: CertificateError| {
        anyhow::anyhow!(
            "{}: not a usable certificate: {error} (make one with ssh-keygen -s CA_KEY -I ID -n PRINCIPALS {}.pub, or remove the file)",
            path.display(),
            identity_path.display()
        )
    };
    let line = text
        .lines()
        .map(str::trim)
        .find(|line| !line.is_empty() && !line.starts_with('#'))
        .ok_or_else(|| unusable(CertificateError::Malformed("the file is empty".into())))?;
    let certificate = Certificate::from_openssh_line(line).map_err(unusable)?;
    let blob = line
        .split_ascii_whitespace()
        .nth(1)
        .and_then(|data| base64::engine::general_purpose::STANDARD.decode(data).ok())
        .expect("a certificate that parsed has a base64 field");
    if certificate.key != *identity.public_key() {
        anyhow::bail!(
            "{}: the certificate is for the key {}, not for the identity {} ({}): use the identity's own certificate, or name the right one with CertificateFile",
            path.display(),
            certificate.key.fingerprint(),
            identity_path.display(),
            identity.public_key().fingerprint()
        );
    }
    debug!("certificate file {}", path.display());
    debug!(
        "certificate: {}",
        describe_certificate(&certificate, SystemTime::now())
    );
    if protocol == Protocol::V1 {
        debug!(
            "protocol 1 carries no certificate: {} is not sent",
            path.display()
        );
        return Ok(identity);
    }
    identity.with_certificate(blob).map_err(unusable)
}
