//! One engine process of the demo. Several of them, each on its own port, when one
//! process may not hold all the connections. The parent drives it
//! with lines on stdin; answers go to stdout, one line each.
//!
//! At start: `ready PORT BACKEND`, or `unsupported MESSAGE` (the backend asked for is not
//! available) or `error MESSAGE`.
//! `count` -> `count OPEN`; `broadcast SIZE` -> `published REACHED DROPPED`; `floor SIZE`
//! (the same message written to every socket by a bare loop) -> `published REACHED DROPPED`;
//! `mem` -> `mem SLOTS POOL_IN_USE POOL_FREE POOL_ALLOCATED` (summed over the workers);
//! `quit` (or EOF) -> graceful shutdown, then `report AT_SHUTDOWN CLEAN FORCED OPENED
//! CLOSED_CLEANLY CLOSED_ABNORMALLY TIMED_OUT REFUSED_FULL DROPPED PONG_TIMEOUTS
//! RECV_ENOBUFS`.

use std::io::{BufRead, Write};
use std::sync::mpsc;
use std::time::Duration;

use bytes::Bytes;
use throng::engine::{
    BackendChoice, Config, Connections, Decision, Handler, Message, Published, Server,
    ServerHandle, UpgradeRequest, WebSocket,
};

/// Every connection subscribes to one topic so a broadcast is one publish per process.
pub const TOPIC: &str = "all";

struct Idle {
    subscribe: bool,
}

impl Handler for Idle {
    type State = ();
    fn on_upgrade<'r>(&mut self, _req: &UpgradeRequest<'r>) -> Decision<'r, ()> {
        Decision::accept(())
    }
    fn on_open(&mut self, ws: &mut WebSocket<'_, ()>) {
        if self.subscribe {
            ws.subscribe(TOPIC);
        }
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
    pub pong_timeout: Duration,
    /// Subscribe every connection to [`TOPIC`] and broadcast with one publish; without,
    /// a broadcast sends the shared frame to each open connection from a posted job
    /// (to measure what the subscription costs per connection).
    pub subscribe: bool,
    /// `wss://`: the certificate chain and key (PEM files).
    pub tls: Option<(String, String)>,
}

pub fn run(opts: Options) -> std::io::Result<()> {
    super::measure::raise_nofile();
    let mut config = Config::new(([127, 0, 0, 1], opts.port).into())
        .with_workers(opts.workers)
        .with_pinning(false)
        .with_backend(opts.backend);
    config.ping_interval = Some(opts.ping_interval);
    // The engine files a connection's timer lazily: after a ping it waits for the pong
    // deadline's wheel entry, so with prompt pongs a connection is pinged every
    // max(ping_interval, pong_timeout). The demo keeps the two equal.
    config.pong_timeout = opts.pong_timeout;
    // A ramp of a million connections on two shared cores queues handshakes for a while.
    config.handshake_timeout = Duration::from_secs(60);
    config.timer_tick = Duration::from_millis(500);
    config.shutdown_timeout = Duration::from_secs(30);
    config.close_timeout = Duration::from_secs(30);
    // GET /metrics on the demo's port: each server process answers for its own workers
    // (each process on its own port).
    config.metrics = throng::engine::MetricsEndpoint::Listener;
    if let Some((cert, key)) = &opts.tls {
        config = config.with_tls(throng::engine::TlsConfig::from_pem_files(cert, key)?);
    }
    let mut out = std::io::stdout().lock();
    let subscribe = opts.subscribe;
    let server = match Server::start(config, move |_| Idle { subscribe }) {
        Ok(s) => s,
        Err(e) => {
            let word = if matches!(e, throng::engine::Error::BackendUnavailable { .. }) {
                "unsupported"
            } else {
                "error"
            };
            writeln!(out, "{word} {e}")?;
            out.flush()?;
            return Err(e.into());
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
                let open: usize = on_workers(&handle, |c| c.ids().len()).iter().sum();
                writeln!(out, "count {open}")?;
            }
            Some("mem") => {
                let mut sum = [0usize; 4];
                for m in on_workers(&handle, |c| {
                    let p = c.pool_stats();
                    [c.len(), p.in_use, p.free, p.allocated]
                }) {
                    sum.iter_mut().zip(m).for_each(|(s, v)| *s += v);
                }
                writeln!(out, "mem {} {} {} {}", sum[0], sum[1], sum[2], sum[3])?;
            }
            Some("broadcast") => {
                let size: usize = words.next().and_then(|s| s.parse().ok()).unwrap_or(64);
                let payload = vec![b'b'; size];
                let p = if subscribe {
                    handle
                        .publish(TOPIC, throng::engine::DataKind::Binary, &payload)
                        .wait(Duration::from_secs(60))
                        .unwrap_or_default()
                } else {
                    let shared = Bytes::from(payload);
                    let mut p = Published::default();
                    for one in on_workers(&handle, move |c| send_to_all(c, &shared)) {
                        p += one;
                    }
                    p
                };
                writeln!(out, "published {} {}", p.reached, p.dropped)?;
            }
            Some("floor") => {
                // The write-loop floor of a broadcast: the same frame written straight to
                // every connection's socket, one `send` each, on the workers' threads.
                let size: usize = words.next().and_then(|s| s.parse().ok()).unwrap_or(64);
                let frame = Bytes::from(binary_frame(&vec![b'b'; size]));
                let mut p = Published::default();
                for one in on_workers(&handle, move |c| write_to_all(c, &frame)) {
                    p += one;
                }
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
        "report {} {} {} {} {} {} {} {} {} {} {}",
        r.connections,
        r.closed_cleanly,
        r.forced,
        s.opened,
        s.closed_cleanly,
        s.closed_abnormally,
        s.timed_out,
        s.refused_full,
        s.dropped,
        s.pong_timeouts,
        s.recv_enobufs
    )?;
    out.flush()
}

/// Runs `job` on every worker's thread and collects the answers (a worker that does not
/// answer within 60 s is left out).
fn on_workers<T: Send + 'static>(
    handle: &ServerHandle<Idle>,
    job: impl Fn(&mut Connections<'_, ()>) -> T + Send + Clone + 'static,
) -> Vec<T> {
    let replies: Vec<_> = (0..handle.workers())
        .map(|w| {
            let (tx, rx) = mpsc::channel();
            let job = job.clone();
            handle.post(w, move |_, conns| {
                let _ = tx.send(job(conns));
            });
            rx
        })
        .collect();
    replies
        .into_iter()
        .filter_map(|rx| rx.recv_timeout(Duration::from_secs(60)).ok())
        .collect()
}

/// The broadcast without a topic: the shared frame to every open connection of a worker.
fn send_to_all(conns: &mut Connections<'_, ()>, payload: &Bytes) -> Published {
    let mut p = Published::default();
    for id in conns.ids() {
        match conns
            .get(id)
            .map(|mut ws| ws.send_shared(throng::engine::DataKind::Binary, payload.clone()))
        {
            Some(Ok(_)) => p.reached += 1,
            _ => p.dropped += 1,
        }
    }
    p
}

/// An unmasked, final binary frame (payload at most 65,535 bytes).
fn binary_frame(payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0x82];
    match payload.len() {
        n @ 0..=125 => f.push(n as u8),
        n => {
            let n = u16::try_from(n).expect("floor frames are at most 65,535 bytes");
            f.push(126);
            f.extend_from_slice(&n.to_be_bytes());
        }
    }
    f.extend_from_slice(payload);
    f
}

/// The floor: `frame` written to each open connection's socket with one `send`, no
/// engine in between (what any server must at least do per connection). A socket that
/// does not take the whole frame at once counts as dropped.
fn write_to_all(conns: &mut Connections<'_, ()>, frame: &Bytes) -> Published {
    let mut p = Published::default();
    for id in conns.ids() {
        let Some(fd) = conns.get(id).map(|ws| ws.raw_fd()) else {
            p.dropped += 1;
            continue;
        };
        // SAFETY: `frame` is valid for reads of its length for the call; `fd` is an open
        // socket of this worker (the job runs on the worker's thread, between its turns).
        let n = unsafe {
            libc::send(
                fd,
                frame.as_ptr().cast(),
                frame.len(),
                libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
            )
        };
        if n == frame.len() as isize {
            p.reached += 1;
        } else {
            p.dropped += 1;
        }
    }
    p
}
