//! How `connect` establishes a connection and decides to trust a server, through
//! the binary as a user meets it: a pin checked on every connection, the first-use
//! question (asked through `SSH_ASKPASS`, as ssh can) surviving the server's
//! handshake deadline and listing the key's other names, refusals before the
//! handshake, timeouts, other protocols on the port, and error messages that say
//! each cause once.

mod common;

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use common::{noise_echo, text};

const SUCCESS: i32 = 0;
const CONNECTION_FAILED: i32 = 3;
const HOST_KEY_NOT_TRUSTED: i32 = 4;
const PERMISSION_DENIED: i32 = 5;
const PROTOCOL_ERROR: i32 = 6;

/// A safety bound on waiting for a log line, so a broken server fails the test
/// instead of hanging it; never reached when things work.
const LOG_WAIT: Duration = Duration::from_secs(60);

fn status(output: &Output) -> i32 {
    output.status.code().unwrap_or(-1)
}

/// A `noise-echo serve` child on 127.0.0.1:0 with an authorized client key, its
/// log read line by line on a thread.
struct Served {
    child: Child,
    port: u16,
    fingerprint: String,
    dir: tempfile::TempDir,
    log: mpsc::Receiver<String>,
}

impl Served {
    fn start(extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path();
        for name in ["client", "stranger"] {
            let out = noise_echo(home)
                .args(["keygen", "-C", name, "-f"])
                .arg(home.join(name))
                .output()
                .unwrap();
            assert!(out.status.success(), "{}", text(&out.stderr));
        }
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
            .args(extra)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = BufReader::new(child.stderr.take().unwrap());
        let (sender, log) = mpsc::channel();
        thread::spawn(move || {
            for line in stderr.lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        let mut served = Self {
            child,
            port: 0,
            fingerprint: String::new(),
            dir,
            log,
        };
        let line = served.wait_for_log("listening on 127.0.0.1:");
        let rest = line.split("listening on 127.0.0.1:").nth(1).unwrap();
        served.port = rest.split_whitespace().next().unwrap().parse().unwrap();
        served.fingerprint = line.split("host_key=").nth(1).unwrap().trim().to_owned();
        served
    }

    /// Reads the log up to the first line containing `needle`.
    fn wait_for_log(&mut self, needle: &str) -> String {
        loop {
            match self.log.recv_timeout(LOG_WAIT) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(error) => panic!("no log line with {needle:?}: {error}"),
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

    /// `noise-echo connect ADDR -i KEY --known-hosts known_hosts EXTRA...`
    fn connect_as(&self, key: &str, addr: &str, extra: &[&str]) -> Command {
        let mut command = noise_echo(self.home());
        command
            .arg("connect")
            .arg(addr)
            .arg("-i")
            .arg(self.home().join(key))
            .arg("--known-hosts")
            .arg(self.known_hosts())
            .args(extra);
        command
    }

    fn connect(&self, extra: &[&str]) -> Command {
        self.connect_as("client", &self.addr(), extra)
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An `SSH_ASKPASS` program in `dir`: it records each question it is asked, waits
/// (bounded) until the file `go` exists, then prints the content of `answer`.
fn askpass(dir: &Path, answer: &str) -> PathBuf {
    let script = dir.join("askpass");
    fs::write(dir.join("answer"), format!("{answer}\n")).unwrap();
    fs::write(
        &script,
        format!(
            "#!/bin/sh\n\
             d='{dir}'\n\
             n=$(ls \"$d\" | grep -c '^question')\n\
             printf '%s' \"$1\" > \"$d/question$n\"\n\
             i=0\n\
             while [ ! -e \"$d/go\" ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done\n\
             cat \"$d/answer\"\n",
            dir = dir.display()
        ),
    )
    .unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    script
}

/// The questions the askpass program was asked, in order.
fn questions(dir: &Path) -> Vec<String> {
    (0..10)
        .map(|n| dir.join(format!("question{n}")))
        .take_while(|path| path.exists())
        .map(|path| fs::read_to_string(path).unwrap())
        .collect()
}

fn with_askpass(command: &mut Command, script: &Path) {
    command
        .env("SSH_ASKPASS", script)
        .env("SSH_ASKPASS_REQUIRE", "force");
}

fn known_hosts_lines(path: &Path) -> Vec<String> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// A fingerprint of a key nobody uses.
fn other_fingerprint(home: &Path) -> String {
    let out = noise_echo(home)
        .args(["keygen", "-f"])
        .arg(home.join("unused"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = noise_echo(home)
        .arg("fingerprint")
        .arg(home.join("unused.pub"))
        .output()
        .unwrap();
    text(&out.stdout)
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_owned()
}

#[test]
fn a_pin_is_checked_also_when_the_host_is_already_known() {
    let served = Served::start(&[]);
    let out = served
        .connect(&["--accept-new-host", "hi"])
        .output()
        .unwrap();
    assert_eq!(status(&out), SUCCESS, "{}", text(&out.stderr));
    assert_eq!(known_hosts_lines(&served.known_hosts()).len(), 1);

    let wrong = other_fingerprint(served.home());
    let out = served
        .connect(&["--expect-fingerprint", &wrong, "hi"])
        .output()
        .unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(status(&out), HOST_KEY_NOT_TRUSTED, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "is {}, not the expected {wrong} (--expect-fingerprint): refusing to connect",
            served.fingerprint
        )),
        "the refusal names the presented key and the pin: {stderr}"
    );
    assert!(
        out.stdout.is_empty(),
        "nothing was sent: {}",
        text(&out.stdout)
    );

    let out = served
        .connect(&["--expect-fingerprint", &served.fingerprint, "hi"])
        .output()
        .unwrap();
    assert_eq!(status(&out), SUCCESS, "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "HI\n");
    assert_eq!(
        known_hosts_lines(&served.known_hosts()).len(),
        1,
        "a known host is not added again"
    );
}

/// A relay between the client and the server that, once the server has closed its
/// side, closes the client's side and then creates `go`: the client's answer comes
/// strictly after the server hung up. It relays `connections` connections.
fn relay(server: String, go: PathBuf, connections: usize) -> (u16, thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = thread::spawn(move || {
        for _ in 0..connections {
            let (client, _) = listener.accept().unwrap();
            let upstream = TcpStream::connect(&server).unwrap();
            let (mut client_in, mut upstream_out) =
                (client.try_clone().unwrap(), upstream.try_clone().unwrap());
            let up = thread::spawn(move || {
                let _ = std::io::copy(&mut client_in, &mut upstream_out);
                let _ = upstream_out.shutdown(Shutdown::Write);
            });
            let (mut upstream_in, mut client_out) = (upstream, client);
            let _ = std::io::copy(&mut upstream_in, &mut client_out);
            // The server closed: pass that on before the answer may come.
            let _ = client_out.shutdown(Shutdown::Both);
            fs::write(&go, "").unwrap();
            let _ = up.join();
        }
    });
    (port, handle)
}

#[test]
fn an_answer_given_after_the_servers_handshake_deadline_is_not_lost() {
    let mut served = Served::start(&["--handshake-timeout", "1"]);
    let ask_dir = tempfile::tempdir().unwrap();
    let script = askpass(ask_dir.path(), "yes");
    let (port, relayed) = relay(served.addr(), ask_dir.path().join("go"), 2);
    let mut command = served.connect_as("client", &format!("127.0.0.1:{port}"), &["hello"]);
    with_askpass(&mut command, &script);
    let out = command.output().unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(status(&out), SUCCESS, "{stderr}");
    assert_eq!(text(&out.stdout), "HELLO\n", "the request is answered");
    assert_eq!(questions(ask_dir.path()).len(), 1, "asked once: {stderr}");
    // Said once, as ssh says it, and nothing about the reconnection.
    assert_eq!(
        stderr,
        format!("Warning: Permanently added '[127.0.0.1]:{port}' (ED25519) to the list of known hosts.\n")
    );
    let lines = known_hosts_lines(&served.known_hosts());
    assert_eq!(lines.len(), 1, "written once: {lines:?}");
    assert!(lines[0].starts_with(&format!("[127.0.0.1]:{port} ssh-ed25519 ")));
    served.wait_for_log("handshake not completed within");
    relayed.join().unwrap();
}

#[test]
fn the_question_lists_the_other_names_of_the_same_key_as_ssh() {
    let served = Served::start(&[]);
    let host_pub = fs::read_to_string(served.home().join("host_key.pub")).unwrap();
    let key = host_pub
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ");
    // The same key under a plain name and a hashed one (made by ssh-keygen -H from
    // another name), and another key that must not be listed.
    let other_key = fs::read_to_string(served.home().join("client.pub")).unwrap();
    fs::write(
        served.known_hosts(),
        format!(
            "# servers\nbuild1,10.0.0.7 {key}\n|1|r89AJQGky7SdJ41dDYxHXrnnwes=|A8cgmXKap9DDApwbgxv6QSxSd0g= {key}\nbuild2 {other_key}"
        ),
    )
    .unwrap();
    let ask_dir = tempfile::tempdir().unwrap();
    let script = askpass(ask_dir.path(), "no");
    fs::write(ask_dir.path().join("go"), "").unwrap();
    let mut command = served.connect(&["hi"]);
    with_askpass(&mut command, &script);
    let out = command.output().unwrap();
    assert_eq!(
        status(&out),
        HOST_KEY_NOT_TRUSTED,
        "declined: {}",
        text(&out.stderr)
    );
    let kh = served.known_hosts();
    assert_eq!(
        questions(ask_dir.path()),
        vec![format!(
            "The authenticity of host '[127.0.0.1]:{port}' can't be established.\n\
             ED25519 key fingerprint is {fingerprint}.\n\
             This host key is known by the following other names/addresses:\n    \
             {kh}:2: build1,10.0.0.7\n    \
             {kh}:3: [hashed name]\n\
             Are you sure you want to continue connecting (yes/no/[fingerprint])? ",
            port = served.port,
            fingerprint = served.fingerprint,
            kh = kh.display(),
        )]
    );
    assert_eq!(
        known_hosts_lines(&kh).len(),
        4,
        "nothing added when declined"
    );

    // Without other names, the question says so; typing the fingerprint accepts.
    fs::remove_file(&kh).unwrap();
    fs::write(ask_dir.path().join("answer"), &served.fingerprint).unwrap();
    let mut command = served.connect(&["hi"]);
    with_askpass(&mut command, &script);
    let out = command.output().unwrap();
    assert_eq!(status(&out), SUCCESS, "{}", text(&out.stderr));
    let asked = questions(ask_dir.path());
    assert!(
        asked[1].contains("\nThis key is not known by any other names.\nAre you sure"),
        "{}",
        asked[1]
    );
}

/// Holds the server's only connection slot with an open session until dropped.
struct HeldSession(Child);

impl HeldSession {
    fn open(served: &Served) -> Self {
        let mut child = served
            .connect(&["--accept-new-host"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        child.stdin.as_mut().unwrap().write_all(b"held\n").unwrap();
        // The reply proves the session is established and counted.
        let mut reply = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut reply)
            .unwrap();
        assert_eq!(reply, "HELD\n");
        Self(child)
    }
}

impl Drop for HeldSession {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn assert_refused_before_the_handshake(out: &Output, addr: &str) {
    let stderr = text(&out.stderr);
    assert_eq!(status(out), CONNECTION_FAILED, "{stderr}");
    assert_eq!(
        stderr,
        format!(
            "error: the server at {addr} closed the connection before answering the protocol 2 offer: it may speak only protocol 1 (retry with: connect --protocol 1), or be busy or refusing this address after failed attempts (try again later)\n"
        )
    );
}

#[test]
fn a_server_at_its_connection_cap_is_reported_as_busy_with_status_3() {
    let served = Served::start(&["--max-connections", "1"]);
    let held = HeldSession::open(&served);
    let out = served.connect(&["hi"]).output().unwrap();
    assert_refused_before_the_handshake(&out, &served.addr());
    drop(held);
}

#[test]
fn an_address_serving_a_penalty_is_told_so_with_status_3() {
    let mut served = Served::start(&["--penalty-threshold", "1"]);
    // One failure: a key the server does not accept.
    let out = served
        .connect_as("stranger", &served.addr(), &["--accept-new-host", "hi"])
        .output()
        .unwrap();
    assert_eq!(status(&out), PERMISSION_DENIED, "{}", text(&out.stderr));
    // Logged once the penalty is recorded.
    served.wait_for_log("denied:");
    let out = served.connect(&["hi"]).output().unwrap();
    assert_refused_before_the_handshake(&out, &served.addr());
}

/// A loopback listener that runs `serve` on each of `connections` connections.
fn fake_server(
    connections: usize,
    serve: impl Fn(TcpStream) + Send + 'static,
) -> (String, thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let handle = thread::spawn(move || {
        for _ in 0..connections {
            let (stream, _) = listener.accept().unwrap();
            serve(stream);
        }
    });
    (addr, handle)
}

/// Reads until the client closes (bounded by the client's own timeouts).
fn drain(mut stream: TcpStream) {
    let mut sink = [0u8; 256];
    while matches!(stream.read(&mut sink), Ok(n) if n > 0) {}
}

fn client_home() -> tempfile::TempDir {
    let home = tempfile::tempdir().unwrap();
    let out = noise_echo(home.path())
        .args(["keygen", "-f"])
        .arg(home.path().join("id"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    home
}

fn connect_to(home: &Path, addr: &str, extra: &[&str]) -> Output {
    noise_echo(home)
        .arg("connect")
        .arg(addr)
        .arg("-i")
        .arg(home.join("id"))
        .arg("--known-hosts")
        .arg(home.join("known_hosts"))
        .args(extra)
        .arg("hi")
        .output()
        .unwrap()
}

#[test]
fn a_server_that_accepts_and_never_answers_times_out_with_status_3() {
    let (addr, silent) = fake_server(1, drain);
    let home = client_home();
    let out = connect_to(home.path(), &addr, &["--handshake-timeout", "1"]);
    assert_eq!(status(&out), CONNECTION_FAILED, "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stderr),
        format!("error: the handshake with {addr} timed out after 1 s\n")
    );
    silent.join().unwrap();
}

#[test]
fn connect_and_handshake_timeouts_are_flags_with_defaults() {
    let home = client_home();
    let out = noise_echo(home.path())
        .args(["connect", "--help"])
        .output()
        .unwrap();
    let help = text(&out.stdout);
    for expected in [
        "--connect-timeout <SECONDS>",
        "--handshake-timeout <SECONDS>",
        "[default: 10]",
        "[default: 20]",
    ] {
        assert!(help.contains(expected), "{expected}: {help}");
    }
}

#[test]
fn other_protocols_on_the_port_are_named_instead_of_a_frame_size() {
    let cases: [(&[u8], &str); 5] = [
        (
            b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n",
            "is not a noise-echo server: it sent 'SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3' (an SSH server's banner)",
        ),
        (
            b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n",
            "is not a noise-echo server: it sent 'HTTP/1.1 400 Bad Request' (an HTTP server)",
        ),
        (
            &[0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x32],
            "is not a noise-echo server: it answered with a TLS alert (a TLS port)",
        ),
        (
            &[0x16, 0x03, 0x03, 0x00, 0x7a, 0x02, 0x00],
            "is not a noise-echo server: it sent a TLS record (a TLS port)",
        ),
        (
            b"220 mail.example ESMTP \x1b[31mPostfix\r\n",
            "is not a noise-echo server: it sent '220 mail.example ESMTP \\u{1b}[31mPostfix'",
        ),
    ];
    let home = client_home();
    for (sent, expected) in cases {
        let (addr, fake) = fake_server(1, move |mut stream| {
            let _ = stream.write_all(sent);
            drain(stream);
        });
        let out = connect_to(home.path(), &addr, &[]);
        let stderr = text(&out.stderr);
        assert_eq!(status(&out), PROTOCOL_ERROR, "{stderr}");
        assert_eq!(stderr, format!("error: {addr} {expected}\n"));
        fake.join().unwrap();
    }
}

#[test]
fn a_refused_connection_names_its_cause_once() {
    let home = client_home();
    // Bind then drop a listener to get a port nobody listens on.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = connect_to(home.path(), &format!("127.0.0.1:{port}"), &[]);
    let stderr = text(&out.stderr);
    assert_eq!(status(&out), CONNECTION_FAILED, "{stderr}");
    assert_eq!(stderr.matches("os error").count(), 1, "{stderr}");
    assert!(
        stderr.starts_with(&format!("error: cannot connect to 127.0.0.1:{port}: ")),
        "{stderr}"
    );
}

/// The same through the library, for an embedder whose prompt is its own callback:
/// the server gives up on the first connection while the callback is still
/// deciding; `client::connect` saves the key, connects again and asks nothing more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_embedders_prompt_answered_after_the_servers_deadline_still_connects() {
    let dir = tempfile::tempdir().unwrap();
    answered_after_the_deadline(dir.path().join("known_hosts")).await;
    // ssh's `UserKnownHostsFile=/dev/null` keeps nothing: the reconnection trusts the
    // key the user accepted a moment ago instead of asking again.
    answered_after_the_deadline(PathBuf::from("/dev/null")).await;
    use std::os::unix::fs::FileTypeExt;
    assert!(fs::metadata("/dev/null")
        .unwrap()
        .file_type()
        .is_char_device());
}

async fn answered_after_the_deadline(known_hosts: PathBuf) {
    use noise_echo::client::{self, ClientConfig, Target, UnknownHost};
    use noise_echo::identity::Identity;
    use noise_echo::openssh::authorized_keys::{self, AuthorizedKeys};
    use noise_echo::server::{AllowList, Server, ServerConfig};
    use noise_echo::wire::{LocalIdentity, Reply};
    use std::sync::Arc;

    let host = Identity::generate("host");
    let me = Identity::generate("me");
    let line = authorized_keys::append_key(&[], &me.public_key(), me.comment());
    let keys = Arc::new(AuthorizedKeys::parse(&line, "(in memory)".as_ref()));
    let mut config =
        ServerConfig::with_allow_list(Arc::new(LocalIdentity::new(&host)), AllowList::Keys(keys));
    config.handshake_timeout = Duration::from_secs(1);
    let server = Server::new(config).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (closed, first_closed) = mpsc::channel::<()>();
    let serving = tokio::spawn(async move {
        for connection in 0..2 {
            let (stream, peer) = listener.accept().await.unwrap();
            // Returns once the server has given up (first) or the client is done;
            // the stream is closed by then.
            server.serve_connection(stream, peer).await;
            if connection == 0 {
                closed.send(()).unwrap();
            }
        }
    });

    let asked = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = Arc::clone(&asked);
    let prompt = move |unknown: &UnknownHost| {
        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        assert!(unknown.other_names.is_empty());
        // Answer only once the server has closed the connection.
        first_closed
            .recv_timeout(LOG_WAIT)
            .map_err(std::io::Error::other)?;
        Ok(true)
    };
    let config = ClientConfig::known_hosts(LocalIdentity::new(&me), known_hosts.clone())
        .prompt(Some(Box::new(prompt)));
    let target: Target = format!("127.0.0.1:{port}").parse().unwrap();
    let mut connection = client::connect(&target, config).await.unwrap();
    assert_eq!(
        connection.newly_known_as(),
        Some(format!("[127.0.0.1]:{port}").as_str())
    );
    assert_eq!(connection.server_key(), &host.public_key());
    assert_eq!(
        connection.request(b"still here").await.unwrap(),
        Reply::Response(b"STILL HERE".to_vec())
    );
    assert_eq!(asked.load(std::sync::atomic::Ordering::SeqCst), 1);
    let kept = if known_hosts == Path::new("/dev/null") {
        0
    } else {
        1
    };
    assert_eq!(known_hosts_lines(&known_hosts).len(), kept);
    let (_, mut sender) = connection.into_halves();
    sender.shutdown().await.unwrap();
    serving.await.unwrap();
}

/// A loopback listener whose accept queue is full and never drained: the kernel
/// drops further SYNs, so a connection attempt hangs as against a black-holed
/// address, which loopback cannot otherwise show.
struct BlackHole {
    /// Where to connect.
    addr: String,
    /// The connections filling the queue, kept open so it stays full.
    _held: Vec<TcpStream>,
    /// The listener, never accepting (tokio's, for a backlog of 0).
    _listener: tokio::net::TcpListener,
    /// The reactor the listener is registered with, dropped last.
    _runtime: tokio::runtime::Runtime,
}

impl BlackHole {
    fn new() -> Self {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .unwrap();
        let listener = runtime.block_on(async {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
            socket.listen(0).unwrap()
        });
        let addr = listener.local_addr().unwrap();
        // Fill the queue: the connections it holds complete, the first one it has
        // no room for does not. Bounded: a backlog of 0 holds one or two.
        let mut held = Vec::new();
        for _ in 0..16 {
            match TcpStream::connect_timeout(&addr, Duration::from_millis(300)) {
                Ok(stream) => held.push(stream),
                Err(error) if error.kind() == std::io::ErrorKind::TimedOut => {
                    return Self {
                        addr: addr.to_string(),
                        _held: held,
                        _listener: listener,
                        _runtime: runtime,
                    }
                }
                Err(error) => panic!("filling the accept queue: {error}"),
            }
        }
        panic!("the accept queue of a backlog-0 listener never filled");
    }
}

#[test]
fn a_server_that_never_accepts_hits_the_connect_timeout_with_status_3() {
    let black_hole = BlackHole::new();
    let home = client_home();
    let out = connect_to(home.path(), &black_hole.addr, &["--connect-timeout", "1"]);
    assert_eq!(status(&out), CONNECTION_FAILED, "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stderr),
        format!(
            "error: connecting to {} timed out after 1 s\n",
            black_hole.addr
        )
    );
}

/// The reconnection trusts only the key the user accepted: if another server answers
/// it (a man in the middle who let the first connection time out), it is refused as
/// a changed key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reconnection_after_the_prompt_refuses_another_key() {
    use noise_echo::client::{self, ClientConfig, ClientError, HostKeyError, Target};
    use noise_echo::identity::Identity;
    use noise_echo::openssh::authorized_keys::{self, AuthorizedKeys};
    use noise_echo::server::{AllowList, Server, ServerConfig};
    use noise_echo::wire::LocalIdentity;
    use std::sync::Arc;

    let me = Identity::generate("me");
    let line = authorized_keys::append_key(&[], &me.public_key(), me.comment());
    let keys = Arc::new(AuthorizedKeys::parse(&line, "(in memory)".as_ref()));
    let server_as = |host: &Identity| {
        let mut config = ServerConfig::with_allow_list(
            Arc::new(LocalIdentity::new(host)),
            AllowList::Keys(Arc::clone(&keys)),
        );
        config.handshake_timeout = Duration::from_secs(1);
        Server::new(config).unwrap()
    };
    let (honest_key, impostor_key) = (Identity::generate("honest"), Identity::generate("impostor"));
    let (honest, impostor) = (server_as(&honest_key), server_as(&impostor_key));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (closed, first_closed) = mpsc::channel::<()>();
    let serving = tokio::spawn(async move {
        let (stream, peer) = listener.accept().await.unwrap();
        honest.serve_connection(stream, peer).await;
        closed.send(()).unwrap();
        let (stream, peer) = listener.accept().await.unwrap();
        impostor.serve_connection(stream, peer).await;
    });
    let dir = tempfile::tempdir().unwrap();
    let known_hosts = dir.path().join("known_hosts");
    let config = ClientConfig::known_hosts(LocalIdentity::new(&me), known_hosts.clone()).prompt(
        Some(Box::new(move |_: &client::UnknownHost| {
            first_closed
                .recv_timeout(LOG_WAIT)
                .map_err(std::io::Error::other)?;
            Ok(true)
        })),
    );
    let target: Target = format!("127.0.0.1:{port}").parse().unwrap();
    let error = client::connect(&target, config).await.unwrap_err();
    assert!(
        matches!(
            &error,
            ClientError::HostKeyNotTrusted(HostKeyError::Changed { expected, presented, line: 1, .. })
                if *expected == honest_key.public_key().fingerprint()
                    && *presented == impostor_key.public_key().fingerprint()
        ),
        "{error:?}"
    );
    // The accepted key stays; the impostor's was never written.
    assert_eq!(known_hosts_lines(&known_hosts).len(), 1);
    serving.await.unwrap();
}
