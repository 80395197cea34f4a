//! Library error types. Each variant maps to a small, fixed label set so errors can be counted.

use std::path::PathBuf;

use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_runtime_api::http::Response as HttpResponse;

/// A configuration problem, naming the file and the path of the field inside it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read: {source}")]
    Read {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}: {message}")]
    Parse { file: PathBuf, message: String },
    #[error("{file}: invalid configuration:\n{}", format_field_errors(.errors))]
    Invalid {
        file: PathBuf,
        errors: Vec<FieldError>,
    },
}

/// One invalid field: `path` is the dotted location inside the file, e.g. `targets[0].regions`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub path: String,
    pub reason: String,
}

fn format_field_errors(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(|e| format!("  {}: {}", e.path, e.reason))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Why one AWS call failed, as far as a source needs to know.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AwsError {
    #[error("{operation}: throttled: {message}")]
    Throttled {
        operation: &'static str,
        message: String,
    },
    #[error("{operation}: resource not found: {message}")]
    NotFound {
        operation: &'static str,
        message: String,
    },
    #[error("{operation}: {message}")]
    Other {
        operation: &'static str,
        message: String,
    },
}

impl AwsError {
    /// The operation that failed.
    pub fn operation(&self) -> &'static str {
        match self {
            Self::Throttled { operation, .. }
            | Self::NotFound { operation, .. }
            | Self::Other { operation, .. } => operation,
        }
    }

    /// Builds an error from any SDK error, keeping the AWS error code in the message. Errors
    /// without a code say what happened in one line (timeout, transport failure, an answer
    /// that is not the protocol's), never dumping the raw response.
    pub fn from_sdk<E>(operation: &'static str, err: SdkError<E, HttpResponse>) -> Self
    where
        E: aws_smithy_types::error::metadata::ProvideErrorMetadata + std::error::Error + 'static,
    {
        use aws_smithy_types::error::metadata::ProvideErrorMetadata;
        let code = err.code().map(str::to_owned);
        let message = match (&code, err.message()) {
            (Some(c), Some(m)) => format!("{c}: {m}"),
            (Some(c), None) => c.clone(),
            _ => describe(&err),
        };
        match code.as_deref() {
            Some(c) if is_throttling_code(c) => Self::Throttled { operation, message },
            Some(
                "ResourceNotFoundException"
                | "ResourceNotFound"
                | "ExecutionDoesNotExist"
                | "StateMachineDoesNotExist",
            ) => Self::NotFound { operation, message },
            _ => Self::Other { operation, message },
        }
    }

    /// Whether AWS refused the call for lack of permission (IAM, SCP or a resource policy).
    pub fn is_access_denied(&self) -> bool {
        matches!(self, Self::Other { message, .. } if message.starts_with("AccessDenied"))
    }

    /// A bounded label value for logs and counters.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Throttled { .. } => "throttled",
            Self::NotFound { .. } => "not_found",
            Self::Other { .. } => "error",
        }
    }
}

/// One line for an SDK error that carries no AWS error code.
fn describe<E: std::error::Error + 'static>(err: &SdkError<E, HttpResponse>) -> String {
    let answer = |raw: &HttpResponse| {
        let content_type = raw
            .headers()
            .get("content-type")
            .unwrap_or("no content-type");
        format!("HTTP {}, {content_type}", raw.status().as_u16())
    };
    match err {
        SdkError::TimeoutError(_) => "timed out (aws_api.operation_timeout)".into(),
        SdkError::ResponseError(e) => {
            format!(
                "unreadable answer ({}): {}",
                answer(e.raw()),
                error_chain(err)
            )
        }
        SdkError::ServiceError(e) => {
            format!(
                "unreadable answer ({}): {}",
                answer(e.raw()),
                error_chain(e.err())
            )
        }
        _ => error_chain(err),
    }
}

/// An error and its sources in one line, `outer: inner: ...`, without repeating a message.
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(err);
    while let Some(e) = next {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = e.source();
    }
    parts.join(": ")
}

/// AWS error codes that mean "slow down", across the JSON and query protocols.
pub fn is_throttling_code(code: &str) -> bool {
    matches!(
        code,
        "ThrottlingException"
            | "Throttling"
            | "ThrottledException"
            | "TooManyRequestsException"
            | "RequestLimitExceeded"
            | "RequestThrottled"
            | "RequestThrottledException"
            | "ProvisionedThroughputExceededException"
            | "SlowDown"
    )
}
