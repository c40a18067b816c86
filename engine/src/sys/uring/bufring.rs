//! The worker's provided-buffer ring: receive buffers the kernel picks from when data
//! arrives, so a connection owns no buffer while it waits. A buffer goes back to the ring
//! as soon as the core has consumed its bytes (the core copies an incomplete frame's tail).
//!
//! With incremental consumption (`IOU_PBUF_RING_INC`, Linux 6.12+) a receive takes only
//! the bytes it needs from the current buffer and later receives continue in it, so a
//! burst of small messages from many connections shares a few buffers instead of taking
//! one whole buffer each.

use std::io;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::IoUring;
use io_uring::types::BufRingEntry;

/// `IOU_PBUF_RING_INC`: consume buffers incrementally.
pub const RING_INC: u16 = 2;
/// `IORING_CQE_F_BUF_MORE`: the kernel keeps using this buffer (incremental mode).
pub const CQE_BUF_MORE: u32 = 16;
/// The buffer group id the backend's receives select from.
pub const GROUP: u16 = 0;

/// An anonymous private mapping, unmapped on drop.
struct Mapping {
    ptr: *mut u8,
    len: usize,
}

impl Mapping {
    /// Populated up front: the buffers are a fixed cost of the worker, paid at start-up
    /// rather than faulted in by the first connections (which would make them look like
    /// a cost per connection).
    fn new(len: usize) -> io::Result<Mapping> {
        // SAFETY: anonymous private mapping with no address hint; the result is checked.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Mapping {
            ptr: ptr.cast(),
            len,
        })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` came from a successful mmap and nothing refers to it now
        // (the ring that used it is gone or never saw it).
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

/// A registered ring of `entries` buffers of `size` bytes each.
pub struct BufRing {
    ring: Mapping,
    mem: Mapping,
    entries: u16,
    size: u32,
    /// Our copy of the tail; published to the kernel by [`BufRing::publish`].
    tail: u16,
    /// Bytes of each buffer already handed out (incremental mode).
    used: Box<[u32]>,
    incremental: bool,
    /// The buffers that circulate are `0..active`; one above it that comes back is
    /// parked instead of going back to the ring (incremental mode only; all otherwise).
    active: u16,
    /// The least `active` may fall to.
    min_active: u16,
    /// Buffers in the ring that no receive has started yet (incremental mode).
    free: u16,
    /// The fewest `free` seen since the last resize check.
    low: u16,
    /// Claims since the last resize check.
    claims: u32,
    /// Buffers at or above `active` that came back and wait outside the ring.
    parked: Box<[bool]>,
}

/// Claims between two checks of whether the ring could circulate fewer buffers.
const RESIZE_EVERY: u32 = 4096;

impl BufRing {
    /// Maps, registers and fills a ring. `entries` must be a power of two; with
    /// incremental consumption only `min_active` of them circulate at first (see
    /// [`BufRing::claim`]).
    pub fn new(
        uring: &IoUring,
        entries: u16,
        size: u32,
        flags: u16,
        min_active: u16,
    ) -> io::Result<BufRing> {
        assert!(entries.is_power_of_two());
        let ring = Mapping::new(entries as usize * size_of::<BufRingEntry>())?;
        let mem = Mapping::new(entries as usize * size as usize)?;
        // SAFETY: the ring mapping is page-aligned, sized for `entries` entries, and lives
        // in this BufRing, which the backend drops only after the io_uring instance (field
        // order), so the kernel never sees it unmapped while registered.
        unsafe {
            uring.submitter().register_buf_ring_with_flags(
                ring.ptr as u64,
                entries,
                GROUP,
                flags,
            )?;
        }
        let incremental = flags & RING_INC != 0;
        let min_active = if incremental {
            min_active.clamp(1, entries)
        } else {
            entries
        };
        let mut b = BufRing {
            ring,
            mem,
            entries,
            size,
            tail: 0,
            used: vec![0; entries as usize].into_boxed_slice(),
            incremental,
            active: min_active,
            min_active,
            free: 0,
            low: u16::MAX,
            claims: 0,
            parked: vec![false; entries as usize].into_boxed_slice(),
        };
        for bid in 0..entries {
            b.give(bid);
        }
        b.publish();
        Ok(b)
    }

    /// Buffers that circulate now.
    pub fn active(&self) -> usize {
        self.active as usize
    }

    /// Bytes per buffer.
    pub fn size(&self) -> usize {
        self.size as usize
    }

    /// Number of buffers.
    pub fn entries(&self) -> usize {
        self.entries as usize
    }

    /// Accounts for the `len` bytes a receive completion put in buffer `bid`; returns
    /// where in the buffer they start.
    ///
    /// Why only some buffers circulate: the kernel takes buffers in ring order and each
    /// goes back to the tail, so every buffer in the ring is written once per lap. With
    /// all 64 x 64 KiB in the ring a lap is 4 MiB, as large as this machine's L2 cache,
    /// and the core unmasked and copied 16 KiB messages the kernel had written a lap
    /// before, out of cache. So the ring circulates the fewest buffers that keep it from
    /// running dry: more as soon as fewer than a quarter of those circulating are left
    /// unstarted (or a receive found none), fewer when a long stretch never used half.
    /// The circulating set is always the lowest buffer ids, so that buffers that follow
    /// each other in memory mostly follow each other in the ring too
    /// ([`BufRing::continues`]).
    #[inline(always)]
    pub fn claim(&mut self, bid: u16, len: usize) -> u32 {
        let (size, index) = (self.size, self.slot(bid) as usize);
        let used = &mut self.used[index];
        let start = (*used).min(size);
        if self.incremental {
            *used = (start + len as u32).min(size);
            if start == 0 {
                self.started();
            }
        }
        start
    }

    /// The index of buffer id `bid` (the kernel only posts ids below `entries`; masking
    /// rather than `%` because `entries` is a power of two and a division costs ~25 cycles
    /// on every receive).
    #[inline(always)]
    fn slot(&self, bid: u16) -> u16 {
        bid & (self.entries - 1)
    }

    /// A receive started a buffer from the ring: once per buffer, not per receive, so it
    /// stays out of line and `claim` stays small enough to inline.
    #[inline(never)]
    fn started(&mut self) {
        self.free = self.free.saturating_sub(1);
        self.low = self.low.min(self.free);
        if self.free < self.active.div_ceil(4) && self.active < self.entries {
            self.grow(self.active / 2);
        }
        self.claims += 1;
        if self.claims >= RESIZE_EVERY {
            self.shrink_if_idle();
        }
    }

    /// A receive found the ring empty: circulate twice as many.
    pub fn ran_dry(&mut self) {
        if self.incremental && self.active < self.entries {
            self.grow(self.active);
        }
    }

    /// Circulates `more` buffers more (at least one), giving back the parked ones among
    /// them.
    #[cold]
    fn grow(&mut self, more: u16) {
        let next = (self.active as u32 + more.max(1) as u32).min(self.entries as u32) as u16;
        let from = self.active;
        self.active = next;
        for bid in from..next {
            if self.parked[bid as usize] {
                self.parked[bid as usize] = false;
                self.give(bid);
            }
        }
    }

    /// After [`RESIZE_EVERY`] claims: if the ring never had fewer than half of its
    /// circulating buffers unstarted, circulate fewer (buffers above the new mark are
    /// parked as they come back).
    #[cold]
    fn shrink_if_idle(&mut self) {
        if self.low > self.active / 2 {
            let fewer = self.low / 2;
            self.active = self.active.saturating_sub(fewer).max(self.min_active);
        }
        self.claims = 0;
        self.low = u16::MAX;
    }

    /// The bytes of a claimed range.
    ///
    /// The kernel wrote them before posting the completion and writes this range again
    /// only after the buffer is given back, so the core may read and unmask in place.
    pub fn bytes(&mut self, bid: u16, start: u32, len: usize) -> &mut [u8] {
        let bid = self.slot(bid) as usize;
        let start = start.min(self.size) as usize;
        let len = len.min(self.size as usize - start);
        self.claimed(bid * self.size as usize + start, len)
    }

    /// Whether a claimed range that ends buffer `bid` is continued by buffer `next`
    /// claimed from its start: the two ranges are one run of the mapping. Buffers go back
    /// to the ring in the order the kernel used them, so one connection's next receive
    /// after a buffer ran out usually lands at the start of the buffer that follows it.
    pub fn continues(&self, bid: u16, start: u32, len: usize, next: u16) -> bool {
        let bid = self.slot(bid);
        self.incremental
            && self.ends(start, len)
            && next < self.entries
            && next == bid + 1
            && self.used[next as usize] == 0
    }

    /// Whether a claimed range runs to the end of its buffer.
    #[inline]
    pub fn ends(&self, start: u32, len: usize) -> bool {
        start as usize + len == self.size as usize
    }

    /// The bytes of a claimed range that may run on into the following buffers, each of
    /// them claimed from its start for the rest of `len` ([`BufRing::continues`]).
    ///
    /// As [`BufRing::bytes`]: the kernel writes none of the range until those buffers
    /// are given back.
    pub fn bytes_across(&mut self, bid: u16, start: u32, len: usize) -> &mut [u8] {
        let bid = self.slot(bid) as usize;
        let offset = bid * self.size as usize + start.min(self.size) as usize;
        self.claimed(offset, len.min(self.mem.len - offset))
    }

    /// `len` bytes of the mapping at `offset`, a claimed range its callers clamped to
    /// the mapping (one buffer for [`BufRing::bytes`]).
    #[inline(always)]
    fn claimed(&mut self, offset: usize, len: usize) -> &mut [u8] {
        debug_assert!(offset + len <= self.mem.len);
        // SAFETY: `offset + len` lies within the mapping (both callers clamp to it); the
        // range was claimed (the kernel wrote it before posting its completions and writes
        // it again only after `give`), and the borrow of `self` keeps any other slice of
        // the mapping from coexisting.
        unsafe { std::slice::from_raw_parts_mut(self.mem.ptr.add(offset), len) }
    }

    /// Whether the kernel is done with the buffer this completion used.
    pub fn finished(&self, cqe_flags: u32) -> bool {
        !self.incremental || cqe_flags & CQE_BUF_MORE == 0
    }

    /// Puts buffer `bid` back at the tail (visible to the kernel after `publish`), or
    /// parks it if it is above those circulating.
    pub fn give(&mut self, bid: u16) {
        let bid = self.slot(bid);
        self.used[bid as usize] = 0;
        if bid >= self.active {
            self.parked[bid as usize] = true;
            return;
        }
        // Only incremental rings count their unstarted buffers (`claim` uncounts them);
        // a whole-buffer ring gives back forever and would overflow the count.
        if self.incremental {
            self.free += 1;
        }
        let index = (self.tail & (self.entries - 1)) as usize;
        // SAFETY: `index` < entries, so the entry lies in the ring mapping; the kernel only
        // reads entries between its head and the published tail, and this one is past it.
        let entry = unsafe { &mut *(self.ring.ptr as *mut BufRingEntry).add(index) };
        entry.set_addr(self.mem.ptr as u64 + bid as u64 * self.size as u64);
        entry.set_len(self.size);
        entry.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    /// Makes the buffers given back so far visible to the kernel.
    pub fn publish(&self) {
        // SAFETY: the tail field lives in the first entry of the ring mapping; the kernel
        // reads it concurrently, hence the atomic store with release ordering (the entries
        // written before it must be visible first).
        unsafe {
            let tail = BufRingEntry::tail(self.ring.ptr as *const BufRingEntry) as *mut u16;
            (*(tail as *const AtomicU16)).store(self.tail, Ordering::Release);
        }
    }
}
