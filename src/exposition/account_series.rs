//! The exporter's own series of each account and region (its polls, restarts and AWS calls),
//! kept as plain numbers and rendered as exposition text only when they changed.
//!
//! An organisation has hundreds of accounts with about 200 such series each. Kept in a
//! prometheus registry they cost about 100 KB per account, and every assembly gathered and
//! encoded all of them again; here an account costs its numbers and its last rendered text,
//! and an assembly renders only the accounts whose numbers changed since the last.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::exposition::family::{Family, FamilyBuilder};
use crate::exposition::metric::{def, labels, Metric};
use crate::histogram::HistogramData;

// In alphabetical order, as the prometheus crate wrote them when it kept these series.
labels!(pub struct Poll { account_id, region, source });
labels!(pub struct Restart { account_id, reason, region, source });
labels!(pub struct ApiCall { account_id, operation, outcome, region, service });
labels!(pub struct Api { account_id, operation, region, service });

def!(
    POLL_SUCCESS,
    "aws_workflow_exporter_poll_success",
    Gauge,
    Poll,
    "1 if the last poll of the source completed without an AWS error, 0 otherwise. As of the last completed poll."
);

def!(
    POLL_DURATION,
    "aws_workflow_exporter_poll_duration_seconds",
    Gauge,
    Poll,
    "Wall time of the last poll of the source, in seconds."
);

def!(
    LAST_POLL_SUCCESS,
    "aws_workflow_exporter_last_poll_success_timestamp_seconds",
    Gauge,
    Poll,
    "Unix time at which the last successful poll of the source finished."
);

def!(
    POLL_INTERVAL,
    "aws_workflow_exporter_poll_interval_seconds",
    Gauge,
    Poll,
    "Configured interval between polls of the source, in seconds."
);

def!(
    SOURCE_RESTARTS,
    "aws_workflow_exporter_source_restarts_total",
    Counter,
    Restart,
    "Polls the exporter ended because they panicked or overran their deadline (reason panic or deadline); the source polls again after a backoff."
);

def!(
    API_REQUESTS,
    "aws_workflow_exporter_api_requests_total",
    Counter,
    ApiCall,
    "AWS API call attempts made by the exporter (retries included), by outcome. account_id is unknown for calls made before the target's account id is known. As of the last completed poll."
);

def!(
    API_DURATION,
    "aws_workflow_exporter_api_request_duration_seconds",
    Histogram,
    Api,
    "Duration of AWS API call attempts, in seconds. As of the last completed poll."
);

def!(
    API_BUDGET_WAIT,
    "aws_workflow_exporter_api_budget_wait_seconds_total",
    Counter,
    Api,
    "Time the exporter waited for its own API budget (its share of the AWS token bucket of the account and region) before calling, in seconds."
);

/// Upper bounds of `aws_workflow_exporter_api_request_duration_seconds`' buckets.
static DURATION_BOUNDS: [f64; 10] = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Every account's series, and the names their call series are counted under.
#[derive(Debug, Default)]
pub struct AccountSeriesStore {
    /// By account id, then region.
    accounts: Mutex<BTreeMap<String, BTreeMap<String, Shared>>>,
    names: Mutex<Names>,
}

/// (service, operation, outcome) and (service, operation) names, numbered in the order first
/// seen: an account keeps numbers, not strings, per series.
#[derive(Debug, Default, Clone)]
struct Names {
    calls: Vec<(String, String, String)>,
    operations: Vec<(String, String)>,
    /// Numbers of the calls each target starts at 0.
    declared: Vec<u32>,
}

impl Names {
    fn call(&mut self, service: &str, operation: &str, outcome: &str) -> u32 {
        let found = self
            .calls
            .iter()
            .position(|(s, o, r)| s == service && o == operation && r == outcome);
        index(found.unwrap_or_else(|| {
            self.calls
                .push((service.into(), operation.into(), outcome.into()));
            self.calls.len() - 1
        }))
    }

    fn operation(&mut self, service: &str, operation: &str) -> u32 {
        let found = self
            .operations
            .iter()
            .position(|(s, o)| s == service && o == operation);
        index(found.unwrap_or_else(|| {
            self.operations.push((service.into(), operation.into()));
            self.operations.len() - 1
        }))
    }
}

/// A name's number; there are a few hundred names, never 2^32.
fn index(i: usize) -> u32 {
    u32::try_from(i).unwrap_or(u32::MAX)
}

type Shared = Arc<Mutex<AccountSeries>>;

/// A poll family and how a poll's record gives its value.
type PollFamily = (
    &'static Metric<Poll<'static>>,
    fn(&PollRecord) -> Option<f64>,
);

/// One account and region's numbers.
#[derive(Debug, Default)]
struct AccountSeries {
    /// Bumped by every change: `rendered` is current if it was rendered at this version.
    version: u64,
    polls: BTreeMap<String, PollRecord>,
    /// By (source, reason).
    restarts: BTreeMap<(String, String), u64>,
    /// By call name number.
    calls: BTreeMap<u32, u64>,
    /// By operation name number.
    durations: BTreeMap<u32, HistogramData>,
    budget_waits: BTreeMap<u32, f64>,
    rendered: Option<(u64, Arc<[Family]>)>,
}

#[derive(Debug, Clone, Copy)]
struct PollRecord {
    success: bool,
    duration: f64,
    interval: f64,
    last_success: Option<f64>,
}

impl AccountSeries {
    fn is_empty(&self) -> bool {
        self.polls.is_empty()
            && self.restarts.is_empty()
            && self.calls.is_empty()
            && self.durations.is_empty()
            && self.budget_waits.is_empty()
    }
}

impl AccountSeriesStore {
    /// Applies `change` to the series of (account id, region), created if new.
    fn update(&self, (account_id, region): (&str, &str), change: impl FnOnce(&mut AccountSeries)) {
        let series = {
            let mut accounts = self.accounts.lock().expect("account series lock");
            let regions = match accounts.get_mut(account_id) {
                Some(regions) => regions,
                None => accounts.entry(account_id.to_owned()).or_default(),
            };
            match regions.get(region) {
                Some(series) => series.clone(),
                None => regions.entry(region.to_owned()).or_default().clone(),
            }
        };
        let mut series = series.lock().expect("account series lock");
        change(&mut series);
        series.version += 1;
    }

    /// Applies `change` to the series of (account id, region) if there are any, and forgets
    /// them if nothing is left.
    fn update_existing(
        &self,
        (account_id, region): (&str, &str),
        change: impl FnOnce(&mut AccountSeries),
    ) {
        let mut accounts = self.accounts.lock().expect("account series lock");
        let Some(regions) = accounts.get_mut(account_id) else {
            return;
        };
        let Some(series) = regions.get(region) else {
            return;
        };
        let empty = {
            let mut series = series.lock().expect("account series lock");
            change(&mut series);
            series.version += 1;
            series.is_empty()
        };
        if empty {
            regions.remove(region);
            if regions.is_empty() {
                accounts.remove(account_id);
            }
        }
    }

    pub fn declare_call(&self, service: &str, operation: &str, outcome: &str) {
        let mut names = self.names.lock().expect("series names lock");
        let call = names.call(service, operation, outcome);
        if !names.declared.contains(&call) {
            names.declared.push(call);
        }
    }

    /// Starts every declared call counter of (account id, region) at 0.
    pub fn start_calls(&self, labels: (&str, &str)) {
        let declared = self
            .names
            .lock()
            .expect("series names lock")
            .declared
            .clone();
        self.update(labels, |s| {
            for call in declared {
                s.calls.entry(call).or_insert(0);
            }
        });
    }

    pub fn record_call(
        &self,
        service: &str,
        operation: &str,
        outcome: &str,
        labels: (&str, &str),
        elapsed: Option<Duration>,
    ) {
        let (call, op) = {
            let mut names = self.names.lock().expect("series names lock");
            (
                names.call(service, operation, outcome),
                names.operation(service, operation),
            )
        };
        self.update(labels, |s| {
            *s.calls.entry(call).or_insert(0) += 1;
            if let Some(d) = elapsed {
                s.durations
                    .entry(op)
                    .or_insert_with(|| HistogramData::new(&DURATION_BOUNDS))
                    .observe(d.as_secs_f64());
            }
        });
    }

    pub fn record_budget_wait(
        &self,
        service: &str,
        operation: &str,
        labels: (&str, &str),
        waited: Duration,
    ) {
        let op = self
            .names
            .lock()
            .expect("series names lock")
            .operation(service, operation);
        self.update(labels, |s| {
            *s.budget_waits.entry(op).or_insert(0.0) += waited.as_secs_f64();
        });
    }

    pub fn record_restart(&self, source: &str, labels: (&str, &str), reason: &str) {
        self.update(labels, |s| {
            *s.restarts
                .entry((source.to_owned(), reason.to_owned()))
                .or_insert(0) += 1;
        });
    }

    pub fn record_poll(
        &self,
        source: &str,
        labels: (&str, &str),
        success: bool,
        duration: Duration,
        interval: Duration,
        finished_at: f64,
    ) {
        self.update(labels, |s| {
            let last_success = s.polls.get(source).and_then(|p| p.last_success);
            s.polls.insert(
                source.to_owned(),
                PollRecord {
                    success,
                    duration: duration.as_secs_f64(),
                    interval: interval.as_secs_f64(),
                    last_success: if success {
                        Some(finished_at)
                    } else {
                        last_success
                    },
                },
            );
        });
    }

    /// Forgets a source's poll series of (account id, region).
    pub fn forget_polls(&self, source: &str, labels: (&str, &str)) {
        self.update_existing(labels, |s| {
            s.polls.remove(source);
        });
    }

    /// Forgets every call series of (account id, region).
    pub fn forget_calls(&self, labels: (&str, &str)) {
        self.update_existing(labels, |s| {
            s.calls.clear();
            s.durations.clear();
            s.budget_waits.clear();
        });
    }

    /// Of `accounts`, how many were polled (every last poll in every region succeeded) and how
    /// many are failing (a last poll failed); accounts not polled yet count in neither.
    pub fn poll_outcomes<'a>(&self, accounts: impl IntoIterator<Item = &'a str>) -> (usize, usize) {
        let all = self.accounts.lock().expect("account series lock");
        let (mut polled, mut failing) = (0, 0);
        for account in accounts {
            let Some(regions) = all.get(account) else {
                continue;
            };
            let (mut ok, mut failed) = (false, false);
            for series in regions.values() {
                for poll in series.lock().expect("account series lock").polls.values() {
                    ok |= poll.success;
                    failed |= !poll.success;
                }
            }
            if failed {
                failing += 1;
            } else if ok {
                polled += 1;
            }
        }
        (polled, failing)
    }

    /// Each account and region's families, in account order; rendered again only for those
    /// that changed since the last call (the others are the same `Arc` as last time).
    pub fn families(&self) -> Vec<Arc<[Family]>> {
        let all: Vec<(String, String, Shared)> = {
            let accounts = self.accounts.lock().expect("account series lock");
            accounts
                .iter()
                .flat_map(|(account_id, regions)| {
                    regions
                        .iter()
                        .map(|(region, s)| (account_id.clone(), region.clone(), s.clone()))
                })
                .collect()
        };
        // A copy (a few hundred short names): rendering 500 accounts must not hold the lock
        // every AWS call's record takes.
        let names = self.names.lock().expect("series names lock").clone();
        all.into_iter()
            .map(|(account_id, region, series)| {
                let mut series = series.lock().expect("account series lock");
                match &series.rendered {
                    Some((version, families)) if *version == series.version => families.clone(),
                    _ => {
                        let families: Arc<[Family]> =
                            render(&series, &names, &account_id, &region).into();
                        series.rendered = Some((series.version, families.clone()));
                        families
                    }
                }
            })
            .collect()
    }
}

fn render(s: &AccountSeries, names: &Names, account_id: &str, region: &str) -> Vec<Family> {
    let mut out = Vec::new();
    let poll = |source| Poll {
        account_id,
        region,
        source,
    };
    let polls: [PollFamily; 4] = [
        (&POLL_SUCCESS, |p| Some(if p.success { 1.0 } else { 0.0 })),
        (&POLL_DURATION, |p| Some(p.duration)),
        (&LAST_POLL_SUCCESS, |p| p.last_success),
        (&POLL_INTERVAL, |p| Some(p.interval)),
    ];
    for (metric, value) in polls {
        let mut b = FamilyBuilder::new(metric);
        for (source, p) in &s.polls {
            if let Some(v) = value(p) {
                b.add(&poll(source), v);
            }
        }
        b.finish(&mut out);
    }
    let mut b = FamilyBuilder::new(&SOURCE_RESTARTS);
    for ((source, reason), n) in &s.restarts {
        let labels = Restart {
            account_id,
            reason,
            region,
            source,
        };
        b.add(&labels, *n as f64);
    }
    b.finish(&mut out);
    let mut b = FamilyBuilder::new(&API_REQUESTS);
    for (call, n) in &s.calls {
        if let Some((service, operation, outcome)) = names.calls.get(*call as usize) {
            let labels = ApiCall {
                account_id,
                operation,
                outcome,
                region,
                service,
            };
            b.add(&labels, *n as f64);
        }
    }
    b.finish(&mut out);
    let api = |op: u32| {
        names
            .operations
            .get(op as usize)
            .map(|(service, operation)| Api {
                account_id,
                operation,
                region,
                service,
            })
    };
    let mut b = FamilyBuilder::new(&API_DURATION);
    for (op, h) in &s.durations {
        if let Some(labels) = api(*op) {
            b.add_histogram(&labels, h);
        }
    }
    b.finish(&mut out);
    let mut b = FamilyBuilder::new(&API_BUDGET_WAIT);
    for (op, waited) in &s.budget_waits {
        if let Some(labels) = api(*op) {
            b.add(&labels, *waited);
        }
    }
    b.finish(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(families: &[Family]) -> String {
        families
            .iter()
            .flat_map(|f| &f.blocks)
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .collect()
    }

    const ACCOUNT: (&str, &str) = ("111122223333", "eu-west-1");

    #[test]
    fn an_accounts_series_render_with_their_labels_in_alphabetical_order() {
        let store = AccountSeriesStore::default();
        store.record_poll(
            "sfn_map_runs",
            ACCOUNT,
            true,
            Duration::from_millis(1500),
            Duration::from_secs(60),
            1_700_000_000.0,
        );
        store.record_call(
            "states",
            "DescribeMapRun",
            "ok",
            ACCOUNT,
            Some(Duration::from_millis(30)),
        );
        store.record_budget_wait("states", "DescribeMapRun", ACCOUNT, Duration::from_secs(2));
        store.record_restart("sfn_map_runs", ACCOUNT, "deadline");
        let families = store.families();
        assert_eq!(families.len(), 1);
        let text = text(&families[0]);
        let labels = r#"account_id="111122223333",region="eu-west-1""#;
        for line in [
            format!(r#"aws_workflow_exporter_poll_success{{{labels},source="sfn_map_runs"}} 1"#),
            format!(r#"aws_workflow_exporter_poll_duration_seconds{{{labels},source="sfn_map_runs"}} 1.5"#),
            format!(r#"aws_workflow_exporter_last_poll_success_timestamp_seconds{{{labels},source="sfn_map_runs"}} 1700000000"#),
            format!(r#"aws_workflow_exporter_poll_interval_seconds{{{labels},source="sfn_map_runs"}} 60"#),
            r#"aws_workflow_exporter_source_restarts_total{account_id="111122223333",reason="deadline",region="eu-west-1",source="sfn_map_runs"} 1"#.into(),
            r#"aws_workflow_exporter_api_requests_total{account_id="111122223333",operation="DescribeMapRun",outcome="ok",region="eu-west-1",service="states"} 1"#.into(),
            r#"aws_workflow_exporter_api_request_duration_seconds_bucket{account_id="111122223333",operation="DescribeMapRun",region="eu-west-1",service="states",le="0.025"} 0"#.into(),
            r#"aws_workflow_exporter_api_request_duration_seconds_bucket{account_id="111122223333",operation="DescribeMapRun",region="eu-west-1",service="states",le="0.05"} 1"#.into(),
            r#"aws_workflow_exporter_api_request_duration_seconds_count{account_id="111122223333",operation="DescribeMapRun",region="eu-west-1",service="states"} 1"#.into(),
            r#"aws_workflow_exporter_api_budget_wait_seconds_total{account_id="111122223333",operation="DescribeMapRun",region="eu-west-1",service="states"} 2"#.into(),
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing from\n{text}");
        }
    }

    #[test]
    fn a_failed_poll_keeps_the_last_success_time() {
        let store = AccountSeriesStore::default();
        let poll = |success, at| {
            store.record_poll(
                "s",
                ACCOUNT,
                success,
                Duration::ZERO,
                Duration::from_secs(60),
                at,
            )
        };
        poll(true, 100.0);
        poll(false, 160.0);
        let text = text(&store.families()[0]);
        assert!(text.contains("aws_workflow_exporter_poll_success{account_id=\"111122223333\",region=\"eu-west-1\",source=\"s\"} 0\n"));
        assert!(text.contains("aws_workflow_exporter_last_poll_success_timestamp_seconds{account_id=\"111122223333\",region=\"eu-west-1\",source=\"s\"} 100\n"));
    }

    #[test]
    fn only_accounts_whose_series_changed_are_rendered_again() {
        let store = AccountSeriesStore::default();
        let other = ("444455556666", "eu-west-1");
        store.record_call("states", "ListExecutions", "ok", ACCOUNT, None);
        store.record_call("states", "ListExecutions", "ok", other, None);
        let first = store.families();
        let again = store.families();
        assert!(Arc::ptr_eq(&first[0], &again[0]) && Arc::ptr_eq(&first[1], &again[1]));
        store.record_call("states", "ListExecutions", "throttled", other, None);
        let changed = store.families();
        assert!(Arc::ptr_eq(&first[0], &changed[0]), "unchanged account");
        assert!(!Arc::ptr_eq(&first[1], &changed[1]), "changed account");
        assert!(text(&changed[1]).contains("outcome=\"throttled\""));
    }

    #[test]
    fn declared_calls_start_at_zero_and_forgetting_an_accounts_calls_drops_it() {
        let store = AccountSeriesStore::default();
        store.declare_call("states", "ListMapRuns", "ok");
        store.declare_call("states", "ListMapRuns", "throttled");
        store.start_calls(ACCOUNT);
        let text0 = text(&store.families()[0]);
        assert_eq!(text0.matches("api_requests_total{").count(), 2, "{text0}");
        assert!(
            text0.contains("outcome=\"throttled\",region=\"eu-west-1\",service=\"states\"} 0\n")
        );
        store.forget_calls(ACCOUNT);
        assert!(store.families().is_empty(), "nothing left of the account");
        // A poll series keeps the account while its calls go.
        store.record_call("states", "ListMapRuns", "ok", ACCOUNT, None);
        store.record_poll("s", ACCOUNT, true, Duration::ZERO, Duration::ZERO, 1.0);
        store.forget_calls(ACCOUNT);
        let left = text(&store.families()[0]);
        assert!(!left.contains("api_requests_total") && left.contains("poll_success"));
        assert_eq!(
            store.poll_outcomes(["111122223333", "444455556666"]),
            (1, 0)
        );
        store.record_poll("t", ACCOUNT, false, Duration::ZERO, Duration::ZERO, 2.0);
        assert_eq!(
            store.poll_outcomes(["111122223333"]),
            (0, 1),
            "one source failing"
        );
    }
}
