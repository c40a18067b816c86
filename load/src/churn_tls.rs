//! Connection churn over `wss://`: the handshakes-per-second client when every connection
//! is a TLS session. [`crate::churn`]'s system-call economies (a reused socket, a peeked
//! 101) do not carry over to TLS, whose handshake is most of the work anyway, so this one
//! is a [`Fleet`] whose connections are replaced (reset, a fresh socket and session from
//! the next source address) as soon as their 101 is in, or when they fail.
//!
//! Each connection is a full TLS handshake: the client keeps no sessions to resume
//! ([`crate::tls::Tls::new`]), so what is measured is what a new client costs the server.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use crate::fleet::{Conn, Driver, Fleet, Msg, Phase};
use crate::tls::Tls;

/// Collects the connections whose upgrade completed during a turn.
struct Upgraded(Vec<usize>);

impl Driver for Upgraded {
    fn opened(&mut self, index: usize, _conn: &mut Conn) {
        self.0.push(index);
    }
    fn message(&mut self, _: usize, _: &mut Conn, _: Msg<'_>) {}
}

/// A set of slots, each always holding one TLS connection in its handshake or upgrade.
pub struct TlsChurn {
    fleet: Fleet,
    done: Upgraded,
    /// Upgrades that completed (TLS handshake, then a valid 101).
    pub upgraded: u64,
    /// Connections that failed (refused, reset, a TLS error, a wrong answer).
    pub failed: u64,
    /// The first failure's reason.
    pub first_error: Option<String>,
}

impl std::fmt::Debug for TlsChurn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsChurn").finish_non_exhaustive()
    }
}

impl TlsChurn {
    /// `slots` TLS connections to `addr`'s `path`, all started now, from the source
    /// addresses starting at `source_offset`.
    pub fn new(
        addr: SocketAddr,
        path: &str,
        slots: usize,
        tls: Tls,
        source_offset: usize,
    ) -> io::Result<TlsChurn> {
        let mut fleet = Fleet::new(addr)?
            .with_source_offset(source_offset)
            .with_tls(Some(tls));
        for _ in 0..slots {
            fleet.add(path, 0)?;
        }
        Ok(TlsChurn {
            fleet,
            done: Upgraded(Vec::new()),
            upgraded: 0,
            failed: 0,
            first_error: None,
        })
    }

    /// Waits up to `timeout` for events and handles them; returns how many upgrades
    /// completed. Each completed or failed slot starts its next connection at once.
    pub fn turn(&mut self, timeout: Option<Duration>) -> io::Result<u64> {
        self.fleet.turn(timeout, &mut self.done)?;
        let upgraded = self.done.0.len() as u64;
        self.upgraded += upgraded;
        for i in self.done.0.drain(..) {
            self.fleet.replace(i)?;
        }
        for i in 0..self.fleet.conns.len() {
            if self.fleet.conns[i].phase == Phase::Closed {
                self.failed += 1;
                if self.first_error.is_none() {
                    self.first_error = self.fleet.conns[i].error.clone();
                }
                self.fleet.replace(i)?;
            }
        }
        Ok(upgraded)
    }
}
