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
//! calls are needed is decided in [`state`].

pub mod client;
pub mod config;
pub mod convert;
pub mod doctor;
pub mod metrics;
pub mod state;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::aws::{Pace, Target};
use crate::error::AwsError;
use crate::exposition::hub::Snapshot;
use crate::services::sfn_map_runs::client::{
    Executions, SfnClient, StateMachine, DESCRIBE_MAP_RUN, DESCRIBE_STATE_MACHINE,
    GET_EXECUTION_HISTORY, LIST_EXECUTIONS, LIST_MAP_RUNS,
};
use crate::services::sfn_map_runs::config::Config;
use crate::services::sfn_map_runs::state::{Backlog, Listing, MapRunTracker, StateMachineObs};
use crate::services::source::{unix_now, BoxFuture, Progress, Source};
use crate::tags::{TagCache, Wanted};

/// A poll's work stops this far into the poll interval, so the next poll starts on time.
const WORK_SHARE_OF_INTERVAL: f64 = 0.9;

/// After GetExecutionHistory was denied, map runs are found with ListMapRuns this long before
/// the history is tried again.
const EVENTS_DENIED_RETRY: Duration = Duration::from_secs(3600);

/// The kinds of history work, each with its own budget bucket.
#[derive(Debug, Clone, Copy)]
enum History {
    /// A state machine's first listing, down to `now - lookback`.
    Listing,
    /// The map runs of a finished execution found by it.
    MapRuns,
    /// DescribeMapRun of a run found that way.
    Describe,
}

/// The source for one target.
pub fn build(target: Arc<Target>, config: &Config, started_at: f64) -> Box<dyn Source> {
    Box::new(SfnMapRuns::new(target, config.clone(), started_at))
}

pub struct SfnMapRuns {
    target: Arc<Target>,
    config: Config,
    client: Option<SfnClient>,
    tracker: MapRunTracker,
    /// The history backlog as last logged.
    logged_backlog: Option<Backlog>,
    /// GetExecutionHistory was denied: ListMapRuns until then.
    events_denied_until: Option<Instant>,
    /// Whether each published version read has a Distributed Map. Versions never change, so
    /// each is read once.
    versions: BTreeMap<String, bool>,
    /// ListStateMachineVersions was denied (logged once).
    versions_denied: bool,
    /// The state machines' tags as last read (ListTagsForResource).
    tags: TagCache,
    /// The selected state machines (name, ARN), for their info series.
    watched: Vec<(String, String)>,
}

impl SfnMapRuns {
    pub fn new(target: Arc<Target>, config: Config, started_at: f64) -> Self {
        let mut tracker = MapRunTracker::new(started_at, config.retention.as_secs_f64());
        tracker.set_poll_interval(config.poll_interval.as_secs_f64());
        Self {
            target,
            config,
            client: None,
            tracker,
            logged_backlog: None,
            versions: BTreeMap::new(),
            versions_denied: false,
            events_denied_until: None,
            tags: TagCache::default(),
            watched: Vec::new(),
        }
    }

    fn publish(&self, progress: &dyn Progress, force: bool) {
        progress.publish(force, &mut || self.snapshot(unix_now()));
    }

    async fn poll_inner(
        &mut self,
        errors: &mut Vec<AwsError>,
        progress: &dyn Progress,
    ) -> Result<(), AwsError> {
        let conn = self.target.connect().await?;
        if self.client.is_none() {
            self.client = Some(SfnClient::new(conn.clone()));
        }
        let client = self.client.take().expect("client set above");
        let result = self.poll_with(&client, errors, progress).await;
        self.client = Some(client);
        result
    }

    async fn poll_with(
        &mut self,
        client: &SfnClient,
        errors: &mut Vec<AwsError>,
        progress: &dyn Progress,
    ) -> Result<(), AwsError> {
        let deadline = Instant::now() + self.config.poll_interval.mul_f64(WORK_SHARE_OF_INTERVAL);
        let definitions = self.state_machines(client, deadline, errors).await?;
        self.open_work(client, definitions, deadline, errors, progress)
            .await;
        self.publish(progress, true);
        progress.ready();
        self.history(client, deadline, errors, progress).await;
        self.tracker.expire(unix_now());
        self.log_backlog();
        Ok(())
    }

    /// Lists state machines; returns the ones whose definition must be read (new, re-created,
    /// or not checked lately).
    async fn state_machines(
        &mut self,
        client: &SfnClient,
        deadline: Instant,
        errors: &mut Vec<AwsError>,
    ) -> Result<Vec<String>, AwsError> {
        let listed: Vec<StateMachine> = client
            .list_state_machines()
            .await?
            .into_iter()
            // Listing is every replica's cost; only this replica's share is polled further.
            .filter(|sm| sm.standard && client.owns(&sm.arn))
            .collect();
        self.read_tags(client, &listed, deadline, errors).await;
        let selection = &self.config.state_machines;
        let selected: Vec<StateMachineObs> = listed
            .into_iter()
            .filter(|sm| selection.matches_tagged(&sm.name, &sm.arn, self.tags.get(&sm.arn)))
            .map(|sm| StateMachineObs {
                arn: sm.arn,
                name: sm.name,
                created: sm.created,
            })
            .collect();
        self.watched = selected
            .iter()
            .map(|sm| (sm.name.clone(), sm.arn.clone()))
            .collect();
        let refresh = self.config.definition_refresh.as_secs_f64();
        Ok(self
            .tracker
            .observe_state_machines(selected, refresh, unix_now()))
    }

    /// Reads the tags of the listed state machines that are due (see [`crate::tags::read`]):
    /// those only their tags can select, and, when tags are exported, the selected ones.
    async fn read_tags(
        &mut self,
        client: &SfnClient,
        listed: &[StateMachine],
        deadline: Instant,
        errors: &mut Vec<AwsError>,
    ) {
        let (selection, config) = (&self.config.state_machines, &self.config.tags);
        let wanted: Vec<Wanted> = listed
            .iter()
            .filter_map(|sm| config.wanted(selection, &sm.name, &sm.arn, Some(sm.created)))
            .collect();
        self.tags.keep_only(&wanted);
        let refresh = self.config.tags.refresh();
        crate::tags::read(&mut self.tags, &wanted, refresh, deadline, client, errors).await;
    }

    /// Reads a state machine's definition.
    async fn definition(&mut self, client: &SfnClient, arn: &str, errors: &mut Vec<AwsError>) {
        let latest = match client.has_distributed_map(arn).await {
            Ok(distributed) => distributed,
            // Deleted since it was listed: the next ListStateMachines drops it.
            Err(AwsError::NotFound { .. }) => return,
            Err(e) => {
                tracing::warn!(state_machine = %arn, error = %e, "reading the state machine definition failed; retried next poll");
                errors.push(e);
                return;
            }
        };
        let distributed = match latest {
            true => true,
            false => match self.version_distributed(client, arn).await {
                Ok(distributed) => distributed,
                Err(AwsError::NotFound { .. }) => return,
                // Retried next poll.
                Err(e @ AwsError::Throttled { .. }) => {
                    errors.push(e);
                    return;
                }
                // An endpoint without versions (an emulator) keeps the latest's verdict until
                // the next definition_refresh.
                Err(e) => {
                    tracing::warn!(state_machine = %arn, error = %e, "reading the published versions failed; going by the latest definition until definition_refresh");
                    errors.push(e);
                    false
                }
            },
        };
        self.tracker.set_definition(arn, distributed, unix_now());
    }

    /// Whether one of the state machine's published versions (which an alias may point
    /// executions at) has a Distributed Map; each version is read once, as versions never change.
    async fn version_distributed(
        &mut self,
        client: &SfnClient,
        arn: &str,
    ) -> Result<bool, AwsError> {
        let versions = match client.list_versions(arn).await {
            Ok(versions) => versions,
            Err(e) if e.is_access_denied() => {
                if !self.versions_denied {
                    tracing::warn!(error = %e, "ListStateMachineVersions is denied: state machines whose latest definition has no Distributed Map are not watched even if a published version has one; allow states:ListStateMachineVersions (deploy/iam/policy.json)");
                    self.versions_denied = true;
                }
                return Ok(false);
            }
            Err(e) => return Err(e),
        };
        let mut distributed = false;
        for version in &versions {
            let has = match self.versions.get(version) {
                Some(has) => *has,
                None => {
                    let has = client.has_distributed_map(version).await?;
                    self.versions.insert(version.clone(), has);
                    has
                }
            };
            distributed |= has;
        }
        // Deleted versions go from the cache.
        let prefix = format!("{arn}:");
        self.versions
            .retain(|v, _| !v.starts_with(&prefix) || versions.contains(v));
        Ok(distributed)
    }

    /// The open work, until `deadline`: definitions to read, execution listings, required
    /// describes (final ones, redriven runs, runs the history flagged), the executions' map runs,
    /// and refreshes of open runs. Each kind has its own bucket, so each goes as soon as its
    /// bucket has a token, most urgent first, and none waits for another's; refreshes take only
    /// tokens there are now. The source is ready once all it could do without waiting is
    /// published: the rest comes as the budget refills.
    async fn open_work(
        &mut self,
        client: &SfnClient,
        definitions: Vec<String>,
        deadline: Instant,
        errors: &mut Vec<AwsError>,
        progress: &dyn Progress,
    ) {
        let mut definitions: VecDeque<String> = definitions.into();
        let mut listings: VecDeque<(String, Listing, Executions)> = VecDeque::new();
        let pending: BTreeSet<&String> = definitions.iter().collect();
        for plan in self.tracker.listing_plan() {
            if !pending.contains(&plan.arn) {
                push_listings(&mut listings, plan);
            }
        }
        drop(pending);
        let mut ready = false;
        let rate = client.rate(DESCRIBE_MAP_RUN);
        let due_after = self.tracker.open_run_count() as f64 / rate;
        let plan = self.tracker.runs_to_describe(unix_now(), due_after);
        let mut required: VecDeque<String> = plan.required.into();
        let mut refresh: VecDeque<String> = plan.refresh.into();
        let mut discover: VecDeque<String> = self.tracker.executions_to_list().into();
        // Executions queued for discovery this poll, done ones included.
        let mut queued: BTreeSet<String> = discover.iter().cloned().collect();
        loop {
            let waits = [
                required.front().map(|_| DESCRIBE_MAP_RUN),
                definitions.front().map(|_| DESCRIBE_STATE_MACHINE),
                listings.front().map(|_| LIST_EXECUTIONS),
                discover.front().map(|_| self.discovery_operation()),
            ]
            .map(|op| op.map(|op| client.time_until_spare(op, 0.0)));
            let next = waits
                .iter()
                .enumerate()
                .filter_map(|(i, w)| w.map(|w| (i, w)))
                .min_by_key(|(_, w)| *w);
            let nothing_now = next.is_none_or(|(_, w)| !w.is_zero());
            if nothing_now
                && !refresh.is_empty()
                && client.time_until_spare(DESCRIBE_MAP_RUN, 0.0).is_zero()
            {
                let arn = refresh.pop_front().expect("not empty");
                self.describe(client, &arn, errors).await;
                self.publish(progress, false);
                continue;
            }
            let Some((kind, wait)) = next else {
                return;
            };
            if Instant::now() + wait >= deadline {
                return;
            }
            if !wait.is_zero() {
                if !ready {
                    ready = true;
                    self.publish(progress, true);
                    progress.ready();
                }
                tokio::time::sleep(wait).await;
            }
            match kind {
                0 => {
                    let arn = required.pop_front().expect("not empty");
                    self.describe(client, &arn, errors).await;
                    refresh.retain(|a| *a != arn);
                    self.publish(progress, false);
                }
                1 => {
                    let arn = definitions.pop_front().expect("not empty");
                    self.definition(client, &arn, errors).await;
                    if let Some(plan) = self
                        .tracker
                        .listing_plan()
                        .into_iter()
                        .find(|p| p.arn == arn)
                    {
                        push_listings(&mut listings, plan);
                    }
                }
                2 => {
                    let (arn, kind, which) = listings.pop_front().expect("not empty");
                    self.list_executions(client, &arn, kind, which, errors)
                        .await;
                    // New executions, never read, go before the ones read in earlier polls.
                    let new: Vec<String> = self
                        .tracker
                        .executions_to_list()
                        .into_iter()
                        .filter(|e| queued.insert(e.clone()))
                        .collect();
                    for execution_arn in new.into_iter().rev() {
                        discover.push_front(execution_arn);
                    }
                }
                _ => {
                    let execution_arn = discover.pop_front().expect("not empty");
                    if self.discover(client, &execution_arn, errors).await {
                        let first = self.tracker.runs_to_describe_first(&execution_arn);
                        for arn in first.into_iter().rev() {
                            refresh.retain(|a| *a != arn);
                            refresh.push_front(arn);
                        }
                    }
                }
            }
        }
    }

    /// One listing of a state machine's executions. A listing that fails is not applied:
    /// nothing is believed stopped because of it.
    async fn list_executions(
        &mut self,
        client: &SfnClient,
        state_machine_arn: &str,
        kind: Listing,
        which: Executions,
        errors: &mut Vec<AwsError>,
    ) {
        match client.list_executions(state_machine_arn, which).await {
            Ok(listed) => {
                self.tracker
                    .observe_listing(state_machine_arn, kind, listed, 0.0, unix_now())
            }
            Err(e) => {
                tracing::warn!(state_machine = %state_machine_arn, listing = ?kind, error = %e, "listing executions failed");
                errors.push(e);
            }
        }
    }

    /// How this poll finds executions' map runs.
    fn discovery_operation(&self) -> crate::aws::operation::Operation {
        match self.events_denied_until {
            Some(until) if Instant::now() < until => LIST_MAP_RUNS,
            _ => GET_EXECUTION_HISTORY,
        }
    }

    /// Finds an execution's map runs: its history events since the last read, or ListMapRuns
    /// when those are denied or incomplete. Returns whether the calls succeeded (or found the
    /// execution gone).
    async fn discover(
        &mut self,
        client: &SfnClient,
        execution_arn: &str,
        errors: &mut Vec<AwsError>,
    ) -> bool {
        if self.discovery_operation() == GET_EXECUTION_HISTORY {
            let after = self.tracker.events_read(execution_arn);
            match client.execution_events(execution_arn, after).await {
                Ok(events) => {
                    if self.tracker.record_events(execution_arn, events) {
                        return true;
                    }
                    tracing::debug!(execution = %execution_arn, "too many new history events; listing the map runs instead");
                }
                Err(AwsError::NotFound { .. }) => {
                    self.tracker.record_map_runs(execution_arn, vec![]);
                    return true;
                }
                Err(e) if e.is_access_denied() => {
                    tracing::warn!(error = %e, "GetExecutionHistory is denied: finding map runs with ListMapRuns (1 call/s instead of 20) for an hour; allow states:GetExecutionHistory (deploy/iam/policy.json)");
                    self.events_denied_until = Some(Instant::now() + EVENTS_DENIED_RETRY);
                }
                Err(e) => {
                    tracing::warn!(execution = %execution_arn, error = %e, "reading execution events failed");
                    errors.push(e);
                    return false;
                }
            }
        }
        self.list_map_runs(client, execution_arn, errors).await
    }

    /// History, newest first, with spare tokens only, until `deadline`.
    async fn history(
        &mut self,
        client: &SfnClient,
        deadline: Instant,
        errors: &mut Vec<AwsError>,
        progress: &dyn Progress,
    ) {
        let lookback = self.config.lookback.as_secs_f64();
        // What the next poll's open work needs of each bucket stays there.
        let listings: usize = self
            .tracker
            .listing_plan()
            .iter()
            .map(|p| {
                usize::from(p.running)
                    + usize::from(p.newest_since.is_some())
                    + usize::from(p.redriven)
            })
            .sum();
        let running = self.tracker.running_execution_count() as f64;
        let open = self.tracker.open_run_count() as f64;
        // The work lists are recomputed only when used up: each is a walk over all state.
        let mut runs = VecDeque::new();
        let mut execs = VecDeque::new();
        loop {
            if runs.is_empty() {
                runs = self
                    .tracker
                    .runs_to_describe(unix_now(), f64::INFINITY)
                    .backfill
                    .into();
            }
            if execs.is_empty() {
                execs = self.tracker.history_executions_to_list().into();
            }
            let next_sm = self.tracker.history_to_list().into_iter().next();
            let next_exec = execs.front().cloned();
            let next_run = runs.front().cloned();
            let work = [
                next_sm.map(|a| (History::Listing, LIST_EXECUTIONS, listings as f64, a)),
                next_exec.map(|a| (History::MapRuns, self.discovery_operation(), running, a)),
                next_run.map(|a| (History::Describe, DESCRIBE_MAP_RUN, open, a)),
            ];
            let Some((wait, kind, arn)) = work
                .into_iter()
                .flatten()
                .map(|(kind, op, keep, arn)| (client.time_until_spare(op, keep), kind, arn))
                .min_by_key(|(wait, _, _)| *wait)
            else {
                return;
            };
            if Instant::now() + wait >= deadline {
                return;
            }
            tokio::time::sleep(wait).await;
            match kind {
                History::Listing => {}
                History::MapRuns => {
                    execs.pop_front();
                }
                History::Describe => {
                    runs.pop_front();
                }
            }
            match kind {
                History::Listing => {
                    let since = self.tracker.history_since(&arn, unix_now() - lookback);
                    let pace = Pace {
                        keep: listings as f64,
                        deadline,
                    };
                    match client
                        .list_executions_paced(&arn, Executions::StartedSince(since), Some(pace))
                        .await
                    {
                        // The deadline came between pages: read again, from the top, next poll.
                        Ok(None) => return,
                        Ok(Some(listed)) => self.tracker.observe_listing(
                            &arn,
                            Listing::History,
                            listed,
                            since,
                            unix_now(),
                        ),
                        Err(e) => {
                            tracing::warn!(state_machine = %arn, error = %e, "listing execution history failed");
                            errors.push(e);
                            return;
                        }
                    }
                }
                History::MapRuns => {
                    if !self.discover(client, &arn, errors).await {
                        return;
                    }
                }
                History::Describe => {
                    if !self.describe(client, &arn, errors).await {
                        return;
                    }
                }
            }
            self.publish(progress, false);
        }
    }

    /// ListMapRuns. Returns whether the call succeeded (or found the execution gone).
    async fn list_map_runs(
        &mut self,
        client: &SfnClient,
        execution_arn: &str,
        errors: &mut Vec<AwsError>,
    ) -> bool {
        match client.list_map_runs(execution_arn).await {
            Ok(runs) => self.tracker.record_map_runs(execution_arn, runs),
            Err(AwsError::NotFound { .. }) => self.tracker.record_map_runs(execution_arn, vec![]),
            Err(e) => {
                tracing::warn!(execution = %execution_arn, error = %e, "listing map runs failed");
                errors.push(e);
                return false;
            }
        }
        true
    }

    /// Returns whether the call succeeded (or found the run gone).
    async fn describe(
        &mut self,
        client: &SfnClient,
        map_run_arn: &str,
        errors: &mut Vec<AwsError>,
    ) -> bool {
        match client.describe_map_run(map_run_arn).await {
            Ok(obs) => self.tracker.apply_describe(obs, unix_now()),
            Err(AwsError::NotFound { .. }) => self.tracker.forget_run(map_run_arn),
            Err(e) => {
                tracing::warn!(map_run = %map_run_arn, error = %e, "describing map run failed; keeping its last values");
                errors.push(e);
                return false;
            }
        }
        true
    }

    /// One log line per poll while history is being read, and one when it is done.
    fn log_backlog(&mut self) {
        let backlog = self.tracker.backlog();
        let target = self.target.key();
        if !backlog.is_empty() {
            tracing::info!(
                target_key = %target,
                state_machines = backlog.state_machines,
                executions = backlog.executions,
                map_runs = backlog.map_runs,
                "history backfill in progress: state machines, executions and map runs still to read"
            );
        } else if self.logged_backlog.is_some_and(|b| !b.is_empty()) {
            tracing::info!(target_key = %target, "history backfill complete");
        }
        self.logged_backlog = Some(backlog);
    }
}

/// Queues the listings a state machine needs this poll.
fn push_listings(
    listings: &mut VecDeque<(String, Listing, Executions)>,
    plan: crate::services::sfn_map_runs::state::ListingPlan,
) {
    if plan.running {
        listings.push_back((plan.arn.clone(), Listing::Running, Executions::Running));
    }
    if let Some(since) = plan.newest_since {
        let which = Executions::StartedSince(since);
        listings.push_back((plan.arn.clone(), Listing::Newest, which));
    }
    if plan.redriven {
        listings.push_back((plan.arn, Listing::Redriven, Executions::Redriven));
    }
}

impl Source for SfnMapRuns {
    fn name(&self) -> &'static str {
        "sfn_map_runs"
    }

    fn target(&self) -> &Arc<Target> {
        &self.target
    }

    fn interval(&self) -> Duration {
        self.config.poll_interval
    }

    fn poll<'a>(
        &'a mut self,
        errors: &'a mut Vec<AwsError>,
        progress: &'a dyn Progress,
    ) -> BoxFuture<'a, Result<(), AwsError>> {
        Box::pin(self.poll_inner(errors, progress))
    }

    fn snapshot(&self, now: f64) -> Snapshot {
        let (account_id, region) = self.target.labels();
        let mut families = Vec::new();
        metrics::render(&self.tracker, &account_id, &region, now, &mut families);
        let (watched, tags) = (&self.watched, &self.tags);
        metrics::render_info(
            watched,
            tags,
            &self.config.tags,
            &account_id,
            &region,
            &mut families,
        );
        Snapshot {
            families,
            tracked: vec![
                ("execution", self.tracker.tracked_executions()),
                ("map_run", self.tracker.tracked_map_runs()),
            ],
        }
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
