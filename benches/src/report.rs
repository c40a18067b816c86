//! Rendering a [`Report`]: the markdown table (with the targets of issues 6, 7 and 19), JSON
//! with every round's value, and a hand-written SVG chart.

use std::fmt::Write as _;

use serde_json::{Value, json};

use crate::compare::{Better, Figure, Profile, Report};
use crate::servers::ServerKind;

/// A value as the table shows it, by unit.
fn fmt_value(v: f64, unit: &str) -> String {
    match unit {
        "msg/s" | "1/s" | "B" | "ns" => group(v.round() as u64),
        "%" => format!("{v:.0}"),
        "ms" => format!("{v:.2}"),
        "us" => {
            if v >= 100.0 {
                format!("{v:.0}")
            } else {
                format!("{v:.1}")
            }
        }
        _ => format!("{v:.3}"),
    }
}

/// Digits in groups of three (1,234,567).
pub fn group(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn fmt_ratio(r: f64) -> String {
    if r >= 100.0 {
        format!("{r:.0}×")
    } else if r >= 0.1 {
        format!("{r:.2}×")
    } else {
        format!("{r:.4}×")
    }
}

fn placement(report: &Report) -> String {
    let o = &report.options;
    format!(
        "servers: {} worker thread{} pinned to CPU {} (throng: workers; Tokio servers: multi-thread runtime workers); load generator: {} thread{} pinned to CPU {}",
        o.threads,
        if o.threads == 1 { "" } else { "s" },
        cpu_list(&o.server_cpus),
        o.load_cpus.len().max(1),
        if o.load_cpus.len() > 1 { "s" } else { "" },
        cpu_list(&o.load_cpus)
    )
}

fn cpu_list(cpus: &[usize]) -> String {
    if cpus.is_empty() {
        "(unpinned)".into()
    } else {
        cpus.iter()
            .map(|c| c.to_string())
            .collect::<Vec<_>>()
            .join(",")
    }
}

fn table(out: &mut String, report: &Report, figures: &[&Figure]) {
    let servers = &report.options.servers;
    out.push_str("| figure | better |");
    for s in servers {
        let _ = write!(out, " {} |", s.label());
    }
    out.push_str("\n|---|:-:|");
    for _ in servers {
        out.push_str("--:|");
    }
    out.push('\n');
    for f in figures {
        let _ = write!(
            out,
            "| {} ({}) | {} |",
            f.label,
            f.unit,
            if f.better == Better::Higher {
                "↑"
            } else {
                "↓"
            }
        );
        for &s in servers {
            match (f.median(s), f.ratio(s)) {
                (Some(v), Some(r)) => {
                    let _ = write!(out, " {} ({}) |", fmt_value(v, f.unit), fmt_ratio(r));
                }
                (Some(v), None) => {
                    let _ = write!(out, " {} |", fmt_value(v, f.unit));
                }
                _ => out.push_str(" n/a |"),
            }
        }
        out.push('\n');
    }
}

/// A target: a figure, a comparison server, and the bound on the ratio.
struct Target {
    what: &'static str,
    key: &'static str,
    against: ServerKind,
    /// The throng/other ratio must be at least this (Higher) or at most this (Lower).
    bound: f64,
    at_least: bool,
}

const TARGETS: [Target; 16] = [
    Target {
        what: "Echo 64 B at 1,000 conns ≥ 2.0× tokio-tungstenite",
        key: "echo_64_1000",
        against: ServerKind::Tungstenite,
        bound: 2.0,
        at_least: true,
    },
    Target {
        what: "Echo 64 B at 1,000 conns ≥ 1.5× fastwebsockets",
        key: "echo_64_1000",
        against: ServerKind::Fastws,
        bound: 1.5,
        at_least: true,
    },
    Target {
        what: "Memory per idle connection ≤ 1/50 of tokio-tungstenite's",
        key: "memory",
        against: ServerKind::Tungstenite,
        bound: 0.02,
        at_least: false,
    },
    Target {
        what: "Handshakes/s ≥ 2× tokio-tungstenite",
        key: "handshakes",
        against: ServerKind::Tungstenite,
        bound: 2.0,
        at_least: true,
    },
    Target {
        what: "(same, per server CPU second, where the load CPU is the limit)",
        key: "handshake_capacity",
        against: ServerKind::Tungstenite,
        bound: 2.0,
        at_least: true,
    },
    Target {
        what: "p99 latency at the fixed rate ≤ 0.5× tokio-tungstenite's",
        key: "latency_p99",
        against: ServerKind::Tungstenite,
        bound: 0.5,
        at_least: false,
    },
    Target {
        what: "Issue 7: broadcast 64 B to 15,000: time ≤ 1/3 of tokio-tungstenite's",
        key: "broadcast",
        against: ServerKind::Tungstenite,
        bound: 1.0 / 3.0,
        at_least: false,
    },
    Target {
        what: "Issue 7: pub/sub delivered msg/s ≥ 3× tokio-tungstenite",
        key: "pubsub",
        against: ServerKind::Tungstenite,
        bound: 3.0,
        at_least: true,
    },
    Target {
        what: "Issue 19: echo 64 B at 100 conns ≥ 1.1× Bun",
        key: "echo_64_100",
        against: ServerKind::Bun,
        bound: 1.1,
        at_least: true,
    },
    Target {
        what: "Issue 19: echo 64 B at 1,000 conns ≥ 1.1× Bun",
        key: "echo_64_1000",
        against: ServerKind::Bun,
        bound: 1.1,
        at_least: true,
    },
    Target {
        what: "Issue 19: echo 64 B at 10,000 conns ≥ 1.1× Bun",
        key: "echo_64_10000",
        against: ServerKind::Bun,
        bound: 1.1,
        at_least: true,
    },
    Target {
        what: "Issue 19: echo 16 KiB at 100 conns ≥ 1.1× Bun",
        key: "echo_16384_100",
        against: ServerKind::Bun,
        bound: 1.1,
        at_least: true,
    },
    Target {
        what: "Issue 19: echo 16 KiB at 1,000 conns ≥ 1.1× Bun",
        key: "echo_16384_1000",
        against: ServerKind::Bun,
        bound: 1.1,
        at_least: true,
    },
    Target {
        what: "Issue 19: echo 16 KiB at 10,000 conns ≥ 1.1× Bun",
        key: "echo_16384_10000",
        against: ServerKind::Bun,
        bound: 1.1,
        at_least: true,
    },
    Target {
        what: "Issue 19: memory per idle connection ≤ 1/10 of Bun's",
        key: "memory",
        against: ServerKind::Bun,
        bound: 0.1,
        at_least: false,
    },
    Target {
        what: "Issue 19: broadcast 64 B to 15,000: time ≤ 0.8× Bun's",
        key: "broadcast",
        against: ServerKind::Bun,
        bound: 0.8,
        at_least: false,
    },
];

/// Each target's verdict per throng backend: (target text, backend, ratio, met).
pub fn verdicts(report: &Report) -> Vec<(String, ServerKind, Option<f64>, bool)> {
    let mut out = Vec::new();
    for t in &TARGETS {
        for s in [ServerKind::ThrongUring, ServerKind::ThrongEpoll] {
            if !report.servers().contains(&s) {
                continue;
            }
            let ratio = report
                .figure(t.key)
                .and_then(|f| Some(f.median(s)? / f.median(t.against)?));
            let met = ratio.is_some_and(|r| {
                if t.at_least {
                    r >= t.bound
                } else {
                    r <= t.bound
                }
            });
            out.push((t.what.to_owned(), s, ratio, met));
        }
    }
    out
}

/// The markdown report: context, the headline table, targets, diagnostics.
pub fn markdown(report: &Report) -> String {
    let o = &report.options;
    let p = &o.plan;
    let mut out = String::new();
    let _ = writeln!(out, "Command: `{}`  ", o.command);
    let _ = writeln!(out, "Machine: {}  ", report.machine);
    let _ = writeln!(out, "Placement: {}.  ", placement(report));
    let _ = writeln!(
        out,
        "Method: each server is a fresh process per measurement; servers take turns (A B C D, then B C D A, ...); {} round{} per figure, median shown; ratio = value / tokio-tungstenite's. \
         Text messages; echo keeps one message in flight per connection ({:.1} s counted after {:.1} s of warm-up). Run took {:.0} s ({} profile).\n",
        p.rounds,
        if p.rounds == 1 { "" } else { "s" },
        p.window.measure.as_secs_f64(),
        p.window.warmup.as_secs_f64(),
        report.elapsed.as_secs_f64(),
        match report.options.profile {
            Profile::Full => "full",
            Profile::Quick => "quick",
            Profile::Smoke => "smoke",
        }
    );
    let headline: Vec<&Figure> = report.figures.iter().filter(|f| !f.diagnostic).collect();
    table(&mut out, report, &headline);
    let _ = writeln!(
        out,
        "\nLatency: open loop at {} msg/s ({:.0}% of the slowest server's echo rate at that size and connection count), measured from each message's scheduled send time. \
         Memory: (server RSS with {} idle connections, each having echoed one 64 B message − RSS before) / {}; kernel socket buffers are not in RSS. \
         Handshakes: {} upgrades in flight, each connection reset once its 101 arrives. \
         Broadcast: `BROADCAST {}` on a control connection; time until the last of {} members' sockets is readable (epoll), median of {} broadcasts; \
         tokio servers use a `Mutex<HashMap<id, UnboundedSender<Message>>>` loop over members (tokio-tungstenite's examples/server.rs idiom), throng one `publish`, Bun one `server.publish` (uWebSockets' topics). \
         Pub/sub: {} publishers each publish {} B, wait for the server's ack, publish again; K = {} subscribers; rate counted at the subscribers.",
        group(report.latency_rate.round() as u64),
        p.latency_load * 100.0,
        group(p.idle_conns as u64),
        group(p.idle_conns as u64),
        p.handshake_concurrency,
        p.broadcast_size,
        group(p.broadcast_members as u64),
        p.broadcast_repeats,
        p.pubsub_publishers,
        p.pubsub_size,
        group(p.pubsub_subscribers as u64),
    );
    if report.servers().contains(&ServerKind::Floor) {
        let _ = writeln!(
            out,
            "\nfloor (bare epoll) is a diagnostic, not a competitor: one thread, mio and throng's protocol crate, each write straight to the socket, no timers, backpressure policy, pools or limits beyond the decoder's (benches/src/servers/floor.rs). \
             The distance from throng to it is what the engine's machinery costs; from it to zero, the kernel's share (over loopback each send also runs the receiver's TCP stack)."
        );
    }
    if report.noisy > 0 {
        let _ = writeln!(
            out,
            "\n**Warning:** {} measurement(s) ran while other work kept the machine busy; their figures are not trustworthy.",
            report.noisy
        );
    }
    for (s, why) in &report.unavailable {
        let _ = writeln!(out, "\n{} was not measured: {why}", s.label());
    }
    let v = verdicts(report);
    if !v.is_empty() {
        out.push_str("\n| target | server | ratio | |\n|---|---|--:|:-:|\n");
        for (what, s, r, met) in v {
            let _ = writeln!(
                out,
                "| {what} | {} | {} | {} |",
                s.label(),
                r.map_or("n/a".into(), fmt_ratio),
                match (r, met) {
                    // Not run (`--only`) or a server did not answer: no verdict.
                    (None, _) => "not measured",
                    (Some(_), true) => "met",
                    (Some(_), false) => "**missed**",
                }
            );
        }
    }
    let diag: Vec<&Figure> = report.figures.iter().filter(|f| f.diagnostic).collect();
    if !diag.is_empty() {
        out.push_str("\nDiagnostics: server CPU (what each server spent, read from /proc/PID/task/*/schedstat over the same windows) and, for echo, the fewest echoes one connection got in the window as a share of the mean connection's (100%: all served alike; a server that serves some connections over and over while others wait gets its rate that way)\n\n");
        table(&mut out, report, &diag);
    }
    out
}

/// Every figure with every round, for machines.
pub fn json(report: &Report) -> Value {
    let o = &report.options;
    let p = &o.plan;
    let figures: Vec<Value> = report
        .figures
        .iter()
        .map(|f| {
            let servers: serde_json::Map<String, Value> = f
                .values
                .iter()
                .map(|(s, vs)| (s.id().to_owned(), json!({ "rounds": vs, "median": f.median(*s), "ratio_to_tokio_tungstenite": f.ratio(*s) })))
                .collect();
            json!({
                "key": f.key,
                "label": f.label,
                "unit": f.unit,
                "better": if f.better == Better::Higher { "higher" } else { "lower" },
                "diagnostic": f.diagnostic,
                "servers": servers,
            })
        })
        .collect();
    let targets: Vec<Value> = verdicts(report)
        .into_iter()
        .map(
            |(what, s, r, met)| json!({ "target": what, "server": s.id(), "ratio": r, "met": met }),
        )
        .collect();
    json!({
        "command": o.command,
        "machine": report.machine,
        "server_threads": o.threads,
        "server_cpus": o.server_cpus,
        "load_cpus": o.load_cpus,
        "elapsed_s": report.elapsed.as_secs_f64(),
        "noisy_measurements": report.noisy,
        "plan": {
            "rounds": p.rounds,
            "warmup_s": p.window.warmup.as_secs_f64(),
            "measure_s": p.window.measure.as_secs_f64(),
            "echo_sizes": p.echo_sizes,
            "echo_conns": p.echo_conns,
            "latency_conns": p.latency_conns,
            "latency_size": p.latency_size,
            "latency_rate": report.latency_rate,
            "idle_conns": p.idle_conns,
            "handshake_concurrency": p.handshake_concurrency,
            "broadcast_members": p.broadcast_members,
            "broadcast_size": p.broadcast_size,
            "broadcast_repeats": p.broadcast_repeats,
            "pubsub_subscribers": p.pubsub_subscribers,
            "pubsub_publishers": p.pubsub_publishers,
            "pubsub_size": p.pubsub_size,
        },
        "unavailable": report.unavailable.iter().map(|(s, why)| json!({ "server": s.id(), "reason": why })).collect::<Vec<_>>(),
        "figures": figures,
        "targets": targets,
    })
}

fn color(s: ServerKind) -> &'static str {
    match s {
        ServerKind::ThrongUring => "#1f5fa8",
        ServerKind::ThrongEpoll => "#5fa2dd",
        ServerKind::Tungstenite => "#9a9a9a",
        ServerKind::Fastws => "#f28e2b",
        ServerKind::Floor => "#59a14f",
        ServerKind::Bun => "#b07aa1",
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A grouped bar chart of every headline figure: how many times better than
/// tokio-tungstenite each server is (log scale, so 0.5× and 2× are equally far from 1×).
pub fn svg(report: &Report) -> String {
    let figures: Vec<&Figure> = report.figures.iter().filter(|f| !f.diagnostic).collect();
    let servers = report.servers();
    let bar = 16.0;
    let gap = 26.0;
    let group_w = servers.len() as f64 * bar + gap;
    let (left, top, plot_h) = (70.0, 70.0, 330.0);
    let width = (left + figures.len() as f64 * group_w + 30.0).max(760.0);
    let height = top + plot_h + 150.0;
    let advs: Vec<f64> = figures
        .iter()
        .flat_map(|f| servers.iter().filter_map(|s| f.advantage(*s)))
        .filter(|a| a.is_finite() && *a > 0.0)
        .collect();
    let lo = advs.iter().copied().fold(0.5f64, f64::min).log10().floor();
    let hi = advs.iter().copied().fold(2.0f64, f64::max).log10().ceil();
    let y = |a: f64| top + plot_h * (hi - a.log10().clamp(lo, hi)) / (hi - lo);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" font-family="sans-serif" font-size="11">"##
    );
    let _ = writeln!(s, r##"<rect width="100%" height="100%" fill="white"/>"##);
    let _ = writeln!(
        s,
        r##"<text x="{left}" y="22" font-size="15" font-weight="bold">Times better than tokio-tungstenite (log scale, above 1× is better)</text>"##
    );
    let _ = writeln!(
        s,
        r##"<text x="{left}" y="40" fill="#555">{}</text>"##,
        esc(&report.machine)
    );
    let o = &report.options;
    let _ = writeln!(
        s,
        r##"<text x="{left}" y="55" fill="#555">servers: {} worker thread(s) on CPU {}; load generator on CPU {}; medians of {} round(s); ↓: the raw figure is better when lower</text>"##,
        o.threads,
        cpu_list(&o.server_cpus),
        cpu_list(&o.load_cpus),
        o.plan.rounds
    );
    let mut decade = lo;
    while decade <= hi {
        for m in [1.0, 2.0, 5.0] {
            let a = 10f64.powf(decade) * m;
            if a.log10() > hi + 1e-9 {
                break;
            }
            let yy = y(a);
            let major = m == 1.0;
            let _ = writeln!(
                s,
                r##"<line x1="{left}" x2="{:.1}" y1="{yy:.1}" y2="{yy:.1}" stroke="{}" stroke-width="{}"/>"##,
                width - 30.0,
                if (a - 1.0).abs() < 1e-9 {
                    "#333"
                } else if major {
                    "#ccc"
                } else {
                    "#eee"
                },
                if (a - 1.0).abs() < 1e-9 { 1.5 } else { 1.0 }
            );
            let label = if a >= 1.0 {
                format!("{a:.0}×")
            } else {
                format!("{a}×")
            };
            let _ = writeln!(
                s,
                r##"<text x="{:.1}" y="{:.1}" text-anchor="end" fill="#555">{label}</text>"##,
                left - 6.0,
                yy + 4.0
            );
        }
        decade += 1.0;
    }
    for (g, f) in figures.iter().enumerate() {
        let x0 = left + g as f64 * group_w + gap / 2.0;
        for (i, &srv) in servers.iter().enumerate() {
            let Some(a) = f.advantage(srv) else { continue };
            let x = x0 + i as f64 * bar;
            let (y1, y0) = (y(a), y(1.0));
            let (ry, rh) = if y1 < y0 {
                (y1, y0 - y1)
            } else {
                (y0, y1 - y0)
            };
            let _ = writeln!(
                s,
                r##"<rect x="{x:.1}" y="{ry:.1}" width="{:.1}" height="{:.1}" fill="{}"><title>{}: {}</title></rect>"##,
                bar - 2.0,
                rh.max(0.5),
                color(srv),
                esc(srv.label()),
                fmt_ratio(a)
            );
            if srv != ServerKind::Tungstenite {
                let ty = if y1 < y0 { y1 - 3.0 } else { y1 + 10.0 };
                let _ = writeln!(
                    s,
                    r##"<text x="{:.1}" y="{ty:.1}" font-size="9" text-anchor="middle">{}</text>"##,
                    x + bar / 2.0 - 1.0,
                    short_ratio(a)
                );
            }
        }
        let cx = x0 + servers.len() as f64 * bar / 2.0;
        let ly = top + plot_h + 12.0;
        let _ = writeln!(
            s,
            r##"<text transform="translate({cx:.1},{ly:.1}) rotate(-35)" text-anchor="end">{}</text>"##,
            esc(&short_label(f))
        );
    }
    let ly = height - 22.0;
    let mut lx = left;
    for &srv in &servers {
        let _ = writeln!(
            s,
            r##"<rect x="{lx:.1}" y="{:.1}" width="12" height="12" fill="{}"/><text x="{:.1}" y="{ly:.1}">{}</text>"##,
            ly - 10.0,
            color(srv),
            lx + 16.0,
            esc(srv.label())
        );
        lx += 30.0 + srv.label().len() as f64 * 6.5;
    }
    s.push_str("</svg>\n");
    s
}

fn short_ratio(a: f64) -> String {
    if a >= 10.0 {
        format!("{a:.0}")
    } else if a >= 0.1 {
        format!("{a:.1}")
    } else {
        format!("{a:.2}")
    }
}

/// A figure's name under its bars: short, since it is drawn at an angle.
fn short_label(f: &Figure) -> String {
    let dir = if f.better == Better::Higher {
        ""
    } else {
        " ↓"
    };
    let name = match f.key.as_str() {
        "latency_p50" => "Latency p50".to_owned(),
        "latency_p99" => "Latency p99".to_owned(),
        "latency_p999" => "Latency p99.9".to_owned(),
        "memory" => "Memory / idle conn".to_owned(),
        "handshakes" => "Handshakes/s".to_owned(),
        "handshake_capacity" => "Handshakes / CPU-s".to_owned(),
        "broadcast" => "Broadcast time".to_owned(),
        "pubsub" => "Pub/sub delivered/s".to_owned(),
        key => match key.strip_prefix("echo_").and_then(|r| r.split_once('_')) {
            Some((size, conns)) => {
                let size: usize = size.parse().unwrap_or(0);
                let size = if size >= 1024 {
                    format!("{} KiB", size / 1024)
                } else {
                    format!("{size} B")
                };
                format!("Echo {size} × {}", group(conns.parse().unwrap_or(0)))
            }
            None => f.label.clone(),
        },
    };
    format!("{name}{dir}")
}
