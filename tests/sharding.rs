//! Sharding (`--shard`/`--total-shards`): replicas against one simulated account with all three
//! services, through the real SDK over HTTP.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use aws_workflow_exporter::shard::Shard;
use aws_workflow_exporter::simulator::{Simulator, World, ACCOUNT_ID, REGION};
use aws_workflow_exporter::web::Web;
use common::{
    config_for, map_run, unix_now, wait_until, Binary, MapRunSpecExt, Sample, Scrape, Served,
};

const ALL: &[&str] = &["sfn_map_runs", "transfer_workflows", "appflow_flows"];
/// Resources per service.
const N: usize = 12;
/// The counters of finished runs the dashboards aggregate with sum(increase(...)).
const FINISHED: &[&str] = &[
    "aws_sfn_map_runs_finished_total",
    "aws_transfer_workflow_executions_finished_total",
    "aws_appflow_flow_runs_total",
];

/// A replica's name, like a StatefulSet pod's: its access key in the simulator's request log
/// (which tells replicas apart) and its `instance` in the aggregates below.
fn key(shard: Option<(u32, u32)>) -> String {
    match shard {
        Some((n, _)) => format!("aws-workflow-exporter-{n}"),
        None => "unsharded".into(),
    }
}

async fn replica(sim: &Simulator, shard: Option<(u32, u32)>) -> Served {
    let mut config = config_for(&sim.endpoint, ALL);
    if let Some((n, m)) = shard {
        config.shard = Shard::new(n, m).unwrap();
    }
    Served::start(&config, &key(shard), Web::plain()).await
}

/// One running Map Run, Transfer execution and AppFlow run per resource, N of each.
struct Running {
    map_runs: Vec<String>,
    transfer_executions: Vec<String>,
    flow_runs: Vec<String>,
}

/// N state machines, Transfer workflows and AppFlow flows; returns the state machine ARNs.
fn add_resources(w: &mut World) -> Vec<String> {
    let now = unix_now();
    (0..N)
        .map(|i| {
            w.transfer
                .add_workflow(&workflow(i), Some(&format!("ingest {i}")));
            w.appflow.add_flow(&flow(i), now - 7200.0);
            w.sfn
                .add_state_machine(&format!("etl-{i:02}"), now - 7200.0)
        })
        .collect()
}

fn workflow(i: usize) -> String {
    format!("w-{i:017}")
}

fn flow(i: usize) -> String {
    format!("flow-{i:02}")
}

/// Starts one run on every resource; `generation` keeps names unique.
fn start_runs(w: &mut World, state_machines: &[String], generation: usize) -> Running {
    let now = unix_now();
    let mut out = Running {
        map_runs: Vec::new(),
        transfer_executions: Vec::new(),
        flow_runs: Vec::new(),
    };
    for (i, sm) in state_machines.iter().enumerate() {
        let exec = w
            .sfn
            .start_execution(sm, &format!("run-{generation}"), now - 60.0);
        out.map_runs.push(
            w.sfn.add_map_run(
                &exec,
                map_run(&format!("g{generation}-{i}"), 10)
                    .state("Fan Out")
                    .concurrency(5),
                now - 50.0,
            ),
        );
        out.transfer_executions.push(w.transfer.start_execution(
            &workflow(i),
            &format!("exec-{generation}-{i}"),
            "s-0000000000000001",
        ));
        out.flow_runs
            .push(w.appflow.start_run(&flow(i), now - 30.0));
    }
    out
}

fn finish(w: &mut World, r: &Running) {
    let now = unix_now();
    for (run, exec) in r.map_runs.iter().zip(&r.transfer_executions) {
        w.sfn.set_progress(run, 0, 10, 0, 0);
        w.sfn.finish_map_run(run, "SUCCEEDED", now);
        w.transfer.finish(exec);
    }
    for run in &r.flow_runs {
        w.appflow.finish_run(run, "Successful", now);
    }
}

/// The AWS-derived series of a scrape (self-metrics and process metrics are per replica).
fn aws_series(s: &Scrape) -> Vec<&Sample> {
    s.samples
        .iter()
        .filter(|x| {
            !x.name.starts_with("aws_workflow_exporter_") && !x.name.starts_with("process_")
        })
        .collect()
}

/// (name, labels) of a sample, the identity of a series.
fn id(x: &Sample) -> String {
    format!("{}{:?}", x.name, x.labels)
}

/// The resource a request is about, by the field each service's per-resource calls carry.
fn resource_of(service: &str, body: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    let field = match service {
        "sfn" => "stateMachineArn",
        "transfer" => "WorkflowId",
        "appflow" => "flowName",
        _ => return None,
    };
    v.get(field)
        .and_then(|f| f.as_str())
        .map(|s| format!("{service}:{s}"))
}

/// How many resources each replica polled, from the request log: asserts that every resource
/// was polled, each by exactly one sharded replica (the unsharded exporter aside).
fn owned_per_replica(w: &World) -> BTreeMap<String, usize> {
    let mut pollers: BTreeMap<String, BTreeSet<&str>> = BTreeMap::new();
    for c in w.calls.iter().filter(|c| c.access_key != "unsharded") {
        if let Some(r) = resource_of(c.service, &c.body) {
            pollers.entry(r).or_default().insert(&c.access_key);
        }
    }
    assert_eq!(pollers.len(), 3 * N, "every resource polled: {pollers:?}");
    let mut out: BTreeMap<String, usize> = BTreeMap::new();
    for (resource, keys) in &pollers {
        assert_eq!(keys.len(), 1, "{resource} polled by {keys:?}");
        *out.entry(keys.iter().next().unwrap().to_string())
            .or_default() += 1;
    }
    out
}

/// What `sum(increase(name[range]))` adds up over a range covering `scrapes`, taken in order,
/// each `(instance, scrape)`: per series (instance and labels) the rises between consecutive
/// samples, a drop being a counter reset (a restarted pod) that adds the new value, and nothing
/// for a series' first sample, as Prometheus counts.
fn summed_increase(scrapes: &[(String, Scrape)], name: &str) -> f64 {
    let mut last: BTreeMap<String, f64> = BTreeMap::new();
    let mut total = 0.0;
    for (instance, s) in scrapes {
        for x in s.samples.iter().filter(|x| x.name == name) {
            if let Some(prev) = last.insert(format!("{instance}{:?}", x.labels), x.value) {
                total += if x.value >= prev {
                    x.value - prev
                } else {
                    x.value
                };
            }
        }
    }
    total
}

/// One poll of each replica, then a scrape of each.
async fn poll_and_scrape(replicas: &mut [Served], scrapes: &mut Vec<(String, Scrape)>) {
    for r in replicas {
        r.exporter.poll_once().await;
        scrapes.push((r.key.clone(), r.scrape().await));
    }
}

#[tokio::test]
async fn three_replicas_serve_exactly_the_unsharded_series_each_resource_polled_by_one() {
    let sim = Simulator::start().await.expect("simulator");
    let running = {
        let mut w = sim.world();
        let sms = add_resources(&mut w);
        start_runs(&mut w, &sms, 0)
    };
    let mut unsharded = replica(&sim, None).await;
    let mut replicas = Vec::new();
    for n in 0..3 {
        replicas.push(replica(&sim, Some((n, 3))).await);
    }

    // All four see the same world: runs in progress, then finished (so counters count).
    for r in std::iter::once(&mut unsharded).chain(&mut replicas) {
        r.exporter.poll_once().await;
    }
    finish(&mut sim.world(), &running);
    for r in std::iter::once(&mut unsharded).chain(&mut replicas) {
        r.exporter.poll_once().await;
    }

    let want: BTreeMap<String, f64> = aws_series(&unsharded.scrape().await)
        .into_iter()
        .map(|x| (id(x), x.value))
        .collect();
    assert!(
        want.len() > 100,
        "a meaningful comparison: {} series",
        want.len()
    );
    for name in FINISHED {
        assert!(want.keys().any(|k| k.starts_with(name)), "{name} present");
    }
    let mut union: BTreeMap<String, f64> = BTreeMap::new();
    let mut duplicates = Vec::new();
    let mut per_replica = Vec::new();
    let unsharded_scrape = unsharded.scrape().await;
    assert_eq!(
        unsharded_scrape.value("aws_workflow_exporter_shard_ordinal", &[]),
        Some(0.0)
    );
    assert_eq!(
        unsharded_scrape.value("aws_workflow_exporter_total_shards", &[]),
        Some(1.0)
    );
    for (n, r) in replicas.iter().enumerate() {
        let scrape = r.scrape().await;
        assert_eq!(
            scrape.value("aws_workflow_exporter_shard_ordinal", &[]),
            Some(n as f64)
        );
        assert_eq!(
            scrape.value("aws_workflow_exporter_total_shards", &[]),
            Some(3.0)
        );
        let own = aws_series(&scrape);
        per_replica.push(own.len());
        for x in own {
            if union.insert(id(x), x.value).is_some() {
                duplicates.push(id(x));
            }
        }
    }
    assert_eq!(
        duplicates,
        Vec::<String>::new(),
        "series served by two replicas"
    );
    assert_eq!(
        union, want,
        "the union of the shards is the unsharded exposition"
    );

    // Each resource's per-resource calls came from exactly one replica (the unsharded exporter
    // aside), and every resource was polled.
    let w = sim.world();
    let owned_per_replica = owned_per_replica(&w);
    // Listing is the shared cost: every replica lists every service, flows every poll, state
    // machines and workflows at the first and then every discovery_interval (5 polls).
    for n in 0..3 {
        let k = key(Some((n, 3)));
        for (service, op, listings) in [
            ("sfn", "ListStateMachines", 1),
            ("transfer", "ListWorkflows", 1),
            ("appflow", "ListFlows", 2),
        ] {
            let calls = w
                .calls
                .iter()
                .filter(|c| c.access_key == k && c.service == service && c.operation == op)
                .count();
            assert_eq!(calls, listings, "{k} {service} {op}");
        }
    }
    // Balance: 36 resources over 3 replicas; none may hold fewer than 6 or more than 20.
    assert_eq!(owned_per_replica.len(), 3, "{owned_per_replica:?}");
    for (k, n) in &owned_per_replica {
        assert!(
            (6..=20).contains(n),
            "{k} owns {n} of {}: {owned_per_replica:?}",
            3 * N
        );
    }
    eprintln!("resources per replica: {owned_per_replica:?}; AWS series per replica: {per_replica:?} of {}", want.len());
}

#[tokio::test]
async fn resizing_from_three_to_two_shards_counts_no_finished_run_twice() {
    let sim = Simulator::start().await.expect("simulator");
    let sms = add_resources(&mut sim.world());
    let first = start_runs(&mut sim.world(), &sms, 0);
    let mut scrapes: Vec<(String, Scrape)> = Vec::new();

    // Three shards follow the first runs until they finish.
    let mut three = Vec::new();
    for n in 0..3 {
        three.push(replica(&sim, Some((n, 3))).await);
    }
    poll_and_scrape(&mut three, &mut scrapes).await;
    finish(&mut sim.world(), &first);
    poll_and_scrape(&mut three, &mut scrapes).await;
    for name in FINISHED {
        assert_eq!(
            summed_increase(&scrapes, name),
            N as f64,
            "{name} before the resize"
        );
    }
    // The StatefulSet is scaled to two with --total-shards=2: every pod restarts (pods 0 and 1
    // keep their names, so their series continue after a counter reset).
    drop(three);

    let mut two = Vec::new();
    for n in 0..2 {
        two.push(replica(&sim, Some((n, 2))).await);
    }
    sim.world().calls.clear();
    poll_and_scrape(&mut two, &mut scrapes).await;
    poll_and_scrape(&mut two, &mut scrapes).await;
    // Every resource, those of the removed shard included, now has exactly one of the two owners.
    let owners = owned_per_replica(&sim.world());
    assert_eq!(owners.len(), 2, "{owners:?}");
    // Resources of the removed shard moved; the runs they finished before are not counted again:
    // the new replicas' counters hold nothing of them, and the aggregate is unchanged.
    for name in FINISHED {
        let now_counted: f64 = scrapes[scrapes.len() - 2..]
            .iter()
            .map(|(_, s)| s.sum(name, &[]))
            .sum();
        assert_eq!(now_counted, 0.0, "{name} counted again after the resize");
        assert_eq!(
            summed_increase(&scrapes, name),
            N as f64,
            "{name} after the resize"
        );
    }
    // Runs that finish after the resize are counted once, by their new owners.
    let second = start_runs(&mut sim.world(), &sms, 1);
    poll_and_scrape(&mut two, &mut scrapes).await;
    finish(&mut sim.world(), &second);
    poll_and_scrape(&mut two, &mut scrapes).await;
    for name in FINISHED {
        assert_eq!(
            summed_increase(&scrapes, name),
            2.0 * N as f64,
            "{name} after new runs finished"
        );
    }
}

/// The Transfer workflow ids a scrape carries series of.
fn workflow_ids(s: &Scrape) -> BTreeSet<String> {
    s.samples
        .iter()
        .filter_map(|x| x.labels.get("workflow_id").cloned())
        .collect()
}

fn transfer_only(endpoint: &str, max_attempts: u32) -> String {
    format!(
        "poll_interval: 1s\naws_api:\n  max_attempts: {max_attempts}\n  quota_share: 1.0\ntargets:\n  - name: sim\n    regions: [{REGION}]\n    endpoint_url: {endpoint}\nsources:\n  sfn_map_runs:\n    enabled: false\n  transfer_workflows:\n    enabled: true\n  appflow_flows:\n    enabled: false\n"
    )
}

/// The shard comes from the command line: a configuration reload (here one that changes
/// `aws_api`, so every target is rebuilt) keeps it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_keeps_the_shard_given_on_the_command_line() {
    let sim = Simulator::start().await.expect("simulator");
    add_resources(&mut sim.world());
    let bin = Binary::new().lifecycle();
    let file = bin.write("config.yaml", &transfer_only(&sim.endpoint, 1));
    let daemon = bin
        .config_file(&file)
        .args(["--shard", "1", "--total-shards", "2"])
        .start();
    let shard = Shard::new(1, 2).unwrap();
    let want: BTreeSet<String> = (0..N)
        .map(workflow)
        .filter(|id| shard.owns(ACCOUNT_ID, REGION, id))
        .collect();
    assert!(!want.is_empty() && want.len() < N, "{want:?}");
    let scrape = || daemon.scrape();
    let owns_its_share = |s: &Scrape| {
        workflow_ids(s) == want
            && s.value("aws_workflow_exporter_total_shards", &[]) == Some(2.0)
            && s.value("aws_workflow_exporter_shard_ordinal", &[]) == Some(1.0)
    };
    wait_until("the first poll exports shard 1's workflows", || async {
        scrape().await.is_some_and(|s| owns_its_share(&s))
    })
    .await;

    std::fs::write(&file, transfer_only(&sim.endpoint, 2)).unwrap();
    let resp = daemon.request("POST", "/-/reload").await.unwrap();
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    sim.world().calls.clear();
    // After the reload every workflow is listed again; only shard 1's are polled and exported.
    wait_until("a poll after the reload", || async {
        sim.world().count("transfer", "ListWorkflows") > 0
            && scrape().await.is_some_and(|s| {
                s.value("aws_workflow_exporter_config_last_reload_successful", &[]) == Some(1.0)
            })
    })
    .await;
    wait_until("two polls after the reload", || async {
        sim.world().count("transfer", "ListWorkflows") > 1
    })
    .await;
    let s = scrape().await.expect("a scrape");
    assert!(owns_its_share(&s), "{:?}", workflow_ids(&s));
    let polled: BTreeSet<String> = sim
        .world()
        .calls
        .iter()
        .filter(|c| c.operation == "ListExecutions")
        .filter_map(|c| resource_of(c.service, &c.body))
        .collect();
    let want_polled: BTreeSet<String> = want.iter().map(|id| format!("transfer:{id}")).collect();
    assert_eq!(polled, want_polled);
}
