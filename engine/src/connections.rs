//! A worker's connections, as a job posted to the worker sees them.

use throng_protocol::DataKind;

use crate::core::Core;
use crate::mailbox::Published;
use crate::ws::{ConnId, WebSocket};

/// A worker's connections, for a [`Job`] posted through [`crate::ServerHandle::post`].
pub struct Connections<'w, S> {
    pub(crate) core: &'w mut Core<S>,
}

impl<S> Connections<'_, S> {
    /// The connection `id` names, if it is still there and on this worker.
    pub fn get(&mut self, id: ConnId) -> Option<WebSocket<'_, S>> {
        if id.worker != self.core.worker {
            return None;
        }
        let key = self.core.lookup_id(id)?;
        Some(WebSocket::new(self.core, key))
    }

    /// Ids of the open WebSocket connections on this worker.
    pub fn ids(&self) -> Vec<ConnId> {
        self.core
            .conns
            .iter()
            .filter(|(k, _)| self.core.is_open(*k))
            .map(|(k, _)| self.core.conn_id(k))
            .collect()
    }

    /// Connections of any phase on this worker.
    pub fn len(&self) -> usize {
        self.core.conns.len()
    }

    /// Whether the worker has no connection.
    pub fn is_empty(&self) -> bool {
        self.core.conns.is_empty()
    }

    /// Publishes to `topic` on every worker; returns this worker's counts (the others
    /// deliver asynchronously).
    pub fn publish(&mut self, topic: &str, kind: DataKind, payload: &[u8]) -> Published {
        self.core.publish(topic, kind, payload, None)
    }

    /// Subscribers of `topic` on this worker.
    pub fn subscribers(&self, topic: &str) -> usize {
        self.core.topics.count(topic)
    }

    /// The pool's counters (heap records lent to connections).
    pub fn pool_stats(&self) -> crate::PoolStats {
        self.core.pool.stats()
    }

    /// This worker's counters.
    pub fn stats(&self) -> crate::WorkerStats {
        self.core.stats
    }
}

impl<S> std::fmt::Debug for Connections<'_, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connections")
            .field("worker", &self.core.worker)
            .field("len", &self.len())
            .finish()
    }
}
