//! What `doctor` checks for AppFlow, with this source's own client calls: the flows listed and
//! selected as a poll selects them, then one page of DescribeFlowExecutionRecords of the first.

use std::sync::Arc;

use crate::aws::Connection;
use crate::doctor::findings::{pages, per_hour, select, CallEstimate, Findings};
use crate::services::appflow_flows::client::{
    AppflowClient, DESCRIBE_FLOW_EXECUTION_RECORDS, LIST_FLOWS,
};
use crate::services::appflow_flows::config::Config;

pub async fn check(conn: Arc<Connection>, config: &Config) -> Findings {
    let client = AppflowClient::new(conn.clone());
    let mut f = Findings::default();
    let Some(listed) = f.probe(LIST_FLOWS, client.list_flows().await, |l| {
        format!("{} flows", l.len())
    }) else {
        f.skip(
            &[DESCRIBE_FLOW_EXECUTION_RECORDS],
            "needs appflow:ListFlows",
        );
        return f;
    };
    // Selected as a poll selects them (see `AppflowFlows::poll_inner`).
    let (selected, watched) = select(
        "flow",
        "flows",
        &listed,
        |fl| config.flows.matches(&fl.name, &fl.arn),
        |fl| conn.owns(&fl.arn),
    );
    f.watched.push(watched);
    let polls = per_hour(config.poll_interval);
    let refresh = config.records_refresh.as_secs_f64();
    f.api_calls = vec![
        CallEstimate::new(
            &conn,
            LIST_FLOWS,
            pages(listed.len(), 100) * polls,
            format!("{} flows, 100 a page, every poll", listed.len()),
        ),
        CallEstimate::new(
            &conn,
            DESCRIBE_FLOW_EXECUTION_RECORDS,
            selected.len() as f64 * 3600.0 / refresh,
            format!(
                "a page of each of {} selected flows every records_refresh, and after each run",
                selected.len()
            ),
        )
        .per_active("flow run in progress", polls),
    ];

    match selected.first() {
        None => f.skip(
            &[DESCRIBE_FLOW_EXECUTION_RECORDS],
            "no flow selected to call it on",
        ),
        Some(flow) => {
            let result = client.describe_runs_page(&flow.name, None).await;
            f.probe(DESCRIBE_FLOW_EXECUTION_RECORDS, result, |(runs, _)| {
                format!("{}: {} runs on the first page", flow.name, runs.len())
            });
        }
    }
    f
}
