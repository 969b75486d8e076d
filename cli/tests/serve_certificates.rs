//! `noise-echo serve` with OpenSSH certificates, through the binary: a user
//! certificate admitted by a `cert-authority` line and by `--trusted-user-ca-keys`
//! with `--authorized-principals`, each refusal with the log naming the files and
//! the client told none, `--revoked-keys` (missing: everyone refused, and the log
//! says why and how to fix it), `--revoke-live` ending a certificate session when
//! its serial is revoked, the host certificate on the listening line and in the
//! handshake, and a bad `--host-certificate` or flag combination refused before
//! anything is created. The client presenting a certificate is the library's
//! handshake (`connect` finding `id_ed25519-cert.pub` is the client side's test);
//! the fixtures are keys/certs/, made by ssh-keygen (keys/generate-certs.sh).

mod common;

use std::io::BufRead;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use common::{fixture, noise_echo, start_serve, text, Started};
use noise_echo::openssh::certificate::Certificate;
use noise_echo::openssh::keyfile::parse_identity;
use noise_echo::wire::{self, LocalIdentity, Offer, RecordType, Refusal, Reply, Suite, WireError};

/// Bounds every exchange: far beyond what a loopback handshake takes.
const LIMIT: Duration = Duration::from_secs(20);

/// How many log lines a test reads, at most, looking for one.
const MAX_LOG_LINES: usize = 200;

const CLIENT: &str = "SHA256:WZyIbFacJRQsF1FTuV+9PAQnQYGwI19yyCo3VXdEsUQ";
const USER_CA: &str = "SHA256:HN+9UtPLkTwN5vudstCI+EOaWhI2Nc3urDOdS8IgWeM";

fn read(name: &str) -> String {
    let path = fixture(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The fixture client key, presenting `keys/certs/NAME-cert.pub` when given.
fn client(certificate: Option<&str>) -> LocalIdentity {
    let identity = parse_identity(&read("client_ed25519"), &fixture("client_ed25519")).unwrap();
    let local = LocalIdentity::new(&identity);
    match certificate {
        None => local,
        Some(name) => {
            let line = read(&format!("certs/{name}-cert.pub"));
            let blob = base64::engine::general_purpose::STANDARD
                .decode(line.split_whitespace().nth(1).unwrap())
                .unwrap();
            local.with_certificate(blob).unwrap()
        }
    }
}

/// The outcome of one session: a request answered (`Ok`, with the host
/// certificate the server presented, if any), or the refusal's text.
type Outcome = Result<Option<Certificate>, String>;

/// Connects to `addr` as `client` and sends one request; with `then`, runs it
/// and waits on the open session for the ERROR that ends it.
fn session(
    addr: std::net::SocketAddr,
    client: LocalIdentity,
    then: Option<&dyn Fn()>,
) -> (Outcome, Option<String>) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        tokio::time::timeout(LIMIT, async {
            let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            let offer = Offer::new(Suite::ChaChaPolyBlake2s);
            let pending = wire::initiate_v2(&mut stream, &client, &offer)
                .await
                .unwrap();
            let established = pending.approve(&mut stream).await.unwrap();
            let host_certificate = established.peer_certificate().cloned();
            let (reader, writer) = stream.into_split();
            let (mut rx, mut tx) = established.into_halves(reader, writer);
            tx.write_record(RecordType::Request, b"hi").await.unwrap();
            tx.flush().await.unwrap();
            let refusal = |read| match read {
                Ok(Some(Reply::Error(reason))) => reason,
                Err(WireError::NotAllowed(Refusal::PermissionDenied(reason))) => reason,
                other => panic!("no refusal: {other:?}"),
            };
            match rx.read_reply_to(2).await {
                Ok(Some(Reply::Response(body))) => assert_eq!(body, b"HI"),
                other => return (Err(refusal(other)), None),
            }
            let Some(then) = then else {
                return (Ok(host_certificate), None);
            };
            then();
            let end = refusal(rx.read_reply(64).await);
            (Ok(host_certificate), Some(end))
        })
        .await
        .expect("the session finished in time")
    })
}

/// A server's directory: the fixture host key (so its certificates apply), an
/// authorized_keys, and whatever else the test writes.
struct Dir {
    dir: tempfile::TempDir,
}

impl Dir {
    fn new(authorized_keys: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let host_key = dir.path().join("host_key");
        std::fs::copy(fixture("host_ed25519_key"), &host_key).unwrap();
        std::fs::set_permissions(&host_key, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(dir.path().join("authorized_keys"), authorized_keys).unwrap();
        Self { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write(&self, name: &str, contents: &str) -> String {
        std::fs::write(self.path(name), contents).unwrap();
        self.path(name).display().to_string()
    }

    fn serve(&self, extra: &[&str]) -> Running {
        Running(start_serve(
            self.dir.path(),
            &self.path("authorized_keys"),
            extra,
        ))
    }
}

/// A started server, killed when dropped (a failed assertion included).
struct Running(Started);

impl std::ops::Deref for Running {
    type Target = Started;
    fn deref(&self) -> &Started {
        &self.0
    }
}

impl std::ops::DerefMut for Running {
    fn deref_mut(&mut self) -> &mut Started {
        &mut self.0
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.child.kill();
        let _ = self.0.child.wait();
    }
}

/// Reads the server's log until a line containing `needle`, and returns it.
fn log_line(started: &mut Started, needle: &str) -> String {
    let mut seen = String::new();
    for _ in 0..MAX_LOG_LINES {
        let mut line = String::new();
        if started.stderr.read_line(&mut line).unwrap_or(0) == 0 {
            break;
        }
        if line.contains(needle) {
            return line;
        }
        seen.push_str(&line);
    }
    panic!("no log line with {needle:?} in:\n{seen}");
}

fn stop(server: Running) {
    drop(server);
}

fn cert_authority_line() -> String {
    format!(
        "# the fleet's user CA\ncert-authority,principals=\"alice\" {}",
        read("certs/user_ca.pub")
    )
}

#[test]
fn a_cert_authority_line_admits_a_user_certificate_and_the_log_says_how() {
    let dir = Dir::new(&cert_authority_line());
    let mut server = dir.serve(&[]);
    let authorized_keys = dir.path("authorized_keys").display().to_string();

    let (outcome, _) = session(server.addr, client(Some("valid")), None);
    assert!(outcome.is_ok(), "{outcome:?}");
    let admitted = log_line(&mut server, "admitted: ");
    assert!(
        admitted.contains(&format!(
            "admitted: certificate key_id=\"alice-valid\" serial=1 principal=alice CA {USER_CA} ({authorized_keys}:2)"
        )),
        "{admitted}"
    );
    let closed = log_line(&mut server, "closed");
    assert!(
        closed.contains("key_id=\\\"alice-valid\\\" serial=1 principal=alice")
            || closed.contains("key_id=\"alice-valid\" serial=1 principal=alice"),
        "{closed}"
    );

    for (certificate, told, logged) in [
        (
            "expired",
            "certificate expired on 2021-01-01T00:00:00",
            "certificate \"alice-expired\" serial 3",
        ),
        (
            "wrong_principal",
            "certificate principals carol are not accepted",
            "certificate \"carol\" serial 5",
        ),
        (
            "host_type",
            "certificate is a host certificate",
            "certificate \"alice-as-host\" serial 7",
        ),
        (
            "unknown_critical",
            "unknown-option@noise-echo.test",
            "certificate \"alice-unknown\" serial 8",
        ),
    ] {
        let (outcome, _) = session(server.addr, client(Some(certificate)), None);
        let reason = outcome.expect_err(certificate);
        assert!(reason.contains(told), "{certificate}: {reason}");
        assert!(
            !reason.contains(&authorized_keys),
            "{certificate}: told a path: {reason}"
        );
        let denied = log_line(&mut server, "denied: ");
        assert!(denied.contains(&authorized_keys), "{certificate}: {denied}");
        assert!(denied.contains(logged), "{certificate}: {denied}");
    }
    stop(server);
}

#[test]
fn trusted_user_ca_keys_with_principals_admit_and_refuse_naming_the_files() {
    let dir = Dir::new("");
    let cas = dir.write("user_ca_keys", &read("certs/user_ca.pub"));
    let principals = dir.write("principals", "# the team\nalice\n");
    let mut server = dir.serve(&[
        "--trusted-user-ca-keys",
        &cas,
        "--authorized-principals",
        &principals,
    ]);
    let (outcome, _) = session(server.addr, client(Some("valid")), None);
    assert!(outcome.is_ok(), "{outcome:?}");
    let admitted = log_line(&mut server, "admitted: ");
    assert!(
        admitted.contains(&format!(
            "certificate key_id=\"alice-valid\" serial=1 principal=alice CA {USER_CA} (TrustedUserCAKeys {cas}:1, principal at {principals}:2)"
        )),
        "{admitted}"
    );
    let (outcome, _) = session(server.addr, client(Some("wrong_principal")), None);
    let reason = outcome.unwrap_err();
    assert_eq!(
        reason,
        format!("permission denied: key {CLIENT} is not authorized on this server; its certificate \"carol\" is refused: certificate principals carol are not accepted")
    );
    let denied = log_line(&mut server, "denied: ");
    assert!(
        denied.contains(&format!(
            "(TrustedUserCAKeys {cas}:1, none in {principals})"
        )),
        "{denied}"
    );
    stop(server);
}

#[test]
fn a_missing_revoked_keys_file_refuses_everyone_and_the_log_says_how_to_fix_it() {
    let dir = Dir::new(&read("client_ed25519.pub"));
    let revoked = dir.path("revoked").display().to_string();
    let mut server = dir.serve(&["--revoked-keys", &revoked]);
    let (outcome, _) = session(server.addr, client(None), None);
    assert_eq!(
        outcome.unwrap_err(),
        format!("permission denied: key {CLIENT} is not authorized on this server")
    );
    let denied = log_line(&mut server, "denied: ");
    assert!(denied.contains(&revoked), "{denied}");
    assert!(
        denied.contains("every client is refused until the revoked keys file can be used"),
        "{denied}"
    );
    // Created: served again.
    dir.write("revoked", "");
    let (outcome, _) = session(server.addr, client(None), None);
    assert!(outcome.is_ok(), "{outcome:?}");
    stop(server);
}

#[test]
fn revoke_live_ends_a_certificate_session_when_its_serial_is_revoked() {
    let dir = Dir::new(&cert_authority_line());
    let revoked = dir.write("revoked", "");
    let mut server = dir.serve(&["--revoked-keys", &revoked, "--revoke-live"]);
    let revoke = || {
        std::fs::copy(fixture("certs/krl/serial.krl"), dir.path("revoked.new")).unwrap();
        std::fs::rename(dir.path("revoked.new"), dir.path("revoked")).unwrap();
    };
    let (outcome, end) = session(server.addr, client(Some("valid")), Some(&revoke));
    assert!(outcome.is_ok(), "{outcome:?}");
    assert_eq!(end.as_deref(), Some("permission denied: key revoked"));
    let closed = log_line(&mut server, "closed: key revoked");
    assert!(closed.contains("alice-valid"), "{closed}");
    // And a new session with it is refused, naming the revocation in the log.
    let (outcome, _) = session(server.addr, client(Some("valid")), None);
    assert_eq!(
        outcome.unwrap_err(),
        "permission denied: certificate \"alice-valid\" serial 1 is revoked"
    );
    let denied = log_line(&mut server, "denied: ");
    assert!(
        denied.contains(&format!(
            "the certificate's serial 1 is revoked by {revoked}"
        )),
        "{denied}"
    );
    stop(server);
}

#[test]
fn the_host_certificate_beside_the_host_key_is_presented_and_named_when_listening() {
    let dir = Dir::new(&read("client_ed25519.pub"));
    std::fs::copy(
        fixture("certs/host-cert.pub"),
        dir.path("host_key-cert.pub"),
    )
    .unwrap();
    let server = dir.serve(&[]);
    let listening = server.log.lines().last().unwrap().to_owned();
    assert!(
        listening.contains(
            "host_certificate=\"host-localhost\" serial=100 principals=localhost,127.0.0.1 valid_until=forever host_key=SHA256:"
        ),
        "{listening}"
    );
    let (outcome, _) = session(server.addr, client(None), None);
    let certificate = outcome.unwrap().expect("a host certificate in message 2");
    assert_eq!(
        (certificate.key_id.as_str(), certificate.serial),
        ("host-localhost", 100)
    );
    stop(server);
}

/// `serve` with `extra`, expected to refuse to start: its stderr.
fn refused(dir: &Path, extra: &[&str]) -> String {
    let out = noise_echo(dir)
        .args(["serve", "--listen", "127.0.0.1:0", "--host-key"])
        .arg(dir.join("host_key"))
        .arg("--authorized-keys")
        .arg(dir.join("authorized_keys"))
        .args(extra)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    text(&out.stderr)
}

#[test]
fn a_host_certificate_that_cannot_serve_stops_serve_naming_the_file_and_the_fix() {
    let dir = Dir::new("");
    let cases = [
        ("missing", None, "No such file"),
        (
            "user certificate",
            Some("certs/valid-cert.pub"),
            "it is a user certificate",
        ),
        (
            "a user certificate of the host key",
            Some("certs/host_user_type-cert.pub"),
            "it is a user certificate",
        ),
        (
            "expired",
            Some("certs/host_expired-cert.pub"),
            "certificate expired on 2021-01-01T00:00:00",
        ),
        (
            "not yet valid",
            Some("certs/host_not_yet_valid-cert.pub"),
            "not valid before 2099-01-01T00:00:00",
        ),
    ];
    for (case, source, why) in cases {
        let file = dir.path(&format!("{}-cert.pub", case.replace(' ', "_")));
        if let Some(source) = source {
            std::fs::copy(fixture(source), &file).unwrap();
        }
        let stderr = refused(
            dir.dir.path(),
            &["--host-certificate", &file.display().to_string()],
        );
        assert!(
            stderr.contains(&format!(
                "cannot use the host certificate {}",
                file.display()
            )),
            "{case}: {stderr}"
        );
        assert!(stderr.contains(why), "{case}: {stderr}");
        assert!(
            stderr.contains("ssh-keygen -s CA -h -I ID -n NAMES"),
            "{case}: {stderr}"
        );
    }
    // A host certificate of another host key.
    let other = tempfile::tempdir().unwrap();
    let out = noise_echo(other.path())
        .args(["keygen", "-N", "", "-f"])
        .arg(other.path().join("host_key"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    std::fs::write(other.path().join("authorized_keys"), "").unwrap();
    let file = dir.path("host-cert.pub");
    std::fs::copy(fixture("certs/host-cert.pub"), &file).unwrap();
    let stderr = refused(
        other.path(),
        &["--host-certificate", &file.display().to_string()],
    );
    assert!(stderr.contains("it certifies key SHA256:"), "{stderr}");
    assert!(stderr.contains("not this host key"), "{stderr}");
}

#[test]
fn a_bad_flag_combination_creates_no_host_key() {
    let dir = tempfile::tempdir().unwrap();
    let host_key = dir.path().join("new_host_key");
    let out = noise_echo(dir.path())
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--create-host-key",
            "--host-key",
        ])
        .arg(&host_key)
        .args(["--protocols", "1", "--ciphers", "aesgcm"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("--protocols 1 needs chachapoly"),
        "{}",
        text(&out.stderr)
    );
    assert!(!host_key.exists(), "a host key was left behind");
}

#[test]
fn unreadable_trusted_user_ca_keys_stop_serve_and_principals_need_them() {
    let dir = Dir::new("");
    let principals = dir.write("principals", "alice\n");
    let missing = dir.path("user_ca_keys").display().to_string();
    let stderr = refused(
        dir.dir.path(),
        &[
            "--trusted-user-ca-keys",
            &missing,
            "--authorized-principals",
            &principals,
        ],
    );
    assert!(
        stderr.contains(&format!(
            "cannot read the trusted user CA keys file {missing}"
        )),
        "{stderr}"
    );
    // clap refuses one without the other (exit 2).
    let out = noise_echo(dir.dir.path())
        .args(["serve", "--authorized-principals", &principals])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("--trusted-user-ca-keys"),
        "{}",
        text(&out.stderr)
    );
}
