//! The TLS echo server: accepts TCP, sets TCP_NODELAY and caps the kernel's socket
//! buffers as `noise-echo serve` does (the same TCP window), runs the TLS handshake
//! (bounded in time), then the plaintext baseline's echo loop
//! ([`echo_records`]) on the TLS stream, so replies are batched while decrypted
//! requests are still buffered and the loop's buffers are released while the
//! session waits, exactly as for the baseline.
//!
//! What rustls itself keeps per idle session is its business and counts in the
//! `idle` figure: the 4 KiB read buffer (`DeframerVecBuffer` shrinks back to one
//! 4 KiB read when empty, never below), the connection state and both directions'
//! record keys. Copies: tokio-rustls reads into rustls's buffer, which decrypts in
//! place and copies the plaintext out into its own queue, from which `read_buf`
//! copies it into ours; replies are sealed from our buffer into a new record
//! buffer, then written.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use rustls::ServerConfig;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use noise_echo_tools::bench::plain::echo_records;

/// A peer that has not finished its handshake by then is dropped, as `serve` drops
/// one that is slow with Noise.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves the TLS echo on `listener` until `shutdown` completes. Each connection is
/// one task, its kernel buffers capped at `socket_buffer` bytes each way (0: the
/// kernel's tuning), as `noise-echo serve --socket-buffer` caps its own; connections
/// still open at shutdown are dropped.
///
/// # Errors
/// Only if accepting fails for good.
pub async fn serve(
    listener: TcpListener,
    config: Arc<ServerConfig>,
    socket_buffer: usize,
    shutdown: impl Future,
) -> io::Result<()> {
    let acceptor = TlsAcceptor::from(config);
    let accept = async {
        loop {
            let (socket, _) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(error) if is_transient(&error) => {
                    // Out of descriptors or an aborted connection: wait, keep serving.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
                Err(error) => return Err(error),
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let _ = serve_connection(&acceptor, socket, socket_buffer).await;
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

/// Caps the kernel buffers of an accepted connection at `bytes` each way, as
/// noise-echo's listener does (0 leaves them to the kernel). A failure only leaves
/// the kernel's tuning, as there.
fn cap_socket_buffers(socket: &TcpStream, bytes: usize) {
    if bytes == 0 {
        return;
    }
    let buffers = socket2::SockRef::from(socket);
    let _ = buffers.set_recv_buffer_size(bytes);
    let _ = buffers.set_send_buffer_size(bytes);
}

/// One session: handshake, then the echo loop until the client's close_notify.
async fn serve_connection(
    acceptor: &TlsAcceptor,
    socket: TcpStream,
    socket_buffer: usize,
) -> io::Result<()> {
    socket.set_nodelay(true)?;
    cap_socket_buffers(&socket, socket_buffer);
    let mut stream = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(socket))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))??;
    echo_records(&mut stream, |stream| {
        // Decrypted requests still queued in rustls: read them before replying.
        matches!(stream.get_mut().1.reader().into_first_chunk(), Ok(chunk) if !chunk.is_empty())
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cap is applied as noise-echo's listener applies it (Linux reports the
    /// figure set, its bookkeeping included: up to twice it), and 0 leaves the
    /// kernel's sizes alone.
    #[tokio::test]
    async fn accepted_sockets_get_the_same_buffers_as_noise_echo_gives_them() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let _client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (socket, _) = listener.accept().await.unwrap();
        let sizes = |socket: &TcpStream| {
            let buffers = socket2::SockRef::from(socket);
            (
                buffers.recv_buffer_size().unwrap(),
                buffers.send_buffer_size().unwrap(),
            )
        };
        let untouched = sizes(&socket);
        cap_socket_buffers(&socket, 0);
        assert_eq!(sizes(&socket), untouched);
        let cap = noise_echo::server::DEFAULT_SOCKET_BUFFER;
        cap_socket_buffers(&socket, cap);
        let (receive, send) = sizes(&socket);
        for size in [receive, send] {
            assert!((cap..=2 * cap).contains(&size), "{size}");
        }
    }
}
