//! Telling an outside party (a cluster bridge) which topics have subscribers on a worker.
//!
//! A worker's topic table creates a topic with its first subscriber and drops it with its
//! last, so those two moments are exactly "this worker gained / lost interest in a topic".
//! [`crate::ServerHandle::watch_topics`] installs a [`TopicWatcher`] on every worker
//! through its mailbox; each worker first reports the topics it already has, then every
//! change, on its own thread and in order. With no watcher installed the table pays one
//! branch per topic created or dropped, nothing else.

use std::sync::Arc;

/// A change in which topics have subscribers on one worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicEvent {
    /// `topic` has subscribers on `worker` now: its first one just subscribed, or (in the
    /// report a worker makes when the watch begins) it already had some.
    Gained {
        /// The worker's index.
        worker: usize,
        /// The topic's name.
        topic: Arc<str>,
    },
    /// The last subscriber of `topic` on `worker` left (unsubscribed or closed).
    Lost {
        /// The worker's index.
        worker: usize,
        /// The topic's name.
        topic: Arc<str>,
    },
}

/// Receives [`TopicEvent`]s. It runs on the worker's thread, inside `subscribe`,
/// `unsubscribe` and connection teardown, so it must be quick and must not block (post to
/// a channel and wake someone).
pub type TopicWatcher = Arc<dyn Fn(TopicEvent) + Send + Sync>;

/// The watcher as one worker holds it.
pub(crate) struct Watch {
    worker: usize,
    watcher: TopicWatcher,
}

impl Watch {
    pub fn new(worker: usize, watcher: TopicWatcher) -> Self {
        Watch { worker, watcher }
    }

    pub fn gained(&self, topic: &str) {
        (self.watcher)(TopicEvent::Gained {
            worker: self.worker,
            topic: topic.into(),
        });
    }

    pub fn lost(&self, topic: &str) {
        (self.watcher)(TopicEvent::Lost {
            worker: self.worker,
            topic: topic.into(),
        });
    }
}
