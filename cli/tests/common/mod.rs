//! Helpers shared by the cli test binaries: the `noise-echo` binary under a
//! temporary home, the repository's key fixtures, and lossy text of output.

#![allow(dead_code)] // each test binary uses a different subset

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use assert_cmd::cargo::CommandCargoExt;

pub mod served;

/// The `noise-echo` binary this package builds.
pub const BIN: &str = env!("CARGO_BIN_EXE_noise-echo");

/// The `noise-echo` binary with stdin closed and no `RUST_LOG`.
pub fn noise_echo(home: &Path) -> Command {
    let mut command = Command::cargo_bin("noise-echo").unwrap();
    // Default file locations resolve under this temporary home, never the real one.
    command
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    command
}

/// A file of the repository's keys/ directory (see keys/README.md).
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../keys")
        .join(name)
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
