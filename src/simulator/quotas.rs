//! AWS's own API throttling in the simulator: one token bucket per operation for the whole
//! (simulated) account and region, sized like AWS's (AWS service quotas). A request that finds its
//! bucket empty is answered with ThrottlingException, as AWS would. Off unless a world enables it.

use std::collections::HashMap;
use std::time::Instant;

/// (bucket size, refill per second) AWS gives an account in us-east-1 for an operation; `None`
/// for operations AWS documents no bucket for (Transfer Family, AppFlow, STS): never throttled here.
pub fn aws_bucket(service: &str, operation: &str) -> Option<(f64, f64)> {
    let bucket = match (service, operation) {
        ("sfn", "ListStateMachines") => (100.0, 5.0),
        ("sfn", "DescribeStateMachine") => (200.0, 20.0),
        ("sfn", "ListExecutions") => (200.0, 5.0),
        ("sfn", "DescribeExecution") => (300.0, 15.0),
        ("sfn", "GetExecutionHistory") => (400.0, 20.0),
        ("sfn", "ListMapRuns") => (100.0, 1.0),
        ("sfn", "DescribeMapRun") => (200.0, 1.0),
        _ => return None,
    };
    Some(bucket)
}

#[derive(Debug)]
struct Bucket {
    capacity: f64,
    refill_per_sec: f64,
    tokens: f64,
    last: Instant,
}

/// The account's buckets, full when created.
#[derive(Debug, Default)]
pub struct Quotas {
    buckets: HashMap<(String, String), Bucket>,
}

impl Quotas {
    /// Takes a token for the operation; `false` means AWS would throttle this request.
    pub fn admit(&mut self, service: &str, operation: &str, now: Instant) -> bool {
        let Some((capacity, refill_per_sec)) = aws_bucket(service, operation) else {
            return true;
        };
        let b = self
            .buckets
            .entry((service.to_owned(), operation.to_owned()))
            .or_insert(Bucket {
                capacity,
                refill_per_sec,
                tokens: capacity,
                last: now,
            });
        let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
        b.tokens = (b.tokens + elapsed * b.refill_per_sec).min(b.capacity);
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn an_empty_bucket_throttles_until_it_refills() {
        let mut q = Quotas::default();
        let t0 = Instant::now();
        for _ in 0..200 {
            assert!(q.admit("sfn", "DescribeMapRun", t0));
        }
        assert!(!q.admit("sfn", "DescribeMapRun", t0));
        assert!(q.admit("sfn", "DescribeMapRun", t0 + Duration::from_secs(1)));
        assert!(!q.admit("sfn", "DescribeMapRun", t0 + Duration::from_secs(1)));
        // Operations without a documented bucket are never throttled.
        for _ in 0..1000 {
            assert!(q.admit("transfer", "ListExecutions", t0));
        }
    }
}
