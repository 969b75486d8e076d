//! `serve` with settings that cannot work: refused before it listens, naming the
//! flag, with exit status 1.

mod common;

use common::{noise_echo, text};

#[test]
fn zero_limits_and_timeouts_are_refused_naming_the_flag() {
    for (flag, message) in [
        (
            "--max-connections",
            "--max-connections must be at least 1 (it is 0)",
        ),
        (
            "--max-handshakes",
            "--max-handshakes must be at least 1 (it is 0)",
        ),
        (
            "--handshake-timeout",
            "--handshake-timeout must not be zero",
        ),
        ("--idle-timeout", "--idle-timeout must not be zero"),
    ] {
        let home = tempfile::tempdir().unwrap();
        let host_key = home.path().join("host_key");
        let output = noise_echo(home.path())
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--create-host-key",
                "--host-key",
            ])
            .arg(&host_key)
            .args([flag, "0"])
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(1), "{flag}");
        assert_eq!(
            text(&output.stderr).lines().last().unwrap_or_default(),
            format!("error: invalid server settings: {message}"),
            "{flag}"
        );
    }
}
