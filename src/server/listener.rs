//! The accepting side: binding, the accept loop, and admission on accept (the
//! connection and handshake caps, per-source tickets and penalties), before a byte is
//! read or any Diffie-Hellman work is done.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tracing::{info, warn};

use super::penalty::{Admission, PenaltyBox, Verdict};

use super::authorized::AuthorizedKeysCache;
use super::connection::Handler;
use super::ratelog::BurstLog;
use super::stats::ServerStats;
use super::Shared;

/// Room in the kernel's queue of connections not yet accepted. Under a connection
/// flood the server accepts and closes thousands a second; when this queue overflows
/// the kernel drops SYNs, and an honest client waits a second for its retransmit.
/// Linux caps it at `net.core.somaxconn` (4096 by default); tokio's `bind` uses 1024.
pub const LISTEN_BACKLOG: u32 = 4096;

/// Binds a listener for [`run`](super::run) on the first address `listen` (`host:port`) resolves
/// to that works, with a [`LISTEN_BACKLOG`]-deep accept queue.
///
/// # Errors
/// The resolution, socket, bind or listen error of the last address tried.
pub async fn bind(listen: &str) -> io::Result<TcpListener> {
    let mut last_error = None;
    for addr in tokio::net::lookup_host(listen).await? {
        let socket = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        // As tokio's own bind does: a restarted server may take its port back while
        // old connections linger in TIME_WAIT.
        socket.set_reuseaddr(true)?;
        match socket
            .bind(addr)
            .and_then(|()| socket.listen(LISTEN_BACKLOG))
        {
            Ok(listener) => return Ok(listener),
            Err(error) => last_error = Some(error),
        }
    }
    Err(last_error.unwrap_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{listen} resolves to no address"),
        )
    }))
}

/// The accepting side: owns the listener and hands each connection to a task.
pub(super) struct Listener {
    /// Shared, read-only settings.
    pub(super) shared: Arc<Shared>,
    /// The bound socket, from the caller.
    pub(super) listener: TcpListener,
    /// One permit per open connection; when none is left, new connections are refused.
    pub(super) limit_connections: Arc<Semaphore>,
    /// One permit per handshake in progress; when none is left, new connections are
    /// refused.
    pub(super) limit_handshakes: Arc<Semaphore>,
    /// Per-source handshake counts and penalties.
    pub(super) penalties: Arc<Mutex<PenaltyBox>>,
    /// The parsed allow-list, reloaded when the file changes.
    pub(super) authorized_keys: Arc<AuthorizedKeysCache>,
    /// Becomes `true` when the server stops; handlers watch it between requests.
    pub(super) shutdown_signal: watch::Receiver<bool>,
    /// Cloned into every handler, so shutdown can wait until all are dropped.
    pub(super) connection_done: mpsc::Sender<()>,
    /// Refusals at the open-connections cap, logged once per burst.
    pub(super) refused_at_connection_cap: BurstLog,
    /// Refusals at the handshakes-in-progress cap, logged once per burst.
    pub(super) refused_at_handshake_cap: BurstLog,
    /// Refusals at the per-source handshake cap, logged once per burst.
    pub(super) refused_at_source_cap: BurstLog,
    /// Refusals of penalized sources, logged once per burst.
    pub(super) refused_penalized: BurstLog,
}

impl Listener {
    pub(super) async fn accept_loop(&mut self) -> io::Result<()> {
        info!(
            "listening on {} host_key={}",
            self.listener.local_addr()?,
            self.shared.config.host.public_key().fingerprint()
        );
        let mut consecutive_errors = 0u32;
        loop {
            let (socket, peer) = match self.listener.accept().await {
                Ok(accepted) => {
                    consecutive_errors = 0;
                    accepted
                }
                Err(error) => {
                    // Out of file descriptors, or an aborted connection: back off briefly
                    // instead of spinning, and keep serving.
                    consecutive_errors = consecutive_errors.saturating_add(1);
                    warn!("accept failed: {error}");
                    let backoff = Duration::from_millis(10 << consecutive_errors.min(6));
                    tokio::time::sleep(backoff).await;
                    continue;
                }
            };
            let stats = &self.shared.stats;
            stats.add(&stats.accepted);
            // Every check below is a counter or a hash lookup: a refused connection is
            // closed before we read a byte or do any Diffie-Hellman work.
            let Some(admitted) = self.admit(peer) else {
                drop(socket);
                continue;
            };
            let handler = Handler {
                peer,
                shared: Arc::clone(&self.shared),
                authorized_keys: Arc::clone(&self.authorized_keys),
                shutdown_signal: self.shutdown_signal.clone(),
                reload: self.shared.reload.subscribe(),
                _connection_done: Some(self.connection_done.clone()),
            };
            // Replies are small and latency matters: don't let Nagle hold them back.
            let _ = socket.set_nodelay(true);
            // The future itself, not an `async move` block around it: such a block
            // stores the handler, the socket and the ticket a second time beside
            // the future that already owns them (208 bytes), and tokio rounds each
            // task up to 128 bytes, so every idle connection paid 256 bytes for it.
            tokio::spawn(handler.run(socket, admitted));
        }
    }

    /// Applies the caps and the penalties to a new connection from `peer`.
    pub(super) fn admit(&mut self, peer: SocketAddr) -> Option<Admitted> {
        let now = Instant::now();
        let stats = Arc::clone(&self.shared.stats);
        let admission = self
            .penalties
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .admit(peer.ip(), now);
        let tracked = match admission {
            Admission::Admitted => true,
            Admission::Untracked => false,
            Admission::Penalized { remaining } => {
                stats.add(&stats.refused_penalized);
                if let Some(count) = self.refused_penalized.note(now) {
                    warn!(
                        "refused {count} connection(s) from sources serving a penalty for failed handshakes (latest {}, {}s left)",
                        peer.ip(),
                        remaining.as_secs_f32().ceil()
                    );
                }
                return None;
            }
            Admission::TooManyInProgress => {
                stats.add(&stats.refused_source_cap);
                if let Some(count) = self.refused_at_source_cap.note(now) {
                    warn!(
                        "per-source limit of {} handshakes in progress reached: refused {count} connection(s) (latest from {})",
                        self.shared.config.penalties.max_handshakes_per_source,
                        peer.ip()
                    );
                }
                return None;
            }
        };
        // From here on, dropping `ticket` gives the source's handshake slot back.
        let ticket = SourceTicket {
            penalties: tracked.then(|| Arc::clone(&self.penalties)),
            addr: peer.ip(),
            verdict: Verdict::Neutral,
        };
        let Ok(handshake) = Arc::clone(&self.limit_handshakes).try_acquire_owned() else {
            stats.add(&stats.refused_handshake_cap);
            if let Some(count) = self.refused_at_handshake_cap.note(now) {
                warn!(
                    "limit of {} handshakes in progress reached: refused {count} connection(s) (latest from {peer})",
                    self.shared.config.max_handshakes
                );
            }
            return None;
        };
        let Ok(connection) = Arc::clone(&self.limit_connections).try_acquire_owned() else {
            stats.add(&stats.refused_connection_cap);
            if let Some(count) = self.refused_at_connection_cap.note(now) {
                warn!(
                    "connection limit of {} reached: refused {count} connection(s) (latest from {peer})",
                    self.shared.config.max_connections
                );
            }
            return None;
        };
        Some(Admitted {
            _connection: Some(Slot::new(connection, &stats, |s| &s.connections_open)),
            handshake: Some(Slot::new(handshake, &stats, |s| &s.handshakes_in_progress)),
            ticket,
        })
    }
}

/// A permit that also counts itself in a [`ServerStats`] gauge while held.
pub(super) struct Slot {
    /// The semaphore permit, released on drop.
    pub(super) _permit: OwnedSemaphorePermit,
    /// Where the gauge lives.
    pub(super) stats: Arc<ServerStats>,
    /// Which gauge.
    pub(super) gauge: fn(&ServerStats) -> &AtomicU64,
}

impl Slot {
    pub(super) fn new(
        permit: OwnedSemaphorePermit,
        stats: &Arc<ServerStats>,
        gauge: fn(&ServerStats) -> &AtomicU64,
    ) -> Self {
        stats.add(gauge(stats));
        Self {
            _permit: permit,
            stats: Arc::clone(stats),
            gauge,
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.stats.sub((self.gauge)(&self.stats));
    }
}

/// A source's handshake in progress in the penalty table; reports its verdict there
/// when dropped, so no path (an early return, a panic) leaks the slot.
pub(super) struct SourceTicket {
    /// The table; `None` when it does not track this source (exempt, or full).
    pub(super) penalties: Option<Arc<Mutex<PenaltyBox>>>,
    /// The client's address.
    pub(super) addr: IpAddr,
    /// How the handshake ended; `Neutral` until decided.
    pub(super) verdict: Verdict,
}

impl Drop for SourceTicket {
    fn drop(&mut self) {
        if let Some(penalties) = &self.penalties {
            penalties
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .finish(self.addr, Instant::now(), self.verdict);
        }
    }
}

/// What an admitted connection holds until the matching stage is over.
pub(super) struct Admitted {
    /// Its place under the open-connections cap, for the whole connection; `None`
    /// for a connection the embedder admitted ([`Server::serve_connection`](super::Server::serve_connection)).
    pub(super) _connection: Option<Slot>,
    /// Its place under the handshakes cap, until the handshake is over.
    pub(super) handshake: Option<Slot>,
    /// Its place in the per-source table, until the key is authorized or refused.
    pub(super) ticket: SourceTicket,
}

impl Admitted {
    /// A connection admitted by the embedder: under no cap, not in the penalty table.
    pub(super) fn untracked(peer: SocketAddr) -> Self {
        Self {
            _connection: None,
            handshake: None,
            ticket: SourceTicket {
                penalties: None,
                addr: peer.ip(),
                verdict: Verdict::Neutral,
            },
        }
    }
}

/// An IPv4 client seen through an IPv6 socket is matched as IPv4 by `from=`.
pub(super) fn canonical_ip(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}
