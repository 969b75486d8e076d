//! `serve --metrics-listen ADDR`: the server's counters in the Prometheus text format
//! (version 0.0.4) on `GET /metrics`.
//!
//! The HTTP side is a deliberately small HTTP/1.1 responder, not a web framework: one
//! request per connection, read within [`READ_DEADLINE`] and at most
//! [`MAX_REQUEST_HEAD`] bytes, at most [`MAX_SCRAPES`] served at once (the rest get
//! an immediate 503 without a task), every answer written within [`WRITE_DEADLINE`]
//! and followed by a close. So the metrics port costs a bounded amount of memory and
//! time whoever connects to it; it still exposes traffic figures, so it belongs on
//! loopback or a management network (docs/DEPLOYMENT.md).
//!
//! The exposition itself is prometheus-client's: the library's counters are read
//! once per scrape (a [`Collector`] over [`ServerStats`]), so serving requests costs
//! nothing extra for the metrics.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{prometheus_text, DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::{debug, info, warn};

use noise_echo::server::ServerStats;

/// Scrapes served at once; Prometheus sends one per target at a time, so a few
/// leave room for a second scraper or a person with curl.
pub(crate) const MAX_SCRAPES: usize = 4;

/// The longest request head read (request line and headers). A scrape's is a few
/// hundred bytes.
pub(crate) const MAX_REQUEST_HEAD: usize = 8 * 1024;

/// Time to send the whole request head: a scraper sends it at once, so a slow one is
/// a held connection, cut off.
pub(crate) const READ_DEADLINE: Duration = Duration::from_secs(2);

/// Time to take the answer (a few KiB) and close.
pub(crate) const WRITE_DEADLINE: Duration = Duration::from_secs(10);

/// Bytes still read after answering, so that the close is a FIN and not a reset
/// that would destroy the answer (a client that sent more than we read).
const DRAIN_LIMIT: usize = 64 * 1024;

/// The longest such a drain lasts.
const DRAIN_TIME: Duration = Duration::from_secs(1);

/// The answer when [`MAX_SCRAPES`] are in progress; written without blocking.
const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nRetry-After: 1\r\nConnection: close\r\n\r\n";

/// Serves `/metrics` on each of `listeners` until the runtime stops.
pub(crate) fn spawn(listeners: Vec<TcpListener>, stats: Arc<ServerStats>) {
    let registry = Arc::new(registry(stats));
    let scrapes = Arc::new(Semaphore::new(MAX_SCRAPES));
    for listener in listeners {
        if let Ok(addr) = listener.local_addr() {
            info!("metrics on http://{addr}/metrics");
        }
        tokio::spawn(accept_loop(
            listener,
            Arc::clone(&registry),
            Arc::clone(&scrapes),
        ));
    }
}

/// The registry of every metric, all named `noise_echo_...`.
pub(crate) fn registry(stats: Arc<ServerStats>) -> Registry {
    let mut registry = Registry::with_prefix("noise_echo");
    registry.register_collector(Box::new(ServerMetrics { stats }));
    registry
}

/// The exposition of `registry` now.
pub(crate) fn render(registry: &Registry) -> String {
    let mut text = String::new();
    // Writing to a String cannot fail; a collector's error would be a bug, shown
    // rather than hidden.
    if let Err(error) = prometheus_text::encode(&mut text, registry) {
        warn!("cannot encode the metrics: {error}");
    }
    text
}

async fn accept_loop(listener: TcpListener, registry: Arc<Registry>, scrapes: Arc<Semaphore>) {
    let mut consecutive_errors = 0u32;
    loop {
        let (socket, peer) = match listener.accept().await {
            Ok(accepted) => {
                consecutive_errors = 0;
                accepted
            }
            Err(error) => {
                // Out of file descriptors, most likely: back off instead of spinning.
                consecutive_errors = consecutive_errors.saturating_add(1);
                warn!("metrics: accept failed: {error}");
                let backoff = Duration::from_millis(10 << consecutive_errors.min(6));
                tokio::time::sleep(backoff).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&scrapes).try_acquire_owned() else {
            debug!(%peer, "metrics: {MAX_SCRAPES} scrapes in progress, answered 503");
            refuse_busy(&socket);
            continue;
        };
        let registry = Arc::clone(&registry);
        tokio::spawn(async move {
            if let Err(error) = answer(socket, &registry, permit).await {
                debug!(%peer, "metrics: {error}");
            }
        });
    }
}

/// Answers 503 without a task or a wait: takes what the client has sent already
/// (so that the close is a FIN, not a reset that would destroy the answer, whenever
/// the request came before the accept, as a scraper's does), writes the answer
/// (it fits any socket buffer), and lets the caller close.
fn refuse_busy(socket: &TcpStream) {
    let mut sink = [0u8; 1024];
    for _ in 0..MAX_REQUEST_HEAD / sink.len() {
        match socket.try_read(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    let _ = socket.try_write(BUSY);
}

/// What a request asked for.
#[derive(Debug, PartialEq, Eq)]
enum Request {
    /// `GET /metrics` (any query); `HEAD` wants the headers only.
    Metrics { head: bool },
    /// Another path.
    NotFound,
    /// Another method.
    MethodNotAllowed,
    /// Not an HTTP/1.x request line.
    Malformed,
}

/// Reads one request and answers it, then closes. The scrape's `slot` is given
/// back once the answer is written, before the close: a client that has read the
/// answer to its end finds the slot free.
async fn answer(
    mut socket: TcpStream,
    registry: &Registry,
    slot: OwnedSemaphorePermit,
) -> std::io::Result<()> {
    let head = tokio::time::timeout(READ_DEADLINE, read_head(&mut socket)).await;
    // Only a head cut short leaves bytes unread (a GET has no body).
    let unread = matches!(head, Ok(Ok(None)));
    let response = match head {
        Err(_) => response(
            408,
            "Request Timeout",
            "text/plain",
            b"request not sent in time\n",
        ),
        Ok(Err(error)) => return Err(error),
        Ok(Ok(None)) => response(
            431,
            "Request Header Fields Too Large",
            "text/plain",
            b"request head over 8 KiB\n",
        ),
        Ok(Ok(Some(head))) => match parse(&head) {
            Request::Metrics { head } => {
                let body = render(registry);
                let mut response =
                    response(200, "OK", prometheus_text::CONTENT_TYPE, body.as_bytes());
                if head {
                    response.truncate(response.len() - body.len());
                }
                response
            }
            Request::NotFound => response(
                404,
                "Not Found",
                "text/plain",
                b"only /metrics is served here\n",
            ),
            Request::MethodNotAllowed => response(
                405,
                "Method Not Allowed",
                "text/plain",
                b"use GET /metrics\n",
            ),
            Request::Malformed => response(
                400,
                "Bad Request",
                "text/plain",
                b"not an HTTP/1.1 request\n",
            ),
        },
    };
    tokio::time::timeout(WRITE_DEADLINE, async {
        socket.write_all(&response).await?;
        if !unread {
            drop(slot);
            return socket.shutdown().await;
        }
        socket.shutdown().await?;
        // What the client still sends, up to a bound of bytes and time (holding
        // the slot, so drains are bounded too), so that our close is no reset
        // that would destroy the answer before it is read.
        let mut sink = [0u8; 4096];
        let mut drained = 0;
        let drain = async {
            while drained < DRAIN_LIMIT {
                match socket.read(&mut sink).await? {
                    0 => break,
                    read => drained += read,
                }
            }
            Ok::<_, std::io::Error>(())
        };
        tokio::time::timeout(DRAIN_TIME, drain)
            .await
            .unwrap_or(Ok(()))
    })
    .await
    .unwrap_or(Ok(()))
}

/// Reads up to the blank line that ends the request head; `None` when the head is
/// over [`MAX_REQUEST_HEAD`]. A body, which a GET has none of, is never read.
async fn read_head(socket: &mut TcpStream) -> std::io::Result<Option<Vec<u8>>> {
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let read = socket.read(&mut chunk).await?;
        if read == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "closed before the end of the request head",
            ));
        }
        let searched_from = head.len().saturating_sub(3);
        head.extend_from_slice(&chunk[..read]);
        if head[searched_from..].windows(4).any(|w| w == b"\r\n\r\n")
            || head[searched_from..].windows(2).any(|w| w == b"\n\n")
        {
            return Ok(Some(head));
        }
        if head.len() >= MAX_REQUEST_HEAD {
            return Ok(None);
        }
    }
}

/// Decides from the request line alone; headers are not needed to answer.
fn parse(head: &[u8]) -> Request {
    let line = head.split(|&byte| byte == b'\n').next().unwrap_or_default();
    let Ok(line) = std::str::from_utf8(line) else {
        return Request::Malformed;
    };
    let mut words = line.trim_end_matches('\r').split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (words.next(), words.next(), words.next(), words.next())
    else {
        return Request::Malformed;
    };
    if !version.starts_with("HTTP/1.") {
        return Request::Malformed;
    }
    let head = match method {
        "GET" => false,
        "HEAD" => true,
        _ => return Request::MethodNotAllowed,
    };
    let path = target.split('?').next().unwrap_or_default();
    if path == "/metrics" {
        Request::Metrics { head }
    } else {
        Request::NotFound
    }
}

/// A whole HTTP/1.1 response that closes the connection.
fn response(status: u16, reason: &str, content_type: &str, body: &[u8]) -> Vec<u8> {
    let mut response = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    response.extend_from_slice(body);
    response
}

/// The library's counters, read at each scrape.
#[derive(Debug)]
struct ServerMetrics {
    /// The running server's counters.
    stats: Arc<ServerStats>,
}

impl Collector for ServerMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let stats = self.stats.snapshot();
        let mut out = Out(&mut encoder);
        out.counter(
            "connections_accepted",
            "Connections accepted from the listeners, refused or not",
            stats.accepted,
        )?;
        out.labelled_counters(
            "connections_refused",
            "Connections closed on arrival, before a byte was read, by reason",
            "reason",
            stats.refusals(),
        )?;
        out.labelled_counters(
            "connections_closed",
            "Admitted connections that are over, by how they ended",
            "outcome",
            stats.outcomes(),
        )?;
        out.gauge(
            "connections_open",
            "Connections open now",
            stats.connections_open,
        )?;
        out.gauge(
            "handshakes_in_progress",
            "Handshakes in progress now",
            stats.handshakes_in_progress,
        )?;
        let suites = stats.sessions_by_suite();
        out.labelled_gauges(
            "sessions_open",
            "Authorized sessions open now, by Noise protocol suite",
            "suite",
            suites.iter().map(|suite| (suite.suite, suite.open)),
        )?;
        out.labelled_counters(
            "sessions",
            "Sessions that passed authorization, by Noise protocol suite",
            "suite",
            suites.iter().map(|suite| (suite.suite, suite.total)),
        )?;
        out.gauge(
            "penalized_sources",
            "Sources (IPv4 addresses, IPv6 /64s) refused now for repeated failed handshakes",
            self.stats.penalized_sources(),
        )?;
        out.counter(
            "penalties",
            "Refusals of a source begun for repeated failed handshakes",
            stats.penalties_imposed,
        )?;
        out.counter("requests", "Requests answered", stats.requests)?;
        out.unit_counter(
            "request_body",
            "Request body bytes received",
            Unit::Bytes,
            self.stats
                .bytes_in
                .load(std::sync::atomic::Ordering::Relaxed),
        )?;
        out.unit_counter(
            "reply_body",
            "Reply body bytes sent",
            Unit::Bytes,
            self.stats
                .bytes_out
                .load(std::sync::atomic::Ordering::Relaxed),
        )?;
        out.gauge(
            "memory_waits",
            "Sessions waiting for the memory budget now",
            stats.memory_waits,
        )?;
        let latency = self.stats.request_latency.snapshot();
        let buckets: Vec<(f64, u64)> = latency
            .buckets
            .iter()
            .map(|&(bound, count)| (seconds(bound), count))
            .collect();
        let unit = Unit::Seconds;
        let metric = out.0.encode_descriptor(
            "request_duration",
            "Time from a request's body read to its reply queued, on the server",
            Some(&unit),
            MetricType::Histogram,
        )?;
        let mut metric = metric;
        metric.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
            seconds(latency.sum_nanos),
            latency.count,
            &buckets,
            None,
        )
    }
}

/// Nanoseconds as seconds.
fn seconds(nanos: u64) -> f64 {
    nanos as f64 / 1e9
}

/// Shorthands over the descriptor encoder, one per kind of metric.
struct Out<'a, 'b>(&'a mut DescriptorEncoder<'b>);

impl Out<'_, '_> {
    fn counter(&mut self, name: &str, help: &str, value: u64) -> fmt::Result {
        let counter = ConstCounter::new(value);
        let metric = self
            .0
            .encode_descriptor(name, help, None, counter.metric_type())?;
        counter.encode(metric)
    }

    fn unit_counter(&mut self, name: &str, help: &str, unit: Unit, value: u64) -> fmt::Result {
        let counter = ConstCounter::new(value);
        let metric = self
            .0
            .encode_descriptor(name, help, Some(&unit), counter.metric_type())?;
        counter.encode(metric)
    }

    fn gauge(&mut self, name: &str, help: &str, value: u64) -> fmt::Result {
        let gauge = ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX));
        let metric = self
            .0
            .encode_descriptor(name, help, None, gauge.metric_type())?;
        gauge.encode(metric)
    }

    fn labelled_counters(
        &mut self,
        name: &str,
        help: &str,
        label: &'static str,
        values: impl Iterator<Item = (&'static str, u64)>,
    ) -> fmt::Result {
        let mut metric = self
            .0
            .encode_descriptor(name, help, None, MetricType::Counter)?;
        for (value, count) in values {
            let labels = [(Cow::Borrowed(label), Cow::Borrowed(value))];
            ConstCounter::new(count).encode(metric.encode_family(&labels)?)?;
        }
        Ok(())
    }

    fn labelled_gauges(
        &mut self,
        name: &str,
        help: &str,
        label: &'static str,
        values: impl Iterator<Item = (&'static str, u64)>,
    ) -> fmt::Result {
        let mut metric = self
            .0
            .encode_descriptor(name, help, None, MetricType::Gauge)?;
        for (value, count) in values {
            let labels = [(Cow::Borrowed(label), Cow::Borrowed(value))];
            let gauge = ConstGauge::new(i64::try_from(count).unwrap_or(i64::MAX));
            gauge.encode(metric.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_get_and_head_of_metrics_are_served() {
        assert_eq!(
            parse(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            Request::Metrics { head: false }
        );
        assert_eq!(
            parse(b"HEAD /metrics?x=1 HTTP/1.0\r\n\r\n"),
            Request::Metrics { head: true }
        );
        assert_eq!(parse(b"GET / HTTP/1.1\r\n\r\n"), Request::NotFound);
        assert_eq!(parse(b"GET /metrics/x HTTP/1.1\r\n\r\n"), Request::NotFound);
        assert_eq!(
            parse(b"POST /metrics HTTP/1.1\r\n\r\n"),
            Request::MethodNotAllowed
        );
        assert_eq!(parse(b"GET /metrics\r\n\r\n"), Request::Malformed);
        assert_eq!(parse(b"GET /metrics SSH-2.0\r\n\r\n"), Request::Malformed);
        assert_eq!(
            parse(b"\xff\xfe /metrics HTTP/1.1\r\n\r\n"),
            Request::Malformed
        );
    }

    #[test]
    fn every_metric_has_help_and_type_and_the_suite_label() {
        let text = render(&registry(Arc::new(ServerStats::default())));
        for (name, kind) in [
            ("noise_echo_connections_accepted_total", "counter"),
            ("noise_echo_connections_closed_total", "counter"),
            ("noise_echo_connections_refused_total", "counter"),
            ("noise_echo_connections_open", "gauge"),
            ("noise_echo_sessions_open", "gauge"),
            ("noise_echo_penalized_sources", "gauge"),
            ("noise_echo_request_body_bytes_total", "counter"),
            ("noise_echo_request_duration_seconds", "histogram"),
        ] {
            assert!(
                text.contains(&format!("# TYPE {name} {kind}\n")),
                "{name}: {text}"
            );
            assert!(text.contains(&format!("# HELP {name} ")), "{name}: {text}");
        }
        assert!(text
            .contains("noise_echo_sessions_open{suite=\"Noise_XX_25519_ChaChaPoly_BLAKE2s\"} 0\n"));
        assert!(text.contains("noise_echo_request_duration_seconds_bucket{le=\"+Inf\"} 0\n"));
    }
}
