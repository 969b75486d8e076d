//! The `examples/` pair runs as documented: `echo_server` on 127.0.0.1:0 with an
//! authorized_keys file, `echo_client` pinning the fingerprint it printed.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use noise_echo::identity::Identity;
use noise_echo::openssh::{authorized_keys, keyfile};

/// `cargo test` builds the examples beside the test binaries' directory.
fn example(name: &str) -> PathBuf {
    let mut path = std::env::current_exe().unwrap();
    path.pop();
    if path.ends_with("deps") {
        path.pop();
    }
    path.join("examples").join(name)
}

#[test]
fn the_example_client_is_answered_by_the_example_server() {
    let dir = tempfile::tempdir().unwrap();
    let identity = Identity::generate("example user");
    let identity_file = dir.path().join("id_ed25519");
    keyfile::write_identity(&identity_file, &identity, false).unwrap();
    let authorized = dir.path().join("authorized_keys");
    std::fs::write(
        &authorized,
        authorized_keys::append_key(&[], &identity.public_key(), identity.comment()),
    )
    .unwrap();

    let mut server = Command::new(example("echo_server"))
        .arg(&authorized)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("the examples are built by a plain `cargo test` (not by `--test examples` alone)");
    let mut line = String::new();
    BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let fields: Vec<&str> = line.split_whitespace().collect();
    let ["listening", "on", address, fingerprint] = fields.as_slice() else {
        panic!("unexpected first line: {line:?}");
    };

    let output = Command::new(example("echo_client"))
        .args([address, fingerprint])
        .arg(&identity_file)
        .args(["hello", "straße"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    assert_eq!(String::from_utf8_lossy(&output.stdout), "HELLO\nSTRASSE\n");

    // Closing its standard input stops the server cleanly.
    drop(server.stdin.take());
    assert!(server.wait().unwrap().success());
}
