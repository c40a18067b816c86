//! Arbitrary bytes into the streaming decoder, fed whole and in chunks: it must never
//! panic, must keep the caller's contract (consume within bounds, make progress with every
//! event, keep at most a control frame aside), must deliver only valid text, and must
//! reach the same messages and the same first error however the input is split.
#![no_main]

#[path = "common/config.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use throng_protocol::decoder::{DataKind, Decoder, DecoderConfig, Event};
use throng_protocol::{Assembly, ProtocolError};

fuzz_target!(|data: &[u8]| {
    let Some((config, sizes, input)) = split(data) else {
        return;
    };
    let one = run(config, input, &[input.len().max(1)]);
    assert_eq!(run(config, input, &sizes), one, "chunks {sizes:?}");
    if input.len() <= 1024 {
        assert_eq!(run(config, input, &[1]), one, "byte by byte");
    }
});

/// The first byte picks the role, the RSV bits claimed and the limit kinds; the next two
/// are small limits; then a count and that many chunk sizes. The rest is the stream.
fn split(data: &[u8]) -> Option<(DecoderConfig, Vec<usize>, &[u8])> {
    let (&[flags, frame, message, count], rest) = data.split_first_chunk::<4>()?;
    let config = common::config(flags, frame, message);
    let n = usize::from(count & 3) + 1;
    let sizes = rest.get(..n)?;
    // A size byte with its top bit set stands for a large read.
    let sizes = sizes
        .iter()
        .map(|&s| {
            if s & 0x80 != 0 {
                usize::from(s & 0x7f) * 97 + 1
            } else {
                usize::from(s).max(1)
            }
        })
        .collect();
    Some((config, sizes, &rest[n..]))
}

#[derive(Debug, PartialEq, Eq)]
enum Msg {
    Data {
        kind: DataKind,
        compressed: bool,
        payload: Vec<u8>,
    },
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<(u16, String)>),
}

/// What a run adds up to: complete messages in order (a message cut short by the end of
/// input or an error is chunking-dependent and left out), the first error, and the bytes
/// left over when there was none.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    messages: Vec<Msg>,
    error: Option<ProtocolError>,
    leftover: usize,
}

/// The engine's loop: append a read, decode until the decoder asks for more, keep the rest.
fn run(config: DecoderConfig, input: &[u8], sizes: &[usize]) -> Outcome {
    let mut decoder = Decoder::new();
    let mut pending = Vec::new();
    let mut messages = Vec::new();
    let mut open: Option<(DataKind, bool, Vec<u8>)> = None;
    // The engine's way of joining pieces, checked against plain concatenation.
    let mut assembly = Assembly::default();
    let mut rest = input;
    let mut i = 0;
    while !rest.is_empty() {
        let n = sizes[i % sizes.len()].min(rest.len());
        i += 1;
        pending.extend_from_slice(&rest[..n]);
        rest = &rest[n..];
        let mut used = 0;
        loop {
            let available = pending.len() - used;
            let decoded = match decoder.decode(&config, &mut pending[used..]) {
                Ok(d) => d,
                Err(e) => {
                    return Outcome {
                        messages,
                        error: Some(e),
                        leftover: 0,
                    };
                }
            };
            assert!(decoded.consumed <= available);
            used += decoded.consumed;
            let Some(event) = decoded.event else { break };
            assert!(decoded.consumed > 0, "event without progress");
            match event {
                Event::Data(d) => {
                    let (kind, payload, first, last, compressed) =
                        (d.kind, d.payload, d.first, d.last, d.compressed);
                    assert_eq!(first, open.is_none(), "first flag");
                    let (k, c, buf) = open.get_or_insert_with(|| (kind, compressed, Vec::new()));
                    assert_eq!((*k, *c), (kind, compressed), "kind changed mid-message");
                    buf.extend_from_slice(payload);
                    assert!(buf.len() as u64 <= config.max_message_size);
                    let joined = match (compressed, d.whole()) {
                        (true, _) => None,
                        (false, Some(m)) => Some(m.as_bytes().to_vec()),
                        (false, None) => {
                            assembly.push(&d).expect("pieces in order");
                            last.then(|| assembly.message().expect("whole").as_bytes().to_vec())
                        }
                    };
                    if last {
                        let (kind, compressed, payload) = open.take().expect("open");
                        if let Some(joined) = joined {
                            assert_eq!(joined, payload, "the assembly joins what was delivered");
                        }
                        if kind == DataKind::Text && !compressed {
                            assert!(std::str::from_utf8(&payload).is_ok(), "invalid text");
                        }
                        messages.push(Msg::Data {
                            kind,
                            compressed,
                            payload,
                        });
                    }
                }
                Event::Ping(p) => messages.push(Msg::Ping(p.to_vec())),
                Event::Pong(p) => messages.push(Msg::Pong(p.to_vec())),
                Event::Close(c) => {
                    if let Some((code, _)) = c {
                        assert!(code.is_sendable());
                    }
                    messages.push(Msg::Close(c.map(|(code, r)| (code.0, r.to_owned()))));
                }
            }
        }
        pending.drain(..used);
        // Data payloads are consumed as they come: only a partial header or a partial
        // control frame (6 + 125 bytes at most) is ever left.
        assert!(pending.len() <= 131, "kept {} bytes", pending.len());
        // The decoder knows of a message from its first header, before any payload.
        assert!(decoder.in_message() || open.is_none());
    }
    Outcome {
        messages,
        error: None,
        leftover: pending.len(),
    }
}
