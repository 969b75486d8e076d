//! The allow-list file as a server operator meets it, through the real binary:
//! sshd's StrictModes (refused at start with the fix, an explicit opt-out, a sticky
//! directory such as /tmp), per-line problems logged at start and summarised, a
//! file rewritten in place while reloads run revoking nobody, and stale temporary
//! files of killed writers cleaned up by the next write.

mod common;

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, SystemTime};

use common::{noise_echo, text};

/// The longest any single wait in these tests may take; a bound, not a timing.
const WAIT: Duration = Duration::from_secs(30);
const FAILURE: i32 = 1;

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// A client key `name` (and `name.pub`) in `dir`, authorized in `keys`.
fn authorized_client(dir: &Path, keys: &Path, name: &str) -> PathBuf {
    let key = dir.join(name);
    let out = noise_echo(dir)
        .args(["keygen", "-C", name, "-f"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = noise_echo(dir)
        .args(["authorize", "--authorized-keys"])
        .arg(keys)
        .arg(key.with_extension("pub"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    key
}

/// `noise-echo serve` on 127.0.0.1:0 with its log lines on a channel.
struct Serve {
    child: Child,
    port: u16,
    /// Every log line up to "listening on".
    startup: Vec<String>,
    lines: mpsc::Receiver<String>,
}

/// Runs `serve` with `keys`; `Ok` once it listens, `Err(status, log)` if it exits.
fn serve(home: &Path, keys: &Path, extra: &[&str]) -> Result<Serve, (i32, String)> {
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
        .arg(keys)
        .args(extra)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (sender, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if sender.send(line).is_err() {
                return;
            }
        }
    });
    let mut startup = Vec::new();
    loop {
        let Ok(line) = lines.recv_timeout(WAIT) else {
            // The log ended (or stalled): the server exited, or is killed now.
            let _ = child.kill();
            let status = child.wait().unwrap().code().unwrap_or(-1);
            return Err((status, startup.join("\n")));
        };
        startup.push(line.clone());
        if let Some(rest) = line.split("listening on 127.0.0.1:").nth(1) {
            let port = rest.split_whitespace().next().unwrap().parse().unwrap();
            return Ok(Serve {
                child,
                port,
                startup,
                lines,
            });
        }
    }
}

impl Serve {
    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Waits for a log line containing `needle`; the lines before it are returned.
    fn wait_for_log(&self, needle: &str) -> Vec<String> {
        let mut seen = Vec::new();
        loop {
            let line = self
                .lines
                .recv_timeout(WAIT)
                .unwrap_or_else(|_| panic!("no log line with {needle:?} after {seen:#?}"));
            let found = line.contains(needle);
            seen.push(line);
            if found {
                return seen;
            }
        }
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `serve` must refuse to start, exit 1, and say `needles`.
fn refused_at_start(home: &Path, keys: &Path, extra: &[&str], needles: &[&str]) {
    match serve(home, keys, extra) {
        Ok(served) => panic!("serve started: {:#?}", served.startup),
        Err((status, log)) => {
            assert_eq!(status, FAILURE, "{log}");
            for needle in needles {
                assert!(log.contains(needle), "{needle:?} not in {log}");
            }
        }
    }
}

/// A client whose `connect` stays open, one request per line.
struct Session {
    child: Child,
    stdin: ChildStdin,
    /// Its stdout, line by line, from a reader thread (so a wait is bounded).
    replies: mpsc::Receiver<String>,
}

impl Session {
    fn open(home: &Path, addr: &str, key: &Path) -> Self {
        let mut child = noise_echo(home)
            .args(["connect", addr, "--accept-new-host", "-i"])
            .arg(key)
            .arg("--known-hosts")
            .arg(home.join("known_hosts"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout: ChildStdout = child.stdout.take().unwrap();
        let (sender, replies) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    return;
                }
            }
        });
        let mut session = Self {
            child,
            stdin,
            replies,
        };
        assert_eq!(session.ask("hello").as_deref(), Some("HELLO"));
        session
    }

    /// Sends one line; its reply, or `None` if the session has ended (or gave no
    /// reply within [`WAIT`]).
    fn ask(&mut self, line: &str) -> Option<String> {
        writeln!(self.stdin, "{line}").ok()?;
        self.stdin.flush().ok()?;
        self.replies.recv_timeout(WAIT).ok()
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------- StrictModes

#[test]
fn a_group_or_world_writable_allow_list_is_refused_at_start_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let keys = home.join("authorized_keys");
    authorized_client(home, &keys, "client");
    let shown = fs::canonicalize(&keys).unwrap().display().to_string();
    for (mode, who) in [(0o620, "its group"), (0o602, "others")] {
        chmod(&keys, mode);
        refused_at_start(
            home,
            &keys,
            &[],
            &[
                &format!("{shown} is writable by {who}"),
                &format!("chmod go-w {shown}"),
                "--strict-modes no",
            ],
        );
    }
    // The explicit opt-out, as sshd's `StrictModes no`.
    let served = serve(home, &keys, &["--strict-modes", "no"]).expect("the opt-out starts");
    drop(served);
    // And fixed as told, it starts.
    chmod(&keys, 0o600);
    serve(home, &keys, &[]).expect("a private allow-list starts");
}

#[test]
fn a_writable_directory_above_is_refused_unless_it_is_sticky_like_tmp() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let shared = home.join("shared");
    fs::create_dir(&shared).unwrap();
    let keys = shared.join("authorized_keys");
    authorized_client(home, &keys, "client");
    let shown = fs::canonicalize(&shared).unwrap().display().to_string();
    chmod(&shared, 0o770);
    refused_at_start(
        home,
        &keys,
        &[],
        &[
            &format!("the directory {shown} is writable by its group"),
            &format!("chmod go-w {shown}"),
            "chmod +t",
        ],
    );
    // Sticky, as /tmp: others may add entries but not replace ours.
    chmod(&shared, 0o1777);
    let served = serve(home, &keys, &[]).expect("a sticky directory is safe");
    let key = home.join("client");
    let mut session = Session::open(home, &served.addr(), &key);
    assert_eq!(session.ask("sticky").as_deref(), Some("STICKY"));
}

#[test]
fn an_allow_list_owned_by_another_user_is_refused() {
    if rustix_euid() != 0 {
        // Only root can give a file away; the unit tests cover the rule for others.
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let keys = home.join("authorized_keys");
    authorized_client(home, &keys, "client");
    std::os::unix::fs::chown(&keys, Some(65534), None).unwrap();
    refused_at_start(home, &keys, &[], &["belongs to uid 65534", "chown 0 "]);
}

/// The test process's effective uid, from /proc (the test needs no crate for it).
fn rustix_euid() -> u32 {
    let status = fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    line.split_whitespace().nth(2).unwrap().parse().unwrap()
}

#[test]
fn an_allow_list_made_writable_while_serving_denies_new_clients_until_fixed() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let keys = home.join("authorized_keys");
    let key = authorized_client(home, &keys, "client");
    let served = serve(home, &keys, &[]).unwrap();
    let mut open = Session::open(home, &served.addr(), &key);
    chmod(&keys, 0o666);
    let connect = |message: &str| {
        noise_echo(home)
            .args(["connect", &served.addr(), "--accept-new-host", "-i"])
            .arg(&key)
            .arg("--known-hosts")
            .arg(home.join("known_hosts"))
            .arg(message)
            .output()
            .unwrap()
    };
    let out = connect("denied");
    assert_eq!(out.status.code(), Some(5), "{}", text(&out.stderr));
    served.wait_for_log("chmod go-w");
    // A reload keeps the open session: an unsafe file is no proof of revocation.
    served.signal("HUP");
    assert_eq!(open.ask("kept").as_deref(), Some("KEPT"));
    chmod(&keys, 0o600);
    let out = connect("fixed");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "FIXED\n");
}

// ---------------------------------------------------------------- per-line problems

#[test]
fn per_line_problems_are_logged_at_start_and_a_huge_bad_file_logs_a_bounded_summary() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let keys = home.join("authorized_keys");
    authorized_client(home, &keys, "client");
    let bad_lines = 50_000;
    let mut contents = fs::read_to_string(&keys).unwrap();
    // A key line with an option noise-echo cannot enforce: not trusted.
    let other = home.join("restricted");
    let out = noise_echo(home)
        .args(["keygen", "-C", "restricted", "-f"])
        .arg(&other)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let restricted = fs::read_to_string(other.with_extension("pub")).unwrap();
    contents.push_str(&format!("command=\"/bin/true\" {restricted}"));
    for n in 0..bad_lines {
        contents.push_str(&format!("garbage line {n}\n"));
    }
    fs::write(&keys, contents).unwrap();
    chmod(&keys, 0o600);
    let served = serve(home, &keys, &[]).unwrap();
    // Before the first connection: the problems are in the startup log.
    let log = served.startup.join("\n");
    let shown = keys.display().to_string();
    assert!(log.contains(&format!("{shown}:2: ")), "{log}");
    assert!(log.contains("command"), "{log}");
    assert!(log.contains(&format!("{shown}:3: ")), "{log}");
    assert!(!log.contains(&format!("{shown}:12: ")), "{log}");
    assert!(
        log.contains(&format!(
            "... and {} more problems in {shown}",
            bad_lines + 1 - 10
        )),
        "{log}"
    );
    assert!(log.contains("loaded 1 key(s)"), "{log}");
    // Bounded: ten problem lines and the count, not 50,001.
    assert!(served.startup.len() < 20, "{} lines", served.startup.len());
    // The one good key works.
    let mut session = Session::open(home, &served.addr(), &home.join("client"));
    assert_eq!(session.ask("ok").as_deref(), Some("OK"));
}

// ---------------------------------------------------------------- rewrite in place

#[test]
fn a_file_rewritten_in_place_while_reloads_run_revokes_nobody() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let keys = home.join("authorized_keys");
    let clients: Vec<PathBuf> = (0..3)
        .map(|n| authorized_client(home, &keys, &format!("client{n}")))
        .collect();
    let leaving = authorized_client(home, &keys, "leaving");
    let served = serve(home, &keys, &["--revoke-live"]).unwrap();
    let mut sessions: Vec<Session> = clients
        .iter()
        .map(|key| Session::open(home, &served.addr(), key))
        .collect();
    let leaver = Session::open(home, &served.addr(), &leaving);
    let whole = fs::read(&keys).unwrap();

    // An editor that writes in place, slowly: truncate, then a few bytes at a
    // time, with SIGHUP reloads pulled while it writes (and --revoke-live's own).
    for _round in 0..3 {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&keys)
            .unwrap();
        for (n, chunk) in whole.chunks(24).enumerate() {
            file.write_all(chunk).unwrap();
            if n % 4 == 0 {
                served.signal("HUP");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    // Then a real revocation; the checks run one after the other, so once it has
    // happened every check of the rewrite before it is over.
    let fingerprint = text(
        &noise_echo(home)
            .arg("fingerprint")
            .arg(leaving.with_extension("pub"))
            .output()
            .unwrap()
            .stdout,
    );
    let fingerprint = fingerprint.split_whitespace().nth(1).unwrap().to_owned();
    let out = noise_echo(home)
        .args(["authorize", "--authorized-keys"])
        .arg(&keys)
        .args(["--remove", &fingerprint])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let log = served.wait_for_log("closed: key revoked");
    drop(leaver);
    let revoked: Vec<&String> = log.iter().filter(|l| l.contains("key revoked")).collect();
    assert_eq!(revoked.len(), 1, "{revoked:#?}");
    assert!(revoked[0].contains("leaving"), "{}", revoked[0]);
    // 0 false revocations: every session whose key never left still answers.
    for (n, session) in sessions.iter_mut().enumerate() {
        assert_eq!(
            session.ask(&format!("still {n}")),
            Some(format!("STILL {n}")),
            "session {n} was ended"
        );
    }
}

// ---------------------------------------------------------------- stale temporaries

#[test]
fn stale_temporaries_of_killed_writers_are_removed_by_the_next_write_and_only_ours() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let keys = home.join("authorized_keys");
    authorized_client(home, &keys, "first");
    let hour_ago = SystemTime::now() - Duration::from_secs(3600);
    // Each holds a key line that must never be read as data.
    let stale_line = fs::read_to_string(home.join("first.pub")).unwrap();
    let stale_line = stale_line.replace("first", "stale");
    let make = |name: &str, old: bool| -> PathBuf {
        let path = home.join(name);
        fs::write(&path, &stale_line).unwrap();
        if old {
            let file = fs::File::options().write(true).open(&path).unwrap();
            file.set_modified(hour_ago).unwrap();
        }
        path
    };
    // Left by writers killed mid-write (SIGKILL of authorize).
    let stale: Vec<PathBuf> = ["abc123", "ZZ9xY0", "q1w2e3"]
        .iter()
        .map(|random| make(&format!(".noise-echo-{random}.tmp"), true))
        .collect();
    // Not ours, or not abandoned: all must survive.
    let young = make(".noise-echo-young1.tmp", false);
    let locked = make(".noise-echo-locked.tmp", true);
    let lock_holder = fs::File::open(&locked).unwrap();
    lock_holder.lock().unwrap();
    let foreign: Vec<PathBuf> = [
        ".noise-echo-notes.tmp",
        ".noise-echo-abc123.tmp.bak",
        "noise-echo-abc123.tmp",
        ".noise-echo-abc-12.tmp",
        ".noise-echo-abc1234.tmp",
    ]
    .iter()
    .map(|name| make(name, true))
    .collect();
    let directory = home.join(".noise-echo-dir123.tmp");
    fs::create_dir(&directory).unwrap();
    let target = make("link-target", true);
    let link = home.join(".noise-echo-lnk123.tmp");
    std::os::unix::fs::symlink(&target, &link).unwrap();

    // The next write in the directory.
    authorized_client(home, &keys, "second");

    for path in &stale {
        assert!(!path.exists(), "{} was left", path.display());
    }
    for path in foreign.iter().chain([&young, &locked, &directory, &target]) {
        assert!(path.exists(), "{} was removed", path.display());
    }
    assert!(
        fs::symlink_metadata(&link).is_ok(),
        "the symlink was removed"
    );
    // Never read as data: the stale copies' key line is in no listing.
    let out = noise_echo(home)
        .args(["authorize", "--list", "--authorized-keys"])
        .arg(&keys)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let listing = text(&out.stdout);
    assert_eq!(listing.lines().count(), 2, "{listing}");
    assert!(!listing.contains("stale"), "{listing}");
    // No temporary of this write is left either: what is named like ours is what
    // the test made and kept.
    let mut ours: Vec<String> = fs::read_dir(home)
        .unwrap()
        .filter_map(Result::ok)
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| {
            name.strip_prefix(".noise-echo-")
                .and_then(|rest| rest.strip_suffix(".tmp"))
                .is_some_and(|random| {
                    random.len() == 6 && random.bytes().all(|b| b.is_ascii_alphanumeric())
                })
        })
        .collect();
    ours.sort();
    assert_eq!(
        ours,
        [
            ".noise-echo-dir123.tmp",
            ".noise-echo-lnk123.tmp",
            ".noise-echo-locked.tmp",
            ".noise-echo-young1.tmp"
        ]
    );
    drop(lock_holder);
}
