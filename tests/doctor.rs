//! `aws-workflow-exporter doctor`, the real binary against the simulator: a denied action fails
//! the run (exit 1) and is named with its AWS error code and the policy statement to add while
//! every other check passes; with nothing denied it exits 0; `--output json` follows
//! docs/doctor.schema.json; a bad configuration exits 2 with the usual error.

mod common;

use std::process::Output;

use aws_workflow_exporter::simulator::{demo, Fault, FaultKind, OrgAccount, Simulator};
use common::{fault, Binary, FaultExt};
use serde_json::Value;

const DENIED: &str = "appflow:ListFlows";

/// The simulator with the demo's resources, denying `denied` (IAM actions) and `faults`.
async fn simulator(denied: &str, faults: Vec<Fault>) -> Simulator {
    let sim = Simulator::start().await.expect("simulator");
    {
        let mut world = sim.world();
        demo::seed(&mut world);
        world
            .faults
            .extend(demo::denials(denied).expect("known actions"));
        world.faults.extend(faults);
    }
    sim
}

/// Runs `doctor` with `config` (YAML) and `args`, in a clean environment with static keys.
fn doctor(config: &str, args: &[&str]) -> Output {
    doctor_with_env(config, args, &[])
}

/// [`doctor`] with `env` added to the environment.
fn doctor_with_env(config: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    Binary::new()
        .arg("doctor")
        .config(config)
        .args(args)
        .envs(env)
        .run()
}

/// One target at the simulator, STS included; `extra` is appended to the file.
fn config(sim: &Simulator, extra: &str) -> String {
    format!(
        "targets:\n  - name: sim\n    regions: [us-east-1]\n    endpoint_url: {0}\n    sts_endpoint_url: {0}\n{extra}",
        sim.endpoint
    )
}

fn json(out: &Output) -> Value {
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}):\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    common::validate_json_schema("docs/doctor.schema.json", &doc)
        .unwrap_or_else(|e| panic!("{e}\n{doc:#}"));
    doc
}

/// Every check of every target, (check, status).
fn checks(doc: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for t in doc["targets"].as_array().unwrap() {
        let lists = std::iter::once(&t["checks"]).chain(
            t["sources"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| &s["checks"]),
        );
        for c in lists.flat_map(|l| l.as_array().unwrap()) {
            out.push((
                c["check"].as_str().unwrap().to_owned(),
                c["status"].as_str().unwrap().to_owned(),
            ));
        }
    }
    out
}

fn source<'a>(target: &'a Value, name: &str) -> &'a Value {
    target["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["source"] == name)
        .unwrap_or_else(|| panic!("no {name} in {target:#}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_action_fails_the_run_and_is_named_with_its_fix() {
    let sim = simulator(DENIED, vec![]).await;
    let config = config(&sim, "");

    let out = doctor(&config, &[]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{table}");
    let line = |action: &str| {
        table
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some(action))
            .unwrap_or_else(|| panic!("no line for {action}:\n{table}"))
            .to_owned()
    };
    let denied = line(DENIED);
    assert!(denied.trim_start().starts_with("DENIED"), "{denied}");
    assert!(denied.contains("AccessDeniedException"), "{denied}");
    assert!(
        table.contains("fix: allow appflow:ListFlows on \"*\": add statement \"DiscoverResources\" of deploy/iam/policy.json"),
        "{table}"
    );
    assert!(line("appflow:DescribeFlowExecutionRecords")
        .trim_start()
        .starts_with("skipped"));
    // Every other action the enabled sources need was called and passed.
    for op in aws_workflow_exporter::services::operations() {
        let Some(action) = op.iam_action else {
            continue;
        };
        if action.starts_with("appflow:") {
            continue;
        }
        assert!(
            line(action).trim_start().starts_with("ok "),
            "{action}:\n{table}"
        );
    }
    assert!(line("sts:GetCallerIdentity").contains("123456789012"));
    assert!(table.contains("RESULT: 1 check(s) failed (exit 1): sim/us-east-1: appflow:ListFlows"));

    let out = doctor(&config, &["--output", "json"]);
    assert_eq!(out.status.code(), Some(1));
    let doc = json(&out);
    assert_eq!(doc["ok"], false);
    assert_eq!(
        doc["failed"],
        serde_json::json!(["sim/us-east-1: appflow:ListFlows"])
    );
    let target = &doc["targets"][0];
    assert_eq!(target["account_id"], "123456789012");
    assert_eq!(target["region"], "us-east-1");
    assert_eq!(target["region_source"], "configuration");
    let appflow = source(target, "appflow_flows");
    let check = &appflow["checks"][0];
    assert_eq!(check["check"], DENIED);
    assert_eq!(check["status"], "denied");
    assert_eq!(check["code"], "AccessDeniedException");
    assert!(check["fix"]
        .as_str()
        .unwrap()
        .contains("deploy/iam/policy.json"));
    let failing: Vec<_> = checks(&doc)
        .into_iter()
        .filter(|(_, status)| status != "ok")
        .collect();
    assert_eq!(
        failing,
        [
            (DENIED.to_owned(), "denied".to_owned()),
            (
                "appflow:DescribeFlowExecutionRecords".to_owned(),
                "skipped".to_owned()
            )
        ]
    );
    let sfn = source(target, "sfn_map_runs");
    assert_eq!(sfn["watched"][0]["kind"], "state machine");
    assert!(sfn["watched"][0]["watched"].as_u64() > Some(0), "{sfn:#}");
    let list = &sfn["api_calls"][0];
    assert_eq!(list["operation"], "ListStateMachines");
    // One page every discovery_interval (by default 5 polls of 60 s); half (quota_share 0.5) of
    // AWS's 5 per second.
    assert_eq!(list["calls_per_hour"], 12.0);
    assert_eq!(list["share_per_hour"], 9000.0);

    // Read-only: nothing but List, Describe and Get was sent.
    let calls = sim.world().call_counts();
    assert!(calls.contains_key(&("appflow".into(), "ListFlows".into())));
    for (service, operation) in calls.keys() {
        assert!(
            ["List", "Describe", "Get"]
                .iter()
                .any(|p| operation.starts_with(p)),
            "{service}:{operation}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_nothing_denied_it_exits_zero_and_counts_what_filters_exclude() {
    let sim = simulator("", vec![]).await;
    let extra = format!(
        "  - name: role\n    regions: [us-west-2]\n    endpoint_url: {0}\n    sts_endpoint_url: {0}\n    role_arn: arn:aws:iam::123456789012:role/exporter\n\
         sources:\n  sfn_map_runs:\n    state_machines:\n      names: [image-resize]\n",
        sim.endpoint
    );
    let out = doctor(&config(&sim, &extra), &["--output", "json"]);
    let doc = json(&out);
    assert_eq!(out.status.code(), Some(0), "{doc:#}");
    assert_eq!(doc["ok"], true);
    assert!(doc["failed"].as_array().unwrap().is_empty());
    let all = checks(&doc);
    assert!(all.iter().all(|(_, status)| status == "ok"), "{all:?}");
    // Every IAM action of every source, on both targets.
    for op in aws_workflow_exporter::services::operations() {
        if let Some(action) = op.iam_action {
            assert_eq!(
                all.iter().filter(|(c, _)| c == action).count(),
                2,
                "{action}"
            );
        }
    }
    let role = &doc["targets"][1];
    assert_eq!(role["target"], "role/us-west-2");
    assert_eq!(role["checks"][0]["check"], "sts:AssumeRole");
    assert!(role["checks"][0]["detail"]
        .as_str()
        .unwrap()
        .contains("role/exporter"));
    // The role's credentials (the simulator hands out ASIASIMULATOR) signed its calls.
    let signed_as_role = |operation: &str| {
        sim.world()
            .calls
            .iter()
            .any(|c| c.operation == operation && c.access_key == "ASIASIMULATOR")
    };
    assert!(signed_as_role("GetCallerIdentity") && signed_as_role("ListFlows"));
    let watched = &source(&doc["targets"][0], "sfn_map_runs")["watched"][0];
    assert_eq!(watched["listed"], 3, "{watched:#}");
    assert_eq!(watched["watched"], 1, "{watched:#}");
    assert_eq!(
        watched["excluded"],
        serde_json::json!([{"reason": "by the state_machines filter", "count": 2}])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_that_cannot_be_assumed_is_named_and_nothing_else_is_tried() {
    let deny_assume = fault("sts", "AssumeRole", FaultKind::AccessDenied);
    let sim = simulator("", vec![deny_assume]).await;
    let config = format!(
        "targets:\n  - name: role\n    regions: [us-east-1]\n    endpoint_url: {0}\n    sts_endpoint_url: {0}\n    role_arn: arn:aws:iam::123456789012:role/exporter\n",
        sim.endpoint
    );
    let out = doctor(&config, &[]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{table}");
    let line = table
        .lines()
        .find(|l| l.contains("sts:AssumeRole"))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(line.trim_start().starts_with("ERROR"), "{line}");
    assert!(
        line.contains("arn:aws:iam::123456789012:role/exporter") && line.contains("AccessDenied"),
        "{line}"
    );
    assert!(table.contains("trust policy"), "{table}");
    assert_eq!(sim.world().count("sfn", "ListStateMachines"), 0);
}

#[test]
fn a_bad_configuration_exits_two_with_the_config_error() {
    let out = Binary::new()
        .in_repo()
        .args(["doctor", "--config.file", "tests/config/bad/bad-regex.yaml"])
        .run();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("tests/config/bad/bad-regex.yaml")
            && stderr.contains("sources.sfn_map_runs.state_machines.name_regex"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
}

/// Against moto, a third-party emulator of STS and Step Functions: the identity and the Map
/// Run source's checks pass over their real wire protocols.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn against_moto_the_identity_and_step_functions_checks_pass() {
    let moto = common::Moto::start().await;
    let endpoint = &moto.endpoint;
    let sdk = moto.sdk_config("test", "test", None).await;
    let sfn = aws_sdk_sfn::Client::new(&sdk);
    let distributed = r#"{"StartAt": "Fan", "States": {"Fan": {"Type": "Map", "End": true,
        "ItemProcessor": {"ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
        "StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}}}}}"#;
    let plain = r#"{"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}}"#;
    let role = "arn:aws:iam::123456789012:role/sfn";
    for (name, definition) in [("ingest", distributed), ("plain", plain)] {
        let create = sfn.create_state_machine().name(name).role_arn(role);
        create.definition(definition).send().await.unwrap();
    }
    let config = format!(
        "targets:\n  - name: moto\n    regions: [us-east-1]\n    endpoint_url: {endpoint}\n    sts_endpoint_url: {endpoint}\n\
         sources:\n  transfer_workflows: {{enabled: false}}\n  appflow_flows: {{enabled: false}}\n"
    );
    let out = doctor(&config, &["--output", "json"]);
    let doc = json(&out);
    // moto does not implement ListStateMachineVersions (it answers HTTP 500): the one failure.
    assert_eq!(out.status.code(), Some(1), "{doc:#}");
    assert_eq!(
        doc["failed"],
        serde_json::json!(["moto/us-east-1: states:ListStateMachineVersions"]),
        "{doc:#}"
    );
    let target = &doc["targets"][0];
    assert_eq!(target["account_id"], "123456789012");
    let sfn = source(target, "sfn_map_runs");
    let watched = &sfn["watched"][0];
    assert_eq!(
        (&watched["listed"], &watched["watched"]),
        (&2.into(), &1.into())
    );
    assert_eq!(
        watched["excluded"],
        serde_json::json!([{"reason": "without a Distributed Map", "count": 1}])
    );
    let statuses: Vec<_> = checks(&doc);
    assert!(
        statuses.contains(&("states:ListExecutions".into(), "ok".into())),
        "{statuses:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_region_says_where_it_came_from_and_a_missing_one_fails() {
    let sim = simulator("", vec![]).await;
    let config = format!(
        "targets:\n  - name: sim\n    endpoint_url: {0}\n    sts_endpoint_url: {0}\n",
        sim.endpoint
    );
    let json_output = ["--output", "json"];
    let env = [("AWS_REGION", "eu-west-1")];
    let out = doctor_with_env(&config, &json_output, &env);
    let doc = json(&out);
    assert_eq!(out.status.code(), Some(0), "{doc:#}");
    let target = &doc["targets"][0];
    assert_eq!(target["region"], "eu-west-1");
    assert_eq!(target["region_source"], "environment");
    assert_eq!(target["region_setting"], "AWS_REGION");

    let out = doctor(&config, &json_output);
    let doc = json(&out);
    assert_eq!(out.status.code(), Some(1), "{doc:#}");
    assert_eq!(doc["failed"], serde_json::json!(["sim/default: region"]));
    let check = &doc["targets"][0]["checks"][0];
    assert_eq!(check["status"], "error");
    assert!(check["detail"].as_str().unwrap().contains("no AWS region"));
    assert!(check["fix"].as_str().unwrap().contains("AWS_REGION"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_target_on_the_same_account_and_region_fails() {
    let sim = simulator("", vec![]).await;
    // The file cannot tell (one names its account, the other learns it from STS).
    let extra = format!(
        "  - name: again\n    regions: [us-east-1]\n    endpoint_url: {0}\n    sts_endpoint_url: {0}\n    account_id: '123456789012'\n",
        sim.endpoint
    );
    let out = doctor(&config(&sim, &extra), &["--output", "json"]);
    let doc = json(&out);
    assert_eq!(out.status.code(), Some(1), "{doc:#}");
    // The later target in the file is the one refused, whichever STS answer came first.
    assert_eq!(
        doc["failed"],
        serde_json::json!(["again/us-east-1: unique account and region"])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_checks_with_its_part_of_the_budget_and_bad_shard_flags_exit_two() {
    let sim = simulator("", vec![]).await;
    let config = config(&sim, "");
    let sharded = ["--output", "json", "--shard", "1", "--total-shards", "2"];
    let out = doctor(&config, &sharded);
    let doc = json(&out);
    assert_eq!(out.status.code(), Some(0), "{doc:#}");
    let sfn = source(&doc["targets"][0], "sfn_map_runs");
    // Half of quota_share 0.5 of ListStateMachines' 5 calls a second.
    assert_eq!(sfn["api_calls"][0]["share_per_hour"], 4500.0);

    let out = doctor(&config, &["--shard", "2", "--total-shards", "2"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("shard"));
}

/// Each action is checked by a call of its own: denying any one of them fails the run, naming
/// exactly that action with AWS's error code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denying_any_one_action_fails_the_run_on_that_action_only() {
    for (action, _, _) in demo::DENIABLE {
        let sim = simulator(action, vec![]).await;
        let out = doctor(&config(&sim, ""), &["--output", "json"]);
        let doc = json(&out);
        assert_eq!(out.status.code(), Some(1), "{action}: {doc:#}");
        assert_eq!(
            doc["failed"],
            serde_json::json!([format!("sim/us-east-1: {action}")]),
            "{doc:#}"
        );
        let denied: Vec<_> = checks(&doc)
            .into_iter()
            .filter(|(_, status)| status == "denied")
            .collect();
        assert_eq!(denied, [(action.to_string(), "denied".to_string())]);
    }
}

/// A selection by tag is counted as a poll selects: doctor reads the tags of the resources only
/// their tags can select (the demo tags each resource with its team).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_selection_by_tag_is_counted_with_the_tags() {
    let sim = simulator("", vec![]).await;
    let extra = "sources:\n  sfn_map_runs:\n    state_machines:\n      tags:\n        team: [data]\n  transfer_workflows:\n    workflows:\n      tags:\n        team: [data, media]\n";
    let out = doctor(&config(&sim, extra), &["--output", "json"]);
    let doc = json(&out);
    assert_eq!(out.status.code(), Some(0), "{doc:#}");
    let target = &doc["targets"][0];
    let sfn = &source(target, "sfn_map_runs")["watched"][0];
    assert_eq!(
        (&sfn["listed"], &sfn["watched"]),
        (&3.into(), &1.into()),
        "{sfn:#}"
    );
    let transfer = &source(target, "transfer_workflows")["watched"][0];
    assert_eq!(
        (&transfer["listed"], &transfer["watched"]),
        (&3.into(), &2.into()),
        "{transfer:#}"
    );
}

/// An organisation of four accounts (one SUSPENDED, one left out by the name filter), listed
/// through the simulator's AWS Organizations, with staging's role denying the exporter.
async fn organization(faults: Vec<Fault>) -> (Simulator, String) {
    let sim = simulator("", faults).await;
    sim.world().organization = [
        ("111111111111", "prod", "ACTIVE"),
        ("222222222222", "staging", "ACTIVE"),
        ("333333333333", "closed", "SUSPENDED"),
        ("444444444444", "sandbox", "ACTIVE"),
    ]
    .into_iter()
    .map(|(id, name, status)| OrgAccount {
        id: id.into(),
        name: name.into(),
        status,
    })
    .collect();
    // The members' own resources: none, but their roles hand out their own credentials.
    for id in ["111111111111", "222222222222"] {
        sim.world().accounts.insert(id.into(), Default::default());
    }
    let config = format!(
        "targets:\n  - name: org\n    regions: [us-east-1]\n    endpoint_url: {0}\n    sts_endpoint_url: {0}\n    organization:\n      role_name: WorkflowExporter\n      account_name_regex: \"^(prod|staging|closed)$\"\n",
        sim.endpoint
    );
    (sim, config)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_organisation_is_listed_and_each_selected_member_is_checked_through_its_role() {
    let deny_staging = fault("sts", "AssumeRole", FaultKind::AccessDenied).matching("222222222222");
    let (sim, config) = organization(vec![deny_staging]).await;
    let out = doctor(&config, &["--output", "json"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let doc = json(&out);
    let org = &doc["organizations"][0];
    assert_eq!(org["organization"], "org");
    assert_eq!(org["accounts_listed"], 3, "ACTIVE accounts only: {org:#}");
    assert_eq!(org["accounts_selected"], 2, "{org:#}");
    assert_eq!(org["checks"][0]["check"], "organizations:ListAccounts");
    assert_eq!(org["checks"][0]["status"], "ok");

    let targets: Vec<&str> = doc["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["target"].as_str().unwrap())
        .collect();
    assert_eq!(
        targets,
        ["org/111111111111/us-east-1", "org/222222222222/us-east-1"]
    );
    let prod = &doc["targets"][0];
    assert_eq!(
        prod["role_arn"],
        "arn:aws:iam::111111111111:role/WorkflowExporter"
    );
    assert_eq!(prod["account_id"], "111111111111");
    assert_eq!(
        source(prod, "sfn_map_runs")["checks"][0]["status"],
        "ok",
        "{prod:#}"
    );
    // Only staging's role fails, and nothing is tried there after it.
    assert_eq!(
        doc["failed"],
        serde_json::json!(["org/222222222222/us-east-1: sts:AssumeRole"])
    );
    assert!(doc["targets"][1]["sources"].as_array().unwrap().is_empty());
    assert_eq!(sim.world().count("organizations", "ListAccounts"), 1);

    let table = doctor(&config, &[]);
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(table.starts_with("ORGANIZATION org\n"), "{table}");
    assert!(
        table.contains("accounts 3 ACTIVE listed, 2 selected"),
        "{table}"
    );
    assert!(
        table.contains("TARGET org/111111111111/us-east-1"),
        "{table}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_organisation_that_cannot_be_listed_fails_with_where_to_list_it_from() {
    let deny = fault("organizations", "ListAccounts", FaultKind::AccessDenied);
    let (sim, config) = organization(vec![deny]).await;
    let out = doctor(&config, &["--output", "json"]);
    assert_eq!(out.status.code(), Some(1));
    let doc = json(&out);
    assert_eq!(
        doc["failed"],
        serde_json::json!(["org: organizations:ListAccounts"])
    );
    let check = &doc["organizations"][0]["checks"][0];
    assert_eq!(check["status"], "denied", "{check:#}");
    let fix = check["fix"].as_str().unwrap();
    assert!(
        fix.contains("management account") && fix.contains("organization-policy.json"),
        "{fix}"
    );
    assert!(doc["organizations"][0]["accounts_listed"].is_null());
    assert!(doc["targets"].as_array().unwrap().is_empty());
    assert_eq!(sim.world().count("sts", "AssumeRole"), 0);
}
