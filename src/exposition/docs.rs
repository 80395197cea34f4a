//! docs/metrics.md, rendered from the metric catalog.

use crate::exposition::metric::MetricDef;

/// Families whose names are not declared here but come from the client library.
pub const LIBRARY_PREFIXES: &[&str] = &["process_"];

/// Renders docs/metrics.md from the catalog.
pub fn render_docs(catalog: &[(&str, &[&MetricDef])]) -> String {
    let mut out = String::from(
        "# Metrics\n\n<!-- Generated from the code by `UPDATE_DOCS=1 cargo test --test docs`; do not edit by hand. -->\n\n\
         Every metric aws-workflow-exporter can emit. Values are served from the last completed poll: a scrape never calls AWS. \
         Every AWS-derived series carries `account_id` and `region`. Histograms also expose `_bucket`, `_sum` and `_count` series.\n",
    );
    for (section, defs) in catalog {
        out.push_str(&format!(
            "\n## {section}\n\n| metric | type | labels | meaning |\n| --- | --- | --- | --- |\n"
        ));
        for d in defs.iter() {
            let labels = d
                .labels
                .iter()
                .map(|l| format!("`{l}`"))
                .collect::<Vec<_>>()
                .join(", ");
            out.push_str(&format!(
                "| `{}` | {} | {} | {} |\n",
                d.name,
                d.kind.as_str(),
                labels,
                d.help
            ));
        }
    }
    out.push_str("\nAlso the client library's process metrics: `process_cpu_seconds_total`, `process_open_fds`, `process_max_fds`, `process_virtual_memory_bytes`, `process_resident_memory_bytes`, `process_start_time_seconds`, `process_threads`.\n");
    out
}
