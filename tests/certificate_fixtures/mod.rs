//! The ssh-keygen-made fixtures of keys/ and keys/certs/ (keys/generate-certs.sh),
//! read the same way by every certificate test, and the time bound of their
//! loopback exchanges.

#![allow(dead_code)] // each test binary uses a different subset

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use noise_echo::identity::Identity;
use noise_echo::openssh::keyfile::parse_identity;

/// Bounds every exchange: far beyond what a loopback handshake takes.
pub const LIMIT: Duration = Duration::from_secs(20);

/// `future`, or a panic once [`LIMIT`] has passed.
pub async fn bounded<T>(future: impl Future<Output = T>) -> T {
    tokio::time::timeout(LIMIT, future)
        .await
        .expect("the exchange finished in time")
}

/// The repository's keys/ directory.
pub fn keys_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/keys"))
}

/// The text of `keys/NAME`.
pub fn fixture(name: &str) -> String {
    let path = keys_dir().join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The private key `keys/NAME`.
pub fn identity(name: &str) -> Identity {
    parse_identity(&fixture(name), &keys_dir().join(name)).expect("fixture identity")
}

/// The blob of `keys/certs/NAME-cert.pub`.
pub fn blob(name: &str) -> Vec<u8> {
    use base64::Engine as _;
    let line = fixture(&format!("certs/{name}-cert.pub"));
    base64::engine::general_purpose::STANDARD
        .decode(line.split_whitespace().nth(1).expect("base64 field"))
        .expect("base64")
}
