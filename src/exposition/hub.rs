//! The encoded exposition, rebuilt after each poll and served from cache by /metrics.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Mutex, RwLock};

use bytes::Bytes;
use prometheus::{Encoder, TextEncoder};

use crate::exposition::family::Family;
use crate::exposition::self_metrics::SelfMetrics;
use crate::exposition::text;

/// The exposition text and its gzip encoding, shared by all scrapes until the next poll.
///
/// The text is kept as the chunks it was built from (headers, then the lines each source
/// published, then the exporter's own metrics), each a whole number of lines: the series lines
/// are the sources' own bytes, shared rather than copied into one buffer.
#[derive(Debug, Clone, Default)]
pub struct Exposition {
    pub chunks: Arc<[Bytes]>,
    pub gzip: Bytes,
    /// Counts rebuilds: a pusher tells by it whether it already sent this exposition.
    pub generation: u64,
}

/// What one source instance publishes after a poll.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub families: Vec<Family>,
    /// (kind, count) for `aws_workflow_exporter_tracked_resources`.
    pub tracked: Vec<(&'static str, usize)>,
}

/// Collects each source's latest families and keeps the encoded exposition.
#[derive(Debug)]
pub struct MetricsHub {
    self_metrics: Arc<SelfMetrics>,
    /// Latest snapshot per (source, target key).
    published: Mutex<BTreeMap<(String, String), Snapshot>>,
    /// Held through a whole rebuild: rebuilds run one at a time, each from the snapshots as they
    /// are when it starts, so a slow rebuild of older snapshots never replaces a newer exposition
    /// (a scrape could otherwise see a counter go down).
    rebuilding: Mutex<()>,
    current: RwLock<Arc<Exposition>>,
}

impl MetricsHub {
    pub fn new(self_metrics: Arc<SelfMetrics>) -> Self {
        let hub = Self {
            self_metrics,
            published: Mutex::new(BTreeMap::new()),
            rebuilding: Mutex::new(()),
            current: RwLock::new(Arc::new(Exposition::default())),
        };
        hub.rebuild();
        hub
    }

    pub fn self_metrics(&self) -> &Arc<SelfMetrics> {
        &self.self_metrics
    }

    /// Replaces one source instance's snapshot and re-encodes everything.
    pub fn publish(&self, source: &str, target: &str, snapshot: Snapshot) {
        self.published
            .lock()
            .expect("hub lock")
            .insert((source.to_owned(), target.to_owned()), snapshot);
        self.rebuild();
    }

    /// Drops what a source instance published (it was removed by a reload).
    pub fn remove(&self, source: &str, target: &str) {
        let removed = self
            .published
            .lock()
            .expect("hub lock")
            .remove(&(source.to_owned(), target.to_owned()));
        // Kinds only the removed instance tracked would keep their last count otherwise.
        for (kind, _) in removed.map(|s| s.tracked).unwrap_or_default() {
            self.self_metrics.set_tracked(kind, 0);
        }
        self.rebuild();
    }

    /// The exposition as of the last poll; cheap, never blocks on AWS.
    pub fn current(&self) -> Arc<Exposition> {
        self.current.read().expect("exposition lock").clone()
    }

    /// Lays out the families of all sources and targets, one header per family name, then the
    /// exporter's own metrics, and gzips the result.
    ///
    /// Rebuilds run one at a time: two sources finishing at once must not let the one that read
    /// the self-metrics first store its exposition last, which would take a `poll_success` back
    /// and move counters backwards until the next poll. The series lines are shared with the
    /// snapshots, not copied: memory stays near one copy of the text plus its gzip.
    pub fn rebuild(&self) {
        let _one_at_a_time = self.rebuilding.lock().expect("rebuild lock");
        let started = std::time::Instant::now();
        let mut chunks = Vec::new();
        {
            let published = self.published.lock().expect("hub lock");
            let mut tracked: BTreeMap<&str, usize> = BTreeMap::new();
            let mut by_name: BTreeMap<&str, Vec<&Family>> = BTreeMap::new();
            for snapshot in published.values() {
                for (kind, n) in &snapshot.tracked {
                    *tracked.entry(kind).or_default() += n;
                }
                for f in &snapshot.families {
                    by_name.entry(f.def.name).or_default().push(f);
                }
            }
            for (kind, n) in tracked {
                self.self_metrics.set_tracked(kind, n);
            }
            for parts in by_name.into_values() {
                chunks.push(Bytes::from(text::header(parts[0].def)));
                chunks.extend(parts.iter().flat_map(|f| f.blocks.iter().cloned()));
            }
        }
        let mut own = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.self_metrics.gather(), &mut own) {
            tracing::error!(error = %e, "encoding the exposition failed; keeping the previous one");
            return;
        }
        chunks.push(Bytes::from(own));
        let generation = self.current().generation + 1;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let gzip = chunks
            .iter()
            .try_for_each(|c| gz.write_all(c))
            .and_then(|_| gz.finish())
            .unwrap_or_default();
        // Counted in the next exposition: this one's text is already encoded.
        self.self_metrics.record_rebuild(started.elapsed());
        *self.current.write().expect("exposition lock") = Arc::new(Exposition {
            chunks: chunks.into(),
            gzip: Bytes::from(gzip),
            generation,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exposition::family::FamilyBuilder;
    use crate::exposition::metric::{MetricDef, MetricKind};

    const SERIES: MetricDef = MetricDef {
        name: "test_series",
        kind: MetricKind::Gauge,
        help: "A test series.",
        labels: &["n"],
    };

    fn text_of(exposition: &Exposition) -> String {
        exposition
            .chunks
            .iter()
            .map(|c| String::from_utf8_lossy(c))
            .collect()
    }

    fn snapshot(series: usize, value: f64) -> Snapshot {
        let mut b = FamilyBuilder::new(&SERIES);
        for i in 0..series {
            b.add(&[&i.to_string()], value);
        }
        let mut families = Vec::new();
        b.finish(&mut families);
        Snapshot {
            families,
            tracked: vec![],
        }
    }

    #[test]
    fn a_slow_rebuild_never_publishes_over_a_newer_one() {
        let hub = Arc::new(MetricsHub::new(Arc::new(SelfMetrics::new())));
        // A publishes a large snapshot (slow to encode); B publishes a small one for the same
        // source while A is still rebuilding. B's is the newer: the exposition must end with it.
        let slow = {
            let hub = hub.clone();
            std::thread::spawn(move || hub.publish("s", "t", snapshot(200_000, 1.0)))
        };
        // Wait until A holds the snapshots (it is rebuilding), without sleeping.
        while hub.published.try_lock().is_ok() && !slow.is_finished() {
            std::hint::spin_loop();
        }
        hub.publish("s", "t", snapshot(1, 2.0));
        slow.join().expect("slow publisher");
        let text = text_of(&hub.current());
        assert!(
            text.contains("test_series{n=\"0\"} 2"),
            "the newer snapshot is served"
        );
        assert!(!text.contains("n=\"1\""), "the older snapshot is gone");
    }

    #[test]
    fn a_family_several_targets_publish_has_one_header_and_gzip_is_the_same_text() {
        use std::io::Read;
        let hub = MetricsHub::new(Arc::new(SelfMetrics::new()));
        hub.publish("s", "a", snapshot(1, 1.0));
        hub.publish("s", "b", snapshot(2, 3.0));
        let exposition = hub.current();
        let text = text_of(&exposition);
        assert_eq!(text.matches("# TYPE test_series gauge\n").count(), 1);
        assert_eq!(text.matches("# HELP test_series ").count(), 1);
        assert_eq!(text.matches("\ntest_series{").count(), 3, "{text}");
        let mut unzipped = String::new();
        flate2::read::GzDecoder::new(&exposition.gzip[..])
            .read_to_string(&mut unzipped)
            .expect("gzip");
        assert_eq!(unzipped, text);
    }
}
