//! Arbitrary bytes into the handshake parser: it must never panic, must agree with itself
//! on every prefix it is shown, and whatever it accepts must validate and answer without
//! panicking or emitting a malformed response head.
#![no_main]

use libfuzzer_sys::fuzz_target;
use throng_protocol::HandshakeError;
use throng_protocol::handshake::{
    HandshakeConfig, Request, parse_request, validate_upgrade, write_accept, write_error,
    write_response,
};

fuzz_target!(|data: &[u8]| {
    let (config, input) = split_config(data);
    let full = parse_request(input, &config);
    for cut in cuts(input) {
        check_prefix(&input[..cut], &config, &full);
    }
    match full {
        Ok(Some((req, n))) => {
            assert!(n <= input.len() && n <= config.max_header_bytes);
            exercise(req, &input[n..]);
        }
        Ok(None) => assert!(input.len() <= config.max_header_bytes),
        Err(err) => {
            let mut out = Vec::new();
            write_error(&mut out, err);
            check_response(&out, Some(err.reason().as_bytes()));
        }
    }
});

/// A leading byte with the high bit set selects small limits, so the 431 paths are
/// reachable with short inputs; otherwise the defaults apply and the byte is input.
fn split_config(data: &[u8]) -> (HandshakeConfig, &[u8]) {
    let mut config = HandshakeConfig::default();
    match data.split_first() {
        Some((&b, rest)) if b >= 0x80 => {
            config.max_header_bytes = usize::from(b & 0x3f) * 8;
            config.max_headers = usize::from(b >> 6 & 1) * 3 + 1;
            (config, rest)
        }
        _ => (config, data),
    }
}

/// A few prefix lengths: parsing every prefix would be quadratic, so take the edges and
/// two cuts that depend on the content.
fn cuts(input: &[u8]) -> impl Iterator<Item = usize> {
    let len = input.len();
    let hash = input.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    let random = (hash % (len as u64 + 1)) as usize;
    let terminator = input
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(len, |i| i + 3);
    [
        0,
        len / 2,
        len.saturating_sub(1),
        random,
        terminator,
        terminator + 1,
    ]
    .into_iter()
    .filter(move |&c| c <= len)
}

/// A prefix sees a subset of the bytes: it is incomplete, or it reaches the same verdict
/// the whole input did.
fn check_prefix(
    prefix: &[u8],
    config: &HandshakeConfig,
    full: &Result<Option<(Request<'_>, usize)>, HandshakeError>,
) {
    let got = parse_request(prefix, config);
    match (&got, full) {
        (Ok(None), Ok(None) | Err(_)) => {}
        (Ok(None), Ok(Some((_, n)))) => assert!(prefix.len() < *n, "prefix of a complete head"),
        (Ok(Some((req, n))), Ok(Some((full_req, full_n)))) => {
            assert_eq!(n, full_n);
            assert_eq!(req, full_req);
        }
        (Err(a), Err(b)) => assert_eq!(a, b),
        _ => panic!(
            "prefix of {} bytes gave {got:?}, whole input {full:?}",
            prefix.len()
        ),
    }
}

fn exercise(req: Request<'_>, rest: &[u8]) {
    let _ = (
        req.method(),
        req.target(),
        req.version_minor(),
        req.header_str("host"),
    );
    assert!(req.target().contains(req.path()) || req.path() == "/");
    if let Some(q) = req.query() {
        assert!(req.target().ends_with(q));
    }
    for (name, value) in req.headers() {
        assert!(!name.is_empty());
        assert!(req.header(name).is_some());
        assert!(!value.contains(&b'\r') && !value.contains(&b'\n'));
    }
    let _ = req.is_websocket_upgrade();
    echo_headers(&req, rest);
    match validate_upgrade(req) {
        Ok(up) => {
            assert_eq!(up.accept().len(), 28);
            assert_eq!(up.key().len(), 24);
            for p in up.protocols() {
                assert!(!p.is_empty() && !p.contains(',') && p.trim() == p);
            }
            for e in up.extensions() {
                assert!(!e.is_empty() && e.trim_matches([' ', '\t']) == e);
            }
            let protocol = up.protocols().next();
            let extension = up.extensions().next();
            let mut out = Vec::new();
            write_accept(&mut out, &up, protocol, extension);
            // Client-supplied strings go straight back: the head must stay well-formed.
            let origin = up.origin();
            write_accept(
                &mut out,
                &up,
                Some(origin.unwrap_or(up.request().target())),
                origin,
            );
            check_accepts(&out);
            let _ = up.into_request();
        }
        Err(err) => {
            let mut out = Vec::new();
            write_error(&mut out, err);
            check_response(&out, Some(err.reason().as_bytes()));
        }
    }
}

/// Every request header, as text, echoed into a plain response with the unparsed rest of
/// the input as its body: whatever the values hold, the framing must survive.
fn echo_headers(req: &Request<'_>, body: &[u8]) {
    let headers: Vec<(&str, &str)> = req
        .headers()
        .map(|(n, v)| (n, std::str::from_utf8(v).unwrap_or("\r\nX-Injected: 1")))
        .chain([
            ("X-Target", req.target()),
            ("X\r\nY", "z"),
            ("Content-Length", "0"),
        ])
        .collect();
    let mut out = Vec::new();
    write_response(&mut out, 200, &headers, body);
    check_response(&out, Some(body));
    out.clear();
    write_response(&mut out, 101, &headers, body);
    check_response(&out, Some(b""));
}

/// One response: a status line, header lines that are each `token: value` without CR or
/// LF, a blank line, then exactly `body` (the Content-Length, when there is one, agreeing).
fn check_response(out: &[u8], body: Option<&[u8]>) {
    let head_end = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("head ends")
        + 4;
    let head = &out[..head_end - 4];
    let mut lines = head.split(|&b| b == b'\n');
    let status = lines.next().expect("status line");
    assert!(status.starts_with(b"HTTP/1.1 ") && status.len() >= 13);
    let mut content_length = None;
    for line in lines {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        assert!(
            !line.contains(&b'\r'),
            "bare CR in {:?}",
            line.escape_ascii()
        );
        let colon = line.iter().position(|&b| b == b':').expect("colon");
        assert!(colon > 0 && line[..colon].iter().all(|b| b.is_ascii_graphic()));
        assert!(!line[..colon].eq_ignore_ascii_case(b"x-injected"));
        if line[..colon].eq_ignore_ascii_case(b"content-length") {
            assert!(content_length.is_none(), "two Content-Length headers");
            content_length = Some(
                std::str::from_utf8(&line[colon + 2..])
                    .unwrap()
                    .parse::<usize>()
                    .unwrap(),
            );
        }
    }
    assert!(
        !head
            .split(|&b| b == b'\n')
            .any(|l| l.is_empty() || l == b"\r")
    );
    let rest = &out[head_end..];
    if let Some(body) = body {
        assert_eq!(rest, body);
    }
    if let Some(len) = content_length {
        assert_eq!(len, rest.len());
    }
}

/// Two 101 responses back to back.
fn check_accepts(out: &[u8]) {
    let first_end = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("head ends")
        + 4;
    check_response(&out[..first_end], Some(b""));
    check_response(&out[first_end..], Some(b""));
    assert!(out.starts_with(b"HTTP/1.1 101 Switching Protocols\r\n"));
}
