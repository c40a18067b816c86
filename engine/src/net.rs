//! Sockets outside any backend: the per-worker `SO_REUSEPORT` listener, addresses, and
//! the TCP state a liveness check reads.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use socket2::{Domain, Protocol, Socket, Type};

use crate::error::Error;
use crate::syscall::syscall;

/// Binds one listener per worker on `addr`, all in one `SO_REUSEPORT` group, so every
/// worker has its own accept queue on the same port and the kernel spreads connections
/// over them. Returns them with the address bound (its port, when port 0 was asked for).
///
/// A port some other socket already listens on is refused with [`Error::AddrInUse`]:
/// with `SO_REUSEPORT` set, a second server run by the same user would otherwise join
/// the first one's group and silently take a share of its connections.
pub fn listeners(
    addr: SocketAddr,
    backlog: i32,
    workers: usize,
) -> Result<(Vec<OwnedFd>, SocketAddr), Error> {
    let bind_err = |source: io::Error| match source.kind() {
        io::ErrorKind::AddrInUse => Error::AddrInUse { addr },
        _ => Error::Bind { addr, source },
    };
    if addr.port() != 0 {
        // Without SO_REUSEPORT the bind fails if anything listens there; the probe socket
        // is closed before the group binds (it never listened, so it holds nothing).
        let probe = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))
            .map_err(bind_err)?;
        probe.set_reuse_address(true).map_err(bind_err)?;
        probe.bind(&addr.into()).map_err(bind_err)?;
    }
    let first = listener(addr, backlog).map_err(bind_err)?;
    let local = local_addr(first.as_raw_fd()).map_err(bind_err)?;
    let mut all = vec![first];
    for _ in 1..workers {
        all.push(listener(local, backlog).map_err(bind_err)?);
    }
    Ok((all, local))
}

/// Binds a non-blocking listener with `SO_REUSEPORT`.
fn listener(addr: SocketAddr, backlog: i32) -> io::Result<OwnedFd> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    // Accepted sockets inherit TCP_NODELAY from the listener on Linux, which spares a
    // setsockopt per accepted connection (io_uring's multishot accept cannot set it).
    socket.set_tcp_nodelay(true)?;
    defer_accept(&socket);
    socket.bind(&addr.into())?;
    socket.listen(backlog)?;
    Ok(socket.into())
}

/// `TCP_DEFER_ACCEPT`: a connection reaches the accept queue with its first data (the
/// upgrade request), not at the end of the TCP handshake. A WebSocket client always
/// speaks first, so this only removes work: one wakeup and one readiness round per
/// connection on the server (accept, then read at once), and on loopback one wakeup fewer
/// in the connecting client too, since the kernel runs both ends in the sender's context.
/// A client that connects and stays silent is kept as a half-open request (no descriptor,
/// no slab entry) and accepted after about a second, when the handshake timer takes over.
/// Best effort: without it the engine behaves the same, a little slower.
fn defer_accept(socket: &Socket) {
    let seconds: libc::c_int = 1;
    // SAFETY: valid socket; the option value is a c_int of the size passed.
    let _ = syscall!(setsockopt(
        socket.as_raw_fd(),
        libc::IPPROTO_TCP,
        libc::TCP_DEFER_ACCEPT,
        (&raw const seconds).cast(),
        size_of::<libc::c_int>() as libc::socklen_t
    ));
}

/// The address a listener is bound to (its port, when port 0 was asked for).
pub fn local_addr(fd: RawFd) -> io::Result<SocketAddr> {
    let mut storage: libc::sockaddr_storage = unsafe_zeroed_storage();
    let mut len = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: storage is large enough for any socket address and len says so.
    syscall!(getsockname(fd, (&raw mut storage).cast(), &mut len))?;
    sockaddr_to_std(&storage)
}

/// The peer's address of a connected socket.
pub fn peer_addr(fd: RawFd) -> io::Result<SocketAddr> {
    let mut storage: libc::sockaddr_storage = unsafe_zeroed_storage();
    let mut len = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: storage is large enough for any socket address and len says so.
    syscall!(getpeername(fd, (&raw mut storage).cast(), &mut len))?;
    sockaddr_to_std(&storage)
}

fn unsafe_zeroed_storage() -> libc::sockaddr_storage {
    // SAFETY: sockaddr_storage is plain old data; all zeroes is a valid (AF_UNSPEC) value.
    unsafe { std::mem::zeroed() }
}

fn sockaddr_to_std(storage: &libc::sockaddr_storage) -> io::Result<SocketAddr> {
    match storage.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let a =
                unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            let ip = std::net::Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
            Ok(SocketAddr::from((ip, u16::from_be(a.sin_port))))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let a = unsafe {
                &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            let ip = std::net::Ipv6Addr::from(a.sin6_addr.s6_addr);
            Ok(SocketAddr::from((ip, u16::from_be(a.sin6_port))))
        }
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "unknown address family",
        )),
    }
}

/// Writes what the socket takes now, never blocking (MSG_DONTWAIT: the io_uring backend's
/// sockets are blocking, the ring waits for readiness on them), by number, without
/// glibc's cancellation wrapper. `Ok(0)`: the socket is full. Every plain write of the
/// engine goes through here: the epoll backend's, io_uring's direct send, and the core's
/// reply written at the end of an input ([`crate::Config::eager_replies_after`]).
#[inline]
pub fn send_now(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for reads of `buf.len()` bytes for the duration of the call.
    let res = syscall!(raw SYS_sendto(
        fd,
        buf.as_ptr(),
        buf.len(),
        libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
        std::ptr::null::<libc::sockaddr>(),
        0
    ));
    match res {
        Ok(n) => Ok(n as usize),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
            ) =>
        {
            Ok(0)
        }
        Err(e) => Err(e),
    }
}

/// Closes a descriptor the engine owns (a listener it gives up, a connection it refuses).
pub fn close(fd: RawFd) {
    // SAFETY: the engine owns `fd` and never uses it after this call.
    let _ = syscall!(close(fd));
}

/// The send side of a TCP connection as the kernel sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendProgress {
    /// Bytes the peer has acknowledged since the connection began.
    pub acked: u64,
    /// Whether bytes still wait for the peer: sent and unacknowledged, or not sent yet.
    pub waiting: bool,
    /// Milliseconds since the peer last acknowledged anything.
    pub since_ack_ms: u32,
    /// The peer advertises a zero receive window: its TCP is there (it answers the
    /// kernel's window probes, which back off to seconds apart) but it reads nothing.
    pub window_closed: bool,
}

/// Reads [`SendProgress`] (`TCP_INFO`); `None` if the socket has none (not TCP).
pub fn send_progress(fd: RawFd) -> Option<SendProgress> {
    // SAFETY: tcp_info is plain old data; all zeroes is a valid value.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: `info` is writable for `len` bytes, and `len` says so.
    syscall!(getsockopt(
        fd,
        libc::IPPROTO_TCP,
        libc::TCP_INFO,
        (&raw mut info).cast(),
        &mut len
    ))
    .ok()?;
    Some(SendProgress {
        acked: info.tcpi_bytes_acked,
        waiting: info.tcpi_unacked > 0 || info.tcpi_notsent_bytes > 0,
        since_ack_ms: info.tcpi_last_ack_recv,
        // Kernels before 6.2 do not report the window; then it is not known to be closed.
        window_closed: len as usize >= std::mem::offset_of!(libc::tcp_info, tcpi_rcv_wnd)
            && info.tcpi_snd_wnd == 0,
    })
}

/// The system's page size in bytes (4,096 if it cannot be read).
pub(crate) fn page_size() -> usize {
    // SAFETY: sysconf reads a constant of the system; it takes no pointers.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if n > 0 { n as usize } else { 4096 }
}
