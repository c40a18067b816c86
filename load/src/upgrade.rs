//! The client's half of the opening handshake: a fresh `Sec-WebSocket-Key` for every
//! connection and a strict check of the server's 101 against it. Shared by every client
//! in the crate, so all of them hold servers to the same rules.

use base64::Engine;
use throng_protocol::handshake::accept_key;

/// Largest response head accepted.
pub const MAX_HEAD: usize = 4096;

/// A connection's key and the accept value the server must answer with.
#[derive(Debug, Clone, Copy)]
pub struct Key {
    /// `Sec-WebSocket-Key`: 16 bytes of nonce, base64 (24 characters).
    pub key: [u8; 24],
    /// The `Sec-WebSocket-Accept` that proves the server read this key.
    pub accept: [u8; 28],
}

impl Key {
    /// The key made from `seed` (give every connection its own: a counter mixed with
    /// something per process). RFC 6455 asks for a random nonce; SplitMix64 output is
    /// unpredictable enough for a load generator, which only needs no two alike.
    pub fn new(seed: u64) -> Key {
        let (a, b) = (splitmix(seed), splitmix(seed ^ 0x5851_f42d_4c95_7f2d));
        let mut raw = [0u8; 16];
        raw[..8].copy_from_slice(&a.to_le_bytes());
        raw[8..].copy_from_slice(&b.to_le_bytes());
        let mut key = [0u8; 24];
        base64::engine::general_purpose::STANDARD
            .encode_slice(raw, &mut key)
            .expect("16 bytes encode to 24");
        Key {
            key,
            accept: accept_key(&key),
        }
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.key).expect("base64 is ASCII")
    }
}

/// The upgrade request for `path` on `host`, with `key`.
pub fn request(host: &str, path: &str, key: &Key) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {}\r\nSec-WebSocket-Version: 13\r\n\r\n",
        key.as_str()
    )
}

/// A request built once per target with room for the key, which each connection writes
/// in: no formatting per connection.
#[derive(Debug, Clone)]
pub struct Template {
    bytes: Vec<u8>,
    at: usize,
}

impl Template {
    /// The request for `path` on `host`.
    pub fn new(host: &str, path: &str) -> Template {
        let blank = Key {
            key: [b'A'; 24],
            accept: [0; 28],
        };
        let bytes = request(host, path, &blank).into_bytes();
        const NAME: &[u8] = b"Sec-WebSocket-Key: ";
        let at = bytes
            .windows(NAME.len())
            .position(|w| w == NAME)
            .expect("the request has a key header")
            + NAME.len();
        Template { bytes, at }
    }

    /// Length of every request made from this template.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Never empty; here for clippy's `len_without_is_empty`.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The request with `key` in it, written into `out` (which it replaces).
    pub fn fill<'o>(&self, key: &Key, out: &'o mut Vec<u8>) -> &'o [u8] {
        out.clear();
        out.extend_from_slice(&self.bytes);
        out[self.at..self.at + 24].copy_from_slice(&key.key);
        out
    }
}

/// Checks the response head at the start of `data` against `key`. `Ok(None)`: incomplete
/// (read more); `Ok(Some(n))`: a valid 101 of `n` bytes; `Err`: the server refused or
/// answered wrongly (status other than 101, `Upgrade` not `websocket`, `Connection`
/// without `upgrade`, missing or wrong `Sec-WebSocket-Accept`, malformed or oversized
/// head).
pub fn check_response(data: &[u8], key: &Key) -> Result<Option<usize>, String> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut res = httparse::Response::new(&mut headers);
    let n = match res.parse(data) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if data.len() > MAX_HEAD => {
            return Err("response head too large".into());
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(format!("bad response head: {e}")),
    };
    if res.code != Some(101) {
        return Err(format!(
            "upgrade refused: {} {}",
            res.code.unwrap_or(0),
            res.reason.unwrap_or("")
        ));
    }
    let has = |name: &str, token: &str| {
        res.headers.iter().any(|h| {
            h.name.eq_ignore_ascii_case(name)
                && h.value
                    .split(|&b| b == b',')
                    .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
        })
    };
    if !has("upgrade", "websocket") {
        return Err("101 without Upgrade: websocket".into());
    }
    if !has("connection", "upgrade") {
        return Err("101 without Connection: upgrade".into());
    }
    let mut accepts = res
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("sec-websocket-accept"));
    match (accepts.next(), accepts.next()) {
        (Some(h), None) if h.value.trim_ascii() == key.accept => Ok(Some(n)),
        (None, _) => Err("101 without Sec-WebSocket-Accept".into()),
        _ => Err("wrong Sec-WebSocket-Accept".into()),
    }
}

/// SplitMix64: spreads a counter into well-mixed bits (keys and masks need not be secret
/// here, only different per connection and per frame).
pub fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(key: &Key) -> String {
        format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {}\r\n\r\n",
            std::str::from_utf8(&key.accept).unwrap()
        )
    }

    #[test]
    fn keys_differ_and_match_rfc_accepts() {
        let (a, b) = (Key::new(1), Key::new(2));
        assert_ne!(a.key, b.key);
        let rfc = Key {
            key: *b"dGhlIHNhbXBsZSBub25jZQ==",
            accept: accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
        };
        assert_eq!(&rfc.accept, b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn template_writes_the_key() {
        let t = Template::new("127.0.0.1:9", "/x");
        let k = Key::new(7);
        let mut out = Vec::new();
        let req = t.fill(&k, &mut out).to_vec();
        assert_eq!(req, request("127.0.0.1:9", "/x", &k).into_bytes());
        assert_eq!(t.len(), req.len());
    }

    #[test]
    fn accepts_only_a_correct_101() {
        let k = Key::new(3);
        let ok = answer(&k);
        assert_eq!(check_response(ok.as_bytes(), &k), Ok(Some(ok.len())));
        let mut more = ok.clone().into_bytes();
        more.extend_from_slice(b"\x81\x00");
        assert_eq!(check_response(&more, &k), Ok(Some(ok.len())));
        assert_eq!(check_response(&ok.as_bytes()[..ok.len() - 2], &k), Ok(None));
        let other = Key::new(4);
        assert!(check_response(ok.as_bytes(), &other).is_err());
        let refused = "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n";
        assert!(check_response(refused.as_bytes(), &k).is_err());
        let no_upgrade = ok.replace("Upgrade: websocket\r\n", "");
        assert!(check_response(no_upgrade.as_bytes(), &k).is_err());
        let no_conn = ok.replace("Connection: Upgrade\r\n", "");
        assert!(check_response(no_conn.as_bytes(), &k).is_err());
        assert!(check_response(b"SSH-2.0-x\r\n\r\n", &k).is_err());
        assert!(check_response(&[b'x'; MAX_HEAD + 1], &k).is_err());
    }
}
