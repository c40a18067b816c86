//! Pub/sub across workers, against real tungstenite clients on loopback, on each backend.

mod common;

use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{Tcp, backends, tcp};
use throng_engine::DataKind;
use throng_engine::{
    BackendChoice, Backpressure, CloseCode, Config, Decision, Handler, Message, Server,
    UpgradeRequest, WebSocket,
};
use tungstenite::protocol::frame::coding::CloseCode as TCloseCode;
use tungstenite::{Message as TMessage, WebSocket as Client};

/// Subscribes to the topic named by the path (`/news`); text commands:
/// `pub TOPIC TEXT` publishes from the callback, `unsub TOPIC` and `sub TOPIC` answer `ok`.
struct PubSub;

impl Handler for PubSub {
    type State = ();
    fn on_upgrade<'r>(&mut self, _req: &UpgradeRequest<'r>) -> Decision<'r, ()> {
        Decision::accept(())
    }
    fn on_message(&mut self, ws: &mut WebSocket<'_, ()>, message: Message<'_>) {
        let Message::Text(text) = message else { return };
        let mut parts = text.splitn(3, ' ');
        match (parts.next(), parts.next(), parts.next()) {
            (Some("pub"), Some(topic), Some(body)) => {
                ws.publish(topic, Message::Text(body));
            }
            (Some("sub"), Some(topic), None) => {
                ws.subscribe(topic);
                let _ = ws.send_text(&format!("ok {}", ws.is_subscribed(topic)));
            }
            (Some("unsub"), Some(topic), None) => {
                ws.unsubscribe(topic);
                let _ = ws.send_text(&format!("ok {}", ws.is_subscribed(topic)));
            }
            _ => ws.close(CloseCode::POLICY, "unknown command"),
        }
    }
}

fn start(backend: BackendChoice, tweak: impl FnOnce(&mut Config)) -> Server<PubSub> {
    let mut config = Config::new("127.0.0.1:0".parse().unwrap())
        .with_workers(2)
        .with_pinning(false);
    config.backend = backend;
    // A subscriber that never reads never answers the shutdown close either.
    config.shutdown_timeout = Duration::from_secs(1);
    tweak(&mut config);
    let server = Server::start(config, |_| PubSub).expect("server starts");
    assert_eq!(
        format!("{:?}", server.backend()),
        format!("{backend:?}"),
        "backend that ran"
    );
    server
}

fn connect(addr: SocketAddr) -> Client<Tcp> {
    let (ws, _) = tungstenite::client(format!("ws://{addr}/"), tcp(addr)).expect("handshake");
    ws
}

fn text(ws: &mut Client<Tcp>) -> String {
    loop {
        match ws.read().expect("read") {
            TMessage::Text(t) => return t.to_string(),
            TMessage::Ping(_) | TMessage::Pong(_) => continue,
            other => panic!("expected text, got {other:?}"),
        }
    }
}

fn subscribe(ws: &mut Client<Tcp>, topic: &str) {
    ws.send(TMessage::text(format!("sub {topic}"))).unwrap();
    assert_eq!(text(ws), "ok true");
}

/// Subscribers per worker, read on each worker's own thread.
fn subscribers<H: Handler>(server: &Server<H>, topic: &'static str) -> Vec<usize> {
    let handle = server.handle();
    (0..handle.workers())
        .map(|w| {
            let (tx, rx) = mpsc::channel();
            handle.post(w, move |_, conns| {
                tx.send(conns.subscribers(topic)).unwrap()
            });
            rx.recv_timeout(Duration::from_secs(5)).unwrap()
        })
        .collect()
}

#[test]
fn every_subscriber_on_every_worker_gets_each_message_once_in_order() {
    for backend in backends() {
        let server = start(backend, |_| {});
        let addr = server.local_addr();
        let mut clients: Vec<_> = (0..40).map(|_| connect(addr)).collect();
        for c in &mut clients {
            subscribe(c, "news");
        }
        let per_worker = subscribers(&server, "news");
        assert_eq!(per_worker.iter().sum::<usize>(), 40);
        assert!(
            per_worker.iter().all(|&n| n > 0),
            "both workers hold subscribers: {per_worker:?}"
        );

        // From a thread that is not a worker.
        let handle = server.handle();
        let tickets: Vec<_> = (0..100)
            .map(|i| handle.publish("news", DataKind::Text, format!("m{i}").as_bytes()))
            .collect();
        for t in tickets {
            let p = t.wait(Duration::from_secs(5)).expect("workers answer");
            assert_eq!((p.reached, p.dropped), (40, 0));
        }
        for c in &mut clients {
            for i in 0..100 {
                assert_eq!(text(c), format!("m{i}"));
            }
        }
        // Nothing more: a duplicate would show up before this echo of a fresh command.
        for c in &mut clients {
            subscribe(c, "other");
        }
        server.shutdown().unwrap();
    }
}

#[test]
fn publish_from_a_callback_skips_the_sender_and_crosses_workers() {
    for backend in backends() {
        let server = start(backend, |_| {});
        let addr = server.local_addr();
        let mut clients: Vec<_> = (0..12).map(|_| connect(addr)).collect();
        for c in &mut clients {
            subscribe(c, "room");
        }
        clients[0].send(TMessage::text("pub room hello")).unwrap();
        for c in &mut clients[1..] {
            assert_eq!(text(c), "hello");
        }
        // The sender got nothing: its next message is the answer to a new command.
        subscribe(&mut clients[0], "x");
        server.shutdown().unwrap();
    }
}

#[test]
fn unsubscribe_and_close_end_subscriptions() {
    for backend in backends() {
        let server = start(backend, |_| {});
        let addr = server.local_addr();
        let mut clients: Vec<_> = (0..10).map(|_| connect(addr)).collect();
        for c in &mut clients {
            subscribe(c, "t");
        }
        clients[0].send(TMessage::text("unsub t")).unwrap();
        assert_eq!(text(&mut clients[0]), "ok false");
        let mut gone = clients.pop().unwrap();
        gone.close(None).unwrap();
        while gone.read().is_ok() {}
        // The server sees the close asynchronously; wait until the table shrinks.
        let deadline = Instant::now() + Duration::from_secs(5);
        while subscribers(&server, "t").iter().sum::<usize>() != 8 {
            assert!(
                Instant::now() < deadline,
                "close must remove the subscription"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        let p = server
            .handle()
            .publish("t", DataKind::Text, b"after")
            .wait(Duration::from_secs(5))
            .unwrap();
        assert_eq!(p.reached, 8);
        for c in &mut clients[1..] {
            assert_eq!(text(c), "after");
        }
        subscribe(&mut clients[0], "y"); // nothing from "t" arrived before this answer
        server.shutdown().unwrap();
    }
}

/// Publishes `count` binary messages of `size` bytes to "feed" while `fast` clients read on
/// their own threads, never more than two messages ahead of the slowest fast reader (so
/// only a subscriber that does not read at all can reach the cap); returns the summed
/// counts and each fast reader's received count.
fn flood(
    server: &Server<PubSub>,
    fast: Vec<Client<Tcp>>,
    count: usize,
    size: usize,
) -> (usize, usize, Vec<usize>) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let progress: Vec<Arc<AtomicUsize>> =
        fast.iter().map(|_| Arc::new(AtomicUsize::new(0))).collect();
    let readers: Vec<_> = fast
        .into_iter()
        .zip(progress.iter().cloned())
        .map(|(mut c, progress)| {
            std::thread::spawn(move || {
                let mut got = 0;
                while got < count {
                    match c.read().expect("fast reader keeps up") {
                        TMessage::Binary(b) => {
                            assert_eq!(b.len(), size);
                            assert_eq!(
                                u32::from_le_bytes(b[..4].try_into().unwrap()) as usize,
                                got,
                                "in order"
                            );
                            got += 1;
                            progress.store(got, Ordering::Release);
                        }
                        TMessage::Ping(_) | TMessage::Pong(_) => {}
                        other => panic!("unexpected {other:?}"),
                    }
                }
                got
            })
        })
        .collect();
    let handle = server.handle();
    let mut payload = vec![7u8; size];
    let mut tickets = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    for i in 0..count {
        while progress
            .iter()
            .map(|p| p.load(Ordering::Acquire))
            .min()
            .unwrap_or(count)
            + 2
            < i
        {
            assert!(Instant::now() < deadline, "fast readers stalled");
            std::thread::sleep(Duration::from_micros(50));
        }
        payload[..4].copy_from_slice(&(i as u32).to_le_bytes());
        tickets.push(handle.publish("feed", DataKind::Binary, &payload));
    }
    let (mut reached, mut dropped) = (0, 0);
    for t in tickets {
        let p = t.wait(Duration::from_secs(30)).expect("workers answer");
        reached += p.reached;
        dropped += p.dropped;
    }
    let got = readers.into_iter().map(|r| r.join().unwrap()).collect();
    (reached, dropped, got)
}

#[test]
fn a_slow_subscriber_is_dropped_for_and_does_not_slow_the_others() {
    for backend in backends() {
        let server = start(backend, |c| {
            c.max_buffered = 256 << 10;
            c.backpressure = Backpressure::Drop;
        });
        let addr = server.local_addr();
        let mut slow = connect(addr);
        subscribe(&mut slow, "feed");
        let mut fast: Vec<_> = (0..4).map(|_| connect(addr)).collect();
        for c in &mut fast {
            subscribe(c, "feed");
        }
        let (count, size) = (320, 64 << 10); // 21 MB: far beyond what the slow socket buffers (~10 MB)
        let (reached, dropped, got) = flood(&server, fast, count, size);
        assert!(
            got.iter().all(|&g| g == count),
            "fast subscribers got everything: {got:?}"
        );
        assert!(dropped > 0, "the slow subscriber hit the cap");
        assert_eq!(reached + dropped, count * 5);
        // What the slow one did get is in order, with gaps only where it was dropped for.
        slow.get_ref()
            .set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let mut last = None;
        while let Ok(TMessage::Binary(b)) = slow.read() {
            let i = u32::from_le_bytes(b[..4].try_into().unwrap());
            assert!(last.is_none_or(|l| i > l), "in order");
            last = Some(i);
        }
        assert!(
            last.is_some(),
            "the slow subscriber got the messages that fit"
        );
        server.shutdown().unwrap();
    }
}

#[test]
fn a_slow_subscriber_is_closed_with_the_close_policy() {
    for backend in backends() {
        let server = start(backend, |c| {
            c.max_buffered = 256 << 10;
            c.backpressure = Backpressure::Close(CloseCode::POLICY);
        });
        let addr = server.local_addr();
        let mut slow = connect(addr);
        subscribe(&mut slow, "feed");
        let mut fast: Vec<_> = (0..3).map(|_| connect(addr)).collect();
        for c in &mut fast {
            subscribe(c, "feed");
        }
        let (count, size) = (320, 64 << 10);
        let (_, dropped, got) = flood(&server, fast, count, size);
        assert!(
            got.iter().all(|&g| g == count),
            "fast subscribers got everything: {got:?}"
        );
        assert!(dropped > 0);
        let code = loop {
            match slow.read() {
                Ok(TMessage::Close(Some(f))) => break f.code,
                Ok(TMessage::Binary(_)) | Ok(TMessage::Ping(_)) => continue,
                other => panic!("expected a close frame, got {other:?}"),
            }
        };
        assert_eq!(code, TCloseCode::Policy);
        server.shutdown().unwrap();
    }
}

/// Waits until the worker(s) count `n` subscribers of `topic` (closes land asynchronously).
fn wait_subscribers(server: &Server<PubSub>, topic: &'static str, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while subscribers(server, topic).iter().sum::<usize>() != n {
        assert!(
            Instant::now() < deadline,
            "{topic}: expected {n} subscribers, have {:?}",
            subscribers(server, topic)
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn close_client(mut c: Client<Tcp>) {
    c.close(None).unwrap();
    while c.read().is_ok() {}
}

#[test]
fn a_reused_slot_gets_none_of_the_old_subscriptions() {
    for backend in backends() {
        // One worker: its slab hands the slot freed by a close to the next connection.
        let server = start(backend, |c| c.workers = 1);
        let addr = server.local_addr();
        let mut keeper = connect(addr);
        subscribe(&mut keeper, "t");
        let mut old = connect(addr);
        // The first topic sits in the record, the second in the side map.
        subscribe(&mut old, "t");
        subscribe(&mut old, "u");
        close_client(old);
        wait_subscribers(&server, "t", 1);
        wait_subscribers(&server, "u", 0);
        let mut new = connect(addr);
        let handle = server.handle();
        for (topic, reached) in [("t", 1), ("u", 0)] {
            let p = handle
                .publish(topic, DataKind::Text, topic.as_bytes())
                .wait(Duration::from_secs(5))
                .unwrap();
            assert_eq!(p.reached, reached, "{topic}");
        }
        assert_eq!(text(&mut keeper), "t");
        // The new connection got neither message: its first is the answer to a command.
        new.send(TMessage::text("unsub t")).unwrap();
        assert_eq!(text(&mut new), "ok false");
        subscribe(&mut new, "u");
        server.shutdown().unwrap();
    }
}

#[test]
fn a_topic_grows_and_shrinks_through_every_form() {
    for backend in backends() {
        // One worker, so its topic holds every subscriber: a list up to 32, then a bit
        // set over the slab's slots, and a list again once most have left.
        let server = start(backend, |c| c.workers = 1);
        let addr = server.local_addr();
        let mut clients: Vec<_> = (0..120).map(|_| connect(addr)).collect();
        for c in &mut clients {
            subscribe(c, "all");
        }
        for round in 0..2 {
            let p = server
                .handle()
                .publish("all", DataKind::Text, format!("r{round}").as_bytes())
                .wait(Duration::from_secs(5))
                .unwrap();
            assert_eq!((p.reached, p.dropped), (clients.len(), 0));
            for c in &mut clients {
                assert_eq!(text(c), format!("r{round}"));
            }
            // Every other one leaves, half by unsubscribing and half by closing, until 8
            // are left.
            let mut kept = Vec::new();
            for (i, mut c) in clients.into_iter().enumerate() {
                if kept.len() >= 8 && i % 2 == 0 {
                    c.send(TMessage::text("unsub all")).unwrap();
                    assert_eq!(text(&mut c), "ok false");
                } else if kept.len() >= 8 {
                    close_client(c);
                } else {
                    kept.push(c);
                }
            }
            clients = kept;
            wait_subscribers(&server, "all", clients.len());
        }
        server.shutdown().unwrap();
    }
}
