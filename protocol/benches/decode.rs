//! Decoded frames per second: a buffer of masked client frames decoded the way the engine
//! does (call, drop `consumed`, call again), unmasking and UTF-8 validation included; and
//! the same through `Decoder::decode_message`, the engine's fast path for whole messages.

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use throng_protocol::decoder::{Decoded, Decoder, DecoderConfig, Event};
use throng_protocol::frame::{FrameHead, HeaderBuf};
use throng_protocol::mask::apply_mask_scalar;

const FRAMES: usize = 10_000;

/// `FRAMES` masked frames carrying `payload`, each with its own key.
fn stream(head: FrameHead, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(FRAMES * (payload.len() + 14));
    let mut header = HeaderBuf::default();
    for i in 0..FRAMES as u32 {
        let key = i.wrapping_mul(0x9e37_79b9).to_le_bytes();
        out.extend_from_slice(head.with_mask(key).encode(&mut header));
        let start = out.len();
        out.extend_from_slice(payload);
        apply_mask_scalar(&mut out[start..], key, 0);
    }
    out
}

/// Decodes every frame in `buf`; returns the number of events.
fn decode_all(config: &DecoderConfig, buf: &mut [u8]) -> usize {
    let mut decoder = Decoder::new();
    let mut used = 0;
    let mut events = 0;
    while let Ok(Decoded {
        consumed,
        event: Some(event),
    }) = decoder.decode(config, &mut buf[used..])
    {
        if let Event::Data(d) = event {
            black_box(d.payload);
        }
        used += consumed;
        events += 1;
    }
    events
}

/// `decode_all` the way the engine reads: the fast path first, `decode` for what it declines.
fn decode_all_fast(config: &DecoderConfig, buf: &mut [u8]) -> usize {
    let decoder = Decoder::new();
    let mut used = 0;
    let mut events = 0;
    while used < buf.len() {
        match decoder.decode_message(config, &mut buf[used..]) {
            Some(Ok((message, consumed))) => {
                black_box(message);
                used += consumed;
                events += 1;
            }
            _ => return events + decode_all(config, &mut buf[used..]),
        }
    }
    events
}

fn bench(c: &mut Criterion, name: &str, head: FrameHead, payload: &[u8]) {
    let input = stream(head.with_fin(true), payload);
    let config = DecoderConfig::default();
    // Decoding unmasks in place, so every run starts from a fresh copy (made outside the
    // timed part).
    assert_eq!(decode_all(&config, &mut input.clone()), FRAMES);
    let mut group = c.benchmark_group("decode");
    group.throughput(Throughput::Elements(FRAMES as u64));
    group.bench_function(name, |b| {
        b.iter_batched_ref(
            || input.clone(),
            |buf| decode_all(&config, black_box(buf)),
            BatchSize::LargeInput,
        )
    });
    assert_eq!(decode_all_fast(&config, &mut input.clone()), FRAMES);
    group.bench_function(format!("{name}_fast_path"), |b| {
        b.iter_batched_ref(
            || input.clone(),
            |buf| decode_all_fast(&config, black_box(buf)),
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

fn decode(c: &mut Criterion) {
    // A typical small JSON message: mostly ASCII, two 2-byte characters.
    let json = br#"{"t":"msg","room":42,"from":"J\xc3\xb6rg","text":"gr\xc3\xbc\xc3\x9f"}"#;
    let mut text = json.to_vec();
    text.resize(64, b' ');
    assert!(std::str::from_utf8(&text).is_ok());
    bench(c, "text_64B", FrameHead::text(64), &text);
    bench(c, "text_64B_ascii", FrameHead::text(64), &[b'a'; 64]);
    let binary: Vec<u8> = (0..1024u32).map(|i| (i * 7) as u8).collect();
    bench(c, "binary_1KiB", FrameHead::binary(1024), &binary);
}

criterion_group!(benches, decode);
criterion_main!(benches);
