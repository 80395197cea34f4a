//! Between-poll state of each source: what is tracked, what changed, counters fed once per
//! finished run, expiry. Knows neither AWS nor Prometheus.

pub mod appflow;
pub mod map_runs;
pub mod transfer;
