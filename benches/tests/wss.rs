//! `throng-bench wss` on its smallest plan: every server of the comparison starts over TLS
//! with the run's certificate, answers every figure through the load generator's rustls
//! client (which fails on a certificate it does not trust), and every row of the table
//! has its numbers. No timing is asserted: that is what the full run is for.

use std::path::PathBuf;

use throng_bench::servers::ServerKind;
use throng_bench::wss::{
    self, ECHO, ECHO_CPU, ECHO_WS, HANDSHAKE_CPU, HANDSHAKES, MEMORY, Options, Plan,
};

#[test]
fn every_server_answers_every_wss_figure() {
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_throng-bench"));
    let mut options = Options::new(Plan::smoke(), exe);
    options.progress = false;
    options.command = "wss smoke test".into();
    options.dir = std::env::temp_dir().join(format!("throng-bench-wss-{}", std::process::id()));
    let report = wss::run(&options).expect("the wss comparison runs");
    let _ = std::fs::remove_dir_all(&options.dir);
    for (server, why) in &report.unavailable {
        assert!(
            *server == ServerKind::ThrongUring && why.contains("io_uring"),
            "{server} did not run: {why}"
        );
    }
    let ran: Vec<ServerKind> = wss::SERVERS
        .into_iter()
        .filter(|s| !report.unavailable.iter().any(|(u, _)| u == s))
        .collect();
    assert!(ran.contains(&ServerKind::ThrongEpoll) && ran.contains(&ServerKind::Tungstenite));
    for &server in &ran {
        for key in [MEMORY, ECHO, ECHO_CPU, HANDSHAKES, HANDSHAKE_CPU] {
            let v = report.median(key, server);
            assert!(v.is_some_and(|v| v > 0.0), "{key} of {server}: {v:?}");
        }
        let ws = report.median(ECHO_WS, server);
        if server == ServerKind::Tungstenite {
            assert!(ws.is_none(), "tokio-tungstenite has no ws row");
        } else {
            assert!(ws.is_some_and(|v| v > 0.0), "ws echo of {server}: {ws:?}");
        }
    }
    let md = wss::markdown(&report);
    for row in [
        "memory per idle wss connection",
        "wss/ws echo",
        "wss handshakes/s",
    ] {
        assert!(md.contains(row), "{row} missing:\n{md}");
    }
    // Every row has its ratio (column 4), so both of its numbers were measured.
    let rows: Vec<&str> = md
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| figure") && !l.starts_with("| ---"))
        .collect();
    assert_eq!(
        rows.len(),
        7 * ran
            .iter()
            .filter(|s| **s != ServerKind::Tungstenite)
            .count()
    );
    for row in rows {
        let ratio = row.split('|').nth(4).unwrap_or("").trim();
        assert!(ratio != "-" && !ratio.is_empty(), "no ratio in {row}");
    }
    let json = wss::json(&report);
    assert!(
        json["figures"]
            .as_array()
            .is_some_and(|f| f.len() >= 4 * ran.len())
    );
}
