//! The certificate matrix against the ssh-keygen fixtures in keys/certs/.
use super::*;
use crate::openssh::authorized_keys::AuthorizedKeys;
use proptest::prelude::*;
use std::path::Path;

fn fixture(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("keys")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn blob(name: &str) -> Vec<u8> {
    use base64::Engine as _;
    let text = fixture(&format!("certs/{name}-cert.pub"));
    let data = text.split_whitespace().nth(1).expect("base64 field");
    base64::engine::general_purpose::STANDARD
        .decode(data)
        .expect("base64")
}

fn key(name: &str) -> PublicKey {
    PublicKey::parse_openssh_line(fixture(name).trim())
        .expect("key")
        .0
}

fn authorities(options: &str, ca: &str) -> AuthorizedKeys {
    let text = format!("{options} {}", fixture(&format!("certs/{ca}.pub")));
    AuthorizedKeys::parse(text.as_bytes(), Path::new("authorized_keys"))
}

/// 2026-01-01T00:00:00Z: inside every fixture's window but the past and future ones.
fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_767_225_600)
}

fn outcome(result: Result<Accepted<'_>, CertificateError>) -> String {
    match result {
        Ok(accepted) => format!("accepted as {}", accepted.principal),
        Err(error) => error.to_string(),
    }
}

#[test]
fn the_certificate_matrix_decides_every_fixture_as_sshd_would() {
    let alice = authorities("cert-authority,principals=\"alice\"", "user_ca");
    let bob = authorities("cert-authority,principals=\"carol,bob\"", "user_ca");
    let host_ca = authorities("cert-authority,principals=\"alice,localhost\"", "host_ca");
    let far = authorities(
        "cert-authority,principals=\"alice\",from=\"10.0.0.0/8\"",
        "user_ca",
    );
    let client = key("client_ed25519.pub");
    let host = key("host_ed25519_key.pub");
    let local: IpAddr = "127.0.0.1".parse().unwrap();
    let cases: Vec<(&str, &AuthorizedKeys, PublicKey, &str, &str)> = vec![
        ("valid", &alice, client, "127.0.0.1", "accepted as alice"),
        ("valid", &bob, client, "127.0.0.1", "accepted as bob"),
        ("valid_window", &alice, client, "127.0.0.1", "accepted as alice"),
        ("expired", &alice, client, "127.0.0.1", "certificate expired on 2021-01-01T00:00:00"),
        ("not_yet_valid", &alice, client, "127.0.0.1", "certificate is not valid before 2099-01-01T00:00:00"),
        ("wrong_principal", &alice, client, "127.0.0.1", "certificate principals carol are not accepted"),
        ("no_principals", &alice, client, "127.0.0.1", "certificate names no principals"),
        ("host_type", &alice, client, "127.0.0.1", "certificate is a host certificate, a user certificate is needed"),
        ("unknown_critical", &alice, client, "127.0.0.1", "certificate has the critical option unknown-option@noise-echo.test, which noise-echo does not support"),
        ("force_command", &alice, client, "127.0.0.1", "certificate has the critical option force-command, which noise-echo does not support"),
        ("source_address", &alice, client, "127.0.0.5", "accepted as alice"),
        ("source_address", &alice, client, "127.0.0.1", "certificate is not valid from 127.0.0.1 (source-address 127.0.0.5/32)"),
        ("source_networks", &alice, client, "::ffff:10.1.2.3", "accepted as alice"),
        ("source_networks", &alice, client, "::1", "accepted as alice"),
        ("source_networks", &alice, client, "127.0.0.1", "certificate is not valid from 127.0.0.1 (source-address 10.0.0.0/8,::1/128)"),
        ("other_ca", &alice, client, "127.0.0.1", "certificate signed by CA SHA256:+qYnENl3ddWdPPF66as/DaxXYv1a1ZgD0Udfvvq4eTU, which is not trusted"),
        ("valid", &alice, host, "127.0.0.1", "certificate is for key SHA256:WZyIbFacJRQsF1FTuV+9PAQnQYGwI19yyCo3VXdEsUQ, not the authenticated key SHA256:p7ISYCr0ldmlT0dGaLmtFyGtVl1naWVTg7PlpM/EXTY"),
        ("host", &host_ca, host, "127.0.0.1", "certificate is a host certificate, a user certificate is needed"),
        ("valid", &far, client, "127.0.0.1", "key SHA256:HN+9UtPLkTwN5vudstCI+EOaWhI2Nc3urDOdS8IgWeM is not allowed from 127.0.0.1"),
    ];
    let mut failures = Vec::new();
    for (case, file, authenticated, addr, expected) in &cases {
        let addr: IpAddr = addr.parse().unwrap();
        let got = outcome(check_user_certificate(
            &blob(case),
            authenticated,
            &file.cert_authorities,
            addr,
            now(),
        ));
        println!("{case:16} {addr:16} expected: {expected:40} got: {got}");
        if got != *expected {
            failures.push(format!(
                "{case} from {addr}: expected {expected:?}, got {got:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    // The line numbers reach the log.
    let refused = check_user_certificate(
        &blob("wrong_principal"),
        &client,
        &alice.cert_authorities,
        local,
        now(),
    );
    assert_eq!(refused.unwrap_err().line(), Some(1));
}

#[test]
fn the_clock_skew_admits_a_certificate_a_minute_early_and_expiry_is_exact() {
    let file = authorities("cert-authority,principals=\"alice\"", "user_ca");
    let client = key("client_ed25519.pub");
    let addr: IpAddr = "127.0.0.1".parse().unwrap();
    let start = 4_070_908_800; // 2099-01-01
    let at = |secs: u64| UNIX_EPOCH + Duration::from_secs(secs);
    let check = |name: &str, secs| {
        check_user_certificate(&blob(name), &client, &file.cert_authorities, addr, at(secs))
    };
    assert!(check("not_yet_valid", start - CLOCK_SKEW.as_secs()).is_ok());
    assert_eq!(
        check("not_yet_valid", start - CLOCK_SKEW.as_secs() - 1).unwrap_err(),
        CertificateError::NotYetValid(start)
    );
    let end = 1_609_459_200; // 2021-01-01
    assert!(check("expired", end - 1).is_ok());
    assert_eq!(
        check("expired", end).unwrap_err(),
        CertificateError::Expired(end)
    );
}

#[test]
fn cert_authority_lines_need_principals_and_the_ca_key_is_not_a_client_key() {
    let file = authorities("cert-authority", "user_ca");
    assert!(file.cert_authorities.is_empty() && file.entries.is_empty());
    assert!(
        file.warnings[0]
            .to_string()
            .starts_with("authorized_keys:1: key SHA256:HN+9"),
        "{}",
        file.warnings[0]
    );
    assert!(
        file.warnings[0].message.contains("add principals="),
        "{}",
        file.warnings[0]
    );
    let file = authorities("principals=\"alice\"", "user_ca");
    assert!(file.cert_authorities.is_empty() && file.untrusted.len() == 1);
    let file = authorities("cert-authority,principals=\"alice,bob\"", "user_ca");
    assert_eq!(file.cert_authorities[0].principals, ["alice", "bob"]);
    assert!(file.entries.is_empty() && file.warnings.is_empty());
    let file = authorities("cert-authority,principals=\"alice,\"", "user_ca");
    assert!(file.cert_authorities.is_empty());
    assert!(
        file.warnings[0].message.contains("empty name"),
        "{}",
        file.warnings[0]
    );
}

#[test]
fn a_tampered_or_truncated_certificate_is_refused() {
    let good = blob("valid");
    let mut tampered = good.clone();
    let at = tampered.len() / 2;
    tampered[at] ^= 1;
    assert!(Certificate::from_blob(&tampered).is_err());
    for len in [0, 10, good.len() / 2, good.len() - 1] {
        assert!(
            matches!(
                Certificate::from_blob(&good[..len]),
                Err(CertificateError::Malformed(_))
            ),
            "{len}"
        );
    }
    // The signature covers everything before it.
    let mut resigned = good.clone();
    let last = resigned.len() - 1;
    resigned[last] ^= 1;
    assert_eq!(
        Certificate::from_blob(&resigned),
        Err(CertificateError::BadSignature)
    );
}

#[test]
fn the_listing_is_ssh_keygen_l_for_every_fixture() {
    let expected = fixture("certs/ssh-keygen-L.txt");
    for block in expected.split("== ").filter(|block| !block.is_empty()) {
        let (name, listing) = block.split_once('\n').unwrap();
        let text = fixture(&format!("certs/{name}"));
        let certificate = Certificate::from_openssh_line(&text).unwrap();
        assert_eq!(certificate.to_keygen_listing(), listing, "{name}");
    }
}

proptest! {
    #[test]
    fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600), cut in 0usize..400, flip in any::<u8>()) {
        let client = key("client_ed25519.pub");
        let file = authorities("cert-authority,principals=\"alice\"", "user_ca");
        let addr: IpAddr = "127.0.0.1".parse().unwrap();
        let _ = check_user_certificate(&bytes, &client, &file.cert_authorities, addr, now());
        // Damage to a real certificate, the likelier input, too.
        let mut real = blob("valid");
        let at = cut % real.len();
        real[at] ^= flip | 1;
        prop_assert!(check_user_certificate(&real, &client, &file.cert_authorities, addr, now()).is_err());
        real.truncate(cut);
        prop_assert!(Certificate::from_blob(&real).is_err());
    }
}
