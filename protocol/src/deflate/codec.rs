//! The shared codec: one raw-deflate compressor and one inflater, reset after every
//! message, so one pair serves all of a worker's connections (no context takeover either
//! way, as negotiated) and no connection holds compression state.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use crate::decoder::DataKind;
use crate::error::ProtocolError;
use crate::message::Message;
use crate::utf8::validate;

/// The empty stored block a sync flush ends with: a sender strips it from each message
/// and a receiver appends it again (RFC 7692 7.2.1 and 7.2.2).
pub const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// Compresses whole messages, each on its own (no context carried to the next).
#[derive(Debug)]
pub struct Deflater {
    stream: Compress,
}

impl Deflater {
    /// A raw-deflate compressor with a 15-bit window at `level` (0-9; 1 is fastest).
    pub fn new(level: u32) -> Deflater {
        Deflater {
            stream: Compress::new(Compression::new(level.min(9)), false),
        }
    }

    /// Appends `input` compressed to `out`, as a permessage-deflate payload: a sync flush
    /// with its 4-byte tail stripped. Returns false (and leaves `out` as it was) if the
    /// stream failed, which it does only on misuse; the caller then sends the message
    /// uncompressed. The stream is reset either way.
    pub fn compress(&mut self, input: &[u8], out: &mut Vec<u8>) -> bool {
        let ok = compress_message(self, input, out);
        self.stream.reset();
        ok
    }
}

impl Compressor for Deflater {
    fn sync(&mut self, input: &[u8], out: &mut Vec<u8>) -> Option<usize> {
        let before = self.stream.total_in();
        self.stream
            .compress_vec(input, out, FlushCompress::Sync)
            .ok()?;
        Some((self.stream.total_in() - before) as usize)
    }
}

/// Inflates whole messages, each on its own, with a hard cap on the output.
#[derive(Debug)]
pub struct Inflater {
    stream: Decompress,
}

impl Default for Inflater {
    fn default() -> Self {
        Inflater::new()
    }
}

impl Inflater {
    /// A raw-deflate inflater with a 15-bit window (it inflates what any window up to 15
    /// bits produced, so it needs no `client_max_window_bits`).
    pub fn new() -> Inflater {
        Inflater {
            stream: Decompress::new(false),
        }
    }

    /// Appends the message whose compressed payload is `pieces` (in order, without the
    /// tail) inflated to `out`, at most `max` bytes of it: more fails with
    /// [`ProtocolError::MessageTooBig`] (1009) having allocated at most `max + 1` bytes
    /// past `out`'s length, whatever the input (a deflate bomb). Data that is not deflate
    /// fails with [`ProtocolError::InvalidDeflate`]. A final (BFINAL) block ends the
    /// message; anything after it is ignored. The stream is reset either way.
    pub fn inflate(
        &mut self,
        pieces: &[&[u8]],
        max: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), ProtocolError> {
        let start = out.len();
        let result = inflate_message(self, pieces, start.saturating_add(max), out);
        self.stream.reset(false);
        if result.is_err() {
            out.truncate(start);
        }
        result.map(drop)
    }

    /// [`Inflater::inflate`] into `out` (cleared first), as a message of `kind`: text is
    /// validated once inflated ([`ProtocolError::InvalidUtf8`], 1007).
    pub fn inflate_message<'o>(
        &mut self,
        kind: DataKind,
        pieces: &[&[u8]],
        max: usize,
        out: &'o mut Vec<u8>,
    ) -> Result<Message<'o>, ProtocolError> {
        out.clear();
        self.inflate(pieces, max, out)?;
        match kind {
            DataKind::Binary => Ok(Message::Binary(out)),
            DataKind::Text => validate(out)
                .map(Message::Text)
                .ok_or(ProtocolError::InvalidUtf8),
        }
    }
}

impl Decompressor for Inflater {
    fn step(&mut self, input: &[u8], out: &mut Vec<u8>) -> Option<(usize, bool)> {
        let before = self.stream.total_in();
        let status = self
            .stream
            .decompress_vec(input, out, FlushDecompress::None)
            .ok()?;
        Some((
            (self.stream.total_in() - before) as usize,
            status == Status::StreamEnd,
        ))
    }
}

/// The shared pair a worker keeps: one compressor, one inflater.
#[derive(Debug)]
pub struct SharedCodec {
    /// Compresses outgoing messages.
    pub deflater: Deflater,
    /// Inflates incoming messages.
    pub inflater: Inflater,
}

impl SharedCodec {
    /// A compressor at `level` and an inflater. Memory: with zlib-rs about 270 KiB for
    /// the compressor (window, hash table, pending buffer) and 40 KiB for the inflater,
    /// once per worker.
    pub fn new(level: u32) -> SharedCodec {
        SharedCodec {
            deflater: Deflater::new(level),
            inflater: Inflater::new(),
        }
    }
}

/// One step of a compressor with a sync flush.
pub(crate) trait Compressor {
    /// Compresses what it can of `input` into `out`'s spare capacity with a sync flush;
    /// returns the input bytes taken, or `None` if the stream failed.
    fn sync(&mut self, input: &[u8], out: &mut Vec<u8>) -> Option<usize>;
}

/// One step of an inflater.
pub(crate) trait Decompressor {
    /// Inflates what it can of `input` into `out`'s spare capacity; returns the input
    /// bytes taken and whether a final block ended the stream, or `None` for data that
    /// is not deflate.
    fn step(&mut self, input: &[u8], out: &mut Vec<u8>) -> Option<(usize, bool)>;
}

/// Appends `input` compressed by `c` to `out` as a permessage-deflate payload: a sync
/// flush with its 4-byte tail stripped. Returns false (and leaves `out` as it was) if
/// the stream failed.
pub(crate) fn compress_message<C: Compressor>(c: &mut C, input: &[u8], out: &mut Vec<u8>) -> bool {
    let start = out.len();
    let mut pos = 0;
    let ok = loop {
        if out.capacity() - out.len() < 64 {
            // Deflate rarely grows text past its size; reserve about half of what is
            // left, then more if that was not enough.
            out.reserve((input.len() - pos) / 2 + 64);
        }
        let Some(taken) = c.sync(&input[pos..], out) else {
            break false;
        };
        pos += taken;
        // The flush is complete once it returns with output space to spare.
        if pos == input.len() && out.len() < out.capacity() {
            break true;
        }
    };
    if ok && out[start..].ends_with(&TAIL) {
        out.truncate(out.len() - TAIL.len());
        true
    } else {
        out.truncate(start);
        false
    }
}

/// Inflates the message whose compressed payload is `pieces` (the tail appended here)
/// with `d` into `out`, failing once `out` would pass `limit` bytes: the buffer never
/// grows past `limit + 1`. Returns whether a final block ended the stream.
pub(crate) fn inflate_message<D: Decompressor>(
    d: &mut D,
    pieces: &[&[u8]],
    limit: usize,
    out: &mut Vec<u8>,
) -> Result<bool, ProtocolError> {
    for piece in pieces.iter().copied().chain([&TAIL[..]]) {
        let mut pos = 0;
        loop {
            if out.len() == out.capacity() {
                if out.len() > limit {
                    return Err(ProtocolError::MessageTooBig);
                }
                // Double, but never past one byte over the cap: that byte tells a
                // message of exactly `max` from a longer one.
                let grow = out.capacity().max(4096).min(limit + 1 - out.len());
                out.reserve_exact(grow);
            }
            let before_out = out.len();
            let (taken, ended) = d
                .step(&piece[pos..], out)
                .ok_or(ProtocolError::InvalidDeflate)?;
            pos += taken;
            if out.len() > limit {
                return Err(ProtocolError::MessageTooBig);
            }
            if ended {
                return Ok(true);
            }
            let progressed = taken != 0 || out.len() != before_out;
            if pos == piece.len() && out.len() < out.capacity() {
                break; // this piece is in, and nothing more is pending
            }
            if !progressed && out.len() < out.capacity() {
                return Err(ProtocolError::InvalidDeflate);
            }
        }
    }
    Ok(false)
}
