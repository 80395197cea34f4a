//! Metric families of the Transfer Family workflow source, built from the state store.
//!
//! No `server_id` label: a workflow can be attached to several servers, so the label would split
//! every per-workflow series by server, and the server is only known from each execution's
//! ServiceMetadata, so the gauges could not keep a fixed set of series per workflow.

use crate::exposition::family::{Family, FamilyBuilder};
use crate::exposition::metric::{def, labels, MetricDef};
use crate::services::transfer_workflows::state::{ExecStatus, TransferTracker};
use crate::tags::{TagCache, TagsConfig};

labels!(pub struct Wf { account_id, region, workflow_id });
labels!(pub struct WfStatus { account_id, region, workflow_id, status });
labels!(pub struct WfLastStatus { account_id, region, workflow_id, last_status });
labels!(pub struct WfStep { account_id, region, workflow_id, step_type, error_type });
labels!(pub struct WfInfo { account_id, region, workflow_id, description });

def!(
    EXECUTIONS,
    "aws_transfer_workflow_executions",
    Gauge,
    WfStatus,
    "Executions of the workflow in progress now (ListExecutions), by status: in_progress or handling_exception."
);
def!(
    FINISHED,
    "aws_transfer_workflow_executions_finished_total",
    Counter,
    WfLastStatus,
    "Executions the exporter saw leave the in-progress list, by the last status it saw (in_progress, handling_exception, exception, completed). AWS does not report outcomes of finished executions: handling_exception means the execution was handling a failed step when last seen. Executions already finished at the first poll are not counted."
);
def!(
    STEP_ERRORS,
    "aws_transfer_workflow_step_errors_total",
    Counter,
    WfStep,
    "Failed workflow steps (Steps and OnExceptionSteps of DescribeExecution), each step of each execution counted once, by step type and AWS's error type in lower snake case. Failures that happened before the exporter first saw the workflow's executions are not counted."
);
def!(
    OLDEST_FIRST_SEEN,
    "aws_transfer_workflow_oldest_execution_first_seen_timestamp_seconds",
    Gauge,
    Wf,
    "Unix time the exporter first saw the oldest execution still in progress (AWS gives executions no start time); absent when none is in progress."
);
def!(
    INFO,
    "aws_transfer_workflow_info",
    Info,
    WfInfo,
    "Transfer Family workflow metadata, constant 1, with a `tag_<key>` label per tag key in `tags.export` the workflow has (DescribeWorkflow; keys sanitised to label names): join on it to filter or route by owner."
);

pub const DEFS: &[&MetricDef] = &[
    &EXECUTIONS.def,
    &FINISHED.def,
    &STEP_ERRORS.def,
    &OLDEST_FIRST_SEEN.def,
    &INFO.def,
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
        let workflow_id = w.id;
        for (status, n) in ExecStatus::RUNNING.iter().zip(w.running) {
            let status = status.as_label();
            let labels = WfStatus {
                account_id,
                region,
                workflow_id,
                status,
            };
            executions.add(&labels, n as f64);
        }
        for (status, n) in ExecStatus::ALL.iter().zip(w.finished) {
            if n > 0 || PRECREATED_FINISHED.contains(status) {
                let last_status = status.as_label();
                let labels = WfLastStatus {
                    account_id,
                    region,
                    workflow_id,
                    last_status,
                };
                finished.add(&labels, n as f64);
            }
        }
        for ((step_type, error_type), n) in w.step_errors {
            let labels = WfStep {
                account_id,
                region,
                workflow_id,
                step_type,
                error_type,
            };
            step_errors.add(&labels, *n as f64);
        }
        if let Some(t) = w.oldest_first_seen {
            oldest.add(
                &Wf {
                    account_id,
                    region,
                    workflow_id,
                },
                t,
            );
        }
        let tag_labels = tags_config.labels(tags.get(w.id));
        let description = w.description;
        let labels = WfInfo {
            account_id,
            region,
            workflow_id,
            description,
        };
        info.add_with(&labels, &tag_labels, 1.0);
    }
    executions.finish(out);
    finished.finish(out);
    step_errors.finish(out);
    oldest.finish(out);
    info.finish(out);
}
