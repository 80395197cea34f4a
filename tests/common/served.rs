//! An exporter in the test's own process, polling the simulator through the real SDK and
//! serving on loopback: tests drive its polls one at a time.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use aws_workflow_exporter::app::Exporter;
use aws_workflow_exporter::aws::StaticCredentials;
use aws_workflow_exporter::config::Config;
use aws_workflow_exporter::simulator::{demo, Simulator, World};
use aws_workflow_exporter::web::{self, Web};
use tokio::sync::watch;

use super::{scrape_at, Scrape};

pub fn credentials() -> Option<StaticCredentials> {
    Some(StaticCredentials {
        access_key_id: "test".into(),
        secret_access_key: "test".into(),
    })
}

/// A config pointing at `endpoint` with only the named sources enabled.
pub fn config_for(endpoint: &str, sources: &[&str]) -> Config {
    let mut config = demo::demo_config(endpoint, std::time::Duration::from_secs(60));
    config.sources.enable_only(sources);
    // Tests must not wait on the API budget.
    config.aws_api.quota_share = 1.0;
    config.aws_api.max_attempts = 1;
    config
}

/// An exporter serving /metrics on loopback until dropped.
pub struct Served {
    pub exporter: Exporter,
    pub http_addr: SocketAddr,
    /// The access key id it signs with: the simulator's request log shows it per call.
    pub key: String,
    _shutdown: watch::Sender<bool>,
}

impl Served {
    /// Serves with `web` (TLS, authentication, limits; `Web::plain()` for none).
    pub async fn start(config: &Config, access_key: &str, web: Web) -> Self {
        let creds = StaticCredentials {
            access_key_id: access_key.into(),
            secret_access_key: "test".into(),
        };
        let exporter = Exporter::new(config, Some(creds));
        let listener = web::bind("127.0.0.1:0").await.expect("bind");
        let http_addr = listener.local_addr().expect("addr");
        let (tx, rx) = watch::channel(false);
        tokio::spawn(web::serve(
            vec![listener],
            std::sync::Arc::new(web),
            exporter.http_state(),
            rx,
        ));
        Self {
            exporter,
            http_addr,
            key: access_key.into(),
            _shutdown: tx,
        }
    }

    /// GET /metrics over HTTP and parse it.
    pub async fn scrape(&self) -> Scrape {
        scrape_at(self.http_addr).await
    }
}

pub struct Harness {
    pub sim: Simulator,
    pub exporter: Exporter,
    pub http_addr: SocketAddr,
    _shutdown: watch::Sender<bool>,
}

impl Harness {
    /// Starts the simulator and an exporter for `sources`; `adjust` may change the config.
    pub async fn start(sources: &[&str], adjust: impl FnOnce(&mut Config)) -> Self {
        Self::start_with_web(sources, adjust, Web::plain()).await
    }

    /// As [`Harness::start`], serving with `web` (TLS, authentication, limits).
    pub async fn start_with_web(
        sources: &[&str],
        adjust: impl FnOnce(&mut Config),
        web: Web,
    ) -> Self {
        let sim = Simulator::start().await.expect("simulator starts");
        let mut config = config_for(&sim.endpoint, sources);
        adjust(&mut config);
        let served = Served::start(&config, "test", web).await;
        Self {
            sim,
            exporter: served.exporter,
            http_addr: served.http_addr,
            _shutdown: served._shutdown,
        }
    }

    pub fn world(&self) -> std::sync::MutexGuard<'_, World> {
        self.sim.world()
    }

    /// One poll of every source.
    pub async fn poll(&mut self) {
        self.exporter.poll_once().await;
    }

    /// GET /metrics over HTTP and parse it.
    pub async fn scrape(&self) -> Scrape {
        scrape_at(self.http_addr).await
    }

    /// Calls per (service, operation) since the log was last cleared, then clears it.
    pub fn take_calls(&self) -> BTreeMap<(String, String), usize> {
        let mut w = self.world();
        let counts = w.call_counts();
        w.calls.clear();
        counts
    }
}
