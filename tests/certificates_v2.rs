//! OpenSSH certificates in protocol v2 handshakes over loopback TCP, against the
//! ssh-keygen fixtures in keys/certs/ (made by keys/generate-certs.sh).
//!
//! Users: the client presents a user certificate in message 3 (`initiate_v2` with a
//! `LocalIdentity::with_certificate`), the server (`respond_any`) reads
//! `Established::peer_certificate` and decides with `AuthorizedKeys::authorize_client`
//! from the real TCP peer address (the client binds 127.0.0.1 or 127.0.0.5), as the
//! server will. Hosts: the server presents a host certificate in message 2 and the
//! client decides with `KnownHosts::verify_host` before approving. Each matrix is
//! printed as a table (`cargo test --test certificates_v2 -- --nocapture`).

mod certificate_fixtures;

use certificate_fixtures::{blob, bounded, fixture, identity};

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use noise_echo::identity::Identity;
use noise_echo::openssh::authorized_keys::{AuthorizedKeys, ClientAdmission};
use noise_echo::openssh::known_hosts::{HostTrustedBy, HostVerdict, KnownHosts};
use noise_echo::wire::{
    initiate_v2, respond_any, CertificateProblem, LocalIdentity, Offer, PayloadProblem,
    RekeyPolicy, ResponderSettings, ServerParams, Suite, Violation, WireError,
};
use tokio::net::{TcpListener, TcpSocket};

/// 2026-01-01T00:00:00Z: inside the fixtures' windows but the past and future ones.
fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_767_225_600)
}

fn settings() -> ResponderSettings {
    ResponderSettings::new(
        Suite::ALL.to_vec(),
        false,
        ServerParams::new(4096, RekeyPolicy::DEFAULT),
    )
}

/// A loopback connection whose client end is bound to `client_ip`.
async fn connect(client_ip: &str) -> (tokio::net::TcpStream, tokio::net::TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let socket = TcpSocket::new_v4().unwrap();
    let client_addr: SocketAddr = format!("{client_ip}:0").parse().unwrap();
    socket.bind(client_addr).unwrap();
    let (client, accepted) = tokio::join!(socket.connect(addr), listener.accept());
    (client.unwrap(), accepted.unwrap().0)
}

fn outcome_of_admission(admission: &ClientAdmission<'_>) -> String {
    match admission {
        ClientAdmission::Key(entry) => format!("admitted by key (line {})", entry.line),
        ClientAdmission::Certificate(admission) => format!(
            "admitted as {} (line {}, serial {})",
            admission.principal, admission.authority.line, admission.serial
        ),
    }
}

/// One user case: the client (bound to `client_ip`) presents `client` over v2 and
/// the server decides with `authorized_keys`. Returns the server's outcome.
async fn user_case(client: LocalIdentity, client_ip: &str, authorized: &AuthorizedKeys) -> String {
    let server = LocalIdentity::new(&identity("host_ed25519_key"));
    let (mut client_io, mut server_io) = connect(client_ip).await;
    let offer = Offer::new(Suite::ChaChaPolyBlake2s);
    let client_side = async {
        let approval = initiate_v2(&mut client_io, &client, &offer).await?;
        approval.approve(&mut client_io).await
    };
    let server_side = async {
        let peer_ip: IpAddr = server_io.peer_addr().unwrap().ip();
        let established = respond_any(&mut server_io, &server, &settings()).await?;
        Ok::<_, WireError>(
            match authorized.authorize_client(
                established.peer(),
                established.peer_certificate(),
                peer_ip,
                now(),
            ) {
                Ok(admission) => outcome_of_admission(&admission),
                Err(denial) => format!("denied: {denial}"),
            },
        )
    };
    let (_, server_outcome) = bounded(async { tokio::join!(client_side, server_side) }).await;
    match server_outcome {
        Ok(text) => text,
        Err(WireError::PeerMisbehaved(violation)) => format!("violation: {violation}"),
        Err(other) => format!("error: {other}"),
    }
}

fn print_table(title: &str, rows: &[(String, String, String)]) {
    println!("\n{title}\n\n| case | expected | got |\n|---|---|---|");
    for (case, expected, got) in rows {
        println!("| {case} | {expected} | {got} |");
    }
}

#[tokio::test]
async fn user_certificates_against_cert_authority_lines() {
    let client_identity = identity("client_ed25519");
    let with = |name: &str| {
        LocalIdentity::new(&client_identity)
            .with_certificate(blob(name))
            .unwrap_or_else(|error| panic!("{name}: {error}"))
    };
    let authorized = AuthorizedKeys::parse(
        format!(
            "# the fleet's user CA\ncert-authority,principals=\"alice\" {}",
            fixture("certs/user_ca.pub")
        )
        .as_bytes(),
        Path::new("authorized_keys"),
    );
    let mismatched =
        LocalIdentity::new(&client_identity).with_any_certificate_for_testing_only(blob("host"));
    let not_listed = "denied: key SHA256:WZyIbFacJRQsF1FTuV+9PAQnQYGwI19yyCo3VXdEsUQ is not in \
                      authorized_keys; its certificate";
    let cases: Vec<(&str, LocalIdentity, &str, String)> = vec![
        ("valid", with("valid"), "127.0.0.1", "admitted as alice (line 2, serial 1)".into()),
        ("valid window", with("valid_window"), "127.0.0.1", "admitted as alice (line 2, serial 2)".into()),
        ("expired", with("expired"), "127.0.0.1", format!("{not_listed} \"alice-expired\" is refused: certificate expired on 2021-01-01T00:00:00")),
        ("not yet valid", with("not_yet_valid"), "127.0.0.1", format!("{not_listed} \"alice-future\" is refused: certificate is not valid before 2099-01-01T00:00:00")),
        ("wrong principal", with("wrong_principal"), "127.0.0.1", format!("{not_listed} \"carol\" is refused: certificate principals carol are not accepted")),
        ("no principals", with("no_principals"), "127.0.0.1", format!("{not_listed} \"anyone\" is refused: certificate names no principals")),
        ("host-type cert as user cert", with("host_type"), "127.0.0.1", format!("{not_listed} \"alice-as-host\" is refused: certificate is a host certificate, a user certificate is needed")),
        ("unknown critical option", with("unknown_critical"), "127.0.0.1", format!("{not_listed} \"alice-unknown\" is refused: certificate has the critical option unknown-option@noise-echo.test, which noise-echo does not support")),
        ("force-command", with("force_command"), "127.0.0.1", format!("{not_listed} \"alice-command\" is refused: certificate has the critical option force-command, which noise-echo does not support")),
        ("source-address match (from 127.0.0.5)", with("source_address"), "127.0.0.5", "admitted as alice (line 2, serial 10)".into()),
        ("source-address mismatch (from 127.0.0.1)", with("source_address"), "127.0.0.1", format!("{not_listed} \"alice-from-5\" is refused: certificate is not valid from 127.0.0.1 (source-address 127.0.0.5/32)")),
        ("other CA", with("other_ca"), "127.0.0.1", format!("{not_listed} \"alice-other-ca\" is refused: certificate signed by CA SHA256:+qYnENl3ddWdPPF66as/DaxXYv1a1ZgD0Udfvvq4eTU, which is not trusted")),
        ("no certificate", LocalIdentity::new(&client_identity), "127.0.0.1", "denied: key SHA256:WZyIbFacJRQsF1FTuV+9PAQnQYGwI19yyCo3VXdEsUQ is not in authorized_keys".into()),
        ("certificate of another key", mismatched, "127.0.0.1", format!("violation: {}", Violation::BadHandshakePayload { message: 3, problem: PayloadProblem::Certificate(CertificateProblem::KeyMismatch) })),
    ];
    let mut rows = Vec::new();
    for (case, client, ip, expected) in cases {
        let got = user_case(client, ip, &authorized).await;
        rows.push((case.to_owned(), expected, got));
    }
    print_table("User certificates (server: authorize_client)", &rows);
    for (case, expected, got) in &rows {
        assert_eq!(got, expected, "{case}");
    }
}

#[tokio::test]
async fn a_plain_key_line_still_admits_whatever_the_certificate() {
    let client_identity = identity("client_ed25519");
    let authorized = AuthorizedKeys::parse(
        fixture("client_ed25519.pub").as_bytes(),
        Path::new("authorized_keys"),
    );
    let client = LocalIdentity::new(&client_identity)
        .with_certificate(blob("expired"))
        .unwrap();
    assert_eq!(
        user_case(client, "127.0.0.1", &authorized).await,
        "admitted by key (line 1)"
    );
}

fn host_verdict_text(verdict: &HostVerdict) -> String {
    match verdict {
        HostVerdict::Trusted(HostTrustedBy::Certificate {
            line,
            principal,
            serial,
            ..
        }) => format!("trusted as {principal} (line {line}, serial {serial})"),
        HostVerdict::Trusted(HostTrustedBy::Key { line }) => {
            format!("trusted by key (line {line})")
        }
        HostVerdict::Unknown {
            ignored_certificate_ca: Some(ca),
        } => format!("unknown (certificate from untrusted CA {ca} ignored)"),
        HostVerdict::Unknown { .. } => "unknown".to_owned(),
        HostVerdict::Changed { line, .. } => format!("changed (line {line})"),
        HostVerdict::Revoked { line, .. } => format!("revoked (line {line})"),
        HostVerdict::CertInvalid { line, reason, .. } => format!("refused (line {line}): {reason}"),
        other => format!("{other:?}"),
    }
}

/// One host case: the server presents `server`; the client, connected to the name
/// `host`, decides with `known` before approving (and approves only if trusted).
async fn host_case(server: LocalIdentity, host: &str, known: &KnownHosts) -> String {
    let client = LocalIdentity::new(&identity("client_ed25519"));
    let (mut client_io, mut server_io) = connect("127.0.0.1").await;
    let port = client_io.peer_addr().unwrap().port();
    let offer = Offer::new(Suite::AesGcmSha256);
    let client_side = async {
        let approval = match initiate_v2(&mut client_io, &client, &offer).await {
            Ok(approval) => approval,
            Err(WireError::PeerMisbehaved(violation)) => return format!("violation: {violation}"),
            Err(other) => return format!("error: {other}"),
        };
        let core = approval.into_core();
        let verdict = known.verify_host(
            host,
            port,
            core.server_key(),
            core.server_certificate(),
            now(),
        );
        let text = host_verdict_text(&verdict);
        if matches!(verdict, HostVerdict::Trusted(_)) {
            let (_message3, _) = core.approve().unwrap();
        } else {
            drop(core.reject(text.clone()));
        }
        drop(client_io);
        text
    };
    let server_side = async {
        let _ = respond_any(&mut server_io, &server, &settings()).await;
    };
    bounded(async { tokio::join!(client_side, server_side) })
        .await
        .0
}

#[tokio::test]
async fn host_certificates_against_cert_authority_lines() {
    let host_identity = identity("host_ed25519_key");
    let with = |name: &str| {
        LocalIdentity::new(&host_identity)
            .with_certificate(blob(name))
            .unwrap_or_else(|error| panic!("{name}: {error}"))
    };
    let known = KnownHosts::parse(
        format!(
            "# the fleet's host CA\n@cert-authority localhost,127.0.0.1,[localhost]:*,[127.0.0.1]:* {}",
            fixture("certs/host_ca.pub")
        )
        .as_bytes(),
        Path::new("known_hosts"),
    );
    let pinned = KnownHosts::parse(
        format!(
            "[localhost]:* {}",
            Identity::from_seed(&[5; 32], "")
                .public_key()
                .to_openssh_line("old key")
        )
        .as_bytes(),
        Path::new("known_hosts"),
    );
    let rotated = KnownHosts::parse(
        format!(
            "[localhost]:* {}\n@cert-authority * {}",
            Identity::from_seed(&[5; 32], "")
                .public_key()
                .to_openssh_line("old key"),
            fixture("certs/host_ca.pub")
        )
        .as_bytes(),
        Path::new("known_hosts"),
    );
    let mismatched =
        LocalIdentity::new(&host_identity).with_any_certificate_for_testing_only(blob("valid"));
    let other_ca = "SHA256:HN+9UtPLkTwN5vudstCI+EOaWhI2Nc3urDOdS8IgWeM";
    let cases: Vec<(&str, LocalIdentity, &str, &KnownHosts, String)> = vec![
        ("valid, as localhost", with("host"), "localhost", &known, "trusted as localhost (line 2, serial 100)".into()),
        ("valid, as 127.0.0.1", with("host"), "127.0.0.1", &known, "trusted as 127.0.0.1 (line 2, serial 100)".into()),
        ("expired", with("host_expired"), "localhost", &known, "refused (line 2): certificate expired on 2021-01-01T00:00:00".into()),
        ("not yet valid", with("host_not_yet_valid"), "localhost", &known, "refused (line 2): certificate is not valid before 2099-01-01T00:00:00".into()),
        ("wrong principal", with("host_wrong_principal"), "localhost", &known, "refused (line 2): host certificate is not valid for localhost (its principals: other.example)".into()),
        ("user-type cert as host cert", with("host_user_type"), "localhost", &known, "refused (line 2): certificate is a user certificate, a host certificate is needed".into()),
        ("no principals", with("host_no_principals"), "localhost", &known, "refused (line 2): certificate names no principals".into()),
        ("unknown critical option", with("host_critical"), "localhost", &known, "refused (line 2): certificate has the critical option unknown-option@noise-echo.test, which noise-echo does not support".into()),
        ("other CA", with("host_other_ca"), "localhost", &known, format!("unknown (certificate from untrusted CA {other_ca} ignored)")),
        ("no certificate", LocalIdentity::new(&host_identity), "localhost", &known, "unknown".into()),
        ("valid, no CA line, host pinned to another key", with("host"), "localhost", &pinned, "changed (line 1)".into()),
        ("valid, CA line, host pinned to an older key (rotation)", with("host"), "localhost", &rotated, "trusted as localhost (line 2, serial 100)".into()),
        ("certificate of another key", mismatched, "localhost", &known, format!("violation: {}", Violation::BadHandshakePayload { message: 2, problem: PayloadProblem::Certificate(CertificateProblem::KeyMismatch) })),
    ];
    let mut rows = Vec::new();
    for (case, server, host, known, expected) in cases {
        let got = host_case(server, host, known).await;
        rows.push((case.to_owned(), expected, got));
    }
    print_table("Host certificates (client: verify_host)", &rows);
    for (case, expected, got) in &rows {
        assert_eq!(got, expected, "{case}");
    }
}
