//! A whole received message, borrowed: text only as validated UTF-8.

/// A whole data message. Text is always valid UTF-8: the only ways to get one are the
/// decoder's whole-message piece, an [`Assembly`](crate::Assembly) that checked the
/// pieces' UTF-8 stream, or validation of inflated bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message<'a> {
    /// A text message (validated UTF-8).
    Text(&'a str),
    /// A binary message.
    Binary(&'a [u8]),
}

impl<'a> Message<'a> {
    /// The payload bytes.
    pub fn as_bytes(&self) -> &'a [u8] {
        match *self {
            Message::Text(t) => t.as_bytes(),
            Message::Binary(b) => b,
        }
    }

    /// Whether this is a text message.
    pub fn is_text(&self) -> bool {
        matches!(self, Message::Text(_))
    }

    /// Text or binary.
    pub fn kind(&self) -> crate::DataKind {
        match self {
            Message::Text(_) => crate::DataKind::Text,
            Message::Binary(_) => crate::DataKind::Binary,
        }
    }
}
