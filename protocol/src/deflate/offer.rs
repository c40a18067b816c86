//! Negotiation (RFC 7692 5 and 7.1): parse each `permessage-deflate` offer, accept the
//! first acceptable one, answer only what the RFC allows.
//!
//! In shared mode the server keeps no compression context between messages, so it always
//! answers `server_no_context_takeover` and `client_no_context_takeover` (7.1.1.1 and
//! 7.1.1.2 let a server add both unasked), and no connection holds a window. In
//! dedicated mode ([`Mode::Dedicated`]) it keeps context each way the client allows.

/// One `permessage-deflate` offer, its parameters checked (RFC 7692 7.1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Offer {
    /// The client asks the server not to keep context between messages.
    pub server_no_context_takeover: bool,
    /// The client tells it can do without context between its messages.
    pub client_no_context_takeover: bool,
    /// The largest window (bits) the client lets the server compress with.
    pub server_max_window_bits: Option<u8>,
    /// The client accepts a limit on its own window: `Some(None)` offered bare,
    /// `Some(Some(n))` with the window it will use at most.
    pub client_max_window_bits: Option<Option<u8>>,
}

/// Why an offer was declined. A declined offer never fails the handshake: the next offer
/// is tried, and with none left the connection opens without compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum OfferError {
    /// Another extension than `permessage-deflate`.
    NotDeflate,
    /// A parameter RFC 7692 does not define.
    UnknownParameter,
    /// A parameter given twice (7.1: the offer MUST then be declined).
    RepeatedParameter,
    /// A value where none is allowed, none where one is required, or window bits
    /// outside 8..=15.
    BadValue,
}

/// What the server agreed to for a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Agreement {
    /// The window the client limited the server's compressor to, when it did (answered
    /// back, as 7.1.2.1 requires).
    pub server_max_window_bits: Option<u8>,
    /// The server keeps its compressor's context between messages, with a window of
    /// this many bits (dedicated mode); `None`: every message is compressed on its own.
    pub server_context: Option<u8>,
    /// The client keeps its compressor's context, with at most this many window bits,
    /// so the server keeps an inflater of that window for the connection (dedicated
    /// mode); `None`: the client resets after every message.
    pub client_context: Option<u8>,
    /// The limit answered on the client's window (only when it offered the parameter,
    /// 7.1.2.2).
    pub client_max_window_bits: Option<u8>,
}

/// How the server compresses, which decides what it answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// No context either way: one pair of streams serves every connection.
    Shared,
    /// Context takeover where the client allows it, with windows of at most this many
    /// bits (9..=15) each way.
    Dedicated {
        /// The largest window the server keeps for a connection, each way.
        window_bits: u8,
    },
}

/// The window bits of the server's shared compressor.
pub const SERVER_WINDOW_BITS: u8 = 15;

/// The smallest window C zlib compresses raw deflate with (8 is refused).
const MIN_COMPRESS_BITS: u8 = 9;

/// A `Sec-WebSocket-Extensions` answer, built in place (answering allocates nothing).
#[derive(Clone, Copy)]
pub struct Response {
    buf: [u8; 160],
    len: u8,
}

impl Response {
    fn new() -> Response {
        let mut r = Response {
            buf: [0; 160],
            len: 0,
        };
        r.push("permessage-deflate");
        r
    }

    fn push(&mut self, s: &str) {
        let start = usize::from(self.len);
        // At most five parts of at most 26 bytes each fit: nothing is ever cut.
        let end = (start + s.len()).min(self.buf.len());
        self.buf[start..end].copy_from_slice(&s.as_bytes()[..end - start]);
        self.len = end as u8;
    }

    fn param(&mut self, name: &str, bits: Option<u8>) {
        self.push("; ");
        self.push(name);
        if let Some(bits) = bits {
            self.push("=");
            let digits = [b'0' + bits / 10, b'0' + bits % 10];
            let digits = if bits >= 10 {
                &digits[..]
            } else {
                &digits[1..]
            };
            self.push(std::str::from_utf8(digits).unwrap_or_default());
        }
    }

    /// The answer's text.
    pub fn as_str(&self) -> &str {
        // Built only from ASCII pieces.
        std::str::from_utf8(&self.buf[..usize::from(self.len)]).unwrap_or_default()
    }
}

impl std::ops::Deref for Response {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl std::fmt::Debug for Response {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.as_str().fmt(f)
    }
}

impl PartialEq<String> for Response {
    fn eq(&self, other: &String) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Response {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl Agreement {
    /// The `Sec-WebSocket-Extensions` value to answer with. `client_max_window_bits`
    /// only when the client offered it (7.1.2.2); `server_max_window_bits` only when it
    /// did (the server may use a smaller window than the client allows without saying).
    pub fn response(&self) -> Response {
        let mut r = Response::new();
        if self.server_context.is_none() {
            r.param("server_no_context_takeover", None);
        }
        if self.client_context.is_none() {
            r.param("client_no_context_takeover", None);
        }
        if let Some(bits) = self.server_max_window_bits {
            r.param("server_max_window_bits", Some(bits));
        }
        if let Some(bits) = self.client_max_window_bits {
            r.param("client_max_window_bits", Some(bits));
        }
        r
    }

    /// Whether the server compresses its messages to this connection: with its own
    /// context, or with the shared compressor (a 15-bit window) when the client allowed
    /// that window. Otherwise the server sends its messages uncompressed, which RFC 7692
    /// always allows, rather than keep a compressor per window size.
    pub fn server_compresses(&self) -> bool {
        self.server_context.is_some() || self.shared_frames_fit()
    }

    /// Whether a message compressed by the shared compressor (15-bit window, no context)
    /// is valid for this connection: a publish's one compressed frame can go to it.
    pub fn shared_frames_fit(&self) -> bool {
        self.server_max_window_bits
            .is_none_or(|bits| bits >= SERVER_WINDOW_BITS)
    }

    fn from_offer(o: Offer, mode: Mode) -> Agreement {
        let mut a = Agreement {
            server_max_window_bits: o.server_max_window_bits,
            server_context: None,
            client_context: None,
            client_max_window_bits: None,
        };
        let Mode::Dedicated { window_bits } = mode else {
            return a;
        };
        let window = window_bits.clamp(MIN_COMPRESS_BITS, 15);
        if !o.server_no_context_takeover {
            let bits = window.min(o.server_max_window_bits.unwrap_or(15));
            if bits >= MIN_COMPRESS_BITS {
                a.server_context = Some(bits);
                // 7.1.2.1: the same or a smaller value than offered.
                a.server_max_window_bits = o.server_max_window_bits.map(|_| bits);
            }
        }
        if !o.client_no_context_takeover {
            match o.client_max_window_bits {
                // The client accepts a limit: the preset's window, or its own if smaller.
                Some(offered) => {
                    let bits = window.min(offered.unwrap_or(15));
                    a.client_context = Some(bits);
                    if bits < 15 || offered.is_some() {
                        a.client_max_window_bits = Some(bits);
                    }
                }
                // It will use up to 15 bits: kept only when the preset has that window;
                // else the answer asks it to reset (7.1.1.2 lets a server add that).
                None if window == 15 => a.client_context = Some(15),
                None => {}
            }
        }
        a
    }
}

/// Parses one offer (an element of [`crate::handshake::Upgrade::extensions`]).
pub fn parse_offer(offer: &str) -> Result<Offer, OfferError> {
    let mut parts = offer.split(';').map(|p| p.trim_matches([' ', '\t']));
    let name = parts.next().unwrap_or_default();
    if !name.eq_ignore_ascii_case("permessage-deflate") {
        return Err(OfferError::NotDeflate);
    }
    let mut o = Offer::default();
    for part in parts {
        let (key, value) = match part.split_once('=') {
            Some((k, v)) => (k.trim_matches([' ', '\t']), Some(unquote(v)?)),
            None => (part, None),
        };
        if key.eq_ignore_ascii_case("server_no_context_takeover") {
            flag(&mut o.server_no_context_takeover, value)?;
        } else if key.eq_ignore_ascii_case("client_no_context_takeover") {
            flag(&mut o.client_no_context_takeover, value)?;
        } else if key.eq_ignore_ascii_case("server_max_window_bits") {
            if o.server_max_window_bits.is_some() {
                return Err(OfferError::RepeatedParameter);
            }
            o.server_max_window_bits = Some(window_bits(value.ok_or(OfferError::BadValue)?)?);
        } else if key.eq_ignore_ascii_case("client_max_window_bits") {
            if o.client_max_window_bits.is_some() {
                return Err(OfferError::RepeatedParameter);
            }
            o.client_max_window_bits = Some(value.map(window_bits).transpose()?);
        } else {
            return Err(OfferError::UnknownParameter);
        }
    }
    Ok(o)
}

/// The first acceptable `permessage-deflate` offer among `offers` (the client's order is
/// its preference), or `None`: then the connection opens without the extension. Every
/// valid offer is acceptable; invalid ones and other extensions are skipped. Shared
/// mode: [`negotiate_mode`] with [`Mode::Shared`].
pub fn negotiate<'a>(offers: impl IntoIterator<Item = &'a str>) -> Option<Agreement> {
    negotiate_mode(offers, Mode::Shared)
}

/// [`negotiate`] for `mode`. In dedicated mode the server keeps context each way the
/// client lets it: its own compressor's unless the client asked
/// `server_no_context_takeover` (or limited the window to 8 bits, which zlib cannot
/// compress with), and an inflater for the client's unless the client promised
/// `client_no_context_takeover`. The client's window is limited to the preset's with
/// `client_max_window_bits` when the client offered that parameter; when it did not and
/// the preset's window is below 15 bits, the answer adds `client_no_context_takeover`.
pub fn negotiate_mode<'a>(
    offers: impl IntoIterator<Item = &'a str>,
    mode: Mode,
) -> Option<Agreement> {
    offers
        .into_iter()
        .find_map(|o| parse_offer(o).ok())
        .map(|o| Agreement::from_offer(o, mode))
}

/// A parameter without a value, given once.
fn flag(seen: &mut bool, value: Option<&str>) -> Result<(), OfferError> {
    if *seen {
        return Err(OfferError::RepeatedParameter);
    }
    if value.is_some() {
        return Err(OfferError::BadValue);
    }
    *seen = true;
    Ok(())
}

/// A value as a token or a quoted-string (7.1: after unquoting, the same grammar).
fn unquote(v: &str) -> Result<&str, OfferError> {
    let v = v.trim_matches([' ', '\t']);
    match v.strip_prefix('"') {
        Some(rest) => rest.strip_suffix('"').ok_or(OfferError::BadValue),
        None => Ok(v),
    }
}

/// 7.1.2.1: `1*DIGIT` in 8..=15, written without leading zeros (the ABNF is
/// `%x38-39 / "1" %x30-35`).
fn window_bits(v: &str) -> Result<u8, OfferError> {
    match v.as_bytes() {
        [d @ b'8'..=b'9'] => Ok(d - b'0'),
        [b'1', d @ b'0'..=b'5'] => Ok(10 + d - b'0'),
        _ => Err(OfferError::BadValue),
    }
}
