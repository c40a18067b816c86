//! The baselines' keep-alive: what throng does with its timer wheel (ping a silent
//! connection, drop it if the ping goes unanswered), written the cheap way for Tokio.
//!
//! One `Sleep` per connection, reset only when it fires (every 30 s), never per message:
//! messages only set a flag.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use super::{PING_INTERVAL, PONG_TIMEOUT};

/// What to do when the keep-alive timer fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tick {
    /// The peer spoke since the last check: check again later.
    Alive,
    /// Silence: send a ping.
    Ping,
    /// Silence after a ping: drop the connection.
    Dead,
}

/// The keep-alive state of one connection.
#[derive(Debug, Default)]
pub struct Liveness {
    /// Something arrived since the last check.
    pub heard: bool,
    pinged: bool,
}

impl Liveness {
    /// The timer fired: the verdict, and when to look again.
    pub fn tick(&mut self) -> (Tick, Instant) {
        let now = Instant::now();
        if std::mem::take(&mut self.heard) {
            self.pinged = false;
            (Tick::Alive, now + PING_INTERVAL)
        } else if !self.pinged {
            self.pinged = true;
            (Tick::Ping, now + PONG_TIMEOUT)
        } else {
            (Tick::Dead, now)
        }
    }
}

/// The first keep-alive deadline of a new connection.
pub fn first_deadline() -> Instant {
    Instant::now() + PING_INTERVAL
}

/// An unmasked empty ping frame, as a server sends it.
const PING_FRAME: [u8; 2] = [0x89, 0x00];

/// Wraps a WebSocket's byte stream and keeps it alive from inside `poll_read`.
///
/// fastwebsockets' `read_frame` is not cancel-safe (a frame header it has consumed is
/// lost if the future is dropped), so racing it against a timer with `select!` or
/// `timeout` could corrupt a connection that is slowly receiving a large frame. Here the
/// timer is polled only while the read is pending, and the ping is written between
/// frames: fastwebsockets writes each frame completely (`write_all`) before it reads
/// again, so no frame of its own can be half-written at that moment.
pub struct KeepAliveIo<S> {
    inner: S,
    sleep: Pin<Box<Sleep>>,
    live: Liveness,
    /// Bytes of `PING_FRAME` already written; `PING_FRAME.len()` when none is owed.
    ping_written: usize,
}

impl<S> std::fmt::Debug for KeepAliveIo<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeepAliveIo").finish_non_exhaustive()
    }
}

impl<S> KeepAliveIo<S> {
    /// Wraps an upgraded stream.
    pub fn new(inner: S) -> Self {
        KeepAliveIo {
            inner,
            sleep: Box::pin(tokio::time::sleep_until(first_deadline())),
            live: Liveness::default(),
            ping_written: PING_FRAME.len(),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> KeepAliveIo<S> {
    /// Writes what is left of an owed ping.
    fn poll_ping(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.ping_written < PING_FRAME.len() {
            let n =
                ready!(Pin::new(&mut self.inner).poll_write(cx, &PING_FRAME[self.ping_written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.ping_written += n;
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for KeepAliveIo<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(r) => {
                this.live.heard |= buf.filled().len() > before;
                return Poll::Ready(r);
            }
            Poll::Pending => {}
        }
        loop {
            if let Poll::Ready(Err(e)) = this.poll_ping(cx) {
                return Poll::Ready(Err(e));
            }
            if this.sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            let (verdict, next) = this.live.tick();
            this.sleep.as_mut().reset(next);
            match verdict {
                Tick::Alive => {}
                Tick::Ping => this.ping_written = 0,
                Tick::Dead => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "no answer to ping",
                    )));
                }
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for KeepAliveIo<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        // An owed ping goes first, so it never lands inside a frame.
        ready!(this.poll_ping(cx))?;
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_ping(cx))?;
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_ping(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
