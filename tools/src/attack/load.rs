//! The load generator: many pipelined sessions, every byte of every reply checked.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use noise_echo::wire::{RecordType, Reply, MIN_RESPONSE_LIMIT};

use super::{check_loopback, connect_from, handshake, Client, SplitMix};

/// What a [`load`] does.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// The server, on loopback.
    pub target: SocketAddr,
    /// The authorized client all sessions use.
    pub client: Client,
    /// Sessions, all open at once.
    pub sessions: usize,
    /// Requests per session, pipelined.
    pub requests: usize,
    /// Most requests a session has sent and not yet had answered (at least 1): bounds
    /// the memory of a thousand sessions pipelining 64 KiB requests.
    pub window: usize,
    /// Largest request body, in bytes.
    pub max_size: usize,
    /// Draw sizes log-uniformly (mostly small, some large) instead of uniformly.
    pub log_uniform: bool,
    /// Seed of the sizes and contents, so a run can be repeated.
    pub seed: u64,
    /// A session that takes longer than this fails.
    pub session_timeout: Duration,
}

/// What a [`load`] saw.
#[derive(Debug, Clone, Default)]
pub struct LoadStats {
    /// Sessions whose every reply was right.
    pub sessions_ok: u64,
    /// Sessions that failed or got a wrong reply.
    pub sessions_failed: u64,
    /// Replies received and checked.
    pub replies_checked: u64,
    /// Replies that differed from the uppercase of their request (lost, duplicated,
    /// reordered or corrupted bytes).
    pub mismatches: u64,
    /// Request bytes sent.
    pub bytes_sent: u64,
    /// Reply bytes received.
    pub bytes_received: u64,
    /// Wall time of the whole run.
    pub elapsed: Duration,
    /// The first failures' reasons.
    pub errors: Vec<String>,
    /// Time from a session's start to its last reply.
    pub session_times: Vec<Duration>,
}

impl LoadStats {
    /// The `q` quantile (0.0 to 1.0) of the session times.
    pub fn session_time(&self, q: f64) -> Option<Duration> {
        crate::bench::stats::quantile(&self.session_times, q)
    }
}

/// Runs `config.sessions` sessions at once, each writing `config.requests` random
/// requests without waiting (pipelined) while it reads the replies, and checks each
/// reply against the uppercase of its request, in order.
///
/// # Errors
/// [`io::ErrorKind::InvalidInput`] when the target or source is not on loopback.
pub async fn load(config: LoadConfig) -> io::Result<LoadStats> {
    check_loopback(config.target.ip(), config.client.source.as_slice())?;
    let started = Instant::now();
    let config = Arc::new(config);
    let mut tasks = JoinSet::new();
    for n in 0..config.sessions {
        let config = Arc::clone(&config);
        tasks.spawn(async move {
            let begun = Instant::now();
            let result = tokio::time::timeout(config.session_timeout, session(&config, n)).await;
            let result = result.unwrap_or_else(|_| {
                Err(SessionError {
                    reason: format!("session {n} not done within {:?}", config.session_timeout),
                    progress: SessionProgress::default(),
                })
            });
            (result, begun.elapsed())
        });
    }
    let mut stats = LoadStats::default();
    while let Some(joined) = tasks.join_next().await {
        let Ok((result, took)) = joined else {
            stats.sessions_failed += 1;
            continue;
        };
        let progress = match result {
            Ok(progress) => {
                stats.sessions_ok += 1;
                stats.session_times.push(took);
                progress
            }
            Err(error) => {
                stats.sessions_failed += 1;
                if stats.errors.len() < 5 {
                    stats.errors.push(error.reason);
                }
                error.progress
            }
        };
        stats.replies_checked += progress.replies;
        stats.mismatches += progress.mismatches;
        stats.bytes_sent += progress.bytes_sent;
        stats.bytes_received += progress.bytes_received;
    }
    stats.elapsed = started.elapsed();
    Ok(stats)
}

/// How far a session got.
#[derive(Debug, Default, Clone, Copy)]
struct SessionProgress {
    replies: u64,
    mismatches: u64,
    bytes_sent: u64,
    bytes_received: u64,
}

/// A failed session: why, and how far it got.
#[derive(Debug)]
struct SessionError {
    reason: String,
    progress: SessionProgress,
}

/// Characters of the requests: ASCII, and letters whose uppercase is longer ('ß' to
/// "SS") or a different number of bytes, so lengths change in the replies.
const ALPHABET: &[char] = &[
    'a', 'b', 'c', 'x', 'y', 'z', '0', ' ', '\n', 'é', 'ß', 'ω', 'ǆ', 'ﬀ', '🦀', 'İ',
];

fn random_request(rng: &mut SplitMix, max_size: usize, log_uniform: bool) -> String {
    let size = if log_uniform {
        let bits = (max_size.max(1) as f64).log2();
        let exponent = (rng.next() % 10_000) as f64 / 10_000.0 * bits;
        (2f64.powf(exponent) as usize).min(max_size)
    } else {
        (rng.next() % (max_size as u64 + 1)) as usize
    };
    let mut text = String::with_capacity(size);
    while text.len() < size {
        let c = ALPHABET[(rng.next() % ALPHABET.len() as u64) as usize];
        if text.len() + c.len_utf8() > size {
            text.push('a');
        } else {
            text.push(c);
        }
    }
    text
}

async fn session(config: &LoadConfig, n: usize) -> Result<SessionProgress, SessionError> {
    let mut progress = SessionProgress::default();
    let fail = |reason: String, progress: SessionProgress| SessionError { reason, progress };
    let mut stream = connect_from(config.client.source, config.target)
        .await
        .map_err(|error| fail(format!("session {n}: connect: {error}"), progress))?;
    let (mut rx, mut tx) = handshake(&mut stream, &config.client)
        .await
        .map_err(|error| fail(format!("session {n}: {error}"), progress))?;
    let expected = Mutex::new(VecDeque::new());
    let mut rng = SplitMix(config.seed ^ (n as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let sent = AtomicU64::new(0);
    let window = tokio::sync::Semaphore::new(config.window.max(1));
    let writer = async {
        for _ in 0..config.requests {
            // Out of window: push out what is queued, then wait for a reply.
            let permit = match window.try_acquire() {
                Ok(permit) => permit,
                Err(_) => {
                    tx.flush()
                        .await
                        .map_err(|error| format!("session {n}: request: {error}"))?;
                    window
                        .acquire()
                        .await
                        .map_err(|_| format!("session {n}: reader gone"))?
                }
            };
            permit.forget();
            let request = random_request(&mut rng, config.max_size, config.log_uniform);
            expected
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push_back(request.to_uppercase());
            tx.write_record(RecordType::Request, request.as_bytes())
                .await
                .map_err(|error| format!("session {n}: request: {error}"))?;
            sent.fetch_add(request.len() as u64, Ordering::Relaxed);
        }
        tx.shutdown()
            .await
            .map_err(|error| format!("session {n}: end of requests: {error}"))
    };
    let reader = async {
        let mut replies = 0u64;
        let mut mismatches = 0u64;
        let mut received = 0u64;
        loop {
            let reply = rx.read_reply(MIN_RESPONSE_LIMIT).await.map_err(|error| {
                (
                    format!("session {n}: reply {replies}: {error}"),
                    replies,
                    mismatches,
                    received,
                )
            })?;
            let Some(reply) = reply else { break };
            window.add_permits(1);
            let want = expected
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .pop_front();
            match (reply, want) {
                (Reply::Response(body), Some(want)) => {
                    received += body.len() as u64;
                    if body != want.as_bytes() {
                        mismatches += 1;
                    }
                }
                (other, _) => {
                    mismatches += 1;
                    return Err((
                        format!("session {n}: reply {replies}: unexpected {other:?}"),
                        replies,
                        mismatches,
                        received,
                    ));
                }
            }
            replies += 1;
        }
        Ok((replies, mismatches, received))
    };
    let (written, read) = tokio::join!(writer, reader);
    progress.bytes_sent = sent.load(Ordering::Relaxed);
    match read {
        Ok((replies, mismatches, received)) => {
            progress.replies = replies;
            progress.mismatches = mismatches;
            progress.bytes_received = received;
        }
        Err((reason, replies, mismatches, received)) => {
            progress.replies = replies;
            progress.mismatches = mismatches;
            progress.bytes_received = received;
            return Err(fail(reason, progress));
        }
    }
    written.map_err(|reason| fail(reason, progress))?;
    let missing = config.requests as u64 - progress.replies.min(config.requests as u64);
    if missing > 0 || progress.mismatches > 0 {
        return Err(fail(
            format!(
                "session {n}: {missing} repl(ies) missing, {} wrong",
                progress.mismatches
            ),
            progress,
        ));
    }
    Ok(progress)
}
