use super::*;

/// Feeds `chunks` in order and holds the stream to std at every step: it fails at the
/// first chunk after which std finds an error that no further input could fix (neither
/// earlier nor later), and `finish` agrees with std on the whole.
fn check_chunks(chunks: &[&[u8]]) {
    let mut stream = Utf8Stream::default();
    let mut seen = Vec::new();
    for (i, chunk) in chunks.iter().enumerate() {
        seen.extend_from_slice(chunk);
        let doomed = matches!(std::str::from_utf8(&seen), Err(e) if e.error_len().is_some());
        assert_eq!(
            stream.feed(chunk).is_err(),
            doomed,
            "chunk {i} of {chunks:x?}"
        );
        if doomed {
            return;
        }
    }
    let valid = std::str::from_utf8(&seen).is_ok();
    assert_eq!(stream.finish().is_ok(), valid, "finish after {chunks:x?}");
    assert_eq!(validate(&seen).is_some(), valid, "validate {seen:x?}");
}

/// Whole, in two chunks split at every point, a byte at a time, and (when short) in three
/// chunks split at every pair of points.
fn check_splits(bytes: &[u8]) {
    check_chunks(&[bytes]);
    for i in 0..=bytes.len() {
        check_chunks(&[&bytes[..i], &bytes[i..]]);
    }
    check_chunks(&bytes.chunks(1).collect::<Vec<_>>());
    if bytes.len() <= 12 {
        for i in 0..=bytes.len() {
            for j in i..=bytes.len() {
                check_chunks(&[&bytes[..i], &bytes[i..j], &bytes[j..]]);
            }
        }
    }
}

/// `seq` alone, between short ASCII runs, and after a run long enough that simdutf8
/// checks it in full 64-byte blocks.
fn check_in_context(seq: &[u8]) {
    let long = [b'a'; 70];
    for (before, after) in [(&b""[..], &b""[..]), (b"ab", b"cd"), (&long, b"z")] {
        check_splits(&[before, seq, after].concat());
    }
}

const VALID: &[&[u8]] = &[
    b"\x7f",                                 // U+007F, the last ASCII
    b"\xc2\x80",                             // U+0080, the first 2-byte
    b"\xc3\xa9",                             // é
    b"\xdf\xbf",                             // U+07FF, the last 2-byte
    b"\xe0\xa0\x80",                         // U+0800, the first 3-byte
    b"\xe2\x82\xac",                         // €
    b"\xed\x9f\xbf",                         // U+D7FF, below the surrogates
    b"\xee\x80\x80",                         // U+E000, above them
    b"\xef\xbf\xbf",                         // U+FFFF, the last 3-byte
    b"\xf0\x90\x80\x80",                     // U+10000, the first 4-byte
    b"\xf0\x9f\x98\x80",                     // 😀
    b"\xf3\xbf\xbf\xbf",                     // U+FFFFF
    b"\xf4\x8f\xbf\xbf",                     // U+10FFFF, the last code point
    b"\xc2\x80\xf4\x8f\xbf\xbf\xe0\xa0\x80", // several in a row
];

const INVALID: &[&[u8]] = &[
    b"\x80", // lone continuation bytes
    b"\xbf",
    b"\xc0\x80", // overlong 2-byte forms
    b"\xc1\xbf",
    b"\xe0\x80\x80", // overlong 3-byte forms
    b"\xe0\x9f\xbf",
    b"\xf0\x80\x80\x80", // overlong 4-byte forms
    b"\xf0\x8f\xbf\xbf",
    b"\xed\xa0\x80",     // U+D800, the first surrogate
    b"\xed\xbf\xbf",     // U+DFFF, the last
    b"\xf4\x90\x80\x80", // U+110000
    b"\xf5\x80\x80\x80", // leads that start nothing
    b"\xf8\x88\x80\x80\x80",
    b"\xfe",
    b"\xff",
    b"\xc2", // truncated: valid prefixes that never finish
    b"\xe0\xa0",
    b"\xed\x9f",
    b"\xf0\x90\x80",
    b"\xf4\x8f\xbf",
    b"\xc2\x41", // a continuation byte missing
    b"\xe1\x80\x41",
    b"\xf1\x80\x80\xc0",
    b"\xc2\x80\x80", // one too many
    b"\xef\xbf\xbf\xbf",
];

#[test]
fn valid_sequences_at_every_split() {
    for seq in VALID {
        assert!(std::str::from_utf8(seq).is_ok(), "{seq:x?}");
        check_in_context(seq);
    }
}

#[test]
fn invalid_sequences_at_every_split() {
    for seq in INVALID {
        assert!(std::str::from_utf8(seq).is_err(), "{seq:x?}");
        check_in_context(seq);
    }
}

#[test]
fn fails_at_the_first_impossible_byte() {
    for doomed in [
        &b"\xf4\x90"[..],
        b"\xed\xa0",
        b"\xe0\x80",
        b"\xf0\x80",
        b"\x80",
        b"\xc0",
        b"\xc1",
        b"\xf5",
        b"\xff",
        b"\xe1\x80\x41",
    ] {
        let mut stream = Utf8Stream::default();
        assert_eq!(stream.feed(doomed), Err(InvalidUtf8), "{doomed:x?} whole");
        // The same bytes after a pending start still fail at their own chunk.
        let mut stream = Utf8Stream::default();
        let (last, first) = doomed.split_last().expect("not empty");
        assert_eq!(
            stream.feed(first),
            Ok(()),
            "{doomed:x?} before its last byte"
        );
        assert_eq!(
            stream.feed(&[*last]),
            Err(InvalidUtf8),
            "{doomed:x?} at its last byte"
        );
    }
}

#[test]
fn finish_fails_while_a_character_is_pending() {
    let mut stream = Utf8Stream::default();
    assert_eq!(stream.feed(b"ok \xf0\x9f"), Ok(()));
    assert_eq!(stream.feed(b"\x98"), Ok(()));
    assert_eq!(stream.finish(), Err(InvalidUtf8));
    let mut stream = Utf8Stream::default();
    assert_eq!(stream.feed(b"ok \xf0\x9f"), Ok(()));
    assert_eq!(stream.feed(b""), Ok(()));
    assert_eq!(stream.feed(b"\x98\x80!"), Ok(()));
    assert_eq!(stream.finish(), Ok(()));
}

/// Every byte pair, and every lead byte followed by every combination of bytes from the
/// edges of the ranges that matter.
/// Under Miri a sample: every `STEP`-th value where the tests sweep a range, and
/// `RANDOM` random cases instead of 20,000.
#[cfg(not(miri))]
const STEP: usize = 1;
#[cfg(miri)]
const STEP: usize = 17;
#[cfg(not(miri))]
const RANDOM: usize = 20_000;
#[cfg(miri)]
const RANDOM: usize = 300;

#[test]
fn every_lead_with_edge_followers() {
    for a in (0..=255u8).step_by(STEP) {
        for b in (0..=255u8).step_by(STEP) {
            check_chunks(&[&[a, b]]);
            check_chunks(&[&[a], &[b]]);
        }
    }
    const EDGES: [u8; 10] = [0x41, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc2, 0xf0];
    // Under Miri: the leads where the second byte's range changes, and every other edge.
    #[cfg(miri)]
    let (leads, edges): (&[u8], usize) = (&[0x80, 0xc2, 0xe0, 0xed, 0xf0, 0xf4, 0xf5], 2);
    #[cfg(not(miri))]
    let (leads, edges): (&[u8], usize) = (&(0x80..=0xffu8).collect::<Vec<u8>>(), 1);
    for &lead in leads {
        for b in EDGES.into_iter().step_by(edges) {
            for c in EDGES.into_iter().step_by(edges) {
                for d in EDGES.into_iter().step_by(edges) {
                    let seq = [lead, b, c, d];
                    check_chunks(&[&seq]);
                    for i in 1..4 {
                        check_chunks(&[&seq[..i], &seq[i..]]);
                    }
                    check_chunks(&[&seq[..1], &seq[1..2], &seq[2..3], &seq[3..]]);
                }
            }
        }
    }
}

/// xorshift64: deterministic, and enough to scatter the cases.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Text that is mostly valid (ASCII runs and characters of every width) with, in some
/// cases, a few random bytes mixed in.
fn random_text(rng: &mut Rng) -> Vec<u8> {
    let mut out = Vec::new();
    let corrupt = rng.below(3) == 0;
    let len = rng.below(400);
    while out.len() < len {
        match rng.below(8) {
            0 if corrupt => out.push(rng.next() as u8),
            0..=2 => out.extend(std::iter::repeat_n(b'x', rng.below(80))),
            _ => {
                let c = match rng.below(4) {
                    0 => rng.below(0x80) as u32,
                    1 => 0x80 + rng.below(0x780) as u32,
                    2 => 0x800 + rng.below(0xF800) as u32,
                    _ => 0x10000 + rng.below(0x10_0000) as u32,
                };
                let c = char::from_u32(c).unwrap_or('\u{FFFD}');
                out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
            }
        }
    }
    out
}

#[test]
fn random_text_split_randomly() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for _ in 0..RANDOM {
        let text = random_text(&mut rng);
        let mut chunks = Vec::new();
        let mut rest = &text[..];
        while !rest.is_empty() {
            let n = rng.below(rest.len().min(90) + 1);
            let (chunk, tail) = rest.split_at(n);
            chunks.push(chunk);
            rest = tail;
        }
        check_chunks(&chunks);
    }
}

#[test]
fn random_bytes_split_randomly() {
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    for _ in 0..RANDOM {
        let bytes: Vec<u8> = (0..rng.below(12)).map(|_| rng.next() as u8).collect();
        check_splits(&bytes);
    }
}
