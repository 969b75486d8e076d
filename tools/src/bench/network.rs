//! The scenarios over sockets: handshake, latency, throughput and pipeline
//! (streamed requests), idle, and the server RSS reading.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use tokio::sync::Semaphore;

use super::*;
use noise_echo::wire::RecordType;
use stats::Samples;

/// `handshake`: workers loop over open, one echo, close.
pub(super) async fn handshake(
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
pub(super) async fn one_session(
    connector: &Connector,
    index: u64,
    body: &mut Vec<u8>,
) -> anyhow::Result<()> {
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
pub(super) async fn latency(
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
    // One timer for the whole run, armed once, instead of a timeout per round
    // trip: registering and cancelling a timer was inside every measured round
    // trip, in both stacks alike. A stuck exchange is still caught, at most
    // EXCHANGE_TIMEOUT past the run's end.
    let run_deadline = tokio::time::sleep(options.duration + EXCHANGE_TIMEOUT);
    tokio::pin!(run_deadline);
    while budget.claim() {
        index += 1;
        let (request, expected) = small_request(index);
        let started = Instant::now();
        let exchange = async {
            sender.request(&request).await?;
            sender.flush().await?;
            receiver.expect(&mut body, &expected).await
        };
        let outcome = tokio::select! {
            biased;
            outcome = exchange => Ok(outcome),
            () = &mut run_deadline => Err(()),
        };
        match outcome {
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
pub(super) async fn stream_requests(
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
            let mut numbered = Numbered::new();
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
                    request[..prefix].copy_from_slice(&numbered.request()[..prefix]);
                    numbered.advance();
                    // Queued with no future when no write is needed, in either
                    // stack (the server's pipelined path is measured, not ours).
                    if !sender.queue(&request)? {
                        sender.request(&request).await?;
                    }
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
    let mut numbered = Numbered::new();
    let mut expected = expected_pattern.clone();
    // Replies checked whose room in the window is not yet given back: returned a
    // sixteenth of the window at a time (a call per reply takes the semaphore's
    // lock each time, and wakes the writer for one request, which it writes with
    // a system call of its own), and always before the reader waits, so the
    // writer never waits for room that a checked reply has made.
    let return_batch = (options.concurrency / 16).max(1);
    let mut unreturned = 0;
    let reader_result: anyhow::Result<()> = async {
        loop {
            if unreturned >= return_batch {
                window.add_permits(std::mem::take(&mut unreturned));
            }
            // A reply already here whole is checked where it lies, with no future.
            let buffered = receiver.buffered_reply(|record_type, reply| {
                check_reply(index, record_type, reply, &mut expected, &numbered, prefix)
            })?;
            if let Some(checked) = buffered {
                checked?;
            } else {
                let reply = {
                    let next = receiver.reply(&mut body);
                    tokio::pin!(next);
                    // A pipelined reply is usually here already: no timer for it.
                    match poll_once(next.as_mut()).await {
                        Some(reply) => reply?,
                        None => {
                            window.add_permits(std::mem::take(&mut unreturned));
                            tokio::time::timeout(EXCHANGE_TIMEOUT, next)
                                .await
                                .map_err(|_| anyhow!("no reply within {EXCHANGE_TIMEOUT:?}"))??
                        }
                    }
                };
                match reply {
                    None => return Ok(()),
                    Some(record_type) => {
                        check_reply(index, record_type, &body, &mut expected, &numbered, prefix)?;
                    }
                }
            }
            index += 1;
            numbered.advance();
            tally.succeed(size as u64);
            unreturned += 1;
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

/// Checks the reply to request `index` of a stream, numbered `numbered`: a
/// RESPONSE that is `expected` with the request's number in its first `prefix`
/// bytes.
fn check_reply(
    index: u64,
    record_type: RecordType,
    body: &[u8],
    expected: &mut [u8],
    numbered: &Numbered,
    prefix: usize,
) -> anyhow::Result<()> {
    if record_type != RecordType::Response {
        bail!("request {index}: the server answered {record_type}");
    }
    expected[..prefix].copy_from_slice(&numbered.expected()[..prefix]);
    if body != expected {
        bail!("wrong reply to request {index}");
    }
    Ok(())
}

/// Polls `future` once: its output if it is ready, `None` if it would wait (left
/// in progress, with this task's waker registered, to be polled again).
async fn poll_once<F: std::future::Future + ?Sized>(
    mut future: std::pin::Pin<&mut F>,
) -> Option<F::Output> {
    std::future::poll_fn(|cx| match future.as_mut().poll(cx) {
        std::task::Poll::Ready(output) => std::task::Poll::Ready(Some(output)),
        std::task::Poll::Pending => std::task::Poll::Ready(None),
    })
    .await
}

/// `idle`: open `sessions` sessions (each with one echo, so it is past the
/// handshake and authorization), measure the server's RSS, hold them, check each
/// still answers, close them all. Returns the memory and the time opening took.
pub(super) async fn idle(
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
