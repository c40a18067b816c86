//! Timers: the idle timeout, the handshake timeout (slowloris) and the pong deadline that
//! detects a half-open peer, on each backend. Timing is the subject here, so the bounds
//! are generous: a deadline fires up to one tick late, and CI machines are slow.

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use common::*;

fn timer_config(backend: throng_engine::BackendChoice) -> throng_engine::Config {
    let mut cfg = config(backend);
    cfg.timer_tick = Duration::from_millis(50);
    cfg.ping_interval = None;
    cfg
}

#[test]
fn the_idle_timeout_closes_a_silent_connection_and_spares_a_talking_one() {
    for backend in backends() {
        let mut cfg = timer_config(backend);
        cfg.idle_timeout = Some(Duration::from_secs(1));
        let (server, events) = start(cfg);
        let addr = server.local_addr();
        let started = Instant::now();
        let mut silent = Raw::open(addr);
        let silent_id = events.opened();
        let mut talker = Raw::open(addr);
        let talker_id = events.opened();

        // The talker sends something every 300 ms, for longer than the idle timeout.
        let talking = std::thread::spawn(move || {
            for i in 0..6u8 {
                std::thread::sleep(Duration::from_millis(300));
                talker.send(true, OP_TEXT, &[b'0' + i]);
                assert_eq!(talker.read_frame().payload, [b'0' + i]);
            }
            talker
        });

        // The silent one gets a close frame (1001) after about a second.
        let (code, reason) = silent.read_close().expect("a close code");
        let waited = started.elapsed();
        assert_eq!(code, 1001, "idle close code (reason {reason:?})");
        assert!(
            waited >= Duration::from_millis(900) && waited < Duration::from_secs(4),
            "idle close after {waited:?} with a 1 s idle timeout"
        );
        silent.send_close(1001, "");
        silent.expect_eof();
        assert_eq!(events.closed_id(silent_id).0, 1001);

        let mut talker = talking.join().unwrap();
        // Spared while talking; once silent it goes the same way.
        let (code, _) = talker.read_close().expect("a close code");
        assert_eq!(code, 1001);
        talker.send_close(1001, "");
        talker.expect_eof();
        assert_eq!(events.closed_id(talker_id).0, 1001);
        assert!(
            started.elapsed() >= Duration::from_millis(2500),
            "the talker was closed while talking"
        );
        assert_eq!(stats(&server).timed_out, 2);
        server.shutdown().unwrap();
    }
}

#[test]
fn a_slowloris_is_cut_at_the_handshake_timeout_while_others_connect() {
    for backend in backends() {
        let mut cfg = timer_config(backend);
        cfg.handshake_timeout = Duration::from_secs(3);
        let (server, events) = start(cfg);
        let addr = server.local_addr();

        // Half a request, then nothing.
        let started = Instant::now();
        let mut slow = Raw::tcp(addr);
        let request = upgrade_request(addr, "/", "");
        slow.write(&request.as_bytes()[..request.len() / 2]);
        // Another one dribbles a byte now and then: it never completes in time either (40
        // bytes, one every 100 ms, of a longer request).
        let mut dribbler = Raw::tcp(addr);
        let dribbling = std::thread::spawn(move || {
            for b in request.as_bytes()[..40].iter() {
                std::thread::sleep(Duration::from_millis(100));
                if dribbler.stream.write_all(std::slice::from_ref(b)).is_err() {
                    break;
                }
            }
            dribbler
        });

        // Meanwhile a normal client completes its handshake and talks.
        let mut ws = connect(addr, "/");
        ws.send(tungstenite::Message::text("unaffected")).unwrap();
        assert_eq!(read_data(&mut ws), tungstenite::Message::text("unaffected"));
        events.opened();
        // Event-driven rather than timed: the slow ones are still connected, so the normal
        // client did not wait for them to be cut (a loaded CI machine may be slow, but not
        // by the 3 s of the handshake timeout).
        assert!(
            conn_count(&server) >= 2,
            "the normal handshake was held up ({:?})",
            started.elapsed()
        );

        // The slow ones are cut without a response, after about three seconds.
        slow.expect_closed();
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(2900) && waited < Duration::from_secs(8),
            "slowloris cut after {waited:?} with a 3 s handshake timeout"
        );
        let mut dribbler = dribbling.join().unwrap();
        dribbler.expect_closed();
        assert_eq!(
            dribbler.pending(),
            0,
            "no response to an incomplete request"
        );

        // The normal client is still fine.
        ws.send(tungstenite::Message::text("still")).unwrap();
        assert_eq!(read_data(&mut ws), tungstenite::Message::text("still"));
        let s = stats(&server);
        assert_eq!((s.timed_out, s.opened), (2, 1), "{s:?}");
        assert_eq!(conn_count(&server), 1);
        server.shutdown().unwrap();
    }
}

#[test]
fn a_half_open_peer_is_dropped_at_the_pong_deadline() {
    for backend in backends() {
        let mut cfg = timer_config(backend);
        cfg.ping_interval = Some(Duration::from_millis(300));
        cfg.pong_timeout = Duration::from_millis(300);
        let (server, events) = start(cfg);
        // Completes the handshake, then neither reads nor writes anything: the stand-in
        // for a peer whose cable was pulled.
        let started = Instant::now();
        let mut raw = Raw::open(server.local_addr());
        let id = events.opened();
        let (got, code, reason) = events.closed();
        let waited = started.elapsed();
        assert_eq!(got, id);
        assert_eq!(code, 1006, "on_close code (reason {reason:?})");
        assert!(
            waited >= Duration::from_millis(500) && waited < Duration::from_secs(4),
            "dropped {waited:?} after opening, with ping 300 ms + pong 300 ms"
        );
        // What the peer would have seen had it listened: a ping, then the end (no close
        // frame: a half-open peer cannot hear one).
        let f = raw.read_frame();
        assert_eq!(f.opcode, OP_PING, "{f:?}");
        raw.expect_closed();
        let s = stats(&server);
        assert_eq!((s.timed_out, s.closed_abnormally), (1, 1), "{s:?}");
        server.shutdown().unwrap();
    }
}

#[test]
fn more_connections_due_in_one_tick_than_a_turn_visits_are_all_pinged() {
    for backend in backends() {
        let mut cfg = timer_config(backend);
        // One coarse tick: the connections opened within it are due in the same bucket,
        // several hundred per worker, more than one turn of the run loop visits.
        cfg.timer_tick = Duration::from_secs(1);
        cfg.ping_interval = Some(Duration::from_secs(1));
        cfg.pong_timeout = Duration::from_secs(60);
        let (server, _events) = start(cfg);
        let mut clients: Vec<_> = (0..800)
            .map(|_| connect(server.local_addr(), "/"))
            .collect();
        for ws in &mut clients {
            match ws.read().expect("a ping") {
                tungstenite::Message::Ping(p) => assert!(p.is_empty()),
                other => panic!("expected a ping, got {other:?}"),
            }
            ws.flush().unwrap(); // the queued pong
        }
        let s = stats(&server);
        assert_eq!(
            (s.opened, s.timed_out, s.closed_abnormally),
            (800, 0, 0),
            "{s:?}"
        );
        server.shutdown().unwrap();
    }
}
