//! `/status`: the status report as one self-contained HTML page (inline CSS, no scripts, no
//! external assets). Every string from AWS or the configuration is HTML-escaped.

use std::fmt::Write;

use crate::status::{ErrorRecord, SourceStatus, State, StatusReport};

/// Escapes text for HTML element content and quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A Unix time as UTC `YYYY-MM-DD HH:MM:SS`, with how long ago.
fn time(at: f64, now: f64) -> String {
    let secs = at.max(0.0) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC ({} ago)",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ago(now - at)
    )
}

fn ago(secs: f64) -> String {
    let s = secs.max(0.0);
    if s < 120.0 {
        format!("{s:.0}s")
    } else if s < 7200.0 {
        format!("{:.0}m", s / 60.0)
    } else {
        format!("{:.1}h", s / 3600.0)
    }
}

fn state_label(state: State) -> (&'static str, &'static str) {
    match state {
        State::Pending => ("pending", "pending"),
        State::Ok => ("ok", "ok"),
        State::Degraded => ("degraded", "degraded"),
        State::Failing => ("failing", "failing"),
        State::WaitingForBudget => ("waiting_for_budget", "waiting for budget"),
    }
}

fn counts(map: &std::collections::BTreeMap<String, usize>) -> String {
    if map.is_empty() {
        return "none".into();
    }
    map.iter()
        .map(|(k, v)| format!("{v} {}", escape(k)))
        .collect::<Vec<_>>()
        .join(", ")
}

fn error_row(out: &mut String, e: &ErrorRecord, now: f64) {
    let _ = write!(
        out,
        "<li><span class=\"when\">{}</span> <code>{}</code>{}{} <span class=\"msg\">{}</span></li>",
        time(e.at, now),
        escape(&e.operation),
        e.iam_action
            .as_deref()
            .map(|a| format!(" IAM action <code class=\"action\">{}</code>", escape(a)))
            .unwrap_or_default(),
        e.code
            .as_deref()
            .map(|c| format!(" <code class=\"code\">{}</code>", escape(c)))
            .unwrap_or_default(),
        // The code is shown on its own already.
        escape(
            e.code
                .as_deref()
                .and_then(|c| e.message.strip_prefix(c))
                .and_then(|m| m.strip_prefix(": "))
                .unwrap_or(&e.message)
        ),
    );
}

fn source_row(out: &mut String, s: &SourceStatus, now: f64) {
    let (class, label) = state_label(s.state);
    let poll = match &s.last_poll {
        Some(p) => format!(
            "{}<br>took {:.2}s, outcome <b>{}</b>, {} error(s)",
            time(p.started_at, now),
            p.duration_seconds,
            p.outcome,
            p.errors
        ),
        None => "not yet".into(),
    };
    let polling = s
        .polling_since
        .map(|t| format!("<br>polling since {} ago", ago(now - t)))
        .unwrap_or_default();
    let _ = write!(
        out,
        "<tr class=\"source\" id=\"{id}\" data-state=\"{class}\"><td><b>{source}</b><br><small>every {interval:.0}s</small></td>\
         <td>{target}<br><small>account {account}, {region}</small></td>\
         <td><span class=\"state {class}\">{label}</span></td><td>{poll}{polling}</td>\
         <td>{tracked}</td><td>{backlog}</td></tr>",
        id = escape(&format!("{}@{}", s.source, s.target)),
        source = escape(&s.source),
        interval = s.interval_seconds,
        target = escape(&s.target),
        account = escape(&s.account_id),
        region = escape(&s.region),
        tracked = counts(&s.tracked),
        backlog = counts(&s.backlog),
    );
    if !s.last_errors.is_empty() {
        out.push_str("<tr class=\"errors\"><td colspan=\"6\"><b>Last errors</b><ul>");
        for e in s.last_errors.iter().rev() {
            error_row(out, e, now);
        }
        out.push_str("</ul></td></tr>");
    }
}

const STYLE: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:1.5em 2em;color:#1d2330;background:#f6f7f9}\
h1{font-size:1.5em;margin:0 0 .2em}h2{font-size:1.15em;margin:1.6em 0 .5em}\
.meta{color:#555;margin:.2em 0}\
table{border-collapse:collapse;width:100%;background:#fff;box-shadow:0 1px 2px #0002}\
th,td{text-align:left;vertical-align:top;padding:.45em .7em;border-bottom:1px solid #e3e6ea;font-size:.92em}\
th{background:#eef0f3;font-weight:600}\
.state{display:inline-block;padding:.15em .6em;border-radius:1em;font-weight:600;font-size:.85em;color:#fff}\
.ok{background:#2e7d32}.degraded{background:#ed8b00}.failing{background:#c62828}\
.waiting_for_budget{background:#5c6bc0}.pending{background:#78909c}\
tr.errors td{background:#fff5f5}tr.errors ul{margin:.3em 0;padding-left:1.2em}\
tr.errors li{margin:.2em 0}.when{color:#666}.msg{font-family:ui-monospace,monospace;font-size:.9em;word-break:break-word}\
code{background:#eef0f3;padding:0 .3em;border-radius:3px}code.action{background:#fde2e2;color:#8e0000}\
small{color:#666}a{color:#1a56a8}";

/// The page for `report`.
pub fn render(report: &StatusReport) -> String {
    let now = report.now;
    let mut out = String::with_capacity(8192);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>aws-workflow-exporter status</title>\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><style>{STYLE}</style></head><body>\
         <h1>aws-workflow-exporter status</h1>\
         <p class=\"meta\">Version {version} (revision {revision}), started {started}. Shard {ordinal} of {total}. \
         As of {now_text}; nothing on this page calls AWS. <a href=\"/\">Home</a> · <a href=\"/api/v1/status\">JSON</a></p>",
        version = escape(report.build.version),
        revision = escape(report.build.revision),
        started = time(report.started_at, now),
        ordinal = report.shard.ordinal,
        total = report.shard.total,
        now_text = time(now, now),
    );
    match &report.reload {
        Some(r) => {
            let _ = write!(
                out,
                "<p class=\"meta\">Configuration last loaded {}: <b>{}</b>{}</p>",
                time(r.at, now),
                if r.success {
                    "success"
                } else {
                    "failed, the previous configuration is kept"
                },
                r.last_success_at
                    .filter(|_| !r.success)
                    .map(|t| format!(" (last success {})", time(t, now)))
                    .unwrap_or_default()
            );
        }
        None => out.push_str("<p class=\"meta\">Configuration: not loaded yet</p>"),
    }
    out.push_str(
        "<h2>Sources</h2><table><thead><tr><th>Source</th><th>Target</th><th>State</th>\
         <th>Last poll</th><th>Tracked</th><th>History backlog</th></tr></thead><tbody>",
    );
    if report.sources.is_empty() {
        out.push_str("<tr><td colspan=\"6\">No source is enabled.</td></tr>");
    }
    for s in &report.sources {
        source_row(&mut out, s, now);
    }
    out.push_str(
        "</tbody></table><h2>API budget</h2><table><thead><tr><th>Target</th><th>Operation</th>\
         <th>Tokens</th><th>Refill</th><th>Share of AWS's bucket</th><th>Waits</th></tr></thead><tbody>",
    );
    if report.budgets.is_empty() {
        out.push_str("<tr><td colspan=\"6\">No call made yet.</td></tr>");
    }
    for b in &report.budgets {
        let _ = write!(
            out,
            "<tr><td>{}</td><td><code>{}:{}</code>{}</td><td>{:.1} / {:.0}</td><td>{:.2}/s</td><td>{}</td><td>{} ({:.1}s in all)</td></tr>",
            escape(&b.target),
            escape(&b.service),
            escape(&b.operation),
            if b.waiting { " <span class=\"state waiting_for_budget\">waiting</span>" } else { "" },
            b.tokens,
            b.capacity,
            b.refill_per_second,
            b.share,
            b.waits,
            b.wait_seconds,
        );
    }
    out.push_str("</tbody></table></body></html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::{PollReport, StatusBoard};

    #[test]
    fn aws_text_is_escaped() {
        let board = StatusBoard::new(0.0);
        board.declare_source("s", "t<b>", vec![]);
        board.poll_finished(PollReport {
            source: "s",
            target: "t<b>",
            account_id: "1",
            region: "r",
            started_at: 1.0,
            duration_seconds: 0.1,
            failed: true,
            errors: vec![ErrorRecord {
                at: 1.0,
                operation: "ListFlows".into(),
                iam_action: Some("appflow:ListFlows".into()),
                code: Some("AccessDeniedException".into()),
                kind: "error".into(),
                message: "<script>alert('x')</script> & \"more\"".into(),
            }],
            tracked: vec![],
            backlog: vec![],
        });
        let page = render(&board.report(2.0));
        assert!(!page.contains("<script>"), "{page}");
        assert!(!page.contains("t<b>"));
        assert!(
            page.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;more&quot;")
        );
        assert!(page.contains("data-state=\"failing\""));
    }

    #[test]
    fn times_are_utc_dates() {
        assert_eq!(
            time(1_764_927_000.0, 1_764_927_060.0),
            "2025-12-05 09:30:00 UTC (60s ago)"
        );
        assert_eq!(time(0.0, 7200.0), "1970-01-01 00:00:00 UTC (2.0h ago)");
    }
}
