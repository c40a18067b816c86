//! The canary: one well-behaved client that sends a 16-byte text message every 100 ms
//! while a mode attacks the server and times each echo. It reports the worst round trip,
//! the messages lost (no echo within [`LOST_AFTER`], or in flight when the connection
//! broke) and the times it had to reconnect. If the server serves its good clients
//! through an attack, this stays flat.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::ws;
use crate::frame::{self, Event, Parser};

/// Interval between the canary's messages.
pub const EVERY: Duration = Duration::from_millis(100);
/// A message whose echo has not come back after this is lost.
pub const LOST_AFTER: Duration = Duration::from_secs(5);

/// What the canary saw.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Messages sent.
    pub sent: u64,
    /// Echoes received (and matching).
    pub echoed: u64,
    /// Messages lost.
    pub lost: u64,
    /// Worst round trip, seconds.
    pub worst: f64,
    /// Connections after the first (each one follows a broken one).
    pub reconnects: u64,
    /// Attempts to connect that failed.
    pub connect_failures: u64,
    /// The first problem, if any.
    pub error: Option<String>,
}

impl Report {
    /// As JSON.
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "sent": self.sent,
            "echoed": self.echoed,
            "lost": self.lost,
            "worst_rtt_ms": (self.worst * 1e4).round() / 10.0,
            "reconnects": self.reconnects,
            "connect_failures": self.connect_failures,
        });
        if let Some(e) = &self.error {
            v["error"] = json!(e);
        }
        v
    }
}

/// A running canary.
#[derive(Debug)]
pub struct Canary {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Report>>,
}

impl Canary {
    /// Starts echoing against `target`; returns once the first echo came back (or failed
    /// to within five seconds, which the report then shows).
    pub fn start(target: SocketAddr) -> Canary {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || run(target, &flag, tx));
        let _ = rx.recv_timeout(Duration::from_secs(5));
        Canary {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops (after the echoes in flight came back or were lost) and reports.
    pub fn stop(mut self) -> Report {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_else(|| Report {
                error: Some("the canary thread panicked".into()),
                ..Report::default()
            })
    }
}

fn run(target: SocketAddr, stop: &AtomicBool, first: std::sync::mpsc::Sender<()>) -> Report {
    let mut r = Report::default();
    let mut seq = 0u64;
    let mut conns = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let stream = ws::websocket(target, Ipv4Addr::LOCALHOST, 0xca0a_0000 + conns);
        let mut stream = match stream {
            Ok(s) => s,
            Err(e) => {
                r.connect_failures += 1;
                r.error.get_or_insert(format!("connect: {e}"));
                std::thread::sleep(EVERY);
                continue;
            }
        };
        if conns > 0 {
            r.reconnects += 1;
        }
        conns += 1;
        let mut in_flight = VecDeque::new();
        let e = session(&mut stream, stop, &mut seq, &mut in_flight, &mut r, &first);
        // What was still in flight when the connection ended is lost.
        r.lost += in_flight.len() as u64;
        match e {
            Ok(()) => break,
            Err(e) => {
                r.error.get_or_insert(format!("connection: {e}"));
            }
        }
    }
    r
}

/// One connection's life: a message every [`EVERY`], each echo matched and timed. Ends
/// when told to stop (after the last echoes) or with the error that broke it.
fn session(
    stream: &mut TcpStream,
    stop: &AtomicBool,
    seq: &mut u64,
    in_flight: &mut VecDeque<(u64, Instant)>,
    r: &mut Report,
    first: &std::sync::mpsc::Sender<()>,
) -> io::Result<()> {
    stream.set_write_timeout(Some(LOST_AFTER))?;
    let mut parser = Parser::default();
    let mut buf = vec![0u8; 64 << 10];
    let mut next = Instant::now();
    let mut stopping: Option<Instant> = None;
    loop {
        let now = Instant::now();
        if stopping.is_none() && stop.load(Ordering::Relaxed) {
            stopping = Some(now + LOST_AFTER);
        }
        if let Some(until) = stopping
            && (in_flight.is_empty() || now >= until)
        {
            let _ = stream.write_all(&frame::close_frame());
            r.lost += in_flight.len() as u64;
            in_flight.clear();
            return Ok(());
        }
        while let Some(&(_, at)) = in_flight.front()
            && now.duration_since(at) > LOST_AFTER
        {
            in_flight.pop_front();
            r.lost += 1;
        }
        if stopping.is_none() && now >= next {
            let payload = format!("{:016}", *seq);
            stream.write_all(&frame::masked_frame(frame::TEXT, payload.as_bytes()))?;
            in_flight.push_back((*seq, now));
            *seq += 1;
            r.sent += 1;
            next += EVERY;
            if next < now {
                next = now + EVERY; // the write itself was late: no burst to catch up
            }
        }
        let wait = next
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1));
        stream.set_read_timeout(Some(wait))?;
        let n = match stream.read(&mut buf) {
            Ok(0) => return Err(io::Error::other("closed by the server")),
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                continue;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let now = Instant::now();
        let mut pong = None;
        let mut closed = false;
        let mut bad = None;
        let res = parser.feed(&buf[..n], &mut |ev| match ev {
            Event::Message { prefix, .. } => {
                let got = std::str::from_utf8(prefix)
                    .ok()
                    .and_then(|s| s.parse::<u64>().ok());
                match in_flight.iter().position(|&(s, _)| Some(s) == got) {
                    Some(i) => {
                        // Echoes come in order: anything before this one is lost.
                        r.lost += i as u64;
                        let (_, at) = in_flight.drain(..=i).next_back().expect("i is in range");
                        r.echoed += 1;
                        r.worst = r.worst.max(now.duration_since(at).as_secs_f64());
                        let _ = first.send(());
                    }
                    None => bad = Some(format!("unexpected echo {prefix:?}")),
                }
            }
            Event::Ping(p) => pong = Some(frame::masked_frame(frame::PONG, p)),
            Event::Close => closed = true,
        });
        if res.is_err() {
            return Err(io::Error::other("bad frame from the server"));
        }
        if let Some(b) = bad {
            r.error.get_or_insert(b);
        }
        if let Some(p) = pong {
            stream.write_all(&p)?;
        }
        if closed {
            return Err(io::Error::other("the server closed the WebSocket"));
        }
    }
}
