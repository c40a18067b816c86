//! Thin wrappers over engine internals for the criterion benches in `engine/benches/`.
//! Not part of the API: hidden from the docs, no stability promise. Each wrapper adds
//! nothing on the measured path but the call itself.

use bytes::Bytes;

/// Encodes a whole unmasked data frame into one shared buffer, as a publish does once
/// for all its subscribers.
pub fn encode_frame(text: bool, payload: &[u8]) -> Bytes {
    crate::core::encode_frame(text, payload)
}

/// A spill record lent by [`SpillPool`].
pub struct Spill(Box<crate::pool::Spill>);

impl Spill {
    /// Queues `bytes` as output, as a send the kernel did not take does.
    pub fn queue(&mut self, bytes: Bytes) {
        self.0.out_bytes += bytes.len();
        self.0.out.queue.push_back(bytes);
    }
    /// Appends to the partial-input stash, as a split frame header does.
    pub fn stash(&mut self, bytes: &[u8]) {
        self.0.input.extend_from_slice(bytes);
    }
}

/// A worker's pool of spill records.
#[derive(Default)]
pub struct SpillPool(crate::pool::Pool);

impl SpillPool {
    /// Lends a record.
    pub fn take(&mut self) -> Spill {
        Spill(self.0.take())
    }
    /// Takes a record back.
    pub fn give(&mut self, spill: Spill) {
        self.0.give(spill.0)
    }
    /// Records ever allocated.
    pub fn allocated(&self) -> usize {
        self.0.stats().allocated
    }
}

/// The timer wheel.
#[derive(Default)]
pub struct TimerWheel(crate::timer::Wheel);

/// Buckets of the wheel (one lap).
pub const WHEEL_BUCKETS: usize = crate::timer::BUCKETS;

impl TimerWheel {
    /// Files `(key, generation)` under tick `at`.
    pub fn insert(&mut self, at: u32, key: u32, generation: u32) {
        self.0.insert(at, key, generation)
    }
    /// One tick of the run loop: takes the bucket of tick `at`, hands each entry to
    /// `visit`, gives the bucket back. Returns the entries visited.
    pub fn tick(&mut self, at: u32, mut visit: impl FnMut(u32, u32)) -> usize {
        let entries = self.0.take(at);
        let n = entries.len();
        for &(key, generation) in &entries {
            visit(key, generation);
        }
        self.0.restore(at, entries);
        n
    }
}

/// A worker's topic table.
#[derive(Default)]
pub struct TopicTable(crate::topics::Topics);

impl TopicTable {
    /// Subscribes connection `key` (of `generation`) to `topic`.
    pub fn subscribe(&mut self, key: u32, generation: u32, topic: &str) -> bool {
        self.0.subscribe(key, generation, topic)
    }
    /// The member walk of a publish (lend the members out, visit each, give them back),
    /// with `send` standing in for the write to each subscriber. Returns the members
    /// visited.
    pub fn publish_walk(&mut self, topic: &str, mut send: impl FnMut(u32, u32)) -> usize {
        let Some(members) = self.0.take(topic) else {
            return 0;
        };
        let n = members.len();
        for (&key, &generation) in members.iter() {
            send(key, generation);
        }
        self.0.restore(topic, members);
        n
    }
}
