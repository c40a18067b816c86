//! Server configuration: every limit the engine enforces, with its default and what it
//! costs in memory.

use std::net::SocketAddr;
use std::time::Duration;

use throng_protocol::CloseCode;

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

/// Server settings. Build with [`Config::new`] and the `with_*` methods or by field; new
/// fields may be added, so construct through `Config::default()`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// Address every worker's listener binds (with `SO_REUSEPORT`). Default 127.0.0.1:9001.
    pub addr: SocketAddr,
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
    /// Time from accept to a complete upgrade request; then the connection is closed
    /// (slowloris). Default 10 s.
    pub handshake_timeout: Duration,
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
}

impl Default for Config {
    fn default() -> Self {
        Config {
            addr: SocketAddr::from(([127, 0, 0, 1], 9001)),
            workers: crate::sys::socket::allowed_cpus().len().max(1),
            pin: true,
            backend: BackendChoice::Auto,
            backlog: 4096,
            max_connections: 1_000_000,
            recv_buffer: 64 << 10,
            max_header_bytes: 8 << 10,
            max_headers: 64,
            max_frame_size: 16 << 20,
            max_message_size: 16 << 20,
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: None,
            ping_interval: Some(Duration::from_secs(30)),
            pong_timeout: Duration::from_secs(10),
            close_timeout: Duration::from_secs(5),
            write_high_water: 256 << 10,
            write_low_water: 64 << 10,
            max_buffered: 32 << 20,
            backpressure: Backpressure::Drop,
            timer_tick: Duration::from_millis(250),
            shutdown_timeout: Duration::from_secs(5),
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
    /// Sets the worker count.
    pub fn with_workers(mut self, workers: usize) -> Self {
        self.workers = workers.max(1);
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
    /// Turns CPU pinning on or off.
    pub fn with_pinning(mut self, pin: bool) -> Self {
        self.pin = pin;
        self
    }
}
