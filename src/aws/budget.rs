//! The exporter's share of the AWS API token buckets it draws from.
//!
//! AWS throttles each API per account and region with a token bucket (AWS service quotas).
//! The exporter shares those buckets with production, so it keeps its own smaller bucket per
//! operation, sized as `quota_share` of AWS's, and waits for a token before each call.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::metrics::SelfMetrics;

/// Every AWS operation the exporter can call. The IAM policy in deploy/iam is checked against this list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    SfnListStateMachines,
    SfnDescribeStateMachine,
    SfnListExecutions,
    SfnListMapRuns,
    SfnDescribeMapRun,
    TransferListWorkflows,
    TransferListExecutions,
    TransferDescribeExecution,
    AppflowListFlows,
    AppflowDescribeFlowExecutionRecords,
    StsGetCallerIdentity,
}

impl Operation {
    pub const ALL: [Operation; 11] = [
        Operation::SfnListStateMachines,
        Operation::SfnDescribeStateMachine,
        Operation::SfnListExecutions,
        Operation::SfnListMapRuns,
        Operation::SfnDescribeMapRun,
        Operation::TransferListWorkflows,
        Operation::TransferListExecutions,
        Operation::TransferDescribeExecution,
        Operation::AppflowListFlows,
        Operation::AppflowDescribeFlowExecutionRecords,
        Operation::StsGetCallerIdentity,
    ];

    /// The `service` label, as the SDK names the service (lower case).
    pub fn service(self) -> &'static str {
        match self {
            Self::SfnListStateMachines
            | Self::SfnDescribeStateMachine
            | Self::SfnListExecutions
            | Self::SfnListMapRuns
            | Self::SfnDescribeMapRun => "sfn",
            Self::TransferListWorkflows
            | Self::TransferListExecutions
            | Self::TransferDescribeExecution => "transfer",
            Self::AppflowListFlows | Self::AppflowDescribeFlowExecutionRecords => "appflow",
            Self::StsGetCallerIdentity => "sts",
        }
    }

    /// The API operation name, the `operation` label.
    pub fn name(self) -> &'static str {
        match self {
            Self::SfnListStateMachines => "ListStateMachines",
            Self::SfnDescribeStateMachine => "DescribeStateMachine",
            Self::SfnListExecutions | Self::TransferListExecutions => "ListExecutions",
            Self::SfnListMapRuns => "ListMapRuns",
            Self::SfnDescribeMapRun => "DescribeMapRun",
            Self::TransferListWorkflows => "ListWorkflows",
            Self::TransferDescribeExecution => "DescribeExecution",
            Self::AppflowListFlows => "ListFlows",
            Self::AppflowDescribeFlowExecutionRecords => "DescribeFlowExecutionRecords",
            Self::StsGetCallerIdentity => "GetCallerIdentity",
        }
    }

    /// The IAM action the call needs; GetCallerIdentity needs none.
    pub fn iam_action(self) -> Option<String> {
        let prefix = match self.service() {
            "sfn" => "states",
            "sts" => return None,
            other => other,
        };
        Some(format!("{prefix}:{}", self.name()))
    }

    /// AWS's token bucket for this operation: (bucket size, refill per second).
    /// Step Functions figures from AWS service quotas; Transfer Family and AppFlow publish none,
    /// so they get conservative guesses and ThrottlingException stays the real signal.
    pub fn aws_bucket(self, region: &str) -> (f64, f64) {
        let big_region = matches!(region, "us-east-1" | "us-west-2" | "eu-west-1");
        match self {
            Self::SfnListStateMachines => (100.0, 5.0),
            Self::SfnDescribeStateMachine => (200.0, 20.0),
            Self::SfnListExecutions if big_region => (200.0, 5.0),
            Self::SfnListExecutions => (100.0, 2.0),
            Self::SfnListMapRuns => (100.0, 1.0),
            Self::SfnDescribeMapRun => (200.0, 1.0),
            Self::TransferListWorkflows
            | Self::TransferListExecutions
            | Self::TransferDescribeExecution => (20.0, 5.0),
            Self::AppflowListFlows | Self::AppflowDescribeFlowExecutionRecords => (20.0, 5.0),
            Self::StsGetCallerIdentity => (20.0, 5.0),
        }
    }
}

#[derive(Debug)]
struct Bucket {
    capacity: f64,
    refill_per_sec: f64,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.refill_per_sec).min(self.capacity);
        self.last = now;
    }

    /// How long until the bucket holds `tokens` (at most its capacity).
    fn time_until(&self, tokens: f64) -> Duration {
        let wanted = tokens.min(self.capacity);
        Duration::from_secs_f64(((wanted - self.tokens) / self.refill_per_sec).max(0.0))
    }

    /// Takes a token if there is one; otherwise says how long until there will be.
    fn take(&mut self, now: Instant) -> Result<(), Duration> {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                (1.0 - self.tokens) / self.refill_per_sec,
            ))
        }
    }
}

/// The token buckets of one target (account and region).
#[derive(Debug)]
pub struct ApiBudget {
    region: String,
    share: f64,
    /// AWS's (bucket size, refill per second) by IAM action, where the account's quota was raised.
    overrides: BTreeMap<String, (f64, f64)>,
    buckets: Mutex<HashMap<Operation, Bucket>>,
    metrics: Arc<SelfMetrics>,
}

impl ApiBudget {
    pub fn new(
        region: &str,
        share: f64,
        overrides: BTreeMap<String, (f64, f64)>,
        metrics: Arc<SelfMetrics>,
    ) -> Self {
        Self {
            region: region.to_owned(),
            share,
            overrides,
            buckets: Mutex::new(HashMap::new()),
            metrics,
        }
    }

    fn with_bucket<T>(&self, op: Operation, f: impl FnOnce(&mut Bucket) -> T) -> T {
        let mut buckets = self.buckets.lock().expect("budget lock");
        let bucket = buckets.entry(op).or_insert_with(|| {
            let (size, refill) = op
                .iam_action()
                .and_then(|a| self.overrides.get(&a).copied())
                .unwrap_or_else(|| op.aws_bucket(&self.region));
            let capacity = (size * self.share).max(1.0);
            Bucket {
                capacity,
                refill_per_sec: refill * self.share,
                tokens: capacity,
                last: Instant::now(),
            }
        });
        f(bucket)
    }

    /// The exporter's refill rate for `op`, calls per second.
    pub fn refill_per_sec(&self, op: Operation) -> f64 {
        self.with_bucket(op, |b| b.refill_per_sec)
    }

    /// How long until the bucket for `op` holds a spare token: one that leaves `keep` tokens
    /// (what open work will need) after it is taken, or, when open work needs the whole bucket,
    /// one that would otherwise overflow a full bucket. Background work waits for spare tokens,
    /// so it never slows open work down.
    pub fn time_until_spare(&self, op: Operation, keep: f64) -> Duration {
        self.with_bucket(op, |b| {
            b.refill(Instant::now());
            b.time_until(1.0 + keep)
        })
    }

    /// AWS answered with throttling: the account's own bucket is empty (others share it), so the
    /// exporter's is emptied too, and the retry waits for a refill instead of adding to the load.
    pub fn drain(&self, op: Operation) {
        self.with_bucket(op, |b| {
            b.refill(Instant::now());
            b.tokens = b.tokens.min(0.0);
        });
    }

    /// Waits until the exporter's bucket for `op` has a token, and takes it.
    pub async fn acquire(&self, op: Operation) {
        let mut waited = Duration::ZERO;
        loop {
            let wait = match self.with_bucket(op, |b| b.take(Instant::now())) {
                Ok(()) => break,
                Err(wait) => wait,
            };
            waited += wait;
            tokio::time::sleep(wait).await;
        }
        if !waited.is_zero() {
            self.metrics.record_budget_wait(op, waited);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_refills_at_its_rate_up_to_capacity() {
        let start = Instant::now();
        let mut b = Bucket {
            capacity: 2.0,
            refill_per_sec: 0.5,
            tokens: 2.0,
            last: start,
        };
        assert!(b.take(start).is_ok());
        assert!(b.take(start).is_ok());
        let wait = b.take(start).unwrap_err();
        assert_eq!(wait, Duration::from_secs(2));
        assert!(b.take(start + Duration::from_secs(2)).is_ok());
        // Long idle time does not bank more than the capacity.
        assert!(b.take(start + Duration::from_secs(100)).is_ok());
        assert!(b.take(start + Duration::from_secs(100)).is_ok());
        assert!(b.take(start + Duration::from_secs(100)).is_err());
    }

    #[test]
    fn iam_actions_follow_service_prefixes() {
        assert_eq!(
            Operation::SfnDescribeMapRun.iam_action().as_deref(),
            Some("states:DescribeMapRun")
        );
        assert_eq!(
            Operation::TransferListExecutions.iam_action().as_deref(),
            Some("transfer:ListExecutions")
        );
        assert_eq!(Operation::StsGetCallerIdentity.iam_action(), None);
    }
}
