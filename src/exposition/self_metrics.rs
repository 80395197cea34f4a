//! The exporter's own metrics: those of each account and region in [`AccountSeriesStore`],
//! rendered only when they change; the few others in a prometheus registry encoded with each
//! exposition.

use std::marker::PhantomData;
use std::time::Duration;

use prometheus::core::{Collector, MetricVec, MetricVecBuilder};
use prometheus::proto::MetricFamily;
use prometheus::{Counter, Gauge, GaugeVec, IntCounterVec, Opts, Registry};

use crate::exposition::account_series::{
    AccountSeriesStore, API_BUDGET_WAIT, API_DURATION, API_REQUESTS, LAST_POLL_SUCCESS,
    POLL_DURATION, POLL_INTERVAL, POLL_SUCCESS, SOURCE_RESTARTS,
};
use crate::exposition::metric::{def, labels, LabelSet, LabelValues, Metric, MetricDef};
use crate::status::StatusBoard;

labels!(pub struct Build { version, revision });
labels!(pub struct Kind { kind });

def!(
    BUILD_INFO,
    "aws_workflow_exporter_build_info",
    Info,
    Build,
    "Version and git revision of the running exporter; always 1."
);
def!(
    TRACKED,
    "aws_workflow_exporter_tracked_resources",
    Gauge,
    Kind,
    "Resources the exporter currently keeps state for, by kind, summed over targets."
);
def!(
    EXPOSITION_REBUILDS,
    "aws_workflow_exporter_exposition_rebuilds_total",
    Counter,
    (),
    "Times the exposition /metrics and the OTLP push serve was assembled from what the sources published."
);
def!(
    EXPOSITION_REBUILD_SECONDS,
    "aws_workflow_exporter_exposition_rebuild_seconds_total",
    Counter,
    (),
    "Time spent assembling the exposition (text and gzip), in seconds: the cost of publishing."
);

def!(
    SHARD_ORDINAL,
    "aws_workflow_exporter_shard_ordinal",
    Gauge,
    (),
    "The shard this replica polls and exports (--shard); 0 when the exporter is not sharded."
);
def!(
    TOTAL_SHARDS,
    "aws_workflow_exporter_total_shards",
    Gauge,
    (),
    "How many shards the resources are split across (--total-shards); 1 when the exporter is not sharded."
);
def!(
    CONFIG_RELOAD_SUCCESSFUL,
    "aws_workflow_exporter_config_last_reload_successful",
    Gauge,
    (),
    "1 if the last configuration reload (SIGHUP or POST /-/reload) succeeded, 0 if it was refused; 1 at startup."
);
def!(
    CONFIG_RELOAD_SUCCESS_TIMESTAMP,
    "aws_workflow_exporter_config_last_reload_success_timestamp_seconds",
    Gauge,
    (),
    "Unix time of the last successful configuration load: startup or a reload."
);

pub const DEFS: &[&MetricDef] = &[
    &BUILD_INFO.def,
    &POLL_SUCCESS.def,
    &POLL_DURATION.def,
    &LAST_POLL_SUCCESS.def,
    &POLL_INTERVAL.def,
    &SOURCE_RESTARTS.def,
    &API_REQUESTS.def,
    &API_DURATION.def,
    &API_BUDGET_WAIT.def,
    &TRACKED.def,
    &EXPOSITION_REBUILDS.def,
    &EXPOSITION_REBUILD_SECONDS.def,
    &SHARD_ORDINAL.def,
    &TOTAL_SHARDS.def,
    &CONFIG_RELOAD_SUCCESSFUL.def,
    &CONFIG_RELOAD_SUCCESS_TIMESTAMP.def,
];

/// A prometheus metric vector (`GaugeVec`, `IntCounterVec`, ...).
pub trait Vector: Collector + Clone + 'static {
    type Series;
    fn series(&self, values: &[&str]) -> Self::Series;
    fn remove(&self, values: &[&str]);
}

impl<T: MetricVecBuilder + 'static> Vector for MetricVec<T> {
    type Series = T::M;

    fn series(&self, values: &[&str]) -> T::M {
        self.with_label_values(values)
    }

    fn remove(&self, values: &[&str]) {
        let _ = self.remove_label_values(values);
    }
}

/// A prometheus metric vector whose label values come as the label set `L`: a wrong order or
/// count does not compile (prometheus would panic on a wrong count).
#[derive(Debug, Clone)]
pub struct LabeledVec<L, V> {
    vec: V,
    labels: PhantomData<fn() -> L>,
}

impl<L: LabelSet, V: Vector> LabeledVec<L, V> {
    /// `make` builds the vector from the declaration (whose label names are `L`'s).
    pub fn new(
        metric: &'static Metric<L>,
        make: impl FnOnce(&MetricDef) -> prometheus::Result<V>,
    ) -> Self {
        Self {
            vec: make(&metric.def).expect("valid metric"),
            labels: PhantomData,
        }
    }

    /// The series of `labels`, created at 0 if new.
    pub fn with(&self, labels: &L::Of<'_>) -> V::Series {
        labels.with_slice(|values| self.vec.series(values))
    }

    /// Removes the series of `labels`, if any.
    pub fn remove(&self, labels: &L::Of<'_>) {
        labels.with_slice(|values| self.vec.remove(values));
    }

    /// The vector, to register.
    pub fn collector(&self) -> Box<dyn Collector> {
        Box::new(self.vec.clone())
    }

    pub fn collect(&self) -> Vec<MetricFamily> {
        self.vec.collect()
    }
}

pub fn opts(def: &MetricDef) -> Opts {
    Opts::new(def.name, def.help)
}

pub fn gauge(def: &MetricDef) -> prometheus::Result<GaugeVec> {
    GaugeVec::new(opts(def), def.labels)
}

pub type Gauges<L> = LabeledVec<L, GaugeVec>;
pub type IntCounters<L> = LabeledVec<L, IntCounterVec>;

/// Live self-metrics, updated by the AWS layer and the scheduler.
#[derive(Debug)]
pub struct SelfMetrics {
    registry: Registry,
    /// Polls, restarts and AWS calls, by account and region.
    accounts: AccountSeriesStore,
    tracked: Gauges<Kind<'static>>,
    rebuilds: Counter,
    rebuild_seconds: Counter,
    shard_ordinal: Gauge,
    total_shards: Gauge,
    reload_successful: Gauge,
    reload_success_timestamp: Gauge,
    /// What /status shows, recorded next to the self-metrics.
    status: StatusBoard,
}

impl SelfMetrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let build_info = Gauges::new(&BUILD_INFO, gauge);
        build_info
            .with(&Build {
                version: env!("CARGO_PKG_VERSION"),
                revision: option_env!("GIT_REVISION").unwrap_or("unknown"),
            })
            .set(1.0);
        let tracked = Gauges::new(&TRACKED, gauge);
        let counter = |m: &Metric<()>| Counter::with_opts(opts(&m.def)).expect("valid metric");
        let single = |m: &Metric<()>| Gauge::with_opts(opts(&m.def)).expect("valid metric");
        let rebuilds = counter(&EXPOSITION_REBUILDS);
        let rebuild_seconds = counter(&EXPOSITION_REBUILD_SECONDS);
        let shard_ordinal = single(&SHARD_ORDINAL);
        let total_shards = single(&TOTAL_SHARDS);
        total_shards.set(1.0);
        let reload_successful = single(&CONFIG_RELOAD_SUCCESSFUL);
        let reload_success_timestamp = single(&CONFIG_RELOAD_SUCCESS_TIMESTAMP);
        for c in [
            build_info.collector(),
            tracked.collector(),
            Box::new(rebuilds.clone()),
            Box::new(rebuild_seconds.clone()),
            Box::new(shard_ordinal.clone()),
            Box::new(total_shards.clone()),
            Box::new(reload_successful.clone()),
            Box::new(reload_success_timestamp.clone()),
        ] {
            registry.register(c).expect("unique metric");
        }
        #[cfg(target_os = "linux")]
        registry
            .register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))
            .expect("process collector");
        Self {
            registry,
            accounts: AccountSeriesStore::default(),
            tracked,
            rebuilds,
            rebuild_seconds,
            shard_ordinal,
            total_shards,
            reload_successful,
            reload_success_timestamp,
            status: StatusBoard::new(crate::clock::unix_now()),
        }
    }

    /// What /status shows.
    pub fn status(&self) -> &StatusBoard {
        &self.status
    }

    /// Records the outcome of a configuration load; `at` is Unix seconds.
    pub fn record_reload(&self, success: bool, at: f64) {
        self.status.record_reload(success, at);
        self.reload_successful.set(if success { 1.0 } else { 0.0 });
        if success {
            self.reload_success_timestamp.set(at);
        }
    }

    pub fn set_shard(&self, ordinal: u32, total: u32) {
        self.status.set_shard(ordinal, total);
        self.shard_ordinal.set(f64::from(ordinal));
        self.total_shards.set(f64::from(total));
    }

    /// Polls, restarts and AWS calls, by account and region.
    pub fn accounts(&self) -> &AccountSeriesStore {
        &self.accounts
    }

    pub fn set_tracked(&self, kind: &str, count: usize) {
        self.tracked.with(&Kind { kind }).set(count as f64);
    }

    /// Counts one assembly of the exposition and the time it took.
    pub fn record_rebuild(&self, took: Duration) {
        self.rebuilds.inc();
        self.rebuild_seconds.inc_by(took.as_secs_f64());
    }

    /// Adds metrics owned by another part of the exporter (the OTLP push) to this registry.
    pub fn register(&self, c: Box<dyn prometheus::core::Collector>) -> prometheus::Result<()> {
        self.registry.register(c)
    }

    pub fn gather(&self) -> Vec<MetricFamily> {
        self.registry.gather()
    }
}

impl Default for SelfMetrics {
    fn default() -> Self {
        Self::new()
    }
}
