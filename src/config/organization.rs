//! A target that names an AWS organisation instead of an account: the exporter lists the
//! organisation's ACTIVE accounts and polls each (account, region) through a role it assumes
//! there. What the file says is validated here; `aws::organization` lists the accounts.

use std::collections::BTreeSet;
use std::time::Duration;

use regex::Regex;
use serde::Deserialize;

use crate::config::check::{Check, DurationText};
use crate::config::target::{is_account_id, RoleConfig, TargetConfig};

/// How often the accounts are listed again unless `refresh` says.
pub const DEFAULT_REFRESH: Duration = Duration::from_secs(600);

/// A target's `organization` block as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOrganization {
    pub role_name: Option<String>,
    pub external_id: Option<String>,
    pub session_name: Option<String>,
    #[serde(default)]
    pub include_accounts: Vec<String>,
    #[serde(default)]
    pub exclude_accounts: Vec<String>,
    pub account_name_regex: Option<String>,
    #[serde(default)]
    pub organizational_units: Vec<String>,
    pub refresh: Option<DurationText>,
}

/// Which member accounts to poll and how to reach them.
#[derive(Debug, Clone)]
pub struct OrganizationConfig {
    /// The role assumed in each member account (`arn:PARTITION:iam::ACCOUNT:role/ROLE_NAME`).
    pub role_name: String,
    pub external_id: Option<String>,
    pub session_name: String,
    /// Only these accounts, when not empty.
    pub include_accounts: BTreeSet<String>,
    pub exclude_accounts: BTreeSet<String>,
    pub account_name_regex: Option<Regex>,
    /// Only accounts under these roots or organisational units (their children too).
    pub organizational_units: Vec<String>,
    pub refresh: Duration,
}

impl PartialEq for OrganizationConfig {
    fn eq(&self, other: &Self) -> bool {
        let regex = |c: &Self| c.account_name_regex.as_ref().map(|r| r.as_str().to_owned());
        self.role_name == other.role_name
            && self.external_id == other.external_id
            && self.session_name == other.session_name
            && self.include_accounts == other.include_accounts
            && self.exclude_accounts == other.exclude_accounts
            && regex(self) == regex(other)
            && self.organizational_units == other.organizational_units
            && self.refresh == other.refresh
    }
}

/// A member account as AWS Organizations lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub id: String,
    pub name: String,
    /// `arn:PARTITION:organizations::...`: the partition of the role ARNs.
    pub arn: String,
}

/// A `targets` entry with an `organization` block.
#[derive(Debug, Clone, PartialEq)]
pub struct OrganizationTarget {
    pub name: String,
    /// Each member account is polled in each of these (`None`: the default region).
    pub regions: Vec<Option<String>>,
    /// How to reach AWS Organizations: the exporter's credentials, or `role_arn` (a role in the
    /// management account or a delegated administrator); its endpoints serve the members too.
    pub lister: TargetConfig,
    pub organization: OrganizationConfig,
}

impl OrganizationTarget {
    /// Whether the filters select `account` (ACTIVE accounts only are listed).
    pub fn selects(&self, account: &Account) -> bool {
        let o = &self.organization;
        (o.include_accounts.is_empty() || o.include_accounts.contains(&account.id))
            && !o.exclude_accounts.contains(&account.id)
            && o.account_name_regex
                .as_ref()
                .is_none_or(|r| r.is_match(&account.name))
    }

    /// One target per (selected account, region), reaching the account through its role.
    pub fn members(&self, accounts: &[Account]) -> Vec<TargetConfig> {
        let o = &self.organization;
        let mut out = Vec::new();
        for account in accounts.iter().filter(|a| self.selects(a)) {
            let partition = account.arn.split(':').nth(1).unwrap_or("aws");
            let role = RoleConfig {
                arn: format!("arn:{partition}:iam::{}:role/{}", account.id, o.role_name),
                external_id: o.external_id.clone(),
                session_name: o.session_name.clone(),
            };
            for region in &self.regions {
                out.push(TargetConfig {
                    name: format!("{}/{}", self.name, account.id),
                    region: region.clone(),
                    role: Some(role.clone()),
                    endpoint_url: self.lister.endpoint_url.clone(),
                    sts_endpoint_url: self.lister.sts_endpoint_url.clone(),
                    account_id: Some(account.id.clone()),
                });
            }
        }
        out
    }
}

impl RawOrganization {
    pub fn validate(self, c: &mut Check, path: &str) -> OrganizationConfig {
        let role_name = match self.role_name {
            Some(name) => {
                let valid = !name.is_empty()
                    && name.len() <= 64
                    && name
                        .chars()
                        .all(|ch| ch.is_ascii_alphanumeric() || "+=,.@_-/".contains(ch));
                if !valid {
                    c.fail(
                        format!("{path}.role_name"),
                        format!("`{name}` is not an IAM role name (letters, digits and +=,.@_-/; at most 64)"),
                    );
                }
                name
            }
            None => {
                c.fail(
                    format!("{path}.role_name"),
                    "is required: the role to assume in each member account",
                );
                String::new()
            }
        };
        let mut ids = |key: &str, list: Vec<String>| -> BTreeSet<String> {
            for (i, id) in list.iter().enumerate() {
                if !is_account_id(id) {
                    c.fail(
                        format!("{path}.{key}[{i}]"),
                        format!("`{id}` is not a 12-digit AWS account id"),
                    );
                }
            }
            list.into_iter().collect()
        };
        let include_accounts = ids("include_accounts", self.include_accounts);
        let exclude_accounts = ids("exclude_accounts", self.exclude_accounts);
        for (i, ou) in self.organizational_units.iter().enumerate() {
            if !(ou.starts_with("ou-") || ou.starts_with("r-")) {
                c.fail(
                    format!("{path}.organizational_units[{i}]"),
                    format!("`{ou}` is not an organisational unit (ou-...) or root (r-...) id"),
                );
            }
        }
        OrganizationConfig {
            role_name,
            external_id: self.external_id,
            session_name: self
                .session_name
                .unwrap_or_else(|| "aws-workflow-exporter".into()),
            include_accounts,
            exclude_accounts,
            account_name_regex: c.regex(
                &format!("{path}.account_name_regex"),
                &self.account_name_regex,
            ),
            organizational_units: self.organizational_units,
            refresh: c.duration(
                &format!("{path}.refresh"),
                &self.refresh,
                DEFAULT_REFRESH,
                Duration::from_secs(1),
            ),
        }
    }
}
