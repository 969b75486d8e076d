//! `serve`'s protocol flags through the binary: `--protocols`, `--ciphers` and the
//! rekey limits. Bad values are usage errors (status 2) listing what is valid;
//! combinations that serve nobody are refused naming the flags (status 1); a
//! server's startup line names what it serves; a protocol 2 only server refuses
//! today's connect and logs the mismatch.

mod common;

use common::served::Served;
use common::{noise_echo, text};

/// `serve` on 127.0.0.1:0 with a host key in a fresh directory and `flags`,
/// expected to exit at once; its output.
fn serve_refused(flags: &[&str]) -> std::process::Output {
    let home = tempfile::tempdir().unwrap();
    let host_key = home.path().join("host_key");
    noise_echo(home.path())
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--create-host-key",
            "--host-key",
        ])
        .arg(&host_key)
        .args(flags)
        .output()
        .unwrap()
}

#[test]
fn bad_protocol_flag_values_are_usage_errors_listing_the_valid_ones() {
    for (flags, expected) in [
        (
            &["--ciphers", "des"][..],
            "invalid value 'des' for '--ciphers <LIST>'\n  [possible values: aesgcm, chachapoly]",
        ),
        (
            &["--ciphers", "aesgcm,3des"],
            "invalid value '3des' for '--ciphers <LIST>'",
        ),
        (
            &["--protocols", "3"],
            "invalid value '3' for '--protocols <LIST>'\n  [possible values: 1, 2]",
        ),
        (
            &["--rekey-limit", "0"],
            "invalid value '0' for '--rekey-limit <SIZE>': 0 is out of range",
        ),
        (
            &["--rekey-limit", "lots"],
            "invalid value 'lots' for '--rekey-limit <SIZE>': 'lots' is not a size",
        ),
        (
            &["--rekey-interval", "0"],
            "invalid value '0' for '--rekey-interval <INTERVAL>': 0 is out of range",
        ),
        (
            &["--rekey-interval", "1 hour"],
            "'1 hour' is not an interval: expected seconds, or a number with a unit",
        ),
        (
            &["--rekey-messages", "0"],
            "invalid value '0' for '--rekey-messages <N>'",
        ),
    ] {
        let output = serve_refused(flags);
        assert_eq!(output.status.code(), Some(2), "{flags:?}");
        let stderr = text(&output.stderr);
        assert!(stderr.contains(expected), "{flags:?}: {stderr}");
    }
}

#[test]
fn settings_that_serve_nobody_are_refused_naming_the_flags() {
    for (flags, expected) in [
        (
            &["--protocols", "1", "--ciphers", "aesgcm"][..],
            "error: invalid server settings: --protocols 1 needs chachapoly in --ciphers (protocol 1's only cipher): add it, or serve --protocols 2",
        ),
        (
            &["--ciphers", "aesgcm,aesgcm"],
            "error: invalid server settings: --ciphers lists aesgcm twice",
        ),
        (
            &["--protocols", "2,2"],
            "error: invalid server settings: --protocols lists 2 twice",
        ),
    ] {
        let output = serve_refused(flags);
        assert_eq!(output.status.code(), Some(1), "{flags:?}");
        assert_eq!(
            text(&output.stderr).lines().last().unwrap_or_default(),
            expected,
            "{flags:?}"
        );
    }
}

#[test]
fn the_listening_line_names_the_protocols_and_ciphers_served() {
    let served = Served::start(&[]);
    assert!(
        served
            .startup_log
            .contains("protocols=1,2 ciphers=aesgcm,chachapoly host_key="),
        "{}",
        served.startup_log
    );
    drop(served);
    let served = Served::start(&[
        "--protocols",
        "2",
        "--ciphers",
        "chachapoly",
        "--rekey-limit",
        "512M",
        "--rekey-interval",
        "30m",
        "--rekey-messages",
        "1000",
    ]);
    assert!(
        served
            .startup_log
            .contains("protocols=2 ciphers=chachapoly host_key="),
        "{}",
        served.startup_log
    );
}

#[test]
fn a_protocol_1_client_of_a_protocol_2_only_server_is_refused_and_logged_as_a_mismatch() {
    let served = Served::start(&["--protocols", "2", "--ciphers", "chachapoly"]);
    // A protocol 1 client: the server closes without a reply, which connect
    // reports as a connection closed before the handshake (status 3).
    let output = served
        .connect(&["--protocol", "1", "hello"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(3), "{}", text(&output.stderr));
    assert!(
        text(&output.stderr).contains("closed the connection before the handshake"),
        "{}",
        text(&output.stderr)
    );
    assert!(text(&output.stdout).is_empty());
    let log = served.stop_and_read_log();
    assert!(
        log.contains(
            "closed: protocol mismatch: a protocol v1 client, and protocol v1 is not served here"
        ),
        "{log}"
    );
}

#[test]
fn sessions_log_their_protocol_and_cipher() {
    let served = Served::start(&[]);
    for flags in [
        &["--protocol", "1"][..],
        &["--cipher", "chachapoly"],
        &["--cipher", "aesgcm"],
    ] {
        let output = served
            .connect(&[flags, &["hello"]].concat())
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", text(&output.stderr));
    }
    let log = served.stop_and_read_log();
    let closed: Vec<&str> = log
        .lines()
        .filter(|line| line.contains(" closed"))
        .collect();
    assert_eq!(closed.len(), 3, "{log}");
    for (line, logged) in closed.iter().zip([
        r#"protocol=1 suite="chachapoly""#,
        r#"protocol=2 suite="chachapoly""#,
        r#"protocol=2 suite="aesgcm""#,
    ]) {
        assert!(line.contains(logged), "{line}");
    }
}
