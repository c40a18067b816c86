//! The streaming message decoder: bytes in, events out, any split of the input alike.
//!
//! The decoder borrows the caller's bytes mutably so it can unmask payloads in place, and
//! hands data payloads out as they arrive: a 16 MiB message never needs a 16 MiB
//! contiguous buffer unless the caller chooses to assemble one. It owns no buffer itself;
//! its state is 20 bytes, small enough to live in every connection's slab entry.
//!
//! Control frames (at most 125 bytes) are delivered whole: while one is incomplete the
//! decoder consumes nothing of it, so the caller keeps at most 131 bytes of it aside (a
//! 6-byte masked header and 125 bytes of payload).

use crate::close::{CloseCode, parse_close_payload};
use crate::error::ProtocolError;
use crate::frame::{FrameHead, OpCode, RSV1};
use crate::mask::apply_mask;
use crate::message::Message;
use crate::utf8::{Utf8Stream, unmask_text, validate};

/// Which side of the connection the decoder reads for; it decides the masking rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Reads a client's frames, which must be masked.
    Server,
    /// Reads a server's frames, which must not be masked.
    Client,
}

/// Decoder limits and role. Shared by all connections of a worker, passed to each
/// [`Decoder::decode`] call, so it costs nothing per connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct DecoderConfig {
    /// Whose frames are read. Default: [`Role::Server`].
    pub role: Role,
    /// Largest frame payload accepted; larger fails with 1009. Default 16 MiB.
    /// Values above `u32::MAX` are treated as `u32::MAX`.
    pub max_frame_size: u64,
    /// Largest message (sum of its frames' payloads) accepted; larger fails with 1009
    /// as soon as a frame header announces it. Default 16 MiB. Capped like the frame limit.
    pub max_message_size: u64,
    /// RSV bits an extension negotiated for this connection's messages ([`crate::frame::RSV1`]
    /// for permessage-deflate). Default 0: any RSV bit fails with 1002.
    pub allowed_rsv: u8,
    /// Most frames one data message may arrive in; more fails with 1009. Default 100,000
    /// (a 16 MiB message in fragments of 168 bytes on average), at most 2^24 - 1. Bounds
    /// the work a peer can demand per message with empty or tiny fragments.
    pub max_fragments: u32,
    /// Accept payload lengths written in a longer form than needed (RFC 6455 5.2 says the
    /// minimal one MUST be used). Default false: such a frame fails with 1002.
    pub lenient_lengths: bool,
}

impl Default for DecoderConfig {
    fn default() -> Self {
        DecoderConfig {
            role: Role::Server,
            max_frame_size: 16 << 20,
            max_message_size: 16 << 20,
            allowed_rsv: 0,
            max_fragments: 100_000,
            lenient_lengths: false,
        }
    }
}

impl DecoderConfig {
    /// A server-side config with the given frame and message limits.
    pub fn server(max_frame_size: u64, max_message_size: u64) -> Self {
        DecoderConfig {
            max_frame_size,
            max_message_size,
            ..Default::default()
        }
    }
    /// A client-side config (unmasked frames expected) with default limits.
    pub fn client() -> Self {
        DecoderConfig {
            role: Role::Client,
            ..Default::default()
        }
    }
}

/// Text or binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataKind {
    /// UTF-8 text (validated, unless the message is compressed).
    Text,
    /// Arbitrary bytes.
    Binary,
}

/// What the decoder found.
#[derive(Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// A piece of a data message's payload, unmasked.
    Data(Data<'a>),
    /// A ping with its payload (answer with a pong carrying the same bytes).
    Ping(&'a [u8]),
    /// A pong with its payload.
    Pong(&'a [u8]),
    /// A valid close frame: `None` when it carried no code.
    Close(Option<(CloseCode, &'a str)>),
}

/// A piece of a data message's payload, unmasked. `first && last` means the message
/// arrived whole in this call and `payload` is all of it ([`Data::whole`]); otherwise the
/// pieces of one message are joined by an [`Assembly`](crate::Assembly).
///
/// Text leaves the decoder only in forms that cannot be made without validating it: a
/// whole message as a `&str` ([`Data::text`]), or a piece carrying the state of the
/// message's UTF-8 stream before and after it, which an `Assembly` checks as it joins
/// pieces. Nothing outside this crate can build a `Data`.
#[derive(Debug, PartialEq, Eq)]
pub struct Data<'a> {
    /// Text or binary, from the message's first frame.
    pub kind: DataKind,
    /// The bytes, in order; may be empty (an empty message, or an empty first fragment).
    pub payload: &'a [u8],
    /// First piece of its message.
    pub first: bool,
    /// Last piece of its message.
    pub last: bool,
    /// The first frame had RSV1 set (permessage-deflate): `payload` is compressed, and
    /// text is validated only once inflated.
    pub compressed: bool,
    pub(crate) text: TextProof<'a>,
}

/// What the decoder established about a piece's text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TextProof<'a> {
    /// Not text, or compressed: nothing is claimed.
    None,
    /// The whole message, validated.
    Whole(&'a str),
    /// A piece of a streamed message: the UTF-8 stream's state before the piece and after
    /// it (after the message's end check, on its last piece).
    Chain {
        before: Utf8Stream,
        after: Utf8Stream,
    },
}

impl<'a> Data<'a> {
    /// The whole message as text, when this piece is a whole uncompressed text message.
    pub fn text(&self) -> Option<&'a str> {
        match self.text {
            TextProof::Whole(t) => Some(t),
            _ => None,
        }
    }

    /// The whole message, when this piece is all of an uncompressed message.
    pub fn whole(&self) -> Option<Message<'a>> {
        match (self.kind, self.text) {
            (DataKind::Text, TextProof::Whole(t)) => Some(Message::Text(t)),
            (DataKind::Binary, _) if self.first && self.last && !self.compressed => {
                Some(Message::Binary(self.payload))
            }
            _ => None,
        }
    }
}

/// The result of one [`Decoder::decode`] call.
#[derive(Debug, PartialEq, Eq)]
pub struct Decoded<'a> {
    /// Bytes of the input used; the caller drops them and passes the rest next time.
    pub consumed: usize,
    /// The event found, or `None` when more input is needed.
    pub event: Option<Event<'a>>,
}

const IN_FRAME: u8 = 1; // a data frame's header was read; its payload is being delivered
const FRAME_FIN: u8 = 1 << 1; // that frame has FIN
const IN_MESSAGE: u8 = 1 << 2; // a data message started and has not ended
const TEXT: u8 = 1 << 3; // the message is text
const COMPRESSED: u8 = 1 << 4; // the message's first frame had RSV1
const FIRST: u8 = 1 << 5; // the next piece delivered is the message's first

/// Per-connection decoding state. Feed it the connection's bytes with [`Decoder::decode`];
/// after an error the connection must be failed and the decoder dropped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Decoder {
    mask: [u8; 4],
    /// Payload bytes of the current data frame not delivered yet.
    remaining: u32,
    /// Payload bytes of the current message announced so far (for the message limit).
    message_len: u32,
    /// The state bits below, and in the top two bits the position of the next payload
    /// byte within the current frame, mod 4.
    flags: u8,
    /// Frames of the current message so far, 24 bits (little-endian).
    fragments: [u8; 3],
    utf8: Utf8Stream,
}

/// Where [`Decoder::flags`] keeps the payload phase.
const PHASE_SHIFT: u8 = 6;
/// The largest [`DecoderConfig::max_fragments`] the 24-bit counter can enforce.
pub const MAX_FRAGMENTS: u32 = (1 << 24) - 1;

const _: () = assert!(
    size_of::<Decoder>() <= 20,
    "the decoder lives in every connection"
);

impl Decoder {
    /// A decoder at the start of a stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Position of the next payload byte within the current frame, mod 4.
    fn phase(&self) -> usize {
        (self.flags >> PHASE_SHIFT) as usize
    }

    fn set_phase(&mut self, phase: usize) {
        self.flags = (self.flags & !(3 << PHASE_SHIFT)) | (((phase & 3) as u8) << PHASE_SHIFT);
    }

    /// Continuation frames of the current message so far.
    fn fragment_count(&self) -> u32 {
        let [a, b, c] = self.fragments;
        u32::from_le_bytes([a, b, c, 0])
    }

    fn set_fragment_count(&mut self, n: u32) {
        let [a, b, c, _] = n.min(MAX_FRAGMENTS).to_le_bytes();
        self.fragments = [a, b, c];
    }

    /// Whether a data message is in progress: its first frame's header has been read (its
    /// first piece may not have been delivered yet) and its last piece has not.
    pub fn in_message(&self) -> bool {
        self.flags & IN_MESSAGE != 0
    }

    /// Decodes the next event from the start of `buf`.
    ///
    /// Returns how many bytes were used and the event, if one is complete. Data payloads
    /// are unmasked in place in `buf` and returned as a borrow of it. Call again with the
    /// rest of the input until `event` is `None`; keep the unused bytes (at most a partial
    /// header, or a partial control frame: 131 bytes) and prepend them to the next input.
    pub fn decode<'a>(
        &mut self,
        config: &DecoderConfig,
        buf: &'a mut [u8],
    ) -> Result<Decoded<'a>, ProtocolError> {
        let mut consumed = 0;
        loop {
            if self.flags & IN_FRAME != 0 {
                let available = (buf.len() - consumed).min(self.remaining as usize);
                let frame_done = available == self.remaining as usize;
                let last = frame_done && self.flags & FRAME_FIN != 0;
                let first = self.flags & FIRST != 0;
                if available == 0 && !frame_done {
                    return Ok(Decoded {
                        consumed,
                        event: None,
                    });
                }
                if available == 0 && !last && !first {
                    // An empty middle fragment: nothing to report.
                    self.flags &= !IN_FRAME;
                    continue;
                }
                let piece = &mut buf[consumed..consumed + available];
                apply_mask(piece, self.mask, self.phase());
                let piece = &*piece;
                self.set_phase(self.phase() + available);
                self.remaining -= available as u32;
                consumed += available;
                let compressed = self.flags & COMPRESSED != 0;
                let text = self.flags & TEXT != 0;
                let proof = if !text || compressed {
                    TextProof::None
                } else if first && last {
                    // The piece is the whole message: nothing carries over to another
                    // piece, so validate it in one go.
                    TextProof::Whole(validate(piece).ok_or(ProtocolError::InvalidUtf8)?)
                } else {
                    let before = self.utf8;
                    self.utf8
                        .feed(piece)
                        .map_err(|_| ProtocolError::InvalidUtf8)?;
                    if last {
                        self.utf8.finish().map_err(|_| ProtocolError::InvalidUtf8)?;
                    }
                    TextProof::Chain {
                        before,
                        after: self.utf8,
                    }
                };
                self.flags &= !FIRST;
                if frame_done {
                    self.flags &= !IN_FRAME;
                }
                if last {
                    self.flags &= !(IN_MESSAGE | TEXT | COMPRESSED);
                }
                let kind = if text {
                    DataKind::Text
                } else {
                    DataKind::Binary
                };
                let event = Event::Data(Data {
                    kind,
                    payload: piece,
                    first,
                    last,
                    compressed,
                    text: proof,
                });
                return Ok(Decoded {
                    consumed,
                    event: Some(event),
                });
            }

            let Some((head, head_len)) =
                FrameHead::parse_with(&buf[consumed..], config.lenient_lengths)?
            else {
                return Ok(Decoded {
                    consumed,
                    event: None,
                });
            };
            self.check_common(config, &head)?;
            if head.opcode.is_control() {
                return self.control(head, head_len, consumed, buf);
            }
            let start = consumed + head_len;
            if let Some(end) = self.single_frame_end(config, &head, start, buf.len()) {
                return deliver_single_frame(head, start, end, buf);
            }
            self.start_data_frame(config, &head)?;
            consumed += head_len;
        }
    }

    /// The fast path for the common frame: when this decoder is between messages and `buf`
    /// starts with a whole single-frame text or binary message (FIN, no RSV bit, masked as
    /// the server role requires, a 7- or minimal 16-bit length within
    /// [`DecoderConfig::max_frame_size`] and [`DecoderConfig::max_message_size`]), unmasks
    /// it in place, validates text, and returns the message with the bytes it used.
    ///
    /// `None` when anything else is at the start of `buf` (a control frame, a fragment, a
    /// partial frame, a compressed or oversized message, a client-role config, a message
    /// in progress, any violation): nothing was touched, so the caller passes the same
    /// bytes to [`Decoder::decode`], which delivers or rejects them. `Some(Err(_))` only for
    /// invalid UTF-8 in a text message (the payload is then unmasked; the connection must
    /// be failed, as `decode` would fail it with the same error). The decoder's state is
    /// neither read beyond "between messages" nor changed, so it need not be copied out
    /// of wherever it lives for this call. Checked against `decode` by unit tests at
    /// every split and by the `fast_path` fuzz target. Always inlined: it is small, and
    /// called once per message its call and its returned tuple cost a fifth of it.
    #[inline(always)]
    pub fn decode_message<'a>(
        &self,
        config: &DecoderConfig,
        buf: &'a mut [u8],
    ) -> Option<Result<(Message<'a>, usize), ProtocolError>> {
        if self.flags & (IN_MESSAGE | IN_FRAME) != 0 || config.role != Role::Server {
            return None;
        }
        let [b0, b1, ..] = *buf else { return None };
        // FIN, RSV 0, text (0x1) or binary (0x2); masked.
        if b0 != 0x81 && b0 != 0x82 || b1 & 0x80 == 0 {
            return None;
        }
        let (len, start) = match b1 & 0x7F {
            len @ 0..=125 => (len as usize, 6),
            126 => {
                let [_, _, l0, l1, ..] = *buf else {
                    return None;
                };
                let len = u16::from_be_bytes([l0, l1]) as usize;
                if len < 126 {
                    return None; // non-minimal: `decode` rejects it or, lenient, takes it
                }
                (len, 8)
            }
            _ => return None,
        };
        let limit = config.max_frame_size.min(config.max_message_size);
        if len as u64 > limit {
            return None;
        }
        let end = start + len;
        if buf.len() < end {
            return None;
        }
        let (head, payload) = buf[..end].split_at_mut(start);
        let key = [
            head[start - 4],
            head[start - 3],
            head[start - 2],
            head[start - 1],
        ];
        let message = if b0 == 0x81 {
            match unmask_text(payload, key) {
                Some(text) => Message::Text(text),
                None => return Some(Err(ProtocolError::InvalidUtf8)),
            }
        } else {
            apply_mask(payload, key, 0);
            Message::Binary(payload)
        };
        Some(Ok((message, end)))
    }

    /// Where the payload of `head`, starting at `start`, ends, when the frame is a whole
    /// message within the limits and `buf_len` bytes hold all of it.
    ///
    /// Most messages are a single frame that arrives in one read; those skip the state
    /// machine and leave the decoder untouched. Anything else (fragments, partial payloads,
    /// ordering or limit violations) goes through [`Decoder::start_data_frame`].
    #[inline]
    fn single_frame_end(
        &self,
        config: &DecoderConfig,
        head: &FrameHead,
        start: usize,
        buf_len: usize,
    ) -> Option<usize> {
        let single = head.fin && head.opcode != OpCode::Continuation && !self.in_message();
        let limit = config
            .max_frame_size
            .min(config.max_message_size)
            .min(u32::MAX as u64);
        let available = (buf_len - start) as u64;
        (single && head.len <= limit && head.len <= available).then(|| start + head.len as usize)
    }

    /// Rules every frame obeys: RSV bits and the masking role.
    fn check_common(&self, config: &DecoderConfig, head: &FrameHead) -> Result<(), ProtocolError> {
        if head.rsv & !config.allowed_rsv != 0 {
            return Err(ProtocolError::ReservedBits);
        }
        // RSV1 (compression) marks a message, so only its first frame may carry it.
        if head.rsv & RSV1 != 0 && !matches!(head.opcode, OpCode::Text | OpCode::Binary) {
            return Err(ProtocolError::ReservedBits);
        }
        let masked = head.mask.is_some();
        if masked != (config.role == Role::Server) {
            return Err(ProtocolError::MaskMismatch);
        }
        Ok(())
    }

    /// A control frame: delivered whole, or nothing of it consumed.
    fn control<'a>(
        &mut self,
        head: FrameHead,
        head_len: usize,
        consumed: usize,
        buf: &'a mut [u8],
    ) -> Result<Decoded<'a>, ProtocolError> {
        let start = consumed + head_len;
        let end = start + head.len as usize; // len <= 125, checked by FrameHead::parse
        if buf.len() < end {
            return Ok(Decoded {
                consumed,
                event: None,
            });
        }
        let payload = &mut buf[start..end];
        if let Some(key) = head.mask {
            apply_mask(payload, key, 0);
        }
        let payload = &*payload;
        let event = match head.opcode {
            OpCode::Ping => Event::Ping(payload),
            OpCode::Pong => Event::Pong(payload),
            _ => Event::Close(parse_close_payload(payload)?),
        };
        Ok(Decoded {
            consumed: end,
            event: Some(event),
        })
    }

    /// A text, binary or continuation header: check ordering and limits, start its payload.
    fn start_data_frame(
        &mut self,
        config: &DecoderConfig,
        head: &FrameHead,
    ) -> Result<(), ProtocolError> {
        let max_frame = config.max_frame_size.min(u32::MAX as u64);
        let max_message = config.max_message_size.min(u32::MAX as u64);
        match head.opcode {
            OpCode::Continuation if !self.in_message() => {
                return Err(ProtocolError::UnexpectedContinuation);
            }
            OpCode::Continuation => {
                let n = self.fragment_count() + 1;
                if n >= config.max_fragments.min(MAX_FRAGMENTS) {
                    return Err(ProtocolError::TooManyFragments);
                }
                self.set_fragment_count(n);
            }
            _ if self.in_message() => return Err(ProtocolError::ExpectedContinuation),
            opcode => {
                self.flags = IN_MESSAGE | FIRST;
                self.set_fragment_count(0);
                if opcode == OpCode::Text {
                    self.flags |= TEXT;
                }
                if head.rsv & RSV1 != 0 {
                    self.flags |= COMPRESSED;
                }
                self.message_len = 0;
                self.utf8 = Utf8Stream::default();
            }
        }
        if head.len > max_frame {
            return Err(ProtocolError::FrameTooBig);
        }
        let message_len = self.message_len as u64 + head.len;
        if message_len > max_message {
            return Err(ProtocolError::MessageTooBig);
        }
        self.message_len = message_len as u32;
        self.remaining = head.len as u32;
        self.mask = head.mask.unwrap_or([0; 4]);
        self.set_phase(0);
        self.flags |= IN_FRAME;
        if head.fin {
            self.flags |= FRAME_FIN;
        } else {
            self.flags &= !FRAME_FIN;
        }
        Ok(())
    }
}

/// Delivers a single-frame message found whole in `buf[start..end]` (see
/// [`Decoder::single_frame_end`]): unmasked, text validated, as its first and last piece.
#[inline]
fn deliver_single_frame<'a>(
    head: FrameHead,
    start: usize,
    end: usize,
    buf: &'a mut [u8],
) -> Result<Decoded<'a>, ProtocolError> {
    let payload = &mut buf[start..end];
    let compressed = head.rsv & RSV1 != 0;
    if head.opcode == OpCode::Text && !compressed {
        let text =
            unmask_text(payload, head.mask.unwrap_or([0; 4])).ok_or(ProtocolError::InvalidUtf8)?;
        return Ok(Decoded {
            consumed: end,
            event: Some(Event::Data(Data {
                kind: DataKind::Text,
                payload: text.as_bytes(),
                first: true,
                last: true,
                compressed,
                text: TextProof::Whole(text),
            })),
        });
    }
    if let Some(key) = head.mask {
        apply_mask(payload, key, 0);
    }
    let payload = &*payload;
    let kind = match head.opcode {
        OpCode::Text => DataKind::Text,
        _ => DataKind::Binary,
    };
    let text = TextProof::None;
    let event = Event::Data(Data {
        kind,
        payload,
        first: true,
        last: true,
        compressed,
        text,
    });
    Ok(Decoded {
        consumed: end,
        event: Some(event),
    })
}
