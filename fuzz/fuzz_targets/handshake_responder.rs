//! The server's real connection loop, `Server::serve_connection`, fed arbitrary input
//! from a client: nothing may panic, stall, or grow without bound.
//!
//! The first byte picks the mode (its value modulo 3):
//! - 0: the rest of the input is the raw byte stream from the client, so the
//!   handshake's framing and message 1 are fuzzed (message 2 needs a live answer);
//! - 1: an honest client completes a real handshake, then the rest of the input is
//!   a script of records it sends inside the encrypted session (requests of any size
//!   and content, record headers that claim more than follows, early closes), so the
//!   fuzzer reaches the session loop, the echo rules and the limits behind the
//!   cryptography, which raw bytes never could;
//! - 2: the sans-I/O responder itself, no stream and no runtime: the next byte is the
//!   length of message 1, which follows, and the rest is message 3.
//!
//! Modes 0 and 1 run on its own single-threaded runtime with tokio's clock paused, so
//! the server's deadlines (handshake, idle, the drain after a refusal) pass in virtual
//! time and every run ends at once.
#![no_main]

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use noise_echo::identity::Identity;
use noise_echo::openssh::authorized_keys::{self, AuthorizedKeys};
use noise_echo::server::{AllowList, Server, ServerConfig};
use noise_echo::wire::{self, LocalIdentity, RecordType};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The server's request limit here: small, so the limit's paths are reached by
/// inputs of a few KiB.
const REQUEST_LIMIT: u32 = 4096;
/// Bound on a run in virtual time: far beyond every server deadline.
const RUN_LIMIT: Duration = Duration::from_secs(3600);

fn peer() -> SocketAddr {
    "127.0.0.1:40000".parse().unwrap()
}

fn client() -> &'static LocalIdentity {
    static CLIENT: OnceLock<LocalIdentity> = OnceLock::new();
    CLIENT.get_or_init(|| LocalIdentity::new(&Identity::from_seed(&[0xc1; 32], "fuzz client")))
}

fn host() -> &'static Arc<LocalIdentity> {
    static HOST: OnceLock<Arc<LocalIdentity>> = OnceLock::new();
    HOST.get_or_init(|| {
        Arc::new(LocalIdentity::new(&Identity::from_seed(
            &[0x5e; 32],
            "fuzz server",
        )))
    })
}

/// One server for every run: it holds no per-connection state between runs, and
/// building it (the allow-list) once keeps runs fast.
fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| {
        let line = authorized_keys::append_key(&[], client().public_key(), "fuzz client");
        let keys = AuthorizedKeys::parse(&line, "(fuzz)".as_ref());
        let mut config =
            ServerConfig::with_allow_list(Arc::clone(host()), AllowList::Keys(Arc::new(keys)));
        config.max_request = REQUEST_LIMIT;
        Server::new(config).expect("the fuzz server's settings are valid")
    })
}

/// Reads from a byte slice, then reports end of stream; writes go nowhere.
struct Scripted {
    input: Vec<u8>,
    at: usize,
}

impl AsyncRead for Scripted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let take = buf.remaining().min(self.input.len() - self.at);
        let at = self.at;
        buf.put_slice(&self.input[at..at + take]);
        self.at += take;
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Scripted {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Plays the record script `script` as an authenticated client over `io`, reading
/// and discarding the server's replies on the side so it never blocks on them.
async fn play_session(mut io: tokio::io::DuplexStream, mut script: &[u8]) {
    let Ok(awaiting) = wire::initiate(&mut io, client()).await else {
        return;
    };
    let Ok(established) = awaiting.approve(&mut io).await else {
        return;
    };
    let (reader, writer) = tokio::io::split(io);
    let (mut rx, mut tx) = established.into_halves(reader, writer);
    let draining =
        tokio::spawn(async move { while let Ok(Some(_)) = rx.read_reply(u32::MAX).await {} });
    // Each step: an operation byte, then its operands.
    while let Some((&operation, rest)) = script.split_first() {
        script = rest;
        let sent = match operation % 4 {
            // A request whose length (0..=8,191, so past the limit too) is the next
            // two bytes, and whose body is the input that follows, zero-padded.
            0 | 1 => {
                let Some((len, rest)) = script.split_first_chunk::<2>() else {
                    break;
                };
                let len = usize::from(u16::from_le_bytes(*len) % 8192);
                let take = len.min(rest.len());
                let mut body = rest[..take].to_vec();
                body.resize(len, 0);
                script = &rest[take..];
                tx.write_record(RecordType::Request, &body).await
            }
            // Let the server see what is queued.
            2 => tx.flush().await,
            // Close our side (mid-session, possibly with requests unanswered).
            _ => break,
        };
        if sent.is_err() {
            break;
        }
    }
    let _ = tx.shutdown().await;
    let _ = draining.await;
}

/// Mode 2: the core's typestates over byte slices, as the driver calls them.
fn responder_core(input: &[u8]) {
    let Some((&len, rest)) = input.split_first() else {
        return;
    };
    let (message1, message3) = rest.split_at(usize::from(len).min(rest.len()));
    let Ok(expect_message1) = wire::Responder::new(host()) else {
        return;
    };
    // -> e
    let Ok((expect_message3, message2)) = expect_message1.read(message1) else {
        return;
    };
    assert_eq!(message2.len(), wire::MSG2_LEN);
    // -> s, se: a forged message 3 cannot decrypt, as it needs our ephemeral key.
    if let Ok(established) = expect_message3.read(message3) {
        panic!("a message 3 made without our message 2 was accepted: {established:?}");
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, input)) = data.split_first() else {
        return;
    };
    if mode % 3 == 2 {
        return responder_core(input);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let run = async {
            if mode % 3 == 0 {
                let stream = Scripted {
                    input: input.to_vec(),
                    at: 0,
                };
                server().serve_connection(stream, peer()).await;
            } else {
                let (client_io, server_io) = tokio::io::duplex(64 * 1024);
                let serving = server().serve_connection(server_io, peer());
                tokio::join!(serving, play_session(client_io, input));
            }
        };
        tokio::time::timeout(RUN_LIMIT, run)
            .await
            .expect("a connection outlived every server deadline");
    });
});
