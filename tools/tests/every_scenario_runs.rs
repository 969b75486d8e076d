//! Keeps the benchmark working: runs every scenario for a tiny, fixed count against
//! in-process servers (the real one and the plaintext baseline) on 127.0.0.1:0 and
//! checks each reports success. No timing is asserted: that is compare.sh's job.

use std::sync::Arc;
use std::time::Duration;

use noise_echo::client::{Target, UnknownHostPolicy};
use noise_echo::identity::Identity;
use noise_echo::server::{self, ServerConfig};
use noise_echo::wire::LocalIdentity;
use noise_echo_tools::bench::{self, Connector, Options, Scenario, Trust};

fn small(scenario: Scenario) -> Options {
    let mut options = Options::new(scenario);
    // Bounded by count; the generous deadline only guards against a hang.
    options.duration = Duration::from_secs(30);
    // 1 MiB requests are slow to encrypt in an unoptimised test build: fewer of them.
    options.requests = Some(if scenario == Scenario::Throughput {
        3
    } else {
        20
    });
    options.concurrency = options.concurrency.min(4);
    options.sessions = 6;
    options.hold = Duration::ZERO;
    options.server_pid = Some(std::process::id());
    options
}

const NETWORK_SCENARIOS: [Scenario; 5] = [
    Scenario::Handshake,
    Scenario::Latency,
    Scenario::Throughput,
    Scenario::Pipeline,
    Scenario::Idle,
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scenario_succeeds_against_the_real_server() {
    let dir = tempfile::tempdir().unwrap();
    let host = Identity::generate("bench test host");
    let client = Identity::generate("bench test client");
    let authorized_keys = dir.path().join("authorized_keys");
    std::fs::write(
        &authorized_keys,
        client.public_key().to_openssh_line("bench test client") + "\n",
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let config = ServerConfig::new(Arc::new(LocalIdentity::new(&host)), authorized_keys);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(server::run(listener, config, stopped));

    let target: Target = format!("127.0.0.1:{port}").parse().unwrap();
    let trust = Trust::Noise {
        identity: LocalIdentity::new(&client),
        known_hosts: dir.path().join("known_hosts"),
        unknown_host: UnknownHostPolicy::ExpectFingerprint(host.public_key().fingerprint()),
    };
    let connector = Arc::new(Connector::establish(&target, trust).await.unwrap());
    for scenario in NETWORK_SCENARIOS {
        let options = small(scenario);
        let report = bench::run(&options, Arc::clone(&connector)).await.unwrap();
        assert!(report.succeeded(), "{}", report.to_table());
        // Protocol 2 by default: the transport names the suite negotiated.
        assert!(
            report.transport.starts_with("noise-"),
            "{}",
            report.transport
        );
        if scenario == Scenario::Idle {
            assert_eq!(report.ok, 6);
            assert!(report.rss.is_some());
        } else {
            assert_eq!(
                report.ok,
                options.requests.unwrap(),
                "{}",
                report.to_table()
            );
        }
        assert!(report.to_json().starts_with('{'));
    }
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scenario_succeeds_against_the_plain_baseline() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(bench::plain::serve(listener, stopped));
    let target: Target = format!("127.0.0.1:{port}").parse().unwrap();
    let connector = Arc::new(Connector::establish(&target, Trust::Plain).await.unwrap());
    for scenario in NETWORK_SCENARIOS {
        let report = bench::run(&small(scenario), Arc::clone(&connector))
            .await
            .unwrap();
        assert!(report.succeeded(), "{}", report.to_table());
        assert_eq!(report.transport, "plain");
    }
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}

/// The default mode prints a progress line: its task shares the tally, and the
/// report must still count every exchange (it reported `0 ok` and failed), and
/// `idle` without a server pid reports a rate, not `NaN`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_progress_line_mode_reports_what_quiet_mode_reports() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(bench::plain::serve(listener, stopped));
    let target: Target = format!("127.0.0.1:{port}").parse().unwrap();
    let connector = Arc::new(Connector::establish(&target, Trust::Plain).await.unwrap());
    for scenario in NETWORK_SCENARIOS {
        let mut options = small(scenario);
        options.progress = true;
        options.server_pid = None;
        let report = bench::run(&options, Arc::clone(&connector)).await.unwrap();
        let table = report.to_table();
        assert!(report.succeeded(), "{table}");
        let expected = match scenario {
            Scenario::Idle => 6,
            _ => options.requests.unwrap(),
        };
        assert_eq!(report.ok, expected, "{table}");
        assert!(!table.contains("NaN"), "{table}");
        assert!(!report.to_json().contains("NaN"), "{}", report.to_json());
        if scenario == Scenario::Idle {
            assert!(report.headline().0.is_finite(), "{table}");
            assert!(table.contains("--server-pid"), "{table}");
        }
    }
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}

#[test]
fn handshake_cpu_succeeds() {
    let mut options = small(Scenario::HandshakeCpu);
    options.concurrency = 2;
    let report = bench::handshake_cpu(&options).unwrap();
    assert!(report.succeeded(), "{}", report.to_table());
    assert_eq!(report.ok, 20);
    assert!(report.latency.is_some());
}

#[test]
fn cipher_cpu_seals_and_opens_full_messages() {
    let mut options = small(Scenario::CipherCpu);
    options.concurrency = 2;
    let report = bench::cipher_cpu(&options).unwrap();
    assert!(report.succeeded(), "{}", report.to_table());
    assert_eq!(report.ok, 20);
    assert_eq!(
        report.bytes,
        20 * noise_echo::wire::MAX_PLAINTEXT_LEN as u64
    );
    assert_eq!(report.headline().1, "MB/s");
}

#[test]
fn a_wrong_reply_is_a_failure() {
    // A "server" that answers every request with the wrong text must not count as
    // fast: the benchmark checks replies.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            while let Ok((mut socket, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut request = [0u8; 21];
                    while socket.read_exact(&mut request).await.is_ok() {
                        // RESPONSE with the body unchanged (still lowercase).
                        request[0] = 0x02;
                        if socket.write_all(&request).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        let target: Target = format!("127.0.0.1:{port}").parse().unwrap();
        let connector = Arc::new(Connector::establish(&target, Trust::Plain).await.unwrap());
        let report = bench::run(&small(Scenario::Latency), connector)
            .await
            .unwrap();
        assert!(!report.succeeded());
        assert!(report
            .first_error
            .as_deref()
            .unwrap_or_default()
            .contains("wrong reply"));
    });
}
