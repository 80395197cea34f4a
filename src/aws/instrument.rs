//! Counts and times every AWS call attempt (retries included, since each one spends API quota),
//! through an SDK interceptor attached to every client the exporter builds.

use std::sync::Arc;
use std::time::Instant;

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeTransmitInterceptorContextRef, FinalizerInterceptorContextRef,
};
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::{ConfigBag, Storable, StoreReplace};

use crate::aws::operation::Operation;
use crate::aws::Identity;
use crate::error::is_throttling_code;
use crate::exposition::self_metrics::SelfMetrics;

/// How one call attempt ended; the `outcome` label of `aws_workflow_exporter_api_requests_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Throttled,
    ClientError,
    ServerError,
    Timeout,
    TransportError,
}

impl Outcome {
    pub const ALL: [Outcome; 6] = [
        Outcome::Ok,
        Outcome::Throttled,
        Outcome::ClientError,
        Outcome::ServerError,
        Outcome::Timeout,
        Outcome::TransportError,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Throttled => "throttled",
            Outcome::ClientError => "client_error",
            Outcome::ServerError => "server_error",
            Outcome::Timeout => "timeout",
            Outcome::TransportError => "transport_error",
        }
    }
}

/// Classifies a finished HTTP response by status and the AWS error code it carries.
pub fn classify_response(
    status: u16,
    error_type_header: Option<&str>,
    body: Option<&[u8]>,
) -> Outcome {
    if status < 300 {
        return Outcome::Ok;
    }
    if status == 429 {
        return Outcome::Throttled;
    }
    let code = error_type_header
        .map(|h| h.split(':').next().unwrap_or(h).to_owned())
        .or_else(|| body.and_then(error_code_from_body));
    if code.as_deref().is_some_and(is_throttling_code) {
        return Outcome::Throttled;
    }
    if status >= 500 {
        Outcome::ServerError
    } else {
        Outcome::ClientError
    }
}

/// The error code from a JSON body (`__type`, possibly `namespace#Code`) or an XML one (`<Code>`).
fn error_code_from_body(body: &[u8]) -> Option<String> {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) {
        let t = v
            .get("__type")
            .or_else(|| v.get("code"))
            .and_then(|t| t.as_str())?;
        return Some(t.rsplit('#').next().unwrap_or(t).to_owned());
    }
    let text = std::str::from_utf8(body).ok()?;
    let start = text.find("<Code>")? + "<Code>".len();
    let end = text[start..].find("</Code>")? + start;
    Some(text[start..end].to_owned())
}

#[derive(Debug, Clone)]
struct AttemptStart(Instant);

impl Storable for AttemptStart {
    type Storer = StoreReplace<Self>;
}

/// The interceptor; cheap to clone, one per client.
#[derive(Debug, Clone)]
pub struct ApiInstrumentation {
    metrics: Arc<SelfMetrics>,
    /// The target's labels, and where a successful answer's ARNs tell its account id.
    identity: Arc<Identity>,
}

impl ApiInstrumentation {
    pub fn new(metrics: Arc<SelfMetrics>, identity: Arc<Identity>) -> Self {
        Self { metrics, identity }
    }

    /// Declares every outcome counter of every operation, which each target starts at 0 once
    /// its account and region are known, so the first throttle shows up in increase().
    pub fn declare(metrics: &SelfMetrics, operations: &[Operation]) {
        for op in operations {
            for outcome in Outcome::ALL {
                metrics
                    .accounts()
                    .declare_call(op.service, op.name, outcome.as_str());
            }
        }
    }
}

impl Intercept for ApiInstrumentation {
    fn name(&self) -> &'static str {
        "ApiInstrumentation"
    }

    fn read_before_attempt(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        cfg.interceptor_state()
            .store_put(AttemptStart(Instant::now()));
        Ok(())
    }

    fn read_after_attempt(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let Some(meta) = cfg.load::<Metadata>() else {
            return Ok(());
        };
        let elapsed = cfg.load::<AttemptStart>().map(|s| s.0.elapsed());
        if let Some(resp) = context.response() {
            if resp.status().is_success() {
                if let Some(body) = resp.body().bytes() {
                    self.identity.learn_from_body(body);
                }
            }
        }
        let outcome = match context.response() {
            Some(resp) => classify_response(
                resp.status().as_u16(),
                resp.headers().get("x-amzn-errortype"),
                resp.body().bytes(),
            ),
            None => match context.output_or_error() {
                Some(Err(e)) if e.is_timeout_error() => Outcome::Timeout,
                Some(Err(e)) if e.as_connector_error().is_some_and(|c| c.is_timeout()) => {
                    Outcome::Timeout
                }
                _ => Outcome::TransportError,
            },
        };
        let service = meta.service().to_ascii_lowercase();
        self.metrics.accounts().record_call(
            &service,
            meta.name(),
            outcome.as_str(),
            self.identity.label_refs(),
            elapsed,
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_by_status_and_error_code() {
        assert_eq!(classify_response(200, None, None), Outcome::Ok);
        assert_eq!(classify_response(429, None, None), Outcome::Throttled);
        assert_eq!(
            classify_response(
                400,
                None,
                Some(br#"{"__type":"com.amazonaws.swf#ThrottlingException","message":"x"}"#)
            ),
            Outcome::Throttled
        );
        assert_eq!(
            classify_response(400, Some("ThrottlingException:http://x"), None),
            Outcome::Throttled
        );
        assert_eq!(
            classify_response(
                400,
                None,
                Some(b"<ErrorResponse><Error><Code>Throttling</Code></Error></ErrorResponse>")
            ),
            Outcome::Throttled
        );
        assert_eq!(
            classify_response(400, None, Some(br#"{"__type":"InvalidArn"}"#)),
            Outcome::ClientError
        );
        assert_eq!(classify_response(503, None, None), Outcome::ServerError);
    }
}
