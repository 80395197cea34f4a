//! SDK types to plain observations. Pure functions, no I/O.

use aws_sdk_appflow::types::{ExecutionDetails, ExecutionRecord, ExecutionStatus};
use aws_smithy_types::DateTime;

use crate::services::appflow_flows::state::{LastRunDetails, RunObs, RunStatus};

fn secs(t: Option<&DateTime>) -> Option<f64> {
    t.map(DateTime::as_secs_f64)
}

/// ListFlows' `lastRunExecutionDetails`, compared between polls.
pub fn last_run(d: Option<&ExecutionDetails>) -> LastRunDetails {
    d.map(|d| LastRunDetails {
        status: d
            .most_recent_execution_status()
            .map(|s| s.as_str().to_owned()),
        time: secs(d.most_recent_execution_time()),
        message: d.most_recent_execution_message().map(str::to_owned),
    })
    .unwrap_or_default()
}

/// An unknown status (a newer API than this SDK) is treated as in progress so the run is followed.
pub fn status(s: Option<&ExecutionStatus>) -> RunStatus {
    match s {
        Some(ExecutionStatus::Successful) => RunStatus::Successful,
        Some(ExecutionStatus::Error) => RunStatus::Error,
        Some(ExecutionStatus::Canceled) => RunStatus::Canceled,
        Some(ExecutionStatus::Cancelstarted) => RunStatus::CancelStarted,
        _ => RunStatus::InProgress,
    }
}

/// `None` for a record without an executionId, which cannot be deduplicated.
pub fn run(r: &ExecutionRecord) -> Option<RunObs> {
    let execution_id = r.execution_id()?.to_owned();
    let started_at = secs(r.started_at())
        .or(secs(r.last_updated_at()))
        .unwrap_or_default();
    let last_updated_at = secs(r.last_updated_at()).unwrap_or(started_at);
    let result = r.execution_result();
    let error = result.and_then(|x| x.error_info());
    let catalog_registration_failures = r
        .metadata_catalog_details()
        .iter()
        .filter(|d| {
            d.table_registration_output()
                .and_then(|o| o.status())
                .is_some_and(|s| *s == ExecutionStatus::Error)
        })
        .count() as u64;
    Some(RunObs {
        execution_id,
        status: status(r.execution_status()),
        started_at,
        last_updated_at,
        data_pull_end: secs(r.data_pull_end_time()),
        bytes_processed: result.and_then(|x| x.bytes_processed()).unwrap_or(0),
        bytes_written: result.and_then(|x| x.bytes_written()).unwrap_or(0),
        records_processed: result.and_then(|x| x.records_processed()).unwrap_or(0),
        put_failures: error.and_then(|e| e.put_failures_count()).unwrap_or(0),
        message: error
            .and_then(|e| e.execution_message())
            .filter(|m| !m.is_empty())
            .map(str::to_owned),
        catalog_registration_failures,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_appflow::types::{
        ErrorInfo, ExecutionResult, MetadataCatalogDetail, RegistrationOutput,
    };

    #[test]
    fn an_execution_record_converts_every_field() {
        let reg = |s| RegistrationOutput::builder().status(s).build();
        let rec = ExecutionRecord::builder()
            .execution_id("e-1")
            .execution_status(ExecutionStatus::Error)
            .started_at(DateTime::from_secs(100))
            .last_updated_at(DateTime::from_secs(160))
            .data_pull_end_time(DateTime::from_secs(90))
            .execution_result(
                ExecutionResult::builder()
                    .bytes_processed(1000)
                    .bytes_written(900)
                    .records_processed(12)
                    .error_info(
                        ErrorInfo::builder()
                            .put_failures_count(3)
                            .execution_message("Destination rejected records")
                            .build(),
                    )
                    .build(),
            )
            .metadata_catalog_details(
                MetadataCatalogDetail::builder()
                    .table_registration_output(reg(ExecutionStatus::Error))
                    .build(),
            )
            .metadata_catalog_details(
                MetadataCatalogDetail::builder()
                    .table_registration_output(reg(ExecutionStatus::Successful))
                    .partition_registration_output(reg(ExecutionStatus::Error))
                    .build(),
            )
            .build();
        let obs = run(&rec).unwrap();
        assert_eq!(obs.status, RunStatus::Error);
        assert_eq!(obs.started_at, 100.0);
        assert_eq!(obs.last_updated_at, 160.0);
        assert_eq!(obs.data_pull_end, Some(90.0));
        assert_eq!(obs.bytes_written, 900);
        assert_eq!(obs.put_failures, 3);
        assert_eq!(obs.message.as_deref(), Some("Destination rejected records"));
        assert_eq!(obs.catalog_registration_failures, 1);
        assert!(run(&ExecutionRecord::builder().build()).is_none());
        assert_eq!(status(None), RunStatus::InProgress);
    }
}
