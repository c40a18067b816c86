//! A connection's arrival and its teardown.

use std::os::fd::RawFd;

use throng_protocol::CloseCode;

use super::output::output_pending;
use super::{Core, Op};
use crate::conn::*;
use crate::handler::Handler;
use crate::stats::{Closer, close_slot};
use crate::sys::Token;

impl<S> Core<S> {
    /// A connection was accepted on listener `listener` (see [`crate::sys::LISTENER_MAIN`]):
    /// file it for its handshake, or refuse it when the worker is full or shutting down.
    /// Only the main listener speaks TLS, and only when `Config::tls` is set.
    pub fn accept(&mut self, fd: RawFd, listener: usize) {
        if self.conns.len() >= self.limits.max_connections || self.shutting_down {
            self.stats.refused_full += 1;
            self.ops.push(Op::Refuse(fd));
            return;
        }
        self.stats.accepted += 1;
        self.generation = self.generation.wrapping_add(1);
        let key = self.conns.insert(Conn::new(fd, self.generation, self.now));
        let token = self.token(key);
        tracing::trace!(worker = self.worker, conn = %self.conn_id(key), fd, "accepted");
        self.ops.push(Op::Register(fd, token));
        if listener == crate::sys::LISTENER_MAIN && !self.open_tls(key) {
            self.stats.tls_handshake_failures += 1;
            self.broke(key);
            return;
        }
        if self.proxy_protocol {
            // Its address is known once its PROXY header is in (see core/proxy.rs).
            self.conns[key].flags |= AWAIT_PROXY;
            return self.schedule(key);
        }
        if !self.admit_peer(key) {
            // Over the per-address limit: answered at once, before its request is read.
            self.stats.refused_per_ip += 1;
            tracing::debug!(worker = self.worker, conn = %self.conn_id(key), "refused: per-address limit");
            return self.refuse_request(key, 429, "too many connections from this address\n");
        }
        self.schedule(key);
    }

    /// The backend cannot watch the connection: tear it down at the next reap.
    pub fn unwatchable(&mut self, token: Token) {
        if let Some(key) = self.lookup(token) {
            self.broke(key);
        }
    }

    /// Reports the close to the handler if it is owed one, and counts it (once per
    /// opened connection: the flag goes with the report). A transport lost after our own
    /// close frame went out is the server's close.
    pub(super) fn report_close<H: Handler<State = S>>(
        &mut self,
        h: &mut H,
        key: usize,
        code: CloseCode,
        reason: &str,
        by: Closer,
    ) {
        let c = &mut self.conns[key];
        if c.has(OPENED) {
            let by = if by == Closer::Lost && c.has(CLOSE_SENT) {
                Closer::Server
            } else {
                by
            };
            self.stats.closed[by as usize][close_slot(code.0)] += 1;
            tracing::debug!(
                worker = self.worker,
                conn = %self.conn_id(key),
                code = code.0,
                by = by.name(),
                reason,
                "closed"
            );
            let c = &mut self.conns[key];
            // Sends from on_close are refused: the close is decided.
            c.flags = (c.flags & !OPENED) | CLOSE_SENT;
            self.call_on_close(h, key, code, reason);
        }
    }

    /// Removes the connection now; the descriptor is closed by the run loop.
    pub fn remove<H: Handler<State = S>>(
        &mut self,
        h: &mut H,
        key: usize,
        code: CloseCode,
        reason: &str,
        by: Closer,
    ) {
        self.report_close(h, key, code, reason, by);
        let token = self.token(key);
        let conn = self.conns.remove(key);
        if conn.has(TLS) {
            self.close_tls(key);
        }
        self.deflate_closed(key);
        if conn.phase == Phase::Handshake
            && let Some(s) = conn.spill.as_ref()
        {
            self.unstash(s.input.len());
        }
        self.release_guards(key, conn.generation, conn.buffered());
        if conn.has(SUBSCRIBED) {
            // The slot is free from here: its subscriptions end with it, so a connection
            // that reuses it starts with none.
            self.topics.remove_conn(key as u32, conn.topic);
        }
        if !self.stalls.is_empty() {
            self.stalls.remove(&(key as u32));
        }
        if !self.proxied.is_empty() {
            self.proxied.remove(&(key as u32));
        }
        if conn.has(CLEAN) {
            self.stats.closed_cleanly += 1;
        } else {
            self.stats.closed_abnormally += 1;
        }
        if let Some(spill) = conn.spill {
            self.pool.give(spill);
        }
        tracing::trace!(worker = self.worker, key, fd = conn.fd, "removed");
        self.ops.push(Op::Close(conn.fd, token));
    }

    /// The peer closed its side or the socket failed. Output accepted before (a reply to
    /// the peer's last message, our close frame) still goes out: the connection is removed
    /// once it is flushed, or by the close timer.
    pub fn input_closed<H: Handler<State = S>>(&mut self, h: &mut H, key: usize) {
        let c = &mut self.conns[key];
        if c.has(PEER_EOF) {
            return;
        }
        self.tls_eof(key);
        let c = &mut self.conns[key];
        if !output_pending(c) || c.has(BROKEN) {
            return self.remove(h, key, CloseCode::ABNORMAL, "connection lost", Closer::Lost);
        }
        c.flags |= PEER_EOF;
        self.report_close(h, key, CloseCode::ABNORMAL, "connection lost", Closer::Lost);
        if let Some(c) = self.conns.get_mut(key)
            && c.phase != Phase::Draining
        {
            c.phase = Phase::Draining;
            c.since = self.now;
            self.schedule(key);
        }
    }

    /// Tears down connections whose socket failed during a send.
    pub fn reap<H: Handler<State = S>>(&mut self, h: &mut H) {
        while let Some(token) = self.broken.pop() {
            if let Some(key) = self.lookup(token) {
                self.remove(h, key, CloseCode::ABNORMAL, "connection lost", Closer::Lost);
            }
        }
    }

    /// The socket failed: stop using it; it is torn down at the next [`Core::reap`].
    pub(super) fn broke(&mut self, key: usize) {
        let c = &mut self.conns[key];
        if !c.has(BROKEN) {
            c.flags |= BROKEN;
            let token = self.token(key);
            self.broken.push(token);
        }
    }
}
