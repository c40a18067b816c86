//! The run loop of one worker: wait, read the clock, dispatch the backend's events, apply
//! descriptor operations, advance the timer wheel, read the mailbox, flush. Generic over
//! the backend, so each backend gets its own monomorphized loop with no dynamic dispatch
//! on the message path.

use std::io;
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::connections::Connections;
use crate::core::{Core, Op, Peers};
use crate::handler::Handler;
use crate::mailbox::{Command, Inbox, PeerMail};
use crate::stats::WorkerStats;
use crate::sys::{Backend, Sink, Token};

/// How soon a quiet worker wakes again to return freed memory (see `Core::trim_memory`).
const TRIM_WAIT: Duration = Duration::from_millis(50);

/// What a worker reports when it exits.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct WorkerReport {
    pub stats: WorkerStats,
    /// Connections open when shutdown began.
    pub at_shutdown: usize,
    /// Of those, closed with a completed close handshake.
    pub closed_cleanly: usize,
    /// Of those, ended before the deadline without one (close timer, reset, EOF).
    pub closed_uncleanly: usize,
    /// Of those, cut at the deadline.
    pub forced: usize,
}

/// The worker's clock in timer ticks since the worker started.
struct Clock {
    start: Instant,
    tick: Duration,
}

impl Clock {
    /// The tick of instant `t` (the first is 1; 0 means "not filed").
    fn tick_at(&self, t: Instant) -> u32 {
        // In 64 bits (584 years of nanoseconds): a 128-bit division is a library call.
        let since = t.saturating_duration_since(self.start).as_nanos() as u64;
        1 + (since / self.tick.as_nanos() as u64) as u32
    }

    /// When tick `t` begins.
    fn at(&self, t: u32) -> Instant {
        self.start + self.tick * t
    }
}

/// Connects backend events to the core (the backend's [`Sink`]).
struct Dispatch<'a, H: Handler> {
    h: &'a mut H,
    core: &'a mut Core<H::State>,
    woken: bool,
}

impl<H: Handler> Dispatch<'_, H> {
    /// The descriptor of live connection `key`, unless its reading is paused.
    #[inline(always)]
    fn reader_at(&self, key: usize) -> Option<RawFd> {
        let c = &self.core.conns[key];
        (!c.has(crate::conn::READ_PAUSED)).then_some(c.fd)
    }
}

impl<H: Handler> Sink for Dispatch<'_, H> {
    fn reader(&self, token: Token) -> Option<RawFd> {
        self.reader_at(self.core.lookup(token)?)
    }

    fn alive(&self, token: Token) -> bool {
        self.core.lookup(token).is_some()
    }

    fn accepted(&mut self, fd: RawFd, listener: usize) {
        self.core.accept(fd, listener);
    }

    fn input(&mut self, token: Token, bytes: &mut [u8]) -> bool {
        match self.core.lookup(token) {
            Some(key) => self.core.input(self.h, key, bytes),
            None => false,
        }
    }

    fn input_closed(&mut self, token: Token, _error: Option<io::Error>) {
        if let Some(key) = self.core.lookup(token) {
            self.core.input_closed(self.h, key);
        }
    }

    fn writable(&mut self, token: Token) {
        if let Some(key) = self.core.lookup(token) {
            self.core.writable(key);
        }
    }

    #[inline]
    fn ready(&mut self, token: Token, writable: bool) -> Option<RawFd> {
        let key = self.core.lookup(token)?;
        if writable {
            self.core.writable(key);
        }
        self.reader_at(key)
    }

    fn sent(&mut self, token: Token, result: io::Result<usize>, ended: bool) {
        if let Some(key) = self.core.lookup(token) {
            self.core.sent(self.h, key, result, ended);
        }
    }

    fn woken(&mut self) {
        self.woken = true;
    }
}

/// Applies the core's descriptor operations through the backend, in order. The check
/// for none is inlined: the run loop asks four times a turn and there usually are none.
#[inline(always)]
fn apply<B: Backend, S>(backend: &mut B, core: &mut Core<S>) {
    if !core.ops.is_empty() {
        apply_ops(backend, core);
    }
}

/// [`apply`]'s work when there are operations, out of the run loop's line.
#[inline(never)]
fn apply_ops<B: Backend, S>(backend: &mut B, core: &mut Core<S>) {
    let mut ops = std::mem::take(&mut core.ops);
    for op in ops.drain(..) {
        match op {
            Op::Register(fd, token) => {
                if backend.register(fd, token).is_err() {
                    core.unwatchable(token);
                }
            }
            Op::Refuse(fd) => backend.refuse(fd),
            Op::ShutdownWrite(fd, token) => backend.shutdown_write(fd, token),
            Op::Close(fd, token) => backend.close(fd, token),
            Op::Resume(fd, token) => backend.resume_read(fd, token),
        }
    }
    if core.ops.is_empty() {
        core.ops = ops; // keep the allocation
    }
}

/// Runs one worker until shutdown completes.
pub(crate) fn run<H: Handler, B: Backend>(
    mut backend: B,
    mut handler: H,
    config: &Config,
    inbox: Inbox<H>,
    worker: u16,
    peers: Peers,
) -> io::Result<WorkerReport> {
    let mut core = Core::<H::State>::new(config, worker, peers);
    let mut report = WorkerReport::default();
    let clock = Clock {
        start: Instant::now(),
        tick: config.timer_tick,
    };
    let mut deadline: Option<Instant> = None;
    let mut before = WorkerStats::default();
    // When the last turn ended (one clock read serves its duration and the next sleep).
    let mut ended = clock.start;
    loop {
        let mut timeout = next_timeout(&core, &clock, deadline, ended);
        if timeout != Some(Duration::ZERO) && core.trim_memory() {
            timeout = Some(timeout.map_or(TRIM_WAIT, |t| t.min(TRIM_WAIT)));
        }
        backend.wait(timeout)?;
        // Read after the wait, before any of its events: a connection accepted now has its
        // handshake timer start now, not when the worker went to sleep. The same reading
        // starts the turn's duration (one clock read more per turn, none per message).
        let turn = Instant::now();
        core.set_now(clock.tick_at(turn));
        let mut dispatch = Dispatch {
            h: &mut handler,
            core: &mut core,
            woken: false,
        };
        backend.dispatch(&mut dispatch);
        let woken = dispatch.woken || inbox.posted();
        let counters = backend.counters();
        core.stats.recv_enobufs = counters.recv_enobufs;
        core.stats.accept_backoffs = counters.accept_backoffs;
        apply(&mut backend, &mut core);

        core.advance(&mut handler);
        apply(&mut backend, &mut core);

        if woken {
            let mut shutdown = false;
            inbox.clear_pending();
            while let Ok(mail) = inbox.publishes.try_recv() {
                match mail {
                    PeerMail::Publish(p) => core.remote_publish(p),
                    PeerMail::Metrics(ask) => core.answer_ask(ask),
                }
            }
            core.poll_scrapes();
            while let Ok(c) = inbox.commands.try_recv() {
                match c {
                    Command::Shutdown => shutdown = true,
                    c => command(&mut handler, &mut core, c),
                }
            }
            core.reap(&mut handler);
            if shutdown && deadline.is_none() {
                deadline = Some(Instant::now() + config.shutdown_timeout);
                report.at_shutdown = core.conns.len();
                before = core.stats;
                backend.stop_accepting();
                core.shutdown_all();
            }
            apply(&mut backend, &mut core);
        }

        // Everything this turn produced leaves now: one write per connection.
        core.flush_dirty(&mut handler, &mut backend);
        apply(&mut backend, &mut core);
        ended = Instant::now();
        core.turn_took(ended.saturating_duration_since(turn));

        if let Some(d) = deadline
            && (core.conns.is_empty() || ended >= d)
        {
            // Every connection open at shutdown lands in exactly one bucket: no new ones
            // arrived since (accepting stopped), and each removal counted as clean or not.
            let ended_cleanly = core.stats.closed_cleanly - before.closed_cleanly;
            let ended_otherwise = core.stats.closed_abnormally - before.closed_abnormally;
            report.forced = core.conns.len();
            report.closed_cleanly = ended_cleanly as usize;
            report.closed_uncleanly = ended_otherwise as usize;
            core.abort_all(&mut handler);
            apply(&mut backend, &mut core);
            backend.finish();
            report.stats = core.stats;
            return Ok(report);
        }
    }
}

/// Sleep until the next tick when timers or a shutdown deadline are pending; `now` is
/// the clock read at the end of the last turn.
fn next_timeout<S>(
    core: &Core<S>,
    clock: &Clock,
    deadline: Option<Instant>,
    now: Instant,
) -> Option<Duration> {
    if core.timers_behind() {
        return Some(Duration::ZERO); // a large bucket is being worked through
    }
    if core.wheel.is_empty() && deadline.is_none() {
        return None;
    }
    let next = clock.at(core.now);
    Some(next.saturating_duration_since(now))
}

fn command<H: Handler>(h: &mut H, core: &mut Core<H::State>, c: Command<H>) {
    match c {
        Command::Send { id, kind, payload } => {
            if let Some(key) = core.lookup_id(id) {
                let _ = core.send_message(key, kind, crate::core::Payload::Shared(payload));
                core.reap(h);
            }
        }
        Command::Close { id, code, reason } => {
            if let Some(key) = core.lookup_id(id) {
                core.close(key, code, &reason);
            }
        }
        Command::Run(job) => {
            core.run_job(|core| job(h, &mut Connections { core }));
            core.reap(h);
        }
        Command::Shutdown => {}
    }
}
