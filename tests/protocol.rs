//! End-to-end tests of wire-v1 sections 4 to 7 against an in-process server on
//! 127.0.0.1:0: noise-echo's own client for the normal paths, and a raw client
//! written directly against snow for everything a good client never sends.

mod common;

use common::{drain, read_frame, record, Msg3Payload, RawClient, TestServer, PROLOGUE};
use noise_echo::client::{self, ClientError, UnknownHostPolicy};
use noise_echo::identity::Identity;
use noise_echo::wire::{self, RecordType, Refusal, Reply, WireError, MIN_RESPONSE_LIMIT};
use tokio::io::AsyncWriteExt;

const REQUEST: u8 = 1;
const RESPONSE: u8 = 2;
const ERROR: u8 = 3;

#[tokio::test]
async fn requests_are_answered_with_full_unicode_uppercase() {
    let client = Identity::generate("client");
    let server = TestServer::start(&[&client]).await;
    let mut connection = server.connect(&client).await;
    for (request, expected) in [
        ("hello, world", "HELLO, WORLD"),
        ("straße", "STRASSE"),
        ("ﬁancé", "FIANCÉ"),
        ("καλημέρα", "ΚΑΛΗΜΈΡΑ"),
        ("안녕하세요", "안녕하세요"),
        ("", ""),
        ("MiXeD 123 !?", "MIXED 123 !?"),
    ] {
        let reply = connection.request(request.as_bytes()).await.unwrap();
        assert_eq!(
            reply,
            Reply::Response(expected.as_bytes().to_vec()),
            "{request}"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn a_request_of_exactly_the_limit_is_answered_and_one_byte_more_is_refused_then_closed() {
    let client = Identity::generate("client");
    let server = TestServer::start(&[&client]).await;
    // A v2 client knows the limit and refuses to send one byte more itself.
    let limit = wire::DEFAULT_REQUEST_LIMIT as usize;
    let mut connection = server.connect(&client).await;
    assert_eq!(connection.max_request(), Some(limit as u32));
    let refused = connection.request(&vec![b'x'; limit + 1]).await;
    assert!(
        matches!(refused, Err(client::ClientError::RequestTooLarge { len, limit: l }) if len == limit + 1 && l as usize == limit),
        "{refused:?}"
    );
    // The server enforces it on a client that does not know it (v1).
    let mut connection = server.connect_v1(&client).await;
    let body: Vec<u8> = (0..limit).map(|index| b'a' + (index % 26) as u8).collect();
    let reply = connection.request(&body).await.unwrap();
    assert_eq!(reply, Reply::Response(body.to_ascii_uppercase()));

    // A body whose uppercase is 3x longer (U+0390 -> 3 chars of 2 bytes each is too
    // big a case; "ΐ" (2 bytes) uppercases to 6 bytes), still within the client's limit.
    let expanding = "ΐ".repeat(limit / 2);
    let reply = connection.request(expanding.as_bytes()).await.unwrap();
    match reply {
        Reply::Response(upper) => {
            assert_eq!(upper, expanding.to_uppercase().into_bytes());
            assert_eq!(upper.len(), 3 * limit);
        }
        other => panic!("{other:?}"),
    }

    let too_big = vec![b'x'; limit + 1];
    let reply = connection.request(&too_big).await.unwrap();
    assert_eq!(
        reply,
        Reply::Error(format!(
            "request too large: {} bytes, the limit is {limit} bytes",
            limit + 1
        ))
    );
    // Then the server closes.
    let next = connection
        .receiver_mut()
        .read_reply(MIN_RESPONSE_LIMIT)
        .await
        .unwrap();
    assert_eq!(next, None);
    server.stop().await;
}

#[tokio::test]
async fn the_limit_is_configurable() {
    let client = Identity::generate("client");
    let server = TestServer::start_with(&[&client], |config| config.max_request = 10).await;
    assert_eq!(server.connect(&client).await.max_request(), Some(10));
    let mut connection = server.connect_v1(&client).await;
    assert_eq!(
        connection.request(b"0123456789").await.unwrap(),
        Reply::Response(b"0123456789".to_vec())
    );
    let reply = connection.request(b"0123456789a").await.unwrap();
    assert!(
        matches!(reply, Reply::Error(reason) if reason.starts_with("request too large: 11 bytes"))
    );
    server.stop().await;
}

#[tokio::test]
async fn invalid_utf8_gets_an_error_and_the_session_goes_on() {
    let client = Identity::generate("client");
    let server = TestServer::start(&[&client]).await;
    let mut connection = server.connect(&client).await;
    let reply = connection.request(b"ok \xff\xfe").await.unwrap();
    assert!(matches!(reply, Reply::Error(reason) if reason.contains("not valid UTF-8")));
    let reply = connection.request(b"still here").await.unwrap();
    assert_eq!(reply, Reply::Response(b"STILL HERE".to_vec()));
    server.stop().await;
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order_and_records_span_messages() {
    let client = Identity::generate("client");
    let server = TestServer::start(&[&client]).await;
    let connection = server.connect(&client).await;
    let (mut receiver, mut sender) = connection.into_halves();
    let count = 5_000usize;
    let writer = tokio::spawn(async move {
        for index in 0..count {
            // Sizes from 0 to ~100 KiB, so records share and span transport messages.
            let body =
                format!("req-{index}-").repeat(if index % 500 == 0 { 10_000 } else { index % 7 });
            sender
                .write_record(RecordType::Request, body.as_bytes())
                .await
                .unwrap();
        }
        sender.flush().await.unwrap();
        sender.shutdown().await.unwrap();
    });
    for index in 0..count {
        let expected =
            format!("REQ-{index}-").repeat(if index % 500 == 0 { 10_000 } else { index % 7 });
        let reply = receiver
            .read_reply(MIN_RESPONSE_LIMIT)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            reply,
            Reply::Response(expected.into_bytes()),
            "reply {index}"
        );
    }
    assert_eq!(
        receiver.read_reply(MIN_RESPONSE_LIMIT).await.unwrap(),
        None,
        "nothing more, then close"
    );
    writer.await.unwrap();
    server.stop().await;
}

/// One burst, in one transport message, of requests the server answers in one
/// pass from its buffer (ASCII) and of requests that need its usual steps (other
/// text, invalid UTF-8, one over the limit): the replies come in order, as if each
/// were sent alone, and the one over the limit ends the session after them.
#[tokio::test]
async fn a_burst_mixing_every_kind_of_request_is_answered_in_order() {
    let client = Identity::generate("client");
    let server = TestServer::start_with(&[&client], |config| config.max_request = 10).await;
    let connection = server.connect_v1(&client).await;
    let (mut receiver, mut sender) = connection.into_halves();
    let requests: [&[u8]; 9] = [
        b"abc",
        "straße".as_bytes(),
        b"def",
        b"",
        b"ok \xff",
        b"0123456789",
        b"ghi",
        b"0123456789a",
        b"never answered",
    ];
    for request in requests {
        sender
            .write_record(RecordType::Request, request)
            .await
            .unwrap();
    }
    sender.flush().await.unwrap();
    let mut replies = Vec::new();
    while let Some(reply) = receiver.read_reply(MIN_RESPONSE_LIMIT).await.unwrap() {
        replies.push(reply);
    }
    let response = |text: &str| Reply::Response(text.as_bytes().to_vec());
    assert_eq!(
        replies,
        [
            response("ABC"),
            response("STRASSE"),
            response("DEF"),
            response(""),
            Reply::Error("request is not valid UTF-8 (invalid byte at offset 3)".into()),
            response("0123456789"),
            response("GHI"),
            Reply::Error("request too large: 11 bytes, the limit is 10 bytes".into()),
        ]
    );
    server.stop().await;
}

#[tokio::test]
async fn each_request_is_answered_without_waiting_for_the_end_of_stream() {
    let client = Identity::generate("client");
    let server = TestServer::start(&[&client]).await;
    let mut connection = server.connect(&client).await;
    // request() waits for the reply while our write side is still open: it would
    // hang (and the test time out) if the server waited for our end of stream.
    for round in 0..20 {
        let body = format!("round {round}");
        let reply = connection.request(body.as_bytes()).await.unwrap();
        assert_eq!(reply, Reply::Response(body.to_uppercase().into_bytes()));
    }
    server.stop().await;
}

#[tokio::test]
async fn many_concurrent_clients_each_get_their_own_answers() {
    let clients: Vec<Identity> = (0..8)
        .map(|index| Identity::generate(format!("c{index}")))
        .collect();
    let refs: Vec<&Identity> = clients.iter().collect();
    let server = std::sync::Arc::new(TestServer::start(&refs).await);
    let mut tasks = Vec::new();
    for session in 0..64usize {
        let identity = clients[session % clients.len()].clone();
        let server = std::sync::Arc::clone(&server);
        tasks.push(tokio::spawn(async move {
            let mut connection = server.connect(&identity).await;
            for request in 0..50usize {
                let body = format!("session {session} request {request} ß");
                let reply = connection.request(body.as_bytes()).await.unwrap();
                assert_eq!(reply, Reply::Response(body.to_uppercase().into_bytes()));
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    std::sync::Arc::try_unwrap(server)
        .ok()
        .unwrap()
        .stop()
        .await;
}

#[tokio::test]
async fn an_unauthorized_client_gets_permission_denied_then_close() {
    let client = Identity::generate("client");
    let intruder = Identity::generate("intruder");
    let server = TestServer::start(&[&client]).await;
    let mut connection = server.connect(&intruder).await;
    let error = connection.request(b"let me in").await.unwrap_err();
    let expected = format!(
        "permission denied: key {} is not in authorized_keys",
        intruder.public_key().fingerprint()
    );
    match error {
        ClientError::Wire(WireError::NotAllowed(Refusal::PermissionDenied(reason))) => {
            assert_eq!(reason, expected)
        }
        other => panic!("{other:?}"),
    }
    // Through the raw client: exactly one ERROR record, then the close.
    let mut raw = RawClient::handshake(server.addr, &intruder, PROLOGUE, Msg3Payload::Honest)
        .await
        .unwrap();
    let records = raw.read_records_until_close().await;
    assert_eq!(records, vec![(ERROR, expected.into_bytes())]);
    server.stop().await;
}

#[tokio::test]
async fn a_key_removed_from_authorized_keys_is_refused_on_its_next_connection() {
    let client = Identity::generate("client");
    let server = TestServer::start(&[&client]).await;
    let mut connection = server.connect(&client).await;
    assert!(matches!(
        connection.request(b"a").await.unwrap(),
        Reply::Response(_)
    ));
    let original = std::fs::read(&server.authorized_keys).unwrap();
    let (emptied, removed) = noise_echo::openssh::authorized_keys::remove_key(
        &original,
        &client.public_key().fingerprint(),
    );
    assert_eq!(removed.len(), 1);
    noise_echo::fsutil::replace_atomically(&server.authorized_keys, &emptied, 0o600).unwrap();
    let mut again = server.connect(&client).await;
    assert!(again.request(b"b").await.is_err());
    // Added back (in place, same size and a different inode): accepted again.
    noise_echo::fsutil::replace_atomically(&server.authorized_keys, &original, 0o600).unwrap();
    let mut back = server.connect(&client).await;
    assert!(matches!(
        back.request(b"c").await.unwrap(),
        Reply::Response(_)
    ));
    // A missing file denies everyone.
    std::fs::remove_file(&server.authorized_keys).unwrap();
    let mut gone = server.connect(&client).await;
    assert!(matches!(
        gone.request(b"d").await.unwrap_err(),
        ClientError::Wire(WireError::NotAllowed(Refusal::PermissionDenied(_)))
    ));
    server.stop().await;
}

#[tokio::test]
async fn from_and_expiry_options_are_enforced() {
    let client = Identity::generate("client");
    let server = TestServer::start(&[]).await;
    let line = client.public_key().to_openssh_line("c");
    for (options, allowed) in [
        ("from=\"127.0.0.1\"", true),
        ("from=\"10.0.0.0/8\"", false),
        ("from=\"*,!127.0.0.1\"", false),
        ("expiry-time=\"20000101\"", false),
        ("expiry-time=\"29991231\"", true),
        ("command=\"/bin/sh\"", false),
    ] {
        std::fs::write(&server.authorized_keys, format!("{options} {line}\n")).unwrap();
        let mut connection = server.connect(&client).await;
        let result = connection.request(b"x").await;
        assert_eq!(result.is_ok(), allowed, "{options}: {result:?}");
    }
    server.stop().await;
}

#[tokio::test]
async fn unknown_record_types_close_the_connection_without_reply() {
    let client = Identity::generate("client");
    let server = TestServer::start(&[&client]).await;
    for bad_type in [0u8, RESPONSE, ERROR, 4, 0xff] {
        let mut raw = RawClient::handshake(server.addr, &client, PROLOGUE, Msg3Payload::Honest)
            .await
            .unwrap();
        let mut plaintext = record(REQUEST, b"first");
        plaintext.extend(record(bad_type, b"x"));
        raw.send_plaintext(&plaintext).await;
        let records = raw.read_records_until_close().await;
        // The complete request before the bad record is answered; nothing after.
        assert_eq!(
            records,
            vec![(RESPONSE, b"FIRST".to_vec())],
            "type {bad_type}"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn a_zero_length_frame_or_an_empty_plaintext_closes_without_reply() {
    let client = Identity::generate("client");
    let server = TestServer::start(&[&client]).await;
    let mut raw = RawClient::handshake(server.addr, &client, PROLOGUE, Msg3Payload::Honest)
        .await
        .unwrap();
    raw.stream.write_all(&[0, 0]).await.unwrap();
    assert_eq!(drain(&mut raw.stream).await, 0);

    let mut raw = RawClient::handshake(server.addr, &client, PROLOGUE, Msg3Payload::Honest)
        .await
        .unwrap();
    raw.send_plaintext(b"").await;
    assert_eq!(drain(&mut raw.stream).await, 0);
    server.stop().await;
}

#[tokio::test]
async fn a_flipped_ciphertext_bit_closes_without_reply() {
    let client = Identity::generate("client");
    let server = TestServer::start(&[&client]).await;
    for bit in [0usize, 7, 8 * 5 + 3, 8 * 20] {
        let mut raw = RawClient::handshake(server.addr, &client, PROLOGUE, Msg3Payload::Honest)
            .await
            .unwrap();
        let plaintext = record(REQUEST, b"tamper");
        let mut message = vec![0u8; plaintext.len() + 16];
        let len = raw
            .transport
            .write_message(&plaintext, &mut message)
            .unwrap();
        message[bit / 8] ^= 1 << (bit % 8);
        common::write_frame(&mut raw.stream, &message[..len]).await;
        assert_eq!(drain(&mut raw.stream).await, 0, "bit {bit}");
    }
    server.stop().await;
}

#[tokio::test]
async fn truncation_answers_complete_requests_only() {
    let client = Identity::generate("client");
    let server = TestServer::start(&[&client]).await;
    // End of stream inside a record body: the complete request is answered.
    let mut raw = RawClient::handshake(server.addr, &client, PROLOGUE, Msg3Payload::Honest)
        .await
        .unwrap();
    let mut plaintext = record(REQUEST, b"complete");
    plaintext.extend(&record(REQUEST, b"partial body")[..9]);
    raw.send_plaintext(&plaintext).await;
    raw.stream.shutdown().await.unwrap();
    assert_eq!(
        raw.read_records_until_close().await,
        vec![(RESPONSE, b"COMPLETE".to_vec())]
    );

    // Inside a record header.
    let mut raw = RawClient::handshake(server.addr, &client, PROLOGUE, Msg3Payload::Honest)
        .await
        .unwrap();
    let mut plaintext = record(REQUEST, b"one");
    plaintext.extend([REQUEST, 0, 0]);
    raw.send_plaintext(&plaintext).await;
    raw.stream.shutdown().await.unwrap();
    assert_eq!(
        raw.read_records_until_close().await,
        vec![(RESPONSE, b"ONE".to_vec())]
    );

    // Inside a frame.
    let mut raw = RawClient::handshake(server.addr, &client, PROLOGUE, Msg3Payload::Honest)
        .await
        .unwrap();
    raw.send_plaintext(&record(REQUEST, b"whole")).await;
    raw.send_truncated_frame(&record(REQUEST, b"cut"), 10).await;
    raw.stream.shutdown().await.unwrap();
    assert_eq!(
        raw.read_records_until_close().await,
        vec![(RESPONSE, b"WHOLE".to_vec())]
    );
    server.stop().await;
}

#[tokio::test]
async fn a_wrong_prologue_fails_the_handshake() {
    let client = Identity::generate("client");
    let server = TestServer::start(&[&client]).await;
    let result =
        RawClient::handshake(server.addr, &client, b"noise-echo/2", Msg3Payload::Honest).await;
    let error = result
        .err()
        .expect("a different prologue must not authenticate");
    assert!(error.starts_with("msg 2"), "{error}");
    server.stop().await;
}

#[tokio::test]
async fn a_msg3_payload_that_is_not_the_static_key_closes_without_reply() {
    let client = Identity::generate("client");
    let other = Identity::generate("other, authorized");
    // Even a key that IS authorized is refused when the sender cannot prove it.
    let server = TestServer::start(&[&client, &other]).await;
    let other_key = *other.public_key().as_bytes();
    let small_order = [0u8; 32];
    let mut identity_point = [0u8; 32];
    identity_point[0] = 1;
    for payload in [
        &other_key[..],
        &small_order[..],
        &identity_point[..],
        &other_key[..31],
        &[][..],
    ] {
        let mut raw =
            RawClient::handshake(server.addr, &client, PROLOGUE, Msg3Payload::Other(payload))
                .await
                .unwrap();
        raw.send_plaintext(&record(REQUEST, b"hi")).await;
        assert_eq!(drain(&mut raw.stream).await, 0, "payload {payload:?}");
    }
    server.stop().await;
}

#[tokio::test]
async fn a_msg1_of_the_wrong_size_aborts() {
    let client = Identity::generate("client");
    let server = TestServer::start(&[&client]).await;
    for size in [31usize, 33, 64] {
        let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        common::write_frame(&mut stream, &vec![7u8; size]).await;
        assert_eq!(read_frame(&mut stream).await, None, "msg 1 of {size} bytes");
    }
    server.stop().await;
}

/// A fake server that answers msg 1 with a valid msg 2 for `host`, then reports
/// how many bytes the client sent after that (a msg 3 would be 98).
async fn fake_server_counting_bytes_after_msg2(
    host: Identity,
) -> (std::net::SocketAddr, tokio::task::JoinHandle<usize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let noise = host.noise_keypair();
        let mut state = snow::Builder::new(common::PROTOCOL.parse().unwrap())
            .local_private_key(noise.private())
            .unwrap()
            .prologue(PROLOGUE)
            .unwrap()
            .build_responder()
            .unwrap();
        let msg1 = read_frame(&mut stream).await.unwrap();
        let mut scratch = vec![0u8; 1024];
        state.read_message(&msg1, &mut scratch).unwrap();
        let len = state
            .write_message(host.public_key().as_bytes(), &mut scratch)
            .unwrap();
        common::write_frame(&mut stream, &scratch[..len]).await;
        drain(&mut stream).await
    });
    (addr, task)
}

#[tokio::test]
async fn an_unknown_host_is_refused_without_a_prompt_and_never_learns_the_client() {
    let client = Identity::generate("client");
    let host = Identity::generate("host");
    let (addr, fake) = fake_server_counting_bytes_after_msg2(host.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let known_hosts = dir.path().join("known_hosts");
    let config =
        client::ClientConfig::known_hosts(wire::LocalIdentity::new(&client), known_hosts.clone())
            // The fake server speaks v1 only.
            .protocol(client::Protocol::V1)
            .unknown_host(UnknownHostPolicy::Refuse);
    let target = client::Target {
        host: "127.0.0.1".into(),
        port: addr.port(),
    };
    let error = client::connect(&target, config).await.err().unwrap();
    let message = error.to_string();
    // The CLI turns this into "--expect-fingerprint FINGERPRINT" (cli/tests lock the text).
    assert!(
        matches!(
            &error,
            ClientError::HostKeyNotTrusted(client::HostKeyError::Unknown {
                presented,
                reason: client::UnknownReason::NoPrompt,
                ..
            }) if *presented == host.public_key().fingerprint()
        ),
        "{message}"
    );
    assert_eq!(
        fake.await.unwrap(),
        0,
        "the client must send nothing after msg 2"
    );
    assert!(!known_hosts.exists(), "an unaccepted key is never written");
}

#[tokio::test]
async fn a_prompt_decides_for_an_unknown_host() {
    let client = Identity::generate("client");
    let server = TestServer::start(&[&client]).await;
    let dir = tempfile::tempdir().unwrap();
    let known_hosts = dir.path().join("known_hosts");
    for answer in [false, true] {
        let asked = std::sync::Arc::new(std::sync::Mutex::new(None));
        let seen = std::sync::Arc::clone(&asked);
        let config = client::ClientConfig::known_hosts(
            wire::LocalIdentity::new(&client),
            known_hosts.clone(),
        )
        .prompt(Some(Box::new(move |unknown: &client::UnknownHost| {
            *seen.lock().unwrap() = Some((unknown.host_field.clone(), unknown.key));
            Ok(answer)
        })));
        let result = client::connect(&server.target(), config).await;
        assert_eq!(result.is_ok(), answer);
        let (field, key) = asked.lock().unwrap().clone().unwrap();
        assert_eq!(field, format!("[127.0.0.1]:{}", server.addr.port()));
        assert_eq!(key, server.host.public_key());
        assert_eq!(known_hosts.exists(), answer, "written only when accepted");
    }
    // Now known: no prompt needed, a prompt would fail the test.
    let config =
        client::ClientConfig::known_hosts(wire::LocalIdentity::new(&client), known_hosts.clone())
            .unknown_host(UnknownHostPolicy::Refuse)
            .prompt(Some(Box::new(|_: &client::UnknownHost| {
                panic!("must not ask for a known host")
            })));
    let mut connection = client::connect(&server.target(), config).await.unwrap();
    assert!(connection.request(b"x").await.is_ok());
    server.stop().await;
}

#[tokio::test]
async fn a_changed_host_key_is_refused_whatever_the_policy_and_names_the_line() {
    let client = Identity::generate("client");
    let real_host = Identity::generate("host");
    let impostor = Identity::generate("impostor");
    let (addr, fake) = fake_server_counting_bytes_after_msg2(impostor.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let known_hosts = dir.path().join("known_hosts");
    let field = noise_echo::openssh::known_hosts::host_field("127.0.0.1", addr.port());
    let contents = format!(
        "# comment\nother.example {}\n{field} {}\n",
        Identity::generate("").public_key().to_openssh_line(""),
        real_host.public_key().to_openssh_line("")
    );
    std::fs::write(&known_hosts, &contents).unwrap();
    let config =
        client::ClientConfig::known_hosts(wire::LocalIdentity::new(&client), known_hosts.clone())
            // The fake server speaks v1 only.
            .protocol(client::Protocol::V1)
            // Even a policy that names the impostor's own fingerprint cannot override it.
            .unknown_host(UnknownHostPolicy::ExpectFingerprint(
                impostor.public_key().fingerprint(),
            ))
            .prompt(Some(Box::new(|_: &client::UnknownHost| {
                panic!("a changed key is never asked about")
            })));
    let target = client::Target {
        host: "127.0.0.1".into(),
        port: addr.port(),
    };
    let error = client::connect(&target, config).await.err().unwrap();
    let message = error.to_string();
    // The CLI renders SSH's banner from these fields (cli/tests lock its text).
    match &error {
        ClientError::HostKeyNotTrusted(client::HostKeyError::Changed {
            path,
            line,
            expected,
            presented,
            ..
        }) => {
            assert_eq!((path, *line), (&known_hosts, 3), "{message}");
            assert_eq!(*expected, real_host.public_key().fingerprint());
            assert_eq!(*presented, impostor.public_key().fingerprint());
        }
        other => panic!("expected a changed key, got {other:?}"),
    }
    assert_eq!(fake.await.unwrap(), 0, "no msg 3 to an impostor");
    assert_eq!(
        std::fs::read_to_string(&known_hosts).unwrap(),
        contents,
        "known_hosts untouched"
    );
}

#[tokio::test]
async fn a_wrong_expected_fingerprint_is_refused_and_a_right_one_is_remembered() {
    let client = Identity::generate("client");
    let server = TestServer::start(&[&client]).await;
    let dir = tempfile::tempdir().unwrap();
    let known_hosts = dir.path().join("sub/known_hosts");
    let make = |policy| {
        client::ClientConfig::known_hosts(wire::LocalIdentity::new(&client), known_hosts.clone())
            .unknown_host(policy)
    };
    let wrong = Identity::generate("").public_key().fingerprint();
    let error = client::connect(
        &server.target(),
        make(UnknownHostPolicy::ExpectFingerprint(wrong)),
    )
    .await
    .err()
    .unwrap();
    assert!(
        error
            .to_string()
            .contains(&format!("not the expected {wrong}")),
        "{error}"
    );
    assert!(!known_hosts.exists());
    let right = server.host.public_key().fingerprint();
    client::connect(
        &server.target(),
        make(UnknownHostPolicy::ExpectFingerprint(right)),
    )
    .await
    .unwrap();
    let written = std::fs::read_to_string(&known_hosts).unwrap();
    assert_eq!(
        written,
        format!(
            "[127.0.0.1]:{} {}\n",
            server.addr.port(),
            server.host.public_key().to_openssh_line("")
        )
    );
    // Known now: the plain refuse policy connects.
    client::connect(&server.target(), make(UnknownHostPolicy::Refuse))
        .await
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(&known_hosts).unwrap(),
        written,
        "not added twice"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_server_stop_finishes_and_closes_open_sessions() {
    let client = Identity::generate("client");
    let server = TestServer::start(&[&client]).await;
    let mut connection = server.connect(&client).await;
    assert!(connection.request(b"before").await.is_ok());
    let addr = server.addr;
    let stopping = tokio::spawn(server.stop());
    // The session waiting for a request is closed cleanly by the stopping server,
    // at once: the client reads the end of the stream while the server waits for
    // it to close (not at the session's idle timeout, minutes later; the bound
    // only keeps a regression from hanging the test).
    let end = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        connection.receiver_mut().read_reply(MIN_RESPONSE_LIMIT),
    )
    .await
    .expect("the waiting session heard of the stop");
    assert_eq!(end.unwrap(), None);
    drop(connection);
    stopping.await.unwrap();
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "no longer listening"
    );
}

#[tokio::test]
async fn connect_stream_runs_the_handshake_over_any_stream() {
    let client = Identity::generate("client");
    let server = TestServer::start(&[&client]).await;
    // An in-memory stream whose far end is relayed to the real server.
    let (near, mut far) = tokio::io::duplex(64 * 1024);
    let addr = server.addr;
    let relay = tokio::spawn(async move {
        let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let _ = tokio::io::copy_bidirectional(&mut far, &mut tcp).await;
    });
    let config = client::ClientConfig::pinned(
        wire::LocalIdentity::new(&client),
        server.host.public_key().fingerprint(),
    );
    let mut connection = client::connect_stream(near, &server.target(), config)
        .await
        .unwrap();
    assert_eq!(*connection.server_key(), server.host.public_key());
    assert_eq!(connection.newly_known_as(), None, "a pin writes no file");
    assert_eq!(
        connection.request(b"over a duplex").await.unwrap(),
        Reply::Response(b"OVER A DUPLEX".to_vec())
    );
    let (receiver, mut sender) = connection.into_halves();
    sender.shutdown().await.unwrap();
    drop(sender);
    drop(receiver);
    relay.await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn a_pinned_client_with_a_wrong_pin_is_refused_and_writes_no_file() {
    let client = Identity::generate("client");
    let server = TestServer::start(&[&client]).await;
    let files_before = std::fs::read_dir(server.dir.path()).unwrap().count();
    let wrong = Identity::generate("").public_key().fingerprint();
    let config = client::ClientConfig::pinned(wire::LocalIdentity::new(&client), wrong);
    let error = client::connect(&server.target(), config)
        .await
        .err()
        .unwrap();
    match &error {
        ClientError::HostKeyNotTrusted(client::HostKeyError::Mismatch {
            expected,
            presented,
            ..
        }) => {
            assert_eq!(*expected, wrong);
            assert_eq!(*presented, server.host.public_key().fingerprint());
        }
        other => panic!("expected a mismatch, got {other:?}"),
    }
    assert_eq!(
        std::fs::read_dir(server.dir.path()).unwrap().count(),
        files_before,
        "no known_hosts (or any file) is created"
    );
    let right = client::ClientConfig::pinned(
        wire::LocalIdentity::new(&client),
        server.host.public_key().fingerprint(),
    );
    let mut connection = client::connect(&server.target(), right).await.unwrap();
    assert!(connection.request(b"x").await.is_ok());
    assert_eq!(
        std::fs::read_dir(server.dir.path()).unwrap().count(),
        files_before
    );
    server.stop().await;
}
