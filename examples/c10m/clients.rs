//! The client side of the demo: the project's load generator (`throng-load hold`, package
//! `throng-load`) driven through its command line, in as many processes as RLIMIT_NOFILE
//! requires.
//!
//! Contract (one process):
//! `throng-load hold --url URL --connections N [--source-offset K] [--open-window W]
//! [--open-timeout SECS] [--cafile PEM]` (URL `ws://` or `wss://`) opens N connections from source addresses 127.0.0.2..250 and
//! answers pings. Stdout carries JSON lines: `{"event":"progress","connected":n,"failed":f}`
//! while ramping, then `{"event":"ramped","connected":n,"failed":f,"seconds":s}`. Commands
//! on stdin, one per line: `expect-broadcast` -> `{"event":"broadcast","received":n,
//! "first_ns":t0,"last_ns":t}` (CLOCK_MONOTONIC); `stats` -> `{"event":"stats","open":n,
//! "pings_answered":p,"closed_by_server":c}`; `close` (or EOF) -> `{"event":"closed",
//! "closed_cleanly":n,"close_failures":f}`, then the process exits 0.

use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Options passed through to every load process.
pub struct Options {
    /// Client process i connects to `urls[i % len]` (a server process each).
    pub urls: Vec<String>,
    /// `wss://`: the certificate the clients trust.
    pub cafile: Option<PathBuf>,
    pub connections: usize,
    pub per_process: usize,
    pub open_window: Option<usize>,
    pub open_timeout: Option<u64>,
}

/// The ramp, summed over the processes.
#[derive(Debug, Default, Clone, Copy)]
pub struct Ramp {
    pub connected: usize,
    pub failed: usize,
    /// The slowest process's own ramp time.
    pub seconds: f64,
    /// From spawning the first process to the last `ramped` line (what the rate uses).
    pub wall_seconds: f64,
}

/// `stats`, summed over the processes.
#[derive(Debug, Default, Clone, Copy)]
pub struct Stats {
    pub open: usize,
    pub pings_answered: u64,
    pub closed_by_server: usize,
}

/// `expect-broadcast`, over the processes: how many clients had the message, and when the
/// first and the last did (CLOCK_MONOTONIC ns).
#[derive(Debug, Default, Clone, Copy)]
pub struct Broadcast {
    pub received: usize,
    pub first_ns: u64,
    pub last_ns: u64,
}

/// `close`, summed over the processes; `exit_failures` counts processes that did not
/// exit with status 0.
#[derive(Debug, Default, Clone, Copy)]
pub struct Closed {
    pub closed_cleanly: usize,
    pub close_failures: usize,
    pub exit_failures: usize,
}

enum Line {
    Event(Value),
    Eof,
}

struct LoadProc {
    child: Child,
    stdin: Option<ChildStdin>,
    connections: usize,
    /// Latest progress seen: connected, failed.
    progress: (usize, usize),
    /// Its stdout has ended.
    exited: bool,
}

/// The load processes and the merged stream of their stdout lines.
pub struct Clients {
    procs: Vec<LoadProc>,
    lines: Receiver<(usize, Line)>,
    started: Instant,
}

/// CLOCK_MONOTONIC now, in nanoseconds: the clock the load processes stamp with.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out pointer; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The `throng-load` executable: `$THRONG_LOAD` if set, else next to this example's
/// target directory (`target/<profile>/examples/c10m` -> `target/<profile>/throng-load`),
/// built there with cargo when missing.
pub fn locate_load_binary(say: &dyn Fn(String)) -> io::Result<PathBuf> {
    if let Some(p) = std::env::var_os("THRONG_LOAD") {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(io::Error::other(format!(
                "THRONG_LOAD={} is not a file",
                p.display()
            )))
        };
    }
    let exe = std::env::current_exe()?;
    // target/<profile>/examples/c10m -> target/<profile>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .ok_or_else(|| io::Error::other("cannot place this executable in a target directory"))?;
    let bin = profile_dir.join("throng-load");
    if bin.is_file() {
        return Ok(bin);
    }
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => "dev".to_owned(),
        Some(p) => p.to_owned(),
        None => "release".to_owned(),
    };
    let target_dir = profile_dir.parent().unwrap_or(profile_dir);
    say(format!(
        "the load generator is not built ({} is missing): running \
         `cargo build --profile {profile} -p throng-load` (build it yourself with \
         `cargo build --release -p throng-load`, or point THRONG_LOAD at it)",
        bin.display()
    ));
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--profile", &profile, "-p", "throng-load", "--bin"])
        .arg("throng-load")
        .arg("--target-dir")
        .arg(target_dir)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(Stdio::null())
        .status()
        .map_err(|e| io::Error::other(format!("cannot run cargo to build throng-load: {e}")))?;
    if !status.success() || !bin.is_file() {
        return Err(io::Error::other(format!(
            "building throng-load failed ({status}); build it with \
             `cargo build --release -p throng-load`"
        )));
    }
    Ok(bin)
}

impl Clients {
    /// Spawns the load processes (as many as `per_process` requires) and starts their ramp.
    pub fn start(bin: &Path, opts: &Options) -> io::Result<Clients> {
        let n = opts.connections;
        let procs = n.div_ceil(opts.per_process.max(1)).max(1);
        let (tx, lines) = mpsc::channel();
        let started = Instant::now();
        let mut out = Vec::with_capacity(procs);
        for i in 0..procs {
            // Even shares: the first `n % procs` processes take one more.
            let share = n / procs + usize::from(i < n % procs);
            let mut cmd = Command::new(bin);
            let url = &opts.urls[i % opts.urls.len().max(1)];
            cmd.args(["hold", "--url", url])
                .args(["--connections", &share.to_string()])
                .args(["--source-offset", &i.to_string()]);
            if let Some(ca) = &opts.cafile {
                cmd.arg("--cafile").arg(ca);
            }
            if let Some(w) = opts.open_window {
                cmd.args(["--open-window", &w.to_string()]);
            }
            if let Some(t) = opts.open_timeout {
                cmd.args(["--open-timeout", &t.to_string()]);
            }
            let mut child = cmd
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .map_err(|e| io::Error::other(format!("cannot start {}: {e}", bin.display())))?;
            let stdout = child.stdout.take().expect("piped");
            let tx = tx.clone();
            std::thread::Builder::new()
                .name(format!("load-{i}"))
                .spawn(move || {
                    for line in BufReader::new(stdout).lines() {
                        let Ok(line) = line else { break };
                        let event = serde_json::from_str::<Value>(line.trim())
                            .ok()
                            .filter(|v| v.get("event").is_some());
                        if let Some(v) = event {
                            if tx.send((i, Line::Event(v))).is_err() {
                                return;
                            }
                        } else if !line.trim().is_empty() {
                            // Anything else is the generator talking to a person.
                            eprintln!("[load {i}] {line}");
                        }
                    }
                    let _ = tx.send((i, Line::Eof));
                })?;
            out.push(LoadProc {
                stdin: child.stdin.take(),
                child,
                connections: share,
                progress: (0, 0),
                exited: false,
            });
        }
        Ok(Clients {
            procs: out,
            lines,
            started,
        })
    }

    /// Number of load processes.
    pub fn processes(&self) -> usize {
        self.procs.len()
    }

    /// Their process ids (for CPU and memory readings).
    pub fn pids(&self) -> Vec<u32> {
        self.procs.iter().map(|p| p.child.id()).collect()
    }

    /// Waits until every process has reported `ramped`, calling `progress(connected,
    /// failed)` about once a second.
    pub fn wait_ramped(
        &mut self,
        timeout: Duration,
        mut progress: impl FnMut(usize, usize),
    ) -> io::Result<Ramp> {
        let mut ramp = Ramp::default();
        let mut done = vec![false; self.procs.len()];
        let mut last_report = Instant::now();
        self.collect("ramped", timeout, |this, i, v| {
            if let Some(c) = u(v, "connected") {
                this.procs[i].progress.0 = c;
            }
            if let Some(f) = u(v, "failed") {
                this.procs[i].progress.1 = f;
            }
            if v["event"] == "ramped" {
                done[i] = true;
                ramp.connected += u(v, "connected").unwrap_or(0);
                ramp.failed += u(v, "failed").unwrap_or(0);
                ramp.seconds = ramp.seconds.max(v["seconds"].as_f64().unwrap_or(0.0));
                ramp.wall_seconds = this.started.elapsed().as_secs_f64();
            }
            if last_report.elapsed() >= Duration::from_secs(1) {
                last_report = Instant::now();
                let (c, f) = this
                    .procs
                    .iter()
                    .fold((0, 0), |a, p| (a.0 + p.progress.0, a.1 + p.progress.1));
                progress(c, f);
            }
        })?;
        Ok(ramp)
    }

    /// Asks every process for its counters.
    pub fn stats(&mut self, timeout: Duration) -> io::Result<Stats> {
        self.command("stats")?;
        let mut s = Stats::default();
        self.collect("stats", timeout, |_, _, v| {
            if v["event"] == "stats" {
                s.open += u(v, "open").unwrap_or(0);
                s.pings_answered += v["pings_answered"].as_u64().unwrap_or(0);
                s.closed_by_server += u(v, "closed_by_server").unwrap_or(0);
            }
        })?;
        Ok(s)
    }

    /// Tells every process to watch for the broadcast (before it is published).
    pub fn expect_broadcast(&mut self) -> io::Result<()> {
        self.command("expect-broadcast")
    }

    /// Waits for every process's `broadcast` report.
    pub fn wait_broadcast(&mut self, timeout: Duration) -> io::Result<Broadcast> {
        let mut b = Broadcast {
            first_ns: u64::MAX,
            ..Broadcast::default()
        };
        self.collect("broadcast", timeout, |_, _, v| {
            if v["event"] == "broadcast" {
                let received = u(v, "received").unwrap_or(0);
                b.received += received;
                if received > 0 {
                    b.first_ns = b.first_ns.min(v["first_ns"].as_u64().unwrap_or(u64::MAX));
                    b.last_ns = b.last_ns.max(v["last_ns"].as_u64().unwrap_or(0));
                }
            }
        })?;
        if b.first_ns == u64::MAX {
            b.first_ns = 0;
        }
        Ok(b)
    }

    /// Closes every connection from the client side and waits for the processes to exit.
    /// At most `at_once` processes close at the same time: a process gives up on its
    /// close handshakes once none has finished for 30 s, and a million closing together on
    /// two shared cores starve some processes that long.
    pub fn close(&mut self, timeout: Duration, at_once: usize) -> io::Result<Closed> {
        let procs = self.procs.len();
        let mut next = 0;
        while next < procs.min(at_once.max(1)) {
            self.close_one(next)?;
            next += 1;
        }
        let mut c = Closed::default();
        let mut failed = None;
        self.collect("closed", timeout, |this, _, v| {
            if v["event"] == "closed" {
                c.closed_cleanly += u(v, "closed_cleanly").unwrap_or(0);
                c.close_failures += u(v, "close_failures").unwrap_or(0);
                if next < procs {
                    if let Err(e) = this.close_one(next) {
                        failed.get_or_insert(e);
                    }
                    next += 1;
                }
            }
        })?;
        if let Some(e) = failed {
            return Err(e);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        for p in &mut self.procs {
            let status = loop {
                match p.child.try_wait()? {
                    Some(s) => break Some(s),
                    None if Instant::now() >= deadline => break None,
                    None => std::thread::sleep(Duration::from_millis(20)),
                }
            };
            if !status.is_some_and(|s| s.success()) {
                c.exit_failures += 1;
            }
        }
        Ok(c)
    }

    /// Sends `close` to process `i`, then EOF (a generator that only watches for EOF
    /// finishes too).
    fn close_one(&mut self, i: usize) -> io::Result<()> {
        if let Some(mut stdin) = self.procs[i].stdin.take() {
            writeln!(stdin, "close")
                .and_then(|()| stdin.flush())
                .map_err(|e| io::Error::other(format!("load process {i}: close: {e}")))?;
        }
        Ok(())
    }

    /// Connections assigned to all processes.
    pub fn assigned(&self) -> usize {
        self.procs.iter().map(|p| p.connections).sum()
    }

    fn command(&mut self, cmd: &str) -> io::Result<()> {
        for (i, p) in self.procs.iter_mut().enumerate() {
            let Some(stdin) = p.stdin.as_mut() else {
                continue;
            };
            writeln!(stdin, "{cmd}")
                .and_then(|()| stdin.flush())
                .map_err(|e| io::Error::other(format!("load process {i}: {cmd}: {e}")))?;
        }
        Ok(())
    }

    /// Reads lines until every process has sent an `event` of kind `kind`; `on` sees every
    /// event. Fails when a process exits first or `timeout` passes.
    fn collect(
        &mut self,
        kind: &str,
        timeout: Duration,
        mut on: impl FnMut(&mut Self, usize, &Value),
    ) -> io::Result<()> {
        if let Some(i) = self.procs.iter().position(|p| p.exited) {
            return Err(io::Error::other(format!(
                "load process {i} has exited; cannot wait for {kind:?}"
            )));
        }
        let deadline = Instant::now() + timeout;
        let mut seen = vec![false; self.procs.len()];
        let mut left = self.procs.len();
        while left > 0 {
            let wait = deadline
                .saturating_duration_since(Instant::now())
                .min(Duration::from_millis(500));
            match self.lines.recv_timeout(wait) {
                Ok((i, Line::Event(v))) => {
                    on(self, i, &v);
                    if v["event"] == kind && !seen[i] {
                        seen[i] = true;
                        left -= 1;
                    }
                }
                Ok((i, Line::Eof)) => {
                    self.procs[i].exited = true;
                    if !seen[i] {
                        let status = self.procs[i].child.wait()?;
                        return Err(io::Error::other(format!(
                            "load process {i} exited ({status}) before reporting {kind:?}"
                        )));
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    // `on` also drives progress reports while nothing arrives.
                    on(self, 0, &Value::Null);
                    if Instant::now() >= deadline {
                        return Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            format!(
                                "{left} load process(es) did not report {kind:?} within {} s",
                                timeout.as_secs()
                            ),
                        ));
                    }
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(io::Error::other("every load process has exited"));
                }
            }
        }
        Ok(())
    }
}

impl Drop for Clients {
    fn drop(&mut self) {
        // Only our own children, by handle; a clean run has already seen them exit.
        for p in &mut self.procs {
            p.stdin = None;
            if let Ok(None) = p.child.try_wait() {
                let _ = p.child.kill();
            }
            let _ = p.child.wait();
        }
    }
}

fn u(v: &Value, key: &str) -> Option<usize> {
    v.get(key)?.as_u64().map(|x| x as usize)
}
