//! A load thread's connections and its event loop (epoll through mio, edge-triggered).
//!
//! Kept cheap per message so that one load CPU can outrun one server CPU: frames are
//! pre-masked and shared by all connections, a read that returns less than the buffer
//! ends the drain (a stream socket is then empty, and new data raises a new edge), and
//! timestamps are taken only when latency is measured.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token};

use crate::frame::{self, Event, ParseError, Parser};
use crate::source;
use crate::tls::{Stream, Tls};
use crate::upgrade::{Key, Template, check_response};

/// Where a connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// TCP connect in progress.
    Connecting,
    /// Upgrade request sent, waiting for 101.
    Upgrading,
    /// WebSocket open.
    Open,
    /// Gone (closed by either side, or failed).
    Closed,
}

/// A message as the driver sees it.
#[derive(Debug, Clone, Copy)]
pub struct Msg<'a> {
    /// Text or binary.
    pub text: bool,
    /// Payload length.
    pub len: u64,
    /// First payload bytes (up to [`frame::PREFIX`]).
    pub prefix: &'a [u8],
}

/// One client connection.
pub struct Conn {
    stream: Stream,
    /// Where it is.
    pub phase: Phase,
    /// Response head bytes until the 101 is complete.
    head: Vec<u8>,
    parser: Parser,
    /// Bytes the kernel did not take yet, in order.
    out: Vec<u8>,
    /// Send times of messages in flight (only when latency is measured).
    pub sent: VecDeque<Instant>,
    /// Messages received.
    pub received: u64,
    /// Which request it sends (index into the fleet's requests).
    request: u16,
    /// Its own `Sec-WebSocket-Key` and the accept value it expects.
    key: Key,
    /// Caller's label (e.g. publisher or subscriber).
    pub group: u16,
    /// Why it closed, if it failed.
    pub error: Option<String>,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn").finish_non_exhaustive()
    }
}

impl Conn {
    /// Sends a frame (whole, pre-masked). Output never reorders: with bytes already
    /// waiting, the frame joins them.
    pub fn send(&mut self, frame: &[u8]) {
        if self.phase != Phase::Open {
            return;
        }
        if !self.out.is_empty() {
            self.out.extend_from_slice(frame);
            return;
        }
        match write_some(&mut self.stream, frame) {
            Ok(n) if n == frame.len() => {}
            Ok(n) => self.out.extend_from_slice(&frame[n..]),
            Err(e) => self.fail(format!("write: {e}")),
        }
    }

    fn flush(&mut self) {
        // TLS records the socket did not take yet go before any more plaintext.
        if let Err(e) = self.stream.flush_records() {
            return self.fail(format!("write: {e}"));
        }
        if self.out.is_empty() {
            return;
        }
        match write_some(&mut self.stream, &self.out) {
            Ok(n) => {
                self.out.drain(..n);
            }
            Err(e) => self.fail(format!("write: {e}")),
        }
    }

    fn fail(&mut self, why: String) {
        if self.phase != Phase::Closed {
            self.phase = Phase::Closed;
            self.error.get_or_insert(why);
        }
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        reset_on_close(&self.stream);
    }
}

/// Makes the close a reset (`SO_LINGER` 0): no TIME_WAIT is left on either side, so runs
/// that open hundreds of thousands of connections never run out of ports.
fn reset_on_close(stream: &impl AsRawFd) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: valid socket, option value of the size passed.
    unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&raw const linger).cast(),
            size_of::<libc::linger>() as libc::socklen_t,
        )
    };
}

/// Writes what the socket takes now; `Ok(0)` when it is full.
fn write_some(stream: &mut Stream, bytes: &[u8]) -> io::Result<usize> {
    loop {
        match stream.write(bytes) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(0),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// What a scenario does when things happen.
pub trait Driver {
    /// The connection's upgrade completed.
    fn opened(&mut self, _index: usize, _conn: &mut Conn) {}
    /// A message arrived.
    fn message(&mut self, index: usize, conn: &mut Conn, msg: Msg<'_>);
}

/// A driver for phases where messages only need counting (each connection counts its
/// own in [`Conn::received`]).
#[derive(Debug)]
pub struct Count;

impl Driver for Count {
    fn message(&mut self, _: usize, _: &mut Conn, _: Msg<'_>) {}
}

/// How opening a set of connections went ([`Fleet::ramp`]).
#[derive(Debug, Clone)]
pub struct Ramp {
    /// Indices of the connections started (open or not).
    pub range: std::ops::Range<usize>,
    /// Connections that opened.
    pub open: usize,
    /// Connections that did not (including connects that could not even start).
    pub failed: usize,
    /// The first reason one failed.
    pub error: Option<String>,
}

/// A load thread's connections.
pub struct Fleet {
    poll: Poll,
    events: Events,
    /// The connections; a connection's index is its token.
    pub conns: Vec<Conn>,
    buf: Vec<u8>,
    addr: SocketAddr,
    /// A request template per path.
    requests: Vec<(String, Template)>,
    /// The request being sent (a template with a connection's key in it).
    scratch: Vec<u8>,
    /// Makes every connection's key different.
    seed: u64,
    serial: u64,
    pong: Vec<u8>,
    /// Connections whose input was cut short at [`READ_BATCH`] reads.
    again: Vec<usize>,
    /// First source address in the rotation (see [`source::address`]).
    source_offset: usize,
    /// TCP connects started, the index into the source rotation.
    connects: usize,
    /// `wss://`: every connection is a TLS session of this client.
    tls: Option<Tls>,
}

impl std::fmt::Debug for Fleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fleet").finish_non_exhaustive()
    }
}

impl Fleet {
    /// An empty fleet aimed at `addr`.
    pub fn new(addr: SocketAddr) -> io::Result<Fleet> {
        Ok(Fleet {
            poll: Poll::new()?,
            events: Events::with_capacity(4096),
            conns: Vec::new(),
            buf: vec![0; 256 << 10],
            addr,
            requests: Vec::new(),
            scratch: Vec::new(),
            seed: crate::sys::monotonic_ns() ^ (u64::from(std::process::id()) << 40),
            serial: 0,
            pong: Vec::new(),
            again: Vec::new(),
            source_offset: 0,
            connects: 0,
            tls: None,
        })
    }

    /// Starts this fleet's rotation of source addresses at `offset` (load threads and
    /// processes each take their own, so their connections spread over all addresses).
    pub fn with_source_offset(mut self, offset: usize) -> Fleet {
        self.source_offset = offset;
        self
    }

    /// Makes every connection of this fleet a TLS session of `tls` (`None`: plain TCP).
    pub fn with_tls(mut self, tls: Option<Tls>) -> Fleet {
        self.tls = tls;
        self
    }

    /// A TCP connect from the next source address, registered under `token`.
    fn dial(&mut self, token: Token) -> io::Result<Stream> {
        let from = source::address(self.source_offset, self.connects);
        self.connects += 1;
        let tcp = source::connect(self.addr, from)?;
        let mut stream = Stream::new(tcp, self.tls.as_ref())?;
        self.poll.registry().register(
            &mut stream,
            token,
            Interest::READABLE | Interest::WRITABLE,
        )?;
        Ok(stream)
    }

    fn request_for(&mut self, path: &str) -> u16 {
        if let Some(i) = self.requests.iter().position(|(p, _)| p == path) {
            return i as u16;
        }
        let template = Template::new(&self.addr.to_string(), path);
        self.requests.push((path.to_owned(), template));
        (self.requests.len() - 1) as u16
    }

    fn next_key(&mut self) -> Key {
        self.serial += 1;
        Key::new(self.seed ^ self.serial.wrapping_mul(0x9e37_79b9_7f4a_7c15))
    }

    fn connect(&mut self, request: u16, group: u16) -> io::Result<Conn> {
        let stream = self.dial(Token(self.conns.len()))?;
        let mut conn = Conn {
            stream,
            phase: Phase::Connecting,
            head: Vec::new(),
            parser: Parser::default(),
            out: Vec::new(),
            sent: VecDeque::new(),
            received: 0,
            request,
            key: self.next_key(),
            group,
            error: None,
        };
        send_request(&mut conn, &self.requests, &mut self.scratch);
        Ok(conn)
    }

    /// Starts a new connection at the end; returns its index.
    pub fn add(&mut self, path: &str, group: u16) -> io::Result<usize> {
        let request = self.request_for(path);
        let conn = self.connect(request, group)?;
        self.conns.push(conn);
        Ok(self.conns.len() - 1)
    }

    /// Replaces connection `index` with a fresh one to the same path (the old one is
    /// reset).
    pub fn replace(&mut self, index: usize) -> io::Result<()> {
        let stream = self.dial(Token(index))?;
        let key = self.next_key();
        let old = std::mem::replace(&mut self.conns[index].stream, stream);
        let c = &mut self.conns[index];
        c.phase = Phase::Connecting;
        c.key = key;
        c.head.clear();
        c.parser = Parser::default();
        c.out.clear();
        c.sent.clear();
        c.error = None;
        send_request(c, &self.requests, &mut self.scratch);
        reset_on_close(&old);
        drop(old);
        Ok(())
    }

    /// Opens `n` connections to `path`, with at most `window` handshakes in progress at
    /// once (bursts beyond the listen backlog would cost SYN retransmits of a second).
    /// Fails if any does not open within `timeout`.
    pub fn open(
        &mut self,
        path: &str,
        n: usize,
        group: u16,
        window: usize,
        timeout: Duration,
    ) -> io::Result<std::ops::Range<usize>> {
        let r = self.ramp(path, n, group, window, timeout)?;
        if r.failed > 0 {
            return Err(io::Error::other(format!(
                "{} of {n} connections to {path} did not open: {}",
                r.failed,
                r.error.as_deref().unwrap_or("closed")
            )));
        }
        Ok(r.range)
    }

    /// Opens `n` connections to `path` like [`Fleet::open`], but counts the ones that fail
    /// (refused, reset, not upgraded, still opening at `timeout`) instead of giving up.
    /// They stay in the fleet, closed.
    pub fn ramp(
        &mut self,
        path: &str,
        n: usize,
        group: u16,
        window: usize,
        timeout: Duration,
    ) -> io::Result<Ramp> {
        let first = self.conns.len();
        let deadline = Instant::now() + timeout;
        let window = window.max(1);
        let (mut started, mut refused) = (0, 0);
        let mut error = None;
        loop {
            let mut opening = self.conns[first..]
                .iter()
                .filter(|c| matches!(c.phase, Phase::Connecting | Phase::Upgrading))
                .count();
            while opening < window && started < n {
                started += 1;
                match self.add(path, group) {
                    Ok(_) => opening += 1,
                    Err(e) => {
                        refused += 1;
                        error.get_or_insert_with(|| format!("connect: {e}"));
                    }
                }
            }
            if started == n && opening == 0 {
                break;
            }
            if Instant::now() >= deadline {
                for c in &mut self.conns[first..] {
                    if matches!(c.phase, Phase::Connecting | Phase::Upgrading) {
                        let _ = c.stream.shutdown(std::net::Shutdown::Both);
                        c.fail(format!("not open after {timeout:?}"));
                    }
                }
                break;
            }
            self.turn(Some(Duration::from_millis(5)), &mut Count)?;
        }
        let conns = &self.conns[first..];
        let open = conns.iter().filter(|c| c.phase == Phase::Open).count();
        Ok(Ramp {
            range: first..self.conns.len(),
            open,
            failed: refused + conns.len() - open,
            error: error.or_else(|| conns.iter().find_map(|c| c.error.clone())),
        })
    }

    /// Waits for events (at most `timeout`) and handles them: connects complete, requests
    /// go out, responses and frames are read, pings answered, queued output written.
    pub fn turn(
        &mut self,
        timeout: Option<Duration>,
        driver: &mut impl Driver,
    ) -> io::Result<usize> {
        // Connections cut short last time still have input: do not sleep on them.
        let timeout = if self.again.is_empty() {
            timeout
        } else {
            Some(Duration::ZERO)
        };
        match self.poll.poll(&mut self.events, timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(0),
            Err(e) => return Err(e),
        }
        let mut n = 0;
        let Fleet {
            events,
            conns,
            buf,
            requests,
            scratch,
            pong,
            again,
            ..
        } = self;
        // They go first; edge-triggered epoll would not report their input again.
        let mut cut = std::mem::take(again);
        for index in cut.drain(..) {
            if let Some(conn) = conns.get_mut(index)
                && readable(index, conn, buf, pong, driver)
            {
                again.push(index);
            }
        }
        for ev in events.iter() {
            n += 1;
            let index = ev.token().0;
            let Some(conn) = conns.get_mut(index) else {
                continue;
            };
            if ev.is_writable() {
                writable(conn, requests, scratch);
            }
            if (ev.is_readable() || ev.is_read_closed() || ev.is_error())
                && readable(index, conn, buf, pong, driver)
            {
                again.push(index);
            }
        }
        if again.is_empty() {
            *again = cut; // keep the allocation
        }
        Ok(n)
    }

    /// Waits for events and reports which connections became readable, without reading
    /// them: the cheapest way to learn when a message has reached each one. Read them
    /// afterwards with [`Fleet::read_now`].
    pub fn ready(
        &mut self,
        timeout: Option<Duration>,
        mut on_readable: impl FnMut(usize),
    ) -> io::Result<()> {
        match self.poll.poll(&mut self.events, timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(()),
            Err(e) => return Err(e),
        }
        for ev in self.events.iter() {
            if ev.is_readable() {
                on_readable(ev.token().0);
            }
        }
        Ok(())
    }

    /// Reads connection `index` now, whether or not an event said so.
    pub fn read_now(&mut self, index: usize, driver: &mut impl Driver) {
        let Fleet {
            conns,
            buf,
            pong,
            again,
            ..
        } = self;
        if readable(index, &mut conns[index], buf, pong, driver) {
            again.push(index);
        }
    }

    /// Connections that are open.
    pub fn open_count(&self) -> usize {
        self.conns.iter().filter(|c| c.phase == Phase::Open).count()
    }

    /// The first failure among the connections, if any.
    pub fn first_error(&self) -> Option<String> {
        self.conns.iter().find_map(|c| c.error.clone())
    }
}

fn writable(conn: &mut Conn, requests: &[(String, Template)], scratch: &mut Vec<u8>) {
    match conn.phase {
        Phase::Connecting => {
            if let Ok(Some(e)) | Err(e) = conn.stream.take_error() {
                return conn.fail(format!("connect: {e}"));
            }
            send_request(conn, requests, scratch);
        }
        Phase::Upgrading | Phase::Open => conn.flush(),
        Phase::Closed => {}
    }
}

/// Sends the upgrade request if the connect has completed (on loopback it usually has
/// when `connect` returns, so this is tried at once: no wait for `EPOLLOUT`); a socket
/// still connecting refuses the write and the connection waits for `EPOLLOUT`.
fn send_request(conn: &mut Conn, requests: &[(String, Template)], scratch: &mut Vec<u8>) {
    let req = requests[conn.request as usize].1.fill(&conn.key, scratch);
    match write_some(&mut conn.stream, req) {
        Ok(0) => {}
        Ok(n) => {
            conn.phase = Phase::Upgrading;
            conn.out.extend_from_slice(&req[n..]);
        }
        Err(e) => conn.fail(format!("write request: {e}")),
    }
}

/// Reads per readiness event before other connections get a turn; a connection the
/// server floods is put back in line (see [`Fleet::turn`]).
const READ_BATCH: usize = 16;

/// Reads and handles what the connection has; true when it stopped at [`READ_BATCH`]
/// with more possibly waiting.
fn readable(
    index: usize,
    conn: &mut Conn,
    buf: &mut [u8],
    pong: &mut Vec<u8>,
    driver: &mut impl Driver,
) -> bool {
    for _ in 0..READ_BATCH {
        if conn.phase == Phase::Closed || conn.phase == Phase::Connecting {
            return false;
        }
        let n = match conn.stream.read(buf) {
            Ok(0) => {
                conn.fail("closed by server".into());
                return false;
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                conn.fail(format!("read: {e}"));
                return false;
            }
        };
        let mut data = &buf[..n];
        if conn.phase == Phase::Upgrading {
            match upgrade_response(conn, data) {
                Ok(Some(rest)) => {
                    data = &data[data.len() - rest..];
                    conn.phase = Phase::Open;
                    driver.opened(index, conn);
                }
                Ok(None) => data = &[],
                Err(why) => {
                    conn.fail(why);
                    return false;
                }
            }
        }
        if !data.is_empty()
            && let Err(e) = frames(index, conn, data, pong, driver)
        {
            conn.fail(format!("bad frame from server: {e:?}"));
            return false;
        }
        if n < buf.len() {
            return false;
        }
    }
    true
}

/// Checks the response head (accumulated across reads when it comes in pieces);
/// `Ok(Some(rest))`: a valid 101, with `rest` bytes of `data` that follow it.
fn upgrade_response(conn: &mut Conn, data: &[u8]) -> Result<Option<usize>, String> {
    if conn.head.is_empty() {
        return match check_response(data, &conn.key)? {
            Some(n) => Ok(Some(data.len() - n)),
            None => {
                conn.head.extend_from_slice(data);
                Ok(None)
            }
        };
    }
    let before = conn.head.len();
    conn.head.extend_from_slice(data);
    match check_response(&conn.head, &conn.key)? {
        Some(n) => {
            conn.head = Vec::new();
            Ok(Some(data.len() - (n - before)))
        }
        None => Ok(None),
    }
}

fn frames(
    index: usize,
    conn: &mut Conn,
    data: &[u8],
    pong: &mut Vec<u8>,
    driver: &mut impl Driver,
) -> Result<(), ParseError> {
    // The parser is moved out while it runs, so its callback can hand the connection to
    // the driver (which may send on it).
    let mut parser = std::mem::take(&mut conn.parser);
    let result = parser.feed(data, &mut |ev| match ev {
        Event::Message { text, len, prefix } => {
            conn.received += 1;
            driver.message(index, conn, Msg { text, len, prefix });
        }
        Event::Ping(payload) => {
            *pong = frame::masked_frame(frame::PONG, payload);
            conn.send(pong);
        }
        Event::Close => {
            conn.send(&frame::close_frame());
            conn.fail("server closed the WebSocket".into());
        }
    });
    conn.parser = parser;
    result
}
