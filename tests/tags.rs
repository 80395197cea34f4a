//! Resource tags (issue #23) against the simulator, through the real SDK over HTTP: the info
//! series of each service carry the exported tags as `tag_<key>` labels, selection blocks select
//! by tag, a tag change is picked up after `tags.refresh`, and the tag reads stay within the
//! budget (Step Functions' ListTagsForResource once per state machine, again only at refresh or
//! re-creation).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use aws_workflow_exporter::config::{inline_path, Config};
use aws_workflow_exporter::simulator::unix_now;
use common::{assert_promtool_clean, wait_until, Harness, Scrape};

/// Parses `yaml` (a whole configuration file) and copies its sources' tag settings and selection
/// blocks into `config`, so the tests go through the file's syntax and validation.
fn apply(config: &mut Config, yaml: &str) {
    let parsed = Config::parse(yaml, &inline_path()).expect("test config is valid");
    let (to, from) = (&mut config.sources, parsed.sources);
    to.sfn_map_runs.tags = from.sfn_map_runs.tags;
    to.sfn_map_runs.state_machines = from.sfn_map_runs.state_machines;
    to.transfer_workflows.tags = from.transfer_workflows.tags;
    to.transfer_workflows.workflows = from.transfer_workflows.workflows;
    to.appflow_flows.tags = from.appflow_flows.tags;
    to.appflow_flows.flows = from.appflow_flows.flows;
}

fn calls(m: &BTreeMap<(String, String), usize>, service: &str, op: &str) -> usize {
    m.get(&(service.to_string(), op.to_string()))
        .copied()
        .unwrap_or(0)
}

/// The info series of `name`, by the value of `id_label`: each one's labels.
fn info(s: &Scrape, name: &str, id_label: &str) -> BTreeMap<String, BTreeMap<String, String>> {
    s.matching(name, &[])
        .map(|x| {
            assert_eq!(x.value, 1.0);
            (x.labels[id_label].clone(), x.labels.clone())
        })
        .collect()
}

fn tag_labels(labels: &BTreeMap<String, String>) -> Vec<(&str, &str)> {
    labels
        .iter()
        .filter(|(k, _)| k.starts_with("tag_"))
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

const SFN: &[&str] = &["sfn_map_runs"];

#[tokio::test]
async fn state_machine_info_carries_exported_tags_read_once_per_state_machine() {
    // The top-level `tags.export` applies to every source that sets none.
    let yaml = "tags:\n  export: [team, cost-center]\n";
    let mut h = Harness::start(SFN, |c| {
        apply(c, yaml);
        // Listed every poll, so that the re-creation below is seen at the next one.
        c.sources.sfn_map_runs.discovery_interval = std::time::Duration::ZERO;
    })
    .await;
    let now = unix_now();
    let etl = {
        let mut w = h.world();
        let etl = w.sfn.add_state_machine("etl", now - 100.0);
        w.sfn.set_tags(
            &etl,
            &[("team", "data"), ("cost-center", "42"), ("env", "prod")],
        );
        let ml = w.sfn.add_state_machine("ml", now - 100.0);
        w.sfn.set_tags(&ml, &[("team", "ml")]);
        w.sfn.add_state_machine("untagged", now - 100.0);
        etl
    };
    for _ in 0..3 {
        h.poll().await;
    }
    let s = h.scrape().await;
    assert_promtool_clean(&s.text);
    let info = info(&s, "aws_sfn_state_machine_info", "state_machine");
    assert_eq!(
        info.keys().collect::<Vec<_>>(),
        vec!["etl", "ml", "untagged"]
    );
    // Only exported keys, sanitised; `env` is not exported.
    assert_eq!(
        tag_labels(&info["etl"]),
        vec![("tag_cost_center", "42"), ("tag_team", "data")]
    );
    assert_eq!(tag_labels(&info["ml"]), vec![("tag_team", "ml")]);
    assert!(tag_labels(&info["untagged"]).is_empty());
    assert_eq!(info["etl"]["account_id"], "123456789012");
    // Three polls, three state machines: one read each (tags.refresh is 1h).
    let c = h.take_calls();
    assert_eq!(calls(&c, "sfn", "ListTagsForResource"), 3, "{c:?}");
    assert_eq!(calls(&c, "sfn", "ListStateMachines"), 3);

    // Re-created (a new creation date): its tags are read again at once, only its.
    {
        let mut w = h.world();
        w.sfn.delete_state_machine(&etl);
        let etl = w.sfn.add_state_machine("etl", now - 10.0);
        w.sfn.set_tags(&etl, &[("team", "platform")]);
    }
    h.poll().await;
    let s = h.scrape().await;
    let info = common_info(&s);
    assert_eq!(tag_labels(&info["etl"]), vec![("tag_team", "platform")]);
    let c = h.take_calls();
    assert_eq!(calls(&c, "sfn", "ListTagsForResource"), 1, "{c:?}");
}

fn common_info(s: &Scrape) -> BTreeMap<String, BTreeMap<String, String>> {
    info(s, "aws_sfn_state_machine_info", "state_machine")
}

#[tokio::test]
async fn no_tag_settings_means_no_tag_calls() {
    let mut h = Harness::start(
        &["sfn_map_runs", "transfer_workflows", "appflow_flows"],
        |_| {},
    )
    .await;
    {
        let mut w = h.world();
        let sm = w.sfn.add_state_machine("etl", unix_now() - 100.0);
        w.sfn.set_tags(&sm, &[("team", "data")]);
        w.transfer
            .add_workflow("w-0000000000000000a", Some("ingest"));
        w.transfer
            .set_tags("w-0000000000000000a", &[("team", "data")]);
    }
    h.poll().await;
    h.poll().await;
    let c = h.take_calls();
    assert_eq!(calls(&c, "sfn", "ListTagsForResource"), 0, "{c:?}");
    assert_eq!(calls(&c, "transfer", "DescribeWorkflow"), 0, "{c:?}");
    let s = h.scrape().await;
    // The info series are there, without tag labels.
    let info = common_info(&s);
    assert!(tag_labels(&info["etl"]).is_empty());
}

#[tokio::test]
async fn state_machines_are_selected_by_tag_or_by_name() {
    // AND across keys, OR across values; OR with the names list, as the parts of a selection combine.
    let yaml = "sources:\n  sfn_map_runs:\n    state_machines:\n      names: [named]\n      tags:\n        team: [data, ml]\n        env: [prod]\n";
    let mut h = Harness::start(SFN, |c| apply(c, yaml)).await;
    let now = unix_now();
    {
        let mut w = h.world();
        for (name, tags) in [
            ("named", vec![]),
            ("data-prod", vec![("team", "data"), ("env", "prod")]),
            ("ml-prod", vec![("team", "ml"), ("env", "prod")]),
            ("data-dev", vec![("team", "data"), ("env", "dev")]),
            ("web-prod", vec![("team", "web"), ("env", "prod")]),
            ("untagged", vec![]),
        ] {
            let arn = w.sfn.add_state_machine(name, now - 100.0);
            w.sfn.set_tags(&arn, &tags);
            // Each has a running execution: only selected ones are listed further.
            w.sfn.start_execution(&arn, "run", now - 50.0);
        }
    }
    h.poll().await;
    let s = h.scrape().await;
    let watched: BTreeSet<String> = common_info(&s).into_keys().collect();
    assert_eq!(
        watched,
        ["data-prod", "ml-prod", "named"]
            .map(String::from)
            .into_iter()
            .collect()
    );
    let c = h.take_calls();
    // The named one is selected without reading its tags: five reads.
    assert_eq!(calls(&c, "sfn", "ListTagsForResource"), 5, "{c:?}");

    // A tag change selects a state machine once its tags are read again (refresh is 1h here:
    // not before; the next test covers refresh).
    {
        let mut w = h.world();
        let arn = w
            .sfn
            .state_machines
            .values()
            .find(|s| s.name == "web-prod")
            .unwrap()
            .arn
            .clone();
        w.sfn.set_tags(&arn, &[("team", "ml"), ("env", "prod")]);
    }
    h.poll().await;
    let s = h.scrape().await;
    assert!(!common_info(&s).contains_key("web-prod"));
    assert_eq!(calls(&h.take_calls(), "sfn", "ListTagsForResource"), 0);
}

#[tokio::test]
async fn a_tag_change_is_picked_up_after_tags_refresh() {
    let yaml = "sources:\n  sfn_map_runs:\n    tags:\n      export: [team]\n    state_machines:\n      tags:\n        team: [data]\n";
    let mut h = Harness::start(SFN, |c| {
        apply(c, yaml);
        // Below the file's 1s minimum, so the test does not wait.
        c.sources.sfn_map_runs.tags.refresh = Some(Duration::from_millis(100));
    })
    .await;
    let now = unix_now();
    let (a, b) = {
        let mut w = h.world();
        let a = w.sfn.add_state_machine("a", now - 100.0);
        w.sfn.set_tags(&a, &[("team", "data")]);
        let b = w.sfn.add_state_machine("b", now - 100.0);
        w.sfn.set_tags(&b, &[("team", "web")]);
        (a, b)
    };
    h.poll().await;
    let s = h.scrape().await;
    let info = common_info(&s);
    assert_eq!(info.keys().collect::<Vec<_>>(), vec!["a"]);
    assert_eq!(tag_labels(&info["a"]), vec![("tag_team", "data")]);
    {
        let mut w = h.world();
        w.sfn.set_tags(&a, &[("team", "web")]);
        w.sfn.set_tags(&b, &[("team", "data")]);
    }
    let mut polls = 0;
    wait_until("the tag change is picked up", async || {
        h.poll().await;
        polls += 1;
        let info = common_info(&h.scrape().await);
        info.keys().collect::<Vec<_>>() == vec!["b"]
            && tag_labels(&info["b"]) == vec![("tag_team", "data")]
    })
    .await;
    // At most one read per state machine and poll, whatever the refresh.
    let reads = calls(&h.take_calls(), "sfn", "ListTagsForResource");
    assert!(
        reads <= 2 * (polls + 1),
        "{reads} reads in {} polls",
        polls + 1
    );
}

#[tokio::test]
async fn tag_refreshes_take_only_spare_tokens() {
    // A ListTagsForResource bucket of 2 tokens that hardly refills: two first reads, and the
    // third state machine (selected by name, so its tags are only exported) waits for a spare
    // token instead of holding the poll up.
    let yaml = "sources:\n  sfn_map_runs:\n    tags:\n      export: [team]\n";
    let mut h = Harness::start(SFN, |c| {
        apply(c, yaml);
        c.aws_api
            .quotas
            .insert("states:ListTagsForResource".into(), (2.0, 0.001));
        c.sources.sfn_map_runs.tags.refresh = Some(Duration::from_millis(1));
    })
    .await;
    let now = unix_now();
    {
        let mut w = h.world();
        for name in ["a", "b", "c"] {
            let arn = w.sfn.add_state_machine(name, now - 100.0);
            w.sfn.set_tags(&arn, &[("team", name)]);
        }
    }
    for _ in 0..3 {
        h.poll().await;
    }
    let c = h.take_calls();
    assert_eq!(calls(&c, "sfn", "ListTagsForResource"), 2, "{c:?}");
    let s = h.scrape().await;
    let info = common_info(&s);
    // Every selected state machine has its series; the one not read yet without tag labels.
    assert_eq!(info.len(), 3);
    let tagged = info.values().filter(|l| !tag_labels(l).is_empty()).count();
    assert_eq!(tagged, 2);
    // The poll did not fail for want of tokens.
    assert_eq!(
        s.value(
            "aws_workflow_exporter_poll_success",
            &[("source", "sfn_map_runs")]
        ),
        Some(1.0)
    );
}

const TRANSFER: &[&str] = &["transfer_workflows"];
const WF_DATA: &str = "w-0a1b2c3d4e5f60001";
const WF_WEB: &str = "w-0a1b2c3d4e5f60002";
const WF_NAMED: &str = "w-0a1b2c3d4e5f60003";

#[tokio::test]
async fn transfer_workflow_info_gains_tags_and_workflows_are_selected_by_tag() {
    let yaml = "sources:\n  transfer_workflows:\n    tags:\n      export: [team, Owner.Email]\n    workflows:\n      ids: [w-0a1b2c3d4e5f60003]\n      tags:\n        team: [data]\n";
    let mut h = Harness::start(TRANSFER, |c| {
        apply(c, yaml);
        c.sources.transfer_workflows.tags.refresh = Some(Duration::from_millis(100));
    })
    .await;
    {
        let mut w = h.world();
        w.transfer.add_workflow(WF_DATA, Some("ingest"));
        w.transfer.set_tags(
            WF_DATA,
            &[("team", "data"), ("Owner.Email", "d@example.com")],
        );
        w.transfer.add_workflow(WF_WEB, Some("uploads"));
        w.transfer.set_tags(WF_WEB, &[("team", "web")]);
        w.transfer.add_workflow(WF_NAMED, None);
        w.transfer.start_execution(WF_WEB, "e-1", "s-1");
    }
    h.poll().await;
    h.poll().await;
    let s = h.scrape().await;
    assert_promtool_clean(&s.text);
    let info = info(&s, "aws_transfer_workflow_info", "workflow_id");
    assert_eq!(info.keys().collect::<Vec<_>>(), vec![WF_DATA, WF_NAMED]);
    assert_eq!(info[WF_DATA]["description"], "ingest");
    assert_eq!(
        tag_labels(&info[WF_DATA]),
        vec![("tag_Owner_Email", "d@example.com"), ("tag_team", "data")]
    );
    assert!(tag_labels(&info[WF_NAMED]).is_empty());
    // The web team's workflow is not polled: its execution is not listed.
    assert_eq!(
        s.count(
            "aws_transfer_workflow_executions",
            &[("workflow_id", WF_WEB)]
        ),
        0
    );
    let c = h.take_calls();
    // Read once each within two polls at a 100 ms refresh at most twice; ListExecutions only
    // for the selected ones.
    let reads = calls(&c, "transfer", "DescribeWorkflow");
    assert!((3..=6).contains(&reads), "{c:?}");
    assert_eq!(calls(&c, "transfer", "ListExecutions"), 4, "{c:?}");

    // The web workflow moves to the data team: selected after the refresh.
    h.world().transfer.set_tags(WF_WEB, &[("team", "data")]);
    wait_until("the retagged workflow is selected", async || {
        h.poll().await;
        let s = h.scrape().await;
        s.count(
            "aws_transfer_workflow_executions",
            &[("workflow_id", WF_WEB)],
        ) > 0
            && s.value(
                "aws_transfer_workflow_info",
                &[("workflow_id", WF_WEB), ("tag_team", "data")],
            ) == Some(1.0)
    })
    .await;
}

const APPFLOW: &[&str] = &["appflow_flows"];

#[tokio::test]
async fn appflow_flow_info_and_selection_use_the_tags_list_flows_returns() {
    let yaml = "sources:\n  appflow_flows:\n    tags:\n      export: [team]\n    flows:\n      tags:\n        team: [data, ml]\n";
    let mut h = Harness::start(APPFLOW, |c| apply(c, yaml)).await;
    let now = unix_now();
    {
        let mut w = h.world();
        for (name, team) in [("sf-data", "data"), ("sf-ml", "ml"), ("sf-web", "web")] {
            w.appflow.add_flow(name, now - 100.0);
            w.appflow.set_tags(name, &[("team", team), ("env", "prod")]);
        }
    }
    h.poll().await;
    let s = h.scrape().await;
    assert_promtool_clean(&s.text);
    let info = info(&s, "aws_appflow_flow_info", "flow");
    assert_eq!(info.keys().collect::<Vec<_>>(), vec!["sf-data", "sf-ml"]);
    assert_eq!(tag_labels(&info["sf-ml"]), vec![("tag_team", "ml")]);
    // No call beyond ListFlows reads tags.
    let c = h.take_calls();
    let ops: BTreeSet<&str> = c.keys().map(|(_, op)| op.as_str()).collect();
    assert!(
        ops.is_subset(&["ListFlows", "DescribeFlowExecutionRecords"].into()),
        "{c:?}"
    );
    assert_eq!(calls(&c, "appflow", "ListFlows"), 1);

    // ListFlows shows a tag change at the next poll.
    h.world().appflow.set_tags("sf-web", &[("team", "data")]);
    h.world().appflow.set_tags("sf-ml", &[("team", "web")]);
    h.poll().await;
    let s = h.scrape().await;
    let info = self::info(&s, "aws_appflow_flow_info", "flow");
    assert_eq!(info.keys().collect::<Vec<_>>(), vec!["sf-data", "sf-web"]);
}

/// Against moto (a third-party Step Functions emulator with TagResource and
/// ListTagsForResource): exported tags on the info series, selection by tag, a TagResource
/// picked up after `tags.refresh`, and the reads the exporter's own request counter shows.
#[tokio::test]
async fn step_functions_tags_against_moto() {
    use aws_sdk_sfn::types::Tag;
    let moto = common::Moto::start().await;
    let sfn = aws_sdk_sfn::Client::new(&moto.sdk_config("test", "test", None).await);
    let definition = r#"{"StartAt": "P", "States": {"P": {"Type": "Pass", "End": true}}}"#;
    let mut arns = BTreeMap::new();
    for (name, team) in [
        ("data-sm", Some("data")),
        ("web-sm", Some("web")),
        ("plain", None),
    ] {
        let tags: Vec<Tag> = team
            .into_iter()
            .map(|t| Tag::builder().key("team").value(t).build())
            .chain([Tag::builder().key("env").value("prod").build()])
            .collect();
        let out = sfn
            .create_state_machine()
            .name(name)
            .definition(definition)
            .role_arn("arn:aws:iam::123456789012:role/sfn")
            .set_tags(Some(tags))
            .send()
            .await
            .unwrap();
        arns.insert(name, out.state_machine_arn().to_owned());
    }
    let mut config = common::config_for(&moto.endpoint, SFN);
    apply(
        &mut config,
        "sources:\n  sfn_map_runs:\n    tags:\n      export: [team, env]\n    state_machines:\n      names: [plain]\n      tags:\n        team: [data]\n",
    );
    config.sources.sfn_map_runs.tags.refresh = Some(Duration::from_millis(100));
    let mut served =
        common::Served::start(&config, "test", aws_workflow_exporter::web::Web::plain()).await;
    served.exporter.poll_once().await;
    let s = served.scrape().await;
    assert_promtool_clean(&s.text);
    let info = common_info(&s);
    assert_eq!(info.keys().collect::<Vec<_>>(), vec!["data-sm", "plain"]);
    assert_eq!(
        tag_labels(&info["data-sm"]),
        vec![("tag_env", "prod"), ("tag_team", "data")]
    );
    assert_eq!(tag_labels(&info["plain"]), vec![("tag_env", "prod")]);
    let reads = |s: &Scrape| {
        s.sum(
            "aws_workflow_exporter_api_requests_total",
            &[("service", "sfn"), ("operation", "ListTagsForResource")],
        )
    };
    // One read per state machine.
    assert_eq!(reads(&s), 3.0);

    sfn.tag_resource()
        .resource_arn(&arns["web-sm"])
        .tags(Tag::builder().key("team").value("data").build())
        .send()
        .await
        .unwrap();
    wait_until("the retagged state machine is selected", async || {
        served.exporter.poll_once().await;
        let info = common_info(&served.scrape().await);
        info.get("web-sm")
            .is_some_and(|l| l.get("tag_team").map(String::as_str) == Some("data"))
    })
    .await;
}

/// A denied ListTagsForResource degrades the poll (counted, logged) but the state machines are
/// still watched, their series without tag labels, and their map runs still read; once
/// allowed, the tags come at the next poll.
#[tokio::test]
async fn a_denied_tag_read_degrades_the_poll_and_nothing_else() {
    use aws_workflow_exporter::simulator::{Fault, FaultKind};
    let yaml = "sources:\n  sfn_map_runs:\n    tags:\n      export: [team]\n";
    let mut h = Harness::start(SFN, |c| apply(c, yaml)).await;
    {
        let mut w = h.world();
        let sm = w.sfn.add_state_machine("etl", unix_now() - 100.0);
        w.sfn.set_tags(&sm, &[("team", "data")]);
        w.sfn.start_execution(&sm, "nightly", unix_now() - 50.0);
        w.faults.push(Fault {
            service: "sfn",
            operation: "ListTagsForResource",
            body_contains: None,
            kind: FaultKind::AccessDenied,
            remaining: None,
        });
    }
    h.poll().await;
    let s = h.scrape().await;
    let success = |s: &Scrape| {
        s.value(
            "aws_workflow_exporter_poll_success",
            &[("source", "sfn_map_runs")],
        )
    };
    assert_eq!(success(&s), Some(0.0));
    let info = common_info(&s);
    assert!(tag_labels(&info["etl"]).is_empty());
    let c = h.take_calls();
    assert_eq!(calls(&c, "sfn", "ListTagsForResource"), 1, "{c:?}");
    assert!(calls(&c, "sfn", "ListExecutions") > 0, "{c:?}");

    h.world().faults.clear();
    h.poll().await;
    let s = h.scrape().await;
    assert_eq!(success(&s), Some(1.0));
    assert_eq!(
        tag_labels(&common_info(&s)["etl"]),
        vec![("tag_team", "data")]
    );
}
