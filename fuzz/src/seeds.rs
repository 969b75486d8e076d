//! Writes seed inputs for the fuzz targets into `corpus/<target>/`: a complete
//! client transcript for `handshake_responder` (fixed ephemeral keys on both sides,
//! so it replays), and valid files for the parsers.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use noise_echo::identity::Identity;
use noise_echo::wire::{self, LocalIdentity, RecordType};
use tokio::io::{AsyncRead, AsyncWrite, DuplexStream, ReadBuf};

const SERVER_SEED: [u8; 32] = [0x5e; 32];
const SERVER_EPHEMERAL: [u8; 32] = [0xe5; 32];
const CLIENT_EPHEMERAL: [u8; 32] = [0xc1; 32];

/// The client's end of the pipe, keeping a copy of everything written.
struct Recording {
    inner: DuplexStream,
    written: Arc<Mutex<Vec<u8>>>,
}

impl AsyncRead for Recording {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Recording {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = result {
            self.written.lock().unwrap().extend_from_slice(&buf[..n]);
        }
        result
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

fn finish<F: std::future::Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let mut context = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut context) {
            return output;
        }
    }
}

fn transcript(requests: &[&[u8]]) -> Vec<u8> {
    let server = LocalIdentity::new(&Identity::from_seed(&SERVER_SEED, "fuzz server"));
    let client = LocalIdentity::new(&Identity::from_seed(&[0xc7; 32], "fuzz client"));
    let (client_end, mut server_end) = tokio::io::duplex(1 << 20);
    let written = Arc::new(Mutex::new(vec![1u8]));
    let mut client_end = Recording {
        inner: client_end,
        written: Arc::clone(&written),
    };
    finish(async {
        let client_side = async {
            let pending = wire::initiate_with_fixed_ephemeral_for_testing_only(
                &mut client_end,
                &client,
                &CLIENT_EPHEMERAL,
            )
            .await
            .unwrap();
            let established = pending.approve(&mut client_end).await.unwrap();
            let (_rx, mut tx) = established.into_split(client_end);
            for request in requests {
                tx.write_record(RecordType::Request, request).await.unwrap();
            }
            tx.shutdown().await.unwrap();
        };
        let server_side = async {
            wire::respond_with_fixed_ephemeral_for_testing_only(
                &mut server_end,
                &server,
                &SERVER_EPHEMERAL,
            )
            .await
            .unwrap();
            server_end
        };
        let (_, _server_end) = tokio::join!(client_side, server_side);
    });
    let bytes = written.lock().unwrap().clone();
    bytes
}

fn main() {
    let write = |target: &str, name: &str, bytes: &[u8]| {
        let dir = std::path::Path::new("corpus").join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), bytes).unwrap();
    };
    write(
        "handshake_responder",
        "session",
        &transcript(&[b"hello", b"", "ünïcode".as_bytes(), &[0xff, 0xfe]]),
    );
    write("handshake_responder", "handshake_only", &transcript(&[]));
    let root = std::path::Path::new("..").join("keys");
    for (target, files) in [
        (
            "private_key",
            &[
                "client_ed25519",
                "host_ed25519_key",
                "client_ed25519.pub",
                "rsa_3072",
                "passphrase_ed25519",
            ][..],
        ),
        ("authorized_keys", &["authorized_keys"][..]),
        ("known_hosts", &["known_hosts", "known_hosts_hashed"][..]),
    ] {
        for file in files {
            write(target, file, &std::fs::read(root.join(file)).unwrap());
        }
    }
    let mut records = vec![0u8];
    for body in [&b"abc"[..], b"", &[0x41; 300]] {
        wire::encode_record(RecordType::Request, body, &mut records).unwrap();
    }
    write("record_decoder", "requests", &records);
    println!("seeds written under corpus/");
}
