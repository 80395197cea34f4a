//! The AppFlow calls this source makes, over the SDK, each paying into the API budget.

use std::sync::Arc;

use aws_sdk_appflow::operation::list_flows::ListFlowsOutput;
use aws_sdk_appflow::types::FlowStatus;

use crate::aws::operation::{AwsBucket, Operation};
use crate::aws::Connection;
use crate::error::AwsError;
use crate::services::appflow_flows::convert;
use crate::services::appflow_flows::state::{LastRunDetails, RunObs};

/// The AppFlow operations this source calls. AWS publishes no rate quota for them, so the
/// buckets are conservative guesses and ThrottlingException stays the real signal.
pub const OPERATIONS: &[Operation] = &[LIST_FLOWS, DESCRIBE_FLOW_EXECUTION_RECORDS];
const fn op(name: &'static str, iam_action: &'static str) -> Operation {
    Operation {
        service: "appflow",
        name,
        iam_action: Some(iam_action),
        bucket: AwsBucket::flat(20.0, 5.0),
    }
}
pub const LIST_FLOWS: Operation = op("ListFlows", "appflow:ListFlows");
pub const DESCRIBE_FLOW_EXECUTION_RECORDS: Operation = op(
    "DescribeFlowExecutionRecords",
    "appflow:DescribeFlowExecutionRecords",
);

/// Records per DescribeFlowExecutionRecords page (the API's maximum).
pub const PAGE_SIZE: i32 = 100;

#[derive(Debug, Clone)]
pub struct Flow {
    pub name: String,
    pub arn: String,
    pub last_run: LastRunDetails,
    /// The flow's tags, as ListFlows returns them.
    pub tags: crate::config::selection::Tags,
}

pub struct AppflowClient {
    sdk: aws_sdk_appflow::Client,
    conn: Arc<Connection>,
}

impl AppflowClient {
    pub fn new(conn: Arc<Connection>) -> Self {
        let sdk = aws_sdk_appflow::Client::from_conf(
            aws_sdk_appflow::config::Builder::from(&conn.sdk_config)
                .interceptor(conn.instrumentation.clone())
                .build(),
        );
        Self { sdk, conn }
    }

    /// Every flow of the account and region except deleted ones.
    pub async fn list_flows(&self) -> Result<Vec<Flow>, AwsError> {
        let fetch = |token| {
            self.sdk
                .list_flows()
                .max_results(100)
                .set_next_token(token)
                .send()
        };
        let take = |page: ListFlowsOutput, out: &mut Vec<Flow>| {
            let live = page
                .flows()
                .iter()
                .filter(|f| f.flow_status() != Some(&FlowStatus::Deleted));
            out.extend(live.filter_map(|f| {
                Some(Flow {
                    name: f.flow_name()?.to_owned(),
                    arn: f.flow_arn().unwrap_or_default().to_owned(),
                    last_run: convert::last_run(f.last_run_execution_details()),
                    tags: f
                        .tags()
                        .map(|t| t.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                        .unwrap_or_default(),
                })
            }));
            page.next_token
        };
        self.conn.pages(LIST_FLOWS, fetch, take).await
    }

    /// One page of a flow's runs, newest first, and the token of the next page.
    pub async fn describe_runs_page(
        &self,
        flow_name: &str,
        token: Option<String>,
    ) -> Result<(Vec<RunObs>, Option<String>), AwsError> {
        let request = || {
            self.sdk
                .describe_flow_execution_records()
                .flow_name(flow_name)
                .max_results(PAGE_SIZE)
                .set_next_token(token.clone())
                .send()
        };
        let page = self
            .conn
            .call(DESCRIBE_FLOW_EXECUTION_RECORDS, request)
            .await?;
        let runs = page
            .flow_executions()
            .iter()
            .filter_map(convert::run)
            .collect();
        Ok((runs, page.next_token().map(str::to_owned)))
    }
}
