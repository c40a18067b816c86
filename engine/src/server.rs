//! Starting, reaching and stopping a server: one pinned worker thread per core, each with
//! its own `SO_REUSEPORT` listener, backend, connections and mailbox.

use std::io;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;

use bytes::Bytes;
use throng_protocol::{CloseCode, DataKind};

use crate::config::{BackendChoice, BackendKind, Config};
use crate::connections::Connections;
use crate::core::{Peers, encode_frame};
use crate::error::Error;
use crate::handler::Handler;
use crate::mailbox::{Command, Inbox, Mailbox, Peer, Published, Wakeup};
use crate::sys::{self, Backend};
use crate::worker::{self, WorkerReport};
use crate::ws::ConnId;

/// How a graceful shutdown went. Every connection open when it began is in exactly one of
/// `closed_cleanly`, `closed_uncleanly` and `forced`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// Connections open when shutdown began (all workers).
    pub connections: usize,
    /// Of those, closed with a completed close handshake.
    pub closed_cleanly: usize,
    /// Of those, ended before the deadline without a completed close handshake: the peer
    /// never answered the 1001 (the close timer ended it), reset the connection, or was
    /// still in its opening handshake.
    pub closed_uncleanly: usize,
    /// Of those, still open at the deadline and cut then.
    pub forced: usize,
    /// Counters summed over the workers.
    pub stats: crate::WorkerStats,
}

/// A handle to a running server, usable from any thread (`Send + Sync`, cheap to clone).
pub struct ServerHandle<H: Handler> {
    mailboxes: Arc<Vec<Mailbox<H>>>,
    peers: Peers,
    /// Per worker: false once its thread has exited (normally or by a panic).
    alive: Arc<[AtomicBool]>,
}

impl<H: Handler> Clone for ServerHandle<H> {
    fn clone(&self) -> Self {
        ServerHandle {
            mailboxes: self.mailboxes.clone(),
            peers: self.peers.clone(),
            alive: self.alive.clone(),
        }
    }
}

impl<H: Handler> std::fmt::Debug for ServerHandle<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerHandle")
            .field("workers", &self.workers())
            .field("live_workers", &self.live_workers())
            .finish()
    }
}

/// Waits for the counts of a publish made through [`ServerHandle::publish`].
#[derive(Debug)]
pub struct PublishTicket {
    replies: mpsc::Receiver<Published>,
    workers: usize,
}

impl PublishTicket {
    /// Sums every worker's counts, waiting up to `timeout` in all; workers that did not
    /// answer in time are left out (and `None` is returned if none did).
    pub fn wait(self, timeout: std::time::Duration) -> Option<Published> {
        let deadline = std::time::Instant::now() + timeout;
        let mut total = Published::default();
        let mut answered = 0;
        while answered < self.workers {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.replies.recv_timeout(left) {
                Ok(p) => {
                    total += p;
                    answered += 1;
                }
                Err(_) => break,
            }
        }
        (answered > 0).then_some(total)
    }
}

impl<H: Handler> ServerHandle<H> {
    /// Number of workers.
    pub fn workers(&self) -> usize {
        self.mailboxes.len()
    }

    /// Sends a message to a connection on any worker. False when the worker has exited;
    /// whether the connection still exists is known only on its worker (use [`post`](Self::post)
    /// to learn the outcome).
    pub fn send(&self, id: ConnId, kind: DataKind, payload: Bytes) -> bool {
        self.mailbox(id.worker as usize)
            .is_some_and(|m| m.post(Command::Send { id, kind, payload }))
    }

    /// Starts the close handshake of a connection on any worker.
    pub fn close(&self, id: ConnId, code: CloseCode, reason: &str) -> bool {
        let reason = reason.to_owned();
        self.mailbox(id.worker as usize)
            .is_some_and(|m| m.post(Command::Close { id, code, reason }))
    }

    /// Runs `job` on worker `worker`'s thread with its handler and connections.
    pub fn post<F>(&self, worker: usize, job: F) -> bool
    where
        F: FnOnce(&mut H, &mut Connections<'_, H::State>) + Send + 'static,
    {
        self.mailbox(worker)
            .is_some_and(|m| m.post(Command::Run(Box::new(job))))
    }

    /// Publishes a message to every subscriber of `topic` on every worker. The frame is
    /// encoded once here and shared by all workers and subscribers; each worker with
    /// permessage-deflate subscribers compresses it once for them. The ticket tells how
    /// many subscribers it reached and how many refused it (backpressure).
    pub fn publish(&self, topic: &str, kind: DataKind, payload: &[u8]) -> PublishTicket {
        let frame = encode_frame(kind, payload);
        let topic: Arc<str> = topic.into();
        let (tx, replies) = mpsc::channel();
        let mut workers = 0;
        for peer in self.peers.workers.get().map(|p| &p[..]).unwrap_or(&[]) {
            let p = crate::mailbox::Publish {
                topic: topic.clone(),
                frame: frame.clone(),
                deflated: None,
                reply: Some(tx.clone()),
            };
            workers += usize::from(peer.post(p));
        }
        PublishTicket { replies, workers }
    }

    /// Installs `watcher` on every worker (replacing any earlier one): in mailbox order, so
    /// nothing is missed, each worker reports the topics it has now as
    /// [`TopicEvent::Gained`](crate::TopicEvent), then calls it whenever a topic gains its
    /// first or loses its last subscriber there. Returns how many workers took it.
    pub fn watch_topics(&self, watcher: crate::TopicWatcher) -> usize {
        self.set_watch(Some(watcher))
    }

    /// Removes the watcher from every worker.
    pub fn unwatch_topics(&self) -> usize {
        self.set_watch(None)
    }

    fn set_watch(&self, watcher: Option<crate::TopicWatcher>) -> usize {
        let mut taken = 0;
        for w in 0..self.workers() {
            let watch = watcher.clone().map(|f| crate::interest::Watch::new(w, f));
            taken += usize::from(self.post(w, move |_, conns| conns.core.topics.set_watch(watch)));
        }
        taken
    }

    /// A snapshot of every worker's counters and gauges, asked through the mailboxes
    /// (each worker answers between two turns; none is blocked). Waits up to `timeout`;
    /// a worker that did not answer by then is missing from [`Metrics::workers`]. Call it
    /// from a thread that is not a worker (from a handler callback the own worker cannot
    /// answer until the callback returns, so it would be missing).
    pub fn metrics(&self, timeout: std::time::Duration) -> crate::Metrics {
        crate::metrics::collect(&self.peers, timeout)
    }

    /// Swaps the TLS certificates (a config from [`TlsConfig`](crate::TlsConfig)'s
    /// builders, e.g. re-read from the renewed PEM files): each worker takes the new one
    /// through its mailbox, in order with its other mail. Handshakes after that use it;
    /// open connections keep the session they have. Returns how many workers took it
    /// (a server started without TLS ignores it: it has no TLS listener).
    pub fn reload_tls(&self, tls: crate::TlsConfig) -> usize {
        let mut taken = 0;
        for w in 0..self.workers() {
            let config = tls.rustls().clone();
            taken += usize::from(self.post(w, move |_, conns| conns.core.set_tls_config(config)));
        }
        taken
    }

    /// Begins a graceful shutdown without waiting (see [`Server::shutdown`]).
    pub fn shutdown(&self) {
        for m in self.mailboxes.iter() {
            m.post(Command::Shutdown);
        }
    }

    /// Workers whose thread is still running. Fewer than [`workers`](Self::workers)
    /// only during shutdown, or after a worker died of a panic (an engine bug; it is
    /// reported on stderr and by [`Server::wait`]).
    pub fn live_workers(&self) -> usize {
        self.alive
            .iter()
            .filter(|a| a.load(Ordering::Relaxed))
            .count()
    }

    fn mailbox(&self, worker: usize) -> Option<&Mailbox<H>> {
        self.mailboxes.get(worker)
    }
}

/// A running server.
pub struct Server<H: Handler> {
    handle: ServerHandle<H>,
    threads: Vec<JoinHandle<io::Result<WorkerReport>>>,
    local_addr: SocketAddr,
    /// Where the plain listener beside the main one is bound ([`Config::plain_addr`]).
    plain_addr: Option<SocketAddr>,
    backend: BackendKind,
    backend_note: String,
    /// The admin listener, when metrics are served on an address of their own.
    admin: Option<crate::metrics::admin::Admin>,
}

impl<H: Handler> std::fmt::Debug for Server<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("local_addr", &self.local_addr)
            .field("backend", &self.backend)
            .field("workers", &self.workers())
            .finish()
    }
}

impl<H: Handler> Server<H> {
    /// Checks the config ([`Config::validate`]), binds the listeners and starts the
    /// workers. `factory(i)` builds worker `i`'s handler on that worker's thread.
    pub fn start<F>(config: Config, factory: F) -> Result<Server<H>, Error>
    where
        F: Fn(usize) -> H + Send + Sync + 'static,
    {
        config.validate()?;
        let (backend, note) = choose_backend(&config)?;
        let admin = match config.metrics {
            crate::MetricsEndpoint::Admin(addr) => Some(addr),
            _ => None,
        };
        let mut server = match backend {
            BackendKind::Epoll => start_with::<H, sys::epoll::Epoll, F>(config, factory, note)?,
            BackendKind::Uring => start_with::<H, sys::uring::Uring, F>(config, factory, note)?,
        };
        if let Some(addr) = admin {
            let admin = crate::metrics::admin::Admin::start(addr, server.handle.peers.clone())
                .map_err(|source| Error::Bind { addr, source })?;
            server.admin = Some(admin);
        }
        Ok(server)
    }

    /// The address `/metrics` and `/healthz` are served on when
    /// [`Config::metrics`] is [`MetricsEndpoint::Admin`](crate::MetricsEndpoint::Admin).
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().map(|a| a.local_addr())
    }

    /// A metrics snapshot (see [`ServerHandle::metrics`]).
    pub fn metrics(&self, timeout: std::time::Duration) -> crate::Metrics {
        self.handle.metrics(timeout)
    }

    /// Which backend runs and why (the probe's verdict when io_uring was not chosen).
    pub fn backend_note(&self) -> &str {
        &self.backend_note
    }

    /// The address the listeners are bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address the plain listener is bound to, when [`Config::plain_addr`] is set.
    pub fn plain_addr(&self) -> Option<SocketAddr> {
        self.plain_addr
    }

    /// The backend the workers run.
    pub fn backend(&self) -> BackendKind {
        self.backend
    }

    /// Number of workers.
    pub fn workers(&self) -> usize {
        self.handle.workers()
    }

    /// A handle for other threads.
    pub fn handle(&self) -> ServerHandle<H> {
        self.handle.clone()
    }

    /// Graceful shutdown: stop accepting, send close 1001 to every connection, wait for
    /// the peers' answers up to the configured deadline, join the workers.
    pub fn shutdown(mut self) -> Result<ShutdownReport, Error> {
        self.handle.shutdown();
        self.join()
    }

    /// Waits until the workers exit (after someone calls [`ServerHandle::shutdown`]).
    pub fn wait(mut self) -> Result<ShutdownReport, Error> {
        self.join()
    }

    fn join(&mut self) -> Result<ShutdownReport, Error> {
        if let Some(mut admin) = self.admin.take() {
            admin.stop();
        }
        let mut report = ShutdownReport::default();
        let mut first_error = None;
        for (worker, t) in self.threads.drain(..).enumerate() {
            match t.join() {
                Ok(Ok(r)) => {
                    report.connections += r.at_shutdown;
                    report.closed_cleanly += r.closed_cleanly;
                    report.closed_uncleanly += r.closed_uncleanly;
                    report.forced += r.forced;
                    report.stats += r.stats;
                }
                Ok(Err(source)) => {
                    first_error.get_or_insert(Error::Worker { worker, source });
                }
                Err(panic) => {
                    let message = panic_message(&panic);
                    first_error.get_or_insert(Error::WorkerPanicked { worker, message });
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(report),
        }
    }
}

/// The text of a panic payload, when it has one.
fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    match (panic.downcast_ref::<&str>(), panic.downcast_ref::<String>()) {
        (Some(s), _) => (*s).to_owned(),
        (_, Some(s)) => s.clone(),
        _ => "(no message)".to_owned(),
    }
}

/// Marks a worker dead when its thread ends, and says so on stderr if it ended by a panic.
struct Alive {
    alive: Arc<[AtomicBool]>,
    worker: usize,
}

impl Drop for Alive {
    fn drop(&mut self) {
        self.alive[self.worker].store(false, Ordering::Relaxed);
        if std::thread::panicking() {
            eprintln!(
                "throng: worker {} died of a panic (an engine bug); its connections were \
                 closed and its listener left the port; the other workers go on",
                self.worker
            );
        }
    }
}

impl<H: Handler> Drop for Server<H> {
    fn drop(&mut self) {
        if !self.threads.is_empty() {
            self.handle.shutdown();
            let _ = self.join();
        }
    }
}

/// The configured backend, overridden by `THRONG_BACKEND`, and why it was chosen.
/// `Auto` runs io_uring when the probe passes and says why not otherwise (also on
/// stderr: an operator should know the engine runs on its fallback); a forced `Uring`
/// fails loudly instead of falling back.
fn choose_backend(config: &Config) -> Result<(BackendKind, String), Error> {
    let (choice, from) = match std::env::var("THRONG_BACKEND") {
        Ok(v) => (
            v.parse::<BackendChoice>()
                .map_err(|_| Error::BadBackendVariable { value: v.clone() })?,
            "THRONG_BACKEND",
        ),
        Err(_) => (config.backend, "config"),
    };
    let probe = sys::uring::probe::probe();
    let chosen = choose(choice, from, probe);
    match &chosen {
        Ok((kind, note)) => tracing::info!(backend = kind.name(), note = %note, "backend chosen"),
        Err(e) => tracing::warn!(error = %e, "no backend"),
    }
    chosen
}

fn choose(
    choice: BackendChoice,
    from: &str,
    probe: Result<sys::uring::probe::Features, String>,
) -> Result<(BackendKind, String), Error> {
    match (choice, probe) {
        (BackendChoice::Epoll, _) => Ok((BackendKind::Epoll, format!("epoll (asked by {from})"))),
        (BackendChoice::Uring | BackendChoice::Auto, Ok(f)) => {
            let buffers = if f.incremental_buffers {
                "incremental provided buffers"
            } else {
                "whole provided buffers"
            };
            Ok((
                BackendKind::Uring,
                format!("io_uring (probe passed; {buffers})"),
            ))
        }
        (BackendChoice::Uring, Err(why)) => Err(Error::BackendUnavailable {
            reason: format!("{from} asks for io_uring: {why}"),
        }),
        (BackendChoice::Auto, Err(why)) => {
            eprintln!("throng: io_uring unavailable ({why}); running on epoll");
            tracing::warn!(reason = %why, "io_uring unavailable; falling back to epoll");
            Ok((
                BackendKind::Epoll,
                format!("epoll (io_uring unavailable: {why})"),
            ))
        }
    }
}

fn start_with<H, B, F>(config: Config, factory: F, note: String) -> Result<Server<H>, Error>
where
    H: Handler,
    B: Backend,
    F: Fn(usize) -> H + Send + Sync + 'static,
{
    let workers = config.workers;
    let (listeners, local_addr) = crate::net::listeners(config.addr, config.backlog, workers)?;
    let (plain_listeners, plain_addr) = match config.plain_addr {
        Some(addr) => {
            let (l, a) = crate::net::listeners(addr, config.backlog, workers)?;
            (l, Some(a))
        }
        None => (Vec::new(), None),
    };
    let cpus = crate::cpu::allowed_cpus();
    let config = Arc::new(config);
    let factory = Arc::new(factory);
    let peers: Peers = Arc::new(crate::core::Shared {
        backend: (B::KIND, note.clone()),
        workers: OnceLock::new(),
        per_ip: config.max_connections_per_ip.map(crate::core::PerIp::new),
    });
    let alive: Arc<[AtomicBool]> = (0..workers).map(|_| AtomicBool::new(true)).collect();
    let mut mailboxes = Vec::with_capacity(workers);
    let mut peer_list = Vec::with_capacity(workers);
    let mut threads = Vec::with_capacity(workers);
    let mut listeners = listeners.into_iter();
    let mut plain_listeners = plain_listeners.into_iter();
    for i in 0..workers {
        let listener: OwnedFd = listeners.next().expect("one listener per worker");
        // crate::sys::LISTENER_MAIN first, then the plain one.
        let listener: Vec<OwnedFd> = std::iter::once(listener)
            .chain(plain_listeners.next())
            .collect();
        let (command_tx, commands) = mpsc::channel();
        let (publish_tx, publishes) = mpsc::channel();
        let (ready_tx, ready_rx) = mpsc::sync_channel::<Result<Arc<Wakeup>, Error>>(1);
        let config = config.clone();
        let factory = factory.clone();
        let worker_peers = peers.clone();
        let guard = Alive {
            alive: alive.clone(),
            worker: i,
        };
        let cpu = (config.pin && !cpus.is_empty()).then(|| cpus[i % cpus.len()]);
        let spawned = std::thread::Builder::new()
            .name(format!("throng-{i}"))
            .spawn(move || {
                let _guard = guard;
                if let Some(cpu) = cpu {
                    let _ = crate::cpu::pin_current_thread(cpu);
                }
                let (backend, wakeup) =
                    match B::new(listener, &config).and_then(|b| b.waker().map(|w| (b, w))) {
                        Ok((b, w)) => (b, Arc::new(Wakeup::new(Box::new(w)))),
                        Err(source) => {
                            let kind = source.kind();
                            let _ = ready_tx.send(Err(Error::BackendSetup {
                                backend: B::KIND,
                                source,
                            }));
                            return Err(io::Error::new(kind, "backend setup failed"));
                        }
                    };
                let _ = ready_tx.send(Ok(wakeup.clone()));
                let inbox = Inbox {
                    commands,
                    publishes,
                    wakeup,
                };
                let handler = factory(i);
                worker::run(backend, handler, &config, inbox, i as u16, worker_peers)
            });
        let ready = match spawned {
            Ok(thread) => {
                threads.push(thread);
                ready_rx.recv().unwrap_or_else(|_| {
                    Err(Error::WorkerPanicked {
                        worker: i,
                        message: "the worker exited during start".into(),
                    })
                })
            }
            Err(e) => Err(Error::Spawn(e)),
        };
        match ready {
            Ok(wakeup) => {
                mailboxes.push(Mailbox {
                    tx: command_tx,
                    wakeup: wakeup.clone(),
                });
                peer_list.push(Peer {
                    tx: publish_tx,
                    wakeup,
                });
            }
            Err(e) => {
                // Stop the workers already running; the unused listeners close as dropped.
                let mut partial = Server {
                    handle: ServerHandle {
                        mailboxes: Arc::new(mailboxes),
                        peers,
                        alive,
                    },
                    threads,
                    local_addr,
                    plain_addr,
                    backend: B::KIND,
                    backend_note: note,
                    admin: None,
                };
                partial.handle.shutdown();
                let _ = partial.join();
                return Err(e);
            }
        }
    }
    let _ = peers.workers.set(peer_list.into_boxed_slice());
    Ok(Server {
        handle: ServerHandle {
            mailboxes: Arc::new(mailboxes),
            peers,
            alive,
        },
        threads,
        local_addr,
        plain_addr,
        backend: B::KIND,
        backend_note: note,
        admin: None,
    })
}
