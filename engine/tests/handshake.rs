//! The opening handshake and its rejection paths, and plain HTTP requests, against raw
//! sockets and tungstenite on loopback, on each backend.

mod common;

use std::time::Duration;

use common::*;

#[test]
fn upgrade_answers_101_with_the_accept_value() {
    // RFC 6455 1.3's example key and accept value, independently of any implementation.
    assert_eq!(
        tungstenite::handshake::derive_accept_key(KEY.as_bytes()),
        "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    );
    for backend in backends() {
        let (server, events) = start(config(backend));
        let addr = server.local_addr();
        for key in [
            KEY.to_owned(),
            tungstenite::handshake::client::generate_key(),
        ] {
            let mut raw = Raw::tcp(addr);
            raw.write(
                format!(
                    "GET /echo?x=1 HTTP/1.1\r\nHost: {addr}\r\nUpgrade: WebSocket\r\n\
                     Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: {key}\r\n\
                     Sec-WebSocket-Version: 13\r\nOrigin: http://good.example\r\n\r\n"
                )
                .as_bytes(),
            );
            let head = raw.read_head();
            assert_101(&head, &key);
            assert_eq!(head.header("Sec-WebSocket-Protocol"), None, "none offered");
            assert_eq!(
                head.header("Sec-WebSocket-Extensions"),
                None,
                "none offered"
            );
            let id = events.opened();
            raw.send(true, OP_TEXT, b"hello");
            assert_eq!(
                raw.read_frame(),
                Frame {
                    fin: true,
                    opcode: OP_TEXT,
                    payload: b"hello".to_vec()
                }
            );
            raw.send_close(1000, "");
            assert_eq!(raw.read_close(), Some((1000, String::new())));
            raw.expect_eof();
            assert_eq!(events.closed_id(id), (1000, String::new()));
        }
        server.shutdown().unwrap();
    }
}

/// Sends `request` on a fresh connection and returns the response, after checking the
/// server then closes the connection and never opened a WebSocket.
fn refused(addr: std::net::SocketAddr, request: &str) -> HttpHead {
    let mut raw = Raw::tcp(addr);
    raw.write(request.as_bytes());
    let head = raw.read_head();
    raw.expect_closed();
    head
}

#[test]
fn a_bad_origin_is_refused_with_403_and_an_unknown_path_with_404() {
    for backend in backends() {
        let (server, events) = start(config(backend));
        let addr = server.local_addr();

        let head = refused(
            addr,
            &upgrade_request(addr, "/", &format!("Origin: {EVIL_ORIGIN}\r\n")),
        );
        assert_eq!(head.status, 403, "{head:?}");
        assert_eq!(head.header("Sec-WebSocket-Accept"), None);
        assert_eq!(
            head.header("Content-Length"),
            Some(head.body.len().to_string().as_str())
        );

        let head = refused(addr, &upgrade_request(addr, "/nowhere", ""));
        assert_eq!(head.status, 404, "{head:?}");
        assert_eq!(head.header("Sec-WebSocket-Accept"), None);

        // The same refusals as a real client sees them.
        let mut request =
            tungstenite::client::IntoClientRequest::into_client_request(format!("ws://{addr}/"))
                .unwrap();
        request
            .headers_mut()
            .insert("Origin", EVIL_ORIGIN.parse().unwrap());
        match tungstenite::client(request, tcp(addr)) {
            Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(res))) => {
                assert_eq!(res.status(), 403)
            }
            Ok(_) => panic!("a bad origin was accepted"),
            Err(e) => panic!("expected an HTTP 403, got {e}"),
        }
        match tungstenite::client(format!("ws://{addr}/nowhere"), tcp(addr)) {
            Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(res))) => {
                assert_eq!(res.status(), 404)
            }
            Ok(_) => panic!("an unknown path was accepted"),
            Err(e) => panic!("expected an HTTP 404, got {e}"),
        }

        // No WebSocket was opened for any of them.
        let stray: Vec<_> = events
            .drain_now()
            .into_iter()
            .filter(|e| matches!(e, Ev::Open { .. } | Ev::Close { .. }))
            .collect();
        assert!(
            stray.is_empty(),
            "callbacks ran for refused upgrades: {stray:?}"
        );
        assert_eq!(stats(&server).opened, 0);
        server.shutdown().unwrap();
    }
}

#[test]
fn the_handler_selects_a_subprotocol_among_those_offered() {
    for backend in backends() {
        let (server, _events) = start(config(backend));
        let addr = server.local_addr();
        for (offered, expected) in [
            // The server's preference wins over the client's order.
            ("chat.v1, chat.v2", Some("chat.v2")),
            ("chat.v1", Some("chat.v1")),
            ("other, chat.v1", Some("chat.v1")),
        ] {
            let (mut ws, chosen) = connect_with_protocols(addr, offered);
            assert_eq!(chosen.as_deref(), expected, "offered {offered:?}");
            ws.send(tungstenite::Message::text("still works")).unwrap();
            assert_eq!(
                read_data(&mut ws),
                tungstenite::Message::text("still works")
            );
            ws.close(None).unwrap();
            assert!(matches!(read_data(&mut ws), tungstenite::Message::Close(_)));
            finish_close(&mut ws);
        }
        // Nothing supported offered: accepted without the header (tungstenite would fail
        // such a connection itself, so a raw client checks it).
        let mut raw = Raw::tcp(addr);
        raw.write(upgrade_request(addr, "/", "Sec-WebSocket-Protocol: other, x.y\r\n").as_bytes());
        let head = raw.read_head();
        assert_101(&head, KEY);
        assert_eq!(head.header("Sec-WebSocket-Protocol"), None, "{head:?}");

        // Raw: the header appears once, exactly as chosen.
        let mut raw = Raw::tcp(addr);
        raw.write(
            upgrade_request(
                addr,
                "/",
                "Sec-WebSocket-Protocol: chat.v1\r\nSec-WebSocket-Protocol: chat.v2\r\n",
            )
            .as_bytes(),
        );
        let head = raw.read_head();
        assert_101(&head, KEY);
        let protocols: Vec<_> = head
            .headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("Sec-WebSocket-Protocol"))
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(protocols, ["chat.v2"]);
        server.shutdown().unwrap();
    }
}

#[test]
fn a_bad_key_or_version_is_refused_with_400_or_426() {
    for backend in backends() {
        let (server, _events) = start(config(backend));
        let addr = server.local_addr();
        let request = |key: Option<&str>, version: Option<&str>| {
            let mut r = format!(
                "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            );
            if let Some(k) = key {
                r += &format!("Sec-WebSocket-Key: {k}\r\n");
            }
            if let Some(v) = version {
                r += &format!("Sec-WebSocket-Version: {v}\r\n");
            }
            r + "\r\n"
        };

        // Not base64 of 16 bytes.
        for key in [
            "c2hvcnQ=",
            "not base64 at all!!",
            "AAAAAAAAAAAAAAAAAAAAAAAA",
        ] {
            let head = refused(addr, &request(Some(key), Some("13")));
            assert_eq!(head.status, 400, "key {key:?}: {head:?}");
        }
        // No key.
        let head = refused(addr, &request(None, Some("13")));
        assert_eq!(head.status, 400, "{head:?}");

        // An unsupported version: 426 naming the one we speak.
        for version in ["8", "14", "abc"] {
            let head = refused(addr, &request(Some(KEY), Some(version)));
            assert_eq!(head.status, 426, "version {version:?}: {head:?}");
            assert_eq!(head.header("Sec-WebSocket-Version"), Some("13"), "{head:?}");
        }
        // A missing version: 400, still naming 13.
        let head = refused(addr, &request(Some(KEY), None));
        assert_eq!(head.status, 400, "{head:?}");
        assert_eq!(head.header("Sec-WebSocket-Version"), Some("13"), "{head:?}");

        // An upgrade by POST: 405 with Allow: GET.
        let head = refused(
            addr,
            &upgrade_request(addr, "/", "").replacen("GET", "POST", 1),
        );
        assert_eq!(head.status, 405, "{head:?}");
        assert_eq!(head.header("Allow"), Some("GET"));

        // A head over max_header_bytes (8 KiB by default): 431.
        let big = format!("X-Filler: {}\r\n", "a".repeat(9000));
        let head = refused(addr, &upgrade_request(addr, "/", &big));
        assert_eq!(head.status, 431, "{head:?}");

        assert_eq!(stats(&server).opened, 0);
        server.shutdown().unwrap();
    }
}

#[test]
fn a_plain_get_reaches_on_request_426_by_default_and_a_custom_200() {
    for backend in backends() {
        let (server, events) = start(config(backend));
        let addr = server.local_addr();

        // Keep-alive is tests/keep_alive.rs's: these ask for the close.
        let head = refused(
            addr,
            &format!("GET /page HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"),
        );
        assert_eq!(head.status, 426, "{head:?}");
        assert_eq!(head.header("Upgrade"), Some("websocket"));
        assert_eq!(head.header("Sec-WebSocket-Version"), Some("13"));
        assert_eq!(head.header("Connection"), Some("close"));
        assert_eq!(head.body, b"This is a WebSocket endpoint.\n");
        match events.next() {
            Ev::Request { path } => assert_eq!(path, "/page"),
            other => panic!("expected on_request, got {other:?}"),
        }

        let head = refused(
            addr,
            &format!(
                "GET /hello?name=x HTTP/1.1\r\nHost: {addr}\r\nAccept: */*\r\nConnection: close\r\n\r\n"
            ),
        );
        assert_eq!(head.status, 200, "{head:?}");
        assert_eq!(head.body, HELLO_BODY.as_bytes());
        assert_eq!(
            head.header("Content-Length"),
            Some(HELLO_BODY.len().to_string().as_str())
        );
        assert_eq!(head.header("Content-Type"), Some("text/plain"));
        assert_eq!(head.header("X-Test"), Some("yes"));
        assert_eq!(head.header("Connection"), Some("close"));
        match events.next() {
            Ev::Request { path } => assert_eq!(path, "/hello"),
            other => panic!("expected on_request, got {other:?}"),
        }
        assert_eq!(stats(&server).opened, 0);
        server.shutdown().unwrap();
    }
}

/// The frames a pipelining client sends with its request, and what must come back.
fn pipelined_frames() -> (Vec<u8>, Vec<Frame>) {
    let mut frames = Vec::new();
    frames.extend(encode(true, OP_TEXT, b"first", Some(MASK)));
    frames.extend(encode(true, OP_PING, b"p", Some(MASK)));
    frames.extend(encode(false, OP_BINARY, &[1, 2], Some(MASK)));
    frames.extend(encode(true, OP_CONT, &[3], Some(MASK)));
    frames.extend(encode(true, OP_TEXT, &[b'z'; 300], Some(MASK)));
    frames.extend(encode(
        true,
        OP_CLOSE,
        &close_payload(1000, b"done"),
        Some(MASK),
    ));
    let expected = vec![
        Frame {
            fin: true,
            opcode: OP_TEXT,
            payload: b"first".to_vec(),
        },
        Frame {
            fin: true,
            opcode: OP_PONG,
            payload: b"p".to_vec(),
        },
        Frame {
            fin: true,
            opcode: OP_BINARY,
            payload: vec![1, 2, 3],
        },
        Frame {
            fin: true,
            opcode: OP_TEXT,
            payload: vec![b'z'; 300],
        },
        Frame {
            fin: true,
            opcode: OP_CLOSE,
            payload: close_payload(1000, b""),
        },
    ];
    (frames, expected)
}

#[test]
fn frames_pipelined_with_the_request_are_not_lost() {
    for backend in backends() {
        let (server, events) = start(config(backend));
        let addr = server.local_addr();
        let (frames, expected) = pipelined_frames();

        // Request and frames in one write.
        let mut raw = Raw::tcp(addr);
        let mut bytes = upgrade_request(addr, "/", "").into_bytes();
        bytes.extend_from_slice(&frames);
        raw.write(&bytes);
        assert_101(&raw.read_head(), KEY);
        for want in &expected {
            assert_eq!(&raw.read_frame(), want);
        }
        raw.expect_eof();
        let (_, code, reason) = events.closed();
        assert_eq!((code, reason.as_str()), (1000, "done"));

        // The request split in two writes, the second also carrying the frames: the head
        // is completed from the stashed first part.
        let mut raw = Raw::tcp(addr);
        let request = upgrade_request(addr, "/", "");
        raw.write(&request.as_bytes()[..20]);
        // Give the server the chance to read the first part on its own; correctness
        // does not depend on it.
        std::thread::sleep(Duration::from_millis(50));
        let mut rest = request.as_bytes()[20..].to_vec();
        rest.extend_from_slice(&frames);
        raw.write(&rest);
        assert_101(&raw.read_head(), KEY);
        for want in &expected {
            assert_eq!(&raw.read_frame(), want);
        }
        raw.expect_eof();
        let (_, code, _) = events.closed();
        assert_eq!(code, 1000);
        server.shutdown().unwrap();
    }
}
