//! Step Functions Distributed Map Runs: ListStateMachines -> ListExecutions -> ListMapRuns -> DescribeMapRun.

pub mod client;
pub mod config;
pub mod convert;
pub mod metrics;
pub mod state;

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::aws::Target;
use crate::error::AwsError;
use crate::exposition::hub::Snapshot;
use crate::services::sfn_map_runs::client::SfnClient;
use crate::services::sfn_map_runs::config::Config;
use crate::services::sfn_map_runs::state::MapRunTracker;
use crate::services::source::{unix_now, BoxFuture, Source};

/// The source for one target.
pub fn build(target: Arc<Target>, config: &Config, started_at: f64) -> Box<dyn Source> {
    Box::new(SfnMapRuns::new(target, config.clone(), started_at))
}

pub struct SfnMapRuns {
    target: Arc<Target>,
    config: Config,
    client: Option<SfnClient>,
    tracker: MapRunTracker,
}

impl SfnMapRuns {
    pub fn new(target: Arc<Target>, config: Config, started_at: f64) -> Self {
        let tracker = MapRunTracker::new(started_at, config.retention.as_secs_f64());
        Self {
            target,
            config,
            client: None,
            tracker,
        }
    }

    async fn poll_inner(&mut self, errors: &mut Vec<AwsError>) -> Result<(), AwsError> {
        let conn = self.target.connect().await?;
        if self.client.is_none() {
            self.client = Some(SfnClient::new(conn.clone()));
        }
        let client = self.client.as_ref().expect("client set above");
        let now = unix_now();
        let window_start = now - self.config.lookback.as_secs_f64();

        let selected: Vec<_> = client
            .list_state_machines()
            .await?
            .into_iter()
            // Listing is every replica's cost; only this replica's share is polled further.
            .filter(|sm| {
                sm.standard
                    && self.config.state_machines.matches(&sm.name, &sm.arn)
                    && conn.owns(&sm.arn)
            })
            .collect();
        self.tracker.retain_state_machines(
            &selected
                .iter()
                .map(|sm| sm.arn.clone())
                .collect::<BTreeSet<_>>(),
        );

        for sm in &selected {
            let running = client.list_executions(&sm.arn, true, window_start).await;
            let recent = client.list_executions(&sm.arn, false, window_start).await;
            let complete = running.is_ok();
            let mut listed = Vec::new();
            for result in [running, recent] {
                match result {
                    Ok(list) => listed.extend(list),
                    Err(e) => {
                        tracing::warn!(state_machine = %sm.name, error = %e, "listing executions failed");
                        errors.push(e);
                    }
                }
            }
            self.tracker
                .observe_executions(&sm.arn, listed, complete, now);
        }

        for execution_arn in self.tracker.executions_to_list() {
            match client.list_map_runs(&execution_arn).await {
                Ok(runs) => self.tracker.record_map_runs(&execution_arn, runs),
                Err(e) => {
                    tracing::warn!(execution = %execution_arn, error = %e, "listing map runs failed");
                    errors.push(e);
                }
            }
        }

        for map_run_arn in self.tracker.runs_to_describe() {
            match client.describe_map_run(&map_run_arn).await {
                Ok(obs) => self.tracker.apply_describe(obs, unix_now()),
                Err(AwsError::NotFound { .. }) => self.tracker.forget_run(&map_run_arn),
                Err(e) => {
                    tracing::warn!(map_run = %map_run_arn, error = %e, "describing map run failed; keeping its last values");
                    errors.push(e);
                }
            }
        }
        self.tracker.expire(unix_now());
        Ok(())
    }
}

impl Source for SfnMapRuns {
    fn name(&self) -> &'static str {
        "sfn_map_runs"
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
    ) -> BoxFuture<'a, Result<(), AwsError>> {
        Box::pin(self.poll_inner(errors))
    }

    fn snapshot(&self, now: f64) -> Snapshot {
        let (account_id, region) = self.target.labels();
        let mut families = Vec::new();
        metrics::render(&self.tracker, &account_id, &region, now, &mut families);
        Snapshot {
            families,
            tracked: vec![
                ("execution", self.tracker.tracked_executions()),
                ("map_run", self.tracker.tracked_map_runs()),
            ],
        }
    }
}
