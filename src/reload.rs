//! The running source instances, and what a configuration reload does to them.
//!
//! An instance is a (source, target) pair. On reload, an instance whose settings are unchanged
//! (its source section, its target, the `aws_api` settings) keeps running: its tracked runs,
//! counters, account id and API budget go on. A removed instance stops and its series are
//! dropped. A new instance, or one whose settings changed, starts with a baseline as at startup:
//! runs that already finished are not counted.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::aws::{AccountRegistry, StaticCredentials, Target};
use crate::config::Config;
use crate::exposition::hub::MetricsHub;
use crate::scheduler::{self, Readiness};
use crate::services;
use crate::services::source::{unix_now, Source};
use crate::web::WebConfigHandle;

/// How long a stopped source may take to finish; then its task is aborted.
const STOP_GRACE: Duration = Duration::from_secs(5);

struct Running {
    settings: String,
    target: Arc<Target>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Running {
    async fn stop(self) {
        let _ = self.stop.send(true);
        let abort = self.task.abort_handle();
        if tokio::time::timeout(STOP_GRACE, self.task).await.is_err() {
            abort.abort();
        }
    }
}

/// What a reload did, for the log.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ReloadSummary {
    pub kept: usize,
    pub started: usize,
    pub stopped: usize,
}

/// Owns the running source tasks and applies new configurations to them.
pub struct Supervisor {
    config: Config,
    static_credentials: Option<StaticCredentials>,
    registry: Arc<AccountRegistry>,
    hub: Arc<MetricsHub>,
    readiness: Arc<Readiness>,
    targets: BTreeMap<String, Arc<Target>>,
    running: BTreeMap<(String, String), Running>,
}

impl Supervisor {
    /// Starts a task per source; `config` is what they were built from.
    pub fn start(
        config: Config,
        static_credentials: Option<StaticCredentials>,
        registry: Arc<AccountRegistry>,
        hub: Arc<MetricsHub>,
        readiness: Arc<Readiness>,
        sources: Vec<Box<dyn Source>>,
    ) -> Self {
        let mut this = Self {
            config,
            static_credentials,
            registry,
            hub,
            readiness,
            targets: BTreeMap::new(),
            running: BTreeMap::new(),
        };
        for s in sources {
            this.targets.insert(s.target().key(), s.target().clone());
            this.spawn(s);
        }
        this
    }

    fn spawn(&mut self, source: Box<dyn Source>) {
        let key = (source.name().to_owned(), source.target().key());
        let (stop, stopped) = watch::channel(false);
        let deadline = scheduler::poll_deadline(source.interval());
        let running = Running {
            settings: self.config.sources.settings(source.name()),
            target: source.target().clone(),
            stop,
            task: tokio::spawn(scheduler::run_source(
                source,
                self.hub.clone(),
                self.readiness.clone(),
                stopped,
                deadline,
            )),
        };
        self.running.insert(key, running);
    }

    /// Stops an instance and drops what it published.
    async fn retire(&self, (source, target_key): &(String, String), running: Running) {
        let (account_id, region) = running.target.labels();
        running.stop().await;
        // After the task ended, so no late poll publishes again.
        self.hub.remove(source, target_key);
        self.hub
            .self_metrics()
            .forget_poll_labels(source, &account_id, &region);
        self.hub
            .self_metrics()
            .status()
            .forget_source(source, target_key);
        self.readiness.mark(source, target_key, &self.hub);
    }

    /// Applies `new`, which is already validated; see the module doc for what is kept.
    pub async fn apply(&mut self, mut new: Config) -> ReloadSummary {
        // The shard comes from the command line, not the file: a reload keeps it.
        new.shard = self.config.shard;
        if new.otlp != self.config.otlp {
            tracing::warn!("the otlp settings changed: they take effect at the next restart");
        }
        let same_api = new.aws_api == self.config.aws_api;
        let metrics = self.hub.self_metrics().clone();
        let targets: Vec<Arc<Target>> = new
            .targets
            .iter()
            .map(|t| {
                let fresh = Target::new(
                    t.clone(),
                    new.aws_api.clone(),
                    new.shard,
                    self.static_credentials.clone(),
                    metrics.clone(),
                    self.registry.clone(),
                );
                match self.targets.get(&fresh.key()) {
                    Some(old) if same_api && old.config == *t => old.clone(),
                    _ => Arc::new(fresh),
                }
            })
            .collect();
        let mut summary = ReloadSummary::default();
        let mut old = std::mem::take(&mut self.running);
        let built = services::build(&new.sources, &targets, unix_now());
        self.config = new;
        for source in built {
            let key = (source.name().to_owned(), source.target().key());
            let settings = self.config.sources.settings(source.name());
            match old.remove(&key) {
                Some(r) if r.settings == settings && Arc::ptr_eq(&r.target, source.target()) => {
                    self.running.insert(key, r);
                    summary.kept += 1;
                }
                previous => {
                    if let Some(r) = previous {
                        self.retire(&key, r).await;
                    }
                    self.spawn(source);
                    summary.started += 1;
                }
            }
        }
        for (key, r) in old {
            self.retire(&key, r).await;
            summary.stopped += 1;
        }
        let targets: BTreeMap<String, Arc<Target>> =
            targets.into_iter().map(|t| (t.key(), t)).collect();
        // A target that is gone gives up its (account, region), so a renamed one may take it.
        for key in self.targets.keys().filter(|k| !targets.contains_key(*k)) {
            self.registry.release(key);
        }
        self.targets = targets;
        summary
    }

    /// Stops every source (shutdown).
    pub async fn stop_all(self) {
        for (_, r) in self.running {
            r.stop().await;
        }
    }
}

/// One reload: validates the configuration file (if any) and the web config file (if any)
/// before changing anything, then applies both. `Err` carries the reason, naming file and field.
pub async fn reload(
    supervisor: &mut Supervisor,
    config_file: Option<&Path>,
    web_config: &WebConfigHandle,
) -> Result<ReloadSummary, String> {
    let config = match config_file {
        Some(path) => Some(Config::load(path).map_err(|e| e.to_string())?),
        None => None,
    };
    web_config.reload().map_err(|e| e.to_string())?;
    Ok(match config {
        Some(c) => supervisor.apply(c).await,
        None => ReloadSummary::default(),
    })
}
