//! Transfer Family workflow executions: ListWorkflows -> ListExecutions (in progress only) ->
//! DescribeExecution. Executions are seen while they run; one that leaves the in-progress
//! listing has finished. Which executions are described, and what is counted, is decided in
//! [`state`].

pub mod client;
pub mod config;
pub mod convert;
pub mod doctor;
pub mod metrics;
pub mod state;

use std::sync::Arc;

use crate::aws::Target;
use crate::error::AwsError;
use crate::exposition::hub::Snapshot;
use crate::services::source::{unix_now, BoxFuture, Progress, Source};
use crate::services::transfer_workflows::client::TransferClient;
use crate::services::transfer_workflows::config::Config;
use crate::services::transfer_workflows::state::TransferTracker;
use crate::tags::{TagCache, Wanted};

/// Share of the poll interval first reads of tags that selection depends on may wait for tokens.
const TAGS_SHARE_OF_INTERVAL: f64 = 0.5;

/// The source for one target.
pub fn build(target: Arc<Target>, config: &Config, _started_at: f64) -> Box<dyn Source> {
    Box::new(TransferWorkflows::new(target, config.clone()))
}

pub struct TransferWorkflows {
    target: Arc<Target>,
    config: Config,
    client: Option<TransferClient>,
    tracker: TransferTracker,
    /// The workflows' tags as last read (DescribeWorkflow).
    tags: TagCache,
}

impl TransferWorkflows {
    pub fn new(target: Arc<Target>, config: Config) -> Self {
        Self {
            target,
            config,
            client: None,
            tracker: TransferTracker::new(),
            tags: TagCache::default(),
        }
    }

    async fn poll_inner(
        &mut self,
        errors: &mut Vec<AwsError>,
        _progress: &dyn Progress,
    ) -> Result<(), AwsError> {
        let conn = self.target.connect().await?;
        if self.client.is_none() {
            self.client = Some(TransferClient::new(conn.clone()));
        }
        let client = self.client.as_ref().expect("client set above");

        // A failed ListWorkflows fails the poll and keeps every series as it was.
        let listed: Vec<_> = client
            .list_workflows()
            .await?
            .into_iter()
            // Listing is every replica's cost; only this replica's share is polled further.
            .filter(|w| conn.owns(&w.id))
            .collect();
        // Tags: of workflows only their tags can select, and of the selected ones when exported.
        let (selection, config) = (&self.config.workflows, &self.config.tags);
        let wanted: Vec<Wanted> = listed
            .iter()
            .filter_map(|w| config.wanted(selection, &w.description, &w.id, None))
            .collect();
        self.tags.keep_only(&wanted);
        let deadline =
            std::time::Instant::now() + self.config.poll_interval.mul_f64(TAGS_SHARE_OF_INTERVAL);
        let refresh = self.config.tags.refresh();
        crate::tags::read(&mut self.tags, &wanted, refresh, deadline, client, errors).await;
        let selected: Vec<_> = listed
            .into_iter()
            .filter(|w| selection.matches_tagged(&w.description, &w.id, self.tags.get(&w.id)))
            .collect();
        let ids: Vec<String> = selected.iter().map(|w| w.id.clone()).collect();
        self.tracker.observe_workflows(selected);

        // A workflow whose listing fails keeps its last values and detects no finish this poll,
        // so nothing is counted twice or early; the others are unaffected.
        for id in &ids {
            match client.list_executions(id).await {
                Ok(listed) => self.tracker.observe_executions(id, listed, unix_now()),
                Err(AwsError::NotFound { .. }) => {
                    tracing::info!(workflow_id = %id, "workflow deleted during the poll");
                    self.tracker.forget_workflow(id);
                }
                Err(e) => {
                    tracing::warn!(workflow_id = %id, error = %e, "listing workflow executions failed; keeping its last values");
                    errors.push(e);
                }
            }
        }

        for (workflow_id, execution_id) in self.tracker.to_describe() {
            match client.describe_execution(&workflow_id, &execution_id).await {
                Ok(obs) => self.tracker.apply_describe(&workflow_id, obs),
                // Finished between the listing and the describe: a normal race, not an error.
                Err(AwsError::NotFound { .. }) => {
                    self.tracker.describe_not_found(&workflow_id, &execution_id)
                }
                Err(e) => {
                    tracing::warn!(%workflow_id, %execution_id, error = %e, "describing workflow execution failed; retried next poll");
                    errors.push(e);
                }
            }
        }
        Ok(())
    }
}

impl Source for TransferWorkflows {
    fn name(&self) -> &'static str {
        "transfer_workflows"
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
        let tags = (&self.tags, &self.config.tags);
        metrics::render(&self.tracker, tags, &account_id, &region, &mut families);
        Snapshot {
            families,
            tracked: vec![
                ("workflow", self.tracker.tracked_workflows()),
                ("workflow_execution", self.tracker.tracked_executions()),
            ],
        }
    }
}
