//! tokio-tungstenite, written the way its examples do: one task per connection,
//! `accept_hdr_async_with_config` with default buffers and the 16 MiB limits, a
//! `next()`/`send()` loop for echo, and for broadcast the repository's `server.rs` idiom:
//! a `Mutex<HashMap<id, UnboundedSender<Message>>>` per topic, each member split into a
//! reader and `rx.forward(sink)`, and a publish that loops over the map sending a clone
//! to every member.

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_channel::mpsc::{UnboundedSender, unbounded};
use futures_util::{SinkExt, StreamExt, future};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use super::keepalive::{Liveness, Tick, first_deadline};
use super::{MAX_MESSAGE, Role, ServeOptions, broadcast_size};

type Tx = UnboundedSender<Message>;

/// The members of one topic.
#[derive(Default)]
struct Topic {
    peers: Mutex<HashMap<u64, Tx>>,
}

impl Topic {
    /// The usual broadcast: a clone of the message (a shared `Bytes`) to every member.
    fn publish(&self, msg: &Message) {
        let peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        for tx in peers.values() {
            let _ = tx.unbounded_send(msg.clone());
        }
    }
}

#[derive(Default)]
struct Registry {
    all: Topic,
    pubsub: Topic,
    next_id: AtomicU64,
}

fn config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE))
}

/// Runs the server until the process is killed.
pub fn run(opts: &ServeOptions) -> io::Result<()> {
    let rt = super::tokio_runtime(opts.threads)?;
    rt.block_on(async move {
        let listener = super::tokio_listener(opts.addr)?;
        super::announce(listener.local_addr()?);
        let registry = Arc::new(Registry::default());
        // wss://: tokio-rustls over the same rustls config as throng's.
        let tls = opts
            .tls_config()?
            .map(|t| tokio_rustls::TlsAcceptor::from(t.rustls().clone()));
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    let registry = registry.clone();
                    match &tls {
                        None => {
                            tokio::spawn(connection(stream, registry));
                        }
                        Some(acceptor) => {
                            let accept = acceptor.accept(stream);
                            tokio::spawn(async move {
                                if let Ok(stream) = accept.await {
                                    connection(stream, registry).await;
                                }
                            });
                        }
                    }
                }
                Err(_) => super::accept_backoff().await,
            }
        }
    })
}

// The callback's error type (an HTTP response) is tungstenite's, large or not.
#[allow(clippy::result_large_err)]
async fn connection<S>(stream: S, registry: Arc<Registry>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let mut role = Role::Echo;
    let callback = |req: &Request, resp: Response| {
        role = Role::from_path(req.uri().path());
        Ok(resp)
    };
    let Ok(ws) =
        tokio_tungstenite::accept_hdr_async_with_config(stream, callback, Some(config())).await
    else {
        return;
    };
    match role {
        Role::Echo | Role::Control | Role::Publisher => direct(ws, role, &registry).await,
        Role::Member => member(ws, &registry.all, &registry).await,
        Role::Subscriber => member(ws, &registry.pubsub, &registry).await,
    }
}

/// Connections nobody sends to: one loop reads, answers and keeps alive.
async fn direct<S>(mut ws: WebSocketStream<S>, role: Role, registry: &Registry)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut live = Liveness::default();
    let sleep = tokio::time::sleep_until(first_deadline());
    tokio::pin!(sleep);
    loop {
        tokio::select! {
            msg = ws.next() => {
                // Errors and the end of the stream (after tungstenite has answered a close) end it.
                let Some(Ok(msg)) = msg else { break };
                live.heard = true;
                if !(msg.is_text() || msg.is_binary()) {
                    continue;
                }
                match role {
                    Role::Control => {
                        if let Some(n) = msg.to_text().ok().and_then(|t| broadcast_size(t.as_bytes())) {
                            registry.all.publish(&Message::Binary(Bytes::from(vec![b'x'; n])));
                            continue;
                        }
                    }
                    Role::Publisher => registry.pubsub.publish(&msg),
                    _ => {}
                }
                if ws.send(msg).await.is_err() {
                    break;
                }
            }
            () = &mut sleep => {
                let (verdict, next) = live.tick();
                sleep.as_mut().reset(next);
                match verdict {
                    Tick::Alive => {}
                    Tick::Ping => if ws.send(Message::Ping(Bytes::new())).await.is_err() { break },
                    Tick::Dead => break,
                }
            }
        }
    }
}

/// A topic member, as in tokio-tungstenite's `examples/server.rs`: registered with its
/// sender, split, its reader echoing through its own channel, `rx.forward(outgoing)`
/// writing whatever anyone sends it.
async fn member<S>(ws: WebSocketStream<S>, topic: &Topic, registry: &Registry)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let id = registry.next_id.fetch_add(1, Ordering::Relaxed);
    let (tx, rx) = unbounded();
    topic
        .peers
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(id, tx.clone());
    let (outgoing, mut incoming) = ws.split();
    // Shared by the reader and the keep-alive of the same task; atomic only because the
    // task future must be Send.
    let heard = AtomicBool::new(false);
    let reader = async {
        while let Some(Ok(msg)) = incoming.next().await {
            heard.store(true, Ordering::Relaxed);
            if (msg.is_text() || msg.is_binary()) && tx.unbounded_send(msg).is_err() {
                break;
            }
        }
    };
    let writer = rx.map(Ok).forward(outgoing);
    let keepalive = async {
        let mut live = Liveness::default();
        let sleep = tokio::time::sleep_until(first_deadline());
        tokio::pin!(sleep);
        loop {
            (&mut sleep).await;
            live.heard |= heard.swap(false, Ordering::Relaxed);
            let (verdict, next) = live.tick();
            sleep.as_mut().reset(next);
            match verdict {
                Tick::Alive => {}
                Tick::Ping => {
                    let _ = tx.unbounded_send(Message::Ping(Bytes::new()));
                }
                Tick::Dead => break,
            }
        }
    };
    tokio::pin!(reader, writer, keepalive);
    future::select(reader, future::select(writer, keepalive)).await;
    topic
        .peers
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&id);
}
