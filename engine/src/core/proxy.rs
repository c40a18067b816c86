//! The PROXY protocol on a listener with `Config::proxy_protocol`: a connection's first
//! bytes are its load balancer's header, parsed by the protocol crate (sans-I/O) before
//! anything else; the client address it names replaces the socket's for `peer_addr`, the
//! per-address limit and logs. A missing or bad header closes the connection unanswered.

use std::io;
use std::net::SocketAddr;

use throng_protocol::proxy;

use super::Core;
use crate::conn::*;
use crate::handler::Handler;

impl<S> Core<S> {
    /// Input before the PROXY header is whole: stash it (bounded by the header's maximum
    /// length, which the parser enforces), then read the header and hand what follows to
    /// the handshake.
    pub(super) fn proxy_input<H: Handler<State = S>>(
        &mut self,
        h: &mut H,
        key: usize,
        bytes: &mut [u8],
    ) {
        if bytes.is_empty()
            && self.conns[key]
                .spill
                .as_ref()
                .is_none_or(|s| s.input.is_empty())
        {
            return;
        }
        let stash = self.conns[key]
            .spill
            .as_mut()
            .map(|s| std::mem::take(&mut s.input))
            .filter(|s| !s.is_empty());
        let stashed = stash.as_ref().map_or(0, Vec::len);
        let mut joined;
        let buf: &mut [u8] = match stash {
            Some(s) => {
                joined = s;
                joined.extend_from_slice(bytes);
                &mut joined
            }
            None => bytes,
        };
        match proxy::parse(buf) {
            Ok(None) => {
                let more = buf.len() - stashed;
                if !self.may_stash(more) {
                    self.unstash(stashed);
                    return self.proxy_refused(key);
                }
                let copy = buf.to_vec();
                self.spill(key).input = copy;
            }
            Err(_) => {
                self.unstash(stashed);
                self.proxy_refused(key)
            }
            Ok(Some((header, used))) => {
                self.unstash(stashed);
                self.conns[key].flags &= !AWAIT_PROXY;
                if let Some(addr) = header.source() {
                    let generation = self.conns[key].generation;
                    self.proxied.insert(key as u32, (generation, addr));
                }
                if !self.admit_peer(key) {
                    self.stats.refused_per_ip += 1;
                    return self.refuse_request(
                        key,
                        429,
                        "too many connections from this address\n",
                    );
                }
                let rest = &mut buf[used..];
                if !rest.is_empty() {
                    self.handshake_input(h, key, rest);
                } else if self.conns.contains(key) {
                    self.release_spill(key);
                }
            }
        }
    }

    /// Not a PROXY header: close at once, without an answer (the peer is no proxy we
    /// know, and an HTTP answer would tell a scanner what listens here).
    fn proxy_refused(&mut self, key: usize) {
        self.stats.proxy_refused += 1;
        self.broke(key); // removed by the reap that ends this input
    }

    /// The client address a PROXY header gave this connection, if any.
    pub(super) fn proxied_addr(&self, key: usize) -> Option<SocketAddr> {
        if self.proxied.is_empty() {
            return None;
        }
        let generation = self.conns.get(key)?.generation;
        match self.proxied.get(&(key as u32)) {
            Some(&(g, addr)) if g == generation => Some(addr),
            _ => None,
        }
    }

    /// The connection's peer: its PROXY header's client, else the socket's.
    pub(crate) fn peer_addr(&self, key: usize) -> io::Result<SocketAddr> {
        match self.proxied_addr(key) {
            Some(addr) => Ok(addr),
            None => crate::net::peer_addr(self.conns[key].fd),
        }
    }
}
