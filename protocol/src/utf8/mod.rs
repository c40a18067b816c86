//! UTF-8 validation for text messages, streaming across frames and reads.
//!
//! A text message must be rejected as soon as its bytes so far can no longer start valid
//! UTF-8 (RFC 6455 8.1, and the "fail fast" cases of the Autobahn suite), but it arrives in
//! pieces that may split a character. [`Utf8Stream`] keeps the at most 3 bytes of a split
//! character, finishes it with a few byte comparisons when the next piece comes, and hands
//! the rest of that piece to simdutf8 in one call.

#[cfg(test)]
mod tests;

/// The bytes seen so far can never become valid UTF-8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidUtf8;

/// Validates a whole buffer, returning it as a `str` when it is valid UTF-8.
#[inline]
pub fn validate(bytes: &[u8]) -> Option<&str> {
    simdutf8::basic::from_utf8(bytes).ok()
}

/// Unmasks a whole text payload in place (RFC 6455 5.3, `key` from its frame header, the
/// payload's first byte first) and returns it as text, or `None` when it is not UTF-8.
/// The unmasking pass also tells whether every byte is ASCII, which is UTF-8 with no
/// further check; only other text is validated.
#[inline(always)]
pub fn unmask_text(payload: &mut [u8], key: [u8; 4]) -> Option<&str> {
    if crate::mask::apply_mask_ascii(payload, key, 0) {
        debug_assert!(payload.is_ascii());
        // SAFETY: every byte is below 0x80 (what `apply_mask_ascii` returning true means;
        // its unit tests check that against the scalar reference at every alignment), and
        // a run of ASCII bytes is valid UTF-8.
        Some(unsafe { std::str::from_utf8_unchecked(payload) })
    } else {
        validate(payload)
    }
}

/// Streaming validator for one message: carries an incomplete trailing character (at most
/// 3 bytes) over to the next chunk. Reset it (assign the default) for each message; after
/// an error its state is meaningless.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Utf8Stream {
    /// The start of a character, a valid prefix of one.
    pending: [u8; 3],
    len: u8,
}

const _: () = assert!(
    size_of::<Utf8Stream>() <= 4,
    "the stream lives in every connection"
);

impl Utf8Stream {
    /// Validates the next chunk of a message. Fails as soon as the bytes seen so far
    /// cannot be the start of valid UTF-8; an incomplete character at the end of `chunk`
    /// is kept for the next call.
    #[inline]
    pub fn feed(&mut self, chunk: &[u8]) -> Result<(), InvalidUtf8> {
        // Most chunks continue nothing and end in ASCII: one simdutf8 call and done.
        if self.len == 0 && chunk.last().is_none_or(|&b| b < 0x80) {
            return whole(chunk);
        }
        self.feed_split(chunk)
    }

    /// `feed` for a chunk that finishes a pending character or ends inside one.
    fn feed_split(&mut self, chunk: &[u8]) -> Result<(), InvalidUtf8> {
        let rest = match self.len {
            0 => chunk,
            _ => match self.complete(chunk)? {
                Some(rest) => rest,
                None => return Ok(()),
            },
        };
        // Only whole characters go to simdutf8: its basic flavour cannot tell a character
        // cut off at the end from an invalid one, and its compat flavour tells them apart
        // by rescanning the last block with std, which costs more than this split.
        let (body, tail) = rest.split_at(rest.len() - incomplete_tail(rest));
        whole(body)?;
        check_prefix(tail)?;
        for (p, &b) in self.pending.iter_mut().zip(tail) {
            *p = b;
        }
        self.len = tail.len() as u8;
        Ok(())
    }

    /// Whether two streams are in the same state: the same incomplete character pending.
    pub(crate) fn same(&self, other: &Utf8Stream) -> bool {
        self.len == other.len
            && self.pending[..self.len as usize] == other.pending[..other.len as usize]
    }

    /// Whether no incomplete character is pending (the stream so far is whole characters).
    pub(crate) fn is_clean(&self) -> bool {
        self.len == 0
    }

    /// The message ended: an incomplete character left over is an error.
    pub fn finish(&mut self) -> Result<(), InvalidUtf8> {
        let complete = self.len == 0;
        self.len = 0;
        if complete { Ok(()) } else { Err(InvalidUtf8) }
    }

    /// Adds the start of `chunk` to the pending character; returns what follows it, or
    /// `None` when the chunk ended before the character did.
    fn complete<'a>(&mut self, chunk: &'a [u8]) -> Result<Option<&'a [u8]>, InvalidUtf8> {
        let have = usize::from(self.len);
        let need = width(self.pending[0]);
        let take = (need - have).min(chunk.len());
        let [a, b, c] = self.pending;
        let mut seq = [a, b, c, 0];
        // Byte loops of at most 3: copy_from_slice would call memcpy for each.
        for (s, &byte) in seq[have..].iter_mut().zip(&chunk[..take]) {
            *s = byte;
        }
        let got = have + take;
        check_prefix(&seq[..got])?;
        if got < need {
            for (p, &byte) in self.pending.iter_mut().zip(&seq[..got]) {
                *p = byte;
            }
            self.len = got as u8;
            return Ok(None);
        }
        self.len = 0;
        Ok(Some(&chunk[take..]))
    }
}

/// Validates bytes that start and end at character boundaries.
#[inline(always)]
fn whole(bytes: &[u8]) -> Result<(), InvalidUtf8> {
    match simdutf8::basic::from_utf8(bytes) {
        Ok(_) => Ok(()),
        Err(_) => Err(InvalidUtf8),
    }
}

/// How many bytes at the end of `bytes` may start a character they do not finish (0 to
/// 3): a lead byte 1, 2 or 3 from the end with too few continuation bytes after it.
/// Whether those bytes are valid is left to the caller: an invalid lead reported here
/// fails there just as it would in simdutf8.
#[inline]
fn incomplete_tail(bytes: &[u8]) -> usize {
    let at = |back: usize| bytes.len().checked_sub(back).map_or(0, |i| bytes[i]);
    let (last, second, third) = (at(1), at(2), at(3));
    let cont = |b: u8| b & 0xC0 == 0x80;
    if last >= 0xC0 {
        1
    } else if cont(last) && second >= 0xE0 {
        2
    } else if cont(last) && cont(second) && third >= 0xF0 {
        3
    } else {
        0
    }
}

/// The length of the character a lead byte starts: 2 to 4 for the leads that can start
/// one, 1 for everything else.
#[inline]
fn width(lead: u8) -> usize {
    match lead {
        0xC2..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF4 => 4,
        _ => 1,
    }
}

/// Checks that `bytes` (0 to 4 of them) are a valid prefix of one multi-byte character,
/// complete or not. The second byte's range depends on the lead: that is where overlong
/// forms, surrogates and code points above U+10FFFF are ruled out (RFC 3629 section 4).
#[inline]
fn check_prefix(bytes: &[u8]) -> Result<(), InvalidUtf8> {
    let Some((&lead, rest)) = bytes.split_first() else {
        return Ok(());
    };
    let second = match lead {
        0xC2..=0xDF | 0xE1..=0xEC | 0xEE..=0xEF | 0xF1..=0xF3 => 0x80..=0xBF,
        0xE0 => 0xA0..=0xBF,
        0xED => 0x80..=0x9F,
        0xF0 => 0x90..=0xBF,
        0xF4 => 0x80..=0x8F,
        _ => return Err(InvalidUtf8),
    };
    let ok = rest.len() < width(lead)
        && rest.first().is_none_or(|b| second.contains(b))
        && rest.iter().skip(1).all(|&b| b & 0xC0 == 0x80);
    if ok { Ok(()) } else { Err(InvalidUtf8) }
}
