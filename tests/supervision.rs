//! The scheduler's supervision: a source whose poll panics or never ends is stopped, counted
//! (`poll_success 0`, `source_restarts_total{reason}`), restarted after a backoff, and the
//! other sources and /metrics go on. The misbehaving sources are test sources behind the
//! `Source` trait (nothing in AWS makes a poll panic or hang forever); the scheduler, hub and
//! HTTP server are the real ones.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aws_workflow_exporter::aws::{AccountRegistry, Target};
use aws_workflow_exporter::config::target::TargetConfig;
use aws_workflow_exporter::config::targets::AwsApiConfig;
use aws_workflow_exporter::error::AwsError;
use aws_workflow_exporter::exposition::{MetricsHub, SelfMetrics, Snapshot};
use aws_workflow_exporter::scheduler::{run_source, Readiness};
use aws_workflow_exporter::services::source::{BoxFuture, Progress, Source};
use aws_workflow_exporter::shard::Shard;
use aws_workflow_exporter::web::{self, HttpState, Web};
use common::{http_get, Scrape};
use tokio::net::TcpListener;
use tokio::sync::watch;

#[derive(Clone, Copy)]
enum Behaviour {
    Healthy,
    /// Panics in every poll until the test releases it.
    Panics,
    /// Every poll never ends until the test releases it.
    Hangs,
}

/// A source that misbehaves until `released`: the test holds the failure open until it has
/// seen it served, so no scrape has to catch a window of a few hundred milliseconds.
struct TestSource {
    name: &'static str,
    target: Arc<Target>,
    behaviour: Behaviour,
    released: Arc<AtomicBool>,
    polls: Arc<AtomicU32>,
    /// Polls that panicked or hung (each must be one restart).
    failures: Arc<AtomicU32>,
}

impl Source for TestSource {
    fn name(&self) -> &'static str {
        self.name
    }

    fn target(&self) -> &Arc<Target> {
        &self.target
    }

    fn interval(&self) -> Duration {
        Duration::from_millis(100)
    }

    fn poll<'a>(
        &'a mut self,
        _errors: &'a mut Vec<AwsError>,
        _progress: &'a dyn Progress,
    ) -> BoxFuture<'a, Result<(), AwsError>> {
        let n = self.polls.fetch_add(1, Ordering::SeqCst);
        let fails =
            !matches!(self.behaviour, Behaviour::Healthy) && !self.released.load(Ordering::SeqCst);
        if fails {
            self.failures.fetch_add(1, Ordering::SeqCst);
        }
        let behaviour = self.behaviour;
        Box::pin(async move {
            match behaviour {
                Behaviour::Panics if fails => panic!("injected panic in poll {n}"),
                Behaviour::Hangs if fails => std::future::pending::<()>().await,
                _ => {}
            }
            Ok(())
        })
    }

    fn snapshot(&self, _now: f64) -> Snapshot {
        Snapshot::default()
    }
}

/// A target in its own region (one account and region is polled by one target only).
fn target(
    metrics: &Arc<SelfMetrics>,
    registry: &Arc<AccountRegistry>,
    region: &str,
) -> Arc<Target> {
    let config = TargetConfig {
        account_id: Some("123456789012".into()),
        ..TargetConfig::new(region, Some(region))
    };
    Arc::new(Target::new(
        config,
        AwsApiConfig::default(),
        Shard::SINGLE,
        None,
        metrics.clone(),
        registry.clone(),
    ))
}

#[tokio::test]
async fn a_panicking_or_hanging_poll_is_ended_counted_and_restarted() {
    let metrics = Arc::new(SelfMetrics::new());
    let registry = Arc::new(AccountRegistry::default());
    let hub = Arc::new(MetricsHub::new(metrics.clone()));
    let released = Arc::new(AtomicBool::new(false));
    let polls: Vec<Arc<AtomicU32>> = (0..3).map(|_| Arc::default()).collect();
    let failures: Vec<Arc<AtomicU32>> = (0..3).map(|_| Arc::default()).collect();
    let sources: Vec<Box<dyn Source>> = [
        ("sfn_map_runs", Behaviour::Panics, "us-east-1"),
        ("transfer_workflows", Behaviour::Hangs, "eu-west-1"),
        ("appflow_flows", Behaviour::Healthy, "ap-south-1"),
    ]
    .into_iter()
    .enumerate()
    .map(|(i, (name, behaviour, t))| {
        Box::new(TestSource {
            name,
            target: target(&metrics, &registry, t),
            behaviour,
            released: released.clone(),
            polls: polls[i].clone(),
            failures: failures[i].clone(),
        }) as Box<dyn Source>
    })
    .collect();
    let readiness = Arc::new(Readiness::new(&sources));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = watch::channel(false);
    tokio::spawn(web::serve(
        vec![listener],
        Arc::new(Web::plain()),
        HttpState {
            hub: hub.clone(),
            readiness: readiness.clone(),
        },
        rx.clone(),
    ));
    let deadline = Duration::from_millis(300);
    for source in sources {
        tokio::spawn(run_source(
            source,
            hub.clone(),
            readiness.clone(),
            rx.clone(),
            deadline,
        ));
    }

    let scrape = async || {
        Scrape::parse(&String::from_utf8(http_get(addr, "/metrics", &[]).await.body).unwrap())
    };
    let success =
        |s: &Scrape, source| s.value("aws_workflow_exporter_poll_success", &[("source", source)]);
    let restarts = |s: &Scrape, source, reason| {
        s.value(
            "aws_workflow_exporter_source_restarts_total",
            &[("source", source), ("reason", reason)],
        )
    };
    // Failing: both misbehaving sources are served as failed and restarted, at least twice
    // for the panicking one (the backoff grows), while the healthy one goes on.
    let s = common::wait_for(
        "the sources are served as failed and restarted",
        async || {
            let s = scrape().await;
            let failed = success(&s, "sfn_map_runs") == Some(0.0)
                && success(&s, "transfer_workflows") == Some(0.0)
                && restarts(&s, "sfn_map_runs", "panic") >= Some(2.0)
                && restarts(&s, "transfer_workflows", "deadline") >= Some(1.0);
            failed.then_some(s)
        },
    )
    .await;
    assert_eq!(success(&s, "appflow_flows"), Some(1.0), "{}", s.text);
    let healthy_polls = polls[2].load(Ordering::SeqCst);

    // Released: every source is served as succeeding again, each failed poll was one restart
    // of the right reason, and the healthy source was never restarted.
    released.store(true, Ordering::SeqCst);
    let s = common::wait_for("the sources recover", async || {
        let s = scrape().await;
        ["sfn_map_runs", "transfer_workflows", "appflow_flows"]
            .iter()
            .all(|src| success(&s, src) == Some(1.0))
            .then_some(s)
    })
    .await;
    let failed = |i: usize| Some(f64::from(failures[i].load(Ordering::SeqCst)));
    assert_eq!(
        restarts(&s, "sfn_map_runs", "panic"),
        failed(0),
        "{}",
        s.text
    );
    assert_eq!(restarts(&s, "transfer_workflows", "deadline"), failed(1));
    assert_eq!(restarts(&s, "appflow_flows", "panic"), None);
    assert_eq!(restarts(&s, "appflow_flows", "deadline"), None);
    assert!(polls[2].load(Ordering::SeqCst) > healthy_polls);
    assert_eq!(http_get(addr, "/readyz", &[]).await.status, 200);
    let _ = tx.send(true);
}

/// Publishes once, then holds its thread (a poll stuck in synchronous work, deaf to the stop
/// signal), publishes again and only then yields.
struct StuckSource {
    target: Arc<Target>,
    second_publish: Arc<AtomicBool>,
}

impl Source for StuckSource {
    fn name(&self) -> &'static str {
        "sfn_map_runs"
    }

    fn target(&self) -> &Arc<Target> {
        &self.target
    }

    fn interval(&self) -> Duration {
        Duration::from_secs(60)
    }

    fn poll<'a>(
        &'a mut self,
        _errors: &'a mut Vec<AwsError>,
        progress: &'a dyn Progress,
    ) -> BoxFuture<'a, Result<(), AwsError>> {
        Box::pin(async move {
            let snapshot = || Snapshot {
                families: vec![aws_workflow_exporter::exposition::Family {
                    def: &aws_workflow_exporter::exposition::self_metrics::TRACKED.def,
                    blocks: vec![bytes::Bytes::from_static(
                        b"aws_workflow_exporter_tracked_resources{kind=\"stuck\"} 1\n",
                    )],
                }],
                tracked: Vec::new(),
            };
            progress.publish(true, &mut || snapshot());
            // Stands for synchronous work that holds the thread longer than the supervisor's
            // grace before it aborts a stopping task (5 s). Not synchronisation: the test
            // waits on `second_publish`.
            std::thread::sleep(Duration::from_secs(7));
            progress.publish(true, &mut || snapshot());
            self.second_publish.store(true, Ordering::SeqCst);
            tokio::task::yield_now().await;
            Ok(())
        })
    }

    fn snapshot(&self, _now: f64) -> Snapshot {
        Snapshot::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_stopped_mid_poll_leaves_no_series_behind_even_if_aborted() {
    use aws_workflow_exporter::config::Config;
    use aws_workflow_exporter::reload::Supervisor;
    let metrics = Arc::new(SelfMetrics::new());
    let registry = Arc::new(AccountRegistry::default());
    let hub = Arc::new(MetricsHub::new(metrics.clone()));
    let second_publish = Arc::new(AtomicBool::new(false));
    let sources: Vec<Box<dyn Source>> = vec![Box::new(StuckSource {
        target: target(&metrics, &registry, "us-east-1"),
        second_publish: second_publish.clone(),
    })];
    let readiness = Arc::new(Readiness::new(&sources));
    let mut config = Config::defaults();
    config.sources.enable_only(&[]);
    let mut supervisor = Supervisor::start(
        config.clone(),
        None,
        registry,
        hub.clone(),
        readiness,
        sources,
    );
    let text = |hub: &MetricsHub| {
        let e = hub.flush();
        e.chunks
            .iter()
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect::<String>()
    };
    common::wait_until("the stuck source published", async || {
        text(&hub).contains("kind=\"stuck\"")
    })
    .await;
    // A reload without the source's target stops it: after the grace it is aborted, yet it
    // still publishes once more when its thread comes back.
    let summary = supervisor.apply(config).await;
    assert_eq!(summary.stopped, 1);
    common::wait_until("the stuck source came back", async || {
        second_publish.load(Ordering::SeqCst)
    })
    .await;
    assert!(
        !text(&hub).contains("kind=\"stuck\""),
        "a publish of the stopped source outlived its removal"
    );
}
