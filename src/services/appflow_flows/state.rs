//! What the exporter knows about AppFlow flows and their runs between polls: which pages of
//! DescribeFlowExecutionRecords a poll needs, which counters a finished run feeds (once per
//! executionId), the newest runs' figures, and bounded dedup state.
//! Times are Unix seconds (f64) so tests can use plain numbers.
//!
//! Paging rule (records come newest first, by startedAt): a flow's poll reads pages until one
//! holds a *stop point*, a finished run that needs no more attention: one already known to be
//! finished, one at or below the flow's dedup floor (see below), or one that finished before the
//! exporter started (baseline). A steady-state poll of a flow with no new runs is one page.
//! It reads further while a run it follows in progress has not been seen yet and lies further
//! back, up to [`MAX_PAGES_PER_POLL`] pages. A followed run the listing no longer returns (the
//! listing ended without it) is dropped without counting; one beyond the page cap stays followed
//! and is dropped, uncounted, after [`UNSEEN_GIVE_UP_SECS`] unseen. A run that was already in
//! progress at a flow's first poll is only discovered if it is among the pages read then (it
//! started less than about 100 runs ago).
//!
//! Dedup: finished runs are remembered for `retention` after they finished; when one is
//! forgotten, the flow's *floor* rises to its startedAt, and an unfollowed finished run started at
//! or before the floor is treated as already known. So memory stays bounded and a forgotten run
//! is never counted twice.

use std::collections::{BTreeMap, BTreeSet};

use crate::histogram::HistogramData;

/// Pages of 100 runs a flow's poll reads at most.
pub const MAX_PAGES_PER_POLL: usize = 10;
/// A followed in-progress run unseen this long is dropped without counting.
pub const UNSEEN_GIVE_UP_SECS: f64 = 86400.0;
/// Run durations: AppFlow runs take from seconds to hours.
pub const DURATION_BUCKETS: &[f64] = &[
    10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 7200.0, 14400.0, 28800.0,
    86400.0,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum RunStatus {
    InProgress,
    Successful,
    Error,
    CancelStarted,
    Canceled,
}

impl RunStatus {
    pub const ALL: [RunStatus; 5] = [
        Self::InProgress,
        Self::Successful,
        Self::Error,
        Self::CancelStarted,
        Self::Canceled,
    ];
    /// Statuses a run finishes in, in the order of [`FlowCounters::runs`].
    pub const FINISHED: [RunStatus; 3] = [Self::Successful, Self::Error, Self::Canceled];

    pub fn as_label(self) -> &'static str {
        match self {
            Self::InProgress => "in_progress",
            Self::Successful => "successful",
            Self::Error => "error",
            Self::CancelStarted => "cancel_started",
            Self::Canceled => "canceled",
        }
    }

    pub fn is_finished(self) -> bool {
        matches!(self, Self::Successful | Self::Error | Self::Canceled)
    }
}

/// One ExecutionRecord of DescribeFlowExecutionRecords.
#[derive(Debug, Clone, PartialEq)]
pub struct RunObs {
    pub execution_id: String,
    pub status: RunStatus,
    pub started_at: f64,
    pub last_updated_at: f64,
    pub data_pull_end: Option<f64>,
    pub bytes_processed: i64,
    pub bytes_written: i64,
    pub records_processed: i64,
    pub put_failures: i64,
    pub message: Option<String>,
    /// metadataCatalogDetails entries whose table registration ended in error.
    pub catalog_registration_failures: u64,
}

/// Counters of one flow, fed once per finished run the exporter saw finish.
#[derive(Debug, Clone, PartialEq)]
pub struct FlowCounters {
    /// By [`RunStatus::FINISHED`].
    pub runs: [u64; 3],
    pub bytes_processed: u64,
    pub bytes_written: u64,
    pub records_processed: u64,
    pub put_failures: u64,
    pub catalog_registration_failures: u64,
    pub duration: HistogramData,
}

impl Default for FlowCounters {
    fn default() -> Self {
        Self {
            runs: [0; 3],
            bytes_processed: 0,
            bytes_written: 0,
            records_processed: 0,
            put_failures: 0,
            catalog_registration_failures: 0,
            duration: HistogramData::new(DURATION_BUCKETS),
        }
    }
}

#[derive(Debug, Clone)]
struct TrackedRun {
    status: RunStatus,
    started_at: f64,
    last_updated_at: f64,
    last_seen: f64,
}

/// ListFlows' `lastRunExecutionDetails` of a flow: status, time and message of its latest run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LastRunDetails {
    pub status: Option<String>,
    pub time: Option<f64>,
    pub message: Option<String>,
}

/// What one flow shows.
#[derive(Debug, Default)]
pub struct FlowState {
    runs: BTreeMap<String, TrackedRun>,
    /// ListFlows' details when the flow's records were last read completely.
    read_at_details: Option<LastRunDetails>,
    /// When the flow's records were last read completely.
    read_at: Option<f64>,
    /// Unfollowed finished runs started at or before this are known (their dedup state expired).
    floor: Option<f64>,
    pub counters: FlowCounters,
    /// The newest run by startedAt.
    pub last_run: Option<RunObs>,
    /// The run that finished last (greatest lastUpdatedAt).
    pub last_finished: Option<RunObs>,
    /// The successful run that finished last.
    pub last_successful: Option<RunObs>,
}

impl FlowState {
    /// Runs in progress now (InProgress or CancelStarted).
    pub fn in_progress(&self) -> usize {
        self.runs
            .values()
            .filter(|r| !r.status.is_finished())
            .count()
    }

    fn below_floor(&self, started_at: f64) -> bool {
        self.floor.is_some_and(|f| started_at <= f)
    }
}

#[derive(Debug)]
pub struct AppflowTracker {
    started_at: f64,
    retention: f64,
    flows: BTreeMap<String, FlowState>,
    refresh_catches: u64,
}

/// Why a flow's execution records are read this poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordsDue {
    /// ListFlows shows a different latest run, or a run is followed in progress.
    Changed,
    /// ListFlows shows nothing new, but the scheduled re-read is due.
    Refresh,
}

impl AppflowTracker {
    /// `started_at`: runs finished before it feed no counter, unless seen in progress.
    /// `retention_secs`: how long a finished run's dedup state is kept.
    pub fn new(started_at: f64, retention_secs: f64) -> Self {
        Self {
            started_at,
            retention: retention_secs,
            flows: BTreeMap::new(),
            refresh_catches: 0,
        }
    }

    /// The selected flows of this poll: new ones start with counters at 0, gone ones are dropped.
    pub fn set_flows(&mut self, names: &BTreeSet<String>) {
        self.flows.retain(|name, _| names.contains(name));
        for name in names {
            self.flows.entry(name.clone()).or_default();
        }
    }

    /// Whether the flow's execution records must be read this poll, and why. ListFlows'
    /// `lastRunExecutionDetails` is optional and may lag, so it only saves reads between two
    /// scheduled re-reads, `records_refresh` (seconds) apart: not reading is right only when
    /// ListFlows shows the same latest run as at the last complete read and no run is followed in
    /// progress, since then no run can have started, progressed or finished.
    pub fn records_due(
        &self,
        flow: &str,
        details: &LastRunDetails,
        now: f64,
        records_refresh: f64,
    ) -> Option<RecordsDue> {
        let Some(f) = self.flows.get(flow) else {
            return Some(RecordsDue::Changed);
        };
        if f.in_progress() > 0 || f.read_at_details.as_ref() != Some(details) {
            Some(RecordsDue::Changed)
        } else if f.read_at.is_none_or(|at| now - at >= records_refresh) {
            Some(RecordsDue::Refresh)
        } else {
            None
        }
    }

    /// The flow's records were read completely at `now` while ListFlows showed `details`.
    pub fn records_read(&mut self, flow: &str, details: LastRunDetails, now: f64) {
        if let Some(f) = self.flows.get_mut(flow) {
            f.read_at_details = Some(details);
            f.read_at = Some(now);
        }
    }

    /// A scheduled re-read found a run ListFlows had not shown (see [`Self::records_due`]).
    pub fn refresh_caught(&mut self) {
        self.refresh_catches += 1;
    }

    /// How many scheduled re-reads found a run ListFlows had not shown.
    pub fn refresh_catches(&self) -> u64 {
        self.refresh_catches
    }

    /// Whether a run on a page is a stop point: finished and needing no more attention.
    fn is_stop_point(&self, flow: &FlowState, r: &RunObs) -> bool {
        if !r.status.is_finished() {
            return false;
        }
        match flow.runs.get(&r.execution_id) {
            Some(t) => t.status.is_finished(),
            None => flow.below_floor(r.started_at) || r.last_updated_at < self.started_at,
        }
    }

    /// After reading `pages` pages holding `read` (newest first) with more available: read another?
    pub fn wants_more(&self, flow: &str, read: &[RunObs], pages: usize) -> bool {
        if pages >= MAX_PAGES_PER_POLL {
            tracing::warn!(
                flow,
                pages,
                "stopping at the page cap of a flow's execution records"
            );
            return false;
        }
        let Some(state) = self.flows.get(flow) else {
            return false;
        };
        if !read.iter().any(|r| self.is_stop_point(state, r)) {
            return true;
        }
        // A followed in-progress run further back than what was read.
        let oldest = read
            .iter()
            .map(|r| r.started_at)
            .fold(f64::INFINITY, f64::min);
        let seen: BTreeSet<&str> = read.iter().map(|r| r.execution_id.as_str()).collect();
        state.runs.iter().any(|(id, t)| {
            !t.status.is_finished() && !seen.contains(id.as_str()) && t.started_at <= oldest
        })
    }

    /// Applies the records of one completed flow poll. `exhausted`: the listing had no more pages,
    /// so followed runs it did not return are gone. Returns whether a run started or changed
    /// status since the flow's last read.
    pub fn apply_runs(&mut self, flow: &str, read: Vec<RunObs>, exhausted: bool, now: f64) -> bool {
        let started_at = self.started_at;
        let Some(state) = self.flows.get_mut(flow) else {
            return false;
        };
        let mut seen = BTreeSet::new();
        let mut news = false;
        for r in read {
            seen.insert(r.execution_id.clone());
            let known = state.runs.get(&r.execution_id).map(|t| t.status);
            news |= count_as_news(known, &r, state.below_floor(r.started_at), started_at);
            let below_floor = state.below_floor(r.started_at);
            // Counted when first seen finished: followed in progress before, or finished after start.
            let count = r.status.is_finished()
                && match known {
                    Some(status) => !status.is_finished(),
                    None => !below_floor && r.last_updated_at >= started_at,
                };
            if count {
                feed(&mut state.counters, &r);
            }
            // A finished run below the floor and unfollowed is forgotten state; do not re-add it.
            if known.is_some() || !r.status.is_finished() || !below_floor {
                state.runs.insert(
                    r.execution_id.clone(),
                    TrackedRun {
                        status: r.status,
                        started_at: r.started_at,
                        last_updated_at: r.last_updated_at,
                        last_seen: now,
                    },
                );
            }
            update_latest(state, &r);
        }
        if exhausted {
            state.runs.retain(|id, _| seen.contains(id));
        }
        news
    }

    /// Forgets finished runs older than the retention (raising the floor) and followed runs
    /// unseen for too long.
    pub fn expire(&mut self, now: f64) {
        let horizon = now - self.retention;
        for state in self.flows.values_mut() {
            let mut floor = state.floor;
            state.runs.retain(|_, t| {
                let keep = if t.status.is_finished() {
                    t.last_updated_at >= horizon
                } else {
                    t.last_seen >= now - UNSEEN_GIVE_UP_SECS
                };
                if !keep && t.status.is_finished() {
                    floor = Some(floor.map_or(t.started_at, |f| f.max(t.started_at)));
                }
                keep
            });
            state.floor = floor;
        }
    }

    pub fn flows(&self) -> &BTreeMap<String, FlowState> {
        &self.flows
    }

    /// Runs whose state is kept, over all flows.
    pub fn tracked_runs(&self) -> usize {
        self.flows.values().map(|f| f.runs.len()).sum()
    }
}

/// A run is news when it was not known (and is not old history) or its status moved.
fn count_as_news(known: Option<RunStatus>, r: &RunObs, below_floor: bool, started_at: f64) -> bool {
    match known {
        Some(status) => status != r.status,
        None => !(r.status.is_finished() && (below_floor || r.last_updated_at < started_at)),
    }
}

fn feed(c: &mut FlowCounters, r: &RunObs) {
    let idx = RunStatus::FINISHED
        .iter()
        .position(|s| *s == r.status)
        .expect("finished status");
    c.runs[idx] += 1;
    c.bytes_processed += r.bytes_processed.max(0) as u64;
    c.bytes_written += r.bytes_written.max(0) as u64;
    c.records_processed += r.records_processed.max(0) as u64;
    c.put_failures += r.put_failures.max(0) as u64;
    c.catalog_registration_failures += r.catalog_registration_failures;
    c.duration
        .observe((r.last_updated_at - r.started_at).max(0.0));
}

fn newer(current: &Option<RunObs>, r: &RunObs, key: fn(&RunObs) -> f64) -> bool {
    match current {
        None => true,
        Some(c) => c.execution_id == r.execution_id || key(r) > key(c),
    }
}

fn update_latest(state: &mut FlowState, r: &RunObs) {
    if newer(&state.last_run, r, |r| r.started_at) {
        state.last_run = Some(r.clone());
    }
    if r.status.is_finished() && newer(&state.last_finished, r, |r| r.last_updated_at) {
        state.last_finished = Some(r.clone());
    }
    if r.status == RunStatus::Successful && newer(&state.last_successful, r, |r| r.last_updated_at)
    {
        state.last_successful = Some(r.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FLOW: &str = "sfdc-to-s3";

    fn run(id: &str, status: RunStatus, started_at: f64, last_updated_at: f64) -> RunObs {
        RunObs {
            execution_id: id.into(),
            status,
            started_at,
            last_updated_at,
            data_pull_end: Some(started_at - 10.0),
            bytes_processed: 1000,
            bytes_written: 800,
            records_processed: 10,
            put_failures: 0,
            message: None,
            catalog_registration_failures: 0,
        }
    }

    fn tracker(started_at: f64) -> AppflowTracker {
        let mut t = AppflowTracker::new(started_at, 3600.0);
        t.set_flows(&[FLOW.to_string()].into());
        t
    }

    fn counters(t: &AppflowTracker) -> &FlowCounters {
        &t.flows()[FLOW].counters
    }

    #[test]
    fn a_run_seen_in_progress_then_finished_feeds_counters_once() {
        let mut t = tracker(1000.0);
        let r1 = run("r1", RunStatus::InProgress, 1100.0, 1150.0);
        assert!(
            t.wants_more(FLOW, std::slice::from_ref(&r1), 1),
            "no stop point yet"
        );
        t.apply_runs(FLOW, vec![r1], true, 1200.0);
        assert_eq!(counters(&t).runs, [0, 0, 0]);
        assert_eq!(t.flows()[FLOW].in_progress(), 1);

        let mut done = run("r1", RunStatus::Successful, 1100.0, 1400.0);
        done.bytes_processed = 5000;
        for _ in 0..3 {
            t.apply_runs(FLOW, vec![done.clone()], true, 1500.0);
        }
        let c = counters(&t);
        assert_eq!(c.runs, [1, 0, 0]);
        assert_eq!(c.bytes_processed, 5000);
        assert_eq!(c.bytes_written, 800);
        assert_eq!(c.duration.count, 1);
        assert_eq!(c.duration.sum, 300.0);
        let f = &t.flows()[FLOW];
        assert_eq!(f.in_progress(), 0);
        assert_eq!(f.last_successful.as_ref().unwrap().last_updated_at, 1400.0);
        assert_eq!(f.last_run.as_ref().unwrap().status, RunStatus::Successful);
    }

    #[test]
    fn records_are_read_when_the_last_run_changed_a_run_is_in_progress_or_a_refresh_is_due() {
        const REFRESH: f64 = 3600.0;
        let mut t = tracker(1000.0);
        let details = |status: &str, time: f64| LastRunDetails {
            status: Some(status.into()),
            time: Some(time),
            message: None,
        };
        let due =
            |t: &AppflowTracker, d: &LastRunDetails, now: f64| t.records_due(FLOW, d, now, REFRESH);
        let idle = details("Successful", 900.0);
        assert_eq!(
            due(&t, &idle, 1100.0),
            Some(RecordsDue::Changed),
            "never read"
        );
        assert!(!t.apply_runs(FLOW, vec![], true, 1100.0));
        t.records_read(FLOW, idle.clone(), 1100.0);
        assert_eq!(due(&t, &idle, 1200.0), None);
        let started = details("InProgress", 1150.0);
        assert_eq!(
            due(&t, &started, 1200.0),
            Some(RecordsDue::Changed),
            "a new latest run"
        );
        assert!(t.apply_runs(
            FLOW,
            vec![run("r1", RunStatus::InProgress, 1150.0, 1150.0)],
            true,
            1200.0,
        ));
        t.records_read(FLOW, started.clone(), 1200.0);
        assert_eq!(
            due(&t, &started, 1300.0),
            Some(RecordsDue::Changed),
            "followed in progress: read every poll"
        );
        assert!(t.apply_runs(
            FLOW,
            vec![run("r1", RunStatus::Successful, 1150.0, 1300.0)],
            true,
            1400.0,
        ));
        let done = details("Successful", 1300.0);
        t.records_read(FLOW, done.clone(), 1400.0);
        assert_eq!(due(&t, &done, 1500.0), None);
        assert!(
            !t.apply_runs(
                FLOW,
                vec![run("r1", RunStatus::Successful, 1150.0, 1300.0)],
                true,
                1500.0
            ),
            "nothing new"
        );

        // ListFlows lags (or omits the details): a run starts and finishes unseen by it. The
        // scheduled re-read finds and counts it.
        assert_eq!(due(&t, &done, 1400.0 + REFRESH - 1.0), None);
        assert_eq!(due(&t, &done, 1400.0 + REFRESH), Some(RecordsDue::Refresh));
        let unseen = run("r2", RunStatus::Error, 2000.0, 2100.0);
        assert!(t.apply_runs(
            FLOW,
            vec![unseen, run("r1", RunStatus::Successful, 1150.0, 1300.0)],
            true,
            5000.0
        ));
        assert_eq!(counters(&t).runs, [1, 1, 0]);
    }

    #[test]
    fn runs_finished_before_start_are_a_baseline_unless_seen_in_progress() {
        let mut t = tracker(5000.0);
        let old = run("old", RunStatus::Error, 100.0, 200.0);
        let long = run("long", RunStatus::InProgress, 4000.0, 4000.0);
        let fresh = run("fresh", RunStatus::Successful, 4900.0, 5001.0);
        t.apply_runs(FLOW, vec![fresh, long, old], true, 5010.0);
        assert_eq!(
            counters(&t).runs,
            [1, 0, 0],
            "only the run finished after start"
        );
        let f = &t.flows()[FLOW];
        assert_eq!(f.last_finished.as_ref().unwrap().execution_id, "fresh");
        // The long run finishes with a lastUpdatedAt before start (clock skew): it was seen running.
        t.apply_runs(
            FLOW,
            vec![run("long", RunStatus::Canceled, 4000.0, 4500.0)],
            false,
            5100.0,
        );
        assert_eq!(counters(&t).runs, [1, 0, 1]);
    }

    #[test]
    fn paging_stops_at_known_finished_runs_and_follows_old_in_progress_runs() {
        let mut t = tracker(0.0);
        // First poll: a page of new finished runs that finished after start asks for more.
        let page1: Vec<RunObs> = (0..100)
            .map(|i| {
                run(
                    &format!("n{i}"),
                    RunStatus::Successful,
                    1000.0 - i as f64,
                    1001.0,
                )
            })
            .collect();
        assert!(t.wants_more(FLOW, &page1, 1));
        let mut all = page1.clone();
        all.push(run("slow", RunStatus::InProgress, 500.0, 900.0));
        all.push(run("done", RunStatus::Successful, 400.0, 450.0));
        t.apply_runs(FLOW, all, true, 1100.0);
        assert_eq!(
            counters(&t).runs[0],
            101,
            "the in-progress one is not counted yet"
        );

        // The first page holds known finished runs, but the followed slow run lies further
        // back: read on until it is seen.
        assert!(t.wants_more(FLOW, &page1, 1));
        let mut page1b = vec![run("new", RunStatus::Successful, 2000.0, 2001.0)];
        page1b.extend(page1.iter().take(99).cloned());
        assert!(t.wants_more(FLOW, &page1b, 1));
        assert!(!t.wants_more(FLOW, &page1b, MAX_PAGES_PER_POLL), "page cap");
        let mut two = page1b.clone();
        two.push(page1[99].clone());
        two.push(run("slow", RunStatus::Error, 500.0, 1900.0));
        assert!(!t.wants_more(FLOW, &two, 2));
        t.apply_runs(FLOW, two.clone(), false, 2100.0);
        assert_eq!(counters(&t).runs, [102, 1, 0]);
        // Steady state: nothing followed, the first page holds known finished runs: stop.
        assert!(!t.wants_more(FLOW, &two[..100], 1));
    }

    #[test]
    fn dedup_state_expires_behind_a_floor_without_double_counting() {
        let mut t = tracker(0.0);
        let r = run("r1", RunStatus::Successful, 100.0, 200.0);
        t.apply_runs(FLOW, vec![r.clone()], true, 210.0);
        assert_eq!(t.tracked_runs(), 1);
        t.expire(200.0 + 3601.0);
        assert_eq!(t.tracked_runs(), 0, "forgotten after retention");
        // Still listed by AWS: a stop point, not counted again, not re-added.
        assert!(!t.wants_more(FLOW, std::slice::from_ref(&r), 1));
        t.apply_runs(FLOW, vec![r], true, 4000.0);
        assert_eq!(counters(&t).runs, [1, 0, 0]);
        assert_eq!(t.tracked_runs(), 0);
        // A newer run is still counted.
        t.apply_runs(
            FLOW,
            vec![run("r2", RunStatus::Error, 4000.0, 4100.0)],
            true,
            4200.0,
        );
        assert_eq!(counters(&t).runs, [1, 1, 0]);
    }

    #[test]
    fn followed_runs_the_listing_dropped_or_unseen_for_long_are_forgotten() {
        let mut t = tracker(0.0);
        t.apply_runs(
            FLOW,
            vec![run("a", RunStatus::InProgress, 10.0, 10.0)],
            true,
            20.0,
        );
        t.apply_runs(FLOW, vec![], true, 30.0);
        assert_eq!(t.tracked_runs(), 0);
        t.apply_runs(
            FLOW,
            vec![run("b", RunStatus::CancelStarted, 10.0, 10.0)],
            true,
            20.0,
        );
        assert_eq!(t.flows()[FLOW].in_progress(), 1);
        t.expire(20.0 + UNSEEN_GIVE_UP_SECS - 1.0);
        assert_eq!(t.tracked_runs(), 1);
        t.expire(20.0 + UNSEEN_GIVE_UP_SECS + 1.0);
        assert_eq!(t.tracked_runs(), 0);
        assert_eq!(counters(&t).runs, [0, 0, 0]);
    }

    #[test]
    fn error_runs_add_put_failures_and_catalog_failures_once() {
        let mut t = tracker(0.0);
        let mut r = run("e", RunStatus::Error, 10.0, 70.0);
        r.put_failures = 7;
        r.catalog_registration_failures = 2;
        r.message = Some("boom".into());
        t.apply_runs(FLOW, vec![r.clone()], true, 100.0);
        t.apply_runs(FLOW, vec![r], true, 200.0);
        let c = counters(&t);
        assert_eq!(c.put_failures, 7);
        assert_eq!(c.catalog_registration_failures, 2);
        assert_eq!(c.runs, [0, 1, 0]);
        assert!(t.flows()[FLOW].last_successful.is_none());
    }

    #[test]
    fn deleted_flows_drop_their_state() {
        let mut t = tracker(0.0);
        t.apply_runs(
            FLOW,
            vec![run("a", RunStatus::Successful, 10.0, 20.0)],
            true,
            30.0,
        );
        t.set_flows(&BTreeSet::new());
        assert!(t.flows().is_empty());
        assert_eq!(t.tracked_runs(), 0);
    }
}
