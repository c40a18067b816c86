//! Starting, reaching and stopping a server: one pinned worker thread per core, each with
//! its own `SO_REUSEPORT` listener, backend, connections and mailbox.

use std::io;
use std::net::SocketAddr;
use std::sync::mpsc;
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;

use bytes::Bytes;
use throng_protocol::CloseCode;

use crate::config::{BackendChoice, BackendKind, Config};
use crate::core::{Peers, encode_frame};
use crate::handler::Handler;
use crate::mailbox::{Command, Connections, Inbox, Mailbox, Peer, Published, Wakeup};
use crate::sys::{self, Backend};
use crate::worker::{self, WorkerReport};
use crate::ws::ConnId;

/// How a graceful shutdown went.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Connections open when shutdown began (all workers).
    pub connections: usize,
    /// Of those, closed with a completed close handshake.
    pub closed_cleanly: usize,
    /// Of those, cut at the deadline.
    pub forced: usize,
    /// Counters summed over the workers.
    pub stats: crate::WorkerStats,
}

/// A handle to a running server, usable from any thread (`Send + Sync`, cheap to clone).
pub struct ServerHandle<H: Handler> {
    mailboxes: Arc<Vec<Mailbox<H>>>,
    peers: Peers,
}

impl<H: Handler> Clone for ServerHandle<H> {
    fn clone(&self) -> Self {
        ServerHandle {
            mailboxes: self.mailboxes.clone(),
            peers: self.peers.clone(),
        }
    }
}

/// Waits for the counts of a publish made through [`ServerHandle::publish`].
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
    pub fn send(&self, id: ConnId, text: bool, payload: Bytes) -> bool {
        self.mailbox(id.worker as usize)
            .is_some_and(|m| m.post(Command::Send { id, text, payload }))
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
    /// encoded once here and shared by all workers and subscribers. The ticket tells how
    /// many subscribers it reached and how many refused it (backpressure).
    pub fn publish(&self, topic: &str, text: bool, payload: &[u8]) -> PublishTicket {
        let frame = encode_frame(text, payload);
        let topic: Arc<str> = topic.into();
        let (tx, replies) = mpsc::channel();
        let mut workers = 0;
        for peer in self.peers.get().map(|p| &p[..]).unwrap_or(&[]) {
            let p = crate::mailbox::Publish {
                topic: topic.clone(),
                frame: frame.clone(),
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

    /// Begins a graceful shutdown without waiting (see [`Server::shutdown`]).
    pub fn shutdown(&self) {
        for m in self.mailboxes.iter() {
            m.post(Command::Shutdown);
        }
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
    backend: BackendKind,
    backend_note: String,
}

impl<H: Handler> Server<H> {
    /// Binds the listeners and starts the workers. `factory(i)` builds worker `i`'s
    /// handler on that worker's thread.
    pub fn start<F>(config: Config, factory: F) -> io::Result<Server<H>>
    where
        F: Fn(usize) -> H + Send + Sync + 'static,
    {
        let (backend, note) = choose_backend(&config)?;
        let mut server = match backend {
            BackendKind::Epoll => start_with::<H, sys::epoll::Epoll, F>(config, factory)?,
            BackendKind::Uring => start_with::<H, sys::uring::Uring, F>(config, factory)?,
        };
        server.backend_note = note;
        Ok(server)
    }

    /// Which backend runs and why (the probe's verdict when io_uring was not chosen).
    pub fn backend_note(&self) -> &str {
        &self.backend_note
    }

    /// The address the listeners are bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
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
    pub fn shutdown(mut self) -> io::Result<ShutdownReport> {
        self.handle.shutdown();
        self.join()
    }

    /// Waits until the workers exit (after someone calls [`ServerHandle::shutdown`]).
    pub fn wait(mut self) -> io::Result<ShutdownReport> {
        self.join()
    }

    fn join(&mut self) -> io::Result<ShutdownReport> {
        let mut report = ShutdownReport::default();
        let mut first_error = None;
        for t in self.threads.drain(..) {
            match t.join() {
                Ok(Ok(r)) => {
                    report.connections += r.at_shutdown;
                    report.closed_cleanly += r.closed_cleanly;
                    report.forced += r.forced;
                    add_stats(&mut report.stats, &r.stats);
                }
                Ok(Err(e)) => {
                    first_error.get_or_insert(e);
                }
                Err(_) => {
                    first_error.get_or_insert(io::Error::other("worker panicked"));
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(report),
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

fn add_stats(sum: &mut crate::WorkerStats, s: &crate::WorkerStats) {
    sum.accepted += s.accepted;
    sum.refused_full += s.refused_full;
    sum.opened += s.opened;
    sum.closed_cleanly += s.closed_cleanly;
    sum.closed_abnormally += s.closed_abnormally;
    sum.timed_out += s.timed_out;
    sum.dropped += s.dropped;
    sum.recv_enobufs += s.recv_enobufs;
}

/// The configured backend, overridden by `THRONG_BACKEND`, and why it was chosen.
/// `Auto` runs io_uring when the probe passes and says why not otherwise (also on
/// stderr: an operator should know the engine runs on its fallback); a forced `Uring`
/// fails loudly instead of falling back.
fn choose_backend(config: &Config) -> io::Result<(BackendKind, String)> {
    let (choice, from) = match std::env::var("THRONG_BACKEND") {
        Ok(v) => (
            v.parse::<BackendChoice>()
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?,
            "THRONG_BACKEND",
        ),
        Err(_) => (config.backend, "config"),
    };
    let probe = sys::uring::probe::probe();
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
        (BackendChoice::Uring, Err(why)) => Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("{from} asks for io_uring, which cannot run here: {why}"),
        )),
        (BackendChoice::Auto, Err(why)) => {
            eprintln!("throng: io_uring unavailable ({why}); running on epoll");
            Ok((
                BackendKind::Epoll,
                format!("epoll (io_uring unavailable: {why})"),
            ))
        }
    }
}

fn start_with<H, B, F>(config: Config, factory: F) -> io::Result<Server<H>>
where
    H: Handler,
    B: Backend,
    F: Fn(usize) -> H + Send + Sync + 'static,
{
    let workers = config.workers.max(1);
    let first = sys::socket::listener(config.addr, config.backlog)?;
    let local_addr = sys::socket::local_addr(first)?;
    let mut listeners = vec![first];
    for _ in 1..workers {
        match sys::socket::listener(local_addr, config.backlog) {
            Ok(fd) => listeners.push(fd),
            Err(e) => {
                listeners.iter().for_each(|&fd| sys::close(fd));
                return Err(e);
            }
        }
    }
    let cpus = sys::socket::allowed_cpus();
    let config = Arc::new(config);
    let factory = Arc::new(factory);
    let peers: Peers = Arc::new(OnceLock::new());
    let mut mailboxes = Vec::with_capacity(workers);
    let mut peer_list = Vec::with_capacity(workers);
    let mut threads = Vec::with_capacity(workers);
    let mut listeners = listeners.into_iter();
    for i in 0..workers {
        let listener = listeners.next().expect("one listener per worker");
        let (command_tx, commands) = mpsc::channel();
        let (publish_tx, publishes) = mpsc::channel();
        let (ready_tx, ready_rx) = mpsc::sync_channel::<io::Result<Arc<Wakeup>>>(1);
        let config = config.clone();
        let factory = factory.clone();
        let worker_peers = peers.clone();
        let cpu = (config.pin && !cpus.is_empty()).then(|| cpus[i % cpus.len()]);
        let spawned = std::thread::Builder::new()
            .name(format!("throng-{i}"))
            .spawn(move || {
                if let Some(cpu) = cpu {
                    let _ = sys::socket::pin_current_thread(cpu);
                }
                let (backend, wakeup) = match B::new(listener, config.recv_buffer)
                    .and_then(|b| b.waker().map(|w| (b, w)))
                {
                    Ok((b, w)) => (b, Arc::new(Wakeup::new(Box::new(w)))),
                    Err(e) => {
                        let err = io::Error::new(
                            e.kind(),
                            format!("{} backend setup failed: {e}", B::KIND.name()),
                        );
                        let _ = ready_tx.send(Err(e));
                        sys::close(listener);
                        return Err(err);
                    }
                };
                let _ = ready_tx.send(Ok(wakeup.clone()));
                let inbox = Inbox {
                    commands,
                    publishes,
                    wakeup,
                };
                let handler = factory(i);
                worker::run(
                    backend,
                    listener,
                    handler,
                    &config,
                    inbox,
                    i as u16,
                    worker_peers,
                )
            });
        let ready = spawned.and_then(|thread| {
            threads.push(thread);
            ready_rx
                .recv()
                .map_err(|_| io::Error::other("worker exited during start"))?
        });
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
                // Stop the workers already running, and release the unused listeners.
                let mut partial = Server {
                    handle: ServerHandle {
                        mailboxes: Arc::new(mailboxes),
                        peers,
                    },
                    threads,
                    local_addr,
                    backend: B::KIND,
                    backend_note: String::new(),
                };
                listeners.for_each(sys::close);
                partial.handle.shutdown();
                let _ = partial.join();
                return Err(e);
            }
        }
    }
    let _ = peers.set(peer_list.into_boxed_slice());
    Ok(Server {
        handle: ServerHandle {
            mailboxes: Arc::new(mailboxes),
            peers,
        },
        threads,
        local_addr,
        backend: B::KIND,
        backend_note: String::new(),
    })
}
