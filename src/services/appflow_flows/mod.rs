//! AppFlow flow runs: ListFlows -> DescribeFlowExecutionRecords per selected flow, newest first,
//! reading only as many pages as the state store asks for (see [`state`]).

pub mod client;
pub mod config;
pub mod convert;
pub mod doctor;
pub mod metrics;
pub mod state;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::aws::{check_token, Connection};
use crate::clock::unix_now;
use crate::error::AwsError;
use crate::exposition::family::Family;
use crate::services::appflow_flows::client::{AppflowClient, DESCRIBE_FLOW_EXECUTION_RECORDS};
use crate::services::appflow_flows::config::Config;
use crate::services::appflow_flows::state::{AppflowTracker, LastRunDetails, RecordsDue};
use crate::services::source::{PollCx, RenderCx, Service};
use crate::tags::TagCache;

pub struct AppflowFlows {
    config: Config,
    tracker: AppflowTracker,
    /// The selected flows' tags, by flow name, from the last ListFlows.
    tags: TagCache,
}

impl Service for AppflowFlows {
    type Config = Config;
    type Client = AppflowClient;

    fn new(config: &Config, started_at: f64) -> Self {
        Self {
            config: config.clone(),
            tracker: AppflowTracker::new(started_at, config.retention.as_secs_f64()),
            tags: TagCache::default(),
        }
    }

    fn client(conn: Arc<Connection>) -> AppflowClient {
        AppflowClient::new(conn)
    }

    async fn poll(&mut self, client: &AppflowClient, cx: &mut PollCx<'_>) -> Result<(), AwsError> {
        self.poll_inner(client, cx).await
    }

    fn render(&self, cx: &RenderCx, out: &mut Vec<Family>) {
        metrics::render(&self.tracker, &cx.account_id, &cx.region, out);
        let tags = (&self.tags, &self.config.tags);
        metrics::render_info(tags, &cx.account_id, &cx.region, out);
    }

    fn tracked(&self) -> Vec<(&'static str, usize)> {
        vec![
            ("flow", self.tracker.flows().len()),
            ("flow_run", self.tracker.tracked_runs()),
        ]
    }
}

impl AppflowFlows {
    async fn poll_inner(
        &mut self,
        client: &AppflowClient,
        cx: &mut PollCx<'_>,
    ) -> Result<(), AwsError> {
        let now = unix_now();
        let mut tags = TagCache::default();
        let selected: BTreeMap<String, LastRunDetails> = client
            .list_flows()
            .await?
            .into_iter()
            // Listing is every replica's cost; only this replica's share is polled further.
            .filter(|f| {
                self.config
                    .flows
                    .matches_tagged(&f.name, &f.arn, Some(&f.tags))
                    && cx.conn.owns(&f.arn)
            })
            .map(|f| {
                tags.set(&f.name, f.tags, None, now);
                (f.name, f.last_run)
            })
            .collect();
        self.tags = tags;
        self.tracker
            .set_flows(&selected.keys().cloned().collect::<BTreeSet<_>>());

        let refresh = self.config.records_refresh.as_secs_f64();
        for (flow, details) in &selected {
            let Some(due) = self.tracker.records_due(flow, details, unix_now(), refresh) else {
                continue;
            };
            // A flow's records are applied only once its paging completed, so a failed page
            // leaves the flow as it was and nothing is counted twice on the next poll.
            let mut read = Vec::new();
            let mut token = None;
            let mut pages = 0;
            let mut seen = BTreeSet::new();
            let result = loop {
                match client.describe_runs_page(flow, token).await {
                    Ok((runs, next)) => {
                        pages += 1;
                        read.extend(runs);
                        match next {
                            Some(t) if self.tracker.wants_more(flow, &read, pages) => {
                                let op = DESCRIBE_FLOW_EXECUTION_RECORDS.name;
                                match check_token(op, &mut seen, t) {
                                    Ok(t) => token = Some(t),
                                    Err(e) => break Err(e),
                                }
                            }
                            Some(_) => break Ok(false),
                            None => break Ok(true),
                        }
                    }
                    Err(e) => break Err(e),
                }
            };
            match result {
                Ok(exhausted) => {
                    let now = unix_now();
                    let news = self.tracker.apply_runs(flow, read, exhausted, now);
                    if news && due == RecordsDue::Refresh {
                        tracing::info!(flow = %flow, "the scheduled re-read found runs ListFlows did not show");
                        self.tracker.refresh_caught();
                    }
                    self.tracker.records_read(flow, details.clone(), now);
                    cx.publish(self, false);
                }
                Err(AwsError::NotFound { .. }) => {
                    // Deleted between ListFlows and now: the next ListFlows drops it.
                    tracing::debug!(flow = %flow, "flow vanished while polling");
                }
                Err(e) => {
                    tracing::warn!(flow = %flow, error = %e, "reading flow runs failed; keeping its last values");
                    cx.errors.push(e);
                }
            }
        }
        self.tracker.expire(unix_now());
        Ok(())
    }
}
