//! The streams a connection can be served over: a TCP stream split into borrowed
//! halves without locking, any other `AsyncRead + AsyncWrite` through
//! `tokio::io::split`, and the byte counting the log line reports.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::Poll;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// A stream the handler can serve: read and written during the handshake, then
/// split into halves for the session's two directions.
pub(super) trait Transport: AsyncRead + AsyncWrite + Unpin + Send {
    /// The reading half, borrowed from the stream.
    type Reader<'a>: AsyncRead + Unpin + Send
    where
        Self: 'a;
    /// The writing half, borrowed from the stream.
    type Writer<'a>: AsyncWrite + Unpin + Send
    where
        Self: 'a;
    /// Splits the stream for the session.
    fn halves(&mut self) -> (Self::Reader<'_>, Self::Writer<'_>);
}

/// TCP splits for free: the halves are plain borrows, with no lock between them.
impl Transport for TcpStream {
    type Reader<'a> = tokio::net::tcp::ReadHalf<'a>;
    type Writer<'a> = tokio::net::tcp::WriteHalf<'a>;

    fn halves(&mut self) -> (Self::Reader<'_>, Self::Writer<'_>) {
        self.split()
    }
}

/// Any other stream, split with [`tokio::io::split`].
pub(super) struct AnyStream<S>(pub(super) S);

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Transport for AnyStream<S> {
    type Reader<'a>
        = tokio::io::ReadHalf<&'a mut S>
    where
        Self: 'a;
    type Writer<'a>
        = tokio::io::WriteHalf<&'a mut S>
    where
        Self: 'a;

    fn halves(&mut self) -> (Self::Reader<'_>, Self::Writer<'_>) {
        tokio::io::split(&mut self.0)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for AnyStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        context: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(context, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for AnyStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        context: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(context, buf)
    }

    fn poll_flush(
        mut self: Pin<&mut Self>,
        context: &mut std::task::Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(context)
    }

    fn poll_shutdown(
        mut self: Pin<&mut Self>,
        context: &mut std::task::Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(context)
    }
}

/// A half of the session's stream that counts the bytes it moves, so a session can
/// tell a slow client (some bytes move) from one that has stopped (none do).
pub(super) struct Metered<'a, T> {
    /// The half itself.
    pub(super) inner: T,
    /// Bytes read or written so far, shared by both halves of the session.
    pub(super) moved: &'a AtomicU64,
}

impl<T: AsyncRead + Unpin> AsyncRead for Metered<'_, T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        context: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(context, buf);
        let read = buf.filled().len() - before;
        self.moved.fetch_add(read as u64, Ordering::Relaxed);
        result
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Metered<'_, T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        context: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(context, buf);
        if let Poll::Ready(Ok(written)) = &result {
            self.moved.fetch_add(*written as u64, Ordering::Relaxed);
        }
        result
    }

    fn poll_flush(
        mut self: Pin<&mut Self>,
        context: &mut std::task::Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(context)
    }

    fn poll_shutdown(
        mut self: Pin<&mut Self>,
        context: &mut std::task::Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(context)
    }
}
