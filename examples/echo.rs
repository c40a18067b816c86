//! The echo server: every text and binary message comes back unchanged.
//!
//! ```text
//! cargo run --release --example echo -- --addr 127.0.0.1:9001 [--backend auto|uring|epoll]
//!     [--threads N] [--max-message BYTES] [--idle-timeout SECS]
//!     [--tls-cert CERT.pem --tls-key KEY.pem]
//! ```
//! With `--tls-cert` and `--tls-key` it serves `wss://` (see the README for a
//! self-signed pair made with `openssl`).
//! Ctrl-C (or SIGTERM) shuts it down gracefully: close 1001 to every client, then exit.

use std::process::ExitCode;
use std::time::Duration;

use throng::engine::{
    BackendChoice, Config, Decision, Handler, Message, Server, ShutdownSignals, TlsConfig,
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
         [--tls-cert PEM --tls-key PEM]"
    );
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let mut config = Config::default();
    let mut protocol = None;
    let (mut tls_cert, mut tls_key) = (None, None);
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
            "--subprotocol" => {
                protocol = Some(value);
                true
            }
            "--tls-cert" => {
                tls_cert = Some(value);
                true
            }
            "--tls-key" => {
                tls_key = Some(value);
                true
            }
            _ => false,
        };
        if !ok {
            return usage();
        }
    }
    match (tls_cert, tls_key) {
        (Some(cert), Some(key)) => match TlsConfig::from_pem_files(&cert, &key) {
            Ok(tls) => config.tls = Some(tls),
            Err(e) => {
                eprintln!("echo: TLS: {e}");
                return ExitCode::FAILURE;
            }
        },
        (None, None) => {}
        _ => return usage(),
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
