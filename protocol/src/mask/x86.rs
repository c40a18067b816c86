//! x86 kernels (SSE2, AVX2, AVX-512) and the run-time choice between them.
//!
//! Each kernel masks a buffer of at least one vector with one unaligned vector at each
//! end and aligned vectors in between. The two end vectors are loaded before anything is
//! stored and stored last: where they overlap the aligned ones, the same bytes are written
//! twice with the same value, so neither a byte loop nor a second pass is needed for the
//! ragged ends, and the bulk never splits a cache line.

#[cfg(target_arch = "x86")]
use core::arch::x86::*;
#[cfg(target_arch = "x86_64")]
use core::arch::x86_64::*;
use core::sync::atomic::{AtomicU8, Ordering};

use super::{advance, word};

/// Kernel levels, in order of preference; `UNKNOWN` until the first call detects one.
const UNKNOWN: u8 = 0;
const WORD: u8 = 1;
const SSE2: u8 = 2;
const AVX2: u8 = 3;
const AVX512: u8 = 4;

static LEVEL: AtomicU8 = AtomicU8::new(UNKNOWN);

/// Masks `buf` with `key`, a key word phased to `buf[0]`, using the best kernel.
#[inline(always)]
pub(super) fn apply(buf: &mut [u8], key: u32) {
    if buf.len() < 16 {
        return word::short(buf, key);
    }
    match level() {
        // SAFETY: `level` returns AVX512 only when avx512f was detected; the length was
        // checked.
        AVX512 => unsafe { avx512(buf, key) },
        // SAFETY: as above, for avx2.
        AVX2 => unsafe { avx2(buf, key) },
        // SAFETY: as above, for sse2.
        SSE2 => unsafe { sse2(buf, key) },
        _ => word::apply(buf, key),
    }
}

/// [`apply`] that also tells whether every byte it stored is ASCII.
#[inline(always)]
pub(super) fn apply_ascii(buf: &mut [u8], key: u32) -> bool {
    if buf.len() < 16 {
        return word::short_ascii(buf, key);
    }
    match level() {
        // SAFETY: as in `apply`.
        AVX512 => unsafe { avx512_ascii(buf, key) },
        // SAFETY: as in `apply`.
        AVX2 => unsafe { avx2_ascii(buf, key) },
        // SAFETY: as in `apply`.
        SSE2 => unsafe { sse2_ascii(buf, key) },
        _ => word::apply_ascii(buf, key),
    }
}

#[inline(always)]
fn level() -> u8 {
    match LEVEL.load(Ordering::Relaxed) {
        UNKNOWN => detect(),
        level => level,
    }
}

/// Racing first calls may each detect; they store the same answer.
#[cold]
fn detect() -> u8 {
    let level = if is_x86_feature_detected!("avx512f") {
        AVX512
    } else if is_x86_feature_detected!("avx2") {
        AVX2
    } else if is_x86_feature_detected!("sse2") {
        SSE2
    } else {
        WORD
    };
    LEVEL.store(level, Ordering::Relaxed);
    level
}

/// The kernel body for vectors of `$w` bytes; `buf.len() >= $w` must hold. Evaluates to
/// the OR of every vector it stored: the masked-only kernels drop it (and the compiler
/// drops the ORs with it), the ASCII-checking ones test its high bits.
macro_rules! ends_and_aligned_middle {
    ($buf:ident, $key:ident, $w:literal, $splat:ident, $xor:ident, $or:ident,
     $loadu:ident, $storeu:ident, $load:ident, $store:ident) => {{
        let len = $buf.len();
        let p = $buf.as_mut_ptr();
        let tail_at = len - $w;
        // SAFETY: len >= $w, so both ends are in bounds; unaligned access is what these
        // intrinsics are for.
        let (head, tail) = unsafe {
            (
                $xor($loadu(p.cast()), $splat($key as i32)),
                $xor(
                    $loadu(p.add(tail_at).cast()),
                    $splat(advance($key, tail_at) as i32),
                ),
            )
        };
        let mut acc = $or(head, tail);
        // With at most two vectors of bytes the ends cover everything.
        if len > 2 * $w {
            // Bytes to the next $w-byte boundary (fewer than $w: the head covers them).
            let mut i = p.addr().wrapping_neg() & ($w - 1);
            let k = $splat(advance($key, i) as i32);
            while i + 4 * $w <= len {
                // SAFETY: p + i is $w-aligned and the 4 vectors from it end within len.
                unsafe {
                    let q = p.add(i);
                    let a = $xor($load(q.cast()), k);
                    let b = $xor($load(q.add($w).cast()), k);
                    let c = $xor($load(q.add(2 * $w).cast()), k);
                    let d = $xor($load(q.add(3 * $w).cast()), k);
                    $store(q.cast(), a);
                    $store(q.add($w).cast(), b);
                    $store(q.add(2 * $w).cast(), c);
                    $store(q.add(3 * $w).cast(), d);
                    acc = $or(acc, $or($or(a, b), $or(c, d)));
                }
                i += 4 * $w;
            }
            while i + $w <= len {
                // SAFETY: p + i is $w-aligned and the vector from it ends within len.
                let v = unsafe { $xor($load(p.add(i).cast()), k) };
                // SAFETY: as for the load.
                unsafe { $store(p.add(i).cast(), v) };
                acc = $or(acc, v);
                i += $w;
            }
        }
        // SAFETY: in bounds as for the loads above.
        unsafe {
            $storeu(p.cast(), head);
            $storeu(p.add(tail_at).cast(), tail);
        }
        acc
    }};
}

/// The AVX-512 body for buffers over 128 bytes: true when a byte it stored has its high
/// bit set.
macro_rules! avx512_body {
    ($buf:ident, $key:ident) => {{
        let acc = ends_and_aligned_middle!(
            $buf,
            $key,
            64,
            _mm512_set1_epi32,
            _mm512_xor_si512,
            _mm512_or_si512,
            _mm512_loadu_si512,
            _mm512_storeu_si512,
            _mm512_load_si512,
            _mm512_store_si512
        );
        _mm512_test_epi32_mask(acc, _mm512_set1_epi32(0x8080_8080_u32 as i32)) != 0
    }};
}

/// The SSE2 body: true when a byte it stored has its high bit set.
macro_rules! sse2_body {
    ($buf:ident, $key:ident) => {{
        let acc = ends_and_aligned_middle!(
            $buf,
            $key,
            16,
            _mm_set1_epi32,
            _mm_xor_si128,
            _mm_or_si128,
            _mm_loadu_si128,
            _mm_storeu_si128,
            _mm_load_si128,
            _mm_store_si128
        );
        _mm_movemask_epi8(acc) != 0
    }};
}

/// The AVX2 body, with the SSE2 one (16-byte vectors) for buffers under 32 bytes: true when a byte it
/// stored has its high bit set.
macro_rules! avx2_body {
    ($buf:ident, $key:ident) => {{
        if $buf.len() < 32 {
            sse2_body!($buf, $key)
        } else {
            let acc = ends_and_aligned_middle!(
                $buf,
                $key,
                32,
                _mm256_set1_epi32,
                _mm256_xor_si256,
                _mm256_or_si256,
                _mm256_loadu_si256,
                _mm256_storeu_si256,
                _mm256_load_si256,
                _mm256_store_si256
            );
            _mm256_movemask_epi8(acc) != 0
        }
    }};
}

/// AVX-512 kernel, handing buffers of up to 128 bytes to the AVX2 one. There the two
/// unaligned end vectors are most of the work, and a 64-byte one at any misalignment
/// splits a cache line: 32-byte ones measured 10 to 30% faster for 64-byte frames on
/// Zen 5. Masked loads and stores (avx512bw) would cover a short buffer in one step but
/// measured about 3 times slower for small frames packed in a read buffer, so only avx512f
/// is used.
///
/// # Safety
///
/// The CPU must support avx512f, and `buf` must be at least 16 bytes long.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn avx512(buf: &mut [u8], key: u32) {
    if buf.len() <= 128 {
        // SAFETY: avx512f implies avx2; the length is passed on.
        return unsafe { avx2(buf, key) };
    }
    let _ = avx512_body!(buf, key);
}

/// [`avx512`] that also tells whether every byte it stored is ASCII.
///
/// # Safety
///
/// As for [`avx512`].
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn avx512_ascii(buf: &mut [u8], key: u32) -> bool {
    if buf.len() <= 128 {
        // SAFETY: avx512f implies avx2; the length is passed on.
        return unsafe { avx2_ascii(buf, key) };
    }
    !avx512_body!(buf, key)
}

/// AVX2 kernel.
///
/// # Safety
///
/// The CPU must support avx2, and `buf` must be at least 16 bytes long.
#[target_feature(enable = "avx2")]
pub(super) unsafe fn avx2(buf: &mut [u8], key: u32) {
    let _ = avx2_body!(buf, key);
}

/// [`avx2`] that also tells whether every byte it stored is ASCII.
///
/// # Safety
///
/// As for [`avx2`].
#[target_feature(enable = "avx2")]
pub(super) unsafe fn avx2_ascii(buf: &mut [u8], key: u32) -> bool {
    !avx2_body!(buf, key)
}

/// SSE2 kernel.
///
/// # Safety
///
/// The CPU must support sse2, and `buf` must be at least 16 bytes long.
#[target_feature(enable = "sse2")]
pub(super) unsafe fn sse2(buf: &mut [u8], key: u32) {
    let _ = sse2_body!(buf, key);
}

/// [`sse2`] that also tells whether every byte it stored is ASCII.
///
/// # Safety
///
/// As for [`sse2`].
#[target_feature(enable = "sse2")]
pub(super) unsafe fn sse2_ascii(buf: &mut [u8], key: u32) -> bool {
    !sse2_body!(buf, key)
}
