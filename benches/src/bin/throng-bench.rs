//! `throng-bench compare [--quick] [--json FILE]`: throng against tokio-tungstenite,
//! fastwebsockets and Bun, every figure with its ratio to tokio-tungstenite.
//! `throng-bench count [--smoke] ...`: instructions per echoed message under callgrind.
//! `throng-bench deflate ...`: permessage-deflate echo, broadcast and memory figures.
//! `throng-bench serve ...`: one of the servers, as `compare` starts them.

use std::path::PathBuf;
use std::process::ExitCode;

use throng_bench::compare::{self, Options, Profile};
use throng_bench::count;
use throng_bench::report;
use throng_bench::servers::{self, ServeOptions, ServerKind};

const USAGE: &str = "\
usage:
  throng-bench compare [--quick | --smoke] [--json FILE] [--svg FILE] [--markdown FILE]
                       [--threads N] [--server-cpus LIST] [--load-cpus LIST]
                       [--servers throng-uring,throng-epoll,tungstenite,fastws,bun,floor] [--rounds N] [--quiet]
                       [--only echo,latency,memory,handshakes,broadcast,pubsub]
                       [--echo-sizes 64,16384] [--echo-conns 100,1000,10000] [--measure-ms MS]
                       [--latency-conns N] [--latency-rate MSGS_PER_S]
  throng-bench wss [--quick | --smoke] [--rounds N] [--server-cpu F]
                   [--only memory,echo,handshakes] [--markdown FILE] [--json FILE] [--quiet]
  throng-bench count [--smoke] [--servers LIST] [--sizes 64,16384] [--connections N]
                     [--seconds S] [--warmup S] [--top N] [--json FILE] [--markdown FILE]
                     [--out DIR] [--no-limits | --limits FILE] [--native-string-ops]
  throng-bench deflate [--seconds S] [--conns N] [--subs N] [--markdown FILE]
  throng-bench serve --server throng|tungstenite|fastws|floor|bun [--backend uring|epoll]
                     [--threads N] [--addr HOST:PORT] [--cpus LIST]
                     [--tls-cert PEM --tls-key PEM (throng, tungstenite: wss://)]

compare: by default each server gets 1 worker thread pinned to the first allowed CPU and the
load generator runs on the other CPUs; the SVG chart goes to target/throng-bench/compare.svg.
wss: throng (io_uring, epoll) over wss:// against tokio-tungstenite over tokio-rustls, same
rustls, certificate and config: memory per idle connection (15,000), echo 64 B x 1,000,
throng's wss/ws ratio, handshakes/s; the certificate goes to target/throng-bench/wss.
In the echo and handshake rows each server is capped at --server-cpu CPUs (default 0.4; 0:
no cap) by a cgroup v1 CPU quota and the load runs on every CPU, so the server bounds the rate.
count: needs valgrind and throng-load beside this binary (cargo build --release -p throng-load);
dumps go to target/throng-bench/count; exit status 1 when a check or a limit in
benches/count-limits.txt (the release profile's; --limits FILE for another build, as CI's
benches/count-limits-ci.txt) fails.";

fn cpus(list: &str) -> Result<Vec<usize>, String> {
    list.split(',')
        .filter(|s| !s.is_empty())
        .map(|c| {
            c.trim()
                .parse::<usize>()
                .map_err(|e| format!("bad CPU {c:?}: {e}"))
        })
        .collect()
}

fn numbers(list: &str) -> Result<Vec<usize>, String> {
    list.split(',')
        .map(|n| {
            n.trim()
                .parse::<usize>()
                .map_err(|e| format!("bad number {n:?}: {e}"))
        })
        .collect()
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("compare") => compare_cmd(&args[1..]),
        Some("count") => return count_cmd(&args[1..]),
        Some("wss") => wss_cmd(&args[1..]),
        Some("deflate") => return throng_bench::deflate::main(&args[1..]),
        Some("serve") => match serve_options(&args[1..]) {
            Ok(o) => return servers::serve(&o),
            Err(e) => Err(e),
        },
        _ => Err(String::new()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if e.is_empty() {
                eprintln!("{USAGE}");
            } else {
                eprintln!("throng-bench: {e}");
            }
            ExitCode::from(2)
        }
    }
}

fn serve_options(args: &[String]) -> Result<ServeOptions, String> {
    let mut o = ServeOptions {
        server: String::new(),
        backend: "epoll".into(),
        threads: 1,
        addr: "127.0.0.1:0".parse().expect("valid address"),
        cpus: Vec::new(),
        tls: None,
    };
    let (mut cert, mut key) = (None, None);
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--server" => o.server = value.clone(),
            "--backend" => o.backend = value.clone(),
            "--threads" => o.threads = value.parse().map_err(|e| format!("--threads: {e}"))?,
            "--addr" => o.addr = value.parse().map_err(|e| format!("--addr: {e}"))?,
            "--cpus" => o.cpus = cpus(value)?,
            "--tls-cert" => cert = Some(PathBuf::from(value)),
            "--tls-key" => key = Some(PathBuf::from(value)),
            _ => return Err(String::new()),
        }
    }
    if o.server.is_empty() {
        return Err(String::new());
    }
    o.tls = match (cert, key) {
        (Some(c), Some(k)) => Some((c, k)),
        (None, None) => None,
        _ => return Err("--tls-cert and --tls-key go together".into()),
    };
    Ok(o)
}

fn compare_cmd(args: &[String]) -> Result<(), String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find own executable: {e}"))?;
    let mut profile = Profile::Full;
    let (mut json, mut markdown) = (None::<PathBuf>, None::<PathBuf>);
    let mut svg = PathBuf::from("target/throng-bench/compare.svg");
    let (mut threads, mut server_cpus, mut load_cpus, mut servers, mut rounds) =
        (None, None, None, None, None);
    let mut quiet = false;
    let (mut only, mut echo_sizes, mut echo_conns, mut measure) = (None, None, None, None);
    let (mut latency_conns, mut latency_rate) = (None, None);
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--quick" => profile = Profile::Quick,
            "--smoke" => profile = Profile::Smoke,
            "--quiet" => quiet = true,
            "--json" => json = Some(PathBuf::from(value()?)),
            "--svg" => svg = PathBuf::from(value()?),
            "--markdown" => markdown = Some(PathBuf::from(value()?)),
            "--threads" => {
                threads = Some(
                    value()?
                        .parse::<usize>()
                        .map_err(|e| format!("--threads: {e}"))?
                        .max(1),
                )
            }
            "--server-cpus" => server_cpus = Some(cpus(&value()?)?),
            "--load-cpus" => load_cpus = Some(cpus(&value()?)?),
            "--rounds" => {
                rounds = Some(
                    value()?
                        .parse::<usize>()
                        .map_err(|e| format!("--rounds: {e}"))?
                        .max(1),
                )
            }
            "--only" => {
                only = Some(
                    value()?
                        .split(',')
                        .map(|s| s.trim().to_owned())
                        .collect::<Vec<_>>(),
                )
            }
            "--echo-sizes" => echo_sizes = Some(numbers(&value()?)?),
            "--echo-conns" => echo_conns = Some(numbers(&value()?)?),
            "--measure-ms" => {
                measure = Some(std::time::Duration::from_millis(
                    value()?.parse().map_err(|e| format!("--measure-ms: {e}"))?,
                ))
            }
            "--latency-conns" => {
                latency_conns = Some(
                    value()?
                        .parse::<usize>()
                        .map_err(|e| format!("--latency-conns: {e}"))?
                        .max(1),
                )
            }
            "--latency-rate" => {
                latency_rate = Some(
                    value()?
                        .parse::<f64>()
                        .map_err(|e| format!("--latency-rate: {e}"))?,
                )
            }
            "--servers" => {
                servers = Some(
                    value()?
                        .split(',')
                        .map(|s| s.trim().parse::<ServerKind>())
                        .collect::<Result<Vec<_>, _>>()?,
                )
            }
            _ => return Err(String::new()),
        }
    }
    let mut options = Options::new(profile, exe);
    if let Some(t) = threads {
        options.threads = t;
        options.place();
    }
    if let Some(c) = server_cpus {
        options.server_cpus = c;
    }
    if let Some(c) = load_cpus {
        options.load_cpus = c;
    }
    if let Some(s) = servers {
        options.servers = s;
    }
    if let Some(r) = rounds {
        options.plan.rounds = r;
    }
    if let Some(o) = only {
        options.plan.only = o;
    }
    if let Some(s) = echo_sizes {
        options.plan.echo_sizes = s;
    }
    if let Some(c) = echo_conns {
        options.plan.echo_conns = c;
    }
    if let Some(c) = latency_conns {
        options.plan.latency_conns = c;
    }
    options.plan.latency_rate = latency_rate;
    if let Some(m) = measure {
        options.plan.window.measure = m;
        options.plan.latency_window.measure = m;
    }
    options.progress = !quiet;
    options.command = format!(
        "cargo run --release -p throng-bench -- compare {}",
        args.join(" ")
    );
    let report = compare::run(options).map_err(|e| e.to_string())?;
    let md = report::markdown(&report);
    println!("{md}");
    if let Some(dir) = svg.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    std::fs::write(&svg, report::svg(&report)).map_err(|e| format!("{}: {e}", svg.display()))?;
    eprintln!("chart: {}", svg.display());
    if let Some(path) = json {
        let text =
            serde_json::to_string_pretty(&report::json(&report)).map_err(|e| e.to_string())?;
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
        eprintln!("json: {}", path.display());
    }
    if let Some(path) = markdown {
        std::fs::write(&path, &md).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}

fn wss_cmd(args: &[String]) -> Result<(), String> {
    use throng_bench::wss;
    let exe = std::env::current_exe().map_err(|e| format!("cannot find own executable: {e}"))?;
    let mut plan = wss::Plan::full();
    let (mut json, mut markdown, mut rounds) = (None::<PathBuf>, None::<PathBuf>, None);
    let mut quiet = false;
    let mut cap = None::<Option<f64>>;
    let mut only = Vec::new();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--quick" => plan = wss::Plan::quick(),
            "--smoke" => plan = wss::Plan::smoke(),
            "--quiet" => quiet = true,
            "--json" => json = Some(PathBuf::from(value()?)),
            "--markdown" => markdown = Some(PathBuf::from(value()?)),
            "--only" => only = value()?.split(',').map(str::to_owned).collect(),
            "--server-cpu" => {
                let v = value()?
                    .parse::<f64>()
                    .map_err(|e| format!("--server-cpu: {e}"))?;
                cap = Some((v > 0.0).then_some(v.clamp(0.1, 64.0)));
            }
            "--rounds" => {
                rounds = Some(
                    value()?
                        .parse::<usize>()
                        .map_err(|e| format!("--rounds: {e}"))?
                        .clamp(1, 100),
                )
            }
            _ => return Err(String::new()),
        }
    }
    if let Some(r) = rounds {
        plan.rounds = r;
    }
    let mut options = wss::Options::new(plan, exe);
    if let Some(c) = cap {
        options.set_cap(c);
    }
    options.only = only;
    options.progress = !quiet;
    options.command = format!(
        "cargo run --release -p throng-bench -- wss {}",
        args.join(" ")
    );
    let report = wss::run(&options).map_err(|e| e.to_string())?;
    let md = wss::markdown(&report);
    println!("{md}");
    if let Some(path) = json {
        let text = serde_json::to_string_pretty(&wss::json(&report)).map_err(|e| e.to_string())?;
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    if let Some(path) = markdown {
        std::fs::write(&path, &md).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}

fn count_cmd(args: &[String]) -> ExitCode {
    match count_run(args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) if e.is_empty() => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("throng-bench count: {e}");
            ExitCode::from(2)
        }
    }
}

/// Runs `count`; `Ok(false)`: it ran and a check failed.
fn count_run(args: &[String]) -> Result<bool, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find own executable: {e}"))?;
    let load = exe.with_file_name("throng-load");
    let smoke = args.iter().any(|a| a == "--smoke");
    let mut o = if smoke {
        count::Options::smoke(exe, load)
    } else {
        count::Options::full(exe, load)
    };
    let (mut json, mut markdown) = (None::<PathBuf>, None::<PathBuf>);
    let seconds = |v: String, flag: &str| -> Result<std::time::Duration, String> {
        v.parse::<f64>()
            .ok()
            .filter(|s| s.is_finite() && *s > 0.0 && *s <= 600.0)
            .map(std::time::Duration::from_secs_f64)
            .ok_or_else(|| format!("{flag}: {v:?} is not a number of seconds (0 to 600)"))
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--smoke" => {}
            "--quiet" => o.progress = false,
            "--no-limits" => o.limits.clear(),
            "--limits" => {
                let path = value()?;
                let text =
                    std::fs::read_to_string(&path).map_err(|e| format!("--limits {path}: {e}"))?;
                o.limits =
                    count::parse_limits(&text).map_err(|e| format!("--limits {path}: {e}"))?;
            }
            "--native-string-ops" => o.vector_string_ops = false,
            "--json" => json = Some(PathBuf::from(value()?)),
            "--markdown" => markdown = Some(PathBuf::from(value()?)),
            "--out" => o.out_dir = PathBuf::from(value()?),
            "--servers" => {
                o.servers = value()?
                    .split(',')
                    .map(|s| s.trim().parse::<ServerKind>())
                    .collect::<Result<Vec<_>, _>>()?
            }
            "--sizes" => o.sizes = numbers(&value()?)?,
            "--connections" => {
                o.connections = value()?
                    .parse::<usize>()
                    .ok()
                    .filter(|&c| (1..=10_000).contains(&c))
                    .ok_or("--connections: 1 to 10,000")?
            }
            "--seconds" => o.window = seconds(value()?, "--seconds")?,
            "--warmup" => o.warmup = seconds(value()?, "--warmup")?,
            "--top" => o.top = value()?.parse().map_err(|e| format!("--top: {e}"))?,
            _ => return Err(String::new()),
        }
    }
    if o.sizes.iter().any(|&s| s > throng_load::args::MAX_SIZE) {
        return Err(format!(
            "--sizes: at most {} bytes",
            throng_load::args::MAX_SIZE
        ));
    }
    o.command = format!(
        "cargo build --release -p throng-load -p throng-bench && target/release/throng-bench count {}",
        args.join(" ")
    );
    let report = count::run(o).map_err(|e| e.to_string())?;
    let md = count::markdown(&report);
    println!("{md}");
    if let Some(path) = json {
        let text =
            serde_json::to_string_pretty(&count::json(&report)).map_err(|e| e.to_string())?;
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    if let Some(path) = markdown {
        std::fs::write(&path, &md).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(report.failures.is_empty())
}
