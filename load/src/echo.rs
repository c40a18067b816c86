//! `throng-load echo`: echo throughput and round-trip latency against a server that sends
//! every message back.
//!
//! Two ways to load it:
//! - closed loop (no `--rate`): every connection keeps one message in flight and sends the
//!   next when the echo arrives (as uWebSockets' load_test does); latency is each round
//!   trip.
//! - fixed rate (`--rate R`): R messages per second in all, round-robin over the
//!   connections whatever the answers do (a connection may have several in flight);
//!   latency counts from when each message was due, so a send that is late because the
//!   client or the server fell behind counts against the result (no coordinated
//!   omission).
//!
//! One process holds what RLIMIT_NOFILE allows (20,000 descriptors here), so above
//! [`PER_PROCESS`] connections, or with `--processes P`, the command runs copies of itself,
//! each with its share of the connections and of the rate and its own place in the
//! rotation of source addresses. They ramp, wait until all are ready, start together and
//! hand back their histograms, which are merged (counts add up; percentiles would not).

use std::io::{self, BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::args::Url;
use crate::fleet::{Conn, Driver, Fleet, Msg, Phase};
use crate::frame;
use crate::hist::Histogram;
use crate::source;

/// Connections one process takes on before the work is spread over several.
pub const PER_PROCESS: usize = 19_000;
/// How long answers still in flight at the end of the window are waited for.
const DRAIN: Duration = Duration::from_secs(2);

/// What `echo` was asked to do.
#[derive(Debug, Clone)]
pub struct Options {
    /// The server.
    pub url: Url,
    /// Connections in all.
    pub connections: usize,
    /// Payload bytes of each message (text).
    pub size: usize,
    /// Messages per second in all; `None`: closed loop.
    pub rate: Option<f64>,
    /// Measurement window.
    pub duration: Duration,
    /// Load before the window, not counted.
    pub warmup: Duration,
    /// Processes asked for (more are used if the connections need them).
    pub processes: Option<usize>,
    /// Print only the JSON object.
    pub json: bool,
    /// Where this process starts in the rotation of source addresses.
    pub source_offset: usize,
    /// Handshakes in progress at once while ramping.
    pub open_window: usize,
    /// Longest ramp.
    pub open_timeout: Duration,
    /// Run as one of several processes: report `ready` after the ramp, start on `go`
    /// from stdin, include the histogram in the result.
    pub child: bool,
    /// After the report, keep every connection open until stdin ends, so that whoever
    /// reads the server's counters then (a callgrind dump) sees no closes in them.
    pub hold_open: bool,
    /// `--cafile` (handed on to the processes of a spread run).
    pub cafile: Option<std::path::PathBuf>,
    /// `wss://`: every connection is a TLS session of this client.
    pub tls: Option<crate::tls::Tls>,
}

impl Options {
    /// Processes the run uses.
    pub fn process_count(&self) -> usize {
        let needed = self.connections.div_ceil(PER_PROCESS);
        self.processes
            .unwrap_or(1)
            .max(needed)
            .min(self.connections)
            .max(1)
    }
}

/// What a run measured (one process's, or the merge of several).
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Processes that took part.
    pub processes: usize,
    /// Connections asked for.
    pub connections: usize,
    /// Connections that opened.
    pub open: usize,
    /// Echoes received in the window.
    pub messages: u64,
    /// Messages sent in the window.
    pub sent: u64,
    /// Window length, seconds.
    pub seconds: f64,
    /// Round trips in the window, nanoseconds.
    pub histogram: Histogram,
    /// Connections that failed (to open, or later) and echoes that did not match.
    pub errors: u64,
    /// Messages sent in the window whose echo had not come back [`DRAIN`] after it.
    pub lost: u64,
    /// The first error.
    pub error: Option<String>,
}

impl Report {
    /// Echoes per second.
    pub fn rate(&self) -> f64 {
        self.messages as f64 / self.seconds.max(1e-9)
    }

    /// Adds another process's report.
    pub fn merge(&mut self, other: &Report) {
        self.processes += other.processes;
        self.connections += other.connections;
        self.open += other.open;
        self.messages += other.messages;
        self.sent += other.sent;
        self.seconds = self.seconds.max(other.seconds);
        self.histogram.merge(&other.histogram);
        self.errors += other.errors;
        self.lost += other.lost;
        if self.error.is_none() {
            self.error.clone_from(&other.error);
        }
    }

    /// The JSON object printed; with the histogram (base64 HdrHistogram) when another
    /// process will merge it.
    pub fn to_json(&self, opts: &Options, with_histogram: bool) -> Value {
        let us = |q: f64| (self.histogram.quantile(q) as f64 / 10.0).round() / 100.0;
        let mut v = json!({
            "mode": if opts.rate.is_some() { "rate" } else { "closed-loop" },
            "url": opts.url.to_string(),
            "processes": self.processes,
            "connections": self.connections,
            "open": self.open,
            "size": opts.size,
            "seconds": (self.seconds * 1000.0).round() / 1000.0,
            "messages": self.messages,
            "sent": self.sent,
            "msgs_per_s": self.rate().round(),
            "p50_us": us(0.5),
            "p99_us": us(0.99),
            "p999_us": us(0.999),
            "max_us": (self.histogram.max() as f64 / 10.0).round() / 100.0,
            "errors": self.errors,
            "lost": self.lost,
        });
        if let Some(r) = opts.rate {
            v["rate"] = json!(r);
        }
        if let Some(e) = &self.error {
            v["error"] = json!(e);
        }
        if with_histogram {
            v["histogram"] = json!(self.histogram.to_base64());
        }
        v
    }

    /// Reads a child's JSON object back; `None` if it is not one.
    pub fn from_json(v: &Value) -> Option<Report> {
        let n = |k: &str| v.get(k).and_then(Value::as_u64);
        Some(Report {
            processes: n("processes")? as usize,
            connections: n("connections")? as usize,
            open: n("open")? as usize,
            messages: n("messages")?,
            sent: n("sent")?,
            seconds: v.get("seconds")?.as_f64()?,
            histogram: Histogram::from_base64(v.get("histogram")?.as_str()?)?,
            errors: n("errors")?,
            lost: n("lost")?,
            error: v.get("error").and_then(Value::as_str).map(String::from),
        })
    }

    /// A few lines for people.
    pub fn summary(&self, opts: &Options) -> String {
        let us = |q: f64| self.histogram.quantile(q) as f64 / 1000.0;
        let mode = match opts.rate {
            Some(r) => format!("fixed rate {r} msg/s"),
            None => "closed loop".into(),
        };
        let mut s = format!(
            "echo {}: {} connections ({} open), {} B text, {mode}, {} process(es)\n\
             {:.0} msg/s over {:.2} s ({} echoes, {} sent)\n\
             latency us: p50 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1}\n\
             errors {}  lost {}",
            opts.url,
            self.connections,
            self.open,
            opts.size,
            self.processes,
            self.rate(),
            self.seconds,
            self.messages,
            self.sent,
            us(0.5),
            us(0.99),
            us(0.999),
            self.histogram.max() as f64 / 1000.0,
            self.errors,
            self.lost,
        );
        if let Some(e) = &self.error {
            s.push_str(&format!(" (first: {e})"));
        }
        s
    }
}

/// Checks each echo and records its round trip; in the closed loop, sends the next.
struct Echoes<'a> {
    frame: &'a [u8],
    expect: &'a [u8],
    /// The counted window: messages sent from its start to its end.
    window: (Instant, Instant),
    /// Closed loop: answer each echo with the next message (until the window ends).
    closed_loop: bool,
    hist: Histogram,
    /// Echoes of messages sent in the window.
    count: u64,
    /// Messages sent in the window.
    sent: u64,
    bad: u64,
}

impl Driver for Echoes<'_> {
    fn message(&mut self, _: usize, conn: &mut Conn, m: Msg<'_>) {
        let now = Instant::now();
        if m.len != self.expect.len() as u64
            || !m.text
            || *m.prefix != self.expect[..m.prefix.len()]
        {
            self.bad += 1;
        }
        let (start, end) = self.window;
        if let Some(due) = conn.sent.pop_front()
            && due >= start
            && due < end
        {
            self.count += 1;
            self.hist.record((now - due).as_nanos() as u64);
        }
        if self.closed_loop && now < end {
            conn.sent.push_back(now);
            conn.send(self.frame);
            self.sent += u64::from(now >= start);
        }
    }
}

/// Runs this process's share: ramps, calls `ready` (the start barrier of a multi-process
/// run), loads the server for warm-up and window, and reports.
pub fn run_one(
    opts: &Options,
    ready: impl FnOnce(usize, usize) -> io::Result<()>,
) -> io::Result<Report> {
    run_one_then(opts, ready, |_| Ok(()))
}

/// [`run_one`], calling `finished` with the report while the connections are still open
/// (they close when it returns).
pub fn run_one_then(
    opts: &Options,
    ready: impl FnOnce(usize, usize) -> io::Result<()>,
    finished: impl FnOnce(&Report) -> io::Result<()>,
) -> io::Result<Report> {
    crate::sys::raise_nofile();
    let payload = frame::payload(opts.size);
    let frame = frame::masked_frame(frame::TEXT, &payload);
    let mut fleet = Fleet::new(opts.url.addr)?
        .with_source_offset(opts.source_offset)
        .with_tls(opts.tls.clone());
    let ramp = fleet.ramp(
        &opts.url.path,
        opts.connections,
        0,
        opts.open_window,
        opts.open_timeout,
    )?;
    ready(ramp.open, ramp.failed)?;
    let t0 = Instant::now();
    let (start, end) = (t0 + opts.warmup, t0 + opts.warmup + opts.duration);
    let mut d = Echoes {
        frame: &frame,
        expect: &payload,
        window: (start, end),
        closed_loop: opts.rate.is_none(),
        hist: Histogram::default(),
        count: 0,
        sent: 0,
        bad: 0,
    };
    let open: Vec<usize> = ramp
        .range
        .clone()
        .filter(|&i| fleet.conns[i].phase == Phase::Open)
        .collect();
    // Messages a connection may have in flight at a fixed rate before further ones are
    // skipped (and counted lost): bounds memory when the server falls far behind.
    let max_in_flight = ((4 << 20) / frame.len()).clamp(1, 1024);
    let mut skipped = 0u64;
    match opts.rate {
        None => {
            for &i in &open {
                let c = &mut fleet.conns[i];
                c.sent.push_back(Instant::now());
                c.send(&frame);
                d.sent += u64::from(opts.warmup.is_zero());
            }
            closed_loop(&mut fleet, &mut d, end)?;
        }
        Some(rate) if !open.is_empty() => {
            let interval = Duration::from_secs_f64(1.0 / rate);
            let (mut issued, mut next) = (0u64, 0usize);
            let mut due = t0;
            loop {
                // Sleep in epoll_wait while the next send is two milliseconds or more away
                // (its timeout has millisecond steps), spin closer to it.
                let now = Instant::now();
                let slack = due.saturating_duration_since(now);
                let wait = if slack >= Duration::from_millis(2) {
                    slack - Duration::from_millis(1)
                } else {
                    Duration::ZERO
                };
                fleet.turn(Some(wait.min(end.saturating_duration_since(now))), &mut d)?;
                let now = Instant::now();
                if now >= end {
                    break;
                }
                // The sends now due, in bursts of at most 10,000 between reads.
                let mut burst = 0;
                while due <= now && due < end && burst < 10_000 {
                    burst += 1;
                    let mut tries = 0;
                    while fleet.conns[open[next]].phase != Phase::Open && tries < open.len() {
                        next = (next + 1) % open.len();
                        tries += 1;
                    }
                    let c = &mut fleet.conns[open[next]];
                    next = (next + 1) % open.len();
                    let counted = due >= start;
                    if c.phase == Phase::Open && c.sent.len() < max_in_flight {
                        c.sent.push_back(due);
                        c.send(&frame);
                    } else {
                        skipped += u64::from(counted);
                    }
                    d.sent += u64::from(counted);
                    issued += 1;
                    due = t0 + interval.mul_f64(issued as f64);
                }
            }
        }
        Some(_) => {}
    }
    // Collect the answers still in flight.
    let deadline = Instant::now() + DRAIN;
    let in_flight = |f: &Fleet| {
        f.conns
            .iter()
            .filter(|c| c.phase == Phase::Open)
            .any(|c| !c.sent.is_empty())
    };
    while in_flight(&fleet) && Instant::now() < deadline {
        fleet.turn(Some(Duration::from_millis(1)), &mut d)?;
    }
    let lost = skipped
        + fleet
            .conns
            .iter()
            .map(|c| c.sent.iter().filter(|&&s| s >= start && s < end).count() as u64)
            .sum::<u64>();
    let failed_later = open
        .iter()
        .filter(|&&i| fleet.conns[i].phase != Phase::Open)
        .count();
    let mut error = ramp.error.clone().or_else(|| fleet.first_error());
    if d.bad > 0 && error.is_none() {
        error = Some(format!("{} echoes did not match what was sent", d.bad));
    }
    let report = Report {
        processes: 1,
        connections: opts.connections,
        open: ramp.open,
        messages: d.count,
        sent: d.sent,
        seconds: opts.duration.as_secs_f64(),
        histogram: d.hist,
        errors: (ramp.failed + failed_later) as u64 + d.bad,
        lost,
        error,
    };
    finished(&report)?;
    Ok(report)
}

/// Turns the closed loop until `end` (the driver sends each next message).
fn closed_loop(fleet: &mut Fleet, d: &mut Echoes<'_>, end: Instant) -> io::Result<()> {
    loop {
        let now = Instant::now();
        if now >= end {
            return Ok(());
        }
        let wait = end
            .saturating_duration_since(now)
            .min(Duration::from_millis(5));
        fleet.turn(Some(wait), d)?;
    }
}

/// Runs a child's share: ramp, `ready` on stdout, wait for `go` on stdin, run, report.
pub fn run_child(opts: &Options) -> io::Result<Report> {
    run_one(opts, child_ready)
}

/// The start barrier of a child: `{"event":"ready",...}` on stdout, then `go` on stdin.
pub fn child_ready(open: usize, failed: usize) -> io::Result<()> {
    let mut out = io::stdout().lock();
    writeln!(
        out,
        "{}",
        json!({"event": "ready", "open": open, "failed": failed})
    )?;
    out.flush()?;
    let mut line = String::new();
    io::stdin().lock().read_line(&mut line)?;
    if line.trim() == "go" {
        Ok(())
    } else {
        Err(io::Error::other(
            "the parent process went away before the start",
        ))
    }
}

/// Prints the report (the summary unless `--json`, then the JSON object) and, with
/// `--hold-open`, waits for the end of stdin before the connections may close.
pub fn print_report(opts: &Options, report: &Report) -> io::Result<()> {
    let mut out = io::stdout().lock();
    if !opts.json {
        writeln!(out, "{}", report.summary(opts))?;
    }
    writeln!(out, "{}", report.to_json(opts, opts.child))?;
    out.flush()?;
    drop(out);
    if opts.hold_open {
        // Whatever arrives is ignored; only the end of the input counts.
        io::copy(&mut io::stdin().lock(), &mut io::sink())?;
    }
    Ok(())
}

/// A child process of a spread run.
struct Worker {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl Drop for Worker {
    fn drop(&mut self) {
        // Only a child that has not exited is still ours to stop.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// Runs the load in `processes` copies of this program and merges their reports.
pub fn run_spread(opts: &Options, processes: usize) -> io::Result<Report> {
    let exe = std::env::current_exe()?;
    let (tx, rx) = mpsc::channel::<(usize, Value)>();
    let mut workers = Vec::new();
    for p in 0..processes {
        let share = opts.connections / processes + usize::from(p < opts.connections % processes);
        let mut cmd = Command::new(&exe);
        cmd.arg("echo")
            .args(["--url", &opts.url.to_string()])
            .args(["--connections", &share.to_string()])
            .args(["--size", &opts.size.to_string()])
            .args(["--duration", &opts.duration.as_secs_f64().to_string()])
            .args(["--warmup", &opts.warmup.as_secs_f64().to_string()])
            .args(["--open-window", &opts.open_window.to_string()])
            .args([
                "--open-timeout",
                &opts.open_timeout.as_secs_f64().to_string(),
            ])
            .args([
                "--source-offset",
                &(opts.source_offset + p * source::SOURCES / processes).to_string(),
            ])
            .args(["--json", "--child"]);
        if let Some(ca) = &opts.cafile {
            cmd.arg("--cafile").arg(ca);
        }
        if let Some(r) = opts.rate {
            let r = r * share as f64 / opts.connections as f64;
            cmd.args(["--rate", &r.to_string()]);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdout = child.stdout.take().expect("piped");
        let stdin = child.stdin.take();
        workers.push(Worker { child, stdin });
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Ok(v) = serde_json::from_str::<Value>(&line)
                    && tx.send((p, v)).is_err()
                {
                    return;
                }
            }
            let _ = tx.send((p, json!({"event": "exit"})));
        });
    }
    drop(tx);

    // Every child ramps, then all start at once.
    let deadline = Instant::now() + opts.open_timeout + Duration::from_secs(30);
    let mut ready = 0;
    while ready < processes {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok((_, v)) if v["event"] == "ready" => ready += 1,
            Ok((p, v)) if v["event"] == "exit" => {
                return Err(io::Error::other(format!(
                    "load process {p} ended before its ramp did"
                )));
            }
            Ok(_) => {}
            Err(_) => {
                return Err(io::Error::other(format!(
                    "only {ready} of {processes} load processes finished their ramp"
                )));
            }
        }
    }
    for w in &mut workers {
        if let Some(stdin) = w.stdin.as_mut() {
            writeln!(stdin, "go")?;
            stdin.flush()?;
        }
    }

    let deadline = Instant::now() + opts.warmup + opts.duration + DRAIN + Duration::from_secs(30);
    let mut total = Report::default();
    let mut reported = vec![false; processes];
    while reported.iter().any(|r| !r) {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok((p, v)) if v.get("histogram").is_some() => {
                let r = Report::from_json(&v)
                    .ok_or_else(|| io::Error::other(format!("process {p} sent {v}")))?;
                if !reported[p] {
                    reported[p] = true;
                    total.merge(&r);
                }
            }
            Ok((p, v)) if v["event"] == "exit" && !reported[p] => {
                return Err(io::Error::other(format!(
                    "load process {p} ended without a report"
                )));
            }
            Ok(_) => {}
            Err(_) => {
                let missing = reported.iter().filter(|r| !**r).count();
                return Err(io::Error::other(format!(
                    "{missing} of {processes} load processes did not report"
                )));
            }
        }
    }
    for w in &mut workers {
        w.stdin = None;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(connections: usize, processes: Option<usize>) -> Options {
        Options {
            url: crate::args::parse_url("ws://127.0.0.1:9/").unwrap(),
            connections,
            size: 8,
            rate: None,
            duration: Duration::from_secs(1),
            warmup: Duration::ZERO,
            processes,
            json: true,
            source_offset: 0,
            open_window: 1,
            open_timeout: Duration::from_secs(1),
            child: false,
            hold_open: false,
            cafile: None,
            tls: None,
        }
    }

    #[test]
    fn processes_follow_the_descriptor_limit() {
        assert_eq!(opts(1, None).process_count(), 1);
        assert_eq!(opts(PER_PROCESS, None).process_count(), 1);
        assert_eq!(opts(PER_PROCESS + 1, None).process_count(), 2);
        assert_eq!(opts(100_000, None).process_count(), 6);
        assert_eq!(opts(100_000, Some(10)).process_count(), 10);
        assert_eq!(opts(100_000, Some(2)).process_count(), 6);
        // Never more processes than connections.
        assert_eq!(opts(3, Some(8)).process_count(), 3);
    }

    #[test]
    fn reports_merge_through_json() {
        let o = opts(10, Some(2));
        let mut a = Report {
            processes: 1,
            connections: 5,
            open: 5,
            messages: 100,
            sent: 100,
            seconds: 1.0,
            ..Default::default()
        };
        (0..100).for_each(|i| a.histogram.record(10_000 + i));
        let mut b = a.clone();
        b.errors = 2;
        b.error = Some("x".into());
        (0..100).for_each(|_| b.histogram.record(1_000_000));
        let b = Report::from_json(&b.to_json(&o, true)).expect("reads back");
        a.merge(&b);
        assert_eq!((a.processes, a.connections, a.messages), (2, 10, 200));
        assert_eq!((a.errors, a.error.as_deref()), (2, Some("x")));
        assert_eq!(a.histogram.count(), 300);
        assert!(a.histogram.quantile(0.5) < 20_000 && a.histogram.quantile(0.9) > 900_000);
        let v = a.to_json(&o, false);
        assert!(v.get("histogram").is_none() && v["mode"] == "closed-loop");
        assert!(
            Report::from_json(&v).is_none(),
            "no histogram, nothing to merge"
        );
    }
}
