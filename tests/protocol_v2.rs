//! Wire-level interoperability of protocol v2 (docs/PROTOCOL.md): the library's
//! drivers against each other over in-memory pipes and loopback TCP, and against
//! hand-driven snow peers for what a good peer never sends. Each suite both ways,
//! a v1 client against the v2 server, a v2 client against a v1-only server,
//! tampered offers, unsupported suites and versions, refused retries, and payloads
//! with huge or unknown critical fields.

use std::future::Future;
use std::time::Duration;

use noise_echo::identity::Identity;
use noise_echo::wire::{
    self, decode_frame, encode_frame, initiate_v2, respond_any, Decoded, LocalIdentity, Mismatch,
    Offer, PayloadProblem, ProtocolVersion, RecordType, Refusal, RekeyPolicy, Reply,
    ResponderSettings, ServerParams, Suite, Violation, WireError,
};
use tokio::io::{duplex, AsyncReadExt, AsyncWriteExt, DuplexStream};

/// Bounds every exchange: far beyond what an in-memory handshake takes.
const LIMIT: Duration = Duration::from_secs(20);

async fn bounded<T>(future: impl Future<Output = T>) -> T {
    tokio::time::timeout(LIMIT, future)
        .await
        .expect("the exchange finished in time")
}

fn identity(seed: u8) -> Identity {
    Identity::from_seed(&[seed; 32], format!("test {seed}"))
}

fn params() -> ServerParams {
    ServerParams::new(
        12345,
        RekeyPolicy {
            max_messages: 1000,
            max_bytes: 1 << 20,
            max_interval: Duration::from_secs(60),
        },
    )
}

fn settings(suites: &[Suite], v1_enabled: bool) -> ResponderSettings {
    ResponderSettings::new(suites.to_vec(), v1_enabled, params())
}

/// Runs the client and the server futures, each dropping its end when done so the
/// other sees the end of stream.
async fn pair<C, S, CF, SF, CT, ST>(client: C, server: S) -> (CT, ST)
where
    C: FnOnce(DuplexStream) -> CF,
    S: FnOnce(DuplexStream) -> SF,
    CF: Future<Output = CT>,
    SF: Future<Output = ST>,
{
    let (client_io, server_io) = duplex(1 << 16);
    bounded(async { tokio::join!(client(client_io), server(server_io)) }).await
}

async fn v2_client(
    mut io: DuplexStream,
    offer: Offer,
) -> (wire::Result<wire::Established>, DuplexStream) {
    let local = LocalIdentity::new(&identity(1));
    let result = match initiate_v2(&mut io, &local, &offer).await {
        Ok(pending) => pending.approve(&mut io).await,
        Err(error) => Err(error),
    };
    (result, io)
}

async fn any_server(
    mut io: DuplexStream,
    settings: ResponderSettings,
) -> (wire::Result<wire::Established>, DuplexStream) {
    let local = LocalIdentity::new(&identity(2));
    let result = respond_any(&mut io, &local, &settings).await;
    (result, io)
}

fn mismatch(result: &wire::Result<wire::Established>) -> &Mismatch {
    match result {
        Err(WireError::Mismatch(mismatch)) => mismatch,
        other => panic!("expected a mismatch, got {other:?}"),
    }
}

fn violation(result: &wire::Result<wire::Established>) -> &Violation {
    match result {
        Err(WireError::PeerMisbehaved(violation)) => violation,
        other => panic!("expected a violation, got {other:?}"),
    }
}

/// One request and its reply through an established pair.
async fn echo_once(
    client: wire::Established,
    client_io: DuplexStream,
    server: wire::Established,
    server_io: DuplexStream,
) {
    let (client_read, client_write) = tokio::io::split(client_io);
    let (server_read, server_write) = tokio::io::split(server_io);
    let (mut client_rx, mut client_tx) = client.into_halves(client_read, client_write);
    let (mut server_rx, mut server_tx) = server.into_halves(server_read, server_write);
    let serve = async {
        let header = server_rx.next_record().await.unwrap().unwrap();
        assert_eq!(header.record_type, RecordType::Request);
        let mut body = Vec::new();
        server_rx.read_body(&mut body, 1024).await.unwrap();
        server_tx
            .write_record(RecordType::Response, &body.to_ascii_uppercase())
            .await
            .unwrap();
        server_tx.flush().await.unwrap();
    };
    let ask = async {
        client_tx
            .write_record(RecordType::Request, b"hello v2")
            .await
            .unwrap();
        client_tx.flush().await.unwrap();
        client_rx.read_reply(1024).await.unwrap()
    };
    let ((), reply) = bounded(async { tokio::join!(serve, ask) }).await;
    assert_eq!(reply, Some(Reply::Response(b"HELLO V2".to_vec())));
}

#[tokio::test]
async fn each_suite_runs_both_ways_and_carries_the_server_params() {
    for suite in Suite::ALL {
        for preference in [Suite::ALL.to_vec(), vec![suite]] {
            let ((client, client_io), (server, server_io)) = pair(
                |io| v2_client(io, Offer::new(suite)),
                |io| any_server(io, settings(&preference, true)),
            )
            .await;
            let (client, server) = (client.unwrap(), server.unwrap());
            for side in [&client, &server] {
                assert_eq!(side.version(), ProtocolVersion::V2);
                assert_eq!(side.suite(), suite);
                assert_eq!(side.server_params(), Some(params()));
                assert_eq!(side.rekey_policy(), Some(&params().rekey));
            }
            assert_eq!(client.peer(), &identity(2).public_key());
            assert_eq!(server.peer(), &identity(1).public_key());
            assert_eq!(client.handshake_hash(), server.handshake_hash());
            echo_once(client, client_io, server, server_io).await;
        }
    }
}

#[tokio::test]
async fn the_two_suites_and_versions_give_different_sessions() {
    let mut hashes = Vec::new();
    for suite in Suite::ALL {
        let ((client, _), (server, _)) = pair(
            |io| v2_client(io, Offer::new(suite)),
            |io| any_server(io, settings(&Suite::ALL, true)),
        )
        .await;
        assert_eq!(client.unwrap().suite(), server.unwrap().suite());
        let ((client, _), _) = pair(
            |io| v2_client(io, Offer::new(suite)),
            |io| any_server(io, settings(&Suite::ALL, true)),
        )
        .await;
        hashes.push(*client.unwrap().handshake_hash());
    }
    assert_ne!(hashes[0], hashes[1]);
}

#[tokio::test]
async fn a_v1_client_is_served_unchanged_by_respond_any() {
    let ((client, client_io), (server, server_io)) = pair(
        |mut io| async move {
            let local = LocalIdentity::new(&identity(1));
            let result = wire::initiate_checked(&mut io, &local, |_| Ok::<_, String>(())).await;
            (result, io)
        },
        |io| any_server(io, settings(&Suite::ALL, true)),
    )
    .await;
    let (client, server) = (client.unwrap(), server.unwrap());
    for side in [&client, &server] {
        assert_eq!(side.version(), ProtocolVersion::V1);
        assert_eq!(side.suite(), Suite::ChaChaPolyBlake2s);
        assert_eq!(side.server_params(), None);
        assert_eq!(side.rekey_policy(), None);
    }
    assert_eq!(client.handshake_hash(), server.handshake_hash());
    echo_once(client, client_io, server, server_io).await;
}

#[tokio::test]
async fn a_v1_client_of_a_server_without_v1_sees_the_connection_closed() {
    for settings in [
        settings(&Suite::ALL, false),
        settings(&[Suite::AesGcmSha256], true),
    ] {
        let ((client, _), (server, _)) = pair(
            |mut io| async move {
                let local = LocalIdentity::new(&identity(1));
                let result = wire::initiate(&mut io, &local).await.map(|_| ());
                (result, io)
            },
            |io| async move {
                let (result, io) = any_server(io, settings).await;
                drop(io);
                (result, ())
            },
        )
        .await;
        assert_eq!(mismatch(&server), &Mismatch::V1NotServed);
        assert!(
            matches!(
                client,
                Err(WireError::NotAllowed(Refusal::ClosedBeforeHandshake))
            ),
            "{client:?}"
        );
    }
}

#[tokio::test]
async fn a_v2_client_of_a_v1_only_server_is_told_to_try_protocol_1() {
    // In memory: the v1 server refuses the offer's size and closes.
    let ((client, _), server) = pair(
        |io| v2_client(io, Offer::new(Suite::AesGcmSha256)),
        |mut io| async move {
            let result = wire::respond(&mut io, &LocalIdentity::new(&identity(2))).await;
            drop(io);
            result
        },
    )
    .await;
    assert!(matches!(
        server.unwrap_err().violation(),
        Some(Violation::HandshakeMessageSize { message: 1, .. })
    ));
    let error = client.unwrap_err();
    assert!(
        matches!(error, WireError::NotAllowed(Refusal::ClosedBeforeAnswer)),
        "{error:?}"
    );
    assert!(error.to_string().contains("--protocol 1"), "{error}");

    // Over loopback TCP, where closing with the client's message 1 unread resets.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let result = wire::respond(&mut stream, &LocalIdentity::new(&identity(2))).await;
        drop(stream);
        result.is_err()
    });
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let local = LocalIdentity::new(&identity(1));
    let error = bounded(initiate_v2(
        &mut stream,
        &local,
        &Offer::new(Suite::AesGcmSha256),
    ))
    .await
    .unwrap_err();
    assert!(
        matches!(error, WireError::NotAllowed(Refusal::ClosedBeforeAnswer)),
        "{error:?}"
    );
    assert!(bounded(server).await.unwrap());
}

#[tokio::test]
async fn an_unsupported_suite_is_answered_and_the_retry_succeeds() {
    let only_chacha = settings(&[Suite::ChaChaPolyBlake2s], true);
    let ((client, _), (server, _)) = pair(
        |io| v2_client(io, Offer::new(Suite::AesGcmSha256)),
        |io| any_server(io, only_chacha.clone()),
    )
    .await;
    let expected = Mismatch::UnsupportedSuite {
        offered: Suite::AesGcmSha256.noise_name().to_owned(),
        accepted: vec![Suite::ChaChaPolyBlake2s.noise_name().to_owned()],
    };
    assert_eq!(mismatch(&client), &expected);
    assert_eq!(mismatch(&server), &expected);
    // The retry names the rejected suite, which this server indeed rejects.
    let retry = Offer::retrying(Suite::ChaChaPolyBlake2s, Suite::AesGcmSha256);
    let ((client, _), (server, _)) = pair(
        |io| v2_client(io, retry),
        |io| any_server(io, only_chacha.clone()),
    )
    .await;
    assert_eq!(client.unwrap().suite(), Suite::ChaChaPolyBlake2s);
    assert_eq!(server.unwrap().suite(), Suite::ChaChaPolyBlake2s);
}

#[tokio::test]
async fn a_retry_after_a_forged_rejection_is_refused() {
    // The client was told (by someone) that AES-GCM is unsupported; this server
    // accepts it, so the rejection was not its own.
    let retry = Offer::retrying(Suite::ChaChaPolyBlake2s, Suite::AesGcmSha256);
    let ((client, _), (server, _)) = pair(
        |io| v2_client(io, retry),
        |io| any_server(io, settings(&Suite::ALL, true)),
    )
    .await;
    let expected = Mismatch::RetryRefused {
        rejected: Suite::AesGcmSha256.noise_name().to_owned(),
    };
    assert_eq!(mismatch(&client), &expected);
    assert_eq!(mismatch(&server), &expected);
    assert!(client
        .unwrap_err()
        .to_string()
        .contains("a man in the middle?"));
}

/// Sends `first` (raw bytes) as a client and returns everything the server wrote
/// until it closed, and its result.
async fn raw_exchange(
    first: Vec<u8>,
    settings: ResponderSettings,
) -> (Vec<u8>, wire::Result<wire::Established>) {
    let (reply, (server, _)) = pair(
        |mut io| async move {
            io.write_all(&first).await.unwrap();
            let mut reply = Vec::new();
            let _ = io.read_to_end(&mut reply).await;
            reply
        },
        |io| async move {
            let (result, io) = any_server(io, settings).await;
            drop(io);
            (result, ())
        },
    )
    .await;
    (reply, server)
}

fn frames(payloads: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for payload in payloads {
        encode_frame(payload, &mut out).unwrap();
    }
    out
}

#[tokio::test]
async fn an_unknown_version_is_answered_with_the_versions_served() {
    let offer = b"noise-echo\x03whatever version 3 sends".to_vec();
    for (v1, expected) in [(true, vec![1, 2]), (false, vec![2])] {
        let (reply, server) = raw_exchange(frames(&[&offer]), settings(&Suite::ALL, v1)).await;
        let mut answer = vec![0x02, expected.len() as u8];
        answer.extend_from_slice(&expected);
        assert_eq!(reply, frames(&[&answer]));
        assert_eq!(
            mismatch(&server),
            &Mismatch::UnsupportedVersion {
                offered: 3,
                accepted: expected
            }
        );
    }
}

#[tokio::test]
async fn garbage_first_frames_are_closed_without_a_reply() {
    let message1 = [0x11u8; 32];
    let bad_offer = b"noise-echo\x02\x05Noise\x00".to_vec();
    for first in [
        frames(&[&[0x55; 33]]),
        frames(&[&bad_offer, &message1]),
        frames(&[&[b"noise-echo\x02".as_slice(), &[0x1c; 30]].concat()]),
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        frames(&[&[0x55; 600]]),
        vec![0, 0],
    ] {
        let (reply, server) = raw_exchange(first.clone(), settings(&Suite::ALL, true)).await;
        assert!(reply.is_empty(), "{first:?}: {reply:?}");
        assert!(
            matches!(server, Err(WireError::PeerMisbehaved(_))),
            "{first:?}: {server:?}"
        );
    }
}

/// Relays client -> server, letting `tamper` change the client's first write (the
/// offer frame and message 1), and everything else both ways unchanged.
async fn tampered_pair(
    offer: Offer,
    settings: ResponderSettings,
    tamper: impl FnOnce(&mut Vec<u8>) + Send + 'static,
) -> (
    wire::Result<wire::Established>,
    wire::Result<wire::Established>,
) {
    let (client_io, mut mitm_client) = duplex(1 << 16);
    let (mut mitm_server, server_io) = duplex(1 << 16);
    let first_len = 2 + offer.encode().len() + 2 + 32;
    let relay = tokio::spawn(async move {
        let mut first = vec![0u8; first_len];
        if mitm_client.read_exact(&mut first).await.is_err() {
            return;
        }
        tamper(&mut first);
        if mitm_server.write_all(&first).await.is_err() {
            return;
        }
        let _ = tokio::io::copy_bidirectional(&mut mitm_client, &mut mitm_server).await;
    });
    let client = async {
        let (result, io) = v2_client(client_io, offer).await;
        drop(io);
        result
    };
    let server = async {
        let (result, io) = any_server(server_io, settings).await;
        drop(io);
        result
    };
    let results = bounded(async { tokio::join!(client, server) }).await;
    relay.abort();
    results
}

#[tokio::test]
async fn any_altered_offer_byte_fails_the_handshake() {
    let offer = Offer::new(Suite::AesGcmSha256);
    let offer_len = offer.encode().len();
    let mut outcomes = std::collections::BTreeSet::new();
    for at in 0..offer_len {
        for bit in [0x01u8, 0x20, 0x80] {
            let (client, server) =
                tampered_pair(offer.clone(), settings(&Suite::ALL, true), move |bytes| {
                    bytes[2 + at] ^= bit
                })
                .await;
            assert!(client.is_err() && server.is_err(), "byte {at} bit {bit:#x}");
            outcomes.insert(
                format!("{:?}", client.unwrap_err())
                    .chars()
                    .take(40)
                    .collect::<String>(),
            );
        }
    }
    // What the client sees: garbage the server closed on, or the server's answer to
    // the altered name (unknown, so unsupported) or version. An altered offer that is
    // still accepted fails message 2 instead (the next test).
    for expected in [
        "ClosedBeforeAnswer",
        "UnsupportedSuite",
        "UnsupportedVersion",
    ] {
        assert!(
            outcomes.iter().any(|outcome| outcome.contains(expected)),
            "{outcomes:?}"
        );
    }
}

#[tokio::test]
async fn a_swapped_offer_fails_message_2_even_when_the_server_accepts_it() {
    // The client runs AES-GCM; a man in the middle swaps in an otherwise valid
    // offer (here: a retry field the server does not object to).
    let forged = Offer::decode(
        &[
            b"noise-echo\x02\x1cNoise_XX_25519_AESGCM_SHA256\x1d".as_slice(),
            b"Noise_XX_25519_AESGCM_BLAKE2s",
        ]
        .concat(),
    )
    .unwrap();
    let forged_bytes = forged.encode();
    let offer = Offer::new(Suite::AesGcmSha256);
    let (client, server) = tampered_pair(offer, settings(&Suite::ALL, true), move |bytes| {
        let mut replaced = frames(&[&forged_bytes]);
        replaced.extend_from_slice(&bytes[bytes.len() - 34..]);
        *bytes = replaced;
    })
    .await;
    assert_eq!(
        violation(&client),
        &Violation::HandshakeDecrypt { message: 2 }
    );
    // The server saw the client leave after message 2.
    assert!(server.is_err());
}

/// A hand-driven v2 server: accepts any offer, then sends `payload` in message 2.
async fn fake_v2_server(mut io: DuplexStream, suite: Suite, payload: Vec<u8>) -> DuplexStream {
    let noise = identity(2).noise_keypair();
    let mut inbox = Vec::new();
    let offer = read_raw_frame(&mut io, &mut inbox).await;
    let message1 = read_raw_frame(&mut io, &mut inbox).await;
    let mut state = snow::Builder::new(suite.noise_name().parse().unwrap())
        .local_private_key(noise.private())
        .unwrap()
        .prologue(&offer)
        .unwrap()
        .build_responder()
        .unwrap();
    state.read_message(&message1, &mut [0; 64]).unwrap();
    let mut message2 = vec![0u8; payload.len() + 200];
    let len = state.write_message(&payload, &mut message2).unwrap();
    io.write_all(&frames(&[&[0], &message2[..len]]))
        .await
        .unwrap();
    io
}

async fn read_raw_frame(io: &mut DuplexStream, inbox: &mut Vec<u8>) -> Vec<u8> {
    // Bounded by the pipe's end: each turn reads at least one byte or stops.
    loop {
        if let Decoded::Frame { payload, consumed } = decode_frame(inbox).unwrap() {
            let payload = payload.to_vec();
            inbox.drain(..consumed);
            return payload;
        }
        let mut buf = [0u8; 4096];
        let read = io.read(&mut buf).await.unwrap();
        assert!(read > 0, "the peer closed inside a frame");
        inbox.extend_from_slice(&buf[..read]);
    }
}

fn field(field: u16, value: &[u8]) -> Vec<u8> {
    [
        &field.to_be_bytes()[..],
        &(value.len() as u16).to_be_bytes(),
        value,
    ]
    .concat()
}

#[tokio::test]
async fn message_2_with_a_huge_field_length_or_an_unknown_critical_field_is_refused() {
    let server_key = *identity(2).public_key().as_bytes();
    let honest = wire::encode_message2(&server_key, &params());
    let mut huge = honest.clone();
    huge.extend_from_slice(&[0x00, 0x42, 0xff, 0xff, 1, 2, 3]);
    let critical = [honest.clone(), field(0x8042, b"x")].concat();
    let skipped = [honest.clone(), field(0x0042, b"ignored")].concat();
    let other_key = wire::encode_message2(identity(3).public_key().as_bytes(), &params());
    for (payload, expected) in [
        (
            huge,
            Some(PayloadProblem::FieldOverrun {
                field: 0x0042,
                len: 0xffff,
                remaining: 3,
            }),
        ),
        (critical, Some(PayloadProblem::UnknownCriticalField(0x8042))),
        (other_key, Some(PayloadProblem::StaticKeyMismatch)),
        (skipped, None),
    ] {
        let ((client, _), _) = pair(
            |io| v2_client(io, Offer::new(Suite::ChaChaPolyBlake2s)),
            |io| fake_v2_server(io, Suite::ChaChaPolyBlake2s, payload),
        )
        .await;
        match expected {
            Some(problem) => assert_eq!(
                violation(&client),
                &Violation::BadHandshakePayload {
                    message: 2,
                    problem
                }
            ),
            None => assert_eq!(client.unwrap().server_params(), Some(params())),
        }
    }
}

#[tokio::test]
async fn message_2_outside_the_size_bounds_is_refused_before_decrypting() {
    // A v1-style 32-byte payload makes a 128-byte message 2: too small for v2.
    let ((client, _), _) = pair(
        |io| v2_client(io, Offer::new(Suite::AesGcmSha256)),
        |io| {
            fake_v2_server(
                io,
                Suite::AesGcmSha256,
                identity(2).public_key().as_bytes().to_vec(),
            )
        },
    )
    .await;
    assert_eq!(
        violation(&client),
        &Violation::HandshakeMessageOutOfRange {
            message: 2,
            min: wire::MSG2_V2_MIN,
            max: wire::MSG2_V2_MAX,
            actual: 128
        }
    );
}

/// A hand-driven v2 client: sends `offer`, message 1, and `payload` in message 3.
async fn fake_v2_client(mut io: DuplexStream, suite: Suite, payload: Vec<u8>) {
    let noise = identity(1).noise_keypair();
    let offer = Offer::new(suite).encode();
    let mut state = snow::Builder::new(suite.noise_name().parse().unwrap())
        .local_private_key(noise.private())
        .unwrap()
        .prologue(&offer)
        .unwrap()
        .build_initiator()
        .unwrap();
    let mut message = vec![0u8; 8192];
    let len = state.write_message(&[], &mut message).unwrap();
    io.write_all(&frames(&[&offer, &message[..len]]))
        .await
        .unwrap();
    let mut inbox = Vec::new();
    assert_eq!(read_raw_frame(&mut io, &mut inbox).await, [0]);
    let message2 = read_raw_frame(&mut io, &mut inbox).await;
    state.read_message(&message2, &mut vec![0; 8192]).unwrap();
    let len = state.write_message(&payload, &mut message).unwrap();
    io.write_all(&frames(&[&message[..len]])).await.unwrap();
}

#[tokio::test]
async fn message_3_with_a_huge_field_length_or_an_unknown_critical_field_is_refused() {
    let client_key = *identity(1).public_key().as_bytes();
    let honest = wire::encode_message3(&client_key);
    for (payload, expected) in [
        (
            [honest.clone(), vec![0x7f, 0x00, 0xff, 0xff]].concat(),
            Some(PayloadProblem::FieldOverrun {
                field: 0x7f00,
                len: 0xffff,
                remaining: 0,
            }),
        ),
        (
            [field(0xffff, b""), honest.clone()].concat(),
            Some(PayloadProblem::UnknownCriticalField(0xffff)),
        ),
        (
            wire::encode_message2(&client_key, &params()),
            Some(PayloadProblem::FieldInWrongMessage(0x0002)),
        ),
        (
            [honest.clone(), honest.clone()].concat(),
            Some(PayloadProblem::DuplicateField(0x8001)),
        ),
        ([field(0x1234, &[9; 1000]), honest.clone()].concat(), None),
    ] {
        let ((), (server, _)) = pair(
            |io| fake_v2_client(io, Suite::AesGcmSha256, payload),
            |io| any_server(io, settings(&Suite::ALL, true)),
        )
        .await;
        match expected {
            Some(problem) => assert_eq!(
                violation(&server),
                &Violation::BadHandshakePayload {
                    message: 3,
                    problem
                }
            ),
            None => assert_eq!(server.unwrap().peer(), &identity(1).public_key()),
        }
    }
}

#[test]
fn fixed_ephemeral_keys_give_identical_transcripts_for_the_vectors() {
    let client = LocalIdentity::new(&identity(1));
    let server = LocalIdentity::new(&identity(2));
    let transcript = |suite: Suite| {
        let offer = Offer::new(suite);
        let (initiator, message1) =
            wire::Initiator::start_v2_with_fixed_ephemeral_for_testing_only(
                &client,
                &offer,
                &[0xe1; 32],
            )
            .unwrap();
        let responder = wire::Responder::new_v2_with_fixed_ephemeral_for_testing_only(
            &server,
            &offer,
            params(),
            &[0xe2; 32],
        )
        .unwrap();
        let (responder, message2) = responder.read(&message1).unwrap();
        let pending = initiator.read(&message2).unwrap();
        assert_eq!(pending.server_params(), Some(&params()));
        let (message3, client_side) = pending.approve().unwrap();
        let server_side = responder.read(&message3).unwrap();
        assert_eq!(client_side.handshake_hash(), server_side.handshake_hash());
        assert_eq!(message2.len(), wire::MSG2_V2_MIN);
        assert_eq!(message3.len(), wire::MSG3_V2_MIN);
        (
            message1.to_vec(),
            message2,
            message3,
            *client_side.handshake_hash(),
        )
    };
    for suite in Suite::ALL {
        assert_eq!(transcript(suite), transcript(suite), "{suite}");
    }
    // Same ephemeral keys, another suite (and so prologue): another transcript
    // after message 1.
    let (aes, chacha) = (
        transcript(Suite::AesGcmSha256),
        transcript(Suite::ChaChaPolyBlake2s),
    );
    assert_eq!(aes.0, chacha.0);
    assert_ne!(aes.1, chacha.1);
    assert_ne!(aes.3, chacha.3);
}
