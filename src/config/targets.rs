//! Where and how to reach AWS: the `aws_api` section and the `targets` list, validated into
//! one [`TargetConfig`] per (target, region).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::Deserialize;

use crate::config::check::{Check, DurationText};
use crate::config::organization::{OrganizationTarget, RawOrganization};
use crate::config::target::{is_account_id, RoleConfig, TargetConfig};

#[derive(Debug, Clone, PartialEq)]
pub struct AwsApiConfig {
    pub max_attempts: u32,
    pub connect_timeout: Duration,
    pub operation_timeout: Duration,
    /// Fraction (0..1] of each AWS API token bucket the exporter allows itself.
    pub quota_share: f64,
    /// AWS's bucket per IAM action where the account's quota was raised: (bucket size, refill
    /// per second). The exporter still takes `quota_share` of it.
    pub quotas: BTreeMap<String, (f64, f64)>,
}

/// The smallest `quota_share`: 1% of a bucket that refills at one call per second still
/// allows a call every 100 s.
pub const MIN_QUOTA_SHARE: f64 = 0.01;

impl Default for AwsApiConfig {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            connect_timeout: Duration::from_secs(5),
            operation_timeout: Duration::from_secs(10),
            quota_share: 0.5,
            quotas: BTreeMap::new(),
        }
    }
}

/// The `aws_api` section and a `targets` entry as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAwsApi {
    pub max_attempts: Option<u32>,
    pub connect_timeout: Option<DurationText>,
    pub operation_timeout: Option<DurationText>,
    pub quota_share: Option<f64>,
    /// AWS's bucket by IAM action, for quotas raised for the account.
    #[serde(default)]
    pub quotas: BTreeMap<String, RawQuota>,
}

/// AWS's bucket for one operation, as raised for the account.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawQuota {
    pub bucket_size: f64,
    pub refill_per_second: f64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTarget {
    pub name: String,
    pub regions: Option<Vec<String>>,
    pub role_arn: Option<String>,
    pub external_id: Option<String>,
    pub session_name: Option<String>,
    pub endpoint_url: Option<String>,
    pub sts_endpoint_url: Option<String>,
    pub account_id: Option<String>,
    /// Every ACTIVE account of an organisation instead of one account.
    pub organization: Option<RawOrganization>,
}

impl RawAwsApi {
    /// `iam_actions`: the actions of every call the exporter can make (keys of `quotas`).
    pub fn validate(self, c: &mut Check, iam_actions: &[&str]) -> AwsApiConfig {
        let one_second = Duration::from_secs(1);
        let defaults = AwsApiConfig::default();
        let max_attempts = self.max_attempts.unwrap_or(defaults.max_attempts);
        if !(1..=10).contains(&max_attempts) {
            c.fail("aws_api.max_attempts", "must be between 1 and 10");
        }
        let quota_share = self.quota_share.unwrap_or(defaults.quota_share);
        if !(MIN_QUOTA_SHARE..=1.0).contains(&quota_share) {
            c.fail(
                "aws_api.quota_share",
                format!("must be a fraction from {MIN_QUOTA_SHARE} to 1 (got {quota_share})"),
            );
        }
        AwsApiConfig {
            max_attempts,
            connect_timeout: c.duration(
                "aws_api.connect_timeout",
                &self.connect_timeout,
                defaults.connect_timeout,
                Duration::from_millis(100),
            ),
            operation_timeout: c.duration(
                "aws_api.operation_timeout",
                &self.operation_timeout,
                defaults.operation_timeout,
                one_second,
            ),
            quota_share,
            quotas: validate_quotas(c, &self.quotas, iam_actions),
        }
    }
}

/// Keys are IAM actions of calls the exporter makes; sizes and rates must be positive.
fn validate_quotas(
    c: &mut Check,
    quotas: &BTreeMap<String, RawQuota>,
    iam_actions: &[&str],
) -> BTreeMap<String, (f64, f64)> {
    let mut out = BTreeMap::new();
    for (action, q) in quotas {
        let path = format!("aws_api.quotas.{action}");
        if !iam_actions.contains(&action.as_str()) {
            c.fail(
                path,
                format!(
                    "not an API the exporter calls; one of: {}",
                    iam_actions.join(", ")
                ),
            );
            continue;
        }
        let mut ok = true;
        if !(q.bucket_size.is_finite() && q.bucket_size >= 1.0) {
            c.fail(
                format!("{path}.bucket_size"),
                "must be a number of calls, at least 1",
            );
            ok = false;
        }
        if !(q.refill_per_second.is_finite() && q.refill_per_second > 0.0) {
            c.fail(
                format!("{path}.refill_per_second"),
                "must be a rate greater than 0",
            );
            ok = false;
        }
        if ok {
            out.insert(action.clone(), (q.bucket_size, q.refill_per_second));
        }
    }
    out
}

/// The `targets` list: one entry per (account target, region), and the organisation targets;
/// `None` (no list) means the default credentials and region.
pub fn validate_targets(
    c: &mut Check,
    list: Option<Vec<RawTarget>>,
) -> (Vec<TargetConfig>, Vec<OrganizationTarget>) {
    match list {
        None => (vec![TargetConfig::new("default", None)], vec![]),
        Some(list) => validate_list(c, list),
    }
}

fn validate_list(
    c: &mut Check,
    list: Vec<RawTarget>,
) -> (Vec<TargetConfig>, Vec<OrganizationTarget>) {
    if list.is_empty() {
        c.fail("targets", "must list at least one target (omit `targets` to use the default credentials and region)");
    }
    let mut out = Vec::new();
    let mut organizations = Vec::new();
    let mut names = BTreeSet::new();
    for (i, t) in list.into_iter().enumerate() {
        let path = format!("targets[{i}]");
        if t.name.trim().is_empty() {
            c.fail(format!("{path}.name"), "must not be empty");
        } else if !names.insert(t.name.clone()) {
            c.fail(
                format!("{path}.name"),
                format!("duplicate target name `{}`", t.name),
            );
        }
        let role = match t.role_arn {
            Some(arn) => {
                if !(arn.starts_with("arn:") && arn.contains(":iam::") && arn.contains(":role/")) {
                    c.fail(
                        format!("{path}.role_arn"),
                        format!("`{arn}` is not an IAM role ARN (arn:aws:iam::ACCOUNT:role/NAME)"),
                    );
                }
                Some(RoleConfig {
                    arn,
                    external_id: t.external_id,
                    session_name: t
                        .session_name
                        .unwrap_or_else(|| "aws-workflow-exporter".into()),
                })
            }
            None => {
                if t.external_id.is_some() {
                    c.fail(format!("{path}.external_id"), "needs role_arn");
                }
                if t.session_name.is_some() {
                    c.fail(format!("{path}.session_name"), "needs role_arn");
                }
                None
            }
        };
        for (key, url) in [
            ("endpoint_url", &t.endpoint_url),
            ("sts_endpoint_url", &t.sts_endpoint_url),
        ] {
            if let Some(url) = url {
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    c.fail(
                        format!("{path}.{key}"),
                        format!("`{url}` must start with http:// or https://"),
                    );
                }
            }
        }
        if let Some(id) = &t.account_id {
            if !is_account_id(id) {
                c.fail(
                    format!("{path}.account_id"),
                    format!("`{id}` is not a 12-digit AWS account id"),
                );
            }
        }
        let regions: Vec<Option<String>> = match t.regions {
            None => vec![None],
            Some(regions) if regions.is_empty() => {
                c.fail(
                    format!("{path}.regions"),
                    "must list at least one region (omit it to use the default region)",
                );
                vec![]
            }
            Some(regions) => {
                let mut seen = BTreeSet::new();
                for (j, r) in regions.iter().enumerate() {
                    let valid = !r.is_empty()
                        && r.chars()
                            .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-');
                    if !valid {
                        c.fail(
                            format!("{path}.regions[{j}]"),
                            format!("`{r}` is not a region name like us-east-1"),
                        );
                    } else if !seen.insert(r.clone()) {
                        c.fail(
                            format!("{path}.regions[{j}]"),
                            format!("duplicate region `{r}`"),
                        );
                    }
                }
                regions.into_iter().map(Some).collect()
            }
        };
        if let Some(org) = t.organization {
            if t.account_id.is_some() {
                c.fail(
                    format!("{path}.account_id"),
                    "not with `organization`: each member account is a target of its own",
                );
            }
            organizations.push(OrganizationTarget {
                name: t.name.clone(),
                regions,
                lister: TargetConfig {
                    name: t.name.clone(),
                    // AWS Organizations answers in us-east-1 (the aws partition's endpoint).
                    region: Some("us-east-1".into()),
                    role: role.clone(),
                    endpoint_url: t.endpoint_url.clone(),
                    sts_endpoint_url: t.sts_endpoint_url.clone(),
                    account_id: None,
                },
                organization: org.validate(c, &format!("{path}.organization")),
            });
            continue;
        }
        for region in regions {
            out.push(TargetConfig {
                name: t.name.clone(),
                region,
                role: role.clone(),
                endpoint_url: t.endpoint_url.clone(),
                sts_endpoint_url: t.sts_endpoint_url.clone(),
                account_id: t.account_id.clone(),
            });
        }
    }
    refuse_same_account_and_region(c, &out);
    (out, organizations)
}

/// Two targets that reach the same account and region would export every series twice and
/// each spend a full API budget there. Refused when the file shows it (the same account, or
/// the same credentials and endpoint, in the same region); when only the account ids learned
/// at run time show it, the exporter refuses the later target then (see `aws::Target`).
fn refuse_same_account_and_region(c: &mut Check, targets: &[TargetConfig]) {
    // What identifies the account a target reaches, as far as the file tells.
    let reach = |t: &TargetConfig| match t.known_account() {
        Some(account) => format!("account {account}"),
        None => format!(
            "the default credentials at {}",
            t.endpoint_url.as_deref().unwrap_or("the AWS endpoints")
        ),
    };
    for (j, later) in targets.iter().enumerate() {
        let Some(first) = targets[..j]
            .iter()
            .find(|t| t.region == later.region && reach(t) == reach(later))
        else {
            continue;
        };
        if first.name == later.name {
            continue; // a duplicate region of one target: reported with its index already
        }
        let region = later.region.as_deref().unwrap_or("the default region");
        c.fail(
            format!("targets (`{}`)", later.name),
            format!(
                "polls {} in {region}, as target `{}` does: remove one of them, or give them different regions",
                reach(later),
                first.name
            ),
        );
    }
}
