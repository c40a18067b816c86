//! throng-cluster: topics fanned out across throng nodes through Redis pub/sub.
//!
//! Several nodes (each a [`throng_engine::Server`]) behind a load balancer, one Redis
//! between them. [`Cluster::join`] connects a node; [`Publisher::publish`] delivers to
//! the node's own subscribers at once, through the engine's publish, and to every other
//! node through Redis, where each receiving node publishes it to its subscribers with
//! the engine's publish again (the frame encoded once per node).
//!
//! ```no_run
//! # use throng_engine::{Config, Decision, Handler, Message, Server, UpgradeRequest, WebSocket};
//! # struct App;
//! # impl Handler for App {
//! #     type State = ();
//! #     fn on_upgrade<'r>(&mut self, _: &UpgradeRequest<'r>) -> Decision<'r, ()> { Decision::accept(()) }
//! #     fn on_open(&mut self, ws: &mut WebSocket<'_, ()>) { ws.subscribe("news"); }
//! #     fn on_message(&mut self, _: &mut WebSocket<'_, ()>, _: Message<'_>) {}
//! # }
//! use throng_cluster::{Cluster, Options};
//!
//! let server = Server::start(Config::default(), |_| App).unwrap();
//! let cluster = Cluster::join("redis://127.0.0.1:6379", &server.handle(), Options::default())
//!     .expect("Redis is up");
//! cluster.publish("news", Message::Text("to every subscriber on every node"));
//! ```
//!
//! # How it works
//! - **Interest.** Each worker tells the bridge when a topic gains its first or loses its
//!   last local subscriber (`ServerHandle::watch_topics`). The node subscribes to a
//!   topic's channel (`prefix + topic`) while any worker has a subscriber, and changes
//!   are batched: the bridge drains every pending change and sends one command for many
//!   channels. [`Mode::Pattern`] subscribes to everything once instead; [`Mode::Sharded`]
//!   uses `SSUBSCRIBE`/`SPUBLISH` (Redis 7).
//! - **No blocking.** A publish encodes a PUBLISH command and pushes it to a bounded
//!   queue ([`Options::queue_messages`], [`Options::queue_bytes`], [`DropPolicy`]); one
//!   bridge thread writes the queue to Redis pipelined and reads what Redis sends. No
//!   engine worker ever waits for Redis, and there is no async runtime.
//! - **Own messages.** Every message carries its origin node id (see the envelope
//!   format in the `envelope` module); a node skips what it published itself, so local
//!   subscribers get each message once.
//! - **Order.** Messages of one publisher (one thread, or one connection's callbacks)
//!   reach every subscriber in the order published: one queue, one connection to Redis,
//!   Redis's per-connection order, one subscribing connection per node, the engine's
//!   per-worker mailbox order.
//! - **Failure.** Redis pub/sub is at-most-once. While the link is down, local delivery
//!   goes on, publishes wait in the bounded queue (what does not fit is dropped and
//!   counted), and the bridge reconnects with jittered exponential backoff, renews every
//!   subscription, and reports the outage ([`LinkEvent`], [`Stats::gaps`]): messages
//!   other nodes published meanwhile are gone, so an application that cares re-syncs.
//!   Anything malformed or over [`Options::max_payload`] arriving from Redis is dropped
//!   and counted ([`Stats::garbage`], [`Stats::oversize`]); an oversize payload is skipped
//!   as it streams past, never buffered.
//!
//! # The RESP client
//! Its own RESP2 decoder and command writer (module `resp`), not the `redis` crate (its
//! sync connection does not reconnect, its async one needs tokio or smol) nor the
//! sans-I/O `redis-protocol` crate (a whole-frame decoder: it must hold a payload of any
//! size before it can refuse it, see `resp::decode`).
//!
//! # Limits
//! [`Mode::Sharded`] talks to the one endpoint it is given; a Redis Cluster client would
//! also follow `MOVED` redirections and connect to each shard, which this crate does
//! not do yet. TLS to Redis is not supported (use a local Redis or a tunnel).

mod bridge;
mod cluster;
mod envelope;
mod error;
mod interest;
mod link;
mod options;
mod queue;
pub mod resp;
mod slot;
mod stats;
mod url;

pub use cluster::{Cluster, Publisher, Remote};
pub use error::ClusterError;
pub use options::{DropPolicy, LinkCallback, Mode, Options};
pub use stats::{Gap, LinkEvent, Stats};

/// What one queued message costs beyond its encoded bytes (for sizing the queue).
pub const QUEUE_ENTRY_BYTES: usize = queue::ENTRY_BYTES;
