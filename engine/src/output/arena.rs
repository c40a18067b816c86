//! The worker's output arena: where a turn's small sends are staged when the connection
//! has nothing else pending, so the common reply (and every delivery of a broadcast) costs
//! no allocation and no atomic. A [`Piece`] is a slice of a [`Chunk`] held through a
//! non-atomic reference count; the chunk is written once, front to back, and reused once
//! no piece refers to it any more (on epoll that is right after the turn's flush; on
//! io_uring once the sends reading from it have completed).
//!
//! A published frame is wrapped once per worker in a chunk of its own that shares the
//! frame's buffer, so each delivery holds it by the same non-atomic count.

use std::cell::Cell;
use std::collections::VecDeque;
use std::rc::Rc;

use bytes::Bytes;

/// Bytes per arena chunk.
pub const CHUNK: usize = 64 << 10;
/// Chunks kept for reuse beyond the current one.
const SPARE: usize = 8;

/// Memory a piece of output can live in.
pub struct Chunk {
    ptr: *mut u8,
    cap: usize,
    /// Bytes written so far; pieces only ever refer to `..filled`.
    filled: Cell<usize>,
    /// Bytes from the front that were ever initialised (written or zeroed): a reused
    /// chunk's front stays initialised, so [`Arena::fill`] zeroes only past this mark.
    init: Cell<usize>,
    own: Own,
}

/// Who owns a chunk's memory.
enum Own {
    /// An arena buffer (the allocation of an empty `Vec` of capacity `cap`), written
    /// through `ptr`. Not zeroed when allocated: a fresh chunk per 64 KiB of a turn's
    /// output (a 16 KiB echo to 100 connections takes 25) cost ~880 of the ~7,100
    /// instructions of each 16 KiB echo in `calloc`'s memset. Only [`Arena::fill`] lends
    /// free room as a slice, and it zeroes what was never initialised first.
    Heap(#[allow(dead_code)] Vec<u8>),
    /// A shared frame, never written.
    Shared(#[allow(dead_code)] Bytes),
}

impl std::fmt::Debug for Chunk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chunk")
            .field("cap", &self.cap)
            .field("filled", &self.filled.get())
            .finish()
    }
}

impl Chunk {
    fn heap(cap: usize) -> Rc<Chunk> {
        let mut v = Vec::<u8>::with_capacity(cap);
        Rc::new(Chunk {
            ptr: v.as_mut_ptr(),
            cap,
            filled: Cell::new(0),
            init: Cell::new(0),
            own: Own::Heap(v),
        })
    }

    fn shared(frame: Bytes) -> Rc<Chunk> {
        Rc::new(Chunk {
            ptr: frame.as_ptr().cast_mut(),
            cap: frame.len(),
            filled: Cell::new(frame.len()),
            init: Cell::new(frame.len()),
            own: Own::Shared(frame),
        })
    }

    fn room(&self) -> usize {
        self.cap - self.filled.get()
    }

    /// Appends `parts` after the written bytes; the caller checked the room.
    fn append(&self, parts: &[&[u8]]) {
        debug_assert!(matches!(self.own, Own::Heap(_)));
        let mut at = self.filled.get();
        for p in parts {
            debug_assert!(at + p.len() <= self.cap);
            // SAFETY: `at + p.len() <= cap` (checked by the caller through `room`), so the
            // destination lies in the chunk's allocation; it is past `filled`, which no
            // piece refers to, so nothing reads it while it is written; `p` is a separate
            // borrow and cannot overlap memory that is not yet handed out.
            unsafe { std::ptr::copy_nonoverlapping(p.as_ptr(), self.ptr.add(at), p.len()) };
            at += p.len();
        }
        self.written_to(at);
    }

    /// The bytes up to `at` are written: pieces may refer to them, and they stay
    /// initialised when the chunk is reused. Every writer ends with this.
    fn written_to(&self, at: usize) {
        self.filled.set(at);
        self.init.set(self.init.get().max(at));
    }

    /// Zeroes `..end` where it was never initialised; the caller checked `end <= cap`.
    fn initialise(&self, end: usize) {
        // `filled <= init` holds (every writer ends with `written_to`).
        debug_assert!(self.filled.get() <= self.init.get());
        let init = self.init.get();
        if end > init {
            debug_assert!(end <= self.cap);
            // SAFETY: `init < end <= cap`, so the range lies in the chunk's allocation;
            // it is past `filled` (`filled <= init`), which no piece refers to.
            unsafe { std::ptr::write_bytes(self.ptr.add(init), 0, end - init) };
            self.init.set(end);
        }
    }
}

/// Bytes of the header of an unmasked frame of `n` payload bytes (as
/// `FrameHead::encoded_len`): 2, 4 or 10.
#[inline]
pub fn header_len(n: usize) -> usize {
    match n {
        0..=125 => 2,
        126..=0xFFFF => 4,
        _ => 10,
    }
}

/// The header of a whole unmasked frame of `n` payload bytes whose first byte is `b0`, in
/// the shortest length form (RFC 6455 5.2), and its length: 2, 4 or 10 bytes.
#[inline]
pub fn short_header(b0: u8, n: usize) -> ([u8; 10], usize) {
    let mut h = [0u8; 10];
    h[0] = b0;
    let hlen = if n <= 125 {
        h[1] = n as u8;
        2
    } else if n <= 0xFFFF {
        h[1] = 126;
        h[2..4].copy_from_slice(&(n as u16).to_be_bytes());
        4
    } else {
        h[1] = 127;
        h[2..10].copy_from_slice(&(n as u64).to_be_bytes());
        10
    };
    (h, hlen)
}

/// A slice of output: `len` bytes at `off` in a chunk it keeps alive.
#[derive(Debug, Clone)]
pub struct Piece {
    chunk: Rc<Chunk>,
    off: u32,
    len: u32,
}

impl Piece {
    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: `off + len <= filled <= cap` from construction (and `advance` only
        // shrinks), so the range lies in the chunk's initialised bytes; the arena never
        // writes below `filled` while a piece exists (it rewinds a chunk only when the
        // arena holds its last reference), and a shared chunk is never written.
        unsafe {
            std::slice::from_raw_parts(self.chunk.ptr.add(self.off as usize), self.len as usize)
        }
    }

    /// Bytes in the piece.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether the piece is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Drops `n` bytes from the front.
    pub fn advance(&mut self, n: usize) {
        let n = n.min(self.len as usize) as u32;
        self.off += n;
        self.len -= n;
    }
}

/// The per-worker arena.
#[derive(Debug)]
pub struct Arena {
    cur: Rc<Chunk>,
    /// Full chunks some piece still refers to (sends in flight), oldest first.
    retired: VecDeque<Rc<Chunk>>,
    spare: Vec<Rc<Chunk>>,
    /// The last frame wrapped, so a publish wraps its frame once, not per delivery.
    frame: Option<Rc<Chunk>>,
}

impl Default for Arena {
    fn default() -> Self {
        Arena {
            cur: Chunk::heap(CHUNK),
            retired: VecDeque::new(),
            spare: Vec::new(),
            frame: None,
        }
    }
}

impl Arena {
    /// Copies `parts` (together at most [`CHUNK`] bytes) into one piece.
    pub fn stage(&mut self, parts: &[&[u8]]) -> Piece {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        debug_assert!(len <= CHUNK);
        self.make_room(len);
        let off = self.cur.filled.get();
        self.cur.append(parts);
        Piece {
            chunk: self.cur.clone(),
            off: off as u32,
            len: len as u32,
        }
    }

    /// One whole unmasked frame as a piece: the header (first byte `b0`, FIN and opcode,
    /// then the shortest length form) written in place, then `payload` (together at most
    /// [`CHUNK`] bytes). The same bytes as [`Arena::stage`] of the header that
    /// `FrameHead::encode` writes and the payload, without the parts slice and with one
    /// copy call instead of two (checked against it by the tests below and in `core`).
    #[inline]
    pub fn stage_frame(&mut self, b0: u8, payload: &[u8]) -> Piece {
        let n = payload.len();
        let hlen = header_len(n);
        let len = hlen + n;
        debug_assert!(len <= CHUNK);
        self.make_room(len);
        let off = self.cur.filled.get();
        debug_assert!(matches!(self.cur.own, Own::Heap(_)));
        debug_assert!(off + len <= self.cur.cap);
        // SAFETY: `off + len <= cap` (`make_room` made the room), so every write below lies
        // in the chunk's allocation (the header's `hlen` bytes, then the payload's `n`);
        // they are past `filled`, which no piece refers to, so nothing reads that memory
        // meanwhile; the header is a local value and `payload` a separate borrow, neither
        // of which can overlap memory not yet handed out. The stores are unaligned writes.
        unsafe {
            let dst = self.cur.ptr.add(off);
            // Constant lengths: one store each, not a call.
            match hlen {
                2 => dst.cast::<[u8; 2]>().write_unaligned([b0, n as u8]),
                4 => dst
                    .cast::<[u8; 4]>()
                    .write_unaligned([b0, 126, (n >> 8) as u8, n as u8]),
                _ => dst
                    .cast::<[u8; 10]>()
                    .write_unaligned(short_header(b0, n).0),
            }
            std::ptr::copy_nonoverlapping(payload.as_ptr(), dst.add(hlen), n);
        }
        self.cur.written_to(off + len);
        Piece {
            chunk: self.cur.clone(),
            off: off as u32,
            len: len as u32,
        }
    }

    /// Makes `len` bytes of room at the current chunk's end.
    #[inline]
    fn make_room(&mut self, len: usize) {
        if Rc::strong_count(&self.cur) == 1 {
            // Nothing refers to it: start again at the front, where the cache is warm.
            self.cur.filled.set(0);
        }
        if self.cur.room() < len {
            self.rotate();
        }
    }

    /// Appends `parts` to `piece` in place when it ends where the arena writes next and
    /// the chunk has room; false otherwise (nothing changed).
    pub fn extend(&mut self, piece: &mut Piece, parts: &[&[u8]]) -> bool {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let ends_here = Rc::ptr_eq(&piece.chunk, &self.cur)
            && (piece.off + piece.len) as usize == self.cur.filled.get();
        if !ends_here || self.cur.room() < len || piece.len() + len > CHUNK {
            return false;
        }
        self.cur.append(parts);
        piece.len += len as u32;
        true
    }

    /// A piece of at most `max` (at most [`CHUNK`]) bytes that `write` fills: it gets the
    /// free room and returns how much it wrote (TLS encrypts a reply straight into it).
    pub fn fill(&mut self, max: usize, write: impl FnOnce(&mut [u8]) -> usize) -> Piece {
        debug_assert!(max <= CHUNK);
        self.make_room(max);
        let off = self.cur.filled.get();
        debug_assert!(matches!(self.cur.own, Own::Heap(_)));
        self.cur.initialise(off + max);
        // SAFETY: `off + max <= cap` (the room was checked), so the range lies in the
        // chunk's allocation, and `..off + max` is initialised (just above; once
        // initialised, bytes are only ever overwritten). It is past `filled`, which no piece refers to, and the slice lives
        // only for the call of `write`, which cannot reach the arena: nothing else reads
        // or writes it meanwhile.
        let room = unsafe { std::slice::from_raw_parts_mut(self.cur.ptr.add(off), max) };
        let len = write(room).min(max);
        self.cur.written_to(off + len);
        Piece {
            chunk: self.cur.clone(),
            off: off as u32,
            len: len as u32,
        }
    }

    /// A piece holding a whole shared frame, without copying it.
    pub fn frame(&mut self, frame: &Bytes) -> Piece {
        let same = self.frame.as_ref().is_some_and(|c| {
            // The cached chunk keeps its buffer alive, so an equal address and length
            // name the same immutable bytes.
            std::ptr::eq(c.ptr.cast_const(), frame.as_ptr()) && c.cap == frame.len()
        });
        if !same {
            self.frame = Some(Chunk::shared(frame.clone()));
        }
        let chunk = self.frame.clone().expect("set above");
        Piece {
            chunk,
            off: 0,
            len: frame.len() as u32,
        }
    }

    /// End of a turn: let go of the last frame and of chunks nothing uses any more.
    pub fn settle(&mut self) {
        self.frame = None;
        // A send stuck behind a slow reader pins its chunk; later ones may be free.
        for _ in 0..self.retired.len() {
            let c = self.retired.pop_front().expect("counted");
            if Rc::strong_count(&c) == 1 {
                self.keep(c);
            } else {
                self.retired.push_back(c);
            }
        }
    }

    /// Retires the full current chunk and takes a free one.
    fn rotate(&mut self) {
        let free = self.retired.iter().position(|c| Rc::strong_count(c) == 1);
        let next = match free {
            Some(i) => self.retired.remove(i),
            None => self.spare.pop(),
        }
        .unwrap_or_else(|| Chunk::heap(CHUNK));
        next.filled.set(0);
        let old = std::mem::replace(&mut self.cur, next);
        if Rc::strong_count(&old) == 1 {
            self.keep(old);
        } else {
            self.retired.push_back(old);
        }
    }

    fn keep(&mut self, c: Rc<Chunk>) {
        if self.spare.len() < SPARE {
            c.filled.set(0);
            self.spare.push(c);
        }
    }

    /// Chunks allocated and held right now.
    #[cfg(test)]
    pub fn chunks(&self) -> usize {
        1 + self.retired.len() + self.spare.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_keep_their_bytes_while_the_arena_moves_on() {
        let mut a = Arena::default();
        let p1 = a.stage(&[b"ab", b"cd"]);
        let mut p2 = a.stage(&[b"ef"]);
        assert!(a.extend(&mut p2, &[b"gh"]));
        let mut p1b = p1.clone();
        assert!(!a.extend(&mut p1b, &[b"x"]), "p1 does not end at the tail");
        // Fill several chunks while p1 is held: it must not be overwritten.
        let big = vec![7u8; CHUNK / 2];
        let held: Vec<Piece> = (0..6).map(|_| a.stage(&[&big])).collect();
        assert_eq!(p1.as_slice(), b"abcd");
        assert_eq!(p2.as_slice(), b"efgh");
        assert!(held.iter().all(|p| p.as_slice() == &big[..]));
        drop(held);
        a.settle();
        assert!(a.chunks() <= 2 + SPARE);
    }

    #[test]
    fn an_unreferenced_chunk_is_reused_from_the_front() {
        let mut a = Arena::default();
        let p = a.stage(&[b"hello"]);
        let addr = p.as_slice().as_ptr();
        drop(p);
        let q = a.stage(&[b"world"]);
        assert_eq!(q.as_slice().as_ptr(), addr);
        assert_eq!(q.as_slice(), b"world");
    }

    #[test]
    fn fill_lends_initialised_room_in_fresh_and_reused_chunks() {
        let mut a = Arena::default();
        // Fresh chunk: the room past what was staged reads as zeroes.
        let s = a.stage(&[b"abc"]);
        let p = a.fill(100, |room| {
            assert_eq!(room.len(), 100);
            assert!(room.iter().all(|&b| b == 0));
            room[..4].copy_from_slice(b"wxyz");
            4
        });
        assert_eq!(s.as_slice(), b"abc");
        assert_eq!(p.as_slice(), b"wxyz");
        drop((s, p));
        // Reused from the front: what was written before is still initialised (any
        // value), what lies past every earlier write is zeroed.
        let q = a.fill(CHUNK, |room| {
            assert_eq!(room.len(), CHUNK);
            assert_eq!(&room[..7], b"abcwxyz");
            assert!(room[107..].iter().all(|&b| b == 0));
            room.fill(9);
            CHUNK
        });
        assert!(q.as_slice().iter().all(|&b| b == 9));
        // A full chunk forces a rotation; the new one is fresh again.
        let r = a.fill(10, |room| {
            assert!(room.iter().all(|&b| b == 0));
            room.copy_from_slice(b"0123456789");
            10
        });
        assert_eq!(r.as_slice(), b"0123456789");
        assert_eq!(q.len(), CHUNK);
    }

    #[test]
    fn fill_after_stage_frame_keeps_the_staged_frame() {
        let mut a = Arena::default();
        let payload = [7u8; 64];
        let p = a.stage_frame(0x81, &payload);
        let before = p.as_slice().to_vec();
        assert_eq!(&before[..2], &[0x81, 64]);
        let q = a.fill(100, |room| {
            assert!(room.iter().all(|&b| b == 0));
            room[..3].copy_from_slice(b"abc");
            3
        });
        assert_eq!(p.as_slice(), &before[..], "fill zeroed a staged frame");
        assert_eq!(q.as_slice(), b"abc");
    }

    #[test]
    fn a_frame_is_wrapped_once_and_shared() {
        let mut a = Arena::default();
        let f = Bytes::from(vec![1u8; 100]);
        let p = a.frame(&f);
        let q = a.frame(&f);
        assert!(Rc::ptr_eq(&p.chunk, &q.chunk));
        assert_eq!(p.as_slice(), &f[..]);
        let mut r = q.clone();
        r.advance(40);
        assert_eq!(r.len(), 60);
        assert_eq!(r.as_slice(), &f[40..]);
    }
}
