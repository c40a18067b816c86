//! The seam between a connection's socket bytes and its WebSocket bytes.
//!
//! Everything the backend reads enters the core through [`Core::input`], and everything
//! the core writes leaves through [`Core::wire_send`]. A byte transform that sits between
//! the socket and the protocol (TLS, in [`super::secure`]) plugs in at these two points
//! and nowhere else: on input it turns the backend's buffer into plaintext in place and
//! hands each run of plaintext to [`Core::plain_input`]; on output it turns the
//! connection's staged frames into records before the backend sees them. The backends
//! never know; a plain connection passes straight through.

use std::io;

use super::Core;
use crate::conn::*;
use crate::handler::Handler;
use crate::output::Piece;
use crate::sys::{Backend, Handed, Token};

/// Output of one connection on its way to the socket.
pub(super) enum Out<'a> {
    /// Its outbox: queued and staged bytes, in order.
    Outbox,
    /// One piece, when it has nothing else pending.
    Piece(&'a Piece),
}

impl<S> Core<S> {
    /// Hands a connection's output to the backend. For a piece, `Wrote(n)` with `n` at
    /// least its length means it is dealt with (on a TLS connection what the socket did
    /// not take already waits in the wire outbox, counted).
    pub(super) fn wire_send<B: Backend>(
        &mut self,
        backend: &mut B,
        key: usize,
        token: Token,
        out: Out<'_>,
    ) -> io::Result<Handed> {
        let c = &mut self.conns[key];
        let fd = c.fd;
        match (out, c.has(TLS)) {
            (Out::Outbox, false) => match c.spill.as_mut() {
                Some(spill) => backend.send(fd, token, &mut spill.out),
                None => Ok(Handed::Wrote(0)),
            },
            (Out::Piece(piece), false) => backend.send_direct(fd, token, piece),
            (Out::Outbox, true) => self.tls_send(backend, key, token),
            (Out::Piece(piece), true) => self.tls_send_piece(backend, key, token, piece),
        }
    }

    /// Bytes arrived from the socket (`bytes` is the backend's buffer, this call only).
    /// Returns whether to keep reading this connection now.
    pub fn input<H: Handler<State = S>>(
        &mut self,
        h: &mut H,
        key: usize,
        bytes: &mut [u8],
    ) -> bool {
        self.stats.bytes_in += bytes.len() as u64;
        if self.conns[key].has(TLS) {
            self.tls_input(h, key, bytes);
        } else {
            self.plain_input(h, key, bytes);
        }
        self.reap(h);
        self.conns.get(key).is_some_and(|c| !c.has(READ_PAUSED))
    }
}
