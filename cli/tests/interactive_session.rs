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
    let mut child = served.spawn_interactive();
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
