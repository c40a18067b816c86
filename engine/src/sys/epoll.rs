//! The epoll backend, through mio: edge-triggered readiness, reads into one per-worker
//! receive buffer.

use std::io;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::time::Duration;

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Waker};

use super::arena::Piece;
use super::{Backend, Handed, IOV_BATCH, Outbox, Sink, Token, Wake, read, write, write_vectored};
use crate::config::BackendKind;

const LISTENER: mio::Token = mio::Token(usize::MAX);
const WAKER: mio::Token = mio::Token(usize::MAX - 1);
/// Accepts per readiness event before yielding to other work (fairness under a flood).
const ACCEPT_BATCH: usize = 512;
/// Reads of one connection per readiness event before yielding to the others.
const READ_BATCH: usize = 8;

/// epoll via mio.
pub struct Epoll {
    poll: Poll,
    events: Events,
    listener: Option<RawFd>,
    recv: Box<[u8]>,
    /// Connections with input left unread after their batch, or resumed after a pause:
    /// edge-triggered epoll will not report them again, so they are polled here.
    again: Vec<(RawFd, Token)>,
    accept_again: bool,
}

/// Wakes an [`Epoll`] worker (an eventfd registered with its poll).
pub struct EpollWaker(Arc<Waker>);

impl Wake for EpollWaker {
    fn wake(&self) -> io::Result<()> {
        self.0.wake()
    }
}

fn encode(token: Token) -> mio::Token {
    mio::Token(((token.generation as usize) << 32) | token.key as usize)
}

fn decode(token: mio::Token) -> Token {
    Token {
        key: token.0 as u32,
        generation: (token.0 >> 32) as u32,
    }
}

impl Epoll {
    fn accept(&mut self, sink: &mut impl Sink) {
        let Some(listener) = self.listener else {
            return;
        };
        self.accept_again = false;
        for _ in 0..ACCEPT_BATCH {
            match super::socket::accept(listener) {
                Ok(Some(fd)) => sink.accepted(fd),
                Ok(None) => return,
                // ECONNABORTED and friends concern one connection; EMFILE/ENFILE leave the
                // connection queued, so stop for this round instead of spinning.
                Err(e) if e.raw_os_error() == Some(libc::EMFILE) => return,
                Err(e) if e.raw_os_error() == Some(libc::ENFILE) => return,
                Err(_) => continue,
            }
        }
        self.accept_again = true;
    }

    /// Reads a connection until it would block, it ends, or its batch is used up. With
    /// `to_end` (the event said the peer closed), a short read is not taken as drained: the
    /// FIN came with that edge and no later edge will announce it.
    fn read_conn(&mut self, fd: RawFd, token: Token, to_end: bool, sink: &mut impl Sink) {
        for _ in 0..READ_BATCH {
            match read(fd, &mut self.recv) {
                Ok(None) => return,
                Ok(Some(0)) => return sink.input_closed(token, None),
                Ok(Some(n)) => {
                    if !sink.input(token, &mut self.recv[..n]) {
                        return;
                    }
                    if n < self.recv.len() && !to_end {
                        // A short read drained the socket; the next arrival raises a new edge.
                        return;
                    }
                }
                Err(e) => return sink.input_closed(token, Some(e)),
            }
        }
        self.again.push((fd, token));
    }
}

impl Backend for Epoll {
    type Waker = EpollWaker;
    const KIND: BackendKind = BackendKind::Epoll;

    fn new(listener: RawFd, recv_buffer: usize) -> io::Result<Self> {
        let poll = Poll::new()?;
        poll.registry()
            .register(&mut SourceFd(&listener), LISTENER, Interest::READABLE)?;
        Ok(Epoll {
            poll,
            events: Events::with_capacity(1024),
            listener: Some(listener),
            recv: vec![0; recv_buffer].into_boxed_slice(),
            again: Vec::new(),
            accept_again: false,
        })
    }

    fn waker(&self) -> io::Result<EpollWaker> {
        Ok(EpollWaker(Arc::new(Waker::new(
            self.poll.registry(),
            WAKER,
        )?)))
    }

    fn register(&mut self, fd: RawFd, token: Token) -> io::Result<()> {
        // Both interests once, edge-triggered: no epoll_ctl per write or per pause.
        let interest = Interest::READABLE | Interest::WRITABLE;
        self.poll
            .registry()
            .register(&mut SourceFd(&fd), encode(token), interest)
    }

    fn close(&mut self, fd: RawFd, _token: Token) {
        // No EPOLL_CTL_DEL first: the engine never duplicates a connection's descriptor, so
        // close(2) drops the last reference and the kernel removes it from the epoll set
        // itself (one syscall per close instead of two). Events already returned for it
        // carry the old token's generation and are ignored.
        self.again.retain(|&(f, _)| f != fd);
        super::close(fd);
    }

    fn stop_accepting(&mut self) {
        if let Some(fd) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut SourceFd(&fd));
        }
        self.accept_again = false;
    }

    fn send(&mut self, fd: RawFd, _token: Token, out: &mut Outbox) -> io::Result<Handed> {
        let mut total = 0;
        while !out.is_empty() {
            let mut iov = [io::IoSlice::new(&[]); IOV_BATCH];
            let (count, want) = out.slices(&mut iov);
            let n = write_vectored(fd, &iov[..count])?;
            out.consume(n);
            total += n;
            if n < want {
                // Full: edge-triggered EPOLLOUT reports `writable` when it drains.
                break;
            }
        }
        Ok(Handed::Wrote(total))
    }

    fn send_direct(&mut self, fd: RawFd, _token: Token, piece: &Piece) -> io::Result<Handed> {
        write(fd, piece.as_slice()).map(Handed::Wrote)
    }

    fn resume_read(&mut self, fd: RawFd, token: Token) {
        self.again.push((fd, token));
    }

    fn poll(&mut self, timeout: Option<Duration>, sink: &mut impl Sink) -> io::Result<()> {
        let busy = !self.again.is_empty() || self.accept_again;
        let timeout = if busy { Some(Duration::ZERO) } else { timeout };
        match self.poll.poll(&mut self.events, timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(()),
            Err(e) => return Err(e),
        }
        let mut again = std::mem::take(&mut self.again);
        for (fd, token) in again.drain(..) {
            // A connection closed earlier in this round may have handed its fd to a new one.
            if sink.reader(token) == Some(fd) {
                self.read_conn(fd, token, true, sink);
            }
        }
        if self.again.is_empty() {
            self.again = again; // keep the allocation
        }
        if self.accept_again {
            self.accept(sink);
        }
        let events = std::mem::replace(&mut self.events, Events::with_capacity(0));
        for event in events.iter() {
            match event.token() {
                LISTENER => self.accept(sink),
                WAKER => sink.woken(),
                t => {
                    let token = decode(t);
                    if event.is_writable() {
                        sink.writable(token);
                    }
                    let closed = event.is_read_closed() || event.is_error();
                    if event.is_readable() || closed {
                        // The sink resolves the token to its descriptor; a stale token
                        // (connection gone) makes `input` a no-op.
                        // A paused connection is skipped: its edge is not lost, because
                        // resume_read puts it on the `again` list to read until it would block.
                        if let Some(fd) = sink.reader(token) {
                            self.read_conn(fd, token, closed, sink);
                        }
                    }
                }
            }
        }
        self.events = events;
        Ok(())
    }
}
