//! The send path's fast cases against the general path they short-cut: `send_fresh`
//! (through `send_message`) against `send_general`, `Arena::stage_frame` against
//! `Arena::stage` of the header `FrameHead::encode` writes, and `after_output`'s early
//! return against `after_output_general`. Two cores are put in the same state, one
//! takes the public entry point and the other the general path, and everything the
//! send or the flush can touch is compared: the result, the connection's flags and
//! phase, the stats, the flush list with each direct piece's bytes, the spill's output
//! in order and its count, the worker's buffered total, the descriptor operations, the
//! reap list, the pool and the handler's callbacks.

use std::sync::{Arc, OnceLock};

use throng_protocol::frame::{FrameHead, HeaderBuf};
use throng_protocol::{DataKind, Message};

use super::super::{Core, Payload, Shared};
use crate::config::{BackendKind, Config};
use crate::conn::*;
use crate::handler::{Decision, Handler, UpgradeRequest};
use crate::output::Arena;
use crate::output::arena::{header_len, short_header};
use crate::stats::WorkerStats;
use crate::sys::Token;
use crate::ws::{SendError, Sent, WebSocket};

fn config(low_water: Option<usize>) -> Config {
    let mut config = Config {
        max_connections: 8,
        ..Config::default()
    };
    if let Some(low) = low_water {
        config.write_low_water = low;
    }
    config
}

fn core(config: &Config) -> Core<()> {
    let peers = Arc::new(Shared {
        backend: (BackendKind::Epoll, String::new()),
        workers: OnceLock::new(),
        per_ip: None,
    });
    Core::new(config, 0, peers)
}

/// An open connection (no descriptor: nothing here reaches a socket).
fn open(core: &mut Core<()>) -> usize {
    let mut c = Conn::new(-1, 7, 1);
    c.phase = Phase::Open;
    c.flags = OPENED;
    c.state = Some(());
    core.conns.insert(c)
}

/// Everything a send or `after_output` can change, by value.
#[derive(Debug, PartialEq)]
struct Snap {
    live: bool,
    flags: u16,
    phase: Option<Phase>,
    stats: WorkerStats,
    dirty: Vec<(Token, Option<Vec<u8>>)>,
    last_direct: usize,
    /// The spill's output in order, its count, its input's length.
    spill: Option<(Vec<u8>, usize, usize)>,
    buffered: usize,
    ops: String,
    broken: Vec<Token>,
    pool: crate::pool::PoolStats,
}

fn snap(core: &Core<()>, key: usize) -> Snap {
    let c = core.conns.get(key);
    Snap {
        live: c.is_some(),
        flags: c.map_or(0, |c| c.flags),
        phase: c.map(|c| c.phase),
        stats: core.stats,
        dirty: core
            .dirty
            .iter()
            .map(|d| (d.token, d.direct.as_ref().map(|p| p.as_slice().to_vec())))
            .collect(),
        last_direct: core.last_direct,
        spill: c.and_then(|c| c.spill.as_ref()).map(|s| {
            let mut out = Vec::new();
            if let Some(head) = &s.out.head {
                out.extend_from_slice(head.as_slice());
            }
            for b in &s.out.queue {
                out.extend_from_slice(b);
            }
            out.extend_from_slice(&s.out.stage);
            (out, s.out_bytes, s.input.len())
        }),
        buffered: core.guards.buffered,
        ops: format!("{:?}", core.ops),
        broken: core.broken.clone(),
        pool: core.pool.stats(),
    }
}

fn payload(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// The bytes a frame must be: `FrameHead::encode`'s header, then the payload.
fn reference_frame(kind: DataKind, p: &[u8]) -> Vec<u8> {
    let head = match kind {
        DataKind::Text => FrameHead::text(p.len() as u64),
        DataKind::Binary => FrameHead::binary(p.len() as u64),
    };
    let mut hb = HeaderBuf::default();
    let mut v = head.encode(&mut hb).to_vec();
    v.extend_from_slice(p);
    v
}

/// States a connection can be in before a send, each set up the same way on both cores.
#[derive(Debug, Clone, Copy)]
enum Before {
    /// Nothing pending.
    Fresh,
    /// A send earlier this turn: a direct piece waits on the flush list.
    Direct,
    /// Two direct sends to two connections, this one's first: its piece is not the last.
    DirectNotLast,
    /// A spill record held for input only (a partial frame).
    Input,
    /// Output waits in the outbox (a slow reader).
    Queued,
    /// A completion backend has the output in flight.
    Sending,
    /// Counted output in flight (spill count, nothing staged).
    InFlight,
    /// The worker's buffer is full.
    WorkerFull,
    /// Over the low mark: `on_drain` owed.
    DrainWanted,
}

const BEFORE: [Before; 9] = [
    Before::Fresh,
    Before::Direct,
    Before::DirectNotLast,
    Before::Input,
    Before::Queued,
    Before::Sending,
    Before::InFlight,
    Before::WorkerFull,
    Before::DrainWanted,
];

fn set_up(core: &mut Core<()>, key: usize, before: Before) {
    match before {
        Before::Fresh => {}
        Before::Direct => {
            let _ = core.send_general(key, DataKind::Text, Payload::Borrowed(b"first"));
        }
        Before::DirectNotLast => {
            let _ = core.send_general(key, DataKind::Text, Payload::Borrowed(b"first"));
            let other = open(core);
            let _ = core.send_general(other, DataKind::Binary, Payload::Borrowed(b"other"));
        }
        Before::Input => core.spill(key).input.extend_from_slice(&[0x81, 0xfe]),
        Before::Queued => {
            core.spill(key).out.stage.extend_from_slice(b"queued");
            core.queued(key, 6);
        }
        Before::Sending => core.conns[key].flags |= SENDING,
        Before::InFlight => {
            core.spill(key).out_bytes = 40;
            core.guards.buffered += 40;
            core.conns[key].flags |= SENDING;
        }
        Before::WorkerFull => core.guards.buffered = core.limits.max_worker_buffered,
        Before::DrainWanted => core.conns[key].flags |= DRAIN_WANTED,
    }
}

/// One send on each path from the same state; panics with the case when they differ.
fn same_send(config: &Config, before: Before, flags: u16, phase: Phase, kind: DataKind, n: usize) {
    let p = payload(n, n as u8);
    let mut fast = core(config);
    let mut general = core(config);
    let kf = open(&mut fast);
    let kg = open(&mut general);
    for (c, k) in [(&mut fast, kf), (&mut general, kg)] {
        set_up(c, k, before);
        c.conns[k].flags |= flags;
        c.conns[k].phase = phase;
    }
    let rf = fast.send_message(kf, kind, Payload::Borrowed(&p));
    let rg = general.send_general(kg, kind, Payload::Borrowed(&p));
    assert_eq!(
        (rf, snap(&fast, kf)),
        (rg, snap(&general, kg)),
        "{before:?} flags {flags:#x} {phase:?} {kind:?} {n} bytes"
    );
}

#[test]
fn fast_and_general_send_stage_the_same_for_every_size() {
    // A low mark of 130: `direct_max` falls inside 0..=200, so both sides of it and of
    // the 125/126 header boundary are covered; and the default (64 KiB).
    for low in [Some(130), None] {
        let config = config(low);
        for before in BEFORE {
            for kind in [DataKind::Text, DataKind::Binary] {
                for n in 0..=200 {
                    same_send(&config, before, 0, Phase::Open, kind, n);
                }
            }
        }
    }
}

#[test]
fn fast_and_general_send_agree_at_the_direct_max_boundary() {
    for low in [130, 64 << 10] {
        let config = config(Some(low));
        let direct_max = core(&config).direct_max;
        let lo = direct_max.saturating_sub(14);
        for n in lo..=direct_max + 2 {
            for before in [
                Before::Fresh,
                Before::Direct,
                Before::Input,
                Before::WorkerFull,
            ] {
                same_send(&config, before, 0, Phase::Open, DataKind::Binary, n);
            }
        }
        // The largest frame that fits is a direct piece; one byte more goes to the spill.
        let fits = (lo..=direct_max)
            .rev()
            .find(|&n| n + header_len(n) <= direct_max)
            .expect("a size fits");
        for (n, direct) in [(fits, true), (fits + 1, false)] {
            let mut c = core(&config);
            let k = open(&mut c);
            let p = payload(n, 3);
            let sent = c.send_message(k, DataKind::Binary, Payload::Borrowed(&p));
            assert!(sent.is_ok());
            // Past the low mark the spilled frame asks for `on_drain`: `Queued`.
            assert_eq!(
                sent == Ok(Sent::Written),
                direct,
                "{n} bytes, low mark {low}"
            );
            assert_eq!(c.conns[k].has(DIRECT), direct, "{n} bytes, low mark {low}");
            let staged = match &c.dirty[0].direct {
                Some(piece) => piece.as_slice().to_vec(),
                None => snap(&c, k).spill.expect("staged in the spill").0,
            };
            assert_eq!(staged, reference_frame(DataKind::Binary, &p));
        }
    }
}

#[test]
fn fast_and_general_send_agree_in_every_flag_state() {
    // Every subset of the flags a send looks at, in every phase: the fast path either
    // declines or does what the general path does.
    const BITS: [u16; 9] = [
        CLOSE_SENT,
        BROKEN,
        DIRTY,
        DIRECT,
        SENDING,
        DEFLATE,
        PLAIN_OUT,
        DRAIN_WANTED,
        READ_PAUSED,
    ];
    let phases = [
        Phase::Handshake,
        Phase::Http,
        Phase::Open,
        Phase::Closing,
        Phase::Draining,
    ];
    let config = config(Some(130));
    for mask in 0..1u32 << BITS.len() {
        let flags = BITS
            .iter()
            .enumerate()
            .filter(|(i, _)| mask & (1 << i) != 0)
            .fold(0, |f, (_, b)| f | b);
        for phase in phases {
            for before in [Before::Fresh, Before::Direct, Before::Input] {
                for n in [0, 64, 126] {
                    same_send(&config, before, flags, phase, DataKind::Text, n);
                }
            }
        }
    }
}

#[test]
fn a_burst_to_one_connection_is_the_same_on_both_paths() {
    // Sends in a row (the first direct, the next extending it or joining the outbox),
    // interleaved with another connection's: same bytes in the same order.
    let config = config(Some(300));
    for n in (0..=200).step_by(7) {
        let mut fast = core(&config);
        let mut general = core(&config);
        for (c, use_fast) in [(&mut fast, true), (&mut general, false)] {
            let a = open(c);
            let b = open(c);
            for i in 0..6 {
                let key = if i % 3 == 2 { b } else { a };
                let p = payload(n + i, i as u8);
                let kind = if i % 2 == 0 {
                    DataKind::Text
                } else {
                    DataKind::Binary
                };
                let r = if use_fast {
                    c.send_message(key, kind, Payload::Borrowed(&p))
                } else {
                    c.send_general(key, kind, Payload::Borrowed(&p))
                };
                assert!(r.is_ok());
            }
        }
        for key in [0, 1] {
            assert_eq!(
                snap(&fast, key),
                snap(&general, key),
                "{n} bytes, conn {key}"
            );
        }
    }
}

#[test]
fn stage_frame_writes_the_encoded_header_and_payload() {
    let mut arena = Arena::default();
    let mut held = Vec::new();
    let sizes = (0..=300).chain(65_520..=65_535).chain([65_536 - 4]);
    for n in sizes {
        let p = payload(n, 9);
        for kind in [DataKind::Text, DataKind::Binary] {
            let b0 = super::first_byte(kind);
            let want = reference_frame(kind, &p);
            assert_eq!(short_header(b0, n).1, header_len(n));
            assert_eq!(
                &short_header(b0, n).0[..header_len(n)],
                &want[..header_len(n)]
            );
            if want.len() > crate::output::CHUNK {
                continue;
            }
            let piece = arena.stage_frame(b0, &p);
            assert_eq!(piece.as_slice(), &want[..], "{kind:?} {n}");
            let general = arena.stage(&[&want[..want.len() - n], &p]);
            assert_eq!(general.as_slice(), piece.as_slice());
            // Keep some pieces alive so that chunks fill and rotate under them.
            if n % 5 == 0 {
                held.push((piece, want));
            }
        }
    }
    for (piece, want) in &held {
        assert_eq!(piece.as_slice(), &want[..]);
    }
    // The 10-byte form (never a direct piece: it needs more than a chunk) as encoded.
    for n in [65_536usize, 1 << 20, u32::MAX as usize + 7] {
        let mut hb = HeaderBuf::default();
        let want = FrameHead::binary(n as u64).encode(&mut hb).to_vec();
        assert_eq!(&short_header(0x82, n).0[..], &want[..]);
    }
}

/// Counts callbacks; `on_drain` sends, as a producer refilling its buffer would.
#[derive(Default)]
struct Recorder {
    drains: usize,
    closes: usize,
}

impl Handler for Recorder {
    type State = ();

    fn on_upgrade<'r>(&mut self, _req: &UpgradeRequest<'r>) -> Decision<'r, ()> {
        Decision::reject(400)
    }

    fn on_message(&mut self, _ws: &mut WebSocket<'_, ()>, _message: Message<'_>) {}

    fn on_drain(&mut self, ws: &mut WebSocket<'_, ()>) {
        self.drains += 1;
        let _ = ws.send(Message::Text("more"));
    }

    fn on_close(
        &mut self,
        _ws: &mut WebSocket<'_, ()>,
        _code: throng_protocol::CloseCode,
        _r: &str,
    ) {
        self.closes += 1;
    }
}

#[test]
fn after_output_early_return_matches_the_general_path() {
    const BITS: [u16; 8] = [
        BROKEN,
        READ_PAUSED,
        DRAIN_WANTED,
        OPENED,
        PEER_EOF,
        CLOSE_SENT,
        DIRECT,
        SENDING,
    ];
    let phases = [
        Phase::Handshake,
        Phase::Http,
        Phase::Open,
        Phase::Closing,
        Phase::Draining,
    ];
    let config = config(None);
    let mut early = 0;
    for mask in 0..1u32 << BITS.len() {
        let flags = BITS
            .iter()
            .enumerate()
            .filter(|(i, _)| mask & (1 << i) != 0)
            .fold(0, |f, (_, b)| f | b);
        for phase in phases {
            // 0: no spill; 1: an idle spill; 2: counted output; 3: input held.
            for spill in 0..4 {
                for other_broken in [false, true] {
                    let mut cores = [core(&config), core(&config), core(&config), core(&config)];
                    let mut handlers: [Recorder; 4] = Default::default();
                    let mut key = 0;
                    for c in &mut cores {
                        key = open(c);
                        let other = open(c);
                        c.conns[key].flags = flags;
                        c.conns[key].phase = phase;
                        match spill {
                            1 => {
                                c.spill(key);
                            }
                            2 => {
                                c.spill(key).out_bytes = 10;
                                c.guards.buffered = 10;
                            }
                            3 => c.spill(key).input.extend_from_slice(b"\x81"),
                            _ => {}
                        }
                        if other_broken {
                            c.broke(other);
                        }
                    }
                    let [a, b, c, d] = &mut cores;
                    let [ha, hb, hc, hd] = &mut handlers;
                    // A completion backend's report of a send that ended: `sent` against
                    // its steps done the general way.
                    c.sent(hc, key, Ok(3), true);
                    d.conns[key].flags &= !SENDING;
                    if d.conns[key].spill.is_some() {
                        d.sent_counted(key, 3, true);
                    }
                    d.after_output_general(hd, key);
                    let case = format!(
                        "sent: flags {flags:#x} {phase:?} spill {spill} other {other_broken}"
                    );
                    assert_eq!(snap(c, key), snap(d, key), "{case}");
                    assert_eq!((hc.drains, hc.closes), (hd.drains, hd.closes), "{case}");
                    let took_early = {
                        let c = &a.conns[key];
                        c.flags & (BROKEN | READ_PAUSED | DRAIN_WANTED) == 0
                            && c.spill.is_none()
                            && !matches!(c.phase, Phase::Http | Phase::Draining)
                            && a.broken.is_empty()
                    };
                    assert_eq!(
                        took_early,
                        super::super::flush::nothing_after_output(&a.conns[key], &a.broken)
                    );
                    early += usize::from(took_early);
                    a.after_output(ha, key);
                    b.after_output_general(hb, key);
                    let case =
                        format!("flags {flags:#x} {phase:?} spill {spill} other {other_broken}");
                    assert_eq!(snap(a, key), snap(b, key), "{case}");
                    assert_eq!((ha.drains, ha.closes), (hb.drains, hb.closes), "{case}");
                }
            }
        }
    }
    assert!(early > 0, "the early return was exercised");
}

#[test]
fn refused_sends_are_the_same_on_both_paths() {
    // The connection's cap: output buffered beyond `max_buffered` refuses the next send
    // on either path (the fast path declines: something is buffered).
    let mut config = config(Some(130));
    config.max_buffered = 200;
    for n in [0, 64, 126, 200] {
        let mut fast = core(&config);
        let mut general = core(&config);
        let kf = open(&mut fast);
        let kg = open(&mut general);
        for (c, k) in [(&mut fast, kf), (&mut general, kg)] {
            c.spill(k).out.stage.extend_from_slice(&[0; 150]);
            c.queued(k, 150);
        }
        let p = payload(n, 1);
        let rf = fast.send_message(kf, DataKind::Binary, Payload::Borrowed(&p));
        let rg = general.send_general(kg, DataKind::Binary, Payload::Borrowed(&p));
        assert_eq!(rf, rg);
        assert_eq!(snap(&fast, kf), snap(&general, kg));
        let over = 150 + n + header_len(n) > 200;
        assert_eq!(rf == Err(SendError::Backpressure), over, "{n} bytes");
    }
}

#[test]
fn the_fast_path_takes_the_common_case_and_only_it() {
    let config = config(Some(130));
    for n in 0..=200 {
        let fits = n + header_len(n) <= 130;
        let p = payload(n, 5);
        let mut c = core(&config);
        let k = open(&mut c);
        assert_eq!(c.send_fresh(k, DataKind::Text, &p), fits, "{n} bytes");
        // A second send in the same turn is the general path's (it extends the piece).
        assert!(!c.send_fresh(k, DataKind::Text, &p));
        for before in &BEFORE[1..] {
            let mut c = core(&config);
            let k = open(&mut c);
            set_up(&mut c, k, *before);
            let taken = c.send_fresh(k, DataKind::Binary, &p);
            // Held input and a full worker buffer leave the connection's output fresh.
            let fresh = matches!(before, Before::Input | Before::WorkerFull);
            assert_eq!(taken, fits && fresh, "{before:?} {n}");
        }
    }
}
