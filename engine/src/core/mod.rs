//! A worker's connections and everything that happens to one: handshake, frames, sends,
//! the close handshake, timers. Backend-neutral: the backend reports events, the core
//! reacts and leaves descriptor operations in [`Core::ops`] for the run loop to apply.

use std::os::fd::RawFd;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use slab::Slab;
use throng_protocol::decoder::{DataKind, Decoded, Event};
use throng_protocol::frame::{FrameHead, HeaderBuf};
use throng_protocol::handshake::{self, HandshakeConfig};
use throng_protocol::{CloseCode, DecoderConfig, ProtocolError};

use crate::config::{Backpressure, Config};
use crate::conn::*;
use crate::handler::{Decision, Handler, HttpResponse, Message, UpgradeRequest};
use crate::mailbox::{Peer, Publish, Published};
use crate::pool::{Pool, Spill};
use crate::sys::arena::{Arena, Piece};
use crate::sys::{self, Token};
use crate::timer::{self, Taken, Wheel};
use crate::topics::Topics;
use crate::ws::{ConnId, SendError, WebSocket};

mod output;

use output::output_pending;

/// The longest run of bytes the decoder may leave unconsumed: a full frame header plus a
/// control frame's 125-byte payload.
const MAX_STASH: usize = 14 + 125;

/// A descriptor operation for the backend, applied in order after the current poll.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Op {
    Register(RawFd, Token),
    /// Cancel what is in flight, then close the descriptor.
    Close(RawFd, Token),
    Resume(RawFd, Token),
}

/// A payload to send: borrowed (copied only if it must wait) or shared (never copied).
pub(crate) enum Payload<'a> {
    Borrowed(&'a [u8]),
    Shared(Bytes),
}

impl Payload<'_> {
    fn as_slice(&self) -> &[u8] {
        match self {
            Payload::Borrowed(b) => b,
            Payload::Shared(b) => b,
        }
    }
}

/// Timer settings in ticks.
pub(crate) struct Ticks {
    handshake: u32,
    idle: Option<u32>,
    ping: Option<u32>,
    pong: u32,
    close: u32,
    /// The earliest an open connection's clock can run out (idle or ping), or a lap when
    /// it has none: how far ahead a handshaking connection is filed.
    open_first: u32,
}

/// Counters a worker keeps.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WorkerStats {
    /// Connections accepted.
    pub accepted: u64,
    /// Connections refused because the worker was full.
    pub refused_full: u64,
    /// WebSocket connections opened.
    pub opened: u64,
    /// Connections whose close handshake completed.
    pub closed_cleanly: u64,
    /// Connections that ended any other way.
    pub closed_abnormally: u64,
    /// Connections closed by a timer (handshake, idle, pong, close timeouts).
    pub timed_out: u64,
    /// Messages refused by the backpressure cap.
    pub dropped: u64,
    /// Receives that found the io_uring buffer ring empty (re-armed once buffers were
    /// back; no byte is lost, the connection waited). Always 0 on epoll.
    pub recv_enobufs: u64,
}

pub(crate) struct Core<S> {
    pub conns: Slab<Conn<S>>,
    pub pool: Pool,
    pub wheel: Wheel,
    /// The last tick whose wheel bucket was taken. It lags `now` while a large bucket is
    /// worked through over several turns.
    timer_at: u32,
    /// What is left of that bucket when a turn's timer budget ran out.
    timer_rest: Taken,
    /// Current tick (starts at 1; 0 means "not filed").
    pub now: u32,
    pub worker: u16,
    pub ops: Vec<Op>,
    pub stats: WorkerStats,
    pub shutting_down: bool,
    /// Connections whose socket failed during a send, torn down by [`Core::reap`] once the
    /// callback that was sending has returned.
    broken: Vec<Token>,
    /// Connections with output staged this turn, flushed by [`Core::flush_dirty`].
    dirty: Vec<Dirty>,
    /// Index in `dirty` of the last direct entry (where a following send may extend it).
    last_direct: usize,
    /// Where a turn's direct pieces are staged.
    arena: Arena,
    /// The largest piece staged outside the spill (and so not counted in `buffered()`
    /// until the flush): at most the low-water mark, so the marks stay right to within it.
    direct_max: usize,
    generation: u32,
    ticks: Ticks,
    decoder: DecoderConfig,
    handshake: HandshakeConfig,
    max_connections: usize,
    high_water: usize,
    low_water: usize,
    max_buffered: usize,
    backpressure: Backpressure,
    /// Scratch for response heads and close payloads.
    scratch: Vec<u8>,
    pub topics: Topics,
    /// Every worker's publish mailbox (filled once all workers have started).
    peers: Arc<OnceLock<Box<[Peer]>>>,
}

/// A connection on the flush list, with its direct piece if its output is just that.
pub(crate) struct Dirty {
    token: Token,
    direct: Option<Piece>,
}

/// The peers of a server's workers, shared by all of them.
pub(crate) type Peers = Arc<OnceLock<Box<[Peer]>>>;

fn ticks(d: std::time::Duration, tick: std::time::Duration) -> u32 {
    let t = d.as_nanos().div_ceil(tick.as_nanos().max(1));
    t.clamp(1, u32::MAX as u128 / 4) as u32
}

impl<S> Core<S> {
    pub fn new(config: &Config, worker: u16, peers: Peers) -> Self {
        let tick = config.timer_tick;
        let mut handshake = HandshakeConfig::default();
        handshake.max_header_bytes = config.max_header_bytes;
        handshake.max_headers = config.max_headers;
        Core {
            conns: Slab::with_capacity(slab_reserve::<S>(config.max_connections)),
            pool: Pool::default(),
            wheel: Wheel::default(),
            timer_at: 1,
            timer_rest: Taken::NONE,
            now: 1,
            worker,
            ops: Vec::new(),
            stats: WorkerStats::default(),
            shutting_down: false,
            broken: Vec::new(),
            dirty: Vec::new(),
            last_direct: usize::MAX,
            arena: Arena::default(),
            direct_max: sys::arena::CHUNK.min(config.write_low_water),
            generation: 0,
            ticks: Ticks {
                handshake: ticks(config.handshake_timeout, tick),
                idle: config.idle_timeout.map(|d| ticks(d, tick)),
                ping: config.ping_interval.map(|d| ticks(d, tick)),
                pong: ticks(config.pong_timeout, tick),
                close: ticks(config.close_timeout, tick),
                open_first: [config.idle_timeout, config.ping_interval]
                    .into_iter()
                    .flatten()
                    .map(|d| ticks(d, tick))
                    .min()
                    .unwrap_or(timer::HORIZON),
            },
            decoder: DecoderConfig::server(
                config.max_frame_size as u64,
                config.max_message_size as u64,
            ),
            handshake,
            max_connections: config.max_connections,
            high_water: config.write_high_water,
            low_water: config.write_low_water.min(config.write_high_water),
            max_buffered: config.max_buffered,
            backpressure: config.backpressure,
            scratch: Vec::with_capacity(256),
            topics: Topics::default(),
            peers,
        }
    }

    pub fn conn_id(&self, key: usize) -> ConnId {
        ConnId {
            worker: self.worker,
            key: key as u32,
            generation: self.conns[key].generation,
        }
    }

    fn token(&self, key: usize) -> Token {
        Token {
            key: key as u32,
            generation: self.conns[key].generation,
        }
    }

    /// The slab key of the live connection `token` names.
    pub fn lookup(&self, token: Token) -> Option<usize> {
        let key = token.key as usize;
        match self.conns.get(key) {
            Some(c) if c.generation == token.generation => Some(key),
            _ => None,
        }
    }

    /// The slab key of the live connection `id` names.
    pub fn lookup_id(&self, id: ConnId) -> Option<usize> {
        self.lookup(Token {
            key: id.key,
            generation: id.generation,
        })
    }

    pub fn is_open(&self, key: usize) -> bool {
        let c = &self.conns[key];
        c.phase == Phase::Open && !c.has(CLOSE_SENT)
    }

    // ---- accept and teardown -------------------------------------------------------

    pub fn accept(&mut self, fd: RawFd) {
        if self.conns.len() >= self.max_connections || self.shutting_down {
            self.stats.refused_full += 1;
            sys::close(fd);
            return;
        }
        self.stats.accepted += 1;
        self.generation = self.generation.wrapping_add(1);
        let key = self.conns.insert(Conn::new(fd, self.generation, self.now));
        let token = self.token(key);
        self.ops.push(Op::Register(fd, token));
        self.schedule(key);
    }

    /// Reports the close to the handler if it is owed one.
    fn report_close<H: Handler<State = S>>(
        &mut self,
        h: &mut H,
        key: usize,
        code: CloseCode,
        reason: &str,
    ) {
        let c = &mut self.conns[key];
        if c.has(OPENED) {
            // Sends from on_close are refused: the close is decided.
            c.flags = (c.flags & !OPENED) | CLOSE_SENT;
            h.on_close(&mut WebSocket::new(self, key), code, reason);
        }
    }

    /// Removes the connection now; the descriptor is closed by the run loop.
    pub fn remove<H: Handler<State = S>>(
        &mut self,
        h: &mut H,
        key: usize,
        code: CloseCode,
        reason: &str,
    ) {
        self.report_close(h, key, code, reason);
        let token = self.token(key);
        let conn = self.conns.remove(key);
        if conn.has(SUBSCRIBED) {
            // The slot is free from here: its subscriptions end with it, so a connection
            // that reuses it starts with none.
            self.topics.remove_conn(key as u32, conn.topic);
        }
        if conn.has(CLEAN) {
            self.stats.closed_cleanly += 1;
        } else {
            self.stats.closed_abnormally += 1;
        }
        if let Some(spill) = conn.spill {
            self.pool.give(spill);
        }
        self.ops.push(Op::Close(conn.fd, token));
    }

    /// The peer closed its side or the socket failed. Output accepted before (a reply to
    /// the peer's last message, our close frame) still goes out: the connection is removed
    /// once it is flushed, or by the close timer.
    pub fn input_closed<H: Handler<State = S>>(&mut self, h: &mut H, key: usize) {
        let c = &mut self.conns[key];
        if c.has(PEER_EOF) {
            return;
        }
        if !output_pending(c) || c.has(BROKEN) {
            return self.remove(h, key, CloseCode::ABNORMAL, "connection lost");
        }
        c.flags |= PEER_EOF;
        self.report_close(h, key, CloseCode::ABNORMAL, "connection lost");
        if let Some(c) = self.conns.get_mut(key)
            && c.phase != Phase::Draining
        {
            c.phase = Phase::Draining;
            c.since = self.now;
            self.schedule(key);
        }
    }

    /// Tears down connections whose socket failed during a send.
    pub fn reap<H: Handler<State = S>>(&mut self, h: &mut H) {
        while let Some(token) = self.broken.pop() {
            if let Some(key) = self.lookup(token) {
                self.remove(h, key, CloseCode::ABNORMAL, "connection lost");
            }
        }
    }

    /// The socket failed: stop using it; it is torn down at the next [`Core::reap`].
    fn broke(&mut self, key: usize) {
        let c = &mut self.conns[key];
        if !c.has(BROKEN) {
            c.flags |= BROKEN;
            let token = self.token(key);
            self.broken.push(token);
        }
    }

    // ---- input ---------------------------------------------------------------------

    /// Bytes arrived. Returns whether to keep reading this connection now.
    pub fn input<H: Handler<State = S>>(
        &mut self,
        h: &mut H,
        key: usize,
        bytes: &mut [u8],
    ) -> bool {
        let c = &mut self.conns[key];
        match c.phase {
            Phase::Handshake => self.handshake_input(h, key, bytes),
            Phase::Open | Phase::Closing => {
                if c.phase == Phase::Open {
                    c.since = self.now;
                    c.flags &= !PING_SENT;
                }
                self.frame_input(h, key, bytes)
            }
            // The answer is out or going out; input is read and discarded until EOF.
            Phase::Http | Phase::Draining => {}
        }
        self.reap(h);
        self.conns.get(key).is_some_and(|c| !c.has(READ_PAUSED))
    }

    fn spill(&mut self, key: usize) -> &mut Spill {
        let pool = &mut self.pool;
        self.conns[key].spill.get_or_insert_with(|| pool.take())
    }

    /// Gives the spill record back if nothing is in flight.
    fn release_spill(&mut self, key: usize) {
        let c = &mut self.conns[key];
        if c.spill.as_ref().is_some_and(|s| s.is_idle()) {
            let s = c.spill.take().expect("checked");
            self.pool.give(s);
        }
    }

    fn handshake_input<H: Handler<State = S>>(&mut self, h: &mut H, key: usize, bytes: &mut [u8]) {
        let stashed = self.conns[key]
            .spill
            .as_ref()
            .is_some_and(|s| !s.input.is_empty());
        if stashed {
            let mut buf = std::mem::take(&mut self.spill(key).input);
            buf.extend_from_slice(bytes);
            let used = self.handshake_parse(h, key, &buf);
            match used {
                None => self.spill(key).input = buf,
                Some(n) => {
                    let mut rest = buf.split_off(n);
                    buf.clear();
                    if let Some(c) = self.conns.get_mut(key).and_then(|c| c.spill.as_mut()) {
                        c.input = buf; // keep the allocation
                    }
                    self.after_handshake(h, key, &mut rest);
                }
            }
        } else {
            match self.handshake_parse(h, key, bytes) {
                None => self.spill(key).input.extend_from_slice(bytes),
                Some(n) => self.after_handshake(h, key, &mut bytes[n..]),
            }
        }
        if self.conns.contains(key) {
            self.release_spill(key);
        }
    }

    /// Bytes pipelined after the request head are the first frames.
    fn after_handshake<H: Handler<State = S>>(&mut self, h: &mut H, key: usize, rest: &mut [u8]) {
        if !rest.is_empty() && self.conns[key].phase == Phase::Open {
            self.frame_input(h, key, rest);
        }
    }

    /// Parses the request head in `buf`. `None`: incomplete. `Some(n)`: answered, `n` bytes used.
    fn handshake_parse<H: Handler<State = S>>(
        &mut self,
        h: &mut H,
        key: usize,
        buf: &[u8],
    ) -> Option<usize> {
        let (req, used) = match handshake::parse_request(buf, &self.handshake) {
            Ok(None) => return None,
            Ok(Some(parsed)) => parsed,
            Err(e) => {
                self.scratch.clear();
                handshake::write_error(&mut self.scratch, e);
                self.respond_and_close(key);
                return Some(buf.len());
            }
        };
        if !req.is_websocket_upgrade() {
            let mut res = HttpResponse::default();
            h.on_request(&req, &mut res);
            let mut headers: Vec<(&str, &str)> = res
                .headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            headers.push(("Connection", "close")); // one request per connection
            self.scratch.clear();
            handshake::write_response(&mut self.scratch, res.status, &headers, &res.body);
            self.respond_and_close(key);
            return Some(buf.len());
        }
        let upgrade = match handshake::validate_upgrade(req) {
            Ok(u) => u,
            Err(e) => {
                self.scratch.clear();
                handshake::write_error(&mut self.scratch, e);
                self.respond_and_close(key);
                return Some(buf.len());
            }
        };
        let fd = self.conns[key].fd;
        match h.on_upgrade(&UpgradeRequest::new(&upgrade, fd)) {
            Decision::Reject(status) => {
                self.scratch.clear();
                let body = format!("upgrade refused ({status})\n");
                let headers = [("Content-Type", "text/plain"), ("Connection", "close")];
                handshake::write_response(&mut self.scratch, status, &headers, body.as_bytes());
                self.respond_and_close(key);
                Some(buf.len())
            }
            Decision::Accept { state, protocol } => {
                self.scratch.clear();
                handshake::write_accept(&mut self.scratch, &upgrade, protocol, None);
                let head = std::mem::take(&mut self.scratch);
                let _ = self.send_raw(key, &head);
                self.scratch = head;
                let c = &mut self.conns[key];
                c.state = Some(state);
                c.phase = Phase::Open;
                c.flags |= OPENED;
                c.since = self.now;
                self.stats.opened += 1;
                self.schedule(key);
                if !self.conns[key].has(BROKEN) {
                    h.on_open(&mut WebSocket::new(self, key));
                }
                Some(used)
            }
        }
    }

    /// Sends the response in `scratch`, then closes once it is out.
    fn respond_and_close(&mut self, key: usize) {
        let head = std::mem::take(&mut self.scratch);
        let _ = self.send_raw(key, &head);
        self.scratch = head;
        let c = &mut self.conns[key];
        c.phase = Phase::Http;
        c.since = self.now;
        self.finish_if_flushed(key);
        self.schedule(key);
    }

    fn frame_input<H: Handler<State = S>>(&mut self, h: &mut H, key: usize, bytes: &mut [u8]) {
        let mut rest = bytes;
        let stash = match self.conns[key].spill.as_mut() {
            Some(s) if !s.input.is_empty() => Some(std::mem::take(&mut s.input)),
            _ => None,
        };
        if let Some(mut stash) = stash {
            // Complete the stashed header or control frame with just enough new bytes.
            let old = stash.len();
            let moved = rest.len().min(MAX_STASH);
            stash.extend_from_slice(&rest[..moved]);
            let used = self.decode_all(h, key, &mut stash);
            if !self.receiving(key) {
                return;
            }
            if used >= old {
                rest = &mut rest[used - old..];
                stash.clear();
                self.spill(key).input = stash;
            } else {
                // Only possible when all new bytes were moved and still do not complete it.
                stash.drain(..used);
                stash.extend_from_slice(&rest[moved..]);
                self.spill(key).input = stash;
                return;
            }
        }
        let used = self.decode_all(h, key, rest);
        if self.receiving(key) && used < rest.len() {
            self.spill(key).input.extend_from_slice(&rest[used..]);
        }
        if self.conns.contains(key) {
            self.release_spill(key);
        }
    }

    /// Whether frames from this connection are still being read.
    fn receiving(&self, key: usize) -> bool {
        self.conns
            .get(key)
            .is_some_and(|c| matches!(c.phase, Phase::Open | Phase::Closing) && !c.has(BROKEN))
    }

    /// Decodes and handles events until the input runs out; returns bytes used.
    fn decode_all<H: Handler<State = S>>(
        &mut self,
        h: &mut H,
        key: usize,
        buf: &mut [u8],
    ) -> usize {
        let mut used = 0;
        while self.receiving(key) {
            let mut decoder = self.conns[key].decoder;
            let result = decoder.decode(&self.decoder, &mut buf[used..]);
            self.conns[key].decoder = decoder;
            match result {
                Err(e) => {
                    self.fail(h, key, e);
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
                }
            }
        }
        buf.len()
    }

    fn event<H: Handler<State = S>>(&mut self, h: &mut H, key: usize, event: Event<'_>) {
        match event {
            Event::Data {
                kind,
                payload,
                first,
                last,
                ..
            } => {
                if self.conns[key].has(CLOSE_SENT) {
                    return; // the peer has not seen our close yet; its data is moot
                }
                if first && last {
                    return deliver(h, self, key, kind, payload);
                }
                self.spill(key).message.extend_from_slice(payload);
                if last {
                    let message = std::mem::take(&mut self.spill(key).message);
                    deliver(h, self, key, kind, &message);
                    if let Some(s) = self.conns.get_mut(key).and_then(|c| c.spill.as_mut()) {
                        s.message = message;
                        s.message.clear();
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

    /// The peer's close frame arrived.
    fn peer_close<H: Handler<State = S>>(
        &mut self,
        h: &mut H,
        key: usize,
        close: Option<(CloseCode, &str)>,
    ) {
        let c = &mut self.conns[key];
        c.flags |= CLOSE_RECEIVED | CLEAN;
        let (code, reason) = close.unwrap_or((CloseCode::NO_STATUS, ""));
        if !c.has(CLOSE_SENT) {
            // Echo the peer's code (RFC 6455 5.5.1); an empty close is answered empty.
            let echo = close.map(|(code, _)| code);
            self.send_close(key, echo, "");
        }
        self.report_close(h, key, code, reason);
        self.begin_drain(key);
    }

    /// Fails the connection: close frame with the violation's code, then close TCP.
    fn fail<H: Handler<State = S>>(&mut self, h: &mut H, key: usize, e: ProtocolError) {
        if !self.conns[key].has(CLOSE_SENT) {
            self.send_close(key, Some(e.close_code()), e.reason());
        }
        self.report_close(h, key, e.close_code(), e.reason());
        self.begin_drain(key);
    }

    /// No more frames are read: flush, shut the write side, wait for the peer's FIN.
    fn begin_drain(&mut self, key: usize) {
        let c = &mut self.conns[key];
        c.phase = Phase::Draining;
        c.since = self.now;
        self.finish_if_flushed(key);
        self.schedule(key);
    }

    /// In the `Http` and `Draining` phases, shuts the write side once output is out (or
    /// removes the connection, if the peer has already gone).
    fn finish_if_flushed(&mut self, key: usize) {
        let c = &mut self.conns[key];
        if matches!(c.phase, Phase::Http | Phase::Draining) && !output_pending(c) && !c.has(BROKEN)
        {
            if c.has(PEER_EOF) {
                let token = self.token(key);
                self.broken.push(token); // removed by the next reap
                self.conns[key].flags |= BROKEN;
            } else {
                sys::shutdown_write(c.fd);
            }
        }
    }

    /// Starts the close handshake (from the application, a timer or shutdown).
    pub fn close(&mut self, key: usize, code: CloseCode, reason: &str) {
        let c = &mut self.conns[key];
        match c.phase {
            Phase::Open if !c.has(CLOSE_SENT) => {
                self.send_close(key, Some(code), reason);
                let c = &mut self.conns[key];
                c.phase = Phase::Closing;
                c.since = self.now;
                self.schedule(key);
            }
            Phase::Handshake => {
                let c = &mut self.conns[key];
                c.phase = Phase::Http;
                c.since = self.now;
                self.finish_if_flushed(key);
                self.schedule(key);
            }
            _ => {}
        }
    }

    // ---- topics --------------------------------------------------------------------

    pub fn subscribe(&mut self, key: usize, topic: &str) -> bool {
        let c = &mut self.conns[key];
        c.flags |= SUBSCRIBED;
        self.topics.subscribe(key as u32, &mut c.topic, topic)
    }

    pub fn unsubscribe(&mut self, key: usize, topic: &str) -> bool {
        let c = &mut self.conns[key];
        self.topics.unsubscribe(key as u32, &mut c.topic, topic)
    }

    pub fn is_subscribed(&self, key: usize, topic: &str) -> bool {
        self.conns[key].has(SUBSCRIBED) && self.topics.is_subscribed(key as u32, topic)
    }

    /// Publishes to `topic` here and on every other worker (once per worker, through
    /// its mailbox). The frame is encoded once. Returns this worker's counts.
    pub fn publish(
        &mut self,
        topic: &str,
        text: bool,
        payload: &[u8],
        except: Option<usize>,
    ) -> Published {
        let frame = encode_frame(text, payload);
        if let Some(peers) = self.peers.get() {
            let mut shared: Option<Arc<str>> = None;
            for (i, peer) in peers.iter().enumerate() {
                if i != self.worker as usize {
                    let topic = shared.get_or_insert_with(|| topic.into()).clone();
                    peer.post(Publish {
                        topic,
                        frame: frame.clone(),
                        reply: None,
                    });
                }
            }
        }
        self.publish_local(topic, &frame, except)
    }

    /// Delivers an encoded frame to this worker's subscribers of `topic`.
    pub fn publish_local(
        &mut self,
        topic: &str,
        frame: &Bytes,
        except: Option<usize>,
    ) -> Published {
        let mut result = Published::default();
        let Some(id) = self.topics.id(topic) else {
            return result;
        };
        let members = self.topics.take(id);
        members.for_each(|key| {
            let key = key as usize;
            // Members are live connections (membership ends in `remove`); the check only
            // keeps a broken invariant from becoming a panic.
            if Some(key) == except || !self.conns.contains(key) {
                return;
            }
            match self.send_encoded(key, frame) {
                Ok(_) => result.reached += 1,
                Err(SendError::Backpressure) => result.dropped += 1,
                Err(SendError::Closed) => {}
            }
        });
        self.topics.restore(id, members);
        result
    }

    /// Handles a publish from another worker or thread.
    pub fn remote_publish(&mut self, p: Publish) {
        let result = self.publish_local(&p.topic, &p.frame, None);
        if let Some(reply) = p.reply {
            let _ = reply.send(result);
        }
    }

    // ---- timers --------------------------------------------------------------------

    /// When the connection's current clock runs out, if it has one.
    fn deadline(&self, c: &Conn<S>) -> Option<u32> {
        let t = &self.ticks;
        match c.phase {
            Phase::Handshake => Some(c.since + t.handshake),
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
    fn schedule(&mut self, key: usize) {
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

    /// Advances the clock to `now` and fires what is due, visiting the wheel's buckets in
    /// tick order but at most [`timer::TURN_BUDGET`] entries per call: the rest
    /// waits for the next turn ([`Core::timers_behind`] keeps the run loop from sleeping
    /// meanwhile). Deadlines are reckoned on the clock, never on the lagging buckets.
    pub fn advance<H: Handler<State = S>>(&mut self, h: &mut H, now: u32) {
        self.now = self.now.max(now);
        let mut budget = timer::TURN_BUDGET;
        let mut batch = [0u32; timer::CHUNK];
        if !self.visit_rest(h, &mut budget, &mut batch) {
            return;
        }
        // After a stall of more than a lap every bucket is visited once.
        let first = (self.timer_at + 1).max(self.now.saturating_sub(timer::BUCKETS as u32 - 1));
        for t in first..=self.now {
            self.timer_at = t;
            self.timer_rest = self.wheel.take(t);
            if !self.visit_rest(h, &mut budget, &mut batch) {
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
                self.remove(h, key, CloseCode::ABNORMAL, "timeout");
            }
            Phase::Closing => {
                self.stats.timed_out += 1;
                self.remove(h, key, CloseCode::ABNORMAL, "close timeout");
            }
            Phase::Open => {
                let silence = self.now - c.since;
                let t = &self.ticks;
                if t.idle.is_some_and(|i| silence >= i) {
                    self.stats.timed_out += 1;
                    self.close(key, CloseCode::GOING_AWAY, "idle timeout");
                } else if c.has(PING_SENT) {
                    // Half-open: the peer cannot hear a close frame either.
                    self.stats.timed_out += 1;
                    self.remove(h, key, CloseCode::ABNORMAL, "pong timeout");
                    return;
                } else if t.ping.is_some() {
                    c.flags |= PING_SENT;
                    let _ = self.send_frame(key, FrameHead::ping(0), Payload::Borrowed(&[]));
                    self.schedule(key);
                }
                self.reap(h);
            }
        }
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
            self.remove(h, key, CloseCode::ABNORMAL, "server shut down");
        }
    }
}

/// Encodes a whole unmasked data frame (header and payload) into one shared buffer.
pub(crate) fn encode_frame(text: bool, payload: &[u8]) -> Bytes {
    let len = payload.len() as u64;
    let head = if text {
        FrameHead::text(len)
    } else {
        FrameHead::binary(len)
    };
    let mut hb = HeaderBuf::default();
    let header = head.encode(&mut hb);
    let mut v = Vec::with_capacity(header.len() + payload.len());
    v.extend_from_slice(header);
    v.extend_from_slice(payload);
    Bytes::from(v)
}

fn deliver<H: Handler>(
    h: &mut H,
    core: &mut Core<H::State>,
    key: usize,
    kind: DataKind,
    payload: &[u8],
) {
    let message = match kind {
        // SAFETY: the decoder validated this text message as UTF-8 (streaming across its
        // pieces) before reporting its last piece; revalidating would cost a second pass.
        DataKind::Text => Message::Text(unsafe { std::str::from_utf8_unchecked(payload) }),
        DataKind::Binary => Message::Binary(payload),
    };
    h.on_message(&mut WebSocket::new(core, key), message);
}
