//! The Transfer Family calls this source makes, over the SDK, each paying into the API budget.

use std::sync::Arc;

use aws_sdk_transfer::operation::list_executions::ListExecutionsOutput;
use aws_sdk_transfer::operation::list_workflows::ListWorkflowsOutput;

use crate::aws::operation::{AwsBucket, Operation};
use crate::aws::Connection;
use crate::error::AwsError;
use crate::services::transfer_workflows::convert;
use crate::services::transfer_workflows::state::{DescribeObs, ListedExec, WorkflowObs};

/// The Transfer Family operations this source calls. AWS publishes no rate quota for them, so the
/// buckets are conservative guesses and ThrottlingException stays the real signal.
pub const OPERATIONS: &[Operation] = &[
    LIST_WORKFLOWS,
    LIST_EXECUTIONS,
    DESCRIBE_EXECUTION,
    DESCRIBE_WORKFLOW,
];
const fn op(name: &'static str, iam_action: &'static str) -> Operation {
    Operation {
        service: "transfer",
        name,
        iam_action: Some(iam_action),
        bucket: AwsBucket::flat(20.0, 5.0),
    }
}
pub const LIST_WORKFLOWS: Operation = op("ListWorkflows", "transfer:ListWorkflows");
pub const LIST_EXECUTIONS: Operation = op("ListExecutions", "transfer:ListExecutions");
pub const DESCRIBE_EXECUTION: Operation = op("DescribeExecution", "transfer:DescribeExecution");
/// A workflow's tags (ListWorkflows has none): called only when tags are exported or select,
/// once per workflow and then at `tags.refresh` with spare tokens.
pub const DESCRIBE_WORKFLOW: Operation = op("DescribeWorkflow", "transfer:DescribeWorkflow");

impl crate::tags::ReadTags for TransferClient {
    const OPERATION: Operation = DESCRIBE_WORKFLOW;

    fn connection(&self) -> &Connection {
        &self.conn
    }

    fn read_tags<'a>(
        &'a self,
        id: &'a str,
    ) -> crate::services::source::BoxFuture<'a, Result<crate::config::selection::Tags, AwsError>>
    {
        Box::pin(self.tags(id))
    }
}

pub struct TransferClient {
    sdk: aws_sdk_transfer::Client,
    conn: Arc<Connection>,
}

impl TransferClient {
    pub fn new(conn: Arc<Connection>) -> Self {
        let sdk = aws_sdk_transfer::Client::from_conf(
            aws_sdk_transfer::config::Builder::from(&conn.sdk_config)
                .interceptor(conn.instrumentation.clone())
                .build(),
        );
        Self { sdk, conn }
    }

    pub async fn list_workflows(&self) -> Result<Vec<WorkflowObs>, AwsError> {
        let fetch = |token| {
            self.sdk
                .list_workflows()
                .max_results(100)
                .set_next_token(token)
                .send()
        };
        let take = |page: ListWorkflowsOutput, out: &mut Vec<WorkflowObs>| {
            out.extend(page.workflows().iter().filter_map(convert::workflow));
            page.next_token
        };
        self.conn.pages(LIST_WORKFLOWS, fetch, take).await
    }

    /// Every in-progress execution of the workflow (all pages), or an error: a partial listing is
    /// never returned, since finish detection needs the complete one.
    pub async fn list_executions(&self, workflow_id: &str) -> Result<Vec<ListedExec>, AwsError> {
        let fetch = |token| {
            self.sdk
                .list_executions()
                .workflow_id(workflow_id)
                .max_results(100)
                .set_next_token(token)
                .send()
        };
        let take = |page: ListExecutionsOutput, out: &mut Vec<ListedExec>| {
            out.extend(
                page.executions()
                    .iter()
                    .filter_map(convert::listed_execution),
            );
            page.next_token
        };
        self.conn.pages(LIST_EXECUTIONS, fetch, take).await
    }

    /// A workflow's tags (DescribeWorkflow).
    pub async fn tags(
        &self,
        workflow_id: &str,
    ) -> Result<crate::config::selection::Tags, AwsError> {
        let request = || self.sdk.describe_workflow().workflow_id(workflow_id).send();
        let out = self.conn.call(DESCRIBE_WORKFLOW, request).await?;
        Ok(out
            .workflow()
            .map(|w| w.tags())
            .unwrap_or_default()
            .iter()
            .map(|t| (t.key().to_owned(), t.value().to_owned()))
            .collect())
    }

    pub async fn describe_execution(
        &self,
        workflow_id: &str,
        execution_id: &str,
    ) -> Result<DescribeObs, AwsError> {
        let op = DESCRIBE_EXECUTION;
        let request = || {
            self.sdk
                .describe_execution()
                .workflow_id(workflow_id)
                .execution_id(execution_id)
                .send()
        };
        let out = self.conn.call(op, request).await?;
        convert::describe(&out).ok_or_else(|| AwsError::Other {
            operation: op.name,
            message: format!("no execution in the answer for {execution_id}"),
        })
    }
}
