//! What a server is configured with: its identity, its allow-list, its limits and
//! timeouts (with their defaults), and the trigger that makes open sessions check
//! their key again.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::penalty::PenaltyConfig;

use super::stats::*;
use crate::wire::{LocalIdentity, DEFAULT_REQUEST_LIMIT};

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
    pub(super) generation: Arc<watch::Sender<u64>>,
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

    pub(super) fn subscribe(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }
}
