//! The Map Run source against the simulator, through the real SDK over HTTP.

mod common;

use aws_workflow_exporter::simulator::sfn::MapRunSpec;
use aws_workflow_exporter::simulator::FaultKind;
use common::{
    assert_promtool_clean, fault, fault_on_every_call, map_run, open_run, unix_now, FaultExt,
    Harness, MapRunSpecExt, OpenRun,
};

const SOURCE: &[&str] = &["sfn_map_runs"];

/// This file's map runs: 40 items at a time, tolerating 10% or 5 failed items.
fn spec(id: &str, total: i64) -> MapRunSpec {
    map_run(id, total)
        .state("Fan Out")
        .concurrency(40)
        .tolerating(10.0, 5)
}

fn calls(h: &Harness, op: &str) -> usize {
    h.world().count("sfn", op)
}

#[tokio::test]
async fn a_map_run_is_followed_through_failure_and_redrive_with_counters_added_once() {
    let mut h = Harness::start(SOURCE, |_| {}).await;
    let now = unix_now();
    let (exec, run) = {
        let mut w = h.world();
        let OpenRun {
            execution, map_run, ..
        } = open_run(&mut w, now, "etl", "nightly", spec("run1", 100));
        w.sfn.set_progress(&map_run, 10, 30, 2, 1);
        (execution, map_run)
    };
    let labels = [
        ("state_machine", "etl"),
        ("map_state", "Fan Out"),
        ("execution", "nightly"),
        ("map_run", "run1"),
    ];
    let with = |extra: (&'static str, &'static str)| {
        let mut l = labels.to_vec();
        l.push(extra);
        l
    };

    // 1. Observed while running.
    h.poll().await;
    let s = h.scrape().await;
    assert_eq!(
        s.value("aws_sfn_map_run_items", &with(("status", "succeeded"))),
        Some(30.0)
    );
    assert_eq!(
        s.value("aws_sfn_map_run_items", &with(("status", "running"))),
        Some(10.0)
    );
    assert_eq!(
        s.value("aws_sfn_map_run_items", &with(("status", "failed"))),
        Some(2.0)
    );
    assert_eq!(
        s.value("aws_sfn_map_run_items", &with(("status", "timed_out"))),
        Some(1.0)
    );
    assert_eq!(
        s.value("aws_sfn_map_run_items", &with(("status", "pending"))),
        Some(57.0)
    );
    assert_eq!(
        s.value(
            "aws_sfn_map_run_child_executions",
            &with(("status", "succeeded"))
        ),
        Some(30.0)
    );
    assert_eq!(
        s.value("aws_sfn_map_run_status", &with(("status", "running"))),
        Some(1.0)
    );
    assert_eq!(
        s.value("aws_sfn_map_run_status", &with(("status", "failed"))),
        Some(0.0)
    );
    assert_eq!(
        s.value("aws_sfn_map_run_max_concurrency", &labels),
        Some(40.0)
    );
    assert_eq!(
        s.value("aws_sfn_map_run_tolerated_failure_ratio", &labels),
        Some(0.1)
    );
    assert_eq!(
        s.value("aws_sfn_map_run_tolerated_failed_items", &labels),
        Some(5.0)
    );
    assert_eq!(
        s.value("aws_sfn_map_run_items_results_written", &labels),
        Some(30.0)
    );
    assert_eq!(
        s.value("aws_sfn_map_run_stop_timestamp_seconds", &labels),
        None,
        "absent while running"
    );
    assert_eq!(
        s.value("aws_sfn_map_run_last_redrive_timestamp_seconds", &labels),
        None
    );
    assert_eq!(
        s.value("aws_sfn_map_runs_open", &[("state_machine", "etl")]),
        Some(1.0)
    );
    assert_eq!(
        s.value("aws_sfn_map_runs_finished_total", &[("status", "failed")]),
        Some(0.0)
    );
    assert_eq!(
        s.value("aws_sfn_map_run_start_timestamp_seconds", &labels)
            .map(f64::round),
        Some((now - 40.0).round())
    );
    assert_eq!(
        s.value(
            "aws_sfn_map_run_items",
            &[
                ("account_id", "123456789012"),
                ("region", "us-east-1"),
                ("status", "running")
            ]
        ),
        Some(10.0)
    );
    assert_promtool_clean(&s.text);

    // 2. Finishes with failures between two polls.
    {
        let mut w = h.world();
        w.sfn.set_progress(&run, 0, 80, 15, 5);
        w.sfn.finish_map_run(&run, "FAILED", now - 5.0);
        w.sfn.stop_execution(&exec, "FAILED", now - 5.0);
    }
    h.poll().await;
    let s = h.scrape().await;
    assert_eq!(
        s.value("aws_sfn_map_run_status", &with(("status", "failed"))),
        Some(1.0)
    );
    assert_eq!(
        s.value("aws_sfn_map_run_items", &with(("status", "failed"))),
        Some(15.0)
    );
    assert_eq!(
        s.value("aws_sfn_map_run_stop_timestamp_seconds", &labels)
            .map(f64::round),
        Some((now - 5.0).round())
    );
    assert_eq!(
        s.value("aws_sfn_map_runs_open", &[("state_machine", "etl")]),
        Some(0.0)
    );
    assert_eq!(
        s.value("aws_sfn_map_runs_finished_total", &[("status", "failed")]),
        Some(1.0)
    );
    assert_eq!(
        s.value(
            "aws_sfn_map_run_items_finished_total",
            &[("status", "succeeded")]
        ),
        Some(80.0)
    );
    assert_eq!(
        s.value(
            "aws_sfn_map_run_items_finished_total",
            &[("status", "failed")]
        ),
        Some(15.0)
    );
    assert_eq!(
        s.value(
            "aws_sfn_map_run_items_finished_total",
            &[("status", "timed_out")]
        ),
        Some(5.0)
    );

    // 3. Terminal: not described again across 10 further polls.
    h.take_calls();
    for _ in 0..10 {
        h.poll().await;
    }
    assert_eq!(calls(&h, "DescribeMapRun"), 0);
    assert_eq!(calls(&h, "ListMapRuns"), 0);
    assert_eq!(calls(&h, "GetExecutionHistory"), 0);
    let s = h.scrape().await;
    assert_eq!(
        s.value("aws_sfn_map_runs_finished_total", &[("status", "failed")]),
        Some(1.0),
        "counted once"
    );
    assert_eq!(
        s.value(
            "aws_sfn_map_run_items_finished_total",
            &[("status", "failed")]
        ),
        Some(15.0)
    );

    // 4. Redriven: runs again, then succeeds; only the difference is added.
    h.world().sfn.redrive(&exec, now - 2.0);
    h.poll().await;
    let s = h.scrape().await;
    assert_eq!(
        s.value("aws_sfn_map_run_status", &with(("status", "running"))),
        Some(1.0)
    );
    assert_eq!(
        s.value("aws_sfn_map_run_redrives_total", &labels),
        Some(1.0)
    );
    assert_eq!(
        s.value("aws_sfn_map_run_last_redrive_timestamp_seconds", &labels)
            .map(f64::round),
        Some((now - 2.0).round())
    );
    assert_eq!(
        s.value("aws_sfn_map_run_items", &with(("status", "pending"))),
        Some(20.0)
    );
    assert_eq!(
        s.value("aws_sfn_map_runs_open", &[("state_machine", "etl")]),
        Some(1.0)
    );
    {
        let mut w = h.world();
        w.sfn.set_progress(&run, 0, 100, 0, 0);
        w.sfn.finish_map_run(&run, "SUCCEEDED", now - 1.0);
        w.sfn.stop_execution(&exec, "SUCCEEDED", now - 1.0);
    }
    h.poll().await;
    h.poll().await;
    let s = h.scrape().await;
    assert_eq!(
        s.value("aws_sfn_map_run_status", &with(("status", "succeeded"))),
        Some(1.0)
    );
    assert_eq!(
        s.value("aws_sfn_map_runs_finished_total", &[("status", "failed")]),
        Some(1.0)
    );
    assert_eq!(
        s.value(
            "aws_sfn_map_runs_finished_total",
            &[("status", "succeeded")]
        ),
        Some(0.0),
        "a run is counted as finished once"
    );
    assert_eq!(
        s.value(
            "aws_sfn_map_run_items_finished_total",
            &[("status", "succeeded")]
        ),
        Some(100.0),
        "80 + the 20 rerun"
    );
    assert_eq!(
        s.value(
            "aws_sfn_map_run_items_finished_total",
            &[("status", "failed")]
        ),
        Some(15.0)
    );
    h.take_calls();
    for _ in 0..10 {
        h.poll().await;
    }
    assert_eq!(
        calls(&h, "DescribeMapRun"),
        0,
        "terminal again after the redrive"
    );
    assert_promtool_clean(&h.scrape().await.text);
}

#[tokio::test]
async fn runs_finished_before_the_first_poll_feed_no_counter() {
    let mut h = Harness::start(SOURCE, |_| {}).await;
    let now = unix_now();
    {
        let mut w = h.world();
        let sm = w.sfn.add_state_machine("old", now - 7200.0);
        let exec = w.sfn.start_execution(&sm, "yesterday", now - 3600.0);
        let run = w.sfn.add_map_run(&exec, spec("done", 10), now - 3600.0);
        w.sfn.set_progress(&run, 0, 4, 6, 0);
        w.sfn.finish_map_run(&run, "FAILED", now - 3000.0);
        w.sfn.stop_execution(&exec, "FAILED", now - 3000.0);
    }
    h.poll().await;
    let s = h.scrape().await;
    assert_eq!(
        s.value(
            "aws_sfn_map_run_items",
            &[("map_run", "done"), ("status", "failed")]
        ),
        Some(6.0)
    );
    assert_eq!(
        s.value("aws_sfn_map_runs_finished_total", &[("status", "failed")]),
        Some(0.0)
    );
    assert_eq!(
        s.value(
            "aws_sfn_map_run_items_finished_total",
            &[("status", "failed")]
        ),
        Some(0.0)
    );
}

#[tokio::test]
async fn a_throttled_describe_degrades_one_run_for_one_poll() {
    // Listed every poll, so that the listing's fault below is met.
    let mut h = Harness::start(SOURCE, |c| {
        c.sources.sfn_map_runs.discovery_interval = std::time::Duration::ZERO
    })
    .await;
    let now = unix_now();
    let (a, b) = {
        let mut w = h.world();
        let first = open_run(&mut w, now, "etl", "e1", spec("a", 10));
        let a = first.map_run;
        let b = w
            .sfn
            .add_map_run(&first.execution, spec("b", 10), now - 40.0);
        w.sfn.set_progress(&a, 1, 2, 0, 0);
        w.sfn.set_progress(&b, 1, 3, 0, 0);
        (a, b)
    };
    h.poll().await;
    {
        let mut w = h.world();
        w.sfn.set_progress(&a, 1, 5, 0, 0);
        w.sfn.set_progress(&b, 1, 6, 0, 0);
        w.faults.push(
            fault("sfn", "DescribeMapRun", FaultKind::Throttle)
                .matching(&a)
                .times(1),
        );
    }
    h.poll().await;
    let s = h.scrape().await;
    assert_eq!(
        s.value(
            "aws_sfn_map_run_items",
            &[("map_run", "a"), ("status", "succeeded")]
        ),
        Some(2.0),
        "keeps its last value"
    );
    assert_eq!(
        s.value(
            "aws_sfn_map_run_items",
            &[("map_run", "b"), ("status", "succeeded")]
        ),
        Some(6.0),
        "others are intact"
    );
    assert_eq!(
        s.value(
            "aws_workflow_exporter_poll_success",
            &[("source", "sfn_map_runs")]
        ),
        Some(0.0)
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
        Some(1.0)
    );
    // The next poll recovers.
    h.poll().await;
    let s = h.scrape().await;
    assert_eq!(
        s.value(
            "aws_sfn_map_run_items",
            &[("map_run", "a"), ("status", "succeeded")]
        ),
        Some(5.0)
    );
    assert_eq!(
        s.value(
            "aws_workflow_exporter_poll_success",
            &[("source", "sfn_map_runs")]
        ),
        Some(1.0)
    );

    // A server error on the listing keeps everything learned so far.
    h.world()
        .faults
        .push(fault("sfn", "ListStateMachines", FaultKind::ServerError).times(1));
    h.poll().await;
    let s = h.scrape().await;
    assert_eq!(
        s.value(
            "aws_sfn_map_run_items",
            &[("map_run", "a"), ("status", "succeeded")]
        ),
        Some(5.0)
    );
    assert_eq!(
        s.value(
            "aws_workflow_exporter_poll_success",
            &[("source", "sfn_map_runs")]
        ),
        Some(0.0)
    );
    assert_eq!(
        s.value(
            "aws_workflow_exporter_api_requests_total",
            &[
                ("operation", "ListStateMachines"),
                ("outcome", "server_error")
            ]
        ),
        Some(1.0)
    );
}

#[tokio::test]
async fn steady_state_costs_no_describes_of_finished_runs() {
    let mut h = Harness::start(SOURCE, |_| {}).await;
    let now = unix_now();
    {
        let mut w = h.world();
        w.sfn.page_cap = Some(7); // exercise pagination everywhere
        let sm = w.sfn.add_state_machine("batch", now - 7200.0);
        for i in 0..20 {
            let exec = w
                .sfn
                .start_execution(&sm, &format!("done-{i}"), now - 3000.0 + i as f64);
            let run = w
                .sfn
                .add_map_run(&exec, spec(&format!("d{i}"), 10), now - 3000.0);
            w.sfn.set_progress(&run, 0, 10, 0, 0);
            w.sfn.finish_map_run(&run, "SUCCEEDED", now - 1000.0);
            w.sfn.stop_execution(&exec, "SUCCEEDED", now - 1000.0);
        }
        for i in 0..2 {
            let exec = w
                .sfn
                .start_execution(&sm, &format!("live-{i}"), now - 60.0 + i as f64);
            let run = w
                .sfn
                .add_map_run(&exec, spec(&format!("l{i}"), 10), now - 60.0);
            w.sfn.set_progress(&run, 5, 1, 0, 0);
        }
    }
    h.poll().await;
    let first = h.take_calls();
    let s = h.scrape().await;
    assert_eq!(
        s.count("aws_sfn_map_run_status", &[("status", "running")]),
        22
    );
    assert_eq!(
        s.value(
            "aws_workflow_exporter_tracked_resources",
            &[("kind", "map_run")]
        ),
        Some(22.0)
    );
    h.poll().await;
    let steady = h.take_calls();
    let get = |m: &std::collections::BTreeMap<(String, String), usize>, op: &str| {
        m.get(&("sfn".to_string(), op.to_string()))
            .copied()
            .unwrap_or(0)
    };
    assert_eq!(get(&first, "DescribeMapRun"), 22);
    assert_eq!(
        get(&first, "GetExecutionHistory"),
        22,
        "one page of events each"
    );
    assert_eq!(get(&first, "ListMapRuns"), 0);
    // Steady state: no ListStateMachines (listed again every discovery_interval, 5 polls by
    // default), the definition cached, RUNNING list (1 page) + newest
    // first down to the newest execution already seen (1 page of 7; this poll is not the state
    // machine's turn to look for redrives), the new events and DescribeMapRun for the 2 running
    // executions only.
    assert_eq!(get(&first, "DescribeStateMachine"), 1);
    assert_eq!(get(&steady, "DescribeStateMachine"), 0);
    assert_eq!(get(&first, "ListStateMachines"), 1);
    assert_eq!(get(&steady, "ListStateMachines"), 0);
    assert_eq!(get(&steady, "ListExecutions"), 1 + 1);
    assert_eq!(get(&steady, "GetExecutionHistory"), 2);
    assert_eq!(get(&steady, "ListMapRuns"), 0);
    assert_eq!(get(&steady, "DescribeMapRun"), 2);
    println!("calls per poll, first: {first:?}\ncalls per poll, steady state: {steady:?}");
}

#[tokio::test]
async fn per_run_series_expire_after_retention_while_aggregates_stay() {
    let mut h = Harness::start(SOURCE, |c| {
        c.sources.sfn_map_runs.retention = std::time::Duration::from_secs(60)
    })
    .await;
    let now = unix_now();
    let sm = h.world().sfn.add_state_machine("etl", now - 7200.0);
    {
        let mut w = h.world();
        let exec = w.sfn.start_execution(&sm, "old", now - 3600.0);
        let run = w.sfn.add_map_run(&exec, spec("old", 10), now - 3600.0);
        w.sfn.finish_map_run(&run, "SUCCEEDED", now - 120.0);
        w.sfn.stop_execution(&exec, "SUCCEEDED", now - 120.0);
        let exec = w.sfn.start_execution(&sm, "new", now - 30.0);
        w.sfn.add_map_run(&exec, spec("new", 10), now - 30.0);
    }
    h.poll().await;
    let s = h.scrape().await;
    assert_eq!(
        s.count("aws_sfn_map_run_status", &[("map_run", "old")]),
        0,
        "stopped 120s ago, retention 60s"
    );
    assert_eq!(s.count("aws_sfn_map_run_status", &[("map_run", "new")]), 4);
    assert_eq!(
        s.value(
            "aws_sfn_map_runs_finished_total",
            &[("status", "succeeded")]
        ),
        Some(0.0)
    );

    // A deleted state machine drops its series, its counters included.
    assert_eq!(
        s.count(
            "aws_sfn_map_runs_finished_total",
            &[("state_machine", "etl")]
        ),
        3
    );
    h.world().sfn.delete_state_machine(&sm);
    h.poll().await;
    let s = h.scrape().await;
    assert_eq!(s.count("aws_sfn_map_run_status", &[]), 0);
    assert_eq!(s.count("aws_sfn_map_runs_finished_total", &[]), 0);
    assert_eq!(s.count("aws_sfn_map_run_items_finished_total", &[]), 0);
    assert_eq!(s.count("aws_sfn_map_runs_open", &[]), 0);
}

#[tokio::test]
async fn http_endpoints_serve_cached_metrics_gzip_and_readiness() {
    let mut h = Harness::start(SOURCE, |_| {}).await;
    let ready = common::http_get(h.http_addr, "/readyz", &[]).await;
    assert_eq!(ready.status, 503, "not ready before the first poll");
    let waiting = String::from_utf8_lossy(&ready.body);
    assert!(
        waiting.starts_with("waiting for a first poll of 1 source instance(s): sfn_map_runs@"),
        "{waiting}"
    );
    assert_eq!(
        common::http_get(h.http_addr, "/healthz", &[]).await.status,
        200
    );
    h.poll().await;
    assert_eq!(
        common::http_get(h.http_addr, "/readyz", &[]).await.status,
        200
    );
    let landing = common::http_get(h.http_addr, "/", &[]).await;
    assert!(String::from_utf8_lossy(&landing.body).contains("/metrics"));
    assert_eq!(
        common::http_get(h.http_addr, "/nope", &[]).await.status,
        404
    );

    h.take_calls();
    let plain = common::http_get(h.http_addr, "/metrics", &[]).await;
    let gz = common::http_get(h.http_addr, "/metrics", &[("Accept-Encoding", "gzip")]).await;
    assert!(h.take_calls().is_empty(), "a scrape never calls AWS");
    assert_eq!(gz.header("content-encoding"), Some("gzip"));
    assert_eq!(plain.header("content-encoding"), None);
    let mut decoded = Vec::new();
    std::io::Read::read_to_end(
        &mut flate2::read::GzDecoder::new(&gz.body[..]),
        &mut decoded,
    )
    .unwrap();
    assert_eq!(decoded, plain.body);
    assert!(plain
        .header("content-type")
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
}

/// Map runs are found in the parent's history; only new events are read after the first time,
/// and a MapRunSucceeded event has the ended run described at once.
#[tokio::test]
async fn map_runs_are_found_in_the_parents_history_read_newest_first() {
    let mut h = Harness::start(SOURCE, |_| {}).await;
    let now = unix_now();
    let (exec, first) = {
        let mut w = h.world();
        let sm = w.sfn.add_state_machine("etl", now - 100.0);
        let exec = w.sfn.start_execution(&sm, "loop", now);
        w.sfn.add_task_events(&exec, 250, now);
        let run = w.sfn.add_map_run(&exec, spec("first", 10), now);
        (exec, run)
    };
    h.poll().await;
    assert_eq!(
        calls(&h, "GetExecutionHistory"),
        1,
        "found on the first page"
    );
    assert_eq!(calls(&h, "ListMapRuns"), 0);
    let s = h.scrape().await;
    assert_eq!(
        s.value(
            "aws_sfn_map_run_status",
            &[("map_run", "first"), ("status", "running")]
        ),
        Some(1.0)
    );

    // The first run ends and the loop starts a second one in the same execution.
    let second = {
        let mut w = h.world();
        w.sfn.set_progress(&first, 0, 10, 0, 0);
        w.sfn.finish_map_run(&first, "SUCCEEDED", unix_now());
        w.sfn.add_map_run(&exec, spec("second", 5), unix_now())
    };
    h.world().calls.clear();
    h.poll().await;
    let described: Vec<String> = h
        .world()
        .calls
        .iter()
        .filter(|c| c.operation == "DescribeMapRun")
        .filter_map(|c| c.resource.clone())
        .collect();
    assert_eq!(calls(&h, "GetExecutionHistory"), 1);
    assert_eq!(described.len(), 2, "{described:?}");
    assert!(described.contains(&first) && described.contains(&second));
    let s = h.scrape().await;
    assert_eq!(
        s.value(
            "aws_sfn_map_runs_finished_total",
            &[("state_machine", "etl"), ("status", "succeeded")]
        ),
        Some(1.0)
    );
    assert_eq!(
        s.value(
            "aws_sfn_map_run_status",
            &[("map_run", "second"), ("status", "running")]
        ),
        Some(1.0)
    );
}

/// Without states:GetExecutionHistory (an older policy), or for a history too long to read,
/// map runs are listed with ListMapRuns, and the poll still succeeds.
#[tokio::test]
async fn map_runs_are_listed_when_the_history_is_denied_or_too_long() {
    for denied in [true, false] {
        let mut h = Harness::start(SOURCE, |_| {}).await;
        let now = unix_now();
        {
            let mut w = h.world();
            let sm = w.sfn.add_state_machine("etl", now - 100.0);
            let exec = w.sfn.start_execution(&sm, "long", now);
            w.sfn.add_map_run(&exec, spec("early", 10), now);
            if denied {
                w.faults
                    .push(fault("sfn", "GetExecutionHistory", FaultKind::AccessDenied));
            } else {
                // More new events than 3 pages of 1,000.
                w.sfn.add_task_events(&exec, 3500, now);
            }
        }
        h.poll().await;
        let s = h.scrape().await;
        assert_eq!(
            s.value(
                "aws_sfn_map_run_status",
                &[("map_run", "early"), ("status", "running")]
            ),
            Some(1.0),
            "denied: {denied}"
        );
        assert_eq!(
            s.value(
                "aws_workflow_exporter_poll_success",
                &[("source", "sfn_map_runs")]
            ),
            Some(1.0)
        );
        assert_eq!(calls(&h, "ListMapRuns"), 1);
        let history_calls = calls(&h, "GetExecutionHistory");
        assert_eq!(
            history_calls,
            if denied { 1 } else { 3 },
            "denied: {denied}"
        );
        h.world().calls.clear();
        h.poll().await;
        // Denied: not tried again for an hour. Too long: the next read starts at the newest event.
        assert_eq!(calls(&h, "GetExecutionHistory"), usize::from(!denied));
        assert_eq!(calls(&h, "ListMapRuns"), usize::from(denied));
    }
}

/// Before its first describe (DescribeMapRun refills at 1/s: a busy account waits minutes for
/// it), a run found by its MapRunStarted event is shown running from the event's time; once the
/// history shows a run of the execution ended, it is shown only after a describe says how.
#[tokio::test]
async fn a_run_is_shown_running_from_its_start_event_until_described() {
    let mut h = Harness::start(SOURCE, |_| {}).await;
    let now = unix_now();
    let run = {
        let mut w = h.world();
        let sm = w.sfn.add_state_machine("etl", now - 100.0);
        let exec = w.sfn.start_execution(&sm, "busy", now - 60.0);
        let run = w.sfn.add_map_run(&exec, spec("early", 10), now - 50.0);
        w.faults
            .push(fault("sfn", "DescribeMapRun", FaultKind::AccessDenied));
        run
    };
    let labels = |status: &'static str| [("map_run", "early"), ("status", status)];
    h.poll().await;
    let s = h.scrape().await;
    assert_eq!(
        s.value("aws_sfn_map_run_status", &labels("running")),
        Some(1.0)
    );
    assert_eq!(
        s.value("aws_sfn_map_run_status", &labels("succeeded")),
        Some(0.0)
    );
    assert_eq!(
        s.value(
            "aws_sfn_map_run_start_timestamp_seconds",
            &[("map_run", "early")]
        ),
        Some(now - 50.0)
    );
    assert_eq!(
        s.value("aws_sfn_map_runs_open", &[("state_machine", "etl")]),
        Some(1.0)
    );
    assert_eq!(s.count("aws_sfn_map_run_items", &[("map_run", "early")]), 0);
    assert_promtool_clean(&s.text);

    // It ends: no longer shown running, and not shown at all until a describe says how.
    h.world().sfn.finish_map_run(&run, "SUCCEEDED", unix_now());
    h.poll().await;
    let s = h.scrape().await;
    assert_eq!(
        s.count("aws_sfn_map_run_status", &[("map_run", "early")]),
        0
    );
    h.world().faults.clear();
    h.poll().await;
    let s = h.scrape().await;
    assert_eq!(
        s.value("aws_sfn_map_run_status", &labels("succeeded")),
        Some(1.0)
    );
    assert_eq!(
        s.value("aws_sfn_map_runs_open", &[("state_machine", "etl")]),
        Some(0.0)
    );
}

#[tokio::test]
async fn targets_whose_account_cannot_be_learned_emit_no_identical_series() {
    // Two targets in one region, STS denied and no resource whose ARN names the account: both
    // stay `unknown`, and a series carrying only account and region would appear twice.
    let mut h = Harness::start(&["sfn_map_runs"], |c| {
        let mut second = c.targets[0].clone();
        second.name = "second".into();
        c.targets.push(second);
    })
    .await;
    h.world()
        .faults
        .push(fault_on_every_call("sts", FaultKind::AccessDenied));
    h.poll().await;
    let text = common::http_get(h.http_addr, "/metrics", &[]).await.body;
    let text = String::from_utf8(text).unwrap();
    assert_promtool_clean(&text);
    let s = common::Scrape::parse(&text);
    assert_eq!(
        s.count(
            "aws_workflow_exporter_history_backlog",
            &[("account_id", "unknown")]
        ),
        0,
        "{text}"
    );
}

#[tokio::test]
async fn a_stalled_describe_fails_the_poll_after_one_timeout_not_one_per_attempt_and_run() {
    let mut h = Harness::start(&["sfn_map_runs"], |c| {
        c.aws_api.operation_timeout = std::time::Duration::from_secs(1);
        c.aws_api.max_attempts = 3;
    })
    .await;
    let now = unix_now();
    {
        let mut w = h.world();
        let exec = open_run(&mut w, now, "etl", "nightly", spec("run1", 10)).execution;
        for id in ["run2", "run3"] {
            w.sfn.add_map_run(&exec, spec(id, 10), now - 40.0);
        }
        w.faults.push(fault(
            "sfn",
            "DescribeMapRun",
            FaultKind::Delay(std::time::Duration::from_secs(30)),
        ));
    }
    h.poll().await;
    let calls = h.take_calls();
    assert_eq!(
        calls.get(&("sfn".into(), "DescribeMapRun".into())),
        Some(&1),
        "one timed-out attempt, then no call of the stalled service this poll: {calls:?}"
    );
    let s = h.scrape().await;
    assert_eq!(
        s.value(
            "aws_workflow_exporter_poll_success",
            &[("source", "sfn_map_runs")]
        ),
        Some(0.0)
    );
    // The next poll tries once more.
    h.poll().await;
    let calls = h.take_calls();
    assert_eq!(
        calls.get(&("sfn".into(), "DescribeMapRun".into())),
        Some(&1),
        "{calls:?}"
    );
}

#[tokio::test]
async fn the_background_history_listing_pages_only_with_spare_tokens() {
    // 12 pages of history and a ListExecutions bucket of 10 that barely refills: a listing
    // that checked only its first page would take every token and then wait for a refill.
    let mut h = Harness::start(&["sfn_map_runs"], |c| {
        c.aws_api
            .quotas
            .insert("states:ListExecutions".into(), (10.0, 0.001));
    })
    .await;
    let now = unix_now();
    {
        let mut w = h.world();
        let sm = w.sfn.add_state_machine("etl", now - 7200.0);
        for i in 0..12_000 {
            let start = now - 1800.0 + f64::from(i) * 0.1;
            let exec = w.sfn.start_execution(&sm, &format!("e{i}"), start);
            w.sfn.stop_execution(&exec, "SUCCEEDED", start + 0.05);
        }
        w.sfn.start_execution(&sm, "running", now - 10.0);
    }
    let polled = tokio::time::timeout(std::time::Duration::from_secs(50), h.poll()).await;
    assert!(
        polled.is_ok(),
        "the poll waited for ListExecutions tokens the background may not take"
    );
    let calls = h.take_calls();
    let listed = calls
        .get(&("sfn".into(), "ListExecutions".into()))
        .copied()
        .unwrap_or(0);
    assert!(
        (2..10).contains(&listed),
        "open work listed, history took only spare tokens and left some: {calls:?}"
    );
}

#[tokio::test]
async fn an_execution_listed_only_after_a_newer_one_still_has_its_map_runs_counted() {
    let mut h = Harness::start(SOURCE, |_| {}).await;
    let now = unix_now();
    let sm = {
        let mut w = h.world();
        let sm = w.sfn.add_state_machine("etl", now - 1000.0);
        let first = w.sfn.start_execution(&sm, "first", now - 100.0);
        w.sfn.stop_execution(&first, "SUCCEEDED", now - 90.0);
        sm
    };
    h.poll().await;
    // Started while the exporter watched, so counted when finished (not a baseline).
    let t = unix_now();
    // `late` started before `newer`, but ListExecutions (eventually consistent) shows it only
    // after the exporter listed `newer`.
    let late = {
        let mut w = h.world();
        let late = w.sfn.start_execution(&sm, "late", t + 1.0);
        w.sfn.set_listed(&late, false);
        let run = w.sfn.add_map_run(&late, spec("late-run", 10), t + 2.0);
        w.sfn.set_progress(&run, 0, 10, 0, 0);
        w.sfn.finish_map_run(&run, "SUCCEEDED", t + 3.0);
        w.sfn.stop_execution(&late, "SUCCEEDED", t + 4.0);
        let newer = w.sfn.start_execution(&sm, "newer", t + 10.0);
        w.sfn.stop_execution(&newer, "SUCCEEDED", t + 11.0);
        late
    };
    h.poll().await;
    h.world().sfn.set_listed(&late, true);
    for _ in 0..3 {
        h.poll().await;
    }
    let s = h.scrape().await;
    assert_eq!(
        s.value(
            "aws_sfn_map_runs_finished_total",
            &[("state_machine", "etl"), ("status", "succeeded")]
        ),
        Some(1.0),
        "late's map run is counted once"
    );
}

#[tokio::test]
async fn a_failed_run_its_parents_redrive_does_not_rerun_is_not_described_every_poll() {
    let mut h = Harness::start(SOURCE, |_| {}).await;
    let now = unix_now();
    let (exec, caught) = {
        let mut w = h.world();
        let sm = w.sfn.add_state_machine("etl", now - 1000.0);
        let exec = w.sfn.start_execution(&sm, "nightly", now - 500.0);
        let caught = w.sfn.add_map_run(&exec, spec("caught", 10), now - 400.0);
        w.sfn.set_progress(&caught, 0, 5, 5, 0);
        w.sfn.finish_map_run(&caught, "FAILED", now - 300.0);
        w.sfn.stop_execution(&exec, "FAILED", now - 200.0);
        // A Catch handled the map's failure: a redrive resumes after it.
        w.sfn.map_runs.get_mut(&caught).unwrap().kept_on_redrive = true;
        (exec, caught)
    };
    h.poll().await;
    h.world().sfn.redrive(&exec, now - 120.0);
    let described = |h: &Harness| {
        h.world()
            .calls
            .iter()
            .filter(|c| c.operation == "DescribeMapRun" && c.body.contains(&caught))
            .count()
    };
    h.world().calls.clear();
    for _ in 0..5 {
        h.poll().await;
    }
    assert_eq!(
        described(&h),
        1,
        "described once after the parent's redrive, not every poll while the parent runs"
    );

    // A run the redrive reruns, described before it restarted, is seen running once it has.
    let t = unix_now();
    {
        let mut w = h.world();
        w.sfn.stop_execution(&exec, "FAILED", t);
        w.sfn.redrive(&exec, t);
    }
    h.poll().await;
    h.world().sfn.rerun_map_run(&caught, t + 1.0);
    h.poll().await;
    let s = h.scrape().await;
    assert_eq!(
        s.value(
            "aws_sfn_map_run_status",
            &[("map_run", "caught"), ("status", "running")]
        ),
        Some(1.0),
        "the late restart is seen"
    );
}

#[tokio::test]
async fn a_state_machine_whose_published_version_has_a_distributed_map_is_watched() {
    use aws_workflow_exporter::simulator::sfn::definitions;
    let mut h = Harness::start(SOURCE, |_| {}).await;
    let now = unix_now();
    {
        let mut w = h.world();
        // Version 1 (behind an alias, say) has the Distributed Map; the latest definition not.
        let sm = w.sfn.add_state_machine("aliased", now - 1000.0);
        w.sfn.publish_version(&sm);
        w.sfn.update_definition(&sm, &definitions::no_map("Work"));
        w.sfn.publish_version(&sm);
        let exec = w.sfn.start_execution(&sm, "prod", now - 50.0);
        w.sfn.add_map_run(&exec, spec("via-alias", 10), now - 40.0);
        // Neither the latest nor a version has one: not listed.
        w.sfn
            .add_state_machine_with("plain", now - 1000.0, &definitions::no_map("Work"));
    }
    h.poll().await;
    let s = h.scrape().await;
    assert!(
        s.count("aws_sfn_map_run_items", &[("map_run", "via-alias")]) > 0,
        "the run of the version with a Distributed Map is shown"
    );
    let calls = h.take_calls();
    let n = |op: &str| calls.get(&("sfn".into(), op.into())).copied().unwrap_or(0);
    assert_eq!(n("ListStateMachineVersions"), 2, "{calls:?}");
    // Each state machine's latest, and aliased's two versions, read once.
    assert_eq!(n("DescribeStateMachine"), 4, "{calls:?}");
    h.poll().await;
    let calls = h.take_calls();
    assert_eq!(
        calls.get(&("sfn".into(), "DescribeStateMachine".into())),
        None,
        "definitions and versions are cached: {calls:?}"
    );
}

#[tokio::test]
async fn executions_of_a_published_version_without_a_distributed_map_are_not_searched() {
    use aws_workflow_exporter::simulator::sfn::definitions;
    let mut h = Harness::start(SOURCE, |_| {}).await;
    let now = unix_now();
    {
        let mut w = h.world();
        // Version 1 has the Distributed Map; version 2 and the latest definition not.
        let sm = w.sfn.add_state_machine("etl", now - 1000.0);
        let v1 = w.sfn.publish_version(&sm);
        w.sfn.update_definition(&sm, &definitions::no_map("Work"));
        let v2 = w.sfn.publish_version(&sm);
        let mapped = w.sfn.start_execution_of_version(&v1, "on-v1", now - 50.0);
        w.sfn.add_map_run(&mapped, spec("fan-out", 10), now - 40.0);
        w.sfn.start_execution_of_version(&v2, "on-v2", now - 30.0);
    }
    h.poll().await;
    let s = h.scrape().await;
    assert!(s.count("aws_sfn_map_run_items", &[("map_run", "fan-out")]) > 0);
    let calls = h.take_calls();
    let n = |op: &str| calls.get(&("sfn".into(), op.into())).copied().unwrap_or(0);
    assert_eq!(
        n("GetExecutionHistory") + n("ListMapRuns"),
        1,
        "only the execution of version 1 is searched for map runs: {calls:?}"
    );
}

#[tokio::test]
async fn state_machines_are_listed_every_discovery_interval_and_a_deleted_one_goes_at_once() {
    // Polls are driven by the test, back to back; the listing is due by the clock.
    let interval = std::time::Duration::from_secs(2);
    let mut h = Harness::start(SOURCE, |c| {
        let sfn = &mut c.sources.sfn_map_runs;
        sfn.poll_interval = std::time::Duration::from_secs(1);
        sfn.discovery_interval = interval;
    })
    .await;
    let now = unix_now();
    open_run(&mut h.world(), now, "etl", "e1", spec("a", 10));
    h.poll().await;
    assert_eq!(calls(&h, "ListStateMachines"), 1);
    let s = h.scrape().await;
    assert!(s.count("aws_sfn_map_run_status", &[("map_run", "a")]) > 0);

    // A state machine created after the listing is found at the next one, within the interval;
    // the polls in between go on from the last listing.
    let started = std::time::Instant::now();
    let late = open_run(&mut h.world(), now, "late", "e2", spec("b", 10));
    let mut polls = 0;
    loop {
        h.poll().await;
        polls += 1;
        let s = h.scrape().await;
        if s.count("aws_sfn_map_run_status", &[("map_run", "b")]) > 0 {
            break;
        }
        assert!(
            started.elapsed() < interval * 5,
            "the new state machine is not on /metrics after {polls} polls"
        );
    }
    let listings = calls(&h, "ListStateMachines");
    assert_eq!(listings, 2, "one more listing for {polls} polls");
    assert!(polls > 1, "at least one poll went on from the last listing");

    // A deleted state machine: its ListExecutions answers StateMachineDoesNotExist, its series
    // go at that poll without failing it, and the next poll lists again.
    h.world().sfn.delete_state_machine(&late.state_machine);
    h.poll().await;
    let s = h.scrape().await;
    assert_eq!(s.count("aws_sfn_map_run_status", &[("map_run", "b")]), 0);
    assert!(s.count("aws_sfn_map_run_status", &[("map_run", "a")]) > 0);
    assert_eq!(
        s.count("aws_sfn_state_machine_info", &[("state_machine", "late")]),
        0
    );
    assert_eq!(
        s.value(
            "aws_workflow_exporter_poll_success",
            &[("source", "sfn_map_runs")]
        ),
        Some(1.0)
    );
    h.poll().await;
    assert_eq!(calls(&h, "ListStateMachines"), listings + 1);
}
