//! Liveness with output queued (issue 12.3). The server's ping waits behind output the
//! peer has not read yet, so a slow but live reader cannot answer it in time; it used to
//! be cut as half-open, losing the rest of its message. Its TCP acknowledging the output
//! shows it alive. A peer that stops reading altogether is stuck, and is dropped (and
//! counted) instead of holding its output forever. On each backend.

mod common;

use std::io::Read;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;

/// A TCP connection whose receive buffer is small, set before connecting so the window
/// stays small: the peer's output backs up in the server.
fn narrow(addr: SocketAddr) -> Raw {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    s.set_recv_buffer_size(4096).unwrap();
    s.connect(&addr.into()).unwrap();
    let stream: std::net::TcpStream = s.into();
    stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    let mut raw = Raw::from_stream(stream);
    raw.write(upgrade_request(addr, "/", "").as_bytes());
    assert_101(&raw.read_head(), KEY);
    raw
}

fn liveness_config(backend: throng_engine::BackendChoice) -> throng_engine::Config {
    let mut cfg = config(backend);
    cfg.timer_tick = Duration::from_millis(50);
    cfg.ping_interval = Some(Duration::from_millis(400));
    cfg.pong_timeout = Duration::from_millis(400);
    cfg
}

#[test]
fn a_slow_reader_keeps_its_connection_and_gets_every_byte() {
    for backend in backends() {
        let (server, events) = start(liveness_config(backend));
        let mut raw = narrow(server.local_addr());
        let id = events.opened();
        let message = pattern(3, 256 << 10);
        raw.send(true, OP_BINARY, &message);
        // Read the echo at about 48 KB/s: ~5 s, many ping intervals and pong timeouts.
        let started = Instant::now();
        let mut got = Vec::new();
        let mut buf = [0u8; 2048];
        while got.len() < message.len() + 4 {
            let n = raw
                .stream
                .read(&mut buf)
                .expect("the server keeps the connection");
            assert!(n > 0, "cut after {} of {} bytes", got.len(), message.len());
            got.extend_from_slice(&buf[..n]);
            std::thread::sleep(Duration::from_millis(40));
            assert!(started.elapsed() < Duration::from_secs(60));
        }
        assert!(
            started.elapsed() > Duration::from_millis(1600),
            "it was slow"
        );
        raw.unread(got);
        let f = raw.read_frame_skip_pings();
        assert_eq!(f.opcode, OP_BINARY);
        assert!(f.payload == message, "the whole message, intact");
        // Alive and well: it answers the next pings and closes cleanly.
        raw.send_close(1000, "done");
        assert_eq!(raw.read_close().map(|c| c.0), Some(1000));
        assert_eq!(events.closed_id(id).0, 1000);
        let s = stats(&server);
        assert_eq!((s.timed_out, s.stalled), (0, 0), "{s:?}");
        server.shutdown().unwrap();
    }
}

#[test]
fn a_peer_that_stops_reading_is_dropped_as_stuck() {
    for backend in backends() {
        let (server, events) = start(liveness_config(backend));
        let mut raw = narrow(server.local_addr());
        let id = events.opened();
        // 4 MiB it never reads: more than the kernel buffers hold, so output backs up.
        raw.send(true, OP_BINARY, &pattern(4, 4 << 20));
        let started = Instant::now();
        let (code, reason) = events.closed_id(id);
        let waited = started.elapsed();
        assert_eq!((code, reason.as_str()), (1006, "peer stopped reading"));
        // One interval to see it acknowledge nothing more, after the first pong timeout.
        assert!(
            waited >= Duration::from_millis(1200) && waited < Duration::from_secs(8),
            "dropped after {waited:?}"
        );
        let s = stats(&server);
        assert_eq!((s.timed_out, s.stalled), (1, 1), "{s:?}");
        assert!(eventually(EVENT_TIMEOUT, || pool_in_use(&server) == 0));
        drop(raw);
        server.shutdown().unwrap();
    }
}
