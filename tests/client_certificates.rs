//! The client's side of OpenSSH certificates, through `client::connect` over
//! loopback TCP against the ssh-keygen fixtures of keys/certs/
//! (keys/generate-certs.sh).
//!
//! Ours: a user certificate set on the identity travels in message 3, and a server
//! whose authorized_keys has only a `cert-authority` line admits the client through
//! it. The server's: a library server presenting a host certificate
//! (`ServerConfig.host` with `LocalIdentity::with_certificate`) is trusted through a
//! `@cert-authority` line without a prompt or a known_hosts write, refused when the
//! certificate fails or is revoked (`@revoked`, a revoked-keys file in text or KRL
//! form), and treated as unknown when no line trusts its CA. A host key rotated
//! under the same CA is still trusted.

mod certificate_fixtures;

use certificate_fixtures::{blob, bounded, fixture, identity, keys_dir};

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use noise_echo::client::{
    self, ClientConfig, ClientError, Connection, HostKeyError, Target, UnknownHost,
    UnknownHostPolicy,
};
use noise_echo::identity::Identity;
use noise_echo::openssh::authorized_keys::{self, AuthorizedKeys, ClientAdmission};
use noise_echo::openssh::certificate::{CertType, CertificateError};
use noise_echo::openssh::revoked::RevokedKeys;
use noise_echo::server::{self, AllowList, ServerConfig};
use noise_echo::wire::{
    respond_any, LocalIdentity, RekeyPolicy, ResponderSettings, ServerParams, Suite,
};
use tokio::net::TcpListener;

fn identity_host_fingerprint() -> noise_echo::identity::Fingerprint {
    identity("host_ed25519_key").public_key().fingerprint()
}

/// The fingerprint of the public key in `keys/NAME`.
fn identity_of_public(name: &str) -> noise_echo::identity::Fingerprint {
    let (key, _comment) =
        noise_echo::identity::PublicKey::parse_openssh_line(fixture(name).trim()).unwrap();
    key.fingerprint()
}

fn client_identity() -> Identity {
    identity("client_ed25519")
}

/// A library server on 127.0.0.1:0 presenting `host` (with its certificate, if
/// any), admitting the fixture client by its key; stopped when dropped.
struct HostServer {
    port: u16,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn serve(host: LocalIdentity) -> HostServer {
    let line = authorized_keys::append_key(&[], &client_identity().public_key(), "client");
    let allow = AllowList::Keys(Arc::new(AuthorizedKeys::parse(&line, "(test)".as_ref())));
    let config = ServerConfig::with_allow_list(Arc::new(host), allow);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server::run(listener, config, async move {
        let _ = stopped.await;
    }));
    HostServer { port, _stop: stop }
}

/// The fixture host key (or the rotated one) with the certificate `cert`.
fn host_with(key: &str, cert: Option<&str>) -> LocalIdentity {
    let local = LocalIdentity::new(&identity(key));
    match cert {
        Some(name) => local
            .with_certificate(blob(name))
            .expect("the host's own certificate"),
        None => local,
    }
}

/// `@cert-authority * HOST_CA` and then `extra` lines, in a fresh known_hosts.
fn known_hosts(dir: &Path, extra: &str) -> PathBuf {
    let path = dir.join("known_hosts");
    let ca = fixture("certs/host_ca.pub");
    std::fs::write(&path, format!("@cert-authority * {ca}{extra}")).unwrap();
    path
}

/// A prompt that counts its calls and declines: a trusted certificate must never
/// reach it.
fn counting_prompt(calls: &Arc<AtomicUsize>) -> client::HostKeyPrompt {
    let calls = Arc::clone(calls);
    Box::new(move |_: &UnknownHost| {
        calls.fetch_add(1, Ordering::SeqCst);
        Ok(false)
    })
}

async fn connect_to(port: u16, config: ClientConfig) -> Result<Connection, ClientError> {
    let target = Target {
        host: "127.0.0.1".into(),
        port,
    };
    bounded(client::connect(&target, config)).await
}

fn config(path: PathBuf) -> ClientConfig {
    ClientConfig::known_hosts(LocalIdentity::new(&client_identity()), path)
}

/// The refusal, or `trusted` for a session that answers a request.
async fn outcome(result: Result<Connection, ClientError>) -> String {
    match result {
        Ok(mut connection) => {
            let reply = connection.request(b"hi").await.unwrap();
            assert!(matches!(reply, noise_echo::wire::Reply::Response(ref body) if body == b"HI"));
            "trusted".to_owned()
        }
        Err(ClientError::HostKeyNotTrusted(error)) => match error {
            HostKeyError::CertificateInvalid { reason, .. } => format!("invalid: {reason}"),
            HostKeyError::Revoked {
                authority: None, ..
            } => "revoked (@revoked host key)".to_owned(),
            HostKeyError::Revoked {
                authority: Some(ca),
                ..
            } => {
                assert_eq!(
                    ca.to_string(),
                    "SHA256:+qYnENl3ddWdPPF66as/DaxXYv1a1ZgD0Udfvvq4eTU"
                );
                "revoked (@revoked CA key)".to_owned()
            }
            HostKeyError::RevokedByFile { revocation, .. } => {
                format!("revoked by file: {revocation}")
            }
            HostKeyError::Unknown { .. } => "unknown".to_owned(),
            HostKeyError::Changed { .. } => "changed".to_owned(),
            other => format!("{other}"),
        },
        Err(other) => panic!("{other}"),
    }
}

#[tokio::test]
async fn a_host_certificate_from_a_trusted_ca_is_trusted_without_prompt_or_write() {
    let server = serve(host_with("host_ed25519_key", Some("host"))).await;
    let dir = tempfile::tempdir().unwrap();
    let path = known_hosts(dir.path(), "");
    let before = std::fs::read(&path).unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let connection = connect_to(
        server.port,
        config(path.clone()).prompt(Some(counting_prompt(&calls))),
    )
    .await
    .unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 0, "no prompt");
    assert_eq!(connection.newly_known_as(), None);
    assert_eq!(
        std::fs::read(&path).unwrap(),
        before,
        "known_hosts unchanged"
    );
    let certificate = connection
        .server_certificate()
        .expect("the host certificate");
    assert_eq!(
        (
            certificate.key_id.as_str(),
            certificate.serial,
            certificate.cert_type
        ),
        ("host-localhost", 100, CertType::Host)
    );
    assert_eq!(outcome(Ok(connection)).await, "trusted");
}

/// (case, host key, certificate, extra known_hosts lines, revoked-keys file, expected)
type HostCase<'a> = (
    &'a str,
    &'a str,
    Option<&'a str>,
    String,
    Option<PathBuf>,
    String,
);

/// Every host case: what the server presents, what known_hosts and the
/// revoked-keys file say, and the client's outcome. Printed as a table with
/// `-- --nocapture`.
#[tokio::test]
async fn the_host_certificate_matrix() {
    let krl = |name: &str| keys_dir().join(format!("certs/krl/{name}"));
    let host_ca = fixture("certs/host_ca.pub");
    let host_key = fixture("host_ed25519_key.pub");
    let cases: Vec<HostCase> = vec![
        ("valid certificate", "host_ed25519_key", Some("host"), String::new(), None, "trusted".into()),
        (
            "wrong principal",
            "host_ed25519_key",
            Some("host_wrong_principal"),
            String::new(),
            None,
            "invalid: host certificate is not valid for 127.0.0.1 (its principals: other.example)".into(),
        ),
        (
            "expired",
            "host_ed25519_key",
            Some("host_expired"),
            String::new(),
            None,
            "invalid: certificate expired on 2021-01-01T00:00:00".into(),
        ),
        (
            "not yet valid",
            "host_ed25519_key",
            Some("host_not_yet_valid"),
            String::new(),
            None,
            "invalid: certificate is not valid before 2099-01-01T00:00:00".into(),
        ),
        (
            "user certificate",
            "host_ed25519_key",
            Some("host_user_type"),
            String::new(),
            None,
            "invalid: certificate is a user certificate, a host certificate is needed".into(),
        ),
        (
            "unknown critical option",
            "host_ed25519_key",
            Some("host_critical"),
            String::new(),
            None,
            "invalid: certificate has the critical option unknown-option@noise-echo.test, which noise-echo does not support".into(),
        ),
        (
            "@revoked host key",
            "host_ed25519_key",
            Some("host"),
            format!("@revoked * {host_key}"),
            None,
            "revoked (@revoked host key)".into(),
        ),
        (
            "@revoked CA key",
            "host_ed25519_key",
            Some("host"),
            format!("@revoked * {host_ca}"),
            None,
            "revoked (@revoked CA key)".into(),
        ),
        (
            "RevokedHostKeys text list (the CA)",
            "host_ed25519_key",
            Some("host"),
            String::new(),
            Some(krl("revoked_keys")),
            "revoked by file: the certificate's CA key is revoked".into(),
        ),
        (
            "RevokedHostKeys KRL (the key by SHA-256)",
            "host_ed25519_key",
            Some("host"),
            String::new(),
            Some(krl("sha256.krl")),
            "revoked by file: the key is revoked".into(),
        ),
        (
            "RevokedHostKeys KRL (the key ID)",
            "host_ed25519_key",
            Some("host"),
            String::new(),
            Some(krl("key_id_any_ca.krl")),
            "revoked by file: the certificate's key ID \"host-localhost\" is revoked".into(),
        ),
        (
            "RevokedHostKeys KRL (no certificate, the key)",
            "host_ed25519_key",
            None,
            format!("* {host_key}"),
            Some(krl("sha256.krl")),
            "revoked by file: the key is revoked".into(),
        ),
        (
            "CA not trusted: first use",
            "host_ed25519_key",
            Some("host_other_ca"),
            String::new(),
            None,
            "unknown".into(),
        ),
        (
            "rotated key, same CA",
            "certs/host_rotated_key",
            Some("host_rotated"),
            format!("* {host_key}"),
            None,
            "trusted".into(),
        ),
        (
            "rotated key, no certificate",
            "certs/host_rotated_key",
            None,
            format!("* {host_key}"),
            None,
            "changed".into(),
        ),
    ];
    let mut rows = Vec::new();
    for (case, key, cert, extra, revoked, expected) in cases {
        let server = serve(host_with(key, cert)).await;
        let dir = tempfile::tempdir().unwrap();
        let path = known_hosts(dir.path(), &extra);
        let before = std::fs::read(&path).unwrap();
        let revoked = revoked.map(|file| Arc::new(RevokedKeys::load(&file).unwrap()));
        let got =
            outcome(connect_to(server.port, config(path.clone()).revoked_host_keys(revoked)).await)
                .await;
        assert_eq!(
            std::fs::read(&path).unwrap(),
            before,
            "{case}: known_hosts unchanged"
        );
        rows.push((case, expected.clone(), got.clone()));
        assert_eq!(got, expected, "{case}");
    }
    println!("{:<45} | {:<40} | got", "case", "expected");
    for (case, expected, got) in rows {
        println!("{case:<45} | {expected:<40} | {got}");
    }
}

/// The errors say which check failed and which line trusts the CA.
#[tokio::test]
async fn an_invalid_certificate_names_the_check_and_the_line_and_is_never_first_use() {
    let server = serve(host_with("host_ed25519_key", Some("host_expired"))).await;
    let dir = tempfile::tempdir().unwrap();
    let path = known_hosts(dir.path(), "");
    // Even a policy that accepts any new key does not accept it.
    let error = connect_to(
        server.port,
        config(path.clone()).unknown_host(UnknownHostPolicy::AcceptNew),
    )
    .await
    .unwrap_err();
    match &error {
        ClientError::HostKeyNotTrusted(HostKeyError::CertificateInvalid {
            line, reason, ..
        }) => {
            assert_eq!(*line, 1);
            assert!(matches!(**reason, CertificateError::Expired(_)), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    let text = error.to_string();
    assert!(
        text.contains(&format!("its CA is trusted in {}:1", path.display())),
        "{text}"
    );
    assert!(
        text.contains("certificate expired on 2021-01-01T00:00:00"),
        "{text}"
    );
}

/// A certificate from a CA no line trusts is ignored: the first-use policy
/// applies to the key, and remembers it.
#[tokio::test]
async fn an_untrusted_ca_leaves_the_first_use_path_as_it_was() {
    let server = serve(host_with("host_ed25519_key", Some("host_other_ca"))).await;
    let dir = tempfile::tempdir().unwrap();
    let path = known_hosts(dir.path(), "");
    let connection = connect_to(
        server.port,
        config(path.clone()).unknown_host(UnknownHostPolicy::AcceptNew),
    )
    .await
    .unwrap();
    let field = format!("[127.0.0.1]:{}", server.port);
    assert_eq!(connection.newly_known_as(), Some(field.as_str()));
    let written = std::fs::read_to_string(&path).unwrap();
    assert!(
        written.contains(&format!("{field} ssh-ed25519 ")),
        "{written}"
    );
}

/// The question about such a host says which CA's certificate was ignored.
#[tokio::test]
async fn the_prompt_is_told_about_an_ignored_certificate() {
    let server = serve(host_with("host_ed25519_key", Some("host_other_ca"))).await;
    let dir = tempfile::tempdir().unwrap();
    let path = known_hosts(dir.path(), "");
    let (asked, question) = std::sync::mpsc::channel();
    let prompt: client::HostKeyPrompt = Box::new(move |unknown: &UnknownHost| {
        asked.send(unknown.ignored_certificate_ca).unwrap();
        Ok(true)
    });
    let connection = connect_to(server.port, config(path).prompt(Some(prompt)))
        .await
        .unwrap();
    let user_ca = identity_of_public("certs/user_ca.pub");
    assert_eq!(question.try_recv().unwrap(), Some(user_ca));
    assert!(connection.newly_known_as().is_some());
}

/// A pin is checked for a host a certificate vouches for too.
#[tokio::test]
async fn a_pin_is_checked_for_a_certified_host() {
    let server = serve(host_with("host_ed25519_key", Some("host"))).await;
    let dir = tempfile::tempdir().unwrap();
    let path = known_hosts(dir.path(), "");
    let other = Identity::generate("other").public_key().fingerprint();
    let error = connect_to(
        server.port,
        config(path).unknown_host(UnknownHostPolicy::ExpectFingerprint(other)),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(error, ClientError::HostKeyNotTrusted(HostKeyError::Mismatch { expected, .. }) if expected == other),
        "{error:?}"
    );
}

/// The client's own certificate: a server whose authorized_keys trusts only the
/// user CA (`cert-authority,principals="alice"`) admits the client through the
/// certificate it presented in message 3.
#[tokio::test]
async fn the_client_presents_its_certificate_and_the_server_admits_it_by_the_ca() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let host = LocalIdentity::new(&identity("host_ed25519_key"));
    let line = format!(
        "cert-authority,principals=\"alice\" {}",
        fixture("certs/user_ca.pub")
    );
    let authorized = AuthorizedKeys::parse(line.as_bytes(), "(test)".as_ref());
    let server = tokio::spawn(async move {
        let (mut stream, peer) = listener.accept().await.unwrap();
        let settings = ResponderSettings::new(
            Suite::ALL.to_vec(),
            false,
            ServerParams::new(4096, RekeyPolicy::DEFAULT),
        );
        let established = respond_any(&mut stream, &host, &settings).await.unwrap();
        match authorized.authorize_client(
            established.peer(),
            established.peer_certificate(),
            peer.ip(),
            SystemTime::now(),
        ) {
            Ok(ClientAdmission::Certificate(admission)) => {
                format!(
                    "admitted as {} (serial {})",
                    admission.principal, admission.serial
                )
            }
            Ok(other) => format!("admitted otherwise: {other:?}"),
            Err(denial) => format!("denied: {denial}"),
        }
    });
    let identity = LocalIdentity::new(&client_identity())
        .with_certificate(blob("valid"))
        .unwrap();
    let pin = identity_host_fingerprint();
    let config = ClientConfig::pinned(identity, pin);
    let target = Target {
        host: "127.0.0.1".into(),
        port,
    };
    let _connection = bounded(client::connect(&target, config)).await.unwrap();
    assert_eq!(
        bounded(server).await.unwrap(),
        "admitted as alice (serial 1)"
    );
}
