//! One test per decoder rule of RFC 6455 (and our limits): the exact error, its close code,
//! and the valid inputs next to each rule that must still pass.

mod common;

use common::{Ev, Feeder, KEY, Msg, concat, decode_both, frame, masked, raw_masked};
use throng_protocol::decoder::{DataKind, Decoder, DecoderConfig};
use throng_protocol::frame::{FrameHead, HeaderBuf, OpCode, RSV1, RSV2, RSV3};
use throng_protocol::{CloseCode, ProtocolError};

fn server() -> DecoderConfig {
    DecoderConfig::default()
}

/// The input fails with `err` whether fed whole or byte by byte, and `err` maps to `code`.
fn fails(config: DecoderConfig, input: &[u8], err: ProtocolError, code: u16) {
    assert_eq!(
        decode_both(config, input),
        Err(err),
        "input {:02x?}",
        &input[..input.len().min(32)]
    );
    assert_eq!(err.close_code(), CloseCode(code), "close code of {err:?}");
}

fn ok(config: DecoderConfig, input: &[u8]) -> Vec<Ev> {
    decode_both(config, input).expect("valid input")
}

fn data(kind: DataKind, payload: &[u8], first: bool, last: bool) -> Ev {
    Ev::Data {
        kind,
        payload: payload.to_vec(),
        first,
        last,
        compressed: false,
    }
}

fn text(payload: &[u8], first: bool, last: bool) -> Ev {
    data(DataKind::Text, payload, first, last)
}

fn binary(payload: &[u8], first: bool, last: bool) -> Ev {
    data(DataKind::Binary, payload, first, last)
}

// ---- 1002: header rules -------------------------------------------------------------

#[test]
fn rsv_bits_without_an_extension_fail_1002() {
    for rsv in [RSV1, RSV2, RSV3, RSV1 | RSV2 | RSV3] {
        let input = masked(FrameHead::text(0).with_rsv(rsv), b"hi");
        fails(server(), &input, ProtocolError::ReservedBits, 1002);
    }
}

#[test]
fn rsv_bits_other_than_the_negotiated_ones_fail_1002() {
    let mut config = server();
    config.allowed_rsv = RSV1;
    for rsv in [RSV2, RSV3, RSV1 | RSV2] {
        let input = masked(FrameHead::binary(0).with_rsv(rsv), b"x");
        fails(config, &input, ProtocolError::ReservedBits, 1002);
    }
}

#[test]
fn reserved_opcodes_fail_1002() {
    for op in [3u8, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF] {
        for fin in [0, 0x80] {
            fails(
                server(),
                &raw_masked(fin | op, b"abc"),
                ProtocolError::ReservedOpcode,
                1002,
            );
        }
    }
}

#[test]
fn reserved_opcode_fails_on_its_first_two_bytes() {
    // The opcode alone decides; no need to wait for the rest of the header.
    let mut d = Decoder::new();
    assert_eq!(
        d.decode(&server(), &mut [0x83, 0x80]),
        Err(ProtocolError::ReservedOpcode)
    );
}

#[test]
fn fragmented_control_frames_fail_1002() {
    for head in [FrameHead::ping(1), FrameHead::pong(1), FrameHead::close(2)] {
        let input = masked(head.with_fin(false), b"\x03\xe8");
        fails(server(), &input, ProtocolError::FragmentedControl, 1002);
    }
}

#[test]
fn control_payload_over_125_fails_1002() {
    for op in [OpCode::Ping, OpCode::Pong, OpCode::Close] {
        // 126 bytes takes the 16-bit length form, which a control frame never uses.
        for len in [126usize, 65536] {
            let mut input = masked(FrameHead::binary(0), &vec![0x20; len]);
            input[0] = 0x80 | op as u8;
            fails(server(), &input, ProtocolError::ControlTooLong, 1002);
        }
    }
}

#[test]
fn control_payload_of_125_passes() {
    let payload: Vec<u8> = (0..125).collect();
    let input = masked(FrameHead::ping(125), &payload);
    assert_eq!(ok(server(), &input), [Ev::Ping(payload.clone())]);
    let input = masked(FrameHead::pong(125), &payload);
    assert_eq!(ok(server(), &input), [Ev::Pong(payload)]);
}

#[test]
fn unmasked_client_frames_fail_1002() {
    for head in [
        FrameHead::text(0),
        FrameHead::binary(0),
        FrameHead::ping(0),
        FrameHead::close(0),
    ] {
        fails(
            server(),
            &frame(head, b""),
            ProtocolError::MaskMismatch,
            1002,
        );
    }
}

#[test]
fn client_role_rejects_masked_frames_1002() {
    let config = DecoderConfig::client();
    for head in [FrameHead::text(0), FrameHead::binary(0), FrameHead::pong(0)] {
        fails(
            config,
            &masked(head, b"ab"),
            ProtocolError::MaskMismatch,
            1002,
        );
    }
    // ...and reads unmasked ones.
    let input = concat(&[
        frame(FrameHead::text(0), b"hello"),
        frame(FrameHead::ping(0), b"p"),
    ]);
    assert_eq!(
        ok(config, &input),
        [text(b"hello", true, true), Ev::Ping(b"p".to_vec())]
    );
}

#[test]
fn length_with_the_top_bit_set_fails_1002() {
    let mut input = vec![0x82, 0x80 | 127, 0x80, 0, 0, 0, 0, 0, 0, 1];
    input.extend_from_slice(&KEY);
    fails(server(), &input, ProtocolError::LengthMsbSet, 1002);
    // The check needs only the length, not the mask key after it.
    let mut d = Decoder::new();
    assert_eq!(
        d.decode(&server(), &mut input[..10]),
        Err(ProtocolError::LengthMsbSet)
    );
}

// ---- 1009: limits -------------------------------------------------------------------

#[test]
fn frame_over_the_frame_limit_fails_1009() {
    let config = DecoderConfig::server(100, 1000);
    assert_eq!(
        ok(config, &masked(FrameHead::binary(0), &[7; 100])),
        [binary(&[7; 100], true, true)]
    );
    fails(
        config,
        &masked(FrameHead::binary(0), &[7; 101]),
        ProtocolError::FrameTooBig,
        1009,
    );
    let frag = masked(FrameHead::binary(0).with_fin(false), &[1; 10]);
    let big = masked(FrameHead::continuation(0, true), &[7; 101]);
    fails(
        config,
        &concat(&[frag, big]),
        ProtocolError::FrameTooBig,
        1009,
    );
}

#[test]
fn frame_limit_fails_on_the_header_before_the_payload() {
    let config = DecoderConfig::server(1 << 10, 1 << 20);
    let mut head = HeaderBuf::default();
    let head = FrameHead::binary(1 << 30)
        .with_mask(KEY)
        .encode(&mut head)
        .to_vec();
    let mut d = Decoder::new();
    assert_eq!(
        d.decode(&config, &mut head.clone()),
        Err(ProtocolError::FrameTooBig)
    );
}

#[test]
fn message_over_the_message_limit_fails_1009() {
    let config = DecoderConfig::server(100, 250);
    let part = |op: FrameHead, fin| masked(op.with_fin(fin), &[b'a'; 100]);
    let exact = concat(&[
        part(FrameHead::text(0), false),
        part(FrameHead::continuation(0, false), false),
        masked(FrameHead::continuation(0, true), &[b'a'; 50]),
    ]);
    assert_eq!(common::whole(config, &exact).messages.len(), 1);
    let over = concat(&[
        part(FrameHead::text(0), false),
        part(FrameHead::continuation(0, false), false),
        masked(FrameHead::continuation(0, true), &[b'a'; 51]),
    ]);
    fails(config, &over, ProtocolError::MessageTooBig, 1009);
    // A single frame within the frame limit can still be over the message limit.
    let config = DecoderConfig::server(100, 50);
    fails(
        config,
        &masked(FrameHead::binary(0), &[0; 51]),
        ProtocolError::MessageTooBig,
        1009,
    );
}

#[test]
fn message_limit_counts_from_each_message_start() {
    let config = DecoderConfig::server(100, 100);
    let msg = masked(FrameHead::binary(0), &[0; 100]);
    let events = ok(config, &concat(&[msg.clone(), msg.clone(), msg]));
    assert_eq!(events.len(), 3);
}

#[test]
fn limits_above_u32_are_capped() {
    let mut config = server();
    config.max_frame_size = u64::MAX;
    config.max_message_size = u64::MAX;
    let mut head = HeaderBuf::default();
    let at_cap = FrameHead::binary(u32::MAX as u64)
        .with_mask(KEY)
        .encode(&mut head)
        .to_vec();
    let mut d = Decoder::new();
    let mut buf = at_cap.clone();
    let got = d.decode(&config, &mut buf).expect("at the cap");
    assert_eq!((got.consumed, got.event), (at_cap.len(), None));
    let over = FrameHead::binary(u32::MAX as u64 + 1)
        .with_mask(KEY)
        .encode(&mut head)
        .to_vec();
    let mut d = Decoder::new();
    assert_eq!(
        d.decode(&config, &mut over.clone()),
        Err(ProtocolError::FrameTooBig)
    );
}

// ---- 1002: fragmentation ------------------------------------------------------------

#[test]
fn continuation_without_a_message_fails_1002() {
    for fin in [false, true] {
        let input = masked(FrameHead::continuation(0, fin), b"abc");
        fails(
            server(),
            &input,
            ProtocolError::UnexpectedContinuation,
            1002,
        );
    }
    // A finished message does not leave one open.
    let input = concat(&[
        masked(FrameHead::text(0).with_fin(false), b"a"),
        masked(FrameHead::continuation(0, true), b"b"),
        masked(FrameHead::continuation(0, true), b"c"),
    ]);
    fails(
        server(),
        &input,
        ProtocolError::UnexpectedContinuation,
        1002,
    );
}

#[test]
fn new_data_frame_inside_a_fragmented_message_fails_1002() {
    for start in [FrameHead::text(0), FrameHead::binary(0)] {
        for next in [FrameHead::text(0), FrameHead::binary(0)] {
            let input = concat(&[masked(start.with_fin(false), b"ab"), masked(next, b"cd")]);
            fails(server(), &input, ProtocolError::ExpectedContinuation, 1002);
        }
    }
    // Also right after an empty first fragment.
    let input = concat(&[
        masked(FrameHead::binary(0).with_fin(false), b""),
        masked(FrameHead::text(0), b""),
    ]);
    fails(server(), &input, ProtocolError::ExpectedContinuation, 1002);
}

#[test]
fn control_frames_between_fragments_pass() {
    let input = concat(&[
        masked(FrameHead::text(0).with_fin(false), b"Hel"),
        masked(FrameHead::ping(0), b"p1"),
        masked(FrameHead::continuation(0, false), b"lo, "),
        masked(FrameHead::pong(0), b""),
        masked(FrameHead::ping(0), b""),
        masked(FrameHead::continuation(0, true), b"world"),
        masked(FrameHead::binary(0), b"\x00\xff"),
    ]);
    assert_eq!(
        ok(server(), &input),
        [
            text(b"Hel", true, false),
            Ev::Ping(b"p1".to_vec()),
            text(b"lo, ", false, false),
            Ev::Pong(vec![]),
            Ev::Ping(vec![]),
            text(b"world", false, true),
            binary(b"\x00\xff", true, true),
        ]
    );
}

#[test]
fn close_between_fragments_is_delivered() {
    let input = concat(&[
        masked(FrameHead::binary(0).with_fin(false), b"ab"),
        masked(FrameHead::close(0), b"\x03\xe9"),
    ]);
    let events = ok(server(), &input);
    assert_eq!(events[1], Ev::Close(Some((1001, String::new()))));
}

#[test]
fn empty_messages_pass() {
    let input = concat(&[
        masked(FrameHead::text(0), b""),
        masked(FrameHead::binary(0), b""),
        masked(FrameHead::ping(0), b""),
        masked(FrameHead::text(0), b""),
    ]);
    assert_eq!(
        ok(server(), &input),
        [
            text(b"", true, true),
            binary(b"", true, true),
            Ev::Ping(vec![]),
            text(b"", true, true)
        ]
    );
}

#[test]
fn empty_fragments_pass() {
    let input = concat(&[
        masked(FrameHead::text(0).with_fin(false), b""),
        masked(FrameHead::continuation(0, false), b""),
        masked(FrameHead::continuation(0, false), b"abc"),
        masked(FrameHead::continuation(0, false), b""),
        masked(FrameHead::continuation(0, true), b""),
        // A new message after it starts over with `first`.
        masked(FrameHead::binary(0).with_fin(false), b"x"),
        masked(FrameHead::continuation(0, true), b""),
    ]);
    // Empty middle fragments have nothing to report; the empty first and last pieces
    // carry the message's start and end.
    assert_eq!(
        ok(server(), &input),
        [
            text(b"", true, false),
            text(b"abc", false, false),
            text(b"", false, true),
            binary(b"x", true, false),
            binary(b"", false, true),
        ]
    );
}

#[test]
fn message_of_only_empty_fragments_is_one_empty_message() {
    let input = concat(&[
        masked(FrameHead::text(0).with_fin(false), b""),
        masked(FrameHead::continuation(0, false), b""),
        masked(FrameHead::continuation(0, true), b""),
    ]);
    assert_eq!(
        ok(server(), &input),
        [text(b"", true, false), text(b"", false, true)]
    );
    assert_eq!(
        common::whole(server(), &input).messages,
        [Msg::Data {
            kind: DataKind::Text,
            compressed: false,
            payload: vec![]
        }]
    );
}

#[test]
fn in_message_tracks_fragmented_messages() {
    let mut f = Feeder::new(server());
    f.feed(&masked(FrameHead::binary(0).with_fin(false), b"ab"))
        .unwrap();
    assert!(f.decoder.in_message());
    f.feed(&masked(FrameHead::ping(0), b"")).unwrap();
    assert!(f.decoder.in_message());
    f.feed(&masked(FrameHead::continuation(0, true), b"cd"))
        .unwrap();
    assert!(!f.decoder.in_message());
}

// ---- 1007: UTF-8 --------------------------------------------------------------------

#[test]
fn invalid_utf8_text_fails_1007() {
    for bad in [
        &b"\xff"[..],
        b"a\xc0\x80",
        b"\xed\xa0\x80",
        b"\xf4\x90\x80\x80",
        b"ok\xe2\x82",
    ] {
        fails(
            server(),
            &masked(FrameHead::text(0), bad),
            ProtocolError::InvalidUtf8,
            1007,
        );
    }
    // Binary messages are not text.
    assert_eq!(
        ok(server(), &masked(FrameHead::binary(0), b"\xff")).len(),
        1
    );
}

#[test]
fn invalid_utf8_fails_on_the_fragment_that_makes_it_invalid() {
    // U+10FFFF is the largest code point: F4 90 can never start a valid sequence, so the
    // first fragment fails without waiting for the rest of the message.
    let mut f = Feeder::new(server());
    let first = masked(FrameHead::text(0).with_fin(false), b"abc\xf4\x90");
    assert_eq!(f.feed(&first), Err(ProtocolError::InvalidUtf8));
    assert!(f.events.is_empty());

    // F4 8F alone is a valid prefix; it is the next fragment's byte that breaks it.
    let mut f = Feeder::new(server());
    f.feed(&masked(FrameHead::text(0).with_fin(false), b"abc\xf4\x8f"))
        .unwrap();
    f.feed(&masked(FrameHead::ping(0), b"")).unwrap();
    f.feed(&masked(FrameHead::continuation(0, false), b"\xbf"))
        .unwrap();
    let bad = masked(FrameHead::continuation(0, false), b"x");
    assert_eq!(f.feed(&bad), Err(ProtocolError::InvalidUtf8));
}

#[test]
fn invalid_utf8_fails_on_the_read_that_makes_it_invalid() {
    // One large frame arriving in reads: the read holding the bad byte fails.
    let mut payload = "é".repeat(2000).into_bytes();
    payload[3000] = 0xff;
    let input = masked(FrameHead::text(0), &payload);
    let head_len = input.len() - payload.len();
    let mut f = Feeder::new(server());
    f.feed(&input[..head_len + 1000]).unwrap();
    f.feed(&input[head_len + 1000..head_len + 3000]).unwrap();
    assert_eq!(
        f.feed(&input[head_len + 3000..head_len + 3001]),
        Err(ProtocolError::InvalidUtf8)
    );
}

#[test]
fn truncated_utf8_at_the_message_end_fails_1007() {
    let input = concat(&[
        masked(FrameHead::text(0).with_fin(false), b"\xe2\x82"),
        masked(FrameHead::continuation(0, true), b""),
    ]);
    fails(server(), &input, ProtocolError::InvalidUtf8, 1007);
}

#[test]
fn utf8_split_across_fragments_passes() {
    let s = "κόσμε € 𝄞".as_bytes();
    // Every way to cut the text in two fragments, and one byte per fragment.
    for cut in 0..=s.len() {
        let input = concat(&[
            masked(FrameHead::text(0).with_fin(false), &s[..cut]),
            masked(FrameHead::continuation(0, true), &s[cut..]),
        ]);
        let out = common::whole(server(), &input);
        assert_eq!(
            out.messages,
            [Msg::Data {
                kind: DataKind::Text,
                compressed: false,
                payload: s.to_vec()
            }]
        );
    }
    let mut frames = vec![masked(FrameHead::text(0).with_fin(false), b"")];
    frames.extend(
        s.iter()
            .map(|b| masked(FrameHead::continuation(0, false), &[*b])),
    );
    frames.push(masked(FrameHead::continuation(0, true), b""));
    assert_eq!(ok(server(), &concat(&frames)).len(), s.len() + 2);
}

#[test]
fn utf8_state_does_not_leak_into_the_next_message() {
    // A binary message in between must not disturb text validation, and a new text
    // message starts from a clean state.
    let input = concat(&[
        masked(FrameHead::text(0), "€".as_bytes()),
        masked(FrameHead::binary(0), b"\xe2"),
        masked(FrameHead::text(0), "a€".as_bytes()),
    ]);
    assert_eq!(ok(server(), &input).len(), 3);
}

// ---- close frames -------------------------------------------------------------------

#[test]
fn close_frames_with_valid_codes_pass() {
    assert_eq!(
        ok(server(), &masked(FrameHead::close(0), b"")),
        [Ev::Close(None)]
    );
    let valid = (1000..=1003)
        .chain(1007..=1014)
        .chain([3000, 3999, 4000, 4999]);
    for code in valid {
        let mut payload = u16::to_be_bytes(code).to_vec();
        payload.extend_from_slice("bye ✓".as_bytes());
        let got = ok(server(), &masked(FrameHead::close(0), &payload));
        assert_eq!(
            got,
            [Ev::Close(Some((code, "bye ✓".to_owned())))],
            "code {code}"
        );
    }
    // The longest reason: 123 bytes.
    let mut payload = 1000u16.to_be_bytes().to_vec();
    payload.extend_from_slice(&[b'r'; 123]);
    assert_eq!(
        ok(server(), &masked(FrameHead::close(0), &payload)).len(),
        1
    );
}

#[test]
fn close_with_one_byte_fails_1002() {
    fails(
        server(),
        &masked(FrameHead::close(0), b"\x03"),
        ProtocolError::CloseTooShort,
        1002,
    );
}

#[test]
fn close_with_an_invalid_code_fails_1002() {
    for code in [
        0u16, 1, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
    ] {
        let input = masked(FrameHead::close(0), &code.to_be_bytes());
        fails(
            server(),
            &input,
            ProtocolError::InvalidCloseCode(code),
            1002,
        );
    }
}

#[test]
fn close_with_an_invalid_reason_fails_1007() {
    let input = masked(FrameHead::close(0), b"\x03\xe8ok\xce");
    fails(server(), &input, ProtocolError::InvalidUtf8, 1007);
}

// ---- control frames are delivered whole ---------------------------------------------

#[test]
fn partial_headers_consume_nothing() {
    let mut head = HeaderBuf::default();
    for len in [0u64, 125, 126, 65535, 65536, 1 << 20] {
        let bytes = FrameHead::binary(len)
            .with_mask(KEY)
            .encode(&mut head)
            .to_vec();
        for cut in 0..bytes.len() {
            let mut d = Decoder::new();
            let mut buf = bytes[..cut].to_vec();
            let got = d.decode(&server(), &mut buf).unwrap();
            assert_eq!((got.consumed, got.event), (0, None), "len {len}, cut {cut}");
            assert_eq!(d, Decoder::new(), "a partial header must leave no state");
        }
    }
}

#[test]
fn incomplete_control_frame_consumes_nothing() {
    let payload: Vec<u8> = (0..125).collect();
    let input = masked(FrameHead::ping(125), &payload);
    for cut in 0..input.len() {
        let mut d = Decoder::new();
        let mut buf = input[..cut].to_vec();
        let got = d.decode(&server(), &mut buf).unwrap();
        assert_eq!((got.consumed, got.event), (0, None), "cut {cut}");
    }
    // Fed a byte at a time, the caller keeps at most the whole frame minus one byte.
    let mut f = Feeder::new(server());
    f.feed_chunked(&input, &[1]).unwrap();
    assert_eq!(f.events, [Ev::Ping(payload)]);
    assert_eq!(f.max_kept, input.len() - 1);
    assert!(f.max_kept <= 131);
}

#[test]
fn data_header_is_consumed_before_its_payload() {
    let input = masked(FrameHead::binary(0), b"payload");
    let mut f = Feeder::new(server());
    f.feed(&input[..6]).unwrap();
    assert!(f.pending.is_empty() && f.events.is_empty());
    f.feed(&input[6..9]).unwrap();
    f.feed(&input[9..]).unwrap();
    assert_eq!(
        f.events,
        [binary(b"pay", true, false), binary(b"load", false, true)]
    );
}

// ---- masking ------------------------------------------------------------------------

#[test]
fn masked_payload_is_unmasked_at_every_split() {
    let payload: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
    for key in [KEY, [0, 0, 0, 0], [0xff, 0x00, 0xff, 0x00]] {
        let input = frame(FrameHead::binary(0).with_mask(key), &payload);
        for sizes in [
            &[1usize][..],
            &[2],
            &[3],
            &[5, 7],
            &[4],
            &[13, 1, 2],
            &[999],
        ] {
            let out = common::chunked(server(), &input, sizes);
            let want = Msg::Data {
                kind: DataKind::Binary,
                compressed: false,
                payload: payload.clone(),
            };
            assert_eq!(out.messages, [want], "key {key:?} sizes {sizes:?}");
        }
    }
    // Each frame has its own key and starts at phase 0.
    let input = concat(&[
        frame(
            FrameHead::text(0).with_fin(false).with_mask([1, 2, 3, 4]),
            b"abcde",
        ),
        frame(FrameHead::ping(0).with_mask([9, 8, 7, 6]), b"xyz"),
        frame(
            FrameHead::continuation(0, true).with_mask([5, 6, 7, 8]),
            b"fgh",
        ),
    ]);
    assert_eq!(
        common::chunked(server(), &input, &[3]).messages,
        [
            Msg::Ping(b"xyz".to_vec()),
            Msg::Data {
                kind: DataKind::Text,
                compressed: false,
                payload: b"abcdefgh".to_vec()
            }
        ]
    );
}

// ---- large messages stream ------------------------------------------------------------

/// Feeds `input` 64 KiB at a time and checks that data never needs more than a header's
/// worth of kept bytes, nor a piece larger than one read.
fn stream_64k(input: &[u8]) -> Vec<u8> {
    const READ: usize = 64 << 10;
    let mut f = Feeder::new(server());
    let mut message = Vec::new();
    let mut pieces = 0;
    for chunk in input.chunks(READ) {
        f.feed(chunk).expect("valid");
        for ev in f.events.drain(..) {
            let Ev::Data {
                payload,
                first,
                last,
                ..
            } = ev
            else {
                panic!("data only")
            };
            assert_eq!(first, pieces == 0);
            assert!(payload.len() <= READ);
            message.extend_from_slice(&payload);
            pieces += 1;
            if last {
                assert_eq!(f.consumed, input.len());
            }
        }
        assert!(f.pending.len() <= 14, "kept {} bytes", f.pending.len());
    }
    assert!(pieces >= input.len() / READ);
    message
}

#[test]
fn sixteen_mib_message_streams_through_64k_reads() {
    let payload: Vec<u8> = (0..16u32 << 20).map(|i| (i % 251) as u8).collect();
    let input = masked(FrameHead::binary(0), &payload);
    assert_eq!(stream_64k(&input), payload);
}

#[test]
fn sixteen_mib_fragmented_text_streams_through_64k_reads() {
    // Multi-byte characters land on read and fragment boundaries.
    let text = "ab€𝄞é".repeat((16 << 20) / 11);
    let bytes = text.as_bytes();
    let mut frames = Vec::new();
    let mut rest = bytes;
    let mut first = true;
    while !rest.is_empty() {
        let n = rest.len().min(1_000_003);
        let head = if first {
            FrameHead::text(0)
        } else {
            FrameHead::continuation(0, true)
        };
        frames.push(masked(head.with_fin(n == rest.len()), &rest[..n]));
        rest = &rest[n..];
        first = false;
    }
    assert!(bytes.len() > (16 << 20) - 11);
    assert_eq!(stream_64k(&concat(&frames)), bytes);
}

// ---- permessage-deflate's RSV1 -------------------------------------------------------

#[test]
fn negotiated_rsv1_marks_a_compressed_message() {
    let mut config = server();
    config.allowed_rsv = RSV1;
    let input = concat(&[
        // Compressed text is not UTF-8 until inflated: not validated here.
        masked(
            FrameHead::text(0).with_rsv(RSV1).with_fin(false),
            b"\xff\x00",
        ),
        masked(FrameHead::ping(0), b""),
        masked(FrameHead::continuation(0, true), b"\xc0"),
        masked(FrameHead::binary(0), b"plain"),
    ]);
    let compressed = |payload: &[u8], first, last| Ev::Data {
        kind: DataKind::Text,
        payload: payload.to_vec(),
        first,
        last,
        compressed: true,
    };
    assert_eq!(
        ok(config, &input),
        [
            compressed(b"\xff\x00", true, false),
            Ev::Ping(vec![]),
            compressed(b"\xc0", false, true),
            binary(b"plain", true, true),
        ]
    );
}

#[test]
fn rsv1_on_a_continuation_or_control_frame_fails_1002() {
    let mut config = server();
    config.allowed_rsv = RSV1;
    let input = concat(&[
        masked(FrameHead::binary(0).with_rsv(RSV1).with_fin(false), b"a"),
        masked(FrameHead::continuation(0, true).with_rsv(RSV1), b"b"),
    ]);
    fails(config, &input, ProtocolError::ReservedBits, 1002);
    for head in [FrameHead::ping(0), FrameHead::pong(0), FrameHead::close(0)] {
        fails(
            config,
            &masked(head.with_rsv(RSV1), b""),
            ProtocolError::ReservedBits,
            1002,
        );
    }
}

// ---- encoder ----------------------------------------------------------------------------

#[test]
fn encoder_writes_unmasked_server_headers_of_2_4_10_bytes() {
    let mut out = HeaderBuf::default();
    for (head, len) in [
        (FrameHead::text(0), 2),
        (FrameHead::text(125), 2),
        (FrameHead::binary(126), 4),
        (FrameHead::binary(65535), 4),
        (FrameHead::binary(65536), 10),
        (FrameHead::ping(125), 2),
        (FrameHead::close(2), 2),
    ] {
        let bytes = head.encode(&mut out);
        assert_eq!((bytes.len(), head.encoded_len()), (len, len), "{head:?}");
        assert_eq!(bytes[1] & 0x80, 0, "server frames are unmasked");
    }
}

#[test]
fn builder_frames_decode_as_a_client_reads_them() {
    let mut close = [0u8; 125];
    let n =
        throng_protocol::close::write_close_payload(CloseCode::GOING_AWAY, "restart", &mut close);
    let big = vec![b'z'; 70_000];
    let input = concat(&[
        frame(FrameHead::text(0), "héllo".as_bytes()),
        frame(FrameHead::binary(0), &big),
        frame(FrameHead::text(0).with_fin(false), b"frag"),
        frame(FrameHead::ping(0), b"are you there"),
        frame(FrameHead::continuation(0, false), b"men"),
        frame(FrameHead::continuation(0, true), b"ted"),
        frame(FrameHead::pong(0), b""),
        frame(FrameHead::close(n as u8), &close[..n]),
    ]);
    let out = common::whole(DecoderConfig::client(), &input);
    assert_eq!(out.error, None);
    let text = |s: &str| Msg::Data {
        kind: DataKind::Text,
        compressed: false,
        payload: s.into(),
    };
    assert_eq!(
        out.messages,
        [
            text("héllo"),
            Msg::Data {
                kind: DataKind::Binary,
                compressed: false,
                payload: big
            },
            Msg::Ping(b"are you there".to_vec()),
            text("fragmented"),
            Msg::Pong(vec![]),
            Msg::Close(Some((1001, "restart".into()))),
        ]
    );
}

// ---- errors -----------------------------------------------------------------------------

#[test]
fn every_error_maps_to_its_close_code() {
    use ProtocolError::*;
    let cases = [
        (ReservedBits, 1002),
        (ReservedOpcode, 1002),
        (FragmentedControl, 1002),
        (ControlTooLong, 1002),
        (MaskMismatch, 1002),
        (LengthMsbSet, 1002),
        (UnexpectedContinuation, 1002),
        (ExpectedContinuation, 1002),
        (CloseTooShort, 1002),
        (InvalidCloseCode(1005), 1002),
        (InvalidUtf8, 1007),
        (FrameTooBig, 1009),
        (MessageTooBig, 1009),
    ];
    for (err, code) in cases {
        assert_eq!(err.close_code(), CloseCode(code), "{err:?}");
        assert!(CloseCode(code).is_sendable());
        let reason = err.reason();
        assert!(!reason.is_empty() && reason.len() <= 123 && reason.is_ascii());
        assert!(err.to_string().starts_with(reason));
    }
}

#[test]
fn errors_stop_at_the_first_violation() {
    // Valid frames before the violation are delivered; the error is the first one.
    let input = concat(&[
        masked(FrameHead::ping(0), b"1"),
        masked(FrameHead::continuation(0, true), b""),
        raw_masked(0x83, b""),
    ]);
    let out = common::whole(server(), &input);
    assert_eq!(out.messages, [Msg::Ping(b"1".to_vec())]);
    assert_eq!(out.error, Some(ProtocolError::UnexpectedContinuation));
}

// ---- issue 18: lengths in their shortest form, fragments per message -----------------

#[test]
fn a_length_in_a_longer_form_than_needed_fails_1002_unless_lenient() {
    // 5 bytes announced in the 16-bit form, then in the 64-bit form.
    for header in [
        &[0x82u8, 0x80 | 126, 0, 5][..],
        &[0x82, 0x80 | 127, 0, 0, 0, 0, 0, 0, 0, 5],
    ] {
        let mut input = header.to_vec();
        input.extend_from_slice(&KEY);
        let mut payload = *b"abcde";
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= KEY[i % 4];
        }
        input.extend_from_slice(&payload);
        fails(server(), &input, ProtocolError::NonMinimalLength, 1002);
        let mut lenient = server();
        lenient.lenient_lengths = true;
        assert_eq!(ok(lenient, &input), [binary(b"abcde", true, true)]);
    }
}

#[test]
fn a_message_in_more_fragments_than_the_limit_fails_1009() {
    let mut config = server();
    config.max_fragments = 4;
    let fragments = |n: usize| {
        let mut input = Vec::new();
        for i in 0..n {
            let head = if i == 0 {
                FrameHead::text(0).with_fin(false)
            } else {
                FrameHead::continuation(if i == 1 { 1 } else { 0 }, i == n - 1)
            };
            input.extend(masked(head, if i == 1 { b"x" } else { b"" }));
        }
        input
    };
    // Exactly the limit (empty ones included) passes; one more fails.
    assert!(
        ok(config, &fragments(4))
            .iter()
            .any(|e| matches!(e, Ev::Data { last: true, .. }))
    );
    fails(config, &fragments(5), ProtocolError::TooManyFragments, 1009);
    // The count starts again with each message.
    let mut two = fragments(4);
    two.extend(fragments(4));
    assert_eq!(
        ok(config, &two)
            .iter()
            .filter(|e| matches!(e, Ev::Data { last: true, .. }))
            .count(),
        2
    );
    // 2,000,000 empty fragments are refused at the default limit, early.
    let mut flood = masked(FrameHead::text(0).with_fin(false), b"");
    let empty = masked(FrameHead::continuation(0, false), b"");
    for _ in 0..100_000 {
        flood.extend_from_slice(&empty);
    }
    let mut f = Feeder::new(server());
    assert_eq!(f.feed(&flood), Err(ProtocolError::TooManyFragments));
    assert!(f.consumed < flood.len());
}

// ---- what the engine relies on --------------------------------------------------------

/// Decodes `buf` until the decoder asks for more, checking after every event that used the
/// last byte that a call with no input reports nothing; returns the bytes used.
fn decode_probing(decoder: &mut Decoder, config: &DecoderConfig, buf: &mut [u8]) -> usize {
    let mut used = 0;
    loop {
        let d = decoder.decode(config, &mut buf[used..]).expect("valid");
        used += d.consumed;
        if d.event.is_none() {
            return used;
        }
        if used == buf.len() {
            let mut probe = *decoder;
            let empty = probe.decode(config, &mut []).expect("valid");
            assert!(empty.event.is_none(), "an event from no input");
            assert_eq!(empty.consumed, 0);
        }
    }
}

/// The engine stops decoding when an event used the last input byte, without the call
/// that would only answer "need more": sound only if no input never yields an event.
/// Checked after every event of a stream with every frame shape that ends at a boundary
/// (empty frames, empty first/middle/last fragments, empty controls), cut at every byte.
#[test]
fn no_event_from_empty_input() {
    let stream = concat(&[
        masked(FrameHead::text(0), b""),
        masked(FrameHead::binary(3), b"abc"),
        masked(FrameHead::text(0).with_fin(false), b""),
        masked(FrameHead::continuation(0, false), b""),
        masked(FrameHead::ping(0), b""),
        masked(FrameHead::continuation(2, false), b"hi"),
        masked(FrameHead::continuation(0, true), b""),
        masked(FrameHead::binary(1).with_fin(false), b"x"),
        masked(FrameHead::continuation(1, true), b"y"),
        masked(FrameHead::pong(1), b"p"),
        masked(FrameHead::close(0), b""),
    ]);
    let config = server();
    for cut in 0..=stream.len() {
        let mut decoder = Decoder::new();
        let mut first = stream[..cut].to_vec();
        let used = decode_probing(&mut decoder, &config, &mut first);
        // What was left waits for more input, as the engine stashes it.
        let mut rest = [&first[used..], &stream[cut..]].concat();
        let used = decode_probing(&mut decoder, &config, &mut rest);
        assert_eq!(used, rest.len(), "cut at {cut}");
    }
}
