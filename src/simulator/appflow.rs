//! AppFlow in the simulator: flows and their runs, which scenarios start, move and end in each
//! status, served over restJson1 (`POST /list-flows`, `/describe-flow-execution-records`,
//! `/describe-flow`).

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::{paginate, ApiError, ACCOUNT_ID, REGION};

#[derive(Debug, Clone)]
pub struct SimFlow {
    pub name: String,
    pub arn: String,
    /// Active, Suspended, Draft, Errored, Deleted.
    pub status: &'static str,
    pub created: f64,
    /// Its tags (ListFlows and DescribeFlow return them).
    pub tags: BTreeMap<String, String>,
}

#[derive(Debug, Clone)]
pub struct SimRun {
    pub flow: String,
    pub execution_id: String,
    /// InProgress, Successful, Error, CancelStarted, Canceled.
    pub status: &'static str,
    pub started_at: f64,
    pub last_updated_at: f64,
    pub data_pull_start: Option<f64>,
    pub data_pull_end: Option<f64>,
    pub bytes_processed: i64,
    pub bytes_written: i64,
    pub records_processed: i64,
    pub put_failures: Option<i64>,
    pub message: Option<String>,
    /// Glue table registrations of the run that ended in error (one catalog entry each).
    pub catalog_errors: u32,
}

#[derive(Debug, Default)]
pub struct AppflowWorld {
    pub flows: BTreeMap<String, SimFlow>,
    /// By executionId.
    pub runs: BTreeMap<String, SimRun>,
    /// Caps every page at this many items, to exercise pagination.
    pub page_cap: Option<usize>,
    /// ListFlows leaves out lastRunExecutionDetails (the field is optional in the API).
    pub omit_last_run_details: bool,
    next_id: u64,
}

impl AppflowWorld {
    pub fn add_flow(&mut self, name: &str, created: f64) -> String {
        let arn = format!("arn:aws:appflow:{REGION}:{ACCOUNT_ID}:flow/{name}");
        self.flows.insert(
            name.into(),
            SimFlow {
                name: name.into(),
                arn: arn.clone(),
                status: "Active",
                created,
                tags: BTreeMap::new(),
            },
        );
        arn
    }

    /// TagResource (and UntagResource): the flow's tags become `tags`.
    pub fn set_tags(&mut self, name: &str, tags: &[(&str, &str)]) {
        let flow = self.flows.get_mut(name).expect("known flow");
        flow.tags = super::tag_map(tags);
    }

    pub fn delete_flow(&mut self, name: &str) {
        self.flows.remove(name);
        self.runs.retain(|_, r| r.flow != name);
    }

    /// Deletes the flow a DescribeFlow or DescribeFlowExecutionRecords names, just before it is answered.
    pub fn delete_named(&mut self, operation: &str, input: &Value) {
        if matches!(operation, "DescribeFlow" | "DescribeFlowExecutionRecords") {
            let name = input
                .get("flowName")
                .and_then(Value::as_str)
                .unwrap_or_default();
            self.delete_flow(name);
        }
    }

    /// Starts a run; its data pull window ends where it starts.
    pub fn start_run(&mut self, flow: &str, started_at: f64) -> String {
        assert!(self.flows.contains_key(flow), "unknown flow {flow}");
        self.next_id += 1;
        let id = format!(
            "{:08x}-{:04x}-4000-8000-{:012x}",
            fastrand::u32(..),
            self.next_id & 0xffff,
            self.next_id
        );
        self.runs.insert(
            id.clone(),
            SimRun {
                flow: flow.into(),
                execution_id: id.clone(),
                status: "InProgress",
                started_at,
                last_updated_at: started_at,
                data_pull_start: Some(started_at - 3600.0),
                data_pull_end: Some(started_at),
                bytes_processed: 0,
                bytes_written: 0,
                records_processed: 0,
                put_failures: None,
                message: None,
                catalog_errors: 0,
            },
        );
        id
    }

    fn run_mut(&mut self, id: &str) -> &mut SimRun {
        self.runs.get_mut(id).expect("known run")
    }

    /// Sets a run's figures so far.
    pub fn set_progress(&mut self, id: &str, bytes: i64, written: i64, records: i64, at: f64) {
        let r = self.run_mut(id);
        r.bytes_processed = bytes;
        r.bytes_written = written;
        r.records_processed = records;
        r.last_updated_at = at;
    }

    /// Records put failures and the run's error message.
    pub fn set_error(&mut self, id: &str, put_failures: i64, message: &str) {
        let r = self.run_mut(id);
        r.put_failures = Some(put_failures);
        r.message = Some(message.into());
    }

    pub fn set_catalog_errors(&mut self, id: &str, n: u32) {
        self.run_mut(id).catalog_errors = n;
    }

    /// Moves a run to `status` (Successful, Error, CancelStarted, Canceled) at `at`.
    pub fn finish_run(&mut self, id: &str, status: &'static str, at: f64) {
        let r = self.run_mut(id);
        r.status = status;
        r.last_updated_at = at;
    }

    /// Adds `n` finished successful runs, one every `every` seconds, the newest ending at `last_end`.
    pub fn add_history(&mut self, flow: &str, n: usize, every: f64, last_end: f64) -> Vec<String> {
        (0..n)
            .map(|i| {
                let end = last_end - (n - 1 - i) as f64 * every;
                let id = self.start_run(flow, end - every / 2.0);
                self.set_progress(&id, 1000, 1000, 10, end);
                self.finish_run(&id, "Successful", end);
                id
            })
            .collect()
    }

    fn newest_run(&self, flow: &str) -> Option<&SimRun> {
        self.runs
            .values()
            .filter(|r| r.flow == flow)
            .max_by(|a, b| a.started_at.total_cmp(&b.started_at))
    }

    fn flow_json(&self, f: &SimFlow) -> Value {
        let last = (!self.omit_last_run_details)
            .then(|| self.newest_run(&f.name))
            .flatten()
            .map(|r| {
                json!({
                    "mostRecentExecutionStatus": r.status,
                    "mostRecentExecutionTime": r.last_updated_at,
                    "mostRecentExecutionMessage": r.message,
                })
            });
        json!({
            "flowArn": f.arn,
            "flowName": f.name,
            "flowStatus": f.status,
            "sourceConnectorType": "Salesforce",
            "destinationConnectorType": "S3",
            "triggerType": "Scheduled",
            "createdAt": f.created,
            "lastUpdatedAt": f.created,
            "lastRunExecutionDetails": last,
            "tags": f.tags,
        })
    }
}

fn run_json(r: &SimRun) -> Value {
    let catalog: Vec<Value> = (0..r.catalog_errors)
        .map(|i| {
            json!({
                "catalogType": "GLUE",
                "tableName": format!("{}_{i}", r.flow.replace('-', "_")),
                "tableRegistrationOutput": {"status": "Error", "message": "Glue table registration failed"},
                "partitionRegistrationOutput": {"status": "Successful"},
            })
        })
        .collect();
    let error_info = (r.put_failures.is_some() || r.message.is_some()).then(
        || json!({"putFailuresCount": r.put_failures.unwrap_or(0), "executionMessage": r.message}),
    );
    json!({
        "executionId": r.execution_id,
        "executionStatus": r.status,
        "executionResult": {
            "errorInfo": error_info,
            "bytesProcessed": r.bytes_processed,
            "bytesWritten": r.bytes_written,
            "recordsProcessed": r.records_processed,
            "numParallelProcesses": 1,
        },
        "startedAt": r.started_at,
        "lastUpdatedAt": r.last_updated_at,
        "dataPullStartTime": r.data_pull_start,
        "dataPullEndTime": r.data_pull_end,
        "metadataCatalogDetails": catalog,
    })
}

fn flow_name<'a>(w: &'a AppflowWorld, input: &'a Value) -> Result<&'a SimFlow, ApiError> {
    let name = input
        .get("flowName")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::bad_request("ValidationException", "flowName is required"))?;
    w.flows.get(name).ok_or_else(|| ApiError {
        status: 404,
        code: "ResourceNotFoundException",
        message: format!("flow {name} does not exist"),
    })
}

/// Answers one AppFlow operation.
pub fn handle(w: &mut AppflowWorld, operation: &str, input: &Value) -> Result<Value, ApiError> {
    match operation {
        "ListFlows" => {
            let all: Vec<&SimFlow> = w.flows.values().collect();
            let (page, next) = paginate(&all, input, "maxResults", "nextToken", 100, w.page_cap)?;
            let items: Vec<Value> = page.iter().map(|f| w.flow_json(f)).collect();
            Ok(json!({"flows": items, "nextToken": next}))
        }
        "DescribeFlow" => {
            let f = flow_name(w, input)?;
            Ok(w.flow_json(f))
        }
        "DescribeFlowExecutionRecords" => {
            let f = flow_name(w, input)?;
            let mut all: Vec<&SimRun> = w.runs.values().filter(|r| r.flow == f.name).collect();
            // Newest first, as AWS lists them.
            all.sort_by(|a, b| {
                b.started_at
                    .total_cmp(&a.started_at)
                    .then_with(|| a.execution_id.cmp(&b.execution_id))
            });
            let (page, next) = paginate(&all, input, "maxResults", "nextToken", 20, w.page_cap)?;
            let items: Vec<Value> = page.iter().map(|r| run_json(r)).collect();
            Ok(json!({"flowExecutions": items, "nextToken": next}))
        }
        other => Err(ApiError::bad_request(
            "UnknownOperationException",
            format!("AppFlow operation {other} is not simulated"),
        )),
    }
}
