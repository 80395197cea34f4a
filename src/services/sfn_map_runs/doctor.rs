//! What `doctor` checks for Map Runs, with this source's own client calls: the state machines
//! listed and selected as a poll selects them, their definitions, then ListExecutions,
//! GetExecutionHistory, ListMapRuns and DescribeMapRun on the first resources there are to call
//! them on.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::aws::Connection;
use crate::clock::unix_now;
use crate::config::format_duration;
use crate::doctor::findings::{pages, per_hour, select, CallEstimate, Findings, Watched};
use crate::error::AwsError;
use crate::services::sfn_map_runs::client::{
    Executions, SfnClient, StateMachine, DESCRIBE_MAP_RUN, DESCRIBE_STATE_MACHINE,
    GET_EXECUTION_HISTORY, LIST_EXECUTIONS, LIST_MAP_RUNS, LIST_STATE_MACHINES,
    LIST_STATE_MACHINE_VERSIONS, LIST_TAGS_FOR_RESOURCE,
};
use crate::services::sfn_map_runs::config::Config;
use crate::services::sfn_map_runs::plan::REDRIVE_SCAN_EVERY_POLLS;

/// Definitions are read for this long at most; the rest are counted as not read.
const DESCRIBE_TIME: Duration = Duration::from_secs(5);
/// Executions tried for a Map Run to describe.
const EXECUTIONS_TRIED: usize = 3;

pub async fn check(conn: Arc<Connection>, config: &Config) -> Findings {
    let client = SfnClient::new(conn.clone());
    let mut f = Findings::default();
    let Some(listed) = f.probe(
        LIST_STATE_MACHINES,
        client.list_state_machines().await,
        |l| format!("{} state machines", l.len()),
    ) else {
        let rest = [
            DESCRIBE_STATE_MACHINE,
            LIST_STATE_MACHINE_VERSIONS,
            LIST_TAGS_FOR_RESOURCE,
            LIST_EXECUTIONS,
            GET_EXECUTION_HISTORY,
            LIST_MAP_RUNS,
            DESCRIBE_MAP_RUN,
        ];
        f.skip(&rest, "needs states:ListStateMachines");
        return f;
    };

    // Selected as a poll selects them (see `SfnMapRuns::state_machines`): STANDARD ones only.
    let (standard, express): (Vec<StateMachine>, Vec<StateMachine>) =
        listed.iter().cloned().partition(|sm| sm.standard);
    // State machines only their tags can select: read as a poll reads them (for a while).
    let sel = &config.state_machines;
    let named = standard
        .iter()
        .map(|sm| (sm.name.as_str(), sm.arn.as_str()));
    let tags = crate::tags::read_within(&client, sel, named, DESCRIBE_TIME).await;
    let (selected, selection) = select(
        "state machine",
        "state_machines",
        &standard,
        |sm| sel.matches_tagged(&sm.name, &sm.arn, tags.get(&sm.arn)),
        |sm| client.owns(&sm.arn),
    );

    let deadline = Instant::now() + DESCRIBE_TIME;
    let (mut distributed, mut plain, mut unread) = (Vec::new(), 0, 0);
    let mut describe: Option<Result<(), AwsError>> = None;
    for sm in &selected {
        if Instant::now() >= deadline || describe.as_ref().is_some_and(Result::is_err) {
            unread += 1;
            continue;
        }
        match client.has_distributed_map(&sm.arn).await {
            Ok(true) => distributed.push(*sm),
            Ok(false) => plain += 1,
            Err(AwsError::NotFound { .. }) => {}
            Err(e) => {
                describe = Some(Err(e));
                unread += 1;
                continue;
            }
        }
        describe = Some(Ok(()));
    }
    match describe {
        None => f.skip(
            &[DESCRIBE_STATE_MACHINE],
            "no STANDARD state machine selected",
        ),
        Some(result) => {
            let read = distributed.len() + plain;
            f.probe(DESCRIBE_STATE_MACHINE, result, |_| {
                format!(
                    "{read} definitions read, {} with a Distributed Map",
                    distributed.len()
                )
            });
        }
    }
    match selected.first().or(standard.first().as_ref()) {
        None => f.skip(
            &[LIST_STATE_MACHINE_VERSIONS, LIST_TAGS_FOR_RESOURCE],
            "no STANDARD state machine selected",
        ),
        Some(sm) => {
            f.probe(
                LIST_STATE_MACHINE_VERSIONS,
                client.list_versions(&sm.arn).await,
                |v| format!("{}: {} published versions", sm.name, v.len()),
            );
            // Needed only when tags are exported or select (`tags`).
            f.probe(LIST_TAGS_FOR_RESOURCE, client.tags(&sm.arn).await, |t| {
                format!("{}: {} tags", sm.name, t.len())
            });
        }
    }
    let mut watched = Watched::new("state machine", listed.len(), distributed.len())
        .excluded("EXPRESS (no Map Runs)", express.len());
    watched.excluded.extend(selection.excluded);
    f.watched.push(
        watched
            .excluded("without a Distributed Map", plain)
            .excluded("definition not read", unread),
    );

    calls(
        &mut f,
        &conn,
        config,
        listed.len(),
        selected.len(),
        distributed.len(),
    );

    // ListExecutions, GetExecutionHistory, ListMapRuns and DescribeMapRun on the first
    // resources there are.
    let Some(sm) = distributed.first().or(selected.first()) else {
        let why = "no state machine selected to call it on";
        let rest = [
            LIST_EXECUTIONS,
            GET_EXECUTION_HISTORY,
            LIST_MAP_RUNS,
            DESCRIBE_MAP_RUN,
        ];
        f.skip(&rest, why);
        return f;
    };
    let executions = match client.list_executions(&sm.arn, Executions::Running).await {
        Ok(running) if running.is_empty() => {
            let since = unix_now() - config.lookback.as_secs_f64();
            client
                .list_executions(&sm.arn, Executions::StartedSince(since))
                .await
        }
        other => other,
    };
    let Some(executions) = f.probe(LIST_EXECUTIONS, executions, |l| {
        format!("{}: {} running or within lookback", sm.name, l.len())
    }) else {
        f.skip(
            &[GET_EXECUTION_HISTORY, LIST_MAP_RUNS, DESCRIBE_MAP_RUN],
            "needs states:ListExecutions",
        );
        return f;
    };
    // The daemon finds map runs in the parent's history (ListMapRuns is its fallback).
    match executions.first() {
        Some(e) => {
            f.probe(
                GET_EXECUTION_HISTORY,
                client.execution_events(&e.arn, 0).await,
                |events| {
                    format!(
                        "{}: {} Map Runs started in its newest events",
                        e.arn,
                        events.started.len()
                    )
                },
            );
        }
        None => f.skip(
            &[GET_EXECUTION_HISTORY],
            &format!("no execution of {} to call it on", sm.name),
        ),
    }
    let mut map_run = None;
    let mut list_result = None;
    for e in executions.iter().take(EXECUTIONS_TRIED) {
        let result = client.list_map_runs(&e.arn).await;
        let found = result.as_ref().ok().and_then(|runs| runs.first().cloned());
        let failed = result
            .as_ref()
            .is_err_and(|e| !matches!(e, AwsError::NotFound { .. }));
        list_result = Some(result.map(|runs| (e.arn.clone(), runs.len())));
        if failed || found.is_some() {
            map_run = found;
            break;
        }
    }
    let Some(result) = list_result else {
        let why = format!("no execution of {} to call it on", sm.name);
        f.skip(&[LIST_MAP_RUNS, DESCRIBE_MAP_RUN], &why);
        return f;
    };
    f.probe(LIST_MAP_RUNS, result, |(arn, n)| {
        format!("{arn}: {n} Map Runs")
    });
    let list_failed = f.checks.last().is_some_and(|c| c.status.failed());
    match map_run {
        Some(arn) => {
            f.probe(
                DESCRIBE_MAP_RUN,
                client.describe_map_run(&arn).await,
                |run| format!("{arn}: {:?}", run.status),
            );
        }
        None if list_failed => f.skip(&[DESCRIBE_MAP_RUN], "needs states:ListMapRuns"),
        None => f.skip(&[DESCRIBE_MAP_RUN], "no Map Run found to call it on"),
    }
    f
}

/// ListTagsForResource calls per hour: every listed state machine when tags select, the
/// selected ones when tags are only exported, none otherwise.
fn tag_reads(config: &Config, listed: usize, selected: usize) -> f64 {
    let per_hour = 3600.0 / config.tags.refresh().as_secs_f64();
    if !config.state_machines.tags.is_empty() {
        listed as f64 * per_hour
    } else if !config.tags.export().is_empty() {
        selected as f64 * per_hour
    } else {
        0.0
    }
}

/// The estimate of the calls per hour, from what was listed, with nothing running.
fn calls(
    f: &mut Findings,
    conn: &Connection,
    config: &Config,
    listed: usize,
    selected: usize,
    distributed: usize,
) {
    let polls = per_hour(config.poll_interval);
    let listing_every = config.discovery_interval.max(config.poll_interval);
    let refresh = config.definition_refresh.as_secs_f64();
    let every = REDRIVE_SCAN_EVERY_POLLS as f64;
    f.api_calls = vec![
        CallEstimate::new(
            conn,
            LIST_STATE_MACHINES,
            pages(listed, 1000) * per_hour(listing_every),
            format!(
                "{listed} state machines, 1000 a page, every {} (discovery_interval)",
                format_duration(listing_every)
            ),
        ),
        CallEstimate::new(
            conn,
            DESCRIBE_STATE_MACHINE,
            selected as f64 * 3600.0 / refresh,
            format!("each of {selected} selected state machines every definition_refresh"),
        ),
        CallEstimate::new(
            conn,
            LIST_STATE_MACHINE_VERSIONS,
            selected.saturating_sub(distributed) as f64 * 3600.0 / refresh,
            "each selected state machine without a Distributed Map in its latest definition every definition_refresh (plus one DescribeStateMachine per new published version)".into(),
        ),
        CallEstimate::new(
            conn,
            LIST_TAGS_FOR_RESOURCE,
            tag_reads(config, listed, selected),
            "each state machine whose tags are exported or select, once and every tags.refresh, with spare tokens".into(),
        ),
        CallEstimate::new(
            conn,
            LIST_EXECUTIONS,
            distributed as f64 * polls * (1.0 + 1.0 / every),
            format!("newest executions of {distributed} state machines every poll, redrives every {REDRIVE_SCAN_EVERY_POLLS}th; the first poll also reads lookback"),
        )
        .per_active("state machine with running executions", polls),
        CallEstimate::new(
            conn,
            GET_EXECUTION_HISTORY,
            0.0,
            "the new events of each running execution every poll, once more when it stops; the first poll also reads lookback".into(),
        )
        .per_active("running execution", polls),
        CallEstimate::new(
            conn,
            LIST_MAP_RUNS,
            0.0,
            "only when the history is denied or has more than 3,000 new events".into(),
        ),
        CallEstimate::new(
            conn,
            DESCRIBE_MAP_RUN,
            0.0,
            "open Map Runs every poll, and once when they end".into(),
        )
        .per_active("open Map Run", polls),
    ];
}
