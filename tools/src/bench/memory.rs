//! The in-memory ceilings: handshake pairs over the sans-I/O core and the session
//! cipher, one thread per core, no sockets.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{anyhow, bail, Context};

use super::*;
use noise_echo::identity::Identity;
use noise_echo::wire::{self, LocalIdentity};
use stats::Samples;

/// One handshake pair over the sans-I/O core, the messages passed as byte slices.
pub(super) fn handshake_in_memory(
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
    tally.report_into(&mut report);
    report.latency = all.percentiles();
    Ok(report)
}

/// `cipher-cpu`: `concurrency` threads, each sealing a full transport message
/// ([`MAX_PLAINTEXT_LEN`](wire::MAX_PLAINTEXT_LEN) bytes) in place and opening it
/// again, with the session cipher's own code and no sockets or copies. The figure,
/// MB/s of plaintext through one seal and one open, is what this machine's cores
/// can encrypt: every byte of `throughput` is sealed and opened twice (request and
/// reply), on top of everything the plaintext baseline does. The cipher is
/// `options.cipher`'s (by default the suite this CPU prefers), and the report's
/// transport column names it.
///
/// # Errors
/// When a thread cannot start.
pub fn cipher_cpu(options: &Options) -> anyhow::Result<Report> {
    use noise_echo::wire::cipher::{CipherKey, KEY_LEN, TAG_LEN};
    use zeroize::Zeroizing;

    let suite = options
        .cipher
        .unwrap_or_else(noise_echo::wire::Suite::preferred);
    let mut report = Report::new(options, suite.short_name());
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
                    let mut key = CipherKey::new(suite, Zeroizing::new([thread as u8; KEY_LEN]));
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
    tally.report_into(&mut report);
    Ok(report)
}
