//! The portable path: eight bytes at a time in a general-purpose register. It takes
//! buffers too short for a vector, and everything on targets without a vector kernel.

use super::advance;

/// Masks `buf` with `key`, a key word phased to `buf[0]`.
pub(super) fn apply(buf: &mut [u8], key: u32) {
    if buf.len() < 16 {
        return short(buf, key);
    }
    let wide = splat(key);
    // Each chunk starts a multiple of 8 bytes in, so every chunk and the remainder share
    // the phase of `buf[0]`.
    let mut chunks = buf.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let word = u64::from_ne_bytes(chunk.try_into().expect("8 bytes")) ^ wide;
        chunk.copy_from_slice(&word.to_ne_bytes());
    }
    short(chunks.into_remainder(), key);
}

/// Buffers under 16 bytes. From 4 bytes up, two words that may overlap cover the buffer;
/// both are computed from the original bytes before either is stored, so the overlap is
/// written twice with the same value and no byte loop runs.
#[inline(always)]
pub(super) fn short(buf: &mut [u8], key: u32) {
    let n = buf.len();
    if n >= 8 {
        let head = u64::from_ne_bytes(*buf.first_chunk().expect("8 bytes")) ^ splat(key);
        let tail =
            u64::from_ne_bytes(*buf.last_chunk().expect("8 bytes")) ^ splat(advance(key, n - 8));
        *buf.first_chunk_mut().expect("8 bytes") = head.to_ne_bytes();
        *buf.last_chunk_mut().expect("8 bytes") = tail.to_ne_bytes();
    } else if n >= 4 {
        let head = u32::from_ne_bytes(*buf.first_chunk().expect("4 bytes")) ^ key;
        let tail = u32::from_ne_bytes(*buf.last_chunk().expect("4 bytes")) ^ advance(key, n - 4);
        *buf.first_chunk_mut().expect("4 bytes") = head.to_ne_bytes();
        *buf.last_chunk_mut().expect("4 bytes") = tail.to_ne_bytes();
    } else {
        for (b, k) in buf.iter_mut().zip(key.to_ne_bytes()) {
            *b ^= k;
        }
    }
}

/// Two copies of the key word; the halves are equal, so byte order does not matter.
#[inline(always)]
fn splat(key: u32) -> u64 {
    u64::from(key) << 32 | u64::from(key)
}
