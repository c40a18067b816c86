//! An RST storm: connections upgrade, send a 64 KiB message (so the server has an echo
//! to buffer and write) and are closed with `SO_LINGER` 0, which resets them at once
//! instead of a FIN; repeated by `plan.threads` threads until the time is up.

use std::io::{self, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{Plan, ws};
use crate::{frame, source};

/// Runs the mode for `plan.duration`.
pub fn run(addr: SocketAddr, plan: &Plan) -> io::Result<Value> {
    let message = frame::masked_frame(frame::BINARY, &[0x33; 64 << 10]);
    let end = Instant::now() + plan.duration;
    let (resets, failures) = (AtomicU64::new(0), AtomicU64::new(0));
    let first_error = std::sync::Mutex::new(None::<String>);
    std::thread::scope(|s| {
        for t in 0..plan.threads {
            let (message, resets, failures, first_error) =
                (&message, &resets, &failures, &first_error);
            s.spawn(move || {
                let mut i = t;
                while Instant::now() < end {
                    let from = source::address(31, i);
                    let r = ws::websocket(addr, from, 0x9570_0000 + i as u64).and_then(|mut c| {
                        // Every other one resets before its message is all written.
                        let cut = if i % 2 == 0 { message.len() } else { 1000 };
                        c.write_all(&message[..cut])?;
                        socket2::SockRef::from(&c).set_linger(Some(Duration::ZERO))?;
                        Ok(())
                    });
                    match r {
                        Ok(()) => resets.fetch_add(1, Ordering::Relaxed),
                        Err(e) => {
                            let mut f = first_error.lock().unwrap_or_else(|p| p.into_inner());
                            f.get_or_insert(e.to_string());
                            failures.fetch_add(1, Ordering::Relaxed)
                        }
                    };
                    i += plan.threads;
                }
            });
        }
    });
    let seconds = plan.duration.as_secs_f64();
    let resets = resets.into_inner();
    let mut v = json!({
        "threads": plan.threads,
        "resets": resets,
        "per_s": (resets as f64 / seconds).round() as u64,
        "failures": failures.into_inner(),
    });
    if let Some(e) = first_error.into_inner().unwrap_or_else(|p| p.into_inner()) {
        v["error"] = json!(e);
    }
    Ok(v)
}
