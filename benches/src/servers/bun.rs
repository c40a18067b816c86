//! Bun (its WebSocket server is uWebSockets inside) running `benches/servers/bun/echo.js`,
//! the same paths as the Rust servers. The binary comes from the npm package `bun`,
//! installed under `benches/servers/bun/node_modules` by `install.sh` there (the harness
//! runs it; it is not in git).
//!
//! `throng-bench serve --server bun` pins itself like the others, raises the descriptor
//! limit, and then replaces itself with Bun (`exec`), so the process the harness measures
//! (CPU, RSS) is Bun's, with every thread it starts on the pinned CPUs.

use std::io;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::time::Duration;

use super::ServeOptions;

/// The directory of `echo.js`, `package.json` and `install.sh`.
pub fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("servers/bun")
}

/// The installed `bun` binary, if there is one.
pub fn binary() -> Option<PathBuf> {
    let bin = dir().join("node_modules/.bin/bun");
    bin.is_file().then_some(bin)
}

/// The command that runs the Bun server on `addr` (for `serve`'s exec, and for `count`,
/// which runs it under valgrind directly).
pub fn command(addr: std::net::SocketAddr) -> Option<Command> {
    let mut c = Command::new(binary()?);
    c.arg(dir().join("echo.js"))
        .arg("--addr")
        .arg(addr.to_string());
    Some(c)
}

/// Runs `install.sh` (a no-op when the pinned version is installed), at most `limit`
/// long. `Err`: why Bun cannot be measured.
pub fn install(limit: Duration) -> Result<(), String> {
    let script = dir().join("install.sh");
    let mut child = Command::new("bash")
        .arg(&script)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    let deadline = std::time::Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = io::Read::read_to_string(&mut e, &mut err);
                }
                let tail: String = err.lines().rev().take(3).collect::<Vec<_>>().join(" / ");
                return Err(format!("{} failed ({status}): {tail}", script.display()));
            }
            Ok(None) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(100));
            }
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "{} did not finish in {} s",
                    script.display(),
                    limit.as_secs()
                ));
            }
            Err(e) => return Err(format!("{}: {e}", script.display())),
        }
    }
}

/// Becomes the Bun server (returns only if that fails).
pub fn run(opts: &ServeOptions) -> ExitCode {
    let Some(mut command) = command(opts.addr) else {
        return super::unavailable(&format!(
            "Bun is not installed (run {})",
            dir().join("install.sh").display()
        ));
    };
    let e = command.exec();
    eprintln!("serve: cannot start Bun: {e}");
    ExitCode::FAILURE
}
