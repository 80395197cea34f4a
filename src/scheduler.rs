//! Runs each source on its own interval, decoupled from scrapes: a poll that overruns its
//! interval delays the next one instead of overlapping it.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::clock::unix_now;
use crate::config::check::MAX_DURATION;
use crate::config::format_duration;
use crate::error::AwsError;
use crate::exposition::hub::{MetricsHub, Snapshot};
use crate::services;
use crate::services::source::{Progress, Source};
use crate::status::{self, ErrorRecord, PollReport};

/// Which (source, target) pairs have finished a first poll; /readyz is 200 once all have.
#[derive(Debug)]
pub struct Readiness {
    expected: BTreeSet<(String, String)>,
    /// Each pair done, with the hub's last publish number when it was first marked: it is
    /// ready once the served exposition covers that publish.
    done: Mutex<HashMap<(String, String), u64>>,
    /// Set once nothing was pending: pairs are never unmarked and the exposition's `covers`
    /// only grows, so from then on a probe answers without looking at the pairs.
    ready: AtomicBool,
}

impl Readiness {
    /// Waiting for each of `sources`.
    pub fn new(sources: &[Box<dyn Source>]) -> Self {
        Self::of_pairs(
            sources
                .iter()
                .map(|s| (s.name().to_owned(), s.target().key())),
        )
    }

    /// Waiting for each (source name, target key) pair.
    pub fn of_pairs(pairs: impl IntoIterator<Item = (String, String)>) -> Self {
        Self {
            expected: pairs.into_iter().collect(),
            done: Mutex::new(HashMap::new()),
            ready: AtomicBool::new(false),
        }
    }

    /// Counts the pair as done once `hub`'s exposition shows what it published so far (also
    /// for a source a reload removed before its first poll).
    pub(crate) fn mark(&self, source: &str, target: &str, hub: &MetricsHub) {
        if self.ready.load(Ordering::Relaxed) {
            return; // every poll marks: nothing to keep once ready
        }
        let published = hub.last_publish();
        self.done
            .lock()
            .expect("readiness lock")
            .entry((source.to_owned(), target.to_owned()))
            .or_insert(published);
    }

    /// The pairs still waiting for their first poll (or for it to be on the exposition, which
    /// covers publishes up to `covers`), as `source@target`: how many, and the first `list`.
    pub fn pending(&self, covers: u64, list: usize) -> (usize, Vec<String>) {
        if self.ready.load(Ordering::Relaxed) {
            return (0, Vec::new());
        }
        let done = self.done.lock().expect("readiness lock");
        let mut waiting = self
            .expected
            .iter()
            .filter(|pair| done.get(*pair).is_none_or(|p| *p > covers));
        let named = waiting
            .by_ref()
            .take(list)
            .map(|(s, t)| format!("{s}@{t}"))
            .collect::<Vec<_>>();
        let count = named.len() + waiting.count();
        if count == 0 {
            self.ready.store(true, Ordering::Relaxed);
        }
        (count, named)
    }
}

/// Publishes a source's snapshots while it polls, at most once a second unless forced.
struct PollProgress<'a> {
    hub: &'a MetricsHub,
    readiness: &'a Readiness,
    source: &'static str,
    target: String,
    /// The last publish, or the poll's start: a poll that ends within a second publishes only
    /// what it forces and its final state.
    last: Mutex<Instant>,
}

/// The shortest time between two publishes of one source during a poll.
const PUBLISH_EVERY: Duration = Duration::from_secs(1);

impl Progress for PollProgress<'_> {
    fn publish(&self, force: bool, snapshot: &mut dyn FnMut() -> Snapshot) {
        {
            let mut last = self.last.lock().expect("progress lock");
            if !force && last.elapsed() < PUBLISH_EVERY {
                return;
            }
            *last = Instant::now();
        }
        self.hub.publish(self.source, &self.target, snapshot());
    }

    fn ready(&self) {
        self.readiness.mark(self.source, &self.target, self.hub);
    }
}

/// How long one poll may run before the supervisor ends it: 10 poll intervals, and at least
/// 10 minutes (a large account's poll makes many calls, each bounded by the operation timeout).
pub fn poll_deadline(interval: Duration) -> Duration {
    interval.saturating_mul(10).max(Duration::from_secs(600))
}

/// Why the supervisor ended a poll; the `reason` label of `source_restarts_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restart {
    Panic,
    Deadline,
}

impl Restart {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Panic => "panic",
            Self::Deadline => "deadline",
        }
    }
}

/// Polls a source once under supervision, records its self-metrics and publishes its
/// families. A poll that panics or runs past `deadline` is ended, counted as failed and
/// reported as a [`Restart`]; the source's last published values stay.
pub async fn poll_and_publish(
    source: &mut dyn Source,
    hub: &MetricsHub,
    readiness: &Readiness,
    deadline: Duration,
) -> Option<Restart> {
    if skip_duplicate(source, hub, readiness) {
        return None;
    }
    let started = Instant::now();
    let started_at = unix_now();
    let status = hub.self_metrics().status();
    let services: BTreeSet<&'static str> = services::operations_of(source.name())
        .iter()
        .map(|op| op.service)
        .collect();
    // A stall seen by the previous poll is tried again, once, by this one.
    source.target().forget_stalls(&services);
    status.declare_source(
        source.name(),
        &source.target().key(),
        services.into_iter().collect(),
    );
    status.poll_started(
        source.name(),
        &source.target().key(),
        started_at,
        source.interval().as_secs_f64(),
    );
    let before = source.target().labels();
    let mut errors = Vec::new();
    let mut restart = None;
    let progress = PollProgress {
        hub,
        readiness,
        source: source.name(),
        target: source.target().key(),
        last: Mutex::new(Instant::now()),
    };
    let ended =
        tokio::time::timeout(deadline, CatchUnwind(source.poll(&mut errors, &progress))).await;
    let failure = match ended {
        Ok(Ok(result)) => result.err(),
        Ok(Err(panic)) => {
            restart = Some(Restart::Panic);
            Some(supervisor_error(format!("the poll panicked: {panic}")))
        }
        Err(_) => {
            restart = Some(Restart::Deadline);
            Some(supervisor_error(format!(
                "the poll ran past its deadline of {} and was ended",
                format_duration(deadline)
            )))
        }
    };
    // The poll ended on an error (its own, or the supervisor's) rather than finishing.
    let failed = failure.is_some();
    errors.extend(failure);
    if skip_duplicate(source, hub, readiness) {
        return restart;
    }
    let elapsed = started.elapsed();
    let now = unix_now();
    let name = source.name();
    let target_key = source.target().key();
    let (account_id, region) = source.target().labels();
    let metrics = hub.self_metrics().accounts();
    if before != (account_id.clone(), region.clone()) {
        metrics.forget_polls(name, (&before.0, &before.1));
    }
    metrics.record_poll(
        name,
        (&account_id, &region),
        errors.is_empty(),
        elapsed,
        source.interval(),
        now,
    );
    if let Some(r) = restart {
        metrics.record_restart(name, (&account_id, &region), r.as_str());
    }
    if errors.is_empty() {
        tracing::debug!(source = name, target_key = %target_key, duration_ms = elapsed.as_millis() as u64, "poll finished");
    } else {
        let kinds: BTreeSet<&str> = errors.iter().map(|e| e.kind()).collect();
        tracing::warn!(
            source = name,
            target_key = %target_key,
            duration_ms = elapsed.as_millis() as u64,
            errors = errors.len(),
            kinds = ?kinds,
            first_error = %errors[0],
            "poll finished with errors; affected values keep their last known state"
        );
    }
    // A source whose poll panicked may panic again when rendering: keep its last values then.
    let rendered = std::panic::catch_unwind(AssertUnwindSafe(|| {
        (source.snapshot(now), source.backlog())
    }));
    status.poll_finished(PollReport {
        source: name,
        target: &target_key,
        account_id: &account_id,
        region: &region,
        started_at,
        duration_seconds: elapsed.as_secs_f64(),
        failed,
        errors: errors.iter().map(|e| error_record(name, e, now)).collect(),
        tracked: rendered
            .as_ref()
            .map(|(s, _)| s.tracked.clone())
            .unwrap_or_default(),
        backlog: rendered
            .as_ref()
            .map(|(_, b)| b.clone())
            .unwrap_or_default(),
    });
    match rendered {
        Ok((snapshot, _)) => {
            hub.publish(name, &target_key, snapshot);
        }
        Err(panic) => {
            tracing::error!(source = name, target_key = %target_key, panic = %panic_message(panic.as_ref()), "rendering the source's metrics panicked; keeping its last published values");
            hub.rebuild();
        }
    }
    readiness.mark(name, &target_key, hub);
    restart
}

/// True (and nothing exported) when another target polls this source's account and region:
/// its series and self-metrics would carry the same labels. The refusal was logged as an error.
fn skip_duplicate(source: &dyn Source, hub: &MetricsHub, readiness: &Readiness) -> bool {
    let Err(e) = source.target().refused() else {
        return false;
    };
    let target_key = source.target().key();
    tracing::debug!(source = source.name(), target_key = %target_key, error = %e, "not polling a duplicate target");
    hub.publish(source.name(), &target_key, Snapshot::default());
    hub.self_metrics()
        .status()
        .forget_source(source.name(), &target_key);
    readiness.mark(source.name(), &target_key, hub);
    true
}

/// An error as /status shows it, with the IAM action of its operation and the AWS error code.
fn error_record(source: &str, e: &AwsError, at: f64) -> ErrorRecord {
    let (operation, message) = match e {
        AwsError::Throttled { operation, message }
        | AwsError::NotFound { operation, message }
        | AwsError::Other { operation, message } => (*operation, message),
    };
    ErrorRecord {
        at,
        operation: operation.to_owned(),
        iam_action: services::operations_of(source)
            .iter()
            .find(|op| op.name == operation)
            .and_then(|op| op.iam_action)
            .map(str::to_owned),
        code: status::error_code(message).map(str::to_owned),
        kind: e.kind().to_owned(),
        message: message.clone(),
    }
}

fn supervisor_error(message: String) -> AwsError {
    AwsError::Other {
        operation: "poll",
        message,
    }
}

/// Polls `source` every interval (with up to 10% jitter so targets spread out) until shutdown.
/// After a poll the supervisor ended, the source restarts after a backoff: 2, 4, then 8
/// intervals while that keeps happening, one interval again after a poll that ends on its own.
pub async fn run_source(
    mut source: Box<dyn Source>,
    hub: Arc<MetricsHub>,
    readiness: Arc<Readiness>,
    mut shutdown: watch::Receiver<bool>,
    deadline: Duration,
) {
    let interval = source.interval();
    let mut restarts: u32 = 0;
    loop {
        let started = tokio::time::Instant::now();
        let restart = tokio::select! {
            r = poll_and_publish(source.as_mut(), &hub, &readiness, deadline) => r,
            _ = shutdown.changed() => return,
        };
        restarts = match restart {
            Some(_) => restarts.saturating_add(1),
            None => 0,
        };
        // A normal poll's interval counts from its start; a restart's backoff from its end.
        let (from, wait) = match restart {
            None => (started, interval),
            Some(r) => {
                let backoff = interval.saturating_mul(1 << restarts.min(3));
                tracing::warn!(source = source.name(), target_key = %source.target().key(), reason = r.as_str(), backoff_ms = backoff.as_millis() as u64, "restarting the source after a backoff");
                (tokio::time::Instant::now(), backoff)
            }
        };
        let jitter = interval.mul_f64(fastrand::f64() * 0.1);
        // Durations are bounded by the configuration; the fallback only guards the arithmetic.
        let next = from
            .checked_add(wait.saturating_add(jitter))
            .unwrap_or_else(|| from + MAX_DURATION);
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// A future whose panic becomes an `Err` with the panic's message, so a bug in one source ends
/// its poll instead of its task.
struct CatchUnwind<F>(F);

impl<F: Future + Unpin> Future for CatchUnwind<F> {
    type Output = Result<F::Output, String>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = &mut self.0;
        match std::panic::catch_unwind(AssertUnwindSafe(|| Pin::new(inner).poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Err(panic) => Poll::Ready(Err(panic_message(panic.as_ref()))),
        }
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

/// The default grace period for in-flight HTTP requests at shutdown.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exposition::self_metrics::SelfMetrics;

    #[test]
    fn readiness_counts_every_waiting_pair_names_a_few_and_waits_for_the_exposition() {
        let hub = MetricsHub::new(Arc::new(SelfMetrics::new()));
        let pairs = (0..30).map(|i| ("src".to_owned(), format!("t{i:02}")));
        let readiness = Readiness::of_pairs(pairs);
        let (count, named) = readiness.pending(hub.current().covers, 3);
        assert_eq!(
            (count, named),
            (
                30,
                vec!["src@t00".into(), "src@t01".into(), "src@t02".into()]
            )
        );

        for i in 0..30 {
            hub.publish("src", &format!("t{i:02}"), Snapshot::default());
            readiness.mark("src", &format!("t{i:02}"), &hub);
        }
        // Every pair polled, but the exposition served does not show the last publishes yet.
        let stale = hub.current().covers;
        assert!(stale < hub.last_publish());
        assert!(readiness.pending(stale, 3).0 > 0);
        assert_eq!(readiness.pending(hub.flush().covers, 3), (0, vec![]));
        // Ready stays ready, whatever `covers` a later probe passes.
        assert_eq!(readiness.pending(0, 3), (0, vec![]));
    }
}
