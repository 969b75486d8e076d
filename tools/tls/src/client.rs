//! The load generator's side: a [`Tunnel`] that runs a full TLS 1.3 handshake with
//! our client certificate on each new connection, so `noise_echo_tools::bench`
//! runs its scenarios, with their checks, inside TLS.
//!
//! rustls keeps one state for both directions, so the two halves the scenarios
//! need are `tokio::io::split`'s (a lock around the stream, held during each poll):
//! that is how a tokio-rustls client writes from one task and reads from another.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use anyhow::Context;
use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use noise_echo_tools::bench::{Tunnel, TunnelHalves};

use crate::pki::SERVER_NAME;
use crate::Suite;

/// Opens TLS sessions with one configuration.
pub struct TlsTunnel {
    /// The configured connector (shared config: CA, our certificate, the suite).
    connector: TlsConnector,
    /// The name the server's certificate must carry.
    server_name: ServerName<'static>,
    /// The suite, to name the transport in reports.
    suite: Suite,
}

impl TlsTunnel {
    /// A tunnel with `config`, which must offer `suite` only.
    ///
    /// # Errors
    /// Never for [`SERVER_NAME`]; kept for a name that is not a valid DNS name.
    pub fn new(config: Arc<ClientConfig>, suite: Suite) -> anyhow::Result<Self> {
        Ok(Self {
            connector: TlsConnector::from(config),
            server_name: ServerName::try_from(SERVER_NAME).context("the server name")?,
            suite,
        })
    }
}

impl Tunnel for TlsTunnel {
    fn transport(&self) -> &'static str {
        self.suite.transport()
    }

    fn open(
        &self,
        tcp: TcpStream,
    ) -> Pin<Box<dyn Future<Output = anyhow::Result<TunnelHalves>> + Send + '_>> {
        Box::pin(async move {
            let stream = self
                .connector
                .connect(self.server_name.clone(), tcp)
                .await
                .context("TLS handshake")?;
            let (reader, writer) = tokio::io::split(stream);
            let halves: TunnelHalves = (Box::new(reader), Box::new(writer));
            Ok(halves)
        })
    }
}
