//! Builds one Prometheus metric family from its [`MetricDef`] and plain values.

use prometheus::proto::{
    Bucket, Counter, Gauge, Histogram, LabelPair, Metric, MetricFamily, MetricType,
};

use crate::exposition::metric::{MetricDef, MetricKind};
use crate::histogram::HistogramData;

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
