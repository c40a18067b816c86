//! Every way a connection ends: the close handshake from either side (from a callback and
//! from another thread), protocol violations (1002, 1007, 1009), a peer that vanishes
//! (1006) and one that never answers our close, on each backend.

mod common;

use std::time::{Duration, Instant};

use common::*;
use throng_engine::CloseCode;
use throng_engine::DataKind;
use tungstenite::Message as TMessage;

#[test]
fn a_client_close_is_echoed_with_its_code_then_the_server_closes_tcp() {
    for backend in backends() {
        let (server, events) = start(config(backend));
        let addr = server.local_addr();
        for (code, reason) in [(4000, "bye"), (1000, ""), (1001, "going"), (3000, "é")] {
            let mut raw = Raw::open(addr);
            let id = events.opened();
            raw.send_close(code, reason);
            // The echo carries the code (RFC 6455 5.5.1); the reason is not repeated.
            assert_eq!(raw.read_close(), Some((code, String::new())));
            raw.expect_eof();
            assert_eq!(events.closed_id(id), (code, reason.to_owned()));
        }
        // tungstenite closing normally.
        let mut ws = connect(addr, "/");
        let id = events.opened();
        ws.close(None).unwrap();
        match read_data(&mut ws) {
            TMessage::Close(None) => {}
            other => panic!("expected an empty close back, got {other:?}"),
        }
        finish_close(&mut ws);
        drop(ws);
        assert_eq!(events.closed_id(id), (1005, String::new()));
        // Each completed close handshake counts as clean once the peer's FIN is in.
        assert!(
            eventually(Duration::from_secs(5), || conn_count(&server) == 0),
            "connections left after the close handshakes"
        );
        let s = stats(&server);
        assert_eq!((s.closed_cleanly, s.closed_abnormally), (5, 0), "{s:?}");
        server.shutdown().unwrap();
    }
}

#[test]
fn a_close_without_code_is_answered_without_code() {
    for backend in backends() {
        let (server, events) = start(config(backend));
        let mut raw = Raw::open(server.local_addr());
        raw.send(true, OP_CLOSE, b"");
        assert_eq!(raw.read_close(), None, "an empty close is answered empty");
        raw.expect_eof();
        assert_eq!(events.closed().1, 1005);
        server.shutdown().unwrap();
    }
}

#[test]
fn the_server_closes_from_a_callback_and_reports_the_peer_code() {
    for backend in backends() {
        let (server, events) = start(config(backend));
        let addr = server.local_addr();
        let mut raw = Raw::open(addr);
        let id = events.opened();
        raw.send(true, OP_TEXT, b"!close 4001 done");
        assert_eq!(raw.read_close(), Some((4001, "done".to_owned())));
        // Data sent before our answering close is not handled any more: no echo.
        raw.send(true, OP_TEXT, b"late");
        raw.send(true, OP_PING, b"late");
        raw.send_close(4002, "ack");
        raw.expect_eof();
        assert_eq!(events.closed_id(id), (4002, "ack".to_owned()));

        // tungstenite answers with the same code.
        let mut ws = connect(addr, "/");
        let id = events.opened();
        ws.send(TMessage::text("!close 4005 tung")).unwrap();
        assert_eq!(read_close(&mut ws), (4005, "tung".to_owned()));
        finish_close(&mut ws);
        assert_eq!(events.closed_id(id).0, 4005);
        server.shutdown().unwrap();
    }
}

#[test]
fn the_server_closes_from_another_thread_through_the_handle() {
    for backend in backends() {
        let (server, events) = start(config(backend));
        let addr = server.local_addr();
        let mut ws = connect(addr, "/");
        let id = events.opened();
        let handle = server.handle();
        std::thread::spawn(move || {
            assert!(handle.send(id, DataKind::Text, "message from afar".into()));
            assert!(handle.send(id, DataKind::Binary, vec![1u8, 2, 3].into()));
            assert!(handle.close(id, CloseCode(4003), "from afar"));
        })
        .join()
        .unwrap();
        // In order: the messages, then the close.
        assert_eq!(read_data(&mut ws), TMessage::text("message from afar"));
        assert_eq!(read_data(&mut ws), TMessage::binary(vec![1u8, 2, 3]));
        assert_eq!(read_close(&mut ws), (4003, "from afar".to_owned()));
        finish_close(&mut ws);
        drop(ws);
        assert_eq!(events.closed_id(id).0, 4003);

        // The id is stale now: sends and closes through it reach nothing.
        let handle = server.handle();
        assert!(handle.send(id, DataKind::Text, "nobody".into()));
        assert!(handle.close(id, CloseCode::NORMAL, ""));
        let mut raw = Raw::open(addr);
        let other = events.opened();
        assert_ne!(other, id, "a new connection gets a new id");
        raw.send(true, OP_TEXT, b"fresh");
        assert_eq!(raw.read_frame().payload, b"fresh");
        server.shutdown().unwrap();
    }
}

/// Opens a raw connection, writes `bytes`, and expects the server to fail it with `code`
/// (a close frame, then TCP closed) and report `code` to `on_close`.
fn expect_failure(
    addr: std::net::SocketAddr,
    events: &Events,
    what: &str,
    bytes: &[u8],
    code: u16,
) {
    let mut raw = Raw::open(addr);
    let id = events.opened();
    raw.write(bytes);
    let f = raw.read_frame();
    assert_eq!(
        f.opcode, OP_CLOSE,
        "{what}: expected a close frame, got {f:?}"
    );
    let (got, reason) = f.close().expect("a close code");
    assert_eq!(got, code, "{what}: close code (reason {reason:?})");
    raw.expect_closed();
    assert_eq!(events.closed_id(id).0, code, "{what}: on_close code");
}

/// `on_close` is called once per connection: nothing more after the ones awaited.
fn no_second_close(events: &Events) {
    std::thread::sleep(Duration::from_millis(50));
    let extra: Vec<_> = events
        .drain_now()
        .into_iter()
        .filter(|e| matches!(e, Ev::Close { .. }))
        .collect();
    assert!(extra.is_empty(), "on_close called again: {extra:?}");
}

#[test]
fn protocol_violations_fail_with_1002_then_tcp_close() {
    for backend in backends() {
        let (server, events) = start(config(backend));
        let addr = server.local_addr();
        let m = Some(MASK);
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("unmasked frame", encode(true, OP_TEXT, b"hi", None)),
            ("reserved opcode 3", encode(true, 0x3, b"", m)),
            ("reserved control opcode 0xB", encode(true, 0xB, b"", m)),
            ("RSV1 without an extension", {
                let mut f = encode(true, OP_TEXT, b"hi", m);
                f[0] |= 0x40;
                f
            }),
            (
                "continuation with nothing to continue",
                encode(true, OP_CONT, b"x", m),
            ),
            ("new message inside a fragmented one", {
                let mut f = encode(false, OP_TEXT, b"a", m);
                f.extend(encode(true, OP_TEXT, b"b", m));
                f
            }),
            ("fragmented ping", encode(false, OP_PING, b"x", m)),
            ("ping over 125 bytes", encode(true, OP_PING, &[0; 126], m)),
            (
                "close with a one-byte payload",
                encode(true, OP_CLOSE, &[3], m),
            ),
            (
                "close code 1005 on the wire",
                encode(true, OP_CLOSE, &close_payload(1005, b""), m),
            ),
            (
                "close code 999",
                encode(true, OP_CLOSE, &close_payload(999, b""), m),
            ),
        ];
        for (what, bytes) in &cases {
            expect_failure(addr, &events, what, bytes, 1002);
        }
        no_second_close(&events);
        server.shutdown().unwrap();
    }
}

#[test]
fn an_oversize_message_fails_with_1009() {
    for backend in backends() {
        let (server, events) = start(config(backend).with_max_message_size(1000));
        let addr = server.local_addr();
        let m = Some(MASK);
        expect_failure(
            addr,
            &events,
            "one frame",
            &encode(true, OP_BINARY, &[1; 1001], m),
            1009,
        );
        let mut fragments = encode(false, OP_TEXT, &[b'a'; 600], m);
        fragments.extend(encode(true, OP_CONT, &[b'a'; 600], m));
        expect_failure(addr, &events, "fragments", &fragments, 1009);
        // A header announcing a huge frame is refused before any payload arrives.
        let mut huge = vec![0x82, 0x80 | 127];
        huge.extend_from_slice(&(1u64 << 40).to_be_bytes());
        huge.extend_from_slice(&MASK);
        expect_failure(addr, &events, "huge header", &huge, 1009);
        server.shutdown().unwrap();
    }
}

#[test]
fn invalid_utf8_fails_with_1007_in_text_and_in_a_close_reason() {
    for backend in backends() {
        let (server, events) = start(config(backend));
        let addr = server.local_addr();
        let m = Some(MASK);
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("0xff", encode(true, OP_TEXT, b"ok \xff", m)),
            ("overlong", encode(true, OP_TEXT, b"\xc0\x80", m)),
            ("surrogate", encode(true, OP_TEXT, b"\xed\xa0\x80", m)),
            (
                "truncated at the end",
                encode(true, OP_TEXT, b"abc\xe2\x82", m),
            ),
            ("in a later fragment", {
                let mut f = encode(false, OP_TEXT, "héllo".as_bytes(), m);
                f.extend(encode(true, OP_CONT, b" \xfe", m));
                f
            }),
            ("truncated across the final fragment", {
                let mut f = encode(false, OP_TEXT, b"a\xf0\x9f", m);
                f.extend(encode(true, OP_CONT, b"\x98", m));
                f
            }),
            (
                "close reason",
                encode(true, OP_CLOSE, &close_payload(1000, b"bad \xff"), m),
            ),
        ];
        for (what, bytes) in &cases {
            expect_failure(addr, &events, what, bytes, 1007);
        }
        no_second_close(&events);
        server.shutdown().unwrap();
    }
}

#[test]
fn a_peer_that_vanishes_without_a_close_reports_1006() {
    for backend in backends() {
        let (server, events) = start(config(backend));
        let addr = server.local_addr();

        // EOF.
        let raw = Raw::open(addr);
        let id = events.opened();
        raw.stream.shutdown(std::net::Shutdown::Write).unwrap();
        assert_eq!(events.closed_id(id).0, 1006);
        drop(raw);

        // EOF in the middle of a frame (arriving after the bytes were read).
        let mut raw = Raw::open(addr);
        let id = events.opened();
        raw.write(&encode(true, OP_BINARY, &[7; 1000], Some(MASK))[..500]);
        assert!(eventually(Duration::from_secs(5), || pool_in_use(&server) == 1));
        raw.stream.shutdown(std::net::Shutdown::Write).unwrap();
        assert_eq!(events.closed_id(id).0, 1006);
        drop(raw);

        // Reset (SO_LINGER 0).
        let raw = Raw::open(addr);
        let id = events.opened();
        socket2::SockRef::from(&raw.stream.0)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(raw);
        assert_eq!(events.closed_id(id).0, 1006);

        assert!(eventually(Duration::from_secs(5), || conn_count(&server) == 0));
        let s = stats(&server);
        assert_eq!((s.closed_cleanly, s.closed_abnormally), (0, 3), "{s:?}");
        server.shutdown().unwrap();
    }
}

#[test]
fn the_close_times_out_when_the_peer_never_answers() {
    for backend in backends() {
        let mut cfg = config(backend);
        cfg.timer_tick = Duration::from_millis(50);
        cfg.close_timeout = Duration::from_millis(500);
        let (server, events) = start(cfg);
        let mut raw = Raw::open(server.local_addr());
        let id = events.opened();
        raw.send(true, OP_TEXT, b"!close 4004 answer me");
        assert_eq!(raw.read_close(), Some((4004, "answer me".to_owned())));
        let asked = Instant::now();
        // No answer: the server gives up after close_timeout.
        raw.expect_closed();
        let waited = asked.elapsed();
        assert!(
            waited >= Duration::from_millis(400) && waited < Duration::from_secs(5),
            "closed {waited:?} after the close frame"
        );
        assert_eq!(events.closed_id(id).0, 1006);
        let s = stats(&server);
        assert_eq!(
            (s.timed_out, s.closed_cleanly, s.closed_abnormally),
            (1, 0, 1),
            "{s:?}"
        );
        server.shutdown().unwrap();
    }
}

/// Bytes and the peer's FIN that arrive before the worker polls are reported by one
/// readiness event; the FIN must still be seen (not only when a later edge comes).
#[test]
fn data_and_eof_arriving_together_still_end_the_connection() {
    for backend in backends() {
        let mut cfg = config(backend);
        cfg.close_timeout = Duration::from_secs(5);
        let (server, events) = start(cfg);
        let addr = server.local_addr();

        // Half a frame, then EOF: on_close 1006.
        let mut raw = Raw::open(addr);
        let id = events.opened();
        let held = hold_worker(&server, id.worker as usize);
        raw.write(&encode(true, OP_BINARY, &[7; 1000], Some(MASK))[..500]);
        raw.stream.shutdown(std::net::Shutdown::Write).unwrap();
        held.release();
        match events.try_next(Duration::from_secs(3)) {
            Some(Ev::Close { id: got, code, .. }) => assert_eq!((got, code), (id, 1006)),
            Some(other) => panic!("expected on_close 1006, got {other:?}"),
            None => panic!(
                "a peer that sent half a frame and then EOF in one go is never noticed \
                 (no on_close within 3 s; {} connection(s) still held)",
                conn_count(&server)
            ),
        }
        drop(raw);

        // A whole message, then EOF: echoed, then on_close 1006.
        let mut raw = Raw::open(addr);
        let id = events.opened();
        let held = hold_worker(&server, id.worker as usize);
        raw.send(true, OP_TEXT, b"last words");
        raw.stream.shutdown(std::net::Shutdown::Write).unwrap();
        held.release();
        assert_eq!(raw.read_frame().payload, b"last words");
        match events.try_next(Duration::from_secs(3)) {
            Some(Ev::Close { id: got, code, .. }) => assert_eq!((got, code), (id, 1006)),
            Some(other) => panic!("expected on_close 1006, got {other:?}"),
            None => panic!("a message followed at once by EOF: no on_close within 3 s"),
        }
        drop(raw);

        // Our close frame, then EOF: the handshake completes and the connection is gone
        // at once, not after close_timeout (5 s here).
        let mut raw = Raw::open(addr);
        let id = events.opened();
        let held = hold_worker(&server, id.worker as usize);
        raw.send_close(1000, "");
        raw.stream.shutdown(std::net::Shutdown::Write).unwrap();
        held.release();
        assert_eq!(raw.read_close(), Some((1000, String::new())));
        raw.expect_eof();
        assert_eq!(events.closed_id(id).0, 1000);
        assert!(
            eventually(Duration::from_secs(2), || conn_count(&server) == 0),
            "the connection lingers after a close handshake whose FIN came with the close \
             frame"
        );
        server.shutdown().unwrap();
    }
}
