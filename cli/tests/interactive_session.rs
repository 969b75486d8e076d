//! `connect` reading requests from a standard input that stays open (a person at
//! a terminal, or a script between lines) while the server ends the session: by
//! its idle timeout, by revoking the key (`--revoke-live`), or because it stops
//! (SIGTERM). The client reports it at once, as ssh's "Connection to HOST closed by
//! remote host", with the documented exit status, instead of at the next line.
//!
//! Each test keeps the client's stdin open until the client has exited: a client
//! that only noticed at its next line would never exit, and the hang guard
//! (`common::served::finish`) would fail the test.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin};

use common::served::{finish, Served};
use common::text;

const CONNECTION_FAILED: i32 = 3;
const PERMISSION_DENIED: i32 = 5;

/// Starts an interactive client, sends one line and waits for its reply, so the
/// session is established and idle when this returns. Returns the client and its
/// stdin, which the caller keeps open.
fn idle_client(served: &Served) -> (Child, ChildStdin) {
    let mut child = served.spawn_interactive();
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "first line").unwrap();
    stdin.flush().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut reply = String::new();
    stdout.read_line(&mut reply).unwrap();
    assert_eq!(reply, "FIRST LINE\n");
    // Give the rest of stdout back to the child's output collection.
    child.stdout = Some(stdout.into_inner());
    (child, stdin)
}

/// The client's exit status, stdout and stderr (its last line is the error; the
/// first says the host was added to known_hosts), with its stdin still open.
fn outcome(child: Child, stdin: &ChildStdin) -> (i32, String, String) {
    let out = finish(child, "the interactive client");
    // Still open: the client did not exit because its input ended.
    let _ = stdin;
    (
        out.status.code().unwrap_or(-1),
        text(&out.stdout),
        text(&out.stderr),
    )
}

#[test]
fn an_idle_timeout_is_reported_at_once_with_status_3() {
    let served = Served::start(&["--idle-timeout", "1"]);
    let (child, stdin) = idle_client(&served);
    let (status, stdout, stderr) = outcome(child, &stdin);
    assert_eq!(status, CONNECTION_FAILED, "{stderr}");
    assert_eq!(stdout, "", "nothing more on stdout");
    assert_eq!(
        stderr.lines().last().unwrap_or_default(),
        "error: Connection to 127.0.0.1 closed by remote host",
        "{stderr}"
    );
    drop(stdin);
    assert!(served.stop_and_read_log().contains("closed: idle"));
}

#[test]
fn a_live_revocation_is_reported_at_once_with_its_reason_and_status_5() {
    let served = Served::start(&["--revoke-live"]);
    let (child, stdin) = idle_client(&served);
    served.revoke_client();
    let (status, stdout, stderr) = outcome(child, &stdin);
    assert_eq!(status, PERMISSION_DENIED, "{stderr}");
    assert_eq!(stdout, "");
    assert_eq!(
        stderr.lines().last().unwrap_or_default(),
        "error: Connection to 127.0.0.1 closed by remote host: key revoked",
        "{stderr}"
    );
    drop(stdin);
}

#[test]
fn a_server_stopping_is_reported_at_once_with_status_3() {
    let served = Served::start(&[]);
    let (child, stdin) = idle_client(&served);
    served.terminate();
    let (status, stdout, stderr) = outcome(child, &stdin);
    assert_eq!(status, CONNECTION_FAILED, "{stderr}");
    assert_eq!(stdout, "");
    assert_eq!(
        stderr.lines().last().unwrap_or_default(),
        "error: Connection to 127.0.0.1 closed by remote host",
        "{stderr}"
    );
    drop(stdin);
}

/// The same close while requests are still unanswered says how many were lost.
#[test]
fn requests_lost_to_a_close_are_counted() {
    let served = Served::start(&["--max-request", "8"]);
    // Protocol 1: its client does not know the server's limit, so the server is the
    // one that refuses (a protocol 2 client does not send it: protocol_versions.rs).
    let mut child = served.spawn_interactive_with(&["--protocol", "1"]);
    let mut stdin = child.stdin.take().unwrap();
    // The server refuses the over-limit request and closes: the ones behind it are
    // never answered.
    stdin
        .write_all(b"ok\nthis one is over eight bytes\nlost\nlost too\n")
        .unwrap();
    stdin.flush().unwrap();
    let (status, stdout, stderr) = outcome(child, &stdin);
    assert_eq!(status, 1, "a refusal: {stderr}");
    assert_eq!(stdout, "OK\n");
    assert!(
        stderr.contains("error: request 2 refused: request too large: 28 bytes"),
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "the server refused 1 of 4 requests and closed the connection with 2 unanswered"
        ),
        "{stderr}"
    );
}

/// One step of a scripted server.
enum Step {
    /// Read one REQUEST, whole.
    AwaitRequest,
    /// Send one record and flush it.
    Send(noise_echo::wire::RecordType, Vec<u8>),
}

/// A server on 127.0.0.1:0 built from the library's handshake and session, that
/// plays `steps` on one connection and then closes it. Returns its port and host
/// key fingerprint.
fn scripted_server(steps: Vec<Step>) -> (u16, String, std::thread::JoinHandle<()>) {
    use noise_echo::identity::Identity;
    use noise_echo::wire::{self, LocalIdentity};
    let host = Identity::generate("scripted host");
    let fingerprint = host.public_key().fingerprint().to_string();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            listener.set_nonblocking(true).unwrap();
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let (mut socket, _) = listener.accept().await.unwrap();
            let established = wire::respond(&mut socket, &LocalIdentity::new(&host))
                .await
                .unwrap();
            let (mut rx, mut tx) = established.into_split(socket);
            for step in steps {
                match step {
                    Step::AwaitRequest => {
                        rx.next_record().await.unwrap().unwrap();
                        rx.read_body(&mut Vec::new(), 1 << 20).await.unwrap();
                    }
                    Step::Send(record_type, body) => {
                        tx.write_record(record_type, &body).await.unwrap();
                        tx.flush().await.unwrap();
                    }
                }
            }
            let _ = tx.shutdown().await;
        });
    });
    (port, fingerprint, server)
}

/// `connect` to a scripted server, with stdin a pipe kept open by the caller.
fn connect_to(port: u16, fingerprint: &str, home: &std::path::Path) -> Child {
    let key = home.join("id");
    if !key.exists() {
        let out = common::noise_echo(home)
            .args(["keygen", "-f"])
            .arg(&key)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    common::noise_echo(home)
        // The scripted server speaks protocol 1.
        .args([
            "connect",
            "--protocol",
            "1",
            &format!("127.0.0.1:{port}"),
            "-i",
        ])
        .arg(&key)
        .arg("--known-hosts")
        .arg(home.join("known_hosts"))
        .args(["--expect-fingerprint", fingerprint])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// An ERROR that answers no request is the server's reason for closing: it is
/// shown with the close, at once.
#[test]
fn a_reason_the_server_gives_for_closing_is_shown() {
    use noise_echo::wire::RecordType;
    let home = tempfile::tempdir().unwrap();
    let (port, fingerprint, server) = scripted_server(vec![
        Step::AwaitRequest,
        Step::Send(RecordType::Response, b"FIRST LINE".to_vec()),
        Step::Send(RecordType::Error, b"going away for maintenance".to_vec()),
    ]);
    let mut child = connect_to(port, &fingerprint, home.path());
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "first line").unwrap();
    let (status, stdout, stderr) = outcome(child, &stdin);
    server.join().unwrap();
    assert_eq!(status, CONNECTION_FAILED, "{stderr}");
    assert_eq!(stdout, "FIRST LINE\n");
    assert_eq!(
        stderr.lines().last().unwrap_or_default(),
        "error: Connection to 127.0.0.1 closed by remote host: going away for maintenance",
        "{stderr}"
    );
}

/// A hostile server costs the client bounded memory: a reply over three times its
/// request is refused before it is read, and a reply to nothing is refused too;
/// both are protocol errors.
#[test]
fn replies_a_server_cannot_send_are_protocol_errors() {
    use noise_echo::wire::RecordType;
    const PROTOCOL_ERROR: i32 = 6;
    let home = tempfile::tempdir().unwrap();
    // 31 bytes for a 10-byte request.
    let (port, fingerprint, server) = scripted_server(vec![
        Step::AwaitRequest,
        Step::Send(RecordType::Response, vec![b'A'; 31]),
    ]);
    let mut child = connect_to(port, &fingerprint, home.path());
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "0123456789").unwrap();
    let (status, stdout, stderr) = outcome(child, &stdin);
    server.join().unwrap();
    assert_eq!(status, PROTOCOL_ERROR, "{stderr}");
    assert_eq!(stdout, "");
    assert!(
        stderr.contains("RESPONSE body of 31 bytes is over the limit of 30 bytes"),
        "{stderr}"
    );
    // A RESPONSE before any request.
    let (port, fingerprint, server) =
        scripted_server(vec![Step::Send(RecordType::Response, Vec::new())]);
    let mut child = connect_to(port, &fingerprint, home.path());
    let stdin = child.stdin.take().unwrap();
    let (status, _, stderr) = outcome(child, &stdin);
    server.join().unwrap();
    assert_eq!(status, PROTOCOL_ERROR, "{stderr}");
    assert!(stderr.contains("a RESPONSE to no request"), "{stderr}");
}

/// A server that reads requests and never answers costs the client bounded memory:
/// it keeps at most 65536 requests in flight (connect's MAX_IN_FLIGHT), sends
/// what it has queued, and waits for room; when the server then closes, the
/// waiting writer stops and the client exits, counting what was lost.
#[test]
fn a_server_that_never_answers_gets_at_most_65536_requests_in_flight() {
    const MAX_IN_FLIGHT: usize = 1 << 16;
    let home = tempfile::tempdir().unwrap();
    // The server reads exactly as many as the client sends before it waits for a
    // reply: one more read would wait forever.
    let steps = (0..MAX_IN_FLIGHT).map(|_| Step::AwaitRequest).collect();
    let (port, fingerprint, server) = scripted_server(steps);
    let mut child = connect_to(port, &fingerprint, home.path());
    let mut stdin = child.stdin.take().unwrap();
    let mut input = String::new();
    for index in 0..MAX_IN_FLIGHT + 10 {
        input.push_str(&format!("{index}\n"));
    }
    stdin.write_all(input.as_bytes()).unwrap();
    let (status, stdout, stderr) = outcome(child, &stdin);
    server.join().unwrap();
    assert_eq!(status, CONNECTION_FAILED, "{stderr}");
    assert_eq!(stdout, "");
    assert_eq!(
        stderr.lines().last().unwrap_or_default(),
        format!(
            "error: Connection to 127.0.0.1 closed by remote host with {MAX_IN_FLIGHT} of \
             {MAX_IN_FLIGHT} requests unanswered"
        ),
        "{stderr}"
    );
}

/// Any refusal of our key once the session is under way (a time limit, say) is
/// the server ending it: reported as such, with its reason, and status 5.
#[test]
fn a_refusal_after_replies_is_a_close_with_status_5() {
    use noise_echo::wire::RecordType;
    let home = tempfile::tempdir().unwrap();
    let (port, fingerprint, server) = scripted_server(vec![
        Step::AwaitRequest,
        Step::Send(RecordType::Response, b"FIRST LINE".to_vec()),
        Step::Send(
            RecordType::Error,
            b"permission denied: session time limit reached".to_vec(),
        ),
    ]);
    let mut child = connect_to(port, &fingerprint, home.path());
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "first line").unwrap();
    let (status, stdout, stderr) = outcome(child, &stdin);
    server.join().unwrap();
    assert_eq!(status, PERMISSION_DENIED, "{stderr}");
    assert_eq!(stdout, "FIRST LINE\n");
    assert_eq!(
        stderr.lines().last().unwrap_or_default(),
        "error: Connection to 127.0.0.1 closed by remote host: session time limit reached",
        "{stderr}"
    );
}
