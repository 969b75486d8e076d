//! The server's live counters, read by `serve`'s log, by tests that wait on events
//! instead of sleeping, and by the benchmarks.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

/// Defines [`ServerStats`] (atomic counters), [`StatsSnapshot`] (plain copies) and
/// `ServerStats::snapshot` from one list, so a counter is named once.
macro_rules! counters {
    ($($(#[doc = $doc:literal])* $name:ident,)*) => {
        /// Live counters of a server. Gauges go up and down; the rest only go up.
        #[derive(Debug, Default)]
        pub struct ServerStats {
            $($(#[doc = $doc])* pub $name: AtomicU64,)*
            /// Woken on every change, for [`ServerStats::wait_for`].
            changed: Notify,
        }

        /// A copy of [`ServerStats`] at one moment.
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        pub struct StatsSnapshot {
            $($(#[doc = $doc])* pub $name: u64,)*
        }

        impl ServerStats {
            /// The current values.
            pub fn snapshot(&self) -> StatsSnapshot {
                StatsSnapshot {
                    $($name: self.$name.load(Ordering::Relaxed),)*
                }
            }
        }
    };
}

counters! {
    /// Connections open now (gauge).
    connections_open,
    /// Handshakes in progress now (gauge).
    handshakes_in_progress,
    /// Connections accepted from the listener, refused or not.
    accepted,
    /// Closed on arrival: the open-connections cap was reached.
    refused_connection_cap,
    /// Closed on arrival: the source had its most handshakes in progress.
    refused_source_cap,
    /// Closed on arrival: the source is serving a penalty.
    refused_penalized,
    /// Refusals begun: a source reached the failure threshold (one per offence,
    /// however many of its handshakes failed at once).
    penalties_imposed,
    /// Handshakes that failed: garbage, protocol violations, early close.
    handshake_failures,
    /// Handshakes the client ended after the server's key was sent, before sending
    /// its own (it declined an unknown host key, most likely): sshd's "noauth", as
    /// opposed to a failure.
    handshake_declines,
    /// Unfinished handshakes closed to make room for a newcomer when the
    /// handshakes-in-progress cap was reached (the oldest goes first).
    handshakes_evicted,
    /// Handshakes not completed in time.
    handshake_timeouts,
    /// Clients whose key was refused.
    denied,
    /// Sessions that passed authorization.
    sessions,
    /// Sessions ended because their key was revoked.
    revoked,
    /// Sessions closed for idling or for not taking their replies.
    idle_timeouts,
    /// Sessions waiting for the memory budget now (gauge).
    memory_waits,
    /// Sessions closed for holding memory without progress while others waited.
    memory_stalls,
    /// Sessions refused because their key had its most sessions open.
    refused_key_cap,
    /// Sessions closed at the end of their time limit.
    session_time_limits,
    /// Requests answered.
    requests,
    /// Connections from a configured proxy whose PROXY protocol header named a
    /// client (counted in `accepted` too, once).
    proxied,
    /// PROXY protocol LOCAL headers (a proxy's health checks), closed at once.
    proxy_health_checks,
    /// Connections from a configured proxy closed for a missing, malformed,
    /// truncated or late PROXY protocol header.
    proxy_header_errors,
}

impl ServerStats {
    /// Waits until `condition` holds for the counters, or `timeout` passes; returns
    /// the last snapshot and whether the condition held. Wakes on every change, so
    /// tests wait on events instead of sleeping.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        condition: impl Fn(&StatsSnapshot) -> bool,
    ) -> (StatsSnapshot, bool) {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let snapshot = self.snapshot();
            if condition(&snapshot) {
                return (snapshot, true);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                let snapshot = self.snapshot();
                return (snapshot, condition(&snapshot));
            }
        }
    }

    pub(super) fn add(&self, counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
        self.changed.notify_waiters();
    }

    pub(super) fn sub(&self, counter: &AtomicU64) {
        counter.fetch_sub(1, Ordering::Relaxed);
        self.changed.notify_waiters();
    }
}
