//! `serve`'s resource limits and its shutdown through the real binary: SIGTERM under
//! pipelined load loses no reply and resets no connection; clients that never read
//! cannot keep an honest client out of the memory budget; the per-key session cap
//! and the session time limit reach the client as a reason it shows.
//!
//! The load and the hostile clients are written with the library's session layer;
//! the honest client is the `connect` command.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, ChildStderr, Command, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use common::{noise_echo, text};
use noise_echo::identity::Identity;
use noise_echo::openssh::keyfile;
use noise_echo::wire::MIN_RESPONSE_LIMIT;
use noise_echo::wire::{self, LocalIdentity, RecordType, RecvHalf, Reply, SendHalf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// The longest any single wait in these tests may take before it counts as a failure.
const WAIT: Duration = Duration::from_secs(60);

const PERMISSION_DENIED: i32 = 5;

/// A `noise-echo serve` child on 127.0.0.1:0 with extra flags, authorizing one client
/// whose private key is at `home/client`.
struct Served {
    child: Child,
    addr: SocketAddr,
    client: Identity,
    dir: tempfile::TempDir,
    stderr: BufReader<ChildStderr>,
}

impl Served {
    fn start(flags: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path();
        let client = Identity::from_seed(&[7; 32], "client@test");
        keyfile::write_identity(&home.join("client"), &client, false).unwrap();
        std::fs::write(
            home.join("authorized_keys"),
            client.public_key().to_openssh_line("client@test") + "\n",
        )
        .unwrap();
        let started = common::start_serve(home, &home.join("authorized_keys"), flags);
        Self {
            child: started.child,
            addr: started.addr,
            client,
            dir,
            stderr: started.stderr,
        }
    }

    fn home(&self) -> &Path {
        self.dir.path()
    }

    /// `noise-echo connect ADDR -i client --accept-new-host EXTRA...`
    fn connect(&self, extra: &[&str]) -> Command {
        let mut command = noise_echo(self.home());
        command
            .arg("connect")
            .arg(self.addr.to_string())
            .arg("-i")
            .arg(self.home().join("client"))
            .arg("--known-hosts")
            .arg(self.home().join("known_hosts"))
            .arg("--accept-new-host")
            .args(extra);
        command
    }

    /// SIGTERM, then the exit status and the rest of the log.
    fn terminate(mut self) -> (Option<i32>, String) {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
        let mut rest = String::new();
        self.stderr.read_to_string(&mut rest).unwrap();
        let code = self.child.wait().unwrap().code();
        (code, rest)
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

type Session = (RecvHalf<OwnedReadHalf>, SendHalf<OwnedWriteHalf>);

/// A session as `identity`, not checking the server's key (the test started it).
async fn session(addr: SocketAddr, identity: &Identity) -> Session {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let local = LocalIdentity::new(identity);
    let established = tokio::time::timeout(WAIT, async {
        let pending = wire::initiate(&mut stream, &local).await?;
        pending.approve(&mut stream).await
    })
    .await
    .expect("handshake neither completed nor failed")
    .unwrap();
    let (reader, writer) = stream.into_split();
    established.into_halves(reader, writer)
}

/// Runs `command` to its end, killing it if it takes longer than [`WAIT`].
fn output_within_wait(mut command: Command, stdin: &[u8]) -> Output {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let stdin = stdin.to_vec();
    let feeder = std::thread::spawn(move || {
        let _ = input.write_all(&stdin);
    });
    let pid = child.id();
    let (done, finished) = std::sync::mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if finished.recv_timeout(WAIT).is_err() {
            let _ = Command::new("kill").arg(pid.to_string()).status();
        }
    });
    let output = child.wait_with_output().unwrap();
    let _ = done.send(());
    watchdog.join().unwrap();
    feeder.join().unwrap();
    output
}

/// What one pipelining client saw up to the server's close.
#[derive(Debug)]
struct Seen {
    /// Replies read, each checked against its request.
    replies: u64,
    /// How the reply stream ended: `None` for a clean end of stream.
    error: Option<String>,
}

/// Sends numbered requests as fast as it can and reads the replies in order until
/// the server closes; then closes too. Adds a permit to `loaded` at its 100th reply.
async fn pipelining_client(
    addr: SocketAddr,
    identity: Arc<Identity>,
    loaded: Arc<tokio::sync::Semaphore>,
) -> Seen {
    let (mut receiver, mut sender) = session(addr, &identity).await;
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let writer = tokio::spawn(async move {
        for n in 0u64..10_000_000 {
            let body = format!("request {n}");
            let sent = async {
                sender
                    .write_record(RecordType::Request, body.as_bytes())
                    .await?;
                sender.flush().await
            };
            tokio::select! {
                result = sent => if result.is_err() { break },
                _ = &mut stopped => break,
            }
        }
        let _ = sender.shutdown().await;
    });
    let mut replies = 0u64;
    let error = loop {
        match receiver.read_reply(MIN_RESPONSE_LIMIT).await {
            Ok(Some(Reply::Response(body))) => {
                assert_eq!(body, format!("REQUEST {replies}").into_bytes());
                replies += 1;
                if replies == 100 {
                    loaded.add_permits(1);
                }
            }
            Ok(Some(other)) => break Some(format!("unexpected reply {other:?}")),
            Ok(None) => break None,
            Err(error) => break Some(error.to_string()),
        }
    };
    let _ = stop.send(());
    writer.await.unwrap();
    Seen { replies, error }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_pipelined_load_answers_every_request_read_and_resets_nothing() {
    let served = Served::start(&[]);
    let identity = Arc::new(served.client.clone());
    let sessions = 20;
    let loaded = Arc::new(tokio::sync::Semaphore::new(0));
    let clients: Vec<_> = (0..sessions)
        .map(|_| {
            tokio::spawn(pipelining_client(
                served.addr,
                Arc::clone(&identity),
                Arc::clone(&loaded),
            ))
        })
        .collect();
    // Under load: every session has had a hundred replies.
    let under_load = tokio::time::timeout(WAIT, loaded.acquire_many(sessions)).await;
    assert!(under_load.is_ok(), "the load never got going");
    let (code, log) = tokio::task::spawn_blocking(move || served.terminate())
        .await
        .unwrap();
    let mut answered = 0;
    for client in clients {
        let seen = tokio::time::timeout(WAIT, client)
            .await
            .expect("a client never saw its session end")
            .unwrap();
        // A clean end of stream at a record boundary: no reset, no truncated reply.
        assert_eq!(seen.error, None, "{seen:?}\n{log}");
        answered += seen.replies;
    }
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("stopped"), "{log}");
    assert!(
        !log.contains("grace period"),
        "sessions outlived the grace: {log}"
    );
    // Every request the server answered is in its log lines, and reached its client.
    let logged: u64 = log
        .lines()
        .filter(|line| line.contains("closed: server stopping"))
        .map(|line| {
            line.split("requests=")
                .nth(1)
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|count| count.parse::<u64>().ok())
                .unwrap_or_else(|| panic!("no request count in {line}"))
        })
        .sum();
    assert_eq!(logged, answered, "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_never_read_cannot_keep_an_honest_client_out_of_the_budget() {
    // One worst-case request of 1 MiB (4.6 MiB with its reply and buffers) fits.
    let served = Served::start(&["--memory-budget", "5MiB"]);
    let identity = Arc::new(served.client.clone());
    let growing = "ΐ".repeat(512 * 1024);
    let mut hostile = Vec::new();
    let mut stuck = Vec::new();
    for _ in 0..2 {
        let (receiver, mut sender) = session(served.addr, &identity).await;
        let body = growing.clone();
        let (blocked, is_blocked) = tokio::sync::oneshot::channel::<()>();
        stuck.push(is_blocked);
        hostile.push((
            receiver,
            tokio::spawn(async move {
                // 1 MiB requests that grow to 3 MiB, and never a reply read, until
                // the server stops reading them (the kernel's buffers are full).
                for _ in 0..32 {
                    let sent = async {
                        sender
                            .write_record(RecordType::Request, body.as_bytes())
                            .await?;
                        sender.flush().await
                    };
                    match tokio::time::timeout(Duration::from_secs(2), sent).await {
                        Ok(Ok(())) => continue,
                        _ => break,
                    }
                }
                let _ = blocked.send(());
                sender
            }),
        ));
    }
    for is_blocked in stuck {
        tokio::time::timeout(WAIT, is_blocked)
            .await
            .expect("a hostile client was never held back")
            .unwrap();
    }
    // An honest client with a large request of its own: it waits for memory, and
    // gets it from the sessions that hold memory without taking their replies.
    let line = "ΐ".repeat(256 * 1024);
    let connect = served.connect(&[]);
    let input = format!("{line}\n").into_bytes();
    let output = tokio::task::spawn_blocking(move || output_within_wait(connect, &input))
        .await
        .unwrap();
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(text(&output.stdout), format!("{}\n", line.to_uppercase()));
    // And a small request needs no budget at all.
    let output = tokio::task::spawn_blocking({
        let connect = served.connect(&["hello"]);
        move || output_within_wait(connect, b"")
    })
    .await
    .unwrap();
    assert_eq!(text(&output.stdout), "HELLO\n", "{}", text(&output.stderr));
    drop(hostile);
    let (_, log) = tokio::task::spawn_blocking(move || served.terminate())
        .await
        .unwrap();
    assert!(
        log.contains("without taking its replies while other sessions waited for memory"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_at_its_session_limit_is_refused_with_the_reason_and_status_5() {
    let served = Served::start(&["--max-sessions-per-key", "1"]);
    let mut held = session(served.addr, &served.client).await;
    held.1
        .write_record(RecordType::Request, b"first")
        .await
        .unwrap();
    held.1.flush().await.unwrap();
    assert_eq!(
        held.0.read_reply(MIN_RESPONSE_LIMIT).await.unwrap(),
        Some(Reply::Response(b"FIRST".to_vec()))
    );
    let connect = served.connect(&["hello"]);
    let output = tokio::task::spawn_blocking(move || output_within_wait(connect, b""))
        .await
        .unwrap();
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(PERMISSION_DENIED), "{stderr}");
    assert!(
        stderr.contains("too many sessions for this key"),
        "{stderr}"
    );
    // Once the first session ends, the key may open another.
    drop(held);
    let mut answered = false;
    for _ in 0..50 {
        let connect = served.connect(&["hello"]);
        let output = tokio::task::spawn_blocking(move || output_within_wait(connect, b""))
            .await
            .unwrap();
        if output.status.success() {
            assert_eq!(text(&output.stdout), "HELLO\n");
            answered = true;
            break;
        }
        assert!(text(&output.stderr).contains("too many sessions"));
    }
    assert!(answered, "the key never got its session back");
    // No limit with 0.
    let unlimited = Served::start(&["--max-sessions-per-key", "0"]);
    let mut sessions = Vec::new();
    for _ in 0..5 {
        sessions.push(session(unlimited.addr, &unlimited.client).await);
    }
    let connect = unlimited.connect(&["hello"]);
    let output = tokio::task::spawn_blocking(move || output_within_wait(connect, b""))
        .await
        .unwrap();
    assert!(output.status.success(), "{}", text(&output.stderr));
}

#[test]
fn a_session_at_its_time_limit_ends_with_the_reason() {
    let served = Served::start(&["--max-session-time", "1"]);
    let mut child = served
        .connect(&[])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"one\n").unwrap();
    stdin.flush().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line, "ONE\n");
    // stdin stays open: the session only ends because of its time limit.
    let pid = child.id();
    let (done, finished) = std::sync::mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if finished.recv_timeout(WAIT).is_err() {
            let _ = Command::new("kill").arg(pid.to_string()).status();
        }
    });
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let status = child.wait().unwrap();
    let _ = done.send(());
    watchdog.join().unwrap();
    drop(stdin);
    assert_eq!(status.code(), Some(PERMISSION_DENIED), "{stderr}");
    assert!(stderr.contains("session time limit reached"), "{stderr}");
}

#[test]
fn a_memory_budget_too_small_for_one_request_is_refused_naming_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let serve = |flags: &[&str]| {
        noise_echo(dir.path())
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--create-host-key",
                "--host-key",
            ])
            .arg(dir.path().join("host_key"))
            .arg("--authorized-keys")
            .arg(dir.path().join("authorized_keys"))
            .args(flags)
            .output()
            .unwrap()
    };
    let output = serve(&["--memory-budget", "1MiB"]);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("--memory-budget of 1048576 bytes cannot hold one request of max-request (1048576 bytes)")
            && stderr.contains("make it at least 4849664 bytes, or lower max-request"),
        "{stderr}"
    );
    let output = serve(&["--memory-budget", "lots"]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
    assert!(text(&output.stderr).contains("--memory-budget"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_per_key_default_is_a_quarter_of_the_connection_cap() {
    let served = Served::start(&["--max-connections", "4"]);
    let mut held = session(served.addr, &served.client).await;
    held.1
        .write_record(RecordType::Request, b"first")
        .await
        .unwrap();
    held.1.flush().await.unwrap();
    assert!(held
        .0
        .read_reply(MIN_RESPONSE_LIMIT)
        .await
        .unwrap()
        .is_some());
    let connect = served.connect(&["hello"]);
    let output = tokio::task::spawn_blocking(move || output_within_wait(connect, b""))
        .await
        .unwrap();
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(PERMISSION_DENIED), "{stderr}");
    assert!(
        stderr.contains("too many sessions for this key (it has 1 open"),
        "{stderr}"
    );
}
