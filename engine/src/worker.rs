//! The run loop of one worker: poll the backend, apply descriptor operations, advance the
//! timer wheel, read the mailbox. Generic over the backend, so each backend gets its own
//! monomorphized loop with no dynamic dispatch on the message path.

use std::io;
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::core::{Core, Op, Peers, WorkerStats};
use crate::handler::Handler;
use crate::mailbox::{Command, Connections, Inbox};
use crate::sys::{self, Backend, Sink, Token};

/// What a worker reports when it exits.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct WorkerReport {
    pub stats: WorkerStats,
    /// Connections open when shutdown began.
    pub at_shutdown: usize,
    /// Of those, closed with a completed close handshake.
    pub closed_cleanly: usize,
    /// Of those, cut at the deadline.
    pub forced: usize,
}

/// Connects backend events to the core (the backend's [`Sink`]).
struct Dispatch<'a, H: Handler> {
    h: &'a mut H,
    core: &'a mut Core<H::State>,
    woken: bool,
}

impl<H: Handler> Sink for Dispatch<'_, H> {
    fn reader(&self, token: Token) -> Option<RawFd> {
        let key = self.core.lookup(token)?;
        let c = &self.core.conns[key];
        (!c.has(crate::conn::READ_PAUSED)).then_some(c.fd)
    }

    fn alive(&self, token: Token) -> bool {
        self.core.lookup(token).is_some()
    }

    fn accepted(&mut self, fd: RawFd) {
        self.core.accept(fd);
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

    fn sent(&mut self, token: Token, result: io::Result<usize>, ended: bool) {
        if let Some(key) = self.core.lookup(token) {
            self.core.sent(self.h, key, result, ended);
        }
    }

    fn woken(&mut self) {
        self.woken = true;
    }
}

fn apply<B: Backend>(backend: &mut B, ops: &mut Vec<Op>) {
    for op in ops.drain(..) {
        match op {
            Op::Register(fd, token) => {
                if backend.register(fd, token).is_err() {
                    // Cannot watch it: close it; the core sees input_closed never, so the
                    // slab entry is reclaimed by the handshake timer.
                    sys::shutdown_write(fd);
                }
            }
            Op::Close(fd, token) => backend.close(fd, token),
            Op::Resume(fd, token) => backend.resume_read(fd, token),
        }
    }
}

/// Runs one worker until shutdown completes.
pub(crate) fn run<H: Handler, B: Backend>(
    mut backend: B,
    listener: RawFd,
    mut handler: H,
    config: &Config,
    inbox: Inbox<H>,
    worker: u16,
    peers: Peers,
) -> io::Result<WorkerReport> {
    let mut core = Core::<H::State>::new(config, worker, peers);
    let mut report = WorkerReport::default();
    let tick = config.timer_tick.max(Duration::from_millis(1));
    let start = Instant::now();
    let mut deadline: Option<Instant> = None;
    let mut clean_before = 0;
    loop {
        let timeout = next_timeout(&core, start, tick, deadline);
        let mut dispatch = Dispatch {
            h: &mut handler,
            core: &mut core,
            woken: false,
        };
        backend.poll(timeout, &mut dispatch)?;
        let woken = dispatch.woken;
        core.stats.recv_enobufs = backend.enobufs();
        apply(&mut backend, &mut core.ops);

        let now = 1 + (start.elapsed().as_nanos() / tick.as_nanos()) as u32;
        core.advance(&mut handler, now);
        apply(&mut backend, &mut core.ops);

        if woken {
            let mut shutdown = false;
            inbox.clear_pending();
            while let Ok(p) = inbox.publishes.try_recv() {
                core.remote_publish(p);
            }
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
                clean_before = core.stats.closed_cleanly;
                backend.stop_accepting();
                sys::close(listener);
                core.shutdown_all();
            }
            apply(&mut backend, &mut core.ops);
        }

        // Everything this turn produced leaves now: one write per connection.
        core.flush_dirty(&mut handler, &mut backend);
        apply(&mut backend, &mut core.ops);

        if let Some(d) = deadline
            && (core.conns.is_empty() || Instant::now() >= d)
        {
            report.forced = core.conns.len();
            core.abort_all(&mut handler);
            apply(&mut backend, &mut core.ops);
            backend.finish();
            report.closed_cleanly = (core.stats.closed_cleanly - clean_before) as usize;
            report.stats = core.stats;
            return Ok(report);
        }
    }
}

/// Sleep until the next tick when timers or a shutdown deadline are pending.
fn next_timeout<S>(
    core: &Core<S>,
    start: Instant,
    tick: Duration,
    deadline: Option<Instant>,
) -> Option<Duration> {
    if core.timers_behind() {
        return Some(Duration::ZERO); // a large bucket is being worked through
    }
    if core.wheel.is_empty() && deadline.is_none() {
        return None;
    }
    let next = start + tick * core.now;
    Some(next.saturating_duration_since(Instant::now()))
}

fn command<H: Handler>(h: &mut H, core: &mut Core<H::State>, c: Command<H>) {
    match c {
        Command::Send { id, text, payload } => {
            if let Some(key) = core.lookup_id(id) {
                let _ = core.send_message(key, text, crate::core::Payload::Shared(payload));
                core.reap(h);
            }
        }
        Command::Close { id, code, reason } => {
            if let Some(key) = core.lookup_id(id) {
                core.close(key, code, &reason);
            }
        }
        Command::Run(job) => {
            job(h, &mut Connections { core });
            core.reap(h);
        }
        Command::Shutdown => {}
    }
}
