//! `noise-echo authorize` through the real binary: adding (from files, key lines
//! with options, stdin, a forge's mixed USER.keys, with --from and --expires),
//! skipping duplicates, listing with marks, removing several keys, dry runs, bad
//! input, concurrent runs that must all land; and the server's log line for a key
//! refused by its authorized_keys line.

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

/// What `ssh-keygen -lf` printed for a fixture, recorded by keys/generate.sh
/// (`forge_user.keys.lf`, `authorized_keys_sshd.lf`) or, for the single keys made
/// before those, the line of `authorized_keys_sshd.lf` with the same comment.
fn ssh_keygen_lf(name: &str) -> String {
    let recorded = fs::read_to_string(fixture("authorized_keys_sshd.lf")).unwrap();
    let comment = fs::read_to_string(fixture(name)).unwrap();
    let comment = comment.split_whitespace().nth(2).unwrap().to_owned();
    recorded
        .lines()
        .find(|line| line.contains(&format!(" {comment} (")))
        .unwrap()
        .to_owned()
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
    let (_, restricted) = key_line("restricted");
    for (bad, message) in [
        (
            "ssh-ed25519 AAAA-not-base64".to_owned(),
            "the command line:1: not a usable public key",
        ),
        (
            format!("command=\"/bin/date\" {restricted}"),
            "the command line:1: noise-echo would not trust this key line because of the option command= (forces a command)",
        ),
        (
            format!("no-restrict {restricted}"),
            "not a usable public key: unknown option \"no-restrict\"",
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
    assert_eq!(lines.len(), 3, "{out}");
    assert_eq!(lines[0], client_fingerprint_line());
    let rsa = ssh_keygen_lf("rsa_3072.pub");
    assert_eq!(
        lines[1],
        format!("{} [untrusted: ssh-rsa key]", rsa.trim_end())
    );
    assert!(
        lines[2].contains("[from=\"127.0.0.1,::1\",expiry-time=\"29991231\"]"),
        "{}",
        lines[2]
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

/// Lines holding `warning:` in `stderr`.
fn warnings(stderr: &[u8]) -> Vec<String> {
    text(stderr)
        .lines()
        .filter(|line| line.starts_with("warning: "))
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_forge_keys_file_adds_the_ed25519_keys_and_warns_once_per_skipped_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("authorized_keys");
    let forge = fixture("forge_user.keys");
    let output = authorize(&file).arg(&forge).output().unwrap();
    let out = ok(output.clone());
    assert_eq!(
        out.lines().filter(|l| l.starts_with("added ")).count(),
        2,
        "{out}"
    );
    let shown = forge.display();
    assert_eq!(
        warnings(&output.stderr),
        [
            format!("warning: {shown}:1: ssh-rsa key skipped: noise-echo only uses ssh-ed25519 keys"),
            format!("warning: {shown}:3: ecdsa-sha2-nistp256 key skipped: noise-echo only uses ssh-ed25519 keys"),
        ]
    );
    let keys = AuthorizedKeys::load(&file).unwrap();
    assert_eq!(keys.entries.len(), 2);
    assert!(
        keys.warnings.is_empty(),
        "only the ed25519 lines were written"
    );
    // Again: everything already present is still success.
    let output = authorize(&file).arg(&forge).output().unwrap();
    let out = ok(output.clone());
    assert_eq!(
        out.lines()
            .filter(|l| l.starts_with("already present"))
            .count(),
        2
    );
    // A file with no ed25519 key at all adds nothing: status 1, with the fix.
    for only_others in ["rsa_3072.pub", "ecdsa_p256.pub"] {
        let output = authorize(&file).arg(fixture(only_others)).output().unwrap();
        assert_eq!(output.status.code(), Some(1));
        assert_eq!(warnings(&output.stderr).len(), 1);
        let errors = text(&output.stderr);
        assert!(errors.contains("error: no ssh-ed25519 key in "), "{errors}");
        assert!(errors.contains("ssh-keygen -t ed25519"), "{errors}");
    }
    assert_eq!(AuthorizedKeys::load(&file).unwrap().entries.len(), 2);
}

#[test]
fn option_prefixed_key_lines_are_accepted_from_the_command_line_and_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("authorized_keys");
    let (office, office_line) = key_line("office");
    let with_options = format!("from=\"10.0.0.0/8\",no-pty {office_line}");
    ok(authorize(&file).arg(&with_options).output().unwrap());
    let (_, piped) = key_line("piped");
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
        .write_all(format!("restrict,expiry-time=\"20991231Z\" {piped}\n").as_bytes())
        .unwrap();
    ok(child.wait_with_output().unwrap());
    assert_eq!(
        fs::read_to_string(&file).unwrap(),
        format!("{with_options}\nrestrict,expiry-time=\"20991231Z\" {piped}\n")
    );
    let keys = AuthorizedKeys::load(&file).unwrap();
    assert_eq!(keys.entries.len(), 2);
    assert_eq!(keys.entries[0].key, office.public_key());
    assert_eq!(
        keys.entries[0].from.as_ref().unwrap().as_str(),
        "10.0.0.0/8"
    );
    assert!(keys.entries[1].expiry.is_some());
}

#[test]
fn from_and_expires_are_validated_and_written_as_options() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("authorized_keys");
    let (identity, line) = key_line("limited");
    let out = ok(authorize(&file)
        .args([
            "--from",
            "10.0.0.0/8,!10.0.9.*",
            "--expires",
            "209912311800",
        ])
        .arg(&line)
        .output()
        .unwrap());
    assert!(out.starts_with("added "), "{out}");
    assert_eq!(
        fs::read_to_string(&file).unwrap(),
        format!("from=\"10.0.0.0/8,!10.0.9.*\",expiry-time=\"20991231180000Z\" {line}\n")
    );
    let keys = AuthorizedKeys::load(&file).unwrap();
    let entry = &keys.entries[0];
    assert_eq!(entry.expiry.unwrap().to_string(), "2099-12-31 18:00:00 UTC");
    let now = std::time::SystemTime::now();
    let key = identity.public_key();
    assert!(keys
        .authorize(&key, "10.1.2.3".parse().unwrap(), now)
        .is_ok());
    assert!(keys
        .authorize(&key, "10.0.9.1".parse().unwrap(), now)
        .is_err());
    // Already present: not changed, and the user is told how to change it.
    let out = ok(authorize(&file)
        .args(["--from", "192.0.2.1"])
        .arg(&line)
        .output()
        .unwrap());
    assert!(out.contains("its options were not changed"), "{out}");
    let out = ok(authorize(&file)
        .arg(format!("restrict {line}"))
        .output()
        .unwrap());
    assert!(out.contains("its options were not changed"), "{out}");
    let out = ok(authorize(&file).arg(&line).output().unwrap());
    assert!(!out.contains("options"), "{out}");

    let other = dir.path().join("other");
    let (_, fresh) = key_line("fresh");
    for (flags, message) in [
        (
            vec!["--from", "10.0.0.0/33"],
            "--from \"10.0.0.0/33\" is not a valid pattern list",
        ),
        (vec!["--from", "10.0.0.1,"], "is not a valid pattern list"),
        (
            vec!["--from", "a b"],
            "a pattern list has no quotes or blanks",
        ),
        (
            vec!["--from", "a\"b"],
            "a pattern list has no quotes or blanks",
        ),
        (
            vec!["--expires", "2099"],
            "--expires: invalid expiry-time \"2099\"",
        ),
        (vec!["--expires", "20990230"], "no such date"),
        (vec!["--expires", "20200101"], "is already past"),
    ] {
        let output = authorize(&other).args(&flags).arg(&fresh).output().unwrap();
        assert_eq!(output.status.code(), Some(1), "{flags:?}");
        let errors = text(&output.stderr);
        assert!(errors.contains(message), "{flags:?}: {errors}");
        assert!(!other.exists(), "nothing may be written");
    }
    // An option on the line and the same flag: refused, not silently doubled.
    for (flags, option) in [
        (["--from", "10.0.0.0/8"], "from=\"192.0.2.0/24\""),
        (["--expires", "20990101"], "expiry-time=\"20980101Z\""),
    ] {
        let output = authorize(&other)
            .args(flags)
            .arg(format!("{option} {fresh}"))
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(1));
        assert!(
            text(&output.stderr).contains("not both"),
            "{}",
            text(&output.stderr)
        );
    }
    assert!(!other.exists());
    // --from and --expires only make sense when adding.
    let output = authorize(&file)
        .args(["--list", "--from", "10.0.0.0/8"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn remove_takes_several_fingerprints_a_pub_file_and_a_key_line_and_reports_misses() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("authorized_keys");
    let (one, one_line) = key_line("one");
    let (_, two_line) = key_line("two");
    let (three, three_line) = key_line("three");
    let (never, _) = key_line("never added");
    let client = fs::read_to_string(fixture("client_ed25519.pub")).unwrap();
    let rsa = fs::read_to_string(fixture("rsa_3072.pub")).unwrap();
    let original = format!(
        "{one_line}\nrestrict {two_line}\n{client}{rsa}command=\"x\" {three_line}\n# end\n"
    );
    fs::write(&file, &original).unwrap();
    let never = never.public_key().fingerprint().to_string();
    let output = authorize(&file)
        .arg("--remove")
        .arg(one.public_key().fingerprint().to_string())
        .arg(&never)
        .arg(fixture("client_ed25519.pub"))
        .arg(format!("from=\"10.0.0.0/8\" {two_line}"))
        .arg(fixture("rsa_3072.pub"))
        .arg(three.public_key().fingerprint().to_string())
        .output()
        .unwrap();
    let out = ok(output.clone());
    let removed: Vec<&str> = out.lines().map(|l| l.split(": ").next().unwrap()).collect();
    let shown = file.display();
    assert_eq!(
        removed,
        (1..=5)
            .map(|n| format!("removed {shown}:{n}"))
            .collect::<Vec<_>>()
    );
    assert_eq!(fs::read_to_string(&file).unwrap(), "# end\n");
    assert_eq!(
        warnings(&output.stderr),
        [format!(
            "warning: no key with fingerprint {never} in {shown}"
        )]
    );
    // Nothing matched: status 1.
    let output = authorize(&file)
        .args(["--remove", &never])
        .arg(&one_line)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(
        text(&output.stderr).contains(&format!("error: none of the 2 keys is in {shown}")),
        "{}",
        text(&output.stderr)
    );
    // A value that is none of the accepted forms is named in the error.
    let output = authorize(&file)
        .args(["--remove", "SHA256:short"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(text(&output.stderr).contains("is not a SHA256 fingerprint"));
    let output = authorize(&file)
        .args(["--remove", "no-such-file.pub"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(text(&output.stderr).contains("--remove no-such-file.pub: not a fingerprint"));
}

#[test]
fn list_marks_expired_and_untrusted_lines_in_ssh_keygen_columns() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("authorized_keys");
    fs::copy(fixture("authorized_keys_sshd"), &file).unwrap();
    let output = authorize(&file).arg("--list").output().unwrap();
    let out = ok(output.clone());
    let recorded = fs::read_to_string(fixture("authorized_keys_sshd.lf")).unwrap();
    let rows: Vec<&str> = out.lines().collect();
    let expected: Vec<&str> = recorded.lines().collect();
    assert_eq!(rows.len(), expected.len(), "{out}");
    let marks = [
        " [restrict]",
        " [no-port-forwarding,no-agent-forwarding,no-X11-forwarding,no-pty,no-user-rc]",
        " [command=\"/usr/bin/backup\",restrict] [untrusted: command= option]",
        " [restrict,pty] [untrusted: pty option]",
        " [untrusted: ssh-rsa key]",
        " [expiry-time=\"20200101Z\"] [expired 2020-01-01 00:00:00 UTC]",
        "",
    ];
    for ((row, keygen), mark) in rows.iter().zip(&expected).zip(marks) {
        // ssh-keygen escapes the Latin-1 byte as \351; noise-echo shows U+FFFD.
        let keygen = keygen.replace("\\351", "\u{fffd}");
        assert_eq!(*row, format!("{keygen}{mark}"));
    }
    // The untrusted and other-type lines are also warned about, as the server logs them.
    let errors = warnings(&output.stderr);
    assert_eq!(errors.len(), 3, "{errors:?}");
    assert!(
        errors[0].contains("authorized_keys:4: key SHA256:"),
        "{errors:?}"
    );
    // Only expired or untrusted keys: nobody can connect, and the list says so.
    let (_, line) = key_line("old");
    fs::write(
        &file,
        format!("expiry-time=\"20200101\" {line}\ncert-authority {line}\nno-restrict {line}\n"),
    )
    .unwrap();
    let output = authorize(&file).arg("--list").output().unwrap();
    let out = ok(output.clone());
    let marks: Vec<&str> = out
        .lines()
        .map(|row| row.rsplit(" [").next().unwrap())
        .collect();
    assert_eq!(
        marks,
        [
            "expired 2020-01-01 00:00:00 UTC]",
            "untrusted: cert-authority option]",
            "untrusted: malformed options]"
        ]
    );
    assert!(text(&output.stderr).contains("no usable key: nobody can connect"));
}

#[test]
fn a_comment_that_is_not_utf8_is_accepted_and_shown_lossily() {
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("authorized_keys");
    let latin1 = fs::read(fixture("latin1_ed25519.pub")).unwrap();
    assert!(
        std::str::from_utf8(&latin1).is_err(),
        "the fixture is Latin-1"
    );
    let out = ok(authorize(&file)
        .arg(fixture("latin1_ed25519.pub"))
        .output()
        .unwrap());
    assert!(out.contains(" caf\u{fffd}@latin1 to "), "{out}");
    // As a key line argument, which is not UTF-8 either.
    let line = latin1.trim_ascii_end();
    let out = ok(authorize(&file)
        .arg(std::ffi::OsStr::from_bytes(line))
        .output()
        .unwrap());
    assert!(out.starts_with("already present: "), "{out}");
    let out = ok(authorize(&file).arg("--list").output().unwrap());
    assert!(out.contains(" caf\u{fffd}@latin1 (ED25519)"), "{out}");
    // The raw file, as sshd users have it: the key is trusted and removable.
    fs::write(&file, &latin1).unwrap();
    assert_eq!(AuthorizedKeys::load(&file).unwrap().entries.len(), 1);
    let out = ok(authorize(&file)
        .arg("--remove")
        .arg(std::ffi::OsStr::from_bytes(line))
        .output()
        .unwrap());
    assert!(out.starts_with("removed "), "{out}");
    assert_eq!(fs::read(&file).unwrap(), b"");
}

/// `serve` on 127.0.0.1:0 with `authorized_keys`, and the port it listens on.
fn serve(
    home: &Path,
    authorized_keys: &Path,
) -> (
    std::process::Child,
    u16,
    std::io::BufReader<std::process::ChildStderr>,
) {
    let started = common::start_serve(home, authorized_keys, &[]);
    (started.child, started.addr.port(), started.stderr)
}

#[test]
fn a_key_refused_by_its_line_is_logged_with_file_line_and_reason_and_the_client_learns_none() {
    use std::io::Read;
    let home = tempfile::tempdir().unwrap();
    let identity = home.path().join("client");
    fs::copy(fixture("client_ed25519"), &identity).unwrap();
    fs::set_permissions(&identity, fs::Permissions::from_mode(0o600)).unwrap();
    let client = fs::read_to_string(fixture("client_ed25519.pub")).unwrap();
    let fingerprint = client_fingerprint_line()
        .split(' ')
        .nth(1)
        .unwrap()
        .to_owned();
    let file = home.path().join("authorized_keys");
    let cases = [
        (
            format!("# shared with sshd\ncommand=\"/usr/bin/backup\",restrict {client}"),
            format!("{}:2: key {fingerprint} is not trusted because of the option command= (forces a command)", file.display()),
            format!("permission denied: key {fingerprint} is not authorized on this server"),
        ),
        (
            format!("expiry-time=\"20200101Z\" {client}"),
            format!("{}:1: key {fingerprint} expired on 2020-01-01 00:00:00 UTC", file.display()),
            format!("permission denied: key {fingerprint} expired on 2020-01-01 00:00:00 UTC"),
        ),
        (
            format!("\n\nfrom=\"192.0.2.0/24\" {client}"),
            format!("{}:3: key {fingerprint} is not allowed from 127.0.0.1 (from=\"192.0.2.0/24\")", file.display()),
            format!("permission denied: key {fingerprint} is not allowed from 127.0.0.1"),
        ),
    ];
    for (contents, logged, told) in cases {
        fs::write(&file, contents).unwrap();
        fs::set_permissions(&file, fs::Permissions::from_mode(0o600)).unwrap();
        let (mut server, port, mut log) = serve(home.path(), &file);
        let output = common::noise_echo(home.path())
            .arg("connect")
            .arg(format!("127.0.0.1:{port}"))
            .arg("-i")
            .arg(&identity)
            .arg("--known-hosts")
            .arg(home.path().join("known_hosts"))
            .args(["--accept-new-host", "hi"])
            .output()
            .unwrap();
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(server.id().to_string())
            .status();
        let mut rest = String::new();
        log.read_to_string(&mut rest).unwrap();
        let _ = server.wait();
        assert_eq!(output.status.code(), Some(5), "{}", text(&output.stderr));
        let errors = text(&output.stderr);
        assert!(errors.contains(&told), "{errors}");
        assert!(
            !errors.contains("authorized_keys") || told.contains("authorized_keys"),
            "the client must not learn the file: {errors}"
        );
        assert!(!errors.contains("command="), "{errors}");
        assert!(rest.contains(&format!("denied: {logged}")), "{rest}");
        // With the line's comment, as for an admitted key.
        assert!(
            rest.contains("comment=\"client@noise-echo-test\""),
            "{rest}"
        );
    }
}

#[test]
fn help_documents_the_key_forms_the_new_flags_and_the_exit_statuses() {
    let out = ok(Command::cargo_bin("noise-echo")
        .unwrap()
        .args(["authorize", "--help"])
        .output()
        .unwrap());
    for expected in [
        "--from <PATTERNS>",
        "--expires <YYYYMMDD[HHMM[SS]]>",
        "--remove <KEY>...",
        "USER.keys",
        "Exit status:",
        "  1  nothing to add",
    ] {
        assert!(out.contains(expected), "{expected}: {out}");
    }
}

#[test]
fn list_shows_cert_authority_lines_with_their_principals() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("authorized_keys");
    let ca = fs::read_to_string(fixture("certs/user_ca.pub")).unwrap();
    let ca = ca.trim();
    let (_, plain) = key_line("ann@laptop");
    fs::write(
        &file,
        format!(
            "{plain}\ncert-authority,principals=\"alice,bob\",from=\"10.0.0.0/8\" {ca}\n\
             cert-authority,principals=\"carol\",expiry-time=\"20200101\" {ca}\n"
        ),
    )
    .unwrap();
    let output = authorize(&file).arg("--list").output().unwrap();
    let out = ok(output);
    let rows: Vec<&str> = out.lines().collect();
    assert_eq!(rows.len(), 3, "{out}");
    // The CA's fingerprint as ssh-keygen -L names it (keys/certs/ssh-keygen-L.txt).
    let ca_columns =
        "256 SHA256:HN+9UtPLkTwN5vudstCI+EOaWhI2Nc3urDOdS8IgWeM user-ca@noise-echo-test (ED25519)";
    assert_eq!(
        rows[1],
        format!(
            "{ca_columns} [cert-authority,principals=\"alice,bob\",from=\"10.0.0.0/8\"] \
             [CA: user certificates for principals alice, bob]"
        )
    );
    assert_eq!(
        rows[2],
        format!(
            "{ca_columns} [cert-authority,principals=\"carol\",expiry-time=\"20200101\"] \
             [CA: user certificates for principals carol] [expired 2020-01-01 00:00:00 UTC]"
        )
    );
    // A file with only a CA line is usable: certificates it signed can connect.
    fs::write(&file, format!("cert-authority,principals=\"alice\" {ca}\n")).unwrap();
    let output = authorize(&file).arg("--list").output().unwrap();
    assert!(
        !text(&output.stderr).contains("no usable key"),
        "{}",
        text(&output.stderr)
    );
    assert!(ok(output).ends_with("[CA: user certificates for principals alice]\n"));
}
