//! How a bench worker reaches the server: a Noise session (the first one through
//! the client's known_hosts logic, later ones pinned), the plaintext baseline, or the
//! plaintext records inside another secure channel (a [`Tunnel`]: TLS), and the two
//! halves of each.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

use super::*;
use noise_echo::client::{self, ClientConfig, Protocol, Target, UnknownHostPolicy};
use noise_echo::identity::PublicKey;
use noise_echo::wire::{
    self, LocalIdentity, Offer, ProtocolVersion, RecordType, RecvHalf, SendHalf, Suite,
    MIN_RESPONSE_LIMIT,
};
use plain::{PlainReceiver, PlainSender};

/// How to reach the server and whom to trust.
// Built once per run and consumed at once: the size difference costs nothing.
#[allow(clippy::large_enum_variant)]
pub enum Trust {
    /// The real protocol, with the client's known_hosts logic for the first
    /// connection.
    Noise {
        /// Our identity.
        identity: LocalIdentity,
        /// known_hosts to check (and add to under `AcceptNew`).
        known_hosts: std::path::PathBuf,
        /// What to do with an unknown key (there is no prompt in a benchmark).
        unknown_host: UnknownHostPolicy,
    },
    /// The plaintext baseline.
    Plain,
    /// The plaintext records inside another secure channel, which
    /// [`Tunnel::open`] sets up on each new TCP connection.
    Tunnel(Arc<dyn Tunnel>),
}

/// The reading and writing halves of a channel opened by a [`Tunnel`].
pub type TunnelHalves = (
    Box<dyn AsyncRead + Send + Unpin>,
    Box<dyn AsyncWrite + Send + Unpin>,
);

/// A secure channel other than Noise (TLS, in the `noise-echo-tls` package) that
/// carries the plaintext records, so every scenario measures it with the same
/// requests, checks and load shapes. It lives outside this package so that the
/// `noise-echo` binary, which depends on this one, links no second TLS stack.
pub trait Tunnel: Send + Sync {
    /// The name reports give the transport (`tls-aes256`, say).
    fn transport(&self) -> &'static str;

    /// Runs the channel's handshake on `tcp` (connected, TCP_NODELAY set) and
    /// returns its two halves, each usable from its own task.
    ///
    /// # Errors
    /// When the handshake fails or the peer is not trusted.
    fn open(
        &self,
        tcp: TcpStream,
    ) -> Pin<Box<dyn Future<Output = anyhow::Result<TunnelHalves>> + Send + '_>>;
}

/// Opens sessions to one server, the same way every time.
pub struct Connector {
    pub(super) address: SocketAddr,
    pub(super) kind: ConnectorKind,
}

pub(super) enum ConnectorKind {
    Noise {
        identity: Arc<LocalIdentity>,
        server_key: PublicKey,
        /// The v2 offer of the suite the first connection negotiated; `None` for v1.
        offer: Option<Offer>,
    },
    Plain,
    Tunnel(Arc<dyn Tunnel>),
}

impl Connector {
    /// Resolves `target` once and, for Noise, makes a first connection through
    /// [`client::connect`] so the server's key is checked against known_hosts (and
    /// the policy) exactly as `connect` would; later sessions pin that key.
    ///
    /// # Errors
    /// When the address does not resolve, the server cannot be reached, or its key is
    /// not trusted.
    pub async fn establish(target: &Target, trust: Trust) -> anyhow::Result<Self> {
        Self::establish_with(target, trust, Protocol::default(), None).await
    }

    /// [`Connector::establish`] speaking `protocol`, offering `cipher` (`None`: the
    /// client's automatic choice, with its retry). Every later session offers the
    /// suite the first one negotiated, so a run measures one suite.
    ///
    /// # Errors
    /// As [`Connector::establish`], and the client's negotiation errors (no suite or
    /// version in common).
    pub async fn establish_with(
        target: &Target,
        trust: Trust,
        protocol: Protocol,
        cipher: Option<Suite>,
    ) -> anyhow::Result<Self> {
        let address = tokio::net::lookup_host((target.host.as_str(), target.port))
            .await
            .with_context(|| format!("cannot resolve {target}"))?
            .next()
            .ok_or_else(|| anyhow!("{target} resolves to no address"))?;
        let kind = match trust {
            Trust::Plain => ConnectorKind::Plain,
            Trust::Tunnel(tunnel) => {
                // Fail here, with the reason, rather than in every worker.
                let stream = TcpStream::connect(address)
                    .await
                    .with_context(|| format!("cannot connect to {target}"))?;
                stream.set_nodelay(true)?;
                let (_, mut writer) = tunnel.open(stream).await?;
                tokio::io::AsyncWriteExt::shutdown(&mut writer).await?;
                ConnectorKind::Tunnel(tunnel)
            }
            Trust::Noise {
                identity,
                known_hosts,
                unknown_host,
            } => {
                let config = ClientConfig::known_hosts(identity.clone(), known_hosts)
                    .unknown_host(unknown_host)
                    .protocol(protocol)
                    .cipher(cipher);
                let connection = client::connect(target, config).await?;
                let server_key = *connection.server_key();
                let offer = match connection.version() {
                    ProtocolVersion::V1 => None,
                    _ => Some(Offer::new(connection.suite())),
                };
                let (_, mut sender) = connection.into_halves();
                sender.shutdown().await?;
                ConnectorKind::Noise {
                    identity: Arc::new(identity),
                    server_key,
                    offer,
                }
            }
        };
        Ok(Self { address, kind })
    }

    /// `noise-aesgcm` or `noise-chachapoly` (protocol 2, the suite measured),
    /// `noise` (protocol 1), `plain`, or the tunnel's name.
    pub fn transport(&self) -> &'static str {
        match &self.kind {
            ConnectorKind::Noise { offer: None, .. } => "noise",
            ConnectorKind::Noise {
                offer: Some(offer), ..
            } => match offer.suite() {
                Some(Suite::AesGcmSha256) => "noise-aesgcm",
                Some(Suite::ChaChaPolyBlake2s) => "noise-chachapoly",
                _ => "noise",
            },
            ConnectorKind::Plain => "plain",
            ConnectorKind::Tunnel(tunnel) => tunnel.transport(),
        }
    }

    /// Opens one session: TCP, then (for Noise or a tunnel) the whole handshake.
    pub(super) async fn open(&self) -> anyhow::Result<(Receiver, Sender)> {
        let mut stream = TcpStream::connect(self.address)
            .await
            .with_context(|| format!("cannot connect to {}", self.address))?;
        stream.set_nodelay(true)?;
        match &self.kind {
            ConnectorKind::Plain => {
                let (receiver, sender) = plain::client_halves(stream);
                Ok((Receiver::Plain(receiver), Sender::Plain(sender)))
            }
            ConnectorKind::Tunnel(tunnel) => {
                let (reader, writer) = tunnel.open(stream).await?;
                let (receiver, sender) = plain::halves(reader, writer);
                Ok((Receiver::Tunnel(receiver), Sender::Tunnel(sender)))
            }
            ConnectorKind::Noise {
                identity,
                server_key,
                offer,
            } => {
                let pending = match offer {
                    Some(offer) => wire::initiate_v2(&mut stream, identity, offer).await?,
                    None => wire::initiate(&mut stream, identity).await?,
                };
                if pending.server_key() != server_key {
                    let changed = "the server's key changed during the benchmark";
                    return Err(pending.reject(changed).into());
                }
                let established = pending.approve(&mut stream).await?;
                let (reader, writer) = stream.into_split();
                let (receiver, sender) = established.into_halves(reader, writer);
                Ok((Receiver::Noise(receiver), Sender::Noise(sender)))
            }
        }
    }
}

/// The request side of a session, Noise or plain.
pub(super) enum Sender {
    Noise(SendHalf<OwnedWriteHalf>),
    Plain(PlainSender),
    Tunnel(PlainSender<Box<dyn AsyncWrite + Send + Unpin>>),
}

/// The reply side of a session, Noise or plain.
pub(super) enum Receiver {
    Noise(RecvHalf<OwnedReadHalf>),
    Plain(PlainReceiver),
    Tunnel(PlainReceiver<Box<dyn AsyncRead + Send + Unpin>>),
}

impl Sender {
    pub(super) async fn request(&mut self, body: &[u8]) -> anyhow::Result<()> {
        match self {
            Sender::Noise(tx) => tx.write_record(RecordType::Request, body).await?,
            Sender::Plain(tx) => tx.request(body).await?,
            Sender::Tunnel(tx) => tx.request(body).await?,
        }
        Ok(())
    }

    /// Queues a request if that needs no write: `false`, with nothing queued, when
    /// it would (then [`request`](Self::request)). Each stack's synchronous path.
    pub(super) fn queue(&mut self, body: &[u8]) -> anyhow::Result<bool> {
        Ok(match self {
            Sender::Noise(tx) => tx.queue_record(RecordType::Request, body)?,
            Sender::Plain(tx) => tx.queue_request(body),
            Sender::Tunnel(tx) => tx.queue_request(body),
        })
    }

    pub(super) async fn flush(&mut self) -> anyhow::Result<()> {
        match self {
            Sender::Noise(tx) => tx.flush().await?,
            Sender::Plain(tx) => tx.flush().await?,
            Sender::Tunnel(tx) => tx.flush().await?,
        }
        Ok(())
    }

    pub(super) async fn shutdown(&mut self) -> anyhow::Result<()> {
        match self {
            Sender::Noise(tx) => tx.shutdown().await?,
            Sender::Plain(tx) => tx.shutdown().await?,
            Sender::Tunnel(tx) => tx.shutdown().await?,
        }
        Ok(())
    }
}

impl Receiver {
    /// The next reply's type and body, `None` at a clean end of stream.
    pub(super) async fn reply(&mut self, body: &mut Vec<u8>) -> anyhow::Result<Option<RecordType>> {
        match self {
            Receiver::Noise(rx) => {
                let Some(header) = rx.next_record().await? else {
                    return Ok(None);
                };
                rx.read_body(body, MIN_RESPONSE_LIMIT).await?;
                Ok(Some(header.record_type))
            }
            Receiver::Plain(rx) => Ok(rx.reply(body).await?),
            Receiver::Tunnel(rx) => Ok(rx.reply(body).await?),
        }
    }

    /// The next reply if all of it is already here (received, and for Noise
    /// decrypted or decryptable without waiting): `check` is given its type and
    /// body, and it is taken. `None`, with nothing taken, otherwise: then
    /// [`reply`](Self::reply), which also refuses what this leaves (a body over
    /// the response limit, a record that is no reply).
    pub(super) fn buffered_reply<T>(
        &mut self,
        check: impl FnOnce(RecordType, &[u8]) -> T,
    ) -> anyhow::Result<Option<T>> {
        match self {
            Receiver::Noise(rx) => {
                let Some(record) = rx.buffered_record()? else {
                    return Ok(None);
                };
                let header = record.header();
                if header.len > MIN_RESPONSE_LIMIT {
                    return Ok(None);
                }
                let checked = check(header.record_type, record.body());
                record.consume();
                Ok(Some(checked))
            }
            Receiver::Plain(rx) => Ok(rx.buffered_reply(check)),
            Receiver::Tunnel(rx) => Ok(rx.buffered_reply(check)),
        }
    }

    /// Reads a reply and checks it is the RESPONSE `expected`.
    pub(super) async fn expect(
        &mut self,
        body: &mut Vec<u8>,
        expected: &[u8],
    ) -> anyhow::Result<()> {
        match self.reply(body).await? {
            Some(RecordType::Response) if body.as_slice() == expected => Ok(()),
            Some(RecordType::Response) => bail!(
                "wrong reply: expected {} bytes {:?}..., got {} bytes {:?}...",
                expected.len(),
                String::from_utf8_lossy(&expected[..expected.len().min(16)]),
                body.len(),
                String::from_utf8_lossy(&body[..body.len().min(16)])
            ),
            Some(other) => bail!(
                "the server answered {other}: {}",
                String::from_utf8_lossy(body)
            ),
            None => bail!("the server closed the session without replying"),
        }
    }
}
