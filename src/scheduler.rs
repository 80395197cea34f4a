//! Runs each source on its own interval, decoupled from scrapes: a poll that overruns its
//! interval delays the next one instead of overlapping it.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::exposition::hub::MetricsHub;
use crate::services::source::{unix_now, PollOutcome, Source};

/// Which (source, target) pairs have finished a first poll; /readyz is 200 once all have.
#[derive(Debug)]
pub struct Readiness {
    expected: BTreeSet<(String, String)>,
    done: Mutex<BTreeSet<(String, String)>>,
}

impl Readiness {
    pub fn new(sources: &[Box<dyn Source>]) -> Self {
        Self {
            expected: sources
                .iter()
                .map(|s| (s.name().to_owned(), s.target().key()))
                .collect(),
            done: Mutex::new(BTreeSet::new()),
        }
    }

    /// Counts the pair as done (also for a source a reload removed before its first poll).
    pub(crate) fn mark(&self, source: &str, target: &str) {
        self.done
            .lock()
            .expect("readiness lock")
            .insert((source.to_owned(), target.to_owned()));
    }

    /// The pairs still waiting for their first poll, as `source@target`.
    pub fn pending(&self) -> Vec<String> {
        let done = self.done.lock().expect("readiness lock");
        self.expected
            .difference(&done)
            .map(|(s, t)| format!("{s}@{t}"))
            .collect()
    }
}

/// Polls a source once, records its self-metrics and publishes its families.
pub async fn poll_and_publish(source: &mut dyn Source, hub: &MetricsHub, readiness: &Readiness) {
    let started = Instant::now();
    let before = source.target().labels();
    let mut errors = Vec::new();
    if let Err(e) = source.poll(&mut errors).await {
        errors.push(e);
    }
    let outcome = PollOutcome { errors };
    let elapsed = started.elapsed();
    let now = unix_now();
    let name = source.name();
    let target_key = source.target().key();
    let (account_id, region) = source.target().labels();
    let metrics = hub.self_metrics();
    if before != (account_id.clone(), region.clone()) {
        metrics.forget_poll_labels(name, &before.0, &before.1);
    }
    metrics.record_poll(name, &account_id, &region, outcome.success(), elapsed, now);
    if outcome.success() {
        tracing::debug!(source = name, target = %target_key, duration_ms = elapsed.as_millis() as u64, "poll finished");
    } else {
        let kinds: BTreeSet<&str> = outcome.errors.iter().map(|e| e.kind()).collect();
        tracing::warn!(
            source = name,
            target = %target_key,
            duration_ms = elapsed.as_millis() as u64,
            errors = outcome.errors.len(),
            kinds = ?kinds,
            first_error = %outcome.errors[0],
            "poll finished with errors; affected values keep their last known state"
        );
    }
    hub.publish(name, &target_key, source.snapshot(now));
    readiness.mark(name, &target_key);
}

/// Polls `source` every interval (with up to 10% jitter so targets spread out) until shutdown.
pub async fn run_source(
    mut source: Box<dyn Source>,
    hub: Arc<MetricsHub>,
    readiness: Arc<Readiness>,
    mut shutdown: watch::Receiver<bool>,
) {
    let interval = source.interval();
    loop {
        let started = tokio::time::Instant::now();
        tokio::select! {
            _ = poll_and_publish(source.as_mut(), &hub, &readiness) => {}
            _ = shutdown.changed() => return,
        }
        let jitter = interval.mul_f64(fastrand::f64() * 0.1);
        let next = started + interval + jitter;
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// The default grace period for in-flight HTTP requests at shutdown.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
