//! The key commands (`keygen`, `fingerprint`) through the real binary, and byte
//! compatibility with OpenSSH's `ssh-keygen` both ways.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{fixture, noise_echo};

struct Output {
    status: i32,
    stdout: String,
    stderr: String,
}

fn run(command: &mut Command) -> Output {
    let output = command.output().unwrap();
    Output {
        status: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Copies a fixture into `dir` with mode 0600 (git checks private keys out as 0644).
fn private_fixture(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    fs::copy(fixture(name), &path).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    path
}

/// The real ssh-keygen, or None where OpenSSH is not installed. CI installs it
/// (.ci/run), so there a missing ssh-keygen is a failure, not a skip.
fn ssh_keygen() -> Option<Command> {
    let found = Command::new("ssh-keygen").arg("-?").output().is_ok();
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "ssh-keygen must be installed in CI"
        );
        eprintln!("ssh-keygen not installed: skipping the OpenSSH cross-check");
        return None;
    }
    Some(Command::new("ssh-keygen"))
}

#[test]
fn keygen_writes_private_0600_and_public_0644_and_prints_fingerprint() {
    let home = tempfile::tempdir().unwrap();
    let key = home.path().join("id");
    let out = run(noise_echo(home.path())
        .args(["keygen", "-f"])
        .arg(&key)
        .args(["-C", "me@test"]));
    assert_eq!(out.status, 0, "{}", out.stderr);
    assert_eq!(mode(&key), 0o600);
    assert_eq!(mode(&home.path().join("id.pub")), 0o644);
    let public_line = fs::read_to_string(home.path().join("id.pub")).unwrap();
    assert!(public_line.starts_with("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI"));
    assert!(public_line.ends_with(" me@test\n"));
    assert!(out
        .stdout
        .contains(&format!("Wrote private key: {}", key.display())));
    assert!(
        out.stdout.contains(public_line.trim_end()),
        "{}",
        out.stdout
    );
    let fingerprint = run(noise_echo(home.path()).arg("fingerprint").arg(&key));
    let printed = fingerprint
        .stdout
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_owned();
    assert!(
        out.stdout
            .contains(&format!("Fingerprint: {printed} me@test")),
        "{}",
        out.stdout
    );
}

#[test]
fn keygen_defaults_to_the_config_directory() {
    let home = tempfile::tempdir().unwrap();
    let out = run(noise_echo(home.path()).arg("keygen"));
    assert_eq!(out.status, 0, "{}", out.stderr);
    let dir = home.path().join(".config/noise-echo");
    assert_eq!(mode(&dir.join("id_ed25519")), 0o600);
    assert!(dir.join("id_ed25519.pub").exists());
    assert_eq!(mode(&dir), 0o700);
}

#[test]
fn keygen_refuses_to_overwrite_either_file_without_force() {
    let home = tempfile::tempdir().unwrap();
    let key = home.path().join("id");
    assert_eq!(
        run(noise_echo(home.path()).args(["keygen", "-f"]).arg(&key)).status,
        0
    );
    let before = fs::read(&key).unwrap();
    let out = run(noise_echo(home.path()).args(["keygen", "-f"]).arg(&key));
    assert_eq!(out.status, 1);
    assert_eq!(
        out.stderr.trim_end(),
        format!(
            "error: cannot write the new key: {}: already exists; refusing to overwrite it (use --force to replace it)",
            key.display()
        )
    );
    assert_eq!(fs::read(&key).unwrap(), before);

    // Only the .pub exists: still refused, and no private key appears.
    let lonely = home.path().join("lonely");
    fs::write(home.path().join("lonely.pub"), "keep me\n").unwrap();
    let out = run(noise_echo(home.path()).args(["keygen", "-f"]).arg(&lonely));
    assert_eq!(out.status, 1);
    assert!(!lonely.exists());
    assert_eq!(
        fs::read_to_string(home.path().join("lonely.pub")).unwrap(),
        "keep me\n"
    );

    let out = run(noise_echo(home.path())
        .args(["keygen", "--force", "-f"])
        .arg(&key));
    assert_eq!(out.status, 0, "{}", out.stderr);
    assert_ne!(fs::read(&key).unwrap(), before);
    assert_eq!(mode(&key), 0o600);
}

#[test]
fn keygen_refuses_a_symlink_and_never_writes_its_target() {
    let home = tempfile::tempdir().unwrap();
    let target = home.path().join("victim");
    let key = home.path().join("id");
    std::os::unix::fs::symlink(&target, &key).unwrap();
    let out = run(noise_echo(home.path()).args(["keygen", "-f"]).arg(&key));
    assert_eq!(out.status, 1);
    assert!(out.stderr.contains("already exists"), "{}", out.stderr);
    assert!(!target.exists());
}

#[test]
fn keygen_into_a_read_only_directory_fails_clearly_and_leaves_nothing() {
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join("ro");
    fs::create_dir(&dir).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o500)).unwrap();
    let probe = dir.join("probe");
    if fs::write(&probe, "").is_ok() {
        // Running as root: permissions do not stop us, so this test cannot apply.
        fs::remove_file(&probe).unwrap();
        eprintln!("running as root: read-only directory not enforced, skipping");
        return;
    }
    let out = run(noise_echo(home.path())
        .args(["keygen", "-f"])
        .arg(dir.join("id")));
    assert_eq!(out.status, 1);
    assert!(out.stderr.contains("Permission denied"), "{}", out.stderr);
    assert_eq!(fs::read_dir(&dir).unwrap().count(), 0);
}

#[test]
fn fingerprints_of_openssh_made_keys_match_ssh_keygen() {
    let home = tempfile::tempdir().unwrap();
    let expected = fs::read_to_string(fixture("fingerprints.txt")).unwrap();
    let mut expected = expected.lines();
    for name in ["client_ed25519.pub", "host_ed25519_key.pub"] {
        let out = run(noise_echo(home.path())
            .arg("fingerprint")
            .arg(fixture(name)));
        assert_eq!(out.status, 0, "{}", out.stderr);
        assert_eq!(out.stdout.trim_end(), expected.next().unwrap());
    }
    // The private key shows the same line.
    let private = private_fixture(home.path(), "client_ed25519");
    let out = run(noise_echo(home.path()).arg("fingerprint").arg(&private));
    let first = fs::read_to_string(fixture("fingerprints.txt")).unwrap();
    assert_eq!(out.stdout.trim_end(), first.lines().next().unwrap());
}

#[test]
fn fingerprint_lists_every_key_of_trust_files_and_names_skipped_lines() {
    let home = tempfile::tempdir().unwrap();
    let out = run(noise_echo(home.path())
        .arg("fingerprint")
        .arg(fixture("authorized_keys")));
    assert_eq!(out.status, 0, "{}", out.stderr);
    // The RSA key is shown too, as ssh-keygen -lf shows it.
    assert_eq!(out.stdout.lines().count(), 3, "{}", out.stdout);
    assert!(out.stdout.contains("3072 SHA256:"), "{}", out.stdout);
    assert!(
        out.stderr.contains("authorized_keys:5: skipped"),
        "{}",
        out.stderr
    );
    // ssh-keygen -H writes one hashed line per host pattern: 2 lines become 3.
    for (file, keys) in [("known_hosts", 2), ("known_hosts_hashed", 3)] {
        let out = run(noise_echo(home.path())
            .arg("fingerprint")
            .arg(fixture(file)));
        assert_eq!(out.status, 0, "{}", out.stderr);
        assert_eq!(out.stdout.lines().count(), keys, "{}", out.stdout);
    }
    let empty = home.path().join("empty");
    fs::write(&empty, "# nothing\n").unwrap();
    let out = run(noise_echo(home.path()).arg("fingerprint").arg(&empty));
    assert_eq!(out.status, 1);
    assert!(
        out.stderr
            .contains(&format!("{}: no key found", empty.display())),
        "{}",
        out.stderr
    );
}

/// The golden file keys/ssh-keygen-lf.txt: `== FILE` then what `ssh-keygen -lf FILE`
/// printed when keys/generate.sh made the fixtures.
fn recorded_ssh_keygen_output() -> Vec<(String, String)> {
    let golden = fs::read_to_string(fixture("ssh-keygen-lf.txt")).unwrap();
    let mut blocks: Vec<(String, String)> = Vec::new();
    for line in golden.lines() {
        match line.strip_prefix("== ") {
            Some(file) => blocks.push((file.to_owned(), String::new())),
            None => {
                let (_, lines) = blocks.last_mut().expect("a block header first");
                lines.push_str(line);
                lines.push('\n');
            }
        }
    }
    assert!(blocks.len() >= 12, "{blocks:?}");
    blocks
}

#[test]
fn fingerprint_prints_what_ssh_keygen_printed_for_every_fixture() {
    let home = tempfile::tempdir().unwrap();
    for (file, expected) in recorded_ssh_keygen_output() {
        let out = run(noise_echo(home.path())
            .arg("fingerprint")
            .arg(fixture(&file)));
        assert_eq!(out.status, 0, "{file}: {}", out.stderr);
        assert_eq!(out.stdout, expected, "{file}");
    }
}

#[test]
fn fingerprint_prints_what_ssh_keygen_prints_now() {
    let Some(_) = ssh_keygen() else {
        return;
    };
    let home = tempfile::tempdir().unwrap();
    // An encrypted private key without its .pub: the public half, and "no comment"
    // since the comment is encrypted.
    let lone = home.path().join("lone");
    fs::copy(fixture("passphrase_ed25519"), &lone).unwrap();
    let mut files: Vec<PathBuf> = vec![lone];
    for (file, _) in recorded_ssh_keygen_output() {
        files.push(fixture(&file));
    }
    for file in files {
        let theirs = run(ssh_keygen().unwrap().arg("-lf").arg(&file));
        if theirs.status != 0 {
            // A newer OpenSSH without DSA, say: the recorded output still checks us.
            eprintln!(
                "ssh-keygen -lf {} failed: {}",
                file.display(),
                theirs.stderr
            );
            continue;
        }
        let ours = run(noise_echo(home.path()).arg("fingerprint").arg(&file));
        assert_eq!(ours.stdout, theirs.stdout, "{}", file.display());
    }
}

#[test]
fn fingerprint_takes_several_files_stdin_and_key_lines() {
    let home = tempfile::tempdir().unwrap();
    let recorded = recorded_ssh_keygen_output();
    let expected = |name: &str| {
        recorded
            .iter()
            .find(|(file, _)| file == name)
            .map(|(_, lines)| lines.clone())
            .unwrap()
    };
    let out = run(noise_echo(home.path())
        .arg("fingerprint")
        .arg(fixture("rsa_3072.pub"))
        .arg(fixture("client_ed25519-cert.pub")));
    assert_eq!(out.status, 0, "{}", out.stderr);
    assert_eq!(
        out.stdout,
        expected("rsa_3072.pub") + &expected("client_ed25519-cert.pub")
    );

    let out = run(noise_echo(home.path())
        .args(["fingerprint", "-"])
        .stdin(fs::File::open(fixture("known_hosts")).unwrap()));
    assert_eq!(out.status, 0, "{}", out.stderr);
    assert_eq!(out.stdout, expected("known_hosts"));

    // A private key on stdin: its public half (the comment is in clear when unencrypted).
    let out = run(noise_echo(home.path())
        .args(["fingerprint", "-"])
        .stdin(fs::File::open(fixture("client_ed25519")).unwrap()));
    assert_eq!(out.status, 0, "{}", out.stderr);
    assert_eq!(out.stdout, expected("client_ed25519"));

    let line = fs::read_to_string(fixture("ecdsa_p256.pub")).unwrap();
    let out = run(noise_echo(home.path())
        .arg("fingerprint")
        .arg(line.trim_end()));
    assert_eq!(out.status, 0, "{}", out.stderr);
    assert_eq!(out.stdout, expected("ecdsa_p256.pub"));

    // One bad argument among good ones: the good ones are shown, the status is 1.
    let out = run(noise_echo(home.path())
        .arg("fingerprint")
        .arg(fixture("rsa_3072.pub"))
        .arg("no/such/file"));
    assert_eq!(out.status, 1);
    assert_eq!(out.stdout, expected("rsa_3072.pub"));
    assert!(
        out.stderr
            .contains("cannot read no/such/file (it is neither a file nor a key line)"),
        "{}",
        out.stderr
    );
}

#[test]
fn refused_keys_get_errors_that_name_the_file_and_the_fix() {
    let home = tempfile::tempdir().unwrap();
    // Too open.
    let key = private_fixture(home.path(), "client_ed25519");
    fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
    let error = noise_echo::openssh::keyfile::read_identity(&key)
        .unwrap_err()
        .to_string();
    assert_eq!(
        error,
        format!(
            "{0}: permissions 0644 are too open: a private key must be readable by its owner only (fix: chmod 600 {0})",
            key.display()
        )
    );
    // Passphrase, read without a way to ask for it.
    let key = private_fixture(home.path(), "passphrase_ed25519");
    let error = noise_echo::openssh::keyfile::read_identity(&key)
        .unwrap_err()
        .to_string();
    assert!(error.contains("protected by a passphrase"), "{error}");
    assert!(error.contains("ssh-keygen -p -N ''"), "{error}");
    // Other algorithms, private and public.
    for (name, algorithm) in [
        ("rsa_3072", "ssh-rsa"),
        ("ecdsa_p256", "ecdsa-sha2-nistp256"),
    ] {
        let key = private_fixture(home.path(), name);
        let error = noise_echo::openssh::keyfile::read_identity(&key)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains(&format!("this is a {algorithm} key")),
            "{error}"
        );
        assert!(
            error.contains("only ssh-ed25519 keys are supported"),
            "{error}"
        );
        // As identities through the binary: refused, naming the file and the fix.
        let out = run(noise_echo(home.path())
            .args(["connect", "127.0.0.1:1", "-i"])
            .arg(&key)
            .arg("x"));
        assert_eq!(out.status, 1);
        assert!(
            out.stderr.contains(&format!(
                "error: cannot load the identity: {}: this is a {algorithm} key",
                key.display()
            )),
            "{}",
            out.stderr
        );
        assert!(
            out.stderr.contains("ssh-keygen -t ed25519"),
            "{}",
            out.stderr
        );
    }
}

#[test]
fn openssh_made_private_key_loads_with_the_right_public_key() {
    let home = tempfile::tempdir().unwrap();
    let key = private_fixture(home.path(), "client_ed25519");
    let identity = noise_echo::openssh::keyfile::read_identity(&key).unwrap();
    let public_line = fs::read_to_string(fixture("client_ed25519.pub")).unwrap();
    assert_eq!(
        identity.public_key().to_openssh_line(identity.comment()),
        public_line.trim_end()
    );
}

#[test]
fn ssh_keygen_reads_our_keys_and_agrees_on_fingerprints() {
    let Some(mut derive_public) = ssh_keygen() else {
        return;
    };
    let home = tempfile::tempdir().unwrap();
    let key = home.path().join("ours");
    assert_eq!(
        run(noise_echo(home.path())
            .args(["keygen", "-C", "ours@test", "-f"])
            .arg(&key))
        .status,
        0
    );
    // ssh-keygen -y derives the public key from our private key file.
    let derived = run(derive_public.arg("-y").arg("-f").arg(&key));
    assert_eq!(derived.status, 0, "{}", derived.stderr);
    let ours = fs::read_to_string(home.path().join("ours.pub")).unwrap();
    assert_eq!(derived.stdout.trim_end(), ours.trim_end());
    // ssh-keygen -lf prints the fingerprint we print.
    let theirs = run(ssh_keygen()
        .unwrap()
        .arg("-lf")
        .arg(home.path().join("ours.pub")));
    let mine = run(noise_echo(home.path())
        .arg("fingerprint")
        .arg(home.path().join("ours.pub")));
    assert_eq!(theirs.stdout, mine.stdout);
    let theirs_private = run(ssh_keygen().unwrap().arg("-lf").arg(&key));
    let mine_private = run(noise_echo(home.path()).arg("fingerprint").arg(&key));
    assert_eq!(theirs_private.stdout, mine_private.stdout);
}

#[test]
fn we_read_keys_ssh_keygen_makes_now() {
    let Some(mut keygen) = ssh_keygen() else {
        return;
    };
    let home = tempfile::tempdir().unwrap();
    for round in 0..5 {
        let key = home.path().join(format!("theirs{round}"));
        let out = run(keygen
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "theirs@test", "-f"])
            .arg(&key));
        assert_eq!(out.status, 0, "{}", out.stderr);
        keygen = Command::new("ssh-keygen");
        let identity = noise_echo::openssh::keyfile::read_identity(&key).unwrap();
        let public_line =
            fs::read_to_string(home.path().join(format!("theirs{round}.pub"))).unwrap();
        assert_eq!(
            identity.public_key().to_openssh_line("theirs@test"),
            public_line.trim_end()
        );
    }
}

#[test]
fn keygen_takes_what_ssh_keygen_users_type() {
    let home = tempfile::tempdir().unwrap();
    let key = home.path().join("k");
    // -t ed25519 -N '' -q: a key, no output.
    let out = run(noise_echo(home.path())
        .args([
            "keygen", "-t", "ed25519", "-N", "", "-q", "-C", "me@test", "-f",
        ])
        .arg(&key));
    assert_eq!(out.status, 0, "{}", out.stderr);
    assert_eq!(out.stdout, "");
    assert_eq!(out.stderr, "");
    let identity = noise_echo::openssh::keyfile::read_identity(&key).unwrap();
    assert_eq!(identity.comment(), "me@test");

    // -y prints the public key line, as ssh-keygen -y -f.
    let out = run(noise_echo(home.path())
        .args(["keygen", "-y", "-f"])
        .arg(&key));
    assert_eq!(out.status, 0, "{}", out.stderr);
    let public = fs::read_to_string(home.path().join("k.pub")).unwrap();
    assert_eq!(out.stdout, public);
    if let Some(mut theirs) = ssh_keygen() {
        let theirs = run(theirs.arg("-y").arg("-f").arg(&key));
        assert_eq!(out.stdout, theirs.stdout);
    }
    // -y of an RSA key: the public half, as ssh-keygen shows it.
    let rsa = private_fixture(home.path(), "rsa_3072");
    let out = run(noise_echo(home.path())
        .args(["keygen", "-y", "-f"])
        .arg(&rsa));
    assert_eq!(out.status, 0, "{}", out.stderr);
    let rsa_public = fs::read_to_string(fixture("rsa_3072.pub")).unwrap();
    let key_part = |line: &str| line.split(' ').take(2).collect::<Vec<_>>().join(" ");
    assert_eq!(key_part(&out.stdout), key_part(&rsa_public));
}

#[test]
fn keygen_refuses_other_key_types_with_the_reason() {
    let home = tempfile::tempdir().unwrap();
    for key_type in ["rsa", "ecdsa", "dsa", "ed25519-sk"] {
        let out = run(noise_echo(home.path())
            .args(["keygen", "-t", key_type, "-f"])
            .arg(home.path().join("k")));
        assert_eq!(out.status, 2, "{key_type}");
        assert!(
            out.stderr.contains(&format!(
                "invalid value '{key_type}' for '-t <TYPE>': noise-echo keys are Ed25519 only: "
            )),
            "{}",
            out.stderr
        );
        assert!(!home.path().join("k").exists());
    }
}

#[test]
fn keygen_refuses_a_missing_directory_as_ssh_keygen_does() {
    let home = tempfile::tempdir().unwrap();
    let key = home.path().join("missing/dir/k");
    let out = run(noise_echo(home.path()).args(["keygen", "-f"]).arg(&key));
    assert_eq!(out.status, 1);
    assert_eq!(
        out.stderr.trim_end(),
        format!(
            "error: Saving key \"{}\" failed: No such file or directory (create the directory first: mkdir -p {})",
            key.display(),
            home.path().join("missing/dir").display()
        )
    );
    assert!(!home.path().join("missing").exists());
    // The default directory is the one that is created.
    let out = run(noise_echo(home.path()).args(["keygen", "-q"]));
    assert_eq!(out.status, 0, "{}", out.stderr);
    assert!(home.path().join(".config/noise-echo/id_ed25519").is_file());
}

#[test]
fn keygen_without_user_in_the_environment_takes_the_name_from_the_password_database() {
    let id = Command::new("id").arg("-un").output();
    let Some(id) = id.ok().filter(|id| id.status.success()) else {
        eprintln!("no id command or no password entry for our uid: skipping");
        return;
    };
    let user = String::from_utf8_lossy(&id.stdout).trim().to_owned();
    let home = tempfile::tempdir().unwrap();
    let key = home.path().join("k");
    let out = run(noise_echo(home.path())
        .env_remove("USER")
        .env_remove("LOGNAME")
        .args(["keygen", "-f"])
        .arg(&key));
    assert_eq!(out.status, 0, "{}", out.stderr);
    let (_, comment) =
        noise_echo::openssh::keyfile::read_public_key(&home.path().join("k.pub")).unwrap();
    assert!(
        comment.starts_with(&format!("{user}@")),
        "{comment:?} should be {user}@HOST"
    );
}

/// Lines as people write them, compared with the real ssh-keygen -lf: markers,
/// quoted options, blanks kept in comments, tabs, leading blanks, a `#` remark.
#[test]
fn fingerprint_reads_each_line_as_ssh_keygen_does() {
    let Some(_) = ssh_keygen() else {
        return;
    };
    let home = tempfile::tempdir().unwrap();
    let key_of = |name: &str| {
        let line = fs::read_to_string(fixture(name)).unwrap();
        line.split(' ').take(2).collect::<Vec<_>>().join(" ")
    };
    let (ed25519, rsa) = (key_of("client_ed25519.pub"), key_of("rsa_3072.pub"));
    // ssh-keygen carries a comment over from an earlier line when a line has none of
    // its own (a stale pointer); the remark line comes first, where there is none.
    let lines = [
        format!("{ed25519} # a remark, not a comment"),
        format!("@cert-authority *.example.com {ed25519}"),
        format!("@revoked bad.example {rsa} revoked"),
        format!("host1,host2 {ed25519}   spaced   comment  "),
        format!("no-pty,command=\"echo a b\" {rsa}"),
        format!("from=\"10.0.0.1\",command=\"x \\\" y\" {ed25519} quoted"),
        format!("  \t{ed25519}\tafter a tab"),
        format!("[host]:2222 {rsa} port comment"),
    ];
    let file = home.path().join("lines");
    fs::write(&file, lines.join("\n") + "\n").unwrap();
    let theirs = run(ssh_keygen().unwrap().arg("-lf").arg(&file));
    assert_eq!(theirs.status, 0, "{}", theirs.stderr);
    let ours = run(noise_echo(home.path()).arg("fingerprint").arg(&file));
    assert_eq!(ours.status, 0, "{}", ours.stderr);
    assert_eq!(ours.stdout, theirs.stdout);
    assert!(
        ours.stderr
            .contains(":2: skipped: @cert-authority lines are not shown"),
        "{}",
        ours.stderr
    );
}

/// The blocks of keys/certs/ssh-keygen-L.txt: each certificate fixture's name and
/// what `ssh-keygen -L -f` printed for it after its first (`FILE:`) line, in UTC.
fn recorded_certificate_listings() -> Vec<(String, String)> {
    let recorded = fs::read_to_string(fixture("certs/ssh-keygen-L.txt")).unwrap();
    recorded
        .split("== ")
        .filter(|block| !block.is_empty())
        .map(|block| {
            let (name, listing) = block.split_once('\n').unwrap();
            (name.to_owned(), listing.to_owned())
        })
        .collect()
}

#[test]
fn fingerprint_l_prints_what_ssh_keygen_l_printed_for_every_certificate() {
    let home = tempfile::tempdir().unwrap();
    let listings = recorded_certificate_listings();
    assert!(listings.len() >= 13, "{} listings", listings.len());
    for (name, listing) in &listings {
        let out = run(noise_echo(home.path()).current_dir(fixture("certs")).args([
            "fingerprint",
            "-L",
            name,
        ]));
        assert_eq!(out.status, 0, "{name}: {}", out.stderr);
        assert_eq!(out.stdout, format!("{name}:\n{listing}"), "{name}");
        assert_eq!(out.stderr, "", "{name}");
    }
    // All of them at once, as one argument each: the same blocks, in order.
    let names: Vec<&str> = listings.iter().map(|(name, _)| name.as_str()).collect();
    let out = run(noise_echo(home.path())
        .current_dir(fixture("certs"))
        .args(["fingerprint", "--certificates"])
        .args(&names));
    let expected: String = listings
        .iter()
        .map(|(name, listing)| format!("{name}:\n{listing}"))
        .collect();
    assert_eq!((out.status, out.stdout), (0, expected));
}

#[test]
fn fingerprint_l_prints_what_ssh_keygen_l_prints_now() {
    let Some(mut keygen) = ssh_keygen() else {
        return;
    };
    let home = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Two certificates in one file, after a comment and a plain key: headings
    // name the line after the first.
    let both = dir.path().join("both-cert.pub");
    let host = fs::read_to_string(fixture("certs/host-cert.pub")).unwrap();
    let valid = fs::read_to_string(fixture("certs/source_address-cert.pub")).unwrap();
    fs::write(&both, format!("{host}# a comment\n{valid}")).unwrap();
    for file in [fixture("certs/valid_window-cert.pub"), both] {
        let theirs = run(keygen.env("TZ", "UTC").arg("-L").arg("-f").arg(&file));
        let ours = run(noise_echo(home.path())
            .arg("fingerprint")
            .arg("-L")
            .arg(&file));
        assert_eq!(ours.stdout, theirs.stdout, "{}", file.display());
        assert_eq!((ours.status, theirs.status), (0, 0));
        keygen = ssh_keygen().unwrap();
    }
}

#[test]
fn fingerprint_l_names_lines_that_are_not_certificates_and_reads_stdin() {
    let home = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mixed = dir.path().join("mixed");
    let valid = fs::read_to_string(fixture("certs/valid-cert.pub")).unwrap();
    let plain = fs::read_to_string(fixture("client_ed25519.pub")).unwrap();
    // A certificate whose CA signature no longer verifies.
    let mut damaged = valid.clone().into_bytes();
    // Inside the base64 field (before the comment), near its end: the signature.
    let last = valid.rfind(' ').unwrap() - 10;
    damaged[last] = if damaged[last] == b'A' { b'B' } else { b'A' };
    let damaged = String::from_utf8(damaged).unwrap();
    fs::write(&mixed, format!("{plain}{damaged}{valid}")).unwrap();
    let out = run(noise_echo(home.path())
        .arg("fingerprint")
        .arg("-L")
        .arg(&mixed));
    let shown = mixed.display();
    assert_eq!(out.status, 0, "{}", out.stderr);
    assert!(
        out.stdout
            .starts_with(&format!("{shown}:3:\n        Type: ")),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("Key ID: \"alice-valid\""),
        "{}",
        out.stdout
    );
    let errors: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(errors[0], format!("{shown}:1 is not a certificate"));
    assert!(
        errors[1].starts_with(&format!("{shown}:2: cannot show the certificate: ")),
        "{}",
        out.stderr
    );

    // A file without certificates fails, naming it; stdin is "(stdin)", numbered.
    let out = run(noise_echo(home.path())
        .args(["fingerprint", "-L"])
        .arg(fixture("client_ed25519.pub")));
    assert_eq!(out.status, 1);
    assert!(
        out.stderr.contains("no certificate shown"),
        "{}",
        out.stderr
    );
    let mut command = noise_echo(home.path());
    command
        .args(["fingerprint", "-L", "-"])
        .stdin(std::process::Stdio::piped());
    command.stdout(std::process::Stdio::piped());
    let mut child = command.spawn().unwrap();
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(valid.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(String::from_utf8_lossy(&output.stdout).starts_with("(stdin):1:\n        Type: "));
}
