//! Tests of protocol v2's keys in the session halves: the policy's three rekey
//! limits over long pipelined sessions in both suites and both directions, a
//! forced rekey, every way a peer can get REKEY wrong, and a quiet session's
//! expanded keys released with its wait for a record dropped.

use std::time::Duration;

use tokio::io::{AsyncWriteExt, DuplexStream, ReadHalf, WriteHalf};

use super::*;
use crate::identity::Identity;
use crate::wire::error::WireError;
use crate::wire::handshake::tests::handshake_pair;
use crate::wire::handshake::{Initiator, LocalIdentity, Responder};
use crate::wire::negotiation::Offer;
use crate::wire::payload::ServerParams;
use crate::wire::record::{encode_record, DEFAULT_REQUEST_LIMIT, MIN_RESPONSE_LIMIT};
use crate::wire::rekey::RekeyPolicy;
use crate::wire::suite::Suite;

pub(crate) type Rx = RecvHalf<ReadHalf<DuplexStream>>;
pub(crate) type Tx = SendHalf<WriteHalf<DuplexStream>>;

/// Copies of the four keys as the split made them, to count rekeys from outside.
pub(crate) struct InitialKeys {
    client_send: CipherKey,
    server_send: CipherKey,
}

/// A v2 client and server session over one duplex pipe, with `suite` and `policy`:
/// the real v2 handshake, run sans-I/O, then the pipe.
pub(crate) async fn v2_pair(
    suite: Suite,
    policy: RekeyPolicy,
) -> ((Rx, Tx), (Rx, Tx), InitialKeys) {
    let (client, server) = v2_established(suite, policy);
    let (client_io, server_io) = tokio::io::duplex(1 << 16);
    let initial = InitialKeys {
        client_send: client.keys.send.duplicate(),
        server_send: server.keys.send.duplicate(),
    };
    (
        client.into_split(client_io),
        server.into_split(server_io),
        initial,
    )
}

/// The client's and the server's ends of a real v2 handshake with `suite` and
/// `policy`, run sans-I/O: for a test that chooses its own I/O.
pub(crate) fn v2_established(suite: Suite, policy: RekeyPolicy) -> (Established, Established) {
    let client_local = LocalIdentity::new(&Identity::from_seed(&[1; 32], "client"));
    let server_local = LocalIdentity::new(&Identity::from_seed(&[2; 32], "server"));
    let offer = Offer::new(suite);
    let params = ServerParams {
        max_request: DEFAULT_REQUEST_LIMIT,
        rekey: policy,
    };
    let (expect_message2, message1) = Initiator::start_v2(&client_local, &offer).unwrap();
    let (expect_message3, message2) = Responder::new_v2(&server_local, &offer, params)
        .unwrap()
        .read(&message1)
        .unwrap();
    let (message3, client) = expect_message2.read(&message2).unwrap().approve().unwrap();
    let server = expect_message3.read(&message3).unwrap();
    assert_eq!(client.rekey_policy(), Some(&policy));
    (client, server)
}

/// How many times `initial` was rekeyed to become `now` (at most `bound`).
fn rekeys(initial: &CipherKey, now: &CipherKey, bound: u64) -> u64 {
    let mut key = initial.duplicate();
    for count in 0..=bound {
        if key.same_key(now) {
            return count;
        }
        key.rekey().unwrap();
    }
    panic!("the key is not the initial one rekeyed up to {bound} times");
}

fn violation<T: std::fmt::Debug>(result: Result<T>) -> Violation {
    match result {
        Err(WireError::PeerMisbehaved(violation)) => violation,
        other => panic!("expected a violation, got {other:?}"),
    }
}

/// Encrypts `plaintext` as the next transport message of `send`, bypassing the
/// record layer and the policy, and writes it raw.
async fn send_raw(send: &mut Tx, plaintext: &[u8]) {
    let mut message = plaintext.to_vec();
    let nonce = next_nonce(&mut send.nonce).unwrap();
    let tag = send.key.seal_in_place(nonce, &mut message).unwrap();
    message.extend_from_slice(&tag);
    let mut frame = Vec::new();
    crate::wire::frame::encode_frame(&message, &mut frame).unwrap();
    send.writer.write_all(&frame).await.unwrap();
    send.writer.flush().await.unwrap();
}

fn policy(max_messages: u64, max_bytes: u64, seconds: u64) -> RekeyPolicy {
    RekeyPolicy {
        max_messages,
        max_bytes,
        max_interval: Duration::from_secs(seconds),
    }
}

/// The request bodies of a long pipelined session: many small ones, which share
/// messages, and a few that span several messages.
fn requests() -> Vec<Vec<u8>> {
    (0..1500usize)
        .map(|index| match index % 500 {
            499 => vec![b'a' + (index % 26) as u8; 150_000],
            _ => format!("request {index}").into_bytes(),
        })
        .collect()
}

/// Runs a pipelined echo session (the client writing from one task while it reads
/// in another) and checks every reply; returns the halves afterwards, and how many
/// transport messages each direction carried.
async fn echo_session(suite: Suite, policy: RekeyPolicy) -> (u64, u64, u64, u64) {
    let ((mut client_rx, mut client_tx), (mut server_rx, mut server_tx), initial) =
        v2_pair(suite, policy).await;
    let bodies = requests();
    let expected: Vec<Vec<u8>> = bodies.iter().map(|b| b.to_ascii_uppercase()).collect();
    let writer = tokio::spawn(async move {
        for (index, body) in bodies.iter().enumerate() {
            client_tx
                .write_record(RecordType::Request, body)
                .await
                .unwrap();
            // Batches of 7 small requests share a message; many messages in all.
            if index % 7 == 6 {
                client_tx.flush().await.unwrap();
            }
        }
        client_tx.shutdown().await.unwrap();
        client_tx
    });
    let server = tokio::spawn(async move {
        let mut body = Vec::new();
        let mut answered = 0;
        while server_rx.next_record().await.unwrap().is_some() {
            server_rx
                .read_body(&mut body, DEFAULT_REQUEST_LIMIT)
                .await
                .unwrap();
            body.make_ascii_uppercase();
            server_tx
                .write_record(RecordType::Response, &body)
                .await
                .unwrap();
            answered += 1;
            // And the replies in batches of at most 5.
            if !server_rx.has_buffered_input() || answered % 5 == 0 {
                server_tx.flush().await.unwrap();
            }
        }
        server_tx.shutdown().await.unwrap();
        (server_rx, server_tx)
    });
    for (index, want) in expected.iter().enumerate() {
        match client_rx.read_reply(MIN_RESPONSE_LIMIT).await.unwrap() {
            Some(Reply::Response(body)) => assert!(body == *want, "reply {index} differs"),
            other => panic!("reply {index}: {other:?}"),
        }
    }
    assert_eq!(
        client_rx.read_reply(MIN_RESPONSE_LIMIT).await.unwrap(),
        None
    );
    let client_tx = writer.await.unwrap();
    let (server_rx, server_tx) = server.await.unwrap();
    // Each receiver followed its sender's rekeys exactly: their keys agree.
    assert!(
        client_tx.key.same_key(&server_rx.key),
        "{suite}: client to server"
    );
    assert!(
        server_tx.key.same_key(&client_rx.key),
        "{suite}: server to client"
    );
    let up = rekeys(&initial.client_send, &client_tx.key, client_tx.nonce);
    let down = rekeys(&initial.server_send, &server_tx.key, server_tx.nonce);
    (up, client_tx.nonce, down, server_tx.nonce)
}

/// One message per key: every transport message that ends at a record boundary
/// ends with REKEY, in both directions (those inside a large body cannot), and a
/// message is still at most a frame (the REKEY fits beside a full 65514 bytes of
/// records).
#[tokio::test]
async fn a_one_message_limit_rekeys_after_every_message_both_ways() {
    for suite in Suite::ALL {
        let (up, up_messages, down, down_messages) =
            echo_session(suite, policy(1, u64::MAX, 3600)).await;
        // 3 bodies of 150,000 bytes each way: 2 messages each end inside them.
        assert_eq!(up, up_messages - 6, "{suite}");
        assert_eq!(down, down_messages - 6, "{suite}");
        assert!(up > 200 && down > 200, "{suite}: {up} {down}");
    }
}

/// A message that reaches the limit inside a record body cannot rekey; the first
/// one from there that ends at a record boundary does, and the receiver accepts
/// that, then holds the next message to the limit again.
#[tokio::test]
async fn the_rekey_due_inside_a_body_comes_at_its_end() {
    let ((_, mut client_tx), (mut server_rx, _), initial) =
        v2_pair(Suite::AesGcmSha256, policy(1, u64::MAX, 3600)).await;
    let big = vec![b'b'; 200_000];
    let mut body = Vec::new();
    let writer = async {
        client_tx
            .write_record(RecordType::Request, &big)
            .await
            .unwrap();
        client_tx.flush().await.unwrap();
        // 200,005 bytes: three full messages of 65,514, then 3,463 and REKEY.
        assert_eq!(client_tx.nonce, 4);
        assert_eq!(rekeys(&initial.client_send, &client_tx.key, 10), 1);
        client_tx
            .write_record(RecordType::Request, b"small")
            .await
            .unwrap();
        client_tx.flush().await.unwrap();
        assert_eq!(rekeys(&initial.client_send, &client_tx.key, 10), 2);
        // And a peer that then skips one is caught at the end of its message.
        let mut record = Vec::new();
        encode_record(RecordType::Request, b"skips", &mut record).unwrap();
        send_raw(&mut client_tx, &record).await;
        client_tx.writer.shutdown().await.unwrap();
    };
    let reader = async {
        server_rx.next_record().await.unwrap().unwrap();
        server_rx.read_body(&mut body, 300_000).await.unwrap();
        assert!(body == big);
        server_rx.next_record().await.unwrap().unwrap();
        server_rx.read_body(&mut body, 10).await.unwrap();
        assert_eq!(body, b"small");
        server_rx.next_record().await.unwrap().unwrap();
        server_rx.read_body(&mut body, 10).await.unwrap();
        assert!(matches!(
            violation(server_rx.next_record().await),
            Violation::MissedRekey {
                max_messages: 1,
                ..
            }
        ));
    };
    tokio::join!(writer, reader);
}

/// A 100-byte limit: the message reaching 100 bytes under a key rekeys, so the
/// keys change many times but not at every small message.
#[tokio::test]
async fn a_hundred_byte_limit_rekeys_when_the_bytes_reach_it_both_ways() {
    for suite in Suite::ALL {
        let (up, up_messages, down, down_messages) =
            echo_session(suite, policy(u64::MAX, 100, 3600)).await;
        // Each batch of 7 requests is about 110 bytes: most of them rekey.
        assert!(
            up > 100 && up <= up_messages,
            "{suite}: {up} of {up_messages}"
        );
        assert!(
            down > 100 && down <= down_messages,
            "{suite}: {down} of {down_messages}"
        );
    }
}

/// The byte count, exactly: records of 40 bytes (35 + header), one message each,
/// rekey on the third message (120 >= 100), then the count starts again.
#[tokio::test]
async fn the_byte_count_restarts_after_each_rekey() {
    let ((_, mut client_tx), (mut server_rx, _), initial) =
        v2_pair(Suite::ChaChaPolyBlake2s, policy(u64::MAX, 100, 3600)).await;
    let mut body = Vec::new();
    for message in 1..=7u64 {
        client_tx
            .write_record(RecordType::Request, &[b'x'; 35])
            .await
            .unwrap();
        client_tx.flush().await.unwrap();
        server_rx.next_record().await.unwrap().unwrap();
        server_rx.read_body(&mut body, 100).await.unwrap();
        // After messages 3 and 6, which end with REKEY: 40 + 40 + 45 bytes.
        assert_eq!(
            rekeys(&initial.client_send, &client_tx.key, 10),
            message / 3,
            "after message {message}"
        );
        assert_eq!(client_tx.rekeys(), message / 3);
    }
}

/// The key's age: with paused time, the first message sent once the key is one
/// second old rekeys, and the next one (a fresh key) does not.
#[tokio::test(start_paused = true)]
async fn a_one_second_limit_rekeys_the_first_message_after_it() {
    for suite in Suite::ALL {
        let ((mut client_rx, mut client_tx), (mut server_rx, mut server_tx), initial) =
            v2_pair(suite, policy(u64::MAX, u64::MAX, 1)).await;
        let mut body = Vec::new();
        for (step, wait, rekeyed) in [
            (0, Duration::ZERO, 0u64),
            (1, Duration::from_millis(999), 0),
            (2, Duration::from_millis(1), 1),
            (3, Duration::from_millis(500), 1),
            (4, Duration::from_secs(30), 2),
        ] {
            tokio::time::advance(wait).await;
            client_tx
                .write_record(RecordType::Request, b"ping")
                .await
                .unwrap();
            client_tx.flush().await.unwrap();
            server_rx.next_record().await.unwrap().unwrap();
            server_rx.read_body(&mut body, 10).await.unwrap();
            server_tx
                .write_record(RecordType::Response, b"PING")
                .await
                .unwrap();
            server_tx.flush().await.unwrap();
            client_rx.read_reply(10).await.unwrap().unwrap();
            assert_eq!(
                rekeys(&initial.client_send, &client_tx.key, 10),
                rekeyed,
                "{suite}: client, step {step}"
            );
            assert_eq!(
                rekeys(&initial.server_send, &server_tx.key, 10),
                rekeyed,
                "{suite}: server, step {step}"
            );
        }
        // Each receiver applies a REKEY once it has read past it.
        client_tx.shutdown().await.unwrap();
        assert_eq!(server_rx.next_record().await.unwrap(), None);
        server_tx.shutdown().await.unwrap();
        assert_eq!(client_rx.read_reply(10).await.unwrap(), None);
        assert!(server_rx.key.same_key(&client_tx.key), "{suite}");
        assert!(client_rx.key.same_key(&server_tx.key), "{suite}");
    }
}

/// `rekey_now` with nothing pending sends a REKEY alone; with records pending it
/// ends their message; the receiver follows both, and v1 refuses it.
#[tokio::test]
async fn rekey_now_sends_a_rekey_the_receiver_follows() {
    let ((_, mut client_tx), (mut server_rx, _), initial) =
        v2_pair(Suite::AesGcmSha256, RekeyPolicy::DEFAULT).await;
    client_tx.rekey_now().unwrap();
    client_tx
        .write_record(RecordType::Request, b"after")
        .await
        .unwrap();
    client_tx.rekey_now().unwrap();
    client_tx.shutdown().await.unwrap();
    assert_eq!(
        client_tx.nonce, 2,
        "a REKEY alone, then one with the record"
    );
    assert_eq!(rekeys(&initial.client_send, &client_tx.key, 5), 2);
    let mut body = Vec::new();
    server_rx.next_record().await.unwrap().unwrap();
    server_rx.read_body(&mut body, 10).await.unwrap();
    assert_eq!(body, b"after");
    assert_eq!(server_rx.next_record().await.unwrap(), None);
    assert!(server_rx.key.same_key(&client_tx.key));

    let (client, client_io, _server, _server_io) = handshake_pair().await;
    let (_, mut v1_tx) = client.into_split(client_io);
    assert!(matches!(
        v1_tx.rekey_now(),
        Err(WireError::Internal(Bug::RekeyInV1))
    ));
}

/// A sender that does not rekey at the limit: the message that reaches it and
/// ends at a record boundary without REKEY is refused once it is decoded, when
/// the next message arrives or the stream ends.
#[tokio::test]
async fn a_peer_that_skips_a_rekey_is_a_violation() {
    for (suite, then_more) in [
        (Suite::AesGcmSha256, true),
        (Suite::AesGcmSha256, false),
        (Suite::ChaChaPolyBlake2s, true),
    ] {
        let ((_, mut client_tx), (mut server_rx, _), _) =
            v2_pair(suite, policy(2, 1 << 30, 3600)).await;
        let mut record = Vec::new();
        encode_record(RecordType::Request, b"one", &mut record).unwrap();
        send_raw(&mut client_tx, &record).await;
        send_raw(&mut client_tx, &record).await;
        if then_more {
            send_raw(&mut client_tx, &record).await;
        } else {
            client_tx.writer.shutdown().await.unwrap();
        }
        let mut body = Vec::new();
        for _ in 0..2 {
            server_rx.next_record().await.unwrap().unwrap();
            server_rx.read_body(&mut body, 10).await.unwrap();
        }
        assert_eq!(
            violation(server_rx.next_record().await),
            Violation::MissedRekey {
                sender: Role::Client,
                max_messages: 2,
                max_bytes: 1 << 30
            },
            "{suite}"
        );
    }
}

/// A message at the limit whose last five bytes look like REKEY but are the end
/// of a body: found once the message is decoded (here at the end of the stream).
#[tokio::test]
async fn rekey_bytes_inside_a_body_do_not_count_as_a_rekey() {
    let ((_, mut client_tx), (mut server_rx, _), _) =
        v2_pair(Suite::ChaChaPolyBlake2s, policy(1, u64::MAX, 3600)).await;
    let mut record = Vec::new();
    encode_record(RecordType::Request, &[b'a', 4, 0, 0, 0, 0], &mut record).unwrap();
    send_raw(&mut client_tx, &record).await;
    client_tx.writer.shutdown().await.unwrap();
    let mut body = Vec::new();
    server_rx.next_record().await.unwrap().unwrap();
    server_rx.read_body(&mut body, 10).await.unwrap();
    assert!(matches!(
        violation(server_rx.next_record().await),
        Violation::MissedRekey { .. }
    ));
}

/// A REKEY must be the last bytes of its message: a record after it, or a REKEY
/// header split across two messages, is a violation.
#[tokio::test]
async fn a_rekey_that_is_not_last_in_its_message_is_a_violation() {
    let mut after = REKEY_RECORD.to_vec();
    encode_record(RecordType::Request, b"late", &mut after).unwrap();
    let ((_, mut client_tx), (mut server_rx, _), _) =
        v2_pair(Suite::AesGcmSha256, RekeyPolicy::DEFAULT).await;
    send_raw(&mut client_tx, &after).await;
    assert_eq!(
        violation(server_rx.next_record().await),
        Violation::RekeyNotLast
    );

    let ((_, mut client_tx), (mut server_rx, _), _) =
        v2_pair(Suite::AesGcmSha256, RekeyPolicy::DEFAULT).await;
    send_raw(&mut client_tx, &REKEY_RECORD[..2]).await;
    send_raw(&mut client_tx, &REKEY_RECORD[2..]).await;
    assert_eq!(
        violation(server_rx.next_record().await),
        Violation::RekeyNotLast
    );
}

#[tokio::test]
async fn a_rekey_with_a_body_is_a_violation() {
    let ((_, mut client_tx), (mut server_rx, _), _) =
        v2_pair(Suite::ChaChaPolyBlake2s, RekeyPolicy::DEFAULT).await;
    send_raw(&mut client_tx, &[4, 0, 0, 0, 3, 1, 2, 3]).await;
    assert_eq!(
        violation(server_rx.next_record().await),
        Violation::RekeyWithBody { len: 3 }
    );
}

/// In protocol v1 type 4 is what it always was: an unknown record type.
#[tokio::test]
async fn a_rekey_in_v1_is_an_unknown_record_type() {
    let (client, client_io, server, server_io) = handshake_pair().await;
    let (_, mut client_tx) = client.into_split(client_io);
    let (mut server_rx, _) = server.into_split(server_io);
    send_raw(&mut client_tx, &REKEY_RECORD).await;
    assert_eq!(
        violation(server_rx.next_record().await),
        Violation::UnknownRecordType {
            record_type: 4,
            sender: Role::Client
        }
    );
}

/// A v2 sender fills a message with 65514 bytes of records, not 65519, so that a
/// REKEY always fits; v1 keeps the full 65519.
#[tokio::test]
async fn v2_messages_leave_room_for_a_rekey() {
    let ((_, mut v2_tx), _, _) = v2_pair(Suite::AesGcmSha256, RekeyPolicy::DEFAULT).await;
    let (client, client_io, _server, _server_io) = handshake_pair().await;
    let (_, mut v1_tx) = client.into_split(client_io);
    for (tx, capacity) in [
        (&mut v2_tx, MAX_PLAINTEXT_LEN - 5),
        (&mut v1_tx, MAX_PLAINTEXT_LEN),
    ] {
        tx.write_record(RecordType::Request, &vec![0; capacity - 5 + 1])
            .await
            .unwrap();
        assert_eq!(tx.nonce, 1, "the first message was sealed when full");
        assert_eq!(tx.pending_len(), 1);
    }
}

/// A server drops its wait for the next record of a quiet session to release the
/// expanded keys: with nothing read, and with a transport message cut short in the
/// kernel's buffer, the half is as before, loses no byte, and both directions
/// build their keys again for the next messages (keeping them only from a second
/// message on), across a rekey too.
#[tokio::test]
async fn a_dropped_wait_for_a_record_loses_nothing_and_keys_are_rebuilt() {
    let policy = RekeyPolicy {
        max_messages: 3,
        ..RekeyPolicy::DEFAULT
    };
    let ((mut client_rx, mut client_tx), (mut server_rx, mut server_tx), _) =
        v2_pair(Suite::AesGcmSha256, policy).await;
    let mut body = Vec::new();
    for round in 0..6u32 {
        // The wait, given up while it waits: nothing is here yet.
        {
            let wait = server_rx.next_record_within(0);
            tokio::pin!(wait);
            tokio::select! {
                biased;
                result = &mut wait => panic!("nothing was sent: {result:?}"),
                () = std::future::ready(()) => {}
            }
        }
        server_rx.release_expanded_key();
        server_tx.release_expanded_key();
        assert!(!server_rx.key.holds_expanded() && !server_tx.key.holds_expanded());
        // A request whose message arrives in two parts, the wait dropped between.
        let request = format!("request {round}");
        client_tx
            .queue_record(RecordType::Request, request.as_bytes())
            .unwrap();
        let mut raw = Vec::new();
        client_tx.seal().unwrap();
        std::mem::swap(&mut raw, &mut client_tx.output);
        let (first, rest) = raw.split_at(1 + round as usize);
        client_tx.writer.write_all(first).await.unwrap();
        {
            let wait = server_rx.next_record_within(0);
            tokio::pin!(wait);
            tokio::select! {
                biased;
                result = &mut wait => panic!("the message is not all here: {result:?}"),
                () = tokio::task::yield_now() => {}
            }
        }
        client_tx.writer.write_all(rest).await.unwrap();
        let header = match server_rx.next_record_within(0).await.unwrap() {
            NextRecord::Header(Some(header)) => header,
            other => panic!("round {round}: {other:?}"),
        };
        assert_eq!(header.len as usize, request.len());
        server_rx
            .read_body(&mut body, DEFAULT_REQUEST_LIMIT)
            .await
            .unwrap();
        assert_eq!(body, request.as_bytes());
        // One message since the release: built for it alone, not kept.
        assert!(!server_rx.key.holds_expanded(), "round {round}");
        body.make_ascii_uppercase();
        server_tx
            .write_record(RecordType::Response, &body)
            .await
            .unwrap();
        server_tx.flush().await.unwrap();
        let reply = client_rx.read_reply(MIN_RESPONSE_LIMIT).await.unwrap();
        assert_eq!(
            reply,
            Some(Reply::Response(request.to_uppercase().into_bytes())),
            "round {round}"
        );
    }
    // Three messages a key each way: the six rounds rekeyed both directions.
    assert!(client_tx.rekeys() > 0 && server_tx.rekeys() > 0);
}

/// Records queued without a write ([`SendHalf::queue_record`], the pipelined
/// path, which checks the limits once per message rather than per record) rekey
/// at the same record ends as written ones: the record whose end reaches the byte
/// limit (exactly or past it), and every record end once the message limit is
/// reached; the receiver, which refuses a sender that skips a rekey, reads them all.
#[tokio::test]
async fn queued_records_rekey_at_the_record_that_reaches_a_limit() {
    // (policy, body length, records queued, rekeys after each record)
    let cases: [(RekeyPolicy, usize, &[u64]); 3] = [
        // 40-byte records: 40, 80, 120 >= 100 rekeys; then 40, 80, 120 again.
        (policy(u64::MAX, 100, 3600), 35, &[0, 0, 1, 1, 1, 2, 2]),
        // 50-byte records: the second reaches 100 exactly.
        (policy(u64::MAX, 100, 3600), 45, &[0, 1, 1, 2, 2]),
        // Two messages per key: the first record of a key's second message
        // reaches the limit at once (a flush seals each message below).
        (policy(2, u64::MAX, 3600), 10, &[0, 1, 1, 2, 2]),
    ];
    for (policy, len, expected) in cases {
        let ((_, mut client_tx), (mut server_rx, _), initial) =
            v2_pair(Suite::AesGcmSha256, policy).await;
        let message_limit = policy.max_messages == 2;
        for (index, &rekeyed) in expected.iter().enumerate() {
            let body = vec![b'a' + index as u8; len];
            assert!(client_tx.queue_record(RecordType::Request, &body).unwrap());
            if message_limit {
                // Each record ends its own message: sealed, and counted once.
                client_tx.seal().unwrap();
            }
            assert_eq!(
                client_tx.rekeys(),
                rekeyed,
                "{policy:?}: after record {index}"
            );
        }
        client_tx.flush().await.unwrap();
        let rekeyed = *expected.last().unwrap();
        assert_eq!(
            rekeys(&initial.client_send, &client_tx.key, 10),
            rekeyed,
            "{policy:?}"
        );
        let mut body = Vec::new();
        for index in 0..expected.len() {
            let header = server_rx.next_record().await.unwrap().unwrap();
            assert_eq!(header.len as usize, len, "{policy:?}: record {index}");
            server_rx
                .read_body(&mut body, DEFAULT_REQUEST_LIMIT)
                .await
                .unwrap();
            assert_eq!(body, vec![b'a' + index as u8; len]);
        }
        assert!(server_rx.key.same_key(&client_tx.key), "{policy:?}");
    }
}
