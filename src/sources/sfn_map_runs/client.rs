//! The Step Functions calls this source makes, over the SDK, each paying into the API budget.

use std::sync::Arc;

use aws_sdk_sfn::types::{ExecutionStatus, StateMachineType};

use super::convert;
use crate::aws::budget::Operation;
use crate::aws::Connection;
use crate::error::AwsError;
use crate::state::map_runs::{ExecutionObs, MapRunObs};

#[derive(Debug, Clone)]
pub struct StateMachine {
    pub arn: String,
    pub name: String,
    /// Only STANDARD state machines have map runs; EXPRESS ones reject ListExecutions.
    pub standard: bool,
}

pub struct SfnClient {
    sdk: aws_sdk_sfn::Client,
    conn: Arc<Connection>,
}

impl SfnClient {
    pub fn new(conn: Arc<Connection>) -> Self {
        let sdk = aws_sdk_sfn::Client::from_conf(
            aws_sdk_sfn::config::Builder::from(&conn.sdk_config)
                .interceptor(conn.instrumentation.clone())
                .build(),
        );
        Self { sdk, conn }
    }

    pub async fn list_state_machines(&self) -> Result<Vec<StateMachine>, AwsError> {
        let op = Operation::SfnListStateMachines;
        let mut out = Vec::new();
        let mut token = None;
        loop {
            self.conn.budget.acquire(op).await;
            let page = self
                .sdk
                .list_state_machines()
                .max_results(1000)
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| AwsError::from_sdk(op.name(), e))?;
            out.extend(page.state_machines().iter().map(|sm| StateMachine {
                arn: sm.state_machine_arn().to_owned(),
                name: sm.name().to_owned(),
                standard: *sm.r#type() != StateMachineType::Express,
            }));
            token = page.next_token().map(str::to_owned);
            if token.is_none() {
                return Ok(out);
            }
        }
    }

    /// RUNNING executions when `running_only`; otherwise all executions, newest first, stopping
    /// once a page reaches executions started before `started_after`.
    pub async fn list_executions(
        &self,
        state_machine_arn: &str,
        running_only: bool,
        started_after: f64,
    ) -> Result<Vec<ExecutionObs>, AwsError> {
        let op = Operation::SfnListExecutions;
        let mut out = Vec::new();
        let mut token = None;
        loop {
            self.conn.budget.acquire(op).await;
            let mut req = self
                .sdk
                .list_executions()
                .state_machine_arn(state_machine_arn)
                .max_results(1000)
                .set_next_token(token);
            if running_only {
                req = req.status_filter(ExecutionStatus::Running);
            }
            let page = req
                .send()
                .await
                .map_err(|e| AwsError::from_sdk(op.name(), e))?;
            let mut past_window = false;
            for item in page.executions() {
                let obs = convert::execution(item);
                if !running_only && obs.start < started_after {
                    past_window = true;
                    continue;
                }
                out.push(obs);
            }
            token = page.next_token().map(str::to_owned);
            if token.is_none() || past_window {
                return Ok(out);
            }
        }
    }

    pub async fn list_map_runs(&self, execution_arn: &str) -> Result<Vec<String>, AwsError> {
        let op = Operation::SfnListMapRuns;
        let mut out = Vec::new();
        let mut token = None;
        loop {
            self.conn.budget.acquire(op).await;
            let page = self
                .sdk
                .list_map_runs()
                .execution_arn(execution_arn)
                .max_results(1000)
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| AwsError::from_sdk(op.name(), e))?;
            out.extend(page.map_runs().iter().map(|r| r.map_run_arn().to_owned()));
            token = page.next_token().map(str::to_owned);
            if token.is_none() {
                return Ok(out);
            }
        }
    }

    pub async fn describe_map_run(&self, map_run_arn: &str) -> Result<MapRunObs, AwsError> {
        let op = Operation::SfnDescribeMapRun;
        self.conn.budget.acquire(op).await;
        let out = self
            .sdk
            .describe_map_run()
            .map_run_arn(map_run_arn)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk(op.name(), e))?;
        Ok(convert::map_run(&out))
    }
}
