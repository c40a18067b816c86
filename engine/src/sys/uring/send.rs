//! Sends: at most one in flight per connection, from a direct piece (plain `send`) or
//! from an outbox's buffers (`sendmsg`), kept alive in a record until the kernel reports
//! the send over.

use std::io;
use std::os::fd::RawFd;

use bytes::Bytes;
use io_uring::opcode;
use io_uring::types::Fd;

use super::{OP_SEND, Uring};
use crate::output::Piece;
use crate::sys::{Sink, Token};

/// A buffer a send reads from, kept alive until the send completes.
pub(super) enum Buf {
    /// A direct piece (arena or shared frame, non-atomic count), or an outbox's head.
    Piece(Piece),
    /// A sealed stage or a shared frame from an outbox.
    Bytes(Bytes),
}

impl Buf {
    fn as_slice(&self) -> &[u8] {
        match self {
            Buf::Piece(p) => p.as_slice(),
            Buf::Bytes(b) => b,
        }
    }

    fn advance(&mut self, n: usize) {
        match self {
            Buf::Piece(p) => p.advance(n),
            Buf::Bytes(b) => bytes::Buf::advance(b, n),
        }
    }
}

/// A send of several buffers: boxed so the msghdr and iovecs keep their address while
/// the slab of sends grows.
pub(super) struct Multi {
    bufs: Vec<Buf>,
    iov: Vec<libc::iovec>,
    msg: libc::msghdr,
}

/// One send in flight (at most one per connection: the core waits for its end).
pub(super) struct SendOp {
    token: Token,
    fd: RawFd,
    /// Whether the core counts these bytes (outbox) or not (direct piece).
    counted: bool,
    /// Bytes not yet confirmed.
    left: usize,
    /// The one buffer of a plain `send`.
    one: Option<Buf>,
    /// Or several, for a `sendmsg`.
    multi: Option<Box<Multi>>,
}

impl Uring {
    /// The part of a direct write the socket did not take (`n` bytes went), sent on the
    /// ring. Out of line, off the flush loop's path.
    #[cold]
    #[inline(never)]
    pub(super) fn send_rest(&mut self, fd: RawFd, token: Token, piece: &Piece, n: usize) {
        let mut rest = piece.clone();
        rest.advance(n);
        self.send_piece(fd, token, &rest);
    }

    /// Sends one piece for a connection with nothing else pending: the piece (a shared
    /// count on its arena chunk) lives in the send record until the completion.
    pub(super) fn send_piece(&mut self, fd: RawFd, token: Token, piece: &Piece) {
        let slot = self.sends.insert(SendOp {
            token,
            fd,
            counted: false,
            left: piece.len(),
            one: Some(Buf::Piece(piece.clone())),
            multi: None,
        });
        self.submit_send(slot);
    }

    pub(super) fn submit_send(&mut self, slot: usize) {
        let ud = (OP_SEND << 60) | slot as u64;
        // MSG_WAITALL: the kernel itself continues a short send on a stream socket, so a
        // partial completion reaches us only when the socket fails midway.
        let flags = match self.waitall {
            true => libc::MSG_NOSIGNAL | libc::MSG_WAITALL,
            false => libc::MSG_NOSIGNAL,
        };
        let op = &mut self.sends[slot];
        let entry = match (&op.one, &mut op.multi) {
            (Some(b), _) => {
                let b = b.as_slice();
                opcode::Send::new(Fd(op.fd), b.as_ptr(), b.len() as u32)
                    .flags(flags)
                    .build()
            }
            (None, Some(m)) => {
                m.msg.msg_iov = m.iov.as_mut_ptr();
                m.msg.msg_iovlen = m.iov.len() as _;
                opcode::SendMsg::new(Fd(op.fd), &raw const m.msg)
                    .flags(flags as u32)
                    .build()
            }
            (None, None) => unreachable!("a send has buffers"),
        };
        self.push(entry.user_data(ud));
    }

    /// Starts a send of `bufs` (in order) for a connection.
    pub(super) fn start_send(
        &mut self,
        fd: RawFd,
        token: Token,
        counted: bool,
        mut bufs: Vec<Buf>,
    ) {
        let left = bufs.iter().map(|b| b.as_slice().len()).sum();
        let (one, multi) = if bufs.len() == 1 {
            (bufs.pop(), None)
        } else {
            let mut m = self.spare.pop().unwrap_or_else(|| {
                Box::new(Multi {
                    bufs: Vec::new(),
                    iov: Vec::new(),
                    // SAFETY: msghdr is plain old data; all zeroes is a valid empty header.
                    msg: unsafe { std::mem::zeroed() },
                })
            });
            m.iov.extend(bufs.iter().map(|b| libc::iovec {
                iov_base: b.as_slice().as_ptr() as *mut libc::c_void,
                iov_len: b.as_slice().len(),
            }));
            m.bufs = bufs;
            (None, Some(m))
        };
        let slot = self.sends.insert(SendOp {
            token,
            fd,
            counted,
            left,
            one,
            multi,
        });
        self.submit_send(slot);
    }

    pub(super) fn on_send(&mut self, slot: usize, res: i32, sink: &mut impl Sink) {
        let Some(op) = self.sends.get_mut(slot) else {
            return;
        };
        let token = op.token;
        if res < 0 || (res == 0 && op.left > 0) {
            // A zero-byte completion for a non-empty send: the socket is gone. (A cancel
            // at close lands here too; the core no longer knows the token then.)
            self.free_send(slot);
            let err = match res {
                0 => io::ErrorKind::WriteZero.into(),
                r => io::Error::from_raw_os_error(-r),
            };
            return sink.sent(token, Err(err), true);
        }
        let n = (res as usize).min(op.left);
        op.left -= n;
        let counted = if op.counted { n } else { 0 };
        if op.left == 0 {
            self.free_send(slot);
            return sink.sent(token, Ok(counted), true);
        }
        // Partial: continue from where the kernel stopped, before anything queued later.
        match (&mut op.one, &mut op.multi) {
            (Some(b), _) => b.advance(n),
            (None, Some(m)) => {
                let mut skip = n;
                let mut first = 0;
                while skip >= m.iov[first].iov_len {
                    skip -= m.iov[first].iov_len;
                    first += 1;
                }
                m.iov.drain(..first);
                m.bufs.drain(..first);
                let v = &mut m.iov[0];
                // SAFETY: `skip` < iov_len, so the new base stays inside the same buffer.
                v.iov_base = unsafe { v.iov_base.cast::<u8>().add(skip).cast() };
                v.iov_len -= skip;
            }
            (None, None) => {}
        }
        self.submit_send(slot);
        sink.sent(token, Ok(counted), false);
    }

    pub(super) fn free_send(&mut self, slot: usize) {
        let op = self.sends.remove(slot);
        if let Some(mut m) = op.multi
            && self.spare.len() < 64
        {
            m.bufs.clear();
            m.iov.clear();
            self.spare.push(m);
        }
    }
}
