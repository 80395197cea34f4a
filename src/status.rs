//! What `/status` and `/api/v1/status` show: plain records that the scheduler, the API budget
//! and the reload loop write where their data already flows, and the web layer reads. Nothing
//! here calls AWS. A leaf: it names no service and imports nothing of the exporter.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Mutex;

use serde::Serialize;

/// How many of a source's most recent errors are kept.
pub const MAX_ERRORS: usize = 5;

/// The state of one source on one target, as the page shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// No poll has finished yet.
    Pending,
    /// The last poll finished without errors.
    Ok,
    /// The last poll finished, with errors on some resources or calls.
    Degraded,
    /// The last poll ended on an error (or was ended by the supervisor): nothing new was learned.
    Failing,
    /// A poll is running and waits for a token of the exporter's API budget.
    WaitingForBudget,
}

/// One error of a poll.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ErrorRecord {
    /// Unix seconds.
    pub at: f64,
    /// The API operation (`ListFlows`), or `poll` for the supervisor's own errors.
    pub operation: String,
    /// The IAM action of the operation, when it has one.
    pub iam_action: Option<String>,
    /// The AWS error code (`AccessDeniedException`), when AWS answered with one.
    pub code: Option<String>,
    /// `throttled`, `not_found` or `error`.
    pub kind: String,
    /// The message as AWS (or the SDK) gave it: untrusted text.
    pub message: String,
}

/// The last finished poll of a source.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PollRecord {
    /// Unix seconds at its start.
    pub started_at: f64,
    pub duration_seconds: f64,
    /// `ok`, `errors` (finished with errors) or `failed` (ended on an error).
    pub outcome: &'static str,
    pub errors: usize,
}

/// One (source, target) pair.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SourceStatus {
    pub source: String,
    pub target: String,
    pub account_id: String,
    pub region: String,
    pub state: State,
    pub interval_seconds: f64,
    /// Unix seconds at which the running poll started; `None` between polls.
    pub polling_since: Option<f64>,
    pub last_poll: Option<PollRecord>,
    /// Most recent last, at most [`MAX_ERRORS`].
    pub last_errors: Vec<ErrorRecord>,
    /// Tracked resources by kind, as of the last poll.
    pub tracked: BTreeMap<String, usize>,
    /// History still to read, by kind (empty for sources that read none).
    pub backlog: BTreeMap<String, usize>,
    /// The API services its calls go to (to tell whether it waits for budget).
    #[serde(skip)]
    pub services: Vec<&'static str>,
    #[serde(skip)]
    failed: bool,
}

/// The exporter's token bucket for one operation of one target.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BudgetStatus {
    pub target: String,
    pub service: String,
    pub operation: String,
    /// Tokens in the bucket when it was last used.
    pub tokens: f64,
    pub capacity: f64,
    pub refill_per_second: f64,
    /// The exporter's share of AWS's bucket (`aws_api.quota_share`, divided by the shards).
    pub share: f64,
    /// Calls that had to wait for a token, and for how long in all.
    pub waits: u64,
    pub wait_seconds: f64,
    /// True while a call waits for a token.
    pub waiting: bool,
}

/// The last configuration load.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReloadStatus {
    /// Unix seconds.
    pub at: f64,
    pub success: bool,
    /// Unix seconds of the last successful load.
    pub last_success_at: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ShardStatus {
    pub ordinal: u32,
    pub total: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BuildStatus {
    pub version: &'static str,
    pub revision: &'static str,
}

/// Everything the status page shows, at one instant.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatusReport {
    /// Unix seconds at which the report was made.
    pub now: f64,
    /// Unix seconds at which the exporter started.
    pub started_at: f64,
    pub build: BuildStatus,
    pub shard: ShardStatus,
    pub reload: Option<ReloadStatus>,
    pub sources: Vec<SourceStatus>,
    pub budgets: Vec<BudgetStatus>,
}

#[derive(Debug, Default)]
struct Inner {
    started_at: f64,
    shard: (u32, u32),
    reload: Option<ReloadStatus>,
    sources: BTreeMap<(String, String), SourceStatus>,
    /// By target, then (service, operation): a call finds its entry without allocating.
    budgets: BTreeMap<String, BTreeMap<(&'static str, &'static str), BudgetStatus>>,
}

/// Where the status is kept; shared by the writers and the web layer.
#[derive(Debug)]
pub struct StatusBoard {
    inner: Mutex<Inner>,
}

impl Default for StatusBoard {
    fn default() -> Self {
        Self::new(0.0)
    }
}

/// A finished poll, as the scheduler reports it.
#[derive(Debug)]
pub struct PollReport<'a> {
    pub source: &'a str,
    pub target: &'a str,
    pub account_id: &'a str,
    pub region: &'a str,
    pub started_at: f64,
    pub duration_seconds: f64,
    /// The poll ended on an error instead of finishing.
    pub failed: bool,
    pub errors: Vec<ErrorRecord>,
    pub tracked: Vec<(&'static str, usize)>,
    pub backlog: Vec<(&'static str, usize)>,
}

/// A bucket's numbers after a call took (or waited for) a token.
#[derive(Debug, Clone, Copy)]
pub struct BucketReport<'a> {
    pub target: &'a str,
    pub service: &'static str,
    pub operation: &'static str,
    pub tokens: f64,
    pub capacity: f64,
    pub refill_per_second: f64,
    pub share: f64,
}

impl StatusBoard {
    pub fn new(started_at: f64) -> Self {
        Self {
            inner: Mutex::new(Inner {
                started_at,
                shard: (0, 1),
                ..Inner::default()
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn set_shard(&self, ordinal: u32, total: u32) {
        self.lock().shard = (ordinal, total);
    }

    pub fn record_reload(&self, success: bool, at: f64) {
        let mut inner = self.lock();
        let last_success_at = if success {
            Some(at)
        } else {
            inner.reload.as_ref().and_then(|r| r.last_success_at)
        };
        inner.reload = Some(ReloadStatus {
            at,
            success,
            last_success_at,
        });
    }

    /// A source instance exists (before its first poll); `services` are its calls' API services.
    pub fn declare_source(&self, source: &str, target: &str, services: Vec<&'static str>) {
        let mut inner = self.lock();
        let entry = inner
            .sources
            .entry((source.to_owned(), target.to_owned()))
            .or_insert_with(|| SourceStatus {
                source: source.to_owned(),
                target: target.to_owned(),
                account_id: "unknown".into(),
                region: "unknown".into(),
                state: State::Pending,
                interval_seconds: 0.0,
                polling_since: None,
                last_poll: None,
                last_errors: Vec::new(),
                tracked: BTreeMap::new(),
                backlog: BTreeMap::new(),
                services: Vec::new(),
                failed: false,
            });
        entry.services = services;
    }

    /// A poll of a declared source started.
    pub fn poll_started(&self, source: &str, target: &str, at: f64, interval_seconds: f64) {
        if let Some(s) = self
            .lock()
            .sources
            .get_mut(&(source.to_owned(), target.to_owned()))
        {
            s.polling_since = Some(at);
            s.interval_seconds = interval_seconds;
        }
    }

    pub fn poll_finished(&self, report: PollReport<'_>) {
        let mut inner = self.lock();
        let Some(s) = inner
            .sources
            .get_mut(&(report.source.to_owned(), report.target.to_owned()))
        else {
            return;
        };
        s.account_id = report.account_id.to_owned();
        s.region = report.region.to_owned();
        s.polling_since = None;
        s.failed = report.failed;
        s.last_poll = Some(PollRecord {
            started_at: report.started_at,
            duration_seconds: report.duration_seconds,
            outcome: match (report.failed, report.errors.is_empty()) {
                (true, _) => "failed",
                (false, true) => "ok",
                (false, false) => "errors",
            },
            errors: report.errors.len(),
        });
        // Only the last few matter, and a poll may report thousands.
        let skip = report.errors.len().saturating_sub(MAX_ERRORS);
        let mut ring: VecDeque<ErrorRecord> = std::mem::take(&mut s.last_errors).into();
        for e in report.errors.into_iter().skip(skip) {
            if ring.len() == MAX_ERRORS {
                ring.pop_front();
            }
            ring.push_back(e);
        }
        s.last_errors = ring.into();
        s.tracked = to_map(&report.tracked);
        s.backlog = to_map(&report.backlog);
    }

    /// A source instance is gone (a reload removed it, or its account left the organisation);
    /// with the last source of its target go the target's budgets.
    pub fn forget_source(&self, source: &str, target: &str) {
        let mut inner = self.lock();
        inner
            .sources
            .remove(&(source.to_owned(), target.to_owned()));
        if !inner.sources.keys().any(|(_, t)| t == target) {
            inner.budgets.remove(target);
        }
    }

    /// A call took a token (`waited`: after waiting that many seconds, 0 when it did not wait).
    pub fn record_bucket(&self, bucket: BucketReport<'_>, waited: f64) {
        let mut inner = self.lock();
        let b = budget_entry(&mut inner, bucket);
        b.waiting = false;
        if waited > 0.0 {
            b.waits += 1;
            b.wait_seconds += waited;
        }
    }

    /// A call starts waiting for a token.
    pub fn record_waiting(&self, bucket: BucketReport<'_>) {
        budget_entry(&mut self.lock(), bucket).waiting = true;
    }

    /// The whole status now; `now` is Unix seconds.
    pub fn report(&self, now: f64) -> StatusReport {
        let inner = self.lock();
        let waiting: BTreeSet<(&str, &str)> = inner
            .budgets
            .values()
            .flat_map(BTreeMap::values)
            .filter(|b| b.waiting)
            .map(|b| (b.target.as_str(), b.service.as_str()))
            .collect();
        let sources = inner
            .sources
            .values()
            .map(|s| {
                let mut s = s.clone();
                s.state = if s.polling_since.is_some()
                    && s.services
                        .iter()
                        .any(|svc| waiting.contains(&(s.target.as_str(), svc)))
                {
                    State::WaitingForBudget
                } else {
                    match &s.last_poll {
                        None => State::Pending,
                        Some(_) if s.failed => State::Failing,
                        Some(p) if p.errors > 0 => State::Degraded,
                        Some(_) => State::Ok,
                    }
                };
                s
            })
            .collect();
        StatusReport {
            now,
            started_at: inner.started_at,
            build: BuildStatus {
                version: env!("CARGO_PKG_VERSION"),
                revision: option_env!("GIT_REVISION").unwrap_or("unknown"),
            },
            shard: ShardStatus {
                ordinal: inner.shard.0,
                total: inner.shard.1,
            },
            reload: inner.reload.clone(),
            sources,
            budgets: inner
                .budgets
                .values()
                .flat_map(|b| b.values().cloned())
                .collect(),
        }
    }
}

fn to_map(pairs: &[(&'static str, usize)]) -> BTreeMap<String, usize> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
}

fn budget_entry<'a>(inner: &'a mut Inner, b: BucketReport<'_>) -> &'a mut BudgetStatus {
    if !inner.budgets.contains_key(b.target) {
        inner.budgets.insert(b.target.to_owned(), BTreeMap::new());
    }
    let entry = inner
        .budgets
        .get_mut(b.target)
        .expect("inserted above")
        .entry((b.service, b.operation))
        .or_insert_with(|| BudgetStatus {
            target: b.target.to_owned(),
            service: b.service.to_owned(),
            operation: b.operation.to_owned(),
            tokens: 0.0,
            capacity: 0.0,
            refill_per_second: 0.0,
            share: 0.0,
            waits: 0,
            wait_seconds: 0.0,
            waiting: false,
        });
    entry.tokens = b.tokens;
    entry.capacity = b.capacity;
    entry.refill_per_second = b.refill_per_second;
    entry.share = b.share;
    entry
}

/// The AWS error code at the start of an error message (`AccessDeniedException: User ...`).
pub fn error_code(message: &str) -> Option<&str> {
    let (code, _) = message.split_once(':').unwrap_or((message, ""));
    (!code.is_empty()
        && code.len() <= 64
        && code.chars().next().is_some_and(|c| c.is_ascii_uppercase())
        && code.chars().all(|c| c.is_ascii_alphanumeric() || c == '.'))
    .then_some(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(n: usize) -> ErrorRecord {
        ErrorRecord {
            at: n as f64,
            operation: "ListFlows".into(),
            iam_action: Some("appflow:ListFlows".into()),
            code: None,
            kind: "error".into(),
            message: format!("error {n}"),
        }
    }

    fn poll(board: &StatusBoard, failed: bool, errors: Vec<ErrorRecord>) {
        board.poll_finished(PollReport {
            source: "s",
            target: "t",
            account_id: "1",
            region: "r",
            started_at: 1.0,
            duration_seconds: 0.5,
            failed,
            errors,
            tracked: vec![("flow", 2)],
            backlog: vec![],
        });
    }

    #[test]
    fn states_follow_the_last_poll_and_errors_stay_bounded() {
        let board = StatusBoard::new(0.0);
        board.declare_source("s", "t", vec!["appflow"]);
        assert_eq!(board.report(1.0).sources[0].state, State::Pending);
        poll(&board, false, vec![]);
        assert_eq!(board.report(1.0).sources[0].state, State::Ok);
        poll(&board, false, (0..3).map(error).collect());
        assert_eq!(board.report(1.0).sources[0].state, State::Degraded);
        poll(&board, true, (3..12).map(error).collect());
        let s = &board.report(1.0).sources[0];
        assert_eq!(s.state, State::Failing);
        let kept: Vec<_> = s.last_errors.iter().map(|e| e.message.as_str()).collect();
        assert_eq!(
            kept,
            ["error 7", "error 8", "error 9", "error 10", "error 11"]
        );
        assert_eq!(s.tracked["flow"], 2);
    }

    #[test]
    fn a_poll_waiting_for_a_token_shows_as_waiting_for_budget_until_its_target_goes() {
        let board = StatusBoard::new(0.0);
        board.declare_source("s", "t", vec!["appflow"]);
        board.poll_started("s", "t", 1.0, 60.0);
        let bucket = BucketReport {
            target: "t",
            service: "appflow",
            operation: "ListFlows",
            tokens: 0.0,
            capacity: 5.0,
            refill_per_second: 0.5,
            share: 0.5,
        };
        board.record_waiting(bucket);
        assert_eq!(board.report(1.0).sources[0].state, State::WaitingForBudget);
        board.record_bucket(bucket, 2.0);
        let r = board.report(1.0);
        assert_eq!(r.sources[0].state, State::Pending);
        assert_eq!((r.budgets[0].waits, r.budgets[0].wait_seconds), (1, 2.0));
        // The target's last source gone (removed on reload, or its account left the
        // organisation), its budgets go with it.
        board.declare_source("s2", "t", vec!["appflow"]);
        board.forget_source("s", "t");
        assert_eq!(board.report(1.0).budgets.len(), 1);
        board.forget_source("s2", "t");
        assert!(board.report(1.0).budgets.is_empty());
    }

    #[test]
    fn a_failed_reload_keeps_the_last_success() {
        let board = StatusBoard::new(0.0);
        board.record_reload(true, 10.0);
        board.record_reload(false, 20.0);
        let r = board.report(30.0).reload.unwrap();
        assert_eq!(
            (r.at, r.success, r.last_success_at),
            (20.0, false, Some(10.0))
        );
    }

    #[test]
    fn error_codes_are_read_from_the_message_start() {
        assert_eq!(
            error_code("AccessDeniedException: User: arn:aws:iam::1:user/x is not authorized"),
            Some("AccessDeniedException")
        );
        assert_eq!(error_code("timed out (aws_api.operation_timeout)"), None);
        assert_eq!(error_code("assuming role x failed"), None);
    }
}
