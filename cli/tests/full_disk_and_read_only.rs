//! A full disk or a read-only directory during `keygen` and `authorize`: a clear
//! error, the old files intact, nothing half-written left behind.
//!
//! We run as root, so permission bits do not stop writes; these tests mount a small
//! tmpfs (and remount it read-only). Where `mount` is not permitted (an unprivileged
//! container), they say so and pass without checking: the same code paths are
//! covered by the crash-safety tests of `fsutil` and `keyfile`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::BIN;

/// A tmpfs mounted on a temporary directory, unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let mounted = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir.path())
            .output()
            .is_ok_and(|output| output.status.success());
        if !mounted {
            eprintln!("SKIPPED: cannot mount a tmpfs here (not root, or no CAP_SYS_ADMIN)");
            return None;
        }
        Some(Self { dir })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Fills the filesystem: writes until the disk is full.
    fn fill(&self) {
        use std::io::Write;
        let mut file = std::fs::File::create(self.path("filler")).unwrap();
        let block = vec![0u8; 4096];
        // At most 1 GiB: the tmpfs is far smaller, so this ends at ENOSPC.
        for _ in 0..(1 << 18) {
            if file
                .write_all(&block)
                .and_then(|()| file.sync_all())
                .is_err()
            {
                return;
            }
        }
        panic!("the tmpfs never filled up");
    }

    fn remount_read_only(&self) {
        let status = Command::new("mount")
            .args(["-o", "remount,ro"])
            .arg(self.dir.path())
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Every file name in the mount, for spotting leftovers.
    fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// Runs the binary; returns (success, stderr).
fn run(args: &[&str]) -> (bool, String) {
    let output = Command::new(BIN).args(args).output().unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn text(path: &Path) -> String {
    path.to_str().unwrap().to_owned()
}

/// Sets up a key pair and an authorized_keys in `fs`, breaks the filesystem with
/// `break_it`, then checks every writing command fails clearly and changes nothing.
fn check_writes_fail_cleanly(fs: &Tmpfs, break_it: impl FnOnce(&Tmpfs), expected_error: &str) {
    let key = fs.path("id");
    let authorized = fs.path("authorized_keys");
    assert!(run(&["keygen", "-f", &text(&key), "-C", "old"]).0);
    let other = tempfile::tempdir().unwrap();
    let other_key = other.path().join("other");
    assert!(run(&["keygen", "-f", &text(&other_key), "-C", "other"]).0);
    // Two keys: removing one must write a non-empty file (an empty one fits even
    // on a full disk).
    let third = other.path().join("third");
    assert!(run(&["keygen", "-f", &text(&third), "-C", "third"]).0);
    for public in [
        format!("{}.pub", text(&key)),
        format!("{}.pub", text(&third)),
    ] {
        assert!(
            run(&[
                "authorize",
                "--authorized-keys",
                &text(&authorized),
                &public
            ])
            .0
        );
    }
    let before: Vec<(PathBuf, Vec<u8>)> = [key.clone(), fs.path("id.pub"), authorized.clone()]
        .into_iter()
        .map(|path| {
            let bytes = std::fs::read(&path).unwrap();
            (path, bytes)
        })
        .collect();
    let names_before = fs.names();

    break_it(fs);
    let names_broken = fs.names();

    let fingerprint = run(&["fingerprint", &text(&key)]);
    assert!(fingerprint.0, "reading still works: {}", fingerprint.1);
    let attempts: [Vec<String>; 4] = [
        vec!["keygen".into(), "-f".into(), text(&key), "--force".into()],
        vec!["keygen".into(), "-f".into(), text(&fs.path("new"))],
        vec![
            "authorize".into(),
            "--authorized-keys".into(),
            text(&authorized),
            format!("{}.pub", text(&other_key)),
        ],
        vec![
            "authorize".into(),
            "--authorized-keys".into(),
            text(&authorized),
            "--remove".into(),
            fingerprint_of(&key),
        ],
    ];
    for args in &attempts {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (ok, stderr) = run(&args);
        eprintln!("{} -> {}", args.join(" "), stderr.trim());
        assert!(!ok, "{args:?} succeeded on a broken filesystem");
        assert!(
            stderr.starts_with("error: ") && stderr.contains(expected_error),
            "{args:?}: unclear error {stderr:?}"
        );
        for (path, bytes) in &before {
            assert_eq!(
                &std::fs::read(path).unwrap(),
                bytes,
                "{} changed",
                path.display()
            );
        }
        assert_eq!(fs.names(), names_broken, "{args:?} left files behind");
    }
    assert!(names_before.iter().all(|name| names_broken.contains(name)));
}

fn fingerprint_of(key: &Path) -> String {
    let output = Command::new(BIN)
        .args(["fingerprint", &text(key)])
        .output()
        .unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    stdout
        .split_whitespace()
        .find(|word| word.starts_with("SHA256:"))
        .unwrap()
        .to_owned()
}

#[test]
fn a_full_disk_fails_keygen_and_authorize_cleanly() {
    let Some(fs) = Tmpfs::mount("256k") else {
        return;
    };
    check_writes_fail_cleanly(&fs, Tmpfs::fill, "No space left on device");
}

#[test]
fn a_read_only_directory_fails_keygen_and_authorize_cleanly() {
    let Some(fs) = Tmpfs::mount("256k") else {
        return;
    };
    check_writes_fail_cleanly(&fs, Tmpfs::remount_read_only, "Read-only file system");
}

#[test]
fn a_disk_that_fills_between_the_private_and_public_key_leaves_no_half_pair() {
    let Some(fs) = Tmpfs::mount("64k") else {
        return;
    };
    // Fill the disk with one-page files, then free 1, 2, 3... pages and run keygen
    // each time. Somewhere in that range there is room for the private key's
    // temporary file but not for the public key's; whatever the exact page
    // accounting of this kernel (tmpfs counts blocks per CPU, so "exactly one free
    // page" is not reliable), every attempt must either write both files or leave
    // neither, and no temporary file.
    let mut pages = Vec::new();
    for index in 0..1000 {
        let path = fs.path(&format!("page{index}"));
        if std::fs::write(&path, [0u8; 1]).is_err() {
            let _ = std::fs::remove_file(&path);
            break;
        }
        pages.push(path);
    }
    assert!(
        !pages.is_empty() && pages.len() < 1000,
        "{} pages",
        pages.len()
    );
    let mut failures = 0;
    for _free in 1..=6 {
        let Some(page) = pages.pop() else { break };
        std::fs::remove_file(page).unwrap();
        let (ok, stderr) = run(&["keygen", "-f", &text(&fs.path("id"))]);
        let names = fs.names();
        let has = |wanted: &str| names.iter().any(|name| name == wanted);
        if ok {
            assert!(
                has("id") && has("id.pub"),
                "keygen succeeded but left {names:?}"
            );
            std::fs::remove_file(fs.path("id")).unwrap();
            std::fs::remove_file(fs.path("id.pub")).unwrap();
        } else {
            failures += 1;
            assert!(stderr.contains("No space left on device"), "{stderr}");
            assert!(
                !names
                    .iter()
                    .any(|name| name == "id" || name == "id.pub" || name.ends_with(".tmp")),
                "a failed keygen left {names:?}"
            );
        }
    }
    eprintln!("keygen on a nearly full disk: {failures} of 6 attempts failed cleanly");
}
