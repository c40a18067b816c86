//! Receives: one multishot receive per connection into the provided-buffer ring; a paused
//! connection's receive is cancelled and what still arrives is held in its buffers.

use std::io;

use io_uring::cqueue;

use super::{OP_RECV, Uring, user_data};
use crate::sys::{Sink, Token};

/// A receive that is not simply armed. Connections in the common state (a multishot
/// receive armed) have no entry, so an idle connection costs the backend nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Recv {
    /// Cancelled (reading paused or connection closing); waiting for its last completion.
    /// `resume`: arm again when it arrives.
    Cancelling { resume: bool },
    /// Nothing armed: paused, or ended by an empty buffer ring and waiting to re-arm.
    Idle,
}

/// Input that arrived for a paused connection before its receive was cancelled: kept in
/// its receive buffer (pinned) and delivered on resume, so pausing bounds what the core
/// buffers however much the kernel had already received.
#[derive(Debug, Clone, Copy)]
pub(super) struct Held {
    bid: u16,
    start: u32,
    len: u32,
}

impl Uring {
    pub(super) fn on_recv(&mut self, token: Token, res: i32, flags: u32, sink: &mut impl Sink) {
        // Whether the connection was live before this completion was handled; only asked
        // when the answer matters (held input, the end of the multishot receive), since
        // `Sink::input` itself ignores a stale token: one lookup per receive, not three.
        let mut live = None;
        if res > 0 {
            let bid = cqueue::buffer_select(flags).unwrap_or(0);
            let len = res as usize;
            let start = self.bufs.claim(bid, len);
            if self.bufs.ends(start, len)
                && self.joined_input(token, (bid, start, len), flags, sink)
            {
                return; // this and the next completion handled; the receive stays armed
            }
            let held = match self.held.is_empty() {
                true => None,
                false => self.held.get_mut(&token.key),
            };
            if let Some(held) = held {
                if *live.get_or_insert_with(|| sink.alive(token)) {
                    held.push(Held {
                        bid,
                        start,
                        len: len as u32,
                    });
                    self.pins[bid as usize] += 1;
                }
            } else if !sink.input(token, self.bufs.bytes(bid, start, len)) {
                // False for a stale token too (input is a no-op then), and for one the
                // input just closed; either is no longer alive, which `input` returning
                // true implies it still is.
                let alive = sink.alive(token);
                live = Some(alive);
                if alive {
                    self.pause(token);
                }
            } else {
                live = Some(true);
            }
            if self.bufs.finished(flags) {
                self.release(bid);
            }
        } else if let Some(bid) = cqueue::buffer_select(flags) {
            self.release(bid);
        }
        if cqueue::more(flags) {
            return;
        }
        // The multishot receive ended. A connection that is gone had its state dropped by
        // `close`; its key may already name a new connection, whose state stays.
        if !live.unwrap_or_else(|| sink.alive(token)) || !sink.alive(token) {
            return;
        }
        let state = self.recv.remove(&token.key);
        match res {
            0 => return sink.input_closed(token, None),
            r if r < 0 && r != -libc::ENOBUFS && r != -libc::ECANCELED => {
                return sink.input_closed(token, Some(io::Error::from_raw_os_error(-r)));
            }
            _ => {}
        }
        if res == -libc::ENOBUFS {
            self.counters.recv_enobufs += 1;
            self.bufs.ran_dry();
        }
        let resume = !matches!(state, Some(Recv::Cancelling { resume: false }));
        match sink.reader(token) {
            Some(fd) if resume && res == -libc::ENOBUFS => self.starved.push((fd, token)),
            Some(fd) if resume => self.arm_recv(fd, token),
            // Paused (or asked to stay cancelled): `resume_read` arms it again.
            _ => {
                self.recv.insert(token.key, Recv::Idle);
            }
        }
    }

    /// A receive that ran to the end of its buffer `(bid, start, len)`: when the
    /// connection's next receive, next in this batch, continues right after it in memory,
    /// both go to the core as one input, so a message cut by the buffer's end is not
    /// assembled by a copy (issue 19: a third of the 16 KiB echoes were). Returns whether
    /// it handled both completions. Out of line: small messages rarely end a buffer.
    #[inline(never)]
    fn joined_input(
        &mut self,
        token: Token,
        (bid, start, len): (u16, u32, usize),
        flags: u32,
        sink: &mut impl Sink,
    ) -> bool {
        if !self.bufs.finished(flags) || !cqueue::more(flags) || self.held.contains_key(&token.key)
        {
            return false;
        }
        let Some((next, len2, flags2)) = self.continuation(token, bid, start, len) else {
            return false;
        };
        self.batch_next += 1;
        self.wait.last += 1;
        self.bufs.claim(next, len2);
        // As `on_recv`: false for a stale token or one the input closed.
        if !sink.input(token, self.bufs.bytes_across(bid, start, len + len2)) && sink.alive(token) {
            self.pause(token);
        }
        self.release(bid);
        if self.bufs.finished(flags2) {
            self.release(next);
        }
        true
    }

    /// The next completion of the batch when it is this connection's receive continuing
    /// the range `start..start + len` of buffer `bid` in the next buffer, with the
    /// multishot receive still armed after it: (its buffer, its length, its flags).
    fn continuation(
        &self,
        token: Token,
        bid: u16,
        start: u32,
        len: usize,
    ) -> Option<(u16, usize, u32)> {
        let &(ud, res, flags) = self.batch.get(self.batch_next)?;
        if ud != user_data(OP_RECV, token.key, token.generation) || res <= 0 || !cqueue::more(flags)
        {
            return None;
        }
        let next = cqueue::buffer_select(flags)?;
        self.bufs
            .continues(bid, start, len, next)
            .then_some((next, res as usize, flags))
    }

    /// Reading pauses: cancel the multishot receive; what it still delivers is held.
    pub(super) fn pause(&mut self, token: Token) {
        self.held.entry(token.key).or_default();
        if let std::collections::hash_map::Entry::Vacant(e) = self.recv.entry(token.key) {
            e.insert(Recv::Cancelling { resume: false });
            self.cancel(user_data(OP_RECV, token.key, token.generation));
        }
    }

    /// The kernel is done with buffer `bid`: back to the ring unless input held in it
    /// still waits.
    pub(super) fn release(&mut self, bid: u16) {
        let i = bid as usize % self.pins.len();
        if self.pins[i] == 0 {
            self.done[i] = false;
            self.bufs.give(bid);
        } else {
            self.done[i] = true;
        }
    }

    pub(super) fn unpin(&mut self, bid: u16) {
        let i = bid as usize % self.pins.len();
        self.pins[i] -= 1;
        if self.pins[i] == 0 && self.done[i] {
            self.done[i] = false;
            self.bufs.give(bid);
        }
    }

    /// Drops a connection's held input.
    pub(super) fn drop_held(&mut self, key: u32) {
        if let Some(held) = self.held.remove(&key) {
            for h in held {
                self.unpin(h.bid);
            }
        }
    }

    /// Delivers the held input of resumed connections, in order, until one pauses again.
    pub(super) fn deliver_held(&mut self, sink: &mut impl Sink) {
        for token in std::mem::take(&mut self.deliver) {
            let Some(held) = self.held.remove(&token.key) else {
                continue;
            };
            let mut pieces = held.into_iter();
            for h in pieces.by_ref() {
                let mut keep = sink.alive(token);
                if keep {
                    let bytes = self.bufs.bytes(h.bid, h.start, h.len as usize);
                    keep = sink.input(token, bytes);
                }
                self.unpin(h.bid);
                if !keep {
                    break;
                }
            }
            let rest: Vec<Held> = pieces.collect();
            if sink.alive(token) && sink.reader(token).is_none() {
                // Paused again: keep the rest and stop the receive re-armed on resume.
                self.held.insert(token.key, rest);
                self.pause(token);
            } else {
                for h in rest {
                    self.unpin(h.bid);
                }
            }
        }
    }
}
