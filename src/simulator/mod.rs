//! An AWS endpoint on loopback that speaks the wire protocols the exporter uses (Step Functions
//! awsJson1_0, Transfer Family awsJson1_1, AppFlow restJson1, STS query for GetCallerIdentity
//! and AssumeRole), answering from an in-memory world that tests and the demo script. It records
//! every request and can inject the faults a real endpoint shows (see [`FaultKind`]), per service
//! and operation.

pub mod appflow;
pub mod demo;
pub mod quotas;
pub mod scale;
pub mod sfn;
pub mod transfer;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Either, Full};
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
    /// HTTP 500 InternalServerError.
    ServerError,
    /// HTTP 503 ServiceUnavailable with a `Retry-After` header.
    Unavailable { retry_after_secs: u32 },
    /// HTTP 400 AccessDeniedException (HTTP 403 AccessDenied for STS), as an IAM or SCP deny answers.
    AccessDenied,
    /// HTTP 400 InvalidToken, as AWS answers a pagination token it no longer accepts.
    InvalidToken,
    /// HTTP 200 with an HTML body, as a proxy or captive portal answers.
    NonJsonBody,
    /// HTTP 200 whose body stops halfway: the connection closes before Content-Length bytes.
    TruncatedBody,
    /// The connection closes without an answer, as an endpoint that is down (or blocked) does.
    Reset,
    /// The resource the request names is deleted just before it is answered (the list/describe race).
    DeleteResource,
    /// Answers normally after this long.
    Delay(Duration),
    /// Answers normally, with the same next token on every page, as a broken proxy or endpoint
    /// might: a client that follows it never ends.
    RepeatToken,
}
/// [`Fault::operation`] matching every operation of the service (a throttle storm, an outage).
pub const ANY_OPERATION: &str = "*";

/// Unix seconds now, the clock of the simulator's worlds (for building them in tests and
/// benchmarks).
pub use crate::clock::unix_now;

/// A fault injected into matching requests.
#[derive(Debug, Clone)]
pub struct Fault {
    pub service: &'static str,
    /// An operation name, or [`ANY_OPERATION`] for every operation of the service.
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
    /// The resource the request names: its map run, execution, state machine, workflow or flow.
    pub resource: Option<String>,
    pub at: Instant,
    /// Answered with ThrottlingException (an injected fault or an empty quota bucket).
    pub throttled: bool,
    /// The access key id the request was signed with, which tells clients apart.
    pub access_key: String,
    /// The request body as sent.
    pub body: String,
}

/// The request fields that name the resource a call is about, most specific first.
const RESOURCE_KEYS: [&str; 6] = [
    "mapRunArn",
    "executionArn",
    "stateMachineArn",
    "ExecutionId",
    "WorkflowId",
    "flowName",
];

fn resource_of(input: &Value) -> Option<String> {
    RESOURCE_KEYS
        .iter()
        .find_map(|k| input.get(*k).and_then(Value::as_str))
        .map(str::to_owned)
}

/// Everything the simulator knows; tests lock it to script scenarios and read the request log.
#[derive(Debug, Default)]
pub struct World {
    pub sfn: sfn::SfnWorld,
    pub transfer: transfer::TransferWorld,
    pub appflow: appflow::AppflowWorld,
    /// The organisation's member accounts (AWS Organizations ListAccounts).
    pub organization: Vec<OrgAccount>,
    pub faults: Vec<Fault>,
    pub calls: Vec<Call>,
    /// AWS's per-operation throttling; `None` (the default) never throttles on its own.
    pub quotas: Option<quotas::Quotas>,
    /// Other accounts, by account id: AssumeRole into a role of one of them hands out the access
    /// key [`account_access_key`] of it, and requests signed with that key are answered from its
    /// `sfn`, `transfer` and `appflow` (its other fields are unused). Requests signed with any
    /// other key are answered from this world's own services.
    pub accounts: BTreeMap<String, World>,
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
                && (f.operation == operation || f.operation == ANY_OPERATION)
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

/// Tags as a resource holds them, from the pairs a scenario gives.
pub fn tag_map(tags: &[(&str, &str)]) -> BTreeMap<String, String> {
    tags.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
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
            "AWSOrganizationsV20161128" => "organizations",
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
    for op in ["GetCallerIdentity", "AssumeRole"] {
        if body.contains(&format!("Action={op}&")) || body.ends_with(&format!("Action={op}")) {
            return Some(("sts", op.to_owned()));
        }
    }
    None
}

/// The access key AssumeRole hands out for a role of `account`, when the world has that account.
pub fn account_access_key(account: &str) -> String {
    format!("ASIA{account}")
}

/// The account id in an AssumeRole request's form-encoded `RoleArn`
/// (`arn:aws:iam::ACCOUNT:role/NAME`, `:` encoded as `%3A`).
fn role_account(body: &str) -> Option<String> {
    let arn = body
        .split('&')
        .find_map(|kv| kv.strip_prefix("RoleArn="))?
        .replace("%3A", ":")
        .replace("%3a", ":");
    let account = arn.split(':').nth(4)?;
    (account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit())).then(|| account.to_owned())
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

/// An error in the service's protocol: JSON with `__type` for the JSON protocols, the query
/// protocol's XML `ErrorResponse` for STS.
fn error_response(
    service: &str,
    content_type: &'static str,
    e: &ApiError,
) -> Response<Full<Bytes>> {
    if service == "sts" {
        let xml = format!(
            "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error><Type>Sender</Type>\
             <Code>{}</Code><Message>{}</Message></Error><RequestId>1</RequestId></ErrorResponse>",
            e.code, e.message
        );
        return Response::builder()
            .status(e.status)
            .header("content-type", "text/xml")
            .body(Full::new(Bytes::from(xml)))
            .expect("valid response");
    }
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

/// Who the caller is: a role session of `account` (a role assumed into one of the world's
/// [`World::accounts`]), else the simulator's own user.
fn caller_identity(account: Option<&str>) -> Response<Full<Bytes>> {
    let (account, arn) = match account {
        Some(a) => (
            a,
            format!("arn:aws:sts::{a}:assumed-role/simulator/session"),
        ),
        None => (
            ACCOUNT_ID,
            format!("arn:aws:iam::{ACCOUNT_ID}:user/simulator"),
        ),
    };
    let xml = format!(
        "<GetCallerIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><GetCallerIdentityResult>\
         <Arn>{arn}</Arn><UserId>AIDASIMULATOR</UserId><Account>{account}</Account>\
         </GetCallerIdentityResult><ResponseMetadata><RequestId>1</RequestId></ResponseMetadata></GetCallerIdentityResponse>"
    );
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "text/xml")
        .body(Full::new(Bytes::from(xml)))
        .expect("valid response")
}

/// Credentials for any role asked for; the simulator accepts every signature. A role of one of
/// the world's [`World::accounts`] gets that account's access key, any other `ASIASIMULATOR`.
fn assumed_role(key: &str) -> Response<Full<Bytes>> {
    let expires = "2100-01-01T00:00:00Z";
    let xml = format!(
        "<AssumeRoleResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><AssumeRoleResult>\
         <Credentials><AccessKeyId>{key}</AccessKeyId><SecretAccessKey>simulator</SecretAccessKey>\
         <SessionToken>simulator</SessionToken><Expiration>{expires}</Expiration></Credentials>\
         <AssumedRoleUser><Arn>arn:aws:sts::{ACCOUNT_ID}:assumed-role/simulator/session</Arn>\
         <AssumedRoleId>AROASIMULATOR:session</AssumedRoleId></AssumedRoleUser></AssumeRoleResult>\
         <ResponseMetadata><RequestId>1</RequestId></ResponseMetadata></AssumeRoleResponse>"
    );
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "text/xml")
        .body(Full::new(Bytes::from(xml)))
        .expect("valid response")
}

/// A response body that sends its first part, then fails: hyper has already announced the full
/// length, so it closes the connection mid-body, as a reset or a dying proxy does.
pub struct TruncatedBody {
    part: Option<Bytes>,
    announced: u64,
}

impl hyper::body::Body for TruncatedBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, std::io::Error>>> {
        std::task::Poll::Ready(Some(match self.part.take() {
            Some(part) => Ok(hyper::body::Frame::data(part)),
            None => Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionAborted,
                "injected truncation",
            )),
        }))
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        hyper::body::SizeHint::with_exact(self.announced)
    }
}

type SimBody = Either<Full<Bytes>, TruncatedBody>;

/// The faults that replace the answer, or `None` to answer (after a delay or deletion).
fn fault_response(
    kind: &FaultKind,
    service: &str,
    content_type: &'static str,
    world: &Mutex<World>,
    operation: &str,
    input: &Value,
) -> Option<Result<Response<SimBody>, std::io::Error>> {
    let error = |status, code, message: &str| {
        let e = ApiError {
            status,
            code,
            message: message.to_owned(),
        };
        Some(Ok(
            error_response(service, content_type, &e).map(Either::Left)
        ))
    };
    match kind {
        FaultKind::Throttle => error(400, "ThrottlingException", "Rate exceeded"),
        FaultKind::ServerError => error(500, "InternalServerError", "injected fault"),
        FaultKind::Unavailable { retry_after_secs } => {
            let mut resp = error_response(
                service,
                content_type,
                &ApiError {
                    status: 503,
                    code: "ServiceUnavailableException",
                    message: "Service is unavailable".into(),
                },
            );
            resp.headers_mut()
                .insert("retry-after", (*retry_after_secs).into());
            Some(Ok(resp.map(Either::Left)))
        }
        FaultKind::AccessDenied if service == "sts" => error(
            403,
            "AccessDenied",
            &format!("User is not authorized to perform: sts:{operation} with an explicit deny in a service control policy"),
        ),
        FaultKind::AccessDenied => error(
            400,
            "AccessDeniedException",
            &format!("User is not authorized to perform: {service}:{operation} with an explicit deny"),
        ),
        FaultKind::InvalidToken => error(400, "InvalidToken", "Invalid Token: expired"),
        FaultKind::NonJsonBody => Some(Ok(Response::builder()
            .status(StatusCode::OK)
            .header("content-type", "text/html")
            .body(Either::Left(Full::new(Bytes::from_static(
                b"<html><body><h1>Proxy Authentication Required</h1></body></html>",
            ))))
            .expect("valid response"))),
        FaultKind::TruncatedBody => {
            let full = json!({"message": "x".repeat(200)}).to_string();
            Some(Ok(Response::builder()
                .status(StatusCode::OK)
                .header("content-type", content_type)
                .body(Either::Right(TruncatedBody {
                    part: Some(Bytes::from(full[..full.len() / 2].to_owned())),
                    announced: full.len() as u64,
                }))
                .expect("valid response")))
        }
        FaultKind::Reset => Some(Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "injected outage",
        ))),
        FaultKind::DeleteResource => {
            let mut w = world.lock().expect("simulator world lock");
            match service {
                "sfn" => w.sfn.delete_named(operation, input),
                "transfer" => w.transfer.delete_named(operation, input),
                "appflow" => w.appflow.delete_named(operation, input),
                _ => {}
            }
            None
        }
        FaultKind::Delay(_) | FaultKind::RepeatToken => None,
    }
}

/// Answers one request; an `Err` makes hyper close the connection without an answer.
async fn handle(
    world: Arc<Mutex<World>>,
    req: Request<Incoming>,
) -> Result<Response<SimBody>, std::io::Error> {
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
        return Ok(error_response("", "application/json", &e).map(Either::Left));
    };
    let content_type = match service {
        "sfn" => "application/x-amz-json-1.0",
        "appflow" => "application/json",
        _ => "application/x-amz-json-1.1",
    };
    let input: Result<Value, String> = if service == "sts" || text.trim().is_empty() {
        Ok(json!({}))
    } else {
        serde_json::from_str(&text).map_err(|e| e.to_string())
    };
    let fault = {
        let mut w = world.lock().expect("simulator world lock");
        let now = Instant::now();
        let fault = w.take_fault(service, &operation, &text);
        let admitted = w
            .quotas
            .as_mut()
            .is_none_or(|q| q.admit(service, &operation, now));
        let fault = match fault {
            None if !admitted => Some(FaultKind::Throttle),
            f => f,
        };
        w.calls.push(Call {
            service,
            operation: operation.clone(),
            resource: input.as_ref().ok().and_then(resource_of),
            at: now,
            throttled: fault == Some(FaultKind::Throttle),
            access_key: access_key(&parts.headers),
            body: text.clone(),
        });
        fault
    };
    if let Some(kind) = &fault {
        let parsed = input.as_ref().cloned().unwrap_or_default();
        if let Some(resp) = fault_response(kind, service, content_type, &world, &operation, &parsed)
        {
            return resp;
        }
        if let FaultKind::Delay(d) = kind {
            tokio::time::sleep(*d).await;
        }
    }
    let input = match input {
        // The repeated token is not one the world issued: answer the first page again.
        Ok(Value::Object(mut fields)) if fault == Some(FaultKind::RepeatToken) => {
            fields.remove("nextToken");
            fields.remove("NextToken");
            Ok(Value::Object(fields))
        }
        other => other,
    };
    // For AssumeRole, the key of the account the role is in; for any other call (GetCallerIdentity
    // included), the key the request is signed with.
    let key = if service == "sts" && operation == "AssumeRole" {
        role_account(&text).map(|a| account_access_key(&a))
    } else {
        Some(access_key(&parts.headers))
    };
    let resp = answer(&world, service, &operation, content_type, input, key);
    if fault == Some(FaultKind::RepeatToken) {
        return Ok(with_repeated_token(resp).await.map(Either::Left));
    }
    Ok(resp.map(Either::Left))
}

/// `resp` with its next token (`nextToken`, or Transfer's `NextToken`) set to a constant.
async fn with_repeated_token(resp: Response<Full<Bytes>>) -> Response<Full<Bytes>> {
    let (mut parts, body) = resp.into_parts();
    let bytes = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let Ok(Value::Object(mut page)) = serde_json::from_slice::<Value>(&bytes) else {
        return Response::from_parts(parts, Full::new(bytes));
    };
    let key = if page.contains_key("NextToken")
        || parts
            .headers
            .get("content-type")
            .is_some_and(|v| v == "application/x-amz-json-1.1")
    {
        "NextToken"
    } else {
        "nextToken"
    };
    page.insert(key.into(), json!("repeated-token"));
    let body = Bytes::from(Value::Object(page).to_string());
    parts.headers.remove("content-length");
    Response::from_parts(parts, Full::new(body))
}

/// The simulated service's answer to a well-formed request.
fn answer(
    world: &Mutex<World>,
    service: &'static str,
    operation: &str,
    content_type: &'static str,
    input: Result<Value, String>,
    key: Option<String>,
) -> Response<Full<Bytes>> {
    // The account whose resources answer: the one the request's access key belongs to (for
    // AssumeRole, the one the role is in), if the world has it.
    let account = key
        .as_deref()
        .and_then(|k| k.strip_prefix("ASIA"))
        .filter(|a| {
            let w = world.lock().expect("simulator world lock");
            w.accounts.contains_key(*a)
        })
        .map(str::to_owned);
    if service == "sts" {
        return if operation == "AssumeRole" {
            assumed_role(
                &account
                    .map(|a| account_access_key(&a))
                    .unwrap_or_else(|| "ASIASIMULATOR".into()),
            )
        } else {
            caller_identity(account.as_deref())
        };
    }
    let input = match input {
        Ok(v) => v,
        Err(e) => {
            let e = ApiError::bad_request("SerializationException", e);
            return error_response(service, content_type, &e);
        }
    };
    let result = {
        let mut guard = world.lock().expect("simulator world lock");
        let w: &mut World = &mut guard;
        let w = match account.filter(|a| w.accounts.contains_key(a)) {
            Some(a) => w.accounts.get_mut(&a).expect("account just checked"),
            None => w,
        };
        match service {
            "sfn" => sfn::handle(&mut w.sfn, operation, &input),
            "transfer" => transfer::handle(&mut w.transfer, operation, &input),
            "appflow" => appflow::handle(&mut w.appflow, operation, &input),
            "organizations" => organization(&w.organization, operation, &input),
            _ => Err(ApiError::bad_request(
                "UnknownOperationException",
                format!("{service} is not simulated"),
            )),
        }
    };
    match result {
        Ok(v) => json_response(200, content_type, &v),
        Err(e) => error_response(service, content_type, &e),
    }
}

/// A member account of the simulated organisation.
#[derive(Debug, Clone)]
pub struct OrgAccount {
    pub id: String,
    pub name: String,
    /// ACTIVE, SUSPENDED or PENDING_CLOSURE.
    pub status: &'static str,
}

/// AWS Organizations' ListAccounts (PascalCase members, `NextToken`).
fn organization(
    accounts: &[OrgAccount],
    operation: &str,
    input: &Value,
) -> Result<Value, ApiError> {
    if operation != "ListAccounts" {
        return Err(ApiError::bad_request(
            "UnknownOperationException",
            format!("organizations {operation} is not simulated"),
        ));
    }
    let (page, next) = paginate(accounts, input, "MaxResults", "NextToken", 20, None)?;
    let items: Vec<Value> = page
        .iter()
        .map(|a| {
            json!({
                "Id": a.id,
                "Arn": format!("arn:aws:organizations::{ACCOUNT_ID}:account/o-simulated/{}", a.id),
                "Name": a.name,
                "Email": format!("{}@example.com", a.name),
                "Status": a.status,
            })
        })
        .collect();
    Ok(json!({"Accounts": items, "NextToken": next}))
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

#[cfg(test)]
mod tests {
    use super::*;
    use aws_config::{BehaviorVersion, Region};
    use aws_credential_types::Credentials;

    fn config(endpoint: &str, credentials: Credentials) -> aws_config::SdkConfig {
        aws_config::SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(REGION))
            .endpoint_url(endpoint)
            .credentials_provider(
                aws_credential_types::provider::SharedCredentialsProvider::new(credentials),
            )
            .build()
    }

    #[tokio::test]
    async fn a_role_of_an_account_reaches_that_accounts_resources_only() {
        let sim = Simulator::start().await.expect("simulator");
        {
            let mut w = sim.world();
            w.sfn.add_state_machine("default-account", 0.0);
            for (account, name) in [("111111111111", "in-one"), ("222222222222", "in-two")] {
                let a = w.accounts.entry(account.into()).or_default();
                a.sfn.add_state_machine(name, 0.0);
            }
        }
        let base = config(
            &sim.endpoint,
            Credentials::new("base", "base", None, None, "test"),
        );
        let names = |sdk: &aws_config::SdkConfig| {
            let sfn = aws_sdk_sfn::Client::new(sdk);
            async move {
                let out = sfn.list_state_machines().send().await.expect("listed");
                out.state_machines()
                    .iter()
                    .map(|s| s.name().to_owned())
                    .collect::<Vec<_>>()
            }
        };
        assert_eq!(names(&base).await, ["default-account"]);
        let sts = aws_sdk_sts::Client::new(&base);
        for (role, expected_key, expected) in [
            (
                "arn:aws:iam::111111111111:role/r",
                "ASIA111111111111",
                "in-one",
            ),
            (
                "arn:aws:iam::222222222222:role/r",
                "ASIA222222222222",
                "in-two",
            ),
            // An account the simulator does not have: its default world, as before.
            (
                "arn:aws:iam::333333333333:role/r",
                "ASIASIMULATOR",
                "default-account",
            ),
        ] {
            let assumed = sts
                .assume_role()
                .role_arn(role)
                .role_session_name("s")
                .send()
                .await
                .expect("assumed");
            let c = assumed.credentials().expect("credentials");
            assert_eq!(c.access_key_id(), expected_key);
            let as_role = config(
                &sim.endpoint,
                Credentials::new(
                    c.access_key_id(),
                    c.secret_access_key(),
                    Some(c.session_token().to_owned()),
                    None,
                    "test",
                ),
            );
            assert_eq!(names(&as_role).await, [expected], "{role}");
        }
    }
}
