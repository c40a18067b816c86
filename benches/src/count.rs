//! `throng-bench count`: user-space instructions per echoed message, counted by callgrind,
//! for throng on both backends and the baselines. Instructions are repeatable where time
//! is not (a shared, noisy machine), so this is the measure a regression shows in.
//!
//! Per server, one process under `valgrind --tool=callgrind` (pinned to the server CPU),
//! and per message size:
//!
//! 1. warm-up: `throng-load echo` for a moment (code translated, pools grown), whose
//!    connections then close;
//! 2. `throng-load echo --child --hold-open --warmup 0` opens the connections and stops
//!    at `ready`; the server is idle; `callgrind_control --zero`;
//! 3. `go`: closed loop for the window; the load generator drains every answer and
//!    prints its report (the exact count of echoes) while the connections stay open;
//! 4. `callgrind_control --dump`: the dump holds exactly the window's work, between two
//!    idle points: no start-up, handshakes or closes;
//! 5. instructions in the dump / echoes in the report.
//!
//! All threads of the server process are counted, user space only (callgrind sees no
//! kernel work; the vDSO's clock reads run as system calls under valgrind).
//!
//! io_uring under valgrind 3.19: `io_uring_enter` is not one of the system calls valgrind
//! knows may block, so a thread waiting in it keeps valgrind's lock (every other thread of
//! the process stalls) and has signals blocked. A server whose worker waits for a
//! completion with nothing to come never lets its main thread print its address (the
//! harness connects to the port, which completes the accept), and SIGTERM/SIGINT are
//! never delivered, so the server never exits and writes no profile (what issue 19 saw).
//! The dumps here do not need an exit: vgdb reaches the process even then.

use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::callgrind::{self, FnCost, Profile};
use crate::report::group;
use crate::servers::{self, ServerKind};
use crate::sys::{self, Launch, ServerProcess, Started};

/// `GLIBC_TUNABLES` for the servers under callgrind: `rep movsb`/`rep stosb` only above
/// 1 GiB, i.e. never (see the module docs).
pub const STRING_TUNABLES: &str =
    "glibc.cpu.x86_rep_movsb_threshold=1073741824:glibc.cpu.x86_rep_stosb_threshold=1073741824";

/// The committed limits, `server size max` per line: `count` fails when throng's
/// instructions per message exceed them.
pub const LIMITS: &str = include_str!("../count-limits.txt");

/// A limit on a server's instructions per message at one size.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limit {
    /// The server.
    pub server: ServerKind,
    /// Message size (bytes).
    pub size: usize,
    /// Most instructions per echoed message.
    pub max: f64,
}

/// Reads limits: `server size max` per line, `#` comments.
pub fn parse_limits(text: &str) -> Result<Vec<Limit>, String> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split_whitespace().collect();
        let [server, size, max] = f[..] else {
            return Err(format!("line {}: expected `server size max`", n + 1));
        };
        let server = server.parse::<ServerKind>()?;
        let size = size
            .parse::<usize>()
            .map_err(|e| format!("line {}: size: {e}", n + 1))?;
        let max = max
            .parse::<f64>()
            .ok()
            .filter(|m| m.is_finite() && *m > 0.0)
            .ok_or_else(|| format!("line {}: max must be a positive number", n + 1))?;
        out.push(Limit { server, size, max });
    }
    Ok(out)
}

/// What `count` runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// Servers, in report order.
    pub servers: Vec<ServerKind>,
    /// Message sizes (bytes).
    pub sizes: Vec<usize>,
    /// Connections of the echo load.
    pub connections: usize,
    /// Length of the counted window.
    pub window: Duration,
    /// Length of the warm-up before each window.
    pub warmup: Duration,
    /// Functions listed per throng measurement (0: none).
    pub top: usize,
    /// Fewest echoes a window must count to be trusted.
    pub min_messages: u64,
    /// The `throng-bench` binary (for `serve`).
    pub server_exe: PathBuf,
    /// The `throng-load` binary.
    pub load_exe: PathBuf,
    /// Where the dumps go (kept for `callgrind_annotate`).
    pub out_dir: PathBuf,
    /// CPUs of the server.
    pub server_cpus: Vec<usize>,
    /// CPUs of the load generator (and of this harness).
    pub load_cpus: Vec<usize>,
    /// Limits to check (see [`LIMITS`]).
    pub limits: Vec<Limit>,
    /// Run the servers with [`STRING_TUNABLES`] (default), so that callgrind's count of a
    /// large copy is proportional to its work.
    pub vector_string_ops: bool,
    /// Print progress to stderr.
    pub progress: bool,
    /// The command line, for the report.
    pub command: String,
}

impl Options {
    /// The full count: every server, 64 B and 16 KiB, 100 connections, 4 s windows.
    pub fn full(server_exe: PathBuf, load_exe: PathBuf) -> Options {
        let cpus = sys::allowed_cpus();
        let (server_cpus, load_cpus) = if cpus.len() > 1 {
            (cpus[..1].to_vec(), cpus[1..].to_vec())
        } else {
            (cpus.clone(), cpus)
        };
        Options {
            servers: vec![
                ServerKind::ThrongUring,
                ServerKind::ThrongEpoll,
                ServerKind::Tungstenite,
                ServerKind::Fastws,
                ServerKind::Bun,
                ServerKind::Floor,
            ],
            sizes: vec![64, 16 << 10],
            connections: 100,
            window: Duration::from_secs(4),
            warmup: Duration::from_secs(1),
            top: 25,
            // Bun echoes about 2,000 a second under valgrind (it stalls: it is not busy).
            min_messages: 5_000,
            server_exe,
            load_exe,
            out_dir: PathBuf::from("target/throng-bench/count"),
            server_cpus,
            load_cpus,
            limits: parse_limits(LIMITS).expect("the committed limits parse (tested)"),
            vector_string_ops: true,
            progress: true,
            command: String::new(),
        }
    }

    /// The CI smoke: throng on both backends, a few thousand messages per window.
    pub fn smoke(server_exe: PathBuf, load_exe: PathBuf) -> Options {
        Options {
            servers: vec![ServerKind::ThrongUring, ServerKind::ThrongEpoll],
            window: Duration::from_millis(250),
            warmup: Duration::from_millis(250),
            top: 12,
            min_messages: 1_000,
            ..Options::full(server_exe, load_exe)
        }
    }
}

/// One server at one size.
#[derive(Debug, Clone)]
pub struct Measurement {
    /// The server.
    pub server: ServerKind,
    /// Message size (bytes).
    pub size: usize,
    /// Echoes in the window (the load generator's count).
    pub messages: u64,
    /// Window length (seconds).
    pub seconds: f64,
    /// Instructions the server executed in the window.
    pub instructions: u64,
    /// The dump.
    pub dump: PathBuf,
    /// The costliest functions by inclusive cost (thread entry points left out).
    pub top: Vec<FnCost>,
    /// The functions' own costs added up, and callgrind's sum of the dump's lines
    /// (`totals:`): equal when the dump was read right (a check on the reader).
    pub own_total: (u64, Option<u64>),
}

impl Measurement {
    /// Instructions per echoed message.
    pub fn per_message(&self) -> f64 {
        self.instructions as f64 / self.messages.max(1) as f64
    }
}

/// The outcome of `count`.
#[derive(Debug, Clone)]
pub struct Report {
    /// What was run.
    pub options: Options,
    /// Every measurement, in run order.
    pub measurements: Vec<Measurement>,
    /// Servers that could not run here, with the reason.
    pub unavailable: Vec<(ServerKind, String)>,
    /// Checks that failed (sanity and limits); empty: all passed.
    pub failures: Vec<String>,
    /// Checks that passed, for the report.
    pub passed: Vec<String>,
    /// `valgrind --version`.
    pub valgrind: String,
    /// Machine description (read before the harness pinned itself).
    pub machine: String,
    /// Wall time of the run.
    pub elapsed: Duration,
}

impl Report {
    /// The measurement of a server at a size.
    pub fn get(&self, server: ServerKind, size: usize) -> Option<&Measurement> {
        self.measurements
            .iter()
            .find(|m| m.server == server && m.size == size)
    }
}

/// A free loopback port (the server is told it, so the harness can connect before the
/// server says where it listens).
fn free_port() -> io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A `cpu_set_t` of `cpus`.
fn cpu_set(cpus: &[usize]) -> libc::cpu_set_t {
    // SAFETY: cpu_set_t is plain old data; all zeroes is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &c in cpus.iter().filter(|&&c| c < libc::CPU_SETSIZE as usize) {
        // SAFETY: c < CPU_SETSIZE, so CPU_SET writes inside the set.
        unsafe { libc::CPU_SET(c, &mut set) };
    }
    set
}

/// Reads lines of a child's stdout on a thread, so every wait has a deadline.
fn lines_of(child: &mut Child) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    if let Some(out) = child.stdout.take() {
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
    }
    rx
}

/// The next JSON line within `limit`.
fn next_json(rx: &mpsc::Receiver<String>, limit: Duration, what: &str) -> io::Result<Value> {
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    return Ok(v);
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("throng-load: no {what} within {limit:?}"),
                ));
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err(io::Error::other(format!(
                    "throng-load ended before its {what}"
                )));
            }
        }
    }
}

/// A `throng-load` process; killed and reaped if dropped while running.
struct LoadProcess {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
}

impl LoadProcess {
    fn spawn(
        load_exe: &Path,
        url: &str,
        conns: usize,
        size: usize,
        window: Duration,
        extra: &[&str],
    ) -> io::Result<LoadProcess> {
        let mut child = Command::new(load_exe)
            .args(["echo", "--url", url])
            .args(["--connections", &conns.to_string()])
            .args(["--size", &size.to_string()])
            .args(["--duration", &window.as_secs_f64().to_string()])
            .args(["--warmup", "0", "--json", "--open-timeout", "60"])
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", load_exe.display())))?;
        let lines = lines_of(&mut child);
        let stdin = child.stdin.take();
        Ok(LoadProcess {
            child,
            stdin,
            lines,
        })
    }

    /// Closes stdin (with `--hold-open`: the connections close) and waits for the exit.
    fn finish(mut self) -> io::Result<()> {
        self.stdin = None;
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.child.try_wait()?.is_none() {
            if Instant::now() >= deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "throng-load did not exit after its report",
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }
}

impl Drop for LoadProcess {
    fn drop(&mut self) {
        // Only our own child, by its handle.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// Checks a load report: every connection open, no errors, and (unless `lost_ok`)
/// nothing lost. Returns the echoes counted and the echoes lost.
fn check_load(v: &Value, conns: usize, lost_ok: bool) -> io::Result<(u64, u64)> {
    let n = |k: &str| v.get(k).and_then(Value::as_u64);
    let unclean = || io::Error::other(format!("the load run was not clean: {v}"));
    let lost = n("lost").ok_or_else(unclean)?;
    if n("open") != Some(conns as u64) || n("errors") != Some(0) || (lost > 0 && !lost_ok) {
        return Err(unclean());
    }
    let messages =
        n("messages").ok_or_else(|| io::Error::other(format!("no message count in {v}")))?;
    Ok((messages, lost))
}

fn say(o: &Options, what: std::fmt::Arguments<'_>) {
    if o.progress {
        eprintln!("{what}");
    }
}

/// Starts `server` under callgrind; `None`: it cannot run here (the reason is returned).
fn start(o: &Options, server: ServerKind, out: &Path) -> io::Result<Result<ServerProcess, String>> {
    let port = free_port()?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut command = Command::new("valgrind");
    command.args(callgrind::valgrind_args(out));
    if o.vector_string_ops {
        command.env("GLIBC_TUNABLES", STRING_TUNABLES);
    }
    match server {
        ServerKind::Bun => {
            let Some(bun) = servers::bun::command(addr) else {
                return Ok(Err(format!(
                    "Bun is not installed (run {})",
                    servers::bun::dir().join("install.sh").display()
                )));
            };
            command.arg(bun.get_program()).args(bun.get_args());
        }
        _ => {
            let cpus: Vec<String> = o.server_cpus.iter().map(|c| c.to_string()).collect();
            command
                .arg(&o.server_exe)
                .arg("serve")
                .args(server.serve_args())
                .args(["--threads", "1", "--addr", &addr.to_string()])
                .args(["--cpus", &cpus.join(",")]);
        }
    }
    let set = cpu_set(&o.server_cpus);
    let pin = !o.server_cpus.is_empty();
    // SAFETY: the closure runs in the child between fork and exec and makes one
    // async-signal-safe system call on a set built before the fork.
    unsafe {
        command.pre_exec(move || {
            if pin && libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    // A connect completes an io_uring worker's pending accept, so a worker that keeps
    // valgrind's lock in io_uring_enter lets the main thread print (see the module docs).
    let poke = move || {
        let _ = TcpStream::connect_timeout(&addr, Duration::from_millis(200));
    };
    let (process, started) = ServerProcess::launch(Launch {
        command,
        timeout: Duration::from_secs(90),
        poke: Some(&poke),
    })?;
    match (process, started) {
        (Some(p), Started::Listening(_)) => Ok(Ok(p)),
        (_, Started::Unavailable(why)) => Ok(Err(why)),
        (None, Started::Listening(_)) => unreachable!("a listening server has a process"),
    }
}

/// One size on a running server: warm-up, then the counted window.
fn measure(
    o: &Options,
    server: ServerKind,
    process: &mut ServerProcess,
    out: &Path,
    size: usize,
) -> io::Result<Measurement> {
    let url = format!("ws://{}/", process.addr);
    let pid = process.pid();
    let conns = o.connections;
    let answer = o.window + Duration::from_secs(60);

    // 1. Warm-up, connections closed at its end.
    let warm = LoadProcess::spawn(&o.load_exe, &url, conns, size, o.warmup, &[])?;
    let v = next_json(
        &warm.lines,
        o.warmup + Duration::from_secs(120),
        "warm-up report",
    )?;
    // The warm-up only has to run the code once; under valgrind a slow server (Bun's
    // JavaScript) may still owe a few echoes when its 2 s drain ends, and those count
    // as lost. Any of them the server still handles after the ramp's zeroing is a few
    // echoes' work against the window's hundred thousand. The window's report must have
    // none.
    let (_, lost) = check_load(&v, conns, true)?;
    if lost > 0 {
        say(
            o,
            format_args!("  warm-up: {lost} echoes still owed at its end"),
        );
    }
    warm.finish()?;

    // 2. Ramp, stop at ready, zero.
    let mut load = LoadProcess::spawn(
        &o.load_exe,
        &url,
        conns,
        size,
        o.window,
        &["--child", "--hold-open"],
    )?;
    let ready = next_json(&load.lines, Duration::from_secs(120), "ready line")?;
    if ready["event"] != "ready" || ready["open"].as_u64() != Some(conns as u64) {
        return Err(io::Error::other(format!(
            "the ramp did not open every connection: {ready}"
        )));
    }
    // The last 101 has been read by the client, but the server may still be returning
    // from the write that sent it: let it reach its wait.
    std::thread::sleep(Duration::from_millis(200));
    let before = callgrind::dumps(out).last().map_or(0, |d| d.0);
    callgrind::control(pid, "--zero", Duration::from_secs(30))?;

    // 3. The window; the report comes after the last echo, connections still open.
    let stdin = load.stdin.as_mut().expect("piped");
    writeln!(stdin, "go")?;
    stdin.flush()?;
    let v = next_json(&load.lines, answer, "report")?;
    let (messages, _) = check_load(&v, conns, false)?;

    // 4. Dump, then let the connections close.
    let reason = format!("{}-{size}", server.id());
    callgrind::control(pid, &format!("--dump={reason}"), Duration::from_secs(30))?;
    load.finish()?;
    let dump = callgrind::dumps(out)
        .into_iter()
        .rev()
        .find(|d| d.0 > before)
        .map(|d| d.1)
        .ok_or_else(|| io::Error::other(format!("no new dump of {}", out.display())))?;
    let kept = out.with_file_name(format!("{reason}.callgrind"));
    std::fs::rename(&dump, &kept)?;
    let profile = Profile::read(&kept)?;
    let top = profile
        .functions
        .iter()
        .filter(|f| (f.inclusive as f64) < 0.99 * profile.total as f64)
        .take(o.top)
        .cloned()
        .collect();
    Ok(Measurement {
        server,
        size,
        messages,
        seconds: v["seconds"].as_f64().unwrap_or(0.0),
        instructions: profile.total,
        dump: kept,
        top,
        own_total: (
            profile.functions.iter().map(|f| f.own).sum(),
            profile.totals,
        ),
    })
}

/// Runs the whole count.
pub fn run(options: Options) -> io::Result<Report> {
    let began = Instant::now();
    let valgrind = callgrind::available().map_err(io::Error::other)?;
    if !options.load_exe.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!(
                "{} not found: build it (cargo build --release -p throng-load)",
                options.load_exe.display()
            ),
        ));
    }
    std::fs::create_dir_all(&options.out_dir)?;
    let machine = format!(
        "{} ({} CPUs), Linux {}",
        sys::cpu_model(),
        sys::allowed_cpus().len(),
        sys::kernel()
    );
    // This harness, the load generator and callgrind_control stay off the server CPU.
    let _ = sys::pin_to(&options.load_cpus);
    let mut measurements = Vec::new();
    let mut unavailable = Vec::new();
    if options.servers.contains(&ServerKind::Bun)
        && let Err(why) = servers::bun::install(Duration::from_secs(300))
    {
        unavailable.push((ServerKind::Bun, why));
    }
    for &server in &options.servers {
        if unavailable.iter().any(|(u, _)| *u == server) {
            continue;
        }
        let out = options.out_dir.join(format!("{}.out", server.id()));
        for (_, old) in callgrind::dumps(&out) {
            let _ = std::fs::remove_file(old);
        }
        say(&options, format_args!("{server}: starting under callgrind"));
        let mut process = match start(&options, server, &out)? {
            Ok(p) => p,
            Err(why) => {
                say(
                    &options,
                    format_args!("  {server}: not available here: {why}"),
                );
                unavailable.push((server, why));
                continue;
            }
        };
        for &size in &options.sizes {
            let m = measure(&options, server, &mut process, &out, size).map_err(|e| {
                let stderr = process.kill_and_stderr();
                let tail: String = stderr.lines().rev().take(5).collect::<Vec<_>>().join(" / ");
                io::Error::new(
                    e.kind(),
                    format!("{server}, {size} B: {e} (server stderr, last lines: {tail})"),
                )
            })?;
            say(
                &options,
                format_args!(
                    "  {size} B: {} instructions / {} echoes = {:.0} per message ({})",
                    group(m.instructions),
                    group(m.messages),
                    m.per_message(),
                    m.dump.display()
                ),
            );
            measurements.push(m);
        }
        // Dropping the process kills it (SIGKILL): the dumps are all that is wanted.
        drop(process);
        let _ = std::fs::remove_file(&out);
    }
    let mut report = Report {
        options,
        measurements,
        unavailable,
        failures: Vec::new(),
        passed: Vec::new(),
        valgrind,
        machine,
        elapsed: Duration::ZERO,
    };
    check(&mut report);
    report.elapsed = began.elapsed();
    Ok(report)
}

/// The checks: sane numbers, and throng within its limits.
fn check(report: &mut Report) {
    let o = &report.options;
    let (mut failed, mut passed) = (Vec::new(), Vec::new());
    for m in &report.measurements {
        let what = format!("{} {} B", m.server.id(), m.size);
        if m.messages < o.min_messages {
            failed.push(format!(
                "{what}: only {} echoes counted (at least {} wanted)",
                m.messages, o.min_messages
            ));
        }
        // Decoding, answering and writing a message cannot take fewer than ~50
        // instructions; over 10 million the window held something else.
        let per = m.per_message();
        if !(50.0..=1e7).contains(&per) {
            failed.push(format!(
                "{what}: {per:.0} instructions per message is not plausible"
            ));
        }
        if Some(m.own_total.0) != m.own_total.1 {
            failed.push(format!(
                "{what}: the functions' costs add up to {}, the dump's totals line says {:?}",
                m.own_total.0, m.own_total.1
            ));
        }
        if let Some(l) = o
            .limits
            .iter()
            .find(|l| l.server == m.server && l.size == m.size)
        {
            let text = format!(
                "{what}: {per:.0} instructions per message, limit {:.0}",
                l.max
            );
            if per > l.max {
                failed.push(format!(
                    "{text}: over the limit (benches/count-limits.txt, or the file given with --limits)"
                ));
            } else {
                passed.push(text);
            }
        }
    }
    // A larger message costs at least the work on its bytes (unmask, UTF-8 check).
    for &server in &o.servers {
        let per: Vec<(usize, f64)> = o
            .sizes
            .iter()
            .filter_map(|&s| report.get(server, s).map(|m| (s, m.per_message())))
            .collect();
        for w in per.windows(2) {
            let ((s0, p0), (s1, p1)) = (w[0], w[1]);
            if s1 > s0 && p1 <= p0 {
                failed.push(format!(
                    "{}: {s1} B messages cost {p1:.0} instructions, not more than {s0} B ({p0:.0})",
                    server.id()
                ));
            }
        }
    }
    for s in &o.servers {
        if matches!(s, ServerKind::ThrongUring | ServerKind::ThrongEpoll)
            && let Some((_, why)) = report.unavailable.iter().find(|(u, _)| u == s)
        {
            failed.push(format!("{}: not measured: {why}", s.id()));
        }
    }
    report.failures = failed;
    report.passed = passed;
}

fn size_label(n: usize) -> String {
    if n >= 1024 && n.is_multiple_of(1024) {
        format!("{} KiB", n / 1024)
    } else {
        format!("{n} B")
    }
}

/// The report as markdown: the table, the method, the checks, the top functions.
pub fn markdown(report: &Report) -> String {
    use std::fmt::Write as _;
    let o = &report.options;
    let mut out = String::new();
    let _ = writeln!(out, "Command: `{}`  ", o.command);
    let _ = writeln!(
        out,
        "Machine: {}; {}, callgrind.  ",
        report.machine, report.valgrind
    );
    let _ = writeln!(
        out,
        "Method: each server one process under callgrind pinned to CPU {:?} (throng: 1 worker; Tokio servers: 1 runtime worker), `throng-load echo` on CPU {:?}: {} connections, closed loop, text messages, {:.2} s window after a {:.2} s warm-up run. \
         Counted from `callgrind_control --zero` once the connections are open to `--dump` after the last echo, connections held open (`--hold-open`): no start-up, handshakes or closes. \
         All threads of the server, user space only; {}. Run took {:.0} s.\n",
        o.server_cpus,
        o.load_cpus,
        o.connections,
        o.window.as_secs_f64(),
        o.warmup.as_secs_f64(),
        if o.vector_string_ops {
            format!(
                "`GLIBC_TUNABLES={STRING_TUNABLES}` (large copies in glibc's vector loop, not `rep movsb`, which callgrind counts per byte)"
            )
        } else {
            "glibc's own string operations (`rep movsb` above its threshold, counted per byte)"
                .to_owned()
        },
        report.elapsed.as_secs_f64()
    );
    out.push_str("Instructions per echoed message:\n\n| server |");
    for &s in &o.sizes {
        let _ = write!(out, " {} |", size_label(s));
    }
    out.push_str("\n|---|");
    for _ in &o.sizes {
        out.push_str("--:|");
    }
    out.push('\n');
    for &server in &o.servers {
        if report.unavailable.iter().any(|(u, _)| *u == server) {
            continue;
        }
        let _ = write!(out, "| {} |", server.label());
        for &s in &o.sizes {
            match report.get(server, s) {
                Some(m) => {
                    let _ = write!(out, " {} |", group(m.per_message().round() as u64));
                }
                None => out.push_str(" n/a |"),
            }
        }
        out.push('\n');
    }
    out.push_str("\n| server | size | echoes counted | window (s) | instructions | per message |\n|---|--:|--:|--:|--:|--:|\n");
    for m in &report.measurements {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.2} | {} | {:.1} |",
            m.server.label(),
            size_label(m.size),
            group(m.messages),
            m.seconds,
            group(m.instructions),
            m.per_message()
        );
    }
    for (s, why) in &report.unavailable {
        let _ = writeln!(out, "\n{} was not measured: {why}", s.label());
    }
    out.push('\n');
    for p in &report.passed {
        let _ = writeln!(out, "- ok: {p}");
    }
    for f in &report.failures {
        let _ = writeln!(out, "- **FAILED**: {f}");
    }
    for m in report
        .measurements
        .iter()
        .filter(|m| matches!(m.server, ServerKind::ThrongUring | ServerKind::ThrongEpoll))
        .filter(|m| !m.top.is_empty())
    {
        let _ = writeln!(
            out,
            "\n{}, {}: costliest functions, instructions per message (`callgrind_annotate --inclusive=yes {}` for lines)\n\n| inclusive | own | function |\n|--:|--:|---|",
            m.server.label(),
            size_label(m.size),
            m.dump.display()
        );
        let per = |x: u64| x as f64 / m.messages.max(1) as f64;
        for f in &m.top {
            let _ = writeln!(
                out,
                "| {:.1} | {:.1} | `{}` |",
                per(f.inclusive),
                per(f.own),
                f.name.replace('|', "\\|")
            );
        }
    }
    out
}

/// The report as JSON.
pub fn json(report: &Report) -> Value {
    let o = &report.options;
    json!({
        "command": o.command,
        "valgrind": report.valgrind,
        "machine": report.machine,
        "connections": o.connections,
        "window_s": o.window.as_secs_f64(),
        "warmup_s": o.warmup.as_secs_f64(),
        "server_cpus": o.server_cpus,
        "load_cpus": o.load_cpus,
        "elapsed_s": report.elapsed.as_secs_f64(),
        "glibc_tunables": if o.vector_string_ops { Some(STRING_TUNABLES) } else { None },
        "measurements": report.measurements.iter().map(|m| json!({
            "server": m.server.id(),
            "size": m.size,
            "messages": m.messages,
            "seconds": m.seconds,
            "instructions": m.instructions,
            "per_message": m.per_message(),
            "dump": m.dump.display().to_string(),
            "top": m.top.iter().map(|f| json!({
                "function": f.name,
                "inclusive_per_message": f.inclusive as f64 / m.messages.max(1) as f64,
                "own_per_message": f.own as f64 / m.messages.max(1) as f64,
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "unavailable": report.unavailable.iter().map(|(s, why)| json!({"server": s.id(), "reason": why})).collect::<Vec<_>>(),
        "passed": report.passed,
        "failures": report.failures,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_committed_limits_parse_and_cover_throng() {
        let limits = parse_limits(LIMITS).expect("count-limits.txt parses");
        for server in [ServerKind::ThrongUring, ServerKind::ThrongEpoll] {
            for size in [64, 16 << 10] {
                assert!(
                    limits.iter().any(|l| l.server == server && l.size == size),
                    "no limit for {server} at {size} B"
                );
            }
        }
    }

    #[test]
    fn bad_limits_are_errors() {
        for bad in [
            "throng-epoll 64",
            "throng-epoll 64 100 7",
            "nginx 64 100",
            "throng-epoll x 100",
            "throng-epoll 64 -3",
            "throng-epoll 64 nan",
        ] {
            assert!(parse_limits(bad).is_err(), "{bad:?} accepted");
        }
        let l = parse_limits("# c\n\nthrong-uring 64 1500 # why\n").expect("parses");
        assert_eq!(
            l,
            vec![Limit {
                server: ServerKind::ThrongUring,
                size: 64,
                max: 1500.0
            }]
        );
    }

    fn report_with(per: &[(ServerKind, usize, u64)]) -> Report {
        let mut o = Options::smoke(PathBuf::new(), PathBuf::new());
        o.limits = parse_limits("throng-epoll 64 1000\nthrong-epoll 16384 5000").unwrap();
        o.servers = vec![ServerKind::ThrongEpoll];
        Report {
            options: o,
            measurements: per
                .iter()
                .map(|&(server, size, instructions)| Measurement {
                    server,
                    size,
                    messages: 10_000,
                    seconds: 1.0,
                    instructions,
                    dump: PathBuf::new(),
                    top: Vec::new(),
                    own_total: (instructions, Some(instructions)),
                })
                .collect(),
            unavailable: vec![(ServerKind::ThrongUring, "no io_uring".into())],
            failures: Vec::new(),
            passed: Vec::new(),
            valgrind: String::new(),
            machine: String::new(),
            elapsed: Duration::ZERO,
        }
    }

    #[test]
    fn checks_fail_over_the_limit_and_on_implausible_numbers() {
        let e = ServerKind::ThrongEpoll;
        let mut r = report_with(&[(e, 64, 9_000_000), (e, 16384, 40_000_000)]);
        check(&mut r);
        assert_eq!(r.failures.len(), 0, "{:?}", r.failures);
        assert_eq!(r.passed.len(), 2);

        let mut r = report_with(&[(e, 64, 10_100_000), (e, 16384, 40_000_000)]);
        check(&mut r);
        assert!(
            r.failures.iter().any(|f| f.contains("over the limit")),
            "{:?}",
            r.failures
        );

        // 16 KiB no dearer than 64 B, and 10 instructions a message: both wrong.
        let mut r = report_with(&[(e, 64, 9_000_000), (e, 16384, 100_000)]);
        check(&mut r);
        assert!(
            r.failures.iter().any(|f| f.contains("not more than")),
            "{:?}",
            r.failures
        );
        assert!(
            r.failures.iter().any(|f| f.contains("not plausible")),
            "{:?}",
            r.failures
        );

        // A dump read wrong (own costs not adding up to its summary) fails.
        let mut r = report_with(&[(e, 64, 9_000_000), (e, 16384, 40_000_000)]);
        r.measurements[0].own_total.0 -= 1;
        check(&mut r);
        assert!(
            r.failures.iter().any(|f| f.contains("add up")),
            "{:?}",
            r.failures
        );

        // A throng backend asked for and not measured is a failure too.
        let mut r = report_with(&[]);
        r.options.servers.push(ServerKind::ThrongUring);
        check(&mut r);
        assert!(
            r.failures.iter().any(|f| f.contains("not measured")),
            "{:?}",
            r.failures
        );
    }
}
