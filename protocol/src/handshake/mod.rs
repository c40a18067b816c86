//! The HTTP/1.1 upgrade handshake (RFC 6455 4.2), server side.
//!
//! Three steps, none of which touch a socket:
//!
//! 1. [`parse_request`] turns the bytes read so far into a [`Request`] that borrows them,
//!    or says it needs more. It is stateless: call it again on the grown buffer.
//! 2. [`Request::is_websocket_upgrade`] tells a WebSocket attempt from plain HTTP, and
//!    [`validate_upgrade`] checks an attempt against RFC 6455 4.2.1, yielding an
//!    [`Upgrade`] with the computed `Sec-WebSocket-Accept`.
//! 3. [`write_accept`], [`write_error`] and [`write_response`] append the answer to the
//!    caller's output buffer.
//!
//! ```
//! use throng_protocol::handshake::*;
//!
//! let bytes = b"GET /chat HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\n\
//!     Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
//!     Sec-WebSocket-Version: 13\r\n\r\n";
//! let (req, used) = parse_request(bytes, &HandshakeConfig::default()).unwrap().unwrap();
//! assert_eq!(used, bytes.len());
//! assert!(req.is_websocket_upgrade());
//! let upgrade = validate_upgrade(req).unwrap();
//! assert_eq!(upgrade.accept(), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
//! let mut out = Vec::new();
//! write_accept(&mut out, &upgrade, None, None);
//! assert!(out.starts_with(b"HTTP/1.1 101 Switching Protocols\r\n"));
//! ```

mod request;
mod response;
mod upgrade;

#[cfg(test)]
mod tests;

pub use request::{HandshakeConfig, MAX_HEADERS_CAP, Request, parse_request};
pub use response::{reason_phrase, write_accept, write_error, write_response};
pub use upgrade::{Upgrade, accept_key, validate_upgrade};
