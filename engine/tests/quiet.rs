//! After a quiet spell. A worker with no timer filed sleeps until an event arrives; the
//! clock it stamps deadlines with must be read after that sleep, not before it. Every
//! other timer test connects at once, while the clock is fresh, which is why none of them
//! saw a first visitor after a pause being cut at once (issue 12).
//!
//! Each test lets the server sit idle for longer than every configured timeout together,
//! touching it in no way (a posted job would wake the worker and refresh its clock), then
//! checks one timer, on each backend.

mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::*;

/// Short timeouts so the quiet spell that outlasts them all stays short.
fn quiet_config(backend: throng_engine::BackendChoice) -> throng_engine::Config {
    let mut cfg = config(backend);
    cfg.timer_tick = Duration::from_millis(50);
    cfg.handshake_timeout = Duration::from_secs(1);
    cfg.close_timeout = Duration::from_secs(1);
    cfg.ping_interval = None;
    cfg
}

/// Longer than the handshake and close timeouts together, plus a margin.
const QUIET: Duration = Duration::from_millis(2500);

#[test]
fn the_first_visitor_after_a_quiet_spell_upgrades_and_echoes() {
    for backend in backends() {
        let (server, events) = start(quiet_config(backend));
        let addr = server.local_addr();
        std::thread::sleep(QUIET);
        let mut ws = connect(addr, "/");
        ws.send(tungstenite::Message::text("after the pause"))
            .unwrap();
        assert_eq!(
            read_data(&mut ws),
            tungstenite::Message::text("after the pause")
        );
        events.opened();
        // Both workers were quiet; a second visitor after another pause likewise.
        std::thread::sleep(QUIET);
        let mut second = connect(addr, "/");
        second
            .send(tungstenite::Message::binary(vec![1, 2, 3]))
            .unwrap();
        assert_eq!(
            read_data(&mut second),
            tungstenite::Message::binary(vec![1, 2, 3])
        );
        server.shutdown().unwrap();
    }
}

#[test]
fn a_plain_http_request_after_a_quiet_spell_is_answered() {
    for backend in backends() {
        let (server, _events) = start(quiet_config(backend));
        let addr = server.local_addr();
        std::thread::sleep(QUIET);
        let mut raw = Raw::tcp(addr);
        raw.write(format!("GET /hello HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes());
        let head = raw.read_head();
        assert_eq!(head.status, 200, "{head:?}");
        assert_eq!(head.body, HELLO_BODY.as_bytes());
        server.shutdown().unwrap();
    }
}

#[test]
fn after_a_quiet_spell_the_handshake_timeout_is_whole() {
    for backend in backends() {
        let (server, events) = start(quiet_config(backend));
        let addr = server.local_addr();
        std::thread::sleep(QUIET);
        // Half the request now, the rest after 60% of the 1 s handshake timeout.
        let request = upgrade_request(addr, "/", "");
        let (a, b) = request.as_bytes().split_at(request.len() / 2);
        let mut raw = Raw::tcp(addr);
        raw.write(a);
        std::thread::sleep(Duration::from_millis(600));
        raw.write(b);
        assert_101(&raw.read_head(), KEY);
        events.opened();
        server.shutdown().unwrap();
    }
}

#[test]
fn after_a_quiet_spell_a_silent_upgrade_is_cut_no_sooner_than_the_handshake_timeout() {
    for backend in backends() {
        let (server, _events) = start(quiet_config(backend));
        let addr = server.local_addr();
        std::thread::sleep(QUIET);
        let started = Instant::now();
        let mut raw = Raw::tcp(addr);
        // One byte, so that the deferred accept hands the connection over now.
        raw.write(b"G");
        raw.expect_closed();
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(900),
            "cut {waited:?} after connecting, with a 1 s handshake timeout"
        );
        server.shutdown().unwrap();
    }
}

#[test]
fn after_a_quiet_spell_the_idle_timeout_runs_its_full_length() {
    for backend in backends() {
        let mut cfg = quiet_config(backend);
        cfg.idle_timeout = Some(Duration::from_secs(1));
        let (server, events) = start(cfg);
        std::thread::sleep(QUIET);
        let started = Instant::now();
        let mut raw = Raw::open(server.local_addr());
        events.opened();
        let (code, _) = raw.read_close().expect("a close code");
        let waited = started.elapsed();
        assert_eq!(code, 1001);
        assert!(
            waited >= Duration::from_millis(900),
            "idle close {waited:?} after opening, with a 1 s idle timeout"
        );
        server.shutdown().unwrap();
    }
}

#[test]
fn after_a_quiet_spell_the_first_ping_waits_its_interval_and_a_pong_keeps_it_open() {
    for backend in backends() {
        let mut cfg = quiet_config(backend);
        cfg.ping_interval = Some(Duration::from_secs(1));
        cfg.pong_timeout = Duration::from_secs(1);
        let (server, events) = start(cfg);
        std::thread::sleep(QUIET);
        let started = Instant::now();
        let mut raw = Raw::open(server.local_addr());
        let id = events.opened();
        let ping = raw.read_frame();
        let waited = started.elapsed();
        assert_eq!(ping.opcode, OP_PING);
        assert!(
            waited >= Duration::from_millis(900),
            "first ping {waited:?} after opening, with a 1 s interval"
        );
        raw.send(true, OP_PONG, &ping.payload);
        events.no_close_within(Duration::from_millis(1500));
        raw.send(true, OP_TEXT, b"alive");
        assert_eq!(raw.read_frame_skip_pings().payload, b"alive");
        let _ = id;
        server.shutdown().unwrap();
    }
}

#[test]
fn after_a_quiet_spell_the_close_timer_runs_its_full_length() {
    for backend in backends() {
        let (server, events) = start(quiet_config(backend));
        let addr = server.local_addr();
        std::thread::sleep(QUIET);
        // The request and a command to close pipelined in one write, so the close is
        // decided in the very turn that follows the sleep.
        let started = Instant::now();
        let mut raw = Raw::tcp(addr);
        let mut bytes = upgrade_request(addr, "/", "").into_bytes();
        bytes.extend_from_slice(&encode(true, OP_TEXT, b"!close 4000 bye", Some(MASK)));
        raw.write(&bytes);
        assert_101(&raw.read_head(), KEY);
        assert_eq!(raw.read_close(), Some((4000, "bye".to_owned())));
        events.opened();
        // No answer to the close: TCP is closed when the 1 s close timer runs out.
        raw.expect_closed();
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(900),
            "closed {waited:?} after the close frame, with a 1 s close timeout"
        );
        server.shutdown().unwrap();
    }
}

/// The same quiet spell through a raw socket that reads the whole reply, for a request
/// with `Connection: close`: the answer arrives and then the end.
#[test]
fn the_health_check_pattern_works_every_time() {
    for backend in backends() {
        let (server, _events) = start(quiet_config(backend));
        let addr = server.local_addr();
        for _ in 0..2 {
            std::thread::sleep(QUIET);
            let mut s = tcp(addr);
            let request =
                format!("GET /hello HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
            s.write_all(request.as_bytes()).unwrap();
            let mut reply = Vec::new();
            s.read_to_end(&mut reply).expect("a whole reply");
            let reply = String::from_utf8_lossy(&reply);
            assert!(reply.starts_with("HTTP/1.1 200"), "{reply:?}");
        }
        server.shutdown().unwrap();
    }
}
