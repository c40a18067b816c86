//! Idle connections own no heap buffer: the spill pool lends a record only while a
//! connection has something in flight (partial request or frame, a message being
//! assembled, output the kernel did not take), on each backend.

mod common;

use std::time::Duration;

use common::*;
use tungstenite::Message as TMessage;

#[test]
fn idle_connections_hold_no_spill_record_after_traffic() {
    for backend in backends() {
        let (server, events) = start(config(backend));
        let addr = server.local_addr();
        let mut clients: Vec<Client> = (0..50).map(|_| connect(addr, "/")).collect();
        for _ in 0..50 {
            events.opened();
        }
        assert_eq!(open_count(&server), 50);
        assert_eq!(
            pool_in_use(&server),
            0,
            "fresh idle connections hold nothing"
        );

        // Traffic of every kind: small, large (assembled across reads, queued on output),
        // fragmented.
        for (i, ws) in clients.iter_mut().enumerate() {
            ws.send(TMessage::text(format!("hello {i}"))).unwrap();
            let big = pattern(i as u64, if i % 10 == 0 { 2 << 20 } else { 70_000 });
            ws.send(TMessage::binary(big.clone())).unwrap();
            assert_eq!(read_data(ws), TMessage::text(format!("hello {i}")));
            match read_data(ws) {
                TMessage::Binary(b) => assert!(b[..] == big[..]),
                other => panic!("expected the binary echo, got {}", describe(&other)),
            }
        }
        let mut raw = Raw::open(addr);
        events.opened();
        raw.send(false, OP_TEXT, b"frag");
        raw.send(true, OP_PING, b"");
        raw.send(true, OP_CONT, b"mented");
        assert_eq!(raw.read_frame().opcode, OP_PONG);
        assert_eq!(raw.read_frame().payload, b"fragmented");

        // Traffic has stopped: every record is back in the pool.
        assert!(
            eventually(Duration::from_secs(2), || pool_in_use(&server) == 0),
            "idle connections still hold spill records: in_use = {}",
            pool_in_use(&server)
        );
        let per_worker = on_workers(&server, |c| c.pool_stats());
        let allocated: usize = per_worker.iter().map(|p| p.allocated).sum();
        assert!(
            allocated > 0,
            "large messages did use the pool: {per_worker:?}"
        );
        assert!(
            allocated <= 51,
            "records are reused, not one per message: {per_worker:?}"
        );
        assert_eq!(open_count(&server), 51);
        server.shutdown().unwrap();
    }
}

#[test]
fn a_connection_holds_a_record_only_while_something_is_in_flight() {
    for backend in backends() {
        let (server, events) = start(config(backend));
        let addr = server.local_addr();

        // A partial request head.
        let mut raw = Raw::tcp(addr);
        let request = upgrade_request(addr, "/", "");
        raw.write(&request.as_bytes()[..30]);
        assert!(
            eventually(Duration::from_secs(5), || pool_in_use(&server) == 1),
            "a partial request is held in a record"
        );
        raw.write(&request.as_bytes()[30..]);
        assert_101(&raw.read_head(), KEY);
        events.opened();
        assert!(eventually(Duration::from_secs(2), || pool_in_use(&server) == 0));

        // Part of a frame header, then part of a payload.
        let frame = encode(true, OP_BINARY, &pattern(3, 1000), Some(MASK));
        raw.write(&frame[..1]);
        assert!(
            eventually(Duration::from_secs(5), || pool_in_use(&server) == 1),
            "an incomplete frame header is held in a record"
        );
        raw.write(&frame[1..600]);
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(pool_in_use(&server), 1, "an incomplete payload is held");
        raw.write(&frame[600..]);
        assert_eq!(raw.read_frame().payload, pattern(3, 1000));
        assert!(
            eventually(Duration::from_secs(2), || pool_in_use(&server) == 0),
            "the record goes back once the frame is complete"
        );

        // The first fragment of a message.
        raw.send(false, OP_TEXT, b"first half, ");
        assert!(
            eventually(Duration::from_secs(5), || pool_in_use(&server) == 1),
            "a message being assembled is held in a record"
        );
        raw.send(true, OP_CONT, b"second half");
        assert_eq!(raw.read_frame().payload, b"first half, second half");
        assert!(eventually(Duration::from_secs(2), || pool_in_use(&server) == 0));

        // Output the kernel did not take: a client that does not read a large echo.
        let mut ws = connect(addr, "/");
        events.opened();
        ws.send(TMessage::binary(pattern(4, 16 << 20))).unwrap();
        assert!(
            eventually(Duration::from_secs(5), || pool_in_use(&server) >= 1),
            "queued output is held in a record"
        );
        match read_data(&mut ws) {
            TMessage::Binary(b) => assert_eq!(b.len(), 16 << 20),
            other => panic!("expected the echo, got {}", describe(&other)),
        }
        assert!(
            eventually(Duration::from_secs(2), || pool_in_use(&server) == 0),
            "the record goes back once the output is out"
        );
        server.shutdown().unwrap();
    }
}
