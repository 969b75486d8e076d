//! Protocol v2's vector sessions (tests/vectors/v2-*.txt): the negotiation and
//! handshake through the library's fixed-ephemeral drivers, the transport across
//! rekeys under a tiny policy, and the negotiation's refusals.

use std::time::Duration;

use curve25519_dalek::montgomery::MontgomeryPoint;
use noise_echo::wire::{
    encode_frame, encode_message2, encode_message3, encode_record,
    initiate_v2_with_fixed_ephemeral_for_testing_only,
    respond_any_with_fixed_ephemeral_for_testing_only, Mismatch, Offer, ProtocolVersion,
    RecordType, RekeyPolicy, ResponderSettings, ServerParams, Suite, WireError,
    DEFAULT_REQUEST_LIMIT,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::replay::{open, rekey, SnowReplay};
use crate::{hex, payload, recorded, transport, Parties, Recorder, Vectors};

/// The v2 server's parameters in the vector sessions: the default request limit,
/// and a rekey policy tiny enough that both count rules fire within four messages
/// (the time rule, an hour, never does).
const V2_PARAMS: ServerParams = ServerParams::new(
    DEFAULT_REQUEST_LIMIT,
    RekeyPolicy {
        max_messages: 2,
        max_bytes: 100,
        max_interval: Duration::from_secs(3600),
    },
);

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
    ResponderSettings::new(suites.to_vec(), true, V2_PARAMS)
}

/// The other suite: what a server that refuses this file's runs.
fn other(suite: Suite) -> Suite {
    *Suite::ALL.iter().find(|other| **other != suite).unwrap()
}

/// Runs the v2 reference session for `suite`, and the negotiation failures around
/// it, and returns their vectors in file order.
pub(super) async fn generate_v2(suite: Suite) -> Vectors {
    let parties = Parties::new();
    let p = &parties;
    let offer = &Offer::new(suite);
    let ((client, client_io), (server, server_io), client_frames, server_frames) = recorded(
        |mut io| async move {
            let pending = initiate_v2_with_fixed_ephemeral_for_testing_only(
                &mut io,
                &p.client_local,
                offer,
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

    // snow, driven directly rather than through the library's handshake code and
    // fed the library's messages, opens messages 2 and 3 (their payloads) and gives
    // the split's keys.
    let replay = SnowReplay::run(
        &parties,
        suite,
        &offer.encode(),
        [&client_frames[1], &server_frames[1], &client_frames[2]],
    );
    assert_eq!(replay.handshake_hash, handshake_hash);
    assert_eq!(
        replay.msg2_payload,
        encode_message2(parties.server.public_key().as_bytes(), &V2_PARAMS)
    );
    assert_eq!(
        replay.msg3_payload,
        encode_message3(parties.client.public_key().as_bytes())
    );

    let mut vectors = Vectors::default();
    vectors.push("protocol_name", suite.noise_name().as_bytes());
    parties.push_keys(&mut vectors);
    vectors.comment(format!(
        "The negotiation and the handshake: the client writes offer and msg1 in one \
         write, the server answer and msg2.\n\
         The prologue is the offer's payload. Message 2 advertises max_request {} and \
         the rekey policy\n\
         max_messages {}, max_bytes {}, max_seconds {}.",
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
        "Transport, {side} to {}: message N has nonce N (counters run on across \
         rekeys);\n\
         send_key_K seals the messages after the K-th REKEY.",
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

/// The negotiation's refusals, through the library's real client and server: a
/// server running only the other suite, the client's retry offer and this server's
/// refusal of it, and an offer of a version this server does not speak.
async fn push_negotiation_failures(vectors: &mut Vectors, parties: &Parties, suite: Suite) {
    let p = parties;
    let refused = other(suite);
    vectors.comment(format!(
        "Negotiation failures. unsupported_suite_answer: a server running only\n\
         {} answers this file's offer; retry_offer: the client's offer on a new\n\
         connection after that answer; then this file's server (both suites, v1 and \
         v2) answering\n\
         retry_offer, and an offer of version 3.",
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
    vectors.push("retry_refused_answer", &server_frames[0]);

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
        matches!(
            server_result,
            Err(WireError::Mismatch(Mismatch::UnsupportedVersion {
                offered: 3,
                ..
            }))
        ),
        "expected UNSUPPORTED_VERSION, got {server_result:?}"
    );
    assert_eq!(version_frames, [answer]);
    vectors.push("unsupported_version_answer", &version_frames[0]);
}
