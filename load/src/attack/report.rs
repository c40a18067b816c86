//! The markdown table of an attack run: one row per backend and mode.

use serde_json::Value;

/// What the attack did and how the server answered, in a few words.
pub fn attack_summary(r: &Value) -> String {
    let a = &r["attack"];
    let n = |k: &str| a[k].as_u64().unwrap_or(0);
    match r["mode"].as_str().unwrap_or("") {
        "slowloris" => {
            let mut s = format!(
                "{} conns, {} B heads, {} open at most; server closed {}",
                n("connected"),
                n("head_bytes"),
                n("most_open"),
                n("closed_by_server"),
            );
            if let Some(t) = a["all_closed_after_s"].as_f64() {
                s.push_str(&format!(" (all by {t} s)"));
            }
            s
        }
        "flood" => format!(
            "{} peers, {} MiB messages: {} sent ({} MiB), {} closed by server",
            n("connections"),
            n("message_bytes") >> 20,
            n("messages_sent"),
            n("mib_sent"),
            n("closed_by_server"),
        ),
        "half-open" => format!(
            "{} of {} peers opened, then cut off",
            n("opened"),
            n("peers")
        ),
        "garbage" => format!(
            "{} conns, 10 kinds; {} left open",
            n("connections"),
            n("left_open")
        ),
        "rst-storm" => format!("{} resets ({}/s)", n("resets"), n("per_s")),
        "connect-storm" => format!(
            "{} connects ({}/s), {} held at most",
            n("connects"),
            n("per_s"),
            n("most_held")
        ),
        _ => a["error"].as_str().unwrap_or("").to_string(),
    }
}

/// The table, with a header.
pub fn table(results: &[Value]) -> String {
    let mut s = String::from(
        "| backend | mode | attack | canary worst RTT ms / lost | RSS MiB before / peak / after \
         | server fds before / peak | released after s | server CPU s (% of a core) | ok |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n",
    );
    for r in results {
        let f = |v: &Value| match v.as_f64() {
            Some(x) => format!("{x}"),
            None => "-".into(),
        };
        let cpu = &r["cpu"];
        let cpu_s = cpu["user_s"].as_f64().unwrap_or(0.0) + cpu["sys_s"].as_f64().unwrap_or(0.0);
        let ok = if r["ok"] == Value::Bool(true) {
            "yes".to_string()
        } else {
            let p: Vec<&str> = r["problems"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            format!("**no**: {}", p.join("; "))
        };
        s.push_str(&format!(
            "| {} | {} | {} | {} / {} | {} / {} / {} | {} / {} | {} | {:.2} ({}) | {} |\n",
            r["backend"].as_str().unwrap_or("?"),
            r["mode"].as_str().unwrap_or("?"),
            attack_summary(r),
            f(&r["canary"]["worst_rtt_ms"]),
            f(&r["canary"]["lost"]),
            f(&r["rss_mib"]["before"]),
            f(&r["rss_mib"]["peak"]),
            f(&r["rss_mib"]["after"]),
            f(&r["fds"]["before"]),
            f(&r["fds"]["peak"]),
            f(&r["released_after_s"]),
            cpu_s,
            f(&cpu["percent_of_a_core"]),
            ok,
        ));
    }
    s
}
