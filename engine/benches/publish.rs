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
            b.iter(|| encode_frame(throng_protocol::DataKind::Text, black_box(p)))
        });
    }
    g.finish();
}

fn walk(c: &mut Criterion) {
    let mut g = c.benchmark_group("topic_publish_walk");
    for members in [1_000u32, 15_000, 1_000_000] {
        // Slab keys as a busy worker hands them out: dense, with holes.
        let mut t = table(members, |k| k * 2 + 1);
        g.throughput(Throughput::Elements(members as u64));
        g.bench_with_input(BenchmarkId::from_parameter(members), &members, |b, _| {
            b.iter(|| walk_once(&mut t))
        });
    }
    g.finish();
    // Members spread thinly over a big slab (a hash set rather than a bit set), and a
    // chat room's handful (a list).
    let mut g = c.benchmark_group("topic_publish_walk_sparse");
    for (members, stride) in [(15_000u32, 97u32), (16, 1_013)] {
        let mut t = table(members, |k| k * stride + 3);
        g.throughput(Throughput::Elements(members as u64));
        g.bench_with_input(BenchmarkId::from_parameter(members), &members, |b, _| {
            b.iter(|| walk_once(&mut t))
        });
    }
    g.finish();
}

/// A table with `members` subscribers of "all" (keys from `key`) and half as many of a
/// second topic, so the table is not trivially small.
fn table(members: u32, key: impl Fn(u32) -> u32) -> TopicTable {
    let mut t = TopicTable::default();
    for k in 0..members {
        t.subscribe(key(k), "all");
    }
    for k in 0..members / 2 {
        t.subscribe(key(k), "other");
    }
    t
}

fn walk_once(t: &mut TopicTable) -> u64 {
    let mut sum = 0u64;
    t.publish_walk("all", |k| sum = sum.wrapping_add(black_box(k as u64)));
    sum
}

criterion_group!(benches, encode, walk);
criterion_main!(benches);
