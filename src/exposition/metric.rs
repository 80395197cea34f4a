//! The declaration of a metric: every metric the binary can emit is declared once as a
//! [`MetricDef`]; families are built from those declarations and docs/metrics.md is generated
//! from the same list.

/// Declares a [`MetricDef`] constant: `def!(ID, "name", Kind, LABELS, "help");`.
macro_rules! def {
    ($id:ident, $name:literal, $kind:ident, $labels:expr, $help:literal) => {
        pub const $id: $crate::exposition::metric::MetricDef =
            $crate::exposition::metric::MetricDef {
                name: $name,
                kind: $crate::exposition::metric::MetricKind::$kind,
                help: $help,
                labels: $labels,
            };
    };
}
pub(crate) use def;

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
