//! The [`Source`] trait every service implements, and what a poll reports to the scheduler.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::aws::Target;
use crate::error::AwsError;
use crate::exposition::hub::Snapshot;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a poll ran into. An empty list means the poll completed; errors degrade only this
/// source for this poll, and whatever the source did learn is kept.
#[derive(Debug, Default)]
pub struct PollOutcome {
    pub errors: Vec<AwsError>,
}

impl PollOutcome {
    pub fn success(&self) -> bool {
        self.errors.is_empty()
    }
}

/// What a poll can do before it ends: publish what it learned so far, so a poll slowed down
/// by the API budget never holds back what it already knows.
pub trait Progress: Sync {
    /// Publishes `snapshot()` unless the last publish was less than a second ago; `force`
    /// publishes in any case.
    fn publish(&self, force: bool, snapshot: &mut dyn FnMut() -> Snapshot);
    /// The source's open work is published: /readyz need not wait for the end of its first poll.
    fn ready(&self);
}

/// One AWS service, polled for one target.
pub trait Source: Send {
    /// The `source` label: `sfn_map_runs`, `transfer_workflows`, `appflow_flows`.
    fn name(&self) -> &'static str;
    fn target(&self) -> &Arc<Target>;
    /// How often to poll.
    fn interval(&self) -> std::time::Duration;
    /// Calls AWS and updates the source's state, publishing through `progress` as it goes.
    /// Errors that affect one resource go into `errors` and the poll goes on; an `Err` ends it.
    fn poll<'a>(
        &'a mut self,
        errors: &'a mut Vec<AwsError>,
        progress: &'a dyn Progress,
    ) -> BoxFuture<'a, Result<(), AwsError>>;
    /// The source's metric families and tracked resource counts, from its state, at `now` (Unix seconds).
    fn snapshot(&self, now: f64) -> Snapshot;
    /// History still to read, by kind, for /status; sources that read no history have none.
    fn backlog(&self) -> Vec<(&'static str, usize)> {
        Vec::new()
    }
}

/// Unix seconds now.
pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}
