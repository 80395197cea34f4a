//! Which resources a source watches: names, a name regex, ids or ARNs, and tags.

use std::collections::{BTreeMap, BTreeSet};

use regex::Regex;

use crate::config::check::Check;

/// A resource's tags, key to value.
pub type Tags = BTreeMap<String, String>;

/// Which resources a source watches: all when every list is empty, otherwise any match (OR).
/// `tags` is one more alternative: a resource whose tags match it is selected too.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub names: BTreeSet<String>,
    pub name_regex: Option<Regex>,
    pub ids: BTreeSet<String>,
    pub tags: TagFilter,
}

impl Selection {
    /// `name` is what the regex and the names list are checked against, `id` the ARN or id. A
    /// resource that only its tags could select does not match (see [`Selection::matches_tagged`]).
    pub fn matches(&self, name: &str, id: &str) -> bool {
        self.matches_tagged(name, id, None)
    }

    /// As [`Selection::matches`], with the resource's tags when known.
    pub fn matches_tagged(&self, name: &str, id: &str, tags: Option<&Tags>) -> bool {
        if self.names.is_empty()
            && self.name_regex.is_none()
            && self.ids.is_empty()
            && self.tags.is_empty()
        {
            return true;
        }
        self.by_name_or_id(name, id)
            || (!self.tags.is_empty() && tags.is_some_and(|t| self.tags.matches(t)))
    }

    /// Whether only the resource's tags can tell if it is selected.
    pub fn needs_tags(&self, name: &str, id: &str) -> bool {
        !self.tags.is_empty() && !self.by_name_or_id(name, id)
    }

    fn by_name_or_id(&self, name: &str, id: &str) -> bool {
        self.names.contains(name)
            || self.ids.contains(id)
            || self.name_regex.as_ref().is_some_and(|r| r.is_match(name))
    }
}

/// `tags:` of a selection block: a resource matches when, for every key listed, its tag has one
/// of the listed values (AND across keys, OR across values).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TagFilter(BTreeMap<String, BTreeSet<String>>);

impl TagFilter {
    /// `raw` as written at `path`: each key with at least one value.
    pub fn validate(c: &mut Check, path: &str, raw: &BTreeMap<String, Vec<String>>) -> Self {
        for (key, values) in raw {
            if key.is_empty() {
                c.fail(path, "a tag key must not be empty");
            } else if values.is_empty() {
                c.fail(
                    format!("{path}.{key}"),
                    "list at least one value (a resource matches when its tag has one of them)",
                );
            }
        }
        Self(
            raw.iter()
                .map(|(k, v)| (k.clone(), v.iter().cloned().collect()))
                .collect(),
        )
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn matches(&self, tags: &Tags) -> bool {
        self.0
            .iter()
            .all(|(key, values)| tags.get(key).is_some_and(|v| values.contains(v)))
    }
}
