//! Transfer Family workflows in the simulator: workflows and their in-progress executions, which
//! scenarios move IN_PROGRESS -> HANDLING_EXCEPTION -> gone, with step results of every step type
//! and error type, served over awsJson1_1. As on AWS, an execution is only visible while it is
//! in progress: finishing removes it.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};

use super::{paginate, ApiError, ACCOUNT_ID, REGION};

pub const STEP_TYPES: [&str; 5] = ["COPY", "CUSTOM", "TAG", "DELETE", "DECRYPT"];
pub const ERROR_TYPES: [&str; 8] = [
    "PERMISSION_DENIED",
    "CUSTOM_STEP_FAILED",
    "THROTTLED",
    "ALREADY_EXISTS",
    "NOT_FOUND",
    "BAD_REQUEST",
    "TIMEOUT",
    "INTERNAL_SERVER_ERROR",
];

#[derive(Debug, Clone)]
pub struct SimWorkflow {
    pub id: String,
    pub description: Option<String>,
    /// Its tags (DescribeWorkflow).
    pub tags: BTreeMap<String, String>,
}

#[derive(Debug, Clone)]
pub struct SimStep {
    /// COPY, CUSTOM, TAG, DELETE, DECRYPT.
    pub step_type: &'static str,
    /// An error type of [`ERROR_TYPES`], `None` if the step succeeded.
    pub error: Option<&'static str>,
}

#[derive(Debug, Clone)]
pub struct SimTransferExecution {
    pub id: String,
    pub workflow_id: String,
    /// IN_PROGRESS, HANDLING_EXCEPTION (EXCEPTION, COMPLETED can be scripted too).
    pub status: &'static str,
    pub server_id: String,
    pub user: String,
    pub steps: Vec<SimStep>,
    pub on_exception_steps: Vec<SimStep>,
}

#[derive(Debug, Default)]
pub struct TransferWorld {
    pub workflows: BTreeMap<String, SimWorkflow>,
    pub executions: BTreeMap<String, SimTransferExecution>,
    /// Executions that finish right after being listed: the next DescribeExecution of one of
    /// them removes it and answers ResourceNotFoundException (the list/describe race).
    pub finish_before_describe: BTreeSet<String>,
    /// Caps every page at this many items, to exercise pagination.
    pub page_cap: Option<usize>,
}

impl TransferWorld {
    pub fn add_workflow(&mut self, id: &str, description: Option<&str>) -> String {
        self.workflows.insert(
            id.into(),
            SimWorkflow {
                id: id.into(),
                description: description.map(str::to_owned),
                tags: BTreeMap::new(),
            },
        );
        id.into()
    }

    /// TagResource (and UntagResource): the workflow's tags become `tags`.
    pub fn set_tags(&mut self, id: &str, tags: &[(&str, &str)]) {
        let wf = self.workflows.get_mut(id).expect("known workflow");
        wf.tags = super::tag_map(tags);
    }

    pub fn delete_workflow(&mut self, id: &str) {
        self.workflows.remove(id);
        self.executions.retain(|_, e| e.workflow_id != id);
    }

    /// Starts an execution of the workflow (as an upload on `server_id` would).
    pub fn start_execution(&mut self, workflow_id: &str, id: &str, server_id: &str) -> String {
        assert!(self.workflows.contains_key(workflow_id), "known workflow");
        self.executions.insert(
            id.into(),
            SimTransferExecution {
                id: id.into(),
                workflow_id: workflow_id.into(),
                status: "IN_PROGRESS",
                server_id: server_id.into(),
                user: "uploader".into(),
                steps: Vec::new(),
                on_exception_steps: Vec::new(),
            },
        );
        id.into()
    }

    fn execution(&mut self, id: &str) -> &mut SimTransferExecution {
        self.executions.get_mut(id).expect("known execution")
    }

    /// A step of the workflow completed successfully.
    pub fn step_ok(&mut self, id: &str, step_type: &'static str) {
        self.execution(id).steps.push(SimStep {
            step_type,
            error: None,
        });
    }

    /// A step failed: the execution starts handling the exception.
    pub fn step_failed(&mut self, id: &str, step_type: &'static str, error: &'static str) {
        let e = self.execution(id);
        e.steps.push(SimStep {
            step_type,
            error: Some(error),
        });
        e.status = "HANDLING_EXCEPTION";
    }

    /// An OnExceptionSteps step ran, failing with `error` if given.
    pub fn exception_step(
        &mut self,
        id: &str,
        step_type: &'static str,
        error: Option<&'static str>,
    ) {
        self.execution(id)
            .on_exception_steps
            .push(SimStep { step_type, error });
    }

    pub fn set_status(&mut self, id: &str, status: &'static str) {
        self.execution(id).status = status;
    }

    /// Deletes what a request names, just before it is answered: the execution a
    /// DescribeExecution asks for, the workflow a ListExecutions lists.
    pub fn delete_named(&mut self, operation: &str, input: &Value) {
        let arg = |key| input.get(key).and_then(Value::as_str).unwrap_or_default();
        match operation {
            "DescribeExecution" => {
                self.executions.remove(arg("ExecutionId"));
            }
            "ListExecutions" => self.delete_workflow(arg("WorkflowId")),
            _ => {}
        }
    }

    /// The execution ends: it leaves the in-progress list and can no longer be described.
    pub fn finish(&mut self, id: &str) {
        self.executions.remove(id);
    }
}

fn required<'a>(input: &'a Value, key: &str) -> Result<&'a str, ApiError> {
    input
        .get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::bad_request("ValidationException", format!("{key} is required")))
}

fn not_found(message: String) -> ApiError {
    ApiError::bad_request("ResourceNotFoundException", message)
}

fn steps_json(steps: &[SimStep]) -> Vec<Value> {
    steps
        .iter()
        .map(|s| {
            let mut v = json!({"StepType": s.step_type});
            if s.step_type == "TAG" && s.error.is_none() {
                v["Outputs"] = json!("{\"Tags\":[{\"Key\":\"scanned\",\"Value\":\"yes\"}]}");
            }
            if let Some(err) = s.error {
                v["Error"] =
                    json!({"Type": err, "Message": format!("{} step failed: {err}", s.step_type)});
            }
            v
        })
        .collect()
}

fn execution_common(e: &SimTransferExecution) -> Value {
    json!({
        "ExecutionId": e.id,
        "InitialFileLocation": {"S3FileLocation": {
            "Bucket": "incoming-files",
            "Key": format!("uploads/{}.csv", e.id),
            "Etag": "d41d8cd98f00b204e9800998ecf8427e",
        }},
        "ServiceMetadata": {"UserDetails": {
            "UserName": e.user,
            "ServerId": e.server_id,
            "SessionId": format!("session-{}", e.id),
        }},
        "Status": e.status,
    })
}

/// Answers one Transfer Family operation.
pub fn handle(w: &mut TransferWorld, operation: &str, input: &Value) -> Result<Value, ApiError> {
    match operation {
        "ListWorkflows" => {
            let all: Vec<&SimWorkflow> = w.workflows.values().collect();
            let (page, next) = paginate(&all, input, "MaxResults", "NextToken", 100, w.page_cap)?;
            let items: Vec<Value> = page
                .iter()
                .map(|wf| {
                    json!({
                        "WorkflowId": wf.id,
                        "Description": wf.description,
                        "Arn": format!("arn:aws:transfer:{REGION}:{ACCOUNT_ID}:workflow/{}", wf.id),
                    })
                })
                .collect();
            Ok(json!({"Workflows": items, "NextToken": next}))
        }
        "DescribeWorkflow" => {
            let id = required(input, "WorkflowId")?;
            let wf = w
                .workflows
                .get(id)
                .ok_or_else(|| not_found(format!("Unknown workflow {id}")))?;
            let tags: Vec<Value> = wf
                .tags
                .iter()
                .map(|(k, v)| json!({"Key": k, "Value": v}))
                .collect();
            Ok(json!({"Workflow": {
                "Arn": format!("arn:aws:transfer:{REGION}:{ACCOUNT_ID}:workflow/{id}"),
                "WorkflowId": id,
                "Description": wf.description,
                "Steps": [],
                "OnExceptionSteps": [],
                "Tags": tags,
            }}))
        }
        "ListExecutions" => {
            let wf = required(input, "WorkflowId")?;
            if !w.workflows.contains_key(wf) {
                return Err(not_found(format!("Unknown workflow {wf}")));
            }
            let all: Vec<&SimTransferExecution> = w
                .executions
                .values()
                .filter(|e| e.workflow_id == wf)
                .collect();
            let (page, next) = paginate(&all, input, "MaxResults", "NextToken", 100, w.page_cap)?;
            let items: Vec<Value> = page.iter().map(|e| execution_common(e)).collect();
            Ok(json!({"WorkflowId": wf, "Executions": items, "NextToken": next}))
        }
        "DescribeExecution" => {
            let wf = required(input, "WorkflowId")?;
            let id = required(input, "ExecutionId")?;
            if w.finish_before_describe.remove(id) {
                w.executions.remove(id);
            }
            let e = w
                .executions
                .get(id)
                .filter(|e| e.workflow_id == wf)
                .ok_or_else(|| not_found(format!("Unknown execution {id} of workflow {wf}")))?;
            let mut execution = execution_common(e);
            execution["ExecutionRole"] =
                json!(format!("arn:aws:iam::{ACCOUNT_ID}:role/transfer-workflow"));
            execution["LoggingConfiguration"] =
                json!({"LogGroupName": format!("/aws/transfer/{}", e.server_id)});
            execution["Results"] = json!({
                "Steps": steps_json(&e.steps),
                "OnExceptionSteps": steps_json(&e.on_exception_steps),
            });
            Ok(json!({"WorkflowId": wf, "Execution": execution}))
        }
        other => Err(ApiError::bad_request(
            "UnknownOperationException",
            format!("Transfer Family operation {other} is not simulated"),
        )),
    }
}
