//! `throng-load attack`: the attack run of issue 18. For each backend and each mode it
//! starts the echo server anew, warms it up, starts the [`canary`], takes the server's
//! RSS, descriptors and CPU time, runs the mode (bounded in count and time, on loopback or
//! in a network namespace it makes), waits for the server to let every attacking
//! connection go, and reads the memory again. Each result is a JSON line on stdout; the
//! run ends with a markdown table. A mode fails when the canary lost a message or had to
//! reconnect, the server died, kept attacking connections past the release timeout, or its
//! RSS stayed more than the margin above where it started, or the attack could not be
//! set up. What the server does to the attackers (refusing, resetting, closing them) is
//! reported, not failed: that is its defence.
//!
//! Modes, one file each: [`slowloris`], [`flood`], [`halfopen`], [`garbage`], [`rst`],
//! [`connect_storm`].

pub mod canary;
pub mod connect_storm;
pub mod flood;
pub mod garbage;
pub mod halfopen;
pub mod probe;
pub mod report;
pub mod rst;
pub mod server;
pub mod slowloris;
pub mod ws;

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::frame::{self, Event, Parser};

/// One attack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// [`slowloris`].
    Slowloris,
    /// [`flood`].
    Flood,
    /// [`halfopen`].
    HalfOpen,
    /// [`garbage`].
    Garbage,
    /// [`rst`].
    Rst,
    /// [`connect_storm`].
    ConnectStorm,
}

impl Mode {
    /// Every mode, in the order of a run.
    pub const ALL: [Mode; 6] = [
        Mode::Slowloris,
        Mode::Flood,
        Mode::HalfOpen,
        Mode::Garbage,
        Mode::Rst,
        Mode::ConnectStorm,
    ];

    /// Its name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Slowloris => "slowloris",
            Mode::Flood => "flood",
            Mode::HalfOpen => "half-open",
            Mode::Garbage => "garbage",
            Mode::Rst => "rst-storm",
            Mode::ConnectStorm => "connect-storm",
        }
    }

    /// The mode called `name`.
    pub fn parse(name: &str) -> Option<Mode> {
        Mode::ALL.into_iter().find(|m| m.name() == name)
    }
}

/// How hard and how long.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Slowloris connections.
    pub slowloris: usize,
    /// Flood connections.
    pub flood: usize,
    /// Bytes of each flood message.
    pub flood_size: usize,
    /// Half-open peers.
    pub half_open: usize,
    /// Length of each mode's attack.
    pub duration: Duration,
    /// Threads of the garbage and RST modes.
    pub threads: usize,
}

impl Plan {
    /// The counts of issue 18: 10,000 slowloris, 32 flooding peers with 16 MiB
    /// messages, 1,000 half-open peers, 15 s each.
    pub fn full() -> Plan {
        Plan {
            slowloris: 10_000,
            flood: 32,
            flood_size: 16 << 20,
            half_open: 1_000,
            duration: Duration::from_secs(15),
            threads: 2,
        }
    }

    /// Small counts for a smoke test.
    pub fn small() -> Plan {
        Plan {
            slowloris: 300,
            flood: 4,
            flood_size: 4 << 20,
            half_open: 50,
            duration: Duration::from_secs(3),
            threads: 2,
        }
    }
}

/// What `attack` was asked to do.
#[derive(Debug, Clone)]
pub struct Options {
    /// The echo server binary (`--addr HOST:PORT --backend NAME` are passed to it).
    pub server_bin: PathBuf,
    /// Extra arguments for it.
    pub server_args: Vec<String>,
    /// Backends, in order.
    pub backends: Vec<String>,
    /// Modes, in order.
    pub modes: Vec<Mode>,
    /// Counts and times.
    pub plan: Plan,
    /// How far above its starting RSS the server may stay afterwards.
    pub margin: u64,
    /// Longest wait for the server to let attacking connections go (half-open: this
    /// plus 45 s, its ping interval and pong timeout).
    pub release_timeout: Duration,
    /// Where the markdown table goes (and the JSON lines, beside it with `.json`).
    pub out: Option<PathBuf>,
}

/// Bytes in a MiB.
pub const MIB: u64 = 1 << 20;

/// Runs every mode on every backend; true if all passed.
pub fn run(opts: &Options) -> io::Result<bool> {
    crate::sys::raise_nofile();
    let mut results = Vec::new();
    for backend in &opts.backends {
        for &mode in &opts.modes {
            eprintln!("throng-load attack: {backend} {} ...", mode.name());
            let r = one(opts, backend, mode).unwrap_or_else(|e| {
                json!({"backend": backend, "mode": mode.name(), "ok": false,
                       "problems": [format!("could not run: {e}")]})
            });
            println!("{r}");
            results.push(r);
        }
    }
    let table = report::table(&results);
    println!("{table}");
    if let Some(path) = &opts.out {
        std::fs::write(path, &table)?;
        let lines: String = results.iter().map(|r| format!("{r}\n")).collect();
        std::fs::write(path.with_extension("json"), lines)?;
    }
    Ok(results.iter().all(|r| r["ok"] == json!(true)))
}

/// One mode on one backend, with a server of its own.
fn one(opts: &Options, backend: &str, mode: Mode) -> io::Result<Value> {
    let netns = match mode {
        Mode::HalfOpen => Some(halfopen::Netns::create()?),
        _ => None,
    };
    let ip = match &netns {
        Some(ns) => IpAddr::V4(ns.host_ip),
        None => IpAddr::V4(Ipv4Addr::LOCALHOST),
    };
    let mut server = server::Server::start(&opts.server_bin, ip, backend, &opts.server_args)?;
    let (pid, addr) = (server.pid(), server.addr);
    warm_up(addr)?;
    let canary = canary::Canary::start(addr);
    let fds_before = settle(pid);
    let rss_before = probe::rss(pid).unwrap_or(0);
    let cpu_before = probe::cpu_seconds(pid).unwrap_or((0.0, 0.0));
    let sampler = probe::Sampler::start(pid);
    let started = Instant::now();

    let attack = match mode {
        Mode::Slowloris => slowloris::run(addr, &opts.plan),
        Mode::Flood => flood::run(addr, &opts.plan),
        Mode::HalfOpen => halfopen::run(addr, &opts.plan, netns.as_ref().expect("made above")),
        Mode::Garbage => garbage::run(addr, &opts.plan),
        Mode::Rst => rst::run(addr, &opts.plan),
        Mode::ConnectStorm => connect_storm::run(addr, &opts.plan),
    };
    let attack_s = started.elapsed().as_secs_f64();
    let (attack, setup_failed) = match attack {
        Ok(v) => (v, None),
        Err(e) => (json!({}), Some(format!("the attack could not run: {e}"))),
    };

    // The attackers are gone from this side; the server lets go of them in its own time.
    let release_timeout = match mode {
        Mode::HalfOpen => opts.release_timeout + Duration::from_secs(45),
        _ => opts.release_timeout,
    };
    let ended = Instant::now();
    let mut released = None;
    while ended.elapsed() < release_timeout {
        match probe::fds(pid) {
            Some(n) if n <= fds_before => {
                released = Some(ended.elapsed().as_secs_f64());
                break;
            }
            Some(_) => std::thread::sleep(Duration::from_millis(100)),
            None => break,
        }
    }
    let fds_after = probe::fds(pid);
    // Then memory, a second later (a quiet worker trims its heap on a timer), and if it
    // is still above the margin, for up to ten seconds more.
    std::thread::sleep(Duration::from_secs(1));
    let mut rss_after = probe::rss(pid);
    let back = Instant::now();
    while let Some(r) = rss_after
        && r > rss_before + opts.margin
        && back.elapsed() < Duration::from_secs(10)
    {
        std::thread::sleep(Duration::from_millis(200));
        rss_after = probe::rss(pid);
    }
    // Where it is, when it did not come back.
    let stuck = rss_after.is_some_and(|r| r > rss_before + opts.margin);
    let mappings = if stuck {
        probe::largest_mappings(pid, 4)
    } else {
        Vec::new()
    };
    let peaks = sampler.stop();
    let wall = started.elapsed().as_secs_f64();
    let cpu_after = probe::cpu_seconds(pid).unwrap_or(cpu_before);
    let canary = canary.stop();
    let alive = server.alive();
    let exit = server.stop();
    drop(netns);

    let (user, sys) = (cpu_after.0 - cpu_before.0, cpu_after.1 - cpu_before.1);
    let mut problems = Vec::new();
    if !alive {
        problems.push("the server died".to_string());
    }
    if let Err(e) = &exit {
        problems.push(e.clone());
    }
    if canary.lost > 0 || canary.reconnects > 0 || canary.connect_failures > 0 {
        problems.push(format!(
            "canary: {} lost, {} reconnects, {} failed connects",
            canary.lost, canary.reconnects, canary.connect_failures
        ));
    }
    if canary.echoed == 0 {
        problems.push("canary: no echo at all".into());
    }
    if released.is_none() {
        problems.push(format!(
            "the server still had {} descriptors (before: {fds_before}) {:.0} s after the attack",
            fds_after.unwrap_or(0),
            release_timeout.as_secs_f64()
        ));
    }
    match rss_after {
        Some(r) if r <= rss_before + opts.margin => {}
        Some(r) => problems.push(format!(
            "RSS stayed at {} MiB (before {} MiB, margin {} MiB)",
            r / MIB,
            rss_before / MIB,
            opts.margin / MIB
        )),
        None => problems.push("no RSS after".into()),
    }
    problems.extend(setup_failed);
    if mode == Mode::HalfOpen && attack["opened"].as_u64() != Some(opts.plan.half_open as u64) {
        problems.push(format!(
            "half-open: {} of {} peers opened ({})",
            attack["opened"], opts.plan.half_open, attack["error"]
        ));
    }
    let mib = |b: u64| (b as f64 / MIB as f64 * 10.0).round() / 10.0;
    Ok(json!({
        "backend": backend,
        "mode": mode.name(),
        "server": server_banner(&opts.server_bin),
        "attack": attack,
        "attack_s": (attack_s * 10.0).round() / 10.0,
        "canary": canary.to_json(),
        "rss_mib": {
            "before": mib(rss_before),
            "peak": mib(peaks.rss.max(rss_before)),
            "after": rss_after.map(mib),
        },
        "fds": {"before": fds_before, "peak": peaks.fds, "after": fds_after},
        "released_after_s": released.map(|s| (s * 10.0).round() / 10.0),
        "cpu": {
            "user_s": (user * 100.0).round() / 100.0,
            "sys_s": (sys * 100.0).round() / 100.0,
            "wall_s": (wall * 10.0).round() / 10.0,
            "percent_of_a_core": ((user + sys) / wall.max(1e-9) * 1000.0).round() / 10.0,
        },
        "largest_mappings_kib": mappings,
        "ok": problems.is_empty(),
        "problems": problems,
    }))
}

fn server_banner(bin: &std::path::Path) -> String {
    bin.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Pools, arenas and the allocator's first arenas, before the baseline: 20 echoes of
/// 100 KB (as `engine/tests/memory.rs` does).
fn warm_up(addr: SocketAddr) -> io::Result<()> {
    let mut s = ws::websocket(addr, Ipv4Addr::LOCALHOST, 0x3a3a)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let message = frame::masked_frame(frame::BINARY, &vec![1u8; 100_000]);
    let mut parser = Parser::default();
    let mut buf = vec![0u8; 64 << 10];
    for _ in 0..20 {
        s.write_all(&message)?;
        let mut got = false;
        while !got {
            let n = s.read(&mut buf)?;
            if n == 0 {
                return Err(io::Error::other("closed during the warm-up"));
            }
            parser
                .feed(&buf[..n], &mut |ev| {
                    got |= matches!(ev, Event::Message { .. })
                })
                .map_err(|e| io::Error::other(format!("warm-up: {e:?}")))?;
        }
    }
    s.write_all(&frame::close_frame())?;
    Ok(())
}

/// Waits (at most 3 s) until the server's descriptor count is stable over 500 ms (the
/// warm-up connection closed) and returns it.
fn settle(pid: u32) -> u64 {
    let mut last = probe::fds(pid).unwrap_or(0);
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
        let now = probe::fds(pid).unwrap_or(0);
        if now == last {
            break;
        }
        last = now;
    }
    last
}
