//! What the next poll calls, planned from the tracker: which state machines' executions to
//! list, whose map runs to discover, which runs to describe and in what order (runs nearing their
//! tolerated failures first), and the history still to read.

use std::collections::BTreeSet;

use super::obs::MapRunStatus;
use super::tracker::{Listed, MapRunTracker, TrackedExecution, TrackedRun};

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
    /// Runs nearing their tolerated failures, least lately described first: the alert's, once a
    /// poll, before any other refresh, first describes of new runs included.
    pub nearing: Vec<String>,
    /// The other runs of running executions, most urgent first: never described ones, overdue ones (not
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

impl TrackedRun {
    /// Failed and timed-out items as a share of what the run tolerates (the larger of the two
    /// thresholds' shares; 0 when it tolerates nothing, since then the first failure ends it).
    /// The percentage is judged on the items processed so far, not on all items: it is where
    /// the run ends if its items keep failing as they have, which is what the alert is about
    /// long before the failures reach the threshold's share of every item.
    pub(super) fn tolerance_used(&self) -> f64 {
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

impl MapRunTracker {
    /// Where a state machine's first (history) listing stops: `since` (now - lookback), or
    /// earlier if its definition gained a Distributed Map after a check that showed none.
    pub fn lookback_since(&self, arn: &str, since: f64) -> f64 {
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
            .filter(|(_, t)| self.may_run_maps(t))
            .map(|(arn, t)| (t.discovered_at, arn))
            .collect();
        out.sort();
        out.into_iter().map(|(_, arn)| arn.clone()).collect()
    }

    /// Whether an execution's map runs are worth searching for: not when it runs a published
    /// version known to have no Distributed Map. An execution of the state machine itself runs
    /// the definition of its start, which a later update may have changed: it is searched.
    fn may_run_maps(&self, e: &TrackedExecution) -> bool {
        e.obs.version.as_ref().and_then(|v| self.versions.get(v)) != Some(&false)
    }

    /// History executions whose map runs were never listed, newest first.
    pub fn history_executions_to_list(&self) -> Vec<String> {
        let mut out: Vec<(&String, f64)> = self
            .executions
            .iter()
            .filter(|(_, t)| t.history && t.listed == Listed::Never && !t.obs.running)
            .filter(|(_, t)| self.may_run_maps(t))
            .map(|(arn, t)| (arn, t.obs.start))
            .collect();
        out.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        out.into_iter().map(|(arn, _)| arn.clone()).collect()
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
        // (tier, urgency): runs nearing their tolerance first, once a poll, least lately described
        // first (they serve the alert; a new run is shown running from its start event meanwhile),
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
                    // Every poll: a run described late in one poll is described again in the
                    // next, so none waits two intervals.
                    let tier = if nearing {
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
        let (nearing, others): (Vec<_>, Vec<_>) =
            refresh.into_iter().partition(|((tier, _), _)| *tier == 0);
        plan.nearing = nearing.into_iter().map(|(_, arn)| arn.clone()).collect();
        plan.refresh = others.into_iter().map(|(_, arn)| arn.clone()).collect();
        backfill.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(b.1)));
        plan.backfill = backfill.into_iter().map(|(_, arn)| arn.clone()).collect();
        plan
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::services::sfn_map_runs::fixtures::*;
    use crate::services::sfn_map_runs::obs::*;

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
    fn a_definition_that_gains_a_distributed_map_is_listed_back_to_the_check_that_showed_none() {
        const PLAIN: &str = "arn:aws:states:us-east-1:123456789012:stateMachine:plain";
        let mut t = MapRunTracker::new(0.0, 60.0);
        t.observe_state_machines(vec![sm_obs(PLAIN, "plain")], 3600.0, 100.0);
        t.set_definition(PLAIN, false, 100.0);
        // Edited to a Distributed Map at some point after 100; read again at the refresh.
        t.set_definition(PLAIN, true, 3700.0);
        // With a lookback of 10 minutes, the first listing would stop at 3100.
        assert_eq!(t.lookback_since(PLAIN, 3100.0), 100.0);
        // A state machine distributed from its first read goes back `lookback` only.
        t.observe_state_machines(vec![sm_obs(SM, "etl")], 3600.0, 3700.0);
        t.set_definition(SM, true, 3700.0);
        assert_eq!(t.lookback_since(SM, 3100.0), 3100.0);
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
        t.observe_listing(SM, Listing::Lookback, vec![exec(true, 0)], 50.0, 1100.0);
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
        // `near` goes first at every poll, however lately described; `stale` is overdue (110 s
        // since its describe against a pass of 100 s), and then weights order the rest.
        let plan = t.runs_to_describe(120.0, 100.0);
        assert!(plan.required.is_empty());
        assert_eq!(plan.nearing, [arn("near")]);
        assert_eq!(plan.refresh, ["stale", "moving", "calm"].map(arn));
        // Not overdue, `stale` still comes first: 110 s since its describe (which was news)
        // outweighs `moving`'s 10 s doubled.
        let plan = t.runs_to_describe(120.0, 1000.0);
        assert_eq!(plan.nearing, [arn("near")]);
        assert_eq!(plan.refresh, ["stale", "moving", "calm"].map(arn));
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
    use crate::services::sfn_map_runs::obs::*;
    use crate::services::sfn_map_runs::tracker::RunLabels;

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
            describe: 0,
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
                version: None,
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
            for a in plan.nearing.iter().chain(&plan.refresh).take(30) {
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
