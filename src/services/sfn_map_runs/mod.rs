//! Step Functions Distributed Map Runs: ListStateMachines (+ DescribeStateMachine, cached) ->
//! ListExecutions of state machines with a Distributed Map -> the executions' map runs ->
//! DescribeMapRun.
//!
//! An execution's map runs are found in its history (GetExecutionHistory newest first, down to
//! the last event read: 20 calls/s against ListMapRuns' 1/s); its MapRunSucceeded/Failed/Aborted
//! and MapRunRedriven events also say which runs to describe again. ListMapRuns is the fallback
//! when the history is denied or has more new events than [`client::MAX_EVENT_PAGES`] pages.
//!
//! A poll does the open work first and publishes it as it goes: running executions, final
//! describes and redriven runs, then the executions' map runs interleaved with refreshes of the
//! open runs in the order that serves the alerts. All of it stops at the poll's deadline and
//! continues at the next poll where it stopped (executions least lately read first), so a poll
//! that finds more work than its interval allows yields instead of failing. Then, until the
//! deadline, it reads history in the background (runs that finished before the exporter
//! started, within `lookback`) newest first, with budget tokens open work does not need. Which
//! calls are needed is decided in [`plan`]; the poll itself is in [`poll`].
//!
//! Words: *history* is what finished before the exporter started (within `lookback`), found by
//! a state machine's first listing ([`obs::Listing::Lookback`]) and read in the background
//! (the backfill); an execution's *events* are what GetExecutionHistory returns.

pub mod client;
pub mod config;
pub mod convert;
pub mod doctor;
#[cfg(test)]
mod fixtures;
pub mod metrics;
pub mod obs;
pub mod plan;
mod poll;
pub mod tracker;

use std::sync::Arc;
use std::time::Instant;

use crate::aws::Connection;
use crate::error::AwsError;
use crate::exposition::family::Family;
use crate::services::sfn_map_runs::client::{SfnClient, StateMachine};
use crate::services::sfn_map_runs::config::Config;
use crate::services::sfn_map_runs::metrics::RunSeriesCache;
use crate::services::sfn_map_runs::plan::Backlog;
use crate::services::sfn_map_runs::tracker::MapRunTracker;
use crate::services::source::{PollCx, Rediscovery, RenderCx, Service};
use crate::tags::TagCache;

pub struct SfnMapRuns {
    config: Config,
    tracker: MapRunTracker,
    /// Each shown run's series as rendered after its last describe.
    rendered: RunSeriesCache,
    /// The history backlog as last logged.
    logged_backlog: Option<Backlog>,
    /// GetExecutionHistory was denied: ListMapRuns until then.
    events_denied_until: Option<Instant>,
    /// ListStateMachineVersions was denied (logged once).
    versions_denied: bool,
    /// The state machines' tags as last read (ListTagsForResource).
    tags: TagCache,
    /// The selected state machines (name, ARN), for their info series.
    watched: Vec<(String, String)>,
    /// The last ListStateMachines (standard state machines of this replica's share), used until
    /// the next one.
    listed: Vec<StateMachine>,
    /// When ListStateMachines runs again.
    discovery: Rediscovery,
}

impl Service for SfnMapRuns {
    type Config = Config;
    type Client = SfnClient;

    fn new(config: &Config, started_at: f64) -> Self {
        let tracker = MapRunTracker::new(started_at, config.retention.as_secs_f64());
        Self {
            config: config.clone(),
            tracker,
            rendered: RunSeriesCache::default(),
            logged_backlog: None,
            versions_denied: false,
            events_denied_until: None,
            tags: TagCache::default(),
            watched: Vec::new(),
            listed: Vec::new(),
            discovery: Rediscovery::new(config.discovery_interval, config.poll_interval),
        }
    }

    fn client(conn: Arc<Connection>) -> SfnClient {
        SfnClient::new(conn)
    }

    async fn poll(&mut self, client: &SfnClient, cx: &mut PollCx<'_>) -> Result<(), AwsError> {
        self.poll_inner(client, cx).await
    }

    fn render(&self, cx: &RenderCx, out: &mut Vec<Family>) {
        metrics::render(
            &self.tracker,
            &self.rendered,
            &cx.account_id,
            &cx.region,
            cx.now,
            out,
        );
        metrics::render_info(
            &self.watched,
            &self.tags,
            &self.config.tags,
            &cx.account_id,
            &cx.region,
            out,
        );
    }

    fn tracked(&self) -> Vec<(&'static str, usize)> {
        vec![
            ("execution", self.tracker.tracked_executions()),
            ("map_run", self.tracker.tracked_map_runs()),
        ]
    }

    fn backlog(&self) -> Vec<(&'static str, usize)> {
        let b = self.tracker.backlog();
        vec![
            ("state_machine", b.state_machines),
            ("execution", b.executions),
            ("map_run", b.map_runs),
        ]
    }
}
