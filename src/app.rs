//! Wires configuration, targets, sources, the scheduler and the HTTP server together.

use std::path::PathBuf;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use crate::aws::instrument::ApiInstrumentation;
use crate::aws::{AccountRegistry, StaticCredentials, Target};
use crate::config::Config;
use crate::exposition::hub::MetricsHub;
use crate::exposition::metric::MetricDef;
use crate::exposition::self_metrics::SelfMetrics;
use crate::reload::{self, Supervisor};
use crate::scheduler::{self, Readiness};
use crate::services;
use crate::services::source::{unix_now, Source};
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

/// Serves reload requests (SIGHUP, `POST /-/reload`) one at a time; stops the sources at shutdown.
async fn reload_loop(
    mut supervisor: Supervisor,
    config_file: Option<PathBuf>,
    web: Arc<Web>,
    hub: Arc<MetricsHub>,
    mut reloads: mpsc::Receiver<ReloadReply>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let reply = tokio::select! {
            r = reloads.recv() => match r {
                Some(r) => r,
                None => break,
            },
            _ = shutdown.changed() => break,
        };
        let outcome = reload::reload(&mut supervisor, config_file.as_deref(), &web.config).await;
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
    supervisor.stop_all().await;
}

/// Every metric the exporter can serve, by the part that emits it: docs/metrics.md is made from it.
pub fn catalog() -> Vec<(&'static str, &'static [&'static MetricDef])> {
    let mut all = services::catalog();
    all.push((
        "OTLP push (only when an OTLP endpoint is configured)",
        crate::otlp::push::DEFS,
    ));
    all
}
