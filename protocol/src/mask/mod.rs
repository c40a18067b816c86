//! Masking (RFC 6455 5.3): the payload XORed with a 4-byte key that repeats from the
//! frame's first payload byte.
//!
//! Every client payload is unmasked in place as it arrives, so this runs on every frame:
//! on x86 the widest vector kernel the CPU has is picked once and cached, short buffers
//! take a word-at-a-time path, and other targets use that word path throughout.

mod word;
#[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
mod x86;

#[cfg(test)]
mod tests;

/// XORs `buf` in place with `key`, where `buf[0]` is byte number `offset` of the payload.
///
/// Only `offset % 4` matters, so a payload can be unmasked in pieces as it arrives by
/// passing, with each piece, how many payload bytes came before it. Any length, alignment
/// and offset is accepted.
#[inline]
pub fn apply_mask(buf: &mut [u8], key: [u8; 4], offset: usize) {
    let key = advance(u32::from_ne_bytes(key), offset);
    // A client reads unmasked server frames through the same decoder path with a zero key.
    if key == 0 {
        return;
    }
    #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
    x86::apply(buf, key);
    #[cfg(not(any(target_arch = "x86", target_arch = "x86_64")))]
    word::apply(buf, key);
}

/// [`apply_mask`] that also tells whether every byte of `buf` is ASCII afterwards: one
/// pass over a text payload instead of an unmasking one and a validating one, since most
/// text is ASCII and ASCII is valid UTF-8 (callers validate the rest as usual).
#[inline]
pub fn apply_mask_ascii(buf: &mut [u8], key: [u8; 4], offset: usize) -> bool {
    let key = advance(u32::from_ne_bytes(key), offset);
    if key == 0 {
        return buf.is_ascii();
    }
    #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
    return x86::apply_ascii(buf, key);
    #[cfg(not(any(target_arch = "x86", target_arch = "x86_64")))]
    word::apply_ascii(buf, key)
}

/// The byte-at-a-time reference every fast path is checked against; same contract as
/// [`apply_mask`].
pub fn apply_mask_scalar(buf: &mut [u8], key: [u8; 4], offset: usize) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b ^= key[(offset + i) & 3];
    }
}

/// The key word for bytes `n` further on. A key word is the key as stored in memory, read
/// natively, rotated so that its first byte in memory masks the first byte of the buffer;
/// a vector of copies of it then masks any run of bytes starting there.
#[inline(always)]
fn advance(key: u32, n: usize) -> u32 {
    let bits = 8 * (n & 3) as u32;
    if cfg!(target_endian = "little") {
        key.rotate_right(bits)
    } else {
        key.rotate_left(bits)
    }
}
