//! The Step Functions calls this source makes, over the SDK, each paying into the API budget.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_sfn::operation::get_execution_history::GetExecutionHistoryOutput;
use aws_sdk_sfn::operation::list_executions::ListExecutionsOutput;
use aws_sdk_sfn::operation::list_map_runs::ListMapRunsOutput;
use aws_sdk_sfn::operation::list_state_machine_versions::ListStateMachineVersionsOutput;
use aws_sdk_sfn::operation::list_state_machines::ListStateMachinesOutput;
use aws_sdk_sfn::types::{ExecutionRedriveFilter, ExecutionStatus, StateMachineType};

use crate::aws::operation::{AwsBucket, Operation};
use crate::aws::{unfinished, Connection, Pace};
use crate::error::AwsError;
use crate::services::sfn_map_runs::convert;
use crate::services::sfn_map_runs::obs::{ExecutionEvents, ExecutionObs, MapRunObs};

/// Pages of 1,000 events one read of an execution's events goes back at most; an execution
/// with more new events than that has its map runs listed instead (ListMapRuns).
pub const MAX_EVENT_PAGES: usize = 3;

/// The Step Functions operations this source calls; buckets from AWS service quotas.
pub const OPERATIONS: &[Operation] = &[
    LIST_STATE_MACHINES,
    DESCRIBE_STATE_MACHINE,
    LIST_STATE_MACHINE_VERSIONS,
    LIST_EXECUTIONS,
    GET_EXECUTION_HISTORY,
    LIST_MAP_RUNS,
    DESCRIBE_MAP_RUN,
    LIST_TAGS_FOR_RESOURCE,
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
pub const DESCRIBE_STATE_MACHINE: Operation = op(
    "DescribeStateMachine",
    "states:DescribeStateMachine",
    AwsBucket::flat(200.0, 20.0),
);
/// Not in AWS's published quota table: sized like ListStateMachines, a control-plane list. Called
/// only for state machines whose latest definition has no Distributed Map, at `definition_refresh`.
pub const LIST_STATE_MACHINE_VERSIONS: Operation = op(
    "ListStateMachineVersions",
    "states:ListStateMachineVersions",
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
pub const GET_EXECUTION_HISTORY: Operation = op(
    "GetExecutionHistory",
    "states:GetExecutionHistory",
    AwsBucket::flat(400.0, 20.0),
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

/// A state machine's tags: called only when tags are exported or select, once per state machine
/// and then at `tags.refresh` with spare tokens.
pub const LIST_TAGS_FOR_RESOURCE: Operation = op(
    "ListTagsForResource",
    "states:ListTagsForResource",
    AwsBucket::flat(100.0, 1.0),
);

#[derive(Debug, Clone)]
pub struct StateMachine {
    pub arn: String,
    pub name: String,
    pub created: f64,
    /// Only STANDARD state machines have map runs; EXPRESS ones reject ListExecutions.
    pub standard: bool,
}

/// Which executions of a state machine to list.
#[derive(Debug, Clone, Copy)]
pub enum Executions {
    /// `statusFilter=RUNNING`, every page.
    Running,
    /// Newest first, stopping at the first page that reaches executions started before this.
    StartedSince(f64),
    /// `redriveFilter=REDRIVEN`, every page.
    Redriven,
}

impl crate::tags::ReadTags for SfnClient {
    const OPERATION: Operation = LIST_TAGS_FOR_RESOURCE;

    fn connection(&self) -> &Connection {
        &self.conn
    }

    fn read_tags<'a>(
        &'a self,
        arn: &'a str,
    ) -> crate::services::source::BoxFuture<'a, Result<crate::config::selection::Tags, AwsError>>
    {
        Box::pin(self.tags(arn))
    }
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

    /// Whether this replica polls `arn` (see `Connection::owns`).
    pub fn owns(&self, arn: &str) -> bool {
        self.conn.owns(arn)
    }

    /// How long until `op` has a token to spare beyond `keep` (see [`crate::aws::budget::ApiBudget::time_until_spare`]).
    pub fn time_until_spare(&self, op: Operation, keep: f64) -> Duration {
        self.conn.budget.time_until_spare(op, keep)
    }

    /// The exporter's calls per second for `op`.
    pub fn rate(&self, op: Operation) -> f64 {
        self.conn.budget.refill_per_sec(op)
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
                created: convert::secs(sm.creation_date()),
                standard: *sm.r#type() != StateMachineType::Express,
            }));
            page.next_token
        };
        self.conn.pages(LIST_STATE_MACHINES, fetch, take).await
    }

    /// The ARNs of a state machine's published versions, newest first.
    pub async fn list_versions(&self, arn: &str) -> Result<Vec<String>, AwsError> {
        let fetch = |token| {
            self.sdk
                .list_state_machine_versions()
                .state_machine_arn(arn)
                .max_results(1000)
                .set_next_token(token)
                .send()
        };
        let take = |page: ListStateMachineVersionsOutput, out: &mut Vec<String>| {
            out.extend(
                page.state_machine_versions()
                    .iter()
                    .map(|v| v.state_machine_version_arn().to_owned()),
            );
            page.next_token
        };
        self.conn
            .pages(LIST_STATE_MACHINE_VERSIONS, fetch, take)
            .await
    }

    /// Whether the state machine's (or version's) definition has a Map state in DISTRIBUTED mode.
    pub async fn has_distributed_map(&self, arn: &str) -> Result<bool, AwsError> {
        let out = self
            .conn
            .call(DESCRIBE_STATE_MACHINE, || {
                self.sdk
                    .describe_state_machine()
                    .state_machine_arn(arn)
                    .send()
            })
            .await?;
        Ok(convert::has_distributed_map(out.definition()).unwrap_or_else(|e| {
            // Unreadable: list it, as every state machine was listed before definitions were read.
            tracing::warn!(state_machine = %arn, error = %e, "cannot read the state machine definition; treating it as having a Distributed Map");
            true
        }))
    }

    pub async fn list_executions(
        &self,
        state_machine_arn: &str,
        which: Executions,
    ) -> Result<Vec<ExecutionObs>, AwsError> {
        // Only a paced listing stops at a deadline.
        self.list_executions_paced(state_machine_arn, which, None)
            .await?
            .ok_or_else(|| unfinished(LIST_EXECUTIONS.name))
    }

    /// As [`Self::list_executions`]; with `pace`, every page waits for a spare token and the
    /// listing stops unfinished (`None`) at its deadline.
    pub async fn list_executions_paced(
        &self,
        state_machine_arn: &str,
        which: Executions,
        pace: Option<Pace>,
    ) -> Result<Option<Vec<ExecutionObs>>, AwsError> {
        let fetch = |token| {
            let request = self
                .sdk
                .list_executions()
                .state_machine_arn(state_machine_arn)
                .max_results(1000)
                .set_next_token(token);
            match which {
                Executions::Running => request.status_filter(ExecutionStatus::Running),
                Executions::Redriven => request.redrive_filter(ExecutionRedriveFilter::Redriven),
                Executions::StartedSince(_) => request,
            }
            .send()
        };
        let take = |page: ListExecutionsOutput, out: &mut Vec<ExecutionObs>| {
            let mut past = false;
            for obs in page.executions().iter().map(convert::execution) {
                match which {
                    Executions::StartedSince(since) if obs.start < since => past = true,
                    _ => out.push(obs),
                }
            }
            page.next_token.filter(|_| !past)
        };
        match pace {
            Some(pace) => {
                self.conn
                    .pages_paced(LIST_EXECUTIONS, pace, fetch, take)
                    .await
            }
            None => self
                .conn
                .pages(LIST_EXECUTIONS, fetch, take)
                .await
                .map(Some),
        }
    }

    /// The map run events of an execution newer than event `after` (0: all), newest first
    /// (`reverseOrder`, no execution data), at most [`MAX_EVENT_PAGES`] pages.
    pub async fn execution_events(
        &self,
        execution_arn: &str,
        after: i64,
    ) -> Result<ExecutionEvents, AwsError> {
        let fetch = |token| {
            self.sdk
                .get_execution_history()
                .execution_arn(execution_arn)
                .reverse_order(true)
                .include_execution_data(false)
                .max_results(1000)
                .set_next_token(token)
                .send()
        };
        let mut events = ExecutionEvents::default();
        let mut pages = 0;
        let take = |page: GetExecutionHistoryOutput, _: &mut Vec<()>| {
            pages += 1;
            let reached = convert::execution_events(page.events(), after, &mut events);
            match page.next_token {
                Some(next) if !reached && pages < MAX_EVENT_PAGES => Some(next),
                Some(_) if !reached => None,
                _ => {
                    events.complete = true;
                    None
                }
            }
        };
        self.conn.pages(GET_EXECUTION_HISTORY, fetch, take).await?;
        Ok(events)
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

    /// A state machine's tags.
    pub async fn tags(&self, arn: &str) -> Result<crate::config::selection::Tags, AwsError> {
        let out = self
            .conn
            .call(LIST_TAGS_FOR_RESOURCE, || {
                self.sdk.list_tags_for_resource().resource_arn(arn).send()
            })
            .await?;
        Ok(out
            .tags()
            .iter()
            .filter_map(|t| Some((t.key()?.to_owned(), t.value()?.to_owned())))
            .collect())
    }

    pub async fn describe_map_run(&self, map_run_arn: &str) -> Result<MapRunObs, AwsError> {
        let out = self
            .conn
            .call(DESCRIBE_MAP_RUN, || {
                self.sdk.describe_map_run().map_run_arn(map_run_arn).send()
            })
            .await?;
        Ok(convert::map_run(&out))
    }
}
