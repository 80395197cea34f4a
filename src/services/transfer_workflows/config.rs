//! The `sources.transfer_workflows` section of the configuration file.

use std::collections::BTreeSet;
use std::time::Duration;

use serde::Deserialize;

use crate::config::check::{Check, DurationText};
use crate::config::selection::Selection;
use crate::config::selection::TagFilter;
use crate::tags::{RawTagsConfig, TagsConfig};

/// The section, validated.
#[derive(Debug, Clone)]
pub struct Config {
    /// Whether this source is polled at all.
    pub enabled: bool,
    /// Time between two polls of one target.
    pub poll_interval: Duration,
    /// How often the workflows are listed again (new ones are found within this long).
    pub discovery_interval: Duration,
    /// The workflows watched: `ids` holds workflow ids; `name_regex` is matched against the description.
    pub workflows: Selection,
    /// Tags exported on `aws_transfer_workflow_info`, and how long they are trusted
    /// (DescribeWorkflow, once per workflow and then at `refresh`).
    pub tags: TagsConfig,
}

/// The section as written. A typo is an error, not a silent default.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Raw {
    /// Poll Transfer Family workflows (default true).
    pub enabled: Option<bool>,
    /// Time between polls (default: the top-level `poll_interval`; at least 1s).
    pub poll_interval: Option<DurationText>,
    /// How often ListWorkflows runs again (default: every 5 polls; every poll at or below
    /// `poll_interval`).
    pub discovery_interval: Option<DurationText>,
    /// Which workflows to watch; all when empty.
    #[serde(default)]
    pub workflows: RawWorkflows,
    /// Tags exported as labels of the info series, and how often they are read again
    /// (`export`, `refresh`; default: the top-level `tags` section).
    #[serde(default)]
    pub tags: RawTagsConfig,
}

/// `workflows`: any match selects a workflow (OR).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWorkflows {
    /// Workflow ids (`w-...`).
    #[serde(default)]
    pub ids: Vec<String>,
    /// A regular expression matched against the workflow description.
    pub description_regex: Option<String>,
    /// Tag key -> values: a workflow whose tags have one of the values for every key listed.
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
            workflows: Selection {
                names: BTreeSet::new(),
                name_regex: c.regex(
                    &format!("{path}.workflows.description_regex"),
                    &self.workflows.description_regex,
                ),
                ids: c.non_empty_items(&format!("{path}.workflows.ids"), &self.workflows.ids),
                tags: TagFilter::validate(
                    c,
                    &format!("{path}.workflows.tags"),
                    &self.workflows.tags,
                ),
            },
            tags: self.tags.validate(c, &format!("{path}.tags")),
        }
    }
}
