//! `wss://` (issue 14): the engine's TLS listener against real TLS peers (tungstenite over
//! a rustls client, Python `websockets` with an `ssl` context, raw rustls and raw bytes
//! for bad input), on each backend. Certificates are made per test with rcgen.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use throng_engine::{BackendChoice, Config, TlsConfig};
use tungstenite::Message as TMessage;
use tungstenite::protocol::WebSocketConfig;

type Tls = StreamOwned<ClientConnection, TcpStream>;
type Wss = tungstenite::WebSocket<Tls>;

/// A self-signed certificate for `localhost` and 127.0.0.1: (cert PEM, key PEM).
fn cert() -> (String, String) {
    let c =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    (c.cert.pem(), c.signing_key.serialize_pem())
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A client config trusting `cert_pem` only, offering ALPN http/1.1.
fn client_config(
    cert_pem: &str,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<ClientConfig> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(cert_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let mut c = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    c.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(c)
}

fn tls_config(pem: &(String, String)) -> TlsConfig {
    TlsConfig::from_pem(pem.0.as_bytes(), pem.1.as_bytes()).unwrap()
}

fn tls_server_config(backend: BackendChoice, pem: &(String, String)) -> Config {
    config(backend).with_tls(tls_config(pem))
}

/// A TLS stream to `addr`, handshake done.
fn tls_stream(addr: SocketAddr, client: &Arc<ClientConfig>) -> Result<Tls, std::io::Error> {
    let tcp = TcpStream::connect(addr)?;
    tcp.set_read_timeout(Some(READ_TIMEOUT))?;
    tcp.set_write_timeout(Some(READ_TIMEOUT))?;
    tcp.set_nodelay(true)?;
    let name = ServerName::try_from("localhost").unwrap();
    let conn = ClientConnection::new(client.clone(), name).map_err(std::io::Error::other)?;
    let mut s = StreamOwned::new(conn, tcp);
    while s.conn.is_handshaking() {
        s.conn.complete_io(&mut s.sock)?;
    }
    Ok(s)
}

/// A tungstenite client over TLS.
fn wss(addr: SocketAddr, client: &Arc<ClientConfig>) -> Wss {
    let stream = tls_stream(addr, client).expect("TLS handshake");
    assert_eq!(
        stream.conn.alpn_protocol(),
        Some(&b"http/1.1"[..]),
        "ALPN http/1.1"
    );
    let config = WebSocketConfig::default()
        .max_message_size(Some(64 << 20))
        .max_frame_size(Some(64 << 20));
    let (ws, response) = tungstenite::client::client_with_config(
        format!("wss://localhost:{}/echo", addr.port()),
        stream,
        Some(config),
    )
    .expect("WebSocket handshake over TLS");
    assert_eq!(response.status(), 101);
    ws
}

fn wss_read_data(ws: &mut Wss) -> TMessage {
    loop {
        match ws.read().expect("read a message") {
            TMessage::Ping(_) | TMessage::Pong(_) => continue,
            m => return m,
        }
    }
}

fn wss_read_close(ws: &mut Wss) -> (u16, String) {
    loop {
        match ws.read().expect("read until the close frame") {
            TMessage::Close(Some(f)) => return (u16::from(f.code), f.reason.to_string()),
            TMessage::Close(None) => return (1005, String::new()),
            TMessage::Ping(_) | TMessage::Pong(_) => continue,
            other => panic!("expected a close frame, got {}", describe(&other)),
        }
    }
}

/// After the WebSocket close handshake: the server's close_notify, then EOF (a
/// truncation would be `UnexpectedEof` from rustls).
fn expect_close_notify(ws: &mut Wss) {
    let _ = ws.flush();
    let s = ws.get_mut();
    let mut buf = [0u8; 256];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => panic!("{n} bytes after the close handshake"),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => panic!("expected close_notify then EOF, got {e} ({:?})", e.kind()),
        }
    }
}

/// Reads raw bytes until EOF or reset; returns them. Fails after [`READ_TIMEOUT`].
fn read_to_end(s: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return got,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => panic!("expected the server to close, got {e}"),
        }
    }
}

fn raw_tcp(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    s
}

/// Whether `bytes` hold a TLS alert record (content type 21), in clear or not.
fn has_alert(bytes: &[u8]) -> bool {
    let mut at = 0;
    while at + 5 <= bytes.len() {
        if bytes[at] == 21 {
            return true;
        }
        at += 5 + u16::from_be_bytes([bytes[at + 3], bytes[at + 4]]) as usize;
    }
    false
}

const SIZES: [usize; 9] = [0, 1, 125, 126, 16 << 10, 65535, 65536, 1 << 20, 16 << 20];

#[test]
fn wss_echo_from_0_bytes_to_16_mib_then_close_with_close_notify() {
    let pem = cert();
    let client = client_config(&pem.0, rustls::DEFAULT_VERSIONS);
    for backend in backends() {
        let (server, events) = start(tls_server_config(backend, &pem));
        let mut ws = wss(server.local_addr(), &client);
        let id = events.opened();
        for (i, &size) in SIZES.iter().enumerate() {
            let text = text_pattern(size);
            ws.send(TMessage::text(text.clone())).unwrap();
            match wss_read_data(&mut ws) {
                TMessage::Text(got) => assert!(got.as_str() == text, "text echo of {size} bytes"),
                other => panic!("text of {size} bytes came back as {}", describe(&other)),
            }
            let binary = pattern(i as u64, size);
            ws.send(TMessage::binary(binary.clone())).unwrap();
            match wss_read_data(&mut ws) {
                TMessage::Binary(got) => {
                    assert!(got[..] == binary[..], "binary echo of {size} bytes")
                }
                other => panic!("binary of {size} bytes came back as {}", describe(&other)),
            }
        }
        // A burst of small messages in one write: many replies, encrypted in one flush.
        for i in 0..200u32 {
            ws.write(TMessage::binary(i.to_le_bytes().to_vec()))
                .unwrap();
        }
        ws.flush().unwrap();
        for i in 0..200u32 {
            assert_eq!(
                wss_read_data(&mut ws),
                TMessage::binary(i.to_le_bytes().to_vec())
            );
        }
        ws.close(Some(tungstenite::protocol::CloseFrame {
            code: 1000.into(),
            reason: "bye".into(),
        }))
        .unwrap();
        assert_eq!(wss_read_close(&mut ws), (1000, String::new()));
        expect_close_notify(&mut ws);
        assert_eq!(events.closed_id(id), (1000, "bye".to_owned()));
        assert!(eventually(EVENT_TIMEOUT, || conn_count(&server) == 0));
        let st = stats(&server);
        assert_eq!(st.tls_handshakes, 1);
        assert_eq!(st.tls_handshake_failures + st.tls_errors, 0);
        assert_eq!(pool_in_use(&server), 0, "no spill left lent");
        server.shutdown().unwrap();
    }
}

#[test]
fn wss_fragmented_messages_and_records_cut_at_every_byte() {
    let pem = cert();
    let client = client_config(&pem.0, rustls::DEFAULT_VERSIONS);
    for backend in backends() {
        let (server, _events) = start(tls_server_config(backend, &pem));
        let mut ws = wss(server.local_addr(), &client);
        // A text message in three fragments with a ping between them, written raw.
        let word = "Hello, wörld!".as_bytes();
        let mut raw = encode(false, OP_TEXT, &word[..5], Some(MASK));
        raw.extend(encode(true, OP_PING, b"p", Some(MASK)));
        raw.extend(encode(false, OP_CONT, &word[5..9], Some(MASK)));
        raw.extend(encode(true, OP_CONT, &word[9..], Some(MASK)));
        ws.get_mut().write_all(&raw).unwrap();
        ws.get_mut().flush().unwrap();
        let mut got = Vec::new();
        while got.len() < 2 {
            match ws.read().unwrap() {
                TMessage::Pong(p) => got.push(format!("pong {}", String::from_utf8_lossy(&p))),
                TMessage::Text(t) => got.push(format!("text {t}")),
                _ => {}
            }
        }
        assert_eq!(got, ["pong p", "text Hello, wörld!"]);
        // A large binary message whose TLS records reach the server a few bytes at a time:
        // every record straddles reads and waits in the spill until it completes.
        let msg = pattern(9, 40_000);
        let mut tls = Vec::new();
        {
            let s = ws.get_mut();
            s.conn
                .writer()
                .write_all(&encode(true, OP_BINARY, &msg, Some(MASK)))
                .unwrap();
            while s.conn.wants_write() {
                s.conn.write_tls(&mut tls).unwrap();
            }
            for (i, chunk) in tls.chunks(997).enumerate() {
                s.sock.write_all(chunk).unwrap();
                if i % 7 == 0 {
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
        }
        assert_eq!(wss_read_data(&mut ws), TMessage::binary(msg));
        assert!(
            eventually(EVENT_TIMEOUT, || pool_in_use(&server) == 0),
            "spills given back"
        );
        server.shutdown().unwrap();
    }
}

#[test]
fn graceful_shutdown_closes_wss_connections_with_1001_and_close_notify() {
    let pem = cert();
    let client = client_config(&pem.0, rustls::DEFAULT_VERSIONS);
    for backend in backends() {
        let (server, events) = start(tls_server_config(backend, &pem));
        let mut clients: Vec<Wss> = (0..8).map(|_| wss(server.local_addr(), &client)).collect();
        for _ in 0..8 {
            events.opened();
        }
        let closing = std::thread::spawn(move || {
            for ws in clients.iter_mut() {
                assert_eq!(wss_read_close(ws).0, 1001);
                expect_close_notify(ws);
            }
        });
        let report = server.shutdown().unwrap();
        closing.join().unwrap();
        assert_eq!(report.connections, 8);
        assert_eq!(report.closed_cleanly, 8, "{report:?}");
    }
}

#[test]
fn certificate_reload_keeps_open_connections_and_serves_the_new_chain() {
    let (old, new) = (cert(), cert());
    let trusts_old = client_config(&old.0, rustls::DEFAULT_VERSIONS);
    let trusts_new = client_config(&new.0, rustls::DEFAULT_VERSIONS);
    for backend in backends() {
        let (server, _events) = start(tls_server_config(backend, &old));
        let addr = server.local_addr();
        let mut before: Vec<Wss> = (0..4).map(|_| wss(addr, &trusts_old)).collect();
        assert!(
            tls_stream(addr, &trusts_new).is_err(),
            "the new chain is not served yet"
        );
        assert_eq!(server.handle().reload_tls(tls_config(&new)), 2);
        // Mail is handled in order: a job posted after the reload runs after it.
        let _ = conn_count(&server);
        for _ in 0..4 {
            let mut ws = wss(addr, &trusts_new);
            ws.send(TMessage::text("new")).unwrap();
            assert_eq!(wss_read_data(&mut ws), TMessage::text("new"));
        }
        let refused = tls_stream(addr, &trusts_old);
        assert!(refused.is_err(), "new handshakes use the new chain");
        for ws in before.iter_mut() {
            ws.send(TMessage::text("still here")).unwrap();
            assert_eq!(wss_read_data(ws), TMessage::text("still here"));
        }
        server.shutdown().unwrap();
    }
}

#[test]
fn one_server_serves_wss_on_its_tls_listener_and_ws_on_a_plain_one() {
    let pem = cert();
    let client = client_config(&pem.0, rustls::DEFAULT_VERSIONS);
    for backend in backends() {
        let cfg = tls_server_config(backend, &pem).with_plain_addr("127.0.0.1:0".parse().unwrap());
        let (server, events) = start(cfg);
        let (tls_addr, plain_addr) = (server.local_addr(), server.plain_addr().unwrap());
        assert_ne!(tls_addr.port(), plain_addr.port());
        // Several of each, so that both workers' listeners of each kind are used.
        let mut secure: Vec<Wss> = (0..6).map(|_| wss(tls_addr, &client)).collect();
        let mut plain: Vec<Client> = (0..6).map(|_| connect(plain_addr, "/echo")).collect();
        for _ in 0..12 {
            events.opened();
        }
        for (i, (s, p)) in secure.iter_mut().zip(plain.iter_mut()).enumerate() {
            s.send(TMessage::text(format!("wss {i}"))).unwrap();
            p.send(TMessage::binary(pattern(i as u64, 70_000))).unwrap();
            assert_eq!(wss_read_data(s), TMessage::text(format!("wss {i}")));
            assert_eq!(read_data(p), TMessage::binary(pattern(i as u64, 70_000)));
        }
        let st = stats(&server);
        assert_eq!(
            st.tls_handshakes, 6,
            "only the TLS listener's connections speak TLS"
        );
        // Each listener speaks its own protocol only: a ClientHello on the plain port is
        // not a request (400), a plain request on the TLS port gets an alert.
        let mut s = raw_tcp(plain_addr);
        s.write_all(&client_hello(&client)).unwrap();
        let answer = read_to_end(&mut s);
        assert!(
            answer.starts_with(b"HTTP/1.1 400"),
            "{:?}",
            String::from_utf8_lossy(&answer)
        );
        let mut s = raw_tcp(tls_addr);
        s.write_all(upgrade_request(tls_addr, "/", "").as_bytes())
            .unwrap();
        assert!(has_alert(&read_to_end(&mut s)), "an alert on the TLS port");
        for ws in secure.iter_mut() {
            ws.close(None).unwrap();
            wss_read_close(ws);
            expect_close_notify(ws);
        }
        for ws in plain.iter_mut() {
            ws.close(None).unwrap();
            read_close(ws);
            finish_close(ws);
        }
        assert!(eventually(EVENT_TIMEOUT, || conn_count(&server) == 0));
        let report = server.shutdown().unwrap();
        assert_eq!(report.connections, 0);
    }
}

/// The server still serves a good client after bad input.
fn still_serves(addr: SocketAddr, client: &Arc<ClientConfig>) {
    let mut ws = wss(addr, client);
    ws.send(TMessage::text("ok")).unwrap();
    assert_eq!(wss_read_data(&mut ws), TMessage::text("ok"));
}

#[test]
fn plain_http_garbage_and_a_websocket_request_on_a_tls_port_are_refused_with_an_alert() {
    let pem = cert();
    let client = client_config(&pem.0, rustls::DEFAULT_VERSIONS);
    for backend in backends() {
        let (server, _events) = start(tls_server_config(backend, &pem));
        let addr = server.local_addr();
        let inputs: [Vec<u8>; 3] = [
            b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            upgrade_request(addr, "/", "").into_bytes(),
            pattern(3, 3000),
        ];
        for input in &inputs {
            let mut s = raw_tcp(addr);
            s.write_all(input).unwrap();
            let answer = read_to_end(&mut s);
            assert!(
                has_alert(&answer),
                "an alert, got {:?}",
                &answer[..answer.len().min(16)]
            );
        }
        assert!(eventually(EVENT_TIMEOUT, || conn_count(&server) == 0));
        assert_eq!(stats(&server).tls_handshake_failures, 3);
        still_serves(addr, &client);
        server.shutdown().unwrap();
    }
}

/// A ClientHello, as a real client's first flight.
fn client_hello(client: &Arc<ClientConfig>) -> Vec<u8> {
    let mut c =
        ClientConnection::new(client.clone(), ServerName::try_from("localhost").unwrap()).unwrap();
    let mut hello = Vec::new();
    c.write_tls(&mut hello).unwrap();
    hello
}

#[test]
fn half_a_client_hello_left_hanging_is_closed_by_the_handshake_timeout() {
    let pem = cert();
    let client = client_config(&pem.0, rustls::DEFAULT_VERSIONS);
    for backend in backends() {
        let mut cfg = tls_server_config(backend, &pem);
        cfg.handshake_timeout = Duration::from_secs(1);
        let (server, _events) = start(cfg);
        let addr = server.local_addr();
        let hello = client_hello(&client);
        let mut slow: Vec<TcpStream> = (0..20)
            .map(|_| {
                let mut s = raw_tcp(addr);
                s.write_all(&hello[..hello.len() / 2]).unwrap();
                s
            })
            .collect();
        let started = Instant::now();
        // Meanwhile a good client is served.
        still_serves(addr, &client);
        for s in slow.iter_mut() {
            read_to_end(s);
        }
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(700),
            "closed by the timer, not at once ({took:?})"
        );
        assert!(
            took < Duration::from_secs(5),
            "within the handshake timeout ({took:?})"
        );
        assert!(eventually(EVENT_TIMEOUT, || conn_count(&server) == 0));
        let st = stats(&server);
        assert_eq!(st.tls_handshake_failures, 20);
        assert!(st.timed_out >= 20);
        assert_eq!(
            pool_in_use(&server),
            0,
            "the half hellos' spills are given back"
        );
        server.shutdown().unwrap();
    }
}

#[test]
fn an_oversized_record_after_the_handshake_gets_an_alert_and_a_close() {
    let pem = cert();
    let client = client_config(&pem.0, rustls::DEFAULT_VERSIONS);
    for backend in backends() {
        let (server, events) = start(tls_server_config(backend, &pem));
        let addr = server.local_addr();
        let mut ws = wss(addr, &client);
        events.opened();
        // An application data record announcing 30,000 bytes (TLS allows 2^14 + 256).
        let mut record = vec![23, 3, 3];
        record.extend_from_slice(&30_000u16.to_be_bytes());
        record.extend(pattern(5, 1000));
        let s = ws.get_mut();
        s.sock.write_all(&record).unwrap();
        // rustls reports the alert as an error on the client side; the socket then ends.
        let mut buf = [0u8; 1024];
        let got = loop {
            match s.read(&mut buf) {
                Ok(0) => break Ok(()),
                Ok(_) => continue,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => break Err(e),
            }
        };
        let err = got.expect_err("the server answers with an alert");
        assert!(err.to_string().contains("alert"), "an alert: {err}");
        assert_eq!(events.closed().1, 1006);
        assert!(eventually(EVENT_TIMEOUT, || conn_count(&server) == 0));
        assert_eq!(stats(&server).tls_errors, 1);
        still_serves(addr, &client);
        server.shutdown().unwrap();
    }
}

/// Writes `bytes` raw after the handshake and expects the server's fatal alert, which
/// rustls reports as an error naming it; returns the error's text.
fn raw_after_handshake_gets_an_alert(ws: &mut Wss, bytes: &[u8]) -> String {
    let s = ws.get_mut();
    s.sock.write_all(bytes).unwrap();
    let mut buf = [0u8; 1024];
    let err = loop {
        match s.read(&mut buf) {
            Ok(0) => panic!("EOF without an alert"),
            Ok(_) => continue,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => break e,
        }
    };
    let text = err.to_string();
    assert!(text.contains("alert"), "an alert: {text}");
    text
}

#[test]
fn a_forged_record_and_an_unprotected_one_after_the_handshake_get_their_alerts() {
    let pem = cert();
    let client = client_config(&pem.0, rustls::DEFAULT_VERSIONS);
    for backend in backends() {
        let (server, events) = start(tls_server_config(backend, &pem));
        let addr = server.local_addr();
        // An application data record whose tag cannot verify: bad_record_mac.
        let mut ws = wss(addr, &client);
        events.opened();
        let mut forged = vec![23, 3, 3, 0, 40];
        forged.extend(pattern(8, 40));
        let text = raw_after_handshake_gets_an_alert(&mut ws, &forged);
        assert!(text.contains("BadRecordMac"), "{text}");
        assert_eq!(events.closed().1, 1006);
        // A change_cipher_spec record, unprotected, after a TLS 1.3 handshake:
        // unexpected_message.
        let mut ws = wss(addr, &client);
        events.opened();
        let text = raw_after_handshake_gets_an_alert(&mut ws, &[20, 3, 3, 0, 1, 1]);
        assert!(text.contains("UnexpectedMessage"), "{text}");
        assert_eq!(events.closed().1, 1006);
        assert!(eventually(EVENT_TIMEOUT, || conn_count(&server) == 0));
        assert_eq!(stats(&server).tls_errors, 2);
        still_serves(addr, &client);
        server.shutdown().unwrap();
    }
}

#[test]
fn many_small_messages_queued_at_once_are_echoed_in_order_through_shared_records() {
    let pem = cert();
    let client = client_config(&pem.0, rustls::DEFAULT_VERSIONS);
    for backend in backends() {
        let (server, events) = start(tls_server_config(backend, &pem));
        let mut ws = wss(server.local_addr(), &client);
        // Sent in one burst: the echoes queue up in the outbox together and leave in
        // records shared by many messages (sizes 0..=300, in order).
        for round in 0..3u64 {
            for size in 0..=300usize {
                ws.write(TMessage::binary(pattern(round * 1000 + size as u64, size)))
                    .unwrap();
            }
            ws.flush().unwrap();
            for size in 0..=300usize {
                let want = TMessage::binary(pattern(round * 1000 + size as u64, size));
                assert_eq!(wss_read_data(&mut ws), want, "round {round}, size {size}");
            }
        }
        // Publishes queue one shared frame each: 301 of them in one worker turn leave in
        // records each spanning many frames.
        let id = events.opened();
        let handle = server.handle();
        for w in 0..handle.workers() {
            assert!(handle.post(w, move |_, conns| {
                match conns.get(id) {
                    Some(mut ws) => ws.subscribe("t"),
                    None => return,
                };
                for size in 0..=300usize {
                    conns.publish(
                        "t",
                        throng_engine::DataKind::Binary,
                        &pattern(size as u64, size),
                    );
                }
            }));
        }
        for size in 0..=300usize {
            let want = TMessage::binary(pattern(size as u64, size));
            assert_eq!(wss_read_data(&mut ws), want, "published, size {size}");
        }
        ws.close(None).unwrap();
        wss_read_close(&mut ws);
        expect_close_notify(&mut ws);
        let st = stats(&server);
        assert_eq!(st.tls_errors, 0, "{st:?}");
        server.shutdown().unwrap();
    }
}

/// A TLS 1.3 connection to `addr` whose client keys the test holds: handshake done, then
/// rustls' client traded for its send key (to write records rustls would not write) and
/// the socket.
fn tls13_with_send_key(
    addr: SocketAddr,
    pem: &(String, String),
) -> (
    TcpStream,
    Box<dyn rustls::crypto::cipher::MessageEncrypter>,
    u64,
) {
    let mut config = (*client_config(&pem.0, &[&rustls::version::TLS13])).clone();
    config.enable_secret_extraction = true;
    let s = tls_stream(addr, &Arc::new(config)).expect("TLS handshake");
    // Our Finished reaches the server alone, so its records below all meet the engine's
    // record layer (rustls counts the empty records it reads itself, up to the trade).
    std::thread::sleep(Duration::from_millis(100));
    let suite = match s.conn.negotiated_cipher_suite() {
        Some(rustls::SupportedCipherSuite::Tls13(suite)) => suite,
        other => panic!("TLS 1.3 expected, got {other:?}"),
    };
    let StreamOwned { conn, sock } = s;
    let secrets = conn.dangerous_extract_secrets().unwrap();
    let (seq, tx) = secrets.tx;
    let (key, iv) = match tx {
        rustls::ConnectionTrafficSecrets::Aes128Gcm { key, iv }
        | rustls::ConnectionTrafficSecrets::Aes256Gcm { key, iv }
        | rustls::ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv } => (key, iv),
        _ => unreachable!("a TLS 1.3 AEAD"),
    };
    (sock, suite.aead_alg.encrypter(key, iv), seq)
}

/// An application data record holding `payload`, sealed with `enc` at `*seq`.
fn app_record(
    enc: &mut dyn rustls::crypto::cipher::MessageEncrypter,
    seq: &mut u64,
    payload: &[u8],
) -> Vec<u8> {
    use rustls::crypto::cipher::{OutboundChunks, OutboundPlainMessage};
    let msg = OutboundPlainMessage {
        typ: rustls::ContentType::ApplicationData,
        version: rustls::ProtocolVersion::TLSv1_2,
        payload: OutboundChunks::Single(payload),
    };
    let record = enc.encrypt(msg, *seq).unwrap().encode();
    *seq += 1;
    record
}

#[test]
fn endless_empty_records_are_capped_as_rustls_caps_them_and_counted() {
    let pem = cert();
    let client = client_config(&pem.0, rustls::DEFAULT_VERSIONS);
    for backend in backends() {
        let (server, _events) = start(tls_server_config(backend, &pem));
        let addr = server.local_addr();
        // 32 empty records in a row are allowed (rustls' own cap), and any record with
        // plaintext starts the count again: 32, the upgrade request, 32 more.
        let (mut sock, mut enc, mut seq) = tls13_with_send_key(addr, &pem);
        let mut bytes = Vec::new();
        for _ in 0..32 {
            bytes.extend(app_record(&mut *enc, &mut seq, &[]));
        }
        let request = "GET /echo HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\n\r\n";
        bytes.extend(app_record(&mut *enc, &mut seq, request.as_bytes()));
        for _ in 0..32 {
            bytes.extend(app_record(&mut *enc, &mut seq, &[]));
        }
        sock.write_all(&bytes).unwrap();
        // The upgrade happened, the connection is open and nothing failed.
        assert!(eventually(EVENT_TIMEOUT, || stats(&server).opened >= 1));
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(stats(&server).tls_errors, 0, "32 in a row are allowed");
        assert_eq!(conn_count(&server), 1);
        // The 33rd in a row ends the connection (an alert, then FIN), counted.
        bytes.clear();
        bytes.extend(app_record(&mut *enc, &mut seq, &[]));
        sock.write_all(&bytes).unwrap();
        let rest = read_to_end(&mut sock);
        assert!(
            !rest.is_empty(),
            "the 101 and the alert come before the FIN"
        );
        assert!(eventually(EVENT_TIMEOUT, || conn_count(&server) == 0));
        assert_eq!(stats(&server).tls_errors, 1, "the flood is counted");
        // A flood in one write, without any plaintext at all: the same.
        let (mut sock, mut enc, mut seq) = tls13_with_send_key(addr, &pem);
        let mut flood = Vec::new();
        for _ in 0..10_000 {
            flood.extend(app_record(&mut *enc, &mut seq, &[]));
        }
        let _ = sock.write_all(&flood);
        let _ = read_to_end(&mut sock);
        assert!(eventually(EVENT_TIMEOUT, || conn_count(&server) == 0));
        assert_eq!(stats(&server).tls_errors, 2);
        still_serves(addr, &client);
        server.shutdown().unwrap();
    }
}

#[test]
fn a_client_key_update_is_followed_and_answered_on_both_sides() {
    let pem = cert();
    let client = client_config(&pem.0, rustls::DEFAULT_VERSIONS);
    for backend in backends() {
        let (server, _events) = start(tls_server_config(backend, &pem));
        let mut ws = wss(server.local_addr(), &client);
        for (i, size) in [5usize, 100_000, 17].into_iter().enumerate() {
            // rustls asks the peer to update too: the server must switch its receive key
            // at this record and answer with a KeyUpdate of its own before the echo.
            ws.get_mut().conn.refresh_traffic_keys().unwrap();
            let msg = pattern(i as u64, size);
            ws.send(TMessage::binary(msg.clone())).unwrap();
            assert_eq!(wss_read_data(&mut ws), TMessage::binary(msg));
        }
        ws.close(None).unwrap();
        wss_read_close(&mut ws);
        expect_close_notify(&mut ws);
        assert!(eventually(EVENT_TIMEOUT, || conn_count(&server) == 0));
        let st = stats(&server);
        assert_eq!(st.tls_errors + st.tls_handshake_failures, 0, "{st:?}");
        server.shutdown().unwrap();
    }
}

/// A ClientHello offering TLS 1.1 only (in supported_versions), as an old client sends.
fn tls11_client_hello() -> Vec<u8> {
    let mut body = vec![3, 2]; // client_version TLS 1.1
    body.extend(pattern(4, 32)); // random
    body.push(0); // no session id
    body.extend([0, 2, 0xc0, 0x2b]); // ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
    body.extend([1, 0]); // null compression
    let exts = [
        // signature_algorithms: ecdsa_secp256r1_sha256 (the test certificate's)
        &[0, 0x0d, 0, 4, 0, 2, 4, 3][..],
        // supported_versions: TLS 1.1
        &[0, 0x2b, 0, 3, 2, 3, 2][..],
    ]
    .concat();
    body.extend((exts.len() as u16).to_be_bytes());
    body.extend(exts);
    let mut hs = vec![1, 0, 0, body.len() as u8];
    hs.extend(body);
    let mut record = vec![22, 3, 1, 0, hs.len() as u8];
    record.extend(hs);
    record
}

#[test]
fn a_client_offering_only_an_old_protocol_version_gets_an_alert() {
    let pem = cert();
    let client = client_config(&pem.0, rustls::DEFAULT_VERSIONS);
    for backend in backends() {
        let (server, _events) = start(tls_server_config(backend, &pem));
        let addr = server.local_addr();
        let mut s = raw_tcp(addr);
        s.write_all(&tls11_client_hello()).unwrap();
        let answer = read_to_end(&mut s);
        // An alert record: level fatal (2), protocol_version (70).
        assert!(has_alert(&answer), "{answer:?}");
        assert_eq!(
            &answer[5..7],
            &[2, 70],
            "protocol_version alert: {answer:?}"
        );
        assert!(eventually(EVENT_TIMEOUT, || conn_count(&server) == 0));
        assert_eq!(stats(&server).tls_handshake_failures, 1);
        still_serves(addr, &client);
        server.shutdown().unwrap();
    }
}

#[test]
fn truncation_without_close_notify_is_counted_and_closes() {
    let pem = cert();
    let client = client_config(&pem.0, rustls::DEFAULT_VERSIONS);
    for backend in backends() {
        let (server, events) = start(tls_server_config(backend, &pem));
        let mut ws = wss(server.local_addr(), &client);
        events.opened();
        ws.send(TMessage::text("x")).unwrap();
        assert_eq!(wss_read_data(&mut ws), TMessage::text("x"));
        ws.get_mut()
            .sock
            .shutdown(std::net::Shutdown::Both)
            .unwrap();
        assert_eq!(events.closed().1, 1006);
        assert!(eventually(EVENT_TIMEOUT, || conn_count(&server) == 0));
        assert_eq!(stats(&server).tls_truncated, 1);
        server.shutdown().unwrap();
    }
}

#[test]
fn a_tls12_renegotiation_attempt_is_refused_and_the_worker_goes_on() {
    let pem = cert();
    let tls12 = client_config(&pem.0, &[&rustls::version::TLS12]);
    let client = client_config(&pem.0, rustls::DEFAULT_VERSIONS);
    let have_openssl = std::process::Command::new("openssl")
        .arg("version")
        .output()
        .is_ok();
    for backend in backends() {
        let (server, _events) = start(tls_server_config(backend, &pem));
        let addr = server.local_addr();
        // TLS 1.2 works as such.
        let mut ws = wss(addr, &tls12);
        ws.send(TMessage::text("1.2")).unwrap();
        assert_eq!(wss_read_data(&mut ws), TMessage::text("1.2"));
        drop(ws);
        if have_openssl {
            // `R` asks s_client to renegotiate; rustls never renegotiates.
            let mut child = std::process::Command::new("openssl")
                .args([
                    "s_client",
                    "-connect",
                    &addr.to_string(),
                    "-tls1_2",
                    "-legacy_renegotiation",
                ])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            let mut stdin = child.stdin.take().unwrap();
            std::thread::sleep(Duration::from_millis(500));
            let _ = stdin.write_all(b"R\n");
            std::thread::sleep(Duration::from_millis(500));
            drop(stdin);
            let deadline = Instant::now() + Duration::from_secs(10);
            while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            let text = String::from_utf8_lossy(&out.stdout).to_string()
                + &String::from_utf8_lossy(&out.stderr);
            // The server answers with TLS's no_renegotiation alert.
            assert!(text.contains("RENEGOTIATING"), "s_client asked: {text}");
            assert!(
                text.contains("no renegotiation"),
                "refused with the alert: {text}"
            );
            assert!(eventually(EVENT_TIMEOUT, || conn_count(&server) == 0));
            assert_eq!(stats(&server).tls_errors, 1, "the renegotiation is counted");
        } else {
            eprintln!("!!!!!!!!!! openssl not found: renegotiation part skipped !!!!!!!!!!");
        }
        assert!(eventually(EVENT_TIMEOUT, || conn_count(&server) == 0));
        still_serves(addr, &client);
        server.shutdown().unwrap();
    }
}

/// Raises the soft limit on open descriptors to the hard limit; returns it.
#[allow(clippy::unnecessary_cast)] // rlim_t is not u64 on every target
fn raise_nofile() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        lim.rlim_cur = lim.rlim_max;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0);
    }
    lim.rlim_cur as u64
}

/// Resident memory of this process in bytes.
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kb * 1024
}

/// Echoes, with no state of its own per connection: the scale test measures the engine.
struct Echo;

impl throng_engine::Handler for Echo {
    type State = ();
    fn on_upgrade<'r>(
        &mut self,
        _req: &throng_engine::UpgradeRequest<'r>,
    ) -> throng_engine::Decision<'r, ()> {
        throng_engine::Decision::accept(())
    }
    fn on_message(
        &mut self,
        ws: &mut throng_engine::WebSocket<'_, ()>,
        m: throng_engine::Message<'_>,
    ) {
        let _ = ws.send(m);
    }
}

/// glibc's count of heap bytes handed out and not freed (all arenas, mmapped blocks too).
fn heap_in_use() -> u64 {
    // SAFETY: mallinfo2 only reads the allocator's statistics.
    let m = unsafe { libc::mallinfo2() };
    (m.uordblks + m.hblkhd) as u64
}

/// Environment of the scale test's server process: the backend, and the directory
/// holding `cert.pem` and `key.pem`.
const SCALE_BACKEND: &str = "THRONG_TLS_SCALE_BACKEND";
const SCALE_DIR: &str = "THRONG_TLS_SCALE_DIR";
/// Prefix of the lines the server process writes for the test. libtest writes
/// `test NAME ... ` before a test's own output on the same line, so the test looks for
/// the prefix anywhere in a line (waiting for a line *starting* with the word hung the
/// first version of this test for good: the parent never saw it, the child waited).
const MARK: &str = "THRONG-SCALE ";
/// Idle bytes per wss connection the server may hold at 15,000 (RSS over its warmed-up
/// baseline; the kernel's socket memory is not in RSS).
const IDLE_BYTES_PER_WSS: f64 = 2400.0;

/// The scale test's server, in a process of its own so that its memory is its own (the
/// other tests of this binary run beside the scale test). Says
/// `listening ADDR RSS HEAP`, then answers each line on stdin: `held N` (once N
/// connections are open and idle: `held RSS HEAP`), `done N` (once all N + the warm-up's
/// connections have closed cleanly and the counters agree: `done`).
#[test]
#[ignore = "run by fifteen_thousand_wss_connections_idle_memory_and_clean_close"]
fn wss_scale_server_process() {
    use std::io::BufRead;
    let Ok(backend) = std::env::var(SCALE_BACKEND) else {
        return;
    };
    raise_nofile();
    let backend: BackendChoice = backend.parse().unwrap();
    let dir = std::path::PathBuf::from(std::env::var(SCALE_DIR).unwrap());
    let pem = (
        std::fs::read_to_string(dir.join("cert.pem")).unwrap(),
        std::fs::read_to_string(dir.join("key.pem")).unwrap(),
    );
    let client = client_config(&pem.0, rustls::DEFAULT_VERSIONS);
    let mut cfg = tls_server_config(backend, &pem);
    cfg.ping_interval = None;
    cfg.handshake_timeout = Duration::from_secs(60);
    cfg.close_timeout = Duration::from_secs(10);
    let server = start_with(cfg, |_| Echo);
    let addr = server.local_addr();
    // Warm up the workers (arenas, pools, scratch, the receive ring) before the baseline.
    const WARM: usize = 40;
    for _ in 0..WARM {
        let mut ws = wss(addr, &client);
        ws.send(TMessage::text("warm")).unwrap();
        assert_eq!(wss_read_data(&mut ws), TMessage::text("warm"));
        ws.close(None).unwrap();
        wss_read_close(&mut ws);
    }
    assert!(eventually(EVENT_TIMEOUT, || conn_count(&server) == 0));
    // The warm-up's clients end TCP without a close_notify.
    let truncated = stats(&server).tls_truncated;
    std::thread::sleep(Duration::from_millis(300));
    println!("{MARK}listening {addr} {} {}", rss(), heap_in_use());
    for line in std::io::stdin().lock().lines() {
        let line = line.unwrap();
        let mut words = line.split_whitespace();
        let (Some(what), Some(n)) = (words.next(), words.next()) else {
            continue;
        };
        let n: usize = n.parse().unwrap();
        match what {
            "held" => {
                assert!(
                    eventually(Duration::from_secs(20), || open_count(&server) == n),
                    "{} of {n} open",
                    open_count(&server)
                );
                assert_eq!(
                    pool_in_use(&server),
                    0,
                    "idle wss connections hold no spill"
                );
                // Freed handshake memory is trimmed by the workers once they are quiet.
                std::thread::sleep(Duration::from_millis(500));
                println!("{MARK}held {} {}", rss(), heap_in_use());
            }
            "done" => {
                assert!(
                    eventually(Duration::from_secs(30), || conn_count(&server) == 0),
                    "{} connections left",
                    conn_count(&server)
                );
                let st = stats(&server);
                assert_eq!(st.tls_handshakes as usize, n + WARM);
                assert_eq!(st.tls_handshake_failures + st.tls_errors, 0, "{st:?}");
                assert_eq!(
                    st.tls_truncated, truncated,
                    "every client sent close_notify"
                );
                let report = server.shutdown().unwrap();
                assert_eq!(report.connections, 0);
                println!("{MARK}done");
                return;
            }
            other => panic!("unknown command {other:?}"),
        }
    }
    panic!("stdin ended before `done`");
}

/// A child process killed when dropped (a failing test must not leave it behind, nor
/// wait for it).
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The marked lines a child writes, read on a thread so that every wait has a deadline.
struct Marked(std::sync::mpsc::Receiver<String>);

impl Marked {
    fn new(out: std::process::ChildStdout) -> Marked {
        use std::io::BufRead;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(out).lines() {
                let Ok(line) = line else { return };
                if let Some(at) = line.find(MARK) {
                    let _ = tx.send(line[at + MARK.len()..].to_owned());
                }
            }
        });
        Marked(rx)
    }

    /// The words after `word` in the next marked line, which must be `word`'s.
    fn expect(&self, word: &str, within: Duration) -> Vec<u64> {
        let line = self.0.recv_timeout(within).unwrap_or_else(|e| {
            panic!("no `{word}` from the server process within {within:?} ({e})")
        });
        let mut words = line.split_whitespace();
        assert_eq!(words.next(), Some(word), "{line}");
        words.filter_map(|w| w.parse().ok()).collect()
    }
}

/// Opens `n` wss connections to `addr` on 4 threads, each echoing once in a while.
fn open_many(addr: SocketAddr, client: &Arc<ClientConfig>, n: usize) -> Vec<Wss> {
    let threads = 4;
    let parts: Vec<_> = (0..threads)
        .map(|t| {
            let client = client.clone();
            std::thread::spawn(move || {
                let mut held = Vec::new();
                for i in (t..n).step_by(threads) {
                    let mut ws = wss(addr, &client);
                    if i % 97 == 0 {
                        ws.send(TMessage::text(format!("{i}"))).unwrap();
                        assert_eq!(wss_read_data(&mut ws), TMessage::text(format!("{i}")));
                    }
                    held.push(ws);
                }
                held
            })
        })
        .collect();
    parts.into_iter().flat_map(|p| p.join().unwrap()).collect()
}

#[test]
fn fifteen_thousand_wss_connections_idle_memory_and_clean_close() {
    let n: usize = std::env::var("THRONG_TLS_SCALE_CONNECTIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(15_000);
    let limit = raise_nofile();
    assert!(
        limit >= n as u64 + 500,
        "RLIMIT_NOFILE hard limit {limit} is too low for {n}"
    );
    let pem = cert();
    let dir = std::env::temp_dir().join(format!("throng-tls-scale-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("cert.pem"), &pem.0).unwrap();
    std::fs::write(dir.join("key.pem"), &pem.1).unwrap();
    let client = client_config(&pem.0, rustls::DEFAULT_VERSIONS);
    for backend in backends() {
        let started = Instant::now();
        let mut child = Child(
            std::process::Command::new(std::env::current_exe().unwrap())
                .args([
                    "wss_scale_server_process",
                    "--exact",
                    "--ignored",
                    "--nocapture",
                    "--test-threads",
                    "1",
                ])
                .env(SCALE_BACKEND, format!("{backend:?}"))
                .env(SCALE_DIR, &dir)
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap(),
        );
        let marked = Marked::new(child.0.stdout.take().unwrap());
        let mut stdin = child.0.stdin.take().unwrap();
        let (addr, base) = {
            let line = marked
                .0
                .recv_timeout(Duration::from_secs(30))
                .expect("the server process starts");
            let w: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(w[0], "listening", "{line}");
            let addr: SocketAddr = w[1].parse().unwrap();
            (
                addr,
                (w[2].parse::<u64>().unwrap(), w[3].parse::<u64>().unwrap()),
            )
        };
        let mut all = open_many(addr, &client, n);
        assert_eq!(all.len(), n);
        let opening = started.elapsed();
        writeln!(stdin, "held {n}").unwrap();
        let held = marked.expect("held", Duration::from_secs(40));
        let per = held[0].saturating_sub(base.0) as f64 / n as f64;
        let heap = held[1].saturating_sub(base.1) as f64 / n as f64;
        eprintln!(
            "{backend:?}: {n} wss connections open in {opening:.1?}; server RSS {} -> {} MiB: \
             {per:.0} bytes per idle connection (heap {heap:.0})",
            base.0 >> 20,
            held[0] >> 20
        );
        // Echo on a sample of the idle connections, then close all of them with the
        // close handshake; each gets the server's close_notify, then EOF.
        for (i, ws) in all.iter_mut().enumerate().step_by(53) {
            ws.send(TMessage::binary(pattern(i as u64, 100))).unwrap();
            assert_eq!(wss_read_data(ws), TMessage::binary(pattern(i as u64, 100)));
        }
        for ws in all.iter_mut() {
            ws.close(None).unwrap();
        }
        for ws in all.iter_mut() {
            wss_read_close(ws);
            expect_close_notify(ws);
            // A good client answers with its own close_notify (the server counts a TCP
            // end without one as a truncation); the server may have closed already.
            let s = ws.get_mut();
            s.conn.send_close_notify();
            while s.conn.wants_write() && s.conn.write_tls(&mut s.sock).is_ok() {}
        }
        drop(all);
        writeln!(stdin, "done {n}").unwrap();
        marked.expect("done", Duration::from_secs(40));
        assert!(child.0.wait().unwrap().success());
        eprintln!("{backend:?}: all in {:.1?}", started.elapsed());
        assert!(
            per <= IDLE_BYTES_PER_WSS,
            "{per:.0} bytes per idle wss connection (at most {IDLE_BYTES_PER_WSS})"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn python_websockets_over_tls() {
    if std::env::var_os("THRONG_SKIP_PYTHON").is_some_and(|v| v == "1") {
        eprintln!("!!!!!!!!!! THRONG_SKIP_PYTHON=1: Python wss test skipped !!!!!!!!!!");
        return;
    }
    let pem = cert();
    let dir = std::env::temp_dir().join(format!("throng-tls-py-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = dir.join("cert.pem");
    std::fs::write(&ca, &pem.0).unwrap();
    let script =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/tls_client.py");
    for backend in backends() {
        let (server, _events) = start(tls_server_config(backend, &pem));
        let url = format!("wss://localhost:{}/echo", server.local_addr().port());
        let mut child = std::process::Command::new("python3")
            .arg(&script)
            .arg(&url)
            .arg(&ca)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run python3 (pip install websockets)");
        let deadline = Instant::now() + Duration::from_secs(60);
        while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let out = child.wait_with_output().unwrap();
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert!(
            out.status.success() && stdout.contains("ok wss echo"),
            "python: {stdout}\n{stderr}"
        );
        assert!(eventually(EVENT_TIMEOUT, || conn_count(&server) == 0));
        server.shutdown().unwrap();
    }
    let _ = std::fs::remove_dir_all(&dir);
}
