//! permessage-deflate in dedicated mode (context takeover per connection), on each
//! backend: what is negotiated for each kind of offer, streams made at a connection's
//! first message each way and freed at its close, echoes that only decode with the kept
//! context (a raw client on C zlib, and Python `websockets`), and a publish that is still
//! compressed once while dedicated subscribers keep a correct context afterwards.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::*;
use throng_engine::{
    Config, Decision, DeflateConfig, DeflateWindow, Handler, Message, UpgradeRequest, WebSocket,
};
use throng_protocol::deflate::{ContextDeflater, ContextInflater, Inflater};

const RSV1: u8 = 4;

fn dedicated(backend: throng_engine::BackendChoice, window: DeflateWindow) -> Config {
    let mut d = DeflateConfig::dedicated(window);
    // Messages of ~220 bytes: within reach of the small preset's window.
    d.threshold = 64;
    config(backend).with_deflate(Some(d))
}

fn offer(params: &str) -> String {
    format!("Sec-WebSocket-Extensions: permessage-deflate{params}\r\n")
}

fn open_with(addr: std::net::SocketAddr, offer: &str) -> (Raw, HttpHead) {
    let mut raw = Raw::tcp(addr);
    raw.write(upgrade_request(addr, "/", offer).as_bytes());
    let head = raw.read_head();
    assert_101(&head, KEY);
    (raw, head)
}

/// ~220-byte messages whose words hardly repeat within one but repeat whole from one
/// to the next, so that with context a later one is a few bytes.
fn message(i: usize) -> String {
    let words: String = (0..80)
        .map(|k: usize| {
            (0..3 + k % 5)
                .map(|j| (b'a' + ((k * 7 + j * 13 + k * j) % 26) as u8) as char)
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join(" ");
    format!("{{\"seq\":{i},\"text\":\"{}\"}}", &words[..200])
}

/// Alone (with a fresh stream), does `payload` inflate to `want`?
fn inflates_alone(payload: &[u8], want: &[u8]) -> bool {
    let mut out = Vec::new();
    Inflater::new()
        .inflate(&[payload], 1 << 20, &mut out)
        .is_ok()
        && out == want
}

/// `sub` subscribes to "t"; `pub ...` publishes the message to "t"; anything else is
/// echoed.
struct EchoPub;

impl Handler for EchoPub {
    type State = ();

    fn on_upgrade<'r>(&mut self, _req: &UpgradeRequest<'r>) -> Decision<'r, ()> {
        Decision::accept(())
    }

    fn on_message(&mut self, ws: &mut WebSocket<'_, ()>, message: Message<'_>) {
        match message {
            Message::Text("sub") => {
                ws.subscribe("t");
                let _ = ws.send_text("subbed");
            }
            Message::Text(t) if t.starts_with("pub ") => {
                ws.publish("t", message);
            }
            Message::Text(t) => {
                let _ = ws.send_text(t);
            }
            Message::Binary(b) => {
                let _ = ws.send_binary(b);
            }
        }
    }
}

#[test]
fn negotiation_and_stream_lifetime() {
    for backend in backends() {
        let server = start_with(dedicated(backend, DeflateWindow::SMALL), |_| EchoPub);
        let addr = server.local_addr();
        for (params, answer) in [
            ("; client_max_window_bits", "; client_max_window_bits=9"),
            ("", "; client_no_context_takeover"),
            (
                "; server_no_context_takeover; client_no_context_takeover",
                "; server_no_context_takeover; client_no_context_takeover",
            ),
            (
                "; server_max_window_bits=12; client_max_window_bits=11",
                "; server_max_window_bits=9; client_max_window_bits=9",
            ),
        ] {
            let (_raw, head) = open_with(addr, &offer(params));
            let want = format!("permessage-deflate{answer}");
            assert_eq!(
                head.header("Sec-WebSocket-Extensions"),
                Some(want.as_str()),
                "{params} on {backend:?}"
            );
        }
        // No stream at the upgrade; one each way with the first messages; none after close.
        let (mut raw, _) = open_with(addr, &offer("; client_max_window_bits"));
        assert_eq!(stats(&server).deflate_streams, 0);
        raw.send(true, OP_TEXT, message(0).as_bytes());
        let (rsv, _) = raw.read_frame_rsv();
        assert_eq!((rsv, stats(&server).deflate_streams), (RSV1, 1));
        let mut client = ContextDeflater::new(6, 9, 8).unwrap();
        let mut payload = Vec::new();
        assert!(client.compress(message(1).as_bytes(), &mut payload));
        let mut frame = encode(true, OP_TEXT, &payload, Some(MASK));
        frame[0] |= RSV1 << 4;
        raw.write(&frame);
        let (rsv, _) = raw.read_frame_rsv();
        assert_eq!((rsv, stats(&server).deflate_streams), (RSV1, 2));
        raw.send_close(1000, "bye");
        assert_eq!(raw.read_close().map(|c| c.0), Some(1000));
        assert!(eventually(Duration::from_secs(5), || stats(&server)
            .deflate_streams
            == 0));
        server.shutdown().unwrap();
    }
}

#[test]
fn echo_keeps_context_both_ways_and_a_publish_resets_it() {
    for backend in backends() {
        for window in [
            DeflateWindow::SMALL,
            DeflateWindow::MEDIUM,
            DeflateWindow::DEFAULT,
        ] {
            let server = start_with(dedicated(backend, window), |_| EchoPub);
            let addr = server.local_addr();
            let (mut raw, _) = open_with(addr, &offer("; client_max_window_bits"));
            raw.send(true, OP_TEXT, b"sub");
            assert_eq!(raw.read_frame().payload, b"subbed");
            let (mut publisher, _) = open_with(addr, "");
            let mut client = ContextDeflater::new(6, window.bits, 8).unwrap();
            let mut inflater = ContextInflater::new(15).unwrap();
            let mut needed = (0, 0);
            for i in 0..30 {
                let text = if i % 10 == 7 {
                    // A publish: the shared frame, alone decodable, goes to this
                    // dedicated subscriber too; its own context goes on correctly after.
                    let text = format!("pub {}", message(i));
                    publisher.send(true, OP_TEXT, text.as_bytes());
                    text
                } else {
                    let text = message(i);
                    let mut payload = Vec::new();
                    assert!(client.compress(text.as_bytes(), &mut payload));
                    if i > 0 && !inflates_alone(&payload, text.as_bytes()) {
                        needed.0 += 1; // the server needed its kept window
                    }
                    let mut frame = encode(true, OP_TEXT, &payload, Some(MASK));
                    frame[0] |= RSV1 << 4;
                    raw.write(&frame);
                    text
                };
                let (rsv, f) = raw.read_frame_rsv();
                assert_eq!(rsv, RSV1, "message {i}");
                let alone = inflates_alone(&f.payload, text.as_bytes());
                if i % 10 == 7 {
                    assert!(alone, "a publish's frame stands alone");
                } else if i > 0 && !alone {
                    needed.1 += 1;
                }
                let mut out = Vec::new();
                inflater.inflate(&[&f.payload], 1 << 20, &mut out).unwrap();
                assert_eq!(out, text.as_bytes(), "message {i}, {window:?}");
            }
            // Every message but the first and those right after a publish (the
            // server's compressor starts afresh then) referred to the one before.
            assert_eq!(needed, (26, 23), "{window:?} on {backend:?}");
            // Three publishes, three compressions for them.
            let s = stats(&server);
            assert_eq!(
                (s.deflate_inflations, s.deflate_compressions),
                (27, 30),
                "{s:?}"
            );
            server.shutdown().unwrap();
        }
    }
}

fn python_context(mode: &str, window: DeflateWindow) {
    if !python_available(mode) {
        return;
    }
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/deflate_context.py");
    for backend in backends() {
        let (server, events) = start(dedicated(backend, window));
        let out = Command::new("python3")
            .arg(&script)
            .arg(format!("ws://{}/echo", server.local_addr()))
            .arg(mode)
            .arg(window.bits.to_string())
            .output()
            .expect("python3 runs");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.starts_with(&format!("ok {mode} 40")),
            "{mode} {window:?} on {backend:?}: {text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        events.opened();
        assert_eq!(events.closed().1, 1000);
        let s = stats(&server);
        assert_eq!(
            (
                s.deflate_inflations,
                s.deflate_compressions,
                s.deflate_streams
            ),
            (40, 40, 0),
            "{s:?}"
        );
        server.shutdown().unwrap();
    }
}

#[test]
fn python_websockets_with_context_takeover_small_window() {
    python_context("takeover", DeflateWindow::SMALL);
}

#[test]
fn python_websockets_with_context_takeover_full_window() {
    python_context("takeover", DeflateWindow::DEFAULT);
}

#[test]
fn python_websockets_not_accepting_a_window_limit() {
    python_context("unlimited", DeflateWindow::SMALL);
    python_context("unlimited", DeflateWindow::DEFAULT);
}

#[test]
fn python_websockets_without_context_takeover_offered() {
    python_context("no_takeover", DeflateWindow::MEDIUM);
}
