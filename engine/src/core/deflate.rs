//! permessage-deflate on a worker: the offer answered at the upgrade, compressed messages
//! inflated when complete, and messages compressed on send. In shared mode all of it
//! happens in the worker's one pair of streams, and connections hold nothing but two flag
//! bits, so an idle connection with deflate costs what one without does. In dedicated
//! mode a connection that keeps context has an entry in a side table (its agreed windows,
//! 24 bytes) from the upgrade, and its own zlib streams from its first message each way
//! until it closes.

use bytes::Bytes;
use throng_protocol::deflate::{
    self, ContextDeflater, ContextInflater, Mode, Response, SharedCodec,
};
use throng_protocol::frame::{FrameHead, HeaderBuf, OpCode, RSV1};
use throng_protocol::handshake::Upgrade;
use throng_protocol::{DataKind, ProtocolError};

use super::Core;
use super::publish::data_head;
use crate::config::{DeflateConfig, DeflateMode};
use crate::conn::*;
use crate::handler::Handler;

/// Inflated or compressed bytes kept for the next message up to this capacity; a larger
/// buffer (one big message) is freed at once so a worker does not hold it.
const KEEP: usize = 256 << 10;

/// A worker's deflate state, present when `Config::deflate` is set.
pub(crate) struct Deflate {
    config: DeflateConfig,
    /// The shared streams, allocated when the worker first compresses or inflates.
    codec: Option<Box<SharedCodec>>,
    /// The largest message inflated; more fails with 1009.
    max_message: usize,
    /// Compressed output, reused.
    out: Vec<u8>,
    /// Inflated messages, reused.
    inflated: Vec<u8>,
    /// Dedicated mode: the connections that keep context one way or both, by slab key
    /// (removed when the connection is).
    contexts: crate::topics::KeyMap<Context>,
}

/// A connection's own streams (dedicated mode), each made on first use.
struct Context {
    /// The server's window for this connection; 0: it compresses without context.
    server_bits: u8,
    /// The client's window; 0: its messages are inflated in the shared stream.
    client_bits: u8,
    /// The client allowed a 15-bit window, so a publish's shared frame is valid for it.
    shared_frames_fit: bool,
    /// The peer did not get everything the compressor took in (a publish's frame went
    /// out instead of its output, or its output was dropped): reset before the next use.
    stale: bool,
    deflater: Option<ContextDeflater>,
    inflater: Option<ContextInflater>,
}

impl Deflate {
    pub fn new(config: DeflateConfig, max_message: usize) -> Deflate {
        Deflate {
            config,
            codec: None,
            max_message,
            out: Vec::new(),
            inflated: Vec::new(),
            contexts: Default::default(),
        }
    }

    fn mode(&self) -> Mode {
        match self.config.mode {
            DeflateMode::Shared => Mode::Shared,
            DeflateMode::Dedicated(w) => Mode::Dedicated {
                window_bits: w.bits,
            },
        }
    }

    fn codec(&mut self) -> &mut SharedCodec {
        let level = self.config.level;
        self.codec
            .get_or_insert_with(|| Box::new(SharedCodec::new(level)))
    }
}

/// Whether messages to a connection with these flags are compressed.
pub(super) fn compresses(flags: u16) -> bool {
    flags & (DEFLATE | PLAIN_OUT) == DEFLATE
}

impl<S> Core<S> {
    /// The `Sec-WebSocket-Extensions` answer to the client's offers and the flags the
    /// connection gets, when deflate is on and an offer is acceptable.
    /// In dedicated mode a connection that keeps context either way gets its entry (the
    /// agreed windows; no stream yet).
    pub(super) fn deflate_offer(
        &mut self,
        key: usize,
        upgrade: &Upgrade<'_>,
    ) -> Option<(Response, u16)> {
        let d = self.deflate.as_mut()?;
        let agreed = deflate::negotiate_mode(upgrade.extensions(), d.mode())?;
        let plain = if agreed.server_compresses() {
            0
        } else {
            PLAIN_OUT
        };
        if agreed.server_context.is_some() || agreed.client_context.is_some() {
            let context = Context {
                server_bits: agreed.server_context.unwrap_or(0),
                client_bits: agreed.client_context.unwrap_or(0),
                shared_frames_fit: agreed.shared_frames_fit(),
                stale: false,
                deflater: None,
                inflater: None,
            };
            d.contexts.insert(key as u32, context);
        }
        Some((agreed.response(), DEFLATE | plain))
    }

    /// Frees a closing connection's streams (dedicated mode).
    pub(super) fn deflate_closed(&mut self, key: usize) {
        if let Some(d) = self.deflate.as_mut()
            && !d.contexts.is_empty()
            && let Some(c) = d.contexts.remove(&(key as u32))
        {
            let streams = u64::from(c.deflater.is_some()) + u64::from(c.inflater.is_some());
            self.stats.deflate_streams = self.stats.deflate_streams.saturating_sub(streams);
        }
    }

    /// Whether a publish's shared compressed frame may go to this deflate connection; a
    /// dedicated compressor it has is then reset before its next message.
    pub(super) fn takes_shared_frame(&mut self, key: usize) -> bool {
        let Some(d) = self.deflate.as_mut() else {
            return false;
        };
        match d.contexts.get_mut(&(key as u32)) {
            None => true,
            Some(c) => {
                c.stale |= c.deflater.is_some();
                c.shared_frames_fit
            }
        }
    }

    /// The compressor the connection's next message went through did not reach the
    /// peer: its context must be dropped.
    pub(super) fn deflate_lost(&mut self, key: usize) {
        if let Some(d) = self.deflate.as_mut()
            && let Some(c) = d.contexts.get_mut(&(key as u32))
        {
            c.stale |= c.deflater.is_some();
        }
    }

    /// A complete compressed message (`pieces` in order): inflated (in the connection's
    /// own stream when it keeps context, else the shared one), its text validated, handed
    /// to the handler. A bad one is a protocol violation (counted in `protocol_errors`)
    /// that fails the connection: 1007 for data that is not deflate or text that is not
    /// UTF-8, 1009 past the message limit (a bomb).
    pub(super) fn deliver_compressed<H: Handler<State = S>>(
        &mut self,
        h: &mut H,
        key: usize,
        kind: DataKind,
        pieces: &[&[u8]],
    ) {
        if !self.within_rate(key) {
            return;
        }
        let Some(d) = self.deflate.as_mut() else {
            // The decoder accepts RSV1 only on deflate connections; kept as a guard.
            return self.violation(h, key, ProtocolError::ReservedBits);
        };
        let mut buf = std::mem::take(&mut d.inflated);
        let max = d.max_message;
        let result = match d.contexts.get_mut(&(key as u32)) {
            Some(c) if c.client_bits != 0 => {
                let made = c.inflater.is_none();
                let result = inflate_kept(c, kind, pieces, max, &mut buf);
                if made && c.inflater.is_some() {
                    self.stats.deflate_streams += 1;
                }
                result
            }
            _ => d
                .codec()
                .inflater
                .inflate_message(kind, pieces, max, &mut buf),
        };
        self.stats.deflate_inflations += 1;
        match result {
            Ok(message) => self.call_on_message(h, key, message),
            Err(e) => self.violation(h, key, e),
        }
        buf.clear();
        if buf.capacity() > KEEP {
            buf = Vec::new();
        }
        if let Some(d) = self.deflate.as_mut() {
            d.inflated = buf;
        }
    }

    /// `payload` compressed for a message to connection `key` (in its own stream when it
    /// keeps context) or for a publish (`None`: the shared stream), when it is at least
    /// the threshold long and compressing makes it shorter; give the buffer back with
    /// [`Core::deflate_done`]. When the compressed message does not reach a dedicated
    /// peer after all, tell [`Core::deflate_lost`].
    pub(super) fn compress(&mut self, key: Option<usize>, payload: &[u8]) -> Option<Vec<u8>> {
        let d = self.deflate.as_mut()?;
        if payload.len() < d.config.threshold {
            return None;
        }
        let mut out = std::mem::take(&mut d.out);
        out.clear();
        let level = d.config.level;
        let mem_level = match d.config.mode {
            DeflateMode::Dedicated(w) => w.mem_level,
            DeflateMode::Shared => 8,
        };
        let context = key
            .and_then(|k| d.contexts.get_mut(&(k as u32)))
            .filter(|c| c.server_bits != 0);
        let ok = match context {
            Some(c) => {
                let made = c.deflater.is_none();
                let ok = compress_kept(c, level, mem_level, payload, &mut out);
                if made && c.deflater.is_some() {
                    self.stats.deflate_streams += 1;
                }
                // Sent plain instead: the peer will not see what the stream took in.
                if !(ok && out.len() < payload.len()) {
                    c.stale |= c.deflater.is_some();
                }
                ok
            }
            None => d.codec().deflater.compress(payload, &mut out),
        };
        self.stats.deflate_compressions += 1;
        if ok && out.len() < payload.len() {
            Some(out)
        } else {
            self.deflate_done(out);
            None
        }
    }

    /// Gives back the buffer [`Core::compress`] lent.
    pub(super) fn deflate_done(&mut self, mut out: Vec<u8>) {
        if let Some(d) = self.deflate.as_mut() {
            out.clear();
            if out.capacity() > KEEP {
                out = Vec::new();
            }
            d.out = out;
        }
    }

    /// The compressed form of an encoded whole data frame, for the deflate subscribers of
    /// a publish; `None` when the message goes out plain to them too (below the
    /// threshold, or incompressible). Called at most once per publish per worker.
    pub(super) fn deflated_frame(&mut self, plain: &Bytes) -> Option<Bytes> {
        let (head, head_len) = FrameHead::parse(plain).ok()??;
        let kind = match head.opcode {
            OpCode::Text => DataKind::Text,
            OpCode::Binary => DataKind::Binary,
            _ => return None,
        };
        let compressed = self.compress(None, &plain[head_len..])?;
        let head = data_head(kind, compressed.len() as u64).with_rsv(RSV1);
        let mut hb = HeaderBuf::default();
        let header = head.encode(&mut hb);
        let mut frame = Vec::with_capacity(header.len() + compressed.len());
        frame.extend_from_slice(header);
        frame.extend_from_slice(&compressed);
        self.deflate_done(compressed);
        Some(Bytes::from(frame))
    }
}

/// Compresses in the connection's own stream, made now if this is its first message
/// (or, if zlib has no memory for it, the message goes plain: returns false).
fn compress_kept(
    c: &mut Context,
    level: u32,
    mem_level: u8,
    payload: &[u8],
    out: &mut Vec<u8>,
) -> bool {
    if c.deflater.is_none() {
        c.deflater = ContextDeflater::new(level, c.server_bits, mem_level);
        c.stale = false;
    }
    let Some(z) = c.deflater.as_mut() else {
        return false;
    };
    if std::mem::take(&mut c.stale) {
        z.reset();
    }
    let ok = z.compress(payload, out);
    c.stale = !ok;
    ok
}

/// Inflates in the connection's own stream, made now if this is its first compressed
/// message. No memory for it fails the message as a server error would.
fn inflate_kept<'o>(
    c: &mut Context,
    kind: DataKind,
    pieces: &[&[u8]],
    max: usize,
    out: &'o mut Vec<u8>,
) -> Result<throng_protocol::Message<'o>, ProtocolError> {
    if c.inflater.is_none() {
        c.inflater = ContextInflater::new(c.client_bits);
    }
    let z = c.inflater.as_mut().ok_or(ProtocolError::MessageTooBig)?;
    out.clear();
    z.inflate(pieces, max, out)?;
    match kind {
        DataKind::Binary => Ok(throng_protocol::Message::Binary(out)),
        DataKind::Text => throng_protocol::utf8::validate(out)
            .map(throng_protocol::Message::Text)
            .ok_or(ProtocolError::InvalidUtf8),
    }
}
