//! A TLS 1.3 connection after its handshake, without rustls' connection object.
//!
//! Once the handshake is over, rustls' unbuffered connection still holds about 3.3 KB
//! (measured with ring: the 1,088-byte connection itself, its handshake deframer's
//! 640-byte span table, the traffic state, and the two 560-byte AEAD keys). What the
//! connection needs from then on is much less: the two record keys, their sequence
//! numbers, and rustls' [`KernelConnection`] for the key schedule (a peer's KeyUpdate).
//! rustls hands exactly that over through its kernel-TLS entry point
//! (`dangerous_into_kernel_connection`), and [`Traffic`] is the record layer around
//! it: record framing and sequence numbers here, the cryptography in rustls' own
//! [`MessageEncrypter`] and [`MessageDecrypter`] for the negotiated suite, and the
//! key schedule in rustls. kTLS would take the same keys at the same point.
//!
//! TLS 1.2 connections (and configs without `enable_secret_extraction`) keep rustls'
//! connection throughout; see `session.rs`.

use rustls::crypto::cipher::{
    InboundOpaqueMessage, MessageDecrypter, MessageEncrypter, OutboundChunks, OutboundPlainMessage,
};
use rustls::kernel::KernelConnection;
use rustls::server::ServerConnectionData;
use rustls::{ConnectionTrafficSecrets, ContentType, ProtocolVersion, Tls13CipherSuite};

/// Alert descriptions this layer sends (RFC 8446 6).
pub(crate) mod alert {
    pub const CLOSE_NOTIFY: u8 = 0;
    pub const UNEXPECTED_MESSAGE: u8 = 10;
    pub const BAD_RECORD_MAC: u8 = 20;
    pub const RECORD_OVERFLOW: u8 = 22;
    pub const DECODE_ERROR: u8 = 50;
    pub const INTERNAL_ERROR: u8 = 80;
    pub const USER_CANCELED: u8 = 90;
}

/// Largest TLS 1.3 ciphertext (RFC 8446 5.2: 2^14 + 256).
const MAX_CIPHERTEXT: usize = (16 << 10) + 256;
/// Largest plaintext of a record.
const MAX_PLAINTEXT: usize = 16 << 10;
const HEADER: usize = 5;
/// Handshake message type of a KeyUpdate (RFC 8446 4.6.3).
const KEY_UPDATE: u8 = 24;
/// Records in a row with no plaintext a peer may send (rustls' own cap for the records
/// it reads, `ALLOWED_CONSECUTIVE_EMPTY_FRAGMENTS_MAX`): each costs a decryption and
/// moves nothing, so an endless stream of them is a way to keep the worker busy.
/// (Records read before the trade are counted by rustls itself; the count starts again
/// at the trade, so a run across it is capped at twice this.)
pub(crate) const MAX_EMPTY_RECORDS: u8 = 32;

/// Why the connection failed: the alert to send (if any) and the error to report.
#[derive(Debug)]
pub(crate) struct Failure {
    pub alert: Option<u8>,
    pub error: rustls::Error,
}

fn fail(alert: u8, why: &str) -> Failure {
    Failure {
        alert: Some(alert),
        error: rustls::Error::General(why.into()),
    }
}

/// What [`Traffic::read`] found.
#[derive(Debug, Default)]
pub(crate) struct Records {
    /// Bytes of whole records consumed.
    pub used: usize,
    /// The peer's close_notify arrived.
    pub peer_closed: bool,
}

/// The record layer of a TLS 1.3 connection after its handshake.
///
/// `repr(C)`, hot fields first: what every record touches (the sequence numbers and the
/// two AEAD pointers) shares the first cache line with the session's flags, and the
/// key schedule (`kernel`, ~570 bytes, used only at a KeyUpdate) comes last.
#[repr(C)]
pub(crate) struct Traffic {
    tx_seq: u64,
    rx_seq: u64,
    enc: Box<dyn MessageEncrypter>,
    dec: Box<dyn MessageDecrypter>,
    /// Records in a row whose plaintext was empty (capped at [`MAX_EMPTY_RECORDS`]).
    empty: u8,
    suite: &'static Tls13CipherSuite,
    kernel: KernelConnection<ServerConnectionData>,
}

fn key_iv(
    secrets: ConnectionTrafficSecrets,
) -> (rustls::crypto::cipher::AeadKey, rustls::crypto::cipher::Iv) {
    match secrets {
        ConnectionTrafficSecrets::Aes128Gcm { key, iv }
        | ConnectionTrafficSecrets::Aes256Gcm { key, iv }
        | ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv } => (key, iv),
        // The enum is non-exhaustive; a new AEAD would come with a new TLS 1.3 suite.
        #[allow(unreachable_patterns)]
        _ => unreachable!("rustls 0.23 TLS 1.3 suites use one of the three AEADs"),
    }
}

impl Traffic {
    /// Takes over from rustls' connection (which must be past its handshake, with
    /// nothing left to send).
    pub fn new(
        conn: rustls::server::UnbufferedServerConnection,
        suite: &'static Tls13CipherSuite,
    ) -> Result<Traffic, rustls::Error> {
        let (secrets, kernel) = conn.dangerous_into_kernel_connection()?;
        let (tx_seq, tx) = secrets.tx;
        let (rx_seq, rx) = secrets.rx;
        let (tk, ti) = key_iv(tx);
        let (rk, ri) = key_iv(rx);
        Ok(Traffic {
            tx_seq,
            rx_seq,
            enc: suite.aead_alg.encrypter(tk, ti),
            dec: suite.aead_alg.decrypter(rk, ri),
            empty: 0,
            suite,
            kernel,
        })
    }

    /// Processes the whole records at the front of `input`, decrypting in place:
    /// application data is appended to `plain`, records to send (a KeyUpdate answer) to
    /// `out`. On `Err`, the alert to send is the failure's (see [`Traffic::alert`]).
    pub fn read(
        &mut self,
        input: &mut [u8],
        plain: &mut Vec<u8>,
        out: &mut Vec<u8>,
        records: &mut Records,
    ) -> Result<(), Failure> {
        loop {
            let rest = &mut input[records.used..];
            if rest.len() < HEADER {
                return Ok(());
            }
            let typ = rest[0];
            let len = u16::from_be_bytes([rest[3], rest[4]]) as usize;
            if len > MAX_CIPHERTEXT {
                return Err(fail(
                    alert::RECORD_OVERFLOW,
                    "record longer than TLS 1.3 allows",
                ));
            }
            if rest.len() < HEADER + len {
                return Ok(());
            }
            records.used += HEADER + len;
            if records.peer_closed {
                continue; // nothing after close_notify counts
            }
            // After the handshake every TLS 1.3 record is protected and says so.
            if typ != u8::from(ContentType::ApplicationData) {
                return Err(fail(
                    alert::UNEXPECTED_MESSAGE,
                    "unprotected record after the handshake",
                ));
            }
            let body = &mut rest[HEADER..HEADER + len];
            let msg = InboundOpaqueMessage::new(
                ContentType::ApplicationData,
                ProtocolVersion::TLSv1_2,
                body,
            );
            let record = match self.dec.decrypt(msg, self.rx_seq) {
                Ok(r) => r,
                Err(e) => {
                    return Err(Failure {
                        alert: Some(alert::BAD_RECORD_MAC),
                        error: e,
                    });
                }
            };
            self.rx_seq += 1;
            if record.payload.len() > MAX_PLAINTEXT {
                return Err(fail(alert::RECORD_OVERFLOW, "plaintext longer than 2^14"));
            }
            if record.payload.is_empty() {
                // Only application data may be empty (an empty alert or handshake
                // record fails below); a run of them is capped as rustls caps it.
                if self.empty >= MAX_EMPTY_RECORDS {
                    return Err(Failure {
                        alert: Some(alert::UNEXPECTED_MESSAGE),
                        error: rustls::Error::PeerMisbehaved(
                            rustls::PeerMisbehaved::TooManyEmptyFragments,
                        ),
                    });
                }
                self.empty += 1;
            } else {
                self.empty = 0;
            }
            match record.typ {
                ContentType::ApplicationData => plain.extend_from_slice(record.payload),
                ContentType::Alert => match record.payload {
                    [_, alert::CLOSE_NOTIFY] => records.peer_closed = true,
                    [_, alert::USER_CANCELED] => {}
                    // Any other alert is fatal in TLS 1.3; nothing is sent back.
                    [_, desc] => {
                        return Err(Failure {
                            alert: None,
                            error: rustls::Error::AlertReceived((*desc).into()),
                        });
                    }
                    _ => return Err(fail(alert::DECODE_ERROR, "malformed alert")),
                },
                ContentType::Handshake => {
                    let payload = record.payload.to_vec();
                    self.handshake(&payload, out)?;
                }
                _ => return Err(fail(alert::UNEXPECTED_MESSAGE, "unexpected record type")),
            }
        }
    }

    /// Post-handshake messages: only KeyUpdate is one a client may send a server.
    fn handshake(&mut self, mut payload: &[u8], out: &mut Vec<u8>) -> Result<(), Failure> {
        if payload.is_empty() {
            return Err(fail(alert::UNEXPECTED_MESSAGE, "empty handshake record"));
        }
        while !payload.is_empty() {
            let [typ, a, b, c, rest @ ..] = payload else {
                return Err(fail(alert::DECODE_ERROR, "cut handshake message"));
            };
            let len = u32::from_be_bytes([0, *a, *b, *c]) as usize;
            if *typ != KEY_UPDATE {
                return Err(fail(
                    alert::UNEXPECTED_MESSAGE,
                    "post-handshake message a server does not take",
                ));
            }
            let ([request], tail) = (rest.get(..len).unwrap_or(&[]), &rest[len.min(rest.len())..])
            else {
                return Err(fail(alert::DECODE_ERROR, "malformed KeyUpdate"));
            };
            let requested = match request {
                0 => false,
                1 => true,
                _ => return Err(fail(alert::DECODE_ERROR, "malformed KeyUpdate")),
            };
            payload = tail;
            let (seq, secrets) = self.kernel.update_rx_secret().map_err(|e| Failure {
                alert: Some(alert::INTERNAL_ERROR),
                error: e,
            })?;
            let (k, iv) = key_iv(secrets);
            self.dec = self.suite.aead_alg.decrypter(k, iv);
            self.rx_seq = seq;
            if requested {
                self.update_tx(out)?;
            }
        }
        Ok(())
    }

    /// Sends our KeyUpdate (not asking for the peer's), then switches to the next key.
    fn update_tx(&mut self, out: &mut Vec<u8>) -> Result<(), Failure> {
        let record = self
            .record(ContentType::Handshake, &[KEY_UPDATE, 0, 0, 1, 0])
            .map_err(|e| Failure {
                alert: None,
                error: e,
            })?;
        out.extend_from_slice(&record);
        let (seq, secrets) = self.kernel.update_tx_secret().map_err(|e| Failure {
            alert: None,
            error: e,
        })?;
        let (k, iv) = key_iv(secrets);
        self.enc = self.suite.aead_alg.encrypter(k, iv);
        self.tx_seq = seq;
        Ok(())
    }

    /// Most bytes [`Traffic::encrypt`] writes for `len` bytes of application data (with
    /// room for a KeyUpdate, should the key be renewed on the way).
    pub fn sealed_len(&self, len: usize) -> usize {
        let records = len.div_ceil(MAX_PLAINTEXT).max(1);
        let last = len - (records - 1) * MAX_PLAINTEXT;
        (records - 1) * (HEADER + self.enc.encrypted_payload_len(MAX_PLAINTEXT))
            + HEADER
            + self.enc.encrypted_payload_len(last)
            + HEADER
            + self.enc.encrypted_payload_len(5)
    }

    /// One record of `typ` holding `payload` (at most 2^14 bytes), encrypted.
    fn record(&mut self, typ: ContentType, payload: &[u8]) -> Result<Vec<u8>, rustls::Error> {
        self.record_of(typ, OutboundChunks::Single(payload))
    }

    /// One record of `typ` holding `payload` (at most 2^14 bytes, in one slice or
    /// several), encrypted.
    fn record_of(
        &mut self,
        typ: ContentType,
        payload: OutboundChunks<'_>,
    ) -> Result<Vec<u8>, rustls::Error> {
        let msg = OutboundPlainMessage {
            typ,
            version: ProtocolVersion::TLSv1_2,
            payload,
        };
        let record = self.enc.encrypt(msg, self.tx_seq)?.encode();
        self.tx_seq += 1;
        Ok(record)
    }

    /// Encrypts `plain` as application data records into `out`; returns the bytes
    /// written. `out` must hold [`Traffic::sealed_len`] bytes.
    pub fn encrypt(&mut self, plain: &[u8], out: &mut [u8]) -> Result<usize, rustls::Error> {
        self.encrypt_chunks(&[plain], out)
    }

    /// Encrypts the concatenation of `chunks` as application data records into `out`,
    /// as few as 2^14-byte records allow (one record may span several chunks, so many
    /// small queued messages leave in one record, not one each); returns the bytes
    /// written. `out` must hold [`Traffic::sealed_len`] of their total length.
    pub fn encrypt_chunks(
        &mut self,
        chunks: &[&[u8]],
        out: &mut [u8],
    ) -> Result<usize, rustls::Error> {
        let total: usize = chunks.iter().map(|c| c.len()).sum();
        let mut at = 0;
        let mut put = |bytes: &[u8], at: &mut usize| -> Result<(), rustls::Error> {
            let end = *at + bytes.len();
            let Some(dst) = out.get_mut(*at..end) else {
                return Err(rustls::Error::General(
                    "record larger than announced".into(),
                ));
            };
            dst.copy_from_slice(bytes);
            *at = end;
            Ok(())
        };
        let mut rest = OutboundChunks::new(chunks);
        let mut left = total;
        // An empty input is one empty record (as rustls' `WriteTraffic::encrypt` writes).
        loop {
            let take = left.min(MAX_PLAINTEXT);
            let (record, tail) = rest.split_at(take);
            rest = tail;
            left -= take;
            if self.tx_seq >= self.suite.common.confidentiality_limit {
                // rustls renews the key itself at this point; so does this layer.
                let mut update = Vec::new();
                self.update_tx(&mut update).map_err(|f| f.error)?;
                put(&update, &mut at)?;
            }
            let record = self.record_of(ContentType::ApplicationData, record)?;
            put(&record, &mut at)?;
            if left == 0 {
                return Ok(at);
            }
        }
    }

    /// Appends an alert record (fatal, or our close_notify) to `out`.
    pub fn alert(&mut self, desc: u8, out: &mut Vec<u8>) {
        let level = if desc == alert::CLOSE_NOTIFY { 1 } else { 2 };
        if let Ok(record) = self.record(ContentType::Alert, &[level, desc]) {
            out.extend_from_slice(&record);
        }
    }
}
