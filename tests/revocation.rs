//! Revoked-keys files against fixtures made by the real ssh-keygen (keys/generate-certs.sh):
//! each KRL in keys/certs/krl/ and the text list revoke exactly the keys and
//! certificates they were made to, and `ssh-keygen -Q` agrees where it is installed.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use noise_echo::identity::PublicKey;
use noise_echo::openssh::certificate::Certificate;
use noise_echo::openssh::krl::{Krl, KrlError, Revocation};
use noise_echo::openssh::revoked::{RevokedKeys, RevokedKeysError};
use proptest::prelude::*;

fn keys_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("keys")
}

/// The plain keys checked, relative to keys/.
const KEYS: &[&str] = &[
    "client_ed25519.pub",
    "host_ed25519_key.pub",
    "certs/user_ca.pub",
    "certs/host_ca.pub",
    "certs/krl/revoked_user.pub",
];

/// Every certificate fixture, relative to keys/.
fn certificate_files() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(keys_dir().join("certs"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.ends_with("-cert.pub"))
        .map(|name| format!("certs/{name}"))
        .collect();
    names.push("certs/krl/revoked_user-cert.pub".to_owned());
    names.sort();
    names
}

fn read(name: &str) -> String {
    std::fs::read_to_string(keys_dir().join(name)).unwrap()
}

fn key(name: &str) -> PublicKey {
    PublicKey::parse_openssh_line(read(name).trim()).unwrap().0
}

fn certificate(name: &str) -> Certificate {
    Certificate::from_openssh_line(read(name).trim()).unwrap()
}

/// The fixtures (keys and certificates) `revoked` revokes.
fn revoked_by(revoked: &RevokedKeys) -> BTreeSet<String> {
    let keys = KEYS
        .iter()
        .filter(|name| revoked.is_revoked_key(&key(name)))
        .map(|name| (*name).to_owned());
    let certificates = certificate_files()
        .into_iter()
        .filter(|name| revoked.is_revoked_certificate(&certificate(name)));
    keys.chain(certificates).collect()
}

/// Every certificate of the user CA, serial and key ID, as keys/generate-certs.sh makes them.
const USER_CA_CERTIFICATES: &[(&str, u64)] = &[
    ("valid", 1),
    ("valid_window", 2),
    ("expired", 3),
    ("not_yet_valid", 4),
    ("wrong_principal", 5),
    ("no_principals", 6),
    ("host_type", 7),
    ("unknown_critical", 8),
    ("force_command", 9),
    ("source_address", 10),
    ("source_networks", 11),
];

/// The host certificates keys/generate-certs.sh makes for host_ed25519_key besides
/// certs/host-cert.pub, all signed by the host CA but host_other_ca (the user CA's).
const HOST_KEY_CERTIFICATES: &[&str] = &[
    "certs/host_critical-cert.pub",
    "certs/host_expired-cert.pub",
    "certs/host_no_principals-cert.pub",
    "certs/host_not_yet_valid-cert.pub",
    "certs/host_other_ca-cert.pub",
    "certs/host_user_type-cert.pub",
    "certs/host_wrong_principal-cert.pub",
];

/// [`HOST_KEY_CERTIFICATES`] signed by the host CA.
fn host_ca_certificates() -> Vec<String> {
    HOST_KEY_CERTIFICATES
        .iter()
        .filter(|name| !name.contains("other_ca"))
        .map(|name| (*name).to_owned())
        .collect()
}

fn user_ca_certificates(serials: impl Fn(u64) -> bool) -> Vec<String> {
    USER_CA_CERTIFICATES
        .iter()
        .filter(|(_, serial)| serials(*serial))
        .map(|(name, _)| format!("certs/{name}-cert.pub"))
        .collect()
}

/// What each fixture is meant to revoke (keys/generate-certs.sh says why).
fn expectations() -> Vec<(&'static str, Vec<String>)> {
    let strings = |names: &[&str]| {
        names
            .iter()
            .map(|name| (*name).to_owned())
            .collect::<Vec<_>>()
    };
    let client_certificates: Vec<String> = user_ca_certificates(|_| true)
        .into_iter()
        .chain(["certs/other_ca-cert.pub".to_owned()])
        .collect();
    vec![
        (
            "key.krl",
            [strings(&["client_ed25519.pub"]), client_certificates].concat(),
        ),
        ("serial.krl", user_ca_certificates(|serial| serial == 1)),
        (
            "serial_range.krl",
            [
                user_ca_certificates(|serial| {
                    (5..=12).contains(&serial) || (100..=100_000).contains(&serial)
                }),
                // Serial 105 under the user CA: a host certificate signed by the
                // wrong CA (keys/generate-certs.sh), revoked by the same range.
                strings(&["certs/host_other_ca-cert.pub"]),
            ]
            .concat(),
        ),
        (
            "serial_bitmap.krl",
            user_ca_certificates(|serial| [1, 3, 5, 7, 9].contains(&serial)),
        ),
        ("key_id.krl", strings(&["certs/expired-cert.pub"])),
        ("key_id_any_ca.krl", strings(&["certs/host-cert.pub"])),
        (
            "ca.krl",
            [
                strings(&[
                    "certs/user_ca.pub",
                    "certs/krl/revoked_user-cert.pub",
                    "certs/host_other_ca-cert.pub",
                ]),
                user_ca_certificates(|_| true),
            ]
            .concat(),
        ),
        (
            "sha256.krl",
            [
                strings(&["host_ed25519_key.pub", "certs/host-cert.pub"]),
                strings(HOST_KEY_CERTIFICATES),
            ]
            .concat(),
        ),
        (
            "sha1.krl",
            [
                strings(&[
                    "certs/host_ca.pub",
                    "certs/host-cert.pub",
                    "certs/other_ca-cert.pub",
                    // The rotated host key's certificate, by the same CA.
                    "certs/host_rotated-cert.pub",
                ]),
                host_ca_certificates(),
            ]
            .concat(),
        ),
        (
            "revoked_keys",
            [
                strings(&[
                    "certs/host_ca.pub",
                    "certs/host-cert.pub",
                    "certs/other_ca-cert.pub",
                    "certs/host_rotated-cert.pub",
                    "certs/krl/revoked_user.pub",
                    "certs/krl/revoked_user-cert.pub",
                ]),
                host_ca_certificates(),
            ]
            .concat(),
        ),
    ]
}

#[test]
fn each_fixture_revokes_exactly_what_it_was_made_to() {
    for (file, expected) in expectations() {
        let revoked = RevokedKeys::load(&keys_dir().join("certs/krl").join(file)).unwrap();
        let expected: BTreeSet<String> = expected.into_iter().collect();
        assert_eq!(revoked_by(&revoked), expected, "{file}");
        assert_eq!(revoked.krl().is_some(), file.ends_with(".krl"), "{file}");
    }
}

#[test]
fn ssh_keygen_agrees_on_every_krl() {
    if Command::new("ssh-keygen").arg("-?").output().is_err() {
        assert!(
            std::env::var_os("CI").is_none(),
            "ssh-keygen must be installed in CI"
        );
        eprintln!("ssh-keygen not installed: skipping the OpenSSH cross-check");
        return;
    }
    let subjects: Vec<String> = KEYS
        .iter()
        .map(|name| (*name).to_owned())
        .chain(certificate_files())
        .collect();
    for (file, _) in expectations()
        .into_iter()
        .filter(|(file, _)| file.ends_with(".krl"))
    {
        // ssh-keygen -Q prints "NAME (comment): REVOKED" or ": ok" per key.
        let output = Command::new("ssh-keygen")
            .current_dir(keys_dir())
            .args(["-Q", "-f"])
            .arg(format!("certs/krl/{file}"))
            .args(&subjects)
            .output()
            .unwrap();
        let stdout = String::from_utf8(output.stdout).unwrap();
        let theirs: BTreeSet<String> = stdout
            .lines()
            .filter(|line| line.ends_with(": REVOKED"))
            .map(|line| line.split(' ').next().unwrap().to_owned())
            .collect();
        assert_eq!(
            stdout.lines().count(),
            subjects.len(),
            "{file}: {stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let revoked = RevokedKeys::load(&keys_dir().join("certs/krl").join(file)).unwrap();
        assert_eq!(revoked_by(&revoked), theirs, "{file}");
    }
}

#[test]
fn revocations_name_their_reason() {
    let load = |file: &str| RevokedKeys::load(&keys_dir().join("certs/krl").join(file)).unwrap();
    let cases = [
        ("serial.krl", "valid", Revocation::Serial(1)),
        ("serial_bitmap.krl", "force_command", Revocation::Serial(9)),
        (
            "key_id.krl",
            "expired",
            Revocation::KeyId("alice-expired".to_owned()),
        ),
        (
            "key_id_any_ca.krl",
            "host",
            Revocation::KeyId("host-localhost".to_owned()),
        ),
        ("key.krl", "valid", Revocation::Key),
        ("ca.krl", "valid", Revocation::CaKey),
        ("revoked_keys", "other_ca", Revocation::CaKey),
    ];
    for (file, name, expected) in cases {
        let certificate = certificate(&format!("certs/{name}-cert.pub"));
        assert_eq!(
            load(file).certificate_revocation(&certificate),
            Some(expected),
            "{file} {name}"
        );
    }
    assert_eq!(
        Revocation::Serial(5).to_string(),
        "the certificate's serial 5 is revoked"
    );
}

#[test]
fn krl_sections_are_those_ssh_keygen_chose() {
    let summary = |file: &str| {
        let bytes = std::fs::read(keys_dir().join("certs/krl").join(file)).unwrap();
        Krl::parse(&bytes).unwrap().summary()
    };
    assert_eq!(summary("serial_bitmap.krl").serial_bitmaps, 1);
    assert_eq!(summary("serial_bitmap.krl").serial_ranges, 0);
    assert_eq!(summary("serial_range.krl").serial_ranges, 1);
    assert_eq!(summary("serial_range.krl").serial_bitmaps, 1);
    assert_eq!(summary("key.krl").explicit_keys, 1);
    assert_eq!(summary("sha1.krl").sha1_fingerprints, 1);
    assert_eq!(summary("sha256.krl").sha256_fingerprints, 1);
    assert_eq!(summary("key_id_any_ca.krl").key_ids, 1);
    let bytes = std::fs::read(keys_dir().join("certs/krl/serial.krl")).unwrap();
    assert_eq!(Krl::parse(&bytes).unwrap().version, 1);
}

#[test]
fn a_bad_text_line_is_named_and_the_rest_still_revokes() {
    let path = keys_dir().join("certs/krl/revoked_keys");
    let revoked = RevokedKeys::load(&path).unwrap();
    assert_eq!(revoked.warnings.len(), 1, "{:?}", revoked.warnings);
    let warning = revoked.warnings[0].to_string();
    assert!(
        warning.starts_with(&format!("{}:6: malformed ssh-ed25519 key", path.display())),
        "{warning}"
    );
    assert_eq!(revoked.other_key_types, 1);
    assert_eq!(revoked.listed_keys(), 2);
}

#[test]
fn unreadable_and_broken_files_are_errors_that_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing");
    let error = RevokedKeys::load(&missing).unwrap_err();
    assert!(matches!(error, RevokedKeysError::Read { .. }));
    assert!(error.to_string().contains("missing"), "{error}");
    assert!(RevokedKeys::load(dir.path()).is_err(), "a directory");

    let mut bytes = std::fs::read(keys_dir().join("certs/krl/serial.krl")).unwrap();
    bytes.truncate(bytes.len() - 3);
    let truncated = dir.path().join("truncated.krl");
    std::fs::write(&truncated, &bytes).unwrap();
    let error = RevokedKeys::load(&truncated).unwrap_err();
    assert!(
        matches!(
            error,
            RevokedKeysError::Krl {
                source: KrlError::Malformed { .. },
                ..
            }
        ),
        "{error:?}"
    );
    assert!(
        error
            .to_string()
            .contains("truncated.krl is not a valid KRL"),
        "{error}"
    );
}

/// The KRL fixtures, read once.
fn krl_fixtures() -> Vec<Vec<u8>> {
    expectations()
        .into_iter()
        .filter(|(file, _)| file.ends_with(".krl"))
        .map(|(file, _)| std::fs::read(keys_dir().join("certs/krl").join(file)).unwrap())
        .collect()
}

proptest! {
    /// Damaged KRLs (bytes changed, cut short, grown) are an answer, never a panic,
    /// and whatever still parses can be queried.
    #[test]
    fn mutated_krls_never_panic(
        which in 0usize..9,
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..6),
        cut in any::<usize>(),
        tail in proptest::collection::vec(any::<u8>(), 0..40),
    ) {
        let fixtures = krl_fixtures();
        let mut bytes = fixtures[which % fixtures.len()].clone();
        for (at, value) in edits {
            let at = at % bytes.len();
            bytes[at] = value;
        }
        if cut % 3 == 0 {
            bytes.truncate(cut % (bytes.len() + 1));
        } else {
            bytes.extend_from_slice(&tail);
        }
        if let Ok(krl) = Krl::parse(&bytes) {
            let _ = krl.is_revoked_key(&key("client_ed25519.pub"));
            let _ = krl.certificate_revocation(&certificate("certs/valid-cert.pub"));
        }
        let _ = RevokedKeys::parse(&bytes, Path::new("fuzzed"));
    }
}
