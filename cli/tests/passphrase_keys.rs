//! Passphrase-protected keys and host keys through the real binary: identities made by
//! ssh-keygen with a passphrase work for `connect` and `bench`, the passphrase comes
//! from SSH_ASKPASS as ssh takes it, wrong and missing passphrases are told apart,
//! `keygen -N` writes keys ssh-keygen opens, and `serve` never invents a host key at
//! a path it was not asked to.

mod common;

use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Command, Stdio};

use common::{fixture, noise_echo, text, BIN};

/// The passphrase `keys/generate.sh` gave `passphrase_ed25519`.
const FIXTURE_PASSPHRASE: &str = "correct horse";

/// Copies a fixture into `dir` with mode 0600 (git checks private keys out as 0644).
fn private_fixture(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    fs::copy(fixture(name), &path).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    path
}

/// An askpass program that logs each prompt it is given (one per line) to
/// `DIR/askpass.log`, then prints `answer` and exits with `status`.
fn askpass(dir: &Path, answer: &str, status: i32) -> PathBuf {
    let script = dir.join("askpass");
    let log = dir.join("askpass.log");
    fs::write(
        &script,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$1\" >> '{}'\nprintf '%s\\n' '{answer}'\nexit {status}\n",
            log.display()
        ),
    )
    .unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o700)).unwrap();
    script
}

fn prompts(dir: &Path) -> Vec<String> {
    fs::read_to_string(dir.join("askpass.log"))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// `noise-echo` with the passphrase forced through `program`, as a script sets it.
fn with_askpass(home: &Path, program: &Path) -> Command {
    let mut command = noise_echo(home);
    command
        .env("SSH_ASKPASS", program)
        .env("SSH_ASKPASS_REQUIRE", "force")
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY");
    command
}

/// `noise-echo ARGS` in a new session, so it has no controlling terminal whoever
/// runs the tests; None where util-linux's setsid is missing.
fn without_terminal(home: &Path) -> Option<Command> {
    if Command::new("setsid").arg("--version").output().is_err() {
        assert!(std::env::var_os("CI").is_none(), "setsid must exist in CI");
        eprintln!("setsid not installed: skipping");
        return None;
    }
    let mut command = Command::new("setsid");
    command
        .arg("--wait")
        .arg(BIN)
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env_remove("RUST_LOG")
        .env_remove("SSH_ASKPASS")
        .env_remove("SSH_ASKPASS_REQUIRE")
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY")
        .stdin(Stdio::null());
    Some(command)
}

/// Runs a command to its end: (status, stdout, stderr).
fn run(command: &mut Command) -> (i32, String, String) {
    let output = command.output().unwrap();
    (
        output.status.code().unwrap_or(-1),
        text(&output.stdout),
        text(&output.stderr),
    )
}

/// `connect` to a port nobody listens on: the identity is loaded first, so its
/// errors come before any network work.
fn connect_nowhere(command: &mut Command, identity: &Path) -> (i32, String, String) {
    run(command
        .args(["connect", "127.0.0.1:1", "--accept-new-host", "-i"])
        .arg(identity)
        .arg("hello"))
}

/// A `noise-echo serve` child with an authorized_keys file; killed when dropped.
struct Served {
    child: Child,
    port: u16,
}

impl Served {
    fn start(home: &Path, authorized: &Path) -> Self {
        let mut child = noise_echo(home)
            .args(["serve", "--listen", "127.0.0.1:0", "--create-host-key"])
            .arg("--host-key")
            .arg(home.join("host_key"))
            .arg("--authorized-keys")
            .arg(authorized)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (log, port) = read_log_until(stderr, "listening on 127.0.0.1:");
        let Some(port) = port else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the server did not start: {log}");
        };
        let port = port
            .split_whitespace()
            .next()
            .and_then(|port| port.parse().ok())
            .unwrap();
        Self { child, port }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads a log up to the line containing `marker` (bounded: it comes within the first
/// few lines) and returns the log so far and what follows the marker. The rest of the
/// log is drained in the background so the process never blocks on a full pipe.
fn read_log_until(stderr: ChildStderr, marker: &str) -> (String, Option<String>) {
    let mut reader = BufReader::new(stderr);
    let mut log = String::new();
    let mut found = None;
    for _ in 0..20 {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            break;
        }
        log.push_str(&line);
        if let Some(rest) = line.split(marker).nth(1) {
            found = Some(rest.trim().to_owned());
            break;
        }
    }
    std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
    (log, found)
}

#[test]
fn connect_decrypts_an_ssh_keygen_encrypted_identity_with_the_askpass_answer() {
    let home = tempfile::tempdir().unwrap();
    let key = private_fixture(home.path(), "passphrase_ed25519");
    let authorized = home.path().join("authorized_keys");
    fs::copy(fixture("passphrase_ed25519.pub"), &authorized).unwrap();
    let served = Served::start(home.path(), &authorized);
    let program = askpass(home.path(), FIXTURE_PASSPHRASE, 0);
    let (status, stdout, stderr) = run(with_askpass(home.path(), &program)
        .arg("connect")
        .arg(format!("127.0.0.1:{}", served.port))
        .arg("--known-hosts")
        .arg(home.path().join("known_hosts"))
        .args(["--accept-new-host", "-i"])
        .arg(&key)
        .arg("hello"));
    assert_eq!(status, 0, "{stderr}");
    assert_eq!(stdout, "HELLO\n");
    assert_eq!(
        prompts(home.path()),
        [format!("Enter passphrase for key '{}': ", key.display())]
    );
    assert!(!stderr.contains(FIXTURE_PASSPHRASE), "{stderr}");
}

#[test]
fn a_wrong_passphrase_is_asked_three_times_then_refused_for_connect_and_bench() {
    let home = tempfile::tempdir().unwrap();
    let key = private_fixture(home.path(), "passphrase_ed25519");
    let program = askpass(home.path(), "wrong horse", 0);
    let (status, stdout, stderr) = connect_nowhere(&mut with_askpass(home.path(), &program), &key);
    assert_eq!(status, 1, "{stderr}");
    assert_eq!(stdout, "");
    assert_eq!(
        stderr.trim_end(),
        format!(
            "error: cannot load the identity: {}: incorrect passphrase (3 tried); the key stays \
             locked (the passphrase is the one given to ssh-keygen -N or -p for this file)",
            key.display()
        )
    );
    let asked = prompts(home.path());
    assert_eq!(asked.len(), 3, "{asked:?}");
    assert!(
        asked[1].starts_with("Bad passphrase, try again for key '"),
        "{asked:?}"
    );
    assert!(!stderr.contains("wrong horse"));

    // bench loads its identity the same way.
    let (status, _, stderr) = run(with_askpass(home.path(), &program)
        .args(["bench", "127.0.0.1:1", "--scenario", "latency", "-i"])
        .arg(&key));
    assert_eq!(status, 1, "{stderr}");
    assert!(
        stderr.contains("incorrect passphrase (3 tried)"),
        "{stderr}"
    );
}

#[test]
fn an_askpass_that_fails_or_answers_nothing_is_a_clear_error() {
    let home = tempfile::tempdir().unwrap();
    let key = private_fixture(home.path(), "passphrase_ed25519");
    let failing = askpass(home.path(), "", 1);
    let (status, _, stderr) = connect_nowhere(&mut with_askpass(home.path(), &failing), &key);
    assert_eq!(status, 1);
    assert!(
        stderr.contains(&format!(
            "{}: the key is protected by a passphrase, which cannot be asked for: the askpass \
             program {} (SSH_ASKPASS) failed (exit status: 1)",
            key.display(),
            failing.display()
        )),
        "{stderr}"
    );
    let empty = askpass(home.path(), "", 0);
    let (status, _, stderr) = connect_nowhere(&mut with_askpass(home.path(), &empty), &key);
    assert_eq!(status, 1);
    assert!(
        stderr.contains("the key is protected by a passphrase and none was given"),
        "{stderr}"
    );
}

#[test]
fn without_a_terminal_the_askpass_rules_of_ssh_apply() {
    let home = tempfile::tempdir().unwrap();
    let key = private_fixture(home.path(), "passphrase_ed25519");
    let program = askpass(home.path(), FIXTURE_PASSPHRASE, 0);
    let Some(mut bare) = without_terminal(home.path()) else {
        return;
    };
    // Nothing to ask with: the error says how to give the passphrase.
    let (status, _, stderr) = connect_nowhere(&mut bare, &key);
    assert_eq!(status, 1);
    assert!(
        stderr.contains(
            "cannot be asked for: no terminal to ask on (run on a terminal, or set SSH_ASKPASS \
             to a program that prints the passphrase and SSH_ASKPASS_REQUIRE=force)"
        ),
        "{stderr}"
    );
    // SSH_ASKPASS alone, without a display: ssh does not run it either.
    let (status, _, stderr) = connect_nowhere(
        without_terminal(home.path())
            .unwrap()
            .env("SSH_ASKPASS", &program),
        &key,
    );
    assert_eq!(status, 1);
    assert!(stderr.contains("no terminal to ask on"), "{stderr}");
    assert!(prompts(home.path()).is_empty());
    // SSH_ASKPASS_REQUIRE=never forbids it even on a desktop.
    let (status, _, stderr) = connect_nowhere(
        without_terminal(home.path())
            .unwrap()
            .env("SSH_ASKPASS", &program)
            .env("DISPLAY", ":0")
            .env("SSH_ASKPASS_REQUIRE", "never"),
        &key,
    );
    assert_eq!(status, 1);
    assert!(stderr.contains("no terminal to ask on"), "{stderr}");
    assert!(prompts(home.path()).is_empty());
    // On a desktop (DISPLAY) without a terminal, ssh runs askpass: so do we. The
    // passphrase is right, so the identity loads and the connection is what fails.
    let (status, _, stderr) = connect_nowhere(
        without_terminal(home.path())
            .unwrap()
            .env("SSH_ASKPASS", &program)
            .env("DISPLAY", ":0"),
        &key,
    );
    assert_eq!(status, 3, "{stderr}");
    assert_eq!(prompts(home.path()).len(), 1);
}

#[test]
fn keygen_n_writes_a_key_that_ssh_keygen_opens_with_the_passphrase() {
    let home = tempfile::tempdir().unwrap();
    let key = home.path().join("k");
    let (status, _, stderr) = run(noise_echo(home.path())
        .args(["keygen", "-q", "-N", "s3cret pass", "-C", "enc@test", "-f"])
        .arg(&key));
    assert_eq!(status, 0, "{stderr}");
    let public = fs::read_to_string(home.path().join("k.pub")).unwrap();
    // Encrypted: refused without a passphrase, opened with it (our -y -P and askpass).
    let error = noise_echo::openssh::keyfile::read_identity(&key).unwrap_err();
    assert!(
        error.to_string().contains("protected by a passphrase"),
        "{error}"
    );
    let (status, stdout, stderr) = run(noise_echo(home.path())
        .args(["keygen", "-y", "-P", "s3cret pass", "-f"])
        .arg(&key));
    assert_eq!((status, stdout.as_str()), (0, public.as_str()), "{stderr}");
    let (status, _, stderr) = run(noise_echo(home.path())
        .args(["keygen", "-y", "-P", "nope", "-f"])
        .arg(&key));
    assert_eq!(status, 1);
    assert!(
        stderr.contains("incorrect passphrase (1 tried)"),
        "{stderr}"
    );
    let program = askpass(home.path(), "s3cret pass", 0);
    let (status, stdout, stderr) = run(with_askpass(home.path(), &program)
        .args(["keygen", "-y", "-f"])
        .arg(&key));
    assert_eq!((status, stdout.as_str()), (0, public.as_str()), "{stderr}");

    let Ok(theirs) = Command::new("ssh-keygen")
        .args(["-y", "-P", "s3cret pass", "-f"])
        .arg(&key)
        .output()
    else {
        assert!(
            std::env::var_os("CI").is_none(),
            "ssh-keygen must be installed in CI"
        );
        eprintln!("ssh-keygen not installed: skipping the OpenSSH cross-check");
        return;
    };
    assert!(theirs.status.success(), "{}", text(&theirs.stderr));
    assert_eq!(text(&theirs.stdout), public);
    let wrong = Command::new("ssh-keygen")
        .args(["-y", "-P", "nope", "-f"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(
        !wrong.status.success(),
        "ssh-keygen must need the passphrase"
    );
}

#[test]
fn keygen_without_a_terminal_or_n_writes_an_unencrypted_key() {
    let home = tempfile::tempdir().unwrap();
    for (args, name) in [(&["-N", ""][..], "empty"), (&[][..], "scripted")] {
        let key = home.path().join(name);
        let (status, _, stderr) = run(noise_echo(home.path())
            .arg("keygen")
            .args(args)
            .arg("-f")
            .arg(&key));
        assert_eq!(status, 0, "{stderr}");
        assert!(
            noise_echo::openssh::keyfile::read_identity(&key).is_ok(),
            "{name}: unencrypted"
        );
        if let Ok(theirs) = Command::new("ssh-keygen")
            .args(["-y", "-P", "", "-f"])
            .arg(&key)
            .output()
        {
            assert!(theirs.status.success(), "{}", text(&theirs.stderr));
        }
    }
}

#[test]
fn serve_refuses_an_encrypted_host_key_with_the_fix() {
    let home = tempfile::tempdir().unwrap();
    let key = private_fixture(home.path(), "passphrase_ed25519");
    let (status, _, stderr) = run(noise_echo(home.path())
        .args(["serve", "--listen", "127.0.0.1:0", "--host-key"])
        .arg(&key));
    assert_eq!(status, 1);
    assert_eq!(
        stderr.trim_end(),
        format!(
            "error: cannot load the host key (a host key must not have a passphrase, as for \
             sshd: the server starts with nobody to type it): {0}: the key is protected by a \
             passphrase, and it is read here without one (remove the passphrase with: \
             ssh-keygen -p -N '' -f {0})",
            key.display()
        )
    );
}

#[test]
fn serve_never_creates_a_host_key_at_a_path_it_was_not_asked_to() {
    let home = tempfile::tempdir().unwrap();
    let typo = home.path().join("host_kye");
    let (status, _, stderr) = run(noise_echo(home.path())
        .args(["serve", "--listen", "127.0.0.1:0", "--host-key"])
        .arg(&typo));
    assert_eq!(status, 1);
    assert_eq!(
        stderr.trim_end(),
        format!(
            "error: no host key at {0} (create one with: noise-echo keygen -f {0} -N '', or \
             pass --create-host-key, or run serve without --host-key)",
            typo.display()
        )
    );
    assert!(!typo.exists());
    assert!(!home.path().join(".config").exists());

    // Asked for: created, and the server starts.
    let mut child = noise_echo(home.path())
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--create-host-key",
            "--host-key",
        ])
        .arg(&typo)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (log, found) = read_log_until(child.stderr.take().unwrap(), "listening on");
    let _ = child.kill();
    let _ = child.wait();
    assert!(found.is_some(), "{log}");
    assert!(
        log.contains(&format!("created host key {}", typo.display())),
        "{log}"
    );
    assert!(noise_echo::openssh::keyfile::read_identity(&typo).is_ok());

    // The default path is created on first start, with its directory.
    let mut child = noise_echo(home.path())
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (log, found) = read_log_until(child.stderr.take().unwrap(), "listening on");
    let _ = child.kill();
    let _ = child.wait();
    assert!(found.is_some(), "{log}");
    let default = home.path().join(".config/noise-echo/host_ed25519_key");
    assert!(
        log.contains(&format!("created host key {}", default.display())),
        "{log}"
    );
    assert!(default.is_file());
}

#[test]
fn keys_encrypted_with_every_cipher_of_ssh_keygen_z_are_decrypted() {
    let home = tempfile::tempdir().unwrap();
    for cipher in [
        "aes256-ctr",
        "aes128-ctr",
        "aes256-cbc",
        "aes256-gcm@openssh.com",
        "chacha20-poly1305@openssh.com",
    ] {
        let key = home.path().join(cipher);
        let Ok(made) = Command::new("ssh-keygen")
            .args([
                "-q", "-t", "ed25519", "-N", "pw", "-C", cipher, "-Z", cipher, "-f",
            ])
            .arg(&key)
            .output()
        else {
            assert!(
                std::env::var_os("CI").is_none(),
                "ssh-keygen must be installed in CI"
            );
            eprintln!("ssh-keygen not installed: skipping");
            return;
        };
        assert!(made.status.success(), "{cipher}: {}", text(&made.stderr));
        let (status, stdout, stderr) = run(noise_echo(home.path())
            .args(["keygen", "-y", "-P", "pw", "-f"])
            .arg(&key));
        assert_eq!(status, 0, "{cipher}: {stderr}");
        let public = fs::read_to_string(home.path().join(format!("{cipher}.pub"))).unwrap();
        assert_eq!(stdout, public, "{cipher}");
    }
}

/// A command run on a pseudo-terminal by util-linux's `script`, so it has a
/// controlling terminal; its output arrives on a channel, and answers are typed only
/// once the prompt they answer has appeared (so echo, if any, would show).
struct OnTerminal {
    child: Child,
    input: std::process::ChildStdin,
    output: std::sync::mpsc::Receiver<Vec<u8>>,
    seen: String,
}

impl OnTerminal {
    /// `noise-echo ARGS` on a terminal, or None where `script` is missing.
    fn spawn(home: &Path, args: &[&str]) -> Option<Self> {
        if Command::new("script").arg("--version").output().is_err() {
            assert!(std::env::var_os("CI").is_none(), "script must exist in CI");
            eprintln!("script (util-linux) not installed: skipping");
            return None;
        }
        let quoted: Vec<String> = std::iter::once(BIN)
            .chain(args.iter().copied())
            .map(|arg| format!("'{}'", arg.replace('\'', r"'\''")))
            .collect();
        let mut child = Command::new("script")
            .args([
                "--quiet",
                "--return",
                "--command",
                &quoted.join(" "),
                "/dev/null",
            ])
            .env("HOME", home)
            .env("XDG_CONFIG_HOME", home.join(".config"))
            .env("SHELL", "/bin/sh")
            .env_remove("RUST_LOG")
            .env_remove("SSH_ASKPASS")
            .env_remove("SSH_ASKPASS_REQUIRE")
            .env_remove("DISPLAY")
            .env_remove("WAYLAND_DISPLAY")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let input = child.stdin.take().unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let (sender, output) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::Read;
            let mut buffer = [0u8; 4096];
            while let Ok(read @ 1..) = stdout.read(&mut buffer) {
                if sender.send(buffer[..read].to_vec()).is_err() {
                    break;
                }
            }
        });
        Some(Self {
            child,
            input,
            output,
            seen: String::new(),
        })
    }

    /// Waits for `prompt` to appear (after what was already matched), then types
    /// `answer` and Enter.
    fn answer(&mut self, prompt: &str, answer: &str) {
        use std::io::Write;
        self.wait_for(prompt);
        self.input
            .write_all(format!("{answer}\r").as_bytes())
            .unwrap();
        self.input.flush().unwrap();
    }

    /// Waits for `text` in the output; the wait is bounded so a missing prompt fails
    /// the test instead of hanging it.
    fn wait_for(&mut self, text: &str) {
        for _ in 0..600 {
            if let Some(at) = self.seen.find(text) {
                self.seen.drain(..at + text.len());
                return;
            }
            match self
                .output
                .recv_timeout(std::time::Duration::from_millis(100))
            {
                Ok(chunk) => self.seen.push_str(&String::from_utf8_lossy(&chunk)),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        panic!("{text:?} never appeared; output: {:?}", self.seen);
    }

    /// The exit status and everything printed after the last matched text.
    fn finish(mut self) -> (i32, String) {
        let status = self.child.wait().unwrap().code().unwrap_or(-1);
        while let Ok(chunk) = self.output.recv() {
            self.seen.push_str(&String::from_utf8_lossy(&chunk));
        }
        (status, self.seen)
    }
}

#[test]
fn keygen_on_a_terminal_asks_twice_until_the_passphrases_match_without_echo() {
    let home = tempfile::tempdir().unwrap();
    let key = home.path().join("k");
    let key_arg = key.to_str().unwrap();
    let Some(mut terminal) = OnTerminal::spawn(home.path(), &["keygen", "-q", "-f", key_arg])
    else {
        return;
    };
    terminal.answer("Enter passphrase (empty for no passphrase): ", "first-try");
    terminal.answer("Enter same passphrase again: ", "second-try");
    terminal.wait_for("Passphrases do not match.  Try again.");
    terminal.answer(
        "Enter passphrase (empty for no passphrase): ",
        "typed twice",
    );
    terminal.answer("Enter same passphrase again: ", "typed twice");
    let (status, rest) = terminal.finish();
    assert_eq!(status, 0, "{rest}");
    for secret in ["first-try", "second-try", "typed twice"] {
        assert!(!rest.contains(secret), "echoed {secret}: {rest}");
    }
    let (status, stdout, stderr) = run(noise_echo(home.path())
        .args(["keygen", "-y", "-P", "typed twice", "-f"])
        .arg(&key));
    assert_eq!(status, 0, "{stderr}");
    assert_eq!(
        stdout,
        fs::read_to_string(home.path().join("k.pub")).unwrap()
    );
}

#[test]
fn connect_on_a_terminal_asks_again_after_a_wrong_passphrase() {
    let home = tempfile::tempdir().unwrap();
    let key = private_fixture(home.path(), "passphrase_ed25519");
    let Some(mut terminal) = OnTerminal::spawn(
        home.path(),
        &[
            "connect",
            "127.0.0.1:1",
            "--accept-new-host",
            "-i",
            key.to_str().unwrap(),
            "hello",
        ],
    ) else {
        return;
    };
    terminal.answer(
        &format!("Enter passphrase for key '{}': ", key.display()),
        "wrong horse",
    );
    terminal.answer(
        &format!("Bad passphrase, try again for key '{}': ", key.display()),
        FIXTURE_PASSPHRASE,
    );
    // The identity loaded, so what fails is the connection to a closed port.
    let (status, rest) = terminal.finish();
    assert_eq!(status, 3, "{rest}");
    assert!(!rest.contains("horse"), "{rest}");
}

#[test]
fn ctrl_c_at_a_terminal_prompt_aborts_with_a_clear_error() {
    let home = tempfile::tempdir().unwrap();
    let key = private_fixture(home.path(), "passphrase_ed25519");
    let Some(mut terminal) = OnTerminal::spawn(
        home.path(),
        &["connect", "127.0.0.1:1", "-i", key.to_str().unwrap(), "x"],
    ) else {
        return;
    };
    terminal.answer(
        &format!("Enter passphrase for key '{}': ", key.display()),
        "\u{3}",
    );
    let (status, rest) = terminal.finish();
    assert_eq!(status, 1, "{rest}");
    assert!(
        rest.contains(
            "the key is protected by a passphrase, which cannot be asked for: interrupted (Ctrl-C)"
        ),
        "{rest}"
    );
}
