//! OpenTelemetry push: the metrics served on /metrics, sent over OTLP/HTTP (protobuf) to a
//! receiver (an OpenTelemetry Collector, Grafana Alloy, Prometheus' OTLP receiver, a vendor).
//!
//! It reads the hub's cached exposition, never AWS, so polling and scrapes are unaffected.
//! [`config`] merges the `otlp:` file section with the `OTEL_*` variables, [`encode`] maps
//! the Prometheus families to OTLP, [`push`] runs the send/retry loop.

pub mod config;
pub mod encode;
pub mod push;

pub use config::OtlpConfig;
pub use push::run;
