//! What a check found, as the services' `doctor.rs` report it: probes of calls, what a source
//! would watch, and call estimates against the exporter's share of each quota. Knows no service
//! and no configuration, so services can fill it in without importing the doctor's runner.

use std::sync::OnceLock;
use std::time::Duration;

use serde::Serialize;

use crate::aws::operation::Operation;
use crate::aws::Connection;
use crate::error::AwsError;

/// The IAM policy the exporter ships, to name the statement that grants a missing action.
const POLICY: &str = include_str!("../../deploy/iam/policy.json");
const POLICY_PATH: &str = "deploy/iam/policy.json";

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// It worked.
    Ok,
    /// AWS refused it for lack of permission.
    Denied,
    /// It failed otherwise (unreachable endpoint, timeout, no credentials, throttled, ...).
    Error,
    /// Not tried: nothing to call it on, or an earlier check it needs failed. Not a failure.
    Skipped,
}

impl Status {
    pub fn failed(self) -> bool {
        matches!(self, Self::Denied | Self::Error)
    }

    pub(super) fn word(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Denied => "DENIED",
            Self::Error => "ERROR",
            Self::Skipped => "skipped",
        }
    }
}

/// One check: a call (by its IAM action) or a step such as resolving credentials.
#[derive(Debug, Clone, Serialize)]
pub struct Probe {
    /// The IAM action (`appflow:ListFlows`), or `credentials`, `sts:AssumeRole`, `region`.
    pub check: String,
    pub status: Status,
    /// What it found, or the error as AWS (or the SDK) gave it.
    pub detail: String,
    /// The AWS error code, when AWS answered with one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// What to change, for a failed check.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Probe {
    pub(super) fn ok(check: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            check: check.into(),
            status: Status::Ok,
            detail: detail.into(),
            code: None,
            fix: None,
        }
    }

    /// A failed step: `fix` says what to change.
    pub(super) fn error(
        check: impl Into<String>,
        detail: impl Into<String>,
        fix: Option<String>,
    ) -> Self {
        Self {
            check: check.into(),
            status: Status::Error,
            detail: detail.into(),
            code: None,
            fix,
        }
    }

    /// The check of `op`'s IAM action from the result of a call to it; `describe` says what an
    /// answer found. A resource that vanished between two calls still proves the permission.
    pub fn of<T>(
        op: Operation,
        result: &Result<T, AwsError>,
        describe: impl FnOnce(&T) -> String,
    ) -> Self {
        let check = action_of(op);
        let message = match result {
            Ok(v) => return Self::ok(check, describe(v)),
            Err(AwsError::NotFound { message, .. }) => {
                return Self::ok(check, format!("allowed (the resource is gone: {message})"));
            }
            Err(AwsError::Throttled { message, .. } | AwsError::Other { message, .. }) => message,
        };
        let code = crate::status::error_code(message).map(str::to_owned);
        let denied = code.as_deref().is_some_and(is_access_denied);
        Self {
            fix: denied.then(|| grant(&check)),
            status: if denied {
                Status::Denied
            } else {
                Status::Error
            },
            check,
            detail: message.clone(),
            code,
        }
    }

    /// `op` was not called: `why` says what it needs.
    pub fn skipped(op: Operation, why: impl Into<String>) -> Self {
        Self {
            check: action_of(op),
            status: Status::Skipped,
            detail: why.into(),
            code: None,
            fix: None,
        }
    }
}

fn action_of(op: Operation) -> String {
    op.iam_action
        .map(str::to_owned)
        .unwrap_or_else(|| format!("{}:{}", op.service, op.name))
}

/// Error codes AWS answers a missing permission with, across protocols.
fn is_access_denied(code: &str) -> bool {
    matches!(
        code,
        "AccessDeniedException" | "AccessDenied" | "UnauthorizedOperation" | "UnauthorizedAccess"
    )
}

/// How to grant `action`: the statement of the shipped policy that holds it.
pub fn grant(action: &str) -> String {
    static STATEMENTS: OnceLock<Vec<serde_json::Value>> = OnceLock::new();
    let statements = STATEMENTS.get_or_init(|| {
        serde_json::from_str::<serde_json::Value>(POLICY)
            .ok()
            .and_then(|p| p["Statement"].as_array().cloned())
            .unwrap_or_default()
    });
    let holds = |s: &serde_json::Value| match &s["Action"] {
        serde_json::Value::String(a) => a == action,
        serde_json::Value::Array(list) => list.iter().any(|a| a == action),
        _ => false,
    };
    match statements.iter().find(|s| holds(s)) {
        Some(s) => format!(
            "allow {action} on {}: add statement \"{}\" of {POLICY_PATH} to the exporter's policy",
            s["Resource"],
            s["Sid"].as_str().unwrap_or_default()
        ),
        None => format!("allow {action} in the exporter's IAM policy (see {POLICY_PATH})"),
    }
}

/// What a source would watch: how many resources were listed, how many it would watch, and how
/// many each filter left out.
#[derive(Debug, Clone, Serialize)]
pub struct Watched {
    /// `state machine`, `workflow`, `flow`.
    pub kind: &'static str,
    pub listed: usize,
    pub watched: usize,
    /// (why, how many), in the order the source applies them; zero counts are left out.
    pub excluded: Vec<Excluded>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Excluded {
    pub reason: String,
    pub count: usize,
}

impl Watched {
    pub fn new(kind: &'static str, listed: usize, watched: usize) -> Self {
        Self {
            kind,
            listed,
            watched,
            excluded: Vec::new(),
        }
    }

    /// Adds a reason, unless it excluded nothing.
    pub fn excluded(mut self, reason: impl Into<String>, count: usize) -> Self {
        if count > 0 {
            self.excluded.push(Excluded {
                reason: reason.into(),
                count,
            });
        }
        self
    }
}

/// Selects from `listed` as a poll does, by the source's `filter` (named in the count of what
/// it excluded), then by this replica's shard: what is watched, and the counts.
pub fn select<'a, T>(
    kind: &'static str,
    filter: &str,
    listed: &'a [T],
    matches: impl Fn(&T) -> bool,
    owns: impl Fn(&T) -> bool,
) -> (Vec<&'a T>, Watched) {
    let matching: Vec<&T> = listed.iter().filter(|t| matches(t)).collect();
    let (n, m) = (listed.len(), matching.len());
    let selected: Vec<&T> = matching.into_iter().filter(|t| owns(t)).collect();
    let watched = Watched::new(kind, n, selected.len())
        .excluded(format!("by the {filter} filter"), n - m)
        .excluded("polled by other shards", m - selected.len());
    (selected, watched)
}

/// The estimated API calls per hour of one operation, against the exporter's share of its bucket.
#[derive(Debug, Clone, Serialize)]
pub struct CallEstimate {
    pub service: &'static str,
    pub operation: &'static str,
    /// Calls per hour with what is listed now and nothing running.
    pub calls_per_hour: f64,
    /// Calls per hour added by each active resource (`per` names it), if activity adds calls.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_active: Option<PerActive>,
    /// The exporter's share of AWS's bucket: its refill rate, per hour (`aws_api.quota_share`,
    /// divided among `--total-shards`).
    pub share_per_hour: f64,
    /// What the estimate assumes.
    pub assumes: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct PerActive {
    pub per: &'static str,
    pub calls_per_hour: f64,
}

impl CallEstimate {
    pub fn new(conn: &Connection, op: Operation, calls_per_hour: f64, assumes: String) -> Self {
        Self {
            service: op.service,
            operation: op.name,
            calls_per_hour,
            per_active: None,
            share_per_hour: conn.budget.refill_per_sec(op) * 3600.0,
            assumes,
        }
    }

    /// Each active `per` adds `calls_per_hour`.
    pub fn per_active(mut self, per: &'static str, calls_per_hour: f64) -> Self {
        self.per_active = Some(PerActive {
            per,
            calls_per_hour,
        });
        self
    }

    /// Whether the base estimate alone is more than the share: polls would wait for the budget.
    pub fn over_share(&self) -> bool {
        self.calls_per_hour > self.share_per_hour
    }
}

/// Polls per hour at `interval`.
pub fn per_hour(interval: Duration) -> f64 {
    3600.0 / interval.as_secs_f64().max(1.0)
}

/// Pages a listing of `items` takes at `page_size` a page (at least one).
pub fn pages(items: usize, page_size: usize) -> f64 {
    items.div_ceil(page_size.max(1)).max(1) as f64
}

/// What one source found: filled in by the service's `doctor.rs`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Findings {
    pub checks: Vec<Probe>,
    pub watched: Vec<Watched>,
    pub api_calls: Vec<CallEstimate>,
}

impl Findings {
    /// Records the check of a call's result and passes the result on.
    pub fn probe<T>(
        &mut self,
        op: Operation,
        result: Result<T, AwsError>,
        describe: impl FnOnce(&T) -> String,
    ) -> Option<T> {
        self.checks.push(Probe::of(op, &result, describe));
        result.ok()
    }

    /// Records that each of `ops` was not called, and why.
    pub fn skip(&mut self, ops: &[Operation], why: &str) {
        self.checks
            .extend(ops.iter().map(|op| Probe::skipped(*op, why)));
    }
}

/// One enabled source on one target.
#[derive(Debug, Clone, Serialize)]
pub struct SourceReport {
    /// The `source` label.
    pub source: &'static str,
    #[serde(flatten)]
    pub findings: Findings,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_denied_is_told_from_other_errors() {
        let op = crate::services::operations()[1];
        let denied: Result<(), AwsError> = Err(AwsError::Other {
            operation: op.name,
            message: "AccessDeniedException: User is not authorized".into(),
        });
        let probe = Probe::of(op, &denied, |_| String::new());
        assert_eq!(probe.status, Status::Denied);
        assert_eq!(probe.code.as_deref(), Some("AccessDeniedException"));
        let throttled: Result<(), AwsError> = Err(AwsError::Throttled {
            operation: op.name,
            message: "ThrottlingException: Rate exceeded".into(),
        });
        let probe = Probe::of(op, &throttled, |_| String::new());
        assert_eq!((probe.status, probe.fix), (Status::Error, None));
        let gone: Result<(), AwsError> = Err(AwsError::NotFound {
            operation: op.name,
            message: "ResourceNotFoundException: gone".into(),
        });
        assert_eq!(Probe::of(op, &gone, |_| String::new()).status, Status::Ok);
    }

    #[test]
    fn estimates_count_pages_and_polls() {
        assert_eq!(pages(0, 100), 1.0);
        assert_eq!(pages(101, 100), 2.0);
        assert_eq!(per_hour(Duration::from_secs(30)), 120.0);
    }
}
