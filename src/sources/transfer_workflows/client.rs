//! The Transfer Family calls this source makes, over the SDK, each paying into the API budget.

use std::sync::Arc;

use super::convert;
use crate::aws::budget::Operation;
use crate::aws::Connection;
use crate::error::AwsError;
use crate::state::transfer::{DescribeObs, ListedExec, WorkflowObs};

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
        let op = Operation::TransferListWorkflows;
        let mut out = Vec::new();
        let mut token = None;
        loop {
            self.conn.budget.acquire(op).await;
            let page = self
                .sdk
                .list_workflows()
                .max_results(100)
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| AwsError::from_sdk(op.name(), e))?;
            out.extend(page.workflows().iter().filter_map(convert::workflow));
            token = page.next_token().map(str::to_owned);
            if token.is_none() {
                return Ok(out);
            }
        }
    }

    /// Every in-progress execution of the workflow (all pages), or an error: a partial listing is
    /// never returned, since finish detection needs the complete one.
    pub async fn list_executions(&self, workflow_id: &str) -> Result<Vec<ListedExec>, AwsError> {
        let op = Operation::TransferListExecutions;
        let mut out = Vec::new();
        let mut token = None;
        loop {
            self.conn.budget.acquire(op).await;
            let page = self
                .sdk
                .list_executions()
                .workflow_id(workflow_id)
                .max_results(100)
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| AwsError::from_sdk(op.name(), e))?;
            out.extend(
                page.executions()
                    .iter()
                    .filter_map(convert::listed_execution),
            );
            token = page.next_token().map(str::to_owned);
            if token.is_none() {
                return Ok(out);
            }
        }
    }

    pub async fn describe_execution(
        &self,
        workflow_id: &str,
        execution_id: &str,
    ) -> Result<DescribeObs, AwsError> {
        let op = Operation::TransferDescribeExecution;
        self.conn.budget.acquire(op).await;
        let out = self
            .sdk
            .describe_execution()
            .workflow_id(workflow_id)
            .execution_id(execution_id)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk(op.name(), e))?;
        convert::describe(&out).ok_or_else(|| AwsError::Other {
            operation: op.name(),
            message: format!("no execution in the answer for {execution_id}"),
        })
    }
}
