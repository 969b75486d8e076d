//! Trust files that are not regular files, through the real binary: `/dev/null`
//! (ssh's `UserKnownHostsFile=/dev/null` idiom) reads as empty and discards writes,
//! and is never replaced, even as root; a FIFO, a socket or a directory is refused
//! with an error naming it, before any network work and without hanging.

mod common;

use std::fs;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{noise_echo, text};

/// Every command here must end within this; a hang on a FIFO fails instead.
const BOUND: Duration = Duration::from_secs(30);
const FAILURE: i32 = 1;

/// `noise_echo(home)` under a time bound.
fn bounded(home: &Path) -> assert_cmd::Command {
    let mut command = assert_cmd::Command::from_std(noise_echo(home));
    command.timeout(BOUND);
    command
}

fn mkfifo(path: &Path) {
    let status = Command::new("mkfifo").arg(path).status().unwrap();
    assert!(status.success());
}

/// A client key `client` in `home`.
fn client_key(home: &Path) -> PathBuf {
    let key = home.join("client");
    bounded(home)
        .args(["keygen", "-C", "client", "-f"])
        .arg(&key)
        .assert()
        .success();
    key
}

/// Asserts that /dev/null is still the character device it was.
fn dev_null_is_intact() {
    let metadata = fs::symlink_metadata("/dev/null").unwrap();
    assert!(
        metadata.file_type().is_char_device(),
        "/dev/null was replaced: {metadata:?}"
    );
}

/// A non-regular file of each kind in `dir`, with the word its error names.
fn non_regular_files(dir: &Path) -> Vec<(PathBuf, &'static str)> {
    let fifo = dir.join("fifo");
    mkfifo(&fifo);
    let directory = dir.join("directory");
    fs::create_dir(&directory).unwrap();
    let socket = dir.join("socket");
    let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    // The socket file stays after the listener closes.
    drop(listener);
    vec![
        (fifo, "is a FIFO"),
        (directory, "is a directory"),
        (socket, "is a socket"),
    ]
}

#[test]
fn connect_refuses_a_fifo_socket_or_directory_known_hosts_before_connecting() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let key = client_key(home);
    // Something listening that would see any connection attempt.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    for (path, what) in non_regular_files(home) {
        let out = bounded(home)
            .args(["connect", &addr, "--accept-new-host", "-i"])
            .arg(&key)
            .arg("--known-hosts")
            .arg(&path)
            .arg("hello")
            .output()
            .unwrap();
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(FAILURE), "{stderr}");
        assert!(
            stderr.contains(&format!("{} {what}", path.display())),
            "{stderr}"
        );
        assert!(stderr.contains("not a regular file"), "{stderr}");
        // The command has exited: had it connected, the connection would be queued.
        assert!(
            listener.accept().is_err(),
            "connect reached the network with known_hosts {what}"
        );
        assert!(fs::symlink_metadata(&path).is_ok_and(|m| !m.is_file()));
    }
}

#[test]
fn authorize_refuses_a_fifo_socket_or_directory_in_every_mode_without_hanging() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let key = client_key(home);
    for (path, what) in non_regular_files(home) {
        let modes: [Vec<String>; 3] = [
            vec![key.with_extension("pub").display().to_string()],
            vec!["--list".into()],
            vec![
                "--remove".into(),
                "SHA256:Hl89vtBpmaia3eHr2UYTwpPBkibZvlcqHiBxDI2sa0w".into(),
            ],
        ];
        for mode in modes {
            let out = bounded(home)
                .args(["authorize", "--authorized-keys"])
                .arg(&path)
                .args(&mode)
                .output()
                .unwrap();
            let stderr = text(&out.stderr);
            assert_eq!(out.status.code(), Some(FAILURE), "{mode:?}: {stderr}");
            assert!(
                stderr.contains(&format!("{} {what}", path.display())),
                "{mode:?}: {stderr}"
            );
        }
        assert!(fs::symlink_metadata(&path).is_ok_and(|m| !m.is_file()));
    }
}

#[test]
fn keygen_force_never_replaces_a_fifo_or_directory() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    for (path, _) in non_regular_files(home) {
        let out = bounded(home)
            .args(["keygen", "--force", "-f"])
            .arg(&path)
            .output()
            .unwrap();
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(FAILURE), "{stderr}");
        assert!(stderr.contains(&path.display().to_string()), "{stderr}");
        assert!(stderr.contains("not a regular file"), "{stderr}");
        assert!(fs::symlink_metadata(&path).is_ok_and(|m| !m.is_file()));
        // Nothing half-done beside it: no .pub without its private key.
        assert!(!path.with_extension("pub").exists());
    }
}

#[test]
fn authorize_to_dev_null_reads_empty_and_discards_the_write() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let key = client_key(home);
    let out = bounded(home)
        .args(["authorize", "--authorized-keys", "/dev/null"])
        .arg(key.with_extension("pub"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    dev_null_is_intact();
    // Discarded: the same key is new again, and the list is empty.
    let again = bounded(home)
        .args(["authorize", "--authorized-keys", "/dev/null"])
        .arg(key.with_extension("pub"))
        .output()
        .unwrap();
    assert!(!text(&again.stdout).contains("already present"));
    let listing = bounded(home)
        .args(["authorize", "--list", "--authorized-keys", "/dev/null"])
        .output()
        .unwrap();
    assert!(listing.status.success(), "{}", text(&listing.stderr));
    assert_eq!(text(&listing.stdout), "");
    dev_null_is_intact();
    // No temporary was left in /dev (as root one could have been made there).
    let leftovers = fs::read_dir("/dev")
        .unwrap()
        .filter_map(Result::ok)
        .filter(|entry| {
            entry
                .file_name()
                .to_string_lossy()
                .starts_with(".noise-echo-")
        })
        .count();
    assert_eq!(leftovers, 0);
}

#[test]
fn connect_with_known_hosts_dev_null_works_and_leaves_the_device_alone() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let key = client_key(home);
    let keys = home.join("authorized_keys");
    bounded(home)
        .args(["authorize", "--authorized-keys"])
        .arg(&keys)
        .arg(key.with_extension("pub"))
        .assert()
        .success();
    let mut server = noise_echo(home)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--create-host-key",
            "--host-key",
        ])
        .arg(home.join("host_key"))
        .arg("--authorized-keys")
        .arg(&keys)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut log = BufReader::new(server.stderr.take().unwrap());
    let mut port = None;
    for _ in 0..20 {
        let mut line = String::new();
        if log.read_line(&mut line).unwrap_or(0) == 0 {
            break;
        }
        if let Some(rest) = line.split("listening on 127.0.0.1:").nth(1) {
            port = rest.split_whitespace().next().map(str::to_owned);
            break;
        }
    }
    let Some(port) = port else {
        let _ = server.kill();
        panic!("the server did not start");
    };
    // Twice: the host is unknown both times, since the first acceptance was discarded.
    for _ in 0..2 {
        let out = bounded(home)
            .args(["connect", &format!("127.0.0.1:{port}"), "--accept-new-host"])
            .arg("-i")
            .arg(&key)
            .args(["--known-hosts", "/dev/null", "hello"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert_eq!(text(&out.stdout), "HELLO\n");
        dev_null_is_intact();
    }
    // Without --accept-new-host (and no terminal) the unknown host is refused, as
    // ssh with UserKnownHostsFile=/dev/null and StrictHostKeyChecking=yes.
    let out = bounded(home)
        .args(["connect", &format!("127.0.0.1:{port}")])
        .arg("-i")
        .arg(&key)
        .args(["--known-hosts", "/dev/null", "hello"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    let _ = server.kill();
    let _ = server.wait();
    dev_null_is_intact();
}

/// Key files are read by `connect -i`, `keygen -y`, `fingerprint` and `authorize`:
/// each refuses a FIFO, socket or directory at once, naming it, instead of hanging
/// on the FIFO until something writes to it.
#[test]
fn key_files_that_are_not_regular_files_are_refused_without_hanging() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    for (path, word) in non_regular_files(home) {
        let shown = path.display().to_string();
        let commands: [&[&str]; 4] = [
            &["connect", "127.0.0.1:9", "hi", "-i", &shown],
            &["keygen", "-y", "-f", &shown],
            &["fingerprint", &shown],
            &["authorize", "--authorized-keys", "ak", &shown],
        ];
        for args in commands {
            let out = bounded(home).current_dir(home).args(args).output().unwrap();
            let stderr = text(&out.stderr);
            assert_eq!(out.status.code(), Some(FAILURE), "{args:?}: {stderr}");
            assert!(stderr.contains(&shown), "{args:?}: {stderr}");
            let kind = word.trim_start_matches("is ");
            assert!(
                stderr.contains(kind),
                "{args:?} should say {kind}: {stderr}"
            );
        }
    }
    dev_null_is_intact();
}
