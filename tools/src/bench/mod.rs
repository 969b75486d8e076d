//! `noise-echo bench`: a load generator in the spirit of redis-benchmark and wrk,
//! for the targets. Every scenario checks every reply (a fast wrong answer
//! is a failure), stops by itself (a request count and a deadline, whichever comes
//! first), and returns a [`Report`].
//!
//! Scenarios:
//! - `handshake`: N workers each loop over new session, one 16-byte echo, close;
//! - `handshake-cpu`: in-memory initiator/responder pairs on every core, no sockets:
//!   the CPU ceiling for `handshake`;
//! - `cipher-cpu`: full transport messages sealed and opened in memory on every
//!   core: what the cipher alone costs per byte, which bounds `throughput`;
//! - `latency`: one session, one 16-byte round trip at a time (p50/p99/max);
//! - `throughput`: one session, 1 MiB requests, several in flight;
//! - `pipeline`: one session, 16-byte requests written ahead of their replies;
//! - `idle`: open N sessions and hold them, reading the server's RSS if given its pid.
//!
//! The same scenarios run over the real protocol or, with `--plain`, over the
//! plaintext baseline of [`plain`] (the same records over bare TCP), so the two can be
//! compared in one run, or inside another secure channel ([`Tunnel`]: the TLS peer
//! it is measured against). The first Noise connection goes through [`client::connect`](noise_echo::client::connect)
//! and the client's known_hosts logic; later connections pin the key it accepted, as
//! one client process would.

mod connector;
mod memory;
mod network;
pub mod plain;
pub mod stats;
mod tally;

pub use connector::{Connector, Trust, Tunnel, TunnelHalves};
use connector::{Receiver, Sender};
pub use memory::{cipher_cpu, handshake_cpu};
pub use network::read_rss_kib;
use network::*;
use tally::*;

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;

use stats::{Percentiles, Samples};

/// Size of the small requests of `handshake`, `latency`, `pipeline` and `idle`.
pub const SMALL_REQUEST: usize = 16;
/// Size of the requests of `throughput`.
pub const LARGE_REQUEST: usize = 1 << 20;
/// The longest any single exchange may take before it counts as a failure.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(10);

/// What to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// New session, one 16-byte echo, close; `--concurrency` at once.
    Handshake,
    /// In-memory handshake pairs, no sockets, one thread per core.
    HandshakeCpu,
    /// In-memory seal and open of full transport messages, one thread per core.
    CipherCpu,
    /// One session, 16-byte round trips one at a time.
    Latency,
    /// One session, 1 MiB requests, `--concurrency` in flight.
    Throughput,
    /// One session, 16-byte requests written ahead, `--concurrency` in flight.
    Pipeline,
    /// Open `--sessions` sessions and hold them.
    Idle,
}

impl Scenario {
    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Handshake => "handshake",
            Scenario::HandshakeCpu => "handshake-cpu",
            Scenario::CipherCpu => "cipher-cpu",
            Scenario::Latency => "latency",
            Scenario::Throughput => "throughput",
            Scenario::Pipeline => "pipeline",
            Scenario::Idle => "idle",
        }
    }

    /// The default of `--concurrency`: workers, requests in flight, or threads.
    pub fn default_concurrency(self) -> usize {
        match self {
            Scenario::Handshake => 16,
            Scenario::HandshakeCpu | Scenario::CipherCpu => {
                std::thread::available_parallelism().map_or(2, |n| n.get())
            }
            Scenario::Latency => 1,
            Scenario::Throughput => 4,
            Scenario::Pipeline => 1024,
            Scenario::Idle => 32,
        }
    }
}

/// How a scenario runs. Every run is bounded by `duration`, and by `requests` when
/// given.
#[derive(Debug, Clone)]
pub struct Options {
    /// The scenario.
    pub scenario: Scenario,
    /// Stop after this long (for `idle`: the time allowed to open the sessions).
    pub duration: Duration,
    /// Stop after this many requests (handshakes for `handshake`, pairs for
    /// `handshake-cpu`).
    pub requests: Option<u64>,
    /// Workers, requests in flight, or threads (see [`Scenario::default_concurrency`]).
    pub concurrency: usize,
    /// `idle`: how many sessions to open.
    pub sessions: usize,
    /// `idle`: how long to hold them once open.
    pub hold: Duration,
    /// `idle`: the server's pid, to read its VmRSS before and after.
    pub server_pid: Option<u32>,
    /// Print a progress line every second on stderr.
    pub progress: bool,
    /// The suite whose cipher to run (`cipher-cpu`) or to offer (the network
    /// scenarios, protocol 2, through [`Connector::establish_with`]); `None` for the
    /// one a client prefers on this CPU
    /// ([`Suite::preferred`](noise_echo::wire::Suite::preferred)).
    pub cipher: Option<noise_echo::wire::Suite>,
    /// The protocol version the network scenarios speak (through
    /// [`Connector::establish_with`]).
    pub protocol: noise_echo::client::Protocol,
}

impl Options {
    /// Defaults for `scenario`: 5 seconds, unbounded count, the scenario's concurrency.
    pub fn new(scenario: Scenario) -> Self {
        Self {
            scenario,
            duration: Duration::from_secs(5),
            requests: None,
            concurrency: scenario.default_concurrency(),
            sessions: 10_000,
            hold: Duration::from_secs(1),
            server_pid: None,
            progress: false,
            cipher: None,
            protocol: noise_echo::client::Protocol::default(),
        }
    }
}

/// Resident memory of the server around `idle`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rss {
    /// VmRSS before opening the sessions, KiB.
    pub before_kib: u64,
    /// VmRSS with all sessions open, KiB.
    pub after_kib: u64,
    /// (after - before) / sessions, KiB.
    pub per_session_kib: f64,
}

/// What a run measured.
#[derive(Debug, Clone)]
pub struct Report {
    /// The scenario.
    pub scenario: Scenario,
    /// `noise-aesgcm`, `noise-chachapoly` (protocol 2), `noise` (protocol 1), `plain`, a
    /// tunnel's name, `memory` (for `handshake-cpu`), or the suite (`cipher-cpu`).
    pub transport: &'static str,
    /// The concurrency used.
    pub concurrency: usize,
    /// Exchanges (or handshakes, or sessions) that succeeded and were checked.
    pub ok: u64,
    /// Exchanges that failed: an error, a timeout, or a wrong reply.
    pub failed: u64,
    /// The first failure, to show the user.
    pub first_error: Option<String>,
    /// Wall time of the measured part.
    pub elapsed: Duration,
    /// Request body bytes echoed (each went both ways).
    pub bytes: u64,
    /// Per-exchange times, when the scenario records them.
    pub latency: Option<Percentiles>,
    /// Server memory, for `idle` with a server pid.
    pub rss: Option<Rss>,
}

impl Report {
    fn new(options: &Options, transport: &'static str) -> Self {
        Self {
            scenario: options.scenario,
            transport,
            concurrency: options.concurrency,
            ok: 0,
            failed: 0,
            first_error: None,
            elapsed: Duration::ZERO,
            bytes: 0,
            latency: None,
            rss: None,
        }
    }

    /// Successful exchanges per second.
    pub fn rate(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Request bytes echoed per second, in MB (10^6 bytes).
    pub fn megabytes_per_second(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Whether the run did anything and nothing failed.
    pub fn succeeded(&self) -> bool {
        self.ok > 0 && self.failed == 0
    }

    /// The headline figure of the scenario and its unit.
    pub fn headline(&self) -> (f64, &'static str) {
        match self.scenario {
            Scenario::Handshake | Scenario::HandshakeCpu => (self.rate(), "sessions/s"),
            Scenario::Latency => (self.latency.map_or(0.0, |l| l.p50_us), "us p50"),
            Scenario::Throughput | Scenario::CipherCpu => (self.megabytes_per_second(), "MB/s"),
            Scenario::Pipeline => (self.rate(), "requests/s"),
            // Memory is measured only with the server's process id; without it the
            // figure is how fast the sessions opened, not a NaN.
            Scenario::Idle => match self.rss {
                Some(rss) => (rss.per_session_kib, "KiB/session"),
                None => (self.rate(), "sessions/s opened (memory needs --server-pid)"),
            },
        }
    }

    /// One JSON object, for scripts (no dependency needed for these flat figures).
    pub fn to_json(&self) -> String {
        let number = |value: f64| {
            if value.is_finite() {
                format!("{value:.3}")
            } else {
                "null".to_owned()
            }
        };
        let mut json = format!(
            "{{\"scenario\":\"{}\",\"transport\":\"{}\",\"concurrency\":{},\"ok\":{},\"failed\":{},\"elapsed_s\":{},\"rate_per_s\":{},\"bytes\":{},\"mb_per_s\":{}",
            self.scenario.name(),
            self.transport,
            self.concurrency,
            self.ok,
            self.failed,
            number(self.elapsed.as_secs_f64()),
            number(self.rate()),
            self.bytes,
            number(self.megabytes_per_second()),
        );
        if let Some(latency) = self.latency {
            let _ = write!(
                json,
                ",\"p50_us\":{},\"p99_us\":{},\"max_us\":{}",
                number(latency.p50_us),
                number(latency.p99_us),
                number(latency.max_us)
            );
        }
        if let Some(rss) = self.rss {
            let _ = write!(
                json,
                ",\"rss_before_kib\":{},\"rss_after_kib\":{},\"kib_per_session\":{}",
                rss.before_kib,
                rss.after_kib,
                number(rss.per_session_kib)
            );
        }
        if let Some(error) = &self.first_error {
            let escaped: String = error
                .chars()
                .flat_map(|c| match c {
                    '"' | '\\' => vec!['\\', c],
                    c if c.is_control() => vec![' '],
                    c => vec![c],
                })
                .collect();
            let _ = write!(json, ",\"first_error\":\"{escaped}\"");
        }
        json.push('}');
        json
    }

    /// A human-readable summary table.
    pub fn to_table(&self) -> String {
        let (value, unit) = self.headline();
        let mut table = String::new();
        let _ = writeln!(
            table,
            "scenario      transport  conc        ok    failed   seconds        rate/s      MB/s     p50 us     p99 us     max us"
        );
        let (p50, p99, max) = self
            .latency
            .map_or(("-".into(), "-".into(), "-".into()), |l| {
                (
                    format!("{:.1}", l.p50_us),
                    format!("{:.1}", l.p99_us),
                    format!("{:.1}", l.max_us),
                )
            });
        let _ = writeln!(
            table,
            "{:<13} {:<9} {:>5} {:>9} {:>9} {:>9.2} {:>13.1} {:>9.1} {:>10} {:>10} {:>10}",
            self.scenario.name(),
            self.transport,
            self.concurrency,
            self.ok,
            self.failed,
            self.elapsed.as_secs_f64(),
            self.rate(),
            self.megabytes_per_second(),
            p50,
            p99,
            max
        );
        if let Some(rss) = self.rss {
            let _ = writeln!(
                table,
                "server RSS: {} KiB before, {} KiB with {} sessions open: {:.2} KiB per session",
                rss.before_kib, rss.after_kib, self.ok, rss.per_session_kib
            );
        }
        let _ = writeln!(table, "result: {value:.2} {unit}");
        if let Some(error) = &self.first_error {
            let _ = writeln!(table, "first failure: {error}");
        }
        table
    }
}

/// Runs a network scenario (anything but `handshake-cpu`) against `connector`.
///
/// # Errors
/// Only for a scenario that cannot start (`handshake-cpu` here, or a failure to open
/// the one session of `latency`, `throughput` or `pipeline`); failures of individual
/// exchanges are counted in the report instead.
pub async fn run(options: &Options, connector: Arc<Connector>) -> anyhow::Result<Report> {
    let mut report = Report::new(options, connector.transport());
    let tally = Arc::new(Tally::default());
    let progress = Progress::start(options, &tally);
    let started = Instant::now();
    let samples = match options.scenario {
        Scenario::HandshakeCpu => bail!("handshake-cpu runs in memory: use handshake_cpu()"),
        Scenario::CipherCpu => bail!("cipher-cpu runs in memory: use cipher_cpu()"),
        Scenario::Handshake => handshake(options, connector, &tally).await,
        Scenario::Latency => Some(latency(options, &connector, &tally).await?),
        Scenario::Throughput => {
            stream_requests(options, &connector, &tally, LARGE_REQUEST).await?;
            None
        }
        Scenario::Pipeline => {
            stream_requests(options, &connector, &tally, SMALL_REQUEST).await?;
            None
        }
        Scenario::Idle => {
            let (rss, opening) = idle(options, &connector, &tally).await?;
            report.rss = rss;
            // The figure is memory; the rate is that of opening the sessions.
            report.elapsed = opening;
            None
        }
    };
    if options.scenario != Scenario::Idle {
        report.elapsed = started.elapsed();
    }
    // The progress line's task may still hold the tally: read it, don't unwrap it
    // (unwrapping failed whenever the progress line was on, and reported 0 ok).
    drop(progress);
    tally.report_into(&mut report);
    report.latency = samples.and_then(Samples::percentiles);
    Ok(report)
}
