//! A `noise-echo serve` child process on 127.0.0.1:0 with an authorized client, for
//! tests that drive `connect` through the binary: start it with extra flags, build
//! `connect` commands, revoke the client, stop the server with a signal, and wait
//! for a child within a bound.

use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Command, Output, Stdio};
use std::time::Duration;

use super::{noise_echo, text};

/// A running server, its directory (keys, authorized_keys, known_hosts) and its log.
pub struct Served {
    /// The server process.
    pub child: Child,
    /// Where it listens, on 127.0.0.1.
    pub port: u16,
    /// Its host key's fingerprint, from its first log line.
    pub fingerprint: String,
    /// The client's key's fingerprint, to revoke it.
    pub client_fingerprint: String,
    /// Holds every file of this test; removed when dropped.
    dir: tempfile::TempDir,
    /// The rest of the server's log, read on demand; `None` once closed
    /// ([`Served::close_log`]).
    stderr: Option<BufReader<ChildStderr>>,
    /// The log up to and including the listening line.
    pub startup_log: String,
}

impl Served {
    /// Starts `serve` with a fresh host key, the client `client` authorized, and
    /// `extra` flags (`--idle-timeout 1`, `--revoke-live`, ...).
    pub fn start(extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path();
        let out = noise_echo(home)
            .args(["keygen", "-C", "client@test", "-f"])
            .arg(home.join("client"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        let client_fingerprint = text(&out.stdout)
            .split_whitespace()
            .find(|word| word.starts_with("SHA256:"))
            .unwrap()
            .to_owned();
        let out = noise_echo(home)
            .args(["authorize", "--authorized-keys"])
            .arg(home.join("authorized_keys"))
            .arg(home.join("client.pub"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        let started = super::start_serve(home, &home.join("authorized_keys"), extra);
        // The listening line, the log's last, names the host key.
        let listening = started.log.lines().last().unwrap_or_default();
        let fingerprint = listening
            .split("host_key=")
            .nth(1)
            .unwrap()
            .trim()
            .to_owned();
        Self {
            child: started.child,
            port: started.addr.port(),
            fingerprint,
            client_fingerprint,
            dir,
            stderr: Some(started.stderr),
            startup_log: started.log,
        }
    }

    /// The directory that holds every file, also the client's `$HOME`.
    pub fn home(&self) -> &Path {
        self.dir.path()
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// A file of the home directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.home().join(name)
    }

    /// `noise-echo` with the home as `$HOME` and as the working directory, so
    /// relative file names (`client`, `known_hosts`) appear as typed in its output.
    pub fn command(&self) -> Command {
        let mut command = noise_echo(self.home());
        command.current_dir(self.home());
        command
    }

    /// The client's known_hosts.
    pub fn known_hosts(&self) -> PathBuf {
        self.home().join("known_hosts")
    }

    /// `noise-echo connect ADDR -i client --known-hosts known_hosts
    /// --expect-fingerprint FP EXTRA...`: trusts this server, stdin closed.
    pub fn connect(&self, extra: &[&str]) -> Command {
        let mut command = noise_echo(self.home());
        command
            .arg("connect")
            .arg(self.addr())
            .arg("-i")
            .arg(self.home().join("client"))
            .arg("--known-hosts")
            .arg(self.known_hosts())
            .args(["--expect-fingerprint", &self.fingerprint])
            .args(extra);
        command
    }

    /// `connect` reading requests from a pipe kept open by the caller, its output
    /// piped.
    pub fn spawn_interactive(&self) -> Child {
        self.spawn_interactive_with(&[])
    }

    /// [`Served::spawn_interactive`] with `extra` connect flags.
    pub fn spawn_interactive_with(&self, extra: &[&str]) -> Child {
        self.connect(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// Removes the client's key with `noise-echo authorize --remove`.
    pub fn revoke_client(&self) {
        let out = noise_echo(self.home())
            .args(["authorize", "--authorized-keys"])
            .arg(self.home().join("authorized_keys"))
            .args(["--remove", &self.client_fingerprint])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
    }

    /// Closes the reading end of the server's log pipe, as a log collector that
    /// stops or a closed terminal does: the server's next log line meets a broken
    /// pipe.
    pub fn close_log(&mut self) {
        self.stderr = None;
    }

    /// Sends SIGTERM to the server (by its process id).
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Stops the server (SIGTERM) and returns its exit status and its whole log,
    /// the startup lines included.
    pub fn stop(mut self) -> (Option<i32>, String) {
        self.terminate();
        let mut log = std::mem::take(&mut self.startup_log);
        if let Some(stderr) = &mut self.stderr {
            let _ = stderr.read_to_string(&mut log);
        }
        (self.child.wait().unwrap().code(), log)
    }

    /// Stops the server (SIGTERM) and returns the rest of its log.
    pub fn stop_and_read_log(mut self) -> String {
        self.terminate();
        // Its log ends when it exits.
        let mut rest = String::new();
        if let Some(stderr) = &mut self.stderr {
            let _ = stderr.read_to_string(&mut rest);
        }
        rest
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How long a child may take to exit before the test gives up on it: a guard
/// against a hang, far above any expected time, never a measurement.
pub const HANG_GUARD: Duration = Duration::from_secs(120);

/// Waits for `child` to exit and collects its output (the pipes it still has);
/// kills it and panics, naming `what`, if it has not exited after [`HANG_GUARD`].
/// The wait is an event (the child's exit), not a poll.
pub fn finish(child: Child, what: &str) -> Output {
    let pid = child.id();
    let (done, exited) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(child.wait_with_output());
    });
    match exited.recv_timeout(HANG_GUARD) {
        Ok(output) => output.unwrap(),
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            panic!("{what} did not exit within {HANG_GUARD:?}");
        }
    }
}
