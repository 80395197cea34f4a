//! Library error types. Each variant maps to a small, fixed label set so errors can be counted.

use std::path::PathBuf;

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
    /// Builds an error from any SDK error, keeping the AWS error code in the message.
    pub fn from_sdk<E, R>(
        operation: &'static str,
        err: aws_smithy_runtime_api::client::result::SdkError<E, R>,
    ) -> Self
    where
        E: aws_smithy_types::error::metadata::ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        use aws_smithy_types::error::metadata::ProvideErrorMetadata;
        let code = err.code().map(str::to_owned);
        let message = match (&code, err.message()) {
            (Some(c), Some(m)) => format!("{c}: {m}"),
            (Some(c), None) => c.clone(),
            _ => aws_smithy_types::error::display::DisplayErrorContext(&err).to_string(),
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

    /// A bounded label value for logs and counters.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Throttled { .. } => "throttled",
            Self::NotFound { .. } => "not_found",
            Self::Other { .. } => "error",
        }
    }
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
