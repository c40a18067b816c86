//! Negotiation (RFC 7692 5 and 7.1): parse each `permessage-deflate` offer, accept the
//! first acceptable one, answer only what the RFC allows.
//!
//! Shared mode is the only mode here: the server keeps no compression context between
//! messages, so it always answers `server_no_context_takeover` and
//! `client_no_context_takeover` (7.1.1.1 and 7.1.1.2 let a server add both unasked), and
//! no connection holds a window.

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
    /// The window the client limited the server's compressor to, when it did.
    pub server_max_window_bits: Option<u8>,
}

/// The window bits of the server's shared compressor.
pub const SERVER_WINDOW_BITS: u8 = 15;

/// The responses, by the `server_max_window_bits` they must repeat (7.1.2.1: a server
/// accepting that parameter MUST answer it), so answering allocates nothing.
const RESPONSES: [&str; 8] = [
    "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=8",
    "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=9",
    "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10",
    "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=11",
    "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=12",
    "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=13",
    "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=14",
    "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=15",
];
const RESPONSE: &str = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

impl Agreement {
    /// The `Sec-WebSocket-Extensions` value to answer with. It never carries
    /// `client_max_window_bits`: the server inflates with a full window, so it needs no
    /// limit, and 7.1.2.2 forbids the parameter when the client did not offer it.
    pub fn response(&self) -> &'static str {
        match self.server_max_window_bits {
            Some(bits @ 8..=15) => RESPONSES[usize::from(bits - 8)],
            _ => RESPONSE,
        }
    }

    /// Whether the server's shared compressor (a 15-bit window) may compress for this
    /// connection. When the client limited the window below that, the server sends its
    /// messages uncompressed, which RFC 7692 always allows, rather than keep a compressor
    /// per window size.
    pub fn server_compresses(&self) -> bool {
        self.server_max_window_bits
            .is_none_or(|bits| bits >= SERVER_WINDOW_BITS)
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
/// valid offer is acceptable in shared mode; invalid ones and other extensions are
/// skipped.
pub fn negotiate<'a>(offers: impl IntoIterator<Item = &'a str>) -> Option<Agreement> {
    offers
        .into_iter()
        .find_map(|o| parse_offer(o).ok())
        .map(|o| Agreement {
            server_max_window_bits: o.server_max_window_bits,
        })
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
