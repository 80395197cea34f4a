//! What the exporter knows about Step Functions executions and their Map Runs between polls:
//! which calls the next poll needs, which counters a finished run feeds, and when series expire.
//! Times are Unix seconds (f64) so tests can use plain numbers.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

use crate::exposition::family::Sections;

/// How long AWS lets a stopped execution be redriven; per-run dedup state is kept this long.
pub const REDRIVE_WINDOW_SECS: f64 = 14.0 * 86400.0;

/// The map run events of an execution's history newer than the last read (GetExecutionHistory).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExecutionEvents {
    /// The newest event id read (0 when none).
    pub newest: i64,
    /// Map runs started (MapRunStarted) and when, newest first.
    pub started: Vec<(String, f64)>,
    /// Map runs redriven (MapRunRedriven).
    pub redriven: Vec<String>,
    /// A map run ended (MapRunSucceeded, MapRunFailed, MapRunAborted); the event does not say which.
    pub ended: bool,
    /// Read down to the last event already seen, or to the first event.
    pub complete: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ExecutionObs {
    pub arn: String,
    pub state_machine_arn: String,
    pub name: String,
    pub running: bool,
    pub start: f64,
    pub stop: Option<f64>,
    pub redrive_count: i64,
    pub redrive_date: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum MapRunStatus {
    Running,
    Succeeded,
    Failed,
    Aborted,
}

impl MapRunStatus {
    pub const ALL: [MapRunStatus; 4] =
        [Self::Running, Self::Succeeded, Self::Failed, Self::Aborted];
    pub const TERMINAL: [MapRunStatus; 3] = [Self::Succeeded, Self::Failed, Self::Aborted];

    pub fn as_label(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Aborted => "aborted",
        }
    }

    pub fn is_terminal(self) -> bool {
        self != Self::Running
    }
}

/// itemCounts or executionCounts of DescribeMapRun.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub pending: i64,
    pub running: i64,
    pub succeeded: i64,
    pub failed: i64,
    pub timed_out: i64,
    pub aborted: i64,
    pub total: i64,
    pub results_written: i64,
    pub failures_not_redrivable: Option<i64>,
    pub pending_redrive: Option<i64>,
}

impl Counts {
    /// (label, value) for the per-status series.
    pub fn by_status(&self) -> [(&'static str, i64); 6] {
        [
            ("pending", self.pending),
            ("running", self.running),
            ("succeeded", self.succeeded),
            ("failed", self.failed),
            ("timed_out", self.timed_out),
            ("aborted", self.aborted),
        ]
    }

    fn finished(&self) -> [u64; 4] {
        [self.succeeded, self.failed, self.timed_out, self.aborted].map(|v| v.max(0) as u64)
    }
}

/// Item statuses that count as finished, in the order of [`Aggregate::items_finished`].
pub const FINISHED_ITEM_STATUSES: [&str; 4] = ["succeeded", "failed", "timed_out", "aborted"];

#[derive(Debug, Clone, PartialEq)]
pub struct MapRunObs {
    pub arn: String,
    pub execution_arn: String,
    pub status: MapRunStatus,
    pub start: f64,
    pub stop: Option<f64>,
    pub max_concurrency: i64,
    pub tolerated_failure_ratio: f64,
    pub tolerated_failure_count: i64,
    pub items: Counts,
    pub executions: Counts,
    pub redrive_count: i64,
    pub redrive_date: Option<f64>,
}

/// The labels of a map run, taken from its ARN and its parent execution.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct RunLabels {
    pub state_machine: String,
    pub map_state: String,
    pub execution: String,
    pub map_run: String,
}

impl RunLabels {
    /// `arn:aws:states:REGION:ACCOUNT:mapRun:STATE_MACHINE/MAP_STATE:ID`
    pub fn from_arns(map_run_arn: &str, execution_arn: &str) -> Option<Self> {
        let rest = map_run_arn.split_once(":mapRun:")?.1;
        let (state_machine, rest) = rest.split_once('/')?;
        let (map_state, map_run) = rest.rsplit_once(':')?;
        let execution = execution_arn.rsplit(':').next()?;
        Some(Self {
            state_machine: state_machine.to_owned(),
            map_state: map_state.to_owned(),
            execution: execution.to_owned(),
            map_run: map_run.to_owned(),
        })
    }
}

/// Counters per (state machine, map state); they outlive the per-run series.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Aggregate {
    /// By [`MapRunStatus::TERMINAL`].
    pub runs_finished: [u64; 3],
    /// By [`FINISHED_ITEM_STATUSES`].
    pub items_finished: [u64; 4],
}

/// A state machine as ListStateMachines shows it (after the selection).
#[derive(Debug, Clone, PartialEq)]
pub struct StateMachineObs {
    pub arn: String,
    pub name: String,
    pub created: f64,
}

/// Which listing of a state machine's executions an observation comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listing {
    /// `statusFilter=RUNNING`, complete: a tracked execution it does not show has stopped.
    Running,
    /// Newest first, down to the watermark: executions started since the last listing.
    Newest,
    /// Newest first, down to `now - lookback`: the first listing, whose finished executions are
    /// history (described in the background, newest first).
    History,
    /// `redriveFilter=REDRIVEN`: executions redriven at any time, however old.
    Redriven,
}

/// The listings a state machine needs this poll.
#[derive(Debug, Clone, PartialEq)]
pub struct ListingPlan {
    pub arn: String,
    /// List RUNNING executions: until the history listing is done, and while some are tracked running.
    pub running: bool,
    /// List newest first down to this start time (the watermark less [`WATERMARK_OVERLAP_SECS`]);
    /// `None` until history is listed.
    pub newest_since: Option<f64>,
    /// Look for redrives this poll (each state machine every [`REDRIVE_SCAN_EVERY_POLLS`] polls).
    pub redriven: bool,
}

/// Each state machine's redriven executions are listed every this many polls (in turn, so each
/// poll lists a share of them): a redrive of an execution that nothing else lists is found within
/// that many polls.
pub const REDRIVE_SCAN_EVERY_POLLS: u64 = 5;

/// A map run its execution's redrive reruns restarts within this long of the redrive (the redrive
/// resumes at the failed state). The history's MapRunRedriven event says so at once where read.
pub const REDRIVE_RESTART_SECS: f64 = 60.0;

/// How far before the newest start seen the next newest-first listing goes: ListExecutions is
/// eventually consistent, so an execution may show up after newer ones did. Executions already
/// tracked are not counted again.
pub const WATERMARK_OVERLAP_SECS: f64 = 300.0;

/// An open run whose failures reached this share of what it tolerates is near its tolerance.
pub const NEAR_TOLERANCE: f64 = 0.5;
/// How much sooner (by time since its last describe) an open run near its tolerance, or one
/// that changed at its last describe, is described again than one that did neither. A weight,
/// not a tier, so that the others still take their turn: none waits more than a pass.
const NEAR_TOLERANCE_WEIGHT: f64 = 4.0;
const CHANGED_WEIGHT: f64 = 2.0;

/// The DescribeMapRun calls a poll should make, by kind.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DescribePlan {
    /// Must be described now: the final describe of a run whose parent stopped (or that was
    /// first seen after it stopped), failed or aborted runs whose parent was redriven, and runs
    /// the parent's history shows ended or redriven since their last describe.
    pub required: Vec<String>,
    /// Runs of running executions, most urgent first: never described ones, overdue ones (not
    /// described for `due_after` seconds, one pass over the open runs), then by how long ago
    /// they were described, that time weighted up for runs near their tolerated failures and
    /// runs that changed at their last describe.
    pub refresh: Vec<String>,
    /// Runs of history executions never described, newest first.
    pub backfill: Vec<String>,
}

/// History still to read: state machines whose first listing is pending, executions whose map
/// runs are not listed yet, map runs not described yet.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Backlog {
    pub state_machines: usize,
    pub executions: usize,
    pub map_runs: usize,
}

impl Backlog {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Listed {
    Never,
    WhileRunning,
    Final,
}

#[derive(Debug)]
struct TrackedStateMachine {
    name: String,
    created: f64,
    /// Whether the definition has a Distributed Map; `None` until described.
    distributed: Option<bool>,
    checked_at: f64,
    /// The definition last said "no Distributed Map" at this time, and has one since: its first
    /// listing goes back to here even beyond `lookback`, or runs of the gap would be missed.
    plain_until: Option<f64>,
    /// Start time of the newest execution a complete listing showed; `None` until the history
    /// listing completed.
    watermark: Option<f64>,
    /// When its executions were last listed, as a [`MapRunTracker`] sequence number (0: never).
    listed_at: u64,
}

#[derive(Debug)]
struct TrackedExecution {
    obs: ExecutionObs,
    listed: Listed,
    redrive_at_listing: i64,
    last_seen: f64,
    /// Found finished by the first listing: its runs are described in the background.
    history: bool,
    /// The newest history event read (see [`ExecutionEvents`]); 0 before the first read.
    events_read: i64,
    /// When its map runs were last listed or its events read, as a [`MapRunTracker`] sequence
    /// number (0: never).
    discovered_at: u64,
}

#[derive(Debug)]
struct TrackedRun {
    labels: RunLabels,
    execution_arn: String,
    obs: Option<MapRunObs>,
    parent_redrive_at_describe: i64,
    /// Finished item counts already fed into the aggregate counters (or taken as a baseline).
    counted: Option<[u64; 4]>,
    /// Seen running: it then surely finished while we watched, whatever the clocks say.
    seen_running: bool,
    /// Per-run series are shown until then; `None` while running.
    visible_until: Option<f64>,
    history: bool,
    last_described: f64,
    /// The last describe showed different counts or status than the one before.
    changed: bool,
    /// [`TrackedRun::tolerance_used`] as of the describe before the last.
    tolerance_used_before: f64,
    /// The parent's history showed the run (or a run of the parent) end or be redriven since
    /// the last describe: describe it now.
    event_pending: bool,
    /// When its MapRunStarted event happened, if it was found in the parent's history: until
    /// its first describe it is shown running from then.
    started_event: Option<f64>,
    /// The run's per-run series as exposition text, rendered at the first snapshot after a
    /// describe and shared by every snapshot until the next: unchanged runs cost no rendering
    /// and no copy per publish.
    series: OnceLock<Sections>,
}

impl TrackedRun {
    /// Failed and timed-out items as a share of what the run tolerates (the larger of the two
    /// thresholds' shares; 0 when it tolerates nothing, since then the first failure ends it).
    /// The percentage is judged on the items processed so far, not on all items: it is where
    /// the run ends if its items keep failing as they have, which is what the alert is about
    /// long before the failures reach the threshold's share of every item.
    fn tolerance_used(&self) -> f64 {
        let Some(obs) = &self.obs else { return 0.0 };
        let items = &obs.items;
        let failed = (items.failed + items.timed_out).max(0) as f64;
        let processed = (items.succeeded + items.failed + items.timed_out + items.aborted).max(0);
        let mut used: f64 = 0.0;
        if obs.tolerated_failure_ratio > 0.0 && processed > 0 {
            used = used.max(failed / processed as f64 / obs.tolerated_failure_ratio);
        }
        if obs.tolerated_failure_count > 0 {
            used = used.max(failed / obs.tolerated_failure_count as f64);
        }
        used
    }

    /// Near its tolerated failures: half used, or at the pace of its last two describes it
    /// would use it all within two more.
    fn nearing_tolerance(&self) -> bool {
        let used = self.tolerance_used();
        let pace = (used - self.tolerance_used_before).max(0.0);
        used >= NEAR_TOLERANCE || used + 2.0 * pace >= 1.0
    }
}

#[derive(Debug)]
pub struct MapRunTracker {
    started_at: f64,
    retention: f64,
    polls: u64,
    state_machines: BTreeMap<String, TrackedStateMachine>,
    executions: BTreeMap<String, TrackedExecution>,
    runs: BTreeMap<String, TrackedRun>,
    aggregates: BTreeMap<(String, String), Aggregate>,
    /// Listings of executions and of map runs (or events read) so far, to order them by staleness.
    discoveries: u64,
    /// A run nearing its tolerance is refreshed ahead of others once not described this long.
    poll_interval: f64,
}

impl MapRunTracker {
    /// `started_at`: runs that stopped before it feed no counters (they finished before we watched).
    pub fn new(started_at: f64, retention_secs: f64) -> Self {
        Self {
            started_at,
            retention: retention_secs,
            polls: 0,
            state_machines: BTreeMap::new(),
            executions: BTreeMap::new(),
            runs: BTreeMap::new(),
            aggregates: BTreeMap::new(),
            discoveries: 0,
            poll_interval: 60.0,
        }
    }

    /// The source's poll interval (seconds): runs nearing their tolerance are refreshed every poll.
    pub fn set_poll_interval(&mut self, secs: f64) {
        self.poll_interval = secs;
    }

    /// Records this poll's (selected) state machines. Everything of state machines that are gone
    /// or no longer selected is dropped, their aggregate counters included. Returns the ones whose
    /// definition must be (re)read: new ones, re-created ones, and ones last read `refresh_secs` ago.
    pub fn observe_state_machines(
        &mut self,
        listed: Vec<StateMachineObs>,
        refresh_secs: f64,
        now: f64,
    ) -> Vec<String> {
        self.polls += 1;
        let mut keep = BTreeMap::new();
        for sm in listed {
            let tracked = match self.state_machines.remove(&sm.arn) {
                // Deleted and created again under the same name: a new state machine.
                Some(t) if t.created == sm.created => t,
                _ => TrackedStateMachine {
                    name: sm.name,
                    created: sm.created,
                    distributed: None,
                    checked_at: f64::NEG_INFINITY,
                    plain_until: None,
                    watermark: None,
                    listed_at: 0,
                },
            };
            keep.insert(sm.arn, tracked);
        }
        self.state_machines = keep;
        let sms = &self.state_machines;
        self.executions
            .retain(|_, e| sms.contains_key(&e.obs.state_machine_arn));
        let executions = &self.executions;
        self.runs
            .retain(|_, r| executions.contains_key(&r.execution_arn));
        let names: BTreeSet<&str> = sms.values().map(|s| s.name.as_str()).collect();
        self.aggregates
            .retain(|(sm, _), _| names.contains(sm.as_str()));
        self.state_machines
            .iter()
            .filter(|(_, s)| s.distributed.is_none() || now - s.checked_at >= refresh_secs)
            .map(|(arn, _)| arn.clone())
            .collect()
    }

    /// Records what a state machine's definition says: only state machines with a Distributed
    /// Map (or with executions still tracked running) have their executions listed.
    pub fn set_definition(&mut self, arn: &str, distributed: bool, now: f64) {
        if let Some(sm) = self.state_machines.get_mut(arn) {
            if distributed && sm.distributed == Some(false) && sm.watermark.is_none() {
                sm.plain_until = Some(sm.checked_at);
            }
            sm.distributed = Some(distributed);
            sm.checked_at = now;
        }
    }

    /// Where a state machine's first (history) listing stops: `since` (now - lookback), or
    /// earlier if its definition gained a Distributed Map after a check that showed none.
    pub fn history_since(&self, arn: &str, since: f64) -> f64 {
        self.state_machines
            .get(arn)
            .and_then(|sm| sm.plain_until)
            .map_or(since, |t| t.min(since))
    }

    /// The execution listings of this poll, per state machine that needs any, the ones listed
    /// least lately first (so a poll that runs out of time continues where it stopped).
    pub fn listing_plan(&self) -> Vec<ListingPlan> {
        let with_running: BTreeSet<&str> = self
            .executions
            .values()
            .filter(|e| e.obs.running)
            .map(|e| e.obs.state_machine_arn.as_str())
            .collect();
        let mut out = Vec::new();
        let mut turn = 0u64;
        for (arn, sm) in &self.state_machines {
            let running = with_running.contains(arn.as_str());
            if sm.distributed != Some(true) && !running {
                continue;
            }
            turn += 1;
            let plan = ListingPlan {
                arn: arn.clone(),
                running: running || sm.watermark.is_none(),
                newest_since: sm.watermark.map(|w| w - WATERMARK_OVERLAP_SECS),
                redriven: sm.watermark.is_some()
                    && (turn + self.polls) % REDRIVE_SCAN_EVERY_POLLS == 0,
            };
            out.push((sm.listed_at, plan));
        }
        out.sort_by_key(|(listed_at, _)| *listed_at);
        out.into_iter().map(|(_, plan)| plan).collect()
    }

    /// State machines whose first (history) listing is still to do.
    pub fn history_to_list(&self) -> Vec<String> {
        self.state_machines
            .iter()
            .filter(|(_, s)| s.distributed == Some(true) && s.watermark.is_none())
            .map(|(arn, _)| arn.clone())
            .collect()
    }

    /// Records a complete listing of one state machine's executions. `since` is where a
    /// [`Listing::History`] listing stopped (`now - lookback`).
    pub fn observe_listing(
        &mut self,
        state_machine_arn: &str,
        kind: Listing,
        listed: Vec<ExecutionObs>,
        since: f64,
        now: f64,
    ) {
        let mut seen_running = BTreeSet::new();
        let mut newest = None::<f64>;
        for obs in listed {
            newest = Some(newest.map_or(obs.start, |n| n.max(obs.start)));
            if obs.running {
                seen_running.insert(obs.arn.clone());
            }
            match self.executions.get_mut(&obs.arn) {
                Some(t) => {
                    t.obs = obs;
                    t.last_seen = now;
                }
                None => {
                    // A redrive found by the redrive listing matters only if it happened while
                    // we watched; older ones are history we never read.
                    if kind == Listing::Redriven
                        && !obs.running
                        && obs.redrive_date.is_none_or(|d| d < self.started_at)
                    {
                        continue;
                    }
                    let history = kind == Listing::History && !obs.running;
                    self.executions.insert(
                        obs.arn.clone(),
                        TrackedExecution {
                            redrive_at_listing: if kind == Listing::Redriven {
                                -1
                            } else {
                                obs.redrive_count
                            },
                            obs,
                            listed: Listed::Never,
                            last_seen: now,
                            history,
                            events_read: 0,
                            discovered_at: 0,
                        },
                    );
                }
            }
        }
        if kind == Listing::Running {
            for (arn, t) in self.executions.iter_mut() {
                if t.obs.state_machine_arn == state_machine_arn
                    && t.obs.running
                    && !seen_running.contains(arn)
                {
                    t.obs.running = false;
                }
            }
        }
        if let Some(sm) = self.state_machines.get_mut(state_machine_arn) {
            if matches!(kind, Listing::Running | Listing::Newest) {
                self.discoveries += 1;
                sm.listed_at = self.discoveries;
            }
            match kind {
                Listing::History => sm.watermark = Some(newest.unwrap_or(since).max(since)),
                Listing::Newest => {
                    if let (Some(w), Some(n)) = (sm.watermark, newest) {
                        sm.watermark = Some(w.max(n));
                    }
                }
                Listing::Running | Listing::Redriven => {}
            }
        }
    }

    /// Executions whose map runs must be discovered now: running ones, finished ones not listed
    /// since they finished, and redriven ones; never discovered ones first, then the ones
    /// discovered longest ago, so that a poll that runs out of time continues where it stopped.
    /// History executions are not among them.
    pub fn executions_to_list(&self) -> Vec<String> {
        let mut out: Vec<(u64, &String)> = self
            .executions
            .iter()
            .filter(|(_, t)| {
                t.obs.running
                    || (t.listed != Listed::Final && !t.history)
                    || t.redrive_at_listing != t.obs.redrive_count
            })
            .map(|(arn, t)| (t.discovered_at, arn))
            .collect();
        out.sort();
        out.into_iter().map(|(_, arn)| arn.clone()).collect()
    }

    /// The history event an execution's next events read starts after.
    pub fn events_read(&self, execution_arn: &str) -> i64 {
        self.executions
            .get(execution_arn)
            .map_or(0, |e| e.events_read)
    }

    /// Records what an execution's history showed since the last read: new map runs are
    /// tracked, runs redriven (or, as the events do not say which run ended, every open run of
    /// the execution after a run ended) are described next. Returns whether the read was
    /// complete; if not, the execution's map runs must be listed (ListMapRuns) to find them all.
    pub fn record_events(&mut self, execution_arn: &str, events: ExecutionEvents) -> bool {
        let Some(exec) = self.executions.get_mut(execution_arn) else {
            return true;
        };
        exec.events_read = exec.events_read.max(events.newest);
        let incomplete = !events.complete;
        let arns: Vec<String> = events.started.iter().map(|(arn, _)| arn.clone()).collect();
        if events.complete {
            self.record_map_runs(execution_arn, arns);
        } else {
            self.track_runs(execution_arn, arns);
        }
        for (arn, at) in events.started {
            if let Some(r) = self.runs.get_mut(&arn) {
                r.started_event = r.started_event.or(Some(at));
            }
        }
        for arn in &events.redriven {
            if let Some(r) = self.runs.get_mut(arn) {
                r.event_pending = true;
            }
        }
        if events.ended || incomplete {
            for r in self.runs.values_mut() {
                if r.execution_arn == execution_arn
                    && r.obs.as_ref().is_none_or(|o| !o.status.is_terminal())
                {
                    r.event_pending = true;
                }
            }
        }
        !incomplete
    }

    /// History executions whose map runs were never listed, newest first.
    pub fn history_executions_to_list(&self) -> Vec<String> {
        let mut out: Vec<(&String, f64)> = self
            .executions
            .iter()
            .filter(|(_, t)| t.history && t.listed == Listed::Never && !t.obs.running)
            .map(|(arn, t)| (arn, t.obs.start))
            .collect();
        out.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        out.into_iter().map(|(arn, _)| arn.clone()).collect()
    }

    /// Records all the map runs of an execution (ListMapRuns, or a complete events read).
    pub fn record_map_runs(&mut self, execution_arn: &str, map_run_arns: Vec<String>) {
        let Some(exec) = self.executions.get_mut(execution_arn) else {
            return;
        };
        self.discoveries += 1;
        exec.listed = if exec.obs.running {
            Listed::WhileRunning
        } else {
            Listed::Final
        };
        exec.redrive_at_listing = exec.obs.redrive_count;
        exec.discovered_at = self.discoveries;
        self.track_runs(execution_arn, map_run_arns);
    }

    fn track_runs(&mut self, execution_arn: &str, map_run_arns: Vec<String>) {
        let Some(exec) = self.executions.get(execution_arn) else {
            return;
        };
        let history = exec.history;
        for arn in map_run_arns {
            if self.runs.contains_key(&arn) {
                continue;
            }
            let Some(labels) = RunLabels::from_arns(&arn, execution_arn) else {
                tracing::warn!(map_run_arn = %arn, "ignoring map run with an unexpected ARN format");
                continue;
            };
            self.runs.insert(
                arn,
                TrackedRun {
                    labels,
                    execution_arn: execution_arn.to_owned(),
                    obs: None,
                    parent_redrive_at_describe: 0,
                    counted: None,
                    seen_running: false,
                    visible_until: None,
                    history,
                    last_described: f64::NEG_INFINITY,
                    changed: false,
                    tolerance_used_before: 0.0,
                    event_pending: false,
                    started_event: None,
                    series: OnceLock::new(),
                },
            );
        }
    }

    /// An execution's runs to describe before any other refresh, after its map runs were
    /// discovered: never described ones and ones its events flagged.
    pub fn runs_to_describe_first(&self, execution_arn: &str) -> Vec<String> {
        self.runs
            .iter()
            .filter(|(_, r)| {
                r.execution_arn == execution_arn
                    && !r.history
                    && (r.obs.is_none() || r.event_pending)
            })
            .map(|(arn, _)| arn.clone())
            .collect()
    }

    /// The DescribeMapRun calls of this poll (see [`DescribePlan`]). A terminal run is described
    /// again only when its parent was redriven and it had failed or been aborted (a redrive
    /// reruns those, never a succeeded run).
    pub fn runs_to_describe(&self, now: f64, due_after: f64) -> DescribePlan {
        let mut plan = DescribePlan::default();
        // (tier, urgency): runs nearing their tolerance not described for a poll interval first
        // (they serve the alert; a new run is shown running from its start event meanwhile),
        // then never described ones, overdue ones, the rest; within a tier by how long ago they
        // were described, weighted up for runs near their tolerance or that changed at their
        // last describe.
        let mut refresh: Vec<((u8, f64), &String)> = Vec::new();
        let mut backfill: Vec<(f64, &String)> = Vec::new();
        for (arn, r) in &self.runs {
            let parent = self.executions.get(&r.execution_arn);
            let parent_running = parent.is_some_and(|p| p.obs.running);
            if r.event_pending && !r.history {
                plan.required.push(arn.clone());
                continue;
            }
            let Some(obs) = &r.obs else {
                if r.history {
                    let start = parent.map_or(0.0, |p| p.obs.start);
                    backfill.push((start, arn));
                } else if parent_running {
                    // Never described: first in line after runs nearing their tolerance.
                    refresh.push(((1, f64::INFINITY), arn));
                } else {
                    plan.required.push(arn.clone());
                }
                continue;
            };
            if !obs.status.is_terminal() {
                if parent_running {
                    let age = now - r.last_described;
                    let nearing = r.nearing_tolerance();
                    let weight = if nearing {
                        NEAR_TOLERANCE_WEIGHT
                    } else if r.changed {
                        CHANGED_WEIGHT
                    } else {
                        1.0
                    };
                    // Half an interval: a run described late in one poll is due at the next.
                    let tier = if nearing && age >= (self.poll_interval / 2.0).min(due_after) {
                        0
                    } else if age >= due_after {
                        2
                    } else {
                        3
                    };
                    refresh.push(((tier, age * weight), arn));
                } else {
                    plan.required.push(arn.clone());
                }
                continue;
            }
            let Some(parent) = parent else { continue };
            let rerun = matches!(obs.status, MapRunStatus::Failed | MapRunStatus::Aborted);
            // Described since the parent's redrive but maybe before the run restarted: once
            // more, until a describe comes late enough after the redrive. A run the redrive does
            // not rerun (a Catch handled its failure, an earlier loop iteration) then rests.
            let maybe_not_restarted = parent.obs.running
                && parent.obs.redrive_count > obs.redrive_count
                && parent
                    .obs
                    .redrive_date
                    .is_some_and(|d| r.last_described < d + REDRIVE_RESTART_SECS);
            if rerun
                && (parent.obs.redrive_count != r.parent_redrive_at_describe || maybe_not_restarted)
            {
                plan.required.push(arn.clone());
            }
        }
        refresh.sort_by(|(a, x), (b, y)| a.0.cmp(&b.0).then(b.1.total_cmp(&a.1)).then(x.cmp(y)));
        plan.refresh = refresh.into_iter().map(|(_, arn)| arn.clone()).collect();
        backfill.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(b.1)));
        plan.backfill = backfill.into_iter().map(|(_, arn)| arn.clone()).collect();
        plan
    }

    /// Applies a DescribeMapRun result. A terminal run feeds the aggregate counters once; a redriven
    /// run that finishes again adds only the items that reached a finished status since. A run first
    /// seen after a redrive that started before the exporter (its earlier counts unknown) is a
    /// baseline: only later changes count.
    pub fn apply_describe(&mut self, obs: MapRunObs, now: f64) {
        let Some(run) = self.runs.get_mut(&obs.arn) else {
            return;
        };
        if let Some(parent) = self.executions.get(&run.execution_arn) {
            run.parent_redrive_at_describe = parent.obs.redrive_count;
        }
        run.event_pending = false;
        // A first describe is news too.
        run.tolerance_used_before = run.tolerance_used();
        run.changed = run.obs.as_ref().is_none_or(|prev| {
            prev.status != obs.status
                || prev.items != obs.items
                || prev.executions != obs.executions
        });
        run.last_described = now;
        // Counters exist at 0 from the first sighting, so the first finish shows in increase().
        let agg = self
            .aggregates
            .entry((
                run.labels.state_machine.clone(),
                run.labels.map_state.clone(),
            ))
            .or_default();
        let finished = obs.items.finished();
        // A run first seen after a redrive is a baseline only if it started before the exporter
        // did; one that started while we watched (redriven between two polls) counts in full.
        if run.obs.is_none()
            && run.counted.is_none()
            && obs.redrive_count > 0
            && obs.start < self.started_at
        {
            run.counted = Some(finished);
        }
        if obs.status.is_terminal() {
            let stop = obs.stop.unwrap_or(now);
            match run.counted {
                None if run.seen_running || stop >= self.started_at => {
                    let idx = MapRunStatus::TERMINAL
                        .iter()
                        .position(|s| *s == obs.status)
                        .expect("terminal");
                    agg.runs_finished[idx] += 1;
                    for (total, add) in agg.items_finished.iter_mut().zip(finished) {
                        *total += add;
                    }
                }
                None => {} // finished before the exporter started: a baseline, not an increase
                Some(prev) => {
                    for ((total, new), old) in agg.items_finished.iter_mut().zip(finished).zip(prev)
                    {
                        *total += new.saturating_sub(old);
                    }
                }
            }
            run.counted = Some(finished);
            run.visible_until = Some(stop + self.retention);
        } else {
            run.seen_running = true;
            run.visible_until = None;
        }
        run.obs = Some(obs);
        run.series = OnceLock::new();
    }

    /// A map run AWS no longer knows: drop it without touching counters.
    pub fn forget_run(&mut self, arn: &str) {
        self.runs.remove(arn);
    }

    /// Drops state nobody needs any more: runs and executions stopped longer ago than a redrive
    /// is possible. A run is kept while its parent execution runs or could still be redriven
    /// (within [`REDRIVE_WINDOW_SECS`] of the parent's stop) (ListMapRuns still returns it,
    /// and forgetting it would count it again). Per-run series hide after `retention` on their
    /// own (see [`Self::visible_runs`]).
    pub fn expire(&mut self, now: f64) {
        let horizon = now - REDRIVE_WINDOW_SECS;
        let executions = &self.executions;
        self.runs.retain(|_, r| match (&r.obs, r.visible_until) {
            (Some(obs), Some(_)) => {
                // AWS allows a redrive within 14 days of the *execution's* stop, which may be
                // long after the run's own: forgetting the run earlier would count it again.
                obs.stop.unwrap_or(now) >= horizon
                    || executions.get(&r.execution_arn).is_some_and(|e| {
                        e.obs.running || e.obs.stop.is_some_and(|stop| stop >= horizon)
                    })
            }
            _ => true,
        });
        let runs = &self.runs;
        self.executions.retain(|arn, e| {
            e.obs.running
                || e.last_seen >= horizon
                || runs.values().any(|r| &r.execution_arn == arn)
        });
    }

    /// History not read yet.
    pub fn backlog(&self) -> Backlog {
        Backlog {
            state_machines: self.history_to_list().len(),
            executions: self
                .executions
                .values()
                .filter(|t| t.history && t.listed == Listed::Never && !t.obs.running)
                .count(),
            map_runs: self
                .runs
                .values()
                .filter(|r| r.history && r.obs.is_none())
                .count(),
        }
    }

    /// Running map runs (as last described).
    pub fn open_run_count(&self) -> usize {
        self.runs
            .values()
            .filter(|r| r.obs.as_ref().is_some_and(|o| !o.status.is_terminal()))
            .count()
    }

    /// Executions believed running.
    pub fn running_execution_count(&self) -> usize {
        self.executions.values().filter(|e| e.obs.running).count()
    }

    /// Runs whose per-run series are shown at `now`, with their last description and the cache
    /// of its rendered series.
    pub fn visible_runs(
        &self,
        now: f64,
    ) -> impl Iterator<Item = (&RunLabels, &MapRunObs, &OnceLock<Sections>)> {
        self.runs.values().filter_map(move |r| {
            let obs = r.obs.as_ref()?;
            match r.visible_until {
                Some(until) if until < now => None,
                _ => Some((&r.labels, obs, &r.series)),
            }
        })
    }

    /// Runs not described yet that are surely running: found by a MapRunStarted event of a
    /// running execution that shows no run ended since. With their start time.
    pub fn started_runs(&self) -> impl Iterator<Item = (&RunLabels, f64)> {
        self.runs.values().filter_map(|r| {
            let at = r.started_event?;
            let parent_running = self
                .executions
                .get(&r.execution_arn)
                .is_some_and(|p| p.obs.running);
            (r.obs.is_none() && !r.event_pending && !r.history && parent_running)
                .then_some((&r.labels, at))
        })
    }

    /// Aggregate counters by (state machine, map state).
    pub fn aggregates(&self) -> &BTreeMap<(String, String), Aggregate> {
        &self.aggregates
    }

    /// Running map runs by (state machine, map state); every key of the aggregates is present.
    pub fn open_runs(&self) -> BTreeMap<(String, String), u64> {
        let mut out: BTreeMap<(String, String), u64> =
            self.aggregates.keys().map(|k| (k.clone(), 0)).collect();
        for r in self.runs.values() {
            if let Some(obs) = &r.obs {
                let open = out
                    .entry((r.labels.state_machine.clone(), r.labels.map_state.clone()))
                    .or_default();
                if !obs.status.is_terminal() {
                    *open += 1;
                }
            }
        }
        for (l, _) in self.started_runs() {
            *out.entry((l.state_machine.clone(), l.map_state.clone()))
                .or_default() += 1;
        }
        out
    }

    pub fn tracked_executions(&self) -> usize {
        self.executions.len()
    }

    pub fn tracked_map_runs(&self) -> usize {
        self.runs.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SM: &str = "arn:aws:states:us-east-1:123456789012:stateMachine:etl";
    const EXEC: &str = "arn:aws:states:us-east-1:123456789012:execution:etl:run-1";
    const RUN: &str = "arn:aws:states:us-east-1:123456789012:mapRun:etl/Fan Out:5f2a";

    fn exec(running: bool, redrive_count: i64) -> ExecutionObs {
        ExecutionObs {
            arn: EXEC.into(),
            state_machine_arn: SM.into(),
            name: "run-1".into(),
            running,
            start: 1000.0,
            stop: (!running).then_some(2000.0),
            redrive_count,
            redrive_date: (redrive_count > 0).then_some(2500.0),
        }
    }

    fn run(
        status: MapRunStatus,
        succeeded: i64,
        failed: i64,
        stop: Option<f64>,
        redrive_count: i64,
    ) -> MapRunObs {
        MapRunObs {
            arn: RUN.into(),
            execution_arn: EXEC.into(),
            status,
            start: 1000.0,
            stop,
            max_concurrency: 10,
            tolerated_failure_ratio: 0.1,
            tolerated_failure_count: 0,
            items: Counts {
                succeeded,
                failed,
                total: 100,
                pending: 100 - succeeded - failed,
                ..Counts::default()
            },
            executions: Counts::default(),
            redrive_count,
            redrive_date: None,
        }
    }

    fn key() -> (String, String) {
        ("etl".into(), "Fan Out".into())
    }

    /// Every run the poll would describe, whatever its kind.
    fn to_describe(t: &MapRunTracker) -> Vec<String> {
        let plan = t.runs_to_describe(0.0, f64::INFINITY);
        let mut all = plan.required;
        all.extend(plan.refresh);
        all.extend(plan.backfill);
        all
    }

    fn listing(t: &mut MapRunTracker, kind: Listing, listed: Vec<ExecutionObs>, now: f64) {
        t.observe_listing(SM, kind, listed, 0.0, now);
    }

    fn sm_obs(arn: &str, name: &str) -> StateMachineObs {
        StateMachineObs {
            arn: arn.into(),
            name: name.into(),
            created: 1.0,
        }
    }

    #[test]
    fn history_events_track_new_runs_and_flag_ended_or_redriven_ones_for_a_describe_now() {
        let mut t = MapRunTracker::new(500.0, 3600.0);
        listing(&mut t, Listing::Running, vec![exec(true, 0)], 1100.0);
        assert_eq!(t.events_read(EXEC), 0);
        let started = ExecutionEvents {
            newest: 4,
            started: vec![(RUN.into(), 1050.0)],
            complete: true,
            ..ExecutionEvents::default()
        };
        assert!(t.record_events(EXEC, started));
        assert_eq!(t.events_read(EXEC), 4);
        assert_eq!(t.runs_to_describe_first(EXEC), vec![RUN.to_string()]);
        t.apply_describe(run(MapRunStatus::Running, 10, 1, None, 0), 1100.0);
        assert!(t.runs_to_describe_first(EXEC).is_empty());
        assert!(t.runs_to_describe(1100.0, 1e9).required.is_empty());

        // A run of the execution ended: the open run is described now, not in its turn.
        let ended = ExecutionEvents {
            newest: 6,
            ended: true,
            complete: true,
            ..ExecutionEvents::default()
        };
        assert!(t.record_events(EXEC, ended));
        assert_eq!(
            t.runs_to_describe(1100.0, 1e9).required,
            vec![RUN.to_string()]
        );
        t.apply_describe(run(MapRunStatus::Failed, 10, 20, Some(1200.0), 0), 1200.0);
        assert!(t.runs_to_describe(1200.0, 1e9).required.is_empty());

        // Redriven: described again whatever the parent's listing says yet.
        let redriven = ExecutionEvents {
            newest: 8,
            redriven: vec![RUN.into()],
            complete: true,
            ..ExecutionEvents::default()
        };
        assert!(t.record_events(EXEC, redriven));
        assert_eq!(
            t.runs_to_describe(1300.0, 1e9).required,
            vec![RUN.to_string()]
        );

        // An incomplete read asks for ListMapRuns; the newest event read still moves on.
        let partial = ExecutionEvents {
            newest: 5000,
            complete: false,
            ..ExecutionEvents::default()
        };
        assert!(!t.record_events(EXEC, partial));
        assert_eq!(t.events_read(EXEC), 5000);
    }

    #[test]
    fn state_machines_listed_least_lately_come_first() {
        let mut t = MapRunTracker::new(500.0, 3600.0);
        let arn = |name: &str| format!("{SM}-{name}");
        let sms = ["a", "b", "c"].map(|n| sm_obs(&arn(n), n)).to_vec();
        for sm in t.observe_state_machines(sms, 3600.0, 1000.0) {
            t.set_definition(&sm, true, 1000.0);
        }
        let order = |t: &MapRunTracker| -> Vec<String> {
            t.listing_plan().into_iter().map(|p| p.arn).collect()
        };
        assert_eq!(order(&t), vec![arn("a"), arn("b"), arn("c")]);
        t.observe_listing(&arn("a"), Listing::Running, vec![], 0.0, 1100.0);
        assert_eq!(order(&t), vec![arn("b"), arn("c"), arn("a")]);
        t.observe_listing(&arn("c"), Listing::Running, vec![], 0.0, 1100.0);
        assert_eq!(order(&t), vec![arn("b"), arn("a"), arn("c")]);
    }

    #[test]
    fn executions_not_discovered_lately_come_first() {
        let mut t = MapRunTracker::new(500.0, 3600.0);
        let e = |name: &str| ExecutionObs {
            arn: format!("{EXEC}-{name}"),
            name: name.into(),
            ..exec(true, 0)
        };
        listing(
            &mut t,
            Listing::Running,
            vec![e("a"), e("b"), e("c")],
            1100.0,
        );
        let arn = |name: &str| format!("{EXEC}-{name}");
        assert_eq!(t.executions_to_list(), vec![arn("a"), arn("b"), arn("c")]);
        t.record_map_runs(&arn("a"), vec![]);
        t.record_map_runs(&arn("c"), vec![]);
        assert_eq!(t.executions_to_list(), vec![arn("b"), arn("a"), arn("c")]);
        t.record_map_runs(&arn("b"), vec![]);
        t.record_map_runs(&arn("a"), vec![]);
        assert_eq!(t.executions_to_list(), vec![arn("c"), arn("b"), arn("a")]);
    }

    #[test]
    fn labels_come_from_the_arns() {
        let l = RunLabels::from_arns(RUN, EXEC).unwrap();
        assert_eq!(l.state_machine, "etl");
        assert_eq!(l.map_state, "Fan Out");
        assert_eq!(l.map_run, "5f2a");
        assert_eq!(l.execution, "run-1");
        assert!(RunLabels::from_arns("arn:aws:states:x", EXEC).is_none());
    }

    #[test]
    fn a_run_finishing_after_start_feeds_counters_once_and_is_not_described_again() {
        let mut t = MapRunTracker::new(500.0, 3600.0);
        listing(&mut t, Listing::Running, vec![exec(true, 0)], 1100.0);
        assert_eq!(t.executions_to_list(), vec![EXEC.to_string()]);
        t.record_map_runs(EXEC, vec![RUN.into()]);
        assert_eq!(t.runs_to_describe(0.0, 1.0).refresh, vec![RUN.to_string()]);
        t.apply_describe(run(MapRunStatus::Running, 10, 1, None, 0), 1100.0);
        assert_eq!(t.aggregates()[&key()], Aggregate::default());
        assert_eq!(t.open_runs()[&key()], 1);
        assert_eq!(
            t.runs_to_describe(1100.0, 1e9).refresh,
            vec![RUN.to_string()]
        );

        // Parent stops between polls: one final list and one final describe, then nothing.
        listing(&mut t, Listing::Running, vec![], 2100.0);
        assert_eq!(t.executions_to_list(), vec![EXEC.to_string()]);
        t.record_map_runs(EXEC, vec![RUN.into()]);
        assert_eq!(t.runs_to_describe(0.0, 1.0).required, vec![RUN.to_string()]);
        t.apply_describe(run(MapRunStatus::Failed, 90, 10, Some(2000.0), 0), 2100.0);
        let agg = &t.aggregates()[&key()];
        assert_eq!(agg.runs_finished, [0, 1, 0]);
        assert_eq!(agg.items_finished, [90, 10, 0, 0]);
        assert_eq!(t.open_runs()[&key()], 0);
        for _ in 0..10 {
            listing(&mut t, Listing::Newest, vec![exec(false, 0)], 2200.0);
            assert!(t.executions_to_list().is_empty());
            assert!(to_describe(&t).is_empty());
        }
        // Describing the same terminal state again changes nothing.
        t.apply_describe(run(MapRunStatus::Failed, 90, 10, Some(2000.0), 0), 2300.0);
        assert_eq!(t.aggregates()[&key()].items_finished, [90, 10, 0, 0]);
    }

    #[test]
    fn a_redriven_run_adds_only_the_difference() {
        let mut t = MapRunTracker::new(500.0, 3600.0);
        listing(&mut t, Listing::Newest, vec![exec(false, 0)], 2100.0);
        t.record_map_runs(EXEC, vec![RUN.into()]);
        t.apply_describe(run(MapRunStatus::Failed, 90, 10, Some(2000.0), 0), 2100.0);

        // Redriven: the execution runs again with redriveCount 1.
        listing(&mut t, Listing::Running, vec![exec(true, 1)], 3000.0);
        assert_eq!(t.executions_to_list(), vec![EXEC.to_string()]);
        t.record_map_runs(EXEC, vec![RUN.into()]);
        assert_eq!(to_describe(&t), vec![RUN.to_string()]);
        t.apply_describe(run(MapRunStatus::Running, 95, 0, None, 1), 3000.0);
        assert_eq!(t.open_runs()[&key()], 1);
        t.apply_describe(
            run(MapRunStatus::Succeeded, 100, 0, Some(3500.0), 1),
            3600.0,
        );
        let agg = &t.aggregates()[&key()];
        assert_eq!(
            agg.runs_finished,
            [0, 1, 0],
            "a run counts as finished once"
        );
        assert_eq!(
            agg.items_finished,
            [100, 10, 0, 0],
            "only the 10 newly succeeded items are added"
        );
        listing(&mut t, Listing::Running, vec![], 3700.0);
        t.record_map_runs(EXEC, vec![RUN.into()]);
        assert!(to_describe(&t).is_empty());
    }

    #[test]
    fn a_redrive_describes_only_the_runs_it_reruns() {
        const OK_RUN: &str = "arn:aws:states:us-east-1:123456789012:mapRun:etl/Fan Out:ok";
        let mut t = MapRunTracker::new(500.0, 3600.0);
        listing(&mut t, Listing::Newest, vec![exec(false, 0)], 2100.0);
        t.record_map_runs(EXEC, vec![RUN.into(), OK_RUN.into()]);
        t.apply_describe(run(MapRunStatus::Failed, 90, 10, Some(2000.0), 0), 2100.0);
        let mut ok = run(MapRunStatus::Succeeded, 100, 0, Some(1900.0), 0);
        ok.arn = OK_RUN.into();
        t.apply_describe(ok, 2100.0);
        listing(&mut t, Listing::Redriven, vec![exec(false, 1)], 4000.0);
        assert_eq!(
            to_describe(&t),
            vec![RUN.to_string()],
            "the succeeded run of the redriven execution is untouched by the redrive"
        );
    }

    #[test]
    fn a_redrive_that_finished_between_polls_is_still_described_once() {
        let mut t = MapRunTracker::new(500.0, 3600.0);
        listing(&mut t, Listing::Newest, vec![exec(false, 0)], 2100.0);
        t.record_map_runs(EXEC, vec![RUN.into()]);
        t.apply_describe(run(MapRunStatus::Failed, 90, 10, Some(2000.0), 0), 2100.0);
        listing(&mut t, Listing::Redriven, vec![exec(false, 1)], 4000.0);
        assert_eq!(to_describe(&t), vec![RUN.to_string()]);
        t.apply_describe(
            run(MapRunStatus::Succeeded, 100, 0, Some(3500.0), 1),
            4000.0,
        );
        assert!(to_describe(&t).is_empty());
        assert_eq!(t.aggregates()[&key()].items_finished, [100, 10, 0, 0]);
    }

    #[test]
    fn an_old_execution_redriven_while_we_watch_is_tracked_from_a_baseline() {
        let mut t = MapRunTracker::new(2400.0, 3600.0);
        // Redriven before we started: history, ignored.
        let mut before = exec(false, 1);
        before.redrive_date = Some(2000.0);
        listing(&mut t, Listing::Redriven, vec![before], 3000.0);
        assert_eq!(t.tracked_executions(), 0);
        // Redriven after: its runs are listed and described, counting only what changes from now.
        listing(&mut t, Listing::Redriven, vec![exec(false, 1)], 3000.0);
        assert_eq!(t.executions_to_list(), vec![EXEC.to_string()]);
        t.record_map_runs(EXEC, vec![RUN.into()]);
        assert_eq!(to_describe(&t), vec![RUN.to_string()]);
        t.apply_describe(run(MapRunStatus::Running, 95, 0, None, 1), 3000.0);
        t.apply_describe(
            run(MapRunStatus::Succeeded, 100, 0, Some(3500.0), 1),
            3600.0,
        );
        let agg = &t.aggregates()[&key()];
        assert_eq!(agg.items_finished, [5, 0, 0, 0]);
        assert_eq!(agg.runs_finished, [0, 0, 0]);
    }

    #[test]
    fn runs_finished_before_start_feed_no_counter_but_show_series() {
        let mut t = MapRunTracker::new(5000.0, 3600.0);
        listing(&mut t, Listing::Newest, vec![exec(false, 0)], 5000.0);
        t.record_map_runs(EXEC, vec![RUN.into()]);
        t.apply_describe(run(MapRunStatus::Failed, 90, 10, Some(2000.0), 0), 5000.0);
        assert_eq!(t.aggregates()[&key()], Aggregate::default());
        assert_eq!(t.visible_runs(5000.0).count(), 1);
        // The series expire `retention` after the stop.
        assert_eq!(t.visible_runs(2000.0 + 3601.0).count(), 0);
        // Aggregates stay.
        assert!(t.aggregates().contains_key(&key()));
    }

    #[test]
    fn history_is_read_in_the_background_newest_first_and_never_counted() {
        let mut t = MapRunTracker::new(5000.0, 3600.0);
        t.observe_state_machines(vec![sm_obs(SM, "etl")], 3600.0, 5000.0);
        t.set_definition(SM, true, 5000.0);
        assert_eq!(t.history_to_list(), vec![SM.to_string()]);
        assert_eq!(t.backlog().state_machines, 1);
        let old = |name: &str, start: f64| ExecutionObs {
            arn: format!("{EXEC}-{name}"),
            name: name.into(),
            start,
            stop: Some(start + 10.0),
            ..exec(false, 0)
        };
        t.observe_listing(
            SM,
            Listing::History,
            vec![old("a", 3000.0), old("b", 4000.0), exec(true, 0)],
            1000.0,
            5000.0,
        );
        assert!(t.history_to_list().is_empty());
        assert_eq!(
            t.executions_to_list(),
            vec![EXEC.to_string()],
            "only the running one is open work"
        );
        assert_eq!(
            t.history_executions_to_list(),
            vec![format!("{EXEC}-b"), format!("{EXEC}-a")],
            "newest first"
        );
        assert_eq!(
            t.backlog(),
            Backlog {
                state_machines: 0,
                executions: 2,
                map_runs: 0
            }
        );
        let hist_run = "arn:aws:states:us-east-1:123456789012:mapRun:etl/Fan Out:old";
        t.record_map_runs(&format!("{EXEC}-b"), vec![hist_run.into()]);
        let plan = t.runs_to_describe(5000.0, 1e9);
        assert!(plan.required.is_empty());
        assert_eq!(plan.backfill, vec![hist_run.to_string()]);
        let mut obs = run(MapRunStatus::Failed, 90, 10, Some(4010.0), 0);
        obs.arn = hist_run.into();
        obs.execution_arn = format!("{EXEC}-b");
        t.apply_describe(obs, 5001.0);
        assert_eq!(t.aggregates()[&key()], Aggregate::default());
        assert_eq!(t.backlog().map_runs, 0);
        assert_eq!(t.backlog().executions, 1);
    }

    #[test]
    fn a_definition_that_gains_a_distributed_map_is_listed_back_to_the_check_that_showed_none() {
        const PLAIN: &str = "arn:aws:states:us-east-1:123456789012:stateMachine:plain";
        let mut t = MapRunTracker::new(0.0, 60.0);
        t.observe_state_machines(vec![sm_obs(PLAIN, "plain")], 3600.0, 100.0);
        t.set_definition(PLAIN, false, 100.0);
        // Edited to a Distributed Map at some point after 100; read again at the refresh.
        t.set_definition(PLAIN, true, 3700.0);
        // With a lookback of 10 minutes, the first listing would stop at 3100.
        assert_eq!(t.history_since(PLAIN, 3100.0), 100.0);
        // A state machine distributed from its first read goes back `lookback` only.
        t.observe_state_machines(vec![sm_obs(SM, "etl")], 3600.0, 3700.0);
        t.set_definition(SM, true, 3700.0);
        assert_eq!(t.history_since(SM, 3100.0), 3100.0);
    }

    #[test]
    fn only_state_machines_with_a_distributed_map_are_listed() {
        const PLAIN: &str = "arn:aws:states:us-east-1:123456789012:stateMachine:plain";
        let mut t = MapRunTracker::new(0.0, 60.0);
        let stale = t.observe_state_machines(
            vec![sm_obs(SM, "etl"), sm_obs(PLAIN, "plain")],
            3600.0,
            100.0,
        );
        assert_eq!(stale.len(), 2, "unknown definitions are read");
        assert!(
            t.listing_plan().is_empty(),
            "nothing listed before the definitions are known"
        );
        t.set_definition(SM, true, 100.0);
        t.set_definition(PLAIN, false, 100.0);
        let plan = t.listing_plan();
        assert_eq!(plan.len(), 1);
        assert_eq!(plan[0].arn, SM);
        assert!(plan[0].running && plan[0].newest_since.is_none());
        // Cached until the refresh interval, or until the state machine is re-created.
        assert!(t
            .observe_state_machines(
                vec![sm_obs(SM, "etl"), sm_obs(PLAIN, "plain")],
                3600.0,
                200.0
            )
            .is_empty());
        let mut recreated = sm_obs(PLAIN, "plain");
        recreated.created = 150.0;
        assert_eq!(
            t.observe_state_machines(vec![sm_obs(SM, "etl"), recreated.clone()], 3600.0, 300.0),
            vec![PLAIN.to_string()]
        );
        assert_eq!(
            t.observe_state_machines(vec![sm_obs(SM, "etl"), recreated], 3600.0, 3700.0)
                .len(),
            2,
            "the re-created one is still not described; the other is due again"
        );
    }

    #[test]
    fn after_the_history_listing_only_new_executions_and_running_ones_are_listed() {
        let mut t = MapRunTracker::new(0.0, 60.0);
        t.observe_state_machines(vec![sm_obs(SM, "etl")], 3600.0, 100.0);
        t.set_definition(SM, true, 100.0);
        t.observe_listing(SM, Listing::History, vec![exec(true, 0)], 50.0, 1100.0);
        let plan = &t.listing_plan()[0];
        assert!(
            plan.running,
            "a tracked running execution: its stop is seen by the RUNNING listing"
        );
        assert_eq!(
            plan.newest_since,
            Some(1000.0 - WATERMARK_OVERLAP_SECS),
            "the newest start seen, less the overlap"
        );
        listing(&mut t, Listing::Running, vec![], 1200.0);
        let plan = &t.listing_plan()[0];
        assert!(!plan.running);
        let mut newer = exec(false, 0);
        newer.arn = format!("{EXEC}-2");
        newer.start = 1150.0;
        listing(&mut t, Listing::Newest, vec![newer], 1200.0);
        assert_eq!(
            t.listing_plan()[0].newest_since,
            Some(1150.0 - WATERMARK_OVERLAP_SECS)
        );
        // Each state machine looks for redrives once every few polls.
        let scans = (0..REDRIVE_SCAN_EVERY_POLLS)
            .filter(|_| {
                t.observe_state_machines(vec![sm_obs(SM, "etl")], 3600.0, 1300.0);
                t.listing_plan()[0].redriven
            })
            .count();
        assert_eq!(scans, 1);
    }

    #[test]
    fn open_runs_are_refreshed_overdue_first_then_by_weighted_staleness() {
        let mut t = MapRunTracker::new(0.0, 60.0);
        listing(&mut t, Listing::Running, vec![exec(true, 0)], 100.0);
        let arn =
            |id: &str| format!("arn:aws:states:us-east-1:123456789012:mapRun:etl/Fan Out:{id}");
        t.record_map_runs(EXEC, ["calm", "near", "moving", "stale"].map(arn).to_vec());
        let describe = |t: &mut MapRunTracker, id: &str, failed: i64, succeeded: i64, at: f64| {
            let mut o = run(MapRunStatus::Running, succeeded, failed, None, 0);
            o.arn = arn(id);
            t.apply_describe(o, at);
        };
        describe(&mut t, "stale", 0, 10, 10.0);
        for (id, failed, succeeded) in [("calm", 1, 40), ("near", 3, 10), ("moving", 1, 40)] {
            describe(&mut t, id, failed, succeeded, 100.0);
        }
        describe(&mut t, "moving", 1, 50, 110.0);
        describe(&mut t, "calm", 1, 40, 110.0);
        // `near` failed 3 of its 13 processed items against 10% tolerated (only 3 of its 100
        // items so far); `moving` changed at its last describe.
        let plan = t.runs_to_describe(120.0, 100.0);
        assert!(plan.required.is_empty());
        assert_eq!(plan.refresh, ["stale", "near", "moving", "calm"].map(arn));
        // Not overdue, `stale` still comes first: 110 s since its describe (which was news)
        // outweighs `near`'s 20 s; weights order the rest.
        let plan = t.runs_to_describe(120.0, 1000.0);
        assert_eq!(plan.refresh, ["stale", "near", "moving", "calm"].map(arn));
        let plan = t.runs_to_describe(115.0, 1000.0);
        assert_eq!(plan.refresh, ["stale", "near", "moving", "calm"].map(arn));
    }

    #[test]
    fn a_finished_run_whose_tracking_expired_is_not_counted_again_while_its_parent_runs() {
        // A long Wait after the Map: the parent keeps running for weeks after its map run ended.
        let mut t = MapRunTracker::new(0.0, 60.0);
        listing(&mut t, Listing::Running, vec![exec(true, 0)], 1100.0);
        t.record_map_runs(EXEC, vec![RUN.into()]);
        t.apply_describe(run(MapRunStatus::Running, 10, 0, None, 0), 1100.0);
        t.apply_describe(
            run(MapRunStatus::Succeeded, 100, 0, Some(2000.0), 0),
            2100.0,
        );
        assert_eq!(t.aggregates()[&key()].runs_finished, [1, 0, 0]);
        for day in 1..=30 {
            let now = 2100.0 + day as f64 * 86400.0;
            listing(&mut t, Listing::Running, vec![exec(true, 0)], now);
            t.record_map_runs(EXEC, vec![RUN.into()]);
            let plan = t.runs_to_describe(now, 1e9);
            assert!(plan.required.is_empty() && plan.refresh.is_empty());
            t.expire(now);
        }
        assert_eq!(t.aggregates()[&key()].runs_finished, [1, 0, 0]);
        assert_eq!(t.aggregates()[&key()].items_finished, [100, 0, 0, 0]);
    }

    #[test]
    fn a_run_is_kept_until_its_parent_can_no_longer_be_redriven() {
        // The run succeeds on day 0 (counted); its parent runs on and fails on day 13.
        let day = 86400.0;
        let mut t = MapRunTracker::new(0.0, 60.0);
        listing(&mut t, Listing::Running, vec![exec(true, 0)], 1100.0);
        t.record_map_runs(EXEC, vec![RUN.into()]);
        t.apply_describe(
            run(MapRunStatus::Succeeded, 100, 0, Some(2000.0), 0),
            2100.0,
        );
        let mut failed = exec(false, 0);
        failed.stop = Some(2000.0 + 13.0 * day);
        listing(&mut t, Listing::Newest, vec![failed], 2100.0 + 13.0 * day);
        // Day 14 from the run's stop, day 1 from the parent's: a redrive is still possible.
        t.expire(2100.0 + 14.5 * day);
        // Day 20: the parent is redriven; the succeeded run is listed again, unchanged.
        let now = 2100.0 + 20.0 * day;
        let mut redriven = exec(true, 1);
        redriven.redrive_date = Some(now - 10.0);
        listing(&mut t, Listing::Running, vec![redriven], now);
        t.record_map_runs(EXEC, vec![RUN.into()]);
        for arn in to_describe(&t) {
            assert_eq!(arn, RUN);
            t.apply_describe(run(MapRunStatus::Succeeded, 100, 0, Some(2000.0), 0), now);
        }
        assert_eq!(t.aggregates()[&key()].runs_finished, [1, 0, 0]);
        assert_eq!(t.aggregates()[&key()].items_finished, [100, 0, 0, 0]);
    }

    #[test]
    fn a_run_started_while_we_watch_and_redriven_before_its_first_describe_counts_in_full() {
        // Exporter started at 0, the run at 1000: it failed and was redriven between two polls.
        let mut t = MapRunTracker::new(0.0, 60.0);
        listing(&mut t, Listing::Running, vec![exec(true, 1)], 3000.0);
        t.record_map_runs(EXEC, vec![RUN.into()]);
        t.apply_describe(
            run(MapRunStatus::Succeeded, 100, 0, Some(2900.0), 1),
            3000.0,
        );
        assert_eq!(t.aggregates()[&key()].runs_finished, [1, 0, 0]);
        assert_eq!(t.aggregates()[&key()].items_finished, [100, 0, 0, 0]);
    }

    #[test]
    fn state_is_forgotten_after_the_redrive_window_and_with_its_state_machine() {
        let mut t = MapRunTracker::new(0.0, 60.0);
        t.observe_state_machines(vec![sm_obs(SM, "etl")], 3600.0, 2100.0);
        listing(&mut t, Listing::Newest, vec![exec(false, 0)], 2100.0);
        t.record_map_runs(EXEC, vec![RUN.into()]);
        t.apply_describe(
            run(MapRunStatus::Succeeded, 100, 0, Some(2000.0), 0),
            2100.0,
        );
        t.expire(2100.0 + 86400.0);
        assert_eq!(
            t.tracked_map_runs(),
            1,
            "kept for dedup while a redrive is possible"
        );
        t.expire(2100.0 + REDRIVE_WINDOW_SECS + 1.0);
        assert_eq!(t.tracked_map_runs(), 0);
        assert_eq!(t.tracked_executions(), 0);

        listing(&mut t, Listing::Running, vec![exec(true, 0)], 10.0);
        t.record_map_runs(EXEC, vec![RUN.into()]);
        t.observe_state_machines(vec![], 3600.0, 20.0);
        assert_eq!(t.tracked_executions(), 0);
        assert_eq!(t.tracked_map_runs(), 0);
    }

    #[test]
    fn aggregates_of_deleted_or_deselected_state_machines_are_dropped() {
        let mut t = MapRunTracker::new(0.0, 60.0);
        t.observe_state_machines(vec![sm_obs(SM, "etl")], 3600.0, 100.0);
        listing(&mut t, Listing::Newest, vec![exec(false, 0)], 2100.0);
        t.record_map_runs(EXEC, vec![RUN.into()]);
        t.apply_describe(
            run(MapRunStatus::Succeeded, 100, 0, Some(2000.0), 0),
            2100.0,
        );
        assert_eq!(t.aggregates().len(), 1);
        t.observe_state_machines(vec![sm_obs(SM, "etl")], 3600.0, 2200.0);
        assert_eq!(
            t.aggregates().len(),
            1,
            "kept while the state machine is selected"
        );
        t.observe_state_machines(vec![], 3600.0, 2300.0);
        assert!(t.aggregates().is_empty());
        assert!(t.open_runs().is_empty());
    }

    #[test]
    fn a_listing_that_is_not_the_running_one_does_not_stop_executions() {
        let mut t = MapRunTracker::new(0.0, 60.0);
        listing(&mut t, Listing::Running, vec![exec(true, 0)], 10.0);
        t.record_map_runs(EXEC, vec![]);
        listing(&mut t, Listing::Newest, vec![], 20.0);
        assert_eq!(
            t.executions_to_list(),
            vec![EXEC.to_string()],
            "still believed running"
        );
    }

    #[test]
    fn a_run_failing_near_its_tolerated_percentage_is_near_early_in_its_items() {
        // A million items, 300 done, 9% of them failed against 10% tolerated: only 0.003% of
        // every item has failed, but the run is on its way to 9%.
        let mut obs = run(MapRunStatus::Running, 273, 27, None, 0);
        obs.items.total = 1_000_000;
        obs.items.pending = 1_000_000 - 300;
        let mut r = MapRunTracker::new(0.0, 60.0);
        listing(&mut r, Listing::Running, vec![exec(true, 0)], 100.0);
        r.record_map_runs(EXEC, vec![RUN.into()]);
        r.apply_describe(obs.clone(), 100.0);
        assert!(r.runs[RUN].nearing_tolerance());
        obs.items.succeeded = 297;
        obs.items.failed = 3;
        r.apply_describe(obs, 160.0);
        assert!(
            !r.runs[RUN].nearing_tolerance(),
            "1% of the processed items"
        );
    }
}
#[cfg(test)]
mod refresh_order {
    use super::*;

    const SM: &str = "arn:aws:states:us-east-1:123456789012:stateMachine:etl";
    const EXEC: &str = "arn:aws:states:us-east-1:123456789012:execution:etl:live";

    #[test]
    fn a_run_whose_failures_rise_fast_is_nearing_its_tolerance_before_half() {
        let mut r = TrackedRun {
            labels: RunLabels::from_arns(
                "arn:aws:states:us-east-1:123456789012:mapRun:etl/Fan:001",
                EXEC,
            )
            .unwrap(),
            execution_arn: EXEC.into(),
            obs: None,
            parent_redrive_at_describe: 0,
            counted: None,
            seen_running: false,
            visible_until: None,
            history: false,
            last_described: 0.0,
            changed: false,
            tolerance_used_before: 0.0,
            event_pending: false,
            started_event: None,
            series: OnceLock::new(),
        };
        let with_failed = |failed: i64| MapRunObs {
            arn: String::new(),
            execution_arn: EXEC.into(),
            status: MapRunStatus::Running,
            start: 0.0,
            stop: None,
            max_concurrency: 0,
            tolerated_failure_ratio: 0.0,
            tolerated_failure_count: 100,
            items: Counts {
                total: 10_000,
                failed,
                ..Counts::default()
            },
            executions: Counts::default(),
            redrive_count: 0,
            redrive_date: None,
        };
        r.obs = Some(with_failed(10));
        assert!(
            !r.nearing_tolerance(),
            "10 of 100 tolerated, +10 since the last describe"
        );
        r.tolerance_used_before = r.tolerance_used();
        r.obs = Some(with_failed(40));
        assert!(
            r.nearing_tolerance(),
            "40 of 100, +30 a describe: 100 within two more"
        );
        r.tolerance_used_before = 0.39;
        assert!(!r.nearing_tolerance(), "40 of 100, +1 a describe");
    }

    #[test]
    fn no_open_run_waits_more_than_one_pass_and_near_ones_go_first() {
        // 100 open runs, 10 near their tolerance, all changing; 30 describes per 60 s poll
        // (0.5/s). The near ones are described every poll (10 of the 30 describes), so a pass
        // over the 90 others takes 90 / 20 polls (270 s): none may wait more than that and one
        // poll, and a near one no more than a poll and 20 s.
        let mut t = MapRunTracker::new(0.0, 3600.0);
        t.observe_listing(
            SM,
            Listing::Running,
            vec![ExecutionObs {
                arn: EXEC.into(),
                state_machine_arn: SM.into(),
                name: "live".into(),
                running: true,
                start: 0.0,
                stop: None,
                redrive_count: 0,
                redrive_date: None,
            }],
            0.0,
            0.0,
        );
        let arn = |i: usize| format!("arn:aws:states:us-east-1:123456789012:mapRun:etl/Fan:{i:03}");
        t.record_map_runs(EXEC, (0..100).map(arn).collect());
        let obs = |i: usize, step: i64| MapRunObs {
            arn: arn(i),
            execution_arn: EXEC.into(),
            status: MapRunStatus::Running,
            start: 0.0,
            stop: None,
            max_concurrency: 0,
            tolerated_failure_ratio: 0.1,
            tolerated_failure_count: 0,
            // Near ones failed 6% of all their items against 10% tolerated, the others 1% of
            // those processed.
            items: Counts {
                total: 10_000,
                succeeded: step * 100,
                failed: if i % 10 == 0 { 600 } else { step },
                ..Counts::default()
            },
            executions: Counts::default(),
            redrive_count: 0,
            redrive_date: None,
        };
        for i in 0..100 {
            t.apply_describe(obs(i, 1), 1.0);
        }
        let mut last = vec![1.0; 100];
        let mut worst: f64 = 0.0;
        let mut worst_near: f64 = 0.0;
        let mut near_described = 0;
        for poll in 1..=20 {
            let now = 1.0 + poll as f64 * 60.0;
            let plan = t.runs_to_describe(now, 100.0 / 0.5);
            for a in plan.refresh.iter().take(30) {
                let i: usize = a.rsplit(':').next().unwrap().parse().unwrap();
                worst = worst.max(now - last[i]);
                if i % 10 == 0 {
                    near_described += 1;
                    worst_near = worst_near.max(now - last[i]);
                }
                last[i] = now;
                t.apply_describe(obs(i, poll + 1), now);
            }
        }
        assert!(worst <= 270.0 + 60.0, "an open run waited {worst} s");
        assert!(
            worst_near <= 60.0 + 20.0,
            "a run near its tolerance waited {worst_near} s"
        );
        assert!(
            near_described > 20 * 30 / 10,
            "runs near their tolerance are described more often than their share: {near_described}"
        );
    }
}
