//! The bytes a node puts in a Redis message: a small header, then the payload.
//!
//! ```text
//! byte 0      MAGIC (0xB7): marks a throng message, and its version
//! byte 1      flags: bit 0 = text; the other bits must be 0
//! bytes 2..10 origin node id, little-endian u64 (a node skips its own messages)
//! bytes 10..  the payload, as given to publish
//! ```
//! Anything else arriving on a channel (another client's PUBLISH, a truncated or
//! corrupted message, a text payload that is not UTF-8) is garbage: dropped and counted.

/// First byte of every message; a new format gets a new value.
pub const MAGIC: u8 = 0xB7;
/// Header bytes before the payload.
pub const HEADER: usize = 10;
const TEXT: u8 = 1;

/// The header for a message from `origin`.
pub fn header(origin: u64, text: bool) -> [u8; HEADER] {
    let mut h = [0; HEADER];
    h[0] = MAGIC;
    h[1] = if text { TEXT } else { 0 };
    h[2..].copy_from_slice(&origin.to_le_bytes());
    h
}

/// A message read back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Envelope<'a> {
    /// The node that published it.
    pub origin: u64,
    /// Text (valid UTF-8, checked) or binary.
    pub text: bool,
    /// The payload.
    pub payload: &'a [u8],
}

/// Reads a message; `None` when it is not a well-formed throng message.
pub fn parse(bytes: &[u8]) -> Option<Envelope<'_>> {
    if bytes.len() < HEADER || bytes[0] != MAGIC || bytes[1] & !TEXT != 0 {
        return None;
    }
    let text = bytes[1] & TEXT != 0;
    let payload = &bytes[HEADER..];
    if text && std::str::from_utf8(payload).is_err() {
        return None;
    }
    let origin = u64::from_le_bytes(bytes[2..HEADER].try_into().expect("8 bytes"));
    Some(Envelope {
        origin,
        text,
        payload,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_garbage() {
        let mut m = header(0xDEAD_BEEF, true).to_vec();
        m.extend_from_slice("héllo".as_bytes());
        assert_eq!(
            parse(&m),
            Some(Envelope {
                origin: 0xDEAD_BEEF,
                text: true,
                payload: "héllo".as_bytes()
            })
        );
        let mut bin = header(7, false).to_vec();
        bin.extend_from_slice(&[0xff, 0x00]);
        assert_eq!(
            parse(&bin).map(|e| (e.text, e.payload)),
            Some((false, &[0xff, 0][..]))
        );
        assert_eq!(parse(b"hello from redis-cli"), None);
        assert_eq!(parse(&m[..5]), None, "truncated");
        let mut flags = m.clone();
        flags[1] = 0x81;
        assert_eq!(parse(&flags), None, "unknown flag");
        let mut bad_utf8 = header(1, true).to_vec();
        bad_utf8.push(0xC3);
        assert_eq!(parse(&bad_utf8), None, "text that is not UTF-8");
    }
}
