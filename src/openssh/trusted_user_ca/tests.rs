//! The TrustedUserCAKeys and principals files against the ssh-keygen fixtures.
use super::*;
use std::time::{Duration, UNIX_EPOCH};

fn fixture(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("keys")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn certificate(name: &str) -> Certificate {
    Certificate::from_openssh_line(&fixture(&format!("certs/{name}-cert.pub"))).unwrap()
}

fn client() -> PublicKey {
    PublicKey::parse_openssh_line(fixture("client_ed25519.pub").trim())
        .unwrap()
        .0
}

/// 2026-01-01T00:00:00Z, as in the certificate module's matrix.
fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_767_225_600)
}

fn cas() -> TrustedUserCas {
    let text = format!(
        "# fleet user CAs\n\n{}ssh-rsa AAAAB3NzaC1yc2E= old rsa ca\nfrom=\"10.0.0.0/8\" {}",
        fixture("certs/user_ca.pub"),
        fixture("certs/host_ca.pub")
    );
    TrustedUserCas::parse(text.as_bytes(), Path::new("/etc/noise-echo/user_cas"))
}

fn principals(text: &str) -> AuthorizedPrincipals {
    AuthorizedPrincipals::parse(text.as_bytes(), Path::new("principals"))
}

#[test]
fn ca_file_takes_ed25519_keys_and_warns_about_the_rest() {
    let cas = cas();
    assert_eq!(cas.keys.len(), 1);
    assert_eq!(cas.keys[0].line, 3);
    assert_eq!(cas.keys[0].comment, "user-ca@noise-echo-test");
    let warnings: Vec<String> = cas.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(warnings[0].starts_with("/etc/noise-echo/user_cas:4: ssh-rsa CA key skipped"));
    assert!(
        warnings[1].contains(":5: malformed line skipped"),
        "{warnings:?}"
    );
    assert!(warnings[1].contains("takes no options"), "{warnings:?}");
}

#[test]
fn principals_file_is_one_name_per_line() {
    let list = principals("# who may log in\nalice\n  bob  \r\nfrom=\"10.0.0.1\" carol\n\n");
    let names: Vec<(&str, usize)> = list
        .names
        .iter()
        .map(|entry| (entry.name.as_str(), entry.line))
        .collect();
    assert_eq!(names, [("alice", 2), ("bob", 3)]);
    assert!(list.contains("bob") && !list.contains("carol"));
    assert_eq!(list.warnings.len(), 1);
    assert_eq!(list.warnings[0].line, 4);
}

#[test]
fn the_trusted_ca_matrix() {
    let cas = cas();
    let alice = principals("alice\n");
    let carol_only = principals("dave\ncarol\n");
    let other = crate::identity::Identity::from_seed(&[3; 32], "x").public_key();
    let cases: Vec<(&str, &AuthorizedPrincipals, PublicKey, &str, &str)> = vec![
        ("valid", &alice, client(), "127.0.0.1", "accepted as alice (line 1)"),
        ("valid_window", &alice, client(), "127.0.0.1", "accepted as alice (line 1)"),
        ("wrong_principal", &carol_only, client(), "127.0.0.1", "accepted as carol (line 2)"),
        ("valid", &carol_only, client(), "127.0.0.1", "certificate principals alice,bob are not accepted"),
        ("expired", &alice, client(), "127.0.0.1", "certificate expired on 2021-01-01T00:00:00"),
        ("not_yet_valid", &alice, client(), "127.0.0.1", "certificate is not valid before 2099-01-01T00:00:00"),
        ("host_type", &alice, client(), "127.0.0.1", "certificate is a host certificate, a user certificate is needed"),
        ("unknown_critical", &alice, client(), "127.0.0.1", "certificate has the critical option unknown-option@noise-echo.test, which noise-echo does not support"),
        ("force_command", &alice, client(), "127.0.0.1", "certificate has the critical option force-command, which noise-echo does not support"),
        ("source_address", &alice, client(), "127.0.0.5", "accepted as alice (line 1)"),
        ("source_address", &alice, client(), "127.0.0.6", "certificate is not valid from 127.0.0.6 (source-address 127.0.0.5/32)"),
        ("no_principals", &alice, client(), "127.0.0.1", "certificate names no principals"),
        ("other_ca", &alice, client(), "127.0.0.1", "certificate signed by CA SHA256:"),
        ("valid", &alice, other, "127.0.0.1", "certificate is for key SHA256:"),
    ];
    for (name, list, key, addr, expected) in cases {
        let got = match cas.check(&certificate(name), &key, list, addr.parse().unwrap(), now()) {
            Ok(admission) => format!(
                "accepted as {} (line {})",
                admission.principal.name, admission.principal.line
            ),
            Err(error) => error.to_string(),
        };
        assert!(got.starts_with(expected), "{name} from {addr}: {got}");
    }
}
