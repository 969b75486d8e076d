//! The server of both protocol versions, end to end: `Server::run` on loopback TCP
//! against the library's own client handshakes (`wire::initiate` for v1,
//! `wire::initiate_v2` for v2). Which versions and suites a server serves, what it
//! answers the others (docs/PROTOCOL.md sections 0, 10 and 13), that an honest
//! mismatch is not held against the client's address, the parameters message 2
//! advertises, rekeying under the server's policy, and another protocol's first
//! bytes reported as such without waiting for the handshake deadline.

mod running_server;

use running_server::RunningServer;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use noise_echo::identity::Identity;
use noise_echo::openssh::authorized_keys::{self, AuthorizedKeys};
use noise_echo::server::{AllowList, ServerConfig, ServerStats, StatsSnapshot};
use noise_echo::wire::{
    self, Established, LocalIdentity, Mismatch, Offer, ProtocolVersion, RecordType, Refusal,
    RekeyPolicy, Reply, Suite, WireError,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Bounds every exchange: far beyond what a loopback handshake takes, far below
/// the handshake deadline of the servers here.
const LIMIT: Duration = Duration::from_secs(20);

async fn bounded<T>(future: impl Future<Output = T>) -> T {
    tokio::time::timeout(LIMIT, future)
        .await
        .expect("the exchange finished in time")
}

fn client_identity() -> Identity {
    Identity::from_seed(&[1; 32], "client")
}

/// A running server that authorizes [`client_identity`], with its counters.
struct Running {
    addr: SocketAddr,
    stats: Arc<ServerStats>,
    /// The server itself, stopped by [`Running::stop`].
    server: RunningServer,
}

impl Running {
    async fn start(adjust: impl FnOnce(&mut ServerConfig)) -> Self {
        let host = Identity::from_seed(&[2; 32], "host");
        let client = client_identity();
        let line = authorized_keys::append_key(&[], &client.public_key(), client.comment());
        let keys = AuthorizedKeys::parse(&line, "(in memory)".as_ref());
        let mut config = ServerConfig::with_allow_list(
            Arc::new(LocalIdentity::new(&host)),
            AllowList::Keys(Arc::new(keys)),
        );
        // Long enough that a test finishing promptly proves nobody waited for it.
        config.handshake_timeout = Duration::from_secs(600);
        adjust(&mut config);
        let server = RunningServer::start(config).await;
        Self {
            addr: server.addr,
            stats: Arc::clone(&server.stats),
            server,
        }
    }

    /// Waits until `condition` holds of the counters; panics if it never does.
    async fn wait_for(&self, condition: impl Fn(&StatsSnapshot) -> bool) -> StatsSnapshot {
        let (snapshot, met) = self.stats.wait_for(LIMIT, condition).await;
        assert!(met, "the counters never got there: {snapshot:?}");
        snapshot
    }

    async fn stop(self) {
        self.server.stop().await;
    }
}

/// A v2 handshake with `offer`: the established session and what message 2 said.
async fn connect_v2(addr: SocketAddr, offer: &Offer) -> wire::Result<(Established, TcpStream)> {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let local = LocalIdentity::new(&client_identity());
    let pending = bounded(wire::initiate_v2(&mut stream, &local, offer)).await?;
    let established = bounded(pending.approve(&mut stream)).await?;
    Ok((established, stream))
}

/// A v1 handshake.
async fn connect_v1(addr: SocketAddr) -> wire::Result<(Established, TcpStream)> {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let local = LocalIdentity::new(&client_identity());
    let pending = bounded(wire::initiate(&mut stream, &local)).await?;
    let established = bounded(pending.approve(&mut stream)).await?;
    Ok((established, stream))
}

/// Sends each of `requests` and checks its reply is the uppercase; returns how many
/// times the client's sending half rekeyed.
async fn echo(established: Established, stream: TcpStream, requests: &[&str]) -> u64 {
    let (reader, writer) = stream.into_split();
    let (mut rx, mut tx) = established.into_halves(reader, writer);
    for request in requests {
        bounded(async {
            tx.write_record(RecordType::Request, request.as_bytes())
                .await
                .unwrap();
            tx.flush().await.unwrap();
            let reply = rx.read_reply_to(request.len()).await.unwrap();
            assert_eq!(
                reply,
                Some(Reply::Response(request.to_uppercase().into_bytes()))
            );
        })
        .await;
    }
    tx.shutdown().await.unwrap();
    tx.rekeys()
}

fn mismatch<T: std::fmt::Debug>(result: wire::Result<T>) -> Mismatch {
    match result {
        Err(WireError::Mismatch(mismatch)) => mismatch,
        other => panic!("expected a mismatch, got {other:?}"),
    }
}

#[tokio::test]
async fn a_v1_client_is_served_by_the_default_server() {
    let server = Running::start(|_| {}).await;
    let (established, stream) = connect_v1(server.addr).await.unwrap();
    assert_eq!(established.version(), ProtocolVersion::V1);
    assert_eq!(established.suite(), Suite::ChaChaPolyBlake2s);
    assert_eq!(echo(established, stream, &["hello", "v1"]).await, 0);
    server.wait_for(|s| s.closed == 1).await;
    server.stop().await;
}

#[tokio::test]
async fn each_v2_suite_is_served_with_the_configured_parameters() {
    let policy = RekeyPolicy {
        max_messages: 5000,
        max_bytes: 7 << 20,
        max_interval: Duration::from_secs(90),
    };
    let server = Running::start(|config| {
        config.max_request = 54_321;
        config.rekey_policy = policy;
    })
    .await;
    for suite in Suite::ALL {
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        let local = LocalIdentity::new(&client_identity());
        let pending = bounded(wire::initiate_v2(&mut stream, &local, &Offer::new(suite)))
            .await
            .unwrap();
        let params = *pending.server_params().expect("v2 carries the parameters");
        assert_eq!(params.max_request, 54_321);
        assert_eq!(params.rekey, policy);
        let established = bounded(pending.approve(&mut stream)).await.unwrap();
        assert_eq!(
            (established.version(), established.suite()),
            (ProtocolVersion::V2, suite)
        );
        echo(established, stream, &["hello", "v2"]).await;
    }
    let stats = server.wait_for(|s| s.closed == 2).await;
    assert_eq!((stats.sessions, stats.requests), (2, 4));
    for suite in stats.sessions_by_suite() {
        assert_eq!((suite.total, suite.open), (1, 0), "{suite:?}");
    }
    server.stop().await;
}

#[tokio::test]
async fn a_v1_only_server_answers_a_v2_offer_with_version_1() {
    let server = Running::start(|config| config.protocols = vec![ProtocolVersion::V1]).await;
    let error = connect_v2(server.addr, &Offer::new(Suite::ChaChaPolyBlake2s)).await;
    assert_eq!(
        mismatch(error),
        Mismatch::UnsupportedVersion {
            offered: 2,
            accepted: vec![1]
        }
    );
    // And it still serves v1.
    let (established, stream) = connect_v1(server.addr).await.unwrap();
    echo(established, stream, &["still v1"]).await;
    let stats = server.wait_for(|s| s.closed == 1).await;
    assert_eq!(
        (stats.handshake_mismatches, stats.handshake_failures),
        (1, 0)
    );
    server.stop().await;
}

#[tokio::test]
async fn a_v2_only_server_closes_on_a_v1_client() {
    let server = Running::start(|config| config.protocols = vec![ProtocolVersion::V2]).await;
    let error = connect_v1(server.addr).await.unwrap_err();
    assert!(
        matches!(error, WireError::NotAllowed(Refusal::ClosedBeforeHandshake)),
        "{error:?}"
    );
    let stats = server.wait_for(|s| s.handshake_mismatches == 1).await;
    assert_eq!(stats.handshake_failures, 0);
    server.stop().await;
}

/// A chachapoly-only server with a penalty threshold of 3: `tries` connections
/// from 127.0.0.1 made by `attempt`, then whether a good v2 handshake still gets in.
async fn admitted_after(tries: u32, attempt: impl AsyncFn(SocketAddr)) -> (bool, StatsSnapshot) {
    let server = Running::start(|config| {
        config.suites = vec![Suite::ChaChaPolyBlake2s];
        config.penalties.threshold = 3;
        config.penalties.base = Duration::from_secs(600);
    })
    .await;
    for _ in 0..tries {
        attempt(server.addr).await;
    }
    server
        .wait_for(|s| {
            s.handshake_mismatches + s.handshake_failures + s.refused_penalized == u64::from(tries)
        })
        .await;
    let admitted = connect_v2(server.addr, &Offer::new(Suite::ChaChaPolyBlake2s))
        .await
        .is_ok();
    let stats = server.stats.snapshot();
    server.stop().await;
    (admitted, stats)
}

#[tokio::test]
async fn an_unsupported_suite_is_answered_and_not_held_against_the_source() {
    let (admitted, stats) = admitted_after(6, async |addr| {
        let error = connect_v2(addr, &Offer::new(Suite::AesGcmSha256)).await;
        assert_eq!(
            mismatch(error),
            Mismatch::UnsupportedSuite {
                offered: Suite::AesGcmSha256.noise_name().to_owned(),
                accepted: vec![Suite::ChaChaPolyBlake2s.noise_name().to_owned()],
            }
        );
    })
    .await;
    assert!(admitted, "{stats:?}");
    assert_eq!(
        (stats.handshake_mismatches, stats.refused_penalized),
        (6, 0)
    );

    // The same number of failures (a malformed offer each) gets the source refused.
    let (admitted, stats) = admitted_after(6, async |addr| {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let garbage = [&[0, 40][..], b"noise-echo\x02\x00", &[0; 28]].concat();
        stream.write_all(&garbage).await.unwrap();
        drain(&mut stream).await;
    })
    .await;
    assert!(!admitted, "{stats:?}");
    // Three failures (the threshold) began the refusal; it refused the rest.
    assert_eq!((stats.handshake_failures, stats.refused_penalized), (3, 4));
}

#[tokio::test]
async fn a_v2_session_through_the_server_rekeys_under_its_policy() {
    let server = Running::start(|config| {
        config.rekey_policy = RekeyPolicy {
            max_messages: 2,
            max_bytes: 100,
            max_interval: Duration::from_secs(3600),
        };
    })
    .await;
    for suite in Suite::ALL {
        let (established, stream) = connect_v2(server.addr, &Offer::new(suite)).await.unwrap();
        assert_eq!(established.rekey_policy().unwrap().max_messages, 2);
        let requests: Vec<String> = (0..20)
            .map(|n| format!("request {n} {}", "x".repeat(n * 7)))
            .collect();
        let requests: Vec<&str> = requests.iter().map(String::as_str).collect();
        // 20 messages each way, two per key at most: the client rekeyed at least
        // ten times, and opened the server's rekeys (or it would have failed).
        let rekeys = echo(established, stream, &requests).await;
        assert!(rekeys >= 10, "{suite}: {rekeys} rekeys");
    }
    let stats = server.wait_for(|s| s.closed == 2).await;
    assert_eq!((stats.requests, stats.session_failures), (40, 0));
    server.stop().await;
}

/// Reads until the end of the stream (or a reset); bounded.
async fn drain(stream: &mut TcpStream) -> usize {
    let mut total = 0;
    let mut buffer = [0u8; 4096];
    for _ in 0..10_000 {
        match bounded(stream.read(&mut buffer)).await {
            Ok(0) | Err(_) => return total,
            Ok(read) => total += read,
        }
    }
    panic!("the server kept sending");
}

#[tokio::test]
async fn another_protocols_first_bytes_are_refused_at_once() {
    let client_hello = [
        &[
            0x16, 0x03, 0x01, 0x00, 0xf4, 0x01, 0x00, 0x00, 0xf0, 0x03, 0x03,
        ][..],
        &[0x5a; 240],
    ]
    .concat();
    let server = Running::start(|config| config.penalties.threshold = 0).await;
    for (n, first_bytes) in [
        &client_hello[..],
        b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
        b"SSH-2.0-OpenSSH_9.6\r\n",
        b"EHLO mail.example\r\n",
    ]
    .into_iter()
    .enumerate()
    {
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        stream.write_all(first_bytes).await.unwrap();
        // Closed without a reply, and long before the 600 s handshake deadline: the
        // bytes were not taken for a frame length to wait for.
        assert_eq!(drain(&mut stream).await, 0);
        let stats = server
            .wait_for(|s| s.handshake_failures == n as u64 + 1)
            .await;
        assert_eq!(stats.handshake_timeouts, 0);
    }
    server.stop().await;
}
