//! `throng-load echo` and `throng-load hold` over `wss://` (the built binary) against the
//! engine's TLS listener on each backend: echoes of several sizes (records split across
//! reads, messages larger than the session's send buffer) with the certificate trusted
//! through `--cafile` and with any certificate accepted; a hold whose pings are answered,
//! whose broadcast reaches every connection and whose close ends with the server's
//! close_notify; a certificate not trusted, and a plain server behind a wss:// URL, failing
//! every connection without a hang.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use throng_engine::{
    BackendChoice, Config, Decision, Handler, Message, Server, TlsConfig, UpgradeRequest, WebSocket,
};

struct Echo {
    count: Arc<AtomicU64>,
}

impl Handler for Echo {
    type State = ();
    fn on_upgrade<'r>(&mut self, _req: &UpgradeRequest<'r>) -> Decision<'r, ()> {
        Decision::accept(())
    }
    fn on_open(&mut self, ws: &mut WebSocket<'_, ()>) {
        ws.subscribe("all");
    }
    fn on_message(&mut self, ws: &mut WebSocket<'_, ()>, msg: Message<'_>) {
        self.count.fetch_add(1, Ordering::Relaxed);
        let _ = ws.send(msg);
    }
}

/// A self-signed pair for 127.0.0.1 and localhost, written to a directory of this test.
struct Pem {
    dir: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

impl Pem {
    fn new(name: &str) -> Pem {
        let dir =
            std::env::temp_dir().join(format!("throng-load-wss-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let c = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()])
            .unwrap();
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert, c.cert.pem()).unwrap();
        std::fs::write(&key, c.signing_key.serialize_pem()).unwrap();
        Pem { dir, cert, key }
    }
}

impl Drop for Pem {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn server(backend: BackendChoice, tls: Option<&Pem>) -> (Server<Echo>, Arc<AtomicU64>) {
    let mut cfg = Config::new("127.0.0.1:0".parse().unwrap())
        .with_workers(2)
        .with_pinning(false)
        .with_backend(backend);
    cfg.ping_interval = Some(Duration::from_millis(200));
    cfg.pong_timeout = Duration::from_millis(400);
    cfg.timer_tick = Duration::from_millis(50);
    cfg.shutdown_timeout = Duration::from_secs(1);
    if let Some(p) = tls {
        cfg = cfg.with_tls(TlsConfig::from_pem_files(&p.cert, &p.key).unwrap());
    }
    let count = Arc::new(AtomicU64::new(0));
    let c = count.clone();
    let server = Server::start(cfg, move |_| Echo { count: c.clone() }).expect("server starts");
    (server, count)
}

/// `throng-load echo` (bounded: it stops itself) and its last line.
fn echo(args: &[&str]) -> (Output, Value) {
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_throng-load"))
        .arg("echo")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("throng-load runs");
    assert!(started.elapsed() < Duration::from_secs(40));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    let last = stdout
        .lines()
        .last()
        .unwrap_or_else(|| panic!("no output; stderr: {stderr}"));
    (
        out,
        serde_json::from_str(last).expect("the last line is JSON"),
    )
}

#[test]
fn echo_over_wss_on_each_backend() {
    let pem = Pem::new("echo");
    let ca = pem.cert.to_str().unwrap();
    for backend in throng_engine::testing::backends() {
        let (server, count) = server(backend, Some(&pem));
        let port = server.local_addr().port();
        // By IP (the certificate names 127.0.0.1) and by name; sizes from empty to
        // several 16 KiB records and more than the session's 64 KiB send buffer.
        for (url, size, cafile) in [
            (format!("wss://127.0.0.1:{port}/"), "64", Some(ca)),
            (format!("wss://localhost:{port}/x"), "0", Some(ca)),
            (format!("wss://127.0.0.1:{port}/"), "40000", Some(ca)),
            (format!("wss://127.0.0.1:{port}/"), "300000", None),
        ] {
            let before = count.load(Ordering::Relaxed);
            let mut args = vec!["--url", &url, "--connections", "20", "--size", size];
            args.extend(["--duration", "0.8", "--warmup", "0.2", "--json"]);
            if let Some(ca) = cafile {
                args.extend(["--cafile", ca]);
            }
            let (out, v) = echo(&args);
            let what = format!("{backend:?} {url} size {size}: {v}");
            assert!(out.status.success(), "{what}");
            assert_eq!(v["url"], url.as_str(), "{what}");
            assert_eq!(
                (v["open"].as_u64(), v["errors"].as_u64()),
                (Some(20), Some(0)),
                "{what}"
            );
            assert_eq!(v["lost"], 0, "{what}");
            let echoed = v["messages"].as_u64().unwrap();
            assert!(echoed >= 20, "{what}");
            // The server saw at least every echo counted (and the warm-up's).
            assert!(count.load(Ordering::Relaxed) - before >= echoed, "{what}");
        }
        drop(server);
    }
}

#[test]
fn untrusted_certificates_and_plain_servers_fail_every_connection() {
    let pem = Pem::new("trust");
    let other = Pem::new("other");
    for backend in throng_engine::testing::backends() {
        let (tls_server, _) = server(backend, Some(&pem));
        let url = format!("wss://127.0.0.1:{}/", tls_server.local_addr().port());
        let ca = other.cert.to_str().unwrap();
        let args = [
            "--url",
            &url,
            "--connections",
            "5",
            "--size",
            "8",
            "--duration",
            "0.3",
        ];
        let (out, v) = echo(
            &[
                &args[..],
                &["--json", "--cafile", ca, "--open-timeout", "10"],
            ]
            .concat(),
        );
        assert!(!out.status.success(), "{backend:?}: {v}");
        assert_eq!(
            (v["open"].as_u64(), v["errors"].as_u64()),
            (Some(0), Some(5)),
            "{v}"
        );
        let error = v["error"].as_str().unwrap_or_default();
        assert!(
            error.contains("certificate") || error.contains("Certificate"),
            "{v}"
        );

        let (plain, _) = server(backend, None);
        let url = format!("wss://127.0.0.1:{}/", plain.local_addr().port());
        let args = [
            "--url",
            &url,
            "--connections",
            "5",
            "--size",
            "8",
            "--duration",
            "0.3",
        ];
        let started = Instant::now();
        let (out, v) = echo(&[&args[..], &["--json", "--open-timeout", "10"]].concat());
        assert!(!out.status.success(), "{backend:?}: {v}");
        assert_eq!(v["open"], 0, "{v}");
        assert!(started.elapsed() < Duration::from_secs(10), "no hang: {v}");
    }
}

#[test]
fn hold_over_wss_answers_pings_gets_the_broadcast_and_closes_cleanly() {
    let pem = Pem::new("hold");
    for backend in throng_engine::testing::backends() {
        let (server, _) = server(backend, Some(&pem));
        let url = format!("wss://127.0.0.1:{}/", server.local_addr().port());
        let n = 300;
        let mut child = Command::new(env!("CARGO_BIN_EXE_throng-load"))
            .args(["hold", "--url", &url, "--connections", &n.to_string()])
            .args([
                "--cafile",
                pem.cert.to_str().unwrap(),
                "--open-timeout",
                "20",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("throng-load runs");
        let mut stdin = child.stdin.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel::<Value>();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx
                    .send(serde_json::from_str(&line).expect("JSON line"))
                    .is_err()
                {
                    break;
                }
            }
        });
        let next = |kind: &str| loop {
            let v = lines
                .recv_timeout(Duration::from_secs(30))
                .unwrap_or_else(|_| panic!("{backend:?}: no {kind} line"));
            if v["event"] == kind {
                return v;
            }
        };
        let ramped = next("ramped");
        assert_eq!(
            (ramped["connected"].as_u64(), ramped["failed"].as_u64()),
            (Some(n), Some(0)),
            "{ramped}"
        );
        // Several ping rounds (every 200 ms, 400 ms to answer): none may close a connection.
        std::thread::sleep(Duration::from_millis(1200));
        writeln!(stdin, "stats").unwrap();
        let stats = next("stats");
        assert_eq!(
            (stats["open"].as_u64(), stats["closed_by_server"].as_u64()),
            (Some(n), Some(0)),
            "{stats}"
        );
        assert!(stats["pings_answered"].as_u64().unwrap() >= n, "{stats}");
        writeln!(stdin, "expect-broadcast").unwrap();
        let ticket = server
            .handle()
            .publish("all", throng_engine::DataKind::Text, b"to everyone");
        let b = next("broadcast");
        assert_eq!(b["received"].as_u64(), Some(n), "{b}");
        let published = ticket.wait(Duration::from_secs(5)).expect("publish report");
        assert_eq!(
            published.reached as u64, n,
            "every connection open on the server"
        );
        drop(stdin);
        let closed = next("closed");
        // Clean: both close frames, then the server's close_notify and FIN (a FIN
        // without close_notify is a truncation and would not count).
        assert_eq!(
            (
                closed["closed_cleanly"].as_u64(),
                closed["close_failures"].as_u64()
            ),
            (Some(n), Some(0)),
            "{closed}"
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            assert!(Instant::now() < deadline, "hold did not exit");
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(status.success());
    }
}
