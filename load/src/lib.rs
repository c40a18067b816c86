//! throng-load: the project's WebSocket load generator for loopback targets, as a library
//! (for throng-bench's comparison) and as the `throng-load` command.
//!
//! - [`hold`] (`throng-load hold`): N idle connections kept open with every ping answered,
//!   broadcast arrival timed, a clean close at the end; driven through stdin and stdout
//!   so that a demo can run many such processes (see `examples/c10m`).
//! - [`echo`] (`throng-load echo`): echo throughput and latency, closed loop or at a fixed
//!   rate, in one process or spread over several.
//! - [`attack`] (`throng-load attack`): the attack run (slowloris, flood, half-open peers,
//!   garbage, RST and connect storms) against an echo server it starts, with a canary and
//!   the server's memory and CPU.
//! - [`measure`]: the benchmark's measurements (echo, latency, idle memory, handshakes,
//!   broadcast, pub/sub) on pinned load threads.
//!
//! Two connection cores: [`fleet`] is built to outrun a server (pre-masked frames shared by
//! all connections, payloads counted, not kept), [`client`] is a strict client for holds
//! (its own key and a fresh mask per frame, every frame validated, the close handshake
//! tracked). Connections to a loopback server come from 127.0.0.2..=127.0.0.250
//! ([`source`]) so that ports do not run out. Both speak `wss://` through [`tls`] (a
//! rustls client session over the same socket).

#![deny(unsafe_code)]

pub mod args;
#[allow(unsafe_code)] // signals and sysconf through libc
pub mod attack;
#[allow(unsafe_code)] // sockets and CPU affinity through libc
pub mod churn;
pub mod churn_tls;
pub mod client;
pub mod echo;
#[allow(unsafe_code)] // sockets and CPU affinity through libc
pub mod fleet;
pub mod frame;
pub mod hist;
pub mod hold;
pub mod measure;
#[allow(unsafe_code)] // sockets and CPU affinity through libc
pub mod source;
#[allow(unsafe_code)] // sockets and CPU affinity through libc
pub mod sys;
pub mod tls;
pub mod upgrade;
