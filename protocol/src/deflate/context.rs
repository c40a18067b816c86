//! Streams that keep their context from one message to the next (dedicated mode: one
//! pair per connection), on C zlib through `libz-sys`.
//!
//! Why C zlib here and zlib-rs for the shared streams: a connection's streams live as
//! long as the connection, so their size is what matters, and only C zlib sizes them by
//! the window and memory level asked for: 9 window bits at memory level 1 is about 9 KB
//! for a compressor and 8 KB for an inflater, where zlib-rs always allocates a 128 KiB
//! hash table and a 32 KiB window whatever is asked. miniz_oxide has a fixed 32 KiB
//! window and no memory level either (and no raw stream with a smaller window), and
//! libdeflater has no streaming at all, so it can neither keep context between messages
//! nor cap an inflate's output as it goes.

use std::ffi::{c_int, c_uint, c_void};
use std::ptr::null_mut;

use libz_sys as z;

use super::codec::{Compressor, Decompressor};

/// zlib's allocator: `malloc` (zlib's own default), with the product checked.
unsafe extern "C" fn zalloc(_opaque: *mut c_void, items: c_uint, size: c_uint) -> *mut c_void {
    match (items as usize).checked_mul(size as usize) {
        // SAFETY: malloc may be called with any size; zlib checks the result for null.
        Some(bytes) => unsafe { libc::malloc(bytes) },
        None => null_mut(),
    }
}

/// zlib's deallocator, for what [`zalloc`] returned.
unsafe extern "C" fn zfree(_opaque: *mut c_void, address: *mut c_void) {
    // SAFETY: zlib frees only pointers that `zalloc` (malloc) returned, each once.
    unsafe { libc::free(address) }
}

/// A fresh `z_stream` on the heap: zlib's state points back to it, so it must not move.
fn stream() -> Box<z::z_stream> {
    Box::new(z::z_stream {
        next_in: null_mut(),
        avail_in: 0,
        total_in: 0,
        next_out: null_mut(),
        avail_out: 0,
        total_out: 0,
        msg: null_mut(),
        state: null_mut(),
        zalloc,
        zfree,
        opaque: null_mut(),
        data_type: 0,
        adler: 0,
        reserved: 0,
    })
}

/// The size zlib checks its header against.
const STREAM_SIZE: c_int = size_of::<z::z_stream>() as c_int;

/// Points `s` at `input` and at `out`'s spare capacity, runs `step`, and returns how
/// much input it took; `out` grows by what it wrote.
///
/// # Safety
/// `s` must be an initialized stream and `step` a zlib call on it.
unsafe fn run(
    s: &mut z::z_stream,
    input: &[u8],
    out: &mut Vec<u8>,
    step: impl FnOnce(&mut z::z_stream) -> c_int,
) -> (usize, c_int) {
    let avail_in = input.len().min(c_uint::MAX as usize) as c_uint;
    let spare = out.spare_capacity_mut();
    let avail_out = spare.len().min(c_uint::MAX as usize) as c_uint;
    // zlib only reads input (next_in is not const in the binding).
    s.next_in = input.as_ptr() as *mut u8;
    s.avail_in = avail_in;
    s.next_out = spare.as_mut_ptr().cast();
    s.avail_out = avail_out;
    let code = step(s);
    let taken = (avail_in - s.avail_in) as usize;
    let written = (avail_out - s.avail_out) as usize;
    s.next_in = null_mut();
    s.avail_in = 0;
    s.next_out = null_mut();
    s.avail_out = 0;
    // SAFETY: zlib wrote `written` bytes at the start of the spare capacity.
    unsafe { out.set_len(out.len() + written) };
    (taken, code)
}

/// A raw-deflate compressor that keeps its window across messages (context takeover),
/// sized by `window_bits` (9..=15) and `mem_level` (1..=9).
pub struct ContextDeflater {
    stream: Box<z::z_stream>,
}

impl std::fmt::Debug for ContextDeflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContextDeflater")
            .field("total_in", &self.stream.total_in)
            .finish_non_exhaustive()
    }
}

impl ContextDeflater {
    /// A compressor at `level` (0-9), or `None` when zlib refuses the parameters (window
    /// bits outside 9..=15, memory level outside 1..=9) or has no memory. Memory:
    /// about 5.8 KB of state plus `2^(bits+2)` bytes of window and chains and
    /// `2^(mem_level+9)` of hash table and pending output.
    pub fn new(level: u32, window_bits: u8, mem_level: u8) -> Option<ContextDeflater> {
        let mut stream = stream();
        // SAFETY: `stream` is a zeroed z_stream with allocator functions set, as
        // deflateInit2_ requires; the version and size are the library's own.
        let code = unsafe {
            z::deflateInit2_(
                &mut *stream,
                level.min(9) as c_int,
                z::Z_DEFLATED,
                -c_int::from(window_bits),
                c_int::from(mem_level),
                z::Z_DEFAULT_STRATEGY,
                z::zlibVersion(),
                STREAM_SIZE,
            )
        };
        (code == z::Z_OK).then_some(ContextDeflater { stream })
    }

    /// Appends `input` compressed to `out` as a permessage-deflate payload (a sync flush,
    /// the tail stripped), with back references into the messages before it. Returns
    /// false (with `out` as it was) when the stream failed; the caller must then
    /// [`ContextDeflater::reset`] before the next message, since the peer will not see
    /// this one.
    pub fn compress(&mut self, input: &[u8], out: &mut Vec<u8>) -> bool {
        super::codec::compress_message(self, input, out)
    }

    /// Forgets the context: the next message refers to nothing before it (always valid
    /// for the peer, whose window may hold more).
    pub fn reset(&mut self) {
        // SAFETY: the stream was initialized by deflateInit2_ and not ended.
        unsafe { z::deflateReset(&mut *self.stream) };
    }
}

impl Compressor for ContextDeflater {
    fn sync(&mut self, input: &[u8], out: &mut Vec<u8>) -> Option<usize> {
        // SAFETY: the stream is initialized, and the step is a zlib call on it (`run`
        // gives it valid buffers).
        let (taken, code) = unsafe {
            run(&mut self.stream, input, out, |s| {
                z::deflate(s, z::Z_SYNC_FLUSH)
            })
        };
        // Z_BUF_ERROR: no progress possible, here only when the output space ran out.
        (code == z::Z_OK || code == z::Z_BUF_ERROR).then_some(taken)
    }
}

impl Drop for ContextDeflater {
    fn drop(&mut self) {
        // SAFETY: initialized by deflateInit2_, ended once here.
        unsafe { z::deflateEnd(&mut *self.stream) };
    }
}

/// A raw-deflate inflater that keeps its window across messages, of `window_bits`
/// (8..=15): it inflates what a peer compressing with at most that window produced.
pub struct ContextInflater {
    stream: Box<z::z_stream>,
}

impl std::fmt::Debug for ContextInflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContextInflater")
            .field("total_out", &self.stream.total_out)
            .finish_non_exhaustive()
    }
}

impl ContextInflater {
    /// An inflater, or `None` when zlib refuses (window bits outside 8..=15) or has no
    /// memory. Memory: about 7 KB of state, and `2^bits` bytes of window allocated with
    /// the first message.
    pub fn new(window_bits: u8) -> Option<ContextInflater> {
        let mut stream = stream();
        // SAFETY: as for deflateInit2_ above.
        let code = unsafe {
            z::inflateInit2_(
                &mut *stream,
                -c_int::from(window_bits),
                z::zlibVersion(),
                STREAM_SIZE,
            )
        };
        (code == z::Z_OK).then_some(ContextInflater { stream })
    }

    /// Appends the message whose compressed payload is `pieces` to `out`, at most `max`
    /// bytes of it, as [`super::Inflater::inflate`] does but keeping the window for the
    /// next message. After an error the stream is unusable (the connection fails).
    pub fn inflate(
        &mut self,
        pieces: &[&[u8]],
        max: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), crate::ProtocolError> {
        let start = out.len();
        let result = super::codec::inflate_message(self, pieces, start.saturating_add(max), out);
        match result {
            Ok(true) => {
                // A final block ended the peer's stream: its next message starts a new
                // one, with no window to refer to.
                // SAFETY: initialized by inflateInit2_ and not ended.
                unsafe { z::inflateReset(&mut *self.stream) };
                Ok(())
            }
            Ok(false) => Ok(()),
            Err(e) => {
                out.truncate(start);
                Err(e)
            }
        }
    }
}

impl Decompressor for ContextInflater {
    fn step(&mut self, input: &[u8], out: &mut Vec<u8>) -> Option<(usize, bool)> {
        // SAFETY: the stream is initialized, and the step is a zlib call on it (`run`
        // gives it valid buffers).
        let (taken, code) = unsafe {
            run(&mut self.stream, input, out, |s| {
                z::inflate(s, z::Z_SYNC_FLUSH)
            })
        };
        match code {
            z::Z_OK | z::Z_BUF_ERROR => Some((taken, false)),
            z::Z_STREAM_END => Some((taken, true)),
            _ => None,
        }
    }
}

impl Drop for ContextInflater {
    fn drop(&mut self) {
        // SAFETY: initialized by inflateInit2_, ended once here.
        unsafe { z::inflateEnd(&mut *self.stream) };
    }
}
