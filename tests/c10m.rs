//! Runs the C10M example (`examples/c10m`) at a small N on each backend and checks its JSON
//! report: 2,000 connections, a 2-second hold, no failure; then the same over `wss://`
//! (`--tls`) in two server and two client processes (`--per-process 1000`).
//!
//! The example is built first, in the profile and target directory of this test, with
//! `cargo build --example c10m -p throng` (a no-op when it is up to date; `cargo test`
//! builds examples too, but `cargo test --test c10m` would not). The load generator is the
//! measuring instrument, so it is always the optimized one: `cargo build --release -p
//! throng-load` (it is another package's binary, which `cargo test` never builds), passed
//! to the example as `THRONG_LOAD`. Set `THRONG_LOAD` to use another one.
//!
//! Backends: `THRONG_TEST_BACKENDS` (comma list: epoll,uring) runs exactly those; by default
//! both run, and io_uring is skipped only when the engine reports it unavailable (the
//! example exits with status 3).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const CONNECTIONS: u64 = 2_000;
/// Exit status of the example when the backend asked for is not available.
const EXIT_UNSUPPORTED: i32 = 3;
/// A run that takes longer than this has hung.
const RUN_TIMEOUT: Duration = Duration::from_secs(90);

/// `target/<profile>` of this test binary (`target/<profile>/deps/c10m-HASH`).
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("own path");
    let deps = exe.parent().expect("deps directory");
    deps.parent().expect("profile directory").to_path_buf()
}

/// `cargo build --profile PROFILE WHAT` into the target directory of this test.
fn cargo_build(target_dir: &Path, profile: &str, what: &[&str]) {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .arg("build")
        .args(["--profile", profile])
        .args(what)
        .arg("--target-dir")
        .arg(target_dir)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(Stdio::null())
        .status()
        .expect("run cargo");
    assert!(status.success(), "cargo build {what:?} failed: {status}");
}

/// Runs the example; returns its exit code, stdout and stderr.
fn run_example(
    exe: &Path,
    load: &Path,
    backend: &str,
    extra: &[&str],
) -> (Option<i32>, String, String) {
    let tag = extra.concat().replace('-', "");
    let dir = std::env::temp_dir().join(format!("throng-c10m-test-{}-{tag}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out_path = dir.join(format!("{backend}.out"));
    let err_path = dir.join(format!("{backend}.err"));
    let mut child = Command::new(exe)
        .args(["--connections", &CONNECTIONS.to_string()])
        .args(["--hold", "2", "--ping-interval", "1", "--backend", backend])
        .arg("--json")
        .args(extra)
        .env("THRONG_LOAD", load)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .expect("start the c10m example");
    let started = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if started.elapsed() > RUN_TIMEOUT {
            // Our own child, by handle; its server and load processes see EOF and exit.
            let _ = child.kill();
            let _ = child.wait();
            let err = std::fs::read_to_string(&err_path).unwrap_or_default();
            panic!("c10m on {backend} did not finish in {RUN_TIMEOUT:?}; stderr:\n{err}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = std::fs::read_to_string(&out_path).unwrap_or_default();
    let err = std::fs::read_to_string(&err_path).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&dir);
    (status.code(), out, err)
}

fn num(report: &Value, key: &str) -> f64 {
    report[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} missing or not a number in {report}"))
}

#[test]
fn c10m_example_small_run_on_each_backend() {
    small_run(&[]);
}

#[test]
fn c10m_example_small_run_over_tls_in_two_processes_on_each_backend() {
    small_run(&["--tls", "--per-process", "1000"]);
}

fn small_run(extra: &[&str]) {
    let tls = extra.contains(&"--tls");
    let dir = profile_dir();
    let target_dir = dir.parent().expect("target directory");
    let profile = match dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => "dev",
        Some(p) => p,
    };
    cargo_build(target_dir, profile, &["-p", "throng", "--example", "c10m"]);
    let exe = dir.join("examples").join("c10m");
    assert!(exe.is_file(), "{} was not built", exe.display());
    let load = match std::env::var_os("THRONG_LOAD") {
        Some(p) => PathBuf::from(p),
        None => {
            let what = ["-p", "throng-load", "--bin", "throng-load"];
            cargo_build(target_dir, "release", &what);
            target_dir.join("release").join("throng-load")
        }
    };
    assert!(load.is_file(), "{} was not built", load.display());

    let mut ran = 0;
    for backend in throng::engine::testing::backend_names() {
        let (code, out, err) = run_example(&exe, &load, backend, extra);
        assert_ne!(
            code,
            Some(EXIT_UNSUPPORTED),
            "the engine reports {backend} unavailable although the probe passed: {err}"
        );
        assert_eq!(
            code,
            Some(0),
            "c10m on {backend} failed\nstdout:\n{out}\nstderr:\n{err}"
        );
        let last = out.lines().last().unwrap_or("");
        let report: Value = serde_json::from_str(last)
            .unwrap_or_else(|e| panic!("last stdout line is not JSON ({e}): {last:?}"));
        eprintln!("c10m on {backend}: {report}");

        assert_eq!(report["connections"].as_u64(), Some(CONNECTIONS));
        assert_eq!(report["backend"].as_str(), Some(backend));
        assert_eq!(report["tls"].as_bool(), Some(tls), "{report}");
        if tls {
            assert_eq!(report["server_processes"].as_u64(), Some(2), "{report}");
            assert_eq!(report["client_processes"].as_u64(), Some(2), "{report}");
        }
        assert_eq!(report["failures"].as_u64(), Some(0), "{report}");
        assert_eq!(report["open_on_server"].as_u64(), Some(CONNECTIONS));
        assert_eq!(report["broadcast_received"].as_u64(), Some(CONNECTIONS));
        assert_eq!(report["closed_cleanly"].as_u64(), Some(CONNECTIONS));
        assert!(num(&report, "server_processes") >= 1.0);
        assert!(num(&report, "handshakes_per_s") > 0.0);
        // Positive and below anything plausible: the record is 48 B; one process's
        // receive buffer and slab growth spread over only 2,000 connections add some.
        let user = num(&report, "user_bytes_per_conn");
        // TLS adds the session of an idle connection (rustls' unbuffered one, ~2.2 KB) and
        // each process's TLS buffers spread over its 1,000 connections; a buffered session
        // per connection (6 KB and more) would not fit.
        let most = if tls { 8192.0 } else { 4096.0 };
        assert!((0.0..=most).contains(&user), "user_bytes_per_conn {user}");
        // A TCP socket alone is over a kilobyte of slab; other work on the host adds noise.
        let kernel = num(&report, "kernel_bytes_per_conn");
        assert!(
            (0.0..=1_000_000.0).contains(&kernel),
            "kernel_bytes_per_conn {kernel}"
        );
        // A ping a second for two seconds: every connection answers at least one.
        let pings = num(&report, "pings_answered");
        assert!(pings >= CONNECTIONS as f64, "pings_answered {pings}");
        let cpu = num(&report, "heartbeat_cpu_pct");
        assert!((0.0..=400.0).contains(&cpu), "heartbeat_cpu_pct {cpu}");
        let ms = num(&report, "broadcast_ms");
        assert!(ms > 0.0 && ms < 30_000.0, "broadcast_ms {ms}");
        ran += 1;
    }
    assert!(ran > 0, "no backend ran");
}
