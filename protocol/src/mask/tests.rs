use super::*;

const KEYS: [[u8; 4]; 4] = [
    [0x37, 0xfa, 0x21, 0x3d],
    [0xff; 4],
    [0, 0, 0, 1],
    [0xa5, 0, 0x5a, 0xc3],
];
/// Under Miri (which interprets every byte) a sample of the cases: fewer keys, lengths
/// and alignments, still crossing every vector width the fast paths use.
#[cfg(not(miri))]
const MAX_LEN: usize = 400;
#[cfg(miri)]
const MAX_LEN: usize = 70;
#[cfg(not(miri))]
const KEY_COUNT: usize = 4;
#[cfg(miri)]
const KEY_COUNT: usize = 1;
#[cfg(not(miri))]
const ALIGN_STEP: usize = 1;
#[cfg(miri)]
const ALIGN_STEP: usize = 16;
/// High bytes planted per length by the ASCII checks (besides one at the last byte), and
/// every how many lengths they run; under Miri only the last byte is planted.
#[cfg(not(miri))]
const MARKS: usize = 6;
#[cfg(miri)]
const MARKS: usize = 0;
#[cfg(not(miri))]
const ASCII_LEN_STEP: usize = 1;
#[cfg(miri)]
const ASCII_LEN_STEP: usize = 2;

/// Checks `f` against the scalar reference at every start alignment 0..64 (relative to a
/// 64-byte boundary), every length `min_len..400` and every offset 0..4, for each key.
/// The whole backing buffer is compared, so a write outside the slice fails too.
fn matches_scalar(min_len: usize, f: impl Fn(&mut [u8], [u8; 4], usize)) {
    let mut got: Vec<u8> = (0..64 + MAX_LEN + 64).map(|i| (i * 31) as u8).collect();
    // Both sides start equal and stay equal while the checks pass, so each case simply
    // masks the previous case's result again.
    let mut want = got.clone();
    let base = got.as_ptr().addr().wrapping_neg() & 63;
    for key in KEYS.into_iter().take(KEY_COUNT) {
        for align in (0..64).step_by(ALIGN_STEP) {
            for len in min_len..MAX_LEN {
                for offset in 0..4 {
                    let at = base + align;
                    apply_mask_scalar(&mut want[at..at + len], key, offset);
                    f(&mut got[at..at + len], key, offset);
                    assert!(
                        got == want,
                        "key {key:?} align {align} len {len} offset {offset}"
                    );
                }
            }
        }
    }
}

/// Checks an ASCII-telling kernel `f`: at every alignment, length `min_len..MAX_LEN` and
/// offset, a payload that unmasks to ASCII must unmask exactly as the scalar reference
/// does and be called ASCII, and with one byte's high bit set (at the ends and at spread
/// positions, so that each vector of every loop is seen carrying it) must be called not
/// ASCII; nothing outside the slice may change.
fn ascii_matches_scalar(min_len: usize, f: impl Fn(&mut [u8], [u8; 4], usize) -> bool) {
    let mut got = vec![0xEEu8; 64 + 128 + MAX_LEN + 64];
    // 64 bytes before the first case's start, past a 64-byte boundary.
    let base = 64 + (got.as_ptr().addr().wrapping_neg() & 63);
    let key = KEYS[0];
    for align in (0..64).step_by(ALIGN_STEP) {
        let at = base + align;
        // Lengths grow, so each case's bytes lie inside the next one's: one fill per start.
        got.fill(0xEE);
        for len in (min_len..MAX_LEN).step_by(ASCII_LEN_STEP) {
            let mut plain: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
            let spread = (0..len).step_by((len / MARKS.max(1)).max(1)).take(MARKS);
            let marks = spread.chain(len.checked_sub(1));
            for mark in std::iter::once(None).chain(marks.map(Some)) {
                if let Some(m) = mark {
                    plain[m] = 0xC3;
                }
                for offset in 0..4 {
                    let slot = &mut got[at..at + len];
                    slot.copy_from_slice(&plain);
                    apply_mask_scalar(slot, key, offset);
                    let ascii = f(slot, key, offset);
                    let case = || format!("align {align} len {len} offset {offset} mark {mark:?}");
                    assert!(got[at..at + len] == plain[..], "{}", case());
                    assert_eq!(ascii, mark.is_none(), "{}", case());
                    // A vector store past either end would land within 64 bytes of it.
                    assert!(got[at - 64..at] == [0xEE; 64], "{}: before", case());
                    assert!(got[at + len..][..64] == [0xEE; 64], "{}: after", case());
                }
                if let Some(m) = mark {
                    plain[m] = b'a' + (m % 26) as u8;
                }
            }
        }
    }
}

#[test]
fn apply_mask_ascii_matches_scalar() {
    ascii_matches_scalar(0, apply_mask_ascii);
    // The mask itself, whatever the bytes: as `apply_mask`.
    matches_scalar(0, |b, k, o| {
        let _ = apply_mask_ascii(b, k, o);
    });
}

#[test]
fn apply_mask_ascii_with_a_zero_key_only_checks() {
    let mut text = *b"plain ascii";
    assert!(apply_mask_ascii(&mut text, [0; 4], 0));
    assert_eq!(&text, b"plain ascii");
    let mut utf8 = "caf\u{e9}".as_bytes().to_vec();
    assert!(!apply_mask_ascii(&mut utf8, [0; 4], 1));
}

#[test]
fn word_ascii_matches_scalar() {
    ascii_matches_scalar(0, |b, k, o| word::apply_ascii(b, key_word(k, o)));
}

#[test]
fn scalar_matches_rfc_example() {
    // RFC 6455 5.7: "Hello" masked with 37 fa 21 3d.
    let mut hello = *b"Hello";
    apply_mask_scalar(&mut hello, [0x37, 0xfa, 0x21, 0x3d], 0);
    assert_eq!(hello, [0x7f, 0x9f, 0x4d, 0x51, 0x58]);
}

#[test]
fn apply_mask_matches_scalar() {
    matches_scalar(0, apply_mask);
}

#[test]
fn offsets_beyond_4_use_only_the_phase() {
    matches_scalar(0, |buf, key, offset| {
        apply_mask(buf, key, offset + 4 * 1_000_003)
    });
}

#[test]
fn word_matches_scalar() {
    matches_scalar(0, |buf, key, offset| {
        word::apply(buf, key_word(key, offset))
    });
}

#[test]
fn pieces_carry_the_phase() {
    let payload: Vec<u8> = (0..1000u32).map(|i| (i * 7) as u8).collect();
    let key = [1, 2, 3, 4];
    let mut whole = payload.clone();
    apply_mask_scalar(&mut whole, key, 0);
    for piece in [1, 3, 5, 17, 63, 64, 65, 129] {
        let mut pieces = payload.clone();
        let mut done = 0;
        for chunk in pieces.chunks_mut(piece) {
            apply_mask(chunk, key, done);
            done += chunk.len();
        }
        assert_eq!(pieces, whole, "pieces of {piece}");
    }
}

fn key_word(key: [u8; 4], offset: usize) -> u32 {
    advance(u32::from_ne_bytes(key), offset)
}

// Each level is called directly so that a broken narrower kernel cannot hide behind a
// wider one the dispatcher prefers.
#[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
mod x86_levels {
    use super::*;

    #[test]
    fn avx512_matches_scalar() {
        if !is_x86_feature_detected!("avx512f") {
            eprintln!("skipped: no AVX-512 on this CPU");
            return;
        }
        // SAFETY: the feature was just detected; lengths start at 16.
        matches_scalar(16, |b, k, o| unsafe { x86::avx512(b, key_word(k, o)) });
    }

    #[test]
    fn avx2_matches_scalar() {
        if !is_x86_feature_detected!("avx2") {
            eprintln!("skipped: no AVX2 on this CPU");
            return;
        }
        // SAFETY: the feature was just detected; lengths start at 16.
        matches_scalar(16, |b, k, o| unsafe { x86::avx2(b, key_word(k, o)) });
    }

    #[test]
    fn avx512_ascii_matches_scalar() {
        if !is_x86_feature_detected!("avx512f") {
            eprintln!("skipped: no AVX-512 on this CPU");
            return;
        }
        // SAFETY: the feature was just detected; lengths start at 16.
        ascii_matches_scalar(16, |b, k, o| unsafe {
            x86::avx512_ascii(b, key_word(k, o))
        });
    }

    #[test]
    fn avx2_ascii_matches_scalar() {
        if !is_x86_feature_detected!("avx2") {
            eprintln!("skipped: no AVX2 on this CPU");
            return;
        }
        // SAFETY: the feature was just detected; lengths start at 16.
        ascii_matches_scalar(16, |b, k, o| unsafe { x86::avx2_ascii(b, key_word(k, o)) });
    }

    #[test]
    fn sse2_ascii_matches_scalar() {
        if !is_x86_feature_detected!("sse2") {
            eprintln!("skipped: no SSE2 on this CPU");
            return;
        }
        // SAFETY: the feature was just detected; lengths start at 16.
        ascii_matches_scalar(16, |b, k, o| unsafe { x86::sse2_ascii(b, key_word(k, o)) });
    }

    #[test]
    fn sse2_matches_scalar() {
        if !is_x86_feature_detected!("sse2") {
            eprintln!("skipped: no SSE2 on this CPU");
            return;
        }
        // SAFETY: the feature was just detected; lengths start at 16.
        matches_scalar(16, |b, k, o| unsafe { x86::sse2(b, key_word(k, o)) });
    }
}
