//! A server whose log reader goes away (a stopped log collector, a closed terminal)
//! keeps serving: a log line that meets a broken pipe is dropped, never a panic
//! that ends the process or the connection that logged it.

mod common;

use common::served::{finish, Served};

#[test]
fn serve_keeps_serving_after_its_log_pipe_closes() {
    let mut served = Served::start(&[]);
    served.close_log();
    // Each connection logs at least its summary line, into the broken pipe; the
    // second and third would fail if the first had killed the process or panicked
    // a worker thread mid-write.
    for round in 0..3 {
        let out = served.connect(&["hello"]).output().unwrap();
        assert!(
            out.status.success(),
            "connection {round} after the log closed: {}",
            common::text(&out.stderr)
        );
        assert_eq!(common::text(&out.stdout), "HELLO\n");
    }
    // A reload logs on the main thread (what used to end the process with status 101).
    let status = std::process::Command::new("kill")
        .args(["-HUP", &served.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = served.connect(&["after reload"]).output().unwrap();
    assert!(out.status.success(), "{}", common::text(&out.stderr));
    assert_eq!(common::text(&out.stdout), "AFTER RELOAD\n");
    served.terminate();
    let child = std::mem::replace(
        &mut served.child,
        std::process::Command::new("true").spawn().unwrap(),
    );
    let output = finish(child, "serve after SIGTERM");
    assert_eq!(
        output.status.code(),
        Some(0),
        "serve's exit status on SIGTERM"
    );
}

/// The command run with its stderr a pipe whose reader is already gone (a stopped
/// log collector): every write to it fails with a broken pipe, which `eprintln!`
/// turns into a panic and status 101. (Not a closed descriptor: Rust's runtime
/// reopens a closed stderr on /dev/null at start-up.)
fn with_stderr_closed(home: &std::path::Path, args: &[&str]) -> std::process::Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    common::noise_echo(home)
        .args(args)
        .stderr(writer)
        .output()
        .unwrap()
}

#[test]
fn warnings_on_a_closed_stderr_are_dropped_and_the_command_goes_on() {
    let home = tempfile::tempdir().unwrap();
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/../keys/authorized_keys");
    // A malformed line: a warning for `authorize --list` and a "skipped" line for
    // `fingerprint`; both still list the good keys on stdout.
    let listed = with_stderr_closed(
        home.path(),
        &["authorize", "--list", "--authorized-keys", fixture],
    );
    assert_eq!(listed.status.code(), Some(0), "authorize --list");
    assert!(
        common::text(&listed.stdout).contains("client@noise-echo-test"),
        "{}",
        common::text(&listed.stdout)
    );
    let fingerprints = with_stderr_closed(home.path(), &["fingerprint", fixture]);
    assert_eq!(fingerprints.status.code(), Some(0), "fingerprint");
    assert!(
        common::text(&fingerprints.stdout).contains("SHA256:"),
        "{}",
        common::text(&fingerprints.stdout)
    );
    // Removing a key that is not there warns, then goes on to remove the one that is.
    let file = home.path().join("authorized_keys");
    std::fs::copy(fixture, &file).unwrap();
    let present = common::text(&fingerprints.stdout)
        .lines()
        .find(|line| line.contains("client@noise-echo-test"))
        .and_then(|line| line.split_whitespace().nth(1))
        .unwrap()
        .to_owned();
    let absent = "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let removed = with_stderr_closed(
        home.path(),
        &[
            "authorize",
            "--remove",
            &present,
            "--remove",
            absent,
            "--authorized-keys",
            file.to_str().unwrap(),
        ],
    );
    assert_eq!(
        removed.status.code(),
        Some(0),
        "authorize --remove: {}",
        common::text(&removed.stdout)
    );
    assert!(
        !std::fs::read_to_string(&file)
            .unwrap()
            .contains("client@noise-echo-test"),
        "the key present was removed"
    );
}
