//! When a session's transport keys are replaced (protocol v2's in-band rekeying,
//! docs/PROTOCOL.md "Protocol v2"): the policy a server advertises in message 2,
//! which both directions follow.
//!
//! Each sender must end with a REKEY record the transport message that brings its
//! count of messages under one key to `max_messages`, or its plaintext bytes under
//! one key to `max_bytes` or past it, and the first message it sends once its key is
//! `max_interval` old; it may rekey earlier. Receivers check the two counts.
//!
//! A REKEY is a record, so it can only come between records: a message that ends
//! inside a record (a large body spans several messages) cannot end with one. The
//! duty then passes to the next message that ends at a record boundary, which is
//! at most one record later (records are bounded by the receiver's limits). So the
//! rule both ends apply is: once a message reaches a limit, the first message from
//! it on whose plaintext ends at a record boundary ends with REKEY; a receiver
//! finding such a message without REKEY closes the session.

use std::num::NonZeroU32;
use std::time::Duration;

use crate::wire::error::Violation;
use crate::wire::record::Role;

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

/// How much of one direction's current key has been used, against the policy's
/// count limits: the sending half counts to know when it must rekey, the receiving
/// half to check that the peer did. A message's bytes are its whole plaintext,
/// the REKEY record included.
///
/// Every field is a `u32`, because every session holds two of these for its whole
/// life (see docs/BENCHMARKS.md on the connection task's size). A limit of 2^32 - 1
/// or more is held as [`u32::MAX`]: the sender then rekeys at 2^32 - 1 messages or
/// bytes, earlier than the policy requires (which it may), and the receiver does
/// not check that limit at all (it cannot tell how far past 2^32 the peer may go).
/// The defaults, and any limit under 4 GiB, are exact.
#[derive(Debug, Clone)]
pub(crate) struct KeyUse {
    /// The policy's message limit (>= 1), kept to restart the count after each rekey.
    max_messages: NonZeroU32,
    /// Transport messages under the current key.
    messages: u32,
    /// The policy's byte limit (>= 1), likewise.
    max_bytes: NonZeroU32,
    /// Plaintext bytes of the transport messages under the current key.
    bytes: u32,
}

/// `limit` as a [`KeyUse`] limit: at least 1 (the policy's minimum), at most
/// [`u32::MAX`].
fn clamp(limit: u64) -> NonZeroU32 {
    NonZeroU32::new(u32::try_from(limit).unwrap_or(u32::MAX)).unwrap_or(NonZeroU32::MIN)
}

impl KeyUse {
    /// Nothing used yet, under `policy`'s limits.
    pub(crate) fn new(policy: &RekeyPolicy) -> Self {
        Self {
            max_messages: clamp(policy.max_messages),
            messages: 0,
            max_bytes: clamp(policy.max_bytes),
            bytes: 0,
        }
    }

    /// For a sender: whether one more message of `len` plaintext bytes under the
    /// current key reaches a limit, and so must end with REKEY.
    #[inline]
    pub(crate) fn reaches_limit(&self, len: usize) -> bool {
        len >= self.bytes_to_limit()
    }

    /// Counts a message of `len` plaintext bytes under the current key.
    pub(crate) fn count(&mut self, len: usize) {
        let len = u32::try_from(len).unwrap_or(u32::MAX);
        self.messages = self.messages.saturating_add(1);
        self.bytes = self.bytes.saturating_add(len);
    }

    /// For a receiver, once a message is counted: whether it reached a limit the
    /// receiver checks (one under [`u32::MAX`]), so must have ended with REKEY.
    fn reached_checked_limit(&self) -> bool {
        let reached =
            |count: u32, limit: NonZeroU32| limit.get() < u32::MAX && count >= limit.get();
        reached(self.messages, self.max_messages) || reached(self.bytes, self.max_bytes)
    }

    /// For a sender: the fewest plaintext bytes of the next message that reach a
    /// limit (0 when any message would, by count): the one rule behind
    /// [`reaches_limit`](Self::reaches_limit) and the sender's room per message.
    #[inline]
    pub(crate) fn bytes_to_limit(&self) -> usize {
        if self.messages.saturating_add(1) >= self.max_messages.get() {
            return 0;
        }
        self.max_bytes.get().saturating_sub(self.bytes) as usize
    }

    /// A new key: the counts start again.
    pub(crate) fn restart(&mut self) {
        self.messages = 0;
        self.bytes = 0;
    }
}

/// The sending half's rekey state (protocol v2): the counts, and the key's
/// deadline. Boxed by the half: the deadline is a 16-byte `Instant`, and the
/// session's idle size is what every connection pays (docs/BENCHMARKS.md).
#[derive(Debug, Clone)]
pub(crate) struct SendRekey {
    /// The counts under the current key.
    key_use: KeyUse,
    /// When the current key becomes too old: the first message sealed at or after
    /// it rekeys. tokio's clock, so tests can pause and advance it.
    deadline: tokio::time::Instant,
    /// The policy's key lifetime, to set the next deadline after a rekey.
    max_interval: Duration,
    /// The clock passed `deadline` when a message was last sealed: the next
    /// record boundary rekeys. Cached so that the end of each record (see
    /// [`SendRekey::due_at_record_end`]) needs no clock read.
    expired: bool,
    /// Rekeys so far, for [`SendHalf::rekeys`](crate::wire::SendHalf::rekeys):
    /// logs and tests can see the policy at work.
    rekeys: u64,
}

impl SendRekey {
    /// A fresh key, sealed from now on under `policy`.
    pub(crate) fn new(policy: &RekeyPolicy) -> Self {
        Self {
            key_use: KeyUse::new(policy),
            deadline: deadline(policy.max_interval),
            max_interval: policy.max_interval,
            expired: false,
            rekeys: 0,
        }
    }

    /// Whether the message being sealed, of `len` plaintext bytes before any
    /// REKEY, must end with REKEY if it ends at a record boundary: a count limit
    /// reached by it or an earlier message since the last rekey, or the key's age
    /// (one clock read per message).
    pub(crate) fn due(&mut self, len: usize) -> bool {
        self.expired = self.expired || tokio::time::Instant::now() >= self.deadline;
        self.expired || self.key_use.reaches_limit(len)
    }

    /// Whether the open message, `len` bytes at the end of a record, must end
    /// here with REKEY: a sender streaming large records back to back would
    /// otherwise seal only full messages, which end inside records and cannot
    /// rekey. The key's age is as of the last message sealed.
    #[inline]
    pub(crate) fn due_at_record_end(&self, len: usize) -> bool {
        len >= self.record_end_room()
    }

    /// The fewest plaintext bytes of the open message at which a record end is
    /// [`due`](Self::due_at_record_end) (0 when every one is): fixed until the next
    /// message is sealed, so the sender checks it once per message.
    #[inline]
    pub(crate) fn record_end_room(&self) -> usize {
        if self.expired {
            return 0;
        }
        self.key_use.bytes_to_limit()
    }

    /// Counts a message of `len` plaintext bytes sealed under the current key
    /// without REKEY.
    pub(crate) fn count(&mut self, len: usize) {
        self.key_use.count(len);
    }

    /// The key was replaced: counts and age start again.
    pub(crate) fn rekeyed(&mut self) {
        self.key_use.restart();
        self.deadline = deadline(self.max_interval);
        self.expired = false;
        self.rekeys = self.rekeys.saturating_add(1);
    }

    /// How many times the key was replaced.
    pub(crate) fn rekeys(&self) -> u64 {
        self.rekeys
    }
}

/// When a key made now is `max_interval` old (far in the future if that
/// overflows the clock).
fn deadline(max_interval: Duration) -> tokio::time::Instant {
    let now = tokio::time::Instant::now();
    now.checked_add(max_interval)
        .unwrap_or_else(|| now + Duration::from_secs(u64::from(u32::MAX)))
}

/// The receiving half's rekey state (protocol v2): the peer's counts under its
/// current key. Counts at a limit (they saturate) mean a REKEY is owed: by the
/// first message from there that ends at a record boundary.
#[derive(Debug, Clone)]
pub(crate) struct RecvRekey {
    /// The peer's counts under its current key.
    key_use: KeyUse,
}

impl RecvRekey {
    /// A fresh key, opened from now on under `policy`.
    pub(crate) fn new(policy: &RekeyPolicy) -> Self {
        Self {
            key_use: KeyUse::new(policy),
        }
    }

    /// Counts a newly opened message of `len` plaintext bytes sent by `sender`,
    /// once the previous one is all decoded; `at_boundary`: whether that one ended
    /// at a record boundary.
    ///
    /// # Errors
    /// [`Violation::MissedRekey`] from [`RecvRekey::finished`] for the previous
    /// message.
    pub(crate) fn opened(
        &mut self,
        len: usize,
        at_boundary: bool,
        sender: Role,
    ) -> Result<(), Violation> {
        self.finished(at_boundary, sender)?;
        self.key_use.count(len);
        Ok(())
    }

    /// The peer's REKEY record was decoded, last in its message: its key changes.
    pub(crate) fn rekeyed(&mut self) {
        self.key_use.restart();
    }

    /// Checks, once the current message is all decoded (before the next one is
    /// opened, or at the end of the stream), that it rekeyed if it had to: if a
    /// limit was reached and not rekeyed since, a message ending at a record
    /// boundary (`at_boundary`) must have ended with REKEY, which restarts the
    /// counts.
    ///
    /// # Errors
    /// [`Violation::MissedRekey`].
    pub(crate) fn finished(&self, at_boundary: bool, sender: Role) -> Result<(), Violation> {
        match at_boundary && self.key_use.reached_checked_limit() {
            true => Err(self.missed(sender)),
            false => Ok(()),
        }
    }

    fn missed(&self, sender: Role) -> Violation {
        Violation::MissedRekey {
            sender,
            max_messages: u64::from(self.key_use.max_messages.get()),
            max_bytes: u64::from(self.key_use.max_bytes.get()),
        }
    }
}
