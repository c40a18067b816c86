//! One chat node of a cluster: the chat of `examples/chat.rs`, with rooms fanned out to
//! the other nodes through Redis. `run.sh` beside this file starts Redis, three nodes and
//! HAProxy in front of them:
//!
//! ```text
//! examples/cluster/run.sh          # then open http://127.0.0.1:9100/ in two browsers
//! cargo run --release --example cluster -- --port 9101 --name node1 --redis redis://127.0.0.1:6390
//! ```
//! Each browser is told which node it landed on; lines cross between nodes.

use std::process::ExitCode;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use throng_cluster::{Cluster, LinkEvent, Options};
use throng_engine::{BackendChoice, Config, Server, ShutdownSignals};

mod chat;

const USAGE: &str = "usage: cluster [--port 9101] [--name node1] [--redis redis://127.0.0.1:6390] \
                     [--backend auto|uring|epoll] [--threads N]";

fn main() -> ExitCode {
    let mut config = Config::new(([127, 0, 0, 1], 9101).into());
    let mut name = String::from("node1");
    let mut redis = String::from("redis://127.0.0.1:6390");
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().unwrap_or_default();
        let ok = match flag.as_str() {
            "--port" => value.parse().map(|p| config.addr.set_port(p)).is_ok(),
            "--name" => {
                name = value;
                true
            }
            "--redis" => {
                redis = value;
                true
            }
            "--backend" => value
                .parse::<BackendChoice>()
                .map(|b| config.backend = b)
                .is_ok(),
            "--threads" => value
                .parse()
                .map(|n: usize| config.workers = n.max(1))
                .is_ok(),
            _ => false,
        };
        if !ok {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    }
    let signals = ShutdownSignals::block().expect("block signals");
    let slot = Arc::new(OnceLock::new());
    let node: Arc<str> = name.as_str().into();
    let handlers = (node.clone(), slot.clone());
    let server = match Server::start(config, move |_| chat::ClusterChat {
        node: handlers.0.clone(),
        cluster: handlers.1.clone(),
    }) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{name}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut options = Options::default();
    // run.sh may start the nodes before Redis listens.
    options.join_retry = Some(Duration::from_secs(10));
    let who = name.clone();
    let options = options.with_link_callback(move |ev| match ev {
        LinkEvent::Lost { reason, .. } => eprintln!("{who}: lost Redis ({reason}); reconnecting"),
        LinkEvent::Restored(gap) => eprintln!(
            "{who}: Redis is back after {:.1} s; messages of that time may be missing",
            gap.down_for.as_secs_f64()
        ),
        _ => {}
    });
    let cluster = match Cluster::join(&redis, &server.handle(), options) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{name}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let _ = slot.set(cluster.publisher());
    println!(
        "{name}: chat on http://{}/ backend={} workers={}, joined {redis}",
        server.local_addr(),
        server.backend().name(),
        server.workers()
    );
    let _ = signals.wait();
    let stats = cluster.leave();
    let _ = server.shutdown();
    println!("{name}: left; {stats:?}");
    ExitCode::SUCCESS
}
