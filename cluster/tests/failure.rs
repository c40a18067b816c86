//! Redis failing under three nodes, on each backend: killed and restarted mid-run (local
//! delivery never stops, the queue stays bounded, remote delivery resumes, the gap is
//! reported), unreachable at start, refusing the handshake; garbage and oversize
//! payloads published into a channel by another Redis client.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use throng_cluster::{Cluster, ClusterError, DropPolicy, LinkEvent, Options, Remote};
use throng_engine::{Config, Message, Server};

/// Options with short timings, and outages reported on `tx`.
fn watched(tx: mpsc::Sender<(usize, LinkEvent)>, node: usize) -> Options {
    let mut o = Options::default();
    o.backoff_min = Duration::from_millis(20);
    o.backoff_max = Duration::from_millis(200);
    o.queue_messages = 1000;
    o.drop_policy = DropPolicy::DropNewest;
    o.with_link_callback(move |ev| {
        let _ = tx.send((node, ev));
    })
}

#[test]
fn redis_killed_and_restarted_mid_run() {
    const OUTAGE: usize = 5000;
    for backend in backends() {
        let mut redis = Redis::start();
        let (tx, events) = mpsc::channel();
        let nodes: Vec<Node> = (0..3)
            .map(|i| Node::start(i, backend, &redis.url(), watched(tx.clone(), i)))
            .collect();
        let mut subs: Vec<Client> = nodes
            .iter()
            .map(|n| connect(n.addr(), "/sub/live").0)
            .collect();
        await_channels(&nodes, 1);
        nodes[0].cluster.publish("live", Message::Text("before"));
        for ws in &mut subs {
            assert_eq!(read_text(ws).as_deref(), Some("before"));
        }

        redis.kill();
        for _ in 0..3 {
            let (_, ev) = events
                .recv_timeout(Duration::from_secs(10))
                .expect("loss reported");
            assert!(matches!(ev, LinkEvent::Lost { epoch: 1, .. }), "{ev:?}");
        }
        assert!(nodes.iter().all(|n| !n.stats().connected));
        // Local delivery goes on; the queue keeps 1,000 and drops the rest, counted.
        let mut refused = 0;
        for i in 0..OUTAGE {
            if nodes[0]
                .cluster
                .publish("live", Message::Text(&format!("outage {i}")))
                == Remote::QueueFull
            {
                refused += 1;
            }
        }
        for i in 0..OUTAGE {
            assert_eq!(
                read_text(&mut subs[0]),
                Some(format!("outage {i}")),
                "{backend:?}: local delivery during the outage"
            );
        }
        let s = nodes[0].stats();
        assert_eq!(s.queued, 1000, "{s:?}");
        assert_eq!((s.dropped, refused), (OUTAGE as u64 - 1000, OUTAGE - 1000));
        assert!(s.queued_bytes <= Options::default().queue_bytes as u64);

        redis.restart();
        let start = Instant::now();
        let mut restored = [None; 3];
        while restored.iter().any(Option::is_none) {
            let left = Duration::from_secs(10).saturating_sub(start.elapsed());
            let (n, ev) = events.recv_timeout(left).expect("restore reported");
            if let LinkEvent::Restored(gap) = ev {
                restored[n] = Some(gap);
            }
        }
        for (n, gap) in restored.iter().enumerate() {
            let gap = gap.unwrap();
            assert_eq!(gap.epoch, 2);
            assert_eq!(gap.dropped, if n == 0 { 4000 } else { 0 });
            assert!(gap.down_for > Duration::ZERO);
        }
        await_channels(&nodes, 1);
        for n in &nodes {
            let s = n.stats();
            assert!(s.connected && s.epoch == 2 && s.gaps == 1, "{s:?}");
        }
        // Remote delivery resumes. Node 0's queue went out after its reconnect; nodes that
        // had resubscribed by then got some of it: in order, before what follows.
        assert!(eventually(Duration::from_secs(5), || nodes[0]
            .stats()
            .queued
            == 0));
        for i in 0..20 {
            nodes[1]
                .cluster
                .publish("live", Message::Text(&format!("after {i}")));
        }
        for (k, ws) in subs.iter_mut().enumerate() {
            let mut outage_next = 0;
            let mut after = 0;
            while after < 20 {
                let m = read_text(ws).unwrap_or_else(|| panic!("node {k}: after {after}"));
                if let Some(i) = m.strip_prefix("outage ") {
                    assert_ne!(k, 0, "node 0 never gets its own twice");
                    let i: usize = i.parse().unwrap();
                    assert!(i >= outage_next && i < 1000, "node {k}: {m} in order");
                    outage_next = i + 1;
                } else {
                    assert_eq!(m, format!("after {after}"), "node {k}");
                    after += 1;
                }
            }
        }
        assert_eq!(
            nodes[0].stats().dropped,
            4000,
            "no more dropped after the restore"
        );
    }
}

#[test]
fn redis_unreachable_at_start() {
    // Fails at once by default, with a message that says where and what to do.
    let port = free_port();
    let server = Server::start(
        Config::new("127.0.0.1:0".parse().unwrap())
            .with_workers(1)
            .with_pinning(false),
        |_| App {
            node: 0,
            cluster: Default::default(),
        },
    )
    .unwrap();
    let url = format!("redis://127.0.0.1:{port}");
    let t = Instant::now();
    let err = Cluster::join(&url, &server.handle(), Options::default()).unwrap_err();
    assert!(t.elapsed() < Duration::from_secs(1));
    assert!(matches!(err, ClusterError::Connect { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains(&format!("127.0.0.1:{port}")) && text.contains("join_retry"),
        "{text}"
    );

    // With join_retry, join waits for Redis to come up.
    let mut opts = Options::default();
    opts.join_retry = Some(Duration::from_secs(10));
    let redis = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(400));
        Redis::start_on(port)
    });
    let t = Instant::now();
    let cluster = Cluster::join(&url, &server.handle(), opts).expect("joins once Redis is up");
    assert!(t.elapsed() >= Duration::from_millis(300));
    assert!(cluster.stats().connected);
    let _redis = redis.join().unwrap();

    // join_retry gives up after its time, saying how long it tried.
    let mut opts = Options::default();
    opts.join_retry = Some(Duration::from_millis(300));
    let err = Cluster::join(
        &format!("redis://127.0.0.1:{}", free_port()),
        &server.handle(),
        opts,
    )
    .unwrap_err();
    assert!(err.to_string().contains("kept trying"), "{err}");
}

#[test]
fn a_server_that_is_not_redis_or_refuses_the_login() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        if let Ok((mut s, _)) = listener.accept() {
            let mut buf = [0; 256];
            let _ = s.read(&mut buf);
            let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n");
        }
    });
    let server = Server::start(
        Config::new("127.0.0.1:0".parse().unwrap())
            .with_workers(1)
            .with_pinning(false),
        |_| App {
            node: 0,
            cluster: Default::default(),
        },
    )
    .unwrap();
    let err = Cluster::join(
        &format!("redis://{addr}"),
        &server.handle(),
        Options::default(),
    )
    .unwrap_err();
    assert!(matches!(err, ClusterError::Handshake { .. }), "{err:?}");

    let redis = Redis::start();
    let url = format!("redis://:wrong@127.0.0.1:{}", redis.port);
    let err = Cluster::join(&url, &server.handle(), Options::default()).unwrap_err();
    match &err {
        ClusterError::Handshake { reason, .. } => assert!(reason.contains("AUTH"), "{reason}"),
        other => panic!("{other:?}"),
    }
    assert!(
        !err.to_string().contains("wrong"),
        "the password stays out of messages"
    );
    assert!(matches!(
        Cluster::join("http://x", &server.handle(), Options::default()),
        Err(ClusterError::Url(_))
    ));
}

#[test]
fn garbage_and_oversize_from_redis_are_dropped_and_counted() {
    for backend in backends() {
        let redis = Redis::start();
        let mut opts = Options::default();
        opts.max_payload = 1024;
        let nodes: Vec<Node> = (0..2)
            .map(|i| Node::start(i, backend, &redis.url(), opts.clone()))
            .collect();
        let mut subs: Vec<Client> = nodes
            .iter()
            .map(|n| connect(n.addr(), "/sub/g").0)
            .collect();
        await_channels(&nodes, 1);
        let valid_header = |flags: u8| {
            let mut h = vec![0xB7, flags];
            h.extend_from_slice(&0x1234u64.to_le_bytes());
            h
        };
        let mut bad_flags = valid_header(0x80);
        bad_flags.extend_from_slice(b"x");
        let mut bad_utf8 = valid_header(1);
        bad_utf8.extend_from_slice(&[0xC3, 0x28]);
        let mut oversize = valid_header(0);
        oversize.resize(100_000, b'z');
        let garbage: [&[u8]; 5] = [
            b"hello from redis-cli",
            &[],
            &bad_flags,
            &bad_utf8,
            &valid_header(1)[..6],
        ];
        for g in garbage {
            assert_eq!(redis.publish_raw("throng:g", g), 2);
        }
        assert_eq!(redis.publish_raw("throng:g", &oversize), 2);
        // A binary message from a well-behaved foreign publisher is delivered.
        let mut fine = valid_header(0);
        fine.extend_from_slice(b"\x00\x01");
        assert_eq!(redis.publish_raw("throng:g", &fine), 2);
        for n in &nodes {
            assert!(
                eventually(Duration::from_secs(5), || {
                    let s = n.stats();
                    s.garbage == 5 && s.oversize == 1 && s.received == 1
                }),
                "{:?}",
                n.stats()
            );
        }
        for ws in &mut subs {
            match ws.read().expect("the good message") {
                tungstenite::Message::Binary(b) => assert_eq!(&b[..], b"\x00\x01"),
                other => panic!("{other:?}"),
            }
        }
        // The link survived all of it: same epoch, and delivery goes on.
        nodes[0].cluster.publish("g", Message::Text("still here"));
        for ws in &mut subs {
            assert_eq!(read_text(ws).as_deref(), Some("still here"));
        }
        for n in &nodes {
            assert_eq!((n.stats().epoch, n.stats().gaps), (1, 0));
        }
        // Too large to send: local subscribers only, counted.
        let big = "y".repeat(2000);
        assert_eq!(
            nodes[0].cluster.publish("g", Message::Text(&big)),
            Remote::TooLarge
        );
        assert_eq!(read_text(&mut subs[0]).map(|m| m.len()), Some(2000));
        assert_eq!(read_within(&mut subs[1], Duration::from_millis(200)), None);
        assert_eq!(nodes[0].stats().too_large, 1);
    }
}
