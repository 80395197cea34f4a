//! Metric families built from source state, the exporter's own metrics, and the cached exposition.
//!
//! Every metric the binary can emit is declared once as a [`MetricDef`]; families are built
//! from those declarations and docs/metrics.md is generated from the same list.

/// Declares a [`MetricDef`] constant: `def!(ID, "name", Kind, LABELS, "help");`.
macro_rules! def {
    ($id:ident, $name:literal, $kind:ident, $labels:expr, $help:literal) => {
        pub const $id: $crate::metrics::MetricDef = $crate::metrics::MetricDef {
            name: $name,
            kind: $crate::metrics::MetricKind::$kind,
            help: $help,
            labels: $labels,
        };
    };
}

pub mod appflow;
mod exposition;
mod self_metrics;
pub mod sfn;
pub mod transfer;

use prometheus::proto::{
    Bucket, Counter, Gauge, Histogram, LabelPair, Metric, MetricFamily, MetricType,
};

pub use exposition::{Exposition, MetricsHub, Snapshot};
pub use self_metrics::{SelfMetrics, POLL_SUCCESS};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Gauge,
    Counter,
    Histogram,
    /// A gauge with one series per possible state, 1 for the current one.
    StateSet,
    /// A gauge of constant 1 carrying metadata in labels.
    Info,
}

impl MetricKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Gauge => "gauge",
            Self::Counter => "counter",
            Self::Histogram => "histogram",
            Self::StateSet => "gauge (state set)",
            Self::Info => "gauge (info)",
        }
    }
}

/// The declaration of one metric: its name, type, help text and label names.
#[derive(Debug)]
pub struct MetricDef {
    pub name: &'static str,
    pub kind: MetricKind,
    pub help: &'static str,
    pub labels: &'static [&'static str],
}

/// Every metric the exporter declares, by the part of the exporter that emits it.
pub fn catalog() -> Vec<(&'static str, &'static [&'static MetricDef])> {
    vec![
        ("Step Functions Map Runs (source `sfn_map_runs`)", sfn::DEFS),
        (
            "Transfer Family workflows (source `transfer_workflows`)",
            transfer::DEFS,
        ),
        ("AppFlow flows (source `appflow_flows`)", appflow::DEFS),
        ("The exporter itself", self_metrics::DEFS),
        (
            "OTLP push (only when an OTLP endpoint is configured)",
            crate::otlp::push::DEFS,
        ),
    ]
}

/// Families whose names are not declared here but come from the client library.
pub const LIBRARY_PREFIXES: &[&str] = &["process_"];

/// Builds one metric family from its declaration.
pub struct FamilyBuilder {
    def: &'static MetricDef,
    family: MetricFamily,
}

impl FamilyBuilder {
    pub fn new(def: &'static MetricDef) -> Self {
        let mut family = MetricFamily::default();
        family.set_name(def.name.to_owned());
        family.set_help(def.help.to_owned());
        family.set_field_type(match def.kind {
            MetricKind::Counter => MetricType::COUNTER,
            MetricKind::Histogram => MetricType::HISTOGRAM,
            _ => MetricType::GAUGE,
        });
        Self { def, family }
    }

    fn metric(&self, labels: &[&str]) -> Metric {
        debug_assert_eq!(
            labels.len(),
            self.def.labels.len(),
            "label values for {}",
            self.def.name
        );
        let pairs = self
            .def
            .labels
            .iter()
            .zip(labels)
            .map(|(name, value)| {
                let mut p = LabelPair::default();
                p.set_name((*name).to_owned());
                p.set_value((*value).to_owned());
                p
            })
            .collect();
        let mut m = Metric::default();
        m.set_label(pairs);
        m
    }

    /// Adds a sample; a counter or a gauge according to the declaration.
    pub fn add(&mut self, labels: &[&str], value: f64) -> &mut Self {
        let mut m = self.metric(labels);
        if self.def.kind == MetricKind::Counter {
            let mut c = Counter::default();
            c.set_value(value);
            m.set_counter(c);
        } else {
            let mut g = Gauge::default();
            g.set_value(value);
            m.set_gauge(g);
        }
        self.family.mut_metric().push(m);
        self
    }

    /// Adds one series per state, 1 for `current` (the last label is the state).
    pub fn add_state_set(&mut self, labels: &[&str], states: &[&str], current: &str) -> &mut Self {
        for state in states {
            let mut all = labels.to_vec();
            all.push(state);
            self.add(&all, if *state == current { 1.0 } else { 0.0 });
        }
        self
    }

    pub fn add_histogram(&mut self, labels: &[&str], h: &HistogramData) -> &mut Self {
        let mut m = self.metric(labels);
        let mut hist = Histogram::default();
        hist.set_sample_count(h.count);
        hist.set_sample_sum(h.sum);
        let mut cumulative = 0;
        let buckets = h
            .bounds
            .iter()
            .zip(&h.counts)
            .map(|(bound, n)| {
                cumulative += n;
                let mut b = Bucket::default();
                b.set_upper_bound(*bound);
                b.set_cumulative_count(cumulative);
                b
            })
            .collect();
        hist.set_bucket(buckets);
        m.set_histogram(hist);
        self.family.mut_metric().push(m);
        self
    }

    pub fn finish(self, out: &mut Vec<MetricFamily>) {
        if !self.family.get_metric().is_empty() {
            out.push(self.family);
        }
    }
}

/// A histogram kept as plain numbers by the state store.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramData {
    pub bounds: &'static [f64],
    /// Observations per bucket (not cumulative); one more than `bounds` is not needed as +Inf is `count`.
    pub counts: Vec<u64>,
    pub count: u64,
    pub sum: f64,
}

impl HistogramData {
    pub fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            counts: vec![0; bounds.len()],
            count: 0,
            sum: 0.0,
        }
    }

    pub fn observe(&mut self, value: f64) {
        if let Some(i) = self.bounds.iter().position(|b| value <= *b) {
            self.counts[i] += 1;
        }
        self.count += 1;
        self.sum += value;
    }
}

/// Renders docs/metrics.md from the catalog.
pub fn render_docs() -> String {
    let mut out = String::from(
        "# Metrics\n\n<!-- Generated from the code by `UPDATE_DOCS=1 cargo test --test docs`; do not edit by hand. -->\n\n\
         Every metric aws-workflow-exporter can emit. Values are served from the last completed poll: a scrape never calls AWS. \
         Every AWS-derived series carries `account_id` and `region`. Histograms also expose `_bucket`, `_sum` and `_count` series.\n",
    );
    for (section, defs) in catalog() {
        out.push_str(&format!(
            "\n## {section}\n\n| metric | type | labels | meaning |\n| --- | --- | --- | --- |\n"
        ));
        for d in defs {
            let labels = d
                .labels
                .iter()
                .map(|l| format!("`{l}`"))
                .collect::<Vec<_>>()
                .join(", ");
            out.push_str(&format!(
                "| `{}` | {} | {} | {} |\n",
                d.name,
                d.kind.as_str(),
                labels,
                d.help
            ));
        }
    }
    out.push_str("\nAlso the client library's process metrics: `process_cpu_seconds_total`, `process_open_fds`, `process_max_fds`, `process_virtual_memory_bytes`, `process_resident_memory_bytes`, `process_start_time_seconds`, `process_threads`.\n");
    out
}
