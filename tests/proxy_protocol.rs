//! A server behind a load balancer, through the library over loopback TCP: this
//! test plays the proxy (connections from 127.0.0.1 that open with a PROXY protocol
//! header naming other loopback addresses) and checks that the address in the
//! header is the one `from=`, penalties and admission see; that health checks,
//! and headers that are missing, malformed, truncated or late, cost no one a
//! failure; and that a header from an address that is no proxy is refused before
//! any cryptography.

mod running_server;

use running_server::RunningServer;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use noise_echo::client::{self, ClientConfig, ClientError, Target};
use noise_echo::identity::Identity;
use noise_echo::openssh::authorized_keys::AuthorizedKeys;
use noise_echo::server::proxy_protocol::encode_v2;
use noise_echo::server::{AllowList, ServerConfig, ServerStats, StatsSnapshot};
use noise_echo::wire::{LocalIdentity, Reply};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The longest any single wait may take before it counts as a failure.
const WAIT: Duration = Duration::from_secs(20);

struct Running {
    addr: SocketAddr,
    host: Identity,
    stats: Arc<ServerStats>,
    /// The server itself, stopped by [`Running::stop`].
    server: RunningServer,
}

impl Running {
    /// A server whose proxies are `proxies`; `ann` may connect from 127.0.0.5 only
    /// and `bob` from 127.0.0.6 only.
    async fn start(
        proxies: &str,
        ann: &Identity,
        bob: &Identity,
        adjust: impl FnOnce(&mut ServerConfig),
    ) -> Self {
        let text = format!(
            "from=\"127.0.0.5\" {}\nfrom=\"127.0.0.6\" {}\n",
            ann.public_key().to_openssh_line("ann"),
            bob.public_key().to_openssh_line("bob")
        );
        let keys = AuthorizedKeys::parse(text.as_bytes(), "(in memory)".as_ref());
        let host = Identity::generate("host");
        let mut config = ServerConfig::with_allow_list(
            Arc::new(LocalIdentity::new(&host)),
            AllowList::Keys(Arc::new(keys)),
        );
        config.proxy_protocol = Some(proxies.parse().unwrap());
        adjust(&mut config);
        let server = RunningServer::start(config).await;
        Self {
            addr: server.addr,
            host,
            stats: Arc::clone(&server.stats),
            server,
        }
    }

    /// A TCP connection from 127.0.0.1 (the proxy) that opens with `header`.
    async fn via_proxy(&self, header: &[u8]) -> TcpStream {
        let mut stream = TcpStream::connect(self.addr).await.unwrap();
        stream.write_all(header).await.unwrap();
        stream
    }

    /// `who`'s session through the proxy for a client at `client`; its first reply.
    async fn request_as(&self, who: &Identity, header: &[u8]) -> Result<Reply, ClientError> {
        let stream = self.via_proxy(header).await;
        let target = Target {
            host: "127.0.0.1".into(),
            port: self.addr.port(),
        };
        let config = ClientConfig::pinned(
            LocalIdentity::new(who),
            self.host.public_key().fingerprint(),
        );
        let mut connection = client::connect_stream(stream, &target, config).await?;
        connection.request(b"hi").await
    }

    async fn wait_for(&self, what: &str, condition: impl Fn(&StatsSnapshot) -> bool) {
        let (snapshot, held) = self.stats.wait_for(WAIT, condition).await;
        assert!(held, "{what}: {snapshot:?}");
    }

    async fn stop(self) {
        self.server.stop().await;
    }
}

fn addr(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

/// A v2 header for a client at `client`, as HAProxy's send-proxy-v2 sends.
fn v2_for(client: &str, server: SocketAddr) -> Vec<u8> {
    encode_v2(Some((addr(client), server)))
}

/// Reads until the server closes; what it sent first.
async fn until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut received = Vec::new();
    let _ = tokio::time::timeout(WAIT, stream.read_to_end(&mut received))
        .await
        .expect("the server closes the connection");
    received
}

#[tokio::test]
async fn the_address_in_the_header_is_the_one_from_matches() {
    let (ann, bob) = (Identity::generate("ann"), Identity::generate("bob"));
    let server = Running::start("127.0.0.1", &ann, &bob, |_| {}).await;
    // Both versions of the header, for ann at 127.0.0.5: served.
    let v1 = format!(
        "PROXY TCP4 127.0.0.5 127.0.0.1 40000 {}\r\n",
        server.addr.port()
    );
    for header in [v2_for("127.0.0.5:40000", server.addr), v1.into_bytes()] {
        let reply = server.request_as(&ann, &header).await.unwrap();
        assert_eq!(reply, Reply::Response(b"HI".to_vec()));
    }
    // bob's key is for 127.0.0.6 only: at 127.0.0.5 he is denied, at .6 served.
    let denied = server
        .request_as(&bob, &v2_for("127.0.0.5:40001", server.addr))
        .await
        .unwrap_err();
    let reason = client::permission_denied_reason(&denied).expect("a refusal");
    assert!(
        reason.ends_with("is not allowed from 127.0.0.5"),
        "{reason}"
    );
    let reply = server
        .request_as(&bob, &v2_for("127.0.0.6:40002", server.addr))
        .await;
    assert_eq!(reply.unwrap(), Reply::Response(b"HI".to_vec()));
    // Through the proxy's own address, the header's client counts: an IPv4-mapped
    // client address is matched as IPv4.
    let reply = server
        .request_as(&ann, &v2_for("[::ffff:127.0.0.5]:40003", server.addr))
        .await;
    assert_eq!(reply.unwrap(), Reply::Response(b"HI".to_vec()));
    server
        .wait_for("5 proxied, 4 sessions, 1 denied", |s| {
            s.proxied == 5 && s.sessions == 4 && s.denied == 1
        })
        .await;
    server.stop().await;
}

#[tokio::test]
async fn penalties_fall_on_the_client_behind_the_proxy_not_on_the_proxy() {
    let (ann, bob) = (Identity::generate("ann"), Identity::generate("bob"));
    let server = Running::start("127.0.0.1", &ann, &bob, |config| {
        config.penalties.threshold = 3;
    })
    .await;
    // A client at 127.0.0.9 sends garbage after the header, three times: penalised.
    for port in 0..3 {
        let mut header = v2_for(&format!("127.0.0.9:{}", 50000 + port), server.addr);
        header.extend_from_slice(&[0xff; 40]);
        let mut stream = server.via_proxy(&header).await;
        until_closed(&mut stream).await;
    }
    server
        .wait_for("127.0.0.9 penalised", |s| s.penalties_imposed == 1)
        .await;
    // Its next connection is refused on arrival; ann at 127.0.0.5, through the
    // same proxy, is served.
    let mut stream = server
        .via_proxy(&v2_for("127.0.0.9:50010", server.addr))
        .await;
    assert!(until_closed(&mut stream).await.is_empty());
    server
        .wait_for("refused", |s| s.refused_penalized == 1)
        .await;
    let reply = server
        .request_as(&ann, &v2_for("127.0.0.5:50011", server.addr))
        .await;
    assert_eq!(reply.unwrap(), Reply::Response(b"HI".to_vec()));
    let stats = server.stats.snapshot();
    assert_eq!((stats.handshake_failures, stats.sessions), (3, 1));
    server.stop().await;
}

#[tokio::test]
async fn health_checks_and_bad_headers_are_closed_before_any_cryptography_and_penalise_no_one() {
    let (ann, bob) = (Identity::generate("ann"), Identity::generate("bob"));
    let server = Running::start("127.0.0.1", &ann, &bob, |config| {
        config.penalties.threshold = 1;
        config.handshake_timeout = Duration::from_millis(500);
    })
    .await;
    // LOCAL, as HAProxy's checks send it: a clean close (FIN, nothing sent).
    for _ in 0..5 {
        let mut stream = server.via_proxy(&encode_v2(None)).await;
        assert!(until_closed(&mut stream).await.is_empty());
    }
    server
        .wait_for("5 health checks", |s| s.proxy_health_checks == 5)
        .await;
    // No header at all (a client sent straight to the server's port from the
    // proxy's host), a malformed one, a truncated one, and one that never comes
    // (closed at the deadline): closed without a byte of the handshake.
    let message1 = [&[0u8, 32][..], &[7; 32]].concat();
    let truncated = v2_for("127.0.0.5:1", server.addr)[..20].to_vec();
    for (bytes, close) in [
        (message1, false),
        (b"PROXY TCP4 127.0.0.05 127.0.0.1 1 2\r\n".to_vec(), false),
        (truncated.clone(), true),
        (truncated, false),
    ] {
        let mut stream = server.via_proxy(&bytes).await;
        if close {
            stream.shutdown().await.unwrap();
        }
        assert!(until_closed(&mut stream).await.is_empty());
    }
    server
        .wait_for("4 header errors", |s| s.proxy_header_errors == 4)
        .await;
    // Nothing counted against the proxy: ann is still served through it.
    let reply = server
        .request_as(&ann, &v2_for("127.0.0.5:40000", server.addr))
        .await;
    assert_eq!(reply.unwrap(), Reply::Response(b"HI".to_vec()));
    let stats = server.stats.snapshot();
    assert_eq!(
        (
            stats.handshake_failures,
            stats.penalties_imposed,
            stats.refused_penalized
        ),
        (0, 0, 0),
        "{stats:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_header_from_an_address_that_is_no_proxy_fails_the_handshake() {
    let (ann, bob) = (Identity::generate("ann"), Identity::generate("bob"));
    // The proxy is 127.0.0.2; this test connects from 127.0.0.1.
    let server = Running::start("127.0.0.2", &ann, &bob, |_| {}).await;
    for header in [
        v2_for("127.0.0.5:40000", server.addr),
        b"PROXY TCP4 127.0.0.5 127.0.0.1 40000 1234\r\n".to_vec(),
    ] {
        let mut stream = server.via_proxy(&header).await;
        // Refused at message 1's length prefix: no message 2, no Diffie-Hellman.
        assert!(until_closed(&mut stream).await.is_empty());
    }
    server
        .wait_for("2 failed handshakes", |s| s.handshake_failures == 2)
        .await;
    assert_eq!(server.stats.snapshot().proxied, 0);
    server.stop().await;
}
