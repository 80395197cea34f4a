//! Step Functions in the simulator: state machines, executions and map runs that scenarios move
//! through their lifecycle (progress, failure, abort, redrive), served over awsJson1_0.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::{paginate, ApiError, ACCOUNT_ID, REGION};

/// itemCounts or executionCounts of a simulated Map Run, as DescribeMapRun returns them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub pending: i64,
    pub running: i64,
    pub succeeded: i64,
    pub failed: i64,
    pub timed_out: i64,
    pub aborted: i64,
    pub total: i64,
    pub results_written: i64,
    pub failures_not_redrivable: Option<i64>,
    pub pending_redrive: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct SimStateMachine {
    pub arn: String,
    pub name: String,
    pub express: bool,
    pub created: f64,
    /// The Amazon States Language definition DescribeStateMachine returns (see [`definitions`]).
    pub definition: String,
    /// Changes with every definition update, as DescribeStateMachine's `revisionId` does.
    pub revision: u64,
    /// The definitions of its published versions, version 1 first (immutable, as AWS's are).
    pub versions: Vec<String>,
    /// Its tags (ListTagsForResource).
    pub tags: BTreeMap<String, String>,
}

#[derive(Debug, Clone)]
pub struct SimExecution {
    pub arn: String,
    pub state_machine_arn: String,
    pub name: String,
    /// RUNNING, SUCCEEDED, FAILED, TIMED_OUT, ABORTED.
    pub status: &'static str,
    pub start: f64,
    pub stop: Option<f64>,
    pub redrive_count: i64,
    pub redrive_date: Option<f64>,
    /// Not in ListExecutions answers yet: AWS's listing is eventually consistent.
    pub unlisted: bool,
    /// The published version it runs (started with a version or an alias ARN).
    pub version: Option<String>,
}

#[derive(Debug, Clone)]
pub struct SimMapRun {
    pub arn: String,
    pub execution_arn: String,
    pub state_machine_arn: String,
    /// RUNNING, SUCCEEDED, FAILED, ABORTED.
    pub status: &'static str,
    pub start: f64,
    pub stop: Option<f64>,
    pub max_concurrency: i64,
    pub tolerated_failure_percentage: f64,
    pub tolerated_failure_count: i64,
    pub items: Counts,
    pub executions: Counts,
    pub redrive_count: i64,
    pub redrive_date: Option<f64>,
    /// A redrive of its execution leaves it as it is (a Catch handled its failure, or it ran in
    /// an earlier iteration of a loop the redrive does not repeat).
    pub kept_on_redrive: bool,
}

#[derive(Debug, Default)]
pub struct SfnWorld {
    pub state_machines: BTreeMap<String, SimStateMachine>,
    pub executions: BTreeMap<String, SimExecution>,
    pub map_runs: BTreeMap<String, SimMapRun>,
    /// Caps every page at this many items, to exercise pagination.
    pub page_cap: Option<usize>,
    /// Each execution's history, oldest first (GetExecutionHistory), as things happen to it.
    pub events: BTreeMap<String, Vec<Value>>,
}

/// Parameters of a new map run.
#[derive(Debug, Clone)]
pub struct MapRunSpec {
    pub map_state: String,
    pub id: String,
    pub total_items: i64,
    pub max_concurrency: i64,
    pub tolerated_failure_percentage: f64,
    pub tolerated_failure_count: i64,
}

impl SfnWorld {
    /// A STANDARD state machine whose definition has one Distributed Map state named `Map`.
    pub fn add_state_machine(&mut self, name: &str, created: f64) -> String {
        self.add_state_machine_with(name, created, &definitions::distributed_map("Map"))
    }

    /// A STANDARD state machine with the given definition.
    pub fn add_state_machine_with(&mut self, name: &str, created: f64, definition: &str) -> String {
        let arn = format!("arn:aws:states:{REGION}:{ACCOUNT_ID}:stateMachine:{name}");
        self.state_machines.insert(
            arn.clone(),
            SimStateMachine {
                arn: arn.clone(),
                name: name.into(),
                express: false,
                created,
                definition: definition.into(),
                revision: 1,
                versions: Vec::new(),
                tags: BTreeMap::new(),
            },
        );
        arn
    }

    /// PublishStateMachineVersion: the current definition becomes a version; its ARN.
    pub fn publish_version(&mut self, arn: &str) -> String {
        let sm = self
            .state_machines
            .get_mut(arn)
            .expect("known state machine");
        sm.versions.push(sm.definition.clone());
        format!("{arn}:{}", sm.versions.len())
    }

    /// UpdateStateMachine: a new definition and revision.
    pub fn update_definition(&mut self, arn: &str, definition: &str) {
        let sm = self
            .state_machines
            .get_mut(arn)
            .expect("known state machine");
        sm.definition = definition.into();
        sm.revision += 1;
    }

    /// TagResource (and UntagResource): the state machine's tags become `tags`.
    pub fn set_tags(&mut self, arn: &str, tags: &[(&str, &str)]) {
        let sm = self
            .state_machines
            .get_mut(arn)
            .expect("known state machine");
        sm.tags = super::tag_map(tags);
    }

    pub fn delete_state_machine(&mut self, arn: &str) {
        self.state_machines.remove(arn);
        self.executions.retain(|_, e| e.state_machine_arn != arn);
        self.map_runs.retain(|_, r| r.state_machine_arn != arn);
        let executions = &self.executions;
        self.events.retain(|e, _| executions.contains_key(e));
    }

    pub fn start_execution(&mut self, state_machine_arn: &str, name: &str, start: f64) -> String {
        let sm_name = &self.state_machines[state_machine_arn].name;
        let arn = format!("arn:aws:states:{REGION}:{ACCOUNT_ID}:execution:{sm_name}:{name}");
        self.executions.insert(
            arn.clone(),
            SimExecution {
                arn: arn.clone(),
                state_machine_arn: state_machine_arn.into(),
                name: name.into(),
                status: "RUNNING",
                start,
                stop: None,
                redrive_count: 0,
                redrive_date: None,
                unlisted: false,
                version: None,
            },
        );
        self.event(&arn, "ExecutionStarted", start, json!({}));
        arn
    }

    /// StartExecution with a version's ARN (or an alias pointing at it).
    pub fn start_execution_of_version(
        &mut self,
        version_arn: &str,
        name: &str,
        start: f64,
    ) -> String {
        let state_machine_arn = version_arn
            .rsplit_once(':')
            .map_or(version_arn, |(sm, _)| sm)
            .to_owned();
        let arn = self.start_execution(&state_machine_arn, name, start);
        if let Some(e) = self.executions.get_mut(&arn) {
            e.version = Some(version_arn.to_owned());
        }
        arn
    }

    /// Appends an event to an execution's history (ids count from 1, as AWS's do).
    fn event(&mut self, execution_arn: &str, kind: &str, at: f64, details: Value) {
        let events = self.events.entry(execution_arn.to_owned()).or_default();
        let id = events.len() as i64 + 1;
        let mut e = json!({"id": id, "previousEventId": id - 1, "type": kind, "timestamp": at});
        if let (Some(e), Value::Object(d)) = (e.as_object_mut(), details) {
            e.extend(d);
        }
        events.push(e);
    }

    /// Appends `n` task events to an execution's history, to make it long.
    pub fn add_task_events(&mut self, execution_arn: &str, n: usize, at: f64) {
        for _ in 0..n {
            self.event(execution_arn, "TaskStateEntered", at, json!({}));
        }
    }

    /// Whether ListExecutions shows the execution yet (it shows every other call at once).
    pub fn set_listed(&mut self, execution_arn: &str, listed: bool) {
        if let Some(e) = self.executions.get_mut(execution_arn) {
            e.unlisted = !listed;
        }
    }

    pub fn stop_execution(&mut self, execution_arn: &str, status: &'static str, stop: f64) {
        let e = self
            .executions
            .get_mut(execution_arn)
            .expect("known execution");
        e.status = status;
        e.stop = Some(stop);
        let kind = match status {
            "SUCCEEDED" => "ExecutionSucceeded",
            "ABORTED" => "ExecutionAborted",
            "TIMED_OUT" => "ExecutionTimedOut",
            _ => "ExecutionFailed",
        };
        self.event(execution_arn, kind, stop, json!({}));
    }

    pub fn add_map_run(&mut self, execution_arn: &str, spec: MapRunSpec, start: f64) -> String {
        let e = &self.executions[execution_arn];
        let sm_name = &self.state_machines[&e.state_machine_arn].name;
        let arn = format!(
            "arn:aws:states:{REGION}:{ACCOUNT_ID}:mapRun:{sm_name}/{}:{}",
            spec.map_state, spec.id
        );
        let pending = Counts {
            pending: spec.total_items,
            total: spec.total_items,
            failures_not_redrivable: Some(0),
            pending_redrive: Some(0),
            ..Counts::default()
        };
        self.map_runs.insert(
            arn.clone(),
            SimMapRun {
                arn: arn.clone(),
                execution_arn: execution_arn.into(),
                state_machine_arn: e.state_machine_arn.clone(),
                status: "RUNNING",
                start,
                stop: None,
                max_concurrency: spec.max_concurrency,
                tolerated_failure_percentage: spec.tolerated_failure_percentage,
                tolerated_failure_count: spec.tolerated_failure_count,
                items: pending,
                executions: pending,
                redrive_count: 0,
                redrive_date: None,
                kept_on_redrive: false,
            },
        );
        self.event(execution_arn, "MapStateEntered", start, json!({}));
        self.event(
            execution_arn,
            "MapRunStarted",
            start,
            json!({"mapRunStartedEventDetails": {"mapRunArn": arn}}),
        );
        arn
    }

    /// Sets how many items (and child executions, one per item) are running, succeeded, failed
    /// or timed out; the rest are pending.
    pub fn set_progress(
        &mut self,
        map_run_arn: &str,
        running: i64,
        succeeded: i64,
        failed: i64,
        timed_out: i64,
    ) {
        let r = self.map_runs.get_mut(map_run_arn).expect("known map run");
        for c in [&mut r.items, &mut r.executions] {
            c.running = running;
            c.succeeded = succeeded;
            c.failed = failed;
            c.timed_out = timed_out;
            c.pending = (c.total - running - succeeded - failed - timed_out - c.aborted).max(0);
            c.results_written = succeeded;
        }
    }

    /// Ends a map run: remaining pending/running items are aborted if it is aborted.
    pub fn finish_map_run(&mut self, map_run_arn: &str, status: &'static str, stop: f64) {
        let r = self.map_runs.get_mut(map_run_arn).expect("known map run");
        r.status = status;
        r.stop = Some(stop);
        for c in [&mut r.items, &mut r.executions] {
            if status == "ABORTED" {
                c.aborted += c.pending + c.running;
            }
            c.pending = 0;
            c.running = 0;
        }
        let execution_arn = r.execution_arn.clone();
        let (kind, details) = match status {
            "SUCCEEDED" => ("MapRunSucceeded", json!({})),
            "ABORTED" => ("MapRunAborted", json!({})),
            _ => (
                "MapRunFailed",
                json!({"mapRunFailedEventDetails": {"error": "States.ExceedToleratedFailureThreshold"}}),
            ),
        };
        self.event(&execution_arn, kind, stop, details);
    }

    /// Deletes what a request names, just before it is answered: the map run a DescribeMapRun
    /// asks for, the execution a ListMapRuns lists, the state machine a ListExecutions lists.
    pub fn delete_named(&mut self, operation: &str, input: &Value) {
        let arg = |key| input.get(key).and_then(Value::as_str).unwrap_or_default();
        match operation {
            "DescribeMapRun" => {
                self.map_runs.remove(arg("mapRunArn"));
            }
            "ListMapRuns" | "GetExecutionHistory" => {
                let exec = arg("executionArn");
                self.executions.remove(exec);
                self.events.remove(exec);
                self.map_runs.retain(|_, r| r.execution_arn != exec);
            }
            "ListExecutions" => self.delete_state_machine(arg("stateMachineArn")),
            _ => {}
        }
    }

    /// A map run reruns its failed, timed-out and aborted items (its execution was redriven).
    pub fn rerun_map_run(&mut self, map_run_arn: &str, at: f64) {
        let r = self.map_runs.get_mut(map_run_arn).expect("known map run");
        r.status = "RUNNING";
        r.stop = None;
        r.redrive_count += 1;
        r.redrive_date = Some(at);
        for c in [&mut r.items, &mut r.executions] {
            let rerun = c.failed + c.timed_out + c.aborted;
            c.pending += rerun;
            c.failed = 0;
            c.timed_out = 0;
            c.aborted = 0;
            c.pending_redrive = Some(0);
        }
        let (execution_arn, count) = (r.execution_arn.clone(), r.redrive_count);
        self.event(
            &execution_arn,
            "MapRunRedriven",
            at,
            json!({"mapRunRedrivenEventDetails": {"mapRunArn": map_run_arn, "redriveCount": count}}),
        );
    }

    /// Redrives an execution: it runs again, and its failed or aborted map runs rerun (except
    /// those `kept_on_redrive`).
    pub fn redrive(&mut self, execution_arn: &str, at: f64) {
        let e = self
            .executions
            .get_mut(execution_arn)
            .expect("known execution");
        e.status = "RUNNING";
        e.stop = None;
        e.redrive_count += 1;
        e.redrive_date = Some(at);
        self.event(execution_arn, "ExecutionRedriven", at, json!({}));
        let reruns: Vec<String> = self
            .map_runs
            .values()
            .filter(|r| r.execution_arn == execution_arn && !r.kept_on_redrive)
            .filter(|r| r.status == "FAILED" || r.status == "ABORTED")
            .map(|r| r.arn.clone())
            .collect();
        for arn in reruns {
            self.rerun_map_run(&arn, at);
        }
    }
}

fn counts_json(c: &Counts) -> Value {
    json!({
        "pending": c.pending,
        "running": c.running,
        "succeeded": c.succeeded,
        "failed": c.failed,
        "timedOut": c.timed_out,
        "aborted": c.aborted,
        "total": c.total,
        "resultsWritten": c.results_written,
        "failuresNotRedrivable": c.failures_not_redrivable,
        "pendingRedrive": c.pending_redrive,
    })
}

fn required<'a>(input: &'a Value, key: &str) -> Result<&'a str, ApiError> {
    input
        .get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::bad_request("ValidationException", format!("{key} is required")))
}

/// Answers one Step Functions operation.
pub fn handle(w: &mut SfnWorld, operation: &str, input: &Value) -> Result<Value, ApiError> {
    match operation {
        "ListStateMachines" => {
            let all: Vec<&SimStateMachine> = w.state_machines.values().collect();
            let (page, next) = paginate(&all, input, "maxResults", "nextToken", 100, w.page_cap)?;
            let items: Vec<Value> = page
                .iter()
                .map(|sm| {
                    json!({
                        "stateMachineArn": sm.arn,
                        "name": sm.name,
                        "type": if sm.express { "EXPRESS" } else { "STANDARD" },
                        "creationDate": sm.created,
                    })
                })
                .collect();
            Ok(json!({"stateMachines": items, "nextToken": next}))
        }
        "DescribeStateMachine" => {
            let arn = required(input, "stateMachineArn")?;
            let missing = || {
                ApiError::bad_request(
                    "StateMachineDoesNotExist",
                    format!("State Machine Does Not Exist: '{arn}'"),
                )
            };
            // A version's ARN is the state machine's with `:N` appended.
            let (sm, definition) = match w.state_machines.get(arn) {
                Some(sm) => (sm, &sm.definition),
                None => {
                    let (base, n) = arn.rsplit_once(':').ok_or_else(missing)?;
                    let sm = w.state_machines.get(base).ok_or_else(missing)?;
                    let n: usize = n.parse().map_err(|_| missing())?;
                    let definition = n.checked_sub(1).and_then(|i| sm.versions.get(i));
                    (sm, definition.ok_or_else(missing)?)
                }
            };
            Ok(json!({
                "stateMachineArn": arn,
                "name": sm.name,
                "status": "ACTIVE",
                "definition": definition,
                "roleArn": format!("arn:aws:iam::{ACCOUNT_ID}:role/{}", sm.name),
                "type": if sm.express { "EXPRESS" } else { "STANDARD" },
                "creationDate": sm.created,
                "revisionId": format!("rev-{}", sm.revision),
            }))
        }
        "ListTagsForResource" => {
            let arn = required(input, "resourceArn")?;
            let sm = w.state_machines.get(arn).ok_or_else(|| {
                ApiError::bad_request("ResourceNotFound", format!("Resource not found: '{arn}'"))
            })?;
            let tags: Vec<Value> = sm
                .tags
                .iter()
                .map(|(k, v)| json!({"key": k, "value": v}))
                .collect();
            Ok(json!({"tags": tags}))
        }
        "ListStateMachineVersions" => {
            let arn = required(input, "stateMachineArn")?;
            let sm = w.state_machines.get(arn).ok_or_else(|| {
                ApiError::bad_request(
                    "StateMachineDoesNotExist",
                    format!("State Machine Does Not Exist: '{arn}'"),
                )
            })?;
            // Newest first, as AWS lists them.
            let all: Vec<Value> = (1..=sm.versions.len())
                .rev()
                .map(|n| json!({"stateMachineVersionArn": format!("{arn}:{n}"), "creationDate": sm.created}))
                .collect();
            let (page, next) = paginate(&all, input, "maxResults", "nextToken", 100, w.page_cap)?;
            Ok(json!({"stateMachineVersions": page, "nextToken": next}))
        }
        "ListExecutions" => {
            let sm = required(input, "stateMachineArn")?;
            if !w.state_machines.contains_key(sm) {
                return Err(ApiError::bad_request(
                    "StateMachineDoesNotExist",
                    format!("State Machine Does Not Exist: '{sm}'"),
                ));
            }
            let filter = input.get("statusFilter").and_then(Value::as_str);
            let redriven = match input.get("redriveFilter").and_then(Value::as_str) {
                None => None,
                Some("REDRIVEN") => Some(true),
                Some("NOT_REDRIVEN") => Some(false),
                Some(other) => {
                    return Err(ApiError::bad_request(
                        "ValidationException",
                        format!("invalid redriveFilter {other}"),
                    ))
                }
            };
            let mut all: Vec<&SimExecution> = w
                .executions
                .values()
                .filter(|e| {
                    e.state_machine_arn == sm
                        && !e.unlisted
                        && filter.is_none_or(|f| e.status == f)
                        && redriven.is_none_or(|r| (e.redrive_count > 0) == r)
                })
                .collect();
            // Newest first, as AWS lists them.
            all.sort_by(|a, b| b.start.total_cmp(&a.start).then_with(|| a.arn.cmp(&b.arn)));
            let (page, next) = paginate(&all, input, "maxResults", "nextToken", 100, w.page_cap)?;
            let items: Vec<Value> = page
                .iter()
                .map(|e| {
                    json!({
                        "executionArn": e.arn,
                        "stateMachineArn": e.state_machine_arn,
                        "name": e.name,
                        "status": e.status,
                        "startDate": e.start,
                        "stopDate": e.stop,
                        "redriveCount": e.redrive_count,
                        "redriveDate": e.redrive_date,
                        "stateMachineVersionArn": e.version,
                    })
                })
                .collect();
            Ok(json!({"executions": items, "nextToken": next}))
        }
        "GetExecutionHistory" => {
            let exec = required(input, "executionArn")?;
            if !w.executions.contains_key(exec) {
                return Err(ApiError::bad_request(
                    "ExecutionDoesNotExist",
                    format!("Execution Does Not Exist: '{exec}'"),
                ));
            }
            let mut all = w.events.get(exec).cloned().unwrap_or_default();
            if input.get("reverseOrder").and_then(Value::as_bool) == Some(true) {
                all.reverse();
            }
            let (page, next) = paginate(&all, input, "maxResults", "nextToken", 100, w.page_cap)?;
            Ok(json!({"events": page, "nextToken": next}))
        }
        "ListMapRuns" => {
            let exec = required(input, "executionArn")?;
            if !w.executions.contains_key(exec) {
                return Err(ApiError::bad_request(
                    "ExecutionDoesNotExist",
                    format!("Execution Does Not Exist: '{exec}'"),
                ));
            }
            let all: Vec<&SimMapRun> = w
                .map_runs
                .values()
                .filter(|r| r.execution_arn == exec)
                .collect();
            let (page, next) = paginate(&all, input, "maxResults", "nextToken", 100, w.page_cap)?;
            let items: Vec<Value> = page
                .iter()
                .map(|r| {
                    json!({
                        "executionArn": r.execution_arn,
                        "mapRunArn": r.arn,
                        "stateMachineArn": r.state_machine_arn,
                        "startDate": r.start,
                        "stopDate": r.stop,
                    })
                })
                .collect();
            Ok(json!({"mapRuns": items, "nextToken": next}))
        }
        "DescribeMapRun" => {
            let arn = required(input, "mapRunArn")?;
            let r = w.map_runs.get(arn).ok_or_else(|| {
                ApiError::bad_request(
                    "ResourceNotFound",
                    format!("Map Run Does Not Exist: '{arn}'"),
                )
            })?;
            Ok(json!({
                "mapRunArn": r.arn,
                "executionArn": r.execution_arn,
                "status": r.status,
                "startDate": r.start,
                "stopDate": r.stop,
                "maxConcurrency": r.max_concurrency,
                "toleratedFailurePercentage": r.tolerated_failure_percentage,
                "toleratedFailureCount": r.tolerated_failure_count,
                "itemCounts": counts_json(&r.items),
                "executionCounts": counts_json(&r.executions),
                "redriveCount": r.redrive_count,
                "redriveDate": r.redrive_date,
            }))
        }
        other => Err(ApiError::bad_request(
            "UnknownOperationException",
            format!("Step Functions operation {other} is not simulated"),
        )),
    }
}

/// Amazon States Language definitions for simulated state machines.
pub mod definitions {
    use serde_json::{json, Value};

    fn map_state(mode: &str, inner: Value) -> Value {
        json!({
            "Type": "Map",
            "ItemProcessor": {
                "ProcessorConfig": {"Mode": mode, "ExecutionType": "STANDARD"},
                "StartAt": "Inner",
                "States": {"Inner": inner}
            },
            "End": true
        })
    }

    fn work() -> Value {
        json!({"Type": "Pass", "End": true})
    }

    fn machine(name: &str, state: Value) -> String {
        json!({"StartAt": name, "States": {name: state}}).to_string()
    }

    /// One Map state in DISTRIBUTED mode: its runs are Map Runs.
    pub fn distributed_map(state: &str) -> String {
        machine(state, map_state("DISTRIBUTED", work()))
    }

    /// One Map state in INLINE mode: it never starts a Map Run.
    pub fn inline_map(state: &str) -> String {
        machine(state, map_state("INLINE", work()))
    }

    /// A Distributed Map nested in a Parallel branch inside an Inline Map.
    pub fn nested_distributed_map(state: &str) -> String {
        let parallel = json!({
            "Type": "Parallel",
            "Branches": [{"StartAt": "Fan", "States": {"Fan": map_state("DISTRIBUTED", work())}}],
            "End": true
        });
        machine(state, map_state("INLINE", parallel))
    }

    /// Task states only: a callback waiting for an approval.
    pub fn no_map(state: &str) -> String {
        machine(
            state,
            json!({"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken", "End": true}),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describe_state_machine_returns_the_definition_and_revision() {
        let mut w = SfnWorld::default();
        let sm = w.add_state_machine_with("a", 1.0, &definitions::inline_map("Each"));
        w.update_definition(&sm, &definitions::nested_distributed_map("Outer"));
        let out = handle(
            &mut w,
            "DescribeStateMachine",
            &json!({"stateMachineArn": sm}),
        )
        .unwrap();
        assert_eq!(out["revisionId"], "rev-2");
        assert!(out["definition"].as_str().unwrap().contains("DISTRIBUTED"));
        let missing = handle(
            &mut w,
            "DescribeStateMachine",
            &json!({"stateMachineArn": "x"}),
        );
        assert_eq!(missing.unwrap_err().code, "StateMachineDoesNotExist");
    }

    #[test]
    fn list_executions_filters_by_redrive_and_status() {
        let mut w = SfnWorld::default();
        let sm = w.add_state_machine("a", 1.0);
        let old = w.start_execution(&sm, "old", 10.0);
        w.stop_execution(&old, "FAILED", 20.0);
        let new = w.start_execution(&sm, "new", 30.0);
        w.stop_execution(&new, "FAILED", 40.0);
        w.redrive(&old, 50.0);
        let mut names = |input: Value| -> Vec<String> {
            let out = handle(&mut w, "ListExecutions", &input).unwrap();
            out["executions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["name"].as_str().unwrap().to_owned())
                .collect()
        };
        assert_eq!(
            names(json!({"stateMachineArn": sm, "redriveFilter": "REDRIVEN"})),
            ["old"]
        );
        assert_eq!(
            names(json!({"stateMachineArn": sm, "redriveFilter": "NOT_REDRIVEN"})),
            ["new"]
        );
        assert_eq!(
            names(
                json!({"stateMachineArn": sm, "statusFilter": "RUNNING", "redriveFilter": "REDRIVEN"})
            ),
            ["old"]
        );
        assert_eq!(names(json!({"stateMachineArn": sm})), ["new", "old"]);
    }
}
