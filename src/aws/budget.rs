//! The exporter's share of the AWS API token buckets it draws from.
//!
//! AWS throttles each API per account and region with a token bucket (AWS service quotas).
//! The exporter shares those buckets with production, so it keeps its own smaller bucket per
//! operation, sized as `quota_share` of AWS's, and waits for a token before each call.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::aws::operation::Operation;
use crate::aws::Identity;
use crate::exposition::self_metrics::SelfMetrics;
use crate::status::BucketReport;

/// A cap on one wait for a token, above what any valid quota share needs (100 s at 0.01 of a
/// bucket refilling once a second): a near-zero refill rate cannot overflow the wait.
const MAX_WAIT: Duration = Duration::from_secs(600);

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
            // Bounded even for a refill rate near zero (never negative: tokens < 1 here).
            let wait = (1.0 - self.tokens) / self.refill_per_sec;
            Err(Duration::try_from_secs_f64(wait)
                .unwrap_or(MAX_WAIT)
                .min(MAX_WAIT))
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
    /// Keyed by (service, operation name).
    buckets: Mutex<HashMap<(&'static str, &'static str), Bucket>>,
    metrics: Arc<SelfMetrics>,
    identity: Arc<Identity>,
}

impl ApiBudget {
    pub fn new(
        region: &str,
        share: f64,
        overrides: BTreeMap<String, (f64, f64)>,
        metrics: Arc<SelfMetrics>,
        identity: Arc<Identity>,
    ) -> Self {
        Self {
            region: region.to_owned(),
            share,
            overrides,
            buckets: Mutex::new(HashMap::new()),
            metrics,
            identity,
        }
    }

    fn with_bucket<T>(&self, op: Operation, f: impl FnOnce(&mut Bucket) -> T) -> T {
        let mut buckets = self.buckets.lock().expect("budget lock");
        let bucket = buckets.entry((op.service, op.name)).or_insert_with(|| {
            let (size, refill) = op
                .iam_action
                .and_then(|a| self.overrides.get(a).copied())
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

    /// The bucket of `op` as /status shows it.
    fn report<'a>(&'a self, op: Operation, b: &Bucket, target: &'a str) -> BucketReport<'a> {
        BucketReport {
            target,
            service: op.service,
            operation: op.name,
            tokens: b.tokens,
            capacity: b.capacity,
            refill_per_second: b.refill_per_sec,
            share: self.share,
        }
    }

    /// Waits until the exporter's bucket for `op` has a token, and takes it.
    pub async fn acquire(&self, op: Operation) {
        let mut waited = Duration::ZERO;
        let status = self.metrics.status();
        let target = self.identity.key.as_str();
        loop {
            let wait = match self.with_bucket(op, |b| {
                let taken = b.take(Instant::now());
                match taken {
                    Ok(()) => {
                        status.record_bucket(self.report(op, b, target), waited.as_secs_f64())
                    }
                    Err(_) => status.record_waiting(self.report(op, b, target)),
                }
                taken
            }) {
                Ok(()) => break,
                Err(wait) => wait,
            };
            waited += wait;
            tokio::time::sleep(wait).await;
        }
        if !waited.is_zero() {
            self.metrics.accounts().record_budget_wait(
                op.service,
                op.name,
                self.identity.label_refs(),
                waited,
            );
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
    fn spare_tokens_leave_what_open_work_needs() {
        let start = Instant::now();
        let mut b = Bucket {
            capacity: 10.0,
            refill_per_sec: 1.0,
            tokens: 4.0,
            last: start,
        };
        // Keeping 3 for open work: the 4th token is spare now.
        assert_eq!(b.time_until(1.0 + 3.0), Duration::ZERO);
        // Keeping 5: spare once the bucket holds 6, in 2 s.
        assert_eq!(b.time_until(1.0 + 5.0), Duration::from_secs(2));
        // Open work needs more than the bucket holds: only a full bucket has a spare token.
        assert_eq!(b.time_until(1.0 + 50.0), Duration::from_secs(6));
        b.refill(start + Duration::from_secs(100));
        assert_eq!(b.tokens, 10.0);
    }

    #[test]
    fn a_throttle_empties_the_bucket() {
        let metrics = Arc::new(SelfMetrics::new());
        let identity = Arc::new(Identity::new(
            "test/us-east-1".into(),
            metrics.clone(),
            Default::default(),
        ));
        let budget = ApiBudget::new(
            "us-east-1",
            0.5,
            BTreeMap::from([("x:Op".to_string(), (40.0, 2.0))]),
            metrics,
            identity,
        );
        let op = Operation {
            service: "x",
            name: "Op",
            iam_action: Some("x:Op"),
            bucket: crate::aws::operation::AwsBucket::flat(4.0, 1.0),
        };
        // The override sizes the bucket: 40 x 0.5 = 20 tokens, 1 per second.
        assert_eq!(budget.refill_per_sec(op), 1.0);
        assert_eq!(budget.time_until_spare(op, 18.0), Duration::ZERO);
        budget.drain(op);
        let wait = budget.time_until_spare(op, 0.0);
        assert!(wait > Duration::from_millis(900) && wait <= Duration::from_secs(1));
    }
}
