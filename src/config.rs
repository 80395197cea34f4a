//! Configuration: the YAML file as written (`raw`), validated into the model the daemon runs on.
//!
//! Every validation error names the path of the field inside the file, so a user can find it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use regex::Regex;
use serde::Deserialize;

use crate::error::{ConfigError, FieldError};

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub poll_interval: Duration,
    pub aws_api: AwsApiConfig,
    /// One entry per (target, region); a target without regions uses the SDK's default region.
    pub targets: Vec<TargetConfig>,
    pub sfn_map_runs: SfnMapRunsConfig,
    pub transfer_workflows: TransferWorkflowsConfig,
    pub appflow_flows: AppflowFlowsConfig,
}

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

/// Which resources a source watches: all when every list is empty, otherwise any match (OR).
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub names: BTreeSet<String>,
    pub name_regex: Option<Regex>,
    pub ids: BTreeSet<String>,
}

impl Selection {
    /// `name` is what the regex and the names list are checked against, `id` the ARN or id.
    pub fn matches(&self, name: &str, id: &str) -> bool {
        if self.names.is_empty() && self.name_regex.is_none() && self.ids.is_empty() {
            return true;
        }
        self.names.contains(name)
            || self.ids.contains(id)
            || self.name_regex.as_ref().is_some_and(|r| r.is_match(name))
    }
}

#[derive(Debug, Clone)]
pub struct SfnMapRunsConfig {
    pub enabled: bool,
    pub poll_interval: Duration,
    pub state_machines: Selection,
    pub lookback: Duration,
    pub retention: Duration,
    /// How long a state machine's definition (whether it has a Distributed Map) is trusted
    /// before it is read again.
    pub definition_refresh: Duration,
}

#[derive(Debug, Clone)]
pub struct TransferWorkflowsConfig {
    pub enabled: bool,
    pub poll_interval: Duration,
    /// `ids` holds workflow ids; `name_regex` is matched against the description.
    pub workflows: Selection,
}

#[derive(Debug, Clone)]
pub struct AppflowFlowsConfig {
    pub enabled: bool,
    pub poll_interval: Duration,
    pub flows: Selection,
    pub retention: Duration,
}

pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(60);
pub const DEFAULT_LOOKBACK: Duration = Duration::from_secs(6 * 3600);
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(3600);
pub const DEFAULT_DEFINITION_REFRESH: Duration = Duration::from_secs(3600);

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

impl Config {
    /// Loads and validates a file. Errors name the file and the field.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            file: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses YAML text; `file` is only used in error messages.
    pub fn parse(text: &str, file: &Path) -> Result<Self, ConfigError> {
        // An empty file (or one holding only comments) means all defaults.
        let raw: raw::Root = if text
            .lines()
            .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
        {
            raw::Root::default()
        } else {
            serde_norway::from_str(text).map_err(|e| ConfigError::Parse {
                file: file.to_owned(),
                message: e.to_string(),
            })?
        };
        raw.validate().map_err(|errors| ConfigError::Invalid {
            file: file.to_owned(),
            errors,
        })
    }

    /// The configuration used when no file is given: everything enabled, default credentials and region.
    pub fn defaults() -> Self {
        raw::Root::default().validate().expect("defaults are valid")
    }

    /// Sources that are enabled, by their metric label name.
    pub fn enabled_sources(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.sfn_map_runs.enabled {
            out.push("sfn_map_runs");
        }
        if self.transfer_workflows.enabled {
            out.push("transfer_workflows");
        }
        if self.appflow_flows.enabled {
            out.push("appflow_flows");
        }
        out
    }
}

/// Parses `30s`, `5m`, `1h`, `1d`, `250ms` and sums like `1h30m`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    if s.is_empty() {
        return Err("empty duration".into());
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!("invalid duration `{text}`: expected a number followed by a unit (ms, s, m, h, d), e.g. 30s or 5m"));
        }
        let n: u64 = rest[..digits]
            .parse()
            .map_err(|_| format!("invalid duration `{text}`: number too large"))?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let d = match unit {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n * 60),
            "h" => Duration::from_secs(n * 3600),
            "d" => Duration::from_secs(n * 86400),
            "" => {
                return Err(format!(
                    "invalid duration `{text}`: missing unit (ms, s, m, h, d)"
                ))
            }
            other => {
                return Err(format!(
                    "invalid duration `{text}`: unknown unit `{other}` (use ms, s, m, h, d)"
                ))
            }
        };
        total += d;
    }
    Ok(total)
}

/// The file as written. `deny_unknown_fields` everywhere: a typo is an error, not a silent default.
mod raw {
    use super::*;

    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Root {
        pub poll_interval: Option<DurationText>,
        #[serde(default)]
        pub aws_api: AwsApi,
        pub targets: Option<Vec<Target>>,
        #[serde(default)]
        pub sources: Sources,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct AwsApi {
        pub max_attempts: Option<u32>,
        pub connect_timeout: Option<DurationText>,
        pub operation_timeout: Option<DurationText>,
        pub quota_share: Option<f64>,
        #[serde(default)]
        pub quotas: BTreeMap<String, Quota>,
    }

    /// AWS's bucket for one operation, as raised for the account.
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Quota {
        pub bucket_size: f64,
        pub refill_per_second: f64,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Target {
        pub name: String,
        pub regions: Option<Vec<String>>,
        pub role_arn: Option<String>,
        pub external_id: Option<String>,
        pub session_name: Option<String>,
        pub endpoint_url: Option<String>,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Sources {
        #[serde(default)]
        pub sfn_map_runs: SfnMapRuns,
        #[serde(default)]
        pub transfer_workflows: TransferWorkflows,
        #[serde(default)]
        pub appflow_flows: AppflowFlows,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct SfnMapRuns {
        pub enabled: Option<bool>,
        pub poll_interval: Option<DurationText>,
        #[serde(default)]
        pub state_machines: StateMachines,
        pub lookback: Option<DurationText>,
        pub retention: Option<DurationText>,
        pub definition_refresh: Option<DurationText>,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct StateMachines {
        #[serde(default)]
        pub names: Vec<String>,
        pub name_regex: Option<String>,
        #[serde(default)]
        pub arns: Vec<String>,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct TransferWorkflows {
        pub enabled: Option<bool>,
        pub poll_interval: Option<DurationText>,
        #[serde(default)]
        pub workflows: Workflows,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Workflows {
        #[serde(default)]
        pub ids: Vec<String>,
        pub description_regex: Option<String>,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct AppflowFlows {
        pub enabled: Option<bool>,
        pub poll_interval: Option<DurationText>,
        #[serde(default)]
        pub flows: Flows,
        pub retention: Option<DurationText>,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Flows {
        #[serde(default)]
        pub names: Vec<String>,
        pub name_regex: Option<String>,
    }

    /// A duration kept as text until validation, so its error can name the field.
    #[derive(Debug, Deserialize)]
    #[serde(transparent)]
    pub struct DurationText(pub String);

    struct Check {
        errors: Vec<FieldError>,
    }

    impl Check {
        fn fail(&mut self, path: impl Into<String>, reason: impl Into<String>) {
            self.errors.push(FieldError {
                path: path.into(),
                reason: reason.into(),
            });
        }

        fn duration(
            &mut self,
            path: &str,
            value: &Option<DurationText>,
            default: Duration,
            min: Duration,
        ) -> Duration {
            let Some(DurationText(text)) = value else {
                return default;
            };
            match parse_duration(text) {
                Ok(d) if d < min => {
                    self.fail(path, format!("must be at least {}", format_duration(min)));
                    default
                }
                Ok(d) => d,
                Err(reason) => {
                    self.fail(path, reason);
                    default
                }
            }
        }

        fn regex(&mut self, path: &str, value: &Option<String>) -> Option<Regex> {
            let text = value.as_ref()?;
            match Regex::new(text) {
                Ok(r) => Some(r),
                Err(e) => {
                    // The regex crate's message spans several lines; keep it on one.
                    let reason = e
                        .to_string()
                        .lines()
                        .map(str::trim)
                        .filter(|l| !l.is_empty())
                        .collect::<Vec<_>>()
                        .join(" ");
                    self.fail(path, format!("invalid regular expression: {reason}"));
                    None
                }
            }
        }

        fn non_empty_items(&mut self, path: &str, items: &[String]) -> BTreeSet<String> {
            for (i, item) in items.iter().enumerate() {
                if item.trim().is_empty() {
                    self.fail(format!("{path}[{i}]"), "must not be empty");
                }
            }
            items.iter().cloned().collect()
        }
    }

    impl Root {
        pub fn validate(self) -> Result<Config, Vec<FieldError>> {
            let mut c = Check { errors: Vec::new() };
            let one_second = Duration::from_secs(1);
            let poll_interval = c.duration(
                "poll_interval",
                &self.poll_interval,
                DEFAULT_POLL_INTERVAL,
                one_second,
            );

            let defaults = AwsApiConfig::default();
            let max_attempts = self.aws_api.max_attempts.unwrap_or(defaults.max_attempts);
            if !(1..=10).contains(&max_attempts) {
                c.fail("aws_api.max_attempts", "must be between 1 and 10");
            }
            let quota_share = self.aws_api.quota_share.unwrap_or(defaults.quota_share);
            if !(quota_share > 0.0 && quota_share <= 1.0) {
                c.fail(
                    "aws_api.quota_share",
                    "must be a fraction greater than 0 and at most 1",
                );
            }
            let aws_api = AwsApiConfig {
                max_attempts,
                connect_timeout: c.duration(
                    "aws_api.connect_timeout",
                    &self.aws_api.connect_timeout,
                    defaults.connect_timeout,
                    Duration::from_millis(100),
                ),
                operation_timeout: c.duration(
                    "aws_api.operation_timeout",
                    &self.aws_api.operation_timeout,
                    defaults.operation_timeout,
                    one_second,
                ),
                quota_share,
                quotas: validate_quotas(&mut c, &self.aws_api.quotas),
            };

            let targets = match self.targets {
                None => vec![TargetConfig {
                    name: "default".into(),
                    region: None,
                    role: None,
                    endpoint_url: None,
                }],
                Some(list) => validate_targets(&mut c, list),
            };

            let s = self.sources;
            let sfn_path = "sources.sfn_map_runs";
            let sfn = s.sfn_map_runs;
            let sfn_map_runs = SfnMapRunsConfig {
                enabled: sfn.enabled.unwrap_or(true),
                poll_interval: c.duration(
                    &format!("{sfn_path}.poll_interval"),
                    &sfn.poll_interval,
                    poll_interval,
                    one_second,
                ),
                state_machines: Selection {
                    names: c.non_empty_items(
                        &format!("{sfn_path}.state_machines.names"),
                        &sfn.state_machines.names,
                    ),
                    name_regex: c.regex(
                        &format!("{sfn_path}.state_machines.name_regex"),
                        &sfn.state_machines.name_regex,
                    ),
                    ids: validate_arns(
                        &mut c,
                        &format!("{sfn_path}.state_machines.arns"),
                        &sfn.state_machines.arns,
                        ":stateMachine:",
                    ),
                },
                lookback: c.duration(
                    &format!("{sfn_path}.lookback"),
                    &sfn.lookback,
                    DEFAULT_LOOKBACK,
                    Duration::ZERO,
                ),
                retention: c.duration(
                    &format!("{sfn_path}.retention"),
                    &sfn.retention,
                    DEFAULT_RETENTION,
                    Duration::ZERO,
                ),
                definition_refresh: c.duration(
                    &format!("{sfn_path}.definition_refresh"),
                    &sfn.definition_refresh,
                    DEFAULT_DEFINITION_REFRESH,
                    Duration::from_secs(60),
                ),
            };

            let tw_path = "sources.transfer_workflows";
            let tw = s.transfer_workflows;
            let transfer_workflows = TransferWorkflowsConfig {
                enabled: tw.enabled.unwrap_or(true),
                poll_interval: c.duration(
                    &format!("{tw_path}.poll_interval"),
                    &tw.poll_interval,
                    poll_interval,
                    one_second,
                ),
                workflows: Selection {
                    names: BTreeSet::new(),
                    name_regex: c.regex(
                        &format!("{tw_path}.workflows.description_regex"),
                        &tw.workflows.description_regex,
                    ),
                    ids: c.non_empty_items(&format!("{tw_path}.workflows.ids"), &tw.workflows.ids),
                },
            };

            let af_path = "sources.appflow_flows";
            let af = s.appflow_flows;
            let appflow_flows = AppflowFlowsConfig {
                enabled: af.enabled.unwrap_or(true),
                poll_interval: c.duration(
                    &format!("{af_path}.poll_interval"),
                    &af.poll_interval,
                    poll_interval,
                    one_second,
                ),
                flows: Selection {
                    names: c.non_empty_items(&format!("{af_path}.flows.names"), &af.flows.names),
                    name_regex: c
                        .regex(&format!("{af_path}.flows.name_regex"), &af.flows.name_regex),
                    ids: BTreeSet::new(),
                },
                retention: c.duration(
                    &format!("{af_path}.retention"),
                    &af.retention,
                    DEFAULT_RETENTION,
                    Duration::ZERO,
                ),
            };

            if c.errors.is_empty() {
                Ok(Config {
                    poll_interval,
                    aws_api,
                    targets,
                    sfn_map_runs,
                    transfer_workflows,
                    appflow_flows,
                })
            } else {
                Err(c.errors)
            }
        }
    }

    fn validate_targets(c: &mut Check, list: Vec<Target>) -> Vec<TargetConfig> {
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
                    if !(arn.starts_with("arn:")
                        && arn.contains(":iam::")
                        && arn.contains(":role/"))
                    {
                        c.fail(
                            format!("{path}.role_arn"),
                            format!(
                                "`{arn}` is not an IAM role ARN (arn:aws:iam::ACCOUNT:role/NAME)"
                            ),
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
                            && r.chars().all(|ch| {
                                ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-'
                            });
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

    /// Keys are IAM actions of calls the exporter makes; sizes and rates must be positive.
    fn validate_quotas(
        c: &mut Check,
        quotas: &BTreeMap<String, Quota>,
    ) -> BTreeMap<String, (f64, f64)> {
        let known: Vec<String> = crate::aws::budget::Operation::ALL
            .iter()
            .filter_map(|op| op.iam_action())
            .collect();
        let mut out = BTreeMap::new();
        for (action, q) in quotas {
            let path = format!("aws_api.quotas.{action}");
            if !known.contains(action) {
                c.fail(
                    path,
                    format!(
                        "not an API the exporter calls; one of: {}",
                        known.join(", ")
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

    fn validate_arns(c: &mut Check, path: &str, arns: &[String], marker: &str) -> BTreeSet<String> {
        for (i, arn) in arns.iter().enumerate() {
            if !(arn.starts_with("arn:") && arn.contains(marker)) {
                c.fail(
                    format!("{path}[{i}]"),
                    format!("`{arn}` is not a state machine ARN"),
                );
            }
        }
        arns.iter().cloned().collect()
    }
}

/// `90s` -> `1m30s`, for messages.
pub fn format_duration(d: Duration) -> String {
    let mut secs = d.as_secs();
    if secs == 0 {
        return format!("{}ms", d.as_millis());
    }
    let mut out = String::new();
    for (unit, size) in [("d", 86400), ("h", 3600), ("m", 60), ("s", 1)] {
        if secs >= size {
            out.push_str(&format!("{}{unit}", secs / size));
            secs %= size;
        }
    }
    out
}

/// The file path used in messages when a config is built in code.
pub fn inline_path() -> PathBuf {
    PathBuf::from("<inline>")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert!(parse_duration("5").unwrap_err().contains("missing unit"));
        assert!(parse_duration("5x").unwrap_err().contains("unknown unit"));
        assert!(parse_duration("s").is_err());
    }

    #[test]
    fn no_file_means_one_default_target_and_all_sources() {
        let c = Config::defaults();
        assert_eq!(c.targets.len(), 1);
        assert_eq!(c.targets[0].region, None);
        assert_eq!(
            c.enabled_sources(),
            vec!["sfn_map_runs", "transfer_workflows", "appflow_flows"]
        );
        assert_eq!(c.sfn_map_runs.poll_interval, DEFAULT_POLL_INTERVAL);
    }

    #[test]
    fn targets_expand_per_region_and_source_interval_defaults_to_global() {
        let c = Config::parse(
            "poll_interval: 2m\ntargets:\n  - name: prod\n    regions: [us-east-1, eu-west-1]\nsources:\n  sfn_map_runs:\n    poll_interval: 30s\n",
            &inline_path(),
        )
        .unwrap();
        assert_eq!(c.targets.len(), 2);
        assert_eq!(c.targets[1].region.as_deref(), Some("eu-west-1"));
        assert_eq!(c.sfn_map_runs.poll_interval, Duration::from_secs(30));
        assert_eq!(c.transfer_workflows.poll_interval, Duration::from_secs(120));
    }

    #[test]
    fn selection_is_an_or_of_its_parts() {
        let c = Config::parse(
            "sources:\n  sfn_map_runs:\n    state_machines:\n      names: [ingest]\n      name_regex: '^etl-'\n",
            &inline_path(),
        )
        .unwrap();
        let s = &c.sfn_map_runs.state_machines;
        assert!(s.matches("ingest", "arn:x"));
        assert!(s.matches("etl-daily", "arn:y"));
        assert!(!s.matches("other", "arn:z"));
        assert!(Selection::default().matches("anything", "arn"));
    }
}
