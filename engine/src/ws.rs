//! The connection handle given to callbacks, and the names that cross threads.

use std::marker::PhantomData;

use bytes::Bytes;
use throng_protocol::{CloseCode, DataKind, Message};

use crate::core::Core;

/// Names a connection anywhere in the server: its worker, slab slot and generation. It is
/// `Send`, unlike [`WebSocket`]: another thread reaches the connection by posting to the
/// worker's mailbox through [`crate::ServerHandle`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnId {
    /// The worker that owns the connection.
    pub worker: u16,
    pub(crate) key: u32,
    pub(crate) generation: u32,
}

impl std::fmt::Display for ConnId {
    /// `worker/key.generation`, as in the engine's tracing events.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}.{}", self.worker, self.key, self.generation)
    }
}

/// How a send went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// Accepted with no backlog: the frame leaves at the end of this turn of the run loop,
    /// in the same write as everything else this turn sent to the connection.
    Written,
    /// Accepted behind a backlog: output waits on a slow socket or exceeds the low-water
    /// mark. It goes out in order; `on_drain` fires when the backlog is gone.
    Queued,
}

/// Why a message was not accepted for sending. Nothing is lost silently: a message is
/// either sent (or queued) or reported here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendError {
    /// The connection's buffer is over `max_buffered`; the message was dropped (and, with
    /// [`crate::Backpressure::Close`], the connection is closing).
    Backpressure,
    /// The connection is closing or closed.
    Closed,
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SendError::Backpressure => "send buffer full",
            SendError::Closed => "connection closed",
        })
    }
}

impl std::error::Error for SendError {}

/// A WebSocket connection, inside a callback on its worker's thread.
///
/// Not `Send` and not `Sync`: the compiler stops a handle from leaving its worker. Use
/// [`WebSocket::id`] and the server handle to reach a connection from elsewhere.
pub struct WebSocket<'w, S> {
    core: &'w mut Core<S>,
    key: usize,
    _not_send: PhantomData<*const ()>,
}

impl<'w, S> WebSocket<'w, S> {
    pub(crate) fn new(core: &'w mut Core<S>, key: usize) -> Self {
        WebSocket {
            core,
            key,
            _not_send: PhantomData,
        }
    }

    /// The per-connection state returned by `on_upgrade`.
    pub fn state(&mut self) -> &mut S {
        self.core.conns[self.key]
            .state
            .as_mut()
            .expect("state is set before callbacks run")
    }

    /// This connection's name, usable from other threads.
    pub fn id(&self) -> ConnId {
        self.core.conn_id(self.key)
    }

    /// The connection's socket, for socket options and measurement (uWebSockets'
    /// `getNativeHandle`). The engine owns it: never close it, and know that bytes
    /// written to it bypass the engine's framing, ordering, TLS and accounting.
    pub fn raw_fd(&self) -> std::os::fd::RawFd {
        self.core.conns[self.key].fd
    }

    /// Sends a message (text or binary), copying the payload only if the kernel does not
    /// take it at once.
    pub fn send(&mut self, message: Message<'_>) -> Result<Sent, SendError> {
        self.core.send_message(
            self.key,
            message.kind(),
            crate::core::Payload::Borrowed(message.as_bytes()),
        )
    }

    /// Sends a text message.
    pub fn send_text(&mut self, text: &str) -> Result<Sent, SendError> {
        self.send(Message::Text(text))
    }

    /// Sends a binary message.
    pub fn send_binary(&mut self, data: &[u8]) -> Result<Sent, SendError> {
        self.send(Message::Binary(data))
    }

    /// Sends a payload that is already shared (e.g. one message to many connections): it
    /// is queued by reference, never copied.
    pub fn send_shared(&mut self, kind: DataKind, payload: Bytes) -> Result<Sent, SendError> {
        self.core
            .send_message(self.key, kind, crate::core::Payload::Shared(payload))
    }

    /// Sends a ping (payload cut to 125 bytes).
    pub fn ping(&mut self, payload: &[u8]) -> Result<Sent, SendError> {
        self.core.send_ping(self.key, payload)
    }

    /// Starts the close handshake with `code` and `reason` (cut to 123 bytes). The
    /// connection ends when the peer answers, or after the close timeout.
    pub fn close(&mut self, code: CloseCode, reason: &str) {
        self.core.close(self.key, code, reason)
    }

    /// Subscribes this connection to `topic`; false if it already was. Subscriptions end
    /// with the connection.
    pub fn subscribe(&mut self, topic: &str) -> bool {
        self.core.subscribe(self.key, topic)
    }

    /// Ends a subscription; false if there was none.
    pub fn unsubscribe(&mut self, topic: &str) -> bool {
        self.core.unsubscribe(self.key, topic)
    }

    /// Whether this connection subscribes to `topic`.
    pub fn is_subscribed(&self, topic: &str) -> bool {
        self.core.is_subscribed(self.key, topic)
    }

    /// Publishes a message to every subscriber of `topic` on every worker except this
    /// connection (uWebSockets' semantics). The frame is encoded once and shared; other
    /// workers get it once each through their mailboxes. Returns this worker's counts;
    /// the other workers deliver asynchronously.
    pub fn publish(&mut self, topic: &str, message: Message<'_>) -> crate::Published {
        self.core
            .publish(topic, message.kind(), message.as_bytes(), Some(self.key))
    }

    /// Bytes of output waiting for the kernel.
    pub fn buffered_amount(&self) -> usize {
        self.core.conns[self.key].buffered()
    }

    /// Whether messages can still be sent (no close frame sent yet).
    pub fn is_open(&self) -> bool {
        self.core.is_open(self.key)
    }

    /// The peer's address: the client's from its PROXY protocol header on a listener
    /// with [`crate::Config::proxy_protocol`], else one `getpeername` call.
    pub fn peer_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.core.peer_addr(self.key)
    }

    /// The index of the worker this connection lives on.
    pub fn worker(&self) -> usize {
        self.core.worker as usize
    }
}

impl<S> std::fmt::Debug for WebSocket<'_, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSocket")
            .field("id", &self.id())
            .field("open", &self.is_open())
            .finish()
    }
}
