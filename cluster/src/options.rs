//! How a node joins: subscription mode, queue bounds and drop policy, limits, timings,
//! and the callback told about outages.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::stats::LinkEvent;

/// How a node subscribes in Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Mode {
    /// One channel per topic, subscribed while the node has a local subscriber of it
    /// (Socket.IO's Redis adapter): a node receives only what its users want.
    #[default]
    PerTopic,
    /// One pattern subscription (`PSUBSCRIBE prefix*`) for everything, filtered locally
    /// (Phoenix.PubSub.Redis): no subscription traffic, but every node receives every
    /// message.
    Pattern,
    /// Like `PerTopic` with sharded pub/sub (`SSUBSCRIBE`/`SPUBLISH`, Redis 7+), so a
    /// Redis Cluster keeps a message inside the shard that owns its channel. Commands are
    /// grouped by hash slot. This client talks to the one endpoint it is given: it does
    /// not follow `MOVED` redirections (see the crate documentation).
    Sharded,
}

/// What happens to a publish when the outgoing queue is full (Redis slow or down).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum DropPolicy {
    /// Refuse the new message ([`crate::Remote::QueueFull`]): what is queued goes out.
    #[default]
    DropNewest,
    /// Drop the oldest queued messages to make room: the freshest go out.
    DropOldest,
}

/// Called on the bridge thread when the link to Redis is lost or restored; keep it short.
pub type LinkCallback = Arc<dyn Fn(LinkEvent) + Send + Sync>;

/// Options for [`crate::Cluster::join`]. Build with `Options::default()` and set fields.
#[derive(Clone)]
#[non_exhaustive]
pub struct Options {
    /// Prepended to a topic to name its Redis channel. Default `"throng:"`.
    pub prefix: String,
    /// Subscription mode. Default [`Mode::PerTopic`].
    pub mode: Mode,
    /// This node's id, carried by each of its messages so that it skips its own when
    /// Redis sends them back. Default: random. Two nodes must never share one.
    pub node_id: Option<u64>,
    /// Most messages waiting for Redis (while it is slow or the link is down). Default
    /// 8,192. Each costs its encoded bytes plus [`crate::QUEUE_ENTRY_BYTES`].
    pub queue_messages: usize,
    /// Most bytes waiting for Redis, counted as in `queue_messages`. Default 8 MiB. The
    /// queue never holds more than both bounds.
    pub queue_bytes: usize,
    /// What a full queue does. Default [`DropPolicy::DropNewest`].
    pub drop_policy: DropPolicy,
    /// Largest payload sent to or accepted from Redis. Larger local publishes go to
    /// local subscribers only ([`crate::Remote::TooLarge`]); larger messages from Redis
    /// are skipped without being buffered, and counted. Default 1 MiB.
    pub max_payload: usize,
    /// Most bytes written to the publishing connection that the socket has not taken
    /// yet; beyond it messages wait in the queue. Default 1 MiB.
    pub pipeline_bytes: usize,
    /// Most channels in one SUBSCRIBE or UNSUBSCRIBE command. Default 512.
    pub subscribe_batch: usize,
    /// TCP connect and handshake timeout. Default 2 s.
    pub connect_timeout: Duration,
    /// `None` (default): join fails at once when Redis cannot be reached. `Some(d)`: join
    /// keeps trying with backoff for up to `d`.
    pub join_retry: Option<Duration>,
    /// First wait before reconnecting after a loss; doubled per failed attempt up to
    /// `backoff_max`, with jitter. Default 50 ms.
    pub backoff_min: Duration,
    /// Longest wait between reconnect attempts. Default 2 s.
    pub backoff_max: Duration,
    /// How often an idle link is checked with PING. Default 1 s.
    pub health_interval: Duration,
    /// A PING unanswered this long means the link is lost. Default 3 s.
    pub health_timeout: Duration,
    /// Told when the link is lost and restored (a gap may have happened). Default none.
    pub on_link: Option<LinkCallback>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            prefix: "throng:".into(),
            mode: Mode::PerTopic,
            node_id: None,
            queue_messages: 8192,
            queue_bytes: 8 << 20,
            drop_policy: DropPolicy::DropNewest,
            max_payload: 1 << 20,
            pipeline_bytes: 1 << 20,
            subscribe_batch: 512,
            connect_timeout: Duration::from_secs(2),
            join_retry: None,
            backoff_min: Duration::from_millis(50),
            backoff_max: Duration::from_secs(2),
            health_interval: Duration::from_secs(1),
            health_timeout: Duration::from_secs(3),
            on_link: None,
        }
    }
}

impl Options {
    /// Sets the subscription mode.
    pub fn with_mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// Sets the callback told about outages.
    pub fn with_link_callback(mut self, f: impl Fn(LinkEvent) + Send + Sync + 'static) -> Self {
        self.on_link = Some(Arc::new(f));
        self
    }
}

impl fmt::Debug for Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Options")
            .field("prefix", &self.prefix)
            .field("mode", &self.mode)
            .field("node_id", &self.node_id)
            .field("queue_messages", &self.queue_messages)
            .field("queue_bytes", &self.queue_bytes)
            .field("drop_policy", &self.drop_policy)
            .field("max_payload", &self.max_payload)
            .field("pipeline_bytes", &self.pipeline_bytes)
            .field("subscribe_batch", &self.subscribe_batch)
            .field("connect_timeout", &self.connect_timeout)
            .field("join_retry", &self.join_retry)
            .field("backoff_min", &self.backoff_min)
            .field("backoff_max", &self.backoff_max)
            .field("health_interval", &self.health_interval)
            .field("health_timeout", &self.health_timeout)
            .field("on_link", &self.on_link.as_ref().map(|_| "Fn"))
            .finish()
    }
}
