//! The I/O backend contract, written once. Each backend lives in its own file and never
//! imports another; the run loop in [`crate::worker`] only sees this contract.
//!
//! A backend is an event source: it accepts connections on the worker's listener, reads
//! bytes (into a per-worker receive buffer, so an idle connection owns none), tells when a
//! connection can take more output, and wakes the worker when its mailbox has mail.
//! Writes are plain vectored syscalls issued by the core ([`write_vectored`]): the kernel
//! takes what it can right away and only the rest is queued. A backend that completes
//! writes itself can take over queued output through [`Backend::want_write`].

use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

pub mod epoll;
pub mod socket;

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
    /// The connection can take more output.
    fn writable(&mut self, token: Token);
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
    /// has in flight for it is cancelled (so the peer sees the close now, not when a
    /// pending operation happens to finish). Later events for `token` are not delivered.
    fn close(&mut self, fd: RawFd, token: Token);
    /// Stops accepting (graceful shutdown); the caller closes the listener afterwards.
    fn stop_accepting(&mut self);
    /// Output is queued for the connection: tell the sink through `writable` when more can
    /// be written. Edge-triggered backends have nothing to do.
    fn want_write(&mut self, fd: RawFd, token: Token);
    /// The sink can take input for this connection again (after `input` returned false).
    fn resume_read(&mut self, fd: RawFd, token: Token);
    /// Waits for events (at most `timeout`) and delivers them to `sink`.
    fn poll(&mut self, timeout: Option<Duration>, sink: &mut impl Sink) -> io::Result<()>;
}

/// The cross-thread half of a backend's wakeup.
pub trait Wake: Send + Sync + 'static {
    /// Makes the worker's next (or current) poll return and report `woken`.
    fn wake(&self) -> io::Result<()>;
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
