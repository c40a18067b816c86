//! `throng-load echo` (the built binary) against real throng servers on loopback: closed
//! loop in one process, a fixed rate spread over two processes, latency that a slow
//! server must show, echoes that do not match or never open reported as errors, and
//! `--child --hold-open`: the start on `go`, and connections kept until stdin ends with
//! the count of echoes exactly what the server handled (what `throng-bench count` uses).

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use throng_engine::{
    BackendChoice, CloseCode, Config, Decision, Handler, Message, Server, UpgradeRequest, WebSocket,
};

/// How the test server answers.
#[derive(Clone, Copy)]
enum Mode {
    Echo,
    /// Echo after blocking the worker this long (a server that takes time per message).
    Slow(Duration),
    /// Send back something else.
    Wrong,
}

struct Echo {
    mode: Mode,
    count: Arc<AtomicU64>,
}

impl Handler for Echo {
    type State = ();
    fn on_upgrade<'r>(&mut self, _req: &UpgradeRequest<'r>) -> Decision<'r, ()> {
        Decision::accept(())
    }
    fn on_message(&mut self, ws: &mut WebSocket<'_, ()>, msg: Message<'_>) {
        self.count.fetch_add(1, Ordering::Relaxed);
        match self.mode {
            Mode::Echo => {
                let _ = ws.send(msg);
            }
            Mode::Slow(d) => {
                std::thread::sleep(d);
                let _ = ws.send(msg);
            }
            Mode::Wrong => {
                let _ = ws.send_text("something else");
            }
        }
    }
}

fn server(mode: Mode, workers: usize) -> (Server<Echo>, Arc<AtomicU64>) {
    let cfg = Config::new("127.0.0.1:0".parse().unwrap())
        .with_workers(workers)
        .with_pinning(false)
        .with_backend(BackendChoice::Epoll);
    let count = Arc::new(AtomicU64::new(0));
    let c = count.clone();
    let server = Server::start(cfg, move |_| Echo {
        mode,
        count: c.clone(),
    })
    .expect("server starts");
    (server, count)
}

/// Runs `throng-load echo` with `args` (bounded: the run stops itself; a hang would
/// show as the test timing out) and returns its output and last stdout line.
fn echo(url: &str, args: &[&str]) -> (Output, Value) {
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_throng-load"))
        .args(["echo", "--url", url])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("throng-load runs");
    assert!(started.elapsed() < Duration::from_secs(30));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    let last = stdout
        .lines()
        .last()
        .unwrap_or_else(|| panic!("no output; stderr: {stderr}"));
    let v: Value = serde_json::from_str(last).expect("the last line is JSON");
    (out, v)
}

fn quantiles_ordered(v: &Value) {
    let q = |k: &str| v[k].as_f64().unwrap_or_else(|| panic!("{k} in {v}"));
    assert!(q("p50_us") > 0.0, "{v}");
    assert!(q("p50_us") <= q("p99_us"), "{v}");
    assert!(q("p99_us") <= q("p999_us"), "{v}");
    assert!(q("p999_us") <= q("max_us") * 1.001, "{v}");
}

#[test]
fn closed_loop_in_one_process() {
    let (server, count) = server(Mode::Echo, 2);
    let url = format!("ws://{}/", server.local_addr());
    let args = "--connections 50 --size 100 --duration 1 --warmup 0.3 --json";
    let (out, v) = echo(&url, &args.split(' ').collect::<Vec<_>>());
    assert!(out.status.success(), "{v}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1);
    assert_eq!(v["mode"], "closed-loop");
    assert_eq!(
        (v["processes"].as_u64(), v["open"].as_u64()),
        (Some(1), Some(50))
    );
    assert_eq!(
        (v["errors"].as_u64(), v["lost"].as_u64()),
        (Some(0), Some(0))
    );
    let messages = v["messages"].as_u64().unwrap();
    assert!(messages > 500, "{v}");
    // Every echo counted was a message the server handled.
    assert!(count.load(Ordering::Relaxed) >= messages);
    let rate = v["msgs_per_s"].as_f64().unwrap();
    let seconds = v["seconds"].as_f64().unwrap();
    assert!((rate - messages as f64 / seconds).abs() <= 1.0, "{v}");
    quantiles_ordered(&v);
    server.shutdown().unwrap();
}

#[test]
fn fixed_rate_spread_over_two_processes() {
    let (server, count) = server(Mode::Echo, 1);
    let url = format!("ws://{}/", server.local_addr());
    let args = "--connections 40 --size 64 --rate 2000 --duration 1 --warmup 0.2 --processes 2";
    let (out, v) = echo(&url, &args.split(' ').collect::<Vec<_>>());
    assert!(out.status.success(), "{v}");
    // Without --json, a summary for people comes first.
    assert!(String::from_utf8_lossy(&out.stdout).contains("msg/s over"));
    assert_eq!(v["mode"], "rate");
    assert_eq!(v["processes"], 2);
    assert_eq!(
        (v["connections"].as_u64(), v["open"].as_u64()),
        (Some(40), Some(40))
    );
    assert_eq!(
        (v["errors"].as_u64(), v["lost"].as_u64()),
        (Some(0), Some(0))
    );
    // The schedule, not the server, sets how many are sent: 2000/s for 1 s, both halves.
    let sent = v["sent"].as_u64().unwrap();
    assert!((1990..=2010).contains(&sent), "{v}");
    assert_eq!(v["messages"].as_u64(), Some(sent), "{v}");
    assert!(
        count.load(Ordering::Relaxed) >= sent + 300,
        "warm-up messages too"
    );
    quantiles_ordered(&v);
    server.shutdown().unwrap();
}

#[test]
fn a_slow_server_shows_in_the_latency() {
    // One worker that takes 3 ms per message; 150 messages/s leaves it idle half the time.
    let (server, _) = server(Mode::Slow(Duration::from_millis(3)), 1);
    let url = format!("ws://{}/", server.local_addr());
    let args = "--connections 4 --size 16 --rate 150 --duration 1 --warmup 0 --json";
    let (out, v) = echo(&url, &args.split(' ').collect::<Vec<_>>());
    assert!(out.status.success(), "{v}");
    assert!(v["p50_us"].as_f64().unwrap() >= 3000.0, "{v}");
    assert!(v["p50_us"].as_f64().unwrap() < 1_000_000.0, "{v}");
    server.shutdown().unwrap();
}

#[test]
fn wrong_echoes_and_refused_connections_are_errors() {
    let (server, _) = server(Mode::Wrong, 1);
    let url = format!("ws://{}/", server.local_addr());
    let args = "--connections 5 --size 64 --duration 0.3 --warmup 0 --json";
    let (out, v) = echo(&url, &args.split(' ').collect::<Vec<_>>());
    assert_eq!(out.status.code(), Some(1), "{v}");
    assert!(v["errors"].as_u64().unwrap() > 0, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("did not match"),
        "{v}"
    );
    server.shutdown().unwrap();

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (out, v) = echo(
        &format!("ws://127.0.0.1:{port}/"),
        &args.split(' ').collect::<Vec<_>>(),
    );
    assert_eq!(out.status.code(), Some(1), "{v}");
    assert_eq!(
        (v["open"].as_u64(), v["errors"].as_u64()),
        (Some(0), Some(5)),
        "{v}"
    );
    assert!(v["error"].as_str().unwrap().contains("refused"), "{v}");
}

#[test]
fn bad_arguments_are_usage_errors() {
    for args in [
        &["echo"][..],
        &[
            "echo",
            "--url",
            "ws://127.0.0.1:1/",
            "--connections",
            "5",
            "--size",
            "8",
        ],
        &[
            "echo",
            "--url",
            "ws://127.0.0.1:1/",
            "--connections",
            "5",
            "--size",
            "x",
            "--duration",
            "1",
        ],
        &[
            "echo",
            "--url",
            "ws://127.0.0.1:1/",
            "--connections",
            "5",
            "--size",
            "8",
            "--duration",
            "1",
            "--rate",
            "-3",
        ],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_throng-load"))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("runs");
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("usage:") && !err.contains("panicked"), "{err}");
    }
}

/// Counts what the server saw: messages, opens and closes.
#[derive(Default)]
struct Seen {
    messages: AtomicU64,
    opened: AtomicU64,
    closed: AtomicU64,
}

struct Counting(Arc<Seen>);

impl Handler for Counting {
    type State = ();
    fn on_upgrade<'r>(&mut self, _req: &UpgradeRequest<'r>) -> Decision<'r, ()> {
        Decision::accept(())
    }
    fn on_open(&mut self, _ws: &mut WebSocket<'_, ()>) {
        self.0.opened.fetch_add(1, Ordering::Relaxed);
    }
    fn on_message(&mut self, ws: &mut WebSocket<'_, ()>, msg: Message<'_>) {
        self.0.messages.fetch_add(1, Ordering::Relaxed);
        let _ = ws.send(msg);
    }
    fn on_close(&mut self, _ws: &mut WebSocket<'_, ()>, _code: CloseCode, _reason: &str) {
        self.0.closed.fetch_add(1, Ordering::Relaxed);
    }
}

/// Polls `f` until it holds or `limit` passes.
fn eventually(limit: Duration, f: impl Fn() -> bool) -> bool {
    let until = Instant::now() + limit;
    while Instant::now() < until {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    f()
}

#[test]
fn child_hold_open_counts_exactly_and_closes_at_the_end_of_stdin() {
    for backend in throng_engine::testing::backends() {
        let seen = Arc::new(Seen::default());
        let s = seen.clone();
        let cfg = Config::new("127.0.0.1:0".parse().unwrap())
            .with_workers(1)
            .with_pinning(false)
            .with_backend(backend);
        let server = Server::start(cfg, move |_| Counting(s.clone())).expect("server starts");
        let mut child = Command::new(env!("CARGO_BIN_EXE_throng-load"))
            .args(["echo", "--url", &format!("ws://{}/", server.local_addr())])
            .args(["--connections", "20", "--size", "64", "--duration", "0.3"])
            .args(["--warmup", "0", "--json", "--child", "--hold-open"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("throng-load runs");
        let mut stdin = child.stdin.take().expect("piped");
        let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
        let mut next = || -> Value {
            let line = lines.next().expect("a line").expect("readable");
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line:?}: {e}"))
        };

        // Ramped, then waiting for `go`: nothing sent yet.
        let ready = next();
        assert_eq!(
            (ready["event"].as_str(), ready["open"].as_u64()),
            (Some("ready"), Some(20))
        );
        assert!(eventually(Duration::from_secs(5), || seen
            .opened
            .load(Ordering::Relaxed)
            == 20));
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(seen.messages.load(Ordering::Relaxed), 0, "sent before `go`");

        writeln!(stdin, "go").unwrap();
        stdin.flush().unwrap();
        let v = next();
        assert_eq!(
            (v["errors"].as_u64(), v["lost"].as_u64()),
            (Some(0), Some(0)),
            "{v}"
        );
        // With no warm-up every echo is counted: the report's count is the server's.
        let messages = v["messages"].as_u64().unwrap();
        assert!(messages > 100, "{v}");
        assert_eq!(v["sent"].as_u64(), Some(messages), "{v}");
        assert_eq!(
            seen.messages.load(Ordering::Relaxed),
            messages,
            "{backend:?}: {v}"
        );

        // Held open after the report...
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(
            seen.closed.load(Ordering::Relaxed),
            0,
            "closed before stdin ended"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "exited before stdin ended"
        );
        // ...and closed once stdin ends.
        drop(stdin);
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "throng-load did not exit");
            std::thread::sleep(Duration::from_millis(10));
        };
        assert!(status.success());
        assert!(eventually(Duration::from_secs(5), || seen
            .closed
            .load(Ordering::Relaxed)
            == 20));
        server.shutdown().unwrap();
    }
}
