//! Per-worker mailboxes: how other threads (and other workers) reach a worker's
//! connections. A channel plus the backend's wakeup, with a flag so a burst of posts
//! costs one wakeup.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender};

use bytes::Bytes;
use throng_protocol::CloseCode;

use crate::core::Core;
use crate::handler::Handler;
use crate::sys::Wake;
use crate::ws::{ConnId, WebSocket};

/// A job run on a worker's thread with its handler and connections.
pub type Job<H> = Box<dyn FnOnce(&mut H, &mut Connections<'_, <H as Handler>::State>) + Send>;

pub(crate) enum Command<H: Handler> {
    Send { id: ConnId, text: bool, payload: Bytes },
    Close { id: ConnId, code: CloseCode, reason: String },
    Run(Job<H>),
    Shutdown,
}

/// The sending side of one worker's mailbox.
pub(crate) struct Mailbox<H: Handler> {
    tx: Sender<Command<H>>,
    waker: Box<dyn Wake>,
    pending: Arc<AtomicBool>,
}

impl<H: Handler> Mailbox<H> {
    pub fn new(tx: Sender<Command<H>>, waker: Box<dyn Wake>, pending: Arc<AtomicBool>) -> Self {
        Mailbox { tx, waker, pending }
    }

    /// Posts a command; false when the worker has exited.
    pub fn post(&self, command: Command<H>) -> bool {
        if self.tx.send(command).is_err() {
            return false;
        }
        if !self.pending.swap(true, Ordering::AcqRel) {
            let _ = self.waker.wake();
        }
        true
    }
}

/// The receiving side, on the worker.
pub(crate) struct Inbox<H: Handler> {
    pub rx: Receiver<Command<H>>,
    pub pending: Arc<AtomicBool>,
}

impl<H: Handler> Inbox<H> {
    /// Takes what is waiting. The flag is cleared first, so a post racing with the drain
    /// raises a new wakeup rather than being stranded.
    pub fn drain(&self, mut each: impl FnMut(Command<H>)) {
        self.pending.store(false, Ordering::Release);
        while let Ok(c) = self.rx.try_recv() {
            each(c);
        }
    }
}

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
        self.core.conns.iter().filter(|(k, _)| self.core.is_open(*k)).map(|(k, _)| self.core.conn_id(k)).collect()
    }

    /// Connections of any phase on this worker.
    pub fn len(&self) -> usize {
        self.core.conns.len()
    }

    /// Whether the worker has no connection.
    pub fn is_empty(&self) -> bool {
        self.core.conns.is_empty()
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
