//! Shared by the decoder's integration tests: a test-side frame encoder, and a caller that
//! feeds the decoder the way the engine does (keep the unconsumed bytes, append the next
//! read, decode until the decoder asks for more).
// Each test binary compiles this module and uses a different subset of it.
#![allow(dead_code)]

use throng_protocol::decoder::{DataKind, Decoder, DecoderConfig, Event};
use throng_protocol::frame::{FrameHead, HeaderBuf};
use throng_protocol::mask::apply_mask_scalar;
use throng_protocol::{Assembly, ProtocolError};

/// A masking key whose bytes all differ, so a wrong phase shows up as wrong output.
pub const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// Appends one frame: `head` with its length set to the payload's, then the payload,
/// masked with the scalar reference when `head` carries a key.
pub fn push_frame(out: &mut Vec<u8>, head: FrameHead, payload: &[u8]) {
    let head = FrameHead {
        len: payload.len() as u64,
        ..head
    };
    let mut buf = HeaderBuf::default();
    out.extend_from_slice(head.encode(&mut buf));
    let start = out.len();
    out.extend_from_slice(payload);
    if let Some(key) = head.mask {
        apply_mask_scalar(&mut out[start..], key, 0);
    }
}

/// One frame as [`push_frame`] writes it.
pub fn frame(head: FrameHead, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    push_frame(&mut out, head, payload);
    out
}

/// One frame masked with [`KEY`], as a client sends it.
pub fn masked(head: FrameHead, payload: &[u8]) -> Vec<u8> {
    frame(head.with_mask(KEY), payload)
}

/// A masked frame whose first header byte is `b0` verbatim, for what [`FrameHead`] cannot
/// express (reserved opcodes).
pub fn raw_masked(b0: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = masked(FrameHead::binary(0), payload);
    out[0] = b0;
    out
}

/// Concatenates frames.
pub fn concat(frames: &[Vec<u8>]) -> Vec<u8> {
    frames.concat()
}

/// An [`Event`] that owns its bytes, so it outlives the buffer it was decoded from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ev {
    /// [`Event::Data`].
    Data {
        kind: DataKind,
        payload: Vec<u8>,
        first: bool,
        last: bool,
        compressed: bool,
    },
    /// [`Event::Ping`].
    Ping(Vec<u8>),
    /// [`Event::Pong`].
    Pong(Vec<u8>),
    /// [`Event::Close`], the code as a number.
    Close(Option<(u16, String)>),
}

impl From<Event<'_>> for Ev {
    fn from(e: Event<'_>) -> Ev {
        match e {
            Event::Data(d) => Ev::Data {
                kind: d.kind,
                payload: d.payload.to_vec(),
                first: d.first,
                last: d.last,
                compressed: d.compressed,
            },
            Event::Ping(p) => Ev::Ping(p.to_vec()),
            Event::Pong(p) => Ev::Pong(p.to_vec()),
            Event::Close(c) => Ev::Close(c.map(|(code, reason)| (code.0, reason.to_owned()))),
        }
    }
}

/// The engine's side of the contract, with bookkeeping for assertions.
pub struct Feeder {
    pub decoder: Decoder,
    pub config: DecoderConfig,
    /// Bytes received and not consumed yet.
    pub pending: Vec<u8>,
    pub events: Vec<Ev>,
    pub error: Option<ProtocolError>,
    /// The most bytes ever left unconsumed when the decoder asked for more input.
    pub max_kept: usize,
    /// Bytes consumed so far.
    pub consumed: usize,
    /// Uncompressed pieces joined as the engine joins them (whole pieces as they are,
    /// others through an [`Assembly`]), to check it against plain concatenation.
    pub assembly: Assembly,
    /// The messages that came out of that: (text?, bytes).
    pub assembled: Vec<(DataKind, Vec<u8>)>,
}

impl Feeder {
    pub fn new(config: DecoderConfig) -> Feeder {
        Feeder {
            decoder: Decoder::new(),
            config,
            pending: Vec::new(),
            events: Vec::new(),
            error: None,
            max_kept: 0,
            consumed: 0,
            assembly: Assembly::default(),
            assembled: Vec::new(),
        }
    }

    /// Appends `chunk` and decodes until the decoder needs more input or fails. After a
    /// failure the connection is dead: further chunks are ignored and the error repeated.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<(), ProtocolError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        self.pending.extend_from_slice(chunk);
        let mut used = 0;
        let result = loop {
            let available = self.pending.len() - used;
            match self.decoder.decode(&self.config, &mut self.pending[used..]) {
                Err(e) => break Err(e),
                Ok(d) => {
                    assert!(d.consumed <= available, "consumed past the end");
                    used += d.consumed;
                    match d.event {
                        None => break Ok(()),
                        Some(event) => {
                            // Without progress the caller's loop would spin forever.
                            assert!(d.consumed > 0, "event without consuming: {event:?}");
                            if let Event::Data(data) = &event
                                && !data.compressed
                            {
                                let m = match data.whole() {
                                    Some(m) => Some((m.kind(), m.as_bytes().to_vec())),
                                    None => {
                                        self.assembly.push(data).expect("pieces in order");
                                        data.last.then(|| {
                                            let m = self.assembly.message().expect("whole");
                                            (m.kind(), m.as_bytes().to_vec())
                                        })
                                    }
                                };
                                self.assembled.extend(m);
                            }
                            self.events.push(event.into());
                        }
                    }
                }
            }
        };
        self.pending.drain(..used);
        self.consumed += used;
        match result {
            Ok(()) => self.max_kept = self.max_kept.max(self.pending.len()),
            Err(e) => self.error = Some(e),
        }
        result
    }

    /// Feeds `input` in chunks of the given sizes (cycled; 0 is read as 1).
    pub fn feed_chunked(&mut self, input: &[u8], sizes: &[usize]) -> Result<(), ProtocolError> {
        assert!(!sizes.is_empty());
        let mut rest = input;
        let mut i = 0;
        while !rest.is_empty() {
            let n = sizes[i % sizes.len()].clamp(1, rest.len());
            i += 1;
            let (chunk, tail) = rest.split_at(n);
            rest = tail;
            self.feed(chunk)?;
        }
        Ok(())
    }

    /// What the events add up to so far (see [`normalize`]).
    pub fn outcome(&self) -> Outcome {
        let messages = normalize(&self.events);
        let plain: Vec<(DataKind, Vec<u8>)> = messages
            .iter()
            .filter_map(|m| match m {
                Msg::Data {
                    kind,
                    compressed: false,
                    payload,
                } => Some((*kind, payload.clone())),
                _ => None,
            })
            .collect();
        assert_eq!(
            self.assembled, plain,
            "the assembly's messages match plain concatenation"
        );
        Outcome {
            messages,
            error: self.error,
            // After an error the rest of the input was never looked at.
            leftover: if self.error.is_some() {
                0
            } else {
                self.pending.len()
            },
        }
    }
}

/// An event stream with data pieces joined into messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Msg {
    Data {
        kind: DataKind,
        compressed: bool,
        payload: Vec<u8>,
    },
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<(u16, String)>),
}

/// Everything a decoding run produced, independent of how the input was chunked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Complete messages and control frames, in order. A message cut short by the end of
    /// the input or by an error is left out: how much of it was delivered depends on the
    /// chunking.
    pub messages: Vec<Msg>,
    /// The first error.
    pub error: Option<ProtocolError>,
    /// Bytes left unconsumed at the end (0 after an error).
    pub leftover: usize,
}

/// Joins data pieces into messages, checking the piece flags along the way: a message
/// starts with exactly one `first` piece, ends with one `last` piece, and keeps its kind
/// and compression; an uncompressed text message is UTF-8.
pub fn normalize(events: &[Ev]) -> Vec<Msg> {
    let mut out = Vec::new();
    let mut open: Option<(DataKind, bool, Vec<u8>)> = None;
    for ev in events {
        match ev {
            Ev::Data {
                kind,
                payload,
                first,
                last,
                compressed,
            } => {
                assert_eq!(*first, open.is_none(), "first flag out of order: {ev:?}");
                let (k, c, buf) = open.get_or_insert_with(|| (*kind, *compressed, Vec::new()));
                assert_eq!((*k, *c), (*kind, *compressed), "kind changed mid-message");
                buf.extend_from_slice(payload);
                if *last {
                    let (kind, compressed, payload) = open.take().expect("open message");
                    if kind == DataKind::Text && !compressed {
                        assert!(
                            std::str::from_utf8(&payload).is_ok(),
                            "invalid text delivered"
                        );
                    }
                    out.push(Msg::Data {
                        kind,
                        compressed,
                        payload,
                    });
                }
            }
            Ev::Ping(p) => out.push(Msg::Ping(p.clone())),
            Ev::Pong(p) => out.push(Msg::Pong(p.clone())),
            Ev::Close(c) => out.push(Msg::Close(c.clone())),
        }
    }
    out
}

/// Decodes `input` fed in one piece.
pub fn whole(config: DecoderConfig, input: &[u8]) -> Outcome {
    let mut f = Feeder::new(config);
    let _ = f.feed(input);
    f.outcome()
}

/// Decodes `input` fed in chunks of the given sizes.
pub fn chunked(config: DecoderConfig, input: &[u8], sizes: &[usize]) -> Outcome {
    let mut f = Feeder::new(config);
    let _ = f.feed_chunked(input, sizes);
    f.outcome()
}

/// Decodes `input` in one piece and one byte at a time; both must agree. Returns the events
/// of the one-piece run, or its error.
pub fn decode_both(config: DecoderConfig, input: &[u8]) -> Result<Vec<Ev>, ProtocolError> {
    let mut f = Feeder::new(config);
    let result = f.feed(input);
    let bytewise = chunked(config, input, &[1]);
    assert_eq!(f.outcome(), bytewise, "one piece and byte by byte disagree");
    result.map(|()| f.events)
}
