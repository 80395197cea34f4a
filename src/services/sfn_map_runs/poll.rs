//! One poll of the Step Functions Map Run source: the open work first, published as it goes,
//! then history in the background with spare tokens, both until the poll's deadline.

use std::collections::{BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use crate::aws::{Pace, Target};
use crate::clock::unix_now;
use crate::error::AwsError;
use crate::services::sfn_map_runs::client::{
    Executions, SfnClient, StateMachine, DESCRIBE_MAP_RUN, DESCRIBE_STATE_MACHINE,
    GET_EXECUTION_HISTORY, LIST_EXECUTIONS, LIST_MAP_RUNS,
};
use crate::services::sfn_map_runs::obs::{Listing, StateMachineObs};
use crate::services::sfn_map_runs::plan::ListingPlan;
use crate::services::sfn_map_runs::SfnMapRuns;
use crate::services::source::PollCx;
use crate::tags::Wanted;

/// A poll's work stops this far into the poll interval, so the next poll starts on time.
const WORK_SHARE_OF_INTERVAL: f64 = 0.9;

/// After GetExecutionHistory was denied, map runs are found with ListMapRuns this long before
/// the history is tried again.
const EVENTS_DENIED_RETRY: Duration = Duration::from_secs(3600);

/// The kinds of history work, each with its own budget bucket.
#[derive(Debug, Clone, Copy)]
enum HistoryWork {
    /// A state machine's first listing, down to `now - lookback`.
    Listing,
    /// The map runs of a finished execution found by it.
    MapRuns,
    /// DescribeMapRun of a run found that way.
    Describe,
}

impl SfnMapRuns {
    pub(super) async fn poll_inner(
        &mut self,
        client: &SfnClient,
        cx: &mut PollCx<'_>,
    ) -> Result<(), AwsError> {
        let deadline = Instant::now() + self.config.poll_interval.mul_f64(WORK_SHARE_OF_INTERVAL);
        let definitions = self.state_machines(client, deadline, cx).await?;
        self.open_work(client, definitions, deadline, cx).await;
        cx.publish(self, true);
        cx.ready();
        self.backfill(client, deadline, cx).await;
        self.tracker.expire(unix_now());
        self.log_backlog(cx.target);
        Ok(())
    }

    /// Lists state machines when the listing is due (see [`Rediscovery`]), otherwise goes on
    /// with the last listing; reads the tags due and applies the selection. Returns the state
    /// machines whose definition must be read (new, re-created, or not checked lately).
    async fn state_machines(
        &mut self,
        client: &SfnClient,
        deadline: Instant,
        cx: &mut PollCx<'_>,
    ) -> Result<Vec<String>, AwsError> {
        let now = Instant::now();
        if self.discovery.due(now) {
            self.listed = client
                .list_state_machines()
                .await?
                .into_iter()
                // Listing is every replica's cost; only this replica's share is polled further.
                .filter(|sm| sm.standard && client.owns(&sm.arn))
                .collect();
            self.discovery.listed(now, &cx.target.key());
        }
        // A copy, not taken out of self: a poll ended at its deadline while the tags are read
        // must leave the listing for the next poll.
        let listed = self.listed.clone();
        self.read_tags(client, &listed, deadline, cx.errors).await;
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
            Err(AwsError::NotFound { .. }) => {
                self.forget(arn);
                return;
            }
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
                // The state machine or one of its versions went since it was listed: read
                // again next poll.
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
    /// executions at) has a Distributed Map; each version is read once, as versions never change,
    /// and the executions of the others are not searched for map runs.
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
            let has = match self.tracker.version(version) {
                Some(has) => has,
                None => {
                    let has = client.has_distributed_map(version).await?;
                    self.tracker.set_version(version, has);
                    has
                }
            };
            distributed |= has;
        }
        // Deleted versions go from the cache.
        self.tracker.keep_versions(arn, &versions);
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
        cx: &mut PollCx<'_>,
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
        // Runs nearing their tolerance go before every other refresh, first describes included.
        let mut nearing: VecDeque<String> = plan.nearing.into();
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
            if nothing_now && client.time_until_spare(DESCRIBE_MAP_RUN, 0.0).is_zero() {
                if let Some(arn) = nearing.pop_front().or_else(|| refresh.pop_front()) {
                    self.describe(client, &arn, cx.errors).await;
                    cx.publish(self, false);
                    continue;
                }
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
                    cx.publish(self, true);
                    cx.ready();
                }
                tokio::time::sleep(wait).await;
            }
            match kind {
                0 => {
                    let arn = required.pop_front().expect("not empty");
                    self.describe(client, &arn, cx.errors).await;
                    nearing.retain(|a| *a != arn);
                    refresh.retain(|a| *a != arn);
                    cx.publish(self, false);
                }
                1 => {
                    let arn = definitions.pop_front().expect("not empty");
                    self.definition(client, &arn, cx.errors).await;
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
                    self.list_executions(client, &arn, kind, which, cx.errors)
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
                    if self.discover(client, &execution_arn, cx.errors).await {
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
            Err(AwsError::NotFound { .. }) => self.forget(state_machine_arn),
            Err(e) => {
                tracing::warn!(state_machine = %state_machine_arn, listing = ?kind, error = %e, "listing executions failed");
                errors.push(e);
            }
        }
    }

    /// A state machine deleted since it was listed: it goes at once, with its series, and the
    /// next poll lists the state machines again (it may have been created again).
    fn forget(&mut self, arn: &str) {
        tracing::info!(state_machine = %arn, "state machine deleted");
        self.tracker.forget_state_machine(arn);
        self.listed.retain(|sm| sm.arn != arn);
        self.watched.retain(|(_, watched)| watched != arn);
        self.discovery.relist();
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
    async fn backfill(&mut self, client: &SfnClient, deadline: Instant, cx: &mut PollCx<'_>) {
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
                next_sm.map(|a| (HistoryWork::Listing, LIST_EXECUTIONS, listings as f64, a)),
                next_exec.map(|a| (HistoryWork::MapRuns, self.discovery_operation(), running, a)),
                next_run.map(|a| (HistoryWork::Describe, DESCRIBE_MAP_RUN, open, a)),
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
                HistoryWork::Listing => {}
                HistoryWork::MapRuns => {
                    execs.pop_front();
                }
                HistoryWork::Describe => {
                    runs.pop_front();
                }
            }
            match kind {
                HistoryWork::Listing => {
                    let since = self.tracker.lookback_since(&arn, unix_now() - lookback);
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
                            Listing::Lookback,
                            listed,
                            since,
                            unix_now(),
                        ),
                        Err(AwsError::NotFound { .. }) => {
                            self.forget(&arn);
                            return;
                        }
                        Err(e) => {
                            tracing::warn!(state_machine = %arn, error = %e, "listing execution history failed");
                            cx.errors.push(e);
                            return;
                        }
                    }
                }
                HistoryWork::MapRuns => {
                    if !self.discover(client, &arn, cx.errors).await {
                        return;
                    }
                }
                HistoryWork::Describe => {
                    if !self.describe(client, &arn, cx.errors).await {
                        return;
                    }
                }
            }
            cx.publish(self, false);
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
    fn log_backlog(&mut self, target: &Target) {
        let backlog = self.tracker.backlog();
        let target = target.key();
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
fn push_listings(listings: &mut VecDeque<(String, Listing, Executions)>, plan: ListingPlan) {
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
