//! Where and how to reach AWS: the `aws_api` section and the `targets` list, validated into
//! one [`TargetConfig`] per (target, region).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::Deserialize;

use crate::config::check::{Check, DurationText};

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

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetConfig {
    pub name: String,
    pub region: Option<String>,
    pub role: Option<RoleConfig>,
    pub endpoint_url: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleConfig {
    pub arn: String,
    pub external_id: Option<String>,
    pub session_name: String,
}

impl Default for AwsApiConfig {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            connect_timeout: Duration::from_secs(5),
            operation_timeout: Duration::from_secs(30),
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
        if !(quota_share > 0.0 && quota_share <= 1.0) {
            c.fail(
                "aws_api.quota_share",
                "must be a fraction greater than 0 and at most 1",
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

/// The `targets` list, one entry per region; `None` (no list) means the default credentials and region.
pub fn validate_targets(c: &mut Check, list: Option<Vec<RawTarget>>) -> Vec<TargetConfig> {
    match list {
        None => vec![TargetConfig {
            name: "default".into(),
            region: None,
            role: None,
            endpoint_url: None,
        }],
        Some(list) => validate_list(c, list),
    }
}

fn validate_list(c: &mut Check, list: Vec<RawTarget>) -> Vec<TargetConfig> {
    if list.is_empty() {
        c.fail("targets", "must list at least one target (omit `targets` to use the default credentials and region)");
    }
    let mut out = Vec::new();
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
        if let Some(url) = &t.endpoint_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                c.fail(
                    format!("{path}.endpoint_url"),
                    format!("`{url}` must start with http:// or https://"),
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
        for region in regions {
            out.push(TargetConfig {
                name: t.name.clone(),
                region,
                role: role.clone(),
                endpoint_url: t.endpoint_url.clone(),
            });
        }
    }
    out
}
