//! The per-connection record, stored inline in the worker's slab.

use std::os::fd::RawFd;

use throng_protocol::Decoder;

use crate::pool::Spill;

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Phase {
    /// Waiting for the upgrade request.
    Handshake,
    /// Answering a plain HTTP request or a refused upgrade; closes once the answer is out.
    Http,
    /// WebSocket open.
    Open,
    /// We sent a close frame and wait for the peer's.
    Closing,
    /// Done: output flushes, then the write side is shut and we wait for the peer's FIN.
    Draining,
}

/// We sent a close frame: nothing more may be sent.
pub(crate) const CLOSE_SENT: u16 = 1;
/// The peer's close frame arrived.
pub(crate) const CLOSE_RECEIVED: u16 = 1 << 1;
/// A ping went out and nothing has arrived since.
pub(crate) const PING_SENT: u16 = 1 << 2;
/// Reading is paused until output drains.
pub(crate) const READ_PAUSED: u16 = 1 << 3;
/// Output rose above the low-water mark: `on_drain` fires when it falls back.
pub(crate) const DRAIN_WANTED: u16 = 1 << 4;
/// `on_open` ran, so `on_close` is owed.
pub(crate) const OPENED: u16 = 1 << 5;
/// The close handshake completed (for the shutdown report).
pub(crate) const CLEAN: u16 = 1 << 6;
/// The socket failed; the connection is being torn down.
pub(crate) const BROKEN: u16 = 1 << 7;
/// Joined a topic at some point (so closing it must clean the topic table).
pub(crate) const SUBSCRIBED: u16 = 1 << 8;
/// Output was staged this turn; the connection is on the core's flush list.
pub(crate) const DIRTY: u16 = 1 << 9;
/// The peer's FIN arrived while output was still pending: remove once it is out.
pub(crate) const PEER_EOF: u16 = 1 << 10;
/// This turn's first output waits as an arena piece on the flush list, not in the spill.
pub(crate) const DIRECT: u16 = 1 << 11;
/// A completion backend holds this connection's output until it reports the send over.
pub(crate) const SENDING: u16 = 1 << 12;
/// The connection speaks TLS: its session is in the worker's side table
/// ([`crate::tls::Sessions`]), keyed by slab key.
pub(crate) const TLS: u16 = 1 << 13;
/// permessage-deflate was negotiated: RSV1 is accepted on input and compressed messages
/// are inflated in the worker's shared stream; output is compressed unless `PLAIN_OUT`.
pub(crate) const DEFLATE: u16 = 1 << 14;
/// The client limited the server's window below the shared compressor's 15 bits: its
/// messages go out uncompressed (which RFC 7692 always allows).
pub(crate) const PLAIN_OUT: u16 = 1 << 15;
// The next two bits mean something only while the connection is in Phase::Handshake, and
// they share their bits with DEFLATE and PLAIN_OUT, which mean something only after the
// upgrade: sixteen flags are all a 48-byte record has room for. The upgrade clears them
// (HANDSHAKE_ONLY) before it sets the extension's bits.
/// A plain HTTP request was answered and the connection kept for the next one: its clock
/// is the keep-alive timeout until that request's first byte arrives. Handshake phase only.
pub(crate) const KEPT_ALIVE: u16 = 1 << 15;
/// The listener speaks the PROXY protocol and this connection's header has not arrived.
/// Handshake phase only.
pub(crate) const AWAIT_PROXY: u16 = 1 << 14;
/// The bits that lose their meaning at the upgrade (see above).
pub(crate) const HANDSHAKE_ONLY: u16 = KEPT_ALIVE | AWAIT_PROXY;

/// One connection. Kept small because a worker holds hundreds of thousands: 48 bytes
/// plus the handler's state, with the timer stamp and the first topic inline so that an
/// idle subscriber needs no other per-connection object (the wheel holds its 4-byte key,
/// the topic a bit or a key). Everything that varies in size (partial input, a message
/// being assembled, queued output) lives in a pooled [`Spill`] lent only while needed.
pub(crate) struct Conn<S> {
    pub fd: RawFd,
    /// Distinguishes this connection from earlier ones in the same slab slot.
    pub generation: u32,
    /// Tick the current timer clock started: accept (handshake), last input (open),
    /// close sent (closing, draining).
    pub since: u32,
    /// Low 16 bits of the tick this connection is filed under in the timer wheel; 0 when
    /// not filed (see `timer::stamp`).
    pub wheel_at: u16,
    /// The first topic this connection joined, as `Topics` encodes it inline; 0 for none.
    /// Further topics live in the topic table's side map.
    pub topic: u16,
    pub phase: Phase,
    pub flags: u16,
    pub decoder: Decoder,
    pub spill: Option<Box<Spill>>,
    /// The handler's per-connection state, set when the upgrade is accepted.
    pub state: Option<S>,
}

/// The record's size without user state: fd (4), generation (4), the clock's start tick
/// (4), the timer stamp (2), the inline topic (2), phase (1), flags (2), the 20-byte
/// decoder, the spill pointer (8) and `Option<()>` (1). Checked so that growth is a
/// deliberate choice; the slab stores it with no tag of its own (its vacant/occupied
/// tag hides in the phase byte's spare values), checked by a test below.
pub(crate) const CONN_BYTES: usize = 48;
const _: () = assert!(size_of::<Conn<()>>() <= CONN_BYTES);

/// Most address space a worker reserves for its slab up front (64 MiB: 1.4 million
/// 48-byte records). Reserved, the slab never moves: a doubling vector copies itself as it
/// grows and leaves the freed copies behind in the heap, resident. Untouched pages of the
/// reservation cost no memory; a slot's page is touched when a connection first uses it.
pub(crate) const SLAB_RESERVE_BYTES: usize = 64 << 20;

/// The slots to reserve for a worker allowing `max_connections` records of `Conn<S>`.
pub(crate) fn slab_reserve<S>(max_connections: usize) -> usize {
    max_connections.min(SLAB_RESERVE_BYTES / size_of::<Conn<S>>().max(1))
}

impl<S> Conn<S> {
    pub fn new(fd: RawFd, generation: u32, now: u32) -> Self {
        Conn {
            fd,
            generation,
            since: now,
            wheel_at: 0,
            topic: 0,
            phase: Phase::Handshake,
            flags: 0,
            decoder: Decoder::new(),
            spill: None,
            state: None,
        }
    }

    pub fn has(&self, flag: u16) -> bool {
        self.flags & flag != 0
    }

    /// Bytes of output not yet confirmed written (staged, queued or in flight).
    pub fn buffered(&self) -> usize {
        self.spill.as_ref().map_or(0, |s| s.out_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The slab's entry (an enum of a vacant link and the record) costs no more than the
    /// record: measured as the distance between neighbouring slots.
    #[test]
    fn slab_slot_is_the_record() {
        let mut slab = slab::Slab::<Conn<()>>::with_capacity(2);
        let a = slab.insert(Conn::new(3, 1, 1));
        let b = slab.insert(Conn::new(4, 2, 1));
        let stride = &slab[b] as *const Conn<()> as usize - &slab[a] as *const Conn<()> as usize;
        assert_eq!(stride, CONN_BYTES);
    }
}
