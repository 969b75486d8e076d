//! The throw-away public-key infrastructure of a benchmark run: a CA made at
//! startup, and an Ed25519 server certificate (for `localhost` and 127.0.0.1) and
//! client certificate signed by it. The server and the load generator are separate
//! processes in `bench/compare.sh`, so the set can be written to a directory and
//! read back.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

use anyhow::{anyhow, Context};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType, PKCS_ED25519,
};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use zeroize::Zeroizing;

/// The name the server's certificate is for, and the client checks.
pub const SERVER_NAME: &str = "localhost";

/// File names inside a PKI directory.
const CA: &str = "ca.pem";
const SERVER_CERT: &str = "server.pem";
const SERVER_KEY: &str = "server.key";
const CLIENT_CERT: &str = "client.pem";
const CLIENT_KEY: &str = "client.key";

/// A CA and the two certificates it signed, with their private keys.
pub struct Pki {
    /// The CA certificate both sides trust, and nothing else.
    pub ca: CertificateDer<'static>,
    /// The server's certificate, signed by the CA.
    pub server_cert: CertificateDer<'static>,
    /// The server's Ed25519 key (PKCS#8), wiped when dropped.
    pub server_key: Zeroizing<Vec<u8>>,
    /// The client's certificate, signed by the CA.
    pub client_cert: CertificateDer<'static>,
    /// The client's Ed25519 key (PKCS#8), wiped when dropped.
    pub client_key: Zeroizing<Vec<u8>>,
}

impl Pki {
    /// Makes a new CA and signs a server and a client certificate, all Ed25519.
    ///
    /// # Errors
    /// When key generation or signing fails (not expected with a working
    /// aws-lc-rs).
    pub fn generate() -> anyhow::Result<Self> {
        let ca_key = KeyPair::generate_for(&PKCS_ED25519)?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "noise-echo bench CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = ca_params.self_signed(&ca_key)?;
        let issuer = Issuer::new(ca_params, ca_key);

        let leaf = |names: Vec<SanType>, usage: ExtendedKeyUsagePurpose, common: &str| {
            let key = KeyPair::generate_for(&PKCS_ED25519)?;
            let mut params = CertificateParams::new(Vec::<String>::new())?;
            params.subject_alt_names = names;
            params.distinguished_name.push(DnType::CommonName, common);
            params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            params.extended_key_usages = vec![usage];
            let cert = params.signed_by(&key, &issuer)?;
            anyhow::Ok((cert.der().clone(), Zeroizing::new(key.serialize_der())))
        };
        let (server_cert, server_key) = leaf(
            vec![
                SanType::DnsName(SERVER_NAME.try_into()?),
                SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()),
            ],
            ExtendedKeyUsagePurpose::ServerAuth,
            "noise-echo bench server",
        )?;
        let (client_cert, client_key) = leaf(
            vec![SanType::DnsName("bench-client".try_into()?)],
            ExtendedKeyUsagePurpose::ClientAuth,
            "noise-echo bench client",
        )?;
        Ok(Self {
            ca: ca.der().clone(),
            server_cert,
            server_key,
            client_cert,
            client_key,
        })
    }

    /// The server's key, for rustls.
    pub fn server_key(&self) -> PrivateKeyDer<'static> {
        PrivatePkcs8KeyDer::from(self.server_key.to_vec()).into()
    }

    /// The client's key, for rustls.
    pub fn client_key(&self) -> PrivateKeyDer<'static> {
        PrivatePkcs8KeyDer::from(self.client_key.to_vec()).into()
    }

    /// Writes the set as PEM files into `dir` (created if missing); the keys are
    /// readable by their owner only.
    ///
    /// # Errors
    /// When `dir` cannot be created or a file cannot be written.
    pub fn write_to(&self, dir: &Path) -> anyhow::Result<()> {
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let write = |name: &str, label: &str, der: &[u8], mode: u32| {
            let path = dir.join(name);
            let text = Zeroizing::new(pem(label, der));
            let mut file = fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(mode)
                .open(&path)
                .and_then(|mut file| file.write_all(text.as_bytes()).map(|()| file))
                .with_context(|| format!("cannot write {}", path.display()))?;
            file.flush()?;
            anyhow::Ok(())
        };
        write(CA, "CERTIFICATE", &self.ca, 0o644)?;
        write(SERVER_CERT, "CERTIFICATE", &self.server_cert, 0o644)?;
        write(SERVER_KEY, "PRIVATE KEY", &self.server_key, 0o600)?;
        write(CLIENT_CERT, "CERTIFICATE", &self.client_cert, 0o644)?;
        write(CLIENT_KEY, "PRIVATE KEY", &self.client_key, 0o600)?;
        Ok(())
    }

    /// Reads a set written by [`Pki::write_to`].
    ///
    /// # Errors
    /// When a file is missing or is not the PEM object expected; the message names
    /// the file and says how to make a new set.
    pub fn read_from(dir: &Path) -> anyhow::Result<Self> {
        let read = |name: &str| {
            let path = dir.join(name);
            let text = Zeroizing::new(fs::read(&path).with_context(|| {
                format!(
                    "cannot read {} (make the set with `tls-echo certs {}`)",
                    path.display(),
                    dir.display()
                )
            })?);
            anyhow::Ok((path, text))
        };
        let cert = |name: &str| {
            let (path, text) = read(name)?;
            CertificateDer::from_pem_slice(&text)
                .map_err(|error| anyhow!("{}: not a PEM certificate: {error}", path.display()))
        };
        let key = |name: &str| {
            let (path, text) = read(name)?;
            let key = PrivatePkcs8KeyDer::from_pem_slice(&text).map_err(|error| {
                anyhow!("{}: not a PEM PKCS#8 private key: {error}", path.display())
            })?;
            anyhow::Ok(Zeroizing::new(key.secret_pkcs8_der().to_vec()))
        };
        Ok(Self {
            ca: cert(CA)?,
            server_cert: cert(SERVER_CERT)?,
            server_key: key(SERVER_KEY)?,
            client_cert: cert(CLIENT_CERT)?,
            client_key: key(CLIENT_KEY)?,
        })
    }
}

/// `der` as a PEM block with `label`, base64 in 64-column lines. The caller wipes
/// the result when it holds a key; the base64 in between is wiped here.
fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    let body = Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(der));
    let mut text = format!("-----BEGIN {label}-----\n");
    for line in body.as_bytes().chunks(64) {
        text.push_str(std::str::from_utf8(line).unwrap_or_default());
        text.push('\n');
    }
    text.push_str(&format!("-----END {label}-----\n"));
    text
}
