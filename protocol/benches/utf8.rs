//! Streaming UTF-8 validation of a 64 KiB message fed in fragments, against simdutf8 (and
//! std) on the whole buffer at once: the cost of streaming is the gap between them.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use throng_protocol::utf8::Utf8Stream;

const LEN: usize = 64 << 10;

/// `LEN` bytes of `phrase` repeated, cut at a character boundary and padded with spaces.
fn text(phrase: &str) -> Vec<u8> {
    let mut s = phrase.repeat(LEN / phrase.len() + 1);
    let cut = (0..=LEN)
        .rev()
        .find(|&i| s.is_char_boundary(i))
        .expect("0 is one");
    s.truncate(cut);
    let mut bytes = s.into_bytes();
    bytes.resize(LEN, b' ');
    bytes
}

fn stream(text: &[u8], piece: usize) -> bool {
    let mut utf8 = Utf8Stream::default();
    text.chunks(piece)
        .all(|chunk| utf8.feed(black_box(chunk)).is_ok())
        && utf8.finish().is_ok()
}

/// `text` cut at the last character boundary at or before each multiple of `piece`: the
/// calls simdutf8 alone would make if it could be handed fragments, which bounds what
/// streaming on top of it can reach.
fn boundary_pieces(text: &[u8], piece: usize) -> Vec<&[u8]> {
    let s = std::str::from_utf8(text).expect("valid text");
    let mut cuts: Vec<usize> = (piece..LEN)
        .step_by(piece)
        .map(|i| {
            (0..=i)
                .rev()
                .find(|&j| s.is_char_boundary(j))
                .expect("0 is one")
        })
        .collect();
    cuts.insert(0, 0);
    cuts.push(LEN);
    cuts.windows(2).map(|w| &text[w[0]..w[1]]).collect()
}

fn utf8(c: &mut Criterion) {
    let ascii = text("The quick brown fox jumps over the lazy dog; {\"id\":42,\"ok\":true}. ");
    let mixed = text("Grüße aus Köln — Привет, мир! 你好，世界。 🎉🚀 naïve café, ĸøßþ; ");
    // The point of the mixed text: fragments that end inside a character.
    for piece in [1 << 10, 4 << 10] {
        let split = (piece..LEN)
            .step_by(piece)
            .filter(|&i| mixed[i] & 0xC0 == 0x80)
            .count();
        assert!(split > 0, "no character crosses a {piece}-byte boundary");
    }
    for (name, text) in [("ascii", &ascii), ("mixed", &mixed)] {
        assert!(std::str::from_utf8(text).is_ok());
        let mut group = c.benchmark_group(format!("utf8_{name}"));
        group.throughput(Throughput::Bytes(LEN as u64));
        group.bench_function("simdutf8_whole", |b| {
            b.iter(|| simdutf8::basic::from_utf8(black_box(text)).is_ok())
        });
        group.bench_function("simdutf8_compat_whole", |b| {
            b.iter(|| simdutf8::compat::from_utf8(black_box(text)).is_ok())
        });
        group.bench_function("std_whole", |b| {
            b.iter(|| std::str::from_utf8(black_box(text)).is_ok())
        });
        for (piece, label) in [(1 << 10, "1KiB"), (4 << 10, "4KiB")] {
            let pieces = boundary_pieces(text, piece);
            group.bench_function(format!("simdutf8_pieces_{label}"), |b| {
                b.iter(|| {
                    pieces
                        .iter()
                        .all(|p| simdutf8::basic::from_utf8(black_box(p)).is_ok())
                })
            });
            group.bench_function(format!("stream_{label}"), |b| {
                b.iter(|| stream(black_box(text), piece))
            });
        }
        group.finish();
    }
}

criterion_group!(benches, utf8);
criterion_main!(benches);
