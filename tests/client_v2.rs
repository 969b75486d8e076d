//! The client's protocol v2 (docs/PROTOCOL.md, sections 8 to 14), against test
//! servers built from the library's own drivers on loopback: `wire::respond_any`
//! with chosen [`ResponderSettings`], `wire::respond` for a v1-only server, and
//! scripted servers and a man in the middle that write answers byte by byte.
//! Each test server records the offers it received, so the retry field is checked
//! where it arrives.

use std::sync::{Arc, Mutex};

use noise_echo::client::{self, ClientConfig, ClientError, Connection, Protocol, Target};
use noise_echo::identity::Identity;
use noise_echo::wire::{
    self, encode_frame, Answer, LocalIdentity, Offer, ProtocolVersion, RecordType, Refusal,
    RekeyPolicy, Reply, ResponderSettings, ServerParams, Suite, WireError,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// The server's request limit in these tests.
const MAX_REQUEST: u32 = 1000;

fn host() -> Identity {
    Identity::from_seed(&[7; 32], "host")
}

fn client_identity() -> Identity {
    Identity::from_seed(&[8; 32], "client")
}

/// The other suite than `suite`.
fn other(suite: Suite) -> Suite {
    match suite {
        Suite::AesGcmSha256 => Suite::ChaChaPolyBlake2s,
        _ => Suite::AesGcmSha256,
    }
}

fn settings(suites: &[Suite], v1_enabled: bool) -> ResponderSettings {
    ResponderSettings::new(
        suites.to_vec(),
        v1_enabled,
        ServerParams::new(MAX_REQUEST, RekeyPolicy::DEFAULT),
    )
}

/// A client pinned to [`host`]'s key, speaking `protocol` with `cipher`.
fn config(protocol: Protocol, cipher: Option<Suite>) -> ClientConfig {
    ClientConfig::pinned(
        LocalIdentity::new(&client_identity()),
        host().public_key().fingerprint(),
    )
    .protocol(protocol)
    .cipher(cipher)
}

/// A listener on a free loopback port, and the target naming it.
async fn listen() -> (TcpListener, Target) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = Target {
        host: "127.0.0.1".into(),
        port: listener.local_addr().unwrap().port(),
    };
    (listener, target)
}

/// What a test server saw: the offer of each connection (`None` for a first frame
/// that is no offer), and the request bodies it answered.
#[derive(Default, Debug)]
struct Seen {
    offers: Vec<Option<Offer>>,
    requests: Vec<Vec<u8>>,
}

type Shared = Arc<Mutex<Seen>>;

/// The offer at the start of what `stream` has received, without consuming it:
/// the client writes offer and message 1 at once. Bounded: a few peeks at most.
async fn peek_offer(stream: &TcpStream) -> Option<Offer> {
    let mut buf = [0u8; 512];
    for _ in 0..1000 {
        let n = stream.peek(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        if n >= 2 {
            let len = usize::from(u16::from_be_bytes([buf[0], buf[1]]));
            if n >= 2 + len {
                return Offer::decode(&buf[2..2 + len]).ok();
            }
        }
        tokio::task::yield_now().await;
    }
    None
}

/// Serves `connections` connections with `respond_any` and `settings`, each an
/// uppercase echo until the client's end of stream.
async fn respond_any_server(
    settings: ResponderSettings,
    connections: usize,
) -> (Target, Shared, JoinHandle<()>) {
    let (accepting, target) = listen().await;
    let seen = Shared::default();
    let record = seen.clone();
    let task = tokio::spawn(async move {
        let local = LocalIdentity::new(&host());
        for _ in 0..connections {
            let (mut stream, _) = accepting.accept().await.unwrap();
            let offer = peek_offer(&stream).await;
            record.lock().unwrap().offers.push(offer);
            let Ok(established) = wire::respond_any(&mut stream, &local, &settings).await else {
                continue;
            };
            echo(established, stream, &record).await;
        }
    });
    (target, seen, task)
}

/// Answers each request with its uppercase, recording it, until end of stream.
async fn echo(established: wire::Established, stream: TcpStream, seen: &Shared) {
    let (reader, writer) = stream.into_split();
    let (mut rx, mut tx) = established.into_halves(reader, writer);
    let mut body = Vec::new();
    while let Ok(Some(_header)) = rx.next_record().await {
        if rx.read_body(&mut body, MAX_REQUEST).await.is_err() {
            return;
        }
        seen.lock().unwrap().requests.push(body.clone());
        let reply = String::from_utf8_lossy(&body).to_uppercase();
        if tx
            .write_record(RecordType::Response, reply.as_bytes())
            .await
            .is_err()
            || tx.flush().await.is_err()
        {
            return;
        }
    }
    let _ = tx.shutdown().await;
}

/// Reads the client's offer and message 1 (two frames), answers `answer` and
/// half-closes, as a v2 server does for a refusal.
async fn scripted_answer(stream: &mut TcpStream, answer: &Answer) {
    for _ in 0..2 {
        let mut len = [0u8; 2];
        stream.read_exact(&mut len).await.unwrap();
        let mut frame = vec![0; usize::from(u16::from_be_bytes(len))];
        stream.read_exact(&mut frame).await.unwrap();
    }
    let mut out = Vec::new();
    encode_frame(&answer.encode(), &mut out).unwrap();
    stream.write_all(&out).await.unwrap();
    stream.shutdown().await.unwrap();
    // Until the client's end: closing with input unread would reset the answer.
    let mut rest = Vec::new();
    let _ = stream.read_to_end(&mut rest).await;
}

async fn round_trip<R, W>(connection: &mut Connection<R, W>, text: &str)
where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    match connection.request(text.as_bytes()).await.unwrap() {
        Reply::Response(body) => assert_eq!(body, text.to_uppercase().as_bytes()),
        other => panic!("{other:?}"),
    }
}

async fn finish(connection: Connection, server: JoinHandle<()>) {
    let (_, mut sender) = connection.into_halves();
    sender.shutdown().await.unwrap();
    server.await.unwrap();
}

#[tokio::test]
async fn each_suite_forced_runs_against_a_server_that_accepts_both() {
    for suite in Suite::ALL {
        let (target, seen, server) = respond_any_server(settings(&Suite::ALL, true), 1).await;
        let mut connection = client::connect(&target, config(Protocol::Auto, Some(suite)))
            .await
            .unwrap();
        assert_eq!(connection.version(), ProtocolVersion::V2);
        assert_eq!(connection.suite(), suite);
        assert_eq!(connection.max_request(), Some(MAX_REQUEST));
        assert_eq!(
            connection.server_params().unwrap().rekey,
            wire::wire_rekey_policy(RekeyPolicy::DEFAULT)
        );
        // Both directions, several messages each.
        for text in ["hello", "ünïcode", "third"] {
            round_trip(&mut connection, text).await;
        }
        finish(connection, server).await;
        assert_eq!(seen.lock().unwrap().offers, [Some(Offer::new(suite))]);
    }
}

#[tokio::test]
async fn each_suite_is_reached_automatically_by_a_server_that_accepts_only_it() {
    for suite in Suite::ALL {
        let expected_connections = if suite == Suite::preferred() { 1 } else { 2 };
        let (target, seen, server) =
            respond_any_server(settings(&[suite], false), expected_connections).await;
        let mut connection = client::connect(&target, config(Protocol::Auto, None))
            .await
            .unwrap();
        assert_eq!(connection.suite(), suite);
        round_trip(&mut connection, "auto").await;
        finish(connection, server).await;
        let offers = &seen.lock().unwrap().offers;
        if suite == Suite::preferred() {
            assert_eq!(offers, &[Some(Offer::new(suite))]);
        } else {
            // The retry, on a new connection, names the rejected suite.
            assert_eq!(
                offers,
                &[
                    Some(Offer::new(Suite::preferred())),
                    Some(Offer::retrying(suite, Suite::preferred()))
                ]
            );
        }
    }
}

#[tokio::test]
async fn a_forced_suite_the_server_refuses_is_an_error_listing_what_it_accepts() {
    let forced = Suite::AesGcmSha256;
    let (target, seen, server) =
        respond_any_server(settings(&[Suite::ChaChaPolyBlake2s], true), 1).await;
    let error = client::connect(&target, config(Protocol::V2, Some(forced)))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, ClientError::NoCommonSuite { forced: true, accepted, .. }
            if accepted == &[Suite::ChaChaPolyBlake2s.noise_name().to_owned()]),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        "the server does not accept the cipher aesgcm (Noise_XX_25519_AESGCM_SHA256); it \
         accepts Noise_XX_25519_ChaChaPoly_BLAKE2s: connect with --cipher chachapoly"
    );
    server.await.unwrap();
    // No retry: one connection.
    assert_eq!(seen.lock().unwrap().offers.len(), 1);
}

#[tokio::test]
async fn over_a_callers_stream_the_retry_is_left_to_the_caller_with_the_list() {
    let refused = Suite::preferred();
    let (target, _seen, server) = respond_any_server(settings(&[other(refused)], true), 1).await;
    let stream = TcpStream::connect((target.host.as_str(), target.port))
        .await
        .unwrap();
    let error = client::connect_stream(stream, &target, config(Protocol::Auto, None))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, ClientError::SuiteRetryNeeded { offered, accepted }
            if *offered == refused && accepted == &[other(refused).noise_name().to_owned()]),
        "{error:?}"
    );
    server.await.unwrap();
}

/// A man in the middle forges UNSUPPORTED_SUITE to the first offer; the client
/// retries through it, and the real server, which accepts the first choice,
/// refuses the retry.
#[tokio::test]
async fn a_forged_unsupported_suite_makes_the_real_server_refuse_the_retry() {
    let (real, seen, server) = respond_any_server(settings(&Suite::ALL, true), 1).await;
    let (proxy, proxy_target) = listen().await;
    let mitm = tokio::spawn(async move {
        // First connection: the forged answer, naming only the other suite.
        let (mut first, _) = proxy.accept().await.unwrap();
        let forged =
            Answer::UnsupportedSuite(vec![other(Suite::preferred()).noise_name().to_owned()]);
        scripted_answer(&mut first, &forged).await;
        // Second: relayed untouched to the real server.
        let (mut second, _) = proxy.accept().await.unwrap();
        let mut upstream = TcpStream::connect((real.host.as_str(), real.port))
            .await
            .unwrap();
        let _ = tokio::io::copy_bidirectional(&mut second, &mut upstream).await;
    });
    let error = client::connect(&proxy_target, config(Protocol::Auto, None))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, ClientError::RetryRefused { rejected }
            if rejected == Suite::preferred().noise_name()),
        "{error:?}"
    );
    assert!(
        error.to_string().starts_with(
            "the server refused the retry: its earlier answer did not come from it (a man in the middle?)"
        ),
        "{error}"
    );
    server.await.unwrap();
    mitm.await.unwrap();
    assert_eq!(
        seen.lock().unwrap().offers,
        [Some(Offer::retrying(
            other(Suite::preferred()),
            Suite::preferred()
        ))]
    );
}

/// A v1-only server closes on an offer: the error names `--protocol 1` and a
/// refusal, and the client does not fall back to v1 by itself.
#[tokio::test]
async fn a_v1_only_server_is_an_error_naming_protocol_1_and_never_a_fallback() {
    let (accepting, target) = listen().await;
    let server = tokio::spawn(async move {
        let local = LocalIdentity::new(&host());
        let (mut stream, _) = accepting.accept().await.unwrap();
        assert!(wire::respond(&mut stream, &local).await.is_err());
    });
    let error = client::connect(&target, config(Protocol::Auto, None))
        .await
        .unwrap_err();
    assert!(
        matches!(
            &error,
            ClientError::Wire(WireError::NotAllowed(Refusal::ClosedBeforeAnswer))
        ),
        "{error:?}"
    );
    let text = error.to_string();
    assert!(
        text.contains("may speak only protocol 1 (retry with: connect --protocol 1)"),
        "{text}"
    );
    assert!(text.contains("--protocol 1"), "{text}");
    assert!(text.contains("try again later"), "{text}");
    // One connection only: no silent second attempt with v1.
    server.await.unwrap();
}

#[tokio::test]
async fn protocol_1_against_a_v1_server_works() {
    let (accepting, target) = listen().await;
    let seen = Shared::default();
    let record = seen.clone();
    let server = tokio::spawn(async move {
        let local = LocalIdentity::new(&host());
        let (mut stream, _) = accepting.accept().await.unwrap();
        let established = wire::respond(&mut stream, &local).await.unwrap();
        echo(established, stream, &record).await;
    });
    // The cipher is ignored in v1: ChaChaPoly is its only suite.
    let mut connection = client::connect(&target, config(Protocol::V1, Some(Suite::AesGcmSha256)))
        .await
        .unwrap();
    assert_eq!(connection.version(), ProtocolVersion::V1);
    assert_eq!(connection.suite(), Suite::ChaChaPolyBlake2s);
    assert_eq!(connection.server_params(), None);
    assert_eq!(connection.max_request(), None);
    round_trip(&mut connection, "v1").await;
    finish(connection, server).await;
    assert_eq!(seen.lock().unwrap().requests, [b"v1".to_vec()]);
}

#[tokio::test]
async fn unsupported_version_names_protocol_1_when_the_server_lists_it() {
    for (versions, names_the_flag) in [(vec![1], true), (vec![3], false)] {
        let (accepting, target) = listen().await;
        let answer = Answer::UnsupportedVersion(versions.clone());
        let server = tokio::spawn(async move {
            let (mut stream, _) = accepting.accept().await.unwrap();
            scripted_answer(&mut stream, &answer).await;
        });
        let error = client::connect(&target, config(Protocol::V2, None))
            .await
            .unwrap_err();
        assert!(
            matches!(&error, ClientError::VersionNotSpoken { offered: 2, accepted } if *accepted == versions),
            "{error:?}"
        );
        assert_eq!(
            error.to_string().contains("connect with --protocol 1"),
            names_the_flag,
            "{error}"
        );
        server.await.unwrap();
    }
    // The real responder, serving v1 only (no v2 suites), answers so too.
    let (target, _seen, server) = respond_any_server(settings(&[], true), 1).await;
    let error = client::connect(&target, config(Protocol::Auto, None))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, ClientError::VersionNotSpoken { .. }),
        "{error:?}"
    );
    server.await.unwrap();
}

/// A request over the server's advertised limit is refused before anything is
/// sent: the server sees only the requests that fit, and the session goes on.
#[tokio::test]
async fn a_request_over_max_request_is_refused_locally_and_nothing_is_sent() {
    let (target, seen, server) = respond_any_server(settings(&Suite::ALL, true), 1).await;
    let mut connection = client::connect(&target, config(Protocol::Auto, None))
        .await
        .unwrap();
    let too_long = "x".repeat(MAX_REQUEST as usize + 1);
    let error = connection.request(too_long.as_bytes()).await.unwrap_err();
    assert!(
        matches!(error, ClientError::RequestTooLarge { len, limit: MAX_REQUEST } if len == too_long.len()),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        format!(
            "request of {} bytes exceeds the server's limit of {MAX_REQUEST} bytes",
            MAX_REQUEST + 1
        )
    );
    let fits = "y".repeat(MAX_REQUEST as usize);
    round_trip(&mut connection, &fits).await;
    finish(connection, server).await;
    assert_eq!(seen.lock().unwrap().requests, [fits.into_bytes()]);
}

/// A server that refuses an oversized request sends ERROR and closes while the
/// client is still writing it: the client reports the ERROR, not the reset.
#[tokio::test]
async fn a_refusal_sent_while_the_client_writes_is_reported_not_the_reset() {
    let (accepting, target) = listen().await;
    let server = tokio::spawn(async move {
        let local = LocalIdentity::new(&host());
        let (mut stream, _) = accepting.accept().await.unwrap();
        let established = wire::respond(&mut stream, &local).await.unwrap();
        let (reader, writer) = stream.into_split();
        let (mut rx, mut tx) = established.into_halves(reader, writer);
        let header = rx.next_record().await.unwrap().unwrap();
        assert!(header.len > MAX_REQUEST);
        tx.write_record(RecordType::Error, b"request too large")
            .await
            .unwrap();
        tx.shutdown().await.unwrap();
        // Dropped with the body unread: the kernel resets the connection.
    });
    let mut connection = client::connect(&target, config(Protocol::V1, None))
        .await
        .unwrap();
    // Far more than the socket buffers hold, so the write is under way when the
    // server closes.
    let huge = vec![b'a'; 64 << 20];
    let reply = connection.request(&huge).await.unwrap();
    assert_eq!(reply, Reply::Error("request too large".into()));
    server.await.unwrap();
}
