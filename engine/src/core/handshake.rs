//! The opening handshake: the upgrade request (or a plain HTTP request) and its answer.

use throng_protocol::handshake;

use super::Core;
use crate::conn::*;
use crate::handler::{Decision, Handler, HttpResponse, UpgradeRequest};
use crate::stats::status_slot;

impl<S> Core<S> {
    /// Input while the request head is incomplete: parse what has arrived (with what was
    /// stashed before), answer it once it is whole.
    pub(super) fn handshake_input<H: Handler<State = S>>(
        &mut self,
        h: &mut H,
        key: usize,
        bytes: &mut [u8],
    ) {
        if self.conns[key].has(AWAIT_PROXY) {
            return self.proxy_input(h, key, bytes);
        }
        let c = &mut self.conns[key];
        if c.has(KEPT_ALIVE) && !bytes.is_empty() {
            // The next request has begun: it has the handshake timeout to complete.
            c.flags &= !KEPT_ALIVE;
            c.since = self.now;
            self.schedule(key);
        }
        let before = self.stash_len(key);
        self.parse_or_stash(h, key, bytes);
        // The worker's bound on request heads kept: a connection that would take it past
        // the bound is answered 503 (its head so far dropped), not kept.
        let after = self.stash_len(key);
        if after > before && !self.may_stash(after - before) {
            // The head kept so far was counted: it leaves the budget with its bytes (this
            // was missing, so every refusal shrank the budget for good, until every head
            // was refused and nothing counted as freed for `trim_memory`).
            if let Some(s) = self.conns[key].spill.as_mut() {
                s.input = Vec::new();
            }
            self.unstash(before);
            self.release_spill(key);
            self.refuse_request(key, 503, "server busy: too many incomplete requests\n");
        } else if after < before {
            self.unstash(before - after);
        }
    }

    /// Bytes of request head the connection keeps while it is handshaking.
    fn stash_len(&self, key: usize) -> usize {
        match self.conns.get(key) {
            Some(c) if c.phase == Phase::Handshake => c.spill.as_ref().map_or(0, |s| s.input.len()),
            _ => 0,
        }
    }

    fn parse_or_stash<H: Handler<State = S>>(&mut self, h: &mut H, key: usize, bytes: &mut [u8]) {
        let max = self.handshake.max_header_bytes;
        let stashed = self.conns[key]
            .spill
            .as_ref()
            .is_some_and(|s| !s.input.is_empty());
        if stashed {
            let mut buf = std::mem::take(&mut self.spill(key).input);
            grow(&mut buf, bytes.len(), max);
            buf.extend_from_slice(bytes);
            let used = self.handshake_parse(h, key, &buf);
            match used {
                None => self.spill(key).input = buf,
                Some(n) => {
                    let mut rest = buf.split_off(n);
                    buf.clear();
                    if let Some(c) = self.conns.get_mut(key).and_then(|c| c.spill.as_mut()) {
                        c.input = buf; // keep the allocation
                    }
                    self.after_handshake(h, key, &mut rest);
                }
            }
        } else {
            match self.handshake_parse(h, key, bytes) {
                None => {
                    let stash = &mut self.spill(key).input;
                    grow(stash, bytes.len(), max);
                    stash.extend_from_slice(bytes);
                }
                Some(n) => self.after_handshake(h, key, &mut bytes[n..]),
            }
        }
        if self.conns.contains(key) {
            self.release_spill(key);
        }
    }

    /// Bytes pipelined after the request head: the first frames of an upgraded
    /// connection, or the next requests of a kept-alive one.
    fn after_handshake<H: Handler<State = S>>(&mut self, h: &mut H, key: usize, rest: &mut [u8]) {
        if rest.is_empty() || !self.conns.contains(key) {
            return;
        }
        match self.conns[key].phase {
            Phase::Open => self.frame_input(h, key, rest),
            Phase::Handshake => self.pipelined(h, key, rest),
            _ => {}
        }
    }

    /// Parses the request head in `buf`. `None`: incomplete. `Some(n)`: answered, `n`
    /// bytes used.
    pub(super) fn handshake_parse<H: Handler<State = S>>(
        &mut self,
        h: &mut H,
        key: usize,
        buf: &[u8],
    ) -> Option<usize> {
        let (req, used) = match handshake::parse_request(buf, &self.handshake) {
            Ok(None) => return None,
            Ok(Some(parsed)) => parsed,
            Err(e) => {
                self.rejected(key, e.status(), e.reason());
                self.scratch.clear();
                handshake::write_error(&mut self.scratch, e);
                self.respond_and_close(key);
                return Some(buf.len());
            }
        };
        if !req.is_websocket_upgrade() {
            self.stats.http_requests += 1;
            if self.scrape_request(key, &req) {
                return Some(buf.len());
            }
            let mut res = HttpResponse::default();
            if !self.call_on_request(h, key, &req, &mut res) {
                return Some(self.internal_error(key, buf.len()));
            }
            return Some(self.answer_plain(key, &req, &res, used, buf.len()));
        }
        let upgrade = match handshake::validate_upgrade(req) {
            Ok(u) => u,
            Err(e) => {
                self.rejected(key, e.status(), e.reason());
                self.scratch.clear();
                handshake::write_error(&mut self.scratch, e);
                self.respond_and_close(key);
                return Some(buf.len());
            }
        };
        let fd = self.conns[key].fd;
        let proxied = self.proxied_addr(key);
        let request = UpgradeRequest::new(&upgrade, fd, proxied);
        let Some(decision) = self.call_on_upgrade(h, key, &request) else {
            return Some(self.internal_error(key, buf.len()));
        };
        match decision {
            Decision::Reject(status) => {
                self.rejected(key, status, "refused by on_upgrade");
                self.scratch.clear();
                let body = format!("upgrade refused ({status})\n");
                let headers = [("Content-Type", "text/plain"), ("Connection", "close")];
                handshake::write_response(&mut self.scratch, status, &headers, body.as_bytes());
                self.respond_and_close(key);
                Some(buf.len())
            }
            Decision::Accept { state, protocol } => {
                let deflate = self.deflate_offer(key, &upgrade);
                self.scratch.clear();
                handshake::write_accept(
                    &mut self.scratch,
                    &upgrade,
                    protocol,
                    deflate.as_ref().map(|(answer, _)| answer.as_str()),
                );
                let head = std::mem::take(&mut self.scratch);
                let _ = self.send_raw(key, &head);
                self.scratch = head;
                let c = &mut self.conns[key];
                c.state = Some(state);
                c.phase = Phase::Open;
                c.flags =
                    (c.flags & !HANDSHAKE_ONLY) | OPENED | deflate.map_or(0, |(_, flags)| flags);
                c.since = self.now;
                self.stats.opened += 1;
                tracing::debug!(worker = self.worker, conn = %self.conn_id(key), "opened");
                self.schedule(key);
                if !self.conns[key].has(BROKEN) {
                    self.call_on_open(h, key);
                }
                Some(used)
            }
        }
    }

    /// A callback panicked while answering a request: 500, then close. Returns `used`.
    fn internal_error(&mut self, key: usize, used: usize) -> usize {
        self.refuse_request(key, 500, "internal error\n");
        used
    }

    /// Answers `status` with a short text body, then closes.
    pub(super) fn refuse_request(&mut self, key: usize, status: u16, body: &str) {
        self.rejected(key, status, body.trim_end());
        self.scratch.clear();
        let headers = [("Content-Type", "text/plain"), ("Connection", "close")];
        handshake::write_response(&mut self.scratch, status, &headers, body.as_bytes());
        self.respond_and_close(key);
    }

    /// Counts a refused request and says why.
    fn rejected(&mut self, key: usize, status: u16, reason: &str) {
        self.stats.handshakes_rejected[status_slot(status)] += 1;
        tracing::info!(
            worker = self.worker,
            conn = %self.conn_id(key),
            status,
            reason,
            "handshake rejected"
        );
    }

    /// Sends the response in `scratch`, then closes once it is out.
    pub(super) fn respond_and_close(&mut self, key: usize) {
        let head = std::mem::take(&mut self.scratch);
        let _ = self.send_raw(key, &head);
        self.scratch = head;
        self.enter_http(key);
        self.finish_if_flushed(key);
        self.schedule(key);
    }

    /// The connection leaves its handshake for `Phase::Http` (an answer goes out, then it
    /// closes; what arrives meanwhile is discarded): the request head it stashed is not
    /// needed any more, so it leaves the worker's handshake budget and is freed now.
    /// Otherwise heads answered (408 at the handshake timeout, 4xx/5xx) stayed counted
    /// for good, shrinking the budget and keeping `trim_memory` from ever seeing them.
    pub(super) fn enter_http(&mut self, key: usize) {
        let c = &mut self.conns[key];
        c.phase = Phase::Http;
        c.since = self.now;
        let stashed = c.spill.as_mut().map(|s| std::mem::take(&mut s.input));
        if let Some(stash) = stashed
            && stash.capacity() > 0
        {
            self.unstash(stash.len());
        }
    }
}

/// Makes room for `more` bytes in a request-head stash: doubling, as a `Vec` does, but
/// never past the largest head allowed (plus the read that overflows it), so a head of
/// 8 KiB costs 8 KiB, not the 16 KiB a doubling would leave.
pub(super) fn grow(stash: &mut Vec<u8>, more: usize, max: usize) {
    let need = stash.len() + more;
    if need > stash.capacity() {
        let target = (stash.capacity() * 2).max(need).min(max.max(need));
        stash.reserve_exact(target - stash.len());
    }
}
