//! Two `serve` processes sharing one host key (and, in the second test, its host
//! certificate, trusted by clients through an `@cert-authority` line alone) behind
//! a real HAProxy (the Debian package; `.ci/run` installs it) on loopback, `mode
//! tcp` with `send-proxy-v2` and health checks, driven through the binaries: the
//! client is served through the balancer; a client bound to 127.0.0.5 is logged as
//! 127.0.0.5 and matched by `from="127.0.0.5"`, a `from="127.0.0.6"` key is denied
//! there; a flood of failures from one address is penalised on both servers without
//! penalising another address behind the same balancer; with one server killed,
//! clients carry on through the other; HAProxy's health checks never count as
//! failures.
//!
//! Without haproxy installed the test is skipped with a message, except under
//! `CI=true`, where it fails.

mod common;

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Command, Output, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use common::{noise_echo, start_serve, text};

/// The longest any single wait may take before it counts as a failure: a guard
/// against a hang, far above the expected time.
const WAIT: Duration = Duration::from_secs(30);

/// HAProxy's binary, or `None` (after a message) where it is not installed.
fn haproxy() -> Option<PathBuf> {
    let found = ["/usr/sbin/haproxy", "/usr/bin/haproxy"]
        .into_iter()
        .map(PathBuf::from)
        .find(|path| path.exists())
        .or_else(|| {
            Command::new("haproxy")
                .arg("-v")
                .output()
                .ok()
                .map(|_| PathBuf::from("haproxy"))
        });
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "haproxy must be installed in CI (.ci/run installs the Debian package)"
        );
        eprintln!("haproxy not installed: skipping the test behind a real load balancer");
    }
    found
}

/// The lines read so far, and whether the stream has ended.
type Lines = Mutex<(Vec<String>, bool)>;

/// A child's stderr, read line by line on a thread, so a test can wait for a line.
struct Log {
    /// The lines, and the condition woken by each new one or the end.
    lines: Arc<(Lines, Condvar)>,
}

impl Log {
    fn follow(stderr: impl std::io::Read + Send + 'static, already: &str) -> Self {
        let lines = Arc::new((
            Mutex::new((
                already.lines().map(str::to_owned).collect::<Vec<_>>(),
                false,
            )),
            Condvar::new(),
        ));
        let shared = Arc::clone(&lines);
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stderr);
            loop {
                let mut line = String::new();
                let read = reader.read_line(&mut line).unwrap_or(0);
                let (state, changed) = &*shared;
                let mut state = state.lock().unwrap();
                if read == 0 {
                    state.1 = true;
                    changed.notify_all();
                    return;
                }
                state.0.push(line.trim_end().to_owned());
                changed.notify_all();
            }
        });
        Self { lines }
    }

    /// Waits (bounded) until `count` lines match `wanted`; panics with the log if not.
    fn wait_for(&self, what: &str, count: usize, wanted: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + WAIT;
        let (state, changed) = &*self.lines;
        let mut state = state.lock().unwrap();
        loop {
            if state.0.iter().filter(|line| wanted(line)).count() >= count {
                return;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || state.1 {
                panic!("{what}: not in the log:\n{}", state.0.join("\n"));
            }
            state = changed.wait_timeout(state, left).unwrap().0;
        }
    }

    /// The lines matching `wanted` so far.
    fn matching(&self, wanted: impl Fn(&str) -> bool) -> Vec<String> {
        let state = self.lines.0.lock().unwrap();
        state
            .0
            .iter()
            .filter(|line| wanted(line))
            .cloned()
            .collect()
    }
}

/// A `serve` behind the balancer, with its log followed.
struct Backend {
    child: Child,
    addr: SocketAddr,
    log: Log,
}

fn start_backend(home: &Path) -> (Backend, String) {
    let started = start_serve(
        home,
        &home.join("authorized_keys"),
        &[
            "--proxy-protocol",
            "127.0.0.1",
            "--penalty-threshold",
            "3",
            // The health checks' lines are debug ones.
            "-v",
        ],
    );
    let fingerprint = started
        .log
        .split("host_key=")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    let stderr: ChildStderr = started.stderr.into_inner();
    let backend = Backend {
        child: started.child,
        addr: started.addr,
        log: Log::follow(stderr, &started.log),
    };
    (backend, fingerprint)
}

impl Drop for Backend {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// HAProxy in the foreground, killed when dropped.
struct Balancer {
    child: Child,
    addr: SocketAddr,
    /// HAProxy's stderr, drained so that it never blocks on a full pipe.
    _log: Log,
}

impl Drop for Balancer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free loopback port: bound to 127.0.0.1:0 and released for HAProxy to take.
fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_balancer(haproxy: &Path, dir: &Path, backends: &[&Backend]) -> Balancer {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
    let mut config = format!(
        "global\n  maxconn 256\n\
         defaults\n  mode tcp\n  timeout connect 2s\n  timeout client 30s\n  timeout server 30s\n  timeout check 2s\n\
         \x20 retries 3\n  option redispatch 1\n\
         frontend front\n  bind {addr}\n  default_backend servers\n\
         backend servers\n  balance roundrobin\n"
    );
    for (index, backend) in backends.iter().enumerate() {
        // send-proxy-v2: a v2 header on every connection; check: a health check
        // every 100 ms, which sends the LOCAL command.
        config.push_str(&format!(
            "  server s{index} {} send-proxy-v2 check inter 100ms fall 1 rise 1\n",
            backend.addr
        ));
    }
    let path = dir.join("haproxy.cfg");
    std::fs::write(&path, config).unwrap();
    let mut child = Command::new(haproxy)
        .arg("-db")
        .arg("-f")
        .arg(&path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = Log::follow(child.stderr.take().unwrap(), "");
    // Ready once its health checks reach the servers (the caller waits for them):
    // HAProxy binds its frontend before it starts checking. Not by connecting to
    // the frontend, which would relay the probe to a server as a client that
    // connects and leaves: a failed handshake, rightly.
    Balancer {
        child,
        addr,
        _log: log,
    }
}

/// A key pair `name` in `dir`; its public line.
fn keygen(dir: &Path, name: &str) -> String {
    let out = noise_echo(dir)
        .args(["keygen", "-C", name, "-f"])
        .arg(dir.join(name))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    std::fs::read_to_string(dir.join(format!("{name}.pub")))
        .unwrap()
        .trim()
        .to_owned()
}

/// `connect` through the balancer as `key` with `args`, sending `hello`.
fn connect_with(dir: &Path, balancer: &Balancer, key: &str, args: &[&str]) -> Output {
    let child = noise_echo(dir)
        .arg("connect")
        .arg(balancer.addr.to_string())
        .arg("-i")
        .arg(dir.join(key))
        .arg("--known-hosts")
        .arg(dir.join("known_hosts"))
        .args(args)
        .arg("hello")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    common::served::finish(child, "connect")
}

/// `connect` through the balancer as `key`, from `from`, expecting `fingerprint`.
fn connect(dir: &Path, balancer: &Balancer, fingerprint: &str, key: &str, from: &str) -> Output {
    connect_with(
        dir,
        balancer,
        key,
        &["--expect-fingerprint", fingerprint, "-b", from],
    )
}

fn served(output: &Output) -> bool {
    output.status.success() && text(&output.stdout) == "HELLO\n"
}

#[test]
fn two_servers_behind_haproxy_see_the_real_clients() {
    let Some(haproxy) = haproxy() else { return };
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let ann = keygen(home, "ann");
    let bob = keygen(home, "bob");
    let carl = keygen(home, "carl");
    std::fs::write(
        home.join("authorized_keys"),
        format!("from=\"127.0.0.5\" {ann}\nfrom=\"127.0.0.6\" {bob}\n{carl}\n"),
    )
    .unwrap();
    // One host key for both (the first creates it): clients trust the service,
    // whichever server answers.
    let (first, fingerprint) = start_backend(home);
    let (second, same) = start_backend(home);
    assert_eq!(fingerprint, same);
    let balancer = start_balancer(&haproxy, home, &[&first, &second]);
    let is_check = |line: &str| line.contains("PROXY protocol LOCAL (a health check)");
    for backend in [&first, &second] {
        backend.log.wait_for("health checks", 2, is_check);
    }

    // Served through the balancer, by both servers in turn.
    for _ in 0..2 {
        let output = connect(home, &balancer, &fingerprint, "carl", "127.0.0.1");
        assert!(served(&output), "{}", text(&output.stderr));
    }
    // ann from 127.0.0.5: logged as 127.0.0.5, allowed by from="127.0.0.5".
    let output = connect(home, &balancer, &fingerprint, "ann", "127.0.0.5");
    assert!(served(&output), "{}", text(&output.stderr));
    let closed_for = |peer: &'static str| {
        // The line names the balancer too, as via=.
        move |line: &str| {
            line.contains(&format!("peer={peer}:"))
                && line.contains("via=127.0.0.1:")
                && line.contains("closed")
        }
    };
    let logged = |peer: &'static str| {
        first.log.matching(closed_for(peer)).len() + second.log.matching(closed_for(peer)).len()
    };
    let deadline = Instant::now() + WAIT;
    while logged("127.0.0.5") == 0 {
        assert!(Instant::now() < deadline, "no line for 127.0.0.5");
        std::thread::sleep(Duration::from_millis(10));
    }
    // bob's key is for 127.0.0.6: from 127.0.0.5 he is denied.
    let output = connect(home, &balancer, &fingerprint, "bob", "127.0.0.5");
    assert!(!output.status.success());
    let stderr = text(&output.stderr);
    assert!(stderr.contains("is not allowed from 127.0.0.5"), "{stderr}");

    // A flood of denied handshakes from 127.0.0.9, spread over both servers:
    // each penalises 127.0.0.9 (threshold 3), and nobody else.
    for _ in 0..8 {
        let output = connect(home, &balancer, &fingerprint, "bob", "127.0.0.9");
        assert!(!output.status.success());
    }
    for backend in [&first, &second] {
        backend.log.wait_for("127.0.0.9 penalised", 1, |line| {
            line.contains("refusing 127.0.0.9 for")
        });
    }
    // Round robin: two in a row reach both servers.
    for _ in 0..2 {
        let output = connect(home, &balancer, &fingerprint, "carl", "127.0.0.9");
        assert!(
            !output.status.success(),
            "127.0.0.9 is refused on both servers"
        );
    }
    // Another client behind the same balancer is served by both.
    for _ in 0..2 {
        let output = connect(home, &balancer, &fingerprint, "carl", "127.0.0.7");
        assert!(served(&output), "{}", text(&output.stderr));
    }

    // One server killed: the clients carry on through the other.
    let mut first = first;
    first.child.kill().unwrap();
    first.child.wait().unwrap();
    for _ in 0..4 {
        let output = connect(home, &balancer, &fingerprint, "carl", "127.0.0.8");
        assert!(served(&output), "{}", text(&output.stderr));
    }
    second.log.wait_for("health checks go on", 4, is_check);

    // The health checks never counted against anyone: no header errors, no
    // failure or penalty for the balancer's address.
    for backend in [&first, &second] {
        let against_proxy = backend.log.matching(|line| {
            line.contains("from proxies")
                || line.contains("refusing 127.0.0.1 ")
                || (line.contains("peer=127.0.0.1:") && line.contains("failed"))
        });
        assert!(against_proxy.is_empty(), "{against_proxy:?}");
        let penalised = backend.log.matching(|line| line.contains("refusing "));
        assert!(
            penalised
                .iter()
                .all(|line| line.contains("refusing 127.0.0.9 for")),
            "{penalised:?}"
        );
    }
}

/// Writes `bytes` to a new file created with `mode`: the host key must never be
/// readable by others, even for a moment.
fn write_with_mode(path: &Path, bytes: &[u8], mode: u32) {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .unwrap();
    file.write_all(bytes).unwrap();
}

/// `connect` through the balancer trusting only what known_hosts says: no
/// `--expect-fingerprint`, and stdin not a terminal, so an unknown host key would
/// be refused (nobody to ask) rather than trusted. `-v`: the log says why it trusted.
fn connect_by_known_hosts(dir: &Path, balancer: &Balancer, key: &str) -> Output {
    connect_with(dir, balancer, key, &["-v"])
}

#[test]
fn two_servers_sharing_a_host_certificate_are_trusted_through_the_balancer() {
    let Some(haproxy) = haproxy() else { return };
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let dana = keygen(home, "dana");
    std::fs::write(home.join("authorized_keys"), format!("{dana}\n")).unwrap();
    // The fleet's host key and its certificate (keys/certs/host-cert.pub: principals
    // localhost and 127.0.0.1, signed by keys/certs/host_ca), beside the key where
    // `serve` finds it as sshd finds HostCertificate.
    let key = std::fs::read(common::fixture("host_ed25519_key")).unwrap();
    write_with_mode(&home.join("host_key"), &key, 0o600);
    std::fs::copy(
        common::fixture("host_ed25519_key.pub"),
        home.join("host_key.pub"),
    )
    .unwrap();
    std::fs::copy(
        common::fixture("certs/host-cert.pub"),
        home.join("host_key-cert.pub"),
    )
    .unwrap();
    // The client knows no host key: only the host CA, for this address's names.
    let ca = std::fs::read_to_string(common::fixture("certs/host_ca.pub")).unwrap();
    let known_hosts = format!("@cert-authority 127.0.0.1,[127.0.0.1]:* {}\n", ca.trim());
    std::fs::write(home.join("known_hosts"), &known_hosts).unwrap();

    let (first, _) = start_backend(home);
    let (second, _) = start_backend(home);
    for backend in [&first, &second] {
        backend
            .log
            .wait_for("the certificate named at start", 1, |line| {
                line.contains("listening on") && line.contains("host-localhost")
            });
    }
    let balancer = start_balancer(&haproxy, home, &[&first, &second]);
    let is_check = |line: &str| line.contains("PROXY protocol LOCAL (a health check)");
    for backend in [&first, &second] {
        backend.log.wait_for("health checks", 2, is_check);
    }

    // Round robin: four connections reach both servers, each trusted by its
    // certificate without a prompt.
    for round in 0..4 {
        let output = connect_by_known_hosts(home, &balancer, "dana");
        assert!(served(&output), "round {round}: {}", text(&output.stderr));
        let verbose = text(&output.stderr);
        assert!(
            verbose.contains(
                "host certificate for principal \"127.0.0.1\" trusted by the @cert-authority line"
            ),
            "{verbose}"
        );
    }
    for backend in [&first, &second] {
        backend.log.wait_for("a session served", 1, |line| {
            line.contains("peer=127.0.0.1:") && line.contains("closed")
        });
    }
    // One server killed: the other answers, with the same certificate.
    let mut first = first;
    first.child.kill().unwrap();
    first.child.wait().unwrap();
    for round in 0..2 {
        let output = connect_by_known_hosts(home, &balancer, "dana");
        assert!(
            served(&output),
            "after the kill, round {round}: {}",
            text(&output.stderr)
        );
    }
    // Trusted by the CA: nothing was added to known_hosts.
    assert_eq!(
        std::fs::read_to_string(home.join("known_hosts")).unwrap(),
        known_hosts
    );
}
