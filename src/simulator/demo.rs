//! `aws-workflow-exporter demo`: the simulator with a scenario that keeps evolving, and the
//! exporter polling it, so dashboards and alerts can be seen without an AWS account.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::sfn::MapRunSpec;
use super::{unix_now, Fault, FaultKind, Simulator, World, REGION};
use crate::app::Exporter;
use crate::aws::StaticCredentials;
use crate::config::target::TargetConfig;
use crate::config::Config;

/// The running demo: keep it alive as long as the exporter serves.
pub struct Demo {
    pub endpoint: String,
    pub exporter: Exporter,
    _simulator: Simulator,
}

/// How one demo state machine behaves; each runs one execution with one map run at a time.
struct Pipeline {
    state_machine: &'static str,
    map_state: &'static str,
    total_items: i64,
    items_per_step: i64,
    /// Failed items per step while `steps_done < failing_steps`.
    failures_per_step: i64,
    failing_steps: i64,
    tolerated_failure_percentage: f64,
    max_concurrency: i64,
    /// Redrive a failed run this many steps after it fails (0: never).
    redrive_after: i64,
}

const PIPELINES: &[Pipeline] = &[
    // Healthy: a few failures, well within tolerance.
    Pipeline {
        state_machine: "orders-etl",
        map_state: "ProcessOrders",
        total_items: 300,
        items_per_step: 30,
        failures_per_step: 1,
        failing_steps: 4,
        tolerated_failure_percentage: 5.0,
        max_concurrency: 50,
        redrive_after: 0,
    },
    // Close to its threshold for a long time: 9% failed against 10% tolerated (warning alert).
    Pipeline {
        state_machine: "image-resize",
        map_state: "ResizeImages",
        total_items: 400,
        items_per_step: 10,
        failures_per_step: 6,
        failing_steps: 6,
        tolerated_failure_percentage: 10.0,
        max_concurrency: 20,
        redrive_after: 0,
    },
    // Breaches its threshold and fails; redriven a few steps later, then succeeds.
    Pipeline {
        state_machine: "invoice-export",
        map_state: "ExportInvoices",
        total_items: 200,
        items_per_step: 25,
        failures_per_step: 8,
        failing_steps: 8,
        tolerated_failure_percentage: 10.0,
        max_concurrency: 0,
        redrive_after: 3,
    },
];

#[derive(Debug, Default)]
struct PipelineState {
    generation: u64,
    execution: Option<String>,
    map_run: Option<String>,
    steps_done: i64,
    failed_at_step: Option<u64>,
    redriven: bool,
}

/// How one demo Transfer Family workflow behaves: its steps, and every `fail_every`-th execution
/// failing one of them and running the OnExceptionSteps.
struct TransferFlow {
    workflow_id: &'static str,
    description: &'static str,
    steps: &'static [&'static str],
    /// 0: never fails.
    fail_every: u64,
    /// (step index, error type) of the failing step.
    failure: (usize, &'static str),
    /// OnExceptionSteps: (step type, error type if it fails too).
    on_exception: &'static [(&'static str, Option<&'static str>)],
}

const TRANSFER_FLOWS: &[TransferFlow] = &[
    // Healthy.
    TransferFlow {
        workflow_id: "w-0d3m0000000000001",
        description: "tag and archive partner uploads",
        steps: &["TAG", "COPY", "DELETE"],
        fail_every: 0,
        failure: (0, ""),
        on_exception: &[],
    },
    // The archive bucket's policy denies every third copy; the handler deletes the file.
    TransferFlow {
        workflow_id: "w-0d3m0000000000002",
        description: "decrypt PGP uploads and copy to the archive",
        steps: &["DECRYPT", "COPY"],
        fail_every: 3,
        failure: (1, "PERMISSION_DENIED"),
        on_exception: &[("DELETE", None)],
    },
    // A slow Lambda times out now and then; the handler's notification Lambda fails too.
    TransferFlow {
        workflow_id: "w-0d3m0000000000003",
        description: "virus scan with a custom Lambda step",
        steps: &["CUSTOM", "TAG"],
        fail_every: 4,
        failure: (0, "TIMEOUT"),
        on_exception: &[("CUSTOM", Some("CUSTOM_STEP_FAILED")), ("TAG", None)],
    },
];

#[derive(Debug)]
struct TransferRun {
    flow: usize,
    id: String,
    failing: bool,
    /// Steps run so far (Steps, then the OnExceptionSteps at once when failing).
    phase: usize,
}

/// Advances the scenario by one step.
struct Scenario {
    step: u64,
    states: Vec<PipelineState>,
    transfer_generation: Vec<u64>,
    transfer_runs: Vec<TransferRun>,
    appflow: AppflowScenario,
}

impl Scenario {
    fn new() -> Self {
        Self {
            step: 0,
            states: PIPELINES.iter().map(|_| PipelineState::default()).collect(),
            appflow: AppflowScenario::new(),
            transfer_generation: vec![0; TRANSFER_FLOWS.len()],
            transfer_runs: Vec::new(),
        }
    }

    /// Each workflow keeps up to two executions in progress; each advances one step per tick,
    /// and a failing one runs its OnExceptionSteps, shows HANDLING_EXCEPTION a tick, then ends.
    fn advance_transfer(&mut self, world: &mut World) {
        let t = &mut world.transfer;
        for f in TRANSFER_FLOWS {
            if !t.workflows.contains_key(f.workflow_id) {
                t.add_workflow(f.workflow_id, Some(f.description));
                t.set_tags(f.workflow_id, &[("team", team_of(f.workflow_id))]);
            }
        }
        let mut still_running = Vec::new();
        for mut run in std::mem::take(&mut self.transfer_runs) {
            let f = &TRANSFER_FLOWS[run.flow];
            let fail_at = run.failing.then_some(f.failure.0);
            if fail_at.is_some_and(|i| run.phase > i) {
                if run.phase == f.failure.0 + 1 {
                    for (step_type, error) in f.on_exception {
                        t.exception_step(&run.id, step_type, *error);
                    }
                    run.phase += 1;
                    still_running.push(run);
                } else {
                    t.finish(&run.id);
                }
                continue;
            }
            if run.phase >= f.steps.len() {
                t.finish(&run.id);
                continue;
            }
            if fail_at == Some(run.phase) {
                t.step_failed(&run.id, f.steps[run.phase], f.failure.1);
            } else {
                t.step_ok(&run.id, f.steps[run.phase]);
            }
            run.phase += 1;
            still_running.push(run);
        }
        self.transfer_runs = still_running;
        for (i, f) in TRANSFER_FLOWS.iter().enumerate() {
            if self.transfer_runs.iter().filter(|r| r.flow == i).count() >= 2 {
                continue;
            }
            self.transfer_generation[i] += 1;
            let generation = self.transfer_generation[i];
            let id = format!("{:08x}-{:04x}-{generation:04}", fastrand::u32(..), i);
            t.start_execution(f.workflow_id, &id, "s-0d3m000000000001");
            self.transfer_runs.push(TransferRun {
                flow: i,
                id,
                failing: f.fail_every > 0 && generation % f.fail_every == 0,
                phase: 0,
            });
        }
    }

    fn advance(&mut self, world: &mut World, now: f64) {
        self.step += 1;
        for (p, st) in PIPELINES.iter().zip(self.states.iter_mut()) {
            advance_pipeline(p, st, world, self.step, now);
        }
        self.advance_transfer(world);
        self.appflow.advance(world, now);
    }
}

fn advance_pipeline(p: &Pipeline, st: &mut PipelineState, world: &mut World, step: u64, now: f64) {
    let sfn = &mut world.sfn;
    let sm_arn = format!(
        "arn:aws:states:{REGION}:{}:stateMachine:{}",
        super::ACCOUNT_ID,
        p.state_machine
    );
    if !sfn.state_machines.contains_key(&sm_arn) {
        sfn.add_state_machine(p.state_machine, now);
        sfn.set_tags(&sm_arn, &[("team", team_of(p.state_machine))]);
    }
    // Start a new execution when none is active.
    let (Some(exec), Some(run)) = (st.execution.clone(), st.map_run.clone()) else {
        st.generation += 1;
        let exec = sfn.start_execution(
            &sm_arn,
            &format!("{}-{:04}", p.state_machine, st.generation),
            now,
        );
        let run = sfn.add_map_run(
            &exec,
            MapRunSpec {
                map_state: p.map_state.into(),
                id: format!("{:08x}-{:04}", fastrand::u32(..), st.generation),
                total_items: p.total_items,
                max_concurrency: p.max_concurrency,
                tolerated_failure_percentage: p.tolerated_failure_percentage,
                tolerated_failure_count: 0,
            },
            now,
        );
        *st = PipelineState {
            generation: st.generation,
            execution: Some(exec),
            map_run: Some(run),
            ..PipelineState::default()
        };
        return;
    };
    let status = sfn.map_runs[&run].status;
    if status == "FAILED" {
        let failed_at = st.failed_at_step.unwrap_or(step);
        if p.redrive_after > 0 && !st.redriven && step >= failed_at + p.redrive_after as u64 {
            sfn.redrive(&exec, now);
            st.redriven = true;
        } else if st.redriven
            || p.redrive_after == 0
            || step >= failed_at + 2 * p.redrive_after as u64
        {
            st.execution = None;
            st.map_run = None;
        }
        return;
    }
    if status != "RUNNING" {
        // Finished: leave it visible for a step, then start the next one.
        st.execution = None;
        st.map_run = None;
        return;
    }
    st.steps_done += 1;
    let items = sfn.map_runs[&run].items;
    let failing = st.steps_done <= p.failing_steps && !st.redriven;
    let processed = items.succeeded + items.failed + items.timed_out;
    let batch = p.items_per_step.min(p.total_items - processed);
    let failed_now = if failing {
        p.failures_per_step.min(batch)
    } else {
        0
    };
    let succeeded = items.succeeded + batch - failed_now;
    let failed = items.failed + failed_now;
    let remaining = p.total_items - succeeded - failed - items.timed_out;
    let running = remaining.min(p.items_per_step);
    sfn.set_progress(&run, running, succeeded, failed, items.timed_out);
    let tolerated = (p.total_items as f64 * p.tolerated_failure_percentage / 100.0).floor() as i64;
    if failed > tolerated {
        sfn.finish_map_run(&run, "FAILED", now);
        sfn.stop_execution(&exec, "FAILED", now);
        st.failed_at_step = Some(step);
    } else if remaining == 0 {
        sfn.finish_map_run(&run, "SUCCEEDED", now);
        sfn.stop_execution(&exec, "SUCCEEDED", now);
    }
}

// --- AppFlow flows -----------------------------------------------------------------------

/// How one demo AppFlow flow behaves: a run every `idle_steps + steps_per_run` steps.
struct DemoFlow {
    name: &'static str,
    steps_per_run: u64,
    idle_steps: u64,
    /// Bytes read from the source per step of a run; a little less is written.
    bytes_per_step: i64,
    /// Every n-th run ends in error with put failures (0: never).
    fail_every: u64,
}

const FLOWS: &[DemoFlow] = &[
    // Healthy: short successful runs moving tens of megabytes.
    DemoFlow {
        name: "salesforce-accounts-to-s3",
        steps_per_run: 2,
        idle_steps: 1,
        bytes_per_step: 36_700_160,
        fail_every: 0,
    },
    // Failing: the destination rejects records (put failures) and the Glue table registration fails.
    DemoFlow {
        name: "zendesk-tickets-to-redshift",
        steps_per_run: 2,
        idle_steps: 2,
        bytes_per_step: 4_194_304,
        fail_every: 1,
    },
    // A long backfill: in progress for many steps, then successful.
    DemoFlow {
        name: "sap-orders-backfill",
        steps_per_run: 20,
        idle_steps: 2,
        bytes_per_step: 524_288_000,
        fail_every: 0,
    },
];

#[derive(Debug, Default)]
struct DemoFlowState {
    run: Option<String>,
    run_steps: u64,
    idle: u64,
    runs_started: u64,
}

/// Advances the demo's AppFlow flows by one step.
struct AppflowScenario {
    seeded: bool,
    states: Vec<DemoFlowState>,
}

impl AppflowScenario {
    fn new() -> Self {
        Self {
            seeded: false,
            states: FLOWS.iter().map(|_| DemoFlowState::default()).collect(),
        }
    }

    fn advance(&mut self, world: &mut World, now: f64) {
        let af = &mut world.appflow;
        if !self.seeded {
            // A day of hourly history, finished before the exporter starts: shown, not counted.
            for f in FLOWS {
                af.add_flow(f.name, now - 30.0 * 86400.0);
                af.set_tags(f.name, &[("team", team_of(f.name))]);
                af.add_history(f.name, 24, 3600.0, now - 600.0);
            }
            self.seeded = true;
        }
        for (f, st) in FLOWS.iter().zip(self.states.iter_mut()) {
            let Some(run) = st.run.clone() else {
                if st.idle > 0 {
                    st.idle -= 1;
                    continue;
                }
                st.runs_started += 1;
                st.run_steps = 0;
                st.run = Some(af.start_run(f.name, now));
                continue;
            };
            st.run_steps += 1;
            let read = f.bytes_per_step * st.run_steps as i64 + fastrand::i64(0..1_048_576);
            let written = read / 10 * 9;
            af.set_progress(&run, read, written, read / 1024, now);
            if st.run_steps < f.steps_per_run {
                continue;
            }
            if f.fail_every > 0 && st.runs_started % f.fail_every == 0 {
                let failures = 10 + fastrand::i64(0..40);
                af.set_error(
                    &run,
                    failures,
                    &format!("{failures} records failed to insert into the destination: column \"priority\" violates not-null constraint"),
                );
                af.set_catalog_errors(&run, 1);
                af.finish_run(&run, "Error", now);
            } else {
                af.finish_run(&run, "Successful", now);
            }
            st.run = None;
            st.idle = f.idle_steps;
        }
    }
}

/// Starts the simulator, the scenario driver and an exporter polling the simulator.
pub async fn start(step_interval: Duration) -> std::io::Result<Demo> {
    let denied = match std::env::var(DENY_ENV) {
        Ok(list) => {
            denials(&list).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?
        }
        Err(_) => Vec::new(),
    };
    let simulator = Simulator::start().await?;
    let world = simulator.world_handle();
    world
        .lock()
        .expect("simulator world lock")
        .faults
        .extend(denied);
    let scenario = Arc::new(Mutex::new(Scenario::new()));
    // A first step before the exporter starts, so the first poll already has data.
    advance(&scenario, &world);
    tokio::spawn({
        let (scenario, world) = (scenario.clone(), world.clone());
        async move {
            let mut ticker = tokio::time::interval(step_interval);
            ticker.tick().await;
            loop {
                ticker.tick().await;
                advance(&scenario, &world);
            }
        }
    });
    let mut config = demo_config(&simulator.endpoint, step_interval);
    // The demo's resources carry a `team` tag, exported for the dashboards' team filter.
    let team = crate::tags::TagsConfig {
        export: Some(vec![crate::tags::TagLabel {
            key: "team".into(),
            label: crate::tags::label_name("team"),
        }]),
        refresh: None,
    };
    config.sources.sfn_map_runs.tags = team.clone();
    config.sources.transfer_workflows.tags = team.clone();
    config.sources.appflow_flows.tags = team;
    let exporter = Exporter::new(
        &config,
        Some(StaticCredentials {
            access_key_id: "demo".into(),
            secret_access_key: "demo".into(),
        }),
    );
    Ok(Demo {
        endpoint: simulator.endpoint.clone(),
        exporter,
        _simulator: simulator,
    })
}

/// The owning team of a demo resource (its `team` tag), by name or id.
fn team_of(name: &str) -> &'static str {
    match name {
        "orders-etl" | "w-0d3m0000000000003" => "data",
        "image-resize" | "w-0d3m0000000000001" => "media",
        "zendesk-tickets-to-redshift" => "support",
        "salesforce-accounts-to-s3" => "sales-ops",
        _ => "finance",
    }
}

/// IAM actions (comma-separated, e.g. `appflow:ListFlows`) that the demo's simulator denies with
/// AccessDeniedException, to see what a missing permission looks like (on /status, in the logs).
pub const DENY_ENV: &str = "AWS_WORKFLOW_EXPORTER_DEMO_DENY";

/// The operations the simulator answers, by IAM action: (action, simulator service, operation).
/// tests/status_page.rs checks that every action the exporter needs is here.
pub const DENIABLE: &[(&str, &str, &str)] = &[
    ("states:ListStateMachines", "sfn", "ListStateMachines"),
    ("states:DescribeStateMachine", "sfn", "DescribeStateMachine"),
    (
        "states:ListStateMachineVersions",
        "sfn",
        "ListStateMachineVersions",
    ),
    ("states:ListExecutions", "sfn", "ListExecutions"),
    ("states:GetExecutionHistory", "sfn", "GetExecutionHistory"),
    ("states:ListMapRuns", "sfn", "ListMapRuns"),
    ("states:DescribeMapRun", "sfn", "DescribeMapRun"),
    ("states:ListTagsForResource", "sfn", "ListTagsForResource"),
    ("transfer:ListWorkflows", "transfer", "ListWorkflows"),
    ("transfer:DescribeWorkflow", "transfer", "DescribeWorkflow"),
    ("transfer:ListExecutions", "transfer", "ListExecutions"),
    (
        "transfer:DescribeExecution",
        "transfer",
        "DescribeExecution",
    ),
    ("appflow:ListFlows", "appflow", "ListFlows"),
    (
        "appflow:DescribeFlowExecutionRecords",
        "appflow",
        "DescribeFlowExecutionRecords",
    ),
];

/// The simulator faults that deny each IAM action of `list` (comma-separated).
pub fn denials(list: &str) -> Result<Vec<Fault>, String> {
    list.split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(|action| {
            let (_, service, operation) = DENIABLE
                .iter()
                .find(|(a, _, _)| *a == action)
                .ok_or_else(|| {
                    let known: Vec<&str> = DENIABLE.iter().map(|(a, _, _)| *a).collect();
                    format!(
                        "{DENY_ENV}: {action:?} is not an IAM action the exporter uses; one of: {}",
                        known.join(", ")
                    )
                })?;
            Ok(Fault {
                service,
                operation,
                body_contains: None,
                kind: FaultKind::AccessDenied,
                remaining: None,
            })
        })
        .collect()
}

/// Runs the scenario for a while on `world`, ending in the recent past, so every kind of run exists.
pub fn seed(world: &mut World) {
    let mut scenario = Scenario::new();
    let now = unix_now();
    for i in 0..40 {
        scenario.advance(world, now - 40.0 + i as f64);
    }
}

fn advance(scenario: &Mutex<Scenario>, world: &Mutex<World>) {
    let mut w = world.lock().expect("simulator world lock");
    scenario
        .lock()
        .expect("scenario lock")
        .advance(&mut w, unix_now());
}

/// The exporter's configuration for the demo: one target at the simulator, fast polls.
pub fn demo_config(endpoint: &str, poll_interval: Duration) -> Config {
    let mut config = Config::defaults();
    config.poll_interval = poll_interval;
    config.targets = vec![TargetConfig {
        endpoint_url: Some(endpoint.into()),
        ..TargetConfig::new("demo", Some(REGION))
    }];
    config.sources.set_poll_interval(poll_interval);
    config
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn denied_actions_become_access_denied_faults() {
        let faults = denials("appflow:ListFlows, states:DescribeMapRun").unwrap();
        assert_eq!(
            faults
                .iter()
                .map(|f| (f.service, f.operation, f.kind.clone()))
                .collect::<Vec<_>>(),
            [
                ("appflow", "ListFlows", FaultKind::AccessDenied),
                ("sfn", "DescribeMapRun", FaultKind::AccessDenied)
            ]
        );
        let err = denials("appflow:DeleteFlow").unwrap_err();
        assert!(
            err.contains("\"appflow:DeleteFlow\" is not an IAM action")
                && err.contains("appflow:ListFlows"),
            "{err}"
        );
    }

    #[test]
    fn the_scenario_fails_redrives_and_nears_its_threshold() {
        let mut world = World::default();
        let mut scenario = Scenario::new();
        let mut saw_near_threshold = false;
        let mut saw_redrive = false;
        for i in 0..80 {
            scenario.advance(&mut world, 1000.0 + i as f64);
            for r in world.sfn.map_runs.values() {
                let ratio = r.items.failed as f64 / r.items.total as f64;
                if r.status == "RUNNING"
                    && ratio > 0.8 * r.tolerated_failure_percentage / 100.0
                    && ratio <= r.tolerated_failure_percentage / 100.0
                {
                    saw_near_threshold = true;
                }
                saw_redrive |= r.redrive_count > 0;
            }
        }
        assert!(saw_near_threshold);
        assert!(saw_redrive);
        assert!(world.sfn.map_runs.values().any(|r| r.status == "SUCCEEDED"));
    }

    #[test]
    fn transfer_executions_start_fail_and_finish() {
        let mut world = World::default();
        let mut scenario = Scenario::new();
        let mut seen = std::collections::BTreeSet::new();
        let mut errors = std::collections::BTreeSet::new();
        let mut handling = false;
        for i in 0..40 {
            scenario.advance(&mut world, 1000.0 + i as f64);
            for e in world.transfer.executions.values() {
                seen.insert(e.id.clone());
                handling |= e.status == "HANDLING_EXCEPTION";
                for s in e.steps.iter().chain(&e.on_exception_steps) {
                    if let Some(err) = s.error {
                        errors.insert((s.step_type, err));
                    }
                }
            }
        }
        assert_eq!(world.transfer.workflows.len(), 3);
        assert!(handling);
        assert!(errors.contains(&("COPY", "PERMISSION_DENIED")));
        assert!(errors.contains(&("CUSTOM", "TIMEOUT")));
        assert!(errors.contains(&("CUSTOM", "CUSTOM_STEP_FAILED")));
        assert!(world.transfer.executions.len() <= 6, "executions finish");
        assert!(seen.len() > 20);
    }

    #[test]
    fn the_appflow_flows_succeed_fail_and_run_long() {
        let mut world = World::default();
        let mut scenario = Scenario::new();
        let mut saw_long_run = false;
        for i in 0..40 {
            scenario.advance(&mut world, 100_000.0 + i as f64);
            saw_long_run |= world
                .appflow
                .runs
                .values()
                .any(|r| r.status == "InProgress" && r.last_updated_at - r.started_at >= 10.0);
        }
        let runs = || {
            world
                .appflow
                .runs
                .values()
                .filter(|r| r.started_at >= 100_000.0)
        };
        assert!(saw_long_run);
        assert!(runs().any(|r| r.status == "Successful" && r.bytes_written > 0));
        assert!(runs().any(|r| r.status == "Error"
            && r.put_failures.unwrap_or(0) > 0
            && r.message.is_some()));
    }
}
