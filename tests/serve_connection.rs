//! `Server::serve_connection` over `tokio::io::duplex`: the server's real connection
//! loop without a socket, with tokio's paused clock, so the handshake deadline and
//! the idle timeout are tested in virtual time, exactly and instantly.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use noise_echo::client::{self, ClientConfig, Target};
use noise_echo::identity::Identity;
use noise_echo::openssh::authorized_keys::{self, AuthorizedKeys};
use noise_echo::server::{AllowList, Server, ServerConfig, DEFAULT_HANDSHAKE_TIMEOUT};
use noise_echo::wire::{LocalIdentity, Reply};
use tokio::io::AsyncReadExt;

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
fn server_for(client: &Identity, adjust: impl FnOnce(&mut ServerConfig)) -> (Server, Identity) {
    let host = Identity::from_seed(&[0x42; 32], "host");
    let line = authorized_keys::append_key(&[], &client.public_key(), client.comment());
    let keys = AuthorizedKeys::parse(&line, "(in memory)".as_ref());
    let mut config = ServerConfig::with_allow_list(
        Arc::new(LocalIdentity::new(&host)),
        AllowList::Keys(Arc::new(keys)),
    );
    adjust(&mut config);
    (Server::new(config).unwrap(), host)
}

#[tokio::test(start_paused = true)]
async fn a_request_is_answered_and_invalid_utf8_gets_an_error() {
    let alice = Identity::from_seed(&[1; 32], "alice");
    let (server, host) = server_for(&alice, |_| {});
    let (client_io, server_io) = tokio::io::duplex(64 * 1024);
    let serving = tokio::spawn(async move {
        server.serve_connection(server_io, peer()).await;
        server
    });
    let config = ClientConfig::pinned(LocalIdentity::new(&alice), host.public_key().fingerprint());
    let mut connection = client::connect_stream(client_io, &target(), config)
        .await
        .unwrap();
    assert_eq!(
        connection
            .request("hello, straße".as_bytes())
            .await
            .unwrap(),
        Reply::Response("HELLO, STRASSE".as_bytes().to_vec())
    );
    match connection.request(b"bad \xff byte").await.unwrap() {
        Reply::Error(reason) => assert!(reason.contains("UTF-8"), "{reason}"),
        other => panic!("{other:?}"),
    }
    drop(connection);
    let server = serving.await.unwrap();
    let stats = server.stats().snapshot();
    assert_eq!((stats.sessions, stats.requests), (1, 2));
}

#[tokio::test(start_paused = true)]
async fn a_silent_peer_is_closed_at_the_handshake_deadline() {
    let alice = Identity::from_seed(&[1; 32], "alice");
    let (server, _host) = server_for(&alice, |_| {});
    let (mut client_io, server_io) = tokio::io::duplex(1024);
    let started = tokio::time::Instant::now();
    server.serve_connection(server_io, peer()).await;
    // In virtual time the wait is exact: the whole deadline, not a moment less.
    assert_eq!(started.elapsed(), DEFAULT_HANDSHAKE_TIMEOUT);
    assert_eq!(server.stats().snapshot().handshake_timeouts, 1);
    let mut rest = Vec::new();
    assert_eq!(client_io.read_to_end(&mut rest).await.unwrap(), 0);
}

#[tokio::test(start_paused = true)]
async fn an_idle_session_is_closed_after_the_idle_timeout() {
    let alice = Identity::from_seed(&[1; 32], "alice");
    let idle = Duration::from_secs(42);
    let (server, host) = server_for(&alice, |config| config.idle_timeout = idle);
    let (client_io, server_io) = tokio::io::duplex(64 * 1024);
    let server = Arc::new(server);
    let serving = {
        let server = Arc::clone(&server);
        tokio::spawn(async move { server.serve_connection(server_io, peer()).await })
    };
    let config = ClientConfig::pinned(LocalIdentity::new(&alice), host.public_key().fingerprint());
    let mut connection = client::connect_stream(client_io, &target(), config)
        .await
        .unwrap();
    assert_eq!(
        connection.request(b"once").await.unwrap(),
        Reply::Response(b"ONCE".to_vec())
    );
    let quiet_since = tokio::time::Instant::now();
    serving.await.unwrap();
    assert_eq!(quiet_since.elapsed(), idle);
    assert_eq!(server.stats().snapshot().idle_timeouts, 1);
    // The client sees the close as the end of the session, not as a reply.
    assert!(connection.request(b"too late").await.is_err());
}
