//! The C10M demo: hold as many idle WebSocket connections as this machine allows, and
//! measure what they cost.
//!
//! ```text
//! cargo run --release --example c10m -- --connections N [--backend auto|uring|epoll]
//!     [--hold SECS] [--ping-interval SECS] [--per-process N] [--json]
//! ```
//! Starts the engine (in several processes sharing the port through `SO_REUSEPORT` when
//! RLIMIT_NOFILE is below what one process needs), ramps N client connections with the
//! project's load generator (also spread over processes), holds them while the server
//! pings every connection, broadcasts one message to all, measures memory, closes
//! everything cleanly and reports failures. With `--json` the last line is one object.

mod clients;
mod measure;
mod server;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use throng::engine::BackendChoice;

struct Args {
    connections: usize,
    backend: BackendChoice,
    hold: u64,
    ping_interval: u64,
    per_process: usize,
    json: bool,
    /// Internal: run as one engine process on this port.
    serve: Option<u16>,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        connections: 100_000,
        backend: BackendChoice::Auto,
        hold: 30,
        ping_interval: 5,
        per_process: 15_000,
        json: false,
        serve: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--json" {
            a.json = true;
            continue;
        }
        let v = it.next().ok_or(format!("{flag} needs a value"))?;
        let bad = |_| format!("bad value for {flag}: {v}");
        match flag.as_str() {
            "--connections" => a.connections = v.parse().map_err(bad)?,
            "--backend" => a.backend = v.parse()?,
            "--hold" => a.hold = v.parse().map_err(bad)?,
            "--ping-interval" => a.ping_interval = v.parse().map_err(bad)?,
            "--per-process" => a.per_process = v.parse().map_err(bad)?,
            "--serve" => a.serve = Some(v.parse().map_err(bad)?),
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    Ok(a)
}

/// One engine process and its command pipe.
struct ServerProc {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<std::process::ChildStdout>,
}

impl ServerProc {
    fn ask(&mut self, command: &str) -> std::io::Result<String> {
        writeln!(self.stdin, "{command}")?;
        self.stdin.flush()?;
        self.read_line()
    }
    fn read_line(&mut self) -> std::io::Result<String> {
        let mut line = String::new();
        if self.stdout.read_line(&mut line)? == 0 {
            return Err(std::io::Error::other("server process exited"));
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

/// A free port on 127.0.0.1 for the server processes to share.
fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn progress(json: bool, msg: impl AsRef<str>) {
    // Progress goes to stderr with --json so stdout ends with exactly one JSON object.
    if json {
        eprintln!("{}", msg.as_ref());
    } else {
        println!("{}", msg.as_ref());
    }
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("c10m: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(port) = args.serve {
        let opts = server::Options {
            port,
            backend: args.backend,
            workers: 1,
            ping_interval: Duration::from_secs(args.ping_interval.max(1)),
        };
        return match server::run(opts) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("c10m server: {e}");
                ExitCode::FAILURE
            }
        };
    }
    match run(&args) {
        Ok(failures) if failures == 0 => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("c10m: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> std::io::Result<u64> {
    let json = args.json;
    let n = args.connections.max(1);
    let nofile = measure::raise_nofile() as usize;
    let per_process = args.per_process.min(nofile.saturating_sub(500)).max(1);
    let procs = n.div_ceil(per_process);
    let port = free_port()?;
    if procs > 1 {
        progress(
            json,
            format!(
                "RLIMIT_NOFILE is {nofile} here: one process holds at most about {per_process} connections, \
                 so the engine runs in {procs} processes sharing port {port} through SO_REUSEPORT"
            ),
        );
    }
    let mut servers = Vec::with_capacity(procs);
    let mut backend = String::new();
    for _ in 0..procs {
        let mut child = Command::new(std::env::current_exe()?)
            .args(["--serve", &port.to_string(), "--backend", backend_name(args.backend)])
            .args(["--ping-interval", &args.ping_interval.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let stdin = child.stdin.take().expect("piped");
        let stdout = BufReader::new(child.stdout.take().expect("piped"));
        let mut s = ServerProc { child, stdin, stdout };
        let ready = s.read_line()?;
        let mut words = ready.split_whitespace();
        if words.next() != Some("ready") {
            return Err(std::io::Error::other(format!("server process said {ready:?}")));
        }
        backend = words.nth(1).unwrap_or("?").to_owned();
        servers.push(s);
    }
    progress(json, format!("server: {procs} process(es), backend {backend}, port {port}, pings every {} s", args.ping_interval));

    let pids: Vec<u32> = servers.iter().map(|s| s.child.id()).collect();
    let rss_before: u64 = pids.iter().map(|&p| measure::rss_bytes(p)).sum();
    let slab_before = measure::slab_bytes();

    let url = format!("ws://127.0.0.1:{port}/");
    let mut load = clients::Clients::start(&url, n, json)?;
    let ramp = load.wait_ramped(Duration::from_secs(600))?;
    let handshakes_per_s = ramp.connected as f64 / ramp.seconds.max(1e-9);
    progress(json, format!("ramp: {} connected in {:.1} s ({:.0} handshakes/s), {} failed", ramp.connected, ramp.seconds, handshakes_per_s, ramp.failed));

    // Server-side count: every process answers for its own connections.
    let mut open = 0;
    for s in &mut servers {
        open += s.ask("count")?.split_whitespace().nth(1).and_then(|v| v.parse::<usize>().ok()).unwrap_or(0);
    }
    let rss_after: u64 = pids.iter().map(|&p| measure::rss_bytes(p)).sum();
    let slab_after = measure::slab_bytes();
    let user_per_conn = rss_after.saturating_sub(rss_before) as f64 / n as f64;
    let kernel_per_pair = slab_after.saturating_sub(slab_before) as f64 / n as f64;
    progress(json, format!("open on the server: {open}; user space {user_per_conn:.1} B/conn; kernel slab {kernel_per_pair:.0} B per connection pair (both ends are on this host)"));

    let cpu_before: f64 = pids.iter().map(|&p| measure::cpu_seconds(p)).sum();
    let held = Instant::now();
    progress(json, format!("holding {open} connections for {} s (server pings each every {} s)", args.hold, args.ping_interval));
    std::thread::sleep(Duration::from_secs(args.hold));
    let cpu = pids.iter().map(|&p| measure::cpu_seconds(p)).sum::<f64>() - cpu_before;
    let heartbeat_cpu_pct = 100.0 * cpu / held.elapsed().as_secs_f64();
    progress(json, format!("heartbeats: {heartbeat_cpu_pct:.1}% of one core over the hold"));

    let start_ns = clients::monotonic_ns();
    load.expect_broadcast(start_ns)?;
    let mut reached = 0;
    let mut dropped = 0;
    for s in &mut servers {
        writeln!(s.stdin, "broadcast 64")?;
        s.stdin.flush()?;
    }
    for s in &mut servers {
        let line = s.read_line()?;
        let v: Vec<usize> = line.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
        reached += v.first().copied().unwrap_or(0);
        dropped += v.get(1).copied().unwrap_or(0);
    }
    let outcome = load.finish(Duration::from_secs(120))?;
    progress(json, format!("broadcast: published to {reached} ({dropped} dropped); last client had it after {:.1} ms; {} clients got it", outcome.broadcast_ms, outcome.received));

    let mut clean = 0;
    let mut forced = 0;
    for s in &mut servers {
        let report = s.ask("quit")?;
        let v: Vec<usize> = report.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
        clean += v.get(1).copied().unwrap_or(0);
        forced += v.get(2).copied().unwrap_or(0);
        let _ = s.child.wait();
    }
    let failures = ramp.failed as u64
        + (n - outcome.received.min(n)) as u64
        + outcome.close_failures as u64
        + forced as u64
        + (n.saturating_sub(open)) as u64;
    progress(json, format!("closed: {} cleanly by the clients, {clean} more at server shutdown, {forced} forced; failures {failures}", outcome.closed_cleanly));

    let kernel_per_conn = kernel_per_pair / 2.0;
    let per_conn = user_per_conn + kernel_per_conn;
    progress(
        json,
        format!(
            "C10M arithmetic: 10,000,000 connections x ({user_per_conn:.0} B user + ~{kernel_per_conn:.0} B kernel, the server's half of a pair) \
             = {:.1} GB on one host, plus {:.0} descriptors (fs.nr_open / LimitNOFILE, see tuning/)",
            per_conn * 1e7 / 1e9,
            1e7
        ),
    );
    if json {
        println!(
            "{{\"connections\":{n},\"server_processes\":{procs},\"backend\":\"{backend}\",\"handshakes_per_s\":{handshakes_per_s:.0},\
             \"ramp_s\":{:.3},\"open_on_server\":{open},\"user_bytes_per_conn\":{user_per_conn:.1},\"kernel_bytes_per_conn\":{kernel_per_conn:.0},\
             \"kernel_bytes_per_pair\":{kernel_per_pair:.0},\"heartbeat_cpu_pct\":{heartbeat_cpu_pct:.2},\"hold_s\":{},\
             \"broadcast_ms\":{:.2},\"broadcast_received\":{},\"broadcast_dropped\":{dropped},\"closed_cleanly\":{},\"failures\":{failures}}}",
            ramp.seconds, args.hold, outcome.broadcast_ms, outcome.received, outcome.closed_cleanly + clean
        );
    }
    Ok(failures)
}

fn backend_name(b: BackendChoice) -> &'static str {
    match b {
        BackendChoice::Auto => "auto",
        BackendChoice::Uring => "uring",
        BackendChoice::Epoll => "epoll",
    }
}
