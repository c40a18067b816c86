//! `throng-bench deflate`: permessage-deflate figures in one run (issue 15).
//!
//! - Echo of 1 KiB and 16 KiB of JSON, compressed both ways, against Node's `ws` with
//!   `perMessageDeflate` (`benches/servers/node-ws/`) and Bun with `perMessageDeflate: true`
//!   (`benches/servers/bun/deflate.js`). Every client offers `server_no_context_takeover;
//!   client_no_context_takeover`, which all three accept, so every server compresses each
//!   message on its own (throng's shared mode; uWebSockets' shared compressor; ws with a
//!   fresh context per message) and the client can send one precompressed frame.
//! - Broadcast of a 4 KiB JSON message to 15,000 subscribers with deflate negotiated, and
//!   without: deflate calls counted in the server (exactly one per publish), time until the
//!   last subscriber has it, and server CPU per broadcast.
//! - Memory per idle connection at 15,000 connections with deflate negotiated (shared mode)
//!   and without; and per connection of each dedicated preset (after one compressed message
//!   each way, so both of its streams exist) at 2,000.
//!
//! Servers run as their own processes pinned to the first allowed CPU (`taskset`); this
//! process and its client threads to the others. throng runs one worker.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use throng_engine::{
    BackendChoice, Config, Decision, DeflateConfig, DeflateWindow, Handler, Message, Server,
    UpgradeRequest, WebSocket,
};
use throng_protocol::deflate::{Deflater, Inflater};

const OFFER: &str = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";
/// What dedicated-mode connections offer: websockets' and Chromium's default.
const OFFER_CONTEXT: &str = "permessage-deflate; client_max_window_bits";

pub use crate::json::json;

// ---------------------------------------------------------------- the throng server

/// `throng-bench deflate serve --addr A --backend B --mode off|shared|small|medium|default`:
/// prints `listening ADDR`, then answers each `stats` line on stdin with
/// `compressions N inflations N streams N`.
fn serve(args: &[String]) -> ExitCode {
    let get = |k: &str| {
        args.iter()
            .position(|a| a == k)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let addr: SocketAddr = get("--addr")
        .unwrap_or("127.0.0.1:0".into())
        .parse()
        .expect("--addr HOST:PORT");
    let backend: BackendChoice = get("--backend")
        .unwrap_or("uring".into())
        .parse()
        .expect("--backend");
    let deflate = match get("--mode").as_deref().unwrap_or("shared") {
        "off" => None,
        "shared" => Some(DeflateConfig::default()),
        "small" => Some(DeflateConfig::dedicated(DeflateWindow::SMALL)),
        "medium" => Some(DeflateConfig::dedicated(DeflateWindow::MEDIUM)),
        "default" => Some(DeflateConfig::dedicated(DeflateWindow::DEFAULT)),
        m => panic!("--mode {m}"),
    };
    let config = Config::new(addr)
        .with_workers(1)
        .with_backend(backend)
        .with_max_message_size(16 << 20)
        .with_deflate(deflate);
    let server = Server::start(config, |_| Members {
        payload: Vec::new(),
    })
    .expect("server starts");
    println!("listening {}", server.local_addr());
    let handle = server.handle();
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        if line.trim() == "stats" {
            let (tx, rx) = mpsc::channel();
            handle.post(0, move |_, conns| {
                let _ = tx.send(conns.stats());
            });
            let s = rx.recv_timeout(Duration::from_secs(10)).unwrap_or_default();
            println!(
                "compressions {} inflations {} streams {}",
                s.deflate_compressions, s.deflate_inflations, s.deflate_streams
            );
        }
    }
    ExitCode::SUCCESS
}

/// The throng server: on `/bcast` a connection subscribes to "all"; on `/control`,
/// `BROADCAST n` publishes n bytes of JSON to "all"; everything else is echoed.
struct Members {
    payload: Vec<u8>,
}

/// A connection's role: 0 echo, 1 control, 2 broadcast member.
impl Handler for Members {
    type State = u8;

    fn on_upgrade<'r>(&mut self, req: &UpgradeRequest<'r>) -> Decision<'r, u8> {
        Decision::accept(match req.path() {
            "/control" => 1,
            "/bcast" => 2,
            _ => 0,
        })
    }

    fn on_open(&mut self, ws: &mut WebSocket<'_, u8>) {
        if *ws.state() == 2 {
            ws.subscribe("all");
        }
    }

    fn on_message(&mut self, ws: &mut WebSocket<'_, u8>, message: Message<'_>) {
        if *ws.state() == 1
            && let Message::Text(t) = message
            && let Some(n) = t.strip_prefix("BROADCAST ").and_then(|n| n.parse().ok())
        {
            if self.payload.len() != n {
                self.payload = json(n);
            }
            let text = std::str::from_utf8(&self.payload).unwrap_or_default();
            ws.publish("all", Message::Text(text));
            return;
        }
        let _ = ws.send(message);
    }
}

// ---------------------------------------------------------------- processes

struct Proc {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    addr: SocketAddr,
}

impl Proc {
    /// Starts `command` pinned to `cpu` and waits for its `listening` line.
    fn start(command: Command, cpu: usize) -> Result<Proc, String> {
        let mut pinned = Command::new("taskset");
        pinned
            .arg("-c")
            .arg(cpu.to_string())
            .arg(command.get_program())
            .args(command.get_args());
        if let Some(dir) = command.get_current_dir() {
            pinned.current_dir(dir);
        }
        let mut child = pinned
            .env_remove("THRONG_BACKEND")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("{command:?}: {e}"))?;
        let stdin = child.stdin.take();
        let out = child.stdout.take().expect("piped");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let line = lines
            .recv_timeout(Duration::from_secs(20))
            .map_err(|_| format!("{command:?} did not start"))?;
        let addr = line
            .strip_prefix("listening ")
            .and_then(|a| a.trim().replace("localhost", "127.0.0.1").parse().ok())
            .ok_or_else(|| format!("{command:?} said {line:?}"))?;
        Ok(Proc {
            child,
            stdin,
            lines,
            addr,
        })
    }

    fn throng(backend: &str, mode: &str, cpu: usize) -> Result<Proc, String> {
        let mut c = Command::new(std::env::current_exe().map_err(|e| e.to_string())?);
        c.args(["deflate", "serve", "--backend", backend, "--mode", mode]);
        Proc::start(c, cpu)
    }

    /// The throng server's counters: (compressions, inflations, streams).
    fn stats(&mut self) -> (u64, u64, u64) {
        let stdin = self.stdin.as_mut().expect("a throng server");
        writeln!(stdin, "stats").expect("server alive");
        let line = self
            .lines
            .recv_timeout(Duration::from_secs(10))
            .expect("stats");
        let n: Vec<u64> = line
            .split_whitespace()
            .filter_map(|w| w.parse().ok())
            .collect();
        (n[0], n[1], n[2])
    }

    fn rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        // taskset execs the server, so the pid is the server's.
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    }

    fn cpu_ticks(&self) -> u64 {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let f: Vec<u64> = rest
            .split_whitespace()
            .filter_map(|w| w.parse().ok())
            .collect();
        // utime, stime: fields 14 and 15 of the line, 12 and 13 after the comm.
        f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn node_ws(cpu: usize) -> Result<Proc, String> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("servers/node-ws");
    let ok = Command::new("bash")
        .arg(dir.join("install.sh"))
        .status()
        .map_err(|e| e.to_string())?;
    if !ok.success() {
        return Err("node-ws/install.sh failed".into());
    }
    let mut c = Command::new("node");
    c.arg(dir.join("echo.js"))
        .args(["--addr", "127.0.0.1:0"])
        .current_dir(&dir);
    Proc::start(c, cpu)
}

fn bun(cpu: usize) -> Result<Proc, String> {
    crate::servers::bun::install(Duration::from_secs(300))?;
    let bin = crate::servers::bun::binary().ok_or("bun not installed")?;
    let mut c = Command::new(bin);
    c.arg(crate::servers::bun::dir().join("deflate.js"))
        .args(["--addr", "127.0.0.1:0"]);
    Proc::start(c, cpu)
}

// ---------------------------------------------------------------- the client

/// A blocking WebSocket client connection.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    /// Whether permessage-deflate was negotiated.
    deflate: bool,
}

/// A frame read: RSV1, opcode, payload.
struct Frame {
    rsv1: bool,
    payload: Vec<u8>,
}

impl Conn {
    fn open(addr: SocketAddr, path: &str, offer: Option<&str>) -> std::io::Result<Conn> {
        let mut stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(20)))?;
        let ext = offer.map_or(String::new(), |o| {
            format!("Sec-WebSocket-Extensions: {o}\r\n")
        });
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{ext}\r\n"
        )?;
        let mut buf = Vec::with_capacity(1024);
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 1024];
            let n = stream.read(&mut chunk)?;
            if n == 0 {
                return Err(std::io::Error::other("closed during the handshake"));
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        if !head.starts_with("http/1.1 101") {
            return Err(std::io::Error::other(format!("refused: {head}")));
        }
        let deflate = head.contains("permessage-deflate");
        buf.drain(..end);
        Ok(Conn {
            stream,
            buf,
            deflate,
        })
    }

    fn fill(&mut self, n: usize) -> std::io::Result<()> {
        while self.buf.len() < n {
            let mut chunk = [0u8; 65536];
            let got = self.stream.read(&mut chunk)?;
            if got == 0 {
                return Err(std::io::Error::other("closed"));
            }
            self.buf.extend_from_slice(&chunk[..got]);
        }
        Ok(())
    }

    fn read(&mut self) -> std::io::Result<Frame> {
        self.fill(2)?;
        let (b0, b1) = (self.buf[0], self.buf[1]);
        let (len, head) = match b1 & 0x7f {
            126 => {
                self.fill(4)?;
                (u16::from_be_bytes([self.buf[2], self.buf[3]]) as usize, 4)
            }
            127 => {
                self.fill(10)?;
                let mut b = [0u8; 8];
                b.copy_from_slice(&self.buf[2..10]);
                (u64::from_be_bytes(b) as usize, 10)
            }
            n => (n as usize, 2),
        };
        self.fill(head + len)?;
        let payload = self.buf[head..head + len].to_vec();
        self.buf.drain(..head + len);
        Ok(Frame {
            rsv1: b0 & 0x40 != 0,
            payload,
        })
    }
}

/// A masked text frame (zero mask key: the payload goes as is), RSV1 when `compressed`.
fn frame(payload: &[u8], compressed: bool) -> Vec<u8> {
    let mut f = vec![0x81 | if compressed { 0x40 } else { 0 }];
    match payload.len() {
        n if n < 126 => f.push(0x80 | n as u8),
        n if n < 1 << 16 => {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(0x80 | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    f.extend_from_slice(&[0; 4]);
    f.extend_from_slice(payload);
    f
}

fn compressed(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    assert!(Deflater::new(1).compress(message, &mut out));
    out
}

fn inflated(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    Inflater::new()
        .inflate(&[payload], 16 << 20, &mut out)
        .expect("the server's frame inflates alone");
    out
}

// ---------------------------------------------------------------- measurements

/// Echoes per second over `conns` connections in a closed loop for `time`; every 32nd
/// reply (and each connection's first) is inflated and checked.
fn echo_rate(addr: SocketAddr, size: usize, conns: usize, time: Duration) -> Result<f64, String> {
    let message = json(size);
    let wire = frame(&compressed(&message), true);
    let mut clients = Vec::new();
    for _ in 0..conns {
        let c = Conn::open(addr, "/", Some(OFFER)).map_err(|e| e.to_string())?;
        if !c.deflate {
            return Err("deflate not negotiated".into());
        }
        clients.push(c);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let counting = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = clients
        .into_iter()
        .map(|mut c| {
            let (stop, counting, count) = (stop.clone(), counting.clone(), count.clone());
            let (wire, message) = (wire.clone(), message.clone());
            std::thread::spawn(move || -> Result<(), String> {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    c.stream.write_all(&wire).map_err(|e| e.to_string())?;
                    let f = c.read().map_err(|e| e.to_string())?;
                    if n.is_multiple_of(32) && (!f.rsv1 || inflated(&f.payload) != message) {
                        return Err("a wrong echo".into());
                    }
                    n += 1;
                    if counting.load(Ordering::Relaxed) {
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Ok(())
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    counting.store(true, Ordering::Relaxed);
    let start = Instant::now();
    std::thread::sleep(time);
    let n = count.load(Ordering::Relaxed);
    let elapsed = start.elapsed();
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().map_err(|_| "client panicked")??;
    }
    Ok(n as f64 / elapsed.as_secs_f64())
}

struct Broadcast {
    /// Median time from the control message to the last subscriber's frame, ms.
    wall_ms: f64,
    /// Server CPU per broadcast, ms.
    cpu_ms: f64,
    /// Compressions the server counted per broadcast.
    compressions: f64,
    /// Bytes of the frame a subscriber got.
    frame_bytes: usize,
}

fn broadcast(deflate: bool, subs: usize, rounds: usize, cpu: usize) -> Result<Broadcast, String> {
    let mut server = Proc::throng("uring", "shared", cpu)?;
    let offer = deflate.then_some(OFFER);
    let mut members = Vec::with_capacity(subs);
    for _ in 0..subs {
        members.push(Conn::open(server.addr, "/bcast", offer).map_err(|e| e.to_string())?);
    }
    let mut control = Conn::open(server.addr, "/control", None).map_err(|e| e.to_string())?;
    std::thread::sleep(Duration::from_millis(300));
    let message = json(4096);
    let before = server.stats().0;
    let ticks = server.cpu_ticks();
    let mut walls = Vec::new();
    let mut frame_bytes = 0;
    for _ in 0..rounds {
        let start = Instant::now();
        control
            .stream
            .write_all(&frame(b"BROADCAST 4096", false))
            .map_err(|e| e.to_string())?;
        for (i, m) in members.iter_mut().enumerate() {
            let f = m.read().map_err(|e| e.to_string())?;
            if f.rsv1 != deflate {
                return Err("wrong RSV1".into());
            }
            if i == 0 {
                frame_bytes = f.payload.len();
                let text = if deflate {
                    inflated(&f.payload)
                } else {
                    f.payload
                };
                if text != message {
                    return Err("a wrong broadcast".into());
                }
            }
        }
        walls.push(start.elapsed().as_secs_f64() * 1e3);
    }
    // Clock ticks of 10 ms (USER_HZ 100).
    let cpu_ms = (server.cpu_ticks() - ticks) as f64 * 10.0 / rounds as f64;
    let compressions = (server.stats().0 - before) as f64 / rounds as f64;
    walls.sort_by(f64::total_cmp);
    Ok(Broadcast {
        wall_ms: walls[walls.len() / 2],
        cpu_ms,
        compressions,
        frame_bytes,
    })
}

/// Server RSS growth per connection: `n` connections opened with `offer`, each sending
/// `messages` compressed messages (echoed) before going idle.
fn bytes_per_conn(
    mode: &str,
    n: usize,
    offer: Option<&str>,
    messages: usize,
    cpu: usize,
) -> Result<f64, String> {
    let server = Proc::throng("uring", mode, cpu)?;
    // One connection first, so that the worker's one-time buffers are counted before.
    let mut warm = Conn::open(server.addr, "/", offer).map_err(|e| e.to_string())?;
    let wire = frame(&compressed(&json(1024)), true);
    for _ in 0..messages {
        warm.stream.write_all(&wire).map_err(|e| e.to_string())?;
        warm.read().map_err(|e| e.to_string())?;
    }
    std::thread::sleep(Duration::from_millis(500));
    let before = server.rss();
    let mut conns = Vec::with_capacity(n);
    for _ in 0..n {
        let mut c = Conn::open(server.addr, "/", offer).map_err(|e| e.to_string())?;
        for _ in 0..messages {
            c.stream.write_all(&wire).map_err(|e| e.to_string())?;
            c.read().map_err(|e| e.to_string())?;
        }
        conns.push(c);
    }
    std::thread::sleep(Duration::from_millis(1000));
    let after = server.rss();
    Ok((after as f64 - before as f64) / n as f64)
}

// ---------------------------------------------------------------- the run

/// `throng-bench deflate [--seconds S] [--conns N] [--subs N] [--markdown FILE]`, or
/// `throng-bench deflate serve ...` (the throng server it starts).
pub fn main(args: &[String]) -> ExitCode {
    if args.first().map(String::as_str) == Some("serve") {
        return serve(&args[1..]);
    }
    let get = |k: &str, d: usize| {
        args.iter()
            .position(|a| a == k)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let seconds = get("--seconds", 3);
    let conns = get("--conns", 50);
    let subs = get("--subs", 15_000);
    let markdown = args
        .iter()
        .position(|a| a == "--markdown")
        .and_then(|i| args.get(i + 1))
        .map(PathBuf::from);
    match run(seconds as u64, conns, subs) {
        Ok(md) => {
            println!("{md}");
            if let Some(path) = markdown {
                std::fs::write(&path, md).expect("write the markdown");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("throng-bench deflate: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(seconds: u64, conns: usize, subs: usize) -> Result<String, String> {
    let cpus = crate::sys::allowed_cpus();
    let server_cpu = cpus[0];
    let client_cpus: Vec<String> = cpus[1..].iter().map(|c| c.to_string()).collect();
    if !client_cpus.is_empty() {
        // Pin this process (and the client threads it starts) off the server's CPU.
        let _ = Command::new("taskset")
            .args([
                "-a",
                "-cp",
                &client_cpus.join(","),
                &std::process::id().to_string(),
            ])
            .stdout(Stdio::null())
            .status();
    }
    let time = Duration::from_secs(seconds);
    let mut md = String::new();
    md.push_str(&format!(
        "## permessage-deflate (`throng-bench deflate`)\n\nServer on CPU {server_cpu} (throng: 1 worker), \
         client threads on CPU {}; {}; {conns} connections in a closed loop, {seconds} s per cell \
         after 0.5 s of warm-up; JSON messages, level 1, no context takeover either way.\n\n",
        client_cpus.join(","),
        crate::sys::cpu_model()
    ));
    md.push_str("| echo | throng io_uring | throng epoll | Node ws | Bun | vs Node (>= 2x) | vs Bun (>= 1.2x) |\n|---|---|---|---|---|---|---|\n");
    for size in [1024, 16384] {
        let mut rates = Vec::new();
        for which in ["throng-uring", "throng-epoll", "node-ws", "bun"] {
            let server = match which {
                "throng-uring" => Proc::throng("uring", "shared", server_cpu),
                "throng-epoll" => Proc::throng("epoll", "shared", server_cpu),
                "node-ws" => node_ws(server_cpu),
                _ => bun(server_cpu),
            }?;
            let rate = echo_rate(server.addr, size, conns, time)?;
            eprintln!("echo {size} B {which}: {rate:.0}/s");
            rates.push(rate);
        }
        let best = rates[0].max(rates[1]);
        md.push_str(&format!(
            "| {} KiB | {:.0}/s | {:.0}/s | {:.0}/s | {:.0}/s | {:.2}x | {:.2}x |\n",
            size / 1024,
            rates[0],
            rates[1],
            rates[2],
            rates[3],
            best / rates[2],
            best / rates[3]
        ));
    }
    let rounds = 10;
    let plain = broadcast(false, subs, rounds, server_cpu)?;
    let deflated = broadcast(true, subs, rounds, server_cpu)?;
    md.push_str(&format!(
        "\nBroadcast of 4 KiB of JSON to {subs} subscribers (throng io_uring, shared mode), median of {rounds}:\n\n\
         | subscribers | frame | compress calls per publish | until the last has it | server CPU per broadcast |\n|---|---|---|---|---|\n\
         | without deflate | {} B | {:.0} | {:.1} ms | {:.1} ms |\n| with deflate | {} B | {:.0} | {:.1} ms ({:.2}x) | {:.1} ms ({:.2}x) |\n",
        plain.frame_bytes,
        plain.compressions,
        plain.wall_ms,
        plain.cpu_ms,
        deflated.frame_bytes,
        deflated.compressions,
        deflated.wall_ms,
        deflated.wall_ms / plain.wall_ms,
        deflated.cpu_ms,
        deflated.cpu_ms / plain.cpu_ms.max(0.01)
    ));
    let idle_plain = bytes_per_conn("shared", subs, None, 0, server_cpu)?;
    let idle_deflate = bytes_per_conn("shared", subs, Some(OFFER_CONTEXT), 0, server_cpu)?;
    md.push_str(&format!(
        "\nServer memory per idle connection at {subs} (RSS growth / connections, throng io_uring):\n\n\
         | | bytes per connection |\n|---|---|\n| without deflate | {idle_plain:.1} |\n\
         | deflate negotiated (shared mode) | {idle_deflate:.1} (difference {:+.1}) |\n",
        idle_deflate - idle_plain
    ));
    let n = 2000;
    md.push_str(&format!(
        "\nPer connection after one compressed 1 KiB message each way, at {n} connections \
         (client offers `{OFFER_CONTEXT}`):\n\n| mode | bytes per connection |\n|---|---|\n"
    ));
    for (mode, label) in [
        ("shared", "shared (no context)"),
        ("small", "dedicated SMALL (9 bits, memLevel 1)"),
        ("medium", "dedicated MEDIUM (12 bits, memLevel 4)"),
        ("default", "dedicated DEFAULT (15 bits, memLevel 8)"),
    ] {
        let b = bytes_per_conn(mode, n, Some(OFFER_CONTEXT), 1, server_cpu)?;
        eprintln!("{label}: {b:.0} B");
        md.push_str(&format!("| {label} | {b:.0} |\n"));
    }
    Ok(md)
}
