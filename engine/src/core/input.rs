//! Input after the transport: the request head while handshaking, frames once open, and
//! the messages they carry to the handler.

use throng_protocol::decoder::{Decoded, Event};
use throng_protocol::frame::FrameHead;
use throng_protocol::{CloseCode, Message, ProtocolError};

use super::{Core, Payload};
use crate::conn::*;
use crate::handler::Handler;

/// The longest run of bytes the decoder may leave unconsumed: a full frame header plus a
/// control frame's 125-byte payload.
const MAX_STASH: usize = 14 + 125;

impl<S> Core<S> {
    /// Plaintext arrived for a connection. Inlined into [`Core::input`] with the frame
    /// loop: the read path is one function from the backend's completion to the handler.
    #[inline(always)]
    pub(super) fn plain_input<H: Handler<State = S>>(
        &mut self,
        h: &mut H,
        key: usize,
        bytes: &mut [u8],
    ) {
        let c = &mut self.conns[key];
        match c.phase {
            Phase::Handshake => self.handshake_input(h, key, bytes),
            Phase::Open | Phase::Closing => {
                if c.phase == Phase::Open {
                    c.since = self.now;
                    c.flags &= !PING_SENT;
                }
                self.frames(h, key, bytes)
            }
            // The answer is out or going out; input is read and discarded until EOF.
            Phase::Http | Phase::Draining => {}
        }
    }

    /// [`Core::frames`] out of line, for the input that follows a handshake or a request
    /// in the same read.
    #[inline(never)]
    pub(super) fn frame_input<H: Handler<State = S>>(
        &mut self,
        h: &mut H,
        key: usize,
        bytes: &mut [u8],
    ) {
        self.frames(h, key, bytes)
    }

    /// Frames: first complete what was stashed from the last input, then decode the rest
    /// in place, stashing an incomplete header or control frame. Inlined into the read
    /// path (one function from the backend's completion to the handler, not three).
    #[inline(always)]
    fn frames<H: Handler<State = S>>(&mut self, h: &mut H, key: usize, bytes: &mut [u8]) {
        let has_stash = self.conns[key]
            .spill
            .as_ref()
            .is_some_and(|s| !s.input.is_empty());
        let rest = if has_stash {
            match self.stashed_input(h, key, bytes) {
                Some(rest) => rest,
                None => return,
            }
        } else {
            bytes
        };
        let used = self.decode_all(h, key, rest);
        // One slab lookup for what follows: the connection may be gone.
        let Some(c) = self.conns.get_mut(key) else {
            return;
        };
        if used < rest.len() && receives(c) {
            let pool = &mut self.pool;
            let spill = c.spill.get_or_insert_with(|| pool.take());
            spill.input.extend_from_slice(&rest[used..]);
        } else if c.spill.is_some() {
            self.release_spill(key);
        }
        self.reply_now(h, key);
    }

    /// Completes the stashed header or control frame with just enough of `bytes`; returns
    /// the bytes after it, or `None` when there is nothing more to decode now (the
    /// connection stopped receiving, or all of `bytes` went to the stash and it is still
    /// incomplete). Out of line: most reads begin at a frame boundary, and so
    /// [`Core::decode_all`] is inlined once on the common path.
    #[cold]
    #[inline(never)]
    fn stashed_input<'b, H: Handler<State = S>>(
        &mut self,
        h: &mut H,
        key: usize,
        rest: &'b mut [u8],
    ) -> Option<&'b mut [u8]> {
        let mut stash = std::mem::take(&mut self.spill(key).input);
        let old = stash.len();
        let moved = rest.len().min(MAX_STASH);
        stash.extend_from_slice(&rest[..moved]);
        let used = self.decode_all(h, key, &mut stash);
        if !self.receiving(key) {
            return None;
        }
        if used >= old {
            stash.clear();
            self.spill(key).input = stash;
            Some(&mut rest[used - old..])
        } else {
            // Only possible when all new bytes were moved and still do not complete it.
            stash.drain(..used);
            stash.extend_from_slice(&rest[moved..]);
            self.spill(key).input = stash;
            None
        }
    }

    /// Whether frames from this connection are still being read.
    fn receiving(&self, key: usize) -> bool {
        self.conns.get(key).is_some_and(receives)
    }

    /// Decodes and handles events until the input runs out; returns bytes used.
    #[inline(always)]
    fn decode_all<H: Handler<State = S>>(
        &mut self,
        h: &mut H,
        key: usize,
        buf: &mut [u8],
    ) -> usize {
        let mut used = 0;
        while self.receiving(key) {
            let c = &self.conns[key];
            let config = if c.has(DEFLATE) {
                &self.deflate_decoder
            } else {
                &self.decoder
            };
            // The common frame first: a whole single-frame message, read without copying
            // the decoder out and back and without building an event. Whatever it
            // declines goes to `decode` below untouched.
            match c.decoder.decode_message(config, &mut buf[used..]) {
                Some(Ok((message, consumed))) => {
                    used += consumed;
                    self.whole_message(h, key, message);
                    if used == buf.len() {
                        return used; // as below: no call just to hear "need more"
                    }
                    continue;
                }
                Some(Err(e)) => {
                    self.violation(h, key, e);
                    return buf.len();
                }
                None => {}
            }
            let mut decoder = c.decoder;
            let result = decoder.decode(config, &mut buf[used..]);
            self.conns[key].decoder = decoder;
            match result {
                Err(e) => {
                    self.violation(h, key, e);
                    return buf.len();
                }
                Ok(Decoded {
                    consumed,
                    event: None,
                }) => return used + consumed,
                Ok(Decoded {
                    consumed,
                    event: Some(event),
                }) => {
                    self.event(h, key, event);
                    used += consumed;
                    if used == buf.len() {
                        // The usual end of a read: the last frame ended with the input.
                        // The decoder never reports an event from no input (its unit
                        // test `no_event_from_empty_input`), so skip the call that would
                        // only say "need more" (one decode per message instead of two).
                        return used;
                    }
                }
            }
        }
        buf.len()
    }

    /// The peer broke the protocol: count it, say so, fail the connection with the
    /// violation's close code. Cold and out of line, off the decoding loop's path.
    #[cold]
    #[inline(never)]
    pub(super) fn violation<H: Handler<State = S>>(
        &mut self,
        h: &mut H,
        key: usize,
        e: ProtocolError,
    ) {
        self.stats.protocol_errors += 1;
        tracing::info!(
            worker = self.worker,
            conn = %self.conn_id(key),
            code = e.close_code().0,
            reason = e.reason(),
            "protocol violation"
        );
        self.fail(h, key, e.close_code(), e.reason());
    }

    /// A whole uncompressed message: counted, rate-checked, handed to the handler.
    #[inline(always)]
    fn whole_message<H: Handler<State = S>>(
        &mut self,
        h: &mut H,
        key: usize,
        message: Message<'_>,
    ) {
        if self.conns[key].has(CLOSE_SENT) {
            return; // the peer has not seen our close yet; its data is moot
        }
        self.stats.messages_in += 1;
        if self.within_rate(key) {
            self.call_on_message(h, key, message);
        }
    }

    fn event<H: Handler<State = S>>(&mut self, h: &mut H, key: usize, event: Event<'_>) {
        match event {
            Event::Data(piece) => {
                if self.conns[key].has(CLOSE_SENT) {
                    return; // the peer has not seen our close yet; its data is moot
                }
                if let Some(message) = piece.whole() {
                    return self.whole_message(h, key, message);
                }
                if piece.compressed && piece.first && piece.last {
                    // A whole compressed message: inflated straight from the input.
                    return self.deliver_compressed(h, key, piece.kind, &[piece.payload]);
                }
                if self.spill(key).message.push(&piece).is_err() {
                    debug_assert!(false, "message pieces out of order");
                    return self.fail(h, key, CloseCode::INTERNAL, "internal error");
                }
                if piece.last {
                    self.stats.messages_in += 1;
                    let mut message = std::mem::take(&mut self.spill(key).message);
                    if let Some(m) = message.message() {
                        if self.within_rate(key) {
                            self.call_on_message(h, key, m);
                        }
                    } else if let Some((kind, payload)) = message.compressed() {
                        self.deliver_compressed(h, key, kind, &[payload]);
                    }
                    if let Some(s) = self.conns.get_mut(key).and_then(|c| c.spill.as_mut()) {
                        // Keep a small allocation for the next message; free a large one
                        // now, not when the record goes back: output may keep the record
                        // lent for long (a slow reader of the echo), and the message with it.
                        if message.capacity() > crate::pool::KEEP_CAPACITY {
                            let freed = message.capacity();
                            message.release();
                            self.guards.buffer_freed(freed);
                        }
                        message.clear();
                        s.message = message;
                    }
                }
            }
            Event::Ping(payload) => {
                if !self.conns[key].has(CLOSE_SENT) {
                    let _ = self.send_frame(
                        key,
                        FrameHead::pong(payload.len() as u8),
                        Payload::Borrowed(payload),
                    );
                }
            }
            Event::Pong(_) => {}
            Event::Close(close) => self.peer_close(h, key, close),
        }
    }
}

/// Whether frames from `c` are still being read.
#[inline(always)]
fn receives<S>(c: &Conn<S>) -> bool {
    matches!(c.phase, Phase::Open | Phase::Closing) && !c.has(BROKEN)
}
