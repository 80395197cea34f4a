//! An AWS endpoint on loopback that speaks the wire protocols the exporter uses (Step Functions
//! awsJson1_0, Transfer Family awsJson1_1, AppFlow restJson1, STS query for GetCallerIdentity), answering from an
//! in-memory world that tests and the demo script. It records every request and can inject faults (throttling, HTTP 500, delay).

pub mod appflow;
pub mod demo;
pub mod sfn;
pub mod transfer;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::watch;

pub const ACCOUNT_ID: &str = "123456789012";
pub const REGION: &str = "us-east-1";

/// An error answer in AWS's JSON shape.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status: 400,
            code,
            message: message.into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FaultKind {
    /// HTTP 400 ThrottlingException.
    Throttle,
    /// HTTP 500.
    ServerError,
    /// Answers normally after this long.
    Delay(Duration),
}

/// A fault injected into matching requests.
#[derive(Debug, Clone)]
pub struct Fault {
    pub service: &'static str,
    pub operation: &'static str,
    /// Only requests whose body contains this text (e.g. one map run's ARN); `None` matches all.
    pub body_contains: Option<String>,
    pub kind: FaultKind,
    /// How many more requests it applies to; `None` for as long as it is installed.
    pub remaining: Option<u32>,
}

/// One request the simulator answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub service: &'static str,
    pub operation: String,
    /// The access key id the request was signed with, which tells clients apart.
    pub access_key: String,
    /// The request body as sent.
    pub body: String,
}

/// Everything the simulator knows; tests lock it to script scenarios and read the request log.
#[derive(Debug, Default)]
pub struct World {
    pub sfn: sfn::SfnWorld,
    pub transfer: transfer::TransferWorld,
    pub appflow: appflow::AppflowWorld,
    pub faults: Vec<Fault>,
    pub calls: Vec<Call>,
}

impl World {
    /// How many requests of `service`/`operation` were answered (faulted ones included).
    pub fn count(&self, service: &str, operation: &str) -> usize {
        self.calls
            .iter()
            .filter(|c| c.service == service && c.operation == operation)
            .count()
    }

    /// Requests per (service, operation) since the log was last cleared.
    pub fn call_counts(&self) -> BTreeMap<(String, String), usize> {
        let mut out = BTreeMap::new();
        for c in &self.calls {
            *out.entry((c.service.to_owned(), c.operation.clone()))
                .or_default() += 1;
        }
        out
    }

    /// Takes the first matching fault, consuming one use of it.
    fn take_fault(&mut self, service: &str, operation: &str, body: &str) -> Option<FaultKind> {
        let idx = self.faults.iter().position(|f| {
            f.service == service
                && f.operation == operation
                && f.body_contains.as_deref().is_none_or(|s| body.contains(s))
                && f.remaining != Some(0)
        })?;
        let fault = &mut self.faults[idx];
        if let Some(n) = &mut fault.remaining {
            *n -= 1;
        }
        Some(fault.kind.clone())
    }
}

/// A running simulator. Dropping it stops the server.
pub struct Simulator {
    pub endpoint: String,
    pub addr: SocketAddr,
    world: Arc<Mutex<World>>,
    _stop: watch::Sender<bool>,
}

impl Simulator {
    /// Starts on an ephemeral port of 127.0.0.1.
    pub async fn start() -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let world = Arc::new(Mutex::new(World::default()));
        let (stop_tx, mut stop_rx) = watch::channel(false);
        let served = world.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((stream, _)) = accepted else { continue };
                        let world = served.clone();
                        tokio::spawn(async move {
                            let service = service_fn(move |req| handle(world.clone(), req));
                            let _ = hyper::server::conn::http1::Builder::new()
                                .serve_connection(TokioIo::new(stream), service)
                                .await;
                        });
                    }
                    _ = stop_rx.changed() => return,
                }
            }
        });
        Ok(Self {
            endpoint: format!("http://{addr}"),
            addr,
            world,
            _stop: stop_tx,
        })
    }

    /// Locks the world to script it or read the request log.
    pub fn world(&self) -> MutexGuard<'_, World> {
        self.world.lock().expect("simulator world lock")
    }

    /// A shared handle, for scenario drivers running in their own task.
    pub fn world_handle(&self) -> Arc<Mutex<World>> {
        self.world.clone()
    }
}

/// Which service and operation a request is for, by the wire protocol's conventions:
/// `X-Amz-Target` for the awsJson protocols, the URI path for restJson1 (AppFlow), the form body
/// for STS's query protocol.
fn route(headers: &hyper::HeaderMap, path: &str, body: &str) -> Option<(&'static str, String)> {
    if let Some(target) = headers.get("x-amz-target").and_then(|v| v.to_str().ok()) {
        let (prefix, op) = target.split_once('.')?;
        let service = match prefix {
            "AWSStepFunctions" => "sfn",
            "TransferService" => "transfer",
            _ => return None,
        };
        return Some((service, op.to_owned()));
    }
    let appflow = match path {
        "/list-flows" => Some("ListFlows"),
        "/describe-flow-execution-records" => Some("DescribeFlowExecutionRecords"),
        "/describe-flow" => Some("DescribeFlow"),
        _ => None,
    };
    if let Some(op) = appflow {
        return Some(("appflow", op.to_owned()));
    }
    if body.contains("Action=GetCallerIdentity") {
        return Some(("sts", "GetCallerIdentity".to_owned()));
    }
    None
}

/// The access key id of a SigV4 `Authorization` header (`... Credential=KEY/date/...`).
fn access_key(headers: &hyper::HeaderMap) -> String {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split("Credential=").nth(1))
        .and_then(|c| c.split('/').next())
        .unwrap_or_default()
        .to_owned()
}

fn json_response(status: u16, content_type: &'static str, value: &Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .header("x-amzn-requestid", "00000000-0000-0000-0000-000000000000")
        .body(Full::new(Bytes::from(value.to_string())))
        .expect("valid response")
}

fn error_response(content_type: &'static str, e: &ApiError) -> Response<Full<Bytes>> {
    let mut resp = json_response(
        e.status,
        content_type,
        &json!({"__type": e.code, "message": e.message}),
    );
    resp.headers_mut().insert(
        "x-amzn-errortype",
        e.code.parse().expect("ascii error code"),
    );
    resp
}

fn caller_identity() -> Response<Full<Bytes>> {
    let xml = format!(
        "<GetCallerIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><GetCallerIdentityResult>\
         <Arn>arn:aws:iam::{ACCOUNT_ID}:user/simulator</Arn><UserId>AIDASIMULATOR</UserId><Account>{ACCOUNT_ID}</Account>\
         </GetCallerIdentityResult><ResponseMetadata><RequestId>1</RequestId></ResponseMetadata></GetCallerIdentityResponse>"
    );
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "text/xml")
        .body(Full::new(Bytes::from(xml)))
        .expect("valid response")
}

async fn handle(
    world: Arc<Mutex<World>>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let bytes = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let Some((service, operation)) = route(&parts.headers, parts.uri.path(), &text) else {
        let e = ApiError::bad_request(
            "UnknownOperationException",
            format!(
                "the simulator does not serve {} {}",
                parts.method,
                parts.uri.path()
            ),
        );
        return Ok(error_response("application/json", &e));
    };
    let content_type = match service {
        "sfn" => "application/x-amz-json-1.0",
        "appflow" => "application/json",
        _ => "application/x-amz-json-1.1",
    };
    let fault = {
        let mut w = world.lock().expect("simulator world lock");
        w.calls.push(Call {
            service,
            operation: operation.clone(),
            access_key: access_key(&parts.headers),
            body: text.clone(),
        });
        w.take_fault(service, &operation, &text)
    };
    match fault {
        Some(FaultKind::Throttle) => {
            let e = ApiError::bad_request("ThrottlingException", "Rate exceeded");
            return Ok(error_response(content_type, &e));
        }
        Some(FaultKind::ServerError) => {
            let e = ApiError {
                status: 500,
                code: "InternalServerError",
                message: "injected fault".into(),
            };
            return Ok(error_response(content_type, &e));
        }
        Some(FaultKind::Delay(d)) => tokio::time::sleep(d).await,
        None => {}
    }
    if service == "sts" {
        return Ok(caller_identity());
    }
    let input: Value = if text.trim().is_empty() {
        json!({})
    } else {
        match serde_json::from_str(&text) {
            Ok(v) => v,
            Err(e) => {
                let e = ApiError::bad_request("SerializationException", e.to_string());
                return Ok(error_response(content_type, &e));
            }
        }
    };
    let result = {
        let mut w = world.lock().expect("simulator world lock");
        match service {
            "sfn" => sfn::handle(&mut w.sfn, &operation, &input),
            "transfer" => transfer::handle(&mut w.transfer, &operation, &input),
            "appflow" => appflow::handle(&mut w.appflow, &operation, &input),
            _ => Err(ApiError::bad_request(
                "UnknownOperationException",
                format!("{service} is not simulated"),
            )),
        }
    };
    Ok(match result {
        Ok(v) => json_response(200, content_type, &v),
        Err(e) => error_response(content_type, &e),
    })
}

/// Pagination shared by every list operation: `nextToken` is the offset of the next page.
pub fn paginate<T: Clone>(
    items: &[T],
    input: &Value,
    max_key: &str,
    token_key: &str,
    default_page: usize,
    page_cap: Option<usize>,
) -> Result<(Vec<T>, Option<String>), ApiError> {
    let mut size = input
        .get(max_key)
        .and_then(Value::as_u64)
        .map(|n| n as usize)
        .unwrap_or(default_page);
    if size == 0 {
        size = default_page;
    }
    if let Some(cap) = page_cap {
        size = size.min(cap);
    }
    let start = match input.get(token_key).and_then(Value::as_str) {
        None => 0,
        Some(t) => t
            .parse::<usize>()
            .ok()
            .filter(|n| *n <= items.len())
            .ok_or_else(|| {
                ApiError::bad_request("InvalidToken", format!("invalid pagination token {t}"))
            })?,
    };
    let end = (start + size).min(items.len());
    let next = (end < items.len()).then(|| end.to_string());
    Ok((items[start..end].to_vec(), next))
}
