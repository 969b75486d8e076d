//! `serve --metrics-listen`: scraped as Prometheus does, with a plain HTTP/1.1 GET
//! over a TcpStream. Names and types are there, counters move with the traffic and
//! account for every connection, other paths get 404, and a request that is slow,
//! oversized or one too many is cut off without holding the port.

mod common;

use std::io::{BufRead, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::served::HANG_GUARD;
use common::{noise_echo, start_serve, text, Started};

/// The Noise suite every session runs today: the `suite` label's value.
/// The suite `connect` negotiates with a server that accepts both: this CPU's
/// preference (AES-GCM with AES instructions, ChaCha20-Poly1305 without).
fn suite() -> &'static str {
    noise_echo::wire::Suite::preferred().noise_name()
}

/// A server with an authorized client and its metrics port.
struct Metered {
    /// The server and the rest of its log.
    started: Started,
    /// Where `/metrics` is served, from the `metrics on` log line.
    metrics: SocketAddr,
    /// The keys and files of this test.
    dir: tempfile::TempDir,
}

impl Metered {
    fn start(extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path();
        let out = noise_echo(home)
            .args(["keygen", "-N", "", "-C", "client@test", "-f"])
            .arg(home.join("client"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        let out = noise_echo(home)
            .args(["authorize", "--authorized-keys"])
            .arg(home.join("authorized_keys"))
            .arg(home.join("client.pub"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        let mut flags = vec!["--metrics-listen", "127.0.0.1:0"];
        flags.extend_from_slice(extra);
        let started = start_serve(home, &home.join("authorized_keys"), &flags);
        let metrics = started
            .log
            .split("metrics on http://")
            .nth(1)
            .and_then(|rest| rest.split("/metrics").next())
            .unwrap_or_else(|| panic!("no metrics line in {}", started.log))
            .parse()
            .unwrap();
        Self {
            started,
            metrics,
            dir,
        }
    }

    /// `connect ADDR hello` as the authorized client; its output.
    fn hello(&self) -> String {
        let home = self.dir.path();
        let out = noise_echo(home)
            .arg("connect")
            .arg(self.started.addr.to_string())
            .arg("-i")
            .arg(home.join("client"))
            .arg("--known-hosts")
            .arg(home.join("known_hosts"))
            .args(["--accept-new-host", "hello"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout)
    }

    /// Reads the server's log until a line containing `needle` (bounded: the lines
    /// this test makes are a few); returns it.
    fn wait_for_log(&mut self, needle: &str) -> String {
        for _ in 0..200 {
            let mut line = String::new();
            if self.started.stderr.read_line(&mut line).unwrap_or(0) == 0 {
                break;
            }
            if line.contains(needle) {
                return line;
            }
        }
        panic!("no log line with {needle:?}");
    }

    /// `GET /metrics`: the body, after checking the status and the content type.
    fn scrape(&self) -> String {
        let response = exchange(
            self.metrics,
            b"GET /metrics HTTP/1.1\r\nHost: test\r\nAccept: text/plain\r\n\r\n",
        );
        let (head, body) = response.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(
            head.contains("\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"),
            "{head}"
        );
        body.to_owned()
    }
}

impl Drop for Metered {
    fn drop(&mut self) {
        let _ = self.started.child.kill();
        let _ = self.started.child.wait();
    }
}

/// Sends `request` on a new connection to `addr` and reads the answer to the
/// server's close.
fn exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(HANG_GUARD)).unwrap();
    stream.write_all(request).unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    text(&response)
}

/// The value of the sample `series` (a name with its labels) in `body`.
fn value(body: &str, series: &str) -> f64 {
    body.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {series} in\n{body}"))
        .parse()
        .unwrap()
}

#[test]
fn a_scrape_names_every_metric_with_its_type_and_the_counters_move_with_a_session() {
    let mut served = Metered::start(&[]);
    let before = served.scrape();
    for (name, kind) in [
        ("noise_echo_connections_accepted_total", "counter"),
        ("noise_echo_connections_refused_total", "counter"),
        ("noise_echo_connections_closed_total", "counter"),
        ("noise_echo_connections_open", "gauge"),
        ("noise_echo_handshakes_in_progress", "gauge"),
        ("noise_echo_sessions_open", "gauge"),
        ("noise_echo_sessions_total", "counter"),
        ("noise_echo_penalized_sources", "gauge"),
        ("noise_echo_penalties_total", "counter"),
        ("noise_echo_requests_total", "counter"),
        ("noise_echo_request_body_bytes_total", "counter"),
        ("noise_echo_reply_body_bytes_total", "counter"),
        ("noise_echo_request_duration_seconds", "histogram"),
    ] {
        assert!(
            before.contains(&format!("\n# TYPE {name} {kind}\n")),
            "{name} {kind}:\n{before}"
        );
    }
    let accepted = "noise_echo_connections_accepted_total";
    let sessions = format!("noise_echo_sessions_total{{suite=\"{}\"}}", suite());
    let closed = "noise_echo_connections_closed_total{outcome=\"closed\"}";
    let latency_count = "noise_echo_request_duration_seconds_count";
    assert_eq!(value(&before, accepted), 0.0);
    assert_eq!(value(&before, &sessions), 0.0);
    assert_eq!(value(&before, latency_count), 0.0);

    assert_eq!(served.hello(), "HELLO\n");
    // Counted before the line is logged.
    served.wait_for_log("closed peer=");
    let after = served.scrape();
    assert_eq!(value(&after, accepted), 1.0);
    assert_eq!(value(&after, &sessions), 1.0);
    assert_eq!(value(&after, closed), 1.0);
    assert_eq!(value(&after, "noise_echo_requests_total"), 1.0);
    assert_eq!(value(&after, "noise_echo_request_body_bytes_total"), 5.0);
    assert_eq!(value(&after, "noise_echo_reply_body_bytes_total"), 5.0);
    assert_eq!(value(&after, latency_count), 1.0);
    assert_eq!(
        value(
            &after,
            "noise_echo_request_duration_seconds_bucket{le=\"+Inf\"}"
        ),
        1.0
    );
    assert!(value(&after, "noise_echo_request_duration_seconds_sum") > 0.0);
    // Over: nothing open any more.
    assert_eq!(
        value(
            &after,
            &format!("noise_echo_sessions_open{{suite=\"{}\"}}", suite())
        ),
        0.0
    );
    assert_eq!(value(&after, "noise_echo_connections_open"), 0.0);
}

#[test]
fn every_accepted_connection_is_counted_once_by_outcome_or_refusal_and_penalties_show() {
    // One failed handshake is enough for a long refusal.
    let mut served = Metered::start(&["--penalty-threshold", "1", "--penalty-base", "600"]);
    assert_eq!(served.hello(), "HELLO\n");
    served.wait_for_log("closed peer=");
    // Not a Noise client: its handshake fails, and 127.0.0.1 is refused from now on.
    exchange(served.started.addr, b"GET / HTTP/1.0\r\n\r\n");
    served.wait_for_log("refusing 127.0.0.1");
    // Its outcome is counted before its own line, which follows the refusal's.
    served.wait_for_log("failed: ");
    let refused = TcpStream::connect(served.started.addr).unwrap();
    served.wait_for_log("refused 1 connection(s) from sources serving a penalty");
    drop(refused);

    let body = served.scrape();
    let outcome = |name: &str| {
        value(
            &body,
            &format!("noise_echo_connections_closed_total{{outcome=\"{name}\"}}"),
        )
    };
    assert_eq!(outcome("closed"), 1.0);
    assert_eq!(outcome("handshake_failed"), 1.0);
    assert_eq!(
        value(
            &body,
            "noise_echo_connections_refused_total{reason=\"penalized\"}"
        ),
        1.0
    );
    assert_eq!(value(&body, "noise_echo_penalties_total"), 1.0);
    assert_eq!(value(&body, "noise_echo_penalized_sources"), 1.0);
    // Every accepted connection is over, and each is in exactly one series.
    let ended: f64 = body
        .lines()
        .filter(|line| {
            line.starts_with("noise_echo_connections_closed_total{")
                || line.starts_with("noise_echo_connections_refused_total{")
        })
        .map(|line| line.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum();
    assert_eq!(value(&body, "noise_echo_connections_accepted_total"), 3.0);
    assert_eq!(ended, 3.0, "{body}");
}

#[test]
fn other_paths_get_404_other_methods_405_and_head_gets_no_body() {
    let served = Metered::start(&[]);
    let not_found = exchange(served.metrics, b"GET / HTTP/1.1\r\nHost: test\r\n\r\n");
    assert!(
        not_found.starts_with("HTTP/1.1 404 Not Found\r\n"),
        "{not_found}"
    );
    let not_found = exchange(served.metrics, b"GET /metrics/../admin HTTP/1.1\r\n\r\n");
    assert!(not_found.starts_with("HTTP/1.1 404 "), "{not_found}");
    let post = exchange(
        served.metrics,
        b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
    );
    assert!(
        post.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"),
        "{post}"
    );
    let garbage = exchange(served.metrics, b"\x00\x01 hello\r\n\r\n");
    assert!(
        garbage.starts_with("HTTP/1.1 400 Bad Request\r\n"),
        "{garbage}"
    );
    let head = exchange(served.metrics, b"HEAD /metrics HTTP/1.1\r\n\r\n");
    let (head, body) = head.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert_eq!(body, "");
    // A query string is ignored, as Prometheus' params may add one.
    assert!(
        exchange(served.metrics, b"GET /metrics?format=text HTTP/1.0\r\n\r\n")
            .starts_with("HTTP/1.1 200 OK\r\n")
    );
}

#[test]
fn an_oversized_request_is_cut_off_with_431() {
    let served = Metered::start(&[]);
    let mut request = b"GET /metrics HTTP/1.1\r\nX-Padding: ".to_vec();
    request.resize(64 * 1024, b'a');
    let response = exchange(served.metrics, &request);
    assert!(
        response.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"),
        "{response}"
    );
    // The port still serves.
    assert!(served.scrape().contains("noise_echo_requests_total 0\n"));
}

#[test]
fn slow_requests_are_cut_off_and_scrapes_past_the_cap_get_503_at_once() {
    let served = Metered::start(&[]);
    // As many half-sent requests as scrapes are served at once: each holds a slot
    // until its deadline.
    let slow: Vec<TcpStream> = (0..4)
        .map(|_| {
            let mut stream = TcpStream::connect(served.metrics).unwrap();
            stream.set_read_timeout(Some(HANG_GUARD)).unwrap();
            stream.write_all(b"GET /metr").unwrap();
            stream
        })
        .collect();
    // Accepted in order: every slot is taken when this one is accepted. It is
    // answered 503 at once, without a task; when its request came after the accept,
    // the close is a reset instead (the server does not wait for it).
    let mut busy = TcpStream::connect(served.metrics).unwrap();
    busy.set_read_timeout(Some(HANG_GUARD)).unwrap();
    busy.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").unwrap();
    let mut response = Vec::new();
    match busy.read_to_end(&mut response) {
        Ok(_) => assert!(
            text(&response).starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
            "{}",
            text(&response)
        ),
        Err(error) => assert_eq!(error.kind(), std::io::ErrorKind::ConnectionReset),
    }
    let began = Instant::now();
    for mut stream in slow {
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        assert!(
            response.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
            "{response}"
        );
    }
    // Cut off at the deadline (2 s), far before the hang guard.
    assert!(began.elapsed() < Duration::from_secs(60));
    // The slots are free again.
    assert!(served
        .scrape()
        .contains("# TYPE noise_echo_requests_total counter\n"));
}

#[test]
fn a_metrics_address_that_cannot_be_bound_fails_the_start_naming_it() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let out = noise_echo(dir.path())
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--create-host-key",
            "--host-key",
        ])
        .arg(dir.path().join("host_key"))
        .arg("--authorized-keys")
        .arg(dir.path().join("authorized_keys"))
        .args(["--metrics-listen", &addr])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!("cannot listen for metrics on {addr}")),
        "{stderr}"
    );
}
