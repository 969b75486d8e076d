//! authorized_keys as the server uses it: parsed once per version of the file, off
//! the async worker threads, and watched for changes when sessions are revoked live.
//!
//! Two questions are asked of the file, with different care:
//! - a new connection asks for the current version ([`AuthorizedKeysCache::current`]):
//!   the last complete read, a read being complete when the file did not change
//!   while it was read (stat, read, stat again; retried a few times). A file that
//!   keeps changing keeps the previous version.
//! - an open session, after a reload, asks for a *settled* version
//!   ([`AuthorizedKeysCache::settled_now`]): one that has also stayed unchanged for
//!   [`SETTLE_TIME`]. Ending a session cannot be undone, and a file rewritten in
//!   place (truncated, then written) reads as a revocation of every key not yet
//!   written; so no session is ended by a version still being written. The answer
//!   never waits: while the file is not settled, sessions are kept for now, and a
//!   background check pulls the reload trigger again once it has settled (or gives
//!   up after [`MAX_SETTLE_WAIT`] of changes, ending nobody).
//!
//! A file that cannot be used (missing, unreadable, not a regular file, or refused
//! under `StrictModes`, see [`super::strict_modes`]) denies every new connection and
//! ends no session; the warning about it is rate-limited. Per-line problems are
//! logged when a version is loaded (at start, then on each change), the first
//! [`MAX_LOGGED_LINE_PROBLEMS`] of them and then a count, so a huge bad file cannot
//! flood the log.

use std::fmt;
use std::fs::OpenOptions;
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use tracing::{info, warn};

use super::config::{AllowList, ReloadTrigger};
use super::ratelog::BurstLog;
use super::strict_modes::{self, StrictModesError};
use super::Server;
use crate::fsutil;
use crate::openssh::authorized_keys::AuthorizedKeys;

/// An unusable authorized_keys is reported at most this often while it lasts (and
/// at once when the reason changes).
pub(super) const UNUSABLE_LOG_INTERVAL: Duration = Duration::from_secs(60);
/// Per-line problems logged for each version of the file; the rest are counted in
/// one more line.
pub const MAX_LOGGED_LINE_PROBLEMS: usize = 10;
/// How long a version of authorized_keys must stay unchanged before it may end an
/// open session: a rewrite in place that pauses longer than this between writes
/// can still be taken for the whole file.
pub const SETTLE_TIME: Duration = Duration::from_secs(2);
/// How long a revocation check waits for a file that keeps changing before it
/// gives up and keeps every session (until the next reload).
pub const MAX_SETTLE_WAIT: Duration = Duration::from_secs(30);
/// Reads of a file that changes while it is read, before the previous version is
/// kept.
const MAX_READ_ATTEMPTS: usize = 5;
/// The pause between two such reads.
const READ_RETRY_PAUSE: Duration = Duration::from_millis(20);

/// Why the allow-list file cannot be used; while it lasts every new client is
/// denied and open sessions are kept.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AllowListError {
    /// The file could not be examined or read (missing, unreadable, not a regular
    /// file).
    #[error("cannot read {}: {source}", .path.display())]
    Io {
        /// The allow-list file.
        path: PathBuf,
        /// What failed.
        source: io::Error,
    },
    /// The file, or a directory above it, can be changed by someone other than root
    /// and the server's user.
    #[error(transparent)]
    StrictModes(#[from] StrictModesError),
    /// Every read saw the file change under it, and no earlier version was loaded.
    #[error(
        "{} kept changing while it was read ({attempts} attempts); \
         write it to a temporary file and rename it into place (as noise-echo authorize does)",
        .path.display()
    )]
    KeptChanging {
        /// The allow-list file.
        path: PathBuf,
        /// How many reads were tried.
        attempts: usize,
    },
}

impl AllowListError {
    /// Whether the file does not exist (a server may start before keys are added).
    pub fn is_missing(&self) -> bool {
        matches!(self, Self::Io { source, .. } if source.kind() == io::ErrorKind::NotFound)
    }

    fn io(path: &Path, source: io::Error) -> Self {
        Self::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// With `revoke_live`: pulls the reload trigger whenever authorized_keys changes.
/// Polling one `stat` a second is cheap and works on every filesystem, editors'
/// rename-into-place included, where change notification would need a dependency.
pub(super) async fn watch_for_changes(
    keys: Arc<AuthorizedKeysCache>,
    reload: ReloadTrigger,
    every: Duration,
) {
    let mut last = keys.source.version(&keys.path).ok();
    let mut interval = tokio::time::interval(every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let now = keys.source.version(&keys.path).ok();
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

/// What identifies a version of a file: our own writes rename a new inode into place,
/// editors that rewrite in place change the size or the modification time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct FileVersion {
    /// The filesystem.
    pub(super) device: u64,
    /// The inode: a new one after a rename into place.
    pub(super) inode: u64,
    /// The size in bytes.
    pub(super) size: u64,
    /// The modification time, in nanoseconds since the epoch.
    pub(super) modified_ns: i128,
    /// The status change time, in nanoseconds since the epoch (a chmod changes it).
    pub(super) changed_ns: i128,
}

impl FileVersion {
    pub(super) fn of(path: &Path) -> io::Result<Self> {
        Ok(Self::from_metadata(&std::fs::metadata(path)?))
    }

    fn from_metadata(metadata: &std::fs::Metadata) -> Self {
        Self {
            device: metadata.dev(),
            inode: metadata.ino(),
            size: metadata.size(),
            modified_ns: i128::from(metadata.mtime()) * 1_000_000_000
                + i128::from(metadata.mtime_nsec()),
            changed_ns: i128::from(metadata.ctime()) * 1_000_000_000
                + i128::from(metadata.ctime_nsec()),
        }
    }
}

/// One read of the file, and whether it is whole.
#[derive(Debug)]
pub(super) struct Read1 {
    /// The version after the read.
    pub(super) version: FileVersion,
    /// The bytes read.
    pub(super) bytes: Vec<u8>,
    /// Whether the file stayed the same version from before the open to after the
    /// read, and the bytes are all of it.
    pub(super) stable: bool,
}

/// Where the cache gets the file from: the filesystem, or a test's script (a
/// half-written read, a read that blocks).
pub(super) trait FileSource: fmt::Debug + Send + Sync + 'static {
    /// The file's current version (a `stat`; cheap enough for every connection).
    fn version(&self, path: &Path) -> io::Result<FileVersion>;
    /// Checks the file's permissions before it is used (`StrictModes`).
    fn check(&self, path: &Path) -> Result<(), AllowListError>;
    /// Reads the file once. Blocking: called off the async threads.
    fn read(&self, path: &Path) -> Result<Read1, AllowListError>;
}

/// The file on disk.
#[derive(Debug)]
pub(super) struct Disk {
    /// Whether to apply [`strict_modes`].
    pub(super) strict_modes: bool,
}

impl FileSource for Disk {
    fn version(&self, path: &Path) -> io::Result<FileVersion> {
        FileVersion::of(path)
    }

    fn check(&self, path: &Path) -> Result<(), AllowListError> {
        let metadata = std::fs::metadata(path).map_err(|error| AllowListError::io(path, error))?;
        // The null device reads as empty (nobody may connect), whoever can write it.
        if !self.strict_modes || fsutil::is_null_device(&metadata) {
            return Ok(());
        }
        strict_modes::check(path)
            .map_err(|error| AllowListError::io(path, error))?
            .map_err(AllowListError::from)
    }

    fn read(&self, path: &Path) -> Result<Read1, AllowListError> {
        let failed = |error| AllowListError::io(path, error);
        let before = FileVersion::of(path).map_err(failed)?;
        // Without blocking: a FIFO put in its place must not hang the reload.
        let mut file = OpenOptions::new()
            .read(true)
            .custom_flags(fsutil::nonblock())
            .open(path)
            .map_err(failed)?;
        let opened = file.metadata().map_err(failed)?;
        if fsutil::is_null_device(&opened) {
            return Ok(Read1 {
                version: before,
                bytes: Vec::new(),
                stable: true,
            });
        }
        if !opened.is_file() {
            return Err(failed(
                fsutil::check_updatable(path)
                    .err()
                    .unwrap_or_else(|| io::Error::other("not a regular file")),
            ));
        }
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(failed)?;
        let read = FileVersion::from_metadata(&file.metadata().map_err(failed)?);
        let after = FileVersion::of(path).map_err(failed)?;
        let stable = before == FileVersion::from_metadata(&opened)
            && before == read
            && before == after
            && bytes.len() as u64 == after.size;
        Ok(Read1 {
            version: after,
            bytes,
            stable,
        })
    }
}

/// Reads until a read is whole, a few times at most.
fn read_stable(
    source: &dyn FileSource,
    path: &Path,
) -> Result<(FileVersion, Vec<u8>), AllowListError> {
    for attempt in 1..=MAX_READ_ATTEMPTS {
        let read = source.read(path)?;
        if read.stable {
            return Ok((read.version, read.bytes));
        }
        if attempt < MAX_READ_ATTEMPTS {
            std::thread::sleep(READ_RETRY_PAUSE);
        }
    }
    Err(AllowListError::KeptChanging {
        path: path.to_path_buf(),
        attempts: MAX_READ_ATTEMPTS,
    })
}

/// A version of the file, parsed.
#[derive(Debug, Clone)]
pub(super) struct Loaded {
    /// Which version.
    pub(super) version: FileVersion,
    /// Its parse.
    pub(super) keys: Arc<AuthorizedKeys>,
    /// When we first saw this version: it has been stable since at least then.
    pub(super) first_seen: Instant,
}

/// What a refresh found.
#[derive(Debug)]
pub(super) struct Current {
    /// The version to use.
    pub(super) loaded: Loaded,
    /// False when the file is changing and `loaded` is the previous version.
    pub(super) up_to_date: bool,
}

/// What a blocking load found.
enum LoadOutcome {
    /// The cached version is still the file's.
    Unchanged,
    /// A new version, read whole.
    New(FileVersion, AuthorizedKeys),
}

/// The background check behind [`AuthorizedKeysCache::settled_now`].
#[derive(Debug, Default)]
pub(super) struct Recheck {
    /// A check is running; no other is started.
    pub(super) running: bool,
    /// Some session was told "not settled, kept for now": once the file settles,
    /// the reload trigger is pulled again so that it gets its answer.
    pub(super) deferred: bool,
}

/// authorized_keys, parsed once per version of the file.
///
/// Every connection stats the file (one syscall) and re-parses only when it changed,
/// so `authorize` and `authorize --remove` apply to the very next connection without
/// the cost of parsing the file each time. The read and the parse run on tokio's
/// blocking threads, one at a time, so a huge file never stalls open sessions.
#[derive(Debug)]
pub(super) struct AuthorizedKeysCache {
    /// The file; empty for keys held in memory.
    pub(super) path: PathBuf,
    /// Keys held in memory instead of a file: returned as they are, never reloaded.
    pub(super) fixed: Option<Arc<AuthorizedKeys>>,
    /// Where the file is read from.
    pub(super) source: Arc<dyn FileSource>,
    /// The last version read whole, and its parse.
    pub(super) cached: Mutex<Option<Loaded>>,
    /// Held while a version is read and parsed: one load at a time, and the
    /// connections that arrive meanwhile use its result instead of parsing again.
    pub(super) loading: tokio::sync::Mutex<()>,
    /// The background check that waits for the file to settle.
    pub(super) recheck: Mutex<Recheck>,
    /// Pulled again when a deferred revocation check can be answered.
    pub(super) reload: ReloadTrigger,
    /// While the file cannot be used: every connection hits the problem, so it is
    /// logged when it starts or changes, then at most every [`UNUSABLE_LOG_INTERVAL`].
    pub(super) unusable: Mutex<BurstLog>,
}

impl AuthorizedKeysCache {
    /// The cache of `allow_list`, checking the file's permissions when
    /// `strict_modes` is on; `reload` is the server's trigger, pulled again when a
    /// revocation check had to wait for the file to settle.
    pub(super) fn new(allow_list: &AllowList, strict_modes: bool, reload: ReloadTrigger) -> Self {
        let (path, fixed) = match allow_list {
            AllowList::File(path) => (path.clone(), None),
            AllowList::Keys(keys) => (PathBuf::new(), Some(Arc::clone(keys))),
        };
        Self::with_source(path, fixed, Arc::new(Disk { strict_modes }), reload)
    }

    /// The cache of `path` read through `source`.
    pub(super) fn with_source(
        path: PathBuf,
        fixed: Option<Arc<AuthorizedKeys>>,
        source: Arc<dyn FileSource>,
        reload: ReloadTrigger,
    ) -> Self {
        Self {
            path,
            fixed,
            source,
            cached: Mutex::new(None),
            loading: tokio::sync::Mutex::new(()),
            recheck: Mutex::new(Recheck::default()),
            reload,
            unusable: Mutex::new(BurstLog::every(UNUSABLE_LOG_INTERVAL)),
        }
    }

    fn cached(&self) -> Option<Loaded> {
        self.cached
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    fn set_cached(&self, loaded: Option<Loaded>) {
        *self
            .cached
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = loaded;
    }

    /// The version a new connection is checked against, with an unusable file
    /// reported (rate-limited).
    ///
    /// # Errors
    /// Why the file cannot be used: the connection is denied.
    pub(super) async fn current(&self) -> Result<Arc<AuthorizedKeys>, AllowListError> {
        if let Some(keys) = &self.fixed {
            return Ok(Arc::clone(keys));
        }
        let result = self.refresh(false).await;
        self.report(result.as_ref().map(|current| current.up_to_date));
        result.map(|current| current.loaded.keys)
    }

    /// The version an open session is checked against after a reload, at once: the
    /// cached version if it is the file's and has stayed unchanged for
    /// [`SETTLE_TIME`], else `None` (keep the session for now). Either way a
    /// background check (one at a time) re-reads the file and its permissions, off
    /// the async threads; after a `None`, it pulls the reload trigger again once the
    /// file has settled, so that the session gets its answer then. Costs one `stat`
    /// here: a thousand sessions woken by a reload are not held up by it.
    pub(super) fn settled_now(self: &Arc<Self>) -> Option<Arc<AuthorizedKeys>> {
        if let Some(keys) = &self.fixed {
            return Some(Arc::clone(keys));
        }
        let version = self.source.version(&self.path).ok();
        let settled = self
            .cached()
            .filter(|loaded| Some(loaded.version) == version)
            .filter(|loaded| loaded.first_seen.elapsed() >= SETTLE_TIME)
            .map(|loaded| loaded.keys);
        let mut recheck = self
            .recheck
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if settled.is_none() {
            recheck.deferred = true;
        }
        if !recheck.running {
            recheck.running = true;
            tokio::spawn(Arc::clone(self).recheck());
        }
        settled
    }

    /// The background check: refreshes (permissions included), waits while the
    /// file changes, and pulls the reload trigger if a session was kept waiting.
    async fn recheck(self: Arc<Self>) {
        let deadline = Instant::now() + MAX_SETTLE_WAIT;
        let mut first = true;
        let finish = |pull: bool| {
            let mut recheck = self
                .recheck
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            recheck.running = false;
            if std::mem::take(&mut recheck.deferred) && pull {
                self.reload.trigger();
            }
        };
        loop {
            // The first look re-checks the permissions even if the file is
            // unchanged: a reload is when a chmod of a directory above it is seen.
            let result = self.refresh(first).await;
            self.report(result.as_ref().map(|current| current.up_to_date));
            first = false;
            let wait = match &result {
                Ok(current) if current.up_to_date => {
                    SETTLE_TIME.saturating_sub(current.loaded.first_seen.elapsed())
                }
                Ok(_) => SETTLE_TIME,
                // Unusable: sessions are kept; nothing to wait for.
                Err(_) => return finish(false),
            };
            if wait.is_zero() {
                return finish(true);
            }
            if Instant::now() + wait > deadline {
                warn!(
                    "{} kept changing for {MAX_SETTLE_WAIT:?}: open sessions are kept \
                     (a version must stay unchanged for {SETTLE_TIME:?} to end one); \
                     write it to a temporary file and rename it into place",
                    self.path.display()
                );
                return finish(false);
            }
            tokio::time::sleep(wait).await;
        }
    }

    /// Logs an unusable file (rate-limited), or that it is usable again.
    fn report(&self, result: Result<bool, &AllowListError>) {
        let mut log = self
            .unusable
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match result {
            Ok(true) => {
                if log.clear() {
                    info!("{} is usable again", self.path.display());
                }
            }
            Ok(false) => {
                if let Some(count) = log.note_condition(std::time::Instant::now(), "changing") {
                    warn!(
                        "{} is changing while it is read: using the previous version \
                         ({count} time(s) since the last report)",
                        self.path.display()
                    );
                }
            }
            Err(error) => {
                let text = error.to_string();
                if let Some(count) = log.note_condition(std::time::Instant::now(), &text) {
                    warn!(
                        "{text}; denying every new client until it is fixed \
                         ({count} time(s) since the last report)"
                    );
                }
            }
        }
    }

    /// The current version: the cached one if the file has not changed (one `stat`
    /// here), else a new read and parse on a blocking thread. With `recheck`, the
    /// permissions are checked again even when the file has not changed.
    ///
    /// # Errors
    /// Why the file cannot be used; the cached version is then forgotten, so that no
    /// later connection is let in by it.
    pub(super) async fn refresh(&self, recheck: bool) -> Result<Current, AllowListError> {
        if !recheck {
            let version = self
                .source
                .version(&self.path)
                .map_err(|error| AllowListError::io(&self.path, error));
            match (version, self.cached()) {
                (Ok(version), Some(loaded)) if loaded.version == version => {
                    return Ok(Current {
                        loaded,
                        up_to_date: true,
                    });
                }
                (Err(error), _) => {
                    self.set_cached(None);
                    return Err(error);
                }
                _ => {}
            }
        }
        let _one_load_at_a_time = self.loading.lock().await;
        let previous = self.cached();
        let source = Arc::clone(&self.source);
        let path = self.path.clone();
        let known = previous.as_ref().map(|loaded| loaded.version);
        let outcome = tokio::task::spawn_blocking(move || {
            source.check(&path)?;
            let version = source
                .version(&path)
                .map_err(|error| AllowListError::io(&path, error))?;
            if Some(version) == known {
                return Ok(LoadOutcome::Unchanged);
            }
            let (version, bytes) = read_stable(source.as_ref(), &path)?;
            Ok(LoadOutcome::New(
                version,
                AuthorizedKeys::parse(&bytes, &path),
            ))
        })
        .await
        .unwrap_or_else(|panicked| {
            Err(AllowListError::io(
                &self.path,
                io::Error::other(format!("the reload failed: {panicked}")),
            ))
        });
        match (outcome, previous) {
            (Ok(LoadOutcome::Unchanged), Some(loaded)) => Ok(Current {
                loaded,
                up_to_date: true,
            }),
            (Ok(LoadOutcome::Unchanged), None) => unreachable!("unchanged from no version"),
            (Ok(LoadOutcome::New(version, keys)), _) => {
                log_loaded(&keys);
                let loaded = Loaded {
                    version,
                    keys: Arc::new(keys),
                    first_seen: Instant::now(),
                };
                self.set_cached(Some(loaded.clone()));
                Ok(Current {
                    loaded,
                    up_to_date: true,
                })
            }
            (Err(AllowListError::KeptChanging { .. }), Some(loaded)) => Ok(Current {
                loaded,
                up_to_date: false,
            }),
            (Err(error), _) => {
                self.set_cached(None);
                Err(error)
            }
        }
    }
}

/// Logs a newly loaded version: its per-line problems (the first
/// [`MAX_LOGGED_LINE_PROBLEMS`], then how many more) and how many keys it holds.
fn log_loaded(keys: &AuthorizedKeys) {
    for warning in keys.warnings.iter().take(MAX_LOGGED_LINE_PROBLEMS) {
        warn!("{warning}");
    }
    if let Some(more) = keys.warnings.len().checked_sub(MAX_LOGGED_LINE_PROBLEMS) {
        if more > 0 {
            warn!("... and {more} more problems in {}", keys.path.display());
        }
    }
    info!(
        "loaded {} key(s) from {}",
        keys.entries.len(),
        keys.path.display()
    );
}

impl Server {
    /// Reads the allow-list file now, as the first connection would: logs the lines
    /// it skips (the first [`MAX_LOGGED_LINE_PROBLEMS`], then a count) and returns
    /// how many keys it trusts. [`Server::run`] does this itself when it starts;
    /// calling it first lets a program refuse to start on a file it cannot use.
    /// Keys held in memory ([`AllowList::Keys`]) are always usable.
    ///
    /// # Errors
    /// [`AllowListError`] when the file cannot be used: missing
    /// ([`AllowListError::is_missing`]), unreadable, not a regular file, or refused
    /// under `StrictModes` ([`ServerConfig::strict_modes`](super::ServerConfig::strict_modes)).
    pub async fn load_allow_list(&self) -> Result<usize, AllowListError> {
        if let Some(keys) = &self.authorized_keys.fixed {
            return Ok(keys.entries.len());
        }
        let current = self.authorized_keys.refresh(false).await?;
        Ok(current.loaded.keys.entries.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Identity;
    use std::collections::VecDeque;
    use std::net::{IpAddr, Ipv4Addr};
    use std::time::SystemTime;

    fn key_line(seed: u8) -> String {
        Identity::from_seed(&[seed; 32], format!("client{seed}"))
            .public_key()
            .to_openssh_line(&format!("client{seed}"))
    }

    fn allows(keys: &AuthorizedKeys, seed: u8) -> bool {
        let key = Identity::from_seed(&[seed; 32], "").public_key();
        keys.authorize(&key, IpAddr::V4(Ipv4Addr::LOCALHOST), SystemTime::now())
            .is_ok()
    }

    fn version(n: u64) -> FileVersion {
        FileVersion {
            device: 1,
            inode: 1,
            size: n,
            modified_ns: i128::from(n),
            changed_ns: i128::from(n),
        }
    }

    /// A file whose reads follow a script: each read takes the next step; the
    /// file's version is the next step's (the file has changed to it), or the last
    /// one read.
    #[derive(Debug, Default)]
    struct Scripted {
        steps: Mutex<VecDeque<Read1>>,
        now: Mutex<Option<FileVersion>>,
    }

    impl Scripted {
        fn push(&self, version: FileVersion, bytes: &str, stable: bool) {
            self.steps.lock().unwrap().push_back(Read1 {
                version,
                bytes: bytes.as_bytes().to_vec(),
                stable,
            });
        }
    }

    impl FileSource for Scripted {
        fn version(&self, _: &Path) -> io::Result<FileVersion> {
            let next = self.steps.lock().unwrap().front().map(|step| step.version);
            Ok(next.or(*self.now.lock().unwrap()).expect("a version"))
        }
        fn check(&self, _: &Path) -> Result<(), AllowListError> {
            Ok(())
        }
        fn read(&self, _: &Path) -> Result<Read1, AllowListError> {
            let step = self.steps.lock().unwrap().pop_front().expect("a step");
            *self.now.lock().unwrap() = Some(step.version);
            Ok(step)
        }
    }

    fn scripted() -> (Arc<Scripted>, Arc<AuthorizedKeysCache>) {
        let source = Arc::new(Scripted::default());
        let cache = AuthorizedKeysCache::with_source(
            "authorized_keys".into(),
            None,
            Arc::clone(&source) as Arc<dyn FileSource>,
            ReloadTrigger::default(),
        );
        (source, Arc::new(cache))
    }

    fn on_disk(path: &Path, strict_modes: bool) -> Arc<AuthorizedKeysCache> {
        Arc::new(AuthorizedKeysCache::new(
            &AllowList::File(path.to_path_buf()),
            strict_modes,
            ReloadTrigger::default(),
        ))
    }

    /// What an open session is told after a reload, as the connection loop asks:
    /// at once, and again on each pull of the trigger, until `bound` has passed.
    async fn session_verdict(
        cache: &Arc<AuthorizedKeysCache>,
        bound: Duration,
    ) -> Option<Arc<AuthorizedKeys>> {
        let mut reloads = cache.reload.subscribe();
        let deadline = Instant::now() + bound;
        loop {
            if let Some(keys) = cache.settled_now() {
                return Some(keys);
            }
            match tokio::time::timeout_at(deadline, reloads.changed()).await {
                Ok(Ok(())) => {}
                _ => return None,
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_half_written_read_never_revokes_and_the_whole_file_is_used_once_stable() {
        let (source, cache) = scripted();
        let both = format!("{}\n{}\n", key_line(1), key_line(2));
        source.push(version(1), &both, true);
        let keys = cache.current().await.unwrap();
        assert!(allows(&keys, 1) && allows(&keys, 2));

        // Rewritten in place: the reads see a truncated file, then half of it, the
        // file changing under each read; key 2 is not written yet.
        let half = format!("{}\n", key_line(1));
        for step in 2..=(1 + MAX_READ_ATTEMPTS as u64) {
            source.push(
                version(step),
                &half[..half.len() / 2 + step as usize],
                false,
            );
        }
        // A new connection keeps the previous version rather than a torn read.
        let keys = cache.current().await.unwrap();
        assert!(allows(&keys, 2), "a torn read was used");
        // A revocation check does not end key 2's session on it either: it waits,
        // and the writer finishes meanwhile (its final version is read whole).
        source.push(version(100), &both, true);
        assert!(
            cache.settled_now().is_none(),
            "an unsettled version answered"
        );
        let settled = session_verdict(&cache, MAX_SETTLE_WAIT)
            .await
            .expect("the finished file settles");
        assert!(allows(&settled, 1) && allows(&settled, 2));
    }

    #[tokio::test(start_paused = true)]
    async fn a_file_that_never_settles_ends_no_session() {
        let (source, cache) = scripted();
        source.push(version(1), &format!("{}\n", key_line(1)), true);
        cache.current().await.unwrap();
        // Every look finds a new, whole, version: the writer never stops.
        for step in 2..200 {
            source.push(version(step), "# being written\n", true);
        }
        let verdict = session_verdict(&cache, MAX_SETTLE_WAIT + SETTLE_TIME * 5).await;
        assert!(verdict.is_none(), "a session was revoked");
        // The background check gave up (it is not running forever).
        assert!(!cache.recheck.lock().unwrap().running);
    }

    #[tokio::test(start_paused = true)]
    async fn a_real_file_rewritten_in_place_slowly_revokes_nobody() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("authorized_keys");
        let lines: Vec<String> = (1..=20).map(key_line).collect();
        let whole = lines.join("\n") + "\n";
        std::fs::write(&path, &whole).unwrap();
        let cache = on_disk(&path, true);
        let keys = cache.current().await.unwrap();
        assert_eq!(keys.entries.len(), 20);

        // The writer: truncate, then 16 bytes every 50 ms (well under SETTLE_TIME),
        // the way an editor that writes in place does, only slower.
        let writer = {
            let path = path.clone();
            let whole = whole.clone();
            tokio::spawn(async move {
                use std::io::Write;
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .truncate(true)
                    .open(&path)
                    .unwrap();
                for chunk in whole.as_bytes().chunks(16) {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    file.write_all(chunk).unwrap();
                }
            })
        };
        // Reloads all along the rewrite, as SIGHUP or --revoke-live would pull, the
        // first while the file is certainly partial.
        tokio::time::sleep(Duration::from_millis(120)).await;
        let partial = std::fs::metadata(&path).unwrap().len();
        assert!(partial < whole.len() as u64, "{partial}");
        let mut false_revocations = 0;
        let mut checks = 0;
        while !writer.is_finished() && checks < 100 {
            checks += 1;
            if let Some(keys) = session_verdict(&cache, MAX_SETTLE_WAIT).await {
                false_revocations += (1..=20).filter(|seed| !allows(&keys, *seed)).count();
            }
            tokio::time::sleep(Duration::from_millis(170)).await;
        }
        writer.await.unwrap();
        assert_eq!(false_revocations, 0);
        let settled = session_verdict(&cache, MAX_SETTLE_WAIT)
            .await
            .expect("the whole file settles");
        assert_eq!(settled.entries.len(), 20);
    }

    /// A read that waits for the test to release it, as a huge file takes long.
    #[derive(Debug)]
    struct Blocking {
        release: Mutex<std::sync::mpsc::Receiver<()>>,
    }

    impl FileSource for Blocking {
        fn version(&self, _: &Path) -> io::Result<FileVersion> {
            Ok(version(1))
        }
        fn check(&self, _: &Path) -> Result<(), AllowListError> {
            Ok(())
        }
        fn read(&self, path: &Path) -> Result<Read1, AllowListError> {
            self.release
                .lock()
                .unwrap()
                .recv_timeout(Duration::from_secs(20))
                .map_err(|_| AllowListError::io(path, io::Error::other("never released")))?;
            Ok(Read1 {
                version: version(1),
                bytes: Vec::new(),
                stable: true,
            })
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn the_read_runs_off_the_async_thread() {
        let (release, released) = std::sync::mpsc::channel();
        let cache = AuthorizedKeysCache::with_source(
            "authorized_keys".into(),
            None,
            Arc::new(Blocking {
                release: Mutex::new(released),
            }),
            ReloadTrigger::default(),
        );
        // On this runtime's only thread, another task must run while the read
        // waits: it is the one that releases it. A read on this thread would wait
        // for it forever (20 s, then fail).
        let other_task = tokio::spawn(async move { release.send(()).unwrap() });
        assert!(cache.current().await.is_ok());
        other_task.await.unwrap();
    }

    #[tokio::test]
    async fn an_unusable_file_is_reported_once_not_per_connection() {
        let dir = tempfile::tempdir().unwrap();
        let cache = on_disk(&dir.path().join("missing"), true);
        let mut text = String::new();
        for _ in 0..100 {
            let error = cache.current().await.unwrap_err();
            assert!(error.is_missing());
            text = error.to_string();
        }
        // One report when it started: the same problem a second later is not due,
        // and the next report, an interval later, counts every denial.
        let mut log = cache.unusable.lock().unwrap();
        let now = std::time::Instant::now();
        assert_eq!(log.note_condition(now, &text), None);
        assert_eq!(
            log.note_condition(now + UNUSABLE_LOG_INTERVAL, &text),
            Some(101)
        );
    }

    #[tokio::test]
    async fn a_non_regular_file_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        if !made.is_ok_and(|status| status.success()) {
            return; // no mkfifo on this machine
        }
        let cache = on_disk(&fifo, false);
        let error = cache.current().await.unwrap_err();
        assert!(error.to_string().contains("FIFO"), "{error}");
        let cache = on_disk(dir.path(), false);
        let error = cache.current().await.unwrap_err();
        assert!(error.to_string().contains("a directory"), "{error}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_file_made_unsafe_denies_new_clients_and_says_how_to_fix_it() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("authorized_keys");
        std::fs::write(&path, key_line(1) + "\n").unwrap();
        let cache = on_disk(&path, true);
        assert!(cache.current().await.is_ok());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        let error = cache.current().await.unwrap_err();
        assert!(matches!(error, AllowListError::StrictModes(_)), "{error}");
        assert!(error.to_string().contains("chmod go-w"), "{error}");
        // Open sessions are kept: no settled version.
        assert!(session_verdict(&cache, MAX_SETTLE_WAIT).await.is_none());
        let lax = on_disk(&path, false);
        assert!(lax.current().await.is_ok());
    }
}
