//! permessage-deflate on a worker (shared mode): the offer answered at the upgrade,
//! compressed messages inflated when complete, and messages compressed on send, all in
//! the worker's one pair of streams. Connections hold nothing but two flag bits, so an
//! idle connection with deflate costs what one without does.

use bytes::Bytes;
use throng_protocol::deflate::{self, SharedCodec};
use throng_protocol::frame::{FrameHead, HeaderBuf, OpCode, RSV1};
use throng_protocol::handshake::Upgrade;
use throng_protocol::{DataKind, ProtocolError};

use super::Core;
use super::publish::data_head;
use crate::config::DeflateConfig;
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
}

impl Deflate {
    pub fn new(config: DeflateConfig, max_message: usize) -> Deflate {
        Deflate {
            config,
            codec: None,
            max_message,
            out: Vec::new(),
            inflated: Vec::new(),
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
    pub(super) fn deflate_offer(&self, upgrade: &Upgrade<'_>) -> Option<(&'static str, u16)> {
        self.deflate.as_ref()?;
        let agreed = deflate::negotiate(upgrade.extensions())?;
        let plain = if agreed.server_compresses() {
            0
        } else {
            PLAIN_OUT
        };
        Some((agreed.response(), DEFLATE | plain))
    }

    /// A complete compressed message (`pieces` in order): inflated in the shared stream,
    /// its text validated, handed to the handler. A bad one fails the connection (1007 for
    /// data that is not deflate or text that is not UTF-8, 1009 past the message limit).
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
            let e = ProtocolError::ReservedBits;
            return self.fail(h, key, e.close_code(), e.reason());
        };
        let mut buf = std::mem::take(&mut d.inflated);
        let max = d.max_message;
        let result = d
            .codec()
            .inflater
            .inflate_message(kind, pieces, max, &mut buf);
        self.stats.deflate_inflations += 1;
        match result {
            Ok(message) => self.call_on_message(h, key, message),
            Err(e) => self.fail(h, key, e.close_code(), e.reason()),
        }
        buf.clear();
        if buf.capacity() > KEEP {
            buf = Vec::new();
        }
        if let Some(d) = self.deflate.as_mut() {
            d.inflated = buf;
        }
    }

    /// `payload` compressed for a message, when it is at least the threshold long and
    /// compressing makes it shorter; give the buffer back with [`Core::deflate_done`].
    pub(super) fn compress(&mut self, payload: &[u8]) -> Option<Vec<u8>> {
        let d = self.deflate.as_mut()?;
        if payload.len() < d.config.threshold {
            return None;
        }
        let mut out = std::mem::take(&mut d.out);
        out.clear();
        let ok = d.codec().deflater.compress(payload, &mut out);
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
        let compressed = self.compress(&plain[head_len..])?;
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
