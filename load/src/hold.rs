//! `throng-load hold`: open N connections, keep them (answering pings), time a broadcast
//! to all of them, close them cleanly. Driven by commands on stdin; reports JSON lines on
//! stdout. One process holds what its RLIMIT_NOFILE allows; callers spread larger counts
//! over several processes with distinct `--source-offset`s.
//!
//! Accounting: a connection that fails to open (refused, reset, closed or not upgraded
//! during the handshake, or still opening at `--open-timeout`) counts in `failed`; one the
//! server closes or resets while held counts in `closed_by_server`; `closed` reports as
//! clean only connections that finished the close handshake we started (both close frames,
//! then the server's FIN), and everything else asked for as a failure. `broadcast`
//! counts the connections that had a data message since the ramp ended or since the
//! previous `broadcast` report, so the message may arrive before the command is read.

use std::io::{self, BufRead, Write};
use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token, Waker};
use serde_json::{Value, json};

use crate::client::{Conn, State};
use crate::source;
use crate::sys::monotonic_ns;
use crate::tls::{Stream, Tls};

const STDIN: Token = Token(usize::MAX);

/// How long `expect-broadcast` waits for every connection to have a message.
const BROADCAST_WAIT: Duration = Duration::from_secs(60);
/// The longest `close` waits in all, progress or not.
const CLOSE_LIMIT: Duration = Duration::from_secs(600);
/// Least time between two `progress` lines.
const PROGRESS_EVERY: Duration = Duration::from_millis(500);

/// What `hold` was asked to do.
#[derive(Debug, Clone)]
pub struct Options {
    /// The server.
    pub addr: SocketAddr,
    /// The `Host` header.
    pub host: String,
    /// The request path.
    pub path: String,
    /// Connections to open.
    pub connections: usize,
    /// Where this process starts in the rotation of source addresses.
    pub source_offset: usize,
    /// Handshakes in progress at once while ramping.
    pub open_window: usize,
    /// Longest ramp; connections still opening then count as failed.
    pub open_timeout: Duration,
    /// How long `close` waits for the close handshakes while none of them finishes
    /// (`--close-stall`, default 30 s). It waits as long as they keep finishing: on a
    /// loaded host 100 processes sharing two CPUs take longer than any fixed wait to close
    /// a million connections. It does not wait for a server that stopped answering.
    pub close_stall: Duration,
    /// `wss://`: every connection is a TLS session of this client.
    pub tls: Option<Tls>,
}

fn emit(v: Value) {
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "{v}");
    let _ = out.flush();
}

struct Hold {
    poll: Poll,
    /// Connection `i` has token `i`; `None` once it failed or ended.
    conns: Vec<Option<Conn>>,
    opts: Options,
    /// Distinguishes this process's handshake keys from another's.
    seed: u64,
    buf: Vec<u8>,
    started: usize,
    handshaking: usize,
    open: usize,
    failed: usize,
    first_error: Option<String>,
    pings: u64,
    closed_by_server: u64,
    clean: usize,
    /// Connections with a data message since the last `broadcast` report.
    got: Vec<bool>,
    receivers: usize,
    first_ns: u64,
    last_ns: u64,
}

impl Hold {
    fn note_error(&mut self, e: impl ToString) {
        if self.first_error.is_none() {
            self.first_error = Some(e.to_string());
        }
    }

    /// Forgets connection `i` (its socket is closed).
    fn drop_conn(&mut self, i: usize) {
        if let Some(mut c) = self.conns[i].take() {
            let _ = self.poll.registry().deregister(&mut c.stream);
        }
    }

    fn start_more(&mut self) {
        while self.started < self.opts.connections && self.handshaking < self.opts.open_window {
            let i = self.started;
            self.started += 1;
            let from = source::address(self.opts.source_offset, i);
            let tls = self.opts.tls.as_ref();
            let opened = source::connect(self.opts.addr, from).and_then(|tcp| {
                let mut stream = Stream::new(tcp, tls)?;
                let interest = Interest::READABLE | Interest::WRITABLE;
                self.poll
                    .registry()
                    .register(&mut stream, Token(i), interest)?;
                Ok(stream)
            });
            match opened {
                Ok(stream) => {
                    let mut c = Conn::new(stream, self.seed ^ i as u64);
                    // Most connects have completed by now: the request goes at once.
                    if let Err(e) = c.send_request(&self.opts.host, &self.opts.path) {
                        let _ = self.poll.registry().deregister(&mut c.stream);
                        self.failed += 1;
                        self.note_error(format!("connect from {from}: {e}"));
                        continue;
                    }
                    self.conns[i] = Some(c);
                    self.handshaking += 1;
                }
                Err(e) => {
                    self.failed += 1;
                    self.note_error(format!("connect from {from}: {e}"));
                }
            }
        }
    }

    /// One readiness event for connection `i`, seen at `now_ns`.
    fn event(&mut self, i: usize, readable: bool, closed: bool, writable: bool, now_ns: u64) {
        let Some(c) = self.conns[i].as_mut() else {
            return;
        };
        let before = c.state;
        let mut result = Ok(Default::default());
        if writable {
            let r = if c.state == State::Connecting {
                c.connected(&self.opts.host, &self.opts.path)
            } else {
                c.flush()
            };
            if let Err(e) = r {
                result = Err(e);
            }
        }
        if result.is_ok() && readable && c.state != State::Connecting {
            result = c.readable(&mut self.buf, closed);
        }
        let after = c.state;
        let opening = |s: State| matches!(s, State::Connecting | State::Handshake);
        let seen = match result {
            Ok(seen) => seen,
            Err(e) => {
                if opening(before) {
                    self.handshaking -= 1;
                    self.failed += 1;
                    self.note_error(e);
                } else if before == State::Open {
                    // A reset or a protocol error while held: the server's doing.
                    self.open -= 1;
                    self.closed_by_server += 1;
                    self.note_error(e);
                }
                return self.drop_conn(i);
            }
        };
        self.pings += u64::from(seen.pings);
        if seen.messages > 0 && !self.got[i] {
            self.got[i] = true;
            self.receivers += 1;
            if self.first_ns == 0 {
                self.first_ns = now_ns;
            }
            self.last_ns = self.last_ns.max(now_ns);
        }
        if opening(before) && !opening(after) {
            self.handshaking -= 1;
            if after == State::Open {
                self.open += 1;
            } else {
                // Upgraded and closed at once, or closed before the 101.
                self.failed += 1;
                self.note_error("closed by the server during the handshake");
            }
        } else if before == State::Open && after != State::Open {
            self.open -= 1;
            if seen.closed_by_server {
                self.closed_by_server += 1;
            }
        }
        if let State::Done { clean } = after {
            if clean && c_initiated(&self.conns[i]) {
                self.clean += 1;
            }
            self.drop_conn(i);
        }
    }

    /// Waits up to `wait` for events and handles them; true if a command came in.
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
            let closed = ev.is_read_closed() || ev.is_error();
            let readable = ev.is_readable() || closed;
            self.event(ev.token().0, readable, closed, ev.is_writable(), now);
        }
        Ok(stdin)
    }

    fn live(&self) -> usize {
        self.conns.iter().filter(|c| c.is_some()).count()
    }

    fn broadcast_report(&mut self) -> Value {
        let v = json!({
            "event": "broadcast",
            "received": self.receivers,
            "last_ns": self.last_ns,
            "first_ns": self.first_ns,
        });
        // The next `expect-broadcast` counts the next message.
        self.got.iter_mut().for_each(|g| *g = false);
        (self.receivers, self.first_ns, self.last_ns) = (0, 0, 0);
        v
    }
}

fn c_initiated(c: &Option<Conn>) -> bool {
    c.as_ref()
        .is_some_and(|c| c.initiated_close && !c.server_closed)
}

/// Reads stdin lines on a thread of their own and hands them over, waking the event loop;
/// EOF becomes `close`.
fn commands(waker: Waker) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel::<String>();
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
    rx
}

/// Runs the hold until `close` (or EOF) on stdin. `Ok(false)`: it ran, and its JSON
/// reports failures (connections that did not open or did not close cleanly).
pub fn run(opts: Options) -> io::Result<bool> {
    crate::sys::raise_nofile();
    let poll = Poll::new()?;
    let commands = commands(Waker::new(poll.registry(), STDIN)?);
    let n = opts.connections;
    let mut h = Hold {
        poll,
        conns: (0..n).map(|_| None).collect(),
        seed: monotonic_ns() ^ (u64::from(std::process::id()) << 32),
        buf: vec![0; 64 << 10],
        started: 0,
        handshaking: 0,
        open: 0,
        failed: 0,
        first_error: None,
        pings: 0,
        closed_by_server: 0,
        clean: 0,
        got: vec![false; n],
        receivers: 0,
        first_ns: 0,
        last_ns: 0,
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
        if last_progress.elapsed() >= PROGRESS_EVERY {
            last_progress = Instant::now();
            emit(json!({"event": "progress", "connected": h.open, "failed": h.failed}));
        }
    }
    // Whatever is still opening has had its time.
    for i in 0..n {
        if h.conns[i]
            .as_ref()
            .is_some_and(|c| matches!(c.state, State::Connecting | State::Handshake))
        {
            h.drop_conn(i);
        }
    }
    let late = n - h.open - h.failed;
    if late > 0 {
        h.failed += late;
        h.note_error(format!(
            "{late} connections not open after {:?}",
            h.opts.open_timeout
        ));
    }
    h.handshaking = 0;
    // A broadcast is what arrives after the ramp (or after the previous report).
    h.broadcast_report();
    let mut ramped = json!({
        "event": "ramped",
        "connected": h.open,
        "failed": h.failed,
        "seconds": (t0.elapsed().as_secs_f64() * 1000.0).round() / 1000.0,
    });
    if h.failed > 0 {
        ramped["error"] = json!(h.first_error.clone().unwrap_or_default());
    }
    emit(ramped);

    // Hold, serving commands.
    let mut expecting: Option<Instant> = None;
    loop {
        let now: Vec<String> = pending.drain(..).chain(commands.try_iter()).collect();
        for cmd in now {
            match cmd.as_str() {
                "expect-broadcast" => expecting = Some(Instant::now() + BROADCAST_WAIT),
                "stats" => emit(json!({
                    "event": "stats",
                    "open": h.open,
                    "pings_answered": h.pings,
                    "closed_by_server": h.closed_by_server,
                })),
                "close" => return close(&mut h, &mut events),
                "" => {}
                other => eprintln!("throng-load hold: unknown command {other:?}"),
            }
        }
        if let Some(until) = expecting
            && (h.receivers >= h.open || Instant::now() >= until)
        {
            expecting = None;
            let report = h.broadcast_report();
            emit(report);
        }
        h.turn(&mut events, Duration::from_millis(100))?;
    }
}

fn close(h: &mut Hold, events: &mut Events) -> io::Result<bool> {
    for i in 0..h.conns.len() {
        if let Some(c) = h.conns[i].as_mut()
            && c.state == State::Open
        {
            h.open -= 1;
            if c.close().is_err() {
                h.drop_conn(i);
            }
        }
    }
    let limit = Instant::now() + CLOSE_LIMIT;
    let mut stall = Instant::now() + h.opts.close_stall;
    let mut live = h.live();
    while live > 0 && Instant::now() < stall.min(limit) {
        h.turn(events, Duration::from_millis(50))?;
        let now = h.live();
        if now < live {
            stall = Instant::now() + h.opts.close_stall;
        }
        live = now;
    }
    // Every connection asked for and not closed with a full close handshake is a failure.
    emit(json!({
        "event": "closed",
        "closed_cleanly": h.clean,
        "close_failures": h.opts.connections - h.clean,
    }));
    Ok(h.failed == 0 && h.clean == h.opts.connections)
}
