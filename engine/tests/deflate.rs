//! permessage-deflate (RFC 7692) in shared mode, on each backend: negotiation, compressed
//! echo both ways against a raw client and Python `websockets`, the violations that fail
//! a connection (a bomb 1009, RSV1 misplaced 1002, bad data or text 1007; each counted in
//! `protocol_errors`), and publish
//! compressing once for all deflate subscribers.

mod common;

use std::time::Duration;

use common::*;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use throng_engine::{Config, Decision, DeflateConfig, Handler, Message, UpgradeRequest, WebSocket};

const OFFER: &str = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n";
const ANSWER: &str = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";
const TAIL: [u8; 4] = [0, 0, 0xff, 0xff];
const RSV1: u8 = 4;

/// Writes a case's frames.
type Sender = dyn Fn(&mut Raw);

fn deflate_config(backend: throng_engine::BackendChoice) -> Config {
    config(backend).with_deflate(Some(DeflateConfig::default()))
}

/// A raw client that offered `offer` (a whole header line, or "").
fn open_with(addr: std::net::SocketAddr, offer: &str) -> (Raw, HttpHead) {
    let mut raw = Raw::tcp(addr);
    raw.write(upgrade_request(addr, "/", offer).as_bytes());
    let head = raw.read_head();
    assert_101(&head, KEY);
    (raw, head)
}

/// A permessage-deflate payload as a client makes it: a sync flush, the tail stripped.
fn compress(data: &[u8]) -> Vec<u8> {
    let mut c = Compress::new(Compression::new(6), false);
    let mut out = Vec::with_capacity(data.len() + 1024);
    loop {
        c.compress_vec(
            &data[c.total_in() as usize..],
            &mut out,
            FlushCompress::Sync,
        )
        .unwrap();
        if c.total_in() as usize == data.len() && out.len() < out.capacity() {
            break;
        }
        out.reserve(out.capacity());
    }
    assert!(out.ends_with(&TAIL));
    out.truncate(out.len() - 4);
    out
}

/// Inflates a server's payload with a fresh stream (the server promised no context).
fn inflate(payload: &[u8]) -> Vec<u8> {
    let mut d = Decompress::new(false);
    let input = [payload, &TAIL[..]].concat();
    let mut out = Vec::with_capacity(payload.len() * 10 + 1024);
    while (d.total_in() as usize) < input.len() {
        out.reserve(out.capacity());
        d.decompress_vec(
            &input[d.total_in() as usize..],
            &mut out,
            FlushDecompress::Sync,
        )
        .expect("the server's payload is valid deflate");
    }
    out
}

/// Writes a masked frame with `rsv` bits.
fn send_rsv(raw: &mut Raw, fin: bool, opcode: u8, rsv: u8, payload: &[u8]) {
    let mut frame = encode(fin, opcode, payload, Some(MASK));
    frame[0] |= rsv << 4;
    raw.write(&frame);
}

fn json(n: usize) -> String {
    let mut s = String::from("[");
    let mut i = 0;
    while s.len() < n {
        s.push_str(&format!(
            "{{\"id\":{i},\"name\":\"user-{:05}\",\"note\":\"caf\u{e9}\"}},",
            i * 7919 % 100000
        ));
        i += 1;
    }
    while s.len() > n {
        s.pop();
    }
    s
}

#[test]
fn negotiation_answers_shared_mode_and_declines_what_it_must() {
    for backend in backends() {
        // Off by default: the offer is declined, the connection opens plain.
        let (plain, _e) = start(config(backend));
        let (_raw, head) = open_with(plain.local_addr(), OFFER);
        assert_eq!(head.header("Sec-WebSocket-Extensions"), None);
        plain.shutdown().unwrap();

        let (server, _events) = start(deflate_config(backend));
        let addr = server.local_addr();
        let (_raw, head) = open_with(addr, OFFER);
        assert_eq!(head.header("Sec-WebSocket-Extensions"), Some(ANSWER));
        // An invalid offer is skipped for the next one, whose window is answered.
        let (_raw, head) = open_with(
            addr,
            "Sec-WebSocket-Extensions: x-foo, permessage-deflate; x_unknown, \
             permessage-deflate; server_max_window_bits=15\r\n",
        );
        let want = format!("{ANSWER}; server_max_window_bits=15");
        assert_eq!(head.header("Sec-WebSocket-Extensions"), Some(want.as_str()));
        // Only invalid offers: declined, not refused; the connection works uncompressed and
        // RSV1 is a protocol error on it.
        let (mut raw, head) = open_with(
            addr,
            "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=16\r\n",
        );
        assert_eq!(head.header("Sec-WebSocket-Extensions"), None);
        let text = json(1000);
        raw.send(true, OP_TEXT, text.as_bytes());
        assert_eq!(raw.read_frame().payload, text.as_bytes());
        send_rsv(&mut raw, true, OP_TEXT, RSV1, &compress(text.as_bytes()));
        assert_eq!(raw.read_close().map(|c| c.0), Some(1002));
        raw.expect_closed();
        server.shutdown().unwrap();
    }
}

#[test]
fn compressed_echo_against_a_raw_client() {
    for backend in backends() {
        let (server, _events) = start(deflate_config(backend));
        let (mut raw, _) = open_with(server.local_addr(), OFFER);
        let text = json(4096);
        let mut first = None;
        for _ in 0..3 {
            send_rsv(&mut raw, true, OP_TEXT, RSV1, &compress(text.as_bytes()));
            let (rsv, f) = raw.read_frame_rsv();
            assert_eq!((rsv, f.opcode, f.fin), (RSV1, OP_TEXT, true));
            assert!(
                f.payload.len() < text.len() / 2,
                "{} bytes",
                f.payload.len()
            );
            assert_eq!(inflate(&f.payload), text.as_bytes());
            // No context carried between messages: the same message, the same bytes.
            assert_eq!(first.get_or_insert_with(|| f.payload.clone()), &f.payload);
        }
        // An uncompressed message on a deflate connection is echoed compressed; one under
        // the threshold (256 bytes) goes back plain.
        raw.send(true, OP_BINARY, text.as_bytes());
        let (rsv, f) = raw.read_frame_rsv();
        assert_eq!((rsv, f.opcode), (RSV1, OP_BINARY));
        assert_eq!(inflate(&f.payload), text.as_bytes());
        send_rsv(&mut raw, true, OP_TEXT, RSV1, &compress(b"short"));
        let (rsv, f) = raw.read_frame_rsv();
        assert_eq!((rsv, f.payload.as_slice()), (0, &b"short"[..]));
        // A compressed empty message (one empty stored-block header).
        send_rsv(&mut raw, true, OP_BINARY, RSV1, b"\x00");
        let (rsv, f) = raw.read_frame_rsv();
        assert_eq!((rsv, f.opcode, f.payload.len()), (0, OP_BINARY, 0));
        // A fragmented compressed message, RSV1 on the first frame only, a ping inside.
        let big = json(50_000);
        let payload = compress(big.as_bytes());
        let third = payload.len() / 3;
        send_rsv(&mut raw, false, OP_TEXT, RSV1, &payload[..third]);
        raw.send(true, OP_PING, b"mid");
        raw.send(false, OP_CONT, &payload[third..2 * third]);
        raw.send(true, OP_CONT, &payload[2 * third..]);
        let (rsv, pong) = raw.read_frame_rsv();
        assert_eq!(
            (rsv, pong.opcode, pong.payload.as_slice()),
            (0, OP_PONG, &b"mid"[..])
        );
        let (rsv, f) = raw.read_frame_rsv();
        assert_eq!(rsv, RSV1);
        assert_eq!(inflate(&f.payload), big.as_bytes());
        raw.send_close(1000, "bye");
        assert_eq!(raw.read_close().map(|c| c.0), Some(1000));
        let s = stats(&server);
        // 3 + 1 + 1 + 1 inflated; 3 + 1 + 1 compressed (the short one is under the
        // threshold, the empty one too).
        assert_eq!(
            (s.deflate_inflations, s.deflate_compressions),
            (6, 5),
            "{s:?}"
        );
        server.shutdown().unwrap();
    }
}

#[test]
fn violations_fail_the_connection_with_the_right_code() {
    for backend in backends() {
        let max = 1 << 20;
        let (server, _events) = start(deflate_config(backend).with_max_message_size(max));
        let addr = server.local_addr();
        let zeros = vec![0u8; 4 * max + 1024];
        let bomb = compress(&zeros);
        assert!(bomb.len() < max / 100);
        let cases: [(&str, Box<Sender>, u16); 6] = [
            (
                "bomb",
                Box::new(move |r| send_rsv(r, true, OP_BINARY, RSV1, &bomb)),
                1009,
            ),
            (
                "RSV1 on a continuation",
                Box::new(|r| {
                    send_rsv(r, false, OP_TEXT, RSV1, &compress(b"abc"));
                    send_rsv(r, true, OP_CONT, RSV1, &compress(b"def"));
                }),
                1002,
            ),
            (
                "RSV1 on a ping",
                Box::new(|r| send_rsv(r, true, OP_PING, RSV1, b"x")),
                1002,
            ),
            (
                "RSV2",
                Box::new(|r| send_rsv(r, true, OP_TEXT, 2, b"x")),
                1002,
            ),
            (
                "not deflate",
                Box::new(|r| send_rsv(r, true, OP_BINARY, RSV1, &[0xff; 8])),
                1007,
            ),
            (
                "invalid UTF-8 once inflated",
                Box::new(|r| {
                    send_rsv(
                        r,
                        true,
                        OP_TEXT,
                        RSV1,
                        &compress(b"ok then \xed\xa0\x80 not"),
                    )
                }),
                1007,
            ),
        ];
        for (what, send, code) in cases {
            let (mut raw, _) = open_with(addr, OFFER);
            send(&mut raw);
            assert_eq!(
                raw.read_close().map(|c| c.0),
                Some(code),
                "{what} on {backend:?}"
            );
            raw.expect_closed();
        }
        // Each counts as a protocol violation, the inflating ones (bomb, bad data, bad
        // text) as well as those the decoder catches.
        assert_eq!(stats(&server).protocol_errors, 6, "{backend:?}");
        // The worker goes on: a fresh connection still echoes compressed.
        let (mut raw, _) = open_with(addr, OFFER);
        let text = json(2000);
        send_rsv(&mut raw, true, OP_TEXT, RSV1, &compress(text.as_bytes()));
        let (rsv, f) = raw.read_frame_rsv();
        assert_eq!((rsv, inflate(&f.payload)), (RSV1, text.into_bytes()));
        server.shutdown().unwrap();
    }
}

#[test]
fn a_client_limiting_the_server_window_gets_plain_frames() {
    for backend in backends() {
        let (server, _events) = start(deflate_config(backend));
        let (mut raw, head) = open_with(
            server.local_addr(),
            "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=10\r\n",
        );
        let want = format!("{ANSWER}; server_max_window_bits=10");
        assert_eq!(head.header("Sec-WebSocket-Extensions"), Some(want.as_str()));
        let text = json(4096);
        send_rsv(&mut raw, true, OP_TEXT, RSV1, &compress(text.as_bytes()));
        let (rsv, f) = raw.read_frame_rsv();
        assert_eq!((rsv, f.payload), (0, text.into_bytes()));
        let s = stats(&server);
        assert_eq!((s.deflate_inflations, s.deflate_compressions), (1, 0));
        server.shutdown().unwrap();
    }
}

/// `sub` subscribes to topic "t" (answered `subbed`); any other message is published to
/// "t" (to every subscriber but the sender).
struct PubSub;

impl Handler for PubSub {
    type State = ();

    fn on_upgrade<'r>(&mut self, _req: &UpgradeRequest<'r>) -> Decision<'r, ()> {
        Decision::accept(())
    }

    fn on_message(&mut self, ws: &mut WebSocket<'_, ()>, message: Message<'_>) {
        if message == Message::Text("sub") {
            ws.subscribe("t");
            let _ = ws.send_text("subbed");
        } else {
            ws.publish("t", message);
        }
    }
}

#[test]
fn publish_compresses_once_for_all_deflate_subscribers() {
    for backend in backends() {
        let server = start_with(deflate_config(backend), |_| PubSub);
        let addr = server.local_addr();
        let mut subs: Vec<(bool, Raw)> = Vec::new();
        for i in 0..9 {
            let deflate = i % 3 != 0; // 6 deflate subscribers, 3 plain ones
            let (mut raw, _) = open_with(addr, if deflate { OFFER } else { "" });
            raw.send(true, OP_TEXT, b"sub");
            assert_eq!(raw.read_frame().payload, b"subbed");
            subs.push((deflate, raw));
        }
        let (mut publisher, _) = open_with(addr, OFFER);
        let before = stats(&server).deflate_compressions;
        for round in 0..3 {
            let text = json(4096 + round);
            publisher.send(true, OP_TEXT, text.as_bytes());
            let mut compressed: Option<Vec<u8>> = None;
            for (deflate, raw) in subs.iter_mut() {
                let (rsv, f) = raw.read_frame_rsv();
                if *deflate {
                    assert_eq!(rsv, RSV1);
                    assert_eq!(inflate(&f.payload), text.as_bytes());
                    // One compressed frame shared by all of them.
                    assert_eq!(
                        compressed.get_or_insert_with(|| f.payload.clone()),
                        &f.payload
                    );
                } else {
                    assert_eq!((rsv, f.payload.as_slice()), (0, text.as_bytes()));
                }
            }
            let delta = stats(&server).deflate_compressions - before;
            assert_eq!(delta, round as u64 + 1, "one compression per publish");
        }
        // Under the threshold: nobody gets it compressed, and nothing is compressed.
        let before = stats(&server).deflate_compressions;
        publisher.send(true, OP_TEXT, b"tiny");
        for (_, raw) in subs.iter_mut() {
            let (rsv, f) = raw.read_frame_rsv();
            assert_eq!((rsv, f.payload.as_slice()), (0, &b"tiny"[..]));
        }
        assert_eq!(stats(&server).deflate_compressions, before);
        server.shutdown().unwrap();
    }
}

fn python_deflate(mode: &str, server_compresses: bool) {
    if !python_available(mode) {
        return;
    }
    for backend in backends() {
        let (server, events) = start(deflate_config(backend));
        let out = run_python_client(server.local_addr(), mode);
        assert!(out.trim().starts_with(&format!("ok {mode} ")), "{out}");
        events.opened();
        assert_eq!(events.closed().1, 1000);
        let s = stats(&server);
        // websockets compresses every message: 9 sizes, 3 times, text and binary, and a
        // fragmented one. The server compresses those of 256 bytes or more (the 255
        // characters of JSON with an "é" are more bytes): 6 sizes, 3 times, both kinds, and
        // the fragmented one.
        assert_eq!(s.deflate_inflations, 55, "{s:?}");
        if server_compresses {
            assert_eq!(s.deflate_compressions, 37, "{s:?}");
        } else {
            assert_eq!(s.deflate_compressions, 0, "{s:?}");
        }
        server.shutdown().unwrap();
    }
}

#[test]
fn python_websockets_default_compression() {
    python_deflate("deflate_default", true);
}

#[test]
fn python_websockets_without_context_takeover() {
    python_deflate("deflate_no_takeover", true);
}

#[test]
fn python_websockets_with_a_small_server_window() {
    python_deflate("deflate_small_window", false);
}

#[test]
fn idle_deflate_connections_hold_nothing() {
    for backend in backends() {
        let (server, _events) = start(deflate_config(backend));
        let mut conns = Vec::new();
        for _ in 0..20 {
            let (mut raw, _) = open_with(server.local_addr(), OFFER);
            let text = json(3000);
            send_rsv(&mut raw, true, OP_TEXT, RSV1, &compress(text.as_bytes()));
            let (rsv, _) = raw.read_frame_rsv();
            assert_eq!(rsv, RSV1);
            conns.push(raw);
        }
        // After their messages, no connection holds a spill record (input, message or
        // output): compression state is the worker's, not theirs.
        assert!(eventually(Duration::from_secs(5), || pool_in_use(&server) == 0));
        server.shutdown().unwrap();
    }
}
