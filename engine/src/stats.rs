//! A worker's counters: plain integers in the worker's own state, written only by it.
//! Nothing here is atomic or shared: a scrape asks the worker for a copy through its
//! mailbox (see [`crate::Metrics`]), so counting an event is one add to memory the worker
//! already has in cache.

/// Counters a worker keeps. Read a snapshot through [`crate::Connections::stats`] or the
/// [`crate::ShutdownReport`]; new counters may be added.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct WorkerStats {
    /// Connections accepted.
    pub accepted: u64,
    /// Connections refused because the worker was full or shutting down.
    pub refused_full: u64,
    /// WebSocket connections opened.
    pub opened: u64,
    /// Connections whose close handshake completed.
    pub closed_cleanly: u64,
    /// Connections that ended any other way.
    pub closed_abnormally: u64,
    /// Connections closed by a timer (handshake, idle, pong, close timeouts).
    pub timed_out: u64,
    /// Connections dropped because the peer stopped taking output: a ping got no answer
    /// and the peer acknowledged none of the output queued for it over a whole ping
    /// interval and pong timeout (counted in `timed_out` too).
    pub stalled: u64,
    /// Messages refused by the backpressure cap.
    pub dropped: u64,
    /// Receives that found the io_uring buffer ring empty (re-armed once buffers were
    /// back; no byte is lost, the connection waited). Always 0 on epoll.
    pub recv_enobufs: u64,
    /// Times accepting paused because the process was out of descriptors (EMFILE/ENFILE);
    /// it resumes when a connection closes or after 100 ms.
    pub accept_backoffs: u64,
    /// Connections answered 429 because their address was at `max_connections_per_ip`.
    pub refused_per_ip: u64,
    /// Connections closed with 1008 for exceeding `message_rate`.
    pub rate_limited: u64,
    /// Handshaking connections answered 503 because the worker held
    /// `max_handshake_buffer` bytes of incomplete request heads.
    pub handshake_memory_refused: u64,
    /// Messages refused because the worker buffered `max_worker_buffered` bytes (also in
    /// `dropped`).
    pub dropped_worker_full: u64,
    /// Times a quiet worker asked the allocator to return freed memory to the system.
    pub memory_trims: u64,
    /// Plain HTTP answers after which the connection stayed open for another request
    /// (`Config::http_keep_alive`).
    pub http_kept_alive: u64,
    /// Connections to a PROXY protocol listener closed because their first bytes were not
    /// a valid PROXY header.
    pub proxy_refused: u64,
    /// Handler callbacks that panicked. Each panic closed its connection with 1011 (or
    /// answered 500 to its request); the worker went on.
    pub handler_panics: u64,
    /// TLS handshakes completed.
    pub tls_handshakes: u64,
    /// TLS connections that failed or timed out before their handshake completed
    /// (plain HTTP or garbage on a TLS port, a bad ClientHello, a handshake left
    /// unfinished: TLS slowloris).
    pub tls_handshake_failures: u64,
    /// TLS connections that failed after their handshake (a bad or oversized record, a
    /// renegotiation attempt, a wrong version): an alert was sent, then the connection closed.
    pub tls_errors: u64,
    /// TLS connections whose peer ended TCP without a close_notify (truncation; many
    /// clients do it after the WebSocket close handshake).
    pub tls_truncated: u64,
    /// Messages compressed (permessage-deflate): once per message sent, and once per
    /// publish however many deflate subscribers it reaches.
    pub deflate_compressions: u64,
    /// Compressed messages inflated.
    pub deflate_inflations: u64,
    /// Dedicated-mode zlib streams alive now (a gauge): a connection's compressor or
    /// inflater, made at its first message that way, freed at its close.
    pub deflate_streams: u64,
    /// WebSocket connections whose close was decided, by who closed ([`Closer`]) and
    /// close code (slots of [`CLOSE_CODES`]; the last slot is any other code).
    pub closed: [[u64; CLOSE_SLOTS]; 3],
    /// Upgrade requests refused, by HTTP status (slots of [`HTTP_STATUSES`]; the last
    /// slot is any other status). Accepted upgrades are `opened`.
    pub handshakes_rejected: [u64; STATUS_SLOTS],
    /// Plain HTTP requests answered (no upgrade attempt), the metrics scrapes among them.
    pub http_requests: u64,
    /// Whole messages received (text and binary).
    pub messages_in: u64,
    /// Data messages sent (direct sends and publishes).
    pub messages_out: u64,
    /// Replies written at the end of the input that staged them, not at the end of the
    /// turn ([`crate::Config::eager_replies_after`]; the bytes may be fewer than the reply's
    /// when the socket was full, the rest going with the turn's flush).
    pub replies_at_once: u64,
    /// Bytes read from sockets (before TLS, handshakes included).
    pub bytes_in: u64,
    /// Bytes of frames and responses staged for sending.
    pub bytes_out: u64,
    /// Pings sent by the keepalive timer.
    pub pings_sent: u64,
    /// Connections closed because no pong (nor anything else) came back in time.
    pub pong_timeouts: u64,
    /// Times a connection's reading paused because its output passed the high-water mark.
    pub reads_paused: u64,
    /// Connections closed by the backpressure policy (`Backpressure::Close`).
    pub policy_closes: u64,
    /// Protocol violations that failed a connection (a close code of 1002, 1007, 1009...).
    pub protocol_errors: u64,
    /// Timer wheel entries visited.
    pub timer_visits: u64,
    /// Turns whose timer budget ran out with entries still due (the rest waits a turn).
    pub timer_budget_spent: u64,
    /// Loop turns by how long their work took (not the wait): bucket `i` counts turns of
    /// at most `2^i` microseconds; the last bucket counts the rest.
    pub turn_buckets: [u64; TURN_BUCKETS],
    /// Sum of the work time of all turns, in nanoseconds.
    pub turn_nanos: u64,
}

/// Who closed a WebSocket connection, an index of [`WorkerStats::closed`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closer {
    /// The peer sent its close frame first.
    Peer = 0,
    /// The server started the close: the application, a timer, a limit, a protocol
    /// violation, shutdown.
    Server = 1,
    /// The transport ended without a close handshake (reset, EOF).
    Lost = 2,
}

impl Closer {
    /// All values, in index order.
    pub const ALL: [Closer; 3] = [Closer::Peer, Closer::Server, Closer::Lost];

    /// `"peer"`, `"server"` or `"lost"`.
    pub fn name(self) -> &'static str {
        match self {
            Closer::Peer => "peer",
            Closer::Server => "server",
            Closer::Lost => "lost",
        }
    }
}

/// Close codes counted one by one; any other lands in the last slot of
/// [`WorkerStats::closed`].
pub const CLOSE_CODES: [u16; 12] = [
    1000, 1001, 1002, 1003, 1005, 1006, 1007, 1008, 1009, 1010, 1011, 1013,
];
/// Slots per closer: the codes of [`CLOSE_CODES`] and one for the rest.
pub const CLOSE_SLOTS: usize = CLOSE_CODES.len() + 1;

/// HTTP statuses counted one by one in [`WorkerStats::handshakes_rejected`]; any other
/// lands in the last slot.
pub const HTTP_STATUSES: [u16; 12] = [400, 401, 403, 404, 405, 426, 429, 431, 500, 501, 503, 505];
/// Slots: the statuses of [`HTTP_STATUSES`] and one for the rest.
pub const STATUS_SLOTS: usize = HTTP_STATUSES.len() + 1;

/// Buckets of the turn duration histogram: up to 1 us, 2 us, ... 2^21 us (about 2 s), and
/// the rest.
pub const TURN_BUCKETS: usize = 23;

/// The slot of a close code in a row of [`WorkerStats::closed`].
pub(crate) fn close_slot(code: u16) -> usize {
    CLOSE_CODES
        .iter()
        .position(|&c| c == code)
        .unwrap_or(CLOSE_CODES.len())
}

/// The slot of an HTTP status in [`WorkerStats::handshakes_rejected`].
pub(crate) fn status_slot(status: u16) -> usize {
    HTTP_STATUSES
        .iter()
        .position(|&s| s == status)
        .unwrap_or(HTTP_STATUSES.len())
}

/// The bucket of a turn that took `nanos`: the smallest `i` with `nanos <= 2^i us`.
pub(crate) fn turn_bucket(nanos: u64) -> usize {
    let micros = nanos.div_ceil(1000).max(1);
    // ceil(log2(micros)): 1 us -> 0, 2 -> 1, 3..=4 -> 2, ...
    let i = (u64::BITS - (micros - 1).leading_zeros()) as usize;
    i.min(TURN_BUCKETS - 1)
}

impl WorkerStats {
    /// WebSocket connections whose close is decided, over all closers and codes.
    pub fn closed_total(&self) -> u64 {
        self.closed.iter().flatten().sum()
    }

    /// Connections closed by `by` with `code` (codes outside [`CLOSE_CODES`] share one
    /// count).
    pub fn closed_with(&self, by: Closer, code: u16) -> u64 {
        self.closed[by as usize][close_slot(code)]
    }

    /// Upgrades refused with `status` (statuses outside [`HTTP_STATUSES`] share one count).
    pub fn rejected_with(&self, status: u16) -> u64 {
        self.handshakes_rejected[status_slot(status)]
    }

    /// Upgrade requests refused, over all statuses.
    pub fn rejected_total(&self) -> u64 {
        self.handshakes_rejected.iter().sum()
    }

    /// WebSocket connections open now: opened and not yet closed.
    pub fn open(&self) -> u64 {
        self.opened - self.closed_total()
    }
}

impl std::ops::AddAssign for WorkerStats {
    fn add_assign(&mut self, s: WorkerStats) {
        self.accepted += s.accepted;
        self.refused_full += s.refused_full;
        self.opened += s.opened;
        self.closed_cleanly += s.closed_cleanly;
        self.closed_abnormally += s.closed_abnormally;
        self.timed_out += s.timed_out;
        self.stalled += s.stalled;
        self.dropped += s.dropped;
        self.recv_enobufs += s.recv_enobufs;
        self.accept_backoffs += s.accept_backoffs;
        self.handler_panics += s.handler_panics;
        self.http_kept_alive += s.http_kept_alive;
        self.proxy_refused += s.proxy_refused;
        self.refused_per_ip += s.refused_per_ip;
        self.rate_limited += s.rate_limited;
        self.handshake_memory_refused += s.handshake_memory_refused;
        self.dropped_worker_full += s.dropped_worker_full;
        self.memory_trims += s.memory_trims;
        self.tls_handshakes += s.tls_handshakes;
        self.tls_handshake_failures += s.tls_handshake_failures;
        self.tls_errors += s.tls_errors;
        self.tls_truncated += s.tls_truncated;
        self.deflate_compressions += s.deflate_compressions;
        self.deflate_inflations += s.deflate_inflations;
        self.deflate_streams += s.deflate_streams;
        for (a, b) in self
            .closed
            .iter_mut()
            .flatten()
            .zip(s.closed.iter().flatten())
        {
            *a += b;
        }
        for (a, b) in self
            .handshakes_rejected
            .iter_mut()
            .zip(&s.handshakes_rejected)
        {
            *a += b;
        }
        self.http_requests += s.http_requests;
        self.messages_in += s.messages_in;
        self.messages_out += s.messages_out;
        self.replies_at_once += s.replies_at_once;
        self.bytes_in += s.bytes_in;
        self.bytes_out += s.bytes_out;
        self.pings_sent += s.pings_sent;
        self.pong_timeouts += s.pong_timeouts;
        self.reads_paused += s.reads_paused;
        self.policy_closes += s.policy_closes;
        self.protocol_errors += s.protocol_errors;
        self.timer_visits += s.timer_visits;
        self.timer_budget_spent += s.timer_budget_spent;
        for (a, b) in self.turn_buckets.iter_mut().zip(&s.turn_buckets) {
            *a += b;
        }
        self.turn_nanos += s.turn_nanos;
    }
}

impl std::iter::Sum for WorkerStats {
    fn sum<I: Iterator<Item = WorkerStats>>(iter: I) -> WorkerStats {
        let mut total = WorkerStats::default();
        for s in iter {
            total += s;
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn turn_buckets_are_log2_microseconds() {
        assert_eq!(turn_bucket(0), 0);
        assert_eq!(turn_bucket(1_000), 0);
        assert_eq!(turn_bucket(1_001), 1);
        assert_eq!(turn_bucket(2_000), 1);
        assert_eq!(turn_bucket(3_000), 2);
        assert_eq!(turn_bucket(1_024_000), 10);
        assert_eq!(turn_bucket(u64::MAX), TURN_BUCKETS - 1);
    }

    #[test]
    fn slots() {
        assert_eq!(close_slot(1000), 0);
        assert_eq!(close_slot(4000), CLOSE_CODES.len());
        assert_eq!(status_slot(403), 2);
        assert_eq!(status_slot(418), HTTP_STATUSES.len());
    }
}
