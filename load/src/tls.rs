//! `wss://` for the load generator: a rustls client session (ring provider, the
//! workspace's rustls) over the non-blocking socket, seen by the connection cores
//! ([`crate::fleet`], [`crate::client`]) as one byte stream, so that their WebSocket code
//! is the same over TLS and over TCP.
//!
//! [`Stream`] keeps the read and write contracts of a non-blocking socket that those cores
//! build on: a read shorter than the buffer means the socket is drained (so edge-triggered
//! readiness raises a new edge for later data), a write takes what it can and refuses with
//! `WouldBlock` when the session's send buffer is full, and [`Stream::flush_records`]
//! (called on `EPOLLOUT`) sends the records still waiting. The TLS handshake needs no state
//! of its own in the cores: the upgrade request is written at once, rustls holds it until
//! the handshake is done, and the reads that carry the server's flight send what the
//! session has to say.
//!
//! Per connection this is rustls' buffered `ClientConnection` (boxed, so plain connections
//! do not pay for it); its memory is measured by `examples/c10m --tls` and written in its
//! report. The certificate is checked against `--cafile` when one is given; without one any
//! certificate is accepted (a load generator measures servers, it does not protect data),
//! but the handshake signatures are still verified.

use std::io::{self, Read, Write};
use std::net::IpAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::path::Path;
use std::sync::Arc;

use mio::net::TcpStream;
use rustls::client::Resumption;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

/// Plaintext plus records a session holds for the socket before writes are refused: one
/// 16 KiB record and some, so a slow server pushes back on the sender as a full socket does.
const SEND_LIMIT: usize = 64 << 10;

/// The TLS side of a target: the client config and the name the server is asked for.
#[derive(Clone)]
pub struct Tls {
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn invalid(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

impl Tls {
    /// A client for `host` (a name or an IP address, without the port) trusting the PEM
    /// certificates in `cafile`, or any certificate when there is none. Every handshake
    /// is a full one (no session resumption), so that a handshake rate measures what a
    /// new client costs; ALPN offers `http/1.1`.
    pub fn new(host: &str, cafile: Option<&Path>) -> io::Result<Tls> {
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| invalid(e.to_string()))?;
        let mut config = match cafile {
            Some(path) => {
                let pem = std::fs::read(path)
                    .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
                let mut roots = RootCertStore::empty();
                for cert in CertificateDer::pem_slice_iter(&pem) {
                    let cert = cert.map_err(|e| invalid(format!("{}: {e}", path.display())))?;
                    roots
                        .add(cert)
                        .map_err(|e| invalid(format!("{}: {e}", path.display())))?;
                }
                if roots.is_empty() {
                    return Err(invalid(format!("{}: no certificate", path.display())));
                }
                builder.with_root_certificates(roots).with_no_client_auth()
            }
            None => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider())))
                .with_no_client_auth(),
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        config.resumption = Resumption::disabled();
        Ok(Tls::from_config(Arc::new(config), server_name(host)?))
    }

    /// A client config built elsewhere, asking for `name`.
    pub fn from_config(config: Arc<ClientConfig>, name: ServerName<'static>) -> Tls {
        Tls { config, name }
    }

    /// A stream over `tcp` whose handshake starts with the first write or flush.
    pub fn wrap(&self, tcp: TcpStream) -> io::Result<Stream> {
        let mut session = ClientConnection::new(self.config.clone(), self.name.clone())
            .map_err(|e| io::Error::other(format!("TLS session: {e}")))?;
        session.set_buffer_limit(Some(SEND_LIMIT));
        Ok(Stream {
            tcp,
            tls: Some(Box::new(session)),
            notified: false,
        })
    }
}

/// The name to ask the server for: an IP address as itself, anything else as a DNS name.
pub fn server_name(host: &str) -> io::Result<ServerName<'static>> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(ServerName::IpAddress(ip.into()));
    }
    ServerName::try_from(bare.to_owned()).map_err(|e| invalid(format!("{host}: {e}")))
}

/// Accepts any certificate chain; still checks that the handshake is signed by the key in
/// the certificate it was given (a load generator needs no trust, but a broken server
/// signature is a broken server).
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A client connection's byte stream: the socket itself, or a TLS session over it.
pub struct Stream {
    tcp: TcpStream,
    tls: Option<Box<ClientConnection>>,
    /// Our close_notify was queued.
    notified: bool,
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stream")
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

impl From<TcpStream> for Stream {
    fn from(tcp: TcpStream) -> Stream {
        Stream {
            tcp,
            tls: None,
            notified: false,
        }
    }
}

impl Stream {
    /// `tcp` as it is (`tls` `None`), or wrapped in a session of `tls`.
    pub fn new(tcp: TcpStream, tls: Option<&Tls>) -> io::Result<Stream> {
        match tls {
            Some(t) => t.wrap(tcp),
            None => Ok(Stream::from(tcp)),
        }
    }

    /// The socket.
    pub fn tcp(&self) -> &TcpStream {
        &self.tcp
    }

    /// Whether this stream is TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The socket's pending error (`SO_ERROR`), as [`TcpStream::take_error`].
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.tcp.take_error()
    }

    /// Shuts the socket down (no close_notify: this is for giving up on a connection).
    pub fn shutdown(&self, how: std::net::Shutdown) -> io::Result<()> {
        self.tcp.shutdown(how)
    }

    /// Sends close_notify (TLS only, once; what the socket does not take goes out with
    /// the next flush).
    pub fn close_notify(&mut self) {
        if let Some(tls) = self.tls.as_mut()
            && !self.notified
        {
            self.notified = true;
            tls.send_close_notify();
            let _ = send_records(tls, &mut self.tcp);
        }
    }

    /// Whether the session holds records the socket has not taken yet (false for TCP).
    pub fn records_waiting(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| t.wants_write())
    }

    /// Sends the records waiting (handshake, alerts, encrypted data) until the socket is
    /// full; a no-op for TCP. Call it when the socket becomes writable.
    pub fn flush_records(&mut self) -> io::Result<()> {
        match self.tls.as_mut() {
            Some(tls) => send_records(tls, &mut self.tcp),
            None => Ok(()),
        }
    }
}

/// Writes the session's records to the socket until none are left or it is full.
fn send_records(tls: &mut ClientConnection, tcp: &mut TcpStream) -> io::Result<()> {
    while tls.wants_write() {
        match tls.write_tls(tcp) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

impl Read for Stream {
    /// TLS: fills `buf` with plaintext as long as the socket has records, so that a short
    /// read means the socket said `WouldBlock` (or ended), as a plain socket's short read
    /// does. The end after close_notify is `Ok(0)`; an end without it is `UnexpectedEof`.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(tls) = self.tls.as_mut() else {
            return self.tcp.read(buf);
        };
        let mut filled = 0;
        loop {
            match tls.reader().read(&mut buf[filled..]) {
                Ok(0) => {
                    // The server's close_notify: answer with ours (TLS asks each side
                    // to send one before it closes), once.
                    if !self.notified {
                        self.notified = true;
                        tls.send_close_notify();
                        let _ = send_records(tls, &mut self.tcp);
                    }
                    return Ok(filled);
                }
                Ok(n) => {
                    filled += n;
                    if filled == buf.len() {
                        return Ok(filled);
                    }
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // The end or the error is handed out by the next read, after this
                // plaintext is used.
                Err(_) if filled > 0 => return Ok(filled),
                Err(e) => return Err(e),
            }
            match tls.read_tls(&mut self.tcp) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return if filled > 0 { Ok(filled) } else { Err(e) };
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) if filled > 0 => return Ok(filled),
                Err(e) => return Err(e),
            }
            let processed = tls.process_new_packets();
            // The session's answer (its handshake flight, the request it held back until
            // the handshake ended, an alert) goes out at once.
            let sent = send_records(tls, &mut self.tcp);
            if let Err(e) = processed {
                return Err(invalid(format!("TLS: {e}")));
            }
            sent?;
        }
    }
}

impl Write for Stream {
    /// TLS: encrypts and sends as long as the socket takes the records, so that a short
    /// write means the socket is full (and `EPOLLOUT` will come, as for a plain socket's
    /// short write); what the socket did not take waits in the session, at most about
    /// [`SEND_LIMIT`]. `WouldBlock` when nothing could be taken.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let Some(tls) = self.tls.as_mut() else {
            return self.tcp.write(buf);
        };
        let mut taken = 0;
        loop {
            send_records(tls, &mut self.tcp)?;
            if taken == buf.len() || tls.wants_write() {
                break;
            }
            match tls.writer().write(&buf[taken..])? {
                0 => break,
                n => taken += n,
            }
        }
        if taken == 0 && !buf.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(taken)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.flush_records()
    }
}

impl AsRawFd for Stream {
    fn as_raw_fd(&self) -> RawFd {
        self.tcp.as_raw_fd()
    }
}

impl mio::event::Source for Stream {
    fn register(
        &mut self,
        registry: &mio::Registry,
        token: mio::Token,
        interests: mio::Interest,
    ) -> io::Result<()> {
        self.tcp.register(registry, token, interests)
    }

    fn reregister(
        &mut self,
        registry: &mio::Registry,
        token: mio::Token,
        interests: mio::Interest,
    ) -> io::Result<()> {
        self.tcp.reregister(registry, token, interests)
    }

    fn deregister(&mut self, registry: &mio::Registry) -> io::Result<()> {
        self.tcp.deregister(registry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(matches!(
            server_name("127.0.0.1").unwrap(),
            ServerName::IpAddress(_)
        ));
        assert!(matches!(
            server_name("[::1]").unwrap(),
            ServerName::IpAddress(_)
        ));
        assert!(matches!(
            server_name("localhost").unwrap(),
            ServerName::DnsName(_)
        ));
        assert!(server_name("bad name").is_err());
    }

    #[test]
    fn a_cafile_without_certificates_is_refused() {
        let dir = std::env::temp_dir().join(format!("throng-load-tls-{}", std::process::id()));
        std::fs::write(&dir, b"not a certificate").unwrap();
        let r = Tls::new("localhost", Some(&dir));
        let _ = std::fs::remove_file(&dir);
        assert!(r.is_err());
        assert!(Tls::new("localhost", Some(Path::new("/nonexistent/ca.pem"))).is_err());
        assert!(Tls::new("localhost", None).is_ok());
    }
}
