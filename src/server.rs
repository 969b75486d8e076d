//! The echo server: accepts TCP connections, runs the responder side of the
//! handshake, checks the client's key against authorized_keys, then answers each
//! REQUEST with its uppercase form until the client is done.
//!
//! [`run`] takes a bound listener and a shutdown future, so tests start a server
//! in-process on `127.0.0.1:0` and stop it when they like. One task serves each
//! connection; a semaphore caps how many are open; on shutdown the listener stops
//! accepting, idle connections close, and requests in flight are finished within a
//! bounded grace period.

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, Semaphore};
use tracing::{debug, info, warn};

use crate::authorized_keys::AuthorizedKeys;
use crate::identity::PublicKey;
use crate::wire::{
    self, LocalIdentity, RecordType, RecvHalf, SendHalf, WireError, DEFAULT_REQUEST_LIMIT,
};

/// Default cap on open connections. Each costs a file descriptor and a few KiB.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
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
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
        }
    }
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
    let mut server = Listener {
        limit_connections: Arc::new(Semaphore::new(config.max_connections)),
        authorized_keys: Arc::new(AuthorizedKeysCache::new(config.authorized_keys.clone())),
        config: Arc::new(config),
        listener,
        shutdown_signal,
        connection_done,
        refused_since_last_log: 0,
        last_refusal_log: None,
    };
    let result = tokio::select! {
        result = server.accept_loop() => result,
        _ = shutdown => {
            info!("shutting down: no new connections; finishing requests in flight");
            Ok(())
        }
    };
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

/// The accepting side: owns the listener and hands each connection to a task.
struct Listener {
    /// Shared, read-only settings.
    config: Arc<ServerConfig>,
    /// The bound socket, from the caller.
    listener: TcpListener,
    /// One permit per open connection; when none is left, new connections are refused.
    limit_connections: Arc<Semaphore>,
    /// The parsed allow-list, reloaded when the file changes.
    authorized_keys: Arc<AuthorizedKeysCache>,
    /// Becomes `true` when the server stops; handlers watch it between requests.
    shutdown_signal: watch::Receiver<bool>,
    /// Cloned into every handler, so shutdown can wait until all are dropped.
    connection_done: mpsc::Sender<()>,
    /// Connections refused at the cap since the last log line (logged once per burst).
    refused_since_last_log: u64,
    /// When that log line was written.
    last_refusal_log: Option<Instant>,
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
            let Ok(permit) = Arc::clone(&self.limit_connections).try_acquire_owned() else {
                self.note_refusal(peer);
                drop(socket);
                continue;
            };
            let handler = Handler {
                peer,
                config: Arc::clone(&self.config),
                authorized_keys: Arc::clone(&self.authorized_keys),
                shutdown_signal: self.shutdown_signal.clone(),
                _connection_done: self.connection_done.clone(),
            };
            tokio::spawn(async move {
                handler.run(socket).await;
                drop(permit);
            });
        }
    }

    fn note_refusal(&mut self, peer: SocketAddr) {
        self.refused_since_last_log += 1;
        let now = Instant::now();
        let due = self
            .last_refusal_log
            .is_none_or(|last| now.duration_since(last) >= Duration::from_secs(1));
        if due {
            warn!(
                "connection limit of {} reached: refused {} connection(s) (latest from {peer})",
                self.config.max_connections, self.refused_since_last_log
            );
            self.refused_since_last_log = 0;
            self.last_refusal_log = Some(now);
        }
    }
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
    /// Dropped with the handler: lets shutdown know this connection is finished.
    _connection_done: mpsc::Sender<()>,
}

/// What a connection did, for its one log line.
#[derive(Debug, Default)]
struct Summary {
    client: Option<PublicKey>,
    comment: String,
    requests: u64,
    bytes_in: u64,
    bytes_out: u64,
}

/// How a connection ended.
enum Outcome {
    /// The client finished and closed, or the server stopped.
    Closed,
    /// The client's key is not allowed.
    Denied(String),
    /// The client sent a request over the limit.
    TooLarge { len: u32 },
    /// The handshake did not complete in time.
    HandshakeTimeout,
    /// The session sat idle too long.
    IdleTimeout,
    /// The connection or the peer failed.
    Failed(WireError),
}

impl Handler {
    async fn run(mut self, mut socket: TcpStream) {
        let started = Instant::now();
        // Replies are small and latency matters: don't let Nagle hold them back.
        let _ = socket.set_nodelay(true);
        let mut summary = Summary::default();
        let outcome = self.serve(&mut socket, &mut summary).await;
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
            Outcome::TooLarge { len } => {
                info!(%peer, client, comment, requests, bytes_in, bytes_out, duration_ms, "closed: request of {len} bytes over the limit of {}", self.config.max_request)
            }
            Outcome::HandshakeTimeout => {
                info!(%peer, duration_ms, "closed: handshake not completed within {:?}", self.config.handshake_timeout)
            }
            Outcome::IdleTimeout => {
                info!(%peer, client, comment, requests, bytes_in, bytes_out, duration_ms, "closed: idle for {:?}", self.config.idle_timeout)
            }
            Outcome::Failed(error) => {
                info!(%peer, client, comment, requests, bytes_in, bytes_out, duration_ms, "failed: {error}")
            }
        }
    }

    async fn serve(&mut self, socket: &mut TcpStream, summary: &mut Summary) -> Outcome {
        let handshake = tokio::time::timeout(
            self.config.handshake_timeout,
            // Boxed: the handshake's state lives on the heap only while it runs,
            // instead of enlarging every connection's task for its whole life.
            Box::pin(wire::respond(socket, &self.config.host)),
        );
        let established = match handshake.await {
            Err(_) => return Outcome::HandshakeTimeout,
            Ok(Err(error)) => return Outcome::Failed(error),
            Ok(Ok(established)) => established,
        };
        let client = *established.peer();
        summary.client = Some(client);
        let (reader, writer) = socket.split();
        let (mut rx, mut tx) = established.into_halves(reader, writer);

        if let Err(reason) = self.authorize(&client, summary) {
            let message = format!("{}: {reason}", wire::session::PERMISSION_DENIED_PREFIX);
            let _ = send_refusal(&mut tx, rx, &message).await;
            return Outcome::Denied(reason);
        }
        match self.echo(&mut rx, &mut tx, summary).await {
            Ok(EchoEnd::Done) => {
                let _ = tx.shutdown().await;
                Outcome::Closed
            }
            Ok(EchoEnd::Idle) => {
                let _ = tx.shutdown().await;
                Outcome::IdleTimeout
            }
            Ok(EchoEnd::TooLarge { len }) => {
                let message = format!(
                    "request too large: {len} bytes, the limit is {} bytes",
                    self.config.max_request
                );
                let _ = send_refusal(&mut tx, rx, &message).await;
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
        let keys = self.authorized_keys.current().map_err(|error| {
            warn!(
                "cannot read {}: {error}; denying every client until it is readable",
                self.authorized_keys.path.display()
            );
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
    /// session idles out, or a request is over the limit.
    async fn echo<R, W>(
        &mut self,
        rx: &mut RecvHalf<R>,
        tx: &mut SendHalf<W>,
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
            let header = tokio::select! {
                // next_record is cancel-safe: nothing is lost if shutdown wins.
                header = tokio::time::timeout(self.config.idle_timeout, rx.next_record()) => header,
                _ = self.shutdown_signal.changed() => return Ok(EchoEnd::Done),
            };
            let header = match header {
                Err(_) => return Ok(EchoEnd::Idle),
                Ok(header) => header?,
            };
            let Some(header) = header else {
                return Ok(EchoEnd::Done);
            };
            // Only REQUEST can arrive here: the decoder refuses the server's own types.
            if header.len > self.config.max_request {
                return Ok(EchoEnd::TooLarge { len: header.len });
            }
            rx.read_body(&mut body, self.config.max_request).await?;
            summary.requests += 1;
            summary.bytes_in += body.len() as u64;
            // ASCII letters are uppercased in place (as to_uppercase maps them), so
            // only text with other characters needs a second buffer of its size.
            body.make_ascii_uppercase();
            match std::str::from_utf8(&body) {
                Ok(text) => {
                    let upper = match text.is_ascii() {
                        true => std::borrow::Cow::Borrowed(text),
                        false => std::borrow::Cow::Owned(text.to_uppercase()),
                    };
                    summary.bytes_out += upper.len() as u64;
                    tx.write_record(RecordType::Response, upper.as_bytes())
                        .await?;
                }
                Err(error) => {
                    let reason = format!(
                        "request is not valid UTF-8 (invalid byte at offset {})",
                        error.valid_up_to()
                    );
                    tx.write_record(RecordType::Error, reason.as_bytes())
                        .await?;
                }
            }
            // Answer now unless more requests are already here: never wait for the
            // client's end of stream, but batch the replies of a pipelined burst.
            if !rx.has_buffered_input() {
                tx.flush().await?;
            }
            // Keep the buffer of a large request only while it is in use.
            if body.capacity() > 64 * 1024 {
                body = Vec::new();
            }
        }
    }
}

/// Why the echo loop stopped without an error.
enum EchoEnd {
    /// End of stream, or server shutdown.
    Done,
    /// No request within the idle timeout.
    Idle,
    /// A request over the limit (its body was not read).
    TooLarge { len: u32 },
}

/// Sends a final ERROR, closes our direction, and drains what the client still
/// sends for a short while, so its kernel does not receive a reset that could
/// destroy the ERROR before the client reads it.
async fn send_refusal<R, W>(
    tx: &mut SendHalf<W>,
    rx: RecvHalf<R>,
    reason: &str,
) -> Result<(), WireError>
where
    R: AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    tx.write_record(RecordType::Error, reason.as_bytes())
        .await?;
    tx.shutdown().await?;
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
    Ok(())
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
}

/// What identifies a version of a file: our own writes rename a new inode into place,
/// editors that rewrite in place change the size or the modification time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileVersion {
    device: u64,
    inode: u64,
    size: u64,
    modified_ns: i128,
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
        }
    }

    fn current(&self) -> io::Result<Arc<AuthorizedKeys>> {
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
