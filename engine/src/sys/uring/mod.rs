//! The io_uring backend: one ring per worker (single issuer, deferred task work),
//! multishot accept, multishot receive into a provided-buffer ring, sends from the
//! connection's outbox with at most one in flight per connection, and an eventfd read on
//! the ring for cross-thread wakeups. One `io_uring_enter` per turn of the run loop both
//! submits the turn's sends and waits for the next completions.
//!
//! Every submission carries its connection's key and generation in `user_data`, so a
//! completion for a connection that is gone (and whose slot may hold a new one) is
//! recognised and dropped; its receive buffer still goes back to the ring.
//!
//! Soundness rests on one rule: memory an operation refers to (receive buffers, the
//! eventfd word, a send's buffers and its `msghdr`) is not freed until the kernel has
//! posted that operation's last completion. [`Uring::settle`] cancels everything and
//! waits for those completions with no deadline; it runs in `finish` and again in `Drop`,
//! so a failed wait or a panic that unwinds through the worker cannot free memory the
//! kernel still uses. If the ring itself fails so that completions can no longer be
//! reaped, that memory is leaked, never freed.

mod bufring;
pub mod probe;
mod recv;
mod send;
#[cfg(test)]
mod tests;
mod wait;

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::io;
use std::mem::ManuallyDrop;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use io_uring::types::{CancelBuilder, Fd, SubmitArgs, Timespec};
use io_uring::{IoUring, cqueue, opcode, squeue};
use slab::Slab;

use super::{
    ACCEPT_BACKOFF, Backend, BackendCounters, Handed, Sink, Token, Wake, out_of_descriptors,
};
use crate::config::{BackendKind, Config};
use crate::output::{IOV_BATCH, Outbox, Piece};
use crate::syscall::syscall;
use bufring::BufRing;
use recv::{Held, Recv};
use send::{Buf, Multi, SendOp};
use wait::Wait;

/// Send records kept allocated once none is in flight.
const KEEP_SENDS: usize = 4096;
/// Submission queue entries per ring (the completion queue is four times larger).
const SQ_ENTRIES: u32 = 4096;
/// Deferred completions the kernel runs per wait unless more are waited for
/// (`IO_LOCAL_TW_DEFAULT_MAX` in `io_uring/tw.h`, Linux 6.11 and later): a poll that
/// brought this many probably left more behind.
const KERNEL_TW_BATCH: usize = 20;
/// Most deferred completions one [`Uring::run_deferred`] asks the kernel to run.
const DRAIN_NR: usize = 1024;
/// Drains per turn at most, so that a flood of completions cannot hold the turn's
/// timers and flush back for ever (8 x 1,024 completions).
const MAX_DRAINS: usize = 8;
/// Without incremental consumption every receive takes a whole buffer: buffers of this
/// size, as many as fit in the configured ring's memory.
const WHOLE_BUFFER: u32 = 4 << 10;

// user_data: operation in the top 4 bits, then a 28-bit key, then a 32-bit generation
// (for sends: the slot of the send record instead of key and generation).
const OP_ACCEPT: u64 = 1;
const OP_RECV: u64 = 2;
const OP_SEND: u64 = 3;
const OP_WAKE: u64 = 4;
const OP_CANCEL: u64 = 5;
const KEY_BITS: u32 = 28;
/// Most connections one io_uring worker can name in `user_data`.
pub const MAX_CONNECTIONS: usize = 1 << KEY_BITS;

fn user_data(op: u64, key: u32, generation: u32) -> u64 {
    debug_assert!(key < 1 << KEY_BITS);
    (op << 60) | ((key as u64) << 32) | generation as u64
}

fn decode(ud: u64) -> (u64, Token) {
    let token = Token {
        key: ((ud >> 32) as u32) & ((1 << KEY_BITS) - 1),
        generation: ud as u32,
    };
    (ud >> 60, token)
}

/// A map keyed by slab keys, which are already well spread: no hashing.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, _: &[u8]) {
        unreachable!("only u32 keys are hashed")
    }
    fn write_u32(&mut self, n: u32) {
        self.0 = n as u64;
    }
}

type KeyMap<V> = HashMap<u32, V, BuildHasherDefault<KeyHasher>>;

/// A completion taken off the queue: user data, result, flags.
type Cqe = (u64, i32, u32);

/// Operations the kernel holds: submitted, last completion not yet taken off the queue.
#[derive(Debug, Default)]
struct InFlight(usize);

impl InFlight {
    fn add(&mut self) {
        self.0 += 1;
        #[cfg(test)]
        tests::KERNEL_OPS.with(|k| k.set(self.0));
    }

    fn done(&mut self) {
        self.0 = self.0.saturating_sub(1);
        #[cfg(test)]
        tests::KERNEL_OPS.with(|k| k.set(self.0));
    }
}

/// io_uring.
pub struct Uring {
    ring: IoUring,
    /// The receive buffers the kernel writes into: freed only after [`Uring::settle`]
    /// succeeded (in `Drop`), leaked if it could not.
    bufs: ManuallyDrop<BufRing>,
    /// The worker's listeners, by index (the accept's user data names it); emptied when
    /// accepting stops.
    listeners: Vec<OwnedFd>,
    /// Whether listener `i`'s multishot accept is armed.
    accept_armed: Vec<bool>,
    /// Accepting stopped at the descriptor limit: re-arm at this instant, or as soon as a
    /// connection closes.
    accept_retry: Option<Instant>,
    wake: Arc<EventFd>,
    /// The word the armed eventfd read writes: freed like `bufs`.
    wake_buf: ManuallyDrop<Box<u64>>,
    /// Sends in flight; `user_data` holds the slot. Their buffers are kept (or leaked)
    /// like `bufs`.
    sends: Slab<SendOp>,
    /// Multi-buffer records kept for reuse.
    #[allow(clippy::vec_box)]
    spare: Vec<Box<Multi>>,
    /// Descriptors of closed connections, closed after the next submit: an entry queued
    /// earlier in the turn names its descriptor by number, and must find it still open
    /// (not closed, nor reused by another socket) when the kernel reads it.
    closing: Vec<RawFd>,
    /// Completions taken off the queue while submitting (the submission queue was full),
    /// handled at the next dispatch so the completion queue cannot overflow.
    backlog: Vec<Cqe>,
    recv: KeyMap<Recv>,
    /// Receives ended by an empty buffer ring, re-armed once buffers are back.
    starved: Vec<(RawFd, Token)>,
    /// Paused connections' undelivered input, in arrival order.
    held: KeyMap<Vec<Held>>,
    /// Resumed connections whose held input is delivered at the next dispatch.
    deliver: Vec<Token>,
    /// Held pieces per buffer, and whether the kernel is done with it: a buffer goes back
    /// to the ring when both say so.
    pins: Box<[u16]>,
    done: Box<[bool]>,
    /// Completions drained from the queue; `batch[batch_next..]` are not handled yet (a
    /// panic in a handler leaves them there, and `settle` accounts for them).
    batch: Vec<Cqe>,
    batch_next: usize,
    /// Operations submitted whose last completion has not been taken off the queue.
    in_flight: InFlight,
    counters: BackendCounters,
    wait: Wait,
    /// Sends ask the kernel to finish short writes itself (`MSG_WAITALL`); tests turn it
    /// off to drive the backend's own continuation of a partial send.
    waitall: bool,
    /// Receive completions and their bytes in this turn's dispatch so far (what sizes a
    /// drain).
    turn_recv: (usize, usize),
    /// Whether a direct piece is written by the worker first ([`Config::uring_direct_send`]).
    direct_send: bool,
}

/// The worker's eventfd, written by other threads and read by the ring.
pub struct EventFd(RawFd);

impl Drop for EventFd {
    fn drop(&mut self) {
        crate::net::close(self.0);
    }
}

/// Wakes a [`Uring`] worker.
pub struct UringWaker(Arc<EventFd>);

impl Wake for UringWaker {
    fn wake(&self) -> io::Result<()> {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to an eventfd this waker keeps open.
        syscall!(write(self.0.0, (&raw const one).cast(), 8)).map(drop)
    }
}

/// The receive ring's shape for a config: (buffers, bytes each, ring flags).
fn ring_shape(config: &Config, incremental: bool) -> (u16, u32, u16) {
    let count = config
        .uring_recv_buffers
        .next_power_of_two()
        .clamp(1, 1 << 15);
    let size = config.uring_recv_buffer_size;
    if incremental {
        (count as u16, size, bufring::RING_INC)
    } else {
        let total = count as u64 * size as u64;
        let whole = (total / WHOLE_BUFFER as u64).clamp(1, 1 << 15) as u16;
        (
            whole.next_power_of_two().min(1 << 15),
            WHOLE_BUFFER.min(size),
            0,
        )
    }
}

impl Uring {
    /// Queues a submission, making room by submitting when the queue is full.
    fn push(&mut self, entry: squeue::Entry) {
        self.in_flight.add();
        loop {
            // SAFETY: every entry's memory (receive ring, eventfd word, send records) lives
            // in this backend until the operation's last completion is taken off the
            // queue: `settle` waits for all of them before any of it is freed, and leaks
            // it if it cannot.
            if unsafe { self.ring.submission().push(&entry) }.is_ok() {
                return;
            }
            // Full (a broadcast to many): submit, and take the completions this produced
            // off their queue now so that a long run of sends cannot overflow it.
            let _ = self.ring.submit();
            let backlog = &mut self.backlog;
            backlog.extend(
                self.ring
                    .completion()
                    .map(|c| (c.user_data(), c.result(), c.flags())),
            );
        }
    }

    /// Arms the multishot accept of every listener that has none.
    fn arm_accept(&mut self) {
        for i in 0..self.listeners.len() {
            if self.accept_armed[i] {
                continue;
            }
            // Blocking sockets: io_uring waits for readiness itself, and the core issues no
            // reads or writes of its own on them.
            let e = opcode::AcceptMulti::new(Fd(self.listeners[i].as_raw_fd()))
                .flags(libc::SOCK_CLOEXEC)
                .build()
                .user_data(user_data(OP_ACCEPT, i as u32, 0));
            self.push(e);
            self.accept_armed[i] = true;
        }
    }

    /// Whether a listener is left without an armed accept.
    fn accept_unarmed(&self) -> bool {
        self.accept_armed.iter().any(|armed| !armed)
    }

    fn arm_recv(&mut self, fd: RawFd, token: Token) {
        let e = opcode::RecvMulti::new(Fd(fd), bufring::GROUP)
            .build()
            .user_data(user_data(OP_RECV, token.key, token.generation));
        self.push(e);
    }

    fn arm_wake(&mut self) {
        let word: *mut u64 = &mut **self.wake_buf;
        let e = opcode::Read::new(Fd(self.wake.0), word.cast(), 8)
            .build()
            .user_data(user_data(OP_WAKE, 0, 0));
        self.push(e);
    }

    fn cancel(&mut self, target: u64) {
        let e = opcode::AsyncCancel2::new(CancelBuilder::user_data(target))
            .build()
            .user_data(user_data(OP_CANCEL, 0, 0));
        self.push(e);
    }

    fn on_accept(&mut self, index: usize, res: i32, flags: u32, sink: &mut impl Sink) {
        if res >= 0 {
            sink.accepted(res, index);
        }
        if !cqueue::more(flags) {
            if let Some(armed) = self.accept_armed.get_mut(index) {
                *armed = false;
            }
            if res < 0 && out_of_descriptors(-res) {
                // The multishot ended with the connection still queued; re-arming at once
                // would fail again every turn. Wait for a close or the back-off.
                self.counters.accept_backoffs += 1;
                self.accept_retry = Some(Instant::now() + ACCEPT_BACKOFF);
            }
        }
    }

    /// Handles one completion. The operation's count is settled first, so that a panic in
    /// the sink leaves the accounting right for `settle`.
    fn handle(&mut self, (ud, res, flags): Cqe, sink: &mut impl Sink) {
        let (op, token) = decode(ud);
        if !cqueue::more(flags) {
            self.in_flight.done();
        }
        if op == OP_RECV || op == OP_ACCEPT {
            self.wait.last += 1;
        }
        if op == OP_RECV {
            self.turn_recv = (self.turn_recv.0 + 1, self.turn_recv.1 + res.max(0) as usize);
        }
        match op {
            OP_ACCEPT => self.on_accept(token.key as usize, res, flags, sink),
            OP_RECV => self.on_recv(token, res, flags, sink),
            OP_SEND => {
                let slot = (ud & ((1 << 60) - 1)) as usize;
                self.on_send(slot, res, sink)
            }
            OP_WAKE => {
                sink.woken();
                if res != -libc::ECANCELED {
                    self.arm_wake();
                }
            }
            _ => {}
        }
    }

    /// Has the kernel run up to `nr` of the ring's deferred completions now,
    /// without waiting. A wait for `nr` completions runs at most `max(20, nr)` of them
    /// ([`KERNEL_TW_BATCH`]) and leaves the rest queued behind, so without this a worker
    /// under load takes some 20 completions per turn and a wakeup (a posted job, a
    /// publish) queued behind thousands of them waits thousands / 20 turns: seconds, at
    /// 1M connections after a broadcast. Errors are the next wait's to report.
    fn run_deferred(&mut self, nr: usize) {
        let ts = Timespec::new();
        let args = SubmitArgs::new().timespec(&ts);
        let _ = self.ring.submitter().submit_with_args(nr, &args);
    }

    /// Handles the completions in `batch` from `batch_next` on.
    fn handle_batch(&mut self, sink: &mut impl Sink) {
        while let Some(&cqe) = self.batch.get(self.batch_next) {
            self.batch_next += 1;
            self.handle(cqe, sink);
        }
        self.batch.clear();
        self.batch_next = 0;
    }

    /// A descriptor was freed: if accepting stopped at the limit, re-arm now.
    fn freed(&mut self) {
        if self.accept_retry.take().is_some() && self.accept_unarmed() {
            self.arm_accept();
        }
    }

    /// A backend whose receive ring has `entries` buffers of `size` bytes (`flags`: ring
    /// flags such as incremental consumption), accepting on `listeners`.
    fn with_buffers(
        listeners: Vec<OwnedFd>,
        (entries, size, flags): (u16, u32, u16),
        config: &Config,
    ) -> io::Result<Self> {
        let ring = probe::build_ring(SQ_ENTRIES, config.uring_defer_taskrun)?;
        let _ = ring.submitter().register_ring_fd();
        let min_active = config.uring_recv_buffers_min.clamp(1, entries as usize) as u16;
        let bufs = BufRing::new(&ring, entries, size, flags, min_active)?;
        let min_timeout = ring.params().is_feature_min_timeout();
        let efd = syscall!(eventfd(0, libc::EFD_CLOEXEC))?;
        let entries = bufs.entries();
        let mut u = Uring {
            ring,
            bufs: ManuallyDrop::new(bufs),
            accept_armed: vec![false; listeners.len()],
            listeners,
            accept_retry: None,
            wake: Arc::new(EventFd(efd)),
            wake_buf: ManuallyDrop::new(Box::new(0)),
            sends: Slab::new(),
            spare: Vec::new(),
            closing: Vec::new(),
            backlog: Vec::new(),
            recv: KeyMap::default(),
            starved: Vec::new(),
            held: KeyMap::default(),
            deliver: Vec::new(),
            pins: vec![0; entries].into_boxed_slice(),
            done: vec![false; entries].into_boxed_slice(),
            batch: Vec::with_capacity(1024),
            batch_next: 0,
            in_flight: InFlight::default(),
            counters: BackendCounters::default(),
            wait: Wait::new(
                min_timeout,
                config.uring_wait_batch,
                config.uring_batch_wait,
            ),
            waitall: true,
            turn_recv: (0, 0),
            direct_send: config.uring_direct_send,
        };
        u.arm_accept();
        u.arm_wake();
        Ok(u)
    }

    /// Cancels every operation in flight and waits, with no deadline, until the kernel has
    /// posted the last completion of each, so that nothing the ring refers to is still in
    /// the kernel's hands. Returns false if the ring failed first (the caller must then
    /// leak what operations refer to). Completions are only counted here, not handled:
    /// nothing is re-armed.
    fn settle(&mut self) -> bool {
        // Completions already taken off the queue but not handled (a handler panicked in
        // the middle of a batch, or a full submission queue moved them to the backlog).
        let unhandled = self.batch[self.batch_next.min(self.batch.len())..]
            .iter()
            .chain(&self.backlog);
        for &(_, _, flags) in unhandled {
            if !cqueue::more(flags) {
                self.in_flight.done();
            }
        }
        self.batch.clear();
        self.batch_next = 0;
        self.backlog.clear();
        if self.in_flight.0 == 0 {
            self.close_pending();
            return true;
        }
        let e = opcode::AsyncCancel2::new(CancelBuilder::any().all())
            .build()
            .user_data(user_data(OP_CANCEL, 0, 0));
        self.in_flight.add();
        // SAFETY: a cancel refers to no memory.
        while unsafe { self.ring.submission().push(&e) }.is_err() {
            if self.ring.submit().is_err() {
                return false;
            }
        }
        while self.in_flight.0 > 0 {
            match self.ring.submit_and_wait(1) {
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::EINTR) | Some(libc::EBUSY) | Some(libc::ETIME)
                    ) => {}
                Err(_) => return false,
            }
            self.close_pending();
            for c in self.ring.completion() {
                if !cqueue::more(c.flags()) {
                    self.in_flight.done();
                }
            }
        }
        true
    }

    /// Closes the descriptors whose close waited for a submit.
    fn close_pending(&mut self) {
        for fd in self.closing.drain(..) {
            crate::net::close(fd);
        }
    }
}

impl Drop for Uring {
    fn drop(&mut self) {
        if self.settle() {
            // SAFETY: settle saw the last completion of every operation, so the kernel
            // refers to neither the receive buffers nor the eventfd word any more; they are
            // dropped once, here, and never used again.
            unsafe {
                ManuallyDrop::drop(&mut self.bufs);
                ManuallyDrop::drop(&mut self.wake_buf);
            }
        } else {
            // The kernel may still read or write this memory: leak it. The ring's own
            // descriptor is closed with the ring, which makes the kernel cancel what is
            // left; leaking keeps that from touching freed memory.
            std::mem::forget(std::mem::take(&mut self.sends));
            std::mem::forget(std::mem::take(&mut self.spare));
            #[cfg(test)]
            tests::LEAKED.with(|l| l.set(l.get() + 1));
        }
    }
}

impl Backend for Uring {
    type Waker = UringWaker;
    const KIND: BackendKind = BackendKind::Uring;

    fn new(listeners: Vec<OwnedFd>, config: &Config) -> io::Result<Self> {
        let features = probe::probe().map_err(|e| io::Error::new(io::ErrorKind::Unsupported, e))?;
        let shape = ring_shape(config, features.incremental_buffers);
        Uring::with_buffers(listeners, shape, config)
    }

    fn waker(&self) -> io::Result<UringWaker> {
        Ok(UringWaker(self.wake.clone()))
    }

    fn register(&mut self, fd: RawFd, token: Token) -> io::Result<()> {
        if token.key >= 1 << KEY_BITS {
            return Err(io::Error::other(
                "too many connections for one io_uring worker",
            ));
        }
        self.recv.remove(&token.key);
        self.drop_held(token.key);
        self.arm_recv(fd, token);
        Ok(())
    }

    fn refuse(&mut self, fd: RawFd) {
        crate::net::close(fd);
        self.freed();
    }

    fn shutdown_write(&mut self, fd: RawFd, _token: Token) {
        // Synchronous: what was handed over before is either in the socket already or in
        // a send the kernel queues ahead of the FIN.
        // SAFETY: plain syscall on a descriptor the engine owns.
        let _ = unsafe { libc::shutdown(fd, libc::SHUT_WR) };
    }

    fn close(&mut self, fd: RawFd, token: Token) {
        // The receive and a send in flight each hold their own reference to the socket,
        // so close(2) alone would neither end them nor let the peer see the close.
        // shutdown(2) ends both at once (the receive completes with 0, a blocked send
        // with EPIPE; data already in the socket still leaves before the FIN), and their
        // completions are then ignored like any for a gone connection. An io_uring cancel
        // by descriptor would do the same at O(connections) per close: the kernel serves
        // it by scanning every armed request of the ring.
        self.recv.remove(&token.key);
        // SAFETY: `fd` is this connection's socket, still open (closed after the submit).
        let _ = unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
        self.closing.push(fd);
        if !self.starved.is_empty() {
            self.starved.retain(|&(_, t)| t != token);
        }
        self.drop_held(token.key);
        self.freed();
    }

    fn stop_accepting(&mut self) {
        // The listeners close as dropped here.
        for (i, _) in std::mem::take(&mut self.listeners).into_iter().enumerate() {
            if self.accept_armed[i] {
                // The multishot holds its own reference to the listener; the cancel ends it.
                self.cancel(user_data(OP_ACCEPT, i as u32, 0));
            }
        }
        self.accept_armed.clear();
        self.accept_retry = None;
    }

    fn send(&mut self, fd: RawFd, token: Token, out: &mut Outbox) -> io::Result<Handed> {
        if out.is_empty() {
            return Ok(Handed::Wrote(0));
        }
        out.seal();
        let mut bufs = Vec::new();
        if let Some(p) = out.head.take() {
            bufs.push(Buf::Piece(p));
        }
        while bufs.len() < IOV_BATCH {
            let Some(b) = out.queue.pop_front() else {
                break;
            };
            bufs.push(Buf::Bytes(b));
        }
        self.start_send(fd, token, true, bufs);
        Ok(Handed::Taken)
    }

    /// Inlined into the flush loop: for the usual reply it is one system call.
    #[inline(always)]
    fn send_direct(&mut self, fd: RawFd, token: Token, piece: &Piece) -> io::Result<Handed> {
        if !self.direct_send {
            self.send_piece(fd, token, piece);
            return Ok(Handed::Taken);
        }
        // Nothing of this connection's is in flight (the core's rule), so a write now
        // keeps the order; the ring continues from where the socket stopped taking bytes.
        let n = crate::net::send_now(fd, piece.as_slice())?;
        if n == piece.len() {
            return Ok(Handed::Wrote(n));
        }
        self.send_rest(fd, token, piece, n);
        Ok(Handed::Taken)
    }

    fn resume_read(&mut self, fd: RawFd, token: Token) {
        if self.held.contains_key(&token.key) {
            self.deliver.push(token);
        }
        match self.recv.get_mut(&token.key) {
            Some(Recv::Cancelling { resume }) => *resume = true,
            Some(Recv::Idle) => {
                self.recv.remove(&token.key);
                self.arm_recv(fd, token);
            }
            None => {}
        }
    }

    fn wait(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        if self.accept_retry.is_some_and(|at| Instant::now() >= at) {
            self.accept_retry = None;
        }
        if self.accept_unarmed() && self.accept_retry.is_none() {
            self.arm_accept();
        }
        let busy = !(self.starved.is_empty() && self.deliver.is_empty() && self.backlog.is_empty());
        let timeout = match (busy, self.accept_retry) {
            (true, _) => Some(Duration::ZERO),
            (false, Some(at)) => {
                let left = at.saturating_duration_since(Instant::now());
                Some(timeout.map_or(left, |t| t.min(left)))
            }
            (false, None) => timeout,
        };
        let res = match (timeout, self.wait.next()) {
            (None, (1, _)) => self.ring.submit_and_wait(1),
            (None, (nr, us)) => {
                let args = SubmitArgs::new().min_wait_usec(us);
                self.ring.submitter().submit_with_args(nr, &args)
            }
            (Some(d), (nr, us)) => {
                let ts = Timespec::from(d);
                let (nr, us) = if d.is_zero() { (1, 0) } else { (nr, us) };
                let args = SubmitArgs::new().timespec(&ts).min_wait_usec(us);
                self.ring.submitter().submit_with_args(nr, &args)
            }
        };
        match res {
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ETIME) | Some(libc::EINTR) | Some(libc::EBUSY)
                ) => {}
            Err(e) => return Err(e),
        }
        self.close_pending();
        Ok(())
    }

    fn dispatch(&mut self, sink: &mut impl Sink) {
        if !self.deliver.is_empty() {
            self.deliver_held(sink);
            self.bufs.publish();
        }
        self.wait.last = 0;
        if !self.backlog.is_empty() {
            debug_assert!(self.batch.is_empty());
            std::mem::swap(&mut self.batch, &mut self.backlog);
            self.handle_batch(sink);
        }
        let mut drains = 0;
        self.turn_recv = (0, 0);
        loop {
            self.batch.extend(
                self.ring
                    .completion()
                    .map(|c| (c.user_data(), c.result(), c.flags())),
            );
            let got = self.batch.len();
            if got == 0 {
                break;
            }
            self.handle_batch(sink);
            if got >= KERNEL_TW_BATCH && drains < MAX_DRAINS {
                // Only while receives are small (at most 1/16 of a buffer on average), and
                // no more than half the circulating buffers hold at that average. Large
                // receives keep the kernel's batch: draining them ran the ring dry and
                // doubled the CPU per message at 16 KiB x 10,000, and even within the
                // ring's room left a few connections with 10-13% of the mean's echoes.
                let (recvs, bytes) = self.turn_recv;
                let avg = (bytes / recvs.max(1)).max(1);
                let size = self.bufs.size();
                let nr = if avg * 16 <= size {
                    (self.bufs.active() * size / 2 / avg).min(DRAIN_NR)
                } else {
                    0
                };
                if nr > KERNEL_TW_BATCH {
                    drains += 1;
                    self.bufs.publish();
                    self.run_deferred(nr);
                }
            }
        }
        if self.sends.is_empty() && self.sends.capacity() > KEEP_SENDS {
            self.sends = Slab::new(); // after a broadcast to many, do not keep its records
        }
        self.bufs.publish();
        for (fd, token) in std::mem::take(&mut self.starved) {
            if sink.reader(token) == Some(fd) {
                self.arm_recv(fd, token);
            } else if sink.alive(token) {
                self.recv.insert(token.key, Recv::Idle);
            }
        }
    }

    fn finish(&mut self) {
        // What cannot be settled is leaked by `Drop`, which settles again (a no-op once
        // this succeeded).
        let _ = self.settle();
    }

    fn counters(&self) -> BackendCounters {
        self.counters
    }
}
