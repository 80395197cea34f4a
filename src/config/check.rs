//! The validation kit every section of the configuration file uses: durations, regular
//! expressions, selections, and an error collector that names each field by its path.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use regex::Regex;
use serde::Deserialize;

use crate::error::FieldError;

/// How often sources poll unless the file says otherwise.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(60);
/// Sources that list their resources apart from polling them (state machines, workflows) list
/// them every this many polls unless the file says otherwise.
pub const DISCOVERY_EVERY_POLLS: u32 = 5;
/// How long series of finished runs stay exported unless the file says otherwise.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(3600);
/// The longest duration any field accepts (90 days, as long as AWS keeps execution history):
/// a bound that keeps every deadline computed from a duration far from overflowing.
pub const MAX_DURATION: Duration = Duration::from_secs(90 * 86400);

/// A duration kept as text until validation, so its error can name the field.
#[derive(Debug, Deserialize)]
#[serde(transparent)]
pub struct DurationText(pub String);

/// Collects every field error of a file, so one run reports them all.
#[derive(Debug, Default)]
pub struct Check {
    errors: Vec<FieldError>,
}

impl Check {
    /// Ok with `value` if no field failed, otherwise every failure in the order found.
    pub fn finish<T>(self, value: T) -> Result<T, Vec<FieldError>> {
        if self.errors.is_empty() {
            Ok(value)
        } else {
            Err(self.errors)
        }
    }

    pub fn fail(&mut self, path: impl Into<String>, reason: impl Into<String>) {
        self.errors.push(FieldError {
            path: path.into(),
            reason: reason.into(),
        });
    }

    /// A section's `poll_interval` (at `{path}.poll_interval`): the top-level one when absent,
    /// at least 1s.
    pub fn poll_interval(
        &mut self,
        path: &str,
        value: &Option<DurationText>,
        top_level: Duration,
    ) -> Duration {
        self.duration(
            &format!("{path}.poll_interval"),
            value,
            top_level,
            Duration::from_secs(1),
        )
    }

    /// A section's `discovery_interval` (at `{path}.discovery_interval`): how often it lists its
    /// resources again; [`DISCOVERY_EVERY_POLLS`] polls when absent, every poll at or below
    /// `poll_interval`.
    pub fn discovery_interval(
        &mut self,
        path: &str,
        value: &Option<DurationText>,
        poll_interval: Duration,
    ) -> Duration {
        self.duration(
            &format!("{path}.discovery_interval"),
            value,
            poll_interval.saturating_mul(DISCOVERY_EVERY_POLLS),
            Duration::ZERO,
        )
    }

    /// The duration at `path`, `default` when absent; at least `min`, at most [`MAX_DURATION`].
    pub fn duration(
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
            Ok(d) => self.bounded(path, d, min).unwrap_or(default),
            Err(reason) => {
                self.fail(path, reason);
                default
            }
        }
    }

    /// `d` if it lies within `min` ..= [`MAX_DURATION`], else a failure at `path`: the bounds
    /// every duration field obeys, whether it came from the file or the environment.
    pub fn bounded(&mut self, path: &str, d: Duration, min: Duration) -> Option<Duration> {
        if d < min {
            self.fail(path, format!("must be at least {}", format_duration(min)));
            None
        } else if d > MAX_DURATION {
            let max = format_duration(MAX_DURATION);
            self.fail(path, format!("must be at most {max}"));
            None
        } else {
            Some(d)
        }
    }

    /// How many fields failed so far: a section tells its own failures by the count before it.
    pub fn failures(&self) -> usize {
        self.errors.len()
    }

    pub fn regex(&mut self, path: &str, value: &Option<String>) -> Option<Regex> {
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

    pub fn non_empty_items(&mut self, path: &str, items: &[String]) -> BTreeSet<String> {
        for (i, item) in items.iter().enumerate() {
            if item.trim().is_empty() {
                self.fail(format!("{path}[{i}]"), "must not be empty");
            }
        }
        items.iter().cloned().collect()
    }
}

/// Parses `30s`, `5m`, `1h`, `1d`, `250ms` and sums like `1h30m`. Never panics: a total
/// beyond what a [`Duration`] holds is an error.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    if s.is_empty() {
        return Err("empty duration".into());
    }
    let too_large = || format!("invalid duration `{text}`: too large");
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!("invalid duration `{text}`: expected a number followed by a unit (ms, s, m, h, d), e.g. 30s or 5m"));
        }
        let n: u64 = rest[..digits].parse().map_err(|_| too_large())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let seconds = |per: u64| n.checked_mul(per).map(Duration::from_secs);
        let d = match unit {
            "ms" => Some(Duration::from_millis(n)),
            "s" => Some(Duration::from_secs(n)),
            "m" => seconds(60),
            "h" => seconds(3600),
            "d" => seconds(86400),
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
        total = d.and_then(|d| total.checked_add(d)).ok_or_else(too_large)?;
    }
    Ok(total)
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
    fn durations_too_large_for_a_duration_are_errors() {
        for text in [
            "18446744073709551615s1s",
            "213503982334602d",
            "99999999999999999999s",
            "307445734561825861m",
        ] {
            assert!(
                parse_duration(text).unwrap_err().contains("too large"),
                "{text}"
            );
        }
        assert!(parse_duration("1...s1s")
            .unwrap_err()
            .contains("unknown unit `...s`"));
    }
}
