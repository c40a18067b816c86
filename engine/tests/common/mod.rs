//! Shared helpers of the engine's integration tests: which backends to run, a test
//! handler that reports what happens to its connections, a raw WebSocket client that
//! writes frames by hand, a tungstenite client, and payload patterns.
//!
//! Every test is written once and runs on each backend of [`backends`]; each starts its
//! own server on port 0 and checks that the backend it asked for is the one that runs.

#![allow(dead_code)]

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use throng_engine::{
    BackendChoice, BackendKind, CloseCode, Config, ConnId, Decision, Handler, HttpRequest,
    HttpResponse, Message, SendError, Sent, Server, UpgradeRequest, WebSocket,
};
use tungstenite::Message as TMessage;
use tungstenite::client::IntoClientRequest;
use tungstenite::protocol::WebSocketConfig;

/// How long any client read may block before the test fails instead of hanging.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to wait for an event from the server's callbacks.
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(10);

// ---- backends and servers ----------------------------------------------------------

/// Backends under test: the engine's one list (`THRONG_TEST_BACKENDS`, or both; io_uring
/// skipped loudly where its probe fails).
pub fn backends() -> Vec<BackendChoice> {
    throng_engine::testing::backends()
}

/// The backend a choice must run on (no silent fallback).
pub fn kind_of(choice: BackendChoice) -> BackendKind {
    match choice {
        BackendChoice::Epoll => BackendKind::Epoll,
        BackendChoice::Uring => BackendKind::Uring,
        BackendChoice::Auto => panic!("tests name their backend"),
    }
}

/// A test configuration: loopback, port 0, two unpinned workers, the backend asked for,
/// and short shutdown and close deadlines so a failing test does not linger.
pub fn config(backend: BackendChoice) -> Config {
    let mut config = Config::new("127.0.0.1:0".parse().unwrap())
        .with_workers(2)
        .with_pinning(false)
        .with_backend(backend);
    config.shutdown_timeout = Duration::from_secs(1);
    config.close_timeout = Duration::from_secs(2);
    config
}

/// Starts a server and checks it runs the backend asked for.
pub fn start_with<H: Handler>(
    config: Config,
    factory: impl Fn(usize) -> H + Send + Sync + 'static,
) -> Server<H> {
    let asked = config.backend;
    let server = Server::start(config, factory)
        .unwrap_or_else(|e| panic!("server on the {asked:?} backend does not start: {e}"));
    assert_eq!(
        server.backend(),
        kind_of(asked),
        "the server runs the backend asked for"
    );
    assert_eq!(server.workers(), 2);
    server
}

/// Starts a [`TestHandler`] server; returns it with the receiver of its events.
pub fn start(config: Config) -> (Server<TestHandler>, Events) {
    let (tx, rx) = mpsc::channel();
    let server = start_with(config, move |worker| TestHandler {
        tx: tx.clone(),
        worker,
    });
    (server, Events { rx })
}

/// Runs `job` on every worker's thread and collects the answers, in worker order.
pub fn on_workers<H: Handler, T: Send + 'static>(
    server: &Server<H>,
    job: impl Fn(&mut throng_engine::Connections<'_, H::State>) -> T + Send + Sync + Clone + 'static,
) -> Vec<T> {
    let handle = server.handle();
    (0..handle.workers())
        .map(|w| {
            let (tx, rx) = mpsc::channel();
            let job = job.clone();
            assert!(handle.post(w, move |_, conns| {
                let _ = tx.send(job(conns));
            }));
            rx.recv_timeout(EVENT_TIMEOUT)
                .expect("the worker runs posted jobs")
        })
        .collect()
}

/// Keeps worker `worker` busy in a posted job until the returned guard is dropped (or 10 s
/// pass), so that everything a client sends meanwhile is waiting in the kernel when the
/// worker polls again: one readiness event then covers all of it.
pub fn hold_worker<H: Handler>(server: &Server<H>, worker: usize) -> Held {
    let (started_tx, started) = mpsc::channel();
    let (release, released) = mpsc::channel::<()>();
    assert!(server.handle().post(worker, move |_, _| {
        let _ = started_tx.send(());
        let _ = released.recv_timeout(Duration::from_secs(10));
    }));
    started
        .recv_timeout(EVENT_TIMEOUT)
        .expect("the worker runs the holding job");
    Held(Some(release))
}

/// Releases a worker held by [`hold_worker`] when dropped.
pub struct Held(Option<Sender<()>>);

impl Held {
    pub fn release(mut self) {
        self.0.take();
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(());
        }
    }
}

/// Open WebSocket connections on all workers.
pub fn open_count<H: Handler>(server: &Server<H>) -> usize {
    on_workers(server, |c| c.ids().len()).into_iter().sum()
}

/// Connections of any phase on all workers.
pub fn conn_count<H: Handler>(server: &Server<H>) -> usize {
    on_workers(server, |c| c.len()).into_iter().sum()
}

/// Spill records lent to connections, summed over workers.
pub fn pool_in_use<H: Handler>(server: &Server<H>) -> usize {
    on_workers(server, |c| c.pool_stats().in_use)
        .into_iter()
        .sum()
}

/// Worker counters summed over workers.
pub fn stats<H: Handler>(server: &Server<H>) -> throng_engine::WorkerStats {
    on_workers(server, |c| c.stats()).into_iter().sum()
}

/// Polls `cond` until it holds or `timeout` passes; returns whether it held. For states
/// the server reaches asynchronously (a count falling to zero once a close is processed).
pub fn eventually(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

// ---- the test handler --------------------------------------------------------------

/// Paths the test handler accepts; others get 404.
pub const KNOWN_PATHS: [&str; 2] = ["/", "/echo"];
/// An Origin the test handler refuses with 403.
pub const EVIL_ORIGIN: &str = "http://evil.example";
/// Subprotocols the test handler supports, in its order of preference.
pub const SUBPROTOCOLS: [&str; 2] = ["chat.v2", "chat.v1"];
/// The body `on_request` answers `GET /hello` with (status 200).
pub const HELLO_BODY: &str = "hello from throng\n";

/// What happened in the test handler's callbacks.
#[derive(Debug)]
pub enum Ev {
    Open {
        id: ConnId,
    },
    Close {
        id: ConnId,
        code: u16,
        reason: String,
    },
    Drain {
        id: ConnId,
    },
    Request {
        path: String,
    },
    Flood {
        id: ConnId,
        report: FloodReport,
    },
}

/// What a `!flood` command saw.
#[derive(Debug, Clone)]
pub struct FloodReport {
    /// Each send's result, in order.
    pub results: Vec<Result<Sent, SendError>>,
    /// The largest `buffered_amount()` seen after a send.
    pub max_buffered: usize,
}

/// Per-connection state of the test handler.
#[derive(Debug, Default)]
pub struct ConnState {
    /// Largest `buffered_amount()` seen after an echo.
    pub max_buffered: usize,
    /// Times `on_drain` fired.
    pub drains: usize,
    /// Messages received.
    pub messages: usize,
}

/// Echoes every message; text messages starting with `!` are commands:
/// `!close CODE REASON` closes, `!ping PAYLOAD` pings, `!flood N SIZE` sends N binary
/// messages of SIZE bytes (the first 8 bytes carry the index, little-endian) without
/// waiting and reports the results as [`Ev::Flood`].
///
/// Accepts [`KNOWN_PATHS`] (404 otherwise), refuses [`EVIL_ORIGIN`] with 403, selects the
/// first of [`SUBPROTOCOLS`] the client offered, answers `GET /hello` with 200.
pub struct TestHandler {
    pub tx: Sender<Ev>,
    pub worker: usize,
}

impl Handler for TestHandler {
    type State = ConnState;

    fn on_upgrade<'r>(&mut self, req: &UpgradeRequest<'r>) -> Decision<'r, ConnState> {
        if req.origin() == Some(EVIL_ORIGIN) {
            return Decision::reject(403);
        }
        if !KNOWN_PATHS.contains(&req.path()) {
            return Decision::reject(404);
        }
        for wanted in SUBPROTOCOLS {
            if let Some(offered) = req.protocols().find(|p| *p == wanted) {
                return Decision::accept_with_protocol(ConnState::default(), offered);
            }
        }
        Decision::accept(ConnState::default())
    }

    fn on_open(&mut self, ws: &mut WebSocket<'_, ConnState>) {
        let _ = self.tx.send(Ev::Open { id: ws.id() });
    }

    fn on_message(&mut self, ws: &mut WebSocket<'_, ConnState>, message: Message<'_>) {
        ws.state().messages += 1;
        if let Message::Text(text) = message
            && let Some(command) = text.strip_prefix('!')
        {
            return self.command(ws, command);
        }
        let _ = ws.send(message);
        let buffered = ws.buffered_amount();
        let state = ws.state();
        state.max_buffered = state.max_buffered.max(buffered);
    }

    fn on_drain(&mut self, ws: &mut WebSocket<'_, ConnState>) {
        ws.state().drains += 1;
        let _ = self.tx.send(Ev::Drain { id: ws.id() });
    }

    fn on_close(&mut self, ws: &mut WebSocket<'_, ConnState>, code: CloseCode, reason: &str) {
        let _ = self.tx.send(Ev::Close {
            id: ws.id(),
            code: code.0,
            reason: reason.to_owned(),
        });
    }

    fn on_request(&mut self, req: &HttpRequest<'_>, res: &mut HttpResponse) {
        let path = req.path().to_owned();
        if path == "/hello" {
            res.set(200, "text/plain", HELLO_BODY);
            res.headers.push(("X-Test".into(), "yes".into()));
        }
        let _ = self.tx.send(Ev::Request { path });
    }
}

impl TestHandler {
    fn command(&mut self, ws: &mut WebSocket<'_, ConnState>, command: &str) {
        let mut words = command.splitn(3, ' ');
        match (words.next(), words.next(), words.next()) {
            (Some("close"), Some(code), reason) => {
                let code = CloseCode(code.parse().expect("close code"));
                ws.close(code, reason.unwrap_or(""));
            }
            (Some("ping"), payload, None) => {
                ws.ping(payload.unwrap_or("").as_bytes()).expect("ping");
            }
            (Some("flood"), Some(n), Some(size)) => {
                let n: usize = n.parse().expect("count");
                let size: usize = size.parse().expect("size");
                let mut results = Vec::with_capacity(n);
                let mut max_buffered = 0;
                let mut msg = pattern(7, size.max(8));
                for i in 0..n {
                    msg[..8].copy_from_slice(&(i as u64).to_le_bytes());
                    results.push(ws.send_binary(&msg[..size.max(8)]));
                    max_buffered = max_buffered.max(ws.buffered_amount());
                }
                let _ = self.tx.send(Ev::Flood {
                    id: ws.id(),
                    report: FloodReport {
                        results,
                        max_buffered,
                    },
                });
            }
            _ => panic!("unknown test command {command:?}"),
        }
    }
}

/// The receiving end of a [`TestHandler`]'s events.
pub struct Events {
    pub rx: Receiver<Ev>,
}

impl Events {
    /// The next event, failing the test after [`EVENT_TIMEOUT`].
    pub fn next(&self) -> Ev {
        self.rx
            .recv_timeout(EVENT_TIMEOUT)
            .expect("an event from the server within the timeout")
    }

    /// The next event within `timeout`, if any.
    pub fn try_next(&self, timeout: Duration) -> Option<Ev> {
        match self.rx.recv_timeout(timeout) {
            Ok(ev) => Some(ev),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => panic!("the server's handlers are gone"),
        }
    }

    /// Waits for the next `on_open`, skipping other events.
    pub fn opened(&self) -> ConnId {
        loop {
            if let Ev::Open { id } = self.next() {
                return id;
            }
        }
    }

    /// Waits for the next `on_close`, skipping other events: (id, code, reason).
    pub fn closed(&self) -> (ConnId, u16, String) {
        loop {
            if let Ev::Close { id, code, reason } = self.next() {
                return (id, code, reason);
            }
        }
    }

    /// Waits for the `on_close` of `id` (other closes are skipped): (code, reason).
    pub fn closed_id(&self, id: ConnId) -> (u16, String) {
        loop {
            let (got, code, reason) = self.closed();
            if got == id {
                return (code, reason);
            }
        }
    }

    /// Waits for the next flood report.
    pub fn flood(&self) -> FloodReport {
        loop {
            if let Ev::Flood { report, .. } = self.next() {
                return report;
            }
        }
    }

    /// Asserts no `on_close` arrives within `wait`.
    pub fn no_close_within(&self, wait: Duration) {
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            if let Some(Ev::Close { id, code, reason }) = self.try_next(left) {
                panic!("unexpected on_close of {id:?}: {code} {reason:?}");
            }
        }
    }

    /// Everything already reported, without waiting.
    pub fn drain_now(&self) -> Vec<Ev> {
        self.rx.try_iter().collect()
    }
}

// ---- payloads ----------------------------------------------------------------------

/// `len` pseudo-random bytes determined by `seed` (xorshift64*).
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = vec![0u8; len];
    let mut chunks = out.chunks_exact_mut(8);
    for c in &mut chunks {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        c.copy_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b = (x >> (8 * i)) as u8;
    }
    out
}

/// Valid UTF-8 of exactly `len` bytes mixing 1- to 4-byte characters.
pub fn text_pattern(len: usize) -> String {
    const CHARS: [char; 6] = ['a', 'é', '€', '😀', 'Z', 'ж'];
    let mut s = String::with_capacity(len);
    let mut i = 0;
    while s.len() < len {
        let c = CHARS[i % CHARS.len()];
        i += 1;
        if s.len() + c.len_utf8() <= len {
            s.push(c);
        } else {
            s.push('x');
        }
    }
    assert_eq!(s.len(), len);
    s
}

// ---- tungstenite client ------------------------------------------------------------

pub type Client = tungstenite::WebSocket<Tcp>;

/// A blocking TCP stream whose reads and writes retry `EINTR`.
///
/// A socket with `SO_RCVTIMEO` returns `EINTR` rather than restarting when the thread is
/// stopped and continued (a debugger, a cgroup freeze of the CI container); tungstenite
/// treats that as a failed handshake. The server never sees any of this, so the tests
/// must not either.
pub struct Tcp(pub TcpStream);

impl Read for Tcp {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            match self.0.read(buf) {
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                other => return other,
            }
        }
    }
}

impl Write for Tcp {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        loop {
            match self.0.write(buf) {
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                other => return other,
            }
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

impl std::ops::Deref for Tcp {
    type Target = TcpStream;
    fn deref(&self) -> &TcpStream {
        &self.0
    }
}

impl std::ops::DerefMut for Tcp {
    fn deref_mut(&mut self) -> &mut TcpStream {
        &mut self.0
    }
}

/// A TCP connection to `addr` with read and write timeouts.
pub fn tcp(addr: SocketAddr) -> Tcp {
    let stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(READ_TIMEOUT)).unwrap();
    stream.set_nodelay(true).unwrap();
    Tcp(stream)
}

/// A tungstenite client on `path`, accepting messages up to 64 MiB.
pub fn connect(addr: SocketAddr, path: &str) -> Client {
    let config = WebSocketConfig::default()
        .max_message_size(Some(64 << 20))
        .max_frame_size(Some(64 << 20));
    let (ws, response) = tungstenite::client::client_with_config(
        format!("ws://{addr}{path}"),
        tcp(addr),
        Some(config),
    )
    .expect("handshake");
    assert_eq!(response.status(), 101);
    ws
}

/// A tungstenite client offering `protocols`; returns the protocol the server chose.
pub fn connect_with_protocols(addr: SocketAddr, protocols: &str) -> (Client, Option<String>) {
    let mut request = format!("ws://{addr}/").into_client_request().unwrap();
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", protocols.parse().unwrap());
    let (ws, response) = tungstenite::client(request, tcp(addr)).expect("handshake");
    let chosen = response
        .headers()
        .get("Sec-WebSocket-Protocol")
        .map(|v| v.to_str().unwrap().to_owned());
    (ws, chosen)
}

/// The next data message (pings and pongs are skipped; tungstenite answers pings).
pub fn read_data(ws: &mut Client) -> TMessage {
    loop {
        match ws.read().expect("read a message") {
            TMessage::Ping(_) | TMessage::Pong(_) => continue,
            m => return m,
        }
    }
}

/// Reads until the server's close frame; returns its code and reason. tungstenite queues
/// the answering close, sent by the next read or flush.
pub fn read_close(ws: &mut Client) -> (u16, String) {
    loop {
        match ws.read().expect("read until the close frame") {
            TMessage::Close(Some(frame)) => {
                return (u16::from(frame.code), frame.reason.to_string());
            }
            TMessage::Close(None) => return (1005, String::new()),
            TMessage::Ping(_) | TMessage::Pong(_) => continue,
            other => panic!("expected a close frame, got {}", describe(&other)),
        }
    }
}

/// Completes the close handshake after [`read_close`]: flushes our answer, then expects the
/// server to close the TCP connection.
pub fn finish_close(ws: &mut Client) {
    match ws.read() {
        Err(tungstenite::Error::ConnectionClosed) => {}
        Err(e) => panic!("expected the connection to close cleanly, got {e}"),
        Ok(m) => panic!("expected the connection to close, got {}", describe(&m)),
    }
}

/// A short description of a message (payloads can be megabytes).
pub fn describe(m: &TMessage) -> String {
    match m {
        TMessage::Text(t) if t.len() > 64 => format!("Text({} bytes)", t.len()),
        TMessage::Binary(b) if b.len() > 64 => format!("Binary({} bytes)", b.len()),
        other => format!("{other:?}"),
    }
}

// ---- raw client --------------------------------------------------------------------

pub const OP_CONT: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

/// A frame from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub fin: bool,
    pub opcode: u8,
    pub payload: Vec<u8>,
}

impl Frame {
    /// A close frame's code and reason (`None` for an empty payload).
    pub fn close(&self) -> Option<(u16, String)> {
        assert_eq!(
            self.opcode, OP_CLOSE,
            "expected a close frame, got {self:?}"
        );
        if self.payload.is_empty() {
            return None;
        }
        assert!(self.payload.len() >= 2, "close payload of one byte");
        let code = u16::from_be_bytes([self.payload[0], self.payload[1]]);
        let reason = String::from_utf8(self.payload[2..].to_vec()).expect("UTF-8 reason");
        Some((code, reason))
    }
}

/// An HTTP response head (and body, by Content-Length).
#[derive(Debug, Clone)]
pub struct HttpHead {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpHead {
    /// A header's value (name compared case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// The mask key raw clients use (nonzero bytes, so unmasking is exercised).
pub const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// Encodes a client frame: `fin`, `opcode`, masked with `mask` (None: unmasked, a
/// protocol violation from a client).
pub fn encode(fin: bool, opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 14);
    out.push(if fin { 0x80 } else { 0 } | opcode);
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => out.push(mask_bit | n as u8),
        n if n <= 0xffff => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    match mask {
        Some(key) => {
            out.extend_from_slice(&key);
            let start = out.len();
            out.extend_from_slice(payload);
            apply_mask(&mut out[start..], key);
        }
        None => out.extend_from_slice(payload),
    }
    out
}

/// XORs `buf` with the repeating `key`, eight bytes at a time.
pub fn apply_mask(buf: &mut [u8], key: [u8; 4]) {
    let k = u64::from_ne_bytes([
        key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3],
    ]);
    let mut chunks = buf.chunks_exact_mut(8);
    for c in &mut chunks {
        let v = u64::from_ne_bytes(c.try_into().unwrap()) ^ k;
        c.copy_from_slice(&v.to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= key[i % 4];
    }
}

/// A close frame payload.
pub fn close_payload(code: u16, reason: &[u8]) -> Vec<u8> {
    let mut p = code.to_be_bytes().to_vec();
    p.extend_from_slice(reason);
    p
}

/// A client that speaks the protocol by hand over a blocking socket with timeouts.
pub struct Raw {
    pub stream: Tcp,
    /// Bytes read but not consumed yet.
    pending: Vec<u8>,
}

/// A fixed, valid Sec-WebSocket-Key.
pub const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// An upgrade request for `path` with extra header lines (each ending in CRLF).
pub fn upgrade_request(addr: SocketAddr, path: &str, extra: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

impl Raw {
    /// A TCP connection, no handshake yet.
    pub fn tcp(addr: SocketAddr) -> Raw {
        Raw {
            stream: tcp(addr),
            pending: Vec::new(),
        }
    }

    /// A client over a stream connected elsewhere (with socket options of its own).
    pub fn from_stream(stream: TcpStream) -> Raw {
        Raw {
            stream: Tcp(stream),
            pending: Vec::new(),
        }
    }

    /// Puts bytes read from `stream` directly back in front of what is parsed next.
    pub fn unread(&mut self, mut bytes: Vec<u8>) {
        bytes.extend_from_slice(&self.pending);
        self.pending = bytes;
    }

    /// Connects and completes the handshake on `/`, checking the 101 response.
    pub fn open(addr: SocketAddr) -> Raw {
        let mut raw = Raw::tcp(addr);
        raw.write(upgrade_request(addr, "/", "").as_bytes());
        let head = raw.read_head();
        assert_101(&head, KEY);
        raw
    }

    pub fn write(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write to the server");
    }

    /// Writes a masked frame.
    pub fn send(&mut self, fin: bool, opcode: u8, payload: &[u8]) {
        self.write(&encode(fin, opcode, payload, Some(MASK)));
    }

    /// Writes a masked close frame with `code` and `reason`.
    pub fn send_close(&mut self, code: u16, reason: &str) {
        self.send(true, OP_CLOSE, &close_payload(code, reason.as_bytes()));
    }

    fn fill(&mut self) -> usize {
        let mut buf = [0u8; 64 << 10];
        loop {
            match self.stream.read(&mut buf) {
                Ok(n) => {
                    self.pending.extend_from_slice(&buf[..n]);
                    return n;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    panic!("read timed out after {READ_TIMEOUT:?} (server silent)")
                }
                Err(e) => panic!("read failed: {e}"),
            }
        }
    }

    fn need(&mut self, n: usize) {
        while self.pending.len() < n {
            if self.fill() == 0 {
                panic!(
                    "connection closed by the server with {} of {n} bytes read",
                    self.pending.len()
                );
            }
        }
    }

    /// Reads an HTTP response head (and its body, by Content-Length).
    pub fn read_head(&mut self) -> HttpHead {
        let end = loop {
            if let Some(i) = self.pending.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            if self.fill() == 0 {
                panic!(
                    "connection closed before a response head: {:?}",
                    String::from_utf8_lossy(&self.pending)
                );
            }
        };
        let head = String::from_utf8(self.pending[..end].to_vec()).expect("ASCII head");
        self.pending.drain(..end);
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap();
        let mut parts = status_line.splitn(3, ' ');
        assert_eq!(
            parts.next(),
            Some("HTTP/1.1"),
            "status line {status_line:?}"
        );
        let status: u16 = parts.next().unwrap().parse().expect("status code");
        let headers: Vec<(String, String)> = lines
            .filter(|l| !l.is_empty())
            .map(|l| {
                let (k, v) = l.split_once(':').expect("header line");
                (k.trim().to_owned(), v.trim().to_owned())
            })
            .collect();
        let mut head = HttpHead {
            status,
            headers,
            body: Vec::new(),
        };
        if status != 101 {
            let len: usize = head
                .header("Content-Length")
                .map(|v| v.parse().expect("Content-Length"))
                .unwrap_or(0);
            self.need(len);
            head.body = self.pending.drain(..len).collect();
        }
        head
    }

    /// Reads one frame from the server, checking it is unmasked with RSV bits clear.
    pub fn read_frame(&mut self) -> Frame {
        let (rsv, frame) = self.read_frame_rsv();
        assert_eq!(rsv, 0, "RSV bits set by the server");
        frame
    }

    /// Reads one frame from the server, checking it is unmasked; returns its RSV bits
    /// (RSV1 = 4, for permessage-deflate) with it.
    pub fn read_frame_rsv(&mut self) -> (u8, Frame) {
        self.need(2);
        let b0 = self.pending[0];
        let b1 = self.pending[1];
        let rsv = (b0 >> 4) & 0b111;
        assert_eq!(b1 & 0x80, 0, "server frames are not masked");
        let (len, header) = match b1 & 0x7f {
            126 => {
                self.need(4);
                (
                    u16::from_be_bytes([self.pending[2], self.pending[3]]) as usize,
                    4,
                )
            }
            127 => {
                self.need(10);
                (
                    u64::from_be_bytes(self.pending[2..10].try_into().unwrap()) as usize,
                    10,
                )
            }
            n => (n as usize, 2),
        };
        self.need(header + len);
        let payload = self.pending[header..header + len].to_vec();
        self.pending.drain(..header + len);
        let frame = Frame {
            fin: b0 & 0x80 != 0,
            opcode: b0 & 0x0f,
            payload,
        };
        (rsv, frame)
    }

    /// Reads the next frame, skipping pings (unanswered).
    pub fn read_frame_skip_pings(&mut self) -> Frame {
        loop {
            let f = self.read_frame();
            if f.opcode != OP_PING {
                return f;
            }
        }
    }

    /// Expects a close frame; returns its code and reason (None: empty payload).
    pub fn read_close(&mut self) -> Option<(u16, String)> {
        let f = self.read_frame_skip_pings();
        assert!(f.fin, "close frames are not fragmented");
        f.close()
    }

    /// Expects the server to close the TCP connection (EOF, or a reset) with nothing more.
    pub fn expect_closed(&mut self) {
        let mut buf = [0u8; 1024];
        loop {
            if !self.pending.is_empty() {
                panic!(
                    "expected the connection to close, got {} more bytes: {:?}",
                    self.pending.len(),
                    &self.pending[..self.pending.len().min(32)]
                );
            }
            match self.stream.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => self.pending.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == ErrorKind::ConnectionReset => return,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    panic!("the server did not close the connection within {READ_TIMEOUT:?}")
                }
                Err(e) => panic!("read failed: {e}"),
            }
        }
    }

    /// Expects a clean end: FIN, not a reset, with nothing more.
    pub fn expect_eof(&mut self) {
        let mut buf = [0u8; 1024];
        assert!(
            self.pending.is_empty(),
            "unread bytes before EOF: {:?}",
            self.pending
        );
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => panic!("expected EOF, got {n} more bytes: {:?}", &buf[..n.min(32)]),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => panic!("expected EOF, got {e}"),
            }
        }
    }

    /// Unconsumed bytes already read.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }
}

/// Checks a 101 response to `key`: status, Upgrade, Connection and the accept value.
pub fn assert_101(head: &HttpHead, key: &str) {
    assert_eq!(head.status, 101, "response {head:?}");
    assert!(
        head.header("Upgrade")
            .is_some_and(|v| v.eq_ignore_ascii_case("websocket")),
        "Upgrade header in {head:?}"
    );
    assert!(
        head.header("Connection")
            .is_some_and(|v| v.to_ascii_lowercase().contains("upgrade")),
        "Connection header in {head:?}"
    );
    assert_eq!(
        head.header("Sec-WebSocket-Accept"),
        Some(tungstenite::handshake::derive_accept_key(key.as_bytes()).as_str()),
        "accept value in {head:?}"
    );
}

// ---- python ------------------------------------------------------------------------

/// Whether the Python tests can run: `python3` with the `websockets` module. Missing
/// either fails the test with what to install, unless `THRONG_SKIP_PYTHON=1`, in which
/// case a loud line says the test is skipped and `false` is returned.
pub fn python_available(test: &str) -> bool {
    let probe = std::process::Command::new("python3")
        .args([
            "-c",
            "import websockets, sys; print(websockets.__version__)",
        ])
        .output();
    let problem = match probe {
        Ok(out) if out.status.success() => {
            let version = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            let major: u32 = version
                .split('.')
                .next()
                .and_then(|m| m.parse().ok())
                .unwrap_or(0);
            if major >= 15 {
                return true;
            }
            format!(
                "python3 has websockets {version}; these tests need 15 or later (17.x in CI): \
                 `pip install --upgrade websockets`"
            )
        }
        Ok(out) => format!(
            "python3 cannot import websockets: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(e) => format!("python3 cannot be run: {e}"),
    };
    if std::env::var("THRONG_SKIP_PYTHON").as_deref() == Ok("1") {
        // Straight to the process's stderr: the test harness captures print macros of
        // passing tests, and a skip must not pass unnoticed.
        let line =
            format!("!!!!!!!!!! SKIPPED {test}: {problem} (THRONG_SKIP_PYTHON=1) !!!!!!!!!!");
        let _ = writeln!(std::io::stderr(), "\n{line}\n");
        println!("{line}");
        return false;
    }
    panic!(
        "{problem}.\nThe Python interoperability tests need it: `pip install websockets` \
         (or set THRONG_SKIP_PYTHON=1 to skip them explicitly)."
    );
}

// ---- Python websockets peers ----------------------------------------------------

pub const SCRIPT_TIMEOUT: Duration = Duration::from_secs(60);

fn python_script() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/client.py")
}

/// Runs `engine/tests/python/client.py` (Python `websockets`) in `mode` against `addr`; returns its stdout, failing the test
/// with its output if it fails or runs too long.
pub fn run_python_client(addr: SocketAddr, mode: &str) -> String {
    let mut child = std::process::Command::new("python3")
        .arg(python_script())
        .arg(format!("ws://{addr}/echo"))
        .arg(mode)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run python3");
    // Read both pipes on threads so a chatty script cannot block on a full pipe.
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + SCRIPT_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let (out, err) = (out.join().unwrap(), err.join().unwrap());
    match status {
        Some(s) if s.success() => out,
        Some(s) => panic!("python client {mode} failed ({s}):\n{out}\n{err}"),
        None => panic!("python client {mode} ran over {SCRIPT_TIMEOUT:?}:\n{out}\n{err}"),
    }
}
