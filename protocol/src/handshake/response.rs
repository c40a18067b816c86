//! Writing the server's answer into the caller's output buffer.
//!
//! Writers append, so the caller can batch responses in one buffer and write it with one
//! system call. They build bytes with plain appends: no formatting machinery, no
//! allocation beyond growing `out`.

use super::upgrade::Upgrade;
use crate::error::HandshakeError;

/// The standard reason phrase (RFC 9110 15) for `status`, if it is one of the common
/// codes; [`write_response`] writes an empty phrase otherwise, which HTTP allows.
pub fn reason_phrase(status: u16) -> Option<&'static str> {
    Some(match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => return None,
    })
}

/// Appends the 101 response that completes the handshake for `upgrade`.
///
/// `subprotocol` must be one the client offered ([`Upgrade::select_protocol`]) or the
/// client fails the connection; `extensions` is the negotiated
/// `Sec-WebSocket-Extensions` value, parameters included. Neither may smuggle in header
/// lines: a subprotocol that is not an HTTP token, or an extensions value that is empty
/// or holds CR, LF or another control character, is left out of the response.
pub fn write_accept(
    out: &mut Vec<u8>,
    upgrade: &Upgrade<'_>,
    subprotocol: Option<&str>,
    extensions: Option<&str>,
) {
    out.extend_from_slice(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Accept: ",
    );
    out.extend_from_slice(upgrade.accept().as_bytes());
    out.extend_from_slice(b"\r\n");
    if let Some(protocol) = subprotocol.filter(|p| is_token(p)) {
        write_header(out, "Sec-WebSocket-Protocol", protocol);
    }
    if let Some(ext) = extensions.filter(|e| !e.trim().is_empty() && is_field_value(e)) {
        write_header(out, "Sec-WebSocket-Extensions", ext);
    }
    out.extend_from_slice(b"\r\n");
}

/// Appends the response refusing a handshake with `err`: its status and reason phrase,
/// `Connection: close` (the caller closes after writing it), and [`HandshakeError::reason`]
/// as a `text/plain` body. Version problems also carry `Sec-WebSocket-Version: 13` (RFC
/// 6455 4.4); a 426 adds `Upgrade: websocket`, and with it the `upgrade` connection
/// option (RFC 9110 7.8); a 405 adds `Allow: GET`.
pub fn write_error(out: &mut Vec<u8>, err: HandshakeError) {
    let status = err.status();
    write_status_line(out, status);
    match err {
        HandshakeError::MethodNotAllowed => out.extend_from_slice(b"Allow: GET\r\n"),
        HandshakeError::MissingVersion => out.extend_from_slice(b"Sec-WebSocket-Version: 13\r\n"),
        _ => {}
    }
    if status == 426 {
        out.extend_from_slice(
            b"Sec-WebSocket-Version: 13\r\nUpgrade: websocket\r\nConnection: Upgrade, close\r\n",
        );
    } else {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"Content-Type: text/plain\r\n");
    write_body(out, err.reason().as_bytes());
}

/// Appends a plain HTTP/1.1 response: for the engine's HTTP handler, or to refuse an
/// upgrade with a status of the application's choosing (403 for a foreign origin, say).
///
/// A `status` outside 100..=999 is written as 500. `Content-Length` is added from
/// `body`, except for 1xx, 204 and 304 responses, which carry neither the header nor
/// the body (RFC 9110 8.6, 15.3.5, 15.4.5).
///
/// Headers are written in order, and any that could break the framing are dropped
/// silently rather than written: a name that is not an HTTP token (empty, or holding a
/// colon, space, CR or LF), a value holding CR, LF or another control character, and
/// caller-supplied `Content-Length` or `Transfer-Encoding`, since this function frames
/// the body itself.
pub fn write_response(out: &mut Vec<u8>, status: u16, headers: &[(&str, &str)], body: &[u8]) {
    let status = if (100..=999).contains(&status) {
        status
    } else {
        500
    };
    write_status_line(out, status);
    for &(name, value) in headers {
        if is_token(name) && is_field_value(value) && !is_framing_header(name) {
            write_header(out, name, value);
        }
    }
    if status < 200 || status == 204 || status == 304 {
        out.extend_from_slice(b"\r\n");
    } else {
        write_body(out, body);
    }
}

fn write_status_line(out: &mut Vec<u8>, status: u16) {
    out.extend_from_slice(b"HTTP/1.1 ");
    write_decimal(out, usize::from(status));
    out.push(b' ');
    out.extend_from_slice(reason_phrase(status).unwrap_or_default().as_bytes());
    out.extend_from_slice(b"\r\n");
}

fn write_header(out: &mut Vec<u8>, name: &str, value: &str) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// `Content-Length`, the blank line, the body.
fn write_body(out: &mut Vec<u8>, body: &[u8]) {
    out.extend_from_slice(b"Content-Length: ");
    write_decimal(out, body.len());
    out.extend_from_slice(b"\r\n\r\n");
    out.extend_from_slice(body);
}

fn write_decimal(out: &mut Vec<u8>, mut n: usize) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[start..]);
}

/// RFC 9110 5.6.2 token: what header names and subprotocol names must be.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// RFC 9110 5.5 field value: visible characters, spaces, tabs and non-ASCII; never CR,
/// LF, NUL or another control character.
fn is_field_value(s: &str) -> bool {
    s.bytes()
        .all(|b| b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80)
}

fn is_framing_header(name: &str) -> bool {
    name.eq_ignore_ascii_case("content-length") || name.eq_ignore_ascii_case("transfer-encoding")
}
