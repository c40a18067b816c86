//! `throng-load hold` (the built binary) against a real throng server on loopback, read
//! from the JSON lines it prints: the ramp from the source addresses asked for, ping
//! answers (the server pings every 200 ms and closes a connection whose pong is 300 ms
//! late), a broadcast reaching every connection, a clean close; connections the server
//! closes counted as failures; a refused ramp reported with its error; failures make
//! the exit status 1; a close that waits while handshakes keep finishing and gives up
//! after `--close-stall` without one.

use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, SocketAddr};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, Sender};
use std::time::{Duration, Instant};

use serde_json::Value;
use throng_engine::{
    BackendChoice, CloseCode, Config, ConnId, Decision, Handler, Message, Server, UpgradeRequest,
    WebSocket,
};
use throng_load::source;

/// Longest wait for one line from the hold process.
const LINE_TIMEOUT: Duration = Duration::from_secs(20);

/// Subscribes every connection to "all" and reports who opened.
struct Subscriber {
    opened: Sender<(ConnId, SocketAddr)>,
}

impl Handler for Subscriber {
    type State = ();
    fn on_upgrade<'r>(&mut self, _req: &UpgradeRequest<'r>) -> Decision<'r, ()> {
        Decision::accept(())
    }
    fn on_open(&mut self, ws: &mut WebSocket<'_, ()>) {
        ws.subscribe("all");
        let peer = ws.peer_addr().expect("peer address");
        let _ = self.opened.send((ws.id(), peer));
    }
    fn on_message(&mut self, _ws: &mut WebSocket<'_, ()>, _msg: Message<'_>) {}
}

fn server(backend: BackendChoice) -> (Server<Subscriber>, Receiver<(ConnId, SocketAddr)>) {
    let mut cfg = Config::new("127.0.0.1:0".parse().unwrap())
        .with_workers(2)
        .with_pinning(false)
        .with_backend(backend);
    cfg.ping_interval = Some(Duration::from_millis(200));
    cfg.pong_timeout = Duration::from_millis(300);
    cfg.timer_tick = Duration::from_millis(50);
    cfg.shutdown_timeout = Duration::from_secs(1);
    let (tx, rx) = mpsc::channel();
    let server =
        Server::start(cfg, move |_| Subscriber { opened: tx.clone() }).expect("server starts");
    (server, rx)
}

/// A running `throng-load hold`.
struct Hold {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
}

impl Hold {
    fn start(url: &str, n: usize, extra: &[&str]) -> Hold {
        let mut child = Command::new(env!("CARGO_BIN_EXE_throng-load"))
            .args(["hold", "--url", url, "--connections", &n.to_string()])
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("throng-load runs");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Hold {
            stdin: child.stdin.take(),
            child,
            lines,
        }
    }

    /// The next line of kind `kind`; only `progress` lines may come before it.
    fn next(&mut self, kind: &str) -> Value {
        loop {
            let line = self
                .lines
                .recv_timeout(LINE_TIMEOUT)
                .unwrap_or_else(|_| panic!("no {kind} line within {LINE_TIMEOUT:?}"));
            let v: Value = serde_json::from_str(&line).expect("a JSON line");
            if v["event"] == kind {
                return v;
            }
            assert_eq!(v["event"], "progress", "unexpected line {line}");
            assert!(v["connected"].is_u64() && v["failed"].is_u64(), "{line}");
        }
    }

    fn send(&mut self, command: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{command}").expect("hold reads its stdin");
    }

    /// Closes stdin (EOF) and returns the `closed` line.
    fn eof(&mut self) -> Value {
        self.stdin = None;
        self.next("closed")
    }

    /// Waits (bounded) for the process to exit.
    fn exit(mut self) -> ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "throng-load hold did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        // Stops our own child only if a failed assertion left it running.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Every connection opened by the server, as the handler reported them.
fn opened(rx: &Receiver<(ConnId, SocketAddr)>, n: usize) -> Vec<(ConnId, SocketAddr)> {
    (0..n)
        .map(|_| {
            rx.recv_timeout(Duration::from_secs(5))
                .expect("the server saw every connection open")
        })
        .collect()
}

const N: usize = 400;

fn hold_on(backend: BackendChoice) {
    let (server, opens) = server(backend);
    let url = format!("ws://{}/", server.local_addr());
    let mut hold = Hold::start(&url, N, &["--source-offset", "5", "--open-timeout", "20"]);

    let ramped = hold.next("ramped");
    assert_eq!(ramped["connected"], N, "{ramped}");
    assert_eq!(ramped["failed"], 0, "{ramped}");
    assert!(ramped.get("error").is_none(), "{ramped}");
    assert!(ramped["seconds"].as_f64().unwrap() < 20.0, "{ramped}");

    // From 127.0.0.2..=127.0.0.250, starting where --source-offset 5 says.
    let mut peers: Vec<IpAddr> = opened(&opens, N).iter().map(|(_, a)| a.ip()).collect();
    let mut want: Vec<IpAddr> = (0..N).map(|i| source::address(5, i).into()).collect();
    peers.sort();
    want.sort();
    assert_eq!(peers, want);

    // Several ping rounds: a connection that did not answer would have been closed by now.
    std::thread::sleep(Duration::from_millis(1000));
    hold.send("stats");
    let stats = hold.next("stats");
    assert_eq!(stats["open"], N, "{stats}");
    assert_eq!(stats["closed_by_server"], 0, "{stats}");
    assert!(
        stats["pings_answered"].as_u64().unwrap() >= 2 * N as u64,
        "{stats}"
    );

    // Two broadcasts: each one is timed on its own.
    for round in 0..2 {
        hold.send("expect-broadcast");
        let ticket = server.handle().publish(
            "all",
            if round == 0 {
                throng_engine::DataKind::Text
            } else {
                throng_engine::DataKind::Binary
            },
            b"to everyone",
        );
        let broadcast = hold.next("broadcast");
        assert_eq!(broadcast["received"], N, "{broadcast}");
        let (first, last) = (
            broadcast["first_ns"].as_u64().unwrap(),
            broadcast["last_ns"].as_u64().unwrap(),
        );
        assert!(first > 0 && last >= first, "{broadcast}");
        assert!(last - first < 5_000_000_000, "{broadcast}");
        let now = throng_load::sys::monotonic_ns();
        assert!(
            last <= now && now - last < 10_000_000_000,
            "not CLOCK_MONOTONIC"
        );
        let published = ticket.wait(Duration::from_secs(5)).expect("publish report");
        assert_eq!(published.reached, N);
    }

    hold.send("close");
    let closed = hold.next("closed");
    assert_eq!(closed["closed_cleanly"], N, "{closed}");
    assert_eq!(closed["close_failures"], 0, "{closed}");
    assert!(hold.exit().success());
    server.shutdown().unwrap();
}

#[test]
fn holds_answers_pings_receives_broadcasts_and_closes_cleanly() {
    for backend in throng_engine::testing::backends() {
        hold_on(backend);
    }
}

#[test]
fn connections_the_server_closes_are_failures() {
    let (server, opens) = server(BackendChoice::Epoll);
    let url = format!("ws://{}/", server.local_addr());
    let n = 60;
    let mut hold = Hold::start(&url, n, &[]);
    assert_eq!(hold.next("ramped")["connected"], n);
    let ids = opened(&opens, n);
    let closing = 20;
    for (id, _) in &ids[..closing] {
        assert!(server.handle().close(*id, CloseCode::GOING_AWAY, "bye"));
    }
    // The server's close handshakes finish within a few turns; poll until they show.
    let deadline = Instant::now() + Duration::from_secs(5);
    let stats = loop {
        hold.send("stats");
        let stats = hold.next("stats");
        if stats["closed_by_server"] == closing || Instant::now() >= deadline {
            break stats;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(stats["closed_by_server"], closing, "{stats}");
    assert_eq!(stats["open"], n - closing, "{stats}");

    // EOF on stdin closes like `close`.
    let closed = hold.eof();
    assert_eq!(closed["closed_cleanly"], n - closing, "{closed}");
    assert_eq!(closed["close_failures"], closing, "{closed}");
    // Failures in the report make the exit status say so (issue 18).
    assert_eq!(hold.exit().code(), Some(1));
    server.shutdown().unwrap();
}

#[test]
fn a_refused_ramp_reports_its_error() {
    // A port nobody listens on any more.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut hold = Hold::start(&format!("ws://127.0.0.1:{port}/"), 30, &[]);
    let ramped = hold.next("ramped");
    assert_eq!(ramped["connected"], 0, "{ramped}");
    assert_eq!(ramped["failed"], 30, "{ramped}");
    let error = ramped["error"].as_str().expect("an error string");
    assert!(error.to_lowercase().contains("refused"), "{error}");
    hold.send("stats");
    assert_eq!(hold.next("stats")["open"], 0);
    // Nobody to wait for: the report comes at once.
    hold.send("expect-broadcast");
    assert_eq!(hold.next("broadcast")["received"], 0);
    let closed = hold.eof();
    assert_eq!(closed["closed_cleanly"], 0, "{closed}");
    assert_eq!(closed["close_failures"], 30, "{closed}");
    assert_eq!(hold.exit().code(), Some(1));
}

#[test]
fn bad_arguments_are_usage_errors() {
    for args in [
        &["hold"][..],
        &["hold", "--url", "http://127.0.0.1:1/", "--connections", "5"],
        &[
            "hold",
            "--url",
            "ws://127.0.0.1:1/",
            "--connections",
            "many",
        ],
        &[
            "hold",
            "--url",
            "ws://127.0.0.1:1/",
            "--connections",
            "5",
            "--open-window",
        ],
        &["frobnicate"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_throng-load"))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("runs");
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("usage:") && !err.contains("panicked"), "{err}");
    }
}

/// Accepts `n` WebSocket upgrades on loopback, then answers the clients' close frames one
/// connection at a time, one every `every` (a slow server), or never (`None`: a server
/// that stopped answering; it reads and ignores everything).
fn slow_server(n: usize, every: Option<Duration>) -> (SocketAddr, std::thread::JoinHandle<()>) {
    use std::io::Read;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let thread = std::thread::spawn(move || {
        let mut held = Vec::new();
        for _ in 0..n {
            let (mut s, _) = listener.accept().unwrap();
            let mut req = Vec::new();
            let mut byte = [0u8; 1];
            while !req.ends_with(b"\r\n\r\n") && s.read(&mut byte).unwrap() == 1 {
                req.push(byte[0]);
            }
            let text = String::from_utf8(req).unwrap();
            let key = text
                .lines()
                .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
                .or_else(|| {
                    text.lines()
                        .find_map(|l| l.strip_prefix("sec-websocket-key: "))
                })
                .expect("a key header");
            let accept = throng_protocol::handshake::accept_key(key.trim().as_bytes());
            let reply = format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
                std::str::from_utf8(&accept).unwrap()
            );
            s.write_all(reply.as_bytes()).unwrap();
            held.push(s);
        }
        for mut s in held {
            let mut sink = [0u8; 1024];
            let Some(every) = every else {
                // Drain until the peer goes, answering nothing.
                while matches!(s.read(&mut sink), Ok(n) if n > 0) {}
                continue;
            };
            // The client's masked close frame (2 + 4 + 2 bytes, code 1000, no reason).
            s.read_exact(&mut sink[..8]).unwrap();
            assert_eq!(sink[0], 0x88, "a close frame");
            std::thread::sleep(every);
            s.write_all(&[0x88, 0x02, 0x03, 0xe8]).unwrap();
            // The server closes the TCP connection first (RFC 6455 section 7.1.1).
        }
    });
    (addr, thread)
}

#[test]
fn the_close_gives_up_once_no_handshake_finishes_for_the_stall_time() {
    let n = 5;
    let (addr, server) = slow_server(n, None);
    let mut hold = Hold::start(&format!("ws://{addr}/"), n, &["--close-stall", "1"]);
    assert_eq!(hold.next("ramped")["connected"], n);
    let t0 = Instant::now();
    let closed = hold.eof();
    let waited = t0.elapsed();
    assert_eq!(closed["closed_cleanly"], 0, "{closed}");
    assert_eq!(closed["close_failures"], n, "{closed}");
    // It waited the stall time, not the 30 s default, and not less.
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(10),
        "{waited:?}"
    );
    assert_eq!(hold.exit().code(), Some(1));
    server.join().unwrap();
}

#[test]
fn the_close_waits_as_long_as_handshakes_keep_finishing() {
    // Five closes answered 0.5 s apart take 2.5 s, more than the 1 s stall time, yet
    // each one finishes within it: all five are clean.
    let n = 5;
    let (addr, server) = slow_server(n, Some(Duration::from_millis(500)));
    let mut hold = Hold::start(&format!("ws://{addr}/"), n, &["--close-stall", "1"]);
    assert_eq!(hold.next("ramped")["connected"], n);
    let t0 = Instant::now();
    let closed = hold.eof();
    assert!(t0.elapsed() >= Duration::from_secs(2), "{:?}", t0.elapsed());
    assert_eq!(closed["closed_cleanly"], n, "{closed}");
    assert_eq!(closed["close_failures"], 0, "{closed}");
    assert_eq!(hold.exit().code(), Some(0));
    server.join().unwrap();
}
