//! What the attack run reads of the server process: resident memory (`VmRSS` in
//! `/proc/PID/status`), CPU time (utime + stime of `/proc/PID/stat`), and open descriptors
//! (`/proc/PID/fd`: its listeners, rings and every connection it still holds), sampled
//! every 100 ms in a thread so that the peak is caught while a mode runs.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::sys;

/// Resident set size in bytes, `None` once the process is gone.
pub fn rss(pid: u32) -> Option<u64> {
    sys::rss_bytes(pid).ok()
}

/// User and system CPU time in seconds (clock ticks of `/proc/PID/stat`).
pub fn cpu_seconds(pid: u32) -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses; the fields follow the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of the whole line (utime, stime) are 12 and 13 after the name.
    let ticks = |i: usize| fields.get(i)?.parse::<u64>().ok();
    // SAFETY: sysconf only reads a configuration value.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Some((ticks(11)? as f64 / hz, ticks(12)? as f64 / hz))
}

/// Open descriptors, `None` once the process is gone.
pub fn fds(pid: u32) -> Option<u64> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64)
}

/// The process's largest mappings by resident size (`/proc/PID/smaps`): KiB and the
/// mapping's line, at most `n`, largest first. Says where memory that did not come back
/// is (the heap, a thread's arena, a ring).
pub fn largest_mappings(pid: u32, n: usize) -> Vec<(u64, String)> {
    let Ok(smaps) = std::fs::read_to_string(format!("/proc/{pid}/smaps")) else {
        return Vec::new();
    };
    let mut all = Vec::new();
    let mut current = String::new();
    for line in smaps.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if first.contains('-') && !first.ends_with(':') {
            current = line.split_whitespace().collect::<Vec<_>>().join(" ");
        } else if let Some(v) = line.strip_prefix("Rss:") {
            let kb = v.trim().trim_end_matches("kB").trim().parse().unwrap_or(0);
            all.push((kb, current.clone()));
        }
    }
    all.sort_by_key(|m| std::cmp::Reverse(m.0));
    all.truncate(n);
    all
}

/// The highest RSS and descriptor count seen while it runs.
#[derive(Debug, Clone, Copy, Default)]
pub struct Peaks {
    /// Bytes.
    pub rss: u64,
    /// Descriptors.
    pub fds: u64,
}

/// A thread sampling the server every 100 ms until stopped.
#[derive(Debug)]
pub struct Sampler {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Peaks>>,
}

impl Sampler {
    /// Starts sampling `pid`.
    pub fn start(pid: u32) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut p = Peaks::default();
            while !flag.load(Ordering::Relaxed) {
                p.rss = p.rss.max(rss(pid).unwrap_or(0));
                p.fds = p.fds.max(fds(pid).unwrap_or(0));
                std::thread::sleep(Duration::from_millis(100));
            }
            p
        });
        Sampler {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops and returns the peaks.
    pub fn stop(mut self) -> Peaks {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let me = std::process::id();
        assert!(rss(me).unwrap() > 1 << 20);
        assert!(fds(me).unwrap() >= 3);
        let (u, s) = cpu_seconds(me).unwrap();
        assert!(u >= 0.0 && s >= 0.0);
        assert!(rss(u32::MAX).is_none());
        let maps = largest_mappings(me, 3);
        assert!(!maps.is_empty() && maps[0].0 > 0, "{maps:?}");
    }
}
