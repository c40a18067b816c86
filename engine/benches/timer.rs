//! The timer wheel: one tick costs the entries due in that bucket, never the idle
//! connections filed elsewhere. `tick_nothing_due/N` stays within a few nanoseconds from 0
//! to 1,000,000 filed entries (taking a bucket resets one fill slot per 65,536-key page);
//! `tick_due` shows the per-entry cost (take, visit, re-file) when a bucket comes round.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use throng_engine::bench_api::{TimerWheel, WHEEL_BUCKETS};

/// Ticks ahead an idle connection is filed: 30 s ping interval / 250 ms tick.
const PING_TICKS: u32 = 120;

/// `n` idle connections, their ping deadlines spread over the next `PING_TICKS` ticks.
fn filled(n: u32) -> TimerWheel {
    let mut w = TimerWheel::default();
    for k in 0..n {
        w.insert(1 + k % PING_TICKS, k);
    }
    w
}

fn wheel(c: &mut Criterion) {
    let mut g = c.benchmark_group("timer_wheel");
    for n in [0u32, 10_000, 1_000_000] {
        let mut w = filled(n);
        // A tick whose bucket holds nothing: past the ping horizon, within the lap.
        let empty = PING_TICKS + 10;
        assert!((empty as usize) < WHEEL_BUCKETS);
        g.bench_with_input(BenchmarkId::new("tick_nothing_due", n), &n, |b, _| {
            b.iter(|| {
                w.tick(black_box(empty), |_, k| {
                    black_box(k);
                })
            })
        });
    }
    let n = 1_000_000u32;
    let per_bucket = n / PING_TICKS;
    g.throughput(Throughput::Elements(per_bucket as u64));
    g.bench_function(BenchmarkId::new("tick_due", per_bucket), |b| {
        let mut w = filled(n);
        // Each visit re-files the entry one lap on (into the bucket being visited, which
        // starts a new chain), as a connection whose real deadline moved later is; so
        // every iteration finds the bucket full again.
        let at = 5u32;
        b.iter(|| w.tick(at, |w, k| w.insert(at + WHEEL_BUCKETS as u32, k)))
    });
    g.throughput(Throughput::Elements(1));
    g.bench_function("insert", |b| {
        let mut w = TimerWheel::default();
        let mut k = 0u32;
        b.iter(|| {
            k = k.wrapping_add(1);
            w.insert(1 + k % PING_TICKS, k);
            // Keep the wheel from growing without bound over millions of iterations.
            if k.is_multiple_of(1_000_000) {
                w = TimerWheel::default();
            }
        })
    });
    g.finish();
}

criterion_group!(benches, wheel);
criterion_main!(benches);
