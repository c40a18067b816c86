//! Handing a turn's output to the backend, and what follows when it has gone out.

use bytes::Bytes;

use super::wire::Out;
use super::{Core, Dirty, Op};
use crate::conn::*;
use crate::handler::Handler;
use crate::output::Piece;
use crate::sys::{Backend, Handed, Token};

/// Flush rounds per turn: `on_drain` may send again, which dirties the connection again.
const FLUSH_ROUNDS: usize = 4;
/// Flush list entries kept allocated between turns.
const KEEP_DIRTY: usize = 1 << 16;

impl<S> Core<S> {
    /// The socket can take more (readiness backends): flush at the end of this turn.
    /// Inline for its test: an edge-triggered socket reports writable with nearly every
    /// readable event, and nearly always nothing waits.
    #[inline(always)]
    pub fn writable(&mut self, key: usize) {
        let c = &self.conns[key];
        if !c.has(DIRTY) && c.spill.as_ref().is_some_and(|s| s.has_output()) {
            self.flush_later(key);
        }
    }

    /// Puts the connection's waiting output on this turn's flush list.
    #[inline(never)]
    fn flush_later(&mut self, key: usize) {
        let token = self.token(key);
        self.conns[key].flags |= DIRTY;
        self.dirty.push(Dirty {
            token,
            direct: None,
        });
    }

    /// A completion backend's send progressed (`Ok(n)` counted bytes went out) and, with
    /// `ended`, is over; or the socket failed.
    ///
    /// A direct piece's send (no spill record) is only the flag and [`Core::after_output`];
    /// counted output and a failure are out of line.
    #[inline]
    pub fn sent<H: Handler<State = S>>(
        &mut self,
        h: &mut H,
        key: usize,
        result: std::io::Result<usize>,
        ended: bool,
    ) {
        match result {
            Ok(n) => {
                let c = &mut self.conns[key];
                if ended {
                    c.flags &= !SENDING;
                }
                if c.spill.is_some() {
                    self.sent_counted(key, n, ended);
                    self.after_output(h, key);
                } else if !nothing_after_output(c, &self.broken) {
                    self.after_output_general(h, key);
                }
            }
            Err(_) => self.send_failed(h, key),
        }
    }

    /// `n` bytes of counted output went out (the spill's): uncount them; with `ended`, put
    /// the connection back on the flush list if more waits.
    #[inline(never)]
    pub(super) fn sent_counted(&mut self, key: usize, n: usize, ended: bool) {
        let token = self.token(key);
        let c = &mut self.conns[key];
        if let Some(s) = c.spill.as_mut() {
            let n = n.min(s.out_bytes);
            s.out_bytes -= n;
            self.guards.output_gone(n);
            if ended && s.has_output() && !c.has(DIRTY) {
                c.flags |= DIRTY;
                self.dirty.push(Dirty {
                    token,
                    direct: None,
                });
            }
        }
    }

    /// A completion backend's send failed: the socket is gone.
    #[cold]
    #[inline(never)]
    fn send_failed<H: Handler<State = S>>(&mut self, h: &mut H, key: usize) {
        self.conns[key].flags &= !SENDING;
        self.broke(key);
        self.reap(h);
    }

    /// Hands every dirty outbox to the backend. Runs once per turn of the run loop, after
    /// the turn's input, timers and mail.
    pub fn flush_dirty<H: Handler<State = S>, B: Backend>(&mut self, h: &mut H, backend: &mut B) {
        for _ in 0..FLUSH_ROUNDS {
            if self.dirty.is_empty() {
                break;
            }
            let mut dirty = std::mem::take(&mut self.dirty);
            self.last_direct = usize::MAX;
            for d in dirty.drain(..) {
                self.flush_one(h, backend, d);
            }
            if self.dirty.is_empty() {
                if dirty.capacity() > KEEP_DIRTY {
                    dirty = Vec::new(); // a broadcast to many: do not keep its list
                }
                self.dirty = dirty; // keep the allocation
            }
            self.reap(h);
        }
        self.deferred = 0;
        self.arena.settle();
    }

    /// Hands one connection's output to the backend.
    fn flush_one<H: Handler<State = S>, B: Backend>(
        &mut self,
        h: &mut H,
        backend: &mut B,
        d: Dirty,
    ) {
        // `lookup`, keeping the reference it finds (one slab index, not two).
        let key = d.token.key as usize;
        let Some(c) = self
            .conns
            .get_mut(key)
            .filter(|c| c.generation == d.token.generation)
        else {
            return;
        };
        c.flags &= !(DIRTY | DIRECT);
        // A direct piece is only staged while nothing is in flight.
        debug_assert!(!(c.has(SENDING) && d.direct.is_some()));
        if c.has(BROKEN) || c.has(SENDING) {
            return;
        }
        if let Some(piece) = d.direct {
            let tls = c.has(TLS);
            match c.spill.as_mut() {
                Some(s) if s.has_output() => {
                    // Joined by later output: it leaves first, in the same write, and is
                    // counted from now on.
                    s.out_bytes += piece.len();
                    self.guards.buffered += piece.len();
                    s.out.head = Some(piece);
                }
                None if !tls => {
                    // The usual reply: plaintext, nothing else of the connection's waiting.
                    // Written with the connection in hand, without looking it up again.
                    let sent = backend.send_direct(c.fd, d.token, &piece);
                    if matches!(sent, Ok(Handed::Wrote(n)) if n >= piece.len())
                        && nothing_after_output(c, &self.broken)
                    {
                        return;
                    }
                    return self.direct_handed(h, key, &piece, sent);
                }
                _ => return self.flush_direct(h, backend, key, d.token, piece),
            }
        }
        if self.conns[key].spill.is_none() {
            return;
        }
        let sent = self.wire_send(backend, key, d.token, Out::Outbox);
        let c = &mut self.conns[key];
        let spill = c.spill.as_mut().expect("checked above");
        match sent {
            Ok(Handed::Wrote(n)) => {
                spill.out_bytes -= n.min(spill.out_bytes);
                self.guards.output_gone(n);
                if let Some(head) = spill.out.head.take() {
                    // The socket is full: keep the rest in memory of the outbox's own, so
                    // a slow reader does not pin an arena chunk.
                    let rest = Bytes::copy_from_slice(head.as_slice());
                    spill.out.queue.push_front(rest);
                }
                self.after_output(h, key);
            }
            Ok(Handed::Taken) => c.flags |= SENDING,
            Err(_) => self.broke(key),
        }
    }

    /// After a plain connection's input: once the turn has staged more than its mark of
    /// direct pieces ([`crate::Config::eager_replies_after`]), the reply this input
    /// staged is written now rather than at the end of the turn, while its bytes are
    /// still in the CPU's cache.
    #[inline(always)]
    pub(super) fn reply_now<H: Handler<State = S>>(&mut self, h: &mut H, key: usize) {
        // `deferred` grows as direct pieces are staged; `defer_replies` is usize::MAX
        // when this is switched off.
        if self.deferred > self.defer_replies {
            self.write_reply(h, key);
        }
    }

    /// [`Core::reply_now`]'s write, out of line: most turns stay below the mark. Only
    /// when the last entry of the flush list is this connection's direct piece: nothing
    /// of the connection's is in flight then and the piece comes first, so the order
    /// holds on both backends. Written whole, the entry leaves the list, unless later
    /// output waits in the outbox behind it (an input that held several replies): then
    /// the entry stays, without its piece, for the flush to send the rest. Written in
    /// part, the rest of the piece stays in the entry, and the flush goes on as for any
    /// piece (a failed write included).
    #[inline(never)]
    fn write_reply<H: Handler<State = S>>(&mut self, h: &mut H, key: usize) {
        // Once per piece: an earlier try this turn (the socket was full) set it to MAX.
        if self.last_direct != self.dirty.len().wrapping_sub(1) {
            return;
        }
        let Some(d) = self.dirty.last_mut() else {
            return;
        };
        let Some(piece) = d.direct.as_mut() else {
            return;
        };
        let Some(c) = self.conns.get_mut(key) else {
            return;
        };
        if d.token.key as usize != key
            || d.token.generation != c.generation
            || c.phase != Phase::Open
            || c.has(TLS | SENDING | BROKEN)
        {
            return;
        }
        // A later send this turn must not extend a piece that is partly out, nor one
        // whose entry has lost it; and the piece is not tried again.
        self.last_direct = usize::MAX;
        self.stats.replies_at_once += 1;
        match crate::net::send_now(c.fd, piece.as_slice()) {
            Ok(n) if n >= piece.len() => {
                if c.spill.as_ref().is_some_and(|s| s.has_output()) {
                    d.direct = None;
                    c.flags &= !DIRECT;
                } else {
                    c.flags &= !(DIRTY | DIRECT);
                    self.dirty.pop();
                    self.after_output(h, key);
                }
            }
            Ok(n) => piece.advance(n),
            Err(_) => {} // the flush's write meets the same error and reports it
        }
    }

    /// Writes a direct piece; what the socket does not take now moves to the outbox.
    fn flush_direct<H: Handler<State = S>, B: Backend>(
        &mut self,
        h: &mut H,
        backend: &mut B,
        key: usize,
        token: Token,
        piece: Piece,
    ) {
        let sent = self.wire_send(backend, key, token, Out::Piece(&piece));
        self.direct_handed(h, key, &piece, sent);
    }

    /// What follows the hand-over of a direct piece.
    fn direct_handed<H: Handler<State = S>>(
        &mut self,
        h: &mut H,
        key: usize,
        piece: &Piece,
        sent: std::io::Result<Handed>,
    ) {
        match sent {
            Ok(Handed::Taken) => self.conns[key].flags |= SENDING,
            Ok(Handed::Wrote(n)) if n >= piece.len() => self.after_output(h, key),
            Ok(Handed::Wrote(n)) => {
                // The socket is full: the rest waits in the outbox (copied, so the arena
                // chunk is free again) until the backend reports it writable.
                let rest = &piece.as_slice()[n..];
                self.spill(key).out.stage.extend_from_slice(rest);
                self.count(key, rest.len());
            }
            Err(_) => self.broke(key),
        }
    }

    /// Output went out: resume reading and fire `on_drain` at the low mark, finish a
    /// draining connection, give back an empty spill record.
    ///
    /// Most often there is nothing to do: a connection with no spill record (so nothing
    /// buffered), no mark crossed, not broken, in a phase that does not end once flushed,
    /// and no broken connection to reap. That is one test here; the rest is
    /// [`Core::after_output_general`], which would do nothing in that case either.
    #[inline(always)]
    pub(super) fn after_output<H: Handler<State = S>>(&mut self, h: &mut H, key: usize) {
        if !nothing_after_output(&self.conns[key], &self.broken) {
            self.after_output_general(h, key)
        }
    }

    /// [`Core::after_output`] for every case.
    #[inline(never)]
    pub(super) fn after_output_general<H: Handler<State = S>>(&mut self, h: &mut H, key: usize) {
        let token = self.token(key);
        let low = self.limits.low_water;
        let c = &mut self.conns[key];
        if c.has(BROKEN) {
            return self.reap(h);
        }
        let buffered = c.buffered();
        if buffered <= low && c.has(READ_PAUSED) {
            c.flags &= !READ_PAUSED;
            self.ops.push(Op::Resume(c.fd, token));
            // A kept-alive connection's pipelined requests wait for this.
            self.resume_pipelined(h, key);
        }
        let Some(c) = self.conns.get_mut(key) else {
            return;
        };
        if buffered <= low && c.has(DRAIN_WANTED) {
            c.flags &= !DRAIN_WANTED;
            if c.phase == Phase::Open && c.has(OPENED) {
                self.call_on_drain(h, key);
            }
        }
        if self.conns.contains(key) {
            self.finish_if_flushed(key);
            self.release_spill(key);
            self.reap(h);
        }
    }
}

/// Whether [`Core::after_output_general`] would do nothing for this connection: no spill
/// record (so nothing buffered and nothing to give back), no mark crossed, not broken, in
/// a phase that does not end once flushed, and no broken connection waiting to be reaped.
#[inline]
pub(super) fn nothing_after_output<S>(c: &Conn<S>, broken: &[Token]) -> bool {
    c.flags & (BROKEN | READ_PAUSED | DRAIN_WANTED) == 0
        && c.spill.is_none()
        && !matches!(c.phase, Phase::Http | Phase::Draining)
        && broken.is_empty()
}
