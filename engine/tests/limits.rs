//! The limits a public server needs beyond the protocol's (issue 18), each with its
//! documented answer, on each backend: connections per peer address (429), a message
//! rate per connection (1008), the memory of incomplete request heads per worker (503),
//! and the output a worker buffers in all (sends refused).

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use throng_engine::{MessageRate, SendError};

/// A raw connection from a given local address.
fn tcp_from(local: &str, addr: SocketAddr) -> Raw {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    s.bind(&local.parse::<SocketAddr>().unwrap().into())
        .unwrap();
    s.connect(&addr.into()).unwrap();
    let stream: std::net::TcpStream = s.into();
    stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    Raw::from_stream(stream)
}

fn upgrade(raw: &mut Raw, addr: SocketAddr) -> u16 {
    raw.write(upgrade_request(addr, "/", "").as_bytes());
    raw.read_head().status
}

#[test]
fn connections_per_address_beyond_the_limit_get_429() {
    for backend in backends() {
        let mut cfg = config(backend);
        cfg.max_connections_per_ip = Some(3);
        let (server, _events) = start(cfg);
        let addr = server.local_addr();
        let mut held: Vec<Raw> = (0..3)
            .map(|_| {
                let mut r = tcp_from("127.0.0.1:0", addr);
                assert_eq!(upgrade(&mut r, addr), 101);
                r
            })
            .collect();
        // The fourth from the same address, whichever worker it lands on.
        let mut fourth = tcp_from("127.0.0.1:0", addr);
        assert_eq!(upgrade(&mut fourth, addr), 429);
        fourth.expect_closed();
        // Another address is not affected.
        let mut other = tcp_from("127.0.0.2:0", addr);
        assert_eq!(upgrade(&mut other, addr), 101);
        // Closing one frees its place.
        let mut gone = held.pop().unwrap();
        gone.send_close(1000, "");
        gone.read_close();
        drop(gone);
        assert!(eventually(EVENT_TIMEOUT, || {
            let mut r = tcp_from("127.0.0.1:0", addr);
            let ok = upgrade(&mut r, addr) == 101;
            if ok {
                held.push(r);
            }
            ok
        }));
        assert!(stats(&server).refused_per_ip >= 1);
        server.shutdown().unwrap();
    }
}

#[test]
fn a_connection_over_its_message_rate_is_closed_with_1008() {
    for backend in backends() {
        let mut cfg = config(backend);
        cfg.timer_tick = Duration::from_millis(50);
        cfg.message_rate = Some(MessageRate {
            per_second: 10,
            burst: 5,
        });
        let (server, events) = start(cfg);
        let addr = server.local_addr();
        // Keeping to the rate: never limited.
        let mut steady = Raw::open(addr);
        let steady_id = events.opened();
        for i in 0..10u8 {
            steady.send(true, OP_TEXT, &[b'a' + i]);
            assert_eq!(steady.read_frame().payload, [b'a' + i]);
            std::thread::sleep(Duration::from_millis(150));
        }
        // A burst of 5 passes, the next messages do not.
        let mut fast = Raw::open(addr);
        let fast_id = events.opened();
        let mut burst = Vec::new();
        for i in 0..20u8 {
            burst.extend(encode(true, OP_BINARY, &[i], Some(MASK)));
        }
        fast.write(&burst);
        for i in 0..5u8 {
            assert_eq!(fast.read_frame().payload, [i]);
        }
        assert_eq!(
            fast.read_close(),
            Some((1008, "message rate limit".to_owned()))
        );
        fast.send_close(1008, "");
        assert_eq!(events.closed_id(fast_id).0, 1008);
        steady.send(true, OP_TEXT, b"still fine");
        assert_eq!(steady.read_frame().payload, b"still fine");
        let _ = steady_id;
        assert_eq!(stats(&server).rate_limited, 1);
        server.shutdown().unwrap();
    }
}

#[test]
fn incomplete_request_heads_beyond_the_worker_bound_get_503() {
    for backend in backends() {
        let mut cfg = config(backend);
        cfg.max_handshake_buffer = 16 << 10;
        let (server, _events) = start(cfg);
        let addr = server.local_addr();
        // Eight heads of ~5 KB each, never finished: 40 KB over two workers, so one of
        // them holds at least 20 KB of them, more than its 16 KiB.
        let filler = format!("X-Filler: {}\r\n", "f".repeat(5000));
        let mut slow: Vec<Raw> = (0..8)
            .map(|_| {
                let mut r = Raw::tcp(addr);
                let req = upgrade_request(addr, "/", &filler);
                r.write(&req.as_bytes()[..req.len() - 4]);
                r
            })
            .collect();
        assert!(eventually(EVENT_TIMEOUT, || stats(&server)
            .handshake_memory_refused
            >= 1));
        let mut refused = 0;
        for r in &mut slow {
            r.stream
                .set_read_timeout(Some(Duration::from_millis(300)))
                .unwrap();
            let mut b = [0u8; 12];
            if matches!(std::io::Read::read(&mut r.stream.0, &mut b), Ok(12) if &b == b"HTTP/1.1 503")
            {
                refused += 1;
            }
        }
        assert!(refused >= 1, "some heads were refused with 503");
        // A normal client still gets in.
        let mut ws = connect(addr, "/");
        ws.send(tungstenite::Message::text("in")).unwrap();
        assert_eq!(read_data(&mut ws), tungstenite::Message::text("in"));
        drop(slow);
        server.shutdown().unwrap();
    }
}

#[test]
fn output_beyond_the_worker_bound_is_refused_even_into_empty_buffers() {
    for backend in backends() {
        let mut cfg = config(backend);
        cfg.max_worker_buffered = 1 << 20;
        cfg.max_buffered = 32 << 20;
        let (server, events) = start(cfg);
        let mut raw = Raw::open(server.local_addr());
        events.opened();
        // 20 x 100 KB staged in one callback: about 10 fit the worker's 1 MiB.
        raw.send(true, OP_TEXT, b"!flood 20 100000");
        let report = events.flood();
        let refused = report
            .results
            .iter()
            .filter(|r| **r == Err(SendError::Backpressure))
            .count();
        assert!((5..=15).contains(&refused), "{:?}", report.results);
        assert!(report.max_buffered <= 1 << 20);
        let s = stats(&server);
        assert_eq!(s.dropped_worker_full, refused as u64, "{s:?}");
        // What was accepted arrives whole and in order.
        for i in 0..(20 - refused) as u64 {
            let f = raw.read_frame();
            assert_eq!(u64::from_le_bytes(f.payload[..8].try_into().unwrap()), i);
        }
        server.shutdown().unwrap();
    }
}
