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
    pub fn feed(&mut self, chunk: &[u8]) -> Result<(), InvalidUtf8> {
        let rest = match self.len {
            0 => chunk,
            _ => match self.complete(chunk)? {
                Some(rest) => rest,
                None => return Ok(()),
            },
        };
        // Only whole characters go to simdutf8: a split one would come back as an error
        // that takes a second, precise pass to tell from a real one.
        let (body, tail) = rest.split_at(rest.len() - incomplete_tail(rest));
        if simdutf8::basic::from_utf8(body).is_err() {
            return Err(InvalidUtf8);
        }
        check_prefix(tail)?;
        self.pending[..tail.len()].copy_from_slice(tail);
        self.len = tail.len() as u8;
        Ok(())
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
        let mut seq = [0u8; 4];
        seq[..have].copy_from_slice(&self.pending[..have]);
        seq[have..have + take].copy_from_slice(&chunk[..take]);
        let got = have + take;
        check_prefix(&seq[..got])?;
        if got < need {
            self.pending[..got].copy_from_slice(&seq[..got]);
            self.len = got as u8;
            return Ok(None);
        }
        self.len = 0;
        Ok(Some(&chunk[take..]))
    }
}

/// How many bytes at the end of `bytes` start a character they do not finish (0 to 3).
/// Only whether one is split is decided here; whether it is valid is left to the callers.
#[inline]
fn incomplete_tail(bytes: &[u8]) -> usize {
    let n = bytes.len();
    for back in 1..=n.min(3) {
        let b = bytes[n - back];
        if b & 0xC0 != 0x80 {
            return if width(b) > back { back } else { 0 };
        }
    }
    0
}

/// The length of the character a lead byte starts; 1 for ASCII, and also for bytes that
/// cannot start one (continuation bytes, 0xC0, 0xC1, 0xF5..=0xFF) so that simdutf8, not the
/// pending buffer, sees them.
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
