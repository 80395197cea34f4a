//! From metric declarations to the bytes /metrics serves: metric definitions, the family
//! builder, the exporter's own metrics and the cached encoded exposition. Names no AWS service.

pub mod account_series;
pub mod docs;
pub mod family;
pub mod hub;
pub mod metric;
pub mod self_metrics;
pub mod text;

pub use family::Family;
pub use hub::{Exposition, MetricsHub, Snapshot};
pub use self_metrics::SelfMetrics;
