//! Connection churn: keep a number of upgrades in progress, each connection reset as soon
//! as its 101 is in and replaced at once. The client of the handshakes-per-second
//! measurement.
//!
//! On loopback the kernel runs both ends of a TCP handshake in the connecting thread
//! (the SYN, the server's SYN-ACK, the final ACK and the child socket are all processed
//! inside `connect`), so this client's CPU, not the server's, bounds the rate; it spends
//! as few system calls per connection as a strict client can:
//!
//! | step | call |
//! | --- | --- |
//! | read and check the 101 | `recv(MSG_PEEK)` |
//! | reset | `connect(AF_UNSPEC)` |
//! | next connection, same socket (done on return, on loopback) | `connect` |
//! | upgrade request, at once | `send` |
//!
//! A slot's socket is made once (`socket`, `setsockopt`, `epoll_ctl`) and reused: `connect` with
//! `AF_UNSPEC` is `tcp_disconnect`, which resets an established connection (the same
//! RST as `SO_LINGER` 0 and `close`, so no TIME_WAIT on either side), drops the socket's
//! port and returns it to the closed state, ready to connect again from a new port. On
//! the wire and for the server this is a new connection like any other; the client
//! saves, per connection, the allocation and release of a socket, its file and inode and
//! its epoll entry: about 15% of its CPU here. The 101 is peeked, not consumed: the
//! disconnect discards it. No `TCP_NODELAY` (the request is the first and only segment,
//! which Nagle never holds), no source address (resets leave no TIME_WAIT, so
//! 127.0.0.1's ports suffice), no wait for `EPOLLOUT` unless the connect is still in
//! progress, no `getpeername`. The check is as strict as elsewhere in the crate: a fresh
//! key per connection, status 101, `Upgrade`, `Connection` and the accept value
//! ([`crate::upgrade::check_response`]). A connection that fails gets a fresh socket.
//!
//! `TCP_DEFER_ACCEPT` on the client socket makes Linux hold back the bare ACK that ends
//! the TCP handshake and send it with the request: 6 segments per connection instead of
//! 8 (`nstat` against the engine), which spares both ends' CPU (about 8% each here).
//! Every server sees the same client.

use std::io;
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::time::Duration;

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use socket2::SockAddr;

use crate::upgrade::{Key, MAX_HEAD, Template, check_response};

/// One connection slot.
struct Slot {
    /// The socket, or -1 when the slot needs a fresh one.
    fd: RawFd,
    /// Registered for `EPOLLOUT` too (a connect was still in progress once).
    writable: bool,
    /// Request bytes sent so far.
    sent: usize,
    key: Key,
}

/// A set of slots, each always holding one connection in its upgrade.
pub struct Churn {
    poll: Poll,
    events: Events,
    target: SockAddr,
    template: Template,
    slots: Vec<Slot>,
    /// Makes every key different: per process, then per connection.
    seed: u64,
    serial: u64,
    request: Vec<u8>,
    buf: Box<[u8]>,
    /// Upgrades that completed (a valid 101 arrived).
    pub upgraded: u64,
    /// Connections that failed (refused, reset, closed, or answered wrongly).
    pub failed: u64,
    /// The first failure's reason.
    pub first_error: Option<String>,
}

impl std::fmt::Debug for Churn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Churn").finish_non_exhaustive()
    }
}

impl Churn {
    /// `slots` connections to `addr`'s `path`, all started now.
    pub fn new(addr: SocketAddr, path: &str, slots: usize, seed: u64) -> io::Result<Churn> {
        let mut c = Churn {
            poll: Poll::new()?,
            events: Events::with_capacity(1024),
            target: SockAddr::from(addr),
            template: Template::new(&addr.to_string(), path),
            slots: Vec::with_capacity(slots),
            seed,
            serial: 0,
            request: Vec::new(),
            buf: vec![0; MAX_HEAD + 1].into_boxed_slice(),
            upgraded: 0,
            failed: 0,
            first_error: None,
        };
        for i in 0..slots {
            c.slots.push(Slot {
                fd: -1,
                writable: false,
                sent: 0,
                key: Key::new(0),
            });
            c.start(i);
        }
        Ok(c)
    }

    fn fail(&mut self, why: impl FnOnce() -> String) {
        self.failed += 1;
        if self.first_error.is_none() {
            self.first_error = Some(why());
        }
    }

    /// A fresh socket for slot `i`, registered for input.
    fn open(&mut self, i: usize) -> io::Result<()> {
        let family = self.target.family() as libc::c_int;
        // SAFETY: plain socket(2); the descriptor is owned by the slot from here on.
        let fd = unsafe {
            libc::socket(
                family,
                libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                0,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        crate::source::ack_with_first_data(fd);
        if let Err(e) =
            self.poll
                .registry()
                .register(&mut SourceFd(&fd), Token(i), Interest::READABLE)
        {
            close(fd);
            return Err(e);
        }
        let slot = &mut self.slots[i];
        slot.fd = fd;
        slot.writable = false;
        Ok(())
    }

    /// The next connection in slot `i`: connect its socket (a fresh one if it has none),
    /// send the request. A failure is counted and the slot emptied; [`Churn::refill`]
    /// tries again.
    fn start(&mut self, i: usize) {
        if self.slots[i].fd < 0
            && let Err(e) = self.open(i)
        {
            return self.fail(|| format!("socket: {e}"));
        }
        self.serial += 1;
        let slot = &mut self.slots[i];
        slot.key = Key::new(self.seed ^ self.serial.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        slot.sent = 0;
        // SAFETY: the address pointer and length come from a live SockAddr.
        let rc = unsafe { libc::connect(slot.fd, self.target.as_ptr().cast(), self.target.len()) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EINPROGRESS) {
                return self.drop_failed(i, format!("connect: {e}"));
            }
        }
        // On loopback the connect has completed by now; if not, EPOLLOUT says when.
        match self.send_rest(i) {
            Ok(true) => {}
            Ok(false) => self.watch_writable(i),
            Err(e) => self.drop_failed(i, format!("send request: {e}")),
        }
    }

    /// Adds `EPOLLOUT` to slot `i`'s interest, once for the life of its socket.
    fn watch_writable(&mut self, i: usize) {
        let slot = &mut self.slots[i];
        if slot.writable {
            return;
        }
        slot.writable = true;
        let interest = Interest::READABLE | Interest::WRITABLE;
        let fd = slot.fd;
        if let Err(e) = self
            .poll
            .registry()
            .reregister(&mut SourceFd(&fd), Token(i), interest)
        {
            self.drop_failed(i, format!("epoll_ctl: {e}"));
        }
    }

    /// Sends what is left of slot `i`'s request; true once all of it is out.
    fn send_rest(&mut self, i: usize) -> io::Result<bool> {
        let slot = &mut self.slots[i];
        let req = self.template.fill(&slot.key, &mut self.request);
        while slot.sent < req.len() {
            let rest = &req[slot.sent..];
            // SAFETY: the pointer and length describe `rest`, alive for the call.
            let n = unsafe {
                libc::send(
                    slot.fd,
                    rest.as_ptr().cast(),
                    rest.len(),
                    libc::MSG_NOSIGNAL,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                return match e.raw_os_error() {
                    // Connect still in progress, or the buffer is full.
                    Some(libc::EAGAIN) => Ok(false),
                    Some(libc::EINTR) => continue,
                    _ => Err(e),
                };
            }
            slot.sent += n as usize;
        }
        Ok(true)
    }

    /// Closes slot `i`'s socket after a failure, counting it; the slot gets a fresh
    /// socket at the next [`Churn::refill`].
    fn drop_failed(&mut self, i: usize, why: String) {
        let fd = std::mem::replace(&mut self.slots[i].fd, -1);
        if fd >= 0 {
            reset(fd);
        }
        self.fail(|| why);
    }

    /// Starts a connection in every slot that lost its socket to a failure.
    pub fn refill(&mut self) {
        for i in 0..self.slots.len() {
            if self.slots[i].fd < 0 {
                self.start(i);
            }
        }
    }

    /// Waits up to `timeout` for events and handles them; returns how many upgrades
    /// completed. Each completed slot starts its next connection at once.
    pub fn turn(&mut self, timeout: Option<Duration>) -> io::Result<u64> {
        match self.poll.poll(&mut self.events, timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(0),
            Err(e) => return Err(e),
        }
        let before = self.upgraded;
        let events = std::mem::replace(&mut self.events, Events::with_capacity(0));
        for ev in events.iter() {
            let i = ev.token().0;
            if self.slots.get(i).is_some_and(|s| s.fd >= 0) {
                // Readiness is only a hint here (a reused socket's registration sees
                // every connection it carries): the socket's own state decides.
                self.event(i);
            }
        }
        self.events = events;
        self.refill();
        Ok(self.upgraded - before)
    }

    /// Slot `i`'s socket is ready: finish the request, then look for the 101.
    fn event(&mut self, i: usize) {
        if self.slots[i].sent < self.template.len() {
            match self.send_rest(i) {
                Ok(true) => {}
                Ok(false) => return,
                Err(e) => return self.drop_failed(i, format!("send request: {e}")),
            }
        }
        let fd = self.slots[i].fd;
        // SAFETY: `buf` is valid for writes of its length.
        let n = unsafe {
            libc::recv(
                fd,
                self.buf.as_mut_ptr().cast(),
                self.buf.len(),
                libc::MSG_PEEK,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if matches!(e.raw_os_error(), Some(libc::EAGAIN) | Some(libc::EINTR)) {
                return;
            }
            return self.drop_failed(i, format!("read: {e}"));
        }
        if n == 0 {
            return self.drop_failed(i, "closed by the server before the 101".into());
        }
        match check_response(&self.buf[..n as usize], &self.slots[i].key) {
            Ok(None) => {}
            Ok(Some(_)) => {
                self.upgraded += 1;
                if disconnect(fd).is_ok() {
                    self.start(i);
                } else {
                    // Could not reuse it: a fresh socket at the next refill.
                    reset(std::mem::replace(&mut self.slots[i].fd, -1));
                }
            }
            Err(why) => self.drop_failed(i, why),
        }
    }
}

/// Resets the connection and leaves the socket closed and reusable: `connect` with an
/// `AF_UNSPEC` address (Linux's `tcp_disconnect`).
fn disconnect(fd: RawFd) -> io::Result<()> {
    // SAFETY: sockaddr is plain old data; zeroed with AF_UNSPEC is the documented
    // "dissolve the association" address.
    let mut unspec: libc::sockaddr = unsafe { std::mem::zeroed() };
    unspec.sa_family = libc::AF_UNSPEC as libc::sa_family_t;
    // SAFETY: valid socket; the address is a live sockaddr of the size passed.
    let rc = unsafe {
        libc::connect(
            fd,
            &raw const unspec,
            size_of::<libc::sockaddr>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

impl Drop for Churn {
    fn drop(&mut self) {
        for s in &mut self.slots {
            if s.fd >= 0 {
                reset(std::mem::replace(&mut s.fd, -1));
            }
        }
    }
}

fn close(fd: RawFd) {
    // SAFETY: the caller owns `fd` and forgets it.
    unsafe { libc::close(fd) };
}

/// Closes with a reset whatever the socket holds (`SO_LINGER` 0): no TIME_WAIT.
fn reset(fd: RawFd) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: valid socket, option value of the size passed.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&raw const linger).cast(),
            size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    close(fd);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;

    /// A server that answers every request with `answer(key)`, and reports each
    /// connection's client port and whether it ended with a reset.
    fn serve(
        n: usize,
        answer: fn(&str) -> String,
    ) -> (SocketAddr, std::sync::mpsc::Receiver<(u16, bool)>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for _ in 0..n {
                let (mut s, peer) = l.accept().unwrap();
                let mut head = Vec::new();
                let mut b = [0u8; 1024];
                while !head.ends_with(b"\r\n\r\n") {
                    let k = s.read(&mut b).unwrap();
                    if k == 0 {
                        break;
                    }
                    head.extend_from_slice(&b[..k]);
                }
                let text = String::from_utf8(head).unwrap();
                let key = text
                    .lines()
                    .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
                    .unwrap()
                    .trim()
                    .to_owned();
                let _ = s.write_all(answer(&key).as_bytes());
                let end = s.read(&mut b);
                let reset =
                    matches!(&end, Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset);
                let _ = tx.send((peer.port(), reset));
            }
        });
        (addr, rx)
    }

    fn good(key: &str) -> String {
        let accept = throng_protocol::handshake::accept_key(key.as_bytes());
        format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {}\r\n\r\n",
            std::str::from_utf8(&accept).unwrap()
        )
    }

    fn wrong_accept(_: &str) -> String {
        good("dGhlIHNhbXBsZSBub25jZQ==")
    }

    fn run(churn: &mut Churn, until: impl Fn(&Churn) -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while !until(churn) {
            assert!(std::time::Instant::now() < deadline, "no progress");
            churn.turn(Some(Duration::from_millis(10))).unwrap();
        }
    }

    #[test]
    fn upgrades_and_replaces_connections() {
        let (addr, ends) = serve(50, good);
        let mut churn = Churn::new(addr, "/", 2, 42).unwrap();
        run(&mut churn, |c| c.upgraded >= 40);
        assert_eq!(churn.failed, 0, "{:?}", churn.first_error);
        drop(churn);
        // Every connection, reused socket or not, was a new one (its own port) and
        // ended with a reset.
        let ends: Vec<(u16, bool)> = ends.iter().take(40).collect();
        assert!(ends.iter().all(|&(_, reset)| reset), "{ends:?}");
        let mut ports: Vec<u16> = ends.iter().map(|&(p, _)| p).collect();
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports.len(), 40);
    }

    #[test]
    fn a_wrong_accept_key_fails() {
        let (addr, _ends) = serve(1, wrong_accept);
        let mut churn = Churn::new(addr, "/", 1, 42).unwrap();
        run(&mut churn, |c| c.failed >= 1);
        assert_eq!(churn.upgraded, 0);
        assert_eq!(
            churn.first_error.as_deref(),
            Some("wrong Sec-WebSocket-Accept")
        );
    }
}
