//! The echo loop's fast path: the requests of a pipelined burst that are already
//! here whole are answered in one synchronous pass, and so is a request whose
//! header the usual steps have just read if its body came with it (every
//! unpipelined small request), each uppercased straight from the receive buffer
//! into the send buffer, with no future, await or copy per request. Whatever needs more (a request cut short by what was read, one whose
//! memory must be reserved or that is over the limit, a body that is not ASCII, a
//! reply that needs a write) is left where it is, for the loop's usual steps.
//!
//! It changes nothing a client can see: the same replies, in the same order, with
//! the same stops between them. Shutdown and reloads are looked at once per read
//! from the socket, as for the requests the usual steps take from the buffer; the
//! memory rules are those of [`InFlight::covers`].

use tokio::io::{AsyncRead, AsyncWrite};

use super::InFlight;
use crate::server::connection::{Handler, Summary};
use crate::server::resources;
use crate::server::stats::ClockNanos;
use crate::wire::{RecordType, RecvHalf, SendHalf, WireError, RECORD_HEADER_LEN};

impl Handler {
    /// Answers every request already buffered whole that the fast path can (see the
    /// module's doc), queueing the replies; returns how many it answered. The
    /// caller flushes them, as after any request, when no more input is expected
    /// without waiting.
    ///
    /// # Errors
    /// What [`RecvHalf::buffered_record`] and [`SendHalf::queue_record_with`] report
    /// (a message that does not decrypt, an unknown record type): fatal, as from
    /// the usual steps.
    pub(super) fn answer_buffered<R, W>(
        &self,
        rx: &mut RecvHalf<R>,
        tx: &mut SendHalf<W>,
        summary: &mut Summary,
        in_flight: &mut InFlight,
    ) -> Result<u64, WireError>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let max_request = self.shared.config.max_request;
        let mut answered = 0;
        let mut bytes = 0;
        while let Some(request) = rx.buffered_record()? {
            // Only REQUEST can arrive here: the decoder refuses the server's own
            // types. The rest are left for the usual steps, which refuse a request
            // over the limit, reserve memory, or answer other text.
            let len = request.header().len;
            if len > max_request || !in_flight.covers(resources::worst_case(len)) {
                break;
            }
            // ASCII is answered here, uppercased as it is copied into the reply;
            // other text (`crate::echo::answer`) is for the usual steps, which read
            // it again from the receive buffer.
            let queued = tx.queue_record_mapped(
                RecordType::Response,
                request.body(),
                crate::echo::uppercase_ascii,
            )?;
            if !queued {
                break;
            }
            request.consume();
            answered += 1;
            bytes += u64::from(len);
            // Per request: the next one's memory check counts this reply.
            in_flight.unflushed += RECORD_HEADER_LEN as u64 + u64::from(len);
        }
        count(summary, in_flight, answered, bytes);
        Ok(answered)
    }

    /// After the usual steps read a request's header (within the limit and the
    /// free share): answers it at once, as [`answer_buffered`]
    /// does, if its body is all here and ASCII; `false`, with nothing taken,
    /// otherwise (then the usual steps read and answer it). The caller flushes.
    ///
    /// # Errors
    /// As [`answer_buffered`].
    ///
    /// [`answer_buffered`]: Handler::answer_buffered
    pub(super) fn answer_here<R, W>(
        &self,
        rx: &mut RecvHalf<R>,
        tx: &mut SendHalf<W>,
        summary: &mut Summary,
        in_flight: &mut InFlight,
    ) -> Result<bool, WireError>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let Some(request) = rx.buffered_body()? else {
            return Ok(false);
        };
        let body = request.body();
        if !tx.queue_record_mapped(RecordType::Response, body, crate::echo::uppercase_ascii)? {
            return Ok(false);
        }
        let bytes = body.len() as u64;
        request.consume();
        in_flight.unflushed += RECORD_HEADER_LEN as u64 + bytes;
        count(summary, in_flight, 1, bytes);
        Ok(true)
    }
}

/// Counts `answered` ASCII requests of `bytes` in all (each answered with as many)
/// in the session's summary and batch; starts the batch's clock if they are its
/// first.
fn count(summary: &mut Summary, in_flight: &mut InFlight, answered: u64, bytes: u64) {
    if answered == 0 {
        return;
    }
    if summary.latency_clock.is_none() {
        summary.latency_clock = Some(ClockNanos::now());
    }
    summary.requests += answered;
    summary.bytes_in += bytes;
    summary.bytes_out += bytes;
    let batch = &mut in_flight.batch;
    batch.requests += answered;
    batch.bytes_in += bytes;
    batch.bytes_out += bytes;
}

#[cfg(test)]
mod tests {
    use std::pin::Pin;
    use std::sync::atomic::AtomicU64;
    use std::sync::{Arc, Mutex};
    use std::task::{Context, Poll};

    use super::*;
    use crate::identity::Identity;
    use crate::server::connection::test_handler;
    use crate::server::echo_loop::EchoEnd;
    use crate::wire::session_tests::v2_established;
    use crate::wire::{RekeyPolicy, Reply, Suite, DEFAULT_REQUEST_LIMIT, MAX_PLAINTEXT_LEN};

    /// Keeps what is written, and the size of each write, where the test can see it.
    #[derive(Clone, Default)]
    struct Recorder(Arc<Mutex<(Vec<u8>, Vec<usize>)>>);

    impl AsyncWrite for Recorder {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            let mut record = self.0.lock().unwrap();
            record.0.extend_from_slice(buf);
            record.1.push(buf.len());
            Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    /// Reads back what a [`Recorder`] kept, from the start; the end of it is the
    /// end of the stream.
    struct Replay(Recorder, usize);

    impl AsyncRead for Replay {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> Poll<std::io::Result<()>> {
            let record = Arc::clone(&self.0 .0);
            let bytes = &record.lock().unwrap().0;
            let rest = &bytes[self.1.min(bytes.len())..];
            let taken = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..taken]);
            self.1 += taken;
            Poll::Ready(Ok(()))
        }
    }

    /// Gives its bytes as fast as the reader takes them, logging the room each read
    /// had and what it got, then waits forever: a client that sent its request and
    /// waits for the reply.
    struct ThenWait {
        bytes: Vec<u8>,
        at: usize,
        reads: Arc<Mutex<Vec<(usize, usize)>>>,
    }

    impl AsyncRead for ThenWait {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> Poll<std::io::Result<()>> {
            if self.at == self.bytes.len() {
                return Poll::Pending;
            }
            let room = buf.remaining();
            let taken = room.min(self.bytes.len() - self.at);
            buf.put_slice(&self.bytes[self.at..self.at + taken]);
            self.at += taken;
            self.reads.lock().unwrap().push((room, taken));
            Poll::Ready(Ok(()))
        }
    }

    /// A request whose read happened to fill all the room it had (so the server
    /// expects more and holds the reply) is answered before the server waits for
    /// the next one: over a range of request sizes, some of which fill the first
    /// read exactly, the reply is always written while the client waits. Time is
    /// paused: a held reply would show as none written when the test's second runs
    /// out (the idle timeout is far longer).
    #[tokio::test(start_paused = true)]
    async fn a_reply_held_for_a_full_read_goes_out_before_the_server_waits() {
        let mut filled_exactly = 0;
        for len in 200..=320 {
            let (client, server) = v2_established(Suite::AesGcmSha256, RekeyPolicy::DEFAULT);
            let (sent, replies) = (Recorder::default(), Recorder::default());
            let (mut client_rx, mut client_tx) =
                client.into_halves(Replay(replies.clone(), 0), sent.clone());
            let request = vec![b'a'; len];
            client_tx
                .write_record(RecordType::Request, &request)
                .await
                .unwrap();
            client_tx.flush().await.unwrap();
            let reads = Arc::default();
            let reader = ThenWait {
                bytes: std::mem::take(&mut sent.0.lock().unwrap().0),
                at: 0,
                reads: Arc::clone(&reads),
            };

            let (_server, mut handler) = test_handler("127.0.0.1:1".parse().unwrap());
            let client_key = Identity::from_seed(&[1; 32], "client").public_key();
            let key = handler.shared.sessions_per_key.enter(&client_key).unwrap();
            let (mut rx, mut tx) = server.into_halves(reader, replies.clone());
            let (mut summary, moved) = (Summary::default(), AtomicU64::new(0));
            let echo = handler.echo(&mut rx, &mut tx, &key, &mut summary, &moved);
            let waited = tokio::time::timeout(std::time::Duration::from_secs(1), echo).await;
            assert!(
                waited.is_err(),
                "the session ended: {:?}",
                waited.map(|_| ())
            );

            let reply = client_rx.read_reply(DEFAULT_REQUEST_LIMIT).await.unwrap();
            let expected = request.to_ascii_uppercase();
            assert_eq!(
                reply,
                Some(Reply::Response(expected)),
                "request of {len} bytes"
            );
            let reads = reads.lock().unwrap();
            if reads.iter().any(|&(room, taken)| taken == room) {
                filled_exactly += 1;
            }
        }
        assert!(
            filled_exactly > 0,
            "no request filled a read's room exactly"
        );
    }

    /// A pipelined burst that the server takes in reads that each fill its buffer
    /// (the kernel holds more) is answered in writes of a batch each, not one per
    /// read that happens to end at a message boundary; every reply is right and in
    /// order. The client flushes every 64 requests, as the benchmark's load
    /// generator does, so most reads end on a boundary.
    #[tokio::test]
    async fn a_burst_in_full_reads_is_answered_in_batched_writes() {
        const REQUESTS: usize = 20_000;
        let (client, server) = v2_established(Suite::AesGcmSha256, RekeyPolicy::DEFAULT);
        let (sent, replies) = (Recorder::default(), Recorder::default());
        let (mut client_rx, mut client_tx) =
            client.into_halves(Replay(replies.clone(), 0), sent.clone());
        let request = |index: usize| format!("request {index:08}");
        for index in 0..REQUESTS {
            client_tx
                .write_record(RecordType::Request, request(index).as_bytes())
                .await
                .unwrap();
            if index % 64 == 63 {
                client_tx.flush().await.unwrap();
            }
        }
        client_tx.shutdown().await.unwrap();
        let requests = std::mem::take(&mut sent.0.lock().unwrap().0);

        let (_server, mut handler) = test_handler("127.0.0.1:1".parse().unwrap());
        let client_key = Identity::from_seed(&[1; 32], "client").public_key();
        let key = handler.shared.sessions_per_key.enter(&client_key).unwrap();
        let (mut rx, mut tx) = server.into_halves(&requests[..], replies.clone());
        let (mut summary, moved) = (Summary::default(), AtomicU64::new(0));
        let end = handler
            .echo(&mut rx, &mut tx, &key, &mut summary, &moved)
            .await
            .unwrap();
        assert!(matches!(end, EchoEnd::Done));
        tx.flush().await.unwrap();
        assert_eq!(summary.requests, REQUESTS as u64);

        let writes = replies.0.lock().unwrap().1.clone();
        let (_, full) = writes.split_last().unwrap();
        assert!(
            full.iter().all(|&size| size >= MAX_PLAINTEXT_LEN),
            "{} writes: {writes:?}",
            writes.len()
        );
        for index in 0..REQUESTS {
            let reply = client_rx.read_reply(DEFAULT_REQUEST_LIMIT).await.unwrap();
            let expected = request(index).to_ascii_uppercase().into_bytes();
            assert_eq!(reply, Some(Reply::Response(expected)), "reply {index}");
        }
        assert_eq!(
            client_rx.read_reply(DEFAULT_REQUEST_LIMIT).await.unwrap(),
            None
        );
    }
}
