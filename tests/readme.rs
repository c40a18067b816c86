//! The README's "Using the engine" snippet runs as written (issue 18): it is
//! `examples/readme.rs` verbatim (checked here), and the example is started, echoes one
//! message, and exits 0 on SIGTERM after closing its client with 1001.
//!
//! The snippet listens on the fixed port 9001, so it runs in a network namespace of its own
//! (`unshare -rn`, an unprivileged user namespace) where the port is surely free; the
//! client is a small Python script in the same namespace.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const README: &str = include_str!("../README.md");
const EXAMPLE: &str = include_str!("../examples/readme.rs");

fn snippet() -> &'static str {
    let start = README
        .find("## Using the engine")
        .expect("README has a 'Using the engine' section");
    let rest = &README[start..];
    let open = rest.find("```rust").expect("a rust block");
    let body = &rest[open..];
    let body = &body[body.find('\n').unwrap() + 1..];
    &body[..body.find("```").unwrap()]
}

#[test]
fn readme_snippet_is_the_example() {
    let code = snippet();
    assert!(code.contains("fn main()"), "the snippet has a main");
    assert!(code.contains("ShutdownSignals::block()"));
    assert!(
        EXAMPLE.ends_with(code),
        "examples/readme.rs is not the README snippet verbatim"
    );
}

fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("own path");
    exe.parent().and_then(Path::parent).unwrap().to_path_buf()
}

/// In the namespace: bring up loopback, start the example, open a WebSocket, echo
/// "hello", SIGTERM the server while the client is connected, read the 1001 close, and
/// exit with the server's status.
const SCRIPT: &str = r#"
set -e
ip link set lo up
"$1" > "$2" 2>&1 &
pid=$!
PID=$pid python3 - <<'PY'
import base64, os, socket, struct, sys, time
for _ in range(100):
    try:
        s = socket.create_connection(("127.0.0.1", 9001), timeout=5); break
    except OSError:
        time.sleep(0.05)
else:
    sys.exit("server never listened")
key = base64.b64encode(os.urandom(16)).decode()
s.sendall(("GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % key).encode())
head = b""
while b"\r\n\r\n" not in head:
    head += s.recv(1)
assert head.startswith(b"HTTP/1.1 101"), head
mask = os.urandom(4)
payload = b"hello"
s.sendall(bytes([0x81, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))
frame = s.recv(2 + len(payload))
assert frame == b"\x81\x05hello", frame
print("echoed", flush=True)
os.kill(int(os.environ["PID"]), 15)
head = s.recv(2)
assert head[0] == 0x88 and 2 <= head[1] <= 125, head
body = b""
while len(body) < head[1]:
    body += s.recv(head[1] - len(body))
assert struct.unpack("!H", body[:2])[0] == 1001, body
s.sendall(bytes([0x88, 0x82]) + mask + bytes(b ^ mask[i] for i, b in enumerate(body[:2])))
print("closed 1001", flush=True)
PY
wait "$pid"
"#;

#[test]
fn readme_example_runs_echoes_and_stops_on_sigterm() {
    if Command::new("unshare")
        .args(["-rn", "true"])
        .status()
        .map_or(true, |s| !s.success())
    {
        panic!("unshare -rn is not available: this test needs unprivileged user namespaces");
    }
    let dir = profile_dir();
    let profile = match dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => "dev",
        Some(p) => p,
    };
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let built = Command::new(cargo)
        .args([
            "build",
            "--profile",
            profile,
            "-p",
            "throng",
            "--example",
            "readme",
        ])
        .arg("--target-dir")
        .arg(dir.parent().unwrap())
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(Stdio::null())
        .status()
        .expect("run cargo");
    assert!(built.success());
    let exe = dir.join("examples").join("readme");
    let log = std::env::temp_dir().join(format!("throng-readme-{}.log", std::process::id()));
    let out = Command::new("timeout")
        .args(["60", "unshare", "-rn", "sh", "-c", SCRIPT, "sh"])
        .arg(&exe)
        .arg(&log)
        .output()
        .expect("run the namespace script");
    let server = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_file(&log);
    let client = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "status {:?}\nclient: {client}{}\nserver: {server}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        client.contains("echoed") && client.contains("closed 1001"),
        "{client}"
    );
    assert!(
        server.contains("listening on ws://127.0.0.1:9001/"),
        "{server}"
    );
    assert!(server.contains("closed 1 connections"), "{server}");
}
