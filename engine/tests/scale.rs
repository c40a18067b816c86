//! 15,000 concurrent connections, on each backend. The server (in this process) holds
//! 15,000 descriptors; the clients live in a child process (this test binary run again,
//! filtered to `scale_client_process`), since one process may hold only 20,000.
//!
//! Each client completes a handshake and echoes one message; with all of them open at the
//! same time the server's count is checked, then every one closes cleanly.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;

const CONNECTIONS: usize = 15_000;
/// Client threads in the child process.
const CLIENT_THREADS: usize = 4;
const ADDR_VAR: &str = "THRONG_SCALE_ADDR";
const COUNT_VAR: &str = "THRONG_SCALE_CONNECTIONS";

/// Raises the soft limit on open descriptors to the hard limit; returns it.
#[allow(clippy::unnecessary_cast)] // rlim_t is not u64 on every target
fn raise_nofile() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        lim.rlim_cur = lim.rlim_max;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0);
    }
    lim.rlim_cur as u64
}

/// Kills the client process if the test fails before it exits.
struct ChildGuard(Option<Child>);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[test]
fn fifteen_thousand_connections_open_at_once_echo_and_close_cleanly() {
    // THRONG_SCALE_CONNECTIONS overrides the count, for debugging only.
    let connections: usize = std::env::var(COUNT_VAR)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(CONNECTIONS);
    let limit = raise_nofile();
    assert!(
        limit >= connections as u64 + 500,
        "RLIMIT_NOFILE hard limit {limit} is too low for {connections} connections"
    );
    for backend in backends() {
        let mut cfg = config(backend);
        cfg.ping_interval = None;
        cfg.handshake_timeout = Duration::from_secs(60);
        cfg.close_timeout = Duration::from_secs(10);
        let (server, events) = start(cfg);
        let started = Instant::now();

        let child = Command::new(std::env::current_exe().unwrap())
            .args([
                "scale_client_process",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env(ADDR_VAR, server.local_addr().to_string())
            .env(COUNT_VAR, connections.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the client process");
        let mut child = ChildGuard(Some(child));
        let c = child.0.as_mut().unwrap();
        let mut to_child = c.stdin.take().unwrap();
        let from_child = BufReader::new(c.stdout.take().unwrap());
        let (lines_tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in from_child.lines().map_while(Result::ok) {
                // libtest may print "test scale_client_process ... " first on the line.
                if let Some(at) = line.find("SCALE ") {
                    let _ = lines_tx.send(line[at + 6..].to_owned());
                }
            }
        });
        let expect_line = |want: String, within: Duration| match lines.recv_timeout(within) {
            Ok(line) => assert_eq!(line, want, "client process"),
            Err(_) => panic!("the client process did not report {want:?} within {within:?}"),
        };

        expect_line(format!("open {connections}"), Duration::from_secs(120));
        let opened_in = started.elapsed();
        // All of them open at the same time, as the server sees it, and idle ones hold
        // no spill record.
        assert_eq!(open_count(&server), connections, "open on the server");
        assert!(
            eventually(Duration::from_secs(5), || pool_in_use(&server) == 0),
            "idle connections hold spill records"
        );
        let per_worker = on_workers(&server, |c| c.ids().len());
        assert!(
            per_worker.iter().all(|&n| n > 0),
            "both workers hold connections: {per_worker:?}"
        );

        writeln!(to_child, "close").unwrap();
        to_child.flush().unwrap();
        expect_line(format!("closed {connections}"), Duration::from_secs(120));
        let status = child.0.take().unwrap().wait().unwrap();
        assert!(status.success(), "client process failed: {status}");

        assert!(
            eventually(Duration::from_secs(10), || conn_count(&server) == 0),
            "connections left on the server: {}",
            conn_count(&server)
        );
        let s = stats(&server);
        assert_eq!(s.opened, connections as u64, "{s:?}");
        assert_eq!(s.closed_cleanly, connections as u64, "{s:?}");
        assert_eq!(s.closed_abnormally, 0, "{s:?}");
        assert_eq!(s.refused_full, 0, "{s:?}");
        let mut closes = 0;
        while let Some(ev) = events.try_next(Duration::ZERO) {
            if let Ev::Close { code, .. } = ev {
                assert_eq!(code, 1000);
                closes += 1;
            }
        }
        assert_eq!(closes, connections, "on_close calls");
        let report = server.shutdown().unwrap();
        assert_eq!(report.connections, 0);
        println!(
            "{backend:?}: {connections} connections open in {opened_in:?}, all done in {:?}",
            started.elapsed()
        );
    }
}

/// The client half of the test above, run in a child process by it. Does nothing when
/// run directly.
#[test]
#[ignore = "the client process of fifteen_thousand_connections_open_at_once_echo_and_close_cleanly"]
fn scale_client_process() {
    let Ok(addr) = std::env::var(ADDR_VAR) else {
        eprintln!("scale_client_process is started by the scale test; nothing to do");
        return;
    };
    let addr: SocketAddr = addr.parse().unwrap();
    let n: usize = std::env::var(COUNT_VAR).unwrap().parse().unwrap();
    raise_nofile();

    // Open, handshake and echo one message on every connection, in a few threads.
    let slices: Vec<Vec<usize>> = (0..CLIENT_THREADS)
        .map(|t| (t..n).step_by(CLIENT_THREADS).collect())
        .collect();
    let mut conns: Vec<Vec<(usize, Tcp)>> = std::thread::scope(|s| {
        let threads: Vec<_> = slices
            .iter()
            .map(|slice| s.spawn(move || open_all(addr, slice)))
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    });
    let open: usize = conns.iter().map(Vec::len).sum();
    println!("SCALE open {open}");
    std::io::stdout().flush().unwrap();

    let mut line = String::new();
    std::io::stdin().read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "close");

    // Close every one: our close, the echo with the same code, then the server's FIN.
    std::thread::scope(|s| {
        for slice in &mut conns {
            s.spawn(move || close_all(slice));
        }
    });
    println!("SCALE closed {open}");
    std::io::stdout().flush().unwrap();
}

fn open_all(server: SocketAddr, slice: &[usize]) -> Vec<(usize, Tcp)> {
    let request = format!(
        "GET / HTTP/1.1\r\nHost: {server}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    let accept = tungstenite::handshake::derive_accept_key(KEY.as_bytes());
    let mut conns = Vec::with_capacity(slice.len());
    // Connect and send every request first, then read the answers: the server works on
    // many at once.
    for &i in slice {
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .expect("socket");
        // Varied source addresses spread the connections over many port ranges.
        let source = Ipv4Addr::new(127, 0, (2 + i / 250 / 250) as u8, (2 + i / 250 % 248) as u8);
        socket
            .bind(&SocketAddrV4::new(source, 0).into())
            .expect("bind a source address");
        socket
            .connect_timeout(&server.into(), Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("connection {i}: connect: {e}"));
        let mut stream = Tcp(socket.into());
        stream.set_nodelay(true).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        stream.write_all(request.as_bytes()).unwrap();
        conns.push((i, stream));
    }
    for (i, stream) in &mut conns {
        let mut head = Vec::new();
        let mut buf = [0u8; 512];
        while !head.ends_with(b"\r\n\r\n") {
            let n = stream
                .read(&mut buf)
                .unwrap_or_else(|e| panic!("connection {i}: reading the response: {e}"));
            assert!(n > 0, "connection {i}: closed during the handshake");
            head.extend_from_slice(&buf[..n]);
        }
        let head = String::from_utf8(head).unwrap();
        assert!(
            head.starts_with("HTTP/1.1 101 ") && head.contains(&accept),
            "connection {i}: {head:?}"
        );
        stream
            .write_all(&encode(
                true,
                OP_TEXT,
                format!("m{i}").as_bytes(),
                Some(MASK),
            ))
            .unwrap();
    }
    for (i, stream) in &mut conns {
        let mut header = [0u8; 2];
        stream
            .read_exact(&mut header)
            .unwrap_or_else(|e| panic!("connection {i}: reading the echo: {e}"));
        let mut payload = vec![0u8; (header[1] & 0x7f) as usize];
        stream.read_exact(&mut payload).unwrap();
        assert_eq!(header[0], 0x81, "connection {i}: a final text frame");
        assert_eq!(
            payload,
            format!("m{i}").as_bytes(),
            "connection {i}: the echo"
        );
    }
    conns
}

fn close_all(conns: &mut Vec<(usize, Tcp)>) {
    let close = encode(true, OP_CLOSE, &close_payload(1000, b""), Some(MASK));
    for (_, stream) in conns.iter_mut() {
        stream.write_all(&close).unwrap();
    }
    for (i, stream) in conns.iter_mut() {
        let mut frame = [0u8; 4];
        stream
            .read_exact(&mut frame)
            .unwrap_or_else(|e| panic!("connection {i}: reading the close echo: {e}"));
        assert_eq!(
            frame,
            [0x88, 2, 0x03, 0xe8],
            "connection {i}: the close echo"
        );
        let mut rest = [0u8; 16];
        let n = stream
            .read(&mut rest)
            .unwrap_or_else(|e| panic!("connection {i}: waiting for the server's FIN: {e}"));
        assert_eq!(n, 0, "connection {i}: bytes after the close frame");
    }
    conns.clear();
}
