//! Messages and control frames: echo of every size class, fragmented messages with
//! control frames between the fragments, pings both ways, on each backend.

mod common;

use std::time::{Duration, Instant};

use common::*;
use tungstenite::Message as TMessage;

const SIZES: [usize; 8] = [0, 1, 125, 126, 65535, 65536, 1 << 20, 16 << 20];

#[test]
fn text_and_binary_echo_from_0_bytes_to_16_mib() {
    for backend in backends() {
        let (server, events) = start(config(backend));
        let mut ws = connect(server.local_addr(), "/echo");
        let id = events.opened();
        for (i, &size) in SIZES.iter().enumerate() {
            let text = text_pattern(size);
            ws.send(TMessage::text(text.clone())).unwrap();
            match read_data(&mut ws) {
                TMessage::Text(got) => {
                    assert!(got.as_str() == text, "text echo of {size} bytes differs")
                }
                other => panic!("text of {size} bytes came back as {}", describe(&other)),
            }
            let binary = pattern(i as u64, size);
            ws.send(TMessage::binary(binary.clone())).unwrap();
            match read_data(&mut ws) {
                TMessage::Binary(got) => {
                    assert!(got[..] == binary[..], "binary echo of {size} bytes differs")
                }
                other => panic!("binary of {size} bytes came back as {}", describe(&other)),
            }
        }
        ws.close(Some(tungstenite::protocol::CloseFrame {
            code: 1000.into(),
            reason: "bye".into(),
        }))
        .unwrap();
        assert_eq!(read_close(&mut ws), (1000, String::new()));
        finish_close(&mut ws);
        assert_eq!(events.closed_id(id), (1000, "bye".to_owned()));
        server.shutdown().unwrap();
    }
}

#[test]
fn a_message_over_the_limit_by_one_byte_is_refused_and_one_at_the_limit_echoed() {
    for backend in backends() {
        let mut cfg = config(backend);
        cfg = cfg.with_max_message_size(1000);
        let (server, events) = start(cfg);
        let mut raw = Raw::open(server.local_addr());
        raw.send(true, OP_BINARY, &pattern(1, 1000));
        assert_eq!(raw.read_frame().payload, pattern(1, 1000));
        // At the limit in fragments too.
        let text = text_pattern(1000);
        raw.send(false, OP_TEXT, &text.as_bytes()[..400]);
        raw.send(true, OP_CONT, &text.as_bytes()[400..]);
        assert_eq!(raw.read_frame().payload, text.as_bytes());
        raw.send(true, OP_BINARY, &pattern(2, 1001));
        assert_eq!(raw.read_close().map(|c| c.0), Some(1009));
        raw.expect_eof();
        assert_eq!(events.closed().1, 1009);
        server.shutdown().unwrap();
    }
}

#[test]
fn fragmented_messages_with_control_frames_between_fragments() {
    for backend in backends() {
        let (server, events) = start(config(backend));
        let mut raw = Raw::open(server.local_addr());

        // Text in three fragments, a multi-byte character split across two of them, a
        // ping and an unsolicited pong in between.
        let word = "Hello, wörld!".as_bytes();
        let split = word.iter().position(|&b| b == 0xc3).unwrap() + 1;
        raw.send(false, OP_TEXT, &word[..split]);
        raw.send(true, OP_PING, b"between");
        raw.send(false, OP_CONT, &word[split..word.len() - 1]);
        raw.send(true, OP_PONG, b"unsolicited");
        raw.send(true, OP_CONT, &word[word.len() - 1..]);
        assert_eq!(
            raw.read_frame(),
            Frame {
                fin: true,
                opcode: OP_PONG,
                payload: b"between".to_vec()
            }
        );
        assert_eq!(
            raw.read_frame(),
            Frame {
                fin: true,
                opcode: OP_TEXT,
                payload: word.to_vec()
            }
        );

        // Binary in 100 fragments of 1000 bytes with a ping every 10 fragments: the pongs
        // come first (the message is delivered whole), each with its own payload.
        let data = pattern(42, 100_000);
        for (i, chunk) in data.chunks(1000).enumerate() {
            let opcode = if i == 0 { OP_BINARY } else { OP_CONT };
            raw.send(i == 99, opcode, chunk);
            if i % 10 == 5 {
                raw.send(true, OP_PING, format!("p{i}").as_bytes());
            }
        }
        for i in (5..100).step_by(10) {
            let f = raw.read_frame();
            assert_eq!(
                (f.opcode, f.payload),
                (OP_PONG, format!("p{i}").into_bytes())
            );
        }
        let f = raw.read_frame();
        assert_eq!(
            (f.fin, f.opcode, f.payload.len()),
            (true, OP_BINARY, data.len())
        );
        assert!(
            f.payload == data,
            "fragmented binary reassembled byte-exact"
        );

        // Empty fragments, and an empty message in fragments.
        raw.send(false, OP_TEXT, b"");
        raw.send(false, OP_CONT, b"ab");
        raw.send(false, OP_CONT, b"");
        raw.send(true, OP_CONT, b"c");
        assert_eq!(raw.read_frame().payload, b"abc");
        raw.send(false, OP_BINARY, b"");
        raw.send(true, OP_CONT, b"");
        let f = raw.read_frame();
        assert_eq!((f.opcode, f.payload.len()), (OP_BINARY, 0));

        // A fragmented message with a ping in the middle, written one byte at a time:
        // every header and payload arrives in pieces.
        let mut bytes = encode(false, OP_TEXT, b"slow ", Some(MASK));
        bytes.extend(encode(true, OP_PING, b"dribble", Some(MASK)));
        bytes.extend(encode(false, OP_CONT, &[b's'; 200], Some(MASK)));
        bytes.extend(encode(true, OP_CONT, b" end", Some(MASK)));
        for b in &bytes {
            raw.write(std::slice::from_ref(b));
        }
        assert_eq!(raw.read_frame().payload, b"dribble");
        let mut want = b"slow ".to_vec();
        want.extend_from_slice(&[b's'; 200]);
        want.extend_from_slice(b" end");
        let f = raw.read_frame();
        assert_eq!((f.opcode, f.payload), (OP_TEXT, want));

        raw.send_close(1000, "");
        assert_eq!(raw.read_close(), Some((1000, String::new())));
        raw.expect_eof();
        assert_eq!(events.closed().1, 1000);
        server.shutdown().unwrap();
    }
}

#[test]
fn pings_are_answered_with_the_same_payload() {
    for backend in backends() {
        let (server, _events) = start(config(backend));
        let addr = server.local_addr();
        let mut raw = Raw::open(addr);
        for payload in [Vec::new(), b"x".to_vec(), pattern(9, 125)] {
            raw.send(true, OP_PING, &payload);
            assert_eq!(
                raw.read_frame(),
                Frame {
                    fin: true,
                    opcode: OP_PONG,
                    payload
                }
            );
        }
        // Several pings in one write: one pong each, in order.
        let mut bytes = Vec::new();
        for i in 0..20u8 {
            bytes.extend(encode(true, OP_PING, &[i; 3], Some(MASK)));
        }
        raw.write(&bytes);
        for i in 0..20u8 {
            assert_eq!(raw.read_frame().payload, [i; 3]);
        }

        // tungstenite's ping.
        let mut ws = connect(addr, "/");
        ws.send(TMessage::Ping(b"tung".to_vec().into())).unwrap();
        match ws.read().unwrap() {
            TMessage::Pong(p) => assert_eq!(&p[..], b"tung"),
            other => panic!("expected a pong, got {other:?}"),
        }
        server.shutdown().unwrap();
    }
}

#[test]
fn the_server_pings_from_a_callback() {
    for backend in backends() {
        let (server, _events) = start(config(backend));
        let mut raw = Raw::open(server.local_addr());
        raw.send(true, OP_TEXT, b"!ping hello");
        assert_eq!(
            raw.read_frame(),
            Frame {
                fin: true,
                opcode: OP_PING,
                payload: b"hello".to_vec()
            }
        );
        server.shutdown().unwrap();
    }
}

#[test]
fn automatic_pings_arrive_and_a_client_that_answers_stays_open() {
    for backend in backends() {
        let mut cfg = config(backend);
        cfg.timer_tick = Duration::from_millis(50);
        cfg.ping_interval = Some(Duration::from_millis(300));
        cfg.pong_timeout = Duration::from_millis(500);
        let (server, events) = start(cfg);
        let mut raw = Raw::open(server.local_addr());
        let id = events.opened();
        let mut last = Instant::now();
        for round in 0..3 {
            let f = raw.read_frame();
            let waited = last.elapsed();
            assert_eq!(
                (f.fin, f.opcode),
                (true, OP_PING),
                "round {round}: expected a ping, got {f:?}"
            );
            // The ping comes after a silence of ping_interval (generous bounds).
            assert!(
                waited >= Duration::from_millis(200) && waited < Duration::from_secs(3),
                "round {round}: ping after {waited:?}"
            );
            raw.send(true, OP_PONG, &f.payload);
            last = Instant::now();
        }
        // Answered pings keep the connection: still open and echoing.
        raw.send(true, OP_TEXT, b"alive");
        assert_eq!(raw.read_frame_skip_pings().payload, b"alive");
        assert!(
            !events
                .drain_now()
                .iter()
                .any(|e| matches!(e, Ev::Close { .. })),
            "the connection was closed"
        );
        assert_eq!(open_count(&server), 1);
        assert_eq!(stats(&server).timed_out, 0);
        raw.send_close(1000, "");
        assert_eq!(raw.read_close(), Some((1000, String::new())));
        assert_eq!(events.closed_id(id).0, 1000);
        server.shutdown().unwrap();
    }
}
