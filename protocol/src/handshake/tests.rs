use super::*;
use crate::error::HandshakeError;

const RFC_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const RFC_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// A valid upgrade request from RFC 6455 1.2, with `extra` header lines added.
fn request_with(extra: &str) -> Vec<u8> {
    format!(
        "GET /chat?room=1 HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: {RFC_KEY}\r\n\
         Origin: http://example.com\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
    .into_bytes()
}

/// A request built from exactly these header lines.
fn request_of(request_line: &str, headers: &[&str]) -> Vec<u8> {
    let mut s = format!("{request_line}\r\n");
    for h in headers {
        s.push_str(h);
        s.push_str("\r\n");
    }
    s.push_str("\r\n");
    s.into_bytes()
}

/// The RFC sample's headers minus the one starting with `without`.
fn request_without(without: &str) -> Vec<u8> {
    let headers = [
        "Host: server.example.com",
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version: 13",
    ];
    let kept: Vec<&str> = headers
        .into_iter()
        .filter(|h| !h.starts_with(without))
        .collect();
    request_of("GET /chat HTTP/1.1", &kept)
}

fn parse(buf: &[u8]) -> Result<Option<(Request<'_>, usize)>, HandshakeError> {
    parse_request(buf, &HandshakeConfig::default())
}

fn parse_full(buf: &[u8]) -> (Request<'_>, usize) {
    parse(buf).expect("parses").expect("complete")
}

fn validate(buf: &[u8]) -> Result<Upgrade<'_>, HandshakeError> {
    validate_upgrade(parse_full(buf).0)
}

fn error_response(err: HandshakeError) -> String {
    let mut out = Vec::new();
    write_error(&mut out, err);
    String::from_utf8(out).unwrap()
}

#[test]
fn rfc_sample_accept_key() {
    assert_eq!(&accept_key(RFC_KEY.as_bytes()), RFC_ACCEPT.as_bytes());
}

#[test]
fn rfc_sample_request_validates() {
    let buf = request_with("");
    let (req, n) = parse_full(&buf);
    assert_eq!(n, buf.len());
    assert_eq!(req.method(), "GET");
    assert_eq!(req.target(), "/chat?room=1");
    assert_eq!(req.path(), "/chat");
    assert_eq!(req.query(), Some("room=1"));
    assert_eq!(req.version_minor(), 1);
    assert_eq!(req.headers().len(), 6);
    assert!(req.is_websocket_upgrade());
    let up = validate_upgrade(req).unwrap();
    assert_eq!(up.accept(), RFC_ACCEPT);
    assert_eq!(up.key(), RFC_KEY.as_bytes());
    assert_eq!(up.host(), "server.example.com");
    assert_eq!(up.origin(), Some("http://example.com"));
    assert_eq!(up.path(), "/chat");
    assert_eq!(up.query(), Some("room=1"));
    assert_eq!(up.protocols().count(), 0);
    assert_eq!(up.extensions().count(), 0);
}

#[test]
fn every_prefix_is_incomplete() {
    let buf = request_with("Sec-WebSocket-Protocol: chat\r\n");
    let (full, n) = parse_full(&buf);
    assert_eq!(n, buf.len());
    for cut in 0..buf.len() {
        assert_eq!(parse(&buf[..cut]), Ok(None), "cut {cut}");
    }
    // The parser is stateless, so any split of the delivery is a prefix followed by the
    // whole buffer: the final call sees the same request.
    let mut grown = Vec::new();
    for chunk in buf.chunks(7) {
        grown.extend_from_slice(chunk);
        if grown.len() < buf.len() {
            assert_eq!(parse(&grown), Ok(None));
        }
    }
    assert_eq!(parse(&grown), Ok(Some((full, n))));
}

#[test]
fn pipelined_bytes_are_not_counted() {
    let mut buf = request_with("");
    let head = buf.len();
    let frame = [
        0x81,
        0x85,
        1,
        2,
        3,
        4,
        b'h' ^ 1,
        b'e' ^ 2,
        b'l' ^ 3,
        b'l' ^ 4,
        b'o' ^ 1,
    ];
    buf.extend_from_slice(&frame);
    let (_, n) = parse_full(&buf);
    assert_eq!(n, head);
    assert_eq!(&buf[n..], &frame);
}

#[test]
fn header_names_and_tokens_are_case_insensitive() {
    let buf = request_of(
        "GET / HTTP/1.1",
        &[
            "HOST: a",
            "upgrade: WebSocket",
            "connection: keep-alive, Upgrade",
            "SEC-WEBSOCKET-KEY: dGhlIHNhbXBsZSBub25jZQ==",
            "sec-websocket-version: 13",
        ],
    );
    let (req, _) = parse_full(&buf);
    assert_eq!(req.header("Host"), Some(&b"a"[..]));
    assert_eq!(req.header_str("sec-WebSocket-key"), Some(RFC_KEY));
    assert!(req.header_has_token("CONNECTION", "KEEP-ALIVE"));
    assert!(!req.header_has_token("connection", "keep"));
    assert!(req.is_websocket_upgrade());
    assert_eq!(validate_upgrade(req).unwrap().accept(), RFC_ACCEPT);
}

#[test]
fn header_values_are_trimmed_and_first_match_wins() {
    let buf = request_of("GET / HTTP/1.1", &["Host: a", "X-A:   one  ", "x-a: two"]);
    let (req, _) = parse_full(&buf);
    assert_eq!(req.header_str("x-a"), Some("one"));
    assert_eq!(
        req.header_values("X-A").collect::<Vec<_>>(),
        [&b"one"[..], b"two"]
    );
    assert_eq!(req.headers().nth(1), Some(("X-A", &b"one"[..])));
    assert!(!req.is_websocket_upgrade());
}

#[test]
fn header_str_refuses_non_utf8() {
    let buf = b"GET / HTTP/1.1\r\nHost: a\r\nX: \xff\xfe\r\n\r\n";
    let (req, _) = parse_full(buf);
    assert_eq!(req.header("x"), Some(&b"\xff\xfe"[..]));
    assert_eq!(req.header_str("x"), None);
}

#[test]
fn query_and_path_forms() {
    let cases = [
        ("/", "/", None),
        ("/a?", "/a", Some("")),
        ("/a?b=1&c=2?d", "/a", Some("b=1&c=2?d")),
        ("http://h.example/x/y?q", "/x/y", Some("q")),
        ("ws://h.example", "/", None),
        ("https://h.example?q", "/", Some("q")),
        ("*", "*", None),
        ("h.example:443", "h.example:443", None),
    ];
    for (target, path, query) in cases {
        let buf = request_of(&format!("GET {target} HTTP/1.1"), &["Host: a"]);
        let (req, _) = parse_full(&buf);
        assert_eq!(req.target(), target);
        assert_eq!(req.path(), path, "{target}");
        assert_eq!(req.query(), query, "{target}");
    }
}

#[test]
fn subprotocols_and_extensions_across_repeated_headers() {
    let buf = request_with(
        "Sec-WebSocket-Protocol: chat, superchat\r\nSec-WebSocket-Protocol:  v2.json ,, x\r\n\
         Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits, foo\r\n\
         Sec-WebSocket-Extensions: bar; baz=\"a,b\\\"c,\" ; q=1,  , last\r\n",
    );
    let up = validate(&buf).unwrap();
    assert_eq!(
        up.protocols().collect::<Vec<_>>(),
        ["chat", "superchat", "v2.json", "x"]
    );
    assert_eq!(
        up.extensions().collect::<Vec<_>>(),
        [
            "permessage-deflate; client_max_window_bits",
            "foo",
            "bar; baz=\"a,b\\\"c,\" ; q=1",
            "last"
        ]
    );
    assert_eq!(up.select_protocol(&["x", "chat"]), Some("x"));
    assert_eq!(up.select_protocol(&["Chat"]), None);
    assert_eq!(
        up.request().header_str("origin"),
        Some("http://example.com")
    );
}

#[test]
fn key_rejections() {
    let fifteen = "AAAAAAAAAAAAAAAAAAAA"; // 20 chars = 15 bytes
    let seventeen = "AAAAAAAAAAAAAAAAAAAAAAA="; // 24 chars = 17 bytes
    let bad_bits = "dGhlIHNhbXBsZSBub25jZR=="; // non-canonical trailing bits
    for key in [fifteen, seventeen, "not base64 at all!!!!!==", bad_bits, ""] {
        let buf = request_of(
            "GET / HTTP/1.1",
            &[
                "Host: a",
                "Upgrade: websocket",
                "Connection: Upgrade",
                &format!("Sec-WebSocket-Key: {key}"),
                "Sec-WebSocket-Version: 13",
            ],
        );
        assert_eq!(
            validate(&buf).unwrap_err(),
            HandshakeError::BadKey,
            "{key:?}"
        );
    }
    assert_eq!(
        validate(&request_without("Sec-WebSocket-Key")).unwrap_err(),
        HandshakeError::BadKey
    );
    let dup = request_with(&format!("Sec-WebSocket-Key: {RFC_KEY}\r\n"));
    assert_eq!(validate(&dup).unwrap_err(), HandshakeError::BadKey);
    assert_eq!(HandshakeError::BadKey.status(), 400);
}

#[test]
fn unsupported_versions_get_426_with_version_header() {
    for version in ["99", "7", "8", "13, 8", "013", ""] {
        let buf = request_of(
            "GET / HTTP/1.1",
            &[
                "Host: a",
                "Upgrade: websocket",
                "Connection: Upgrade",
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
                &format!("Sec-WebSocket-Version: {version}"),
            ],
        );
        let err = validate(&buf).unwrap_err();
        assert_eq!(err, HandshakeError::UnsupportedVersion, "{version:?}");
        assert_eq!(err.status(), 426);
        let resp = error_response(err);
        assert!(resp.starts_with("HTTP/1.1 426 Upgrade Required\r\n"));
        assert!(resp.contains("\r\nSec-WebSocket-Version: 13\r\n"));
        assert!(resp.contains("\r\nUpgrade: websocket\r\n"));
    }
    // A second, different version header is refused too.
    let buf = request_with("Sec-WebSocket-Version: 8\r\n");
    assert_eq!(
        validate(&buf).unwrap_err(),
        HandshakeError::UnsupportedVersion
    );
}

#[test]
fn missing_version() {
    let err = validate(&request_without("Sec-WebSocket-Version")).unwrap_err();
    assert_eq!(err, HandshakeError::MissingVersion);
    assert_eq!(err.status(), 400);
    assert!(error_response(err).contains("\r\nSec-WebSocket-Version: 13\r\n"));
}

#[test]
fn post_is_405_with_allow() {
    let mut buf = request_with("");
    buf.splice(0..3, *b"POST");
    let err = validate(&buf).unwrap_err();
    assert_eq!(err, HandshakeError::MethodNotAllowed);
    assert_eq!(err.status(), 405);
    let resp = error_response(err);
    assert!(resp.starts_with("HTTP/1.1 405 Method Not Allowed\r\nAllow: GET\r\n"));
    // Methods are case-sensitive.
    buf.splice(0..4, *b"get");
    assert_eq!(
        validate(&buf).unwrap_err(),
        HandshakeError::MethodNotAllowed
    );
}

#[test]
fn http_1_0_is_400() {
    let buf = request_with("");
    let text = String::from_utf8(buf)
        .unwrap()
        .replacen("HTTP/1.1", "HTTP/1.0", 1);
    let (req, _) = parse_full(text.as_bytes());
    assert_eq!(req.version_minor(), 0);
    let err = validate_upgrade(req).unwrap_err();
    assert_eq!(err, HandshakeError::HttpVersion);
    assert_eq!(err.status(), 400);
    // Versions other than 1.0 and 1.1 do not parse at all.
    assert_eq!(parse(b"GET / HTTP/2.0\r\n"), Err(HandshakeError::Malformed));
}

#[test]
fn missing_upgrade_is_not_an_attempt_without_a_key() {
    let buf = request_of("GET / HTTP/1.1", &["Host: a", "Connection: Upgrade"]);
    let (req, _) = parse_full(&buf);
    assert!(!req.is_websocket_upgrade());
    assert_eq!(
        validate_upgrade(req).unwrap_err(),
        HandshakeError::NotUpgrade
    );
    // With a key it is an attempt, refused for the missing Upgrade.
    let buf = request_without("Upgrade");
    let (req, _) = parse_full(&buf);
    assert!(req.is_websocket_upgrade());
    assert_eq!(
        validate_upgrade(req).unwrap_err(),
        HandshakeError::NotUpgrade
    );
    assert_eq!(HandshakeError::NotUpgrade.status(), 400);
}

#[test]
fn upgrade_h2c_is_not_websocket() {
    let buf = request_of(
        "GET / HTTP/1.1",
        &["Host: a", "Upgrade: h2c", "Connection: Upgrade"],
    );
    let (req, _) = parse_full(&buf);
    assert!(!req.is_websocket_upgrade());
    assert_eq!(
        validate_upgrade(req).unwrap_err(),
        HandshakeError::NotUpgrade
    );
    let buf = request_of("GET / HTTP/1.1", &["Host: a", "Upgrade: h2c, WebSocket"]);
    assert!(parse_full(&buf).0.is_websocket_upgrade());
}

#[test]
fn connection_must_list_upgrade() {
    assert_eq!(
        validate(&request_without("Connection")).unwrap_err(),
        HandshakeError::MissingConnectionUpgrade
    );
    let buf = String::from_utf8(request_without("Connection"))
        .unwrap()
        .replacen(
            "Host: server.example.com\r\n",
            "Host: server.example.com\r\nConnection: keep-alive, upgraded\r\n",
            1,
        );
    assert_eq!(
        validate(buf.as_bytes()).unwrap_err(),
        HandshakeError::MissingConnectionUpgrade
    );
    // Repeated Connection headers form one list.
    let buf = String::from_utf8(request_without("Connection"))
        .unwrap()
        .replacen(
            "Host: server.example.com\r\n",
            "Host: server.example.com\r\nConnection: keep-alive\r\nConnection: upgrade\r\n",
            1,
        );
    assert!(validate(buf.as_bytes()).is_ok());
}

#[test]
fn missing_or_repeated_host() {
    let err = validate(&request_without("Host")).unwrap_err();
    assert_eq!(err, HandshakeError::MissingHost);
    assert_eq!(err.status(), 400);
    let dup = request_with("Host: other.example\r\n");
    assert_eq!(validate(&dup).unwrap_err(), HandshakeError::Malformed);
}

#[test]
fn non_utf8_origin_is_malformed() {
    let mut buf = request_without("Origin");
    let at = buf.len() - 2;
    buf.splice(at..at, b"Origin: http://\xff\r\n".iter().copied());
    assert_eq!(validate(&buf).unwrap_err(), HandshakeError::Malformed);
}

#[test]
fn malformed_header_lines() {
    let cases: [&[u8]; 6] = [
        b"GET / HTTP/1.1\r\nHost: a\r\nNoColonHere\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost : a\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\0b\r\n\r\n",
        b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n",
    ];
    for buf in cases {
        assert_eq!(
            parse(buf),
            Err(HandshakeError::Malformed),
            "{:?}",
            buf.escape_ascii()
        );
    }
}

#[test]
fn garbage_fails_early() {
    // Each fails before its first line ends.
    let cases: [(&[u8], usize); 4] = [
        (b"GET / HTTP/1.1\r\nHost: a\r\nNoColonHere\r\n", 37),
        (b"GET / HTTP/1.1\r\nHost : a", 21),
        (b"GET / HTTP/1.1\r\nHost: a\rb", 25),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 1),
    ];
    for (buf, fails_at) in cases {
        for cut in 0..=buf.len() {
            let expected = if cut < fails_at {
                Ok(None)
            } else {
                Err(HandshakeError::Malformed)
            };
            assert_eq!(
                parse(&buf[..cut]),
                expected,
                "{:?} cut {cut}",
                buf.escape_ascii()
            );
        }
    }
    let err = parse(b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03").unwrap_err();
    assert_eq!(err.status(), 400);
    assert_eq!(
        parse(b"SSH-2.0-OpenSSH_9.6\r\n"),
        Err(HandshakeError::Malformed)
    );
}

#[test]
fn one_mib_header_block_is_431() {
    let mut buf = b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: ".to_vec();
    buf.resize(buf.len() + (1 << 20), b'a');
    // Incomplete and already over the limit: refused without waiting for the end.
    assert_eq!(parse(&buf), Err(HandshakeError::HeadersTooLarge));
    buf.extend_from_slice(b"\r\n\r\n");
    let err = parse(&buf).unwrap_err();
    assert_eq!(err, HandshakeError::HeadersTooLarge);
    assert_eq!(err.status(), 431);
    assert!(error_response(err).starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"));
}

#[test]
fn header_byte_limit_is_exact() {
    let buf = request_with("");
    let exact = HandshakeConfig {
        max_header_bytes: buf.len(),
        ..HandshakeConfig::default()
    };
    assert_eq!(parse_request(&buf, &exact).unwrap().unwrap().1, buf.len());
    let mut pipelined = buf.clone();
    pipelined.extend_from_slice(&[0x88, 0x80, 0, 0, 0, 0]);
    assert_eq!(
        parse_request(&pipelined, &exact).unwrap().unwrap().1,
        buf.len()
    );
    let short = HandshakeConfig {
        max_header_bytes: buf.len() - 1,
        ..HandshakeConfig::default()
    };
    assert_eq!(parse_request(&buf[..buf.len() - 1], &short), Ok(None));
    assert_eq!(
        parse_request(&buf, &short),
        Err(HandshakeError::HeadersTooLarge)
    );
}

#[test]
fn too_many_headers_is_431() {
    let lines: Vec<String> = (0..65).map(|i| format!("X-{i}: v")).collect();
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    let buf = request_of("GET / HTTP/1.1", &refs);
    assert_eq!(parse(&buf), Err(HandshakeError::HeadersTooLarge));
    let buf = request_of("GET / HTTP/1.1", &refs[..64]);
    assert_eq!(parse_full(&buf).0.headers().len(), 64);
    // The stack array caps whatever the configuration asks for.
    let many = HandshakeConfig {
        max_headers: 1000,
        max_header_bytes: 1 << 20,
    };
    let lines: Vec<String> = (0..=MAX_HEADERS_CAP).map(|i| format!("X-{i}: v")).collect();
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    let buf = request_of("GET / HTTP/1.1", &refs);
    assert_eq!(
        parse_request(&buf, &many),
        Err(HandshakeError::HeadersTooLarge)
    );
    let buf = request_of("GET / HTTP/1.1", &refs[..MAX_HEADERS_CAP]);
    assert!(parse_request(&buf, &many).unwrap().is_some());
}

#[test]
fn leading_blank_lines_are_skipped_and_counted() {
    let mut buf = b"\r\n\r\n".to_vec();
    buf.extend_from_slice(&request_with(""));
    let (req, n) = parse_full(&buf);
    assert_eq!(n, buf.len());
    assert!(validate_upgrade(req).is_ok());
}

#[test]
fn accept_response_is_byte_exact() {
    let buf = request_with("Sec-WebSocket-Protocol: chat\r\n");
    let up = validate(&buf).unwrap();
    let mut out = b"earlier".to_vec();
    write_accept(&mut out, &up, None, None);
    assert_eq!(
        out,
        b"earlierHTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
          Connection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
    );
    out.clear();
    write_accept(
        &mut out,
        &up,
        up.select_protocol(&["chat"]),
        Some("permessage-deflate"),
    );
    assert_eq!(
        out,
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Protocol: chat\r\n\
          Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n"
    );
}

#[test]
fn accept_response_drops_injected_values() {
    let buf = request_with("");
    let up = validate(&buf).unwrap();
    let mut out = Vec::new();
    write_accept(
        &mut out,
        &up,
        Some("chat\r\nSet-Cookie: x=1"),
        Some("a\r\nX: y"),
    );
    let text = String::from_utf8(out).unwrap();
    assert!(!text.contains("Set-Cookie") && !text.contains("X: y"));
    assert!(text.ends_with("xOo=\r\n\r\n"));
    let mut out = Vec::new();
    write_accept(&mut out, &up, Some("a b"), Some("  "));
    assert!(out.ends_with(b"xOo=\r\n\r\n"));
}

#[test]
fn error_responses_are_byte_exact() {
    assert_eq!(
        error_response(HandshakeError::UnsupportedVersion),
        "HTTP/1.1 426 Upgrade Required\r\nSec-WebSocket-Version: 13\r\nUpgrade: websocket\r\n\
         Connection: Upgrade, close\r\nContent-Type: text/plain\r\nContent-Length: 33\r\n\r\n\
         unsupported Sec-WebSocket-Version"
    );
    assert_eq!(
        error_response(HandshakeError::Malformed),
        "HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Type: text/plain\r\n\
         Content-Length: 22\r\n\r\nmalformed HTTP request"
    );
}

#[test]
fn every_error_response_parses_back() {
    let errors = [
        HandshakeError::Malformed,
        HandshakeError::HeadersTooLarge,
        HandshakeError::MethodNotAllowed,
        HandshakeError::HttpVersion,
        HandshakeError::MissingHost,
        HandshakeError::NotUpgrade,
        HandshakeError::MissingConnectionUpgrade,
        HandshakeError::BadKey,
        HandshakeError::MissingVersion,
        HandshakeError::UnsupportedVersion,
    ];
    for err in errors {
        let text = error_response(err);
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut resp = httparse::Response::new(&mut headers);
        let n = resp.parse(text.as_bytes()).unwrap().unwrap();
        assert_eq!(resp.code, Some(err.status()));
        assert_eq!(resp.reason, reason_phrase(err.status()));
        assert_eq!(&text[n..], err.reason());
        let len = resp
            .headers
            .iter()
            .find(|h| h.name == "Content-Length")
            .unwrap()
            .value;
        assert_eq!(len, err.reason().len().to_string().as_bytes());
    }
}

#[test]
fn plain_response_is_byte_exact() {
    let mut out = Vec::new();
    write_response(
        &mut out,
        404,
        &[("Content-Type", "text/html")],
        b"<h1>no</h1>",
    );
    assert_eq!(
        out,
        b"HTTP/1.1 404 Not Found\r\nContent-Type: text/html\r\nContent-Length: 11\r\n\r\n<h1>no</h1>"
    );
    out.clear();
    write_response(&mut out, 204, &[], b"ignored");
    assert_eq!(out, b"HTTP/1.1 204 No Content\r\n\r\n");
    out.clear();
    write_response(&mut out, 299, &[], b"");
    assert_eq!(out, b"HTTP/1.1 299 \r\nContent-Length: 0\r\n\r\n");
    out.clear();
    write_response(&mut out, 42, &[], b"x");
    assert_eq!(
        out,
        b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 1\r\n\r\nx"
    );
}

#[test]
fn plain_response_prevents_header_injection() {
    let mut out = Vec::new();
    let headers = [
        ("X-Ok", "fine"),
        ("X-Bad", "a\r\nSet-Cookie: evil=1"),
        ("X-Bad\r\nSet-Cookie", "evil=2"),
        ("X-Lf", "a\nb"),
        ("X Space", "v"),
        ("X-Colon:", "v"),
        ("", "v"),
        ("X-Nul", "a\0b"),
        ("content-length", "999"),
        ("Transfer-Encoding", "chunked"),
        ("X-Utf8", "caf\u{e9}\tok"),
    ];
    write_response(&mut out, 403, &headers, b"no");
    assert_eq!(
        out,
        "HTTP/1.1 403 Forbidden\r\nX-Ok: fine\r\nX-Utf8: caf\u{e9}\tok\r\nContent-Length: 2\r\n\r\nno"
            .as_bytes()
    );
}

#[test]
fn reason_phrases_cover_the_common_codes() {
    for code in [
        101, 200, 204, 301, 302, 304, 400, 401, 403, 404, 405, 408, 413, 426, 429, 431, 500, 503,
    ] {
        assert!(reason_phrase(code).is_some_and(|p| !p.is_empty()), "{code}");
    }
    assert_eq!(reason_phrase(299), None);
}

#[test]
fn default_config() {
    let c = HandshakeConfig::default();
    assert_eq!((c.max_header_bytes, c.max_headers), (8192, 64));
}
