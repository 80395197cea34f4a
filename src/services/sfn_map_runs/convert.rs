//! SDK types to plain observations. Pure functions, no I/O.

use aws_sdk_sfn::operation::describe_map_run::DescribeMapRunOutput;
use aws_sdk_sfn::types::{
    ExecutionListItem, ExecutionStatus, HistoryEvent, HistoryEventType, MapRunExecutionCounts,
    MapRunItemCounts, MapRunStatus as SdkStatus,
};
use aws_smithy_types::DateTime;

use crate::services::sfn_map_runs::obs::{
    Counts, ExecutionEvents, ExecutionObs, MapRunObs, MapRunStatus,
};

pub fn secs(t: &DateTime) -> f64 {
    t.as_secs_f64()
}

pub fn execution(item: &ExecutionListItem) -> ExecutionObs {
    ExecutionObs {
        arn: item.execution_arn().to_owned(),
        state_machine_arn: item.state_machine_arn().to_owned(),
        name: item.name().to_owned(),
        running: *item.status() == ExecutionStatus::Running,
        start: secs(item.start_date()),
        stop: item.stop_date().map(secs),
        redrive_count: item.redrive_count().unwrap_or(0).into(),
        redrive_date: item.redrive_date().map(secs),
        version: item.state_machine_version_arn().map(str::to_owned),
    }
}

/// Adds the map run events of one page (newest first) newer than event `after` to `out`.
/// Returns whether the page reached event `after` (nothing older is needed).
pub fn execution_events(page: &[HistoryEvent], after: i64, out: &mut ExecutionEvents) -> bool {
    for e in page {
        if e.id() <= after {
            return true;
        }
        out.newest = out.newest.max(e.id());
        match e.r#type() {
            HistoryEventType::MapRunStarted => {
                if let Some(arn) = e
                    .map_run_started_event_details()
                    .and_then(|d| d.map_run_arn())
                {
                    out.started.push((arn.to_owned(), secs(e.timestamp())));
                }
            }
            HistoryEventType::MapRunRedriven => {
                if let Some(arn) = e
                    .map_run_redriven_event_details()
                    .and_then(|d| d.map_run_arn())
                {
                    out.redriven.push(arn.to_owned());
                }
            }
            HistoryEventType::MapRunSucceeded
            | HistoryEventType::MapRunFailed
            | HistoryEventType::MapRunAborted => out.ended = true,
            _ => {}
        }
    }
    false
}

/// Whether an Amazon States Language definition has a Map state in DISTRIBUTED mode anywhere,
/// nested ones (inside Parallel branches or other Maps) included.
pub fn has_distributed_map(definition: &str) -> Result<bool, serde_json::Error> {
    fn walk(v: &serde_json::Value) -> bool {
        match v {
            serde_json::Value::Object(o) => {
                let distributed = o.get("Type").and_then(|t| t.as_str()) == Some("Map")
                    && ["ItemProcessor", "Iterator"].iter().any(|k| {
                        o.get(*k)
                            .and_then(|p| p.pointer("/ProcessorConfig/Mode"))
                            .and_then(|m| m.as_str())
                            == Some("DISTRIBUTED")
                    });
                distributed || o.values().any(walk)
            }
            serde_json::Value::Array(a) => a.iter().any(walk),
            _ => false,
        }
    }
    Ok(walk(&serde_json::from_str(definition)?))
}

/// An unknown status (a newer API than this SDK) is treated as running so the run is described again.
pub fn status(s: &SdkStatus) -> MapRunStatus {
    match s {
        SdkStatus::Succeeded => MapRunStatus::Succeeded,
        SdkStatus::Failed => MapRunStatus::Failed,
        SdkStatus::Aborted => MapRunStatus::Aborted,
        _ => MapRunStatus::Running,
    }
}

fn item_counts(c: Option<&MapRunItemCounts>) -> Counts {
    c.map(|c| Counts {
        pending: c.pending(),
        running: c.running(),
        succeeded: c.succeeded(),
        failed: c.failed(),
        timed_out: c.timed_out(),
        aborted: c.aborted(),
        total: c.total(),
        results_written: c.results_written(),
        failures_not_redrivable: c.failures_not_redrivable(),
        pending_redrive: c.pending_redrive(),
    })
    .unwrap_or_default()
}

fn execution_counts(c: Option<&MapRunExecutionCounts>) -> Counts {
    c.map(|c| Counts {
        pending: c.pending(),
        running: c.running(),
        succeeded: c.succeeded(),
        failed: c.failed(),
        timed_out: c.timed_out(),
        aborted: c.aborted(),
        total: c.total(),
        results_written: c.results_written(),
        failures_not_redrivable: c.failures_not_redrivable(),
        pending_redrive: c.pending_redrive(),
    })
    .unwrap_or_default()
}

pub fn map_run(out: &DescribeMapRunOutput) -> MapRunObs {
    MapRunObs {
        arn: out.map_run_arn().to_owned(),
        execution_arn: out.execution_arn().to_owned(),
        status: status(out.status()),
        start: secs(out.start_date()),
        stop: out.stop_date().map(secs),
        max_concurrency: out.max_concurrency().into(),
        // f32 on the wire; round to avoid 0.1 showing up as 0.10000000149.
        tolerated_failure_ratio: (f64::from(out.tolerated_failure_percentage()) * 1000.0).round()
            / 100_000.0,
        tolerated_failure_count: out.tolerated_failure_count(),
        items: item_counts(out.item_counts()),
        executions: execution_counts(out.execution_counts()),
        redrive_count: out.redrive_count().unwrap_or(0).into(),
        redrive_date: out.redrive_date().map(secs),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distributed_maps_are_found_wherever_they_are_nested() {
        let yes = |d: &str| has_distributed_map(d).unwrap();
        let map = |mode: &str, inner: &str| {
            format!(
                r#"{{"Type":"Map","ItemProcessor":{{"ProcessorConfig":{{"Mode":"{mode}"}},"StartAt":"I","States":{{"I":{inner}}}}},"End":true}}"#
            )
        };
        let machine = |state: &str| format!(r#"{{"StartAt":"S","States":{{"S":{state}}}}}"#);
        let pass = r#"{"Type":"Pass","End":true}"#;
        assert!(yes(&machine(&map("DISTRIBUTED", pass))));
        assert!(!yes(&machine(&map("INLINE", pass))));
        let parallel = format!(
            r#"{{"Type":"Parallel","Branches":[{{"StartAt":"F","States":{{"F":{}}}}}],"End":true}}"#,
            map("DISTRIBUTED", pass)
        );
        assert!(yes(&machine(&map("INLINE", &parallel))));
        assert!(!yes(&machine(pass)));
        // A state named like a mode, or a Map without a processor config, is not one.
        assert!(!yes(
            r#"{"StartAt":"DISTRIBUTED","States":{"DISTRIBUTED":{"Type":"Map","Iterator":{"StartAt":"x","States":{"x":{"Type":"Pass","End":true}}},"End":true}}}"#
        ));
        assert!(has_distributed_map("not json").is_err());
    }

    #[test]
    fn describe_output_converts_every_field() {
        let out = DescribeMapRunOutput::builder()
            .map_run_arn("arn:aws:states:us-east-1:1:mapRun:sm/Map:abc")
            .execution_arn("arn:aws:states:us-east-1:1:execution:sm:e")
            .status(SdkStatus::Failed)
            .start_date(DateTime::from_secs(100))
            .stop_date(DateTime::from_secs(200))
            .max_concurrency(5)
            .tolerated_failure_percentage(12.5)
            .tolerated_failure_count(3)
            .item_counts(
                MapRunItemCounts::builder()
                    .pending(1)
                    .running(2)
                    .succeeded(3)
                    .failed(4)
                    .timed_out(5)
                    .aborted(6)
                    .total(21)
                    .results_written(3)
                    .failures_not_redrivable(1)
                    .pending_redrive(2)
                    .build(),
            )
            .redrive_count(2)
            .redrive_date(DateTime::from_secs(150))
            .build()
            .unwrap();
        let obs = map_run(&out);
        assert_eq!(obs.status, MapRunStatus::Failed);
        assert_eq!(obs.stop, Some(200.0));
        assert_eq!(obs.tolerated_failure_ratio, 0.125);
        assert_eq!(obs.items.timed_out, 5);
        assert_eq!(obs.items.failures_not_redrivable, Some(1));
        assert_eq!(obs.executions, Counts::default());
        assert_eq!(obs.redrive_count, 2);
        assert_eq!(obs.redrive_date, Some(150.0));
    }
}
