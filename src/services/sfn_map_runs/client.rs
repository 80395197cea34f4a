//! The Step Functions calls this source makes, over the SDK, each paying into the API budget.

use std::sync::Arc;

use aws_sdk_sfn::operation::list_executions::ListExecutionsOutput;
use aws_sdk_sfn::operation::list_map_runs::ListMapRunsOutput;
use aws_sdk_sfn::operation::list_state_machines::ListStateMachinesOutput;
use aws_sdk_sfn::types::{ExecutionStatus, StateMachineType};

use crate::aws::operation::{AwsBucket, Operation};
use crate::aws::Connection;
use crate::error::AwsError;
use crate::services::sfn_map_runs::convert;
use crate::services::sfn_map_runs::state::{ExecutionObs, MapRunObs};

/// The Step Functions operations this source calls; buckets from AWS service quotas.
pub const OPERATIONS: &[Operation] = &[
    LIST_STATE_MACHINES,
    LIST_EXECUTIONS,
    LIST_MAP_RUNS,
    DESCRIBE_MAP_RUN,
];
const fn op(name: &'static str, iam_action: &'static str, bucket: AwsBucket) -> Operation {
    Operation {
        service: "sfn",
        name,
        iam_action: Some(iam_action),
        bucket,
    }
}
pub const LIST_STATE_MACHINES: Operation = op(
    "ListStateMachines",
    "states:ListStateMachines",
    AwsBucket::flat(100.0, 5.0),
);
pub const LIST_EXECUTIONS: Operation = op(
    "ListExecutions",
    "states:ListExecutions",
    AwsBucket {
        size: 100.0,
        refill_per_sec: 2.0,
        big_regions: Some((200.0, 5.0)),
    },
);
pub const LIST_MAP_RUNS: Operation = op(
    "ListMapRuns",
    "states:ListMapRuns",
    AwsBucket::flat(100.0, 1.0),
);
pub const DESCRIBE_MAP_RUN: Operation = op(
    "DescribeMapRun",
    "states:DescribeMapRun",
    AwsBucket::flat(200.0, 1.0),
);

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
        let fetch = |token| {
            self.sdk
                .list_state_machines()
                .max_results(1000)
                .set_next_token(token)
                .send()
        };
        let take = |page: ListStateMachinesOutput, out: &mut Vec<StateMachine>| {
            out.extend(page.state_machines().iter().map(|sm| StateMachine {
                arn: sm.state_machine_arn().to_owned(),
                name: sm.name().to_owned(),
                standard: *sm.r#type() != StateMachineType::Express,
            }));
            page.next_token
        };
        self.conn.pages(LIST_STATE_MACHINES, fetch, take).await
    }

    /// RUNNING executions when `running_only`; otherwise all executions, newest first, stopping
    /// once a page reaches executions started before `started_after`.
    pub async fn list_executions(
        &self,
        state_machine_arn: &str,
        running_only: bool,
        started_after: f64,
    ) -> Result<Vec<ExecutionObs>, AwsError> {
        let fetch = |token| {
            self.sdk
                .list_executions()
                .state_machine_arn(state_machine_arn)
                .max_results(1000)
                .set_next_token(token)
                .set_status_filter(running_only.then_some(ExecutionStatus::Running))
                .send()
        };
        let take = |page: ListExecutionsOutput, out: &mut Vec<ExecutionObs>| {
            let mut past_window = false;
            for obs in page.executions().iter().map(convert::execution) {
                if !running_only && obs.start < started_after {
                    past_window = true;
                } else {
                    out.push(obs);
                }
            }
            page.next_token.filter(|_| !past_window)
        };
        self.conn.pages(LIST_EXECUTIONS, fetch, take).await
    }

    pub async fn list_map_runs(&self, execution_arn: &str) -> Result<Vec<String>, AwsError> {
        let fetch = |token| {
            self.sdk
                .list_map_runs()
                .execution_arn(execution_arn)
                .max_results(1000)
                .set_next_token(token)
                .send()
        };
        let take = |page: ListMapRunsOutput, out: &mut Vec<String>| {
            out.extend(page.map_runs().iter().map(|r| r.map_run_arn().to_owned()));
            page.next_token
        };
        self.conn.pages(LIST_MAP_RUNS, fetch, take).await
    }

    pub async fn describe_map_run(&self, map_run_arn: &str) -> Result<MapRunObs, AwsError> {
        let request = self.sdk.describe_map_run().map_run_arn(map_run_arn).send();
        let out = self.conn.call(DESCRIBE_MAP_RUN, request).await?;
        Ok(convert::map_run(&out))
    }
}
