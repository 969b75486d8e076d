//! The `serve` and `connect` commands through the real binary: output, exit
//! statuses, known_hosts handling, stdin pipelining, signals.

mod common;

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Command, Output, Stdio};

use common::{noise_echo, text};

const SUCCESS: i32 = 0;
const FAILURE: i32 = 1;
const CONNECTION_FAILED: i32 = 3;
const HOST_KEY_NOT_TRUSTED: i32 = 4;
const PERMISSION_DENIED: i32 = 5;

/// A `noise-echo serve` child process on 127.0.0.1:0, in its own directory.
struct Served {
    child: Child,
    port: u16,
    fingerprint: String,
    dir: tempfile::TempDir,
    stderr: BufReader<ChildStderr>,
    startup_log: String,
}

impl Served {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path();
        // A client identity, authorized.
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
        let mut child = noise_echo(home)
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--create-host-key",
                "--host-key",
            ])
            .arg(home.join("host_key"))
            .arg("--authorized-keys")
            .arg(home.join("authorized_keys"))
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut startup_log = String::new();
        match read_listening_line(&mut stderr, &mut startup_log) {
            Some((port, fingerprint)) => Self {
                child,
                port,
                fingerprint,
                dir,
                stderr,
                startup_log,
            },
            None => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the server did not start: {startup_log}");
            }
        }
    }

    fn home(&self) -> &Path {
        self.dir.path()
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn known_hosts(&self) -> PathBuf {
        self.home().join("known_hosts")
    }

    /// `noise-echo connect ADDR -i client --known-hosts known_hosts EXTRA...`
    fn connect(&self, extra: &[&str]) -> Command {
        let mut command = noise_echo(self.home());
        command
            .arg("connect")
            .arg(self.addr())
            .arg("-i")
            .arg(self.home().join("client"))
            .arg("--known-hosts")
            .arg(self.known_hosts())
            .args(extra);
        command
    }

    /// `connect --accept-new-host` reading requests from a pipe, output piped.
    fn spawn_reading_stdin(&self) -> Child {
        self.connect(&["--accept-new-host"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
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

/// Reads the server's log up to `listening on 127.0.0.1:PORT host_key=FP`.
fn read_listening_line(
    stderr: &mut BufReader<ChildStderr>,
    log: &mut String,
) -> Option<(u16, String)> {
    // Bounded: the listening line comes within the first few.
    for _ in 0..20 {
        let mut line = String::new();
        if stderr.read_line(&mut line).ok()? == 0 {
            return None;
        }
        log.push_str(&line);
        if let Some(rest) = line.split("listening on 127.0.0.1:").nth(1) {
            let port = rest.split_whitespace().next()?.parse().ok()?;
            let fingerprint = line.split("host_key=").nth(1)?.trim().to_owned();
            return Some((port, fingerprint));
        }
    }
    None
}

fn status(output: &Output) -> i32 {
    output.status.code().unwrap_or(-1)
}

#[test]
fn serve_creates_its_host_key_and_connect_echoes_messages_then_sigterm_stops_it() {
    let served = Served::start();
    assert!(
        served.startup_log.contains("created host key"),
        "{}",
        served.startup_log
    );
    assert_eq!(
        fs::metadata(served.home().join("host_key"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    assert!(served.fingerprint.starts_with("SHA256:"));
    let out = served
        .connect(&["--accept-new-host", "hello", "straße", "안녕", ""])
        .output()
        .unwrap();
    assert_eq!(status(&out), SUCCESS, "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "HELLO\nSTRASSE\n안녕\n\n");
    assert!(
        text(&out.stderr).contains("Permanently added"),
        "{}",
        text(&out.stderr)
    );
    let known = fs::read_to_string(served.known_hosts()).unwrap();
    assert!(
        known.starts_with(&format!("[127.0.0.1]:{} ssh-ed25519 ", served.port)),
        "{known}"
    );
    // Known now: silent.
    let out = served.connect(&["again"]).output().unwrap();
    assert_eq!(status(&out), SUCCESS);
    assert_eq!(text(&out.stdout), "AGAIN\n");
    assert_eq!(text(&out.stderr), "");
    let (code, log) = served.terminate();
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("accepted") || log.contains("closed"), "{log}");
    assert!(log.contains("client@test"), "{log}");
}

#[test]
fn an_unknown_host_without_a_terminal_is_refused_with_the_fix() {
    let served = Served::start();
    let out = served.connect(&["hi"]).output().unwrap();
    assert_eq!(status(&out), HOST_KEY_NOT_TRUSTED);
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!("--expect-fingerprint {}", served.fingerprint)),
        "{stderr}"
    );
    assert_eq!(text(&out.stdout), "");
    assert!(!served.known_hosts().exists());
}

#[test]
fn expect_fingerprint_accepts_the_right_key_only() {
    let served = Served::start();
    let wrong = "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let out = served
        .connect(&["--expect-fingerprint", wrong, "hi"])
        .output()
        .unwrap();
    assert_eq!(status(&out), HOST_KEY_NOT_TRUSTED, "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("not the expected"));
    let out = served
        .connect(&["--expect-fingerprint", &served.fingerprint, "hi"])
        .output()
        .unwrap();
    assert_eq!(status(&out), SUCCESS, "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "HI\n");
}

#[test]
fn a_changed_host_key_is_refused_loudly_naming_the_line() {
    let served = Served::start();
    let other = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEv7q6stEFBV88+aSpAQmfciO6lMvPvrkF8GwNQPhgk7";
    fs::write(
        served.known_hosts(),
        format!("# old\n[127.0.0.1]:{} {other}\n", served.port),
    )
    .unwrap();
    let out = served
        .connect(&["--accept-new-host", "hi"])
        .output()
        .unwrap();
    assert_eq!(status(&out), HOST_KEY_NOT_TRUSTED);
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "Offending ED25519 key in {}:2",
            served.known_hosts().display()
        )),
        "{stderr}"
    );
    assert!(stderr.contains(&served.fingerprint), "{stderr}");
    assert_eq!(text(&out.stdout), "");
}

#[test]
fn an_unauthorized_key_gets_the_servers_reason_and_status_5() {
    let served = Served::start();
    let intruder = served.home().join("intruder");
    let out = noise_echo(served.home())
        .args(["keygen", "-f"])
        .arg(&intruder)
        .output()
        .unwrap();
    assert!(out.status.success());
    let out = noise_echo(served.home())
        .arg("connect")
        .arg(served.addr())
        .arg("-i")
        .arg(&intruder)
        .arg("--known-hosts")
        .arg(served.known_hosts())
        .args(["--accept-new-host", "hi"])
        .output()
        .unwrap();
    assert_eq!(status(&out), PERMISSION_DENIED, "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("permission denied: key SHA256:"),
        "{}",
        text(&out.stderr)
    );
    assert!(text(&out.stderr).contains("is not in authorized_keys"));
}

#[test]
fn a_closed_port_is_status_3() {
    let home = tempfile::tempdir().unwrap();
    let key = home.path().join("id");
    assert!(noise_echo(home.path())
        .args(["keygen", "-f"])
        .arg(&key)
        .output()
        .unwrap()
        .status
        .success());
    // Bind then drop a listener to get a port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = noise_echo(home.path())
        .arg("connect")
        .arg(format!("127.0.0.1:{port}"))
        .arg("-i")
        .arg(&key)
        .arg("hi")
        .output()
        .unwrap();
    assert_eq!(status(&out), CONNECTION_FAILED, "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("cannot connect to 127.0.0.1"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_missing_or_too_open_identity_is_a_clear_error() {
    let served = Served::start();
    let out = noise_echo(served.home())
        .args(["connect", &served.addr(), "-i", "/nonexistent/id", "hi"])
        .output()
        .unwrap();
    assert_eq!(status(&out), FAILURE);
    assert!(
        text(&out.stderr).contains("noise-echo keygen -f /nonexistent/id"),
        "{}",
        text(&out.stderr)
    );
    fs::set_permissions(
        served.home().join("client"),
        fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let out = served.connect(&["hi"]).output().unwrap();
    assert_eq!(status(&out), FAILURE);
    assert!(
        text(&out.stderr).contains("chmod 600"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn stdin_lines_are_pipelined_with_crlf_and_empty_lines_handled() {
    let served = Served::start();
    let mut child = served.spawn_reading_stdin();
    let lines = 20_000;
    let mut input = String::from("first\r\n\nﬁnal ß\n");
    for index in 0..lines {
        input.push_str(&format!("line {index}\n"));
    }
    input.push_str("no newline at the end");
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()).unwrap());
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert_eq!(status(&out), SUCCESS, "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let replies: Vec<&str> = stdout.split('\n').collect();
    assert_eq!(
        replies.len(),
        lines + 4 + 1,
        "one line per reply, then the final newline"
    );
    assert_eq!(&replies[..3], ["FIRST", "", "FINAL SS"]);
    for index in 0..lines {
        assert_eq!(replies[3 + index], format!("LINE {index}"));
    }
    assert_eq!(replies[lines + 3], "NO NEWLINE AT THE END");
}

#[test]
fn an_invalid_utf8_line_prints_nothing_on_stdout_and_the_reason_and_fails() {
    let served = Served::start();
    let mut child = served.spawn_reading_stdin();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"ok\nbad \xff\nafter\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(status(&out), FAILURE);
    assert_eq!(text(&out.stdout), "OK\nAFTER\n");
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("request 2 refused: request is not valid UTF-8"),
        "{stderr}"
    );
    assert!(
        stderr.contains("the server refused 1 of 3 requests"),
        "{stderr}"
    );
}

#[test]
fn a_reader_closing_stdout_early_is_not_an_error() {
    let served = Served::start();
    let mut child = served.spawn_reading_stdin();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        for index in 0..200_000 {
            if writeln!(stdin, "line {index}").is_err() {
                break;
            }
        }
    });
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    assert_eq!(first, "LINE 0\n");
    drop(stdout); // like `| head -1`
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert_eq!(status(&out), SUCCESS, "{}", text(&out.stderr));
}
