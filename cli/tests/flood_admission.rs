//! Admission under pressure: honest clients get through a distributed slowloris
//! (the oldest silent handshake is evicted for each newcomer), the per-source cap
//! counts handshakes and not sessions, a burst of failures is one offence, a client
//! that declines the host key is not an attacker, the open-files limit is raised at
//! start, and `serve --listen` takes several addresses and `:PORT`.
//!
//! Servers run in-process on 127.0.0.1:0 or as the real binary; attackers bind
//! other addresses of 127.0.0.0/8 (Linux routes all of it to loopback), so the
//! honest client's address is never the attacker's. Waits are on the server's
//! counters or its log lines, each bounded.

mod common;

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use common::{noise_echo, text, BIN};
use noise_echo::identity::Identity;
use noise_echo::server::{self, ServerConfig, ServerStats, StatsSnapshot};
use noise_echo::wire::{self, LocalIdentity, RecordType, Reply, MIN_RESPONSE_LIMIT};
use noise_echo_tools::attack;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

/// The longest any single wait in these tests may take before it counts as a failure.
const WAIT: Duration = Duration::from_secs(20);

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn identity(n: u8) -> Identity {
    Identity::from_seed(&[n; 32], format!("client{n}@test"))
}

// ---------------------------------------------------------------- in-process server

/// A server running in this process, authorizing client 1, on one listener or more.
struct TestServer {
    addrs: Vec<SocketAddr>,
    stats: Arc<ServerStats>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    _dir: tempfile::TempDir,
}

impl TestServer {
    async fn start(configure: impl FnOnce(&mut ServerConfig)) -> Self {
        Self::start_on(&["127.0.0.1:0"], configure).await
    }

    async fn start_on(listen: &[&str], configure: impl FnOnce(&mut ServerConfig)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let authorized_keys = dir.path().join("authorized_keys");
        std::fs::write(
            &authorized_keys,
            identity(1).public_key().to_openssh_line("client1") + "\n",
        )
        .unwrap();
        let mut listeners = Vec::new();
        for addr in listen {
            listeners.push(server::bind(addr).await.unwrap());
        }
        let addrs = listeners.iter().map(|l| l.local_addr().unwrap()).collect();
        let host = Identity::from_seed(&[0xaa; 32], "host");
        let mut config = ServerConfig::new(Arc::new(LocalIdentity::new(&host)), authorized_keys);
        config.shutdown_grace = Duration::from_secs(1);
        configure(&mut config);
        let server = server::Server::new(config).unwrap();
        let stats = server.stats();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.run_on(listeners, stopped));
        Self {
            addrs,
            stats,
            stop: Some(stop),
            task,
            _dir: dir,
        }
    }

    fn addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    async fn wait_for(&self, what: &str, condition: impl Fn(&StatsSnapshot) -> bool) {
        let (snapshot, held) = self.stats.wait_for(WAIT, condition).await;
        assert!(held, "timed out waiting for {what}: {snapshot:?}");
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(WAIT, &mut self.task)
            .await
            .expect("server did not stop")
            .unwrap()
            .unwrap();
    }
}

type Session = (
    wire::RecvHalf<tokio::net::tcp::OwnedReadHalf>,
    wire::SendHalf<tokio::net::tcp::OwnedWriteHalf>,
);

/// A session from `source` (default 127.0.0.1) as client 1.
async fn connect(addr: SocketAddr, source: Option<IpAddr>) -> Result<Session, wire::WireError> {
    let mut stream = attack::connect_from(source, addr).await?;
    let local = LocalIdentity::new(&identity(1));
    let established = tokio::time::timeout(WAIT, async {
        let pending = wire::initiate(&mut stream, &local).await?;
        pending.approve(&mut stream).await
    })
    .await
    .expect("handshake neither completed nor failed")?;
    let (reader, writer) = stream.into_split();
    Ok(established.into_halves(reader, writer))
}

async fn ask(session: &mut Session, body: &str) -> Result<Reply, wire::WireError> {
    let (rx, tx) = session;
    tx.write_record(RecordType::Request, body.as_bytes())
        .await?;
    tx.flush().await?;
    let reply = tokio::time::timeout(WAIT, rx.read_reply(MIN_RESPONSE_LIMIT))
        .await
        .expect("no reply")?;
    reply.ok_or(wire::WireError::PeerMisbehaved(wire::Violation::Truncated(
        wire::TruncatedAt::RecordHeader,
    )))
}

/// Connects from `source`, asks one echo, and says whether it was answered.
async fn served(addr: SocketAddr, source: Option<IpAddr>) -> Result<(), String> {
    let mut session = connect(addr, source)
        .await
        .map_err(|error| error.to_string())?;
    match ask(&mut session, "hello").await {
        Ok(Reply::Response(body)) if body == b"HELLO" => Ok(()),
        other => Err(format!("{other:?}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_honest_client_is_served_through_a_distributed_slowloris_that_retakes_every_slot() {
    // 64 attacker addresses, each under the per-source cap, holding silent
    // connections: four times the 32 slots at the start, and before each honest
    // connection the attacker takes all 32 slots again with fresh connections.
    let server = TestServer::start(|config| {
        config.max_handshakes = 32;
        config.penalties.max_handshakes_per_source = 4;
        // No penalty relief: the attacker keeps its addresses for the whole test.
        config.penalties.threshold = 0;
    })
    .await;
    let sources: Vec<IpAddr> = (1..=64).map(|n| ip(&format!("127.0.1.{n}"))).collect();
    let mut held = Vec::new();
    for source in sources.iter().chain(&sources) {
        held.push(
            attack::connect_from(Some(*source), server.addr())
                .await
                .unwrap(),
        );
    }
    server
        .wait_for("the attacker holding every slot", |s| {
            s.handshakes_in_progress == 32 && s.handshakes_evicted == 96
        })
        .await;
    let honest = 20u64;
    for n in 0..honest {
        let start = server.stats.snapshot();
        // Every attacker handshake still in the table is evicted by a fresh one.
        let after_refill = start.handshakes_evicted + start.handshakes_in_progress;
        let half = (n as usize % 2) * 32;
        for source in &sources[half..half + 32] {
            held.push(
                attack::connect_from(Some(*source), server.addr())
                    .await
                    .unwrap(),
            );
        }
        server
            .wait_for("32 fresh attacker handshakes", |s| {
                s.handshakes_in_progress == 32 && s.handshakes_evicted == after_refill
            })
            .await;
        served(server.addr(), None)
            .await
            .unwrap_or_else(|error| panic!("honest connection {n} of {honest} failed: {error}"));
        // The table was full of the attacker's: the honest client got in by
        // evicting one, not because a slot happened to be free.
        assert!(server.stats.snapshot().handshakes_evicted > after_refill);
    }
    let snapshot = server.stats.snapshot();
    assert_eq!(snapshot.sessions, honest);
    assert_eq!(snapshot.refused_source_cap, 0, "{snapshot:?}");
    assert_eq!(snapshot.handshake_failures, 0, "{snapshot:?}");
    drop(held);
    server.stop().await;
}

/// A connection from `source` that sends a whole message 1, reads the server's
/// message 2, and then stalls: it waits where an honest client waits.
async fn stalled(target: SocketAddr, source: IpAddr) -> TcpStream {
    let mut stream = attack::connect_from(Some(source), target).await.unwrap();
    let mut message1 = vec![0u8, 32];
    message1.extend((0..32u8).map(|i| {
        i.wrapping_mul(37)
            .wrapping_add(source.to_string().len() as u8)
    }));
    stream.write_all(&message1).await.unwrap();
    let mut message2 = [0u8; 2];
    tokio::time::timeout(WAIT, stream.read_exact(&mut message2))
        .await
        .expect("no message 2")
        .unwrap();
    stream
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_honest_client_is_served_when_every_slot_is_held_past_message_1() {
    let server = TestServer::start(|config| {
        config.max_handshakes = 16;
        config.penalties.threshold = 0;
    })
    .await;
    let sources: Vec<IpAddr> = (1..=16).map(|n| ip(&format!("127.0.2.{n}"))).collect();
    let mut held = Vec::new();
    for n in 0..10u64 {
        // The attacker takes every slot with connections past message 1.
        for source in &sources {
            held.push(stalled(server.addr(), *source).await);
        }
        server
            .wait_for("16 stalled handshakes", |s| s.handshakes_in_progress == 16)
            .await;
        let before = server.stats.snapshot().handshakes_evicted;
        served(server.addr(), None)
            .await
            .unwrap_or_else(|error| panic!("honest connection {n} failed: {error}"));
        assert!(server.stats.snapshot().handshakes_evicted > before);
    }
    assert_eq!(server.stats.snapshot().sessions, 10);
    drop(held);
    server.stop().await;
}

#[tokio::test]
async fn evicted_silent_handshakes_count_against_their_source() {
    let server = TestServer::start(|config| {
        config.max_handshakes = 2;
        config.penalties.threshold = 3;
        config.penalties.base = Duration::from_secs(60);
    })
    .await;
    let attacker = ip("127.0.1.9");
    let mut held = Vec::new();
    // Each new silent connection evicts an older one; three evictions are three
    // failures of the attacker's address.
    for _ in 0..5 {
        held.push(
            attack::connect_from(Some(attacker), server.addr())
                .await
                .unwrap(),
        );
    }
    server
        .wait_for("3 evictions and a refusal", |s| {
            s.handshakes_evicted == 3 && s.penalties_imposed == 1
        })
        .await;
    // Refused on arrival now, even with a valid message 1; others are served.
    assert!(connect(server.addr(), Some(attacker)).await.is_err());
    assert_eq!(server.stats.snapshot().refused_penalized, 1);
    served(server.addr(), Some(ip("127.0.0.2"))).await.unwrap();
    drop(held);
    server.stop().await;
}

#[tokio::test]
async fn the_per_source_cap_counts_handshakes_in_progress_not_sessions() {
    let server = TestServer::start(|config| {
        config.penalties.max_handshakes_per_source = 2;
    })
    .await;
    let nat = Some(ip("127.0.0.7"));
    // Three sessions held open from one address, over a cap of two handshakes.
    let mut sessions = Vec::new();
    for n in 0..3 {
        let mut session = connect(server.addr(), nat)
            .await
            .unwrap_or_else(|error| panic!("session {n} refused: {error}"));
        assert_eq!(
            ask(&mut session, "hi").await.unwrap(),
            Reply::Response(b"HI".to_vec())
        );
        sessions.push(session);
    }
    served(server.addr(), nat).await.unwrap();
    // The cap still holds for handshakes in progress.
    let _silent = [
        attack::connect_from(nat, server.addr()).await.unwrap(),
        attack::connect_from(nat, server.addr()).await.unwrap(),
    ];
    server
        .wait_for("2 handshakes in progress", |s| {
            s.handshakes_in_progress == 2
        })
        .await;
    assert!(connect(server.addr(), nat).await.is_err());
    assert_eq!(server.stats.snapshot().refused_source_cap, 1);
    for session in &mut sessions {
        ask(session, "still here").await.unwrap();
    }
    server.stop().await;
}

#[tokio::test]
async fn several_listeners_share_one_connection_cap() {
    let server = TestServer::start_on(&["127.0.0.1:0", "127.0.0.2:0"], |config| {
        config.max_connections = 1;
    })
    .await;
    let (first, second) = (server.addrs[0], server.addrs[1]);
    let mut session = connect(first, None).await.unwrap();
    ask(&mut session, "one").await.unwrap();
    // The other listener's connection is refused at the same cap.
    assert!(connect(second, None).await.is_err());
    assert_eq!(server.stats.snapshot().refused_connection_cap, 1);
    drop(session);
    server
        .wait_for("the slot back", |s| s.connections_open == 0)
        .await;
    served(second, None).await.unwrap();
    server.stop().await;
}

// ---------------------------------------------------------------- the real binary

/// A `noise-echo serve` child, its log read line by line on a thread.
struct Served {
    child: Child,
    dir: tempfile::TempDir,
    lines: mpsc::Receiver<String>,
    /// Every line read so far.
    log: String,
    /// The addresses of its `listening on` lines.
    listening: Vec<SocketAddr>,
}

impl Served {
    /// Makes a client key, authorizes it, and starts `serve` with `args`, through
    /// `bash -c SETUP` first when `setup` is given (for `ulimit`). Waits for
    /// `listeners` "listening on" lines.
    fn start(setup: Option<&str>, args: &[&str], listeners: usize) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path();
        let out = noise_echo(home)
            .args(["keygen", "-C", "client@test", "-f"])
            .arg(home.join("client"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        let out = noise_echo(home)
            .args(["authorize", "--authorized-keys"])
            .arg(home.join("authorized_keys"))
            .arg(home.join("client.pub"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        let mut command = match setup {
            Some(setup) => {
                let mut command = Command::new("bash");
                command
                    .arg("-c")
                    .arg(format!("{setup}; exec \"$0\" \"$@\""))
                    .arg(BIN)
                    .env("HOME", home)
                    .env("XDG_CONFIG_HOME", home.join(".config"))
                    .env_remove("RUST_LOG")
                    .stdin(Stdio::null());
                command
            }
            None => noise_echo(home),
        };
        command
            .arg("serve")
            .arg("--host-key")
            .arg(home.join("host_key"))
            .arg("--create-host-key")
            .arg("--authorized-keys")
            .arg(home.join("authorized_keys"))
            .args(args)
            .stderr(Stdio::piped());
        let mut child = command.spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        let mut served = Self {
            child,
            dir,
            lines,
            log: String::new(),
            listening: Vec::new(),
        };
        while served.listening.len() < listeners {
            let line = served.wait_for_line("listening on ");
            let addr = line
                .split("listening on ")
                .nth(1)
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|addr| addr.parse().ok())
                .unwrap_or_else(|| panic!("no address in {line:?}"));
            served.listening.push(addr);
        }
        served
    }

    fn home(&self) -> &Path {
        self.dir.path()
    }

    /// The next log line containing `needle`, within [`WAIT`].
    fn wait_for_line(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.log.push_str(&line);
                    self.log.push('\n');
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!("no log line with {needle:?} in:\n{}", self.log),
            }
        }
    }

    /// `noise-echo connect ADDR -i client --known-hosts known_hosts EXTRA...`
    fn connect(&self, addr: &str, extra: &[&str]) -> Output {
        noise_echo(self.home())
            .arg("connect")
            .arg(addr)
            .arg("-i")
            .arg(self.home().join("client"))
            .arg("--known-hosts")
            .arg(self.home().join("known_hosts"))
            .args(extra)
            .output()
            .unwrap()
    }

    /// The server's log so far, after stopping it.
    fn stop(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(2)) {
            self.log.push_str(&line);
            self.log.push('\n');
        }
        std::mem::take(&mut self.log)
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn status(output: &Output) -> i32 {
    output.status.code().unwrap_or(-1)
}

#[test]
fn declining_the_host_key_twenty_times_is_no_offence() {
    let mut served = Served::start(
        None,
        &["--listen", "127.0.0.1:0", "--penalty-threshold", "3"],
        1,
    );
    let addr = served.listening[0].to_string();
    // Without a terminal or --accept-new-host, connect declines the unknown key
    // after message 2 (exit 4).
    for n in 0..20 {
        let out = served.connect(&addr, &["hi"]);
        assert_eq!(status(&out), 4, "decline {n}: {}", text(&out.stderr));
        served.wait_for_line("after the server's key was sent");
    }
    let out = served.connect(&addr, &["--accept-new-host", "hi"]);
    assert_eq!(status(&out), 0, "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "HI\n");
    let log = served.stop();
    assert_eq!(
        log.matches("the client closed the connection after the server's key was sent (it may not trust this host key)")
            .count(),
        20,
        "{log}"
    );
    assert!(!log.contains("broke the protocol"), "{log}");
    assert!(!log.contains("refus"), "{log}");
}

/// Sends garbage from `source` to `target` and waits for the server to close.
async fn garbage(target: SocketAddr, source: IpAddr) {
    let mut stream = attack::connect_from(Some(source), target).await.unwrap();
    let _ = stream.write_all(&[0xff; 64]).await;
    let mut scratch = [0u8; 64];
    let _ = tokio::time::timeout(WAIT, stream.read(&mut scratch)).await;
}

/// Whether a valid message 1 from `source` gets the server's message 2.
async fn admitted(target: SocketAddr, source: IpAddr) -> bool {
    let Ok(mut stream) = attack::connect_from(Some(source), target).await else {
        return false;
    };
    let local = LocalIdentity::new(&identity(1));
    let started = tokio::time::timeout(WAIT, wire::initiate(&mut stream, &local)).await;
    matches!(started, Ok(Ok(_)))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn a_burst_of_failures_is_one_offence_of_the_base_time_and_a_repeat_escalates() {
    let mut served = Served::start(
        None,
        &[
            "--listen",
            "127.0.0.1:0",
            "--penalty-threshold",
            "3",
            "--penalty-base",
            "5",
            "--max-handshakes-per-source",
            "0",
        ],
        1,
    );
    let target = served.listening[0];
    let attacker = ip("127.0.1.7");
    let runtime = runtime();
    // 40 garbage connections at once: one offence.
    runtime.block_on(async {
        let burst: Vec<_> = (0..40)
            .map(|_| tokio::spawn(garbage(target, attacker)))
            .collect();
        for connection in burst {
            connection.await.unwrap();
        }
    });
    let line = served.wait_for_line("refusing 127.0.1.7");
    assert!(line.contains("for 5s"), "{line}");
    // Refused now; admitted again once the 5 s are over (bounded retries; being
    // refused in the meantime is no new offence).
    let mut tries = 0;
    runtime.block_on(async {
        while !admitted(target, attacker).await {
            tries += 1;
            assert!(tries < 300, "still refused after {tries} tries");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    assert!(tries > 0, "the burst was not refused at all");
    // A repeat after the refusal ended is the second offence: twice as long.
    runtime.block_on(async {
        for _ in 0..3 {
            garbage(target, attacker).await;
        }
    });
    let line = served.wait_for_line("refusing 127.0.1.7");
    assert!(line.contains("for 10s"), "{line}");
    let log = served.stop();
    assert_eq!(log.matches("refusing 127.0.1.7").count(), 2, "{log}");
}

#[test]
fn serve_raises_a_low_soft_open_files_limit_to_the_hard_limit() {
    let mut served = Served::start(Some("ulimit -Sn 256"), &["--listen", "127.0.0.1:0"], 1);
    let log = served.log.clone();
    assert!(
        log.contains("raised the open-files limit (RLIMIT_NOFILE) from 256 to"),
        "{log}"
    );
    // The running server's limit is the raised one.
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", served.child.id())).unwrap();
    let open_files = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))
        .unwrap()
        .to_owned();
    assert!(!open_files.contains(" 256 "), "{open_files}");
    let out = served.connect(
        &served.listening[0].to_string(),
        &["--accept-new-host", "x"],
    );
    assert_eq!(status(&out), 0, "{}", text(&out.stderr));
    served.wait_for_line("closed");
}

#[test]
fn serve_warns_when_the_hard_open_files_limit_is_below_the_caps() {
    let served = Served::start(
        Some("ulimit -n 300"),
        &["--listen", "127.0.0.1:0", "--max-connections", "4096"],
        1,
    );
    let log = served.stop();
    assert!(
        log.contains("--max-connections 4096 with 1 listener(s) needs 4161 open files, but the open-files limit is 300"),
        "{log}"
    );
    assert!(log.contains("ulimit -Hn"), "{log}");
}

fn ipv6_loopback_works() -> bool {
    std::net::TcpListener::bind("[::1]:0").is_ok()
}

#[test]
fn serve_listens_on_every_listen_address_given() {
    let mut listen = vec!["--listen", "127.0.0.1:0", "--listen", "127.0.0.2:0"];
    if ipv6_loopback_works() {
        listen.extend(["--listen", "[::1]:0"]);
    }
    let count = listen.len() / 2;
    let mut served = Served::start(None, &listen, count);
    assert_eq!(served.listening.len(), count);
    for addr in served.listening.clone() {
        let out = served.connect(&addr.to_string(), &["--accept-new-host", "hi"]);
        assert_eq!(status(&out), 0, "{addr}: {}", text(&out.stderr));
        assert_eq!(text(&out.stdout), "HI\n");
        served.wait_for_line("closed");
    }
}

#[test]
fn listen_colon_port_means_every_ipv4_and_ipv6_address() {
    let ipv6 = ipv6_loopback_works();
    let mut served = Served::start(None, &["--listen", ":0"], if ipv6 { 2 } else { 1 });
    // The accept loops start concurrently: their "listening" lines come in either order.
    let v4 = *served
        .listening
        .iter()
        .find(|addr| addr.is_ipv4())
        .unwrap_or_else(|| panic!("no IPv4 listener: {:?}", served.listening));
    assert_eq!(v4.ip(), ip("0.0.0.0"), "{:?}", served.listening);
    let port = v4.port();
    let mut reach = vec![format!("127.0.0.1:{port}")];
    if ipv6 {
        let v6 = served.listening.iter().find(|addr| addr.is_ipv6());
        assert_eq!(
            v6,
            Some(&SocketAddr::new(ip("::"), port)),
            "{:?}",
            served.listening
        );
        reach.push(format!("[::1]:{port}"));
    }
    for addr in reach {
        let out = served.connect(&addr, &["--accept-new-host", "hi"]);
        assert_eq!(status(&out), 0, "{addr}: {}", text(&out.stderr));
        served.wait_for_line("closed");
    }
}

#[test]
fn a_listen_port_that_is_not_a_number_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = noise_echo(dir.path())
        .args(["serve", "--listen", ":http"])
        .output()
        .unwrap();
    assert_eq!(status(&out), 1);
    let stderr = text(&out.stderr);
    assert!(stderr.contains("cannot listen on :http"), "{stderr}");
    assert!(stderr.contains("as in :1234"), "{stderr}");
}
