//! The scale benchmark: the release exporter binary against a large account in the built-in
//! simulator (AWS's own throttling buckets on), with the exporter's default configuration and
//! API budget. Run it with `scripts/bench-scale.sh`; `cargo test` only builds it.
//!
//! Prints: seconds to ready, seconds until every open map run is on /metrics, calls per operation
//! in a steady minute with the wasted ones, the slowest open run's refresh age, RSS, and
//! /metrics requests per second and p99.

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_workflow_exporter::simulator::quotas::{self, Quotas};
use aws_workflow_exporter::simulator::scale::{self, ScaleSpec, ScaleWorld};
use aws_workflow_exporter::simulator::{unix_now, Call, Simulator, World};
use clap::Parser;
use common::{Binary, Daemon};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// The scale benchmark's options (scripts/bench-scale.sh documents them); an unknown one is an
/// error.
#[derive(Parser)]
#[command(name = "scale")]
struct Options {
    /// Give up waiting for ready and all open runs (or, raised, all map runs tracked) after
    /// this many seconds.
    #[arg(long, value_name = "SECONDS", default_value = "300", value_parser = seconds)]
    cap: Duration,
    /// The window calls are counted in, in seconds.
    #[arg(long, value_name = "SECONDS", default_value = "60", value_parser = seconds)]
    steady: Duration,
    /// The window open runs' refresh ages are measured over (from the steady window's start),
    /// in seconds.
    #[arg(long, value_name = "SECONDS", default_value = "300", value_parser = seconds)]
    observe: Duration,
    /// How long /metrics is loaded, in seconds.
    #[arg(long, value_name = "SECONDS", default_value = "10", value_parser = seconds)]
    load: Duration,
    /// The exporter's `aws_api.quota_share`.
    #[arg(long, value_name = "F", default_value_t = 0.5)]
    quota_share: f64,
    /// An account whose Step Functions quotas were raised far beyond need (and the simulator
    /// not throttling): measures memory with every map run tracked instead of the call budget.
    #[arg(long = "raised-quotas")]
    raised: bool,
    /// Push over OTLP every second to a receiver in the bench, this many points per request.
    #[arg(long, value_name = "N")]
    otlp_max_points: Option<usize>,
    /// A busy account instead of the default one: this many state machines, each with one
    /// running execution (one open map run) and one finished.
    #[arg(long, value_name = "N")]
    busy: Option<usize>,
    /// An organisation instead: this many small accounts (see `scale::build_accounts`), one
    /// target each reached through AssumeRole, compared with one such account alone.
    #[arg(long, value_name = "N")]
    accounts: Option<usize>,
    /// What `cargo bench` passes; without it (`cargo test --all-targets`) nothing runs.
    #[arg(long, hide = true)]
    bench: bool,
}

fn seconds(text: &str) -> Result<Duration, String> {
    text.parse()
        .map(Duration::from_secs)
        .map_err(|_| format!("`{text}` is not a whole number of seconds"))
}

fn main() {
    // `cargo test --all-targets` runs bench targets too: only `cargo bench` (which passes
    // `--bench`) runs the benchmark.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let opts = Options::parse();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(async move {
            match opts.accounts {
                Some(n) => run_accounts(&opts, n).await,
                None => run(opts).await,
            }
        });
}

/// The exporter on `yaml` with the bench's keys, serving on a free loopback port.
fn start_exporter(yaml: &str) -> Daemon {
    Binary::new()
        .env("AWS_ACCESS_KEY_ID", "bench")
        .env("AWS_SECRET_ACCESS_KEY", "bench")
        .config(yaml)
        .start()
}

/// A new user's configuration: one target, every default (poll interval, lookback, retention,
/// quota_share) as shipped.
fn exporter_yaml(endpoint: &str, opts: &Options, otlp_sink: Option<SocketAddr>) -> String {
    let mut yaml = format!(
        "targets:\n  - name: bench\n    regions: [us-east-1]\n    endpoint_url: {endpoint}\n"
    );
    yaml.push_str(&format!("aws_api:\n  quota_share: {}\n", opts.quota_share));
    if opts.raised {
        yaml.push_str("  quotas:\n");
        for action in [
            "ListExecutions",
            "GetExecutionHistory",
            "ListMapRuns",
            "DescribeMapRun",
        ] {
            yaml.push_str(&format!(
                "    states:{action}: {{bucket_size: 100000, refill_per_second: 10000}}\n"
            ));
        }
    }
    if let (Some(sink), Some(max)) = (otlp_sink, opts.otlp_max_points) {
        yaml.push_str(&format!(
            "otlp:\n  metrics_endpoint: http://{sink}/v1/metrics\n  interval: 1s\n  compression: gzip\n  max_points_per_request: {max}\n"
        ));
    }
    yaml
}

/// CPU time (user + system) process `pid` has used so far.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces): utime and stime are the 14th
    // and 15th fields of the line, the 12th and 13th after `) `.
    let ticks: u64 = stat
        .rsplit_once(") ")
        .map(|(_, rest)| {
            rest.split(' ')
                .skip(11)
                .take(2)
                .filter_map(|v| v.parse::<u64>().ok())
                .sum()
        })
        .unwrap_or(0);
    Duration::from_secs_f64(ticks as f64 / clock_ticks_per_second())
}

/// (VmRSS, VmHWM) of process `pid` in KiB.
fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// A keep-alive HTTP/1.1 connection that GETs paths and returns (status, body length, body).
struct Conn {
    reader: BufReader<TcpStream>,
}

impl Conn {
    async fn open(addr: SocketAddr) -> std::io::Result<Self> {
        Ok(Self {
            reader: BufReader::new(TcpStream::connect(addr).await?),
        })
    }

    async fn get(&mut self, path: &str, gzip: bool) -> std::io::Result<(u16, Vec<u8>)> {
        let enc = if gzip {
            "Accept-Encoding: gzip\r\n"
        } else {
            ""
        };
        let req = format!("GET {path} HTTP/1.1\r\nHost: bench\r\n{enc}\r\n");
        self.reader.get_mut().write_all(req.as_bytes()).await?;
        let mut line = String::new();
        self.reader.read_line(&mut line).await?;
        let status = line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let mut len = 0usize;
        loop {
            line.clear();
            if self.reader.read_line(&mut line).await? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0; len];
        self.reader.read_exact(&mut body).await?;
        Ok((status, body))
    }
}

async fn get_once(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut c = Conn::open(addr).await.ok()?;
    let (status, body) = c.get(path, false).await.ok()?;
    Some((status, String::from_utf8_lossy(&body).into_owned()))
}

/// Ids of map runs shown as running on /metrics.
fn open_runs_shown(exposition: &str) -> BTreeSet<String> {
    exposition
        .lines()
        .filter(|l| l.starts_with("aws_sfn_map_run_status{") && l.ends_with(" 1"))
        .filter(|l| l.contains("status=\"running\""))
        .filter_map(|l| l.split("map_run=\"").nth(1))
        .filter_map(|rest| rest.split('"').next())
        .map(str::to_owned)
        .collect()
}

#[derive(Default)]
struct OpStats {
    calls: usize,
    wasted: usize,
    throttled: usize,
}

/// Which calls of `window` were wasted, per (service, operation), judged against the world and
/// every earlier call: ListExecutions of a state machine without a Distributed Map, a map run
/// discovery (GetExecutionHistory or ListMapRuns) of an execution that cannot have map runs (no Distributed Map, or finished and already listed),
/// DescribeMapRun of a terminal run already described. A historical run's first describe and a
/// finished execution's first listing are backfill, not waste.
fn classify(
    world: &World,
    built: &ScaleWorld,
    earlier: &[Call],
    window: &[Call],
) -> BTreeMap<(String, String), OpStats> {
    let mut listed: BTreeSet<String> = BTreeSet::new();
    let mut described: BTreeSet<String> = BTreeSet::new();
    let remember = |c: &Call, listed: &mut BTreeSet<String>, described: &mut BTreeSet<String>| {
        if c.throttled || c.service != "sfn" {
            return;
        }
        if let Some(r) = &c.resource {
            match c.operation.as_str() {
                "GetExecutionHistory" | "ListMapRuns" => {
                    listed.insert(r.clone());
                }
                "DescribeMapRun" => {
                    described.insert(r.clone());
                }
                _ => {}
            }
        }
    };
    for c in earlier {
        remember(c, &mut listed, &mut described);
    }
    let mut out: BTreeMap<(String, String), OpStats> = BTreeMap::new();
    for c in window {
        let stats = out
            .entry((c.service.to_owned(), c.operation.clone()))
            .or_default();
        stats.calls += 1;
        if c.throttled {
            stats.throttled += 1;
        }
        let r = c.resource.as_deref().unwrap_or_default();
        let wasted = match (c.service, c.operation.as_str()) {
            ("sfn", "ListExecutions") => !built.distributed.contains(r),
            ("sfn", "GetExecutionHistory" | "ListMapRuns") => match world.sfn.executions.get(r) {
                Some(e) => {
                    !built.distributed.contains(&e.state_machine_arn)
                        || (e.status != "RUNNING" && listed.contains(r))
                }
                None => false,
            },
            ("sfn", "DescribeMapRun") => world
                .sfn
                .map_runs
                .get(r)
                .is_some_and(|run| run.status != "RUNNING" && described.contains(r)),
            _ => false,
        };
        if wasted {
            stats.wasted += 1;
        }
        remember(c, &mut listed, &mut described);
    }
    out
}

/// The exporter's share of AWS's bucket for the operation: burst, and refill per minute.
fn share_per_minute(service: &str, operation: &str, share: f64) -> Option<(f64, f64)> {
    quotas::aws_bucket(service, operation)
        .map(|(size, refill)| (size * share, refill * 60.0 * share))
}

/// An OTLP/HTTP receiver that accepts every request and counts requests and body bytes.
struct OtlpSink {
    addr: SocketAddr,
    counts: Arc<std::sync::Mutex<(usize, usize)>>,
}

impl OtlpSink {
    async fn start() -> Self {
        use http_body_util::{BodyExt, Full};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the OTLP sink");
        let addr = listener.local_addr().expect("sink address");
        let counts = Arc::new(std::sync::Mutex::new((0, 0)));
        let shared = counts.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let counts = shared.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(
                        move |req: hyper::Request<hyper::body::Incoming>| {
                            let counts = counts.clone();
                            async move {
                                let body = req
                                    .into_body()
                                    .collect()
                                    .await
                                    .map(|b| b.to_bytes().len())
                                    .unwrap_or(0);
                                let mut c = counts.lock().expect("sink counts");
                                c.0 += 1;
                                c.1 += body;
                                // An empty ExportMetricsServiceResponse: everything accepted.
                                hyper::Response::builder()
                                    .header("content-type", "application/x-protobuf")
                                    .body(Full::new(bytes::Bytes::new()))
                            }
                        },
                    );
                    let io = hyper_util::rt::TokioIo::new(stream);
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, service)
                        .await;
                });
            }
        });
        Self { addr, counts }
    }

    /// (requests, body bytes) so far.
    fn received(&self) -> (usize, usize) {
        *self.counts.lock().expect("sink counts")
    }
}

async fn scrape_load(
    addr: SocketAddr,
    duration: Duration,
    connections: usize,
    gzip: bool,
) -> (f64, Duration, Duration, usize) {
    let deadline = Instant::now() + duration;
    let mut tasks = Vec::new();
    for _ in 0..connections {
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut bytes = 0;
            let Ok(mut conn) = Conn::open(addr).await else {
                return (latencies, bytes);
            };
            while Instant::now() < deadline {
                let t = Instant::now();
                match conn.get("/metrics", gzip).await {
                    Ok((200, body)) => {
                        latencies.push(t.elapsed());
                        bytes = body.len();
                    }
                    _ => break,
                }
            }
            (latencies, bytes)
        }));
    }
    let mut all = Vec::new();
    let mut size = 0;
    for t in tasks {
        let (l, b) = t.await.expect("load task");
        all.extend(l);
        size = size.max(b);
    }
    all.sort();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    (
        all.len() as f64 / duration.as_secs_f64(),
        pct(0.5),
        pct(0.99),
        size,
    )
}

/// Counts calls over the steady window, then measures open runs' refresh ages over `observe`.
/// The window is the second poll: it starts a poll interval (the default 60 s) after the first
/// poll's first call, ListStateMachines. The second poll starts up to 10% of an interval later
/// (the scheduler's jitter) and its work stops 90% into it, so the window holds all of it and
/// nothing of the first or third. (State machines are listed again only every
/// `discovery_interval`, so a second ListStateMachines no longer marks the second poll.)
const POLL_INTERVAL: Duration = Duration::from_secs(60);

async fn steady_window(
    opts: &Options,
    world: &Arc<std::sync::Mutex<World>>,
    built: &ScaleWorld,
    started: Instant,
) {
    let (before, steady_from) = loop {
        let first = {
            let w = world.lock().expect("world");
            w.calls
                .iter()
                .find(|c| c.operation == "ListStateMachines")
                .map(|c| c.at + POLL_INTERVAL)
        };
        if let Some(from) = first {
            tokio::time::sleep_until(from.into()).await;
            let w = world.lock().expect("world");
            break (w.calls.partition_point(|c| c.at < from), from);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let steady_to = steady_from + opts.steady;
    tokio::time::sleep_until(steady_to.into()).await;
    let stats = {
        let w = world.lock().expect("world");
        let upto = w.calls.partition_point(|c| c.at <= steady_to);
        classify(&w, built, &w.calls[..before], &w.calls[before..upto])
    };
    println!(
        "steady window: {:.0} s, from a poll interval after the first poll's start, {:.0} s after start",
        opts.steady.as_secs_f64(),
        (steady_from - started).as_secs_f64()
    );
    println!("| service | operation | calls | wasted | throttled | exporter's share: burst + per minute |");
    println!("| --- | --- | --- | --- | --- | --- |");
    let mut wasted_total = 0;
    for ((service, op), s) in &stats {
        wasted_total += s.wasted;
        let share = share_per_minute(service, op, opts.quota_share)
            .map(|(burst, rate)| format!("{burst:.0} + {rate:.0}"))
            .unwrap_or_else(|| "undocumented".into());
        println!(
            "| {service} | {op} | {} | {} | {} | {share} |",
            s.calls, s.wasted, s.throttled
        );
    }
    println!("wasted calls in the steady window: {wasted_total}");

    let rest = opts.observe.saturating_sub(steady_from.elapsed());
    tokio::time::sleep(rest).await;
    let observe_to = Instant::now();
    // Refresh age: per open run, the longest time without a successful describe over the
    // observed window (from its start to the first describe, between describes, and from the
    // last one to its end).
    // Known: the same, counted only from a run's first describe (before it, nothing tells the
    // exporter that the run nears its tolerance).
    let (ages, never, near, near_known) = {
        let w = world.lock().expect("world");
        let mut last: BTreeMap<&str, Instant> = BTreeMap::new();
        let mut worst: BTreeMap<&str, Duration> = BTreeMap::new();
        let mut known_worst: BTreeMap<&str, Duration> = BTreeMap::new();
        for c in w.calls.iter().take_while(|c| c.at <= observe_to) {
            if c.operation != "DescribeMapRun" || c.throttled {
                continue;
            }
            let Some(r) = &c.resource else { continue };
            if c.at >= steady_from {
                let prev = last.get(r.as_str()).copied();
                let gap = c.at - prev.unwrap_or(steady_from).max(steady_from);
                let e = worst.entry(r.as_str()).or_default();
                *e = (*e).max(gap);
                if prev.is_some() {
                    let e = known_worst.entry(r.as_str()).or_default();
                    *e = (*e).max(gap);
                }
            }
            last.insert(r.as_str(), c.at);
        }
        let mut ages = Vec::new();
        let mut near = Vec::new();
        let mut near_known = Vec::new();
        let mut never = 0;
        for (i, (arn, _)) in built.open_runs.iter().enumerate() {
            match last.get(arn.as_str()) {
                None => never += 1,
                Some(t) => {
                    let tail = observe_to - (*t).max(steady_from);
                    let worst = worst.get(arn.as_str()).copied().unwrap_or_default();
                    ages.push(worst.max(tail));
                    if built.nears_tolerance(i) {
                        near.push(worst.max(tail));
                        let known = known_worst.get(arn.as_str()).copied().unwrap_or_default();
                        near_known.push(known.max(tail));
                    }
                }
            }
        }
        (ages, never, near, near_known)
    };
    let window = (observe_to - steady_from).as_secs_f64();
    match ages.iter().max() {
        Some(max) if never == 0 => println!(
            "slowest open map run refresh age: {:.0} s (longest time without a describe over {window:.0} s)",
            max.as_secs_f64()
        ),
        max => println!(
            "slowest open map run refresh age: {} of {} open runs never described{}",
            never,
            built.open_runs.len(),
            max.map(|m| format!("; the others up to {:.0} s", m.as_secs_f64()))
                .unwrap_or_default()
        ),
    }
    let near_open = (0..built.open_runs.len())
        .filter(|i| built.nears_tolerance(*i))
        .count();
    match near.iter().max() {
        Some(max) => println!(
            "slowest refresh age of a run nearing its tolerance: {:.0} s ({} of {near_open} such runs described in the window)",
            max.as_secs_f64(),
            near.len()
        ),
        None => println!("slowest refresh age of a run nearing its tolerance: none of {near_open} described"),
    }
    if let Some(max) = near_known.iter().max() {
        println!(
            "  the same from each one's first describe on (when the exporter can know): {:.0} s",
            max.as_secs_f64()
        );
    }
}

async fn run(opts: Options) {
    let sim = Simulator::start().await.expect("simulator starts");
    let built = {
        let mut w = sim.world();
        let spec = match opts.busy {
            Some(n) => ScaleSpec {
                distributed_state_machines: n,
                executions_per_state_machine: 2,
                map_runs_per_execution: 1,
                running_executions: n,
                plain_state_machines: 0,
                plain_running_executions: 0,
                history_secs: 3600.0,
                // A few runs nearing their tolerance among many open ones.
                near_tolerance_every: 100,
            },
            None => ScaleSpec::default(),
        };
        let built = scale::build(&mut w, &spec, unix_now());
        if !opts.raised {
            w.quotas = Some(Quotas::default());
        }
        built
    };
    let built = Arc::new(built);
    {
        // One lock for the whole summary: the world's mutex is not reentrant.
        let w = sim.world();
        let running = w
            .sfn
            .executions
            .values()
            .filter(|e| e.status == "RUNNING")
            .count();
        println!(
            "world: {} state machines ({} with a Distributed Map), {} executions ({} running), {} map runs ({} open)",
            w.sfn.state_machines.len(),
            built.distributed.len(),
            w.sfn.executions.len(),
            running,
            built.map_runs,
            built.open_runs.len()
        );
    }
    let world = sim.world_handle();
    let stepper = {
        let (world, built) = (world.clone(), built.clone());
        tokio::spawn(async move {
            let mut step = 1;
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            tick.tick().await;
            loop {
                tick.tick().await;
                scale::advance(&mut world.lock().expect("world"), &built, step);
                step += 1;
            }
        })
    };

    let started = Instant::now();
    let sink = match opts.otlp_max_points {
        Some(_) => Some(OtlpSink::start().await),
        None => None,
    };
    let exporter = start_exporter(&exporter_yaml(
        &sim.endpoint,
        &opts,
        sink.as_ref().map(|s| s.addr),
    ));
    let wanted: BTreeSet<String> = built.open_runs.iter().map(|(_, id)| id.clone()).collect();
    let mut ready_at = None;
    let mut first_open_at = None;
    let mut all_open_at = None;
    let mut shown = 0;
    let mut peak_during_start = 0;
    while started.elapsed() < opts.cap {
        if ready_at.is_none() {
            if let Some((200, _)) = get_once(exporter.addr, "/readyz").await {
                ready_at = Some(started.elapsed());
            }
        }
        if let Some((200, text)) = get_once(exporter.addr, "/metrics").await {
            shown = open_runs_shown(&text).intersection(&wanted).count();
            if shown > 0 && first_open_at.is_none() {
                first_open_at = Some(started.elapsed());
            }
            if shown == wanted.len() && all_open_at.is_none() {
                all_open_at = Some(started.elapsed());
            }
        }
        peak_during_start = peak_during_start.max(memory_kib(exporter.pid()).0);
        if ready_at.is_some() && all_open_at.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let fmt = |d: Option<Duration>, what: &str| match d {
        Some(d) => format!("{:.1} s", d.as_secs_f64()),
        None => format!(
            "not reached after {:.0} s ({what})",
            started.elapsed().as_secs_f64()
        ),
    };
    println!("ready after: {}", fmt(ready_at, "/readyz 503"));
    println!(
        "first open map run on /metrics after: {}",
        fmt(first_open_at, "none shown")
    );
    println!(
        "all {} open map runs on /metrics after: {}",
        wanted.len(),
        fmt(all_open_at, &format!("{shown} shown"))
    );

    if opts.raised {
        // Memory with every map run tracked: wait until the exporter has read them all, each
        // one described (no history backlog left).
        let mut tracked = 0.0;
        let mut backlog = f64::NAN;
        while started.elapsed() < opts.cap * 4 {
            if let Some((200, text)) = get_once(exporter.addr, "/metrics").await {
                tracked = text
                    .lines()
                    .find(|l| {
                        l.starts_with("aws_workflow_exporter_tracked_resources{")
                            && l.contains("kind=\"map_run\"")
                    })
                    .and_then(|l| l.rsplit(' ').next())
                    .and_then(|v| v.parse::<f64>().ok())
                    .unwrap_or(0.0);
                backlog = text
                    .lines()
                    .filter(|l| l.starts_with("aws_workflow_exporter_history_backlog{"))
                    .filter_map(|l| l.rsplit(' ').next())
                    .filter_map(|v| v.parse::<f64>().ok())
                    .sum();
                if tracked >= built.map_runs as f64 && backlog == 0.0 {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        println!(
            "map runs tracked: {tracked:.0} of {}, history backlog {backlog:.0}, after {:.1} s",
            built.map_runs,
            started.elapsed().as_secs_f64()
        );
    } else {
        steady_window(&opts, &world, &built, started).await;
    }
    if let Some((_, text)) = get_once(exporter.addr, "/metrics").await {
        println!(
            "exposition: {} series, {} bytes",
            text.lines().filter(|l| !l.starts_with('#')).count(),
            text.len()
        );
        let killed: f64 = text
            .lines()
            .filter(|l| l.starts_with("aws_workflow_exporter_source_restarts_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>()
            + 0.0; // an empty sum is -0
        println!("killed polls (aws_workflow_exporter_source_restarts_total): {killed}");
        for l in text
            .lines()
            .filter(|l| l.contains("backlog") && !l.starts_with('#'))
        {
            println!("  {l}");
        }
    }
    if let Some(sink) = &sink {
        // A benchmark, not a test: watch a few pushes (one a second) before reading the memory.
        let (requests, bytes) = sink.received();
        tokio::time::sleep(Duration::from_secs(5)).await;
        let (requests2, bytes2) = sink.received();
        println!(
            "otlp: {} requests, {} bytes (gzip) received in 5 s, at most {} points each",
            requests2 - requests,
            bytes2 - bytes,
            opts.otlp_max_points.unwrap_or_default()
        );
    }
    let (rss, hwm) = memory_kib(exporter.pid());
    println!(
        "rss: {:.1} MiB (peak {:.1} MiB)",
        rss as f64 / 1024.0,
        hwm.max(peak_during_start) as f64 / 1024.0
    );
    for (gzip, encoding) in [(true, "gzip"), (false, "plain")] {
        let (rps, p50, p99, size) = scrape_load(exporter.addr, opts.load, 4, gzip).await;
        println!(
            "/metrics ({encoding}, 4 keep-alive connections, {:.0} s): {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms, {} bytes",
            opts.load.as_secs_f64(),
            rps,
            p50.as_secs_f64() * 1000.0,
            p99.as_secs_f64() * 1000.0,
            size
        );
    }
    let (rss, hwm) = memory_kib(exporter.pid());
    println!(
        "rss after the scrape load: {:.1} MiB (peak {:.1} MiB)",
        rss as f64 / 1024.0,
        hwm as f64 / 1024.0
    );
    if let Some(l) = exporter.last_log_line("backfill") {
        println!("last backfill log line: {l}");
    }
    stepper.abort();
    drop(exporter);
}

/// `sysconf(_SC_CLK_TCK)`, the unit of /proc/PID/stat's times, as `getconf` tells it.
fn clock_ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// A config polling the first `n` accounts of `scale::build_accounts`, one target each
/// assuming a role in its account (the central-monitoring pattern), every default kept.
fn accounts_config(endpoint: &str, n: usize) -> String {
    let mut yaml = String::from("targets:\n");
    for i in 0..n {
        let id = scale::account_id(i);
        yaml.push_str(&format!(
            "  - name: acct-{i}\n    regions: [us-east-1]\n    endpoint_url: {endpoint}\n    role_arn: arn:aws:iam::{id}:role/exporter\n"
        ));
    }
    yaml
}

/// Waits for /readyz; the time it took from `started`, if within `cap`.
async fn wait_ready(exporter: &Daemon, started: Instant, cap: Duration) -> Option<Duration> {
    while started.elapsed() < cap {
        if let Some((200, _)) = get_once(exporter.addr, "/readyz").await {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    None
}

/// The value of a sample line starting with `prefix` (a name, or a name and labels).
fn sample(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// How long a GET of /metrics takes on a new connection, and the body's length.
async fn timed_scrape(addr: SocketAddr, gzip: bool) -> Option<(Duration, usize)> {
    let mut c = Conn::open(addr).await.ok()?;
    let t = Instant::now();
    let (status, body) = c.get("/metrics", gzip).await.ok()?;
    (status == 200).then(|| (t.elapsed(), body.len()))
}

/// The organisation benchmark: `n` small accounts, each its own target through AssumeRole.
async fn run_accounts(opts: &Options, n: usize) {
    let sim = Simulator::start().await.expect("simulator starts");
    let built = Arc::new(scale::build_accounts(&mut sim.world(), n, unix_now()));
    println!(
        "world: {n} accounts, each 2 state machines with a Distributed Map (1 open map run), 1 Transfer workflow, 2 AppFlow flows"
    );
    let world = sim.world_handle();
    let stepper = {
        let (world, built) = (world.clone(), built.clone());
        tokio::spawn(async move {
            let mut step = 1;
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            tick.tick().await;
            loop {
                tick.tick().await;
                let mut w = world.lock().expect("world");
                for (id, b) in built.iter() {
                    if let Some(account) = w.accounts.get_mut(id) {
                        scale::advance(account, b, step);
                    }
                }
                step += 1;
            }
        })
    };

    // The baseline: one such account alone, after its first poll and a few seconds more.
    let baseline_kib = {
        let yaml = accounts_config(&sim.endpoint, 1);
        let one = start_exporter(&yaml);
        let ready = wait_ready(&one, Instant::now(), opts.cap).await;
        tokio::time::sleep(Duration::from_secs(10)).await;
        let (rss, _) = memory_kib(one.pid());
        println!(
            "1 account: ready after {}, rss {:.1} MiB",
            ready.map_or("never".into(), |d| format!("{:.1} s", d.as_secs_f64())),
            rss as f64 / 1024.0
        );
        rss
    };

    let started = Instant::now();
    let yaml = accounts_config(&sim.endpoint, n);
    let exporter = start_exporter(&yaml);
    // Not ready within --cap: measured all the same, from then on.
    match wait_ready(&exporter, started, opts.cap).await {
        Some(ready) => println!("{n} accounts: ready after {:.1} s", ready.as_secs_f64()),
        None => println!(
            "{n} accounts: not ready after {:.0} s (measured from then on)",
            opts.cap.as_secs_f64()
        ),
    }

    // The steady window starts 10 s after ready (the first poll's stragglers are done) and
    // lasts --steady seconds (a poll interval by default); Prometheus scrapes every 15 s.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let before = |text: &str| {
        (
            sample(text, "aws_workflow_exporter_exposition_rebuilds_total ").unwrap_or(0.0),
            sample(
                text,
                "aws_workflow_exporter_exposition_rebuild_seconds_total ",
            )
            .unwrap_or(0.0),
        )
    };
    let (_, text) = get_once(exporter.addr, "/metrics")
        .await
        .unwrap_or_default();
    let (rebuilds0, rebuild_secs0) = before(&text);
    let assume0 = sim.world().count("sts", "AssumeRole");
    let cpu0 = cpu_time(exporter.pid());
    let t0 = Instant::now();
    let mut scrapes = Vec::new();
    for i in 1.. {
        if let Some((took, _)) = timed_scrape(exporter.addr, true).await {
            scrapes.push(took);
        }
        let next = Duration::from_secs(15 * i).min(opts.steady);
        tokio::time::sleep(next.saturating_sub(t0.elapsed())).await;
        if t0.elapsed() >= opts.steady {
            break;
        }
    }
    let cpu = cpu_time(exporter.pid()) - cpu0;
    let window = t0.elapsed();
    let assumed = sim.world().count("sts", "AssumeRole") - assume0;
    // What the CPU went on: the AWS calls of the window, per operation and per account.
    let calls: BTreeMap<(&str, String), usize> = {
        let w = sim.world();
        let mut out = BTreeMap::new();
        for c in w.calls.iter().filter(|c| c.at >= t0) {
            *out.entry((c.service, c.operation.clone())).or_default() += 1;
        }
        out
    };
    let (_, text) = get_once(exporter.addr, "/metrics")
        .await
        .unwrap_or_default();
    let (rebuilds1, rebuild_secs1) = before(&text);
    println!(
        "steady CPU: {:.1}% of a core over {:.0} s (scraped every 15 s, gzip, slowest {:.0} ms)",
        cpu.as_secs_f64() / window.as_secs_f64() * 100.0,
        window.as_secs_f64(),
        scrapes
            .iter()
            .max()
            .copied()
            .unwrap_or_default()
            .as_secs_f64()
            * 1000.0
    );
    println!(
        "sts:AssumeRole calls in the window: {assumed} (credentials are cached until they expire)"
    );
    println!(
        "AWS calls in the window: {} ({:.1} per account): {}",
        calls.values().sum::<usize>(),
        calls.values().sum::<usize>() as f64 / n as f64,
        calls
            .iter()
            .map(|((service, op), k)| format!("{service}:{op} {k}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let rebuilds = rebuilds1 - rebuilds0;
    println!(
        "publish cost: {rebuilds:.0} exposition rebuilds in the window, {:.1} ms each on average, {:.1}% of a core",
        if rebuilds > 0.0 { (rebuild_secs1 - rebuild_secs0) / rebuilds * 1000.0 } else { 0.0 },
        (rebuild_secs1 - rebuild_secs0) / window.as_secs_f64() * 100.0
    );
    println!(
        "exposition: {} series, {} bytes",
        text.lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .count(),
        text.len()
    );
    let (rss, hwm) = memory_kib(exporter.pid());
    println!(
        "rss: {:.1} MiB (peak {:.1} MiB); {:.2} MiB per account beyond the 1-account baseline of {:.1} MiB",
        rss as f64 / 1024.0,
        hwm as f64 / 1024.0,
        (rss as f64 - baseline_kib as f64) / 1024.0 / (n.max(2) - 1) as f64,
        baseline_kib as f64 / 1024.0
    );
    for (gzip, encoding) in [(true, "gzip"), (false, "plain")] {
        let (rps, p50, p99, size) = scrape_load(exporter.addr, opts.load, 4, gzip).await;
        println!(
            "/metrics ({encoding}, 4 keep-alive connections, {:.0} s): {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms, {} bytes",
            opts.load.as_secs_f64(),
            rps,
            p50.as_secs_f64() * 1000.0,
            p99.as_secs_f64() * 1000.0,
            size
        );
    }
    let failing: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("aws_workflow_exporter_poll_success{") && l.ends_with(" 0"))
        .collect();
    println!("sources whose last poll failed: {}", failing.len());
    stepper.abort();
}
