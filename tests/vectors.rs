//! Golden test vectors: whole sessions with fixed identities and fixed ephemeral
//! keys, down to the bytes on the wire, for protocol v1 and for protocol v2 with each
//! suite (negotiation, payload fields, transport across rekeys). See
//! `tests/vectors/README.md`.
//!
//! Each test replays a session through the public API and compares every value with
//! its file. Run with `NOISE_ECHO_REGENERATE_VECTORS=1` to rewrite the files instead
//! (only when the protocol deliberately changes: the files are the contract other
//! implementations test against). `tests/vectors/check_vectors.py` recomputes them
//! all independently; the last test runs it.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use curve25519_dalek::montgomery::MontgomeryPoint;
use noise_echo::identity::Identity;
use noise_echo::wire::{
    decode_frame, initiate_with_fixed_ephemeral_for_testing_only,
    respond_with_fixed_ephemeral_for_testing_only, Decoded, Established, LocalIdentity, RecordType,
    Reply, Suite, DEFAULT_REQUEST_LIMIT, MIN_RESPONSE_LIMIT, NOISE_PROTOCOL, PROLOGUE,
};
use tokio::io::{duplex, AsyncRead, AsyncWrite, DuplexStream, ReadBuf};

const REGENERATE: &str = "NOISE_ECHO_REGENERATE_VECTORS";

/// Bounds every generated session: far beyond what an in-memory one takes.
const LIMIT: Duration = Duration::from_secs(20);

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

/// Runs a client and a server over a recorded in-memory pipe, each owning its end
/// (so dropping it is the end of stream the other sees), bounded in time. Returns
/// their outputs and the frames each wrote.
async fn recorded<C, S, CF, SF, CT, ST>(client: C, server: S) -> (CT, ST, Frames, Frames)
where
    C: FnOnce(Recorder) -> CF,
    S: FnOnce(Recorder) -> SF,
    CF: Future<Output = CT>,
    SF: Future<Output = ST>,
{
    let (client_io, server_io) = duplex(1 << 16);
    let (client_io, client_wrote) = recorder(client_io);
    let (server_io, server_wrote) = recorder(server_io);
    let (client, server) = tokio::time::timeout(LIMIT, async {
        tokio::join!(client(client_io), server(server_io))
    })
    .await
    .expect("the session finished in time");
    let client_frames = frames(&client_wrote.lock().unwrap());
    let server_frames = frames(&server_wrote.lock().unwrap());
    (client, server, client_frames, server_frames)
}

/// Whole frames, each with its length prefix, in the order written.
type Frames = Vec<Vec<u8>>;

/// Splits a byte stream into whole frames, each with its length prefix.
fn frames(mut bytes: &[u8]) -> Frames {
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

/// The frame's payload: what follows the 2-byte length prefix.
fn payload(frame: &[u8]) -> &[u8] {
    &frame[2..]
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut text, byte| {
        let _ = write!(text, "{byte:02x}");
        text
    })
}

/// A vector file's lines: vectors (`name = hex`) and, in v2's files, comments
/// saying what the next vectors are.
#[derive(Debug, Default, PartialEq, Eq)]
struct Vectors {
    /// `(None, comment)` (one or more lines) or `(Some(name), hex value)`, in file
    /// order.
    lines: Vec<(Option<String>, String)>,
}

impl Vectors {
    fn comment(&mut self, text: impl Into<String>) {
        self.lines.push((None, text.into()));
    }

    fn push(&mut self, name: impl Into<String>, value: &[u8]) {
        self.lines.push((Some(name.into()), hex(value)));
    }

    fn values(&self) -> impl Iterator<Item = (&str, &str)> {
        self.lines
            .iter()
            .filter_map(|(name, value)| Some((name.as_deref()?, value.as_str())))
    }

    fn render(&self, header: &str) -> String {
        let mut text = String::from(header);
        for (name, value) in &self.lines {
            match name {
                Some(name) => writeln!(text, "{name} = {value}").unwrap(),
                None => {
                    text.push('\n');
                    for line in value.lines() {
                        writeln!(text, "# {line}").unwrap();
                    }
                }
            }
        }
        text
    }
}

/// The two identities and their fixed ephemeral keys, shared by every file.
struct Parties {
    client: Identity,
    server: Identity,
    client_local: LocalIdentity,
    server_local: LocalIdentity,
    client_ephemeral: [u8; 32],
    server_ephemeral: [u8; 32],
}

impl Parties {
    fn new() -> Self {
        let client = Identity::from_seed(&counting_bytes(0x00), "client");
        let server = Identity::from_seed(&counting_bytes(0x20), "server");
        Self {
            client_local: LocalIdentity::new(&client),
            server_local: LocalIdentity::new(&server),
            client,
            server,
            client_ephemeral: counting_bytes(0x40),
            server_ephemeral: counting_bytes(0x60),
        }
    }

    /// Each side's seed, keys and ephemeral key, in file order.
    fn push_keys(&self, vectors: &mut Vectors) {
        let x25519_public =
            |private: &[u8; 32]| MontgomeryPoint::mul_base_clamped(*private).to_bytes();
        for (side, identity, seed, ephemeral) in [
            ("client", &self.client, 0x00, &self.client_ephemeral),
            ("server", &self.server, 0x20, &self.server_ephemeral),
        ] {
            let noise = identity.noise_keypair();
            vectors.push(format!("{side}_ed25519_seed"), &counting_bytes(seed));
            vectors.push(
                format!("{side}_ed25519_public"),
                identity.public_key().as_bytes(),
            );
            vectors.push(format!("{side}_x25519_private"), noise.private());
            vectors.push(format!("{side}_x25519_public"), noise.public());
            vectors.push(format!("{side}_ephemeral_private"), ephemeral);
            vectors.push(
                format!("{side}_ephemeral_public"),
                &x25519_public(ephemeral),
            );
        }
    }
}

/// Runs the v1 reference session and returns its vectors, in file order.
async fn generate_v1() -> Vectors {
    let parties = Parties::new();
    let ((client, client_io), (server, server_io), client_frames, server_frames) = recorded(
        |mut io| async {
            let pending = initiate_with_fixed_ephemeral_for_testing_only(
                &mut io,
                &parties.client_local,
                &parties.client_ephemeral,
            )
            .await
            .unwrap();
            assert_eq!(pending.server_key(), &parties.server.public_key());
            (pending.approve(&mut io).await.unwrap(), io)
        },
        |mut io| async {
            let server = respond_with_fixed_ephemeral_for_testing_only(
                &mut io,
                &parties.server_local,
                &parties.server_ephemeral,
            )
            .await
            .unwrap();
            (server, io)
        },
    )
    .await;
    assert_eq!(server.peer(), &parties.client.public_key());
    assert_eq!(client.handshake_hash(), server.handshake_hash());
    assert_eq!((client_frames.len(), server_frames.len()), (2, 1));
    let handshake_hash = *client.handshake_hash();
    let (client_transport, server_transport) = transport(
        (client, client_io),
        (server, server_io),
        &[b"hello".as_slice()],
    )
    .await;

    let mut vectors = Vectors::default();
    vectors.push("protocol_name", NOISE_PROTOCOL.as_bytes());
    vectors.push("prologue", PROLOGUE);
    parties.push_keys(&mut vectors);
    vectors.push("msg1", &client_frames[0]);
    vectors.push("msg2", &server_frames[0]);
    vectors.push("msg3", &client_frames[1]);
    vectors.push("handshake_hash", &handshake_hash);
    vectors.push("client_request_hello", &client_transport[0]);
    vectors.push("server_response_hello", &server_transport[0]);
    vectors
}

/// Runs the echo over an established pair: each request in its own transport
/// message, answered (its ASCII uppercase) before the next, then the client's clean
/// end of stream. Returns the transport frames each side wrote.
async fn transport(
    (client, client_io): (Established, Recorder),
    (server, server_io): (Established, Recorder),
    requests: &[&[u8]],
) -> (Frames, Frames) {
    let client_wrote = Arc::clone(&client_io.written);
    let server_wrote = Arc::clone(&server_io.written);
    let client_start = client_wrote.lock().unwrap().len();
    let server_start = server_wrote.lock().unwrap().len();
    let (mut client_rx, mut client_tx) = client.into_split(client_io);
    let (mut server_rx, mut server_tx) = server.into_split(server_io);
    let session = async {
        for request in requests {
            client_tx
                .write_record(RecordType::Request, request)
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
            assert_eq!(&body, request);
            let response = request.to_ascii_uppercase();
            server_tx
                .write_record(RecordType::Response, &response)
                .await
                .unwrap();
            server_tx.flush().await.unwrap();
            assert_eq!(
                client_rx.read_reply(MIN_RESPONSE_LIMIT).await.unwrap(),
                Some(Reply::Response(response))
            );
        }
        // A clean end in both directions: each receiver has checked every message
        // it opened (in v2, that none missed a rekey the policy required).
        client_tx.shutdown().await.unwrap();
        assert_eq!(server_rx.next_record().await.unwrap(), None);
        server_tx.shutdown().await.unwrap();
        assert_eq!(
            client_rx.read_reply(MIN_RESPONSE_LIMIT).await.unwrap(),
            None
        );
    };
    tokio::time::timeout(LIMIT, session)
        .await
        .expect("the session finished in time");
    let client_frames = frames(&client_wrote.lock().unwrap()[client_start..]);
    let server_frames = frames(&server_wrote.lock().unwrap()[server_start..]);
    assert_eq!(client_frames.len(), requests.len());
    assert_eq!(server_frames.len(), requests.len());
    (client_frames, server_frames)
}

// The crate root of this test is tests/vectors.rs, so its modules need a path.
#[path = "vectors/replay.rs"]
mod replay;
#[path = "vectors/v2.rs"]
mod v2;

use v2::generate_v2;

/// Where each file lives, and the header its regeneration writes.
struct VectorFile {
    name: &'static str,
    header: &'static str,
}

const V1_FILE: VectorFile = VectorFile {
    name: "v1.txt",
    header: "# noise-echo wire-v1 golden vectors. Format: tests/vectors/README.md.\n\
             # Generated by tests/vectors.rs; regenerate with NOISE_ECHO_REGENERATE_VECTORS=1.\n",
};

fn v2_file(suite: Suite) -> VectorFile {
    match suite {
        Suite::ChaChaPolyBlake2s => VectorFile {
            name: "v2-chachapoly.txt",
            header: "# noise-echo protocol v2 golden vectors, Noise_XX_25519_ChaChaPoly_BLAKE2s. \
                     Format: tests/vectors/README.md.\n\
                     # Generated by tests/vectors.rs; regenerate with NOISE_ECHO_REGENERATE_VECTORS=1.\n",
        },
        _ => VectorFile {
            name: "v2-aesgcm.txt",
            header: "# noise-echo protocol v2 golden vectors, Noise_XX_25519_AESGCM_SHA256. \
                     Format: tests/vectors/README.md.\n\
                     # Generated by tests/vectors.rs; regenerate with NOISE_ECHO_REGENERATE_VECTORS=1.\n",
        },
    }
}

fn vector_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/vectors")
        .join(name)
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

fn stored(file: &VectorFile) -> BTreeMap<String, String> {
    let path = vector_path(file.name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("{}: {error}; run with {REGENERATE}=1", path.display()));
    parse(&text)
}

/// Compares `vectors` with the file, every value and nothing more; or rewrites it
/// under NOISE_ECHO_REGENERATE_VECTORS.
fn check_or_regenerate(file: &VectorFile, vectors: &Vectors) {
    if std::env::var_os(REGENERATE).is_some() {
        std::fs::write(vector_path(file.name), vectors.render(file.header)).unwrap();
        return;
    }
    let stored = stored(file);
    for (name, value) in vectors.values() {
        assert_eq!(
            stored.get(name).map(String::as_str),
            Some(value),
            "vector '{name}' differs from tests/vectors/{}",
            file.name
        );
    }
    assert_eq!(
        stored.len(),
        vectors.values().count(),
        "unexpected entries in {}",
        file.name
    );
}

#[tokio::test]
async fn v1_golden_vectors_match() {
    check_or_regenerate(&V1_FILE, &generate_v1().await);
}

#[tokio::test]
async fn v2_chachapoly_golden_vectors_match() {
    let suite = Suite::ChaChaPolyBlake2s;
    check_or_regenerate(&v2_file(suite), &generate_v2(suite).await);
}

#[tokio::test]
async fn v2_aesgcm_golden_vectors_match() {
    let suite = Suite::AesGcmSha256;
    check_or_regenerate(&v2_file(suite), &generate_v2(suite).await);
}

#[tokio::test]
async fn generation_is_deterministic() {
    assert_eq!(generate_v1().await, generate_v1().await);
    for suite in Suite::ALL {
        assert_eq!(generate_v2(suite).await, generate_v2(suite).await);
    }
}

/// Frame lengths in hex digits: two per byte, plus the 2-byte length prefix.
fn assert_frame_len(stored: &BTreeMap<String, String>, name: &str, len: usize) {
    assert_eq!(stored[name].len(), 2 * (2 + len), "{name}");
    assert_eq!(&stored[name][..4], format!("{len:04x}"), "{name}");
}

#[test]
fn message_sizes_on_the_wire_match_the_protocol() {
    let v1 = stored(&V1_FILE);
    for (name, len) in [("msg1", 32), ("msg2", 128), ("msg3", 96)] {
        assert_frame_len(&v1, name, len);
    }
    // A 10-byte record (type, length, "hello") plus the 16-byte tag.
    assert_frame_len(&v1, "client_request_hello", 10 + 16);

    for (suite, offer_len) in [(Suite::AesGcmSha256, 41), (Suite::ChaChaPolyBlake2s, 46)] {
        let v2 = stored(&v2_file(suite));
        // docs/PROTOCOL.md section 11: 32 + 48 + payload + 16, 48 + payload + 16,
        // with the required fields only (68 and 36 bytes).
        for (name, len) in [
            ("offer", offer_len),
            ("msg1", 32),
            ("answer", 1),
            ("msg2", 32 + 48 + 68 + 16),
            ("msg3", 48 + 36 + 16),
            ("client_message_0", 10 + 16),
            ("client_message_1", 10 + 5 + 16),
            ("retry_refused_answer", 1),
        ] {
            assert_frame_len(&v2, name, len);
        }
        assert_eq!(v2["prologue"], v2["offer"][4..]);
        assert_eq!(&v2["client_plaintext_1"][20..], "0400000000", "REKEY last");
    }
}

/// The independent Python implementation (tests/vectors/check_vectors.py) agrees
/// with every file. Skipped, saying so, where `python3` cannot import
/// `cryptography`; under `CI` that is a failure (`.ci/run` installs it), so the
/// check cannot silently stop running.
#[test]
fn independent_python_checker_agrees() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/vectors");
    let probe = std::process::Command::new("python3")
        .args(["-c", "import cryptography"])
        .output();
    if !probe.is_ok_and(|output| output.status.success()) {
        assert!(
            std::env::var_os("CI").is_none(),
            "python3 with the cryptography package must exist in CI"
        );
        eprintln!("skipped: python3 cannot import cryptography (pip install cryptography)");
        return;
    }
    let output = std::process::Command::new("python3")
        .arg(dir.join("check_vectors.py"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "check_vectors.py disagrees:\n{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for file in ["v1.txt", "v2-chachapoly.txt", "v2-aesgcm.txt"] {
        assert!(
            stdout.contains(&format!("{file}: all ")),
            "{file} not checked:\n{stdout}"
        );
    }
}
