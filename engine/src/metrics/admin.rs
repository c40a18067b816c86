//! The admin listener: `/metrics` and `/healthz` on an address of their own, served by one
//! thread that is not a worker, so it may block on its socket and on the workers'
//! answers without holding up any connection.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use throng_protocol::handshake::{self, HandshakeConfig};

use super::{CONTENT_TYPE, collect};
use crate::core::Peers;

/// How long a scrape waits for the workers, and a client for its request or answer.
const WAIT: Duration = Duration::from_secs(2);
/// The largest request head read.
const MAX_HEAD: usize = 8 << 10;

/// The running admin listener.
pub(crate) struct Admin {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Admin {
    pub fn start(addr: SocketAddr, peers: Peers) -> io::Result<Admin> {
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::Builder::new()
            .name("throng-admin".into())
            .spawn(move || {
                for stream in listener.incoming() {
                    if stopping.load(Ordering::Acquire) {
                        break;
                    }
                    if let Ok(s) = stream {
                        let _ = serve(s, &peers);
                    }
                }
            })?;
        Ok(Admin {
            addr,
            stop,
            thread: Some(thread),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops the thread: the flag, then a connection to wake its `accept`.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Release);
        let mut wake = self.addr;
        if wake.ip().is_unspecified() {
            wake.set_ip(match wake {
                SocketAddr::V4(_) => [127, 0, 0, 1].into(),
                SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            });
        }
        let _ = TcpStream::connect_timeout(&wake, WAIT);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Admin {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.stop();
        }
    }
}

/// Reads one request head and answers it.
fn serve(mut s: TcpStream, peers: &Peers) -> io::Result<()> {
    s.set_read_timeout(Some(WAIT))?;
    s.set_write_timeout(Some(WAIT))?;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let config = HandshakeConfig::default();
    let mut out = Vec::new();
    loop {
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        match handshake::parse_request(&buf, &config) {
            Ok(None) if buf.len() < MAX_HEAD => continue,
            Ok(None) => {
                handshake::write_response(&mut out, 431, &close(), b"request head too large\n")
            }
            Err(e) => handshake::write_error(&mut out, e),
            Ok(Some((req, _))) => match (req.method(), req.path()) {
                ("GET", "/metrics") => {
                    let body = collect(peers, WAIT).to_prometheus();
                    let headers = [("Content-Type", CONTENT_TYPE), ("Connection", "close")];
                    handshake::write_response(&mut out, 200, &headers, body.as_bytes());
                }
                ("GET", "/healthz") => {
                    handshake::write_response(&mut out, 200, &close(), b"ok\n");
                }
                _ => handshake::write_response(&mut out, 404, &close(), b"not found\n"),
            },
        }
        break;
    }
    s.write_all(&out)?;
    let _ = s.shutdown(std::net::Shutdown::Write);
    Ok(())
}

fn close() -> [(&'static str, &'static str); 2] {
    [("Content-Type", "text/plain"), ("Connection", "close")]
}
