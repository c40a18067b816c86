//! TLS connections in the core: their input (records decrypted in the backend's buffer,
//! plaintext to the WebSocket code), their output (plaintext encrypted at the flush) and
//! their end (close_notify, alerts). The rustls side is in [`crate::tls`]; this file only
//! moves bytes between it and the connection's spill and outbox.

use crate::stats::Closer;
use std::io::{self, IoSlice};

use throng_protocol::CloseCode;

use super::Core;
use crate::conn::*;
use crate::handler::Handler;
use crate::output::{CHUNK, IOV_BATCH, Piece};
use crate::pool::Spill;
use crate::sys::{Backend, Handed, Token};
use crate::tls::session::{MAX_RECORD, Read, Refused, record_len, sealed_len};

/// Plaintext encrypted per round of a flush: a large message is encrypted as the socket
/// takes it, not all at once (which would double its memory).
const SEAL_BATCH: usize = 256 << 10;

impl<S> Core<S> {
    /// A TLS connection was accepted: start its session. False if rustls refused.
    pub(super) fn open_tls(&mut self, key: usize) -> bool {
        let Some(tls) = self.tls.as_mut() else {
            return true;
        };
        match tls.open(key) {
            Ok(()) => {
                self.conns[key].flags |= TLS;
                true
            }
            Err(_) => false,
        }
    }

    /// Ciphertext arrived for a TLS connection (`bytes`: the backend's buffer).
    pub(super) fn tls_input<H: Handler<State = S>>(
        &mut self,
        h: &mut H,
        key: usize,
        bytes: &mut [u8],
    ) {
        let Some(tls) = self.tls.as_mut() else {
            return;
        };
        let Some(mut session) = tls.take(key) else {
            return;
        };
        let mut plain = std::mem::take(&mut tls.plain);
        let mut out = std::mem::take(&mut tls.out);
        let handshaking = session.is_handshaking();
        let mut read = Read::default();
        let mut rest: &mut [u8] = bytes;
        let stash = match self.conns[key].spill.as_mut() {
            Some(s) if !s.tls_in.is_empty() => Some(std::mem::take(&mut s.tls_in)),
            _ => None,
        };
        let mut waiting = false;
        if let Some(mut stash) = stash {
            // Complete the record cut by the last read with just the bytes it lacks:
            // first its header, then its body.
            for _ in 0..2 {
                let want = record_len(&stash).min(MAX_RECORD);
                let k = want.saturating_sub(stash.len()).min(rest.len());
                stash.extend_from_slice(&rest[..k]);
                rest = &mut std::mem::take(&mut rest)[k..];
            }
            let len = record_len(&stash);
            if stash.len() >= len.min(MAX_RECORD) {
                // Whole (or announcing more than TLS allows, which rustls refuses).
                read = session.read(&mut stash, &mut plain, &mut out);
                stash.clear();
            } else {
                waiting = true;
            }
            self.spill(key).tls_in = stash;
        }
        if read.error.is_none() && !waiting && !rest.is_empty() {
            let r = session.read(rest, &mut plain, &mut out);
            let left = &rest[r.used.min(rest.len())..];
            if r.error.is_none() && !left.is_empty() {
                self.spill(key).tls_in.extend_from_slice(left);
            }
            read.peer_closed |= r.peer_closed;
            read.error = r.error;
        }
        let failed = read.error.is_some();
        let done = handshaking && !session.is_handshaking();
        if let Some(tls) = self.tls.as_mut() {
            tls.put(key, session);
        }
        if done {
            self.stats.tls_handshakes += 1;
        }
        if !out.is_empty() {
            self.emit(key, &out);
        }
        if failed {
            if handshaking && !done {
                self.stats.tls_handshake_failures += 1;
            } else {
                self.stats.tls_errors += 1;
            }
            self.tls_failed(h, key);
        } else {
            if !plain.is_empty() && self.conns.contains(key) && !self.conns[key].has(BROKEN) {
                self.plain_input(h, key, &mut plain);
            }
            if read.peer_closed && self.conns.contains(key) {
                self.tls_peer_closed(h, key);
            }
        }
        if self.conns.contains(key) {
            self.release_spill(key);
        }
        if let Some(tls) = self.tls.as_mut() {
            tls.settle(plain, out);
        }
    }

    /// Records that are already encrypted (handshake, alerts, close_notify) go out after
    /// everything before them.
    fn emit(&mut self, key: usize, records: &[u8]) {
        if !self.conns.contains(key) || self.conns[key].has(BROKEN) {
            return;
        }
        self.spill(key).wire.stage.extend_from_slice(records);
        self.queued(key, records.len());
    }

    /// The TLS connection failed (its alert, if any, is queued): no WebSocket close is
    /// possible any more; flush the alert, then FIN, then wait for the peer's.
    fn tls_failed<H: Handler<State = S>>(&mut self, h: &mut H, key: usize) {
        if !self.conns.contains(key) {
            return;
        }
        if self.conns[key].phase == Phase::Handshake
            && let Some(s) = self.conns[key].spill.as_mut()
        {
            let stashed = std::mem::take(&mut s.input).len();
            self.unstash(stashed);
        }
        self.report_close(h, key, CloseCode::ABNORMAL, "TLS error", Closer::Server);
        if let Some(c) = self.conns.get_mut(key) {
            c.flags |= CLOSE_SENT;
            c.phase = Phase::Draining;
            c.since = self.now;
            self.finish_if_flushed(key);
            self.schedule(key);
        }
    }

    /// The peer's close_notify: answer it with ours, then end as at a FIN.
    fn tls_peer_closed<H: Handler<State = S>>(&mut self, h: &mut H, key: usize) {
        self.queue_close_notify(key);
        self.input_closed(h, key);
    }

    /// Queues our close_notify (once) after the connection's output.
    fn queue_close_notify(&mut self, key: usize) {
        let Some(tls) = self.tls.as_mut() else {
            return;
        };
        let mut out = std::mem::take(&mut tls.out);
        if let Some(session) = tls.get_mut(key) {
            session.close_notify(&mut out);
        }
        if !out.is_empty() {
            self.emit(key, &out);
        }
        if let Some(tls) = self.tls.as_mut() {
            out.clear();
            tls.out = out;
        }
    }

    /// Before the write side is shut: a TLS connection first sends its close_notify.
    /// True if it was queued now (the shutdown waits until it is out).
    pub(super) fn notify_before_shutdown(&mut self, key: usize) -> bool {
        if !self.conns[key].has(TLS) {
            return false;
        }
        let before = self.conns[key].buffered();
        self.queue_close_notify(key);
        self.conns[key].buffered() > before
    }

    /// The peer ended TCP; counted when TLS did not close first (a truncation attack
    /// or, often, a client that skips close_notify).
    pub(super) fn tls_eof(&mut self, key: usize) {
        if !self.conns[key].has(TLS) {
            return;
        }
        let clean = self
            .tls
            .as_mut()
            .and_then(|t| t.get_mut(key))
            .is_none_or(|s| s.peer_closed() || s.failed());
        if !clean {
            self.stats.tls_truncated += 1;
        }
    }

    /// Whether the connection's TLS handshake is still going on.
    pub(super) fn tls_handshaking(&mut self, key: usize) -> bool {
        self.conns[key].has(TLS)
            && self
                .tls
                .as_mut()
                .and_then(|t| t.get_mut(key))
                .is_some_and(|s| s.is_handshaking())
    }

    /// Encrypts up to [`SEAL_BATCH`] of the connection's plaintext output into its wire
    /// outbox; the counts follow (encryption adds bytes). Plaintext the session can no
    /// longer send (it failed or closed) is dropped.
    fn seal_outbox(&mut self, key: usize) -> io::Result<()> {
        let Some(session) = self.tls.as_mut().and_then(|t| t.get_mut(key)) else {
            return Ok(());
        };
        let Some(spill) = self.conns[key].spill.as_mut() else {
            return Ok(());
        };
        let Spill {
            out,
            wire,
            out_bytes,
            ..
        } = &mut **spill;
        let mut budget = SEAL_BATCH;
        let (mut plain_used, mut sealed) = (0, 0);
        while !out.is_empty() && budget > 0 {
            let mut iov = [IoSlice::new(&[]); IOV_BATCH];
            let (n, _) = out.slices(&mut iov);
            if session.coalesces() {
                // Every queued piece in as few records as 2^14 bytes each allow, not one
                // record (and one AEAD call, 22 bytes more on the wire) per piece.
                let mut parts: [&[u8]; IOV_BATCH] = [&[]; IOV_BATCH];
                let (mut k, mut used) = (0, 0);
                for s in &iov[..n] {
                    let part = &s[..s.len().min(budget - used)];
                    parts[k] = part;
                    k += 1;
                    used += part.len();
                    if used == budget {
                        break;
                    }
                }
                if used == 0 {
                    break;
                }
                match seal_chunks_into(session, &parts[..k], used, &mut wire.stage) {
                    Ok(w) => sealed += w,
                    Err(Refused::Closed) => {}
                    Err(Refused::Need(_)) => {
                        return Err(io::Error::other("TLS record larger than announced"));
                    }
                }
                out.consume(used);
                plain_used += used;
                budget -= used;
                continue;
            }
            let mut used = 0;
            for s in &iov[..n] {
                let part = &s[..s.len().min(budget)];
                match seal_into(session, part, &mut wire.stage) {
                    Ok(w) => sealed += w,
                    Err(Refused::Closed) => {}
                    Err(Refused::Need(_)) => {
                        return Err(io::Error::other("TLS record larger than announced"));
                    }
                }
                used += part.len();
                budget -= part.len();
                if budget == 0 {
                    break;
                }
            }
            out.consume(used);
            plain_used += used;
        }
        // From here these bytes are counted as ciphertext (or gone, if dropped).
        *out_bytes = (*out_bytes + sealed).saturating_sub(plain_used);
        self.guards.buffered = (self.guards.buffered + sealed).saturating_sub(plain_used);
        Ok(())
    }

    /// Hands a TLS connection's output to the backend: its plaintext is encrypted into
    /// the wire outbox batch by batch while the socket takes it all.
    pub(super) fn tls_send<B: Backend>(
        &mut self,
        backend: &mut B,
        key: usize,
        token: Token,
    ) -> io::Result<Handed> {
        let fd = self.conns[key].fd;
        let mut total = 0;
        loop {
            self.seal_outbox(key)?;
            let Some(spill) = self.conns[key].spill.as_mut() else {
                return Ok(Handed::Wrote(total));
            };
            match backend.send(fd, token, &mut spill.wire)? {
                Handed::Taken => return Ok(Handed::Taken),
                Handed::Wrote(n) => {
                    total += n;
                    if !spill.wire.is_empty() || spill.out.is_empty() {
                        return Ok(Handed::Wrote(total));
                    }
                }
            }
        }
    }

    /// Hands a lone reply of a TLS connection to the backend: encrypted into the arena
    /// (no spill, no allocation). What a readiness backend does not take now waits in the
    /// wire outbox, counted. Returns `Wrote(piece.len())` once the piece is dealt with.
    pub(super) fn tls_send_piece<B: Backend>(
        &mut self,
        backend: &mut B,
        key: usize,
        token: Token,
        piece: &Piece,
    ) -> io::Result<Handed> {
        let fd = self.conns[key].fd;
        let need = sealed_len(piece.len());
        if need <= CHUNK
            && let Some(session) = self.tls.as_mut().and_then(|t| t.get_mut(key))
        {
            let mut refused = None;
            let sealed =
                self.arena
                    .fill(need, |buf| match session.encrypt(piece.as_slice(), buf) {
                        Ok(n) => n,
                        Err(e) => {
                            refused = Some(e);
                            0
                        }
                    });
            match refused {
                None => {
                    return match backend.send_direct(fd, token, &sealed)? {
                        Handed::Taken => Ok(Handed::Taken),
                        Handed::Wrote(n) => {
                            if n < sealed.len() {
                                let rest = &sealed.as_slice()[n..];
                                self.spill(key).wire.stage.extend_from_slice(rest);
                                self.count(key, rest.len());
                            }
                            Ok(Handed::Wrote(piece.len()))
                        }
                    };
                }
                Some(Refused::Closed) => return Ok(Handed::Wrote(piece.len())),
                Some(Refused::Need(_)) => {}
            }
        }
        // Larger than an arena chunk takes: through the outbox.
        self.spill(key).out.head = Some(piece.clone());
        self.count(key, piece.len());
        match self.tls_send(backend, key, token)? {
            Handed::Taken => Ok(Handed::Taken),
            Handed::Wrote(n) => {
                if let Some(s) = self.conns[key].spill.as_mut() {
                    s.out_bytes -= n.min(s.out_bytes);
                }
                self.guards.output_gone(n);
                Ok(Handed::Wrote(piece.len()))
            }
        }
    }

    /// The connection is gone: its session goes with it.
    pub(super) fn close_tls(&mut self, key: usize) {
        if let Some(tls) = self.tls.as_mut() {
            tls.close(key);
        }
    }

    /// A new certificate configuration for the handshakes from now on.
    pub(crate) fn set_tls_config(&mut self, config: std::sync::Arc<rustls::ServerConfig>) {
        if let Some(tls) = self.tls.as_mut() {
            tls.config = config;
        }
    }
}

/// Encrypts the concatenation of `chunks` (`len` bytes in all) at the end of `stage`, in
/// as few records as their length allows; returns the bytes added.
fn seal_chunks_into(
    session: &mut crate::tls::Session,
    chunks: &[&[u8]],
    len: usize,
    stage: &mut bytes::BytesMut,
) -> Result<usize, Refused> {
    let at = stage.len();
    let room = session.sealed_len_of(len);
    stage.resize(at + room, 0);
    match session.encrypt_chunks(chunks, &mut stage[at..]) {
        Ok(n) => {
            stage.truncate(at + n);
            Ok(n)
        }
        Err(e) => {
            stage.truncate(at);
            Err(e)
        }
    }
}

/// Encrypts `plain` at the end of `stage`; returns the bytes added.
fn seal_into(
    session: &mut crate::tls::Session,
    plain: &[u8],
    stage: &mut bytes::BytesMut,
) -> Result<usize, Refused> {
    let at = stage.len();
    let mut room = sealed_len(plain.len());
    for _ in 0..2 {
        stage.resize(at + room, 0);
        match session.encrypt(plain, &mut stage[at..]) {
            Ok(n) => {
                stage.truncate(at + n);
                return Ok(n);
            }
            Err(Refused::Need(k)) => room = k,
            Err(e) => {
                stage.truncate(at);
                return Err(e);
            }
        }
    }
    stage.truncate(at);
    Err(Refused::Need(room))
}
