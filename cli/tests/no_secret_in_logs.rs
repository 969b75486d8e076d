//! No log line, error message or Debug output contains key material.
//!
//! One scenario, run end to end: keys made by the real `keygen`, authorized with the
//! real `authorize`; a server in this process logging at TRACE into a buffer, and the
//! real `serve` binary logging at TRACE to a pipe; authorized and unauthorized
//! clients (in-process and the real `connect`), garbage, an oversized request, bad key
//! files, and the Debug form of every type that holds a key. Then every byte captured
//! is searched for every private seed and derived X25519 private key, in hex, base64
//! (at every byte alignment), and Rust's Debug form of a byte array.
//!
//! Its own test binary: the TRACE subscriber is global to the process.

mod common;

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use base64::Engine;
use common::BIN;
use noise_echo::client::{self, ClientConfig, Target, UnknownHostPolicy};
use noise_echo::identity::Identity;
use noise_echo::openssh::keyfile;
use noise_echo::server::{self, ServerConfig};
use noise_echo::wire::{self, LocalIdentity};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Everything the scenario printed, logged or formatted.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    fn push(&self, bytes: impl AsRef<[u8]>) {
        let mut all = self.0.lock().unwrap();
        all.extend_from_slice(bytes.as_ref());
        all.push(b'\n');
    }
}

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Runs the binary, captures its output, returns whether it succeeded.
fn run(captured: &Captured, args: &[&str], stdin: &[u8]) -> bool {
    let mut child = Command::new(BIN)
        .args(args)
        .env("RUST_LOG", "trace")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let output = child.wait_with_output().unwrap();
    captured.push(&output.stdout);
    captured.push(&output.stderr);
    output.status.success()
}

/// Every text form a 32-byte secret could take in output.
fn encodings(secret: &[u8; 32]) -> Vec<String> {
    let mut forms = vec![
        hex(secret, false),
        hex(secret, true),
        STANDARD.encode(secret),
        format!("{secret:?}"),
        format!("{:?}", secret.to_vec()),
    ];
    // Inside a longer base64 text the secret starts at any byte alignment: look for
    // the part that encodes whole 3-byte groups of it, at each alignment.
    for skip in 0..3 {
        let groups = (secret.len() - skip) / 3 * 3;
        let part = &secret[skip..skip + groups];
        forms.push(STANDARD_NO_PAD.encode(part));
        forms.push(URL_SAFE_NO_PAD.encode(part));
    }
    forms
}

fn hex(bytes: &[u8], upper: bool) -> String {
    bytes
        .iter()
        .map(|b| {
            if upper {
                format!("{b:02X}")
            } else {
                format!("{b:02x}")
            }
        })
        .collect()
}

#[test]
fn no_output_of_a_full_scenario_contains_key_material() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .init();

    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    let (client_key, stranger_key, host_key) = (path("client"), path("stranger"), path("host"));
    let (authorized, known_hosts) = (path("authorized_keys"), path("known_hosts"));

    // Keys, by the real commands.
    for key in [&client_key, &stranger_key, &host_key] {
        assert!(run(&captured, &["keygen", "-f", key, "-C", "test"], b""));
    }
    assert!(
        !run(&captured, &["keygen", "-f", &client_key], b""),
        "no overwrite"
    );
    assert!(run(&captured, &["fingerprint", &client_key], b""));
    assert!(run(
        &captured,
        &[
            "authorize",
            "--authorized-keys",
            &authorized,
            &format!("{client_key}.pub")
        ],
        b""
    ));
    assert!(run(
        &captured,
        &["authorize", "--authorized-keys", &authorized, "--list"],
        b""
    ));
    // A private key given where a public key belongs.
    assert!(!run(
        &captured,
        &["authorize", "--authorized-keys", &authorized, &client_key],
        b""
    ));

    let client = keyfile::read_identity(Path::new(&client_key)).unwrap();
    let stranger = keyfile::read_identity(Path::new(&stranger_key)).unwrap();
    let host = keyfile::read_identity(Path::new(&host_key)).unwrap();
    let extra = Identity::generate("in-memory");

    // Bad key files: readable by others, corrupt, truncated.
    let open = dir.path().join("open_key");
    std::fs::copy(&client_key, &open).unwrap();
    std::fs::set_permissions(&open, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let error = keyfile::read_identity(&open).unwrap_err();
    captured.push(format!("{error}\n{error:?}"));
    let text = std::fs::read_to_string(&client_key).unwrap();
    for cut in [40, text.len() / 2, text.len() - 40] {
        let mut broken = text[..cut].to_owned();
        broken.push_str("\n-----END OPENSSH PRIVATE KEY-----\n");
        if let Err(error) = keyfile::parse_identity(&broken, Path::new("broken")) {
            captured.push(format!("{error}\n{error:?}"));
        }
    }
    let mut flipped = text.clone().into_bytes();
    flipped[120] ^= 1;
    if let Err(error) = keyfile::parse_identity(&String::from_utf8_lossy(&flipped), Path::new("f"))
    {
        captured.push(format!("{error}\n{error:?}"));
    }

    // Debug of everything that holds a key.
    for identity in [&client, &stranger, &host, &extra] {
        captured.push(format!("{identity:?} {:?}", identity.noise_keypair()));
        captured.push(format!("{:?}", LocalIdentity::new(identity)));
    }

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut config = ServerConfig::new(
            Arc::new(LocalIdentity::new(&host)),
            authorized.clone().into(),
        );
        config.max_request = 64;
        captured.push(format!("{config:?}"));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(server::run(listener, config, stopped));
        let target = Target {
            host: "127.0.0.1".into(),
            port: addr.port(),
        };
        let client_config = |identity: &Identity| {
            ClientConfig::known_hosts(LocalIdentity::new(identity), known_hosts.clone().into())
                .unknown_host(UnknownHostPolicy::AcceptNew)
        };

        // Authorized: requests, one too large.
        let mut connection = client::connect(&target, client_config(&client))
            .await
            .unwrap();
        captured.push(format!(
            "{:?} {:?}",
            connection.receiver(),
            connection.sender()
        ));
        let reply = connection.request(b"hello").await.unwrap();
        captured.push(format!("{reply:?}"));
        let error = connection.request(&[b'x'; 100]).await;
        captured.push(format!("{error:?}"));
        // Unauthorized.
        let mut denied = client::connect(&target, client_config(&stranger))
            .await
            .unwrap();
        let error = denied.request(b"let me in").await.unwrap_err();
        captured.push(format!("{error}\n{error:?}"));
        // Garbage and a half handshake.
        garbage(addr, b"SSH-2.0-OpenSSH_9.6\r\n").await;
        garbage(addr, &[0, 32, 1, 2, 3]).await;
        // The wrong server key.
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let error = wire::initiate_checked(&mut stream, &LocalIdentity::new(&extra), |_| {
            Err::<(), _>("not the server I expected")
        })
        .await
        .unwrap_err();
        captured.push(format!("{error}\n{error:?}"));

        // The real client, authorized and not.
        let addr_text = addr.to_string();
        let captured_bin = captured.clone();
        let (client_key, stranger_key, known_hosts) = (
            client_key.clone(),
            stranger_key.clone(),
            known_hosts.clone(),
        );
        tokio::task::spawn_blocking(move || {
            let args = |key: &str| {
                vec![
                    "connect".to_owned(),
                    "-i".into(),
                    key.to_owned(),
                    "--known-hosts".into(),
                    known_hosts.clone(),
                    "--accept-new-host".into(),
                    addr_text.clone(),
                ]
            };
            for (key, expect_success) in [(&client_key, true), (&stranger_key, false)] {
                let args = args(key);
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                assert_eq!(run(&captured_bin, &args, b"one\ntwo\n"), expect_success);
            }
        })
        .await
        .unwrap();

        let _ = stop.send(());
        tokio::time::timeout(Duration::from_secs(10), server)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    });

    // The real server at TRACE, with an authorized client, a stranger and garbage.
    serve_binary_scenario(
        &captured,
        &host_key,
        &authorized,
        &client_key,
        &stranger_key,
        &known_hosts,
    );

    // The detector works: the private key file itself holds the seed in base64.
    let key_file = std::fs::read_to_string(&client_key).unwrap();
    let key_file: String = key_file
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    assert!(
        encodings(&client.seed())
            .iter()
            .any(|form| key_file.contains(form)),
        "the scan would not find the seed even in the key file"
    );

    let output = captured.0.lock().unwrap().clone();
    let text = String::from_utf8_lossy(&output);
    assert!(text.contains("denied"), "the scenario did not run: {text}");
    assert!(
        text.contains("SHA256:"),
        "fingerprints are expected, keys are not"
    );
    for (name, identity) in [
        ("client", &client),
        ("stranger", &stranger),
        ("host", &host),
        ("extra", &extra),
    ] {
        let secrets = [
            ("seed", *identity.seed()),
            ("X25519 private key", *identity.noise_keypair().private()),
        ];
        for (what, secret) in secrets {
            assert!(
                !output.windows(32).any(|window| window == secret),
                "the raw {what} of {name} appears in the output"
            );
            for form in encodings(&secret) {
                assert!(
                    !text.contains(&form),
                    "the {what} of {name} appears in the output as {form}"
                );
            }
        }
    }
    eprintln!("scanned {} bytes of output: no key material", output.len());
}

async fn garbage(addr: SocketAddr, bytes: &[u8]) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let _ = stream.write_all(bytes).await;
    let _ = stream.shutdown().await;
    let mut sink = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut sink)).await;
}

fn serve_binary_scenario(
    captured: &Captured,
    host_key: &str,
    authorized: &str,
    client_key: &str,
    stranger_key: &str,
    known_hosts: &str,
) {
    use std::io::BufRead;
    let mut child = Command::new(BIN)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--host-key",
            host_key,
            "--authorized-keys",
            authorized,
        ])
        .env("RUST_LOG", "trace")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (lines_tx, lines) = std::sync::mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = lines_tx.send(line);
        }
    });
    let mut seen = Vec::new();
    let addr = loop {
        let line = lines
            .recv_timeout(Duration::from_secs(10))
            .expect("serve did not start");
        seen.push(line.clone());
        if let Some(rest) = line.split("listening on ").nth(1) {
            break rest.split_whitespace().next().unwrap().to_owned();
        }
    };
    let connect = |key: &str| {
        [
            "connect",
            "-i",
            key,
            "--known-hosts",
            known_hosts,
            "--accept-new-host",
            &addr,
            "hi",
        ]
        .map(str::to_owned)
    };
    let client_args = connect(client_key);
    assert!(run(
        captured,
        &client_args.each_ref().map(String::as_str),
        b""
    ));
    let stranger_args = connect(stranger_key);
    assert!(!run(
        captured,
        &stranger_args.each_ref().map(String::as_str),
        b""
    ));
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(garbage(addr.parse().unwrap(), b"\x00\x20garbage"));
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let output = child.wait_with_output().unwrap();
    reader.join().unwrap();
    while let Ok(line) = lines.try_recv() {
        seen.push(line);
    }
    captured.push(&output.stdout);
    captured.push(seen.join("\n"));
    assert!(seen.iter().any(|l| l.contains("denied")), "{seen:?}");
}
