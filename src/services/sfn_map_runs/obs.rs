//! What the AWS calls showed, as plain values: client.rs and convert.rs produce them, the
//! tracker takes them in. Times are Unix seconds (f64) so tests can use plain numbers.

/// The map run events of an execution's history newer than the last read (GetExecutionHistory).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExecutionEvents {
    /// The newest event id read (0 when none).
    pub newest: i64,
    /// Map runs started (MapRunStarted) and when, newest first.
    pub started: Vec<(String, f64)>,
    /// Map runs redriven (MapRunRedriven).
    pub redriven: Vec<String>,
    /// A map run ended (MapRunSucceeded, MapRunFailed, MapRunAborted); the event does not say which.
    pub ended: bool,
    /// Read down to the last event already seen, or to the first event.
    pub complete: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ExecutionObs {
    pub arn: String,
    pub state_machine_arn: String,
    pub name: String,
    pub running: bool,
    pub start: f64,
    pub stop: Option<f64>,
    pub redrive_count: i64,
    pub redrive_date: Option<f64>,
    /// The published version it runs (`stateMachineVersionArn`: started with a version or an
    /// alias); `None` when started on the state machine itself (its latest definition).
    pub version: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum MapRunStatus {
    Running,
    Succeeded,
    Failed,
    Aborted,
}

impl MapRunStatus {
    pub const ALL: [MapRunStatus; 4] =
        [Self::Running, Self::Succeeded, Self::Failed, Self::Aborted];
    pub const TERMINAL: [MapRunStatus; 3] = [Self::Succeeded, Self::Failed, Self::Aborted];

    pub fn as_label(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Aborted => "aborted",
        }
    }

    pub fn is_terminal(self) -> bool {
        self != Self::Running
    }
}

/// itemCounts or executionCounts of DescribeMapRun.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub pending: i64,
    pub running: i64,
    pub succeeded: i64,
    pub failed: i64,
    pub timed_out: i64,
    pub aborted: i64,
    pub total: i64,
    pub results_written: i64,
    pub failures_not_redrivable: Option<i64>,
    pub pending_redrive: Option<i64>,
}

impl Counts {
    /// (label, value) for the per-status series.
    pub fn by_status(&self) -> [(&'static str, i64); 6] {
        [
            ("pending", self.pending),
            ("running", self.running),
            ("succeeded", self.succeeded),
            ("failed", self.failed),
            ("timed_out", self.timed_out),
            ("aborted", self.aborted),
        ]
    }

    pub(super) fn finished(&self) -> [u64; 4] {
        [self.succeeded, self.failed, self.timed_out, self.aborted].map(|v| v.max(0) as u64)
    }
}

/// Item statuses that count as finished, in the order of [`Aggregate::items_finished`].
pub const FINISHED_ITEM_STATUSES: [&str; 4] = ["succeeded", "failed", "timed_out", "aborted"];

#[derive(Debug, Clone, PartialEq)]
pub struct MapRunObs {
    pub arn: String,
    pub execution_arn: String,
    pub status: MapRunStatus,
    pub start: f64,
    pub stop: Option<f64>,
    pub max_concurrency: i64,
    pub tolerated_failure_ratio: f64,
    pub tolerated_failure_count: i64,
    pub items: Counts,
    pub executions: Counts,
    pub redrive_count: i64,
    pub redrive_date: Option<f64>,
}

/// A state machine as ListStateMachines shows it (after the selection).
#[derive(Debug, Clone, PartialEq)]
pub struct StateMachineObs {
    pub arn: String,
    pub name: String,
    pub created: f64,
}

/// Which listing of a state machine's executions an observation comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listing {
    /// `statusFilter=RUNNING`, complete: a tracked execution it does not show has stopped.
    Running,
    /// Newest first, down to the watermark: executions started since the last listing.
    Newest,
    /// Newest first, down to `now - lookback`: the first listing, whose finished executions are
    /// history (described in the background, newest first).
    Lookback,
    /// `redriveFilter=REDRIVEN`: executions redriven at any time, however old.
    Redriven,
}
