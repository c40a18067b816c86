//! The whole harness on a tiny configuration (20 connections, a fraction of a second per
//! figure): every server starts, answers every measurement, and every figure is in the
//! table, the JSON and the chart. No timing is asserted: that is what `compare` is for.
//! One property is: throng's echo serves every connection alike.

use std::path::PathBuf;

use throng_bench::compare::{self, Options, Profile};
use throng_bench::report;
use throng_bench::servers::ServerKind;

#[test]
fn every_server_answers_every_figure() {
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_throng-bench"));
    let mut options = Options::new(Profile::Smoke, exe);
    options.progress = false;
    options.command = "smoke test".into();
    let started = std::time::Instant::now();
    let report = compare::run(options).expect("the comparison runs");

    // A server may be missing only because this build or kernel cannot run it (throng's
    // io_uring backend) or Bun could not be installed (no npm registry); it is then named
    // with the reason, never silently dropped.
    for (server, why) in &report.unavailable {
        match server {
            ServerKind::ThrongUring => {
                assert!(why.contains("io_uring"), "unexpected reason: {why}")
            }
            ServerKind::Bun => {
                assert!(why.contains("install"), "unexpected reason: {why}");
                assert!(
                    throng_bench::servers::bun::binary().is_none(),
                    "Bun is installed but did not run: {why}"
                );
            }
            _ => panic!("{server} did not run: {why}"),
        }
    }
    let ran = report.servers();
    for must in [
        ServerKind::ThrongEpoll,
        ServerKind::Tungstenite,
        ServerKind::Fastws,
        ServerKind::Floor,
    ] {
        assert!(ran.contains(&must), "{must} did not run");
    }

    let plan = &report.options.plan;
    let mut keys: Vec<String> = Vec::new();
    for size in &plan.echo_sizes {
        for conns in &plan.echo_conns {
            keys.push(format!("echo_{size}_{conns}"));
        }
    }
    keys.extend(
        [
            "latency_p50",
            "latency_p99",
            "latency_p999",
            "memory",
            "handshakes",
            "broadcast",
            "pubsub",
        ]
        .map(String::from),
    );
    for key in &keys {
        let figure = report
            .figure(key)
            .unwrap_or_else(|| panic!("figure {key} missing"));
        for &server in &ran {
            let v = value(figure, key, server);
            if key != "memory" {
                // Memory may round to zero pages at 20 connections; nothing else may.
                assert!(v > 0.0, "{key}: {server} gave 0");
            }
            assert!(
                figure.ratio(server).is_some(),
                "{key}: no ratio for {server}"
            );
        }
    }

    // Fairness: every echo figure has its slowest-connection share; throng serves its
    // connections in arrival order, so at 20 connections none falls far behind.
    for size in &plan.echo_sizes {
        for conns in &plan.echo_conns {
            let key = format!("echo_fair_{size}_{conns}");
            let figure = report
                .figure(&key)
                .unwrap_or_else(|| panic!("figure {key} missing"));
            for &server in &ran {
                let v = value(figure, &key, server);
                if matches!(server, ServerKind::ThrongEpoll | ServerKind::ThrongUring) {
                    assert!(v > 50.0, "{key}: {server} served its slowest at {v}%");
                }
            }
        }
    }

    let md = report::markdown(&report);
    for key in &keys {
        let label = &report.figure(key).expect("checked above").label;
        assert!(md.contains(label.as_str()), "table lacks {label}");
    }
    assert!(md.contains("tokio-tungstenite") && md.contains("| target |"));
    let svg = report::svg(&report);
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    assert!(
        svg.matches("<rect").count() > keys.len(),
        "chart has no bars"
    );
    let json: serde_json::Value =
        serde_json::from_str(&serde_json::to_string(&report::json(&report)).expect("serializes"))
            .expect("parses back");
    let figures = json["figures"].as_array().expect("figures array");
    for key in &keys {
        assert!(
            figures.iter().any(|f| f["key"] == key.as_str()),
            "JSON lacks {key}"
        );
    }
    eprintln!(
        "smoke comparison took {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// A figure's median for `server`: present, finite and not negative.
fn value(figure: &compare::Figure, key: &str, server: ServerKind) -> f64 {
    let v = figure
        .median(server)
        .unwrap_or_else(|| panic!("{key}: no value for {server}"));
    assert!(v.is_finite() && v >= 0.0, "{key}: {server} gave {v}");
    v
}
