//! The measurements of throng-bench's comparison, each against one server process, on
//! the load CPUs (one thread per CPU, each with its own share of the connections, its own
//! event loop and its own range of source addresses): closed-loop echo throughput,
//! latency at a fixed rate, memory per idle connection, handshakes per second with churn,
//! broadcast fan-out time and pub/sub delivery.
//!
//! They live here, in throng-load, so that the benchmark and the `throng-load` command
//! share one client. Some of what they do has no use outside a comparison (readiness-timed
//! broadcast arrival, publishers paced by their acks, connection churn, server CPU read
//! exactly at the window edges), but it costs the other users nothing.

use std::io;
use std::net::SocketAddr;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::churn::Churn;
use crate::churn_tls::TlsChurn;
use crate::fleet::{Conn, Count, Driver, Fleet, Msg};
use crate::frame;
use crate::hist::Histogram;
use crate::source;

/// The poll timeout of timed loops. A spinning load thread (`THRONG_BENCH_SPIN=1`) would
/// spare the server the wakeups of a sleeping one, but showed no consistent gain here
/// (within the run-to-run noise), so the load thread sleeps in `epoll_wait` as a real
/// client does.
fn spin() -> Option<Duration> {
    static SPIN: std::sync::OnceLock<Option<Duration>> = std::sync::OnceLock::new();
    *SPIN.get_or_init(|| {
        let on = std::env::var("THRONG_BENCH_SPIN").is_ok_and(|v| v == "1");
        Some(if on {
            Duration::ZERO
        } else {
            Duration::from_millis(2)
        })
    })
}

/// The server under test.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its process, for CPU and memory readings (0: none).
    pub pid: u32,
}

impl Target {
    fn cpu_ns(&self) -> u64 {
        if self.pid == 0 {
            0
        } else {
            crate::sys::cpu_ns(self.pid).unwrap_or(0)
        }
    }
}

/// Warm-up and measurement lengths.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    /// Load runs this long before counting starts.
    pub warmup: Duration,
    /// Counting lasts this long.
    pub measure: Duration,
}

/// How the load threads are placed, and how connections are opened.
#[derive(Debug, Clone)]
pub struct Load {
    /// One load thread per CPU here, pinned to it (empty: one unpinned thread).
    pub cpus: Vec<usize>,
    /// Handshakes in progress at once while opening connections.
    pub open_window: usize,
    /// Longest time opening a set of connections may take.
    pub open_timeout: Duration,
    /// `wss://`: every connection is a TLS session of this client (`None`: plain TCP).
    pub tls: Option<crate::tls::Tls>,
}

impl Load {
    fn threads(&self) -> usize {
        self.cpus.len().max(1)
    }
}

/// Connections to one of `threads` load threads: `n` spread evenly.
fn share(n: usize, thread: usize, threads: usize) -> usize {
    n / threads + usize::from(thread < n % threads)
}

/// Load thread `thread`'s fleet: aimed at the target, its source addresses starting at its
/// own place in the rotation.
fn thread_fleet(target: Target, load: &Load, thread: usize, threads: usize) -> io::Result<Fleet> {
    Ok(Fleet::new(target.addr)?
        .with_source_offset(thread * source::SOURCES / threads.max(1))
        .with_tls(load.tls.clone()))
}

/// A barrier the load threads meet at, which a failing thread can break so the others
/// return instead of waiting forever.
struct Meet {
    threads: usize,
    state: Mutex<(usize, u64, bool)>,
    cv: Condvar,
}

impl Meet {
    fn new(threads: usize) -> Meet {
        Meet {
            threads,
            state: Mutex::new((0, 0, false)),
            cv: Condvar::new(),
        }
    }

    fn wait(&self) -> io::Result<()> {
        let broken = || io::Error::other("another load thread failed");
        let mut s = self.state.lock().map_err(|_| broken())?;
        if s.2 {
            return Err(broken());
        }
        let generation = s.1;
        s.0 += 1;
        if s.0 == self.threads {
            s.0 = 0;
            s.1 += 1;
            self.cv.notify_all();
            return Ok(());
        }
        let deadline = Instant::now() + Duration::from_secs(120);
        while s.1 == generation && !s.2 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "load threads lost step",
                ));
            }
            s = self.cv.wait_timeout(s, left).map_err(|_| broken())?.0;
        }
        if s.2 { Err(broken()) } else { Ok(()) }
    }

    fn abort(&self) {
        if let Ok(mut s) = self.state.lock() {
            s.2 = true;
        }
        self.cv.notify_all();
    }
}

/// Runs `f(thread, threads, meet)` on every load thread and collects the results.
fn on_threads<R: Send>(
    load: &Load,
    f: impl Fn(usize, usize, &Meet) -> io::Result<R> + Sync,
) -> io::Result<Vec<R>> {
    let threads = load.threads();
    let meet = Meet::new(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (f, meet) = (&f, &meet);
                let cpu = load.cpus.get(t).copied();
                s.spawn(move || {
                    if let Some(cpu) = cpu {
                        crate::sys::pin_to(&[cpu])?;
                    }
                    let r = f(t, threads, meet);
                    if r.is_err() {
                        meet.abort();
                    }
                    r
                })
            })
            .collect();
        let results: Vec<io::Result<R>> = handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(io::Error::other("load thread panicked")))
            })
            .collect();
        // The thread that failed first, not one that only saw the barrier broken.
        if let Some(i) = results.iter().position(|r| {
            r.as_ref()
                .is_err_and(|e| e.to_string() != "another load thread failed")
        }) {
            return Err(results
                .into_iter()
                .nth(i)
                .expect("found")
                .err()
                .expect("an error"));
        }
        results.into_iter().collect()
    })
}

/// Turns the event loop until every connection in `fleet` has received `each` more
/// messages than `base`, or fails after `timeout`.
fn await_all(fleet: &mut Fleet, base: &[u64], each: u64, timeout: Duration) -> io::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(e) = fleet.first_error() {
            return Err(io::Error::other(e));
        }
        let missing = fleet
            .conns
            .iter()
            .zip(base)
            .filter(|(c, b)| c.received < **b + each)
            .count();
        if missing == 0 {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("{missing} connections did not get their message within {timeout:?}"),
            ));
        }
        fleet.turn(Some(Duration::from_millis(5)), &mut Count)?;
    }
}

/// One small echo on every connection and wait for all: afterwards the server has
/// finished setting each one up (registered it, allocated what a used connection holds).
fn echo_once(fleet: &mut Fleet, timeout: Duration) -> io::Result<()> {
    let ping = frame::masked_frame(frame::TEXT, &frame::payload(64));
    let base: Vec<u64> = fleet.conns.iter().map(|c| c.received).collect();
    for c in fleet.conns.iter_mut() {
        c.send(&ping);
    }
    await_all(fleet, &base, 1, timeout)
}

// ---- echo throughput ---------------------------------------------------------------

/// Closed-loop echo: every connection keeps one message in flight.
#[derive(Debug, Clone, Copy, Default)]
pub struct EchoResult {
    /// Echoes received in the window.
    pub messages: u64,
    /// Connections that took part.
    pub conns: usize,
    /// The fewest echoes one connection received in the window: a server that serves
    /// some connections over and over while others wait shows here, not in the rate.
    pub slowest: u64,
    /// Window length (seconds).
    pub seconds: f64,
    /// Server CPU time in the window (nanoseconds, all its threads).
    pub server_cpu_ns: u64,
}

impl EchoResult {
    /// Messages per second.
    pub fn rate(&self) -> f64 {
        self.messages as f64 / self.seconds.max(1e-9)
    }
    /// Server CPU per echoed message, nanoseconds.
    pub fn server_ns_per_message(&self) -> f64 {
        self.server_cpu_ns as f64 / (self.messages.max(1)) as f64
    }
    /// The slowest connection's echoes as a share of the mean connection's (1.0: every
    /// connection was served alike).
    pub fn slowest_share(&self) -> f64 {
        self.slowest as f64 * self.conns as f64 / self.messages.max(1) as f64
    }
}

struct EchoLoop<'a> {
    frame: &'a [u8],
    expect: &'a [u8],
    counting: bool,
    count: u64,
    /// Echoes counted per connection (by fleet index).
    each: Vec<u32>,
    bad: u64,
}

impl Driver for EchoLoop<'_> {
    fn message(&mut self, index: usize, conn: &mut Conn, m: Msg<'_>) {
        if m.len != self.expect.len() as u64
            || !m.text
            || *m.prefix != self.expect[..m.prefix.len()]
        {
            self.bad += 1;
        }
        self.count += u64::from(self.counting);
        if let Some(n) = self.each.get_mut(index) {
            *n += u32::from(self.counting);
        }
        conn.send(self.frame);
    }
}

/// Echo throughput with `conns` connections and `size`-byte text messages.
pub fn echo(
    target: Target,
    load: &Load,
    conns: usize,
    size: usize,
    window: Window,
) -> io::Result<EchoResult> {
    let payload = frame::payload(size);
    let frame = frame::masked_frame(frame::TEXT, &payload);
    let parts = on_threads(load, |t, threads, meet| {
        let mut fleet = thread_fleet(target, load, t, threads)?;
        fleet.open(
            "/",
            share(conns, t, threads),
            0,
            load.open_window,
            load.open_timeout,
        )?;
        meet.wait()?;
        let mut d = EchoLoop {
            frame: &frame,
            expect: &payload,
            counting: false,
            count: 0,
            each: vec![0; fleet.conns.len()],
            bad: 0,
        };
        for c in fleet.conns.iter_mut() {
            c.send(&frame);
        }
        let t0 = Instant::now();
        let (start, end) = (t0 + window.warmup, t0 + window.warmup + window.measure);
        let mut began: Option<(Instant, u64)> = None;
        let result;
        loop {
            fleet.turn(spin(), &mut d)?;
            let now = Instant::now();
            if began.is_none() && now >= start {
                d.counting = true;
                d.count = 0;
                d.each.fill(0);
                began = Some((now, if t == 0 { target.cpu_ns() } else { 0 }));
            }
            if now >= end {
                let (b, cpu0) = began.unwrap_or((now, 0));
                result = EchoResult {
                    messages: d.count,
                    conns: d.each.len(),
                    slowest: d.each.iter().copied().min().map_or(0, u64::from),
                    seconds: (now - b).as_secs_f64(),
                    server_cpu_ns: if t == 0 {
                        target.cpu_ns().saturating_sub(cpu0)
                    } else {
                        0
                    },
                };
                break;
            }
        }
        if let Some(e) = fleet.first_error() {
            return Err(io::Error::other(e));
        }
        if d.bad > 0 {
            return Err(io::Error::other(format!(
                "{} echoes did not match what was sent",
                d.bad
            )));
        }
        Ok(result)
    })?;
    let seconds = parts.iter().map(|p| p.seconds).fold(0.0, f64::max);
    Ok(EchoResult {
        messages: parts.iter().map(|p| p.messages).sum(),
        conns: parts.iter().map(|p| p.conns).sum(),
        // A thread may hold no connection (fewer connections than threads).
        slowest: parts
            .iter()
            .filter(|p| p.conns > 0)
            .map(|p| p.slowest)
            .min()
            .unwrap_or(0),
        seconds,
        server_cpu_ns: parts[0].server_cpu_ns,
    })
}

// ---- latency at a fixed rate ---------------------------------------------------------

/// Round-trip latency of echoes sent on a fixed schedule.
#[derive(Debug, Clone, Default)]
pub struct LatencyResult {
    /// Round trips (nanoseconds), measured from when each message was due, so a late
    /// send counts against the server (no coordinated omission).
    pub histogram: Histogram,
    /// The rate asked for (messages per second, all threads).
    pub rate: f64,
    /// The rate reached in the window.
    pub achieved: f64,
    /// Messages sent in the window that never came back.
    pub lost: u64,
}

struct Paced<'a> {
    expect: &'a [u8],
    window: (Instant, Instant),
    hist: Histogram,
    bad: u64,
}

impl Driver for Paced<'_> {
    fn message(&mut self, _: usize, conn: &mut Conn, m: Msg<'_>) {
        let now = Instant::now();
        if m.len != self.expect.len() as u64 || *m.prefix != self.expect[..m.prefix.len()] {
            self.bad += 1;
        }
        if let Some(due) = conn.sent.pop_front()
            && due >= self.window.0
            && due < self.window.1
        {
            self.hist.record((now - due).as_nanos() as u64);
        }
    }
}

/// Latency of `size`-byte echoes at `rate` messages per second spread round-robin over
/// `conns` connections (open loop: a connection may have several in flight).
pub fn latency(
    target: Target,
    load: &Load,
    conns: usize,
    size: usize,
    rate: f64,
    window: Window,
) -> io::Result<LatencyResult> {
    let payload = frame::payload(size);
    let frame = frame::masked_frame(frame::TEXT, &payload);
    let parts = on_threads(load, |t, threads, meet| {
        let mut fleet = thread_fleet(target, load, t, threads)?;
        let n = share(conns, t, threads);
        fleet.open("/", n, 0, load.open_window, load.open_timeout)?;
        echo_once(&mut fleet, Duration::from_secs(10))?;
        meet.wait()?;
        let rate = rate / threads as f64;
        let interval = Duration::from_secs_f64(1.0 / rate.max(1.0));
        let t0 = Instant::now();
        let window_at = (t0 + window.warmup, t0 + window.warmup + window.measure);
        let mut d = Paced {
            expect: &payload,
            window: window_at,
            hist: Histogram::default(),
            bad: 0,
        };
        let (mut issued, mut in_window, mut next) = (0u64, 0u64, 0usize);
        let mut due = t0;
        loop {
            // Spinning: a thread asleep in epoll_wait would send late, and the lateness
            // (up to its timeout) would be measured against the server.
            fleet.turn(Some(Duration::ZERO), &mut d)?;
            let now = Instant::now();
            if now >= window_at.1 {
                break;
            }
            while due <= now {
                let c = &mut fleet.conns[next];
                next = (next + 1) % n;
                c.sent.push_back(due);
                c.send(&frame);
                issued += 1;
                in_window += u64::from(due >= window_at.0);
                due = t0 + interval.mul_f64(issued as f64);
            }
        }
        // Collect the answers still in flight.
        let deadline = Instant::now() + Duration::from_secs(2);
        while fleet
            .conns
            .iter()
            .any(|c| c.sent.iter().any(|&s| s < window_at.1))
            && Instant::now() < deadline
        {
            fleet.turn(Some(Duration::from_millis(1)), &mut d)?;
        }
        let lost = fleet
            .conns
            .iter()
            .map(|c| {
                c.sent
                    .iter()
                    .filter(|&&s| s >= window_at.0 && s < window_at.1)
                    .count() as u64
            })
            .sum();
        if let Some(e) = fleet.first_error() {
            return Err(io::Error::other(e));
        }
        if d.bad > 0 {
            return Err(io::Error::other(format!(
                "{} echoes did not match what was sent",
                d.bad
            )));
        }
        Ok((d.hist, in_window, lost))
    })?;
    let mut out = LatencyResult {
        rate,
        ..Default::default()
    };
    let mut sent = 0;
    for (h, n, lost) in &parts {
        out.histogram.merge(h);
        sent += n;
        out.lost += lost;
    }
    out.achieved = sent as f64 / window.measure.as_secs_f64();
    Ok(out)
}

// ---- memory per idle connection ----------------------------------------------------

/// Server memory with idle connections.
#[derive(Debug, Clone, Copy, Default)]
pub struct MemoryResult {
    /// Connections held.
    pub connections: usize,
    /// Server RSS before (bytes).
    pub rss_before: u64,
    /// Server RSS with the connections idle (bytes).
    pub rss_after: u64,
}

impl MemoryResult {
    /// User-space bytes per idle connection.
    pub fn per_connection(&self) -> f64 {
        (self.rss_after.saturating_sub(self.rss_before)) as f64 / self.connections.max(1) as f64
    }
}

/// Opens `conns` echo connections, sends one 64 B message on each (a used connection,
/// as real ones are), lets the server settle for `settle`, and reads its RSS.
pub fn idle_memory(
    target: Target,
    load: &Load,
    conns: usize,
    settle: Duration,
) -> io::Result<MemoryResult> {
    let rss_before = crate::sys::rss_bytes(target.pid)?;
    let meet_rss = Mutex::new(0u64);
    on_threads(load, |t, threads, meet| {
        let mut fleet = thread_fleet(target, load, t, threads)?;
        fleet.open(
            "/",
            share(conns, t, threads),
            0,
            load.open_window,
            load.open_timeout,
        )?;
        echo_once(&mut fleet, Duration::from_secs(20))?;
        meet.wait()?;
        if t == 0 {
            let until = Instant::now() + settle;
            while Instant::now() < until {
                fleet.turn(Some(Duration::from_millis(10)), &mut Count)?;
            }
            *meet_rss.lock().map_err(|_| io::Error::other("poisoned"))? =
                crate::sys::rss_bytes(target.pid)?;
        }
        // Every thread holds its connections until the reading is taken.
        meet.wait()?;
        if fleet.open_count() != fleet.conns.len() {
            return Err(io::Error::other(
                fleet
                    .first_error()
                    .unwrap_or_else(|| "a connection closed while idle".into()),
            ));
        }
        Ok(())
    })?;
    let rss_after = *meet_rss.lock().map_err(|_| io::Error::other("poisoned"))?;
    Ok(MemoryResult {
        connections: conns,
        rss_before,
        rss_after,
    })
}

// ---- handshakes per second ---------------------------------------------------------

/// Upgrades completed per second with connection churn.
#[derive(Debug, Clone, Copy, Default)]
pub struct HandshakeResult {
    /// Upgrades completed in the window.
    pub handshakes: u64,
    /// Window length (seconds).
    pub seconds: f64,
    /// Server CPU in the window (nanoseconds).
    pub server_cpu_ns: u64,
    /// Connections that failed (refused, reset before the 101).
    pub failed: u64,
    /// CPU the load threads spent in the window, all of them (nanoseconds): with the
    /// kernel's TCP work for both ends of a loopback connect landing on the connecting
    /// side, this is what bounds the rate when the server is not busy.
    pub load_cpu_ns: u64,
}

impl HandshakeResult {
    /// Handshakes per second.
    pub fn rate(&self) -> f64 {
        self.handshakes as f64 / self.seconds.max(1e-9)
    }
}

/// The client of [`handshakes`]: plain or TLS.
enum Churner {
    Tcp(Churn),
    Tls(TlsChurn),
}

impl Churner {
    fn turn(&mut self, timeout: Option<Duration>) -> io::Result<u64> {
        match self {
            Churner::Tcp(c) => c.turn(timeout),
            Churner::Tls(c) => c.turn(timeout),
        }
    }

    /// Upgrades, failures, the first failure's reason.
    fn counts(&self) -> (u64, u64, Option<String>) {
        match self {
            Churner::Tcp(c) => (c.upgraded, c.failed, c.first_error.clone()),
            Churner::Tls(c) => (c.upgraded, c.failed, c.first_error.clone()),
        }
    }
}

/// Keeps `concurrency` handshakes in progress: connect, upgrade, reset once the 101 is
/// in, start the next ([`crate::churn`]; over TLS, [`crate::churn_tls`]).
pub fn handshakes(
    target: Target,
    load: &Load,
    concurrency: usize,
    window: Window,
) -> io::Result<HandshakeResult> {
    let parts = on_threads(load, |t, threads, meet| {
        meet.wait()?;
        let seed = crate::sys::monotonic_ns() ^ ((t as u64) << 48);
        let slots = share(concurrency, t, threads).max(1);
        let mut churn = match &load.tls {
            None => Churner::Tcp(Churn::new(target.addr, "/", slots, seed)?),
            Some(tls) => Churner::Tls(TlsChurn::new(
                target.addr,
                "/",
                slots,
                tls.clone(),
                t * source::SOURCES / threads.max(1),
            )?),
        };
        let t0 = Instant::now();
        let (start, end) = (t0 + window.warmup, t0 + window.warmup + window.measure);
        let mut began: Option<(Instant, u64, u64, u64)> = None;
        loop {
            churn.turn(spin())?;
            let (upgraded, failed, first_error) = churn.counts();
            if failed > 1000 {
                return Err(io::Error::other(format!(
                    "handshakes keep failing: {}",
                    first_error.unwrap_or_default()
                )));
            }
            let now = Instant::now();
            if began.is_none() && now >= start {
                let server = if t == 0 { target.cpu_ns() } else { 0 };
                began = Some((now, upgraded, server, crate::sys::thread_cpu_ns()));
            }
            if now >= end {
                let (b, upgraded0, cpu0, load0) = began.unwrap_or((now, upgraded, 0, 0));
                let cpu = if t == 0 {
                    target.cpu_ns().saturating_sub(cpu0)
                } else {
                    0
                };
                return Ok(HandshakeResult {
                    handshakes: upgraded - upgraded0,
                    seconds: (now - b).as_secs_f64(),
                    server_cpu_ns: cpu,
                    failed,
                    load_cpu_ns: crate::sys::thread_cpu_ns().saturating_sub(load0),
                });
            }
        }
    })?;
    Ok(HandshakeResult {
        handshakes: parts.iter().map(|p| p.handshakes).sum(),
        seconds: parts.iter().map(|p| p.seconds).fold(0.0, f64::max),
        server_cpu_ns: parts[0].server_cpu_ns,
        failed: parts.iter().map(|p| p.failed).sum(),
        load_cpu_ns: parts.iter().map(|p| p.load_cpu_ns).sum(),
    })
}

// ---- broadcast -----------------------------------------------------------------------

/// Time for one message to reach every member.
#[derive(Debug, Clone, Default)]
pub struct BroadcastResult {
    /// Members.
    pub members: usize,
    /// Message size.
    pub size: usize,
    /// Per repetition: trigger sent until the last member had the message (ns).
    pub times_ns: Vec<u64>,
    /// Per repetition: server CPU spent (ns).
    pub server_cpu_ns: Vec<u64>,
}

/// Opens `members` connections subscribed to the broadcast and one control connection,
/// then `repeats` times: sends `BROADCAST <size>` and times until every member's socket
/// has data. Arrival is taken from epoll readiness (no read per member inside the timed
/// part, so the load thread is not what is measured); every member is then read and
/// must hold exactly one `size`-byte binary message.
pub fn broadcast(
    target: Target,
    load: &Load,
    members: usize,
    size: usize,
    repeats: usize,
) -> io::Result<BroadcastResult> {
    let trigger = frame::masked_frame(frame::TEXT, format!("BROADCAST {size}").as_bytes());
    let parts = on_threads(load, |t, threads, meet| {
        let mut fleet = thread_fleet(target, load, t, threads)?;
        let mine = share(members, t, threads);
        fleet.open("/bcast", mine, 0, load.open_window, load.open_timeout)?;
        echo_once(&mut fleet, Duration::from_secs(20))?;
        let control = if t == 0 {
            Some(fleet.open("/control", 1, 1, 1, load.open_timeout)?.start)
        } else {
            None
        };
        let mut arrived = vec![false; mine];
        let (mut lasts, mut cpus, mut starts) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..repeats {
            arrived.iter_mut().for_each(|a| *a = false);
            let mut got = 0;
            meet.wait()?;
            let cpu0 = if t == 0 { target.cpu_ns() } else { 0 };
            if let Some(c) = control {
                starts.push(Instant::now());
                fleet.conns[c].send(&trigger);
            }
            let deadline = Instant::now() + Duration::from_secs(20);
            let mut last = Instant::now();
            while got < mine {
                fleet.ready(spin(), |i| {
                    if i < mine && !arrived[i] {
                        arrived[i] = true;
                        got += 1;
                    }
                })?;
                last = Instant::now();
                if last >= deadline {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("broadcast reached {got} of {mine} members in 20 s"),
                    ));
                }
            }
            lasts.push(last);
            let before: Vec<u64> = fleet.conns.iter().map(|c| c.received).collect();
            for i in 0..mine {
                fleet.read_now(i, &mut Count);
            }
            let short = (0..mine)
                .filter(|&i| fleet.conns[i].received != before[i] + 1)
                .count();
            if short > 0 {
                return Err(io::Error::other(format!(
                    "{short} members did not get exactly one message"
                )));
            }
            meet.wait()?;
            cpus.push(if t == 0 {
                target.cpu_ns().saturating_sub(cpu0)
            } else {
                0
            });
        }
        if let Some(e) = fleet.first_error() {
            return Err(io::Error::other(e));
        }
        Ok((lasts, cpus, starts))
    })?;
    let mut out = BroadcastResult {
        members,
        size,
        ..Default::default()
    };
    for r in 0..repeats {
        // Thread 0 sent the trigger; the repetition ends when the slowest thread saw its
        // last member.
        let last = parts
            .iter()
            .map(|p| p.0[r])
            .max()
            .expect("at least one thread");
        out.times_ns.push((last - parts[0].2[r]).as_nanos() as u64);
        out.server_cpu_ns.push(parts[0].1[r]);
    }
    Ok(out)
}

// ---- pub/sub -------------------------------------------------------------------------

/// Delivery rate with many publishers.
#[derive(Debug, Clone, Copy, Default)]
pub struct PubSubResult {
    /// Subscribers.
    pub subscribers: usize,
    /// Publishers.
    pub publishers: usize,
    /// Messages received by subscribers in the window.
    pub delivered: u64,
    /// Publishes acknowledged in the window.
    pub published: u64,
    /// Window length (seconds).
    pub seconds: f64,
    /// Server CPU in the window (ns).
    pub server_cpu_ns: u64,
}

impl PubSubResult {
    /// Messages delivered to subscribers per second.
    pub fn delivered_rate(&self) -> f64 {
        self.delivered as f64 / self.seconds.max(1e-9)
    }
}

const SUBSCRIBER: u16 = 1;
const PUBLISHER: u16 = 2;

struct PubSub<'a> {
    frame: &'a [u8],
    size: u64,
    counting: bool,
    delivered: u64,
    published: u64,
    bad: u64,
}

impl Driver for PubSub<'_> {
    fn message(&mut self, _: usize, conn: &mut Conn, m: Msg<'_>) {
        if m.len != self.size {
            self.bad += 1;
        }
        if conn.group == PUBLISHER {
            self.published += u64::from(self.counting);
            conn.send(self.frame);
        } else {
            self.delivered += u64::from(self.counting);
        }
    }
}

/// `subscribers` connections on the topic and `publishers` that each publish a
/// `size`-byte message, wait for its ack and publish the next.
pub fn pubsub(
    target: Target,
    load: &Load,
    subscribers: usize,
    publishers: usize,
    size: usize,
    window: Window,
) -> io::Result<PubSubResult> {
    let frame = frame::masked_frame(frame::TEXT, &frame::payload(size));
    let parts = on_threads(load, |t, threads, meet| {
        let mut fleet = thread_fleet(target, load, t, threads)?;
        fleet.open(
            "/sub",
            share(subscribers, t, threads),
            SUBSCRIBER,
            load.open_window,
            load.open_timeout,
        )?;
        // The echo proves each subscriber is registered before anything is published.
        echo_once(&mut fleet, Duration::from_secs(20))?;
        let pubs = fleet.open(
            "/pub",
            share(publishers, t, threads),
            PUBLISHER,
            load.open_window,
            load.open_timeout,
        )?;
        meet.wait()?;
        let mut d = PubSub {
            frame: &frame,
            size: size as u64,
            counting: false,
            delivered: 0,
            published: 0,
            bad: 0,
        };
        for i in pubs {
            fleet.conns[i].send(&frame);
        }
        let t0 = Instant::now();
        let (start, end) = (t0 + window.warmup, t0 + window.warmup + window.measure);
        let mut began: Option<(Instant, u64)> = None;
        loop {
            fleet.turn(spin(), &mut d)?;
            let now = Instant::now();
            if began.is_none() && now >= start {
                d.counting = true;
                (d.delivered, d.published) = (0, 0);
                began = Some((now, if t == 0 { target.cpu_ns() } else { 0 }));
            }
            if now >= end {
                let (b, cpu0) = began.unwrap_or((now, 0));
                if let Some(e) = fleet.first_error() {
                    return Err(io::Error::other(e));
                }
                if d.bad > 0 {
                    return Err(io::Error::other(format!(
                        "{} messages of the wrong size",
                        d.bad
                    )));
                }
                let cpu = if t == 0 {
                    target.cpu_ns().saturating_sub(cpu0)
                } else {
                    0
                };
                return Ok(PubSubResult {
                    subscribers,
                    publishers,
                    delivered: d.delivered,
                    published: d.published,
                    seconds: (now - b).as_secs_f64(),
                    server_cpu_ns: cpu,
                });
            }
        }
    })?;
    Ok(PubSubResult {
        delivered: parts.iter().map(|p| p.delivered).sum(),
        published: parts.iter().map(|p| p.published).sum(),
        seconds: parts.iter().map(|p| p.seconds).fold(0.0, f64::max),
        ..parts[0]
    })
}
