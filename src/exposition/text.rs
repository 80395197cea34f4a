//! The Prometheus text format (0.0.4): written by [`FamilyBuilder`](super::family::FamilyBuilder)
//! and the hub, read back by the OTLP push so both outputs carry the same data by construction.
//!
//! The exposition is held only as text: a series costs its line (about 200 bytes), not a tree of
//! per-label objects.

use std::borrow::Cow;

use crate::exposition::metric::{MetricDef, MetricKind};

/// The `# TYPE` of a declared metric: state sets and info metrics are gauges.
pub fn type_name(kind: MetricKind) -> &'static str {
    match kind {
        MetricKind::Counter => "counter",
        MetricKind::Histogram => "histogram",
        MetricKind::Gauge | MetricKind::StateSet | MetricKind::Info => "gauge",
    }
}

/// The `# HELP` and `# TYPE` lines of a family.
pub fn header(def: &MetricDef) -> String {
    let mut out = String::with_capacity(def.help.len() + 2 * def.name.len() + 24);
    out.push_str("# HELP ");
    out.push_str(def.name);
    out.push(' ');
    push_escaped(&mut out, def.help, false);
    out.push_str("\n# TYPE ");
    out.push_str(def.name);
    out.push(' ');
    out.push_str(type_name(def.kind));
    out.push('\n');
    out
}

/// Appends `v` escaped as the format asks: `\` and newline always, `"` in label values.
pub fn push_escaped(out: &mut String, v: &str, quote: bool) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if quote => out.push_str("\\\""),
            c => out.push(c),
        }
    }
}

/// Appends a sample value: `+Inf`, `-Inf`, `NaN`, or the shortest decimal that reads back equal.
pub fn push_value(out: &mut String, v: f64) {
    use std::fmt::Write;
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else {
        // Writing to a String cannot fail.
        let _ = write!(out, "{v}");
    }
}

/// Appends one sample line: `name{label="value",...} value`.
pub fn push_sample(
    out: &mut String,
    name: &str,
    suffix: &str,
    labels: impl IntoIterator<Item = (impl AsRef<str>, impl AsRef<str>)>,
    value: f64,
) {
    out.push_str(name);
    out.push_str(suffix);
    let mut separator = '{';
    for (k, v) in labels {
        out.push(separator);
        out.push_str(k.as_ref());
        out.push_str("=\"");
        push_escaped(out, v.as_ref(), true);
        out.push('"');
        separator = ',';
    }
    if separator == ',' {
        out.push('}');
    }
    out.push(' ');
    push_value(out, value);
    out.push('\n');
}

/// Exposition text that does not follow the format.
#[derive(Debug, thiserror::Error)]
#[error("exposition line {line}: {reason}")]
pub struct TextError {
    pub line: usize,
    pub reason: &'static str,
}

/// One sample line read back.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample<'a> {
    /// The sample's name: the family name, or it with `_bucket`, `_sum`, `_count`.
    pub name: &'a str,
    pub labels: Vec<(&'a str, Cow<'a, str>)>,
    pub value: f64,
}

impl Sample<'_> {
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_ref())
    }
}

/// One family read back: its header and its samples, in order.
#[derive(Debug, Clone, PartialEq)]
pub struct TextFamily<'a> {
    pub name: &'a str,
    pub help: String,
    /// The `# TYPE`: counter, gauge, histogram, summary or untyped.
    pub kind: &'a str,
    pub samples: Vec<Sample<'a>>,
}

/// Reads families one at a time from exposition text given in chunks of whole lines, so the
/// whole exposition is never held in parsed form.
pub fn families<'a>(
    chunks: impl IntoIterator<Item = &'a [u8]>,
) -> impl Iterator<Item = Result<TextFamily<'a>, TextError>> {
    let lines = chunks
        .into_iter()
        .flat_map(|c| c.split(|b| *b == b'\n'))
        .enumerate()
        .map(|(i, l)| (i + 1, l));
    Families {
        lines: lines.peekable(),
        failed: false,
    }
}

struct Families<I: Iterator> {
    lines: std::iter::Peekable<I>,
    failed: bool,
}

impl<'a, I: Iterator<Item = (usize, &'a [u8])>> Iterator for Families<I> {
    type Item = Result<TextFamily<'a>, TextError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let result = self.read_family();
        if matches!(result, Some(Err(_))) {
            self.failed = true;
        }
        result
    }
}

impl<'a, I: Iterator<Item = (usize, &'a [u8])>> Families<I> {
    fn read_family(&mut self) -> Option<Result<TextFamily<'a>, TextError>> {
        let mut family: Option<TextFamily<'a>> = None;
        while let Some(&(n, raw)) = self.lines.peek() {
            let line = match std::str::from_utf8(raw) {
                Ok(l) => l,
                Err(_) => return Some(Err(error(n, "not UTF-8"))),
            };
            if line.is_empty() {
                self.lines.next();
                continue;
            }
            if let Some(comment) = line.strip_prefix('#') {
                let mut words = comment.trim_start().splitn(3, ' ');
                let keyword = words.next().unwrap_or_default();
                if keyword == "HELP" || keyword == "TYPE" {
                    let name = words.next().unwrap_or_default();
                    let text = words.next().unwrap_or_default();
                    if family.as_ref().is_some_and(|f| f.name != name) {
                        break; // the next family's header: read it next time
                    }
                    let f = family.get_or_insert_with(|| TextFamily {
                        name,
                        help: String::new(),
                        kind: "untyped",
                        samples: Vec::new(),
                    });
                    if keyword == "HELP" {
                        match unescape(text, n) {
                            Ok(help) => f.help = help.into_owned(),
                            Err(e) => return Some(Err(e)),
                        }
                    } else {
                        f.kind = text;
                    }
                }
                self.lines.next();
                continue;
            }
            let Some(f) = family.as_mut() else {
                return Some(Err(error(n, "a sample before any # HELP or # TYPE line")));
            };
            match parse_sample(line, n) {
                Ok(s) => f.samples.push(s),
                Err(e) => return Some(Err(e)),
            }
            self.lines.next();
        }
        family.map(Ok)
    }
}

fn error(line: usize, reason: &'static str) -> TextError {
    TextError { line, reason }
}

/// Reverses [`push_escaped`].
fn unescape(v: &str, line: usize) -> Result<Cow<'_, str>, TextError> {
    if !v.contains('\\') {
        return Ok(Cow::Borrowed(v));
    }
    let mut out = String::with_capacity(v.len());
    let mut chars = v.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('\\') => out.push('\\'),
            Some('n') => out.push('\n'),
            Some('"') => out.push('"'),
            _ => return Err(error(line, "an unknown escape")),
        }
    }
    Ok(Cow::Owned(out))
}

fn parse_value(v: &str, line: usize) -> Result<f64, TextError> {
    match v {
        "+Inf" | "Inf" | "inf" => Ok(f64::INFINITY),
        "-Inf" | "-inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => v
            .parse()
            .map_err(|_| error(line, "a value that is not a number")),
    }
}

/// Reads one sample line, `name{label="value",...} value [timestamp]`; `n` is its line number.
pub fn parse_sample(line: &str, n: usize) -> Result<Sample<'_>, TextError> {
    let name_end = line
        .find(['{', ' '])
        .ok_or(error(n, "a sample without a value"))?;
    let name = &line[..name_end];
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(mut inner) = rest.strip_prefix('{') {
        loop {
            inner = inner.trim_start_matches(',');
            if let Some(after) = inner.strip_prefix('}') {
                rest = after;
                break;
            }
            let (key, after) = inner
                .split_once("=\"")
                .ok_or(error(n, "a label without =\""))?;
            // The value ends at the first `"` not escaped by a backslash.
            let bytes = after.as_bytes();
            let mut end = None;
            let mut i = 0;
            while i < bytes.len() {
                match bytes[i] {
                    b'\\' => i += 2,
                    b'"' => {
                        end = Some(i);
                        break;
                    }
                    _ => i += 1,
                }
            }
            let end = end.ok_or(error(n, "an unterminated label value"))?;
            labels.push((key, unescape(&after[..end], n)?));
            inner = &after[end + 1..];
        }
    }
    let value = rest
        .split_whitespace()
        .next()
        .ok_or(error(n, "a sample without a value"))?;
    Ok(Sample {
        name,
        labels,
        value: parse_value(value, n)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_written_reads_back_the_same() {
        let mut text = String::new();
        text.push_str(&header(&MetricDef {
            name: "x_total",
            kind: MetricKind::Counter,
            help: "A \\ help\nline.",
            labels: &["a", "b"],
        }));
        let awkward = "quote \" backslash \\ newline \n end";
        push_sample(&mut text, "x_total", "", [("a", awkward), ("b", "")], 1.5);
        push_sample(&mut text, "x_total", "", [("a", "2")], f64::INFINITY);
        text.push_str("# TYPE y gauge\n");
        push_sample(&mut text, "y", "", [] as [(&str, &str); 0], -0.25);
        push_sample(&mut text, "y", "", [("z", "1")], f64::NAN);
        push_sample(&mut text, "y", "", [("z", "2")], 1e300);

        let read: Vec<_> = families([text.as_bytes()])
            .collect::<Result<_, _>>()
            .expect("parses");
        assert_eq!(read.len(), 2);
        assert_eq!((read[0].name, read[0].kind), ("x_total", "counter"));
        assert_eq!(read[0].help, "A \\ help\nline.");
        assert_eq!(read[0].samples[0].label("a"), Some(awkward));
        assert_eq!(read[0].samples[0].label("b"), Some(""));
        assert_eq!(read[0].samples[0].value, 1.5);
        assert_eq!(read[0].samples[1].value, f64::INFINITY);
        assert_eq!((read[1].name, read[1].kind), ("y", "gauge"));
        assert!(read[1].samples[0].labels.is_empty());
        assert_eq!(read[1].samples[0].value, -0.25);
        assert!(read[1].samples[1].value.is_nan());
        assert_eq!(read[1].samples[2].value, 1e300);
    }

    #[test]
    fn a_family_may_span_chunks() {
        let chunks: [&[u8]; 3] = [
            b"# TYPE a gauge\na 1\n",
            b"a{k=\"v\"} 2\n",
            b"# TYPE b gauge\nb 3\n",
        ];
        let read: Vec<_> = families(chunks).collect::<Result<_, _>>().expect("parses");
        assert_eq!(
            read.iter().map(|f| f.samples.len()).collect::<Vec<_>>(),
            [2, 1]
        );
    }

    #[test]
    fn malformed_text_is_an_error_with_its_line() {
        for (text, line) in [
            ("orphan 1\n", 1),
            ("# TYPE a gauge\na{k=\"v} 1\n", 2),
            ("# TYPE a gauge\na 1\na{k=\"\\q\"} 1\n", 3),
            ("# TYPE a gauge\na one\n", 2),
        ] {
            let err = families([text.as_bytes()])
                .find_map(Result::err)
                .unwrap_or_else(|| panic!("{text:?} parsed"));
            assert_eq!(err.line, line, "{text:?}: {err}");
        }
    }
}
