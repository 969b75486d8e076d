//! The server's request counters and latency histogram, which a session publishes
//! once per batch of pipelined requests (src/server/stats.rs, `Batch`): a client
//! that has its replies sees them counted, one latency observation per request,
//! whatever ended the session.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use noise_echo::client::{self, ClientConfig, Target};
use noise_echo::identity::Identity;
use noise_echo::openssh::authorized_keys::{self, AuthorizedKeys};
use noise_echo::server::{AllowList, Server, ServerConfig};
use noise_echo::wire::LocalIdentity;
use noise_echo::wire::{RecordType, RecvHalf, Reply, SendHalf, Suite};
use tokio::io::{DuplexStream, ReadHalf, WriteHalf};
use tokio::task::JoinHandle;

/// Requests sent in one burst: several transport messages' worth of replies.
const BURST: usize = 5_000;

fn peer() -> SocketAddr {
    "127.0.0.1:40000".parse().unwrap()
}

fn target() -> Target {
    Target {
        host: "in-memory".into(),
        port: 1234,
    }
}

/// A server that authorizes `client`, with its allow-list in memory.
fn server_for(client: &Identity) -> (Arc<Server>, Identity) {
    let host = Identity::from_seed(&[0x42; 32], "host");
    let line = authorized_keys::append_key(&[], &client.public_key(), client.comment());
    let keys = AuthorizedKeys::parse(&line, "(in memory)".as_ref());
    let config = ServerConfig::with_allow_list(
        Arc::new(LocalIdentity::new(&host)),
        AllowList::Keys(Arc::new(keys)),
    );
    (Arc::new(Server::new(config).unwrap()), host)
}

/// The client's halves of an in-memory session.
type Halves = (
    RecvHalf<ReadHalf<DuplexStream>>,
    SendHalf<WriteHalf<DuplexStream>>,
);

/// A session of alice's with a fresh server, over an in-memory stream: the server,
/// its serving task, and the client's halves. `cipher` forces a v2 suite.
async fn session(cipher: Option<Suite>) -> (Arc<Server>, JoinHandle<()>, Halves) {
    let alice = Identity::from_seed(&[1; 32], "alice");
    let (server, host) = server_for(&alice);
    let (client_io, server_io) = tokio::io::duplex(64 * 1024);
    let serving = tokio::spawn({
        let server = Arc::clone(&server);
        async move { server.serve_connection(server_io, peer()).await }
    });
    let mut config =
        ClientConfig::pinned(LocalIdentity::new(&alice), host.public_key().fingerprint());
    config.cipher = cipher;
    let connection = client::connect_stream(client_io, &target(), config)
        .await
        .unwrap();
    (server, serving, connection.into_halves())
}

#[tokio::test]
async fn a_pipelined_burst_is_counted_once_per_request_before_its_replies_arrive() {
    let (server, serving, (mut rx, mut tx)) = session(None).await;
    // Written by another task while this one reads: the whole burst is in flight.
    let writer = tokio::spawn(async move {
        for index in 0..BURST {
            let body = format!("request {index:04}");
            tx.write_record(RecordType::Request, body.as_bytes())
                .await
                .unwrap();
        }
        tx.flush().await.unwrap();
        tx
    });
    let mut bytes = 0u64;
    for index in 0..BURST {
        let expected = format!("REQUEST {index:04}");
        let reply = rx.read_reply_to(expected.len()).await.unwrap();
        assert_eq!(reply, Some(Reply::Response(expected.clone().into_bytes())));
        bytes += expected.len() as u64;
    }
    let tx = writer.await.unwrap();
    // Every reply is here, the session still open: nothing may lag.
    let stats = server.stats();
    assert_eq!(stats.snapshot().requests, BURST as u64);
    assert_eq!(stats.request_latency.snapshot().count, BURST as u64);
    assert_eq!(stats.bytes_in.load(Ordering::Relaxed), bytes);
    assert_eq!(stats.bytes_out.load(Ordering::Relaxed), bytes);
    drop((rx, tx));
    tokio::time::timeout(Duration::from_secs(10), serving)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn requests_answered_just_before_the_client_ends_its_stream_are_counted() {
    let (server, serving, (mut rx, mut tx)) = session(None).await;
    // Three requests and the end of the stream in one go: the session's last
    // batch ends with the session, not with a flush of its own.
    for body in [&b"one"[..], b"two", b"\xff"] {
        tx.write_record(RecordType::Request, body).await.unwrap();
    }
    tx.shutdown().await.unwrap();
    let mut replies = Vec::new();
    for _ in 0..3 {
        replies.push(rx.read_reply_to(3).await.unwrap().unwrap());
    }
    assert_eq!(
        &replies[..2],
        [
            Reply::Response(b"ONE".to_vec()),
            Reply::Response(b"TWO".to_vec())
        ]
    );
    assert!(
        matches!(&replies[2], Reply::Error(reason) if reason.contains("UTF-8")),
        "{replies:?}"
    );
    assert_eq!(rx.read_reply_to(3).await.unwrap(), None);
    tokio::time::timeout(Duration::from_secs(10), serving)
        .await
        .unwrap()
        .unwrap();
    let stats = server.stats();
    assert_eq!(stats.snapshot().requests, 3);
    assert_eq!(stats.request_latency.snapshot().count, 3);
    assert_eq!(stats.bytes_in.load(Ordering::Relaxed), 7);
    // The ERROR's reason is not a reply body.
    assert_eq!(stats.bytes_out.load(Ordering::Relaxed), 6);
}

#[tokio::test]
async fn a_cancelled_session_is_counted_out_of_the_open_gauges() {
    let (server, serving, (mut rx, mut tx)) = session(Some(Suite::AesGcmSha256)).await;
    tx.write_record(RecordType::Request, b"hi").await.unwrap();
    tx.flush().await.unwrap();
    assert_eq!(
        rx.read_reply_to(2).await.unwrap(),
        Some(Reply::Response(b"HI".to_vec()))
    );
    let stats = server.stats();
    let open = |stats: &noise_echo::server::StatsSnapshot| {
        stats
            .sessions_by_suite()
            .map(|suite| (suite.suite, suite.open))
    };
    assert_eq!(
        open(&stats.snapshot()),
        [
            (Suite::ChaChaPolyBlake2s.noise_name(), 0),
            (Suite::AesGcmSha256.noise_name(), 1)
        ]
    );
    // The session's task cancelled mid-session, as a runtime shut down past the
    // grace period drops it: never reaching the end of the echo loop.
    serving.abort();
    assert!(serving.await.unwrap_err().is_cancelled());
    let after = stats.snapshot();
    assert_eq!(after.sessions_open, 0);
    assert_eq!(
        open(&after),
        [
            (Suite::ChaChaPolyBlake2s.noise_name(), 0),
            (Suite::AesGcmSha256.noise_name(), 0)
        ]
    );
    drop((rx, tx));
}
