//! The epoll backend, through mio: edge-triggered readiness, reads into one per-worker
//! receive buffer, writes with `sendmsg` from the core's output.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Waker};

use super::{
    ACCEPT_BACKOFF, Backend, BackendCounters, Handed, Sink, Token, Wake, out_of_descriptors,
};
use crate::config::{BackendKind, Config};
use crate::output::{IOV_BATCH, Outbox, Piece};
use crate::syscall::syscall;

const WAKER: mio::Token = mio::Token(usize::MAX - 1);
/// Listener `i` is token `LISTENERS - i` (connection tokens never come near: their low
/// half is a slab key).
const LISTENERS: usize = usize::MAX - 2;
/// How many listeners a worker may have.
const MAX_LISTENERS: usize = 8;

/// The listener index of a mio token, if it names one.
fn listener_of(token: mio::Token) -> Option<usize> {
    let i = LISTENERS.checked_sub(token.0)?;
    (i < MAX_LISTENERS).then_some(i)
}
/// Accepts per readiness event before yielding to other work (fairness under a flood).
const ACCEPT_BATCH: usize = 512;
/// Reads of one connection per readiness event before yielding to the others.
const READ_BATCH: usize = 8;

/// epoll via mio.
pub struct Epoll {
    poll: Poll,
    events: Events,
    /// The worker's listeners, by index; emptied when accepting stops.
    listeners: Vec<OwnedFd>,
    recv: Box<[u8]>,
    /// Connections with input left unread after their batch, or resumed after a pause:
    /// edge-triggered epoll will not report them again, so they are polled here.
    again: Vec<(RawFd, Token)>,
    /// The accept queue may hold more: accept again without waiting for a new edge.
    accept_again: bool,
    /// Accepting stopped at the descriptor limit; try again at this instant, or as soon as
    /// a connection closes (which frees a descriptor).
    accept_retry: Option<Instant>,
    counters: BackendCounters,
}

/// Wakes an [`Epoll`] worker (an eventfd registered with its poll).
pub struct EpollWaker(Arc<Waker>);

impl Wake for EpollWaker {
    fn wake(&self) -> io::Result<()> {
        self.0.wake()
    }
}

fn encode(token: Token) -> mio::Token {
    mio::Token(((token.generation as usize) << 32) | token.key as usize)
}

fn decode(token: mio::Token) -> Token {
    Token {
        key: token.0 as u32,
        generation: (token.0 >> 32) as u32,
    }
}

impl Epoll {
    /// Accepts on every listener (`accept_again` covers them all: a listener with an
    /// empty queue costs one `accept4` that says so).
    fn accept_all(&mut self, sink: &mut impl Sink) {
        self.accept_again = false;
        for i in 0..self.listeners.len() {
            if self.accept_retry.is_none() {
                self.accept(i, sink);
            }
        }
    }

    fn accept(&mut self, index: usize, sink: &mut impl Sink) {
        let Some(listener) = self.listeners.get(index).map(|l| l.as_raw_fd()) else {
            return;
        };
        for _ in 0..ACCEPT_BATCH {
            match accept(listener) {
                Ok(Some(fd)) => sink.accepted(fd, index),
                Ok(None) => return,
                // The connection stays queued; an edge-triggered listener raises no new edge
                // for it, so retry after a close or a back-off instead of spinning or
                // forgetting it.
                Err(e) if e.raw_os_error().is_some_and(out_of_descriptors) => {
                    self.counters.accept_backoffs += 1;
                    self.accept_retry = Some(Instant::now() + ACCEPT_BACKOFF);
                    return;
                }
                // ECONNABORTED and friends concern one connection.
                Err(_) => continue,
            }
        }
        self.accept_again = true;
    }

    /// Reads a connection until it would block, it ends, or its batch is used up. With
    /// `to_end` (the event said the peer closed), a short read is not taken as drained: the
    /// FIN came with that edge and no later edge will announce it.
    fn read_conn(&mut self, fd: RawFd, token: Token, to_end: bool, sink: &mut impl Sink) {
        for _ in 0..READ_BATCH {
            match read(fd, &mut self.recv) {
                Ok(None) => return,
                Ok(Some(0)) => return sink.input_closed(token, None),
                Ok(Some(n)) => {
                    if !sink.input(token, &mut self.recv[..n]) {
                        return;
                    }
                    if n < self.recv.len() && !to_end {
                        // A short read drained the socket; the next arrival raises a new edge.
                        return;
                    }
                }
                Err(e) => return sink.input_closed(token, Some(e)),
            }
        }
        self.again.push((fd, token));
    }

    /// Whether an accept retry is due now.
    fn retry_due(&self) -> bool {
        self.accept_retry.is_some_and(|at| Instant::now() >= at)
    }
}

impl Backend for Epoll {
    type Waker = EpollWaker;
    const KIND: BackendKind = BackendKind::Epoll;

    fn new(listeners: Vec<OwnedFd>, config: &Config) -> io::Result<Self> {
        if listeners.len() > MAX_LISTENERS {
            return Err(io::Error::other("too many listeners for one worker"));
        }
        let poll = Poll::new()?;
        for (i, l) in listeners.iter().enumerate() {
            poll.registry().register(
                &mut SourceFd(&l.as_raw_fd()),
                mio::Token(LISTENERS - i),
                Interest::READABLE,
            )?;
        }
        Ok(Epoll {
            poll,
            events: Events::with_capacity(1024),
            listeners,
            recv: vec![0; config.recv_buffer].into_boxed_slice(),
            again: Vec::new(),
            accept_again: false,
            accept_retry: None,
            counters: BackendCounters::default(),
        })
    }

    fn waker(&self) -> io::Result<EpollWaker> {
        Ok(EpollWaker(Arc::new(Waker::new(
            self.poll.registry(),
            WAKER,
        )?)))
    }

    fn register(&mut self, fd: RawFd, token: Token) -> io::Result<()> {
        // Both interests once, edge-triggered: no epoll_ctl per write or per pause.
        let interest = Interest::READABLE | Interest::WRITABLE;
        self.poll
            .registry()
            .register(&mut SourceFd(&fd), encode(token), interest)
    }

    fn refuse(&mut self, fd: RawFd) {
        crate::net::close(fd);
        self.freed();
    }

    fn shutdown_write(&mut self, fd: RawFd, _token: Token) {
        shutdown_write(fd);
    }

    fn close(&mut self, fd: RawFd, _token: Token) {
        // No EPOLL_CTL_DEL first: the engine never duplicates a connection's descriptor, so
        // close(2) drops the last reference and the kernel removes it from the epoll set
        // itself (one syscall per close instead of two). Events already returned for it
        // carry the old token's generation and are ignored.
        self.again.retain(|&(f, _)| f != fd);
        crate::net::close(fd);
        self.freed();
    }

    fn stop_accepting(&mut self) {
        for fd in self.listeners.drain(..) {
            let _ = self
                .poll
                .registry()
                .deregister(&mut SourceFd(&fd.as_raw_fd()));
        }
        self.accept_again = false;
        self.accept_retry = None;
    }

    fn send(&mut self, fd: RawFd, _token: Token, out: &mut Outbox) -> io::Result<Handed> {
        let mut total = 0;
        while !out.is_empty() {
            let mut iov = [io::IoSlice::new(&[]); IOV_BATCH];
            let (count, want) = out.slices(&mut iov);
            let n = write_vectored(fd, &iov[..count])?;
            out.consume(n);
            total += n;
            if n < want {
                // Full: edge-triggered EPOLLOUT reports `writable` when it drains.
                break;
            }
        }
        Ok(Handed::Wrote(total))
    }

    fn send_direct(&mut self, fd: RawFd, _token: Token, piece: &Piece) -> io::Result<Handed> {
        crate::net::send_now(fd, piece.as_slice()).map(Handed::Wrote)
    }

    fn resume_read(&mut self, fd: RawFd, token: Token) {
        self.again.push((fd, token));
    }

    fn wait(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        let busy = !self.again.is_empty() || self.accept_again || self.retry_due();
        let timeout = match (busy, self.accept_retry) {
            (true, _) => Some(Duration::ZERO),
            (false, Some(at)) => {
                let left = at.saturating_duration_since(Instant::now());
                Some(timeout.map_or(left, |t| t.min(left)))
            }
            (false, None) => timeout,
        };
        match self.poll.poll(&mut self.events, timeout) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                self.events.clear();
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    fn dispatch(&mut self, sink: &mut impl Sink) {
        let mut again = std::mem::take(&mut self.again);
        for (fd, token) in again.drain(..) {
            // A connection closed earlier in this round may have handed its fd to a new one.
            if sink.reader(token) == Some(fd) {
                self.read_conn(fd, token, true, sink);
            }
        }
        if self.again.is_empty() {
            self.again = again; // keep the allocation
        }
        if self.retry_due() {
            self.accept_retry = None;
            self.accept_again = true;
        }
        if self.accept_again && self.accept_retry.is_none() {
            self.accept_all(sink);
        }
        let events = std::mem::replace(&mut self.events, Events::with_capacity(0));
        for event in events.iter() {
            if let Some(i) = listener_of(event.token()) {
                if self.accept_retry.is_none() {
                    self.accept(i, sink);
                }
                continue;
            }
            match event.token() {
                WAKER => sink.woken(),
                t => {
                    let token = decode(t);
                    let closed = event.is_read_closed() || event.is_error();
                    if event.is_readable() || closed {
                        // The sink resolves the token to its descriptor; a stale token
                        // (connection gone) makes `input` a no-op.
                        // A paused connection is skipped: its edge is not lost, because
                        // resume_read puts it on the `again` list to read until it would block.
                        if let Some(fd) = sink.ready(token, event.is_writable()) {
                            self.read_conn(fd, token, closed, sink);
                        }
                    } else if event.is_writable() {
                        sink.writable(token);
                    }
                }
            }
        }
        self.events = events;
    }

    fn finish(&mut self) {
        // Nothing is in flight: every write is synchronous and the receive buffer is ours.
    }

    fn counters(&self) -> BackendCounters {
        self.counters
    }
}

impl Epoll {
    /// A descriptor was freed: if accepting stopped at the limit, try again now.
    fn freed(&mut self) {
        if self.accept_retry.take().is_some() {
            self.accept_again = true;
        }
    }
}

/// Accepts one connection, non-blocking and close-on-exec; Nagle is off through the
/// listener (frames are written whole; waiting to coalesce only adds latency).
/// `Ok(None)`: queue empty.
fn accept(listener: RawFd) -> io::Result<Option<RawFd>> {
    let flags = libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC;
    // SAFETY: null address pointers are allowed: we do not ask for the peer's address.
    match syscall!(accept4(
        listener,
        std::ptr::null_mut(),
        std::ptr::null_mut(),
        flags
    )) {
        Ok(fd) => Ok(Some(fd)),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
        Err(e) => Err(e),
    }
}

/// Writes as much of `bufs` as the socket takes now. `Ok(0)` with non-empty input means
/// the socket is full (would block). `sendmsg` with `MSG_NOSIGNAL` rather than `writev`: a
/// write to a connection the peer reset must fail with EPIPE, not raise SIGPIPE in a host
/// program that never ignored it.
fn write_vectored(fd: RawFd, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
    // SAFETY: msghdr is plain old data; all zeroes is a valid empty header.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = bufs.as_ptr() as *mut libc::iovec;
    msg.msg_iovlen = bufs.len().min(libc::UIO_MAXIOV as usize) as _;
    // SAFETY: IoSlice is ABI-compatible with iovec; `bufs` outlives the call and the kernel
    // only reads from these buffers; no address or control data is passed.
    match syscall!(raw SYS_sendmsg(fd, &raw const msg, libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT)) {
        Ok(n) => Ok(n as usize),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(0),
        Err(e) => Err(e),
    }
}

/// Reads into `buf`. `Ok(None)` means nothing is there now (would block).
fn read(fd: RawFd, buf: &mut [u8]) -> io::Result<Option<usize>> {
    loop {
        // SAFETY: `buf` is valid for writes of `buf.len()` bytes for the duration of the call.
        match syscall!(raw SYS_read(fd, buf.as_mut_ptr(), buf.len())) {
            Ok(n) => return Ok(Some(n as usize)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Half-closes the write side so the peer sees FIN after the bytes already sent (our
/// close frame), while unread input does not turn the close into a reset.
fn shutdown_write(fd: RawFd) {
    // SAFETY: plain syscall on a descriptor the engine owns.
    let _ = syscall!(shutdown(fd, libc::SHUT_WR));
}
