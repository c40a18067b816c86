//! Plain HTTP keep-alive (issue 18): requests answered through `on_request` keep the
//! connection for the next one (HTTP/1.1; HTTP/1.0 only when asked), `Connection: close`
//! is honoured, pipelined requests are all answered in order (16 per read, then reading
//! pauses until the answers are out), a WebSocket upgrade may follow on the same
//! connection, and an idle kept-alive connection is closed after `http_keep_alive`.
//! Real clients: Python's http.client and curl; raw sockets for the framing details. On
//! each backend.

mod common;

use std::io::Write;
use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

/// Python's http.client: five requests on one `HTTPConnection`; prints the local port of
/// the socket each went out on (http.client reconnects silently when the server closed).
const PY_CLIENT: &str = r#"
import http.client, sys
host, port = sys.argv[1], int(sys.argv[2])
c = http.client.HTTPConnection(host, port, timeout=5)
ports = []
for i in range(5):
    method = "HEAD" if i == 2 else "GET"
    c.request(method, "/hello?i=%d" % i)
    r = c.getresponse()
    body = r.read()
    assert r.status == 200, r.status
    assert body == (b"" if method == "HEAD" else b"hello from throng\n"), body
    assert r.getheader("Connection") is None, r.getheader("Connection")
    ports.append(c.sock.getsockname()[1])
print(" ".join(map(str, ports)))
"#;

fn python(addr: SocketAddr) -> String {
    let out = Command::new("python3")
        .args([
            "-c",
            PY_CLIENT,
            &addr.ip().to_string(),
            &addr.port().to_string(),
        ])
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "http.client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn python_http_client_reuses_one_connection() {
    for backend in backends() {
        let (server, _events) = start(config(backend));
        let ports = python(server.local_addr());
        let distinct: std::collections::HashSet<&str> = ports.split(' ').collect();
        assert_eq!(
            distinct.len(),
            1,
            "{backend:?}: requests went out on ports {ports}"
        );
        let s = stats(&server);
        assert_eq!(s.accepted, 1, "{backend:?}: one TCP connection: {s:?}");
        assert_eq!(s.http_kept_alive, 5, "{backend:?}: {s:?}");
        server.shutdown().unwrap();
    }
}

#[test]
fn curl_reuses_the_connection_for_several_urls() {
    for backend in backends() {
        let (server, _events) = start(config(backend));
        let url = format!("http://{}/hello", server.local_addr());
        let out = Command::new("curl")
            .args(["-sv", "--max-time", "5", &url, &url, &url])
            .output()
            .expect("curl runs");
        assert!(out.status.success(), "curl failed: {out:?}");
        let body = String::from_utf8_lossy(&out.stdout);
        assert_eq!(body, HELLO_BODY.repeat(3));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("Re-using existing connection") || err.contains("Reusing existing"),
            "{err}"
        );
        assert_eq!(stats(&server).accepted, 1);
        server.shutdown().unwrap();
    }
}

fn get(addr: SocketAddr, extra: &str) -> String {
    format!("GET /hello HTTP/1.1\r\nHost: {addr}\r\n{extra}\r\n")
}

#[test]
fn close_and_http_1_0_semantics_are_honoured() {
    for backend in backends() {
        let (server, _events) = start(config(backend));
        let addr = server.local_addr();

        // HTTP/1.1 with Connection: close: answered, then closed.
        let mut raw = Raw::tcp(addr);
        raw.write(get(addr, "Connection: close\r\n").as_bytes());
        let head = raw.read_head();
        assert_eq!(
            (head.status, head.header("Connection")),
            (200, Some("close"))
        );
        raw.expect_eof();

        // HTTP/1.0 without keep-alive: closed.
        let mut raw = Raw::tcp(addr);
        raw.write(format!("GET /hello HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes());
        let head = raw.read_head();
        assert_eq!(
            (head.status, head.header("Connection")),
            (200, Some("close"))
        );
        raw.expect_eof();

        // HTTP/1.0 asking for keep-alive: kept, and says so.
        let mut raw = Raw::tcp(addr);
        for _ in 0..3 {
            raw.write(b"GET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
            let head = raw.read_head();
            assert_eq!(head.header("Connection"), Some("keep-alive"), "{head:?}");
            assert_eq!(head.body, HELLO_BODY.as_bytes());
        }

        // A request with a body is answered and closed (the engine does not read bodies).
        let mut raw = Raw::tcp(addr);
        raw.write(
            format!("POST /hello HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 3\r\n\r\nabc")
                .as_bytes(),
        );
        let head = raw.read_head();
        assert_eq!(head.header("Connection"), Some("close"), "{head:?}");
        raw.expect_eof();
        server.shutdown().unwrap();
    }
}

#[test]
fn pipelined_requests_are_all_answered_in_order() {
    const N: usize = 500;
    for backend in backends() {
        let (server, events) = start(config(backend));
        let addr = server.local_addr();
        let mut raw = Raw::tcp(addr);
        // All at once, more than one batch of 16 per read and more than one read.
        let mut all = Vec::new();
        for i in 0..N {
            all.extend(format!("GET /p{i} HTTP/1.1\r\nHost: {addr}\r\n\r\n").into_bytes());
        }
        raw.write(&all);
        for i in 0..N {
            let head = raw.read_head();
            assert_eq!(head.status, 426, "{backend:?}: answer {i}: {head:?}");
            match events.next() {
                Ev::Request { path } => assert_eq!(path, format!("/p{i}")),
                other => panic!("expected request {i}, got {other:?}"),
            }
        }
        // Still open: one more.
        raw.write(get(addr, "").as_bytes());
        assert_eq!(raw.read_head().body, HELLO_BODY.as_bytes());
        assert_eq!(stats(&server).accepted, 1);
        server.shutdown().unwrap();
    }
}

/// A client that pipelines a great many requests and reads nothing for a while: the
/// server answers in batches while the socket takes them and then waits; once the client
/// reads, every answer arrives in order.
#[test]
fn a_pipeliner_that_does_not_read_is_answered_when_it_does() {
    const N: usize = 100_000;
    for backend in backends() {
        let (server, _events) = start(config(backend));
        let addr = server.local_addr();
        let mut raw = Raw::tcp(addr);
        let one = format!("GET /hello HTTP/1.1\r\nHost: {addr}\r\n\r\n");
        let writer = {
            let mut s = raw.stream.try_clone().unwrap();
            let all = one.repeat(N);
            std::thread::spawn(move || s.write_all(all.as_bytes()))
        };
        std::thread::sleep(Duration::from_millis(500));
        let answered = stats(&server).http_kept_alive;
        eprintln!("{backend:?}: {answered} of {N} answered before the client read");
        assert!(
            (answered as usize) < N,
            "{backend:?}: all {N} answered with nobody reading"
        );
        for i in 0..N {
            let head = raw.read_head();
            assert_eq!(head.body, HELLO_BODY.as_bytes(), "{backend:?}: answer {i}");
        }
        writer.join().unwrap().unwrap();
        assert_eq!(stats(&server).http_kept_alive as usize, N);
        server.shutdown().unwrap();
    }
}

#[test]
fn an_upgrade_may_follow_plain_requests_on_the_same_connection() {
    for backend in backends() {
        let (server, events) = start(config(backend));
        let addr = server.local_addr();
        let mut raw = Raw::tcp(addr);
        raw.write(get(addr, "").as_bytes());
        assert_eq!(raw.read_head().status, 200);
        // The next request and the upgrade together, and a frame behind it.
        let mut bytes = get(addr, "").into_bytes();
        bytes.extend(upgrade_request(addr, "/echo", "").into_bytes());
        bytes.extend(encode(true, OP_TEXT, b"after plain http", Some(MASK)));
        raw.write(&bytes);
        assert_eq!(raw.read_head().status, 200);
        assert_eq!(raw.read_head().status, 101);
        events.opened();
        let frame = raw.read_frame();
        assert_eq!(frame.payload, b"after plain http");
        assert_eq!(stats(&server).accepted, 1);
        server.shutdown().unwrap();
    }
}

#[test]
fn an_idle_kept_alive_connection_is_closed_after_the_timeout() {
    for backend in backends() {
        let mut cfg = config(backend);
        cfg.http_keep_alive = Some(Duration::from_millis(600));
        cfg.timer_tick = Duration::from_millis(50);
        let (server, _events) = start(cfg);
        let addr = server.local_addr();
        let mut raw = Raw::tcp(addr);
        raw.write(get(addr, "").as_bytes());
        assert_eq!(raw.read_head().status, 200);
        let t = Instant::now();
        raw.expect_closed();
        let waited = t.elapsed();
        assert!(
            waited >= Duration::from_millis(500) && waited < Duration::from_secs(3),
            "{backend:?}: closed after {waited:?}"
        );

        // Off: every answer closes.
        let mut cfg = config(backend);
        cfg.http_keep_alive = None;
        let (off, _events) = start(cfg);
        let mut raw = Raw::tcp(off.local_addr());
        raw.write(get(off.local_addr(), "").as_bytes());
        assert_eq!(raw.read_head().header("Connection"), Some("close"));
        raw.expect_eof();
        off.shutdown().unwrap();
        server.shutdown().unwrap();
    }
}
