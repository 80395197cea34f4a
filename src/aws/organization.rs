//! Lists the ACTIVE accounts of an organisation (AWS Organizations, from the management account
//! or a delegated administrator), for targets that name an organisation. Names no service.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use aws_sdk_organizations::types::{Account as SdkAccount, AccountStatus};

use crate::aws::operation::{AwsBucket, Operation};
use crate::aws::{AccountRegistry, Connection, StaticCredentials, Target};
use crate::config::organization::{Account, OrganizationTarget};
use crate::config::targets::AwsApiConfig;
use crate::error::AwsError;
use crate::exposition::metric::{def, labels, MetricDef};
use crate::exposition::self_metrics::SelfMetrics;
use crate::exposition::self_metrics::{gauge, Gauges};
use crate::shard::Shard;

/// The AWS Organizations calls: ListAccounts without organisational unit filters; with them,
/// ListAccountsForParent per unit and ListOrganizationalUnitsForParent to reach its children.
/// AWS publishes no per-operation quota: sized conservatively (Organizations throttles at a
/// few calls per second per account).
pub const OPERATIONS: &[Operation] = &[
    LIST_ACCOUNTS,
    LIST_ACCOUNTS_FOR_PARENT,
    LIST_ORGANIZATIONAL_UNITS_FOR_PARENT,
];
const fn op(name: &'static str, iam_action: &'static str) -> Operation {
    Operation {
        service: "organizations",
        name,
        iam_action: Some(iam_action),
        bucket: AwsBucket::flat(20.0, 2.0),
    }
}
pub const LIST_ACCOUNTS: Operation = op("ListAccounts", "organizations:ListAccounts");
pub const LIST_ACCOUNTS_FOR_PARENT: Operation = op(
    "ListAccountsForParent",
    "organizations:ListAccountsForParent",
);
pub const LIST_ORGANIZATIONAL_UNITS_FOR_PARENT: Operation = op(
    "ListOrganizationalUnitsForParent",
    "organizations:ListOrganizationalUnitsForParent",
);

/// Organisational units below one root or unit, at most: a guard against a cycle in answers.
const MAX_UNITS: usize = 10_000;

/// Reaches AWS Organizations with an organisation target's own credentials.
pub struct Lister {
    target: Target,
}

impl Lister {
    pub fn new(
        org: &OrganizationTarget,
        api: AwsApiConfig,
        static_credentials: Option<StaticCredentials>,
        metrics: Arc<SelfMetrics>,
    ) -> Self {
        // Its own registry: the lister polls nothing, so it never takes an (account, region)
        // from a target that does.
        let registry = Arc::new(AccountRegistry::default());
        let target = Target::new(
            org.lister.clone(),
            api,
            Shard::SINGLE,
            static_credentials,
            metrics,
            registry,
        );
        Self { target }
    }

    /// The organisation's ACTIVE accounts (under `organizational_units` if given), by id.
    pub async fn accounts(&self, org: &OrganizationTarget) -> Result<Vec<Account>, AwsError> {
        let conn = self.target.connect().await?;
        let client = aws_sdk_organizations::Client::from_conf(
            aws_sdk_organizations::config::Builder::from(&conn.sdk_config)
                .interceptor(conn.instrumentation.clone())
                .build(),
        );
        let units = &org.organization.organizational_units;
        let listed = if units.is_empty() {
            list_accounts(&conn, &client).await?
        } else {
            let mut all = Vec::new();
            for parent in below(&conn, &client, units).await? {
                all.extend(accounts_for_parent(&conn, &client, &parent).await?);
            }
            all
        };
        let active: BTreeMap<String, Account> = listed
            .iter()
            .filter(|a| a.status() == Some(&AccountStatus::Active))
            .filter_map(|a| {
                Some(Account {
                    id: a.id()?.to_owned(),
                    name: a.name().unwrap_or_default().to_owned(),
                    arn: a.arn().unwrap_or_default().to_owned(),
                })
            })
            .map(|a| (a.id.clone(), a))
            .collect();
        Ok(active.into_values().collect())
    }
}

async fn list_accounts(
    conn: &Connection,
    client: &aws_sdk_organizations::Client,
) -> Result<Vec<SdkAccount>, AwsError> {
    let fetch = |token| client.list_accounts().set_next_token(token).send();
    let take = |page: aws_sdk_organizations::operation::list_accounts::ListAccountsOutput,
                out: &mut Vec<SdkAccount>| {
        out.extend(page.accounts().iter().cloned());
        page.next_token
    };
    conn.pages(LIST_ACCOUNTS, fetch, take).await
}

async fn accounts_for_parent(
    conn: &Connection,
    client: &aws_sdk_organizations::Client,
    parent: &str,
) -> Result<Vec<SdkAccount>, AwsError> {
    let fetch = |token| {
        client
            .list_accounts_for_parent()
            .parent_id(parent)
            .set_next_token(token)
            .send()
    };
    let take = |page: aws_sdk_organizations::operation::list_accounts_for_parent::ListAccountsForParentOutput,
                out: &mut Vec<SdkAccount>| {
        out.extend(page.accounts().iter().cloned());
        page.next_token
    };
    conn.pages(LIST_ACCOUNTS_FOR_PARENT, fetch, take).await
}

/// `units` and every organisational unit below them.
async fn below(
    conn: &Connection,
    client: &aws_sdk_organizations::Client,
    units: &[String],
) -> Result<BTreeSet<String>, AwsError> {
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let mut todo: Vec<String> = units.to_vec();
    while let Some(parent) = todo.pop() {
        if !seen.insert(parent.clone()) {
            continue;
        }
        if seen.len() > MAX_UNITS {
            return Err(AwsError::Other {
                operation: LIST_ORGANIZATIONAL_UNITS_FOR_PARENT.name,
                message: format!("more than {MAX_UNITS} organisational units: stopped"),
            });
        }
        let fetch = |token| {
            client
                .list_organizational_units_for_parent()
                .parent_id(&parent)
                .set_next_token(token)
                .send()
        };
        let take = |page: aws_sdk_organizations::operation::list_organizational_units_for_parent::ListOrganizationalUnitsForParentOutput,
                    out: &mut Vec<String>| {
            out.extend(
                page.organizational_units()
                    .iter()
                    .filter_map(|u| u.id().map(str::to_owned)),
            );
            page.next_token
        };
        todo.extend(
            conn.pages(LIST_ORGANIZATIONAL_UNITS_FOR_PARENT, fetch, take)
                .await?,
        );
    }
    Ok(seen)
}

labels!(pub struct Organization { organization });
labels!(pub struct OrganizationState { organization, state });

def!(
    ORGANIZATION_ACCOUNTS,
    "aws_workflow_exporter_organization_accounts",
    Gauge,
    OrganizationState,
    "Member accounts of an organisation target by state: discovered (ACTIVE and selected by the filters, as of the last successful listing), polled (every last poll of the account succeeded), failing (some last poll of the account failed, e.g. its role could not be assumed: see poll_success by account_id)."
);
def!(
    ORGANIZATION_DISCOVERY_SUCCESS,
    "aws_workflow_exporter_organization_discovery_success",
    Gauge,
    Organization,
    "1 if the last listing of the organisation's accounts succeeded, 0 otherwise (the last known accounts stay polled)."
);
def!(
    ORGANIZATION_LAST_DISCOVERY,
    "aws_workflow_exporter_organization_last_discovery_success_timestamp_seconds",
    Gauge,
    Organization,
    "Unix time of the last successful listing of the organisation's accounts."
);
pub const DEFS: &[&MetricDef] = &[
    &ORGANIZATION_ACCOUNTS.def,
    &ORGANIZATION_DISCOVERY_SUCCESS.def,
    &ORGANIZATION_LAST_DISCOVERY.def,
];

/// The organisation self-metrics, registered with the exporter's own.
#[derive(Clone)]
pub struct OrganizationMetrics {
    accounts: Gauges<OrganizationState<'static>>,
    success: Gauges<Organization<'static>>,
    last_success: Gauges<Organization<'static>>,
}

impl OrganizationMetrics {
    pub fn register(metrics: &SelfMetrics) -> Self {
        let this = Self {
            accounts: Gauges::new(&ORGANIZATION_ACCOUNTS, gauge),
            success: Gauges::new(&ORGANIZATION_DISCOVERY_SUCCESS, gauge),
            last_success: Gauges::new(&ORGANIZATION_LAST_DISCOVERY, gauge),
        };
        let collectors = [
            this.accounts.collector(),
            this.success.collector(),
            this.last_success.collector(),
        ];
        for c in collectors {
            metrics.register(c).expect("unique metric");
        }
        this
    }

    /// A listing's outcome; `discovered` is the number of selected accounts when it succeeded.
    pub fn record_listing(&self, organization: &str, discovered: Option<usize>, at: f64) {
        let org = Organization { organization };
        self.success
            .with(&org)
            .set(if discovered.is_some() { 1.0 } else { 0.0 });
        if let Some(n) = discovered {
            self.last_success.with(&org).set(at);
            let state = "discovered";
            self.accounts
                .with(&OrganizationState {
                    organization,
                    state,
                })
                .set(n as f64);
        }
    }

    /// How many member accounts poll fine and how many fail, from the last poll of each source.
    pub fn record_polls(&self, organization: &str, polled: usize, failing: usize) {
        for (state, n) in [("polled", polled), ("failing", failing)] {
            self.accounts
                .with(&OrganizationState {
                    organization,
                    state,
                })
                .set(n as f64);
        }
    }

    /// An organisation target a reload removed.
    pub fn forget(&self, organization: &str) {
        for state in ["discovered", "polled", "failing"] {
            self.accounts.remove(&OrganizationState {
                organization,
                state,
            });
        }
        self.success.remove(&Organization { organization });
        self.last_success.remove(&Organization { organization });
    }
}
