//! Resource tags, for every service: which tag keys become `tag_<key>` labels of a source's info
//! series (`tags.export`, globally or per source), selection by tag (`tags:` in a selection
//! block), and a per-resource cache that says when a resource's tags are read again
//! (`tags.refresh`, or at once when the resource was re-created). Names no service.
//!
//! Reading tags can cost a call per resource (Step Functions' ListTagsForResource refills at 1/s),
//! so [`read`] takes a token for a resource's first read, and only spare tokens (ones the
//! remaining first reads do not need) for the refreshes.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::aws::operation::Operation;
use crate::aws::Connection;
use crate::config::check::{Check, DurationText};
use crate::config::selection::{Selection, Tags};
use crate::error::AwsError;
use crate::services::source::BoxFuture;

/// How long a resource's tags are trusted unless the file says otherwise.
pub const DEFAULT_REFRESH: Duration = Duration::from_secs(3600);

/// The label a tag key becomes, as YACE names them: `tag_` and the key with every character that
/// is not an ASCII letter, digit or underscore replaced by `_` (`cost-center` -> `tag_cost_center`).
pub fn label_name(key: &str) -> String {
    let mut out = String::with_capacity(key.len() + 4);
    out.push_str("tag_");
    out.extend(key.chars().map(|c| {
        if c.is_ascii_alphanumeric() || c == '_' {
            c
        } else {
            '_'
        }
    }));
    out
}

/// An exported tag key and the label it becomes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagLabel {
    pub key: String,
    pub label: String,
}

/// A `tags` section (top level or a source's), as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTagsConfig {
    /// Tag keys exported as `tag_<key>` labels of the source's info series (default: none; a
    /// source's list replaces the top-level one).
    pub export: Option<Vec<String>>,
    /// How long a resource's tags are trusted before they are read again (default 1h, at least
    /// 1s; a re-created resource is read again at once).
    pub refresh: Option<DurationText>,
}

/// A `tags` section, validated. `None` fields are taken from the top-level section
/// ([`TagsConfig::inherit`]), then from the defaults.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TagsConfig {
    pub export: Option<Vec<TagLabel>>,
    pub refresh: Option<Duration>,
}

impl RawTagsConfig {
    /// `path` is the section's place in the file. Two keys that become the same label fail.
    pub fn validate(&self, c: &mut Check, path: &str) -> TagsConfig {
        let export = self.export.as_ref().map(|keys| {
            let mut out: Vec<TagLabel> = Vec::new();
            for (i, key) in keys.iter().enumerate() {
                if key.is_empty() {
                    c.fail(format!("{path}.export[{i}]"), "must not be empty");
                    continue;
                }
                let label = label_name(key);
                if let Some(other) = out.iter().find(|t| t.label == label) {
                    c.fail(
                        format!("{path}.export[{i}]"),
                        format!(
                            "tag keys `{}` and `{key}` both become the label `{label}`",
                            other.key
                        ),
                    );
                    continue;
                }
                out.push(TagLabel {
                    key: key.clone(),
                    label,
                });
            }
            out
        });
        let refresh = self.refresh.as_ref().map(|text| {
            let value = Some(DurationText(text.0.clone()));
            c.duration(
                &format!("{path}.refresh"),
                &value,
                DEFAULT_REFRESH,
                Duration::from_secs(1),
            )
        });
        TagsConfig { export, refresh }
    }
}

impl TagsConfig {
    /// Fills what this section leaves out from `top` (the top-level section).
    pub fn inherit(&mut self, top: &TagsConfig) {
        if self.export.is_none() {
            self.export.clone_from(&top.export);
        }
        if self.refresh.is_none() {
            self.refresh = top.refresh;
        }
    }

    /// The exported keys, in the order written.
    pub fn export(&self) -> &[TagLabel] {
        self.export.as_deref().unwrap_or(&[])
    }

    pub fn refresh(&self) -> Duration {
        self.refresh.unwrap_or(DEFAULT_REFRESH)
    }

    /// Whether a source wants the tags of a listed resource (`name` and `id` as its selection
    /// reads them, `created` when the listing tells): when only its tags can select it, or
    /// when it is selected and tags are exported.
    pub fn wanted(
        &self,
        selection: &Selection,
        name: &str,
        id: &str,
        created: Option<f64>,
    ) -> Option<Wanted> {
        let selects = selection.needs_tags(name, id);
        let exported = !self.export().is_empty() && selection.matches(name, id);
        (selects || exported).then(|| Wanted {
            id: id.to_owned(),
            created,
            selects,
        })
    }

    /// The `tag_<key>` label pairs of a resource with `tags` (keys it lacks are left out).
    pub fn labels<'a>(&'a self, tags: Option<&'a Tags>) -> Vec<(&'a str, &'a str)> {
        let Some(tags) = tags else {
            return Vec::new();
        };
        self.export()
            .iter()
            .filter_map(|t| tags.get(&t.key).map(|v| (t.label.as_str(), v.as_str())))
            .collect()
    }
}

#[derive(Debug, Clone)]
struct Entry {
    tags: Tags,
    /// Unix seconds of the read.
    read_at: f64,
    /// The resource's creation time when read, if the listing gives one: another means re-created.
    created: Option<f64>,
}

/// Whether a resource's tags are to be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// Never read, or re-created since: read before it is relied on.
    First,
    /// Older than `tags.refresh`: read with a spare token.
    Refresh,
    Fresh,
}

/// The tags of one source's resources as last read, by resource id (ARN or id).
#[derive(Debug, Clone, Default)]
pub struct TagCache {
    entries: BTreeMap<String, Entry>,
}

impl TagCache {
    pub fn get(&self, id: &str) -> Option<&Tags> {
        self.entries.get(id).map(|e| &e.tags)
    }

    /// Whether `id` (created at `created`, when the listing says) needs a read at `now`.
    pub fn due(&self, id: &str, created: Option<f64>, now: f64, refresh: Duration) -> Due {
        match self.entries.get(id) {
            None => Due::First,
            Some(e) if created.is_some() && e.created != created => Due::First,
            Some(e) if now - e.read_at >= refresh.as_secs_f64() => Due::Refresh,
            Some(_) => Due::Fresh,
        }
    }

    pub fn set(&mut self, id: &str, tags: Tags, created: Option<f64>, now: f64) {
        self.entries.insert(
            id.to_owned(),
            Entry {
                tags,
                read_at: now,
                created,
            },
        );
    }

    /// Forgets resources no longer listed.
    pub fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        self.entries.retain(|id, _| keep(id));
    }

    /// Every resource with its tags, by id.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Tags)> {
        self.entries.iter().map(|(id, e)| (id.as_str(), &e.tags))
    }

    /// Forgets the resources not in `wanted`.
    pub fn keep_only(&mut self, wanted: &[Wanted]) {
        let ids: BTreeSet<&str> = wanted.iter().map(|w| w.id.as_str()).collect();
        self.retain(|id| ids.contains(id));
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// A service's client that reads one resource's tags with one call of an operation.
pub trait ReadTags: Sync {
    /// The operation one read calls, whose budget the reads draw from.
    const OPERATION: Operation;
    /// The connection whose budget the reads draw from.
    fn connection(&self) -> &Connection;
    fn read_tags<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Tags, AwsError>>;
}

/// A resource whose tags a source wants: its id and, when the listing gives it, its creation time.
#[derive(Debug, Clone)]
pub struct Wanted {
    pub id: String,
    pub created: Option<f64>,
    /// Whether what the source polls depends on the tags (selection by tag): its first read
    /// waits for a token until `deadline`. Otherwise a first read takes only a token there is now.
    pub selects: bool,
}

/// Reads the tags of the `wanted` resources that are due, with `op`'s budget: first reads first
/// (waiting for a token until `deadline` when the selection depends on them, else only with a
/// token there is now), then refreshes with spare tokens only, leaving what the first reads not
/// done need. A resource gone (not found) is skipped; any other failure goes into `errors`, and
/// an access denial also ends the reads of this poll.
pub async fn read<R: ReadTags>(
    cache: &mut TagCache,
    wanted: &[Wanted],
    refresh: Duration,
    deadline: Instant,
    reader: &R,
    errors: &mut Vec<AwsError>,
) {
    let (conn, op) = (reader.connection(), R::OPERATION);
    let now = crate::clock::unix_now();
    let mut first: Vec<&Wanted> = Vec::new();
    let mut stale: Vec<&Wanted> = Vec::new();
    for w in wanted {
        match cache.due(&w.id, w.created, now, refresh) {
            Due::First => first.push(w),
            Due::Refresh => stale.push(w),
            Due::Fresh => {}
        }
    }
    // Those the selection depends on go first; refreshes after every first read was tried, so
    // the tokens they take are ones no first read of this poll needs.
    first.sort_by_key(|w| !w.selects);
    let firsts = first.len();
    for (i, w) in first.into_iter().chain(stale).enumerate() {
        let wait = conn.budget.time_until_spare(op, 0.0);
        let may_wait = i < firsts && w.selects && Instant::now() + wait < deadline;
        if !wait.is_zero() && !may_wait {
            continue;
        }
        tokio::time::sleep(wait).await;
        match reader.read_tags(&w.id).await {
            Ok(tags) => cache.set(&w.id, tags, w.created, crate::clock::unix_now()),
            Err(AwsError::NotFound { .. }) => {}
            Err(e) => {
                let denied = e.is_access_denied();
                tracing::warn!(resource = %w.id, operation = op.name, error = %e, "reading the resource's tags failed");
                errors.push(e);
                if denied {
                    return;
                }
            }
        }
    }
}

/// The tags of the `listed` resources (name, id) only their tags can select, as many as
/// `reader` reads within `time`, for `doctor` to select by tag as a poll does. A failed read
/// leaves the resource out (doctor's probe reports the failure).
pub async fn read_within<'a, R: ReadTags>(
    reader: &R,
    selection: &Selection,
    listed: impl Iterator<Item = (&'a str, &'a str)>,
    time: Duration,
) -> BTreeMap<String, Tags> {
    let ids: Vec<&str> = listed
        .filter(|(name, id)| selection.needs_tags(name, id))
        .map(|(_, id)| id)
        .collect();
    let deadline = Instant::now() + time;
    let mut out = BTreeMap::new();
    for id in ids {
        if Instant::now() >= deadline {
            break;
        }
        match reader.read_tags(id).await {
            Ok(tags) => {
                out.insert(id.to_owned(), tags);
            }
            Err(e) if e.is_access_denied() => break,
            Err(_) => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::selection::TagFilter;

    fn tags(pairs: &[(&str, &str)]) -> Tags {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn keys_become_labels_as_yace_names_them() {
        assert_eq!(label_name("team"), "tag_team");
        assert_eq!(label_name("cost-center"), "tag_cost_center");
        assert_eq!(
            label_name("aws:cloudformation:stack-name"),
            "tag_aws_cloudformation_stack_name"
        );
        assert_eq!(label_name("Owner.Email"), "tag_Owner_Email");
        assert_eq!(label_name("équipe"), "tag__quipe");
    }

    #[test]
    fn colliding_keys_are_an_error_naming_both() {
        let raw = RawTagsConfig {
            export: Some(vec!["cost-center".into(), "cost.center".into()]),
            refresh: None,
        };
        let mut c = Check::default();
        raw.validate(&mut c, "tags");
        let errors = c.finish(()).unwrap_err();
        assert_eq!(errors[0].path, "tags.export[1]");
        assert!(errors[0].reason.contains("`cost-center` and `cost.center`"));
        assert!(errors[0].reason.contains("tag_cost_center"));
    }

    #[test]
    fn a_source_section_overrides_the_top_level_one_field_by_field() {
        let mut c = Check::default();
        let top = RawTagsConfig {
            export: Some(vec!["team".into()]),
            refresh: Some(DurationText("10m".into())),
        }
        .validate(&mut c, "tags");
        let mut own = RawTagsConfig {
            export: Some(vec!["env".into()]),
            refresh: None,
        }
        .validate(&mut c, "sources.x.tags");
        own.inherit(&top);
        assert_eq!(own.export()[0].label, "tag_env");
        assert_eq!(own.refresh(), Duration::from_secs(600));
        let mut none = TagsConfig::default();
        none.inherit(&TagsConfig::default());
        assert!(none.export().is_empty());
        assert_eq!(none.refresh(), DEFAULT_REFRESH);
    }

    #[test]
    fn a_filter_is_an_and_of_keys_and_an_or_of_values() {
        let raw: BTreeMap<String, Vec<String>> = [
            (
                "team".to_string(),
                vec!["data".to_string(), "ml".to_string()],
            ),
            ("env".to_string(), vec!["prod".to_string()]),
        ]
        .into();
        let mut c = Check::default();
        let f = TagFilter::validate(&mut c, "sel.tags", &raw);
        assert!(f.matches(&tags(&[("team", "ml"), ("env", "prod"), ("x", "y")])));
        assert!(!f.matches(&tags(&[("team", "ml"), ("env", "dev")])));
        assert!(!f.matches(&tags(&[("team", "web"), ("env", "prod")])));
        assert!(!f.matches(&tags(&[("env", "prod")])));
        assert!(TagFilter::default().matches(&Tags::new()));
    }

    #[test]
    fn a_filter_key_without_values_is_an_error() {
        let raw: BTreeMap<String, Vec<String>> = [("team".to_string(), vec![])].into();
        let mut c = Check::default();
        TagFilter::validate(&mut c, "sel.tags", &raw);
        assert_eq!(c.finish(()).unwrap_err()[0].path, "sel.tags.team");
    }

    #[test]
    fn tags_are_read_first_then_at_refresh_and_again_when_re_created() {
        let mut cache = TagCache::default();
        let hour = Duration::from_secs(3600);
        assert_eq!(cache.due("a", Some(10.0), 100.0, hour), Due::First);
        cache.set("a", tags(&[("team", "x")]), Some(10.0), 100.0);
        assert_eq!(cache.due("a", Some(10.0), 3699.0, hour), Due::Fresh);
        assert_eq!(cache.due("a", Some(10.0), 3700.0, hour), Due::Refresh);
        assert_eq!(cache.due("a", Some(20.0), 200.0, hour), Due::First);
        assert_eq!(cache.due("a", None, 200.0, hour), Due::Fresh);
        cache.retain(|id| id != "a");
        assert!(cache.is_empty());
    }

    #[test]
    fn tags_are_wanted_when_they_select_or_are_exported_for_a_selected_resource() {
        let mut c = Check::default();
        let raw: BTreeMap<String, Vec<String>> =
            [("team".to_string(), vec!["data".to_string()])].into();
        let selection = Selection {
            names: ["named".to_string()].into(),
            tags: TagFilter::validate(&mut c, "sel.tags", &raw),
            ..Selection::default()
        };
        // Selected by name: its tags decide nothing, and nothing is exported.
        let none = TagsConfig::default();
        assert!(none.wanted(&selection, "named", "arn:1", None).is_none());
        let w = none
            .wanted(&selection, "other", "arn:2", Some(5.0))
            .unwrap();
        assert!(w.selects);
        assert_eq!((w.id.as_str(), w.created), ("arn:2", Some(5.0)));
        let export = RawTagsConfig {
            export: Some(vec!["team".into()]),
            refresh: None,
        }
        .validate(&mut c, "tags");
        assert!(
            !export
                .wanted(&selection, "named", "arn:1", None)
                .unwrap()
                .selects
        );
        // Only tags select, and they match: selected; without tags known, not.
        let team = tags(&[("team", "data")]);
        assert!(selection.matches_tagged("other", "arn:2", Some(&team)));
        assert!(!selection.matches_tagged("other", "arn:2", None));
        assert!(!selection.matches("other", "arn:2"));
        assert!(selection.matches("named", "arn:1"));
        // No selection at all: everything, and no tags needed for it.
        assert!(Selection::default().matches_tagged("x", "y", None));
        assert!(!Selection::default().needs_tags("x", "y"));
        assert!(export
            .wanted(&Selection::default(), "x", "y", None)
            .is_some());
    }

    #[test]
    fn exported_labels_leave_out_missing_keys() {
        let mut c = Check::default();
        let config = RawTagsConfig {
            export: Some(vec!["team".into(), "cost-center".into()]),
            refresh: None,
        }
        .validate(&mut c, "tags");
        let t = tags(&[("cost-center", "42"), ("other", "no")]);
        assert_eq!(config.labels(Some(&t)), vec![("tag_cost_center", "42")]);
        assert!(config.labels(None).is_empty());
    }
}
