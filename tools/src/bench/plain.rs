//! The plaintext baseline: the same record layer (`type | u32 len | body`, wire-v1
//! section 5) straight over TCP, with no framing, no handshake and no encryption.
//!
//! It exists only so the benchmark can say how much Noise costs: the server here is
//! the best plain tokio echo we can write with the same semantics as the real one
//! (full Unicode uppercase, ERROR for invalid UTF-8, replies batched while more
//! requests are buffered, TCP_NODELAY), so the ratio is honest. It is reachable only
//! from `examples/plain_echo.rs` and the benchmark's tests, never from `serve`: it
//! authenticates nobody.
//!
//! The echo loop ([`echo_records`]) and the client halves ([`PlainSender`],
//! [`PlainReceiver`]) work over any byte stream, so another secure channel (the TLS
//! peer of the `noise-echo-tls` package) carries exactly these records with exactly
//! this code, and only the channel differs.

use std::future::Future;
use std::io;
use std::task::Poll;

use tokio::io::{AsyncBufRead, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};

use noise_echo::wire::{RecordHeader, RecordType, DEFAULT_REQUEST_LIMIT};

/// Size of a record header: type byte and `u32` length.
const HEADER_LEN: usize = 5;
/// The client's read buffer, and the most reply bytes we queue before writing them.
const BUFFER: usize = 64 * 1024;
/// Buffers larger than this are released while a connection waits.
const IDLE_BUFFER: usize = 2048;
/// The least a read asks for: a small request in one read, little held while idle.
const MIN_READ: usize = 256;
/// The most input a session reads ahead, unanswered, while its replies wait for
/// the client to take them: the Noise server's figure (`READ_AHEAD` in its echo
/// loop), so that both carry each connection both ways at once.
const READ_AHEAD: usize = 1024 * 1024;

/// Serves the plaintext echo on `listener` until `shutdown` completes. Each
/// connection is one task; connections still open at shutdown are dropped.
///
/// # Errors
/// Only if accepting fails for good.
pub async fn serve(listener: TcpListener, shutdown: impl Future) -> io::Result<()> {
    let accept = async {
        loop {
            let (socket, _) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(error) if is_transient(&error) => {
                    // Out of descriptors or an aborted connection: wait, keep serving.
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    continue;
                }
                Err(error) => return Err(error),
            };
            tokio::spawn(async move {
                let _ = serve_connection(socket).await;
            });
        }
    };
    tokio::select! {
        result = accept => result,
        _ = shutdown => Ok(()),
    }
}

fn is_transient(error: &io::Error) -> bool {
    !matches!(
        error.kind(),
        io::ErrorKind::InvalidInput | io::ErrorKind::PermissionDenied
    )
}

/// One connection over bare TCP: [`echo_records`] on the socket, which buffers
/// nothing of its own.
async fn serve_connection(mut socket: TcpStream) -> io::Result<()> {
    socket.set_nodelay(true)?;
    echo_records(&mut socket, |_| false).await
}

/// The server's side of one session over `stream`: the same loop as the Noise
/// server's, minus the crypto. The input buffer grows only while a request is in
/// flight and is released when the connection waits with nothing buffered, as the
/// Noise session does, so idle connections cost a few hundred bytes (plus what the
/// stream itself keeps).
///
/// `buffered` says whether `stream` already holds more input that a read would
/// return without waiting (a TLS stream's decrypted records): then the replies so
/// far are kept to be written with the next ones, in one write (for TLS, in full
/// records), and the buffers are kept for the burst. Bare TCP holds nothing:
/// `|_| false`.
///
/// # Errors
/// When reading or writing `stream` fails. An unknown record type ends the session
/// without an error; an oversized request gets an ERROR, then the end.
pub async fn echo_records<S>(
    stream: &mut S,
    mut buffered: impl FnMut(&mut S) -> bool,
) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut input: Vec<u8> = Vec::new();
    let mut out = Vec::new();
    let mut burst = false;
    loop {
        // Answer every whole request already here, then write the replies at once.
        let mut start = 0;
        let mut needed = HEADER_LEN;
        while let Some(header) = input.get(start..start + HEADER_LEN) {
            if header[0] != 0x01 {
                return Ok(()); // unknown record type: close at once
            }
            let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]);
            if len > DEFAULT_REQUEST_LIMIT {
                push_record(&mut out, RecordType::Error, b"request too large");
                stream.write_all(&out).await?;
                stream.flush().await?;
                return stream.shutdown().await;
            }
            let end = start + HEADER_LEN + len as usize;
            let Some(body) = input.get_mut(start + HEADER_LEN..end) else {
                needed = end - input.len();
                break;
            };
            // The Noise server's rules (noise_echo::echo): ASCII in place, the rest of Unicode after.
            match noise_echo::echo::answer(body) {
                noise_echo::echo::Answer::InPlace => {
                    push_record(
                        &mut out,
                        RecordType::Response,
                        &input[start + HEADER_LEN..end],
                    );
                }
                noise_echo::echo::Answer::Converted(upper) => {
                    push_record(&mut out, RecordType::Response, upper.as_bytes());
                }
                noise_echo::echo::Answer::NotUtf8 { .. } => push_record(
                    &mut out,
                    RecordType::Error,
                    noise_echo::echo::NOT_UTF8.as_bytes(),
                ),
            }
            start = end;
            if out.len() >= BUFFER {
                write_reading_ahead(stream, &out, false, &mut input, start).await?;
                out.clear();
            }
        }
        input.drain(..start);
        let more_here = buffered(stream);
        if !out.is_empty() && !more_here {
            // The flush is a no-op on TCP; TLS may hold the last record until flushed.
            write_reading_ahead(stream, &out, true, &mut input, 0).await?;
            out.clear();
        }
        // About to wait: compact, and release big buffers unless the last read
        // filled the buffer or more input is already here (a pipelined burst: more
        // is surely coming, and reading it in small pieces would cost a system call,
        // or a reply write, per few records).
        burst = burst || more_here;
        if input.is_empty() && input.capacity() > IDLE_BUFFER && !burst {
            input = Vec::new();
        }
        if out.capacity() > IDLE_BUFFER && !burst {
            out = Vec::new();
        }
        input.reserve(needed.max(if burst { BUFFER } else { MIN_READ }));
        let room = input.capacity() - input.len();
        let read = stream.read_buf(&mut input).await?;
        if read == 0 {
            break;
        }
        burst = read == room;
    }
    if !out.is_empty() {
        stream.write_all(&out).await?;
    }
    stream.flush().await?;
    stream.shutdown().await
}

/// Writes `out`, and flushes if `flush`; while that waits for the client to take
/// the bytes, reads the client's next requests onto the end of `input`, up to
/// [`READ_AHEAD`] past `start` (where the unanswered part begins), as the Noise
/// server does (`write_reading_ahead` in its echo loop). That server reads ahead
/// only while a long reply waits; this loop, whose writes hold a batch of replies
/// of any size, does whenever one waits, which gives the TLS peer at least as much
/// (its pipelined writes: 7.90 M and 7.87 M requests/s without and with). A read
/// that finds the end of the stream stops the reading; the loop's next read
/// finds it again.
async fn write_reading_ahead<S>(
    stream: &mut S,
    out: &[u8],
    flush: bool,
    input: &mut Vec<u8>,
    start: usize,
) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut written = 0;
    let mut flushed = !flush;
    let mut reading = true;
    std::future::poll_fn(|cx| {
        while written < out.len() {
            match std::pin::Pin::new(&mut *stream).poll_write(cx, &out[written..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => written += n,
                Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                Poll::Pending => break,
            }
        }
        if written == out.len() && !flushed {
            match std::pin::Pin::new(&mut *stream).poll_flush(cx) {
                Poll::Ready(Ok(())) => flushed = true,
                Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                Poll::Pending => {}
            }
        }
        if written == out.len() && flushed {
            return Poll::Ready(Ok(()));
        }
        while reading && input.len() - start < READ_AHEAD {
            input.reserve(BUFFER.min(READ_AHEAD - (input.len() - start)));
            // A read future polled once and dropped: it reads or takes nothing.
            match std::pin::pin!(stream.read_buf(&mut *input)).poll(cx) {
                Poll::Ready(Ok(0)) => reading = false,
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                Poll::Pending => break,
            }
        }
        Poll::Pending
    })
    .await
}

fn push_record(out: &mut Vec<u8>, record_type: RecordType, body: &[u8]) {
    let len = u32::try_from(body.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&RecordHeader { record_type, len }.to_bytes());
    out.extend_from_slice(body);
}

/// The sending half of a plaintext client session, over bare TCP or any other
/// stream `W`.
#[derive(Debug)]
pub struct PlainSender<W = OwnedWriteHalf> {
    /// Where the records go.
    writer: W,
    /// Requests queued to go in one write.
    out: Vec<u8>,
}

/// The receiving half of a plaintext client session, over bare TCP or any other
/// stream `R`.
#[derive(Debug)]
pub struct PlainReceiver<R = OwnedReadHalf> {
    /// The replies, read in large pieces and parsed from the buffer.
    reader: BufReader<R>,
}

/// Splits a connected stream into plaintext client halves.
pub fn client_halves(stream: TcpStream) -> (PlainReceiver, PlainSender) {
    let (reader, writer) = stream.into_split();
    halves(reader, writer)
}

/// Plaintext client halves over any reader and writer (the two halves of a TLS
/// stream, say).
pub fn halves<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    reader: R,
    writer: W,
) -> (PlainReceiver<R>, PlainSender<W>) {
    (
        PlainReceiver {
            reader: BufReader::with_capacity(BUFFER, reader),
        },
        PlainSender {
            writer,
            out: Vec::new(),
        },
    )
}

impl<W: AsyncWrite + Unpin> PlainSender<W> {
    /// Queues a REQUEST; writes when the queue is large.
    ///
    /// # Errors
    /// When the write fails.
    pub async fn request(&mut self, body: &[u8]) -> io::Result<()> {
        if body.len() >= BUFFER {
            // A large body goes straight from the caller's buffer, as with writev.
            let len = u32::try_from(body.len()).unwrap_or(u32::MAX);
            self.out.extend_from_slice(
                &RecordHeader {
                    record_type: RecordType::Request,
                    len,
                }
                .to_bytes(),
            );
            self.flush().await?;
            self.writer.write_all(body).await?;
            return self.writer.flush().await;
        }
        push_record(&mut self.out, RecordType::Request, body);
        if self.out.len() >= BUFFER {
            self.flush().await?;
        }
        Ok(())
    }

    /// Queues a REQUEST if that needs no write (it is small and the queue has room
    /// for it): `true`; `false`, with nothing queued, when it would: then
    /// [`request`](Self::request). The synchronous half of `request`, so that a
    /// pipelining load generator makes no future per request, as with the Noise
    /// halves' `queue_record`: both stacks are driven alike.
    pub fn queue_request(&mut self, body: &[u8]) -> bool {
        if self.out.len() + HEADER_LEN + body.len() >= BUFFER {
            return false;
        }
        push_record(&mut self.out, RecordType::Request, body);
        true
    }

    /// Writes what is queued.
    ///
    /// # Errors
    /// When the write fails.
    pub async fn flush(&mut self) -> io::Result<()> {
        if !self.out.is_empty() {
            self.writer.write_all(&self.out).await?;
            self.out.clear();
        }
        // A no-op on TCP; TLS may hold the last record until flushed.
        self.writer.flush().await
    }

    /// Flushes and ends our direction.
    ///
    /// # Errors
    /// When the write fails.
    pub async fn shutdown(&mut self) -> io::Result<()> {
        self.flush().await?;
        self.writer.shutdown().await
    }
}

impl<R: AsyncRead + Unpin> PlainReceiver<R> {
    /// The next reply if all of it is already in the read buffer: `check` is given
    /// its type and body, and the reply is taken. `None`, with nothing taken, when
    /// it is not all here or its type is not a reply's (left for
    /// [`reply`](Self::reply), which waits or refuses it). The synchronous half of
    /// `reply`, as the Noise halves' `buffered_record`: a pipelining load generator
    /// checks the replies of a burst with no future per reply, whichever stack
    /// carries them.
    pub fn buffered_reply<T>(&mut self, check: impl FnOnce(RecordType, &[u8]) -> T) -> Option<T> {
        let buffer = self.reader.buffer();
        let &[type_byte, a, b, c, d] = buffer.first_chunk::<HEADER_LEN>()?;
        let record_type = match type_byte {
            0x02 => RecordType::Response,
            0x03 => RecordType::Error,
            _ => return None,
        };
        let end = HEADER_LEN + u32::from_be_bytes([a, b, c, d]) as usize;
        let body = buffer.get(HEADER_LEN..end)?;
        let checked = check(record_type, body);
        std::pin::Pin::new(&mut self.reader).consume(end);
        Some(checked)
    }

    /// Reads the next reply into `body`: `Some(type)`, or `None` at a clean end of
    /// stream.
    ///
    /// # Errors
    /// When the read fails, the stream ends inside a record, or the type is not a
    /// reply.
    pub async fn reply(&mut self, body: &mut Vec<u8>) -> io::Result<Option<RecordType>> {
        let mut header = [0u8; HEADER_LEN];
        match self.reader.read_exact(&mut header[..1]).await {
            Ok(_) => {}
            Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(error) => return Err(error),
        }
        self.reader.read_exact(&mut header[1..]).await?;
        let record_type = match header[0] {
            0x02 => RecordType::Response,
            0x03 => RecordType::Error,
            other => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("unexpected record type {other:#04x}"),
                ))
            }
        };
        let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]);
        body.clear();
        body.resize(len as usize, 0);
        self.reader.read_exact(body).await?;
        Ok(Some(record_type))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As in the Noise server: while a long reply waits for the client to take it,
    /// the client's next request is read ahead, so a client that writes two
    /// 512 KiB requests before it reads a reply is not held up behind a 16 KiB
    /// pipe; the replies are right and in order, and the loop ends cleanly. (The
    /// timeout only bounds the failure: passing, the writes end at once.)
    #[tokio::test]
    async fn a_long_reply_is_written_while_the_next_request_is_read() {
        let (client, mut server) = tokio::io::duplex(16 * 1024);
        let serving = tokio::spawn(async move { echo_records(&mut server, |_| false).await });
        let (reader, writer) = tokio::io::split(client);
        let (mut receiver, mut sender) = halves(reader, writer);
        let requests: Vec<Vec<u8>> = [b'a', b'b'].map(|byte| vec![byte; 512 * 1024]).into();
        let written = tokio::time::timeout(std::time::Duration::from_secs(20), async {
            for request in &requests {
                sender.request(request).await?;
            }
            sender.flush().await
        })
        .await;
        assert!(
            matches!(written, Ok(Ok(()))),
            "the second request was not taken while the first reply waited: {written:?}"
        );
        let mut body = Vec::new();
        for request in &requests {
            let reply = receiver.reply(&mut body).await.unwrap();
            assert_eq!(reply, Some(RecordType::Response));
            assert_eq!(body, request.to_ascii_uppercase());
        }
        sender.shutdown().await.unwrap();
        assert_eq!(receiver.reply(&mut body).await.unwrap(), None);
        serving.await.unwrap().unwrap();
    }
}
