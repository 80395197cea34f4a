//! What the exporter knows about Transfer Family workflow executions between polls.
//!
//! AWS only shows executions while they are in progress (ListExecutions, DescribeExecution), and
//! gives them no start time. So an execution is tracked from its first sighting, and it has
//! finished once a complete in-progress listing of its workflow no longer shows it (or
//! DescribeExecution answers ResourceNotFoundException); it then counts once in
//! `finished[last status seen]`. Times are Unix seconds (f64) so tests can use plain numbers.
//!
//! Rules decided here:
//! - Describe: only an execution that can show a failed step is described: one listed as
//!   HANDLING_EXCEPTION or EXCEPTION, when that status is new since its last successful describe,
//!   and on every poll while it is HANDLING_EXCEPTION (OnExceptionSteps may fail without its
//!   status changing). A step failure always moves an IN_PROGRESS execution to
//!   HANDLING_EXCEPTION or ends it in EXCEPTION, so an IN_PROGRESS (or COMPLETED) execution has
//!   no failed step to show: it is never described. A failure followed by the end of the
//!   execution between two polls cannot be seen by any poller (describing a finished execution
//!   answers ResourceNotFoundException).
//! - Baseline: workflows present in the source's first successful ListWorkflows existed before we
//!   watched. Executions first seen in the first complete listing of such a workflow, other than
//!   IN_PROGRESS ones (which have no failed step yet), are baselined: the failed steps their first
//!   successful describe shows are recorded as seen but not counted (they happened before we
//!   watched). Their finish is counted (it happens after we started).
//!   Executions listed as already finished (EXCEPTION/COMPLETED) in that first listing are not
//!   counted as finished either. Executions first seen later, or of workflows created later, are
//!   counted in full.
//! - Step errors: each failed step is counted once, keyed by execution id, list (Steps or
//!   OnExceptionSteps) and step index in that list.
//! - Deleted workflows: a workflow absent from a successful ListWorkflows (or answered with
//!   ResourceNotFoundException by ListExecutions) is dropped with all its series, counters
//!   included: its `workflow_id` will never come back (AWS generates a new id per workflow), so
//!   keeping the counters would only leave series that never change.

use std::collections::{BTreeMap, BTreeSet};

/// An execution's status as AWS names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ExecStatus {
    InProgress,
    HandlingException,
    Exception,
    Completed,
}

impl ExecStatus {
    pub const ALL: [ExecStatus; 4] = [
        Self::InProgress,
        Self::HandlingException,
        Self::Exception,
        Self::Completed,
    ];
    /// The statuses of in-progress executions, the `status` values of the executions gauge.
    pub const RUNNING: [ExecStatus; 2] = [Self::InProgress, Self::HandlingException];

    pub fn as_label(self) -> &'static str {
        match self {
            Self::InProgress => "in_progress",
            Self::HandlingException => "handling_exception",
            Self::Exception => "exception",
            Self::Completed => "completed",
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Exception | Self::Completed)
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Which list of DescribeExecution's results a step is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum StepList {
    Steps,
    OnExceptionSteps,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkflowObs {
    pub id: String,
    pub description: String,
}

/// One execution as ListExecutions shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedExec {
    pub id: String,
    pub status: ExecStatus,
}

/// One failed step: `step_type` and `error_type` are already label values (lower snake case).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepErrorObs {
    pub list: StepList,
    pub index: usize,
    pub step_type: String,
    pub error_type: String,
}

/// What DescribeExecution told about one execution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribeObs {
    pub id: String,
    pub status: ExecStatus,
    pub step_errors: Vec<StepErrorObs>,
}

#[derive(Debug)]
struct TrackedExec {
    status: ExecStatus,
    first_seen: f64,
    /// Status at the last successful describe; `None` until one succeeded.
    described_status: Option<ExecStatus>,
    /// Errors shown by the first successful describe are not counted.
    baseline: bool,
    counted_steps: BTreeSet<(StepList, usize)>,
    /// Counted in `finished`; kept as a tombstone while AWS still lists it, so it never counts twice.
    finished: bool,
}

#[derive(Debug, Default)]
struct TrackedWorkflow {
    description: String,
    /// Existed at the source's first ListWorkflows: its first execution listing is a baseline.
    preexisting: bool,
    listed_once: bool,
    executions: BTreeMap<String, TrackedExec>,
    /// By [`ExecStatus::ALL`].
    finished: [u64; 4],
    /// (step_type, error_type) -> failed steps.
    step_errors: BTreeMap<(String, String), u64>,
}

impl TrackedWorkflow {
    fn finish(&mut self, id: &str, status: ExecStatus) {
        if let Some(e) = self.executions.get_mut(id) {
            if !e.finished {
                e.finished = true;
                self.finished[status.index()] += 1;
            }
        }
    }
}

/// Per-workflow values for rendering.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkflowView<'a> {
    pub id: &'a str,
    pub description: &'a str,
    /// In-progress executions by [`ExecStatus::RUNNING`].
    pub running: [u64; 2],
    /// Executions finished by [`ExecStatus::ALL`] (their last status seen).
    pub finished: [u64; 4],
    pub step_errors: &'a BTreeMap<(String, String), u64>,
    /// First-seen time of the oldest in-progress execution.
    pub oldest_first_seen: Option<f64>,
}

#[derive(Debug, Default)]
pub struct TransferTracker {
    workflows: BTreeMap<String, TrackedWorkflow>,
    workflows_listed: bool,
}

impl TransferTracker {
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies a complete ListWorkflows (already filtered by the selection): workflows no longer
    /// there are dropped with all their state.
    pub fn observe_workflows(&mut self, workflows: Vec<WorkflowObs>) {
        let ids: BTreeSet<&str> = workflows.iter().map(|w| w.id.as_str()).collect();
        self.workflows.retain(|id, _| ids.contains(id.as_str()));
        let preexisting = !self.workflows_listed;
        for w in workflows {
            self.workflows
                .entry(w.id)
                .or_insert_with(|| TrackedWorkflow {
                    preexisting,
                    ..TrackedWorkflow::default()
                })
                .description = w.description;
        }
        self.workflows_listed = true;
    }

    /// A workflow AWS no longer knows (ListExecutions answered ResourceNotFoundException).
    pub fn forget_workflow(&mut self, workflow_id: &str) {
        self.workflows.remove(workflow_id);
    }

    /// Applies a complete in-progress listing of one workflow at `now`. Executions we tracked
    /// that are no longer listed have finished; executions listed as EXCEPTION or COMPLETED too.
    pub fn observe_executions(&mut self, workflow_id: &str, listed: Vec<ListedExec>, now: f64) {
        let Some(wf) = self.workflows.get_mut(workflow_id) else {
            return;
        };
        let baseline = wf.preexisting && !wf.listed_once;
        wf.listed_once = true;
        let ids: BTreeSet<String> = listed.iter().map(|e| e.id.clone()).collect();

        // Gone from the listing: finished with its last status; tombstones are no longer needed.
        let gone: Vec<(String, ExecStatus)> = wf
            .executions
            .iter()
            .filter(|(id, _)| !ids.contains(*id))
            .map(|(id, e)| (id.clone(), e.status))
            .collect();
        for (id, status) in gone {
            wf.finish(&id, status);
            wf.executions.remove(&id);
        }

        for obs in listed {
            match wf.executions.get_mut(&obs.id) {
                Some(e) if e.finished => {}
                Some(e) => {
                    e.status = obs.status;
                    if obs.status.is_terminal() {
                        wf.finish(&obs.id, obs.status);
                    }
                }
                None => {
                    let finished_before_watch = baseline && obs.status.is_terminal();
                    wf.executions.insert(
                        obs.id.clone(),
                        TrackedExec {
                            status: obs.status,
                            first_seen: now,
                            described_status: None,
                            // IN_PROGRESS: no step has failed yet, every later failure counts.
                            baseline: baseline && obs.status != ExecStatus::InProgress,
                            counted_steps: BTreeSet::new(),
                            finished: finished_before_watch,
                        },
                    );
                    if obs.status.is_terminal() && !finished_before_watch {
                        wf.finish(&obs.id, obs.status);
                    }
                }
            }
        }
    }

    /// (workflow id, execution id) of the executions to describe this poll; see the module docs.
    pub fn to_describe(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (wf_id, wf) in &self.workflows {
            for (id, e) in &wf.executions {
                let changed = e.described_status != Some(e.status);
                // Only a failed step moves an execution to HANDLING_EXCEPTION or EXCEPTION: one
                // IN_PROGRESS or COMPLETED cannot show a failed step, so it is not described.
                let can_have_failed = matches!(
                    e.status,
                    ExecStatus::HandlingException | ExecStatus::Exception
                );
                let need = if e.finished {
                    // Listed as EXCEPTION and not described at that status yet; never for a
                    // baseline one (its errors are all from before we watched).
                    can_have_failed && changed && !(e.baseline && e.described_status.is_none())
                } else {
                    can_have_failed && (changed || e.status == ExecStatus::HandlingException)
                };
                if need {
                    out.push((wf_id.clone(), id.clone()));
                }
            }
        }
        out
    }

    /// Applies a DescribeExecution result: counts the failed steps not seen yet (none for the
    /// first describe of a baselined execution).
    pub fn apply_describe(&mut self, workflow_id: &str, obs: DescribeObs) {
        let Some(wf) = self.workflows.get_mut(workflow_id) else {
            return;
        };
        let Some(e) = wf.executions.get_mut(&obs.id) else {
            return;
        };
        let count = !(e.baseline && e.described_status.is_none());
        for s in obs.step_errors {
            if e.counted_steps.insert((s.list, s.index)) && count {
                *wf.step_errors
                    .entry((s.step_type, s.error_type))
                    .or_default() += 1;
            }
        }
        e.described_status = Some(obs.status);
        if !e.finished {
            e.status = obs.status;
            if obs.status.is_terminal() {
                wf.finish(&obs.id, obs.status);
            }
        }
    }

    /// DescribeExecution answered ResourceNotFoundException: the execution finished between the
    /// listing and the describe. It counts as finished with its last status, once.
    pub fn describe_not_found(&mut self, workflow_id: &str, execution_id: &str) {
        let Some(wf) = self.workflows.get_mut(workflow_id) else {
            return;
        };
        let Some(e) = wf.executions.get_mut(execution_id) else {
            return;
        };
        let status = e.status;
        // Nothing more to learn from it; the tombstone stays until the listing drops it.
        e.described_status = Some(status);
        wf.finish(execution_id, status);
    }

    /// Every tracked workflow, for rendering.
    pub fn workflows(&self) -> impl Iterator<Item = WorkflowView<'_>> {
        self.workflows.iter().map(|(id, wf)| {
            let mut running = [0u64; 2];
            let mut oldest: Option<f64> = None;
            for e in wf.executions.values().filter(|e| !e.finished) {
                if let Some(i) = ExecStatus::RUNNING.iter().position(|s| *s == e.status) {
                    running[i] += 1;
                }
                oldest = Some(oldest.map_or(e.first_seen, |o| o.min(e.first_seen)));
            }
            WorkflowView {
                id,
                description: &wf.description,
                running,
                finished: wf.finished,
                step_errors: &wf.step_errors,
                oldest_first_seen: oldest,
            }
        })
    }

    /// The tracked workflows' ids: the ones each poll lists the executions of.
    pub fn workflow_ids(&self) -> Vec<String> {
        self.workflows.keys().cloned().collect()
    }

    pub fn tracked_workflows(&self) -> usize {
        self.workflows.len()
    }

    /// In-progress executions tracked (tombstones of finished ones excluded).
    pub fn tracked_executions(&self) -> usize {
        self.workflows
            .values()
            .map(|w| w.executions.values().filter(|e| !e.finished).count())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WF: &str = "w-0123456789abcdef0";

    fn wf(id: &str) -> WorkflowObs {
        WorkflowObs {
            id: id.into(),
            description: format!("{id} desc"),
        }
    }

    fn listed(id: &str, status: ExecStatus) -> ListedExec {
        ListedExec {
            id: id.into(),
            status,
        }
    }

    fn err(list: StepList, index: usize, step_type: &str, error_type: &str) -> StepErrorObs {
        StepErrorObs {
            list,
            index,
            step_type: step_type.into(),
            error_type: error_type.into(),
        }
    }

    fn describe(id: &str, status: ExecStatus, errors: Vec<StepErrorObs>) -> DescribeObs {
        DescribeObs {
            id: id.into(),
            status,
            step_errors: errors,
        }
    }

    fn view(t: &TransferTracker) -> WorkflowView<'_> {
        t.workflows()
            .find(|w| w.id == WF)
            .expect("workflow tracked")
    }

    fn errors(t: &TransferTracker, step: &str, error: &str) -> u64 {
        view(t)
            .step_errors
            .get(&(step.to_string(), error.to_string()))
            .copied()
            .unwrap_or(0)
    }

    fn pair(a: &str) -> (String, String) {
        (WF.to_string(), a.to_string())
    }

    /// A tracker that has already done its first (baseline) poll with no executions.
    fn watching() -> TransferTracker {
        let mut t = TransferTracker::new();
        t.observe_workflows(vec![wf(WF)]);
        t.observe_executions(WF, vec![], 0.0);
        t
    }

    #[test]
    fn an_execution_is_followed_through_an_exception_and_counted_once() {
        let mut t = watching();
        t.observe_executions(WF, vec![listed("e1", ExecStatus::InProgress)], 100.0);
        assert!(
            t.to_describe().is_empty(),
            "IN_PROGRESS: no failed step to show yet"
        );
        assert_eq!(view(&t).running, [1, 0]);
        assert_eq!(view(&t).oldest_first_seen, Some(100.0));

        // Unchanged IN_PROGRESS: no describe.
        t.observe_executions(WF, vec![listed("e1", ExecStatus::InProgress)], 160.0);
        assert!(t.to_describe().is_empty());

        // A COPY step fails: HANDLING_EXCEPTION, described every poll, counted once.
        let failed = vec![err(StepList::Steps, 0, "copy", "permission_denied")];
        for now in [220.0, 280.0, 340.0] {
            t.observe_executions(WF, vec![listed("e1", ExecStatus::HandlingException)], now);
            assert_eq!(t.to_describe(), vec![pair("e1")]);
            t.apply_describe(
                WF,
                describe("e1", ExecStatus::HandlingException, failed.clone()),
            );
        }
        assert_eq!(errors(&t, "copy", "permission_denied"), 1);
        assert_eq!(view(&t).running, [0, 1]);
        // An OnExceptionSteps step fails too: counted, the first one not again.
        let mut both = failed.clone();
        both.push(err(
            StepList::OnExceptionSteps,
            0,
            "copy",
            "permission_denied",
        ));
        t.apply_describe(WF, describe("e1", ExecStatus::HandlingException, both));
        assert_eq!(errors(&t, "copy", "permission_denied"), 2);

        // Gone: finished once, with the last status seen.
        for now in [400.0, 460.0] {
            t.observe_executions(WF, vec![], now);
        }
        let v = view(&t);
        assert_eq!(v.finished, [0, 1, 0, 0]);
        assert_eq!(v.running, [0, 0]);
        assert_eq!(v.oldest_first_seen, None);
        assert!(t.to_describe().is_empty());
        assert_eq!(t.tracked_executions(), 0);
    }

    #[test]
    fn errors_before_the_first_poll_are_a_baseline_but_later_ones_count() {
        let mut t = TransferTracker::new();
        t.observe_workflows(vec![wf(WF)]);
        t.observe_executions(
            WF,
            vec![
                listed("old", ExecStatus::HandlingException),
                listed("done", ExecStatus::Exception),
            ],
            10.0,
        );
        assert_eq!(
            t.to_describe(),
            vec![pair("old")],
            "a baseline execution already finished is not described"
        );
        t.apply_describe(
            WF,
            describe(
                "old",
                ExecStatus::HandlingException,
                vec![err(StepList::Steps, 1, "custom", "timeout")],
            ),
        );
        assert_eq!(
            errors(&t, "custom", "timeout"),
            0,
            "happened before we watched"
        );
        assert_eq!(view(&t).finished, [0; 4], "finished before we watched");

        // Later errors of the same execution count; so do a new execution's.
        t.observe_executions(
            WF,
            vec![
                listed("old", ExecStatus::HandlingException),
                listed("done", ExecStatus::Exception),
                listed("new", ExecStatus::HandlingException),
            ],
            70.0,
        );
        assert_eq!(t.to_describe(), vec![pair("new"), pair("old")]);
        t.apply_describe(
            WF,
            describe(
                "old",
                ExecStatus::HandlingException,
                vec![
                    err(StepList::Steps, 1, "custom", "timeout"),
                    err(StepList::OnExceptionSteps, 0, "delete", "not_found"),
                ],
            ),
        );
        t.apply_describe(
            WF,
            describe(
                "new",
                ExecStatus::HandlingException,
                vec![err(StepList::Steps, 0, "custom", "timeout")],
            ),
        );
        assert_eq!(errors(&t, "custom", "timeout"), 1);
        assert_eq!(errors(&t, "delete", "not_found"), 1);

        // The baseline execution finishing after we started is counted.
        t.observe_executions(
            WF,
            vec![listed("new", ExecStatus::HandlingException)],
            130.0,
        );
        assert_eq!(view(&t).finished, [0, 1, 0, 0]);
    }

    #[test]
    fn a_throttled_first_describe_keeps_the_baseline() {
        let mut t = TransferTracker::new();
        t.observe_workflows(vec![wf(WF)]);
        t.observe_executions(WF, vec![listed("old", ExecStatus::HandlingException)], 10.0);
        // The describe fails; next poll it is described and still baselined.
        t.observe_executions(WF, vec![listed("old", ExecStatus::HandlingException)], 70.0);
        assert_eq!(t.to_describe(), vec![pair("old")]);
        t.apply_describe(
            WF,
            describe(
                "old",
                ExecStatus::HandlingException,
                vec![err(StepList::Steps, 0, "copy", "permission_denied")],
            ),
        );
        assert_eq!(errors(&t, "copy", "permission_denied"), 0);
    }

    #[test]
    fn workflows_created_after_the_first_poll_count_everything() {
        let mut t = watching();
        t.observe_workflows(vec![wf(WF), wf("w-new")]);
        t.observe_executions(
            "w-new",
            vec![listed("e", ExecStatus::HandlingException)],
            70.0,
        );
        t.apply_describe(
            "w-new",
            describe(
                "e",
                ExecStatus::HandlingException,
                vec![err(StepList::Steps, 0, "tag", "bad_request")],
            ),
        );
        let v = t.workflows().find(|w| w.id == "w-new").unwrap();
        assert_eq!(v.step_errors.values().sum::<u64>(), 1);
    }

    #[test]
    fn the_describe_race_counts_as_finished_once() {
        let mut t = watching();
        t.observe_executions(WF, vec![listed("e1", ExecStatus::InProgress)], 60.0);
        t.describe_not_found(WF, "e1");
        assert_eq!(view(&t).finished, [1, 0, 0, 0]);
        assert!(t.to_describe().is_empty());
        // Still listed for a while (eventual consistency), then gone: never counted again.
        t.observe_executions(WF, vec![listed("e1", ExecStatus::InProgress)], 120.0);
        assert!(t.to_describe().is_empty());
        assert_eq!(view(&t).running, [0, 0]);
        t.observe_executions(WF, vec![], 180.0);
        t.observe_executions(WF, vec![], 240.0);
        assert_eq!(view(&t).finished, [1, 0, 0, 0]);
    }

    #[test]
    fn a_terminal_status_finishes_once_and_is_described_once() {
        let mut t = watching();
        t.observe_executions(WF, vec![listed("e1", ExecStatus::InProgress)], 60.0);
        t.apply_describe(WF, describe("e1", ExecStatus::InProgress, vec![]));
        t.observe_executions(WF, vec![listed("e1", ExecStatus::Exception)], 120.0);
        assert_eq!(view(&t).finished, [0, 0, 1, 0]);
        assert_eq!(t.to_describe(), vec![pair("e1")]);
        t.apply_describe(
            WF,
            describe(
                "e1",
                ExecStatus::Exception,
                vec![err(
                    StepList::OnExceptionSteps,
                    0,
                    "decrypt",
                    "internal_server_error",
                )],
            ),
        );
        assert_eq!(errors(&t, "decrypt", "internal_server_error"), 1);
        t.observe_executions(WF, vec![listed("e1", ExecStatus::Exception)], 180.0);
        assert!(t.to_describe().is_empty());
        t.observe_executions(WF, vec![], 240.0);
        assert_eq!(view(&t).finished, [0, 0, 1, 0]);
    }

    #[test]
    fn a_describe_showing_a_terminal_status_finishes_the_execution() {
        let mut t = watching();
        t.observe_executions(WF, vec![listed("e1", ExecStatus::HandlingException)], 60.0);
        t.apply_describe(WF, describe("e1", ExecStatus::Completed, vec![]));
        assert_eq!(view(&t).finished, [0, 0, 0, 1]);
        t.observe_executions(WF, vec![], 120.0);
        assert_eq!(view(&t).finished, [0, 0, 0, 1]);
    }

    #[test]
    fn deleted_workflows_are_dropped_with_their_counters() {
        let mut t = watching();
        t.observe_executions(WF, vec![listed("e1", ExecStatus::InProgress)], 60.0);
        t.observe_workflows(vec![wf("w-other")]);
        assert_eq!(t.tracked_workflows(), 1);
        assert!(t.workflows().all(|w| w.id == "w-other"));
        assert_eq!(t.tracked_executions(), 0);
        t.forget_workflow("w-other");
        assert_eq!(t.tracked_workflows(), 0);
    }
}
