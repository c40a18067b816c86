//! The C10M demo: hold as many idle WebSocket connections as this machine allows, and
//! measure what they cost.
//!
//! ```text
//! cargo build --release -p throng-load          # the client side (built on demand if missing)
//! cargo run --release --example c10m -- --connections N [--backend auto|uring|epoll]
//!     [--hold SECS] [--ping-interval SECS] [--pong-timeout SECS] [--per-process N]
//!     [--open-window N] [--open-timeout SECS] [--no-subscribe] [--tls] [--json]
//! ```
//! `--tls`: the same over `wss://`: a self-signed pair for 127.0.0.1 is made with rcgen
//! (in a directory of the run, removed at the end), the servers listen with TLS and the
//! load generator's connections trust that certificate (`--cafile`).
//! 1. starts the engine, in several processes (each on a port of its own, its share of
//!    the clients connecting to it) when RLIMIT_NOFILE is below what one process needs
//!    (and says so);
//! 2. ramps N client connections with the project's load generator (`throng-load hold`,
//!    also spread over processes) and reports the handshake rate;
//! 3. holds them for `--hold` seconds (default 30) while the server pings every connection
//!    (default: every N/30,000 s within 5..30 s, so about 30,000 pings/s), and reports the
//!    CPU the heartbeats cost;
//! 4. broadcasts one 64-byte message to every connection (one publish to a topic every
//!    connection subscribed to at open) and reports when the last client had it; then,
//!    except over TLS, the floor: the same frame written to every socket by a bare
//!    `send` loop in the same server processes (`floor` command), time and server CPU,
//!    and throng's ratio to it;
//! 5. reports memory: server user space per connection (RSS of the server processes after
//!    the ramp minus before, over N) and kernel memory per connection (Slab in
//!    /proc/meminfo, same method; both ends are on this host, so half the growth per
//!    pair), and what 10,000,000 connections need at these figures;
//! 6. closes every connection from the client side and counts failures of any kind.
//!
//! `--no-subscribe` is a diagnostic: connections join no topic and the broadcast sends the
//! shared frame connection by connection, to show what the subscription costs.
//!
//! With `--json` progress goes to stderr and stdout is one JSON object. Exit status: 0 when
//! nothing failed, 1 on failures or errors, 2 on bad usage, 3 when the backend asked for is
//! not available in this build or on this kernel.
//!
//! The load generator is `$THRONG_LOAD`, else `target/<profile>/throng-load` beside this
//! example (built with cargo when missing).

mod clients;
mod measure;
mod server;
mod tls;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use throng::engine::{BackendChoice, CONN_RECORD_BYTES};

/// Exit status when the backend asked for is not available.
const EXIT_UNSUPPORTED: u8 = 3;
/// Size of the broadcast message.
const BROADCAST_BYTES: usize = 64;
/// Descriptors a process keeps for itself (stdio, epoll, eventfd, listener, pipes).
const FD_RESERVE: usize = 2_000;

struct Args {
    connections: usize,
    backend: BackendChoice,
    hold: u64,
    ping_interval: Option<u64>,
    pong_timeout: Option<u64>,
    per_process: Option<usize>,
    open_window: Option<usize>,
    open_timeout: Option<u64>,
    json: bool,
    /// Diagnostic: no topic subscription (the broadcast goes connection by connection).
    no_subscribe: bool,
    /// `wss://`: servers with a self-signed certificate, clients over TLS.
    tls: bool,
    /// Internal: run as one engine process on this port.
    serve: Option<u16>,
    /// Internal: the serving process's certificate chain and key (PEM files).
    tls_pair: Option<(String, String)>,
}

#[path = "../common/args.rs"]
mod args;
use args::{Flag, flag, switch};

/// The command line: one line per flag (name, value, default, help). `--serve` is internal.
#[rustfmt::skip]
const FLAGS: &[Flag] = &[
    flag("--connections", "N", "100000", "connections to open and hold, at least 1"),
    flag("--backend", "auto|uring|epoll", "auto", "I/O backend of the server"),
    flag("--hold", "SECS", "30", "how long to hold the connections"),
    flag("--ping-interval", "SECS", "", "server ping interval (default: N/30000 s within 5..30)"),
    flag("--pong-timeout", "SECS", "", "close a connection that does not answer a ping within this (default: the ping interval)"),
    flag("--per-process", "N", "", "connections per server and client process (default: what RLIMIT_NOFILE allows)"),
    flag("--open-window", "N", "", "handshakes in flight per client process (default: the load generator's)"),
    flag("--open-timeout", "SECS", "", "give up on the ramp after this (default: N/2500 s, at least 120)"),
    switch("--no-subscribe", "diagnostic: join no topic; the broadcast goes connection by connection"),
    switch("--tls", "wss://: a self-signed certificate made for the run, TLS servers and clients"),
    switch("--json", "progress to stderr, one JSON object to stdout"),
    flag("--serve", "PORT", "", ""),
    flag("--tls-cert", "PEM", "", ""),
    flag("--tls-key", "PEM", "", ""),
];

const ABOUT: &str = "The C10M demo: hold many idle WebSocket connections and measure what they cost.\n\
     Exit status: 0 when nothing failed, 1 on failures, 2 on bad usage, 3 when the backend is not available.";

fn parse_args() -> Args {
    let p = args::parse("c10m", ABOUT, FLAGS);
    Args {
        connections: p.positive("--connections").expect("defaulted"),
        backend: p.get("--backend"),
        hold: p.get("--hold"),
        ping_interval: p.opt("--ping-interval"),
        pong_timeout: p.opt("--pong-timeout"),
        per_process: p.positive("--per-process"),
        open_window: p.positive("--open-window"),
        open_timeout: p.opt("--open-timeout"),
        json: p.on("--json"),
        no_subscribe: p.on("--no-subscribe"),
        tls: p.on("--tls"),
        serve: p.opt("--serve"),
        tls_pair: p
            .pair("--tls-cert", "--tls-key")
            .map(|(c, k)| (c.to_owned(), k.to_owned())),
    }
}

/// One engine process and its command pipe.
struct ServerProc {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<std::process::ChildStdout>,
}

impl ServerProc {
    fn ask(&mut self, command: &str) -> std::io::Result<String> {
        self.tell(command)?;
        self.read_line()
    }
    fn tell(&mut self, command: &str) -> std::io::Result<()> {
        writeln!(self.stdin, "{command}")?;
        self.stdin.flush()
    }
    fn read_line(&mut self) -> std::io::Result<String> {
        let mut line = String::new();
        if self.stdout.read_line(&mut line)? == 0 {
            return Err(std::io::Error::other(format!(
                "server process {} exited",
                self.child.id()
            )));
        }
        Ok(line.trim().to_owned())
    }
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        // Only our own children, by handle; a clean run has already seen them exit.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// Numbers after the first word of a reply line.
fn numbers(line: &str) -> Vec<u64> {
    line.split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect()
}

/// Progress for a person: stdout normally, stderr with `--json` so stdout is the object.
struct Say {
    json: bool,
}

impl Say {
    fn line(&self, msg: impl AsRef<str>) {
        if self.json {
            eprintln!("{}", msg.as_ref());
        } else {
            println!("{}", msg.as_ref());
        }
    }
}

/// Why a run stopped before its report.
enum Stop {
    Unsupported(String),
    Error(std::io::Error),
}

impl From<std::io::Error> for Stop {
    fn from(e: std::io::Error) -> Self {
        Stop::Error(e)
    }
}

fn main() -> ExitCode {
    let args = parse_args();
    if let Some(port) = args.serve {
        let opts = server::Options {
            port,
            backend: args.backend,
            workers: 1,
            ping_interval: Duration::from_secs(args.ping_interval.unwrap_or(5).max(1)),
            pong_timeout: Duration::from_secs(args.pong_timeout.unwrap_or(5).max(1)),
            subscribe: !args.no_subscribe,
            tls: args.tls_pair.clone(),
        };
        return match server::run(opts) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("c10m server {}: {e}", std::process::id());
                ExitCode::FAILURE
            }
        };
    }
    match run(&args) {
        Ok(0) => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        Err(Stop::Unsupported(e)) => {
            eprintln!("c10m: backend not available: {e}");
            ExitCode::from(EXIT_UNSUPPORTED)
        }
        Err(Stop::Error(e)) => {
            eprintln!("c10m: {e}");
            ExitCode::FAILURE
        }
    }
}

fn backend_name(b: BackendChoice) -> &'static str {
    match b {
        BackendChoice::Auto => "auto",
        BackendChoice::Uring => "uring",
        BackendChoice::Epoll => "epoll",
    }
}

/// `mem` of every server process, summed: slots, spill records lent, pooled, allocated.
fn pool_stats(servers: &mut [ServerProc]) -> std::io::Result<[u64; 4]> {
    let mut sum = [0u64; 4];
    for s in servers {
        let v = numbers(&s.ask("mem")?);
        sum.iter_mut().zip(v).for_each(|(a, b)| *a += b);
    }
    Ok(sum)
}

fn mb(bytes: f64) -> f64 {
    bytes / (1u64 << 20) as f64
}

fn run(args: &Args) -> Result<u64, Stop> {
    let say = Say { json: args.json };
    let n = args.connections;
    let nofile = measure::raise_nofile() as usize;
    let per_process = args
        .per_process
        .unwrap_or(18_000)
        .min(nofile.saturating_sub(FD_RESERVE).max(1))
        .max(1);
    let procs = n.div_ceil(per_process);
    // Heartbeats near 30,000 pings/s whatever N is (two shared cores serve both ends
    // here): every 5 s up to 150,000 connections, every 30 s at 900,000 and beyond.
    let ping_interval = args
        .ping_interval
        .unwrap_or((n as u64).div_ceil(30_000).clamp(5, 30))
        .max(1);
    let pong_timeout = args.pong_timeout.unwrap_or(ping_interval).max(1);
    let load_bin = clients::locate_load_binary(&|m| say.line(m))?;
    // A port per server process: the engine refuses a port that another process's
    // `SO_REUSEPORT` group holds (so that two servers never split one port's traffic by
    // accident), so the processes cannot share one; client process i connects to server i.
    // Each binds port 0 and reports the port it got: a port picked here and bound there
    // later could be taken meanwhile by anything else on the host.
    let mut ports: Vec<u16> = Vec::with_capacity(procs);
    // wss://: one self-signed pair for every server process, trusted by every client.
    let pem = if args.tls {
        Some(tls::Pair::new()?)
    } else {
        None
    };
    if procs > 1 {
        say.line(format!(
            "RLIMIT_NOFILE is {nofile} here (the hard limit; it cannot be raised): one process \
             holds at most {per_process} connections, so the engine runs in {procs} processes, \
             one worker each, each on a port of its own"
        ));
    }

    // 1. the server processes
    let mut servers: Vec<ServerProc> = Vec::with_capacity(procs);
    let mut backend = String::new();
    for _ in 0..procs {
        let mut child = Command::new(std::env::current_exe()?)
            .args(["--serve", "0"])
            .args(["--backend", backend_name(args.backend)])
            .args(["--ping-interval", &ping_interval.to_string()])
            .args(["--pong-timeout", &pong_timeout.to_string()])
            .args(args.no_subscribe.then_some("--no-subscribe"))
            .args(pem.iter().flat_map(|p| p.server_args()))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let stdin = child.stdin.take().expect("piped");
        let stdout = BufReader::new(child.stdout.take().expect("piped"));
        let mut s = ServerProc {
            child,
            stdin,
            stdout,
        };
        let ready = s.read_line()?;
        let (word, rest) = ready.split_once(' ').unwrap_or((&ready, ""));
        match word {
            "ready" => {
                let mut words = rest.split_whitespace();
                let port = words.next().and_then(|p| p.parse().ok()).ok_or_else(|| {
                    Stop::Error(std::io::Error::other(format!("bad ready line: {ready}")))
                })?;
                ports.push(port);
                backend = words.next().unwrap_or("?").to_owned();
            }
            "unsupported" => return Err(Stop::Unsupported(rest.to_owned())),
            _ => {
                return Err(Stop::Error(std::io::Error::other(format!(
                    "server process did not start: {ready}"
                ))));
            }
        }
        servers.push(s);
    }
    let port_list = match &ports[..] {
        [one] => format!("port {one}"),
        [a, b] => format!("ports {a}, {b}"),
        [a, .., z] => format!("ports {a}, ..., {z}"),
        [] => unreachable!("at least one server process"),
    };
    say.line(format!(
        "server: {procs} process(es), backend {backend}, {port_list}{}; a ping after \
         {ping_interval} s of silence, pong timeout {pong_timeout} s (so every {} s); \
         connection record {CONN_RECORD_BYTES} B without user state",
        if args.tls {
            " over TLS (rustls, a self-signed certificate for 127.0.0.1)"
        } else {
            ""
        },
        ping_interval.max(pong_timeout)
    ));
    let server_pids: Vec<u32> = servers.iter().map(|s| s.child.id()).collect();

    // 2. the ramp
    std::thread::sleep(Duration::from_millis(300));
    let rss_before = measure::rss_sum(&server_pids);
    let slab_before = measure::slab_bytes();
    let caches_before = measure::slab_caches();
    let cpu_ramp_before = measure::cpu_sum(&server_pids);
    let scheme = if args.tls { "wss" } else { "ws" };
    let urls = ports
        .iter()
        .map(|port| format!("{scheme}://127.0.0.1:{port}/"))
        .collect();
    let mut load = clients::Clients::start(
        &load_bin,
        &clients::Options {
            urls,
            cafile: pem.as_ref().map(|p| p.cert.clone()),
            connections: n,
            per_process,
            open_window: args.open_window,
            // A connection gives up after this long (it counts as a failure). The ramp
            // slows as N grows (both ends and the heartbeats of the connections already
            // open share the cores), so the default allows 2,500/s on average.
            open_timeout: Some(
                args.open_timeout
                    .unwrap_or((n as u64).div_ceil(2_500).max(120)),
            ),
        },
    )?;
    let client_pids = load.pids();
    say.line(format!(
        "clients: {} load process(es) ({}), {} connections from 127.0.0.2..250",
        load.processes(),
        load_bin.display(),
        load.assigned()
    ));
    // Both ends are on this host: 2 sockets per connection in the TCP established hash.
    if let Some(buckets) = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_ehash_entries")
        .ok()
        .and_then(|s| s.trim().parse::<usize>().ok())
        && buckets < 2 * n
    {
        say.line(format!(
            "note: the TCP established hash has {buckets} buckets for {} sockets: every \
             packet searches a chain of ~{} (see net.ipv4.tcp_child_ehash_entries in tuning/sysctl.conf)",
            2 * n,
            (2 * n).div_ceil(buckets)
        ));
    }
    let ramp_timeout = Duration::from_secs(120 + n as u64 / 2_000);
    let started = Instant::now();
    let ramp = load.wait_ramped(ramp_timeout, |c, f| {
        let secs = started.elapsed().as_secs_f64();
        // A 1M ramp takes minutes: a live line each second (silence would look like a hang).
        say.line(format!(
            "  ramp: {c} / {n} connected, {f} failed, {secs:.0} s ({:.0}/s), server RSS {:.1} MiB",
            c as f64 / secs.max(1e-9),
            mb(measure::rss_sum(&server_pids) as f64)
        ));
    })?;
    let cpu_ramp = measure::cpu_sum(&server_pids) - cpu_ramp_before;
    let handshakes_per_s = ramp.connected as f64 / ramp.wall_seconds.max(1e-9);
    say.line(format!(
        "ramp: {} connected in {:.2} s = {handshakes_per_s:.0} handshakes/s ({} failed; \
         server CPU {cpu_ramp:.1} s, {:.1} us per handshake)",
        ramp.connected,
        ramp.wall_seconds,
        ramp.failed,
        cpu_ramp * 1e6 / ramp.connected.max(1) as f64
    ));

    // 5. (measured now, right after the ramp) memory
    std::thread::sleep(Duration::from_secs(1));
    let rss_after = measure::rss_sum(&server_pids);
    let slab_after = measure::slab_bytes();
    let caches_after = measure::slab_caches();
    let client_rss = measure::rss_sum(&client_pids);
    let mut open = 0;
    for s in &mut servers {
        open += numbers(&s.ask("count")?).first().copied().unwrap_or(0) as usize;
    }
    let pool_after_ramp = pool_stats(&mut servers)?;
    let user_per_conn = rss_after.saturating_sub(rss_before) as f64 / n as f64;
    let kernel_per_pair = slab_after.saturating_sub(slab_before) as f64 / n as f64;
    let kernel_per_conn = kernel_per_pair / 2.0;
    let client_per_conn = client_rss as f64 / n as f64;
    say.line(format!(
        "memory: {open} open on the server; server user space {:.1} MiB -> {:.1} MiB = \
         {user_per_conn:.1} B/conn; kernel Slab +{:.1} MiB = {kernel_per_pair:.0} B per \
         connection pair (both ends are on this host), ~{kernel_per_conn:.0} B per side; \
         load generator {client_per_conn:.0} B/conn (whole RSS)",
        mb(rss_before as f64),
        mb(rss_after as f64),
        mb(slab_after.saturating_sub(slab_before) as f64)
    ));
    say.line(format!(
        "  engine: {} connection slots; spill records {} lent, {} pooled, {} ever allocated; \
         topic subscription {}",
        pool_after_ramp[0],
        pool_after_ramp[1],
        pool_after_ramp[2],
        pool_after_ramp[3],
        if args.no_subscribe { "off" } else { "on" }
    ));
    let growth = measure::slab_growth(&caches_before, &caches_after, 8);
    if !growth.is_empty() {
        let list: Vec<String> = growth
            .iter()
            .map(|(name, b)| format!("{name} {:.0}", *b as f64 / n as f64))
            .collect();
        say.line(format!(
            "  slab caches that grew, B per pair: {}",
            list.join(", ")
        ));
    }

    // 3. the hold
    let stats_before = load.stats(Duration::from_secs(60))?;
    let cpu_before = measure::cpu_sum(&server_pids);
    let client_cpu_before = measure::cpu_sum(&client_pids);
    let held = Instant::now();
    say.line(format!(
        "hold: {} connections for {} s (the server pings each about every {} s)",
        stats_before.open,
        args.hold,
        ping_interval.max(pong_timeout)
    ));
    let hold_end = held + Duration::from_secs(args.hold);
    while Instant::now() < hold_end {
        let step = hold_end
            .saturating_duration_since(Instant::now())
            .min(Duration::from_secs(5));
        std::thread::sleep(step);
        if Instant::now() < hold_end {
            let secs = held.elapsed().as_secs_f64();
            let cpu = measure::cpu_sum(&server_pids) - cpu_before;
            say.line(format!(
                "  hold: {secs:.0} s, server CPU {:.1}% of a core",
                100.0 * cpu / secs
            ));
        }
    }
    let hold_secs = held.elapsed().as_secs_f64();
    let cpu = measure::cpu_sum(&server_pids) - cpu_before;
    let client_cpu = measure::cpu_sum(&client_pids) - client_cpu_before;
    let stats_after = load.stats(Duration::from_secs(60))?;
    let pings = stats_after
        .pings_answered
        .saturating_sub(stats_before.pings_answered);
    let heartbeat_cpu_pct = 100.0 * cpu / hold_secs;
    let pings_per_s = pings as f64 / hold_secs;
    let ping_period = stats_after.open as f64 / pings_per_s.max(1e-9);
    say.line(format!(
        "heartbeats: {pings} pings answered in {hold_secs:.1} s ({pings_per_s:.0}/s, one per \
         connection every {ping_period:.1} s); server CPU {heartbeat_cpu_pct:.2}% of one core \
         ({:.2} us per ping); load generator CPU {:.1}%; {} open, {} closed by the server",
        cpu * 1e6 / pings.max(1) as f64,
        100.0 * client_cpu / hold_secs,
        stats_after.open,
        stats_after.closed_by_server
    ));

    // 4. the broadcast
    load.expect_broadcast()?;
    std::thread::sleep(Duration::from_millis(300));
    let cpu_broadcast_before = measure::cpu_sum(&server_pids);
    let client_cpu_broadcast_before = measure::cpu_sum(&client_pids);
    let start_ns = clients::monotonic_ns();
    for s in &mut servers {
        s.tell(&format!("broadcast {BROADCAST_BYTES}"))?;
    }
    let mut reached = 0;
    let mut dropped = 0;
    for s in &mut servers {
        let v = numbers(&s.read_line()?);
        reached += v.first().copied().unwrap_or(0) as usize;
        dropped += v.get(1).copied().unwrap_or(0) as usize;
    }
    let published_ms = (clients::monotonic_ns() - start_ns) as f64 / 1e6;
    let b = load.wait_broadcast(Duration::from_secs(60 + n as u64 / 10_000))?;
    let broadcast_ms = b.last_ns.saturating_sub(start_ns) as f64 / 1e6;
    let broadcast_server_cpu_ms = (measure::cpu_sum(&server_pids) - cpu_broadcast_before) * 1e3;
    let broadcast_client_cpu_ms =
        (measure::cpu_sum(&client_pids) - client_cpu_broadcast_before) * 1e3;
    say.line(format!(
        "broadcast: {BROADCAST_BYTES} B to {reached} connections ({dropped} dropped), \
         queued by every server in {published_ms:.1} ms; {} clients got it, the first after \
         {:.1} ms, the last after {broadcast_ms:.1} ms; CPU meanwhile (heartbeats included): \
         servers {broadcast_server_cpu_ms:.0} ms, load generator {broadcast_client_cpu_ms:.0} ms",
        b.received,
        b.first_ns.saturating_sub(start_ns) as f64 / 1e6
    ));
    // 5. the floor: the same frame written to every socket by a bare loop in the same
    // server processes (not over TLS: the bytes would not be records).
    let floor = if args.tls {
        None
    } else {
        load.expect_broadcast()?;
        std::thread::sleep(Duration::from_millis(300));
        let cpu_before = measure::cpu_sum(&server_pids);
        let start_ns = clients::monotonic_ns();
        for s in &mut servers {
            s.tell(&format!("floor {BROADCAST_BYTES}"))?;
        }
        for s in &mut servers {
            s.read_line()?;
        }
        let f = load.wait_broadcast(Duration::from_secs(60 + n as u64 / 10_000))?;
        let ms = f.last_ns.saturating_sub(start_ns) as f64 / 1e6;
        let cpu_ms = (measure::cpu_sum(&server_pids) - cpu_before) * 1e3;
        say.line(format!(
            "floor (a bare send() loop over the same sockets, same processes): {} clients got \
             it, the last after {ms:.1} ms; server CPU {cpu_ms:.0} ms; throng/floor: time \
             {:.2}x, server CPU {:.2}x",
            f.received,
            broadcast_ms / ms.max(1e-9),
            broadcast_server_cpu_ms / cpu_ms.max(1e-9)
        ));
        Some((ms, cpu_ms, f.received))
    };
    let rss_end = measure::rss_sum(&server_pids);
    let user_per_conn_end = rss_end.saturating_sub(rss_before) as f64 / n as f64;
    let pool_end = pool_stats(&mut servers)?;
    say.line(format!(
        "  after the broadcast: server user space {user_per_conn_end:.1} B/conn over the \
         baseline; spill records {} lent, {} pooled, {} ever allocated",
        pool_end[1], pool_end[2], pool_end[3]
    ));

    // 6. close from the client side, then stop the servers
    let close_started = Instant::now();
    // About 100,000 connections closing at a time.
    let at_once = (100_000 / per_process).max(1);
    let closed = load.close(Duration::from_secs(120 + n as u64 / 5_000), at_once)?;
    let close_secs = close_started.elapsed().as_secs_f64();
    let mut report = [0u64; 11];
    for s in &mut servers {
        for (sum, v) in report.iter_mut().zip(numbers(&s.ask("quit")?)) {
            *sum += v;
        }
        let _ = s.child.wait();
    }
    let [
        left_open,
        _,
        forced,
        opened,
        server_clean,
        abnormal,
        timed_out,
        refused_full,
        send_dropped,
        pong_timeouts,
        recv_enobufs,
    ] = report;
    say.line(format!(
        "close: {} closed cleanly by the clients in {close_secs:.1} s, {} close failures, {} \
         load processes exited badly; server: {opened} opened, {server_clean} closed cleanly, \
         {abnormal} abnormally, {refused_full} refused, {timed_out} timers expired (of \
         any kind: a wait for the FIN after a clean close counts but is no failure; \
         {pong_timeouts} of them pong timeouts), {left_open} still open at shutdown ({forced} \
         forced); io_uring receive ring found empty {recv_enobufs} times",
        closed.closed_cleanly, closed.close_failures, closed.exit_failures
    ));

    // Every sign of a failure, by kind; one failed connection may show under several kinds
    // (a refused connect is also a missed broadcast), so only zero means anything exact.
    let failures = json!({
        "connect": ramp.failed,
        "not_connected": n.saturating_sub(ramp.connected),
        "not_open_on_server": n.saturating_sub(open),
        "closed_by_server_during_hold": stats_after.closed_by_server,
        "lost_during_hold": stats_before.open.saturating_sub(stats_after.open),
        "broadcast_missed": n.saturating_sub(b.received),
        "broadcast_dropped": dropped,
        "close_failures": closed.close_failures,
        "not_closed_cleanly_by_client": n.saturating_sub(closed.closed_cleanly),
        "load_process_exit": closed.exit_failures,
        "server_closed_abnormally": abnormal,
        "server_refused_full": refused_full,
        "server_send_dropped": send_dropped,
        "server_open_at_shutdown": left_open,
    });
    let failures_total: u64 = failures
        .as_object()
        .expect("object")
        .values()
        .filter_map(|v| v.as_u64())
        .sum();
    say.line(format!("failures: {failures_total}"));

    // The C10M arithmetic at the measured figures.
    let ten_m = 10_000_000f64;
    let server_side = user_per_conn + kernel_per_conn;
    let processes_at_this_limit = (ten_m / per_process as f64).ceil();
    // Heartbeats at the engine's default interval (a ping per connection every 30 s).
    let us_per_ping = cpu * 1e6 / pings.max(1) as f64;
    let c10m_heartbeat_cores = ten_m / 30.0 * us_per_ping / 1e6;
    say.line(format!(
        "C10M on one host at these figures: 10,000,000 x ({user_per_conn:.0} B user + \
         ~{kernel_per_conn:.0} B kernel) = {:.1} GB for the server side ({:.2} GB of it in \
         throng's user space), plus 10,000,000 descriptors (fs.nr_open and LimitNOFILE >= \
         10,000,100, see tuning/; at this host's RLIMIT_NOFILE of {nofile} that would be \
         {processes_at_this_limit:.0} processes); heartbeats every 30 s (the engine's default): \
         333,333 pings/s x {us_per_ping:.1} us = {c10m_heartbeat_cores:.1} cores; this host has \
         {:.1} GB available now",
        server_side * ten_m / 1e9,
        user_per_conn * ten_m / 1e9,
        measure::mem_available() as f64 / 1e9
    ));

    if args.json {
        let report = json!({
            "connections": n,
            "backend": backend,
            "tls": args.tls,
            "server_processes": procs,
            "client_processes": load.processes(),
            "handshakes_per_s": handshakes_per_s.round(),
            "ramp_s": ramp.wall_seconds,
            "open_on_server": open,
            "user_bytes_per_conn": (user_per_conn * 10.0).round() / 10.0,
            "user_bytes_per_conn_after_broadcast": (user_per_conn_end * 10.0).round() / 10.0,
            "conn_record_bytes": CONN_RECORD_BYTES,
            "kernel_bytes_per_conn": kernel_per_conn.round(),
            "kernel_bytes_per_pair": kernel_per_pair.round(),
            "client_bytes_per_conn": client_per_conn.round(),
            "hold_s": (hold_secs * 100.0).round() / 100.0,
            "ping_interval_s": ping_interval,
            "pong_timeout_s": pong_timeout,
            "ping_period_s": (ping_period * 10.0).round() / 10.0,
            "pings_answered": pings,
            "heartbeat_cpu_pct": (heartbeat_cpu_pct * 100.0).round() / 100.0,
            "client_cpu_pct": (100.0 * client_cpu / hold_secs * 100.0).round() / 100.0,
            "broadcast_ms": (broadcast_ms * 100.0).round() / 100.0,
            "broadcast_server_cpu_ms": broadcast_server_cpu_ms.round(),
            "floor_broadcast_ms": floor.map(|f| (f.0 * 100.0).round() / 100.0),
            "floor_broadcast_server_cpu_ms": floor.map(|f| f.1.round()),
            "floor_broadcast_received": floor.map(|f| f.2),
            "broadcast_client_cpu_ms": broadcast_client_cpu_ms.round(),
            "subscribed": !args.no_subscribe,
            "spill_records_allocated": pool_end[3],
            "broadcast_received": b.received,
            "closed_cleanly": closed.closed_cleanly,
            "server_closed_cleanly": server_clean,
            "server_pong_timeouts": pong_timeouts,
            "server_recv_enobufs": recv_enobufs,
            "server_timers_expired": timed_out,
            "failures": failures_total,
            "failure_kinds": failures,
            "c10m_server_gb": (server_side * ten_m / 1e8).round() / 10.0,
            "c10m_heartbeat_cores": (c10m_heartbeat_cores * 100.0).round() / 100.0,
            "us_per_ping": (us_per_ping * 100.0).round() / 100.0,
        });
        println!("{report}");
    }
    Ok(failures_total)
}
