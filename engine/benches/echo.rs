//! The whole message path through a running server (epoll backend, one worker): a 64 B
//! text message in, the echo out, over loopback TCP. Includes the kernel both ways, so it
//! is the figure a user sees, not the engine's share of it; `pipelined_100` amortises the
//! wakeups over 100 messages per round trip.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use throng_engine::{
    BackendChoice, Config, Decision, Handler, Message, Server, UpgradeRequest, WebSocket,
};

struct Echo;

impl Handler for Echo {
    type State = ();
    fn on_upgrade<'r>(&mut self, _: &UpgradeRequest<'r>) -> Decision<'r, ()> {
        Decision::accept(())
    }
    fn on_message(&mut self, ws: &mut WebSocket<'_, ()>, m: Message<'_>) {
        let _ = ws.send(m);
    }
}

/// A masked client text frame (mask key 1,2,3,4).
fn frame(payload: &[u8]) -> Vec<u8> {
    let key = [1u8, 2, 3, 4];
    let mut f = vec![0x81, 0x80 | payload.len() as u8];
    f.extend_from_slice(&key);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    f
}

fn connect(addr: std::net::SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_nodelay(true).expect("nodelay");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let req = format!(
        "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    s.write_all(req.as_bytes()).expect("request");
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut b).expect("response");
        head.push(b[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    s
}

fn echo(c: &mut Criterion) {
    let config = Config::new("127.0.0.1:0".parse().expect("addr"))
        .with_workers(1)
        .with_backend(BackendChoice::Epoll);
    let server = Server::start(config, |_| Echo).expect("server");
    let mut s = connect(server.local_addr());
    let payload = [b'x'; 64];
    let one = frame(&payload);
    let mut reply = vec![0u8; 66];
    let mut g = c.benchmark_group("echo_loopback");
    g.throughput(Throughput::Elements(1));
    g.bench_function("roundtrip_64B", |b| {
        b.iter(|| {
            s.write_all(&one).expect("send");
            s.read_exact(&mut reply).expect("echo");
        })
    });
    let batch: Vec<u8> = (0..100).flat_map(|_| one.iter().copied()).collect();
    let mut replies = vec![0u8; 66 * 100];
    g.throughput(Throughput::Elements(100));
    g.bench_function("pipelined_100x64B", |b| {
        b.iter(|| {
            s.write_all(&batch).expect("send");
            s.read_exact(&mut replies).expect("echo");
        })
    });
    g.finish();
    drop(s);
    let _ = server.shutdown();
}

criterion_group!(benches, echo);
criterion_main!(benches);
