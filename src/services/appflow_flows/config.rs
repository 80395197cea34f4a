//! The `sources.appflow_flows` section of the configuration file.

use std::collections::BTreeSet;
use std::time::Duration;

use serde::Deserialize;

use crate::config::check::{Check, DurationText, DEFAULT_RETENTION};
use crate::config::selection::Selection;
use crate::config::selection::TagFilter;
use crate::tags::{RawTagsConfig, TagsConfig};

/// ListFlows' `lastRunExecutionDetails` is optional and may lag; an hour bounds what that can
/// hide at one DescribeFlowExecutionRecords page per flow and hour.
pub const DEFAULT_RECORDS_REFRESH: Duration = Duration::from_secs(3600);

/// The section, validated.
#[derive(Debug, Clone)]
pub struct Config {
    /// Whether this source is polled at all.
    pub enabled: bool,
    /// Time between two polls of one target.
    pub poll_interval: Duration,
    /// The flows watched, by name.
    pub flows: Selection,
    /// How long series of a finished flow run stay exported.
    pub retention: Duration,
    /// Longest time between two reads of a flow's execution records, whatever ListFlows shows.
    pub records_refresh: Duration,
    /// Tags exported on `aws_appflow_flow_info` (ListFlows returns them: no extra call, so
    /// `refresh` does not apply).
    pub tags: TagsConfig,
}

/// The section as written. A typo is an error, not a silent default.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Raw {
    /// Poll AppFlow flows (default true).
    pub enabled: Option<bool>,
    /// Time between polls (default: the top-level `poll_interval`; at least 1s).
    pub poll_interval: Option<DurationText>,
    /// Which flows to watch; all when empty.
    #[serde(default)]
    pub flows: RawFlows,
    /// How long series of a finished flow run stay exported (default 1h).
    pub retention: Option<DurationText>,
    /// Re-read a flow's execution records at least this often even when ListFlows'
    /// `lastRunExecutionDetails` shows no new run (default 1h; 0s reads every poll).
    pub records_refresh: Option<DurationText>,
    /// Tags exported as labels of the info series (`export`; default: the top-level `tags`
    /// section). ListFlows returns them every poll, so `refresh` is accepted but unused.
    #[serde(default)]
    pub tags: RawTagsConfig,
}

/// `flows`: any match selects a flow (OR).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFlows {
    /// Exact flow names.
    #[serde(default)]
    pub names: Vec<String>,
    /// A regular expression matched against the flow name.
    pub name_regex: Option<String>,
    /// Tag key -> values: a flow whose tags have one of the values for every key listed.
    #[serde(default)]
    pub tags: std::collections::BTreeMap<String, Vec<String>>,
}

impl Raw {
    /// `path` is the section's place in the file, `poll_interval` the top-level default.
    pub fn validate(self, c: &mut Check, path: &str, poll_interval: Duration) -> Config {
        Config {
            enabled: self.enabled.unwrap_or(true),
            poll_interval: c.poll_interval(path, &self.poll_interval, poll_interval),
            flows: Selection {
                names: c.non_empty_items(&format!("{path}.flows.names"), &self.flows.names),
                name_regex: c.regex(&format!("{path}.flows.name_regex"), &self.flows.name_regex),
                ids: BTreeSet::new(),
                tags: TagFilter::validate(c, &format!("{path}.flows.tags"), &self.flows.tags),
            },
            tags: self.tags.validate(c, &format!("{path}.tags")),
            retention: c.duration(
                &format!("{path}.retention"),
                &self.retention,
                DEFAULT_RETENTION,
                Duration::ZERO,
            ),
            records_refresh: c.duration(
                &format!("{path}.records_refresh"),
                &self.records_refresh,
                DEFAULT_RECORDS_REFRESH,
                Duration::ZERO,
            ),
        }
    }
}
