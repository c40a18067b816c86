//! Blocking client pieces the attack modes share: a TCP connection from a chosen source
//! address (optionally with a small receive buffer, set before the connect so the window
//! is small from the start), the upgrade on it, and waiting for the server to end it.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use socket2::{Domain, Socket, Type};

use crate::source;
use crate::upgrade::{self, Key, check_response};

/// Connects (blocking) to `target`, from `from` when the target is loopback IPv4.
pub fn tcp(target: SocketAddr, from: Ipv4Addr, rcvbuf: Option<usize>) -> io::Result<TcpStream> {
    let domain = if target.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let s = Socket::new(domain, Type::STREAM, None)?;
    s.set_tcp_nodelay(true)?;
    if let Some(n) = rcvbuf {
        s.set_recv_buffer_size(n)?;
    }
    if let IpAddr::V4(ip) = target.ip()
        && ip.is_loopback()
    {
        source::bind_address_no_port(&s)?;
        s.bind(&SocketAddr::new(IpAddr::V4(from), 0).into())?;
    }
    s.connect_timeout(&target.into(), Duration::from_secs(5))?;
    Ok(s.into())
}

/// Sends the upgrade request for `/` and reads the 101; returns bytes that followed it.
pub fn upgrade(stream: &mut TcpStream, target: SocketAddr, seed: u64) -> io::Result<Vec<u8>> {
    let key = Key::new(seed);
    stream.write_all(upgrade::request(&target.to_string(), "/", &key).as_bytes())?;
    let old = stream.read_timeout()?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    let rest = loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Err(io::Error::other("closed during the upgrade"));
        }
        head.extend_from_slice(&buf[..n]);
        if let Some(used) = check_response(&head, &key).map_err(io::Error::other)? {
            break head.split_off(used);
        }
    };
    stream.set_read_timeout(old)?;
    Ok(rest)
}

/// Connects and upgrades.
pub fn websocket(target: SocketAddr, from: Ipv4Addr, seed: u64) -> io::Result<TcpStream> {
    let mut s = tcp(target, from, None)?;
    upgrade(&mut s, target, seed)?;
    Ok(s)
}

/// How the server ended a connection it was sent garbage on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// A close frame with this code (0: without a code) came first.
    Close(u16),
    /// TCP ended (FIN or reset) without a close frame.
    Eof,
    /// Nothing ended it within the wait.
    Open,
}

/// Reads until the server sends a close frame or ends TCP, at most `wait`. `seen` holds
/// bytes already read after the upgrade.
pub fn ending(stream: &mut TcpStream, mut seen: Vec<u8>, wait: Duration) -> Ending {
    let deadline = Instant::now() + wait;
    let mut buf = [0u8; 4096];
    loop {
        if let Some(e) = close_code(&seen) {
            return e;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return Ending::Open;
        }
        match stream.read(&mut buf) {
            Ok(0) => return Ending::Eof,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Ending::Open;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Ending::Eof,
        }
    }
}

/// Skips whole server frames at the start of `data` until a close frame; its code.
fn close_code(mut data: &[u8]) -> Option<Ending> {
    loop {
        if data.len() < 2 {
            return None;
        }
        let (op, len7) = (data[0] & 0x0f, (data[1] & 0x7f) as usize);
        let (hl, len) = match len7 {
            126 if data.len() >= 4 => (4, u16::from_be_bytes([data[2], data[3]]) as usize),
            127 if data.len() >= 10 => (
                10,
                u64::from_be_bytes(data[2..10].try_into().ok()?).min(1 << 40) as usize,
            ),
            126 | 127 => return None,
            n => (2, n),
        };
        if data.len() < hl + len {
            return None;
        }
        if op == 0x8 {
            let code = if len >= 2 {
                u16::from_be_bytes([data[hl], data[hl + 1]])
            } else {
                0
            };
            return Some(Ending::Close(code));
        }
        data = &data[hl + len..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_close_code_after_other_frames() {
        assert_eq!(
            close_code(&[0x88, 0x02, 0x03, 0xea]),
            Some(Ending::Close(1002))
        );
        assert_eq!(
            close_code(&[0x81, 0x01, b'x', 0x88, 0x00]),
            Some(Ending::Close(0))
        );
        assert_eq!(close_code(&[0x81, 0x05, b'x']), None);
        assert_eq!(close_code(&[0x88]), None);
    }
}
