//! Metrics: a snapshot of every worker's counters, taken through the mailboxes (never
//! shared memory the workers write to), and its Prometheus text exposition.
//!
//! A worker counts into plain integers of its own ([`WorkerStats`]); a scrape posts each
//! worker a request and the worker answers between two turns with a copy. Where the
//! scrape is served (a plain-HTTP path of the WebSocket listener, or an admin address of
//! its own) is [`MetricsEndpoint`](crate::MetricsEndpoint).

use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::config::BackendKind;
use crate::core::Shared;
use crate::mailbox::MetricsAsk;
use crate::stats::WorkerStats;

pub(crate) mod admin;
mod text;

/// One worker's figures at the moment it answered.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct WorkerMetrics {
    /// The worker's index.
    pub worker: usize,
    /// Its counters.
    pub stats: WorkerStats,
    /// Connections it holds (TCP: handshaking, open and closing).
    pub connections: usize,
    /// Bytes of output it buffers for all its connections.
    pub buffered_bytes: usize,
    /// Spill records lent to connections.
    pub spill_in_use: usize,
    /// Spill records kept free for reuse.
    pub spill_free: usize,
}

impl WorkerMetrics {
    /// WebSocket connections open on this worker (opened, close not yet decided).
    pub fn open(&self) -> u64 {
        self.stats.open()
    }
}

/// A snapshot of a server: every worker that answered, and the process' figures.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Metrics {
    /// Per worker, in worker order (a worker that did not answer in time is missing).
    pub workers: Vec<WorkerMetrics>,
    /// Workers asked.
    pub asked: usize,
    /// The backend the workers run.
    pub backend: BackendKind,
    /// Why that backend (the probe's verdict, or who asked for it).
    pub backend_note: String,
    /// The process' resident memory in bytes (`/proc/self/statm`), 0 if unreadable.
    pub resident_bytes: u64,
}

impl Metrics {
    /// Counters summed over the workers that answered.
    pub fn total(&self) -> WorkerStats {
        self.workers.iter().map(|w| w.stats).sum()
    }

    /// WebSocket connections open, over all workers.
    pub fn open(&self) -> u64 {
        self.workers.iter().map(WorkerMetrics::open).sum()
    }

    /// The Prometheus text exposition (format 0.0.4).
    pub fn to_prometheus(&self) -> String {
        let mut out = String::with_capacity(8 << 10);
        text::encode(self, &mut out);
        out
    }

    pub(crate) fn assemble(mut workers: Vec<WorkerMetrics>, asked: usize, shared: &Shared) -> Self {
        workers.sort_by_key(|w| w.worker);
        let (backend, note) = shared.backend.clone();
        Metrics {
            workers,
            asked,
            backend,
            backend_note: note,
            resident_bytes: resident_bytes(),
        }
    }
}

/// The content type of the text exposition.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Asks every worker for its snapshot and waits up to `timeout` for the answers (from a
/// thread that is not a worker: a worker asking itself this way would wait out the
/// timeout).
pub(crate) fn collect(shared: &Shared, timeout: Duration) -> Metrics {
    let (tx, rx) = mpsc::channel();
    let mut asked = 0;
    for peer in shared.workers.get().map(|p| &p[..]).unwrap_or(&[]) {
        let ask = MetricsAsk {
            reply: tx.clone(),
            wake: None,
        };
        asked += usize::from(peer.ask(ask));
    }
    drop(tx);
    let deadline = Instant::now() + timeout;
    let mut workers = Vec::with_capacity(asked);
    while workers.len() < asked {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(w) => workers.push(w),
            Err(_) => break,
        }
    }
    Metrics::assemble(workers, asked, shared)
}

/// Resident set size from `/proc/self/statm` (its second field, in pages).
pub(crate) fn resident_bytes() -> u64 {
    let Ok(s) = std::fs::read_to_string("/proc/self/statm") else {
        return 0;
    };
    let pages: u64 = s
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * crate::net::page_size() as u64
}
