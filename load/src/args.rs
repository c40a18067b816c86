//! The command line: `throng-load hold ...` and `throng-load echo ...`. Every value is
//! checked here, so a mistyped argument is a usage error, never a panic or a silent
//! default.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use crate::attack::{self, Mode, Plan};
use crate::tls::Tls;
use crate::{echo, hold};

/// The usage text.
pub const USAGE: &str = "\
usage:
  throng-load hold --url ws[s]://HOST:PORT/PATH --connections N [--source-offset K]
                   [--open-window W (256)] [--open-timeout SECS (120)] [--cafile PEM]
                   [--close-stall SECS (30)]
      N connections held open, pings answered; JSON lines on stdout; commands on stdin:
      expect-broadcast | stats | close (EOF: close). The close waits for the close
      handshakes while they keep finishing; after --close-stall with none finished,
      the rest count as close failures
  throng-load echo --url ws[s]://HOST:PORT/PATH --connections N --size BYTES
                   [--rate MSGS_PER_S] --duration SECS [--warmup SECS (1)]
                   [--processes P] [--json] [--source-offset K]
                   [--open-window W (256)] [--open-timeout SECS (120)]
                   [--child] [--hold-open] [--cafile PEM]
      echo throughput and latency: closed loop (one message in flight per connection)
      or a fixed aggregate rate (latency from each message's scheduled time); the result
      is one JSON object, the last line on stdout.
      --child: after the ramp print {\"event\":\"ready\",...} and start on a line `go`
      from stdin; --hold-open: after the report keep the connections open until stdin
      ends (one process only), so a harness can read the server's counters first
  wss:// (hold and echo): TLS with rustls (ring), ALPN http/1.1, no session resumption;
      --cafile PEM: trust these certificates only (the name checked is HOST); without it
      any certificate is accepted (handshake signatures are still verified)
  throng-load attack --server-bin PATH [--backend uring|epoll|both (both)]
                     [--modes all|M,M,.. (all)] [--small] [--duration SECS (15)]
                     [--slowloris N (10000)] [--flood N (32)] [--flood-size BYTES (16777216)]
                     [--half-open N (1000)] [--threads T (2)] [--margin-mib M (24)]
                     [--release-timeout SECS (20)] [--server-arg ARG]... [--out FILE.md]
      the attack run: for each backend and mode, a fresh `PATH --addr A --backend B`,
      a canary echoing every 100 ms, the server's RSS, descriptors and CPU before,
      during and after; a JSON line per mode and a markdown table (also in FILE.md and
      FILE.json). Modes: slowloris, flood, half-open (root: a network namespace),
      garbage, rst-storm, connect-storm. --small: the smoke test's counts (300, 4 x
      4 MiB, 50, 3 s). Exit status 1 if any mode failed (see `problems`)";

/// Where to connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// The server address.
    pub addr: SocketAddr,
    /// `host[:port]` as written, for the `Host` header.
    pub host: String,
    /// The request path (with its query, if any).
    pub path: String,
    /// `wss://`: TLS.
    pub tls: bool,
}

impl Url {
    /// The host without the port (the name TLS asks the server for).
    pub fn hostname(&self) -> &str {
        match self.host.rsplit_once(':') {
            Some((h, port)) if !port.contains(']') => h,
            _ => &self.host,
        }
    }

    /// The TLS client of a `wss://` URL (certificates from `cafile`, or any), `None` for
    /// `ws://`.
    pub fn tls_client(&self, cafile: Option<&std::path::Path>) -> std::io::Result<Option<Tls>> {
        if self.tls {
            Tls::new(self.hostname(), cafile).map(Some)
        } else {
            Ok(None)
        }
    }
}

impl std::fmt::Display for Url {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.tls { "wss" } else { "ws" };
        write!(f, "{scheme}://{}{}", self.host, self.path)
    }
}

/// Reads `ws[s]://host[:port][/path]`; the host may be a name, resolved once here.
pub fn parse_url(url: &str) -> Result<Url, String> {
    let (rest, tls) = match url.split_once("://") {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("ws") => (rest, false),
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("wss") => (rest, true),
        _ => return Err(format!("{url}: not a ws:// or wss:// URL")),
    };
    let (host, path) = match rest.find(['/', '?']) {
        Some(i) if rest[i..].starts_with('/') => (&rest[..i], rest[i..].to_string()),
        Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
        None => (rest, "/".to_string()),
    };
    if host.is_empty() || host.contains('@') {
        return Err(format!("{url}: no host (or a user name, not supported)"));
    }
    let with_port = if host.ends_with(']') || !host.contains(':') {
        format!("{host}:{}", if tls { 443 } else { 80 })
    } else {
        host.to_string()
    };
    let addr = with_port
        .to_socket_addrs()
        .map_err(|e| format!("{host}: {e}"))?
        .next()
        .ok_or_else(|| format!("{host}: no address"))?;
    Ok(Url {
        addr,
        host: host.to_string(),
        path,
        tls,
    })
}

/// What the command line asks for.
#[derive(Debug, Clone)]
pub enum Command {
    /// `hold`.
    Hold(hold::Options),
    /// `echo`.
    Echo(echo::Options),
    /// `attack`.
    Attack(attack::Options),
    /// `attack-peers` (internal: the half-open peers inside their namespace).
    AttackPeers {
        /// The server.
        addr: SocketAddr,
        /// Peers.
        connections: usize,
    },
    /// `help`, `-h`, `--help`.
    Help,
}

/// Flag values as given, checked one by one.
struct Flags {
    pairs: Vec<(String, Option<String>)>,
}

impl Flags {
    /// Splits `--name value`, `--name=value` and the bare `switches`.
    fn read(args: &[String], switches: &[&str]) -> Result<Flags, String> {
        let mut pairs = Vec::new();
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let Some(name) = a.strip_prefix("--") else {
                return Err(format!("unexpected argument {a:?}"));
            };
            if let Some((n, v)) = name.split_once('=') {
                pairs.push((n.to_string(), Some(v.to_string())));
            } else if switches.contains(&name) {
                pairs.push((name.to_string(), None));
            } else {
                let v = it.next().ok_or_else(|| format!("--{name} needs a value"))?;
                pairs.push((name.to_string(), Some(v.clone())));
            }
        }
        Ok(Flags { pairs })
    }

    /// Fails on a flag not in `known`, or given twice.
    fn only(&self, known: &[&str]) -> Result<(), String> {
        for (i, (name, _)) in self.pairs.iter().enumerate() {
            if !known.contains(&name.as_str()) {
                return Err(format!("unknown option --{name}"));
            }
            if self.pairs[..i].iter().any(|(n, _)| n == name) {
                return Err(format!("--{name} given twice"));
            }
        }
        Ok(())
    }

    fn all(&self, name: &str) -> Vec<String> {
        self.pairs
            .iter()
            .filter(|(n, _)| n == name)
            .filter_map(|(_, v)| v.clone())
            .collect()
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.as_deref())
    }

    fn switch(&self, name: &str) -> bool {
        self.pairs.iter().any(|(n, _)| n == name)
    }

    fn required(&self, name: &str) -> Result<&str, String> {
        self.get(name)
            .ok_or_else(|| format!("--{name} is required"))
    }

    fn count(&self, name: &str, default: Option<usize>) -> Result<usize, String> {
        match self.get(name) {
            Some(v) => v
                .parse()
                .map_err(|_| format!("--{name}: {v:?} is not a whole number")),
            None => default.ok_or_else(|| format!("--{name} is required")),
        }
    }

    fn seconds(&self, name: &str, default: Option<f64>) -> Result<Duration, String> {
        let s = match self.get(name) {
            Some(v) => v
                .parse::<f64>()
                .map_err(|_| format!("--{name}: {v:?} is not a number of seconds"))?,
            None => default.ok_or_else(|| format!("--{name} is required"))?,
        };
        if !(0.0..=1e6).contains(&s) {
            return Err(format!("--{name}: {s} is out of range (0 to 1e6 seconds)"));
        }
        Ok(Duration::from_secs_f64(s))
    }
}

/// The largest message `echo` sends (the engine's default message limit).
pub const MAX_SIZE: usize = 16 << 20;

/// Reads the arguments after the program name.
pub fn parse(args: &[String]) -> Result<Command, String> {
    let Some((mode, rest)) = args.split_first() else {
        return Err("no command".into());
    };
    match mode.as_str() {
        "hold" => {
            let f = Flags::read(rest, &[])?;
            f.only(&[
                "url",
                "connections",
                "source-offset",
                "open-window",
                "open-timeout",
                "close-stall",
                "cafile",
            ])?;
            let url = parse_url(f.required("url")?)?;
            let tls = tls_of(&url, &f)?;
            let connections = f.count("connections", None)?;
            if connections == 0 {
                return Err("--connections must be at least 1".into());
            }
            Ok(Command::Hold(hold::Options {
                addr: url.addr,
                host: url.host,
                path: url.path,
                connections,
                source_offset: f.count("source-offset", Some(0))?,
                open_window: f.count("open-window", Some(256))?.max(1),
                open_timeout: f.seconds("open-timeout", Some(120.0))?,
                close_stall: f.seconds("close-stall", Some(30.0))?,
                tls,
            }))
        }
        "echo" => {
            let f = Flags::read(rest, &["json", "child", "hold-open"])?;
            f.only(&[
                "url",
                "connections",
                "size",
                "rate",
                "duration",
                "warmup",
                "processes",
                "json",
                "source-offset",
                "open-window",
                "open-timeout",
                "child",
                "hold-open",
                "cafile",
            ])?;
            let url = parse_url(f.required("url")?)?;
            let tls = tls_of(&url, &f)?;
            let connections = f.count("connections", None)?;
            if connections == 0 {
                return Err("--connections must be at least 1".into());
            }
            let size = f.count("size", None)?;
            if size > MAX_SIZE {
                return Err(format!("--size: at most {MAX_SIZE} bytes"));
            }
            let rate = match f.get("rate") {
                None => None,
                Some(v) => match v.parse::<f64>() {
                    Ok(r) if r.is_finite() && r > 0.0 && r <= 1e9 => Some(r),
                    _ => return Err(format!("--rate: {v:?} is not a rate (0 < r <= 1e9)")),
                },
            };
            let duration = f.seconds("duration", None)?;
            if duration.is_zero() {
                return Err("--duration must be more than 0".into());
            }
            let processes = match f.get("processes") {
                None => None,
                Some(_) => Some(f.count("processes", None)?),
            };
            if processes == Some(0) {
                return Err("--processes must be at least 1".into());
            }
            Ok(Command::Echo(echo::Options {
                url,
                connections,
                size,
                rate,
                duration,
                warmup: f.seconds("warmup", Some(1.0))?,
                processes,
                json: f.switch("json"),
                source_offset: f.count("source-offset", Some(0))?,
                open_window: f.count("open-window", Some(256))?.max(1),
                open_timeout: f.seconds("open-timeout", Some(120.0))?,
                child: f.switch("child"),
                hold_open: f.switch("hold-open"),
                cafile: f.get("cafile").map(PathBuf::from),
                tls,
            }))
        }
        "attack" => parse_attack(rest),
        "attack-peers" => {
            let f = Flags::read(rest, &[])?;
            f.only(&["addr", "connections"])?;
            let addr = f.required("addr")?;
            Ok(Command::AttackPeers {
                addr: addr
                    .parse()
                    .map_err(|_| format!("--addr: {addr:?} is not HOST:PORT"))?,
                connections: f.count("connections", None)?,
            })
        }
        "help" | "-h" | "--help" => Ok(Command::Help),
        other => Err(format!("unknown command {other:?}")),
    }
}

/// The TLS client for `--url` and `--cafile` (which needs a `wss://` URL).
fn tls_of(url: &Url, f: &Flags) -> Result<Option<Tls>, String> {
    let cafile = f.get("cafile").map(std::path::Path::new);
    if cafile.is_some() && !url.tls {
        return Err("--cafile needs a wss:// URL".into());
    }
    url.tls_client(cafile).map_err(|e| format!("--cafile: {e}"))
}

fn parse_attack(rest: &[String]) -> Result<Command, String> {
    let f = Flags::read(rest, &["small"])?;
    // --server-arg may repeat; every other flag once.
    let once = Flags {
        pairs: f
            .pairs
            .iter()
            .filter(|(n, _)| n != "server-arg")
            .cloned()
            .collect(),
    };
    once.only(&[
        "server-bin",
        "backend",
        "modes",
        "small",
        "duration",
        "slowloris",
        "flood",
        "flood-size",
        "half-open",
        "threads",
        "margin-mib",
        "release-timeout",
        "out",
    ])?;
    let mut plan = if f.switch("small") {
        Plan::small()
    } else {
        Plan::full()
    };
    plan.slowloris = f.count("slowloris", Some(plan.slowloris))?;
    plan.flood = f.count("flood", Some(plan.flood))?.max(1);
    plan.flood_size = f.count("flood-size", Some(plan.flood_size))?;
    if plan.flood_size > MAX_SIZE {
        return Err(format!("--flood-size: at most {MAX_SIZE} bytes"));
    }
    plan.half_open = f.count("half-open", Some(plan.half_open))?.max(1);
    plan.threads = f.count("threads", Some(plan.threads))?.clamp(1, 64);
    plan.duration = f.seconds("duration", Some(plan.duration.as_secs_f64()))?;
    if plan.duration.is_zero() || plan.duration > Duration::from_secs(600) {
        return Err("--duration: more than 0 and at most 600 seconds".into());
    }
    if plan.slowloris > echo::PER_PROCESS {
        return Err(format!(
            "--slowloris: at most {} (one process's descriptors)",
            echo::PER_PROCESS
        ));
    }
    let backends = match f.get("backend").unwrap_or("both") {
        "both" => vec!["uring".to_string(), "epoll".to_string()],
        b @ ("uring" | "epoll") => vec![b.to_string()],
        other => return Err(format!("--backend: {other:?} is not uring, epoll or both")),
    };
    let modes = match f.get("modes").unwrap_or("all") {
        "all" => Mode::ALL.to_vec(),
        list => list
            .split(',')
            .map(|m| Mode::parse(m.trim()).ok_or_else(|| format!("--modes: no mode {m:?}")))
            .collect::<Result<_, _>>()?,
    };
    Ok(Command::Attack(attack::Options {
        server_bin: f.required("server-bin")?.into(),
        server_args: f.all("server-arg"),
        backends,
        modes,
        plan,
        margin: f.count("margin-mib", Some(24))? as u64 * attack::MIB,
        release_timeout: f.seconds("release-timeout", Some(20.0))?,
        out: f.get("out").map(Into::into),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn urls() {
        let u = parse_url("ws://127.0.0.1:9001/chat?room=1").unwrap();
        assert_eq!(u.addr, "127.0.0.1:9001".parse().unwrap());
        assert_eq!(
            (u.host.as_str(), u.path.as_str()),
            ("127.0.0.1:9001", "/chat?room=1")
        );
        let u = parse_url("WS://127.0.0.1:9001").unwrap();
        assert_eq!(u.path, "/");
        assert_eq!(parse_url("ws://127.0.0.1?x=1").unwrap().path, "/?x=1");
        assert_eq!(parse_url("ws://127.0.0.1").unwrap().addr.port(), 80);
        let u = parse_url("wss://localhost:9443/x").unwrap();
        assert!(u.tls && !parse_url("ws://127.0.0.1").unwrap().tls);
        assert_eq!(
            (u.hostname(), u.to_string().as_str()),
            ("localhost", "wss://localhost:9443/x")
        );
        assert_eq!(parse_url("WSS://127.0.0.1").unwrap().addr.port(), 443);
        assert_eq!(parse_url("wss://[::1]:7/").unwrap().hostname(), "[::1]");
        assert_eq!(parse_url("wss://[::1]/").unwrap().hostname(), "[::1]");
        assert_eq!(
            parse_url("ws://[::1]:7/").unwrap().addr,
            "[::1]:7".parse().unwrap()
        );
        for bad in [
            "",
            "127.0.0.1:9001",
            "http://127.0.0.1/",
            "wsx://127.0.0.1/",
            "ws://",
            "ws:///x",
            "ws://u@127.0.0.1/",
            "ws://127.0.0.1:99999/",
            "ws://127.0.0.1:x/",
            "ws://[::1/",
        ] {
            assert!(parse_url(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn hold_arguments() {
        let Ok(Command::Hold(o)) = parse(&args(
            "hold --url ws://127.0.0.1:9/ --connections 7 --source-offset=3 --open-timeout 0.5",
        )) else {
            panic!("not parsed");
        };
        assert_eq!((o.connections, o.source_offset, o.open_window), (7, 3, 256));
        assert_eq!(o.open_timeout, Duration::from_millis(500));
        assert_eq!(o.close_stall, Duration::from_secs(30));
        let Ok(Command::Hold(o)) = parse(&args(
            "hold --url ws://127.0.0.1:9/ --connections 7 --close-stall 1.5",
        )) else {
            panic!("not parsed");
        };
        assert_eq!(o.close_stall, Duration::from_millis(1500));
        for bad in [
            "",
            "holdx",
            "hold",
            "hold --url ws://127.0.0.1:9/",
            "hold --url ws://127.0.0.1:9/ --connections",
            "hold --url ws://127.0.0.1:9/ --connections -1",
            "hold --url ws://127.0.0.1:9/ --connections 0",
            "hold --url ws://127.0.0.1:9/ --connections 5 --source-offset x",
            "hold --url ws://127.0.0.1:9/ --connections 5 --open-timeout nan",
            "hold --url ws://127.0.0.1:9/ --connections 5 --open-timeout -1",
            "hold --url ws://127.0.0.1:9/ --connections 5 --open-timeout 1e300",
            "hold --url ws://127.0.0.1:9/ --connections 5 --close-stall -1",
            "hold --url ws://127.0.0.1:9/ --connections 5 --connections 6",
            "hold --url ws://127.0.0.1:9/ --connections 5 --json",
            "hold --url ws://127.0.0.1:9/ --connections 5 stray",
            "hold --url ws://127.0.0.1:9/ --connections 5 --cafile x.pem",
            "hold --url wss://127.0.0.1:9/ --connections 5 --cafile /nonexistent.pem",
        ] {
            assert!(parse(&args(bad)).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn attack_arguments() {
        let Ok(Command::Attack(o)) = parse(&args(
            "attack --server-bin /bin/echo --backend epoll --modes flood,garbage --small \
             --server-arg --x --server-arg 1 --flood 2",
        )) else {
            panic!("not parsed");
        };
        assert_eq!(o.backends, ["epoll"]);
        assert_eq!(o.modes, [Mode::Flood, Mode::Garbage]);
        assert_eq!(o.server_args, ["--x", "1"]);
        assert_eq!((o.plan.flood, o.plan.slowloris), (2, 300));
        let Ok(Command::Attack(o)) = parse(&args("attack --server-bin x")) else {
            panic!("not parsed");
        };
        assert_eq!(
            (o.backends.len(), o.modes.len(), o.plan.slowloris),
            (2, 6, 10_000)
        );
        for bad in [
            "attack",
            "attack --server-bin x --modes bogus",
            "attack --server-bin x --backend io_uring",
            "attack --server-bin x --duration 0",
            "attack --server-bin x --slowloris 50000",
            "attack --server-bin x --flood-size 99999999999",
            "attack --server-bin x --flood 3 --flood 4",
        ] {
            assert!(parse(&args(bad)).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn echo_arguments() {
        let Ok(Command::Echo(o)) = parse(&args(
            "echo --url ws://127.0.0.1:9/ --connections 10 --size 64 --duration 2 --json",
        )) else {
            panic!("not parsed");
        };
        assert_eq!(
            (o.connections, o.size, o.rate, o.processes),
            (10, 64, None, None)
        );
        assert!(o.json && !o.child && !o.hold_open);
        assert_eq!(o.warmup, Duration::from_secs(1));
        let Ok(Command::Echo(o)) = parse(&args(
            "echo --url ws://127.0.0.1:9/ --connections 10 --size 0 --duration 2 --rate 500 \
             --processes 2 --warmup 0 --child --hold-open",
        )) else {
            panic!("not parsed");
        };
        assert!(o.child && o.hold_open);
        assert_eq!(
            (o.rate, o.processes, o.warmup),
            (Some(500.0), Some(2), Duration::ZERO)
        );
        let base = "echo --url ws://127.0.0.1:9/ --connections 10";
        for bad in [
            format!("{base} --size 64"),
            format!("{base} --duration 1"),
            format!("{base} --size 64 --duration 0"),
            format!("{base} --size 99999999999 --duration 1"),
            format!("{base} --size 64 --duration 1 --rate 0"),
            format!("{base} --size 64 --duration 1 --rate inf"),
            format!("{base} --size 64 --duration 1 --rate -5"),
            format!("{base} --size 64 --duration 1 --processes 0"),
            format!("{base} --size 64 --duration 1 --warmup x"),
            format!("{base} --size 64 --duration 1 --bogus 1"),
        ] {
            assert!(parse(&args(&bad)).is_err(), "{bad:?} accepted");
        }
    }
}
