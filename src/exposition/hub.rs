//! The encoded exposition, rebuilt after each poll and served from cache by /metrics.

use std::collections::BTreeMap;
use std::io::Write;
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
    /// The families encoded above, for the OTLP push (same data as /metrics).
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
    current: RwLock<Arc<Exposition>>,
}

impl MetricsHub {
    pub fn new(self_metrics: Arc<SelfMetrics>) -> Self {
        let hub = Self {
            self_metrics,
            published: Mutex::new(BTreeMap::new()),
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

    /// Merges families of the same name across sources and targets, then encodes once.
    pub fn rebuild(&self) {
        let mut merged: BTreeMap<String, MetricFamily> = BTreeMap::new();
        {
            let published = self.published.lock().expect("hub lock");
            let mut tracked: BTreeMap<&str, usize> = BTreeMap::new();
            for snapshot in published.values() {
                for (kind, n) in &snapshot.tracked {
                    *tracked.entry(kind).or_default() += n;
                }
            }
            for (kind, n) in tracked {
                self.self_metrics.set_tracked(kind, n);
            }
            for snapshot in published.values() {
                for f in &snapshot.families {
                    match merged.get_mut(f.name()) {
                        Some(existing) => {
                            existing.mut_metric().extend(f.get_metric().iter().cloned())
                        }
                        None => {
                            merged.insert(f.name().to_owned(), f.clone());
                        }
                    }
                }
            }
        }
        let mut families: Vec<MetricFamily> = merged.into_values().collect();
        families.extend(self.self_metrics.gather());
        let mut plain = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&families, &mut plain) {
            tracing::error!(error = %e, "encoding the exposition failed; keeping the previous one");
            return;
        }
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let gzip = gz
            .write_all(&plain)
            .and_then(|_| gz.finish())
            .unwrap_or_default();
        *self.current.write().expect("exposition lock") = Arc::new(Exposition {
            plain: Bytes::from(plain),
            gzip: Bytes::from(gzip),
            families: Arc::new(families),
        });
    }
}
