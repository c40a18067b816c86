//! A worker's counters: plain integers in the worker's own state, written only by it.

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
        self.refused_per_ip += s.refused_per_ip;
        self.rate_limited += s.rate_limited;
        self.handshake_memory_refused += s.handshake_memory_refused;
        self.dropped_worker_full += s.dropped_worker_full;
        self.memory_trims += s.memory_trims;
        self.tls_handshakes += s.tls_handshakes;
        self.tls_handshake_failures += s.tls_handshake_failures;
        self.tls_errors += s.tls_errors;
        self.tls_truncated += s.tls_truncated;
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
