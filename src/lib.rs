//! throng: a thread-per-core WebSocket server engine for Linux.
//!
//! This umbrella crate re-exports the two building blocks:
//! [`protocol`] (sans-I/O RFC 6455) and [`engine`] (run loops, backends, the callback API).
pub use throng_engine as engine;
pub use throng_protocol as protocol;

/// The README, whose code blocks are doc tests (the "Using the engine" snippet compiles).
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
