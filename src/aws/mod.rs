//! AWS access: one [`Target`] per (configured target, region), its SDK configuration built from
//! aws-config (so the standard environment keeps working), call instrumentation and API budget.

pub mod budget;
pub mod instrument;
pub mod operation;

use std::sync::Arc;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_sts::config::{Credentials, SharedCredentialsProvider};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use tokio::sync::OnceCell;

use crate::aws::budget::ApiBudget;
use crate::aws::instrument::ApiInstrumentation;
use crate::aws::operation::{Operation, GET_CALLER_IDENTITY};
use crate::config::targets::{AwsApiConfig, TargetConfig};
use crate::error::AwsError;
use crate::exposition::self_metrics::SelfMetrics;

/// Static credentials, for the built-in simulator only (the demo and tests); never read from YAML.
#[derive(Debug, Clone)]
pub struct StaticCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
}

/// A target before and after it is reached: the account id is learned on first connect.
#[derive(Debug)]
pub struct Target {
    pub config: TargetConfig,
    api: AwsApiConfig,
    static_credentials: Option<StaticCredentials>,
    metrics: Arc<SelfMetrics>,
    connection: OnceCell<Arc<Connection>>,
}

/// A reached target: what sources need to build clients and label series.
#[derive(Debug)]
pub struct Connection {
    pub account_id: String,
    pub region: String,
    pub sdk_config: SdkConfig,
    pub budget: ApiBudget,
    pub instrumentation: ApiInstrumentation,
    /// Attempts per call, retries included (`aws_api.max_attempts`).
    pub max_attempts: u32,
}

impl Connection {
    /// One AWS call: waits for a token of the operation's budget, then sends it (`send` builds
    /// the request; it is called again for each retry, and every attempt pays a token).
    pub async fn call<T, E, Fut>(
        &self,
        op: Operation,
        send: impl FnMut() -> Fut,
    ) -> Result<T, AwsError>
    where
        Fut: std::future::Future<Output = Result<T, SdkError<E, HttpResponse>>>,
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        self.budget.acquire(op).await;
        attempts(&self.budget, self.max_attempts, op, send).await
    }

    /// Follows a paginated call, one budget token per page: `fetch` sends the page for a token,
    /// `take` moves its items into the output and returns the token to follow (`None` stops).
    pub async fn pages<T, P, E, Fut>(
        &self,
        op: Operation,
        mut fetch: impl FnMut(Option<String>) -> Fut,
        mut take: impl FnMut(P, &mut Vec<T>) -> Option<String>,
    ) -> Result<Vec<T>, AwsError>
    where
        Fut: std::future::Future<Output = Result<P, SdkError<E, HttpResponse>>>,
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self.call(op, || fetch(token.clone())).await?;
            match take(page, &mut out) {
                Some(next) => token = Some(next),
                None => return Ok(out),
            }
        }
    }
}

/// Sends a call that already paid its first token, retrying what is worth retrying (throttling,
/// server errors, timeouts, transport errors) up to `max_attempts` with exponential backoff.
/// Retries come out of the same budget, and a throttle empties it: the exporter never spends
/// the account's quota faster because AWS is throttling. The SDK's own retries are off.
async fn attempts<T, E, Fut>(
    budget: &ApiBudget,
    max_attempts: u32,
    op: Operation,
    mut send: impl FnMut() -> Fut,
) -> Result<T, AwsError>
where
    Fut: std::future::Future<Output = Result<T, SdkError<E, HttpResponse>>>,
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let mut attempt = 1;
    loop {
        let err = match send().await {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        let throttled = err.code().is_some_and(crate::error::is_throttling_code);
        let retryable = throttled
            || match &err {
                SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) => true,
                SdkError::ResponseError(_) => true,
                SdkError::ServiceError(e) => e.raw().status().is_server_error(),
                _ => false,
            };
        if !retryable || attempt >= max_attempts {
            return Err(AwsError::from_sdk(op.name, err));
        }
        if throttled {
            budget.drain(op);
        }
        let backoff = RETRY_BASE
            .mul_f64(2f64.powi(attempt as i32 - 1))
            .min(RETRY_CAP);
        tokio::time::sleep(backoff.mul_f64(0.5 + fastrand::f64() / 2.0)).await;
        budget.acquire(op).await;
        attempt += 1;
    }
}

/// First retry after about this long, doubling each time up to [`RETRY_CAP`].
const RETRY_BASE: std::time::Duration = std::time::Duration::from_millis(500);
const RETRY_CAP: std::time::Duration = std::time::Duration::from_secs(20);

impl Target {
    pub fn new(
        config: TargetConfig,
        api: AwsApiConfig,
        static_credentials: Option<StaticCredentials>,
        metrics: Arc<SelfMetrics>,
    ) -> Self {
        Self {
            config,
            api,
            static_credentials,
            metrics,
            connection: OnceCell::new(),
        }
    }

    /// A stable key for this target in logs and the metrics hub.
    pub fn key(&self) -> String {
        format!(
            "{}/{}",
            self.config.name,
            self.config.region.as_deref().unwrap_or("default")
        )
    }

    /// Labels for self-metrics: known once connected, placeholders before.
    pub fn labels(&self) -> (String, String) {
        match self.connection.get() {
            Some(c) => (c.account_id.clone(), c.region.clone()),
            None => (
                "unknown".into(),
                self.config
                    .region
                    .clone()
                    .unwrap_or_else(|| "unknown".into()),
            ),
        }
    }

    /// Connects once (resolving region, credentials and account id); retried on the next poll if it fails.
    pub async fn connect(&self) -> Result<Arc<Connection>, AwsError> {
        self.connection
            .get_or_try_init(|| self.establish())
            .await
            .cloned()
    }

    async fn establish(&self) -> Result<Arc<Connection>, AwsError> {
        let op = GET_CALLER_IDENTITY;
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            // Retries are made by `attempts`, out of the API budget.
            .retry_config(RetryConfig::disabled())
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(self.api.connect_timeout)
                    .operation_timeout(self.api.operation_timeout)
                    .build(),
            );
        if let Some(region) = &self.config.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some(url) = &self.config.endpoint_url {
            loader = loader.endpoint_url(url);
        }
        if let Some(c) = &self.static_credentials {
            loader = loader.credentials_provider(Credentials::new(
                &c.access_key_id,
                &c.secret_access_key,
                None,
                None,
                "simulator",
            ));
        }
        let mut sdk_config = loader.load().await;
        let region = sdk_config
            .region()
            .map(|r| r.to_string())
            .ok_or_else(|| AwsError::Other {
                operation: op.name,
                message: "no AWS region: set AWS_REGION, a profile region, or targets[].regions"
                    .into(),
            })?;
        if let Some(role) = &self.config.role {
            let mut builder = aws_config::sts::AssumeRoleProvider::builder(&role.arn)
                .session_name(&role.session_name);
            if let Some(id) = &role.external_id {
                builder = builder.external_id(id);
            }
            let provider = builder.configure(&sdk_config).build().await;
            sdk_config = sdk_config
                .into_builder()
                .credentials_provider(SharedCredentialsProvider::new(provider))
                .build();
        }
        let instrumentation = ApiInstrumentation::new(self.metrics.clone());
        let budget = ApiBudget::new(
            &region,
            self.api.quota_share,
            self.api.quotas.clone(),
            self.metrics.clone(),
        );
        budget.acquire(op).await;
        let sts = aws_sdk_sts::Client::from_conf(
            aws_sdk_sts::config::Builder::from(&sdk_config)
                .interceptor(instrumentation.clone())
                .build(),
        );
        let identity = attempts(&budget, self.api.max_attempts, op, || {
            sts.get_caller_identity().send()
        })
        .await?;
        let account_id = identity.account().unwrap_or("unknown").to_owned();
        tracing::info!(target_name = %self.config.name, %region, %account_id, "connected to AWS target");
        Ok(Arc::new(Connection {
            account_id,
            region,
            sdk_config,
            budget,
            instrumentation,
            max_attempts: self.api.max_attempts,
        }))
    }
}
