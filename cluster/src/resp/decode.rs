//! A streaming RESP2 decoder with limits.
//!
//! Why not a whole-frame parser (such as the `redis-protocol` crate's `decode(&[u8])`): a
//! whole-frame parser needs an entire bulk string in memory before it can say anything
//! about it, so a 100 MB payload published into a channel by anyone with access to Redis
//! would be buffered by every node, or the node would have to drop the connection (and
//! with it every subscription). This decoder reads a bulk string's length from its header
//! and, when it is over the limit, skips its bytes as they stream past without keeping
//! them, yielding [`Value::TooLarge`] in its place: memory stays bounded by the limits
//! and the connection goes on.

use std::fmt;

/// A decoded RESP2 value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// `+...`: a simple string.
    Simple(Vec<u8>),
    /// `-...`: an error reply.
    Error(Vec<u8>),
    /// `:...`: an integer.
    Integer(i64),
    /// `$n`: a bulk string.
    Bulk(Vec<u8>),
    /// `$-1` or `*-1`: null.
    Nil,
    /// A bulk string of this length that was over [`Limits::max_bulk`] (or would have
    /// taken the value being assembled over [`Limits::max_value`]): its bytes were
    /// skipped, not kept.
    TooLarge(u64),
    /// `*n`: an array.
    Array(Vec<Value>),
}

/// What the decoder keeps at most.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest bulk string kept; longer ones become [`Value::TooLarge`].
    pub max_bulk: usize,
    /// Most bytes one top-level value may hold in memory, counting every bulk string and
    /// [`ELEMENT_COST`] per element: a bulk that would pass it is skipped like an
    /// oversize one, so a huge array costs no more than this.
    pub max_value: usize,
    /// Longest line (simple string, error, integer or length) before its CRLF.
    pub max_line: usize,
    /// Deepest nesting of arrays.
    pub max_depth: usize,
}

/// What an element costs against [`Limits::max_value`] beyond its bytes.
pub const ELEMENT_COST: usize = size_of::<Value>();

impl Limits {
    /// Limits for values carrying payloads of up to `max_bulk` bytes: room for a
    /// pub/sub message (kind, pattern, channel, payload), 64 KiB lines, depth 4.
    pub fn for_payload(max_bulk: usize) -> Limits {
        Limits {
            max_bulk,
            max_value: max_bulk.saturating_mul(2).saturating_add(64 << 10),
            max_line: 64 << 10,
            max_depth: 4,
        }
    }
}

/// Why the input is not RESP2 (the connection cannot be resynchronised after one).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    /// A type byte RESP2 does not have.
    UnknownType(u8),
    /// No CRLF within [`Limits::max_line`] bytes.
    LineTooLong,
    /// A length or integer that is not a decimal number in range.
    BadNumber,
    /// A bulk string not followed by CRLF.
    MissingCrlf,
    /// Arrays nested deeper than [`Limits::max_depth`].
    TooDeep,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::UnknownType(b) => write!(f, "unknown RESP type byte 0x{b:02x}"),
            DecodeError::LineTooLong => f.write_str("RESP line too long"),
            DecodeError::BadNumber => f.write_str("bad number in RESP"),
            DecodeError::MissingCrlf => f.write_str("bulk string not ended by CRLF"),
            DecodeError::TooDeep => f.write_str("RESP arrays nested too deep"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// An array being filled.
#[derive(Debug)]
struct Open {
    want: usize,
    items: Vec<Value>,
}

/// One step of input: a whole leaf, the head of an array, or the head of a bulk string
/// to skip.
enum Token {
    Leaf(Value),
    Array(usize),
    Skip(u64),
}

/// The decoder's state between calls: arrays being filled and a skip in progress.
#[derive(Debug)]
pub struct Decoder {
    limits: Limits,
    stack: Vec<Open>,
    /// Bytes of the value being assembled, as counted against `max_value`.
    held: usize,
    /// Bytes of an oversize bulk string (and its CRLF) still to skip.
    skip: u64,
    skipped_len: u64,
}

impl Decoder {
    /// A decoder with these limits.
    pub fn new(limits: Limits) -> Decoder {
        Decoder {
            limits,
            stack: Vec::new(),
            held: 0,
            skip: 0,
            skipped_len: 0,
        }
    }

    /// Decodes from `buf`, returning how many bytes it consumed and the top-level value
    /// completed, if any. `(n, None)`: it needs more input; keep `buf[n..]` and call
    /// again with more after it. `(n, Some(v))`: call again with `buf[n..]` for the next.
    /// Bytes a partial leaf needs are never consumed, so the caller holds at most one
    /// leaf (a line, or a bulk string within the limits) of unconsumed input.
    pub fn decode(&mut self, buf: &[u8]) -> Result<(usize, Option<Value>), DecodeError> {
        let mut at = 0;
        loop {
            if self.skip > 0 {
                let n = self.skip.min((buf.len() - at) as u64);
                at += n as usize;
                self.skip -= n;
                if self.skip > 0 {
                    return Ok((at, None));
                }
                if let Some(v) = self.complete(Value::TooLarge(self.skipped_len)) {
                    return Ok((at, Some(v)));
                }
                continue;
            }
            let Some((token, used)) = self.token(&buf[at..])? else {
                return Ok((at, None));
            };
            at += used;
            let leaf = match token {
                Token::Leaf(v) => v,
                Token::Skip(len) => {
                    self.skip = len + 2;
                    self.skipped_len = len;
                    continue;
                }
                Token::Array(0) => Value::Array(Vec::new()),
                Token::Array(want) => {
                    if self.stack.len() >= self.limits.max_depth {
                        return Err(DecodeError::TooDeep);
                    }
                    self.held += ELEMENT_COST;
                    self.stack.push(Open {
                        want,
                        items: Vec::new(),
                    });
                    continue;
                }
            };
            if let Some(v) = self.complete(leaf) {
                return Ok((at, Some(v)));
            }
        }
    }

    /// Adds a finished element to the innermost open array (closing arrays that fill
    /// up); the top-level value when everything closed.
    fn complete(&mut self, mut v: Value) -> Option<Value> {
        loop {
            let Some(open) = self.stack.last_mut() else {
                self.held = 0;
                return Some(v);
            };
            open.items.push(v);
            if open.items.len() < open.want {
                return None;
            }
            v = Value::Array(self.stack.pop().expect("checked").items);
        }
    }

    fn token(&mut self, buf: &[u8]) -> Result<Option<(Token, usize)>, DecodeError> {
        let Some(&kind) = buf.first() else {
            return Ok(None);
        };
        if !matches!(kind, b'+' | b'-' | b':' | b'$' | b'*') {
            return Err(DecodeError::UnknownType(kind));
        }
        let Some(end) = find_crlf(buf, self.limits.max_line)? else {
            return Ok(None);
        };
        let line = &buf[1..end];
        let used = end + 2;
        self.held += ELEMENT_COST;
        Ok(Some(match kind {
            b'+' => self.leaf(Value::Simple(line.to_vec()), line.len(), used),
            b'-' => self.leaf(Value::Error(line.to_vec()), line.len(), used),
            b':' => (Token::Leaf(Value::Integer(number(line)?)), used),
            b'*' => match number(line)? {
                -1 => (Token::Leaf(Value::Nil), used),
                n if n < 0 => return Err(DecodeError::BadNumber),
                n => (Token::Array(n as usize), used),
            },
            _ => match number(line)? {
                -1 => (Token::Leaf(Value::Nil), used),
                n if n < 0 => return Err(DecodeError::BadNumber),
                n => {
                    let len = n as u64;
                    let over_value = self.held.saturating_add(len as usize) > self.limits.max_value;
                    if len > self.limits.max_bulk as u64 || over_value {
                        (Token::Skip(len), used)
                    } else {
                        let len = len as usize;
                        if buf.len() < used + len + 2 {
                            self.held -= ELEMENT_COST; // not taken yet
                            return Ok(None);
                        }
                        if &buf[used + len..used + len + 2] != b"\r\n" {
                            return Err(DecodeError::MissingCrlf);
                        }
                        self.held += len;
                        let bytes = buf[used..used + len].to_vec();
                        (Token::Leaf(Value::Bulk(bytes)), used + len + 2)
                    }
                }
            },
        }))
    }

    fn leaf(&mut self, v: Value, len: usize, used: usize) -> (Token, usize) {
        self.held += len;
        (Token::Leaf(v), used)
    }
}

/// The index of the CR ending a line of a type byte and at most `max_line` bytes.
fn find_crlf(buf: &[u8], max_line: usize) -> Result<Option<usize>, DecodeError> {
    let span = max_line + 3;
    let window = &buf[..buf.len().min(span)];
    match window.windows(2).position(|w| w == b"\r\n") {
        Some(i) => Ok(Some(i)),
        None if buf.len() >= span => Err(DecodeError::LineTooLong),
        None => Ok(None),
    }
}

/// A decimal integer as RESP writes them (optional `-`, digits only).
fn number(line: &[u8]) -> Result<i64, DecodeError> {
    let (neg, digits) = match line.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, line),
    };
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return Err(DecodeError::BadNumber);
    }
    let mut n: i64 = 0;
    for &d in digits {
        n = n
            .checked_mul(10)
            .and_then(|n| n.checked_add(i64::from(d - b'0')))
            .ok_or(DecodeError::BadNumber)?;
    }
    Ok(if neg { -n } else { n })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_bulk: usize) -> Limits {
        Limits {
            max_bulk,
            max_value: 1 << 20,
            max_line: 64,
            max_depth: 3,
        }
    }

    /// Feeds `input` in pieces of `step` bytes, as a socket would, holding unconsumed
    /// bytes like the caller does; returns the values and the most bytes held.
    fn feed(
        d: &mut Decoder,
        input: &[u8],
        step: usize,
    ) -> Result<(Vec<Value>, usize), DecodeError> {
        let (out, most, left) = feed_partial(d, input, step)?;
        assert_eq!(left, 0, "everything consumed");
        Ok((out, most))
    }

    /// [`feed`], also returning the bytes left unconsumed at the end.
    fn feed_partial(
        d: &mut Decoder,
        input: &[u8],
        step: usize,
    ) -> Result<(Vec<Value>, usize, usize), DecodeError> {
        let mut held: Vec<u8> = Vec::new();
        let mut out = Vec::new();
        let mut most = 0;
        for chunk in input.chunks(step.max(1)) {
            held.extend_from_slice(chunk);
            most = most.max(held.len());
            loop {
                let (used, v) = d.decode(&held)?;
                held.drain(..used);
                match v {
                    Some(v) => out.push(v),
                    None => break,
                }
            }
        }
        Ok((out, most, held.len()))
    }

    fn bulk(s: &str) -> Value {
        Value::Bulk(s.as_bytes().to_vec())
    }

    const MESSAGE: &[u8] = b"*3\r\n$7\r\nmessage\r\n$4\r\nroom\r\n$5\r\nhello\r\n";

    #[test]
    fn every_type_at_every_split() {
        let input = b"+OK\r\n-ERR no\r\n:42\r\n:-7\r\n$-1\r\n*-1\r\n*0\r\n$0\r\n\r\n*2\r\n*1\r\n:1\r\n$2\r\nab\r\n";
        let want = vec![
            Value::Simple(b"OK".to_vec()),
            Value::Error(b"ERR no".to_vec()),
            Value::Integer(42),
            Value::Integer(-7),
            Value::Nil,
            Value::Nil,
            Value::Array(vec![]),
            bulk(""),
            Value::Array(vec![Value::Array(vec![Value::Integer(1)]), bulk("ab")]),
        ];
        for step in 1..=input.len() {
            let (got, _) = feed(&mut Decoder::new(limits(1024)), input, step).unwrap();
            assert_eq!(got, want, "pieces of {step}");
        }
    }

    #[test]
    fn a_pubsub_message() {
        let (got, _) = feed(&mut Decoder::new(limits(1024)), MESSAGE, 3).unwrap();
        assert_eq!(
            got,
            vec![Value::Array(vec![
                bulk("message"),
                bulk("room"),
                bulk("hello")
            ])]
        );
    }

    #[test]
    fn an_oversize_bulk_is_skipped_without_being_held() {
        let big = vec![b'x'; 100_000];
        let mut input =
            format!("*3\r\n$7\r\nmessage\r\n$4\r\nroom\r\n${}\r\n", big.len()).into_bytes();
        input.extend_from_slice(&big);
        input.extend_from_slice(b"\r\n");
        input.extend_from_slice(MESSAGE);
        let mut d = Decoder::new(limits(1024));
        let (got, most) = feed(&mut d, &input, 4096).unwrap();
        assert_eq!(
            got,
            vec![
                Value::Array(vec![
                    bulk("message"),
                    bulk("room"),
                    Value::TooLarge(100_000)
                ]),
                Value::Array(vec![bulk("message"), bulk("room"), bulk("hello")]),
            ]
        );
        assert!(most <= 4096 + 64, "held {most} bytes");
    }

    #[test]
    fn a_value_over_max_value_skips_its_bulks() {
        let mut l = limits(1000);
        l.max_value = 1500;
        let a = "a".repeat(900);
        let input = format!("*2\r\n$900\r\n{a}\r\n$900\r\n{a}\r\n+after\r\n");
        let (got, _) = feed(&mut Decoder::new(l), input.as_bytes(), 7).unwrap();
        assert_eq!(
            got,
            vec![
                Value::Array(vec![bulk(&a), Value::TooLarge(900)]),
                Value::Simple(b"after".to_vec())
            ]
        );
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let cases: &[(&[u8], DecodeError)] = &[
            (b"?hello\r\n", DecodeError::UnknownType(b'?')),
            (b"$abc\r\n", DecodeError::BadNumber),
            (b"$-5\r\n", DecodeError::BadNumber),
            (b"*-2\r\n", DecodeError::BadNumber),
            (b":99999999999999999999\r\n", DecodeError::BadNumber),
            (b":\r\n", DecodeError::BadNumber),
            (b"$3\r\nabcde\r\n", DecodeError::MissingCrlf),
            (b"*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n", DecodeError::TooDeep),
        ];
        for (input, want) in cases {
            let mut d = Decoder::new(limits(1024));
            assert_eq!(feed(&mut d, input, 1).unwrap_err(), *want, "{input:?}");
        }
        let long = vec![b'+'; 200];
        assert_eq!(
            Decoder::new(limits(1024)).decode(&long).unwrap_err(),
            DecodeError::LineTooLong
        );
        // A short line without its CRLF yet is just incomplete.
        assert_eq!(
            Decoder::new(limits(1024)).decode(b"+OK").unwrap(),
            (0, None)
        );
    }

    #[test]
    fn a_huge_array_header_allocates_nothing_up_front() {
        let mut d = Decoder::new(limits(1024));
        assert_eq!(d.decode(b"*9223372036854775807\r\n").unwrap(), (22, None));
        assert_eq!(d.stack[0].items.capacity(), 0);
    }

    /// Random bytes never panic, and memory held stays within the limits.
    #[test]
    fn random_input_never_panics() {
        let mut seed = 0x1234_5678_9abc_def0u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let alphabet = b"+-:$*\r\n0123456789-ab";
        for _ in 0..2000 {
            let len = (next() % 64) as usize;
            let input: Vec<u8> = (0..len)
                .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                .collect();
            let mut d = Decoder::new(limits(16));
            if let Ok((_, most, _)) = feed_partial(&mut d, &input, 1 + (next() % 5) as usize) {
                assert!(most <= 64 + 5 + 64, "held {most}");
            }
        }
    }
}
