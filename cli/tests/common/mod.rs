//! Helpers shared by the cli test binaries: the `noise-echo` binary under a
//! temporary home, the repository's key fixtures, and lossy text of output.

#![allow(dead_code)] // each test binary uses a different subset

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use assert_cmd::cargo::CommandCargoExt;

pub mod served;

/// The `noise-echo` binary this package builds.
pub const BIN: &str = env!("CARGO_BIN_EXE_noise-echo");

/// The `noise-echo` binary with stdin closed and no `RUST_LOG`.
pub fn noise_echo(home: &Path) -> Command {
    let mut command = Command::cargo_bin("noise-echo").unwrap();
    // Default file locations resolve under this temporary home, never the real one.
    command
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    command
}

/// A file of the repository's keys/ directory (see keys/README.md).
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../keys")
        .join(name)
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A `noise-echo serve` started on 127.0.0.1:0 in `home` (host key `home/host_key`,
/// created; allow-list `authorized_keys`), before its first connection.
pub struct Started {
    /// The server process.
    pub child: std::process::Child,
    /// Its `listening on` line's address.
    pub addr: std::net::SocketAddr,
    /// The rest of its log, to read on.
    pub stderr: std::io::BufReader<std::process::ChildStderr>,
    /// The log up to and including the `listening on` line.
    pub log: String,
}

/// Starts `serve` with `extra` flags and reads its log up to the `listening on` line
/// (bounded: it is among the first few); kills it and panics with the log if it
/// never comes.
pub fn start_serve(home: &Path, authorized_keys: &Path, extra: &[&str]) -> Started {
    use std::io::BufRead;
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
        .arg(authorized_keys)
        .args(extra)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut log = String::new();
    for _ in 0..50 {
        let mut line = String::new();
        if stderr.read_line(&mut line).unwrap_or(0) == 0 {
            break;
        }
        log.push_str(&line);
        if let Some(rest) = line.split("listening on ").nth(1) {
            let addr = rest.split_whitespace().next().unwrap().parse().unwrap();
            return Started {
                child,
                addr,
                stderr,
                log,
            };
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("the server did not start: {log}");
}
