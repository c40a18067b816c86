//! The portable path: eight bytes at a time in a general-purpose register. It takes
//! buffers too short for a vector, and everything on targets without a vector kernel.

use super::advance;

/// High bit of every byte of a word.
const HIGH_BITS: u64 = 0x8080_8080_8080_8080;

/// Masks `buf` with `key`, a key word phased to `buf[0]`.
pub(super) fn apply(buf: &mut [u8], key: u32) {
    let _ = apply_bits(buf, key);
}

/// [`apply`] that also tells whether every byte it stored is ASCII.
pub(super) fn apply_ascii(buf: &mut [u8], key: u32) -> bool {
    apply_bits(buf, key) & HIGH_BITS == 0
}

/// Masks like [`apply`]; returns the OR of every word it stored (a byte's high bit is set
/// in it when that bit is set in some stored byte). Callers that ignore it lose the ORs.
#[inline(always)]
fn apply_bits(buf: &mut [u8], key: u32) -> u64 {
    if buf.len() < 16 {
        return short_bits(buf, key);
    }
    let wide = splat(key);
    let mut acc = 0;
    // Each chunk starts a multiple of 8 bytes in, so every chunk and the remainder share
    // the phase of `buf[0]`.
    let mut chunks = buf.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let word = u64::from_ne_bytes(chunk.try_into().expect("8 bytes")) ^ wide;
        chunk.copy_from_slice(&word.to_ne_bytes());
        acc |= word;
    }
    acc | short_bits(chunks.into_remainder(), key)
}

/// Buffers under 16 bytes.
#[inline(always)]
pub(super) fn short(buf: &mut [u8], key: u32) {
    let _ = short_bits(buf, key);
}

/// [`short`] that also tells whether every byte it stored is ASCII.
#[inline(always)]
pub(super) fn short_ascii(buf: &mut [u8], key: u32) -> bool {
    short_bits(buf, key) & HIGH_BITS == 0
}

/// Buffers under 16 bytes, as [`apply_bits`]. From 4 bytes up, two words that may overlap
/// cover the buffer; both are computed from the original bytes before either is stored,
/// so the overlap is written twice with the same value and no byte loop runs.
#[inline(always)]
fn short_bits(buf: &mut [u8], key: u32) -> u64 {
    let n = buf.len();
    if n >= 8 {
        let head = u64::from_ne_bytes(*buf.first_chunk().expect("8 bytes")) ^ splat(key);
        let tail =
            u64::from_ne_bytes(*buf.last_chunk().expect("8 bytes")) ^ splat(advance(key, n - 8));
        *buf.first_chunk_mut().expect("8 bytes") = head.to_ne_bytes();
        *buf.last_chunk_mut().expect("8 bytes") = tail.to_ne_bytes();
        head | tail
    } else if n >= 4 {
        let head = u32::from_ne_bytes(*buf.first_chunk().expect("4 bytes")) ^ key;
        let tail = u32::from_ne_bytes(*buf.last_chunk().expect("4 bytes")) ^ advance(key, n - 4);
        *buf.first_chunk_mut().expect("4 bytes") = head.to_ne_bytes();
        *buf.last_chunk_mut().expect("4 bytes") = tail.to_ne_bytes();
        u64::from(head | tail)
    } else {
        let mut acc = 0;
        for (b, k) in buf.iter_mut().zip(key.to_ne_bytes()) {
            *b ^= k;
            acc |= u64::from(*b);
        }
        acc
    }
}

/// Two copies of the key word; the halves are equal, so byte order does not matter.
#[inline(always)]
fn splat(key: u32) -> u64 {
    u64::from(key) << 32 | u64::from(key)
}
