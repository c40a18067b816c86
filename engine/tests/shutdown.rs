//! Graceful shutdown: close 1001 to every connection while messages are in flight, the
//! report's counts, and a peer that never answers cut at the deadline, on each backend.

mod common;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use tungstenite::Message as TMessage;

/// A client that echoes numbered messages until the server's close, checking each echo;
/// returns the close code and how many round trips it completed.
fn chatter(addr: std::net::SocketAddr, n: usize, warmed_up: mpsc::Sender<()>) -> (u16, usize) {
    let mut ws = connect(addr, "/");
    let mut done = 0;
    loop {
        let text = format!("client {n} message {done}");
        if ws.send(TMessage::text(text.clone())).is_err() {
            // The close arrived while sending; read it below.
        }
        match ws.read().expect("read") {
            TMessage::Text(t) => {
                assert_eq!(t.as_str(), text, "echoes arrive in order, intact");
                done += 1;
                if done == 20 {
                    let _ = warmed_up.send(());
                }
            }
            TMessage::Close(frame) => {
                let code = frame.map_or(1005, |f| u16::from(f.code));
                finish_close(&mut ws);
                return (code, done);
            }
            TMessage::Ping(_) | TMessage::Pong(_) => {}
            other => panic!("unexpected {}", describe(&other)),
        }
    }
}

#[test]
fn graceful_shutdown_with_messages_in_flight_closes_every_client_cleanly() {
    for backend in backends() {
        let mut cfg = config(backend);
        cfg.shutdown_timeout = Duration::from_secs(5);
        let (server, events) = start(cfg);
        let addr = server.local_addr();
        let (warm_tx, warm) = mpsc::channel();
        let clients: Vec<_> = (0..6)
            .map(|n| {
                let tx = warm_tx.clone();
                std::thread::spawn(move || chatter(addr, n, tx))
            })
            .collect();
        for _ in 0..6 {
            warm.recv_timeout(EVENT_TIMEOUT)
                .expect("every client exchanges messages");
        }
        assert_eq!(open_count(&server), 6);

        let started = Instant::now();
        let report = server.shutdown().expect("shutdown");
        let took = started.elapsed();
        for c in clients {
            let (code, done) = c.join().expect("client thread");
            assert_eq!(code, 1001, "shutdown close code");
            assert!(done >= 20);
        }
        assert_eq!(report.connections, 6, "{report:?}");
        assert_eq!(report.closed_cleanly, 6, "{report:?}");
        assert_eq!(report.forced, 0, "{report:?}");
        assert_eq!(report.stats.opened, 6, "{report:?}");
        assert_eq!(report.stats.closed_cleanly, 6, "{report:?}");
        assert_eq!(report.stats.dropped, 0, "{report:?}");
        assert!(
            took < Duration::from_secs(4),
            "shutdown waited {took:?} although every client answered"
        );
        let closes: Vec<u16> = events
            .drain_now()
            .into_iter()
            .filter_map(|e| match e {
                Ev::Close { code, .. } => Some(code),
                _ => None,
            })
            .collect();
        assert_eq!(closes, [1001; 6], "on_close reports the peers' answers");
    }
}

#[test]
fn a_client_that_does_not_answer_is_forced_at_the_shutdown_timeout() {
    for backend in backends() {
        let mut cfg = config(backend);
        cfg.shutdown_timeout = Duration::from_secs(1);
        cfg.close_timeout = Duration::from_secs(10);
        cfg.timer_tick = Duration::from_millis(50);
        let (server, events) = start(cfg);
        let addr = server.local_addr();
        let (warm_tx, warm) = mpsc::channel();
        let good = std::thread::spawn(move || chatter(addr, 0, warm_tx));
        warm.recv_timeout(EVENT_TIMEOUT)
            .expect("the good client talks");
        let good_id = events.opened();
        let mut silent = Raw::open(addr);
        let silent_id = events.opened();

        let started = Instant::now();
        let report = server.shutdown().expect("shutdown");
        let took = started.elapsed();
        assert_eq!(good.join().unwrap().0, 1001);
        assert_eq!(
            (report.connections, report.closed_cleanly, report.forced),
            (2, 1, 1),
            "{report:?}"
        );
        assert!(
            took >= Duration::from_millis(900) && took < Duration::from_secs(5),
            "forced after {took:?} with a 1 s shutdown timeout"
        );
        // The silent one got the close frame, then the connection was cut.
        assert_eq!(silent.read_close().map(|c| c.0), Some(1001));
        silent.expect_closed();
        let mut closes = std::collections::HashMap::new();
        for e in events.drain_now() {
            if let Ev::Close { id, code, .. } = e {
                closes.insert(id, code);
            }
        }
        assert_eq!(closes.get(&good_id), Some(&1001));
        assert_eq!(closes.get(&silent_id), Some(&1006));
    }
}

/// Issue 12.4: peers that never answer the 1001 are ended by the close timer before the
/// shutdown deadline; they used to be counted in no bucket ("closed 1051 connections:
/// 1001 cleanly, 0 at the deadline"). Every connection must be in exactly one.
#[test]
fn every_connection_open_at_shutdown_is_in_exactly_one_bucket() {
    for backend in backends() {
        // The close timer ends the silent ones before the deadline.
        let mut cfg = config(backend);
        cfg.timer_tick = Duration::from_millis(50);
        cfg.close_timeout = Duration::from_millis(500);
        cfg.shutdown_timeout = Duration::from_secs(3);
        let (server, events) = start(cfg);
        let addr = server.local_addr();
        let (warm_tx, warm) = mpsc::channel();
        let good: Vec<_> = (0..2)
            .map(|n| {
                let tx = warm_tx.clone();
                std::thread::spawn(move || chatter(addr, n, tx))
            })
            .collect();
        for _ in 0..2 {
            warm.recv_timeout(EVENT_TIMEOUT)
                .expect("the good clients talk");
        }
        let silent: Vec<Raw> = (0..3).map(|_| Raw::open(addr)).collect();
        for _ in 0..5 {
            events.opened();
        }
        // One still in its handshake: half a request, then nothing.
        let mut half = Raw::tcp(addr);
        half.write(&upgrade_request(addr, "/", "").as_bytes()[..20]);
        assert!(eventually(EVENT_TIMEOUT, || conn_count(&server) == 6));
        let report = server.shutdown().expect("shutdown");
        for g in good {
            assert_eq!(g.join().unwrap().0, 1001);
        }
        assert_eq!(
            (
                report.connections,
                report.closed_cleanly,
                report.closed_uncleanly,
                report.forced
            ),
            (6, 2, 4, 0),
            "{report:?}"
        );
        drop((silent, half));

        // The close timer and the deadline equal (the case the issue found): whichever
        // ends a silent peer, it is counted once.
        let mut cfg = config(backend);
        cfg.timer_tick = Duration::from_millis(50);
        cfg.close_timeout = Duration::from_secs(1);
        cfg.shutdown_timeout = Duration::from_secs(1);
        let (server, events) = start(cfg);
        let addr = server.local_addr();
        let silent: Vec<Raw> = (0..4).map(|_| Raw::open(addr)).collect();
        for _ in 0..4 {
            events.opened();
        }
        let report = server.shutdown().expect("shutdown");
        assert_eq!(report.connections, 4, "{report:?}");
        assert_eq!(report.closed_cleanly, 0, "{report:?}");
        assert_eq!(
            report.closed_uncleanly + report.forced,
            4,
            "each silent peer in exactly one bucket: {report:?}"
        );
        drop(silent);
    }
}
