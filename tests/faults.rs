//! The fault suite: the real daemon (this crate's binary) polls the built-in simulator through the
//! AWS SDK while one service at a time answers with a fault. Every test runs one fault against
//! each of the three services at once (three simulators, three daemons) and checks, throughout:
//! the daemon stays up; /metrics answers within 1 s; the other services keep `poll_success 1`;
//! no counter sample ever decreases. And after the fault: the faulted source returns to
//! `poll_success 1` within two polls, and what finished during the fault is counted exactly once.
//! Each scenario prints its recovery time (docs/faults.md has the table).

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use aws_workflow_exporter::simulator::sfn::MapRunSpec;
use aws_workflow_exporter::simulator::{Fault, FaultKind, Simulator, World};
use common::{
    fault, fault_on_every_call, http_get, try_http_get, unix_now as now, Binary, FaultExt,
    MapRunSpecExt, Scrape,
};

const SOURCES: [&str; 3] = ["sfn_map_runs", "transfer_workflows", "appflow_flows"];

/// The simulator's service name of a source.
fn service_of(source: &str) -> &'static str {
    match source {
        "sfn_map_runs" => "sfn",
        "transfer_workflows" => "transfer",
        "appflow_flows" => "appflow",
        other => unknown(other),
    }
}

/// A source or service the suite has no case for: a new service adds its arm wherever this is
/// called (and its row to [`SOURCES`], its work to [`seed`] and [`finish_work`]).
fn unknown(name: &str) -> ! {
    panic!("tests/faults.rs has no case for `{name}`: add one")
}

/// The binary on loopback, configured for the simulator, logging at debug; killed on drop.
struct Daemon(common::Daemon);

impl std::ops::Deref for Daemon {
    type Target = common::Daemon;
    fn deref(&self) -> &common::Daemon {
        &self.0
    }
}

impl std::ops::DerefMut for Daemon {
    fn deref_mut(&mut self) -> &mut common::Daemon {
        &mut self.0
    }
}

impl Daemon {
    fn start(endpoint: &str) -> Self {
        Self::start_with(&format!("endpoint_url: {endpoint}"))
    }

    /// The daemon with one target in us-east-1; `target` adds keys to it (YAML, one per line).
    fn start_with(target: &str) -> Self {
        Self::start_with_env(target, &[])
    }

    /// [`Daemon::start_with`], with extra environment variables.
    fn start_with_env(target: &str, env: &[(&str, &str)]) -> Self {
        let target = target.replace('\n', "\n    ");
        Self(
            Binary::new()
                .config(&format!(
                    // The smallest poll interval the configuration allows; listings every poll, so a
                    // fault on any call meets every poll; an operation timeout that a loaded test
                    // machine does not hit by accident.
                    "poll_interval: 1s\n\
                     sources:\n  sfn_map_runs:\n    discovery_interval: 0s\n  transfer_workflows:\n    discovery_interval: 0s\n\
                     aws_api:\n  max_attempts: 2\n  connect_timeout: 1s\n  operation_timeout: 3s\n  quota_share: 1\n\
                     targets:\n  - name: sim\n    regions: [us-east-1]\n    {target}\n"
                ))
                .envs(env)
                .log_level("info,aws_workflow_exporter=debug")
                .start(),
        )
    }

    /// Polls of `source` that finished after `since`, as the daemon logged them.
    fn polls(&self, source: &str, since: SystemTime) -> Vec<Poll> {
        self.with_logs(|logs| {
            logs.iter()
                .filter(|l| l.at > since)
                .filter_map(|l| Some((l.at, l.json.as_ref()?)))
                .filter(|(_, v)| v["source"] == source)
                .filter_map(|(at, v)| {
                    let message = v["message"].as_str()?;
                    let ok = message == "poll finished";
                    if !ok && !message.starts_with("poll finished with errors") {
                        return None;
                    }
                    let took = Duration::from_millis(v["duration_ms"].as_u64().unwrap_or_default());
                    Some(Poll {
                        started: at - took,
                        finished: at,
                        ok,
                        error: v["first_error"].as_str().unwrap_or_default().to_owned(),
                    })
                })
                .collect()
        })
    }
}

/// One poll, from the daemon's log (`finished` is when the test read the line).
#[derive(Debug, Clone)]
struct Poll {
    started: SystemTime,
    finished: SystemTime,
    ok: bool,
    error: String,
}

/// Scrapes /metrics every 100 ms for as long as it lives, recording every violation of the
/// invariants that must hold throughout.
struct Watcher {
    latest: Arc<Mutex<Option<Scrape>>>,
    violations: Arc<Mutex<Vec<String>>>,
    /// Sources that must show `poll_success 1` in every scrape.
    healthy: Arc<Mutex<Vec<&'static str>>>,
    slowest: Arc<Mutex<Duration>>,
    scrapes: Arc<Mutex<usize>>,
    stop: Arc<AtomicBool>,
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl Watcher {
    fn start(addr: SocketAddr) -> Self {
        let w = Watcher {
            latest: Arc::default(),
            violations: Arc::default(),
            healthy: Arc::default(),
            slowest: Arc::default(),
            scrapes: Arc::default(),
            stop: Arc::default(),
        };
        let (latest, violations, healthy, slowest, scrapes, stop) = (
            w.latest.clone(),
            w.violations.clone(),
            w.healthy.clone(),
            w.slowest.clone(),
            w.scrapes.clone(),
            w.stop.clone(),
        );
        tokio::spawn(async move {
            let mut counters: BTreeMap<String, f64> = BTreeMap::new();
            let mut ticks = tokio::time::interval(Duration::from_millis(100));
            while !stop.load(Ordering::Relaxed) {
                ticks.tick().await;
                let started = Instant::now();
                let resp = tokio::time::timeout(
                    Duration::from_secs(1),
                    try_http_get(addr, "/metrics", &[]),
                )
                .await;
                let took = started.elapsed();
                let mut v = violations.lock().unwrap();
                let resp = match resp {
                    Ok(Ok(resp)) => resp,
                    Ok(Err(e)) => {
                        v.push(format!("/metrics failed: {e}"));
                        continue;
                    }
                    Err(_) => {
                        v.push(format!("/metrics took more than 1 s ({took:?})"));
                        continue;
                    }
                };
                if resp.status != 200 {
                    v.push(format!("/metrics answered {}", resp.status));
                    continue;
                }
                let s = Scrape::parse(&String::from_utf8_lossy(&resp.body));
                check_counters(&s, &mut counters, &mut v);
                for source in healthy.lock().unwrap().iter() {
                    let ok = s.value("aws_workflow_exporter_poll_success", &[("source", *source)]);
                    if ok != Some(1.0) {
                        v.push(format!("{source} poll_success {ok:?} while unaffected"));
                    }
                }
                let mut m = slowest.lock().unwrap();
                *m = (*m).max(took);
                *scrapes.lock().unwrap() += 1;
                *latest.lock().unwrap() = Some(s);
            }
        });
        w
    }

    fn latest(&self) -> Option<Scrape> {
        self.latest.lock().unwrap().clone()
    }
}

/// Records every counter sample (counters, and histograms' buckets, counts and sums) and
/// reports any that went down since the previous scrape.
fn check_counters(s: &Scrape, last: &mut BTreeMap<String, f64>, violations: &mut Vec<String>) {
    let mut monotonic = Vec::new();
    for line in s.text.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        match rest.split_once(' ') {
            Some((name, "counter")) => monotonic.push(name.to_owned()),
            Some((name, "histogram")) => {
                for suffix in ["_bucket", "_count", "_sum"] {
                    monotonic.push(format!("{name}{suffix}"));
                }
            }
            _ => {}
        }
    }
    for sample in s.samples.iter().filter(|x| monotonic.contains(&x.name)) {
        let key = format!("{}{:?}", sample.name, sample.labels);
        if let Some(before) = last.insert(key.clone(), sample.value) {
            if sample.value < before {
                violations.push(format!("{key} went from {before} to {}", sample.value));
            }
        }
    }
}

/// Re-checks `cond` until it returns a value; the daemon and the simulator run on their own, so
/// there is no event to await.
async fn until<T>(what: &str, mut cond: impl FnMut() -> Option<T>) -> T {
    common::wait_for(what, async || cond()).await
}

/// Two of everything in every service, with work in progress that [`finish_work`] completes.
fn seed(w: &mut World) {
    let t = now() - 60.0;
    for (sm, exec, run, items) in [
        ("etl-a", "run-1", "mr-1", 10),
        ("etl-b", "run-2", "mr-2", 4),
    ] {
        let sm = w.sfn.add_state_machine(sm, t);
        let exec = w.sfn.start_execution(&sm, exec, t);
        let run = w.sfn.add_map_run(&exec, map_run(run, items), t);
        w.sfn.set_progress(&run, 2, 3, 0, 0);
    }
    for (wf, exec) in [("w-a", "x-1"), ("w-b", "x-2")] {
        w.transfer.add_workflow(wf, Some(wf));
        w.transfer.start_execution(wf, exec, "s-1");
        w.transfer.step_ok(exec, "COPY");
    }
    for flow in ["f-a", "f-b"] {
        w.appflow.add_flow(flow, t);
        w.appflow.start_run(flow, t);
    }
}

fn map_run(id: &str, total_items: i64) -> MapRunSpec {
    common::map_run(id, total_items).concurrency(5)
}

/// Finishes one piece of work in every service: map run mr-1 succeeds with its 10 items,
/// Transfer execution x-1 ends, AppFlow run of f-a succeeds having processed 5000 bytes.
fn finish_work(w: &mut World) {
    let t = now();
    let run = w
        .sfn
        .map_runs
        .keys()
        .find(|a| a.ends_with(":mr-1"))
        .cloned();
    let run = run.expect("mr-1");
    let exec = w.sfn.map_runs[&run].execution_arn.clone();
    w.sfn.set_progress(&run, 0, 10, 0, 0);
    w.sfn.finish_map_run(&run, "SUCCEEDED", t);
    w.sfn.stop_execution(&exec, "SUCCEEDED", t);
    w.transfer.finish("x-1");
    let r = w.appflow.runs.values().find(|r| r.flow == "f-a");
    let r = r.expect("f-a run").execution_id.clone();
    w.appflow.set_progress(&r, 5000, 5000, 50, t);
    w.appflow.finish_run(&r, "Successful", t);
}

/// A metric, the labels selecting its samples, and the sum they must have.
type Expected = (&'static str, &'static [(&'static str, &'static str)], f64);

/// The counters [`finish_work`] must move, each by exactly this much.
const FINISHED: &[Expected] = &[
    (
        "aws_sfn_map_runs_finished_total",
        &[("state_machine", "etl-a"), ("status", "succeeded")],
        1.0,
    ),
    (
        "aws_sfn_map_run_items_finished_total",
        &[("state_machine", "etl-a"), ("status", "succeeded")],
        10.0,
    ),
    (
        "aws_transfer_workflow_executions_finished_total",
        &[("workflow_id", "w-a")],
        1.0,
    ),
    (
        "aws_appflow_flow_runs_total",
        &[("flow", "f-a"), ("status", "successful")],
        1.0,
    ),
    (
        "aws_appflow_flow_bytes_processed_total",
        &[("flow", "f-a")],
        5000.0,
    ),
];

fn finished_counted(s: &Scrape, metric_prefix: &str) -> bool {
    FINISHED
        .iter()
        .filter(|(name, _, _)| name.starts_with(metric_prefix))
        .all(|(name, labels, want)| s.sum(name, labels) == *want)
}

fn metric_prefix(source: &str) -> &'static str {
    match source {
        "sfn_map_runs" => "aws_sfn_",
        "transfer_workflows" => "aws_transfer_",
        "appflow_flows" => "aws_appflow_",
        other => unknown(other),
    }
}

/// One fault, installed on one service for a while.
struct Case {
    name: &'static str,
    /// Whether the fault must fail the faulted source's polls.
    fails_polls: bool,
    /// Text the daemon's log must show for a failed poll.
    logged: &'static str,
    faults: Faults,
    /// Extra setup of the world before the daemon starts.
    prepare: fn(&mut World),
    /// Extra changes at the start of the fault.
    during: fn(&mut World),
    /// Extra checks of the final scrape.
    verify: fn(&'static str, &Scrape),
}

impl Case {
    fn on_every_operation(name: &'static str, kind: FaultKind, logged: &'static str) -> Self {
        Self {
            name,
            fails_polls: true,
            logged,
            faults: Faults::EveryOperation(kind),
            prepare: |_| {},
            during: |_| {},
            verify: |_, _| {},
        }
    }

    fn faults(&self, service: &'static str) -> Vec<Fault> {
        match &self.faults {
            Faults::EveryOperation(kind) => vec![fault_on_every_call(service, kind.clone())],
            Faults::Custom(f) => f(service),
        }
    }
}

enum Faults {
    /// This fault on every call to the service.
    EveryOperation(FaultKind),
    /// The faults for a service.
    Custom(fn(&'static str) -> Vec<Fault>),
}

/// Longer than the daemon's operation timeout (3 s).
const STALL: Duration = Duration::from_secs(5);

/// What one scenario measured.
#[derive(Debug)]
struct Measured {
    service: &'static str,
    recovery: Duration,
    polls_to_recover: usize,
    slowest_scrape: Duration,
    scrapes: usize,
}

/// Runs `case` against `source`'s service: baseline, fault for at least two polls (with work
/// finishing during it), recovery, and two more polls to show nothing is counted again.
async fn scenario(case: &Case, source: &'static str) -> Measured {
    let service = service_of(source);
    let sim = Simulator::start().await.expect("simulator starts");
    {
        let mut w = sim.world();
        seed(&mut w);
        (case.prepare)(&mut w);
    }
    let mut daemon = Daemon::start(&sim.endpoint);
    let watch = Watcher::start(daemon.addr);
    until("every source polled successfully", || {
        let s = watch.latest()?;
        SOURCES
            .iter()
            .all(|src| {
                s.value("aws_workflow_exporter_poll_success", &[("source", src)]) == Some(1.0)
            })
            .then_some(())
    })
    .await;
    *watch.healthy.lock().unwrap() = SOURCES.to_vec();

    // The fault, and work finishing while it lasts.
    let fault_start = SystemTime::now();
    *watch.healthy.lock().unwrap() = SOURCES.iter().copied().filter(|s| *s != source).collect();
    if !case.fails_polls {
        watch.healthy.lock().unwrap().push(source);
    }
    {
        let mut w = sim.world();
        w.faults.extend(case.faults(service));
        (case.during)(&mut w);
        finish_work(&mut w);
    }
    let during = until("two polls during the fault", || {
        let mut polls = daemon.polls(source, fault_start);
        polls.retain(|p| p.started > fault_start);
        (polls.len() >= 2).then_some(polls)
    })
    .await;
    if case.fails_polls {
        for Poll { ok, error, .. } in &during {
            assert!(
                !ok,
                "{}/{source}: a poll succeeded during the fault",
                case.name
            );
            assert!(
                error.contains(case.logged),
                "{}/{source}: logged `{error}`, expected it to mention `{}`",
                case.name,
                case.logged
            );
        }
    }
    // The unaffected sources count what finished during the fault.
    for other in SOURCES.iter().filter(|s| **s != source) {
        until("the unaffected sources count finished work", || {
            finished_counted(&watch.latest()?, metric_prefix(other)).then_some(())
        })
        .await;
    }

    let fault_end = SystemTime::now();
    sim.world().faults.clear();
    let (recovered_at, polls_to_recover) = until("the faulted source recovers", || {
        let polls = daemon.polls(source, fault_end);
        let first_ok = polls.iter().position(|p| p.ok)?;
        Some((polls[first_ok].finished, first_ok + 1))
    })
    .await;
    assert!(
        polls_to_recover <= 2,
        "{}/{source}: recovered only after {polls_to_recover} polls",
        case.name
    );
    // The log line comes just before the exposition is rebuilt: wait for /metrics to show it.
    until("/metrics shows the recovery", || {
        let s = watch.latest()?;
        let ok = s.value("aws_workflow_exporter_poll_success", &[("source", source)]);
        (ok == Some(1.0)).then_some(())
    })
    .await;
    *watch.healthy.lock().unwrap() = SOURCES.to_vec();

    // Two more polls: what finished is counted, and only once.
    let last = scrape_after_a_whole_poll(&watch, &daemon, &[source], recovered_at).await;
    for (name, labels, want) in FINISHED {
        assert_eq!(
            last.sum(name, labels),
            *want,
            "{}/{source}: {name}{labels:?} must count what finished exactly once",
            case.name
        );
    }
    (case.verify)(source, &last);

    assert!(daemon.alive(), "{}/{source}: the daemon exited", case.name);
    assert_eq!(http_get(daemon.addr, "/healthz", &[]).await.status, 200);
    let violations = watch.violations.lock().unwrap().clone();
    assert!(
        violations.is_empty(),
        "{}/{source}: {violations:#?}\npolls since the fault started: {:#?}",
        case.name,
        daemon.polls(source, fault_start)
    );
    let logged = during.first().map(|p| p.error.clone()).unwrap_or_default();
    let m = Measured {
        service,
        recovery: recovered_at.duration_since(fault_end).unwrap_or_default(),
        polls_to_recover,
        slowest_scrape: *watch.slowest.lock().unwrap(),
        scrapes: *watch.scrapes.lock().unwrap(),
    };
    println!(
        "fault {:<22} service {:<8} recovery {:>5} ms in {} poll(s); slowest /metrics {:>3} ms over {} scrapes",
        case.name,
        m.service,
        m.recovery.as_millis(),
        m.polls_to_recover,
        m.slowest_scrape.as_millis(),
        m.scrapes
    );
    println!(
        "    logged: {}",
        logged.chars().take(300).collect::<String>()
    );
    m
}

/// The case against each of the three services at once.
async fn run(case: Case) {
    let (a, b, c) = tokio::join!(
        scenario(&case, SOURCES[0]),
        scenario(&case, SOURCES[1]),
        scenario(&case, SOURCES[2])
    );
    for m in [a, b, c] {
        assert!(m.scrapes > 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_500() {
    run(Case::on_every_operation(
        "http_500",
        FaultKind::ServerError,
        "InternalServerError",
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_503_with_retry_after() {
    run(Case::on_every_operation(
        "http_503_retry_after",
        FaultKind::Unavailable {
            retry_after_secs: 2,
        },
        "ServiceUnavailableException",
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_denied() {
    run(Case::on_every_operation(
        "access_denied",
        FaultKind::AccessDenied,
        "AccessDeniedException",
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_json_body_with_200() {
    run(Case::on_every_operation(
        "non_json_200",
        FaultKind::NonJsonBody,
        "unreadable answer (HTTP 200, text/html)",
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_body() {
    run(Case::on_every_operation(
        "truncated_body",
        FaultKind::TruncatedBody,
        "connection closed before message completed",
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stall_past_the_operation_timeout() {
    run(Case::on_every_operation(
        "stall",
        FaultKind::Delay(STALL),
        "timed out",
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_next_token_on_every_page() {
    run(Case::on_every_operation(
        "repeated_token",
        FaultKind::RepeatToken,
        "returned a next token it had returned before",
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttle_storm() {
    run(Case::on_every_operation(
        "throttle_storm",
        FaultKind::Throttle,
        "throttled",
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_token_on_a_later_page() {
    run(Case {
        name: "invalid_token_page_2",
        fails_polls: true,
        logged: "InvalidToken",
        faults: Faults::Custom(|service| {
            // nextToken (Step Functions, AppFlow) and NextToken (Transfer Family).
            vec![fault_on_every_call(service, FaultKind::InvalidToken).matching("extToken")]
        }),
        // One item per page: every listing of two resources has a second page.
        prepare: |w| {
            w.sfn.page_cap = Some(1);
            w.transfer.page_cap = Some(1);
            w.appflow.page_cap = Some(1);
        },
        during: |_| {},
        verify: |_, _| {},
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resource_deleted_between_list_and_describe() {
    run(Case {
        name: "deleted_before_describe",
        // A normal race: it must not fail the poll.
        fails_polls: false,
        logged: "",
        faults: Faults::Custom(|service| {
            let (operation, named) = match service {
                "sfn" => ("DescribeMapRun", "mr-3"),
                "transfer" => ("DescribeExecution", "x-3"),
                "appflow" => ("DescribeFlowExecutionRecords", "f-b"),
                other => unknown(other),
            };
            vec![fault(service, operation, FaultKind::DeleteResource)
                .matching(named)
                .times(1)]
        }),
        prepare: |_| {},
        // New work that is deleted the moment the exporter describes it.
        during: |w| {
            let exec = w.sfn.executions.keys().find(|a| a.ends_with(":run-2"));
            let exec = exec.expect("run-2").clone();
            w.sfn.add_map_run(&exec, map_run("mr-3", 3), now());
            w.transfer.start_execution("w-b", "x-3", "s-1");
            // Only an execution that can show a failed step is described.
            w.transfer.step_failed("x-3", "COPY", "BAD_REQUEST");
        },
        verify: |source, s| match source {
            "sfn_map_runs" => {
                assert_eq!(s.count("aws_sfn_map_run_status", &[("map_run", "mr-3")]), 0);
            }
            // The execution left the in-progress list: counted once as finished.
            "transfer_workflows" => assert_eq!(
                s.sum(
                    "aws_transfer_workflow_executions_finished_total",
                    &[("workflow_id", "w-b")]
                ),
                1.0
            ),
            "appflow_flows" => assert_eq!(
                s.count("aws_appflow_flow_runs_in_progress", &[("flow", "f-b")]),
                0
            ),
            other => unknown(other),
        },
    })
    .await;
}

/// The first scrape that shows, for each of `sources`, a successful poll that started after
/// the first poll ending after `since` had ended: a poll that saw everything done before
/// `since`. Polls are known from the log; the exposition shows them a moment later (its
/// assemblies are coalesced), which the poll's success timestamp in the scrape tells.
async fn scrape_after_a_whole_poll(
    watch: &Watcher,
    daemon: &Daemon,
    sources: &[&str],
    since: SystemTime,
) -> Scrape {
    until("a scrape showing a whole poll after the change", || {
        let s = watch.latest()?;
        for source in sources {
            let first = daemon.polls(source, since).first()?.finished;
            let first = first.duration_since(SystemTime::UNIX_EPOCH).ok()?;
            let shown = s.value(
                "aws_workflow_exporter_last_poll_success_timestamp_seconds",
                &[("source", source)],
            )?;
            if shown <= first.as_secs_f64() {
                return None;
            }
        }
        Some(s)
    })
    .await
}

/// Waits until every source polled successfully with series labelled `account_id`.
async fn all_sources_ok(watch: &Watcher, account_id: &str) {
    until("every source polls successfully", || {
        let s = watch.latest()?;
        SOURCES
            .iter()
            .all(|src| {
                let labels = [("source", *src), ("account_id", account_id)];
                s.value("aws_workflow_exporter_poll_success", &labels) == Some(1.0)
            })
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sts_down() {
    let sim = Simulator::start().await.expect("simulator starts");
    {
        let mut w = sim.world();
        seed(&mut w);
        w.faults.push(fault_on_every_call("sts", FaultKind::Reset));
    }
    // STS asked for explicitly, and down from the start: the sources poll anyway, and the
    // account id comes from the resources' ARNs.
    let mut daemon = Daemon::start_with(&format!(
        "endpoint_url: {0}\nsts_endpoint_url: {0}",
        sim.endpoint
    ));
    let watch = Watcher::start(daemon.addr);
    let started = Instant::now();
    all_sources_ok(&watch, aws_workflow_exporter::simulator::ACCOUNT_ID).await;
    let recovery = started.elapsed();
    *watch.healthy.lock().unwrap() = SOURCES.to_vec();
    assert!(
        sim.world().count("sts", "GetCallerIdentity") >= 1,
        "STS was tried"
    );
    until("the STS failure is logged", || {
        daemon.logged("STS is not reachable").then_some(())
    })
    .await;

    // Work finishes while STS is down, then STS comes back: nothing changes, nothing is
    // counted twice.
    finish_work(&mut sim.world());
    let back = SystemTime::now();
    sim.world().faults.clear();
    let last = scrape_after_a_whole_poll(&watch, &daemon, &SOURCES, back).await;
    for (name, labels, want) in FINISHED {
        assert_eq!(last.sum(name, labels), *want, "{name}{labels:?}");
    }
    assert_eq!(
        last.count(
            "aws_workflow_exporter_poll_success",
            &[("account_id", "unknown")]
        ),
        0
    );
    assert!(daemon.alive());
    let violations = watch.violations.lock().unwrap().clone();
    assert!(violations.is_empty(), "{violations:#?}");
    println!(
        "fault {:<22} service sts      all sources polling {:>5} ms after start; slowest /metrics {:>3} ms",
        "sts_down",
        recovery.as_millis(),
        watch.slowest.lock().unwrap().as_millis()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assume_role_denied_names_the_role() {
    let role = "arn:aws:iam::111111111111:role/exporter";
    let sim = Simulator::start().await.expect("simulator starts");
    {
        let mut w = sim.world();
        seed(&mut w);
        // Denied only when the request carries the configured external id: the test also
        // shows the exporter sends it.
        w.faults.push(
            fault("sts", "AssumeRole", FaultKind::AccessDenied)
                .matching("ExternalId=exporter-external-id"),
        );
    }
    let mut daemon = Daemon::start_with(&format!(
        "endpoint_url: {}\nrole_arn: {role}\nexternal_id: exporter-external-id",
        sim.endpoint
    ));
    let watch = Watcher::start(daemon.addr);
    let since = SystemTime::UNIX_EPOCH;
    for source in SOURCES {
        let polls = until("two failed polls", || {
            let polls = daemon.polls(source, since);
            (polls.len() >= 2).then_some(polls)
        })
        .await;
        for p in &polls {
            assert!(!p.ok, "{source} polled without its role");
            assert!(
                p.error.contains(&format!("assuming role {role} failed"))
                    && p.error.contains("AccessDenied"),
                "{source}: {}",
                p.error
            );
        }
    }
    let allowed = Instant::now();
    sim.world().faults.clear();
    // The role's account, from the role ARN.
    all_sources_ok(&watch, "111111111111").await;
    println!(
        "fault {:<22} service sts      recovery {:>5} ms after AssumeRole is allowed",
        "assume_role_denied",
        allowed.elapsed().as_millis()
    );
    assert!(daemon.alive());
    let violations = watch.violations.lock().unwrap().clone();
    assert!(violations.is_empty(), "{violations:#?}");
}

#[tokio::test]
async fn a_second_target_reaching_the_same_account_and_region_is_refused() {
    // The same simulator under another host name: the file cannot tell, the ARNs can.
    let mut h = common::Harness::start(&["transfer_workflows"], |c| {
        let mut copy = c.targets[0].clone();
        copy.name = "copy".into();
        copy.endpoint_url = copy
            .endpoint_url
            .map(|u| u.replace("127.0.0.1", "localhost"));
        c.targets.push(copy);
    })
    .await;
    {
        let mut w = h.world();
        w.transfer.add_workflow("w-a", Some("a"));
        w.transfer.start_execution("w-a", "x-1", "s-1");
    }
    h.poll().await;
    h.poll().await;
    let s = h.scrape().await;
    common::assert_promtool_clean(&s.text);
    assert_eq!(
        s.count(
            "aws_workflow_exporter_poll_success",
            &[("source", "transfer_workflows")]
        ),
        1,
        "{}",
        s.text
    );
    assert_eq!(
        s.sum(
            "aws_transfer_workflow_executions",
            &[("workflow_id", "w-a")]
        ),
        1.0,
        "one target's series, not two"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sts_goes_to_an_emulator_only_when_asked() {
    let sim = Simulator::start().await.expect("simulator starts");
    seed(&mut sim.world());
    let sts_calls = || sim.world().count("sts", "GetCallerIdentity");

    // endpoint_url alone: the emulator may lack STS, so none is sent there.
    let plain = Daemon::start(&sim.endpoint);
    all_sources_ok(
        &Watcher::start(plain.addr),
        aws_workflow_exporter::simulator::ACCOUNT_ID,
    )
    .await;
    assert_eq!(sts_calls(), 0);
    drop(plain);

    // AWS_ENDPOINT_URL_STS asks for it, as the SDK defines per-service endpoints.
    let asked = Daemon::start_with_env(
        &format!("endpoint_url: {}", sim.endpoint),
        &[("AWS_ENDPOINT_URL_STS", &sim.endpoint)],
    );
    all_sources_ok(
        &Watcher::start(asked.addr),
        aws_workflow_exporter::simulator::ACCOUNT_ID,
    )
    .await;
    until("the asked-for STS call", || {
        (sts_calls() == 1).then_some(())
    })
    .await;
}
