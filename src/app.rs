//! Wires configuration, targets, sources, the scheduler and the HTTP server together.

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::aws::instrument::ApiInstrumentation;
use crate::aws::{StaticCredentials, Target};
use crate::config::Config;
use crate::exposition::hub::MetricsHub;
use crate::exposition::self_metrics::SelfMetrics;
use crate::http::{self, HttpState};
use crate::scheduler::{self, Readiness};
use crate::services;
use crate::services::source::{unix_now, Source};

pub struct Exporter {
    hub: Arc<MetricsHub>,
    readiness: Arc<Readiness>,
    sources: Vec<Box<dyn Source>>,
}

impl Exporter {
    /// `static_credentials` is for the built-in simulator only; real targets use the AWS credential chain.
    pub fn new(config: &Config, static_credentials: Option<StaticCredentials>) -> Self {
        let self_metrics = Arc::new(SelfMetrics::new());
        ApiInstrumentation::declare(&self_metrics, &services::operations());
        self_metrics.set_shard(config.shard.ordinal(), config.shard.total());
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
                ))
            })
            .collect();
        let sources = services::build(&config.sources, &targets, unix_now());
        Self {
            hub: Arc::new(MetricsHub::new(self_metrics)),
            readiness: Arc::new(Readiness::new(&sources)),
            sources,
        }
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
            scheduler::poll_and_publish(source.as_mut(), &self.hub, &self.readiness).await;
        }
    }

    /// Runs the scheduler and the HTTP server until `shutdown` turns true.
    pub async fn run(self, listener: TcpListener, shutdown: watch::Receiver<bool>) {
        let state = self.http_state();
        let mut tasks = Vec::new();
        for source in self.sources {
            tasks.push(tokio::spawn(scheduler::run_source(
                source,
                self.hub.clone(),
                self.readiness.clone(),
                shutdown.clone(),
            )));
        }
        http::serve(listener, state, shutdown).await;
        for t in tasks {
            let _ = t.await;
        }
    }
}
