//! Settings are checked before anything starts: each invalid one is refused with an error
//! naming it, nothing is clamped silently; and a port another process listens on is
//! refused instead of being shared through `SO_REUSEPORT`.

mod common;

use std::time::Duration;

use common::*;
use throng_engine::{Backpressure, CloseCode, Config, Error};

/// A change that makes a config invalid.
type Change = Box<dyn Fn(&mut Config)>;

fn refused(cfg: Config) -> (&'static str, String) {
    match cfg.validate() {
        Err(e) => (e.field, e.reason),
        Ok(()) => panic!("accepted an invalid config: {cfg:?}"),
    }
}

#[test]
fn every_invalid_setting_is_refused_with_its_name() {
    let ok = Config::default();
    ok.validate().expect("the defaults are valid");
    let cases: Vec<(&str, Change)> = vec![
        ("workers", Box::new(|c| c.workers = 0)),
        ("backlog", Box::new(|c| c.backlog = 0)),
        ("max_connections", Box::new(|c| c.max_connections = 0)),
        ("recv_buffer", Box::new(|c| c.recv_buffer = 100)),
        ("max_headers", Box::new(|c| c.max_headers = 0)),
        ("max_headers", Box::new(|c| c.max_headers = 10_000)),
        ("max_frame_size", Box::new(|c| c.max_frame_size = 0)),
        (
            "max_message_size",
            Box::new(|c| c.max_message_size = 5 << 30),
        ),
        (
            "write_low_water",
            Box::new(|c| c.write_low_water = c.write_high_water + 1),
        ),
        ("timer_tick", Box::new(|c| c.timer_tick = Duration::ZERO)),
        (
            "handshake_timeout",
            Box::new(|c| c.handshake_timeout = Duration::ZERO),
        ),
        (
            "ping_interval",
            Box::new(|c| c.ping_interval = Some(Duration::ZERO)),
        ),
        (
            "idle_timeout",
            Box::new(|c| c.idle_timeout = Some(Duration::from_secs(u64::MAX / 4))),
        ),
        (
            "backpressure",
            Box::new(|c| c.backpressure = Backpressure::Close(CloseCode(1006))),
        ),
        ("uring_recv_buffers", Box::new(|c| c.uring_recv_buffers = 0)),
        (
            "uring_recv_buffer_size",
            Box::new(|c| c.uring_recv_buffer_size = 10),
        ),
        ("uring_wait_batch", Box::new(|c| c.uring_wait_batch = 0)),
        ("max_fragments", Box::new(|c| c.max_fragments = 1 << 24)),
    ];
    for (field, change) in cases {
        let mut cfg = Config::default();
        change(&mut cfg);
        let (got, reason) = refused(cfg);
        assert_eq!(got, field, "{reason}");
        assert!(!reason.is_empty());
    }
    // Server::start refuses the same, with the typed error.
    let cfg = Config::default().with_workers(0);
    match throng_engine::Server::start(cfg, |_| Refuser) {
        Err(Error::InvalidConfig(e)) => assert_eq!(e.field, "workers"),
        other => panic!("expected InvalidConfig, got {other:?}"),
    }
}

#[test]
fn a_port_taken_by_another_listener_is_refused_not_shared() {
    for backend in backends() {
        // Another process's SO_REUSEPORT listener, as a second echo server would be.
        let other =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        other.set_reuse_port(true).unwrap();
        other
            .bind(
                &"127.0.0.1:0"
                    .parse::<std::net::SocketAddr>()
                    .unwrap()
                    .into(),
            )
            .unwrap();
        other.listen(16).unwrap();
        let taken = other.local_addr().unwrap().as_socket().unwrap();
        let mut cfg = config(backend);
        cfg.addr = taken;
        match throng_engine::Server::start(cfg, |_| Refuser) {
            Err(Error::AddrInUse { addr }) => assert_eq!(addr, taken),
            other => panic!("expected AddrInUse, got {other:?}"),
        }
        drop(other);
        // Once it is free, the server's own workers share the port as usual.
        let mut cfg = config(backend);
        cfg.addr = taken;
        let server = start_with(cfg, |_| Refuser);
        assert_eq!(server.local_addr(), taken);
        server.shutdown().unwrap();
    }
}

/// Refuses every upgrade (these tests only start and stop servers).
struct Refuser;

impl throng_engine::Handler for Refuser {
    type State = ();
    fn on_upgrade<'r>(
        &mut self,
        _req: &throng_engine::UpgradeRequest<'r>,
    ) -> throng_engine::Decision<'r, ()> {
        throng_engine::Decision::reject(403)
    }
    fn on_message(
        &mut self,
        _ws: &mut throng_engine::WebSocket<'_, ()>,
        _m: throng_engine::Message<'_>,
    ) {
    }
}
