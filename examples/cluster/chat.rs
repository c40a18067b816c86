//! The chat of `examples/chat.rs` on a cluster: rooms are topics, and every line goes to
//! the room's subscribers on this node (`WebSocket::publish`, which skips the sender) and
//! on every other node (`Publisher::publish_remote`, through Redis).

use std::sync::{Arc, OnceLock};

use throng_cluster::Publisher;
use throng_engine::{
    CloseCode, Decision, Handler, HttpRequest, HttpResponse, Message, UpgradeRequest, WebSocket,
};

/// The browser client (the same page as the single-node chat).
pub const PAGE: &str = include_str!("../chat/index.html");
/// Longest name or room, and longest message, accepted from a client.
const MAX_NAME: usize = 32;
const MAX_LINE: usize = 4096;

/// One per worker.
pub struct ClusterChat {
    /// This node's name, shown to users so two browsers can tell they are on different
    /// nodes.
    pub node: Arc<str>,
    /// Set once the node has joined (handlers are built before the join).
    pub cluster: Arc<OnceLock<Publisher>>,
}

/// Per-connection state.
pub struct User {
    name: String,
    room: String,
}

fn param<'a>(query: &'a str, key: &str) -> Option<&'a str> {
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
}

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

impl ClusterChat {
    /// To everyone in `room` but `ws`, on every node.
    fn say(&self, ws: &mut WebSocket<'_, User>, room: &str, line: &str) {
        let topic = room_topic(room);
        ws.publish(&topic, Message::Text(line));
        if let Some(c) = self.cluster.get() {
            c.publish_remote(&topic, Message::Text(line));
        }
    }
}

impl Handler for ClusterChat {
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
        let _ = ws.send_text(&format!("* you are {name} in {room} on {}", self.node));
        self.say(ws, &room, &format!("* {name} joined (on {})", self.node));
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
            self.say(ws, &old, &format!("* {name} left for {room}"));
            ws.subscribe(&room_topic(&room));
            self.say(ws, &room, &format!("* {name} joined (on {})", self.node));
            let _ = ws.send_text(&format!("* you are {name} in {room} on {}", self.node));
            ws.state().room = room;
            return;
        }
        let line = format!("{}: {}", ws.state().name, text);
        let _ = ws.send_text(&line);
        let room = ws.state().room.clone();
        self.say(ws, &room, &line);
    }

    fn on_close(&mut self, ws: &mut WebSocket<'_, User>, _code: CloseCode, _reason: &str) {
        let (name, room) = (ws.state().name.clone(), ws.state().room.clone());
        self.say(ws, &room, &format!("* {name} left"));
    }

    fn on_request(&mut self, req: &HttpRequest<'_>, res: &mut HttpResponse) {
        match (req.method(), req.path()) {
            ("GET", "/") | ("GET", "/index.html") => res.set(200, "text/html; charset=utf-8", PAGE),
            // The load balancer's health check: up while this node serves and is joined.
            ("GET", "/healthz") => match self.cluster.get().map(|c| c.stats().connected) {
                Some(true) => res.set(200, "text/plain", format!("ok {}\n", self.node)),
                _ => res.set(503, "text/plain", "not joined to the cluster\n"),
            },
            ("GET", _) => res.set(404, "text/plain", "not found\n"),
            _ => res.set(405, "text/plain", "method not allowed\n"),
        }
    }
}
