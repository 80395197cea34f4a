//! Wires configuration, targets, sources, the scheduler and the HTTP server together.

use std::path::PathBuf;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::aws::instrument::ApiInstrumentation;
use crate::aws::organization::{Lister, OrganizationMetrics};
use crate::aws::{AccountRegistry, StaticCredentials, Target};
use crate::clock::unix_now;
use crate::config::organization::{Account, OrganizationTarget};
use crate::config::targets::AwsApiConfig;
use crate::config::Config;
use crate::error::AwsError;
use crate::exposition::hub::MetricsHub;
use crate::exposition::metric::MetricDef;
use crate::exposition::self_metrics::SelfMetrics;
use crate::reload::{self, Supervisor};
use crate::scheduler::{self, Readiness};
use crate::services;
use crate::services::source::Source;
use crate::web::{self, HttpState, ReloadReply, Web};

pub struct Exporter {
    hub: Arc<MetricsHub>,
    readiness: Arc<Readiness>,
    sources: Vec<Box<dyn Source>>,
    config: Config,
    config_file: Option<PathBuf>,
    static_credentials: Option<StaticCredentials>,
    /// Which target polls each (account, region); shared with targets a reload creates.
    registry: Arc<AccountRegistry>,
}

impl Exporter {
    /// `static_credentials` is for the built-in simulator only; real targets use the AWS credential chain.
    pub fn new(config: &Config, static_credentials: Option<StaticCredentials>) -> Self {
        let self_metrics = Arc::new(SelfMetrics::new());
        ApiInstrumentation::declare(&self_metrics, &services::operations());
        self_metrics.set_shard(config.shard.ordinal(), config.shard.total());
        // The configuration in use was loaded at startup.
        self_metrics.record_reload(true, unix_now());
        let registry = Arc::new(AccountRegistry::default());
        let targets: Vec<Arc<Target>> = config
            .targets
            .iter()
            .map(|t| {
                Arc::new(Target::new(
                    t.clone(),
                    config.aws_api.clone(),
                    config.shard,
                    static_credentials.clone(),
                    self_metrics.clone(),
                    registry.clone(),
                ))
            })
            .collect();
        let sources = services::build(&config.sources, &targets, unix_now());
        Self {
            hub: Arc::new(MetricsHub::new(self_metrics)),
            readiness: Arc::new(Readiness::new(&sources)),
            sources,
            config: config.clone(),
            config_file: None,
            static_credentials,
            registry,
        }
    }

    /// The file the configuration came from: reloads read it again.
    pub fn with_config_file(mut self, path: PathBuf) -> Self {
        self.config_file = Some(path);
        self
    }

    pub fn http_state(&self) -> HttpState {
        HttpState {
            hub: self.hub.clone(),
            readiness: self.readiness.clone(),
        }
    }

    /// Polls every source once, in order, and publishes the result (tests and `check` use this).
    pub async fn poll_once(&mut self) {
        for source in &mut self.sources {
            let deadline = scheduler::poll_deadline(source.interval());
            scheduler::poll_and_publish(source.as_mut(), &self.hub, &self.readiness, deadline)
                .await;
        }
        // What they published is on /metrics when this returns.
        self.hub.flush();
    }

    /// Runs the sources, reloads (from `reloads`) and the HTTP server until `shutdown` turns true.
    pub async fn run(
        self,
        listeners: Vec<TcpListener>,
        web: Arc<Web>,
        reloads: mpsc::Receiver<ReloadReply>,
        shutdown: watch::Receiver<bool>,
    ) {
        let state = self.http_state();
        // OTLP push settings are read at startup only; a reload says so if they changed.
        let otlp =
            self.config.otlp.clone().map(|otlp| {
                tokio::spawn(crate::otlp::run(otlp, self.hub.clone(), shutdown.clone()))
            });
        let discovery = Discovery {
            static_credentials: self.static_credentials.clone(),
            metrics: OrganizationMetrics::register(self.hub.self_metrics()),
            tasks: Vec::new(),
        };
        let supervisor = Supervisor::start(
            self.config,
            self.static_credentials,
            self.registry,
            self.hub.clone(),
            self.readiness.clone(),
            self.sources,
        );
        let watcher = tokio::spawn(web.config.clone().watch(shutdown.clone()));
        let reloader = tokio::spawn(reload_loop(
            supervisor,
            discovery,
            self.config_file,
            web.clone(),
            self.hub.clone(),
            reloads,
            shutdown.clone(),
        ));
        web::serve(listeners, web, state, shutdown).await;
        let _ = watcher.await;
        let _ = reloader.await;
        if let Some(otlp) = otlp {
            let _ = otlp.await;
        }
    }
}

/// A listing of an organisation's accounts: (organisation target name, its outcome).
type Listed = (String, Result<Vec<Account>, AwsError>);

/// The tasks listing organisations' accounts, one per organisation target.
struct Discovery {
    static_credentials: Option<StaticCredentials>,
    metrics: OrganizationMetrics,
    tasks: Vec<(OrganizationTarget, JoinHandle<()>)>,
}

impl Discovery {
    /// Starts a listing task per organisation target of `supervisor` not listed already with
    /// the same settings, and stops those of targets gone or changed.
    fn follow(
        &mut self,
        supervisor: &Supervisor,
        api: &AwsApiConfig,
        hub: &MetricsHub,
        tx: &mpsc::Sender<Listed>,
    ) {
        let wanted = supervisor.organizations();
        self.tasks.retain(|(org, task)| {
            let keep = wanted.contains(org);
            if !keep {
                task.abort();
                self.metrics.forget(&org.name);
            }
            keep
        });
        for org in wanted {
            if self.tasks.iter().any(|(o, _)| o == org) {
                continue;
            }
            let lister = Lister::new(
                org,
                api.clone(),
                self.static_credentials.clone(),
                hub.self_metrics().clone(),
            );
            let (org2, tx) = (org.clone(), tx.clone());
            let task = tokio::spawn(async move {
                loop {
                    let listed = lister.accounts(&org2).await;
                    if tx.send((org2.name.clone(), listed)).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(org2.organization.refresh).await;
                }
            });
            self.tasks.push((org.clone(), task));
        }
    }

    /// Applies a listing: its accounts are polled, or on failure the last known ones stay.
    async fn apply(&self, supervisor: &mut Supervisor, (name, listed): Listed) {
        let Some(org) = supervisor
            .organizations()
            .iter()
            .find(|o| o.name == name)
            .cloned()
        else {
            return;
        };
        match listed {
            Ok(accounts) => {
                let selected = accounts.iter().filter(|a| org.selects(a)).count();
                self.metrics
                    .record_listing(&name, Some(selected), unix_now());
                let summary = supervisor.discovered(&name, org.members(&accounts)).await;
                if summary.started + summary.stopped > 0 {
                    tracing::info!(organization = %name, accounts = selected, started = summary.started, stopped = summary.stopped, "organisation accounts changed");
                }
            }
            Err(e) => {
                self.metrics.record_listing(&name, None, unix_now());
                tracing::warn!(organization = %name, error = %e, "listing the organisation's accounts failed; the accounts last listed stay polled");
            }
        }
    }

    /// Counts polled and failing member accounts from the last polls.
    fn report(&self, supervisor: &Supervisor, hub: &MetricsHub) {
        for org in supervisor.organizations() {
            let accounts = supervisor.members_of(&org.name);
            let (polled, failing) = hub
                .self_metrics()
                .accounts()
                .poll_outcomes(accounts.iter().map(String::as_str));
            self.metrics.record_polls(&org.name, polled, failing);
        }
    }

    fn stop(self) {
        for (_, task) in self.tasks {
            task.abort();
        }
    }
}

/// How often the polled and failing member accounts are counted again.
const ORGANIZATION_REPORT_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Serves reload requests (SIGHUP, `POST /-/reload`) one at a time and applies organisation
/// listings; stops the sources at shutdown.
async fn reload_loop(
    mut supervisor: Supervisor,
    mut discovery: Discovery,
    config_file: Option<PathBuf>,
    web: Arc<Web>,
    hub: Arc<MetricsHub>,
    mut reloads: mpsc::Receiver<ReloadReply>,
    mut shutdown: watch::Receiver<bool>,
) {
    let (listed_tx, mut listed) = mpsc::channel::<Listed>(16);
    discovery.follow(&supervisor, &supervisor.aws_api().clone(), &hub, &listed_tx);
    let mut report = tokio::time::interval(ORGANIZATION_REPORT_EVERY);
    loop {
        let reply = tokio::select! {
            r = reloads.recv() => match r {
                Some(r) => r,
                None => break,
            },
            Some(l) = listed.recv() => {
                discovery.apply(&mut supervisor, l).await;
                hub.rebuild();
                continue;
            }
            _ = report.tick() => {
                discovery.report(&supervisor, &hub);
                continue;
            }
            _ = shutdown.changed() => break,
        };
        let outcome = reload::reload(&mut supervisor, config_file.as_deref(), &web.config).await;
        discovery.follow(&supervisor, &supervisor.aws_api().clone(), &hub, &listed_tx);
        hub.self_metrics()
            .record_reload(outcome.is_ok(), unix_now());
        hub.rebuild();
        let outcome = match outcome {
            Ok(summary) => {
                tracing::info!(
                    kept = summary.kept,
                    started = summary.started,
                    stopped = summary.stopped,
                    "configuration reloaded"
                );
                Ok(())
            }
            Err(e) => {
                tracing::error!(error = %e, "reload failed; keeping the running configuration");
                Err(e)
            }
        };
        let _ = reply.send(outcome);
    }
    discovery.stop();
    supervisor.stop_all().await;
}

/// Every metric the exporter can serve, by the part that emits it: docs/metrics.md is made from it.
pub fn catalog() -> Vec<(&'static str, &'static [&'static MetricDef])> {
    let mut all = services::catalog();
    all.push((
        "Organisation discovery (only for targets with `organization`)",
        crate::aws::organization::DEFS,
    ));
    all.push((
        "OTLP push (only when an OTLP endpoint is configured)",
        crate::otlp::push::DEFS,
    ));
    all
}
