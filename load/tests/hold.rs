//! `throng-load hold` against a real throng server on loopback, on both backends: the ramp,
//! ping answers (the server pings every 200 ms), a broadcast reaching every connection,
//! and a clean close of all of them, all read from the JSON lines it prints.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use throng_engine::{
    BackendChoice, Config, Decision, Handler, Message, Server, UpgradeRequest, WebSocket,
};

struct Subscriber;

impl Handler for Subscriber {
    type State = ();
    fn on_upgrade<'r>(&mut self, _req: &UpgradeRequest<'r>) -> Decision<'r, ()> {
        Decision::accept(())
    }
    fn on_open(&mut self, ws: &mut WebSocket<'_, ()>) {
        ws.subscribe("all");
    }
    fn on_message(&mut self, _ws: &mut WebSocket<'_, ()>, _msg: Message<'_>) {}
}

const N: usize = 600;

fn hold_on(backend: BackendChoice) {
    let mut cfg = Config::new("127.0.0.1:0".parse().unwrap())
        .with_workers(2)
        .with_pinning(false)
        .with_backend(backend);
    cfg.ping_interval = Some(Duration::from_millis(200));
    cfg.timer_tick = Duration::from_millis(50);
    let server = Server::start(cfg, |_| Subscriber).expect("server starts");
    let url = format!("ws://{}/", server.local_addr());
    let mut child = Command::new(env!("CARGO_BIN_EXE_throng-load"))
        .args(["hold", "--url", &url, "--connections", &N.to_string()])
        .args(["--source-offset", "5", "--open-timeout", "20"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("throng-load runs");
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut next = |kind: &str| -> Value {
        loop {
            let line = lines.next().expect("a line").expect("readable");
            let v: Value = serde_json::from_str(&line).expect("JSON line");
            if v["event"] == kind {
                return v;
            }
            assert_eq!(v["event"], "progress", "unexpected line {line}");
        }
    };

    let ramped = next("ramped");
    assert_eq!(ramped["connected"], N, "{ramped}");
    assert_eq!(ramped["failed"], 0, "{ramped}");

    // Two ping rounds at least: every connection answered and none was closed.
    std::thread::sleep(Duration::from_millis(700));
    writeln!(stdin, "stats").unwrap();
    let stats = next("stats");
    assert_eq!(stats["open"], N, "{stats}");
    assert_eq!(stats["closed_by_server"], 0, "{stats}");
    assert!(
        stats["pings_answered"].as_u64().unwrap() >= N as u64,
        "{stats}"
    );

    writeln!(stdin, "expect-broadcast").unwrap();
    let ticket = server.handle().publish("all", true, b"to everyone");
    let broadcast = next("broadcast");
    assert_eq!(broadcast["received"], N, "{broadcast}");
    let (first, last) = (
        broadcast["first_ns"].as_u64().unwrap(),
        broadcast["last_ns"].as_u64().unwrap(),
    );
    assert!(first > 0 && last >= first, "{broadcast}");
    let published = ticket.wait(Duration::from_secs(5)).expect("publish report");
    assert_eq!(published.reached, N);

    writeln!(stdin, "close").unwrap();
    let closed = next("closed");
    assert_eq!(closed["closed_cleanly"], N, "{closed}");
    assert_eq!(closed["close_failures"], 0, "{closed}");
    assert!(child.wait().unwrap().success());
    server.shutdown().unwrap();
}

#[test]
fn holds_answers_pings_receives_a_broadcast_and_closes_cleanly() {
    for backend in [BackendChoice::Uring, BackendChoice::Epoll] {
        hold_on(backend);
    }
}
