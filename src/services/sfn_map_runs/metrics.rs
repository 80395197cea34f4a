//! Metric families of the Step Functions Map Run source, built from the state store.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, PoisonError};

use crate::exposition::family::{
    gather_sections, Family, FamilyBuilder, Sections, SectionsBuilder,
};
use crate::exposition::metric::{def, MetricDef};
use crate::services::sfn_map_runs::obs::{MapRunObs, MapRunStatus, FINISHED_ITEM_STATUSES};
use crate::services::sfn_map_runs::tracker::{MapRunTracker, RunLabels, ShownRun};

const RUN: &[&str] = &[
    "account_id",
    "region",
    "state_machine",
    "map_state",
    "execution",
    "map_run",
];
const RUN_STATUS: &[&str] = &[
    "account_id",
    "region",
    "state_machine",
    "map_state",
    "execution",
    "map_run",
    "status",
];
const AGG: &[&str] = &["account_id", "region", "state_machine", "map_state"];
const BACKLOG: &[&str] = &["account_id", "region", "kind"];
const AGG_STATUS: &[&str] = &[
    "account_id",
    "region",
    "state_machine",
    "map_state",
    "status",
];

def!(
    ITEMS,
    "aws_sfn_map_run_items",
    Gauge,
    RUN_STATUS,
    "Items of the map run by status (DescribeMapRun itemCounts)."
);
def!(
    ITEMS_RESULTS_WRITTEN,
    "aws_sfn_map_run_items_results_written",
    Gauge,
    RUN,
    "Items whose results were written to the ResultWriter destination (itemCounts.resultsWritten)."
);
def!(
    ITEMS_NOT_REDRIVABLE,
    "aws_sfn_map_run_items_failures_not_redrivable",
    Gauge,
    RUN,
    "Failed items that a redrive cannot rerun (itemCounts.failuresNotRedrivable)."
);
def!(
    ITEMS_PENDING_REDRIVE,
    "aws_sfn_map_run_items_pending_redrive",
    Gauge,
    RUN,
    "Items waiting to be rerun by a redrive (itemCounts.pendingRedrive)."
);
def!(
    CHILDREN,
    "aws_sfn_map_run_child_executions",
    Gauge,
    RUN_STATUS,
    "Child workflow executions of the map run by status (DescribeMapRun executionCounts)."
);
def!(
    CHILDREN_RESULTS_WRITTEN,
    "aws_sfn_map_run_child_executions_results_written",
    Gauge,
    RUN,
    "Child executions whose results were written (executionCounts.resultsWritten)."
);
def!(
    CHILDREN_NOT_REDRIVABLE,
    "aws_sfn_map_run_child_executions_failures_not_redrivable",
    Gauge,
    RUN,
    "Failed child executions that a redrive cannot rerun (executionCounts.failuresNotRedrivable)."
);
def!(
    CHILDREN_PENDING_REDRIVE,
    "aws_sfn_map_run_child_executions_pending_redrive",
    Gauge,
    RUN,
    "Child executions waiting to be rerun by a redrive (executionCounts.pendingRedrive)."
);
def!(
    STATUS,
    "aws_sfn_map_run_status",
    StateSet,
    RUN_STATUS,
    "Status of the map run: 1 for the current one of running, succeeded, failed, aborted. A run found in its parent's history (MapRunStarted) shows running, with its start time, before its first DescribeMapRun; its other series come with that describe."
);
def!(
    MAX_CONCURRENCY,
    "aws_sfn_map_run_max_concurrency",
    Gauge,
    RUN,
    "Maximum child executions running at once; 0 means unlimited."
);
def!(TOLERATED_RATIO, "aws_sfn_map_run_tolerated_failure_ratio", Gauge, RUN, "Share of failed items (0..1) the map run tolerates before failing (toleratedFailurePercentage / 100).");
def!(
    TOLERATED_COUNT,
    "aws_sfn_map_run_tolerated_failed_items",
    Gauge,
    RUN,
    "Failed items the map run tolerates before failing (toleratedFailureCount); 0 means no count threshold. Not named _count: promtool reserves that suffix."
);
def!(
    REDRIVES,
    "aws_sfn_map_run_redrives_total",
    Counter,
    RUN,
    "Times the map run has been redriven (redriveCount)."
);
def!(
    START,
    "aws_sfn_map_run_start_timestamp_seconds",
    Gauge,
    RUN,
    "Unix time the map run started."
);
def!(
    STOP,
    "aws_sfn_map_run_stop_timestamp_seconds",
    Gauge,
    RUN,
    "Unix time the map run stopped; absent while it runs."
);
def!(
    LAST_REDRIVE,
    "aws_sfn_map_run_last_redrive_timestamp_seconds",
    Gauge,
    RUN,
    "Unix time of the map run's last redrive; absent if never redriven."
);
def!(
    OPEN,
    "aws_sfn_map_runs_open",
    Gauge,
    AGG,
    "Map runs running now."
);
def!(FINISHED, "aws_sfn_map_runs_finished_total", Counter, AGG_STATUS, "Map runs the exporter saw reach succeeded, failed or aborted; each run counted once, redrives included. Runs finished before the exporter started are not counted.");
def!(ITEMS_FINISHED, "aws_sfn_map_run_items_finished_total", Counter, AGG_STATUS, "Items of finished map runs by succeeded, failed, timed_out, aborted; a redriven run that finishes again adds only the items that newly reached a status.");

def!(
    HISTORY_BACKLOG,
    "aws_workflow_exporter_history_backlog",
    Gauge,
    BACKLOG,
    "The exporter's own progress (per replica when sharded): history (runs finished before the exporter started, within lookback) still to read in the background, newest first, with API budget open work does not need: state machines not listed yet, executions whose map runs are not listed yet, map runs not described yet. Absent while the account id is unknown."
);

pub const DEFS: &[&MetricDef] = &[
    &ITEMS,
    &ITEMS_RESULTS_WRITTEN,
    &ITEMS_NOT_REDRIVABLE,
    &ITEMS_PENDING_REDRIVE,
    &CHILDREN,
    &CHILDREN_RESULTS_WRITTEN,
    &CHILDREN_NOT_REDRIVABLE,
    &CHILDREN_PENDING_REDRIVE,
    &STATUS,
    &MAX_CONCURRENCY,
    &TOLERATED_RATIO,
    &TOLERATED_COUNT,
    &REDRIVES,
    &START,
    &STOP,
    &LAST_REDRIVE,
    &OPEN,
    &FINISHED,
    &ITEMS_FINISHED,
    &HISTORY_BACKLOG,
    &STATE_MACHINE_INFO,
];

const SM: &[&str] = &["account_id", "region", "state_machine"];
def!(
    STATE_MACHINE_INFO,
    "aws_sfn_state_machine_info",
    Info,
    SM,
    "One series per watched state machine, constant 1, with a `tag_<key>` label per tag key in `tags.export` the state machine has (ListTagsForResource; keys sanitised to label names): join on it to filter or route by owner."
);

/// `aws_sfn_state_machine_info` of the watched state machines (name, ARN).
pub fn render_info(
    watched: &[(String, String)],
    tags: &crate::tags::TagCache,
    config: &crate::tags::TagsConfig,
    account_id: &str,
    region: &str,
    out: &mut Vec<Family>,
) {
    let mut info = FamilyBuilder::new(&STATE_MACHINE_INFO);
    for (name, arn) in watched {
        info.add_with(
            &[account_id, region, name],
            &config.labels(tags.get(arn)),
            1.0,
        );
    }
    info.finish(out);
}

/// The label values of one run's series, in the order of `RUN`.
fn run_labels<'a>(account_id: &'a str, region: &'a str, l: &'a RunLabels) -> [&'a str; 6] {
    [
        account_id,
        region,
        &l.state_machine,
        &l.map_state,
        &l.execution,
        &l.map_run,
    ]
}

/// One map run's series in every per-run family, rendered once per describe (see
/// [`MapRunTracker::visible_runs`]); `key` identifies the account and region labels.
fn run_series(
    key: u64,
    account_id: &str,
    region: &str,
    l: &RunLabels,
    obs: &MapRunObs,
) -> Sections {
    let labels = run_labels(account_id, region, l);
    let mut b = SectionsBuilder::new(key);
    for (def, c) in [(&ITEMS, &obs.items), (&CHILDREN, &obs.executions)] {
        b.family(def);
        for (s, v) in c.by_status() {
            let mut with_status = labels.to_vec();
            with_status.push(s);
            b.add(&with_status, v as f64);
        }
    }
    let statuses: Vec<&str> = MapRunStatus::ALL.iter().map(|s| s.as_label()).collect();
    b.family(&STATUS)
        .add_state_set(&labels, &statuses, obs.status.as_label());
    for (def, v) in [
        (&ITEMS_RESULTS_WRITTEN, Some(obs.items.results_written)),
        (
            &CHILDREN_RESULTS_WRITTEN,
            Some(obs.executions.results_written),
        ),
        (&ITEMS_NOT_REDRIVABLE, obs.items.failures_not_redrivable),
        (&ITEMS_PENDING_REDRIVE, obs.items.pending_redrive),
        (
            &CHILDREN_NOT_REDRIVABLE,
            obs.executions.failures_not_redrivable,
        ),
        (&CHILDREN_PENDING_REDRIVE, obs.executions.pending_redrive),
        (&MAX_CONCURRENCY, Some(obs.max_concurrency)),
        (&TOLERATED_COUNT, Some(obs.tolerated_failure_count)),
        (&REDRIVES, Some(obs.redrive_count)),
    ] {
        b.family(def);
        if let Some(v) = v {
            b.add(&labels, v as f64);
        }
    }
    for (def, v) in [
        (&TOLERATED_RATIO, Some(obs.tolerated_failure_ratio)),
        (&START, Some(obs.start)),
        (&STOP, obs.stop),
        (&LAST_REDRIVE, obs.redrive_date),
    ] {
        b.family(def);
        if let Some(v) = v {
            b.add(&labels, v);
        }
    }
    b.finish()
}

/// Each shown run's per-run series as rendered after its last describe, by the describe's serial
/// number: an unchanged run costs no rendering and no copy per publish.
#[derive(Debug, Default)]
pub struct RunSeriesCache(Mutex<HashMap<u64, Sections>>);

/// Builds every family of the source for one target.
pub fn render(
    tracker: &MapRunTracker,
    cache: &RunSeriesCache,
    account_id: &str,
    region: &str,
    now: f64,
    out: &mut Vec<Family>,
) {
    // Cached series carry the account and region labels as they were when rendered: should
    // those change (the account id learned late), they are rendered afresh.
    let key = {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (account_id, region).hash(&mut h);
        h.finish()
    };
    let shown: Vec<ShownRun> = tracker.visible_runs(now).collect();
    let mut cached = cache.0.lock().unwrap_or_else(PoisonError::into_inner);
    for run in &shown {
        if cached.get(&run.describe).is_none_or(|s| s.key() != key) {
            let series = run_series(key, account_id, region, run.labels, run.obs);
            cached.insert(run.describe, series);
        }
    }
    if cached.len() > shown.len() {
        let live: HashSet<u64> = shown.iter().map(|r| r.describe).collect();
        cached.retain(|describe, _| live.contains(describe));
    }
    let mut fresh = Vec::new();
    // Runs known only from their MapRunStarted event: running since then, counts to come.
    let statuses: Vec<&str> = MapRunStatus::ALL.iter().map(|s| s.as_label()).collect();
    for (l, start) in tracker.started_runs() {
        let labels = run_labels(account_id, region, l);
        let mut b = SectionsBuilder::new(key);
        b.family(&STATUS)
            .add_state_set(&labels, &statuses, MapRunStatus::Running.as_label());
        b.family(&START).add(&labels, start);
        fresh.push(b.finish());
    }
    let cached = &*cached;
    gather_sections(
        shown
            .iter()
            .filter_map(|r| cached.get(&r.describe))
            .chain(&fresh),
        out,
    );

    let mut open = FamilyBuilder::new(&OPEN);
    for ((sm, map_state), n) in tracker.open_runs() {
        open.add(&[account_id, region, &sm, &map_state], n as f64);
    }
    let mut finished = FamilyBuilder::new(&FINISHED);
    let mut items_finished = FamilyBuilder::new(&ITEMS_FINISHED);
    for ((sm, map_state), agg) in tracker.aggregates() {
        for (s, n) in MapRunStatus::TERMINAL.iter().zip(agg.runs_finished) {
            finished.add(&[account_id, region, sm, map_state, s.as_label()], n as f64);
        }
        for (s, n) in FINISHED_ITEM_STATUSES.iter().zip(agg.items_finished) {
            items_finished.add(&[account_id, region, sm, map_state, s], n as f64);
        }
    }

    let mut backlog = FamilyBuilder::new(&HISTORY_BACKLOG);
    let b = tracker.backlog();
    // Until the account is known, another such target would emit the same series.
    let known = account_id != "unknown";
    for (kind, n) in [
        ("state_machine", b.state_machines),
        ("execution", b.executions),
        ("map_run", b.map_runs),
    ]
    .into_iter()
    .filter(|_| known)
    {
        backlog.add(&[account_id, region, kind], n as f64);
    }

    for fam in [open, finished, items_finished, backlog] {
        fam.finish(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::services::sfn_map_runs::obs::{Counts, ExecutionObs, Listing};

    const SM: &str = "arn:aws:states:us-east-1:123456789012:stateMachine:etl";
    const EXEC: &str = "arn:aws:states:us-east-1:123456789012:execution:etl:run-1";
    const RUN: &str = "arn:aws:states:us-east-1:123456789012:mapRun:etl/Fan Out:5f2a";

    fn described(failed: i64) -> MapRunObs {
        MapRunObs {
            arn: RUN.into(),
            execution_arn: EXEC.into(),
            status: MapRunStatus::Running,
            start: 1000.0,
            stop: None,
            max_concurrency: 10,
            tolerated_failure_ratio: 0.1,
            tolerated_failure_count: 0,
            items: Counts {
                failed,
                total: 100,
                pending: 100 - failed,
                ..Counts::default()
            },
            executions: Counts::default(),
            redrive_count: 0,
            redrive_date: None,
        }
    }

    fn text(tracker: &MapRunTracker, cache: &RunSeriesCache, account_id: &str) -> String {
        let mut families = Vec::new();
        render(
            tracker,
            cache,
            account_id,
            "us-east-1",
            2000.0,
            &mut families,
        );
        families
            .iter()
            .flat_map(|f| &f.blocks)
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .collect()
    }

    #[test]
    fn cached_run_series_follow_describes_and_label_changes() {
        let mut t = MapRunTracker::new(1000.0, 3600.0);
        let exec = ExecutionObs {
            arn: EXEC.into(),
            state_machine_arn: SM.into(),
            name: "run-1".into(),
            running: true,
            start: 1000.0,
            stop: None,
            redrive_count: 0,
            redrive_date: None,
            version: None,
        };
        t.observe_listing(SM, Listing::Newest, vec![exec], 0.0, 1000.0);
        t.record_map_runs(EXEC, vec![RUN.into()]);
        t.apply_describe(described(3), 1000.0);
        let cache = RunSeriesCache::default();
        let failed = |account: &str, n: u32| {
            format!("aws_sfn_map_run_items{{account_id=\"{account}\",region=\"us-east-1\",state_machine=\"etl\",map_state=\"Fan Out\",execution=\"run-1\",map_run=\"5f2a\",status=\"failed\"}} {n}\n")
        };

        let first = text(&t, &cache, "unknown");
        assert!(first.contains(&failed("unknown", 3)), "{first}");
        // The account id learned after the run was rendered: no series keeps the old label.
        let learned = text(&t, &cache, "123456789012");
        assert!(learned.contains(&failed("123456789012", 3)), "{learned}");
        assert!(!learned.contains("unknown"), "{learned}");
        // A new describe replaces the cached series.
        t.apply_describe(described(7), 1060.0);
        let refreshed = text(&t, &cache, "123456789012");
        assert!(
            refreshed.contains(&failed("123456789012", 7)),
            "{refreshed}"
        );
        assert!(!refreshed.contains(&failed("123456789012", 3)));
        // Every per-run family is there once per run, in one piece per run.
        assert_eq!(refreshed.matches("aws_sfn_map_run_status{").count(), 4);
        assert_eq!(
            text(&t, &cache, "123456789012"),
            refreshed,
            "a snapshot of cached runs is stable"
        );
        assert_eq!(
            cache.0.lock().unwrap().len(),
            1,
            "only the last describe is kept"
        );
    }
}
