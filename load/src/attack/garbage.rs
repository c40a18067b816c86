//! Garbage after the handshake: connections upgrade properly, then send one of
//! [`KINDS`] of malformed input. Each is owed a close frame with a protocol error code
//! (1002, 1007 for bad UTF-8, 1009 for a length beyond the limit) and the end of the
//! connection; one the server leaves open for [`WAIT`] is counted as `left_open`.
//! `plan.threads` threads repeat it until the time is up.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::ws::{self, Ending};
use super::{Plan, ws::ending};
use crate::{frame, source, upgrade::splitmix};

/// How long the server may take to end a connection that sent garbage.
const WAIT: Duration = Duration::from_secs(3);

/// The kinds of garbage, by name.
pub const KINDS: [&str; 10] = [
    "random bytes (mask bit clear)",
    "unmasked text frame",
    "reserved opcode 3",
    "RSV1 without an extension",
    "64-bit length with the top bit set",
    "text that is not UTF-8",
    "ping with 126 bytes",
    "continuation without a start",
    "close with code 999",
    "length in a longer form than needed",
];

/// The bytes of garbage kind `k`, varied by `seed`.
fn garbage(k: usize, seed: u64) -> Vec<u8> {
    let masked = |first: u8, payload: &[u8]| {
        let mut f = frame::masked_frame(frame::TEXT, payload);
        f[0] = first;
        f
    };
    match k {
        0 => {
            let mut x = seed;
            let mut v: Vec<u8> = (0..4096)
                .map(|_| {
                    x = splitmix(x);
                    x as u8
                })
                .collect();
            v[1] &= 0x7f;
            v
        }
        1 => vec![0x81, 0x05, b'h', b'e', b'l', b'l', b'o'],
        2 => masked(0x83, b"abc"),
        3 => masked(0xc1, b"abc"),
        4 => vec![0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4],
        5 => masked(0x81, &[0xff, 0xfe, 0xc0, 0x80]),
        6 => {
            let mut f = frame::masked_frame(frame::TEXT, &[b'p'; 126]);
            f[0] = 0x89;
            f
        }
        7 => masked(0x80, b"tail"),
        8 => {
            let mut f = frame::masked_frame(frame::TEXT, &999u16.to_be_bytes());
            f[0] = 0x88;
            f
        }
        _ => {
            // 5 bytes of payload announced in the 16-bit form.
            let mut f = vec![0x81, 0x80 | 126, 0, 5];
            f.extend_from_slice(&frame::MASK);
            f.extend(
                b"hello"
                    .iter()
                    .enumerate()
                    .map(|(i, b)| b ^ frame::MASK[i & 3]),
            );
            f
        }
    }
}

#[derive(Default)]
struct Tally {
    sent: u64,
    /// By kind, then by ending ("1002", "eof", "open").
    endings: BTreeMap<&'static str, BTreeMap<String, u64>>,
    failures: u64,
    first_error: Option<String>,
}

/// Runs the mode for `plan.duration`.
pub fn run(addr: SocketAddr, plan: &Plan) -> io::Result<Value> {
    let end = Instant::now() + plan.duration;
    let tally = Mutex::new(Tally::default());
    std::thread::scope(|s| {
        for t in 0..plan.threads {
            let tally = &tally;
            s.spawn(move || {
                let mut i = t;
                while Instant::now() < end {
                    let k = i % KINDS.len();
                    let r = ws::tcp(addr, source::address(61, i), None).and_then(|mut c| {
                        let rest = ws::upgrade(&mut c, addr, 0x6a00_0000 + i as u64)?;
                        c.write_all(&garbage(k, i as u64))?;
                        Ok(ending(&mut c, rest, WAIT))
                    });
                    let mut t = tally.lock().unwrap_or_else(|p| p.into_inner());
                    match r {
                        Ok(e) => {
                            t.sent += 1;
                            let e = match e {
                                Ending::Close(c) => c.to_string(),
                                Ending::Eof => "eof".into(),
                                Ending::Open => "open".into(),
                            };
                            *t.endings.entry(KINDS[k]).or_default().entry(e).or_default() += 1;
                        }
                        Err(e) => {
                            t.failures += 1;
                            t.first_error.get_or_insert(e.to_string());
                        }
                    }
                    i += plan.threads;
                }
            });
        }
    });
    let t = tally.into_inner().unwrap_or_else(|p| p.into_inner());
    let left_open: u64 = t.endings.values().filter_map(|m| m.get("open")).sum();
    let mut v = json!({
        "threads": plan.threads,
        "connections": t.sent,
        "left_open": left_open,
        "failures": t.failures,
        "endings": t.endings,
    });
    if let Some(e) = t.first_error {
        v["error"] = json!(e);
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_bytes() {
        for (k, name) in KINDS.iter().enumerate() {
            assert!(garbage(k, 1).len() >= 6, "{name}");
        }
        assert_eq!(garbage(0, 1)[1] & 0x80, 0);
    }
}
