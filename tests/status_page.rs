//! The status page and its JSON, from the real binary polling the simulator with one IAM action
//! denied: the JSON follows docs/status.schema.json (checked with Python's `jsonschema`), names
//! the failing source with its IAM action and AWS error code, and basic auth guards both paths.

mod common;

use std::net::SocketAddr;

use aws_workflow_exporter::simulator::{demo, Simulator};
use base64::Engine;
use common::{http_get, wait_for, Binary, Daemon};
use serde_json::Value;

const DENIED: &str = "appflow:ListFlows";

struct Running {
    _daemon: Daemon,
    _sim: Simulator,
    addr: SocketAddr,
    auth: String,
}

async fn start() -> Running {
    let sim = Simulator::start().await.expect("simulator");
    {
        let mut world = sim.world();
        demo::seed(&mut world);
        world
            .faults
            .extend(demo::denials(DENIED).expect("a known action"));
    }
    let bin = Binary::new().config(&format!(
        "poll_interval: 1s\n\
         aws_api:\n  max_attempts: 1\n  operation_timeout: 3s\n\
         targets:\n  - name: sim\n    regions: [us-east-1]\n    endpoint_url: {}\n",
        sim.endpoint
    ));
    let hash = bcrypt::hash_with_salt("s3cret", 4, *b"0123456789abcdef")
        .expect("bcrypt")
        .to_string();
    let web = bin.write("web.yaml", &format!("basic_auth_users:\n  admin: {hash}\n"));
    let daemon = bin.arg("--web.config.file").arg(&web).start();
    let auth = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("admin:s3cret")
    );
    Running {
        addr: daemon.addr,
        _daemon: daemon,
        _sim: sim,
        auth,
    }
}

/// Validates `doc` against docs/status.schema.json; `Err` has why not.
fn validate(doc: &Value) -> Result<(), String> {
    common::validate_json_schema("docs/status.schema.json", doc)
}

fn source<'a>(doc: &'a Value, name: &str) -> &'a Value {
    doc["sources"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["source"] == name))
        .unwrap_or_else(|| panic!("no source {name} in {doc:#}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_json_follows_its_schema_and_names_the_denied_action() {
    let r = start().await;
    let auth = [("Authorization", r.auth.as_str())];
    let doc = wait_for("every source has finished a poll", async || {
        let resp = common::try_http_get(r.addr, "/api/v1/status", &auth)
            .await
            .ok()?;
        let doc: Value = serde_json::from_slice(&resp.body).ok()?;
        let polled = doc["sources"]
            .as_array()
            .is_some_and(|s| s.len() == 3 && s.iter().all(|s| !s["last_poll"].is_null()));
        polled.then_some(doc)
    })
    .await;
    validate(&doc).unwrap_or_else(|e| panic!("{e}\n{doc:#}"));

    let appflow = source(&doc, "appflow_flows");
    assert_eq!(appflow["state"], "failing", "{appflow:#}");
    assert_eq!(appflow["last_poll"]["outcome"], "failed");
    let error = &appflow["last_errors"][0];
    assert_eq!(error["iam_action"], DENIED, "{error:#}");
    assert_eq!(error["operation"], "ListFlows");
    assert_eq!(error["code"], "AccessDeniedException");
    assert!(error["message"]
        .as_str()
        .unwrap()
        .contains("not authorized"));
    for ok in ["sfn_map_runs", "transfer_workflows"] {
        let s = source(&doc, ok);
        assert_eq!(s["state"], "ok", "{s:#}");
        assert!(s["last_errors"].as_array().unwrap().is_empty());
        assert!(
            s["tracked"]
                .as_object()
                .unwrap()
                .values()
                .any(|v| v.as_u64() > Some(0)),
            "{s:#}"
        );
    }
    assert!(source(&doc, "sfn_map_runs")["backlog"]
        .get("map_run")
        .is_some());
    assert_eq!(doc["reload"]["success"], true);
    assert_eq!(doc["shard"]["total"], 1);
    assert_eq!(doc["build"]["version"], env!("CARGO_PKG_VERSION"));
    let budgets = doc["budgets"].as_array().unwrap();
    assert!(
        budgets
            .iter()
            .any(|b| b["operation"] == "ListStateMachines" && b["share"].as_f64() > Some(0.0)),
        "{budgets:#?}"
    );

    // The schema is a real one: a document that breaks it is refused.
    let mut broken = doc.clone();
    broken["sources"][0]["state"] = "unknown".into();
    assert!(validate(&broken).is_err());
    let mut broken = doc.clone();
    broken["sources"][0]["surprise"] = 1.into();
    assert!(validate(&broken).is_err());

    // The page says the same, and names the action.
    let page = http_get(r.addr, "/status", &auth).await;
    let body = String::from_utf8_lossy(&page.body);
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert!(body.contains("data-state=\"failing\""), "{body}");
    assert!(body.contains(DENIED));
    assert!(!body.contains("<script"), "the page carries no scripts");
    let landing = http_get(r.addr, "/", &auth).await;
    assert!(String::from_utf8_lossy(&landing.body).contains("href=\"/status\""));
}

#[test]
fn the_demo_can_deny_every_iam_action_the_exporter_needs() {
    let needed: Vec<_> = aws_workflow_exporter::services::operations()
        .into_iter()
        .filter_map(|op| op.iam_action.map(|a| (a, op.service, op.name)))
        .collect();
    let mut deniable = demo::DENIABLE.to_vec();
    deniable.sort();
    let mut needed_sorted = needed.clone();
    needed_sorted.sort();
    assert_eq!(deniable, needed_sorted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_guards_the_status() {
    let r = start().await;
    let auth = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("admin:wrong")
    );
    wait_for("the daemon answers", async || {
        common::try_http_get(r.addr, "/healthz", &[]).await.ok()
    })
    .await;
    for path in ["/status", "/api/v1/status"] {
        for headers in [vec![], vec![("Authorization", auth.as_str())]] {
            let resp = http_get(r.addr, path, &headers).await;
            assert_eq!(resp.status, 401, "{path} {headers:?}");
            assert!(
                !String::from_utf8_lossy(&resp.body).contains("appflow"),
                "{path} leaks the status"
            );
        }
        let ok = http_get(r.addr, path, &[("Authorization", r.auth.as_str())]).await;
        assert_eq!(ok.status, 200, "{path}");
    }
}
