//! The bounded queue between publishing threads and the bridge: encoded PUBLISH
//! commands, bounded in count and bytes, with a drop policy when full.
//!
//! A mutex around a `VecDeque`: a push is a short critical section (no allocation inside
//! it unless the deque grows), and the bridge takes whole batches under one lock.

use std::collections::VecDeque;
use std::sync::Mutex;

use crate::options::DropPolicy;

/// What one queued message costs beyond its bytes (the `Vec` header in the deque).
pub const ENTRY_BYTES: usize = size_of::<Vec<u8>>();

/// What a push did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pushed {
    /// Queued; `evicted` older messages were dropped to make room.
    Queued { evicted: u64 },
    /// Refused: the queue is full (drop-newest), or the message alone exceeds the bounds.
    Full,
}

#[derive(Default)]
struct Inner {
    items: VecDeque<Vec<u8>>,
    bytes: usize,
}

pub(crate) struct Queue {
    inner: Mutex<Inner>,
    max_items: usize,
    max_bytes: usize,
    policy: DropPolicy,
}

impl Queue {
    pub fn new(max_items: usize, max_bytes: usize, policy: DropPolicy) -> Queue {
        Queue {
            inner: Mutex::default(),
            max_items,
            max_bytes,
            policy,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic elsewhere while holding the lock leaves the deque consistent.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn push(&self, item: Vec<u8>) -> Pushed {
        let cost = item.len() + ENTRY_BYTES;
        if cost > self.max_bytes || self.max_items == 0 {
            return Pushed::Full;
        }
        let mut q = self.lock();
        let mut evicted = 0;
        while q.items.len() >= self.max_items || q.bytes + cost > self.max_bytes {
            match self.policy {
                DropPolicy::DropNewest => return Pushed::Full,
                DropPolicy::DropOldest => {
                    let old = q.items.pop_front().expect("full, so not empty");
                    q.bytes -= old.len() + ENTRY_BYTES;
                    evicted += 1;
                }
            }
        }
        q.bytes += cost;
        q.items.push_back(item);
        Pushed::Queued { evicted }
    }

    /// Moves messages into `out` in order while `out` stays under `budget` bytes (at
    /// least one if any is waiting and `out` is empty); returns how many.
    pub fn take_into(&self, out: &mut Vec<u8>, budget: usize) -> u64 {
        let mut q = self.lock();
        let mut n = 0;
        while let Some(front) = q.items.front() {
            if !out.is_empty() && out.len() + front.len() > budget {
                break;
            }
            let item = q.items.pop_front().expect("checked");
            q.bytes -= item.len() + ENTRY_BYTES;
            out.extend_from_slice(&item);
            n += 1;
        }
        n
    }

    /// Messages and bytes waiting.
    pub fn len(&self) -> (u64, u64) {
        let q = self.lock();
        (q.items.len() as u64, q.bytes as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_and_policies() {
        let q = Queue::new(3, 1 << 20, DropPolicy::DropNewest);
        for i in 0..3u8 {
            assert_eq!(q.push(vec![i]), Pushed::Queued { evicted: 0 });
        }
        assert_eq!(q.push(vec![9]), Pushed::Full);
        let mut out = Vec::new();
        assert_eq!(q.take_into(&mut out, 1 << 20), 3);
        assert_eq!(out, [0, 1, 2]);

        let q = Queue::new(3, 1 << 20, DropPolicy::DropOldest);
        for i in 0..5u8 {
            q.push(vec![i]);
        }
        assert_eq!(q.len().0, 3);
        let mut out = Vec::new();
        q.take_into(&mut out, 1 << 20);
        assert_eq!(out, [2, 3, 4], "the oldest went");

        // Byte bound: three 100-byte items do not fit in 250 + entry overhead.
        let q = Queue::new(100, 2 * (100 + ENTRY_BYTES) + 10, DropPolicy::DropNewest);
        assert!(matches!(q.push(vec![0; 100]), Pushed::Queued { .. }));
        assert!(matches!(q.push(vec![0; 100]), Pushed::Queued { .. }));
        assert_eq!(q.push(vec![0; 100]), Pushed::Full);
        assert!(q.len().1 <= 2 * (100 + ENTRY_BYTES) as u64 + 10);
        assert_eq!(q.push(vec![0; 1000]), Pushed::Full, "larger than the bound");
        // A budget stops the take, but at least one goes into an empty buffer.
        let mut out = Vec::new();
        assert_eq!(q.take_into(&mut out, 50), 1);
        assert_eq!(q.take_into(&mut out, 50), 0);
    }
}
