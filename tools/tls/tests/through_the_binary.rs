//! The documented use of `tls-echo`, through the binary as bench/compare.sh runs
//! it: `certs`, then `serve` on 127.0.0.1:0 (its port read from its listening
//! line), then `bench --json` for a tiny count, which must report every reply right.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_tls-echo");

#[test]
fn certs_serve_and_bench_through_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    let status = Command::new(BIN).arg("certs").arg(&pki).status().unwrap();
    assert!(status.success());
    // The private keys are the owner's only.
    use std::os::unix::fs::PermissionsExt as _;
    for key in ["server.key", "client.key"] {
        let mode = std::fs::metadata(pki.join(key))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "{key} mode {mode:o}");
    }

    let mut server = Command::new(BIN)
        .args(["serve", "127.0.0.1:0", "--suite", "chachapoly", "--certs"])
        .arg(&pki)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Bounded: the listening line is the first line, or the server failed.
    let mut stderr = BufReader::new(server.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    let address = line
        .trim()
        .rsplit(' ')
        .next()
        .filter(|_| line.contains("listening on"))
        .unwrap_or_else(|| panic!("no listening line: {line:?}"))
        .to_owned();

    let started = Instant::now();
    let out = Command::new(BIN)
        .args([
            "bench",
            &address,
            "--suite",
            "chachapoly",
            "--scenario",
            "pipeline",
        ])
        .args(["--requests", "200", "--duration", "30", "--json", "--certs"])
        .arg(&pki)
        .output()
        .unwrap();
    let _ = server.kill();
    let _ = server.wait();
    let json = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{json}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(json.contains("\"transport\":\"tls-chachapoly\""), "{json}");
    assert!(json.contains("\"ok\":200,\"failed\":0"), "{json}");
    assert!(started.elapsed() < Duration::from_secs(30));
}
