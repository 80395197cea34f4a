//! The HTTP server: /metrics from the cached exposition, /healthz, /readyz and a landing page.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ACCEPT_ENCODING, CONTENT_ENCODING, CONTENT_TYPE, VARY};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::exposition::hub::MetricsHub;
use crate::scheduler::{Readiness, SHUTDOWN_GRACE};

const EXPOSITION_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

const LANDING: &str = r#"<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>aws-workflow-exporter</title></head>
<body><h1>aws-workflow-exporter</h1>
<p>Prometheus metrics for AWS Step Functions Map Runs, Transfer Family workflows and AppFlow flow runs.</p>
<ul><li><a href="/metrics">/metrics</a>: the metrics, as of the last poll</li>
<li><a href="/healthz">/healthz</a>: liveness</li>
<li><a href="/readyz">/readyz</a>: readiness (every source has polled once)</li></ul>
</body></html>
"#;

#[derive(Debug, Clone)]
pub struct HttpState {
    pub hub: Arc<MetricsHub>,
    pub readiness: Arc<Readiness>,
}

fn text(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(body.into()));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

fn accepts_gzip(req: &Request<Incoming>) -> bool {
    req.headers()
        .get_all(ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|enc| {
            let mut parts = enc.split(';');
            let name = parts.next().unwrap_or("").trim();
            let refused = parts.any(|p| p.trim().replace(' ', "") == "q=0");
            name.eq_ignore_ascii_case("gzip") && !refused
        })
}

pub fn handle(state: &HttpState, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain; charset=utf-8",
            "method not allowed\n",
        );
    }
    match req.uri().path() {
        "/metrics" => {
            let exposition = state.hub.current();
            let gzip = accepts_gzip(req) && !exposition.gzip.is_empty();
            let body = if gzip {
                exposition.gzip.clone()
            } else {
                exposition.plain.clone()
            };
            let mut resp = text(StatusCode::OK, EXPOSITION_CONTENT_TYPE, body);
            resp.headers_mut()
                .insert(VARY, HeaderValue::from_static("Accept-Encoding"));
            if gzip {
                resp.headers_mut()
                    .insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            }
            resp
        }
        "/healthz" => text(StatusCode::OK, "text/plain; charset=utf-8", "ok\n"),
        "/readyz" => {
            let pending = state.readiness.pending();
            if pending.is_empty() {
                text(StatusCode::OK, "text/plain; charset=utf-8", "ready\n")
            } else {
                let body = format!("waiting for a first poll of: {}\n", pending.join(", "));
                text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain; charset=utf-8",
                    body,
                )
            }
        }
        "/" => text(StatusCode::OK, "text/html; charset=utf-8", LANDING),
        _ => text(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "not found\n",
        ),
    }
}

/// Serves until `shutdown` turns true, then lets in-flight requests finish (bounded).
pub async fn serve(listener: TcpListener, state: HttpState, mut shutdown: watch::Receiver<bool>) {
    let graceful = GracefulShutdown::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _) = match accepted {
                    Ok(conn) => conn,
                    Err(e) => {
                        tracing::warn!(error = %e, "accepting a connection failed");
                        continue;
                    }
                };
                let state = state.clone();
                let service = service_fn(move |req: Request<Incoming>| {
                    let resp = handle(&state, &req);
                    async move { Ok::<_, Infallible>(resp) }
                });
                let conn = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                });
            }
            _ = shutdown.changed() => break,
        }
    }
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("some HTTP connections were still open at shutdown");
    }
}
