//! Shared helpers for the end-to-end tests: an in-process server on 127.0.0.1:0 in
//! a temporary directory, and a raw Noise client written directly against `snow`
//! from wire-v1, independent of noise-echo's own protocol code, so tests can send
//! what a well-behaved client never would.

#![allow(dead_code)] // each test binary uses a different subset

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use noise_echo::client::{self, ClientConfig, Connection, Target, UnknownHostPolicy};
use noise_echo::identity::{Identity, PublicKey};
use noise_echo::openssh::authorized_keys;
use noise_echo::server::{self, ServerConfig};
use noise_echo::wire::LocalIdentity;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub const PROTOCOL: &str = "Noise_XX_25519_ChaChaPoly_BLAKE2s";
pub const PROLOGUE: &[u8] = b"noise-echo/1";

/// A server running in this process, with its files in a temporary directory.
pub struct TestServer {
    pub addr: SocketAddr,
    pub host: Identity,
    pub authorized_keys: PathBuf,
    pub dir: tempfile::TempDir,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl TestServer {
    /// Starts a server that authorizes `clients`.
    pub async fn start(clients: &[&Identity]) -> Self {
        Self::start_with(clients, |_| {}).await
    }

    /// Starts a server, letting the test adjust its configuration.
    pub async fn start_with(clients: &[&Identity], adjust: impl FnOnce(&mut ServerConfig)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let authorized_keys = dir.path().join("authorized_keys");
        let mut contents = Vec::new();
        for client in clients {
            contents =
                authorized_keys::append_key(&contents, &client.public_key(), client.comment());
        }
        std::fs::write(&authorized_keys, contents).unwrap();
        let host = Identity::generate("test-host");
        let mut config =
            ServerConfig::new(Arc::new(LocalIdentity::new(&host)), authorized_keys.clone());
        adjust(&mut config);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (shutdown, stop) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server::run(listener, config, async move {
            let _ = stop.await;
        }));
        Self {
            addr,
            host,
            authorized_keys,
            dir,
            shutdown: Some(shutdown),
            task: Some(task),
        }
    }

    /// A client configuration that already trusts this server.
    pub fn client_config(&self, identity: &Identity) -> ClientConfig {
        let known_hosts = self.dir.path().join("known_hosts");
        ClientConfig::known_hosts(LocalIdentity::new(identity), known_hosts).unknown_host(
            UnknownHostPolicy::ExpectFingerprint(self.host.public_key().fingerprint()),
        )
    }

    pub fn target(&self) -> Target {
        Target {
            host: "127.0.0.1".into(),
            port: self.addr.port(),
        }
    }

    /// Connects with noise-echo's own client.
    pub async fn connect(&self, identity: &Identity) -> Connection {
        client::connect(&self.target(), self.client_config(identity))
            .await
            .unwrap()
    }

    /// Connects with noise-echo's own client speaking protocol v1, whose client
    /// does not know the server's request limit: to see the server enforce it.
    pub async fn connect_v1(&self, identity: &Identity) -> Connection {
        let config = self.client_config(identity).protocol(client::Protocol::V1);
        client::connect(&self.target(), config).await.unwrap()
    }

    /// Stops the server and waits for it to finish.
    pub async fn stop(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }
}

/// Writes one frame: u16 big-endian length, then the bytes.
pub async fn write_frame(stream: &mut TcpStream, payload: &[u8]) {
    let len = u16::try_from(payload.len()).unwrap();
    let mut frame = len.to_be_bytes().to_vec();
    frame.extend_from_slice(payload);
    stream.write_all(&frame).await.unwrap();
}

/// Reads one frame, or None at end of stream (or on a reset).
pub async fn read_frame(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).await.ok()?;
    let mut payload = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut payload).await.ok()?;
    Some(payload)
}

/// Reads until end of stream and returns how many bytes came; a reset counts as end.
pub async fn drain(stream: &mut TcpStream) -> usize {
    let mut total = 0;
    let mut buffer = [0u8; 4096];
    // Bounded: a server that keeps sending would be a failure anyway.
    for _ in 0..100_000 {
        match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => return total,
            Ok(read) => total += read,
        }
    }
    panic!("the peer kept sending");
}

/// A client speaking wire-v1 with snow directly, so tests control every byte.
pub struct RawClient {
    pub stream: TcpStream,
    pub transport: snow::TransportState,
    pub server_key: Vec<u8>,
}

/// What the raw client puts in msg 3.
pub enum Msg3Payload<'a> {
    /// Its own Ed25519 key, as wire-v1 says.
    Honest,
    /// Some other bytes (another key, a wrong length...).
    Other(&'a [u8]),
}

impl RawClient {
    /// Runs the XX handshake as the initiator with `prologue`; returns the client
    /// after msg 3, or the step that failed.
    pub async fn handshake(
        addr: SocketAddr,
        identity: &Identity,
        prologue: &[u8],
        payload: Msg3Payload<'_>,
    ) -> Result<Self, String> {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let noise = identity.noise_keypair();
        let mut state = snow::Builder::new(PROTOCOL.parse().unwrap())
            .local_private_key(noise.private())
            .unwrap()
            .prologue(prologue)
            .unwrap()
            .build_initiator()
            .unwrap();
        let mut buffer = vec![0u8; 65535];
        // -> e
        let len = state.write_message(&[], &mut buffer).unwrap();
        assert_eq!(len, 32);
        write_frame(&mut stream, &buffer[..len]).await;
        // <- e, ee, s, es
        let msg2 = read_frame(&mut stream).await.ok_or("no msg 2")?;
        let mut server_key = vec![0u8; 64];
        let got = state
            .read_message(&msg2, &mut server_key)
            .map_err(|error| format!("msg 2: {error}"))?;
        server_key.truncate(got);
        let server_ed25519 =
            PublicKey::from_bytes(&server_key).map_err(|error| error.to_string())?;
        assert_eq!(
            state.get_remote_static().unwrap(),
            server_ed25519.to_x25519(),
            "the server's payload must be its Noise static key's Ed25519 form"
        );
        // -> s, se
        let own = identity.public_key();
        let payload = match payload {
            Msg3Payload::Honest => own.as_bytes().as_slice(),
            Msg3Payload::Other(bytes) => bytes,
        };
        let len = state.write_message(payload, &mut buffer).unwrap();
        write_frame(&mut stream, &buffer[..len]).await;
        Ok(Self {
            stream,
            transport: state.into_transport_mode().unwrap(),
            server_key,
        })
    }

    /// Encrypts `plaintext` into one transport message and sends it.
    pub async fn send_plaintext(&mut self, plaintext: &[u8]) {
        let mut message = vec![0u8; plaintext.len() + 16];
        let len = self
            .transport
            .write_message(plaintext, &mut message)
            .unwrap();
        write_frame(&mut self.stream, &message[..len]).await;
    }

    /// Encrypts `plaintext` but sends only the first `keep` bytes of the frame.
    pub async fn send_truncated_frame(&mut self, plaintext: &[u8], keep: usize) {
        let mut message = vec![0u8; plaintext.len() + 16];
        let len = self
            .transport
            .write_message(plaintext, &mut message)
            .unwrap();
        let mut frame = u16::try_from(len).unwrap().to_be_bytes().to_vec();
        frame.extend_from_slice(&message[..len]);
        self.stream.write_all(&frame[..keep]).await.unwrap();
    }

    /// Reads one transport message; None at end of stream.
    pub async fn read_plaintext(&mut self) -> Option<Vec<u8>> {
        let frame = read_frame(&mut self.stream).await?;
        let mut plaintext = vec![0u8; frame.len()];
        let len = self.transport.read_message(&frame, &mut plaintext).ok()?;
        plaintext.truncate(len);
        Some(plaintext)
    }

    /// Reads every record until the server closes: (type, body) pairs.
    pub async fn read_records_until_close(&mut self) -> Vec<(u8, Vec<u8>)> {
        let mut stream_bytes = Vec::new();
        for _ in 0..10_000 {
            match self.read_plaintext().await {
                Some(plaintext) => stream_bytes.extend_from_slice(&plaintext),
                None => break,
            }
        }
        parse_records(&stream_bytes)
    }
}

/// `type | u32 len | body`.
pub fn record(record_type: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![record_type];
    out.extend_from_slice(&u32::try_from(body.len()).unwrap().to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// Splits a record stream; a trailing partial record is ignored.
pub fn parse_records(mut bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut records = Vec::new();
    while bytes.len() >= 5 {
        let len = u32::from_be_bytes(bytes[1..5].try_into().unwrap()) as usize;
        if bytes.len() < 5 + len {
            break;
        }
        records.push((bytes[0], bytes[5..5 + len].to_vec()));
        bytes = &bytes[5 + len..];
    }
    records
}
