//! One connection's TLS state, over rustls 0.23's unbuffered server connection. This is the
//! only file that speaks rustls' connection API: moving to rustls 0.24's caller-owned
//! buffers changes this file and nothing else.
//!
//! The session owns no input or output buffer. Ciphertext is read where the backend put
//! it (rustls deframes and decrypts records in place there); the plaintext is appended to
//! a buffer the caller lends (the worker's scratch). Records to send are written into
//! memory the caller lends too (an arena chunk, the connection's outbox).
//!
//! (rustls 0.23 still copies each decrypted record into a `Vec` of its own before handing
//! it out; that copy lives for one record and goes away with 0.24's API.)
//!
//! Once a TLS 1.3 handshake is over, rustls' connection is traded for the much smaller
//! record layer in [`super::traffic`] (3.3 KB down to about 1.3 KB per idle connection).

use std::sync::Arc;

use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{ConnectionState, EncodeError, EncryptError, UnbufferedStatus};
use rustls::{ProtocolVersion, ServerConfig, SupportedCipherSuite};

use super::traffic::{self, Records, Traffic};

/// What one [`Session::read`] did.
#[derive(Debug, Default)]
pub(crate) struct Read {
    /// Bytes of the input consumed (whole records); the rest is an incomplete record.
    pub used: usize,
    /// The peer's close_notify arrived (now or earlier): no more plaintext will come.
    pub peer_closed: bool,
    /// The TLS connection failed (an alert for the peer, if TLS sends one, was written
    /// to the output); it must be closed.
    pub error: Option<rustls::Error>,
}

/// Why [`Session::encrypt`] wrote nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The output needs at least this many bytes.
    Need(usize),
    /// The connection cannot send application data (handshaking, failed or closed).
    Closed,
}

/// Who runs the connection's records.
// The big variant is the one every idle connection lives in, held inline on purpose
// (boxing it again would cost a pointer chase per record and an allocation each).
#[allow(clippy::large_enum_variant)]
enum Layer {
    /// rustls' connection: the handshake, and all along for TLS 1.2 or a config without
    /// `enable_secret_extraction`.
    Rustls(Box<UnbufferedServerConnection>),
    /// After a TLS 1.3 handshake: held inline (the session is boxed already), so a
    /// record reaches its keys through one pointer fewer.
    Traffic(Traffic),
    /// Only while one is traded for the other.
    Gone,
}

/// A server-side TLS connection. `repr(C)`: the flags every record checks first, then
/// the layer (whose own hot fields come first, see [`Traffic`]).
#[repr(C)]
pub(crate) struct Session {
    peer_closed: bool,
    failed: bool,
    notified: bool,
    /// Whether the config lets rustls hand the keys over (see [`Layer::Traffic`]).
    compact: bool,
    /// Handshake records rustls produced outside [`Session::read`] (a key update due
    /// before the next record), waiting for the next output; normally empty.
    held: Vec<u8>,
    layer: Layer,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("handshaking", &self.is_handshaking())
            .field("failed", &self.failed)
            .finish()
    }
}

/// Upper bound of what TLS adds to `len` bytes of plaintext: per record (at most 16 KiB
/// of plaintext each) a header, an AEAD tag, a nonce or content type byte.
pub(crate) fn sealed_len(len: usize) -> usize {
    len + len.div_ceil(16 << 10).max(1) * 64
}

/// The length of the TLS record at the front of `bytes` (header included), or the header
/// length while the header is incomplete.
pub(crate) fn record_len(bytes: &[u8]) -> usize {
    match bytes {
        [_, _, _, hi, lo, ..] => 5 + u16::from_be_bytes([*hi, *lo]) as usize,
        _ => 5,
    }
}

/// The largest TLS record (TLS 1.2's 2^14 + 2048 bytes of ciphertext, plus the header):
/// a header announcing more is refused by rustls, never buffered.
pub(crate) const MAX_RECORD: usize = 5 + (16 << 10) + 2048;

impl Session {
    /// A new connection waiting for its ClientHello.
    pub fn new(config: Arc<ServerConfig>) -> Result<Session, rustls::Error> {
        Ok(Session {
            compact: config.enable_secret_extraction,
            layer: Layer::Rustls(Box::new(UnbufferedServerConnection::new(config)?)),
            held: Vec::new(),
            peer_closed: false,
            failed: false,
            notified: false,
        })
    }

    /// Whether the TLS handshake is still going on.
    pub fn is_handshaking(&self) -> bool {
        match &self.layer {
            Layer::Rustls(conn) => conn.is_handshaking(),
            _ => false,
        }
    }

    /// Whether rustls' connection was traded for the compact record layer.
    #[cfg(test)]
    pub fn is_compact(&self) -> bool {
        matches!(self.layer, Layer::Traffic(_))
    }

    /// After a TLS 1.3 handshake, with nothing left to send: hands the keys to the
    /// compact record layer and drops rustls' connection.
    fn trade(&mut self) -> Result<(), rustls::Error> {
        let Layer::Rustls(conn) = &self.layer else {
            return Ok(());
        };
        let suite = match conn.negotiated_cipher_suite() {
            Some(SupportedCipherSuite::Tls13(suite)) => suite,
            _ => return Ok(()),
        };
        if !self.compact
            || conn.is_handshaking()
            || conn.protocol_version() != Some(ProtocolVersion::TLSv1_3)
            || !self.held.is_empty()
        {
            return Ok(());
        }
        let Layer::Rustls(conn) = std::mem::replace(&mut self.layer, Layer::Gone) else {
            unreachable!("checked above");
        };
        self.layer = Layer::Traffic(Traffic::new(*conn, suite)?);
        Ok(())
    }

    /// Whether the connection failed (no more records may be read or sent).
    pub fn failed(&self) -> bool {
        self.failed
    }

    /// Whether the peer's close_notify arrived.
    pub fn peer_closed(&self) -> bool {
        self.peer_closed
    }

    /// Processes the whole records at the front of `input` (decrypting them in place):
    /// application data is appended to `plain`, records to send (handshake, alerts) to
    /// `out`.
    pub fn read(&mut self, input: &mut [u8], plain: &mut Vec<u8>, out: &mut Vec<u8>) -> Read {
        let mut read = Read::default();
        if self.failed {
            read.used = input.len();
            return read;
        }
        out.append(&mut self.held);
        if let Layer::Traffic(t) = &mut self.layer {
            let mut records = Records {
                used: 0,
                peer_closed: self.peer_closed,
            };
            let result = t.read(input, plain, out, &mut records);
            self.peer_closed = records.peer_closed;
            read.used = records.used;
            read.peer_closed = self.peer_closed;
            if let Err(f) = result {
                if let Some(desc) = f.alert {
                    t.alert(desc, out);
                }
                self.failed = true;
                read.error = Some(f.error);
            }
            return read;
        }
        let Layer::Rustls(conn) = &mut self.layer else {
            read.used = input.len();
            return read;
        };
        let mut traded = false;
        // Each round makes progress (a record consumed, one emitted, a state reported
        // once); the bound only guards against a rustls bug spinning the worker.
        for _ in 0..(input.len() + 64) {
            let UnbufferedStatus { discard, state } =
                conn.process_tls_records(&mut input[read.used..]);
            let state = match state {
                Ok(state) => state,
                Err(e) => {
                    read.used += discard;
                    read.error = Some(e);
                    break;
                }
            };
            let more = match state {
                ConnectionState::ReadTraffic(mut traffic) => {
                    while let Some(record) = traffic.next_record() {
                        match record {
                            Ok(r) => plain.extend_from_slice(r.payload),
                            Err(e) => {
                                read.error = Some(e);
                                break;
                            }
                        }
                    }
                    true
                }
                ConnectionState::EncodeTlsData(mut encode) => {
                    encode_into(&mut encode, out);
                    true
                }
                // The records are in `out`; they leave with the connection's output.
                ConnectionState::TransmitTlsData(transmit) => {
                    transmit.done();
                    true
                }
                ConnectionState::PeerClosed => {
                    self.peer_closed = true;
                    true
                }
                ConnectionState::ReadEarlyData(mut early) => {
                    // Early data is off (`max_early_data_size` 0); drained if a user's
                    // config turns it on, since a WebSocket upgrade cannot be replayed.
                    while early.next_record().is_some() {}
                    true
                }
                // No whole record left in the input, nothing to send: the handshake is
                // over and rustls can hand the keys over.
                ConnectionState::WriteTraffic(_) => {
                    traded = true;
                    false
                }
                // No whole record left in the input.
                ConnectionState::BlockedHandshake => false,
                ConnectionState::Closed => false,
                _ => false,
            };
            read.used += discard;
            if read.error.is_some() || !more {
                break;
            }
        }
        if read.error.is_some() {
            self.fail(out);
        } else if traded
            && !self.peer_closed
            && let Err(e) = self.trade()
        {
            // rustls refused to hand over (it should not: nothing is pending); its
            // connection is gone, so this one ends.
            self.failed = true;
            read.error = Some(e);
        }
        read.peer_closed = self.peer_closed;
        read
    }

    /// After an error: writes the alert rustls queued, and refuses everything from now on.
    fn fail(&mut self, out: &mut Vec<u8>) {
        self.failed = true;
        let Layer::Rustls(conn) = &mut self.layer else {
            return;
        };
        for _ in 0..8 {
            match conn.process_tls_records(&mut []).state {
                Ok(ConnectionState::EncodeTlsData(mut encode)) => encode_into(&mut encode, out),
                Ok(ConnectionState::TransmitTlsData(t)) => t.done(),
                _ => break,
            }
        }
    }

    /// Encrypts `plain` into `out` as application data records; returns the bytes
    /// written. On `Err`, `out` holds nothing of it.
    pub fn encrypt(&mut self, plain: &[u8], out: &mut [u8]) -> Result<usize, Refused> {
        if self.failed || self.notified {
            return Err(Refused::Closed);
        }
        let conn = match &mut self.layer {
            Layer::Rustls(conn) => conn,
            Layer::Traffic(t) => {
                let need = t.sealed_len(plain.len());
                if out.len() < need {
                    return Err(Refused::Need(need));
                }
                return t.encrypt(plain, out).map_err(|_| Refused::Closed);
            }
            Layer::Gone => return Err(Refused::Closed),
        };
        for _ in 0..8 {
            let state = conn.process_tls_records(&mut []).state;
            match state {
                Ok(ConnectionState::EncodeTlsData(mut encode)) => {
                    encode_into(&mut encode, &mut self.held)
                }
                Ok(ConnectionState::TransmitTlsData(t)) => t.done(),
                Ok(ConnectionState::PeerClosed) => self.peer_closed = true,
                Ok(ConnectionState::WriteTraffic(mut w)) => {
                    let at = self.held.len();
                    if out.len() < at {
                        return Err(Refused::Need(at + sealed_len(plain.len())));
                    }
                    return match w.encrypt(plain, &mut out[at..]) {
                        Ok(n) => {
                            out[..at].copy_from_slice(&self.held);
                            self.held.clear();
                            Ok(at + n)
                        }
                        Err(EncryptError::InsufficientSize(s)) => {
                            Err(Refused::Need(at + s.required_size))
                        }
                        Err(_) => Err(Refused::Closed),
                    };
                }
                _ => return Err(Refused::Closed),
            }
        }
        Err(Refused::Closed)
    }

    /// Whether [`Session::encrypt_chunks`] takes several chunks at once (the compact
    /// TLS 1.3 layer; rustls' own connection takes one slice at a time).
    pub fn coalesces(&self) -> bool {
        matches!(self.layer, Layer::Traffic(_)) && !self.failed && !self.notified
    }

    /// Most bytes [`Session::encrypt_chunks`] writes for `len` bytes of plaintext.
    pub fn sealed_len_of(&self, len: usize) -> usize {
        match &self.layer {
            Layer::Traffic(t) => t.sealed_len(len),
            _ => sealed_len(len),
        }
    }

    /// Encrypts the concatenation of `chunks` into `out`, in as few records as their
    /// length allows; returns the bytes written. On `Err`, `out` holds nothing of it.
    /// Only when [`Session::coalesces`]: otherwise `Refused::Closed`.
    pub fn encrypt_chunks(&mut self, chunks: &[&[u8]], out: &mut [u8]) -> Result<usize, Refused> {
        if self.failed || self.notified {
            return Err(Refused::Closed);
        }
        let Layer::Traffic(t) = &mut self.layer else {
            return Err(Refused::Closed);
        };
        let need = t.sealed_len(chunks.iter().map(|c| c.len()).sum());
        if out.len() < need {
            return Err(Refused::Need(need));
        }
        t.encrypt_chunks(chunks, out).map_err(|_| Refused::Closed)
    }

    /// Appends our close_notify to `out` (once; nothing when the handshake has not
    /// completed or the connection failed, when only the FIN follows).
    pub fn close_notify(&mut self, out: &mut Vec<u8>) {
        if self.failed || self.notified {
            return;
        }
        self.notified = true;
        out.append(&mut self.held);
        let conn = match &mut self.layer {
            Layer::Rustls(conn) => conn,
            Layer::Traffic(t) => return t.alert(traffic::alert::CLOSE_NOTIFY, out),
            Layer::Gone => return,
        };
        for _ in 0..8 {
            let state = conn.process_tls_records(&mut []).state;
            match state {
                Ok(ConnectionState::EncodeTlsData(mut encode)) => encode_into(&mut encode, out),
                Ok(ConnectionState::TransmitTlsData(t)) => t.done(),
                Ok(ConnectionState::PeerClosed) => self.peer_closed = true,
                Ok(ConnectionState::WriteTraffic(mut w)) => {
                    let at = out.len();
                    let mut room = 64;
                    for _ in 0..4 {
                        out.resize(at + room, 0);
                        match w.queue_close_notify(&mut out[at..]) {
                            Ok(n) => {
                                out.truncate(at + n);
                                return;
                            }
                            Err(EncryptError::InsufficientSize(s)) => room = s.required_size,
                            Err(_) => break,
                        }
                    }
                    out.truncate(at);
                    return;
                }
                _ => return,
            }
        }
    }
}

/// Encodes a handshake record at the end of `out`, growing it as rustls asks.
fn encode_into<Data>(encode: &mut rustls::unbuffered::EncodeTlsData<'_, Data>, out: &mut Vec<u8>) {
    let at = out.len();
    let mut room = 1024;
    for _ in 0..4 {
        out.resize(at + room, 0);
        match encode.encode(&mut out[at..]) {
            Ok(n) => {
                out.truncate(at + n);
                return;
            }
            Err(EncodeError::InsufficientSize(s)) => room = s.required_size,
            Err(EncodeError::AlreadyEncoded) => break,
        }
    }
    out.truncate(at);
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName};
    use std::io::{Read as _, Write as _};

    /// A server config as the engine builds it, and a client trusting it for `versions`.
    fn configs(
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> (Arc<ServerConfig>, Arc<rustls::ClientConfig>) {
        let c = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let (cert, key) = (c.cert.pem(), c.signing_key.serialize_pem());
        let server = crate::TlsConfig::from_pem(cert.as_bytes(), key.as_bytes()).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(cert.as_bytes()).unwrap())
            .unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        (server.rustls().clone(), Arc::new(client))
    }

    /// Moves records both ways until neither side has more to say.
    fn pump(s: &mut Session, c: &mut rustls::ClientConnection, plain: &mut Vec<u8>) {
        for _ in 0..16 {
            let mut wire = Vec::new();
            while c.wants_write() {
                c.write_tls(&mut wire).unwrap();
            }
            let mut out = Vec::new();
            if !wire.is_empty() {
                let r = s.read(&mut wire, plain, &mut out);
                assert!(r.error.is_none(), "{:?}", r.error);
                assert_eq!(r.used, wire.len());
            }
            if wire.is_empty() && out.is_empty() {
                return;
            }
            let mut rd = &out[..];
            while !rd.is_empty() {
                c.read_tls(&mut rd).unwrap();
                c.process_new_packets().unwrap();
            }
        }
    }

    fn echo(s: &mut Session, c: &mut rustls::ClientConnection) {
        let mut plain = Vec::new();
        c.writer().write_all(b"ping").unwrap();
        pump(s, c, &mut plain);
        assert_eq!(plain, b"ping");
        let mut out = vec![0; sealed_len(4)];
        let n = s.encrypt(b"pong", &mut out).unwrap();
        let mut rd = &out[..n];
        c.read_tls(&mut rd).unwrap();
        c.process_new_packets().unwrap();
        let mut got = [0; 4];
        c.reader().read_exact(&mut got).unwrap();
        assert_eq!(&got, b"pong");
    }

    fn connect(
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> (Session, rustls::ClientConnection) {
        let (server, client) = configs(versions);
        let mut s = Session::new(server).unwrap();
        let mut c =
            rustls::ClientConnection::new(client, ServerName::try_from("localhost").unwrap())
                .unwrap();
        pump(&mut s, &mut c, &mut Vec::new());
        assert!(!s.is_handshaking() && !c.is_handshaking());
        (s, c)
    }

    #[test]
    fn a_tls13_session_trades_rustls_for_the_compact_layer_and_still_echoes() {
        let (mut s, mut c) = connect(&[&rustls::version::TLS13]);
        assert!(
            s.is_compact(),
            "TLS 1.3 after the handshake runs on the compact layer"
        );
        echo(&mut s, &mut c);
        let mut out = Vec::new();
        s.close_notify(&mut out);
        let mut rd = &out[..];
        c.read_tls(&mut rd).unwrap();
        let state = c.process_new_packets().unwrap();
        assert!(
            state.peer_has_closed(),
            "our close_notify reaches the client"
        );
    }

    /// Our record layer's records read back by rustls, and rustls' records read by it,
    /// at every plaintext size 0..=300 and around 16 KiB (one record either side of
    /// the 2^14 limit), from one slice and from several.
    #[test]
    fn the_compact_layer_and_rustls_read_each_others_records_at_every_size() {
        let (mut s, mut c) = connect(&[&rustls::version::TLS13]);
        assert!(s.is_compact());
        let sizes = (0..=300).chain((16 << 10) - 300..=(16 << 10) + 300);
        for (i, size) in sizes.enumerate() {
            let msg: Vec<u8> = (0..size).map(|k| (k * 31 + i) as u8).collect();
            // Ours to rustls: one slice, then split in up to three at rotating points.
            let a = if size == 0 { 0 } else { i % (size + 1) };
            let b = a + (size - a) / 2;
            let splits: [&[&[u8]]; 2] = [&[&msg], &[&msg[..a], &msg[a..b], &msg[b..]]];
            for chunks in splits {
                let mut out = vec![0; s.sealed_len_of(size)];
                let n = if chunks.len() == 1 {
                    s.encrypt(chunks[0], &mut out).unwrap()
                } else {
                    s.encrypt_chunks(chunks, &mut out).unwrap()
                };
                let records = size.div_ceil(16 << 10).max(1);
                assert_eq!(
                    n,
                    size + records * (5 + 16 + 1),
                    "size {size}: one record per 2^14 B"
                );
                let mut rd = &out[..n];
                while !rd.is_empty() {
                    c.read_tls(&mut rd).unwrap();
                    c.process_new_packets().unwrap();
                }
                let mut got = vec![0; size];
                if size > 0 {
                    c.reader().read_exact(&mut got).unwrap();
                }
                assert_eq!(got, msg, "ours to rustls, size {size}");
            }
            // rustls to ours, cut at a rotating point between two reads.
            if size > 0 {
                c.writer().write_all(&msg).unwrap();
                let mut wire = Vec::new();
                while c.wants_write() {
                    c.write_tls(&mut wire).unwrap();
                }
                let cut = i % wire.len();
                let (mut plain, mut out) = (Vec::new(), Vec::new());
                let mut first = wire[..cut].to_vec();
                let r = s.read(&mut first, &mut plain, &mut out);
                assert!(r.error.is_none());
                let mut rest = wire[r.used..].to_vec();
                let r2 = s.read(&mut rest, &mut plain, &mut out);
                assert!(r2.error.is_none(), "{:?}", r2.error);
                assert_eq!(r2.used, rest.len());
                assert_eq!(plain, msg, "rustls to ours, size {size}");
                assert!(out.is_empty());
            }
        }
    }

    #[test]
    fn a_tls12_session_keeps_rustls_and_echoes() {
        let (mut s, mut c) = connect(&[&rustls::version::TLS12]);
        assert!(!s.is_compact());
        echo(&mut s, &mut c);
    }
}
