//! Sends: every send stages its frame (as a direct arena piece when the connection has
//! nothing else pending, else in its [`Outbox`](crate::output::Outbox)) and marks the
//! connection dirty; [`Core::flush_dirty`] hands each dirty connection's output to the
//! backend once per turn of the run loop. A turn's replies, pongs and publishes to one
//! connection thus leave in one write (one syscall on epoll, one SQE on io_uring).

use bytes::Bytes;
use throng_protocol::close::write_close_payload;
use throng_protocol::frame::{FrameHead, HeaderBuf, OpCode, RSV1};
use throng_protocol::{CloseCode, DataKind};

use super::deflate;
use super::publish::data_head;
use super::{Core, Dirty, Payload};
use crate::config::Backpressure;
use crate::conn::*;
use crate::output::Piece;
use crate::output::arena::header_len;
use crate::sys::Token;
use crate::ws::{SendError, Sent};

/// Shared payloads up to this size are copied into the stage (cheaper than an iovec and a
/// reference count); larger ones are queued by reference.
const COPY_SHARED_MAX: usize = 512;

impl<S> Core<S> {
    pub(super) fn send_close(&mut self, key: usize, code: Option<CloseCode>, reason: &str) {
        let mut payload = [0u8; 125];
        let len = match code {
            Some(code) => write_close_payload(code, reason, &mut payload),
            None => 0,
        };
        let _ = self.send_frame(
            key,
            FrameHead::close(len as u8),
            Payload::Borrowed(&payload[..len]),
        );
        self.conns[key].flags |= CLOSE_SENT;
    }

    pub fn send_ping(&mut self, key: usize, payload: &[u8]) -> Result<Sent, SendError> {
        if !self.is_open(key) {
            return Err(SendError::Closed);
        }
        let payload = &payload[..payload.len().min(125)];
        self.send_frame(
            key,
            FrameHead::ping(payload.len() as u8),
            Payload::Borrowed(payload),
        )
    }

    /// Sends a data message as one frame, applying the backpressure cap.
    ///
    /// The common case (a borrowed payload to an open connection with nothing pending)
    /// takes [`Core::send_fresh`], the rest [`Core::send_general`]; the two give the same
    /// result, stats and staged bytes (the tests below check every size and state).
    #[inline(always)]
    pub fn send_message(
        &mut self,
        key: usize,
        kind: DataKind,
        payload: Payload<'_>,
    ) -> Result<Sent, SendError> {
        if let Payload::Borrowed(bytes) = payload
            && self.send_fresh(key, kind, bytes)
        {
            return Ok(Sent::Written);
        }
        self.send_general(key, kind, payload)
    }

    /// The send to an open connection that has nothing pending (nothing staged this turn,
    /// queued or in flight; no deflate; not over the low mark), of a frame that fits a
    /// direct piece: it is written into the arena and put on the flush list, and the
    /// send is `Written`. False (nothing changed) for any other case.
    ///
    /// What the general path would do there, in one flags test: `is_open` and `BROKEN`
    /// hold; `admit` passes (nothing is buffered, so the connection's cap cannot refuse,
    /// and the worker's applies only above `direct_max`); `stage` takes the `fresh`
    /// branch; `backed_up` says `Written` (no spill output, no `DRAIN_WANTED`).
    #[inline(always)]
    fn send_fresh(&mut self, key: usize, kind: DataKind, payload: &[u8]) -> bool {
        // DIRECT comes with DIRTY; it is in the mask too so that the test stays right
        // on its own.
        const NOT_FRESH: u16 =
            CLOSE_SENT | BROKEN | DIRTY | DIRECT | SENDING | DEFLATE | DRAIN_WANTED;
        let len = payload.len() + header_len(payload.len());
        let c = &mut self.conns[key];
        if c.phase != Phase::Open
            || c.flags & NOT_FRESH != 0
            || len > self.direct_max
            || !c
                .spill
                .as_ref()
                .is_none_or(|s| s.out_bytes == 0 && !s.has_output())
        {
            return false;
        }
        c.flags |= DIRTY | DIRECT;
        let token = Token {
            key: key as u32,
            generation: c.generation,
        };
        let piece = self.arena.stage_frame(first_byte(kind), payload);
        self.stats.messages_out += 1;
        self.stats.bytes_out += len as u64;
        self.deferred += len;
        self.last_direct = self.dirty.len();
        self.dirty.push(Dirty {
            token,
            direct: Some(piece),
        });
        true
    }

    /// [`Core::send_message`] for every case.
    #[inline(never)]
    pub(super) fn send_general(
        &mut self,
        key: usize,
        kind: DataKind,
        payload: Payload<'_>,
    ) -> Result<Sent, SendError> {
        if !self.is_open(key) {
            return Err(SendError::Closed);
        }
        if deflate::compresses(self.conns[key].flags)
            && let Some(compressed) = self.compress(Some(key), payload.as_slice())
        {
            let len = compressed.len();
            let head = data_head(kind, len as u64).with_rsv(RSV1);
            let sent = self
                .admit(key, head.encoded_len() + len)
                .and_then(|()| self.send_frame(key, head, Payload::Borrowed(&compressed)));
            self.deflate_done(compressed);
            if sent.is_err() {
                self.deflate_lost(key);
            }
            return sent;
        }
        let len = payload.as_slice().len() as u64;
        let head = data_head(kind, len);
        self.admit(key, head.encoded_len() + len as usize)?;
        self.stats.messages_out += 1;
        self.send_frame(key, head, payload)
    }

    /// Applies the cap on buffered output to a message of `len` bytes.
    fn admit(&mut self, key: usize, len: usize) -> Result<(), SendError> {
        let buffered = self.conns[key].buffered();
        let over_connection = buffered > 0 && buffered + len > self.limits.max_buffered;
        // The worker's bound holds even for a send into an empty buffer: otherwise many
        // connections could each pin one large message.
        let over_worker = len > self.direct_max && !self.worker_has_room(len);
        if over_connection || over_worker {
            return Err(self.refuse(key, over_worker, buffered, len));
        }
        Ok(())
    }

    /// A send over a cap: count it, apply the policy. Out of line and cold, so that the
    /// path of a send that goes through carries none of it (the tracing event included).
    #[cold]
    #[inline(never)]
    fn refuse(&mut self, key: usize, over_worker: bool, buffered: usize, len: usize) -> SendError {
        self.stats.dropped += 1;
        if over_worker {
            self.stats.dropped_worker_full += 1;
        }
        tracing::trace!(worker = self.worker, conn = %self.conn_id(key), buffered, len, "send dropped: backpressure");
        if let Backpressure::Close(code) = self.limits.backpressure {
            if self.is_open(key) {
                self.stats.policy_closes += 1;
            }
            self.close(key, code, "send buffer full");
        }
        SendError::Backpressure
    }

    /// Sends a frame encoded once for many connections: to a connection with nothing
    /// pending it waits for the flush as a piece sharing the frame (no copy, no spill
    /// record, no allocation); otherwise it is queued by reference, or copied when it is
    /// small enough that copying is cheaper than the reference.
    pub(super) fn send_encoded(&mut self, key: usize, frame: &Bytes) -> Result<Sent, SendError> {
        if !self.is_open(key) || self.conns[key].has(BROKEN) {
            return Err(SendError::Closed);
        }
        self.admit(key, frame.len())?;
        self.stats.messages_out += 1;
        self.stats.bytes_out += frame.len() as u64;
        let c = &self.conns[key];
        if frame.len() <= self.direct_max {
            if c.has(DIRECT) {
                if self.extend_direct(key, &[frame]) {
                    return Ok(Sent::Written);
                }
            } else if fresh(c) {
                let piece = self.arena.frame(frame);
                self.push_direct(key, piece);
                return Ok(Sent::Written);
            }
        }
        let out = &mut self.spill(key).out;
        if frame.len() <= COPY_SHARED_MAX {
            out.stage.extend_from_slice(frame);
        } else {
            out.seal();
            out.queue.push_back(frame.clone());
        }
        self.queued(key, frame.len());
        Ok(self.backed_up(key))
    }

    /// Stages a frame. Never reorders: everything goes through the one outbox.
    pub(crate) fn send_frame(
        &mut self,
        key: usize,
        head: FrameHead,
        payload: Payload<'_>,
    ) -> Result<Sent, SendError> {
        if self.conns[key].has(BROKEN) {
            return Err(SendError::Closed);
        }
        let mut hb = HeaderBuf::default();
        let header = head.encode(&mut hb);
        let total = header.len() + payload.as_slice().len();
        self.stats.bytes_out += total as u64;
        match payload {
            Payload::Shared(b) if b.len() > COPY_SHARED_MAX => {
                let out = &mut self.spill(key).out;
                out.stage.extend_from_slice(header);
                out.seal();
                out.queue.push_back(b);
                self.queued(key, total);
            }
            p => self.stage(key, &[header, p.as_slice()], total),
        }
        Ok(self.backed_up(key))
    }

    /// Raw bytes (an HTTP response head) with the same ordering rules.
    pub(super) fn send_raw(&mut self, key: usize, bytes: &[u8]) -> Result<Sent, SendError> {
        if self.conns[key].has(BROKEN) {
            return Err(SendError::Closed);
        }
        self.stats.bytes_out += bytes.len() as u64;
        self.stage(key, &[bytes], bytes.len());
        Ok(self.backed_up(key))
    }

    /// Stages `parts` (`len` bytes in all) after everything the connection has pending:
    /// as a direct piece when it has nothing pending, else in its outbox.
    fn stage(&mut self, key: usize, parts: &[&[u8]], len: usize) {
        let c = &self.conns[key];
        if len <= self.direct_max {
            if c.has(DIRECT) {
                if self.extend_direct(key, parts) {
                    return;
                }
            } else if fresh(c) {
                let piece = self.arena.stage(parts);
                self.push_direct(key, piece);
                return;
            }
        }
        let out = &mut self.spill(key).out;
        for p in parts {
            out.stage.extend_from_slice(p);
        }
        self.queued(key, len);
    }

    /// Puts the connection on the flush list with `piece` as its only output.
    fn push_direct(&mut self, key: usize, piece: Piece) {
        let token = self.token(key);
        self.deferred += piece.len();
        self.conns[key].flags |= DIRTY | DIRECT;
        self.last_direct = self.dirty.len();
        self.dirty.push(Dirty {
            token,
            direct: Some(piece),
        });
    }

    /// Appends to the connection's direct piece in place when it was the last one staged
    /// (a burst of replies to one connection stays one piece and one write).
    fn extend_direct(&mut self, key: usize, parts: &[&[u8]]) -> bool {
        if self.conns[key]
            .spill
            .as_ref()
            .is_some_and(|s| s.has_output())
        {
            return false; // later output already waits in the outbox, after the piece
        }
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let token = self.token(key);
        let Some(d) = self.dirty.get_mut(self.last_direct) else {
            return false;
        };
        match d.direct.as_mut() {
            Some(piece) if d.token == token && piece.len() + len <= self.direct_max => {
                self.arena.extend(piece, parts)
            }
            _ => false,
        }
    }

    /// How a send made now is reported: `Queued` when the connection has a backlog:
    /// earlier output still waits on the socket, or more than the low-water mark is
    /// buffered (so `on_drain` will fire when it is gone).
    fn backed_up(&self, key: usize) -> Sent {
        let c = &self.conns[key];
        match &c.spill {
            Some(s) if s.out_bytes > s.out.stage.len() || c.has(DRAIN_WANTED) => Sent::Queued,
            _ => Sent::Written,
        }
    }

    /// `len` bytes were staged: count them, mark the connection for this turn's flush,
    /// pause reading above the high mark.
    pub(super) fn queued(&mut self, key: usize, len: usize) {
        if self.count(key, len) {
            let token = self.token(key);
            self.conns[key].flags |= DIRTY;
            self.dirty.push(Dirty {
                token,
                direct: None,
            });
        }
    }

    /// Counts `len` more bytes of output in the spill and applies the marks; returns
    /// whether the connection still has to be put on the flush list.
    pub(super) fn count(&mut self, key: usize, len: usize) -> bool {
        let (low, high) = (self.limits.low_water, self.limits.high_water);
        let c = &mut self.conns[key];
        let spill = c.spill.as_mut().expect("staged output lives in the spill");
        spill.out_bytes += len;
        self.guards.buffered += len;
        let buffered = spill.out_bytes;
        if buffered > low {
            c.flags |= DRAIN_WANTED;
        }
        if buffered > high && !c.has(READ_PAUSED) {
            c.flags |= READ_PAUSED;
            self.stats.reads_paused += 1;
        }
        !c.has(DIRTY)
    }
}

/// The first header byte of a whole data frame: FIN and the opcode.
#[inline]
fn first_byte(kind: DataKind) -> u8 {
    0x80 | match kind {
        DataKind::Text => OpCode::Text as u8,
        DataKind::Binary => OpCode::Binary as u8,
    }
}

/// Whether the connection has output that has not been confirmed written: counted in its
/// spill, or a direct piece waiting for the flush or in a completion backend's hands.
pub(super) fn output_pending<S>(c: &Conn<S>) -> bool {
    c.buffered() > 0 || c.has(DIRECT | SENDING)
}

/// Whether a send to this connection may skip the outbox: nothing staged this turn,
/// nothing queued, nothing in flight. (A spill record held for input, such as a message
/// assembled from pieces, does not matter.)
fn fresh<S>(c: &Conn<S>) -> bool {
    c.flags & (DIRTY | SENDING) == 0
        && c.spill
            .as_ref()
            .is_none_or(|s| s.out_bytes == 0 && !s.has_output())
}

#[cfg(test)]
mod tests;
