//! What a service writes ([`Service`]) and the one [`Runner`] that makes each service on each
//! target a [`Source`] the scheduler polls.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::aws::{Connection, Target};
use crate::clock::unix_now;
use crate::error::AwsError;
use crate::exposition::family::Family;
use crate::exposition::hub::Snapshot;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a poll can do before it ends: publish what it learned so far, so a poll slowed down
/// by the API budget never holds back what it already knows.
pub trait Progress: Sync {
    /// Publishes `snapshot()` unless the last publish was less than a second ago; `force`
    /// publishes in any case.
    fn publish(&self, force: bool, snapshot: &mut dyn FnMut() -> Snapshot);
    /// The source's open work is published: /readyz need not wait for the end of its first poll.
    fn ready(&self);
}

/// One source (a service on one target) as the scheduler runs it. Implemented once, by
/// [`Runner`], for every service.
pub trait Source: Send {
    /// The `source` label: the service's name in the registry.
    fn name(&self) -> &'static str;
    fn target(&self) -> &Arc<Target>;
    /// How often to poll.
    fn interval(&self) -> Duration;
    /// Calls AWS and updates the source's state, publishing through `progress` as it goes.
    /// Errors that affect one resource go into `errors` and the poll goes on; an `Err` ends it.
    fn poll<'a>(
        &'a mut self,
        errors: &'a mut Vec<AwsError>,
        progress: &'a dyn Progress,
    ) -> BoxFuture<'a, Result<(), AwsError>>;
    /// The source's metric families and tracked resource counts, from its state, at `now` (Unix seconds).
    fn snapshot(&self, now: f64) -> Snapshot;
    /// History still to read, by kind, for /status.
    fn backlog(&self) -> Vec<(&'static str, usize)> {
        Vec::new()
    }
}

/// What a service writes: its state between polls, the poll that updates it, and how the state
/// renders. The [`Runner`] does the rest for every service (its name, target, interval, SDK
/// client, publishing).
pub trait Service: Send + Sized + 'static {
    /// The service's section of the file.
    type Config;
    /// Its SDK calls, made once per source from the target's first connection.
    type Client: Send + Sync;
    /// `started_at`: when the exporter started (what finished before is a baseline, not counted).
    fn new(config: &Self::Config, started_at: f64) -> Self;
    fn client(conn: Arc<Connection>) -> Self::Client;
    /// One poll (see [`Source::poll`]).
    fn poll(
        &mut self,
        client: &Self::Client,
        cx: &mut PollCx<'_>,
    ) -> impl Future<Output = Result<(), AwsError>> + Send;
    /// The service's metric families at `cx.now`.
    fn render(&self, cx: &RenderCx, out: &mut Vec<Family>);
    /// Tracked resources by kind (`/status`, `aws_workflow_exporter_tracked_resources`).
    fn tracked(&self) -> Vec<(&'static str, usize)>;
    /// History still to read, by kind; services that read no history have none.
    fn backlog(&self) -> Vec<(&'static str, usize)> {
        Vec::new()
    }
}

/// What a poll works with besides its client.
pub struct PollCx<'p> {
    pub conn: Arc<Connection>,
    pub target: &'p Target,
    /// Errors that affect one resource: the poll goes on.
    pub errors: &'p mut Vec<AwsError>,
    progress: &'p dyn Progress,
}

impl PollCx<'_> {
    /// Publishes what `service` knows now (at most once a second unless `force`).
    pub fn publish<S: Service>(&self, service: &S, force: bool) {
        let target = self.target;
        self.progress
            .publish(force, &mut || snapshot(service, target, unix_now()));
    }

    /// See [`Progress::ready`].
    pub fn ready(&self) {
        self.progress.ready();
    }
}

/// The labels every series of a target carries, and the time to render at.
pub struct RenderCx {
    pub account_id: String,
    pub region: String,
    pub now: f64,
}

fn snapshot<S: Service>(service: &S, target: &Target, now: f64) -> Snapshot {
    let (account_id, region) = target.labels();
    let cx = RenderCx {
        account_id,
        region,
        now,
    };
    let mut families = Vec::new();
    service.render(&cx, &mut families);
    Snapshot {
        families,
        tracked: service.tracked(),
    }
}

/// A service on one target: the [`Source`] the scheduler runs.
pub struct Runner<S: Service> {
    name: &'static str,
    target: Arc<Target>,
    interval: Duration,
    client: Option<S::Client>,
    service: S,
}

impl<S: Service> Runner<S> {
    /// `name` and `interval` come from the registry, so a service cannot name itself wrong.
    pub fn boxed(
        name: &'static str,
        target: Arc<Target>,
        config: &S::Config,
        interval: Duration,
        started_at: f64,
    ) -> Box<dyn Source> {
        Box::new(Self {
            name,
            target,
            interval,
            client: None,
            service: S::new(config, started_at),
        })
    }
}

impl<S: Service> Source for Runner<S> {
    fn name(&self) -> &'static str {
        self.name
    }

    fn target(&self) -> &Arc<Target> {
        &self.target
    }

    fn interval(&self) -> Duration {
        self.interval
    }

    fn poll<'a>(
        &'a mut self,
        errors: &'a mut Vec<AwsError>,
        progress: &'a dyn Progress,
    ) -> BoxFuture<'a, Result<(), AwsError>> {
        Box::pin(async move {
            let conn = self.target.connect().await?;
            let client = self.client.get_or_insert_with(|| S::client(conn.clone()));
            let mut cx = PollCx {
                conn,
                target: &self.target,
                errors,
                progress,
            };
            self.service.poll(client, &mut cx).await
        })
    }

    fn snapshot(&self, now: f64) -> Snapshot {
        snapshot(&self.service, &self.target, now)
    }

    fn backlog(&self) -> Vec<(&'static str, usize)> {
        self.service.backlog()
    }
}

/// When a source lists its resources (state machines, workflows) again. Listing every poll is
/// one call per target and poll whether or not anything changed: at 500 accounts, a fifth of
/// all calls. So a source lists on its first poll, at the poll after a resource it knew was
/// found gone, and then every `interval`, going on from its last listing in between. The first
/// wait is a share of the interval fixed by the target's key, so that the targets' listings
/// spread over the interval instead of falling on the same poll, the same way on every run.
#[derive(Debug)]
pub struct Rediscovery {
    interval: Duration,
    /// When the next listing is due; `None`: at the next poll.
    next: Option<std::time::Instant>,
    /// Whether a listing succeeded yet.
    listed_once: bool,
}

impl Rediscovery {
    /// `interval` at or below `poll_interval` lists every poll.
    pub fn new(interval: Duration, poll_interval: Duration) -> Self {
        // A poll may start a little before the listing is due: half a poll of slack keeps the
        // listing on that poll instead of one poll later.
        let interval = interval.saturating_sub(poll_interval / 2);
        Self {
            interval,
            next: None,
            listed_once: false,
        }
    }

    /// Whether the poll starting `now` lists.
    pub fn due(&self, now: std::time::Instant) -> bool {
        self.next.is_none_or(|next| now >= next)
    }

    /// A listing for the target keyed `target_key` succeeded at `now`.
    pub fn listed(&mut self, now: std::time::Instant, target_key: &str) {
        use std::hash::{Hash, Hasher};
        let wait = if self.listed_once {
            self.interval
        } else {
            // DefaultHasher::new() has fixed keys: the same share for a target on every run.
            let mut hasher = std::hash::DefaultHasher::new();
            target_key.hash(&mut hasher);
            let share = (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64;
            self.interval.mul_f64(share)
        };
        self.listed_once = true;
        self.next = now.checked_add(wait);
    }

    /// A resource from the last listing is gone: list again at the next poll.
    pub fn relist(&mut self) {
        self.next = None;
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::Rediscovery;

    #[test]
    fn lists_at_the_first_poll_then_within_the_interval_and_again_after_a_resource_went() {
        let minute = Duration::from_secs(60);
        // The first wait is a share of the interval (less half a poll of slack) fixed by the
        // target's key: targets spread over the polls of an interval.
        let mut second_listing_poll = std::collections::BTreeSet::new();
        let t0 = Instant::now();
        for target in 0..50 {
            let key = format!("account-{target}/us-east-1");
            let mut r = Rediscovery::new(5 * minute, minute);
            assert!(r.due(t0));
            r.listed(t0, &key);
            let poll = (1..=5).find(|p| r.due(t0 + minute * *p));
            second_listing_poll.insert(poll.expect("listed again within the interval"));
            // The same target gets the same share.
            let mut again = Rediscovery::new(5 * minute, minute);
            again.listed(t0, &key);
            assert_eq!((1..=5).find(|p| again.due(t0 + minute * *p)), poll);
        }
        assert_eq!(second_listing_poll.len(), 5, "{second_listing_poll:?}");
        let mut r = Rediscovery::new(5 * minute, minute);
        r.listed(t0, "a/us-east-1");
        let second = t0 + 5 * minute;
        r.listed(second, "a/us-east-1");
        // Then every interval: not at the next four polls, at the fifth.
        for poll in 1..=4 {
            assert!(!r.due(second + minute * poll), "poll {poll}");
        }
        // A poll a second early still lists.
        assert!(r.due(second + 5 * minute - Duration::from_secs(1)));
        r.relist();
        assert!(r.due(second + minute));
    }

    #[test]
    fn an_interval_at_or_below_the_poll_interval_lists_every_poll() {
        let minute = Duration::from_secs(60);
        for interval in [Duration::ZERO, Duration::from_secs(30), minute] {
            let mut r = Rediscovery::new(interval, minute);
            let mut t = Instant::now();
            for _ in 0..3 {
                assert!(r.due(t), "{interval:?}");
                r.listed(t, "a/us-east-1");
                t += minute;
            }
        }
    }
}
