//! The servers under comparison, each run as its own process by `throng-bench serve`.
//!
//! All of them behave alike, as `examples/echo` does, plus the triggers the harness needs:
//!
//! | path | role |
//! | --- | --- |
//! | `/` (and any other) | echo every text and binary message unchanged |
//! | `/bcast` | echo, and receive every broadcast (subscribed to topic `all`) |
//! | `/sub` | echo, and receive every message published to topic `pubsub` |
//! | `/pub` | every message is published to `pubsub`, then echoed to the sender as an ack |
//! | `/control` | text `BROADCAST <n>` sends one n-byte binary message to every `all` member; anything else is echoed |
//!
//! Bun's server is JavaScript (`benches/servers/bun/echo.js`, see [`bun`]) with the same
//! paths and limits, plus `/health` over plain HTTP.
//!
//! Limits shared by all: messages and frames up to 16 MiB, pings are answered, the close
//! handshake is completed, and a connection silent for 30 s is pinged and dropped if
//! nothing arrives within 10 s more (the baselines check on a 30 s clock, so their ping
//! goes out 30 to 60 s after the last input; throng's on its 250 ms wheel).

pub mod bun;
pub mod fastws;
pub mod floor;
pub mod keepalive;
pub mod throng;
pub mod tungstenite;

use std::fmt;
use std::io::Write;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

/// Largest message and frame, as in `examples/echo`.
pub const MAX_MESSAGE: usize = 16 << 20;
/// Silence after which a connection is pinged.
pub const PING_INTERVAL: Duration = Duration::from_secs(30);
/// Time a pinged connection has to say anything before it is dropped.
pub const PONG_TIMEOUT: Duration = Duration::from_secs(10);
/// Listen backlog of every server (throng's default).
pub const BACKLOG: u32 = 4096;
/// Topic of the broadcast members.
pub const TOPIC_ALL: &str = "all";
/// Topic of the pub/sub subscribers.
pub const TOPIC_PUBSUB: &str = "pubsub";

/// Which implementation a server process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServerKind {
    /// throng on io_uring.
    ThrongUring,
    /// throng on epoll.
    ThrongEpoll,
    /// tokio-tungstenite on a multi-thread Tokio runtime.
    Tungstenite,
    /// fastwebsockets (with hyper for the upgrade) on a multi-thread Tokio runtime.
    Fastws,
    /// A diagnostic floor: a bare single-threaded epoll loop over throng's protocol crate
    /// ([`floor`]). Not a competitor; it shows what the kernel alone costs.
    Floor,
    /// Bun's `Bun.serve` (uWebSockets inside) running `benches/servers/bun/echo.js`.
    Bun,
}

impl ServerKind {
    /// Every server, in report order.
    pub const ALL: [ServerKind; 6] = [
        ServerKind::ThrongUring,
        ServerKind::ThrongEpoll,
        ServerKind::Tungstenite,
        ServerKind::Fastws,
        ServerKind::Bun,
        ServerKind::Floor,
    ];

    /// Short name used on the command line and in JSON.
    pub fn id(self) -> &'static str {
        match self {
            ServerKind::ThrongUring => "throng-uring",
            ServerKind::ThrongEpoll => "throng-epoll",
            ServerKind::Tungstenite => "tungstenite",
            ServerKind::Fastws => "fastws",
            ServerKind::Floor => "floor",
            ServerKind::Bun => "bun",
        }
    }

    /// Name for tables and charts.
    pub fn label(self) -> &'static str {
        match self {
            ServerKind::ThrongUring => "throng io_uring",
            ServerKind::ThrongEpoll => "throng epoll",
            ServerKind::Tungstenite => "tokio-tungstenite",
            ServerKind::Fastws => "fastwebsockets",
            ServerKind::Floor => "floor (bare epoll)",
            ServerKind::Bun => "Bun (uWebSockets)",
        }
    }

    /// Arguments for `throng-bench serve`.
    pub fn serve_args(self) -> Vec<String> {
        let (server, backend) = match self {
            ServerKind::ThrongUring => ("throng", "uring"),
            ServerKind::ThrongEpoll => ("throng", "epoll"),
            ServerKind::Tungstenite => ("tungstenite", "epoll"),
            ServerKind::Fastws => ("fastws", "epoll"),
            ServerKind::Floor => ("floor", "epoll"),
            ServerKind::Bun => ("bun", "epoll"),
        };
        vec![
            "--server".into(),
            server.into(),
            "--backend".into(),
            backend.into(),
        ]
    }
}

impl fmt::Display for ServerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

impl FromStr for ServerKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        ServerKind::ALL.into_iter().find(|k| k.id() == s).ok_or_else(|| format!("unknown server {s:?} (expected one of throng-uring, throng-epoll, tungstenite, fastws, bun, floor)"))
    }
}

/// What a connection does, chosen by the request path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Echo only.
    Echo,
    /// Echo, and member of topic `all`.
    Member,
    /// Echo, and member of topic `pubsub`.
    Subscriber,
    /// Publishes every message to `pubsub`, then echoes it as an ack.
    Publisher,
    /// Triggers broadcasts.
    Control,
}

impl Role {
    /// The role a request path asks for.
    pub fn from_path(path: &str) -> Role {
        match path {
            "/bcast" => Role::Member,
            "/sub" => Role::Subscriber,
            "/pub" => Role::Publisher,
            "/control" => Role::Control,
            _ => Role::Echo,
        }
    }
}

/// The size asked for by a control message `BROADCAST <n>`, if it is one.
pub fn broadcast_size(text: &[u8]) -> Option<usize> {
    let n = std::str::from_utf8(text.strip_prefix(b"BROADCAST ")?)
        .ok()?
        .trim()
        .parse::<usize>()
        .ok()?;
    (n <= MAX_MESSAGE).then_some(n)
}

/// Options of `throng-bench serve`.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// `throng`, `tungstenite`, `fastws`, `floor` or `bun`.
    pub server: String,
    /// `uring` or `epoll` (throng only).
    pub backend: String,
    /// Worker threads (throng workers or Tokio worker threads).
    pub threads: usize,
    /// Address to listen on (port 0: any free port; the chosen one is printed).
    pub addr: SocketAddr,
    /// CPUs the whole process is pinned to.
    pub cpus: Vec<usize>,
    /// `wss://` (throng and tungstenite only): certificate chain and key, PEM files.
    pub tls: Option<(std::path::PathBuf, std::path::PathBuf)>,
}

impl ServeOptions {
    /// The rustls config of `--tls-cert`/`--tls-key`, built as the engine builds it
    /// (ring, ALPN http/1.1), so every TLS server of the comparison uses the same one.
    pub fn tls_config(&self) -> std::io::Result<Option<throng_engine::TlsConfig>> {
        self.tls
            .as_ref()
            .map(|(cert, key)| throng_engine::TlsConfig::from_pem_files(cert, key))
            .transpose()
    }
}

/// Announces the address on stdout, the harness's cue that the server is ready.
pub(crate) fn announce(addr: SocketAddr) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "listening {addr}");
    let _ = out.flush();
}

/// Tells the harness this server cannot run here, then exits cleanly.
pub(crate) fn unavailable(reason: &str) -> std::process::ExitCode {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "unavailable {reason}");
    let _ = out.flush();
    std::process::ExitCode::SUCCESS
}

/// Runs a server until the process is killed.
pub fn serve(opts: &ServeOptions) -> std::process::ExitCode {
    // Pinned before any thread exists, so every runtime thread inherits the CPU set.
    if let Err(e) = crate::sys::pin_to(&opts.cpus) {
        eprintln!("serve: cannot pin to {:?}: {e}", opts.cpus);
        return std::process::ExitCode::FAILURE;
    }
    crate::sys::raise_nofile();
    let result = match opts.server.as_str() {
        "throng" => return throng::run(opts),
        "bun" => return bun::run(opts),
        "tungstenite" => tungstenite::run(opts),
        "fastws" => fastws::run(opts),
        "floor" => floor::run(opts),
        other => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("unknown server {other:?}"),
        )),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("serve: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// A Tokio listener like throng's: `SO_REUSEADDR` and the same backlog (Tokio's
/// `TcpListener::bind` would use 1024).
pub(crate) fn tokio_listener(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// A blocking-free std listener like throng's: `SO_REUSEADDR` and the same backlog.
pub(crate) fn std_listener(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        None,
    )?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG as i32)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// A multi-thread Tokio runtime with `threads` workers.
pub(crate) fn tokio_runtime(threads: usize) -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build()
}

/// Accept errors such as EMFILE are transient for a server: back off instead of exiting.
pub(crate) async fn accept_backoff() {
    tokio::time::sleep(Duration::from_millis(5)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_messages() {
        assert_eq!(broadcast_size(b"BROADCAST 64"), Some(64));
        assert_eq!(broadcast_size(b"BROADCAST 0"), Some(0));
        assert_eq!(broadcast_size(b"BROADCAST x"), None);
        assert_eq!(broadcast_size(b"BROADCAST 99999999999"), None);
        assert_eq!(broadcast_size(b"hello"), None);
        assert_eq!(Role::from_path("/pub"), Role::Publisher);
        assert_eq!(Role::from_path("/anything"), Role::Echo);
    }
}
