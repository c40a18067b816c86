//! Joining, publishing, leaving.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use throng_engine::{DataKind, Handler, Message, ServerHandle, TopicWatcher};

use crate::bridge::{self, Bridge, Nudge, WAKE};
use crate::envelope;
use crate::error::ClusterError;
use crate::link::OpenError;
#[allow(unused_imports)] // named in docs
use crate::options::DropPolicy;
use crate::options::{Mode, Options};
use crate::queue::{Pushed, Queue};
use crate::resp::encode;
use crate::stats::{Counters, Stats, bump};
use crate::url;

/// Publishes to this node's subscribers: the engine's `ServerHandle::publish`, with the
/// handler type erased.
pub(crate) type LocalPublish = Arc<dyn Fn(&str, DataKind, &[u8]) + Send + Sync>;

/// What publishing threads and the bridge share.
pub(crate) struct Shared {
    pub node: u64,
    pub prefix: Box<[u8]>,
    publish_cmd: &'static [u8],
    max_payload: usize,
    pub queue: Queue,
    pub counters: Counters,
    pub nudge: Nudge,
    pub stop: AtomicBool,
}

/// What happened to the part of a publish meant for other nodes (local subscribers get
/// the message in every case).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Remote {
    /// Queued for Redis: sent at once while the link is up, after the reconnect if it
    /// is down (with [`DropPolicy::DropOldest`] an older message may have made room).
    Queued,
    /// Not sent: the queue is full ([`DropPolicy::DropNewest`]).
    QueueFull,
    /// Not sent: the payload is over [`Options::max_payload`].
    TooLarge,
    /// Not sent: the node has left the cluster.
    Left,
}

/// Publishes across the cluster from any thread or callback: cheap to clone, `Send` and
/// `Sync`. Get one from [`Cluster::publisher`].
#[derive(Clone)]
pub struct Publisher {
    shared: Arc<Shared>,
    local: LocalPublish,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("node", &self.shared.node)
            .finish_non_exhaustive()
    }
}

impl Publisher {
    /// Publishes `message` to every subscriber of `topic`: on this node at once (the
    /// engine's publish, encoded once, every worker), on every other node through Redis.
    /// Never blocks on Redis: the remote part is queued for the bridge thread.
    pub fn publish(&self, topic: &str, message: Message<'_>) -> Remote {
        (self.local)(topic, message.kind(), message.as_bytes());
        self.publish_remote(topic, message)
    }

    /// Publishes to the other nodes only: for a callback that already published locally
    /// with `WebSocket::publish` (which skips the sender).
    pub fn publish_remote(&self, topic: &str, message: Message<'_>) -> Remote {
        let s = &self.shared;
        bump(&s.counters.published);
        let payload = message.as_bytes();
        if payload.len() > s.max_payload {
            bump(&s.counters.too_large);
            return Remote::TooLarge;
        }
        if s.stop.load(Ordering::Relaxed) {
            bump(&s.counters.dropped);
            return Remote::Left;
        }
        let header = envelope::header(s.node, message.is_text());
        let args: &[&[&[u8]]] = &[
            &[s.publish_cmd],
            &[&s.prefix, topic.as_bytes()],
            &[&header, payload],
        ];
        let mut cmd = Vec::with_capacity(encode::command_len(args));
        encode::command(&mut cmd, args);
        match s.queue.push(cmd) {
            Pushed::Queued { evicted } => {
                if evicted > 0 {
                    s.counters.dropped.fetch_add(evicted, Ordering::Relaxed);
                }
                s.nudge.wake();
                Remote::Queued
            }
            Pushed::Full => {
                bump(&s.counters.dropped);
                Remote::QueueFull
            }
        }
    }

    /// A snapshot of the node's counters.
    pub fn stats(&self) -> Stats {
        self.shared
            .counters
            .snapshot(self.shared.node, self.shared.queue.len())
    }

    /// This node's id.
    pub fn node_id(&self) -> u64 {
        self.shared.node
    }
}

/// A node's membership in the cluster: the bridge thread and the engine's topic watch.
/// Dropping it (or [`Cluster::leave`]) stops both; its [`Publisher`]s then deliver
/// locally only.
pub struct Cluster {
    publisher: Publisher,
    thread: Option<JoinHandle<()>>,
    unwatch: Box<dyn Fn() + Send + Sync>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// Connects to Redis at `redis_url` (`redis://[[user]:password@]host[:port]`), starts
    /// the bridge thread, and has the server's workers report their topics to it (one
    /// watch per server: a second `join` on the same server takes it over).
    ///
    /// When Redis cannot be reached this fails at once with
    /// [`ClusterError::Connect`], or, with [`Options::join_retry`] set, keeps trying with
    /// backoff for that long first.
    pub fn join<H: Handler>(
        redis_url: &str,
        server: &ServerHandle<H>,
        options: Options,
    ) -> Result<Cluster, ClusterError> {
        let target = url::parse(redis_url)?;
        let up = connect_first(&target, &options)?;
        let poll = mio::Poll::new().map_err(ClusterError::Thread)?;
        let waker = mio::Waker::new(poll.registry(), WAKE).map_err(ClusterError::Thread)?;
        let node = options.node_id.unwrap_or_else(random_id);
        let shared = Arc::new(Shared {
            node,
            prefix: options.prefix.as_bytes().into(),
            publish_cmd: if options.mode == Mode::Sharded {
                b"SPUBLISH"
            } else {
                b"PUBLISH"
            },
            max_payload: options.max_payload,
            queue: Queue::new(
                options.queue_messages,
                options.queue_bytes,
                options.drop_policy,
            ),
            counters: Counters::default(),
            nudge: Nudge::new(waker),
            stop: AtomicBool::new(false),
        });
        let handle = server.clone();
        let local: LocalPublish = Arc::new(move |topic, kind, payload| {
            let _ = handle.publish(topic, kind, payload);
        });
        let (tx, rx) = mpsc::channel();
        let watch = options.mode != Mode::Pattern;
        let bridge = Bridge::new(shared.clone(), local.clone(), poll, target, options, up, rx);
        let thread = std::thread::Builder::new()
            .name("throng-cluster".into())
            .spawn(move || bridge.run())
            .map_err(ClusterError::Thread)?;
        if watch {
            let s = shared.clone();
            let watcher: TopicWatcher = Arc::new(move |ev| {
                if tx.send(ev).is_ok() {
                    s.nudge.wake();
                }
            });
            server.watch_topics(watcher);
        }
        let handle = server.clone();
        Ok(Cluster {
            publisher: Publisher { shared, local },
            thread: Some(thread),
            unwatch: Box::new(move || {
                if watch {
                    handle.unwatch_topics();
                }
            }),
        })
    }

    /// A publisher for handlers and other threads.
    pub fn publisher(&self) -> Publisher {
        self.publisher.clone()
    }

    /// See [`Publisher::publish`].
    pub fn publish(&self, topic: &str, message: Message<'_>) -> Remote {
        self.publisher.publish(topic, message)
    }

    /// See [`Publisher::publish_remote`].
    pub fn publish_remote(&self, topic: &str, message: Message<'_>) -> Remote {
        self.publisher.publish_remote(topic, message)
    }

    /// A snapshot of the node's counters.
    pub fn stats(&self) -> Stats {
        self.publisher.stats()
    }

    /// This node's id.
    pub fn node_id(&self) -> u64 {
        self.publisher.node_id()
    }

    /// Leaves the cluster: stops the topic watch, sends what is queued (for up to a
    /// second), closes the connections, and returns the final counters.
    pub fn leave(mut self) -> Stats {
        self.stop();
        self.stats()
    }

    fn stop(&mut self) {
        if let Some(t) = self.thread.take() {
            (self.unwatch)();
            self.publisher.shared.stop.store(true, Ordering::Release);
            self.publisher.shared.nudge.wake();
            let _ = t.join();
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The first connection, with retries if configured.
fn connect_first(target: &url::Target, options: &Options) -> Result<bridge::Up, ClusterError> {
    let start = Instant::now();
    let mut backoff = options.backoff_min.max(Duration::from_millis(1));
    loop {
        match bridge::open(target, options) {
            Ok(up) => return Ok(up),
            Err(OpenError::Handshake(reason)) => {
                return Err(ClusterError::Handshake {
                    addr: target.addr(),
                    reason,
                });
            }
            Err(OpenError::Connect(source)) => {
                let tried = start.elapsed();
                match options.join_retry {
                    Some(limit) if tried + backoff <= limit => {
                        std::thread::sleep(backoff);
                        backoff = (backoff * 2).min(options.backoff_max);
                    }
                    _ => {
                        return Err(ClusterError::Connect {
                            addr: target.addr(),
                            source,
                            tried: options.join_retry.map(|_| tried),
                        });
                    }
                }
            }
        }
    }
}

/// A node id nobody else picks: std's per-process random hash keys, the time and the pid.
fn random_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.write_u32(std::process::id());
    h.finish()
}

const _: () = {
    const fn is<T: Send + Sync>() {}
    is::<Publisher>();
    is::<Cluster>();
};
