//! The examples' command line (issue 18): `--help` exits 0 and gives every flag's default,
//! a bad value names the flag and the value (status 2), a host name in `--addr` is
//! resolved, and echo selects the first subprotocol offered when none is configured.
//!
//! The examples are built first in the profile and target directory of this test (as
//! tests/c10m.rs does: `cargo test --test examples_cli` alone would not build them).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// `target/<profile>` of this test binary (`target/<profile>/deps/examples_cli-HASH`).
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("own path");
    exe.parent().and_then(Path::parent).unwrap().to_path_buf()
}

/// Builds echo, chat and c10m once; returns `target/<profile>/examples`.
fn examples() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = profile_dir();
        let profile = match dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") | None => "dev",
            Some(p) => p,
        };
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "--profile", profile, "-p", "throng"])
            .args([
                "--example",
                "echo",
                "--example",
                "chat",
                "--example",
                "c10m",
            ])
            .arg("--target-dir")
            .arg(dir.parent().unwrap())
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stdout(Stdio::null())
            .status()
            .expect("run cargo");
        assert!(status.success(), "cargo build of the examples failed");
        dir.join("examples")
    })
}

fn run(example: &str, args: &[&str]) -> Output {
    Command::new(examples().join(example))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run example")
}

/// Runs a command line that must be refused: status 2, and stderr names every `needle`.
fn refused(example: &str, args: &[&str], needles: &[&str]) {
    let out = run(example, args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{example} {args:?}: {err}");
    for n in needles {
        assert!(
            err.contains(n),
            "{example} {args:?}: stderr lacks {n:?}: {err}"
        );
    }
}

#[test]
fn help_exits_zero_and_gives_every_default() {
    let flags: &[(&str, &[&str])] = &[
        (
            "echo",
            &[
                "--addr",
                "--backend",
                "--threads",
                "--max-message",
                "--idle-timeout",
                "--subprotocol",
            ],
        ),
        ("chat", &["--addr", "--backend", "--threads"]),
        (
            "c10m",
            &["--connections", "--hold", "--ping-interval", "--json"],
        ),
    ];
    for (example, names) in flags {
        for help in ["--help", "-h"] {
            let out = run(example, &[help]);
            let text = String::from_utf8_lossy(&out.stdout);
            assert_eq!(out.status.code(), Some(0), "{example} {help}: {text}");
            for name in *names {
                let line = text
                    .lines()
                    .find(|l| l.trim_start().starts_with(&format!("{name} ")))
                    .unwrap_or_else(|| panic!("{example} --help lacks {name}: {text}"));
                assert!(line.contains("default"), "{example}: no default: {line}");
            }
        }
    }
    let echo = String::from_utf8_lossy(&run("echo", &["--help"]).stdout).into_owned();
    assert!(echo.contains("(default: 127.0.0.1:9001)"), "{echo}");
    assert!(echo.contains("(default: 16M)"), "{echo}");
}

#[test]
fn bad_values_name_the_flag_and_the_value() {
    refused(
        "echo",
        &["--threads", "0"],
        &["--threads", "\"0\"", "at least 1"],
    );
    refused("echo", &["--threads", "many"], &["--threads", "\"many\""]);
    refused(
        "echo",
        &["--max-message", "1Q"],
        &["--max-message", "\"1Q\""],
    );
    refused("echo", &["--max-message", "0"], &["--max-message", "\"0\""]);
    refused(
        "echo",
        &["--addr", "127.0.0.1"],
        &["--addr", "\"127.0.0.1\""],
    );
    refused(
        "echo",
        &["--addr", "no-such-host.invalid:9001"],
        &["--addr", "no-such-host.invalid:9001", "cannot resolve"],
    );
    refused("echo", &["--backend", "kqueue"], &["--backend", "kqueue"]);
    refused(
        "echo",
        &["--bogus", "1"],
        &["unknown flag", "--bogus", "--help"],
    );
    refused("echo", &["--threads"], &["--threads", "needs a value"]);
    refused("chat", &["--threads", "0"], &["--threads", "\"0\""]);
    refused("chat", &["--port", "1"], &["unknown flag", "--port"]);
    refused("c10m", &["--connections", "0"], &["--connections", "\"0\""]);
    refused("c10m", &["--hold", "-1"], &["--hold", "\"-1\""]);
    refused("c10m", &["--json=yes"], &["--json", "no value"]);
}

/// An echo process that printed its listening line; killed on drop if still running.
struct Echo {
    child: Child,
    addr: String,
    line: String,
}

impl Drop for Echo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_echo(args: &[&str]) -> Echo {
    let mut child = Command::new(examples().join("echo"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start echo");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).expect("listening line");
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    let addr = line
        .split("ws://")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_owned();
    Echo { child, addr, line }
}

/// Sends an upgrade offering `protocols`; returns the response head.
fn upgrade(addr: &str, protocols: Option<&str>) -> String {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let offer = protocols.map_or(String::new(), |p| {
        format!("Sec-WebSocket-Protocol: {p}\r\n")
    });
    let req = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{offer}\r\n"
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    let deadline = Instant::now() + Duration::from_secs(5);
    while !head.ends_with(b"\r\n\r\n") && Instant::now() < deadline {
        if s.read(&mut b).unwrap_or(0) == 0 {
            break;
        }
        head.push(b[0]);
    }
    String::from_utf8_lossy(&head).into_owned()
}

fn selected(head: &str) -> Option<String> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("sec-websocket-protocol")
            .then(|| v.trim().to_owned())
    })
}

#[test]
fn host_names_resolve_and_sizes_take_suffixes() {
    for backend in throng::engine::testing::backend_names() {
        let args = [
            "--addr",
            "localhost:0",
            "--max-message",
            "16K",
            "--backend",
            backend,
        ];
        let echo = start_echo(&args);
        assert!(echo.line.contains("max-message=16384"), "{}", echo.line);
        assert!(
            echo.addr.starts_with("127.0.0.1:") || echo.addr.starts_with("[::1]:"),
            "localhost resolved to {}",
            echo.addr
        );
        assert!(upgrade(&echo.addr, None).starts_with("HTTP/1.1 101"));
    }
}

#[test]
fn echo_selects_the_first_offered_subprotocol_unless_configured() {
    for backend in throng::engine::testing::backend_names() {
        let echo = start_echo(&["--addr", "127.0.0.1:0", "--backend", backend]);
        let head = upgrade(&echo.addr, Some("chat, superchat"));
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        assert_eq!(selected(&head).as_deref(), Some("chat"), "{head}");
        let head = upgrade(&echo.addr, None);
        assert_eq!(selected(&head), None, "{head}");

        let args = [
            "--addr",
            "127.0.0.1:0",
            "--backend",
            backend,
            "--subprotocol",
            "b",
        ];
        let echo = start_echo(&args);
        let head = upgrade(&echo.addr, Some("a, b"));
        assert_eq!(selected(&head).as_deref(), Some("b"), "{head}");
        let head = upgrade(&echo.addr, Some("x-bogus"));
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        assert_eq!(selected(&head), None, "{head}");
    }
}
