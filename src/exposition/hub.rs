//! The encoded exposition, rebuilt after each poll and served from cache by /metrics.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use bytes::Bytes;
use prometheus::proto::MetricFamily;
use prometheus::{Encoder, TextEncoder};

use crate::exposition::self_metrics::SelfMetrics;

/// The exposition text and its gzip encoding, shared by all scrapes until the next poll.
#[derive(Debug, Clone, Default)]
pub struct Exposition {
    pub plain: Bytes,
    pub gzip: Bytes,
    /// The families encoded above, for the OTLP push (same data as /metrics); empty unless the
    /// hub keeps them.
    pub families: Arc<Vec<MetricFamily>>,
}

/// What one source instance publishes after a poll.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub families: Vec<MetricFamily>,
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
    /// Keep the merged families in the exposition (for the OTLP push); off, only the text.
    keep_families: AtomicBool,
}

impl MetricsHub {
    pub fn new(self_metrics: Arc<SelfMetrics>) -> Self {
        let hub = Self {
            self_metrics,
            published: Mutex::new(BTreeMap::new()),
            rebuilding: Mutex::new(()),
            current: RwLock::new(Arc::new(Exposition::default())),
            keep_families: AtomicBool::new(false),
        };
        hub.rebuild();
        hub
    }

    /// From the next rebuild on, the exposition also carries the merged families (the OTLP push
    /// reads them).
    pub fn keep_families(&self) {
        self.keep_families.store(true, Ordering::Relaxed);
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

    /// Merges families of the same name across sources and targets, then encodes once.
    ///
    /// Rebuilds run one at a time: two sources finishing at once must not let the one that read
    /// the self-metrics first store its exposition last, which would take a `poll_success` back
    /// and move counters backwards until the next poll. Families are encoded where they lie; only
    /// a family that several targets publish is copied to merge it, and the merged families are
    /// kept only for the OTLP push: memory stays near one copy of the series.
    pub fn rebuild(&self) {
        let _one_at_a_time = self.rebuilding.lock().expect("rebuild lock");
        let mut plain = Vec::new();
        let keep = self.keep_families.load(Ordering::Relaxed);
        let mut kept: Vec<MetricFamily> = Vec::new();
        {
            let published = self.published.lock().expect("hub lock");
            let mut tracked: BTreeMap<&str, usize> = BTreeMap::new();
            let mut by_name: BTreeMap<&str, Vec<&MetricFamily>> = BTreeMap::new();
            for snapshot in published.values() {
                for (kind, n) in &snapshot.tracked {
                    *tracked.entry(kind).or_default() += n;
                }
                for f in &snapshot.families {
                    by_name.entry(f.name()).or_default().push(f);
                }
            }
            for (kind, n) in tracked {
                self.self_metrics.set_tracked(kind, n);
            }
            for parts in by_name.into_values() {
                let merged;
                let family = match parts.as_slice() {
                    [one] => *one,
                    [first, rest @ ..] => {
                        let mut m = (*first).clone();
                        for f in rest {
                            m.mut_metric().extend(f.get_metric().iter().cloned());
                        }
                        merged = m;
                        &merged
                    }
                    [] => continue,
                };
                if let Err(e) = encode(family, &mut plain) {
                    tracing::error!(error = %e, "encoding the exposition failed; keeping the previous one");
                    return;
                }
                if keep {
                    kept.push(family.clone());
                }
            }
        }
        for family in self.self_metrics.gather() {
            if let Err(e) = encode(&family, &mut plain) {
                tracing::error!(error = %e, "encoding the exposition failed; keeping the previous one");
                return;
            }
            if keep {
                kept.push(family);
            }
        }
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let gzip = gz
            .write_all(&plain)
            .and_then(|_| gz.finish())
            .unwrap_or_default();
        *self.current.write().expect("exposition lock") = Arc::new(Exposition {
            plain: Bytes::from(plain),
            gzip: Bytes::from(gzip),
            families: Arc::new(kept),
        });
    }
}

fn encode(family: &MetricFamily, out: &mut Vec<u8>) -> prometheus::Result<()> {
    TextEncoder::new().encode(std::slice::from_ref(family), out)
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
        let text = String::from_utf8(hub.current().plain.to_vec()).expect("utf-8");
        assert!(
            text.contains("test_series{n=\"0\"} 2"),
            "the newer snapshot is served"
        );
        assert!(!text.contains("n=\"1\""), "the older snapshot is gone");
    }
}
