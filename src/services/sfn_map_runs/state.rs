//! What the exporter knows about Step Functions executions and their Map Runs between polls:
//! which calls the next poll needs, which counters a finished run feeds, and when series expire.
//! Times are Unix seconds (f64) so tests can use plain numbers.

use std::collections::{BTreeMap, BTreeSet};

/// How long AWS lets a stopped execution be redriven; per-run dedup state is kept this long.
pub const REDRIVE_WINDOW_SECS: f64 = 14.0 * 86400.0;

#[derive(Debug, Clone, PartialEq)]
pub struct ExecutionObs {
    pub arn: String,
    pub state_machine_arn: String,
    pub name: String,
    pub running: bool,
    pub start: f64,
    pub stop: Option<f64>,
    pub redrive_count: i64,
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Listed {
    Never,
    WhileRunning,
    Final,
}

#[derive(Debug)]
struct TrackedExecution {
    obs: ExecutionObs,
    listed: Listed,
    redrive_at_listing: i64,
    last_seen: f64,
}

#[derive(Debug)]
struct TrackedRun {
    labels: RunLabels,
    execution_arn: String,
    obs: Option<MapRunObs>,
    parent_redrive_at_describe: i64,
    /// Finished item counts already fed into the aggregate counters.
    counted: Option<[u64; 4]>,
    /// Seen running: it then surely finished while we watched, whatever the clocks say.
    seen_running: bool,
    /// Per-run series are shown until then; `None` while running.
    visible_until: Option<f64>,
}

#[derive(Debug)]
pub struct MapRunTracker {
    started_at: f64,
    retention: f64,
    executions: BTreeMap<String, TrackedExecution>,
    runs: BTreeMap<String, TrackedRun>,
    aggregates: BTreeMap<(String, String), Aggregate>,
}

impl MapRunTracker {
    /// `started_at`: runs that stopped before it feed no counters (they finished before we watched).
    pub fn new(started_at: f64, retention_secs: f64) -> Self {
        Self {
            started_at,
            retention: retention_secs,
            executions: BTreeMap::new(),
            runs: BTreeMap::new(),
            aggregates: BTreeMap::new(),
        }
    }

    /// Drops everything belonging to state machines that are gone or no longer selected.
    pub fn retain_state_machines(&mut self, arns: &BTreeSet<String>) {
        self.executions
            .retain(|_, e| arns.contains(&e.obs.state_machine_arn));
        let executions = &self.executions;
        self.runs
            .retain(|_, r| executions.contains_key(&r.execution_arn));
    }

    /// Records a state machine's executions from this poll's listings. When the RUNNING listing
    /// was complete, executions we believed running but absent from it have stopped.
    pub fn observe_executions(
        &mut self,
        state_machine_arn: &str,
        listed: Vec<ExecutionObs>,
        running_list_complete: bool,
        now: f64,
    ) {
        let mut seen_running = BTreeSet::new();
        for obs in listed {
            if obs.running {
                seen_running.insert(obs.arn.clone());
            }
            match self.executions.get_mut(&obs.arn) {
                Some(t) => {
                    t.obs = obs;
                    t.last_seen = now;
                }
                None => {
                    self.executions.insert(
                        obs.arn.clone(),
                        TrackedExecution {
                            redrive_at_listing: obs.redrive_count,
                            obs,
                            listed: Listed::Never,
                            last_seen: now,
                        },
                    );
                }
            }
        }
        if running_list_complete {
            for (arn, t) in self.executions.iter_mut() {
                if t.obs.state_machine_arn == state_machine_arn
                    && t.obs.running
                    && !seen_running.contains(arn)
                {
                    t.obs.running = false;
                }
            }
        }
    }

    /// Executions whose map runs must be listed: running ones, finished ones not listed since they
    /// finished, and redriven ones.
    pub fn executions_to_list(&self) -> Vec<String> {
        self.executions
            .iter()
            .filter(|(_, t)| {
                t.obs.running
                    || t.listed != Listed::Final
                    || t.redrive_at_listing != t.obs.redrive_count
            })
            .map(|(arn, _)| arn.clone())
            .collect()
    }

    /// Records the map runs ListMapRuns returned for an execution.
    pub fn record_map_runs(&mut self, execution_arn: &str, map_run_arns: Vec<String>) {
        let Some(exec) = self.executions.get_mut(execution_arn) else {
            return;
        };
        exec.listed = if exec.obs.running {
            Listed::WhileRunning
        } else {
            Listed::Final
        };
        exec.redrive_at_listing = exec.obs.redrive_count;
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
                },
            );
        }
    }

    /// Map runs that need DescribeMapRun: new or running ones, and terminal ones whose parent
    /// execution was redriven since their last describe. Terminal runs are otherwise never described again.
    pub fn runs_to_describe(&self) -> Vec<String> {
        self.runs
            .iter()
            .filter(|(_, r)| {
                let Some(obs) = &r.obs else { return true };
                if !obs.status.is_terminal() {
                    return true;
                }
                let Some(parent) = self.executions.get(&r.execution_arn) else {
                    return false;
                };
                parent.obs.redrive_count != r.parent_redrive_at_describe
                    || (parent.obs.running && parent.obs.redrive_count > obs.redrive_count)
            })
            .map(|(arn, _)| arn.clone())
            .collect()
    }

    /// Applies a DescribeMapRun result. A terminal run feeds the aggregate counters once; a redriven
    /// run that finishes again adds only the items that reached a finished status since.
    pub fn apply_describe(&mut self, obs: MapRunObs, now: f64) {
        let Some(run) = self.runs.get_mut(&obs.arn) else {
            return;
        };
        if let Some(parent) = self.executions.get(&run.execution_arn) {
            run.parent_redrive_at_describe = parent.obs.redrive_count;
        }
        // Counters exist at 0 from the first sighting, so the first finish shows in increase().
        let agg = self
            .aggregates
            .entry((
                run.labels.state_machine.clone(),
                run.labels.map_state.clone(),
            ))
            .or_default();
        if obs.status.is_terminal() {
            let stop = obs.stop.unwrap_or(now);
            let finished = obs.items.finished();
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
    }

    /// A map run AWS no longer knows: drop it without touching counters.
    pub fn forget_run(&mut self, arn: &str) {
        self.runs.remove(arn);
    }

    /// Drops state nobody needs any more: runs and executions stopped longer ago than a redrive
    /// is possible. Per-run series hide after `retention` on their own (see [`Self::visible_runs`]).
    pub fn expire(&mut self, now: f64) {
        let horizon = now - REDRIVE_WINDOW_SECS;
        self.runs.retain(|_, r| match (&r.obs, r.visible_until) {
            (Some(obs), Some(_)) => obs.stop.unwrap_or(now) >= horizon,
            _ => true,
        });
        let runs = &self.runs;
        self.executions.retain(|arn, e| {
            e.obs.running
                || e.last_seen >= horizon
                || runs.values().any(|r| &r.execution_arn == arn)
        });
    }

    /// Runs whose per-run series are shown at `now`, with their last description.
    pub fn visible_runs(&self, now: f64) -> impl Iterator<Item = (&RunLabels, &MapRunObs)> {
        self.runs.values().filter_map(move |r| {
            let obs = r.obs.as_ref()?;
            match r.visible_until {
                Some(until) if until < now => None,
                _ => Some((&r.labels, obs)),
            }
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
        t.observe_executions(SM, vec![exec(true, 0)], true, 1100.0);
        assert_eq!(t.executions_to_list(), vec![EXEC.to_string()]);
        t.record_map_runs(EXEC, vec![RUN.into()]);
        assert_eq!(t.runs_to_describe(), vec![RUN.to_string()]);
        t.apply_describe(run(MapRunStatus::Running, 10, 1, None, 0), 1100.0);
        assert_eq!(t.aggregates()[&key()], Aggregate::default());
        assert_eq!(t.open_runs()[&key()], 1);

        // Parent stops between polls: one final list and one final describe, then nothing.
        t.observe_executions(SM, vec![], true, 2100.0);
        assert_eq!(t.executions_to_list(), vec![EXEC.to_string()]);
        t.record_map_runs(EXEC, vec![RUN.into()]);
        assert_eq!(t.runs_to_describe(), vec![RUN.to_string()]);
        t.apply_describe(run(MapRunStatus::Failed, 90, 10, Some(2000.0), 0), 2100.0);
        let agg = &t.aggregates()[&key()];
        assert_eq!(agg.runs_finished, [0, 1, 0]);
        assert_eq!(agg.items_finished, [90, 10, 0, 0]);
        assert_eq!(t.open_runs()[&key()], 0);
        for _ in 0..10 {
            t.observe_executions(SM, vec![exec(false, 0)], true, 2200.0);
            assert!(t.executions_to_list().is_empty());
            assert!(t.runs_to_describe().is_empty());
        }
        // Describing the same terminal state again changes nothing.
        t.apply_describe(run(MapRunStatus::Failed, 90, 10, Some(2000.0), 0), 2300.0);
        assert_eq!(t.aggregates()[&key()].items_finished, [90, 10, 0, 0]);
    }

    #[test]
    fn a_redriven_run_adds_only_the_difference() {
        let mut t = MapRunTracker::new(500.0, 3600.0);
        t.observe_executions(SM, vec![exec(false, 0)], true, 2100.0);
        t.record_map_runs(EXEC, vec![RUN.into()]);
        t.apply_describe(run(MapRunStatus::Failed, 90, 10, Some(2000.0), 0), 2100.0);

        // Redriven: the execution runs again with redriveCount 1.
        t.observe_executions(SM, vec![exec(true, 1)], true, 3000.0);
        assert_eq!(t.executions_to_list(), vec![EXEC.to_string()]);
        t.record_map_runs(EXEC, vec![RUN.into()]);
        assert_eq!(t.runs_to_describe(), vec![RUN.to_string()]);
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
        t.observe_executions(SM, vec![exec(false, 1)], true, 3700.0);
        t.record_map_runs(EXEC, vec![RUN.into()]);
        assert!(t.runs_to_describe().is_empty());
    }

    #[test]
    fn a_redrive_that_finished_between_polls_is_still_described_once() {
        let mut t = MapRunTracker::new(500.0, 3600.0);
        t.observe_executions(SM, vec![exec(false, 0)], true, 2100.0);
        t.record_map_runs(EXEC, vec![RUN.into()]);
        t.apply_describe(run(MapRunStatus::Failed, 90, 10, Some(2000.0), 0), 2100.0);
        t.observe_executions(SM, vec![exec(false, 1)], true, 4000.0);
        assert_eq!(t.runs_to_describe(), vec![RUN.to_string()]);
        t.apply_describe(
            run(MapRunStatus::Succeeded, 100, 0, Some(3500.0), 1),
            4000.0,
        );
        assert!(t.runs_to_describe().is_empty());
        assert_eq!(t.aggregates()[&key()].items_finished, [100, 10, 0, 0]);
    }

    #[test]
    fn runs_finished_before_start_feed_no_counter_but_show_series() {
        let mut t = MapRunTracker::new(5000.0, 3600.0);
        t.observe_executions(SM, vec![exec(false, 0)], true, 5000.0);
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
    fn state_is_forgotten_after_the_redrive_window_and_with_its_state_machine() {
        let mut t = MapRunTracker::new(0.0, 60.0);
        t.observe_executions(SM, vec![exec(false, 0)], true, 2100.0);
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

        t.observe_executions(SM, vec![exec(true, 0)], true, 10.0);
        t.record_map_runs(EXEC, vec![RUN.into()]);
        t.retain_state_machines(&BTreeSet::new());
        assert_eq!(t.tracked_executions(), 0);
        assert_eq!(t.tracked_map_runs(), 0);
    }

    #[test]
    fn an_incomplete_running_listing_does_not_stop_executions() {
        let mut t = MapRunTracker::new(0.0, 60.0);
        t.observe_executions(SM, vec![exec(true, 0)], true, 10.0);
        t.record_map_runs(EXEC, vec![]);
        t.observe_executions(SM, vec![], false, 20.0);
        assert_eq!(
            t.executions_to_list(),
            vec![EXEC.to_string()],
            "still believed running"
        );
    }
}
