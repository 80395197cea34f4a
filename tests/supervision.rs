//! The scheduler's supervision: a source whose poll panics or never ends is stopped, counted
//! (`poll_success 0`, `source_restarts_total{reason}`), restarted after a backoff, and the
//! other sources and /metrics go on. The misbehaving sources are test sources behind the
//! `Source` trait (nothing in AWS makes a poll panic or hang forever); the scheduler, hub and
//! HTTP server are the real ones.

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
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
    /// Panics in its first polls, then recovers.
    PanicsTwice,
    /// Its first poll never ends.
    HangsOnce,
}

struct TestSource {
    name: &'static str,
    target: Arc<Target>,
    behaviour: Behaviour,
    polls: Arc<AtomicU32>,
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
        let behaviour = self.behaviour;
        Box::pin(async move {
            match behaviour {
                Behaviour::PanicsTwice if n < 2 => panic!("injected panic in poll {n}"),
                Behaviour::HangsOnce if n == 0 => std::future::pending::<()>().await,
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
    let counters: Vec<Arc<AtomicU32>> = (0..3).map(|_| Arc::default()).collect();
    let sources: Vec<Box<dyn Source>> = [
        ("sfn_map_runs", Behaviour::PanicsTwice, "us-east-1"),
        ("transfer_workflows", Behaviour::HangsOnce, "eu-west-1"),
        ("appflow_flows", Behaviour::Healthy, "ap-south-1"),
    ]
    .into_iter()
    .zip(&counters)
    .map(|((name, behaviour, t), polls)| {
        Box::new(TestSource {
            name,
            target: target(&metrics, &registry, t),
            behaviour,
            polls: polls.clone(),
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

    let value = |s: &Scrape, name: &str, labels: &[(&str, &str)]| s.value(name, labels);
    let mut saw_failure = [false; 2];
    let s = common::wait_for("the sources fail and recover", async || {
        let s =
            Scrape::parse(&String::from_utf8(http_get(addr, "/metrics", &[]).await.body).unwrap());
        let success = |source| {
            value(
                &s,
                "aws_workflow_exporter_poll_success",
                &[("source", source)],
            )
        };
        for (i, source) in ["sfn_map_runs", "transfer_workflows"].iter().enumerate() {
            saw_failure[i] |= success(source) == Some(0.0);
        }
        let recovered = ["sfn_map_runs", "transfer_workflows", "appflow_flows"]
            .iter()
            .all(|src| success(src) == Some(1.0));
        (recovered && saw_failure == [true, true]).then_some(s)
    })
    .await;
    let restarts = |source, reason| {
        value(
            &s,
            "aws_workflow_exporter_source_restarts_total",
            &[("source", source), ("reason", reason)],
        )
    };
    assert_eq!(restarts("sfn_map_runs", "panic"), Some(2.0), "{}", s.text);
    assert_eq!(restarts("transfer_workflows", "deadline"), Some(1.0));
    assert_eq!(restarts("appflow_flows", "panic"), None);
    // The healthy source kept polling every interval throughout; the others were restarted.
    assert!(counters[2].load(Ordering::SeqCst) >= 5);
    assert!(counters[0].load(Ordering::SeqCst) >= 3);
    assert!(counters[1].load(Ordering::SeqCst) >= 2);
    assert_eq!(http_get(addr, "/readyz", &[]).await.status, 200);
    let _ = tx.send(true);
}

/// Publishes once, then holds its thread (a poll stuck in synchronous work, deaf to the stop
/// signal), publishes again and only then yields.
struct StuckSource {
    target: Arc<Target>,
    second_publish: Arc<std::sync::atomic::AtomicBool>,
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
    let second_publish = Arc::new(std::sync::atomic::AtomicBool::new(false));
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
