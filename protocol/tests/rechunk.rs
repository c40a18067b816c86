//! Any split of the input gives the same events: random frame sequences, encoded, fed whole
//! and in random chunks (down to one byte), must decode to the same messages, and to the
//! messages that were encoded. Random and mutated input must never panic and must reach
//! the same verdict however it is chunked.

mod common;

use common::{Msg, Outcome, chunked, push_frame, whole};
use proptest::prelude::*;
use throng_protocol::decoder::{DataKind, DecoderConfig, Role};
use throng_protocol::frame::{FrameHead, RSV1};

/// A control frame to send between fragments or messages.
#[derive(Debug, Clone)]
enum Ctl {
    Ping(Vec<u8>),
    Pong(Vec<u8>),
}

/// One data message: its payload, where it is cut into fragments, and the control frames
/// sent after some of its fragments.
#[derive(Debug, Clone)]
struct Message {
    text: bool,
    compressed: bool,
    payload: Vec<u8>,
    /// Fragment boundaries, as fractions of the payload (sorted, repeats make empty frames).
    cuts: Vec<u16>,
    /// (fragment index, frame): sent right after that fragment.
    controls: Vec<(usize, Ctl)>,
}

#[derive(Debug, Clone)]
enum Part {
    Message(Message),
    Ctl(Ctl),
}

/// A stream of parts ending with a close, and how it is sent.
#[derive(Debug, Clone)]
struct Stream {
    role: Role,
    parts: Vec<Part>,
    close: Option<(u16, String)>,
    /// Seeds the masking keys, a different one per frame.
    mask_seed: u64,
}

/// Mostly short payloads; some in the 16-bit length form and a few in the 64-bit one.
fn payload_len() -> impl Strategy<Value = usize> {
    prop_oneof![
        12 => 0usize..=125,
        4 => 126usize..=65535,
        1 => 65536usize..=140_000,
    ]
}

/// Text of about `len` bytes built from a random pattern of characters (any plane), so
/// multi-byte characters are common and fall on fragment boundaries.
fn text_payload() -> impl Strategy<Value = Vec<u8>> {
    (prop::collection::vec(any::<char>(), 1..12), payload_len()).prop_map(|(pattern, len)| {
        let mut s = String::with_capacity(len + 4);
        for c in pattern.iter().cycle() {
            if s.len() >= len {
                break;
            }
            s.push(*c);
        }
        s.into_bytes()
    })
}

fn binary_payload() -> impl Strategy<Value = Vec<u8>> {
    (any::<u32>(), payload_len()).prop_map(|(seed, len)| {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect()
    })
}

fn ctl() -> impl Strategy<Value = Ctl> {
    let payload = prop::collection::vec(any::<u8>(), 0..=125);
    prop_oneof![
        payload.clone().prop_map(Ctl::Ping),
        payload.prop_map(Ctl::Pong)
    ]
}

fn message() -> impl Strategy<Value = Message> {
    let payload = prop_oneof![
        text_payload().prop_map(|p| (true, p)),
        binary_payload().prop_map(|p| (false, p))
    ];
    (
        payload,
        prop::bool::weighted(0.15),
        prop::collection::vec(any::<u16>(), 0..5),
        prop::collection::vec((0usize..6, ctl()), 0..4),
    )
        .prop_map(|((text, payload), compressed, mut cuts, controls)| {
            cuts.sort_unstable();
            Message {
                text,
                compressed,
                payload,
                cuts,
                controls,
            }
        })
}

fn stream() -> impl Strategy<Value = Stream> {
    let part = prop_oneof![3 => message().prop_map(Part::Message), 1 => ctl().prop_map(Part::Ctl)];
    let code = prop_oneof![Just(1000u16), Just(1001), 1007u16..=1014, 3000u16..=4999];
    let close = prop::option::of((code, "[a-zé€😀 ]{0,30}"));
    let role = prop_oneof![3 => Just(Role::Server), 1 => Just(Role::Client)];
    (role, prop::collection::vec(part, 0..8), close, any::<u64>()).prop_map(
        |(role, parts, close, mask_seed)| Stream {
            role,
            parts,
            close,
            mask_seed,
        },
    )
}

/// Chunk sizes, cycled over the input: single bytes, small and large reads.
fn chunk_sizes() -> impl Strategy<Value = Vec<usize>> {
    let size = prop_oneof![1usize..=1, 1usize..16, 1usize..300, 1usize..70_000];
    prop::collection::vec(size, 1..6)
}

impl Stream {
    fn config(&self) -> DecoderConfig {
        let mut config = match self.role {
            Role::Server => DecoderConfig::default(),
            Role::Client => DecoderConfig::client(),
        };
        config.allowed_rsv = RSV1;
        config
    }

    /// The wire bytes and the messages they must decode to.
    fn encode(&self) -> (Vec<u8>, Vec<Msg>) {
        let mut w = Writer {
            role: self.role,
            seed: self.mask_seed | 1,
            out: Vec::new(),
        };
        let mut want = Vec::new();
        for part in &self.parts {
            match part {
                Part::Ctl(c) => w.ctl(c, &mut want),
                Part::Message(m) => {
                    let len = m.payload.len();
                    let mut bounds: Vec<usize> = m
                        .cuts
                        .iter()
                        .map(|&c| len * c as usize / u16::MAX as usize)
                        .collect();
                    bounds.push(len);
                    let frags = bounds.len();
                    let mut start = 0;
                    for (i, &end) in bounds.iter().enumerate() {
                        let fin = i + 1 == frags;
                        let head = if i > 0 {
                            FrameHead::continuation(0, fin)
                        } else {
                            let head = if m.text {
                                FrameHead::text(0)
                            } else {
                                FrameHead::binary(0)
                            };
                            head.with_fin(fin)
                                .with_rsv(if m.compressed { RSV1 } else { 0 })
                        };
                        w.frame(head, &m.payload[start..end]);
                        start = end;
                        if fin {
                            // Complete at its last fragment, before the controls after it.
                            let kind = if m.text {
                                DataKind::Text
                            } else {
                                DataKind::Binary
                            };
                            let payload = m.payload.clone();
                            want.push(Msg::Data {
                                kind,
                                compressed: m.compressed,
                                payload,
                            });
                        }
                        for (_, c) in m.controls.iter().filter(|(at, _)| at % frags == i) {
                            w.ctl(c, &mut want);
                        }
                    }
                }
            }
        }
        let mut payload = Vec::new();
        if let Some((code, reason)) = &self.close {
            payload.extend_from_slice(&code.to_be_bytes());
            payload.extend_from_slice(reason.as_bytes());
        }
        w.frame(FrameHead::close(0), &payload);
        want.push(Msg::Close(self.close.clone()));
        (w.out, want)
    }
}

/// Writes frames as the stream's sender would: masked with a fresh key each (client to
/// server), or unmasked (server to client).
struct Writer {
    role: Role,
    seed: u64,
    out: Vec<u8>,
}

impl Writer {
    fn frame(&mut self, head: FrameHead, payload: &[u8]) {
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        let head = match self.role {
            Role::Server => head.with_mask((self.seed as u32).to_le_bytes()),
            Role::Client => head,
        };
        push_frame(&mut self.out, head, payload);
    }

    fn ctl(&mut self, c: &Ctl, want: &mut Vec<Msg>) {
        match c {
            Ctl::Ping(p) => {
                self.frame(FrameHead::ping(0), p);
                want.push(Msg::Ping(p.clone()));
            }
            Ctl::Pong(p) => {
                self.frame(FrameHead::pong(0), p);
                want.push(Msg::Pong(p.clone()));
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_chunking_gives_the_encoded_messages(stream in stream(), sizes in chunk_sizes()) {
        let (input, want) = stream.encode();
        let config = stream.config();
        let expected = Outcome { messages: want, error: None, leftover: 0 };
        let one = whole(config, &input);
        prop_assert_eq!(&one, &expected);
        let split = chunked(config, &input, &sizes);
        prop_assert_eq!(&split, &expected);
    }

    #[test]
    fn one_byte_chunks_give_the_encoded_messages(stream in stream()) {
        let (input, want) = stream.encode();
        // Byte-at-a-time over the largest streams is slow in debug builds and adds little.
        prop_assume!(input.len() <= 20_000);
        let got = chunked(stream.config(), &input, &[1]);
        prop_assert_eq!(got, Outcome { messages: want, error: None, leftover: 0 });
    }
}

/// A decoder configuration for arbitrary input: either role, small or default limits,
/// with or without RSV bits claimed.
fn any_config() -> impl Strategy<Value = DecoderConfig> {
    let limit = prop_oneof![Just(16u64 << 20), 0u64..300, Just(u64::MAX)];
    let rsv = prop_oneof![Just(0u8), Just(RSV1), Just(0b111)];
    (any::<bool>(), limit.clone(), limit, rsv).prop_map(|(server, frame, message, rsv)| {
        let mut config = if server {
            DecoderConfig::default()
        } else {
            DecoderConfig::client()
        };
        config.max_frame_size = frame;
        config.max_message_size = message;
        config.allowed_rsv = rsv;
        config
    })
}

/// Small valid streams with random bytes flipped, inserted or cut: close enough to valid
/// that the decoder gets past the first header.
fn mutated() -> impl Strategy<Value = (Role, Vec<u8>)> {
    let small = (
        stream(),
        prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 0..6),
    );
    small.prop_map(|(stream, edits)| {
        let (mut input, _) = stream.encode();
        input.truncate(4000);
        for (at, byte, op) in edits {
            if input.is_empty() {
                break;
            }
            let i = at.index(input.len());
            match op {
                0 => input[i] ^= byte,
                1 => input.insert(i, byte),
                _ => input.truncate(i),
            }
        }
        (stream.role, input)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn garbage_never_panics_and_chunking_keeps_the_verdict(
        input in prop::collection::vec(any::<u8>(), 0..600),
        config in any_config(),
        sizes in chunk_sizes(),
    ) {
        let one = whole(config, &input);
        prop_assert_eq!(&chunked(config, &input, &sizes), &one);
        prop_assert_eq!(&chunked(config, &input, &[1]), &one);
    }

    #[test]
    fn mutated_streams_keep_the_verdict(
        (role, input) in mutated(),
        config in any_config(),
        sizes in chunk_sizes(),
    ) {
        let mut config = config;
        config.role = role;
        let one = whole(config, &input);
        prop_assert_eq!(&chunked(config, &input, &sizes), &one);
        prop_assert_eq!(&chunked(config, &input, &[1]), &one);
    }
}
