//! Callgrind, as `throng-bench count` uses it: the valgrind command line, the
//! `callgrind_control` requests that zero and dump the counters of a running server, and
//! a reader of the profile files it writes (the format is valgrind's "Callgrind Format
//! Specification": name compression, relative positions, `calls=` lines whose next cost
//! line is the call's inclusive cost).
//!
//! The reader sums costs per function name, whatever file the lines came from:
//! `callgrind_annotate` lists a function once per source file its inlined lines belong
//! to, which splits one Rust function into many rows.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The valgrind arguments that run a program under callgrind, its profile dumps going to
/// `out` (`out.1`, `out.2`, ... for each `callgrind_control --dump`).
pub fn valgrind_args(out: &Path) -> Vec<String> {
    vec![
        "--tool=callgrind".into(),
        format!("--callgrind-out-file={}", out.display()),
        // The profile of the exit is not wanted (the server is killed): only dumps count.
        // Costs per instruction on request (`THRONG_COUNT_DUMP_INSTR=1`), for reading a
        // hot function's machine code with its counts (benches/scripts/count-asm.py).
        std::env::var("THRONG_COUNT_DUMP_INSTR")
            .map_or("--dump-instr=no".into(), |_| "--dump-instr=yes".into()),
    ]
}

/// Whether valgrind and callgrind_control can be run; `Err`: why not.
pub fn available() -> Result<String, String> {
    let out = Command::new("valgrind")
        .arg("--version")
        .output()
        .map_err(|e| format!("valgrind: {e} (install it: apt-get install valgrind)"))?;
    let version = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    Command::new("callgrind_control")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|e| format!("callgrind_control: {e}"))?;
    Ok(version)
}

/// Sends one request (`--zero`, `--dump=REASON`) to the callgrind process `pid` and
/// waits for its answer, at most `limit`. callgrind_control talks to valgrind's gdbserver
/// through vgdb, which also reaches a process whose threads are all blocked in system
/// calls.
pub fn control(pid: u32, request: &str, limit: Duration) -> io::Result<()> {
    let mut child = Command::new("callgrind_control")
        .arg(request)
        .arg(pid.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let deadline = Instant::now() + limit;
    while child.try_wait()?.is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("callgrind_control {request} {pid}: no answer in {limit:?}"),
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    if out.status.success() && text.contains("OK") {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "callgrind_control {request} {pid} failed: {} {}",
            text.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// The dump files of profile `out` (`out.1`, `out.2`, ...), by dump number.
pub fn dumps(out: &Path) -> Vec<(u32, PathBuf)> {
    let (Some(dir), Some(base)) = (out.parent(), out.file_name().and_then(|n| n.to_str())) else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<(u32, PathBuf)> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let n = name.strip_prefix(base)?.strip_prefix('.')?.parse().ok()?;
            Some((n, e.path()))
        })
        .collect();
    found.sort();
    found
}

/// One function's cost in a profile (first event, Ir: instructions executed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FnCost {
    /// Demangled name as callgrind wrote it.
    pub name: String,
    /// Instructions executed in the function itself (and what was inlined into it).
    pub own: u64,
    /// `own` plus everything it called (calls to itself not counted twice).
    pub inclusive: u64,
}

/// A parsed dump.
#[derive(Debug, Clone)]
pub struct Profile {
    /// Event names (`Ir` first).
    pub events: Vec<String>,
    /// Instructions executed in the dump's time range (the `summary:` line).
    pub total: u64,
    /// What the dump's cost lines add up to, by callgrind's own sum (the `totals:` line
    /// at the end). It can differ from `summary` by a few hundredths of a percent in
    /// multi-threaded programs; the functions' own costs here must add up to it.
    pub totals: Option<u64>,
    /// Per function, by name, inclusive cost first.
    pub functions: Vec<FnCost>,
}

impl Profile {
    /// Reads a dump file.
    pub fn read(path: &Path) -> io::Result<Profile> {
        let text = std::fs::read_to_string(path)?;
        Profile::parse(&text).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: {e}", path.display()),
            )
        })
    }

    /// Parses the text of a dump. Only the first event is summed.
    pub fn parse(text: &str) -> Result<Profile, String> {
        let mut positions = 1usize;
        let mut events = Vec::new();
        let mut summary = None;
        let mut totals = None;
        // Compressed names: "(id) name" defines, "(id)" refers.
        let mut fn_names: HashMap<u64, String> = HashMap::new();
        let mut current: Option<String> = None;
        let mut callee: Option<String> = None;
        let mut in_call = false;
        // name -> (own, cost of calls to other functions)
        let mut costs: HashMap<String, (u64, u64)> = HashMap::new();
        for (n, line) in text.lines().enumerate() {
            let err = |what: &str| format!("line {}: {what}: {line:?}", n + 1);
            let line = line.trim_end();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let first = line.as_bytes()[0];
            if first.is_ascii_digit() || matches!(first, b'+' | b'-' | b'*') {
                let cost = line
                    .split_ascii_whitespace()
                    .nth(positions)
                    .map(|c| c.parse::<u64>().map_err(|_| err("bad cost")))
                    .transpose()?
                    .unwrap_or(0);
                let Some(f) = current.as_ref() else {
                    return Err(err("cost before any fn="));
                };
                let entry = costs.entry(f.clone()).or_default();
                if in_call {
                    in_call = false;
                    // A call to itself is already inside its own cost.
                    if callee.as_ref() != Some(f) {
                        entry.1 += cost;
                    }
                } else {
                    entry.0 += cost;
                }
                continue;
            }
            let Some((key, value)) = line.split_once(['=', ':']) else {
                return Err(err("not a cost, key=value or header line"));
            };
            let value = value.trim();
            match key {
                "positions" => positions = value.split_ascii_whitespace().count().max(1),
                "events" => events = value.split_ascii_whitespace().map(String::from).collect(),
                "summary" => {
                    summary = value
                        .split_ascii_whitespace()
                        .next()
                        .and_then(|v| v.parse().ok())
                }
                "totals" => {
                    totals = value
                        .split_ascii_whitespace()
                        .next()
                        .and_then(|v| v.parse().ok())
                }
                "fn" => current = Some(name(&mut fn_names, value).map_err(&err)?),
                "cfn" => callee = Some(name(&mut fn_names, value).map_err(&err)?),
                "calls" => in_call = true,
                _ => {}
            }
        }
        let total = summary.ok_or("no summary: line (not a callgrind dump?)")?;
        let mut functions: Vec<FnCost> = costs
            .into_iter()
            .map(|(name, (own, calls))| FnCost {
                name,
                own,
                inclusive: own + calls,
            })
            .collect();
        functions.sort_by(|a, b| b.inclusive.cmp(&a.inclusive).then(a.name.cmp(&b.name)));
        Ok(Profile {
            events,
            total,
            totals,
            functions,
        })
    }
}

/// Resolves a compressed name: `(id) name` defines id, `(id)` refers to it, anything
/// else is the name itself.
fn name(names: &mut HashMap<u64, String>, value: &str) -> Result<String, &'static str> {
    let Some(rest) = value.strip_prefix('(') else {
        return Ok(value.to_owned());
    };
    let (id, after) = rest.split_once(')').ok_or("unclosed (id)")?;
    let id: u64 = id.parse().map_err(|_| "bad (id)")?;
    let after = after.trim();
    if after.is_empty() {
        names
            .get(&id)
            .cloned()
            .ok_or("(id) used before it was defined")
    } else {
        names.insert(id, after.to_owned());
        Ok(after.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A dump as callgrind 3.19 writes one (compressed names and positions, inlined lines
    /// from another file, a recursive call).
    const DUMP: &str = "\
# callgrind format
version: 1
creator: callgrind-3.19.0
pid: 7
cmd:  ./server
part: 1

positions: line
events: Ir
summary: 1000

ob=(1) /bin/server
fl=(1) main.rs
fn=(1) main
10 100
cfl=(2) work.rs
cfn=(2) work
calls=2 5
+1 850
* 50

fl=(2)
fn=(2)
5 300
fi=(3) inlined.rs
+2 200
fe=(2)
cfn=(2)
calls=1 5
-1 120
cfn=(3) memcpy
calls=4 0
* 350
totals: 650
";

    #[test]
    fn sums_per_function_and_counts_calls_once() {
        let p = Profile::parse(DUMP).expect("parses");
        assert_eq!((p.total, p.totals), (1000, Some(650)));
        // The reader's own costs add up to callgrind's sum of the lines.
        assert_eq!(p.functions.iter().map(|f| f.own).sum::<u64>(), 650);
        assert_eq!(p.events, vec!["Ir".to_owned()]);
        let get = |n: &str| p.functions.iter().find(|f| f.name == n).cloned().expect(n);
        // main: own 100 + 50, calls work (850).
        assert_eq!(get("main").own, 150);
        assert_eq!(get("main").inclusive, 1000);
        // work: own 300 + 200 (inlined from another file), its call to itself not added
        // again, memcpy (350) added.
        assert_eq!(get("work").own, 500);
        assert_eq!(get("work").inclusive, 850);
        // memcpy has no lines of its own in this dump, so no row: only its callers' cost.
        assert!(p.functions.iter().all(|f| f.name != "memcpy"));
        assert_eq!(p.functions[0].name, "main", "sorted by inclusive cost");
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        for bad in [
            "",
            "positions: line\nevents: Ir\n10 5\n",
            "summary: 5\nfn=(1\n",
            "summary: 5\nfn=(x) a\n",
            "summary: 5\nfn=(9)\n",
            "summary: 5\nfn=a\n1 x\n",
            "summary: 5\nwhat is this\n",
        ] {
            assert!(Profile::parse(bad).is_err(), "{bad:?} accepted");
        }
        let p = Profile::parse("summary: 5\nfn=a\n1\n").expect("a cost line without cost");
        assert_eq!(p.functions[0].own, 0);
    }

    #[test]
    fn dump_files_are_found_in_order() {
        let dir = std::env::temp_dir().join(format!("throng-cg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let out = dir.join("srv.out");
        for n in [2, 10, 1] {
            std::fs::write(dir.join(format!("srv.out.{n}")), "").unwrap();
        }
        std::fs::write(dir.join("srv.out"), "").unwrap();
        std::fs::write(dir.join("srv.outx.3"), "").unwrap();
        let found: Vec<u32> = dumps(&out).into_iter().map(|(n, _)| n).collect();
        assert_eq!(found, vec![1, 2, 10]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
