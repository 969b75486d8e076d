//! `noise-echo authorize` through the real binary: adding, skipping duplicates,
//! listing, removing, dry runs, bad input, and concurrent runs that must all land.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use assert_cmd::cargo::CommandCargoExt;
use common::{fixture, text};
use noise_echo::identity::Identity;
use noise_echo::openssh::authorized_keys::AuthorizedKeys;

fn authorize(file: &Path) -> Command {
    let mut command = Command::cargo_bin("noise-echo").unwrap();
    command.arg("authorize").arg("--authorized-keys").arg(file);
    command
}

fn ok(output: Output) -> String {
    assert!(output.status.success(), "stderr: {}", text(&output.stderr));
    text(&output.stdout)
}

/// `ssh-keygen -lf keys/client_ed25519.pub`, as recorded by keys/generate.sh.
fn client_fingerprint_line() -> String {
    let recorded = fs::read_to_string(fixture("fingerprints.txt")).unwrap();
    recorded.lines().next().unwrap().to_owned()
}

fn key_line(comment: &str) -> (Identity, String) {
    let identity = Identity::generate(comment);
    let line = identity.public_key().to_openssh_line(comment);
    (identity, line)
}

#[test]
fn adds_from_a_file_a_line_and_stdin_creating_the_file_0600_and_its_directory() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("new/dir/authorized_keys");
    let out = ok(authorize(&file)
        .arg(fixture("client_ed25519.pub"))
        .output()
        .unwrap());
    let client = client_fingerprint_line();
    let fingerprint = client.split(' ').nth(1).unwrap();
    let expected = format!("added {fingerprint} client@noise-echo-test to ");
    assert!(out.starts_with(&expected), "{out}");
    assert_eq!(
        fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );

    let (_, line) = key_line("from line");
    ok(authorize(&file).arg(&line).output().unwrap());

    let (_, piped) = key_line("from stdin");
    let mut child = authorize(&file)
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("# a comment\n\n{piped}\n").as_bytes())
        .unwrap();
    ok(child.wait_with_output().unwrap());

    let keys = AuthorizedKeys::load(&file).unwrap();
    let comments: Vec<_> = keys
        .entries
        .iter()
        .map(|entry| entry.comment.as_str())
        .collect();
    assert_eq!(
        comments,
        ["client@noise-echo-test", "from line", "from stdin"]
    );
}

#[test]
fn keys_already_present_are_reported_and_not_added_twice() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("authorized_keys");
    let (identity, line) = key_line("dup");
    ok(authorize(&file).arg(&line).output().unwrap());
    let before = fs::read(&file).unwrap();
    let out = ok(authorize(&file).arg(&line).arg(&line).output().unwrap());
    let fingerprint = identity.public_key().fingerprint();
    assert_eq!(out, format!("already present: {fingerprint} dup (line 1)\nalready present: {fingerprint} dup (line 1)\n"));
    assert_eq!(fs::read(&file).unwrap(), before);
    // Present on a line with options noise-echo does not support (say, shared with
    // sshd with command=): not appended again, which would lift sshd's restriction.
    let (restricted, restricted_line) = key_line("restricted");
    fs::write(&file, format!("command=\"/bin/date\" {restricted_line}\n")).unwrap();
    let out = ok(authorize(&file).arg(&restricted_line).output().unwrap());
    assert!(
        out.starts_with(&format!(
            "already present: {}",
            restricted.public_key().fingerprint()
        )),
        "{out}"
    );
}

#[test]
fn bad_keys_fail_the_whole_run_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("authorized_keys");
    let (_, good) = key_line("good");
    for (bad, message) in [
        (
            fs::read_to_string(fixture("rsa_3072.pub")).unwrap(),
            "only ssh-ed25519 keys are supported",
        ),
        (
            "ssh-ed25519 AAAA-not-base64".to_owned(),
            "not a usable public key",
        ),
        (
            fixture("client_ed25519").display().to_string(),
            "is a private key: pass the public key",
        ),
        (
            dir.path().join("missing.pub").display().to_string(),
            "cannot read",
        ),
    ] {
        let output = authorize(&file)
            .arg(&good)
            .arg(bad.trim())
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(1));
        assert!(
            text(&output.stderr).contains(message),
            "{}",
            text(&output.stderr)
        );
        assert!(!file.exists(), "nothing may be written");
    }
}

#[test]
fn dry_run_shows_the_change_and_makes_none() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("authorized_keys");
    let (identity, line) = key_line("dry");
    let out = ok(authorize(&file)
        .arg("--dry-run")
        .arg(&line)
        .output()
        .unwrap());
    assert!(
        out.starts_with(&format!(
            "would add {} dry",
            identity.public_key().fingerprint()
        )),
        "{out}"
    );
    assert!(!file.exists());
    ok(authorize(&file).arg(&line).output().unwrap());
    let fingerprint = identity.public_key().fingerprint().to_string();
    let out = ok(authorize(&file)
        .args(["--dry-run", "--remove", &fingerprint])
        .output()
        .unwrap());
    assert!(out.starts_with("would remove "), "{out}");
    assert_eq!(AuthorizedKeys::load(&file).unwrap().entries.len(), 1);
}

#[test]
fn remove_revokes_one_key_and_keeps_every_other_byte() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("authorized_keys");
    let (keep, keep_line) = key_line("keep");
    let (gone, gone_line) = key_line("gone");
    let rsa = fs::read_to_string(fixture("rsa_3072.pub")).unwrap();
    let original = format!(
        "# header\n{keep_line}\n{gone_line}\n{}malformed line\nfrom=\"10.0.0.0/8\" {gone_line}\n",
        rsa
    );
    fs::write(&file, &original).unwrap();
    fs::set_permissions(&file, fs::Permissions::from_mode(0o640)).unwrap();
    let fingerprint = gone.public_key().fingerprint().to_string();
    let out = ok(authorize(&file)
        .args(["--remove", &fingerprint])
        .output()
        .unwrap());
    assert_eq!(out.lines().count(), 2, "{out}");
    assert_eq!(
        fs::read_to_string(&file).unwrap(),
        format!("# header\n{keep_line}\n{}malformed line\n", rsa)
    );
    assert_eq!(
        fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o640,
        "mode kept"
    );
    let keys = AuthorizedKeys::load(&file).unwrap();
    assert_eq!(keys.entries.len(), 1);
    assert_eq!(keys.entries[0].key, keep.public_key());

    let output = authorize(&file)
        .args(["--remove", &fingerprint])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(text(&output.stderr).contains(&format!("no key with fingerprint {fingerprint}")));
}

#[test]
fn list_shows_fingerprints_comments_and_options_and_warns_about_bad_lines() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("authorized_keys");
    fs::copy(fixture("authorized_keys"), &file).unwrap();
    let output = authorize(&file).arg("--list").output().unwrap();
    let out = ok(output.clone());
    let lines: Vec<_> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert_eq!(lines[0], client_fingerprint_line());
    assert!(
        lines[1].contains("[from=\"127.0.0.1,::1\",expiry-time=\"29991231\"]"),
        "{}",
        lines[1]
    );
    let errors = text(&output.stderr);
    assert!(errors.contains("authorized_keys:4:"), "{errors}");
    assert!(errors.contains("authorized_keys:5:"), "{errors}");
}

#[test]
fn concurrent_runs_all_land() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("authorized_keys");
    let runs = 12;
    let lines: Vec<String> = (0..runs)
        .map(|run| key_line(&format!("concurrent-{run}")).1)
        .collect();
    let children: Vec<_> = lines
        .iter()
        .map(|line| {
            authorize(&file)
                .arg(line)
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success(), "{}", text(&output.stderr));
    }
    let keys = AuthorizedKeys::load(&file).unwrap();
    assert_eq!(keys.entries.len(), runs);
    assert!(keys.warnings.is_empty());
}

#[test]
fn control_characters_in_comments_are_printed_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("authorized_keys");
    let identity = Identity::generate("");
    let line = identity
        .public_key()
        .to_openssh_line("evil\u{1b}]0;owned\u{7}");
    fs::write(&file, format!("{line}\n")).unwrap();
    let out = ok(authorize(&file).arg("--list").output().unwrap());
    assert!(!out.contains('\u{1b}') && !out.contains('\u{7}'), "{out:?}");
    assert!(out.contains("evil\\u{1b}]0;owned\\u{7}"), "{out:?}");
    let out = Command::cargo_bin("noise-echo")
        .unwrap()
        .arg("fingerprint")
        .arg(&file)
        .output()
        .unwrap();
    let out = ok(out);
    assert!(!out.contains('\u{1b}'), "{out:?}");
}
