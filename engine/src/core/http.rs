//! Plain HTTP beside WebSocket: the answer to a request `on_request` handled, and
//! keep-alive (HTTP/1.1 persistent connections, bounded pipelining), so that health checks
//! and metrics scrapes do not reconnect for every request.

use throng_protocol::handshake::{self, Request};

use super::Core;
use crate::conn::*;
use crate::handler::{Handler, HttpResponse};

/// Pipelined requests answered from one read; then reading pauses until the answers are
/// out (and the rest of the read is answered then), so a client that pipelines without
/// reading costs at most this many answers of output, not one per request it wrote.
pub(crate) const PIPELINE_BATCH: u32 = 16;

impl<S> Core<S> {
    /// Writes the answer `on_request` built. Keeps the connection for another request when
    /// the request allows it; else closes once the answer is out. Returns the bytes of
    /// `buf` (`len` long, the request head `used` of them) taken.
    pub(super) fn answer_plain(
        &mut self,
        key: usize,
        req: &Request<'_>,
        res: &HttpResponse,
        used: usize,
        len: usize,
    ) -> usize {
        // The engine frames the connection; a handler's `Connection: close` is honoured.
        let handler_close = res.headers.iter().any(|(k, v)| {
            k.eq_ignore_ascii_case("connection")
                && v.split(',').any(|t| t.trim().eq_ignore_ascii_case("close"))
        });
        let keep = self.ticks.keep_alive.is_some()
            && !self.shutting_down
            && !handler_close
            && wants_keep_alive(req)
            && !has_body(req);
        let mut headers: Vec<(&str, &str)> = res
            .headers
            .iter()
            .filter(|(k, _)| !k.eq_ignore_ascii_case("connection"))
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        match (keep, req.version_minor()) {
            (false, _) => headers.push(("Connection", "close")),
            (true, 0) => headers.push(("Connection", "keep-alive")),
            (true, _) => {} // HTTP/1.1 connections persist by default
        }
        self.scratch.clear();
        handshake::write_response(&mut self.scratch, res.status, &headers, &res.body);
        if req.method().eq_ignore_ascii_case("HEAD") {
            // The same head (Content-Length included), without the body (RFC 9110 9.3.2).
            let head = self.scratch.len() - written_body(&self.scratch, res.body.len());
            self.scratch.truncate(head);
        }
        if !keep {
            self.respond_and_close(key);
            return len; // what follows (a body, more requests) is not read
        }
        let head = std::mem::take(&mut self.scratch);
        let _ = self.send_raw(key, &head);
        self.scratch = head;
        self.stats.http_kept_alive += 1;
        let c = &mut self.conns[key];
        c.flags |= KEPT_ALIVE;
        c.since = self.now;
        self.schedule(key);
        used
    }

    /// Requests pipelined behind an answered one, in `rest`: answered in order, at most
    /// [`PIPELINE_BATCH`] from one read and only while output is below the high-water
    /// mark; what is left waits in the connection's stash with reading paused, and is
    /// taken up by [`Core::resume_pipelined`] once the answers are out.
    pub(super) fn pipelined<H: Handler<State = S>>(
        &mut self,
        h: &mut H,
        key: usize,
        rest: &mut [u8],
    ) {
        let mut at = 0;
        let mut answered = 0;
        loop {
            let Some(c) = self.conns.get(key) else {
                return;
            };
            match c.phase {
                Phase::Open => return self.frame_input(h, key, &mut rest[at..]),
                Phase::Handshake if at < rest.len() => {}
                _ => return,
            }
            if answered >= PIPELINE_BATCH || c.has(READ_PAUSED | BROKEN) {
                return self.hold_pipelined(key, &rest[at..]);
            }
            match self.handshake_parse(h, key, &rest[at..]) {
                None => {
                    // The next request has begun: it has the handshake timeout.
                    let c = &mut self.conns[key];
                    c.flags &= !KEPT_ALIVE;
                    c.since = self.now;
                    self.schedule(key);
                    let max = self.handshake.max_header_bytes;
                    let stash = &mut self.spill(key).input;
                    super::handshake::grow(stash, rest.len() - at, max);
                    stash.extend_from_slice(&rest[at..]);
                    return;
                }
                Some(n) => {
                    at += n;
                    answered += 1;
                }
            }
        }
    }

    /// Keeps unanswered pipelined bytes and pauses reading until the answers are out.
    fn hold_pipelined(&mut self, key: usize, rest: &[u8]) {
        self.spill(key).input.extend_from_slice(rest);
        // Answers were just staged, so output is pending and its flush ends the pause.
        self.conns[key].flags |= READ_PAUSED;
    }

    /// Reading resumed on a kept-alive connection: answer the requests it had pipelined.
    pub(super) fn resume_pipelined<H: Handler<State = S>>(&mut self, h: &mut H, key: usize) {
        let c = &self.conns[key];
        if c.phase == Phase::Handshake && c.spill.as_ref().is_some_and(|s| !s.input.is_empty()) {
            self.handshake_input(h, key, &mut []);
        }
    }
}

/// Whether the client lets the connection persist: HTTP/1.1 unless it says
/// `Connection: close`, HTTP/1.0 only when it asks for `Connection: keep-alive`.
fn wants_keep_alive(req: &Request<'_>) -> bool {
    if req.header_has_token("connection", "close") {
        return false;
    }
    req.version_minor() >= 1 || req.header_has_token("connection", "keep-alive")
}

/// Whether a body follows the head (which this engine does not read: the connection is
/// closed after the answer instead, so the body is never taken for a request).
fn has_body(req: &Request<'_>) -> bool {
    req.header("transfer-encoding").is_some()
        || req
            .header_values("content-length")
            .any(|v| v.iter().any(|&b| b != b'0'))
}

/// How many of the response's last bytes are its body: `len`, unless the status carries
/// none (1xx, 204, 304 are written without one).
fn written_body(response: &[u8], len: usize) -> usize {
    let status = response.get(9..12).unwrap_or_default();
    match status {
        [b'1', ..] | b"204" | b"304" => 0,
        _ => len,
    }
}
