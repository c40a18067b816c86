//! Deadlines: each connection's clock, the timer wheel, what happens when a clock runs
//! out, and shutdown.

use throng_protocol::CloseCode;
use throng_protocol::frame::FrameHead;

use super::output::output_pending;
use super::{Core, Payload};
use crate::conn::*;
use crate::handler::Handler;
use crate::stats::Closer;
use crate::timer;

impl<S> Core<S> {
    /// When the connection's current clock runs out, if it has one.
    fn deadline(&self, c: &Conn<S>) -> Option<u32> {
        let t = &self.ticks;
        match c.phase {
            Phase::Handshake => match t.keep_alive {
                Some(k) if c.has(KEPT_ALIVE) => Some(c.since + k),
                _ => Some(c.since + t.handshake),
            },
            Phase::Http | Phase::Closing | Phase::Draining => Some(c.since + t.close),
            Phase::Open => {
                let idle = t.idle.map(|i| c.since + i);
                let ping = t
                    .ping
                    .map(|p| c.since + p + if c.has(PING_SENT) { t.pong } else { 0 });
                match (idle, ping) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                }
            }
        }
    }

    /// Files the connection at its deadline unless it is already filed at or before it
    /// (a later deadline is found lazily when the earlier bucket comes round).
    pub(super) fn schedule(&mut self, key: usize) {
        let c = &self.conns[key];
        let Some(mut due) = self.deadline(c) else {
            return;
        };
        if c.phase == Phase::Handshake {
            // No further than the open clock reaches: opening then never needs filing
            // earlier, which would leave a stale entry behind for every connection.
            due = due.min(self.now + self.ticks.open_first);
        }
        let at = timer::filing_tick(due, self.now);
        let c = &mut self.conns[key];
        if c.wheel_at == 0 || at < timer::filed_tick(c.wheel_at, self.now) {
            c.wheel_at = timer::stamp(at);
            self.wheel.insert(at, key as u32);
        }
    }

    /// Sets the clock to `now` (the run loop reads it after every wait, before the turn's
    /// events, so that every deadline is reckoned from the time its event arrived).
    pub fn set_now(&mut self, now: u32) {
        self.now = self.now.max(now);
    }

    /// Fires what is due up to the clock, visiting the wheel's buckets in tick order but
    /// at most [`timer::TURN_BUDGET`] entries per call: the rest waits for the next turn
    /// ([`Core::timers_behind`] keeps the run loop from sleeping meanwhile). Deadlines are
    /// reckoned on the clock, never on the lagging buckets.
    pub fn advance<H: Handler<State = S>>(&mut self, h: &mut H) {
        if !self.timers_behind() {
            return; // most turns: still in the tick already visited; no batch to zero
        }
        let mut budget = timer::TURN_BUDGET;
        let mut batch = [0u32; timer::CHUNK];
        if !self.visit_rest(h, &mut budget, &mut batch) {
            self.stats.timer_budget_spent += 1;
            return;
        }
        // After a stall of more than a lap every bucket is visited once.
        let first = (self.timer_at + 1).max(self.now.saturating_sub(timer::BUCKETS as u32 - 1));
        for t in first..=self.now {
            if t % timer::BUCKETS as u32 == 0 {
                self.sweep_buckets();
            }
            self.timer_at = t;
            self.timer_rest = self.wheel.take(t);
            if !self.visit_rest(h, &mut budget, &mut batch) {
                self.stats.timer_budget_spent += 1;
                return;
            }
        }
    }

    /// Whether buckets up to the current tick are still to be visited.
    pub fn timers_behind(&self) -> bool {
        self.timer_at < self.now || !self.timer_rest.is_empty()
    }

    /// Visits the rest of the bucket of tick `timer_at` while the budget lasts; true once
    /// it is all visited.
    fn visit_rest<H: Handler<State = S>>(
        &mut self,
        h: &mut H,
        budget: &mut usize,
        batch: &mut [u32; timer::CHUNK],
    ) -> bool {
        let t = self.timer_at;
        while !self.timer_rest.is_empty() {
            if *budget == 0 {
                return false;
            }
            let n = self.wheel.next_batch(&mut self.timer_rest, batch, *budget);
            *budget -= n;
            self.stats.timer_visits += n as u64;
            for &key in &batch[..n] {
                self.visit(h, t, key as usize);
            }
        }
        true
    }

    /// A wheel entry of bucket `t` came round. It is the connection's current filing if
    /// the record's stamp names this bucket; otherwise it is stale (the connection was
    /// re-filed, or the slot's connection is gone). A filing a lap ahead of a lagging
    /// `t` is visited early and simply re-filed.
    fn visit<H: Handler<State = S>>(&mut self, h: &mut H, t: u32, key: usize) {
        let Some(c) = self.conns.get_mut(key) else {
            return;
        };
        if !timer::in_bucket(c.wheel_at, t) {
            return;
        }
        c.wheel_at = 0;
        match self.deadline(&self.conns[key]) {
            Some(due) if due > self.now => self.schedule(key),
            Some(_) => self.expire(h, key),
            None => {}
        }
    }

    fn expire<H: Handler<State = S>>(&mut self, h: &mut H, key: usize) {
        let c = &mut self.conns[key];
        match c.phase {
            Phase::Handshake | Phase::Http | Phase::Draining => {
                self.stats.timed_out += 1;
                if c.phase == Phase::Handshake && self.tls_handshaking(key) {
                    self.stats.tls_handshake_failures += 1;
                }
                self.remove(h, key, CloseCode::ABNORMAL, "timeout", Closer::Server);
            }
            Phase::Closing => {
                self.stats.timed_out += 1;
                self.remove(h, key, CloseCode::ABNORMAL, "close timeout", Closer::Server);
            }
            Phase::Open => {
                let silence = self.now - c.since;
                let t = &self.ticks;
                if t.idle.is_some_and(|i| silence >= i) {
                    self.stats.timed_out += 1;
                    self.close(key, CloseCode::GOING_AWAY, "idle timeout");
                } else if c.has(PING_SENT) {
                    self.pong_overdue(h, key);
                    return;
                } else if t.ping.is_some() {
                    c.flags |= PING_SENT;
                    self.stats.pings_sent += 1;
                    let _ = self.send_frame(key, FrameHead::ping(0), Payload::Borrowed(&[]));
                    self.schedule(key);
                }
                self.reap(h);
            }
        }
    }

    /// No answer to a ping within the pong timeout. A peer that cannot hear us is dropped
    /// (a half-open connection cannot hear a close frame either). But the ping may simply
    /// wait behind output the peer is still reading, slowly: while bytes wait for the
    /// peer, its TCP acknowledging them shows it alive, and it gets another interval. The
    /// first time, an acknowledgement within the pong timeout, or a closed receive window
    /// (which only a live TCP advertises), is enough (a half-open peer acknowledges
    /// nothing); after that, the peer must have acknowledged more bytes than
    /// at the last check, or it is stuck (alive, not reading: it would hold its output
    /// forever) and is dropped too.
    fn pong_overdue<H: Handler<State = S>>(&mut self, h: &mut H, key: usize) {
        let c = &self.conns[key];
        let generation = c.generation;
        let waiting = crate::net::send_progress(c.fd).filter(|p| p.waiting || output_pending(c));
        let mut reason = "pong timeout";
        if let Some(p) = waiting {
            let checked = self.stalls.insert(key as u32, (generation, p.acked));
            let alive = match checked {
                Some((g, before)) if g == generation => p.acked > before,
                _ => p.since_ack_ms < self.ticks.pong_ms || p.window_closed,
            };
            if alive {
                let c = &mut self.conns[key];
                c.since = self.now;
                c.flags &= !PING_SENT;
                self.schedule(key);
                return;
            }
            if checked.is_some_and(|(g, _)| g == generation) {
                self.stats.stalled += 1;
                reason = "peer stopped reading";
            }
        }
        self.stats.timed_out += 1;
        self.stats.pong_timeouts += 1;
        tracing::debug!(worker = self.worker, conn = %self.conn_id(key), reason, "pong timeout");
        self.remove(h, key, CloseCode::ABNORMAL, reason, Closer::Server);
    }

    /// Graceful shutdown: close every connection with 1001.
    pub fn shutdown_all(&mut self) {
        self.shutting_down = true;
        let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
        for key in keys {
            self.close(key, CloseCode::GOING_AWAY, "server shutting down");
        }
    }

    /// Removes every connection at once (end of the shutdown deadline).
    pub fn abort_all<H: Handler<State = S>>(&mut self, h: &mut H) {
        let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
        for key in keys {
            self.remove(
                h,
                key,
                CloseCode::ABNORMAL,
                "server shut down",
                Closer::Server,
            );
        }
    }
}
