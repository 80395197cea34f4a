//! OTLP push against a receiver on loopback that decodes with the official OTLP protobuf
//! definitions (the opentelemetry-proto crate): what is pushed equals /metrics for the same poll.

mod common;

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::io::Read;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_workflow_exporter::otlp::{self, OtlpConfig};
use aws_workflow_exporter::simulator::{demo, Simulator, ACCOUNT_ID, REGION};
use bytes::Bytes;
use common::{Harness, Scrape};
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{metric, number_data_point, AggregationTemporality};
use prost::Message;
use tokio::net::TcpListener;
use tokio::sync::watch;

const ALL: &[&str] = &["sfn_map_runs", "transfer_workflows", "appflow_flows"];

/// An answer the receiver gives: status and Retry-After.
type Reply = (u16, Option<&'static str>);

/// One request as the receiver saw it.
#[derive(Clone)]
struct Received {
    at: Instant,
    headers: BTreeMap<String, String>,
    request: ExportMetricsServiceRequest,
}

/// An OTLP/HTTP receiver: decodes every POST, answers from `replies` (then 200).
#[derive(Clone, Default)]
struct Receiver {
    received: Arc<Mutex<Vec<Received>>>,
    /// (status, Retry-After) answers to give, in order.
    replies: Arc<Mutex<VecDeque<Reply>>>,
}

impl Receiver {
    async fn start(replies: &[Reply]) -> (Self, SocketAddr) {
        Self::start_with(replies, None).await
    }

    /// With `tls`, the receiver speaks HTTPS with that server configuration.
    async fn start_with(
        replies: &[Reply],
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) -> (Self, SocketAddr) {
        let receiver = Receiver::default();
        receiver.replies.lock().unwrap().extend(replies);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let r = receiver.clone();
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let r = r.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let r = r.clone();
                        async move { Ok::<_, Infallible>(r.handle(req).await) }
                    });
                    let http = hyper::server::conn::http1::Builder::new();
                    match tls {
                        None => {
                            let _ = http.serve_connection(TokioIo::new(stream), service).await;
                        }
                        // A client that does not trust the certificate fails the handshake here.
                        Some(tls) => {
                            if let Ok(stream) = tls.accept(stream).await {
                                let _ = http.serve_connection(TokioIo::new(stream), service).await;
                            }
                        }
                    }
                });
            }
        });
        (receiver, addr)
    }

    async fn handle(&self, req: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
        assert_eq!(req.method(), hyper::Method::POST);
        assert_eq!(req.uri().path(), "/v1/metrics");
        let headers: BTreeMap<String, String> = req
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap().to_owned()))
            .collect();
        let body = req.into_body().collect().await.unwrap().to_bytes();
        let body = if headers.get("content-encoding").map(String::as_str) == Some("gzip") {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(&body[..])
                .read_to_end(&mut out)
                .expect("valid gzip");
            Bytes::from(out)
        } else {
            body
        };
        let request = ExportMetricsServiceRequest::decode(body).expect("a valid OTLP request");
        self.received.lock().unwrap().push(Received {
            at: Instant::now(),
            headers,
            request,
        });
        let (status, retry_after) = self
            .replies
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or((200, None));
        let mut resp = Response::builder()
            .status(status)
            .header("content-type", "application/x-protobuf");
        if let Some(after) = retry_after {
            resp = resp.header("retry-after", after);
        }
        resp.body(Full::new(Bytes::new())).unwrap()
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// Waits (with a deadline) until at least `n` requests have arrived.
    async fn wait_for(&self, n: usize) -> Vec<Received> {
        let what = format!("{n} pushes arrive");
        common::wait_for(&what, async || {
            Some(self.received()).filter(|got| got.len() >= n)
        })
        .await
    }
}

fn push_config(addr: SocketAddr) -> OtlpConfig {
    OtlpConfig {
        endpoint: format!("http://{addr}/v1/metrics"),
        headers: BTreeMap::from([("authorization".into(), "Bearer t0ken".into())]),
        timeout: Duration::from_secs(5),
        gzip: true,
        interval: Duration::from_millis(200),
        certificate: None,
        resource_attributes: BTreeMap::new(),
        max_points_per_request: otlp::config::DEFAULT_MAX_POINTS_PER_REQUEST,
    }
}

/// A harness polling the seeded simulator once, with OTLP push running to `addr`.
async fn start_pushing(addr: SocketAddr) -> (Harness, watch::Sender<bool>) {
    // The push's settings in the configuration, as the daemon has them.
    let mut h = Harness::start(ALL, |c| c.otlp = Some(push_config(addr))).await;
    demo::seed(&mut h.world());
    h.poll().await;
    let (tx, rx) = watch::channel(false);
    tokio::spawn(otlp::run(
        push_config(addr),
        h.exporter.http_state().hub,
        rx,
    ));
    (h, tx)
}

fn string_attrs(kvs: &[KeyValue]) -> BTreeMap<String, String> {
    kvs.iter()
        .map(|kv| {
            let value = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(any_value::Value::StringValue(s)) => s.clone(),
                other => panic!("attribute {} is not a string: {other:?}", kv.key),
            };
            (kv.key.clone(), value)
        })
        .collect()
}

fn resource(req: &ExportMetricsServiceRequest) -> BTreeMap<String, String> {
    string_attrs(
        &req.resource_metrics[0]
            .resource
            .as_ref()
            .unwrap()
            .attributes,
    )
}

fn number(v: &Option<number_data_point::Value>) -> f64 {
    match v {
        Some(number_data_point::Value::AsDouble(d)) => *d,
        Some(number_data_point::Value::AsInt(i)) => *i as f64,
        None => panic!("data point without a value"),
    }
}

/// The samples a request carries, as the Prometheus text format would name them.
fn as_samples(req: &ExportMetricsServiceRequest) -> Vec<common::Sample> {
    let cumulative = AggregationTemporality::Cumulative as i32;
    let mut out = Vec::new();
    let sample = |name: String, labels: BTreeMap<String, String>, value: f64| common::Sample {
        name,
        labels,
        value,
    };
    for m in &req.resource_metrics[0].scope_metrics[0].metrics {
        match m.data.as_ref().expect("metric data") {
            metric::Data::Gauge(g) => {
                for p in &g.data_points {
                    out.push(sample(
                        m.name.clone(),
                        string_attrs(&p.attributes),
                        number(&p.value),
                    ));
                }
            }
            metric::Data::Sum(s) => {
                assert!(s.is_monotonic, "{} is not monotonic", m.name);
                assert_eq!(s.aggregation_temporality, cumulative, "{}", m.name);
                assert!(!m.name.ends_with("_total"), "{} keeps _total", m.name);
                for p in &s.data_points {
                    assert!(
                        p.start_time_unix_nano > 0 && p.start_time_unix_nano <= p.time_unix_nano
                    );
                    let name = format!("{}_total", m.name);
                    out.push(sample(name, string_attrs(&p.attributes), number(&p.value)));
                }
            }
            metric::Data::Histogram(h) => {
                assert_eq!(h.aggregation_temporality, cumulative, "{}", m.name);
                for p in &h.data_points {
                    let attrs = string_attrs(&p.attributes);
                    assert_eq!(p.bucket_counts.len(), p.explicit_bounds.len() + 1);
                    let mut cumulative = 0;
                    for (i, n) in p.bucket_counts.iter().enumerate() {
                        cumulative += n;
                        let le = p
                            .explicit_bounds
                            .get(i)
                            .map(|b| b.to_string())
                            .unwrap_or_else(|| "+Inf".into());
                        let mut labels = attrs.clone();
                        labels.insert("le".into(), le);
                        out.push(sample(
                            format!("{}_bucket", m.name),
                            labels,
                            cumulative as f64,
                        ));
                    }
                    out.push(sample(
                        format!("{}_sum", m.name),
                        attrs.clone(),
                        p.sum.unwrap(),
                    ));
                    out.push(sample(format!("{}_count", m.name), attrs, p.count as f64));
                }
            }
            other => panic!("{}: unexpected kind {other:?}", m.name),
        }
    }
    out
}

/// Every /metrics sample is in the push with the same value, and nothing else is.
fn assert_same_as_scrape(req: &ExportMetricsServiceRequest, scrape: &Scrape) {
    let key = |s: &common::Sample| {
        let mut labels = s.labels.clone();
        // `le` as Rust prints the bound, so 0.5 and 0.50 compare equal.
        if let Some(le) = labels.get_mut("le") {
            if le != "+Inf" {
                *le = le.parse::<f64>().unwrap().to_string();
            }
        }
        format!("{}{labels:?}", s.name)
    };
    let pushed: BTreeMap<String, f64> = as_samples(req).iter().map(|s| (key(s), s.value)).collect();
    let scraped: BTreeMap<String, f64> = scrape.samples.iter().map(|s| (key(s), s.value)).collect();
    let only_scraped: Vec<_> = scraped
        .keys()
        .filter(|k| !pushed.contains_key(*k))
        .collect();
    let only_pushed: Vec<_> = pushed
        .keys()
        .filter(|k| !scraped.contains_key(*k))
        .collect();
    assert!(
        only_scraped.is_empty() && only_pushed.is_empty(),
        "only on /metrics: {only_scraped:#?}\nonly pushed: {only_pushed:#?}"
    );
    for (k, v) in &scraped {
        assert_eq!(pushed[k], *v, "{k}");
    }
    // Kinds follow the # TYPE lines.
    let kinds: BTreeMap<&str, &metric::Data> = req.resource_metrics[0].scope_metrics[0]
        .metrics
        .iter()
        .map(|m| (m.name.as_str(), m.data.as_ref().unwrap()))
        .collect();
    for line in scrape
        .text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
    {
        let (name, kind) = line.split_once(' ').unwrap();
        let ok = match kind {
            "counter" => matches!(
                kinds[name.strip_suffix("_total").unwrap_or(name)],
                metric::Data::Sum(_)
            ),
            "gauge" => matches!(kinds[name], metric::Data::Gauge(_)),
            "histogram" => matches!(kinds[name], metric::Data::Histogram(_)),
            other => panic!("unexpected type {other}"),
        };
        assert!(ok, "{name} is a {kind} on /metrics but not in the push");
    }
}

/// (series key, start) of every cumulative point.
fn starts(req: &ExportMetricsServiceRequest) -> BTreeMap<String, (u64, u64)> {
    let mut out = BTreeMap::new();
    for m in &req.resource_metrics[0].scope_metrics[0].metrics {
        macro_rules! start_and_time {
            ($points:expr) => {
                $points
                    .iter()
                    .map(|p| {
                        (
                            p.attributes.clone(),
                            p.start_time_unix_nano,
                            p.time_unix_nano,
                        )
                    })
                    .collect()
            };
        }
        let points: Vec<(Vec<KeyValue>, u64, u64)> = match m.data.as_ref().unwrap() {
            metric::Data::Sum(s) => start_and_time!(s.data_points),
            metric::Data::Histogram(h) => start_and_time!(h.data_points),
            _ => continue,
        };
        for (attrs, start, time) in points {
            out.insert(
                format!("{}{:?}", m.name, string_attrs(&attrs)),
                (start, time),
            );
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_equals_metrics_for_the_same_poll_with_gzip_headers_and_stable_starts() {
    let (receiver, addr) = Receiver::start(&[]).await;
    let (mut h, _stop) = start_pushing(addr).await;
    let scrape = h.scrape().await;
    assert!(scrape.count("aws_workflow_exporter_otlp_exports_total", &[]) == 0);
    let pushes = receiver.wait_for(2).await;
    let first = &pushes[0];
    assert_eq!(first.headers["content-type"], "application/x-protobuf");
    assert_eq!(first.headers["content-encoding"], "gzip");
    assert_eq!(first.headers["authorization"], "Bearer t0ken");
    // Every kind of metric is there: the seeded scenario has map runs, transfer and AppFlow runs.
    for name in [
        "aws_workflow_exporter_api_request_duration_seconds_bucket",
        "aws_workflow_exporter_api_requests_total",
        "aws_workflow_exporter_build_info",
    ] {
        assert!(scrape.count(name, &[]) > 0, "{name} missing on /metrics");
    }
    assert_same_as_scrape(&first.request, &scrape);
    assert_same_as_scrape(&pushes[1].request, &scrape);

    let res = resource(&first.request);
    assert_eq!(res["service.name"], "aws-workflow-exporter");
    assert_eq!(res["service.version"], env!("CARGO_PKG_VERSION"));
    assert!(!res["service.instance.id"].is_empty());
    assert_eq!(res["cloud.provider"], "aws");
    assert_eq!(res["cloud.account.id"], ACCOUNT_ID);
    assert_eq!(res["cloud.region"], REGION);

    // Start timestamps stay put across pushes while time moves on, also after another poll.
    let before = starts(&pushes[1].request);
    assert!(!before.is_empty());
    for (series, (start, time)) in starts(&first.request) {
        let (start2, time2) = before[&series];
        assert_eq!(start, start2, "{series}");
        assert!(time2 > time, "{series}");
    }
    h.poll().await;
    let after_poll = receiver.wait_for(pushes.len() + 2).await;
    let later = starts(&after_poll.last().unwrap().request);
    for (series, (start, _)) in &before {
        if let Some((start2, _)) = later.get(series) {
            assert_eq!(start, start2, "{series} restarted");
        }
    }
    // The second poll made the OTLP self-metrics visible on /metrics.
    let scrape = h.scrape().await;
    assert!(
        scrape
            .value(
                "aws_workflow_exporter_otlp_exports_total",
                &[("outcome", "success")]
            )
            .unwrap()
            >= 2.0
    );
    assert!(
        scrape
            .value(
                "aws_workflow_exporter_otlp_export_duration_seconds_count",
                &[]
            )
            .unwrap()
            >= 2.0
    );
    common::assert_promtool_clean(&scrape.text);
}

/// The time of a request's first data point: every point of one push carries the push's time.
fn push_time(req: &ExportMetricsServiceRequest) -> u64 {
    let m = &req.resource_metrics[0].scope_metrics[0].metrics[0];
    match m.data.as_ref().expect("metric data") {
        metric::Data::Gauge(g) => g.data_points[0].time_unix_nano,
        metric::Data::Sum(s) => s.data_points[0].time_unix_nano,
        metric::Data::Histogram(h) => h.data_points[0].time_unix_nano,
        other => panic!("unexpected data {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_over_the_request_limit_is_split_and_the_parts_equal_metrics() {
    const LIMIT: usize = 25;
    let (receiver, addr) = Receiver::start(&[]).await;
    let mut h = Harness::start(ALL, |c| c.otlp = Some(push_config(addr))).await;
    demo::seed(&mut h.world());
    h.poll().await;
    let config = OtlpConfig {
        max_points_per_request: LIMIT,
        ..push_config(addr)
    };
    let (_stop, rx) = watch::channel(false);
    tokio::spawn(otlp::run(config, h.exporter.http_state().hub, rx));
    let scrape = h.scrape().await;
    // The first push is every request up to the first one of the next push.
    let mut n = 2;
    let first_push = loop {
        let got = receiver.wait_for(n).await;
        let t0 = push_time(&got[0].request);
        if let Some(end) = got.iter().position(|r| push_time(&r.request) != t0) {
            break got[..end].to_vec();
        }
        n = got.len() + 1;
    };
    assert!(first_push.len() > 1, "{} request(s)", first_push.len());
    let mut merged = first_push[0].request.clone();
    for part in &first_push {
        let metrics = &part.request.resource_metrics[0].scope_metrics[0].metrics;
        let points = as_samples(&part.request)
            .iter()
            .filter(|s| !s.name.ends_with("_bucket") && !s.name.ends_with("_sum"))
            .count();
        assert!(points <= LIMIT, "{points} points in one request");
        assert_eq!(resource(&part.request), resource(&first_push[0].request));
        if !std::ptr::eq(part, &first_push[0]) {
            merged.resource_metrics[0].scope_metrics[0]
                .metrics
                .extend(metrics.iter().cloned());
        }
    }
    assert_same_as_scrape(&merged, &scrape);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_poll_is_pushed_at_shutdown() {
    let (receiver, addr) = Receiver::start(&[]).await;
    let mut h = Harness::start(ALL, |c| c.otlp = Some(push_config(addr))).await;
    demo::seed(&mut h.world());
    h.poll().await;
    // No push falls due before the shutdown: only the one at shutdown sends anything.
    let config = OtlpConfig {
        interval: Duration::from_secs(3600),
        ..push_config(addr)
    };
    let (stop, rx) = watch::channel(false);
    let pusher = tokio::spawn(otlp::run(config, h.exporter.http_state().hub, rx));
    let scrape = h.scrape().await;
    assert!(receiver.received().is_empty());
    stop.send(true).expect("the pusher listens");
    tokio::time::timeout(Duration::from_secs(20), pusher)
        .await
        .expect("the pusher ends after its last push")
        .expect("the pusher does not panic");
    let pushed = receiver.received();
    assert_eq!(pushed.len(), 1, "one push of one request");
    assert_same_as_scrape(&pushed[0].request, &scrape);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_receiver_is_retried_after_retry_after_counted_and_recovers() {
    // 503 with Retry-After: retried after 1s; then 500: not retryable, that push is dropped;
    // then the receiver is healthy again.
    let (receiver, addr) = Receiver::start(&[(503, Some("1")), (500, None)]).await;
    let (mut h, _stop) = start_pushing(addr).await;
    let pushes = receiver.wait_for(3).await;
    let waited = pushes[1].at - pushes[0].at;
    assert!(
        waited >= Duration::from_millis(950),
        "retried after {waited:?}, not Retry-After"
    );
    // Polling and /metrics go on meanwhile; the next poll publishes the counters.
    h.poll().await;
    let scrape = h.scrape().await;
    let count = |outcome| {
        scrape
            .value(
                "aws_workflow_exporter_otlp_exports_total",
                &[("outcome", outcome)],
            )
            .unwrap()
    };
    assert_eq!(count("retryable_error"), 1.0);
    assert_eq!(count("rejected"), 1.0);
    assert!(count("success") >= 1.0);
    assert_eq!(
        scrape
            .value(
                "aws_workflow_exporter_otlp_export_duration_seconds_count",
                &[]
            )
            .unwrap(),
        count("retryable_error") + count("rejected") + count("success")
    );
    // The push after the recovery carries the same data as /metrics had before.
    assert_eq!(
        resource(&pushes[2].request)["service.name"],
        "aws-workflow-exporter"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_is_down_costs_nothing_to_polling_and_scrapes() {
    // Nothing listens on this port: every push is a connection failure, retried with backoff.
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let (mut h, _stop) = start_pushing(addr).await;
    let scrape = common::wait_for("two failed exports are counted", async || {
        h.poll().await;
        let scrape = h.scrape().await;
        assert_eq!(
            scrape.value(
                "aws_workflow_exporter_poll_success",
                &[("source", "sfn_map_runs")]
            ),
            Some(1.0)
        );
        let failed = scrape
            .value(
                "aws_workflow_exporter_otlp_exports_total",
                &[("outcome", "retryable_error")],
            )
            .unwrap_or(0.0);
        (failed >= 2.0).then_some(scrape)
    })
    .await;
    assert_eq!(
        scrape.value(
            "aws_workflow_exporter_otlp_exports_total",
            &[("outcome", "success")]
        ),
        Some(0.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_is_configured_by_the_otel_environment_alone() {
    let sim = Simulator::start().await.unwrap();
    demo::seed(&mut sim.world());
    let (receiver, addr) = Receiver::start(&[]).await;
    // The file configures what to poll and nothing about OTLP.
    let _daemon = common::Binary::new()
        .config(&format!(
            "aws_api:\n  quota_share: 1.0\ntargets:\n  - name: sim\n    regions: [{REGION}]\n    endpoint_url: {}\n",
            sim.endpoint
        ))
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{addr}"))
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
        .env("OTEL_METRIC_EXPORT_INTERVAL", "300")
        .env("OTEL_EXPORTER_OTLP_TIMEOUT", "5000")
        .env("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip")
        .env("OTEL_EXPORTER_OTLP_HEADERS", "x-tenant=team%20a,x-other=1")
        .env("OTEL_SERVICE_NAME", "workflows-ci")
        .env(
            "OTEL_RESOURCE_ATTRIBUTES",
            "deployment.environment=ci,service.name=ignored",
        )
        .start();
    // Wait for a push made after the first poll of the Step Functions source.
    let push = common::wait_for("a push after the first poll", async || {
        receiver.received().into_iter().find(|r| {
            as_samples(&r.request).iter().any(|s| {
                s.name == "aws_workflow_exporter_poll_success"
                    && s.labels.get("source").map(String::as_str) == Some("sfn_map_runs")
                    && s.value == 1.0
            })
        })
    })
    .await;
    assert_eq!(push.headers["x-tenant"], "team a");
    assert_eq!(push.headers["x-other"], "1");
    assert_eq!(push.headers["content-encoding"], "gzip");
    let res = resource(&push.request);
    assert_eq!(res["service.name"], "workflows-ci");
    assert_eq!(res["deployment.environment"], "ci");
    assert_eq!(res["cloud.account.id"], ACCOUNT_ID);
    let samples = as_samples(&push.request);
    assert!(samples
        .iter()
        .any(|s| s.name.starts_with("aws_sfn_map_run")));
}

#[test]
fn grpc_is_refused_with_a_clear_error() {
    let out = common::Binary::new()
        .args(["--web.listen-address", "127.0.0.1:0"])
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317")
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
        .run();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("OTEL_EXPORTER_OTLP_PROTOCOL (environment): `grpc` is not supported: use `http/protobuf`"),
        "{stderr}"
    );
}

fn fixture(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/otlp-tls")
        .join(name)
}

fn tls_acceptor() -> tokio_rustls::TlsAcceptor {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(fixture("server.pem"))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(fixture("server.key")).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_to_the_receiver_trusts_the_configured_ca_and_only_it() {
    // Trusting the test CA: pushes arrive over HTTPS.
    let (receiver, addr) = Receiver::start_with(&[], Some(tls_acceptor())).await;
    let mut h = Harness::start(ALL, |_| {}).await;
    h.poll().await;
    let hub = h.exporter.http_state().hub;
    let (_stop, rx) = watch::channel(false);
    let mut config = push_config(addr);
    config.endpoint = format!("https://{addr}/v1/metrics");
    config.certificate = Some(fixture("ca.pem"));
    tokio::spawn(otlp::run(config.clone(), hub, rx));
    let pushes = receiver.wait_for(1).await;
    assert_eq!(resource(&pushes[0].request)["cloud.provider"], "aws");

    // With the system roots only, the receiver's certificate is refused: nothing arrives, and
    // the failures are counted as retryable.
    let (untrusted, addr) = Receiver::start_with(&[], Some(tls_acceptor())).await;
    let mut h = Harness::start(ALL, |_| {}).await;
    let (_stop2, rx) = watch::channel(false);
    config.endpoint = format!("https://{addr}/v1/metrics");
    config.certificate = None;
    tokio::spawn(otlp::run(config, h.exporter.http_state().hub, rx));
    common::wait_until("a failed TLS export is counted", async || {
        h.poll().await;
        let failed = h
            .scrape()
            .await
            .value(
                "aws_workflow_exporter_otlp_exports_total",
                &[("outcome", "retryable_error")],
            )
            .unwrap_or(0.0);
        failed >= 1.0
    })
    .await;
    assert!(untrusted.received().is_empty());
}
