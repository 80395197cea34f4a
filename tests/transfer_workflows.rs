//! The Transfer Family workflow source against the simulator, through the real SDK over HTTP.

mod common;

use std::collections::BTreeMap;

use aws_workflow_exporter::simulator::FaultKind;
use common::{assert_promtool_clean, fault, FaultExt, Harness, Scrape};

const SOURCE: &[&str] = &["transfer_workflows"];
const WF: &str = "w-0a1b2c3d4e5f60001";
const OTHER: &str = "w-0a1b2c3d4e5f60002";

fn executions(s: &Scrape, wf: &str, status: &str) -> Option<f64> {
    s.value(
        "aws_transfer_workflow_executions",
        &[("workflow_id", wf), ("status", status)],
    )
}

fn finished(s: &Scrape, wf: &str, last_status: &str) -> Option<f64> {
    s.value(
        "aws_transfer_workflow_executions_finished_total",
        &[("workflow_id", wf), ("last_status", last_status)],
    )
}

fn step_errors(s: &Scrape, wf: &str, step_type: &str, error_type: &str) -> Option<f64> {
    s.value(
        "aws_transfer_workflow_step_errors_total",
        &[
            ("workflow_id", wf),
            ("step_type", step_type),
            ("error_type", error_type),
        ],
    )
}

fn poll_success(s: &Scrape) -> Option<f64> {
    s.value(
        "aws_workflow_exporter_poll_success",
        &[("source", "transfer_workflows")],
    )
}

fn get(m: &BTreeMap<(String, String), usize>, op: &str) -> usize {
    m.get(&("transfer".to_string(), op.to_string()))
        .copied()
        .unwrap_or(0)
}

#[tokio::test]
async fn an_execution_is_followed_through_a_handled_copy_failure_until_it_finishes() {
    let mut h = Harness::start(SOURCE, |_| {}).await;
    {
        let mut w = h.world();
        w.transfer.page_cap = Some(1); // exercise pagination everywhere
        w.transfer
            .add_workflow(WF, Some("scan and archive uploads"));
        w.transfer.add_workflow(OTHER, None);
    }
    // First poll: nothing running; the baseline.
    h.poll().await;
    let s = h.scrape().await;
    assert_eq!(executions(&s, WF, "in_progress"), Some(0.0));
    assert_eq!(executions(&s, WF, "handling_exception"), Some(0.0));
    assert_eq!(finished(&s, WF, "handling_exception"), Some(0.0));
    assert_eq!(finished(&s, WF, "in_progress"), Some(0.0));
    assert_eq!(
        s.value(
            "aws_transfer_workflow_oldest_execution_first_seen_timestamp_seconds",
            &[("workflow_id", WF)]
        ),
        None
    );
    assert_eq!(
        s.value(
            "aws_transfer_workflow_info",
            &[
                ("workflow_id", WF),
                ("description", "scan and archive uploads"),
                ("account_id", "123456789012"),
                ("region", "us-east-1"),
            ]
        ),
        Some(1.0)
    );

    // 1. An upload starts the workflow.
    {
        let mut w = h.world();
        w.transfer
            .start_execution(WF, "exec-1", "s-01234567890abcdef");
        w.transfer
            .start_execution(WF, "exec-2", "s-01234567890abcdef");
        w.transfer.step_ok("exec-1", "TAG");
    }
    h.poll().await;
    let s = h.scrape().await;
    assert_eq!(executions(&s, WF, "in_progress"), Some(2.0));
    assert_eq!(executions(&s, OTHER, "in_progress"), Some(0.0));
    let first_seen = s
        .value(
            "aws_transfer_workflow_oldest_execution_first_seen_timestamp_seconds",
            &[("workflow_id", WF)],
        )
        .expect("present while executions run");
    assert!((first_seen - common::unix_now()).abs() < 60.0);
    assert_eq!(
        s.count("aws_transfer_workflow_step_errors_total", &[]),
        0,
        "no failed step yet"
    );

    // 2. Its COPY step is denied; the OnExceptionSteps handle it.
    {
        let mut w = h.world();
        w.transfer
            .step_failed("exec-1", "COPY", "PERMISSION_DENIED");
        w.transfer.exception_step("exec-1", "TAG", None);
    }
    for _ in 0..3 {
        h.poll().await;
        let s = h.scrape().await;
        assert_eq!(executions(&s, WF, "in_progress"), Some(1.0));
        assert_eq!(executions(&s, WF, "handling_exception"), Some(1.0));
        assert_eq!(
            step_errors(&s, WF, "copy", "permission_denied"),
            Some(1.0),
            "counted once across polls"
        );
        assert_eq!(
            s.value(
                "aws_transfer_workflow_oldest_execution_first_seen_timestamp_seconds",
                &[("workflow_id", WF)],
            ),
            Some(first_seen)
        );
    }

    // 3. Both finish.
    {
        let mut w = h.world();
        w.transfer.finish("exec-1");
        w.transfer.finish("exec-2");
    }
    for _ in 0..2 {
        h.poll().await;
    }
    let s = h.scrape().await;
    assert_eq!(executions(&s, WF, "in_progress"), Some(0.0));
    assert_eq!(executions(&s, WF, "handling_exception"), Some(0.0));
    assert_eq!(finished(&s, WF, "handling_exception"), Some(1.0));
    assert_eq!(finished(&s, WF, "in_progress"), Some(1.0));
    assert_eq!(step_errors(&s, WF, "copy", "permission_denied"), Some(1.0));
    assert_eq!(
        s.value(
            "aws_transfer_workflow_oldest_execution_first_seen_timestamp_seconds",
            &[("workflow_id", WF)]
        ),
        None
    );
    assert_eq!(poll_success(&s), Some(1.0));
    assert_eq!(
        s.value(
            "aws_workflow_exporter_tracked_resources",
            &[("kind", "workflow_execution")]
        ),
        Some(0.0)
    );
    assert_promtool_clean(&s.text);
    println!(
        "{}",
        s.text
            .lines()
            .filter(|l| l.contains("aws_transfer_"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[tokio::test]
async fn failures_before_the_first_poll_are_not_counted_but_later_ones_are() {
    let mut h = Harness::start(SOURCE, |_| {}).await;
    {
        let mut w = h.world();
        w.transfer.add_workflow(WF, Some("decrypt"));
        w.transfer.start_execution(WF, "old", "s-1");
        w.transfer.step_failed("old", "CUSTOM", "TIMEOUT");
    }
    h.poll().await;
    let s = h.scrape().await;
    assert_eq!(executions(&s, WF, "handling_exception"), Some(1.0));
    assert_eq!(step_errors(&s, WF, "custom", "timeout"), None);
    {
        let mut w = h.world();
        w.transfer
            .exception_step("old", "DELETE", Some("NOT_FOUND"));
        w.transfer.start_execution(WF, "new", "s-1");
        w.transfer.step_failed("new", "DECRYPT", "BAD_REQUEST");
    }
    h.poll().await;
    let s = h.scrape().await;
    assert_eq!(step_errors(&s, WF, "custom", "timeout"), None);
    assert_eq!(step_errors(&s, WF, "delete", "not_found"), Some(1.0));
    assert_eq!(step_errors(&s, WF, "decrypt", "bad_request"), Some(1.0));
    assert_promtool_clean(&s.text);
}

#[tokio::test]
async fn a_deleted_workflow_drops_its_series() {
    let mut h = Harness::start(SOURCE, |_| {}).await;
    {
        let mut w = h.world();
        w.transfer.page_cap = Some(1);
        w.transfer.add_workflow(WF, Some("a"));
        w.transfer.add_workflow(OTHER, Some("b"));
        w.transfer.start_execution(WF, "e1", "s-1");
        w.transfer.start_execution(OTHER, "e2", "s-1");
    }
    h.poll().await;
    h.world()
        .transfer
        .step_failed("e1", "TAG", "INTERNAL_SERVER_ERROR");
    h.poll().await;
    let s = h.scrape().await;
    assert_eq!(
        step_errors(&s, WF, "tag", "internal_server_error"),
        Some(1.0)
    );

    h.world().transfer.delete_workflow(WF);
    h.poll().await;
    let s = h.scrape().await;
    for name in [
        "aws_transfer_workflow_executions",
        "aws_transfer_workflow_executions_finished_total",
        "aws_transfer_workflow_step_errors_total",
        "aws_transfer_workflow_oldest_execution_first_seen_timestamp_seconds",
        "aws_transfer_workflow_info",
    ] {
        assert_eq!(s.count(name, &[("workflow_id", WF)]), 0, "{name}");
    }
    assert_eq!(executions(&s, OTHER, "in_progress"), Some(1.0));
    assert_eq!(poll_success(&s), Some(1.0));
}

#[tokio::test]
async fn an_execution_gone_before_its_describe_counts_as_finished() {
    let mut h = Harness::start(SOURCE, |_| {}).await;
    h.world().transfer.add_workflow(WF, Some("a"));
    h.poll().await;
    {
        let mut w = h.world();
        w.transfer.start_execution(WF, "racer", "s-1");
        w.transfer.step_failed("racer", "COPY", "ALREADY_EXISTS");
        w.transfer.finish_before_describe.insert("racer".into());
    }
    h.poll().await;
    let s = h.scrape().await;
    assert_eq!(finished(&s, WF, "handling_exception"), Some(1.0));
    assert_eq!(executions(&s, WF, "handling_exception"), Some(0.0));
    assert_eq!(poll_success(&s), Some(1.0));
    assert_eq!(
        s.value(
            "aws_workflow_exporter_api_requests_total",
            &[
                ("service", "transfer"),
                ("operation", "DescribeExecution"),
                ("outcome", "client_error")
            ]
        ),
        Some(1.0)
    );
    h.poll().await;
    let s = h.scrape().await;
    assert_eq!(finished(&s, WF, "handling_exception"), Some(1.0), "once");
}

#[tokio::test]
async fn a_throttled_workflow_keeps_its_values_and_leaves_the_others_intact() {
    let mut h = Harness::start(SOURCE, |_| {}).await;
    {
        let mut w = h.world();
        w.transfer.add_workflow(WF, Some("a"));
        w.transfer.add_workflow(OTHER, Some("b"));
        w.transfer.start_execution(WF, "a1", "s-1");
        w.transfer.start_execution(OTHER, "b1", "s-1");
    }
    h.poll().await;
    {
        let mut w = h.world();
        // a1 fails a step and finishes, b1 finishes, b2 starts, while WF's calls are throttled.
        w.transfer.step_failed("a1", "COPY", "ALREADY_EXISTS");
        w.transfer.start_execution(WF, "a2", "s-1");
        w.transfer.finish("b1");
        w.transfer.start_execution(OTHER, "b2", "s-1");
        for op in ["ListExecutions", "DescribeExecution"] {
            w.faults
                .push(fault("transfer", op, FaultKind::Throttle).matching(WF));
        }
    }
    h.poll().await;
    let s = h.scrape().await;
    assert_eq!(poll_success(&s), Some(0.0));
    assert_eq!(
        s.value(
            "aws_workflow_exporter_api_requests_total",
            &[
                ("service", "transfer"),
                ("operation", "ListExecutions"),
                ("outcome", "throttled")
            ]
        ),
        Some(1.0)
    );
    assert_eq!(executions(&s, WF, "in_progress"), Some(1.0), "last values");
    assert_eq!(executions(&s, WF, "handling_exception"), Some(0.0));
    assert_eq!(
        finished(&s, OTHER, "in_progress"),
        Some(1.0),
        "others move on"
    );
    assert_eq!(executions(&s, OTHER, "in_progress"), Some(1.0));
    assert_promtool_clean(&s.text);

    // Throttled listing twice in a row: nothing is counted twice or early.
    h.poll().await;
    h.world().faults.clear();
    h.poll().await;
    let s = h.scrape().await;
    assert_eq!(poll_success(&s), Some(1.0));
    assert_eq!(executions(&s, WF, "in_progress"), Some(1.0));
    assert_eq!(executions(&s, WF, "handling_exception"), Some(1.0));
    assert_eq!(step_errors(&s, WF, "copy", "already_exists"), Some(1.0));
    assert_eq!(finished(&s, OTHER, "in_progress"), Some(1.0));
    h.poll().await;
    let s = h.scrape().await;
    assert_eq!(step_errors(&s, WF, "copy", "already_exists"), Some(1.0));
    assert_eq!(finished(&s, WF, "in_progress"), Some(0.0));
}

#[tokio::test]
async fn steady_state_with_10_workflows_and_50_executions() {
    let mut h = Harness::start(SOURCE, |_| {}).await;
    {
        let mut w = h.world();
        for i in 0..10 {
            let wf = format!("w-{i:017}");
            w.transfer.add_workflow(&wf, Some(&format!("workflow {i}")));
            for j in 0..5 {
                w.transfer
                    .start_execution(&wf, &format!("exec-{i}-{j}"), "s-1");
            }
        }
    }
    h.poll().await;
    let first = h.take_calls();
    let s = h.scrape().await;
    assert_eq!(
        s.sum(
            "aws_transfer_workflow_executions",
            &[("status", "in_progress")]
        ),
        50.0
    );
    h.poll().await;
    let steady = h.take_calls();
    // One in ten handling an exception: described every poll while it does.
    {
        let mut w = h.world();
        for i in 0..5 {
            w.transfer
                .step_failed(&format!("exec-{i}-0"), "CUSTOM", "CUSTOM_STEP_FAILED");
        }
    }
    h.poll().await;
    let change = h.take_calls();
    h.poll().await;
    let handling = h.take_calls();
    println!(
        "calls per poll, first: {first:?}\nsteady: {steady:?}\nstatus change: {change:?}\nwhile 5 handle an exception: {handling:?}"
    );
    assert_eq!(get(&first, "ListWorkflows"), 1);
    assert_eq!(get(&first, "ListExecutions"), 10);
    assert_eq!(
        get(&first, "DescribeExecution"),
        0,
        "IN_PROGRESS executions cannot show a failed step: none described"
    );
    // Listed again every discovery_interval (5 polls by default).
    assert_eq!(get(&steady, "ListWorkflows"), 0);
    assert_eq!(get(&steady, "ListExecutions"), 10);
    assert_eq!(get(&steady, "DescribeExecution"), 0);
    assert_eq!(get(&change, "DescribeExecution"), 5);
    assert_eq!(get(&handling, "DescribeExecution"), 5);
    let s = h.scrape().await;
    assert_eq!(
        s.sum(
            "aws_transfer_workflow_step_errors_total",
            &[
                ("step_type", "custom"),
                ("error_type", "custom_step_failed")
            ]
        ),
        5.0
    );
}

#[tokio::test]
async fn workflows_are_listed_every_discovery_interval_and_relisted_after_one_is_deleted() {
    // Polls are driven by the test, back to back; the listing is due by the clock.
    let interval = std::time::Duration::from_secs(2);
    let mut h = Harness::start(SOURCE, |c| {
        let transfer = &mut c.sources.transfer_workflows;
        transfer.poll_interval = std::time::Duration::from_secs(1);
        transfer.discovery_interval = interval;
    })
    .await;
    let listings = |h: &Harness| h.world().count("transfer", "ListWorkflows");
    {
        let mut w = h.world();
        w.transfer.add_workflow(WF, Some("ingest"));
        w.transfer.start_execution(WF, "exec-1", "s-1");
    }
    h.poll().await;
    assert_eq!(listings(&h), 1);
    assert_eq!(executions(&h.scrape().await, WF, "in_progress"), Some(1.0));

    // A workflow created after the listing is found at the next one, within the interval; the
    // polls in between list the executions of the workflows already known.
    let started = std::time::Instant::now();
    {
        let mut w = h.world();
        w.transfer.add_workflow(OTHER, Some("archive"));
        w.transfer.start_execution(OTHER, "exec-2", "s-1");
    }
    let mut polls = 0;
    while executions(&h.scrape().await, OTHER, "in_progress") != Some(1.0) {
        assert!(
            started.elapsed() < interval * 5,
            "the new workflow is not on /metrics after {polls} polls"
        );
        h.poll().await;
        polls += 1;
    }
    assert_eq!(listings(&h), 2, "one more listing for {polls} polls");
    assert!(polls > 1, "at least one poll went on from the last listing");
    assert_eq!(
        h.world().count("transfer", "ListExecutions"),
        // The first poll, then one workflow a poll until the last, which lists both.
        1 + (polls - 1) + 2,
        "every poll lists the executions of every known workflow"
    );

    // A deleted workflow goes at the poll whose ListExecutions says so; the next poll lists.
    h.world().transfer.delete_workflow(OTHER);
    h.poll().await;
    let s = h.scrape().await;
    assert_eq!(
        s.count("aws_transfer_workflow_info", &[("workflow_id", OTHER)]),
        0
    );
    assert_eq!(executions(&s, WF, "in_progress"), Some(1.0));
    h.poll().await;
    assert_eq!(listings(&h), 3);
}
