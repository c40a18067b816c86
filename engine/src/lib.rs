//! throng-engine: thread-per-core WebSocket run loops for Linux.
//!
//! One worker per CPU, pinned, each with its own `SO_REUSEPORT` listener, I/O backend,
//! connection slab, spill pool and timer wheel; nothing is shared on the message path.
//! Other threads reach a worker through its mailbox ([`ServerHandle`]). The application
//! implements [`Handler`]; connections appear in callbacks as [`WebSocket`] handles that
//! cannot leave their worker's thread.
//!
//! ```no_run
//! use throng_engine::{Config, Decision, Handler, Message, Server, UpgradeRequest, WebSocket};
//!
//! struct Echo;
//! impl Handler for Echo {
//!     type State = ();
//!     fn on_upgrade<'r>(&mut self, _req: &UpgradeRequest<'r>) -> Decision<'r, ()> {
//!         Decision::accept(())
//!     }
//!     fn on_message(&mut self, ws: &mut WebSocket<'_, ()>, msg: Message<'_>) {
//!         let _ = ws.send(msg);
//!     }
//! }
//!
//! let server = Server::start(Config::default(), |_worker| Echo).unwrap();
//! println!("listening on {} ({})", server.local_addr(), server.backend().name());
//! server.shutdown().unwrap();
//! ```

// Modules that talk to the kernel or own raw memory may use `unsafe` (each block says why
// it is sound); everything else, the core among it, may not.
#![deny(unsafe_code)]

#[doc(hidden)]
pub mod bench_api;
mod config;
mod conn;
mod connections;
mod core;
#[allow(unsafe_code)]
mod cpu;
mod error;
mod handler;
mod interest;
mod mailbox;
mod metrics;
#[allow(unsafe_code)]
mod net;
#[allow(unsafe_code)]
mod output;
mod pool;
mod server;
#[allow(unsafe_code)]
mod signal;
mod stats;
#[allow(unsafe_code)]
mod sys;
#[allow(unsafe_code)]
mod syscall;
#[doc(hidden)]
pub mod testing;
mod timer;
mod tls;
mod topics;
mod worker;
mod ws;

pub use config::{
    BackendChoice, BackendKind, Backpressure, Config, ConfigError, DeflateConfig, DeflateMode,
    DeflateWindow, MessageRate, MetricsEndpoint,
};
pub use connections::Connections;
pub use error::Error;
pub use handler::{Decision, Handler, HttpRequest, HttpResponse, Message, UpgradeRequest};
pub use interest::{TopicEvent, TopicWatcher};
pub use mailbox::{Job, Published};
pub use metrics::{CONTENT_TYPE as METRICS_CONTENT_TYPE, Metrics, WorkerMetrics};
pub use pool::PoolStats;
pub use server::{PublishTicket, Server, ServerHandle, ShutdownReport};
pub use signal::ShutdownSignals;
pub use stats::{
    CLOSE_CODES, CLOSE_SLOTS, Closer, HTTP_STATUSES, STATUS_SLOTS, TURN_BUCKETS, WorkerStats,
};
pub use throng_protocol::{CloseCode, DataKind};
pub use tls::TlsConfig;
pub use ws::{ConnId, SendError, Sent, WebSocket};

/// Per-connection record size without user state (bytes), as asserted at compile time.
pub const CONN_RECORD_BYTES: usize = conn::CONN_BYTES;
