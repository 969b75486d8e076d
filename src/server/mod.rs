//! The echo server: accepts TCP connections, runs the responder side of the
//! handshake, checks the client's key against authorized_keys, then answers each
//! REQUEST with its uppercase form until the client is done.
//!
//! [`run`] takes a bound listener (or several: [`Server::run_on`]) and a shutdown future, so tests start a server
//! in-process on `127.0.0.1:0` and stop it when they like. One task serves each
//! connection; a semaphore caps how many are open; on shutdown the listener stops
//! accepting, every session answers the requests it has read, sends FIN and drains
//! what its client still sends until the client closes (so no close is a reset that
//! destroys replies in flight), all within a bounded grace period.
//!
//! Defences against authorized clients: a server-wide memory budget for request and
//! reply bodies in flight, enforced by back-pressure ([`ServerConfig::memory_budget`],
//! see `resources.rs`), a cap on sessions per key and an optional session lifetime.
//!
//! Defences against peers that never authenticate (sshd's `LoginGraceTime`,
//! `MaxStartups`, `PerSourceMaxStartups` and `PerSourcePenalties`):
//! - the whole handshake has one deadline, however the peer paces its bytes;
//! - handshakes in progress are capped server-wide (when the table is full, a
//!   newcomer evicts the oldest unfinished handshake, silent ones first, so holding
//!   slots keeps nobody out) and per source, and a source whose handshakes keep
//!   failing is refused for a growing time, one offence per burst ([`penalty`]);
//!   all these checks run on accept, before a byte is read or any Diffie-Hellman
//!   work is done (behind a load balancer, on the client its PROXY protocol header
//!   names: [`proxy_protocol`]), and refusals are logged once per burst, not once
//!   per connection;
//! - an established session gets the idle timeout both to send its next request and
//!   to take each reply: a client that stops reading stalls our writes (TCP back
//!   pressure, so memory stays bounded), then is disconnected.
//!
//! Live revocation: authorized_keys is re-read whenever it changes, for the next
//! connection. A [`ReloadTrigger`] (SIGHUP in `serve`), or the file changing when
//! [`ServerConfig::revoke_live`] is on, also makes every open session check its key
//! again; a session whose key is no longer allowed gets the ERROR
//! `permission denied: key revoked` and is closed.

mod authorized;
mod config;
mod connection;
mod echo_loop;
mod listener;
mod message1;
pub mod penalty;
mod proxied;
pub mod proxy_protocol;
mod ratelog;
mod resources;
mod stats;
mod strict_modes;
mod transport;
mod trust;

pub use authorized::{AllowListError, MAX_LOGGED_LINE_PROBLEMS, MAX_SETTLE_WAIT, SETTLE_TIME};
pub use config::{
    AllowList, ConfigError, ReloadTrigger, ServerConfig, DEFAULT_HANDSHAKE_TIMEOUT,
    DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_HANDSHAKES,
    DEFAULT_MAX_SESSIONS_PER_KEY, DEFAULT_MEMORY_BUDGET, DEFAULT_MEMORY_STALL_TIMEOUT,
    DEFAULT_PROTOCOLS, DEFAULT_REVOKE_POLL, DEFAULT_SHUTDOWN_GRACE, DEFAULT_SOCKET_BUFFER,
    DEFAULT_SUITES, KEY_REVOKED, MIN_REQUEST_LIMIT, SESSION_TIME_LIMIT, TOO_MANY_SESSIONS,
};
pub use listener::{bind, bind_all, LISTEN_BACKLOG};
pub use resources::MemoryUse;
pub use stats::{ServerStats, StatsSnapshot};
pub use strict_modes::StrictModesError;
pub use trust::TrustFilesError;

use std::future::Future;
use std::io;
use std::sync::{Arc, Mutex, OnceLock};

use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinSet;
use tracing::{info, warn};

use self::penalty::PenaltyBox;
use self::resources::{MemoryBudget, SessionsPerKey};

use self::authorized::*;
use self::connection::Handler;
use self::listener::*;
use self::transport::AnyStream;
use std::net::SocketAddr;
use tokio::io::{AsyncRead, AsyncWrite};

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
    let server =
        Server::new(config).map_err(|error| io::Error::new(io::ErrorKind::InvalidInput, error))?;
    server.run(listener, shutdown).await
}

/// A server ready to run, with the handles an embedder keeps while it runs: its
/// live counters and its reload trigger.
#[derive(Debug)]
pub struct Server {
    /// The checked configuration, shared with every connection once running.
    shared: Arc<Shared>,
    /// The parsed allow-list, shared by the accept loop and every connection.
    authorized_keys: Arc<AuthorizedKeysCache>,
    /// Set to `true` when the server stops; every connection watches it. Kept here
    /// so that connections served with [`Server::serve_connection`] see a live
    /// channel, not a closed one.
    shutdown: watch::Sender<bool>,
}

/// What the accept loop and every connection read: the configuration and the
/// running server's handles.
#[derive(Debug)]
pub(super) struct Shared {
    /// The checked configuration.
    pub(super) config: ServerConfig,
    /// What every handshake negotiates with, built from `config` once.
    pub(super) responder: crate::wire::ResponderSettings,
    /// Counters kept up to date by every connection.
    pub(super) stats: Arc<ServerStats>,
    /// Pulled to make open sessions check their key again.
    pub(super) reload: ReloadTrigger,
    /// The budget for request and reply bodies in flight, shared by every session.
    pub(super) memory: MemoryBudget,
    /// Open sessions per client key, against `max_sessions_per_key`.
    pub(super) sessions_per_key: SessionsPerKey,
    /// When the server began to stop: sessions finish within the grace period
    /// counted from it. Unset while it runs.
    pub(super) stopping_since: OnceLock<tokio::time::Instant>,
    /// The trusted user CAs and the revoked keys, when configured.
    pub(super) trust: trust::TrustFiles,
}

impl Server {
    /// Checks `config` and prepares a server with fresh counters.
    ///
    /// # Errors
    /// A setting that cannot work (see [`ServerConfig::validate`]).
    pub fn new(config: ServerConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let reload = ReloadTrigger::default();
        let stats = Arc::new(ServerStats::default());
        Ok(Self {
            authorized_keys: Arc::new(AuthorizedKeysCache::new(
                &config.allow_list,
                config.strict_modes,
                reload.clone(),
            )),
            shutdown: watch::Sender::new(false),
            shared: Arc::new(Shared {
                memory: MemoryBudget::new(
                    config.memory_budget,
                    config.max_request,
                    Arc::clone(&stats),
                ),
                sessions_per_key: SessionsPerKey::new(
                    config.max_sessions_per_key,
                    config.memory_budget,
                    config.max_request,
                    Arc::clone(&stats),
                ),
                stopping_since: OnceLock::new(),
                trust: trust::TrustFiles::new(&config),
                responder: config.responder_settings(),
                config,
                stats,
                reload,
            }),
        })
    }

    /// The server's live counters, readable while it runs and after.
    pub fn stats(&self) -> Arc<ServerStats> {
        Arc::clone(&self.shared.stats)
    }

    /// A trigger that makes the open sessions check their key against the allow-list
    /// again (`serve` pulls it on SIGHUP). Clones pull the same trigger.
    pub fn reload_trigger(&self) -> ReloadTrigger {
        self.shared.reload.clone()
    }

    /// Serves one connection that the caller accepted itself, over any stream (a
    /// TCP or Unix socket, TLS-terminated bytes, `tokio::io::duplex` in a test): the
    /// handshake under its deadline, the allow-list check, then the echo loop with
    /// its idle timeout, exactly as [`Server::run`] serves each TCP connection.
    /// `peer` is the client's address, for `from=` options and the log.
    ///
    /// The caller does its own admission: the connection and handshake caps and the
    /// per-source penalties apply to connections [`Server::run`] accepts, not to
    /// these. Returns when the connection is over; its outcome is counted in
    /// [`Server::stats`] and logged.
    pub async fn serve_connection<S>(&self, io: S, peer: SocketAddr)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        self.untracked_handler(peer)
            .run(AnyStream(io), Admitted::untracked(peer))
            .await;
    }

    /// A handler for a connection from `peer` that [`Server::run`] does not track
    /// (it does not wait for it when it stops): one served by
    /// [`Server::serve_connection`], or a test's.
    fn untracked_handler(&self, peer: SocketAddr) -> Handler {
        Handler {
            peer,
            shared: Arc::clone(&self.shared),
            authorized_keys: Arc::clone(&self.authorized_keys),
            shutdown_signal: self.shutdown.subscribe(),
            reload: self.shared.reload.subscribe(),
            certificate: None,
            _connection_done: None,
        }
    }

    /// Reads the trusted user CA keys, principals and revoked keys files now (they
    /// are read again whenever they change), logging their per-line problems and a
    /// revoked-keys file that cannot be used (which refuses every client until it
    /// can be).
    ///
    /// # Errors
    /// The trusted user CA keys or principals file cannot be read: no certificate
    /// would be admitted through them.
    pub async fn load_trust_files(&self) -> Result<(), TrustFilesError> {
        match self.shared.trust.current().await.user_cas_error() {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }

    /// The memory of request and reply bodies in flight, against the budget.
    pub fn memory_use(&self) -> MemoryUse {
        self.shared.memory.usage()
    }

    /// The configuration the server runs with.
    pub fn config(&self) -> &ServerConfig {
        &self.shared.config
    }

    /// Runs the server on `listener` until `shutdown` completes, then stops
    /// accepting, lets connections finish the request they are on (up to
    /// `shutdown_grace`), and returns.
    ///
    /// # Errors
    /// Only if the listener itself fails for good; a failing connection never ends
    /// the server.
    pub async fn run(self, listener: TcpListener, shutdown: impl Future) -> io::Result<()> {
        self.run_on(vec![listener], shutdown).await
    }

    /// [`Server::run`] on several listeners at once (IPv4 and IPv6, say; see
    /// [`bind_all`]): one accept loop each, all under the same caps, penalty table
    /// and allow-list.
    ///
    /// # Errors
    /// Only if a listener fails for good (which stops them all), or if `listeners`
    /// is empty; a failing connection never ends the server.
    pub async fn run_on(
        self,
        listeners: Vec<TcpListener>,
        shutdown: impl Future,
    ) -> io::Result<()> {
        if listeners.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "no listener to serve on",
            ));
        }
        let shared = self.shared;
        let config = &shared.config;
        let notify_shutdown = self.shutdown;
        let shutdown_signal = notify_shutdown.subscribe();
        let (connection_done, mut all_connections_done) = mpsc::channel::<()>(1);
        let authorized_keys = self.authorized_keys;
        // Read at start, so that its per-line problems are logged now, not at the
        // first connection (an unusable file is reported when a client is denied).
        let _ = authorized_keys.refresh(false).await;
        let _ = shared.trust.current().await;
        let trust_watcher = shared.trust.configured().then(|| {
            tokio::spawn(trust::watch(
                Arc::clone(&shared),
                config.revoke_live.then_some(config.revoke_poll),
            ))
        });
        // Keys held in memory never change: only a file is watched.
        let watcher =
            (config.revoke_live && matches!(config.allow_list, AllowList::File(_))).then(|| {
                tokio::spawn(watch_for_changes(
                    Arc::clone(&authorized_keys),
                    shared.reload.clone(),
                    config.revoke_poll,
                ))
            });
        let gate = Arc::new(Gate {
            limit_connections: Arc::new(Semaphore::new(config.max_connections)),
            handshakes: Arc::new(Mutex::new(HandshakeTable::new(config.max_handshakes))),
            penalties: Arc::new(Mutex::new(Penalties::new(
                PenaltyBox::new(config.penalties.clone()),
                Arc::clone(&shared.stats),
            ))),
            authorized_keys,
            shared: Arc::clone(&shared),
            shutdown_signal,
            connection_done,
            logs: Mutex::default(),
        });
        let mut accept_loops = JoinSet::new();
        for listener in listeners {
            accept_loops.spawn(Arc::clone(&gate).accept_loop(listener));
        }
        let result = tokio::select! {
            Some(ended) = accept_loops.join_next() => ended.unwrap_or_else(|panic| {
                Err(io::Error::other(format!("an accept loop ended: {panic}")))
            }),
            _ = shutdown => {
                info!("shutting down: no new connections; finishing requests in flight");
                Ok(())
            }
        };
        // Aborted and awaited: each loop's handle on the gate is gone after this.
        accept_loops.shutdown().await;
        for watcher in [watcher, trust_watcher].into_iter().flatten() {
            watcher.abort();
        }
        let grace = shared.config.shutdown_grace;
        let stopping_since = *shared.stopping_since.get_or_init(tokio::time::Instant::now);
        // Every handler holds a clone of the gate's `connection_done`; when the last
        // one is dropped, `recv` returns None.
        drop(gate);
        let _ = notify_shutdown.send(true);
        // Sessions waiting for a request watch only the reload trigger, and look
        // at the stop flag when it changes (one registration per wait, not two):
        // pull it after the flag is set.
        shared.reload.trigger();
        // Sessions answer what they have read, send FIN and drain until the client
        // closes, all within the grace period (see `Handler::stop_deadline`).
        if tokio::time::timeout_at(stopping_since + grace, all_connections_done.recv())
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use echo_loop::poll_once;
    use ratelog::{BurstLog, LOG_INTERVAL};
    use std::time::{Duration, Instant};

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
}
