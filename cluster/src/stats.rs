//! What a node counts, and what it tells the application about outages.
//!
//! Counters are relaxed atomics written by the publishing threads and the bridge thread
//! (a few nanoseconds each, off the engine's workers except for `publish` itself); a
//! [`Stats`] is a snapshot of them.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// A snapshot of a node's counters and gauges.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// This node's id.
    pub node: u64,
    /// Whether the link to Redis is up now.
    pub connected: bool,
    /// Links established so far (1 after join; each reconnect adds one).
    pub epoch: u64,
    /// Outages reported (links restored after a loss).
    pub gaps: u64,
    /// Publishes meant for other nodes (`publish` and `publish_remote` calls).
    pub published: u64,
    /// Publishes Redis acknowledged.
    pub sent: u64,
    /// Publishes refused or evicted by the full queue ([`crate::DropPolicy`]).
    pub dropped: u64,
    /// Publishes over [`crate::Options::max_payload`], delivered locally only.
    pub too_large: u64,
    /// Publishes written to Redis without an answer when the link was lost: they may
    /// or may not have reached other nodes.
    pub unconfirmed: u64,
    /// Messages waiting for Redis now.
    pub queued: u64,
    /// Bytes of those, as the queue bounds count them.
    pub queued_bytes: u64,
    /// Messages from other nodes published to local subscribers.
    pub received: u64,
    /// This node's own messages that Redis sent back (skipped).
    pub own: u64,
    /// Messages from Redis that were not well-formed throng messages (dropped).
    pub garbage: u64,
    /// Messages from Redis over `max_payload` (skipped unread, dropped).
    pub oversize: u64,
    /// Error replies from Redis.
    pub redis_errors: u64,
    /// Subscriptions Redis confirms on the subscribing connection now.
    pub channels: u64,
    /// SUBSCRIBE / UNSUBSCRIBE (or sharded) commands sent: far fewer than topic
    /// changes, as changes are batched.
    pub subscribe_commands: u64,
}

/// What the link to Redis did ([`crate::Options::on_link`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LinkEvent {
    /// The link was lost. Local delivery goes on; publishes wait in the bounded queue;
    /// nothing arrives from other nodes until it is back.
    Lost {
        /// The epoch that ended.
        epoch: u64,
        /// What broke (for logs).
        reason: String,
    },
    /// The link is back and every subscription renewed. Redis pub/sub keeps nothing for
    /// a disconnected subscriber: messages other nodes published meanwhile are gone.
    Restored(Gap),
}

/// An outage, as reported when the link is restored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Gap {
    /// The new epoch.
    pub epoch: u64,
    /// How long the link was down.
    pub down_for: Duration,
    /// Publishes of this node dropped by the queue meanwhile (never sent).
    pub dropped: u64,
    /// Publishes of this node in flight when the link broke (maybe lost).
    pub unconfirmed: u64,
}

/// The live counters behind [`Stats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub connected: AtomicBool,
    pub epoch: AtomicU64,
    pub gaps: AtomicU64,
    pub published: AtomicU64,
    pub sent: AtomicU64,
    pub dropped: AtomicU64,
    pub too_large: AtomicU64,
    pub unconfirmed: AtomicU64,
    pub received: AtomicU64,
    pub own: AtomicU64,
    pub garbage: AtomicU64,
    pub oversize: AtomicU64,
    pub redis_errors: AtomicU64,
    pub channels: AtomicU64,
    pub subscribe_commands: AtomicU64,
}

/// Adds one.
pub(crate) fn bump(c: &AtomicU64) {
    c.fetch_add(1, Relaxed);
}

impl Counters {
    pub fn snapshot(&self, node: u64, queued: (u64, u64)) -> Stats {
        let get = |c: &AtomicU64| c.load(Relaxed);
        Stats {
            node,
            connected: self.connected.load(Relaxed),
            epoch: get(&self.epoch),
            gaps: get(&self.gaps),
            published: get(&self.published),
            sent: get(&self.sent),
            dropped: get(&self.dropped),
            too_large: get(&self.too_large),
            unconfirmed: get(&self.unconfirmed),
            queued: queued.0,
            queued_bytes: queued.1,
            received: get(&self.received),
            own: get(&self.own),
            garbage: get(&self.garbage),
            oversize: get(&self.oversize),
            redis_errors: get(&self.redis_errors),
            channels: get(&self.channels),
            subscribe_commands: get(&self.subscribe_commands),
        }
    }
}
