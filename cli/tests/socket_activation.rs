//! systemd socket activation through the binary: `serve` started as systemd starts
//! it, with listening sockets from descriptor 3 on and `LISTEN_FDS`/`LISTEN_PID` set,
//! serves on them (instead of its default address); sockets meant for another
//! process are left alone; a passed socket that is not listening is refused at
//! start with what to fix. The test opens the sockets itself and hands them down
//! through `bash` (`exec 3<&N`, then `exec` into `serve`, so `LISTEN_PID=$$` is the
//! server's own id), as the service manager would.

mod common;

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, TcpListener};
use std::os::fd::{AsFd, AsRawFd};
use std::path::Path;
use std::process::{Child, Stdio};

use common::{noise_echo, text, BIN};

/// `serve ARGS` under `bash`, with `socket` as descriptor 3 and `LISTEN_FDS=1`;
/// `LISTEN_PID` is the server's id, or `pid` when given.
fn serve_with_socket(home: &Path, socket: &impl AsFd, pid: Option<&str>, args: &[&str]) -> Child {
    // Not closed on exec, so `bash` inherits it (at its own number, moved to 3).
    rustix::io::fcntl_setfd(socket, rustix::io::FdFlags::empty()).unwrap();
    let fd = socket.as_fd().as_raw_fd().to_string();
    let script = r#"fd=$1; pid=$2; shift 2
[ "$fd" = 3 ] || eval "exec 3<&$fd $fd<&-"
export LISTEN_FDS=1 LISTEN_PID="${pid:-$$}"
exec "$@""#;
    // bash, not sh: dash refuses descriptors above 9 in a redirection ("Bad fd
    // number"), and the test process, running tests on several threads, often has
    // the socket at 10 or more.
    std::process::Command::new("bash")
        .args([
            "-c",
            script,
            "bash",
            &fd,
            pid.unwrap_or_default(),
            BIN,
            "serve",
        ])
        .args(["--create-host-key", "--host-key"])
        .arg(home.join("host_key"))
        .arg("--authorized-keys")
        .arg(home.join("authorized_keys"))
        .args(args)
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// A server process, killed when dropped (a failing test must not leave it
/// running, holding the test's output pipes), with its log's pipe kept open.
struct Server {
    child: Child,
    _stderr: Option<BufReader<std::process::ChildStderr>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The server's log up to its last `listening on` line: `want` of them.
fn listening_lines(mut child: Child, want: usize) -> (Server, Vec<String>, String) {
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let (mut listening, mut log) = (Vec::new(), String::new());
    // Bounded: the listening lines are among the first few.
    for _ in 0..50 {
        let mut line = String::new();
        if stderr.read_line(&mut line).unwrap_or(0) == 0 {
            break;
        }
        log.push_str(&line);
        if let Some(rest) = line.split("listening on ").nth(1) {
            listening.push(rest.split_whitespace().next().unwrap().to_owned());
            if listening.len() == want {
                break;
            }
        }
    }
    let server = Server {
        child,
        _stderr: Some(stderr),
    };
    (server, listening, log)
}

#[test]
fn serve_takes_the_listening_socket_systemd_passes() {
    let home = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let child = serve_with_socket(home.path(), &listener, None, &[]);
    let (server, listening, log) = listening_lines(child, 1);
    assert_eq!(listening, std::slice::from_ref(&addr), "{log}");
    assert!(
        log.contains(&format!("serving socket 3 passed by systemd ({addr})")),
        "{log}"
    );
    // It answers there (a handshake the test does not finish is enough: the server
    // sends nothing before message 1, so connect and see it accepted).
    let fingerprint = log.split("host_key=").nth(1).unwrap().trim().to_owned();
    let out = noise_echo(home.path())
        .args(["keygen", "-C", "c", "-f"])
        .arg(home.path().join("client"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let out = noise_echo(home.path())
        .args(["authorize", "--authorized-keys"])
        .arg(home.path().join("authorized_keys"))
        .arg(home.path().join("client.pub"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = noise_echo(home.path())
        .arg("connect")
        .arg(&addr)
        .arg("-i")
        .arg(home.path().join("client"))
        .arg("--known-hosts")
        .arg(home.path().join("known_hosts"))
        .args(["--expect-fingerprint", &fingerprint, "hello"])
        .output()
        .unwrap();
    assert_eq!(text(&out.stdout), "HELLO\n", "{}", text(&out.stderr));
    drop(server);
}

#[test]
fn sockets_meant_for_another_process_are_left_alone() {
    let home = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let passed = listener.local_addr().unwrap().to_string();
    // LISTEN_PID of process 1: not ours. Only --listen is served.
    let child = serve_with_socket(
        home.path(),
        &listener,
        Some("1"),
        &["--listen", "127.0.0.1:0", "-v"],
    );
    let (server, listening, log) = listening_lines(child, 1);
    assert_eq!(listening.len(), 1, "{log}");
    assert_ne!(listening[0], passed, "{log}");
    assert!(
        log.contains("LISTEN_FDS is set for process \"1\", not this one: ignored"),
        "{log}"
    );
    drop(server);
}

#[test]
fn a_passed_socket_that_is_not_listening_is_refused() {
    let home = tempfile::tempdir().unwrap();
    // Bound, never listening: what Accept=yes would hand over is a connection, and
    // this is as wrong for the accept loop.
    let socket = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let child = serve_with_socket(home.path(), &socket, None, &[]);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("descriptor 3 passed by systemd is not a TCP socket"),
        "{stderr}"
    );
    assert!(
        stderr.contains("use ListenStream= with an address or port"),
        "{stderr}"
    );

    // A TCP socket, but a connection, not a listener.
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let connection = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let child = serve_with_socket(home.path(), &connection, None, &[]);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("descriptor 3 passed by systemd is a TCP socket that is not listening: set Accept=no (the default) in the .socket unit"),
        "{stderr}"
    );
}
