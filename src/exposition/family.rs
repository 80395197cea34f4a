//! Builds one metric family, as exposition text, from its [`MetricDef`] and plain values.

use bytes::Bytes;

use crate::exposition::metric::{MetricDef, MetricKind};
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
pub struct FamilyBuilder {
    def: &'static MetricDef,
    lines: String,
}

impl FamilyBuilder {
    pub fn new(def: &'static MetricDef) -> Self {
        Self {
            def,
            lines: String::new(),
        }
    }

    fn sample(&mut self, suffix: &str, labels: &[&str], extra: Option<(&str, &str)>, value: f64) {
        write_sample(&mut self.lines, self.def, suffix, labels, extra, value);
    }

    /// Adds a sample; a counter or a gauge according to the declaration.
    pub fn add(&mut self, labels: &[&str], value: f64) -> &mut Self {
        self.sample("", labels, None, value);
        self
    }

    /// Adds a sample with `extra` label pairs after the declared ones: labels named by the
    /// configuration (an info series' `tag_<key>` labels), which a declaration cannot list.
    pub fn add_with(&mut self, labels: &[&str], extra: &[(&str, &str)], value: f64) -> &mut Self {
        debug_assert_eq!(labels.len(), self.def.labels.len(), "{}", self.def.name);
        let pairs = self.def.labels.iter().copied().zip(labels.iter().copied());
        text::push_sample(
            &mut self.lines,
            self.def.name,
            "",
            pairs.chain(extra.iter().copied()),
            value,
        );
        self
    }

    /// Adds one series per state, 1 for `current` (the last label is the state).
    pub fn add_state_set(&mut self, labels: &[&str], states: &[&str], current: &str) -> &mut Self {
        each_state(labels, states, current, |l, v| self.sample("", l, None, v));
        self
    }

    pub fn add_histogram(&mut self, labels: &[&str], h: &HistogramData) -> &mut Self {
        debug_assert_eq!(self.def.kind, MetricKind::Histogram, "{}", self.def.name);
        let mut cumulative = 0;
        let mut le = String::new();
        for (bound, n) in h.bounds.iter().zip(&h.counts) {
            cumulative += n;
            le.clear();
            text::push_value(&mut le, *bound);
            self.sample("_bucket", labels, Some(("le", &le)), cumulative as f64);
        }
        self.sample("_bucket", labels, Some(("le", "+Inf")), h.count as f64);
        self.sample("_sum", labels, None, h.sum);
        self.sample("_count", labels, None, h.count as f64);
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

/// Appends one sample line of `def`, its label values in declaration order.
fn write_sample(
    out: &mut String,
    def: &MetricDef,
    suffix: &str,
    labels: &[&str],
    extra: Option<(&str, &str)>,
    value: f64,
) {
    debug_assert_eq!(
        labels.len(),
        def.labels.len(),
        "label values for {}",
        def.name
    );
    let pairs = def.labels.iter().copied().zip(labels.iter().copied());
    text::push_sample(out, def.name, suffix, pairs.chain(extra), value);
}

/// Calls `add` with the label values plus each state, and 1 for `current`, 0 for the others.
fn each_state(labels: &[&str], states: &[&str], current: &str, mut add: impl FnMut(&[&str], f64)) {
    let mut all = labels.to_vec();
    all.push("");
    for state in states {
        if let Some(last) = all.last_mut() {
            *last = state;
        }
        add(&all, if *state == current { 1.0 } else { 0.0 });
    }
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

/// Builds [`Sections`]: `family` starts the next family, `add` and `add_state_set` write to it.
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

    /// Starts the section of `def`: the samples added next belong to it.
    pub fn family(&mut self, def: &'static MetricDef) -> &mut Self {
        self.close();
        self.current = Some(def);
        self
    }

    fn sample(&mut self, labels: &[&str], value: f64) {
        match self.current {
            Some(def) => write_sample(&mut self.text, def, "", labels, None, value),
            None => debug_assert!(false, "a sample before any family"),
        }
    }

    pub fn add(&mut self, labels: &[&str], value: f64) -> &mut Self {
        self.sample(labels, value);
        self
    }

    /// Adds one series per state, 1 for `current` (the last label is the state).
    pub fn add_state_set(&mut self, labels: &[&str], states: &[&str], current: &str) -> &mut Self {
        each_state(labels, states, current, |l, v| self.sample(l, v));
        self
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

    const H: MetricDef = MetricDef {
        name: "x_seconds",
        kind: MetricKind::Histogram,
        help: "h",
        labels: &["k"],
    };
    const S: MetricDef = MetricDef {
        name: "x_status",
        kind: MetricKind::StateSet,
        help: "h",
        labels: &["k", "status"],
    };

    fn lines(b: FamilyBuilder) -> String {
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
        b.add_histogram(&["a\"b"], &data);
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
        b.add_state_set(&["r"], &["running", "failed"], "failed");
        assert_eq!(
            lines(b),
            "x_status{k=\"r\",status=\"running\"} 0\nx_status{k=\"r\",status=\"failed\"} 1\n"
        );
    }

    const G: MetricDef = MetricDef {
        name: "x_items",
        kind: MetricKind::Gauge,
        help: "h",
        labels: &["k"],
    };

    #[test]
    fn sections_of_many_items_gather_into_one_family_each() {
        let item = |k: &str, stopped: bool| {
            let mut b = SectionsBuilder::new(7);
            b.family(&G).add(&[k], 1.0);
            b.family(&S); // no series in this family for this item
            if stopped {
                b.add_state_set(&[k], &["stopped"], "stopped");
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
