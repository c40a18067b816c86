//! The Prometheus text exposition format, version 0.0.4, written by hand: a few dozen
//! families of counters and gauges with a `worker` label and one histogram, which needs
//! no crate. Each family is written once with its `# HELP` and `# TYPE` lines, then one
//! sample per worker (and per label value where it has more).

use std::fmt::Write;

use super::{Metrics, WorkerMetrics};
use crate::stats::{CLOSE_CODES, Closer, HTTP_STATUSES, TURN_BUCKETS, WorkerStats};

/// A per-worker family: name, type, help, and how to read the value from a worker.
type Family = (
    &'static str,
    &'static str,
    &'static str,
    fn(&WorkerMetrics) -> u64,
);

/// The families with one sample per worker and no other label.
const FAMILIES: &[Family] = &[
    (
        "throng_connections_open",
        "gauge",
        "WebSocket connections open (opened, close not yet decided).",
        |w| w.open(),
    ),
    (
        "throng_connections",
        "gauge",
        "TCP connections held: handshaking, open and closing.",
        |w| w.connections as u64,
    ),
    (
        "throng_buffered_bytes",
        "gauge",
        "Bytes of output buffered for all connections.",
        |w| w.buffered_bytes as u64,
    ),
    (
        "throng_spill_records_in_use",
        "gauge",
        "Spill records lent to connections (partial input, queued output).",
        |w| w.spill_in_use as u64,
    ),
    (
        "throng_spill_records_free",
        "gauge",
        "Spill records kept free for reuse.",
        |w| w.spill_free as u64,
    ),
    (
        "throng_connections_accepted_total",
        "counter",
        "TCP connections accepted.",
        |w| w.stats.accepted,
    ),
    (
        "throng_connections_opened_total",
        "counter",
        "WebSocket connections opened (upgrade accepted).",
        |w| w.stats.opened,
    ),
    (
        "throng_http_requests_total",
        "counter",
        "Plain HTTP requests answered (no upgrade attempt).",
        |w| w.stats.http_requests,
    ),
    (
        "throng_messages_received_total",
        "counter",
        "Whole messages received.",
        |w| w.stats.messages_in,
    ),
    (
        "throng_messages_sent_total",
        "counter",
        "Data messages sent (direct sends and publishes).",
        |w| w.stats.messages_out,
    ),
    (
        "throng_received_bytes_total",
        "counter",
        "Bytes read from sockets.",
        |w| w.stats.bytes_in,
    ),
    (
        "throng_sent_bytes_total",
        "counter",
        "Bytes of frames and responses staged for sending.",
        |w| w.stats.bytes_out,
    ),
    (
        "throng_pings_sent_total",
        "counter",
        "Keepalive pings sent.",
        |w| w.stats.pings_sent,
    ),
    (
        "throng_pong_timeouts_total",
        "counter",
        "Connections dropped for no pong in time (half-open or stuck peers).",
        |w| w.stats.pong_timeouts,
    ),
    (
        "throng_stalled_peers_total",
        "counter",
        "Of the pong timeouts, peers that were alive but stopped reading.",
        |w| w.stats.stalled,
    ),
    (
        "throng_timeouts_total",
        "counter",
        "Connections closed by a timer (handshake, idle, pong, close).",
        |w| w.stats.timed_out,
    ),
    (
        "throng_reads_paused_total",
        "counter",
        "Times reading paused because output passed the high-water mark.",
        |w| w.stats.reads_paused,
    ),
    (
        "throng_dropped_messages_total",
        "counter",
        "Sends refused by backpressure (connection or worker cap).",
        |w| w.stats.dropped,
    ),
    (
        "throng_dropped_worker_full_total",
        "counter",
        "Of the dropped sends, those refused by the worker-wide cap.",
        |w| w.stats.dropped_worker_full,
    ),
    (
        "throng_policy_closes_total",
        "counter",
        "Connections closed by the backpressure policy.",
        |w| w.stats.policy_closes,
    ),
    (
        "throng_rate_limited_total",
        "counter",
        "Connections closed with 1008 for exceeding the message rate.",
        |w| w.stats.rate_limited,
    ),
    (
        "throng_protocol_errors_total",
        "counter",
        "Connections failed for a protocol violation.",
        |w| w.stats.protocol_errors,
    ),
    (
        "throng_refused_full_total",
        "counter",
        "Connections refused because the worker was full or shutting down.",
        |w| w.stats.refused_full,
    ),
    (
        "throng_refused_per_ip_total",
        "counter",
        "Connections refused (429) at the per-address limit.",
        |w| w.stats.refused_per_ip,
    ),
    (
        "throng_handshake_memory_refused_total",
        "counter",
        "Handshakes refused (503) at the worker's request-head memory bound.",
        |w| w.stats.handshake_memory_refused,
    ),
    (
        "throng_replies_at_once_total",
        "counter",
        "Replies written at the end of their input, not with the turn's flush.",
        |w| w.stats.replies_at_once,
    ),
    (
        "throng_recv_enobufs_total",
        "counter",
        "io_uring receives that found the buffer ring empty.",
        |w| w.stats.recv_enobufs,
    ),
    (
        "throng_accept_backoffs_total",
        "counter",
        "Times accepting paused for lack of descriptors.",
        |w| w.stats.accept_backoffs,
    ),
    (
        "throng_timer_visits_total",
        "counter",
        "Timer wheel entries visited.",
        |w| w.stats.timer_visits,
    ),
    (
        "throng_timer_budget_spent_total",
        "counter",
        "Turns whose timer budget ran out with entries still due.",
        |w| w.stats.timer_budget_spent,
    ),
    (
        "throng_handler_panics_total",
        "counter",
        "Handler callbacks that panicked.",
        |w| w.stats.handler_panics,
    ),
    (
        "throng_tls_handshakes_total",
        "counter",
        "TLS handshakes completed.",
        |w| w.stats.tls_handshakes,
    ),
    (
        "throng_tls_handshake_failures_total",
        "counter",
        "TLS connections that failed or timed out before their handshake completed.",
        |w| w.stats.tls_handshake_failures,
    ),
    (
        "throng_tls_errors_total",
        "counter",
        "TLS connections failed after their handshake (an alert was sent).",
        |w| w.stats.tls_errors,
    ),
    (
        "throng_tls_truncated_total",
        "counter",
        "TLS connections whose peer ended TCP without a close_notify.",
        |w| w.stats.tls_truncated,
    ),
    (
        "throng_deflate_compressions_total",
        "counter",
        "Messages compressed with permessage-deflate (once per publish).",
        |w| w.stats.deflate_compressions,
    ),
    (
        "throng_deflate_inflations_total",
        "counter",
        "Compressed messages inflated.",
        |w| w.stats.deflate_inflations,
    ),
    (
        "throng_memory_trims_total",
        "counter",
        "Times a quiet worker returned freed memory to the system.",
        |w| w.stats.memory_trims,
    ),
];

/// Writes the whole exposition of `m` to `out`.
pub(super) fn encode(m: &Metrics, out: &mut String) {
    head(
        out,
        "throng_backend_info",
        "gauge",
        "The I/O backend the workers run, and why.",
    );
    let _ = writeln!(
        out,
        "throng_backend_info{{backend=\"{}\",reason=\"{}\"}} 1",
        m.backend.name(),
        Escaped(&m.backend_note)
    );
    head(
        out,
        "throng_workers",
        "gauge",
        "Workers asked, and those that answered this scrape.",
    );
    let _ = writeln!(out, "throng_workers{{state=\"asked\"}} {}", m.asked);
    let _ = writeln!(
        out,
        "throng_workers{{state=\"answered\"}} {}",
        m.workers.len()
    );
    head(
        out,
        "throng_process_resident_memory_bytes",
        "gauge",
        "Resident memory of the process.",
    );
    let _ = writeln!(
        out,
        "throng_process_resident_memory_bytes {}",
        m.resident_bytes
    );

    for &(name, kind, help, value) in FAMILIES {
        head(out, name, kind, help);
        for w in &m.workers {
            let _ = writeln!(out, "{name}{{worker=\"{}\"}} {}", w.worker, value(w));
        }
    }

    head(
        out,
        "throng_connections_closed_total",
        "counter",
        "WebSocket connections closed, by who closed (peer, server, lost) and close code.",
    );
    for w in &m.workers {
        for by in Closer::ALL {
            for (slot, &n) in w.stats.closed[by as usize].iter().enumerate() {
                if n > 0 {
                    let code = CLOSE_CODES
                        .get(slot)
                        .map_or("other".to_owned(), u16::to_string);
                    let _ = writeln!(
                        out,
                        "throng_connections_closed_total{{worker=\"{}\",by=\"{}\",code=\"{code}\"}} {n}",
                        w.worker,
                        by.name()
                    );
                }
            }
        }
    }

    head(
        out,
        "throng_handshakes_rejected_total",
        "counter",
        "Upgrade and HTTP requests refused, by status.",
    );
    for w in &m.workers {
        for (slot, &n) in w.stats.handshakes_rejected.iter().enumerate() {
            if n > 0 {
                let status = HTTP_STATUSES
                    .get(slot)
                    .map_or("other".to_owned(), u16::to_string);
                let _ = writeln!(
                    out,
                    "throng_handshakes_rejected_total{{worker=\"{}\",status=\"{status}\"}} {n}",
                    w.worker
                );
            }
        }
    }

    head(
        out,
        "throng_loop_turn_seconds",
        "histogram",
        "Work time of a run-loop turn (not its wait): how late a worker answers.",
    );
    for w in &m.workers {
        turn_histogram(out, w.worker, &w.stats);
    }
}

fn turn_histogram(out: &mut String, worker: usize, s: &WorkerStats) {
    let mut cumulative = 0;
    for (i, &n) in s.turn_buckets.iter().enumerate() {
        cumulative += n;
        if i + 1 == TURN_BUCKETS {
            break; // the last bucket is +Inf
        }
        let le = (1u64 << i) as f64 / 1e6;
        let _ = writeln!(
            out,
            "throng_loop_turn_seconds_bucket{{worker=\"{worker}\",le=\"{le}\"}} {cumulative}"
        );
    }
    let _ = writeln!(
        out,
        "throng_loop_turn_seconds_bucket{{worker=\"{worker}\",le=\"+Inf\"}} {cumulative}"
    );
    let _ = writeln!(
        out,
        "throng_loop_turn_seconds_sum{{worker=\"{worker}\"}} {}",
        s.turn_nanos as f64 / 1e9
    );
    let _ = writeln!(
        out,
        "throng_loop_turn_seconds_count{{worker=\"{worker}\"}} {cumulative}"
    );
}

fn head(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// A label value with `\`, `"` and newlines escaped, as the format asks.
struct Escaped<'a>(&'a str);

impl std::fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for c in self.0.chars() {
            match c {
                '\\' => f.write_str("\\\\")?,
                '"' => f.write_str("\\\"")?,
                '\n' => f.write_str("\\n")?,
                c => f.write_char(c)?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::BackendKind;

    #[test]
    fn escapes_label_values() {
        assert_eq!(Escaped("a\"b\\c\nd").to_string(), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn histogram_is_cumulative_and_counts_every_turn() {
        let mut w = WorkerMetrics::default();
        w.stats.turn_buckets[0] = 3;
        w.stats.turn_buckets[2] = 2;
        w.stats.turn_buckets[TURN_BUCKETS - 1] = 1;
        w.stats.turn_nanos = 2_500_000_000;
        let m = Metrics {
            workers: vec![w],
            asked: 1,
            backend: BackendKind::Epoll,
            backend_note: "epoll (\"asked\")".into(),
            resident_bytes: 4096,
        };
        let text = m.to_prometheus();
        assert!(text.contains("throng_loop_turn_seconds_bucket{worker=\"0\",le=\"0.000001\"} 3\n"));
        assert!(text.contains("throng_loop_turn_seconds_bucket{worker=\"0\",le=\"0.000002\"} 3\n"));
        assert!(text.contains("throng_loop_turn_seconds_bucket{worker=\"0\",le=\"0.000004\"} 5\n"));
        assert!(text.contains("throng_loop_turn_seconds_bucket{worker=\"0\",le=\"+Inf\"} 6\n"));
        assert!(text.contains("throng_loop_turn_seconds_count{worker=\"0\"} 6\n"));
        assert!(text.contains("throng_loop_turn_seconds_sum{worker=\"0\"} 2.5\n"));
        assert!(text.contains("reason=\"epoll (\\\"asked\\\")\"} 1\n"));
        // Every family is declared once.
        let types = text.lines().filter(|l| l.starts_with("# TYPE ")).count();
        let mut names: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .map(|l| l.split(' ').next().unwrap())
            .collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), types);
    }
}
