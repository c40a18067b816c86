//! `throng-bench wss`: throng over `wss://` against tokio-tungstenite over tokio-rustls,
//! in one run, every figure as a ratio (issue 14).
//!
//! Both use the same rustls (the workspace's version, ring), the same certificate and the
//! same `ServerConfig` (built by [`throng_engine::TlsConfig::from_pem_files`]: ALPN
//! `http/1.1`, the session cache rustls gives by default), each server process pinned to
//! its CPU as in `compare`, the load generator (`throng_load`'s TLS client: full
//! handshakes, no resumption, the certificate trusted through its PEM) on the others.
//!
//! | figure | what | target |
//! | --- | --- | --- |
//! | memory | server RSS growth per idle wss connection, 15,000 connections each used once | throng <= 2.5 KB |
//! | echo | 64 B closed-loop echo over 1,000 wss connections, msg/s | >= 2.0x tokio-tungstenite |
//! | wss/ws | throng's wss echo over its own ws echo, same load | >= 0.75 |
//! | handshakes | TLS handshake + upgrade per second, 64 in progress, reset after the 101 | >= 1.5x tokio-tungstenite |
//!
//! Every measurement gets a fresh server process; servers take turns within each round
//! and the median of the rounds is reported.
//!
//! The rates measure the servers, not the load generator: for the echo and handshake
//! figures each server process (either server, the same way) is capped at
//! [`DEFAULT_CAP`] of a CPU with a cgroup v1 CFS quota ([`CpuCap`]), and the load
//! generator runs on every CPU, so it has about four times the server's CPU. The table
//! checks that each server used ~100% of its quota in every rate row; without a writable
//! cgroup (not root) the servers run uncapped on their own CPU as before, and the table
//! says so. The memory figure is not capped (it reads RSS, not a rate).

use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use throng_load::measure::{self as client, Load, Target, Window};
use throng_load::tls::Tls;

use crate::compare::{self, median};
use crate::servers::ServerKind;
use crate::sys::{CpuCap, ServerProcess, Started};

/// The CPU quota of each server in the rate figures, in CPUs. Below half a CPU on
/// purpose: a load thread shares the server's CPU, and at 0.5 CFS's fair share of that
/// CPU (half) was just the quota, so the server sometimes waited for the load thread
/// (88-89% of its quota in the handshake rows of a 0.5 run).
pub const DEFAULT_CAP: f64 = 0.4;
/// The CFS period of the cap: short, so that a capped server is throttled in many small
/// steps rather than stopped for tens of milliseconds at a time.
pub const CAP_PERIOD_US: u64 = 10_000;

/// Servers of the wss comparison, in table order.
pub const SERVERS: [ServerKind; 3] = [
    ServerKind::ThrongUring,
    ServerKind::ThrongEpoll,
    ServerKind::Tungstenite,
];

/// Sizes and lengths.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Rounds per figure (the median is reported).
    pub rounds: usize,
    /// Idle connections of the memory figure.
    pub idle_conns: usize,
    /// Settling time before the memory reading.
    pub idle_settle: Duration,
    /// Connections of the echo figures.
    pub echo_conns: usize,
    /// Message size of the echo figures.
    pub echo_size: usize,
    /// Handshakes in progress at once.
    pub handshake_concurrency: usize,
    /// Windows of the echo and handshake figures.
    pub window: Window,
}

impl Plan {
    /// The sizes, 3 rounds (about 5 minutes on 2 CPUs).
    pub fn full() -> Plan {
        Plan {
            rounds: 3,
            idle_conns: 15_000,
            idle_settle: Duration::from_secs(1),
            echo_conns: 1_000,
            echo_size: 64,
            handshake_concurrency: 64,
            window: Window {
                warmup: Duration::from_secs(1),
                measure: Duration::from_secs(3),
            },
        }
    }

    /// The same sizes, once, short windows.
    pub fn quick() -> Plan {
        Plan {
            rounds: 1,
            idle_settle: Duration::from_millis(300),
            window: Window {
                warmup: Duration::from_millis(300),
                measure: Duration::from_secs(1),
            },
            ..Plan::full()
        }
    }

    /// Tiny: only proves every server answers every figure over TLS.
    pub fn smoke() -> Plan {
        Plan {
            rounds: 1,
            idle_conns: 50,
            idle_settle: Duration::from_millis(50),
            echo_conns: 20,
            echo_size: 64,
            handshake_concurrency: 4,
            window: Window {
                warmup: Duration::from_millis(100),
                measure: Duration::from_millis(300),
            },
        }
    }
}

/// Everything `wss` needs.
#[derive(Debug, Clone)]
pub struct Options {
    /// Sizes and lengths.
    pub plan: Plan,
    /// The `throng-bench` binary that runs `serve`.
    pub server_exe: PathBuf,
    /// Where the certificate and key are written.
    pub dir: PathBuf,
    /// Worker threads of every server.
    pub threads: usize,
    /// CPUs the servers are pinned to.
    pub server_cpus: Vec<usize>,
    /// CPUs the load generator runs on (one thread each).
    pub load_cpus: Vec<usize>,
    /// The cgroup CPU quota of each server in the rate figures, in CPUs (`None`:
    /// uncapped, on its own CPU).
    pub cap: Option<f64>,
    /// Figures to run (`memory`, `echo`, `handshakes`); empty: all.
    pub only: Vec<String>,
    /// Print progress to stderr.
    pub progress: bool,
    /// The command line, for the report.
    pub command: String,
}

impl Options {
    /// Defaults: 1 worker thread on the first allowed CPU; where cgroups allow, that
    /// server capped at [`DEFAULT_CAP`] and the load on every CPU, otherwise uncapped and
    /// the load on the other CPUs (as `compare` places them).
    pub fn new(plan: Plan, server_exe: PathBuf) -> Options {
        let placed = compare::Options::new(compare::Profile::Smoke, server_exe.clone());
        let mut o = Options {
            plan,
            server_exe,
            dir: PathBuf::from("target/throng-bench/wss"),
            threads: 1,
            server_cpus: placed.server_cpus,
            load_cpus: placed.load_cpus,
            cap: None,
            only: Vec::new(),
            progress: true,
            command: String::new(),
        };
        if CpuCap::available() {
            o.set_cap(Some(DEFAULT_CAP));
        }
        o
    }

    /// Caps each server at `cpus` CPUs in the rate figures (the load on every CPU), or
    /// not at all (the load on the CPUs the servers do not use).
    pub fn set_cap(&mut self, cpus: Option<f64>) {
        let all = crate::sys::allowed_cpus();
        self.cap = cpus;
        self.load_cpus = match cpus {
            Some(_) => all,
            None => {
                let rest: Vec<usize> = all
                    .iter()
                    .copied()
                    .filter(|c| !self.server_cpus.contains(c))
                    .collect();
                if rest.is_empty() {
                    all.last().copied().into_iter().collect()
                } else {
                    rest
                }
            }
        };
    }
}

/// The rounds of one server in one figure.
#[derive(Debug, Clone, Default)]
pub struct Values {
    /// One value per round.
    pub rounds: Vec<f64>,
}

impl Values {
    /// The median of the rounds.
    pub fn median(&self) -> Option<f64> {
        median(&self.rounds)
    }
}

/// What a run measured: per figure key, per server id, the rounds.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// (figure key, server, values), in the order first recorded.
    pub values: Vec<(String, ServerKind, Values)>,
    /// Servers that could not run here, with the reason.
    pub unavailable: Vec<(ServerKind, String)>,
    /// Wall time.
    pub elapsed: Duration,
    /// The plan that ran.
    pub plan: Option<Plan>,
    /// The command line.
    pub command: String,
    /// Machine description.
    pub machine: String,
    /// The servers' CPU cap in the rate figures (`None`: uncapped).
    pub cap: Option<f64>,
}

impl Report {
    fn push(&mut self, key: &str, server: ServerKind, v: f64) {
        match self
            .values
            .iter_mut()
            .find(|(k, s, _)| k == key && *s == server)
        {
            Some((_, _, vs)) => vs.rounds.push(v),
            None => self
                .values
                .push((key.into(), server, Values { rounds: vec![v] })),
        }
    }

    /// The median of `server` in figure `key`.
    pub fn median(&self, key: &str, server: ServerKind) -> Option<f64> {
        self.values
            .iter()
            .find(|(k, s, _)| k == key && *s == server)
            .and_then(|(_, _, v)| v.median())
    }
}

/// Figure keys.
pub const MEMORY: &str = "wss_memory";
/// Echo over wss.
pub const ECHO: &str = "wss_echo";
/// Echo over ws (throng only, for the wss/ws ratio).
pub const ECHO_WS: &str = "ws_echo";
/// Handshakes per second over wss.
pub const HANDSHAKES: &str = "wss_handshakes";

/// Server CPU per echoed message over wss, nanoseconds (a diagnostic, as
/// [`HANDSHAKE_CPU`]).
pub const ECHO_CPU: &str = "wss_echo_cpu_ns";
/// Server CPU per echoed message over ws (throng only), nanoseconds.
pub const ECHO_WS_CPU: &str = "ws_echo_cpu_ns";

/// Server CPU per handshake, microseconds (a diagnostic: when the load generator's own
/// TLS work bounds the rate, this is what still tells the servers apart).
pub const HANDSHAKE_CPU: &str = "wss_handshake_cpu_us";

/// How busy the server was in the wss echo window: its CPU over its quota (or over one
/// CPU when uncapped), percent. ~100 means the server bounded the rate.
pub const ECHO_BUSY: &str = "wss_echo_server_busy_pct";
/// The same for throng's ws echo.
pub const ECHO_WS_BUSY: &str = "ws_echo_server_busy_pct";
/// The same for the handshake window.
pub const HANDSHAKE_BUSY: &str = "wss_handshake_server_busy_pct";
/// The load generator's CPU in the handshake window over the CPUs it had (all of its
/// threads' CPUs, minus the server's quota), percent.
pub const HANDSHAKE_LOAD_BUSY: &str = "wss_handshake_load_busy_pct";

/// Writes a self-signed pair for 127.0.0.1 into `dir`: (cert, key).
pub fn write_pair(dir: &Path) -> io::Result<(PathBuf, PathBuf)> {
    std::fs::create_dir_all(dir)?;
    let made = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()])
        .map_err(|e| io::Error::other(format!("rcgen: {e}")))?;
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, made.cert.pem())?;
    std::fs::write(&key, made.signing_key.serialize_pem())?;
    Ok((cert, key))
}

struct Run<'a> {
    options: &'a Options,
    pair: (PathBuf, PathBuf),
    report: Report,
}

impl Run<'_> {
    fn say(&self, what: std::fmt::Arguments<'_>) {
        if self.options.progress {
            eprintln!("{what}");
        }
    }

    fn live(&self) -> Vec<ServerKind> {
        SERVERS
            .into_iter()
            .filter(|s| !self.report.unavailable.iter().any(|(u, _)| u == s))
            .collect()
    }

    /// Starts `server` (over TLS when `tls`; under the run's CPU cap when `capped`), runs
    /// `f` against it, stops it. `None`: it cannot run here.
    fn with_server<T>(
        &mut self,
        server: ServerKind,
        tls: bool,
        capped: bool,
        f: impl FnOnce(Target) -> io::Result<T>,
    ) -> io::Result<Option<T>> {
        let o = self.options;
        let mut args = server.serve_args();
        args.extend([
            "--threads".into(),
            o.threads.to_string(),
            "--addr".into(),
            "127.0.0.1:0".into(),
            "--cpus".into(),
            o.server_cpus
                .iter()
                .map(|c| c.to_string())
                .collect::<Vec<_>>()
                .join(","),
        ]);
        if tls {
            args.extend([
                "--tls-cert".into(),
                self.pair.0.display().to_string(),
                "--tls-key".into(),
                self.pair.1.display().to_string(),
            ]);
        }
        let (process, started) =
            ServerProcess::spawn(&o.server_exe, &args, Duration::from_secs(10))?;
        let mut process = match (process, started) {
            (Some(p), Started::Listening(_)) => p,
            (_, Started::Unavailable(why)) => {
                self.say(format_args!("  {server}: not available here: {why}"));
                self.report.unavailable.push((server, why));
                return Ok(None);
            }
            (None, Started::Listening(_)) => unreachable!("a listening server has a process"),
        };
        // Dropped before `process`: the group is emptied and removed, then the server ends.
        let _cap = match o.cap.filter(|_| capped) {
            Some(cpus) => Some(CpuCap::new(process.pid(), cpus, CAP_PERIOD_US)?),
            None => None,
        };
        std::thread::sleep(Duration::from_millis(50));
        let result = f(Target {
            addr: process.addr,
            pid: process.pid(),
        });
        if !process.alive() {
            let stderr = process.kill_and_stderr();
            return Err(io::Error::other(format!(
                "{server} died during the run: {stderr}"
            )));
        }
        match result {
            Ok(v) => Ok(Some(v)),
            Err(e) => {
                let stderr = process.kill_and_stderr();
                Err(io::Error::new(
                    e.kind(),
                    format!("{server} (tls {tls}): {e} (server stderr: {stderr})"),
                ))
            }
        }
    }
}

/// Runs the comparison.
pub fn run(options: &Options) -> io::Result<Report> {
    let began = Instant::now();
    let machine = format!(
        "{} ({} CPUs), {:.1} GiB RAM, Linux {}",
        crate::sys::cpu_model(),
        crate::sys::allowed_cpus().len(),
        crate::sys::mem_gib(),
        crate::sys::kernel()
    );
    crate::sys::raise_nofile();
    let _ = crate::sys::pin_to(&options.load_cpus);
    let pair = write_pair(&options.dir)?;
    let tls = Tls::new("127.0.0.1", Some(&pair.0))?;
    let load = |tls: Option<Tls>| Load {
        cpus: options.load_cpus.clone(),
        open_window: 256,
        open_timeout: Duration::from_secs(60),
        tls,
    };
    let (wss, ws) = (load(Some(tls)), load(None));
    let plan = options.plan.clone();
    let mut run = Run {
        options,
        pair,
        report: Report {
            command: options.command.clone(),
            machine,
            plan: Some(plan.clone()),
            cap: options.cap,
            ..Report::default()
        },
    };
    run.say(format_args!(
        "wss: servers {} worker thread(s) on CPU {:?}, load on CPU {:?}; certificate {}",
        options.threads,
        options.server_cpus,
        options.load_cpus,
        run.pair.0.display()
    ));
    let quota = options.cap.unwrap_or(1.0);
    let wanted = |f: &str| options.only.is_empty() || options.only.iter().any(|o| o == f);
    for round in 0..plan.rounds {
        let order = |live: Vec<ServerKind>| -> Vec<ServerKind> {
            let n = live.len().max(1);
            (0..live.len()).map(|i| live[(i + round) % n]).collect()
        };
        for server in order(run.live()).into_iter().filter(|_| wanted("memory")) {
            let Some(m) = run.with_server(server, true, false, |t| {
                client::idle_memory(t, &wss, plan.idle_conns, plan.idle_settle)
            })?
            else {
                continue;
            };
            run.say(format_args!(
                "[wss memory {} r{}] {server}: {:.0} B/conn",
                plan.idle_conns,
                round + 1,
                m.per_connection()
            ));
            run.report.push(MEMORY, server, m.per_connection());
        }
        for server in order(run.live()).into_iter().filter(|_| wanted("echo")) {
            let throng = server != ServerKind::Tungstenite;
            // throng's ws echo right before its wss echo: the ratio compares neighbours.
            let modes: &[bool] = if throng { &[false, true] } else { &[true] };
            for &tls in modes {
                let l = if tls { &wss } else { &ws };
                let Some(r) = run.with_server(server, tls, true, |t| {
                    client::echo(t, l, plan.echo_conns, plan.echo_size, plan.window)
                })?
                else {
                    break;
                };
                let key = if tls { ECHO } else { ECHO_WS };
                let busy = busy_pct(r.server_cpu_ns, r.seconds, quota);
                run.say(format_args!(
                    "[{} echo {} B x {} r{}] {server}: {:.0} msg/s, {:.0} ns server CPU/msg, \
                     server {busy:.0}% busy",
                    if tls { "wss" } else { "ws" },
                    plan.echo_size,
                    plan.echo_conns,
                    round + 1,
                    r.rate(),
                    r.server_ns_per_message()
                ));
                run.report
                    .push(if tls { ECHO_BUSY } else { ECHO_WS_BUSY }, server, busy);
                run.report.push(key, server, r.rate());
                let cpu = if tls { ECHO_CPU } else { ECHO_WS_CPU };
                run.report.push(cpu, server, r.server_ns_per_message());
            }
        }
        for server in order(run.live())
            .into_iter()
            .filter(|_| wanted("handshakes"))
        {
            let Some(h) = run.with_server(server, true, true, |t| {
                client::handshakes(t, &wss, plan.handshake_concurrency, plan.window)
            })?
            else {
                continue;
            };
            let busy = busy_pct(h.server_cpu_ns, h.seconds, quota);
            let load_cpus = options.load_cpus.len().max(1) as f64 - options.cap.unwrap_or(0.0);
            let load_busy = busy_pct(h.load_cpu_ns, h.seconds, load_cpus);
            run.say(format_args!(
                "[wss handshakes r{}] {server}: {:.0}/s ({} failed), server CPU {:.0} us each, \
                 server {busy:.0}% busy, load {load_busy:.0}% of its {load_cpus:.1} CPUs",
                round + 1,
                h.rate(),
                h.failed,
                h.server_cpu_ns as f64 / 1e3 / h.handshakes.max(1) as f64
            ));
            run.report.push(HANDSHAKE_BUSY, server, busy);
            run.report.push(HANDSHAKE_LOAD_BUSY, server, load_busy);
            run.report.push(HANDSHAKES, server, h.rate());
            run.report.push(
                HANDSHAKE_CPU,
                server,
                h.server_cpu_ns as f64 / 1e3 / h.handshakes.max(1) as f64,
            );
        }
    }
    run.report.elapsed = began.elapsed();
    Ok(run.report)
}

/// `cpu_ns` over `seconds` of `cpus` CPUs, percent.
fn busy_pct(cpu_ns: u64, seconds: f64, cpus: f64) -> f64 {
    cpu_ns as f64 / 1e9 / (seconds * cpus).max(1e-9) * 100.0
}

/// A target and whether throng met it: (text, met).
fn verdict(value: Option<f64>, target: f64, at_most: bool) -> (String, String) {
    let want = if at_most {
        format!("<= {target}")
    } else {
        format!(">= {target}")
    };
    let met = match value {
        None => "not measured".to_string(),
        Some(v) if (at_most && v <= target) || (!at_most && v >= target) => "yes".into(),
        Some(_) => "**no**".into(),
    };
    (want, met)
}

/// The rows of the table (figure, throng, tokio-tungstenite, ratio, target, met), for each
/// throng backend.
fn rows(r: &Report) -> Vec<[String; 6]> {
    let plan = r.plan.clone().unwrap_or_else(Plan::full);
    let echo = format!(
        "{} B x {}",
        plan.echo_size,
        crate::report::group(plan.echo_conns as u64)
    );
    let cell = |key: &str, s: ServerKind, scale: f64, digits: usize| {
        r.median(key, s)
            .map(|v| format!("{:.*}", digits, v / scale))
            .unwrap_or_else(|| "-".into())
    };
    let tung = ServerKind::Tungstenite;
    let mut out = Vec::new();
    for throng in [ServerKind::ThrongUring, ServerKind::ThrongEpoll] {
        let backend = if throng == ServerKind::ThrongUring {
            "io_uring"
        } else {
            "epoll"
        };
        let ratio = |key: &str| Some(r.median(key, throng)? / r.median(key, tung)?);
        let mem = r.median(MEMORY, throng).map(|v| v / 1000.0);
        let (t, m) = verdict(mem, 2.5, true);
        out.push([
            format!(
                "memory per idle wss connection at {}, KB ({backend})",
                crate::report::group(plan.idle_conns as u64)
            ),
            cell(MEMORY, throng, 1000.0, 2),
            cell(MEMORY, tung, 1000.0, 2),
            ratio(MEMORY)
                .map(|x| format!("{:.2}x less", 1.0 / x))
                .unwrap_or("-".into()),
            format!("throng {t} KB"),
            m,
        ]);
        let (t, m) = verdict(ratio(ECHO), 2.0, false);
        out.push([
            format!("echo {echo} wss, msg/s ({backend})"),
            cell(ECHO, throng, 1.0, 0),
            cell(ECHO, tung, 1.0, 0),
            ratio(ECHO)
                .map(|x| format!("{x:.2}x"))
                .unwrap_or("-".into()),
            format!("{t}x"),
            m,
        ]);
        let wss_ws = r
            .median(ECHO, throng)
            .zip(r.median(ECHO_WS, throng))
            .map(|(a, b)| a / b);
        let (t, m) = verdict(wss_ws, 0.75, false);
        out.push([
            format!("throng wss/ws echo {echo} ({backend})"),
            format!(
                "{} / {}",
                cell(ECHO, throng, 1.0, 0),
                cell(ECHO_WS, throng, 1.0, 0)
            ),
            "-".into(),
            wss_ws.map(|x| format!("{x:.2}")).unwrap_or("-".into()),
            t,
            m,
        ]);
        let cpu_ratio = r
            .median(ECHO_WS_CPU, throng)
            .zip(r.median(ECHO_CPU, throng))
            .map(|(ws, wss)| ws / wss);
        out.push([
            format!(
                "diagnostic: server CPU per echo, ns: wss / ws, tokio-tungstenite wss ({backend})"
            ),
            format!(
                "{} / {}",
                cell(ECHO_CPU, throng, 1.0, 0),
                cell(ECHO_WS_CPU, throng, 1.0, 0)
            ),
            cell(ECHO_CPU, tung, 1.0, 0),
            cpu_ratio
                .map(|x| format!("ws/wss {x:.2}"))
                .unwrap_or("-".into()),
            "-".into(),
            "-".into(),
        ]);
        let (t, m) = verdict(ratio(HANDSHAKES), 1.5, false);
        out.push([
            format!(
                "wss handshakes/s, {} in progress ({backend})",
                plan.handshake_concurrency
            ),
            cell(HANDSHAKES, throng, 1.0, 0),
            cell(HANDSHAKES, tung, 1.0, 0),
            ratio(HANDSHAKES)
                .map(|x| format!("{x:.2}x"))
                .unwrap_or("-".into()),
            format!("{t}x"),
            m,
        ]);
        out.push([
            format!("diagnostic: server CPU per wss handshake, us ({backend})"),
            cell(HANDSHAKE_CPU, throng, 1.0, 0),
            cell(HANDSHAKE_CPU, tung, 1.0, 0),
            ratio(HANDSHAKE_CPU)
                .map(|x| format!("{:.2}x less", 1.0 / x))
                .unwrap_or("-".into()),
            "-".into(),
            "-".into(),
        ]);
        let busy = |s: ServerKind| {
            [ECHO_BUSY, ECHO_WS_BUSY, HANDSHAKE_BUSY]
                .map(|k| r.median(k, s))
                .map(|v| v.map_or("-".into(), |v| format!("{v:.0}")))
                .join(" / ")
        };
        let all_busy = [ECHO_BUSY, ECHO_WS_BUSY, HANDSHAKE_BUSY]
            .iter()
            .flat_map(|k| [r.median(k, throng), r.median(k, tung)])
            .flatten()
            .all(|v| v >= 90.0);
        out.push([
            format!(
                "check: server busy, % of its CPU, in wss echo / ws echo / handshakes ({backend})"
            ),
            busy(throng),
            busy(tung),
            match r.cap {
                Some(c) => format!("cap {c} CPU"),
                None => "no cap".into(),
            },
            "~100".into(),
            if all_busy { "yes" } else { "**no**" }.into(),
        ]);
    }
    out
}

/// The report as markdown.
pub fn markdown(r: &Report) -> String {
    let mut s = String::new();
    let plan = r.plan.clone().unwrap_or_else(Plan::full);
    let _ = writeln!(
        s,
        "# wss://: throng against tokio-tungstenite over tokio-rustls\n"
    );
    let placed = match r.cap {
        Some(c) => format!(
            "each server one worker thread pinned to a CPU and, in the echo and handshake \
             rows, capped at {c} CPU by a cgroup v1 CFS quota (period {} ms; either server \
             the same way) while the load generator runs on every CPU, so that the server \
             bounds each rate (the check row: server CPU over its quota in each window)",
            CAP_PERIOD_US / 1000
        ),
        None => "each server one worker thread pinned to its CPU, uncapped (no writable \
                 cgroup here), the load generator on the other CPUs (the check row: server \
                 CPU over one CPU in each window)"
            .into(),
    };
    let _ = writeln!(
        s,
        "`{}` on {}; {} round(s), medians; {:.0} s in all. Same rustls (ring), same \
         certificate, same `ServerConfig`; {placed}; the load generator is throng-load's \
         rustls client (full handshakes, no resumption).\n",
        r.command,
        r.machine,
        plan.rounds,
        r.elapsed.as_secs_f64()
    );
    let _ = writeln!(
        s,
        "| figure | throng | tokio-tungstenite | ratio | target | met |\n| --- | ---: | ---: | ---: | --- | --- |"
    );
    for row in rows(r) {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} |",
            row[0], row[1], row[2], row[3], row[4], row[5]
        );
    }
    for (server, why) in &r.unavailable {
        let _ = writeln!(s, "\n{server}: not measured ({why})");
    }
    let _ = writeln!(
        s,
        "\nMemory: server RSS growth over {} idle wss connections, each used once (one 64 B \
         echo), over the count (no CPU cap). Echo: {} connections, one {} B message in flight each. \
         Handshakes: TCP connect, full TLS handshake, upgrade, reset after the 101, {} in \
         progress.",
        crate::report::group(plan.idle_conns as u64),
        crate::report::group(plan.echo_conns as u64),
        plan.echo_size,
        plan.handshake_concurrency
    );
    s
}

/// The report as JSON (every round of every figure).
pub fn json(r: &Report) -> Value {
    let figures: Vec<Value> = r
        .values
        .iter()
        .map(|(k, s, v)| json!({"figure": k, "server": s.id(), "rounds": v.rounds, "median": v.median()}))
        .collect();
    json!({
        "command": r.command,
        "machine": r.machine,
        "server_cpu_cap": r.cap,
        "seconds": r.elapsed.as_secs_f64(),
        "figures": figures,
        "unavailable": r.unavailable.iter().map(|(s, w)| json!({"server": s.id(), "why": w})).collect::<Vec<_>>(),
    })
}
