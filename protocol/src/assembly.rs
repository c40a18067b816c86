//! Joining the pieces of a message that did not arrive whole.
//!
//! The decoder validates a streamed text message as its pieces go by (it must fail fast,
//! RFC 6455 8.1), so validating the joined message again would be a second pass over
//! every byte. Instead each piece carries the UTF-8 stream's state before and after it,
//! and the assembly checks that each piece starts exactly where the bytes it holds left
//! the stream. Its buffer is private, so what it holds is always a valid prefix in the
//! state it records; when the last piece ends the stream complete, the whole is valid.

use crate::decoder::{Data, DataKind, TextProof};
use crate::message::Message;
use crate::utf8::Utf8Stream;

/// A message being assembled from [`Data`] pieces. Keep one per connection while it is
/// needed and [`clear`](Assembly::clear) it (or let a first piece reset it).
#[derive(Debug, Default)]
pub struct Assembly {
    buf: Vec<u8>,
    kind: Option<DataKind>,
    /// The UTF-8 stream state `buf` ends in (text), or default.
    utf8: Utf8Stream,
    /// The last piece was pushed and the stream ended complete.
    done: bool,
    /// The pieces are compressed (permessage-deflate): `buf` holds deflate data, to be
    /// inflated (and its text validated) once the message is complete.
    compressed: bool,
}

/// A piece that does not continue what the assembly holds: a caller's bug (pieces of
/// different messages or connections mixed, or one skipped). Nothing was appended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutOfOrder;

impl std::fmt::Display for OutOfOrder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("message piece out of order")
    }
}

impl std::error::Error for OutOfOrder {}

impl Assembly {
    /// Appends a piece; a first piece starts a new message. The pieces of a compressed
    /// message are joined as they are (their text is validated after inflating): read
    /// them back with [`Assembly::compressed`].
    pub fn push(&mut self, piece: &Data<'_>) -> Result<(), OutOfOrder> {
        if piece.first {
            self.clear();
            self.kind = Some(piece.kind);
            self.compressed = piece.compressed;
        } else if self.kind != Some(piece.kind) || self.done || self.compressed != piece.compressed
        {
            return Err(OutOfOrder);
        }
        match (piece.kind, piece.text) {
            _ if piece.compressed => {}
            (DataKind::Binary, _) => {}
            (DataKind::Text, TextProof::Chain { before, after }) if before.same(&self.utf8) => {
                self.utf8 = after;
            }
            (DataKind::Text, TextProof::Whole(_)) if piece.first => {}
            _ => return Err(OutOfOrder),
        }
        self.buf.extend_from_slice(piece.payload);
        self.done = piece.last;
        Ok(())
    }

    /// The whole message, once its last piece was pushed.
    #[allow(unsafe_code)]
    pub fn message(&self) -> Option<Message<'_>> {
        if !self.done || self.compressed {
            return None;
        }
        match self.kind? {
            DataKind::Binary => Some(Message::Binary(&self.buf)),
            DataKind::Text if self.utf8.is_clean() => {
                // SAFETY: every byte in `buf` came from pieces pushed in stream order since
                // the first piece reset it: each piece was validated by the decoder as the
                // continuation of exactly the stream state `buf` ended in (checked by
                // `push`), and the last one left the stream complete (`is_clean`, from
                // the decoder's end-of-message check). So `buf` is valid UTF-8. `buf` is
                // private; nothing else writes it.
                Some(Message::Text(unsafe {
                    std::str::from_utf8_unchecked(&self.buf)
                }))
            }
            DataKind::Text => None,
        }
    }

    /// The whole compressed payload (without the deflate tail) and the message's kind,
    /// once the last piece of a compressed message was pushed.
    pub fn compressed(&self) -> Option<(DataKind, &[u8])> {
        match self.kind {
            Some(kind) if self.done && self.compressed => Some((kind, &self.buf)),
            _ => None,
        }
    }

    /// Whether a message is open (or held, until cleared). A message whose pieces so
    /// far are all empty is open: it holds no bytes, but its kind and UTF-8 state matter.
    pub fn is_open(&self) -> bool {
        self.kind.is_some()
    }

    /// Bytes held.
    pub fn held(&self) -> usize {
        self.buf.len()
    }

    /// Bytes allocated.
    pub fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// Forgets the message, keeping the allocation.
    pub fn clear(&mut self) {
        self.buf.clear();
        self.kind = None;
        self.utf8 = Utf8Stream::default();
        self.done = false;
        self.compressed = false;
    }

    /// Forgets the message and frees the allocation.
    pub fn release(&mut self) {
        self.clear();
        self.buf = Vec::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decoder::{Decoder, DecoderConfig, Event};
    use crate::frame::{FrameHead, HeaderBuf};

    /// Client-side frames (unmasked), decoded by a client decoder piece by piece.
    fn frames(parts: &[(&[u8], bool, bool)]) -> Vec<u8> {
        let mut out = Vec::new();
        for &(bytes, first, fin) in parts {
            let head = if first {
                FrameHead::text(bytes.len() as u64)
            } else {
                FrameHead::continuation(bytes.len() as u64, fin)
            };
            let mut hb = HeaderBuf::default();
            out.extend_from_slice(head.with_fin(fin).encode(&mut hb));
            out.extend_from_slice(bytes);
        }
        out
    }

    /// A decoded piece with its bytes owned, so the test can keep several.
    struct Owned {
        kind: DataKind,
        payload: Vec<u8>,
        first: bool,
        last: bool,
        text: TextProof<'static>,
    }

    impl Owned {
        fn data(&self) -> Data<'_> {
            Data {
                kind: self.kind,
                payload: &self.payload,
                first: self.first,
                last: self.last,
                compressed: false,
                text: self.text,
            }
        }
    }

    fn pieces(input: &mut [u8]) -> Vec<Owned> {
        let config = DecoderConfig::client();
        let mut d = Decoder::new();
        let mut out = Vec::new();
        let mut used = 0;
        loop {
            let r = d.decode(&config, &mut input[used..]).expect("valid");
            let Some(Event::Data(piece)) = r.event else {
                break;
            };
            out.push(Owned {
                kind: piece.kind,
                payload: piece.payload.to_vec(),
                first: piece.first,
                last: piece.last,
                text: match piece.text {
                    TextProof::Chain { before, after } => TextProof::Chain { before, after },
                    _ => TextProof::None,
                },
            });
            used += r.consumed;
        }
        out
    }

    #[test]
    fn pieces_join_into_valid_text_and_mixing_streams_is_refused() {
        // "é" (C3 A9) split across fragments in both messages.
        let mut a = frames(&[(b"ab\xC3", true, false), (b"\xA9cd", false, true)]);
        let mut b = frames(&[(b"x\xC3", true, false), (b"\xA9y", false, true)]);
        let pa = pieces(&mut a);
        let pb = pieces(&mut b);
        let mut asm = Assembly::default();
        asm.push(&pa[0].data()).unwrap();
        assert_eq!(asm.message(), None, "not done yet");
        asm.push(&pa[1].data()).unwrap();
        assert_eq!(asm.message(), Some(Message::Text("ab\u{e9}cd")));

        // b's second piece does not continue a's first: refused, nothing appended.
        asm.push(&pa[0].data()).unwrap();
        let mut other = Assembly::default();
        other.push(&pb[0].data()).unwrap();
        // Same pending byte (C3) by chance: the chain check passes, and the text is still
        // valid because the state really matches.
        asm.push(&pb[1].data()).unwrap();
        assert_eq!(asm.message(), Some(Message::Text("ab\u{e9}y")));
        // An open message with no bytes yet is not empty (its state matters).
        let mut e = frames(&[(b"", true, false), (b"z", false, true)]);
        let pe = pieces(&mut e);
        let mut open = Assembly::default();
        open.push(&pe[0].data()).unwrap();
        assert!(open.is_open() && open.held() == 0);
        open.push(&pe[1].data()).unwrap();
        assert_eq!(open.message(), Some(Message::Text("z")));
        // A piece that starts clean cannot follow one that ended mid-character.
        let mut c = frames(&[(b"q", true, false), (b"r", false, true)]);
        let pc = pieces(&mut c);
        asm.push(&pa[0].data()).unwrap();
        assert_eq!(asm.push(&pc[1].data()), Err(OutOfOrder));
        assert_eq!(asm.message(), None);
        // A middle piece with no message open, or after the end, is refused.
        let mut fresh = Assembly::default();
        assert_eq!(fresh.push(&pa[1].data()), Err(OutOfOrder));
        fresh.push(&pa[0].data()).unwrap();
        fresh.push(&pa[1].data()).unwrap();
        assert_eq!(fresh.push(&pa[1].data()), Err(OutOfOrder));
    }
}
