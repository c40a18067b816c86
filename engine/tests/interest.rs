//! `ServerHandle::watch_topics` against real clients, on each backend: a worker reports
//! the topics it already has, then each first subscriber and each last one leaving
//! (unsubscribe or close), once per worker, and nothing after `unwatch_topics`.

mod common;

use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use common::{backends, on_workers};
use throng_engine::{
    Config, Decision, Handler, Message, Server, TopicEvent, UpgradeRequest, WebSocket,
};
use tungstenite::Message as TMessage;

/// `sub T` / `unsub T`, answered `ok`.
struct Subs;

impl Handler for Subs {
    type State = ();
    fn on_upgrade<'r>(&mut self, _req: &UpgradeRequest<'r>) -> Decision<'r, ()> {
        Decision::accept(())
    }
    fn on_message(&mut self, ws: &mut WebSocket<'_, ()>, message: Message<'_>) {
        let Message::Text(t) = message else { return };
        match t.split_once(' ') {
            Some(("sub", topic)) => ws.subscribe(topic),
            Some(("unsub", topic)) => ws.unsubscribe(topic),
            _ => return,
        };
        let _ = ws.send_text("ok");
    }
}

type Client = tungstenite::WebSocket<std::net::TcpStream>;

fn client(server: &Server<Subs>) -> Client {
    let addr = server.local_addr();
    let stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    tungstenite::client(format!("ws://{addr}/").as_str(), stream)
        .unwrap()
        .0
}

fn command(ws: &mut Client, text: &str) {
    ws.send(TMessage::text(text)).unwrap();
    assert_eq!(ws.read().unwrap(), TMessage::text("ok"));
}

fn next(rx: &mpsc::Receiver<TopicEvent>) -> TopicEvent {
    rx.recv_timeout(Duration::from_secs(10)).expect("an event")
}

#[test]
fn topics_gained_and_lost_are_reported_per_worker() {
    for backend in backends() {
        let mut config = Config::new("127.0.0.1:0".parse().unwrap())
            .with_workers(2)
            .with_pinning(false)
            .with_backend(backend);
        config.shutdown_timeout = Duration::from_secs(1);
        let server = Server::start(config, |_| Subs).unwrap();
        let mut a = client(&server);
        command(&mut a, "sub old");
        let worker = on_workers(&server, |c| c.subscribers("old"))
            .iter()
            .position(|&n| n == 1)
            .expect("a's worker");

        let (tx, rx) = mpsc::channel();
        let tx = std::sync::Mutex::new(tx);
        let taken = server.handle().watch_topics(Arc::new(move |ev| {
            let _ = tx.lock().unwrap().send(ev);
        }));
        assert_eq!(taken, 2);
        // The topic that existed before the watch is reported first.
        assert_eq!(
            next(&rx),
            TopicEvent::Gained {
                worker,
                topic: "old".into()
            }
        );
        command(&mut a, "sub news");
        assert_eq!(
            next(&rx),
            TopicEvent::Gained {
                worker,
                topic: "news".into()
            }
        );
        command(&mut a, "sub news"); // already subscribed: no event
        command(&mut a, "unsub news");
        assert_eq!(
            next(&rx),
            TopicEvent::Lost {
                worker,
                topic: "news".into()
            }
        );
        // A second subscriber on the same worker is no first subscriber.
        let mut b = loop {
            // SO_REUSEPORT picks the worker; keep one that shares a's.
            let mut b = client(&server);
            command(&mut b, "sub probe");
            let on = on_workers(&server, |c| c.subscribers("probe"));
            match next(&rx) {
                TopicEvent::Gained { worker: w, .. } => {
                    command(&mut b, "unsub probe");
                    assert!(matches!(next(&rx), TopicEvent::Lost { .. }));
                    if w == worker {
                        assert_eq!(on[worker], 1);
                        break b;
                    }
                }
                other => panic!("{other:?}"),
            }
        };
        command(&mut b, "sub old");
        // Closing the last subscriber of "old" on that worker loses it.
        drop(a);
        assert!(
            rx.recv_timeout(Duration::from_millis(300)).is_err(),
            "b still subscribes on that worker"
        );
        b.close(None).unwrap();
        while b.read().is_ok() {}
        drop(b); // the server removes the connection at its EOF
        assert_eq!(
            next(&rx),
            TopicEvent::Lost {
                worker,
                topic: "old".into()
            }
        );
        assert_eq!(server.handle().unwatch_topics(), 2);
        let mut c = client(&server);
        command(&mut c, "sub after");
        assert!(
            rx.recv_timeout(Duration::from_millis(200)).is_err(),
            "unwatched"
        );
        drop(c);
        server.shutdown().unwrap();
    }
}
