//! The server's side of the connection fed arbitrary bytes as if from a client: the
//! handshake responder, then (when a fixed-ephemeral transcript makes it complete)
//! the record session answered by the service's rules (`noise_echo::echo`). Nothing
//! may panic or stall. (The server's connection loop itself needs a runtime for its
//! deadlines; tests/serve_connection.rs drives it over `tokio::io::duplex`.)
//!
//! The first byte picks the mode: even, a real responder (random ephemeral key), so
//! only message 1 and the framing are reachable; odd, the responder with a fixed
//! ephemeral key, so a recorded transcript (see `seeds`) completes the handshake and
//! the fuzzer mutates the session that follows.
#![no_main]

use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll, Waker};

use libfuzzer_sys::fuzz_target;
use noise_echo::echo::{self, Answer};
use noise_echo::identity::Identity;
use noise_echo::wire::{self, LocalIdentity, RecordType};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The server's key: the same for every run, so recorded transcripts replay.
const SERVER_SEED: [u8; 32] = [0x5e; 32];
/// The server's fixed ephemeral key in odd mode.
const SERVER_EPHEMERAL: [u8; 32] = [0xe5; 32];

/// Reads from a byte slice, then reports end of stream; writes go nowhere. Always
/// ready, so the futures polled over it finish without a runtime.
struct Scripted<'a> {
    input: &'a [u8],
}

impl AsyncRead for Scripted<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let take = buf.remaining().min(self.input.len());
        buf.put_slice(&self.input[..take]);
        self.input = &self.input[take..];
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Scripted<'_> {
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

fn server() -> &'static LocalIdentity {
    static SERVER: OnceLock<LocalIdentity> = OnceLock::new();
    SERVER.get_or_init(|| LocalIdentity::new(&Identity::from_seed(&SERVER_SEED, "fuzz server")))
}

/// Polls a future over `Scripted` to completion; it never waits on anything.
fn finish<F: std::future::Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let mut context = Context::from_waker(Waker::noop());
    for _ in 0..1_000_000 {
        if let Poll::Ready(output) = future.as_mut().poll(&mut context) {
            return output;
        }
    }
    panic!("a future over always-ready I/O did not finish");
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, input)) = data.split_first() else {
        return;
    };
    let mut stream = Scripted { input };
    finish(async {
        let established = if mode & 1 == 0 {
            wire::respond(&mut stream, server()).await
        } else {
            wire::respond_with_fixed_ephemeral_for_testing_only(
                &mut stream,
                server(),
                &SERVER_EPHEMERAL,
            )
            .await
        };
        let Ok(established) = established else {
            return;
        };
        let (reader, writer) = tokio::io::split(stream);
        let (mut rx, mut tx) = established.into_halves(reader, writer);
        let mut body = Vec::new();
        for _ in 0..10_000 {
            let header = match rx.next_record().await {
                Ok(Some(header)) => header,
                Ok(None) | Err(_) => return,
            };
            if header.len > 4096 {
                let reason = echo::too_large(u64::from(header.len), 4096);
                let _ = tx.write_record(RecordType::Error, reason.as_bytes()).await;
                return;
            }
            if rx.read_body(&mut body, 4096).await.is_err() {
                return;
            }
            // The service's own rules (src/echo.rs), as the server applies them.
            let written = match echo::answer(&mut body) {
                Answer::InPlace => tx.write_record(RecordType::Response, &body).await,
                Answer::Converted(reply) => {
                    tx.write_record(RecordType::Response, reply.as_bytes()).await
                }
                not_utf8 => {
                    let reason = not_utf8.error_text().unwrap_or_default();
                    tx.write_record(RecordType::Error, reason.as_bytes()).await
                }
            };
            if written.is_err() {
                return;
            }
            let _ = tx.flush().await;
        }
    });
});
