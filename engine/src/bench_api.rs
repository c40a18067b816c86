//! Thin wrappers over engine internals for the criterion benches in `engine/benches/`.
//! Not part of the API: hidden from the docs, no stability promise. Each wrapper adds
//! nothing on the measured path but the call itself.

use bytes::Bytes;

/// Encodes a whole unmasked data frame into one shared buffer, as a publish does once
/// for all its subscribers.
pub fn encode_frame(kind: throng_protocol::DataKind, payload: &[u8]) -> Bytes {
    crate::core::encode_frame(kind, payload)
}

/// The worker's output arena, staging whole frames as a send to a connection with
/// nothing pending does.
#[derive(Debug, Default)]
pub struct FrameArena(crate::output::Arena);

impl FrameArena {
    /// The send fast path's way: header written in place, then the payload (one copy).
    /// Returns the staged length; the piece is dropped, as after a flush.
    pub fn stage_frame(&mut self, kind: throng_protocol::DataKind, payload: &[u8]) -> usize {
        let b0 = match kind {
            throng_protocol::DataKind::Text => 0x81,
            throng_protocol::DataKind::Binary => 0x82,
        };
        self.0.stage_frame(b0, payload).len()
    }
    /// The general path's way: `FrameHead::encode` into a header buffer, then the parts
    /// slice of header and payload.
    pub fn stage_parts(&mut self, kind: throng_protocol::DataKind, payload: &[u8]) -> usize {
        let head = match kind {
            throng_protocol::DataKind::Text => {
                throng_protocol::FrameHead::text(payload.len() as u64)
            }
            throng_protocol::DataKind::Binary => {
                throng_protocol::FrameHead::binary(payload.len() as u64)
            }
        };
        let mut hb = throng_protocol::HeaderBuf::default();
        let header = head.encode(&mut hb);
        self.0.stage(&[header, payload]).len()
    }
}

/// A spill record lent by [`SpillPool`].
pub struct Spill(Box<crate::pool::Spill>);

impl std::fmt::Debug for Spill {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spill").finish_non_exhaustive()
    }
}

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
pub struct SpillPool(crate::pool::Pool);

impl std::fmt::Debug for SpillPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpillPool").finish_non_exhaustive()
    }
}

impl Default for SpillPool {
    fn default() -> Self {
        SpillPool(crate::pool::Pool::new(
            crate::Config::default().spill_pool_keep,
        ))
    }
}

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

impl std::fmt::Debug for TimerWheel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TimerWheel").finish_non_exhaustive()
    }
}

/// Buckets of the wheel (one lap).
pub const WHEEL_BUCKETS: usize = crate::timer::BUCKETS;

impl TimerWheel {
    /// Files connection `key` under tick `at`.
    pub fn insert(&mut self, at: u32, key: u32) {
        self.0.insert(at, key)
    }
    /// One tick of the run loop: takes the bucket of tick `at` and hands each entry to
    /// `visit` (which may file entries again). Returns the entries visited.
    pub fn tick(&mut self, at: u32, mut visit: impl FnMut(&mut Self, u32)) -> usize {
        let mut taken = self.0.take(at);
        if taken.is_empty() {
            return 0;
        }
        let mut batch = [0u32; crate::timer::CHUNK];
        let mut visited = 0;
        loop {
            let n = self
                .0
                .next_batch(&mut taken, &mut batch, crate::timer::CHUNK);
            if n == 0 {
                return visited;
            }
            visited += n;
            for &key in &batch[..n] {
                visit(self, key);
            }
        }
    }
    /// Bytes of memory the wheel holds.
    pub fn bytes(&self) -> usize {
        self.0.bytes()
    }
}

/// A worker's topic table, with the topic slot of each connection's record beside it.
#[derive(Default)]
pub struct TopicTable {
    table: crate::topics::Topics,
    inline: Vec<u16>,
}

impl std::fmt::Debug for TopicTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TopicTable").finish_non_exhaustive()
    }
}

impl TopicTable {
    /// Subscribes connection `key` to `topic`.
    pub fn subscribe(&mut self, key: u32, topic: &str) -> bool {
        let k = key as usize;
        if k >= self.inline.len() {
            self.inline.resize(k + 1, 0);
        }
        self.table.subscribe(key, &mut self.inline[k], topic)
    }
    /// Ends every subscription of connection `key`, as closing it does.
    pub fn remove(&mut self, key: u32) {
        if let Some(slot) = self.inline.get_mut(key as usize) {
            self.table.remove_conn(key, std::mem::take(slot));
        }
    }
    /// The member walk of a publish (lend the members out, visit each, give them back),
    /// with `send` standing in for the write to each subscriber. Returns the members
    /// visited.
    pub fn publish_walk(&mut self, topic: &str, mut send: impl FnMut(u32)) -> usize {
        let Some(id) = self.table.id(topic) else {
            return 0;
        };
        let members = self.table.take(id);
        let mut n = 0;
        members.for_each(|key| {
            n += 1;
            send(key)
        });
        self.table.restore(id, members);
        n
    }
    /// Heap bytes the table holds (the records' topic slots not counted: they are part of
    /// the 48-byte record).
    pub fn bytes(&self) -> usize {
        self.table.bytes()
    }
}
