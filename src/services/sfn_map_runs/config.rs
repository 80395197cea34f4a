//! The `sources.sfn_map_runs` section of the configuration file.

use std::time::Duration;

use serde::Deserialize;

use crate::config::check::{Check, DurationText, DEFAULT_RETENTION};
use crate::config::selection::Selection;
use crate::config::selection::TagFilter;
use crate::tags::{RawTagsConfig, TagsConfig};

/// How far back the first poll looks for executions unless the file says otherwise.
pub const DEFAULT_LOOKBACK: Duration = Duration::from_secs(6 * 3600);
/// How long a state machine's definition is trusted unless the file says otherwise.
pub const DEFAULT_DEFINITION_REFRESH: Duration = Duration::from_secs(3600);

/// The section, validated.
#[derive(Debug, Clone)]
pub struct Config {
    /// Whether this source is polled at all.
    pub enabled: bool,
    /// Time between two polls of one target.
    pub poll_interval: Duration,
    /// How often the state machines are listed again (new ones are found within this long).
    pub discovery_interval: Duration,
    /// The state machines watched; `ids` holds state machine ARNs.
    pub state_machines: Selection,
    /// How far back executions are listed: Map Runs of executions started earlier are not seen
    /// unless the execution is still running.
    pub lookback: Duration,
    /// How long series of a finished Map Run stay exported.
    pub retention: Duration,
    /// How long a state machine's definition (whether it has a Distributed Map) is trusted
    /// before it is read again.
    pub definition_refresh: Duration,
    /// Tags exported on `aws_sfn_state_machine_info`, and how long they are trusted
    /// (ListTagsForResource, once per state machine and then at `refresh`).
    pub tags: TagsConfig,
}

/// The section as written. A typo is an error, not a silent default.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Raw {
    /// Poll Map Runs (default true).
    pub enabled: Option<bool>,
    /// Time between polls (default: the top-level `poll_interval`; at least 1s).
    pub poll_interval: Option<DurationText>,
    /// How often ListStateMachines runs again (default: every 5 polls; every poll at or below
    /// `poll_interval`).
    pub discovery_interval: Option<DurationText>,
    /// Which state machines to watch; all when empty.
    #[serde(default)]
    pub state_machines: RawStateMachines,
    /// How far back executions are listed (default 6h).
    pub lookback: Option<DurationText>,
    /// How long series of a finished Map Run stay exported (default 1h).
    pub retention: Option<DurationText>,
    /// How long a definition is trusted before DescribeStateMachine reads it again (default 1h,
    /// at least 1m).
    pub definition_refresh: Option<DurationText>,
    /// Tags exported as labels of the info series, and how often they are read again
    /// (`export`, `refresh`; default: the top-level `tags` section).
    #[serde(default)]
    pub tags: RawTagsConfig,
}

/// `state_machines`: any match selects a state machine (OR).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStateMachines {
    /// Exact state machine names.
    #[serde(default)]
    pub names: Vec<String>,
    /// A regular expression matched against the state machine name.
    pub name_regex: Option<String>,
    /// State machine ARNs.
    #[serde(default)]
    pub arns: Vec<String>,
    /// Tag key -> values: a state machine whose tags have one of the values for every key listed.
    #[serde(default)]
    pub tags: std::collections::BTreeMap<String, Vec<String>>,
}

impl Raw {
    /// `path` is the section's place in the file, `poll_interval` the top-level default.
    pub fn validate(self, c: &mut Check, path: &str, poll_interval: Duration) -> Config {
        let section_poll_interval = c.poll_interval(path, &self.poll_interval, poll_interval);
        Config {
            enabled: self.enabled.unwrap_or(true),
            poll_interval: section_poll_interval,
            discovery_interval: c.discovery_interval(
                path,
                &self.discovery_interval,
                section_poll_interval,
            ),
            state_machines: Selection {
                names: c.non_empty_items(
                    &format!("{path}.state_machines.names"),
                    &self.state_machines.names,
                ),
                name_regex: c.regex(
                    &format!("{path}.state_machines.name_regex"),
                    &self.state_machines.name_regex,
                ),
                ids: state_machine_arns(
                    c,
                    &format!("{path}.state_machines.arns"),
                    &self.state_machines.arns,
                ),
                tags: TagFilter::validate(
                    c,
                    &format!("{path}.state_machines.tags"),
                    &self.state_machines.tags,
                ),
            },
            lookback: c.duration(
                &format!("{path}.lookback"),
                &self.lookback,
                DEFAULT_LOOKBACK,
                Duration::ZERO,
            ),
            retention: c.duration(
                &format!("{path}.retention"),
                &self.retention,
                DEFAULT_RETENTION,
                Duration::ZERO,
            ),
            definition_refresh: c.duration(
                &format!("{path}.definition_refresh"),
                &self.definition_refresh,
                DEFAULT_DEFINITION_REFRESH,
                Duration::from_secs(60),
            ),
            tags: self.tags.validate(c, &format!("{path}.tags")),
        }
    }
}

fn state_machine_arns(
    c: &mut Check,
    path: &str,
    arns: &[String],
) -> std::collections::BTreeSet<String> {
    for (i, arn) in arns.iter().enumerate() {
        if !(arn.starts_with("arn:") && arn.contains(":stateMachine:")) {
            c.fail(
                format!("{path}[{i}]"),
                format!("`{arn}` is not a state machine ARN"),
            );
        }
    }
    arns.iter().cloned().collect()
}
