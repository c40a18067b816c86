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

use super::{Backend, IOV_BATCH, Outbox, Sink, Token, Wake, syscall};
use crate::config::BackendKind;
use bufring::BufRing;

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

/// One send in flight: the buffers it reads from stay owned here until it completes.
struct SendOp {
    token: Token,
    fd: RawFd,
    bufs: Vec<Bytes>,
    iov: Vec<libc::iovec>,
    msg: libc::msghdr,
    /// Bytes not yet confirmed.
    left: usize,
    /// The connection closed: complete silently.
    orphan: bool,
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
    /// Boxed so the msghdr and iovecs keep their address while the slab grows.
    #[allow(clippy::vec_box)]
    sends: Slab<Box<SendOp>>,
    #[allow(clippy::vec_box)]
    spare: Vec<Box<SendOp>>,
    /// Connection key → slot of its send in flight.
    sending: KeyMap<u32>,
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
            let _ = self.ring.submit();
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
        let op = &mut self.sends[slot];
        let ud = (OP_SEND << 60) | slot as u64;
        let entry = if op.iov.len() == 1 {
            let v = op.iov[0];
            opcode::Send::new(Fd(op.fd), v.iov_base.cast(), v.iov_len as u32)
                .flags(libc::MSG_NOSIGNAL)
                .build()
        } else {
            op.msg.msg_iov = op.iov.as_mut_ptr();
            op.msg.msg_iovlen = op.iov.len() as _;
            opcode::SendMsg::new(Fd(op.fd), &raw const op.msg)
                .flags(libc::MSG_NOSIGNAL as u32)
                .build()
        };
        self.push(entry.user_data(ud));
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
                if let Some(held) = self.held.get_mut(&token.key) {
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
        // The multishot receive ended.
        let state = self.recv.remove(&token.key);
        if !live || !sink.alive(token) {
            return;
        }
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
        if op.orphan {
            return self.free_send(slot);
        }
        if res < 0 || (res == 0 && op.left > 0) {
            // A zero-byte completion for a non-empty send: the socket is gone.
            self.free_send(slot);
            let err = match res {
                0 => io::ErrorKind::WriteZero.into(),
                r => io::Error::from_raw_os_error(-r),
            };
            return sink.sent(token, Err(err));
        }
        let n = res as usize;
        op.left -= n.min(op.left);
        if op.left > 0 {
            // Partial: continue from where the kernel stopped, before anything queued later.
            let mut skip = n;
            let mut first = 0;
            while skip >= op.iov[first].iov_len {
                skip -= op.iov[first].iov_len;
                first += 1;
            }
            op.iov.drain(..first);
            op.bufs.drain(..first);
            let v = &mut op.iov[0];
            // SAFETY: `skip` < iov_len, so the new base stays inside the same buffer.
            v.iov_base = unsafe { v.iov_base.cast::<u8>().add(skip).cast() };
            v.iov_len -= skip;
            self.submit_send(slot);
        } else {
            self.free_send(slot);
        }
        sink.sent(token, Ok(n));
    }

    fn free_send(&mut self, slot: usize) {
        let mut op = self.sends.remove(slot);
        if !op.orphan && self.sending.get(&op.token.key) == Some(&(slot as u32)) {
            self.sending.remove(&op.token.key);
        }
        op.bufs.clear();
        op.iov.clear();
        if self.spare.len() < 1024 {
            self.spare.push(op);
        }
    }

    fn handle(&mut self, ud: u64, res: i32, flags: u32, sink: &mut impl Sink) {
        let (op, token) = decode(ud);
        let ends = !cqueue::more(flags);
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

impl Backend for Uring {
    type Waker = UringWaker;
    const KIND: BackendKind = BackendKind::Uring;

    fn new(listener: RawFd, _recv_buffer: usize) -> io::Result<Self> {
        let features = probe::probe().map_err(|e| io::Error::new(io::ErrorKind::Unsupported, e))?;
        let ring = probe::build_ring(SQ_ENTRIES)?;
        let _ = ring.submitter().register_ring_fd();
        let bufs = if features.incremental_buffers {
            BufRing::new(&ring, INC_BUFFERS.0, INC_BUFFERS.1, bufring::RING_INC)?
        } else {
            BufRing::new(&ring, WHOLE_BUFFERS.0, WHOLE_BUFFERS.1, 0)?
        };
        let efd = syscall!(eventfd(0, libc::EFD_CLOEXEC))?;
        let entries = bufs.entries();
        let mut u = Uring {
            ring,
            bufs,
            listener: Some(listener),
            accept_armed: false,
            wake: Arc::new(EventFd(efd)),
            wake_buf: Box::new(0),
            sends: Slab::new(),
            spare: Vec::new(),
            sending: KeyMap::default(),
            recv: KeyMap::default(),
            starved: Vec::new(),
            held: KeyMap::default(),
            deliver: Vec::new(),
            pins: vec![0; entries].into_boxed_slice(),
            done: vec![false; entries].into_boxed_slice(),
            batch: Vec::with_capacity(1024),
            in_flight: 0,
            enobufs: 0,
        };
        u.arm_accept();
        u.arm_wake();
        Ok(u)
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
        // Cancel by user_data, not by descriptor: the number may be reused at once.
        match self.recv.remove(&token.key) {
            Some(Recv::Idle) | Some(Recv::Cancelling { .. }) => {}
            None => self.cancel(user_data(OP_RECV, token.key, token.generation)),
        }
        if let Some(slot) = self.sending.remove(&token.key) {
            self.sends[slot as usize].orphan = true;
            self.cancel((OP_SEND << 60) | slot as u64);
        }
        self.starved.retain(|&(_, t)| t != token);
        self.drop_held(token.key);
        // The operations hold their own reference to the socket; closing the descriptor
        // now and cancelling them at this turn's submit ends the connection right away.
        super::close(fd);
    }

    fn stop_accepting(&mut self) {
        if self.listener.take().is_some() && self.accept_armed {
            self.cancel(user_data(OP_ACCEPT, 0, 0));
        }
    }

    fn send(&mut self, fd: RawFd, token: Token, out: &mut Outbox) -> io::Result<usize> {
        if out.is_empty() || self.sending.contains_key(&token.key) {
            return Ok(0);
        }
        out.seal();
        let mut op = self.spare.pop().unwrap_or_else(|| {
            Box::new(SendOp {
                token,
                fd,
                bufs: Vec::new(),
                iov: Vec::new(),
                // SAFETY: msghdr is plain old data; all zeroes is a valid empty header.
                msg: unsafe { std::mem::zeroed() },
                left: 0,
                orphan: false,
            })
        });
        op.token = token;
        op.fd = fd;
        op.orphan = false;
        op.left = 0;
        while op.bufs.len() < IOV_BATCH {
            let Some(b) = out.queue.pop_front() else {
                break;
            };
            op.iov.push(libc::iovec {
                iov_base: b.as_ptr() as *mut libc::c_void,
                iov_len: b.len(),
            });
            op.left += b.len();
            op.bufs.push(b);
        }
        let slot = self.sends.insert(op);
        self.sending.insert(token.key, slot as u32);
        self.submit_send(slot);
        Ok(0)
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
        let timeout = if self.starved.is_empty() && self.deliver.is_empty() {
            timeout
        } else {
            Some(Duration::ZERO)
        };
        let res = match timeout {
            None => self.ring.submit_and_wait(1),
            Some(d) => {
                let ts = Timespec::from(d);
                let args = SubmitArgs::new().timespec(&ts);
                self.ring.submitter().submit_with_args(1, &args)
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
        let mut batch = std::mem::take(&mut self.batch);
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

    fn finish(&mut self) {
        // Cancel everything still in flight and wait (bounded) for the completions, so no
        // operation outlives the buffers it uses.
        let e = opcode::AsyncCancel2::new(CancelBuilder::any().all())
            .build()
            .user_data(user_data(OP_CANCEL, 0, 0));
        self.in_flight += 1;
        // SAFETY: a cancel references no memory.
        let _ = unsafe { self.ring.submission().push(&e) };
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
        }
    }
}
