//! `throng-load hold`: open N connections, keep them (answering pings), time a broadcast
//! to all of them, close them cleanly. Driven by commands on stdin; reports JSON lines on
//! stdout. One process holds what its RLIMIT_NOFILE allows; callers spread larger counts
//! over several processes with distinct `--source-offset`s.

use std::io::{self, BufRead, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token, Waker};
use socket2::{Domain, Socket, Type};

use crate::client::{Conn, State};

const STDIN: Token = Token(usize::MAX);

pub struct Options {
    pub addr: SocketAddr,
    pub host: String,
    pub path: String,
    pub connections: usize,
    pub source_offset: usize,
    pub open_window: usize,
    pub open_timeout: Duration,
}

/// CLOCK_MONOTONIC in nanoseconds: comparable across processes on one host.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer for the call.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn emit(line: String) {
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// The source address for connection `i`: 127.0.0.2 ..= 127.0.0.250, so that no single
/// source address runs out of ephemeral ports.
fn source(offset: usize, i: usize) -> SocketAddr {
    let host = 2 + ((offset * 7 + i) % 249) as u8;
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, host)), 0)
}

fn connect(addr: SocketAddr, from: SocketAddr) -> io::Result<mio::net::TcpStream> {
    let s = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    s.set_nonblocking(true)?;
    s.set_tcp_nodelay(true)?;
    if addr.ip().is_loopback() {
        s.bind(&from.into())?;
    }
    match s.connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    Ok(mio::net::TcpStream::from_std(s.into()))
}

struct Hold {
    poll: Poll,
    conns: Vec<Option<Conn>>,
    opts: Options,
    buf: Vec<u8>,
    started: usize,
    open: usize,
    handshaking: usize,
    failed: usize,
    first_error: Option<String>,
    messages: u64,
    receivers: usize,
    first_ns: u64,
    last_ns: u64,
    got: Vec<bool>,
    pings: u64,
    closed_by_server: u64,
    clean: usize,
}

impl Hold {
    fn fail(&mut self, i: usize, e: io::Error) {
        if let Some(c) = self.conns[i].take() {
            let _ = self.poll.registry().deregister(&mut { c }.stream);
        }
        self.failed += 1;
        self.first_error.get_or_insert_with(|| e.to_string());
    }

    fn start_more(&mut self) {
        while self.started < self.opts.connections && self.handshaking < self.opts.open_window {
            let i = self.started;
            self.started += 1;
            match connect(self.opts.addr, source(self.opts.source_offset, i)) {
                Ok(mut stream) => {
                    let interest = Interest::READABLE | Interest::WRITABLE;
                    if let Err(e) = self
                        .poll
                        .registry()
                        .register(&mut stream, Token(i), interest)
                    {
                        self.failed += 1;
                        self.first_error.get_or_insert_with(|| e.to_string());
                        continue;
                    }
                    self.conns[i] = Some(Conn::new(stream, (i as u32).wrapping_mul(2654435761)));
                    self.handshaking += 1;
                }
                Err(e) => {
                    self.failed += 1;
                    self.first_error.get_or_insert_with(|| e.to_string());
                }
            }
        }
    }

    /// One readiness event for connection `i`.
    fn event(&mut self, i: usize, readable: bool, writable: bool, now_ns: u64) {
        let Some(c) = self.conns[i].as_mut() else {
            return;
        };
        let before = c.state;
        let mut result = Ok(());
        if writable {
            result = if c.state == State::Connecting {
                c.connected(&self.opts.host, &self.opts.path)
            } else {
                c.flush()
            };
        }
        let mut seen = Default::default();
        if result.is_ok() && readable && c.state != State::Connecting {
            match c.readable(&mut self.buf) {
                Ok(s) => seen = s,
                Err(e) => result = Err(e),
            }
        }
        let after = c.state;
        if let Err(e) = result {
            if matches!(before, State::Connecting | State::Handshake) {
                self.handshaking -= 1;
            } else if before == State::Open {
                self.open -= 1;
                self.closed_by_server += 1;
            }
            return self.fail(i, e);
        }
        let seen: crate::client::Seen = seen;
        self.pings += seen.pings as u64;
        if seen.messages > 0 {
            self.messages += seen.messages as u64;
            if !self.got[i] {
                self.got[i] = true;
                self.receivers += 1;
                if self.first_ns == 0 {
                    self.first_ns = now_ns;
                }
                self.last_ns = now_ns;
            }
        }
        if seen.closed_by_server {
            self.closed_by_server += 1;
        }
        if matches!(before, State::Connecting | State::Handshake) && after == State::Open {
            self.handshaking -= 1;
            self.open += 1;
        }
        if matches!(before, State::Connecting | State::Handshake)
            && matches!(after, State::Closing | State::Done { .. })
        {
            self.handshaking -= 1;
        }
        if before == State::Open && after != State::Open {
            self.open -= 1;
        }
        if let State::Done { clean } = after {
            if clean && !seen.closed_by_server {
                self.clean += 1;
            }
            if let Some(mut c) = self.conns[i].take() {
                let _ = self.poll.registry().deregister(&mut c.stream);
            }
        }
    }

    fn turn(&mut self, events: &mut Events, wait: Duration) -> io::Result<bool> {
        match self.poll.poll(events, Some(wait)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(false),
            Err(e) => return Err(e),
        }
        let now = monotonic_ns();
        let mut stdin = false;
        for ev in events.iter() {
            if ev.token() == STDIN {
                stdin = true;
                continue;
            }
            let (r, w) = (
                ev.is_readable() || ev.is_read_closed() || ev.is_error(),
                ev.is_writable(),
            );
            self.event(ev.token().0, r, w, now);
        }
        Ok(stdin)
    }

    fn live(&self) -> usize {
        self.conns.iter().filter(|c| c.is_some()).count()
    }
}

/// Runs the hold until `close` (or EOF) on stdin.
pub fn run(opts: Options) -> io::Result<()> {
    let poll = Poll::new()?;
    let waker = std::sync::Arc::new(Waker::new(poll.registry(), STDIN)?);
    let (tx, commands) = mpsc::channel::<String>();
    {
        let waker = waker.clone();
        std::thread::spawn(move || {
            for line in io::stdin().lock().lines() {
                let Ok(line) = line else { break };
                if tx.send(line.trim().to_string()).is_err() {
                    return;
                }
                let _ = waker.wake();
            }
            let _ = tx.send("close".into());
            let _ = waker.wake();
        });
    }
    let n = opts.connections;
    let mut h = Hold {
        poll,
        conns: (0..n).map(|_| None).collect(),
        buf: vec![0; 64 << 10],
        started: 0,
        open: 0,
        handshaking: 0,
        failed: 0,
        first_error: None,
        messages: 0,
        receivers: 0,
        first_ns: 0,
        last_ns: 0,
        got: vec![false; n],
        pings: 0,
        closed_by_server: 0,
        clean: 0,
        opts,
    };
    let mut events = Events::with_capacity(4096);

    // Ramp.
    let t0 = Instant::now();
    let deadline = t0 + h.opts.open_timeout;
    let mut last_progress = Instant::now();
    let mut pending: Vec<String> = Vec::new();
    while h.open + h.failed < n && Instant::now() < deadline {
        h.start_more();
        if h.turn(&mut events, Duration::from_millis(50))? {
            pending.extend(commands.try_iter());
        }
        if last_progress.elapsed() >= Duration::from_millis(500) {
            last_progress = Instant::now();
            emit(format!(
                "{{\"event\":\"progress\",\"connected\":{},\"failed\":{}}}",
                h.open, h.failed
            ));
        }
    }
    let timed_out = n - h.open - h.failed;
    if timed_out > 0 {
        h.failed += timed_out;
        h.first_error
            .get_or_insert_with(|| format!("{timed_out} handshakes not done in time"));
    }
    let error = h
        .first_error
        .as_ref()
        .map(|e| format!(",\"error\":{:?}", e))
        .unwrap_or_default();
    emit(format!(
        "{{\"event\":\"ramped\",\"connected\":{},\"failed\":{},\"seconds\":{:.3}{error}}}",
        h.open,
        h.failed,
        t0.elapsed().as_secs_f64()
    ));

    // Hold, serving commands.
    let mut expecting: Option<Instant> = None;
    loop {
        for cmd in pending
            .drain(..)
            .chain(commands.try_iter())
            .collect::<Vec<_>>()
        {
            match cmd.as_str() {
                "expect-broadcast" => expecting = Some(Instant::now() + Duration::from_secs(60)),
                "stats" => emit(format!(
                    "{{\"event\":\"stats\",\"open\":{},\"pings_answered\":{},\"closed_by_server\":{}}}",
                    h.open, h.pings, h.closed_by_server
                )),
                "close" => return close(&mut h, &mut events),
                "" => {}
                other => eprintln!("throng-load hold: unknown command {other:?}"),
            }
        }
        if let Some(until) = expecting
            && (h.receivers >= h.open.max(1) || Instant::now() >= until)
        {
            expecting = None;
            emit(format!(
                "{{\"event\":\"broadcast\",\"received\":{},\"first_ns\":{},\"last_ns\":{}}}",
                h.receivers, h.first_ns, h.last_ns
            ));
        }
        h.turn(&mut events, Duration::from_millis(100))?;
    }
}

fn close(h: &mut Hold, events: &mut Events) -> io::Result<()> {
    for i in 0..h.conns.len() {
        if let Some(c) = h.conns[i].as_mut()
            && c.close().is_err()
        {
            h.conns[i] = None;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while h.live() > 0 && Instant::now() < deadline {
        h.turn(events, Duration::from_millis(50))?;
    }
    // Every connection asked for and not closed with a full close handshake is a failure.
    let failures = h.opts.connections - h.clean;
    emit(format!(
        "{{\"event\":\"closed\",\"closed_cleanly\":{},\"close_failures\":{}}}",
        h.clean, failures
    ));
    Ok(())
}
