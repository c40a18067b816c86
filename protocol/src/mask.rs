//! Masking (RFC 6455 5.3). Placeholder scalar version; replaced by the vectorized one.

/// XORs `buf` in place with `key`, where `buf[0]` is byte `offset` of the payload.
pub fn apply_mask(buf: &mut [u8], key: [u8; 4], offset: usize) {
    apply_mask_scalar(buf, key, offset)
}

/// The byte-at-a-time reference every fast path is checked against.
pub fn apply_mask_scalar(buf: &mut [u8], key: [u8; 4], offset: usize) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b ^= key[(offset + i) & 3];
    }
}
