//! Sockets and threads: the per-worker `SO_REUSEPORT` listener, accept, CPU pinning.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{IntoRawFd, RawFd};

use socket2::{Domain, Protocol, Socket, Type};

use super::syscall;

/// Binds a non-blocking listener with `SO_REUSEPORT`, so every worker has its own accept
/// queue on the same port and the kernel spreads connections over them.
pub fn listener(addr: SocketAddr, backlog: i32) -> io::Result<RawFd> {
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
    Ok(socket.into_raw_fd())
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
    use std::os::fd::AsRawFd;
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

/// Accepts one connection, non-blocking and close-on-exec; Nagle is off through the
/// listener (frames are written whole; waiting to coalesce only adds latency).
/// `Ok(None)`: queue empty.
pub fn accept(listener: RawFd) -> io::Result<Option<RawFd>> {
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

/// The CPUs this process may run on, in order.
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: cpu_set_t is plain old data; zeroed is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid cpu_set_t of the size passed.
    if syscall!(sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut set)).is_err() {
        return (0..std::thread::available_parallelism().map_or(1, |n| n.get())).collect();
    }
    // SAFETY: CPU_ISSET reads a valid cpu_set_t.
    (0..libc::CPU_SETSIZE as usize)
        .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
        .collect()
}

/// Pins the calling thread to one CPU.
pub fn pin_current_thread(cpu: usize) -> io::Result<()> {
    // SAFETY: cpu_set_t is plain old data; zeroed is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    if cpu >= libc::CPU_SETSIZE as usize {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "cpu out of range",
        ));
    }
    // SAFETY: CPU_SET writes a valid cpu_set_t; `cpu` is below CPU_SETSIZE (checked above).
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: `set` is a valid cpu_set_t of the size passed; 0 means this thread.
    syscall!(sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set))?;
    Ok(())
}
