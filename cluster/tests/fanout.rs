//! Three throng nodes on a real redis-server, tungstenite clients on each, on each
//! backend: every publish reaches every subscriber on every node exactly once and in
//! per-publisher order; unsubscribing stops remote delivery; subscription changes are
//! batched.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use throng_cluster::{Mode, Options};
use throng_engine::Message;

/// Publishes from each node's thread (`Cluster::publish`) and from a client's callback
/// on each node, checks each subscriber got every message once, each publisher's in
/// order, and nothing else.
fn exactly_once_in_order(mode: Mode) {
    const FROM_THREAD: usize = 200;
    const FROM_CALLBACK: usize = 50;
    const CLIENTS: usize = 4;
    for backend in backends() {
        let redis = Redis::start();
        let opts = Options::default().with_mode(mode);
        let nodes = nodes(backend, &redis.url(), &opts);
        let mut clients: Vec<(Client, usize)> = nodes
            .iter()
            .flat_map(|n| (0..CLIENTS).map(|_| connect(n.addr(), "/sub/room")))
            .collect();
        for (i, (_, on)) in clients.iter().enumerate() {
            assert_eq!(*on, i / CLIENTS, "client {i} greeted by its node");
        }
        if mode != Mode::Pattern {
            await_channels(&nodes, 1);
        } else {
            await_channels(&nodes, 1); // the one pattern
        }
        // One client per node publishes from its callback.
        for n in 0..3 {
            let ws = &mut clients[n * CLIENTS].0;
            for seq in 0..FROM_CALLBACK {
                send(ws, &format!("pub room c{n} {seq}"));
            }
        }
        std::thread::scope(|s| {
            for node in &nodes {
                s.spawn(move || {
                    for seq in 0..FROM_THREAD {
                        let r = node
                            .cluster
                            .publish("room", Message::Text(&format!("t{} {seq}", node.index)));
                        assert_eq!(r, throng_cluster::Remote::Queued);
                    }
                });
            }
        });
        let total = 3 * (FROM_THREAD + FROM_CALLBACK);
        for (i, (ws, _)) in clients.iter_mut().enumerate() {
            let mut next: HashMap<String, usize> = HashMap::new();
            for k in 0..total {
                let m = read_text(ws).unwrap_or_else(|| {
                    panic!("{backend:?} {mode:?}: client {i} got only {k} of {total}")
                });
                let (origin, seq) = m.split_once(' ').expect("origin seq");
                let seq: usize = seq.parse().unwrap();
                let want = next.entry(origin.to_owned()).or_insert(0);
                assert_eq!(
                    seq, *want,
                    "{backend:?} {mode:?}: client {i}: {origin} in order, none twice or lost"
                );
                *want += 1;
            }
            assert_eq!(
                read_within(ws, Duration::from_millis(100)),
                None,
                "nothing more"
            );
        }
        for n in &nodes {
            let s = n.stats();
            let own = (FROM_THREAD + FROM_CALLBACK) as u64;
            assert_eq!(s.published, own);
            assert!(
                eventually(Duration::from_secs(5), || n.stats().sent == own),
                "Redis acknowledged every publish: {:?}",
                n.stats()
            );
            assert_eq!(s.received, 2 * own, "{:?}", s);
            assert_eq!(s.own, own, "its own came back from Redis and were skipped");
            assert_eq!((s.garbage, s.oversize, s.dropped), (0, 0, 0));
            assert_eq!((s.epoch, s.gaps), (1, 0));
        }
    }
}

#[test]
fn every_publish_reaches_every_subscriber_once_in_order() {
    exactly_once_in_order(Mode::PerTopic);
}

#[test]
fn pattern_mode_delivers_the_same() {
    exactly_once_in_order(Mode::Pattern);
}

#[test]
fn sharded_mode_delivers_the_same() {
    exactly_once_in_order(Mode::Sharded);
}

#[test]
fn unsubscribe_stops_remote_delivery() {
    for backend in backends() {
        let redis = Redis::start();
        let nodes = nodes(backend, &redis.url(), &Options::default());
        let mut subs: Vec<Client> = nodes
            .iter()
            .map(|n| connect(n.addr(), "/sub/t").0)
            .collect();
        await_channels(&nodes, 1);
        // Node 2's only subscriber leaves: node 2 unsubscribes in Redis.
        command(&mut subs[2], "unsub t");
        assert!(eventually(Duration::from_secs(5), || nodes[2]
            .stats()
            .channels
            == 0));
        assert_eq!(
            redis.publish_raw("throng:t", b"probe"),
            2,
            "Redis has two subscribers of the channel left"
        );
        for i in 0..10 {
            nodes[0]
                .cluster
                .publish("t", Message::Text(&format!("m{i}")));
        }
        for ws in &mut subs[..2] {
            for i in 0..10 {
                assert_eq!(read_text(ws), Some(format!("m{i}")));
            }
        }
        assert_eq!(read_within(&mut subs[2], Duration::from_millis(300)), None);
        assert_eq!(
            nodes[2].stats().received,
            0,
            "nothing reached node 2 at all"
        );
        // Back in: remote delivery resumes.
        command(&mut subs[2], "sub t");
        assert!(eventually(Duration::from_secs(5), || nodes[2]
            .stats()
            .channels
            == 1));
        nodes[1].cluster.publish("t", Message::Text("again"));
        for ws in &mut subs {
            assert_eq!(read_text(ws).as_deref(), Some("again"));
        }
        // The last subscriber closing also unsubscribes.
        drop(subs.pop());
        assert!(eventually(Duration::from_secs(5), || nodes[2]
            .stats()
            .channels
            == 0));
    }
}

#[test]
fn subscription_changes_are_batched() {
    const TOPICS: usize = 2000;
    for backend in backends() {
        let redis = Redis::start();
        let node = Node::start(0, backend, &redis.url(), Options::default());
        let (mut ws, _) = connect(node.addr(), "/");
        command(&mut ws, &format!("subn {TOPICS} topic-"));
        assert!(
            eventually(Duration::from_secs(10), || node.stats().channels
                == TOPICS as u64),
            "{:?}",
            node.stats()
        );
        let after_subscribe = node.stats().subscribe_commands;
        assert!(
            after_subscribe * 8 <= TOPICS as u64,
            "{TOPICS} subscriptions took {after_subscribe} commands"
        );
        drop(ws);
        assert!(eventually(Duration::from_secs(10), || node
            .stats()
            .channels
            == 0));
        let unsubscribes = node.stats().subscribe_commands - after_subscribe;
        assert!(
            unsubscribes * 8 <= TOPICS as u64,
            "{TOPICS} unsubscriptions took {unsubscribes} commands"
        );
        // Redis agrees: no channel of ours is left.
        let left = redis
            .command(&[b"PUBSUB", b"NUMSUB", b"throng:topic-7"])
            .unwrap();
        assert!(
            left.ends_with(b":0\r\n"),
            "{}",
            String::from_utf8_lossy(&left)
        );
    }
}
