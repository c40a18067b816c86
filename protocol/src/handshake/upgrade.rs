//! Checking an upgrade attempt against RFC 6455 4.2.1 and computing the accept key.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use sha1::{Digest, Sha1};

use super::request::Request;
use crate::error::HandshakeError;

/// The GUID RFC 6455 appends to the client's key before hashing.
const ACCEPT_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// A validated WebSocket upgrade request: what the application needs to decide on it
/// (origin, offered subprotocols and extensions, path) and the accept key to answer with.
/// Owns the [`Request`] it came from; everything it hands out borrows the input buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upgrade<'b> {
    request: Request<'b>,
    key: &'b [u8],
    host: &'b str,
    origin: Option<&'b str>,
    accept: [u8; 28],
}

/// Checks a WebSocket upgrade attempt (RFC 6455 4.2.1) and computes its accept key.
///
/// Takes the request by value so the [`Upgrade`] can own it without a lifetime of its
/// own; everything the request hands out borrows the input buffer, so copy what an error
/// path needs (say [`Request::path`] for a log line) before calling.
///
/// Checks run in this order, the first failure deciding the answer: method `GET`
/// ([`HandshakeError::MethodNotAllowed`]), HTTP/1.1 ([`HandshakeError::HttpVersion`]),
/// exactly one `Host` ([`HandshakeError::MissingHost`]; a repeated one is
/// [`HandshakeError::Malformed`], RFC 9112 3.2), `Upgrade` listing `websocket`
/// ([`HandshakeError::NotUpgrade`]), `Connection` listing `upgrade`
/// ([`HandshakeError::MissingConnectionUpgrade`]), `Sec-WebSocket-Version` present
/// ([`HandshakeError::MissingVersion`]) and `13` ([`HandshakeError::UnsupportedVersion`]),
/// then exactly one `Sec-WebSocket-Key` of 16 base64-encoded bytes
/// ([`HandshakeError::BadKey`]). The version comes before the key so a client speaking
/// another version learns which one to retry with. Finally `Host`, `Origin`,
/// `Sec-WebSocket-Protocol` and `Sec-WebSocket-Extensions` must be UTF-8
/// ([`HandshakeError::Malformed`]) so their accessors can return text.
pub fn validate_upgrade(req: Request<'_>) -> Result<Upgrade<'_>, HandshakeError> {
    if req.method() != "GET" {
        return Err(HandshakeError::MethodNotAllowed);
    }
    if req.version_minor() < 1 {
        return Err(HandshakeError::HttpVersion);
    }
    let host = single(
        &req,
        "host",
        HandshakeError::MissingHost,
        HandshakeError::Malformed,
    )?;
    if !req.header_has_token("upgrade", "websocket") {
        return Err(HandshakeError::NotUpgrade);
    }
    if !req.header_has_token("connection", "upgrade") {
        return Err(HandshakeError::MissingConnectionUpgrade);
    }
    check_version(&req)?;
    let key = single(
        &req,
        "sec-websocket-key",
        HandshakeError::BadKey,
        HandshakeError::BadKey,
    )?;
    if !is_valid_key(key) {
        return Err(HandshakeError::BadKey);
    }
    let host = utf8(host)?;
    let origin = req.header("origin").map(utf8).transpose()?;
    for name in ["sec-websocket-protocol", "sec-websocket-extensions"] {
        if req
            .header_values(name)
            .any(|v| std::str::from_utf8(v).is_err())
        {
            return Err(HandshakeError::Malformed);
        }
    }
    let accept = accept_key(key);
    Ok(Upgrade {
        request: req,
        key,
        host,
        origin,
        accept,
    })
}

/// The `Sec-WebSocket-Accept` value for a client's `Sec-WebSocket-Key`:
/// base64(SHA-1(key ++ "258EAFA5-E914-47DA-95CA-C5AB0DC85B11")), always 28 ASCII bytes.
/// The key is hashed as given, without validation.
pub fn accept_key(key: &[u8]) -> [u8; 28] {
    let digest = Sha1::new()
        .chain_update(key)
        .chain_update(ACCEPT_GUID)
        .finalize();
    let mut out = [0u8; 28];
    // 20 bytes always encode to exactly 28, so this cannot fail; if it somehow did, the
    // client would reject the all-zero accept, which is the safe failure.
    let _ = STANDARD.encode_slice(digest, &mut out);
    out
}

impl<'b> Upgrade<'b> {
    /// The `Sec-WebSocket-Key` as sent (24 base64 characters).
    pub fn key(&self) -> &'b [u8] {
        self.key
    }

    /// The `Sec-WebSocket-Accept` value to answer with (28 characters).
    pub fn accept(&self) -> &str {
        // Base64 output is ASCII, so the fallback is unreachable.
        std::str::from_utf8(&self.accept).unwrap_or_default()
    }

    /// The `Host` header. Note that for an absolute-form target RFC 9112 3.2.2 makes the
    /// target's authority win; this returns the header regardless.
    pub fn host(&self) -> &'b str {
        self.host
    }

    /// The first `Origin` header, which browsers always send and other clients may not.
    /// Checking it is the application's defence against cross-site WebSocket hijacking.
    pub fn origin(&self) -> Option<&'b str> {
        self.origin
    }

    /// The request path, see [`Request::path`].
    pub fn path(&self) -> &'b str {
        self.request.path()
    }

    /// The query string, see [`Request::query`].
    pub fn query(&self) -> Option<&'b str> {
        self.request.query()
    }

    /// The subprotocols the client offers, in its order of preference, across repeated
    /// `Sec-WebSocket-Protocol` headers. Case-sensitive names, whitespace trimmed.
    pub fn protocols(&self) -> impl Iterator<Item = &'b str> + '_ {
        self.text_values("sec-websocket-protocol")
            .flat_map(|v| v.split(',').map(|e| e.trim_matches([' ', '\t'])))
            .filter(|e| !e.is_empty())
    }

    /// The extensions the client offers, in order, across repeated
    /// `Sec-WebSocket-Extensions` headers. Each item is one offer with its parameters as
    /// raw text (`permessage-deflate; client_max_window_bits`), whitespace trimmed. Commas
    /// inside quoted parameter values do not split.
    pub fn extensions(&self) -> impl Iterator<Item = &'b str> + '_ {
        self.text_values("sec-websocket-extensions")
            .flat_map(split_outside_quotes)
    }

    /// The first of `supported` (the server's preference order) that the client offers,
    /// as the client spelled it: the value to pass to [`super::write_accept`]. Subprotocol
    /// names are case-sensitive.
    pub fn select_protocol(&self, supported: &[&str]) -> Option<&'b str> {
        supported
            .iter()
            .find_map(|s| self.protocols().find(|p| p == s))
    }

    /// The request the upgrade came from, for any other header.
    pub fn request(&self) -> &Request<'b> {
        &self.request
    }

    /// Gives the request back.
    pub fn into_request(self) -> Request<'b> {
        self.request
    }

    fn text_values(&self, name: &'static str) -> impl Iterator<Item = &'b str> + '_ {
        // Validation made these UTF-8; the filter only keeps this total.
        self.request
            .header_values(name)
            .filter_map(|v| std::str::from_utf8(v).ok())
    }
}

/// The one header `name`, `missing` if absent, `repeated` if there are several.
fn single<'b>(
    req: &Request<'b>,
    name: &str,
    missing: HandshakeError,
    repeated: HandshakeError,
) -> Result<&'b [u8], HandshakeError> {
    let mut values = req.header_values(name);
    let first = values.next().ok_or(missing)?;
    match values.next() {
        Some(_) => Err(repeated),
        None => Ok(first),
    }
}

/// Every `Sec-WebSocket-Version` must say 13; clients send exactly one.
fn check_version(req: &Request<'_>) -> Result<(), HandshakeError> {
    let mut seen = false;
    for value in req.header_values("sec-websocket-version") {
        if value != b"13" {
            return Err(HandshakeError::UnsupportedVersion);
        }
        seen = true;
    }
    if seen {
        Ok(())
    } else {
        Err(HandshakeError::MissingVersion)
    }
}

/// 16 bytes encode to 24 characters ending in `==`; the strict engine also refuses
/// non-canonical padding bits, so each nonce has exactly one accepted spelling.
fn is_valid_key(key: &[u8]) -> bool {
    let mut decoded = [0u8; 18];
    key.len() == 24 && STANDARD.decode_slice(key, &mut decoded) == Ok(16)
}

fn utf8(value: &[u8]) -> Result<&str, HandshakeError> {
    std::str::from_utf8(value).map_err(|_| HandshakeError::Malformed)
}

/// Splits an extension list on commas that are not inside a quoted-string, trimming
/// whitespace and skipping empty elements.
fn split_outside_quotes(list: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(list);
    std::iter::from_fn(move || {
        loop {
            let s = rest?;
            let (item, tail) = match comma_outside_quotes(s) {
                Some(i) => (&s[..i], Some(&s[i + 1..])),
                None => (s, None),
            };
            rest = tail;
            let item = item.trim_matches([' ', '\t']);
            if !item.is_empty() {
                return Some(item);
            }
        }
    })
}

fn comma_outside_quotes(s: &str) -> Option<usize> {
    let (mut quoted, mut escaped) = (false, false);
    for (i, b) in s.bytes().enumerate() {
        match (quoted, escaped, b) {
            (true, true, _) => escaped = false,
            (true, false, b'\\') => escaped = true,
            (_, false, b'"') => quoted = !quoted,
            (false, _, b',') => return Some(i),
            _ => {}
        }
    }
    None
}
