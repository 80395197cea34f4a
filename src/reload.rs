//! The running source instances, and what a configuration reload does to them.
//!
//! An instance is a (source, target) pair. On reload, an instance whose settings are unchanged
//! (its source section, its target, the `aws_api` settings) keeps running: its tracked runs,
//! counters, account id and API budget go on. A removed instance stops and its series are
//! dropped. A new instance, or one whose settings changed, starts with a baseline as at startup:
//! runs that already finished are not counted.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::aws::{AccountRegistry, StaticCredentials, Target};
use crate::clock::unix_now;
use crate::config::organization::OrganizationTarget;
use crate::config::target::TargetConfig;
use crate::config::Config;
use crate::exposition::hub::MetricsHub;
use crate::scheduler::{self, Readiness};
use crate::services;
use crate::services::source::Source;
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
        let mut task = self.task;
        if tokio::time::timeout(STOP_GRACE, &mut task).await.is_err() {
            task.abort();
            // Until it has ended: a task aborted mid-poll could still publish otherwise.
            let _ = task.await;
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
    /// The configuration as loaded; `config` is it with the discovered member targets added.
    file: Config,
    /// The member targets of each organisation target, as last listed.
    discovered: BTreeMap<String, Vec<TargetConfig>>,
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
            file: config.clone(),
            discovered: BTreeMap::new(),
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

    /// Stops an instance and drops what it published. `polled` holds (source, account, region)
    /// of every instance polling after the reload, whose self-metrics stay.
    async fn retire(
        &self,
        (source, target_key): &(String, String),
        running: Running,
        polled: &BTreeSet<(String, String, String)>,
    ) {
        let (account_id, region) = running.target.labels();
        running.stop().await;
        // After the task ended, so no late poll publishes again.
        self.hub.remove(source, target_key);
        if !polled.contains(&(source.clone(), account_id.clone(), region.clone())) {
            self.hub
                .self_metrics()
                .accounts()
                .forget_polls(source, (&account_id, &region));
        }
        self.hub
            .self_metrics()
            .status()
            .forget_source(source, target_key);
        self.readiness.mark(source, target_key, &self.hub);
    }

    pub fn aws_api(&self) -> &crate::config::targets::AwsApiConfig {
        &self.file.aws_api
    }

    /// The account ids of an organisation target's members, as last listed.
    pub fn members_of(&self, organization: &str) -> BTreeSet<String> {
        self.discovered
            .get(organization)
            .into_iter()
            .flatten()
            .filter_map(|t| t.account_id.clone())
            .collect()
    }

    /// The organisation targets of the configuration in use.
    pub fn organizations(&self) -> &[OrganizationTarget] {
        &self.file.organizations
    }

    /// Applies `new`, which is already validated; see the module doc for what is kept. The
    /// member accounts of an organisation target whose settings are unchanged stay polled.
    pub async fn apply(&mut self, mut new: Config) -> ReloadSummary {
        // The shard comes from the command line, not the file: a reload keeps it.
        new.shard = self.config.shard;
        let old = &self.file.organizations;
        self.discovered.retain(|name, _| {
            new.organizations
                .iter()
                .any(|o| o.name == *name && old.contains(o))
        });
        self.file = new;
        self.apply_effective(self.effective()).await
    }

    /// Polls `members`, an organisation target's accounts as just listed: joined accounts
    /// start, accounts that left (or were suspended) stop and their series go.
    pub async fn discovered(
        &mut self,
        organization: &str,
        members: Vec<TargetConfig>,
    ) -> ReloadSummary {
        if !self
            .file
            .organizations
            .iter()
            .any(|o| o.name == organization)
        {
            return ReloadSummary::default();
        }
        self.discovered.insert(organization.to_owned(), members);
        self.apply_effective(self.effective()).await
    }

    fn effective(&self) -> Config {
        let mut config = self.file.clone();
        for org in &self.file.organizations {
            if let Some(members) = self.discovered.get(&org.name) {
                config.targets.extend(members.iter().cloned());
            }
        }
        config
    }

    async fn apply_effective(&mut self, new: Config) -> ReloadSummary {
        if new.otlp != self.config.otlp {
            tracing::warn!("the otlp settings changed: they take effect at the next restart");
        }
        let same_api = new.aws_api == self.config.aws_api;
        let metrics = self.hub.self_metrics().clone();
        // An unchanged target keeps running. Every other old target gives up its (account,
        // region) before the new ones claim theirs, so a renamed or moved target takes it over.
        let kept: BTreeMap<String, Arc<Target>> = new
            .targets
            .iter()
            .filter_map(|t| {
                let old = self.targets.get(&Target::key_of(t))?;
                (same_api && old.config == *t).then(|| (old.key(), old.clone()))
            })
            .collect();
        for key in self.targets.keys().filter(|k| !kept.contains_key(*k)) {
            self.registry.release(key);
        }
        let targets: Vec<Arc<Target>> = new
            .targets
            .iter()
            .map(|t| match kept.get(&Target::key_of(t)) {
                Some(old) => old.clone(),
                None => Arc::new(Target::new(
                    t.clone(),
                    new.aws_api.clone(),
                    new.shard,
                    self.static_credentials.clone(),
                    metrics.clone(),
                    self.registry.clone(),
                )),
            })
            .collect();
        let mut summary = ReloadSummary::default();
        let mut old = std::mem::take(&mut self.running);
        let built = services::build(&new.sources, &targets, unix_now());
        let polled: BTreeSet<(String, String, String)> = built
            .iter()
            .filter(|s| s.target().holds_claim())
            .map(|s| {
                let (account, region) = s.target().labels();
                (s.name().to_owned(), account, region)
            })
            .collect();
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
                        self.retire(&key, r, &polled).await;
                    }
                    self.spawn(source);
                    summary.started += 1;
                }
            }
        }
        for (key, r) in old {
            self.retire(&key, r, &polled).await;
            summary.stopped += 1;
        }
        // The API call series of an account and region no target polls any more go too.
        for gone in self.targets.values() {
            let (account_id, region) = gone.labels();
            let still_polled = targets
                .iter()
                .any(|t| t.holds_claim() && t.labels() == (account_id.clone(), region.clone()));
            if gone.holds_claim() && !still_polled {
                metrics.accounts().forget_calls((&account_id, &region));
            }
        }
        self.targets = targets.into_iter().map(|t| (t.key(), t)).collect();
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
