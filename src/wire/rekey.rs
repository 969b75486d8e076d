//! When a session's transport keys are replaced (protocol v2's in-band rekeying,
//! docs/PROTOCOL.md "Protocol v2"): the policy a server advertises in message 2,
//! which both directions follow.
//!
//! Each sender must end with a REKEY record the transport message that brings its
//! count of messages under one key to `max_messages`, or its plaintext bytes under
//! one key to `max_bytes` or past it, and the first message it sends once its key is
//! `max_interval` old; it may rekey earlier. Receivers check the two counts.

use std::time::Duration;

/// The rekey thresholds of a session, whichever comes first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RekeyPolicy {
    /// Transport messages under one key, at most (>= 1).
    pub max_messages: u64,
    /// Plaintext bytes under one key: the message reaching this count rekeys (>= 1).
    pub max_bytes: u64,
    /// Age of a key after which the next message sent rekeys (>= 1 s; whole seconds
    /// on the wire).
    pub max_interval: Duration,
}

impl RekeyPolicy {
    /// 1 GiB, 2^24 messages or one hour. 1 GiB is the low end of OpenSSH's default
    /// RekeyLimit and far below AES-GCM's safe use of one key (TLS 1.3 allows
    /// 2^24.5 full records, about 24 GB); 2^24 messages is that same TLS 1.3 record
    /// bound for small messages. An hour bounds how much past traffic a key stolen
    /// from memory can decrypt. A rekey costs one block of the cipher, so these
    /// limits cost nothing measurable.
    pub const DEFAULT: RekeyPolicy = RekeyPolicy {
        max_messages: 1 << 24,
        max_bytes: 1 << 30,
        max_interval: Duration::from_secs(3600),
    };
}

impl Default for RekeyPolicy {
    fn default() -> Self {
        Self::DEFAULT
    }
}
