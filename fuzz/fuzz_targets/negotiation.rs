//! Protocol v2's negotiation fed arbitrary bytes: the offer and answer codecs, the
//! first-frame recognition rule, and both drivers over a scripted peer. Nothing may
//! panic or stall, and whatever decodes must encode back to the same bytes.
//!
//! The first byte picks the mode (its value modulo 3):
//! - 0: the codecs over the rest: `Offer::decode`, `Answer::decode`,
//!   `FirstFrame::classify`, with their round trips;
//! - 1: the rest is a client's byte stream to `respond_any` (the server), so the
//!   first frame, message 1 and message 3's framing are fuzzed;
//! - 2: the rest is a server's byte stream to `initiate_v2` (the client), so the
//!   answer, its lists and message 2's framing are fuzzed.
//!
//! The drivers run on a current-thread runtime over a stream that reports the end
//! of the script, so every run ends.
#![no_main]

use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use noise_echo::identity::Identity;
use noise_echo::wire::{
    self, Answer, FirstFrame, LocalIdentity, Offer, RekeyPolicy, ResponderSettings, ServerParams,
    Suite,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

fn local() -> &'static LocalIdentity {
    static LOCAL: OnceLock<LocalIdentity> = OnceLock::new();
    LOCAL.get_or_init(|| LocalIdentity::new(&Identity::from_seed(&[0x5e; 32], "fuzz")))
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

fn codecs(input: &[u8]) {
    if let Ok(offer) = Offer::decode(input) {
        assert_eq!(offer.encode(), input, "an offer re-encodes to its bytes");
        assert_eq!(FirstFrame::classify(input), FirstFrame::Offer(offer));
        assert_ne!(input.len(), wire::MSG1_LEN, "no offer is 32 bytes");
    }
    if let Ok(answer) = Answer::decode(input) {
        assert_eq!(answer.encode(), input, "an answer re-encodes to its bytes");
        assert!(input.len() <= wire::MAX_ANSWER_LEN);
    }
    match FirstFrame::classify(input) {
        FirstFrame::V1Message1 => assert_eq!(input.len(), wire::MSG1_LEN),
        FirstFrame::OtherVersion(version) => {
            assert!(input.starts_with(wire::MAGIC));
            assert_ne!(version, 2);
        }
        FirstFrame::Offer(_) | FirstFrame::Garbage(_) => {}
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, input)) = data.split_first() else {
        return;
    };
    if mode % 3 == 0 {
        return codecs(input);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a runtime");
    let mut stream = Scripted {
        input: input.to_vec(),
        at: 0,
    };
    runtime.block_on(async {
        let run = async {
            if mode % 3 == 1 {
                let settings = ResponderSettings::new(
                    vec![Suite::ChaChaPolyBlake2s],
                    true,
                    ServerParams::new(4096, RekeyPolicy::DEFAULT),
                );
                // Nobody can forge message 3 without the ephemeral key of the
                // message 2 this run made: the handshake must fail.
                let result = wire::respond_any(&mut stream, local(), &settings).await;
                assert!(result.is_err(), "a scripted client completed a handshake");
            } else {
                let offer = Offer::new(Suite::AesGcmSha256);
                let result = wire::initiate_v2(&mut stream, local(), &offer).await;
                assert!(result.is_err(), "a scripted server completed message 2");
            }
        };
        tokio::time::timeout(Duration::from_secs(3600), run)
            .await
            .expect("a scripted handshake ended");
    });
});
