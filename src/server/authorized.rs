//! authorized_keys as the server uses it: parsed once per version of the file, and
//! watched for changes when sessions are revoked live.

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tracing::{info, warn};

use super::config::{AllowList, ReloadTrigger};
use crate::openssh::authorized_keys::AuthorizedKeys;

/// An unreadable authorized_keys is reported at most this often while it lasts.
pub(super) const UNREADABLE_LOG_INTERVAL: Duration = Duration::from_secs(60);

/// With `revoke_live`: pulls the reload trigger whenever authorized_keys changes.
/// Polling one `stat` a second is cheap and works on every filesystem, editors'
/// rename-into-place included, where change notification would need a dependency.
pub(super) async fn watch_for_changes(
    keys: Arc<AuthorizedKeysCache>,
    reload: ReloadTrigger,
    every: Duration,
) {
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

/// authorized_keys, parsed once per version of the file.
///
/// Every connection stats the file (one syscall) and re-parses only when it changed,
/// so `authorize` and `authorize --remove` apply to the very next connection without
/// the cost of parsing the file each time.
#[derive(Debug)]
pub(super) struct AuthorizedKeysCache {
    /// The file; empty for keys held in memory.
    pub(super) path: PathBuf,
    /// Keys held in memory instead of a file: returned as they are, never reloaded.
    pub(super) fixed: Option<Arc<AuthorizedKeys>>,
    /// The last version seen and its parse.
    pub(super) cached: Mutex<Option<(FileVersion, Arc<AuthorizedKeys>)>>,
    /// While the file cannot be read: the error last logged, when, and how many
    /// clients were denied since. Every connection hits the error, so it is logged
    /// when it starts or changes, then at most every [`UNREADABLE_LOG_INTERVAL`].
    pub(super) unreadable: Mutex<Option<UnreadableLog>>,
}

/// The rate limit of the "cannot read authorized_keys" warning.
#[derive(Debug)]
pub(super) struct UnreadableLog {
    /// The error text last logged.
    pub(super) error: String,
    /// When.
    pub(super) logged_at: Instant,
    /// Clients denied since, not yet reported.
    pub(super) denied_since: u64,
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
    /// The status change time, in nanoseconds since the epoch.
    pub(super) changed_ns: i128,
}

impl FileVersion {
    pub(super) fn of(path: &Path) -> io::Result<Self> {
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
    pub(super) fn new(allow_list: &AllowList) -> Self {
        let (path, fixed) = match allow_list {
            AllowList::File(path) => (path.clone(), None),
            AllowList::Keys(keys) => (PathBuf::new(), Some(Arc::clone(keys))),
        };
        Self {
            path,
            fixed,
            cached: Mutex::new(None),
            unreadable: Mutex::new(None),
        }
    }

    /// The current parse, with an unreadable file reported (rate-limited).
    pub(super) fn current(&self) -> io::Result<Arc<AuthorizedKeys>> {
        if let Some(keys) = &self.fixed {
            return Ok(Arc::clone(keys));
        }
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

    pub(super) fn load_current(&self) -> io::Result<Arc<AuthorizedKeys>> {
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
