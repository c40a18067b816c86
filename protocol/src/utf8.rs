//! UTF-8 validation that streams across chunks. Placeholder; replaced by the simdutf8 one.

/// The bytes seen so far can never become valid UTF-8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidUtf8;

/// Validates a whole buffer.
pub fn validate(bytes: &[u8]) -> Option<&str> {
    std::str::from_utf8(bytes).ok()
}

/// Streaming validator: carries an incomplete trailing sequence (at most 3 bytes) over to
/// the next chunk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Utf8Stream {
    pending: [u8; 3],
    len: u8,
}

impl Utf8Stream {
    /// Validates the next chunk of a text message.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<(), InvalidUtf8> {
        let mut all = self.pending[..self.len as usize].to_vec();
        all.extend_from_slice(chunk);
        match std::str::from_utf8(&all) {
            Ok(_) => {
                self.len = 0;
                Ok(())
            }
            Err(e) if e.error_len().is_none() => {
                let tail = &all[e.valid_up_to()..];
                self.pending[..tail.len()].copy_from_slice(tail);
                self.len = tail.len() as u8;
                Ok(())
            }
            Err(_) => Err(InvalidUtf8),
        }
    }

    /// The message ended: an incomplete sequence left over is an error.
    pub fn finish(&mut self) -> Result<(), InvalidUtf8> {
        let ok = self.len == 0;
        self.len = 0;
        if ok { Ok(()) } else { Err(InvalidUtf8) }
    }
}
