//! Output: every send stages its frame in the connection's [`Outbox`] and marks the
//! connection dirty; [`Core::flush_dirty`] hands each dirty outbox to the backend once per
//! turn of the run loop. A turn's replies, pongs and publishes to one connection thus leave
//! in one write (one syscall on epoll, one SQE on io_uring) instead of one each.

use bytes::Bytes;
use throng_protocol::CloseCode;
use throng_protocol::close::write_close_payload;
use throng_protocol::frame::{FrameHead, HeaderBuf};

use super::{Core, Op, Payload};
use crate::config::Backpressure;
use crate::conn::*;
use crate::handler::Handler;
use crate::sys::Backend;
use crate::ws::{SendError, Sent, WebSocket};

/// Shared payloads up to this size are copied into the stage (cheaper than an iovec and a
/// reference count); larger ones are queued by reference.
const COPY_SHARED_MAX: usize = 512;
/// Flush rounds per turn: `on_drain` may send again, which dirties the connection again.
const FLUSH_ROUNDS: usize = 4;

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
    pub fn send_message(
        &mut self,
        key: usize,
        text: bool,
        payload: Payload<'_>,
    ) -> Result<Sent, SendError> {
        if !self.is_open(key) {
            return Err(SendError::Closed);
        }
        let len = payload.as_slice().len() as u64;
        let head = if text {
            FrameHead::text(len)
        } else {
            FrameHead::binary(len)
        };
        self.admit(key, head.encoded_len() + len as usize)?;
        self.send_frame(key, head, payload)
    }

    /// Applies the cap on buffered output to a message of `len` bytes.
    fn admit(&mut self, key: usize, len: usize) -> Result<(), SendError> {
        let buffered = self.conns[key].buffered();
        if buffered > 0 && buffered + len > self.max_buffered {
            self.stats.dropped += 1;
            if let Backpressure::Close(code) = self.backpressure {
                self.close(key, code, "send buffer full");
            }
            return Err(SendError::Backpressure);
        }
        Ok(())
    }

    /// Sends a frame encoded once for many connections: queued by reference, not copied
    /// (unless it is small enough that copying is cheaper than the reference).
    pub(super) fn send_encoded(&mut self, key: usize, frame: &Bytes) -> Result<Sent, SendError> {
        if !self.is_open(key) || self.conns[key].has(BROKEN) {
            return Err(SendError::Closed);
        }
        self.admit(key, frame.len())?;
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
        let out = &mut self.spill(key).out;
        out.stage.extend_from_slice(header);
        match payload {
            Payload::Shared(b) if b.len() > COPY_SHARED_MAX => {
                out.seal();
                out.queue.push_back(b);
            }
            p => out.stage.extend_from_slice(p.as_slice()),
        }
        self.queued(key, total);
        Ok(self.backed_up(key))
    }

    /// Raw bytes (an HTTP response head) with the same ordering rules.
    pub(super) fn send_raw(&mut self, key: usize, bytes: &[u8]) -> Result<Sent, SendError> {
        if self.conns[key].has(BROKEN) {
            return Err(SendError::Closed);
        }
        self.spill(key).out.stage.extend_from_slice(bytes);
        self.queued(key, bytes.len());
        Ok(self.backed_up(key))
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
    fn queued(&mut self, key: usize, len: usize) {
        let (low, high) = (self.low_water, self.high_water);
        let token = self.token(key);
        let c = &mut self.conns[key];
        let spill = c.spill.as_mut().expect("staged output lives in the spill");
        spill.out_bytes += len;
        let buffered = spill.out_bytes;
        if !c.has(DIRTY) {
            c.flags |= DIRTY;
            self.dirty.push(token);
        }
        if buffered > low {
            c.flags |= DRAIN_WANTED;
        }
        if buffered > high {
            c.flags |= READ_PAUSED;
        }
    }

    /// The socket can take more (readiness backends): flush at the end of this turn.
    pub fn writable(&mut self, key: usize) {
        let c = &self.conns[key];
        if !c.has(DIRTY) && c.spill.as_ref().is_some_and(|s| !s.out.is_empty()) {
            let token = self.token(key);
            self.conns[key].flags |= DIRTY;
            self.dirty.push(token);
        }
    }

    /// A completion backend finished (part of) a send.
    pub fn sent<H: Handler<State = S>>(
        &mut self,
        h: &mut H,
        key: usize,
        result: std::io::Result<usize>,
    ) {
        match result {
            Ok(n) => {
                let c = &mut self.conns[key];
                if let Some(s) = c.spill.as_mut() {
                    s.out_bytes -= n.min(s.out_bytes);
                    if !s.out.is_empty() && !c.has(DIRTY) {
                        c.flags |= DIRTY;
                        let token = self.token(key);
                        self.dirty.push(token);
                    }
                }
                self.after_output(h, key);
            }
            Err(_) => {
                self.broke(key);
                self.reap(h);
            }
        }
    }

    /// Hands every dirty outbox to the backend. Runs once per turn of the run loop, after
    /// the turn's input, timers and mail.
    pub fn flush_dirty<H: Handler<State = S>, B: Backend>(&mut self, h: &mut H, backend: &mut B) {
        for _ in 0..FLUSH_ROUNDS {
            if self.dirty.is_empty() {
                break;
            }
            let mut dirty = std::mem::take(&mut self.dirty);
            for token in dirty.drain(..) {
                let Some(key) = self.lookup(token) else {
                    continue;
                };
                let c = &mut self.conns[key];
                c.flags &= !DIRTY;
                let fd = c.fd;
                if c.has(BROKEN) {
                    continue;
                }
                let Some(spill) = c.spill.as_mut() else {
                    continue;
                };
                match backend.send(fd, token, &mut spill.out) {
                    Ok(n) => {
                        spill.out_bytes -= n;
                        self.after_output(h, key);
                    }
                    Err(_) => self.broke(key),
                }
            }
            if self.dirty.is_empty() {
                self.dirty = dirty; // keep the allocation
            }
            self.reap(h);
        }
    }

    /// Output went out: resume reading and fire `on_drain` at the low mark, finish a
    /// draining connection, give back an empty spill record.
    fn after_output<H: Handler<State = S>>(&mut self, h: &mut H, key: usize) {
        let token = self.token(key);
        let low = self.low_water;
        let c = &mut self.conns[key];
        if c.has(BROKEN) {
            return self.reap(h);
        }
        let buffered = c.buffered();
        if buffered <= low && c.has(READ_PAUSED) {
            c.flags &= !READ_PAUSED;
            self.ops.push(Op::Resume(c.fd, token));
        }
        if buffered <= low && c.has(DRAIN_WANTED) {
            c.flags &= !DRAIN_WANTED;
            if c.phase == Phase::Open && c.has(OPENED) {
                h.on_drain(&mut WebSocket::new(self, key));
            }
        }
        if self.conns.contains(key) {
            self.finish_if_flushed(key);
            self.release_spill(key);
            self.reap(h);
        }
    }
}
