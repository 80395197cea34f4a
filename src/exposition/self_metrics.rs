//! The exporter's own metrics, kept in a live registry and encoded with each exposition.

use std::sync::Mutex;
use std::time::Duration;

use prometheus::proto::MetricFamily;
use prometheus::{
    Counter, CounterVec, Gauge, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, Opts,
    Registry,
};

use crate::exposition::metric::{MetricDef, MetricKind};
use crate::status::StatusBoard;

pub const BUILD_INFO: MetricDef = MetricDef {
    name: "aws_workflow_exporter_build_info",
    kind: MetricKind::Info,
    help: "Version and git revision of the running exporter; always 1.",
    labels: &["version", "revision"],
};
pub const POLL_SUCCESS: MetricDef = MetricDef {
    name: "aws_workflow_exporter_poll_success",
    kind: MetricKind::Gauge,
    help: "1 if the last poll of the source completed without an AWS error, 0 otherwise. As of the last completed poll.",
    labels: &["source", "account_id", "region"],
};
pub const POLL_DURATION: MetricDef = MetricDef {
    name: "aws_workflow_exporter_poll_duration_seconds",
    kind: MetricKind::Gauge,
    help: "Wall time of the last poll of the source, in seconds.",
    labels: &["source", "account_id", "region"],
};
pub const LAST_POLL_SUCCESS: MetricDef = MetricDef {
    name: "aws_workflow_exporter_last_poll_success_timestamp_seconds",
    kind: MetricKind::Gauge,
    help: "Unix time at which the last successful poll of the source finished.",
    labels: &["source", "account_id", "region"],
};
pub const POLL_INTERVAL: MetricDef = MetricDef {
    name: "aws_workflow_exporter_poll_interval_seconds",
    kind: MetricKind::Gauge,
    help: "Configured interval between polls of the source, in seconds.",
    labels: &["source", "account_id", "region"],
};
pub const SOURCE_RESTARTS: MetricDef = MetricDef {
    name: "aws_workflow_exporter_source_restarts_total",
    kind: MetricKind::Counter,
    help: "Polls the exporter ended because they panicked or overran their deadline (reason panic or deadline); the source polls again after a backoff.",
    labels: &["source", "account_id", "region", "reason"],
};
pub const API_REQUESTS: MetricDef = MetricDef {
    name: "aws_workflow_exporter_api_requests_total",
    kind: MetricKind::Counter,
    help: "AWS API call attempts made by the exporter (retries included), by outcome. account_id is unknown for calls made before the target's account id is known. As of the last completed poll.",
    labels: &["service", "operation", "outcome", "account_id", "region"],
};
pub const API_DURATION: MetricDef = MetricDef {
    name: "aws_workflow_exporter_api_request_duration_seconds",
    kind: MetricKind::Histogram,
    help: "Duration of AWS API call attempts, in seconds. As of the last completed poll.",
    labels: &["service", "operation", "account_id", "region"],
};
pub const API_BUDGET_WAIT: MetricDef = MetricDef {
    name: "aws_workflow_exporter_api_budget_wait_seconds_total",
    kind: MetricKind::Counter,
    help: "Time the exporter waited for its own API budget (its share of the AWS token bucket of the account and region) before calling, in seconds.",
    labels: &["service", "operation", "account_id", "region"],
};
pub const TRACKED: MetricDef = MetricDef {
    name: "aws_workflow_exporter_tracked_resources",
    kind: MetricKind::Gauge,
    help: "Resources the exporter currently keeps state for, by kind, summed over targets.",
    labels: &["kind"],
};
pub const EXPOSITION_REBUILDS: MetricDef = MetricDef {
    name: "aws_workflow_exporter_exposition_rebuilds_total",
    kind: MetricKind::Counter,
    help: "Times the exposition /metrics and the OTLP push serve was assembled from what the sources published.",
    labels: &[],
};
pub const EXPOSITION_REBUILD_SECONDS: MetricDef = MetricDef {
    name: "aws_workflow_exporter_exposition_rebuild_seconds_total",
    kind: MetricKind::Counter,
    help:
        "Time spent assembling the exposition (text and gzip), in seconds: the cost of publishing.",
    labels: &[],
};

pub const SHARD_ORDINAL: MetricDef = MetricDef {
    name: "aws_workflow_exporter_shard_ordinal",
    kind: MetricKind::Gauge,
    help: "The shard this replica polls and exports (--shard); 0 when the exporter is not sharded.",
    labels: &[],
};
pub const TOTAL_SHARDS: MetricDef = MetricDef {
    name: "aws_workflow_exporter_total_shards",
    kind: MetricKind::Gauge,
    help: "How many shards the resources are split across (--total-shards); 1 when the exporter is not sharded.",
    labels: &[],
};
pub const CONFIG_RELOAD_SUCCESSFUL: MetricDef = MetricDef {
    name: "aws_workflow_exporter_config_last_reload_successful",
    kind: MetricKind::Gauge,
    help: "1 if the last configuration reload (SIGHUP or POST /-/reload) succeeded, 0 if it was refused; 1 at startup.",
    labels: &[],
};
pub const CONFIG_RELOAD_SUCCESS_TIMESTAMP: MetricDef = MetricDef {
    name: "aws_workflow_exporter_config_last_reload_success_timestamp_seconds",
    kind: MetricKind::Gauge,
    help: "Unix time of the last successful configuration load: startup or a reload.",
    labels: &[],
};

pub const DEFS: &[&MetricDef] = &[
    &BUILD_INFO,
    &POLL_SUCCESS,
    &POLL_DURATION,
    &LAST_POLL_SUCCESS,
    &POLL_INTERVAL,
    &SOURCE_RESTARTS,
    &API_REQUESTS,
    &API_DURATION,
    &API_BUDGET_WAIT,
    &TRACKED,
    &EXPOSITION_REBUILDS,
    &EXPOSITION_REBUILD_SECONDS,
    &SHARD_ORDINAL,
    &TOTAL_SHARDS,
    &CONFIG_RELOAD_SUCCESSFUL,
    &CONFIG_RELOAD_SUCCESS_TIMESTAMP,
];

/// Live self-metrics, updated by the AWS layer and the scheduler.
#[derive(Debug)]
pub struct SelfMetrics {
    registry: Registry,
    poll_success: GaugeVec,
    poll_duration: GaugeVec,
    last_poll_success: GaugeVec,
    poll_interval: GaugeVec,
    source_restarts: IntCounterVec,
    api_requests: IntCounterVec,
    api_duration: HistogramVec,
    api_budget_wait: CounterVec,
    tracked: GaugeVec,
    rebuilds: Counter,
    rebuild_seconds: Counter,
    shard_ordinal: Gauge,
    total_shards: Gauge,
    reload_successful: Gauge,
    reload_success_timestamp: Gauge,
    /// (service, operation, outcome) of every call counter a target starts at 0.
    declared: Mutex<Vec<(&'static str, &'static str, &'static str)>>,
    /// What /status shows, recorded next to the self-metrics.
    status: StatusBoard,
}

fn opts(def: &MetricDef) -> Opts {
    Opts::new(def.name, def.help)
}

impl SelfMetrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let build_info = GaugeVec::new(opts(&BUILD_INFO), BUILD_INFO.labels).expect("valid metric");
        build_info
            .with_label_values(&[
                env!("CARGO_PKG_VERSION"),
                option_env!("GIT_REVISION").unwrap_or("unknown"),
            ])
            .set(1.0);
        let poll_success =
            GaugeVec::new(opts(&POLL_SUCCESS), POLL_SUCCESS.labels).expect("valid metric");
        let poll_duration =
            GaugeVec::new(opts(&POLL_DURATION), POLL_DURATION.labels).expect("valid metric");
        let last_poll_success = GaugeVec::new(opts(&LAST_POLL_SUCCESS), LAST_POLL_SUCCESS.labels)
            .expect("valid metric");
        let poll_interval =
            GaugeVec::new(opts(&POLL_INTERVAL), POLL_INTERVAL.labels).expect("valid metric");
        let source_restarts = IntCounterVec::new(opts(&SOURCE_RESTARTS), SOURCE_RESTARTS.labels)
            .expect("valid metric");
        let api_requests =
            IntCounterVec::new(opts(&API_REQUESTS), API_REQUESTS.labels).expect("valid metric");
        let api_duration = HistogramVec::new(
            HistogramOpts::new(API_DURATION.name, API_DURATION.help)
                .buckets(vec![0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
            API_DURATION.labels,
        )
        .expect("valid metric");
        let api_budget_wait =
            CounterVec::new(opts(&API_BUDGET_WAIT), API_BUDGET_WAIT.labels).expect("valid metric");
        let tracked = GaugeVec::new(opts(&TRACKED), TRACKED.labels).expect("valid metric");
        let rebuilds = Counter::with_opts(opts(&EXPOSITION_REBUILDS)).expect("valid metric");
        let rebuild_seconds =
            Counter::with_opts(opts(&EXPOSITION_REBUILD_SECONDS)).expect("valid metric");
        let shard_ordinal = Gauge::with_opts(opts(&SHARD_ORDINAL)).expect("valid metric");
        let total_shards = Gauge::with_opts(opts(&TOTAL_SHARDS)).expect("valid metric");
        total_shards.set(1.0);
        let reload_successful =
            Gauge::with_opts(opts(&CONFIG_RELOAD_SUCCESSFUL)).expect("valid metric");
        let reload_success_timestamp =
            Gauge::with_opts(opts(&CONFIG_RELOAD_SUCCESS_TIMESTAMP)).expect("valid metric");
        for c in [
            Box::new(build_info) as Box<dyn prometheus::core::Collector>,
            Box::new(poll_success.clone()),
            Box::new(poll_duration.clone()),
            Box::new(last_poll_success.clone()),
            Box::new(poll_interval.clone()),
            Box::new(source_restarts.clone()),
            Box::new(api_requests.clone()),
            Box::new(api_duration.clone()),
            Box::new(api_budget_wait.clone()),
            Box::new(tracked.clone()),
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
            poll_success,
            poll_duration,
            last_poll_success,
            poll_interval,
            source_restarts,
            api_requests,
            api_duration,
            api_budget_wait,
            tracked,
            rebuilds,
            rebuild_seconds,
            shard_ordinal,
            total_shards,
            reload_successful,
            reload_success_timestamp,
            declared: Mutex::new(Vec::new()),
            status: StatusBoard::new(crate::status::unix_now()),
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

    /// Remembers a call counter that every target starts at 0 once its labels are known
    /// ([`Self::start_api_calls`]), so the first throttle shows up in increase().
    pub fn declare_api_call(
        &self,
        service: &'static str,
        operation: &'static str,
        outcome: &'static str,
    ) {
        self.declared
            .lock()
            .expect("declared calls lock")
            .push((service, operation, outcome));
    }

    /// Starts every declared call counter of a target at 0.
    pub fn start_api_calls(&self, account_id: &str, region: &str) {
        for (service, operation, outcome) in
            self.declared.lock().expect("declared calls lock").iter()
        {
            self.api_requests
                .with_label_values(&[service, operation, outcome, account_id, region]);
        }
    }

    pub fn record_api_call(
        &self,
        service: &str,
        operation: &str,
        outcome: &str,
        (account_id, region): (&str, &str),
        elapsed: Option<Duration>,
    ) {
        self.api_requests
            .with_label_values(&[service, operation, outcome, account_id, region])
            .inc();
        if let Some(d) = elapsed {
            self.api_duration
                .with_label_values(&[service, operation, account_id, region])
                .observe(d.as_secs_f64());
        }
    }

    pub fn record_budget_wait(
        &self,
        service: &str,
        operation: &str,
        (account_id, region): (&str, &str),
        waited: Duration,
    ) {
        self.api_budget_wait
            .with_label_values(&[service, operation, account_id, region])
            .inc_by(waited.as_secs_f64());
    }

    /// Counts a poll the supervisor ended (`reason`: panic or deadline).
    pub fn record_restart(&self, source: &str, account_id: &str, region: &str, reason: &str) {
        self.source_restarts
            .with_label_values(&[source, account_id, region, reason])
            .inc();
    }

    /// Records a finished poll. `finished_at` is Unix seconds.
    #[allow(clippy::too_many_arguments)]
    pub fn record_poll(
        &self,
        source: &str,
        account_id: &str,
        region: &str,
        success: bool,
        duration: Duration,
        interval: Duration,
        finished_at: f64,
    ) {
        let labels = [source, account_id, region];
        self.poll_interval
            .with_label_values(&labels)
            .set(interval.as_secs_f64());
        self.poll_success
            .with_label_values(&labels)
            .set(if success { 1.0 } else { 0.0 });
        self.poll_duration
            .with_label_values(&labels)
            .set(duration.as_secs_f64());
        if success {
            self.last_poll_success
                .with_label_values(&labels)
                .set(finished_at);
        }
    }

    /// Forgets a label set that no longer applies (a target whose account id became known).
    pub fn forget_poll_labels(&self, source: &str, account_id: &str, region: &str) {
        let labels = [source, account_id, region];
        let _ = self.poll_success.remove_label_values(&labels);
        let _ = self.poll_duration.remove_label_values(&labels);
        let _ = self.last_poll_success.remove_label_values(&labels);
        let _ = self.poll_interval.remove_label_values(&labels);
    }

    /// Forgets every API call series of an account and region no target polls any more.
    pub fn forget_api_calls(&self, account_id: &str, region: &str) {
        for (service, operation, outcome) in
            self.declared.lock().expect("declared calls lock").iter()
        {
            let _ = self
                .api_requests
                .remove_label_values(&[service, operation, outcome, account_id, region]);
            let _ = self
                .api_duration
                .remove_label_values(&[service, operation, account_id, region]);
            let _ = self
                .api_budget_wait
                .remove_label_values(&[service, operation, account_id, region]);
        }
    }

    /// Per account id: how many (source, region) last polls succeeded and how many failed.
    pub fn poll_outcomes(&self) -> std::collections::BTreeMap<String, (usize, usize)> {
        use prometheus::core::Collector;
        let mut out = std::collections::BTreeMap::<String, (usize, usize)>::new();
        for family in self.poll_success.collect() {
            for m in family.get_metric() {
                let Some(account) = m.get_label().iter().find(|l| l.name() == "account_id") else {
                    continue;
                };
                let entry = out.entry(account.value().to_owned()).or_default();
                if m.get_gauge().get_value() == 1.0 {
                    entry.0 += 1;
                } else {
                    entry.1 += 1;
                }
            }
        }
        out
    }

    pub fn set_tracked(&self, kind: &str, count: usize) {
        self.tracked.with_label_values(&[kind]).set(count as f64);
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
