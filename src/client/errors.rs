//! The client's errors: [`ClientError`], grouped so callers (the CLI's exit
//! statuses) can tell the cases apart, and the step a timeout interrupted.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

use crate::client::HostKeyError;
use crate::wire::{Refusal, WireError};

/// Everything that can go wrong when connecting, grouped so callers (the CLI's exit
/// statuses) can tell the cases apart.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The server could not be reached.
    #[error("cannot connect to {target}: {cause}")]
    Connect {
        /// Where we tried.
        target: String,
        /// Why it failed; in the message, so not a `source()`.
        cause: io::Error,
    },
    /// The connection or the handshake took longer than the configured timeout
    /// ([`ClientConfig::connect_timeout`], [`ClientConfig::handshake_timeout`]).
    #[error("{stage} {target} timed out after {}", seconds(*after))]
    Timeout {
        /// Where we tried.
        target: String,
        /// Which step timed out.
        stage: TimeoutStage,
        /// The timeout that expired.
        after: Duration,
    },
    /// The server closed the connection while the user was at the host-key prompt,
    /// over a stream [`connect_stream`] cannot open again (the key the user accepted
    /// is saved: connecting again finds it known). [`connect`] reconnects instead.
    #[error("the server closed the connection while the host key prompt was open; the key was saved: connect again")]
    ClosedDuringPrompt,
    /// The server's key is not trusted: unknown and not accepted, changed, revoked,
    /// or not the expected one. Nothing revealing our identity was sent.
    #[error(transparent)]
    HostKeyNotTrusted(#[from] HostKeyError),
    /// known_hosts could not be read or updated.
    #[error("{}: {cause}", path.display())]
    KnownHosts {
        /// The file.
        path: PathBuf,
        /// What failed; in the message, so not a `source()`.
        cause: io::Error,
    },
    /// The handshake or the session failed.
    #[error(transparent)]
    Wire(#[from] WireError),
    /// The server ended the session without answering a request: its idle timeout
    /// or its shutdown (ssh's "Connection closed by remote host"). Not a protocol
    /// violation: the stream ended between records.
    #[error("the server closed the session without answering")]
    Closed,
}

/// The step of [`connect`] that a [`ClientError::Timeout`] interrupted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TimeoutStage {
    /// Opening the TCP connection: nothing answered (a black-holed address, or a
    /// firewall that drops packets).
    Connect,
    /// The handshake: the connection was open but the server did not complete it.
    Handshake,
}

impl fmt::Display for TimeoutStage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Connect => "connecting to",
            Self::Handshake => "the handshake with",
        })
    }
}

/// `1 s`, `1.5 s`: a timeout as the user set it.
fn seconds(duration: Duration) -> String {
    format!("{} s", duration.as_secs_f64())
}

/// Turns a [`Refusal::PermissionDenied`] reason into what the user reads.
pub fn permission_denied_reason(error: &ClientError) -> Option<&str> {
    match error {
        ClientError::Wire(WireError::NotAllowed(Refusal::PermissionDenied(reason))) => Some(reason),
        _ => None,
    }
}
