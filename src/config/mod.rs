//! Configuration: the YAML file as written (`raw`), validated into the model the daemon runs on.
//! Each service validates its own section (see `services`); this module holds the file as a
//! whole, the validation kit and the targets.
//!
//! Every validation error names the path of the field inside the file, so a user can find it.

pub mod check;
pub mod organization;
pub mod selection;
pub mod target;
pub mod targets;

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use crate::config::check::{Check, DEFAULT_POLL_INTERVAL};
use crate::config::target::TargetConfig;
use crate::config::targets::{validate_targets, AwsApiConfig, RawAwsApi, RawTarget};
use crate::error::{ConfigError, FieldError};
use crate::services::{RawSources, SourcesConfig};
use crate::shard::Shard;

pub use check::{format_duration, inline_path, parse_duration, DurationText};
pub use selection::Selection;

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub poll_interval: Duration,
    pub aws_api: AwsApiConfig,
    /// One entry per (target, region); a target without regions uses the SDK's default region.
    pub targets: Vec<TargetConfig>,
    /// Targets naming an organisation: their member accounts become targets as discovered.
    pub organizations: Vec<organization::OrganizationTarget>,
    /// One section per service, as in the file.
    pub sources: SourcesConfig,
    /// This replica's shard, from `--shard`/`--total-shards` (not a file key): one by default.
    pub shard: Shard,
    /// OTLP push; `None` when no endpoint is configured (file or `OTEL_*` environment).
    pub otlp: Option<crate::otlp::OtlpConfig>,
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
        raw.validate(&crate::otlp::config::process_env)
            .map_err(|errors| ConfigError::Invalid {
                file: file.to_owned(),
                errors,
            })
    }

    /// No file: the defaults, plus OTLP push if the `OTEL_*` environment configures it.
    pub fn from_environment() -> Result<Self, ConfigError> {
        raw::Root::default()
            .validate(&crate::otlp::config::process_env)
            .map_err(|errors| ConfigError::Invalid {
                file: std::path::PathBuf::from("<environment>"),
                errors,
            })
    }

    /// The configuration used when no file is given: everything enabled, default credentials and
    /// region, no OTLP push (the environment is not read).
    pub fn defaults() -> Self {
        raw::Root::default()
            .validate(&|_| None)
            .expect("defaults are valid")
    }

    /// Sources that are enabled, by their metric label name.
    pub fn enabled_sources(&self) -> Vec<&'static str> {
        self.sources.enabled()
    }
}

/// The file as written. `deny_unknown_fields` everywhere: a typo is an error, not a silent default.
mod raw {
    use super::*;

    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Root {
        pub poll_interval: Option<DurationText>,
        #[serde(default)]
        pub aws_api: RawAwsApi,
        pub targets: Option<Vec<RawTarget>>,
        #[serde(default)]
        pub sources: RawSources,
        #[serde(default)]
        pub otlp: crate::otlp::config::raw::Otlp,
        #[serde(default)]
        pub tags: crate::tags::RawTagsConfig,
    }

    impl Root {
        pub fn validate(self, env: crate::otlp::config::Env) -> Result<Config, Vec<FieldError>> {
            let mut c = Check::default();
            let otlp = crate::otlp::config::validate(&mut c, &self.otlp, env);
            let poll_interval = c.duration(
                "poll_interval",
                &self.poll_interval,
                DEFAULT_POLL_INTERVAL,
                Duration::from_secs(1),
            );
            let iam_actions: Vec<&str> = crate::services::operations()
                .iter()
                .filter_map(|op| op.iam_action)
                .collect();
            let aws_api = self.aws_api.validate(&mut c, &iam_actions);
            let (targets, organizations) = validate_targets(&mut c, self.targets);
            let tags = self.tags.validate(&mut c, "tags");
            let sources = self.sources.validate(&mut c, poll_interval, &tags);
            c.finish(Config {
                poll_interval,
                aws_api,
                targets,
                organizations,
                sources,
                shard: Shard::SINGLE,
                otlp,
            })
        }
    }
}
