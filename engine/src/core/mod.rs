//! A worker's connections and everything that happens to one. Backend-neutral: the
//! backend reports events, the core reacts and leaves descriptor operations in
//! [`Core::ops`] for the run loop to apply through the backend contract.
//!
//! One concern per file:
//! - [`accept`](self::accept): a connection's arrival and teardown;
//! - [`wire`](self::wire): the seam between socket bytes and WebSocket bytes (where a
//!   byte transform such as TLS sits, on input and on output);
//! - [`handshake`](self::handshake): the HTTP upgrade (or a plain HTTP answer);
//! - [`input`](self::input): frames in, messages to the handler;
//! - [`deflate`](self::deflate): permessage-deflate in the worker's shared streams;
//! - [`close`](self::close): the close handshake and draining;
//! - [`timers`](self::timers): deadlines, the wheel, shutdown;
//! - [`publish`](self::publish): topics and publishing;
//! - [`output`](self::output) and [`flush`](self::flush): sends, and handing a turn's
//!   output to the backend;
//! - [`guard`](self::guard): handler callbacks, with their panics contained;
//! - [`secure`](self::secure): TLS connections' input, output and end.

use std::os::fd::RawFd;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use slab::Slab;
use throng_protocol::DecoderConfig;
use throng_protocol::handshake::HandshakeConfig;

use crate::config::{Backpressure, Config};
use crate::conn::*;
use crate::mailbox::Peer;
use crate::output::{Arena, Piece};
use crate::pool::{Pool, Spill};
use crate::stats::WorkerStats;
use crate::sys::Token;
use crate::timer::{self, Taken, Wheel};
use crate::topics::Topics;
use crate::ws::ConnId;

mod accept;
mod close;
mod deflate;
mod flush;
mod guard;
mod handshake;
mod http;
mod input;
mod limits;
mod output;
mod proxy;
mod publish;
mod scrape;
mod secure;
mod timers;
mod wire;

pub(crate) use limits::PerIp;
pub(crate) use publish::encode_frame;

/// A descriptor operation for the backend, applied in order after the current dispatch.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Op {
    /// Watch an accepted connection.
    Register(RawFd, Token),
    /// Close a connection that was never registered (the worker is full).
    Refuse(RawFd),
    /// Half-close the write side once the output handed over is out.
    ShutdownWrite(RawFd, Token),
    /// End what is in flight, then close the descriptor.
    Close(RawFd, Token),
    /// Reading may start again.
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
    /// How long a kept-alive connection waits for its next request.
    keep_alive: Option<u32>,
    idle: Option<u32>,
    ping: Option<u32>,
    pong: u32,
    /// The pong timeout in milliseconds (compared with the kernel's ACK clock).
    pong_ms: u32,
    close: u32,
    /// The earliest an open connection's clock can run out (idle or ping), or a lap when
    /// it has none: how far ahead a handshaking connection is filed.
    open_first: u32,
}

fn ticks(d: std::time::Duration, tick: std::time::Duration) -> u32 {
    let t = d.as_nanos().div_ceil(tick.as_nanos().max(1));
    t.clamp(1, u32::MAX as u128 / 4) as u32
}

impl Ticks {
    fn new(config: &Config) -> Ticks {
        let tick = config.timer_tick;
        Ticks {
            handshake: ticks(config.handshake_timeout, tick),
            keep_alive: config.http_keep_alive.map(|d| ticks(d, tick)),
            idle: config.idle_timeout.map(|d| ticks(d, tick)),
            ping: config.ping_interval.map(|d| ticks(d, tick)),
            pong: ticks(config.pong_timeout, tick),
            pong_ms: config.pong_timeout.as_millis().min(u32::MAX as u128) as u32,
            close: ticks(config.close_timeout, tick),
            open_first: [config.idle_timeout, config.ping_interval]
                .into_iter()
                .flatten()
                .map(|d| ticks(d, tick))
                .min()
                .unwrap_or(timer::HORIZON),
        }
    }
}

/// Limits and marks the core applies, from the config.
pub(crate) struct Limits {
    max_connections: usize,
    /// Messages per connection (None: no limit).
    rate: Option<limits::Rate>,
    /// Bytes of request heads a worker keeps for all its handshaking connections.
    max_handshake_buffer: usize,
    /// Bytes of output a worker buffers for all its connections.
    max_worker_buffered: usize,
    high_water: usize,
    low_water: usize,
    max_buffered: usize,
    backpressure: Backpressure,
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
    /// Current tick (starts at 1; 0 means "not filed"). Read from the clock by the run
    /// loop after every wait, before any event of that turn is handled.
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
    /// Reply bytes a turn leaves for its flush before it writes replies at once
    /// ([`Config::eager_replies_after`]; usize::MAX when off).
    defer_replies: usize,
    /// Bytes of the direct pieces staged this turn (the flush's, unless
    /// [`Core::reply_now`] wrote them).
    deferred: usize,
    /// Where a turn's direct pieces are staged.
    arena: Arena,
    /// The largest piece staged outside the spill (and so not counted in `buffered()`
    /// until the flush): at most the low-water mark, so the marks stay right to within it.
    direct_max: usize,
    generation: u32,
    ticks: Ticks,
    limits: Limits,
    decoder: DecoderConfig,
    /// `decoder` with RSV1 allowed, for connections that negotiated permessage-deflate.
    deflate_decoder: DecoderConfig,
    /// The shared deflate streams and buffers, when `Config::deflate` is set.
    deflate: Option<deflate::Deflate>,
    handshake: HandshakeConfig,
    /// Scratch for response heads and close payloads.
    scratch: Vec<u8>,
    pub topics: Topics,
    /// What the server's workers share: their publish mailboxes, the per-address counts.
    peers: Peers,
    /// State of the limits in [`limits`].
    guards: limits::Guards,
    /// Peers whose output stalled at a pong deadline: the bytes their TCP had
    /// acknowledged then, keyed by slab key (with the generation), to tell a slow reader
    /// (progress by the next deadline) from a stuck one. Only such connections appear.
    stalls: crate::topics::KeyMap<(u32, u64)>,
    /// `Config::proxy_protocol`: connections begin with a PROXY header.
    proxy_protocol: bool,
    /// Client addresses from PROXY headers, keyed by slab key (with the generation); only
    /// connections of a PROXY listener appear.
    proxied: crate::topics::KeyMap<(u32, std::net::SocketAddr)>,
    /// Whether `/metrics` and `/healthz` are answered on the listener.
    metrics_on_listener: bool,
    /// Metrics scrapes waiting for the other workers' answers.
    scrapes: Vec<scrape::Scrape>,
    /// TLS sessions of the worker's connections, when its listener speaks TLS.
    tls: Option<crate::tls::Sessions>,
}

/// A connection on the flush list, with its direct piece if its output is just that.
pub(crate) struct Dirty {
    token: Token,
    direct: Option<Piece>,
}

/// What a server's workers share, off the message path.
pub(crate) struct Shared {
    /// The backend the workers run, and why (for the metrics' info line).
    pub backend: (crate::config::BackendKind, String),
    /// Every worker's publish mailbox (filled once all workers have started).
    pub workers: OnceLock<Box<[Peer]>>,
    /// Connections per peer address, when `Config::max_connections_per_ip` is set.
    pub per_ip: Option<PerIp>,
}

/// The shared state of a server's workers.
pub(crate) type Peers = Arc<Shared>;

impl<S> Core<S> {
    pub fn new(config: &Config, worker: u16, peers: Peers) -> Self {
        let mut decoder =
            DecoderConfig::server(config.max_frame_size as u64, config.max_message_size as u64);
        decoder.max_fragments = config.max_fragments;
        decoder.lenient_lengths = config.lenient_lengths;
        let mut deflate_decoder = decoder;
        deflate_decoder.allowed_rsv = throng_protocol::frame::RSV1;
        let mut handshake = HandshakeConfig::default();
        handshake.max_header_bytes = config.max_header_bytes;
        handshake.max_headers = config.max_headers;
        Core {
            conns: Slab::with_capacity(slab_reserve::<S>(config.max_connections)),
            pool: Pool::new(config.spill_pool_keep),
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
            defer_replies: config.eager_replies_after.unwrap_or(usize::MAX),
            deferred: 0,
            arena: Arena::default(),
            direct_max: crate::output::CHUNK.min(config.write_low_water),
            generation: 0,
            ticks: Ticks::new(config),
            limits: Limits {
                max_connections: config.max_connections,
                rate: config.message_rate.map(|r| {
                    let tick = config.timer_tick.as_secs_f64();
                    limits::Rate {
                        per_tick_milli: (r.per_second as f64 * tick * 1000.0).ceil() as u64,
                        burst_milli: u64::from(r.burst.max(1)) * 1000,
                    }
                }),
                max_handshake_buffer: config.max_handshake_buffer,
                max_worker_buffered: config.max_worker_buffered,
                high_water: config.write_high_water,
                low_water: config.write_low_water.min(config.write_high_water),
                max_buffered: config.max_buffered,
                backpressure: config.backpressure,
            },
            decoder,
            deflate_decoder,
            deflate: config
                .deflate
                .map(|d| deflate::Deflate::new(d, config.max_message_size)),
            handshake,
            scratch: Vec::with_capacity(256),
            topics: Topics::default(),
            peers,
            guards: limits::Guards::default(),
            stalls: Default::default(),
            proxy_protocol: config.proxy_protocol,
            proxied: Default::default(),
            metrics_on_listener: config.metrics == crate::config::MetricsEndpoint::Listener,
            scrapes: Vec::new(),
            tls: config
                .tls
                .as_ref()
                .map(|t| crate::tls::Sessions::new(t.rustls().clone())),
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

    /// The connection's spill record, lent from the pool if it has none.
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
}

impl<S> Drop for Core<S> {
    /// A worker that unwinds (an engine bug) must not leave its peers hanging: every
    /// descriptor it still holds is closed, so they see the connection end. On a normal
    /// exit there are none left.
    fn drop(&mut self) {
        for (_, c) in self.conns.iter() {
            crate::net::close(c.fd);
        }
        for op in self.ops.drain(..) {
            if let Op::Refuse(fd) | Op::Close(fd, _) = op {
                crate::net::close(fd);
            }
        }
    }
}
