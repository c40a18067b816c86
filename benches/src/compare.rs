//! The comparison: which figures, how big, in what order, and the bookkeeping of results.
//!
//! Every measurement starts a fresh server process (so memory readings start clean and
//! no run inherits another's state), and servers take turns within each round
//! (A B C D, then B C D A, ...), so drift over the run (thermal, page cache, other
//! tenants) spreads over all of them instead of favouring one.

use std::io;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::servers::ServerKind;
use crate::sys::{self, ServerProcess, Started};
use throng_load::measure::{self as client, Load, Target, Window};

/// How long and how large.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// The full comparison (5 rounds; about 15 minutes on 2 CPUs).
    Full,
    /// Every figure once, short windows (under 3 minutes on 2 CPUs).
    Quick,
    /// A tiny configuration that only proves every server answers every figure.
    Smoke,
}

/// The sizes and lengths of every measurement.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Times each server is measured per figure (the median is reported).
    pub rounds: usize,
    /// Windows of the throughput figures.
    pub window: Window,
    /// Echo message sizes.
    pub echo_sizes: Vec<usize>,
    /// Echo connection counts.
    pub echo_conns: Vec<usize>,
    /// Connections of the latency figure.
    pub latency_conns: usize,
    /// Message size of the latency figure.
    pub latency_size: usize,
    /// Fraction of the slowest server's echo rate the latency figure runs at.
    pub latency_load: f64,
    /// A fixed rate for the latency figure instead of a fraction of the slowest echo.
    pub latency_rate: Option<f64>,
    /// Window of the latency figure.
    pub latency_window: Window,
    /// Idle connections of the memory figure.
    pub idle_conns: usize,
    /// Settling time before the memory reading.
    pub idle_settle: Duration,
    /// Handshakes in progress at once.
    pub handshake_concurrency: usize,
    /// Members of the broadcast.
    pub broadcast_members: usize,
    /// Broadcast message size.
    pub broadcast_size: usize,
    /// Broadcasts timed per server and round.
    pub broadcast_repeats: usize,
    /// Pub/sub subscribers (K).
    pub pubsub_subscribers: usize,
    /// Pub/sub publishers.
    pub pubsub_publishers: usize,
    /// Pub/sub message size.
    pub pubsub_size: usize,
    /// Figure groups to run (`echo`, `latency`, `memory`, `handshakes`, `broadcast`,
    /// `pubsub`); empty: all.
    pub only: Vec<String>,
}

impl Plan {
    /// Whether a figure group is part of the run.
    pub fn runs(&self, group: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|g| g == group)
    }
}

impl Plan {
    /// The plan of a profile.
    pub fn of(profile: Profile) -> Plan {
        let full = Plan {
            rounds: 5,
            window: Window {
                warmup: Duration::from_millis(1000),
                measure: Duration::from_secs(3),
            },
            echo_sizes: vec![64, 16 << 10],
            echo_conns: vec![100, 1_000, 10_000],
            latency_conns: 1_000,
            latency_size: 64,
            latency_load: 0.5,
            latency_rate: None,
            latency_window: Window {
                warmup: Duration::from_millis(1000),
                measure: Duration::from_secs(5),
            },
            idle_conns: 15_000,
            idle_settle: Duration::from_millis(1000),
            handshake_concurrency: 64,
            broadcast_members: 15_000,
            broadcast_size: 64,
            broadcast_repeats: 20,
            pubsub_subscribers: 1_000,
            pubsub_publishers: 100,
            pubsub_size: 64,
            only: Vec::new(),
        };
        match profile {
            Profile::Full => full,
            Profile::Quick => Plan {
                rounds: 1,
                window: Window {
                    warmup: Duration::from_millis(300),
                    measure: Duration::from_millis(1000),
                },
                latency_window: Window {
                    warmup: Duration::from_millis(300),
                    measure: Duration::from_millis(1500),
                },
                idle_settle: Duration::from_millis(300),
                broadcast_repeats: 5,
                ..full
            },
            Profile::Smoke => Plan {
                rounds: 1,
                window: Window {
                    warmup: Duration::from_millis(100),
                    measure: Duration::from_millis(300),
                },
                echo_conns: vec![20],
                latency_conns: 20,
                latency_window: Window {
                    warmup: Duration::from_millis(100),
                    measure: Duration::from_millis(300),
                },
                idle_conns: 20,
                idle_settle: Duration::from_millis(50),
                handshake_concurrency: 4,
                broadcast_members: 20,
                broadcast_repeats: 2,
                pubsub_subscribers: 20,
                pubsub_publishers: 5,
                ..full
            },
        }
    }
}

/// Everything `compare` needs.
#[derive(Debug, Clone)]
pub struct Options {
    /// Sizes and lengths.
    pub plan: Plan,
    /// Which profile the plan came from (for the report).
    pub profile: Profile,
    /// Servers to compare, in report order; tokio-tungstenite must be among them (it is
    /// the baseline of every ratio).
    pub servers: Vec<ServerKind>,
    /// Worker threads of every server.
    pub threads: usize,
    /// CPUs the servers are pinned to.
    pub server_cpus: Vec<usize>,
    /// CPUs the load generator runs on (one thread each).
    pub load_cpus: Vec<usize>,
    /// The `throng-bench` binary that runs `serve`.
    pub server_exe: PathBuf,
    /// Print progress to stderr.
    pub progress: bool,
    /// The command line, for the report.
    pub command: String,
    /// Before each measurement, wait until no other work keeps the CPUs busy.
    pub wait_quiet: bool,
    /// When Bun is among the servers, run its install script first (a no-op once the
    /// pinned version is there); if that fails Bun is reported as not measured.
    pub install_bun: bool,
}

impl Options {
    /// Defaults for a profile: every server, 1 worker thread on the first allowed CPU,
    /// the load generator on the others.
    pub fn new(profile: Profile, server_exe: PathBuf) -> Options {
        let mut o = Options {
            plan: Plan::of(profile),
            profile,
            // The floor is a diagnostic; the quick profile leaves it out to stay short.
            servers: ServerKind::ALL
                .into_iter()
                .filter(|&s| profile != Profile::Quick || s != ServerKind::Floor)
                .collect(),
            threads: 1,
            server_cpus: Vec::new(),
            load_cpus: Vec::new(),
            server_exe,
            progress: true,
            command: String::new(),
            wait_quiet: profile != Profile::Smoke,
            install_bun: true,
        };
        o.place();
        o
    }

    /// Splits the allowed CPUs: the first `threads` for the servers, the rest for the
    /// load generator (all of them shared, when there are not enough).
    pub fn place(&mut self) {
        let cpus = sys::allowed_cpus();
        if cpus.len() > self.threads {
            self.server_cpus = cpus[..self.threads].to_vec();
            self.load_cpus = cpus[self.threads..].to_vec();
        } else {
            self.server_cpus = cpus.clone();
            self.load_cpus = cpus.last().copied().into_iter().collect();
        }
    }
}

/// Which way is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Better {
    /// Higher values win (rates).
    Higher,
    /// Lower values win (latency, memory, time).
    Lower,
}

/// One figure: every server's value in every round.
#[derive(Debug, Clone)]
pub struct Figure {
    /// Stable key for JSON and the chart.
    pub key: String,
    /// What it is, for the table.
    pub label: String,
    /// Unit of the values.
    pub unit: &'static str,
    /// Which way is better.
    pub better: Better,
    /// A diagnostic (server CPU cost), reported apart from the headline figures.
    pub diagnostic: bool,
    /// Per server, the value of each round.
    pub values: Vec<(ServerKind, Vec<f64>)>,
}

impl Figure {
    fn new(
        key: String,
        label: String,
        unit: &'static str,
        better: Better,
        diagnostic: bool,
    ) -> Figure {
        Figure {
            key,
            label,
            unit,
            better,
            diagnostic,
            values: Vec::new(),
        }
    }

    fn push(&mut self, server: ServerKind, v: f64) {
        match self.values.iter_mut().find(|(k, _)| *k == server) {
            Some((_, vs)) => vs.push(v),
            None => self.values.push((server, vec![v])),
        }
    }

    /// The median of a server's rounds.
    pub fn median(&self, server: ServerKind) -> Option<f64> {
        let (_, vs) = self.values.iter().find(|(k, _)| *k == server)?;
        median(vs)
    }

    /// A server's median divided by tokio-tungstenite's.
    pub fn ratio(&self, server: ServerKind) -> Option<f64> {
        let base = self.median(ServerKind::Tungstenite)?;
        let v = self.median(server)?;
        (base > 0.0).then(|| v / base)
    }

    /// How many times better than tokio-tungstenite (above 1: better, whichever the
    /// direction).
    pub fn advantage(&self, server: ServerKind) -> Option<f64> {
        let r = self.ratio(server)?;
        match self.better {
            Better::Higher => Some(r),
            Better::Lower => (r > 0.0).then(|| 1.0 / r),
        }
    }
}

/// The median of some values (mean of the middle two for an even count).
pub fn median(vs: &[f64]) -> Option<f64> {
    if vs.is_empty() {
        return None;
    }
    let mut v = vs.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let m = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    })
}

/// The outcome of a comparison.
#[derive(Debug, Clone)]
pub struct Report {
    /// What was run.
    pub options: Options,
    /// Figures in table order.
    pub figures: Vec<Figure>,
    /// Servers that could not run here, with the reason.
    pub unavailable: Vec<(ServerKind, String)>,
    /// The rate the latency figure ran at (messages per second).
    pub latency_rate: f64,
    /// Wall time of the whole comparison.
    pub elapsed: Duration,
    /// Machine description.
    pub machine: String,
    /// Measurements taken while other work kept the machine busy (0 for a clean run).
    pub noisy: usize,
}

impl Report {
    /// The figure with this key.
    pub fn figure(&self, key: &str) -> Option<&Figure> {
        self.figures.iter().find(|f| f.key == key)
    }

    /// Servers that ran.
    pub fn servers(&self) -> Vec<ServerKind> {
        self.options
            .servers
            .iter()
            .copied()
            .filter(|s| !self.unavailable.iter().any(|(u, _)| u == s))
            .collect()
    }
}

fn thousands(n: usize) -> String {
    crate::report::group(n as u64)
}

fn size_label(n: usize) -> String {
    if n >= 1024 && n.is_multiple_of(1024) {
        format!("{} KiB", n / 1024)
    } else {
        format!("{n} B")
    }
}

/// The harness state while it runs.
/// What a recorded value is (see [`Figure`]).
struct Spec<'a> {
    key: &'a str,
    label: &'a str,
    unit: &'static str,
    better: Better,
    diagnostic: bool,
}

/// Busy fraction of the machine below which it counts as quiet (2 CPUs: a tenth of one).
const QUIET: f64 = 0.05;

struct Run {
    /// Measurements taken while other work kept the machine busy.
    noisy: usize,
    options: Options,
    load: Load,
    figures: Vec<Figure>,
    unavailable: Vec<(ServerKind, String)>,
}

impl Run {
    fn record(&mut self, spec: Spec<'_>, server: ServerKind, v: f64) {
        let i = match self.figures.iter().position(|f| f.key == spec.key) {
            Some(i) => i,
            None => {
                self.figures.push(Figure::new(
                    spec.key.into(),
                    spec.label.into(),
                    spec.unit,
                    spec.better,
                    spec.diagnostic,
                ));
                self.figures.len() - 1
            }
        };
        self.figures[i].push(server, v);
    }

    fn say(&self, what: std::fmt::Arguments<'_>) {
        if self.options.progress {
            eprintln!("{what}");
        }
    }

    /// Servers of round `round`, rotated so each takes every position in turn.
    fn order(&self, round: usize) -> Vec<ServerKind> {
        let live: Vec<ServerKind> = self
            .options
            .servers
            .iter()
            .copied()
            .filter(|s| !self.unavailable.iter().any(|(u, _)| u == s))
            .collect();
        let n = live.len().max(1);
        (0..live.len()).map(|i| live[(i + round) % n]).collect()
    }

    /// Waits (up to a minute) until the machine is quiet: nothing of ours runs between
    /// measurements, so CPU in use now belongs to someone else (a build, a fuzzer) and
    /// would be measured along with the server. Returns the busy fraction last seen.
    fn await_quiet(&mut self) -> f64 {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut warned = false;
        loop {
            let busy = sys::machine_busy(Duration::from_millis(200));
            if busy <= QUIET || Instant::now() >= deadline {
                if busy > QUIET {
                    self.noisy += 1;
                    self.say(format_args!(
                        "  warning: the machine is {:.0}% busy with other work; measuring anyway",
                        busy * 100.0
                    ));
                }
                return busy;
            }
            if !warned {
                self.say(format_args!(
                    "  waiting for other work to finish ({:.0}% of the CPUs busy)...",
                    busy * 100.0
                ));
                warned = true;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Starts `server`, runs `f` against it, stops it; measures again (up to
    /// [`ATTEMPTS`] times) when other processes took more than [`FOREIGN`] CPUs meanwhile.
    /// `None`: the server cannot run here.
    fn with_server<T>(
        &mut self,
        server: ServerKind,
        f: impl Fn(Target) -> io::Result<T>,
    ) -> io::Result<Option<T>> {
        for attempt in 1..=ATTEMPTS {
            if self.options.wait_quiet {
                self.await_quiet();
            }
            let Some((v, foreign)) = self.once(server, &f)? else {
                return Ok(None);
            };

            if !self.options.wait_quiet || foreign <= FOREIGN {
                return Ok(Some(v));
            }
            if attempt == ATTEMPTS {
                self.noisy += 1;
                self.say(format_args!(
                    "  warning: other processes ran during every attempt; keeping the last"
                ));
                return Ok(Some(v));
            }
            self.say(format_args!(
                "  other processes ran meanwhile ({foreign:.2} CPUs or a burst of new ones); measuring {server} again"
            ));
        }
        unreachable!("the last attempt returns")
    }

    /// One measurement: the value, and the most CPUs other processes used meanwhile.
    fn once<T>(
        &mut self,
        server: ServerKind,
        f: &impl Fn(Target) -> io::Result<T>,
    ) -> io::Result<Option<(T, f64)>> {
        let mut args = server.serve_args();
        args.extend([
            "--threads".into(),
            self.options.threads.to_string(),
            "--addr".into(),
            "127.0.0.1:0".into(),
            "--cpus".into(),
            self.options
                .server_cpus
                .iter()
                .map(|c| c.to_string())
                .collect::<Vec<_>>()
                .join(","),
        ]);
        let (process, started) =
            ServerProcess::spawn(&self.options.server_exe, &args, Duration::from_secs(10))?;
        let mut process = match (process, started) {
            (Some(p), Started::Listening(_)) => p,
            (_, Started::Unavailable(why)) => {
                self.say(format_args!("  {server}: not available here: {why}"));
                self.unavailable.push((server, why));
                return Ok(None);
            }
            (None, Started::Listening(_)) => unreachable!("a listening server has a process"),
        };
        // Let the runtime finish starting (threads, first allocations) before any reading.
        std::thread::sleep(Duration::from_millis(50));
        let target = Target {
            addr: process.addr,
            pid: process.pid(),
        };
        let watch = sys::OtherLoad::watch(vec![process.pid(), std::process::id()]);
        let result = f(target);
        let (cpus, started) = watch.finish();
        // A burst of new processes means a build or a test run came and went.
        let foreign = if started >= FORKS {
            cpus.max(FOREIGN + 0.01)
        } else {
            cpus
        };
        if !process.alive() {
            let stderr = process.kill_and_stderr();
            return Err(io::Error::other(format!(
                "{server} died during the run: {stderr}"
            )));
        }
        match result {
            Ok(v) => Ok(Some((v, foreign))),
            Err(e) => {
                let stderr = process.kill_and_stderr();
                let tail = if stderr.is_empty() {
                    String::new()
                } else {
                    format!(" (server stderr: {stderr})")
                };
                Err(io::Error::new(e.kind(), format!("{server}: {e}{tail}")))
            }
        }
    }
}

/// Measurements of one server and figure before a disturbed one is kept anyway.
const ATTEMPTS: usize = 3;
/// CPUs other processes may use during a measurement without it being repeated.
const FOREIGN: f64 = 0.1;
/// Processes others may start during a measurement without it being repeated.
const FORKS: u64 = 5;

/// Runs the whole comparison.
pub fn run(options: Options) -> io::Result<Report> {
    if !options.servers.contains(&ServerKind::Tungstenite) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "tokio-tungstenite is the baseline of every ratio; include it",
        ));
    }
    let began = Instant::now();
    // Described before the harness pins itself, which narrows what it can see.
    let machine = format!(
        "{} ({} CPUs), {:.1} GiB RAM, Linux {}",
        sys::cpu_model(),
        sys::allowed_cpus().len(),
        sys::mem_gib(),
        sys::kernel()
    );
    sys::raise_nofile();
    // The harness's own threads (the pipes' readers) stay off the server CPUs too.
    let _ = sys::pin_to(&options.load_cpus);
    let load = Load {
        cpus: options.load_cpus.clone(),
        open_window: 256,
        open_timeout: Duration::from_secs(60),
        tls: None,
    };
    let plan = options.plan.clone();
    let mut unavailable = Vec::new();
    if options.install_bun && options.servers.contains(&ServerKind::Bun) {
        if options.progress {
            eprintln!(
                "Bun: {} ...",
                crate::servers::bun::dir().join("install.sh").display()
            );
        }
        if let Err(why) = crate::servers::bun::install(Duration::from_secs(300)) {
            eprintln!("  Bun: not available: {why}");
            unavailable.push((ServerKind::Bun, why));
        }
    }
    let mut run = Run {
        noisy: 0,
        options,
        load,
        figures: Vec::new(),
        unavailable,
    };
    run.say(format_args!(
        "servers: {} worker thread(s) pinned to CPU {:?}; load generator: {} thread(s) pinned to CPU {:?}",
        run.options.threads,
        run.options.server_cpus,
        run.load.cpus.len().max(1),
        run.load.cpus
    ));

    // 1. Echo throughput.
    for round in (0..plan.rounds).filter(|_| plan.runs("echo")) {
        for &size in &plan.echo_sizes {
            for &conns in &plan.echo_conns {
                for server in run.order(round) {
                    let load = run.load.clone();
                    let Some(r) = run.with_server(server, |t| {
                        client::echo(t, &load, conns, size, plan.window)
                    })?
                    else {
                        continue;
                    };
                    let tag = format!("{}_{}", size, conns);
                    let what = format!("Echo {}, {} conns", size_label(size), thousands(conns));
                    let busy = 100.0 * r.server_cpu_ns as f64 / (r.seconds * 1e9);
                    run.say(format_args!(
                        "[echo {} x {} r{}] {server}: {:.0} msg/s, server CPU {busy:.0}%, {:.0} ns/msg, slowest connection {:.0}% of the mean",
                        size_label(size),
                        conns,
                        round + 1,
                        r.rate(),
                        r.server_ns_per_message(),
                        100.0 * r.slowest_share()
                    ));
                    run.record(
                        Spec {
                            key: &format!("echo_{tag}"),
                            label: &what,
                            unit: "msg/s",
                            better: Better::Higher,
                            diagnostic: false,
                        },
                        server,
                        r.rate(),
                    );
                    let diagnostics = [
                        (
                            "cpu",
                            "server CPU per message",
                            "ns",
                            Better::Lower,
                            r.server_ns_per_message(),
                        ),
                        ("busy", "server CPU busy", "%", Better::Higher, busy),
                        (
                            "fair",
                            "slowest connection's echoes, % of the mean",
                            "%",
                            Better::Higher,
                            100.0 * r.slowest_share(),
                        ),
                    ];
                    for (key, label, unit, better, value) in diagnostics {
                        let spec = Spec {
                            key: &format!("echo_{key}_{tag}"),
                            label: &format!("{what}: {label}"),
                            unit,
                            better,
                            diagnostic: true,
                        };
                        run.record(spec, server, value);
                    }
                }
            }
        }
    }

    // 2. Latency at a fixed rate: a fraction of the slowest server's maximum at the same
    // connection count and size (or the nearest measured).
    let rate_key = nearest_echo_key(&plan, plan.latency_size, plan.latency_conns);
    let slowest = run
        .figures
        .iter()
        .find(|f| f.key == rate_key)
        .and_then(|f| {
            f.values
                .iter()
                .filter_map(|(s, _)| f.median(*s))
                .reduce(f64::min)
        })
        .unwrap_or(10_000.0);
    let latency_rate = plan
        .latency_rate
        .unwrap_or((slowest * plan.latency_load).max(100.0));
    if plan.runs("latency") {
        run.say(format_args!(
            "latency at {latency_rate:.0} msg/s ({:.0}% of the slowest server's {slowest:.0})",
            plan.latency_load * 100.0
        ));
    }
    for round in (0..plan.rounds).filter(|_| plan.runs("latency")) {
        for server in run.order(round) {
            let load = run.load.clone();
            let Some(r) = run.with_server(server, |t| {
                client::latency(
                    t,
                    &load,
                    plan.latency_conns,
                    plan.latency_size,
                    latency_rate,
                    plan.latency_window,
                )
            })?
            else {
                continue;
            };
            let h = &r.histogram;
            let us = |q: f64| h.quantile(q) as f64 / 1000.0;
            run.say(format_args!(
                "[latency r{}] {server}: p50 {:.1} us, p99 {:.1} us, p99.9 {:.1} us, max {:.1} us ({} samples, {:.0} msg/s, {} lost)",
                round + 1,
                us(0.5),
                us(0.99),
                us(0.999),
                h.max() as f64 / 1000.0,
                h.count(),
                r.achieved,
                r.lost
            ));
            if r.lost > 0 {
                return Err(io::Error::other(format!(
                    "{server}: {} messages lost in the latency run",
                    r.lost
                )));
            }
            let what = format!(
                "Latency {}, {} conns",
                size_label(plan.latency_size),
                thousands(plan.latency_conns)
            );
            run.record(
                Spec {
                    key: "latency_p50",
                    label: &format!("{what}: p50"),
                    unit: "us",
                    better: Better::Lower,
                    diagnostic: false,
                },
                server,
                us(0.5),
            );
            run.record(
                Spec {
                    key: "latency_p99",
                    label: &format!("{what}: p99"),
                    unit: "us",
                    better: Better::Lower,
                    diagnostic: false,
                },
                server,
                us(0.99),
            );
            run.record(
                Spec {
                    key: "latency_p999",
                    label: &format!("{what}: p99.9"),
                    unit: "us",
                    better: Better::Lower,
                    diagnostic: false,
                },
                server,
                us(0.999),
            );
        }
    }

    // 3. Memory per idle connection.
    for round in (0..plan.rounds).filter(|_| plan.runs("memory")) {
        for server in run.order(round) {
            let load = run.load.clone();
            let Some(r) = run.with_server(server, |t| {
                client::idle_memory(t, &load, plan.idle_conns, plan.idle_settle)
            })?
            else {
                continue;
            };
            run.say(format_args!(
                "[memory r{}] {server}: RSS {:.1} MiB -> {:.1} MiB with {} idle: {:.0} B per connection",
                round + 1,
                r.rss_before as f64 / 1048576.0,
                r.rss_after as f64 / 1048576.0,
                r.connections,
                r.per_connection()
            ));
            run.record(
                Spec {
                    key: "memory",
                    label: &format!(
                        "Memory per idle connection ({} conns)",
                        thousands(plan.idle_conns)
                    ),
                    unit: "B",
                    better: Better::Lower,
                    diagnostic: false,
                },
                server,
                r.per_connection(),
            );
        }
    }

    // 4. Handshakes per second.
    for round in (0..plan.rounds).filter(|_| plan.runs("handshakes")) {
        for server in run.order(round) {
            let load = run.load.clone();
            let Some(r) = run.with_server(server, |t| {
                client::handshakes(t, &load, plan.handshake_concurrency, plan.window)
            })?
            else {
                continue;
            };
            let us = r.server_cpu_ns as f64 / 1000.0 / r.handshakes.max(1) as f64;
            let busy = r.server_cpu_ns as f64 / (r.seconds * 1e9);
            run.say(format_args!(
                "[handshakes r{}] {server}: {:.0}/s, server CPU {us:.1} us each ({:.0}% busy), {} failed",
                round + 1,
                r.rate(),
                busy * 100.0,
                r.failed
            ));
            run.record(
                Spec {
                    key: "handshakes",
                    label: &format!(
                        "Handshakes per second ({} in flight)",
                        plan.handshake_concurrency
                    ),
                    unit: "1/s",
                    better: Better::Higher,
                    diagnostic: false,
                },
                server,
                r.rate(),
            );
            // When the load CPU cannot keep the server busy (on loopback it does the
            // kernel's TCP handshake work for both ends), the server's CPU per upgrade
            // says what one server CPU could take.
            run.record(
                Spec {
                    key: "handshake_capacity",
                    label: "Handshakes per second of server CPU (1e6 / CPU µs per upgrade)",
                    unit: "1/s",
                    better: Better::Higher,
                    diagnostic: false,
                },
                server,
                1e6 / us.max(1e-3),
            );
            run.record(
                Spec {
                    key: "handshake_busy",
                    label: "Handshakes: server CPU busy",
                    unit: "%",
                    better: Better::Higher,
                    diagnostic: true,
                },
                server,
                busy * 100.0,
            );
            run.record(
                Spec {
                    key: "handshake_cpu",
                    label: "Handshake: server CPU per upgrade",
                    unit: "us",
                    better: Better::Lower,
                    diagnostic: true,
                },
                server,
                us,
            );
            // The other side of the same handshakes: when this is above the server's
            // figure, the one load CPU, not the server, bounds the rate.
            run.record(
                Spec {
                    key: "handshake_load_cpu",
                    label: "Handshake: load generator CPU per upgrade",
                    unit: "us",
                    better: Better::Lower,
                    diagnostic: true,
                },
                server,
                r.load_cpu_ns as f64 / 1000.0 / r.handshakes.max(1) as f64,
            );
        }
    }

    // 5. Broadcast to every member (issue 7: the publish time to 15,000 subscribers).
    for round in (0..plan.rounds).filter(|_| plan.runs("broadcast")) {
        for server in run.order(round) {
            let load = run.load.clone();
            let Some(r) = run.with_server(server, |t| {
                client::broadcast(
                    t,
                    &load,
                    plan.broadcast_members,
                    plan.broadcast_size,
                    plan.broadcast_repeats,
                )
            })?
            else {
                continue;
            };
            let times: Vec<f64> = r.times_ns.iter().map(|&t| t as f64 / 1e6).collect();
            let cpus: Vec<f64> = r.server_cpu_ns.iter().map(|&t| t as f64 / 1e6).collect();
            let (t, c) = (median(&times).unwrap_or(0.0), median(&cpus).unwrap_or(0.0));
            run.say(format_args!(
                "[broadcast r{}] {server}: {} B to {}: median {t:.2} ms (min {:.2}, max {:.2}), server CPU {c:.2} ms",
                round + 1,
                r.size,
                r.members,
                times.iter().copied().fold(f64::INFINITY, f64::min),
                times.iter().copied().fold(0.0, f64::max)
            ));
            let what = format!(
                "Broadcast {} to {} conns",
                size_label(plan.broadcast_size),
                thousands(plan.broadcast_members)
            );
            run.record(
                Spec {
                    key: "broadcast",
                    label: &format!("{what}: time to the last"),
                    unit: "ms",
                    better: Better::Lower,
                    diagnostic: false,
                },
                server,
                t,
            );
            run.record(
                Spec {
                    key: "broadcast_cpu",
                    label: &format!("{what}: server CPU"),
                    unit: "ms",
                    better: Better::Lower,
                    diagnostic: true,
                },
                server,
                c,
            );
        }
    }

    // 6. Pub/sub delivery with many publishers (issue 7).
    for round in (0..plan.rounds).filter(|_| plan.runs("pubsub")) {
        for server in run.order(round) {
            let load = run.load.clone();
            let Some(r) = run.with_server(server, |t| {
                client::pubsub(
                    t,
                    &load,
                    plan.pubsub_subscribers,
                    plan.pubsub_publishers,
                    plan.pubsub_size,
                    plan.window,
                )
            })?
            else {
                continue;
            };
            run.say(format_args!(
                "[pubsub r{}] {server}: {:.0} delivered/s ({:.0} publishes/s) to {} subscribers from {} publishers, server CPU {:.0}%",
                round + 1,
                r.delivered_rate(),
                r.published as f64 / r.seconds,
                r.subscribers,
                r.publishers,
                100.0 * r.server_cpu_ns as f64 / (r.seconds * 1e9)
            ));
            let what = format!(
                "Pub/sub {}: {} publishers, K = {} subscribers",
                size_label(plan.pubsub_size),
                plan.pubsub_publishers,
                thousands(plan.pubsub_subscribers)
            );
            run.record(
                Spec {
                    key: "pubsub",
                    label: &format!("{what}: delivered"),
                    unit: "msg/s",
                    better: Better::Higher,
                    diagnostic: false,
                },
                server,
                r.delivered_rate(),
            );
            run.record(
                Spec {
                    key: "pubsub_cpu",
                    label: &format!("{what}: server CPU per delivery"),
                    unit: "ns",
                    better: Better::Lower,
                    diagnostic: true,
                },
                server,
                r.server_cpu_ns as f64 / r.delivered.max(1) as f64,
            );
        }
    }

    Ok(Report {
        noisy: run.noisy,
        options: run.options,
        figures: run.figures,
        unavailable: run.unavailable,
        latency_rate,
        elapsed: began.elapsed(),
        machine,
    })
}

/// The echo figure closest to `size` bytes at `conns` connections.
fn nearest_echo_key(plan: &Plan, size: usize, conns: usize) -> String {
    let s = plan
        .echo_sizes
        .iter()
        .copied()
        .min_by_key(|s| s.abs_diff(size))
        .unwrap_or(size);
    let c = plan
        .echo_conns
        .iter()
        .copied()
        .min_by_key(|c| c.abs_diff(conns))
        .unwrap_or(conns);
    format!("echo_{s}_{c}")
}
