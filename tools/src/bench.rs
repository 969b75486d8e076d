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
//! compared in one run. The first Noise connection goes through [`client::connect`]
//! and the client's known_hosts logic; later connections pin the key it accepted, as
//! one client process would.

pub mod plain;
pub mod stats;

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

use noise_echo::client::{self, ClientConfig, Target, UnknownHostPolicy};
use noise_echo::identity::{Identity, PublicKey};
use noise_echo::wire::{self, LocalIdentity, RecordType, RecvHalf, SendHalf, MIN_RESPONSE_LIMIT};
use plain::{PlainReceiver, PlainSender};
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
    /// `noise`, `plain`, or `memory` (for `handshake-cpu`).
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
            Scenario::Idle => (
                self.rss.map_or(f64::NAN, |rss| rss.per_session_kib),
                "KiB/session",
            ),
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

/// How to reach the server and whom to trust.
// Built once per run and consumed at once: the size difference costs nothing.
#[allow(clippy::large_enum_variant)]
pub enum Trust {
    /// The real protocol, with the client's known_hosts logic for the first
    /// connection.
    Noise {
        /// Our identity.
        identity: LocalIdentity,
        /// known_hosts to check (and add to under `AcceptNew`).
        known_hosts: std::path::PathBuf,
        /// What to do with an unknown key (there is no prompt in a benchmark).
        unknown_host: UnknownHostPolicy,
    },
    /// The plaintext baseline.
    Plain,
}

/// Opens sessions to one server, the same way every time.
pub struct Connector {
    address: SocketAddr,
    kind: ConnectorKind,
}

enum ConnectorKind {
    Noise {
        identity: Arc<LocalIdentity>,
        server_key: PublicKey,
    },
    Plain,
}

impl Connector {
    /// Resolves `target` once and, for Noise, makes a first connection through
    /// [`client::connect`] so the server's key is checked against known_hosts (and
    /// the policy) exactly as `connect` would; later sessions pin that key.
    ///
    /// # Errors
    /// When the address does not resolve, the server cannot be reached, or its key is
    /// not trusted.
    pub async fn establish(target: &Target, trust: Trust) -> anyhow::Result<Self> {
        let address = tokio::net::lookup_host((target.host.as_str(), target.port))
            .await
            .with_context(|| format!("cannot resolve {target}"))?
            .next()
            .ok_or_else(|| anyhow!("{target} resolves to no address"))?;
        let kind = match trust {
            Trust::Plain => ConnectorKind::Plain,
            Trust::Noise {
                identity,
                known_hosts,
                unknown_host,
            } => {
                let config = ClientConfig::known_hosts(identity.clone(), known_hosts)
                    .unknown_host(unknown_host);
                let connection = client::connect(target, config).await?;
                let server_key = *connection.server_key();
                let (_, mut sender) = connection.into_halves();
                sender.shutdown().await?;
                ConnectorKind::Noise {
                    identity: Arc::new(identity),
                    server_key,
                }
            }
        };
        Ok(Self { address, kind })
    }

    /// `noise` or `plain`.
    pub fn transport(&self) -> &'static str {
        match self.kind {
            ConnectorKind::Noise { .. } => "noise",
            ConnectorKind::Plain => "plain",
        }
    }

    /// Opens one session: TCP, then (for Noise) the whole handshake.
    async fn open(&self) -> anyhow::Result<(Receiver, Sender)> {
        let mut stream = TcpStream::connect(self.address)
            .await
            .with_context(|| format!("cannot connect to {}", self.address))?;
        stream.set_nodelay(true)?;
        match &self.kind {
            ConnectorKind::Plain => {
                let (receiver, sender) = plain::client_halves(stream);
                Ok((Receiver::Plain(receiver), Sender::Plain(sender)))
            }
            ConnectorKind::Noise {
                identity,
                server_key,
            } => {
                let pinned = *server_key;
                let established = wire::initiate_checked(&mut stream, identity, |key| {
                    if *key == pinned {
                        Ok(())
                    } else {
                        Err("the server's key changed during the benchmark")
                    }
                })
                .await?;
                let (reader, writer) = stream.into_split();
                let (receiver, sender) = established.into_halves(reader, writer);
                Ok((Receiver::Noise(receiver), Sender::Noise(sender)))
            }
        }
    }
}

/// The request side of a session, Noise or plain.
enum Sender {
    Noise(SendHalf<OwnedWriteHalf>),
    Plain(PlainSender),
}

/// The reply side of a session, Noise or plain.
enum Receiver {
    Noise(RecvHalf<OwnedReadHalf>),
    Plain(PlainReceiver),
}

impl Sender {
    async fn request(&mut self, body: &[u8]) -> anyhow::Result<()> {
        match self {
            Sender::Noise(tx) => tx.write_record(RecordType::Request, body).await?,
            Sender::Plain(tx) => tx.request(body).await?,
        }
        Ok(())
    }

    async fn flush(&mut self) -> anyhow::Result<()> {
        match self {
            Sender::Noise(tx) => tx.flush().await?,
            Sender::Plain(tx) => tx.flush().await?,
        }
        Ok(())
    }

    async fn shutdown(&mut self) -> anyhow::Result<()> {
        match self {
            Sender::Noise(tx) => tx.shutdown().await?,
            Sender::Plain(tx) => tx.shutdown().await?,
        }
        Ok(())
    }
}

impl Receiver {
    /// The next reply's type and body, `None` at a clean end of stream.
    async fn reply(&mut self, body: &mut Vec<u8>) -> anyhow::Result<Option<RecordType>> {
        match self {
            Receiver::Noise(rx) => {
                let Some(header) = rx.next_record().await? else {
                    return Ok(None);
                };
                rx.read_body(body, MIN_RESPONSE_LIMIT).await?;
                Ok(Some(header.record_type))
            }
            Receiver::Plain(rx) => Ok(rx.reply(body).await?),
        }
    }

    /// Reads a reply and checks it is the RESPONSE `expected`.
    async fn expect(&mut self, body: &mut Vec<u8>, expected: &[u8]) -> anyhow::Result<()> {
        match self.reply(body).await? {
            Some(RecordType::Response) if body.as_slice() == expected => Ok(()),
            Some(RecordType::Response) => bail!(
                "wrong reply: expected {} bytes {:?}..., got {} bytes {:?}...",
                expected.len(),
                String::from_utf8_lossy(&expected[..expected.len().min(16)]),
                body.len(),
                String::from_utf8_lossy(&body[..body.len().min(16)])
            ),
            Some(other) => bail!(
                "the server answered {other}: {}",
                String::from_utf8_lossy(body)
            ),
            None => bail!("the server closed the session without replying"),
        }
    }
}

/// A 16-byte request numbered `index` (lowercase hex, so uppercasing changes it)
/// and the reply it must get.
fn small_request(index: u64) -> ([u8; SMALL_REQUEST], [u8; SMALL_REQUEST]) {
    let mut request = [0u8; SMALL_REQUEST];
    let text = format!("req-{:012x}", index & 0xffff_ffff_ffff);
    request.copy_from_slice(text.as_bytes());
    let mut expected = request;
    expected.make_ascii_uppercase();
    (request, expected)
}

/// Counts outcomes from many tasks, and keeps the first error.
#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    failed: AtomicU64,
    bytes: AtomicU64,
    first_error: Mutex<Option<String>>,
}

impl Tally {
    /// Counts one checked exchange that echoed `bytes` of request body.
    fn succeed(&self, bytes: u64) {
        self.ok.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    fn fail(&self, error: &anyhow::Error) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        let mut first = self
            .first_error
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if first.is_none() {
            *first = Some(format!("{error:#}"));
        }
    }

    fn into_report(self, report: &mut Report) {
        report.ok = self.ok.into_inner();
        report.failed = self.failed.into_inner();
        report.bytes = self.bytes.into_inner();
        report.first_error = self
            .first_error
            .into_inner()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
    }
}

/// The shared limits of a run: a deadline and, optionally, a count of requests that
/// workers claim one at a time.
struct Budget {
    deadline: Instant,
    remaining: Option<AtomicU64>,
}

impl Budget {
    fn new(options: &Options) -> Self {
        Self {
            deadline: Instant::now() + options.duration,
            remaining: options.requests.map(AtomicU64::new),
        }
    }

    /// Claims one request: `false` once the count or the time is used up.
    fn claim(&self) -> bool {
        if Instant::now() >= self.deadline {
            return false;
        }
        match &self.remaining {
            None => true,
            Some(remaining) => remaining
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                    left.checked_sub(1)
                })
                .is_ok(),
        }
    }
}

/// Prints `ok`/`failed` counts once a second on stderr until dropped.
struct Progress {
    done: Arc<AtomicBool>,
}

impl Progress {
    fn start(options: &Options, tally: &Arc<Tally>) -> Self {
        let done = Arc::new(AtomicBool::new(false));
        if options.progress {
            let (done, tally) = (Arc::clone(&done), Arc::clone(tally));
            let name = options.scenario.name();
            tokio::spawn(async move {
                let started = Instant::now();
                let mut ticker = tokio::time::interval(Duration::from_secs(1));
                ticker.tick().await;
                loop {
                    ticker.tick().await;
                    if done.load(Ordering::Relaxed) {
                        break;
                    }
                    let ok = tally.ok.load(Ordering::Relaxed);
                    eprintln!(
                        "{name}: {:.0}s {ok} ok ({:.0}/s), {} failed",
                        started.elapsed().as_secs_f64(),
                        ok as f64 / started.elapsed().as_secs_f64(),
                        tally.failed.load(Ordering::Relaxed)
                    );
                }
            });
        }
        Self { done }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.done.store(true, Ordering::Relaxed);
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
    drop(progress);
    let tally = Arc::try_unwrap(tally).unwrap_or_default();
    tally.into_report(&mut report);
    report.latency = samples.and_then(Samples::percentiles);
    Ok(report)
}

/// `handshake`: workers loop over open, one echo, close.
async fn handshake(
    options: &Options,
    connector: Arc<Connector>,
    tally: &Arc<Tally>,
) -> Option<Samples> {
    let budget = Arc::new(Budget::new(options));
    let mut workers = Vec::new();
    for worker in 0..options.concurrency.max(1) {
        let (connector, tally, budget) = (
            Arc::clone(&connector),
            Arc::clone(tally),
            Arc::clone(&budget),
        );
        workers.push(tokio::spawn(async move {
            let mut samples = Samples::default();
            let mut body = Vec::new();
            let mut index = (worker as u64) << 32;
            while budget.claim() {
                index += 1;
                let started = Instant::now();
                let exchange = tokio::time::timeout(
                    EXCHANGE_TIMEOUT,
                    one_session(&connector, index, &mut body),
                );
                match exchange.await {
                    Ok(Ok(())) => {
                        samples.push(started.elapsed());
                        tally.succeed(SMALL_REQUEST as u64);
                    }
                    Ok(Err(error)) => tally.fail(&error),
                    Err(_) => tally.fail(&anyhow!("session timed out")),
                }
            }
            samples
        }));
    }
    let mut all = Samples::default();
    for worker in workers {
        if let Ok(samples) = worker.await {
            all.merge(samples);
        }
    }
    Some(all)
}

/// One whole session: open, one echo, end our side, read the server's close.
async fn one_session(connector: &Connector, index: u64, body: &mut Vec<u8>) -> anyhow::Result<()> {
    let (mut receiver, mut sender) = connector.open().await?;
    let (request, expected) = small_request(index);
    sender.request(&request).await?;
    sender.shutdown().await?;
    receiver.expect(body, &expected).await?;
    match receiver.reply(body).await? {
        None => Ok(()),
        Some(other) => bail!("unexpected {other} after the only reply"),
    }
}

/// `latency`: one session, one request at a time.
async fn latency(
    options: &Options,
    connector: &Connector,
    tally: &Arc<Tally>,
) -> anyhow::Result<Samples> {
    let (mut receiver, mut sender) = connector.open().await?;
    let mut body = Vec::new();
    // Warm up caches, the allocator and the scheduler before measuring.
    let warm_up = async {
        for index in 0..200 {
            let (request, expected) = small_request(index);
            sender.request(&request).await?;
            sender.flush().await?;
            receiver.expect(&mut body, &expected).await?;
        }
        anyhow::Ok(())
    };
    match tokio::time::timeout(EXCHANGE_TIMEOUT, warm_up).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => {
            tally.fail(&error.context("warming up"));
            return Ok(Samples::default());
        }
        Err(_) => {
            tally.fail(&anyhow!("warming up timed out"));
            return Ok(Samples::default());
        }
    }
    let budget = Budget::new(options);
    let mut samples = Samples::default();
    let mut index = 0u64;
    while budget.claim() {
        index += 1;
        let (request, expected) = small_request(index);
        let started = Instant::now();
        let exchange = async {
            sender.request(&request).await?;
            sender.flush().await?;
            receiver.expect(&mut body, &expected).await
        };
        match tokio::time::timeout(EXCHANGE_TIMEOUT, exchange).await {
            Ok(Ok(())) => {
                samples.push(started.elapsed());
                tally.succeed(SMALL_REQUEST as u64);
            }
            Ok(Err(error)) => {
                // The session is unusable after an error: stop here.
                tally.fail(&error);
                return Ok(samples);
            }
            Err(_) => {
                tally.fail(&anyhow!("round trip timed out"));
                return Ok(samples);
            }
        }
    }
    sender.shutdown().await?;
    Ok(samples)
}

/// `throughput` and `pipeline`: one session, a writer keeping up to `concurrency`
/// requests of `size` bytes in flight, a reader checking each reply in order.
async fn stream_requests(
    options: &Options,
    connector: &Connector,
    tally: &Arc<Tally>,
    size: usize,
) -> anyhow::Result<()> {
    let (mut receiver, mut sender) = connector.open().await?;
    let window = Arc::new(Semaphore::new(options.concurrency.max(1)));
    let sent = Arc::new(AtomicU64::new(0));
    // The body: a 16-byte numbered prefix, then lowercase letters.
    let pattern: Vec<u8> = (0..size).map(|i| b'a' + (i % 26) as u8).collect();
    let expected_pattern = pattern.to_ascii_uppercase();
    let prefix = SMALL_REQUEST.min(size);

    let writer = {
        let (window, sent) = (Arc::clone(&window), Arc::clone(&sent));
        let budget = Budget::new(options);
        let mut request = pattern.clone();
        tokio::spawn(async move {
            let mut index = 0u64;
            let result: anyhow::Result<()> = async {
                while budget.claim() {
                    // Flush what is queued before waiting for room in the window, so
                    // the server is never starved while we wait for its replies.
                    match window.try_acquire() {
                        Ok(permit) => permit.forget(),
                        Err(_) => {
                            sender.flush().await?;
                            let acquire = tokio::time::timeout(EXCHANGE_TIMEOUT, window.acquire());
                            match acquire.await {
                                Ok(Ok(permit)) => permit.forget(),
                                _ => bail!("no reply within {EXCHANGE_TIMEOUT:?}"),
                            }
                        }
                    }
                    let (numbered, _) = small_request(index);
                    request[..prefix].copy_from_slice(&numbered[..prefix]);
                    sender.request(&request).await?;
                    index += 1;
                    sent.store(index, Ordering::Release);
                }
                sender.shutdown().await
            }
            .await;
            result
        })
    };

    let mut body = Vec::new();
    let mut index = 0u64;
    let mut expected = expected_pattern.clone();
    let reader_result: anyhow::Result<()> = async {
        loop {
            let reply = tokio::time::timeout(EXCHANGE_TIMEOUT, receiver.reply(&mut body))
                .await
                .map_err(|_| anyhow!("no reply within {EXCHANGE_TIMEOUT:?}"))??;
            match reply {
                None => return Ok(()),
                Some(RecordType::Response) => {
                    let (_, numbered) = small_request(index);
                    expected[..prefix].copy_from_slice(&numbered[..prefix]);
                    if body != expected {
                        bail!("wrong reply to request {index}");
                    }
                }
                Some(other) => bail!("request {index}: the server answered {other}"),
            }
            index += 1;
            tally.succeed(size as u64);
            window.add_permits(1);
        }
    }
    .await;
    let writer_result = writer.await.context("the request writer panicked")?;
    let sent = sent.load(Ordering::Acquire);
    if let Err(error) = reader_result.and(writer_result) {
        tally.fail(&error);
    } else if index != sent {
        tally.fail(&anyhow!("{} of {sent} requests unanswered", sent - index));
    }
    Ok(())
}

/// `idle`: open `sessions` sessions (each with one echo, so it is past the
/// handshake and authorization), measure the server's RSS, hold them, check each
/// still answers, close them all. Returns the memory and the time opening took.
async fn idle(
    options: &Options,
    connector: &Arc<Connector>,
    tally: &Arc<Tally>,
) -> anyhow::Result<(Option<Rss>, Duration)> {
    let before = options.server_pid.map(read_rss_kib).transpose()?;
    let started = Instant::now();
    let open: Arc<Mutex<Vec<(Receiver, Sender)>>> = Arc::default();
    let to_open = Arc::new(AtomicU64::new(options.sessions as u64));
    let deadline = Instant::now() + options.duration;
    let mut workers = Vec::new();
    for _ in 0..options.concurrency.max(1) {
        let (connector, tally, open, to_open) = (
            Arc::clone(connector),
            Arc::clone(tally),
            Arc::clone(&open),
            Arc::clone(&to_open),
        );
        workers.push(tokio::spawn(async move {
            let mut body = Vec::new();
            while Instant::now() < deadline
                && to_open
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                    .is_ok()
            {
                let session = async {
                    let (mut receiver, mut sender) = connector.open().await?;
                    let (request, expected) = small_request(0);
                    sender.request(&request).await?;
                    sender.flush().await?;
                    receiver.expect(&mut body, &expected).await?;
                    anyhow::Ok((receiver, sender))
                };
                match tokio::time::timeout(EXCHANGE_TIMEOUT, session).await {
                    Ok(Ok(session)) => {
                        tally.ok.fetch_add(1, Ordering::Relaxed);
                        open.lock()
                            .unwrap_or_else(|poisoned| poisoned.into_inner())
                            .push(session);
                    }
                    Ok(Err(error)) => tally.fail(&error),
                    Err(_) => tally.fail(&anyhow!("opening a session timed out")),
                }
            }
        }));
    }
    for worker in workers {
        let _ = worker.await;
    }
    let opening = started.elapsed();
    let mut sessions =
        std::mem::take(&mut *open.lock().unwrap_or_else(|poisoned| poisoned.into_inner()));
    // Let the server's tasks settle into their idle state before reading its memory.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rss = match (options.server_pid, before) {
        (Some(pid), Some(before_kib)) => {
            let after_kib = read_rss_kib(pid)?;
            Some(Rss {
                before_kib,
                after_kib,
                per_session_kib: after_kib.saturating_sub(before_kib) as f64
                    / sessions.len().max(1) as f64,
            })
        }
        _ => None,
    };
    tokio::time::sleep(options.hold).await;
    // Every session must still answer after being held.
    let mut body = Vec::new();
    for (index, (receiver, sender)) in sessions.iter_mut().enumerate() {
        let (request, expected) = small_request(index as u64);
        let check = async {
            sender.request(&request).await?;
            sender.flush().await?;
            receiver.expect(&mut body, &expected).await
        };
        match tokio::time::timeout(EXCHANGE_TIMEOUT, check).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tally.fail(&error.context("a held session failed")),
            Err(_) => tally.fail(&anyhow!("a held session did not answer")),
        }
    }
    drop(sessions);
    Ok((rss, opening))
}

/// The VmRSS of process `pid`, in KiB, from /proc.
///
/// # Errors
/// When /proc/PID/status cannot be read or has no VmRSS line.
pub fn read_rss_kib(pid: u32) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| anyhow!("no VmRSS in {path}"))
}

/// One handshake pair over the sans-I/O core, the messages passed as byte slices.
fn handshake_in_memory(
    client: &LocalIdentity,
    server: &LocalIdentity,
    server_key: &noise_echo::identity::PublicKey,
) -> wire::Result<(wire::Established, wire::Established)> {
    let (initiator, message1) = wire::Initiator::start(client)?;
    let (responder, message2) = wire::Responder::new(server)?.read(&message1)?;
    let pending = initiator.read(&message2)?;
    if pending.server_key() != server_key {
        return Err(pending.reject("wrong server key"));
    }
    let (message3, client_side) = pending.approve()?;
    Ok((client_side, responder.read(&message3)?))
}

/// `handshake-cpu`: `concurrency` threads, each running in-memory handshake pairs
/// through the sans-I/O core the network path's drivers run ([`wire::Initiator`] and
/// [`wire::Responder`]), the messages passed as byte slices: no sockets, no runtime.
/// The figure is the most handshakes per second this machine's cores can compute.
///
/// # Errors
/// When a thread cannot start.
pub fn handshake_cpu(options: &Options) -> anyhow::Result<Report> {
    let mut report = Report::new(options, "memory");
    let client = Arc::new(LocalIdentity::new(&Identity::generate("bench client")));
    let server = Arc::new(LocalIdentity::new(&Identity::generate("bench server")));
    let server_key = *server.public_key();
    let budget = Arc::new(Budget::new(options));
    let tally = Arc::new(Tally::default());
    let started = Instant::now();
    let threads = (0..options.concurrency.max(1))
        .map(|_| {
            let (client, server, budget, tally) = (
                Arc::clone(&client),
                Arc::clone(&server),
                Arc::clone(&budget),
                Arc::clone(&tally),
            );
            std::thread::Builder::new()
                .name("handshake-cpu".into())
                .spawn(move || -> anyhow::Result<Samples> {
                    let mut samples = Samples::default();
                    while budget.claim() {
                        let started = Instant::now();
                        // The sans-I/O core, in memory: no stream, no runtime.
                        let pair = handshake_in_memory(&client, &server, &server_key);
                        match pair {
                            Ok((client_side, server_side))
                                if client_side.handshake_hash() == server_side.handshake_hash() =>
                            {
                                samples.push(started.elapsed());
                                tally.ok.fetch_add(1, Ordering::Relaxed);
                            }
                            Ok(_) => {
                                tally.fail(&anyhow!("the two sides disagree on the handshake"))
                            }
                            Err(error) => tally.fail(&error.into()),
                        }
                    }
                    Ok(samples)
                })
                .context("cannot start a benchmark thread")
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut all = Samples::default();
    for thread in threads {
        let samples = thread
            .join()
            .map_err(|_| anyhow!("a benchmark thread panicked"))??;
        all.merge(samples);
    }
    report.elapsed = started.elapsed();
    let tally = Arc::try_unwrap(tally).unwrap_or_default();
    tally.into_report(&mut report);
    report.latency = all.percentiles();
    Ok(report)
}

/// `cipher-cpu`: `concurrency` threads, each sealing a full transport message
/// ([`MAX_PLAINTEXT_LEN`](wire::MAX_PLAINTEXT_LEN) bytes) in place and opening it
/// again, with the session cipher's own code and no sockets or copies. The figure,
/// MB/s of plaintext through one seal and one open, is what this machine's cores
/// can encrypt: every byte of `throughput` is sealed and opened twice (request and
/// reply), on top of everything the plaintext baseline does.
///
/// # Errors
/// When a thread cannot start.
pub fn cipher_cpu(options: &Options) -> anyhow::Result<Report> {
    use noise_echo::wire::cipher::{CipherKey, KEY_LEN, TAG_LEN};
    use zeroize::Zeroizing;

    let mut report = Report::new(options, "memory");
    let budget = Arc::new(Budget::new(options));
    let tally = Arc::new(Tally::default());
    let started = Instant::now();
    let threads = (0..options.concurrency.max(1))
        .map(|thread| {
            let (budget, tally) = (Arc::clone(&budget), Arc::clone(&tally));
            std::thread::Builder::new()
                .name("cipher-cpu".into())
                .spawn(move || {
                    // A benchmark key: what is measured is the cost per byte, which
                    // does not depend on the key.
                    let key = CipherKey::new(Zeroizing::new([thread as u8; KEY_LEN]));
                    let plaintext: Vec<u8> = (0..wire::MAX_PLAINTEXT_LEN)
                        .map(|index| b'a' + (index % 26) as u8)
                        .collect();
                    let mut message = plaintext.clone();
                    message.resize(wire::MAX_PLAINTEXT_LEN + TAG_LEN, 0);
                    let mut nonce = 0u64;
                    while budget.claim() {
                        let body = &mut message[..wire::MAX_PLAINTEXT_LEN];
                        let sealed = key.seal_in_place(nonce, body).map(|tag| {
                            message[wire::MAX_PLAINTEXT_LEN..].copy_from_slice(&tag);
                        });
                        // Opening authenticates the whole message; comparing the
                        // plaintext every time would add a pass the cipher does not
                        // make, so it is compared on the first message only.
                        let opened = sealed
                            .and_then(|()| key.open_in_place(nonce, &mut message))
                            .map_err(anyhow::Error::from)
                            .and_then(|len| {
                                if nonce == 0 && message[..len] != plaintext[..] {
                                    bail!("the opened message differs from what was sealed")
                                }
                                Ok(len)
                            });
                        match opened {
                            Ok(len) => {
                                tally.succeed(len as u64);
                            }
                            Err(error) => tally.fail(&error),
                        }
                        nonce += 1;
                    }
                })
                .context("cannot start a benchmark thread")
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    for thread in threads {
        thread
            .join()
            .map_err(|_| anyhow!("a benchmark thread panicked"))?;
    }
    report.elapsed = started.elapsed();
    let tally = Arc::try_unwrap(tally).unwrap_or_default();
    tally.into_report(&mut report);
    Ok(report)
}
