//! Process plumbing for the harness: the CPUs it may use, machine load, host facts, and
//! spawned servers that cannot outlive the harness. Pinning, the descriptor limit and the
//! server's CPU and memory readings are the load generator's (`throng_load::sys`),
//! re-exported here.

use std::io::{self, BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// CPUs this thread may run on, in order.
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: cpu_set_t is plain old data; all zeroes is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid cpu_set_t of the size passed; pid 0 is the calling thread.
    let rc = unsafe { libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut set) };
    if rc != 0 {
        return Vec::new();
    }
    // SAFETY: CPU_ISSET only reads the set.
    (0..libc::CPU_SETSIZE as usize)
        .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
        .collect()
}

pub use throng_load::sys::{cpu_ns, pin_to, raise_nofile, rss_bytes};

/// Busy and total jiffies of all CPUs, from `/proc/stat`.
fn cpu_jiffies() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let v: Vec<u64> = line
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3)? + v.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

/// The fraction of all CPUs busy over `interval` (0..=1), whoever is using them.
pub fn machine_busy(interval: Duration) -> f64 {
    let Some((b0, t0)) = cpu_jiffies() else {
        return 0.0;
    };
    std::thread::sleep(interval);
    let Some((b1, t1)) = cpu_jiffies() else {
        return 0.0;
    };
    if t1 <= t0 {
        0.0
    } else {
        (b1 - b0) as f64 / (t1 - t0) as f64
    }
}

/// CPU time (clock ticks) used so far by every user process except `skip`; kernel
/// threads are left out because they include the softirq work of our own traffic.
fn others_ticks(skip: &[u32]) -> u64 {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let mut total = 0;
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if skip.contains(&pid) {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // Fields after the command name (which may hold spaces and parentheses).
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        // f[1] is the parent (field 4), f[11] and f[12] utime and stime (fields 14, 15).
        if pid == 2 || f.get(1) == Some(&"2") {
            continue;
        }
        let tick = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        total += tick(11) + tick(12);
    }
    total
}

/// Processes created since boot (`/proc/stat`).
fn forks() -> u64 {
    std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("processes "))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Whether others disturbed a measurement: the CPU other processes took meanwhile (in
/// CPUs, averaged over it) and how many processes were started (a build or a test run
/// starts many, each maybe gone before the end and so missing from the CPU count).
/// Read at the start and the end only: a watcher thread waking on the load CPU would
/// itself disturb the latency figure.
pub struct OtherLoad {
    skip: Vec<u32>,
    ticks: u64,
    forks: u64,
    /// Threads of the skipped processes at the start: threads they start later (Bun's
    /// garbage collector and JIT start theirs under load) are theirs, not others'.
    tasks: Vec<u32>,
    at: Instant,
}

impl std::fmt::Debug for OtherLoad {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtherLoad").finish_non_exhaustive()
    }
}

impl OtherLoad {
    /// Starts watching everything but `skip` (the server, the harness).
    pub fn watch(skip: Vec<u32>) -> OtherLoad {
        OtherLoad {
            tasks: tasks(&skip),
            ticks: others_ticks(&skip),
            forks: forks(),
            at: Instant::now(),
            skip,
        }
    }

    /// The CPUs others used on average since [`OtherLoad::watch`], and the processes
    /// started meanwhile.
    pub fn finish(self) -> (f64, u64) {
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        let used = others_ticks(&self.skip).saturating_sub(self.ticks) as f64 / hz;
        // /proc/stat counts every clone, threads included.
        let ours = tasks(&self.skip)
            .iter()
            .filter(|t| !self.tasks.contains(t))
            .count() as u64;
        (
            used / self.at.elapsed().as_secs_f64().max(1e-3),
            forks().saturating_sub(self.forks).saturating_sub(ours),
        )
    }
}

/// The thread ids of processes `pids`.
fn tasks(pids: &[u32]) -> Vec<u32> {
    let mut out = Vec::new();
    for pid in pids {
        if let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) {
            out.extend(
                dir.flatten()
                    .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok())),
            );
        }
    }
    out
}

/// The CPU model, for the report.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
            })
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

/// The kernel release, for the report.
pub fn kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

/// Total RAM in GiB, for the report.
pub fn mem_gib() -> f64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / (1024.0 * 1024.0))
}

/// What a server process said when it started.
#[derive(Debug)]
pub enum Started {
    /// It listens here.
    Listening(SocketAddr),
    /// It cannot run on this machine or build (e.g. a backend that is not there); the
    /// reason, for the report.
    Unavailable(String),
}

/// A server process started by the harness. Dropping it kills it (SIGKILL) and reaps it,
/// so a failed or panicking run leaves nothing behind.
pub struct ServerProcess {
    child: Option<Child>,
    /// The start of what the server wrote to stderr, for error messages.
    stderr: Arc<Mutex<String>>,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl std::fmt::Debug for ServerProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerProcess").finish_non_exhaustive()
    }
}

/// How a server process is started (see [`ServerProcess::launch`]).
pub struct Launch<'a> {
    /// The program and its arguments (for `throng-bench`: `serve ...`).
    pub command: Command,
    /// Longest wait for the first line.
    pub timeout: Duration,
    /// Called every second while no line has come (e.g. a TCP connect to wake a server
    /// whose only thread that could print is stalled; see `count`).
    pub poke: Option<&'a dyn Fn()>,
}

impl std::fmt::Debug for Launch<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Launch")
            .field("command", &self.command)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl ServerProcess {
    /// Starts `exe serve ARGS...` and waits (at most `timeout`) for its first line:
    /// `listening ADDR` or `unavailable REASON`.
    pub fn spawn(
        exe: &Path,
        args: &[String],
        timeout: Duration,
    ) -> io::Result<(Option<ServerProcess>, Started)> {
        let mut command = Command::new(exe);
        command.arg("serve").args(args);
        ServerProcess::launch(Launch {
            command,
            timeout,
            poke: None,
        })
    }

    /// Starts a prepared command (stdio is set here) and waits for its first line.
    pub fn launch(launch: Launch<'_>) -> io::Result<(Option<ServerProcess>, Started)> {
        let Launch {
            mut command,
            timeout,
            poke,
        } = launch;
        command
            // The servers' backend is chosen by flag, not by the caller's environment.
            .env_remove("THRONG_BACKEND")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // SAFETY: the closure runs in the child between fork and exec and only makes one
        // async-signal-safe system call.
        unsafe {
            // A harness killed outright (Ctrl-C, SIGKILL) runs no Drop: the kernel then
            // kills the server with it.
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let what = format!("{command:?}");
        let mut child = command.spawn()?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = Arc::new(Mutex::new(String::new()));
        if let Some(pipe) = child.stderr.take() {
            drain_into(pipe, stderr.clone());
        }
        let mut guard = ServerProcess {
            child: Some(child),
            stderr,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        };
        let line = read_first_line(stdout, timeout, poke);
        match line {
            Some(l) if l.starts_with("listening ") => {
                let addr = l["listening ".len()..].trim().parse().map_err(|e| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("bad address in {l:?}: {e}"),
                    )
                })?;
                guard.addr = addr;
                Ok((Some(guard), Started::Listening(addr)))
            }
            Some(l) if l.starts_with("unavailable ") => Ok((
                None,
                Started::Unavailable(l["unavailable ".len()..].trim().to_owned()),
            )),
            other => {
                let stderr = guard.kill_and_stderr();
                Err(io::Error::other(format!(
                    "server {what} did not start (said {other:?}); stderr: {stderr}"
                )))
            }
        }
    }

    /// The process id, for `/proc` readings.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, |c| c.id())
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Kills the process and returns what it wrote to stderr (for error messages).
    pub fn kill_and_stderr(&mut self) -> String {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // The drain thread sees EOF once the process is gone; give it a moment to finish.
        std::thread::sleep(Duration::from_millis(20));
        self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Only this child, by its own handle (its pid): SIGKILL, then reap.
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Keeps the first few KiB a child writes to `pipe` and discards the rest, so a chatty
/// server never blocks on a full pipe.
fn drain_into(mut pipe: impl Read + Send + 'static, keep: Arc<Mutex<String>>) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = pipe.read(&mut buf) {
            if n == 0 {
                break;
            }
            if let Ok(mut k) = keep.lock()
                && k.len() < 4096
            {
                k.push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        }
    });
}

/// Reads one line from the child's stdout on a helper thread, so a server that hangs
/// before printing cannot hang the harness; `poke` runs every second meanwhile.
fn read_first_line(
    stdout: ChildStdout,
    timeout: Duration,
    poke: Option<&dyn Fn()>,
) -> Option<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        let _ = reader.read_line(&mut line);
        let _ = tx.send(line);
        // Keep draining so the server never blocks on a full pipe; ends at its exit.
        let mut sink = Vec::new();
        let _ = reader.read_to_end(&mut sink);
    });
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left.min(Duration::from_secs(1))) {
            Ok(line) => return Some(line).filter(|l| !l.is_empty()),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) if !left.is_zero() => {
                if let Some(poke) = poke {
                    poke();
                }
            }
            Err(_) => return None,
        }
    }
}

/// The cgroup v1 CPU controller's root, where [`CpuCap`] makes its groups.
const CPU_CGROUP: &str = "/sys/fs/cgroup/cpu";

/// A CPU cap on one server process: a child group of the cgroup v1 CPU controller with a
/// CFS quota, so that the server, not the load generator, is what bounds a rate. The
/// process (all its threads, and any it starts later) is moved in at [`CpuCap::new`];
/// [`Drop`] moves whatever is left back to the root group and removes the group.
#[derive(Debug)]
pub struct CpuCap {
    dir: std::path::PathBuf,
    /// The quota, in CPUs (0.5: half of one CPU per period).
    pub cpus: f64,
    period_us: u64,
}

impl CpuCap {
    /// Caps `pid` at `cpus` CPUs (per `period_us` microseconds of wall time it may run
    /// `cpus * period_us`).
    pub fn new(pid: u32, cpus: f64, period_us: u64) -> io::Result<CpuCap> {
        let quota = (cpus * period_us as f64).round() as u64;
        if pid == 0 || quota < 1000 || !(1000..=1_000_000).contains(&period_us) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("CPU cap {cpus} of {period_us} us for pid {pid}"),
            ));
        }
        let dir = Path::new(CPU_CGROUP).join(format!("throng-bench-{}-{pid}", std::process::id()));
        std::fs::create_dir(&dir)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", dir.display())))?;
        let cap = CpuCap {
            dir,
            cpus,
            period_us,
        };
        let set = |file: &str, value: String| {
            std::fs::write(cap.dir.join(file), value)
                .map_err(|e| io::Error::new(e.kind(), format!("{}/{file}: {e}", cap.dir.display())))
        };
        set("cpu.cfs_period_us", period_us.to_string())?;
        set("cpu.cfs_quota_us", quota.to_string())?;
        set("cgroup.procs", pid.to_string())?;
        Ok(cap)
    }

    /// Whether caps can be made here (a writable cgroup v1 CPU controller): tries one
    /// empty group.
    pub fn available() -> bool {
        let dir = Path::new(CPU_CGROUP).join(format!("throng-bench-probe-{}", std::process::id()));
        let ok = std::fs::create_dir(&dir).is_ok() && dir.join("cpu.cfs_quota_us").exists();
        let _ = std::fs::remove_dir(&dir);
        ok
    }

    /// The period, microseconds.
    pub fn period_us(&self) -> u64 {
        self.period_us
    }
}

impl Drop for CpuCap {
    fn drop(&mut self) {
        // A group with tasks cannot be removed: hand any still there back to the root.
        let procs = std::fs::read_to_string(self.dir.join("cgroup.procs")).unwrap_or_default();
        for pid in procs.split_whitespace() {
            let _ = std::fs::write(Path::new(CPU_CGROUP).join("cgroup.procs"), pid);
        }
        for _ in 0..50 {
            if std::fs::remove_dir(&self.dir).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
