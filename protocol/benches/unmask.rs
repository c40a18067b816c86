//! Unmasking throughput: the dispatched kernel (plain, and telling ASCII) against the byte
//! loop, from one small frame to a maximum-size message.
//!
//! Small sizes are measured as a run of frames laid out as in a read buffer (each payload
//! 6 bytes after the previous one, where the next masked header sits), one call per frame:
//! masking one buffer over and over would time store-to-load forwarding between
//! iterations rather than the kernel.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use throng_protocol::mask::{apply_mask, apply_mask_ascii, apply_mask_scalar};

const SIZES: [(usize, &str); 5] = [
    (13, "13B"),
    (64, "64B"),
    (1 << 10, "1KiB"),
    (64 << 10, "64KiB"),
    (16 << 20, "16MiB"),
];

/// Bytes of payload per timed iteration at least, for the small sizes.
const BATCH: usize = 16 << 10;
const HEADER: usize = 6;

type Mask = fn(&mut [u8], [u8; 4], usize);

fn unmask(c: &mut Criterion) {
    let key = [0x37, 0xfa, 0x21, 0x3d];
    let mut group = c.benchmark_group("unmask");
    for (size, name) in SIZES {
        let frames = BATCH.div_ceil(size);
        let mut buf = vec![0x5au8; 64 + frames * (HEADER + size)];
        // The first payload starts just past a header that starts on a cache line.
        let start = (buf.as_ptr().addr().wrapping_neg() & 63) + HEADER;
        group.throughput(Throughput::Bytes((frames * size) as u64));
        let ascii: Mask = |buf, key, offset| {
            black_box(apply_mask_ascii(buf, key, offset));
        };
        for (kind, mask) in [
            ("simd", apply_mask as Mask),
            ("simd_ascii", ascii),
            ("scalar", apply_mask_scalar),
        ] {
            group.bench_function(format!("{kind}/{name}"), |b| {
                b.iter(|| {
                    let mut at = start;
                    for _ in 0..frames {
                        mask(black_box(&mut buf[at..at + size]), black_box(key), 0);
                        at += HEADER + size;
                    }
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, unmask);
criterion_main!(benches);
