//! The server under attack: it keeps serving honest clients while others flood,
//! trickle, send garbage or hang up mid-record, and no input (on the wire or in
//! authorized_keys) crashes it. Every server runs in-process on 127.0.0.1:0; tests
//! wait on the server's live counters (`ServerStats::wait_for`) rather than
//! sleeping, and every wait and loop is bounded.
//!
//! Sources other than 127.0.0.1 (127.0.0.2 and up) are bound explicitly: Linux routes
//! all of 127.0.0.0/8 to the loopback interface.

use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use noise_echo::fsutil;
use noise_echo::identity::{Identity, PublicKey};
use noise_echo::openssh::authorized_keys::{self, AuthorizedKeys};
use noise_echo::server::{self, ServerConfig, ServerStats};
use noise_echo::wire::{
    self, LocalIdentity, RecordType, RecvHalf, Refusal, Reply, SendHalf, WireError,
    MIN_RESPONSE_LIMIT,
};
use noise_echo_tools::attack::{self, Client, FloodConfig, LoadConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// The longest any single wait in these tests may take before it counts as a failure.
const WAIT: Duration = Duration::from_secs(10);

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn identity(n: u8) -> Identity {
    Identity::from_seed(&[n; 32], format!("client{n}@test"))
}

/// A server running in this process.
struct TestServer {
    addr: SocketAddr,
    stats: Arc<ServerStats>,
    reload: server::ReloadTrigger,
    authorized_keys: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    _dir: tempfile::TempDir,
}

impl TestServer {
    /// Starts a server that authorizes clients 1 and 3 (not 2), after `configure`.
    async fn start(configure: impl FnOnce(&mut ServerConfig)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let authorized_keys = dir.path().join("authorized_keys");
        let mut text = String::new();
        for n in [1, 3] {
            text += &identity(n)
                .public_key()
                .to_openssh_line(&format!("client{n}"));
            text += "\n";
        }
        std::fs::write(&authorized_keys, text).unwrap();
        let listener = server::bind("127.0.0.1:0").await.unwrap();
        Self::start_on(listener, authorized_keys, dir, configure)
    }

    fn start_on(
        listener: TcpListener,
        authorized_keys: PathBuf,
        dir: tempfile::TempDir,
        configure: impl FnOnce(&mut ServerConfig),
    ) -> Self {
        let host = Identity::from_seed(&[0xaa; 32], "host");
        let mut config =
            ServerConfig::new(Arc::new(LocalIdentity::new(&host)), authorized_keys.clone());
        config.shutdown_grace = Duration::from_secs(1);
        configure(&mut config);
        let server = server::Server::new(config).unwrap();
        let stats = server.stats();
        let reload = server.reload_trigger();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.run(listener, stopped));
        Self {
            addr,
            stats,
            reload,
            authorized_keys,
            stop: Some(stop),
            task,
            _dir: dir,
        }
    }

    async fn wait_for(&self, what: &str, condition: impl Fn(&server::StatsSnapshot) -> bool) {
        let (snapshot, held) = self.stats.wait_for(WAIT, condition).await;
        assert!(held, "timed out waiting for {what}: {snapshot:?}");
    }

    /// Stops the server and waits for `run` to return.
    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(WAIT, &mut self.task)
            .await
            .expect("server did not stop")
            .unwrap()
            .unwrap();
    }
}

type Session = (RecvHalf<OwnedReadHalf>, SendHalf<OwnedWriteHalf>);

/// A client session from `source` (default 127.0.0.1) as `identity`.
async fn connect(
    addr: SocketAddr,
    source: Option<IpAddr>,
    identity: &Identity,
) -> Result<Session, WireError> {
    let mut stream = attack::connect_from(source, addr).await?;
    let local = LocalIdentity::new(identity);
    let established = tokio::time::timeout(WAIT, async {
        let pending = wire::initiate(&mut stream, &local).await?;
        pending.approve(&mut stream).await
    })
    .await
    .expect("handshake neither completed nor failed")?;
    let (reader, writer) = stream.into_split();
    Ok(established.into_halves(reader, writer))
}

/// One request and its reply.
async fn ask(session: &mut Session, body: &str) -> Result<Reply, WireError> {
    let (rx, tx) = session;
    tx.write_record(RecordType::Request, body.as_bytes())
        .await?;
    tx.flush().await?;
    match tokio::time::timeout(WAIT, rx.read_reply(MIN_RESPONSE_LIMIT))
        .await
        .expect("no reply")?
    {
        Some(reply) => Ok(reply),
        None => Err(WireError::PeerMisbehaved(wire::Violation::Truncated(
            wire::TruncatedAt::RecordHeader,
        ))),
    }
}

/// Connects and checks one echo works.
async fn echo_works(addr: SocketAddr, source: Option<IpAddr>, identity: &Identity) {
    let mut session = connect(addr, source, identity)
        .await
        .unwrap_or_else(|error| panic!("client from {source:?} could not connect: {error}"));
    assert_eq!(
        ask(&mut session, "hello").await.unwrap(),
        Reply::Response(b"HELLO".to_vec())
    );
}

/// Whether a connection from `source` is closed by the server before it answers a
/// valid handshake message 1 (a refusal on arrival, before any Diffie-Hellman work).
async fn refused_on_arrival(addr: SocketAddr, source: Option<IpAddr>) -> bool {
    let Ok(mut stream) = attack::connect_from(source, addr).await else {
        return true;
    };
    let local = LocalIdentity::new(&identity(1));
    match tokio::time::timeout(WAIT, wire::initiate(&mut stream, &local)).await {
        Ok(Ok(_)) => false,
        Ok(Err(_)) => true,
        Err(_) => panic!("the server neither answered nor closed"),
    }
}

fn is_key_revoked(error: &WireError) -> bool {
    matches!(error, WireError::NotAllowed(Refusal::PermissionDenied(reason))
        if reason == "permission denied: key revoked")
}

fn remove_from_authorized_keys(path: &Path, key: &PublicKey) {
    // What `noise-echo authorize --remove` does.
    fsutil::update_locked(path, 0o600, |old| {
        let (kept, removed) = authorized_keys::remove_key(old, &key.fingerprint());
        assert!(!removed.is_empty());
        Ok::<_, std::io::Error>((Some(kept), ()))
    })
    .unwrap();
}

// ---------------------------------------------------------------- deadlines

#[tokio::test]
async fn handshake_deadline_is_total_and_trickling_does_not_extend_it() {
    let server = TestServer::start(|config| {
        config.handshake_timeout = Duration::from_secs(1);
    })
    .await;
    let mut stream = attack::connect_from(None, server.addr).await.unwrap();
    // A frame header for message 1 and then its bytes, one every 100 ms: 3.4 s in all,
    // each read well within any per-read timeout.
    let mut message = vec![0u8, 32];
    message.extend([7u8; 32]);
    let started = Instant::now();
    let mut scratch = [0u8; 64];
    let mut closed_after = None;
    for byte in &message {
        if stream.write_all(std::slice::from_ref(byte)).await.is_err() {
            closed_after = Some(started.elapsed());
            break;
        }
        match tokio::time::timeout(Duration::from_millis(100), stream.read(&mut scratch)).await {
            Err(_) => continue,
            Ok(Ok(0) | Err(_)) => {
                closed_after = Some(started.elapsed());
                break;
            }
            Ok(Ok(_)) => panic!("the server answered a trickled message 1 with garbage key"),
        }
    }
    let closed_after = closed_after.expect("the trickling peer outlived the deadline");
    eprintln!("trickling peer closed after {closed_after:?} (deadline 1 s)");
    assert!(closed_after >= Duration::from_millis(900) && closed_after < Duration::from_secs(3));
    server
        .wait_for("the timeout", |s| s.handshake_timeouts == 1)
        .await;
    server.stop().await;
}

#[tokio::test]
async fn idle_session_is_closed_after_the_idle_timeout() {
    let server = TestServer::start(|config| {
        config.idle_timeout = Duration::from_secs(1);
    })
    .await;
    let mut session = connect(server.addr, None, &identity(1)).await.unwrap();
    ask(&mut session, "a").await.unwrap();
    let started = Instant::now();
    let end = tokio::time::timeout(WAIT, session.0.read_reply(MIN_RESPONSE_LIMIT))
        .await
        .expect("idle session not closed");
    assert_eq!(end.unwrap(), None, "a clean close");
    let idle = started.elapsed();
    eprintln!("idle session closed after {idle:?} (idle timeout 1 s)");
    assert!(idle >= Duration::from_millis(900));
    server
        .wait_for("the idle timeout", |s| s.idle_timeouts == 1)
        .await;
    server.stop().await;
}

// ---------------------------------------------------------------- caps

#[tokio::test]
async fn at_the_handshake_cap_a_newcomer_evicts_the_oldest_silent_handshake() {
    let server = TestServer::start(|config| {
        config.max_handshakes = 3;
        config.penalties.max_handshakes_per_source = 0;
        config.penalties.threshold = 0;
    })
    .await;
    let mut silent = Vec::new();
    for _ in 0..3 {
        silent.push(attack::connect_from(None, server.addr).await.unwrap());
    }
    server
        .wait_for("3 handshakes in progress", |s| {
            s.handshakes_in_progress == 3
        })
        .await;
    // Not refused: the oldest silent connection is closed for it.
    echo_works(server.addr, None, &identity(1)).await;
    assert_eq!(server.stats.snapshot().handshakes_evicted, 1);
    drop(silent);
    server
        .wait_for("the slots back", |s| s.handshakes_in_progress == 0)
        .await;
    server.stop().await;
}

#[tokio::test]
async fn connection_cap_closes_new_connections_at_once() {
    let server = TestServer::start(|config| {
        config.max_connections = 2;
    })
    .await;
    let mut first = connect(server.addr, None, &identity(1)).await.unwrap();
    let _second = connect(server.addr, None, &identity(3)).await.unwrap();
    server.wait_for("2 sessions", |s| s.sessions == 2).await;
    assert!(refused_on_arrival(server.addr, None).await);
    assert_eq!(server.stats.snapshot().refused_connection_cap, 1);
    ask(&mut first, "still served").await.unwrap();
    drop(first);
    server
        .wait_for("one connection closed", |s| s.connections_open == 1)
        .await;
    echo_works(server.addr, None, &identity(1)).await;
    server.stop().await;
}

#[tokio::test]
async fn one_source_cannot_take_every_handshake_slot() {
    let server = TestServer::start(|config| {
        config.penalties.max_handshakes_per_source = 2;
    })
    .await;
    let attacker = Some(ip("127.0.0.3"));
    let _silent = [
        attack::connect_from(attacker, server.addr).await.unwrap(),
        attack::connect_from(attacker, server.addr).await.unwrap(),
    ];
    server
        .wait_for("2 handshakes in progress", |s| {
            s.handshakes_in_progress == 2
        })
        .await;
    assert!(refused_on_arrival(server.addr, attacker).await);
    assert_eq!(server.stats.snapshot().refused_source_cap, 1);
    echo_works(server.addr, Some(ip("127.0.0.2")), &identity(1)).await;
    server.stop().await;
}

// ---------------------------------------------------------------- penalties

/// Sends `bytes` from `source` and waits for the server to close.
async fn send_garbage(addr: SocketAddr, source: IpAddr, bytes: &[u8]) {
    let mut stream = attack::connect_from(Some(source), addr).await.unwrap();
    let _ = stream.write_all(bytes).await;
    let mut scratch = [0u8; 256];
    tokio::time::timeout(WAIT, async {
        loop {
            match stream.read(&mut scratch).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .expect("the server did not close a garbage connection");
}

#[tokio::test]
async fn failing_sources_are_penalized_and_others_are_not() {
    let server = TestServer::start(|config| {
        config.penalties.threshold = 3;
        config.penalties.base = Duration::from_secs(60);
        config.penalties.exempt = Some("127.0.0.4".parse().unwrap());
    })
    .await;
    let (garbage, denied, exempt, honest) = (
        ip("127.0.0.3"),
        ip("127.0.0.5"),
        ip("127.0.0.4"),
        ip("127.0.0.2"),
    );
    for _ in 0..3 {
        send_garbage(server.addr, garbage, b"GET / HTTP/1.1\r\n\r\n").await;
    }
    server
        .wait_for("3 failures", |s| s.handshake_failures == 3)
        .await;
    // Even an authorized key is refused from there now, before any handshake work.
    assert!(refused_on_arrival(server.addr, Some(garbage)).await);
    assert!(connect(server.addr, Some(garbage), &identity(1))
        .await
        .is_err());
    assert_eq!(server.stats.snapshot().refused_penalized, 2);

    // Denied keys count as failures too.
    for _ in 0..3 {
        let mut session = connect(server.addr, Some(denied), &identity(2))
            .await
            .unwrap();
        let refusal = ask(&mut session, "x").await.unwrap_err();
        assert!(matches!(
            refusal,
            WireError::NotAllowed(Refusal::PermissionDenied(_))
        ));
    }
    server.wait_for("3 denials", |s| s.denied == 3).await;
    assert!(refused_on_arrival(server.addr, Some(denied)).await);

    // The exempt address may fail as often as it likes.
    for _ in 0..5 {
        send_garbage(server.addr, exempt, &[0xff; 40]).await;
    }
    server
        .wait_for("8 failures", |s| s.handshake_failures == 8)
        .await;
    echo_works(server.addr, Some(exempt), &identity(1)).await;
    // And an honest neighbour is untouched.
    echo_works(server.addr, Some(honest), &identity(1)).await;
    server.stop().await;
}

// ---------------------------------------------------------------- floods and load

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flood_of_silent_trickling_and_garbage_connections_does_not_lock_out_a_client() {
    // Default limits: what an operator gets without tuning.
    let server = TestServer::start(|_| {}).await;
    let mut config = FloodConfig::full_scale(server.addr, Duration::from_secs(2));
    config.silent = 100;
    config.trickle = 100;
    config.garbage_per_second = 200;
    // The attack comes from many addresses (and 127.0.0.1 itself), the client
    // from its own.
    config.sources = attack::loopback_sources(50);
    config.sources.push(ip("127.0.0.1"));
    config.probe = Some(Client {
        identity: Arc::new(LocalIdentity::new(&identity(1))),
        server_key: None,
        source: Some(ip("127.0.0.2")),
    });
    config.probe_interval = Duration::from_millis(100);
    let stats = attack::flood(config).await.unwrap();
    let ms = |q| stats.probe_latency(q).map(|d| d.as_secs_f64() * 1e3);
    eprintln!(
        "flood: {} slow connections, {} garbage ({} closed, {} answered); probes {} ok {} failed; \
         latency p50 {:?} ms, max {:?} ms; server {:?}",
        stats.slow_opened,
        stats.garbage_sent,
        stats.garbage_closed,
        stats.garbage_answered,
        stats.probes_ok,
        stats.probes_failed,
        ms(0.5),
        ms(1.0),
        server.stats.snapshot()
    );
    assert!(stats.probes_ok >= 3, "{:?}", stats.probe_errors);
    assert_eq!(stats.probes_failed, 0, "{:?}", stats.probe_errors);
    assert!(stats.probe_latency(1.0).unwrap() < Duration::from_secs(5));
    assert!(stats.slow_opened >= 200);
    // A loaded CI machine skips some of the generator's ticks: ask for a tenth.
    assert!(stats.garbage_sent >= 40);
    // Garbage gets no handshake reply, so no Diffie-Hellman work, unless it happens
    // to be a well-formed message 1 (a 32-byte frame: any 32 bytes are a key).
    assert!(stats.garbage_answered * 100 <= stats.garbage_sent);
    echo_works(server.addr, Some(ip("127.0.0.2")), &identity(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_load_loses_duplicates_and_reorders_nothing() {
    // 100 handshakes at once from one address: over the default per-source cap, so
    // exempt loopback as an operator would for a local load test.
    let server = TestServer::start(|config| {
        config.penalties.exempt = Some("127.0.0.0/8".parse().unwrap());
    })
    .await;
    let config = LoadConfig {
        target: server.addr,
        client: Client {
            identity: Arc::new(LocalIdentity::new(&identity(1))),
            server_key: None,
            source: None,
        },
        sessions: 100,
        requests: 20,
        window: 8,
        max_size: 64 * 1024,
        log_uniform: true,
        seed: 7,
        session_timeout: Duration::from_secs(60),
    };
    let stats = attack::load(config).await.unwrap();
    eprintln!(
        "load: {} sessions ok, {} failed, {} replies checked, {} mismatches, {} bytes out, {} bytes back in {:?}",
        stats.sessions_ok,
        stats.sessions_failed,
        stats.replies_checked,
        stats.mismatches,
        stats.bytes_sent,
        stats.bytes_received,
        stats.elapsed
    );
    assert_eq!(stats.sessions_failed, 0, "{:?}", stats.errors);
    assert_eq!(stats.replies_checked, 2000);
    assert_eq!(stats.mismatches, 0);
    server
        .wait_for("all requests", |s| s.requests == 2000)
        .await;
    server.stop().await;
}

#[test]
fn attack_tools_refuse_targets_off_this_machine() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let config = FloodConfig::full_scale("192.0.2.1:1234".parse().unwrap(), Duration::ZERO);
    let error = runtime.block_on(attack::flood(config)).unwrap_err();
    assert_eq!(error.kind(), std::io::ErrorKind::InvalidInput);
}

// ---------------------------------------------------------------- faults

#[tokio::test]
async fn clients_killed_mid_handshake_or_mid_record_leave_the_server_serving() {
    let server = TestServer::start(|_| {}).await;
    // Mid-handshake: half of message 1.
    let mut stream = attack::connect_from(None, server.addr).await.unwrap();
    stream.write_all(&[0, 32, 1, 2, 3, 4, 5]).await.unwrap();
    drop(stream);
    server
        .wait_for("the handshake failure", |s| s.handshake_failures == 1)
        .await;
    // After a request, gone without reading the reply.
    let (rx, mut tx) = connect(server.addr, None, &identity(1)).await.unwrap();
    tx.write_record(RecordType::Request, b"first")
        .await
        .unwrap();
    tx.flush().await.unwrap();
    drop((rx, tx));
    server
        .wait_for("the connection gone", |s| s.connections_open == 0)
        .await;
    echo_works(server.addr, None, &identity(1)).await;
    server.stop().await;
}

#[tokio::test]
async fn a_session_cut_inside_a_record_body_is_a_truncation_not_a_hang() {
    let server = TestServer::start(|_| {}).await;
    // The client writes the first of two transport messages of a 100 KB request
    // (appending a full message writes it at once), then dies.
    let (rx, mut tx) = connect(server.addr, None, &identity(1)).await.unwrap();
    let body = vec![b'q'; 100_000];
    let writing = tokio::spawn(async move {
        let _ = tx.write_record(RecordType::Request, &body).await;
        tx
    });
    let tx = tokio::time::timeout(WAIT, writing).await.unwrap().unwrap();
    drop((rx, tx));
    server
        .wait_for("the connection gone", |s| s.connections_open == 0)
        .await;
    assert_eq!(server.stats.snapshot().requests, 0);
    echo_works(server.addr, None, &identity(1)).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_restarted_under_load_gives_clear_errors_then_serves_again() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("authorized_keys");
    std::fs::write(&keys, identity(1).public_key().to_openssh_line("c1") + "\n").unwrap();
    let listener = server::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = TestServer::start_on(listener, keys.clone(), tempfile::tempdir().unwrap(), |_| {});
    let mut clients = tokio::task::JoinSet::new();
    for n in 0..8 {
        clients.spawn(async move {
            let mut session = connect(addr, None, &identity(1)).await.unwrap();
            // Requests back to back until the server goes away: at most 100,000.
            for i in 0..100_000u32 {
                if let Err(error) = ask(&mut session, &format!("client {n} request {i}")).await {
                    return (i, error.to_string());
                }
            }
            panic!("the server never went away");
        });
    }
    server
        .wait_for("some requests", |s| s.requests >= 200)
        .await;
    let stats = Arc::clone(&server.stats);
    server.stop().await;
    let mut errors = Vec::new();
    while let Some(joined) = clients.join_next().await {
        let (answered, error) = joined.unwrap();
        assert!(answered > 0);
        errors.push(error);
    }
    eprintln!(
        "after {} requests, clients of the stopped server saw: {:?}",
        stats.snapshot().requests,
        errors
    );
    for error in &errors {
        assert!(
            error.contains("closed") || error.contains("reset") || error.contains("ended"),
            "unclear error: {error}"
        );
    }
    // New connections are refused while it is down...
    assert!(attack::connect_from(None, addr).await.is_err());
    // ...and served once it is back on the same address.
    let listener = server::bind(&addr.to_string()).await.unwrap();
    let restarted = TestServer::start_on(listener, keys, tempfile::tempdir().unwrap(), |_| {});
    echo_works(addr, None, &identity(1)).await;
    restarted.stop().await;
    drop(dir);
}

// ---------------------------------------------------------------- revocation

#[tokio::test]
async fn a_removed_key_is_refused_on_its_next_connection() {
    let server = TestServer::start(|_| {}).await;
    echo_works(server.addr, None, &identity(1)).await;
    remove_from_authorized_keys(&server.authorized_keys, &identity(1).public_key());
    let mut session = connect(server.addr, None, &identity(1)).await.unwrap();
    let error = ask(&mut session, "x").await.unwrap_err();
    assert!(
        matches!(error, WireError::NotAllowed(Refusal::PermissionDenied(_))),
        "{error}"
    );
    // An editor rewriting the file in place (same inode) is seen too.
    echo_works(server.addr, None, &identity(3)).await;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&server.authorized_keys)
        .unwrap();
    file.write_all(b"# nobody\n").unwrap();
    drop(file);
    let mut session = connect(server.addr, None, &identity(3)).await.unwrap();
    assert!(ask(&mut session, "x").await.is_err());
    server.stop().await;
}

#[tokio::test]
async fn revoke_live_ends_the_open_sessions_of_a_removed_key() {
    let server = TestServer::start(|config| {
        config.revoke_live = true;
        config.revoke_poll = Duration::from_millis(50);
    })
    .await;
    let mut revoked = connect(server.addr, None, &identity(1)).await.unwrap();
    let mut kept = connect(server.addr, None, &identity(3)).await.unwrap();
    ask(&mut revoked, "before").await.unwrap();
    ask(&mut kept, "before").await.unwrap();
    remove_from_authorized_keys(&server.authorized_keys, &identity(1).public_key());
    // The server speaks first: the ERROR arrives without a request.
    let error = tokio::time::timeout(WAIT, revoked.0.read_reply(MIN_RESPONSE_LIMIT))
        .await
        .expect("the revoked session was not ended")
        .unwrap_err();
    assert!(is_key_revoked(&error), "{error}");
    server.wait_for("the revocation", |s| s.revoked == 1).await;
    assert_eq!(
        ask(&mut kept, "still here").await.unwrap(),
        Reply::Response(b"STILL HERE".to_vec())
    );
    server.stop().await;
}

#[tokio::test]
async fn without_revoke_live_a_reload_trigger_ends_revoked_sessions() {
    let server = TestServer::start(|_| {}).await;
    let mut session = connect(server.addr, None, &identity(1)).await.unwrap();
    ask(&mut session, "authorized").await.unwrap();
    remove_from_authorized_keys(&server.authorized_keys, &identity(1).public_key());
    // Without revoke_live the open session goes on...
    assert_eq!(
        ask(&mut session, "x").await.unwrap(),
        Reply::Response(b"X".to_vec())
    );
    // ...until a reload (SIGHUP in `serve`).
    server.reload.trigger();
    let error = tokio::time::timeout(WAIT, session.0.read_reply(MIN_RESPONSE_LIMIT))
        .await
        .expect("the revoked session was not ended")
        .unwrap_err();
    assert!(is_key_revoked(&error), "{error}");
    // A half-written file left so fails closed once it has stayed unchanged for
    // SETTLE_TIME: client 3's line is not in it, so its session ends too
    // (`authorize` replaces the file atomically, never like this).
    let full = std::fs::read(&server.authorized_keys).unwrap();
    let mut kept = connect(server.addr, None, &identity(3)).await.unwrap();
    ask(&mut kept, "authorized").await.unwrap();
    std::fs::write(&server.authorized_keys, &full[..full.len() / 2]).unwrap();
    server.reload.trigger();
    let error = tokio::time::timeout(WAIT, kept.0.read_reply(MIN_RESPONSE_LIMIT))
        .await
        .expect("the session of the half-written file was not ended")
        .unwrap_err();
    assert!(is_key_revoked(&error), "{error}");
    // A missing file denies new connections but is no proof of revocation: open
    // sessions go on.
    std::fs::write(&server.authorized_keys, &full).unwrap();
    let mut kept = connect(server.addr, None, &identity(3)).await.unwrap();
    ask(&mut kept, "authorized").await.unwrap();
    std::fs::remove_file(&server.authorized_keys).unwrap();
    server.reload.trigger();
    ask(&mut kept, "still").await.unwrap();
    let mut late = connect(server.addr, None, &identity(3)).await.unwrap();
    assert!(ask(&mut late, "x").await.is_err());
    server.stop().await;
}

/// The real `noise-echo serve`, authorizing client 1, killed when dropped.
struct ServeProcess {
    child: std::process::Child,
    addr: SocketAddr,
    lines: std::sync::mpsc::Receiver<String>,
    keys: PathBuf,
    _dir: tempfile::TempDir,
}

impl ServeProcess {
    fn start(extra: &[&str]) -> Self {
        use std::io::BufRead;
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("authorized_keys");
        std::fs::write(&keys, identity(1).public_key().to_openssh_line("c1") + "\n").unwrap();
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_noise-echo"))
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--create-host-key",
                "--host-key",
            ])
            .arg(dir.path().join("host_key"))
            .arg("--authorized-keys")
            .arg(&keys)
            .args(extra)
            .env("RUST_LOG", "info")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (lines_tx, lines) = std::sync::mpsc::channel::<String>();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if lines_tx.send(line).is_err() {
                    return;
                }
            }
        });
        let addr = loop {
            let line = lines
                .recv_timeout(WAIT)
                .expect("serve did not say where it listens");
            if let Some(rest) = line.split("listening on ").nth(1) {
                break rest.split_whitespace().next().unwrap().parse().unwrap();
            }
        };
        Self {
            child,
            addr,
            lines,
            keys,
            _dir: dir,
        }
    }

    /// The server process's resident memory, from /proc.
    fn resident_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        kib * 1024
    }

    fn signal(&self, name: &str) {
        let status = std::process::Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits (at most [`WAIT`]) for a log line containing `text`; returns the lines
    /// read, the last one matching if it came.
    fn wait_for_log(&self, text: &str) -> Vec<String> {
        let deadline = std::time::Instant::now() + WAIT;
        let mut seen = Vec::new();
        while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
            let Ok(line) = self.lines.recv_timeout(left) else {
                break;
            };
            let found = line.contains(text);
            seen.push(line);
            if found {
                break;
            }
        }
        seen
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn current_thread_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn sighup_makes_the_real_server_end_revoked_sessions() {
    let server = ServeProcess::start(&[]);
    current_thread_runtime().block_on(async {
        let mut session = connect(server.addr, None, &identity(1)).await.unwrap();
        ask(&mut session, "hi").await.unwrap();
        std::fs::write(&server.keys, "# emptied\n").unwrap();
        server.signal("HUP");
        let error = tokio::time::timeout(WAIT, session.0.read_reply(MIN_RESPONSE_LIMIT))
            .await
            .expect("SIGHUP did not end the revoked session")
            .unwrap_err();
        assert!(is_key_revoked(&error), "{error}");
    });
    let log = server.wait_for_log("SIGHUP");
    assert!(
        log.iter().any(|l| l.contains("SIGHUP")),
        "no SIGHUP line in {log:?}"
    );
    let log = server.wait_for_log("key revoked");
    assert!(log.iter().any(|l| l.contains("key revoked")), "{log:?}");
}

#[test]
fn a_client_that_stops_reading_meets_back_pressure_then_the_idle_timeout() {
    let server = ServeProcess::start(&["--idle-timeout", "1"]);
    let before = server.resident_bytes();
    let (sent, ended) = current_thread_runtime().block_on(async {
        let (rx, mut tx) = connect(server.addr, None, &identity(1)).await.unwrap();
        // 60 KB requests, never reading a reply: at most 4,000 (240 MB); stop as soon
        // as a write stalls for 3 s or fails.
        let request = "w".repeat(60_000);
        let mut sent = 0u64;
        for _ in 0..4000 {
            let write = async {
                tx.write_record(RecordType::Request, request.as_bytes())
                    .await?;
                tx.flush().await
            };
            match tokio::time::timeout(Duration::from_secs(3), write).await {
                Ok(Ok(())) => sent += request.len() as u64,
                Ok(Err(_)) => return (sent, "write failed"),
                Err(_) => return (sent, "write stalled"),
            }
        }
        drop(rx);
        (sent, "")
    });
    let during = server.resident_bytes();
    let log = server.wait_for_log("took no replies");
    eprintln!(
        "non-reading client: {sent} bytes accepted before '{ended}'; server memory {} KiB before, {} KiB after",
        before / 1024,
        during / 1024
    );
    assert!(
        !ended.is_empty(),
        "240 MB were accepted without back pressure"
    );
    assert!(sent < 64 << 20, "{sent} bytes accepted: buffered somewhere");
    assert!(
        during.saturating_sub(before) < 32 << 20,
        "server memory grew from {before} to {during} bytes"
    );
    assert!(
        log.iter().any(|l| l.contains("took no replies")),
        "no stall line in {log:?}"
    );
}

// ---------------------------------------------------------------- trust files mid-edit

/// A file with every kind of line whose restrictions must never be lost.
fn rich_authorized_keys() -> String {
    let line = |n: u8, options: &str, comment: &str| {
        let key = identity(n).public_key().to_openssh_line(comment);
        if options.is_empty() {
            key
        } else {
            format!("{options} {key}")
        }
    };
    [
        "# team keys".to_owned(),
        line(1, "", "alice@laptop"),
        line(2, "from=\"10.0.0.0/8,!10.1.0.0/16\"", "bob"),
        line(3, "expiry-time=\"20991231235959Z\"", ""),
        line(
            4,
            "from=\"192.0.2.*\",expiry-time=\"203001011200\"",
            "carol with spaces",
        ),
        line(5, "expiry-time=\"20300101\",from=\"::1\"", "dave"),
        line(
            6,
            "command=\"/bin/true\",restrict",
            "unsupported option: never trusted",
        ),
        String::new(),
        line(7, "from=\"127.0.0.1\"", "last line, no newline"),
    ]
    .join("\n")
}

#[test]
fn every_truncation_of_authorized_keys_admits_nothing_new_and_keeps_every_restriction() {
    let text = rich_authorized_keys();
    let full = AuthorizedKeys::parse(text.as_bytes(), Path::new("authorized_keys"));
    assert_eq!(full.entries.len(), 6, "{:?}", full.warnings);
    for (variant, bytes) in [
        ("LF", text.clone().into_bytes()),
        ("CRLF", text.replace('\n', "\r\n").into_bytes()),
    ] {
        let full = AuthorizedKeys::parse(&bytes, Path::new("authorized_keys"));
        for cut in 0..=bytes.len() {
            let partial = AuthorizedKeys::parse(&bytes[..cut], Path::new("authorized_keys"));
            for entry in &partial.entries {
                let same = full.entries.iter().any(|original| {
                    original.key == entry.key
                        && original.from == entry.from
                        && original.expiry == entry.expiry
                        && original.options == entry.options
                });
                assert!(
                    same,
                    "{variant}: cut at byte {cut} trusts {:?}, not a line of the full file",
                    entry.to_line()
                );
            }
        }
    }
}

/// Found by the authorized_keys fuzzer: the parser trusts a key written with two
/// spaces (or a tab and a space) after its type, and `authorize --remove` missed it,
/// leaving a revoked key trusted.
#[test]
fn removing_a_key_removes_it_however_its_fields_are_spaced() {
    let key = identity(1).public_key();
    let blob = key.to_openssh_line("");
    let blob = blob.split_whitespace().nth(1).unwrap();
    for line in [
        format!("ssh-ed25519  {blob} two spaces"),
        format!("ssh-ed25519\t {blob} tab and space"),
        format!("from=\"127.0.0.1\"  ssh-ed25519 \t {blob}"),
        format!("  ssh-ed25519 {blob}   "),
    ] {
        let file = authorized_keys::append_line(b"# keys\n", &line);
        let parsed = AuthorizedKeys::parse(&file, Path::new("authorized_keys"));
        assert!(parsed.contains(&key), "{line:?} not trusted to begin with");
        let (kept, removed) = authorized_keys::remove_key(&file, &key.fingerprint());
        assert_eq!(removed.len(), 1, "{line:?}");
        let after = AuthorizedKeys::parse(&kept, Path::new("authorized_keys"));
        assert!(
            !after.contains(&key),
            "{line:?} still trusted after its removal"
        );
        assert_eq!(kept, b"# keys\n");
    }
}

#[tokio::test]
async fn a_garbage_or_half_written_authorized_keys_never_crashes_nor_admits() {
    let server = TestServer::start(|_| {}).await;
    let text = rich_authorized_keys();
    // Cuts through the key line of client 1 (no options), and some garbage.
    let key_line_end = text.find("alice@laptop").unwrap();
    for contents in [
        text.as_bytes()[..key_line_end - 20].to_vec(),
        vec![0xff; 5000],
        b"\0\0\0".to_vec(),
        Vec::new(),
    ] {
        std::fs::write(&server.authorized_keys, &contents).unwrap();
        let mut session = connect(server.addr, None, &identity(1)).await.unwrap();
        assert!(ask(&mut session, "x").await.is_err());
    }
    std::fs::remove_file(&server.authorized_keys).unwrap();
    for _ in 0..3 {
        let mut session = connect(server.addr, None, &identity(1)).await.unwrap();
        assert!(ask(&mut session, "x").await.is_err());
    }
    std::fs::write(&server.authorized_keys, text).unwrap();
    echo_works(server.addr, None, &identity(1)).await;
    server.stop().await;
}

// ---------------------------------------------------------------- properties

mod properties {
    use super::*;
    use noise_echo::wire::{encode_record, RecordDecoder, RecordEvent, Role};
    use proptest::prelude::*;

    /// A handshake over an in-memory pipe; returns the server's receiving half and
    /// the client's raw end of the pipe.
    async fn session_over_pipe() -> (
        RecvHalf<tokio::io::ReadHalf<tokio::io::DuplexStream>>,
        tokio::io::DuplexStream,
    ) {
        let (mut client, mut server) = tokio::io::duplex(1 << 20);
        let client_id = LocalIdentity::new(&identity(1));
        let server_id = LocalIdentity::new(&Identity::from_seed(&[0xaa; 32], "host"));
        let (client_side, server_side) = tokio::join!(
            async {
                let pending = wire::initiate(&mut client, &client_id).await.unwrap();
                pending.approve(&mut client).await.unwrap()
            },
            wire::respond(&mut server, &server_id)
        );
        drop(client_side);
        let (rx, _tx) = server_side.unwrap().into_split(server);
        (rx, client)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        /// Whatever arrives after a handshake, the server's receiving half returns
        /// an error or a clean end, never panics, and never hands out a body over
        /// the limit.
        #[test]
        fn arbitrary_bytes_after_the_handshake_are_refused_cleanly(
            bytes in prop::collection::vec(any::<u8>(), 0..3000),
        ) {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async {
                let (mut rx, mut client) = session_over_pipe().await;
                client.write_all(&bytes).await.unwrap();
                drop(client);
                let mut body = Vec::new();
                for _ in 0..100 {
                    match rx.next_record().await {
                        Ok(Some(_)) => {
                            if rx.read_body(&mut body, 1000).await.is_err() {
                                break;
                            }
                            assert!(body.len() <= 1000);
                        }
                        Ok(None) | Err(_) => break,
                    }
                }
            });
        }

        /// REQUEST records (the client's direction) round-trip through the decoder
        /// however the stream is cut.
        #[test]
        fn request_records_round_trip_whatever_the_chunking(
            bodies in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 0..10),
            chunk in 1usize..64,
        ) {
            let mut stream = Vec::new();
            for body in &bodies {
                encode_record(RecordType::Request, body, &mut stream).unwrap();
            }
            let mut decoder = RecordDecoder::new(Role::Client);
            let mut decoded: Vec<Vec<u8>> = Vec::new();
            for mut piece in stream.chunks(chunk) {
                for _ in 0..=piece.len() {
                    let (event, used) = decoder.decode(piece).unwrap();
                    piece = &piece[used..];
                    match event {
                        RecordEvent::NeedMore => break,
                        RecordEvent::Header(header) => {
                            prop_assert_eq!(header.record_type, RecordType::Request);
                            decoded.push(Vec::new());
                        }
                        RecordEvent::Body { chunk, .. } => decoded.last_mut().unwrap().extend_from_slice(chunk),
                        RecordEvent::Rekey => prop_assert!(false, "a v1 decoder reported REKEY"),
                    }
                    if piece.is_empty() {
                        break;
                    }
                }
            }
            prop_assert!(decoder.at_record_boundary());
            prop_assert_eq!(decoded, bodies);
        }

        /// Truncating a valid authorized_keys anywhere never trusts a line that
        /// was not in the file with the same options.
        #[test]
        fn truncated_generated_files_trust_nothing_new(
            specs in prop::collection::vec((1u8..20, 0usize..4), 1..6),
            cut_ratio in 0.0f64..1.0,
        ) {
            let options = ["", "from=\"10.0.0.0/8\"", "expiry-time=\"20991231\"", "from=\"::1,127.0.0.1\",expiry-time=\"20400101\""];
            let mut file = Vec::new();
            for (n, o) in &specs {
                let key = identity(*n).public_key().to_openssh_line("c");
                let line = if options[*o].is_empty() { key } else { format!("{} {key}", options[*o]) };
                file = authorized_keys::append_line(&file, &line);
            }
            let full = AuthorizedKeys::parse(&file, Path::new("f"));
            let cut = (file.len() as f64 * cut_ratio) as usize;
            let partial = AuthorizedKeys::parse(&file[..cut], Path::new("f"));
            for entry in &partial.entries {
                prop_assert!(full.entries.iter().any(|e| e.key == entry.key && e.from == entry.from && e.expiry == entry.expiry));
            }
        }
    }
}
