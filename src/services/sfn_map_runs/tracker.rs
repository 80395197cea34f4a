//! What the exporter knows about Step Functions executions and their Map Runs between polls:
//! which counters a finished run feeds, what is shown, and when state expires. What the next
//! poll calls is planned from it in plan.rs. Times are Unix seconds (f64).

use std::collections::{BTreeMap, BTreeSet};

use super::obs::{
    ExecutionEvents, ExecutionObs, Listing, MapRunObs, MapRunStatus, StateMachineObs,
};

/// How long AWS lets a stopped execution be redriven; per-run dedup state is kept this long.
pub const REDRIVE_WINDOW_SECS: f64 = 14.0 * 86400.0;

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

/// A run whose per-run series are shown: its last description and that describe's serial
/// number (unique across runs).
pub struct ShownRun<'a> {
    pub describe: u64,
    pub labels: &'a RunLabels,
    pub obs: &'a MapRunObs,
}

/// Counters per (state machine, map state); they outlive the per-run series.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Aggregate {
    /// By [`MapRunStatus::TERMINAL`].
    pub runs_finished: [u64; 3],
    /// By [`FINISHED_ITEM_STATUSES`].
    pub items_finished: [u64; 4],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Listed {
    Never,
    WhileRunning,
    Final,
}

#[derive(Debug)]
pub(super) struct TrackedStateMachine {
    pub(super) name: String,
    pub(super) created: f64,
    /// Whether the definition has a Distributed Map; `None` until described.
    pub(super) distributed: Option<bool>,
    pub(super) checked_at: f64,
    /// The definition last said "no Distributed Map" at this time, and has one since: its first
    /// listing goes back to here even beyond `lookback`, or runs of the gap would be missed.
    pub(super) plain_until: Option<f64>,
    /// Start time of the newest execution a complete listing showed; `None` until the history
    /// listing completed.
    pub(super) watermark: Option<f64>,
    /// When its executions were last listed, as a [`MapRunTracker`] sequence number (0: never).
    pub(super) listed_at: u64,
}

#[derive(Debug)]
pub(super) struct TrackedExecution {
    pub(super) obs: ExecutionObs,
    pub(super) listed: Listed,
    pub(super) redrive_at_listing: i64,
    pub(super) last_seen: f64,
    /// Found finished by the first listing: its runs are described in the background.
    pub(super) history: bool,
    /// The newest history event read (see [`ExecutionEvents`]); 0 before the first read.
    pub(super) events_read: i64,
    /// When its map runs were last listed or its events read, as a [`MapRunTracker`] sequence
    /// number (0: never).
    pub(super) discovered_at: u64,
}

#[derive(Debug)]
pub(super) struct TrackedRun {
    pub(super) labels: RunLabels,
    pub(super) execution_arn: String,
    pub(super) obs: Option<MapRunObs>,
    pub(super) parent_redrive_at_describe: i64,
    /// Finished item counts already fed into the aggregate counters (or taken as a baseline).
    pub(super) counted: Option<[u64; 4]>,
    /// Seen running: it then surely finished while we watched, whatever the clocks say.
    pub(super) seen_running: bool,
    /// Per-run series are shown until then; `None` while running.
    pub(super) visible_until: Option<f64>,
    pub(super) history: bool,
    pub(super) last_described: f64,
    /// The last describe showed different counts or status than the one before.
    pub(super) changed: bool,
    /// [`TrackedRun::tolerance_used`] as of the describe before the last.
    pub(super) tolerance_used_before: f64,
    /// The parent's history showed the run (or a run of the parent) end or be redriven since
    /// the last describe: describe it now.
    pub(super) event_pending: bool,
    /// When its MapRunStarted event happened, if it was found in the parent's history: until
    /// its first describe it is shown running from then.
    pub(super) started_event: Option<f64>,
    /// The serial number of its last describe (0: never): what is made from a describe (the
    /// rendered series) can be kept until the next.
    pub(super) describe: u64,
}

#[derive(Debug)]
pub struct MapRunTracker {
    pub(super) started_at: f64,
    pub(super) retention: f64,
    pub(super) polls: u64,
    pub(super) state_machines: BTreeMap<String, TrackedStateMachine>,
    pub(super) executions: BTreeMap<String, TrackedExecution>,
    pub(super) runs: BTreeMap<String, TrackedRun>,
    pub(super) aggregates: BTreeMap<(String, String), Aggregate>,
    /// Listings of executions and of map runs (or events read) so far, to order them by staleness.
    pub(super) discoveries: u64,
    /// DescribeMapRun results applied so far, to number them.
    describes: u64,
    /// Whether each published version read has a Distributed Map. Versions never change, so
    /// each is read once; executions of a version without one are not searched for map runs.
    pub(super) versions: BTreeMap<String, bool>,
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
            describes: 0,
            versions: BTreeMap::new(),
        }
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
        self.drop_orphans();
        self.state_machines
            .iter()
            .filter(|(_, s)| s.distributed.is_none() || now - s.checked_at >= refresh_secs)
            .map(|(arn, _)| arn.clone())
            .collect()
    }

    /// A state machine AWS no longer knows (a call about it answered that it does not exist):
    /// dropped with its executions, runs and aggregates, as if a listing had left it out.
    pub fn forget_state_machine(&mut self, arn: &str) {
        if self.state_machines.remove(arn).is_some() {
            self.drop_orphans();
        }
    }

    /// Drops what belongs to a state machine no longer tracked.
    fn drop_orphans(&mut self) {
        let sms = &self.state_machines;
        self.executions
            .retain(|_, e| sms.contains_key(&e.obs.state_machine_arn));
        let executions = &self.executions;
        self.runs
            .retain(|_, r| executions.contains_key(&r.execution_arn));
        let names: BTreeSet<&str> = sms.values().map(|s| s.name.as_str()).collect();
        self.aggregates
            .retain(|(sm, _), _| names.contains(sm.as_str()));
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

    /// Whether a published version has a Distributed Map, if it was read.
    pub fn version(&self, version_arn: &str) -> Option<bool> {
        self.versions.get(version_arn).copied()
    }

    /// Records what a published version's definition says (for good: versions never change).
    pub fn set_version(&mut self, version_arn: &str, distributed: bool) {
        self.versions.insert(version_arn.to_owned(), distributed);
    }

    /// Forgets the versions of a state machine that are no longer among `published`.
    pub fn keep_versions(&mut self, state_machine_arn: &str, published: &[String]) {
        let prefix = format!("{state_machine_arn}:");
        self.versions
            .retain(|v, _| !v.starts_with(&prefix) || published.contains(v));
    }

    /// Records a complete listing of one state machine's executions. `since` is where a
    /// [`Listing::Lookback`] listing stopped (`now - lookback`).
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
                    let history = kind == Listing::Lookback && !obs.running;
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
                Listing::Lookback => sm.watermark = Some(newest.unwrap_or(since).max(since)),
                Listing::Newest => {
                    if let (Some(w), Some(n)) = (sm.watermark, newest) {
                        sm.watermark = Some(w.max(n));
                    }
                }
                Listing::Running | Listing::Redriven => {}
            }
        }
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
                    describe: 0,
                },
            );
        }
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
        self.describes += 1;
        run.describe = self.describes;
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

    /// Runs whose per-run series are shown at `now`, with their last description.
    pub fn visible_runs(&self, now: f64) -> impl Iterator<Item = ShownRun<'_>> {
        self.runs.values().filter_map(move |r| {
            let obs = r.obs.as_ref()?;
            match r.visible_until {
                Some(until) if until < now => None,
                _ => Some(ShownRun {
                    describe: r.describe,
                    labels: &r.labels,
                    obs,
                }),
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
    use crate::services::sfn_map_runs::fixtures::*;
    use crate::services::sfn_map_runs::plan::Backlog;

    #[test]
    fn execution_events_track_new_runs_and_flag_ended_or_redriven_ones_for_a_describe_now() {
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
        t.apply_describe(run(MapRunStatus::Running, 50, 1, None, 0), 1100.0);
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
            Listing::Lookback,
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
}
