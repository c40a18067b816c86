//! RESP2, the Redis protocol: a streaming decoder with limits and a command writer.

pub mod decode;
pub mod encode;

pub use decode::{DecodeError, Decoder, Limits, Value};
