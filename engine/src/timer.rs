//! A coarse hashed timer wheel, one per worker.
//!
//! Each connection keeps a two-byte stamp in its record: the low 16 bits of the tick it is
//! filed under (0: not filed). Activity that only pushes a deadline later (every received
//! frame, for the idle and ping clocks) touches nothing here; when the bucket comes round
//! the connection is re-filed at its real deadline. So the cost of a tick is the number of
//! entries in one bucket, never the number of idle connections with nothing due.
//!
//! Memory: an entry is the low 16 bits of the connection's slab key (2 bytes; the chunk
//! holding it names the key's upper bits, and the record's stamp tells a live entry from a
//! stale one, so no generation is stored). Buckets are chains of fixed-size chunks from one
//! arena with a free list, so a bucket emptied by a tick hands its memory to the buckets
//! filled by the re-filing: the wheel holds about its live entries plus one partly filled
//! chunk per non-empty bucket and key page, never a doubled vector per bucket.

/// Buckets in the wheel (a power of two dividing 65,536, so a 16-bit stamp names the
/// bucket). With 250 ms ticks one lap is 128 s; a connection is filed at most
/// [`HORIZON`] ticks ahead and re-filed when that bucket comes round.
pub(crate) const BUCKETS: usize = 512;

/// The furthest ahead a connection is filed: within one lap, so a bucket never holds an
/// entry for a later lap and a visit needs no lap count.
pub(crate) const HORIZON: u32 = BUCKETS as u32 - 1;

/// Entries per chunk: a chunk (keys, length, key page, link) is 512 bytes.
pub(crate) const CHUNK: usize = 252;

/// Chunks per block of the arena: blocks are allocated whole (8 KiB) and never moved, so
/// growing the arena copies nothing and leaves no freed copies behind in the heap (a
/// doubling vector would); at most one block is partly used.
const BLOCK: usize = 16;

/// Entries a worker visits per turn of its run loop (a visit may send a ping). A tick
/// whose bucket holds more is finished over the next turns, with I/O polled in between:
/// the run loop never stalls on one bucket, and the pings of one turn, each holding a
/// spill record (and on io_uring a send record) until it is written, stay few; those
/// records are kept by their pools at their peak. Measured with c10m at 200,000
/// connections (pings during the ramp): 256 per turn left 72-74 B/conn on io_uring, 64
/// left 60-61 B; a turn's poll costs ~1 us against 64 pings of ~12 us each.
pub(crate) const TURN_BUDGET: usize = 64;

/// No chunk.
const NIL: u32 = u32::MAX;

/// A piece of a bucket's chain: keys of one 65,536-key page.
#[derive(Debug, Clone, Copy)]
struct Chunk {
    /// Low 16 bits of the slab keys.
    keys: [u16; CHUNK],
    len: u16,
    /// Upper 16 bits of the slab keys.
    page: u16,
    next: u32,
}

const _: () = assert!(size_of::<Chunk>() == 512);
const _: () = assert!(65_536 % BUCKETS == 0);

/// Filed connections by deadline tick.
#[derive(Debug)]
pub(crate) struct Wheel {
    /// Every chunk ever used, in blocks; free ones are chained from `free`. Grows to the
    /// peak number of entries and stays (a freed chunk is reused, not returned).
    #[allow(clippy::vec_box)] // boxed so that adding a block never moves the others
    blocks: Vec<Box<[Chunk; BLOCK]>>,
    /// Chunks handed out so far.
    used: u32,
    free: u32,
    /// First chunk of each bucket's chain (chunks of any key page), or [`NIL`].
    heads: Box<[u32; BUCKETS]>,
    /// Per key page (slab key >> 16) and bucket, at `page * BUCKETS + bucket`, the chunk
    /// being filled, or [`NIL`]. One page serves a worker's first 65,536 connections.
    filling: Vec<u32>,
    /// Entries across all buckets, including stale ones not yet swept.
    len: usize,
}

/// A block of blank chunks.
fn new_block() -> Box<[Chunk; BLOCK]> {
    Box::new(
        [Chunk {
            keys: [0; CHUNK],
            len: 0,
            page: 0,
            next: NIL,
        }; BLOCK],
    )
}

/// A bucket's chain, detached by [`Wheel::take`] and drained with [`Wheel::next_batch`].
#[derive(Debug)]
pub(crate) struct Taken(u32);

impl Taken {
    /// Nothing taken.
    pub const NONE: Taken = Taken(NIL);

    /// The bucket held nothing, or all of it was drained.
    pub fn is_empty(&self) -> bool {
        self.0 == NIL
    }
}

impl Default for Wheel {
    fn default() -> Self {
        Wheel {
            blocks: Vec::new(),
            used: 0,
            free: NIL,
            heads: Box::new([NIL; BUCKETS]),
            filling: Vec::new(),
            len: 0,
        }
    }
}

/// The record stamp of tick `at`: its low 16 bits, 0 meaning "not filed".
pub(crate) fn stamp(at: u32) -> u16 {
    at as u16
}

/// The tick a stamp names, given the current tick `now`: filed ticks are within a lap of
/// `now` (ahead, or behind while a late `advance` catches up), far inside 16 bits.
pub(crate) fn filed_tick(stamp: u16, now: u32) -> u32 {
    now.wrapping_add(stamp.wrapping_sub(now as u16) as i16 as i32 as u32)
}

/// Whether a record stamped `stamp` is filed in the bucket of tick `t`.
pub(crate) fn in_bucket(stamp: u16, t: u32) -> bool {
    stamp != 0 && stamp as usize % BUCKETS == t as usize % BUCKETS
}

/// The tick to file a deadline `due` at: within the horizon, after `now`, and not one
/// whose stamp would read as "not filed" (then one tick earlier if that is still ahead,
/// else one later).
pub(crate) fn filing_tick(due: u32, now: u32) -> u32 {
    let at = due.clamp(now + 1, now + HORIZON);
    if stamp(at) != 0 {
        at
    } else if at - 1 > now {
        at - 1
    } else {
        at + 1
    }
}

impl Wheel {
    /// Files connection `key` under tick `at`.
    #[inline]
    pub fn insert(&mut self, at: u32, key: u32) {
        let b = at as usize % BUCKETS;
        let fill = (key >> 16) as usize * BUCKETS + b;
        if fill >= self.filling.len() {
            self.filling.resize(fill - b + BUCKETS, NIL);
        }
        let mut c = self.filling[fill];
        if c == NIL || self.chunk(c).len as usize == CHUNK {
            c = self.alloc((key >> 16) as u16, self.heads[b]);
            self.heads[b] = c;
            self.filling[fill] = c;
        }
        let chunk = self.chunk(c);
        chunk.keys[chunk.len as usize] = key as u16;
        chunk.len += 1;
        self.len += 1;
    }

    #[inline]
    fn chunk(&mut self, i: u32) -> &mut Chunk {
        &mut self.blocks[i as usize / BLOCK][i as usize % BLOCK]
    }

    /// A chunk of key page `page`, empty, linked in front of `next`.
    fn alloc(&mut self, page: u16, next: u32) -> u32 {
        let i = if self.free != NIL {
            let i = self.free;
            self.free = self.chunk(i).next;
            i
        } else {
            if self.used as usize == self.blocks.len() * BLOCK {
                self.blocks.push(new_block());
            }
            self.used += 1;
            self.used - 1
        };
        let c = self.chunk(i);
        c.len = 0;
        c.page = page;
        c.next = next;
        i
    }

    /// Detaches the chain of tick `at`'s bucket. Entries filed meanwhile (re-filing a lap
    /// on lands in the same bucket) start a new chain, visited next lap.
    pub fn take(&mut self, at: u32) -> Taken {
        let b = at as usize % BUCKETS;
        for fill in self.filling.iter_mut().skip(b).step_by(BUCKETS) {
            *fill = NIL;
        }
        Taken(std::mem::replace(&mut self.heads[b], NIL))
    }

    /// Moves up to `max` keys of a taken chain into `out` (from its first chunk, which is
    /// freed once empty); returns how many (0 once the chain is drained). Copying out lets
    /// the caller re-file entries, into this wheel, while it visits them.
    pub fn next_batch(&mut self, taken: &mut Taken, out: &mut [u32; CHUNK], max: usize) -> usize {
        if taken.0 == NIL {
            return 0;
        }
        let i = taken.0;
        let free = self.free;
        let c = self.chunk(i);
        let n = (c.len as usize).min(max);
        let rest = c.len as usize - n;
        let page = (c.page as u32) << 16;
        for (o, &k) in out.iter_mut().zip(&c.keys[rest..rest + n]) {
            *o = page | k as u32;
        }
        c.len = rest as u16;
        if rest == 0 {
            taken.0 = c.next;
            c.next = free;
            self.free = i;
        }
        self.len -= n;
        n
    }

    /// Whether anything is filed.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Entries filed, stale ones included.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Bytes the wheel has touched: its peak of entries, in chunks, and the bucket heads.
    pub fn bytes(&self) -> usize {
        self.used as usize * size_of::<Chunk>() + (BUCKETS + self.filling.len()) * 4
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(w: &mut Wheel, at: u32) -> Vec<u32> {
        let mut taken = w.take(at);
        let mut out = [0; CHUNK];
        let mut keys = Vec::new();
        loop {
            let n = w.next_batch(&mut taken, &mut out, 100);
            if n == 0 {
                return keys;
            }
            keys.extend_from_slice(&out[..n]);
        }
    }

    #[test]
    fn buckets_keep_their_entries_across_chunks() {
        let mut w = Wheel::default();
        for k in 0..1_000 {
            w.insert(7, k);
        }
        w.insert(8, 5_000);
        assert_eq!(w.len(), 1_001);
        let mut keys = drain(&mut w, 7);
        keys.sort_unstable();
        assert_eq!(keys, (0..1_000).collect::<Vec<_>>());
        assert_eq!(drain(&mut w, 8), vec![5_000]);
        assert!(w.is_empty());
        assert!(drain(&mut w, 7).is_empty());
    }

    #[test]
    fn keys_of_every_page_come_back_whole() {
        let mut w = Wheel::default();
        let keys: Vec<u32> = (0..3_000u32)
            .map(|i| i.wrapping_mul(2_654_435_761) % 300_000)
            .collect();
        for &k in &keys {
            w.insert(9, k);
        }
        let mut back = drain(&mut w, 9);
        back.sort_unstable();
        let mut want = keys.clone();
        want.sort_unstable();
        assert_eq!(back, want);
        // Five pages of keys, each filling its own chunks.
        assert_eq!(w.filling.len(), 5 * BUCKETS);
        assert!(w.is_empty());
    }

    #[test]
    fn freed_chunks_are_reused() {
        let mut w = Wheel::default();
        for round in 0..100u32 {
            for k in 0..1_000 {
                w.insert(round, k);
            }
            assert_eq!(drain(&mut w, round).len(), 1_000);
        }
        // One bucket's worth of chunks, however many rounds went through.
        assert_eq!(w.used as usize, 1_000usize.div_ceil(CHUNK));
    }

    #[test]
    fn refiling_into_the_taken_bucket_starts_a_new_chain() {
        let mut w = Wheel::default();
        w.insert(3, 1);
        let mut taken = w.take(3);
        w.insert(3 + BUCKETS as u32, 2);
        let mut out = [0; CHUNK];
        assert_eq!(w.next_batch(&mut taken, &mut out, CHUNK), 1);
        assert_eq!(out[0], 1);
        assert_eq!(w.next_batch(&mut taken, &mut out, CHUNK), 0);
        assert_eq!(drain(&mut w, 3), vec![2]);
    }

    #[test]
    fn stamps_name_ticks_within_a_lap() {
        for now in [1u32, 100, 65_535, 65_536, 65_537, 1 << 20, u32::MAX / 4] {
            for ahead in [1u32, 2, 120, HORIZON] {
                let at = filing_tick(now + ahead, now);
                assert!(at > now && at <= now + HORIZON + 1);
                let s = stamp(at);
                assert_ne!(s, 0, "a filed stamp never reads as unfiled");
                assert_eq!(filed_tick(s, now), at);
                assert!(in_bucket(s, at) && !in_bucket(s, at + 1));
                // While a late advance catches up, `now` is behind the filed tick's bucket.
                assert_eq!(filed_tick(s, at - 1), at);
            }
        }
        assert!(!in_bucket(0, 0));
        // A deadline whose low 16 bits are 0 is filed a tick early (or late if that is now).
        assert_eq!(filing_tick(65_536, 65_400), 65_535);
        assert_eq!(filing_tick(70_000, 65_400), 65_400 + HORIZON);
        assert_eq!(filing_tick(65_536, 65_535), 65_537);
    }
}
