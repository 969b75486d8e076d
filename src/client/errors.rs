//! The client's errors: [`ClientError`], grouped so callers (the CLI's exit
//! statuses) can tell the cases apart, and the step a timeout interrupted.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

use crate::client::HostKeyError;
use crate::wire::{ProtocolVersion, Refusal, Suite, WireError};

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
    /// ([`ClientConfig::connect_timeout`](crate::client::ClientConfig::connect_timeout), [`ClientConfig::handshake_timeout`](crate::client::ClientConfig::handshake_timeout)).
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
    /// over a stream [`connect_stream`](crate::client::connect_stream) cannot open again (the key the user accepted
    /// is saved: connecting again finds it known). [`connect`](crate::client::connect) reconnects instead.
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
    /// Protocol v2: the server accepts no cipher suite the client can offer: not
    /// the one the user forced (`forced`), or none this client runs, or (on the
    /// automatic retry) not even the one it listed first. Nothing was
    /// authenticated: the list is the server's word, or a man in the middle's.
    #[error("{}", no_common_suite(*offered, accepted, *forced))]
    NoCommonSuite {
        /// The suite offered last.
        offered: Suite,
        /// The Noise protocol names the server said it accepts, its preference first.
        accepted: Vec<String>,
        /// Whether the user chose the suite ([`ClientConfig::cipher`](crate::client::ClientConfig::cipher)).
        forced: bool,
    },
    /// Protocol v2, over a stream [`connect_stream`](crate::client::connect_stream)
    /// cannot open again: the server does not accept the suite offered automatically,
    /// and the retry with one it accepts needs a new connection (which
    /// [`connect`](crate::client::connect) makes by itself).
    #[error("the server does not accept the cipher suite {offered}; it accepts {}: retrying with one of them needs a new connection", .accepted.join(", "))]
    SuiteRetryNeeded {
        /// The suite offered.
        offered: Suite,
        /// The Noise protocol names the server accepts, its preference first.
        accepted: Vec<String>,
    },
    /// Protocol v2: the server refused the automatic retry, because the suite the
    /// earlier UNSUPPORTED_SUITE answer rejected is one it accepts: that answer
    /// was forged (docs/PROTOCOL.md, section 14).
    #[error("the server refused the retry: its earlier answer did not come from it (a man in the middle?); the answer claimed it does not accept {rejected}")]
    RetryRefused {
        /// The suite the forged answer rejected.
        rejected: String,
    },
    /// The server does not speak the protocol version offered (v2).
    #[error("{}", version_not_spoken(*offered, accepted))]
    VersionNotSpoken {
        /// The version offered.
        offered: u8,
        /// The versions the server speaks.
        accepted: Vec<u8>,
    },
    /// Protocol v2: a request longer than the server's advertised limit, refused
    /// before anything was sent (the server would refuse it and end the session).
    #[error("request of {len} bytes exceeds the server's limit of {limit} bytes")]
    RequestTooLarge {
        /// The request body's length.
        len: usize,
        /// The server's max_request, from handshake message 2.
        limit: u32,
    },
}

/// [`ClientError::NoCommonSuite`]'s text: what the server accepts and what to do.
fn no_common_suite(offered: Suite, accepted: &[String], forced: bool) -> String {
    let listed = accepted.join(", ");
    let runnable = accepted
        .iter()
        .find_map(|name| Suite::from_noise_name(name.as_bytes()));
    match (forced, runnable) {
        (true, Some(suite)) => format!(
            "the server does not accept the cipher {} ({offered}); it accepts {listed}: connect with --cipher {}",
            offered.short_name(),
            suite.short_name()
        ),
        (true, None) | (false, None) => format!(
            "the server accepts none of the cipher suites this client runs ({}); it accepts {listed}",
            Suite::ALL.map(Suite::short_name).join(", ")
        ),
        (false, Some(suite)) => format!(
            "the server does not accept the cipher suite {offered} even on the retry; it accepts {listed}: connect with --cipher {}",
            suite.short_name()
        ),
    }
}

/// [`ClientError::VersionNotSpoken`]'s text, naming `--protocol 1` when the server
/// speaks it.
fn version_not_spoken(offered: u8, accepted: &[u8]) -> String {
    let listed: Vec<String> = accepted.iter().map(u8::to_string).collect();
    let listed = match listed.is_empty() {
        true => "none".to_owned(),
        false => listed.join(", "),
    };
    let fix = match (
        accepted.contains(&ProtocolVersion::V1.number()),
        accepted.is_empty(),
    ) {
        (true, _) => ": connect with --protocol 1",
        (false, true) => "",
        (false, false) => ", none of which this client speaks",
    };
    format!("the server does not speak protocol version {offered}; it speaks {listed}{fix}")
}

/// The step of [`connect`](crate::client::connect) that a [`ClientError::Timeout`] interrupted.
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
