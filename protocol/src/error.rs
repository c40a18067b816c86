//! Error types, layered by where they happen: the opening handshake (answered with an HTTP
//! status) and the frame stream (answered with a close code).

use std::fmt;

use crate::close::CloseCode;

/// A violation of RFC 6455 in the frame stream. Each variant maps to the close code the
/// endpoint must send before failing the connection ([`ProtocolError::close_code`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProtocolError {
    /// RSV1-3 set without an extension that claimed them (1002).
    ReservedBits,
    /// Opcode 3-7 or 11-15 (1002).
    ReservedOpcode,
    /// Control frame without FIN (1002).
    FragmentedControl,
    /// Control frame payload over 125 bytes (1002).
    ControlTooLong,
    /// A server received an unmasked frame, or a client a masked one (1002).
    MaskMismatch,
    /// 64-bit payload length with the most significant bit set (1002).
    LengthMsbSet,
    /// Continuation frame with no message in progress (1002).
    UnexpectedContinuation,
    /// New text or binary frame while a fragmented message is in progress (1002).
    ExpectedContinuation,
    /// Close frame with a 1-byte payload (1002).
    CloseTooShort,
    /// Close code that is not allowed on the wire (1002).
    InvalidCloseCode(u16),
    /// Text message or close reason that is not UTF-8 (1007).
    InvalidUtf8,
    /// Frame payload over the configured frame limit (1009).
    FrameTooBig,
    /// Message over the configured message limit (1009).
    MessageTooBig,
    /// Message in more frames than the configured limit (1009).
    TooManyFragments,
    /// Payload length in a longer encoding than needed (1002; RFC 6455 5.2).
    NonMinimalLength,
    /// A compressed message (permessage-deflate) that is not valid deflate data (1007).
    InvalidDeflate,
}

impl ProtocolError {
    /// The close code to send for this violation (RFC 6455 7.4.1).
    pub fn close_code(self) -> CloseCode {
        match self {
            ProtocolError::InvalidUtf8 | ProtocolError::InvalidDeflate => {
                CloseCode::INVALID_PAYLOAD
            }
            ProtocolError::FrameTooBig
            | ProtocolError::MessageTooBig
            | ProtocolError::TooManyFragments => CloseCode::TOO_BIG,
            _ => CloseCode::PROTOCOL_ERROR,
        }
    }

    /// A short reason suitable for the close frame (ASCII, well under 123 bytes).
    pub fn reason(self) -> &'static str {
        match self {
            ProtocolError::ReservedBits => "reserved bits set",
            ProtocolError::ReservedOpcode => "reserved opcode",
            ProtocolError::FragmentedControl => "fragmented control frame",
            ProtocolError::ControlTooLong => "control frame payload over 125 bytes",
            ProtocolError::MaskMismatch => "frame masking does not match the role",
            ProtocolError::LengthMsbSet => "64-bit length with the high bit set",
            ProtocolError::UnexpectedContinuation => "continuation without a message",
            ProtocolError::ExpectedContinuation => "new message inside a fragmented message",
            ProtocolError::CloseTooShort => "close payload of 1 byte",
            ProtocolError::InvalidCloseCode(_) => "invalid close code",
            ProtocolError::InvalidUtf8 => "invalid UTF-8",
            ProtocolError::FrameTooBig => "frame too big",
            ProtocolError::MessageTooBig => "message too big",
            ProtocolError::TooManyFragments => "message in too many fragments",
            ProtocolError::NonMinimalLength => "payload length not in its shortest form",
            ProtocolError::InvalidDeflate => "invalid deflate data",
        }
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolError::InvalidCloseCode(c) => write!(f, "invalid close code {c}"),
            other => f.write_str(other.reason()),
        }
    }
}

impl std::error::Error for ProtocolError {}

/// Why an opening handshake was refused. Each variant maps to the HTTP status to answer
/// with ([`HandshakeError::status`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HandshakeError {
    /// Not parseable as an HTTP/1.1 request (400).
    Malformed,
    /// Header block over the size limit, or too many headers (431).
    HeadersTooLarge,
    /// Method other than GET on an upgrade request (405).
    MethodNotAllowed,
    /// HTTP version below 1.1 (400).
    HttpVersion,
    /// No `Host` header (400).
    MissingHost,
    /// `Upgrade` missing or not `websocket` (400).
    NotUpgrade,
    /// `Connection` does not contain the `upgrade` token (400).
    MissingConnectionUpgrade,
    /// `Sec-WebSocket-Key` missing, repeated, or not base64 of 16 bytes (400).
    BadKey,
    /// `Sec-WebSocket-Version` missing (400).
    MissingVersion,
    /// `Sec-WebSocket-Version` other than 13 (426 with `Sec-WebSocket-Version: 13`).
    UnsupportedVersion,
}

impl HandshakeError {
    /// The HTTP status code to answer with.
    pub fn status(self) -> u16 {
        match self {
            HandshakeError::HeadersTooLarge => 431,
            HandshakeError::MethodNotAllowed => 405,
            HandshakeError::UnsupportedVersion => 426,
            _ => 400,
        }
    }

    /// A one-line explanation, used as the response body.
    pub fn reason(self) -> &'static str {
        match self {
            HandshakeError::Malformed => "malformed HTTP request",
            HandshakeError::HeadersTooLarge => "request header fields too large",
            HandshakeError::MethodNotAllowed => "WebSocket upgrade requires GET",
            HandshakeError::HttpVersion => "WebSocket upgrade requires HTTP/1.1 or later",
            HandshakeError::MissingHost => "missing Host header",
            HandshakeError::NotUpgrade => "Upgrade header must be websocket",
            HandshakeError::MissingConnectionUpgrade => "Connection header must contain upgrade",
            HandshakeError::BadKey => "Sec-WebSocket-Key must be base64 of 16 bytes, given once",
            HandshakeError::MissingVersion => "missing Sec-WebSocket-Version",
            HandshakeError::UnsupportedVersion => "unsupported Sec-WebSocket-Version",
        }
    }
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.reason(), self.status())
    }
}

impl std::error::Error for HandshakeError {}
