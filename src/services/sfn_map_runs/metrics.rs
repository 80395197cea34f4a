//! Metric families of the Step Functions Map Run source, built from the state store.

use prometheus::proto::MetricFamily;

use crate::exposition::family::FamilyBuilder;
use crate::exposition::metric::{def, MetricDef};
use crate::services::sfn_map_runs::state::{
    Counts, MapRunStatus, MapRunTracker, FINISHED_ITEM_STATUSES,
};

const RUN: &[&str] = &[
    "account_id",
    "region",
    "state_machine",
    "map_state",
    "execution",
    "map_run",
];
const RUN_STATUS: &[&str] = &[
    "account_id",
    "region",
    "state_machine",
    "map_state",
    "execution",
    "map_run",
    "status",
];
const AGG: &[&str] = &["account_id", "region", "state_machine", "map_state"];
const BACKLOG: &[&str] = &["account_id", "region", "kind"];
const AGG_STATUS: &[&str] = &[
    "account_id",
    "region",
    "state_machine",
    "map_state",
    "status",
];

def!(
    ITEMS,
    "aws_sfn_map_run_items",
    Gauge,
    RUN_STATUS,
    "Items of the map run by status (DescribeMapRun itemCounts)."
);
def!(
    ITEMS_RESULTS_WRITTEN,
    "aws_sfn_map_run_items_results_written",
    Gauge,
    RUN,
    "Items whose results were written to the ResultWriter destination (itemCounts.resultsWritten)."
);
def!(
    ITEMS_NOT_REDRIVABLE,
    "aws_sfn_map_run_items_failures_not_redrivable",
    Gauge,
    RUN,
    "Failed items that a redrive cannot rerun (itemCounts.failuresNotRedrivable)."
);
def!(
    ITEMS_PENDING_REDRIVE,
    "aws_sfn_map_run_items_pending_redrive",
    Gauge,
    RUN,
    "Items waiting to be rerun by a redrive (itemCounts.pendingRedrive)."
);
def!(
    CHILDREN,
    "aws_sfn_map_run_child_executions",
    Gauge,
    RUN_STATUS,
    "Child workflow executions of the map run by status (DescribeMapRun executionCounts)."
);
def!(
    CHILDREN_RESULTS_WRITTEN,
    "aws_sfn_map_run_child_executions_results_written",
    Gauge,
    RUN,
    "Child executions whose results were written (executionCounts.resultsWritten)."
);
def!(
    CHILDREN_NOT_REDRIVABLE,
    "aws_sfn_map_run_child_executions_failures_not_redrivable",
    Gauge,
    RUN,
    "Failed child executions that a redrive cannot rerun (executionCounts.failuresNotRedrivable)."
);
def!(
    CHILDREN_PENDING_REDRIVE,
    "aws_sfn_map_run_child_executions_pending_redrive",
    Gauge,
    RUN,
    "Child executions waiting to be rerun by a redrive (executionCounts.pendingRedrive)."
);
def!(
    STATUS,
    "aws_sfn_map_run_status",
    StateSet,
    RUN_STATUS,
    "Status of the map run: 1 for the current one of running, succeeded, failed, aborted."
);
def!(
    MAX_CONCURRENCY,
    "aws_sfn_map_run_max_concurrency",
    Gauge,
    RUN,
    "Maximum child executions running at once; 0 means unlimited."
);
def!(TOLERATED_RATIO, "aws_sfn_map_run_tolerated_failure_ratio", Gauge, RUN, "Share of failed items (0..1) the map run tolerates before failing (toleratedFailurePercentage / 100).");
def!(
    TOLERATED_COUNT,
    "aws_sfn_map_run_tolerated_failed_items",
    Gauge,
    RUN,
    "Failed items the map run tolerates before failing (toleratedFailureCount); 0 means no count threshold. Not named _count: promtool reserves that suffix."
);
def!(
    REDRIVES,
    "aws_sfn_map_run_redrives_total",
    Counter,
    RUN,
    "Times the map run has been redriven (redriveCount)."
);
def!(
    START,
    "aws_sfn_map_run_start_timestamp_seconds",
    Gauge,
    RUN,
    "Unix time the map run started."
);
def!(
    STOP,
    "aws_sfn_map_run_stop_timestamp_seconds",
    Gauge,
    RUN,
    "Unix time the map run stopped; absent while it runs."
);
def!(
    LAST_REDRIVE,
    "aws_sfn_map_run_last_redrive_timestamp_seconds",
    Gauge,
    RUN,
    "Unix time of the map run's last redrive; absent if never redriven."
);
def!(
    OPEN,
    "aws_sfn_map_runs_open",
    Gauge,
    AGG,
    "Map runs running now."
);
def!(FINISHED, "aws_sfn_map_runs_finished_total", Counter, AGG_STATUS, "Map runs the exporter saw reach succeeded, failed or aborted; each run counted once, redrives included. Runs finished before the exporter started are not counted.");
def!(ITEMS_FINISHED, "aws_sfn_map_run_items_finished_total", Counter, AGG_STATUS, "Items of finished map runs by succeeded, failed, timed_out, aborted; a redriven run that finishes again adds only the items that newly reached a status.");

def!(
    HISTORY_BACKLOG,
    "aws_workflow_exporter_history_backlog",
    Gauge,
    BACKLOG,
    "The exporter's own progress (per replica when sharded): history (runs finished before the exporter started, within lookback) still to read in the background, newest first, with API budget open work does not need: state machines not listed yet, executions whose map runs are not listed yet, map runs not described yet."
);

pub const DEFS: &[&MetricDef] = &[
    &ITEMS,
    &ITEMS_RESULTS_WRITTEN,
    &ITEMS_NOT_REDRIVABLE,
    &ITEMS_PENDING_REDRIVE,
    &CHILDREN,
    &CHILDREN_RESULTS_WRITTEN,
    &CHILDREN_NOT_REDRIVABLE,
    &CHILDREN_PENDING_REDRIVE,
    &STATUS,
    &MAX_CONCURRENCY,
    &TOLERATED_RATIO,
    &TOLERATED_COUNT,
    &REDRIVES,
    &START,
    &STOP,
    &LAST_REDRIVE,
    &OPEN,
    &FINISHED,
    &ITEMS_FINISHED,
    &HISTORY_BACKLOG,
];

/// Builds every family of the source for one target.
pub fn render(
    tracker: &MapRunTracker,
    account_id: &str,
    region: &str,
    now: f64,
    out: &mut Vec<MetricFamily>,
) {
    let mut items = FamilyBuilder::new(&ITEMS);
    let mut items_written = FamilyBuilder::new(&ITEMS_RESULTS_WRITTEN);
    let mut items_not_redrivable = FamilyBuilder::new(&ITEMS_NOT_REDRIVABLE);
    let mut items_pending_redrive = FamilyBuilder::new(&ITEMS_PENDING_REDRIVE);
    let mut children = FamilyBuilder::new(&CHILDREN);
    let mut children_written = FamilyBuilder::new(&CHILDREN_RESULTS_WRITTEN);
    let mut children_not_redrivable = FamilyBuilder::new(&CHILDREN_NOT_REDRIVABLE);
    let mut children_pending_redrive = FamilyBuilder::new(&CHILDREN_PENDING_REDRIVE);
    let mut status = FamilyBuilder::new(&STATUS);
    let mut max_concurrency = FamilyBuilder::new(&MAX_CONCURRENCY);
    let mut tolerated_ratio = FamilyBuilder::new(&TOLERATED_RATIO);
    let mut tolerated_count = FamilyBuilder::new(&TOLERATED_COUNT);
    let mut redrives = FamilyBuilder::new(&REDRIVES);
    let mut start = FamilyBuilder::new(&START);
    let mut stop = FamilyBuilder::new(&STOP);
    let mut last_redrive = FamilyBuilder::new(&LAST_REDRIVE);

    let statuses: Vec<&str> = MapRunStatus::ALL.iter().map(|s| s.as_label()).collect();
    for (l, obs) in tracker.visible_runs(now) {
        let labels = [
            account_id,
            region,
            &l.state_machine,
            &l.map_state,
            &l.execution,
            &l.map_run,
        ];
        let counts = |fam: &mut FamilyBuilder, c: &Counts| {
            for (s, v) in c.by_status() {
                let mut with_status = labels.to_vec();
                with_status.push(s);
                fam.add(&with_status, v as f64);
            }
        };
        counts(&mut items, &obs.items);
        counts(&mut children, &obs.executions);
        items_written.add(&labels, obs.items.results_written as f64);
        children_written.add(&labels, obs.executions.results_written as f64);
        for (fam, v) in [
            (&mut items_not_redrivable, obs.items.failures_not_redrivable),
            (&mut items_pending_redrive, obs.items.pending_redrive),
            (
                &mut children_not_redrivable,
                obs.executions.failures_not_redrivable,
            ),
            (
                &mut children_pending_redrive,
                obs.executions.pending_redrive,
            ),
        ] {
            if let Some(v) = v {
                fam.add(&labels, v as f64);
            }
        }
        status.add_state_set(&labels, &statuses, obs.status.as_label());
        max_concurrency.add(&labels, obs.max_concurrency as f64);
        tolerated_ratio.add(&labels, obs.tolerated_failure_ratio);
        tolerated_count.add(&labels, obs.tolerated_failure_count as f64);
        redrives.add(&labels, obs.redrive_count as f64);
        start.add(&labels, obs.start);
        if let Some(t) = obs.stop {
            stop.add(&labels, t);
        }
        if let Some(t) = obs.redrive_date {
            last_redrive.add(&labels, t);
        }
    }

    let mut open = FamilyBuilder::new(&OPEN);
    for ((sm, map_state), n) in tracker.open_runs() {
        open.add(&[account_id, region, &sm, &map_state], n as f64);
    }
    let mut finished = FamilyBuilder::new(&FINISHED);
    let mut items_finished = FamilyBuilder::new(&ITEMS_FINISHED);
    for ((sm, map_state), agg) in tracker.aggregates() {
        for (s, n) in MapRunStatus::TERMINAL.iter().zip(agg.runs_finished) {
            finished.add(&[account_id, region, sm, map_state, s.as_label()], n as f64);
        }
        for (s, n) in FINISHED_ITEM_STATUSES.iter().zip(agg.items_finished) {
            items_finished.add(&[account_id, region, sm, map_state, s], n as f64);
        }
    }

    let mut backlog = FamilyBuilder::new(&HISTORY_BACKLOG);
    let b = tracker.backlog();
    for (kind, n) in [
        ("state_machine", b.state_machines),
        ("execution", b.executions),
        ("map_run", b.map_runs),
    ] {
        backlog.add(&[account_id, region, kind], n as f64);
    }

    for fam in [
        items,
        items_written,
        items_not_redrivable,
        items_pending_redrive,
        children,
        children_written,
        children_not_redrivable,
        children_pending_redrive,
        status,
        max_concurrency,
        tolerated_ratio,
        tolerated_count,
        redrives,
        start,
        stop,
        last_redrive,
        open,
        finished,
        items_finished,
        backlog,
    ] {
        fam.finish(out);
    }
}
