//! Converts the exposition the hub publishes (the text /metrics serves, read back one family at a
//! time) into one OTLP export request.
//!
//! Gauges (state sets and info metrics included) become Gauges, counters monotonic cumulative
//! Sums named without `_total`, histograms cumulative Histograms with the same explicit bounds.
//! Labels become string attributes. Start timestamps of cumulative points are remembered per
//! series so they stay the same across pushes and move only when the series restarts.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    metric, number_data_point, AggregationTemporality, Gauge, Histogram, HistogramDataPoint,
    Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
};
use opentelemetry_proto::tonic::resource::v1::Resource;

use crate::exposition::text::{self, TextError, TextFamily};

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
pub fn cloud_attributes(chunks: &[Bytes]) -> BTreeMap<String, String> {
    let prefix = format!(
        "{}{{",
        crate::exposition::account_series::POLL_SUCCESS.def.name
    );
    let mut pairs = std::collections::BTreeSet::new();
    for line in chunks
        .iter()
        .flat_map(|c| c.split(|b| *b == b'\n'))
        .filter_map(|l| std::str::from_utf8(l).ok())
        .filter(|l| l.starts_with(&prefix))
    {
        if let Ok(sample) = text::parse_sample(line, 0) {
            let label = |name| sample.label(name).unwrap_or_default().to_owned();
            pairs.insert((label("account_id"), label("region")));
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

fn series_key(name: &str, labels: &[(&str, Cow<'_, str>)]) -> String {
    let mut key = name.to_owned();
    for (k, v) in labels {
        key.push('\u{0}');
        key.push_str(k);
        key.push('=');
        key.push_str(v);
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

fn attributes(labels: &[(&str, Cow<'_, str>)]) -> Vec<KeyValue> {
    labels.iter().map(|(k, v)| string_kv(k, v)).collect()
}

/// The OTLP name of a family: counters lose `_total`, as OTLP Sums carry none.
pub fn otlp_name<'a>(family: &TextFamily<'a>) -> &'a str {
    match family.kind {
        "counter" => family.name.strip_suffix("_total").unwrap_or(family.name),
        _ => family.name,
    }
}

const CUMULATIVE: i32 = AggregationTemporality::Cumulative as i32;

/// Builds the requests of one push at `now` (Unix nanoseconds) from the exposition text, read
/// one family at a time, and hands each to `send` as soon as it holds `max_points` data points
/// (a family with more is split across requests): a push of an exposition of 50,000 series
/// never holds more than one request's messages. Always at least one request, so an empty
/// exposition still says the exporter is alive.
pub fn encode(
    chunks: &[Bytes],
    resource: &BTreeMap<String, String>,
    starts: &mut StartTimes,
    now: u64,
    max_points: usize,
    send: impl FnMut(ExportMetricsServiceRequest),
) -> Result<(), TextError> {
    let mut batch = Batch {
        resource,
        max_points: max_points.max(1),
        metrics: Vec::new(),
        points: 0,
        sent: false,
        send,
    };
    let mut next = HashMap::with_capacity(starts.seen.len());
    for family in text::families(chunks.iter().map(|c| &c[..])) {
        convert(&family?, starts, &mut next, now, &mut batch);
    }
    batch.finish();
    starts.seen = next;
    starts.previous_push = Some(now);
    Ok(())
}

/// The request being filled: data points are added one at a time, and the request is sent when
/// it holds `max_points`.
struct Batch<'r, F: FnMut(ExportMetricsServiceRequest)> {
    resource: &'r BTreeMap<String, String>,
    max_points: usize,
    metrics: Vec<Metric>,
    points: usize,
    sent: bool,
    send: F,
}

/// One data point of any kind.
enum Point {
    Sum(NumberDataPoint),
    Gauge(NumberDataPoint),
    Histogram(HistogramDataPoint),
}

impl<F: FnMut(ExportMetricsServiceRequest)> Batch<'_, F> {
    /// Adds a point of the metric `name`, continuing the request's last metric if it is the same.
    fn add(&mut self, name: &str, description: &str, point: Point) {
        let same = self.metrics.last().is_some_and(|m| m.name == name);
        if !same {
            let data = match &point {
                Point::Sum(_) => metric::Data::Sum(Sum {
                    aggregation_temporality: CUMULATIVE,
                    is_monotonic: true,
                    ..Default::default()
                }),
                Point::Gauge(_) => metric::Data::Gauge(Gauge::default()),
                Point::Histogram(_) => metric::Data::Histogram(Histogram {
                    aggregation_temporality: CUMULATIVE,
                    ..Default::default()
                }),
            };
            self.metrics.push(Metric {
                name: name.to_owned(),
                description: description.to_owned(),
                data: Some(data),
                ..Default::default()
            });
        }
        if let Some(data) = self.metrics.last_mut().and_then(|m| m.data.as_mut()) {
            match (data, point) {
                (metric::Data::Sum(d), Point::Sum(p)) => d.data_points.push(p),
                (metric::Data::Gauge(d), Point::Gauge(p)) => d.data_points.push(p),
                (metric::Data::Histogram(d), Point::Histogram(p)) => d.data_points.push(p),
                // A family is one kind: its points never change kind under one name.
                _ => return,
            }
        }
        self.points += 1;
        if self.points >= self.max_points {
            self.flush();
        }
    }

    fn flush(&mut self) {
        let metrics = std::mem::take(&mut self.metrics);
        (self.send)(request(self.resource, metrics));
        self.points = 0;
        self.sent = true;
    }

    fn finish(mut self) {
        if !self.metrics.is_empty() || !self.sent {
            self.flush();
        }
    }
}

fn request(
    resource: &BTreeMap<String, String>,
    metrics: Vec<Metric>,
) -> ExportMetricsServiceRequest {
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

/// Adds the points of one family to the batch.
fn convert<F: FnMut(ExportMetricsServiceRequest)>(
    family: &TextFamily<'_>,
    starts: &mut StartTimes,
    next: &mut HashMap<String, Seen>,
    now: u64,
    batch: &mut Batch<'_, F>,
) {
    let name = otlp_name(family);
    let number = |s: &text::Sample<'_>, start| NumberDataPoint {
        attributes: attributes(&s.labels),
        start_time_unix_nano: start,
        time_unix_nano: now,
        value: Some(number_data_point::Value::AsDouble(s.value)),
        ..Default::default()
    };
    match family.kind {
        "counter" => {
            for s in &family.samples {
                let start = starts.start(next, series_key(name, &s.labels), s.value);
                batch.add(name, &family.help, Point::Sum(number(s, start)));
            }
        }
        "gauge" => {
            for s in &family.samples {
                batch.add(name, &family.help, Point::Gauge(number(s, 0)));
            }
        }
        "histogram" => histogram_points(family, starts, next, now, batch),
        // Nothing in the exporter emits summaries or untyped metrics.
        _ => {}
    }
}

/// One point per series: the text gives each series as its cumulative `_bucket` lines (the `le`
/// label), then `_sum` and `_count`. OTLP wants the bounds without +Inf and per-bucket counts
/// (one more than the bounds: the last is the overflow bucket).
fn histogram_points<F: FnMut(ExportMetricsServiceRequest)>(
    family: &TextFamily<'_>,
    starts: &mut StartTimes,
    next: &mut HashMap<String, Seen>,
    now: u64,
    batch: &mut Batch<'_, F>,
) {
    let mut point = HistogramDataPoint::default();
    let mut below = 0u64;
    for s in &family.samples {
        let suffix = s.name.strip_prefix(family.name).unwrap_or_default();
        match suffix {
            "_bucket" => {
                let bound = s.label("le").and_then(|le| le.parse::<f64>().ok());
                let cumulative = s.value as u64;
                if let Some(bound) = bound.filter(|b| b.is_finite()) {
                    point.explicit_bounds.push(bound);
                    point.bucket_counts.push(cumulative.saturating_sub(below));
                    below = below.max(cumulative);
                }
            }
            "_sum" => point.sum = Some(s.value),
            "_count" => {
                let labels = &s.labels;
                point.count = s.value as u64;
                point.bucket_counts.push(point.count.saturating_sub(below));
                point.attributes = attributes(labels);
                point.start_time_unix_nano =
                    starts.start(next, series_key(family.name, labels), s.value);
                point.time_unix_nano = now;
                let done = std::mem::take(&mut point);
                batch.add(family.name, &family.help, Point::Histogram(done));
                below = 0;
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exposition::family::FamilyBuilder;
    use crate::exposition::metric::{def, labels, LabelSet};
    use crate::histogram::HistogramData;

    labels!(pub struct Id { id });
    def!(C, "x_runs_total", Counter, Id, "h");
    def!(H, "x_seconds", Histogram, (), "h");

    /// The family as the hub lays it out: its header, then its lines.
    fn chunks<L: LabelSet>(b: FamilyBuilder<L>) -> Vec<Bytes> {
        let mut families = Vec::new();
        b.finish(&mut families);
        families
            .into_iter()
            .flat_map(|f| std::iter::once(Bytes::from(text::header(f.def))).chain(f.blocks))
            .collect()
    }

    fn point_count(m: &Metric) -> usize {
        match &m.data {
            Some(metric::Data::Sum(d)) => d.data_points.len(),
            Some(metric::Data::Gauge(d)) => d.data_points.len(),
            Some(metric::Data::Histogram(d)) => d.data_points.len(),
            _ => 0,
        }
    }

    /// The push as one request (no limit reached).
    fn encode_one(
        chunks: &[Bytes],
        resource: &BTreeMap<String, String>,
        starts: &mut StartTimes,
        now: u64,
    ) -> ExportMetricsServiceRequest {
        let mut requests = Vec::new();
        encode(chunks, resource, starts, now, usize::MAX, |r| {
            requests.push(r)
        })
        .expect("encodes");
        assert_eq!(requests.len(), 1);
        requests.remove(0)
    }

    fn counter(values: &[(&str, f64)]) -> Vec<Bytes> {
        let mut b = FamilyBuilder::new(&C);
        for (id, v) in values {
            b.add(&Id { id }, *v);
        }
        chunks(b)
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
        let first = encode_one(&counter(&[("a", 1.0), ("b", 5.0)]), &res, &mut st, 1000);
        assert_eq!(starts_of(&first), vec![100, 100]);
        // Growing or equal: unchanged. Decreasing: restarted after the previous push.
        let second = encode_one(&counter(&[("a", 3.0), ("b", 2.0)]), &res, &mut st, 2000);
        assert_eq!(starts_of(&second), vec![100, 1000]);
        // `a` disappears, then comes back: a new series that started after it was last absent.
        encode_one(&counter(&[("b", 2.0)]), &res, &mut st, 3000);
        let fourth = encode_one(&counter(&[("a", 4.0), ("b", 2.0)]), &res, &mut st, 4000);
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
        b.add_histogram(&(), &data);
        let req = encode_one(&chunks(b), &BTreeMap::new(), &mut StartTimes::new(1), 2);
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

    #[test]
    fn a_push_over_the_limit_is_split_into_requests_of_at_most_that_many_points() {
        let ids: Vec<String> = (0..7).map(|i| i.to_string()).collect();
        let values: Vec<(&str, f64)> = ids.iter().map(|id| (id.as_str(), 1.0)).collect();
        let mut chunks = counter(&values);
        let mut b = FamilyBuilder::new(&H);
        b.add_histogram(&(), &HistogramData::new(&[]));
        chunks.extend(self::chunks(b));
        let mut requests = Vec::new();
        encode(
            &chunks,
            &BTreeMap::new(),
            &mut StartTimes::new(1),
            2,
            3,
            |r| requests.push(r),
        )
        .expect("encodes");
        // 7 counter points and 1 histogram point, 3 per request.
        let per_request: Vec<Vec<(String, usize)>> = requests
            .iter()
            .map(|r| {
                r.resource_metrics[0].scope_metrics[0]
                    .metrics
                    .iter()
                    .map(|m| (m.name.clone(), point_count(m)))
                    .collect()
            })
            .collect();
        assert_eq!(
            per_request,
            [
                vec![("x_runs".to_owned(), 3)],
                vec![("x_runs".to_owned(), 3)],
                vec![("x_runs".to_owned(), 1), ("x_seconds".to_owned(), 1)],
            ]
        );
        // Every point once, in order, each split keeping the metric's kind and temporality.
        let ids_sent: Vec<String> = requests
            .iter()
            .flat_map(|r| &r.resource_metrics[0].scope_metrics[0].metrics)
            .filter_map(|m| match &m.data {
                Some(metric::Data::Sum(s)) => {
                    assert!(s.is_monotonic);
                    assert_eq!(s.aggregation_temporality, CUMULATIVE);
                    Some(s.data_points.iter().map(|p| {
                        let v = &p.attributes[0].value;
                        format!("{v:?}")
                    }))
                }
                _ => None,
            })
            .flatten()
            .collect();
        assert_eq!(ids_sent.len(), 7);
        for (i, sent) in ids_sent.iter().enumerate() {
            assert!(sent.contains(&format!("\"{i}\"")), "{sent}");
        }
    }

    #[test]
    fn an_empty_exposition_is_still_one_request() {
        let mut requests = Vec::new();
        encode(&[], &BTreeMap::new(), &mut StartTimes::new(1), 2, 10, |r| {
            requests.push(r)
        })
        .expect("encodes");
        assert_eq!(requests.len(), 1);
    }
}
