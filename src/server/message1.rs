//! Where a client's message 1 ends, for admission: whether it is already waiting
//! when the connection is accepted (a peek), and when the handshake has read it (a
//! watched stream), for a v1 message 1 frame or a v2 offer frame with message 1
//! behind it. The [`HandshakeTable`] evicts handshakes still waiting for message 1
//! first.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::listener::{lock, HandshakeTable};
use crate::wire::{FRAME_HEADER_LEN, MAX_OFFER_LEN, MSG1_LEN};

/// Whether a whole message 1 is already waiting in `socket`'s receive buffer (a
/// non-blocking peek, nothing consumed): a v1 message 1 frame, or a v2 offer frame
/// and the message 1 frame behind it (see [`message1_end`]). An honest client's
/// usually is by the time it is accepted; knowing it at once keeps that client out
/// of the evict-first class even when a busy server polls its task late.
pub(super) fn message1_waiting(socket: &TcpStream) -> bool {
    // One poll of tokio's own peek, with a waker that does nothing: a non-blocking
    // peek into initialised bytes, one system call, and nothing registered that
    // matters (the connection's task registers its own waker when it first reads).
    let mut peeked = [0u8; MAX_MESSAGE1_END];
    let mut buffer = ReadBuf::new(&mut peeked);
    let mut context = Context::from_waker(std::task::Waker::noop());
    match socket.poll_peek(&mut context, &mut buffer) {
        Poll::Ready(Ok(_)) => {
            let filled = buffer.filled();
            message1_end(filled).is_some_and(|end| filled.len() >= end)
        }
        Poll::Ready(Err(_)) | Poll::Pending => false,
    }
}

/// Where message 1 ends in the first bytes of a connection, judged by the first
/// frame's length prefix (docs/PROTOCOL.md, "Recognising the version"): 32 bytes,
/// a v1 message 1 and the end of its frame; 33 to 141 bytes (an offer), the end of
/// the frame after it, v2's message 1. `None` before two bytes are in, and for any
/// other first frame (garbage, which never gets as far as message 1).
pub(super) fn message1_end(first_bytes: &[u8]) -> Option<usize> {
    let [high, low, ..] = *first_bytes else {
        return None;
    };
    match usize::from(u16::from_be_bytes([high, low])) {
        MSG1_LEN => Some(FRAME_HEADER_LEN + MSG1_LEN),
        offer @ MIN_OFFER_LEN..=MAX_OFFER_LEN => Some(2 * FRAME_HEADER_LEN + offer + MSG1_LEN),
        _ => None,
    }
}

/// The stream during the handshake: passes everything through, and tells the
/// [`HandshakeTable`] once a whole message 1 has been read (with v2's offer before
/// it, if that is what the client sent).
pub(super) struct WatchedHandshake<'a, S> {
    /// The connection.
    inner: &'a mut S,
    /// Bytes read so far (counting stops once message 1 is in).
    read: usize,
    /// The first frame's length prefix, as far as it has been read: it tells where
    /// message 1 ends.
    prefix: [u8; FRAME_HEADER_LEN],
    /// The table and this handshake's number in it, until message 1 is in.
    table: Option<(Arc<Mutex<HandshakeTable>>, u64)>,
}

impl<'a, S> WatchedHandshake<'a, S> {
    /// Watches `inner` for handshake `table` (none: nobody to tell).
    pub(super) fn new(inner: &'a mut S, table: Option<(Arc<Mutex<HandshakeTable>>, u64)>) -> Self {
        Self {
            inner,
            read: 0,
            prefix: [0; FRAME_HEADER_LEN],
            table,
        }
    }
}

/// The shortest v2 offer: one byte longer than a v1 message 1, so the two never
/// share a first frame length.
const MIN_OFFER_LEN: usize = MSG1_LEN + 1;

/// The most bytes up to the end of message 1: the longest offer's frame, then
/// message 1's.
const MAX_MESSAGE1_END: usize = 2 * FRAME_HEADER_LEN + MAX_OFFER_LEN + MSG1_LEN;

impl<S: AsyncRead + Unpin> AsyncRead for WatchedHandshake<'_, S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut *self.inner).poll_read(context, buf);
        if let (Poll::Ready(Ok(())), true) = (&polled, self.table.is_some()) {
            let new = &buf.filled()[before..];
            // Keep the bytes of the length prefix among those just read.
            let this = &mut *self;
            for (at, byte) in (this.read..FRAME_HEADER_LEN).zip(new) {
                this.prefix[at] = *byte;
            }
            this.read += new.len();
            let prefix = &this.prefix[..this.read.min(FRAME_HEADER_LEN)];
            if message1_end(prefix).is_some_and(|end| this.read >= end) {
                if let Some((table, id)) = this.table.take() {
                    lock(&table).message1_received(id);
                }
            }
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WatchedHandshake<'_, S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.inner).poll_write(context, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.inner).poll_flush(context)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.inner).poll_shutdown(context)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::listener::HandshakeStage;

    /// A v1 message 1 frame; a v2 offer frame and message 1 behind it; a TLS
    /// ClientHello's first bytes.
    fn first_writes() -> (Vec<u8>, Vec<u8>, Vec<u8>) {
        use crate::wire::{encode_frame, Offer, Suite};
        let mut v1 = Vec::new();
        encode_frame(&[9; MSG1_LEN], &mut v1).unwrap();
        let mut v2 = Vec::new();
        encode_frame(&Offer::new(Suite::ChaChaPolyBlake2s).encode(), &mut v2).unwrap();
        encode_frame(&[9; MSG1_LEN], &mut v2).unwrap();
        let tls = [&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01][..], &[0; 200]].concat();
        (v1, v2, tls)
    }

    #[test]
    fn message_1_ends_after_the_v1_frame_or_after_the_offer_and_its_frame() {
        let (v1, v2, tls) = first_writes();
        assert_eq!(message1_end(&v1), Some(34));
        // ChaChaPoly's offer is 46 bytes: two frames, 2 + 46 + 2 + 32.
        assert_eq!(message1_end(&v2), Some(82));
        assert_eq!(message1_end(&v2), Some(v2.len()));
        assert_eq!(message1_end(&[0, 33]), Some(2 + 33 + 2 + 32));
        assert_eq!(message1_end(&[0, 141]), Some(MAX_MESSAGE1_END));
        for never in [
            &tls[..],
            &[0, 142],
            &[0, 31],
            &[0, 0],
            b"SSH-2.0-x",
            b"GET /",
        ] {
            assert_eq!(message1_end(never), None, "{never:?}");
        }
        assert_eq!(message1_end(&[0]), None);
        assert_eq!(message1_end(&[]), None);
    }

    /// Writes `bytes` from a client and returns the accepted socket once they are
    /// all in its receive buffer.
    async fn accepted_with(bytes: &[u8]) -> (TcpStream, TcpStream) {
        use tokio::io::AsyncWriteExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (client, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
        let (mut client, (socket, _)) = (client.unwrap(), accepted.unwrap());
        client.write_all(bytes).await.unwrap();
        let mut peeked = vec![0; bytes.len() + 1];
        // Bounded: each turn waits for more bytes to arrive, of a few hundred.
        for _ in 0..1000 {
            socket.readable().await.unwrap();
            if socket.peek(&mut peeked).await.unwrap() >= bytes.len() {
                break;
            }
            tokio::task::yield_now().await;
        }
        (socket, client)
    }

    #[tokio::test]
    async fn a_waiting_message_1_is_seen_for_either_version() {
        let (v1, v2, tls) = first_writes();
        let offer_alone = &v2[..v2.len() - FRAME_HEADER_LEN - MSG1_LEN];
        for (bytes, waiting) in [
            (&v1[..], true),
            (&v2[..], true),
            (offer_alone, false),
            (&v2[..v2.len() - 1], false),
            (&v1[..v1.len() - 1], false),
            (&tls[..], false),
        ] {
            let (socket, _client) = accepted_with(bytes).await;
            assert_eq!(message1_waiting(&socket), waiting, "{bytes:?}");
        }
    }

    #[tokio::test]
    async fn the_watched_handshake_tells_the_table_when_message_1_is_read() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (v1, v2, tls) = first_writes();
        for (bytes, end) in [(&v1, Some(34)), (&v2, Some(82)), (&tls, None)] {
            let table = Arc::new(Mutex::new(HandshakeTable::new(4)));
            let (id, _evicted, _) = lock(&table).enter(HandshakeStage::AwaitingMessage1);
            let (mut client, mut server) = tokio::io::duplex(1024);
            client.write_all(bytes).await.unwrap();
            let mut watched = WatchedHandshake {
                inner: &mut server,
                read: 0,
                prefix: [0; FRAME_HEADER_LEN],
                table: Some((Arc::clone(&table), id)),
            };
            // A byte at a time: the prefix split across reads is still understood.
            let mut byte = [0u8; 1];
            for read in 1..=bytes.len() {
                watched.read_exact(&mut byte).await.unwrap();
                let past = lock(&table).past_message1(id);
                assert_eq!(
                    past,
                    end.is_some_and(|end| read >= end),
                    "{read} of {bytes:?}"
                );
            }
        }
    }
}
