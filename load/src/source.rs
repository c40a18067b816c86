//! Where client connections come from. One source address has about 28,000 ephemeral
//! ports towards one server address, so connections to a loopback server are spread over
//! the source addresses 127.0.0.2..=127.0.0.250 (all of 127/8 is local on Linux).

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;

use socket2::{Domain, Socket, Type};

/// Source addresses in the rotation: 127.0.0.2 ..= 127.0.0.250.
pub const SOURCES: usize = 249;

/// The source address of connection `i` of a process started with `--source-offset
/// offset`: 127.0.0.((offset + i) % 249 + 2).
pub fn address(offset: usize, i: usize) -> Ipv4Addr {
    let host = (offset.wrapping_add(i) % SOURCES + 2) as u8;
    Ipv4Addr::new(127, 0, 0, host)
}

/// Starts a non-blocking TCP connect to `target` (Nagle off). For a loopback IPv4 target
/// the socket is bound to `from` first; any other target gets the kernel's choice.
///
/// On loopback the connect has usually completed when this returns, so callers try the
/// request right away and wait for `EPOLLOUT` only if the socket is not connected yet.
/// These connections are held, so they do not get [`ack_with_first_data`]: held
/// connections carrying it, against the engine's deferred accept, failed their close
/// handshakes by the tens of thousands in a 100,000-connection c10m run (3 runs of 3;
/// neither option alone did), for a cause not found yet.
pub fn connect(target: SocketAddr, from: Ipv4Addr) -> io::Result<mio::net::TcpStream> {
    let domain = if target.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    // Non-blocking from birth: no fcntl afterwards.
    let s = Socket::new(domain, Type::STREAM.nonblocking(), None)?;
    s.set_tcp_nodelay(true)?;
    if let IpAddr::V4(ip) = target.ip()
        && ip.is_loopback()
    {
        bind_address_no_port(&s)?;
        s.bind(&SocketAddr::new(IpAddr::V4(from), 0).into())?;
    }
    match s.connect(&target.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    Ok(mio::net::TcpStream::from_std(s.into()))
}

/// `TCP_DEFER_ACCEPT` on a connecting socket: Linux holds back the ACK that ends the TCP
/// handshake and sends it with the client's first data, one segment fewer per connection
/// for both ends. For connections that send at once and live briefly ([`crate::churn`]).
/// Best effort: without it the handshake only costs one segment more.
pub fn ack_with_first_data(fd: std::os::fd::RawFd) {
    let seconds: libc::c_int = 1;
    // SAFETY: valid socket; the option value is a c_int of the size passed.
    unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_DEFER_ACCEPT,
            (&raw const seconds).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
}

/// `IP_BIND_ADDRESS_NO_PORT`: the port is chosen at connect time, for the whole 4-tuple,
/// instead of at bind time for the address alone. Without it every bound socket holds a
/// port of its source address exclusively, and several load processes sharing the
/// addresses would run out long before the 4-tuples do.
pub fn bind_address_no_port(s: &Socket) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: valid socket; the option value is a c_int of the size passed.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&raw const on).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_rotate_over_the_range() {
        assert_eq!(address(0, 0), Ipv4Addr::new(127, 0, 0, 2));
        assert_eq!(address(0, 248), Ipv4Addr::new(127, 0, 0, 250));
        assert_eq!(address(0, 249), Ipv4Addr::new(127, 0, 0, 2));
        assert_eq!(address(5, 1), Ipv4Addr::new(127, 0, 0, 8));
        assert_eq!(address(usize::MAX, 1), address(0, 0));
        for k in [0, 1, 77, 1_000_000] {
            for i in 0..600 {
                let a = address(k, i).octets()[3];
                assert!((2..=250).contains(&a));
            }
        }
    }

    #[test]
    fn connects_from_the_address_asked() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let target = listener.local_addr().unwrap();
        let from = Ipv4Addr::new(127, 0, 0, 9);
        let _client = connect(target, from).unwrap();
        let (_, peer) = listener.accept().unwrap();
        assert_eq!(peer.ip(), IpAddr::V4(from));
    }
}
