//! Per-worker mailboxes: how other threads (and other workers) reach a worker's
//! connections. Channels plus the backend's wakeup, with a flag so a burst of posts costs
//! one wakeup.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender};

use bytes::Bytes;
use throng_protocol::{CloseCode, DataKind};

use crate::connections::Connections;
use crate::handler::Handler;
use crate::sys::Wake;
use crate::ws::ConnId;

/// A job run on a worker's thread with its handler and connections.
pub type Job<H> = Box<dyn FnOnce(&mut H, &mut Connections<'_, <H as Handler>::State>) + Send>;

pub(crate) enum Command<H: Handler> {
    Send {
        id: ConnId,
        kind: DataKind,
        payload: Bytes,
    },
    Close {
        id: ConnId,
        code: CloseCode,
        reason: String,
    },
    Run(Job<H>),
    Shutdown,
}

/// How many subscribers a publish reached, and how many refused it (backpressure).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    /// Subscribers the frame was written or queued to.
    pub reached: usize,
    /// Subscribers whose buffer was over the cap (the message was dropped for them, or
    /// they are closing, per the backpressure policy).
    pub dropped: usize,
}

impl std::ops::AddAssign for Published {
    fn add_assign(&mut self, o: Published) {
        self.reached += o.reached;
        self.dropped += o.dropped;
    }
}

/// A publish crossing to another worker: the frame is already encoded, and shared.
pub(crate) struct Publish {
    pub topic: Arc<str>,
    pub frame: Bytes,
    /// The frame for permessage-deflate subscribers: `None` when not compressed yet (the
    /// worker compresses it once if it has such subscribers), `Some(None)` when they get
    /// the plain frame too.
    pub deflated: Option<Option<Bytes>>,
    pub reply: Option<Sender<Published>>,
}

/// A request for a worker's metrics snapshot: the worker sends it to `reply` and, when
/// `wake` names a worker (one answering an HTTP scrape), nudges that worker so it sees
/// the answer without waiting.
pub(crate) struct MetricsAsk {
    pub reply: Sender<crate::metrics::WorkerMetrics>,
    pub wake: Option<u16>,
}

/// What workers (and handles) post to a worker's publish mailbox: not generic over the
/// handler, so workers can hold each other's.
pub(crate) enum PeerMail {
    Publish(Publish),
    Metrics(MetricsAsk),
}

/// A worker's wakeup: the backend's waker and a flag that coalesces posts.
pub(crate) struct Wakeup {
    waker: Box<dyn Wake>,
    pending: AtomicBool,
}

impl Wakeup {
    pub fn new(waker: Box<dyn Wake>) -> Self {
        Wakeup {
            waker,
            pending: AtomicBool::new(false),
        }
    }

    pub fn nudge(&self) {
        if !self.pending.swap(true, Ordering::AcqRel) {
            let _ = self.waker.wake();
        }
    }
}

/// The sending side of one worker's command mailbox (generic over the handler).
pub(crate) struct Mailbox<H: Handler> {
    pub tx: Sender<Command<H>>,
    pub wakeup: Arc<Wakeup>,
}

impl<H: Handler> Mailbox<H> {
    /// Posts a command; false when the worker has exited.
    pub fn post(&self, command: Command<H>) -> bool {
        if self.tx.send(command).is_err() {
            return false;
        }
        self.wakeup.nudge();
        true
    }
}

/// The sending side of one worker's publish mailbox; not generic, so workers hold each
/// other's.
pub(crate) struct Peer {
    pub tx: Sender<PeerMail>,
    pub wakeup: Arc<Wakeup>,
}

impl Peer {
    pub fn post(&self, publish: Publish) -> bool {
        self.mail(PeerMail::Publish(publish))
    }

    /// Asks for a metrics snapshot; false when the worker has exited.
    pub fn ask(&self, ask: MetricsAsk) -> bool {
        self.mail(PeerMail::Metrics(ask))
    }

    fn mail(&self, mail: PeerMail) -> bool {
        if self.tx.send(mail).is_err() {
            return false;
        }
        self.wakeup.nudge();
        true
    }
}

/// The receiving side, on the worker.
pub(crate) struct Inbox<H: Handler> {
    pub commands: Receiver<Command<H>>,
    pub publishes: Receiver<PeerMail>,
    pub wakeup: Arc<Wakeup>,
}

impl<H: Handler> Inbox<H> {
    /// Called before draining the channels: a post racing with the drain then raises a
    /// new wakeup rather than being stranded.
    pub fn clear_pending(&self) {
        self.wakeup.pending.store(false, Ordering::Release);
    }

    /// Whether something was posted since the last [`clear_pending`](Self::clear_pending),
    /// whether or not the backend has delivered its wakeup yet. One load per turn: on
    /// io_uring the wakeup's completion queues behind every completion ahead of it, and
    /// the kernel hands out about 20 per wait, so a post seen only through it can wait
    /// as many turns as that backlog takes.
    #[inline]
    pub fn posted(&self) -> bool {
        self.wakeup.pending.load(Ordering::Acquire)
    }
}
