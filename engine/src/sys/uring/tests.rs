//! The io_uring backend driven directly over Unix socket pairs: a send the kernel takes
//! in pieces continues in order, and receives that find the buffer ring empty are re-armed
//! with nothing lost and are counted.

use std::collections::HashMap;
use std::io::Read;
use std::os::fd::{FromRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use bytes::Bytes;

use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::*;

thread_local! {
    /// The backend's count of operations the kernel holds, mirrored for the tests.
    pub(super) static KERNEL_OPS: Cell<usize> = const { Cell::new(0) };
    /// Backends that had to leak memory because their ring failed.
    pub(super) static LEAKED: Cell<usize> = const { Cell::new(0) };
}
use crate::output::Arena;

/// Records what the backend reports.
#[derive(Default)]
struct Recorder {
    fds: HashMap<u32, RawFd>,
    input: HashMap<u32, Vec<u8>>,
    /// The length of each input, in order, per connection.
    inputs: HashMap<u32, Vec<usize>>,
    /// (counted bytes, ended) per `sent` report.
    sent: Vec<(usize, bool)>,
    errors: usize,
    /// Wakeups reported.
    woken: usize,
}

impl Sink for Recorder {
    fn reader(&self, token: Token) -> Option<RawFd> {
        self.fds.get(&token.key).copied()
    }
    fn alive(&self, token: Token) -> bool {
        self.fds.contains_key(&token.key)
    }
    fn accepted(&mut self, _fd: RawFd, _listener: usize) {
        panic!("no listener in these tests");
    }
    fn input(&mut self, token: Token, bytes: &mut [u8]) -> bool {
        self.input
            .entry(token.key)
            .or_default()
            .extend_from_slice(bytes);
        self.inputs.entry(token.key).or_default().push(bytes.len());
        true
    }
    fn input_closed(&mut self, _token: Token, _error: Option<io::Error>) {}
    fn writable(&mut self, _token: Token) {}
    fn sent(&mut self, _token: Token, result: io::Result<usize>, ended: bool) {
        match result {
            Ok(n) => self.sent.push((n, ended)),
            Err(_) => self.errors += 1,
        }
    }
    fn woken(&mut self) {
        self.woken += 1;
    }
}

/// A connected pair: the backend's end (raw descriptor) and the peer.
fn pair(sndbuf: Option<i32>) -> (RawFd, UnixStream) {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors socketpair writes.
    let rc = unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM, 0, fds.as_mut_ptr()) };
    assert_eq!(rc, 0, "socketpair: {}", io::Error::last_os_error());
    if let Some(size) = sndbuf {
        // SAFETY: setsockopt reads an int from a live local.
        let rc = unsafe {
            libc::setsockopt(
                fds[0],
                libc::SOL_SOCKET,
                libc::SO_SNDBUF,
                (&raw const size).cast(),
                size_of::<i32>() as u32,
            )
        };
        assert_eq!(rc, 0);
    }
    // SAFETY: fds[1] was just created and is owned by nothing else.
    (fds[0], unsafe { UnixStream::from_raw_fd(fds[1]) })
}

/// A pair whose backend end is registered as connection `key` (generation 1) and known
/// to `sink`; returns the peer.
fn watched(u: &mut Uring, sink: &mut Recorder, key: u32, sndbuf: Option<i32>) -> UnixStream {
    let (fd, peer) = pair(sndbuf);
    sink.fds.insert(key, fd);
    u.register(fd, Token { key, generation: 1 }).unwrap();
    peer
}

/// Reads `want` bytes from `peer` on a thread of its own, pausing `pause` after each read.
fn read_all(
    mut peer: UnixStream,
    want: usize,
    pause: Duration,
) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut got = Vec::with_capacity(want);
        let mut buf = vec![0u8; 8192];
        while got.len() < want {
            let n = peer.read(&mut buf).expect("read");
            assert!(n > 0, "peer saw EOF early");
            got.extend_from_slice(&buf[..n]);
            std::thread::sleep(pause);
        }
        got
    })
}

fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed)
        .collect()
}

fn uring(buffers: (u16, u32, u16)) -> Option<Uring> {
    if let Err(why) = probe::probe() {
        eprintln!("io_uring unavailable, test skipped: {why}");
        return None;
    }
    Some(Uring::with_buffers(Vec::new(), buffers, &crate::Config::default()).expect("ring"))
}

/// One turn: wait at most `timeout`, dispatch.
fn poll(u: &mut Uring, timeout: Duration, sink: &mut Recorder) {
    u.wait(Some(timeout)).expect("wait");
    u.dispatch(sink);
}

/// Polls until `done` or a deadline.
fn poll_until(u: &mut Uring, sink: &mut Recorder, mut done: impl FnMut(&Recorder) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done(sink) {
        assert!(Instant::now() < deadline, "backend stalled");
        poll(u, Duration::from_millis(5), sink);
    }
}

#[test]
fn a_send_the_kernel_takes_in_pieces_continues_in_order() {
    let Some(mut u) = uring((8, 4096, 0)) else {
        return;
    };
    u.waitall = false; // let short sends reach the backend
    let (fd, peer) = pair(Some(4096));
    let token = Token {
        key: 1,
        generation: 7,
    };
    let mut sink = Recorder::default();

    // An outbox of several buffers (sendmsg) with an arena piece at its head, then a
    // direct piece of a large shared frame (send).
    let mut arena = Arena::default();
    let head = pattern(1, 3000);
    let mut out = Outbox {
        head: Some(arena.stage(&[&head])),
        ..Default::default()
    };
    let mut expected = head.clone();
    for seed in 2..6u8 {
        let b = pattern(seed, 100_000 + seed as usize);
        expected.extend_from_slice(&b);
        out.queue.push_back(Bytes::from(b));
    }
    let tail = pattern(9, 777);
    expected.extend_from_slice(&tail);
    out.stage.extend_from_slice(&tail);
    let counted = expected.len();
    let frame = Bytes::from(pattern(10, 300_000));
    expected.extend_from_slice(&frame);

    let reader = read_all(peer, expected.len(), Duration::from_micros(200)); // a slow reader

    assert_eq!(u.send(fd, token, &mut out).unwrap(), Handed::Taken);
    assert!(out.is_empty(), "the backend took the whole outbox");
    poll_until(&mut u, &mut sink, |s| {
        s.sent.iter().any(|&(_, ended)| ended)
    });
    let direct = arena.frame(&frame);
    assert_eq!(u.send_direct(fd, token, &direct).unwrap(), Handed::Taken);
    drop(direct);
    poll_until(&mut u, &mut sink, |s| {
        s.sent.iter().filter(|&&(_, ended)| ended).count() == 2
    });

    let got = reader.join().unwrap();
    assert!(got == expected, "bytes arrive whole and in order");
    assert_eq!(sink.errors, 0);
    let reported: usize = sink.sent.iter().map(|&(n, _)| n).sum();
    assert_eq!(
        reported, counted,
        "outbox bytes counted, the direct piece not"
    );
    assert!(
        sink.sent.iter().any(|&(_, ended)| !ended),
        "the kernel took some send in pieces (small socket buffer): {:?}",
        sink.sent
    );
    u.finish();
    crate::net::close(fd);
}

#[test]
fn a_direct_piece_is_written_now_and_the_ring_takes_what_the_socket_did_not() {
    for direct_send in [true, false] {
        let Some(mut u) = uring((8, 4096, 0)) else {
            return;
        };
        u.direct_send = direct_send;
        let (fd, mut peer) = pair(Some(4096));
        let token = Token {
            key: 2,
            generation: 3,
        };
        let mut sink = Recorder::default();
        let mut arena = Arena::default();

        // A small reply: written now, nothing left in flight (or, switched off, a ring send).
        let small = pattern(4, 64);
        let piece = arena.stage(&[&small]);
        let handed = u.send_direct(fd, token, &piece).unwrap();
        drop(piece);
        if direct_send {
            assert_eq!(handed, Handed::Wrote(64));
            assert!(u.sends.is_empty(), "no send record for a write made now");
        } else {
            assert_eq!(handed, Handed::Taken);
            poll_until(&mut u, &mut sink, |s| s.sent.iter().any(|&(_, e)| e));
        }
        let mut got = vec![0u8; 64];
        peer.read_exact(&mut got).unwrap();
        assert!(got == small, "the reply arrives whole");

        // A piece larger than the socket takes: the first part now, the rest by the ring,
        // in order, reported once as ended and not counted (a direct piece).
        sink.sent.clear();
        let big = pattern(5, 600_000);
        let reader = read_all(peer, big.len(), Duration::ZERO);
        let piece = arena.frame(&Bytes::from(big.clone()));
        assert_eq!(u.send_direct(fd, token, &piece).unwrap(), Handed::Taken);
        drop(piece);
        poll_until(&mut u, &mut sink, |s| s.sent.iter().any(|&(_, e)| e));
        assert!(reader.join().unwrap() == big, "bytes whole and in order");
        assert_eq!(sink.sent.iter().map(|&(n, _)| n).sum::<usize>(), 0);
        assert_eq!(sink.errors, 0);
        assert!(u.sends.is_empty());
        u.finish();
        crate::net::close(fd);
    }
}

#[test]
fn a_receive_cut_by_the_end_of_its_buffer_reaches_the_core_whole_when_the_next_buffer_follows() {
    // Four 4 KiB buffers consumed incrementally, in ring order 0, 1, 2, 3, 0, ...
    if probe::probe().is_ok_and(|f| !f.incremental_buffers) {
        eprintln!("no incremental buffer consumption here (Linux < 6.12): test skipped");
        return;
    }
    let Some(mut u) = uring((4, 4096, bufring::RING_INC)) else {
        return;
    };
    let mut sink = Recorder::default();
    let mut peer = watched(&mut u, &mut sink, 1, None);
    let mut sent = Vec::new();
    let mut write = |peer: &mut UnixStream, sink: &mut Recorder, u: &mut Uring, seed, len| {
        let data = pattern(seed, len);
        std::io::Write::write_all(peer, &data).unwrap();
        sent.extend_from_slice(&data);
        let want = sent.len();
        poll_until(u, sink, |s| s.input.get(&1).map_or(0, |b| b.len()) >= want);
        assert!(sink.input[&1] == sent, "bytes whole and in order");
        sink.inputs[&1].last().copied().unwrap()
    };
    // 3,000 bytes fill buffer 0 to 3,000; the next 3,000 run over its end into buffer 1,
    // which follows it in memory: one input of 3,000, not 1,096 then 1,904.
    assert_eq!(write(&mut peer, &mut sink, &mut u, 1, 3000), 3000);
    assert_eq!(write(&mut peer, &mut sink, &mut u, 2, 3000), 3000);
    // Buffer 1 to 1,904 + 3,000 = 4,904: over its end into buffer 2.
    assert_eq!(write(&mut peer, &mut sink, &mut u, 3, 3000), 3000);
    // Buffer 2 at 808; 7,000 bytes: its 3,288, then 3,712 of buffer 3.
    assert_eq!(write(&mut peer, &mut sink, &mut u, 4, 7000), 7000);
    // Buffer 3 at 3,712: its last 384 bytes, then the ring wraps to buffer 0, which is not
    // next to 3 in memory: two inputs.
    assert_eq!(write(&mut peer, &mut sink, &mut u, 5, 3000), 2616);
    assert_eq!(sink.inputs[&1], [3000, 3000, 3000, 7000, 384, 2616]);
    assert_eq!(sink.input[&1], sent);
    u.finish();
    crate::net::close(sink.fds[&1]);
}

#[test]
fn receives_that_find_the_buffer_ring_empty_lose_nothing_and_are_counted() {
    // Two small buffers, taken whole by each receive: a burst on several connections
    // must run the ring dry.
    let Some(mut u) = uring((2, 4096, 0)) else {
        return;
    };
    let mut sink = Recorder::default();
    let mut peers = Vec::new();
    let mut expected = HashMap::new();
    for key in 0..6u32 {
        let mut peer = watched(&mut u, &mut sink, key, None);
        let data = pattern(key as u8, 64 << 10);
        std::io::Write::write_all(&mut peer, &data).unwrap();
        expected.insert(key, data);
        peers.push(peer);
    }
    poll_until(&mut u, &mut sink, |s| {
        expected
            .iter()
            .all(|(k, v)| s.input.get(k).map_or(0, |b| b.len()) >= v.len())
    });
    for (k, v) in &expected {
        assert!(
            sink.input[k] == *v,
            "connection {k}: bytes whole and in order"
        );
    }
    assert!(
        u.counters.recv_enobufs > 0,
        "the burst found the ring empty"
    );
    u.finish();
    for fd in sink.fds.values() {
        crate::net::close(*fd);
    }
}

#[test]
fn close_ends_the_receive_and_a_blocked_send_without_the_peer_doing_anything() {
    let Some(mut u) = uring((8, 4096, 0)) else {
        return;
    };
    let mut sink = Recorder::default();
    // Many armed receives (a mass close must not cost a scan of all of them per close)
    // and one send blocked on a full socket whose peer never reads.
    let peers: Vec<UnixStream> = (0..500u32)
        .map(|key| watched(&mut u, &mut sink, key, Some(4096)))
        .collect();
    let blocked = Token {
        key: 0,
        generation: 1,
    };
    let mut out = Outbox::default();
    out.queue.push_back(Bytes::from(pattern(3, 1 << 20)));
    assert_eq!(
        u.send(sink.fds[&0], blocked, &mut out).unwrap(),
        Handed::Taken
    );
    poll(&mut u, Duration::from_millis(20), &mut sink);
    assert_eq!(u.sends.len(), 1, "the send waits for the peer");
    let baseline = u.in_flight.0 - 501; // what is armed besides the receives and the send
    for (key, fd) in std::mem::take(&mut sink.fds) {
        u.close(fd, Token { key, generation: 1 });
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while u.in_flight.0 > baseline {
        assert!(
            Instant::now() < deadline,
            "operations of closed connections still in flight"
        );
        poll(&mut u, Duration::from_millis(5), &mut sink);
    }
    assert!(u.sends.is_empty(), "the blocked send ended");
    assert_eq!(sink.errors, 1, "and was reported as failed");
    for mut peer in peers {
        peer.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut rest = Vec::new();
        peer.read_to_end(&mut rest)
            .expect("the peer sees the end of the stream");
    }
    u.finish();
}

/// The memory of a send buffer, recording how many operations the kernel still held
/// when it was freed.
struct Watched {
    bytes: Vec<u8>,
    freed_with: Arc<std::sync::Mutex<Option<usize>>>,
}

impl AsRef<[u8]> for Watched {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        *self.freed_with.lock().unwrap() = Some(KERNEL_OPS.with(|k| k.get()));
    }
}

/// A sink that panics at the first input, as a handler bug unwinding through the worker
/// would (the engine catches handler panics per connection; this is the path for a
/// panic it does not catch, or a failed wait).
struct Panicky(Recorder, Arc<AtomicBool>);

impl Sink for Panicky {
    fn reader(&self, token: Token) -> Option<RawFd> {
        self.0.reader(token)
    }
    fn alive(&self, token: Token) -> bool {
        self.0.alive(token)
    }
    fn accepted(&mut self, fd: RawFd, listener: usize) {
        self.0.accepted(fd, listener)
    }
    fn input(&mut self, _token: Token, _bytes: &mut [u8]) -> bool {
        self.1.store(true, Ordering::SeqCst);
        panic!("a bug in the worker while a send is in flight");
    }
    fn input_closed(&mut self, token: Token, error: Option<io::Error>) {
        self.0.input_closed(token, error)
    }
    fn writable(&mut self, token: Token) {
        self.0.writable(token)
    }
    fn sent(&mut self, token: Token, result: io::Result<usize>, ended: bool) {
        self.0.sent(token, result, ended)
    }
    fn woken(&mut self) {}
}

#[test]
fn a_panic_with_a_send_in_flight_frees_nothing_the_kernel_still_holds() {
    let Some(mut u) = uring((8, 4096, 0)) else {
        return;
    };
    let mut rec = Recorder::default();
    // Connection 0: a 4 MiB send blocked on a peer that never reads (small buffers).
    let quiet = watched(&mut u, &mut rec, 0, Some(4096));
    let freed_with = Arc::new(std::sync::Mutex::new(None));
    let mut out = Outbox::default();
    out.queue.push_back(Bytes::from_owner(Watched {
        bytes: pattern(5, 4 << 20),
        freed_with: freed_with.clone(),
    }));
    assert_eq!(
        u.send(
            rec.fds[&0],
            Token {
                key: 0,
                generation: 1
            },
            &mut out
        )
        .unwrap(),
        Handed::Taken
    );
    // Connection 1: input that makes the sink panic.
    let mut talker = watched(&mut u, &mut rec, 1, None);
    std::io::Write::write_all(&mut talker, b"boom").unwrap();
    let panicked = Arc::new(AtomicBool::new(false));
    let mut sink = Panicky(rec, panicked.clone());
    let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            assert!(Instant::now() < deadline, "no input arrived");
            u.wait(Some(Duration::from_millis(5))).unwrap();
            u.dispatch(&mut sink); // panics at the input; `u` drops while unwinding
        }
    }));
    assert!(unwound.is_err() && panicked.load(Ordering::SeqCst));
    let held = freed_with
        .lock()
        .unwrap()
        .expect("the send's buffer was freed, not leaked");
    assert_eq!(
        held, 0,
        "the buffer was freed while the kernel still held operations"
    );
    assert_eq!(LEAKED.with(|l| l.get()), 0);
    drop((quiet, talker));
}

#[test]
fn the_receive_ring_circulates_more_buffers_when_near_dry_and_fewer_after_a_quiet_stretch() {
    if probe::probe().map_or(true, |f| !f.incremental_buffers) {
        eprintln!("no incremental buffer consumption here: test skipped");
        return;
    }
    let ring = io_uring::IoUring::new(8).expect("ring");
    let mut b = bufring::BufRing::new(&ring, 16, 4096, bufring::RING_INC, 4).expect("bufs");
    assert_eq!(b.active(), 4, "starts with the fewest");
    // Buffers 4..16 are parked: giving one back does not put it in the ring.
    for bid in 0..3 {
        b.claim(bid, 100);
    }
    assert_eq!(b.active(), 4, "one of four still unstarted: no change");
    b.claim(3, 100);
    assert_eq!(b.active(), 6, "none left unstarted: half as many again");
    b.ran_dry();
    assert_eq!(b.active(), 12, "a receive found none: twice as many");
    // A long stretch in which one buffer at a time is started and given back, as the
    // kernel would: only circulating buffers are ever started. Two checks' worth: the
    // first stretch still saw the ring run low above.
    for i in 0..10_000u32 {
        let bid = (i as usize % b.active()) as u16;
        b.give(bid);
        b.claim(bid, 10);
    }
    assert!(
        b.active() < 12,
        "fewer after a quiet stretch: {}",
        b.active()
    );
    assert!(b.active() >= 4, "never below the least");
    // Without incremental consumption every buffer circulates, always.
    let ring2 = io_uring::IoUring::new(8).expect("ring");
    let whole = bufring::BufRing::new(&ring2, 16, 4096, 0, 4).expect("bufs");
    assert_eq!(whole.active(), 16);
}

#[test]
fn a_ring_that_starts_with_two_buffers_takes_in_more_and_delivers_every_byte_in_order() {
    if probe::probe().map_or(true, |f| !f.incremental_buffers) {
        eprintln!("no incremental buffer consumption here: test skipped");
        return;
    }
    let config = crate::Config {
        uring_recv_buffers_min: 2,
        ..crate::Config::default()
    };
    let mut u =
        Uring::with_buffers(Vec::new(), (32, 4096, bufring::RING_INC), &config).expect("ring");
    assert_eq!(u.bufs.active(), 2);
    let mut sink = Recorder::default();
    let mut peers: Vec<UnixStream> = (1..=8)
        .map(|k| watched(&mut u, &mut sink, k, None))
        .collect();
    let mut sent: HashMap<u32, Vec<u8>> = HashMap::new();
    // 8 peers x 48 KiB written before the worker looks: far more than two 4 KiB buffers.
    for (i, peer) in peers.iter_mut().enumerate() {
        let key = i as u32 + 1;
        let data = pattern(key as u8, 48 << 10);
        std::io::Write::write_all(peer, &data).unwrap();
        sent.insert(key, data);
    }
    poll_until(&mut u, &mut sink, |s| {
        (1..=8).all(|k| s.input.get(&k).map_or(0, |b| b.len()) >= 48 << 10)
    });
    for k in 1..=8 {
        assert!(
            sink.input[&k] == sent[&k],
            "peer {k}: bytes whole and in order"
        );
    }
    assert!(u.bufs.active() > 2, "the ring took in more buffers");
    u.finish();
    for k in 1..=8 {
        crate::net::close(sink.fds[&k]);
    }
}

#[test]
fn one_turn_takes_every_completion_the_kernel_holds_and_a_wakeup_behind_them() {
    // The kernel runs some 20 deferred completions per wait; the rest, and a wakeup
    // queued after them, must not wait for later turns.
    const CONNS: u32 = 300;
    let Some(mut u) = uring((64, 4096, bufring::RING_INC)) else {
        return;
    };
    let mut sink = Recorder::default();
    let mut peers: Vec<UnixStream> = (0..CONNS)
        .map(|key| watched(&mut u, &mut sink, key, None))
        .collect();
    poll(&mut u, Duration::ZERO, &mut sink); // submits the receives
    assert!(sink.input.is_empty());
    for (i, peer) in peers.iter_mut().enumerate() {
        std::io::Write::write_all(peer, &pattern(i as u8, 8)).unwrap();
    }
    u.waker().unwrap().wake().unwrap();
    // Let every completion reach the ring's deferred list before the one turn.
    std::thread::sleep(Duration::from_millis(50));
    poll(&mut u, Duration::from_millis(100), &mut sink);
    assert_eq!(
        sink.input.len(),
        CONNS as usize,
        "every connection's input arrived in one turn"
    );
    for (key, bytes) in &sink.input {
        assert_eq!(*bytes, pattern(*key as u8, 8), "connection {key}");
    }
    assert_eq!(
        sink.woken, 1,
        "the wakeup behind them was seen in the same turn"
    );
    u.finish();
    for fd in sink.fds.values() {
        crate::net::close(*fd);
    }
}
