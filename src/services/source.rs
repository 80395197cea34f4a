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
