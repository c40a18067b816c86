//! The io_uring backend: one ring per worker (single issuer, deferred task work),
//! multishot accept, multishot receive into a provided-buffer ring, sends from the
//! connection's outbox with at most one in flight per connection, and an eventfd read on
//! the ring for cross-thread wakeups. One `io_uring_enter` per turn of the run loop both
//! submits the turn's sends and waits for the next completions.
//!
//! Every submission carries its connection's key and generation in `user_data`, so a
//! completion for a connection that is gone (and whose slot may hold a new one) is
//! recognised and dropped; its receive buffer still goes back to the ring.

mod bufring;
pub mod probe;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::io;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use io_uring::types::{CancelBuilder, Fd, SubmitArgs, Timespec};
use io_uring::{IoUring, cqueue, opcode, squeue};
use slab::Slab;

use super::arena::Piece;
use super::{Backend, Handed, IOV_BATCH, Outbox, Sink, Token, Wake, syscall};
use crate::config::BackendKind;
use bufring::BufRing;

/// Send records kept allocated once none is in flight.
const KEEP_SENDS: usize = 4096;
/// Submission queue entries per ring (the completion queue is four times larger).
const SQ_ENTRIES: u32 = 4096;
/// Provided buffers: with incremental consumption a few large ones serve everyone.
const INC_BUFFERS: (u16, u32) = (256, 16 << 10);
/// Without it every receive takes a whole buffer, so more, smaller ones.
const WHOLE_BUFFERS: (u16, u32) = (1024, 4 << 10);

// user_data: operation in the top 4 bits, then a 28-bit key, then a 32-bit generation
// (for sends: the slot of the send record instead of key and generation).
const OP_ACCEPT: u64 = 1;
const OP_RECV: u64 = 2;
const OP_SEND: u64 = 3;
const OP_WAKE: u64 = 4;
const OP_CANCEL: u64 = 5;
const KEY_BITS: u32 = 28;

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

/// A receive that is not simply armed. Connections in the common state (a multishot
/// receive armed) have no entry, so an idle connection costs the backend nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Recv {
    /// Cancelled (reading paused or connection closing); waiting for its last completion.
    /// `resume`: arm again when it arrives.
    Cancelling { resume: bool },
    /// Nothing armed: paused, or ended by an empty buffer ring and waiting to re-arm.
    Idle,
}

/// Input that arrived for a paused connection before its receive was cancelled: kept in
/// its receive buffer (pinned) and delivered on resume, so pausing bounds what the core
/// buffers however much the kernel had already received.
#[derive(Debug, Clone, Copy)]
struct Held {
    bid: u16,
    start: u32,
    len: u32,
}

/// A buffer a send reads from, kept alive until the send completes.
enum Buf {
    /// A direct piece (arena or shared frame, non-atomic count), or an outbox's head.
    Piece(Piece),
    /// A sealed stage or a shared frame from an outbox.
    Bytes(Bytes),
}

impl Buf {
    fn as_slice(&self) -> &[u8] {
        match self {
            Buf::Piece(p) => p.as_slice(),
            Buf::Bytes(b) => b,
        }
    }

    fn advance(&mut self, n: usize) {
        match self {
            Buf::Piece(p) => p.advance(n),
            Buf::Bytes(b) => bytes::Buf::advance(b, n),
        }
    }
}

/// A send of several buffers: boxed so the msghdr and iovecs keep their address while
/// the slab of sends grows.
struct Multi {
    bufs: Vec<Buf>,
    iov: Vec<libc::iovec>,
    msg: libc::msghdr,
}

/// One send in flight (at most one per connection: the core waits for its end).
struct SendOp {
    token: Token,
    fd: RawFd,
    /// Whether the core counts these bytes (outbox) or not (direct piece).
    counted: bool,
    /// Bytes not yet confirmed.
    left: usize,
    /// The one buffer of a plain `send`.
    one: Option<Buf>,
    /// Or several, for a `sendmsg`.
    multi: Option<Box<Multi>>,
}

/// io_uring.
pub struct Uring {
    // Field order matters: the ring is dropped (closed) before the buffer memory it
    // points into is unmapped.
    ring: IoUring,
    bufs: BufRing,
    listener: Option<RawFd>,
    accept_armed: bool,
    wake: Arc<EventFd>,
    wake_buf: Box<u64>,
    /// Sends in flight; `user_data` holds the slot.
    sends: Slab<SendOp>,
    /// Multi-buffer records kept for reuse.
    #[allow(clippy::vec_box)]
    spare: Vec<Box<Multi>>,
    /// Descriptors of closed connections: closed after the submit that carries their
    /// cancel (a cancel by descriptor needs the number to still name the socket).
    closing: Vec<RawFd>,
    /// Completions taken off the queue while submitting (the submission queue was full),
    /// handled at the next poll so the completion queue cannot overflow.
    backlog: Vec<(u64, i32, u32)>,
    recv: KeyMap<Recv>,
    /// Receives ended by an empty buffer ring, re-armed once buffers are back.
    starved: Vec<(RawFd, Token)>,
    /// Paused connections' undelivered input, in arrival order.
    held: KeyMap<Vec<Held>>,
    /// Resumed connections whose held input is delivered at the next poll.
    deliver: Vec<Token>,
    /// Held pieces per buffer, and whether the kernel is done with it: a buffer goes back
    /// to the ring when both say so.
    pins: Box<[u16]>,
    done: Box<[bool]>,
    /// Completions drained from the queue, handled after it is released.
    batch: Vec<(u64, i32, u32)>,
    /// Operations submitted and not completed (for the final drain).
    in_flight: usize,
    /// Receives that found the buffer ring empty.
    pub enobufs: u64,
    wait: Wait,
    /// Sends queued since the last submit.
    sends_submitted: usize,
    /// Sends ask the kernel to finish short writes itself (`MSG_WAITALL`); tests turn it
    /// off to drive the backend's own continuation of a partial send.
    waitall: bool,
}

/// How a poll waits. With deferred task work the kernel wakes a waiting worker only once
/// as many completions are pending as it waits for; waiting for one each time (the
/// simple way) means that a worker faster than its peers sleeps and is woken for almost
/// every message, and each wakeup (an IPI, in the sender's context) is paid by the
/// peer's send. Under load the worker therefore waits for about half as many completions
/// as its last poll brought, and at most `min_wait_us` for them (then it takes what is
/// there), so one wakeup covers a batch; when the load is light (a poll brought one or
/// two) it waits for one and answers at once.
#[derive(Debug, Clone, Copy)]
struct Wait {
    /// Most completions waited for; 1 turns batching off.
    max_nr: usize,
    /// Longest wait for a batch once one completion is there.
    min_wait_us: u32,
    /// Receives (and accepts) the last poll handled.
    last: usize,
}

/// Default longest wait for a batch: small against the round trip over a network, and it
/// only applies while completions arrive faster than one per this interval.
const MIN_WAIT_US: u32 = 20;
/// Default most completions waited for.
const MAX_WAIT_NR: usize = 32;

impl Wait {
    /// The defaults, or `THRONG_URING_WAIT_NR` / `THRONG_URING_MIN_WAIT_US` (for A/B
    /// measurements); batching needs the kernel's minimum-wait timeout (6.12+).
    fn new(min_timeout: bool) -> Wait {
        let get = |k: &str, d: u32| {
            std::env::var(k)
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(d)
        };
        let max_nr = get("THRONG_URING_WAIT_NR", MAX_WAIT_NR as u32).max(1) as usize;
        Wait {
            max_nr: if min_timeout { max_nr } else { 1 },
            min_wait_us: get("THRONG_URING_MIN_WAIT_US", MIN_WAIT_US),
            last: 0,
        }
    }

    /// Completions to wait for now, and the batch timeout to go with them. `sends`: sends
    /// this submit carries; they mostly complete at once and must not count as the batch.
    fn next(&self, sends: usize) -> (usize, u32) {
        let nr = (self.last / 2).clamp(1, self.max_nr);
        if nr == 1 || self.min_wait_us == 0 {
            (1, 0)
        } else {
            (nr + sends, self.min_wait_us)
        }
    }
}

/// The worker's eventfd, written by other threads and read by the ring.
pub struct EventFd(RawFd);

impl Drop for EventFd {
    fn drop(&mut self) {
        super::close(self.0);
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

impl Uring {
    /// Queues a submission, making room by submitting when the queue is full.
    fn push(&mut self, entry: squeue::Entry) {
        self.in_flight += 1;
        loop {
            // SAFETY: every entry's buffers (receive ring, eventfd word, send records)
            // live in this backend until the operation's completion is handled, and
            // `finish` waits for all completions before the backend is dropped.
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

    fn arm_accept(&mut self) {
        if let Some(fd) = self.listener {
            // Blocking sockets: io_uring waits for readiness itself, and the core issues no
            // reads or writes of its own on them.
            let e = opcode::AcceptMulti::new(Fd(fd))
                .flags(libc::SOCK_CLOEXEC)
                .build()
                .user_data(user_data(OP_ACCEPT, 0, 0));
            self.push(e);
            self.accept_armed = true;
        }
    }

    fn arm_recv(&mut self, fd: RawFd, token: Token) {
        let e = opcode::RecvMulti::new(Fd(fd), bufring::GROUP)
            .build()
            .user_data(user_data(OP_RECV, token.key, token.generation));
        self.push(e);
    }

    fn arm_wake(&mut self) {
        let e = opcode::Read::new(Fd(self.wake.0), (&raw mut *self.wake_buf).cast(), 8)
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

    fn submit_send(&mut self, slot: usize) {
        let ud = (OP_SEND << 60) | slot as u64;
        // MSG_WAITALL: the kernel itself continues a short send on a stream socket, so a
        // partial completion reaches us only when the socket fails midway.
        let flags = match self.waitall {
            true => libc::MSG_NOSIGNAL | libc::MSG_WAITALL,
            false => libc::MSG_NOSIGNAL,
        };
        let op = &mut self.sends[slot];
        let entry = match (&op.one, &mut op.multi) {
            (Some(b), _) => {
                let b = b.as_slice();
                opcode::Send::new(Fd(op.fd), b.as_ptr(), b.len() as u32)
                    .flags(flags)
                    .build()
            }
            (None, Some(m)) => {
                m.msg.msg_iov = m.iov.as_mut_ptr();
                m.msg.msg_iovlen = m.iov.len() as _;
                opcode::SendMsg::new(Fd(op.fd), &raw const m.msg)
                    .flags(flags as u32)
                    .build()
            }
            (None, None) => unreachable!("a send has buffers"),
        };
        self.push(entry.user_data(ud));
    }

    /// Starts a send of `bufs` (in order) for a connection.
    fn start_send(&mut self, fd: RawFd, token: Token, counted: bool, mut bufs: Vec<Buf>) {
        let left = bufs.iter().map(|b| b.as_slice().len()).sum();
        let (one, multi) = if bufs.len() == 1 {
            (bufs.pop(), None)
        } else {
            let mut m = self.spare.pop().unwrap_or_else(|| {
                Box::new(Multi {
                    bufs: Vec::new(),
                    iov: Vec::new(),
                    // SAFETY: msghdr is plain old data; all zeroes is a valid empty header.
                    msg: unsafe { std::mem::zeroed() },
                })
            });
            m.iov.extend(bufs.iter().map(|b| libc::iovec {
                iov_base: b.as_slice().as_ptr() as *mut libc::c_void,
                iov_len: b.as_slice().len(),
            }));
            m.bufs = bufs;
            (None, Some(m))
        };
        let slot = self.sends.insert(SendOp {
            token,
            fd,
            counted,
            left,
            one,
            multi,
        });
        self.submit_send(slot);
    }

    fn on_accept(&mut self, res: i32, flags: u32, sink: &mut impl Sink) {
        if res >= 0 {
            sink.accepted(res);
        }
        if !cqueue::more(flags) {
            self.accept_armed = false;
            // EMFILE and friends end the multishot; arming again at once would spin, so
            // the next turn re-arms (the backlog keeps the connection meanwhile).
        }
    }

    fn on_recv(&mut self, token: Token, res: i32, flags: u32, sink: &mut impl Sink) {
        let live = sink.alive(token);
        if res > 0 {
            let bid = cqueue::buffer_select(flags).unwrap_or(0);
            let len = res as usize;
            let start = self.bufs.claim(bid, len);
            if live {
                let held = match self.held.is_empty() {
                    true => None,
                    false => self.held.get_mut(&token.key),
                };
                if let Some(held) = held {
                    held.push(Held {
                        bid,
                        start,
                        len: len as u32,
                    });
                    self.pins[bid as usize] += 1;
                } else if !sink.input(token, self.bufs.bytes(bid, start, len)) && sink.alive(token)
                {
                    self.pause(token);
                }
            }
            if self.bufs.finished(flags) {
                self.release(bid);
            }
        } else if let Some(bid) = cqueue::buffer_select(flags) {
            self.release(bid);
        }
        if cqueue::more(flags) {
            return;
        }
        // The multishot receive ended. A connection that is gone had its state dropped by
        // `close`; its key may already name a new connection, whose state stays.
        if !live || !sink.alive(token) {
            return;
        }
        let state = self.recv.remove(&token.key);
        match res {
            0 => return sink.input_closed(token, None),
            r if r < 0 && r != -libc::ENOBUFS && r != -libc::ECANCELED => {
                return sink.input_closed(token, Some(io::Error::from_raw_os_error(-r)));
            }
            _ => {}
        }
        if res == -libc::ENOBUFS {
            self.enobufs += 1;
        }
        let resume = !matches!(state, Some(Recv::Cancelling { resume: false }));
        match sink.reader(token) {
            Some(fd) if resume && res == -libc::ENOBUFS => self.starved.push((fd, token)),
            Some(fd) if resume => self.arm_recv(fd, token),
            // Paused (or asked to stay cancelled): `resume_read` arms it again.
            _ => {
                self.recv.insert(token.key, Recv::Idle);
            }
        }
    }

    /// Reading pauses: cancel the multishot receive; what it still delivers is held.
    fn pause(&mut self, token: Token) {
        self.held.entry(token.key).or_default();
        if let std::collections::hash_map::Entry::Vacant(e) = self.recv.entry(token.key) {
            e.insert(Recv::Cancelling { resume: false });
            self.cancel(user_data(OP_RECV, token.key, token.generation));
        }
    }

    /// The kernel is done with buffer `bid`: back to the ring unless input held in it
    /// still waits.
    fn release(&mut self, bid: u16) {
        let i = bid as usize % self.pins.len();
        if self.pins[i] == 0 {
            self.done[i] = false;
            self.bufs.give(bid);
        } else {
            self.done[i] = true;
        }
    }

    fn unpin(&mut self, bid: u16) {
        let i = bid as usize % self.pins.len();
        self.pins[i] -= 1;
        if self.pins[i] == 0 && self.done[i] {
            self.done[i] = false;
            self.bufs.give(bid);
        }
    }

    /// Drops a connection's held input.
    fn drop_held(&mut self, key: u32) {
        if let Some(held) = self.held.remove(&key) {
            for h in held {
                self.unpin(h.bid);
            }
        }
    }

    /// Delivers the held input of resumed connections, in order, until one pauses again.
    fn deliver_held(&mut self, sink: &mut impl Sink) {
        for token in std::mem::take(&mut self.deliver) {
            let Some(held) = self.held.remove(&token.key) else {
                continue;
            };
            let mut pieces = held.into_iter();
            for h in pieces.by_ref() {
                let mut keep = sink.alive(token);
                if keep {
                    let bytes = self.bufs.bytes(h.bid, h.start, h.len as usize);
                    keep = sink.input(token, bytes);
                }
                self.unpin(h.bid);
                if !keep {
                    break;
                }
            }
            let rest: Vec<Held> = pieces.collect();
            if sink.alive(token) && sink.reader(token).is_none() {
                // Paused again: keep the rest and stop the receive re-armed on resume.
                self.held.insert(token.key, rest);
                self.pause(token);
            } else {
                for h in rest {
                    self.unpin(h.bid);
                }
            }
        }
    }

    fn on_send(&mut self, slot: usize, res: i32, sink: &mut impl Sink) {
        let Some(op) = self.sends.get_mut(slot) else {
            return;
        };
        let token = op.token;
        if res < 0 || (res == 0 && op.left > 0) {
            // A zero-byte completion for a non-empty send: the socket is gone. (A cancel
            // at close lands here too; the core no longer knows the token then.)
            self.free_send(slot);
            let err = match res {
                0 => io::ErrorKind::WriteZero.into(),
                r => io::Error::from_raw_os_error(-r),
            };
            return sink.sent(token, Err(err), true);
        }
        let n = (res as usize).min(op.left);
        op.left -= n;
        let counted = if op.counted { n } else { 0 };
        if op.left == 0 {
            self.free_send(slot);
            return sink.sent(token, Ok(counted), true);
        }
        // Partial: continue from where the kernel stopped, before anything queued later.
        match (&mut op.one, &mut op.multi) {
            (Some(b), _) => b.advance(n),
            (None, Some(m)) => {
                let mut skip = n;
                let mut first = 0;
                while skip >= m.iov[first].iov_len {
                    skip -= m.iov[first].iov_len;
                    first += 1;
                }
                m.iov.drain(..first);
                m.bufs.drain(..first);
                let v = &mut m.iov[0];
                // SAFETY: `skip` < iov_len, so the new base stays inside the same buffer.
                v.iov_base = unsafe { v.iov_base.cast::<u8>().add(skip).cast() };
                v.iov_len -= skip;
            }
            (None, None) => {}
        }
        self.submit_send(slot);
        sink.sent(token, Ok(counted), false);
    }

    fn free_send(&mut self, slot: usize) {
        let op = self.sends.remove(slot);
        if let Some(mut m) = op.multi
            && self.spare.len() < 64
        {
            m.bufs.clear();
            m.iov.clear();
            self.spare.push(m);
        }
    }

    fn handle(&mut self, ud: u64, res: i32, flags: u32, sink: &mut impl Sink) {
        let (op, token) = decode(ud);
        let ends = !cqueue::more(flags);
        if op == OP_RECV || op == OP_ACCEPT {
            self.wait.last += 1;
        }
        match op {
            OP_ACCEPT => self.on_accept(res, flags, sink),
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
        if ends {
            self.in_flight -= 1;
        }
    }
}

impl Uring {
    /// A backend whose receive ring has `entries` buffers of `size` bytes (`flags`: ring
    /// flags such as incremental consumption), accepting on `listener` if given.
    fn with_buffers(
        listener: Option<RawFd>,
        (entries, size, flags): (u16, u32, u16),
    ) -> io::Result<Self> {
        let ring = probe::build_ring(SQ_ENTRIES)?;
        let _ = ring.submitter().register_ring_fd();
        let bufs = BufRing::new(&ring, entries, size, flags)?;
        let min_timeout = ring.params().is_feature_min_timeout();
        let efd = syscall!(eventfd(0, libc::EFD_CLOEXEC))?;
        let entries = bufs.entries();
        let mut u = Uring {
            ring,
            bufs,
            listener,
            accept_armed: false,
            wake: Arc::new(EventFd(efd)),
            wake_buf: Box::new(0),
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
            in_flight: 0,
            enobufs: 0,
            wait: Wait::new(min_timeout),
            sends_submitted: 0,
            waitall: true,
        };
        u.arm_accept();
        u.arm_wake();
        Ok(u)
    }
}

impl Backend for Uring {
    type Waker = UringWaker;
    const KIND: BackendKind = BackendKind::Uring;

    fn new(listener: RawFd, _recv_buffer: usize) -> io::Result<Self> {
        let features = probe::probe().map_err(|e| io::Error::new(io::ErrorKind::Unsupported, e))?;
        let buffers = match features.incremental_buffers {
            true => (INC_BUFFERS.0, INC_BUFFERS.1, bufring::RING_INC),
            false => (WHOLE_BUFFERS.0, WHOLE_BUFFERS.1, 0),
        };
        Uring::with_buffers(Some(listener), buffers)
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

    fn close(&mut self, fd: RawFd, token: Token) {
        // The receive and a send in flight each hold their own reference to the socket,
        // so close(2) alone would neither end them nor let the peer see the close.
        // shutdown(2) ends both at once (the receive completes with 0, a blocked send
        // with EPIPE; data already in the socket still leaves before the FIN), and their
        // completions are then ignored like any for a gone connection. It replaces an
        // io_uring cancel by descriptor, which the kernel serves by scanning every armed
        // request of the ring: one close cost O(connections), and closing 16,000 at once
        // spent 85% of the worker in `io_cancel_req_match`, long enough for pong timers
        // of connections whose close frames sat unread to expire.
        self.recv.remove(&token.key);
        // SAFETY: `fd` is this connection's socket, still open (closed below, later).
        let _ = unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
        // Closed only after the next submit: an entry still queued for this descriptor
        // must not find its number naming another socket.
        self.closing.push(fd);
        if !self.starved.is_empty() {
            self.starved.retain(|&(_, t)| t != token);
        }
        self.drop_held(token.key);
    }

    fn stop_accepting(&mut self) {
        if self.listener.take().is_some() && self.accept_armed {
            self.cancel(user_data(OP_ACCEPT, 0, 0));
        }
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

    fn send_direct(&mut self, fd: RawFd, token: Token, piece: &Piece) -> io::Result<Handed> {
        let slot = self.sends.insert(SendOp {
            token,
            fd,
            counted: false,
            left: piece.len(),
            one: Some(Buf::Piece(piece.clone())),
            multi: None,
        });
        self.submit_send(slot);
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

    fn poll(&mut self, timeout: Option<Duration>, sink: &mut impl Sink) -> io::Result<()> {
        if self.listener.is_some() && !self.accept_armed {
            self.arm_accept();
        }
        if !self.deliver.is_empty() {
            self.deliver_held(sink);
            self.bufs.publish();
        }
        let timeout =
            if self.starved.is_empty() && self.deliver.is_empty() && self.backlog.is_empty() {
                timeout
            } else {
                Some(Duration::ZERO)
            };
        let res = match (
            timeout,
            self.wait.next(std::mem::take(&mut self.sends_submitted)),
        ) {
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
        for fd in self.closing.drain(..) {
            super::close(fd);
        }
        self.wait.last = 0;
        let mut batch = std::mem::take(&mut self.batch);
        if !self.backlog.is_empty() {
            std::mem::swap(&mut batch, &mut self.backlog);
            for &(ud, res, flags) in &batch {
                self.handle(ud, res, flags, sink);
            }
        }
        loop {
            batch.clear();
            batch.extend(
                self.ring
                    .completion()
                    .map(|c| (c.user_data(), c.result(), c.flags())),
            );
            if batch.is_empty() {
                break;
            }
            for &(ud, res, flags) in &batch {
                self.handle(ud, res, flags, sink);
            }
        }
        self.batch = batch;
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
        Ok(())
    }

    fn enobufs(&self) -> u64 {
        self.enobufs
    }

    fn finish(&mut self) {
        // Cancel everything still in flight and wait (bounded) for the completions, so no
        // operation outlives the buffers it uses.
        let e = opcode::AsyncCancel2::new(CancelBuilder::any().all())
            .build()
            .user_data(user_data(OP_CANCEL, 0, 0));
        self.in_flight += 1;
        // SAFETY: a cancel references no memory.
        let _ = unsafe { self.ring.submission().push(&e) };
        for (_, _, flags) in std::mem::take(&mut self.backlog) {
            if !cqueue::more(flags) {
                self.in_flight = self.in_flight.saturating_sub(1);
            }
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        while self.in_flight > 0 && std::time::Instant::now() < deadline {
            let ts = Timespec::from(Duration::from_millis(50));
            let args = SubmitArgs::new().timespec(&ts);
            let _ = self.ring.submitter().submit_with_args(1, &args);
            let batch: Vec<_> = self
                .ring
                .completion()
                .map(|c| (c.user_data(), c.flags()))
                .collect();
            for (ud, flags) in batch {
                if !cqueue::more(flags) {
                    self.in_flight = self.in_flight.saturating_sub(1);
                }
                if ud >> 60 == OP_SEND {
                    let slot = (ud & ((1 << 60) - 1)) as usize;
                    if self.sends.contains(slot) {
                        self.sends.remove(slot);
                    }
                }
            }
            for fd in self.closing.drain(..) {
                super::close(fd);
            }
        }
    }
}
