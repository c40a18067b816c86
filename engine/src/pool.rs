//! The per-worker pool of spill records: the heap state a connection borrows only while
//! it has something in flight (an incomplete frame or request, a message being assembled,
//! output the kernel did not take). An idle connection holds none; the counters prove it.

use throng_protocol::Assembly;

use crate::output::Outbox;

/// Heap state a connection holds only while it needs it.
#[derive(Debug, Default)]
pub(crate) struct Spill {
    /// Unconsumed input: a partial request head, frame header or control frame.
    pub input: Vec<u8>,
    /// A message arriving in pieces, assembled for `on_message`.
    pub message: Assembly,
    /// Output the backend has not taken yet, in order (plaintext, on a TLS connection).
    pub out: Outbox,
    /// TLS only: records encrypted and not yet taken by the backend; they leave before
    /// `out`.
    pub wire: Outbox,
    /// TLS only: a record cut by the end of a read, kept until the rest arrives.
    pub tls_in: Vec<u8>,
    /// Bytes of output not yet confirmed written: in `out`, plus what a completion
    /// backend has in flight.
    pub out_bytes: usize,
}

impl Spill {
    /// Nothing in flight: the record can go back to the pool.
    pub fn is_idle(&self) -> bool {
        self.input.is_empty()
            && self.tls_in.is_empty()
            && !self.message.is_open()
            && self.out_bytes == 0
    }

    /// Output waits to be handed to the backend.
    pub fn has_output(&self) -> bool {
        !self.out.is_empty() || !self.wire.is_empty()
    }
}

/// Buffers larger than this are freed instead of kept when a record comes back, so a
/// burst of large messages does not pin memory in the pool.
pub(crate) const KEEP_CAPACITY: usize = 64 << 10;

/// Bytes of buffers the free records of one pool may keep in all. Beyond it a record comes
/// back without its buffers: after a burst (thousands of slowloris heads, large messages)
/// the pool holds at most this much besides the records themselves.
const RETAIN: usize = 2 << 20;

/// Counters of the pool, for tests and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Records lent to connections right now.
    pub in_use: usize,
    /// Records waiting in the pool.
    pub free: usize,
    /// Records ever allocated (reuse keeps this low).
    pub allocated: usize,
}

/// A free list of spill records.
#[derive(Debug)]
pub(crate) struct Pool {
    // Boxed: a connection holds its record through one pointer (8 bytes in the slab),
    // and records move between the pool and connections without copying.
    #[allow(clippy::vec_box)]
    free: Vec<Box<Spill>>,
    in_use: usize,
    allocated: usize,
    /// Records kept for reuse; more are freed (`Config::spill_pool_keep`).
    keep: usize,
    /// Bytes of buffers the free records hold.
    retained: usize,
}

/// Bytes of buffers a record holds.
fn held(s: &Spill) -> usize {
    s.input.capacity() + s.tls_in.capacity() + s.message.capacity()
}

impl Pool {
    /// A pool that keeps at most `keep` free records.
    pub fn new(keep: usize) -> Self {
        Pool {
            free: Vec::new(),
            in_use: 0,
            allocated: 0,
            keep,
            retained: 0,
        }
    }

    /// Lends a record, empty.
    pub fn take(&mut self) -> Box<Spill> {
        self.in_use += 1;
        match self.free.pop() {
            Some(s) => {
                self.retained -= held(&s);
                s
            }
            None => {
                self.allocated += 1;
                Box::default()
            }
        }
    }

    /// Takes a record back (its contents are dropped).
    pub fn give(&mut self, mut spill: Box<Spill>) {
        self.in_use -= 1;
        if self.free.len() >= self.keep {
            return;
        }
        spill.input.clear();
        if spill.input.capacity() > KEEP_CAPACITY {
            spill.input = Vec::new();
        }
        spill.tls_in.clear();
        if spill.tls_in.capacity() > KEEP_CAPACITY {
            spill.tls_in = Vec::new();
        }
        spill.message.clear();
        if spill.message.capacity() > KEEP_CAPACITY {
            spill.message.release();
        }
        spill.out.head = None;
        spill.out.queue.clear();
        // A fresh stage: after a seal the old one may share an allocation with output that
        // was sent long ago (and would keep all of it alive in the free list).
        spill.out.stage = Default::default();
        spill.wire = Default::default();
        spill.out_bytes = 0;
        if self.retained + held(&spill) > RETAIN {
            spill.input = Vec::new();
            spill.tls_in = Vec::new();
            spill.message.release();
        }
        self.retained += held(&spill);
        self.free.push(spill);
    }

    pub fn stats(&self) -> PoolStats {
        PoolStats {
            in_use: self.in_use,
            free: self.free.len(),
            allocated: self.allocated,
        }
    }
}
