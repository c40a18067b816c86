//! Memory comes back after an attack (issue 18): a flood of large messages from peers
//! that never read the echoes, and thousands of slowloris connections with large
//! half-sent heads, raise the server's resident memory; once every attacking connection is
//! gone it must return to within a small margin of where it started. The server runs in a
//! child process (this test binary re-run) so that its RSS is its own; on each backend.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use throng_engine::{BackendChoice, Config, Server};

const CHILD_ENV: &str = "THRONG_TEST_MEMORY_CHILD";
const MIB: u64 = 1 << 20;
/// How far above its starting RSS the server may stay after the attack.
const MARGIN: u64 = 24 * MIB;

fn child(backend: BackendChoice) {
    let mut cfg = Config::new("127.0.0.1:0".parse().unwrap())
        .with_workers(2)
        .with_pinning(false)
        .with_backend(backend)
        .with_max_message_size(8 << 20);
    cfg.ping_interval = None;
    cfg.close_timeout = Duration::from_millis(500);
    let (tx, _rx) = std::sync::mpsc::channel();
    let server = Server::start(cfg, move |worker| TestHandler {
        tx: tx.clone(),
        worker,
    })
    .expect("child server");
    println!("port {}", server.local_addr().port());
    for line in std::io::stdin().lock().lines() {
        match line.unwrap().as_str() {
            "rss" => println!("rss {}", rss()),
            "conns" => println!("conns {}", conn_count(&server)),
            "trims" => println!("trims {}", stats(&server).memory_trims),
            // Where the memory is, for a failing run: the spill pool and the big mappings.
            "debug" => {
                eprintln!("pool in use {}", pool_in_use(&server));
                let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
                let mut cur = String::new();
                let mut big = Vec::new();
                for l in smaps.lines() {
                    if l.contains('-') && !l.starts_with(|c: char| c.is_ascii_uppercase()) {
                        cur = l.to_owned();
                    } else if let Some(v) = l.strip_prefix("Rss:") {
                        let kb: u64 = v.trim().trim_end_matches("kB").trim().parse().unwrap();
                        if kb > 2048 {
                            big.push((kb, cur.clone()));
                        }
                    }
                }
                eprintln!("big mappings: {big:?}");
                println!("debug 0");
            }
            _ => {}
        }
    }
    server.shutdown().unwrap();
}

/// Resident memory of this process in bytes.
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kb * 1024
}

struct Child {
    proc: std::process::Child,
    stdin: std::process::ChildStdin,
    out: BufReader<std::process::ChildStdout>,
}

impl Child {
    /// Asks the child a question (`rss`, `conns`) and reads its number.
    fn ask(&mut self, what: &str) -> u64 {
        writeln!(self.stdin, "{what}").unwrap();
        self.wait_for(what)
    }

    /// Reads lines until one carries `what` and a number.
    fn wait_for(&mut self, what: &str) -> u64 {
        loop {
            let mut line = String::new();
            assert!(self.out.read_line(&mut line).unwrap() > 0, "child ended");
            let key = format!("{what} ");
            if let Some(v) = line
                .trim()
                .rsplit(key.as_str())
                .next()
                .filter(|_| line.contains(&key))
            {
                return v.parse().unwrap();
            }
        }
    }
}

/// A connection whose receive buffer stays small, so echoes back up in the server.
fn narrow(addr: SocketAddr) -> Raw {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    s.set_recv_buffer_size(4096).unwrap();
    s.connect(&addr.into()).unwrap();
    let stream: std::net::TcpStream = s.into();
    stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    let mut raw = Raw::from_stream(stream);
    raw.write(upgrade_request(addr, "/", "").as_bytes());
    assert_101(&raw.read_head(), KEY);
    raw
}

#[test]
fn resident_memory_returns_after_floods_and_slowloris() {
    if let Ok(b) = std::env::var(CHILD_ENV) {
        return child(b.parse().unwrap());
    }
    for backend in backends() {
        let mut proc = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "resident_memory_returns_after_floods_and_slowloris",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, format!("{backend:?}").to_lowercase())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("child");
        let mut child = Child {
            stdin: proc.stdin.take().unwrap(),
            out: BufReader::new(proc.stdout.take().unwrap()),
            proc,
        };
        let port = child.wait_for("port");
        let addr = SocketAddr::from(([127, 0, 0, 1], port as u16));

        // Warm up (pools, arenas, the allocator's first arenas), then the baseline.
        for _ in 0..20 {
            let mut ws = connect(addr, "/");
            ws.send(tungstenite::Message::binary(vec![1u8; 100_000]))
                .unwrap();
            read_data(&mut ws);
        }
        assert!(eventually(EVENT_TIMEOUT, || child.ask("conns") == 0));
        std::thread::sleep(Duration::from_millis(300));
        let baseline = child.ask("rss");

        // Flood: 16 peers send a 4 MiB message each and never read the echo.
        let message = encode(true, OP_BINARY, &pattern(9, 4 << 20), Some(MASK));
        let mut flood: Vec<Raw> = (0..16).map(|_| narrow(addr)).collect();
        for raw in &mut flood {
            raw.write(&message);
        }
        let mut peak = baseline;
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until && peak < baseline + 48 * MIB {
            std::thread::sleep(Duration::from_millis(100));
            peak = peak.max(child.ask("rss"));
        }
        assert!(
            peak >= baseline + 48 * MIB,
            "{backend:?}: the flood did not raise RSS ({} -> {} MiB)",
            baseline / MIB,
            peak / MIB
        );
        // Slowloris: 2,000 connections with half-sent 8 KB heads.
        let filler = format!("X-Filler: {}\r\n", "f".repeat(7000));
        let request = upgrade_request(addr, "/", &filler);
        let slow: Vec<Raw> = (0..2000)
            .map(|_| {
                let mut r = Raw::tcp(addr);
                r.write(&request.as_bytes()[..request.len() - 4]);
                r
            })
            .collect();
        std::thread::sleep(Duration::from_millis(500));
        peak = peak.max(child.ask("rss"));

        // Every attacking connection goes; memory comes back.
        drop(flood);
        drop(slow);
        assert!(eventually(Duration::from_secs(20), || child.ask("conns") == 0));
        let mut after = u64::MAX;
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until && after > baseline + MARGIN {
            std::thread::sleep(Duration::from_millis(200));
            after = child.ask("rss");
        }
        let trims = child.ask("trims");
        if after > baseline + MARGIN || std::env::var("THRONG_TEST_MEMORY_DEBUG").is_ok() {
            child.ask("debug"); // where it stays, on stderr
        }
        eprintln!(
            "{backend:?}: RSS baseline {} MiB, peak {} MiB, after {} MiB ({trims} trims)",
            baseline / MIB,
            peak / MIB,
            after / MIB
        );
        assert!(
            after <= baseline + MARGIN,
            "{backend:?}: RSS stayed at {} MiB after the attack (baseline {} MiB, peak {} MiB)",
            after / MIB,
            baseline / MIB,
            peak / MIB
        );
        drop(child.stdin);
        assert!(child.proc.wait().unwrap().success());
    }
}
