//! Cross-node fan-out in one run, on this machine: three throng nodes joined through
//! Redis, against the pattern users write today (Node `ws` + the `redis` npm client, one
//! process per node: `benches/node/baseline.js`), and against one throng node with three
//! workers and no Redis (what the Redis hop costs), and against a floor: that node with each
//! publish written to every subscriber's socket by a bare `send` loop on each worker, no
//! engine in between (what any server's delivery costs on this host; latency only).
//!
//! ```text
//! (cd cluster/benches/node && npm install)        # ws + redis for the baseline
//! flock /tmp/throng-cpu.lock cargo bench -p throng-cluster --bench fanout [-- --subs 1000 --seconds 8]
//! ```
//! Each system: 1,000 subscribers per node (3,000), one publisher connection per node,
//! 64-byte binary messages carrying their send time. Two phases:
//! - **throughput**: closed loop, at most `--window` messages in flight across the
//!   system (a message is in flight until all its deliveries arrived); delivered
//!   messages per second;
//! - **latency**: a fixed publish rate, the same for every system (a quarter of what the
//!   Node baseline sustained in its throughput phase, so no system is saturated), the
//!   publishers' sends spread evenly over each interval rather than sent together;
//!   publish-to-delivery p50/p99 over all deliveries and over cross-node ones only.
//!
//! Nodes are separate processes (this binary re-run as `node ...`, and `node
//! baseline.js`), each with one worker thread, unpinned; the load runs on three threads
//! of this process; everything shares the machine's CPUs.

use std::io::{self, BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier, OnceLock};
use std::time::{Duration, Instant};

use throng_cluster::{Cluster, Options, Publisher};
use throng_engine::{
    BackendChoice, Config, Decision, Handler, Message, Server, ServerHandle, UpgradeRequest,
    WebSocket,
};
use throng_load::fleet::{Conn, Driver, Fleet, Msg};
use throng_load::frame;
use throng_load::hist::Histogram;
use throng_load::sys::monotonic_ns;

const TOPIC: &str = "bench";
const SIZE: usize = 64;
const SUB: u16 = 1;
const PUB: u16 = 2;

// ---- the throng node process ---------------------------------------------------------

struct BenchNode {
    cluster: Arc<OnceLock<Publisher>>,
    /// The floor node: a publish is written to every subscriber's socket by a bare loop
    /// on each worker (posted to each as a job, as the engine's own publish is mailed).
    floor: Arc<OnceLock<ServerHandle<BenchNode>>>,
}

impl Handler for BenchNode {
    /// Whether the connection publishes.
    type State = bool;

    fn on_upgrade<'r>(&mut self, req: &UpgradeRequest<'r>) -> Decision<'r, bool> {
        Decision::accept(req.path() == "/pub")
    }

    fn on_open(&mut self, ws: &mut WebSocket<'_, bool>) {
        if !*ws.state() {
            ws.subscribe(TOPIC);
        }
    }

    fn on_message(&mut self, ws: &mut WebSocket<'_, bool>, message: Message<'_>) {
        if !*ws.state() {
            return;
        }
        if let Some(handle) = self.floor.get() {
            let frame: Arc<[u8]> = binary_frame(message.as_bytes()).into();
            for w in 0..handle.workers() {
                let frame = frame.clone();
                handle.post(w, move |_, conns| write_to_subscribers(conns, &frame));
            }
            return;
        }
        match self.cluster.get() {
            Some(c) => {
                c.publish(TOPIC, message);
            }
            // One node, no cluster: the engine's publish to every worker.
            None => {
                ws.publish(TOPIC, message);
            }
        }
    }
}

/// An unmasked, final binary frame of a short payload (the benchmark's 64 bytes).
fn binary_frame(payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() <= 125, "floor frames are short");
    let mut f = vec![0x82, payload.len() as u8];
    f.extend_from_slice(payload);
    f
}

/// The floor's delivery: `frame` written to each subscriber's socket with one `send`, no
/// engine in between (a socket that does not take it whole loses it; idle ones do).
fn write_to_subscribers(conns: &mut throng_engine::Connections<'_, bool>, frame: &[u8]) {
    for id in conns.ids() {
        let Some(fd) = conns
            .get(id)
            .and_then(|mut ws| (!*ws.state()).then(|| ws.raw_fd()))
        else {
            continue;
        };
        // SAFETY: `frame` is valid for reads of its length for the call; `fd` is an open
        // socket of this worker (the job runs on the worker's thread, between its turns).
        let _ = unsafe {
            libc::send(
                fd,
                frame.as_ptr().cast(),
                frame.len(),
                libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
            )
        };
    }
}

/// `node PORT WORKERS BACKEND [REDIS_URL | floor]`: serves until stdin closes.
fn node(args: &[String]) -> ExitCode {
    let port: u16 = args[0].parse().expect("port");
    let workers: usize = args[1].parse().expect("workers");
    let backend: BackendChoice = args[2].parse().expect("backend");
    let floor_mode = args.get(3).map(String::as_str) == Some("floor");
    let slot: Arc<OnceLock<Publisher>> = Arc::default();
    let handlers = slot.clone();
    let floor: Arc<OnceLock<ServerHandle<BenchNode>>> = Arc::default();
    let floor_handlers = floor.clone();
    let config = Config::new(SocketAddr::from(([127, 0, 0, 1], port)))
        .with_workers(workers)
        .with_pinning(false)
        .with_backend(backend);
    let server = Server::start(config, move |_| BenchNode {
        cluster: handlers.clone(),
        floor: floor_handlers.clone(),
    })
    .expect("node starts");
    if floor_mode {
        let _ = floor.set(server.handle());
    }
    let cluster = args
        .get(3)
        .filter(|_| !floor_mode)
        .map(|url| Cluster::join(url, &server.handle(), Options::default()).expect("joins"));
    if let Some(c) = &cluster {
        let _ = slot.set(c.publisher());
    }
    println!("ready");
    // The parent closes our stdin (or dies) to stop us.
    let mut line = String::new();
    let _ = io::stdin().read_line(&mut line);
    if let Some(c) = cluster {
        let s = c.leave();
        eprintln!(
            "node {port}: published {} sent {} received {} own {} dropped {}",
            s.published, s.sent, s.received, s.own, s.dropped
        );
    }
    let _ = server.shutdown();
    ExitCode::SUCCESS
}

// ---- processes -------------------------------------------------------------------------

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A child that printed "ready"; stopped (stdin closed, then killed) when dropped.
struct Proc(Child);

impl Proc {
    fn start(mut cmd: Command, what: &str) -> Proc {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        let out = child.stdout.take().expect("piped");
        let mut line = String::new();
        BufReader::new(out)
            .read_line(&mut line)
            .expect("child output");
        assert_eq!(line.trim(), "ready", "{what} starts");
        Proc(child)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        drop(self.0.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Redis {
    port: u16,
    child: Child,
}

impl Redis {
    fn start() -> Redis {
        let port = free_port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--loglevel", "warning"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server (apt-get install -y redis-server)");
        let r = Redis { port, child };
        let end = Instant::now() + Duration::from_secs(10);
        while r.numsub("x").is_none() {
            assert!(Instant::now() < end, "redis-server answers");
            std::thread::sleep(Duration::from_millis(20));
        }
        r
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// PUBSUB NUMSUB of a channel.
    fn numsub(&self, channel: &str) -> Option<i64> {
        use std::io::{Read, Write};
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        let cmd = format!(
            "*3\r\n$6\r\nPUBSUB\r\n$6\r\nNUMSUB\r\n${}\r\n{channel}\r\n",
            channel.len()
        );
        s.write_all(cmd.as_bytes()).ok()?;
        let mut buf = [0u8; 256];
        let n = s.read(&mut buf).ok()?;
        let text = std::str::from_utf8(&buf[..n]).ok()?;
        text.trim_end().rsplit(':').next()?.parse().ok()
    }

    fn await_subscribers(&self, channel: &str, n: i64) {
        let end = Instant::now() + Duration::from_secs(20);
        while self.numsub(channel) != Some(n) {
            assert!(Instant::now() < end, "{n} subscribers of {channel}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---- load --------------------------------------------------------------------------------

#[derive(Clone, Copy)]
struct Plan {
    subs: usize,
    window: u64,
    warmup: Duration,
    /// Throughput phase.
    measure: Duration,
    /// Latency phase.
    lat_measure: Duration,
    /// Publishes per second across the system in the latency phase (0: skip the phase).
    rate: f64,
}

/// What one system did.
#[derive(Debug, Default, Clone)]
struct Figures {
    delivered: u64,
    published: u64,
    seconds: f64,
    all: Histogram,
    cross: Histogram,
    bad: u64,
}

impl Figures {
    fn rate(&self) -> f64 {
        self.delivered as f64 / self.seconds.max(1e-9)
    }
    fn msgs(&self) -> f64 {
        self.published as f64 / self.seconds.max(1e-9)
    }
}

/// Counts shared by the load threads.
struct Shared {
    published: AtomicU64,
    delivered: AtomicU64,
    /// Load threads whose subscribers all got a probe.
    ready: AtomicU64,
    subs_total: u64,
}

struct Load {
    node: u32,
    recording: bool,
    delivered: u64,
    all: Histogram,
    cross: Histogram,
    bad: u64,
}

impl Driver for Load {
    fn message(&mut self, _: usize, conn: &mut Conn, m: Msg<'_>) {
        if conn.group != SUB {
            return;
        }
        if m.len != SIZE as u64 || m.prefix.len() < 12 {
            self.bad += 1;
            return;
        }
        self.delivered += 1;
        let sent = u64::from_le_bytes(m.prefix[..8].try_into().expect("8"));
        let from = u32::from_le_bytes(m.prefix[8..12].try_into().expect("4"));
        if self.recording && sent != 0 {
            let lat = monotonic_ns().saturating_sub(sent);
            self.all.record(lat);
            if from != self.node {
                self.cross.record(lat);
            }
        }
    }
}

fn message(node: u32, sent: u64) -> Vec<u8> {
    let mut p = vec![b'x'; SIZE];
    p[..8].copy_from_slice(&sent.to_le_bytes());
    p[8..12].copy_from_slice(&node.to_le_bytes());
    frame::masked_frame(frame::BINARY, &p)
}

/// Runs both phases against `targets` (one load thread each; thread i's subscribers
/// count as on node `nodes[i]`).
fn drive(targets: &[SocketAddr], nodes: &[u32], plan: Plan) -> io::Result<(Figures, Figures)> {
    let shared = Arc::new(Shared {
        published: AtomicU64::new(0),
        delivered: AtomicU64::new(0),
        ready: AtomicU64::new(0),
        subs_total: (plan.subs * targets.len()) as u64,
    });
    let ready = Arc::new(Barrier::new(targets.len()));
    let probed = Arc::new(Barrier::new(targets.len()));
    let t0: Arc<OnceLock<Instant>> = Arc::default();
    let threads: Vec<_> = targets
        .iter()
        .enumerate()
        .map(|(i, &addr)| {
            let (shared, ready, probed, t0) =
                (shared.clone(), ready.clone(), probed.clone(), t0.clone());
            let node = nodes[i];
            let n = targets.len();
            std::thread::spawn(move || -> io::Result<(Figures, Figures)> {
                let mut fleet = Fleet::new(addr)?.with_source_offset(i * 60);
                let subs = fleet.open("/sub", plan.subs, SUB, 64, Duration::from_secs(30))?;
                let publ = fleet
                    .open("/pub", 1, PUB, 1, Duration::from_secs(10))?
                    .start;
                let mut d = Load {
                    node,
                    recording: false,
                    delivered: 0,
                    all: Histogram::default(),
                    cross: Histogram::default(),
                    bad: 0,
                };
                ready.wait();
                // Probes from thread 0 until every subscriber got one: each node has
                // subscribed in Redis (throng subscribes when its first local subscriber
                // appears, so this cannot be checked before the clients are there).
                let end = Instant::now() + Duration::from_secs(20);
                let mut next_probe = Instant::now();
                let mut mine = false;
                while shared.ready.load(Ordering::Acquire) < n as u64 {
                    if !mine && fleet.conns[subs.clone()].iter().all(|c| c.received > 0) {
                        mine = true;
                        shared.ready.fetch_add(1, Ordering::AcqRel);
                    }
                    if i == 0 && Instant::now() >= next_probe {
                        fleet.conns[publ].send(&message(node, 0));
                        next_probe = Instant::now() + Duration::from_millis(50);
                    }
                    if Instant::now() > end {
                        return Err(io::Error::other("probe not delivered to every subscriber"));
                    }
                    fleet.turn(Some(Duration::from_millis(1)), &mut d)?;
                }
                // Let the last probes land, then count from zero.
                let settle = Instant::now() + Duration::from_millis(300);
                while Instant::now() < settle {
                    fleet.turn(Some(Duration::from_millis(1)), &mut d)?;
                }
                probed.wait();
                if i == 0 {
                    shared.published.store(0, Ordering::Relaxed);
                    shared.delivered.store(0, Ordering::Relaxed);
                }
                ready.wait();
                let start = *t0.get_or_init(|| Instant::now() + Duration::from_millis(50));
                let mut flushed = d.delivered;
                let (tp_start, tp_end) = (start + plan.warmup, start + plan.warmup + plan.measure);
                let drain_end = tp_end + Duration::from_millis(500);
                let lat_start = drain_end + Duration::from_millis(300);
                let lat_end = lat_start + plan.lat_measure;
                let interval = Duration::from_secs_f64(n as f64 / plan.rate.max(1e-9));
                // The load threads' publishes interleave evenly (thread i a fraction i/n
                // of the interval later): started together they would land in bursts of
                // n at once, and the latency measured would be that burst's queueing.
                let mut next_send =
                    lat_start - Duration::from_millis(300) + interval.mul_f64(i as f64 / n as f64);
                let mut tp = Figures::default();
                let mut lat = Figures::default();
                let (mut tp_mark, mut lat_mark) = (None, None);
                let mut my_published = 0u64;
                loop {
                    fleet.turn(Some(Duration::from_micros(200)), &mut d)?;
                    let now = Instant::now();
                    shared
                        .delivered
                        .fetch_add(d.delivered - flushed, Ordering::Relaxed);
                    flushed = d.delivered;
                    if now < tp_end {
                        // Closed loop: keep `window` messages in flight system-wide.
                        loop {
                            let p = shared.published.load(Ordering::Relaxed);
                            let done = shared.delivered.load(Ordering::Relaxed) / shared.subs_total;
                            if p.saturating_sub(done) >= plan.window {
                                break;
                            }
                            shared.published.fetch_add(1, Ordering::Relaxed);
                            my_published += 1;
                            fleet.conns[publ].send(&message(node, monotonic_ns()));
                        }
                    } else if plan.rate > 0.0 && now >= next_send && now < lat_end {
                        fleet.conns[publ].send(&message(node, monotonic_ns()));
                        my_published += 1;
                        next_send += interval;
                    }
                    if tp_mark.is_none() && now >= tp_start {
                        tp_mark = Some((now, d.delivered, my_published));
                    }
                    if tp.seconds == 0.0 && now >= tp_end {
                        let (t, del, publ) = tp_mark.expect("after start");
                        tp.seconds = (now - t).as_secs_f64();
                        tp.delivered = d.delivered - del;
                        tp.published = my_published - publ;
                    }
                    if lat_mark.is_none() && now >= lat_start {
                        d.recording = plan.rate > 0.0;
                        lat_mark = Some((now, d.delivered, my_published));
                    }
                    if now >= lat_end + Duration::from_millis(if plan.rate > 0.0 { 300 } else { 0 })
                    {
                        let (t, del, publ) = lat_mark.expect("after latency start");
                        lat.seconds = (now - t).as_secs_f64();
                        lat.delivered = d.delivered - del;
                        lat.published = my_published - publ;
                        lat.all = d.all.clone();
                        lat.cross = d.cross.clone();
                        tp.bad = d.bad;
                        if let Some(e) = fleet.first_error() {
                            return Err(io::Error::other(e));
                        }
                        return Ok((tp, lat));
                    }
                }
            })
        })
        .collect();
    let mut tp = Figures::default();
    let mut lat = Figures::default();
    for t in threads {
        let (a, b) = t
            .join()
            .map_err(|_| io::Error::other("load thread panicked"))??;
        tp.delivered += a.delivered;
        tp.published += a.published;
        tp.seconds = tp.seconds.max(a.seconds);
        tp.bad += a.bad;
        lat.delivered += b.delivered;
        lat.published += b.published;
        lat.seconds = lat.seconds.max(b.seconds);
        lat.all.merge(&b.all);
        lat.cross.merge(&b.cross);
    }
    Ok((tp, lat))
}

// ---- systems -----------------------------------------------------------------------------

fn exe() -> PathBuf {
    std::env::current_exe().expect("own path")
}

fn throng_nodes(
    redis: Option<&Redis>,
    count: usize,
    workers: usize,
    backend: &str,
) -> (Vec<Proc>, Vec<SocketAddr>) {
    throng_nodes_with(redis.map(Redis::url), count, workers, backend)
}

/// Like [`throng_nodes`], with the node's last argument given (a Redis URL or `floor`).
fn throng_nodes_with(
    last: Option<String>,
    count: usize,
    workers: usize,
    backend: &str,
) -> (Vec<Proc>, Vec<SocketAddr>) {
    (0..count)
        .map(|_| {
            let port = free_port();
            let mut cmd = Command::new(exe());
            cmd.args(["node", &port.to_string(), &workers.to_string(), backend]);
            if let Some(a) = &last {
                cmd.arg(a);
            }
            let p = Proc::start(cmd, "throng node");
            (p, SocketAddr::from(([127, 0, 0, 1], port)))
        })
        .unzip()
}

fn node_baseline(redis: &Redis, count: usize) -> (Vec<Proc>, Vec<SocketAddr>) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/node");
    assert!(
        dir.join("node_modules/ws").exists() && dir.join("node_modules/redis").exists(),
        "run `npm install` in {}",
        dir.display()
    );
    (0..count)
        .map(|_| {
            let port = free_port();
            let mut cmd = Command::new("node");
            cmd.arg(dir.join("baseline.js"))
                .arg(port.to_string())
                .arg(redis.url());
            let p = Proc::start(cmd, "node baseline");
            (p, SocketAddr::from(([127, 0, 0, 1], port)))
        })
        .unzip()
}

fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

fn row(name: &str, tp: &Figures, lat: &Figures) {
    println!(
        "{name:<28} {:>12.0} {:>9.0} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>7.0}",
        tp.rate(),
        tp.msgs(),
        ms(lat.all.quantile(0.5)),
        ms(lat.all.quantile(0.99)),
        ms(lat.cross.quantile(0.5)),
        ms(lat.cross.quantile(0.99)),
        lat.msgs(),
    );
    if tp.bad > 0 {
        println!("  ({} messages of the wrong size)", tp.bad);
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    if args.first().map(String::as_str) == Some("node") {
        return node(&args[1..]);
    }
    let mut plan = Plan {
        subs: 1000,
        window: 16,
        warmup: Duration::from_secs(2),
        measure: Duration::from_secs(8),
        lat_measure: Duration::from_secs(8),
        rate: 0.0,
    };
    let mut backend = String::from("epoll");
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let v = it.next().cloned().unwrap_or_default();
        match flag.as_str() {
            "--subs" => plan.subs = v.parse().expect("--subs N"),
            "--window" => plan.window = v.parse().expect("--window N"),
            "--seconds" => {
                plan.measure = Duration::from_secs(v.parse().expect("--seconds N"));
                plan.lat_measure = plan.measure;
            }
            "--backend" => backend = v,
            other => {
                eprintln!(
                    "usage: fanout [--subs N] [--window N] [--seconds N] [--backend epoll|uring]; unknown {other}"
                );
                return ExitCode::from(2);
            }
        }
    }
    throng_load::sys::raise_nofile();
    println!(
        "fan-out across 3 nodes, {} subscribers per node, {SIZE} B messages, window {}, {} s per phase, throng on {backend}",
        plan.subs,
        plan.window,
        plan.measure.as_secs()
    );
    let nodes3 = [0, 1, 2];

    // The baseline first: its throughput sets the latency phase's rate for everyone.
    let redis = Redis::start();
    let (procs, addrs) = node_baseline(&redis, 3);
    redis.await_subscribers("bench", 3);
    let tp_only = Plan {
        lat_measure: Duration::ZERO,
        ..plan
    };
    let (node_tp, _) = drive(&addrs, &nodes3, tp_only).expect("node baseline runs");
    plan.rate = (node_tp.msgs() / 4.0).max(10.0);
    let (_, node_lat) = drive_again(&addrs, &nodes3, plan, "node baseline");
    drop(procs);
    drop(redis);

    let redis = Redis::start();
    let (procs, addrs) = throng_nodes(Some(&redis), 3, 1, &backend);
    let (t_tp, t_lat) = drive(&addrs, &nodes3, plan).expect("throng cluster runs");
    drop(procs);
    drop(redis);

    let (procs, addrs) = throng_nodes(None, 1, 3, &backend);
    let one = [addrs[0]; 3];
    // One node: every subscriber is on it; "cross-node" stays empty.
    let (s_tp, s_lat) = drive(&one, &[0, 0, 0], plan).expect("single node runs");
    drop(procs);

    // The floor: the same node, each publish written to every subscriber by a bare
    // `send` loop on each worker instead of the engine's publish.
    let (procs, addrs) = throng_nodes_with(Some("floor".into()), 1, 3, &backend);
    let one = [addrs[0]; 3];
    let (f_tp, f_lat) = drive(&one, &[0, 0, 0], plan).expect("floor node runs");
    drop(procs);

    println!(
        "\n{:<28} {:>12} {:>9} {:>9} {:>9} {:>9} {:>9} {:>7}",
        "system", "delivered/s", "msgs/s", "p50 ms", "p99 ms", "p50 x ms", "p99 x ms", "lat m/s"
    );
    row("node ws + redis, 3 procs", &node_tp, &node_lat);
    row("throng-cluster, 3 nodes", &t_tp, &t_lat);
    row("throng, 1 node x 3 workers", &s_tp, &s_lat);
    // Its throughput phase is not a figure: a bare loop drops what a full socket does not
    // take (no backpressure), and a dropped delivery stalls the closed loop's window.
    let _ = f_tp;
    row("floor: 1 node, bare send loop", &Figures::default(), &f_lat);
    let rate_ratio = t_tp.rate() / node_tp.rate().max(1e-9);
    let p99_ratio = t_lat.all.quantile(0.99) as f64 / node_lat.all.quantile(0.99).max(1) as f64;
    println!(
        "\nthrong-cluster / node: delivered {rate_ratio:.2}x (target >= 3: {}), p99 {p99_ratio:.2}x (target <= 0.5: {})",
        if rate_ratio >= 3.0 { "met" } else { "missed" },
        if p99_ratio <= 0.5 { "met" } else { "missed" },
    );
    println!(
        "throng-cluster / one node: delivered {:.2}x, p50 {:.2}x, p99 {:.2}x (the cost of the Redis hop)",
        t_tp.rate() / s_tp.rate().max(1e-9),
        t_lat.all.quantile(0.5) as f64 / s_lat.all.quantile(0.5).max(1) as f64,
        t_lat.all.quantile(0.99) as f64 / s_lat.all.quantile(0.99).max(1) as f64,
    );
    println!(
        "floor / node: p99 {:.2}x (what any server's delivery costs on this host, against the 0.5x target)",
        f_lat.all.quantile(0.99) as f64 / node_lat.all.quantile(0.99).max(1) as f64,
    );
    println!(
        "latency phase: {:.0} publishes/s offered to every system (a quarter of the baseline's throughput)",
        plan.rate
    );
    ExitCode::SUCCESS
}

/// The latency phase for a system already measured (its throughput phase set the rate).
fn drive_again(addrs: &[SocketAddr], nodes: &[u32], plan: Plan, what: &str) -> (Figures, Figures) {
    // A short closed-loop phase first (not reported), then the paced one.
    let p = Plan {
        warmup: Duration::from_millis(200),
        measure: Duration::from_secs(1),
        window: 1,
        ..plan
    };
    drive(addrs, nodes, p).unwrap_or_else(|e| panic!("{what}: {e}"))
}
