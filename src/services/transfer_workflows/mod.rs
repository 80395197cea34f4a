//! Transfer Family workflow executions: ListWorkflows -> ListExecutions (in progress only) ->
//! DescribeExecution. Executions are seen while they run; one that leaves the in-progress
//! listing has finished. Which executions are described, and what is counted, is decided in
//! [`state`]. Workflows are listed every `discovery_interval` (see [`Rediscovery`]); a workflow
//! created in between is found at the next listing, and its executions that began and ended
//! before that are not seen, as with any execution shorter than a poll.

pub mod client;
pub mod config;
pub mod convert;
pub mod doctor;
pub mod metrics;
pub mod state;

use std::sync::Arc;

use crate::aws::Connection;
use crate::clock::unix_now;
use crate::error::AwsError;
use crate::exposition::family::Family;
use crate::services::source::{PollCx, Rediscovery, RenderCx, Service};
use crate::services::transfer_workflows::client::TransferClient;
use crate::services::transfer_workflows::config::Config;
use crate::services::transfer_workflows::state::{TransferTracker, WorkflowObs};
use crate::tags::{TagCache, Wanted};

/// Share of the poll interval first reads of tags that selection depends on may wait for tokens.
const TAGS_SHARE_OF_INTERVAL: f64 = 0.5;

pub struct TransferWorkflows {
    config: Config,
    tracker: TransferTracker,
    /// The workflows' tags as last read (DescribeWorkflow).
    tags: TagCache,
    /// The last ListWorkflows (this replica's share), used until the next one.
    listed: Vec<WorkflowObs>,
    /// When ListWorkflows runs again.
    discovery: Rediscovery,
}

impl Service for TransferWorkflows {
    type Config = Config;
    type Client = TransferClient;

    fn new(config: &Config, _started_at: f64) -> Self {
        Self {
            config: config.clone(),
            tracker: TransferTracker::new(),
            tags: TagCache::default(),
            listed: Vec::new(),
            discovery: Rediscovery::new(config.discovery_interval, config.poll_interval),
        }
    }

    fn client(conn: Arc<Connection>) -> TransferClient {
        TransferClient::new(conn)
    }

    async fn poll(&mut self, client: &TransferClient, cx: &mut PollCx<'_>) -> Result<(), AwsError> {
        self.poll_inner(client, cx).await
    }

    fn render(&self, cx: &RenderCx, out: &mut Vec<Family>) {
        let tags = (&self.tags, &self.config.tags);
        metrics::render(&self.tracker, tags, &cx.account_id, &cx.region, out);
    }

    fn tracked(&self) -> Vec<(&'static str, usize)> {
        vec![
            ("workflow", self.tracker.tracked_workflows()),
            ("workflow_execution", self.tracker.tracked_executions()),
        ]
    }
}

impl TransferWorkflows {
    async fn poll_inner(
        &mut self,
        client: &TransferClient,
        cx: &mut PollCx<'_>,
    ) -> Result<(), AwsError> {
        let now = std::time::Instant::now();
        if self.discovery.due(now) {
            // A failed ListWorkflows fails the poll and keeps every series as it was.
            self.listed = client
                .list_workflows()
                .await?
                .into_iter()
                // Listing is every replica's cost; only this replica's share is polled further.
                .filter(|w| cx.conn.owns(&w.id))
                .collect();
            self.discovery.listed(now, &cx.target.key());
        }
        self.select_workflows(client, cx).await;

        // A workflow whose listing fails keeps its last values and detects no finish this poll,
        // so nothing is counted twice or early; the others are unaffected.
        for id in &self.tracker.workflow_ids() {
            match client.list_executions(id).await {
                Ok(listed) => self.tracker.observe_executions(id, listed, unix_now()),
                Err(AwsError::NotFound { .. }) => {
                    tracing::info!(workflow_id = %id, "workflow deleted");
                    self.tracker.forget_workflow(id);
                    self.listed.retain(|w| w.id != *id);
                    self.discovery.relist();
                }
                Err(e) => {
                    tracing::warn!(workflow_id = %id, error = %e, "listing workflow executions failed; keeping its last values");
                    cx.errors.push(e);
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
                    cx.errors.push(e);
                }
            }
        }
        Ok(())
    }

    /// Reads the tags due of the listed workflows and applies the selection.
    async fn select_workflows(&mut self, client: &TransferClient, cx: &mut PollCx<'_>) {
        // A copy, not taken out of self: a poll ended at its deadline while the tags are read
        // must leave the listing for the next poll.
        let listed = self.listed.clone();
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
        crate::tags::read(
            &mut self.tags,
            &wanted,
            refresh,
            deadline,
            client,
            cx.errors,
        )
        .await;
        let selected: Vec<_> = listed
            .into_iter()
            .filter(|w| selection.matches_tagged(&w.description, &w.id, self.tags.get(&w.id)))
            .collect();
        self.tracker.observe_workflows(selected);
    }
}
