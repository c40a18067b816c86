//! Handler callbacks, each run with its panics contained.
//!
//! A panic in a callback concerns the connection it was called for: it is counted
//! ([`crate::WorkerStats::handler_panics`]), reported on stderr (after the panic hook's
//! own message), and that connection is closed with 1011 (a request gets 500). The core's
//! own state is consistent at every call site (a callback is always called between
//! steps, never in the middle of one), so the worker goes on serving its other
//! connections. The handler's own state is the application's: `&mut self` of a
//! panicked handler is used again afterwards, as the panic left it. With
//! `panic = "abort"` nothing is caught and the process ends, as the profile asks.

use std::panic::{AssertUnwindSafe, catch_unwind};

use throng_protocol::{CloseCode, Message};

use super::Core;
use crate::handler::{Decision, Handler, HttpRequest, HttpResponse, UpgradeRequest};
use crate::ws::WebSocket;

/// Runs `f`, returning `None` if it panicked.
fn guarded<R>(f: impl FnOnce() -> R) -> Option<R> {
    catch_unwind(AssertUnwindSafe(f)).ok()
}

impl<S> Core<S> {
    pub(super) fn call_on_open<H: Handler<State = S>>(&mut self, h: &mut H, key: usize) {
        if guarded(|| h.on_open(&mut WebSocket::new(self, key))).is_none() {
            self.handler_panicked(key, "on_open");
        }
    }

    pub(super) fn call_on_message<H: Handler<State = S>>(
        &mut self,
        h: &mut H,
        key: usize,
        message: Message<'_>,
    ) {
        if guarded(|| h.on_message(&mut WebSocket::new(self, key), message)).is_none() {
            self.handler_panicked(key, "on_message");
        }
    }

    pub(super) fn call_on_drain<H: Handler<State = S>>(&mut self, h: &mut H, key: usize) {
        if guarded(|| h.on_drain(&mut WebSocket::new(self, key))).is_none() {
            self.handler_panicked(key, "on_drain");
        }
    }

    pub(super) fn call_on_close<H: Handler<State = S>>(
        &mut self,
        h: &mut H,
        key: usize,
        code: CloseCode,
        reason: &str,
    ) {
        if guarded(|| h.on_close(&mut WebSocket::new(self, key), code, reason)).is_none() {
            // The connection is going anyway.
            self.handler_panicked(key, "on_close");
        }
    }

    /// `None`: the callback panicked (the caller answers 500).
    pub(super) fn call_on_upgrade<'r, H: Handler<State = S>>(
        &mut self,
        h: &mut H,
        key: usize,
        req: &UpgradeRequest<'r>,
    ) -> Option<Decision<'r, S>> {
        let d = guarded(|| h.on_upgrade(req));
        if d.is_none() {
            self.handler_panicked(key, "on_upgrade");
        }
        d
    }

    /// False: the callback panicked (the caller answers 500).
    pub(super) fn call_on_request<H: Handler<State = S>>(
        &mut self,
        h: &mut H,
        key: usize,
        req: &HttpRequest<'_>,
        res: &mut HttpResponse,
    ) -> bool {
        let ok = guarded(|| h.on_request(req, res)).is_some();
        if !ok {
            self.handler_panicked(key, "on_request");
        }
        ok
    }

    /// Runs a job posted to the worker; a panic is counted and reported.
    pub fn run_job(&mut self, job: impl FnOnce(&mut Self)) {
        if guarded(|| job(self)).is_none() {
            self.stats.handler_panics += 1;
            eprintln!(
                "throng: worker {}: a posted job panicked; the worker goes on",
                self.worker
            );
        }
    }

    /// A callback for connection `key` panicked: count it, say so, close the connection
    /// with 1011 if it is open (a connection still in its handshake is answered by the
    /// caller).
    fn handler_panicked(&mut self, key: usize, callback: &str) {
        self.stats.handler_panics += 1;
        // The client's address, a PROXY header's if there was one.
        let peer = match self.conns.get(key).map(|_| self.peer_addr(key)) {
            Some(Ok(addr)) => addr.to_string(),
            _ => "unknown".to_owned(),
        };
        eprintln!(
            "throng: worker {}: {callback} panicked (peer {peer}); its connection is closed \
             with 1011, the worker goes on",
            self.worker
        );
        if self.conns.contains(key) && self.is_open(key) {
            self.close(key, CloseCode::INTERNAL, "internal error");
        }
    }
}
