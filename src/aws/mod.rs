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
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use tokio::sync::OnceCell;

use crate::aws::budget::ApiBudget;
use crate::aws::instrument::ApiInstrumentation;
use crate::aws::operation::{Operation, GET_CALLER_IDENTITY};
use crate::config::targets::{AwsApiConfig, TargetConfig};
use crate::error::AwsError;
use crate::exposition::self_metrics::SelfMetrics;
use crate::shard::Shard;

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
    shard: Shard,
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
    shard: Shard,
}

impl Connection {
    /// Whether this replica polls and exports `resource_id` (an ARN or id) of this account and
    /// region; always true unless sharded.
    pub fn owns(&self, resource_id: &str) -> bool {
        self.shard.owns(&self.account_id, &self.region, resource_id)
    }

    /// One AWS call: waits for a token of the operation's budget, then sends it.
    pub async fn call<T, E, R>(
        &self,
        op: Operation,
        request: impl std::future::Future<Output = Result<T, SdkError<E, R>>>,
    ) -> Result<T, AwsError>
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        self.budget.acquire(op).await;
        request.await.map_err(|e| AwsError::from_sdk(op.name, e))
    }

    /// Follows a paginated call, one budget token per page: `fetch` sends the page for a token,
    /// `take` moves its items into the output and returns the token to follow (`None` stops).
    pub async fn pages<T, P, E, R, Fut>(
        &self,
        op: Operation,
        mut fetch: impl FnMut(Option<String>) -> Fut,
        mut take: impl FnMut(P, &mut Vec<T>) -> Option<String>,
    ) -> Result<Vec<T>, AwsError>
    where
        Fut: std::future::Future<Output = Result<P, SdkError<E, R>>>,
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        let mut out = Vec::new();
        let mut token = None;
        loop {
            let page = self.call(op, fetch(token)).await?;
            match take(page, &mut out) {
                Some(next) => token = Some(next),
                None => return Ok(out),
            }
        }
    }
}

impl Target {
    pub fn new(
        config: TargetConfig,
        api: AwsApiConfig,
        shard: Shard,
        static_credentials: Option<StaticCredentials>,
        metrics: Arc<SelfMetrics>,
    ) -> Self {
        Self {
            config,
            api,
            shard,
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
            .retry_config(RetryConfig::standard().with_max_attempts(self.api.max_attempts))
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
        // Each of the replicas takes its part of every bucket, so together they keep to quota_share.
        let share = self.shard.share_of(self.api.quota_share);
        let budget = ApiBudget::new(&region, share, self.metrics.clone());
        budget.acquire(op).await;
        let sts = aws_sdk_sts::Client::from_conf(
            aws_sdk_sts::config::Builder::from(&sdk_config)
                .interceptor(instrumentation.clone())
                .build(),
        );
        let identity = sts
            .get_caller_identity()
            .send()
            .await
            .map_err(|e| AwsError::from_sdk(op.name, e))?;
        let account_id = identity.account().unwrap_or("unknown").to_owned();
        tracing::info!(target_name = %self.config.name, %region, %account_id, shard = self.shard.ordinal(), total_shards = self.shard.total(), api_quota_share = share, "connected to AWS target");
        Ok(Arc::new(Connection {
            account_id,
            region,
            sdk_config,
            budget,
            instrumentation,
            shard: self.shard,
        }))
    }
}
