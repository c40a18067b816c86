//! The frame header codec (RFC 6455 5.2): parse a header from bytes, write one into a
//! caller's buffer. Payloads never pass through here, so the encoder never copies them.

use crate::error::ProtocolError;

/// A frame opcode that RFC 6455 defines. Reserved opcodes never become an `OpCode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum OpCode {
    /// 0x0: continues a fragmented message.
    Continuation = 0x0,
    /// 0x1: a text (UTF-8) message.
    Text = 0x1,
    /// 0x2: a binary message.
    Binary = 0x2,
    /// 0x8: close.
    Close = 0x8,
    /// 0x9: ping.
    Ping = 0x9,
    /// 0xA: pong.
    Pong = 0xA,
}

impl OpCode {
    /// Maps the low nibble of the first header byte, or `None` for a reserved opcode.
    pub fn from_u8(v: u8) -> Option<OpCode> {
        Some(match v {
            0x0 => OpCode::Continuation,
            0x1 => OpCode::Text,
            0x2 => OpCode::Binary,
            0x8 => OpCode::Close,
            0x9 => OpCode::Ping,
            0xA => OpCode::Pong,
            _ => return None,
        })
    }

    /// Close, ping and pong are control frames: never fragmented, at most 125 bytes.
    pub fn is_control(self) -> bool {
        (self as u8) & 0x8 != 0
    }
}

/// RSV1, the bit permessage-deflate (RFC 7692) claims to mark a compressed message.
pub const RSV1: u8 = 0b100;
/// RSV2.
pub const RSV2: u8 = 0b010;
/// RSV3.
pub const RSV3: u8 = 0b001;

/// Room for the longest header: 2 bytes, 8 bytes of extended length, 4 bytes of mask.
pub type HeaderBuf = [u8; MAX_HEADER_LEN];

/// The longest frame header: 14 bytes.
pub const MAX_HEADER_LEN: usize = 14;

/// A frame header, parsed or about to be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHead {
    /// Last frame of its message.
    pub fin: bool,
    /// The three reserved bits, RSV1 highest ([`RSV1`], [`RSV2`], [`RSV3`]).
    pub rsv: u8,
    /// What the frame carries.
    pub opcode: OpCode,
    /// The masking key; clients must mask, servers must not.
    pub mask: Option<[u8; 4]>,
    /// Payload length in bytes.
    pub len: u64,
}

impl FrameHead {
    fn new(opcode: OpCode, len: u64) -> FrameHead {
        FrameHead {
            fin: true,
            rsv: 0,
            opcode,
            mask: None,
            len,
        }
    }
    fn control(opcode: OpCode, len: u8) -> FrameHead {
        // Longer would take an extended length form, which the peer must reject.
        debug_assert!(len <= 125, "control frame payload over 125 bytes");
        FrameHead::new(opcode, len as u64)
    }
    /// A final, unmasked text frame of `len` bytes.
    pub fn text(len: u64) -> FrameHead {
        FrameHead::new(OpCode::Text, len)
    }
    /// A final, unmasked binary frame of `len` bytes.
    pub fn binary(len: u64) -> FrameHead {
        FrameHead::new(OpCode::Binary, len)
    }
    /// A continuation frame of `len` bytes; set [`FrameHead::fin`] on the last one.
    pub fn continuation(len: u64, fin: bool) -> FrameHead {
        FrameHead {
            fin,
            ..FrameHead::new(OpCode::Continuation, len)
        }
    }
    /// A ping frame (`len` <= 125).
    pub fn ping(len: u8) -> FrameHead {
        FrameHead::control(OpCode::Ping, len)
    }
    /// A pong frame (`len` <= 125).
    pub fn pong(len: u8) -> FrameHead {
        FrameHead::control(OpCode::Pong, len)
    }
    /// A close frame (`len` is 0, or 2 + reason bytes, <= 125).
    pub fn close(len: u8) -> FrameHead {
        FrameHead::control(OpCode::Close, len)
    }
    /// The same header with FIN set to `fin` (clear it on all but the last fragment).
    pub fn with_fin(self, fin: bool) -> FrameHead {
        FrameHead { fin, ..self }
    }
    /// The same header with RSV bits `rsv` (for an extension that claimed them).
    pub fn with_rsv(self, rsv: u8) -> FrameHead {
        FrameHead {
            rsv: rsv & 0b111,
            ..self
        }
    }
    /// The same header masked with `key` (client role). The caller masks the payload.
    pub fn with_mask(self, key: [u8; 4]) -> FrameHead {
        FrameHead {
            mask: Some(key),
            ..self
        }
    }

    /// Bytes [`FrameHead::encode`] writes: 2, 4 or 10, plus 4 when masked.
    pub fn encoded_len(&self) -> usize {
        let base = match self.len {
            0..=125 => 2,
            126..=0xFFFF => 4,
            _ => 10,
        };
        base + if self.mask.is_some() { 4 } else { 0 }
    }

    /// Writes the header (shortest length form) into `out` and returns the written part.
    pub fn encode<'b>(&self, out: &'b mut HeaderBuf) -> &'b [u8] {
        out[0] = (u8::from(self.fin) << 7) | ((self.rsv & 0b111) << 4) | self.opcode as u8;
        let mask_bit = if self.mask.is_some() { 0x80 } else { 0 };
        let mut n = match self.len {
            0..=125 => {
                out[1] = mask_bit | self.len as u8;
                2
            }
            126..=0xFFFF => {
                out[1] = mask_bit | 126;
                out[2..4].copy_from_slice(&(self.len as u16).to_be_bytes());
                4
            }
            _ => {
                out[1] = mask_bit | 127;
                out[2..10].copy_from_slice(&self.len.to_be_bytes());
                10
            }
        };
        if let Some(key) = self.mask {
            out[n..n + 4].copy_from_slice(&key);
            n += 4;
        }
        &out[..n]
    }

    /// Parses a header from the start of `buf`.
    ///
    /// `Ok(None)` when `buf` does not yet hold the whole header (nothing is consumed);
    /// otherwise the header and its length in bytes. Checks the rules a header alone
    /// decides: reserved opcodes, fragmented or oversized control frames, and a 64-bit
    /// length with its top bit set. Rules that need context (RSV bits, masking role,
    /// continuation order, size limits) are the [`crate::Decoder`]'s.
    pub fn parse(buf: &[u8]) -> Result<Option<(FrameHead, usize)>, ProtocolError> {
        Self::parse_with(buf, false)
    }

    /// [`FrameHead::parse`], but with `lenient` a length written in a longer form than
    /// needed (RFC 6455 5.2: the minimal one MUST be used) is accepted instead of failing
    /// with [`ProtocolError::NonMinimalLength`].
    pub fn parse_with(
        buf: &[u8],
        lenient: bool,
    ) -> Result<Option<(FrameHead, usize)>, ProtocolError> {
        let [b0, b1, ..] = *buf else { return Ok(None) };
        let opcode = OpCode::from_u8(b0 & 0x0F).ok_or(ProtocolError::ReservedOpcode)?;
        let fin = b0 & 0x80 != 0;
        let len7 = b1 & 0x7F;
        if opcode.is_control() {
            if !fin {
                return Err(ProtocolError::FragmentedControl);
            }
            if len7 > 125 {
                return Err(ProtocolError::ControlTooLong);
            }
        }
        let (len, mut n) = match len7 {
            126 => match buf.get(2..4) {
                Some(b) => {
                    let len = u16::from_be_bytes([b[0], b[1]]) as u64;
                    if len < 126 && !lenient {
                        return Err(ProtocolError::NonMinimalLength);
                    }
                    (len, 4)
                }
                None => return Ok(None),
            },
            127 => match buf.get(2..10) {
                Some(b) => {
                    let len = u64::from_be_bytes(b.try_into().expect("8 bytes"));
                    if len >> 63 != 0 {
                        return Err(ProtocolError::LengthMsbSet);
                    }
                    if len <= 0xFFFF && !lenient {
                        return Err(ProtocolError::NonMinimalLength);
                    }
                    (len, 10)
                }
                None => return Ok(None),
            },
            l => (l as u64, 2),
        };
        let mask = if b1 & 0x80 != 0 {
            let Some(k) = buf.get(n..n + 4) else {
                return Ok(None);
            };
            n += 4;
            Some([k[0], k[1], k[2], k[3]])
        } else {
            None
        };
        let head = FrameHead {
            fin,
            rsv: (b0 >> 4) & 0b111,
            opcode,
            mask,
            len,
        };
        Ok(Some((head, n)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_every_length_form() {
        for len in [
            0u64,
            1,
            125,
            126,
            127,
            0xFFFF,
            0x1_0000,
            u32::MAX as u64 + 7,
        ] {
            for mask in [None, Some([1, 2, 3, 4])] {
                for op in [OpCode::Text, OpCode::Binary, OpCode::Continuation] {
                    let h = FrameHead {
                        fin: len % 2 == 0,
                        rsv: RSV1,
                        opcode: op,
                        mask,
                        len,
                    };
                    let mut out = HeaderBuf::default();
                    let bytes = h.encode(&mut out).to_vec();
                    assert_eq!(bytes.len(), h.encoded_len());
                    assert_eq!(FrameHead::parse(&bytes), Ok(Some((h, bytes.len()))));
                    for cut in 0..bytes.len() {
                        assert_eq!(FrameHead::parse(&bytes[..cut]), Ok(None), "cut {cut}");
                    }
                }
            }
        }
    }

    #[test]
    fn header_sizes() {
        let mut out = HeaderBuf::default();
        assert_eq!(FrameHead::text(125).encode(&mut out), &[0x81, 125]);
        assert_eq!(
            FrameHead::binary(126).encode(&mut out),
            &[0x82, 126, 0, 126]
        );
        assert_eq!(
            FrameHead::binary(65536).encode(&mut out),
            &[0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0][..]
        );
        assert_eq!(FrameHead::ping(0).encode(&mut out), &[0x89, 0]);
        assert_eq!(
            FrameHead::continuation(3, false).encode(&mut out),
            &[0x00, 3]
        );
    }

    #[test]
    fn header_rules() {
        for op in [3u8, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF] {
            assert_eq!(
                FrameHead::parse(&[0x80 | op, 0x80]),
                Err(ProtocolError::ReservedOpcode)
            );
        }
        assert_eq!(
            FrameHead::parse(&[0x09, 0x80]),
            Err(ProtocolError::FragmentedControl)
        );
        assert_eq!(
            FrameHead::parse(&[0x89, 0x80 | 126]),
            Err(ProtocolError::ControlTooLong)
        );
        let big = [0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(FrameHead::parse(&big), Err(ProtocolError::LengthMsbSet));
        // Lengths in a longer form than needed: refused, or accepted when lenient.
        for long in [
            &[0x82, 126, 0, 125][..],
            &[0x82, 126, 0, 0],
            &[0x82, 127, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF],
            &[0x82, 127, 0, 0, 0, 0, 0, 0, 0, 5],
        ] {
            assert_eq!(FrameHead::parse(long), Err(ProtocolError::NonMinimalLength));
            let (h, n) = FrameHead::parse_with(long, true).unwrap().unwrap();
            assert_eq!(n, long.len());
            assert!(h.len <= 0xFFFF);
        }
        // The smallest lengths of each form are minimal.
        assert!(FrameHead::parse(&[0x82, 126, 0, 126]).unwrap().is_some());
        assert!(
            FrameHead::parse(&[0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0])
                .unwrap()
                .is_some()
        );
    }
}
