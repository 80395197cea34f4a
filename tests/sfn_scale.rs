//! The Step Functions source at scale, against the simulator through the real SDK: calls only
//! where something can change, open work before history, refresh order, retries and budget.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use aws_workflow_exporter::simulator::sfn::{definitions, MapRunSpec};
use aws_workflow_exporter::simulator::{Call, FaultKind};
use common::{fault, http_get, map_run, scrape_at, unix_now, FaultExt, Harness, MapRunSpecExt};

const SOURCE: &[&str] = &["sfn_map_runs"];

/// This file's map runs tolerate 10% failed items.
fn spec(id: &str, total: i64) -> MapRunSpec {
    map_run(id, total).tolerating(10.0, 0)
}

/// The calls since the log was last cleared, then clears it.
fn take_log(h: &Harness) -> Vec<Call> {
    std::mem::take(&mut h.world().calls)
}

/// Resources of the successful `operation` calls in `log`, in call order.
fn resources(log: &[Call], operation: &str) -> Vec<String> {
    log.iter()
        .filter(|c| c.operation == operation && !c.throttled)
        .filter_map(|c| c.resource.clone())
        .collect()
}

fn ids(arns: &[String]) -> BTreeSet<String> {
    arns.iter()
        .map(|a| a.rsplit(':').next().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
async fn only_state_machines_with_a_distributed_map_cost_listings() {
    let mut h = Harness::start(SOURCE, |_| {}).await;
    let now = unix_now();
    let (listed_sms, listed_execs) = {
        let mut w = h.world();
        let mut sms = BTreeSet::new();
        let mut execs = BTreeSet::new();
        for (name, definition) in [
            ("dm", definitions::distributed_map("Fan")),
            ("nested", definitions::nested_distributed_map("Outer")),
            ("inline", definitions::inline_map("Each")),
            ("plain", definitions::no_map("Approve")),
        ] {
            let sm = w
                .sfn
                .add_state_machine_with(name, now - 86400.0, &definition);
            let exec = w.sfn.start_execution(&sm, "live", now - 100.0);
            if matches!(name, "dm" | "nested") {
                w.sfn.add_map_run(&exec, spec(name, 100), now - 90.0);
                sms.insert(sm);
                execs.insert(exec);
            }
        }
        (sms, execs)
    };
    h.poll().await;
    let first = take_log(&h);
    h.poll().await;
    let second = take_log(&h);
    assert_eq!(resources(&first, "DescribeStateMachine").len(), 4);
    assert!(
        resources(&second, "DescribeStateMachine").is_empty(),
        "definitions are cached"
    );
    for log in [&first, &second] {
        let sms: BTreeSet<String> = resources(log, "ListExecutions").into_iter().collect();
        assert_eq!(
            sms, listed_sms,
            "ListExecutions only for the Distributed Maps"
        );
        let execs: BTreeSet<String> = resources(log, "GetExecutionHistory").into_iter().collect();
        assert_eq!(execs, listed_execs);
        assert_eq!(
            ids(&resources(log, "DescribeMapRun")),
            BTreeSet::from(["dm".to_string(), "nested".to_string()])
        );
    }
    let s = h.scrape().await;
    assert_eq!(
        s.count("aws_sfn_map_run_status", &[("status", "running")]),
        2
    );
}

#[tokio::test]
async fn a_definition_is_read_again_at_the_refresh_interval() {
    let mut h = Harness::start(SOURCE, |c| {
        c.sources.sfn_map_runs.definition_refresh = Duration::ZERO;
    })
    .await;
    let now = unix_now();
    let sm = {
        let mut w = h.world();
        let sm = w
            .sfn
            .add_state_machine_with("later", now - 86400.0, &definitions::no_map("Wait"));
        let exec = w.sfn.start_execution(&sm, "live", now - 100.0);
        w.sfn.add_map_run(&exec, spec("added", 100), now - 50.0);
        sm
    };
    h.poll().await;
    assert!(resources(&take_log(&h), "ListExecutions").is_empty());
    h.world()
        .sfn
        .update_definition(&sm, &definitions::distributed_map("Fan"));
    h.poll().await;
    let log = take_log(&h);
    assert_eq!(resources(&log, "DescribeStateMachine"), vec![sm.clone()]);
    assert!(resources(&log, "ListExecutions").contains(&sm));
    let s = h.scrape().await;
    assert_eq!(
        s.value(
            "aws_sfn_map_run_status",
            &[("map_run", "added"), ("status", "running")]
        ),
        Some(1.0)
    );
}

/// A running execution with one open run, and `n` executions that finished an hour before the
/// exporter started, each with a map run `hist-<i>` (the higher `i`, the newer).
fn open_and_history(h: &Harness, n: usize) -> String {
    let now = unix_now();
    let mut w = h.world();
    let sm = w.sfn.add_state_machine("etl", now - 86400.0);
    for i in 0..n {
        let start = now - 4000.0 + i as f64 * 10.0;
        let exec = w.sfn.start_execution(&sm, &format!("old-{i}"), start);
        let run = w
            .sfn
            .add_map_run(&exec, spec(&format!("hist-{i}"), 10), start + 1.0);
        w.sfn.set_progress(&run, 0, 9, 1, 0);
        w.sfn
            .finish_map_run(&run, "SUCCEEDED", now - 3000.0 + i as f64);
        w.sfn
            .stop_execution(&exec, "SUCCEEDED", now - 2900.0 + i as f64);
    }
    let exec = w.sfn.start_execution(&sm, "live", now - 60.0);
    let run = w.sfn.add_map_run(&exec, spec("open", 100), now - 50.0);
    w.sfn.set_progress(&run, 10, 20, 1, 0);
    sm
}

#[tokio::test]
async fn open_work_is_served_and_ready_while_history_is_still_read() {
    let mut h = Harness::start(SOURCE, |_| {}).await;
    open_and_history(&h, 5);
    // History describes hang: the first poll cannot finish while this holds.
    h.world().faults.push(
        fault(
            "sfn",
            "DescribeMapRun",
            FaultKind::Delay(Duration::from_secs(120)),
        )
        .matching("hist-"),
    );
    let addr = h.http_addr;
    let check = common::wait_for("open work is served", async || {
        let ready = http_get(addr, "/readyz", &[]).await.status == 200;
        let s = scrape_at(addr).await;
        let open = s.value(
            "aws_sfn_map_run_status",
            &[("map_run", "open"), ("status", "running")],
        );
        (ready && open == Some(1.0)).then_some(s)
    });
    let s = tokio::select! {
        _ = h.exporter.poll_once() => panic!("the poll cannot end while history describes hang"),
        s = check => s,
    };
    assert_eq!(
        s.value(
            "aws_sfn_map_run_items",
            &[("map_run", "open"), ("status", "succeeded")]
        ),
        Some(20.0)
    );
    assert!(
        s.sum("aws_workflow_exporter_history_backlog", &[]) > 0.0,
        "history still to read"
    );
}

#[tokio::test]
async fn history_is_described_newest_first_once_and_feeds_no_counter() {
    let mut h = Harness::start(SOURCE, |_| {}).await;
    open_and_history(&h, 5);
    h.poll().await;
    let log = take_log(&h);
    let hist: Vec<String> = resources(&log, "DescribeMapRun")
        .into_iter()
        .filter(|r| r.contains("hist-"))
        .collect();
    let order: Vec<String> = hist
        .iter()
        .map(|a| a.rsplit(':').next().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(order, ["hist-4", "hist-3", "hist-2", "hist-1", "hist-0"]);
    let s = h.scrape().await;
    assert_eq!(s.sum("aws_sfn_map_runs_finished_total", &[]), 0.0);
    assert_eq!(s.sum("aws_sfn_map_run_items_finished_total", &[]), 0.0);
    assert_eq!(s.sum("aws_workflow_exporter_history_backlog", &[]), 0.0);
    assert_eq!(
        s.value(
            "aws_sfn_map_run_items",
            &[("map_run", "hist-2"), ("status", "failed")]
        ),
        Some(1.0),
        "history within retention is shown"
    );
    h.poll().await;
    let again = take_log(&h);
    assert!(
        !resources(&again, "DescribeMapRun")
            .iter()
            .any(|r| r.contains("hist-")),
        "history is described once"
    );
    assert!(!resources(&again, "GetExecutionHistory")
        .iter()
        .any(|r| r.contains("old-")));
}

#[tokio::test]
async fn the_newest_first_listing_stops_at_the_newest_execution_seen() {
    let mut h = Harness::start(SOURCE, |_| {}).await;
    let now = unix_now();
    let sm = {
        let mut w = h.world();
        w.sfn.page_cap = Some(5);
        let sm = w.sfn.add_state_machine("batch", now - 86400.0);
        // 150 s apart: only the newest 2 are within the watermark's overlap.
        for i in 0..12 {
            let exec =
                w.sfn
                    .start_execution(&sm, &format!("done-{i}"), now - 3000.0 + 150.0 * i as f64);
            w.sfn.stop_execution(&exec, "SUCCEEDED", now - 2000.0);
        }
        sm
    };
    h.poll().await;
    let first = take_log(&h);
    assert_eq!(
        resources(&first, "ListExecutions").len(),
        1 + 3,
        "RUNNING, then 3 pages of history"
    );
    h.poll().await;
    assert_eq!(
        resources(&take_log(&h), "ListExecutions").len(),
        1,
        "one page down to the newest execution already seen, less the overlap"
    );
    // An execution starts and finishes between two polls: found, listed and described once, counted.
    {
        let mut w = h.world();
        // Stopped after the exporter started (its clock is read before the polls).
        let t = unix_now();
        let exec = w.sfn.start_execution(&sm, "quick", t);
        let run = w.sfn.add_map_run(&exec, spec("quick", 10), t);
        w.sfn.set_progress(&run, 0, 10, 0, 0);
        w.sfn.finish_map_run(&run, "SUCCEEDED", t);
        w.sfn.stop_execution(&exec, "SUCCEEDED", t);
    }
    h.poll().await;
    let log = take_log(&h);
    assert_eq!(resources(&log, "ListExecutions").len(), 1);
    assert_eq!(resources(&log, "GetExecutionHistory").len(), 1);
    assert_eq!(
        ids(&resources(&log, "DescribeMapRun")),
        BTreeSet::from(["quick".to_string()])
    );
    let s = h.scrape().await;
    assert_eq!(
        s.value(
            "aws_sfn_map_runs_finished_total",
            &[("state_machine", "batch"), ("status", "succeeded")]
        ),
        Some(1.0)
    );
    h.poll().await;
    let log = take_log(&h);
    assert!(resources(&log, "DescribeMapRun").is_empty());
    assert!(resources(&log, "GetExecutionHistory").is_empty());
}

#[tokio::test]
async fn a_redrive_of_an_execution_older_than_lookback_is_found() {
    let mut h = Harness::start(SOURCE, |c| {
        c.sources.sfn_map_runs.lookback = Duration::from_secs(3600);
    })
    .await;
    let now = unix_now();
    let (exec, run) = {
        let mut w = h.world();
        let sm = w.sfn.add_state_machine("weekly", now - 30.0 * 86400.0);
        let exec = w.sfn.start_execution(&sm, "old", now - 2.0 * 86400.0);
        let run = w
            .sfn
            .add_map_run(&exec, spec("old", 100), now - 2.0 * 86400.0);
        w.sfn.set_progress(&run, 0, 90, 10, 0);
        w.sfn.finish_map_run(&run, "FAILED", now - 86400.0);
        w.sfn.stop_execution(&exec, "FAILED", now - 86400.0);
        (exec, run)
    };
    h.poll().await;
    let s = h.scrape().await;
    assert_eq!(s.count("aws_sfn_map_run_status", &[("map_run", "old")]), 0);

    h.world().sfn.redrive(&exec, unix_now());
    let mut polls = 0;
    loop {
        h.poll().await;
        polls += 1;
        let s = h.scrape().await;
        if s.value(
            "aws_sfn_map_run_status",
            &[("map_run", "old"), ("status", "running")],
        ) == Some(1.0)
        {
            break;
        }
        assert!(polls < 5, "the redrive is found within 5 polls");
    }
    {
        let mut w = h.world();
        w.sfn.set_progress(&run, 0, 100, 0, 0);
        w.sfn.finish_map_run(&run, "SUCCEEDED", unix_now());
        w.sfn.stop_execution(&exec, "SUCCEEDED", unix_now());
    }
    h.poll().await;
    let s = h.scrape().await;
    assert_eq!(
        s.value(
            "aws_sfn_map_run_items_finished_total",
            &[("state_machine", "weekly"), ("status", "succeeded")]
        ),
        Some(10.0),
        "only the 10 items the redrive reran"
    );
    assert_eq!(
        s.value(
            "aws_sfn_map_run_status",
            &[("map_run", "old"), ("status", "succeeded")]
        ),
        Some(1.0)
    );
}

#[tokio::test]
async fn a_quota_override_sets_the_budget_and_open_runs_wait_their_turn() {
    let mut h = Harness::start(SOURCE, |c| {
        // An account whose DescribeMapRun quota is 14 calls, refilled about never.
        c.aws_api
            .quotas
            .insert("states:DescribeMapRun".into(), (14.0, 0.001));
    })
    .await;
    let now = unix_now();
    {
        let mut w = h.world();
        let sm = w.sfn.add_state_machine("wide", now - 86400.0);
        let exec = w.sfn.start_execution(&sm, "live", now - 100.0);
        for i in 0..12 {
            let run = w
                .sfn
                .add_map_run(&exec, spec(&format!("r{i:02}"), 1000), now - 90.0);
            w.sfn.set_progress(&run, 10, 100, 1, 0);
        }
    }
    h.poll().await;
    assert_eq!(resources(&take_log(&h), "DescribeMapRun").len(), 12);
    // The 2 tokens left go to 2 runs; the others wait for tokens, and keep their last values.
    h.poll().await;
    assert_eq!(resources(&take_log(&h), "DescribeMapRun").len(), 2);
    h.poll().await;
    assert!(resources(&take_log(&h), "DescribeMapRun").is_empty());
    let s = h.scrape().await;
    assert_eq!(
        s.count("aws_sfn_map_run_status", &[("status", "running")]),
        12
    );
    assert_eq!(
        s.value(
            "aws_workflow_exporter_api_requests_total",
            &[
                ("service", "sfn"),
                ("operation", "DescribeMapRun"),
                ("outcome", "throttled")
            ]
        ),
        Some(0.0),
        "waiting for tokens, never calling into a throttle"
    );
}

#[tokio::test]
async fn retries_are_paid_from_the_budget_and_a_throttle_empties_it() {
    let mut h = Harness::start(SOURCE, |c| {
        c.aws_api.max_attempts = 3;
        c.aws_api
            .quotas
            .insert("states:DescribeMapRun".into(), (100.0, 1.0));
    })
    .await;
    let now = unix_now();
    {
        let mut w = h.world();
        let sm = w.sfn.add_state_machine("etl", now - 86400.0);
        let exec = w.sfn.start_execution(&sm, "live", now - 100.0);
        w.sfn.add_map_run(&exec, spec("busy", 100), now - 90.0);
        w.faults
            .push(fault("sfn", "DescribeMapRun", FaultKind::Throttle).times(2));
    }
    h.poll().await;
    let log = take_log(&h);
    let attempts: Vec<&Call> = log
        .iter()
        .filter(|c| c.operation == "DescribeMapRun")
        .collect();
    assert_eq!(attempts.len(), 3, "2 throttled attempts, then the answer");
    for pair in attempts.windows(2) {
        assert!(
            pair[1].at - pair[0].at >= Duration::from_secs(1),
            "a throttle empties the budget: the retry waits for a token (1/s)"
        );
    }
    let s = h.scrape().await;
    assert_eq!(
        s.value(
            "aws_sfn_map_run_status",
            &[("map_run", "busy"), ("status", "running")]
        ),
        Some(1.0)
    );
    let waited = s.value(
        "aws_workflow_exporter_api_budget_wait_seconds_total",
        &[("service", "sfn"), ("operation", "DescribeMapRun")],
    );
    assert!(waited.is_some_and(|w| w > 0.0), "budget wait {waited:?}");
    assert_eq!(
        s.value(
            "aws_workflow_exporter_api_requests_total",
            &[
                ("service", "sfn"),
                ("operation", "DescribeMapRun"),
                ("outcome", "throttled")
            ]
        ),
        Some(2.0)
    );
}

/// More state machines and running executions than a poll's share of ListExecutions and
/// GetExecutionHistory can read before its deadline: each poll does what it can, yields without
/// failing, and the next continues with what was not read yet, until every open run is on
/// /metrics.
#[tokio::test]
async fn a_poll_with_more_work_than_its_interval_yields_and_the_next_continues() {
    const STATE_MACHINES: usize = 12;
    let mut h = Harness::start(SOURCE, |c| {
        c.sources.sfn_map_runs.poll_interval = Duration::from_secs(1);
        // Half of each, the default share: 2 calls of burst and 2 a second, about 4 a poll.
        for action in ["states:ListExecutions", "states:GetExecutionHistory"] {
            c.aws_api.quotas.insert(action.into(), (4.0, 4.0));
        }
    })
    .await;
    let now = unix_now();
    {
        let mut w = h.world();
        for i in 0..STATE_MACHINES {
            let sm = w
                .sfn
                .add_state_machine(&format!("busy-{i:02}"), now - 86400.0);
            let exec = w.sfn.start_execution(&sm, "live", now - 60.0);
            w.sfn
                .add_map_run(&exec, spec(&format!("r{i:02}"), 10), now - 50.0);
        }
    }
    let mut listed: Vec<String> = Vec::new();
    let mut read: Vec<String> = Vec::new();
    let mut polls = 0;
    loop {
        h.poll().await;
        polls += 1;
        let log = take_log(&h);
        let this_poll = resources(&log, "GetExecutionHistory");
        assert!(
            this_poll.len() < STATE_MACHINES,
            "a poll reads only what its deadline allows"
        );
        assert!(resources(&log, "ListMapRuns").is_empty());
        read.extend(this_poll);
        listed.extend(resources(&log, "ListExecutions"));
        let s = h.scrape().await;
        assert_eq!(
            s.value(
                "aws_workflow_exporter_poll_success",
                &[("source", "sfn_map_runs")]
            ),
            Some(1.0),
            "yielding is not failing"
        );
        let open = s.count("aws_sfn_map_run_status", &[("status", "running")]);
        if open == STATE_MACHINES {
            break;
        }
        assert!(
            polls < 40,
            "all open runs on /metrics within 40 polls, {open} after {polls}"
        );
    }
    println!("{polls} polls; listed in order: {listed:?}; read in order: {read:?}");
    assert!(polls > 1);
    for (what, calls) in [("listings", &listed), ("history reads", &read)] {
        let first_pass: BTreeSet<&String> = calls.iter().take(STATE_MACHINES).collect();
        assert_eq!(
            first_pass.len(),
            STATE_MACHINES,
            "{what}: each poll continues with what was not done yet"
        );
    }
}
