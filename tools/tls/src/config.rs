//! The rustls configurations of both sides: TLS 1.3 only, X25519 only, the one
//! cipher suite of the run, Ed25519 certificates checked against the run's CA on
//! both sides, and no resumption (no tickets, no session cache, no early data), so
//! every `handshake` session is a full handshake, as every Noise session is.

use std::sync::Arc;

use anyhow::Context;
use rustls::client::Resumption;
use rustls::crypto::{aws_lc_rs, CryptoProvider};
use rustls::server::{NoServerSessionStorage, WebPkiClientVerifier};
use rustls::{ClientConfig, RootCertStore, ServerConfig, SupportedCipherSuite};

use crate::pki::Pki;

/// The TLS 1.3 cipher suite of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Suite {
    /// TLS13_AES_256_GCM_SHA384: AES-NI/VAES in aws-lc.
    #[value(name = "aes256gcm")]
    Aes256Gcm,
    /// TLS13_CHACHA20_POLY1305_SHA256: the AEAD of noise-echo's ChaChaPoly suite.
    #[value(name = "chachapoly")]
    ChaChaPoly,
}

impl Suite {
    /// The name in reports and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Suite::Aes256Gcm => "aes256gcm",
            Suite::ChaChaPoly => "chachapoly",
        }
    }

    /// The transport name in bench reports.
    pub fn transport(self) -> &'static str {
        match self {
            Suite::Aes256Gcm => "tls-aes256gcm",
            Suite::ChaChaPoly => "tls-chachapoly",
        }
    }

    /// The rustls suite.
    pub fn rustls(self) -> SupportedCipherSuite {
        match self {
            Suite::Aes256Gcm => aws_lc_rs::cipher_suite::TLS13_AES_256_GCM_SHA384,
            Suite::ChaChaPoly => aws_lc_rs::cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
        }
    }
}

/// aws-lc-rs with `suite` and X25519 only: a peer offering anything else fails the
/// handshake rather than quietly measuring another algorithm.
fn provider(suite: Suite) -> Arc<CryptoProvider> {
    let mut provider = aws_lc_rs::default_provider();
    provider.cipher_suites = vec![suite.rustls()];
    provider.kx_groups = vec![aws_lc_rs::kx_group::X25519];
    Arc::new(provider)
}

fn roots(pki: &Pki) -> anyhow::Result<Arc<RootCertStore>> {
    let mut roots = RootCertStore::empty();
    roots.add(pki.ca.clone()).context("the CA certificate")?;
    Ok(Arc::new(roots))
}

/// The server's side: its certificate, and client certificates required and
/// checked against the CA.
///
/// # Errors
/// When the certificates or key of `pki` are unusable.
pub fn server_config(pki: &Pki, suite: Suite) -> anyhow::Result<Arc<ServerConfig>> {
    let provider = provider(suite);
    let verifier = WebPkiClientVerifier::builder_with_provider(roots(pki)?, Arc::clone(&provider))
        .build()
        .context("the client certificate verifier")?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![pki.server_cert.clone()], pki.server_key())
        .context("the server's certificate and key")?;
    // No resumption: no session cache and no tickets (the default ticketer makes
    // none; this says so), so every session pays the full handshake.
    config.session_storage = Arc::new(NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    config.max_early_data_size = 0;
    Ok(Arc::new(config))
}

/// The client's side: the server checked against the CA (as [`crate::pki::SERVER_NAME`]),
/// our certificate sent when asked.
///
/// # Errors
/// When the certificates or key of `pki` are unusable.
pub fn client_config(pki: &Pki, suite: Suite) -> anyhow::Result<Arc<ClientConfig>> {
    let mut config = ClientConfig::builder_with_provider(provider(suite))
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots(pki)?)
        .with_client_auth_cert(vec![pki.client_cert.clone()], pki.client_key())
        .context("the client's certificate and key")?;
    config.resumption = Resumption::disabled();
    config.enable_early_data = false;
    Ok(Arc::new(config))
}
