//! Keeps the TLS peer working: every network scenario of `noise-echo bench`, for a
//! tiny fixed count, against the rustls server in process on 127.0.0.1:0, with each
//! suite; and the settings the comparison relies on (TLS 1.3, X25519, the chosen
//! suite, a client certificate required and checked). No timing is asserted:
//! that is compare.sh's job.

use std::sync::Arc;
use std::time::Duration;

use noise_echo::client::Target;
use noise_echo_tls::client::TlsTunnel;
use noise_echo_tls::pki::{Pki, SERVER_NAME};
use noise_echo_tls::{config, server, Suite};
use noise_echo_tools::bench::{self, Connector, Options, Scenario, Trust};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SUITES: [Suite; 2] = [Suite::Aes256Gcm, Suite::ChaChaPoly];

const NETWORK_SCENARIOS: [Scenario; 5] = [
    Scenario::Handshake,
    Scenario::Latency,
    Scenario::Throughput,
    Scenario::Pipeline,
    Scenario::Idle,
];

fn small(scenario: Scenario) -> Options {
    let mut options = Options::new(scenario);
    // Bounded by count; the generous deadline only guards against a hang.
    options.duration = Duration::from_secs(30);
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

/// A server for `pki` and `suite` on 127.0.0.1:0: its address and its stop switch.
async fn start(
    pki: &Pki,
    suite: Suite,
) -> (std::net::SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let config = config::server_config(pki, suite).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server::serve(
        listener,
        config,
        noise_echo::server::DEFAULT_SOCKET_BUFFER,
        stopped,
    ));
    (address, stop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scenario_succeeds_with_each_suite() {
    let pki = Pki::generate().unwrap();
    for suite in SUITES {
        let (address, stop) = start(&pki, suite).await;
        let target: Target = address.to_string().parse().unwrap();
        let tunnel = TlsTunnel::new(config::client_config(&pki, suite).unwrap(), suite).unwrap();
        let trust = Trust::Tunnel(Arc::new(tunnel));
        let connector = Arc::new(Connector::establish(&target, trust).await.unwrap());
        for scenario in NETWORK_SCENARIOS {
            let options = small(scenario);
            let report = bench::run(&options, Arc::clone(&connector)).await.unwrap();
            let table = report.to_table();
            assert!(report.succeeded(), "{suite:?} {table}");
            assert_eq!(report.transport, suite.transport());
            let expected = match scenario {
                Scenario::Idle => 6,
                _ => options.requests.unwrap(),
            };
            assert_eq!(report.ok, expected, "{suite:?} {table}");
            if scenario == Scenario::Idle {
                assert!(report.rss.is_some(), "{table}");
            }
        }
        let _ = stop.send(());
    }
}

/// One raw client session: the negotiated parameters, and one echo through it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_use_tls13_x25519_the_chosen_suite_and_no_resumption() {
    let pki = Pki::generate().unwrap();
    for suite in SUITES {
        let (address, stop) = start(&pki, suite).await;
        let connector =
            tokio_rustls::TlsConnector::from(config::client_config(&pki, suite).unwrap());
        for attempt in 0..2 {
            let tcp = tokio::net::TcpStream::connect(address).await.unwrap();
            let mut tls = connector
                .connect(ServerName::try_from(SERVER_NAME).unwrap(), tcp)
                .await
                .unwrap();
            let (_, connection) = tls.get_ref();
            assert_eq!(
                connection.protocol_version(),
                Some(rustls::ProtocolVersion::TLSv1_3)
            );
            assert_eq!(
                connection.negotiated_cipher_suite().map(|s| s.suite()),
                Some(suite.rustls().suite())
            );
            assert_eq!(
                connection.negotiated_key_exchange_group().map(|g| g.name()),
                Some(rustls::NamedGroup::X25519)
            );
            // The second session is a full handshake too: nothing was resumed.
            assert_eq!(
                connection.handshake_kind(),
                Some(rustls::HandshakeKind::Full),
                "attempt {attempt}"
            );
            tls.write_all(b"\x01\x00\x00\x00\x05hello").await.unwrap();
            tls.shutdown().await.unwrap();
            let mut reply = Vec::new();
            tls.read_to_end(&mut reply).await.unwrap();
            assert_eq!(reply, b"\x02\x00\x00\x00\x05HELLO");
        }
        let _ = stop.send(());
    }
}

/// The server requires a client certificate from its CA: one from another CA, or
/// none, gets no echo; and the client refuses a server from another CA.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_are_checked_on_both_sides() {
    let pki = Pki::generate().unwrap();
    let stranger = Pki::generate().unwrap();
    let (address, stop) = start(&pki, Suite::ChaChaPoly).await;
    let target: Target = address.to_string().parse().unwrap();

    // Our client, but the server's certificate is from another CA.
    let wrong_ca = TlsTunnel::new(
        config::client_config(&stranger, Suite::ChaChaPoly).unwrap(),
        Suite::ChaChaPoly,
    )
    .unwrap();
    let error = Connector::establish(&target, Trust::Tunnel(Arc::new(wrong_ca)))
        .await
        .err()
        .expect("a server certificate from another CA must be refused");
    // The two CAs have the same name: the server's chain is checked, and fails, on
    // the CA's signature.
    assert!(
        format!("{error:#}").contains("invalid peer certificate"),
        "{error:#}"
    );

    // A client trusting the server's CA but holding a certificate from another CA.
    let mut mixed = Pki::generate().unwrap();
    mixed.ca = pki.ca.clone();
    let connector =
        tokio_rustls::TlsConnector::from(config::client_config(&mixed, Suite::ChaChaPoly).unwrap());
    let tcp = tokio::net::TcpStream::connect(address).await.unwrap();
    // TLS 1.3: the client's handshake ends before the server has judged its
    // certificate; the refusal arrives as an alert instead of the echo.
    let outcome = async {
        let mut tls = connector
            .connect(ServerName::try_from(SERVER_NAME).unwrap(), tcp)
            .await?;
        tls.write_all(b"\x01\x00\x00\x00\x05hello").await?;
        tls.flush().await?;
        let mut reply = Vec::new();
        tls.read_to_end(&mut reply).await?;
        std::io::Result::Ok(reply)
    }
    .await;
    let error = outcome.expect_err("a client certificate from another CA must be refused");
    assert!(
        error.to_string().contains("received fatal alert"),
        "{error}"
    );
    let _ = stop.send(());
}
