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
    decode_frame, encode_frame, encode_message2, encode_message3, encode_record,
    initiate_v2_with_fixed_ephemeral_for_testing_only,
    initiate_with_fixed_ephemeral_for_testing_only,
    respond_any_with_fixed_ephemeral_for_testing_only,
    respond_with_fixed_ephemeral_for_testing_only, Decoded, Established, LocalIdentity, Mismatch,
    Offer, ProtocolVersion, RecordType, RekeyPolicy, Reply, ResponderSettings, ServerParams, Suite,
    WireError, DEFAULT_REQUEST_LIMIT, MIN_RESPONSE_LIMIT, NOISE_PROTOCOL, PROLOGUE,
};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, CHACHA20_POLY1305};
use tokio::io::{duplex, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream, ReadBuf};

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
    /// `(None, comment)` or `(Some(name), hex value)`, in file order.
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
                Some(name) => writeln!(text, "{name} = {value}"),
                None => writeln!(text, "\n# {value}"),
            }
            .unwrap();
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
        assert_eq!(client_rx.read_reply(MIN_RESPONSE_LIMIT).await.unwrap(), None);
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

/// The v2 server's parameters in the vector sessions: the default request limit,
/// and a rekey policy tiny enough that both count rules fire within four messages
/// (the time rule, an hour, never does).
const V2_PARAMS: ServerParams = ServerParams {
    max_request: DEFAULT_REQUEST_LIMIT,
    rekey: RekeyPolicy {
        max_messages: 2,
        max_bytes: 100,
        max_interval: Duration::from_secs(3600),
    },
};

/// The v2 sessions' requests: the second is its sender's second message under the
/// first key (`max_messages`), the third passes `max_bytes` alone, the fourth runs
/// under the third key.
const V2_REQUESTS: [&[u8]; 4] = [
    b"hello",
    b"world",
    b"rekeying by bytes: this request and its response carry over one hundred \
      bytes of plaintext, so both end with REKEY",
    b"bye",
];

/// The REKEY record (type 4, empty body), last in a transport message's plaintext.
const REKEY_RECORD: [u8; 5] = [4, 0, 0, 0, 0];

fn v2_settings(suites: &[Suite]) -> ResponderSettings {
    ResponderSettings {
        suites: suites.to_vec(),
        v1_enabled: true,
        params: V2_PARAMS,
    }
}

/// The other suite: what a server that refuses this file's runs.
fn other(suite: Suite) -> Suite {
    *Suite::ALL.iter().find(|other| **other != suite).unwrap()
}

/// The frame's payload: what follows the 2-byte length prefix.
fn payload(frame: &[u8]) -> &[u8] {
    &frame[2..]
}

/// Runs the v2 reference session for `suite`, and the negotiation failures around
/// it, and returns their vectors in file order.
async fn generate_v2(suite: Suite) -> Vectors {
    let parties = Parties::new();
    let p = &parties;
    let offer = Offer::new(suite);
    let settings = v2_settings(&Suite::ALL);
    let ((client, client_io), (server, server_io), client_frames, server_frames) = recorded(
        |mut io| async move {
            let pending = initiate_v2_with_fixed_ephemeral_for_testing_only(
                &mut io,
                &p.client_local,
                &Offer::new(suite),
                &p.client_ephemeral,
            )
            .await
            .unwrap();
            assert_eq!(pending.server_key(), &p.server.public_key());
            assert_eq!(pending.server_params(), Some(&V2_PARAMS));
            (pending.approve(&mut io).await.unwrap(), io)
        },
        |mut io| async move {
            let server = respond_any_with_fixed_ephemeral_for_testing_only(
                &mut io,
                &p.server_local,
                &v2_settings(&Suite::ALL),
                &p.server_ephemeral,
            )
            .await
            .unwrap();
            (server, io)
        },
    )
    .await;
    assert_eq!(server.peer(), &parties.client.public_key());
    for established in [&client, &server] {
        assert_eq!(established.version(), ProtocolVersion::V2);
        assert_eq!(established.suite(), suite);
        assert_eq!(established.rekey_policy(), Some(&V2_PARAMS.rekey));
    }
    assert_eq!(client.handshake_hash(), server.handshake_hash());
    assert_eq!((client_frames.len(), server_frames.len()), (3, 2));
    let handshake_hash = *client.handshake_hash();
    let (client_transport, server_transport) =
        transport((client, client_io), (server, server_io), &V2_REQUESTS).await;

    // An independent replay of the handshake (snow, fed the library's messages)
    // opens messages 2 and 3, which gives their payloads, and the split's keys.
    let replay = SnowReplay::run(
        &parties,
        suite,
        &offer.encode(),
        [&client_frames[1], &server_frames[1], &client_frames[2]],
    );
    assert_eq!(replay.handshake_hash, handshake_hash);
    assert_eq!(
        replay.msg2_payload,
        encode_message2(parties.server.public_key().as_bytes(), &settings.params)
    );
    assert_eq!(
        replay.msg3_payload,
        encode_message3(parties.client.public_key().as_bytes())
    );

    let mut vectors = Vectors::default();
    vectors.push("protocol_name", suite.noise_name().as_bytes());
    parties.push_keys(&mut vectors);
    vectors.comment(format!(
        "The negotiation and the handshake. The client writes offer and msg1 at once, \
         the server answer and msg2;\n# the prologue is the offer's payload. The server \
         advertises max_request {}, max_messages {},\n# max_bytes {}, max_seconds {}.",
        V2_PARAMS.max_request,
        V2_PARAMS.rekey.max_messages,
        V2_PARAMS.rekey.max_bytes,
        V2_PARAMS.rekey.max_interval.as_secs()
    ));
    vectors.push("prologue", payload(&client_frames[0]));
    vectors.push("offer", &client_frames[0]);
    vectors.push("msg1", &client_frames[1]);
    vectors.push("answer", &server_frames[0]);
    vectors.push("msg2_payload", &replay.msg2_payload);
    vectors.push("msg2", &server_frames[1]);
    vectors.push("msg3_payload", &replay.msg3_payload);
    vectors.push("msg3", &client_frames[2]);
    vectors.push("handshake_hash", &handshake_hash);
    for (side, frames, key, record_type) in [
        (
            "client",
            &client_transport,
            replay.client_key,
            RecordType::Request,
        ),
        (
            "server",
            &server_transport,
            replay.server_key,
            RecordType::Response,
        ),
    ] {
        push_transport(&mut vectors, suite, side, frames, key, record_type);
    }
    push_negotiation_failures(&mut vectors, &parties, suite).await;
    vectors
}

/// Opens one side's transport messages with its split key, following its REKEY
/// records, and records keys, plaintexts and messages. Each plaintext must be the
/// expected record, then nothing or one REKEY record: where the REKEYs fall is the
/// library's doing (and the Python checker's to confirm).
fn push_transport(
    vectors: &mut Vectors,
    suite: Suite,
    side: &str,
    frames: &[Vec<u8>],
    mut key: [u8; 32],
    record_type: RecordType,
) {
    let mut epoch = 0;
    vectors.comment(format!(
        "Transport, {side} to {}: message N has nonce N; the key changes after each \
         message ending with REKEY.",
        if side == "client" { "server" } else { "client" }
    ));
    vectors.push(format!("{side}_send_key_{epoch}"), &key);
    for (index, (frame, request)) in frames.iter().zip(V2_REQUESTS).enumerate() {
        let plaintext = open(suite, &key, index as u64, payload(frame));
        let body = match record_type {
            RecordType::Request => request.to_vec(),
            _ => request.to_ascii_uppercase(),
        };
        let mut record = Vec::new();
        encode_record(record_type, &body, &mut record).unwrap();
        let rest = plaintext
            .strip_prefix(record.as_slice())
            .expect("the plaintext starts with the record sent");
        vectors.push(format!("{side}_plaintext_{index}"), &plaintext);
        vectors.push(format!("{side}_message_{index}"), frame);
        match rest {
            [] => {}
            rest if rest == REKEY_RECORD => {
                key = rekey(suite, &key);
                epoch += 1;
                vectors.push(format!("{side}_send_key_{epoch}"), &key);
            }
            rest => panic!("unexpected bytes after the record: {}", hex(rest)),
        }
    }
}

fn algorithm(suite: Suite) -> &'static ring::aead::Algorithm {
    match suite {
        Suite::ChaChaPolyBlake2s => &CHACHA20_POLY1305,
        Suite::AesGcmSha256 => &AES_256_GCM,
        _ => unreachable!("a suite without a cipher here: {suite}"),
    }
}

/// Noise's nonce for `suite`: 4 zero bytes, then the counter, little-endian for
/// ChaChaPoly and big-endian for AESGCM.
fn nonce(suite: Suite, counter: u64) -> Nonce {
    let mut bytes = [0; 12];
    match suite {
        Suite::AesGcmSha256 => bytes[4..].copy_from_slice(&counter.to_be_bytes()),
        _ => bytes[4..].copy_from_slice(&counter.to_le_bytes()),
    }
    Nonce::assume_unique_for_key(bytes)
}

fn ring_key(suite: Suite, key: &[u8; 32]) -> LessSafeKey {
    LessSafeKey::new(UnboundKey::new(algorithm(suite), key).unwrap())
}

fn open(suite: Suite, key: &[u8; 32], counter: u64, message: &[u8]) -> Vec<u8> {
    let mut in_out = message.to_vec();
    let len = ring_key(suite, key)
        .open_in_place(nonce(suite, counter), Aad::empty(), &mut in_out)
        .expect("the transport message opens with its key and nonce")
        .len();
    in_out.truncate(len);
    in_out
}

/// Noise `Rekey()`: the first 32 bytes of the encryption of 32 zero bytes at
/// nonce 2^64 - 1 with empty associated data.
fn rekey(suite: Suite, key: &[u8; 32]) -> [u8; 32] {
    let mut next = [0u8; 32];
    let _tag = ring_key(suite, key)
        .seal_in_place_separate_tag(nonce(suite, u64::MAX), Aad::empty(), &mut next)
        .unwrap();
    next
}

/// snow, driven directly as both Noise parties with the vectors' keys, fed the
/// library's handshake messages: it must produce the same messages, and it reveals
/// what the library encrypted.
struct SnowReplay {
    /// Message 2's plaintext payload, as the client opens it.
    msg2_payload: Vec<u8>,
    /// Message 3's plaintext payload, as the server opens it.
    msg3_payload: Vec<u8>,
    /// Noise's handshake hash after message 3.
    handshake_hash: [u8; 32],
    /// The split's first key: client to server.
    client_key: [u8; 32],
    /// The split's second key: server to client.
    server_key: [u8; 32],
}

impl SnowReplay {
    /// `messages`: msg1, msg2 and msg3 as framed on the wire.
    fn run(parties: &Parties, suite: Suite, prologue: &[u8], messages: [&[u8]; 3]) -> Self {
        let [msg1, msg2, msg3] = messages.map(payload);
        fn builder<'a>(
            suite: Suite,
            prologue: &'a [u8],
            private: &'a [u8; 32],
            ephemeral: &'a [u8; 32],
        ) -> snow::Builder<'a> {
            snow::Builder::new(suite.noise_name().parse().unwrap())
                .prologue(prologue)
                .unwrap()
                .local_private_key(private)
                .unwrap()
                .fixed_ephemeral_key_for_testing_only(ephemeral)
        }
        let client_noise = parties.client.noise_keypair();
        let server_noise = parties.server.noise_keypair();
        let mut initiator = builder(suite, prologue, client_noise.private(), &parties.client_ephemeral)
            .build_initiator()
            .unwrap();
        let mut responder = builder(suite, prologue, server_noise.private(), &parties.server_ephemeral)
            .build_responder()
            .unwrap();
        let mut out = vec![0u8; 65535];
        let mut read = vec![0u8; 65535];
        let len = initiator.write_message(&[], &mut out).unwrap();
        assert_eq!(&out[..len], msg1);
        assert_eq!(responder.read_message(msg1, &mut read).unwrap(), 0);
        let len = initiator.read_message(msg2, &mut read).unwrap();
        let msg2_payload = read[..len].to_vec();
        let len = responder.write_message(&msg2_payload, &mut out).unwrap();
        assert_eq!(&out[..len], msg2);
        // The client's payload is what the server opens from the library's msg3;
        // snow's initiator, given it, writes that same msg3.
        let len = responder.read_message(msg3, &mut read).unwrap();
        let msg3_payload = read[..len].to_vec();
        let len = initiator.write_message(&msg3_payload, &mut out).unwrap();
        assert_eq!(&out[..len], msg3);
        assert_eq!(initiator.get_handshake_hash(), responder.get_handshake_hash());
        let handshake_hash = initiator.get_handshake_hash().try_into().unwrap();
        let (client_key, server_key) = initiator.dangerously_get_raw_split();
        assert_eq!(
            (client_key, server_key),
            responder.dangerously_get_raw_split()
        );
        Self {
            msg2_payload,
            msg3_payload,
            handshake_hash,
            client_key,
            server_key,
        }
    }
}

/// The negotiation's refusals, through the library's real client and server: a
/// server running only the other suite, the client's retry offer and this server's
/// refusal of it, and an offer of a version this server does not speak.
async fn push_negotiation_failures(vectors: &mut Vectors, parties: &Parties, suite: Suite) {
    let p = parties;
    let refused = other(suite);
    vectors.comment(format!(
        "Negotiation failures: a server running only {} answers this offer; the \
         client's retry on a new connection;\n# this file's server's answer to that \
         retry, and to an offer of version 3.",
        refused.noise_name()
    ));
    let client = |offer: Offer| {
        move |mut io: Recorder| async move {
            initiate_v2_with_fixed_ephemeral_for_testing_only(
                &mut io,
                &p.client_local,
                &offer,
                &p.client_ephemeral,
            )
            .await
            .map(|_| ())
        }
    };
    let server = |suites: Vec<Suite>| {
        move |mut io: Recorder| async move {
            respond_any_with_fixed_ephemeral_for_testing_only(
                &mut io,
                &p.server_local,
                &v2_settings(&suites),
                &p.server_ephemeral,
            )
            .await
            .map(|_| ())
        }
    };

    let (client_result, server_result, _, server_frames) =
        recorded(client(Offer::new(suite)), server(vec![refused])).await;
    let accepted = vec![refused.noise_name().to_owned()];
    for result in [client_result, server_result] {
        match result {
            Err(WireError::Mismatch(Mismatch::UnsupportedSuite {
                offered,
                accepted: listed,
            })) => assert_eq!((offered.as_str(), &listed), (suite.noise_name(), &accepted)),
            other => panic!("expected UNSUPPORTED_SUITE, got {other:?}"),
        }
    }
    assert_eq!(server_frames.len(), 1);
    vectors.push("unsupported_suite_answer", &server_frames[0]);

    let (client_result, server_result, client_frames, server_frames) = recorded(
        client(Offer::retrying(refused, suite)),
        server(Suite::ALL.to_vec()),
    )
    .await;
    for result in [client_result, server_result] {
        assert!(
            matches!(result, Err(WireError::Mismatch(Mismatch::RetryRefused { ref rejected }))
                if rejected == suite.noise_name()),
            "expected RETRY_REFUSED, got {result:?}"
        );
    }
    assert_eq!((client_frames.len(), server_frames.len()), (2, 1));
    vectors.push("retry_offer", &client_frames[0]);

    // A later version's offer: v2's with the version byte 3.
    let mut future = Offer::new(suite).encode();
    future[10] = 3;
    let (answer, server_result, _, version_frames) = recorded(
        |mut io: Recorder| async move {
            let mut first = Vec::new();
            encode_frame(&future, &mut first).unwrap();
            let ephemeral = MontgomeryPoint::mul_base_clamped(p.client_ephemeral).to_bytes();
            encode_frame(&ephemeral, &mut first).unwrap();
            io.write_all(&first).await.unwrap();
            let mut answer = Vec::new();
            io.read_to_end(&mut answer).await.unwrap();
            answer
        },
        server(Suite::ALL.to_vec()),
    )
    .await;
    assert!(
        matches!(server_result, Err(WireError::Mismatch(Mismatch::UnsupportedVersion { offered: 3, .. }))),
        "expected UNSUPPORTED_VERSION, got {server_result:?}"
    );
    assert_eq!(version_frames, [answer]);
    vectors.push("unsupported_version_answer", &version_frames[0]);
    vectors.push("retry_refused_answer", &server_frames[0]);
}

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
