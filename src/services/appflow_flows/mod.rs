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

use crate::aws::{check_token, Target};
use crate::error::AwsError;
use crate::exposition::hub::Snapshot;
use crate::services::appflow_flows::client::{AppflowClient, DESCRIBE_FLOW_EXECUTION_RECORDS};
use crate::services::appflow_flows::config::Config;
use crate::services::appflow_flows::state::{AppflowTracker, LastRunDetails, RecordsDue};
use crate::services::source::{unix_now, BoxFuture, Progress, Source};
use crate::tags::TagCache;

/// The source for one target.
pub fn build(target: Arc<Target>, config: &Config, started_at: f64) -> Box<dyn Source> {
    Box::new(AppflowFlows::new(target, config.clone(), started_at))
}

pub struct AppflowFlows {
    target: Arc<Target>,
    config: Config,
    client: Option<AppflowClient>,
    tracker: AppflowTracker,
    /// The selected flows' tags, by flow name, from the last ListFlows.
    tags: TagCache,
}

impl AppflowFlows {
    pub fn new(target: Arc<Target>, config: Config, started_at: f64) -> Self {
        let tracker = AppflowTracker::new(started_at, config.retention.as_secs_f64());
        Self {
            target,
            config,
            client: None,
            tracker,
            tags: TagCache::default(),
        }
    }

    async fn poll_inner(
        &mut self,
        errors: &mut Vec<AwsError>,
        progress: &dyn Progress,
    ) -> Result<(), AwsError> {
        let conn = self.target.connect().await?;
        if self.client.is_none() {
            self.client = Some(AppflowClient::new(conn.clone()));
        }
        let client = self.client.as_ref().expect("client set above");

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
                    && conn.owns(&f.arn)
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
                    progress.publish(false, &mut || self.snapshot(unix_now()));
                }
                Err(AwsError::NotFound { .. }) => {
                    // Deleted between ListFlows and now: the next ListFlows drops it.
                    tracing::debug!(flow = %flow, "flow vanished while polling");
                }
                Err(e) => {
                    tracing::warn!(flow = %flow, error = %e, "reading flow runs failed; keeping its last values");
                    errors.push(e);
                }
            }
        }
        self.tracker.expire(unix_now());
        Ok(())
    }
}

impl Source for AppflowFlows {
    fn name(&self) -> &'static str {
        "appflow_flows"
    }

    fn target(&self) -> &Arc<Target> {
        &self.target
    }

    fn interval(&self) -> std::time::Duration {
        self.config.poll_interval
    }

    fn poll<'a>(
        &'a mut self,
        errors: &'a mut Vec<AwsError>,
        progress: &'a dyn Progress,
    ) -> BoxFuture<'a, Result<(), AwsError>> {
        Box::pin(self.poll_inner(errors, progress))
    }

    fn snapshot(&self, _now: f64) -> Snapshot {
        let (account_id, region) = self.target.labels();
        let mut families = Vec::new();
        metrics::render(&self.tracker, &account_id, &region, &mut families);
        let tags = (&self.tags, &self.config.tags);
        metrics::render_info(tags, &account_id, &region, &mut families);
        Snapshot {
            families,
            tracked: vec![
                ("flow", self.tracker.flows().len()),
                ("flow_run", self.tracker.tracked_runs()),
            ],
        }
    }
}
