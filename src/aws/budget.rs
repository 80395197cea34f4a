//! The exporter's share of the AWS API token buckets it draws from.
//!
//! AWS throttles each API per account and region with a token bucket (AWS service quotas).
//! The exporter shares those buckets with production, so it keeps its own smaller bucket per
//! operation, sized as `quota_share` of AWS's, and waits for a token before each call.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::aws::operation::Operation;
use crate::aws::Identity;
use crate::exposition::self_metrics::SelfMetrics;

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
    /// Takes a token if there is one; otherwise says how long until there will be.
    fn take(&mut self, now: Instant) -> Result<(), Duration> {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.refill_per_sec).min(self.capacity);
        self.last = now;
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
    /// Keyed by (service, operation name).
    buckets: Mutex<HashMap<(&'static str, &'static str), Bucket>>,
    metrics: Arc<SelfMetrics>,
    identity: Arc<Identity>,
}

impl ApiBudget {
    pub fn new(
        region: &str,
        share: f64,
        metrics: Arc<SelfMetrics>,
        identity: Arc<Identity>,
    ) -> Self {
        Self {
            region: region.to_owned(),
            share,
            buckets: Mutex::new(HashMap::new()),
            metrics,
            identity,
        }
    }

    /// Waits until the exporter's bucket for `op` has a token, and takes it.
    pub async fn acquire(&self, op: Operation) {
        let mut waited = Duration::ZERO;
        loop {
            let wait = {
                let mut buckets = self.buckets.lock().expect("budget lock");
                let bucket = buckets.entry((op.service, op.name)).or_insert_with(|| {
                    let (size, refill) = op.aws_bucket(&self.region);
                    let capacity = (size * self.share).max(1.0);
                    Bucket {
                        capacity,
                        refill_per_sec: refill * self.share,
                        tokens: capacity,
                        last: Instant::now(),
                    }
                });
                match bucket.take(Instant::now()) {
                    Ok(()) => break,
                    Err(wait) => wait,
                }
            };
            waited += wait;
            tokio::time::sleep(wait).await;
        }
        if !waited.is_zero() {
            let (account_id, region) = self.identity.labels();
            self.metrics
                .record_budget_wait(op.service, op.name, (&account_id, &region), waited);
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
}
