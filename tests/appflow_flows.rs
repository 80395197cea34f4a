//! The AppFlow flow source against the simulator, through the real SDK over HTTP (restJson1).

mod common;

use std::collections::BTreeMap;

use aws_workflow_exporter::simulator::FaultKind;
use common::{assert_promtool_clean, fault, unix_now, FaultExt, Harness};

const SOURCE: &[&str] = &["appflow_flows"];
const DESCRIBE: &str = "DescribeFlowExecutionRecords";

fn get(m: &BTreeMap<(String, String), usize>, op: &str) -> usize {
    m.get(&("appflow".to_string(), op.to_string()))
        .copied()
        .unwrap_or(0)
}

#[tokio::test]
async fn a_run_seen_in_progress_then_successful_is_counted_once() {
    let mut h = Harness::start(SOURCE, |_| {}).await;
    let now = unix_now();
    let id = {
        let mut w = h.world();
        w.appflow.add_flow("sfdc-accounts", now - 86400.0);
        let id = w.appflow.start_run("sfdc-accounts", now - 600.0);
        w.appflow.set_progress(&id, 1_000, 500, 10, now - 300.0);
        id
    };
    let flow = [("flow", "sfdc-accounts")];
    let with = |k: &'static str, v: &'static str| vec![("flow", "sfdc-accounts"), (k, v)];

    h.poll().await;
    let s = h.scrape().await;
    assert_eq!(
        s.value("aws_appflow_flow_runs_in_progress", &flow),
        Some(1.0)
    );
    assert_eq!(
        s.value(
            "aws_appflow_flow_last_run_status",
            &with("status", "in_progress")
        ),
        Some(1.0)
    );
    assert_eq!(s.count("aws_appflow_flow_last_run_status", &flow), 5);
    for status in ["successful", "error", "canceled"] {
        assert_eq!(
            s.value("aws_appflow_flow_runs_total", &with("status", status)),
            Some(0.0),
            "pre-created at 0"
        );
    }
    assert_eq!(
        s.value("aws_appflow_flow_bytes_processed_total", &flow),
        Some(0.0)
    );
    assert_eq!(
        s.value("aws_appflow_flow_last_run_start_timestamp_seconds", &flow)
            .map(f64::round),
        Some((now - 600.0).round())
    );
    assert_eq!(
        s.value(
            "aws_appflow_flow_last_successful_run_timestamp_seconds",
            &flow
        ),
        None
    );
    assert_eq!(
        s.value(
            "aws_appflow_flow_runs_in_progress",
            &[
                ("account_id", "123456789012"),
                ("region", "us-east-1"),
                ("flow", "sfdc-accounts")
            ]
        ),
        Some(1.0)
    );
    assert_promtool_clean(&s.text);

    {
        let mut w = h.world();
        w.appflow
            .set_progress(&id, 7_340_032, 6_291_456, 52_000, now - 10.0);
        w.appflow.finish_run(&id, "Successful", now - 10.0);
    }
    for _ in 0..3 {
        h.poll().await;
    }
    let s = h.scrape().await;
    assert_eq!(
        s.value("aws_appflow_flow_runs_total", &with("status", "successful")),
        Some(1.0)
    );
    assert_eq!(
        s.value("aws_appflow_flow_runs_in_progress", &flow),
        Some(0.0)
    );
    assert_eq!(
        s.value("aws_appflow_flow_bytes_processed_total", &flow),
        Some(7_340_032.0)
    );
    assert_eq!(
        s.value("aws_appflow_flow_bytes_written_total", &flow),
        Some(6_291_456.0)
    );
    assert_eq!(
        s.value("aws_appflow_flow_records_processed_total", &flow),
        Some(52_000.0)
    );
    assert_eq!(
        s.value("aws_appflow_flow_run_duration_seconds_count", &flow),
        Some(1.0)
    );
    assert_eq!(
        s.value("aws_appflow_flow_run_duration_seconds_sum", &flow)
            .map(f64::round),
        Some(590.0)
    );
    assert_eq!(
        s.value(
            "aws_appflow_flow_run_duration_seconds_bucket",
            &with("le", "600")
        ),
        Some(1.0)
    );
    assert_eq!(
        s.value(
            "aws_appflow_flow_run_duration_seconds_bucket",
            &with("le", "300")
        ),
        Some(0.0)
    );
    assert_eq!(
        s.value(
            "aws_appflow_flow_last_run_status",
            &with("status", "successful")
        ),
        Some(1.0)
    );
    assert_eq!(
        s.value("aws_appflow_flow_last_run_bytes_written", &flow),
        Some(6_291_456.0)
    );
    assert_eq!(
        s.value("aws_appflow_flow_last_run_records_processed", &flow),
        Some(52_000.0)
    );
    assert_eq!(
        s.value(
            "aws_appflow_flow_last_successful_run_timestamp_seconds",
            &flow
        )
        .map(f64::round),
        Some((now - 10.0).round())
    );
    assert_eq!(
        s.value("aws_appflow_flow_data_pull_end_timestamp_seconds", &flow)
            .map(f64::round),
        Some((now - 600.0).round())
    );
    assert_promtool_clean(&s.text);
}

#[tokio::test]
async fn an_error_run_adds_put_failures_and_catalog_failures() {
    let mut h = Harness::start(SOURCE, |_| {}).await;
    let now = unix_now();
    {
        let mut w = h.world();
        w.appflow.add_flow("zendesk-tickets", now - 86400.0);
        w.appflow
            .add_history("zendesk-tickets", 3, 3600.0, now - 4000.0);
    }
    h.poll().await;
    // Starts and fails between two polls, after the exporter started: never seen in progress.
    let end = unix_now();
    {
        let mut w = h.world();
        let id = w.appflow.start_run("zendesk-tickets", end - 120.0);
        w.appflow.set_progress(&id, 20_000, 15_000, 400, end);
        w.appflow
            .set_error(&id, 37, "Destination rejected 37 records: schema mismatch");
        w.appflow.set_catalog_errors(&id, 1);
        w.appflow.finish_run(&id, "Error", end);
    }
    h.poll().await;
    h.poll().await;
    let s = h.scrape().await;
    let flow = [("flow", "zendesk-tickets")];
    assert_eq!(
        s.value(
            "aws_appflow_flow_runs_total",
            &[("flow", "zendesk-tickets"), ("status", "error")]
        ),
        Some(1.0)
    );
    assert_eq!(
        s.value(
            "aws_appflow_flow_runs_total",
            &[("flow", "zendesk-tickets"), ("status", "successful")]
        ),
        Some(0.0),
        "history before the start is a baseline"
    );
    assert_eq!(
        s.value("aws_appflow_flow_put_failures_total", &flow),
        Some(37.0)
    );
    assert_eq!(
        s.value(
            "aws_appflow_flow_catalog_registration_failures_total",
            &flow
        ),
        Some(1.0)
    );
    assert_eq!(
        s.value(
            "aws_appflow_flow_last_run_status",
            &[("flow", "zendesk-tickets"), ("status", "error")]
        ),
        Some(1.0)
    );
    assert_eq!(
        s.value("aws_appflow_flow_last_run_bytes_processed", &flow),
        Some(20_000.0)
    );
    assert_eq!(
        s.value(
            "aws_appflow_flow_last_successful_run_timestamp_seconds",
            &flow
        )
        .map(f64::round),
        Some((now - 4000.0).round()),
        "the newest successful run of the history"
    );
    assert_promtool_clean(&s.text);
}

#[tokio::test]
async fn historical_runs_feed_no_counter_and_cost_at_most_two_pages() {
    let mut h = Harness::start(SOURCE, |_| {}).await;
    let now = unix_now();
    {
        let mut w = h.world();
        for flow in ["hist-a", "hist-b"] {
            w.appflow.add_flow(flow, now - 30.0 * 86400.0);
            w.appflow.add_history(flow, 150, 3600.0, now - 600.0);
        }
    }
    h.poll().await;
    let first = h.take_calls();
    println!("first poll with 150 historical runs per flow: {first:?}");
    assert!(get(&first, DESCRIBE) <= 2 * 2, "at most 2 pages per flow");
    let s = h.scrape().await;
    assert_eq!(s.sum("aws_appflow_flow_runs_total", &[]), 0.0);
    assert_eq!(s.sum("aws_appflow_flow_bytes_processed_total", &[]), 0.0);
    assert_eq!(
        s.value(
            "aws_appflow_flow_last_run_status",
            &[("flow", "hist-a"), ("status", "successful")]
        ),
        Some(1.0)
    );
    assert_eq!(
        s.value(
            "aws_appflow_flow_last_run_bytes_processed",
            &[("flow", "hist-a")]
        ),
        Some(1000.0)
    );
    h.poll().await;
    assert_eq!(
        get(&h.take_calls(), DESCRIBE),
        0,
        "then none: ListFlows shows the same last run and nothing is in progress"
    );
    let s = h.scrape().await;
    assert_eq!(s.sum("aws_appflow_flow_runs_total", &[]), 0.0);
}

#[tokio::test]
async fn steady_state_describes_only_flows_whose_last_run_changed() {
    let mut h = Harness::start(SOURCE, |_| {}).await;
    let now = unix_now();
    {
        let mut w = h.world();
        for i in 0..50 {
            let flow = format!("flow-{i:02}");
            w.appflow.add_flow(&flow, now - 86400.0);
            w.appflow.add_history(&flow, 30, 600.0, now - 60.0);
        }
    }
    h.poll().await;
    let first = h.take_calls();
    let mut per_poll = Vec::new();
    for _ in 0..3 {
        h.poll().await;
        per_poll.push(h.take_calls());
    }
    println!("50 flows, first poll: {first:?}");
    for (i, calls) in per_poll.iter().enumerate() {
        println!("50 flows, steady-state poll {}: {calls:?}", i + 1);
        assert_eq!(get(calls, "ListFlows"), 1);
        assert_eq!(
            get(calls, DESCRIBE),
            0,
            "lastRunExecutionDetails unchanged and nothing in progress: nothing to read"
        );
    }

    // A new run on one flow, seen through to its end, costs one page of that flow per poll.
    let id = {
        let mut w = h.world();
        let id = w.appflow.start_run("flow-07", now - 5.0);
        w.appflow.set_progress(&id, 10, 10, 1, now - 4.0);
        id
    };
    h.poll().await;
    h.world().appflow.finish_run(&id, "Canceled", now - 1.0);
    h.poll().await;
    let calls = h.take_calls();
    assert_eq!(get(&calls, DESCRIBE), 2);
    h.poll().await;
    assert_eq!(
        get(&h.take_calls(), DESCRIBE),
        0,
        "finished and seen: quiet again"
    );
    let s = h.scrape().await;
    assert_eq!(
        s.value(
            "aws_appflow_flow_runs_total",
            &[("flow", "flow-07"), ("status", "canceled")]
        ),
        Some(1.0)
    );
    assert_eq!(s.sum("aws_appflow_flow_runs_total", &[]), 1.0);
    assert_eq!(
        s.value(
            "aws_workflow_exporter_tracked_resources",
            &[("kind", "flow")]
        ),
        Some(50.0)
    );
}

#[tokio::test]
async fn an_in_progress_run_behind_many_newer_runs_is_followed_across_pages() {
    let mut h = Harness::start(SOURCE, |_| {}).await;
    let now = unix_now();
    let slow = {
        let mut w = h.world();
        w.appflow.page_cap = Some(40);
        w.appflow.add_flow("bulk", now - 86400.0);
        w.appflow.add_history("bulk", 5, 60.0, now - 4000.0);
        w.appflow.start_run("bulk", now - 3000.0)
    };
    h.poll().await;
    // 90 newer runs start and finish while the slow one runs: it moves to the third page.
    let later = unix_now() + 1000.0;
    h.world().appflow.add_history("bulk", 90, 10.0, later);
    h.poll().await;
    let s = h.scrape().await;
    assert_eq!(
        s.value(
            "aws_appflow_flow_runs_total",
            &[("flow", "bulk"), ("status", "successful")]
        ),
        Some(90.0)
    );
    assert_eq!(
        s.value("aws_appflow_flow_runs_in_progress", &[("flow", "bulk")]),
        Some(1.0)
    );
    h.take_calls();
    h.world()
        .appflow
        .finish_run(&slow, "Successful", later + 10.0);
    h.poll().await;
    let calls = h.take_calls();
    assert_eq!(
        get(&calls, DESCRIBE),
        3,
        "paged until the followed run was seen"
    );
    let s = h.scrape().await;
    assert_eq!(
        s.value(
            "aws_appflow_flow_runs_total",
            &[("flow", "bulk"), ("status", "successful")]
        ),
        Some(91.0)
    );
    assert_eq!(
        s.value(
            "aws_appflow_flow_run_duration_seconds_count",
            &[("flow", "bulk")]
        ),
        Some(91.0)
    );
    h.poll().await;
    assert_eq!(
        get(&h.take_calls(), DESCRIBE),
        0,
        "nothing in progress and no newer run: not read"
    );
}

#[tokio::test]
async fn a_throttled_flow_leaves_others_intact_and_counts_nothing_twice() {
    let mut h = Harness::start(SOURCE, |_| {}).await;
    let now = unix_now();
    let (a, b) = {
        let mut w = h.world();
        w.appflow.add_flow("flow-a", now - 86400.0);
        w.appflow.add_flow("flow-b", now - 86400.0);
        (
            w.appflow.start_run("flow-a", now - 100.0),
            w.appflow.start_run("flow-b", now - 100.0),
        )
    };
    h.poll().await;
    {
        let mut w = h.world();
        w.appflow.set_progress(&a, 100, 100, 1, now - 10.0);
        w.appflow.finish_run(&a, "Successful", now - 10.0);
        w.appflow.set_progress(&b, 200, 200, 2, now - 10.0);
        w.appflow.finish_run(&b, "Successful", now - 10.0);
        w.faults.push(
            fault("appflow", DESCRIBE, FaultKind::Throttle)
                .matching("\"flow-a\"")
                .times(1),
        );
    }
    h.poll().await;
    let s = h.scrape().await;
    let ok = |flow: &'static str| vec![("flow", flow), ("status", "successful")];
    assert_eq!(
        s.value("aws_appflow_flow_runs_total", &ok("flow-a")),
        Some(0.0)
    );
    assert_eq!(
        s.value("aws_appflow_flow_runs_in_progress", &[("flow", "flow-a")]),
        Some(1.0),
        "keeps its last values"
    );
    assert_eq!(
        s.value("aws_appflow_flow_runs_total", &ok("flow-b")),
        Some(1.0),
        "others are intact"
    );
    assert_eq!(
        s.value(
            "aws_workflow_exporter_poll_success",
            &[("source", "appflow_flows")]
        ),
        Some(0.0)
    );
    assert_eq!(
        s.value(
            "aws_workflow_exporter_api_requests_total",
            &[
                ("service", "appflow"),
                ("operation", DESCRIBE),
                ("outcome", "throttled")
            ]
        ),
        Some(1.0)
    );
    h.poll().await;
    h.poll().await;
    let s = h.scrape().await;
    assert_eq!(
        s.value("aws_appflow_flow_runs_total", &ok("flow-a")),
        Some(1.0)
    );
    assert_eq!(
        s.value("aws_appflow_flow_runs_total", &ok("flow-b")),
        Some(1.0),
        "never double counted"
    );
    assert_eq!(
        s.value(
            "aws_workflow_exporter_poll_success",
            &[("source", "appflow_flows")]
        ),
        Some(1.0)
    );

    // A failing ListFlows keeps everything; a deleted flow drops its series.
    h.world()
        .faults
        .push(fault("appflow", "ListFlows", FaultKind::ServerError).times(1));
    h.poll().await;
    let s = h.scrape().await;
    assert_eq!(s.count("aws_appflow_flow_runs_total", &[]), 6);
    h.world().appflow.delete_flow("flow-a");
    h.poll().await;
    let s = h.scrape().await;
    assert_eq!(
        s.count("aws_appflow_flow_runs_total", &[("flow", "flow-a")]),
        0
    );
    assert_eq!(
        s.count("aws_appflow_flow_runs_total", &[("flow", "flow-b")]),
        3
    );
    assert_promtool_clean(&s.text);
}

#[tokio::test]
async fn selection_by_name_and_regex() {
    let mut h = Harness::start(SOURCE, |c| {
        c.sources.appflow_flows.flows.names = ["exact".to_string()].into();
        c.sources.appflow_flows.flows.name_regex = Some(regex::Regex::new("^sfdc-").unwrap());
    })
    .await;
    let now = unix_now();
    {
        let mut w = h.world();
        for f in ["exact", "sfdc-leads", "other"] {
            w.appflow.add_flow(f, now);
        }
    }
    h.poll().await;
    let calls = h.take_calls();
    assert_eq!(get(&calls, DESCRIBE), 2);
    let s = h.scrape().await;
    assert_eq!(s.count("aws_appflow_flow_runs_in_progress", &[]), 2);
    assert_eq!(
        s.count("aws_appflow_flow_runs_in_progress", &[("flow", "other")]),
        0
    );
}

/// ListFlows' lastRunExecutionDetails is optional: a run it never shows is still found and
/// counted once by the scheduled re-read, which the self-metric counts; within `records_refresh`
/// nothing is read.
#[tokio::test]
async fn runs_list_flows_does_not_show_are_found_by_the_scheduled_re_read() {
    for (refresh, expect_read) in [
        (std::time::Duration::ZERO, true),
        (std::time::Duration::from_secs(3600), false),
    ] {
        let mut h = Harness::start(SOURCE, |c| {
            c.sources.appflow_flows.records_refresh = refresh
        })
        .await;
        let now = unix_now();
        {
            let mut w = h.world();
            w.appflow.omit_last_run_details = true;
            w.appflow.add_flow("quiet", now - 86400.0);
        }
        h.poll().await;
        // Started and finished between two polls, after the exporter started.
        let started = unix_now();
        let id = {
            let mut w = h.world();
            let id = w.appflow.start_run("quiet", started);
            w.appflow.set_progress(&id, 10, 10, 3, started + 1.0);
            w.appflow.finish_run(&id, "Successful", started + 2.0);
            id
        };
        h.take_calls();
        h.poll().await;
        assert_eq!(
            get(&h.take_calls(), DESCRIBE),
            usize::from(expect_read),
            "records_refresh {refresh:?}"
        );
        h.poll().await;
        let s = h.scrape().await;
        let counted = s.value(
            "aws_appflow_flow_runs_total",
            &[("flow", "quiet"), ("status", "successful")],
        );
        let catches = s.value(
            "aws_workflow_exporter_appflow_records_refresh_catches_total",
            &[],
        );
        if expect_read {
            assert_eq!(
                counted,
                Some(1.0),
                "run {id} counted once over two re-reads"
            );
            assert_eq!(catches, Some(1.0));
        } else {
            assert_eq!(counted, Some(0.0), "not due within the hour");
            assert_eq!(catches, Some(0.0));
        }
    }
}
