//! The server under attack: the echo binary started for one mode on a free port of the
//! address asked for, its `listening` line awaited, stopped with SIGTERM at the end (and
//! killed if it has not exited within ten seconds).

use std::io::{self, BufRead, BufReader};
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A running server.
#[derive(Debug)]
pub struct Server {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    /// What it printed first (`echo listening on ...`).
    pub banner: String,
}

impl Server {
    /// Starts `bin --addr IP:PORT --backend BACKEND ARGS...` and waits (at most ten
    /// seconds) for a line with "listening".
    pub fn start(bin: &Path, ip: IpAddr, backend: &str, args: &[String]) -> io::Result<Server> {
        // A port free now; the server binds it a moment later (nothing else on this
        // machine picks ports in that range on purpose).
        let port = TcpListener::bind((ip, 0))?.local_addr()?.port();
        let addr = SocketAddr::new(ip, port);
        let mut child = Command::new(bin)
            .args(["--addr", &addr.to_string(), "--backend", backend])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| io::Error::other(format!("{}: {e}", bin.display())))?;
        let stdout = child.stdout.take().expect("piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    // Nobody listens any more; keep draining so the server never blocks.
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if line.contains("listening") => {
                    return Ok(Server {
                        child,
                        addr,
                        banner: line,
                    });
                }
                Ok(_) => {}
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(io::Error::other(format!(
                        "{} did not say it was listening within 10 s",
                        bin.display()
                    )));
                }
            }
        }
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Still running?
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGTERM, then the exit status (`None`: it had to be killed, or had died before:
    /// then the status it died with is described).
    pub fn stop(mut self) -> Result<(), String> {
        if let Ok(Some(status)) = self.child.try_wait() {
            return Err(format!("the server had exited: {status}"));
        }
        // SAFETY: kill only sends a signal, to our own child (not yet reaped).
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            match self.child.try_wait() {
                Ok(Some(s)) if s.success() => return Ok(()),
                Ok(Some(s)) => return Err(format!("the server exited with {s}")),
                _ => std::thread::sleep(Duration::from_millis(50)),
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        Err("the server did not exit within 10 s of SIGTERM (killed)".into())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
