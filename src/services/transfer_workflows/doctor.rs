//! What `doctor` checks for Transfer Family workflows, with this source's own client calls:
//! the workflows listed and selected as a poll selects them, then ListExecutions and
//! DescribeExecution on the first workflow and execution there are to call them on.

use std::sync::Arc;

use crate::aws::Connection;
use crate::config::format_duration;
use crate::doctor::findings::{pages, per_hour, select, CallEstimate, Findings};
use crate::services::transfer_workflows::client::{
    TransferClient, DESCRIBE_EXECUTION, DESCRIBE_WORKFLOW, LIST_EXECUTIONS, LIST_WORKFLOWS,
};
use crate::services::transfer_workflows::config::Config;

/// Tags of workflows only their tags can select are read for this long at most.
const TAGS_TIME: std::time::Duration = std::time::Duration::from_secs(5);

pub async fn check(conn: Arc<Connection>, config: &Config) -> Findings {
    let client = TransferClient::new(conn.clone());
    let mut f = Findings::default();
    let Some(listed) = f.probe(LIST_WORKFLOWS, client.list_workflows().await, |l| {
        format!("{} workflows", l.len())
    }) else {
        let why = "needs transfer:ListWorkflows";
        f.skip(
            &[LIST_EXECUTIONS, DESCRIBE_EXECUTION, DESCRIBE_WORKFLOW],
            why,
        );
        return f;
    };
    // Needed only when tags are exported or select (`tags`).
    match listed.first() {
        None => f.skip(&[DESCRIBE_WORKFLOW], "no workflow to call it on"),
        Some(w) => {
            f.probe(DESCRIBE_WORKFLOW, client.tags(&w.id).await, |t| {
                format!("{}: {} tags", w.id, t.len())
            });
        }
    }
    // Selected as a poll selects them (see `TransferWorkflows::poll_inner`).
    // Workflows only their tags can select: read as a poll reads them (for a while).
    let sel = &config.workflows;
    let named = listed
        .iter()
        .map(|w| (w.description.as_str(), w.id.as_str()));
    let tags = crate::tags::read_within(&client, sel, named, TAGS_TIME).await;
    let (selected, watched) = select(
        "workflow",
        "workflows",
        &listed,
        |w| sel.matches_tagged(&w.description, &w.id, tags.get(&w.id)),
        |w| conn.owns(&w.id),
    );
    f.watched.push(watched);
    let polls = per_hour(config.poll_interval);
    let listing_every = config.discovery_interval.max(config.poll_interval);
    f.api_calls = vec![
        CallEstimate::new(
            &conn,
            LIST_WORKFLOWS,
            pages(listed.len(), 100) * per_hour(listing_every),
            format!(
                "{} workflows, 100 a page, every {} (discovery_interval)",
                listed.len(),
                format_duration(listing_every)
            ),
        ),
        CallEstimate::new(
            &conn,
            LIST_EXECUTIONS,
            selected.len() as f64 * polls,
            format!(
                "each of {} selected workflows every poll (one page of 100 in progress)",
                selected.len()
            ),
        ),
        CallEstimate::new(
            &conn,
            DESCRIBE_WORKFLOW,
            match (config.workflows.tags.is_empty(), config.tags.export().is_empty()) {
                (false, _) => listed.len() as f64,
                (true, false) => selected.len() as f64,
                (true, true) => 0.0,
            } * 3600.0
                / config.tags.refresh().as_secs_f64(),
            "each workflow whose tags are exported or select, once and every tags.refresh, with spare tokens".into(),
        ),
        CallEstimate::new(
            &conn,
            DESCRIBE_EXECUTION,
            0.0,
            "executions whose step failed, every poll while they handle it".into(),
        )
        .per_active("execution handling an exception", polls),
    ];

    let Some(workflow) = selected.first() else {
        let why = "no workflow selected to call it on";
        f.skip(&[LIST_EXECUTIONS, DESCRIBE_EXECUTION], why);
        return f;
    };
    let Some(executions) = f.probe(
        LIST_EXECUTIONS,
        client.list_executions(&workflow.id).await,
        |l| format!("{}: {} executions in progress", workflow.id, l.len()),
    ) else {
        f.skip(&[DESCRIBE_EXECUTION], "needs transfer:ListExecutions");
        return f;
    };
    match executions.first() {
        None => f.skip(
            &[DESCRIBE_EXECUTION],
            &format!("no execution in progress in {} to call it on", workflow.id),
        ),
        Some(e) => {
            let result = client.describe_execution(&workflow.id, &e.id).await;
            f.probe(DESCRIBE_EXECUTION, result, |d| {
                format!("{}: {:?}", e.id, d.status)
            });
        }
    }
    f
}
