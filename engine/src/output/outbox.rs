//! A connection's output that the backend has not taken yet, in order.

use std::collections::VecDeque;
use std::io::IoSlice;

use bytes::{Buf, Bytes, BytesMut};

use super::arena::Piece;

/// Output of one connection that the backend has not taken yet: a direct piece staged
/// before the outbox was needed, shared buffers, then the bytes staged this turn (small
/// frames copied back to back, so a turn's replies to one connection cost one buffer and
/// one iovec).
#[derive(Debug, Default)]
pub struct Outbox {
    /// Oldest: an arena piece that was to leave alone and was joined by later output.
    pub head: Option<Piece>,
    /// Whole buffers, in order: sealed stages and shared frames (a publish's one encoding).
    pub queue: VecDeque<Bytes>,
    /// Frames staged since the last seal; they go after `queue`.
    pub stage: BytesMut,
}

/// Spare capacity a stage keeps after a seal (see [`Outbox::seal`]).
const MIN_REUSE: usize = 4 << 10;

/// iovecs per vectored write.
pub const IOV_BATCH: usize = 64;

impl Outbox {
    /// Nothing waits.
    pub fn is_empty(&self) -> bool {
        self.head.is_none() && self.queue.is_empty() && self.stage.is_empty()
    }

    /// Moves the staged bytes to the end of the queue as one shared buffer (before a
    /// shared frame is queued after them, or before a backend takes ownership).
    ///
    /// The split leaves `stage` with the rest of the same allocation (reused for the next
    /// frames); when little is left, `stage` lets go of it, so the sealed buffer's memory
    /// is freed with the buffer rather than pinned by an empty stage.
    pub fn seal(&mut self) {
        if !self.stage.is_empty() {
            self.queue.push_back(self.stage.split().freeze());
            if self.stage.capacity() < MIN_REUSE {
                self.stage = BytesMut::new();
            }
        }
    }

    /// Fills `iov` with the waiting bytes in order; returns how many slices and bytes.
    pub fn slices<'a>(&'a self, iov: &mut [IoSlice<'a>; IOV_BATCH]) -> (usize, usize) {
        let mut n = 0;
        let mut bytes = 0;
        let stage = (!self.stage.is_empty()).then_some(&self.stage[..]);
        let head = self.head.as_ref().map(|p| p.as_slice());
        for b in head
            .into_iter()
            .chain(self.queue.iter().map(|b| &b[..]))
            .chain(stage)
        {
            if n == IOV_BATCH {
                break;
            }
            iov[n] = IoSlice::new(b);
            bytes += b.len();
            n += 1;
        }
        (n, bytes)
    }

    /// Drops `n` written bytes from the front.
    pub fn consume(&mut self, mut n: usize) {
        if let Some(head) = self.head.as_mut() {
            let k = n.min(head.len());
            head.advance(k);
            n -= k;
            if head.is_empty() {
                self.head = None;
            }
        }
        while n > 0 {
            let Some(front) = self.queue.front_mut() else {
                self.stage.advance(n);
                break;
            };
            if front.len() <= n {
                n -= front.len();
                self.queue.pop_front();
            } else {
                front.advance(n);
                n = 0;
            }
        }
        if self.stage.is_empty() {
            // Back to the start of the allocation for the next turn.
            self.stage.clear();
        }
    }
}
