//! Plain value types shared by state stores and the exposition; knows neither AWS nor Prometheus.

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
