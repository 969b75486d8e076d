//! The server's side of OpenSSH certificates, end to end: `Server::run` on loopback
//! TCP with its files on disk (authorized_keys with `cert-authority` lines,
//! `trusted_user_ca_keys` with `authorized_principals`, `revoked_keys` as a text
//! list or a KRL), against clients presenting the ssh-keygen-made fixtures of
//! keys/certs/ (keys/generate-certs.sh) over protocol v2, bound to 127.0.0.1 or
//! 127.0.0.5. What the client is told, that it never names a file, the counters,
//! `revoke_live` ending a certificate session, and the host certificate the client
//! sees. The log lines are checked through the binary (cli/tests/serve_certificates.rs).

mod running_server;

use running_server::RunningServer;

mod certificate_fixtures;

use certificate_fixtures::{blob, bounded, fixture, identity, keys_dir, LIMIT};

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use noise_echo::server::{ConfigError, Server, ServerConfig, ServerStats, StatsSnapshot};
use noise_echo::wire::{
    self, LocalIdentity, Offer, RecordType, RecvHalf, Refusal, Reply, SendHalf, Suite, WireError,
};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpSocket;

/// The client key of the fixtures, presenting `keys/certs/NAME-cert.pub`.
fn with_certificate(name: &str) -> LocalIdentity {
    LocalIdentity::new(&identity("client_ed25519"))
        .with_certificate(blob(name))
        .unwrap_or_else(|error| panic!("{name}: {error}"))
}

fn plain_client() -> LocalIdentity {
    LocalIdentity::new(&identity("client_ed25519"))
}

/// `cert-authority,principals="alice" USER_CA`.
fn cert_authority_line() -> String {
    format!(
        "# the fleet's user CA\ncert-authority,principals=\"alice\" {}",
        fixture("certs/user_ca.pub")
    )
}

/// A running server with its files in a temporary directory.
struct Running {
    dir: tempfile::TempDir,
    addr: SocketAddr,
    stats: Arc<ServerStats>,
    /// The server itself, stopped by [`Running::stop`].
    server: RunningServer,
}

impl Running {
    /// A server whose authorized_keys holds `authorized_keys`; `adjust` sets the
    /// other files (paths in the directory, [`Running::path`]).
    async fn start(authorized_keys: &str, adjust: impl FnOnce(&Path, &mut ServerConfig)) -> Self {
        Self::start_as(
            LocalIdentity::new(&identity("host_ed25519_key")),
            authorized_keys,
            adjust,
        )
        .await
    }

    async fn start_as(
        host: LocalIdentity,
        authorized_keys: &str,
        adjust: impl FnOnce(&Path, &mut ServerConfig),
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("authorized_keys");
        std::fs::write(&keys, authorized_keys).unwrap();
        let mut config = ServerConfig::new(Arc::new(host), keys);
        // The temporary directory's permissions are the test runner's business.
        config.strict_modes = false;
        adjust(dir.path(), &mut config);
        let server = RunningServer::start(config).await;
        Self {
            dir,
            addr: server.addr,
            stats: Arc::clone(&server.stats),
            server,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    async fn wait_for(&self, condition: impl Fn(&StatsSnapshot) -> bool) -> StatsSnapshot {
        let (snapshot, met) = self.stats.wait_for(LIMIT, condition).await;
        assert!(met, "the counters never got there: {snapshot:?}");
        snapshot
    }

    /// Connects from `client_ip` as `client` and sends one request: the session's
    /// halves once it is answered, else the ERROR's reason.
    async fn session(
        &self,
        client: &LocalIdentity,
        client_ip: &str,
    ) -> Result<(RecvHalf<OwnedReadHalf>, SendHalf<OwnedWriteHalf>), String> {
        bounded(async {
            let socket = TcpSocket::new_v4().unwrap();
            socket
                .bind(format!("{client_ip}:0").parse().unwrap())
                .unwrap();
            let mut stream = socket.connect(self.addr).await.unwrap();
            let offer = Offer::new(Suite::ChaChaPolyBlake2s);
            let pending = wire::initiate_v2(&mut stream, client, &offer)
                .await
                .expect("message 2");
            let established = pending.approve(&mut stream).await.expect("message 3 sent");
            let (reader, writer) = stream.into_split();
            let (mut rx, mut tx) = established.into_halves(reader, writer);
            tx.write_record(RecordType::Request, b"hello")
                .await
                .unwrap();
            tx.flush().await.unwrap();
            match rx.read_reply_to(5).await {
                Ok(Some(Reply::Response(body))) => {
                    assert_eq!(body, b"HELLO");
                    Ok((rx, tx))
                }
                other => Err(refusal(other)),
            }
        })
        .await
    }

    /// What the server said to `client` from `client_ip`: `admitted` or the
    /// refusal; checks that a refusal names none of the server's files.
    async fn outcome(&self, client: &LocalIdentity, client_ip: &str) -> String {
        match self.session(client, client_ip).await {
            Ok(_) => "admitted".to_owned(),
            Err(reason) => {
                let dir = self.dir.path().display().to_string();
                assert!(
                    !reason.contains(&dir),
                    "the client was told a path: {reason}"
                );
                assert!(
                    !reason.contains("line "),
                    "the client was told a line: {reason}"
                );
                reason
            }
        }
    }

    async fn stop(self) {
        self.server.stop().await;
    }
}

/// The ERROR of a refused session, as the client reads it.
fn refusal(read: wire::Result<Option<Reply>>) -> String {
    match read {
        Ok(Some(Reply::Error(reason))) => reason,
        Err(WireError::NotAllowed(Refusal::PermissionDenied(reason))) => reason,
        other => panic!("no refusal: {other:?}"),
    }
}

fn print_table(title: &str, rows: &[(&str, String, String)]) {
    println!("\n{title}\n\n| case | expected | got |\n|---|---|---|");
    for (case, expected, got) in rows {
        println!("| {case} | {expected} | {got} |");
    }
}

/// Runs `cases` (name, client, address, expected start of the outcome) against
/// `server`, prints the matrix, then checks it.
async fn matrix(
    title: &str,
    server: &Running,
    cases: Vec<(&'static str, LocalIdentity, &str, String)>,
) {
    let mut rows = Vec::new();
    for (case, client, ip, expected) in cases {
        rows.push((case, expected, server.outcome(&client, ip).await));
    }
    print_table(title, &rows);
    for (case, expected, got) in &rows {
        assert!(
            got.starts_with(expected.as_str()),
            "{case}: expected {expected:?}, got {got:?}"
        );
    }
}

const CLIENT: &str = "SHA256:WZyIbFacJRQsF1FTuV+9PAQnQYGwI19yyCo3VXdEsUQ";

#[tokio::test]
async fn user_certificates_through_a_cert_authority_line() {
    let server = Running::start(&cert_authority_line(), |_, _| {}).await;
    let refused = |id: &str, why: &str| {
        format!(
            "permission denied: key {CLIENT} is not in authorized_keys; its certificate \"{id}\" is refused: {why}"
        )
    };
    let cases = vec![
        (
            "valid",
            with_certificate("valid"),
            "127.0.0.1",
            "admitted".to_owned(),
        ),
        (
            "valid window",
            with_certificate("valid_window"),
            "127.0.0.1",
            "admitted".to_owned(),
        ),
        (
            "expired",
            with_certificate("expired"),
            "127.0.0.1",
            refused(
                "alice-expired",
                "certificate expired on 2021-01-01T00:00:00",
            ),
        ),
        (
            "not yet valid",
            with_certificate("not_yet_valid"),
            "127.0.0.1",
            refused(
                "alice-future",
                "certificate is not valid before 2099-01-01T00:00:00",
            ),
        ),
        (
            "wrong principal",
            with_certificate("wrong_principal"),
            "127.0.0.1",
            refused("carol", "certificate principals carol are not accepted"),
        ),
        (
            "host-type certificate",
            with_certificate("host_type"),
            "127.0.0.1",
            refused("alice-as-host", "certificate is a host certificate"),
        ),
        (
            "unknown critical option",
            with_certificate("unknown_critical"),
            "127.0.0.1",
            refused(
                "alice-unknown",
                "certificate has the critical option unknown-option@noise-echo.test",
            ),
        ),
        (
            "source-address, from 127.0.0.5",
            with_certificate("source_address"),
            "127.0.0.5",
            "admitted".to_owned(),
        ),
        (
            "source-address, from 127.0.0.1",
            with_certificate("source_address"),
            "127.0.0.1",
            refused("alice-from-5", "certificate is not valid from 127.0.0.1"),
        ),
        (
            "other CA",
            with_certificate("other_ca"),
            "127.0.0.1",
            refused("alice-other-ca", "certificate signed by CA"),
        ),
        (
            "no certificate",
            plain_client(),
            "127.0.0.1",
            format!("permission denied: key {CLIENT} is not in authorized_keys"),
        ),
    ];
    matrix("cert-authority line (Server::run)", &server, cases).await;
    let stats = server.wait_for(|stats| stats.denied == 8).await;
    assert_eq!(stats.sessions, 3);
    server.stop().await;
}

#[tokio::test]
async fn user_certificates_through_trusted_user_ca_keys_and_principals() {
    let server = Running::start("", |dir, config| {
        std::fs::write(dir.join("user_ca_keys"), fixture("certs/user_ca.pub")).unwrap();
        std::fs::write(dir.join("principals"), "# the team\ndave\nalice\n").unwrap();
        config.trusted_user_ca_keys = Some(dir.join("user_ca_keys"));
        config.authorized_principals = Some(dir.join("principals"));
    })
    .await;
    let refused = |id: &str, why: &str| {
        format!(
            "permission denied: key {CLIENT} is not authorized on this server; its certificate \"{id}\" is refused: {why}"
        )
    };
    let cases = vec![
        ("valid", with_certificate("valid"), "127.0.0.1", "admitted".to_owned()),
        ("wrong principal", with_certificate("wrong_principal"), "127.0.0.1", refused("carol", "certificate principals carol are not accepted")),
        ("expired", with_certificate("expired"), "127.0.0.1", refused("alice-expired", "certificate expired")),
        ("source-address, from 127.0.0.5", with_certificate("source_address"), "127.0.0.5", "admitted".to_owned()),
        ("source-address, from 127.0.0.1", with_certificate("source_address"), "127.0.0.1", refused("alice-from-5", "certificate is not valid from 127.0.0.1")),
        ("other CA", with_certificate("other_ca"), "127.0.0.1", format!("permission denied: key {CLIENT} is not in authorized_keys; its certificate \"alice-other-ca\" is refused: certificate signed by CA")),
        ("no certificate", plain_client(), "127.0.0.1", format!("permission denied: key {CLIENT} is not in authorized_keys")),
    ];
    matrix(
        "TrustedUserCAKeys + principals (Server::run)",
        &server,
        cases,
    )
    .await;

    // The principal removed from the file: refused from the next connection on.
    std::fs::write(server.path("principals.new"), "dave\n").unwrap();
    std::fs::rename(server.path("principals.new"), server.path("principals")).unwrap();
    let got = server
        .outcome(&with_certificate("valid"), "127.0.0.1")
        .await;
    assert!(
        got.contains("certificate principals alice,bob are not accepted"),
        "{got}"
    );
    server.stop().await;
}

#[test]
fn trusted_ca_keys_need_a_principals_file_and_the_reverse() {
    let host = LocalIdentity::new(&identity("host_ed25519_key"));
    let mut config = ServerConfig::new(Arc::new(host), "authorized_keys".into());
    config.trusted_user_ca_keys = Some("user_ca_keys".into());
    assert_eq!(
        Server::new(config.clone()).err(),
        Some(ConfigError::CaKeysWithoutPrincipals)
    );
    config.trusted_user_ca_keys = None;
    config.authorized_principals = Some("principals".into());
    assert_eq!(
        Server::new(config).err(),
        Some(ConfigError::PrincipalsWithoutCaKeys)
    );
}

/// authorized_keys trusting the user CA, and `revoked_keys` set to a copy of
/// `keys/certs/krl/NAME`.
async fn revoked_by(name: &str) -> Running {
    let source = keys_dir().join("certs/krl").join(name);
    Running::start(&cert_authority_line(), |dir, config| {
        std::fs::copy(&source, dir.join("revoked")).unwrap();
        config.revoked_keys = Some(dir.join("revoked"));
    })
    .await
}

#[tokio::test]
async fn revoked_keys_certificates_and_cas_are_refused() {
    let mut rows = Vec::new();
    let cases: [(&str, &str, LocalIdentity, &str); 6] = [
        (
            "key.krl: the client's key",
            "key.krl",
            with_certificate("valid"),
            "permission denied: key SHA256:WZyIbFacJRQsF1FTuV+9PAQnQYGwI19yyCo3VXdEsUQ is revoked",
        ),
        (
            "serial.krl: serial 1",
            "serial.krl",
            with_certificate("valid"),
            "permission denied: certificate \"alice-valid\" serial 1 is revoked",
        ),
        (
            "serial.krl: serial 2",
            "serial.krl",
            with_certificate("valid_window"),
            "admitted",
        ),
        (
            "ca.krl: the user CA",
            "ca.krl",
            with_certificate("valid_window"),
            "permission denied: certificate \"alice-window\" serial 2 is revoked",
        ),
        (
            "key_id.krl: id alice-expired only",
            "key_id.krl",
            with_certificate("valid"),
            "admitted",
        ),
        (
            "text list: other keys",
            "revoked_keys",
            with_certificate("valid"),
            "admitted",
        ),
    ];
    for (case, file, client, expected) in cases {
        let server = revoked_by(file).await;
        rows.push((
            case,
            expected.to_owned(),
            server.outcome(&client, "127.0.0.1").await,
        ));
        server.stop().await;
    }
    print_table("revoked_keys (Server::run)", &rows);
    for (case, expected, got) in &rows {
        assert_eq!(got, expected, "{case}");
    }
}

#[tokio::test]
async fn a_revoked_plain_key_is_refused_despite_its_line() {
    let authorized = fixture("client_ed25519.pub");
    let server = Running::start(&authorized, |dir, config| {
        std::fs::copy(keys_dir().join("certs/krl/key.krl"), dir.join("revoked")).unwrap();
        config.revoked_keys = Some(dir.join("revoked"));
    })
    .await;
    assert_eq!(
        server.outcome(&plain_client(), "127.0.0.1").await,
        format!("permission denied: key {CLIENT} is revoked")
    );
    server.stop().await;
}

#[tokio::test]
async fn a_missing_revoked_keys_file_refuses_everyone_until_it_exists() {
    let server = Running::start(&fixture("client_ed25519.pub"), |dir, config| {
        config.revoked_keys = Some(dir.join("revoked"));
    })
    .await;
    assert_eq!(
        server.outcome(&plain_client(), "127.0.0.1").await,
        format!("permission denied: key {CLIENT} is not authorized on this server")
    );
    std::fs::write(server.path("revoked"), "").unwrap();
    assert_eq!(
        server.outcome(&plain_client(), "127.0.0.1").await,
        "admitted"
    );
    // Broken (a KRL magic with nothing after it): everyone refused again.
    std::fs::write(server.path("revoked.new"), b"SSHKRL\n\0").unwrap();
    std::fs::rename(server.path("revoked.new"), server.path("revoked")).unwrap();
    assert_eq!(
        server.outcome(&plain_client(), "127.0.0.1").await,
        format!("permission denied: key {CLIENT} is not authorized on this server")
    );
    server.stop().await;
}

#[tokio::test]
async fn revoke_live_ends_a_certificate_session_when_its_serial_is_revoked() {
    let server = Running::start(&cert_authority_line(), |dir, config| {
        std::fs::write(dir.join("revoked"), "").unwrap();
        config.revoked_keys = Some(dir.join("revoked"));
        config.revoke_live = true;
        config.revoke_poll = Duration::from_millis(50);
    })
    .await;
    let (mut valid_rx, _valid_tx) = server
        .session(&with_certificate("valid"), "127.0.0.1")
        .await
        .expect("admitted");
    let (mut window_rx, mut window_tx) = server
        .session(&with_certificate("valid_window"), "127.0.0.1")
        .await
        .expect("admitted");
    // Serial 1 revoked under the user CA, renamed into place.
    std::fs::copy(
        keys_dir().join("certs/krl/serial.krl"),
        server.path("revoked.new"),
    )
    .unwrap();
    std::fs::rename(server.path("revoked.new"), server.path("revoked")).unwrap();
    assert_eq!(
        refusal(bounded(valid_rx.read_reply(1024)).await),
        "permission denied: key revoked"
    );
    server.wait_for(|stats| stats.revoked == 1).await;
    // Serial 2 goes on.
    bounded(async {
        window_tx
            .write_record(RecordType::Request, b"still")
            .await
            .unwrap();
        window_tx.flush().await.unwrap();
        assert_eq!(
            window_rx.read_reply_to(5).await.unwrap(),
            Some(Reply::Response(b"STILL".to_vec()))
        );
    })
    .await;
    // Now the CA line goes from authorized_keys: serial 2's session ends too.
    std::fs::write(server.path("authorized_keys.new"), "").unwrap();
    std::fs::rename(
        server.path("authorized_keys.new"),
        server.path("authorized_keys"),
    )
    .unwrap();
    assert_eq!(
        refusal(bounded(window_rx.read_reply(1024)).await),
        "permission denied: key revoked"
    );
    server.wait_for(|stats| stats.revoked == 2).await;
    server.stop().await;
}

#[tokio::test]
async fn the_server_presents_its_host_certificate() {
    let host = LocalIdentity::new(&identity("host_ed25519_key"))
        .with_certificate(blob("host"))
        .unwrap();
    let server = Running::start_as(host, &fixture("client_ed25519.pub"), |_, _| {}).await;
    let certificate = bounded(async {
        let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        let offer = Offer::new(Suite::ChaChaPolyBlake2s);
        let pending = wire::initiate_v2(&mut stream, &plain_client(), &offer)
            .await
            .unwrap();
        let established = pending.approve(&mut stream).await.unwrap();
        established.peer_certificate().cloned()
    })
    .await
    .expect("a host certificate in message 2");
    assert_eq!(certificate.key_id, "host-localhost");
    assert_eq!(certificate.serial, 100);
    assert_eq!(
        certificate.principals,
        vec!["localhost".to_owned(), "127.0.0.1".to_owned()]
    );
    server.stop().await;
}
