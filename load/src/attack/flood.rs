//! A never-reading flood: N peers with 4 KiB receive buffers upgrade, then send message
//! after message of `plan.flood_size` bytes (binary, masked) and never read an echo. The
//! echoes back up in the server, which must pause reading (per connection) and bound what
//! it buffers (per worker) instead of growing until the kernel kills it. At the end the
//! peers close with unread data, which resets the connections.

use std::io::{self, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{Plan, ws};
use crate::{frame, source};

struct Peer {
    stream: std::net::TcpStream,
    /// Bytes of the current message already written.
    at: usize,
    open: bool,
}

/// Runs the mode for `plan.duration`.
pub fn run(addr: SocketAddr, plan: &Plan) -> io::Result<Value> {
    let message = frame::masked_frame(frame::BINARY, &vec![0x5a; plan.flood_size]);
    let mut peers = Vec::new();
    for i in 0..plan.flood {
        let mut s = ws::tcp(addr, source::address(7, i), Some(4096))?;
        ws::upgrade(&mut s, addr, 0xf100d + i as u64)?;
        s.set_nonblocking(true)?;
        peers.push(Peer {
            stream: s,
            at: 0,
            open: true,
        });
    }
    let start = Instant::now();
    let end = start + plan.duration;
    let (mut sent, mut bytes) = (0u64, 0u64);
    let mut closed = 0u64;
    let mut first_error = None;
    while Instant::now() < end {
        let mut progress = false;
        for p in peers.iter_mut().filter(|p| p.open) {
            match p.stream.write(&message[p.at..]) {
                Ok(n) => {
                    progress = true;
                    bytes += n as u64;
                    p.at += n;
                    if p.at == message.len() {
                        p.at = 0;
                        sent += 1;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => {
                    p.open = false;
                    closed += 1;
                    first_error.get_or_insert(format!("write: {e}"));
                }
            }
        }
        if !progress {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    drop(peers);
    let mut v = json!({
        "connections": plan.flood,
        "message_bytes": plan.flood_size,
        "messages_sent": sent,
        "mib_sent": bytes >> 20,
        "closed_by_server": closed,
    });
    if let Some(e) = first_error {
        v["error"] = json!(e);
    }
    Ok(v)
}
