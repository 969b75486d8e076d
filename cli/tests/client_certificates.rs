//! OpenSSH certificates through the `connect` binary, as a user meets them: the
//! user certificate found beside the identity (`IDENTITY-cert.pub`) or named by the
//! config file's `CertificateFile`, and the server's host certificate judged through
//! known_hosts' `@cert-authority` and `@revoked` lines and `RevokedHostKeys`.
//!
//! The servers are the library's, in this test process, on 127.0.0.1:0: one that
//! records the certificate each client presented (the wire's responder, which
//! answers requests as the server does), and `server::run` presenting a host
//! certificate (`ServerConfig.host` with `LocalIdentity::with_certificate`). The
//! new messages are one golden transcript, cli/tests/cmd/client_certificates.txt
//! (regenerate with `SNAPSHOTS=overwrite`).

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::{mpsc, Arc};
use std::time::Duration;

use common::{fixture, noise_echo, text};
use noise_echo::identity::Identity;
use noise_echo::openssh::authorized_keys::{self, AuthorizedKeys};
use noise_echo::openssh::keyfile::parse_identity;
use noise_echo::server::{self, AllowList, ServerConfig};
use noise_echo::wire::{
    respond_any, LocalIdentity, RecordType, RekeyPolicy, ResponderSettings, ServerParams, Suite,
};

const SUCCESS: i32 = 0;
const FAILURE: i32 = 1;
const HOST_KEY_NOT_TRUSTED: i32 = 4;

/// A safety bound on waiting for the server's record of a connection; never
/// reached when things work.
const WAIT: Duration = Duration::from_secs(60);

fn status(output: &Output) -> i32 {
    output.status.code().unwrap_or(-1)
}

fn identity(name: &str) -> Identity {
    let path = fixture(name);
    parse_identity(&fs::read_to_string(&path).unwrap(), &path).unwrap()
}

/// The blob of `keys/certs/NAME-cert.pub`.
fn blob(name: &str) -> Vec<u8> {
    use base64::Engine as _;
    let line = fs::read_to_string(fixture(&format!("certs/{name}-cert.pub"))).unwrap();
    base64::engine::general_purpose::STANDARD
        .decode(line.split_whitespace().nth(1).unwrap())
        .unwrap()
}

/// A home with the fixture client key as `home/id` (mode 0600, as keygen makes
/// it), and `home/id-cert.pub` a copy of `keys/certs/CERT-cert.pub` if given.
fn home_with_identity(cert: Option<&str>) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let id = dir.path().join("id");
    fs::copy(fixture("client_ed25519"), &id).unwrap();
    fs::set_permissions(&id, fs::Permissions::from_mode(0o600)).unwrap();
    if let Some(cert) = cert {
        fs::copy(
            fixture(&format!("certs/{cert}-cert.pub")),
            dir.path().join("id-cert.pub"),
        )
        .unwrap();
    }
    dir
}

/// A tokio runtime serving on 127.0.0.1:0 until dropped.
struct InProcess {
    port: u16,
    _runtime: tokio::runtime::Runtime,
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

/// A server presenting the fixture host key, that sends what certificate each
/// client presented (`key_id serial`, or `none`) on the channel, then answers
/// requests with their uppercase, as noise-echo's server does.
fn recording_server() -> (InProcess, mpsc::Receiver<String>) {
    let runtime = runtime();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    let (seen, received) = mpsc::channel();
    let host = Arc::new(LocalIdentity::new(&identity("host_ed25519_key")));
    runtime.spawn(async move {
        // Bounded by the test's connections: each test connects a few times.
        for _ in 0..8 {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let settings = ResponderSettings::new(
                Suite::ALL.to_vec(),
                true,
                ServerParams::new(4096, RekeyPolicy::DEFAULT),
            );
            let Ok(established) = respond_any(&mut stream, &host, &settings).await else {
                continue;
            };
            let presented = match established.peer_certificate() {
                Some(certificate) => format!("{} {}", certificate.key_id, certificate.serial),
                None => "none".to_owned(),
            };
            let _ = seen.send(presented);
            let (mut rx, mut tx) = established.into_split(stream);
            let mut body = Vec::new();
            while let Ok(Some(_)) = rx.next_record().await {
                body.clear();
                if rx.read_body(&mut body, 4096).await.is_err() {
                    break;
                }
                let reply = body.to_ascii_uppercase();
                if tx.write_record(RecordType::Response, &reply).await.is_err()
                    || tx.flush().await.is_err()
                {
                    break;
                }
            }
            let _ = tx.shutdown().await;
        }
    });
    (
        InProcess {
            port,
            _runtime: runtime,
        },
        received,
    )
}

/// The library's server presenting `key` with the certificate `cert` (if any),
/// admitting the fixture client.
fn host_server(key: &str, cert: Option<&str>) -> InProcess {
    let runtime = runtime();
    let mut host = LocalIdentity::new(&identity(key));
    if let Some(cert) = cert {
        host = host.with_certificate(blob(cert)).unwrap();
    }
    let line = authorized_keys::append_key(&[], &identity("client_ed25519").public_key(), "client");
    let allow = AllowList::Keys(Arc::new(AuthorizedKeys::parse(&line, "(test)".as_ref())));
    let config = ServerConfig::with_allow_list(Arc::new(host), allow);
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    runtime.spawn(server::run(listener, config, std::future::pending::<()>()));
    InProcess {
        port,
        _runtime: runtime,
    }
}

fn host_fingerprint() -> String {
    identity("host_ed25519_key")
        .public_key()
        .fingerprint()
        .to_string()
}

/// `connect` from `home` to 127.0.0.1:`port` with `home/id`, and `args`.
fn connect(home: &Path, port: u16, args: &[&str]) -> Output {
    noise_echo(home)
        .args(["connect", "-F", "none", "-i"])
        .arg(home.join("id"))
        .arg("--known-hosts")
        .arg(home.join("known_hosts"))
        .arg(format!("127.0.0.1:{port}"))
        .args(args)
        .output()
        .unwrap()
}

/// What the server saw of the next connection.
fn presented(seen: &mpsc::Receiver<String>) -> String {
    seen.recv_timeout(WAIT)
        .expect("the server saw a connection")
}

#[test]
fn the_certificate_beside_the_identity_is_presented_and_described_by_v() {
    let (server, seen) = recording_server();
    let home = home_with_identity(Some("valid"));
    let pin = host_fingerprint();
    let out = connect(
        home.path(),
        server.port,
        &["-v", "--expect-fingerprint", &pin, "hello"],
    );
    let stderr = text(&out.stderr);
    assert_eq!(status(&out), SUCCESS, "{stderr}");
    assert_eq!(text(&out.stdout), "HELLO\n");
    assert_eq!(presented(&seen), "alice-valid 1");
    assert!(
        stderr.contains(r#"certificate: key_id "alice-valid" serial 1, principals alice,bob, valid until forever"#),
        "{stderr}"
    );
    // Without one beside it, the key alone, and -v says where it looked.
    let bare = home_with_identity(None);
    let out = connect(
        bare.path(),
        server.port,
        &["-v", "--expect-fingerprint", &pin, "x"],
    );
    assert_eq!(status(&out), SUCCESS, "{}", text(&out.stderr));
    assert_eq!(presented(&seen), "none");
    assert!(text(&out.stderr).contains("no certificate beside the identity"));
    // Protocol 1 has no field for it: sent without, and -v says so.
    let out = connect(
        home.path(),
        server.port,
        &["-v", "--protocol", "1", "--expect-fingerprint", &pin, "x"],
    );
    assert_eq!(status(&out), SUCCESS, "{}", text(&out.stderr));
    assert_eq!(presented(&seen), "none");
    assert!(text(&out.stderr).contains("protocol 1 carries no certificate"));
}

#[test]
fn an_expired_certificate_is_still_sent_and_v_says_it_is_expired() {
    let (server, seen) = recording_server();
    let home = home_with_identity(Some("expired"));
    let pin = host_fingerprint();
    let out = connect(
        home.path(),
        server.port,
        &["-v", "--expect-fingerprint", &pin, "x"],
    );
    let stderr = text(&out.stderr);
    assert_eq!(status(&out), SUCCESS, "{stderr}");
    assert_eq!(presented(&seen), "alice-expired 3");
    assert!(
        stderr.contains(
            "valid until 2021-01-01T00:00:00 (certificate expired on 2021-01-01T00:00:00)"
        ),
        "{stderr}"
    );
}

#[test]
fn certificate_file_in_the_config_names_the_certificate_and_g_prints_it() {
    let (server, seen) = recording_server();
    // The one beside the identity is not the one sent.
    let home = home_with_identity(Some("valid"));
    let config = home.path().join("config");
    let named = fixture("certs/valid_window-cert.pub");
    let revoked = fixture("certs/krl/serial.krl");
    fs::write(
        &config,
        format!(
            "Host 127.0.0.1\n    CertificateFile {}\n    RevokedHostKeys {}\n",
            named.display(),
            revoked.display()
        ),
    )
    .unwrap();
    let settings = noise_echo(home.path())
        .args(["connect", "-G", "-F"])
        .arg(&config)
        .arg("127.0.0.1")
        .output()
        .unwrap();
    let printed = text(&settings.stdout);
    assert!(
        printed.contains(&format!("certificatefile {}\n", named.display())),
        "{printed}"
    );
    assert!(
        printed.contains(&format!("revokedhostkeys {}\n", revoked.display())),
        "{printed}"
    );
    let pin = host_fingerprint();
    let out = noise_echo(home.path())
        .args(["connect", "-F"])
        .arg(&config)
        .arg("-i")
        .arg(home.path().join("id"))
        .arg("--known-hosts")
        .arg(home.path().join("known_hosts"))
        .args(["--expect-fingerprint", &pin])
        .arg(format!("127.0.0.1:{}", server.port))
        .arg("x")
        .output()
        .unwrap();
    assert_eq!(status(&out), SUCCESS, "{}", text(&out.stderr));
    assert_eq!(presented(&seen), "alice-window 2");
}

/// Unusable certificates are refused before connecting, naming the file, as one
/// golden transcript (cli/tests/cmd/client_certificate_files.txt): one of another
/// key, one that does not parse, a CertificateFile that does not exist.
#[test]
fn an_unusable_certificate_is_an_error_naming_the_file() {
    // Nothing listens: each error comes before any connection.
    let unused = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = unused.local_addr().unwrap().port();
    drop(unused);
    let mut transcript = String::new();
    let mut record = |case: &str, out: &Output, home: &Path| {
        assert_eq!(status(out), FAILURE, "{case}: {}", text(&out.stderr));
        let stderr = text(&out.stderr)
            .replace(&home.display().to_string(), "[HOME]")
            .replace(&port.to_string(), "[PORT]");
        transcript.push_str(&format!("== {case}\nstatus {}\n{stderr}\n", status(out)));
    };
    // The host's certificate beside the client's key.
    let home = home_with_identity(Some("host"));
    let out = connect(home.path(), port, &["x"]);
    record("another key's certificate", &out, home.path());
    let cert = home.path().join("id-cert.pub");
    fs::write(&cert, "ssh-ed25519-cert-v01@openssh.com AAAA garbage\n").unwrap();
    let out = connect(home.path(), port, &["x"]);
    record("not a certificate", &out, home.path());
    let config = home.path().join("config");
    fs::write(&config, "CertificateFile ~/missing-cert.pub\n").unwrap();
    let out = noise_echo(home.path())
        .args(["connect", "-F"])
        .arg(&config)
        .arg("-i")
        .arg(home.path().join("id"))
        .arg(format!("127.0.0.1:{port}"))
        .output()
        .unwrap();
    record("CertificateFile missing", &out, home.path());
    snapbox::assert_data_eq!(
        transcript,
        snapbox::file!["cmd/client_certificate_files.txt"].raw()
    );
}

/// `@cert-authority * HOST_CA` and `extra`, as known_hosts in `home`.
fn write_known_hosts(home: &Path, extra: &str) -> PathBuf {
    let path = home.join("known_hosts");
    let ca = fs::read_to_string(fixture("certs/host_ca.pub")).unwrap();
    fs::write(&path, format!("@cert-authority * {ca}{extra}")).unwrap();
    path
}

#[test]
fn a_host_certificate_from_a_trusted_ca_needs_no_prompt_and_writes_nothing() {
    let server = host_server("host_ed25519_key", Some("host"));
    let home = home_with_identity(None);
    let known_hosts = write_known_hosts(home.path(), "");
    let before = fs::read(&known_hosts).unwrap();
    let out = connect(home.path(), server.port, &["-v", "hello"]);
    let stderr = text(&out.stderr);
    assert_eq!(status(&out), SUCCESS, "{stderr}");
    assert_eq!(text(&out.stdout), "HELLO\n");
    assert_eq!(
        fs::read(&known_hosts).unwrap(),
        before,
        "known_hosts unchanged"
    );
    assert!(!stderr.contains("Permanently added"), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "host certificate for principal \"127.0.0.1\" trusted by the @cert-authority line {}:1",
            known_hosts.display()
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(r#"server host certificate: key_id "host-localhost" serial 100"#),
        "{stderr}"
    );
}

#[test]
fn a_rotated_host_key_certified_by_the_same_ca_is_trusted_not_changed() {
    let server = host_server("certs/host_rotated_key", Some("host_rotated"));
    let home = home_with_identity(None);
    let old = fs::read_to_string(fixture("host_ed25519_key.pub")).unwrap();
    let known_hosts = write_known_hosts(home.path(), &format!("[127.0.0.1]:{} {old}", server.port));
    let before = fs::read(&known_hosts).unwrap();
    let out = connect(home.path(), server.port, &["hello"]);
    let stderr = text(&out.stderr);
    assert_eq!(status(&out), SUCCESS, "{stderr}");
    assert!(!stderr.contains("CHANGED"), "{stderr}");
    assert_eq!(fs::read(&known_hosts).unwrap(), before);
    // The same rotated key without its certificate is a changed key.
    let bare = host_server("certs/host_rotated_key", None);
    write_known_hosts(home.path(), &format!("[127.0.0.1]:{} {old}", bare.port));
    let out = connect(home.path(), bare.port, &["hello"]);
    assert_eq!(status(&out), HOST_KEY_NOT_TRUSTED);
    assert!(text(&out.stderr).contains("REMOTE HOST IDENTIFICATION HAS CHANGED"));
}

#[test]
fn a_certificate_from_an_untrusted_ca_leaves_the_first_use_path() {
    let server = host_server("host_ed25519_key", Some("host_other_ca"));
    let home = home_with_identity(None);
    let known_hosts = write_known_hosts(home.path(), "");
    let out = connect(home.path(), server.port, &["hello"]);
    assert_eq!(status(&out), HOST_KEY_NOT_TRUSTED);
    assert!(
        text(&out.stderr).contains("is not known"),
        "{}",
        text(&out.stderr)
    );
    let out = connect(home.path(), server.port, &["--accept-new-host", "hello"]);
    let stderr = text(&out.stderr);
    assert_eq!(status(&out), SUCCESS, "{stderr}");
    assert!(stderr.contains("Permanently added"), "{stderr}");
    let written = fs::read_to_string(&known_hosts).unwrap();
    assert!(written.contains(&format!("[127.0.0.1]:{} ssh-ed25519", server.port)));
}

/// The refusals, each through the binary with its exit status, as one golden
/// transcript: a certificate that fails (wrong principal, expired, a user
/// certificate), a revoked host key and CA (`@revoked`), and RevokedHostKeys as a
/// text list and as KRLs. None of them writes known_hosts, whatever the policy.
#[test]
fn host_certificate_refusals_golden() {
    let host_key = fs::read_to_string(fixture("host_ed25519_key.pub")).unwrap();
    let host_ca = fs::read_to_string(fixture("certs/host_ca.pub")).unwrap();
    let krl = |name: &str| fixture(&format!("certs/krl/{name}"));
    let cases: Vec<(&str, &str, String, Option<PathBuf>)> = vec![
        (
            "wrong principal",
            "host_wrong_principal",
            String::new(),
            None,
        ),
        ("expired", "host_expired", String::new(), None),
        ("user certificate", "host_user_type", String::new(), None),
        (
            "@revoked host key",
            "host",
            format!("@revoked * {host_key}"),
            None,
        ),
        (
            "@revoked CA key",
            "host",
            format!("@revoked * {host_ca}"),
            None,
        ),
        (
            "RevokedHostKeys text list",
            "host",
            String::new(),
            Some(krl("revoked_keys")),
        ),
        (
            "RevokedHostKeys KRL by key ID",
            "host",
            String::new(),
            Some(krl("key_id_any_ca.krl")),
        ),
        (
            "RevokedHostKeys KRL by hash",
            "host",
            String::new(),
            Some(krl("sha256.krl")),
        ),
    ];
    let mut transcript = String::new();
    for (case, cert, extra, revoked) in cases {
        let server = host_server("host_ed25519_key", Some(cert));
        let home = home_with_identity(None);
        let known_hosts = write_known_hosts(home.path(), &extra);
        let before = fs::read(&known_hosts).unwrap();
        let config = match &revoked {
            Some(file) => {
                let config = home.path().join("config");
                fs::write(&config, format!("RevokedHostKeys {}\n", file.display())).unwrap();
                config
            }
            None => PathBuf::from("none"),
        };
        // Even a policy accepting new keys accepts none of these.
        let out = noise_echo(home.path())
            .args(["connect", "--accept-new-host", "-F"])
            .arg(&config)
            .arg("-i")
            .arg(home.path().join("id"))
            .arg("--known-hosts")
            .arg(&known_hosts)
            .arg(format!("127.0.0.1:{}", server.port))
            .arg("hello")
            .output()
            .unwrap();
        assert_eq!(fs::read(&known_hosts).unwrap(), before, "{case}");
        let stderr = text(&out.stderr)
            .replace(&home.path().display().to_string(), "[HOME]")
            .replace(&fixture("").display().to_string(), "[KEYS]/")
            .replace(&server.port.to_string(), "[PORT]");
        transcript.push_str(&format!(
            "== {case}\nstatus {}\nstdout {:?}\n{stderr}\n",
            status(&out),
            text(&out.stdout)
        ));
    }
    let keys = fixture("").display().to_string();
    let redacted = transcript.replace(&keys, "[KEYS]/");
    snapbox::assert_data_eq!(
        redacted,
        snapbox::file!["cmd/client_certificates.txt"].raw()
    );
}

/// connect's own lines on stderr ("Permanently added", a refused request) go
/// through a writer that ignores a closed stderr: eprintln! would panic (status
/// 101) after the session succeeded. stderr here is a pipe whose reader is closed
/// before connect starts, so every write to it fails.
#[test]
fn connect_with_stderr_closed_still_exits_with_its_status() {
    let server = host_server("host_ed25519_key", None);
    let home = home_with_identity(None);
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = noise_echo(home.path())
        .args(["connect", "-F", "none", "--accept-new-host", "-i"])
        .arg(home.path().join("id"))
        .arg("--known-hosts")
        .arg(home.path().join("known_hosts"))
        .arg(format!("127.0.0.1:{}", server.port))
        .arg("hello")
        .stderr(writer)
        .output()
        .unwrap();
    assert_eq!(status(&out), SUCCESS);
    assert_eq!(text(&out.stdout), "HELLO\n");
    // The key was added even though the warning could not be shown.
    let written = fs::read_to_string(home.path().join("known_hosts")).unwrap();
    assert!(written.contains(&format!("[127.0.0.1]:{} ssh-ed25519", server.port)));
}
