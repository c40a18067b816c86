//! The echo server: every text and binary message comes back unchanged.
//!
//! ```text
//! cargo run --release --example echo -- [--addr 127.0.0.1:9001] [--backend auto|uring|epoll]
//!     [--threads N] [--max-message 16M] [--idle-timeout SECS] [--subprotocol NAME]
//! ```
//! `--help` lists every flag with its default. Without `--subprotocol` the first
//! subprotocol the client offers is selected (as Node's `ws` does).
//!
//! `GET /metrics` (Prometheus text) and `GET /healthz` are answered on the WebSocket
//! listener by default (`curl http://127.0.0.1:9001/metrics`); `--metrics HOST:PORT` moves
//! them to an admin address, `--metrics off` turns them off. Engine events are logged to
//! stderr per `RUST_LOG` (default `warn`; `RUST_LOG=throng_engine=debug` shows every
//! connection's life).
//!
//! With `--tls-cert` and `--tls-key` it serves `wss://` (see the README for a
//! self-signed pair made with `openssl`).
//! Ctrl-C (or SIGTERM) shuts it down gracefully: close 1001 to every client, then exit.

use std::process::ExitCode;
use std::time::Duration;

use throng::engine::{
    BackendChoice, Config, Decision, DeflateConfig, Handler, Message, MetricsEndpoint, Server,
    ShutdownSignals, TlsConfig, UpgradeRequest, WebSocket,
};

#[path = "common/args.rs"]
mod args;
use args::{Flag, flag};

/// The command line: one line per flag (name, value, default, help).
#[rustfmt::skip]
const FLAGS: &[Flag] = &[
    flag("--addr", "HOST:PORT", "127.0.0.1:9001", "address to listen on (a host name is resolved, its first address used)"),
    flag("--backend", "auto|uring|epoll", "auto", "I/O backend (THRONG_BACKEND overrides it)"),
    flag("--threads", "N", "", "worker threads, at least 1 (default: one per CPU this process may use)"),
    flag("--max-message", "SIZE", "16M", "largest message and frame accepted; more closes with 1009"),
    flag("--idle-timeout", "SECS", "", "close a connection silent this long (default: never)"),
    flag("--subprotocol", "NAME", "", "select NAME when the client offers it, else none (default: the first one the client offers, as Node's ws does)"),
    flag("--deflate", "on|off", "off", "permessage-deflate (RFC 7692) in shared mode, the default threshold and level"),
    flag("--tls-cert", "PEM", "", "certificate chain: serve wss:// (with --tls-key)"),
    flag("--tls-key", "PEM", "", "private key of --tls-cert"),
    flag("--metrics", "listener|off|HOST:PORT", "listener", "where GET /metrics and /healthz are answered: on the WebSocket listener, nowhere, or an admin address"),
];

struct Echo {
    /// Subprotocol to select when offered (for conformance case hs.7); `None`: the first
    /// one the client offers, so `new WebSocket(url, ['chat'])` in a browser opens.
    protocol: Option<String>,
}

impl Handler for Echo {
    type State = ();

    fn on_upgrade<'r>(&mut self, req: &UpgradeRequest<'r>) -> Decision<'r, ()> {
        let chosen = match self.protocol.as_deref() {
            Some(p) => req.protocols().find(|o| *o == p),
            None => req.protocols().next(),
        };
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

fn main() -> ExitCode {
    init_tracing();
    let a = args::parse(
        "echo",
        "The echo server: every text and binary message comes back unchanged.",
        FLAGS,
    );
    let mut config = Config::default();
    config.addr = a.addr("--addr").expect("defaulted");
    config.backend = a.get::<BackendChoice>("--backend");
    if let Some(n) = a.positive("--threads") {
        config.workers = n;
    }
    let max = a.size("--max-message").expect("defaulted");
    if max == 0 {
        a.bad("--max-message", "must be at least 1 byte");
    }
    config = config.with_max_message_size(max);
    config.idle_timeout = a.opt::<u64>("--idle-timeout").map(Duration::from_secs);
    let protocol = a.raw("--subprotocol").map(str::to_owned);
    config.deflate = (a.raw("--deflate") == Some("on")).then(DeflateConfig::default);
    config.metrics = match a.raw("--metrics").expect("defaulted") {
        "listener" => MetricsEndpoint::Listener,
        "off" => MetricsEndpoint::Off,
        addr => match addr.parse() {
            Ok(addr) => MetricsEndpoint::Admin(addr),
            Err(_) => a.bad("--metrics", "expected listener, off or HOST:PORT"),
        },
    };
    if let Some((cert, key)) = a.pair("--tls-cert", "--tls-key") {
        match TlsConfig::from_pem_files(cert, key) {
            Ok(tls) => config.tls = Some(tls),
            Err(e) => {
                eprintln!("echo: TLS: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let scheme = if config.tls.is_some() { "wss" } else { "ws" };
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
        "echo listening on {scheme}://{}/ backend={} workers={} max-message={max}",
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
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}
