//! The I/O backend contract, written once. Each backend lives in its own file and never
//! imports another; the run loop in [`crate::worker`] only sees this contract.
//!
//! A backend is an event source and a writer: it accepts connections on the worker's
//! listener, reads bytes (into per-worker buffers, so an idle connection owns none), writes
//! a connection's [`Outbox`] when the core flushes it (once per turn of the run loop, so
//! everything a turn produced for a connection leaves in one write), and wakes the worker
//! when its mailbox has mail. It owns every descriptor operation: the core asks, through
//! this contract, for a connection to be watched, half-closed, refused or closed.
//!
//! A turn first [`Backend::wait`]s, then the run loop reads the clock, then the backend
//! [`Backend::dispatch`]es what the wait found. Splitting the two is what keeps the clock
//! right after a long sleep: every event is handled with the time it arrived, not the
//! time the worker went to sleep.

use std::io;
use std::os::fd::{OwnedFd, RawFd};
use std::time::Duration;

use crate::config::{BackendKind, Config};
use crate::output::{Outbox, Piece};

pub mod epoll;
pub mod uring;

/// Names a connection in backend events: the slab key and the connection's generation, so
/// an event for a reused slot is recognised and ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token {
    /// Slab key.
    pub key: u32,
    /// Generation of the connection that had this key when the event was requested.
    pub generation: u32,
}

/// What the run loop must react to. Delivered to a [`Sink`] while the backend dispatches.
pub trait Sink {
    /// The descriptor to read from, if the connection is live and takes input now: `None`
    /// while its reading is paused (output backed up). A backend must not read a paused
    /// connection; [`Backend::resume_read`] says when to start again.
    fn reader(&self, token: Token) -> Option<RawFd>;
    /// Whether `token` still names a live connection (paused or not).
    fn alive(&self, token: Token) -> bool;
    /// A connection was accepted on the worker's listener number `listener` (its index in
    /// the list given to [`Backend::new`]); the sink owns `fd` from now on.
    fn accepted(&mut self, fd: RawFd, listener: usize);
    /// Bytes arrived for a connection. `bytes` is the backend's buffer, valid for this call
    /// only; the sink may transform it in place (unmask, decrypt). Returns false to ask the
    /// backend to stop reading this connection for now (output backed up, or the
    /// connection is gone) until [`Backend::resume_read`]. Bytes delivered after a false
    /// are still processed, never lost, so a backend with reads already completed simply
    /// delivers them.
    fn input(&mut self, token: Token, bytes: &mut [u8]) -> bool;
    /// The peer closed its side (`None`) or the connection failed.
    fn input_closed(&mut self, token: Token, error: Option<io::Error>);
    /// The connection can take more output (readiness backends).
    fn writable(&mut self, token: Token);
    /// A readiness event: [`Sink::writable`] when `writable`, then [`Sink::reader`]. One
    /// call so that a sink can resolve the token once per event rather than twice.
    fn ready(&mut self, token: Token, writable: bool) -> Option<RawFd> {
        if writable {
            self.writable(token);
        }
        self.reader(token)
    }
    /// A send the backend took over (completion backends) progressed: `Ok(n)` bytes of
    /// counted output (taken from an [`Outbox`]; 0 for a direct piece, which the core does
    /// not count) went out, and `ended` says the send is over, so the connection may hand
    /// over output again. A partial send continues on its own. `Err`: the socket failed
    /// (the send is over).
    fn sent(&mut self, token: Token, result: io::Result<usize>, ended: bool);
    /// The worker's mailbox may hold mail.
    fn woken(&mut self);
}

/// Counters a backend keeps (read by the run loop into the worker's stats).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BackendCounters {
    /// Receives that found the io_uring buffer ring empty and waited for a buffer.
    pub recv_enobufs: u64,
    /// Times accepting stopped because the process or system was out of descriptors
    /// (EMFILE/ENFILE); it resumes when a connection closes or after a short back-off.
    pub accept_backoffs: u64,
}

/// A per-worker I/O backend.
pub trait Backend: Sized {
    /// Wakes the backend from another thread.
    type Waker: Wake;

    /// Which backend this is, for logs and tests.
    const KIND: BackendKind;

    /// Sets up the backend around this worker's listeners (bound, non-blocking), which it
    /// owns from now on: [`LISTENER_MAIN`] for `Config::addr`, then the plain one at
    /// `Config::plain_addr` if it is set. It accepts on each and says which in [`Sink::accepted`].
    fn new(listeners: Vec<OwnedFd>, config: &Config) -> io::Result<Self>;
    /// A waker for the worker's mailbox.
    fn waker(&self) -> io::Result<Self::Waker>;
    /// Starts watching an accepted connection (already non-blocking).
    fn register(&mut self, fd: RawFd, token: Token) -> io::Result<()>;
    /// Closes a descriptor the sink was handed but will not serve (the worker is full or
    /// shutting down); it was never registered.
    fn refuse(&mut self, fd: RawFd);
    /// Half-closes the write side once the output handed over so far is out: the peer sees
    /// FIN after it, while unread input does not turn the close into a reset.
    fn shutdown_write(&mut self, fd: RawFd, token: Token);
    /// Stops watching a connection and closes its descriptor, after whatever the backend
    /// has in flight for it is ended (so the peer sees the close now, not when a
    /// pending operation happens to finish). Later events for `token` are not delivered.
    fn close(&mut self, fd: RawFd, token: Token);
    /// Stops accepting and closes the listeners (graceful shutdown).
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
    /// Submits what the turn queued and sleeps until there is something to dispatch, or
    /// at most `timeout` (`None`: no limit). Delivers nothing.
    fn wait(&mut self, timeout: Option<Duration>) -> io::Result<()>;
    /// Delivers to `sink` what the last wait found (and anything left over from earlier).
    fn dispatch(&mut self, sink: &mut impl Sink);
    /// The worker is exiting: end everything in flight and wait until the kernel has let go
    /// of every buffer an operation refers to. A completion backend must also do this when
    /// dropped (a failed poll or a panic skips `finish`); there is no default, so a new
    /// backend decides.
    fn finish(&mut self);
    /// The backend's counters.
    fn counters(&self) -> BackendCounters;
}

/// The index of the listener at `Config::addr` (TLS when `Config::tls` is set); the
/// next one, when `Config::plain_addr` is set, is plain.
pub const LISTENER_MAIN: usize = 0;

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
    /// Makes the worker's next (or current) wait return and its dispatch report `woken`.
    fn wake(&self) -> io::Result<()>;
}

/// How long a backend waits before trying to accept again after running out of
/// descriptors, if no connection closes first. Short enough that a freed descriptor
/// elsewhere in the process is noticed soon; long enough that a worker at the limit
/// costs nothing measurable.
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Whether an accept error means "out of descriptors": the connection stays queued, and
/// retrying at once would only fail again.
pub fn out_of_descriptors(errno: i32) -> bool {
    errno == libc::EMFILE || errno == libc::ENFILE
}
