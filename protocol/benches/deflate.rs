//! The shared codec on JSON messages of 64 B to 16 KiB: compress (level 1) and inflate
//! time per message, and (printed once) the compressed size, which is what the default
//! `DeflateConfig::threshold` was chosen from: below the threshold a message goes plain.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use throng_protocol::DataKind;
use throng_protocol::deflate::SharedCodec;

#[path = "../../benches/src/json.rs"]
mod payload;
use payload::json;

const SIZES: [usize; 8] = [64, 128, 256, 512, 1024, 4096, 16384, 65536];

fn bench(c: &mut Criterion) {
    let mut codec = SharedCodec::new(1);
    println!("size  compressed (level 1)  saved");
    for size in SIZES {
        let msg = json(size);
        let mut out = Vec::new();
        codec.deflater.compress(&msg, &mut out);
        println!(
            "{size:>5}  {:>5}  {:>5}",
            out.len(),
            size as isize - out.len() as isize
        );
    }
    let mut g = c.benchmark_group("deflate");
    for size in SIZES {
        let msg = json(size);
        let mut compressed = Vec::new();
        codec.deflater.compress(&msg, &mut compressed);
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_function(format!("compress/{size}"), |b| {
            let mut out = Vec::with_capacity(size + 64);
            b.iter(|| {
                out.clear();
                codec.deflater.compress(black_box(&msg), &mut out)
            })
        });
        g.bench_function(format!("inflate/{size}"), |b| {
            let mut out = Vec::with_capacity(size + 64);
            b.iter(|| {
                codec
                    .inflater
                    .inflate_message(DataKind::Text, &[black_box(&compressed)], 1 << 20, &mut out)
                    .is_ok()
            })
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(std::time::Duration::from_millis(300))
        .measurement_time(std::time::Duration::from_secs(1));
    targets = bench
}
criterion_main!(benches);
