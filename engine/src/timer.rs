//! A coarse hashed timer wheel, one per worker.
//!
//! Each connection keeps one `u32` tick: the bucket it is filed under. Activity that only
//! pushes a deadline later (every received frame, for the idle and ping clocks) touches
//! nothing here; when the bucket comes round the connection is re-filed at its real
//! deadline. So the cost of a tick is the number of entries in one bucket, never the
//! number of idle connections with nothing due.

/// Buckets in the wheel (a power of two). With 250 ms ticks one lap is 128 s; longer
/// deadlines simply go round again.
pub(crate) const BUCKETS: usize = 512;

/// Filed connections: `(slab key, generation)`.
#[derive(Debug)]
pub(crate) struct Wheel {
    buckets: Vec<Vec<(u32, u32)>>,
    /// Entries across all buckets, including stale ones not yet swept.
    len: usize,
}

impl Default for Wheel {
    fn default() -> Self {
        Wheel {
            buckets: (0..BUCKETS).map(|_| Vec::new()).collect(),
            len: 0,
        }
    }
}

impl Wheel {
    /// Files `(key, generation)` under tick `at`.
    pub fn insert(&mut self, at: u32, key: u32, generation: u32) {
        self.buckets[at as usize % BUCKETS].push((key, generation));
        self.len += 1;
    }

    /// Takes the entries filed under the bucket of tick `at` (the caller checks which are
    /// really due, re-files the rest and hands the vector back with [`Wheel::restore`]).
    pub fn take(&mut self, at: u32) -> Vec<(u32, u32)> {
        let v = std::mem::take(&mut self.buckets[at as usize % BUCKETS]);
        self.len -= v.len();
        v
    }

    /// Gives back a drained bucket vector so its allocation is reused.
    pub fn restore(&mut self, at: u32, mut v: Vec<(u32, u32)>) {
        v.clear();
        let slot = &mut self.buckets[at as usize % BUCKETS];
        if slot.is_empty() && slot.capacity() < v.capacity() {
            *slot = v;
        }
    }

    /// Whether anything is filed.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}
