//! The callback API: one [`Handler`] per worker, built on that worker's thread by the
//! factory given to [`crate::Server::start`].

use std::os::fd::RawFd;

use throng_protocol::CloseCode;
use throng_protocol::handshake::{Request, Upgrade};

use crate::ws::WebSocket;

/// A plain HTTP request (no WebSocket upgrade attempt), for [`Handler::on_request`].
pub type HttpRequest<'r> = Request<'r>;

/// A valid WebSocket upgrade request, for [`Handler::on_upgrade`]: path, query, origin,
/// offered subprotocols and extensions, every header, and the peer's address.
#[derive(Debug)]
pub struct UpgradeRequest<'r> {
    upgrade: &'r Upgrade<'r>,
    fd: RawFd,
    /// The client's address from a PROXY protocol header.
    proxied: Option<std::net::SocketAddr>,
}

impl<'r> UpgradeRequest<'r> {
    pub(crate) fn new(
        upgrade: &'r Upgrade<'r>,
        fd: RawFd,
        proxied: Option<std::net::SocketAddr>,
    ) -> Self {
        UpgradeRequest {
            upgrade,
            fd,
            proxied,
        }
    }
    /// The parsed upgrade (all of the protocol crate's accessors).
    pub fn upgrade(&self) -> &'r Upgrade<'r> {
        self.upgrade
    }
    /// The request path, without the query.
    pub fn path(&self) -> &'r str {
        self.upgrade.path()
    }
    /// The query string, without `?`.
    pub fn query(&self) -> Option<&'r str> {
        self.upgrade.query()
    }
    /// The `Origin` header, if any.
    pub fn origin(&self) -> Option<&'r str> {
        self.upgrade.origin()
    }
    /// Subprotocols the client offered, in its order of preference.
    pub fn protocols(&self) -> impl Iterator<Item = &'r str> + 'r {
        self.upgrade.protocols()
    }
    /// Extensions the client offered, each with its parameters as raw text.
    pub fn extensions(&self) -> impl Iterator<Item = &'r str> + 'r {
        self.upgrade.extensions()
    }
    /// A header's value (name compared case-insensitively; first occurrence).
    pub fn header(&self, name: &str) -> Option<&'r [u8]> {
        self.upgrade.request().header(name)
    }
    /// The peer's address: the client's from its PROXY protocol header on a listener
    /// with [`crate::Config::proxy_protocol`], else one `getpeername` call (not stored per
    /// connection).
    pub fn peer_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        match self.proxied {
            Some(addr) => Ok(addr),
            None => crate::net::peer_addr(self.fd),
        }
    }
}

/// What [`Handler::on_upgrade`] decides.
#[derive(Debug)]
pub enum Decision<'r, S> {
    /// Open the WebSocket with this per-connection state (stored inline in the worker's
    /// slab) and, optionally, one of the offered subprotocols.
    Accept {
        /// The per-connection state.
        state: S,
        /// The chosen subprotocol; must be one the client offered.
        protocol: Option<&'r str>,
    },
    /// Refuse with this HTTP status (e.g. 403 for a bad Origin, 404 for an unknown path).
    Reject(u16),
}

impl<'r, S> Decision<'r, S> {
    /// Accepts with `state` and no subprotocol.
    pub fn accept(state: S) -> Self {
        Decision::Accept {
            state,
            protocol: None,
        }
    }
    /// Accepts with `state`, selecting `protocol`.
    pub fn accept_with_protocol(state: S, protocol: &'r str) -> Self {
        Decision::Accept {
            state,
            protocol: Some(protocol),
        }
    }
    /// Refuses with `status`.
    pub fn reject(status: u16) -> Self {
        Decision::Reject(status)
    }
}

/// A received message, borrowed: straight from the receive buffer when it arrived in one
/// frame and one read, otherwise from the connection's assembly buffer. Text is always
/// validated UTF-8 (the protocol crate hands it out no other way).
pub use throng_protocol::Message;

/// A response to a plain HTTP request, built in [`Handler::on_request`].
#[derive(Debug, Clone)]
pub struct HttpResponse {
    /// Status code. Default 426 (the engine speaks WebSocket).
    pub status: u16,
    /// Extra headers (Content-Length and Connection are added by the engine).
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Default for HttpResponse {
    fn default() -> Self {
        HttpResponse {
            status: 426,
            headers: vec![
                ("Upgrade".into(), "websocket".into()),
                ("Sec-WebSocket-Version".into(), "13".into()),
                ("Content-Type".into(), "text/plain".into()),
            ],
            body: b"This is a WebSocket endpoint.\n".to_vec(),
        }
    }
}

impl HttpResponse {
    /// Replaces the response with `status`, a content type and a body.
    pub fn set(&mut self, status: u16, content_type: &str, body: impl Into<Vec<u8>>) {
        self.status = status;
        self.headers = vec![("Content-Type".into(), content_type.into())];
        self.body = body.into();
    }
}

/// Application callbacks. One instance per worker thread, so `&mut self` needs no lock;
/// state that belongs to a connection goes in [`Handler::State`].
#[allow(unused_variables)]
pub trait Handler: 'static {
    /// Per-connection state, stored inline in the worker's connection slab.
    type State: 'static;

    /// A valid upgrade request arrived: accept it (with state and maybe a subprotocol)
    /// or reject it with an HTTP status.
    fn on_upgrade<'r>(&mut self, req: &UpgradeRequest<'r>) -> Decision<'r, Self::State>;

    /// The WebSocket is open (the 101 response is written).
    fn on_open(&mut self, ws: &mut WebSocket<'_, Self::State>) {}

    /// A whole message arrived.
    fn on_message(&mut self, ws: &mut WebSocket<'_, Self::State>, message: Message<'_>);

    /// Buffered output fell to the low-water mark after having been above it.
    fn on_drain(&mut self, ws: &mut WebSocket<'_, Self::State>) {}

    /// The WebSocket is closing or gone: `code` is the peer's close code (1005 when its
    /// close frame had none), the code we failed the connection with, or 1006 when the
    /// connection ended without a close handshake. Called once; sends no longer work.
    fn on_close(&mut self, ws: &mut WebSocket<'_, Self::State>, code: CloseCode, reason: &str) {}

    /// A plain HTTP request (no upgrade attempt). The default answers 426.
    fn on_request(&mut self, req: &HttpRequest<'_>, res: &mut HttpResponse) {}
}
