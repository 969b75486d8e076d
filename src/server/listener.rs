//! The accepting side: binding, one accept loop per listener, and admission on
//! accept (the connection and handshake caps, per-source tickets and penalties),
//! before a byte is read or any Diffie-Hellman work is done. Every listener shares
//! the same caps and the same penalty table. A connection from a load balancer
//! ([`ServerConfig::proxy_protocol`](super::ServerConfig::proxy_protocol)) takes its
//! place under the connections cap on accept and the rest once its PROXY protocol
//! header has named the client (see `proxied.rs`).
//!
//! When the handshakes-in-progress cap is reached, the newcomer is not refused: an
//! unfinished handshake is closed to make room, the oldest of those still waiting
//! for message 1 if any, else the oldest waiting for message 3. An honest client
//! sends message 1 as soon as it connects and finishes within a round trip, so it is
//! never the oldest for long; a slowloris that holds every slot loses one to each
//! newcomer, and holding slots no longer keeps anyone out. An attacker that
//! reconnects whenever it is evicted evicts its own silent connections first (and
//! each such eviction counts as a failure of its source); to compete with honest
//! clients' place it must send message 1, which costs it a round of Diffie-Hellman
//! work on the server per connection, as an honest client does.

use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch, OwnedSemaphorePermit, Semaphore};
use tracing::{info, warn};

use super::penalty::{Admission, PenaltyBox, Verdict};

use super::authorized::AuthorizedKeysCache;
use super::connection::Handler;
use super::message1::{message1_waiting, WatchedHandshake};
use super::ratelog::BurstLog;
use super::stats::ServerStats;
use super::Shared;

/// Room in the kernel's queue of connections not yet accepted. Under a connection
/// flood the server accepts and closes thousands a second; when this queue overflows
/// the kernel drops SYNs, and an honest client waits a second for its retransmit.
/// Linux caps it at `net.core.somaxconn` (4096 by default); tokio's `bind` uses 1024.
pub const LISTEN_BACKLOG: u32 = 4096;

/// Binds a listener for [`run`](super::run) on the first address `listen` (`host:port`) resolves
/// to that works, with a [`LISTEN_BACKLOG`]-deep accept queue. An IPv6 listener
/// takes IPv6 only (`IPV6_V6ONLY`, as sshd sets it), so `0.0.0.0:P` and `[::]:P` can
/// both be bound; see [`bind_all`] for both at once.
///
/// # Errors
/// The resolution, socket, bind or listen error of the last address tried.
pub async fn bind(listen: &str) -> io::Result<TcpListener> {
    let mut last_error = None;
    for addr in tokio::net::lookup_host(listen).await? {
        match bind_addr(addr) {
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

/// Binds what one `--listen` value names: `host:port` as [`bind`] does, or `:PORT`
/// for every address of this host, as sshd's `ListenAddress :PORT`: `0.0.0.0:PORT`
/// and `[::]:PORT` (IPv6 only), two listeners on the same port (with port 0, the
/// port the first one got). A host without IPv6 gets the IPv4 listener alone.
///
/// # Errors
/// As [`bind`]; for `:PORT`, the IPv4 bind error, or a port that is not a number.
pub async fn bind_all(listen: &str) -> io::Result<Vec<TcpListener>> {
    let Some(port) = listen.strip_prefix(':') else {
        return Ok(vec![bind(listen).await?]);
    };
    let port: u16 = port.parse().map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{listen}: the port must be a number from 0 to 65535 (as in :1234)"),
        )
    })?;
    let v4 = bind_addr(SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), port))?;
    let port = v4.local_addr()?.port();
    let mut listeners = vec![v4];
    match bind_addr(SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), port)) {
        Ok(v6) => listeners.push(v6),
        Err(error) => warn!("not listening on [::]:{port} (IPv6): {error}; IPv4 only"),
    }
    Ok(listeners)
}

/// One listening socket on `addr`, with address reuse (a restarted server may take
/// its port back while old connections linger in TIME_WAIT, as tokio's own bind
/// does) and `IPV6_V6ONLY` on IPv6.
fn bind_addr(addr: SocketAddr) -> io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG.try_into().unwrap_or(i32::MAX))?;
    TcpListener::from_std(socket.into())
}

/// Admission, shared by every accept loop: the caps, the penalty table, and what a
/// new connection's handler needs.
pub(super) struct Gate {
    /// Shared, read-only settings.
    pub(super) shared: Arc<Shared>,
    /// One permit per open connection; when none is left, new connections are refused.
    pub(super) limit_connections: Arc<Semaphore>,
    /// The handshakes in progress, oldest first; when it is full, the oldest is
    /// evicted for the newcomer.
    pub(super) handshakes: Arc<Mutex<HandshakeTable>>,
    /// Per-source handshake counts and penalties.
    pub(super) penalties: Arc<Mutex<Penalties>>,
    /// The parsed allow-list, reloaded when the file changes.
    pub(super) authorized_keys: Arc<AuthorizedKeysCache>,
    /// Becomes `true` when the server stops; handlers watch it between requests.
    pub(super) shutdown_signal: watch::Receiver<bool>,
    /// Cloned into every handler, so shutdown can wait until all are dropped.
    pub(super) connection_done: mpsc::Sender<()>,
    /// Refusals and evictions, each kind logged once per burst.
    pub(super) logs: Mutex<AdmissionLogs>,
}

/// The burst logs of admission, one per kind of refusal.
#[derive(Default)]
pub(super) struct AdmissionLogs {
    /// Refusals at the open-connections cap.
    pub(super) refused_at_connection_cap: BurstLog,
    /// Evictions at the handshakes-in-progress cap.
    pub(super) evicted_at_handshake_cap: BurstLog,
    /// Refusals at the per-source handshake cap.
    pub(super) refused_at_source_cap: BurstLog,
    /// Refusals of penalized sources.
    pub(super) refused_penalized: BurstLog,
    /// Proxies' connections closed for their PROXY protocol header.
    pub(super) proxy_header_errors: BurstLog,
}

/// The per-source table and the log of the refusals it begins.
pub(super) struct Penalties {
    /// Who is refused, and how many handshakes each source has in progress.
    pub(super) table: PenaltyBox,
    /// Refusals begun, logged once per burst.
    pub(super) begun: BurstLog,
    /// Where refusals begun are counted.
    pub(super) stats: Arc<ServerStats>,
}

impl Penalties {
    pub(super) fn new(table: PenaltyBox, stats: Arc<ServerStats>) -> Self {
        Self {
            table,
            begun: BurstLog::default(),
            stats,
        }
    }
}

/// Locks a mutex whose data stays consistent even if a holder panicked (counters
/// and tables updated in single steps).
pub(super) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// ` host_certificate="ID" serial=N principals=A,B valid_until=TIME` for the
/// listening line, when the host presents a certificate (empty otherwise).
fn host_certificate_text(host: &crate::wire::LocalIdentity) -> String {
    use crate::openssh::certificate::{format_time, Certificate};
    let Some(blob) = host.certificate() else {
        return String::new();
    };
    match Certificate::from_blob(blob) {
        Ok(certificate) => format!(
            " host_certificate=\"{}\" serial={} principals={} valid_until={}",
            certificate.key_id,
            certificate.serial,
            certificate.principals.join(","),
            format_time(certificate.valid_before)
        ),
        // Checked when it was attached: unreachable in practice.
        Err(error) => format!(" host_certificate=unreadable ({error})"),
    }
}

impl Gate {
    /// Accepts connections on `listener` until it fails for good, admitting each.
    pub(super) async fn accept_loop(self: Arc<Self>, listener: TcpListener) -> io::Result<()> {
        let config = &self.shared.config;
        let protocols: Vec<String> = config.protocols.iter().map(|v| v.to_string()).collect();
        let ciphers: Vec<&str> = config.suites.iter().map(|s| s.short_name()).collect();
        // The host key last: scripts take the rest of the line as its fingerprint.
        info!(
            "listening on {} protocols={} ciphers={}{} host_key={}",
            listener.local_addr()?,
            protocols.join(","),
            ciphers.join(","),
            host_certificate_text(&config.host),
            config.host.public_key().fingerprint()
        );
        let mut consecutive_errors = 0u32;
        loop {
            let (socket, peer) = match listener.accept().await {
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
            if let Some(proxies) = &self.shared.config.proxy_protocol {
                if proxies.matches(peer.ip()) {
                    // Only the connections cap now: who the client is, and so which
                    // per-source limits apply, is in the header, read in its own task.
                    let Some(connection) = self.admit_connection(peer, Instant::now()) else {
                        drop(socket);
                        continue;
                    };
                    tokio::spawn(Arc::clone(&self).serve_proxied(socket, peer, connection));
                    continue;
                }
            }
            // Every check below is a counter or a table lookup: a refused connection is
            // closed before we read a byte or do any Diffie-Hellman work.
            let Some(admitted) = self.admit(peer, &socket, None) else {
                drop(socket);
                continue;
            };
            let handler = self.handler(peer);
            // Replies are small and latency matters: don't let Nagle hold them back.
            let _ = socket.set_nodelay(true);
            cap_socket_buffers(&socket, self.shared.config.socket_buffer);
            // The future itself, not an `async move` block around it: such a block
            // stores the handler, the socket and the ticket a second time beside
            // the future that already owns them (208 bytes), and tokio rounds each
            // task up to 128 bytes, so every idle connection paid 256 bytes for it.
            tokio::spawn(handler.run(socket, admitted));
        }
    }

    /// The handler of an admitted connection from `peer` (the client's address).
    pub(super) fn handler(&self, peer: SocketAddr) -> Handler {
        Handler {
            peer,
            shared: Arc::clone(&self.shared),
            authorized_keys: Arc::clone(&self.authorized_keys),
            shutdown_signal: self.shutdown_signal.clone(),
            reload: self.shared.reload.subscribe(),
            certificate: None,
            _connection_done: Some(self.connection_done.clone()),
        }
    }

    /// A place under the open-connections cap for a connection from `peer`, or
    /// `None` (counted and logged) when the cap is reached.
    pub(super) fn admit_connection(
        &self,
        peer: SocketAddr,
        now: Instant,
    ) -> Option<OwnedSemaphorePermit> {
        let Ok(connection) = Arc::clone(&self.limit_connections).try_acquire_owned() else {
            let stats = &self.shared.stats;
            stats.add(&stats.refused_connection_cap);
            if let Some(count) = lock(&self.logs).refused_at_connection_cap.note(now) {
                warn!(
                    "connection limit of {} reached: refused {count} connection(s) (latest from {peer})",
                    self.shared.config.max_connections
                );
            }
            return None;
        };
        Some(connection)
    }

    /// Applies the caps and the penalties to a new connection `socket` from `peer`;
    /// `connection` is its place under the connections cap if it has one already
    /// (a proxied connection, admitted once its client is known).
    pub(super) fn admit(
        &self,
        peer: SocketAddr,
        socket: &TcpStream,
        connection: Option<OwnedSemaphorePermit>,
    ) -> Option<Admitted> {
        let now = Instant::now();
        let stats = Arc::clone(&self.shared.stats);
        let admission = lock(&self.penalties).table.admit(peer.ip(), now);
        let tracked = match admission {
            Admission::Admitted => true,
            Admission::Untracked => false,
            Admission::Penalized { remaining } => {
                stats.add(&stats.refused_penalized);
                if let Some(count) = lock(&self.logs).refused_penalized.note(now) {
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
                if let Some(count) = lock(&self.logs).refused_at_source_cap.note(now) {
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
            admitted_at: now,
            verdict: Verdict::Neutral,
        };
        // The connection cap first: a refusal there must not evict anyone's handshake.
        let connection = match connection {
            Some(connection) => connection,
            None => self.admit_connection(peer, now)?,
        };
        let stage = if message1_waiting(socket) {
            HandshakeStage::AwaitingMessage3
        } else {
            HandshakeStage::AwaitingMessage1
        };
        let (handshake, evicted) = HandshakeSlot::enter(&self.handshakes, &stats, stage);
        if evicted {
            if let Some(count) = lock(&self.logs).evicted_at_handshake_cap.note(now) {
                warn!(
                    "limit of {} handshakes in progress reached: closed the oldest unfinished handshake for each newcomer, {count} time(s) (latest for {peer})",
                    self.shared.config.max_handshakes
                );
            }
        }
        Some(Admitted {
            _connection: Some(Slot::new(connection, &stats, |s| &s.connections_open)),
            handshake: Some(handshake),
            ticket: Some(ticket),
        })
    }
}

/// Where an unfinished handshake stands, which decides who is evicted first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum HandshakeStage {
    /// Connected, message 1 not in yet. An honest client sends it at once, so the
    /// oldest of these is almost surely a slowloris: evicted first.
    AwaitingMessage1,
    /// Message 1 in (the server did its Diffie-Hellman work and sent its key),
    /// awaiting the client's message 3, one round trip away for an honest client.
    AwaitingMessage3,
}

/// The handshakes in progress, by stage and order of arrival, each with the means
/// to close it.
pub(super) struct HandshakeTable {
    /// Most handshakes in progress at once.
    capacity: usize,
    /// The number the next handshake gets: arrival order, never reused.
    next_id: u64,
    /// Handshakes still waiting for message 1, by arrival number; sending the stage
    /// on (or dropping) the sender tells that connection to close.
    awaiting_message1: BTreeMap<u64, oneshot::Sender<HandshakeStage>>,
    /// Handshakes past message 1, likewise.
    awaiting_message3: BTreeMap<u64, oneshot::Sender<HandshakeStage>>,
}

impl HandshakeTable {
    pub(super) fn new(capacity: usize) -> Self {
        Self {
            capacity,
            next_id: 0,
            awaiting_message1: BTreeMap::new(),
            awaiting_message3: BTreeMap::new(),
        }
    }

    /// Handshakes in the table.
    fn len(&self) -> usize {
        self.awaiting_message1.len() + self.awaiting_message3.len()
    }

    /// Takes a place for a new handshake, evicting one when the table is full (the
    /// oldest still waiting for message 1, else the oldest waiting for message 3);
    /// returns the place's number, the receiver that completes when it is evicted,
    /// and whether another was evicted for it.
    pub(super) fn enter(
        &mut self,
        stage: HandshakeStage,
    ) -> (u64, oneshot::Receiver<HandshakeStage>, bool) {
        let evicted = self.len() >= self.capacity && self.evict_one();
        let id = self.next_id;
        self.next_id += 1;
        let (sender, receiver) = oneshot::channel();
        match stage {
            HandshakeStage::AwaitingMessage1 => self.awaiting_message1.insert(id, sender),
            HandshakeStage::AwaitingMessage3 => self.awaiting_message3.insert(id, sender),
        };
        (id, receiver, evicted)
    }

    fn evict_one(&mut self) -> bool {
        let (stage, evicted) = match self.awaiting_message1.pop_first() {
            Some((_, evicted)) => (HandshakeStage::AwaitingMessage1, evicted),
            None => match self.awaiting_message3.pop_first() {
                Some((_, evicted)) => (HandshakeStage::AwaitingMessage3, evicted),
                None => return false,
            },
        };
        // The connection may be closing on its own already: nobody to tell then.
        let _ = evicted.send(stage);
        true
    }

    /// Handshake `id` has received its message 1.
    pub(super) fn message1_received(&mut self, id: u64) {
        if let Some(sender) = self.awaiting_message1.remove(&id) {
            self.awaiting_message3.insert(id, sender);
        }
    }

    /// Whether handshake `id` is known to have received its message 1.
    #[cfg(test)]
    pub(super) fn past_message1(&self, id: u64) -> bool {
        self.awaiting_message3.contains_key(&id)
    }

    /// Gives place `id` back; whether it was still held (not evicted).
    fn leave(&mut self, id: u64) -> bool {
        self.awaiting_message1.remove(&id).is_some() || self.awaiting_message3.remove(&id).is_some()
    }
}

/// Caps the kernel buffers of an accepted connection at `bytes` each way
/// ([`ServerConfig::socket_buffer`](super::ServerConfig::socket_buffer); 0 leaves them
/// to the kernel). Two system calls per connection, none per message: the
/// handshake window the kernel advertised before the accept is not taken back, the
/// next ones follow the cap. A failure only leaves the kernel's tuning.
fn cap_socket_buffers(socket: &TcpStream, bytes: usize) {
    if bytes == 0 {
        return;
    }
    let socket = socket2::SockRef::from(socket);
    let _ = socket.set_recv_buffer_size(bytes);
    let _ = socket.set_send_buffer_size(bytes);
}

/// A place in the [`HandshakeTable`], counted in the `handshakes_in_progress` gauge
/// while held; given back on drop.
pub(super) struct HandshakeSlot {
    /// Its number in the table.
    id: u64,
    /// The table.
    table: Arc<Mutex<HandshakeTable>>,
    /// Completes when a newcomer evicted this handshake, with the stage it was at.
    evicted: oneshot::Receiver<HandshakeStage>,
    /// Where the gauge lives.
    stats: Arc<ServerStats>,
}

impl HandshakeSlot {
    /// Enters `table` at `stage`; also whether another handshake was evicted for
    /// this one.
    fn enter(
        table: &Arc<Mutex<HandshakeTable>>,
        stats: &Arc<ServerStats>,
        stage: HandshakeStage,
    ) -> (Self, bool) {
        let (id, evicted, evicted_another) = lock(table).enter(stage);
        if evicted_another {
            // One out, one in: the gauge stays where it is.
            stats.add(&stats.handshakes_evicted);
        } else {
            stats.add(&stats.handshakes_in_progress);
        }
        let slot = Self {
            id,
            table: Arc::clone(table),
            evicted,
            stats: Arc::clone(stats),
        };
        (slot, evicted_another)
    }
}

impl Drop for HandshakeSlot {
    fn drop(&mut self) {
        if lock(&self.table).leave(self.id) {
            self.stats.sub(&self.stats.handshakes_in_progress);
        }
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
    pub(super) penalties: Option<Arc<Mutex<Penalties>>>,
    /// The client's address.
    pub(super) addr: IpAddr,
    /// When it was admitted: failures of handshakes admitted before a refusal began
    /// belong to the offence that refusal punishes.
    pub(super) admitted_at: Instant,
    /// How the handshake ended; `Neutral` until decided.
    pub(super) verdict: Verdict,
}

impl Drop for SourceTicket {
    fn drop(&mut self) {
        let Some(penalties) = &self.penalties else {
            return;
        };
        let now = Instant::now();
        let mut penalties = lock(penalties);
        let begun = penalties
            .table
            .finish(self.addr, self.admitted_at, now, self.verdict);
        if let Some(period) = begun {
            penalties.stats.penalty_imposed(now + period);
            if let Some(count) = penalties.begun.note(now) {
                warn!(
                    "refusing {} for {}s after repeated failed handshakes ({count} refusal(s) begun since the last such line)",
                    self.addr,
                    period.as_secs_f32().ceil()
                );
            }
        }
    }
}

/// What an admitted connection holds until the matching stage is over.
pub(super) struct Admitted {
    /// Its place under the open-connections cap, for the whole connection; `None`
    /// for a connection the embedder admitted ([`Server::serve_connection`](super::Server::serve_connection)).
    pub(super) _connection: Option<Slot>,
    /// Its place under the handshakes cap, until the handshake is over.
    pub(super) handshake: Option<HandshakeSlot>,
    /// Its place in the per-source table, until the key is authorized or refused
    /// (not for the whole session: the per-source cap counts handshakes only).
    pub(super) ticket: Option<SourceTicket>,
}

impl Admitted {
    /// A connection admitted by the embedder: under no cap, not in the penalty table.
    pub(super) fn untracked(peer: SocketAddr) -> Self {
        Self {
            _connection: None,
            handshake: None,
            ticket: Some(SourceTicket {
                penalties: None,
                addr: peer.ip(),
                admitted_at: Instant::now(),
                verdict: Verdict::Neutral,
            }),
        }
    }

    /// Completes when a newcomer evicted this unfinished handshake; never, once the
    /// handshake is over or for a connection under no cap. A handshake evicted
    /// before its message 1 counts as a failure of its source (a slowloris); one
    /// evicted later, for nothing.
    pub(super) async fn evicted(&mut self) {
        let stage = match self.handshake.as_mut() {
            Some(slot) => (&mut slot.evicted)
                .await
                .unwrap_or(HandshakeStage::AwaitingMessage3),
            None => std::future::pending().await,
        };
        self.source_verdict(match stage {
            HandshakeStage::AwaitingMessage1 => Verdict::Failure,
            HandshakeStage::AwaitingMessage3 => Verdict::Neutral,
        });
    }

    /// `socket`, watched during the handshake so that the table knows when its
    /// message 1 is in (see [`HandshakeStage`]).
    pub(super) fn watch<'a, S>(&self, socket: &'a mut S) -> WatchedHandshake<'a, S> {
        let table = self
            .handshake
            .as_ref()
            .map(|slot| (Arc::clone(&slot.table), slot.id));
        WatchedHandshake::new(socket, table)
    }

    /// The handshake and the key check are over: reports `verdict` to the penalty
    /// table and gives the source's handshake ticket back.
    pub(super) fn source_verdict(&mut self, verdict: Verdict) {
        if let Some(mut ticket) = self.ticket.take() {
            ticket.verdict = verdict;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Accepted connections get capped kernel buffers (Linux reports twice the
    /// figure set, its bookkeeping included; without the cap it reports the
    /// `tcp_rmem` default and grows it up to the maximum), or the kernel's own
    /// with 0.
    #[tokio::test]
    async fn accepted_sockets_have_capped_kernel_buffers() {
        let listener = bind_addr("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let buffer = super::super::config::DEFAULT_SOCKET_BUFFER;
        let (client, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
        let (_client, (socket, _)) = (client.unwrap(), accepted.unwrap());
        let untouched = socket2::SockRef::from(&socket).recv_buffer_size().unwrap();
        cap_socket_buffers(&socket, 0);
        assert_eq!(
            socket2::SockRef::from(&socket).recv_buffer_size().unwrap(),
            untouched
        );
        cap_socket_buffers(&socket, buffer);
        let socket = socket2::SockRef::from(&socket);
        for size in [
            socket.recv_buffer_size().unwrap(),
            socket.send_buffer_size().unwrap(),
        ] {
            assert!(size <= 2 * buffer, "{size}");
            assert!(size >= buffer, "{size}");
        }
    }

    #[test]
    fn a_full_table_evicts_the_oldest_silent_handshake_first_then_the_oldest() {
        let mut table = HandshakeTable::new(3);
        let (first, mut first_evicted, evicted) = table.enter(HandshakeStage::AwaitingMessage1);
        assert!(!evicted);
        let (second, mut second_evicted, _) = table.enter(HandshakeStage::AwaitingMessage1);
        let (third, mut third_evicted, _) = table.enter(HandshakeStage::AwaitingMessage1);
        // The oldest sent its message 1: the next oldest, still silent, goes first.
        table.message1_received(first);
        let (_, _fourth_evicted, evicted) = table.enter(HandshakeStage::AwaitingMessage1);
        assert!(evicted);
        assert_eq!(table.len(), 3);
        assert_eq!(
            second_evicted.try_recv(),
            Ok(HandshakeStage::AwaitingMessage1)
        );
        assert!(first_evicted.try_recv().is_err());
        assert!(!table.leave(second), "an evicted place is not held");
        // Then the third (silent), then the first (past message 1) once the rest
        // have sent theirs.
        table.enter(HandshakeStage::AwaitingMessage1);
        assert_eq!(
            third_evicted.try_recv(),
            Ok(HandshakeStage::AwaitingMessage1)
        );
        let ids: Vec<u64> = table.awaiting_message1.keys().copied().collect();
        for id in ids {
            table.message1_received(id);
        }
        table.enter(HandshakeStage::AwaitingMessage1);
        assert_eq!(
            first_evicted.try_recv(),
            Ok(HandshakeStage::AwaitingMessage3)
        );
        assert!(!table.leave(first));
        assert!(!table.leave(third));
        assert_eq!(table.len(), 3);
    }

    #[test]
    fn a_finished_handshake_gives_its_place_back() {
        let mut table = HandshakeTable::new(2);
        let (id, _, _) = table.enter(HandshakeStage::AwaitingMessage1);
        table.message1_received(id);
        assert!(table.leave(id));
        assert_eq!(table.len(), 0);
        assert!(!table.leave(id));
    }
}
