//! The echo server: every text and binary message comes back unchanged.
//!
//! ```text
//! cargo run --release --example echo -- --addr 127.0.0.1:9001 [--backend auto|uring|epoll]
//!     [--threads N] [--max-message BYTES] [--idle-timeout SECS] [--metrics listener|off|HOST:PORT]
//! ```
//! `GET /metrics` (Prometheus text) and `GET /healthz` are answered on the WebSocket
//! listener by default (`curl http://127.0.0.1:9001/metrics`); `--metrics HOST:PORT` moves
//! them to an admin address, `--metrics off` turns them off. Engine events are logged to
//! stderr per `RUST_LOG` (default `warn`; `RUST_LOG=throng_engine=debug` shows every
//! connection's life).
//!
//! Ctrl-C (or SIGTERM) shuts it down gracefully: close 1001 to every client, then exit.

use std::process::ExitCode;
use std::time::Duration;

use throng::engine::{
    BackendChoice, Config, Decision, Handler, Message, MetricsEndpoint, Server, ShutdownSignals,
    UpgradeRequest, WebSocket,
};

struct Echo {
    /// Subprotocol to select when offered (for conformance case hs.7).
    protocol: Option<String>,
}

impl Handler for Echo {
    type State = ();

    fn on_upgrade<'r>(&mut self, req: &UpgradeRequest<'r>) -> Decision<'r, ()> {
        let chosen = self
            .protocol
            .as_deref()
            .and_then(|p| req.protocols().find(|o| *o == p));
        match chosen {
            Some(p) => Decision::accept_with_protocol((), p),
            None => Decision::accept(()),
        }
    }

    fn on_message(&mut self, ws: &mut WebSocket<'_, ()>, message: Message<'_>) {
        // Echo never drops: reading pauses while output is backed up, so the cap is not hit.
        let _ = ws.send(message);
    }
}

fn usage() -> ExitCode {
    eprintln!(
        "usage: echo [--addr HOST:PORT] [--backend auto|uring|epoll] [--threads N] \
         [--max-message BYTES] [--idle-timeout SECS] [--subprotocol NAME] \
         [--metrics listener|off|HOST:PORT]"
    );
    ExitCode::from(2)
}

/// `listener`, `off`, or an admin address.
fn metrics_endpoint(value: &str) -> Option<MetricsEndpoint> {
    match value {
        "listener" => Some(MetricsEndpoint::Listener),
        "off" => Some(MetricsEndpoint::Off),
        addr => addr.parse().ok().map(MetricsEndpoint::Admin),
    }
}

fn main() -> ExitCode {
    init_tracing();
    let mut config = Config::default();
    config.metrics = MetricsEndpoint::Listener;
    let mut protocol = None;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let Some(value) = args.next() else {
            return usage();
        };
        let ok = match flag.as_str() {
            "--addr" => value.parse().map(|a| config.addr = a).is_ok(),
            "--backend" => value
                .parse::<BackendChoice>()
                .map(|b| config.backend = b)
                .is_ok(),
            "--threads" => value
                .parse()
                .map(|n: usize| config.workers = n.max(1))
                .is_ok(),
            "--max-message" => value
                .parse()
                .map(|n: usize| config = config.clone().with_max_message_size(n))
                .is_ok(),
            "--idle-timeout" => value
                .parse()
                .map(|s: u64| config.idle_timeout = Some(Duration::from_secs(s)))
                .is_ok(),
            "--metrics" => metrics_endpoint(&value)
                .map(|m| config.metrics = m)
                .is_some(),
            "--subprotocol" => {
                protocol = Some(value);
                true
            }
            _ => false,
        };
        if !ok {
            return usage();
        }
    }
    let signals = match ShutdownSignals::block() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("echo: cannot block signals: {e}");
            return ExitCode::FAILURE;
        }
    };
    let max = config.max_message_size;
    let metrics_on_listener = config.metrics == MetricsEndpoint::Listener;
    let server = match Server::start(config, move |_| Echo {
        protocol: protocol.clone(),
    }) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("echo: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "echo listening on ws://{}/ backend={} workers={} max-message={max}",
        server.local_addr(),
        server.backend().name(),
        server.workers()
    );
    println!("backend: {}", server.backend_note());
    match server.admin_addr() {
        Some(a) => println!("metrics: http://{a}/metrics"),
        None if metrics_on_listener => println!("metrics: http://{}/metrics", server.local_addr()),
        None => {}
    }
    let _ = signals.wait();
    println!("shutting down");
    match server.shutdown() {
        Ok(r) => {
            println!(
                "closed {} connections: {} cleanly, {} without a close handshake, {} at the deadline",
                r.connections, r.closed_cleanly, r.closed_uncleanly, r.forced
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("echo: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Engine events to stderr, filtered by `RUST_LOG` as users expect (default `warn`).
fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
