//! Builds one metric family, as exposition text, from its [`MetricDef`] and plain values.

use std::marker::PhantomData;

use bytes::Bytes;

use crate::exposition::metric::{LabelSet, LabelValues, Metric, MetricDef, MetricKind};
use crate::exposition::text;
use crate::histogram::HistogramData;

/// One family's series as exposition text: the sample lines, without `# HELP` and `# TYPE`
/// (the hub writes those once when several sources publish the same family), in blocks of
/// whole lines (one per [`FamilyBuilder`], one per item when gathered from [`Sections`]).
#[derive(Debug, Clone)]
pub struct Family {
    pub def: &'static MetricDef,
    pub blocks: Vec<Bytes>,
}

/// Builds one metric family from its declaration.
pub struct FamilyBuilder<L: LabelSet> {
    def: &'static MetricDef,
    lines: String,
    labels: PhantomData<fn() -> L>,
}

impl<L: LabelSet> FamilyBuilder<L> {
    pub fn new(metric: &'static Metric<L>) -> Self {
        Self {
            def: &metric.def,
            lines: String::new(),
            labels: PhantomData,
        }
    }

    /// Adds a sample; a counter or a gauge according to the declaration.
    pub fn add(&mut self, labels: &L::Of<'_>, value: f64) -> &mut Self {
        write_sample(&mut self.lines, self.def, "", labels.values(), &[], value);
        self
    }

    /// Adds a sample with `extra` label pairs after the declared ones: labels named by the
    /// configuration (an info series' `tag_<key>` labels), which a declaration cannot list.
    pub fn add_with(
        &mut self,
        labels: &L::Of<'_>,
        extra: &[(&str, &str)],
        value: f64,
    ) -> &mut Self {
        write_sample(&mut self.lines, self.def, "", labels.values(), extra, value);
        self
    }

    /// Adds one series per state, 1 for `current`; `labels` gives each state's label set.
    pub fn add_state_set<'a>(
        &mut self,
        states: &[&'a str],
        current: &str,
        labels: impl Fn(&'a str) -> L::Of<'a>,
    ) -> &mut Self {
        each_state(states, current, labels, |l, v| {
            self.add(&l, v);
        });
        self
    }

    pub fn add_histogram(&mut self, labels: &L::Of<'_>, h: &HistogramData) -> &mut Self {
        debug_assert_eq!(self.def.kind, MetricKind::Histogram, "{}", self.def.name);
        let mut cumulative = 0;
        let mut le = String::new();
        let mut bucket = |le: &str, n: u64| {
            let extra = [("le", le)];
            write_sample(
                &mut self.lines,
                self.def,
                "_bucket",
                labels.values(),
                &extra,
                n as f64,
            );
        };
        for (bound, n) in h.bounds.iter().zip(&h.counts) {
            cumulative += n;
            le.clear();
            text::push_value(&mut le, *bound);
            bucket(&le, cumulative);
        }
        bucket("+Inf", h.count);
        write_sample(
            &mut self.lines,
            self.def,
            "_sum",
            labels.values(),
            &[],
            h.sum,
        );
        let count = h.count as f64;
        write_sample(
            &mut self.lines,
            self.def,
            "_count",
            labels.values(),
            &[],
            count,
        );
        self
    }

    /// Adds the family to `out` unless it has no series.
    pub fn finish(mut self, out: &mut Vec<Family>) {
        if !self.lines.is_empty() {
            // Snapshots are held until the next poll: give back what the growing string reserved.
            self.lines.shrink_to_fit();
            out.push(Family {
                def: self.def,
                blocks: vec![Bytes::from(self.lines)],
            });
        }
    }
}

/// Appends one sample line of `def`: its label values in declaration order, then `extra`.
fn write_sample<'a>(
    out: &mut String,
    def: &MetricDef,
    suffix: &str,
    values: impl Iterator<Item = &'a str>,
    extra: &[(&'a str, &'a str)],
    value: f64,
) {
    let pairs = def.labels.iter().copied().zip(values);
    text::push_sample(
        out,
        def.name,
        suffix,
        pairs.chain(extra.iter().copied()),
        value,
    );
}

/// One item's series in several families (one map run's, say), rendered once and shared by every
/// snapshot until the item changes: one allocation, a slice of it per family. A snapshot of
/// thousands of unchanged items then costs a list of references, not a new copy of their text.
#[derive(Debug, Clone, Default)]
pub struct Sections {
    /// What the text was rendered for beyond the item (the caller's key, e.g. a hash of labels
    /// every series carries): a cached value with another key is stale.
    key: u64,
    text: Bytes,
    /// Each family and where its lines end in `text`; a section starts where the previous ends.
    ends: Box<[(&'static MetricDef, u32)]>,
}

impl Sections {
    /// Each family with the item's lines in it (families it has no series in are left out).
    pub fn iter(&self) -> impl Iterator<Item = (&'static MetricDef, Bytes)> + '_ {
        let starts = std::iter::once(0).chain(self.ends.iter().map(|(_, end)| *end));
        self.ends
            .iter()
            .zip(starts)
            .filter(|((_, end), start)| end > start)
            .map(|((def, end), start)| (*def, self.text.slice(start as usize..*end as usize)))
    }

    pub fn key(&self) -> u64 {
        self.key
    }
}

/// Builds [`Sections`]: `family` starts the next family and returns what writes to it.
#[derive(Debug, Default)]
pub struct SectionsBuilder {
    key: u64,
    text: String,
    ends: Vec<(&'static MetricDef, u32)>,
    current: Option<&'static MetricDef>,
}

impl SectionsBuilder {
    /// `key`: see [`Sections::key`].
    pub fn new(key: u64) -> Self {
        Self {
            key,
            ..Self::default()
        }
    }

    fn close(&mut self) {
        if let Some(def) = self.current.take() {
            // An item's text is a few kilobytes; u32 offsets keep each run's index small.
            let end = u32::try_from(self.text.len()).unwrap_or(u32::MAX);
            self.ends.push((def, end));
        }
    }

    /// Starts the section of `metric`: the samples added to what it returns belong to it.
    pub fn family<L: LabelSet>(&mut self, metric: &'static Metric<L>) -> Section<'_, L> {
        self.close();
        self.current = Some(&metric.def);
        Section {
            builder: self,
            labels: PhantomData,
        }
    }

    pub fn finish(mut self) -> Sections {
        self.close();
        self.text.shrink_to_fit();
        Sections {
            key: self.key,
            text: Bytes::from(self.text),
            ends: self.ends.into_boxed_slice(),
        }
    }
}

/// One family's section of a [`SectionsBuilder`].
pub struct Section<'b, L: LabelSet> {
    builder: &'b mut SectionsBuilder,
    labels: PhantomData<fn() -> L>,
}

impl<L: LabelSet> Section<'_, L> {
    pub fn add(&mut self, labels: &L::Of<'_>, value: f64) -> &mut Self {
        let b = &mut *self.builder;
        if let Some(def) = b.current {
            write_sample(&mut b.text, def, "", labels.values(), &[], value);
        }
        self
    }

    /// See [`FamilyBuilder::add_state_set`].
    pub fn add_state_set<'a>(
        &mut self,
        states: &[&'a str],
        current: &str,
        labels: impl Fn(&'a str) -> L::Of<'a>,
    ) -> &mut Self {
        each_state(states, current, labels, |l, v| {
            self.add(&l, v);
        });
        self
    }
}

/// Calls `add` with each state's labels, and 1 for `current`, 0 for the others.
fn each_state<'a, S>(
    states: &[&'a str],
    current: &str,
    labels: impl Fn(&'a str) -> S,
    mut add: impl FnMut(S, f64),
) {
    for state in states {
        add(labels(state), if *state == current { 1.0 } else { 0.0 });
    }
}

/// Lays out many items' [`Sections`] as families: each family's lines of every item, in item
/// order, sharing the items' text.
pub fn gather_sections<'a>(items: impl IntoIterator<Item = &'a Sections>, out: &mut Vec<Family>) {
    let start = out.len();
    for item in items {
        for (def, lines) in item.iter() {
            match out[start..].iter_mut().find(|f| f.def.name == def.name) {
                Some(f) => f.blocks.push(lines),
                None => out.push(Family {
                    def,
                    blocks: vec![lines],
                }),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exposition::metric::{def, labels};

    labels!(pub struct K { k });
    labels!(pub struct KStatus { k, status });
    def!(H, "x_seconds", Histogram, K, "h");
    def!(S, "x_status", StateSet, KStatus, "h");
    def!(G, "x_items", Gauge, K, "h");

    fn lines<L: LabelSet>(b: FamilyBuilder<L>) -> String {
        let mut out = Vec::new();
        b.finish(&mut out);
        out.iter()
            .flat_map(|f| &f.blocks)
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .collect()
    }

    #[test]
    fn a_histogram_is_cumulative_buckets_sum_and_count() {
        static BOUNDS: [f64; 2] = [0.5, 10.0];
        let mut data = HistogramData::new(&BOUNDS);
        for v in [0.1, 3.0, 4.0, 99.0] {
            data.observe(v);
        }
        let mut b = FamilyBuilder::new(&H);
        b.add_histogram(&K { k: "a\"b" }, &data);
        assert_eq!(
            lines(b),
            "x_seconds_bucket{k=\"a\\\"b\",le=\"0.5\"} 1\n\
             x_seconds_bucket{k=\"a\\\"b\",le=\"10\"} 3\n\
             x_seconds_bucket{k=\"a\\\"b\",le=\"+Inf\"} 4\n\
             x_seconds_sum{k=\"a\\\"b\"} 106.1\n\
             x_seconds_count{k=\"a\\\"b\"} 4\n"
        );
    }

    #[test]
    fn a_state_set_has_one_series_per_state() {
        let mut b = FamilyBuilder::new(&S);
        b.add_state_set(&["running", "failed"], "failed", |status| KStatus {
            k: "r",
            status,
        });
        assert_eq!(
            lines(b),
            "x_status{k=\"r\",status=\"running\"} 0\nx_status{k=\"r\",status=\"failed\"} 1\n"
        );
    }

    #[test]
    fn sections_of_many_items_gather_into_one_family_each() {
        let item = |k: &str, stopped: bool| {
            let mut b = SectionsBuilder::new(7);
            b.family(&G).add(&K { k }, 1.0);
            // No series in this family for an item not stopped.
            let mut status = b.family(&S);
            if stopped {
                status.add_state_set(&["stopped"], "stopped", |status| KStatus { k, status });
            }
            b.finish()
        };
        let items = [item("a", false), item("b", true), item("c", true)];
        assert_eq!(items[0].key(), 7);
        let mut out = Vec::new();
        gather_sections(&items, &mut out);
        let text = |f: &Family| -> String {
            f.blocks
                .iter()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .collect()
        };
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].def.name, "x_items");
        assert_eq!(
            text(&out[0]),
            "x_items{k=\"a\"} 1\nx_items{k=\"b\"} 1\nx_items{k=\"c\"} 1\n"
        );
        assert_eq!(out[1].blocks.len(), 2, "only the items with series");
        assert_eq!(
            text(&out[1]),
            "x_status{k=\"b\",status=\"stopped\"} 1\nx_status{k=\"c\",status=\"stopped\"} 1\n"
        );
    }

    #[test]
    fn an_empty_family_is_left_out() {
        assert_eq!(lines(FamilyBuilder::new(&S)), "");
    }
}
