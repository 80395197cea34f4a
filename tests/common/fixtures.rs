//! Builders of what tests put into the simulator's world (after controller-rs's `fixtures.rs`):
//! map runs, faults, a state machine with a running execution and its map run.

use aws_workflow_exporter::simulator::sfn::MapRunSpec;
pub use aws_workflow_exporter::simulator::unix_now;
use aws_workflow_exporter::simulator::{Fault, FaultKind, Simulator, World, ANY_OPERATION};

/// A map run of `total_items` items in the Map state `Fan`, at most 10 at a time, tolerating no
/// failure; [`MapRunSpecExt`] changes any of these.
pub fn map_run(id: &str, total_items: i64) -> MapRunSpec {
    MapRunSpec {
        map_state: "Fan".into(),
        id: id.into(),
        total_items,
        max_concurrency: 10,
        tolerated_failure_percentage: 0.0,
        tolerated_failure_count: 0,
    }
}

/// Changes to a [`map_run`].
pub trait MapRunSpecExt {
    /// The Map state's name.
    fn state(self, name: &str) -> Self;
    fn concurrency(self, max: i64) -> Self;
    /// The tolerated failure percentage and count.
    fn tolerating(self, percentage: f64, count: i64) -> Self;
}

impl MapRunSpecExt for MapRunSpec {
    fn state(mut self, name: &str) -> Self {
        self.map_state = name.into();
        self
    }

    fn concurrency(mut self, max: i64) -> Self {
        self.max_concurrency = max;
        self
    }

    fn tolerating(mut self, percentage: f64, count: i64) -> Self {
        self.tolerated_failure_percentage = percentage;
        self.tolerated_failure_count = count;
        self
    }
}

/// `kind` on every call of `service`'s `operation` ([`ANY_OPERATION`] for all of them), for as
/// long as it is installed; [`FaultExt`] narrows it.
pub fn fault(service: &'static str, operation: &'static str, kind: FaultKind) -> Fault {
    Fault {
        service,
        operation,
        body_contains: None,
        kind,
        remaining: None,
    }
}

/// `kind` on every call to `service`.
pub fn fault_on_every_call(service: &'static str, kind: FaultKind) -> Fault {
    fault(service, ANY_OPERATION, kind)
}

/// Narrowing a [`fault`].
pub trait FaultExt {
    /// Only requests whose body contains `text` (e.g. one resource's name or ARN).
    fn matching(self, text: &str) -> Self;
    /// Only the next `n` matching requests.
    fn times(self, n: u32) -> Self;
}

impl FaultExt for Fault {
    fn matching(mut self, text: &str) -> Self {
        self.body_contains = Some(text.into());
        self
    }

    fn times(mut self, n: u32) -> Self {
        self.remaining = Some(n);
        self
    }
}

/// What [`open_run`] added.
pub struct OpenRun {
    pub state_machine: String,
    pub execution: String,
    pub map_run: String,
}

/// At `now`: a state machine `state_machine` created 100 s before, its execution `execution`
/// running since 50 s before, and the map run `spec` open since 40 s before (no item started yet:
/// `w.sfn.set_progress` moves it).
pub fn open_run(
    w: &mut World,
    now: f64,
    state_machine: &str,
    execution: &str,
    spec: MapRunSpec,
) -> OpenRun {
    let state_machine = w.sfn.add_state_machine(state_machine, now - 100.0);
    let execution = w.sfn.start_execution(&state_machine, execution, now - 50.0);
    let map_run = w.sfn.add_map_run(&execution, spec, now - 40.0);
    OpenRun {
        state_machine,
        execution,
        map_run,
    }
}

/// A simulator with one running Distributed Map execution (`etl`, `nightly`) and its open map
/// run `run1`, half done (its ARN returned).
pub async fn one_open_run() -> (Simulator, String) {
    let sim = Simulator::start().await.unwrap();
    let spec = map_run("run1", 10).state("Fan Out").concurrency(5);
    let mut w = sim.world();
    let run = open_run(&mut w, unix_now(), "etl", "nightly", spec).map_run;
    w.sfn.set_progress(&run, 5, 5, 0, 0);
    drop(w);
    (sim, run)
}
