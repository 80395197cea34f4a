//! Converts the metric families the hub publishes into one OTLP export request.
//!
//! Gauges (state sets and info metrics included) become Gauges, counters monotonic cumulative
//! Sums named without `_total`, histograms cumulative Histograms with the same explicit bounds.
//! Labels become string attributes. Start timestamps of cumulative points are remembered per
//! series so they stay the same across pushes and move only when the series restarts.

use std::collections::{BTreeMap, HashMap};

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    metric, number_data_point, AggregationTemporality, Gauge, Histogram, HistogramDataPoint,
    Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prometheus::proto::{LabelPair, MetricFamily, MetricType};

/// Resource attributes set whatever the configuration says (the user may override each).
pub fn default_resource(instance_id: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("service.name".into(), env!("CARGO_PKG_NAME").into()),
        ("service.version".into(), env!("CARGO_PKG_VERSION").into()),
        ("service.instance.id".into(), instance_id.into()),
        ("cloud.provider".into(), "aws".into()),
    ])
}

/// `cloud.account.id` and `cloud.region` when every polled target is the same account and region,
/// read from the labels of `aws_workflow_exporter_poll_success` (known once a poll has connected).
pub fn cloud_attributes(families: &[MetricFamily]) -> BTreeMap<String, String> {
    let mut pairs = std::collections::BTreeSet::new();
    for f in families
        .iter()
        .filter(|f| f.name() == crate::exposition::self_metrics::POLL_SUCCESS.name)
    {
        for m in f.get_metric() {
            pairs.insert((
                label(m.get_label(), "account_id"),
                label(m.get_label(), "region"),
            ));
        }
    }
    let mut out = BTreeMap::new();
    if let [(account, region)] = pairs.into_iter().collect::<Vec<_>>().as_slice() {
        if !account.is_empty() && account != "unknown" {
            out.insert("cloud.account.id".into(), account.clone());
        }
        if !region.is_empty() && region != "unknown" {
            out.insert("cloud.region".into(), region.clone());
        }
    }
    out
}

fn label(labels: &[LabelPair], name: &str) -> String {
    labels
        .iter()
        .find(|l| l.name() == name)
        .map(|l| l.value().to_owned())
        .unwrap_or_default()
}

/// What is remembered of one cumulative series between pushes.
#[derive(Debug, Clone, Copy)]
struct Seen {
    start: u64,
    /// The counter value or the histogram count at the last push.
    last: f64,
}

/// Start timestamps per cumulative series. Holds only the series of the last push.
#[derive(Debug)]
pub struct StartTimes {
    /// The time series that exist at the first push started: the process start.
    process_start: u64,
    /// The previous push, or `None` before the first.
    previous_push: Option<u64>,
    seen: HashMap<String, Seen>,
}

impl StartTimes {
    pub fn new(process_start_unix_nano: u64) -> Self {
        Self {
            process_start: process_start_unix_nano,
            previous_push: None,
            seen: HashMap::new(),
        }
    }

    /// The start of `key` at this push: kept while the value never decreases, otherwise (or for a
    /// series absent from the previous push) the previous push, after which it (re)started.
    fn start(&mut self, next: &mut HashMap<String, Seen>, key: String, value: f64) -> u64 {
        let fresh = self.previous_push.unwrap_or(self.process_start);
        let start = match self.seen.get(&key) {
            Some(seen) if value >= seen.last => seen.start,
            _ => fresh,
        };
        next.insert(key, Seen { start, last: value });
        start
    }
}

fn series_key(name: &str, labels: &[LabelPair]) -> String {
    let mut key = name.to_owned();
    for l in labels {
        key.push('\u{0}');
        key.push_str(l.name());
        key.push('=');
        key.push_str(l.value());
    }
    key
}

fn string_kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_owned())),
        }),
        ..Default::default()
    }
}

fn attributes(labels: &[LabelPair]) -> Vec<KeyValue> {
    labels
        .iter()
        .map(|l| string_kv(l.name(), l.value()))
        .collect()
}

/// The OTLP name of a family: counters lose `_total`, as OTLP Sums carry none.
pub fn otlp_name(family: &MetricFamily) -> &str {
    match family.get_field_type() {
        MetricType::COUNTER => family
            .name()
            .strip_suffix("_total")
            .unwrap_or(family.name()),
        _ => family.name(),
    }
}

const CUMULATIVE: i32 = AggregationTemporality::Cumulative as i32;

/// Builds the request for one push at `now` (Unix nanoseconds).
pub fn encode(
    families: &[MetricFamily],
    resource: &BTreeMap<String, String>,
    starts: &mut StartTimes,
    now: u64,
) -> ExportMetricsServiceRequest {
    let mut next = HashMap::with_capacity(starts.seen.len());
    let metrics = families
        .iter()
        .filter_map(|f| convert(f, starts, &mut next, now))
        .collect();
    starts.seen = next;
    starts.previous_push = Some(now);
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: resource.iter().map(|(k, v)| string_kv(k, v)).collect(),
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(InstrumentationScope {
                    name: env!("CARGO_PKG_NAME").into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                    ..Default::default()
                }),
                metrics,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn convert(
    family: &MetricFamily,
    starts: &mut StartTimes,
    next: &mut HashMap<String, Seen>,
    now: u64,
) -> Option<Metric> {
    let name = otlp_name(family);
    let data = match family.get_field_type() {
        MetricType::COUNTER => metric::Data::Sum(Sum {
            data_points: family
                .get_metric()
                .iter()
                .map(|m| {
                    let value = m.get_counter().get_value();
                    let key = series_key(name, m.get_label());
                    NumberDataPoint {
                        attributes: attributes(m.get_label()),
                        start_time_unix_nano: starts.start(next, key, value),
                        time_unix_nano: now,
                        value: Some(number_data_point::Value::AsDouble(value)),
                        ..Default::default()
                    }
                })
                .collect(),
            aggregation_temporality: CUMULATIVE,
            is_monotonic: true,
        }),
        MetricType::GAUGE => metric::Data::Gauge(Gauge {
            data_points: family
                .get_metric()
                .iter()
                .map(|m| NumberDataPoint {
                    attributes: attributes(m.get_label()),
                    time_unix_nano: now,
                    value: Some(number_data_point::Value::AsDouble(
                        m.get_gauge().get_value(),
                    )),
                    ..Default::default()
                })
                .collect(),
        }),
        MetricType::HISTOGRAM => metric::Data::Histogram(Histogram {
            data_points: family
                .get_metric()
                .iter()
                .map(|m| {
                    let h = m.get_histogram();
                    let key = series_key(name, m.get_label());
                    let (explicit_bounds, bucket_counts) = buckets(h);
                    HistogramDataPoint {
                        attributes: attributes(m.get_label()),
                        start_time_unix_nano: starts.start(next, key, h.get_sample_count() as f64),
                        time_unix_nano: now,
                        count: h.get_sample_count(),
                        sum: Some(h.get_sample_sum()),
                        bucket_counts,
                        explicit_bounds,
                        ..Default::default()
                    }
                })
                .collect(),
            aggregation_temporality: CUMULATIVE,
        }),
        // Nothing in the exporter emits summaries or untyped metrics.
        MetricType::SUMMARY | MetricType::UNTYPED => return None,
    };
    Some(Metric {
        name: name.to_owned(),
        description: family.help().to_owned(),
        data: Some(data),
        ..Default::default()
    })
}

/// Prometheus' cumulative buckets as OTLP bounds (without +Inf) and per-bucket counts
/// (one more than the bounds: the last is the overflow bucket).
fn buckets(h: &prometheus::proto::Histogram) -> (Vec<f64>, Vec<u64>) {
    let mut bounds = Vec::new();
    let mut counts = Vec::new();
    let mut below = 0u64;
    for b in h.get_bucket() {
        if b.upper_bound().is_infinite() {
            continue;
        }
        bounds.push(b.upper_bound());
        counts.push(b.cumulative_count().saturating_sub(below));
        below = below.max(b.cumulative_count());
    }
    counts.push(h.get_sample_count().saturating_sub(below));
    (bounds, counts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exposition::family::FamilyBuilder;
    use crate::exposition::metric::{MetricDef, MetricKind};
    use crate::histogram::HistogramData;

    const C: MetricDef = MetricDef {
        name: "x_runs_total",
        kind: MetricKind::Counter,
        help: "h",
        labels: &["id"],
    };
    const H: MetricDef = MetricDef {
        name: "x_seconds",
        kind: MetricKind::Histogram,
        help: "h",
        labels: &[],
    };

    fn counter(values: &[(&str, f64)]) -> Vec<MetricFamily> {
        let mut b = FamilyBuilder::new(&C);
        for (id, v) in values {
            b.add(&[id], *v);
        }
        let mut out = Vec::new();
        b.finish(&mut out);
        out
    }

    fn starts_of(req: &ExportMetricsServiceRequest) -> Vec<u64> {
        let m = &req.resource_metrics[0].scope_metrics[0].metrics[0];
        assert_eq!(m.name, "x_runs");
        match &m.data {
            Some(metric::Data::Sum(s)) => s
                .data_points
                .iter()
                .map(|p| p.start_time_unix_nano)
                .collect(),
            other => panic!("not a sum: {other:?}"),
        }
    }

    #[test]
    fn start_times_are_stable_and_move_only_on_restart() {
        let res = BTreeMap::new();
        let mut st = StartTimes::new(100);
        let first = encode(&counter(&[("a", 1.0), ("b", 5.0)]), &res, &mut st, 1000);
        assert_eq!(starts_of(&first), vec![100, 100]);
        // Growing or equal: unchanged. Decreasing: restarted after the previous push.
        let second = encode(&counter(&[("a", 3.0), ("b", 2.0)]), &res, &mut st, 2000);
        assert_eq!(starts_of(&second), vec![100, 1000]);
        // `a` disappears, then comes back: a new series that started after it was last absent.
        encode(&counter(&[("b", 2.0)]), &res, &mut st, 3000);
        let fourth = encode(&counter(&[("a", 4.0), ("b", 2.0)]), &res, &mut st, 4000);
        assert_eq!(starts_of(&fourth), vec![3000, 1000]);
    }

    #[test]
    fn histogram_buckets_become_per_bucket_counts() {
        static BOUNDS: [f64; 3] = [1.0, 5.0, 10.0];
        let mut data = HistogramData::new(&BOUNDS);
        for v in [0.5, 2.0, 3.0, 7.0, 99.0] {
            data.observe(v);
        }
        let mut b = FamilyBuilder::new(&H);
        b.add_histogram(&[], &data);
        let mut fams = Vec::new();
        b.finish(&mut fams);
        let req = encode(&fams, &BTreeMap::new(), &mut StartTimes::new(1), 2);
        let m = &req.resource_metrics[0].scope_metrics[0].metrics[0];
        let Some(metric::Data::Histogram(h)) = &m.data else {
            panic!("not a histogram")
        };
        assert_eq!(h.aggregation_temporality, CUMULATIVE);
        let p = &h.data_points[0];
        assert_eq!(p.explicit_bounds, vec![1.0, 5.0, 10.0]);
        assert_eq!(p.bucket_counts, vec![1, 2, 1, 1]);
        assert_eq!((p.count, p.sum), (5, Some(111.5)));
    }
}
