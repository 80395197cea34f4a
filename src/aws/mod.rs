//! AWS access: one [`Target`] per (configured target, region), its SDK configuration built from
//! aws-config (so the standard environment keeps working), call instrumentation and API budget.

pub mod budget;
pub mod instrument;
pub mod operation;
pub mod organization;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use aws_config::identity::IdentityCache;
use aws_config::retry::RetryConfig;
use aws_config::stalled_stream_protection::StalledStreamProtectionConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::{future, ProvideCredentials};
use aws_sdk_sts::config::{Credentials, SharedCredentialsProvider};
use aws_smithy_runtime_api::client::http::SharedHttpClient;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_runtime_api::http::Response as HttpResponse;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use aws_types::service_config::ServiceConfigKey;
use regex::Regex;
use tokio::sync::OnceCell;

use crate::aws::budget::ApiBudget;
use crate::aws::instrument::ApiInstrumentation;
use crate::aws::operation::{Operation, GET_CALLER_IDENTITY};
use crate::config::target::TargetConfig;
use crate::config::targets::AwsApiConfig;
use crate::error::AwsError;
use crate::exposition::self_metrics::SelfMetrics;
use crate::shard::Shard;

/// Static credentials, for the built-in simulator only (the demo and tests); never read from YAML.
#[derive(Debug, Clone)]
pub struct StaticCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
}

/// A target before and after it is reached. Its account id is learned without blocking polls:
/// from the configuration (`account_id`, or the role ARN's account), else from STS in the
/// background, else from the first ARN of its region in an answer.
#[derive(Debug)]
pub struct Target {
    pub config: TargetConfig,
    api: AwsApiConfig,
    shard: Shard,
    static_credentials: Option<StaticCredentials>,
    metrics: Arc<SelfMetrics>,
    identity: Arc<Identity>,
    connection: OnceCell<Arc<Connection>>,
}

/// Which account and region a target reaches, as far as known: the labels of its series.
#[derive(Debug)]
pub struct Identity {
    key: String,
    region: OnceLock<String>,
    account: OnceLock<String>,
    /// Set once both are known.
    settled: OnceLock<()>,
    /// Whether this target holds its (account, region) in the registry.
    claim: Mutex<Claim>,
    metrics: Arc<SelfMetrics>,
    registry: Arc<AccountRegistry>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Claim {
    /// Account or region not known yet.
    Unsettled,
    Held,
    /// Another target (this key) polls the pair. Tried again at every poll, since a reload
    /// may release it (a renamed target takes the pair over once the old name is gone).
    RefusedBy(String),
}

/// Which target polls each (account id, region): a second target reaching the same pair is
/// refused, so series are not exported twice and the API budget is not spent twice.
#[derive(Debug, Default)]
pub struct AccountRegistry {
    claimed: Mutex<BTreeMap<(String, String), String>>,
}

impl AccountRegistry {
    /// Claims the pair for `key`; the key of the target that has it already otherwise.
    fn claim(&self, account: &str, region: &str, key: &str) -> Result<(), String> {
        let mut claimed = self.claimed.lock().expect("account registry lock");
        let holder = claimed
            .entry((account.to_owned(), region.to_owned()))
            .or_insert_with(|| key.to_owned());
        if holder == key {
            Ok(())
        } else {
            Err(holder.clone())
        }
    }

    /// Gives up every pair `key` holds (its target was removed by a reload).
    pub fn release(&self, key: &str) {
        self.claimed
            .lock()
            .expect("account registry lock")
            .retain(|_, holder| holder != key);
    }
}

impl Identity {
    pub(crate) fn new(
        key: String,
        metrics: Arc<SelfMetrics>,
        registry: Arc<AccountRegistry>,
    ) -> Self {
        Self {
            key,
            region: OnceLock::new(),
            account: OnceLock::new(),
            settled: OnceLock::new(),
            claim: Mutex::new(Claim::Unsettled),
            metrics,
            registry,
        }
    }

    /// (account id, region) for labels; `unknown` where not known yet.
    pub fn labels(&self) -> (String, String) {
        let (account, region) = self.label_refs();
        (account.to_owned(), region.to_owned())
    }

    /// [`Self::labels`] without copying them: what every AWS call records its metrics under.
    pub fn label_refs(&self) -> (&str, &str) {
        fn known(v: &OnceLock<String>) -> &str {
            v.get().map_or("unknown", String::as_str)
        }
        (known(&self.account), known(&self.region))
    }

    /// Records the account id if it was not known; `how` says where it came from, for the log.
    pub fn learn_account(&self, account: &str, how: &str) {
        if self.account.set(account.to_owned()).is_ok() {
            tracing::info!(target_key = %self.key, account_id = %account, how, "learned the target's account id");
            self.settle();
        }
    }

    /// Learns the account id from the first ARN of the target's region in an answer's body
    /// (every list call returns ARNs), if it is not known yet.
    pub fn learn_from_body(&self, body: &[u8]) {
        if self.account.get().is_some() {
            return;
        }
        let Some(region) = self.region.get() else {
            return;
        };
        if let Some(account) = account_in_arns(body, region) {
            self.learn_account(&account, "resource ARN");
        }
    }

    fn set_region(&self, region: &str) {
        let _ = self.region.set(region.to_owned());
        self.settle();
    }

    /// Once account and region are known: claim them.
    fn settle(&self) {
        if self.account.get().is_none() || self.region.get().is_none() {
            return;
        }
        if self.settled.set(()).is_ok() {
            self.try_claim();
        }
    }

    /// Claims (account, region) unless held already; a first claim starts the call counters at 0.
    fn try_claim(&self) {
        let (Some(account), Some(region)) = (self.account.get(), self.region.get()) else {
            return;
        };
        let mut claim = self.claim.lock().expect("claim lock");
        if *claim == Claim::Held {
            return;
        }
        match self.registry.claim(account, region, &self.key) {
            Ok(()) => {
                if let Claim::RefusedBy(other) = &*claim {
                    tracing::info!(target_key = %self.key, account_id = %account, %region, was_polled_by = %other, "the other target is gone: this one polls the account and region now");
                }
                *claim = Claim::Held;
                self.metrics.accounts().start_calls((account, region));
            }
            Err(other) => {
                if *claim != Claim::RefusedBy(other.clone()) {
                    tracing::error!(target_key = %self.key, account_id = %account, %region, polled_by = %other, "two targets reach the same account and region; this one is not polled");
                }
                *claim = Claim::RefusedBy(other);
            }
        }
    }

    /// Whether this target is the one polling its account and region (false while unknown).
    pub fn holds_claim(&self) -> bool {
        *self.claim.lock().expect("claim lock") == Claim::Held
    }

    /// An error if another target already polls this target's account and region.
    pub fn refused(&self) -> Result<(), AwsError> {
        self.try_claim();
        let claim = self.claim.lock().expect("claim lock").clone();
        match claim {
            Claim::RefusedBy(other) => {
                let (account, region) = self.labels();
                Err(AwsError::Other {
                    operation: "connect",
                    message: format!(
                        "target {} reaches account {account} in {region}, which target {other} already polls: not polling it twice (remove one of them from the configuration)",
                        self.key
                    ),
                })
            }
            Claim::Unsettled | Claim::Held => Ok(()),
        }
    }
}

/// The account id of the first ARN in `body` of a regional resource in `region`
/// (`arn:PARTITION:SERVICE:REGION:ACCOUNT:...`); roles and other global ARNs are skipped.
fn account_in_arns(body: &[u8], region: &str) -> Option<String> {
    static ARN: OnceLock<Regex> = OnceLock::new();
    let arn = ARN.get_or_init(|| {
        Regex::new(r"arn:aws[a-z-]*:[a-z0-9-]+:([a-z0-9-]+):([0-9]{12}):").expect("valid regex")
    });
    let text = std::str::from_utf8(body).ok()?;
    arn.captures_iter(text)
        .find(|c| &c[1] == region)
        .map(|c| c[2].to_owned())
}

/// Credentials of an assumed role whose failures name the role.
#[derive(Debug)]
struct RoleCredentials {
    arn: String,
    inner: aws_config::sts::AssumeRoleProvider,
}

impl ProvideCredentials for RoleCredentials {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(async move {
            self.inner.provide_credentials().await.map_err(|e| {
                CredentialsError::provider_error(format!(
                    "assuming role {} failed: {}",
                    self.arn,
                    crate::error::error_chain(&e)
                ))
            })
        })
    }
}

/// A reached target: what sources need to build clients and label series.
#[derive(Debug)]
pub struct Connection {
    pub region: String,
    pub identity: Arc<Identity>,
    pub sdk_config: SdkConfig,
    /// Keeps the base `sdk_config` was made from shared while this connection lives.
    _base: SharedBase,
    pub budget: ApiBudget,
    pub instrumentation: ApiInstrumentation,
    /// Attempts per call, retries included (`aws_api.max_attempts`).
    pub max_attempts: u32,
    shard: Shard,
    /// `aws_api.operation_timeout`: after a call of a service timed out, that service's calls
    /// fail at once for the rest of the poll (the scheduler forgets stalls when one starts), at
    /// most this long, so a stalled endpoint fails the poll in one timeout, not one per call.
    stall_hold: Duration,
    /// When a call of each service (`Operation::service`) last timed out.
    stalls: Mutex<BTreeMap<&'static str, Instant>>,
}

/// How background work pages: each page waits until a token is spare beyond `keep` (what open
/// work needs), and the listing stops unfinished at `deadline`.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    pub keep: f64,
    pub deadline: Instant,
}

/// Pages one listing follows at most; a repeated next token ends it sooner. Either is an error.
pub const MAX_PAGES: usize = 1000;

impl Connection {
    /// Whether this replica polls and exports `resource_id` (an ARN or id) of this account and
    /// region; always true unless sharded. The account is known by then: it is learned from STS
    /// or from the ARNs of the very listing whose resources are asked about.
    pub fn owns(&self, resource_id: &str) -> bool {
        let (account_id, _) = self.identity.labels();
        self.shard.owns(&account_id, &self.region, resource_id)
    }

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
        let stalled = |at: &Instant| at.elapsed() < self.stall_hold;
        if let Some(at) = self.stalls().get(op.service).filter(|at| stalled(at)) {
            return Err(AwsError::Other {
                operation: op.name,
                message: format!(
                    "not sent: a {} call timed out {:.1}s ago and the endpoint looks stalled",
                    op.service,
                    at.elapsed().as_secs_f64()
                ),
            });
        }
        self.budget.acquire(op).await;
        let mut timed_out = false;
        let result = attempts(&self.budget, self.max_attempts, op, send, &mut timed_out).await;
        if timed_out {
            self.stalls().insert(op.service, Instant::now());
        }
        result
    }

    fn stalls(&self) -> std::sync::MutexGuard<'_, BTreeMap<&'static str, Instant>> {
        self.stalls.lock().expect("stalls lock")
    }

    /// Follows a paginated call, one budget token per page: `fetch` sends the page for a token,
    /// `take` moves its items into the output and returns the token to follow (`None` stops).
    pub async fn pages<T, P, E, Fut>(
        &self,
        op: Operation,
        fetch: impl FnMut(Option<String>) -> Fut,
        take: impl FnMut(P, &mut Vec<T>) -> Option<String>,
    ) -> Result<Vec<T>, AwsError>
    where
        Fut: std::future::Future<Output = Result<P, SdkError<E, HttpResponse>>>,
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        // Only a paced listing stops at a deadline.
        self.paged(op, None, fetch, take)
            .await?
            .ok_or_else(|| unfinished(op.name))
    }

    /// As [`Self::pages`], for background work: every page, not only the first, waits for a
    /// token `pace` leaves spare; `None` if the deadline comes first (nothing was observed).
    pub async fn pages_paced<T, P, E, Fut>(
        &self,
        op: Operation,
        pace: Pace,
        fetch: impl FnMut(Option<String>) -> Fut,
        take: impl FnMut(P, &mut Vec<T>) -> Option<String>,
    ) -> Result<Option<Vec<T>>, AwsError>
    where
        Fut: std::future::Future<Output = Result<P, SdkError<E, HttpResponse>>>,
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        self.paged(op, Some(pace), fetch, take).await
    }

    async fn paged<T, P, E, Fut>(
        &self,
        op: Operation,
        pace: Option<Pace>,
        mut fetch: impl FnMut(Option<String>) -> Fut,
        mut take: impl FnMut(P, &mut Vec<T>) -> Option<String>,
    ) -> Result<Option<Vec<T>>, AwsError>
    where
        Fut: std::future::Future<Output = Result<P, SdkError<E, HttpResponse>>>,
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        let mut seen = BTreeSet::new();
        for _ in 0..MAX_PAGES {
            if let Some(pace) = pace {
                let wait = self.budget.time_until_spare(op, pace.keep);
                if Instant::now() + wait >= pace.deadline {
                    return Ok(None);
                }
                tokio::time::sleep(wait).await;
            }
            let page = self.call(op, || fetch(token.clone())).await?;
            match take(page, &mut out) {
                Some(next) => token = Some(check_token(op.name, &mut seen, next)?),
                None => return Ok(Some(out)),
            }
        }
        Err(too_many_pages(op.name))
    }
}

/// `next`, unless the endpoint returned it before in this listing (it would loop forever).
pub fn check_token(
    operation: &'static str,
    seen: &mut BTreeSet<String>,
    next: String,
) -> Result<String, AwsError> {
    if seen.insert(next.clone()) {
        Ok(next)
    } else {
        Err(AwsError::Other {
            operation,
            message:
                "the endpoint returned a next token it had returned before in this listing: stopped"
                    .into(),
        })
    }
}

/// The error of an unpaced listing that stopped before its end (none does).
pub fn unfinished(operation: &'static str) -> AwsError {
    AwsError::Other {
        operation,
        message: "the listing stopped before its end".into(),
    }
}

/// The error of a listing longer than [`MAX_PAGES`].
pub fn too_many_pages(operation: &'static str) -> AwsError {
    AwsError::Other {
        operation,
        message: format!("more than {MAX_PAGES} pages: stopped"),
    }
}

/// Sends a call that already paid its first token, retrying what is worth retrying (throttling,
/// server errors, timeouts, transport errors) up to `max_attempts` with exponential backoff.
/// Retries come out of the same budget, and a throttle empties it: the exporter never spends
/// the account's quota faster because AWS is throttling. The SDK's own retries are off.
/// An attempt that ran out of `operation_timeout` is not retried (`timed_out` is set): a
/// stalled endpoint would only hide the failure for another timeout.
async fn attempts<T, E, Fut>(
    budget: &ApiBudget,
    max_attempts: u32,
    op: Operation,
    mut send: impl FnMut() -> Fut,
    timed_out: &mut bool,
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
        *timed_out = matches!(err, SdkError::TimeoutError(_));
        let retryable = throttled
            || match &err {
                SdkError::DispatchFailure(_) => true,
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
        shard: Shard,
        static_credentials: Option<StaticCredentials>,
        metrics: Arc<SelfMetrics>,
        registry: Arc<AccountRegistry>,
    ) -> Self {
        let identity = Arc::new(Identity::new(
            Self::key_of(&config),
            metrics.clone(),
            registry,
        ));
        if let Some(region) = &config.region {
            identity.set_region(region);
        }
        if let Some(account) = config.known_account() {
            identity.learn_account(account, "configuration");
        }
        Self {
            config,
            api,
            shard,
            static_credentials,
            metrics,
            identity,
            connection: OnceCell::new(),
        }
    }

    /// A stable key for this target in logs and the metrics hub.
    pub fn key(&self) -> String {
        self.identity.key.clone()
    }

    /// The key a target built from `config` has.
    pub fn key_of(config: &TargetConfig) -> String {
        format!(
            "{}/{}",
            config.name,
            config.region.as_deref().unwrap_or("default")
        )
    }

    /// Lets the next call of each of `services` through again after a timeout (a poll starts).
    pub fn forget_stalls(&self, services: &BTreeSet<&'static str>) {
        if let Some(c) = self.connection.get() {
            c.stalls().retain(|s, _| !services.contains(s));
        }
    }

    /// Whether this target is the one polling its account and region.
    pub fn holds_claim(&self) -> bool {
        self.identity.holds_claim()
    }

    /// Labels for series: (account id, region), `unknown` where not known yet.
    pub fn labels(&self) -> (String, String) {
        self.identity.labels()
    }

    /// An error if another target already polls this target's account and region.
    pub fn refused(&self) -> Result<(), AwsError> {
        self.identity.refused()
    }

    /// Connects once (resolving region and credentials); retried on the next poll if it fails.
    /// Never waits for the account id.
    pub async fn connect(&self) -> Result<Arc<Connection>, AwsError> {
        self.connection
            .get_or_try_init(|| self.establish())
            .await
            .cloned()
    }

    async fn establish(&self) -> Result<Arc<Connection>, AwsError> {
        let (base, mut sdk_config) = BaseSettings {
            region: self.config.region.clone(),
            endpoint_url: self.config.endpoint_url.clone(),
            static_credentials: self
                .static_credentials
                .as_ref()
                .map(|c| (c.access_key_id.clone(), c.secret_access_key.clone())),
            connect_timeout: self.api.connect_timeout,
            operation_timeout: self.api.operation_timeout,
        }
        .shared()
        .await;
        let region = sdk_config
            .region()
            .map(|r| r.to_string())
            .ok_or_else(|| AwsError::Other {
                operation: "connect",
                message: "no AWS region: set AWS_REGION, a profile region, or targets[].regions"
                    .into(),
            })?;
        self.identity.set_region(&region);

        // STS follows `sts_endpoint_url`, else AWS_ENDPOINT_URL_STS (or the profile's sts
        // endpoint_url), as the SDK defines per-service endpoints; else `endpoint_url`, but only
        // for AssumeRole: an emulator at `endpoint_url` may lack STS, so GetCallerIdentity is
        // not sent there unless one of the first two asks for it.
        let sts_endpoint = self
            .config
            .sts_endpoint_url
            .clone()
            .or_else(|| sts_endpoint_from_environment(&sdk_config));
        let sts_config = match &sts_endpoint {
            Some(url) => sdk_config.to_builder().endpoint_url(url).build(),
            None => sdk_config.clone(),
        };
        if let Some(role) = &self.config.role {
            let mut builder = aws_config::sts::AssumeRoleProvider::builder(&role.arn)
                .session_name(&role.session_name);
            if let Some(id) = &role.external_id {
                builder = builder.external_id(id);
            }
            let provider = RoleCredentials {
                arn: role.arn.clone(),
                inner: builder.configure(&sts_config).build().await,
            };
            // Its own credentials cache: the base's is shared by every target of the same
            // settings, and a cache keeps at most 64 providers' credentials, so 500 member roles
            // in one would be assumed again at nearly every call.
            sdk_config = sdk_config
                .into_builder()
                .credentials_provider(SharedCredentialsProvider::new(provider))
                .identity_cache(IdentityCache::lazy().build())
                .build();
        }
        let instrumentation = ApiInstrumentation::new(self.metrics.clone(), self.identity.clone());
        // Each of the replicas takes its part of every bucket (overrides included), so together
        // they keep to quota_share.
        let share = self.shard.share_of(self.api.quota_share);
        let budget = ApiBudget::new(
            &region,
            share,
            self.api.quotas.clone(),
            self.metrics.clone(),
            self.identity.clone(),
        );
        let sts_reachable = self.config.endpoint_url.is_none() || sts_endpoint.is_some();
        if self.identity.account.get().is_none() && sts_reachable {
            let mut sts = aws_sdk_sts::config::Builder::from(&sdk_config);
            sts.set_endpoint_url(sts_endpoint);
            let sts =
                aws_sdk_sts::Client::from_conf(sts.interceptor(instrumentation.clone()).build());
            tokio::spawn(learn_account_from_sts(sts, self.identity.clone()));
        }
        tracing::info!(target_key = %self.identity.key, %region, shard = self.shard.ordinal(), total_shards = self.shard.total(), api_quota_share = share, "connected to AWS target");
        Ok(Arc::new(Connection {
            region,
            identity: self.identity.clone(),
            sdk_config,
            _base: base,
            budget,
            instrumentation,
            max_attempts: self.api.max_attempts,
            shard: self.shard,
            stall_hold: self.api.operation_timeout,
            stalls: Mutex::new(BTreeMap::new()),
        }))
    }
}

impl Target {
    /// An STS client for `conn`, sent where the daemon sends GetCallerIdentity (see
    /// `establish`); `None` when the daemon does not ask STS (`endpoint_url` without an STS
    /// endpoint). For `doctor`.
    pub fn sts_client(&self, conn: &Connection) -> Option<aws_sdk_sts::Client> {
        let endpoint = self
            .config
            .sts_endpoint_url
            .clone()
            .or_else(|| sts_endpoint_from_environment(&conn.sdk_config));
        if self.config.endpoint_url.is_some() && endpoint.is_none() {
            return None;
        }
        let mut sts = aws_sdk_sts::config::Builder::from(&conn.sdk_config);
        sts.set_endpoint_url(endpoint);
        Some(aws_sdk_sts::Client::from_conf(
            sts.interceptor(conn.instrumentation.clone()).build(),
        ))
    }
}

/// The settings a target's base SDK configuration is loaded from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct BaseSettings {
    region: Option<String>,
    endpoint_url: Option<String>,
    /// (access key id, secret access key) of [`StaticCredentials`].
    static_credentials: Option<(String, String)>,
    connect_timeout: Duration,
    operation_timeout: Duration,
}

/// A base SDK configuration, loaded once by the first target that needs it.
type SharedBase = Arc<OnceCell<SdkConfig>>;

/// Base configurations some connection uses, by their settings.
static BASES: Mutex<Vec<(BaseSettings, Weak<OnceCell<SdkConfig>>)>> = Mutex::new(Vec::new());

impl BaseSettings {
    /// The base configuration of these settings, shared by every connection with the same
    /// settings (an organisation's member targets): the default credentials chain alone (its
    /// profile, web identity and instance metadata providers, each with its own client) is
    /// about 60 KB, and its credentials cache then fetches the exporter's own credentials once,
    /// not once per target. A base no connection uses any more is loaded anew, so targets a
    /// reload adds after every old one is gone see the environment and profile as they are then.
    async fn shared(self) -> (SharedBase, SdkConfig) {
        let cell = {
            let mut bases = BASES.lock().expect("base configurations lock");
            bases.retain(|(_, base)| base.strong_count() > 0);
            match bases
                .iter()
                .find(|(settings, _)| *settings == self)
                .and_then(|(_, base)| base.upgrade())
            {
                Some(cell) => cell,
                None => {
                    let cell = SharedBase::default();
                    bases.push((self.clone(), Arc::downgrade(&cell)));
                    cell
                }
            }
        };
        let config = cell.get_or_init(|| self.load()).await.clone();
        (cell, config)
    }

    async fn load(&self) -> SdkConfig {
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .http_client(shared_http_client())
            // Retries are made by `attempts`, out of the API budget.
            .retry_config(RetryConfig::disabled())
            // The operation timeout already ends a call whose answer stalls; the SDK's
            // throughput checks on every (small) body were 4% of a 500-account profile.
            .stalled_stream_protection(StalledStreamProtectionConfig::disabled())
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(self.connect_timeout)
                    .operation_timeout(self.operation_timeout)
                    .build(),
            );
        if let Some(region) = &self.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some(url) = &self.endpoint_url {
            loader = loader.endpoint_url(url);
        }
        if let Some((id, secret)) = &self.static_credentials {
            loader =
                loader.credentials_provider(Credentials::new(id, secret, None, None, "simulator"));
        }
        loader.load().await
    }
}

/// The one HTTP client of every SDK client of every target: one connection pool, one TLS
/// configuration and one copy of the trust roots, instead of one each per SDK client (four per
/// target). It is the SDK's default HTTPS client (hyper 1, rustls with aws-lc, the proxy from
/// the environment), built once. A pool keyed by host shares connections between targets of a
/// region: requests are signed per target, the connection carries no credentials.
fn shared_http_client() -> SharedHttpClient {
    use aws_smithy_http_client::proxy::ProxyConfig;
    use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
    use aws_smithy_http_client::{Builder, ConnectorBuilder};
    static CLIENT: OnceLock<SharedHttpClient> = OnceLock::new();
    CLIENT
        .get_or_init(|| {
            // What aws-smithy-runtime's default_https_client builds for the latest behaviour
            // version, once per (connect, read) timeout pair.
            Builder::new().build_with_connector_fn(|settings, components| {
                let mut connector =
                    ConnectorBuilder::default().tls_provider(Provider::Rustls(CryptoMode::AwsLc));
                connector.set_connector_settings(settings.cloned());
                if let Some(components) = components {
                    connector.set_sleep_impl(components.sleep_impl());
                }
                connector.set_proxy_config(Some(ProxyConfig::from_env()));
                connector.build()
            })
        })
        .clone()
}

/// AWS_ENDPOINT_URL_STS, or `endpoint_url` in the profile's `sts` services section.
fn sts_endpoint_from_environment(sdk_config: &SdkConfig) -> Option<String> {
    let key = ServiceConfigKey::builder()
        .service_id("STS")
        .env("AWS_ENDPOINT_URL")
        .profile("endpoint_url")
        .build()
        .ok()?;
    sdk_config.service_config()?.load_config(key)
}

/// Asks STS for the account id; a failure only delays it until an answer's ARNs tell it.
async fn learn_account_from_sts(sts: aws_sdk_sts::Client, identity: Arc<Identity>) {
    match sts.get_caller_identity().send().await {
        Ok(out) => {
            if let Some(account) = out.account() {
                identity.learn_account(account, "sts:GetCallerIdentity");
            }
        }
        Err(e) => {
            let e = AwsError::from_sdk(GET_CALLER_IDENTITY.name, e);
            tracing::warn!(target_key = %identity.key, error = %e, "STS is not reachable; learning the account id from the resources' ARNs instead");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(region: &str) -> BaseSettings {
        BaseSettings {
            region: Some(region.into()),
            endpoint_url: Some("http://127.0.0.1:9".into()),
            static_credentials: Some(("id".into(), "secret".into())),
            connect_timeout: Duration::from_secs(5),
            operation_timeout: Duration::from_secs(10),
        }
    }

    #[tokio::test]
    async fn targets_with_the_same_settings_share_one_base_configuration_while_one_is_in_use() {
        let (first, config) = settings("eu-west-3").shared().await;
        let (second, _) = settings("eu-west-3").shared().await;
        assert!(Arc::ptr_eq(&first, &second));
        assert_eq!(config.region().map(|r| r.as_ref()), Some("eu-west-3"));
        let (other, _) = settings("eu-north-1").shared().await;
        assert!(!Arc::ptr_eq(&first, &other));
        let stale = Arc::downgrade(&first);
        drop((first, second));
        let (again, _) = settings("eu-west-3").shared().await;
        assert!(stale.upgrade().is_none(), "no connection used it any more");
        assert!(again.get().is_some());
    }
}
