//! Default locations of keys and trust files: the user's configuration directory
//! (`$XDG_CONFIG_HOME/noise-echo`, usually `~/.config/noise-echo` on Linux and
//! `~/Library/Application Support/noise-echo` on macOS), as `directories` resolves it.

use std::path::PathBuf;

/// File name of a user's identity key (as in `~/.ssh/id_ed25519`).
pub const IDENTITY_FILE: &str = "id_ed25519";
/// File name of a server's host key (as in `/etc/ssh/ssh_host_ed25519_key`).
pub const HOST_KEY_FILE: &str = "host_ed25519_key";
/// File name of the server's allow-list of client keys.
pub const AUTHORIZED_KEYS_FILE: &str = "authorized_keys";
/// File name of the client's record of server keys.
pub const KNOWN_HOSTS_FILE: &str = "known_hosts";

/// The directory noise-echo keeps its files in.
///
/// # Errors
/// When no home directory can be found (no `HOME` in the environment), with the fix.
pub fn config_dir() -> anyhow::Result<PathBuf> {
    directories::ProjectDirs::from("", "", "noise-echo")
        .map(|dirs| dirs.config_dir().to_path_buf())
        .ok_or_else(|| {
            anyhow::anyhow!(
                "cannot find the user's configuration directory (is HOME set?); pass the file path explicitly"
            )
        })
}

/// `name` inside [`config_dir`].
///
/// # Errors
/// As [`config_dir`].
pub fn default_file(name: &str) -> anyhow::Result<PathBuf> {
    Ok(config_dir()?.join(name))
}
