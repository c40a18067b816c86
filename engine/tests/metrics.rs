//! Metrics (issue 16): known traffic gives exact counter values, in the typed snapshot
//! ([`Server::metrics`]) and in the Prometheus text served at `/metrics` (on the
//! listener, asked across workers, and on an admin address); `promtool check metrics`
//! accepts the text; a real Prometheus scraping the server sees the connections held.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use throng_engine::{Closer, Config, Metrics, MetricsEndpoint, SendError, Server};

const WAIT: Duration = Duration::from_secs(5);

/// A plain HTTP GET; returns (status, body). The server closes after its answer.
fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect for HTTP");
    s.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("an HTTP answer, then EOF");
    let text = String::from_utf8(raw).expect("UTF-8 answer");
    let (head, body) = text.split_once("\r\n\r\n").expect("a whole head");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    (status, body.to_owned())
}

/// The sum of the samples of `name` whose labels include every pair of `labels`.
fn sum(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    let mut total = 0.0;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (series, value) = line.rsplit_once(' ').expect("name and value");
        let (n, rest) = match series.split_once('{') {
            Some((n, rest)) => (n, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        if n != name {
            continue;
        }
        let has = |k: &str, v: &str| rest.split(',').any(|p| p == format!("{k}=\"{v}\""));
        if labels.iter().all(|(k, v)| has(k, v)) {
            total += value.parse::<f64>().expect("a number");
        }
    }
    total
}

/// `promtool check metrics` on `text`: must pass where promtool is installed, and be
/// installed under CI.
fn promtool_check(text: &str) {
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => return missing("promtool", e),
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A tool the test needs is not installed: fail under CI, skip loudly elsewhere.
fn missing(tool: &str, e: std::io::Error) {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{tool} is not installed ({e}); .ci/run installs Debian's prometheus package");
    }
    let _ = writeln!(
        std::io::stderr(),
        "\n!!!!!!!!!! {tool} not found ({e}): this check is SKIPPED (apt-get install prometheus) !!!!!!!!!!\n"
    );
}

fn metrics_config(backend: throng_engine::BackendChoice) -> Config {
    let mut cfg = config(backend);
    cfg.ping_interval = None;
    cfg.max_buffered = 1 << 20;
    cfg.metrics = MetricsEndpoint::Listener;
    cfg
}

/// Waits until every worker has settled to `open` open connections and none held.
fn settled<H: throng_engine::Handler>(server: &Server<H>, open: u64) -> Metrics {
    let deadline = Instant::now() + WAIT;
    loop {
        let m = server.metrics(WAIT);
        if m.open() == open
            && m.workers.iter().map(|w| w.connections).sum::<usize>() == open as usize
            || Instant::now() > deadline
        {
            return m;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn known_traffic_gives_exact_counts_in_the_snapshot_and_the_text() {
    const N: usize = 6;
    const M: usize = 5;
    for backend in backends() {
        let (server, events) = start(metrics_config(backend));
        let addr = server.local_addr();

        // N clients, M echoed messages each.
        let mut clients: Vec<_> = (0..N).map(|_| connect(addr, "/")).collect();
        for _ in 0..N {
            events.opened();
        }
        for ws in &mut clients {
            for i in 0..M {
                ws.send(tungstenite::Message::text(format!("message {i:3}")))
                    .unwrap();
                assert!(read_data(ws).is_text());
            }
        }
        let m = settled(&server, N as u64);
        assert_eq!(m.asked, 2, "both workers asked");
        assert_eq!(m.workers.len(), 2, "both workers answered");
        assert_eq!(m.open(), N as u64);
        let t = m.total();
        assert_eq!(
            (t.opened, t.messages_in, t.messages_out),
            (N as u64, (N * M) as u64, (N * M) as u64)
        );
        // Each message is 11 bytes: 6 bytes of masked header in, 2 bytes of header out.
        assert!(t.bytes_in >= (N * M * 17) as u64, "{}", t.bytes_in);
        assert!(t.bytes_out >= (N * M * 13) as u64, "{}", t.bytes_out);

        // The text served on the listener, asked across the workers, agrees.
        let (status, text) = http_get(addr, "/metrics");
        assert_eq!(status, 200, "{text}");
        assert_eq!(
            sum(&text, "throng_connections_open", &[]),
            N as f64,
            "{text}"
        );
        assert_eq!(sum(&text, "throng_workers", &[("state", "answered")]), 2.0);
        assert_eq!(
            sum(&text, "throng_messages_received_total", &[]),
            (N * M) as f64
        );
        assert!(sum(&text, "throng_process_resident_memory_bytes", &[]) > 1e6);
        let info = format!("backend=\"{}\"", kind_of(backend).name());
        assert!(text.contains(&info), "{text}");
        promtool_check(&text);
        assert_eq!(http_get(addr, "/healthz"), (200, "ok\n".to_owned()));

        // A rejected handshake (a foreign origin gets 403).
        let mut evil = Raw::tcp(addr);
        evil.write(upgrade_request(addr, "/", &format!("Origin: {EVIL_ORIGIN}\r\n")).as_bytes());
        assert_eq!(evil.read_head().status, 403);

        // A protocol error: an unmasked frame fails the connection with 1002.
        let mut bad = Raw::open(addr);
        let bad_id = events.opened();
        bad.write(&encode(true, OP_TEXT, b"unmasked", None));
        assert_eq!(bad.read_close().map(|c| c.0), Some(1002));
        assert_eq!(events.closed_id(bad_id).0, 1002);
        drop(bad);

        // A backpressure drop: 200 x 64 KiB into a client that is not reading, 1 MiB cap.
        let mut slow = Raw::open(addr);
        events.opened();
        slow.send(true, OP_TEXT, b"!flood 200 65536");
        let report = events.flood();
        let refused = report
            .results
            .iter()
            .filter(|r| **r == Err(SendError::Backpressure))
            .count();
        let accepted = report.results.iter().filter(|r| r.is_ok()).count();
        assert!(refused > 0 && accepted + refused == 200);
        for _ in 0..accepted {
            assert_eq!(slow.read_frame().payload.len(), 65536);
        }
        slow.send_close(1000, "");
        assert_eq!(slow.read_close(), Some((1000, String::new())));

        // The N clients close (the peer closes, 1000).
        for mut ws in clients {
            let normal = tungstenite::protocol::CloseFrame {
                code: tungstenite::protocol::frame::coding::CloseCode::Normal,
                reason: "".into(),
            };
            ws.close(Some(normal)).unwrap();
            assert!(
                matches!(ws.read(), Ok(tungstenite::Message::Close(Some(f))) if u16::from(f.code) == 1000)
            );
            finish_close(&mut ws);
        }
        drop(slow);
        let m = settled(&server, 0);
        let t = m.total();
        let opened = N as u64 + 2;
        assert_eq!(t.opened, opened);
        assert_eq!(t.closed_total(), opened);
        assert_eq!(
            t.closed_with(Closer::Peer, 1000),
            N as u64 + 1,
            "{:?}",
            t.closed
        );
        assert_eq!(t.closed_with(Closer::Server, 1002), 1, "{:?}", t.closed);
        assert_eq!(t.rejected_with(403), 1);
        assert_eq!(t.rejected_total(), 1);
        assert_eq!(t.protocol_errors, 1);
        assert_eq!(t.dropped, refused as u64);
        assert_eq!(t.reads_paused, 1, "the flood paused its reader once");
        assert_eq!(
            t.messages_in,
            (N * M) as u64 + 1,
            "the echoes and the flood command"
        );
        assert_eq!(t.messages_out, (N * M + accepted) as u64);
        assert_eq!((t.pings_sent, t.pong_timeouts, t.policy_closes), (0, 0, 0));
        assert_eq!(t.http_requests, 2, "/metrics and /healthz");
        let turns: u64 = t.turn_buckets.iter().sum();
        assert!(turns > 0 && t.turn_nanos > 0);
        for w in &m.workers {
            assert_eq!((w.buffered_bytes, w.spill_in_use), (0, 0), "{w:?}");
        }

        // The same figures in the text (one more HTTP request: the scrape itself).
        let (_, text) = http_get(addr, "/metrics");
        let closed = |by: &str, code: &str| {
            sum(
                &text,
                "throng_connections_closed_total",
                &[("by", by), ("code", code)],
            )
        };
        assert_eq!(closed("peer", "1000"), (N + 1) as f64, "{text}");
        assert_eq!(closed("server", "1002"), 1.0, "{text}");
        assert_eq!(
            sum(&text, "throng_connections_closed_total", &[]),
            opened as f64
        );
        assert_eq!(
            sum(
                &text,
                "throng_handshakes_rejected_total",
                &[("status", "403")]
            ),
            1.0
        );
        assert_eq!(sum(&text, "throng_protocol_errors_total", &[]), 1.0);
        assert_eq!(
            sum(&text, "throng_dropped_messages_total", &[]),
            refused as f64
        );
        assert_eq!(sum(&text, "throng_connections_open", &[]), 0.0);
        assert_eq!(sum(&text, "throng_http_requests_total", &[]), 3.0);
        let count = sum(&text, "throng_loop_turn_seconds_count", &[]);
        let inf = sum(&text, "throng_loop_turn_seconds_bucket", &[("le", "+Inf")]);
        assert!(count >= turns as f64 && count == inf, "{count} {inf}");
        promtool_check(&text);
        server.shutdown().unwrap();
    }
}

#[test]
fn a_pong_timeout_and_a_ping_are_counted() {
    for backend in backends() {
        let mut cfg = metrics_config(backend);
        cfg.ping_interval = Some(Duration::from_millis(300));
        cfg.pong_timeout = Duration::from_millis(300);
        let (server, events) = start(cfg);
        // Opens, then neither reads nor writes: a half-open peer.
        let _raw = Raw::open(server.local_addr());
        let id = events.opened();
        assert_eq!(events.closed_id(id).0, 1006);
        let t = settled(&server, 0).total();
        assert_eq!((t.pings_sent, t.pong_timeouts, t.timed_out), (1, 1, 1));
        assert_eq!(t.closed_with(Closer::Server, 1006), 1, "{:?}", t.closed);
        assert_eq!(t.closed_total(), 1);
        let (_, text) = http_get(server.local_addr(), "/metrics");
        assert_eq!(sum(&text, "throng_pong_timeouts_total", &[]), 1.0);
        assert_eq!(sum(&text, "throng_pings_sent_total", &[]), 1.0);
        server.shutdown().unwrap();
    }
}

#[test]
fn a_scrape_pipelined_behind_a_kept_alive_request_is_answered() {
    for backend in backends() {
        let (server, events) = start(metrics_config(backend));
        let addr = server.local_addr();
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        // One write, so both requests arrive in one read (write! would write piece by piece).
        let requests = format!(
            "GET /hello HTTP/1.1\r\nHost: {addr}\r\n\r\nGET /metrics HTTP/1.1\r\nHost: {addr}\r\n\r\n"
        );
        s.write_all(requests.as_bytes()).unwrap();
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).expect("both answers, then EOF");
        let text = String::from_utf8(raw).unwrap();
        assert_eq!(text.matches("HTTP/1.1 200").count(), 2, "{text}");
        let (hello, metrics) = text.split_once("throng_backend_info").expect("the metrics");
        assert!(hello.contains(HELLO_BODY), "{text}");
        assert!(metrics.contains("throng_http_requests_total"), "{text}");
        assert!(matches!(events.next(), Ev::Request { path } if path == "/hello"));
        server.shutdown().unwrap();
    }
}

#[test]
fn the_endpoint_is_where_the_config_puts_it() {
    for backend in backends() {
        // Admin address: the listener leaves /metrics to on_request.
        let mut cfg = metrics_config(backend);
        cfg.metrics = MetricsEndpoint::Admin("127.0.0.1:0".parse().unwrap());
        let (server, events) = start(cfg);
        let admin = server.admin_addr().expect("an admin address");
        let _ws = connect(server.local_addr(), "/");
        events.opened();
        let (status, text) = http_get(admin, "/metrics");
        assert_eq!(status, 200);
        assert_eq!(sum(&text, "throng_connections_open", &[]), 1.0, "{text}");
        assert_eq!(sum(&text, "throng_workers", &[("state", "answered")]), 2.0);
        promtool_check(&text);
        assert_eq!(http_get(admin, "/healthz"), (200, "ok\n".to_owned()));
        assert_eq!(http_get(admin, "/nothing").0, 404);
        assert_eq!(http_get(server.local_addr(), "/metrics").0, 426);
        assert!(matches!(events.next(), Ev::Request { path } if path == "/metrics"));
        server.shutdown().unwrap();
        assert!(
            TcpStream::connect(admin).is_err(),
            "the admin listener closes with the server"
        );

        // Off: no endpoint; the typed snapshot still works.
        let mut cfg = metrics_config(backend);
        cfg.metrics = MetricsEndpoint::Off;
        let (server, events) = start(cfg);
        assert!(server.admin_addr().is_none());
        assert_eq!(http_get(server.local_addr(), "/metrics").0, 426);
        assert!(matches!(events.next(), Ev::Request { path } if path == "/metrics"));
        assert_eq!(server.metrics(WAIT).total().http_requests, 1);
        server.shutdown().unwrap();
    }
}

/// A Prometheus server we started, stopped by its pid when dropped.
struct Prometheus(Child, std::path::PathBuf);

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        let _ = std::fs::remove_dir_all(&self.1);
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `sum(throng_connections_open)` as Prometheus answers it, if it has a value yet.
fn query_open(prometheus: SocketAddr) -> Option<f64> {
    let mut s = TcpStream::connect(prometheus).ok()?;
    s.set_read_timeout(Some(READ_TIMEOUT)).ok()?;
    write!(
        s,
        "GET /api/v1/query?query=sum(throng_connections_open) HTTP/1.0\r\nHost: {prometheus}\r\n\r\n"
    )
    .ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    // {"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1.7e9,"7"]}]}}
    let value = body.split("\"value\":[").nth(1)?;
    let quoted = value.split('"').nth(1)?;
    quoted.parse().ok()
}

#[test]
fn a_real_prometheus_scrapes_the_connections_held() {
    const HELD: usize = 7;
    let backend = backends()[0];
    let (server, events) = start(metrics_config(backend));
    let target = server.local_addr();
    let dir = std::env::temp_dir().join(format!("throng-prometheus-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: throng\n    scrape_interval: 1s\n    static_configs:\n      - targets: ['{target}']\n"
        ),
    )
    .unwrap();
    let web: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address={web}"))
        .stdout(Stdio::null())
        .stderr(Stdio::from(std::fs::File::create(dir.join("log")).unwrap()))
        .spawn();
    let _prometheus = match child {
        Ok(c) => Prometheus(c, dir.clone()),
        Err(e) => {
            missing("prometheus", e);
            server.shutdown().unwrap();
            return;
        }
    };
    let clients: Vec<_> = (0..HELD).map(|_| connect(target, "/")).collect();
    for _ in 0..HELD {
        events.opened();
    }
    // Prometheus starts, scrapes every second, and the instant query sees the last scrape.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = None;
    while Instant::now() < deadline {
        seen = query_open(web);
        if seen == Some(HELD as f64) {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let log = std::fs::read_to_string(dir.join("log")).unwrap_or_default();
    assert_eq!(
        seen,
        Some(HELD as f64),
        "sum(throng_connections_open) from Prometheus; its log:\n{log}"
    );
    drop(clients);
    server.shutdown().unwrap();
}
