//! The PROXY protocol (HAProxy's, versions 1 and 2): the header a load balancer puts in
//! front of a connection to say who the client really is. Bytes in, addresses out.
//!
//! [`parse`] takes the first bytes of a connection and returns `Ok(None)` while the header
//! is incomplete, the addresses and the header's length once it is whole, or an error as
//! soon as the bytes cannot start a valid header. Both versions are bounded: a version 1
//! line is at most 107 bytes (the specification's limit), a version 2 header at most
//! [`MAX_V2_LEN`]; nothing is allocated.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The 12 bytes that start a version 2 header.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// Longest version 1 line, CRLF included (the specification's bound).
pub const MAX_V1_LEN: usize = 107;
/// Longest version 2 header accepted, its 16 fixed bytes included: room for the addresses
/// and the TLVs load balancers add (ALPN, authority, unique id, SSL details).
pub const MAX_V2_LEN: usize = 16 + 1024;

/// What the header says about the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyHeader {
    /// The protocol version (1 or 2).
    pub version: u8,
    /// The client's address and the address it connected to; `None` for a health check of
    /// the proxy's own (version 2 `LOCAL`, version 1 `UNKNOWN`) or an address family that
    /// is not IP (a Unix socket): then the connection's own addresses stand.
    pub addresses: Option<(SocketAddr, SocketAddr)>,
}

impl ProxyHeader {
    /// The client's address, when the header names one.
    pub fn source(&self) -> Option<SocketAddr> {
        self.addresses.map(|(s, _)| s)
    }
}

/// Why a connection's first bytes are not a PROXY header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyError {
    /// Neither signature: the peer speaks without a header (or something else entirely).
    Missing,
    /// A header that breaks the grammar (a bad address, port, family or command).
    Malformed,
    /// Longer than [`MAX_V1_LEN`] or [`MAX_V2_LEN`].
    TooLong,
}

impl std::fmt::Display for ProxyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ProxyError::Missing => "no PROXY protocol header",
            ProxyError::Malformed => "malformed PROXY protocol header",
            ProxyError::TooLong => "PROXY protocol header too long",
        })
    }
}

impl std::error::Error for ProxyError {}

/// Parses the PROXY header at the start of `buf` (version 1 or 2).
///
/// `Ok(None)`: the bytes so far may still become a header; call again with more.
/// `Ok(Some((header, len)))`: the header is the first `len` bytes; what follows is the
/// client's own data. An error is final.
pub fn parse(buf: &[u8]) -> Result<Option<(ProxyHeader, usize)>, ProxyError> {
    const V1: &[u8] = b"PROXY ";
    if buf.is_empty() {
        return Ok(None);
    }
    let n = buf.len().min(V2_SIGNATURE.len());
    if buf[..n] == V2_SIGNATURE[..n] {
        return if n < V2_SIGNATURE.len() {
            Ok(None)
        } else {
            parse_v2(buf)
        };
    }
    let n = buf.len().min(V1.len());
    if buf[..n] == V1[..n] {
        return if n < V1.len() {
            Ok(None)
        } else {
            parse_v1(buf)
        };
    }
    Err(ProxyError::Missing)
}

fn parse_v2(buf: &[u8]) -> Result<Option<(ProxyHeader, usize)>, ProxyError> {
    let Some(fixed) = buf.get(..16) else {
        // Check what has arrived of the version byte already.
        if let Some(&vc) = buf.get(12)
            && vc >> 4 != 2
        {
            return Err(ProxyError::Malformed);
        }
        return Ok(None);
    };
    let (version_command, family) = (fixed[12], fixed[13]);
    let len = usize::from(u16::from_be_bytes([fixed[14], fixed[15]]));
    if version_command >> 4 != 2 {
        return Err(ProxyError::Malformed);
    }
    let command = version_command & 0x0f;
    if command > 1 {
        return Err(ProxyError::Malformed);
    }
    if 16 + len > MAX_V2_LEN {
        return Err(ProxyError::TooLong);
    }
    // The address block's size by family (transport: 0 unspecified, 1 stream, 2 dgram).
    let need = match family >> 4 {
        0 => 0,
        1 => 12,
        2 => 36,
        3 => 216,
        _ => return Err(ProxyError::Malformed),
    };
    if family & 0x0f > 2 || len < need {
        return Err(ProxyError::Malformed);
    }
    let Some(body) = buf.get(16..16 + len) else {
        return Ok(None);
    };
    let addresses = match (command, family >> 4) {
        (1, 1) => {
            let ip = |i: usize| {
                IpAddr::V4(Ipv4Addr::new(
                    body[i],
                    body[i + 1],
                    body[i + 2],
                    body[i + 3],
                ))
            };
            let port = |i: usize| u16::from_be_bytes([body[i], body[i + 1]]);
            Some((
                SocketAddr::new(ip(0), port(8)),
                SocketAddr::new(ip(4), port(10)),
            ))
        }
        (1, 2) => {
            let ip = |i: usize| {
                let mut a = [0u8; 16];
                a.copy_from_slice(&body[i..i + 16]);
                IpAddr::V6(Ipv6Addr::from(a))
            };
            let port = |i: usize| u16::from_be_bytes([body[i], body[i + 1]]);
            Some((
                SocketAddr::new(ip(0), port(32)),
                SocketAddr::new(ip(16), port(34)),
            ))
        }
        // LOCAL (the proxy's own health check), unspecified or Unix: no IP to report.
        _ => None,
    };
    Ok(Some((
        ProxyHeader {
            version: 2,
            addresses,
        },
        16 + len,
    )))
}

fn parse_v1(buf: &[u8]) -> Result<Option<(ProxyHeader, usize)>, ProxyError> {
    let window = &buf[..buf.len().min(MAX_V1_LEN)];
    let Some(lf) = window.iter().position(|&b| b == b'\n') else {
        if buf.len() >= MAX_V1_LEN {
            return Err(ProxyError::TooLong);
        }
        // Only the characters of a header may come before its end.
        if window
            .iter()
            .any(|&b| !(b' '..=b'~').contains(&b) && b != b'\r')
        {
            return Err(ProxyError::Malformed);
        }
        return Ok(None);
    };
    if lf == 0 || window[lf - 1] != b'\r' {
        return Err(ProxyError::Malformed);
    }
    if window[..lf - 1]
        .iter()
        .any(|&b| !(b' '..=b'~').contains(&b))
    {
        return Err(ProxyError::Malformed); // as the incomplete check says, early
    }
    let line = std::str::from_utf8(&window[6..lf - 1]).map_err(|_| ProxyError::Malformed)?;
    let mut words = line.split(' ');
    let addresses = match words.next() {
        Some("UNKNOWN") => None, // the rest of the line is to be ignored
        Some(family @ ("TCP4" | "TCP6")) => {
            let (Some(src), Some(dst), Some(sport), Some(dport), None) = (
                words.next(),
                words.next(),
                words.next(),
                words.next(),
                words.next(),
            ) else {
                return Err(ProxyError::Malformed);
            };
            let ip = |s: &str| -> Result<IpAddr, ProxyError> {
                let ip = if family == "TCP4" {
                    s.parse::<Ipv4Addr>().map(IpAddr::V4)
                } else {
                    s.parse::<Ipv6Addr>().map(IpAddr::V6)
                };
                ip.map_err(|_| ProxyError::Malformed)
            };
            Some((
                SocketAddr::new(ip(src)?, port(sport)?),
                SocketAddr::new(ip(dst)?, port(dport)?),
            ))
        }
        _ => return Err(ProxyError::Malformed),
    };
    Ok(Some((
        ProxyHeader {
            version: 1,
            addresses,
        },
        lf + 1,
    )))
}

/// A version 1 port: 1 to 5 digits, no sign or leading zero, at most 65535.
fn port(s: &str) -> Result<u16, ProxyError> {
    let ok = !s.is_empty()
        && s.len() <= 5
        && s.bytes().all(|b| b.is_ascii_digit())
        && (s == "0" || !s.starts_with('0'));
    if !ok {
        return Err(ProxyError::Malformed);
    }
    s.parse().map_err(|_| ProxyError::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2(command: u8, family: u8, body: &[u8]) -> Vec<u8> {
        let mut h = V2_SIGNATURE.to_vec();
        h.push(0x20 | command);
        h.push(family);
        h.extend_from_slice(&(body.len() as u16).to_be_bytes());
        h.extend_from_slice(body);
        h
    }

    /// Every prefix of a valid header is `Ok(None)`; the whole is the header.
    fn whole(bytes: &[u8]) -> (ProxyHeader, usize) {
        for i in 0..bytes.len() {
            assert_eq!(parse(&bytes[..i]), Ok(None), "prefix of {i} bytes");
        }
        parse(bytes).unwrap().expect("complete")
    }

    #[test]
    fn version_1_tcp4_and_tcp6() {
        let line = b"PROXY TCP4 192.0.2.7 198.51.100.1 56324 443\r\nGET /";
        let (h, len) = whole(&line[..45]);
        assert_eq!(len, 45);
        assert_eq!(h.version, 1);
        assert_eq!(h.source(), Some("192.0.2.7:56324".parse().unwrap()));
        assert_eq!(h.addresses.unwrap().1, "198.51.100.1:443".parse().unwrap());
        assert_eq!(
            parse(line).unwrap().unwrap().1,
            45,
            "data after the header is not its"
        );
        let line = b"PROXY TCP6 2001:db8::1 ::1 65535 9001\r\n";
        let (h, _) = whole(line);
        assert_eq!(h.source(), Some("[2001:db8::1]:65535".parse().unwrap()));
        let (h, len) = whole(b"PROXY UNKNOWN whatever follows\r\n");
        assert_eq!((h.addresses, len), (None, 32));
    }

    #[test]
    fn version_1_errors() {
        for bad in [
            &b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n"[..],  // no CR
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",       // a port missing
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n",   // one word too many
            b"PROXY TCP4 ::1 ::1 1 2\r\n",             // family mismatch
            b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", // port range
            b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",    // leading zero
            b"PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n",    // two spaces
            b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n",     // not TCP
            b"PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n",    // sign
            b"PROXY TCP4 1.2.3.4\0",                   // control byte, early
        ] {
            assert_eq!(parse(bad), Err(ProxyError::Malformed), "{bad:?}");
        }
        let long = [b"PROXY UNKNOWN ".as_slice(), &[b'x'; 120]].concat();
        assert_eq!(parse(&long), Err(ProxyError::TooLong));
        assert_eq!(parse(b"GET / HTTP/1.1\r\n"), Err(ProxyError::Missing));
        assert_eq!(parse(b"PRO"), Ok(None));
        assert_eq!(parse(b"PROXI"), Err(ProxyError::Missing));
    }

    #[test]
    fn version_2_ipv4_ipv6_local_and_tlvs() {
        let mut body = vec![10, 0, 0, 1, 127, 0, 0, 1];
        body.extend_from_slice(&4321u16.to_be_bytes());
        body.extend_from_slice(&9001u16.to_be_bytes());
        let (h, len) = whole(&v2(1, 0x11, &body));
        assert_eq!((h.version, len), (2, 28));
        assert_eq!(h.source(), Some("10.0.0.1:4321".parse().unwrap()));
        assert_eq!(h.addresses.unwrap().1, "127.0.0.1:9001".parse().unwrap());

        // TLVs after the addresses are skipped (here an ALPN of "h2").
        let mut with_tlv = body.clone();
        with_tlv.extend_from_slice(&[0x01, 0, 2, b'h', b'2']);
        let (h, len) = whole(&v2(1, 0x11, &with_tlv));
        assert_eq!(
            (h.source(), len),
            (Some("10.0.0.1:4321".parse().unwrap()), 33)
        );

        let mut body6 = Vec::new();
        body6.extend_from_slice(&"2001:db8::5".parse::<Ipv6Addr>().unwrap().octets());
        body6.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
        body6.extend_from_slice(&[0x1f, 0x90, 0x23, 0x29]);
        let (h, _) = whole(&v2(1, 0x21, &body6));
        assert_eq!(h.source(), Some("[2001:db8::5]:8080".parse().unwrap()));

        // LOCAL: the proxy's own check, addresses (if any) ignored.
        let (h, len) = whole(&v2(0, 0x00, &[]));
        assert_eq!((h.addresses, len), (None, 16));
        let (h, _) = whole(&v2(0, 0x11, &body));
        assert_eq!(h.addresses, None);
        // Unix sockets: no IP.
        let (h, _) = whole(&v2(1, 0x31, &[0; 216]));
        assert_eq!(h.addresses, None);
    }

    #[test]
    fn version_2_errors() {
        let body = [0u8; 12];
        let mut bad_version = v2(1, 0x11, &body);
        bad_version[12] = 0x11;
        assert_eq!(parse(&bad_version[..13]), Err(ProxyError::Malformed));
        assert_eq!(
            parse(&v2(2, 0x11, &body)),
            Err(ProxyError::Malformed),
            "command 2"
        );
        assert_eq!(
            parse(&v2(1, 0x41, &body)),
            Err(ProxyError::Malformed),
            "family 4"
        );
        assert_eq!(
            parse(&v2(1, 0x13, &body)),
            Err(ProxyError::Malformed),
            "transport 3"
        );
        assert_eq!(
            parse(&v2(1, 0x11, &body[..8])),
            Err(ProxyError::Malformed),
            "short block"
        );
        assert_eq!(
            parse(&v2(1, 0x21, &body)),
            Err(ProxyError::Malformed),
            "short for IPv6"
        );
        let mut long = v2(1, 0x11, &body);
        long[14..16].copy_from_slice(&2000u16.to_be_bytes());
        assert_eq!(parse(&long[..16]), Err(ProxyError::TooLong));
        let mut sig = V2_SIGNATURE.to_vec();
        sig[11] = b'X';
        assert_eq!(parse(&sig), Err(ProxyError::Missing));
    }
}
