//! The push loop: every interval, the hub's latest exposition is encoded and POSTed to the
//! receiver. Memory stays bounded: one request body at a time, and while a push is being retried
//! a newer poll replaces its data (cumulative series lose nothing by that). Retries follow the
//! OTLP/HTTP spec: 429, 502, 503, 504 and connection failures are retried with exponential
//! backoff or after `Retry-After`; any other answer drops that push.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{HeaderName, HeaderValue, CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER};
use hyper::{Request, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceResponse;
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec};
use prost::Message;
use tokio::sync::watch;
use tokio::time::Instant;

use super::config::OtlpConfig;
use super::encode::{cloud_attributes, default_resource, encode, StartTimes};
use crate::exposition::metric::{def, labels, MetricDef};
use crate::exposition::self_metrics::{opts, IntCounters, LabeledVec};
use crate::exposition::{Exposition, MetricsHub, SelfMetrics};

labels!(pub struct Outcome { outcome });
def!(
    EXPORTS,
    "aws_workflow_exporter_otlp_exports_total",
    Counter,
    Outcome,
    "OTLP export requests, by outcome: success; retryable_error (HTTP 429, 502, 503, 504, connection failure or timeout: sent again after a backoff or Retry-After); rejected (any other answer: that push is dropped)."
);
def!(
    DURATION,
    "aws_workflow_exporter_otlp_export_duration_seconds",
    Histogram,
    (),
    "Duration of OTLP export requests (sending and reading the answer), in seconds."
);
pub const DEFS: &[&MetricDef] = &[&EXPORTS.def, &DURATION.def];

const OUTCOMES: [&str; 3] = ["success", "retryable_error", "rejected"];
const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A receiver asking for a longer pause than this gets this; a push is never parked for hours.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);
/// Answers are read up to this size; a receiver cannot make the exporter buffer more.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

fn client(config: &OtlpConfig) -> Result<HttpsClient, String> {
    let mut roots = rustls::RootCertStore::empty();
    match &config.certificate {
        Some(path) => {
            for cert in super::config::load_ca(path)? {
                roots
                    .add(cert)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
            }
        }
        None => {
            let native = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(native.certs);
            if roots.is_empty() && config.endpoint.starts_with("https://") {
                tracing::warn!("no system CA certificates found; TLS to the OTLP receiver will fail (set otlp.certificate)");
            }
        }
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(config.timeout));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new()).build(https))
}

/// How one export request went.
enum Sent {
    Accepted {
        rejected_points: i64,
        message: String,
    },
    Retry {
        reason: String,
        after: Option<Duration>,
    },
    Rejected {
        reason: String,
    },
}

struct Pusher {
    config: OtlpConfig,
    client: HttpsClient,
    hub: Arc<MetricsHub>,
    exports: IntCounters<Outcome<'static>>,
    duration: LabeledVec<(), HistogramVec>,
    starts: StartTimes,
    instance_id: String,
    /// The generation of the exposition the last push was built from.
    pushed: Option<u64>,
}

fn unix_nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or_default()
}

/// `service.instance.id`: the host name (the pod name on Kubernetes), stable across restarts.
fn instance_id() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| format!("pid-{}", std::process::id()))
}

fn register(
    self_metrics: &SelfMetrics,
) -> (IntCounters<Outcome<'static>>, LabeledVec<(), HistogramVec>) {
    let exports = IntCounters::new(&EXPORTS, |d| IntCounterVec::new(opts(d), d.labels));
    let duration = LabeledVec::new(&DURATION, |d| {
        let buckets = vec![0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
        HistogramVec::new(
            HistogramOpts::new(d.name, d.help).buckets(buckets),
            d.labels,
        )
    });
    for outcome in OUTCOMES {
        exports.with(&Outcome { outcome });
    }
    duration.with(&());
    for c in [exports.collector(), duration.collector()] {
        if let Err(e) = self_metrics.register(c) {
            tracing::warn!(error = %e, "OTLP self-metrics not registered");
        }
    }
    (exports, duration)
}

/// Pushes the hub's metrics to the configured receiver until `shutdown` turns true.
pub async fn run(config: OtlpConfig, hub: Arc<MetricsHub>, mut shutdown: watch::Receiver<bool>) {
    let client = match client(&config) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "OTLP push disabled: cannot set up the HTTP client");
            return;
        }
    };
    let (exports, duration) = register(hub.self_metrics());
    let mut pusher = Pusher {
        client,
        exports,
        duration,
        starts: StartTimes::new(unix_nanos(SystemTime::now())),
        instance_id: instance_id(),
        pushed: None,
        hub,
        config,
    };
    tracing::info!(endpoint = %pusher.config.endpoint, interval_ms = pusher.config.interval.as_millis() as u64, gzip = pusher.config.gzip, "pushing metrics over OTLP");
    let interval = pusher.config.interval;
    let mut ticker = tokio::time::interval_at(Instant::now() + interval, interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.changed() => break,
        }
        if !pusher.push_latest(&mut shutdown).await {
            break;
        }
    }
    pusher.final_push().await;
}

impl Pusher {
    /// The request bodies of one push of an exposition (several when it holds more than
    /// `max_points_per_request` data points), each gzipped if configured as soon as it is built;
    /// `None` (logged and counted as rejected) if the exposition cannot be read back, which the
    /// hub's own text never causes.
    fn bodies(&mut self, exposition: &Exposition) -> Option<Vec<Bytes>> {
        let mut resource = default_resource(&self.instance_id);
        resource.extend(cloud_attributes(&exposition.chunks));
        resource.extend(self.config.resource_attributes.clone());
        let gzip = self.config.gzip;
        let mut bodies = Vec::new();
        let encoded = encode(
            &exposition.chunks,
            &resource,
            &mut self.starts,
            unix_nanos(SystemTime::now()),
            self.config.max_points_per_request,
            |request| bodies.push(body(request.encode_to_vec(), gzip)),
        );
        if let Err(e) = encoded {
            self.exports
                .with(&Outcome {
                    outcome: "rejected",
                })
                .inc();
            tracing::error!(error = %e, "OTLP push skipped: the exposition could not be read");
            return None;
        }
        Some(bodies)
    }

    /// Sends the latest exposition, each of its requests in turn, retrying as the spec says.
    /// `false` once shutdown is asked.
    async fn push_latest(&mut self, shutdown: &mut watch::Receiver<bool>) -> bool {
        let mut exposition = self.hub.current();
        let Some(mut bodies) = self.bodies(&exposition) else {
            return true;
        };
        let mut next = 0;
        let mut backoff = INITIAL_BACKOFF;
        while let Some(body) = bodies.get(next) {
            let started = Instant::now();
            let sent = self.send(body.clone()).await;
            self.duration
                .with(&())
                .observe(started.elapsed().as_secs_f64());
            let wait = match sent {
                Sent::Accepted {
                    rejected_points,
                    message,
                } => {
                    self.exports.with(&Outcome { outcome: "success" }).inc();
                    if rejected_points > 0 || !message.is_empty() {
                        tracing::warn!(rejected_points, message = %message, "OTLP receiver accepted the push only in part");
                    }
                    next += 1;
                    continue;
                }
                Sent::Rejected { reason } => {
                    self.exports
                        .with(&Outcome {
                            outcome: "rejected",
                        })
                        .inc();
                    tracing::warn!(endpoint = %self.config.endpoint, reason = %reason, "OTLP push rejected; dropped (the next push carries the same cumulative data)");
                    next += 1;
                    continue;
                }
                Sent::Retry { reason, after } => {
                    self.exports
                        .with(&Outcome {
                            outcome: "retryable_error",
                        })
                        .inc();
                    let wait = match after {
                        Some(after) => after.min(MAX_RETRY_AFTER),
                        None => backoff.mul_f64(0.5 + fastrand::f64() * 0.5),
                    };
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    tracing::warn!(endpoint = %self.config.endpoint, reason = %reason, retry_in_ms = wait.as_millis() as u64, "OTLP push failed; retrying");
                    wait
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => return false,
            }
            // Only the newest data is ever pending: after another poll, push it instead, from its
            // first request (every series is a gauge or cumulative: it supersedes the rest).
            let latest = self.hub.current();
            if !Arc::ptr_eq(&latest, &exposition) {
                exposition = latest;
                match self.bodies(&exposition) {
                    Some(b) => (bodies, next) = (b, 0),
                    None => return true,
                }
            }
        }
        self.pushed = Some(exposition.generation);
        true
    }

    /// At shutdown: sends the newest exposition once more unless the last push sent it, each
    /// request tried once and all within one `timeout`, so the data of the last poll is not
    /// lost and a dead receiver delays the exit by at most `timeout`.
    async fn final_push(&mut self) {
        // What the sources published last, even if the hub has not assembled it yet.
        let exposition = self.hub.flush();
        if self.pushed == Some(exposition.generation) {
            return;
        }
        let Some(bodies) = self.bodies(&exposition) else {
            return;
        };
        let sending = async {
            for body in bodies {
                let outcome = match self.send(body).await {
                    Sent::Accepted { .. } => "success",
                    Sent::Rejected { .. } => "rejected",
                    Sent::Retry { .. } => "retryable_error",
                };
                self.exports.with(&Outcome { outcome }).inc();
                if outcome != "success" {
                    return false;
                }
            }
            true
        };
        match tokio::time::timeout(self.config.timeout, sending).await {
            Ok(true) => tracing::info!("pushed the last metrics over OTLP at shutdown"),
            _ => {
                tracing::warn!(endpoint = %self.config.endpoint, "the OTLP push at shutdown failed or timed out; its data is not sent")
            }
        }
    }

    async fn send(&self, body: Bytes) -> Sent {
        let mut request = Request::post(self.config.endpoint.as_str())
            .header(CONTENT_TYPE, "application/x-protobuf")
            .header(
                hyper::header::USER_AGENT,
                concat!(env!("CARGO_PKG_NAME"), "/", env!("CARGO_PKG_VERSION")),
            );
        if self.config.gzip {
            request = request.header(CONTENT_ENCODING, "gzip");
        }
        for (name, value) in &self.config.headers {
            // Names and values were checked when the configuration was loaded.
            if let (Ok(n), Ok(v)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) {
                request = request.header(n, v);
            }
        }
        let request = match request.body(Full::new(body)) {
            Ok(r) => r,
            Err(e) => {
                return Sent::Rejected {
                    reason: format!("cannot build the request: {e}"),
                }
            }
        };
        let exchange = async {
            let response = self.client.request(request).await.map_err(|e| {
                // The innermost cause says what went wrong (refused, DNS, TLS).
                let mut source: &dyn std::error::Error = &e;
                while let Some(inner) = source.source() {
                    source = inner;
                }
                format!("{e}: {source}")
            })?;
            let (parts, body) = response.into_parts();
            let bytes = Limited::new(body, MAX_RESPONSE_BYTES)
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            Ok::<_, String>((parts, bytes))
        };
        let (parts, bytes) = match tokio::time::timeout(self.config.timeout, exchange).await {
            Err(_) => {
                return Sent::Retry {
                    reason: format!("no answer within {}ms", self.config.timeout.as_millis()),
                    after: None,
                }
            }
            Ok(Err(reason)) => {
                return Sent::Retry {
                    reason,
                    after: None,
                }
            }
            Ok(Ok(exchange)) => exchange,
        };
        let status = parts.status;
        if status.is_success() {
            let partial = ExportMetricsServiceResponse::decode(bytes)
                .ok()
                .and_then(|r| r.partial_success)
                .unwrap_or_default();
            return Sent::Accepted {
                rejected_points: partial.rejected_data_points,
                message: partial.error_message,
            };
        }
        let text: String = String::from_utf8_lossy(&bytes).chars().take(200).collect();
        let reason = format!("HTTP {status}: {}", text.trim());
        if matches!(
            status,
            StatusCode::TOO_MANY_REQUESTS
                | StatusCode::BAD_GATEWAY
                | StatusCode::SERVICE_UNAVAILABLE
                | StatusCode::GATEWAY_TIMEOUT
        ) {
            let after = parts
                .headers
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(retry_after);
            Sent::Retry { reason, after }
        } else {
            Sent::Rejected { reason }
        }
    }
}

/// `Retry-After` as seconds or an HTTP date.
fn retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(SystemTime::now()).unwrap_or_default())
}

/// A request's protobuf bytes as sent: gzipped if configured.
fn body(bytes: Vec<u8>, gzip: bool) -> Bytes {
    if !gzip {
        return Bytes::from(bytes);
    }
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    match gz.write_all(&bytes).and_then(|_| gz.finish()) {
        Ok(compressed) => Bytes::from(compressed),
        // Writing to a Vec does not fail; should it, the request is empty and rejected.
        Err(_) => Bytes::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_takes_seconds_or_a_date() {
        assert_eq!(retry_after("3"), Some(Duration::from_secs(3)));
        let soon = SystemTime::now() + Duration::from_secs(120);
        let d = retry_after(&httpdate::fmt_http_date(soon)).unwrap();
        assert!(
            d > Duration::from_secs(100) && d <= Duration::from_secs(120),
            "{d:?}"
        );
        assert_eq!(
            retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after("soon"), None);
    }
}
