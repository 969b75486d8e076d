//! sshd's `StrictModes` for the allow-list: an authorized_keys that someone other
//! than the server's user (or root) can change is not an allow-list, so it is
//! refused, and so is one under a directory that such a user can change (they could
//! rename their own file into its place).
//!
//! The file and every directory above it (after resolving symlinks, as sshd does)
//! must be owned by root or by the server's effective user, and must not be writable
//! by group or others. One exception, as the sticky bit intends: a directory such as
//! `/tmp` that others may write but that has the sticky bit set only lets each owner
//! rename or remove their own entries, so it is safe for the entries that root or
//! we own below it (an allow-list in a `mktemp -d` directory keeps working).

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Bits of a mode that let the group or others write.
const GROUP_OR_OTHER_WRITE: u32 = 0o022;
/// The sticky bit.
const STICKY: u32 = 0o1000;

/// Why an allow-list is refused under `StrictModes`, naming the file or directory at
/// fault and the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StrictModesError {
    /// The file or a directory above it can be written by group or others.
    #[error(
        "{} {} is writable by {who} (mode {mode:04o}), so {who} could change who may connect; \
         fix: chmod go-w {path}{extra} (or serve --strict-modes no, if that is intended)",
        if *.is_dir { "the directory" } else { "the allow-list" },
        .path.display(),
        path = .path.display(),
        who = writers(*.mode),
        mode = .mode & 0o7777,
        extra = if *.is_dir {
            format!(", or chmod +t {} for a shared directory such as /tmp", .path.display())
        } else {
            String::new()
        },
    )]
    Writable {
        /// The file or directory at fault.
        path: PathBuf,
        /// Whether it is a directory above the allow-list rather than the file.
        is_dir: bool,
        /// Its mode.
        mode: u32,
    },
    /// The file or a directory above it belongs to another user.
    #[error(
        "{} {} belongs to uid {owner}, neither root nor this server's user (uid {server_uid}), \
         so that user could change who may connect; fix: chown {server_uid} {} \
         (or serve --strict-modes no, if that is intended)",
        if *.is_dir { "the directory" } else { "the allow-list" },
        .path.display(),
        .path.display(),
    )]
    OtherOwner {
        /// The file or directory at fault.
        path: PathBuf,
        /// Whether it is a directory above the allow-list rather than the file.
        is_dir: bool,
        /// Its owner's uid.
        owner: u32,
        /// The server's effective uid.
        server_uid: u32,
    },
}

/// Who the write bits of `mode` let write.
fn writers(mode: u32) -> &'static str {
    match (mode & 0o020 != 0, mode & 0o002 != 0) {
        (true, true) => "its group and others",
        (true, false) => "its group",
        _ => "others",
    }
}

/// Checks `path` (an existing allow-list) and every directory above it for the
/// server's effective user.
///
/// # Errors
/// `Ok(Err(..))` for a file the rules refuse; `Err` when a component cannot be
/// examined (a missing file among them: the caller reads it next and reports that).
pub(crate) fn check(path: &Path) -> io::Result<Result<(), StrictModesError>> {
    check_for(path, rustix::process::geteuid().as_raw())
}

/// [`check`] for the user `server_uid`.
pub(crate) fn check_for(path: &Path, server_uid: u32) -> io::Result<Result<(), StrictModesError>> {
    let real = fs::canonicalize(path)?;
    let mut is_dir = false;
    for component in real.ancestors() {
        let metadata = fs::symlink_metadata(component)?;
        let owner = metadata.uid();
        if owner != 0 && owner != server_uid {
            return Ok(Err(StrictModesError::OtherOwner {
                path: component.to_path_buf(),
                is_dir,
                owner,
                server_uid,
            }));
        }
        let mode = metadata.mode();
        let sticky_dir = metadata.is_dir() && mode & STICKY != 0;
        if mode & GROUP_OR_OTHER_WRITE != 0 && !sticky_dir {
            return Ok(Err(StrictModesError::Writable {
                path: component.to_path_buf(),
                is_dir,
                mode,
            }));
        }
        is_dir = true;
    }
    Ok(Ok(()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn chmod(path: &Path, mode: u32) {
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }

    fn me() -> u32 {
        rustix::process::geteuid().as_raw()
    }

    #[test]
    fn a_private_file_in_a_private_directory_under_tmp_is_accepted() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("authorized_keys");
        fs::write(&file, b"").unwrap();
        chmod(&file, 0o644);
        assert_eq!(check(&file).unwrap(), Ok(()));
    }

    #[test]
    fn group_or_world_writable_files_are_refused_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("authorized_keys");
        fs::write(&file, b"").unwrap();
        for (mode, who) in [
            (0o664, "its group"),
            (0o646, "others"),
            (0o666, "its group and others"),
        ] {
            chmod(&file, mode);
            let error = check(&file).unwrap().unwrap_err();
            let real = fs::canonicalize(&file).unwrap();
            assert_eq!(
                error,
                StrictModesError::Writable {
                    path: real.clone(),
                    is_dir: false,
                    mode: 0o100000 | mode
                }
            );
            let text = error.to_string();
            assert!(text.contains(&format!("writable by {who}")), "{text}");
            assert!(
                text.contains(&format!("chmod go-w {}", real.display())),
                "{text}"
            );
        }
        // A sticky bit on a file is no excuse.
        chmod(&file, 0o1666);
        assert!(check(&file).unwrap().is_err());
    }

    #[test]
    fn a_writable_directory_above_is_refused_unless_it_is_sticky() {
        let dir = tempfile::tempdir().unwrap();
        let shared = dir.path().join("shared");
        fs::create_dir(&shared).unwrap();
        let file = shared.join("authorized_keys");
        fs::write(&file, b"").unwrap();
        chmod(&file, 0o600);
        chmod(&shared, 0o775);
        let error = check(&file).unwrap().unwrap_err();
        assert!(
            matches!(&error, StrictModesError::Writable { path, is_dir: true, .. }
                if *path == fs::canonicalize(&shared).unwrap()),
            "{error:?}"
        );
        assert!(error.to_string().contains("chmod +t"), "{error}");
        chmod(&shared, 0o1777);
        assert_eq!(check(&file).unwrap(), Ok(()));
    }

    #[test]
    fn files_of_another_user_are_refused_but_roots_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("authorized_keys");
        fs::write(&file, b"").unwrap();
        let owner = me();
        // Seen from another server user, our file belongs to someone else, unless we
        // are root: root's files are trusted by everyone.
        let other = owner.wrapping_add(1);
        let result = check_for(&file, other).unwrap();
        if owner == 0 {
            assert_eq!(result, Ok(()));
            // As root we can give the file away, and then it is refused.
            std::os::unix::fs::chown(&file, Some(65534), None).unwrap();
            let error = check(&file).unwrap().unwrap_err();
            assert!(
                matches!(
                    error,
                    StrictModesError::OtherOwner {
                        owner: 65534,
                        server_uid: 0,
                        is_dir: false,
                        ..
                    }
                ),
                "{error:?}"
            );
            assert!(error.to_string().contains("chown 0 "), "{error}");
        } else {
            assert!(
                matches!(result, Err(StrictModesError::OtherOwner { owner: o, server_uid, .. })
                    if o == owner && server_uid == other),
                "{result:?}"
            );
        }
    }

    #[test]
    fn a_missing_file_is_an_io_error_for_the_reader_to_report() {
        let dir = tempfile::tempdir().unwrap();
        let error = check(&dir.path().join("missing")).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::NotFound);
    }
}
