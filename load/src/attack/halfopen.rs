//! Half-open peers: a network namespace made for the run, joined to this one by a veth
//! pair; N peers inside it (a child process started with `ip netns exec`) upgrade to a
//! server listening on the host end's address, then the namespace's end of the link goes
//! down and the child is killed. Its FINs and resets go into a dead link, so the server
//! learns nothing: only its own pings (every 30 s of silence by default, 10 s for the
//! pong) can find the peers gone. The run waits for the server to let them go.
//!
//! Needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN) and `ip`; the namespace and the link are
//! removed when the [`Netns`] is dropped.

use std::io::{self, BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{Plan, ws};

/// A namespace and its veth pair.
#[derive(Debug)]
pub struct Netns {
    name: String,
    host_if: String,
    peer_if: String,
    /// The host end's address (where the server listens).
    pub host_ip: Ipv4Addr,
}

fn ip(args: &[&str]) -> io::Result<()> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

impl Netns {
    /// Creates `throng-atk-PID-K` with a veth pair on 10.213.X.0/24 (X from the process
    /// id and a counter, so runs side by side do not meet).
    pub fn create() -> io::Result<Netns> {
        static COUNT: AtomicU32 = AtomicU32::new(0);
        let k = COUNT.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let x = ((pid + k * 7) % 250 + 1) as u8;
        let tag = format!("{}{k}", pid % 100_000);
        let ns = Netns {
            name: format!("throng-atk-{pid}-{k}"),
            host_if: format!("tha{tag}"),
            peer_if: format!("thb{tag}"),
            host_ip: Ipv4Addr::new(10, 213, x, 1),
        };
        ip(&["netns", "add", &ns.name])?;
        // From here on Drop removes what was made.
        let peer_ip = format!("10.213.{x}.2/24");
        let host_ip = format!("{}/24", ns.host_ip);
        ip(&[
            "link",
            "add",
            &ns.host_if,
            "type",
            "veth",
            "peer",
            "name",
            &ns.peer_if,
        ])?;
        ip(&["link", "set", &ns.peer_if, "netns", &ns.name])?;
        ip(&["addr", "add", &host_ip, "dev", &ns.host_if])?;
        ip(&["link", "set", &ns.host_if, "up"])?;
        ip(&["-n", &ns.name, "addr", "add", &peer_ip, "dev", &ns.peer_if])?;
        ip(&["-n", &ns.name, "link", "set", &ns.peer_if, "up"])?;
        ip(&["-n", &ns.name, "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// Takes the namespace's end of the link down: nothing passes either way any more.
    pub fn cut(&self) -> io::Result<()> {
        ip(&["-n", &self.name, "link", "set", &self.peer_if, "down"])
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = ip(&["link", "del", &self.host_if]);
        let _ = ip(&["netns", "del", &self.name]);
    }
}

/// Runs the peers in `ns` against `addr`, then cuts them off.
pub fn run(addr: SocketAddr, plan: &Plan, ns: &Netns) -> io::Result<Value> {
    let exe = std::env::current_exe()?;
    let start = Instant::now();
    let mut child = Command::new("ip")
        .args(["netns", "exec", &ns.name])
        .arg(&exe)
        .args(["attack-peers", "--addr", &addr.to_string()])
        .args(["--connections", &plan.half_open.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let stdout = child.stdout.take().expect("piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    let ready = rx.recv_timeout(Duration::from_secs(120));
    let ramp_s = start.elapsed().as_secs_f64();
    // Cut first, then kill: the child's sockets close into a link that is down.
    let cut = ns.cut();
    let _ = child.kill();
    let _ = child.wait();
    cut?;
    let line = ready.map_err(|_| io::Error::other("the peers did not report within 120 s"))?;
    let v: Value = serde_json::from_str(&line)
        .map_err(|e| io::Error::other(format!("peers said {line:?}: {e}")))?;
    Ok(json!({
        "peers": plan.half_open,
        "opened": v["open"],
        "failed": v["failed"],
        "ramp_s": (ramp_s * 100.0).round() / 100.0,
        "error": v["error"],
    }))
}

/// The child inside the namespace: opens `n` connections to `addr`, prints
/// `{"open":..,"failed":..}` and holds them until stdin ends (or it is killed).
pub fn peers(addr: SocketAddr, n: usize) -> io::Result<()> {
    crate::sys::raise_nofile();
    let mut held = Vec::with_capacity(n);
    let mut failed = 0;
    let mut error = None;
    for i in 0..n {
        match ws::websocket(addr, Ipv4Addr::UNSPECIFIED, 0x4a1f_0000 + i as u64) {
            Ok(s) => held.push(s),
            Err(e) => {
                failed += 1;
                error.get_or_insert(e.to_string());
            }
        }
    }
    let mut out = io::stdout().lock();
    writeln!(
        out,
        "{}",
        json!({"open": held.len(), "failed": failed, "error": error})
    )?;
    out.flush()?;
    drop(out);
    io::copy(&mut io::stdin().lock(), &mut io::sink())?;
    Ok(())
}
