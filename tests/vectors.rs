//! Golden test vectors for wire-v1: a whole session with fixed identities and fixed
//! ephemeral keys, down to the bytes on the wire. See `tests/vectors/README.md`.
//!
//! The test replays the session through the public API and compares every value with
//! `tests/vectors/v1.txt`. Run with `NOISE_ECHO_REGENERATE_VECTORS=1` to rewrite the
//! file instead (only when the protocol deliberately changes: the file is the
//! contract other implementations test against).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use curve25519_dalek::montgomery::MontgomeryPoint;
use noise_echo::identity::Identity;
use noise_echo::wire::{
    decode_frame, initiate_with_fixed_ephemeral_for_testing_only,
    respond_with_fixed_ephemeral_for_testing_only, Decoded, LocalIdentity, RecordType, Reply,
    DEFAULT_REQUEST_LIMIT, MIN_RESPONSE_LIMIT, NOISE_PROTOCOL, PROLOGUE,
};
use tokio::io::{duplex, AsyncRead, AsyncWrite, DuplexStream, ReadBuf};

const REGENERATE: &str = "NOISE_ECHO_REGENERATE_VECTORS";

/// `start, start + 1, ...`: recognisable, obviously not random, and distinct.
fn counting_bytes(start: u8) -> [u8; 32] {
    std::array::from_fn(|index| start.wrapping_add(index as u8))
}

/// A stream that keeps a copy of everything written to it.
struct Recorder {
    inner: DuplexStream,
    written: Arc<Mutex<Vec<u8>>>,
}

impl AsyncRead for Recorder {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Recorder {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(written)) = poll {
            self.written
                .lock()
                .unwrap()
                .extend_from_slice(&buf[..written]);
        }
        poll
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

fn recorder(inner: DuplexStream) -> (Recorder, Arc<Mutex<Vec<u8>>>) {
    let written = Arc::new(Mutex::new(Vec::new()));
    let recorder = Recorder {
        inner,
        written: Arc::clone(&written),
    };
    (recorder, written)
}

/// Splits a byte stream into whole frames, each with its length prefix.
fn frames(mut bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        match decode_frame(bytes).unwrap() {
            Decoded::Frame { consumed, .. } => {
                out.push(bytes[..consumed].to_vec());
                bytes = &bytes[consumed..];
            }
            Decoded::Incomplete { .. } => panic!("a partial frame on the wire"),
        }
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut text, byte| {
        let _ = write!(text, "{byte:02x}");
        text
    })
}

/// Runs the reference session and returns the vectors, in file order.
async fn generate() -> Vec<(&'static str, String)> {
    let client_identity = Identity::from_seed(&counting_bytes(0x00), "client");
    let server_identity = Identity::from_seed(&counting_bytes(0x20), "server");
    let client_ephemeral = counting_bytes(0x40);
    let server_ephemeral = counting_bytes(0x60);
    let client_local = LocalIdentity::new(&client_identity);
    let server_local = LocalIdentity::new(&server_identity);

    let (client_io, server_io) = duplex(1 << 16);
    let (mut client_io, client_wrote) = recorder(client_io);
    let (mut server_io, server_wrote) = recorder(server_io);
    let client = async {
        let pending = initiate_with_fixed_ephemeral_for_testing_only(
            &mut client_io,
            &client_local,
            &client_ephemeral,
        )
        .await
        .unwrap();
        assert_eq!(pending.server_key(), &server_identity.public_key());
        pending.approve(&mut client_io).await.unwrap()
    };
    let server = respond_with_fixed_ephemeral_for_testing_only(
        &mut server_io,
        &server_local,
        &server_ephemeral,
    );
    let (client, server) = tokio::join!(client, server);
    let server = server.unwrap();
    assert_eq!(server.peer(), &client_identity.public_key());
    assert_eq!(client.handshake_hash(), server.handshake_hash());
    let handshake_hash = hex(client.handshake_hash());

    let (mut client_rx, mut client_tx) = client.into_split(client_io);
    let (mut server_rx, mut server_tx) = server.into_split(server_io);
    client_tx
        .write_record(RecordType::Request, b"hello")
        .await
        .unwrap();
    client_tx.flush().await.unwrap();
    let header = server_rx.next_record().await.unwrap().unwrap();
    assert_eq!(header.record_type, RecordType::Request);
    let mut body = Vec::new();
    server_rx
        .read_body(&mut body, DEFAULT_REQUEST_LIMIT)
        .await
        .unwrap();
    assert_eq!(body, b"hello");
    server_tx
        .write_record(RecordType::Response, b"HELLO")
        .await
        .unwrap();
    server_tx.flush().await.unwrap();
    assert_eq!(
        client_rx.read_reply(MIN_RESPONSE_LIMIT).await.unwrap(),
        Some(Reply::Response(b"HELLO".to_vec()))
    );

    let client_frames = frames(&client_wrote.lock().unwrap());
    let server_frames = frames(&server_wrote.lock().unwrap());
    assert_eq!((client_frames.len(), server_frames.len()), (3, 2));

    let x25519_public = |private: &[u8; 32]| MontgomeryPoint::mul_base_clamped(*private).to_bytes();
    let client_noise = client_identity.noise_keypair();
    let server_noise = server_identity.noise_keypair();
    vec![
        ("protocol_name", hex(NOISE_PROTOCOL.as_bytes())),
        ("prologue", hex(PROLOGUE)),
        ("client_ed25519_seed", hex(&counting_bytes(0x00))),
        (
            "client_ed25519_public",
            hex(client_identity.public_key().as_bytes()),
        ),
        ("client_x25519_private", hex(client_noise.private())),
        ("client_x25519_public", hex(client_noise.public())),
        ("client_ephemeral_private", hex(&client_ephemeral)),
        (
            "client_ephemeral_public",
            hex(&x25519_public(&client_ephemeral)),
        ),
        ("server_ed25519_seed", hex(&counting_bytes(0x20))),
        (
            "server_ed25519_public",
            hex(server_identity.public_key().as_bytes()),
        ),
        ("server_x25519_private", hex(server_noise.private())),
        ("server_x25519_public", hex(server_noise.public())),
        ("server_ephemeral_private", hex(&server_ephemeral)),
        (
            "server_ephemeral_public",
            hex(&x25519_public(&server_ephemeral)),
        ),
        ("msg1", hex(&client_frames[0])),
        ("msg2", hex(&server_frames[0])),
        ("msg3", hex(&client_frames[1])),
        ("handshake_hash", handshake_hash),
        ("client_request_hello", hex(&client_frames[2])),
        ("server_response_hello", hex(&server_frames[1])),
    ]
}

fn vector_file() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/v1.txt")
}

fn render(vectors: &[(&str, String)]) -> String {
    let mut text = String::from(
        "# noise-echo wire-v1 golden vectors. Format: tests/vectors/README.md.\n\
         # Generated by tests/vectors.rs; regenerate with NOISE_ECHO_REGENERATE_VECTORS=1.\n",
    );
    for (name, value) in vectors {
        let _ = writeln!(text, "{name} = {value}");
    }
    text
}

fn parse(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| {
            let (name, value) = line.split_once('=').expect("name = hex");
            (name.trim().to_owned(), value.trim().to_owned())
        })
        .collect()
}

#[tokio::test]
async fn golden_vectors_match() {
    let vectors = generate().await;
    if std::env::var_os(REGENERATE).is_some() {
        std::fs::write(vector_file(), render(&vectors)).unwrap();
        return;
    }
    let stored = std::fs::read_to_string(vector_file()).unwrap_or_else(|error| {
        panic!(
            "{}: {error}; run with {REGENERATE}=1",
            vector_file().display()
        )
    });
    let stored = parse(&stored);
    for (name, value) in &vectors {
        assert_eq!(
            stored.get(*name),
            Some(value),
            "vector '{name}' differs from tests/vectors/v1.txt"
        );
    }
    assert_eq!(stored.len(), vectors.len(), "unexpected entries in v1.txt");
}

#[tokio::test]
async fn generation_is_deterministic() {
    assert_eq!(generate().await, generate().await);
}

#[test]
fn message_sizes_on_the_wire_match_wire_v1() {
    let stored = parse(&std::fs::read_to_string(vector_file()).unwrap());
    for (name, len) in [("msg1", 32), ("msg2", 128), ("msg3", 96)] {
        // Hex digits: two per byte, plus the 2-byte length prefix.
        assert_eq!(stored[name].len(), 2 * (2 + len), "{name}");
    }
    // A 10-byte record (type, length, "hello") plus the 16-byte tag.
    assert_eq!(stored["client_request_hello"].len(), 2 * (2 + 10 + 16));
    assert_eq!(&stored["client_request_hello"][..4], "001a");
}
