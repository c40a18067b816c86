//! throng-load: the project's WebSocket load generator for loopback targets.
//!
//! ```text
//! throng-load hold --url ws://127.0.0.1:PORT/PATH --connections N [--source-offset K]
//!                  [--open-window W] [--open-timeout SECS]
//! ```
//! `hold` opens N connections from source addresses 127.0.0.2..=127.0.0.250 (real
//! handshakes with the accept key checked, every frame masked), answers the server's pings
//! and reports JSON lines on stdout: `progress` while ramping, then `ramped`. Commands on
//! stdin, one per line: `expect-broadcast` (reports `broadcast` once every open connection
//! has received a message, with CLOCK_MONOTONIC times of the first and last), `stats`, and
//! `close` (or EOF: a close handshake on every connection, then `closed`, exit 0).
//! One process holds what RLIMIT_NOFILE allows (20,000 here): callers spread more over
//! several processes with distinct `--source-offset`s.

mod client;
mod hold;

use std::process::ExitCode;
use std::time::Duration;

fn usage() -> ExitCode {
    eprintln!(
        "usage: throng-load hold --url ws://HOST:PORT/PATH --connections N [--source-offset K] \
         [--open-window W] [--open-timeout SECS]"
    );
    ExitCode::from(2)
}

fn parse_url(url: &str) -> Result<(std::net::SocketAddr, String, String), String> {
    let rest = url
        .strip_prefix("ws://")
        .ok_or_else(|| format!("{url}: only ws:// URLs are supported"))?;
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr = host
        .parse()
        .map_err(|e| format!("{host}: not an IP:port address ({e})"))?;
    Ok((addr, host.to_string(), path.to_string()))
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    if args.next().as_deref() != Some("hold") {
        return usage();
    }
    let mut url = None;
    let mut connections = None;
    let mut source_offset = 0;
    let mut open_window = 256;
    let mut open_timeout = 120;
    while let Some(flag) = args.next() {
        let Some(value) = args.next() else {
            return usage();
        };
        let num = |v: &str| v.parse::<usize>().ok();
        match flag.as_str() {
            "--url" => url = Some(value),
            "--connections" => connections = num(&value),
            "--source-offset" => source_offset = num(&value).unwrap_or(0),
            "--open-window" => open_window = num(&value).unwrap_or(256).max(1),
            "--open-timeout" => open_timeout = num(&value).unwrap_or(120) as u64,
            _ => return usage(),
        }
    }
    let (Some(url), Some(connections)) = (url, connections) else {
        return usage();
    };
    let (addr, host, path) = match parse_url(&url) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("throng-load: {e}");
            return ExitCode::from(2);
        }
    };
    let opts = hold::Options {
        addr,
        host,
        path,
        connections,
        source_offset,
        open_window,
        open_timeout: Duration::from_secs(open_timeout),
    };
    match hold::run(opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("throng-load: {e}");
            ExitCode::FAILURE
        }
    }
}
