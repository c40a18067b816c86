//! The I/O backend contract, written once. Each backend lives in its own file and never
//! imports another; the run loop in [`crate::worker`] only sees this contract.
//!
//! A backend is an event source and a writer: it accepts connections on the worker's
//! listener, reads bytes (into per-worker buffers, so an idle connection owns none), writes
//! a connection's [`Outbox`] when the core flushes it (once per turn of the run loop, so
//! everything a turn produced for a connection leaves in one write), and wakes the worker
//! when its mailbox has mail.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::os::fd::RawFd;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};

use arena::Piece;

pub mod arena;
pub mod epoll;
pub mod socket;
pub mod uring;

/// Calls a libc function and turns `-1` into the thread's `errno` as an `io::Error`.
macro_rules! syscall {
    ($fn:ident ( $($arg:expr),* $(,)? )) => {{
        #[allow(unused_unsafe)]
        // SAFETY: the caller passes arguments valid for this libc call (checked at each use).
        let res = unsafe { libc::$fn($($arg),*) };
        if res == -1 { Err(std::io::Error::last_os_error()) } else { Ok(res) }
    }};
}
pub(crate) use syscall;

/// Names a connection in backend events: the slab key and the connection's generation, so
/// an event for a reused slot is recognised and ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token {
    /// Slab key.
    pub key: u32,
    /// Generation of the connection that had this key when the event was requested.
    pub generation: u32,
}

/// What the run loop must react to. Delivered to a [`Sink`] while the backend polls.
pub trait Sink {
    /// The descriptor to read from, if the connection is live and takes input now: `None`
    /// while its reading is paused (output backed up). A backend must not read a paused
    /// connection; [`Backend::resume_read`] says when to start again.
    fn reader(&self, token: Token) -> Option<RawFd>;
    /// Whether `token` still names a live connection (paused or not).
    fn alive(&self, token: Token) -> bool;
    /// A connection was accepted on the worker's listener.
    fn accepted(&mut self, fd: RawFd);
    /// Bytes arrived for a connection. `bytes` is the backend's buffer, valid for this call
    /// only; the sink may unmask in place. Returns false to ask the backend to stop reading
    /// this connection for now (output backed up, or the connection is gone) until
    /// [`Backend::resume_read`]. Bytes delivered after a false are still processed, never
    /// lost, so a backend with reads already completed simply delivers them.
    fn input(&mut self, token: Token, bytes: &mut [u8]) -> bool;
    /// The peer closed its side (`None`) or the connection failed.
    fn input_closed(&mut self, token: Token, error: Option<io::Error>);
    /// The connection can take more output (readiness backends).
    fn writable(&mut self, token: Token);
    /// A send the backend took over (completion backends) progressed: `Ok(n)` bytes of
    /// counted output (taken from an [`Outbox`]; 0 for a direct piece, which the core does
    /// not count) went out, and `ended` says the send is over, so the connection may hand
    /// over output again. A partial send continues on its own. `Err`: the socket failed
    /// (the send is over).
    fn sent(&mut self, token: Token, result: io::Result<usize>, ended: bool);
    /// The worker's mailbox may hold mail.
    fn woken(&mut self);
}

/// A per-worker I/O backend.
pub trait Backend: Sized {
    /// Wakes the backend from another thread.
    type Waker: Wake;

    /// Which backend this is, for logs and tests.
    const KIND: crate::config::BackendKind;

    /// Sets up the backend around this worker's listener (already bound, non-blocking).
    fn new(listener: RawFd, recv_buffer: usize) -> io::Result<Self>;
    /// A waker for the worker's mailbox.
    fn waker(&self) -> io::Result<Self::Waker>;
    /// Starts watching an accepted connection (already non-blocking).
    fn register(&mut self, fd: RawFd, token: Token) -> io::Result<()>;
    /// Stops watching a connection and closes its descriptor, after whatever the backend
    /// has in flight for it is ended (so the peer sees the close now, not when a
    /// pending operation happens to finish). Later events for `token` are not delivered.
    fn close(&mut self, fd: RawFd, token: Token);
    /// Stops accepting (graceful shutdown); the caller closes the listener afterwards.
    fn stop_accepting(&mut self);
    /// Writes the connection's output, in order. A readiness backend writes what the socket
    /// takes (taken off the front of `out`), returns [`Handed::Wrote`] and reports
    /// `writable` when it takes more; a completion backend moves the buffers into its own
    /// send, returns [`Handed::Taken`], and reports through [`Sink::sent`]. The core never
    /// calls `send` or `send_direct` for a connection while a send it handed over is in
    /// flight (at most one per connection, so output stays in order).
    fn send(&mut self, fd: RawFd, token: Token, out: &mut Outbox) -> io::Result<Handed>;
    /// Writes one piece for a connection with nothing else pending (the common reply, a
    /// broadcast delivery): no outbox, no allocation. A readiness backend returns what the
    /// socket took (the core keeps the rest); a completion backend keeps the piece until
    /// its send completes.
    fn send_direct(&mut self, fd: RawFd, token: Token, piece: &Piece) -> io::Result<Handed>;
    /// The sink can take input for this connection again (after `input` returned false).
    fn resume_read(&mut self, fd: RawFd, token: Token);
    /// Waits for events (at most `timeout`) and delivers them to `sink`.
    fn poll(&mut self, timeout: Option<Duration>, sink: &mut impl Sink) -> io::Result<()>;
    /// The worker is exiting: settle whatever is still in flight before the backend's
    /// buffers are freed.
    fn finish(&mut self) {}
    /// Receives that found no buffer and waited for one (completion backends).
    fn enobufs(&self) -> u64 {
        0
    }
}

/// What a backend did with output handed to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handed {
    /// This many bytes went out now (readiness backends); the rest stays with the core.
    Wrote(usize),
    /// The backend took all of it and reports through [`Sink::sent`].
    Taken,
}

/// The cross-thread half of a backend's wakeup.
pub trait Wake: Send + Sync + 'static {
    /// Makes the worker's next (or current) poll return and report `woken`.
    fn wake(&self) -> io::Result<()>;
}

/// Output of one connection that the backend has not taken yet: a direct piece staged
/// before the outbox was needed, shared buffers, then the bytes staged this turn (small
/// frames copied back to back, so a turn's replies to one connection cost one buffer and
/// one iovec).
#[derive(Debug, Default)]
pub struct Outbox {
    /// Oldest: an arena piece that was to leave alone and was joined by later output.
    pub head: Option<Piece>,
    /// Whole buffers, in order: sealed stages and shared frames (a publish's one encoding).
    pub queue: VecDeque<Bytes>,
    /// Frames staged since the last seal; they go after `queue`.
    pub stage: BytesMut,
}

/// iovecs per vectored write.
pub const IOV_BATCH: usize = 64;

impl Outbox {
    /// Nothing waits.
    pub fn is_empty(&self) -> bool {
        self.head.is_none() && self.queue.is_empty() && self.stage.is_empty()
    }

    /// Moves the staged bytes to the end of the queue as one shared buffer (before a
    /// shared frame is queued after them, or before a backend takes ownership).
    pub fn seal(&mut self) {
        if !self.stage.is_empty() {
            self.queue.push_back(self.stage.split().freeze());
        }
    }

    /// Fills `iov` with the waiting bytes in order; returns how many slices and bytes.
    pub fn slices<'a>(&'a self, iov: &mut [IoSlice<'a>; IOV_BATCH]) -> (usize, usize) {
        let mut n = 0;
        let mut bytes = 0;
        let stage = (!self.stage.is_empty()).then_some(&self.stage[..]);
        let head = self.head.as_ref().map(|p| p.as_slice());
        for b in head
            .into_iter()
            .chain(self.queue.iter().map(|b| &b[..]))
            .chain(stage)
        {
            if n == IOV_BATCH {
                break;
            }
            iov[n] = IoSlice::new(b);
            bytes += b.len();
            n += 1;
        }
        (n, bytes)
    }

    /// Drops `n` written bytes from the front.
    pub fn consume(&mut self, mut n: usize) {
        if let Some(head) = self.head.as_mut() {
            let k = n.min(head.len());
            head.advance(k);
            n -= k;
            if head.is_empty() {
                self.head = None;
            }
        }
        while n > 0 {
            let Some(front) = self.queue.front_mut() else {
                self.stage.advance(n);
                break;
            };
            if front.len() <= n {
                n -= front.len();
                self.queue.pop_front();
            } else {
                front.advance(n);
                n = 0;
            }
        }
        if self.stage.is_empty() {
            // Back to the start of the allocation for the next turn.
            self.stage.clear();
        }
    }
}

/// Writes as much of `bufs` as the socket takes now. `Ok(0)` with non-empty input means
/// the socket is full (would block). `sendmsg` with `MSG_NOSIGNAL` rather than `writev`: a
/// write to a connection the peer reset must fail with EPIPE, not raise SIGPIPE in a host
/// program that never ignored it.
pub fn write_vectored(fd: RawFd, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
    // SAFETY: msghdr is plain old data; all zeroes is a valid empty header.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = bufs.as_ptr() as *mut libc::iovec;
    msg.msg_iovlen = bufs.len().min(libc::UIO_MAXIOV as usize) as _;
    // SAFETY: IoSlice is ABI-compatible with iovec; `bufs` outlives the call and the kernel
    // only reads from these buffers; no address or control data is passed.
    match syscall!(sendmsg(fd, &msg, libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT)) {
        Ok(n) => Ok(n as usize),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(0),
        Err(e) => Err(e),
    }
}

/// Writes as much of `buf` as the socket takes now (`send` with `MSG_NOSIGNAL`, as
/// [`write_vectored`]). `Ok(0)` with non-empty input means the socket is full.
pub fn write(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for reads of `buf.len()` bytes for the duration of the call.
    let res = syscall!(send(
        fd,
        buf.as_ptr().cast(),
        buf.len(),
        libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT
    ));
    match res {
        Ok(n) => Ok(n as usize),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(0),
        Err(e) => Err(e),
    }
}

/// Reads into `buf`. `Ok(None)` means nothing is there now (would block).
pub fn read(fd: RawFd, buf: &mut [u8]) -> io::Result<Option<usize>> {
    loop {
        // SAFETY: `buf` is valid for writes of `buf.len()` bytes for the duration of the call.
        match syscall!(read(fd, buf.as_mut_ptr().cast(), buf.len())) {
            Ok(n) => return Ok(Some(n as usize)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Closes a descriptor the engine owns.
pub fn close(fd: RawFd) {
    // SAFETY: the engine owns `fd` and never uses it after this call.
    let _ = syscall!(close(fd));
}

/// Half-closes the write side so the peer sees FIN after the bytes already sent (our
/// close frame), while unread input does not turn the close into a reset.
pub fn shutdown_write(fd: RawFd) {
    // SAFETY: plain syscall on a descriptor the engine owns.
    let _ = syscall!(shutdown(fd, libc::SHUT_WR));
}
