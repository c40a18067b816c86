//! Server-side handshakes per second, the protocol's share only: parse the request head,
//! validate the upgrade (accept key included) and write the 101, as the engine does for
//! each connection. Two requests: the minimal one load generators send, and a browser's
//! (Chrome's headers, cookies and all).

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use throng_protocol::handshake::{
    HandshakeConfig, accept_key, parse_request, validate_upgrade, write_accept,
};

const MINIMAL: &[u8] = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:9001\r\nUpgrade: websocket\r\n\
Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Sec-WebSocket-Version: 13\r\n\r\n";

const BROWSER: &[u8] = b"GET /chat?room=lobby HTTP/1.1\r\nHost: example.com:9001\r\n\
Connection: Upgrade\r\nPragma: no-cache\r\nCache-Control: no-cache\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36\r\n\
Upgrade: websocket\r\nOrigin: https://example.com\r\nSec-WebSocket-Version: 13\r\n\
Accept-Encoding: gzip, deflate, br, zstd\r\nAccept-Language: en-GB,en;q=0.9,fr;q=0.8\r\n\
Cookie: session=0123456789abcdef0123456789abcdef; theme=dark; consent=yes\r\n\
Sec-WebSocket-Key: x3JJHMbDL1EzLkh9GBhXDw==\r\n\
Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n";

/// One handshake: parse, validate, answer into `out`. Returns the response length.
fn handshake(request: &[u8], config: &HandshakeConfig, out: &mut Vec<u8>) -> usize {
    let (req, _) = parse_request(request, config)
        .expect("valid request")
        .expect("complete request");
    let upgrade = validate_upgrade(req).expect("valid upgrade");
    out.clear();
    write_accept(out, &upgrade, None, None);
    out.len()
}

fn bench(c: &mut Criterion) {
    let config = HandshakeConfig::default();
    let mut group = c.benchmark_group("handshake");
    group.throughput(Throughput::Elements(1));
    for (name, request) in [("minimal", MINIMAL), ("browser", BROWSER)] {
        let mut out = Vec::with_capacity(256);
        group.bench_function(name, |b| {
            b.iter(|| handshake(black_box(request), &config, &mut out))
        });
    }
    group.bench_function("accept_key", |b| {
        b.iter(|| accept_key(black_box(b"dGhlIHNhbXBsZSBub25jZQ==")))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
