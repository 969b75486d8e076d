//! Records that are already here: a receiver answering a pipelined burst takes
//! each whole record (header and body) from the receive half's buffer without a
//! future, an await or a copy per record, and falls back to
//! [`next_record`](RecvHalf::next_record) for anything else (a record cut short
//! by the end of what was read, a body over its limit, REKEY, the end of the
//! stream).
//!
//! Session 7 measured the server's echo loop spending about 270 of its 1,200
//! instructions per pipelined request making and dropping the futures of
//! `next_record`, `read_body` and `write_record`, where a TLS server parses
//! whole records from its buffer (docs/BENCHMARKS.md, "Session 8: pipeline").

use tokio::io::AsyncRead;

use super::{begin, RecvHalf};
use crate::wire::error::Result;
use crate::wire::record::{RecordDecoder, RecordHeader};

/// A whole record in a [`RecvHalf`]'s buffer, found by
/// [`buffered_record`](RecvHalf::buffered_record): taken only by
/// [`consume`](Self::consume); dropped without it, the record stays the next one
/// (for [`next_record`](RecvHalf::next_record) or the next `buffered_record`).
#[derive(Debug)]
#[must_use = "a record is taken only by `consume`"]
pub struct BufferedRecord<'a> {
    /// The record's type and body length.
    header: RecordHeader,
    /// The body, decrypted in the half's input buffer.
    body: &'a [u8],
    /// The half's read position in the current plaintext, moved past the record
    /// by `consume`.
    position: &'a mut usize,
    /// Where the record ends in the plaintext.
    end: usize,
}

impl<'a> BufferedRecord<'a> {
    /// The record's type and body length.
    #[inline]
    pub fn header(&self) -> RecordHeader {
        self.header
    }

    /// The record's body, whole.
    #[inline]
    pub fn body(&self) -> &'a [u8] {
        self.body
    }

    /// Takes the record: the half's next record is the one after it.
    #[inline]
    pub fn consume(self) {
        *self.position = self.end;
    }
}

/// The rest of the current record's body, all of it in a [`RecvHalf`]'s buffer,
/// found by [`buffered_body`](RecvHalf::buffered_body): taken only by
/// [`consume`](Self::consume), as a [`BufferedRecord`].
#[derive(Debug)]
#[must_use = "a body is taken only by `consume`"]
pub struct BufferedBody<'a> {
    /// The rest of the body, decrypted in the half's input buffer.
    body: &'a [u8],
    /// The half's read position in the current plaintext.
    position: &'a mut usize,
    /// The half's decoder, inside the body until `consume` passes it (`None` for
    /// an empty body, which it has passed already).
    decoder: Option<&'a mut RecordDecoder>,
}

impl<'a> BufferedBody<'a> {
    /// The rest of the body, whole.
    pub fn body(&self) -> &'a [u8] {
        self.body
    }

    /// Takes the body: the half is at the next record.
    pub fn consume(self) {
        *self.position += self.body.len();
        if let Some(decoder) = self.decoder {
            // Inside a body, decoding cannot fail: it passes `body.len()` bytes,
            // all that was left of it.
            let passed = decoder.decode(self.body).map(|(_, used)| used);
            debug_assert_eq!(passed, Ok(self.body.len()));
        }
    }
}

impl<R: AsyncRead + Unpin> RecvHalf<R> {
    /// After [`next_record`](Self::next_record) returned a header: the rest of its
    /// body, if all of it is already here (in the current transport message's
    /// plaintext). `None` otherwise, with nothing taken: then
    /// [`read_body`](Self::read_body). An empty body is always here. A server
    /// answers a small request at once with it, with no future for the body or the
    /// reply.
    ///
    /// # Errors
    /// [`Bug::UsedAfterFailure`](crate::wire::Bug::UsedAfterFailure) after an
    /// earlier error.
    pub fn buffered_body(&mut self) -> Result<Option<BufferedBody<'_>>> {
        begin(&mut self.failed)?;
        self.failed = false;
        let available = self.plaintext_end - self.plaintext_start;
        let (rest, decoder) = match self.decoder.body_in_progress() {
            None => (0, None),
            Some((_, remaining)) if remaining as usize <= available => {
                (remaining as usize, Some(&mut self.decoder))
            }
            Some(_) => return Ok(None),
        };
        let start = self.plaintext_start;
        Ok(Some(BufferedBody {
            body: &self.input[start..start + rest],
            position: &mut self.plaintext_start,
            decoder,
        }))
    }

    /// The next record, if all of it (header and body) was read and can be decrypted
    /// without waiting for the network: it lies in the current transport message's
    /// plaintext, or the next message is buffered whole and it lies there (that
    /// message is then decrypted). `None` otherwise, with no record taken: a record
    /// still being received, one cut short by a message's end, REKEY and the end of
    /// the stream are for [`next_record`](Self::next_record), as is the rest of a
    /// body whose header it returned.
    ///
    /// The body is not checked against any limit: a receiver with one checks the
    /// header before it [`consume`](BufferedRecord::consume)s the record, and leaves
    /// one over its limit to `next_record` and
    /// [`read_body`](Self::read_body), which refuse it.
    ///
    /// # Errors
    /// The errors of decrypting and decoding the buffered input that
    /// [`next_record`](Self::next_record) would report for it:
    /// [`Violation::TransportDecrypt`](crate::wire::Violation::TransportDecrypt),
    /// [`Violation::EmptyTransportMessage`](crate::wire::Violation::EmptyTransportMessage),
    /// [`Violation::ZeroLengthFrame`](crate::wire::Violation::ZeroLengthFrame),
    /// [`Violation::UnknownRecordType`](crate::wire::Violation::UnknownRecordType), and
    /// in protocol v2 [`Violation::MissedRekey`](crate::wire::Violation::MissedRekey).
    /// Any error is fatal, as for `next_record`.
    #[inline]
    pub fn buffered_record(&mut self) -> Result<Option<BufferedRecord<'_>>> {
        begin(&mut self.failed)?;
        if self.plaintext_start == self.plaintext_end && self.open_buffered_message()?.is_some() {
            self.failed = false;
            return Ok(None);
        }
        let plaintext = &self.input[self.plaintext_start..self.plaintext_end];
        let found = self.decoder.whole_record(plaintext)?;
        self.failed = false;
        let Some((header, whole)) = found else {
            return Ok(None);
        };
        let end = self.plaintext_start + whole;
        Ok(Some(BufferedRecord {
            header,
            body: &self.input[end - header.len as usize..end],
            position: &mut self.plaintext_start,
            end,
        }))
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{DuplexStream, ReadHalf, WriteHalf};

    use crate::wire::handshake::tests::handshake_pair;
    use crate::wire::record::{RecordType, DEFAULT_REQUEST_LIMIT, MIN_RESPONSE_LIMIT};
    use crate::wire::session::{RecvHalf, Reply, SendHalf, MAX_PLAINTEXT_LEN};

    type Halves = (
        RecvHalf<ReadHalf<DuplexStream>>,
        SendHalf<WriteHalf<DuplexStream>>,
    );

    async fn session_pair() -> (Halves, Halves) {
        let (client, client_io, server, server_io) = handshake_pair().await;
        (client.into_split(client_io), server.into_split(server_io))
    }

    #[tokio::test]
    async fn whole_records_already_here_are_taken_and_the_rest_is_left_to_next_record() {
        let ((_client_rx, mut client_tx), (mut server_rx, _server_tx)) = session_pair().await;
        let large = vec![b'x'; 70_000];
        // Written from another task: the pipe holds less than all of it.
        let writer = tokio::spawn({
            let large = large.clone();
            async move {
                for body in [&b"a"[..], b"bb", &large, b"c"] {
                    client_tx
                        .write_record(RecordType::Request, body)
                        .await
                        .unwrap();
                }
                client_tx.shutdown().await.unwrap();
            }
        });

        // Nothing has been read from the stream yet: nothing is here.
        assert!(server_rx.buffered_record().unwrap().is_none());
        let header = server_rx.next_record().await.unwrap().unwrap();
        assert_eq!(header.len, 1);
        let mut body = Vec::new();
        server_rx
            .read_body(&mut body, DEFAULT_REQUEST_LIMIT)
            .await
            .unwrap();
        assert_eq!(body, b"a");

        // Dropped without `consume`, a record stays the next one.
        let record = server_rx.buffered_record().unwrap().unwrap();
        assert_eq!(
            (record.header().record_type, record.body()),
            (RecordType::Request, &b"bb"[..])
        );
        drop(record);
        let record = server_rx.buffered_record().unwrap().unwrap();
        assert_eq!(record.body(), b"bb");
        record.consume();

        // The large record runs past this transport message: not here whole.
        assert!(server_rx.buffered_record().unwrap().is_none());
        let header = server_rx.next_record().await.unwrap().unwrap();
        assert_eq!(header.len, 70_000);
        server_rx
            .read_body(&mut body, DEFAULT_REQUEST_LIMIT)
            .await
            .unwrap();
        assert_eq!(body, large);

        // The last one is in the last message, read with the large body's end.
        let record = server_rx.buffered_record().unwrap().unwrap();
        assert_eq!(record.body(), b"c");
        record.consume();
        assert!(server_rx.buffered_record().unwrap().is_none());
        assert_eq!(server_rx.next_record().await.unwrap(), None);
        writer.await.unwrap();
    }

    #[tokio::test]
    async fn queued_records_arrive_as_written_ones_do() {
        let ((mut client_rx, _client_tx), (_server_rx, server_tx)) = session_pair().await;
        // Enough small records to fill several transport messages, so that some
        // are queued where the open message has no room left for them.
        let bodies: Vec<Vec<u8>> = (0..12_000)
            .map(|index| format!("reply {index}").into_bytes())
            .collect();
        let whole_message = vec![b'y'; MAX_PLAINTEXT_LEN];
        // Written from another task: the pipe holds less than all of it.
        let writer = tokio::spawn({
            let (bodies, whole_message) = (bodies.clone(), whole_message.clone());
            let mut server_tx = server_tx;
            async move {
                for (index, body) in bodies.iter().enumerate() {
                    let queued = if index % 2 == 0 {
                        server_tx.queue_record(RecordType::Response, body).unwrap()
                    } else {
                        // Declined: nothing is queued, and the next try is as if it never was.
                        let declined = server_tx
                            .queue_record_mapped(RecordType::Response, b"discarded", |_| false)
                            .unwrap();
                        assert!(!declined);
                        server_tx
                            .queue_record_mapped(RecordType::Response, body, |out| {
                                assert_eq!(out, &body[..], "given the body");
                                out.make_ascii_uppercase();
                                true
                            })
                            .unwrap()
                    };
                    assert!(queued, "record {index} needs no write");
                }
                // A record that does not fit in one transport message is for write_record.
                assert!(!server_tx
                    .queue_record(RecordType::Response, &whole_message)
                    .unwrap());
                server_tx
                    .write_record(RecordType::Response, &whole_message)
                    .await
                    .unwrap();
                server_tx.shutdown().await.unwrap();
            }
        });

        for (index, body) in bodies.iter().enumerate() {
            let reply = client_rx.read_reply(MIN_RESPONSE_LIMIT).await.unwrap();
            let expected = match index % 2 {
                0 => body.clone(),
                _ => body.to_ascii_uppercase(),
            };
            assert_eq!(reply, Some(Reply::Response(expected)), "reply {index}");
        }
        let reply = client_rx.read_reply(MIN_RESPONSE_LIMIT).await.unwrap();
        assert_eq!(reply, Some(Reply::Response(whole_message)));
        assert_eq!(
            client_rx.read_reply(MIN_RESPONSE_LIMIT).await.unwrap(),
            None
        );
        writer.await.unwrap();
    }

    #[tokio::test]
    async fn a_side_cannot_queue_the_other_sides_records() {
        let ((_client_rx, _client_tx), (_server_rx, mut server_tx)) = session_pair().await;
        assert!(server_tx.queue_record(RecordType::Request, b"x").is_err());
    }
}
