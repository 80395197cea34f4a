//! Generated docs stay in step with the code, and the binary emits only declared metrics.

mod common;

use aws_workflow_exporter::app::catalog;
use aws_workflow_exporter::exposition::docs::{render_docs, LIBRARY_PREFIXES};
use aws_workflow_exporter::services::operations;
use common::Harness;

fn repo_file(path: &str) -> String {
    format!("{}/{path}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn docs_metrics_md_is_generated_from_the_code() {
    let path = repo_file("docs/metrics.md");
    let want = render_docs(&catalog());
    if std::env::var_os("UPDATE_DOCS").is_some() {
        std::fs::write(&path, &want).unwrap();
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        have == want,
        "docs/metrics.md is stale: run `UPDATE_DOCS=1 cargo test --test docs`"
    );
}

#[test]
fn metric_names_are_unique_and_follow_the_conventions() {
    let mut seen = std::collections::BTreeSet::new();
    for (_, defs) in catalog() {
        for d in defs {
            assert!(seen.insert(d.name), "{} declared twice", d.name);
            assert_eq!(
                d.name.ends_with("_total"),
                d.kind == aws_workflow_exporter::exposition::metric::MetricKind::Counter,
                "{}: _total only on counters",
                d.name
            );
            assert!(
                !d.labels.contains(&"job") && !d.labels.contains(&"instance"),
                "{}",
                d.name
            );
            assert!(
                d.help.len() > 20 && d.help.ends_with('.'),
                "{}: write a real HELP",
                d.name
            );
        }
    }
}

#[tokio::test]
async fn every_family_served_in_the_demo_is_declared() {
    let mut h = Harness::start(
        &["sfn_map_runs", "transfer_workflows", "appflow_flows"],
        |_| {},
    )
    .await;
    aws_workflow_exporter::simulator::demo::seed(&mut h.world());
    h.poll().await;
    let scrape = h.scrape().await;
    let declared: Vec<&str> = catalog()
        .iter()
        .flat_map(|(_, defs)| defs.iter().map(|d| d.name))
        .collect();
    for family in scrape.family_names() {
        assert!(
            declared.contains(&family.as_str())
                || LIBRARY_PREFIXES.iter().any(|p| family.starts_with(p)),
            "{family} is served but not declared (so not in docs/metrics.md)"
        );
    }
}

/// The IAM policy shipped in deploy/iam lists exactly the actions the code can call.
#[test]
fn iam_policy_matches_the_operations_the_code_calls() {
    let policy: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo_file("deploy/iam/policy.json")).unwrap(),
    )
    .unwrap();
    let mut in_policy = std::collections::BTreeSet::new();
    for statement in policy["Statement"].as_array().unwrap() {
        match &statement["Action"] {
            serde_json::Value::String(a) => {
                in_policy.insert(a.clone());
            }
            serde_json::Value::Array(list) => {
                in_policy.extend(list.iter().map(|a| a.as_str().unwrap().to_owned()))
            }
            other => panic!("unexpected Action {other}"),
        }
    }
    let in_code: std::collections::BTreeSet<String> = operations()
        .iter()
        .filter_map(|op| op.iam_action.map(str::to_owned))
        .collect();
    assert_eq!(in_policy, in_code);
}

/// The policy for the account that lists an organisation's accounts grants exactly the calls
/// organisation discovery makes.
#[test]
fn the_organization_policy_matches_the_calls_discovery_makes() {
    let policy: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo_file("deploy/iam/organization-policy.json")).unwrap(),
    )
    .unwrap();
    let in_policy: std::collections::BTreeSet<String> = policy["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["Action"].as_array().unwrap().iter())
        .map(|a| a.as_str().unwrap().to_owned())
        .collect();
    let in_code: std::collections::BTreeSet<String> =
        aws_workflow_exporter::aws::organization::OPERATIONS
            .iter()
            .filter_map(|op| op.iam_action.map(str::to_owned))
            .collect();
    assert_eq!(in_policy, in_code);
}
