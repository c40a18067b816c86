//! Limits that protect a worker from its peers, beyond the protocol's own: connections per
//! peer address (shared by all workers), a message rate per connection, the memory of
//! connections still in their handshake, and the output a worker buffers in all. Each is
//! off or generous by default, costs nothing while off, and is documented in `Config`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

use throng_protocol::CloseCode;

use super::Core;
use crate::topics::KeyMap;

/// Connections per peer address, counted across every worker of a server. Touched once
/// per accept and once per close of a connection that was counted (never per message);
/// sharded so workers accepting at once rarely meet on one lock.
#[derive(Debug)]
pub(crate) struct PerIp {
    limit: u32,
    shards: Box<[Mutex<HashMap<IpAddr, u32>>]>,
}

const SHARDS: usize = 16;

/// Bytes freed after which a quiet worker asks the allocator to return memory.
const TRIM_AFTER: usize = 16 << 20;
/// Bytes freed after which a worker that no longer holds any handshake head or buffered
/// output trims too: the tail of an attack that ends gradually (slowloris heads cut one
/// by one by the handshake timeout) frees less than [`TRIM_AFTER`] after the last trim,
/// and that tail would otherwise stay resident for good.
const TRIM_AT_REST: usize = 1 << 20;

/// Returns free heap memory to the system (glibc's `malloc_trim`; nothing elsewhere).
fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[allow(unsafe_code)]
    // SAFETY: malloc_trim only walks the allocator's own free lists; it is thread-safe.
    unsafe {
        libc::malloc_trim(0);
    }
}

impl PerIp {
    pub fn new(limit: u32) -> Self {
        PerIp {
            limit,
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    fn shard(&self, ip: &IpAddr) -> &Mutex<HashMap<IpAddr, u32>> {
        let h = match ip {
            IpAddr::V4(a) => u32::from(*a) as usize,
            IpAddr::V6(a) => (u128::from(*a) ^ (u128::from(*a) >> 64)) as usize,
        };
        &self.shards[h.wrapping_mul(0x9E37_79B9) >> 7 & (SHARDS - 1)]
    }

    /// Counts a connection from `ip`; false (and nothing counted) if it is at the limit.
    fn admit(&self, ip: IpAddr) -> bool {
        let mut map = self.shard(&ip).lock().unwrap_or_else(|p| p.into_inner());
        let n = map.entry(ip).or_insert(0);
        if *n >= self.limit {
            return false;
        }
        *n += 1;
        true
    }

    fn release(&self, ip: IpAddr) {
        let mut map = self.shard(&ip).lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&ip);
            }
        }
    }
}

/// A connection's token bucket, kept only while it is not full.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bucket {
    generation: u32,
    /// Tokens, in thousandths of a message.
    milli: u64,
    /// The tick the bucket was last refilled.
    at: u32,
}

/// The message rate per connection: `per_tick` thousandths of a message are added per
/// timer tick, up to `burst` messages.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rate {
    pub per_tick_milli: u64,
    pub burst_milli: u64,
}

/// What the core keeps for the limits.
#[derive(Debug, Default)]
pub(crate) struct Guards {
    /// Peer address of each counted connection (only with a per-address limit).
    pub ip_of: KeyMap<(u32, IpAddr)>,
    /// Buckets of connections that sent faster than they refill.
    pub buckets: KeyMap<Bucket>,
    /// Bytes all connections of the worker have stashed while handshaking.
    pub stashed: usize,
    /// Bytes of output the worker buffers for all its connections (counted in spills).
    pub buffered: usize,
    /// Bytes of large buffers given back since the allocator was last asked to return
    /// free memory to the system (see [`Core::trim_memory`]).
    pub freed: usize,
    /// A quiet turn has seen `freed` over the threshold: trim at the next one.
    pub trim_armed: bool,
}

impl Guards {
    /// `n` bytes of counted output left (written, or dropped with their connection).
    pub fn output_gone(&mut self, n: usize) {
        self.buffered -= n.min(self.buffered);
        self.freed += n;
    }

    /// A buffer of `bytes` was freed (a large message's assembly).
    pub fn buffer_freed(&mut self, bytes: usize) {
        self.freed += bytes;
    }
}

impl<S> Core<S> {
    /// The per-address limit for a new connection: false when its address is at the
    /// limit (the caller answers 429 and closes).
    pub(super) fn admit_peer(&mut self, key: usize) -> bool {
        let Some(per_ip) = self.peers.per_ip.as_ref() else {
            return true;
        };
        let Ok(addr) = self.peer_addr(key) else {
            return true; // no address (not TCP): nothing to count
        };
        let ip = addr.ip();
        if !per_ip.admit(ip) {
            return false;
        }
        let generation = self.conns[key].generation;
        self.guards.ip_of.insert(key as u32, (generation, ip));
        true
    }

    /// The connection in `key` is going: release what the limits counted for it.
    pub(super) fn release_guards(&mut self, key: usize, generation: u32, buffered: usize) {
        self.guards.output_gone(buffered);
        if !self.guards.ip_of.is_empty()
            && let Some((g, ip)) = self.guards.ip_of.remove(&(key as u32))
            && g == generation
            && let Some(per_ip) = self.peers.per_ip.as_ref()
        {
            per_ip.release(ip);
        }
        if !self.guards.buckets.is_empty() {
            self.guards.buckets.remove(&(key as u32));
        }
    }

    /// A message arrived on `key`: false when it exceeds the connection's rate (the
    /// connection is then closed with 1008 and the message not delivered).
    #[inline(always)]
    pub(super) fn within_rate(&mut self, key: usize) -> bool {
        match self.limits.rate {
            None => true, // the default: no limit, no call
            Some(rate) => self.within_rate_of(key, rate),
        }
    }

    /// [`Core::within_rate`] with a rate set: the connection's token bucket.
    #[inline(never)]
    fn within_rate_of(&mut self, key: usize, rate: Rate) -> bool {
        let generation = self.conns[key].generation;
        let now = self.now;
        let b = self.guards.buckets.entry(key as u32).or_insert(Bucket {
            generation,
            milli: rate.burst_milli,
            at: now,
        });
        if b.generation != generation {
            *b = Bucket {
                generation,
                milli: rate.burst_milli,
                at: now,
            };
        }
        let refill = u64::from(now.saturating_sub(b.at)) * rate.per_tick_milli;
        b.milli = (b.milli + refill).min(rate.burst_milli);
        b.at = now;
        if b.milli < 1000 {
            self.stats.rate_limited += 1;
            self.close(key, CloseCode::POLICY, "message rate limit");
            return false;
        }
        b.milli -= 1000;
        true
    }

    /// Drops the buckets that have refilled: a connection that keeps to its rate costs
    /// nothing between bursts. Called from the timer path once per lap of buckets.
    pub(super) fn sweep_buckets(&mut self) {
        let Some(rate) = self.limits.rate else {
            return;
        };
        let now = self.now;
        self.guards.buckets.retain(|_, b| {
            let refill = u64::from(now.saturating_sub(b.at)) * rate.per_tick_milli;
            b.milli + refill < rate.burst_milli
        });
    }

    /// A handshaking connection wants to keep `more` bytes of its request head: false
    /// when the worker already holds its limit of such bytes (the caller answers 503).
    pub(super) fn may_stash(&mut self, more: usize) -> bool {
        if self.guards.stashed + more > self.limits.max_handshake_buffer {
            self.stats.handshake_memory_refused += 1;
            return false;
        }
        self.guards.stashed += more;
        true
    }

    /// A handshaking connection no longer keeps `bytes` of its request head.
    pub(super) fn unstash(&mut self, bytes: usize) {
        self.guards.stashed -= bytes.min(self.guards.stashed);
        self.guards.freed += bytes;
    }

    /// Called by the run loop before it sleeps: after a burst of large frees (an attack
    /// of big messages, thousands of slowloris heads), asks the allocator to give free
    /// memory back, so that the process's resident memory returns to about where it was.
    /// glibc keeps freed heap memory for reuse otherwise (its mmap threshold rises after
    /// the first large frees). Never on a busy turn, at most once per 16 MiB freed.
    ///
    /// The trim waits for a second quiet turn in a row: buffers a completion backend still
    /// holds for a closed connection's send are only freed when its completion arrives,
    /// during the wait. Returns whether a trim is pending (the run loop then wakes up for
    /// it soon instead of sleeping indefinitely).
    pub fn trim_memory(&mut self) -> bool {
        let at_rest = self.guards.stashed == 0 && self.guards.buffered == 0;
        let threshold = if at_rest { TRIM_AT_REST } else { TRIM_AFTER };
        if self.guards.freed < threshold {
            self.guards.trim_armed = false;
            return false;
        }
        if !self.guards.trim_armed {
            self.guards.trim_armed = true;
            return true;
        }
        self.guards.freed = 0;
        self.guards.trim_armed = false;
        self.stats.memory_trims += 1;
        trim();
        false
    }

    /// Whether the worker may buffer `len` more bytes of output.
    pub(super) fn worker_has_room(&self, len: usize) -> bool {
        self.guards.buffered + len <= self.limits.max_worker_buffered
    }
}
