//! Parsing the request head: bytes in, a borrowed [`Request`] out.

use std::mem::MaybeUninit;

use crate::error::HandshakeError;

/// The most headers a request can carry whatever [`HandshakeConfig::max_headers`] says:
/// the parser's header slots live on the stack, so their number is fixed.
pub const MAX_HEADERS_CAP: usize = 128;

/// Limits on the request head. Shared by all connections of a worker and passed to each
/// [`parse_request`] call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct HandshakeConfig {
    /// Largest request head accepted, counted from the first byte through the blank line
    /// that ends it. A longer head fails with 431 as soon as more than this many bytes are
    /// buffered without a complete head. Default 8 KiB.
    pub max_header_bytes: usize,
    /// Most header fields accepted; more fail with 431. Default 64. Values above
    /// [`MAX_HEADERS_CAP`] are treated as [`MAX_HEADERS_CAP`].
    pub max_headers: usize,
}

impl Default for HandshakeConfig {
    /// 8 KiB of head, 64 headers: room for browsers' cookies and proxies' additions.
    fn default() -> HandshakeConfig {
        HandshakeConfig {
            max_header_bytes: 8 * 1024,
            max_headers: 64,
        }
    }
}

/// A parsed HTTP/1.1 request head. Everything it hands out borrows the input buffer
/// (lifetime `'b`), so values outlive the `Request` itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request<'b> {
    method: &'b str,
    target: &'b str,
    version_minor: u8,
    headers: Vec<(&'b str, &'b [u8])>,
}

/// Parses the request head at the start of `buf`.
///
/// Returns `Ok(None)` while the head is incomplete (call again once more bytes arrived;
/// nothing is consumed), or the request and the length of its head. Bytes after the head,
/// such as WebSocket frames a client pipelined behind its handshake, are not part of that
/// length and remain the caller's.
///
/// Errors are reported as early as the bytes allow, without waiting for the blank line:
/// anything that cannot start a valid head (a TLS ClientHello, a header name with a space
/// or without a colon, a bare CR) fails with [`HandshakeError::Malformed`]; a head that
/// outgrows [`HandshakeConfig::max_header_bytes`], complete or not, or carries more than
/// [`HandshakeConfig::max_headers`] fields fails with [`HandshakeError::HeadersTooLarge`].
///
/// As RFC 9112 2.2 permits, empty lines before the request line are skipped (and counted
/// in the length) and a bare LF is accepted as a line end; a bare CR is not.
///
/// Nothing is allocated until the head is complete. Each call parses from the start, so
/// the work per call is bounded by `max_header_bytes`.
pub fn parse_request<'b>(
    buf: &'b [u8],
    config: &HandshakeConfig,
) -> Result<Option<(Request<'b>, usize)>, HandshakeError> {
    // Parsing only the allowed window bounds the work per call and makes a too-long head
    // show up as "partial although the buffer is longer than the window".
    let window = &buf[..buf.len().min(config.max_header_bytes)];
    let mut slots = [const { MaybeUninit::<httparse::Header<'b>>::uninit() }; MAX_HEADERS_CAP];
    let slots = &mut slots[..config.max_headers.min(MAX_HEADERS_CAP)];
    let mut parsed = httparse::Request::new(&mut []);
    match parsed.parse_with_uninit_headers(window, slots) {
        Ok(httparse::Status::Complete(len)) => Ok(Some((Request::from_parsed(&parsed), len))),
        Ok(httparse::Status::Partial) if buf.len() > window.len() => {
            Err(HandshakeError::HeadersTooLarge)
        }
        Ok(httparse::Status::Partial) => Ok(None),
        Err(httparse::Error::TooManyHeaders) => Err(HandshakeError::HeadersTooLarge),
        Err(_) => Err(HandshakeError::Malformed),
    }
}

impl<'b> Request<'b> {
    fn from_parsed(parsed: &httparse::Request<'_, 'b>) -> Request<'b> {
        Request {
            // A complete parse always sets these; the fallbacks only keep this total.
            method: parsed.method.unwrap_or_default(),
            target: parsed.path.unwrap_or_default(),
            version_minor: parsed.version.unwrap_or_default(),
            headers: parsed.headers.iter().map(|h| (h.name, h.value)).collect(),
        }
    }

    /// The method, case preserved (`GET`).
    pub fn method(&self) -> &'b str {
        self.method
    }

    /// The request target exactly as sent, query included (`/chat?room=1`).
    pub fn target(&self) -> &'b str {
        self.target
    }

    /// The path: the target without its query. For an absolute-form target
    /// (`http://host/chat`) the scheme and authority are dropped too (`/chat`, or `/`
    /// when there is no path). Not percent-decoded.
    pub fn path(&self) -> &'b str {
        let before_query = match self.target.split_once('?') {
            Some((path, _)) => path,
            None => self.target,
        };
        origin_path(before_query)
    }

    /// The query string after the first `?`, without the `?`; `Some("")` for a bare `?`.
    /// Not percent-decoded.
    pub fn query(&self) -> Option<&'b str> {
        self.target.split_once('?').map(|(_, query)| query)
    }

    /// The HTTP minor version: 1 for HTTP/1.1, 0 for HTTP/1.0 (the only two the parser
    /// accepts).
    pub fn version_minor(&self) -> u8 {
        self.version_minor
    }

    /// The value of the first header named `name` (ASCII case-insensitive), with
    /// surrounding whitespace removed.
    pub fn header(&self, name: &str) -> Option<&'b [u8]> {
        self.header_values(name).next()
    }

    /// Like [`Request::header`], as text; `None` also when the value is not UTF-8.
    pub fn header_str(&self, name: &str) -> Option<&'b str> {
        self.header(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// The values of every header named `name` (ASCII case-insensitive), in order.
    pub fn header_values<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'b [u8]> + 's {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|&(_, v)| v)
    }

    /// Whether some header `name` lists `token` in its comma-separated value, both compared
    /// ASCII case-insensitively: `header_has_token("connection", "upgrade")` holds for
    /// `Connection: keep-alive, Upgrade`.
    pub fn header_has_token(&self, name: &str, token: &str) -> bool {
        self.header_values(name)
            .any(|v| has_token(v, token.as_bytes()))
    }

    /// Every header as (name as sent, value), in order.
    pub fn headers(&self) -> impl ExactSizeIterator<Item = (&'b str, &'b [u8])> + '_ {
        self.headers.iter().copied()
    }

    /// Whether the client attempts a WebSocket upgrade: an `Upgrade` header lists
    /// `websocket`, or a `Sec-WebSocket-Key` is present. Deliberately loose, so that a
    /// botched attempt is answered by [`crate::handshake::validate_upgrade`] with a precise
    /// error rather than by a plain HTTP handler. A request with a key but no `Upgrade`
    /// header is therefore an attempt, and fails validation with
    /// [`HandshakeError::NotUpgrade`].
    pub fn is_websocket_upgrade(&self) -> bool {
        self.header_has_token("upgrade", "websocket") || self.header("sec-websocket-key").is_some()
    }
}

/// The elements of a comma-separated header value, without surrounding whitespace,
/// skipping empty ones (RFC 9110 5.6.1 lets senders write `a, , b`).
fn comma_list(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(trim_ows)
        .filter(|e| !e.is_empty())
}

/// Whether a comma-separated header value contains `token`, ASCII case-insensitive.
fn has_token(value: &[u8], token: &[u8]) -> bool {
    comma_list(value).any(|e| e.eq_ignore_ascii_case(token))
}

fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// The path of an origin- or absolute-form target; other forms are returned as they are.
fn origin_path(target: &str) -> &str {
    if target.starts_with('/') {
        return target;
    }
    match target.split_once("://") {
        Some((scheme, rest)) if is_scheme(scheme) => rest.find('/').map_or("/", |i| &rest[i..]),
        _ => target,
    }
}

/// RFC 3986 3.1: ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ).
fn is_scheme(s: &str) -> bool {
    let mut bytes = s.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
}
