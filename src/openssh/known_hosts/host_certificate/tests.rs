//! Host certificates against `@cert-authority` lines: the ssh-keygen fixtures.
use super::*;
use std::path::Path;
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

fn host_key() -> PublicKey {
    PublicKey::parse_openssh_line(fixture("host_ed25519_key.pub").trim())
        .unwrap()
        .0
}

fn ca_line(patterns: &str, ca: &str) -> String {
    format!(
        "@cert-authority {patterns} {}",
        fixture(&format!("certs/{ca}.pub"))
    )
}

fn parse(text: &str) -> KnownHosts {
    KnownHosts::parse(text.as_bytes(), Path::new("kh"))
}

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_767_225_600)
}

fn verdict_text(verdict: &HostVerdict) -> String {
    match verdict {
        HostVerdict::Trusted(HostTrustedBy::Certificate {
            line, principal, ..
        }) => format!("trusted by certificate (line {line}, {principal})"),
        HostVerdict::Trusted(HostTrustedBy::Key { line }) => {
            format!("trusted by key (line {line})")
        }
        HostVerdict::Unknown {
            ignored_certificate_ca: Some(_),
        } => "unknown, certificate ignored".to_owned(),
        HostVerdict::Unknown { .. } => "unknown".to_owned(),
        HostVerdict::Changed { line, .. } => format!("changed (line {line})"),
        HostVerdict::Revoked { line, .. } => format!("revoked (line {line})"),
        HostVerdict::RevokedByFile { revocation, .. } => format!("revoked by file: {revocation}"),
        HostVerdict::CertInvalid { line, reason, .. } => format!("invalid (line {line}): {reason}"),
    }
}

#[test]
fn the_host_certificate_matrix() {
    let fleet = parse(&ca_line("localhost,127.0.0.1,[localhost]:*", "host_ca"));
    let elsewhere = parse(&ca_line("*.example.com", "host_ca"));
    let pinned_other = parse(&format!(
        "{}localhost {}",
        ca_line("localhost", "host_ca"),
        crate::identity::Identity::from_seed(&[5; 32], "")
            .public_key()
            .to_openssh_line("")
    ));
    let revoked_ca = parse(&format!(
        "{}@revoked * {}",
        ca_line("*", "host_ca"),
        fixture("certs/host_ca.pub")
    ));
    let key = host_key();
    let cases: Vec<(&str, &KnownHosts, &str, u16, &str)> = vec![
        ("host", &fleet, "localhost", 22, "trusted by certificate (line 1, localhost)"),
        ("host", &fleet, "LocalHost", 4444, "trusted by certificate (line 1, localhost)"),
        ("host", &fleet, "127.0.0.1", 22, "trusted by certificate (line 1, 127.0.0.1)"),
        ("host", &pinned_other, "localhost", 22, "trusted by certificate (line 1, localhost)"),
        ("host_expired", &fleet, "localhost", 22, "invalid (line 1): certificate expired on 2021-01-01T00:00:00"),
        ("host_not_yet_valid", &fleet, "localhost", 22, "invalid (line 1): certificate is not valid before 2099-01-01T00:00:00"),
        ("host_wrong_principal", &fleet, "localhost", 22, "invalid (line 1): host certificate is not valid for localhost (its principals: other.example)"),
        ("host_user_type", &fleet, "localhost", 22, "invalid (line 1): certificate is a user certificate, a host certificate is needed"),
        ("host_no_principals", &fleet, "localhost", 22, "invalid (line 1): certificate names no principals"),
        ("host_critical", &fleet, "localhost", 22, "invalid (line 1): certificate has the critical option unknown-option@noise-echo.test"),
        ("host_other_ca", &fleet, "localhost", 22, "unknown, certificate ignored"),
        ("host", &elsewhere, "localhost", 22, "unknown, certificate ignored"),
        ("host_other_ca", &pinned_other, "localhost", 22, "changed (line 2)"),
        ("host", &revoked_ca, "localhost", 22, "revoked (line 2)"),
    ];
    for (name, known, host, port, expected) in cases {
        let got =
            verdict_text(&known.verify_host(host, port, &key, Some(&certificate(name)), now()));
        assert!(got.starts_with(expected), "{name} for {host}:{port}: {got}");
    }
    // Without a certificate, the key decides alone: a CA line is no host key.
    assert_eq!(
        verdict_text(&fleet.verify_host("localhost", 22, &key, None, now())),
        "unknown"
    );
}

#[test]
fn check_host_certificate_names_the_line() {
    let known = parse(&format!("# fleet\n{}", ca_line("localhost", "host_ca")));
    let cert = certificate("host");
    let (authority, principal) = known
        .check_host_certificate(&cert, "localhost", 22, now())
        .unwrap();
    assert_eq!((authority.line, principal), (2, "localhost"));
    let refusal = known
        .check_host_certificate(&certificate("host_expired"), "localhost", 22, now())
        .unwrap_err();
    assert_eq!(refusal.line, Some(2));
    let refusal = known
        .check_host_certificate(&cert, "127.0.0.1", 22, now())
        .unwrap_err();
    assert_eq!(refusal.line, None);
    assert!(matches!(refusal.reason, CertificateError::UntrustedCa(_)));
}
