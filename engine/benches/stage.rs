//! Staging one reply frame in the worker's arena: the send fast path's `stage_frame`
//! (header written in place, one copy) against the general path's `stage` of
//! `FrameHead::encode`'s header and the payload as two parts.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use throng_engine::bench_api::FrameArena;
use throng_protocol::DataKind;

fn stage(c: &mut Criterion) {
    let mut g = c.benchmark_group("arena_stage");
    for size in [0usize, 64, 125, 126, 1024, 16 << 10] {
        let payload = vec![b'x'; size];
        let mut arena = FrameArena::default();
        g.throughput(Throughput::Elements(1));
        g.bench_function(format!("stage_frame/{size}"), |b| {
            b.iter(|| arena.stage_frame(DataKind::Text, black_box(&payload)))
        });
        g.bench_function(format!("stage_parts/{size}"), |b| {
            b.iter(|| arena.stage_parts(DataKind::Text, black_box(&payload)))
        });
        // Same bytes either way (the unit tests check them byte for byte).
        assert_eq!(
            arena.stage_frame(DataKind::Binary, &payload),
            arena.stage_parts(DataKind::Binary, &payload)
        );
    }
    g.finish();
}

criterion_group!(benches, stage);
criterion_main!(benches);
