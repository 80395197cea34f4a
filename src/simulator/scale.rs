//! A large account for the scale benchmark: many state machines with a Distributed Map, each with
//! hours of finished executions and map runs, a few running ones with open map runs that keep
//! progressing, and state machines without a Distributed Map holding long-running executions.

use std::collections::BTreeSet;

use super::sfn::{definitions, MapRunSpec};
use super::World;

/// The shape of the account.
#[derive(Debug, Clone)]
pub struct ScaleSpec {
    /// State machines whose definition has a Distributed Map (every tenth one nested).
    pub distributed_state_machines: usize,
    /// Executions per such state machine, spread over `history_secs`; the newest is running on
    /// the first `running_executions` state machines.
    pub executions_per_state_machine: usize,
    pub map_runs_per_execution: usize,
    pub running_executions: usize,
    /// State machines without a Distributed Map (half with no Map, half with an Inline Map).
    pub plain_state_machines: usize,
    /// Running executions spread over those, started days ago (callbacks, approvals).
    pub plain_running_executions: usize,
    pub history_secs: f64,
    /// Every this many open runs, one fails 9% of its items against 10% tolerated (the rest 1%).
    pub near_tolerance_every: usize,
}

impl Default for ScaleSpec {
    /// 100 x 20 x 5 = 10,000 map runs, 20 running executions with 100 open map runs, and 30
    /// state machines without a Distributed Map holding 600 long-running executions.
    fn default() -> Self {
        Self {
            distributed_state_machines: 100,
            executions_per_state_machine: 20,
            map_runs_per_execution: 5,
            running_executions: 20,
            plain_state_machines: 30,
            plain_running_executions: 600,
            history_secs: 5.5 * 3600.0,
            near_tolerance_every: 10,
        }
    }
}

/// What was built, for the benchmark's bookkeeping.
#[derive(Debug, Default)]
pub struct ScaleWorld {
    /// ARNs of state machines with a Distributed Map.
    pub distributed: BTreeSet<String>,
    /// ARNs of running executions of those.
    pub running_executions: BTreeSet<String>,
    /// ARNs of the open map runs, and the id (last ARN part) each shows as on /metrics.
    pub open_runs: Vec<(String, String)>,
    pub map_runs: usize,
    /// See [`ScaleSpec::near_tolerance_every`].
    pub near_tolerance_every: usize,
}

impl ScaleWorld {
    /// Whether the `i`th open run fails 9% of its items against 10% tolerated.
    pub fn nears_tolerance(&self, i: usize) -> bool {
        i % self.near_tolerance_every.max(1) == 0
    }
}

/// Items per open map run: enough that none finishes while the benchmark runs.
const OPEN_RUN_ITEMS: i64 = 1_000_000;
const TOLERATED_PERCENT: f64 = 10.0;

/// Builds the account into `world`, ending at `now`.
pub fn build(world: &mut World, spec: &ScaleSpec, now: f64) -> ScaleWorld {
    let sfn = &mut world.sfn;
    let mut out = ScaleWorld {
        near_tolerance_every: spec.near_tolerance_every,
        ..ScaleWorld::default()
    };
    let spacing = spec.history_secs / spec.executions_per_state_machine.max(1) as f64;
    for s in 0..spec.distributed_state_machines {
        let name = format!("fanout-{s:03}");
        let (definition, map_state) = if s % 10 == 9 {
            (definitions::nested_distributed_map("Batches"), "Fan")
        } else {
            (definitions::distributed_map("Map"), "Map")
        };
        let sm = sfn.add_state_machine_with(&name, now - 30.0 * 86400.0, &definition);
        out.distributed.insert(sm.clone());
        for e in 0..spec.executions_per_state_machine {
            // e = 0 is the newest.
            let start = now - 600.0 - e as f64 * spacing;
            let running = e == 0 && s < spec.running_executions;
            let exec = sfn.start_execution(&sm, &format!("run-{e:02}"), start);
            for r in 0..spec.map_runs_per_execution {
                let spec_run = MapRunSpec {
                    map_state: map_state.into(),
                    id: format!("{s:03}{e:02}{r}-0000-4000-8000-000000000000"),
                    total_items: if running { OPEN_RUN_ITEMS } else { 1000 },
                    max_concurrency: 100,
                    tolerated_failure_percentage: TOLERATED_PERCENT,
                    tolerated_failure_count: 0,
                };
                let run_start = start + 5.0 + r as f64;
                let arn = sfn.add_map_run(&exec, spec_run, run_start);
                out.map_runs += 1;
                if running {
                    let id = arn.rsplit(':').next().unwrap_or_default().to_owned();
                    out.open_runs.push((arn, id));
                } else {
                    // Every seventh run failed a few items; all finished well before now.
                    let failed = if (s + e + r) % 7 == 0 { 30 } else { 0 };
                    sfn.set_progress(&arn, 0, 1000 - failed, failed, 0);
                    sfn.finish_map_run(&arn, "SUCCEEDED", run_start + 300.0);
                }
            }
            if running {
                out.running_executions.insert(exec);
            } else {
                sfn.stop_execution(&exec, "SUCCEEDED", start + 400.0);
            }
        }
    }
    for p in 0..spec.plain_state_machines {
        let name = format!("approvals-{p:02}");
        let definition = if p % 2 == 0 {
            definitions::no_map("WaitForApproval")
        } else {
            definitions::inline_map("Each")
        };
        sfn.add_state_machine_with(&name, now - 90.0 * 86400.0, &definition);
    }
    let plain: Vec<String> = sfn
        .state_machines
        .keys()
        .filter(|arn| !out.distributed.contains(*arn))
        .cloned()
        .collect();
    if !plain.is_empty() {
        for i in 0..spec.plain_running_executions {
            let sm = &plain[i % plain.len()];
            // Started 1 to 10 days ago: older than any lookback.
            let start = now - 86400.0 * (1.0 + (i % 10) as f64) - i as f64;
            sfn.start_execution(sm, &format!("waiting-{i:04}"), start);
        }
    }
    advance(world, &out, 0);
    out
}

/// One small account of an organisation: 2 state machines with a Distributed Map (one execution
/// running one open map run, one finished with one map run each), 1 Transfer Family workflow
/// with an execution in progress, and 2 AppFlow flows with 3 finished runs each.
pub fn small_account_spec() -> ScaleSpec {
    ScaleSpec {
        distributed_state_machines: 2,
        executions_per_state_machine: 2,
        map_runs_per_execution: 1,
        running_executions: 1,
        plain_state_machines: 0,
        plain_running_executions: 0,
        history_secs: 3600.0,
        near_tolerance_every: 100,
    }
}

/// The id of the `i`th account of [`build_accounts`].
pub fn account_id(i: usize) -> String {
    format!("{:012}", 200_000_000_000 + i)
}

/// `n` small accounts (see [`small_account_spec`]) in `world.accounts`, by account id, each
/// with what was built in it.
pub fn build_accounts(world: &mut World, n: usize, now: f64) -> Vec<(String, ScaleWorld)> {
    (0..n)
        .map(|i| {
            let id = account_id(i);
            let account = world.accounts.entry(id.clone()).or_default();
            let built = build(account, &small_account_spec(), now);
            account
                .transfer
                .add_workflow("w-0000000000000001", Some("scan uploads"));
            account
                .transfer
                .start_execution("w-0000000000000001", &format!("exec-{i}"), "s-01");
            for flow in ["crm-sync", "ledger-export"] {
                account.appflow.add_flow(flow, now - 30.0 * 86400.0);
                account.appflow.add_history(flow, 3, 3600.0, now - 600.0);
            }
            (id, built)
        })
        .collect()
}

/// Moves every open map run forward by one step: items succeed, and some runs fail items at a
/// rate that brings them close to (but not over) their tolerated 10%.
pub fn advance(world: &mut World, built: &ScaleWorld, step: u64) {
    let done = 200 + step as i64 * 100;
    for (i, (arn, _)) in built.open_runs.iter().enumerate() {
        let failed_per_mille = if built.nears_tolerance(i) { 90 } else { 10 };
        let failed = done * failed_per_mille / 1000;
        let running = 100.min(OPEN_RUN_ITEMS - done);
        world
            .sfn
            .set_progress(arn, running, done - failed, failed, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_world_has_the_promised_shape() {
        let mut world = World::default();
        let built = build(&mut world, &ScaleSpec::default(), 1_000_000.0);
        assert_eq!(built.map_runs, 10_000);
        assert_eq!(world.sfn.map_runs.len(), 10_000);
        assert_eq!(built.open_runs.len(), 100);
        assert_eq!(built.running_executions.len(), 20);
        assert_eq!(world.sfn.state_machines.len(), 130);
        let running = world
            .sfn
            .executions
            .values()
            .filter(|e| e.status == "RUNNING")
            .count();
        assert_eq!(running, 620);
        let open = world
            .sfn
            .map_runs
            .values()
            .filter(|r| r.status == "RUNNING")
            .count();
        assert_eq!(open, 100);
        advance(&mut world, &built, 3);
        let r = &world.sfn.map_runs[&built.open_runs[0].0];
        assert_eq!(r.items.succeeded + r.items.failed, 500);
        assert_eq!(r.items.failed, 45);
    }

    #[test]
    fn each_small_account_has_its_own_workload() {
        let mut world = World::default();
        let built = build_accounts(&mut world, 3, 1_000_000.0);
        assert_eq!(built.len(), 3);
        assert_eq!(world.accounts.len(), 3);
        assert!(
            world.sfn.state_machines.is_empty(),
            "the default account stays empty"
        );
        for (id, b) in &built {
            let a = &world.accounts[id];
            assert_eq!(a.sfn.state_machines.len(), 2);
            assert_eq!(b.open_runs.len(), 1);
            assert_eq!(a.sfn.map_runs.len(), 4);
            assert_eq!(a.transfer.workflows.len(), 1);
            assert_eq!(a.appflow.flows.len(), 2);
            assert_eq!(a.appflow.runs.len(), 6);
        }
    }
}
