//! Server configuration: every limit the engine enforces, with its default and what it
//! costs in memory.

use std::net::SocketAddr;
use std::time::Duration;

use throng_protocol::CloseCode;

pub use crate::error::ConfigError;

/// Which I/O backend runs the workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendChoice {
    /// io_uring when the kernel offers everything the backend uses, else epoll.
    Auto,
    /// io_uring, or fail to start.
    Uring,
    /// epoll through mio.
    Epoll,
}

/// The backend a running server uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    /// io_uring.
    Uring,
    /// epoll.
    Epoll,
}

impl BackendKind {
    /// `"uring"` or `"epoll"`.
    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Uring => "uring",
            BackendKind::Epoll => "epoll",
        }
    }
}

impl std::str::FromStr for BackendChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" | "" => Ok(BackendChoice::Auto),
            "uring" | "io_uring" | "io-uring" => Ok(BackendChoice::Uring),
            "epoll" | "mio" => Ok(BackendChoice::Epoll),
            other => Err(format!(
                "unknown backend {other:?} (expected auto, uring or epoll)"
            )),
        }
    }
}

/// What a send does when the connection already buffers `max_buffered` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backpressure {
    /// Refuse the message: the send returns [`crate::SendError::Backpressure`].
    Drop,
    /// Refuse the message and close the connection with this code (1008 or 1013).
    Close(CloseCode),
}

/// Where the engine serves `GET /metrics` (the Prometheus text exposition of
/// [`crate::Metrics`]) and `GET /healthz` (`200 ok`). [`crate::ServerHandle::metrics`]
/// returns the same snapshot as a typed struct whatever this says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricsEndpoint {
    /// Not served over HTTP.
    Off,
    /// On the WebSocket listener, as plain-HTTP paths: such a request is answered by the
    /// engine and never reaches [`crate::Handler::on_request`]; other paths still do.
    Listener,
    /// On an address of its own (an admin port kept off the public network), served by
    /// one thread of its own that asks the workers through their mailboxes. Port 0 picks
    /// a free port ([`crate::Server::admin_addr`] tells which).
    Admin(SocketAddr),
}

/// A message rate: a token bucket of `burst` messages refilled at `per_second`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageRate {
    /// Messages per second a connection may send on average.
    pub per_second: u32,
    /// Messages it may send at once after a quiet spell.
    pub burst: u32,
}

/// permessage-deflate (RFC 7692). In shared mode (the default) each worker keeps one
/// compressor and one inflater, reset after every message, and connections keep no
/// compression state (an idle connection with deflate costs what one without does): the
/// server answers every acceptable offer with `server_no_context_takeover;
/// client_no_context_takeover`. Dedicated mode ([`DeflateMode::Dedicated`]) keeps
/// context per connection for better ratios, at the memory its [`DeflateWindow`] says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeflateConfig {
    /// Messages shorter than this go out uncompressed (compressing them costs more time
    /// than the bytes it saves, and may not save any). Default 256 bytes. Measured with
    /// `cargo bench -p throng-protocol --bench deflate` (level 1, JSON): 64 B saves 4 bytes,
    /// 256 B saves 126, 1 KiB saves 687; each compress costs at least about 6 us (the
    /// stream reset after every message), so raising it to 1 KiB trades bytes for CPU.
    pub threshold: usize,
    /// Compression level, 0 (stored) to 9 (smallest). Default 1 (fastest).
    pub level: u32,
    /// Shared streams (default) or a context per connection.
    pub mode: DeflateMode,
}

/// Whether connections keep compression context between messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum DeflateMode {
    /// No context takeover: the worker's one pair of streams serves every connection.
    #[default]
    Shared,
    /// Context takeover each way the client allows, in streams of this window that a
    /// connection gets when it first compresses or inflates a message (not at the
    /// upgrade) and frees at close. Whichever way the client declines context (or, for
    /// its own messages, does not accept the window limit when the window is below 15
    /// bits) goes through the shared streams. A publish is still compressed once, in the
    /// shared stream: a dedicated subscriber gets that frame and its compressor starts
    /// afresh for its next message.
    Dedicated(DeflateWindow),
}

/// The size of a connection's own deflate streams (C zlib), and so its memory. Measured
/// bytes per connection are in the README (section permessage-deflate).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeflateWindow {
    /// LZ77 window bits, 9..=15, each way: the server compresses with this window and
    /// limits the client's to it with `client_max_window_bits`.
    pub bits: u8,
    /// zlib's memory level for the compressor, 1..=9 (hash table and block buffer).
    pub mem_level: u8,
}

impl DeflateWindow {
    /// 512-byte windows, memory level 1: about 9 KB of compressor and 8 KB of inflater.
    pub const SMALL: DeflateWindow = DeflateWindow {
        bits: 9,
        mem_level: 1,
    };
    /// 4 KiB windows, memory level 4: about 30 KB and 11 KB.
    pub const MEDIUM: DeflateWindow = DeflateWindow {
        bits: 12,
        mem_level: 4,
    };
    /// zlib's defaults (32 KiB windows, memory level 8): about 270 KB and 40 KB, the best
    /// ratio.
    pub const DEFAULT: DeflateWindow = DeflateWindow {
        bits: 15,
        mem_level: 8,
    };
}

impl Default for DeflateConfig {
    fn default() -> Self {
        DeflateConfig {
            threshold: 256,
            level: 1,
            mode: DeflateMode::Shared,
        }
    }
}

impl DeflateConfig {
    /// The defaults in dedicated mode with `window`.
    pub fn dedicated(window: DeflateWindow) -> DeflateConfig {
        DeflateConfig {
            mode: DeflateMode::Dedicated(window),
            ..DeflateConfig::default()
        }
    }
}

/// Server settings. Build with [`Config::new`] and the `with_*` methods or by field; new
/// fields may be added, so construct through `Config::default()`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// Address every worker's listener binds (with `SO_REUSEPORT`). Default 127.0.0.1:9001.
    pub addr: SocketAddr,
    /// TLS for the listener at `addr` (`wss://`), or none (`ws://`). Default none. A TLS
    /// connection costs its TLS state in a per-worker side table (about 2.1 KB idle
    /// with ring) and, only while a record is cut by a read, up to 18 KiB in its spill.
    /// The handshake timeout covers the TLS handshake. Certificates can be swapped while
    /// running with [`crate::ServerHandle::reload_tls`].
    pub tls: Option<crate::TlsConfig>,
    /// A second listener, plain `ws://` (and plain HTTP), beside the one at `addr`: a
    /// listener is either TLS or plain, and a server may have both (wss on 443 and ws on
    /// 80, or wss and a plain metrics port). Every worker binds it too (`SO_REUSEPORT`);
    /// its connections are served like those of `addr`, without TLS. Port 0 picks a free
    /// port ([`crate::Server::plain_addr`] tells which). Default none.
    pub plain_addr: Option<SocketAddr>,
    /// Worker threads. Default: the CPUs this process may run on.
    pub workers: usize,
    /// Pin worker `i` to the `i`-th allowed CPU. Default on.
    pub pin: bool,
    /// I/O backend; the `THRONG_BACKEND` environment variable (auto, uring, epoll)
    /// overrides it. Default [`BackendChoice::Auto`].
    pub backend: BackendChoice,
    /// Listen backlog per worker. Default 4096.
    pub backlog: i32,
    /// Connections per worker; more are accepted and closed at once. Default 1,000,000.
    /// Each worker reserves address space for this many connection records up front (at
    /// most 64 MiB; 48 bytes each plus the handler's state), so its slab never moves; only
    /// the pages of slots in use become resident.
    pub max_connections: usize,
    /// Per-worker receive buffer, shared by all its connections. Default 64 KiB.
    pub recv_buffer: usize,
    /// Largest request head (request line and headers) of the upgrade; more gets 431.
    /// Default 8 KiB, held only while a handshake is incomplete.
    pub max_header_bytes: usize,
    /// Most header lines in the request head; more gets 431. Default 64.
    pub max_headers: usize,
    /// Largest frame payload; more fails the connection with 1009. Default 16 MiB.
    pub max_frame_size: usize,
    /// Largest message; more fails with 1009. Default 16 MiB. A message that arrives in
    /// pieces is assembled in a pooled buffer that grows to its size.
    pub max_message_size: usize,
    /// Most frames one message may arrive in; more fails with 1009. Default 100,000, at
    /// most 2^24 - 1. Bounds the work of a flood of empty fragments.
    pub max_fragments: u32,
    /// Accept frame lengths written in a longer form than needed. RFC 6455 5.2 says the
    /// minimal one MUST be used; default false: such a frame fails with 1002.
    pub lenient_lengths: bool,
    /// Time from accept to a complete upgrade request; then the connection is closed
    /// (slowloris). Default 10 s.
    pub handshake_timeout: Duration,
    /// PROXY protocol (v1 or v2, HAProxy's `send-proxy`/`send-proxy-v2`, nginx's
    /// `proxy_protocol on`): every connection to this listener must begin with the
    /// header, and the client address it names is the connection's from then on
    /// ([`crate::WebSocket::peer_addr`], [`crate::UpgradeRequest::peer_addr`],
    /// `max_connections_per_ip`). A connection whose first bytes are not a valid header
    /// (at most 1,040 bytes, within `handshake_timeout`) is closed without an answer and
    /// counted in `WorkerStats::proxy_refused`. A header without an address (the proxy's
    /// own health check: v2 `LOCAL`, v1 `UNKNOWN`) leaves the socket's address. Turn it on
    /// only behind a proxy that always sends the header: anyone who can connect directly
    /// can claim any address. Default off.
    pub proxy_protocol: bool,
    /// Plain HTTP keep-alive: after answering a request through `on_request`, the
    /// connection stays open this long for the next one (a WebSocket upgrade included),
    /// unless the request said `Connection: close`, was HTTP/1.0 without
    /// `Connection: keep-alive`, or carried a body. The next request, once its first byte
    /// is in, has [`Config::handshake_timeout`] to complete. Pipelined requests are
    /// answered in order, 16 per read at most: then reading pauses until the answers are
    /// out. `None` closes after every answer. Default 30 s.
    pub http_keep_alive: Option<Duration>,
    /// Close a connection after this long without receiving anything. Default none.
    pub idle_timeout: Option<Duration>,
    /// Send a ping after this long without receiving anything. Default 30 s.
    pub ping_interval: Option<Duration>,
    /// After a ping, close the connection if nothing arrives within this. Default 10 s.
    pub pong_timeout: Duration,
    /// After sending a close frame, wait this long for the peer's close, then close TCP.
    /// Default 5 s.
    pub close_timeout: Duration,
    /// Output buffered per connection above which reading from it pauses (the peer is
    /// slowed down through TCP instead of costing memory). Default 256 KiB.
    pub write_high_water: usize,
    /// Reading resumes and `on_drain` fires when output falls to this. Default 64 KiB.
    pub write_low_water: usize,
    /// Once a turn has staged this many bytes of replies for its flush, a further reply
    /// staged while a plain connection's input is handled (the common echo or
    /// request/response: a direct piece, nothing else pending) is written as soon as that
    /// input is done, not with the rest at the turn's end. Default 256 KiB: the bytes
    /// leave while they are still in the CPU's cache (epoll, 100 connections, 16 KiB
    /// echo: 1.3-1.47x the messages per second of CPU; 1,000 x 4 KiB: 1.14-1.27x), while
    /// a turn that stays below it (100 x 1 KiB) is written in one run at its end, which is
    /// cheaper there (writing each at once cost 4% more). Still at most one write per
    /// input; what the socket does not take waits for the turn's flush as before. `None`:
    /// every reply waits for the flush; `Some(0)`: every reply is written at once. TLS
    /// connections always flush at the end of the turn.
    pub eager_replies_after: Option<usize>,
    /// Hard cap on buffered output per connection; a send beyond it follows
    /// [`Config::backpressure`]. A send into an empty buffer always goes through, so one
    /// message may exceed it. Default 32 MiB.
    pub max_buffered: usize,
    /// What happens to a send beyond `max_buffered`. Default [`Backpressure::Drop`]
    /// (the send reports it).
    pub backpressure: Backpressure,
    /// Resolution of the timer wheel: deadlines fire up to one tick late. Default 250 ms.
    pub timer_tick: Duration,
    /// Graceful shutdown waits this long for peers to answer the 1001 close. Default 5 s.
    pub shutdown_timeout: Duration,
    /// Connections one peer address may hold open across all workers; a connection
    /// beyond it is answered `429 Too Many Requests` at once and closed (counted in
    /// `WorkerStats::refused_per_ip`). Default none. Costs one `getpeername` per accept
    /// and an entry per connection (about 40 bytes) while set.
    pub max_connections_per_ip: Option<u32>,
    /// Messages a connection may send (a token bucket per connection: a connection whose
    /// bucket is full costs nothing; one that is refilling about 40 bytes). One beyond it
    /// closes the connection with 1008 "message rate limit" (counted in
    /// `WorkerStats::rate_limited`). Default none.
    pub message_rate: Option<MessageRate>,
    /// Bytes of incomplete request heads a worker keeps for all its handshaking
    /// connections together (slowloris with large headers); a connection that would take
    /// it past this is answered `503` and closed (`WorkerStats::handshake_memory_refused`).
    /// Default 32 MiB per worker (4,096 half-sent 8 KiB heads).
    pub max_handshake_buffer: usize,
    /// Bytes of output a worker buffers for all its connections together. A send that
    /// would go past it is refused like one over `max_buffered` (and, with
    /// [`Backpressure::Close`], closes its connection), even into an empty buffer, so many
    /// never-reading peers cannot pin a large message each (`WorkerStats::dropped_worker_full`).
    /// Default 1 GiB per worker.
    pub max_worker_buffered: usize,
    /// Spill records each worker keeps for reuse after connections give them back; more
    /// are freed. Default 1,024. A kept record costs about 100 bytes plus the buffers it
    /// still holds (each kept buffer at most 64 KiB; larger ones are freed on return).
    pub spill_pool_keep: usize,
    /// io_uring: buffers in each worker's receive ring (rounded up to a power of two, at
    /// most 32,768). Default 64. Memory: `uring_recv_buffers * uring_recv_buffer_size`
    /// per worker (4 MiB by default), mapped and populated at start-up, shared by all the
    /// worker's connections. A receive that finds the ring empty waits for a buffer
    /// (counted in [`crate::WorkerStats::recv_enobufs`]); nothing is lost.
    pub uring_recv_buffers: usize,
    /// io_uring: the fewest of those buffers the ring circulates. With incremental
    /// consumption the ring starts with this many and takes in more while a turn's
    /// receives come near to using them all (or one finds none), and fewer again after a
    /// long stretch that never used half: every circulating buffer is written once per
    /// lap of the ring, and a lap larger than the CPU's cache had the core read 16 KiB
    /// messages from memory (16 KiB echo at 100 connections: server CPU per message
    /// 1.16x the bare floor server's with all 64 circulating). Default 8 (512 KiB of 64
    /// KiB buffers); at least 1; at or above [`Config::uring_recv_buffers`] (taken as
    /// that) all circulate.
    pub uring_recv_buffers_min: usize,
    /// io_uring: bytes per receive buffer. Default 64 KiB, as the epoll worker's read
    /// buffer ([`Config::recv_buffer`]): a receive never takes more than what is left of
    /// one buffer, so with 16 KiB buffers every 16 KiB message (16,392 bytes with its
    /// header) arrived in two completions and was assembled by a copy (~9,700 instructions
    /// per echo against ~7,100 on epoll; 64 KiB: ~7,800). Buffers are consumed
    /// incrementally (Linux 6.12+), so a small receive takes only what it needs; kernels
    /// without that get 4 KiB buffers taken whole, as many as fit in the same memory. A
    /// receive cut by its buffer's end and continued at the start of the next buffer in
    /// memory (the usual order) reaches the core as one input of up to two buffers, not
    /// two to assemble (16 KiB echo: ~7,100 -> ~6,400 instructions).
    pub uring_recv_buffer_size: u32,
    /// io_uring: under load a worker waits for up to this many completions per wakeup
    /// (about half as many as its last turn brought), so one wakeup covers a batch.
    /// Default 32; 1 turns batching off (needs Linux 6.12's minimum-wait timeout).
    pub uring_wait_batch: u32,
    /// io_uring: how long a busy worker waits for such a batch once one completion is
    /// there. Default 20 us.
    pub uring_batch_wait: Duration,
    /// io_uring: deferred task work (`IORING_SETUP_DEFER_TASKRUN`), so completions are
    /// processed when the worker asks for them, not by interrupting it. Default on; off
    /// only for A/B measurements.
    pub uring_defer_taskrun: bool,
    /// io_uring: a direct piece (the common reply, a broadcast delivery) is first written
    /// by a non-blocking `send` from the worker, and only what the socket does not take
    /// goes to the ring as a send to complete later. Default on: a ring send costs a
    /// submission and a completion to reap (~200 user-space instructions of a 64 B echo's
    /// ~950, callgrind), while the server's CPU per message, kernel included, is the same
    /// or lower with the write made now (`throng-bench compare`, benches/README.md). Off
    /// sends every piece through the ring.
    pub uring_direct_send: bool,
    /// permessage-deflate: negotiated with clients that offer it when set. Default none
    /// (off: offers are declined). A worker allocates its shared streams (about 300 KiB
    /// with zlib-rs) when it first compresses or inflates.
    pub deflate: Option<DeflateConfig>,
    /// Where `/metrics` and `/healthz` are served. Default [`MetricsEndpoint::Off`]: the
    /// counters are kept either way (plain integers in each worker, no cost to speak of);
    /// only the HTTP paths are opt-in, since metrics tell an outsider much.
    pub metrics: MetricsEndpoint,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            addr: SocketAddr::from(([127, 0, 0, 1], 9001)),
            tls: None,
            plain_addr: None,
            workers: crate::cpu::allowed_cpus().len().max(1),
            pin: true,
            backend: BackendChoice::Auto,
            backlog: 4096,
            max_connections: 1_000_000,
            recv_buffer: 64 << 10,
            max_header_bytes: 8 << 10,
            max_headers: 64,
            max_frame_size: 16 << 20,
            max_message_size: 16 << 20,
            max_fragments: 100_000,
            lenient_lengths: false,
            handshake_timeout: Duration::from_secs(10),
            proxy_protocol: false,
            http_keep_alive: Some(Duration::from_secs(30)),
            idle_timeout: None,
            ping_interval: Some(Duration::from_secs(30)),
            pong_timeout: Duration::from_secs(10),
            close_timeout: Duration::from_secs(5),
            write_high_water: 256 << 10,
            write_low_water: 64 << 10,
            eager_replies_after: Some(256 << 10),
            max_buffered: 32 << 20,
            backpressure: Backpressure::Drop,
            timer_tick: Duration::from_millis(250),
            shutdown_timeout: Duration::from_secs(5),
            max_connections_per_ip: None,
            message_rate: None,
            max_handshake_buffer: 32 << 20,
            max_worker_buffered: 1 << 30,
            spill_pool_keep: 1024,
            uring_recv_buffers: 64,
            uring_recv_buffers_min: 8,
            uring_recv_buffer_size: 64 << 10,
            uring_wait_batch: 32,
            uring_batch_wait: Duration::from_micros(20),
            uring_defer_taskrun: true,
            uring_direct_send: true,
            deflate: None,
            metrics: MetricsEndpoint::Off,
        }
    }
}

impl Config {
    /// Defaults, listening on `addr`.
    pub fn new(addr: SocketAddr) -> Self {
        Config {
            addr,
            ..Config::default()
        }
    }
    /// Sets the worker count ([`Config::validate`] refuses 0).
    pub fn with_workers(mut self, workers: usize) -> Self {
        self.workers = workers;
        self
    }
    /// Sets the backend.
    pub fn with_backend(mut self, backend: BackendChoice) -> Self {
        self.backend = backend;
        self
    }
    /// Sets the frame and message limits.
    pub fn with_max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes;
        self.max_frame_size = bytes;
        self
    }
    /// Turns permessage-deflate on with `deflate`, or off with `None`.
    pub fn with_deflate(mut self, deflate: Option<DeflateConfig>) -> Self {
        self.deflate = deflate;
        self
    }
    /// Serves `wss://` with these certificates.
    pub fn with_tls(mut self, tls: crate::TlsConfig) -> Self {
        self.tls = Some(tls);
        self
    }
    /// Adds a plain `ws://` listener at `addr` beside the main one ([`Config::plain_addr`]).
    pub fn with_plain_addr(mut self, addr: SocketAddr) -> Self {
        self.plain_addr = Some(addr);
        self
    }
    /// Turns CPU pinning on or off.
    pub fn with_pinning(mut self, pin: bool) -> Self {
        self.pin = pin;
        self
    }
}

/// The longest any timeout may be, in timer ticks (the wheel counts ticks in 32 bits
/// with room to add two deadlines).
const MAX_TICKS: u128 = u32::MAX as u128 / 4;
/// The largest frame or message the decoder can track (its counters are 32-bit).
const MAX_DECODER_BYTES: usize = u32::MAX as usize;

impl Config {
    /// Checks every setting; [`crate::Server::start`] calls it and refuses to start on an
    /// error, so nothing is clamped or changed silently.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let fail = |field: &'static str, reason: String| Err(ConfigError::new(field, reason));
        if self.workers == 0 {
            return fail("workers", "must be at least 1".into());
        }
        if self.proxy_protocol && self.tls.is_some() {
            // The bytes after the PROXY header would reach the HTTP parser, not TLS.
            return fail(
                "proxy_protocol",
                "not supported on a TLS listener yet (terminate TLS in the proxy)".into(),
            );
        }
        if let Some(plain) = self.plain_addr
            && plain == self.addr
            && plain.port() != 0
        {
            // Both groups would be one SO_REUSEPORT group, sharing connections at random.
            return fail(
                "plain_addr",
                format!("{plain} is `addr` too: a listener is either TLS or plain"),
            );
        }
        if self.workers > u16::MAX as usize {
            return fail("workers", format!("{} is more than 65,535", self.workers));
        }
        if self.backlog <= 0 {
            return fail("backlog", format!("{} is not positive", self.backlog));
        }
        if self.max_connections == 0 {
            return fail("max_connections", "must be at least 1".into());
        }
        let uring_max = crate::sys::uring::MAX_CONNECTIONS;
        if self.backend != BackendChoice::Epoll && self.max_connections > uring_max {
            return fail(
                "max_connections",
                format!(
                    "{} is more than an io_uring worker can name ({uring_max}); use the epoll backend or fewer",
                    self.max_connections
                ),
            );
        }
        if self.recv_buffer < 1024 {
            return fail(
                "recv_buffer",
                format!("{} bytes is below the minimum of 1,024", self.recv_buffer),
            );
        }
        if self.max_header_bytes == 0 {
            return fail("max_header_bytes", "must be at least 1".into());
        }
        let cap = throng_protocol::handshake::MAX_HEADERS_CAP;
        if self.max_headers == 0 || self.max_headers > cap {
            return fail(
                "max_headers",
                format!("{} is not in 1..={cap}", self.max_headers),
            );
        }
        for (field, v) in [
            ("max_frame_size", self.max_frame_size),
            ("max_message_size", self.max_message_size),
        ] {
            if v == 0 || v > MAX_DECODER_BYTES {
                return fail(
                    field,
                    format!(
                        "{v} is not in 1..={MAX_DECODER_BYTES} (the decoder counts in 32 bits)"
                    ),
                );
            }
        }
        let most = throng_protocol::decoder::MAX_FRAGMENTS;
        if self.max_fragments < 2 || self.max_fragments > most {
            return fail(
                "max_fragments",
                format!("{} is not in 2..={most}", self.max_fragments),
            );
        }
        if self.write_low_water > self.write_high_water {
            return fail(
                "write_low_water",
                format!(
                    "{} is above write_high_water ({})",
                    self.write_low_water, self.write_high_water
                ),
            );
        }
        if self.write_high_water == 0 {
            return fail("write_high_water", "must be at least 1".into());
        }
        if self.max_buffered == 0 {
            return fail("max_buffered", "must be at least 1".into());
        }
        if let Backpressure::Close(code) = self.backpressure
            && !code.is_sendable()
        {
            return fail(
                "backpressure",
                format!("close code {} cannot be sent", code.0),
            );
        }
        if self.timer_tick.is_zero() {
            return fail("timer_tick", "must be longer than zero".into());
        }
        let timeouts = [
            ("handshake_timeout", Some(self.handshake_timeout)),
            ("http_keep_alive", self.http_keep_alive),
            ("idle_timeout", self.idle_timeout),
            ("ping_interval", self.ping_interval),
            ("pong_timeout", Some(self.pong_timeout)),
            ("close_timeout", Some(self.close_timeout)),
        ];
        for (field, d) in timeouts {
            let Some(d) = d else { continue };
            if d.is_zero() {
                return fail(
                    field,
                    "must be longer than zero (use None to turn it off where allowed)".into(),
                );
            }
            if d.as_nanos() / self.timer_tick.as_nanos() > MAX_TICKS {
                return fail(
                    field,
                    format!(
                        "{d:?} is too long for a timer tick of {:?}",
                        self.timer_tick
                    ),
                );
            }
        }
        if self.max_connections_per_ip == Some(0) {
            return fail(
                "max_connections_per_ip",
                "must be at least 1 (None turns it off)".into(),
            );
        }
        if let Some(r) = self.message_rate
            && (r.per_second == 0 || r.burst == 0)
        {
            return fail(
                "message_rate",
                "per_second and burst must be at least 1".into(),
            );
        }
        if self.max_handshake_buffer < self.max_header_bytes {
            return fail(
                "max_handshake_buffer",
                format!(
                    "{} is below max_header_bytes ({})",
                    self.max_handshake_buffer, self.max_header_bytes
                ),
            );
        }
        if self.max_worker_buffered < self.write_high_water {
            return fail(
                "max_worker_buffered",
                format!(
                    "{} is below write_high_water ({})",
                    self.max_worker_buffered, self.write_high_water
                ),
            );
        }
        if self.uring_recv_buffers == 0 || self.uring_recv_buffers > 1 << 15 {
            return fail(
                "uring_recv_buffers",
                format!("{} is not in 1..=32768", self.uring_recv_buffers),
            );
        }
        if self.uring_recv_buffers_min == 0 {
            return fail(
                "uring_recv_buffers_min",
                "0 buffers would stop every receive".into(),
            );
        }
        if !(1024..=1 << 20).contains(&self.uring_recv_buffer_size) {
            return fail(
                "uring_recv_buffer_size",
                format!("{} is not in 1 KiB..=1 MiB", self.uring_recv_buffer_size),
            );
        }
        if let Some(d) = self.deflate
            && d.level > 9
        {
            return fail("deflate", format!("level {} is not in 0..=9", d.level));
        }
        if let Some(DeflateConfig {
            mode: DeflateMode::Dedicated(w),
            ..
        }) = self.deflate
            && (!(9..=15).contains(&w.bits) || !(1..=9).contains(&w.mem_level))
        {
            return fail(
                "deflate",
                format!(
                    "window bits {} not in 9..=15 or memory level {} not in 1..=9",
                    w.bits, w.mem_level
                ),
            );
        }
        if self.uring_wait_batch == 0 {
            return fail(
                "uring_wait_batch",
                "must be at least 1 (1 turns batching off)".into(),
            );
        }
        Ok(())
    }
}
