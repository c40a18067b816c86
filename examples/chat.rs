//! A chat server: rooms are topics, and the browser client is served by the same engine.
//!
//! ```text
//! cargo run --release --example chat -- [--addr 127.0.0.1:9002] [--backend auto|uring|epoll] [--threads N]
//!     [--tls-cert CERT.pem --tls-key KEY.pem] [--deflate on|off]
//! ```
//! `--help` lists every flag with its default.
//! With `--tls-cert` and `--tls-key` the page and its WebSocket are served over TLS
//! (https://, wss://). With `--deflate on` browsers get permessage-deflate (shared mode:
//! no per-connection window), which `ws.extensions` shows in the page.
//! Open http://127.0.0.1:9002/ in a browser (two tabs to see messages cross). The page
//! connects to `/ws?name=NAME&room=ROOM`; `/join ROOM` moves to another room.

use std::process::ExitCode;

use throng::engine::{
    BackendChoice, CloseCode, Config, Decision, DeflateConfig, Handler, HttpRequest, HttpResponse,
    Message, Server, ShutdownSignals, TlsConfig, UpgradeRequest, WebSocket,
};

#[path = "common/args.rs"]
mod args;
use args::{Flag, flag};

/// The command line: one line per flag (name, value, default, help).
#[rustfmt::skip]
const FLAGS: &[Flag] = &[
    flag("--addr", "HOST:PORT", "127.0.0.1:9002", "address to listen on (a host name is resolved, its first address used)"),
    flag("--backend", "auto|uring|epoll", "auto", "I/O backend (THRONG_BACKEND overrides it)"),
    flag("--tls-cert", "PEM", "", "certificate chain: serve https:// and wss:// (with --tls-key)"),
    flag("--tls-key", "PEM", "", "private key of --tls-cert"),
    flag("--deflate", "on|off", "off", "permessage-deflate (RFC 7692) in shared mode, the default threshold and level"),
    flag("--threads", "N", "", "worker threads, at least 1 (default: one per CPU this process may use)"),
];

const PAGE: &str = include_str!("chat/index.html");
/// Longest name or room, and longest message, accepted from a client.
const MAX_NAME: usize = 32;
const MAX_LINE: usize = 4096;

struct Chat;

/// Per-connection state, stored inline in the worker's slab.
struct User {
    name: String,
    room: String,
}

/// Reads `key` from a query string (no percent-decoding beyond `+`; names are plain).
fn param<'a>(query: &'a str, key: &str) -> Option<&'a str> {
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
}

/// Keeps names and rooms short and printable.
fn clean(raw: Option<&str>, default: &str) -> String {
    let s: String = raw
        .unwrap_or(default)
        .chars()
        .map(|c| if c == '+' { ' ' } else { c })
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_' | '.'))
        .take(MAX_NAME)
        .collect();
    if s.trim().is_empty() {
        default.to_owned()
    } else {
        s.trim().to_owned()
    }
}

fn room_topic(room: &str) -> String {
    format!("room/{room}")
}

impl Handler for Chat {
    type State = User;

    fn on_upgrade<'r>(&mut self, req: &UpgradeRequest<'r>) -> Decision<'r, User> {
        if req.path() != "/ws" {
            return Decision::reject(404);
        }
        let query = req.query().unwrap_or("");
        let name = clean(param(query, "name"), "guest");
        let room = clean(param(query, "room"), "lobby");
        Decision::accept(User { name, room })
    }

    fn on_open(&mut self, ws: &mut WebSocket<'_, User>) {
        let (name, room) = (ws.state().name.clone(), ws.state().room.clone());
        ws.subscribe(&room_topic(&room));
        let _ = ws.send_text(&format!("* you are {name} in {room}"));
        ws.publish(
            &room_topic(&room),
            Message::Text(&format!("* {name} joined")),
        );
    }

    fn on_message(&mut self, ws: &mut WebSocket<'_, User>, message: Message<'_>) {
        let Message::Text(text) = message else {
            return ws.close(CloseCode::UNSUPPORTED, "text only");
        };
        let text: String = text.chars().take(MAX_LINE).collect();
        if let Some(room) = text.strip_prefix("/join ") {
            let room = clean(Some(room), "lobby");
            let (name, old) = (ws.state().name.clone(), ws.state().room.clone());
            ws.unsubscribe(&room_topic(&old));
            ws.publish(
                &room_topic(&old),
                Message::Text(&format!("* {name} left for {room}")),
            );
            ws.subscribe(&room_topic(&room));
            ws.publish(
                &room_topic(&room),
                Message::Text(&format!("* {name} joined")),
            );
            let _ = ws.send_text(&format!("* you are {name} in {room}"));
            ws.state().room = room;
            return;
        }
        let line = format!("{}: {}", ws.state().name, text);
        let _ = ws.send_text(&line); // publish skips the sender
        let room = ws.state().room.clone();
        ws.publish(&room_topic(&room), Message::Text(&line));
    }

    fn on_close(&mut self, ws: &mut WebSocket<'_, User>, _code: CloseCode, _reason: &str) {
        let (name, room) = (ws.state().name.clone(), ws.state().room.clone());
        ws.publish(&room_topic(&room), Message::Text(&format!("* {name} left")));
    }

    fn on_request(&mut self, req: &HttpRequest<'_>, res: &mut HttpResponse) {
        match (req.method(), req.path()) {
            ("GET", "/") | ("GET", "/index.html") => res.set(200, "text/html; charset=utf-8", PAGE),
            ("GET", _) => res.set(404, "text/plain", "not found\n"),
            _ => res.set(405, "text/plain", "method not allowed\n"),
        }
    }
}

fn main() -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let a = args::parse(
        "chat",
        "A chat server: rooms are topics; the browser page is served at /.",
        FLAGS,
    );
    let mut config = Config::default();
    // The engine answers GET /metrics and /healthz before on_request sees them.
    config.metrics = throng::engine::MetricsEndpoint::Listener;
    config.addr = a.addr("--addr").expect("defaulted");
    config.backend = a.get::<BackendChoice>("--backend");
    if let Some(n) = a.positive("--threads") {
        config.workers = n;
    }
    config.deflate = match a.raw("--deflate").expect("defaulted") {
        "on" => Some(DeflateConfig::default()),
        "off" => None,
        _ => a.bad("--deflate", "expected on or off"),
    };
    if let Some((cert, key)) = a.pair("--tls-cert", "--tls-key") {
        match TlsConfig::from_pem_files(cert, key) {
            Ok(tls) => config.tls = Some(tls),
            Err(e) => {
                eprintln!("chat: TLS: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let scheme = if config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let signals = match ShutdownSignals::block() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("chat: cannot block signals: {e}");
            return ExitCode::FAILURE;
        }
    };
    let server = match Server::start(config, |_| Chat) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("chat: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "chat on {scheme}://{}/ backend={} workers={}",
        server.local_addr(),
        server.backend().name(),
        server.workers()
    );
    let _ = signals.wait();
    let _ = server.shutdown();
    ExitCode::SUCCESS
}
