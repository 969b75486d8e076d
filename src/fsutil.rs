//! Crash-safe file writes: every file noise-echo changes is written to a temporary
//! file in the same directory, fsynced, then renamed over the old one, so a crash at
//! any point leaves either the old file or the new one, never a mix. Read-modify-write
//! updates of shared files (authorized_keys, known_hosts) hold an exclusive lock, so
//! two writers at the same moment both land.
//!
//! Only regular files are ever replaced: a rename over a device, FIFO, socket or
//! directory would destroy it (as root, `/dev/null` itself). `/dev/null` as a trust
//! file reads as empty and discards writes, as ssh's `UserKnownHostsFile=/dev/null`
//! idiom expects; anything else that is not a regular file is refused with an error
//! that says so, and [`check_updatable`] lets a command refuse it before any
//! network work.
//!
//! A writer killed between creating its temporary file and renaming it leaves the
//! temporary behind; the next write in that directory removes ours (see
//! [`remove_stale_temporaries`]). They are never read.

use std::fs::{self, DirBuilder, File, OpenOptions, Permissions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Mode for directories noise-echo creates to hold keys and trust files (as `~/.ssh`).
pub const PRIVATE_DIR_MODE: u32 = 0o700;

/// How many times [`update_locked`] retries when another writer replaced the file
/// between our open and our lock. Each retry means someone else made progress.
const MAX_LOCK_RETRIES: usize = 1000;

/// Creates `dir` and its missing parents with mode 0700 (existing ones are untouched).
///
/// # Errors
/// The underlying I/O error.
pub fn create_private_dir_all(dir: &Path) -> io::Result<()> {
    if dir.as_os_str().is_empty() || dir.is_dir() {
        return Ok(());
    }
    DirBuilder::new()
        .recursive(true)
        .mode(PRIVATE_DIR_MODE)
        .create(dir)
}

/// The directory a file lives in, `.` for a bare file name.
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

/// Our temporary files are named `TEMP_PREFIX`, [`TEMP_RANDOM_LEN`] random letters
/// and digits, then `TEMP_SUFFIX`.
const TEMP_PREFIX: &str = ".noise-echo-";
/// See [`TEMP_PREFIX`].
const TEMP_SUFFIX: &str = ".tmp";
/// See [`TEMP_PREFIX`]; tempfile's default length, which older versions used too.
const TEMP_RANDOM_LEN: usize = 6;
/// A temporary of ours is removed only once it is at least this old (and unlocked):
/// a writer locks its temporary right after creating it, and this covers that gap
/// with a wide margin.
pub const STALE_TEMPORARY_AGE: Duration = Duration::from_secs(60);

/// Writes `contents` to a new temporary file next to `path`, created with `mode`
/// (never widened afterwards) and fsynced. The temporary is locked while it exists,
/// so that [`remove_stale_temporaries`] in another process leaves it alone; stale
/// temporaries of killed writers in the same directory are removed first.
fn write_temp(path: &Path, contents: &[u8], mode: u32) -> io::Result<tempfile::NamedTempFile> {
    let dir = parent_dir(path);
    remove_stale_temporaries(dir);
    let mut temp = tempfile::Builder::new()
        .prefix(TEMP_PREFIX)
        .suffix(TEMP_SUFFIX)
        .rand_bytes(TEMP_RANDOM_LEN)
        .permissions(Permissions::from_mode(mode))
        .tempfile_in(dir)?;
    temp.as_file().lock()?;
    temp.write_all(contents)?;
    temp.as_file().sync_all()?;
    Ok(temp)
}

/// Makes a rename durable: the directory entry is only on disk after the directory
/// itself is fsynced.
fn sync_dir(path: &Path) -> io::Result<()> {
    File::open(parent_dir(path))?.sync_all()
}

/// Atomically replaces `path` with `contents`. The file gets `mode` (the caller passes
/// the old file's mode to keep it). A symlink at `path` is replaced, not followed: pass
/// a resolved path to write through a link.
///
/// # Errors
/// The underlying I/O error; the old file is intact whenever this fails.
pub fn replace_atomically(path: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
    Staged::new(path, contents, mode)?.replace()
}

/// Atomically creates `path` with `contents` and `mode`, failing with
/// [`io::ErrorKind::AlreadyExists`] if anything, a dangling symlink included, is there.
///
/// # Errors
/// The underlying I/O error; nothing is left behind when this fails.
pub fn create_atomically(path: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
    Staged::new(path, contents, mode)?.create()
}

/// A file written and fsynced beside its destination, not yet in place. Files that
/// belong together (a private key and its `.pub`) are all staged first, so that a
/// full disk fails before any of them is changed; dropping a `Staged` deletes it.
#[derive(Debug)]
pub struct Staged {
    /// The temporary file, deleted on drop unless moved into place.
    temp: tempfile::NamedTempFile,
    /// Where it goes.
    path: PathBuf,
}

impl Staged {
    /// Writes `contents` to a new temporary file beside `path`, created with `mode`
    /// and fsynced.
    ///
    /// # Errors
    /// The underlying I/O error (no space, read-only filesystem...); nothing is left
    /// behind.
    pub fn new(path: &Path, contents: &[u8], mode: u32) -> io::Result<Self> {
        Ok(Self {
            temp: write_temp(path, contents, mode)?,
            path: path.to_path_buf(),
        })
    }

    /// Renames the file over its destination (a symlink there is replaced, not
    /// followed) and makes the rename durable.
    ///
    /// # Errors
    /// [`io::ErrorKind::InvalidInput`] when the destination exists and is neither a
    /// regular file nor a symlink (a device, FIFO, socket or directory is never
    /// replaced); otherwise the underlying I/O error. The old file is intact whenever
    /// this fails.
    pub fn replace(self) -> io::Result<()> {
        match fs::symlink_metadata(&self.path) {
            Ok(metadata) if !metadata.is_file() && !metadata.file_type().is_symlink() => {
                return Err(not_a_regular_file(&self.path, &metadata));
            }
            _ => {}
        }
        self.temp.persist(&self.path).map_err(|error| error.error)?;
        sync_dir(&self.path)
    }

    /// Renames the file to its destination, failing with
    /// [`io::ErrorKind::AlreadyExists`] if anything, a dangling symlink included, is
    /// there.
    ///
    /// # Errors
    /// The underlying I/O error; the temporary file is removed when this fails.
    pub fn create(self) -> io::Result<()> {
        self.temp
            .persist_noclobber(&self.path)
            .map_err(|error| error.error)?;
        sync_dir(&self.path)
    }
}

/// What a trust file to be updated turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum UpdateTarget {
    /// Nothing there yet: an update creates it.
    Missing,
    /// A regular file (possibly through a symlink): updated in place by rename.
    Regular,
    /// The null device: reads as empty, and updates are discarded, as ssh does with
    /// `UserKnownHostsFile=/dev/null`.
    Discard,
}

/// Whether `metadata` (of a file, links followed) is the null device, wherever its
/// node is (a chroot's `/dev/null` too): a character device with `/dev/null`'s
/// device number.
pub fn is_null_device(metadata: &fs::Metadata) -> bool {
    metadata.file_type().is_char_device()
        && fs::metadata("/dev/null").is_ok_and(|null| null.rdev() == metadata.rdev())
}

/// What kind of thing `metadata` describes, for an error message.
fn kind_of(metadata: &fs::Metadata) -> &'static str {
    let kind = metadata.file_type();
    if kind.is_dir() {
        "a directory"
    } else if kind.is_fifo() {
        "a FIFO (named pipe)"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else if kind.is_symlink() {
        "a symbolic link"
    } else {
        "not a regular file"
    }
}

/// The error for a trust file that is something other than a regular file.
fn not_a_regular_file(path: &Path, metadata: &fs::Metadata) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!(
            "{} is {}, not a regular file: noise-echo only reads and replaces regular files \
             (give the path of a regular file, or /dev/null to keep nothing)",
            path.display(),
            kind_of(metadata)
        ),
    )
}

/// Checks, before any other work, that [`update_locked`] can update `path`: it is
/// missing, a regular file, or the null device (links followed). A command calls
/// this first so that a FIFO or a directory given as its known_hosts or
/// authorized_keys fails at once, not after connecting.
///
/// # Errors
/// [`io::ErrorKind::InvalidInput`] naming the path and what it is, for anything
/// else; the I/O error when it cannot be examined.
pub fn check_updatable(path: &Path) -> io::Result<UpdateTarget> {
    match fs::metadata(path) {
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(UpdateTarget::Missing),
        Err(error) => Err(error),
        Ok(metadata) if metadata.is_file() => Ok(UpdateTarget::Regular),
        Ok(metadata) if is_null_device(&metadata) => Ok(UpdateTarget::Discard),
        Ok(metadata) => Err(not_a_regular_file(path, &metadata)),
    }
}

/// Whether `name` is one of our temporary files' names.
fn is_temporary_name(name: &str) -> bool {
    name.strip_prefix(TEMP_PREFIX)
        .and_then(|rest| rest.strip_suffix(TEMP_SUFFIX))
        .is_some_and(|random| {
            random.len() == TEMP_RANDOM_LEN && random.bytes().all(|b| b.is_ascii_alphanumeric())
        })
}

/// Removes the temporary files that writers of ours killed mid-write (SIGKILL,
/// power loss) left in `dir`, and returns how many. Only files that are certainly
/// ours and abandoned go: named as ours are, regular files (never a symlink or
/// anything else), owned by this process's user, unchanged for at least
/// [`STALE_TEMPORARY_AGE`], and not locked by a live writer. They are never read.
/// Best effort: a file that cannot be examined or removed is left alone.
pub fn remove_stale_temporaries(dir: &Path) -> usize {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    let me = rustix::process::geteuid().as_raw();
    let now = SystemTime::now();
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        if !name.to_str().is_some_and(is_temporary_name) {
            continue;
        }
        let path = entry.path();
        let Ok(metadata) = fs::symlink_metadata(&path) else {
            continue;
        };
        let old_enough = metadata
            .modified()
            .ok()
            .and_then(|modified| now.duration_since(modified).ok())
            .is_some_and(|age| age >= STALE_TEMPORARY_AGE);
        if !metadata.is_file() || metadata.uid() != me || !old_enough {
            continue;
        }
        // Opened without following a link and without blocking, only to take its
        // lock: a live writer holds it.
        let Ok(file) = OpenOptions::new()
            .read(true)
            .custom_flags(nofollow_nonblock())
            .open(&path)
        else {
            continue;
        };
        let same = file
            .metadata()
            .is_ok_and(|now| now.ino() == metadata.ino() && now.dev() == metadata.dev());
        if same && file.try_lock().is_ok() && fs::remove_file(&path).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// Opens `path` for reading without blocking on a FIFO, and refuses anything that is
/// not a regular file (a FIFO, socket, device or directory) with
/// [`io::ErrorKind::InvalidInput`] and a message saying what it is. Reading a FIFO
/// would hang until something writes to it; a key or trust file is never one.
///
/// # Errors
/// Opening fails (the error of `open(2)`), or `path` is not a regular file.
pub fn open_regular(path: &Path) -> io::Result<(fs::File, fs::Metadata)> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = match fs::OpenOptions::new()
        .read(true)
        .custom_flags(nonblock())
        .open(path)
    {
        Ok(file) => file,
        // A socket cannot be opened at all (ENXIO): say what it is instead.
        Err(error) => match fs::metadata(path) {
            Ok(metadata) if !metadata.is_file() => return Err(not_readable_as_a_file(&metadata)),
            _ => return Err(error),
        },
    };
    let metadata = file.metadata()?;
    if !metadata.is_file() {
        return Err(not_readable_as_a_file(&metadata));
    }
    Ok((file, metadata))
}

/// The error for reading something that is not a regular file, saying what it is.
fn not_readable_as_a_file(metadata: &fs::Metadata) -> io::Error {
    let what = match kind_of(metadata) {
        "not a regular file" => "it is not a regular file".to_owned(),
        kind => format!("it is {kind}, not a regular file"),
    };
    io::Error::new(io::ErrorKind::InvalidInput, what)
}

/// The whole of a regular file, as [`std::fs::read`] but refusing, without blocking,
/// anything [`open_regular`] refuses.
///
/// # Errors
/// As [`open_regular`], or a read error.
pub fn read_regular(path: &Path) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let (mut file, metadata) = open_regular(path)?;
    let mut bytes = Vec::with_capacity(usize::try_from(metadata.len()).unwrap_or(0));
    file.read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// `O_NOFOLLOW | O_NONBLOCK`, for opening a name without following a link at it and
/// without blocking on a FIFO.
fn nofollow_nonblock() -> i32 {
    let flags = rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK;
    // The flags' bits fit in open(2)'s int.
    i32::try_from(flags.bits()).unwrap_or(0)
}

/// `O_NONBLOCK`, so that opening a FIFO that replaced a checked file never blocks.
pub(crate) fn nonblock() -> i32 {
    i32::try_from(rustix::fs::OFlags::NONBLOCK.bits()).unwrap_or(0)
}

/// The path to write when updating `path`: the target of a symlink (so a linked
/// authorized_keys stays linked), else `path` itself.
fn resolve_for_update(path: &Path) -> io::Result<PathBuf> {
    match fs::symlink_metadata(path) {
        Ok(metadata) if metadata.file_type().is_symlink() => fs::canonicalize(path),
        _ => Ok(path.to_path_buf()),
    }
}

/// Read-modify-write of a shared text file under an exclusive lock.
///
/// Creates the file's directory (0700) and the file itself (with `mode_if_new`) when
/// missing, locks it, passes its current contents to `change`, and if `change`
/// returns new contents, atomically replaces the file with them, keeping its mode.
/// Because the replaced file is a new inode, a writer that was waiting on the old
/// inode's lock notices and retries on the new file, so no update is lost.
///
/// The null device reads as empty and the new contents are discarded (nothing is
/// created or renamed); anything else that is not a regular file is refused.
///
/// # Errors
/// I/O errors (wrapped in `E` through `From<io::Error>`), among them
/// [`io::ErrorKind::InvalidInput`] for a path that is not a regular file (see
/// [`check_updatable`]), and whatever `change` returns.
pub fn update_locked<T, E>(
    path: &Path,
    mode_if_new: u32,
    change: impl FnOnce(&[u8]) -> Result<(Option<Vec<u8>>, T), E>,
) -> Result<T, E>
where
    E: From<io::Error>,
{
    if check_updatable(path)? == UpdateTarget::Discard {
        return change(&[]).map(|(_discarded, result)| result);
    }
    create_private_dir_all(parent_dir(path))?;
    let path = resolve_for_update(path)?;
    for _ in 0..MAX_LOCK_RETRIES {
        // Without blocking: a FIFO put there since the check must not hang us.
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(mode_if_new)
            .custom_flags(nonblock())
            .open(&path)?;
        let opened = file.metadata()?;
        if !opened.is_file() {
            return Err(not_a_regular_file(&path, &opened).into());
        }
        file.lock()?;
        let locked = file.metadata()?;
        let current = fs::metadata(&path);
        let still_current =
            matches!(&current, Ok(now) if now.ino() == locked.ino() && now.dev() == locked.dev());
        if !still_current {
            // Another writer renamed a new file into place while we waited.
            continue;
        }
        // From the locked file itself, not by name: what we read is what we locked.
        let mut contents = Vec::new();
        (&file).read_to_end(&mut contents)?;
        let (new_contents, result) = change(&contents)?;
        if let Some(new_contents) = new_contents {
            replace_atomically(&path, &new_contents, locked.mode() & 0o7777)?;
        }
        // The lock is released when `file` is dropped, after the rename.
        return Ok(result);
    }
    Err(io::Error::other(format!(
        "{}: gave up after {MAX_LOCK_RETRIES} attempts to lock it (it kept being replaced)",
        path.display()
    ))
    .into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Barrier};

    #[test]
    fn create_atomically_refuses_existing_files_and_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        create_atomically(&path, b"one", 0o600).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"one");
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        let error = create_atomically(&path, b"two", 0o600).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&path).unwrap(), b"one");

        let link = dir.path().join("link");
        std::os::unix::fs::symlink(dir.path().join("elsewhere"), &link).unwrap();
        let error = create_atomically(&link, b"secret", 0o600).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::AlreadyExists);
        assert!(!dir.path().join("elsewhere").exists());
        // No temporary files are left behind.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 2);
    }

    #[test]
    fn replace_atomically_sets_the_requested_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("file");
        fs::write(&path, b"old").unwrap();
        replace_atomically(&path, b"new", 0o644).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o644);
    }

    #[test]
    fn update_locked_creates_directory_and_file_and_keeps_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/dir/authorized_keys");
        update_locked::<_, io::Error>(&path, 0o600, |old| {
            assert!(old.is_empty());
            Ok((Some(b"line\n".to_vec()), ()))
        })
        .unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"line\n");
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        let sub = dir.path().join("sub");
        assert_eq!(fs::metadata(sub).unwrap().mode() & 0o777, 0o700);

        fs::set_permissions(&path, Permissions::from_mode(0o640)).unwrap();
        update_locked::<_, io::Error>(&path, 0o600, |old| {
            Ok((Some([old, b"more\n"].concat()), ()))
        })
        .unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"line\nmore\n");
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o640);
    }

    #[test]
    fn update_locked_writes_through_a_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        fs::write(&real, b"a\n").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        update_locked::<_, io::Error>(&link, 0o600, |old| Ok((Some([old, b"b\n"].concat()), ())))
            .unwrap();
        assert!(fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(fs::read(&real).unwrap(), b"a\nb\n");
    }

    #[test]
    fn update_locked_leaves_the_file_alone_when_change_fails_or_declines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        fs::write(&path, b"keep").unwrap();
        let result = update_locked::<(), io::Error>(&path, 0o600, |_| Err(io::Error::other("no")));
        assert!(result.is_err());
        update_locked::<_, io::Error>(&path, 0o600, |_| Ok((None, ()))).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"keep");
    }

    #[test]
    fn concurrent_updates_all_land() {
        let dir = tempfile::tempdir().unwrap();
        let path = Arc::new(dir.path().join("shared"));
        let writers = 8;
        let appends_each = 25;
        let barrier = Arc::new(Barrier::new(writers));
        let handles: Vec<_> = (0..writers)
            .map(|writer| {
                let path = Arc::clone(&path);
                let barrier = Arc::clone(&barrier);
                std::thread::spawn(move || {
                    barrier.wait();
                    for append in 0..appends_each {
                        update_locked::<_, io::Error>(&path, 0o600, |old| {
                            let line = format!("{writer}-{append}\n");
                            Ok((Some([old, line.as_bytes()].concat()), ()))
                        })
                        .unwrap();
                    }
                })
            })
            .collect();
        for handle in handles {
            handle.join().unwrap();
        }
        let text = fs::read_to_string(&*path).unwrap();
        let mut lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), writers * appends_each);
        lines.sort_unstable();
        lines.dedup();
        assert_eq!(lines.len(), writers * appends_each);
    }

    #[test]
    fn non_regular_files_are_never_replaced_and_a_fifo_never_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        assert!(made.unwrap().success());
        let sub = dir.path().join("sub");
        fs::create_dir(&sub).unwrap();
        for path in [&fifo, &sub] {
            let error = check_updatable(path).unwrap_err();
            assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
            let error =
                update_locked::<_, io::Error>(path, 0o600, |_| Ok((Some(b"x".to_vec()), ())))
                    .unwrap_err();
            assert!(error.to_string().contains("not a regular file"), "{error}");
            let error = replace_atomically(path, b"x", 0o600).unwrap_err();
            assert_eq!(error.kind(), io::ErrorKind::InvalidInput, "{error}");
        }
        assert!(fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo());
        assert!(sub.is_dir());
        // Only our own temporary files, none left behind.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 2);
    }

    #[test]
    fn dev_null_reads_empty_and_discards_updates() {
        assert_eq!(
            check_updatable(Path::new("/dev/null")).unwrap(),
            UpdateTarget::Discard
        );
        let seen = update_locked::<_, io::Error>(Path::new("/dev/null"), 0o600, |old| {
            Ok((Some(b"discarded".to_vec()), old.to_vec()))
        })
        .unwrap();
        assert!(seen.is_empty());
        assert!(fs::metadata("/dev/null")
            .unwrap()
            .file_type()
            .is_char_device());
    }

    #[test]
    fn stale_temporaries_go_but_young_or_locked_ones_and_other_names_stay() {
        let dir = tempfile::tempdir().unwrap();
        let old = SystemTime::now() - STALE_TEMPORARY_AGE * 2;
        let make = |name: &str, aged: bool| {
            let path = dir.path().join(name);
            let file = File::create(&path).unwrap();
            if aged {
                file.set_modified(old).unwrap();
            }
            (path, file)
        };
        let (stale, _) = make(".noise-echo-a1B2c3.tmp", true);
        let (young, _) = make(".noise-echo-d4E5f6.tmp", false);
        let (locked, held) = make(".noise-echo-g7H8i9.tmp", true);
        held.lock().unwrap();
        let (other, _) = make(".noise-echo-notes.tmp", true);
        assert_eq!(remove_stale_temporaries(dir.path()), 1);
        assert!(!stale.exists());
        assert!(young.exists() && locked.exists() && other.exists());
        // A write there does the same, and leaves none of its own.
        drop(held);
        replace_atomically(&dir.path().join("file"), b"x", 0o600).unwrap();
        assert!(!locked.exists());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 3);
    }
}
