//! Plain-value builders the tracker's and the plans' unit tests share.

use super::obs::{Counts, ExecutionObs, Listing, MapRunObs, MapRunStatus, StateMachineObs};
use super::tracker::MapRunTracker;

pub const SM: &str = "arn:aws:states:us-east-1:123456789012:stateMachine:etl";
pub const EXEC: &str = "arn:aws:states:us-east-1:123456789012:execution:etl:run-1";
pub const RUN: &str = "arn:aws:states:us-east-1:123456789012:mapRun:etl/Fan Out:5f2a";

pub fn exec(running: bool, redrive_count: i64) -> ExecutionObs {
    ExecutionObs {
        arn: EXEC.into(),
        state_machine_arn: SM.into(),
        name: "run-1".into(),
        running,
        start: 1000.0,
        stop: (!running).then_some(2000.0),
        redrive_count,
        redrive_date: (redrive_count > 0).then_some(2500.0),
        version: None,
    }
}

pub fn run(
    status: MapRunStatus,
    succeeded: i64,
    failed: i64,
    stop: Option<f64>,
    redrive_count: i64,
) -> MapRunObs {
    MapRunObs {
        arn: RUN.into(),
        execution_arn: EXEC.into(),
        status,
        start: 1000.0,
        stop,
        max_concurrency: 10,
        tolerated_failure_ratio: 0.1,
        tolerated_failure_count: 0,
        items: Counts {
            succeeded,
            failed,
            total: 100,
            pending: 100 - succeeded - failed,
            ..Counts::default()
        },
        executions: Counts::default(),
        redrive_count,
        redrive_date: None,
    }
}

pub fn key() -> (String, String) {
    ("etl".into(), "Fan Out".into())
}

/// Every run the poll would describe, whatever its kind.
pub fn to_describe(t: &MapRunTracker) -> Vec<String> {
    let plan = t.runs_to_describe(0.0, f64::INFINITY);
    let mut all = plan.required;
    all.extend(plan.nearing);
    all.extend(plan.refresh);
    all.extend(plan.backfill);
    all
}

pub fn listing(t: &mut MapRunTracker, kind: Listing, listed: Vec<ExecutionObs>, now: f64) {
    t.observe_listing(SM, kind, listed, 0.0, now);
}

pub fn sm_obs(arn: &str, name: &str) -> StateMachineObs {
    StateMachineObs {
        arn: arn.into(),
        name: name.into(),
        created: 1.0,
    }
}
