use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use proptest::prelude::*;

use super::*;
use crate::Assembly;
use crate::decoder::{DataKind, Decoder, DecoderConfig, Event};
use crate::error::ProtocolError;
use crate::frame::{FrameHead, HeaderBuf, RSV1};
use crate::message::Message;

const SHARED: &str = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

#[test]
fn every_valid_offer_is_accepted_with_the_shared_answer() {
    for offer in [
        "permessage-deflate",
        "Permessage-Deflate",
        "permessage-deflate; client_max_window_bits",
        "permessage-deflate; client_max_window_bits=10",
        "permessage-deflate;client_max_window_bits=\"15\"",
        "permessage-deflate; client_no_context_takeover",
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
        "permessage-deflate ; server_no_context_takeover ;client_max_window_bits = 8",
    ] {
        let a = negotiate([offer]).unwrap_or_else(|| panic!("{offer} declined"));
        assert_eq!(a.response(), SHARED, "{offer}");
        assert!(a.server_compresses());
    }
    let o = parse_offer("permessage-deflate; client_max_window_bits=10; server_max_window_bits=12")
        .unwrap();
    assert_eq!(o.client_max_window_bits, Some(Some(10)));
    assert_eq!(o.server_max_window_bits, Some(12));
    assert_eq!(
        parse_offer("permessage-deflate; client_max_window_bits")
            .unwrap()
            .client_max_window_bits,
        Some(None)
    );
}

#[test]
fn server_window_bits_are_answered_and_below_15_turn_compression_off() {
    for bits in 8..=15u8 {
        let offer = format!("permessage-deflate; server_max_window_bits={bits}");
        let a = negotiate([offer.as_str()]).unwrap();
        assert_eq!(
            a.response(),
            format!("{SHARED}; server_max_window_bits={bits}")
        );
        assert_eq!(a.server_compresses(), bits == 15);
    }
}

#[test]
fn invalid_offers_are_declined_and_the_next_one_taken() {
    for (offer, why) in [
        (
            "permessage-deflate; server_max_window_bits=7",
            OfferError::BadValue,
        ),
        (
            "permessage-deflate; server_max_window_bits=16",
            OfferError::BadValue,
        ),
        (
            "permessage-deflate; server_max_window_bits=010",
            OfferError::BadValue,
        ),
        (
            "permessage-deflate; server_max_window_bits=\"9",
            OfferError::BadValue,
        ),
        (
            "permessage-deflate; client_max_window_bits=0",
            OfferError::BadValue,
        ),
        (
            "permessage-deflate; client_max_window_bits=",
            OfferError::BadValue,
        ),
        (
            "permessage-deflate; x_unknown_param",
            OfferError::UnknownParameter,
        ),
        (
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            OfferError::RepeatedParameter,
        ),
        (
            "permessage-deflate; client_max_window_bits; client_max_window_bits=9",
            OfferError::RepeatedParameter,
        ),
        (
            "permessage-deflate; server_max_window_bits=9; server_max_window_bits=9",
            OfferError::RepeatedParameter,
        ),
        (
            "permessage-deflate; server_no_context_takeover=1",
            OfferError::BadValue,
        ),
        (
            "permessage-deflate; client_no_context_takeover=\"\"",
            OfferError::BadValue,
        ),
        (
            "permessage-deflate; server_max_window_bits",
            OfferError::BadValue,
        ),
        ("x-webkit-deflate-frame", OfferError::NotDeflate),
    ] {
        assert_eq!(parse_offer(offer), Err(why), "{offer}");
        assert_eq!(negotiate([offer]), None, "{offer}");
        // Declined, not fatal: a valid offer after it is accepted.
        let a = negotiate([offer, "permessage-deflate; server_max_window_bits=15"]).unwrap();
        assert_eq!(a.server_max_window_bits, Some(15), "{offer}");
    }
    // The client's order wins among valid offers.
    let a = negotiate([
        "foo; bar=1",
        "permessage-deflate; server_max_window_bits=9",
        "permessage-deflate",
    ])
    .unwrap();
    assert_eq!(a.server_max_window_bits, Some(9));
    assert_eq!(negotiate(std::iter::empty()), None);
}

/// Inflates a permessage-deflate payload with a fresh plain flate2 stream.
fn plain_inflate(payload: &[u8]) -> Vec<u8> {
    let mut d = Decompress::new(false);
    let mut input = payload.to_vec();
    input.extend_from_slice(&TAIL);
    let mut out = Vec::with_capacity(payload.len() * 8 + 1024);
    loop {
        let before = d.total_in();
        d.decompress_vec(
            &input[d.total_in() as usize..],
            &mut out,
            FlushDecompress::Sync,
        )
        .expect("valid deflate");
        if d.total_in() as usize == input.len() && out.len() < out.capacity() {
            return out;
        }
        if d.total_in() == before && out.len() < out.capacity() {
            return out;
        }
        out.reserve(out.capacity());
    }
}

/// Compresses like a permessage-deflate client: a sync flush, the tail stripped.
fn plain_deflate(input: &[u8], level: u32) -> Vec<u8> {
    let mut c = Compress::new(Compression::new(level), false);
    let mut out = Vec::with_capacity(input.len() + 1024);
    loop {
        c.compress_vec(
            &input[c.total_in() as usize..],
            &mut out,
            FlushCompress::Sync,
        )
        .unwrap();
        if c.total_in() as usize == input.len() && out.len() < out.capacity() {
            break;
        }
        out.reserve(out.capacity());
    }
    assert!(out.ends_with(&TAIL));
    out.truncate(out.len() - 4);
    out
}

fn json(n: usize) -> Vec<u8> {
    let mut s = String::from("[");
    let mut i = 0;
    while s.len() < n {
        s.push_str(&format!(
            "{{\"id\":{i},\"name\":\"user-{:05}\",\"active\":{}}},",
            i * 7919 % 100000,
            i % 3 == 0
        ));
        i += 1;
    }
    s.truncate(n);
    s.into_bytes()
}

#[test]
fn compressed_messages_inflate_with_a_fresh_stream_each() {
    let mut codec = SharedCodec::new(1);
    let msg = json(4096);
    let mut first = Vec::new();
    assert!(codec.deflater.compress(&msg, &mut first));
    assert!(
        first.len() < msg.len() / 2,
        "{} of {}",
        first.len(),
        msg.len()
    );
    assert!(!first.ends_with(&TAIL));
    // The same message again compresses to the same bytes: no context was carried over
    // (with context it would be a few back-references), and each inflates on its own.
    let mut second = Vec::new();
    assert!(codec.deflater.compress(&msg, &mut second));
    assert_eq!(first, second);
    assert_eq!(plain_inflate(&second), msg);
    // Ours inflates what a client compressed, message after message.
    for level in [1, 6, 9] {
        let payload = plain_deflate(&msg, level);
        let mut out = Vec::new();
        let m = codec
            .inflater
            .inflate_message(DataKind::Text, &[&payload], 1 << 20, &mut out)
            .unwrap();
        assert_eq!(m, Message::Text(std::str::from_utf8(&msg).unwrap()));
    }
    // An empty message compresses to an empty payload, which inflates to nothing.
    let mut empty = Vec::new();
    assert!(codec.deflater.compress(b"", &mut empty));
    assert_eq!(plain_inflate(&empty), b"");
    let mut out = Vec::new();
    codec.inflater.inflate(&[&empty], 10, &mut out).unwrap();
    assert!(out.is_empty());
}

#[test]
fn inflate_edge_cases() {
    let mut inf = Inflater::new();
    let mut out = Vec::new();
    // A single empty stored-block header (Autobahn-style empty message).
    inf.inflate(&[b"\x00"], 100, &mut out).unwrap();
    assert!(out.is_empty());
    // A message ending in a BFINAL block: the appended tail is ignored.
    let mut c = Compress::new(Compression::new(6), false);
    let mut fin = Vec::with_capacity(1024);
    c.compress_vec(b"Hello, hello, hello!", &mut fin, FlushCompress::Finish)
        .unwrap();
    inf.inflate(&[&fin], 100, &mut out).unwrap();
    assert_eq!(out, b"Hello, hello, hello!");
    // Garbage is not deflate.
    out.clear();
    assert_eq!(
        inf.inflate(&[b"\xff\xff\xff\xff\xff\xff\xff\xff"], 100, &mut out),
        Err(ProtocolError::InvalidDeflate)
    );
    assert!(out.is_empty());
    // The stream is usable after an error.
    let ok = plain_deflate(b"still works", 1);
    inf.inflate(&[&ok], 100, &mut out).unwrap();
    assert_eq!(out, b"still works");
    // Text that inflates to invalid UTF-8: 1007.
    let bad = plain_deflate(b"valid then \xed\xa0\x80 invalid", 6);
    let e = inf
        .inflate_message(DataKind::Text, &[&bad], 100, &mut out)
        .unwrap_err();
    assert_eq!(e, ProtocolError::InvalidUtf8);
    assert_eq!(e.close_code().0, 1007);
    // Pieces split anywhere inflate alike.
    let msg = json(10_000);
    let payload = plain_deflate(&msg, 6);
    for cut in [0, 1, payload.len() / 3, payload.len() - 1, payload.len()] {
        let (a, b) = payload.split_at(cut);
        out.clear();
        inf.inflate(&[a, b], 1 << 20, &mut out).unwrap();
        assert_eq!(out, msg, "cut {cut}");
    }
}

#[test]
fn a_bomb_stops_at_the_cap() {
    let zeros = vec![0u8; 64 << 20];
    let bomb = plain_deflate(&zeros, 9);
    assert!(bomb.len() < 100 << 10, "{}", bomb.len());
    let mut inf = Inflater::new();
    let cap = 1 << 20;
    let mut out = Vec::new();
    let e = inf.inflate(&[&bomb], cap, &mut out).unwrap_err();
    assert_eq!(e, ProtocolError::MessageTooBig);
    assert_eq!(e.close_code().0, 1009);
    assert!(out.is_empty());
    assert!(out.capacity() <= cap + 1, "allocated {}", out.capacity());
    // Exactly the cap is fine; one byte over is not.
    let exact = plain_deflate(&zeros[..cap], 9);
    let mut out = Vec::new();
    inf.inflate(&[&exact], cap, &mut out).unwrap();
    assert_eq!(out.len(), cap);
    let over = plain_deflate(&zeros[..cap + 1], 9);
    let mut out = Vec::new();
    assert_eq!(
        inf.inflate(&[&over], cap, &mut out),
        Err(ProtocolError::MessageTooBig)
    );
}

/// Masked client frames of a message compressed and split into `parts` fragments.
fn client_frames(payload: &[u8], parts: usize, rsv_on_all: bool) -> Vec<u8> {
    client_frame_list(payload, parts, rsv_on_all).concat()
}

fn client_frame_list(payload: &[u8], parts: usize, rsv_on_all: bool) -> Vec<Vec<u8>> {
    let mut list = Vec::new();
    let chunk = payload.len().div_ceil(parts.max(1)).max(1);
    let pieces: Vec<&[u8]> = payload.chunks(chunk).collect();
    for (i, p) in pieces.iter().enumerate() {
        let last = i + 1 == pieces.len();
        let head = if i == 0 {
            FrameHead::text(p.len() as u64).with_rsv(RSV1)
        } else if rsv_on_all {
            FrameHead::continuation(p.len() as u64, last).with_rsv(RSV1)
        } else {
            FrameHead::continuation(p.len() as u64, last)
        };
        let key = [1, 2, 3, 4];
        let mut hb = HeaderBuf::default();
        let mut out = head.with_fin(last).with_mask(key).encode(&mut hb).to_vec();
        out.extend(p.iter().enumerate().map(|(j, b)| b ^ key[j % 4]));
        list.push(out);
    }
    list
}

fn deflate_config() -> DecoderConfig {
    DecoderConfig {
        allowed_rsv: RSV1,
        ..Default::default()
    }
}

#[test]
fn fragmented_compressed_message_through_decoder_and_assembly() {
    let msg = json(20_000);
    let mut payload = Vec::new();
    SharedCodec::new(1).deflater.compress(&msg, &mut payload);
    // Five frames, and a ping between the second and the third.
    let mut frames = client_frame_list(&payload, 5, false);
    let mut ping = HeaderBuf::default();
    frames.insert(
        2,
        FrameHead::ping(0)
            .with_mask([0; 4])
            .encode(&mut ping)
            .to_vec(),
    );
    let mut wire = frames.concat();
    let config = deflate_config();
    let mut d = Decoder::new();
    let mut asm = Assembly::default();
    let mut used = 0;
    let mut pings = 0;
    while used < wire.len() {
        let r = d.decode(&config, &mut wire[used..]).unwrap();
        used += r.consumed;
        match r.event {
            Some(Event::Data(p)) => {
                assert!(p.compressed);
                assert_eq!(p.text(), None);
                asm.push(&p).unwrap();
            }
            Some(Event::Ping(_)) => pings += 1,
            Some(e) => panic!("{e:?}"),
            None => break,
        }
    }
    assert_eq!(pings, 1);
    assert_eq!(
        asm.message(),
        None,
        "compressed: not a message until inflated"
    );
    let (kind, joined) = asm.compressed().unwrap();
    assert_eq!(joined, payload);
    let mut out = Vec::new();
    let m = Inflater::new()
        .inflate_message(kind, &[joined], 1 << 20, &mut out)
        .unwrap();
    assert_eq!(m.as_bytes(), msg);
}

#[test]
fn rsv1_only_on_the_first_frame_of_a_data_message() {
    let payload = plain_deflate(b"abcdefabcdef", 6);
    // On a continuation: 1002.
    let mut wire = client_frames(&payload, 2, true);
    let mut d = Decoder::new();
    let r = d.decode(&deflate_config(), &mut wire).unwrap();
    let used = r.consumed;
    assert!(matches!(r.event, Some(Event::Data(_))));
    let e = d.decode(&deflate_config(), &mut wire[used..]).unwrap_err();
    assert_eq!((e, e.close_code().0), (ProtocolError::ReservedBits, 1002));
    // On control frames: 1002.
    for head in [FrameHead::ping(0), FrameHead::pong(0), FrameHead::close(0)] {
        let mut hb = HeaderBuf::default();
        let mut wire = head
            .with_rsv(RSV1)
            .with_mask([0; 4])
            .encode(&mut hb)
            .to_vec();
        let e = Decoder::new()
            .decode(&deflate_config(), &mut wire)
            .unwrap_err();
        assert_eq!(e, ProtocolError::ReservedBits);
    }
    // Without the extension, RSV1 anywhere: 1002.
    let mut wire = client_frames(&payload, 1, false);
    let e = Decoder::new()
        .decode(&DecoderConfig::default(), &mut wire)
        .unwrap_err();
    assert_eq!(e, ProtocolError::ReservedBits);
    // RSV2/RSV3 stay refused with deflate on.
    let mut hb = HeaderBuf::default();
    let mut wire = FrameHead::binary(0)
        .with_rsv(0b010)
        .with_mask([0; 4])
        .encode(&mut hb)
        .to_vec();
    assert!(Decoder::new().decode(&deflate_config(), &mut wire).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Ours compresses what plain flate2 inflates, and inflates what plain flate2
    /// compresses, for any bytes and any level, with the stream shared across messages.
    #[test]
    fn round_trips_against_plain_flate2(
        messages in proptest::collection::vec(
            prop_oneof![
                proptest::collection::vec(any::<u8>(), 0..3000),
                (0usize..20_000).prop_map(json),
            ],
            1..4,
        ),
        level in 0u32..=9,
    ) {
        let mut codec = SharedCodec::new(level);
        for msg in &messages {
            let mut payload = Vec::new();
            prop_assert!(codec.deflater.compress(msg, &mut payload));
            prop_assert_eq!(&plain_inflate(&payload), msg);
            let theirs = plain_deflate(msg, level);
            let mut out = Vec::new();
            codec.inflater.inflate(&[&theirs], msg.len(), &mut out).unwrap();
            prop_assert_eq!(&out, msg);
            if !msg.is_empty() {
                out.clear();
                prop_assert_eq!(
                    codec.inflater.inflate(&[&theirs], msg.len() - 1, &mut out),
                    Err(ProtocolError::MessageTooBig)
                );
            }
        }
    }
}
