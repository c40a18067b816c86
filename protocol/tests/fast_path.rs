//! `Decoder::decode_message` (the fast path for a whole single-frame message) against
//! `Decoder::decode` (the general decoder): for every frame kind, config, split and
//! alignment, the fast path either declines without touching the bytes, or gives the
//! message, the bytes used and the unmasked payload `decode` gives (or its UTF-8 error).

use throng_protocol::decoder::{Decoded, Decoder, DecoderConfig, Event};
use throng_protocol::frame::{FrameHead, HeaderBuf, RSV1};
use throng_protocol::mask::apply_mask_scalar;
use throng_protocol::{Message, ProtocolError};

/// What the fast path did, checked against the general decoder on a copy of `buf`.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Declined,
    Message,
    Error,
}

fn check(decoder: &Decoder, config: &DecoderConfig, buf: &[u8]) -> Verdict {
    let mut fast_buf = buf.to_vec();
    let mut general_buf = buf.to_vec();
    let fast = decoder.decode_message(config, &mut fast_buf);
    let fast = fast.map(|r| r.map(|(m, n)| (owned(m), n)));
    let mut general_decoder = *decoder;
    let general = general_decoder.decode(config, &mut general_buf);
    match fast {
        None => {
            assert_eq!(fast_buf, buf, "declined but touched the bytes");
            Verdict::Declined
        }
        Some(Ok((message, used))) => {
            let Ok(Decoded {
                consumed,
                event: Some(Event::Data(data)),
            }) = general
            else {
                panic!("fast path gave a message, decode gave {general:?} for {buf:02x?}");
            };
            assert_eq!(consumed, used);
            let whole = data
                .whole()
                .expect("decode gave a piece, not a whole message");
            assert_eq!(owned(whole), message);
            assert_eq!(general_decoder, *decoder, "decode changed the state");
            assert_eq!(fast_buf[..used], general_buf[..used]);
            assert_eq!(
                fast_buf[used..],
                buf[used..],
                "touched bytes past the frame"
            );
            Verdict::Message
        }
        Some(Err(e)) => {
            assert_eq!(e, ProtocolError::InvalidUtf8);
            assert_eq!(general.map(|_| ()), Err(e));
            Verdict::Error
        }
    }
}

fn owned(m: Message<'_>) -> (bool, Vec<u8>) {
    (m.is_text(), m.as_bytes().to_vec())
}

fn frame(head: FrameHead, payload: &[u8], key: Option<[u8; 4]>) -> Vec<u8> {
    let head = match key {
        Some(k) => head.with_mask(k),
        None => head,
    };
    let mut h = HeaderBuf::default();
    let mut out = head.encode(&mut h).to_vec();
    let start = out.len();
    out.extend_from_slice(payload);
    if let Some(k) = key {
        apply_mask_scalar(&mut out[start..], k, 0);
    }
    out
}

/// A 16-bit length written for a payload that fits 7 bits (non-minimal).
fn non_minimal(payload: &[u8], key: [u8; 4]) -> Vec<u8> {
    let mut out = vec![0x81, 0x80 | 126];
    out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    out.extend_from_slice(&key);
    let start = out.len();
    out.extend_from_slice(payload);
    apply_mask_scalar(&mut out[start..], key, 0);
    out
}

fn frames() -> Vec<Vec<u8>> {
    let key = Some([0x37, 0xfa, 0x21, 0x3d]);
    let text = |n: usize| {
        "héllo wörld ✓ "
            .bytes()
            .cycle()
            .take(n)
            .collect::<Vec<u8>>()
    };
    let mut out = Vec::new();
    for n in [
        0, 1, 3, 4, 5, 31, 32, 33, 64, 125, 126, 127, 200, 1000, 65535, 65536,
    ] {
        let ascii = vec![b'a'; n];
        out.push(frame(FrameHead::text(n as u64), &ascii, key));
        out.push(frame(FrameHead::binary(n as u64), &ascii, key));
        let t = text(n);
        if std::str::from_utf8(&t).is_ok() {
            out.push(frame(FrameHead::text(n as u64), &t, key));
        }
    }
    // Invalid UTF-8, and a character cut by the end of the message.
    out.push(frame(FrameHead::text(3), &[b'a', 0xff, b'b'], key));
    out.push(frame(FrameHead::text(2), &[b'a', 0xc3], key));
    out.push(frame(FrameHead::binary(2), &[b'a', 0xc3], key));
    // Unmasked, RSV bits, fragments, continuation, control frames, long forms.
    out.push(frame(FrameHead::text(5), b"hello", None));
    out.push(frame(FrameHead::text(5).with_rsv(RSV1), b"hello", key));
    out.push(frame(FrameHead::text(5).with_rsv(0b011), b"hello", key));
    out.push(frame(FrameHead::text(5).with_fin(false), b"hello", key));
    out.push(frame(FrameHead::continuation(5, true), b"hello", key));
    out.push(frame(FrameHead::ping(4), b"ping", key));
    out.push(frame(FrameHead::close(2), &[3, 232], key));
    out.push(non_minimal(b"short", [1, 2, 3, 4]));
    let mut long = frame(FrameHead::binary(70_000), &vec![7; 70_000], key);
    out.push(long.clone());
    // A reserved opcode.
    long[0] = 0x83;
    out.push(long[..200].to_vec());
    out
}

fn configs() -> Vec<DecoderConfig> {
    let mut out = vec![DecoderConfig::default(), DecoderConfig::client()];
    let mut c = DecoderConfig::default();
    c.allowed_rsv = RSV1;
    out.push(c);
    c = DecoderConfig::default();
    c.lenient_lengths = true;
    out.push(c);
    for (frame, message) in [(64, 1 << 20), (1 << 20, 64), (125, 126), (0, 0), (126, 126)] {
        out.push(DecoderConfig::server(frame, message));
    }
    c = DecoderConfig::default();
    c.max_frame_size = u64::MAX;
    c.max_message_size = u64::MAX;
    out.push(c);
    out
}

/// Every frame, every config, every prefix (a read that ends anywhere in the frame), with
/// a second frame after it, at every alignment within a 32-byte vector.
#[test]
fn fast_path_agrees_with_decode_at_every_split_and_alignment() {
    let follow = frame(FrameHead::text(5), b"after", Some([9, 8, 7, 6]));
    let mut taken = 0;
    for f in frames() {
        let mut stream = f.clone();
        stream.extend_from_slice(&follow);
        let splits: Vec<usize> = if stream.len() > 300 {
            (0..20).chain(stream.len() - 20..=stream.len()).collect()
        } else {
            (0..=stream.len()).collect()
        };
        for config in configs() {
            for &split in &splits {
                for align in 0..32 {
                    let mut backing = vec![0u8; align + split];
                    backing[align..].copy_from_slice(&stream[..split]);
                    if check(&Decoder::new(), &config, &backing[align..]) == Verdict::Message {
                        taken += 1;
                    }
                }
            }
        }
    }
    assert!(taken > 1000, "the fast path was taken only {taken} times");
}

/// A decoder inside a message (after a first fragment, or inside a frame's payload)
/// never takes the fast path, whatever follows.
#[test]
fn fast_path_declines_inside_a_message() {
    let key = Some([1, 2, 3, 4]);
    let whole = frame(FrameHead::text(5), b"hello", key);
    let config = DecoderConfig::default();
    // After a first fragment.
    let mut d = Decoder::new();
    let mut first = frame(FrameHead::text(3).with_fin(false), b"abc", key);
    d.decode(&config, &mut first).unwrap();
    assert!(d.in_message());
    assert_eq!(check(&d, &config, &whole), Verdict::Declined);
    // Inside a frame whose payload has not all arrived.
    let mut d = Decoder::new();
    let mut part = frame(FrameHead::binary(300), &[5; 300], key);
    part.truncate(100);
    let Decoded { consumed, .. } = d.decode(&config, &mut part).unwrap();
    assert!(consumed > 0);
    assert_eq!(check(&d, &config, &whole), Verdict::Declined);
    // And after the message ends, it is taken again.
    let mut d = Decoder::new();
    let mut two = frame(FrameHead::text(3).with_fin(false), b"abc", key);
    two.extend_from_slice(&frame(FrameHead::continuation(2, true), b"de", key));
    let Decoded { consumed, .. } = d.decode(&config, &mut two).unwrap();
    d.decode(&config, &mut two[consumed..]).unwrap();
    assert!(!d.in_message());
    assert_eq!(check(&d, &config, &whole), Verdict::Message);
}

/// Pseudo-random bytes, mostly near-valid headers, against every config, with the decoder
/// walked along the stream so that every state it reaches is tried too.
#[test]
fn fast_path_agrees_with_decode_on_random_streams() {
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let configs = configs();
    for _ in 0..3000 {
        let len = (next() % 300) as usize;
        let mut bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        // Bias toward the frames the fast path takes.
        if len >= 2 && next() % 4 != 0 {
            bytes[0] = [0x81, 0x82, 0x01, 0x80, 0x89][(next() % 5) as usize];
            bytes[1] = 0x80 | (next() % 128) as u8;
        }
        let config = configs[(next() % configs.len() as u64) as usize];
        let mut d = Decoder::new();
        let mut used = 0;
        let total = bytes.len();
        loop {
            check(&d, &config, &bytes[used..]);
            match d.decode(&config, &mut bytes[used..]) {
                Ok(Decoded {
                    consumed,
                    event: Some(_),
                }) if used + consumed < total => used += consumed,
                _ => break,
            }
        }
    }
}
