//! Load and attack generators for testing a noise-echo server on this machine:
//! [`flood`] holds silent, trickling and stalled connections open (a slowloris,
//! from as many loopback addresses as asked) and sprays garbage while a legitimate
//! client probes the server; [`load`] runs many pipelined sessions and
//! checks every byte of every reply.
//!
//! [`flood`] and [`load`] are in their own modules; what both use is here.
//!
//! Both refuse targets outside loopback (127.0.0.0/8, ::1): they exist to test one's
//! own server, and a flood generator pointed elsewhere is an attack. Every run is
//! bounded in time and in count and stops by itself.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use tokio::net::{TcpSocket, TcpStream};

use noise_echo::identity::Fingerprint;
use noise_echo::wire::{self, LocalIdentity};

mod flood;
mod load;

pub use flood::{flood, FloodConfig, FloodStats};
pub use load::{load, LoadConfig, LoadStats};

/// The legitimate client of a [`flood`], or of a [`load`].
#[derive(Debug, Clone)]
pub struct Client {
    /// Its identity, which the server must authorize.
    pub identity: Arc<LocalIdentity>,
    /// The server key to expect; `None` accepts any (the target is local).
    pub server_key: Option<Fingerprint>,
    /// The loopback address to connect from (127.0.0.2, say); `None` lets the system
    /// choose.
    pub source: Option<IpAddr>,
}

type Halves<'a> = (
    wire::RecvHalf<tokio::net::tcp::ReadHalf<'a>>,
    wire::SendHalf<tokio::net::tcp::WriteHalf<'a>>,
);

/// The client handshake, checking the server key if one is expected.
async fn handshake<'a>(stream: &'a mut TcpStream, client: &Client) -> Result<Halves<'a>, String> {
    let pending = wire::initiate(stream, &client.identity)
        .await
        .map_err(|error| format!("handshake: {error}"))?;
    if let Some(expected) = &client.server_key {
        if pending.server_key().fingerprint() != *expected {
            return Err(format!(
                "server key {} is not the expected {}",
                pending.server_key().fingerprint(),
                expected
            ));
        }
    }
    let established = pending
        .approve(stream)
        .await
        .map_err(|error| format!("handshake: {error}"))?;
    let (reader, writer) = stream.split();
    Ok(established.into_halves(reader, writer))
}

/// Connects to `target`, from `source` when given.
///
/// # Errors
/// The socket, bind or connect error.
pub async fn connect_from(source: Option<IpAddr>, target: SocketAddr) -> io::Result<TcpStream> {
    let socket = if target.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(source) = source {
        socket.bind(SocketAddr::new(source, 0))?;
    }
    let stream = socket.connect(target).await?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

fn check_loopback(target: IpAddr, sources: &[IpAddr]) -> io::Result<()> {
    for addr in std::iter::once(&target).chain(sources) {
        if !addr.to_canonical().is_loopback() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{addr} is not a loopback address: noise-echo attack only targets this machine"
                ),
            ));
        }
    }
    Ok(())
}

/// `count` distinct loopback addresses, 127.1.0.0 upwards: the sources of a
/// simulated botnet (Linux routes all of 127.0.0.0/8 to the loopback interface).
pub fn loopback_sources(count: usize) -> Vec<IpAddr> {
    (0..count.min(1 << 16))
        .map(|i| IpAddr::V4(std::net::Ipv4Addr::new(127, 1, (i >> 8) as u8, i as u8)))
        .collect()
}

fn pick(sources: &[IpAddr], n: usize) -> Option<IpAddr> {
    (!sources.is_empty()).then(|| sources[n % sources.len()])
}

/// SplitMix64: a small, seedable generator for sizes and contents (not for keys).
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}
