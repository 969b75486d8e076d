//! The flood generator: slow, trickling and stalled connections from many
//! loopback addresses, garbage, and a legitimate client probing through them.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinSet;

use noise_echo::wire::{RecordType, Reply, MIN_RESPONSE_LIMIT};

use super::{check_loopback, connect_from, handshake, pick, Client, SplitMix};

/// What a [`flood`] does.
#[derive(Debug, Clone)]
pub struct FloodConfig {
    /// The server, on loopback.
    pub target: SocketAddr,
    /// Connections that connect and send nothing, reopened when the server closes them.
    pub silent: usize,
    /// Connections that send a handshake message one byte at a time, reopened when
    /// the server closes them.
    pub trickle: usize,
    /// Time between two trickled bytes.
    pub trickle_interval: Duration,
    /// Connections that send a whole, valid-looking message 1 at once and then
    /// nothing, reopened when the server closes them: past message 1, they cost the
    /// server its Diffie-Hellman work and look like an honest client awaiting its
    /// round trip, the hardest slowloris to tell apart.
    pub stalled: usize,
    /// Pause before a silent, trickling or stalled connection is reopened after the
    /// server closed it; zero reopens at once (an attacker that retakes every slot
    /// it loses).
    pub reopen_pause: Duration,
    /// New connections per second that send random bytes and wait for the close.
    pub garbage_per_second: u32,
    /// How long the flood lasts.
    pub duration: Duration,
    /// Loopback addresses the attack connections come from, in turn; empty lets the
    /// system choose. Many addresses stand in for a botnet (or spoofed sources).
    pub sources: Vec<IpAddr>,
    /// The legitimate client probing the server during the flood.
    pub probe: Option<Client>,
    /// Time between two probes.
    pub probe_interval: Duration,
    /// Seed of the random bytes, so a run can be repeated.
    pub seed: u64,
}

impl FloodConfig {
    /// The flood of the hardening requirement: 1,000 silent or trickling connections
    /// and 200 garbage connections a second for `duration`.
    pub fn full_scale(target: SocketAddr, duration: Duration) -> Self {
        Self {
            target,
            silent: 500,
            trickle: 500,
            trickle_interval: Duration::from_secs(1),
            stalled: 0,
            reopen_pause: Duration::from_millis(100),
            garbage_per_second: 200,
            duration,
            sources: Vec::new(),
            probe: None,
            probe_interval: Duration::from_millis(250),
            seed: 1,
        }
    }
}

/// What a [`flood`] saw.
#[derive(Debug, Clone, Default)]
pub struct FloodStats {
    /// Silent, trickling and stalled connections opened (reopens included).
    pub slow_opened: u64,
    /// Of those, closed by the server before the flood ended.
    pub slow_closed_by_server: u64,
    /// Connection attempts that failed (refused, out of descriptors...).
    pub connect_errors: u64,
    /// Garbage connections made.
    pub garbage_sent: u64,
    /// Garbage connections the server closed (after our bytes, or at once).
    pub garbage_closed: u64,
    /// Garbage connections to which the server sent anything at all (it should not:
    /// garbage never gets a handshake reply, so no Diffie-Hellman was done for it).
    pub garbage_answered: u64,
    /// Probes that got their answer.
    pub probes_ok: u64,
    /// Probes that failed, with the first few reasons.
    pub probes_failed: u64,
    /// The first probe failures' reasons.
    pub probe_errors: Vec<String>,
    /// Latency of each successful probe: connect, handshake, one request and reply.
    pub probe_latencies: Vec<Duration>,
}

impl FloodStats {
    /// The `q` quantile (0.0 to 1.0) of the probe latencies.
    pub fn probe_latency(&self, q: f64) -> Option<Duration> {
        crate::bench::stats::quantile(&self.probe_latencies, q)
    }

    /// The share of probes that got their answer, from 0.0 to 1.0 (`None` without
    /// probes).
    pub fn probe_success_rate(&self) -> Option<f64> {
        let total = self.probes_ok + self.probes_failed;
        (total > 0).then(|| self.probes_ok as f64 / total as f64)
    }
}

/// Floods the server at `config.target` as configured, probing it with the
/// legitimate client, and returns what happened. Stops by itself after
/// `config.duration` (plus at most a few seconds to collect the tasks).
///
/// # Errors
/// [`io::ErrorKind::InvalidInput`] when the target or a source is not on loopback.
pub async fn flood(config: FloodConfig) -> io::Result<FloodStats> {
    check_loopback(config.target.ip(), &config.sources)?;
    if let Some(probe) = &config.probe {
        check_loopback(config.target.ip(), probe.source.as_slice())?;
    }
    let counters = Arc::new(Counters::default());
    let end = Instant::now() + config.duration;
    let config = Arc::new(config);
    let mut tasks = JoinSet::new();
    let sources = Arc::new(config.sources.clone());
    for n in 0..config.silent + config.trickle + config.stalled {
        let (config, counters, sources) = (
            Arc::clone(&config),
            Arc::clone(&counters),
            Arc::clone(&sources),
        );
        let kind = if n < config.silent {
            Slow::Silent
        } else if n < config.silent + config.trickle {
            Slow::Trickle
        } else {
            Slow::Stalled
        };
        tasks.spawn(async move {
            slow_connection(&config, &counters, &sources, n, kind, end).await;
        });
    }
    if config.garbage_per_second > 0 {
        let (config, counters, sources) = (
            Arc::clone(&config),
            Arc::clone(&counters),
            Arc::clone(&sources),
        );
        tasks.spawn(async move { garbage(&config, &counters, &sources, end).await });
    }
    let probes = Arc::new(Mutex::new((Vec::new(), Vec::new())));
    if let Some(client) = config.probe.clone() {
        let (config, probes) = (Arc::clone(&config), Arc::clone(&probes));
        tasks.spawn(async move {
            let mut n = 0u64;
            while Instant::now() < end {
                let started = Instant::now();
                let result =
                    tokio::time::timeout(Duration::from_secs(5), probe(config.target, &client, n))
                        .await
                        .unwrap_or_else(|_| Err("no answer within 5 s".to_owned()));
                {
                    let mut probes = probes.lock().unwrap_or_else(|p| p.into_inner());
                    match result {
                        Ok(()) => probes.0.push(started.elapsed()),
                        Err(reason) => probes.1.push(reason),
                    }
                }
                n += 1;
                tokio::time::sleep(config.probe_interval).await;
            }
        });
    }
    // Every task watches `end`; the grace covers the last reads and probes.
    let collect = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(config.duration + Duration::from_secs(10), collect)
        .await
        .is_err()
    {
        tasks.abort_all();
    }
    let (latencies, errors) =
        std::mem::take(&mut *probes.lock().unwrap_or_else(|p| p.into_inner()));
    let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
    Ok(FloodStats {
        slow_opened: get(&counters.slow_opened),
        slow_closed_by_server: get(&counters.slow_closed),
        connect_errors: get(&counters.connect_errors),
        garbage_sent: get(&counters.garbage_sent),
        garbage_closed: get(&counters.garbage_closed),
        garbage_answered: get(&counters.garbage_answered),
        probes_ok: latencies.len() as u64,
        probes_failed: errors.len() as u64,
        probe_errors: errors.into_iter().take(5).collect(),
        probe_latencies: latencies,
    })
}

/// The counters the flood tasks share.
#[derive(Debug, Default)]
struct Counters {
    /// Slow connections opened.
    slow_opened: AtomicU64,
    /// Slow connections the server closed.
    slow_closed: AtomicU64,
    /// Failed connection attempts.
    connect_errors: AtomicU64,
    /// Garbage connections made.
    garbage_sent: AtomicU64,
    /// Garbage connections closed by the server.
    garbage_closed: AtomicU64,
    /// Garbage connections that got bytes back.
    garbage_answered: AtomicU64,
}

/// What a slow connection sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slow {
    /// Nothing.
    Silent,
    /// Message 1, a byte per `trickle_interval`.
    Trickle,
    /// Message 1 at once, then nothing.
    Stalled,
}

/// One silent, trickling or stalled connection slot: keeps a connection open until
/// `end`, opening a new one (after `reopen_pause`, and after a longer pause when
/// connecting fails, so a refusing server is not hammered in a tight loop) whenever
/// the server closes it.
async fn slow_connection(
    config: &FloodConfig,
    counters: &Counters,
    sources: &[IpAddr],
    n: usize,
    kind: Slow,
    end: Instant,
) {
    let trickle = kind == Slow::Trickle;
    let mut attempt = 0usize;
    while Instant::now() < end {
        let source = pick(sources, n + attempt * 7919);
        attempt += 1;
        let Ok(Ok(mut stream)) =
            tokio::time::timeout(Duration::from_secs(2), connect_from(source, config.target)).await
        else {
            counters.connect_errors.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        counters.slow_opened.fetch_add(1, Ordering::Relaxed);
        // A well-formed frame header for message 1, then its key a byte at a time: the
        // server has every reason to keep waiting, but for its deadline.
        let mut message = vec![0u8, 32];
        message.extend((0..32u8).map(|i| i.wrapping_mul(37)));
        let mut sent = 0usize;
        if kind == Slow::Stalled {
            if stream.write_all(&message).await.is_err() {
                counters.slow_closed.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            sent = message.len();
        }
        let mut scratch = [0u8; 256];
        let closed = loop {
            let wait = if trickle && sent < message.len() {
                config.trickle_interval
            } else {
                end.saturating_duration_since(Instant::now())
            };
            let deadline = (Instant::now() + wait).min(end);
            let read = tokio::time::timeout_at(deadline.into(), stream.read(&mut scratch)).await;
            match read {
                Ok(Ok(0) | Err(_)) => break true,
                // The server answered a trickled message 1; keep quiet from now on.
                Ok(Ok(_)) => sent = message.len(),
                Err(_) if Instant::now() >= end => break false,
                Err(_) => {
                    if trickle && sent < message.len() {
                        if stream.write_all(&message[sent..=sent]).await.is_err() {
                            break true;
                        }
                        sent += 1;
                    }
                }
            }
        };
        if !closed {
            return;
        }
        counters.slow_closed.fetch_add(1, Ordering::Relaxed);
        if config.reopen_pause.is_zero() {
            // Reopen at once, but let the other tasks run.
            tokio::task::yield_now().await;
        } else {
            tokio::time::sleep(config.reopen_pause).await;
        }
    }
}

/// Opens `garbage_per_second` connections a second, each sending up to 2 KiB of
/// random bytes and waiting (at most 2 s) for the server to close.
async fn garbage(config: &FloodConfig, counters: &Arc<Counters>, sources: &[IpAddr], end: Instant) {
    let interval = Duration::from_secs(1) / config.garbage_per_second.max(1);
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut rng = SplitMix(config.seed);
    let mut inflight = JoinSet::new();
    let mut n = 0usize;
    while Instant::now() < end {
        ticker.tick().await;
        let len = 1 + (rng.next() % 2048) as usize;
        let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        let source = pick(sources, n);
        n += 1;
        let (target, counters) = (config.target, Arc::clone(counters));
        inflight.spawn(async move {
            let Ok(Ok(mut stream)) =
                tokio::time::timeout(Duration::from_secs(2), connect_from(source, target)).await
            else {
                counters.connect_errors.fetch_add(1, Ordering::Relaxed);
                return;
            };
            counters.garbage_sent.fetch_add(1, Ordering::Relaxed);
            let _ = stream.write_all(&bytes).await;
            let mut scratch = [0u8; 256];
            let mut answered = false;
            let wait = async {
                loop {
                    match stream.read(&mut scratch).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => answered = true,
                    }
                }
            };
            if tokio::time::timeout(Duration::from_secs(2), wait)
                .await
                .is_ok()
            {
                counters.garbage_closed.fetch_add(1, Ordering::Relaxed);
            }
            if answered {
                counters.garbage_answered.fetch_add(1, Ordering::Relaxed);
            }
        });
        // Reap finished ones so the set stays small.
        while inflight.try_join_next().is_some() {}
    }
    while inflight.join_next().await.is_some() {}
}

/// One legitimate connection: handshake, one request, its reply checked.
async fn probe(target: SocketAddr, client: &Client, n: u64) -> Result<(), String> {
    let mut stream = connect_from(client.source, target)
        .await
        .map_err(|error| format!("connect: {error}"))?;
    let (mut rx, mut tx) = handshake(&mut stream, client).await?;
    let request = format!("probe number {n}");
    tx.write_record(RecordType::Request, request.as_bytes())
        .await
        .map_err(|error| format!("request: {error}"))?;
    tx.flush()
        .await
        .map_err(|error| format!("request: {error}"))?;
    match rx.read_reply(MIN_RESPONSE_LIMIT).await {
        Ok(Some(Reply::Response(body))) if body == request.to_uppercase().as_bytes() => {
            let _ = tx.shutdown().await;
            Ok(())
        }
        Ok(other) => Err(format!("unexpected reply {other:?}")),
        Err(error) => Err(format!("reply: {error}")),
    }
}
