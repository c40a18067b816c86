//! The output path keeps each connection's bytes in the order they were sent, whichever
//! way a send takes (a direct piece for a connection with nothing pending, an extension of
//! it, the outbox, a shared frame queued by reference), when replies and publishes to the
//! same connection interleave within one turn; replies written at once past the turn's
//! mark (`Config::eager_replies_after`) arrive whole and in order, also when the socket is full;
//! and a broadcast to many connections leaves no spill record behind. On each backend,
//! against real tungstenite clients.

mod common;

use std::sync::mpsc;
use std::time::Duration;

use common::*;
use throng_engine::DataKind;
use throng_engine::{
    Config, ConnId, Decision, Handler, Message, Server, UpgradeRequest, WebSocket,
};
use tungstenite::Message as TMessage;

const TOPIC: &str = "t";
/// Larger than a direct piece (the low-water mark): queued by reference.
const BIG: usize = 100_000;

/// Subscribes every connection to [`TOPIC`] and reports its id.
struct Sub {
    opened: mpsc::Sender<ConnId>,
}

impl Handler for Sub {
    type State = ();
    fn on_upgrade<'r>(&mut self, _req: &UpgradeRequest<'r>) -> Decision<'r, ()> {
        Decision::accept(())
    }
    fn on_open(&mut self, ws: &mut WebSocket<'_, ()>) {
        ws.subscribe(TOPIC);
        let _ = self.opened.send(ws.id());
    }
    fn on_message(&mut self, ws: &mut WebSocket<'_, ()>, message: Message<'_>) {
        let _ = ws.send(message);
    }
}

/// One worker, so that all connections share one run loop and one turn.
fn start(backend: throng_engine::BackendChoice) -> (Server<Sub>, mpsc::Receiver<ConnId>) {
    let (tx, rx) = mpsc::channel();
    let mut config = Config::new("127.0.0.1:0".parse().unwrap())
        .with_workers(1)
        .with_pinning(false)
        .with_backend(backend);
    config.shutdown_timeout = Duration::from_secs(1);
    let server = Server::start(config, move |_| Sub { opened: tx.clone() }).expect("starts");
    assert_eq!(server.backend(), kind_of(backend));
    (server, rx)
}

/// What the job sends in round `i` to connection `c` (a reply) and to everyone (a publish).
fn reply(c: usize, i: usize) -> Vec<u8> {
    match i % 5 {
        // Sizes that take every path: small, medium, larger than a direct piece.
        3 => pattern((c * 1000 + i) as u64, 3000),
        4 if i % 20 == 4 => pattern((c * 1000 + i) as u64, BIG),
        _ => format!("reply {c} {i}").into_bytes(),
    }
}

fn publish(i: usize) -> Vec<u8> {
    match i % 7 {
        6 => pattern(i as u64, BIG),
        2 => pattern(i as u64, 700),
        _ => format!("publish {i}").into_bytes(),
    }
}

#[test]
fn replies_and_publishes_interleaved_in_one_turn_arrive_in_order() {
    const ROUNDS: usize = 60;
    for backend in backends() {
        let (server, opened) = start(backend);
        let addr = server.local_addr();
        let mut clients: Vec<Client> = (0..3).map(|_| connect(addr, "/")).collect();
        let ids: Vec<ConnId> = (0..3)
            .map(|_| opened.recv_timeout(EVENT_TIMEOUT).unwrap())
            .collect();
        // One job, one turn: replies to clients 0 and 1 interleaved with publishes to all.
        let (done_tx, done) = mpsc::channel();
        let job_ids = ids.clone();
        assert!(server.handle().post(0, move |_, conns| {
            for i in 0..ROUNDS {
                for (c, id) in job_ids.iter().enumerate().take(2) {
                    let mut ws = conns.get(*id).expect("open");
                    ws.send_binary(&reply(c, i)).expect("accepted");
                }
                let p = publish(i);
                conns.publish(TOPIC, DataKind::Binary, &p);
            }
            let _ = done_tx.send(());
        }));
        done.recv_timeout(EVENT_TIMEOUT).unwrap();

        // The ids arrive in accept order, the same as the clients'.
        for (c, ws) in clients.iter_mut().enumerate() {
            for i in 0..ROUNDS {
                if c < 2 {
                    let want = reply(c, i);
                    match read_data(ws) {
                        TMessage::Binary(b) => assert!(
                            b[..] == want[..],
                            "{backend:?}: client {c} round {i}: reply out of order"
                        ),
                        other => panic!("expected the reply, got {}", describe(&other)),
                    }
                }
                let want = publish(i);
                match read_data(ws) {
                    TMessage::Binary(b) => assert!(
                        b[..] == want[..],
                        "{backend:?}: client {c} round {i}: publish out of order"
                    ),
                    other => panic!("expected the publish, got {}", describe(&other)),
                }
            }
        }
        server.shutdown().unwrap();
    }
}

#[test]
fn small_large_small_to_one_connection_in_one_turn_arrive_in_order() {
    // The first small message becomes a direct piece, the large one goes to the outbox;
    // the last must not join the piece (it would overtake the large one).
    let sizes = [5, 200, BIG, 7, 64 << 10, 1, BIG + 1, 0, 3000];
    for backend in backends() {
        let (server, opened) = start(backend);
        let addr = server.local_addr();
        let mut ws = connect(addr, "/");
        let id = opened.recv_timeout(EVENT_TIMEOUT).unwrap();
        on_workers_one(&server, move |conns| {
            let mut ws = conns.get(id).expect("open");
            for (i, &n) in sizes.iter().enumerate() {
                ws.send_binary(&pattern(i as u64, n)).expect("accepted");
            }
        });
        for (i, &n) in sizes.iter().enumerate() {
            match read_data(&mut ws) {
                TMessage::Binary(b) => assert!(
                    b[..] == pattern(i as u64, n)[..],
                    "{backend:?}: message {i} ({n} B) out of order"
                ),
                other => panic!("expected binary, got {}", describe(&other)),
            }
        }
        server.shutdown().unwrap();
    }
}

#[test]
fn a_broadcast_to_many_leaves_no_spill_record_and_reaches_everyone() {
    const N: usize = 300;
    for backend in backends() {
        let (server, opened) = start(backend);
        let addr = server.local_addr();
        let mut clients: Vec<Client> = (0..N).map(|_| connect(addr, "/")).collect();
        for _ in 0..N {
            opened.recv_timeout(EVENT_TIMEOUT).unwrap();
        }
        let before = on_workers_one(&server, |c| c.pool_stats());
        for round in 0..3u64 {
            let payload = pattern(round, 64);
            let reached = on_workers_one(&server, move |c| {
                c.publish(TOPIC, DataKind::Binary, &payload)
            });
            assert_eq!(reached.reached, N, "{backend:?}: every subscriber reached");
            for ws in clients.iter_mut() {
                match read_data(ws) {
                    TMessage::Binary(b) => assert!(b[..] == pattern(round, 64)[..]),
                    other => panic!("expected the broadcast, got {}", describe(&other)),
                }
            }
        }
        assert!(
            eventually(Duration::from_secs(2), || on_workers_one(&server, |c| c
                .pool_stats()
                .in_use)
                == 0),
            "{backend:?}: records still lent after the broadcasts"
        );
        let after = on_workers_one(&server, |c| c.pool_stats());
        assert_eq!(
            after.allocated, before.allocated,
            "{backend:?}: a broadcast to idle connections takes no spill record"
        );
        server.shutdown().unwrap();
    }
}

/// Runs `job` on the one worker.
fn on_workers_one<T: Send + 'static>(
    server: &Server<Sub>,
    job: impl FnOnce(&mut throng_engine::Connections<'_, ()>) -> T + Send + 'static,
) -> T {
    let (tx, rx) = mpsc::channel();
    assert!(server.handle().post(0, move |_, conns| {
        let _ = tx.send(job(conns));
    }));
    rx.recv_timeout(EVENT_TIMEOUT)
        .expect("the worker runs jobs")
}

#[test]
fn replies_written_at_once_past_the_turns_mark_arrive_whole_and_in_order() {
    // 16 clients send 6 x 40 KB each before reading anything; the server's sockets have
    // small send buffers. With a mark of 0 every reply is written at the end of its
    // input when nothing of the connection's is in flight, most of them in part (the rest
    // goes with the turn's flush); the default mark (256 KiB) and off must deliver the
    // same bytes.
    const CLIENTS: usize = 16;
    const EACH: usize = 6;
    let message = |c: usize, i: usize| pattern((c * 100 + i) as u64, 40_000 + c * 7 + i);
    for backend in backends() {
        for mark in [Some(0), Some(256 << 10), None] {
            let mut config = Config::new("127.0.0.1:0".parse().unwrap())
                .with_workers(1)
                .with_pinning(false)
                .with_backend(backend);
            config.shutdown_timeout = Duration::from_secs(1);
            config.eager_replies_after = mark;
            let server = Server::start(config, move |_| SmallSendBuffer).unwrap();
            let addr = server.local_addr();
            // Every fourth client with a small receive buffer (set before it connects, so
            // its window starts small): the server's writes to it stop short.
            let mut clients: Vec<Client> = (0..CLIENTS)
                .map(|c| match c % 4 {
                    0 => connect_small_window(addr),
                    _ => connect(addr, "/"),
                })
                .collect();
            for (c, ws) in clients.iter_mut().enumerate() {
                for i in 0..EACH {
                    ws.write(TMessage::Binary(message(c, i).into())).unwrap();
                }
                ws.flush().unwrap();
            }
            for (c, ws) in clients.iter_mut().enumerate() {
                for i in 0..EACH {
                    match read_data(ws) {
                        TMessage::Binary(b) => assert!(
                            b[..] == message(c, i)[..],
                            "{backend:?} mark {mark:?}: client {c} reply {i} wrong or out of order"
                        ),
                        other => panic!("expected the reply, got {}", describe(&other)),
                    }
                }
            }
            let at_once = stats(&server).replies_at_once;
            match mark {
                Some(0) => assert!(at_once > 0, "{backend:?}: no reply was written at once"),
                None => assert_eq!(at_once, 0, "{backend:?}: switched off"),
                _ => {} // depends on how much one turn reads
            }
            server.shutdown().unwrap();
        }
    }
}

/// Echoes, on sockets whose send buffer is set small when they open, so that replies are
/// written in part.
struct SmallSendBuffer;

impl Handler for SmallSendBuffer {
    type State = ();
    fn on_upgrade<'r>(&mut self, _req: &UpgradeRequest<'r>) -> Decision<'r, ()> {
        Decision::accept(())
    }
    fn on_open(&mut self, ws: &mut WebSocket<'_, ()>) {
        // SAFETY: the engine keeps the descriptor open for as long as the connection.
        let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(ws.raw_fd()) };
        socket2::SockRef::from(&fd)
            .set_send_buffer_size(8192)
            .unwrap();
    }
    fn on_message(&mut self, ws: &mut WebSocket<'_, ()>, message: Message<'_>) {
        let _ = ws.send(message);
    }
}

/// A tungstenite client whose socket has a 4 KiB receive buffer from the start.
fn connect_small_window(addr: std::net::SocketAddr) -> Client {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(&addr.into()).unwrap();
    let stream: std::net::TcpStream = socket.into();
    stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(READ_TIMEOUT)).unwrap();
    let (ws, response) =
        tungstenite::client::client(format!("ws://{addr}/"), Tcp(stream)).expect("handshake");
    assert_eq!(response.status(), 101);
    ws
}
