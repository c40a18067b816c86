//! One connection to Redis: opened blocking (connect, AUTH, PING, all within a timeout),
//! then served non-blocking from the bridge's poll loop with a bounded read side (the
//! decoder's limits) and a write buffer the bridge bounds.

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use crate::resp::{Decoder, Limits, Value, encode};
use crate::url::Target;

/// Bytes read per `read` call.
const READ_CHUNK: usize = 64 << 10;
/// Reads per turn before the bridge looks at its other work (a flooding Redis does not
/// starve publishing).
const READS_PER_TURN: usize = 16;

/// Why a link could not be opened.
#[derive(Debug)]
pub(crate) enum OpenError {
    /// No TCP connection.
    Connect(io::Error),
    /// Connected, but Redis refused the handshake or did not speak RESP.
    Handshake(String),
}

/// How a read turn ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Drained {
    /// The socket is empty for now.
    Yes,
    /// The turn's budget ran out with more possibly waiting.
    No,
}

pub(crate) struct Link {
    pub stream: mio::net::TcpStream,
    /// Input not yet consumed by the decoder (at most one partial leaf).
    rbuf: Vec<u8>,
    chunk: Box<[u8]>,
    decoder: Decoder,
    wbuf: Vec<u8>,
    /// How much of `wbuf` the socket has taken.
    wpos: usize,
    /// When the PING now unanswered was sent.
    pub ping_sent: Option<Instant>,
    /// Replies owed for commands written (publishes on the publishing link).
    pub pending: u64,
}

impl Link {
    /// Connects to `target`, logs in if it has credentials, and checks the server with a
    /// PING; everything within `timeout`.
    pub fn open(target: &Target, timeout: Duration, limits: Limits) -> Result<Link, OpenError> {
        let addrs = (target.host.as_str(), target.port)
            .to_socket_addrs()
            .map_err(OpenError::Connect)?;
        let mut last = io::Error::new(io::ErrorKind::NotFound, "no address for the host");
        let mut stream = None;
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, timeout) {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last = e,
            }
        }
        let mut stream = stream.ok_or(OpenError::Connect(last))?;
        let io_err = |e: io::Error| OpenError::Connect(e);
        // Publishes are small and latency matters more than segment count.
        stream.set_nodelay(true).map_err(io_err)?;
        stream.set_read_timeout(Some(timeout)).map_err(io_err)?;
        stream.set_write_timeout(Some(timeout)).map_err(io_err)?;
        let mut out = Vec::new();
        let mut expect = Vec::new();
        if let Some(password) = &target.password {
            match &target.user {
                Some(user) => {
                    encode::simple(&mut out, &[b"AUTH", user.as_bytes(), password.as_bytes()])
                }
                None => encode::simple(&mut out, &[b"AUTH", password.as_bytes()]),
            }
            expect.push(&b"OK"[..]);
        } else if let Some(user) = &target.user {
            return Err(OpenError::Handshake(format!(
                "user {user:?} given without a password"
            )));
        }
        encode::simple(&mut out, &[b"PING"]);
        expect.push(b"PONG");
        stream.write_all(&out).map_err(io_err)?;
        let mut decoder = Decoder::new(limits);
        let mut rbuf = Vec::new();
        let mut chunk = vec![0u8; 4096];
        let deadline = Instant::now() + timeout;
        let mut answers = expect.into_iter();
        let mut want = answers.next();
        while let Some(w) = want {
            if Instant::now() >= deadline {
                return Err(OpenError::Connect(io::ErrorKind::TimedOut.into()));
            }
            let n = match stream.read(&mut chunk) {
                Ok(0) => return Err(OpenError::Handshake("closed the connection".into())),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(OpenError::Connect(e)),
            };
            rbuf.extend_from_slice(&chunk[..n]);
            loop {
                let (used, v) = decoder
                    .decode(&rbuf)
                    .map_err(|e| OpenError::Handshake(format!("not a Redis server ({e})")))?;
                rbuf.drain(..used);
                match v {
                    None => break,
                    Some(Value::Simple(s)) if s == w => {
                        want = answers.next();
                        if want.is_none() {
                            break;
                        }
                    }
                    Some(Value::Error(e)) => {
                        return Err(OpenError::Handshake(
                            String::from_utf8_lossy(&e).into_owned(),
                        ));
                    }
                    Some(other) => {
                        return Err(OpenError::Handshake(format!("unexpected answer {other:?}")));
                    }
                }
            }
        }
        if !rbuf.is_empty() {
            return Err(OpenError::Handshake("answered more than asked".into()));
        }
        stream.set_nonblocking(true).map_err(io_err)?;
        Ok(Link {
            stream: mio::net::TcpStream::from_std(stream),
            rbuf: Vec::new(),
            chunk: vec![0; READ_CHUNK].into_boxed_slice(),
            decoder,
            wbuf: Vec::new(),
            wpos: 0,
            ping_sent: None,
            pending: 0,
        })
    }

    /// Reads what the socket has (up to a turn's budget) and decodes it into `out`.
    pub fn read(&mut self, out: &mut Vec<Value>) -> Result<Drained, String> {
        for _ in 0..READS_PER_TURN {
            let n = match self.stream.read(&mut self.chunk) {
                Ok(0) => return Err("Redis closed the connection".into()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Drained::Yes),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(format!("read: {e}")),
            };
            let data = &self.chunk[..n];
            if self.rbuf.is_empty() {
                let used = decode_all(&mut self.decoder, data, out)?;
                self.rbuf.extend_from_slice(&data[used..]);
            } else {
                self.rbuf.extend_from_slice(data);
                let used = decode_all(&mut self.decoder, &self.rbuf, out)?;
                self.rbuf.drain(..used);
            }
            if n < self.chunk.len() {
                return Ok(Drained::Yes);
            }
        }
        Ok(Drained::No)
    }

    /// Where commands are appended; [`Link::flush`] sends them.
    pub fn out(&mut self) -> &mut Vec<u8> {
        &mut self.wbuf
    }

    /// Bytes written but not taken by the socket yet.
    pub fn unsent(&self) -> usize {
        self.wbuf.len() - self.wpos
    }

    /// Writes what the socket takes now.
    pub fn flush(&mut self) -> Result<(), String> {
        while self.wpos < self.wbuf.len() {
            match self.stream.write(&self.wbuf[self.wpos..]) {
                Ok(0) => return Err("write returned 0".into()),
                Ok(n) => self.wpos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(format!("write: {e}")),
            }
        }
        if self.wpos == self.wbuf.len() {
            self.wbuf.clear();
            self.wpos = 0;
        } else if self.wpos > self.wbuf.len() / 2 {
            self.wbuf.drain(..self.wpos);
            self.wpos = 0;
        }
        Ok(())
    }
}

fn decode_all(d: &mut Decoder, buf: &[u8], out: &mut Vec<Value>) -> Result<usize, String> {
    let mut at = 0;
    loop {
        let (used, v) = d
            .decode(&buf[at..])
            .map_err(|e| format!("Redis sent bad RESP: {e}"))?;
        at += used;
        match v {
            Some(v) => out.push(v),
            None => return Ok(at),
        }
    }
}
