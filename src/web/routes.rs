//! What the server answers: basic auth, /metrics (the cached exposition), /healthz, /readyz, the
//! status page and its JSON, the lifecycle endpoints and a landing page, plus the web config's
//! response headers. Authentication applies to every path alike.

use std::sync::Arc;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::header::{
    HeaderValue, ACCEPT_ENCODING, ALLOW, AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, VARY,
    WWW_AUTHENTICATE,
};
use hyper::{Request, Response, StatusCode};
use tokio::sync::oneshot;

use super::{Chunks, Web};
use crate::exposition::hub::MetricsHub;
use crate::scheduler::Readiness;

const EXPOSITION_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
const TEXT: &str = "text/plain; charset=utf-8";
/// How many waiting source instances a /readyz answer names (it counts them all).
const READYZ_NAMED: usize = 10;

fn landing(telemetry_path: &str) -> String {
    format!(
        r#"<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>aws-workflow-exporter</title></head>
<body><h1>aws-workflow-exporter</h1>
<p>Prometheus metrics for AWS Step Functions Map Runs, Transfer Family workflows and AppFlow flow runs.</p>
<ul><li><a href="{telemetry_path}">{telemetry_path}</a>: the metrics, as of the last poll</li>
<li><a href="/status">/status</a>: the state of each source, its last errors and the API budget (<a href="/api/v1/status">as JSON</a>)</li>
<li><a href="/healthz">/healthz</a>: liveness</li>
<li><a href="/readyz">/readyz</a>: readiness (every source has polled once)</li></ul>
</body></html>
"#
    )
}

#[derive(Debug, Clone)]
pub struct HttpState {
    pub hub: Arc<MetricsHub>,
    pub readiness: Arc<Readiness>,
}

fn text(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Chunks> {
    let mut resp = Response::new(Chunks::from(body.into()));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

/// The q-value of one `Accept-Encoding` element (`gzip;q=0.5`): 1 when absent, 0 when unparsable.
fn qvalue(params: &str) -> f32 {
    params
        .split(';')
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("q"))
        .map(|(_, v)| v.trim().parse::<f32>().unwrap_or(0.0))
        .unwrap_or(1.0)
}

/// Whether the client accepts gzip: `gzip` with q > 0, or else `*` with q > 0 (RFC 9110 12.5.3).
fn accepts_gzip(req: &Request<Incoming>) -> bool {
    let mut gzip = None;
    let mut any = None;
    for element in req
        .headers()
        .get_all(ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
    {
        let (name, params) = element.split_once(';').unwrap_or((element, ""));
        let name = name.trim();
        if name.eq_ignore_ascii_case("gzip") || name.eq_ignore_ascii_case("x-gzip") {
            gzip = Some(qvalue(params));
        } else if name == "*" {
            any = Some(qvalue(params));
        }
    }
    gzip.or(any).is_some_and(|q| q > 0.0)
}

/// The methods a path answers to, for 405 and `Allow`; `None`: no such path.
fn allowed_methods(web: &Web, path: &str) -> Option<&'static str> {
    match path {
        "/-/reload" | "/-/quit" => Some("POST, PUT"),
        "/healthz" | "/readyz" | "/" | "/status" | "/api/v1/status" => Some("GET, HEAD"),
        p if p == web.telemetry_path => Some("GET, HEAD"),
        _ => None,
    }
}

/// Answers one request: authentication first, then the route, then the configured headers.
pub async fn respond(web: &Web, state: &HttpState, req: Request<Incoming>) -> Response<Chunks> {
    let config = web.config.current();
    let mut resp = match &config.auth {
        Some(auth) if !auth.check(req.headers().get(AUTHORIZATION)).await => {
            let mut r = text(StatusCode::UNAUTHORIZED, TEXT, "Unauthorized\n");
            r.headers_mut()
                .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Basic"));
            r
        }
        _ => route(web, state, &req).await,
    };
    for (name, value) in &config.headers {
        resp.headers_mut().insert(name.clone(), value.clone());
    }
    resp
}

async fn route(web: &Web, state: &HttpState, req: &Request<Incoming>) -> Response<Chunks> {
    let path = req.uri().path();
    let Some(allow) = allowed_methods(web, path) else {
        return text(StatusCode::NOT_FOUND, TEXT, "not found\n");
    };
    if !allow.split(", ").any(|m| m == req.method().as_str()) {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, TEXT, "method not allowed\n");
        r.headers_mut()
            .insert(ALLOW, HeaderValue::from_static(allow));
        return r;
    }
    match path {
        "/-/reload" | "/-/quit" => lifecycle(web, path).await,
        "/healthz" => text(StatusCode::OK, TEXT, "ok\n"),
        "/readyz" => {
            // A probe may come every second while hundreds of targets start: it names a few.
            let (count, named) = state
                .readiness
                .pending(state.hub.current().covers, READYZ_NAMED);
            if count == 0 {
                text(StatusCode::OK, TEXT, "ready\n")
            } else {
                let more = count - named.len();
                let body = format!(
                    "waiting for a first poll of {count} source instance(s): {}{}\n",
                    named.join(", "),
                    if more > 0 {
                        format!(" and {more} more")
                    } else {
                        String::new()
                    }
                );
                text(StatusCode::SERVICE_UNAVAILABLE, TEXT, body)
            }
        }
        "/" => text(
            StatusCode::OK,
            "text/html; charset=utf-8",
            landing(&web.telemetry_path),
        ),
        "/status" => text(
            StatusCode::OK,
            "text/html; charset=utf-8",
            super::status_page::render(&status_report(state)),
        ),
        "/api/v1/status" => match serde_json::to_vec_pretty(&status_report(state)) {
            Ok(body) => text(StatusCode::OK, "application/json", body),
            Err(e) => text(
                StatusCode::INTERNAL_SERVER_ERROR,
                TEXT,
                format!("cannot encode the status: {e}\n"),
            ),
        },
        _ => metrics(state, req),
    }
}

fn status_report(state: &HttpState) -> crate::status::StatusReport {
    state
        .hub
        .self_metrics()
        .status()
        .report(crate::clock::unix_now())
}

fn metrics(state: &HttpState, req: &Request<Incoming>) -> Response<Chunks> {
    let exposition = state.hub.current();
    let gzip = accepts_gzip(req) && !exposition.gzip.is_empty();
    let mut resp = text(StatusCode::OK, EXPOSITION_CONTENT_TYPE, Bytes::new());
    *resp.body_mut() = if gzip {
        Chunks::new(exposition.gzip.clone())
    } else {
        Chunks::new(exposition.chunks.clone())
    };
    resp.headers_mut()
        .insert(VARY, HeaderValue::from_static("Accept-Encoding"));
    if gzip {
        resp.headers_mut()
            .insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    resp
}

/// `/-/reload` and `/-/quit`, answered only with `--web.enable-lifecycle`, as Prometheus does.
async fn lifecycle(web: &Web, path: &str) -> Response<Chunks> {
    let Some(lifecycle) = &web.lifecycle else {
        return text(
            StatusCode::FORBIDDEN,
            TEXT,
            "Lifecycle API is not enabled.\n",
        );
    };
    if path == "/-/quit" {
        let _ = lifecycle.quit.send(true);
        return text(StatusCode::OK, TEXT, "Requesting termination... Goodbye!\n");
    }
    let (reply, outcome) = oneshot::channel();
    if lifecycle.reload.send(reply).await.is_err() {
        return text(StatusCode::SERVICE_UNAVAILABLE, TEXT, "shutting down\n");
    }
    match outcome.await {
        Ok(Ok(())) => text(StatusCode::OK, TEXT, "reloaded\n"),
        Ok(Err(message)) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            TEXT,
            format!("failed to reload config: {message}\n"),
        ),
        Err(_) => text(StatusCode::SERVICE_UNAVAILABLE, TEXT, "shutting down\n"),
    }
}
