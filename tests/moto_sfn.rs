//! The Map Run source against moto, a real third-party Step Functions emulator that interprets
//! state machine definitions (executing mode): /metrics must report exactly what DescribeMapRun
//! says; and a target with a role polls with the credentials moto's STS issues for that role.

mod common;

use aws_sdk_sfn::config::Credentials;
use aws_sdk_sfn::types::{ExecutionStatus, MapRunStatus};
use aws_workflow_exporter::app::Exporter;
use aws_workflow_exporter::config::target::RoleConfig;
use aws_workflow_exporter::web::{self, Web};
use common::{assert_promtool_clean, config_for, credentials, http_get, wait_until, Moto, Scrape};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// moto in executing mode: it interprets definitions and creates map runs.
async fn start_moto() -> Moto {
    let moto = Moto::start().await;
    let addr = moto.addr;
    assert_eq!(http_get(addr, "/moto-api/", &[]).await.status, 200);
    // Executing mode: moto interprets definitions and creates map runs.
    let body = r#"{"stepfunctions":{"execute_state_machine":true}}"#;
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "POST /moto-api/config HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    tokio::io::AsyncWriteExt::write_all(&mut stream, req.as_bytes())
        .await
        .unwrap();
    let mut resp = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut resp)
        .await
        .unwrap();
    assert!(
        resp.starts_with(b"HTTP/1.1 20") || resp.starts_with(b"HTTP/1.0 20"),
        "moto config: {}",
        String::from_utf8_lossy(&resp)
    );
    moto
}

fn definition(item_processor_states: &str, start_at: &str, tolerance: &str) -> String {
    format!(
        r#"{{
  "StartAt": "Fan",
  "States": {{
    "Fan": {{
      "Type": "Map",
      "ItemsPath": "$.items",
      "MaxConcurrency": 4,
      {tolerance}
      "ItemProcessor": {{
        "ProcessorConfig": {{"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"}},
        "StartAt": "{start_at}",
        "States": {item_processor_states}
      }},
      "End": true
    }}
  }}
}}"#
    )
}

async fn sfn_client(endpoint: &str) -> aws_sdk_sfn::Client {
    let creds = credentials().unwrap();
    sfn_client_with(
        endpoint,
        Credentials::new(
            creds.access_key_id,
            creds.secret_access_key,
            None,
            None,
            "test",
        ),
    )
    .await
}

async fn sfn_client_with(endpoint: &str, credentials: Credentials) -> aws_sdk_sfn::Client {
    aws_sdk_sfn::Client::new(&sdk_config(endpoint, credentials).await)
}

async fn sdk_config(endpoint: &str, credentials: Credentials) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(credentials)
        .load()
        .await
}

async fn create_and_start(
    sfn: &aws_sdk_sfn::Client,
    name: &str,
    definition: String,
    items: &str,
) -> String {
    let sm = sfn
        .create_state_machine()
        .name(name)
        .definition(definition)
        .role_arn("arn:aws:iam::123456789012:role/sfn")
        .send()
        .await
        .unwrap();
    sfn.start_execution()
        .state_machine_arn(sm.state_machine_arn())
        .name(format!("{name}-exec"))
        .input(format!(r#"{{"items": {items}}}"#))
        .send()
        .await
        .unwrap()
        .execution_arn()
        .to_owned()
}

async fn execution_status(sfn: &aws_sdk_sfn::Client, arn: &str) -> ExecutionStatus {
    sfn.describe_execution()
        .execution_arn(arn)
        .send()
        .await
        .unwrap()
        .status()
        .clone()
}

async fn map_run_arns(sfn: &aws_sdk_sfn::Client, execution_arn: &str) -> Vec<String> {
    sfn.list_map_runs()
        .execution_arn(execution_arn)
        .send()
        .await
        .unwrap()
        .map_runs()
        .iter()
        .map(|r| r.map_run_arn().to_owned())
        .collect()
}

#[tokio::test]
async fn metrics_match_describe_map_run_in_moto() {
    let moto = start_moto().await;
    let sfn = sfn_client(&moto.endpoint).await;

    let succeed = r#"{"Done": {"Type": "Pass", "End": true}}"#;
    let fail_odd = r#"{
        "Check": {"Type": "Choice", "Choices": [{"Variable": "$.n", "NumericGreaterThan": 6, "Next": "Boom"}], "Default": "Ok"},
        "Boom": {"Type": "Fail", "Error": "ItemError", "Cause": "n too large"},
        "Ok": {"Type": "Pass", "End": true}
    }"#;
    let wait = r#"{"Slow": {"Type": "Wait", "Seconds": 600, "End": true}}"#;
    let items: String = format!(
        "[{}]",
        (1..=8)
            .map(|n| format!(r#"{{"n": {n}}}"#))
            .collect::<Vec<_>>()
            .join(",")
    );

    let ok = create_and_start(&sfn, "all-succeed", definition(succeed, "Done", ""), &items).await;
    let tolerant = create_and_start(
        &sfn,
        "tolerated-failures",
        definition(fail_odd, "Check", r#""ToleratedFailureCount": 3,"#),
        &items,
    )
    .await;
    let slow = create_and_start(
        &sfn,
        "long-running",
        definition(wait, "Slow", r#""ToleratedFailurePercentage": 25.0,"#),
        &items,
    )
    .await;

    for arn in [&ok, &tolerant] {
        wait_until("the execution finishes", || async {
            execution_status(&sfn, arn).await != ExecutionStatus::Running
        })
        .await;
    }
    wait_until("the long-running map run exists", || async {
        !map_run_arns(&sfn, &slow).await.is_empty()
    })
    .await;
    sfn.stop_execution()
        .execution_arn(&slow)
        .send()
        .await
        .unwrap();
    wait_until("the stopped execution is aborted", || async {
        execution_status(&sfn, &slow).await == ExecutionStatus::Aborted
    })
    .await;
    let slow_run = map_run_arns(&sfn, &slow).await.remove(0);
    wait_until("the stopped map run is terminal", || async {
        let d = sfn
            .describe_map_run()
            .map_run_arn(&slow_run)
            .send()
            .await
            .unwrap();
        *d.status() != MapRunStatus::Running
    })
    .await;

    let mut config = config_for(&moto.endpoint, &["sfn_map_runs"]);
    config.aws_api.max_attempts = 2;
    let scrape = poll_once_and_scrape(&config).await;
    assert_eq!(
        scrape.value(
            "aws_workflow_exporter_poll_success",
            &[("source", "sfn_map_runs")]
        ),
        Some(1.0),
        "{}",
        scrape.text
    );
    assert_promtool_clean(&scrape.text);

    let mut checked = 0;
    for (exec, sm) in [
        (&ok, "all-succeed"),
        (&tolerant, "tolerated-failures"),
        (&slow, "long-running"),
    ] {
        for run_arn in map_run_arns(&sfn, exec).await {
            let d = sfn
                .describe_map_run()
                .map_run_arn(&run_arn)
                .send()
                .await
                .unwrap();
            let id = run_arn.rsplit(':').next().unwrap();
            let run = [("state_machine", sm), ("map_run", id)];
            let with = |k: &'static str, v: &'static str| {
                let mut l = run.to_vec();
                l.push((k, v));
                l
            };
            let status = match d.status() {
                MapRunStatus::Succeeded => "succeeded",
                MapRunStatus::Failed => "failed",
                MapRunStatus::Aborted => "aborted",
                _ => "running",
            };
            assert_eq!(
                scrape.value("aws_sfn_map_run_status", &with("status", status)),
                Some(1.0),
                "{sm}: status {status}"
            );
            let items = d.item_counts().expect("itemCounts");
            let children = d.execution_counts().expect("executionCounts");
            for (label, item, child) in [
                ("pending", items.pending(), children.pending()),
                ("running", items.running(), children.running()),
                ("succeeded", items.succeeded(), children.succeeded()),
                ("failed", items.failed(), children.failed()),
                ("timed_out", items.timed_out(), children.timed_out()),
                ("aborted", items.aborted(), children.aborted()),
            ] {
                assert_eq!(
                    scrape.value("aws_sfn_map_run_items", &with("status", label)),
                    Some(item as f64),
                    "{sm}: items {label}"
                );
                assert_eq!(
                    scrape.value("aws_sfn_map_run_child_executions", &with("status", label)),
                    Some(child as f64),
                    "{sm}: children {label}"
                );
            }
            assert_eq!(
                scrape.value("aws_sfn_map_run_items_results_written", &run),
                Some(items.results_written() as f64)
            );
            assert_eq!(
                scrape.value("aws_sfn_map_run_max_concurrency", &run),
                Some(d.max_concurrency() as f64)
            );
            assert_eq!(
                scrape.value("aws_sfn_map_run_tolerated_failed_items", &run),
                Some(d.tolerated_failure_count() as f64)
            );
            let ratio = scrape
                .value("aws_sfn_map_run_tolerated_failure_ratio", &run)
                .unwrap();
            assert!(
                (ratio - f64::from(d.tolerated_failure_percentage()) / 100.0).abs() < 1e-6,
                "{sm}: ratio {ratio}"
            );
            assert_eq!(
                scrape.value("aws_sfn_map_run_start_timestamp_seconds", &run),
                Some(d.start_date().as_secs_f64())
            );
            assert_eq!(
                scrape.value("aws_sfn_map_run_stop_timestamp_seconds", &run),
                d.stop_date().map(|t| t.as_secs_f64())
            );
            assert_eq!(
                scrape.value("aws_sfn_map_run_redrives_total", &run),
                Some(f64::from(d.redrive_count().unwrap_or(0)))
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 3, "one map run per execution");
    // The scenario's shape, as moto ran it.
    assert_eq!(
        scrape.value(
            "aws_sfn_map_run_items",
            &[("state_machine", "all-succeed"), ("status", "succeeded")]
        ),
        Some(8.0)
    );
    assert_eq!(
        scrape.value(
            "aws_sfn_map_run_items",
            &[
                ("state_machine", "tolerated-failures"),
                ("status", "failed")
            ]
        ),
        Some(2.0)
    );
    assert_eq!(
        scrape.value(
            "aws_sfn_map_run_tolerated_failed_items",
            &[("state_machine", "tolerated-failures")]
        ),
        Some(3.0)
    );
    assert_eq!(
        scrape.value(
            "aws_sfn_map_run_tolerated_failure_ratio",
            &[("state_machine", "long-running")]
        ),
        Some(0.25)
    );
}

#[tokio::test]
async fn a_target_with_a_role_polls_with_the_assumed_credentials_in_moto() {
    let moto = start_moto().await;
    let role = "arn:aws:iam::111111111111:role/exporter";
    // moto attributes requests made with credentials it issued for a role to the role's account:
    // one state machine there, made with such credentials, and one in the base credentials' account.
    let base = credentials().unwrap();
    let sts = aws_sdk_sts::Client::new(
        &sdk_config(
            &moto.endpoint,
            Credentials::new(
                &base.access_key_id,
                &base.secret_access_key,
                None,
                None,
                "test",
            ),
        )
        .await,
    );
    let issued = sts
        .assume_role()
        .role_arn(role)
        .role_session_name("setup")
        .send()
        .await
        .unwrap()
        .credentials
        .expect("credentials");
    let in_role_account = sfn_client_with(
        &moto.endpoint,
        Credentials::new(
            issued.access_key_id,
            issued.secret_access_key,
            Some(issued.session_token),
            None,
            "assumed",
        ),
    )
    .await;
    let in_base_account = sfn_client(&moto.endpoint).await;
    let succeed = r#"{"Done": {"Type": "Pass", "End": true}}"#;
    let items = r#"[{"n": 1}, {"n": 2}, {"n": 3}]"#;
    for (sfn, name) in [
        (&in_role_account, "in-role-account"),
        (&in_base_account, "in-base-account"),
    ] {
        let exec = create_and_start(sfn, name, definition(succeed, "Done", ""), items).await;
        wait_until("the execution finishes", || async {
            execution_status(sfn, &exec).await != ExecutionStatus::Running
        })
        .await;
    }

    let mut config = config_for(&moto.endpoint, &["sfn_map_runs"]);
    config.targets[0].role = Some(RoleConfig {
        arn: role.into(),
        external_id: Some("exporter-external-id".into()),
        session_name: "aws-workflow-exporter".into(),
    });
    let scrape = poll_once_and_scrape(&config).await;
    assert_eq!(
        scrape.value(
            "aws_workflow_exporter_poll_success",
            &[("source", "sfn_map_runs"), ("account_id", "111111111111")]
        ),
        Some(1.0),
        "{}",
        scrape.text
    );
    assert_eq!(
        scrape.value(
            "aws_sfn_map_run_items",
            &[
                ("account_id", "111111111111"),
                ("state_machine", "in-role-account"),
                ("status", "succeeded")
            ]
        ),
        Some(3.0),
        "{}",
        scrape.text
    );
    assert_eq!(
        scrape.count(
            "aws_sfn_map_run_items",
            &[("state_machine", "in-base-account")]
        ),
        0,
        "the base credentials' account is not polled"
    );
}

/// Builds the exporter for `config`, serves it, polls once and returns what /metrics shows.
async fn poll_once_and_scrape(config: &aws_workflow_exporter::config::Config) -> Scrape {
    let mut exporter = Exporter::new(config, credentials());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (_tx, rx) = watch::channel(false);
    tokio::spawn(web::serve(
        vec![listener],
        std::sync::Arc::new(Web::plain()),
        exporter.http_state(),
        rx,
    ));
    exporter.poll_once().await;
    Scrape::parse(&String::from_utf8(http_get(addr, "/metrics", &[]).await.body).unwrap())
}
