//! Smoke test of `throng-load attack` (the built binary), every mode with small counts on
//! both backends, against an echo server that is this test binary run with `--addr`
//! (the engine's defaults, as `examples/echo`, except shorter handshake, ping and pong
//! timeouts so that slowloris and half-open peers are dealt with within seconds).
//!
//! Each mode must leave the canary without a lost message, the server alive with every
//! attacking connection let go, and its RSS back within 24 MiB of where it started (the
//! margin of `engine/tests/memory.rs`); and each must have attacked: slowloris heads
//! closed by the server, garbage answered with a protocol close code, half-open peers
//! found by the server's pings. The half-open mode needs root (a network namespace); it
//! is skipped, and says so, without.

use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use throng_engine::{
    BackendChoice, Config, Decision, Handler, Message, Server, ShutdownSignals, UpgradeRequest,
    WebSocket, testing,
};

struct Echo;

impl Handler for Echo {
    type State = ();
    fn on_upgrade<'r>(&mut self, _req: &UpgradeRequest<'r>) -> Decision<'r, ()> {
        Decision::accept(())
    }
    fn on_message(&mut self, ws: &mut WebSocket<'_, ()>, msg: Message<'_>) {
        let _ = ws.send(msg);
    }
}

/// The server side: `--addr A --backend B`.
fn serve(args: &[String]) -> ExitCode {
    let value = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .expect("flag given")
    };
    let mut cfg = Config::new(value("--addr").parse().expect("address"))
        .with_backend(
            value("--backend")
                .parse::<BackendChoice>()
                .expect("backend"),
        )
        .with_workers(2)
        .with_pinning(false);
    cfg.handshake_timeout = Duration::from_secs(1);
    cfg.ping_interval = Some(Duration::from_millis(500));
    cfg.pong_timeout = Duration::from_millis(500);
    cfg.close_timeout = Duration::from_millis(500);
    cfg.timer_tick = Duration::from_millis(50);
    let signals = ShutdownSignals::block().expect("signals");
    let server = Server::start(cfg, |_| Echo).expect("server starts");
    println!(
        "echo listening on ws://{}/ backend={}",
        server.local_addr(),
        server.backend().name()
    );
    let _ = signals.wait();
    match server.shutdown() {
        Ok(_) => ExitCode::SUCCESS,
        Err(_) => ExitCode::FAILURE,
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--addr") {
        return serve(&args);
    }
    // `cargo test` passes filters and flags meant for libtest; this test has one case.
    if args.iter().any(|a| a == "--list") {
        println!("attack_modes_smoke: test");
        return ExitCode::SUCCESS;
    }
    let root = unsafe_free_euid() == 0;
    let modes = if root {
        "all"
    } else {
        eprintln!("!!!!!!!!!! half-open SKIPPED: needs root for a network namespace !!!!!!!!!!");
        "slowloris,flood,garbage,rst-storm,connect-storm"
    };
    for backend in testing::backends() {
        let name = format!("{backend:?}").to_lowercase();
        smoke(&name, modes);
    }
    println!("test attack_modes_smoke ... ok");
    ExitCode::SUCCESS
}

/// The effective user id, read from `/proc/self/status` (no unsafe in tests).
fn unsafe_free_euid() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|v| v.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(u32::MAX)
}

fn smoke(backend: &str, modes: &str) {
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_throng-load"))
        .args(["attack", "--server-bin"])
        .arg(std::env::current_exe().expect("this binary"))
        .args(["--backend", backend, "--modes", modes, "--small"])
        .args(["--release-timeout", "10"])
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .expect("throng-load runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!(
        "{backend}: {:.0} s\n{stdout}",
        started.elapsed().as_secs_f64()
    );
    let results: Vec<Value> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let expected = modes
        .split(',')
        .count()
        .max(if modes == "all" { 6 } else { 0 });
    assert_eq!(results.len(), expected, "{backend}: one JSON line per mode");
    for r in &results {
        let mode = r["mode"].as_str().unwrap();
        let what = format!("{backend} {mode}: {r}");
        assert_eq!(r["ok"], Value::Bool(true), "{what}");
        let canary = &r["canary"];
        // The canary ran through the mode (a second at least: half-open is over fast).
        assert!(canary["echoed"].as_u64().unwrap() >= 8, "{what}");
        assert_eq!(canary["lost"], 0, "{what}");
        let (before, after) = (
            r["rss_mib"]["before"].as_f64().unwrap(),
            r["rss_mib"]["after"].as_f64().unwrap(),
        );
        assert!(after <= before + 24.0, "{what}");
        assert!(r["released_after_s"].is_number(), "{what}");
        let a = &r["attack"];
        let n = |k: &str| a[k].as_u64().unwrap_or(0);
        match mode {
            "slowloris" => {
                assert_eq!(n("connected"), 300, "{what}");
                // Within the 3 s the 1 s handshake timeout ends every head.
                assert_eq!(n("closed_by_server"), 300, "{what}");
            }
            "flood" => {
                assert_eq!(n("connections"), 4, "{what}");
                assert!(n("messages_sent") >= 4, "{what}");
                assert!(
                    r["rss_mib"]["peak"].as_f64().unwrap() >= before + 4.0,
                    "the flood raised no memory: {what}"
                );
            }
            "half-open" => {
                assert_eq!(n("opened"), 50, "{what}");
                let peak = r["fds"]["peak"].as_u64().unwrap();
                assert!(peak >= r["fds"]["before"].as_u64().unwrap() + 50, "{what}");
                // Ping after 0.5 s of silence, pong due 0.5 s later, close 0.5 s: well
                // under 5 s, not the kernel's retransmission timeout.
                assert!(r["released_after_s"].as_f64().unwrap() < 5.0, "{what}");
            }
            "garbage" => {
                assert!(n("connections") >= 50, "{what}");
                assert_eq!(n("left_open"), 0, "{what}");
                assert_eq!(n("failures"), 0, "{what}");
                for (kind, endings) in a["endings"].as_object().unwrap() {
                    for code in endings.as_object().unwrap().keys() {
                        let want = if kind.contains("UTF-8") {
                            "1007"
                        } else {
                            "1002"
                        };
                        assert_eq!(code, want, "{kind}: {what}");
                    }
                }
            }
            "rst-storm" => assert!(n("resets") >= 100, "{what}"),
            "connect-storm" => assert!(n("connects") >= 1000, "{what}"),
            other => panic!("unknown mode {other}"),
        }
    }
    assert!(
        out.status.success(),
        "{backend}: exit status {}",
        out.status
    );
}
