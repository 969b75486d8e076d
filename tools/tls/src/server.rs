//! The TLS echo server: accepts TCP, sets TCP_NODELAY, runs the TLS handshake
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
/// one task; connections still open at shutdown are dropped.
///
/// # Errors
/// Only if accepting fails for good.
pub async fn serve(
    listener: TcpListener,
    config: Arc<ServerConfig>,
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
                let _ = serve_connection(&acceptor, socket).await;
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

/// One session: handshake, then the echo loop until the client's close_notify.
async fn serve_connection(acceptor: &TlsAcceptor, socket: TcpStream) -> io::Result<()> {
    socket.set_nodelay(true)?;
    let mut stream = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(socket))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))??;
    echo_records(&mut stream, |stream| {
        // Decrypted requests still queued in rustls: read them before replying.
        matches!(stream.get_mut().1.reader().into_first_chunk(), Ok(chunk) if !chunk.is_empty())
    })
    .await
}
