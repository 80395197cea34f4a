//! Metric families of the AppFlow flow source, built from the state store.

use crate::exposition::family::{Family, FamilyBuilder};
use crate::exposition::metric::{def, labels, MetricDef};
use crate::services::appflow_flows::state::{AppflowTracker, RunStatus};
use crate::tags::{TagCache, TagsConfig};

labels!(pub struct Flow { account_id, region, flow });
labels!(pub struct FlowStatus { account_id, region, flow, status });
labels!(pub struct Target { account_id, region });

def!(RUNS, "aws_appflow_flow_runs_total", Counter, FlowStatus, "Flow runs the exporter saw reach successful, error or canceled; each executionId counted once. Runs finished before the exporter started are not counted.");
def!(
    IN_PROGRESS,
    "aws_appflow_flow_runs_in_progress",
    Gauge,
    Flow,
    "Runs of the flow in progress now (InProgress or CancelStarted)."
);
def!(BYTES_PROCESSED, "aws_appflow_flow_bytes_processed_total", Counter, Flow, "Bytes processed (executionResult.bytesProcessed), summed over the runs counted in aws_appflow_flow_runs_total.");
def!(BYTES_WRITTEN, "aws_appflow_flow_bytes_written_total", Counter, Flow, "Bytes written to the destination (executionResult.bytesWritten), summed over the runs counted in aws_appflow_flow_runs_total.");
def!(RECORDS_PROCESSED, "aws_appflow_flow_records_processed_total", Counter, Flow, "Records processed (executionResult.recordsProcessed), summed over the runs counted in aws_appflow_flow_runs_total.");
def!(PUT_FAILURES, "aws_appflow_flow_put_failures_total", Counter, Flow, "Records the destination rejected (executionResult.errorInfo.putFailuresCount), summed over the runs counted in aws_appflow_flow_runs_total.");
def!(CATALOG_FAILURES, "aws_appflow_flow_catalog_registration_failures_total", Counter, Flow, "Metadata catalog (Glue) table registrations that ended in error (metadataCatalogDetails with tableRegistrationOutput.status Error), counted once per finished run.");
def!(
    DURATION,
    "aws_appflow_flow_run_duration_seconds",
    Histogram,
    Flow,
    "Duration of the runs counted in aws_appflow_flow_runs_total, from startedAt to lastUpdatedAt."
);
def!(LAST_STATUS, "aws_appflow_flow_last_run_status", StateSet, FlowStatus, "Status of the flow's newest run: 1 for the current one of in_progress, successful, error, cancel_started, canceled; absent before any run is seen.");
def!(
    LAST_START,
    "aws_appflow_flow_last_run_start_timestamp_seconds",
    Gauge,
    Flow,
    "Unix time the flow's newest run started (startedAt)."
);
def!(
    LAST_BYTES_PROCESSED,
    "aws_appflow_flow_last_run_bytes_processed",
    Gauge,
    Flow,
    "Bytes processed by the run that finished last (executionResult.bytesProcessed)."
);
def!(LAST_BYTES_WRITTEN, "aws_appflow_flow_last_run_bytes_written", Gauge, Flow, "Bytes written to the destination by the run that finished last (executionResult.bytesWritten).");
def!(
    LAST_RECORDS_PROCESSED,
    "aws_appflow_flow_last_run_records_processed",
    Gauge,
    Flow,
    "Records processed by the run that finished last (executionResult.recordsProcessed)."
);
def!(
    LAST_SUCCESS,
    "aws_appflow_flow_last_successful_run_timestamp_seconds",
    Gauge,
    Flow,
    "Unix time the newest successful run finished (lastUpdatedAt); absent until one is seen."
);
def!(DATA_PULL_END, "aws_appflow_flow_data_pull_end_timestamp_seconds", Gauge, Flow, "dataPullEndTime of the newest successful run: the last source change the destination has, i.e. how fresh its data is; absent until one is seen.");
def!(REFRESH_CATCHES, "aws_workflow_exporter_appflow_records_refresh_catches_total", Counter, Target, "Scheduled re-reads of a flow's execution records (records_refresh) that found a run start or change status while ListFlows' lastRunExecutionDetails showed nothing new. Above 0, ListFlows lags or omits the details in this account: lower records_refresh.");

def!(
    INFO,
    "aws_appflow_flow_info",
    Info,
    Flow,
    "One series per watched flow, constant 1, with a `tag_<key>` label per tag key in `tags.export` the flow has (ListFlows; keys sanitised to label names): join on it to filter or route by owner."
);

/// `aws_appflow_flow_info` of the watched flows (`tags` holds every one, by name).
pub fn render_info(
    (tags, config): (&TagCache, &TagsConfig),
    account_id: &str,
    region: &str,
    out: &mut Vec<Family>,
) {
    let mut info = FamilyBuilder::new(&INFO);
    for (flow, flow_tags) in tags.iter() {
        let labels = Flow {
            account_id,
            region,
            flow,
        };
        info.add_with(&labels, &config.labels(Some(flow_tags)), 1.0);
    }
    info.finish(out);
}

pub const DEFS: &[&MetricDef] = &[
    &RUNS.def,
    &IN_PROGRESS.def,
    &BYTES_PROCESSED.def,
    &BYTES_WRITTEN.def,
    &RECORDS_PROCESSED.def,
    &PUT_FAILURES.def,
    &CATALOG_FAILURES.def,
    &DURATION.def,
    &LAST_STATUS.def,
    &LAST_START.def,
    &LAST_BYTES_PROCESSED.def,
    &LAST_BYTES_WRITTEN.def,
    &LAST_RECORDS_PROCESSED.def,
    &LAST_SUCCESS.def,
    &INFO.def,
    &DATA_PULL_END.def,
    &REFRESH_CATCHES.def,
];

/// Builds every family of the source for one target.
pub fn render(tracker: &AppflowTracker, account_id: &str, region: &str, out: &mut Vec<Family>) {
    let mut runs = FamilyBuilder::new(&RUNS);
    let mut in_progress = FamilyBuilder::new(&IN_PROGRESS);
    let mut bytes_processed = FamilyBuilder::new(&BYTES_PROCESSED);
    let mut bytes_written = FamilyBuilder::new(&BYTES_WRITTEN);
    let mut records_processed = FamilyBuilder::new(&RECORDS_PROCESSED);
    let mut put_failures = FamilyBuilder::new(&PUT_FAILURES);
    let mut catalog_failures = FamilyBuilder::new(&CATALOG_FAILURES);
    let mut duration = FamilyBuilder::new(&DURATION);
    let mut last_status = FamilyBuilder::new(&LAST_STATUS);
    let mut last_start = FamilyBuilder::new(&LAST_START);
    let mut last_bytes_processed = FamilyBuilder::new(&LAST_BYTES_PROCESSED);
    let mut last_bytes_written = FamilyBuilder::new(&LAST_BYTES_WRITTEN);
    let mut last_records_processed = FamilyBuilder::new(&LAST_RECORDS_PROCESSED);
    let mut last_success = FamilyBuilder::new(&LAST_SUCCESS);
    let mut data_pull_end = FamilyBuilder::new(&DATA_PULL_END);

    let statuses: Vec<&str> = RunStatus::ALL.iter().map(|s| s.as_label()).collect();
    for (flow, state) in tracker.flows() {
        let flow = flow.as_str();
        let labels = Flow {
            account_id,
            region,
            flow,
        };
        let c = &state.counters;
        for (s, n) in RunStatus::FINISHED.iter().zip(c.runs) {
            let status = s.as_label();
            runs.add(
                &FlowStatus {
                    account_id,
                    region,
                    flow,
                    status,
                },
                n as f64,
            );
        }
        in_progress.add(&labels, state.in_progress() as f64);
        bytes_processed.add(&labels, c.bytes_processed as f64);
        bytes_written.add(&labels, c.bytes_written as f64);
        records_processed.add(&labels, c.records_processed as f64);
        put_failures.add(&labels, c.put_failures as f64);
        catalog_failures.add(&labels, c.catalog_registration_failures as f64);
        duration.add_histogram(&labels, &c.duration);
        if let Some(r) = &state.last_run {
            last_status.add_state_set(&statuses, r.status.as_label(), |status| FlowStatus {
                account_id,
                region,
                flow,
                status,
            });
            last_start.add(&labels, r.started_at);
        }
        if let Some(r) = &state.last_finished {
            last_bytes_processed.add(&labels, r.bytes_processed as f64);
            last_bytes_written.add(&labels, r.bytes_written as f64);
            last_records_processed.add(&labels, r.records_processed as f64);
        }
        if let Some(r) = &state.last_successful {
            last_success.add(&labels, r.last_updated_at);
            if let Some(t) = r.data_pull_end {
                data_pull_end.add(&labels, t);
            }
        }
    }

    let mut refresh_catches = FamilyBuilder::new(&REFRESH_CATCHES);
    let target = Target { account_id, region };
    refresh_catches.add(&target, tracker.refresh_catches() as f64);

    runs.finish(out);
    in_progress.finish(out);
    bytes_processed.finish(out);
    bytes_written.finish(out);
    records_processed.finish(out);
    put_failures.finish(out);
    catalog_failures.finish(out);
    duration.finish(out);
    last_status.finish(out);
    last_start.finish(out);
    last_bytes_processed.finish(out);
    last_bytes_written.finish(out);
    last_records_processed.finish(out);
    last_success.finish(out);
    data_pull_end.finish(out);
    refresh_catches.finish(out);
}
