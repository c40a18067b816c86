//! Interoperability with Python's `websockets` (17.x in CI): the scripts in
//! `engine/tests/python/` drive its client against the engine, on each backend.
//!
//! Without `python3` or the `websockets` module these tests fail, telling to
//! `pip install websockets`, unless `THRONG_SKIP_PYTHON=1` says to skip them (loudly).

mod common;

use std::time::Duration;

use common::*;

#[test]
fn python_echo_of_text_and_binary() {
    if !python_available("python_echo_of_text_and_binary") {
        return;
    }
    for backend in backends() {
        let (server, events) = start(config(backend));
        let out = run_python_client(server.local_addr(), "echo");
        assert_eq!(out.trim(), "ok echo 14");
        events.opened();
        let (_, code, reason) = events.closed();
        assert_eq!((code, reason.as_str()), (1000, "done"));
        server.shutdown().unwrap();
    }
}

#[test]
fn python_fragmented_send() {
    if !python_available("python_fragmented_send") {
        return;
    }
    for backend in backends() {
        let (server, _events) = start(config(backend));
        let out = run_python_client(server.local_addr(), "fragments");
        assert_eq!(out.trim(), "ok fragments");
        server.shutdown().unwrap();
    }
}

#[test]
fn python_ping_is_answered_with_its_payload() {
    if !python_available("python_ping_is_answered_with_its_payload") {
        return;
    }
    for backend in backends() {
        let (server, _events) = start(config(backend));
        let out = run_python_client(server.local_addr(), "ping");
        assert_eq!(out.trim(), "ok ping");
        server.shutdown().unwrap();
    }
}

#[test]
fn python_close_codes_both_ways() {
    if !python_available("python_close_codes_both_ways") {
        return;
    }
    for backend in backends() {
        let (server, events) = start(config(backend));
        let addr = server.local_addr();

        let out = run_python_client(addr, "close_client");
        assert_eq!(out.trim(), "ok close_client");
        let id = events.opened();
        assert_eq!(events.closed_id(id), (4000, "bye".to_owned()));

        let out = run_python_client(addr, "close_server");
        assert_eq!(out.trim(), "ok close_server");
        let id = events.opened();
        assert_eq!(events.closed_id(id).0, 4001);

        assert!(eventually(Duration::from_secs(5), || conn_count(&server) == 0));
        let s = stats(&server);
        assert_eq!((s.closed_cleanly, s.closed_abnormally), (2, 0), "{s:?}");
        server.shutdown().unwrap();
    }
}

#[test]
fn python_answers_the_servers_automatic_pings() {
    if !python_available("python_answers_the_servers_automatic_pings") {
        return;
    }
    for backend in backends() {
        let mut cfg = config(backend);
        cfg.timer_tick = Duration::from_millis(50);
        cfg.ping_interval = Some(Duration::from_millis(200));
        cfg.pong_timeout = Duration::from_millis(300);
        let (server, events) = start(cfg);
        let out = run_python_client(server.local_addr(), "auto_ping");
        let pings: usize = out
            .trim()
            .strip_prefix("ok auto_ping ")
            .unwrap_or_else(|| panic!("client said {out:?}"))
            .parse()
            .unwrap();
        assert!(pings >= 2, "{pings} pings");
        // Answered pings kept the connection: it ended with the client's close, not a
        // pong timeout.
        events.opened();
        let (_, code, _) = events.closed();
        assert_eq!(code, 1000, "the client's close, not a pong timeout");
        assert_eq!(stats(&server).timed_out, 0);
        server.shutdown().unwrap();
    }
}
