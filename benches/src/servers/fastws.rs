//! fastwebsockets, written the way its `examples/echo_server.rs` does: hyper's HTTP/1
//! server for the upgrade, a spawned `unconstrained` task per WebSocket, and a
//! `FragmentCollector` read/write loop (the 16 MiB limit set on it). Broadcast members
//! use the crate's split halves (`echo_server_split.rs`) with the same registry of
//! unbounded senders as the tokio-tungstenite baseline.

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use fastwebsockets::{
    FragmentCollector, FragmentCollectorRead, Frame, OpCode, Payload, Role as WsRole, WebSocket,
    WebSocketError, upgrade,
};
use futures_channel::mpsc::{UnboundedSender, unbounded};
use futures_util::{StreamExt, future};
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

use super::keepalive::{KeepAliveIo, Liveness, Tick, first_deadline};
use super::{MAX_MESSAGE, Role, ServeOptions, broadcast_size};

/// fastwebsockets refuses a frame whose length is at least its limit, the others one that
/// exceeds it: one more byte makes 16 MiB itself pass everywhere.
const FASTWS_MAX: usize = MAX_MESSAGE + 1;

/// An owned frame for a member's writer.
enum Out {
    Data {
        text: bool,
        payload: Bytes,
    },
    Ping,
    /// A pong or close answer fastwebsockets owes the peer.
    Control {
        opcode: OpCode,
        payload: Bytes,
    },
}

type Tx = UnboundedSender<Out>;

#[derive(Default)]
struct Topic {
    peers: Mutex<HashMap<u64, Tx>>,
}

impl Topic {
    /// A loop over the members, sending each a shared copy.
    fn publish(&self, text: bool, payload: &Bytes) {
        let peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        for tx in peers.values() {
            let _ = tx.unbounded_send(Out::Data {
                text,
                payload: payload.clone(),
            });
        }
    }
}

#[derive(Default)]
struct Registry {
    all: Topic,
    pubsub: Topic,
    next_id: AtomicU64,
}

/// Runs the server until the process is killed.
pub fn run(opts: &ServeOptions) -> io::Result<()> {
    let rt = super::tokio_runtime(opts.threads)?;
    rt.block_on(async move {
        let listener = super::tokio_listener(opts.addr)?;
        super::announce(listener.local_addr()?);
        let registry = Arc::new(Registry::default());
        loop {
            let stream = match listener.accept().await {
                Ok((s, _)) => s,
                Err(_) => {
                    super::accept_backoff().await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let registry = registry.clone();
            tokio::spawn(async move {
                let io = TokioIo::new(stream);
                let service = service_fn(move |req| upgrade_request(req, registry.clone()));
                let _ = http1::Builder::new()
                    .serve_connection(io, service)
                    .with_upgrades()
                    .await;
            });
        }
    })
}

async fn upgrade_request(
    mut req: Request<Incoming>,
    registry: Arc<Registry>,
) -> Result<Response<Empty<Bytes>>, WebSocketError> {
    let role = Role::from_path(req.uri().path());
    let (response, fut) = upgrade::upgrade(&mut req)?;
    tokio::spawn(tokio::task::unconstrained(async move {
        let Ok(ws) = fut.await else { return };
        match role {
            Role::Echo | Role::Control | Role::Publisher => {
                // Nothing is read before the upgrade completes, so re-wrapping loses nothing.
                let ws =
                    WebSocket::after_handshake(KeepAliveIo::new(ws.into_inner()), WsRole::Server);
                let _ = direct(ws, role, &registry).await;
            }
            Role::Member => member(ws, &registry.all, &registry).await,
            Role::Subscriber => member(ws, &registry.pubsub, &registry).await,
        }
    }));
    Ok(response)
}

/// Connections nobody sends to: the example's read/write loop.
async fn direct<S>(
    mut ws: WebSocket<S>,
    role: Role,
    registry: &Registry,
) -> Result<(), WebSocketError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    ws.set_max_message_size(FASTWS_MAX);
    let mut ws = FragmentCollector::new(ws);
    loop {
        let frame = ws.read_frame().await?;
        match frame.opcode {
            // auto_close has already answered it.
            OpCode::Close => break,
            OpCode::Text | OpCode::Binary => {
                let text = frame.opcode == OpCode::Text;
                match role {
                    Role::Control if text => {
                        if let Some(n) = broadcast_size(&frame.payload) {
                            registry.all.publish(false, &Bytes::from(vec![b'x'; n]));
                            continue;
                        }
                    }
                    Role::Publisher => registry
                        .pubsub
                        .publish(text, &Bytes::copy_from_slice(&frame.payload)),
                    _ => {}
                }
                ws.write_frame(frame).await?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// A topic member: split halves, the reader echoing through the member's own channel, a
/// writer draining it.
async fn member<S>(ws: WebSocket<S>, topic: &Topic, registry: &Registry)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let id = registry.next_id.fetch_add(1, Ordering::Relaxed);
    let (tx, mut rx) = unbounded::<Out>();
    topic
        .peers
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(id, tx.clone());
    let mut ws = ws;
    ws.set_max_message_size(FASTWS_MAX);
    let (read, mut write) = ws.split(tokio::io::split);
    let mut read = FragmentCollectorRead::new(read);
    // Shared by the reader and the keep-alive of the same task; atomic only because the
    // task future must be Send.
    let heard = AtomicBool::new(false);
    let reader = async {
        // Pongs and close answers go through the writer, so frames never interleave.
        let mut obligated = |frame: Frame<'_>| {
            let out = Out::Control {
                opcode: frame.opcode,
                payload: Bytes::copy_from_slice(&frame.payload),
            };
            let sent = tx.unbounded_send(out);
            async move { sent.map_err(|_| WebSocketError::ConnectionClosed) }
        };
        while let Ok(frame) = read.read_frame(&mut obligated).await {
            heard.store(true, Ordering::Relaxed);
            match frame.opcode {
                // The answer is queued for the writer, which ends the connection after it.
                OpCode::Close => future::pending::<()>().await,
                OpCode::Text | OpCode::Binary => {
                    let out = Out::Data {
                        text: frame.opcode == OpCode::Text,
                        payload: Bytes::copy_from_slice(&frame.payload),
                    };
                    if tx.unbounded_send(out).is_err() {
                        break;
                    }
                }
                _ => {}
            }
        }
    };
    let writer = async {
        while let Some(out) = rx.next().await {
            let frame = match &out {
                Out::Data {
                    text: true,
                    payload,
                } => Frame::text(Payload::Borrowed(payload)),
                Out::Data {
                    text: false,
                    payload,
                } => Frame::binary(Payload::Borrowed(payload)),
                Out::Ping => Frame::new(true, OpCode::Ping, None, Payload::Borrowed(&[])),
                Out::Control { opcode, payload } => {
                    Frame::new(true, *opcode, None, Payload::Borrowed(payload))
                }
            };
            let closing = matches!(
                out,
                Out::Control {
                    opcode: OpCode::Close,
                    ..
                }
            );
            if write.write_frame(frame).await.is_err() || closing {
                break;
            }
        }
    };
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
                    let _ = tx.unbounded_send(Out::Ping);
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
