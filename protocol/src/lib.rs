//! Sans-I/O RFC 6455 for throng.
//!
//! Everything about WebSocket bytes and nothing about sockets: the HTTP/1.1 upgrade
//! handshake ([`handshake`]), the frame header codec ([`frame`]), the streaming message
//! decoder ([`decoder`]), close codes ([`close`]), vectorized unmasking ([`mask`]) and
//! UTF-8 validation that streams across fragments ([`utf8`]), and the PROXY protocol header
//! load balancers put in front of a connection ([`proxy`]).
//!
//! The engine feeds bytes in and writes what comes out. Parsers take byte slices, return
//! `Ok(None)` (or consume nothing) on short input, and never panic on bad input: every
//! violation is a [`ProtocolError`] that knows its close code.
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod assembly;
pub mod close;
pub mod decoder;
pub mod error;
pub mod frame;
pub mod handshake;
#[allow(unsafe_code)]
pub mod mask;
pub mod message;
pub mod proxy;
#[allow(unsafe_code)]
pub mod utf8;

pub use assembly::Assembly;
pub use close::CloseCode;
pub use decoder::{Data, DataKind, Decoded, Decoder, DecoderConfig, Event, Role};
pub use error::{HandshakeError, ProtocolError};
pub use frame::{FrameHead, HeaderBuf, OpCode};
pub use message::Message;
