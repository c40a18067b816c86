//! At the descriptor limit (issue 12.2): accept fails with EMFILE while connections wait
//! in the listen queue. The worker must neither spin (io_uring re-armed its accept every
//! turn, 100% of a core) nor forget the waiting connections (an edge-triggered epoll
//! listener raises no new edge for them): it backs off, counts it, and accepts again when
//! a descriptor is freed.
//!
//! The limit is set with `setrlimit` in a child process (this test binary re-run with an
//! environment variable), so the test process itself keeps its descriptors.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use throng_engine::{BackendChoice, Config, Server};

const CHILD_ENV: &str = "THRONG_TEST_EMFILE_CHILD";
/// Descriptors a one-worker server holds itself (listener, ring or epoll, eventfd, and
/// a margin for the thread).
const SERVER_FDS: u64 = 6;
/// Connections the child can hold at its limit.
const HEADROOM: u64 = 12;

/// The child: lowers its limit, runs a one-worker server, prints its port, then answers
/// `stats` lines on stdin with the worker's counters until stdin closes.
fn child(backend: BackendChoice) {
    // Lowered before the server starts: io_uring reads the limit when an accept is armed.
    let open = std::fs::read_dir("/proc/self/fd").unwrap().count() as u64;
    let limit = open + SERVER_FDS + HEADROOM;
    let rl = libc::rlimit {
        rlim_cur: limit,
        rlim_max: limit,
    };
    // SAFETY: setrlimit reads a valid rlimit.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &rl) }, 0);
    let mut cfg = Config::new("127.0.0.1:0".parse().unwrap())
        .with_workers(1)
        .with_pinning(false)
        .with_backend(backend);
    cfg.ping_interval = None;
    let (tx, _rx) = std::sync::mpsc::channel();
    let server = Server::start(cfg, move |worker| TestHandler {
        tx: tx.clone(),
        worker,
    })
    .expect("child server");
    println!("port {}", server.local_addr().port());
    let stdin = std::io::stdin();
    for line in stdin.lock().lines() {
        if line.unwrap() == "stats" {
            let s = stats(&server);
            println!("stats {} {}", s.accept_backoffs, s.accepted);
        }
    }
    server.shutdown().unwrap();
}

/// Asks the child for (accept back-offs, connections accepted).
fn child_stats(stdin: &mut impl Write, out: &mut impl BufRead) -> (u64, u64) {
    writeln!(stdin, "stats").unwrap();
    loop {
        let mut line = String::new();
        assert!(out.read_line(&mut line).unwrap() > 0, "child ended early");
        if let Some(rest) = line
            .trim()
            .rsplit("stats ")
            .next()
            .filter(|_| line.contains("stats "))
        {
            let v: Vec<u64> = rest.split(' ').map(|x| x.parse().unwrap()).collect();
            return (v[0], v[1]);
        }
    }
}

/// CPU time (user + system) of process `pid`, from /proc.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    Duration::from_millis(ticks * 1000 / hz)
}

#[test]
fn at_the_descriptor_limit_the_worker_backs_off_and_resumes_when_one_is_freed() {
    if let Ok(b) = std::env::var(CHILD_ENV) {
        return child(b.parse().unwrap());
    }
    for backend in backends() {
        let mut proc = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "at_the_descriptor_limit_the_worker_backs_off_and_resumes_when_one_is_freed",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, format!("{backend:?}").to_lowercase())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("child");
        let mut out = BufReader::new(proc.stdout.take().unwrap());
        let mut stdin = proc.stdin.take().unwrap();
        let port = loop {
            let mut line = String::new();
            assert!(out.read_line(&mut line).unwrap() > 0, "child ended early");
            // libtest prints the test name on the same line first.
            if let Some(p) = line
                .trim()
                .rsplit("port ")
                .next()
                .filter(|_| line.contains("port "))
            {
                break p.parse::<u16>().unwrap();
            }
        };
        let addr = SocketAddr::from(([127, 0, 0, 1], port));

        // Fill the child's descriptors with open WebSocket connections, then queue more.
        let mut open = Vec::new();
        loop {
            let mut raw = Raw::tcp(addr);
            raw.write(upgrade_request(addr, "/", "").as_bytes());
            // Long enough that a loaded machine's slow answer is not taken for the limit
            // (it was once, under a parallel build: one connection then counted twice).
            raw.stream
                .set_read_timeout(Some(Duration::from_millis(2000)))
                .unwrap();
            let mut buf = [0u8; 12];
            match raw.stream.0.peek(&mut buf) {
                Ok(n) if n > 0 => {
                    raw.stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
                    assert_101(&raw.read_head(), KEY);
                    open.push(raw);
                }
                _ => break, // not answered: the child is at its limit
            }
            assert!(open.len() < 100, "the limit was never reached");
        }
        let mut waiting = vec![Raw::tcp(addr)];
        waiting.push(Raw::tcp(addr));
        for w in &mut waiting {
            w.write(upgrade_request(addr, "/", "").as_bytes());
        }

        // At the limit: no spinning.
        std::thread::sleep(Duration::from_millis(300));
        let before = cpu_time(proc.id());
        let t = Instant::now();
        std::thread::sleep(Duration::from_millis(1500));
        let used = cpu_time(proc.id()) - before;
        let share = used.as_secs_f64() / t.elapsed().as_secs_f64();
        assert!(
            share < 0.25,
            "{backend:?}: the worker used {:.0}% of a core at the descriptor limit",
            share * 100.0
        );
        let (backoffs, accepted_at_limit) = child_stats(&mut stdin, &mut out);
        assert!(backoffs >= 1, "{backend:?}: the back-off is counted");
        // Existing connections are still served.
        open[0].send(true, OP_TEXT, b"served");
        assert_eq!(open[0].read_frame().payload, b"served");

        // Free descriptors: the waiting connections are accepted and answered.
        drop(open.drain(..3).collect::<Vec<_>>());
        for w in &mut waiting {
            w.stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
            assert_101(&w.read_head(), KEY);
        }
        let (_, accepted) = child_stats(&mut stdin, &mut out);
        assert!(accepted >= accepted_at_limit + 2);
        drop(stdin);
        assert!(proc.wait().unwrap().success());
    }
}
