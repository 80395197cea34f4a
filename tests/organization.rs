//! A target naming an organisation: the real binary lists the simulated organisation's ACTIVE
//! accounts, polls each through the role it assumes there, follows accounts joining and
//! leaving, keeps the last accounts when the listing fails, and degrades only the account whose
//! role cannot be assumed.

mod common;

use aws_workflow_exporter::simulator::{FaultKind, OrgAccount};
use common::{fault, Binary, FaultExt, Scrape};

fn account(id: &str, name: &str, status: &'static str) -> OrgAccount {
    OrgAccount {
        id: id.into(),
        name: name.into(),
        status,
    }
}

fn poll_success(s: &Scrape, account: &str) -> Option<f64> {
    s.value(
        "aws_workflow_exporter_poll_success",
        &[("source", "sfn_map_runs"), ("account_id", account)],
    )
}

fn accounts(s: &Scrape, state: &str) -> Option<f64> {
    s.value(
        "aws_workflow_exporter_organization_accounts",
        &[("organization", "org"), ("state", state)],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_accounts_are_polled_as_they_join_and_leave_and_a_denied_role_fails_alone() {
    let (sim, _) = common::one_open_run().await;
    {
        let mut w = sim.world();
        w.organization = vec![
            account("111111111111", "prod", "ACTIVE"),
            account("222222222222", "staging", "ACTIVE"),
            account("333333333333", "closed", "SUSPENDED"),
            account("555555555555", "sandbox-1", "ACTIVE"),
        ];
        // staging's role does not trust the exporter.
        w.faults
            .push(fault("sts", "AssumeRole", FaultKind::AccessDenied).matching("222222222222"));
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.yaml");
    let endpoint = &sim.endpoint;
    std::fs::write(
        &file,
        format!(
            "poll_interval: 1s\naws_api:\n  max_attempts: 1\n  quota_share: 1.0\ntargets:\n  - name: org\n    regions: [us-east-1]\n    endpoint_url: {endpoint}\n    sts_endpoint_url: {endpoint}\n    organization:\n      role_name: WorkflowExporter\n      account_name_regex: \"^(prod|staging|new)$\"\n      refresh: 1s\nsources:\n  sfn_map_runs:\n    enabled: true\n  transfer_workflows:\n    enabled: false\n  appflow_flows:\n    enabled: false\n"
        ),
    )
    .unwrap();
    let daemon = Binary::new().config_file(&file).lifecycle().start();

    let s = daemon
        .scrape_until("prod polled, staging failing", |s| {
            poll_success(s, "111111111111") == Some(1.0)
                && poll_success(s, "222222222222") == Some(0.0)
                && accounts(s, "failing") == Some(1.0)
        })
        .await;
    assert_eq!(accounts(&s, "discovered"), Some(2.0), "ACTIVE and selected");
    assert_eq!(accounts(&s, "polled"), Some(1.0));
    for excluded in ["333333333333", "555555555555"] {
        assert_eq!(poll_success(&s, excluded), None, "{excluded} is not polled");
    }
    assert!(
        s.count("aws_sfn_map_run_items", &[("account_id", "111111111111")]) > 0,
        "prod's map run is shown"
    );
    // Prod's role was assumed: its calls are signed with the simulator's session credentials.
    assert!(sim.world().calls.iter().any(|c| c.operation == "AssumeRole"
        && c.body
            .contains("arn%3Aaws%3Aiam%3A%3A111111111111%3Arole%2FWorkflowExporter")));

    // A new account joins; prod leaves.
    {
        let mut w = sim.world();
        w.organization
            .push(account("444444444444", "new", "ACTIVE"));
        w.organization.retain(|a| a.id != "111111111111");
    }
    daemon
        .scrape_until("new polled, prod gone", |s| {
            poll_success(s, "444444444444") == Some(1.0)
                && poll_success(s, "111111111111").is_none()
                && s.count("aws_sfn_map_run_items", &[("account_id", "111111111111")]) == 0
        })
        .await;

    // The listing fails: the accounts last listed stay polled.
    sim.world().faults.push(fault(
        "organizations",
        "ListAccounts",
        FaultKind::AccessDenied,
    ));
    let s = daemon
        .scrape_until("the failed listing is shown", |s| {
            s.value(
                "aws_workflow_exporter_organization_discovery_success",
                &[("organization", "org")],
            ) == Some(0.0)
        })
        .await;
    assert_eq!(poll_success(&s, "444444444444"), Some(1.0));
    assert_eq!(accounts(&s, "discovered"), Some(2.0));
}

/// Against moto: AWS Organizations lists the accounts, STS AssumeRole into each member account
/// gives credentials moto serves that account's own Step Functions with.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn against_moto_each_member_account_is_polled_with_its_own_state_machines() {
    use aws_sdk_organizations::types::OrganizationFeatureSet;
    let moto = common::Moto::start().await;
    let admin = moto.sdk_config("test", "test", None).await;
    let org = aws_sdk_organizations::Client::new(&admin);
    org.create_organization()
        .feature_set(OrganizationFeatureSet::All)
        .send()
        .await
        .unwrap();
    // An account with a state machine of its own, made with that account's credentials.
    let add_account = async |name: &str| -> String {
        let created = org
            .create_account()
            .account_name(name)
            .email(format!("{name}@example.com"))
            .send()
            .await
            .unwrap();
        let id = created
            .create_account_status()
            .and_then(|s| s.account_id())
            .unwrap()
            .to_owned();
        let sts = aws_sdk_sts::Client::new(&admin);
        let assumed = sts
            .assume_role()
            .role_arn(format!("arn:aws:iam::{id}:role/Setup"))
            .role_session_name("setup")
            .send()
            .await
            .unwrap();
        let c = assumed.credentials().unwrap();
        let member = moto
            .sdk_config(
                c.access_key_id(),
                c.secret_access_key(),
                Some(c.session_token().to_owned()),
            )
            .await;
        let definition = r#"{"StartAt": "Fan", "States": {"Fan": {"Type": "Map", "End": true,
            "ItemProcessor": {"ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
            "StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}}}}}"#;
        aws_sdk_sfn::Client::new(&member)
            .create_state_machine()
            .name(format!("etl-{name}"))
            .role_arn(format!("arn:aws:iam::{id}:role/sfn"))
            .definition(definition)
            .send()
            .await
            .unwrap();
        id
    };
    let prod = add_account("prod").await;
    let staging = add_account("staging").await;

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.yaml");
    let endpoint = &moto.endpoint;
    std::fs::write(
        &file,
        format!(
            "poll_interval: 1s\naws_api:\n  max_attempts: 1\n  quota_share: 1.0\ntargets:\n  - name: org\n    regions: [us-east-1]\n    endpoint_url: {endpoint}\n    sts_endpoint_url: {endpoint}\n    organization:\n      role_name: WorkflowExporter\n      refresh: 1s\nsources:\n  sfn_map_runs:\n    enabled: true\n  transfer_workflows:\n    enabled: false\n  appflow_flows:\n    enabled: false\n"
        ),
    )
    .unwrap();
    let daemon = Binary::new().config_file(&file).lifecycle().start();
    // Each account's own state machine is found there (its definition read), and none in the
    // management account, which has none.
    let definitions_read = |s: &Scrape, account: &str| {
        s.sum(
            "aws_workflow_exporter_api_requests_total",
            &[
                ("operation", "DescribeStateMachine"),
                ("outcome", "ok"),
                ("account_id", account),
            ],
        )
    };
    let s = daemon
        .scrape_until("both member accounts polled", |s| {
            [&prod, &staging]
                .iter()
                .all(|a| poll_success(s, a) == Some(1.0) && definitions_read(s, a) >= 1.0)
        })
        .await;
    assert_eq!(poll_success(&s, "123456789012"), Some(1.0));
    assert_eq!(definitions_read(&s, "123456789012"), 0.0);
    assert_eq!(accounts(&s, "discovered"), Some(3.0));

    // One joins, one leaves.
    let new = add_account("new").await;
    org.remove_account_from_organization()
        .account_id(&staging)
        .send()
        .await
        .unwrap();
    daemon
        .scrape_until("new polled, staging gone", |s| {
            poll_success(s, &new) == Some(1.0)
                && definitions_read(s, &new) >= 1.0
                && poll_success(s, &staging).is_none()
        })
        .await;
}

/// An organisation of more members than one credentials cache holds (64 providers): each
/// member keeps its own, so each role is assumed once, not again at nearly every call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_member_role_is_assumed_once_however_many_members() {
    const MEMBERS: usize = 70;
    let (sim, _) = common::one_open_run().await;
    {
        let mut w = sim.world();
        for i in 0..MEMBERS {
            let id = format!("7000000000{i:02}");
            w.organization
                .push(account(&id, &format!("member-{i}"), "ACTIVE"));
            w.accounts.insert(id, Default::default());
        }
    }
    let endpoint = &sim.endpoint;
    let daemon = Binary::new()
        .config(&format!(
            "poll_interval: 1s\ntargets:\n  - name: org\n    regions: [us-east-1]\n    endpoint_url: {endpoint}\n    organization:\n      role_name: WorkflowExporter\nsources:\n  transfer_workflows:\n    enabled: false\n  appflow_flows:\n    enabled: false\n"
        ))
        .start();
    let calls = (3 * MEMBERS) as f64;
    daemon
        .scrape_until("every member polled three times", |s| {
            s.count(
                "aws_workflow_exporter_poll_success",
                &[("source", "sfn_map_runs")],
            ) == MEMBERS
                && s.sum(
                    "aws_workflow_exporter_api_requests_total",
                    &[("operation", "ListStateMachines"), ("outcome", "ok")],
                ) >= calls
        })
        .await;
    assert_eq!(sim.world().count("sts", "AssumeRole"), MEMBERS);
}
