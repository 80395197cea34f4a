//! Configuration reload, end to end: the real binary polling the simulator, reloaded with SIGHUP
//! and `POST /-/reload` to enable a source, disable it, and refuse a broken file, while the
//! untouched source keeps its tracked runs and counters (no counter ever goes backwards).

mod common;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::Path;

use common::{unix_now, wait_until, Binary, Daemon, Scrape};

/// The exporter binary, and what this file's tests do with it.
struct Exporter(Daemon);

impl std::ops::Deref for Exporter {
    type Target = Daemon;
    fn deref(&self) -> &Daemon {
        &self.0
    }
}

impl Exporter {
    /// Scrapes until `pred` holds, checking every scrape's counters; returns the scrape.
    async fn wait_for(
        &self,
        counters: &RefCell<Counters>,
        what: &str,
        pred: impl Fn(&Scrape) -> bool,
    ) -> Scrape {
        let found = RefCell::new(None);
        wait_until(what, || async {
            let Some(s) = self.scrape().await else {
                return false;
            };
            counters.borrow_mut().check(&s);
            let ok = pred(&s);
            if ok {
                *found.borrow_mut() = Some(s);
            }
            ok
        })
        .await;
        found.into_inner().expect("a matching scrape")
    }

    /// `POST /-/reload` (or `PUT`): the status and the body.
    async fn post_reload(&self, method: &str) -> (u16, String) {
        let resp = self.request(method, "/-/reload").await.expect("an answer");
        (
            resp.status,
            String::from_utf8_lossy(&resp.body).into_owned(),
        )
    }
}

/// `(last_reload_successful, last_reload_success_timestamp_seconds)`.
fn reload_state(s: &Scrape) -> (f64, f64) {
    let get = |name: &str| s.value(name, &[]).unwrap_or(f64::NAN);
    (
        get("aws_workflow_exporter_config_last_reload_successful"),
        get("aws_workflow_exporter_config_last_reload_success_timestamp_seconds"),
    )
}

fn config(endpoint: &str, transfer: bool) -> String {
    format!(
        "poll_interval: 1s\naws_api:\n  max_attempts: 1\n  quota_share: 1.0\ntargets:\n  - name: sim\n    regions: [us-east-1]\n    endpoint_url: {endpoint}\nsources:\n  sfn_map_runs:\n    enabled: true\n  transfer_workflows:\n    enabled: {transfer}\n  appflow_flows:\n    enabled: false\n"
    )
}

fn start(config_file: &Path) -> Exporter {
    Exporter(Binary::new().config_file(config_file).lifecycle().start())
}

/// Every counter sample seen so far; [`Counters::check`] fails if one went backwards.
#[derive(Default)]
struct Counters(BTreeMap<String, f64>);

impl Counters {
    fn check(&mut self, s: &Scrape) {
        for sample in s.samples.iter().filter(|s| s.name.ends_with("_total")) {
            let key = format!("{}{:?}", sample.name, sample.labels);
            if let Some(before) = self.0.get(&key) {
                assert!(
                    sample.value >= *before,
                    "{key} went from {before} to {}",
                    sample.value
                );
            }
            self.0.insert(key, sample.value);
        }
    }
}

fn has_source(s: &Scrape, source: &str) -> bool {
    s.count("aws_workflow_exporter_poll_success", &[("source", source)]) > 0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_adds_and_removes_sources_refuses_bad_files_and_keeps_the_rest() {
    let (sim, run) = common::one_open_run().await;
    sim.world()
        .transfer
        .add_workflow("w-1234567890abcdef0", Some("intake"));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.yaml");
    let write = |transfer: bool| std::fs::write(&file, config(&sim.endpoint, transfer)).unwrap();
    write(false);
    let exporter = start(&file);
    let counters = RefCell::new(Counters::default());
    let finished = [("status", "succeeded")];
    let finished_once =
        |s: &Scrape| s.value("aws_sfn_map_runs_finished_total", &finished) == Some(1.0);
    let transfer_polls = |s: &Scrape| {
        s.value(
            "aws_workflow_exporter_poll_success",
            &[("source", "transfer_workflows")],
        ) == Some(1.0)
    };
    let transfer_gone = |s: &Scrape| {
        !has_source(s, "transfer_workflows")
            && !s
                .samples
                .iter()
                .any(|x| x.name.starts_with("aws_transfer_"))
    };

    // The Map Run is seen running, then finishing: counted once.
    exporter
        .wait_for(&counters, "the map run is tracked", |s| {
            s.count("aws_sfn_map_run_items", &[("map_run", "run1")]) > 0
        })
        .await;
    sim.world()
        .sfn
        .finish_map_run(&run, "SUCCEEDED", unix_now());
    let s = exporter
        .wait_for(&counters, "the finished map run is counted", finished_once)
        .await;
    let (ok, mut last_success) = reload_state(&s);
    assert_eq!(ok, 1.0, "1 at startup");
    assert!(transfer_gone(&s));

    // Enable transfer_workflows by SIGHUP, disable it by POST, enable by PUT, disable by SIGHUP.
    // Each time sfn keeps its state: a rebuilt sfn source would take run1 as a baseline, and its
    // counters would drop to 0 (caught by the counter check on every scrape).
    for (step, enable, how) in [
        (1, true, "SIGHUP"),
        (2, false, "POST"),
        (3, true, "PUT"),
        (4, false, "SIGHUP"),
    ] {
        write(enable);
        if how == "SIGHUP" {
            exporter.sighup();
        } else {
            let (status, body) = exporter.post_reload(how).await;
            assert_eq!(status, 200, "step {step}: {body}");
        }
        let s = if enable {
            exporter
                .wait_for(&counters, "transfer_workflows polls", transfer_polls)
                .await
        } else {
            exporter
                .wait_for(
                    &counters,
                    "transfer_workflows series are dropped",
                    transfer_gone,
                )
                .await
        };
        assert!(finished_once(&s), "step {step} ({how}): sfn kept its state");
        let (ok, at) = reload_state(&s);
        assert_eq!(ok, 1.0, "step {step}");
        assert!(at >= last_success, "step {step}");
        last_success = at;
    }

    // A broken file is refused by both, naming file, field and reason; nothing changes.
    std::fs::write(
        &file,
        config(&sim.endpoint, true).replace("poll_interval: 1s", "poll_interval: 0s"),
    )
    .unwrap();
    let (status, body) = exporter.post_reload("POST").await;
    assert_eq!(status, 500, "{body}");
    assert!(
        body.contains("config.yaml") && body.contains("poll_interval: must be at least 1s"),
        "{body}"
    );
    exporter.sighup();
    let before = exporter.scrape().await.unwrap();
    let sfn_calls = |s: &Scrape| {
        s.sum(
            "aws_workflow_exporter_api_requests_total",
            &[("service", "sfn")],
        )
    };
    let calls_before = sfn_calls(&before);
    let s = exporter
        .wait_for(
            &counters,
            "sfn keeps polling after the refused reloads",
            |s| sfn_calls(s) > calls_before,
        )
        .await;
    assert_eq!(reload_state(&s), (0.0, last_success));
    assert!(transfer_gone(&s), "the refused file enabled nothing");
    assert!(finished_once(&s));

    // Fixed: the next reload succeeds.
    write(false);
    let (status, body) = exporter.post_reload("POST").await;
    assert_eq!(status, 200, "{body}");
    let s = exporter.scrape().await.unwrap();
    counters.borrow_mut().check(&s);
    assert_eq!(reload_state(&s).0, 1.0);
    assert!(finished_once(&s));
}

/// A configuration of `targets`, each `(name, account_id)` in us-east-1 against `endpoint`,
/// polling Step Functions every `poll_interval`. An empty account id is learned from STS.
fn targets_config(endpoint: &str, poll_interval: &str, targets: &[(&str, &str)]) -> String {
    let mut text = format!(
        "poll_interval: {poll_interval}\naws_api:\n  max_attempts: 1\n  quota_share: 1.0\ntargets:\n"
    );
    for (name, account) in targets {
        text += &format!("  - name: {name}\n");
        if !account.is_empty() {
            text += &format!("    account_id: \"{account}\"\n");
        }
        text += &format!("    regions: [us-east-1]\n    endpoint_url: {endpoint}\n");
    }
    text + "sources:\n  sfn_map_runs:\n    enabled: true\n  transfer_workflows:\n    enabled: false\n  appflow_flows:\n    enabled: false\n"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renamed_target_takes_its_account_over_at_the_reload() {
    let (sim, _) = common::one_open_run().await;
    let account = aws_workflow_exporter::simulator::ACCOUNT_ID;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.yaml");
    let write = |name: &str| {
        std::fs::write(
            &file,
            targets_config(&sim.endpoint, "1s", &[(name, account)]),
        )
        .unwrap()
    };
    write("prod");
    let exporter = start(&file);
    let counters = RefCell::new(Counters::default());
    let run_shown = |s: &Scrape| s.count("aws_sfn_map_run_items", &[("map_run", "run1")]) > 0;
    exporter
        .wait_for(&counters, "the map run is shown", run_shown)
        .await;

    // Renamed, the target still reaches the same account and region: it must take them over
    // rather than be refused as a duplicate of the target the reload removes.
    write("production");
    let reloaded_at = unix_now();
    let (status, body) = exporter.post_reload("POST").await;
    assert_eq!(status, 200, "{body}");
    let last_success = |s: &Scrape| {
        s.value(
            "aws_workflow_exporter_last_poll_success_timestamp_seconds",
            &[("source", "sfn_map_runs"), ("account_id", account)],
        )
        .unwrap_or(0.0)
    };
    let s = exporter
        .wait_for(&counters, "the renamed target polls", |s| {
            last_success(s) > reloaded_at && run_shown(s)
        })
        .await;
    assert_eq!(
        s.value(
            "aws_workflow_exporter_poll_success",
            &[("source", "sfn_map_runs")]
        ),
        Some(1.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_a_refused_duplicate_keeps_the_polled_targets_self_metrics_and_a_removed_account_loses_its_call_series(
) {
    let (sim, _) = common::one_open_run().await;
    let account = aws_workflow_exporter::simulator::ACCOUNT_ID;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.yaml");
    // Polls are a minute apart: what a reload deletes stays deleted until the next one.
    let write = |targets: &[(&str, &str)]| {
        std::fs::write(&file, targets_config(&sim.endpoint, "60s", targets)).unwrap()
    };
    // The file cannot tell that `copy` reaches prod's account: it is refused once STS tells.
    write(&[("prod", account), ("copy", "")]);
    let exporter = start(&file);
    let counters = RefCell::new(Counters::default());
    let poll_success = |s: &Scrape| {
        s.value(
            "aws_workflow_exporter_poll_success",
            &[("account_id", account)],
        )
    };
    exporter
        .wait_for(&counters, "prod is polled", |s| {
            poll_success(s) == Some(1.0)
        })
        .await;
    exporter.wait_until_ready().await;

    write(&[("prod", account)]);
    let (status, body) = exporter.post_reload("POST").await;
    assert_eq!(status, 200, "{body}");
    let s = exporter.scrape().await.unwrap();
    counters.borrow_mut().check(&s);
    assert_eq!(poll_success(&s), Some(1.0), "prod's self-metrics stay");
    assert!(s
        .value(
            "aws_workflow_exporter_last_poll_success_timestamp_seconds",
            &[("account_id", account)]
        )
        .is_some());
    assert!(s.count("aws_sfn_map_run_items", &[("map_run", "run1")]) > 0);
    let calls = |s: &Scrape, account: &str| {
        s.count(
            "aws_workflow_exporter_api_requests_total",
            &[("account_id", account)],
        )
    };
    assert!(calls(&s, account) > 0);

    // Another account replaces it: the first account's call series go, the new one's start.
    write(&[("other", "111111111111")]);
    let (status, body) = exporter.post_reload("POST").await;
    assert_eq!(status, 200, "{body}");
    let s = exporter.scrape().await.unwrap();
    assert_eq!(calls(&s, account), 0, "no target polls {account}");
    assert!(calls(&s, "111111111111") > 0);
    assert_eq!(poll_success(&s), None);
}
