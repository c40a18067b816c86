//! Readings from /proc: resident memory and CPU time of processes, kernel slab memory.

use std::collections::HashMap;
use std::fs;

/// Resident set size of a process, in bytes (VmRSS); 0 once it is gone.
pub fn rss_bytes(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    kib_field(&status, "VmRSS:") * 1024
}

/// Summed RSS of several processes.
pub fn rss_sum(pids: &[u32]) -> u64 {
    pids.iter().map(|&p| rss_bytes(p)).sum()
}

/// Kernel slab memory of the whole host, in bytes (Slab in /proc/meminfo): sockets,
/// inodes, dentries, files, epoll items all live there.
pub fn slab_bytes() -> u64 {
    kib_field(
        &fs::read_to_string("/proc/meminfo").unwrap_or_default(),
        "Slab:",
    ) * 1024
}

/// Memory of each slab cache, in bytes (/proc/slabinfo, readable by root only; empty
/// otherwise): `num_slabs * pages_per_slab * page size`.
pub fn slab_caches() -> HashMap<String, u64> {
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as u64;
    let text = fs::read_to_string("/proc/slabinfo").unwrap_or_default();
    let mut caches = HashMap::new();
    for line in text.lines().skip(2) {
        // name active_objs num_objs objsize objperslab pagesperslab : tunables .. : slabdata active_slabs num_slabs ..
        let f: Vec<&str> = line.split_whitespace().collect();
        let Some(slabdata) = f.iter().position(|w| *w == "slabdata") else {
            continue;
        };
        let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        let bytes = num(slabdata + 2) * num(5) * page;
        caches.insert(f[0].to_owned(), bytes);
    }
    caches
}

/// The caches that grew most between two [`slab_caches`] readings: name and growth in
/// bytes, largest first, at most `top`.
pub fn slab_growth(
    before: &HashMap<String, u64>,
    after: &HashMap<String, u64>,
    top: usize,
) -> Vec<(String, u64)> {
    let mut grew: Vec<(String, u64)> = after
        .iter()
        .filter_map(|(name, &a)| {
            let b = before.get(name).copied().unwrap_or(0);
            (a > b).then(|| (name.clone(), a - b))
        })
        .collect();
    grew.sort_by(|x, y| y.1.cmp(&x.1).then_with(|| x.0.cmp(&y.0)));
    grew.truncate(top);
    grew
}

fn kib_field(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// CPU time (user + system) a process has used, in seconds; 0 once it is gone.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 of stat; here 11 and 12 after the name.
    let total = ticks(11) + ticks(12);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    total as f64 / hz
}

/// Summed CPU time of several processes.
pub fn cpu_sum(pids: &[u32]) -> f64 {
    pids.iter().map(|&p| cpu_seconds(p)).sum()
}

/// The descriptor limit of this process after raising the soft limit to the hard one.
pub fn raise_nofile() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid out pointer.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return 1024;
    }
    lim.rlim_cur = lim.rlim_max;
    // SAFETY: `lim` is a valid rlimit; raising soft to hard needs no privilege.
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) };
    lim.rlim_cur
}

/// MemAvailable of the host, in bytes.
pub fn mem_available() -> u64 {
    kib_field(
        &fs::read_to_string("/proc/meminfo").unwrap_or_default(),
        "MemAvailable:",
    ) * 1024
}
