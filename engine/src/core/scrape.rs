//! Metrics on the WebSocket listener: `GET /metrics` and `GET /healthz` answered by the
//! worker that received them, without blocking it. A scrape asks the other workers for
//! their snapshots through their mailboxes and parks the connection (in the `Http`
//! phase, with nothing to send, so it is not finished yet); each answering worker nudges
//! this one, which answers once every worker has (or an asked worker has gone). The
//! close timeout bounds the wait, as it bounds any HTTP answer.

use std::sync::mpsc::{self, Receiver, TryRecvError};

use throng_protocol::handshake::{self, Request};

use super::Core;
use crate::conn::*;
use crate::mailbox::MetricsAsk;
use crate::metrics::{CONTENT_TYPE, Metrics, WorkerMetrics};
use crate::sys::Token;

/// A scrape waiting for the other workers.
pub(crate) struct Scrape {
    token: Token,
    replies: Receiver<WorkerMetrics>,
    asked: usize,
    got: Vec<WorkerMetrics>,
}

impl<S> Core<S> {
    /// This worker's snapshot.
    pub fn worker_metrics(&self) -> WorkerMetrics {
        let pool = self.pool.stats();
        WorkerMetrics {
            worker: self.worker as usize,
            stats: self.stats,
            connections: self.conns.len(),
            buffered_bytes: self.guards.buffered,
            spill_in_use: pool.in_use,
            spill_free: pool.free,
        }
    }

    /// Another worker (or a handle) asks for this worker's snapshot.
    pub fn answer_ask(&self, ask: MetricsAsk) {
        if ask.reply.send(self.worker_metrics()).is_ok()
            && let Some(w) = ask.wake
            && let Some(peer) = self.peers.workers.get().and_then(|p| p.get(w as usize))
        {
            peer.wakeup.nudge();
        }
    }

    /// Whether a metrics answer is still owed to connection `key` (so an earlier answer
    /// on a kept-alive connection going out must not finish it). Scrapes are few and
    /// short-lived; this runs only when an HTTP answer has gone out.
    pub(super) fn scrape_pending(&self, key: usize) -> bool {
        !self.scrapes.is_empty() && {
            let token = self.token(key);
            self.scrapes.iter().any(|s| s.token == token)
        }
    }

    /// Records one turn's work time in the histogram.
    pub fn turn_took(&mut self, took: std::time::Duration) {
        let nanos = took.as_nanos().min(u64::MAX as u128) as u64;
        self.stats.turn_buckets[crate::stats::turn_bucket(nanos)] += 1;
        self.stats.turn_nanos += nanos;
    }

    /// Takes a plain HTTP request for the metrics paths when they are served on the
    /// listener; false leaves it to `on_request`.
    pub(super) fn scrape_request(&mut self, key: usize, req: &Request<'_>) -> bool {
        if !self.metrics_on_listener || req.method() != "GET" {
            return false;
        }
        match req.path() {
            "/healthz" => {
                self.answer_http(key, 200, "text/plain", b"ok\n");
                true
            }
            "/metrics" => {
                self.start_scrape(key);
                true
            }
            _ => false,
        }
    }

    fn start_scrape(&mut self, key: usize) {
        let (tx, replies) = mpsc::channel();
        let mut asked = 0;
        if let Some(peers) = self.peers.workers.get() {
            for (i, peer) in peers.iter().enumerate() {
                if i == self.worker as usize {
                    continue;
                }
                let ask = MetricsAsk {
                    reply: tx.clone(),
                    wake: Some(self.worker),
                };
                asked += usize::from(peer.ask(ask));
            }
        }
        drop(tx); // the asks hold the only senders: all gone means no more answers
        let c = &mut self.conns[key];
        c.phase = Phase::Http;
        c.since = self.now;
        self.schedule(key);
        let mut got = Vec::with_capacity(asked + 1);
        got.push(self.worker_metrics());
        self.scrapes.push(Scrape {
            token: self.token(key),
            replies,
            asked,
            got,
        });
        self.poll_scrapes();
    }

    /// Answers the scrapes whose answers are all in. Called when the worker is woken.
    pub fn poll_scrapes(&mut self) {
        if self.scrapes.is_empty() {
            return;
        }
        let mut i = 0;
        while i < self.scrapes.len() {
            let s = &mut self.scrapes[i];
            let done = loop {
                if s.got.len() > s.asked {
                    break true;
                }
                match s.replies.try_recv() {
                    Ok(w) => s.got.push(w),
                    Err(TryRecvError::Empty) => break false,
                    Err(TryRecvError::Disconnected) => break true,
                }
            };
            if !done {
                i += 1;
                continue;
            }
            let s = self.scrapes.swap_remove(i);
            let Some(key) = self.lookup(s.token) else {
                continue; // the scraper went away or timed out
            };
            let metrics = Metrics::assemble(s.got, s.asked + 1, &self.peers);
            let body = metrics.to_prometheus();
            self.answer_http(key, 200, CONTENT_TYPE, body.as_bytes());
        }
    }

    /// Answers a plain HTTP request and closes once the answer is out.
    fn answer_http(&mut self, key: usize, status: u16, content_type: &str, body: &[u8]) {
        self.scratch.clear();
        let headers = [("Content-Type", content_type), ("Connection", "close")];
        handshake::write_response(&mut self.scratch, status, &headers, body);
        self.respond_and_close(key);
    }
}
