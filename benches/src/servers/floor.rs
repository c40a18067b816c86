//! The floor: a bare single-threaded epoll loop (mio) with throng's protocol crate and
//! nothing else: no timers, no backpressure policy, no pools, no corking, no mailboxes, no
//! limits beyond the decoder's. Each write goes straight to the socket; what the kernel
//! does not take waits in a plain per-connection `Vec`.
//!
//! It is a diagnostic, not a competitor: the distance from throng to it is what the
//! engine's machinery costs, and the distance from it to zero is the kernel's share
//! (over loopback each send also runs the receiver's TCP stack in the sender's context).

use std::io::{self, ErrorKind, Read, Write};
use std::time::Duration;

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use slab::Slab;
use throng_protocol::decoder::{DataKind, Decoded, Event};
use throng_protocol::frame::{FrameHead, HeaderBuf};
use throng_protocol::handshake::{self, HandshakeConfig};
use throng_protocol::{Decoder, DecoderConfig};

use super::{MAX_MESSAGE, Role, ServeOptions, broadcast_size};

const LISTENER: Token = Token(usize::MAX);

struct Conn {
    stream: TcpStream,
    role: Option<Role>,
    decoder: Decoder,
    /// Unconsumed input (a partial request head or frame header).
    input: Vec<u8>,
    /// A fragmented message being assembled.
    message: Vec<u8>,
    /// Output the kernel did not take yet.
    output: Vec<u8>,
    /// Closed by either side: removed at the end of the event.
    done: bool,
}

/// Writes `bytes` now, keeping what the socket does not take (in order).
fn write_out(c: &mut Conn, bytes: &[u8]) {
    if !c.output.is_empty() {
        c.output.extend_from_slice(bytes);
        return;
    }
    match c.stream.write(bytes) {
        Ok(n) if n == bytes.len() => {}
        Ok(n) => c.output.extend_from_slice(&bytes[n..]),
        Err(e) if e.kind() == ErrorKind::WouldBlock => c.output.extend_from_slice(bytes),
        Err(_) => c.done = true,
    }
}

fn frame(text: bool, payload: &[u8], out: &mut Vec<u8>) {
    let len = payload.len() as u64;
    let head = if text {
        FrameHead::text(len)
    } else {
        FrameHead::binary(len)
    };
    let mut hb = HeaderBuf::default();
    out.extend_from_slice(head.encode(&mut hb));
    out.extend_from_slice(payload);
}

fn control(head: FrameHead, payload: &[u8], out: &mut Vec<u8>) {
    let mut hb = HeaderBuf::default();
    out.extend_from_slice(head.encode(&mut hb));
    out.extend_from_slice(payload);
}

struct Floor {
    conns: Slab<Conn>,
    decoder: DecoderConfig,
    handshake: HandshakeConfig,
    scratch: Vec<u8>,
    /// Frames produced while handling one connection's input, written once at its end.
    reply: Vec<u8>,
    filler: Vec<u8>,
}

/// An encoded frame for every connection of a role (a broadcast or a publish).
struct Fanout(Role, Vec<u8>);

impl Floor {
    /// Reads what the socket has, handles it, answers. Returns a fan-out to perform.
    fn readable(&mut self, key: usize, buf: &mut [u8]) -> Vec<Fanout> {
        let mut fanout = Vec::new();
        loop {
            let c = &mut self.conns[key];
            let n = match c.stream.read(buf) {
                Ok(0) => {
                    c.done = true;
                    break;
                }
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => {
                    c.done = true;
                    break;
                }
            };
            let mut data = std::mem::take(&mut c.input);
            let used = if data.is_empty() {
                self.handle(key, &mut buf[..n], &mut fanout)
            } else {
                data.extend_from_slice(&buf[..n]);
                self.handle(key, &mut data, &mut fanout)
            };
            let c = &mut self.conns[key];
            if data.is_empty() {
                c.input.extend_from_slice(&buf[used..n]);
            } else {
                data.drain(..used);
                c.input = data;
            }
            if !self.reply.is_empty() {
                let reply = std::mem::take(&mut self.reply);
                write_out(c, &reply);
                self.reply = reply;
                self.reply.clear();
            }
            if c.done {
                break;
            }
        }
        fanout
    }

    /// Handles input; returns the bytes used.
    fn handle(&mut self, key: usize, data: &mut [u8], fanout: &mut Vec<Fanout>) -> usize {
        if self.conns[key].role.is_none() {
            return self.upgrade(key, data);
        }
        let mut used = 0;
        while !self.conns[key].done {
            let c = &mut self.conns[key];
            let result = c.decoder.decode(&self.decoder, &mut data[used..]);
            match result {
                Err(e) => {
                    let mut payload = [0u8; 125];
                    let len = throng_protocol::close::write_close_payload(
                        e.close_code(),
                        e.reason(),
                        &mut payload,
                    );
                    control(
                        FrameHead::close(len as u8),
                        &payload[..len],
                        &mut self.reply,
                    );
                    c.done = true;
                    return data.len();
                }
                Ok(Decoded { consumed, event }) => {
                    used += consumed;
                    let Some(event) = event else { break };
                    match event {
                        Event::Data(d) => {
                            let (kind, payload, first, last) = (d.kind, d.payload, d.first, d.last);
                            let text = kind == DataKind::Text;
                            if first && last {
                                self.message(key, text, payload, fanout);
                            } else {
                                c.message.extend_from_slice(payload);
                                if last {
                                    let m = std::mem::take(&mut self.conns[key].message);
                                    self.message(key, text, &m, fanout);
                                }
                            }
                        }
                        Event::Ping(p) => {
                            control(FrameHead::pong(p.len() as u8), p, &mut self.reply)
                        }
                        Event::Pong(_) => {}
                        Event::Close(close) => {
                            let mut payload = [0u8; 125];
                            let len = match close {
                                Some((code, _)) => throng_protocol::close::write_close_payload(
                                    code,
                                    "",
                                    &mut payload,
                                ),
                                None => 0,
                            };
                            control(
                                FrameHead::close(len as u8),
                                &payload[..len],
                                &mut self.reply,
                            );
                            c.done = true;
                        }
                    }
                }
            }
        }
        used
    }

    fn message(&mut self, key: usize, text: bool, payload: &[u8], fanout: &mut Vec<Fanout>) {
        let role = self.conns[key].role.unwrap_or(Role::Echo);
        match role {
            Role::Control if text => {
                if let Some(n) = broadcast_size(payload) {
                    if self.filler.len() < n {
                        self.filler.resize(n, b'x');
                    }
                    let mut f = Vec::with_capacity(n + 14);
                    frame(false, &self.filler[..n], &mut f);
                    fanout.push(Fanout(Role::Member, f));
                    return;
                }
                frame(text, payload, &mut self.reply);
            }
            Role::Publisher => {
                let mut f = Vec::with_capacity(payload.len() + 14);
                frame(text, payload, &mut f);
                fanout.push(Fanout(Role::Subscriber, f));
                frame(text, payload, &mut self.reply);
            }
            _ => frame(text, payload, &mut self.reply),
        }
    }

    /// Parses the upgrade request and answers it; returns the bytes used.
    fn upgrade(&mut self, key: usize, data: &[u8]) -> usize {
        self.scratch.clear();
        let (used, role) = match handshake::parse_request(data, &self.handshake) {
            Ok(None) => return 0,
            Ok(Some((req, used))) => match handshake::validate_upgrade(req) {
                Ok(u) => {
                    handshake::write_accept(&mut self.scratch, &u, None, None);
                    (used, Some(Role::from_path(u.path())))
                }
                Err(e) => {
                    handshake::write_error(&mut self.scratch, e);
                    (data.len(), None)
                }
            },
            Err(e) => {
                handshake::write_error(&mut self.scratch, e);
                (data.len(), None)
            }
        };
        let c = &mut self.conns[key];
        let head = std::mem::take(&mut self.scratch);
        write_out(c, &head);
        self.scratch = head;
        match role {
            Some(r) => c.role = Some(r),
            None => c.done = true,
        }
        used
    }

    fn fan_out(&mut self, role: Role, f: &[u8]) {
        for (_, c) in self.conns.iter_mut() {
            if c.role == Some(role) && !c.done {
                write_out(c, f);
            }
        }
    }

    fn writable(&mut self, key: usize) {
        let c = &mut self.conns[key];
        while !c.output.is_empty() {
            match c.stream.write(&c.output) {
                Ok(n) => {
                    c.output.drain(..n);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(_) => {
                    c.done = true;
                    break;
                }
            }
        }
    }
}

/// Runs the floor server until the process is killed.
pub fn run(opts: &ServeOptions) -> io::Result<()> {
    let std_listener = super::std_listener(opts.addr)?;
    let mut listener = TcpListener::from_std(std_listener);
    let mut poll = Poll::new()?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    super::announce(listener.local_addr()?);
    let mut floor = Floor {
        conns: Slab::new(),
        decoder: DecoderConfig::server(MAX_MESSAGE as u64, MAX_MESSAGE as u64),
        handshake: HandshakeConfig::default(),
        scratch: Vec::new(),
        reply: Vec::new(),
        filler: Vec::new(),
    };
    let mut events = Events::with_capacity(1024);
    let mut buf = vec![0u8; 64 << 10];
    loop {
        match poll.poll(&mut events, Some(Duration::from_secs(1))) {
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            other => other?,
        };
        for ev in events.iter() {
            if ev.token() == LISTENER {
                loop {
                    match listener.accept() {
                        Ok((mut stream, _)) => {
                            let _ = stream.set_nodelay(true);
                            let entry = floor.conns.vacant_entry();
                            poll.registry().register(
                                &mut stream,
                                Token(entry.key()),
                                Interest::READABLE | Interest::WRITABLE,
                            )?;
                            entry.insert(Conn {
                                stream,
                                role: None,
                                decoder: Decoder::new(),
                                input: Vec::new(),
                                message: Vec::new(),
                                output: Vec::new(),
                                done: false,
                            });
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        // EMFILE and friends: the backlog keeps the connection.
                        Err(_) => break,
                    }
                }
                continue;
            }
            let key = ev.token().0;
            if !floor.conns.contains(key) {
                continue;
            }
            if ev.is_writable() {
                floor.writable(key);
            }
            if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                for Fanout(role, frame) in floor.readable(key, &mut buf) {
                    floor.fan_out(role, &frame);
                }
            }
            if floor.conns[key].done {
                let mut c = floor.conns.remove(key);
                let _ = poll.registry().deregister(&mut c.stream);
            }
        }
    }
}
