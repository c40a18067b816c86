//! One engine process of the demo. Several of them share the port through
//! `SO_REUSEPORT` when one process may not hold all the connections. The parent drives it
//! with lines on stdin; answers go to stdout, one line each.
//!
//! At start: `ready PORT BACKEND`, or `unsupported MESSAGE` (the backend asked for is not
//! available) or `error MESSAGE`.
//! `count` -> `count OPEN`; `broadcast SIZE` -> `published REACHED DROPPED`;
//! `quit` (or EOF) -> graceful shutdown, then `report AT_SHUTDOWN CLEAN FORCED OPENED
//! CLOSED_CLEANLY CLOSED_ABNORMALLY TIMED_OUT REFUSED_FULL DROPPED`.

use std::io::{BufRead, Write};
use std::sync::mpsc;
use std::time::Duration;

use throng::engine::{
    BackendChoice, Config, Decision, Handler, Message, Server, UpgradeRequest, WebSocket,
};

/// Every connection subscribes to one topic so a broadcast is one publish per process.
pub const TOPIC: &str = "all";

struct Idle;

impl Handler for Idle {
    type State = ();
    fn on_upgrade<'r>(&mut self, _req: &UpgradeRequest<'r>) -> Decision<'r, ()> {
        Decision::accept(())
    }
    fn on_open(&mut self, ws: &mut WebSocket<'_, ()>) {
        ws.subscribe(TOPIC);
    }
    fn on_message(&mut self, ws: &mut WebSocket<'_, ()>, message: Message<'_>) {
        let _ = ws.send(message);
    }
}

/// Options a server process is started with.
pub struct Options {
    pub port: u16,
    pub backend: BackendChoice,
    pub workers: usize,
    pub ping_interval: Duration,
}

pub fn run(opts: Options) -> std::io::Result<()> {
    super::measure::raise_nofile();
    let mut config = Config::new(([127, 0, 0, 1], opts.port).into())
        .with_workers(opts.workers)
        .with_pinning(false)
        .with_backend(opts.backend);
    config.ping_interval = Some(opts.ping_interval);
    config.pong_timeout = Duration::from_secs(30);
    // A ramp of a million connections on two shared cores queues handshakes for a while.
    config.handshake_timeout = Duration::from_secs(60);
    config.timer_tick = Duration::from_millis(500);
    config.shutdown_timeout = Duration::from_secs(30);
    config.close_timeout = Duration::from_secs(30);
    let mut out = std::io::stdout().lock();
    let server = match Server::start(config, |_| Idle) {
        Ok(s) => s,
        Err(e) => {
            let word = if e.kind() == std::io::ErrorKind::Unsupported {
                "unsupported"
            } else {
                "error"
            };
            writeln!(out, "{word} {e}")?;
            out.flush()?;
            return Err(e);
        }
    };
    let handle = server.handle();
    writeln!(
        out,
        "ready {} {}",
        server.local_addr().port(),
        server.backend().name()
    )?;
    out.flush()?;
    for line in std::io::stdin().lock().lines() {
        let line = line?;
        let mut words = line.split_whitespace();
        match words.next() {
            Some("count") => {
                let mut total = 0;
                for w in 0..handle.workers() {
                    let (tx, rx) = mpsc::channel();
                    handle.post(w, move |_, conns| {
                        let _ = tx.send(conns.subscribers(TOPIC));
                    });
                    total += rx.recv_timeout(Duration::from_secs(30)).unwrap_or(0);
                }
                writeln!(out, "count {total}")?;
            }
            Some("broadcast") => {
                let size: usize = words.next().and_then(|s| s.parse().ok()).unwrap_or(64);
                let payload = vec![b'b'; size];
                let p = handle
                    .publish(TOPIC, false, &payload)
                    .wait(Duration::from_secs(60))
                    .unwrap_or_default();
                writeln!(out, "published {} {}", p.reached, p.dropped)?;
            }
            Some("quit") | None => break,
            Some(other) => writeln!(out, "error unknown command {other}")?,
        }
        out.flush()?;
    }
    let r = server.shutdown()?;
    let s = r.stats;
    writeln!(
        out,
        "report {} {} {} {} {} {} {} {} {}",
        r.connections,
        r.closed_cleanly,
        r.forced,
        s.opened,
        s.closed_cleanly,
        s.closed_abnormally,
        s.timed_out,
        s.refused_full,
        s.dropped
    )?;
    out.flush()
}
