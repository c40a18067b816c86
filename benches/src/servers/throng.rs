//! throng, configured as `examples/echo` (engine defaults: 16 MiB messages, ping after 30 s
//! of silence), with the roles of [`super::Role`] on top: topics are `ws.subscribe`, a
//! broadcast is one `ws.publish`.

use std::process::ExitCode;

use throng_engine::{
    BackendChoice, Config, Decision, Handler, Message, Server, UpgradeRequest, WebSocket,
};

use super::{MAX_MESSAGE, Role, ServeOptions, TOPIC_ALL, TOPIC_PUBSUB, broadcast_size};

/// One per worker.
struct Bench {
    /// Broadcast payloads are cut from this, grown on demand.
    filler: Vec<u8>,
}

impl Handler for Bench {
    type State = Role;

    fn on_upgrade<'r>(&mut self, req: &UpgradeRequest<'r>) -> Decision<'r, Role> {
        Decision::accept(Role::from_path(req.path()))
    }

    fn on_open(&mut self, ws: &mut WebSocket<'_, Role>) {
        match *ws.state() {
            Role::Member => {
                ws.subscribe(TOPIC_ALL);
            }
            Role::Subscriber => {
                ws.subscribe(TOPIC_PUBSUB);
            }
            _ => {}
        }
    }

    fn on_message(&mut self, ws: &mut WebSocket<'_, Role>, message: Message<'_>) {
        match *ws.state() {
            Role::Control => {
                if let Message::Text(t) = message
                    && let Some(n) = broadcast_size(t.as_bytes())
                {
                    if self.filler.len() < n {
                        self.filler.resize(n, b'x');
                    }
                    ws.publish(TOPIC_ALL, Message::Binary(&self.filler[..n]));
                    return;
                }
                let _ = ws.send(message);
            }
            Role::Publisher => {
                ws.publish(TOPIC_PUBSUB, message);
                let _ = ws.send(message);
            }
            Role::Echo | Role::Member | Role::Subscriber => {
                let _ = ws.send(message);
            }
        }
    }
}

/// Runs throng until the process is killed.
pub fn run(opts: &ServeOptions) -> ExitCode {
    let backend = match opts.backend.parse::<BackendChoice>() {
        Ok(b) => b,
        Err(e) => {
            eprintln!("serve: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut config = Config::new(opts.addr)
        .with_workers(opts.threads)
        .with_backend(backend)
        .with_max_message_size(MAX_MESSAGE);
    // A/B runs of the engine's fast paths (benches/README.md): THRONG_BENCH_OFF names
    // the ones to switch off, comma-separated.
    for name in std::env::var("THRONG_BENCH_OFF")
        .unwrap_or_default()
        .split(',')
    {
        match name.trim() {
            "" => {}
            "eager_replies" => config.eager_replies_after = None,
            "uring_direct_send" => config.uring_direct_send = false,
            "uring_adaptive_ring" => config.uring_recv_buffers_min = config.uring_recv_buffers,
            other => {
                eprintln!("serve: THRONG_BENCH_OFF: unknown switch {other:?}");
                return ExitCode::FAILURE;
            }
        }
    }
    let config = match opts.tls_config() {
        Ok(Some(tls)) => config.with_tls(tls),
        Ok(None) => config,
        Err(e) => {
            eprintln!("serve: throng: TLS: {e}");
            return ExitCode::FAILURE;
        }
    };
    let server = match Server::start(config, |_| Bench { filler: Vec::new() }) {
        Ok(s) => s,
        // A backend this kernel or build does not offer is reported, not a failure.
        Err(e @ throng_engine::Error::BackendUnavailable { .. }) => {
            return super::unavailable(&e.to_string());
        }
        Err(e) => {
            eprintln!("serve: throng: {e}");
            return ExitCode::FAILURE;
        }
    };
    let wanted = match backend {
        BackendChoice::Uring => Some("uring"),
        BackendChoice::Epoll => Some("epoll"),
        BackendChoice::Auto => None,
    };
    if wanted.is_some_and(|w| w != server.backend().name()) {
        eprintln!(
            "serve: throng runs {} instead of the {backend:?} asked for (THRONG_BACKEND set?)",
            server.backend().name()
        );
        return ExitCode::FAILURE;
    }
    super::announce(server.local_addr());
    // The harness ends this process with SIGKILL; nothing to clean up.
    loop {
        std::thread::park();
    }
}
