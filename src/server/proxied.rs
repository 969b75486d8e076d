//! Connections from a load balancer ([`ServerConfig::proxy_protocol`]): the PROXY
//! protocol header is read first, under a deadline and a size bound, and only once
//! the real client address is known does the connection go through admission (the
//! per-source caps and penalties, the handshakes cap) as that client, exactly as a
//! direct connection from it would. A proxy is never held responsible for its
//! clients: its own address is neither capped nor penalised, and its health checks
//! (the LOCAL command) are closed at once without counting against anyone.
//!
//! [`ServerConfig::proxy_protocol`]: super::ServerConfig::proxy_protocol

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tracing::{debug, warn, Instrument};

use super::listener::{canonical_ip, Gate};
use super::proxy_protocol::{self, HeaderError, Parsed, Proxied, ProxyHeader, MAX_HEADER_LEN};

/// Why a proxy's connection was closed before its header was read whole.
#[derive(Debug, thiserror::Error)]
pub(super) enum ReadHeaderError {
    /// The bytes are no valid header.
    #[error("{0}")]
    Header(#[from] HeaderError),
    /// The proxy closed before the header was complete.
    #[error("the proxy closed the connection after {received} byte(s), before a whole PROXY protocol header")]
    Truncated {
        /// Header bytes that did come.
        received: usize,
    },
    /// The header was not complete within the handshake timeout.
    #[error("no whole PROXY protocol header within {0:?}")]
    Timeout(std::time::Duration),
    /// Reading the socket failed.
    #[error("reading the PROXY protocol header: {0}")]
    Io(#[from] io::Error),
    /// A whole header, for a client that has no TCP/IP address.
    #[error("PROXY protocol header for a client without a TCP/IP address (family and protocol {0:#04x}); only TCP over IPv4 or IPv6 can be served")]
    NoClientAddress(u8),
}

/// Takes exactly the PROXY protocol header off `socket`, leaving the bytes behind
/// it (the handshake) unread. Each round peeks at what has arrived, and consumes
/// either the rest of a complete header or every byte seen (all of which belong
/// to an incomplete header, see [`proxy_protocol::parse`]): so each round takes at
/// least one byte, at most [`MAX_HEADER_LEN`] are ever held, and a slow proxy
/// costs waiting, never a busy loop.
///
/// # Errors
/// As [`ReadHeaderError`], except the timeout, which is the caller's.
pub(super) async fn read_header(socket: &mut TcpStream) -> Result<ProxyHeader, ReadHeaderError> {
    // On the heap, and only while the header is read.
    let mut buffer = vec![0u8; MAX_HEADER_LEN];
    let mut consumed = 0;
    loop {
        let peeked = socket.peek(&mut buffer[consumed..]).await?;
        if peeked == 0 {
            return Err(ReadHeaderError::Truncated { received: consumed });
        }
        let take = match proxy_protocol::parse(&buffer[..consumed + peeked])? {
            Parsed::Complete(header) => {
                // Longer than what was consumed: a shorter prefix was incomplete.
                let end = header.len.max(consumed);
                socket.read_exact(&mut buffer[consumed..end]).await?;
                return Ok(header);
            }
            Parsed::Incomplete => peeked,
        };
        socket
            .read_exact(&mut buffer[consumed..consumed + take])
            .await?;
        consumed += take;
        if consumed == MAX_HEADER_LEN {
            // parse() refuses a header at its bound before this; kept so the loop is
            // bounded by its own arithmetic too.
            return Err(HeaderError::V1TooLong.into());
        }
    }
}

impl Gate {
    /// Serves a connection accepted from the proxy at `proxy`, which holds its place
    /// under the connections cap (`connection`): reads the header, then admits the
    /// connection as its client and spawns its handler, or closes it.
    pub(super) async fn serve_proxied(
        self: Arc<Self>,
        mut socket: TcpStream,
        proxy: SocketAddr,
        connection: OwnedSemaphorePermit,
    ) {
        let stats = &self.shared.stats;
        let timeout = self.shared.config.handshake_timeout;
        let mut shutdown = self.shutdown_signal.clone();
        let read = tokio::select! {
            read = tokio::time::timeout(timeout, read_header(&mut socket)) => {
                read.unwrap_or(Err(ReadHeaderError::Timeout(timeout)))
            }
            // A stopping server does not wait for headers: nothing is in flight.
            _ = shutdown.changed() => return,
        };
        let client = match read.map(|header| header.proxied) {
            Ok(Proxied::Tcp { source, .. }) => {
                SocketAddr::new(canonical_ip(source.ip()), source.port())
            }
            Ok(Proxied::Local) => {
                // A health check: answered by a clean close (FIN, not a reset; a
                // checker sends nothing after the header).
                stats.add(&stats.proxy_health_checks);
                debug!(%proxy, "PROXY protocol LOCAL (a health check): closed");
                let _ = tokio::time::timeout(timeout, socket.shutdown()).await;
                return;
            }
            Ok(Proxied::Unsupported {
                family_and_protocol,
            }) => {
                return self
                    .header_error(proxy, ReadHeaderError::NoClientAddress(family_and_protocol))
            }
            Err(error) => return self.header_error(proxy, error),
        };
        stats.add(&stats.proxied);
        let Some(admitted) = self.admit(client, &socket, Some(connection)) else {
            return;
        };
        let handler = self.handler(client);
        let _ = socket.set_nodelay(true);
        // Every line the connection logs says which proxy it came through.
        let span = tracing::info_span!("proxied", via = %proxy);
        tokio::spawn(handler.run(socket, admitted).instrument(span));
    }

    /// Counts and logs (once per burst) a proxy's connection closed for its header.
    fn header_error(&self, proxy: SocketAddr, error: ReadHeaderError) {
        let stats = &self.shared.stats;
        stats.add(&stats.proxy_header_errors);
        let logs = &mut super::listener::lock(&self.logs);
        if let Some(count) = logs.proxy_header_errors.note(Instant::now()) {
            warn!(
                "closed {count} connection(s) from proxies for their PROXY protocol header (latest from {proxy}: {error})"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;
    use tokio::net::TcpListener;

    /// A connected pair on loopback: (the client's end, the server's end).
    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (client, server)
    }

    #[tokio::test]
    async fn the_header_is_taken_whole_and_nothing_behind_it() {
        let source: SocketAddr = "127.0.0.5:40000".parse().unwrap();
        let destination: SocketAddr = "127.0.0.1:1234".parse().unwrap();
        for header in [
            proxy_protocol::encode_v2(Some((source, destination))),
            b"PROXY TCP4 127.0.0.5 127.0.0.1 40000 1234\r\n".to_vec(),
        ] {
            let (mut client, mut server) = pair().await;
            // In pieces, the first ending inside the header: each is waited for.
            let (first, rest) = header.split_at(7);
            client.write_all(first).await.unwrap();
            let reading = tokio::spawn(async move {
                let header = read_header(&mut server).await;
                (header, server)
            });
            tokio::task::yield_now().await;
            client.write_all(rest).await.unwrap();
            client.write_all(b"\0\x20message 1").await.unwrap();
            let (read, mut server) = reading.await.unwrap();
            let read = read.unwrap();
            assert_eq!(read.len, header.len());
            assert_eq!(
                read.proxied,
                Proxied::Tcp {
                    source,
                    destination
                }
            );
            let mut behind = [0u8; 11];
            server.read_exact(&mut behind).await.unwrap();
            assert_eq!(&behind, b"\0\x20message 1");
        }
    }

    #[tokio::test]
    async fn truncated_and_malformed_headers_are_errors() {
        let header = proxy_protocol::encode_v2(None);
        for cut in [0, 5, 15] {
            let (mut client, mut server) = pair().await;
            client.write_all(&header[..cut]).await.unwrap();
            drop(client);
            let error = read_header(&mut server).await.unwrap_err();
            assert!(
                matches!(error, ReadHeaderError::Truncated { received } if received == cut),
                "{cut}: {error}"
            );
        }
        let (mut client, mut server) = pair().await;
        // A client that knows nothing of the proxy: its message 1 frame.
        client.write_all(&[0, 32, 7, 7, 7]).await.unwrap();
        let error = read_header(&mut server).await.unwrap_err();
        assert!(
            matches!(error, ReadHeaderError::Header(HeaderError::Missing { .. })),
            "{error}"
        );
        // A v1 line that never ends: refused at its bound, not read on.
        let (mut client, mut server) = pair().await;
        client
            .write_all(&[b"PROXY ".as_slice(), &[b'1'; 200]].concat())
            .await
            .unwrap();
        let error = read_header(&mut server).await.unwrap_err();
        assert!(
            matches!(error, ReadHeaderError::Header(HeaderError::V1TooLong)),
            "{error}"
        );
    }
}
