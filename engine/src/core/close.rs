//! The close handshake: the peer's close, failing a connection, our own close, and the
//! drain that follows (flush, shut the write side, wait for the peer's FIN).

use throng_protocol::CloseCode;

use super::output::output_pending;
use super::{Core, Op};
use crate::conn::*;
use crate::handler::Handler;
use crate::stats::Closer;

impl<S> Core<S> {
    /// The peer's close frame arrived.
    pub(super) fn peer_close<H: Handler<State = S>>(
        &mut self,
        h: &mut H,
        key: usize,
        close: Option<(CloseCode, &str)>,
    ) {
        let c = &mut self.conns[key];
        let by = if c.has(CLOSE_SENT) {
            Closer::Server // the peer answers our close
        } else {
            Closer::Peer
        };
        c.flags |= CLOSE_RECEIVED | CLEAN;
        let (code, reason) = close.unwrap_or((CloseCode::NO_STATUS, ""));
        if !c.has(CLOSE_SENT) {
            // Echo the peer's code (RFC 6455 5.5.1); an empty close is answered empty.
            let echo = close.map(|(code, _)| code);
            self.send_close(key, echo, "");
        }
        self.report_close(h, key, code, reason, by);
        self.begin_drain(key);
    }

    /// Fails the connection: a close frame with `code` (a protocol violation's, or 1011),
    /// then close TCP.
    pub(super) fn fail<H: Handler<State = S>>(
        &mut self,
        h: &mut H,
        key: usize,
        code: CloseCode,
        reason: &str,
    ) {
        if !self.conns[key].has(CLOSE_SENT) {
            self.send_close(key, Some(code), reason);
        }
        self.report_close(h, key, code, reason, Closer::Server);
        self.begin_drain(key);
    }

    /// No more frames are read: flush, shut the write side, wait for the peer's FIN.
    fn begin_drain(&mut self, key: usize) {
        let c = &mut self.conns[key];
        c.phase = Phase::Draining;
        c.since = self.now;
        self.finish_if_flushed(key);
        self.schedule(key);
    }

    /// In the `Http` and `Draining` phases, shuts the write side once output is out (or
    /// removes the connection, if the peer has already gone).
    pub(super) fn finish_if_flushed(&mut self, key: usize) {
        let c = &self.conns[key];
        if matches!(c.phase, Phase::Http | Phase::Draining)
            && !output_pending(c)
            && !c.has(BROKEN)
            && !self.scrape_pending(key)
        {
            if c.has(PEER_EOF) {
                let token = self.token(key);
                self.broken.push(token); // removed by the next reap
                self.conns[key].flags |= BROKEN;
            } else if !self.notify_before_shutdown(key) {
                let c = &self.conns[key];
                let op = Op::ShutdownWrite(c.fd, self.token(key));
                self.ops.push(op);
            }
        }
    }

    /// Starts the close handshake (from the application, a timer or shutdown).
    pub fn close(&mut self, key: usize, code: CloseCode, reason: &str) {
        let c = &mut self.conns[key];
        match c.phase {
            Phase::Open if !c.has(CLOSE_SENT) => {
                self.send_close(key, Some(code), reason);
                let c = &mut self.conns[key];
                c.phase = Phase::Closing;
                c.since = self.now;
                self.schedule(key);
            }
            Phase::Handshake => {
                self.enter_http(key);
                self.finish_if_flushed(key);
                self.schedule(key);
            }
            _ => {}
        }
    }
}
