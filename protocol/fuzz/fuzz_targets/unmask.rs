//! Unmasking in pieces and streaming UTF-8 validation, each against its reference.
//!
//! The input's first bytes pick a key, a payload offset, the payload's start alignment
//! and the piece sizes; the rest is the payload. Masking it piece by piece (the phase
//! carried through the offset) must equal the byte loop on the whole, and must not touch
//! a byte outside the piece. The same payload, read as text and fed in the same pieces,
//! must make `Utf8Stream` fail exactly at the first piece after which std sees an error
//! no further input could fix, and finish exactly when std accepts the whole.
#![no_main]

use libfuzzer_sys::fuzz_target;
use throng_protocol::mask::{apply_mask, apply_mask_ascii, apply_mask_scalar};
use throng_protocol::utf8::{Utf8Stream, validate};

fuzz_target!(|data: &[u8]| {
    let Some((&[k0, k1, k2, k3, offset, align, count], rest)) = data.split_first_chunk::<7>()
    else {
        return;
    };
    let n = usize::from(count & 7) + 1;
    let Some((sizes, payload)) = rest.split_at_checked(n) else {
        return;
    };
    // A size byte with its top bit set stands for a large piece, so that vector loops run.
    let sizes: Vec<usize> = sizes
        .iter()
        .map(|&s| {
            if s & 0x80 != 0 {
                usize::from(s & 0x7f) * 37
            } else {
                usize::from(s)
            }
        })
        .collect();
    let key = [k0, k1, k2, k3];
    check_mask(
        payload,
        key,
        usize::from(offset),
        usize::from(align & 63),
        &sizes,
    );
    check_utf8(payload, &sizes);
});

/// Splits `len` bytes into pieces of the given sizes, cycling; zero sizes give empty pieces.
fn pieces(len: usize, sizes: &[usize]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut at = 0;
    for &size in sizes.iter().cycle() {
        if at >= len && !out.is_empty() {
            break;
        }
        let end = (at + size).min(len);
        out.push((at, end));
        at = end;
        if out.len() > len + sizes.len() {
            // Only zero sizes: the rest goes in one piece.
            out.push((at, len));
            break;
        }
    }
    out
}

fn check_mask(payload: &[u8], key: [u8; 4], offset: usize, align: usize, sizes: &[usize]) {
    let mut backing = vec![0xEEu8; 64 + payload.len() + 64];
    let start = (backing.as_ptr().addr().wrapping_neg() & 63) + align;
    backing[start..start + payload.len()].copy_from_slice(payload);
    let mut want = backing.clone();
    apply_mask_scalar(&mut want[start..start + payload.len()], key, offset);
    for (a, b) in pieces(payload.len(), sizes) {
        apply_mask(&mut backing[start + a..start + b], key, offset + a);
    }
    assert!(
        backing == want,
        "key {key:?} offset {offset} align {align} sizes {sizes:?}"
    );
    // The ASCII-telling unmask, on the whole payload: the same bytes, and the same answer
    // as std's check of the result.
    backing[start..start + payload.len()].copy_from_slice(payload);
    let ascii = apply_mask_ascii(&mut backing[start..start + payload.len()], key, offset);
    assert!(backing == want, "ascii: key {key:?} offset {offset} align {align}");
    assert_eq!(ascii, want[start..start + payload.len()].is_ascii());
}

fn check_utf8(text: &[u8], sizes: &[usize]) {
    let whole = std::str::from_utf8(text);
    assert_eq!(validate(text).is_some(), whole.is_ok());
    let doomed_at = doomed_at(text, whole.err());
    let mut stream = Utf8Stream::default();
    for (a, b) in pieces(text.len(), sizes) {
        let doomed = b >= doomed_at;
        assert_eq!(stream.feed(&text[a..b]).is_err(), doomed, "piece {a}..{b}");
        if doomed {
            return;
        }
    }
    assert_eq!(stream.finish().is_ok(), whole.is_ok());
}

/// The shortest prefix of `text` that std rejects for good (error_len is Some), or
/// usize::MAX. It ends within 4 bytes of where the whole text's first error starts, so
/// it is found without rescanning every prefix.
fn doomed_at(text: &[u8], error: Option<std::str::Utf8Error>) -> usize {
    let Some(error) = error.filter(|e| e.error_len().is_some()) else {
        return usize::MAX;
    };
    let start = error.valid_up_to();
    (start + 1..=text.len())
        .find(|&end| matches!(std::str::from_utf8(&text[start..end]), Err(e) if e.error_len().is_some()))
        .expect("the whole text has the error")
}
