//! A listener's TLS settings: certificate chains and keys, ALPN, SNI.

use std::io;
use std::path::Path;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::ResolvesServerCertUsingSni;
use rustls::sign::CertifiedKey;

/// TLS settings of a `wss://` listener: a rustls [`ServerConfig`], built here from PEM
/// (one certificate, or several chosen by SNI) or by the user. The engine's builders
/// announce ALPN `http/1.1` and use the crate's crypto provider (ring by default; the
/// `aws-lc-rs` cargo feature selects aws-lc-rs). A config the user builds is used as it
/// is (set its `alpn_protocols` to `[b"http/1.1"]` too; leave `max_early_data_size` at 0:
/// an upgrade request must not be replayable; set `enable_secret_extraction` for the
/// compact per-connection state the engine's builders get: without it a connection keeps
/// rustls' whole connection, about 2 KB more).
///
/// Swapped at run time with [`crate::ServerHandle::reload_tls`]: new handshakes use the
/// new certificates, open connections keep theirs.
#[derive(Clone)]
pub struct TlsConfig {
    server: Arc<ServerConfig>,
}

impl std::fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConfig")
            .field("alpn", &self.server.alpn_protocols)
            .finish_non_exhaustive()
    }
}

fn invalid(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

/// The crypto provider the engine's builders use.
fn provider() -> io::Result<Arc<CryptoProvider>> {
    #[cfg(feature = "aws-lc-rs")]
    return Ok(Arc::new(rustls::crypto::aws_lc_rs::default_provider()));
    #[cfg(all(feature = "ring", not(feature = "aws-lc-rs")))]
    return Ok(Arc::new(rustls::crypto::ring::default_provider()));
    #[cfg(not(any(feature = "ring", feature = "aws-lc-rs")))]
    return CryptoProvider::get_default().cloned().ok_or_else(|| {
        invalid("no rustls crypto provider: enable `ring` or `aws-lc-rs`, or install one".into())
    });
}

fn parse_chain(pem: &[u8]) -> io::Result<Vec<CertificateDer<'static>>> {
    let chain: Vec<_> = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .map_err(|e| invalid(format!("certificate PEM: {e}")))?;
    if chain.is_empty() {
        return Err(invalid("certificate PEM holds no certificate".into()));
    }
    Ok(chain)
}

fn parse_key(pem: &[u8]) -> io::Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| invalid(format!("private key PEM: {e}")))
}

fn read(path: &Path) -> io::Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}

impl TlsConfig {
    /// One certificate chain and its private key, from PEM files.
    pub fn from_pem_files(cert: impl AsRef<Path>, key: impl AsRef<Path>) -> io::Result<Self> {
        Self::from_pem(&read(cert.as_ref())?, &read(key.as_ref())?)
    }

    /// One certificate chain and its private key, PEM-encoded.
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> io::Result<Self> {
        let server = ServerConfig::builder_with_provider(provider()?)
            .with_safe_default_protocol_versions()
            .map_err(|e| invalid(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(parse_chain(cert_pem)?, parse_key(key_pem)?)
            .map_err(|e| invalid(format!("certificate and key: {e}")))?;
        Ok(Self::engine_defaults(server))
    }

    /// Several certificates, chosen by the name the client asks for (SNI): each entry is
    /// a DNS name with its PEM chain and key. A client naming none of them, or sending no
    /// name, fails its handshake.
    pub fn from_pem_by_name(entries: &[(&str, &[u8], &[u8])]) -> io::Result<Self> {
        let provider = provider()?;
        let mut resolver = ResolvesServerCertUsingSni::new();
        for (name, cert, key) in entries {
            let signing = provider
                .key_provider
                .load_private_key(parse_key(key)?)
                .map_err(|e| invalid(format!("{name}: private key: {e}")))?;
            resolver
                .add(name, CertifiedKey::new(parse_chain(cert)?, signing))
                .map_err(|e| invalid(format!("{name}: {e}")))?;
        }
        let server = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| invalid(e.to_string()))?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(resolver));
        Ok(Self::engine_defaults(server))
    }

    /// A rustls config the user built (client authentication, a resolver of their own,
    /// another provider), used as it is.
    pub fn from_rustls(server: Arc<ServerConfig>) -> Self {
        TlsConfig { server }
    }

    /// The rustls config.
    pub fn rustls(&self) -> &Arc<ServerConfig> {
        &self.server
    }

    fn engine_defaults(mut server: ServerConfig) -> Self {
        server.alpn_protocols = vec![b"http/1.1".to_vec()];
        // Lets a TLS 1.3 connection trade rustls' connection (about 3.3 KB) for the
        // engine's compact record layer (about 1.3 KB) once its handshake is over. The keys
        // stay in the worker's memory as before; nothing exports them.
        server.enable_secret_extraction = true;
        TlsConfig {
            server: Arc::new(server),
        }
    }
}
