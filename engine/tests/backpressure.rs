//! Output backpressure: a slow reader pauses the server's reading from it (bounded memory,
//! nothing lost), and the `max_buffered` cap with the Drop and Close policies, on each
//! backend.

mod common;

use std::time::Duration;

use common::*;
use throng_engine::{Backpressure, CloseCode, SendError, Sent};

const MESSAGE: usize = 64 << 10;
const MESSAGES: usize = 512; // 32 MiB in all

/// Message `i` of the slow-reader test: its index, then bytes determined by it.
fn message(i: usize) -> Vec<u8> {
    let mut m = pattern(1000 + i as u64, MESSAGE);
    m[..8].copy_from_slice(&(i as u64).to_le_bytes());
    m
}

#[test]
fn a_slow_reader_pauses_reading_with_bounded_memory_and_loses_nothing() {
    for backend in backends() {
        let cfg = config(backend);
        let high_water = cfg.write_high_water;
        // Reading pauses above the high mark and resumes only at the low mark, so a
        // backlog above the low mark with a stalled writer means reading is paused (a
        // completion backend's backlog shrinks below the high mark as sends complete).
        let low_water = cfg.write_low_water;
        let recv_buffer = cfg.recv_buffer;
        let (server, events) = start(cfg);
        let mut raw = Raw::open(server.local_addr());
        let id = events.opened();

        // The writer sends everything without reading; it blocks when the server stops
        // reading (the kernel buffers fill up).
        let mut writer = raw.stream.try_clone().unwrap();
        writer
            .set_write_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        let (progress_tx, progress) = std::sync::mpsc::channel();
        let writing = std::thread::spawn(move || -> std::io::Result<()> {
            use std::io::Write;
            for i in 0..MESSAGES {
                let frame = encode(true, OP_BINARY, &message(i), Some(MASK));
                writer.write_all(&frame)?;
                let _ = progress_tx.send(i + 1);
            }
            Ok(())
        });

        // Wait until the server's output is backed up (reading paused) and the
        // writer has stalled: reading from this connection is paused.
        let handle = server.handle();
        let buffered = move || {
            let (tx, rx) = std::sync::mpsc::channel();
            handle.post(id.worker as usize, move |_, conns| {
                let _ = tx.send(conns.get(id).map(|ws| ws.buffered_amount()));
            });
            rx.recv_timeout(EVENT_TIMEOUT).unwrap()
        };
        assert!(
            eventually(Duration::from_secs(10), || buffered()
                .is_some_and(|b| b > low_water)),
            "the server's output never backed up"
        );
        let mut sent = 0;
        let mut stalled_rounds = 0;
        while stalled_rounds < 3 {
            std::thread::sleep(Duration::from_millis(100));
            let now = progress.try_iter().last().unwrap_or(sent);
            if now == sent {
                stalled_rounds += 1;
            } else {
                stalled_rounds = 0;
                sent = now;
            }
            assert!(
                sent < MESSAGES,
                "the writer was never slowed down: the server read all 32 MiB from a client \
                 that does not read, and buffers {:?} bytes for it (high water {high_water})",
                buffered()
            );
        }
        let held = buffered().expect("the connection is open");
        // The kernel holds some of it; the server holds at most the high-water mark
        // plus what one read brought in (echoed before the pause took effect).
        let bound = high_water + 2 * recv_buffer + 4 * (MESSAGE + 16);
        assert!(
            held <= bound,
            "the server buffers {held} bytes for a reader that does not read (bound {bound})"
        );

        // Now read everything: all 512 messages, in order, byte-exact.
        for i in 0..MESSAGES {
            let f = raw.read_frame();
            assert_eq!((f.fin, f.opcode), (true, OP_BINARY), "message {i}");
            assert_eq!(f.payload.len(), MESSAGE, "message {i}");
            let got = u64::from_le_bytes(f.payload[..8].try_into().unwrap());
            assert_eq!(got, i as u64, "messages arrive in order");
            assert!(f.payload == message(i), "message {i} differs");
        }
        writing
            .join()
            .unwrap()
            .expect("the writer sends everything");

        // Nothing was refused, the peak stayed bounded, and on_drain fired.
        let (tx, rx) = std::sync::mpsc::channel();
        server.handle().post(id.worker as usize, move |_, conns| {
            let dropped = conns.stats().dropped;
            let mut ws = conns.get(id).expect("still open");
            let state = ws.state();
            let _ = tx.send((dropped, state.max_buffered, state.drains, state.messages));
        });
        let (dropped, peak, drains, messages) = rx.recv_timeout(EVENT_TIMEOUT).unwrap();
        assert_eq!(dropped, 0, "messages refused by the cap");
        assert_eq!(messages, MESSAGES);
        assert!(
            peak <= bound,
            "peak buffered output {peak} for a slow reader (bound {bound})"
        );
        assert!(drains >= 1, "on_drain never fired");
        raw.send_close(1000, "");
        assert_eq!(raw.read_close(), Some((1000, String::new())));
        raw.expect_eof();
        server.shutdown().unwrap();
    }
}

#[test]
fn the_drop_policy_refuses_sends_over_the_cap_and_keeps_the_connection() {
    for backend in backends() {
        let mut cfg = config(backend);
        cfg.max_buffered = 1 << 20;
        cfg.backpressure = Backpressure::Drop;
        let (server, events) = start(cfg);
        let mut raw = Raw::open(server.local_addr());
        events.opened();
        // 200 messages of 64 KiB sent at once into a client that is not reading.
        raw.send(true, OP_TEXT, format!("!flood 200 {MESSAGE}").as_bytes());
        let report = events.flood();
        let accepted: Vec<usize> = (0..200).filter(|&i| report.results[i].is_ok()).collect();
        let refused = report
            .results
            .iter()
            .filter(|r| **r == Err(SendError::Backpressure))
            .count();
        assert!(refused > 0, "nothing refused: {:?}", report.results);
        assert_eq!(
            accepted.len() + refused,
            200,
            "every send either went through or was refused for backpressure"
        );
        assert!(
            report.results.contains(&Ok(Sent::Queued)),
            "the client's buffer never filled"
        );
        assert!(
            report.max_buffered <= 1 << 20,
            "buffered {} over the 1 MiB cap",
            report.max_buffered
        );
        // The accepted ones arrive, in order, intact; the refused ones do not.
        for &i in &accepted {
            let f = raw.read_frame();
            assert_eq!(f.payload.len(), MESSAGE);
            assert_eq!(
                u64::from_le_bytes(f.payload[..8].try_into().unwrap()),
                i as u64
            );
        }
        assert_eq!(stats(&server).dropped, refused as u64);
        // Still open.
        raw.send(true, OP_TEXT, b"still here");
        assert_eq!(raw.read_frame().payload, b"still here");
        assert_eq!(open_count(&server), 1);
        assert!(
            events
                .drain_now()
                .iter()
                .all(|e| !matches!(e, Ev::Close { .. }))
        );
        server.shutdown().unwrap();
    }
}

#[test]
fn the_close_policy_closes_with_its_code_when_the_cap_is_hit() {
    for backend in backends() {
        let mut cfg = config(backend);
        cfg.max_buffered = 1 << 20;
        cfg.backpressure = Backpressure::Close(CloseCode::POLICY);
        let (server, events) = start(cfg);
        let mut raw = Raw::open(server.local_addr());
        let id = events.opened();
        raw.send(true, OP_TEXT, format!("!flood 200 {MESSAGE}").as_bytes());
        let report = events.flood();
        let first_refused = report
            .results
            .iter()
            .position(|r| r.is_err())
            .expect("a send was refused");
        assert!(report.results[..first_refused].iter().all(|r| r.is_ok()));
        assert_eq!(report.results[first_refused], Err(SendError::Backpressure));
        assert!(
            report.results[first_refused + 1..]
                .iter()
                .all(|r| *r == Err(SendError::Closed)),
            "after the cap closed the connection, sends report Closed"
        );
        // What was accepted arrives, then the close frame with 1008.
        for i in 0..first_refused {
            let f = raw.read_frame();
            assert_eq!(
                u64::from_le_bytes(f.payload[..8].try_into().unwrap()),
                i as u64
            );
        }
        let (code, _reason) = raw.read_close().expect("a close code");
        assert_eq!(code, 1008);
        raw.send_close(1008, "");
        raw.expect_eof();
        assert_eq!(events.closed_id(id).0, 1008);
        assert_eq!(stats(&server).dropped, 1);
        server.shutdown().unwrap();
    }
}
