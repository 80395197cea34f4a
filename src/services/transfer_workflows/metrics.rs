//! Metric families of the Transfer Family workflow source, built from the state store.
//!
//! No `server_id` label: a workflow can be attached to several servers, so the label would split
//! every per-workflow series by server, and the server is only known from each execution's
//! ServiceMetadata, so the gauges could not keep a fixed set of series per workflow.

use crate::exposition::family::{Family, FamilyBuilder};
use crate::exposition::metric::{def, MetricDef};
use crate::services::transfer_workflows::state::{ExecStatus, TransferTracker};
use crate::tags::{TagCache, TagsConfig};

const WF: &[&str] = &["account_id", "region", "workflow_id"];
const WF_STATUS: &[&str] = &["account_id", "region", "workflow_id", "status"];
const WF_LAST_STATUS: &[&str] = &["account_id", "region", "workflow_id", "last_status"];
const WF_STEP: &[&str] = &[
    "account_id",
    "region",
    "workflow_id",
    "step_type",
    "error_type",
];
const WF_INFO: &[&str] = &["account_id", "region", "workflow_id", "description"];

def!(
    EXECUTIONS,
    "aws_transfer_workflow_executions",
    Gauge,
    WF_STATUS,
    "Executions of the workflow in progress now (ListExecutions), by status: in_progress or handling_exception."
);
def!(
    FINISHED,
    "aws_transfer_workflow_executions_finished_total",
    Counter,
    WF_LAST_STATUS,
    "Executions the exporter saw leave the in-progress list, by the last status it saw (in_progress, handling_exception, exception, completed). AWS does not report outcomes of finished executions: handling_exception means the execution was handling a failed step when last seen. Executions already finished at the first poll are not counted."
);
def!(
    STEP_ERRORS,
    "aws_transfer_workflow_step_errors_total",
    Counter,
    WF_STEP,
    "Failed workflow steps (Steps and OnExceptionSteps of DescribeExecution), each step of each execution counted once, by step type and AWS's error type in lower snake case. Failures that happened before the exporter first saw the workflow's executions are not counted."
);
def!(
    OLDEST_FIRST_SEEN,
    "aws_transfer_workflow_oldest_execution_first_seen_timestamp_seconds",
    Gauge,
    WF,
    "Unix time the exporter first saw the oldest execution still in progress (AWS gives executions no start time); absent when none is in progress."
);
def!(
    INFO,
    "aws_transfer_workflow_info",
    Info,
    WF_INFO,
    "Transfer Family workflow metadata, constant 1, with a `tag_<key>` label per tag key in `tags.export` the workflow has (DescribeWorkflow; keys sanitised to label names): join on it to filter or route by owner."
);

pub const DEFS: &[&MetricDef] = &[
    &EXECUTIONS,
    &FINISHED,
    &STEP_ERRORS,
    &OLDEST_FIRST_SEEN,
    &INFO,
];

/// Finish statuses whose counter series exist at 0 from a workflow's first sighting: the two
/// statuses the in-progress listing reports, which nearly every finish carries. `exception` and
/// `completed` appear when first counted.
const PRECREATED_FINISHED: [ExecStatus; 2] =
    [ExecStatus::InProgress, ExecStatus::HandlingException];

/// Builds every family of the source for one target.
pub fn render(
    tracker: &TransferTracker,
    (tags, tags_config): (&TagCache, &TagsConfig),
    account_id: &str,
    region: &str,
    out: &mut Vec<Family>,
) {
    let mut executions = FamilyBuilder::new(&EXECUTIONS);
    let mut finished = FamilyBuilder::new(&FINISHED);
    let mut step_errors = FamilyBuilder::new(&STEP_ERRORS);
    let mut oldest = FamilyBuilder::new(&OLDEST_FIRST_SEEN);
    let mut info = FamilyBuilder::new(&INFO);
    for w in tracker.workflows() {
        let labels = [account_id, region, w.id];
        for (status, n) in ExecStatus::RUNNING.iter().zip(w.running) {
            executions.add(&[account_id, region, w.id, status.as_label()], n as f64);
        }
        for (status, n) in ExecStatus::ALL.iter().zip(w.finished) {
            if n > 0 || PRECREATED_FINISHED.contains(status) {
                finished.add(&[account_id, region, w.id, status.as_label()], n as f64);
            }
        }
        for ((step_type, error_type), n) in w.step_errors {
            step_errors.add(
                &[account_id, region, w.id, step_type, error_type],
                *n as f64,
            );
        }
        if let Some(t) = w.oldest_first_seen {
            oldest.add(&labels, t);
        }
        let tag_labels = tags_config.labels(tags.get(w.id));
        info.add_with(&[account_id, region, w.id, w.description], &tag_labels, 1.0);
    }
    for fam in [executions, finished, step_errors, oldest, info] {
        fam.finish(out);
    }
}
