//! Shared pieces of the cluster tests: a real `redis-server` started on a free port (and
//! killed and restarted on it), throng nodes joined to it, tungstenite clients.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use throng_cluster::{Cluster, Options, Publisher, Stats};
use throng_engine::{
    BackendChoice, Config, Decision, Handler, HttpRequest, HttpResponse, Message, Server,
    UpgradeRequest, WebSocket,
};
use tungstenite::Message as TMessage;

#[path = "../../../engine/tests/common/mod.rs"]
mod engine_common;

pub use engine_common::{backends, kind_of};

/// How long a client read may block before the test fails.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// A port nobody listens on (bound and released; the tests use it at once).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Waits until `cond` holds or `timeout` passes; whether it held.
pub fn eventually(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

// ---- redis-server ------------------------------------------------------------------

/// A `redis-server` child on a port of its own; killed when dropped.
pub struct Redis {
    pub port: u16,
    child: Option<Child>,
}

impl Redis {
    /// Starts one on a free port.
    pub fn start() -> Redis {
        Redis::start_on(free_port())
    }

    /// Starts one on `port`.
    pub fn start_on(port: u16) -> Redis {
        let mut r = Redis { port, child: None };
        r.restart();
        r
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts it (again) on its port and waits until it answers PING.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--protected-mode", "no", "--loglevel", "warning"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server runs (apt-get install -y redis-server)");
        self.child = Some(child);
        assert!(
            eventually(Duration::from_secs(10), || self.ping()),
            "redis-server answers PING on port {}",
            self.port
        );
    }

    /// Kills it (SIGKILL, as a crash would) and waits for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn ping(&self) -> bool {
        self.command(&[b"PING"])
            .is_some_and(|r| r.starts_with(b"+PONG"))
    }

    /// Sends one command on a fresh connection and returns the raw reply.
    pub fn command(&self, args: &[&[u8]]) -> Option<Vec<u8>> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            out.extend_from_slice(a);
            out.extend_from_slice(b"\r\n");
        }
        s.write_all(&out).ok()?;
        let mut buf = vec![0; 4096];
        let n = s.read(&mut buf).ok()?;
        buf.truncate(n);
        Some(buf)
    }

    /// PUBLISH with a raw payload, as any Redis client could; the receiver count.
    pub fn publish_raw(&self, channel: &str, payload: &[u8]) -> i64 {
        let reply = self
            .command(&[b"PUBLISH", channel.as_bytes(), payload])
            .expect("PUBLISH answered");
        let text = String::from_utf8_lossy(&reply);
        text.trim()
            .strip_prefix(':')
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("PUBLISH reply {text:?}"))
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

// ---- nodes ---------------------------------------------------------------------------

/// The test application: `/sub/TOPIC` subscribes on open; every connection is greeted
/// with `hello NODE`; text commands `pub TOPIC BODY` (publish across the cluster from the
/// callback), `sub TOPIC`, `unsub TOPIC`, `subn N PREFIX` (N topics at once) answer `ok`.
/// `GET /healthz` answers 200 (the load balancer's check).
pub struct App {
    pub node: usize,
    pub cluster: Arc<OnceLock<Publisher>>,
}

impl Handler for App {
    type State = Option<String>;

    fn on_upgrade<'r>(&mut self, req: &UpgradeRequest<'r>) -> Decision<'r, Option<String>> {
        Decision::accept(req.path().strip_prefix("/sub/").map(str::to_owned))
    }

    fn on_open(&mut self, ws: &mut WebSocket<'_, Option<String>>) {
        if let Some(t) = ws.state().clone() {
            ws.subscribe(&t);
        }
        let _ = ws.send_text(&format!("hello {}", self.node));
    }

    fn on_message(&mut self, ws: &mut WebSocket<'_, Option<String>>, message: Message<'_>) {
        let Message::Text(text) = message else { return };
        let mut parts = text.splitn(3, ' ');
        match (parts.next(), parts.next(), parts.next()) {
            (Some("pub"), Some(topic), Some(body)) => {
                if let Some(c) = self.cluster.get() {
                    c.publish(topic, Message::Text(body));
                }
            }
            (Some("sub"), Some(topic), None) => {
                ws.subscribe(topic);
                let _ = ws.send_text("ok");
            }
            (Some("unsub"), Some(topic), None) => {
                ws.unsubscribe(topic);
                let _ = ws.send_text("ok");
            }
            (Some("subn"), Some(n), Some(prefix)) => {
                for i in 0..n.parse::<usize>().unwrap_or(0) {
                    ws.subscribe(&format!("{prefix}{i}"));
                }
                let _ = ws.send_text("ok");
            }
            _ => {}
        }
    }

    fn on_request(&mut self, req: &HttpRequest<'_>, res: &mut HttpResponse) {
        match req.path() {
            "/healthz" => res.set(200, "text/plain", "ok\n"),
            _ => res.set(404, "text/plain", "not found\n"),
        }
    }
}

/// A throng server joined to the cluster.
pub struct Node {
    pub index: usize,
    pub cluster: Cluster,
    pub server: Server<App>,
}

impl Node {
    /// Starts a 2-worker server on `backend` (port 0 unless given) and joins it.
    pub fn start(index: usize, backend: BackendChoice, redis: &str, options: Options) -> Node {
        Node::start_on(index, backend, redis, options, 0)
    }

    pub fn start_on(
        index: usize,
        backend: BackendChoice,
        redis: &str,
        options: Options,
        port: u16,
    ) -> Node {
        let slot: Arc<OnceLock<Publisher>> = Arc::default();
        let mut config = Config::new(SocketAddr::from(([127, 0, 0, 1], port)))
            .with_workers(2)
            .with_pinning(false)
            .with_backend(backend);
        config.shutdown_timeout = Duration::from_secs(1);
        let handlers = slot.clone();
        let server = Server::start(config, move |_| App {
            node: index,
            cluster: handlers.clone(),
        })
        .expect("server starts");
        assert_eq!(server.backend(), kind_of(backend), "backend asked for");
        let cluster = Cluster::join(redis, &server.handle(), options).expect("joins the cluster");
        let _ = slot.set(cluster.publisher());
        Node {
            index,
            cluster,
            server,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    pub fn stats(&self) -> Stats {
        self.cluster.stats()
    }
}

/// Three nodes on one Redis.
pub fn nodes(backend: BackendChoice, redis: &str, options: &Options) -> Vec<Node> {
    (0..3)
        .map(|i| Node::start(i, backend, redis, options.clone()))
        .collect()
}

/// Waits until every node's Redis subscriptions number `channels`.
pub fn await_channels(nodes: &[Node], channels: u64) {
    for n in nodes {
        assert!(
            eventually(Duration::from_secs(10), || n.stats().channels == channels),
            "node {} has {channels} channels subscribed: {:?}",
            n.index,
            n.stats()
        );
    }
}

// ---- clients -------------------------------------------------------------------------

pub type Client = tungstenite::WebSocket<TcpStream>;

/// A tungstenite client on `path`; returns it with the node index its greeting names.
pub fn connect(addr: SocketAddr, path: &str) -> (Client, usize) {
    let stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    let url = format!("ws://{addr}{path}");
    let (mut ws, _) = tungstenite::client(url.as_str(), stream).expect("upgrade");
    let hello = read_text(&mut ws).expect("greeting");
    let node = hello
        .strip_prefix("hello ")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("greeting {hello:?}"));
    (ws, node)
}

/// The next text message, or `None` on timeout (the client's read timeout).
pub fn read_text(ws: &mut Client) -> Option<String> {
    loop {
        match ws.read() {
            Ok(TMessage::Text(t)) => return Some(t.to_string()),
            Ok(TMessage::Ping(_) | TMessage::Pong(_)) => continue,
            Ok(other) => panic!("unexpected {other:?}"),
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return None;
            }
            Err(e) => panic!("client read: {e}"),
        }
    }
}

/// Reads with a shorter timeout (for "nothing more arrives").
pub fn read_within(ws: &mut Client, timeout: Duration) -> Option<String> {
    ws.get_ref().set_read_timeout(Some(timeout)).unwrap();
    let m = read_text(ws);
    ws.get_ref().set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    m
}

pub fn send(ws: &mut Client, text: &str) {
    ws.send(TMessage::text(text)).expect("send");
}

/// Sends a command and waits for its `ok`.
pub fn command(ws: &mut Client, text: &str) {
    send(ws, text);
    assert_eq!(read_text(ws).as_deref(), Some("ok"), "answer to {text:?}");
}
