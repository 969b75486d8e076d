//! Reading ahead: while a server's reply waits for the peer to take it, the
//! receive half takes the peer's next requests from the stream into its input
//! buffer, raw, so that the connection carries both ways at once instead of one
//! way at a time (docs/BENCHMARKS.md, session 14). Decryption stays where it
//! was, in the next [`next_record`](RecvHalf::next_record) or
//! [`read_body`](RecvHalf::read_body).

use tokio::io::{AsyncRead, AsyncReadExt};

use super::RecvHalf;
use crate::wire::error::{Bug, Result};

impl<R: AsyncRead + Unpin> RecvHalf<R> {
    /// Reads what the stream has into the input buffer, without decrypting any of
    /// it, until the buffer holds `capacity` bytes or the stream ends: for a
    /// server whose reply waits for the peer to take it, so that the peer's next
    /// requests keep coming in meanwhile (the connection carries both ways at once)
    /// instead of waiting in the peer's socket behind a full kernel buffer. The
    /// buffer never grows past `capacity` (nor shrinks): a caller that accounts
    /// for it (see [`next_record_within`](Self::next_record_within)) covers
    /// `capacity` before calling. Returns at once, reading nothing, when the
    /// buffer is that full. What was decoded is moved out of the way first, unless
    /// plaintext not yet decoded is left: then it reads behind it.
    ///
    /// Cancel-safe: meant to be dropped once the reply is written; a read either
    /// completes or takes nothing, and what it took is decrypted by the next
    /// [`next_record`](Self::next_record) or [`read_body`](Self::read_body).
    ///
    /// # Errors
    /// [`WireError::Io`](crate::wire::WireError::Io) from the stream, after which the
    /// half refuses further use; [`Bug::UsedAfterFailure`] after an earlier error.
    pub(crate) async fn read_ahead(&mut self, capacity: usize) -> Result<()> {
        if self.failed {
            return Err(Bug::UsedAfterFailure.into());
        }
        // Room is made at the front only where nothing is left to decode: the
        // current plaintext's offsets stay as they are.
        if self.plaintext_start == self.plaintext_end && self.input_start > 0 {
            self.compact();
        }
        if self.input.capacity() < capacity {
            self.input.reserve_exact(capacity - self.input.len());
        }
        while self.input.len() < capacity {
            let room = capacity - self.input.len();
            let read = (&mut self.reader)
                .take(room as u64)
                .read_buf(&mut self.input)
                .await;
            let read = match read {
                Ok(read) => read,
                Err(error) => {
                    self.failed = true;
                    return Err(error.into());
                }
            };
            if read == 0 {
                // The end of the stream, found again by the next read.
                return Ok(());
            }
            self.read_filled = read >= room;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::session_pair;
    use super::super::RecvHalf;
    use crate::wire::record::{RecordHeader, RecordType, DEFAULT_REQUEST_LIMIT};

    /// The next record's header and body, as a server reads a request.
    async fn next_request<R: tokio::io::AsyncRead + Unpin>(
        rx: &mut RecvHalf<R>,
    ) -> (RecordHeader, Vec<u8>) {
        let header = rx.next_record().await.unwrap().unwrap();
        let mut body = Vec::new();
        rx.read_body(&mut body, DEFAULT_REQUEST_LIMIT)
            .await
            .unwrap();
        (header, body)
    }

    /// Reading ahead takes the peer's next records raw, without decrypting them,
    /// up to the capacity asked for and no further; what it took is decoded
    /// afterwards exactly as if it had been read then, a record cut by the
    /// capacity included; a read ahead dropped while it waits loses nothing.
    #[tokio::test]
    async fn reading_ahead_takes_what_comes_up_to_its_capacity_and_loses_nothing() {
        let ((_, mut client_tx), (mut server_rx, _)) = session_pair().await;
        let records: Vec<Vec<u8>> = (0..3u8).map(|n| vec![b'a' + n; 100_000]).collect();
        // The pipe holds 64 KiB: the rest comes as the server reads.
        let sent = records.clone();
        let writer = tokio::spawn(async move {
            for record in &sent {
                client_tx
                    .write_record(RecordType::Request, record)
                    .await
                    .unwrap();
            }
            client_tx.flush().await.unwrap();
            client_tx
        });
        let capacity = 150_000;
        server_rx.read_ahead(capacity).await.unwrap();
        assert_eq!(server_rx.input.len(), capacity);
        // Nothing was decrypted: no message is open, none was counted.
        assert_eq!(server_rx.plaintext_start, server_rx.plaintext_end);
        assert_eq!(server_rx.nonce, 0);
        // Full: asked again, it returns at once.
        server_rx.read_ahead(capacity).await.unwrap();
        assert_eq!(server_rx.input.len(), capacity);

        for (index, record) in records.iter().enumerate() {
            let (header, body) = next_request(&mut server_rx).await;
            assert_eq!(header.len as usize, record.len(), "record {index}");
            assert_eq!(&body, record, "record {index}");
        }
        // Nothing more is coming yet: a read ahead waits, and dropped, costs
        // nothing; the half is still usable.
        {
            let waiting = server_rx.read_ahead(capacity);
            tokio::pin!(waiting);
            let pending = std::future::poll_fn(|cx| {
                std::task::Poll::Ready(std::future::Future::poll(waiting.as_mut(), cx).is_pending())
            })
            .await;
            assert!(pending);
        }
        let mut client_tx = writer.await.unwrap();
        client_tx
            .write_record(RecordType::Request, b"after")
            .await
            .unwrap();
        client_tx.shutdown().await.unwrap();
        let (header, body) = next_request(&mut server_rx).await;
        assert_eq!(header.len, 5);
        assert_eq!(body, b"after");
        assert_eq!(server_rx.next_record().await.unwrap(), None);
    }

    /// A read ahead makes room at the front only where nothing is left to decode:
    /// with records still undecoded in the current message, it reads behind them
    /// and they come out whole; it stops at the end of the stream, which the next
    /// read finds again.
    #[tokio::test]
    async fn reading_ahead_keeps_the_undecoded_records_of_the_current_message() {
        let ((_, mut client_tx), (mut server_rx, _)) = session_pair().await;
        for record in [&b"first"[..], b"second"] {
            client_tx
                .write_record(RecordType::Request, record)
                .await
                .unwrap();
        }
        client_tx.flush().await.unwrap();
        let (header, body) = next_request(&mut server_rx).await;
        assert_eq!(header.len, 5);
        assert_eq!(body, b"first");
        // "second" is decrypted, not yet decoded; the next message is read behind it.
        client_tx
            .write_record(RecordType::Request, b"third")
            .await
            .unwrap();
        // The end of the stream ends the read ahead (found again afterwards).
        client_tx.shutdown().await.unwrap();
        server_rx.read_ahead(4096).await.unwrap();
        for expected in [&b"second"[..], b"third"] {
            let (_, body) = next_request(&mut server_rx).await;
            assert_eq!(body, expected);
        }
        assert_eq!(server_rx.next_record().await.unwrap(), None);
    }
}
