//! The spill pool: what a connection pays to borrow heap state for a message in flight
//! and give it back.

use std::hint::black_box;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use throng_engine::bench_api::SpillPool;

fn pool(c: &mut Criterion) {
    let mut g = c.benchmark_group("spill_pool");
    let mut pool = SpillPool::default();
    g.bench_function("take_give_idle", |b| {
        b.iter(|| {
            let s = pool.take();
            pool.give(black_box(s));
        })
    });
    let frame = Bytes::from(vec![0u8; 66]);
    g.bench_function("take_queue_give", |b| {
        b.iter(|| {
            let mut s = pool.take();
            s.queue(frame.clone());
            s.stash(black_box(&[0x81, 0x7e]));
            pool.give(s);
        })
    });
    g.finish();
    // Reuse means the pool allocated once, however many iterations ran.
    assert!(
        pool.allocated() <= 2,
        "pool allocated {} records",
        pool.allocated()
    );
}

criterion_group!(benches, pool);
criterion_main!(benches);
