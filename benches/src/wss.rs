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

use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use throng_load::measure::{self as client, Load, Target, Window};
use throng_load::tls::Tls;

use crate::compare::{self, median};
use crate::servers::ServerKind;
use crate::sys::{ServerProcess, Started};

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
    /// Print progress to stderr.
    pub progress: bool,
    /// The command line, for the report.
    pub command: String,
}

impl Options {
    /// Defaults: 1 worker thread on the first allowed CPU, the load on the others (as
    /// `compare` places them).
    pub fn new(plan: Plan, server_exe: PathBuf) -> Options {
        let placed = compare::Options::new(compare::Profile::Smoke, server_exe.clone());
        Options {
            plan,
            server_exe,
            dir: PathBuf::from("target/throng-bench/wss"),
            threads: 1,
            server_cpus: placed.server_cpus,
            load_cpus: placed.load_cpus,
            progress: true,
            command: String::new(),
        }
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

    /// Starts `server` (over TLS when `tls`), runs `f` against it, stops it. `None`: it
    /// cannot run here.
    fn with_server<T>(
        &mut self,
        server: ServerKind,
        tls: bool,
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
    for round in 0..plan.rounds {
        let order = |live: Vec<ServerKind>| -> Vec<ServerKind> {
            let n = live.len().max(1);
            (0..live.len()).map(|i| live[(i + round) % n]).collect()
        };
        for server in order(run.live()) {
            let Some(m) = run.with_server(server, true, |t| {
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
        for server in order(run.live()) {
            let throng = server != ServerKind::Tungstenite;
            // throng's ws echo right before its wss echo: the ratio compares neighbours.
            let modes: &[bool] = if throng { &[false, true] } else { &[true] };
            for &tls in modes {
                let l = if tls { &wss } else { &ws };
                let Some(r) = run.with_server(server, tls, |t| {
                    client::echo(t, l, plan.echo_conns, plan.echo_size, plan.window)
                })?
                else {
                    break;
                };
                let key = if tls { ECHO } else { ECHO_WS };
                run.say(format_args!(
                    "[{} echo {} B x {} r{}] {server}: {:.0} msg/s, {:.0} ns server CPU/msg",
                    if tls { "wss" } else { "ws" },
                    plan.echo_size,
                    plan.echo_conns,
                    round + 1,
                    r.rate(),
                    r.server_ns_per_message()
                ));
                run.report.push(key, server, r.rate());
                let cpu = if tls { ECHO_CPU } else { ECHO_WS_CPU };
                run.report.push(cpu, server, r.server_ns_per_message());
            }
        }
        for server in order(run.live()) {
            let Some(h) = run.with_server(server, true, |t| {
                client::handshakes(t, &wss, plan.handshake_concurrency, plan.window)
            })?
            else {
                continue;
            };
            run.say(format_args!(
                "[wss handshakes r{}] {server}: {:.0}/s ({} failed), server CPU {:.0} us each",
                round + 1,
                h.rate(),
                h.failed,
                h.server_cpu_ns as f64 / 1e3 / h.handshakes.max(1) as f64
            ));
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
    let _ = writeln!(
        s,
        "`{}` on {}; {} round(s), medians; {:.0} s in all. Same rustls (ring), same \
         certificate, same `ServerConfig`; each server one worker thread pinned to its \
         CPU; the load generator is throng-load's rustls client (full handshakes, no \
         resumption).\n",
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
         echo), over the count. Echo: {} connections, one {} B message in flight each. \
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
        "seconds": r.elapsed.as_secs_f64(),
        "figures": figures,
        "unavailable": r.unavailable.iter().map(|(s, w)| json!({"server": s.id(), "why": w})).collect::<Vec<_>>(),
    })
}
