//! The client side of RFC 6455, as little as the load generator needs: pre-masked frames
//! built once and sent many times, and a streaming parser for what servers send.

/// The masking key of every client frame. A fixed key lets a frame be masked once and sent
/// by every connection; servers unmask it all the same.
pub const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// Text opcode.
pub const TEXT: u8 = 0x1;
/// Binary opcode.
pub const BINARY: u8 = 0x2;
const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;
/// Pong opcode.
pub const PONG: u8 = 0xA;

/// How many leading payload bytes of each message the parser keeps, to check content.
pub const PREFIX: usize = 16;

/// A whole client frame (FIN set, masked with [`MASK`]).
pub fn masked_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let len = payload.len();
    let mut f = Vec::with_capacity(len + 14);
    f.push(0x80 | opcode);
    if len < 126 {
        f.push(0x80 | len as u8);
    } else if len <= u16::MAX as usize {
        f.push(0x80 | 126);
        f.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        f.push(0x80 | 127);
        f.extend_from_slice(&(len as u64).to_be_bytes());
    }
    f.extend_from_slice(&MASK);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i & 3]));
    f
}

/// A masked close frame with code 1000.
pub fn close_frame() -> Vec<u8> {
    masked_frame(CLOSE, &1000u16.to_be_bytes())
}

/// An ASCII payload of `n` bytes (valid as text), the same for every message.
pub fn payload(n: usize) -> Vec<u8> {
    const ALPHABET: &[u8] =
        b"{\"msg\":\"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ\"}";
    (0..n).map(|i| ALPHABET[i % ALPHABET.len()]).collect()
}

/// What the parser found.
#[derive(Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// A whole data message (all its fragments).
    Message {
        /// Text (true) or binary.
        text: bool,
        /// Payload length.
        len: u64,
        /// Its first bytes (up to [`PREFIX`]).
        prefix: &'a [u8],
    },
    /// A ping with its payload, owed a pong.
    Ping(&'a [u8]),
    /// The server closed.
    Close,
}

/// Why the server's bytes are not acceptable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    /// A server frame must not be masked.
    Masked,
    /// Unknown opcode or reserved bits.
    Bad,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Header,
    Payload,
}

/// A streaming parser of server frames; payload bytes are counted, not kept.
#[derive(Debug)]
pub struct Parser {
    state: State,
    hdr: [u8; 10],
    hdr_len: u8,
    opcode: u8,
    fin: bool,
    left: u64,
    /// Opcode of the message being assembled from fragments (0: none).
    msg_opcode: u8,
    msg_len: u64,
    prefix: [u8; PREFIX],
    prefix_len: u8,
    control: [u8; 125],
    control_len: u8,
}

impl Default for Parser {
    fn default() -> Self {
        Parser {
            state: State::Header,
            hdr: [0; 10],
            hdr_len: 0,
            opcode: 0,
            fin: false,
            left: 0,
            msg_opcode: 0,
            msg_len: 0,
            prefix: [0; PREFIX],
            prefix_len: 0,
            control: [0; 125],
            control_len: 0,
        }
    }
}

impl Parser {
    /// Consumes `buf`, reporting each complete message or control frame.
    pub fn feed(
        &mut self,
        mut buf: &[u8],
        on: &mut impl FnMut(Event<'_>),
    ) -> Result<(), ParseError> {
        while !buf.is_empty() {
            match self.state {
                State::Header => {
                    let need = if self.hdr_len < 2 {
                        2
                    } else {
                        header_len(self.hdr[1])
                    };
                    let take = (need - self.hdr_len as usize).min(buf.len());
                    let at = self.hdr_len as usize;
                    self.hdr[at..at + take].copy_from_slice(&buf[..take]);
                    self.hdr_len += take as u8;
                    buf = &buf[take..];
                    if (self.hdr_len as usize) < need {
                        continue;
                    }
                    if need == 2 && header_len(self.hdr[1]) > 2 {
                        continue;
                    }
                    self.start_frame()?;
                    if self.left == 0 {
                        self.end_frame(on);
                    }
                }
                State::Payload => {
                    let take = (self.left.min(buf.len() as u64)) as usize;
                    let chunk = &buf[..take];
                    if self.opcode >= CLOSE {
                        let at = self.control_len as usize;
                        self.control[at..at + take].copy_from_slice(chunk);
                        self.control_len += take as u8;
                    } else if (self.prefix_len as usize) < PREFIX {
                        let at = self.prefix_len as usize;
                        let n = take.min(PREFIX - at);
                        self.prefix[at..at + n].copy_from_slice(&chunk[..n]);
                        self.prefix_len += n as u8;
                    }
                    self.left -= take as u64;
                    buf = &buf[take..];
                    if self.left == 0 {
                        self.end_frame(on);
                    }
                }
            }
        }
        Ok(())
    }

    fn start_frame(&mut self) -> Result<(), ParseError> {
        let (b0, b1) = (self.hdr[0], self.hdr[1]);
        if b1 & 0x80 != 0 {
            return Err(ParseError::Masked);
        }
        if b0 & 0x70 != 0 {
            return Err(ParseError::Bad);
        }
        self.fin = b0 & 0x80 != 0;
        self.opcode = b0 & 0x0f;
        self.left = match b1 & 0x7f {
            126 => u16::from_be_bytes([self.hdr[2], self.hdr[3]]) as u64,
            127 => u64::from_be_bytes(self.hdr[2..10].try_into().expect("8 bytes")),
            n => n as u64,
        };
        match self.opcode {
            0 | TEXT | BINARY => {
                if self.opcode != 0 {
                    self.msg_opcode = self.opcode;
                    self.msg_len = 0;
                    self.prefix_len = 0;
                }
                self.msg_len += self.left;
            }
            CLOSE | PING | PONG if self.left <= 125 && self.fin => self.control_len = 0,
            _ => return Err(ParseError::Bad),
        }
        self.hdr_len = 0;
        self.state = State::Payload;
        Ok(())
    }

    fn end_frame(&mut self, on: &mut impl FnMut(Event<'_>)) {
        self.state = State::Header;
        match self.opcode {
            PING => on(Event::Ping(&self.control[..self.control_len as usize])),
            CLOSE => on(Event::Close),
            PONG => {}
            _ if self.fin => {
                on(Event::Message {
                    text: self.msg_opcode == TEXT,
                    len: self.msg_len,
                    prefix: &self.prefix[..self.prefix_len as usize],
                });
                self.msg_opcode = 0;
            }
            _ => {}
        }
    }
}

/// Length of a server frame header (unmasked) from its second byte.
fn header_len(b1: u8) -> usize {
    match b1 & 0x7f {
        126 => 4,
        127 => 10,
        _ => 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server_frame(opcode: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
        let mut f = masked_frame(opcode, payload);
        // Unmask: clear the mask bit, drop the key, undo the XOR.
        let hl = f.len() - payload.len() - 4;
        f[0] = if fin { 0x80 | opcode } else { opcode };
        f[1] &= 0x7f;
        let mut out = f[..hl].to_vec();
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn parses_messages_split_anywhere() {
        let big = payload(70_000);
        let mut wire = server_frame(TEXT, true, b"hello");
        wire.extend(server_frame(PING, true, b"p"));
        wire.extend(server_frame(BINARY, false, &big[..300]));
        wire.extend(server_frame(0, true, &big[300..]));
        wire.extend(server_frame(CLOSE, true, &[3, 232]));
        for step in [1, 2, 3, 7, 64, 100_000] {
            let mut p = Parser::default();
            let mut seen = Vec::new();
            for chunk in wire.chunks(step) {
                p.feed(chunk, &mut |e| {
                    seen.push(match e {
                        Event::Message { text, len, prefix } => {
                            format!("m{text}{len}{}", prefix.len())
                        }
                        Event::Ping(b) => format!("p{}", b.len()),
                        Event::Close => "c".into(),
                    })
                })
                .unwrap();
            }
            assert_eq!(seen, ["mtrue55", "p1", "mfalse7000016", "c"], "step {step}");
        }
    }

    #[test]
    fn masked_frame_roundtrip() {
        let f = masked_frame(TEXT, b"abc");
        assert_eq!(&f[..2], &[0x81, 0x83]);
        let un: Vec<u8> = f[6..]
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ MASK[i & 3])
            .collect();
        assert_eq!(un, b"abc");
        assert_eq!(masked_frame(BINARY, &[0; 200])[1], 0x80 | 126);
        assert_eq!(masked_frame(BINARY, &[0; 70_000])[1], 0x80 | 127);
    }

    #[test]
    fn rejects_masked_server_frames() {
        let mut p = Parser::default();
        assert_eq!(
            p.feed(&masked_frame(TEXT, b"x"), &mut |_| {}),
            Err(ParseError::Masked)
        );
    }
}
