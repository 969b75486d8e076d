//! `connect --cipher`, `--protocol`, the config file's `Ciphers` and `Protocol`, and
//! what `-v` says of them, through the binary. The v2 servers here are the
//! library's own responder (`wire::respond_any` with chosen settings) run in this
//! process on loopback, and the v1-only ones `wire::respond` or `serve` itself, so
//! each case is what any server of that kind does.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};

use common::served::Served;
use common::{noise_echo, text};
use noise_echo::identity::Identity;
use noise_echo::wire::{
    self, encode_frame, Answer, LocalIdentity, RecordType, RekeyPolicy, ResponderSettings,
    ServerParams, Suite,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SUCCESS: i32 = 0;
const FAILURE: i32 = 1;
const USAGE: i32 = 2;
const CONNECTION_FAILED: i32 = 3;
const PROTOCOL_ERROR: i32 = 6;

fn code(out: &Output) -> i32 {
    out.status.code().expect("exited, not killed")
}

fn host() -> Identity {
    Identity::from_seed(&[9; 32], "test-host")
}

/// How an in-process test server handles each connection.
#[derive(Clone)]
enum Behaviour {
    /// `respond_any` with these settings, then an uppercase echo.
    V2(ResponderSettings),
    /// `wire::respond` (v1 only), then an uppercase echo.
    V1Only,
    /// v1: reads one record header, answers ERROR `request too large` and closes
    /// with the body unread (the kernel resets the connection, no FIN first).
    V1RefuseAndClose,
    /// Reads the offer and message 1, writes this answer, half-closes.
    Answer(Answer),
}

/// A test server on 127.0.0.1:0 in its own thread, serving `connections`
/// connections one after the other, recording the request bodies.
struct TestServer {
    port: u16,
    requests: Arc<Mutex<Vec<Vec<u8>>>>,
    thread: std::thread::JoinHandle<()>,
}

impl TestServer {
    fn start(behaviour: Behaviour, connections: usize) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::<Mutex<Vec<Vec<u8>>>>::default();
        let record = requests.clone();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                for _ in 0..connections {
                    let (stream, _) = listener.accept().await.unwrap();
                    serve_one(stream, &behaviour, &record).await;
                }
            });
        });
        Self {
            port,
            requests,
            thread,
        }
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Waits for the server to have served its connections; the requests it got.
    fn finish(self) -> Vec<Vec<u8>> {
        self.thread.join().unwrap();
        let requests = self.requests.lock().unwrap();
        requests.clone()
    }
}

async fn serve_one(
    mut stream: tokio::net::TcpStream,
    behaviour: &Behaviour,
    record: &Mutex<Vec<Vec<u8>>>,
) {
    let local = LocalIdentity::new(&host());
    let established = match behaviour {
        Behaviour::V2(settings) => wire::respond_any(&mut stream, &local, settings).await,
        Behaviour::V1Only | Behaviour::V1RefuseAndClose => wire::respond(&mut stream, &local).await,
        Behaviour::Answer(answer) => {
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
            let _ = stream.read_to_end(&mut Vec::new()).await;
            return;
        }
    };
    let Ok(established) = established else {
        return;
    };
    if let Behaviour::V1RefuseAndClose = behaviour {
        // tokio::io::split: dropping its halves sends no FIN (an owned write half's
        // drop would).
        let (mut rx, mut tx) = established.into_split(stream);
        let _ = rx.next_record().await;
        tx.write_record(RecordType::Error, b"request too large")
            .await
            .unwrap();
        tx.flush().await.unwrap();
        // Closed without a FIN first: the reset follows the ERROR directly, so the
        // client's reader meets it too, not only its writer.
        return;
    }
    let (reader, writer) = stream.into_split();
    let (mut rx, mut tx) = established.into_halves(reader, writer);
    let mut body = Vec::new();
    while let Ok(Some(_)) = rx.next_record().await {
        if rx.read_body(&mut body, 1 << 20).await.is_err() {
            return;
        }
        record.lock().unwrap().push(body.clone());
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

fn v2(suites: &[Suite], max_request: u32) -> Behaviour {
    Behaviour::V2(ResponderSettings::new(
        suites.to_vec(),
        true,
        ServerParams::new(max_request, RekeyPolicy::DEFAULT),
    ))
}

/// A home with a client key (`client`, unencrypted) made by `keygen`.
fn home_with_key() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let out = noise_echo(dir.path())
        .args(["keygen", "-q", "-N", "", "-f"])
        .arg(dir.path().join("client"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    dir
}

/// `connect ADDR` pinned to [`host`]'s key, with `extra` flags.
fn connect(home: &Path, addr: &str, extra: &[&str]) -> Command {
    let mut command = noise_echo(home);
    command
        .arg("connect")
        .arg(addr)
        .arg("-i")
        .arg(home.join("client"))
        .arg("--known-hosts")
        .arg(home.join("known_hosts"))
        .args([
            "--expect-fingerprint",
            &host().public_key().fingerprint().to_string(),
        ])
        .args(extra);
    command
}

#[test]
fn connect_cipher_runs_each_suite_and_v_names_version_and_suite() {
    let home = home_with_key();
    for suite in Suite::ALL {
        let server = TestServer::start(v2(&Suite::ALL, 1 << 20), 1);
        let out = connect(
            home.path(),
            &server.addr(),
            &["--cipher", suite.short_name(), "-v", "hello"],
        )
        .output()
        .unwrap();
        assert_eq!(code(&out), SUCCESS, "{}", text(&out.stderr));
        assert_eq!(text(&out.stdout), "HELLO\n");
        let expected = format!("protocol 2, suite {}", suite.noise_name());
        assert!(
            text(&out.stderr).contains(&expected),
            "{}",
            text(&out.stderr)
        );
        assert_eq!(server.finish(), [b"hello".to_vec()]);
    }
}

#[test]
fn default_connect_retries_with_a_suite_the_server_lists() {
    let home = home_with_key();
    let only = match Suite::preferred() {
        Suite::AesGcmSha256 => Suite::ChaChaPolyBlake2s,
        _ => Suite::AesGcmSha256,
    };
    // Two connections: the refused offer, and the retry.
    let server = TestServer::start(v2(&[only], 1 << 20), 2);
    let out = connect(home.path(), &server.addr(), &["-v", "x"])
        .output()
        .unwrap();
    assert_eq!(code(&out), SUCCESS, "{}", text(&out.stderr));
    let log = text(&out.stderr);
    assert!(log.contains("retrying with"), "{log}");
    assert!(
        log.contains(&format!("protocol 2, suite {}", only.noise_name())),
        "{log}"
    );
    assert_eq!(server.finish(), [b"x".to_vec()]);
}

#[test]
fn a_forced_cipher_the_server_refuses_names_the_one_to_use() {
    let home = home_with_key();
    let server = TestServer::start(v2(&[Suite::ChaChaPolyBlake2s], 1 << 20), 1);
    let out = connect(home.path(), &server.addr(), &["--cipher", "aesgcm", "x"])
        .output()
        .unwrap();
    assert_eq!(code(&out), PROTOCOL_ERROR, "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stderr),
        "error: the server does not accept the cipher aesgcm (Noise_XX_25519_AESGCM_SHA256); \
         it accepts Noise_XX_25519_ChaChaPoly_BLAKE2s: connect with --cipher chachapoly\n"
    );
    server.finish();
}

#[test]
fn a_v1_only_server_fails_a_default_connect_naming_protocol_1() {
    let home = home_with_key();
    let server = TestServer::start(Behaviour::V1Only, 1);
    let out = connect(home.path(), &server.addr(), &["x"])
        .output()
        .unwrap();
    assert_eq!(code(&out), CONNECTION_FAILED, "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "the server at {} closed the connection before answering the protocol 2 offer: \
             it may speak only protocol 1 (retry with: connect --protocol 1)",
            server.addr()
        )),
        "{stderr}"
    );
    server.finish();
}

#[test]
fn protocol_1_talks_to_serve_and_v_says_so() {
    let served = Served::start(&[]);
    let out = served
        .connect(&["--protocol", "1", "-v", "old", "school"])
        .output()
        .unwrap();
    assert_eq!(code(&out), SUCCESS, "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "OLD\nSCHOOL\n");
    assert!(
        text(&out.stderr).contains("protocol 1, suite Noise_XX_25519_ChaChaPoly_BLAKE2s"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn the_config_files_protocol_and_ciphers_apply_and_flags_win() {
    let served = Served::start(&[]);
    let config = served.path("config");
    std::fs::write(&config, "Host *\n  Protocol 1\n  Ciphers chachapoly\n").unwrap();
    let config = config.to_str().unwrap();
    let out = served.connect(&["-F", config, "hi"]).output().unwrap();
    assert_eq!(code(&out), SUCCESS, "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "HI\n");
    let settings = served.connect(&["-F", config, "-G"]).output().unwrap();
    let printed = text(&settings.stdout);
    assert!(printed.contains("\nprotocol 1\n"), "{printed}");
    assert!(printed.contains("\nciphers chachapoly\n"), "{printed}");
    let flags = served
        .connect(&["-F", config, "--protocol", "2", "--cipher", "aesgcm", "-G"])
        .output()
        .unwrap();
    let printed = text(&flags.stdout);
    assert!(printed.contains("\nprotocol 2\n"), "{printed}");
    assert!(printed.contains("\nciphers aesgcm\n"), "{printed}");
}

#[test]
fn bad_cipher_and_protocol_values_are_usage_errors() {
    let home = home_with_key();
    for (flag, value, listed) in [
        ("--cipher", "des", "[possible values: aesgcm, chachapoly]"),
        ("--protocol", "3", "[possible values: 1, 2]"),
    ] {
        let out = connect(home.path(), "127.0.0.1:9", &[flag, value, "x"])
            .output()
            .unwrap();
        assert_eq!(code(&out), USAGE, "{}", text(&out.stderr));
        let stderr = text(&out.stderr);
        assert!(stderr.contains(listed), "{stderr}");
        assert!(stderr.contains(&format!("'{value}'")), "{stderr}");
    }
}

#[test]
fn unsupported_version_is_a_protocol_error_naming_protocol_1() {
    let home = home_with_key();
    let server = TestServer::start(Behaviour::Answer(Answer::UnsupportedVersion(vec![1])), 1);
    let out = connect(home.path(), &server.addr(), &["x"])
        .output()
        .unwrap();
    assert_eq!(code(&out), PROTOCOL_ERROR, "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stderr),
        "error: the server does not speak protocol version 2; it speaks 1: connect with \
         --protocol 1\n"
    );
    server.finish();
}

/// A request over the server's max_request (from message 2) is not sent: the
/// server sees only the ones before it.
#[test]
fn a_request_over_the_servers_limit_is_not_sent() {
    let home = home_with_key();
    let server = TestServer::start(v2(&Suite::ALL, 10), 1);
    let out = connect(
        home.path(),
        &server.addr(),
        &["short", "0123456789ABC", "never"],
    )
    .output()
    .unwrap();
    assert_eq!(code(&out), FAILURE, "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "SHORT\n");
    // After the known_hosts warning for this first connection.
    assert!(
        text(&out.stderr).ends_with(
            "\nerror: request 2 not sent: request of 13 bytes exceeds the server's limit of 10 bytes\n"
        ),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(server.finish(), [b"short".to_vec()]);
}

/// The server refuses a request while connect is still writing it, and closes:
/// connect reports the refusal, not the reset its writes then meet.
#[test]
fn a_refusal_during_a_large_write_is_reported_not_the_reset() {
    let home = home_with_key();
    let server = TestServer::start(Behaviour::V1RefuseAndClose, 1);
    let mut child = connect(home.path(), &server.addr(), &["--protocol", "1"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    // One 32 MiB line, far over what the socket buffers hold.
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        let line = vec![b'a'; 32 << 20];
        let _ = stdin.write_all(&line);
        let _ = stdin.write_all(b"\n");
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(code(&out), FAILURE, "{stderr}");
    assert!(
        stderr.contains("error: request 1 refused: request too large"),
        "{stderr}"
    );
    assert!(!stderr.contains("reset"), "{stderr}");
    assert!(!stderr.contains("pipe"), "{stderr}");
    server.finish();
}
