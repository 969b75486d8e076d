//! The echo server: accepts TCP connections, runs the responder side of the
//! handshake, checks the client's key against authorized_keys, then answers each
//! REQUEST with its uppercase form until the client is done.
//!
//! [`run`] takes a bound listener and a shutdown future, so tests start a server
//! in-process on `127.0.0.1:0` and stop it when they like. One task serves each
//! connection; a semaphore caps how many are open; on shutdown the listener stops
//! accepting, idle connections close, and requests in flight are finished within a
//! bounded grace period.
//!
//! Defences against peers that never authenticate (sshd's `LoginGraceTime`,
//! `MaxStartups`, `PerSourceMaxStartups` and `PerSourcePenalties`):
//! - the whole handshake has one deadline, however the peer paces its bytes;
//! - handshakes in progress are capped server-wide and per source, and a source whose
//!   handshakes keep failing is refused for a growing time ([`penalty`]); all these
//!   checks run on accept, before a byte is read or any Diffie-Hellman work is done,
//!   and refusals are logged once per burst, not once per connection;
//! - an established session gets the idle timeout both to send its next request and
//!   to take each reply: a client that stops reading stalls our writes (TCP back
//!   pressure, so memory stays bounded), then is disconnected.
//!
//! Live revocation: authorized_keys is re-read whenever it changes, for the next
//! connection. A [`ReloadTrigger`] (SIGHUP in `serve`), or the file changing when
//! [`ServerConfig::revoke_live`] is on, also makes every open session check its key
//! again; a session whose key is no longer allowed gets the ERROR
//! `permission denied: key revoked` and is closed.

pub mod penalty;

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::ops::ControlFlow;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::{Duration, Instant, SystemTime};

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, Notify, OwnedSemaphorePermit, Semaphore};
use tracing::{debug, info, warn};

use self::penalty::{Admission, PenaltyBox, PenaltyConfig, Verdict};
use crate::wire::RecordHeader;

use crate::identity::PublicKey;
use crate::openssh::authorized_keys::AuthorizedKeys;
use crate::wire::{
    self, LocalIdentity, RecordType, RecvHalf, SendHalf, WireError, DEFAULT_REQUEST_LIMIT,
};

/// Default cap on open connections. Each costs a file descriptor and a few KiB.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
/// Default cap on handshakes in progress (sshd's `MaxStartups`). A silent peer costs
/// only a file descriptor and a task until the handshake deadline, so the cap is set
/// to ride out a thousand of them; per-source caps and penalties keep one source
/// from using it all.
pub const DEFAULT_MAX_HANDSHAKES: usize = 2048;
/// Default time between two checks of authorized_keys for a change, with
/// [`ServerConfig::revoke_live`].
pub const DEFAULT_REVOKE_POLL: Duration = Duration::from_secs(1);
/// The ERROR sent to a session whose key was removed from authorized_keys.
pub const KEY_REVOKED: &str = "key revoked";
/// Default time a client has to complete the handshake.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time an established session may sit without sending a request.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// How long a stopping server waits for requests in flight.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// After refusing a client, how long and how much we keep reading (and discarding)
/// before closing, so the client reads our ERROR instead of a connection reset.
const REFUSAL_DRAIN_TIME: Duration = Duration::from_millis(500);
const REFUSAL_DRAIN_BYTES: usize = 4 << 20;
/// How long sending a final ERROR and closing may take: a peer that does not read
/// must not hold the connection open.
const REFUSAL_SEND_TIME: Duration = Duration::from_secs(2);
/// Repeated log lines about the same condition (refusals at a cap, an unreadable
/// authorized_keys) are written at most this often, with a count.
const LOG_INTERVAL: Duration = Duration::from_secs(1);
/// An unreadable authorized_keys is reported at most this often while it lasts.
const UNREADABLE_LOG_INTERVAL: Duration = Duration::from_secs(60);

/// Everything a server needs to run.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The host identity with its Noise key derived once, shared by every connection.
    pub host: Arc<LocalIdentity>,
    /// The allow-list, re-read whenever it changes so edits apply to the next connection.
    pub authorized_keys: PathBuf,
    /// Largest REQUEST body accepted; one byte more gets an ERROR and the connection ends.
    pub max_request: u32,
    /// Connections open at once; past it, new connections are closed straight away.
    pub max_connections: usize,
    /// Handshakes in progress at once; past it, new connections are closed straight
    /// away, before any Diffie-Hellman work.
    pub max_handshakes: usize,
    /// Per-source limits: handshakes in progress, and refusals after failures.
    pub penalties: PenaltyConfig,
    /// End open sessions whose key leaves authorized_keys, checking the file every
    /// `revoke_poll`. Without it, only a [`ReloadTrigger`] pull does.
    pub revoke_live: bool,
    /// How often `revoke_live` looks at the file.
    pub revoke_poll: Duration,
    /// Pulled (on SIGHUP, say) to make open sessions check their key again.
    pub reload: ReloadTrigger,
    /// Counters the server keeps up to date, for tests, tools and operators.
    pub stats: Arc<ServerStats>,
    /// Total time allowed for the handshake, however the peer paces its bytes.
    pub handshake_timeout: Duration,
    /// Time an established session may wait for its next request.
    pub idle_timeout: Duration,
    /// On shutdown, how long requests in flight get to finish.
    pub shutdown_grace: Duration,
}

impl ServerConfig {
    /// A configuration with the default limits.
    pub fn new(host: Arc<LocalIdentity>, authorized_keys: PathBuf) -> Self {
        Self {
            host,
            authorized_keys,
            max_request: DEFAULT_REQUEST_LIMIT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_handshakes: DEFAULT_MAX_HANDSHAKES,
            penalties: PenaltyConfig::default(),
            revoke_live: false,
            revoke_poll: DEFAULT_REVOKE_POLL,
            reload: ReloadTrigger::default(),
            stats: Arc::new(ServerStats::default()),
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
        }
    }
}

/// Makes the open sessions of a running server check their key against
/// authorized_keys again, ending those no longer allowed. `serve` pulls it on SIGHUP;
/// tests pull it directly. Clones pull the same trigger.
#[derive(Debug, Clone)]
pub struct ReloadTrigger {
    /// The generation number, bumped on each pull; sessions watch it.
    generation: Arc<watch::Sender<u64>>,
}

impl Default for ReloadTrigger {
    fn default() -> Self {
        Self {
            generation: Arc::new(watch::Sender::new(0)),
        }
    }
}

impl ReloadTrigger {
    /// Asks every open session to re-check its key now.
    pub fn trigger(&self) {
        self.generation.send_modify(|generation| *generation += 1);
    }

    fn subscribe(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }
}

/// Defines [`ServerStats`] (atomic counters), [`StatsSnapshot`] (plain copies) and
/// `ServerStats::snapshot` from one list, so a counter is named once.
macro_rules! counters {
    ($($(#[doc = $doc:literal])* $name:ident,)*) => {
        /// Live counters of a server. Gauges go up and down; the rest only go up.
        #[derive(Debug, Default)]
        pub struct ServerStats {
            $($(#[doc = $doc])* pub $name: AtomicU64,)*
            /// Woken on every change, for [`ServerStats::wait_for`].
            changed: Notify,
        }

        /// A copy of [`ServerStats`] at one moment.
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        pub struct StatsSnapshot {
            $($(#[doc = $doc])* pub $name: u64,)*
        }

        impl ServerStats {
            /// The current values.
            pub fn snapshot(&self) -> StatsSnapshot {
                StatsSnapshot {
                    $($name: self.$name.load(Ordering::Relaxed),)*
                }
            }
        }
    };
}

counters! {
    /// Connections open now (gauge).
    connections_open,
    /// Handshakes in progress now (gauge).
    handshakes_in_progress,
    /// Connections accepted from the listener, refused or not.
    accepted,
    /// Closed on arrival: the open-connections cap was reached.
    refused_connection_cap,
    /// Closed on arrival: the handshakes-in-progress cap was reached.
    refused_handshake_cap,
    /// Closed on arrival: the source had its most handshakes in progress.
    refused_source_cap,
    /// Closed on arrival: the source is serving a penalty.
    refused_penalized,
    /// Handshakes that failed: garbage, protocol violations, early close.
    handshake_failures,
    /// Handshakes not completed in time.
    handshake_timeouts,
    /// Clients whose key was refused.
    denied,
    /// Sessions that passed authorization.
    sessions,
    /// Sessions ended because their key was revoked.
    revoked,
    /// Sessions closed for idling or for not taking their replies.
    idle_timeouts,
    /// Requests answered.
    requests,
}

impl ServerStats {
    /// Waits until `condition` holds for the counters, or `timeout` passes; returns
    /// the last snapshot and whether the condition held. Wakes on every change, so
    /// tests wait on events instead of sleeping.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        condition: impl Fn(&StatsSnapshot) -> bool,
    ) -> (StatsSnapshot, bool) {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let snapshot = self.snapshot();
            if condition(&snapshot) {
                return (snapshot, true);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                let snapshot = self.snapshot();
                return (snapshot, condition(&snapshot));
            }
        }
    }

    fn add(&self, counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
        self.changed.notify_waiters();
    }

    fn sub(&self, counter: &AtomicU64) {
        counter.fetch_sub(1, Ordering::Relaxed);
        self.changed.notify_waiters();
    }
}

/// Room in the kernel's queue of connections not yet accepted. Under a connection
/// flood the server accepts and closes thousands a second; when this queue overflows
/// the kernel drops SYNs, and an honest client waits a second for its retransmit.
/// Linux caps it at `net.core.somaxconn` (4096 by default); tokio's `bind` uses 1024.
pub const LISTEN_BACKLOG: u32 = 4096;

/// Binds a listener for [`run`] on the first address `listen` (`host:port`) resolves
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

/// Runs the server on `listener` until `shutdown` completes, then stops accepting,
/// lets connections finish the request they are on (up to `shutdown_grace`), and
/// returns.
///
/// # Errors
/// Only if the listener itself fails for good; a failing connection never ends the
/// server.
pub async fn run(
    listener: TcpListener,
    config: ServerConfig,
    shutdown: impl Future,
) -> io::Result<()> {
    let (notify_shutdown, shutdown_signal) = watch::channel(false);
    let (connection_done, mut all_connections_done) = mpsc::channel::<()>(1);
    let authorized_keys = Arc::new(AuthorizedKeysCache::new(config.authorized_keys.clone()));
    let watcher = config.revoke_live.then(|| {
        tokio::spawn(watch_for_changes(
            Arc::clone(&authorized_keys),
            config.reload.clone(),
            config.revoke_poll,
        ))
    });
    let mut server = Listener {
        limit_connections: Arc::new(Semaphore::new(config.max_connections)),
        limit_handshakes: Arc::new(Semaphore::new(config.max_handshakes)),
        penalties: Arc::new(Mutex::new(PenaltyBox::new(config.penalties.clone()))),
        authorized_keys,
        config: Arc::new(config),
        listener,
        shutdown_signal,
        connection_done,
        refused_at_connection_cap: BurstLog::default(),
        refused_at_handshake_cap: BurstLog::default(),
        refused_at_source_cap: BurstLog::default(),
        refused_penalized: BurstLog::default(),
    };
    let result = tokio::select! {
        result = server.accept_loop() => result,
        _ = shutdown => {
            info!("shutting down: no new connections; finishing requests in flight");
            Ok(())
        }
    };
    if let Some(watcher) = watcher {
        watcher.abort();
    }
    let grace = server.config.shutdown_grace;
    let Listener {
        connection_done, ..
    } = server;
    // Every handler holds a clone of `connection_done`; when the last one is dropped,
    // `recv` returns None.
    drop(connection_done);
    let _ = notify_shutdown.send(true);
    if tokio::time::timeout(grace, all_connections_done.recv())
        .await
        .is_err()
    {
        warn!(
            "shutdown grace period of {:?} over: closing the remaining connections",
            grace
        );
    }
    result
}

/// With `revoke_live`: pulls the reload trigger whenever authorized_keys changes.
/// Polling one `stat` a second is cheap and works on every filesystem, editors'
/// rename-into-place included, where change notification would need a dependency.
async fn watch_for_changes(keys: Arc<AuthorizedKeysCache>, reload: ReloadTrigger, every: Duration) {
    let mut last = FileVersion::of(&keys.path).ok();
    let mut interval = tokio::time::interval(every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let now = FileVersion::of(&keys.path).ok();
        if now != last {
            last = now;
            info!(
                "{} changed: checking the keys of open sessions",
                keys.path.display()
            );
            reload.trigger();
        }
    }
}

/// Counts refusals of one kind and says when to log them: the first of a burst at
/// once, then at most one line per [`LOG_INTERVAL`] with how many there were.
#[derive(Debug, Default)]
struct BurstLog {
    /// Refusals not yet logged.
    unlogged: u64,
    /// When the last line was written.
    last_log: Option<Instant>,
}

impl BurstLog {
    /// Counts one refusal; returns how many to report if a line is due now.
    fn note(&mut self, now: Instant) -> Option<u64> {
        self.unlogged += 1;
        let due = self
            .last_log
            .is_none_or(|last| now.saturating_duration_since(last) >= LOG_INTERVAL);
        if !due {
            return None;
        }
        self.last_log = Some(now);
        Some(std::mem::take(&mut self.unlogged))
    }
}

/// The accepting side: owns the listener and hands each connection to a task.
struct Listener {
    /// Shared, read-only settings.
    config: Arc<ServerConfig>,
    /// The bound socket, from the caller.
    listener: TcpListener,
    /// One permit per open connection; when none is left, new connections are refused.
    limit_connections: Arc<Semaphore>,
    /// One permit per handshake in progress; when none is left, new connections are
    /// refused.
    limit_handshakes: Arc<Semaphore>,
    /// Per-source handshake counts and penalties.
    penalties: Arc<Mutex<PenaltyBox>>,
    /// The parsed allow-list, reloaded when the file changes.
    authorized_keys: Arc<AuthorizedKeysCache>,
    /// Becomes `true` when the server stops; handlers watch it between requests.
    shutdown_signal: watch::Receiver<bool>,
    /// Cloned into every handler, so shutdown can wait until all are dropped.
    connection_done: mpsc::Sender<()>,
    /// Refusals at the open-connections cap, logged once per burst.
    refused_at_connection_cap: BurstLog,
    /// Refusals at the handshakes-in-progress cap, logged once per burst.
    refused_at_handshake_cap: BurstLog,
    /// Refusals at the per-source handshake cap, logged once per burst.
    refused_at_source_cap: BurstLog,
    /// Refusals of penalized sources, logged once per burst.
    refused_penalized: BurstLog,
}

impl Listener {
    async fn accept_loop(&mut self) -> io::Result<()> {
        info!(
            "listening on {} host_key={}",
            self.listener.local_addr()?,
            self.config.host.public_key().fingerprint()
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
            let stats = &self.config.stats;
            stats.add(&stats.accepted);
            // Every check below is a counter or a hash lookup: a refused connection is
            // closed before we read a byte or do any Diffie-Hellman work.
            let Some(admitted) = self.admit(peer) else {
                drop(socket);
                continue;
            };
            let handler = Handler {
                peer,
                config: Arc::clone(&self.config),
                authorized_keys: Arc::clone(&self.authorized_keys),
                shutdown_signal: self.shutdown_signal.clone(),
                reload: self.config.reload.subscribe(),
                _connection_done: self.connection_done.clone(),
            };
            tokio::spawn(async move {
                handler.run(socket, admitted).await;
            });
        }
    }

    /// Applies the caps and the penalties to a new connection from `peer`.
    fn admit(&mut self, peer: SocketAddr) -> Option<Admitted> {
        let now = Instant::now();
        let stats = Arc::clone(&self.config.stats);
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
                        self.config.penalties.max_handshakes_per_source,
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
                    self.config.max_handshakes
                );
            }
            return None;
        };
        let Ok(connection) = Arc::clone(&self.limit_connections).try_acquire_owned() else {
            stats.add(&stats.refused_connection_cap);
            if let Some(count) = self.refused_at_connection_cap.note(now) {
                warn!(
                    "connection limit of {} reached: refused {count} connection(s) (latest from {peer})",
                    self.config.max_connections
                );
            }
            return None;
        };
        Some(Admitted {
            _connection: Slot::new(connection, &stats, |s| &s.connections_open),
            handshake: Some(Slot::new(handshake, &stats, |s| &s.handshakes_in_progress)),
            ticket,
        })
    }
}

/// A permit that also counts itself in a [`ServerStats`] gauge while held.
struct Slot {
    /// The semaphore permit, released on drop.
    _permit: OwnedSemaphorePermit,
    /// Where the gauge lives.
    stats: Arc<ServerStats>,
    /// Which gauge.
    gauge: fn(&ServerStats) -> &AtomicU64,
}

impl Slot {
    fn new(
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
struct SourceTicket {
    /// The table; `None` when it does not track this source (exempt, or full).
    penalties: Option<Arc<Mutex<PenaltyBox>>>,
    /// The client's address.
    addr: IpAddr,
    /// How the handshake ended; `Neutral` until decided.
    verdict: Verdict,
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
struct Admitted {
    /// Its place under the open-connections cap, for the whole connection.
    _connection: Slot,
    /// Its place under the handshakes cap, until the handshake is over.
    handshake: Option<Slot>,
    /// Its place in the per-source table, until the key is authorized or refused.
    ticket: SourceTicket,
}

/// Serves one connection.
struct Handler {
    /// The client's address, for `from=` and the log.
    peer: SocketAddr,
    /// Shared, read-only settings.
    config: Arc<ServerConfig>,
    /// The allow-list, consulted once the client's key is known.
    authorized_keys: Arc<AuthorizedKeysCache>,
    /// Tells the handler the server is stopping.
    shutdown_signal: watch::Receiver<bool>,
    /// Changes when open sessions must check their key again.
    reload: watch::Receiver<u64>,
    /// Dropped with the handler: lets shutdown know this connection is finished.
    _connection_done: mpsc::Sender<()>,
}

/// What a connection did, for its one log line.
#[derive(Debug, Default)]
struct Summary {
    /// The client's key, once the handshake has proven it.
    client: Option<PublicKey>,
    /// The comment of the authorized_keys line that admitted it.
    comment: String,
    /// Requests answered.
    requests: u64,
    /// Request body bytes received.
    bytes_in: u64,
    /// Reply body bytes sent.
    bytes_out: u64,
}

/// How a connection ended.
enum Outcome {
    /// The client finished and closed, or the server stopped.
    Closed,
    /// The client's key is not allowed.
    Denied(String),
    /// The client's key was removed from authorized_keys during the session.
    Revoked,
    /// The client sent a request over the limit.
    TooLarge { len: u32 },
    /// The handshake did not complete in time.
    HandshakeTimeout,
    /// The session sat idle too long.
    IdleTimeout,
    /// The client did not take its replies within the idle timeout.
    Stalled,
    /// The connection or the peer failed.
    Failed(WireError),
}

impl Handler {
    async fn run(mut self, mut socket: TcpStream, mut admitted: Admitted) {
        let started = Instant::now();
        // Replies are small and latency matters: don't let Nagle hold them back.
        let _ = socket.set_nodelay(true);
        let mut summary = Summary::default();
        let outcome = self.serve(&mut socket, &mut admitted, &mut summary).await;
        drop(admitted);
        let stats = &self.config.stats;
        match &outcome {
            Outcome::HandshakeTimeout => stats.add(&stats.handshake_timeouts),
            Outcome::Failed(_) if summary.client.is_none() => stats.add(&stats.handshake_failures),
            Outcome::Denied(_) => stats.add(&stats.denied),
            Outcome::Revoked => stats.add(&stats.revoked),
            Outcome::IdleTimeout | Outcome::Stalled => stats.add(&stats.idle_timeouts),
            _ => {}
        }
        let client = summary
            .client
            .map(|key| key.fingerprint().to_string())
            .unwrap_or_else(|| "-".to_owned());
        let duration_ms = started.elapsed().as_millis() as u64;
        let peer = self.peer;
        let (requests, bytes_in, bytes_out) =
            (summary.requests, summary.bytes_in, summary.bytes_out);
        let comment = summary.comment;
        match outcome {
            Outcome::Closed => {
                info!(%peer, client, comment, requests, bytes_in, bytes_out, duration_ms, "closed")
            }
            Outcome::Denied(reason) => {
                info!(%peer, client, comment, duration_ms, "denied: {reason}")
            }
            Outcome::Revoked => {
                info!(%peer, client, comment, requests, bytes_in, bytes_out, duration_ms, "closed: key revoked")
            }
            Outcome::TooLarge { len } => {
                info!(%peer, client, comment, requests, bytes_in, bytes_out, duration_ms, "closed: request of {len} bytes over the limit of {}", self.config.max_request)
            }
            Outcome::HandshakeTimeout => {
                info!(%peer, duration_ms, "closed: handshake not completed within {:?}", self.config.handshake_timeout)
            }
            Outcome::IdleTimeout => {
                info!(%peer, client, comment, requests, bytes_in, bytes_out, duration_ms, "closed: idle for {:?}", self.config.idle_timeout)
            }
            Outcome::Stalled => {
                info!(%peer, client, comment, requests, bytes_in, bytes_out, duration_ms, "closed: the client took no replies for {:?}", self.config.idle_timeout)
            }
            Outcome::Failed(error) => {
                info!(%peer, client, comment, requests, bytes_in, bytes_out, duration_ms, "failed: {error}")
            }
        }
    }

    async fn serve(
        &mut self,
        socket: &mut TcpStream,
        admitted: &mut Admitted,
        summary: &mut Summary,
    ) -> Outcome {
        // One deadline for the whole handshake: a peer trickling a byte at a time
        // gains nothing, unlike with a per-read timeout.
        let handshake = tokio::time::timeout(
            self.config.handshake_timeout,
            // Boxed: the handshake's state lives on the heap only while it runs,
            // instead of enlarging every connection's task for its whole life.
            Box::pin(wire::respond(socket, &self.config.host)),
        );
        let result = tokio::select! {
            result = handshake => result,
            // A stopping server does not wait for handshakes: nothing is in flight.
            _ = self.shutdown_signal.changed() => return Outcome::Closed,
        };
        admitted.handshake = None;
        let established = match result {
            Err(_) => {
                admitted.ticket.verdict = Verdict::Failure;
                return Outcome::HandshakeTimeout;
            }
            Ok(Err(error)) => {
                admitted.ticket.verdict = Verdict::Failure;
                return Outcome::Failed(error);
            }
            Ok(Ok(established)) => established,
        };
        let client = *established.peer();
        summary.client = Some(client);
        let (reader, writer) = socket.split();
        let (mut rx, mut tx) = established.into_halves(reader, writer);

        if let Err(reason) = self.authorize(&client, summary) {
            admitted.ticket.verdict = Verdict::Failure;
            let message = format!("{}: {reason}", wire::session::PERMISSION_DENIED_PREFIX);
            send_refusal(&mut tx, rx, &message).await;
            return Outcome::Denied(reason);
        }
        admitted.ticket.verdict = Verdict::Success;
        let stats = &self.config.stats;
        stats.add(&stats.sessions);
        // Sessions check their key on the next reload, not on one that came before.
        self.reload.mark_unchanged();
        let end = self.echo(&mut rx, &mut tx, &client, summary).await;
        // Closing the socket (when the handler returns) sends our FIN: the replies
        // only need flushing, and nothing is left unread that would turn the close
        // into a reset (the client ended its stream, or went quiet). No separate
        // shutdown(2): one system call less per session.
        match end {
            Ok(EchoEnd::Done) => {
                let _ = tokio::time::timeout(REFUSAL_SEND_TIME, tx.flush()).await;
                Outcome::Closed
            }
            Ok(EchoEnd::Idle) => {
                let _ = tokio::time::timeout(REFUSAL_SEND_TIME, tx.flush()).await;
                Outcome::IdleTimeout
            }
            // Our writes are stuck: don't wait on them again, just close.
            Ok(EchoEnd::Stalled) => Outcome::Stalled,
            Ok(EchoEnd::Revoked) => {
                let message = format!("{}: {KEY_REVOKED}", wire::session::PERMISSION_DENIED_PREFIX);
                send_refusal(&mut tx, rx, &message).await;
                Outcome::Revoked
            }
            Ok(EchoEnd::TooLarge { len }) => {
                let message =
                    crate::echo::too_large(u64::from(len), u64::from(self.config.max_request));
                send_refusal(&mut tx, rx, &message).await;
                Outcome::TooLarge { len }
            }
            Err(error) => {
                // Replies to the complete requests before the failure point may still
                // be waiting to batch with the next one; they are owed (wire-v1
                // section 7, truncation). Bounded, so a peer that stops reading
                // cannot hold the connection open.
                if !matches!(error, WireError::Io(_)) {
                    let _ = tokio::time::timeout(REFUSAL_DRAIN_TIME, tx.flush()).await;
                }
                Outcome::Failed(error)
            }
        }
    }

    /// Checks the client's key against the current authorized_keys. A missing or
    /// unreadable file denies everyone.
    fn authorize(&self, client: &PublicKey, summary: &mut Summary) -> Result<(), String> {
        let keys = self.authorized_keys.current().map_err(|_| {
            format!(
                "key {} is not authorized on this server",
                client.fingerprint()
            )
        })?;
        let address = canonical_ip(self.peer.ip());
        match keys.authorize(client, address, SystemTime::now()) {
            Ok(entry) => {
                summary.comment = entry.comment.clone();
                Ok(())
            }
            Err(denial) => Err(denial.to_string()),
        }
    }

    /// Answers requests until the client ends its stream, the server stops, the
    /// session idles out, the key is revoked, or a request is over the limit.
    async fn echo<R, W>(
        &mut self,
        rx: &mut RecvHalf<R>,
        tx: &mut SendHalf<W>,
        client: &PublicKey,
        summary: &mut Summary,
    ) -> Result<EchoEnd, WireError>
    where
        R: AsyncRead + Unpin,
        W: tokio::io::AsyncWrite + Unpin,
    {
        let mut body = Vec::new();
        loop {
            if *self.shutdown_signal.borrow() {
                return Ok(EchoEnd::Done);
            }
            // Each step is its own future, awaited in turn, so the task holds the
            // larger of the two rather than both.
            let header = match self.next_request(rx, client).await? {
                ControlFlow::Continue(header) => header,
                ControlFlow::Break(end) => return Ok(end),
            };
            // Only REQUEST can arrive here: the decoder refuses the server's own types.
            if header.len > self.config.max_request {
                return Ok(EchoEnd::TooLarge { len: header.len });
            }
            if let ControlFlow::Break(end) = self.answer_in_time(rx, tx, &mut body, summary).await?
            {
                return Ok(end);
            }
            // Keep the buffer of a large request only while it is in use.
            if body.capacity() > 64 * 1024 {
                body = Vec::new();
            }
        }
    }

    /// Waits for the next request's header, under the idle timeout, watching for
    /// shutdown and for a reload that revokes the client's key.
    async fn next_request<R>(
        &mut self,
        rx: &mut RecvHalf<R>,
        client: &PublicKey,
    ) -> Result<ControlFlow<EchoEnd, RecordHeader>, WireError>
    where
        R: AsyncRead + Unpin,
    {
        // The wait for the next request is never cancelled while the session goes
        // on (a cancelled read leaves its half unusable): a reload that leaves
        // the key allowed goes back to the same wait.
        let header = {
            let next = rx.next_record();
            tokio::pin!(next);
            // A pipelined request is usually already buffered: take it without
            // arming the idle timer or the shutdown and reload waits (a clock read,
            // a timer and two watch registrations per request otherwise). Only
            // when it would wait, or a reload is pending, does it go the long way.
            let ready = match self.reload.has_changed() {
                Ok(false) => poll_once(next.as_mut()).await,
                _ => None,
            };
            if let Some(header) = ready {
                Ok(header)
            } else {
                let next = tokio::time::timeout(self.config.idle_timeout, next);
                tokio::pin!(next);
                loop {
                    let reload = &mut self.reload;
                    let reloaded = async {
                        if reload.changed().await.is_err() {
                            // The trigger lives as long as the config: never, in practice.
                            std::future::pending::<()>().await;
                        }
                    };
                    tokio::select! {
                        header = &mut next => break header,
                        _ = self.shutdown_signal.changed() => return Ok(ControlFlow::Break(EchoEnd::Done)),
                        () = reloaded => {
                            if !still_authorized(&self.authorized_keys, self.peer, client) {
                                return Ok(ControlFlow::Break(EchoEnd::Revoked));
                            }
                        }
                    }
                }
            }
        };
        let header = match header {
            Err(_) => return Ok(ControlFlow::Break(EchoEnd::Idle)),
            Ok(header) => header?,
        };
        let Some(header) = header else {
            return Ok(ControlFlow::Break(EchoEnd::Done));
        };
        Ok(ControlFlow::Continue(header))
    }

    /// [`Handler::answer`] under the idle timeout.
    async fn answer_in_time<R, W>(
        &self,
        rx: &mut RecvHalf<R>,
        tx: &mut SendHalf<W>,
        body: &mut Vec<u8>,
        summary: &mut Summary,
    ) -> Result<ControlFlow<EchoEnd>, WireError>
    where
        R: AsyncRead + Unpin,
        W: tokio::io::AsyncWrite + Unpin,
    {
        // The body and the reply get the idle timeout too: a client trickling its
        // body, or not reading our replies (TCP back pressure stalls our writes),
        // is cut off instead of holding the connection and its buffers forever.
        {
            let answer = self.answer(rx, tx, body, summary);
            tokio::pin!(answer);
            // As above: the timer is armed only if answering has to wait.
            match poll_once(answer.as_mut()).await {
                Some(result) => result?,
                None => match tokio::time::timeout(self.config.idle_timeout, answer).await {
                    Err(_) => return Ok(ControlFlow::Break(EchoEnd::Stalled)),
                    Ok(result) => result?,
                },
            }
        }
        Ok(ControlFlow::Continue(()))
    }

    /// Reads one request's body and queues its reply, flushing unless more requests
    /// are already here.
    async fn answer<R, W>(
        &self,
        rx: &mut RecvHalf<R>,
        tx: &mut SendHalf<W>,
        body: &mut Vec<u8>,
        summary: &mut Summary,
    ) -> Result<(), WireError>
    where
        R: AsyncRead + Unpin,
        W: tokio::io::AsyncWrite + Unpin,
    {
        rx.read_body(body, self.config.max_request).await?;
        summary.requests += 1;
        summary.bytes_in += body.len() as u64;
        match crate::echo::answer(body) {
            crate::echo::Answer::InPlace => {
                summary.bytes_out += body.len() as u64;
                tx.write_record(RecordType::Response, body).await?;
            }
            crate::echo::Answer::Converted(upper) => {
                summary.bytes_out += upper.len() as u64;
                tx.write_record(RecordType::Response, upper.as_bytes())
                    .await?;
            }
            reply @ crate::echo::Answer::NotUtf8 { .. } => {
                let reason = reply.error_text().unwrap_or_default();
                tx.write_record(RecordType::Error, reason.as_bytes())
                    .await?;
            }
        }
        let stats = &self.config.stats;
        stats.add(&stats.requests);
        // Answer now unless more requests are already here: never wait for the
        // client's end of stream, but batch the replies of a pipelined burst.
        if !rx.has_buffered_input() {
            tx.flush().await?;
        }
        Ok(())
    }
}

/// Polls `future` once: its output if it is ready, `None` if it would wait (it is
/// left in progress, with this task's waker registered, to be polled again).
async fn poll_once<F: Future + ?Sized>(mut future: Pin<&mut F>) -> Option<F::Output> {
    std::future::poll_fn(|cx| match future.as_mut().poll(cx) {
        Poll::Ready(output) => Poll::Ready(Some(output)),
        Poll::Pending => Poll::Ready(None),
    })
    .await
}

/// After a reload: whether a session's key is still allowed. An unreadable file
/// (mid-edit, say) keeps the session: new connections are refused until it is
/// readable, and a missing file is no proof that this key was revoked.
fn still_authorized(keys: &AuthorizedKeysCache, peer: SocketAddr, client: &PublicKey) -> bool {
    match keys.current() {
        Ok(keys) => keys
            .authorize(client, canonical_ip(peer.ip()), SystemTime::now())
            .is_ok(),
        Err(_) => true,
    }
}

/// Why the echo loop stopped without an error.
enum EchoEnd {
    /// End of stream, or server shutdown.
    Done,
    /// No request within the idle timeout.
    Idle,
    /// A request's body or reply did not get through within the idle timeout.
    Stalled,
    /// The client's key is no longer authorized.
    Revoked,
    /// A request over the limit (its body was not read).
    TooLarge { len: u32 },
}

/// Sends a final ERROR, closes our direction, and drains what the client still
/// sends for a short while, so its kernel does not receive a reset that could
/// destroy the ERROR before the client reads it. Bounded in time: a client that
/// does not read cannot hold the connection open.
async fn send_refusal<R, W>(tx: &mut SendHalf<W>, rx: RecvHalf<R>, reason: &str)
where
    R: AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    let send = async {
        tx.write_record(RecordType::Error, reason.as_bytes())
            .await?;
        tx.shutdown().await
    };
    match tokio::time::timeout(REFUSAL_SEND_TIME, send).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => {
            debug!("could not send the refusal: {error}");
            return;
        }
        Err(_) => {
            debug!("could not send the refusal within {REFUSAL_SEND_TIME:?}");
            return;
        }
    }
    let mut reader = rx.into_inner();
    // On the heap: an array here would be part of every connection's task (async
    // state is sized for its largest state), idle or not.
    let mut scratch = vec![0u8; 4096];
    let mut drained = 0usize;
    let drain = async {
        while drained < REFUSAL_DRAIN_BYTES {
            match reader.read(&mut scratch).await {
                Ok(0) | Err(_) => break,
                Ok(read) => drained += read,
            }
        }
    };
    let _ = tokio::time::timeout(REFUSAL_DRAIN_TIME, drain).await;
    debug!("drained {drained} bytes after refusing the client");
}

/// An IPv4 client seen through an IPv6 socket is matched as IPv4 by `from=`.
fn canonical_ip(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

/// authorized_keys, parsed once per version of the file.
///
/// Every connection stats the file (one syscall) and re-parses only when it changed,
/// so `authorize` and `authorize --remove` apply to the very next connection without
/// the cost of parsing the file each time.
struct AuthorizedKeysCache {
    /// The file.
    path: PathBuf,
    /// The last version seen and its parse.
    cached: Mutex<Option<(FileVersion, Arc<AuthorizedKeys>)>>,
    /// While the file cannot be read: the error last logged, when, and how many
    /// clients were denied since. Every connection hits the error, so it is logged
    /// when it starts or changes, then at most every [`UNREADABLE_LOG_INTERVAL`].
    unreadable: Mutex<Option<UnreadableLog>>,
}

/// The rate limit of the "cannot read authorized_keys" warning.
#[derive(Debug)]
struct UnreadableLog {
    /// The error text last logged.
    error: String,
    /// When.
    logged_at: Instant,
    /// Clients denied since, not yet reported.
    denied_since: u64,
}

/// What identifies a version of a file: our own writes rename a new inode into place,
/// editors that rewrite in place change the size or the modification time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileVersion {
    /// The filesystem.
    device: u64,
    /// The inode: a new one after a rename into place.
    inode: u64,
    /// The size in bytes.
    size: u64,
    /// The modification time, in nanoseconds since the epoch.
    modified_ns: i128,
    /// The status change time, in nanoseconds since the epoch.
    changed_ns: i128,
}

impl FileVersion {
    fn of(path: &Path) -> io::Result<Self> {
        let metadata = std::fs::metadata(path)?;
        Ok(Self {
            device: metadata.dev(),
            inode: metadata.ino(),
            size: metadata.size(),
            modified_ns: i128::from(metadata.mtime()) * 1_000_000_000
                + i128::from(metadata.mtime_nsec()),
            changed_ns: i128::from(metadata.ctime()) * 1_000_000_000
                + i128::from(metadata.ctime_nsec()),
        })
    }
}

impl AuthorizedKeysCache {
    fn new(path: PathBuf) -> Self {
        Self {
            path,
            cached: Mutex::new(None),
            unreadable: Mutex::new(None),
        }
    }

    /// The current parse, with an unreadable file reported (rate-limited).
    fn current(&self) -> io::Result<Arc<AuthorizedKeys>> {
        let result = self.load_current();
        let mut unreadable = self
            .unreadable
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match &result {
            Ok(_) => {
                if unreadable.take().is_some() {
                    info!("{} is readable again", self.path.display());
                }
            }
            Err(error) => {
                let now = Instant::now();
                let text = error.to_string();
                let due = match unreadable.as_mut() {
                    None => true,
                    Some(log) => {
                        log.denied_since += 1;
                        log.error != text
                            || now.saturating_duration_since(log.logged_at)
                                >= UNREADABLE_LOG_INTERVAL
                    }
                };
                if due {
                    let since = unreadable.as_ref().map_or(0, |log| log.denied_since);
                    warn!(
                        "cannot read {}: {text}; denying every client until it is readable ({since} denied since the last report)",
                        self.path.display()
                    );
                    *unreadable = Some(UnreadableLog {
                        error: text,
                        logged_at: now,
                        denied_since: 0,
                    });
                }
            }
        }
        result
    }

    fn load_current(&self) -> io::Result<Arc<AuthorizedKeys>> {
        let version = FileVersion::of(&self.path)?;
        {
            let cached = self
                .cached
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if let Some((seen, keys)) = cached.as_ref() {
                if *seen == version {
                    return Ok(Arc::clone(keys));
                }
            }
        }
        let keys = Arc::new(AuthorizedKeys::load(&self.path)?);
        for warning in &keys.warnings {
            warn!("{warning}");
        }
        info!(
            "loaded {} key(s) from {}",
            keys.entries.len(),
            self.path.display()
        );
        // The stat above may predate the read; if the file changed in between, the
        // next connection sees a different version and loads again.
        let mut cached = self
            .cached
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *cached = Some((version, Arc::clone(&keys)));
        Ok(keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn poll_once_leaves_a_waiting_future_in_progress() {
        let ready = std::future::ready(7);
        tokio::pin!(ready);
        assert_eq!(poll_once(ready.as_mut()).await, Some(7));

        let (sender, receiver) = tokio::sync::oneshot::channel::<u8>();
        tokio::pin!(receiver);
        assert_eq!(poll_once(receiver.as_mut()).await, None);
        sender.send(3).unwrap();
        // The same future, polled on: nothing was lost by the first poll.
        assert_eq!(receiver.await, Ok(3));
    }

    #[test]
    fn refusals_are_logged_once_per_burst_with_a_count() {
        let mut log = BurstLog::default();
        let start = Instant::now();
        // The first refusal is logged at once, with a count of one.
        assert_eq!(log.note(start), Some(1));
        // 1,000 more within the second: no line.
        for n in 0..1000 {
            assert_eq!(log.note(start + Duration::from_micros(n * 900)), None);
        }
        // The next one after the interval reports them all.
        assert_eq!(log.note(start + LOG_INTERVAL), Some(1001));
        assert_eq!(log.note(start + LOG_INTERVAL * 2), Some(1));
    }

    #[test]
    fn an_unreadable_authorized_keys_is_reported_once_not_per_connection() {
        let dir = tempfile::tempdir().unwrap();
        let cache = AuthorizedKeysCache::new(dir.path().join("missing"));
        for _ in 0..100 {
            assert!(cache.current().is_err());
        }
        let unreadable = cache.unreadable.lock().unwrap();
        let log = unreadable.as_ref().expect("the error was reported");
        // One report, then 99 denials counted for the next one.
        assert_eq!(log.denied_since, 99);
    }
}
