//! One strict client WebSocket connection for long holds (`throng-load hold`), sans
//! scheduling: the upgrade request with its own random key and the accept check, a fresh
//! mask for every frame it sends, the server's frames decoded and validated by
//! throng-protocol in client role, and the close handshake tracked to its end.
//!
//! The measurements use [`crate::fleet`] instead, which shares pre-masked frames between
//! connections and counts payload bytes without checking them, so that one load CPU can
//! outrun one server CPU. A hold sends almost nothing, so it can afford to be exact, and
//! what it must report (who closed, whether cleanly) needs the states kept here.

use std::io::{self, Read, Write};

use throng_protocol::frame::{FrameHead, HeaderBuf};
use throng_protocol::mask::apply_mask;
use throng_protocol::{Decoder, DecoderConfig, Event};

use crate::tls::Stream;
use crate::upgrade::{self, Key, check_response, splitmix};

/// Where a connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// TCP connect in progress.
    Connecting,
    /// Upgrade request sent, waiting for the 101.
    Handshake,
    /// WebSocket open.
    Open,
    /// A close frame was sent (ours first, or in answer to the server's); waiting for
    /// the server's close frame and its FIN.
    Closing,
    /// Ended: cleanly (close handshake and FIN) or not.
    Done {
        /// Both close frames were exchanged before the FIN.
        clean: bool,
    },
}

/// What the connection saw in one read.
#[derive(Debug, Default, Clone, Copy)]
pub struct Seen {
    /// Whole data messages (text or binary).
    pub messages: u32,
    /// Pings, each answered with a pong.
    pub pings: u32,
    /// The server sent a close frame or ended TCP while we did not ask (reported once).
    pub closed_by_server: bool,
}

/// One connection.
pub struct Conn {
    /// Its socket (or a TLS session over it).
    pub stream: Stream,
    /// Where it is.
    pub state: State,
    key: Key,
    mask_seed: u32,
    decoder: Decoder,
    /// Unconsumed input (a partial response head or frame).
    input: Vec<u8>,
    /// Output the socket did not take yet.
    output: Vec<u8>,
    got_close: bool,
    /// We started the close handshake ([`Conn::close`]).
    pub initiated_close: bool,
    /// The server closed (close frame, FIN or reset) before we asked.
    pub server_closed: bool,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn").finish_non_exhaustive()
    }
}

impl Conn {
    /// A connection whose TCP connect is in progress; `seed` (different for every
    /// connection) makes its handshake key and masks.
    pub fn new(stream: Stream, seed: u64) -> Conn {
        Conn {
            stream,
            state: State::Connecting,
            key: Key::new(seed),
            mask_seed: (splitmix(splitmix(seed)) as u32) | 1,
            decoder: Decoder::new(),
            input: Vec::new(),
            output: Vec::new(),
            got_close: false,
            initiated_close: false,
            server_closed: false,
        }
    }

    /// The socket became writable while connecting: if the connect finished, sends the
    /// upgrade request.
    pub fn connected(&mut self, host: &str, path: &str) -> io::Result<()> {
        if let Some(e) = self.stream.take_error()? {
            return Err(e);
        }
        self.send_request(host, path)
    }

    /// Sends the upgrade request if the connect has completed, which on loopback it
    /// usually has when `connect` returns: callers try this at once and fall back to
    /// [`Conn::connected`] on `EPOLLOUT`. A socket still connecting refuses the write
    /// (`EAGAIN`) and the connection stays [`State::Connecting`].
    pub fn send_request(&mut self, host: &str, path: &str) -> io::Result<()> {
        if self.state != State::Connecting {
            return Ok(());
        }
        let req = upgrade::request(host, path, &self.key);
        match self.stream.write(req.as_bytes()) {
            Ok(n) => {
                self.state = State::Handshake;
                self.output.extend_from_slice(&req.as_bytes()[n..]);
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn next_mask(&mut self) -> [u8; 4] {
        // xorshift: cheap, and every frame gets a fresh key as RFC 6455 asks.
        let mut x = self.mask_seed;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.mask_seed = x;
        x.to_le_bytes()
    }

    /// Sends a masked control frame.
    fn control(&mut self, head: FrameHead, payload: &[u8]) -> io::Result<()> {
        let key = self.next_mask();
        let mut hb = HeaderBuf::default();
        let mut frame = head.with_mask(key).encode(&mut hb).to_vec();
        let start = frame.len();
        frame.extend_from_slice(payload);
        apply_mask(&mut frame[start..], key, 0);
        self.write(&frame)
    }

    /// Starts the close handshake with 1000.
    pub fn close(&mut self) -> io::Result<()> {
        if self.state != State::Open {
            return Ok(());
        }
        self.state = State::Closing;
        self.initiated_close = true;
        self.control(FrameHead::close(2), &1000u16.to_be_bytes())
    }

    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        if self.output.is_empty() {
            match self.stream.write(bytes) {
                Ok(n) if n == bytes.len() => return Ok(()),
                Ok(n) => self.output.extend_from_slice(&bytes[n..]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.output.extend_from_slice(bytes)
                }
                Err(e) => return Err(e),
            }
        } else {
            self.output.extend_from_slice(bytes);
        }
        Ok(())
    }

    /// The socket can take more: write what waits.
    pub fn flush(&mut self) -> io::Result<()> {
        // TLS records the socket did not take yet go before any more plaintext.
        self.stream.flush_records()?;
        while !self.output.is_empty() {
            match self.stream.write(&self.output) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.output.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Reads what arrived and handles it. A read shorter than `buf` drained the socket
    /// and ends the round (with edge-triggered readiness, later data raises a new edge):
    /// one read per ping instead of two. With `to_end` (the event also reported the
    /// peer's FIN, which raises no later edge) it reads on until EOF or `EAGAIN`.
    pub fn readable(&mut self, buf: &mut [u8], to_end: bool) -> io::Result<Seen> {
        let mut seen = Seen::default();
        loop {
            let n = match self.stream.read(buf) {
                Ok(0) => {
                    let clean = self.got_close && self.state == State::Closing;
                    if !self.initiated_close && !self.server_closed {
                        self.server_closed = true;
                        seen.closed_by_server = true;
                    }
                    self.state = State::Done { clean };
                    return Ok(seen);
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(seen),
                Err(e) => return Err(e),
            };
            if self.input.is_empty() {
                let used = self.handle(&mut buf[..n], &mut seen)?;
                self.input.extend_from_slice(&buf[used..n]);
            } else {
                let mut data = std::mem::take(&mut self.input);
                data.extend_from_slice(&buf[..n]);
                let used = self.handle(&mut data, &mut seen)?;
                data.drain(..used);
                self.input = data;
            }
            if n < buf.len() && !to_end {
                return Ok(seen);
            }
        }
    }

    /// Handles input; returns bytes used.
    fn handle(&mut self, data: &mut [u8], seen: &mut Seen) -> io::Result<usize> {
        let mut used = 0;
        if self.state == State::Handshake {
            match check_response(data, &self.key).map_err(io::Error::other)? {
                None => return Ok(0),
                Some(n) => {
                    self.state = State::Open;
                    used = n;
                }
            }
        }
        let cfg = DecoderConfig::client();
        while used < data.len() && matches!(self.state, State::Open | State::Closing) {
            let decoded = self
                .decoder
                .decode(&cfg, &mut data[used..])
                .map_err(|e| io::Error::other(format!("server broke the protocol: {e}")))?;
            used += decoded.consumed;
            match decoded.event {
                None => break,
                Some(Event::Data(d)) if d.last => seen.messages += 1,
                Some(Event::Data(_)) | Some(Event::Pong(_)) => {}
                Some(Event::Ping(p)) => {
                    let p = p.to_vec();
                    seen.pings += 1;
                    self.control(FrameHead::pong(p.len() as u8), &p)?;
                }
                Some(Event::Close(_)) => {
                    self.got_close = true;
                    if self.state == State::Open {
                        self.server_closed = true;
                        seen.closed_by_server = true;
                        self.state = State::Closing;
                        self.control(FrameHead::close(2), &1000u16.to_be_bytes())?;
                    }
                }
            }
        }
        Ok(used)
    }
}
