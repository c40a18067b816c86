//! The seam between a connection's socket bytes and its WebSocket bytes.
//!
//! Everything the backend reads enters the core through [`Core::input`], and everything
//! the core writes leaves through [`wire_send`]. A byte transform that sits between the
//! socket and the protocol (TLS) plugs in at these two points and nowhere else: on input
//! it turns the backend's buffer into plaintext in place and hands each run of plaintext
//! to [`Core::plain_input`]; on output it turns the connection's staged frames into
//! records before the backend sees them. The backends never know; a plain connection
//! passes straight through.

use std::io;
use std::os::fd::RawFd;

use super::Core;
use crate::conn::*;
use crate::handler::Handler;
use crate::output::{Outbox, Piece};
use crate::sys::{Backend, Handed, Token};

/// Output of one connection on its way to the socket.
pub(super) enum Out<'a> {
    /// Its outbox: queued and staged bytes, in order.
    Outbox(&'a mut Outbox),
    /// One piece, when it has nothing else pending.
    Piece(&'a Piece),
}

/// Hands a connection's output to the backend.
pub(super) fn wire_send<B: Backend>(
    backend: &mut B,
    fd: RawFd,
    token: Token,
    out: Out<'_>,
) -> io::Result<Handed> {
    match out {
        Out::Outbox(out) => backend.send(fd, token, out),
        Out::Piece(piece) => backend.send_direct(fd, token, piece),
    }
}

impl<S> Core<S> {
    /// Bytes arrived from the socket (`bytes` is the backend's buffer, this call only).
    /// Returns whether to keep reading this connection now.
    pub fn input<H: Handler<State = S>>(
        &mut self,
        h: &mut H,
        key: usize,
        bytes: &mut [u8],
    ) -> bool {
        self.stats.bytes_in += bytes.len() as u64;
        self.plain_input(h, key, bytes);
        self.reap(h);
        self.conns.get(key).is_some_and(|c| !c.has(READ_PAUSED))
    }
}
