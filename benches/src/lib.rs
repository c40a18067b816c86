//! throng-bench: throng side by side with the Tokio WebSocket servers people compare it
//! with (tokio-tungstenite and fastwebsockets), rerunnable by anyone.
//!
//! `throng-bench compare` starts each server as its own pinned process
//! (`throng-bench serve`), drives them all with the same load generator
//! (`throng_load::measure`, the library of the project's `throng-load` command) from the
//! other CPUs, interleaving the servers round by round, and reports every figure with its
//! ratio to tokio-tungstenite as a markdown table, JSON and an SVG chart.
//!
//! `throng-bench wss` compares throng over `wss://` with tokio-tungstenite over
//! tokio-rustls ([`wss`]).
//!
//! `throng-bench count` runs each server under callgrind and reports the user-space
//! instructions it executes per echoed message ([`count`]): the deterministic measure.

#![deny(unsafe_code)]

pub mod callgrind;
pub mod compare;
#[allow(unsafe_code)] // CPU affinity for the server under valgrind
pub mod count;
pub mod deflate;
pub mod json;
pub mod report;
pub mod servers;
#[allow(unsafe_code)] // sockets and CPU affinity through libc
pub mod sys;
pub mod wss;
