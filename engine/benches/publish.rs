//! The publish path without sockets: encoding the frame once, and the walk over a
//! topic's members that sends it (here to a counter instead of a socket).

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use throng_engine::bench_api::{TopicTable, encode_frame};

fn encode(c: &mut Criterion) {
    let mut g = c.benchmark_group("encode_frame");
    for size in [64usize, 16 << 10] {
        let payload = vec![b'x'; size];
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::from_parameter(size), &payload, |b, p| {
            b.iter(|| encode_frame(true, black_box(p)))
        });
    }
    g.finish();
}

fn walk(c: &mut Criterion) {
    let mut g = c.benchmark_group("topic_publish_walk");
    for members in [1_000u32, 15_000] {
        let mut t = TopicTable::default();
        for k in 0..members {
            // Slab keys as a busy worker hands them out: dense, with holes.
            t.subscribe(k * 2 + 1, 7, "all");
        }
        // A second topic, so the table is not trivially small.
        for k in 0..members / 2 {
            t.subscribe(k * 2 + 1, 7, "other");
        }
        g.throughput(Throughput::Elements(members as u64));
        g.bench_with_input(BenchmarkId::from_parameter(members), &members, |b, _| {
            b.iter(|| {
                let mut sum = 0u64;
                t.publish_walk("all", |k, generation| {
                    sum = sum.wrapping_add(black_box(k as u64 ^ generation as u64))
                });
                sum
            })
        });
    }
    g.finish();
}

criterion_group!(benches, encode, walk);
criterion_main!(benches);
