//! A connect storm: TCP connections opened as fast as one thread can, up to 500 per
//! 10 ms, each closed (FIN, nothing sent) 200 ms later, so a few thousand are pending at
//! any time, until the time is up. The server accepts each and must let it go without
//! cost; the canary must still get in.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::Plan;
use crate::source;

/// How long each connection is held before it is closed.
const HOLD: Duration = Duration::from_millis(200);

/// Runs the mode for `plan.duration`.
pub fn run(addr: SocketAddr, plan: &Plan) -> io::Result<Value> {
    let start = Instant::now();
    let end = start + plan.duration;
    let mut held: VecDeque<(Instant, mio::net::TcpStream)> = VecDeque::new();
    let (mut connects, mut failures) = (0u64, 0u64);
    let mut most_held = 0usize;
    let mut first_error = None;
    while Instant::now() < end {
        let now = Instant::now();
        while held
            .front()
            .is_some_and(|(at, _)| now.duration_since(*at) >= HOLD)
        {
            held.pop_front();
        }
        for _ in 0..500 {
            match source::connect(addr, source::address(113, connects as usize)) {
                Ok(s) => {
                    connects += 1;
                    held.push_back((now, s));
                }
                Err(e) => {
                    failures += 1;
                    first_error.get_or_insert(format!("connect: {e}"));
                    break;
                }
            }
        }
        most_held = most_held.max(held.len());
        std::thread::sleep(Duration::from_millis(10));
    }
    let seconds = start.elapsed().as_secs_f64();
    drop(held);
    let mut v = json!({
        "connects": connects,
        "per_s": (connects as f64 / seconds).round() as u64,
        "most_held": most_held,
        "failures": failures,
    });
    if let Some(e) = first_error {
        v["error"] = json!(e);
    }
    Ok(v)
}
