//! TLS for `wss://` listeners, over rustls.
//!
//! - [`config`]: [`TlsConfig`], the user's certificates (PEM files, several names through
//!   SNI, or a rustls `ServerConfig` of their own);
//! - [`session`]: one connection's TLS state behind a small interface (the only file that
//!   speaks rustls' connection API);
//! - `traffic`: the compact record layer a TLS 1.3 connection runs on after its
//!   handshake, with the keys rustls hands over (rustls' connection is dropped);
//! - [`Sessions`] here: a worker's side table of sessions, keyed by slab key, so the
//!   connection record stays 48 bytes and a plain connection pays nothing.
//!
//! How bytes move (the core's side is `core/secure.rs`): ciphertext is decrypted in the
//! backend's receive buffer; the plaintext of one read is collected in a per-worker
//! scratch buffer and handed to the WebSocket code; only a record cut by a read is
//! copied into the connection's pooled spill until the rest arrives. Output is encrypted
//! at the turn's flush, into the per-worker arena (a lone reply) or the connection's wire
//! outbox. kTLS would plug in at the same place (the session handing its keys to the
//! socket after the handshake); this machine's kernel has no `tls` module to test it.

use std::sync::Arc;

use rustls::ServerConfig;

pub mod config;
pub(crate) mod session;
mod traffic;

pub use config::TlsConfig;
pub(crate) use session::Session;

/// Scratch capacity a worker keeps between reads; larger buffers (after a burst) are freed.
const KEEP_SCRATCH: usize = 256 << 10;

/// A worker's TLS state: the current configuration and the sessions of its connections.
pub(crate) struct Sessions {
    /// New handshakes use this; a reload swaps it (connections keep theirs).
    pub config: Arc<ServerConfig>,
    /// Indexed by slab key; `None` for plain connections and free slots.
    #[allow(clippy::vec_box)] // a moved session costs a pointer copy, not 1-3 KB
    table: Vec<Option<Box<Session>>>,
    /// Plaintext of the read being handled.
    pub plain: Vec<u8>,
    /// Records to send produced while reading (handshake flights, alerts).
    pub out: Vec<u8>,
}

impl Sessions {
    pub fn new(config: Arc<ServerConfig>) -> Sessions {
        Sessions {
            config,
            table: Vec::new(),
            plain: Vec::new(),
            out: Vec::new(),
        }
    }

    /// Starts a session for the connection in slot `key`.
    pub fn open(&mut self, key: usize) -> Result<(), rustls::Error> {
        let session = Box::new(Session::new(self.config.clone())?);
        if self.table.len() <= key {
            self.table.resize_with(key + 1, || None);
        }
        self.table[key] = Some(session);
        Ok(())
    }

    /// Lends the session out (while the connection's input is handled).
    pub fn take(&mut self, key: usize) -> Option<Box<Session>> {
        self.table.get_mut(key).and_then(Option::take)
    }

    /// Takes a lent session back.
    pub fn put(&mut self, key: usize, session: Box<Session>) {
        if let Some(slot) = self.table.get_mut(key) {
            *slot = Some(session);
        }
    }

    pub fn get_mut(&mut self, key: usize) -> Option<&mut Session> {
        self.table.get_mut(key).and_then(|s| s.as_deref_mut())
    }

    /// The connection is gone.
    pub fn close(&mut self, key: usize) {
        if let Some(slot) = self.table.get_mut(key) {
            *slot = None;
        }
    }

    /// Gives back scratch buffers grown by a burst.
    pub fn settle(&mut self, plain: Vec<u8>, out: Vec<u8>) {
        let keep = |mut v: Vec<u8>| {
            v.clear();
            if v.capacity() > KEEP_SCRATCH {
                v = Vec::new();
            }
            v
        };
        self.plain = keep(plain);
        self.out = keep(out);
    }
}
