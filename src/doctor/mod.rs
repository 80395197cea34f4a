//! `aws-workflow-exporter doctor`: checks, per target and region, what the daemon needs from
//! AWS, read-only and in a few seconds, and says what does not work and how to fix it.
//!
//! It runs the daemon's own parts: the same configuration, `aws::Target` and its `Connection`
//! (credentials, role, region, API budget, instrumentation), and each service's own client calls,
//! which each service drives from its `doctor.rs` through the registry in `services`. This module
//! knows no service by name: it resolves the target, checks the identity, hands the connection to
//! every enabled source, and renders what they found as a table or as JSON
//! (docs/doctor.schema.json). An organisation target is listed as the daemon lists it, and each
//! selected member account and region is checked as a target of its own.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use aws_config::meta::region::ProvideRegion;
use aws_credential_types::provider::ProvideCredentials;
use serde::Serialize;

use tokio::task::JoinHandle;

use crate::aws::operation::GET_CALLER_IDENTITY;
use crate::aws::organization::{self, Lister};
use crate::aws::{AccountRegistry, StaticCredentials, Target};
use crate::config::organization::OrganizationTarget;
use crate::config::target::TargetConfig;
use crate::config::targets::AwsApiConfig;
use crate::config::Config;
use crate::error::AwsError;
use crate::exposition::self_metrics::SelfMetrics;
use crate::services;
use crate::shard::Shard;

pub mod findings;
use findings::{CallEstimate, Probe, SourceReport};

/// Exit status: every check needed passed.
pub const EXIT_OK: u8 = 0;
/// Exit status: at least one check failed (denied, unreachable, role not assumed, ...).
pub const EXIT_CHECK_FAILED: u8 = 1;
/// Exit status: the configuration (file or flags) is invalid; nothing was checked.
pub const EXIT_CONFIG_ERROR: u8 = 2;

/// The doctor caps each call's timeout and attempts, so an unreachable endpoint is reported in
/// seconds, not after the daemon's patient retries.
const MAX_OPERATION_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_ATTEMPTS: u32 = 2;

/// One target (and region).
#[derive(Debug, Clone, Serialize)]
pub struct TargetReport {
    /// `name/region` as in logs and /status.
    pub target: String,
    pub region: Option<String>,
    /// Where the region came from: `configuration`, `environment`, `profile` or
    /// `instance_metadata` (aws-config's default chain, in its order).
    pub region_source: &'static str,
    /// Which setting of that source: `targets[].regions`, `AWS_REGION`, the profile's name, `IMDS`.
    pub region_setting: String,
    pub account_id: Option<String>,
    /// The ARN the exporter calls AWS as (an assumed role's session, for `role_arn` targets).
    pub arn: Option<String>,
    pub role_arn: Option<String>,
    /// Credentials, role assumption, identity.
    pub checks: Vec<Probe>,
    pub sources: Vec<SourceReport>,
}

impl TargetReport {
    /// What the file tells of `target`, before any check.
    fn of(target: &Target) -> Self {
        Self {
            target: target.key(),
            region: target.config.region.clone(),
            region_source: "configuration",
            region_setting: String::new(),
            account_id: target.config.known_account().map(str::to_owned),
            arn: None,
            role_arn: target.config.role.as_ref().map(|r| r.arn.clone()),
            checks: Vec::new(),
            sources: Vec::new(),
        }
    }

    fn probes(&self) -> impl Iterator<Item = &Probe> {
        self.checks
            .iter()
            .chain(self.sources.iter().flat_map(|s| s.findings.checks.iter()))
    }
}

/// The whole run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// True when no check failed: the exit status is 0.
    pub ok: bool,
    /// `target: check` of each failed check.
    pub failed: Vec<String>,
    /// Organisation targets' listings.
    pub organizations: Vec<OrganizationReport>,
    /// The file's targets, then the organisations' member targets.
    pub targets: Vec<TargetReport>,
}

impl Report {
    fn new(organizations: Vec<OrganizationReport>, targets: Vec<TargetReport>) -> Self {
        let listings = organizations
            .iter()
            .flat_map(|o| o.checks.iter().map(|p| (&o.organization, p)));
        let checks = targets
            .iter()
            .flat_map(|t| t.probes().map(|p| (&t.target, p)));
        let failed: Vec<String> = listings
            .chain(checks)
            .filter(|(_, p)| p.status.failed())
            .map(|(name, p)| format!("{name}: {}", p.check))
            .collect();
        Self {
            ok: failed.is_empty(),
            failed,
            organizations,
            targets,
        }
    }

    pub fn exit_code(&self) -> u8 {
        if self.ok {
            EXIT_OK
        } else {
            EXIT_CHECK_FAILED
        }
    }
}

/// What every target is checked with: the daemon's settings, the doctor's caps.
struct Checker {
    api: AwsApiConfig,
    shard: Shard,
    static_credentials: Option<StaticCredentials>,
    metrics: Arc<SelfMetrics>,
    registry: Arc<AccountRegistry>,
}

impl Checker {
    fn target(&self, config: TargetConfig) -> Target {
        Target::new(
            config,
            self.api.clone(),
            self.shard,
            self.static_credentials.clone(),
            self.metrics.clone(),
            self.registry.clone(),
        )
    }
}

/// Checks every target of `config` and every member target of its organisations, all at once
/// (an organisation's members [`MEMBER_CHECKS_AT_ONCE`] at a time). `static_credentials` is for
/// the simulator only.
pub async fn run(config: &Config, static_credentials: Option<StaticCredentials>) -> Report {
    let mut api = config.aws_api.clone();
    api.operation_timeout = api.operation_timeout.min(MAX_OPERATION_TIMEOUT);
    api.max_attempts = api.max_attempts.min(MAX_ATTEMPTS);
    let checker = Arc::new(Checker {
        api,
        shard: config.shard,
        static_credentials,
        metrics: Arc::new(SelfMetrics::new()),
        registry: Arc::new(AccountRegistry::default()),
    });
    let mut tasks = Vec::new();
    for t in &config.targets {
        let target = Arc::new(checker.target(t.clone()));
        let sources = config.sources.clone();
        let checked = target.clone();
        let task = tokio::spawn(async move { check_target(&checked, &sources).await });
        tasks.push((target, task));
    }
    let organizations: Vec<_> = config
        .organizations
        .iter()
        .map(|org| {
            let listing = check_organization(org.clone(), checker.clone(), config.sources.clone());
            (org.name.clone(), tokio::spawn(listing))
        })
        .collect();
    let mut targets = joined(tasks).await;
    let mut listed = Vec::new();
    for (name, task) in organizations {
        match task.await {
            Ok((report, members)) => {
                listed.push(report);
                targets.extend(members);
            }
            Err(e) => listed.push(OrganizationReport {
                organization: name,
                role_arn: None,
                accounts_listed: None,
                accounts_selected: None,
                checks: vec![Probe::error(
                    "doctor",
                    format!("the check ended abnormally: {e}"),
                    None,
                )],
            }),
        }
    }
    refuse_duplicates(&mut targets);
    Report::new(listed, targets)
}

/// Each target's report; a check that ended abnormally is reported as such.
async fn joined(tasks: Vec<(Arc<Target>, JoinHandle<TargetReport>)>) -> Vec<TargetReport> {
    let mut targets = Vec::new();
    for (target, task) in tasks {
        targets.push(task.await.unwrap_or_else(|e| {
            let mut report = TargetReport::of(&target);
            let detail = format!("the check ended abnormally: {e}");
            report.checks.push(Probe::error("doctor", detail, None));
            report
        }));
    }
    targets
}

/// An organisation target's listing; its member targets are in [`Report::targets`].
#[derive(Debug, Clone, Serialize)]
pub struct OrganizationReport {
    /// The target's name; its members are `NAME/ACCOUNT_ID/REGION`.
    pub organization: String,
    /// The role the organisation is listed with (`role_arn`), if any.
    pub role_arn: Option<String>,
    /// ACTIVE accounts listed; `None` if the listing failed.
    pub accounts_listed: Option<usize>,
    /// Those the filters select: each is checked in every region, as the daemon polls it.
    pub accounts_selected: Option<usize>,
    pub checks: Vec<Probe>,
}

const ORGANIZATION_POLICY_PATH: &str = "deploy/iam/organization-policy.json";

/// Member targets checked at once: an organisation of hundreds of accounts is checked in
/// batches, so the doctor stays well inside each account's API share and the management
/// account's STS quota.
const MEMBER_CHECKS_AT_ONCE: usize = 16;

/// Lists `org`'s accounts as the daemon does, then checks every (selected account, region)
/// target as a target of the file.
async fn check_organization(
    org: OrganizationTarget,
    checker: Arc<Checker>,
    sources: services::SourcesConfig,
) -> (OrganizationReport, Vec<TargetReport>) {
    let lister = Lister::new(
        &org,
        checker.api.clone(),
        checker.static_credentials.clone(),
        checker.metrics.clone(),
    );
    let mut report = OrganizationReport {
        organization: org.name.clone(),
        role_arn: org.lister.role.as_ref().map(|r| r.arn.clone()),
        accounts_listed: None,
        accounts_selected: None,
        checks: Vec::new(),
    };
    let accounts = match lister.accounts(&org).await {
        Ok(accounts) => accounts,
        Err(e) => {
            let op = organization::OPERATIONS
                .iter()
                .find(|op| op.name == e.operation())
                .copied()
                .unwrap_or(organization::LIST_ACCOUNTS);
            let mut probe = Probe::of(op, &Err::<(), _>(e), |_| String::new());
            probe.fix = Some(format!(
                "list the organisation from its management account or a delegated administrator, allowed the actions of {ORGANIZATION_POLICY_PATH}"
            ));
            report.checks.push(probe);
            return (report, Vec::new());
        }
    };
    let selected = accounts.iter().filter(|a| org.selects(a)).count();
    report.accounts_listed = Some(accounts.len());
    report.accounts_selected = Some(selected);
    let action = if org.organization.organizational_units.is_empty() {
        organization::LIST_ACCOUNTS
    } else {
        organization::LIST_ACCOUNTS_FOR_PARENT
    };
    report
        .checks
        .push(Probe::of(action, &Ok::<_, AwsError>(()), |_| {
            format!(
                "{} ACTIVE accounts listed, {selected} selected by the filters",
                accounts.len()
            )
        }));
    let at_once = Arc::new(tokio::sync::Semaphore::new(MEMBER_CHECKS_AT_ONCE));
    let mut tasks = Vec::new();
    for member in org.members(&accounts) {
        let target = Arc::new(checker.target(member));
        let (sources, at_once, checked) = (sources.clone(), at_once.clone(), target.clone());
        let task = tokio::spawn(async move {
            let _turn = at_once.acquire().await;
            check_target(&checked, &sources).await
        });
        tasks.push((target, task));
    }
    (report, joined(tasks).await)
}

/// A target reaching the account and region of an earlier one fails: the daemon polls only one
/// of them (see `aws::AccountRegistry`). Decided here, once every identity is known, so the
/// result does not depend on which target's STS answer came first.
fn refuse_duplicates(targets: &mut [TargetReport]) {
    let mut seen: Vec<(String, String, String)> = Vec::new();
    for t in targets {
        let (Some(account), Some(region)) = (t.account_id.clone(), t.region.clone()) else {
            continue;
        };
        match seen.iter().find(|(a, r, _)| *a == account && *r == region) {
            Some((_, _, first)) => t.checks.push(Probe::error(
                "unique account and region",
                format!("reaches account {account} in {region}, as target {first} does: the exporter polls it only once"),
                Some("remove one of the two targets, or give them different regions".into()),
            )),
            None => seen.push((account, region, t.target.clone())),
        }
    }
}

async fn check_target(target: &Target, sources: &services::SourcesConfig) -> TargetReport {
    let mut report = TargetReport::of(target);
    (report.region_source, report.region_setting) = region_source(target).await;
    let conn = match target.connect().await {
        Ok(conn) => conn,
        Err(e) => {
            report.checks.push(Probe::error(
                "region",
                e.to_string(),
                Some("set targets[].regions in the file, AWS_REGION, or a profile region".into()),
            ));
            return report;
        }
    };
    report.region = Some(conn.region.clone());

    // Credentials (assuming the role, if any) exactly as every call of the daemon resolves them.
    let credentials = match conn.sdk_config.credentials_provider() {
        None => Err("no credentials provider".to_owned()),
        Some(p) => p
            .provide_credentials()
            .await
            .map(|_| ())
            .map_err(|e| crate::error::error_chain(&e)),
    };
    let (check, ok_detail, fix) = match &report.role_arn {
        Some(arn) => (
            "sts:AssumeRole",
            format!("assumed {arn}"),
            format!("the exporter's own identity needs sts:AssumeRole on {arn}, and the role's trust policy must name it (deploy/iam/target-role-trust-policy.json)"),
        ),
        None => (
            "credentials",
            "found by the default credential chain".to_owned(),
            "give the exporter credentials: environment, profile, web identity (IRSA) or an instance role".to_owned(),
        ),
    };
    match credentials {
        Ok(()) => report.checks.push(Probe::ok(check, ok_detail)),
        Err(e) => {
            report.checks.push(Probe::error(check, e, Some(fix)));
            return report;
        }
    }

    // Identity, where the daemon would ask STS.
    match target.sts_client(&conn) {
        None => report.checks.push(Probe::skipped(
            GET_CALLER_IDENTITY,
            "endpoint_url is set without sts_endpoint_url: the daemon does not ask STS either",
        )),
        Some(sts) => {
            let result = conn
                .call(GET_CALLER_IDENTITY, || sts.get_caller_identity().send())
                .await;
            if let Ok(out) = &result {
                report.arn = out.arn().map(str::to_owned);
                if let Some(account) = out.account() {
                    report.account_id = Some(account.to_owned());
                    conn.identity
                        .learn_account(account, GET_CALLER_IDENTITY.name);
                }
            }
            report
                .checks
                .push(Probe::of(GET_CALLER_IDENTITY, &result, |out| {
                    format!(
                        "account {} as {}",
                        out.account().unwrap_or("?"),
                        out.arn().unwrap_or("?")
                    )
                }));
        }
    }
    report.sources = services::doctor(sources, &conn).await;
    report
}

/// Where the region of `target` comes from, following aws-config's default chain: (source,
/// setting).
async fn region_source(target: &Target) -> (&'static str, String) {
    if target.config.region.is_some() {
        return ("configuration", "targets[].regions".into());
    }
    for var in ["AWS_REGION", "AWS_DEFAULT_REGION"] {
        if std::env::var(var).is_ok_and(|v| !v.is_empty()) {
            return ("environment", var.into());
        }
    }
    let profile = aws_config::profile::ProfileFileRegionProvider::new();
    if profile.region().await.is_some() {
        let name = std::env::var("AWS_PROFILE").unwrap_or_else(|_| "default".into());
        return ("profile", name);
    }
    ("instance_metadata", "IMDS".into())
}

/// The report for people: one block per target.
pub fn render_table(report: &Report) -> String {
    let mut out = String::new();
    for o in &report.organizations {
        render_organization(&mut out, o);
    }
    for t in &report.targets {
        render_target(&mut out, t);
    }
    if report.ok {
        out.push_str("RESULT: ok: every check passed (exit 0)\n");
    } else {
        let _ = writeln!(
            out,
            "RESULT: {} check(s) failed (exit {EXIT_CHECK_FAILED}): {}",
            report.failed.len(),
            report.failed.join(", ")
        );
    }
    out
}

fn render_organization(out: &mut String, o: &OrganizationReport) {
    let _ = writeln!(out, "ORGANIZATION {}", o.organization);
    let _ = writeln!(
        out,
        "  role     {}",
        o.role_arn
            .as_deref()
            .unwrap_or("none (the default credentials)")
    );
    if let (Some(listed), Some(selected)) = (o.accounts_listed, o.accounts_selected) {
        let _ = writeln!(
            out,
            "  accounts {listed} ACTIVE listed, {selected} selected: each a target per region below"
        );
    }
    out.push('\n');
    let probes: Vec<&Probe> = o.checks.iter().collect();
    render_checks(out, &probes);
    out.push('\n');
}

/// The checks as a table: status, check, detail, and the fix under a failed one.
fn render_checks(out: &mut String, probes: &[&Probe]) {
    let width = probes
        .iter()
        .map(|p| p.check.len())
        .max()
        .unwrap_or(0)
        .max(5);
    let _ = writeln!(out, "  {:<8} {:<width$}  DETAIL", "STATUS", "CHECK");
    for p in probes {
        let _ = writeln!(
            out,
            "  {:<8} {:<width$}  {}",
            p.status.word(),
            p.check,
            p.detail
        );
        if let Some(fix) = &p.fix {
            let _ = writeln!(out, "  {:<8} {:<width$}  fix: {fix}", "", "");
        }
    }
}

fn render_target(out: &mut String, t: &TargetReport) {
    let _ = writeln!(out, "TARGET {}", t.target);
    let _ = writeln!(
        out,
        "  region   {} ({}: {})",
        t.region.as_deref().unwrap_or("none"),
        t.region_source,
        t.region_setting
    );
    let _ = writeln!(
        out,
        "  account  {}{}",
        t.account_id.as_deref().unwrap_or("unknown"),
        t.arn
            .as_deref()
            .map(|a| format!(" as {a}"))
            .unwrap_or_default()
    );
    let _ = writeln!(
        out,
        "  role     {}",
        t.role_arn
            .as_deref()
            .unwrap_or("none (the default credentials)")
    );
    out.push('\n');

    let probes: Vec<&Probe> = t.probes().collect();
    render_checks(out, &probes);

    if !t.sources.is_empty() {
        out.push('\n');
        let _ = writeln!(out, "  WATCHED");
        for s in &t.sources {
            if s.findings.watched.is_empty() {
                let _ = writeln!(out, "  {:<20} unknown: the listing failed", s.source);
            }
            for w in &s.findings.watched {
                let excluded: Vec<String> = w
                    .excluded
                    .iter()
                    .map(|e| format!("{} {}", e.count, e.reason))
                    .collect();
                let _ = writeln!(
                    out,
                    "  {:<20} {} of {} {}s listed{}",
                    s.source,
                    w.watched,
                    w.listed,
                    w.kind,
                    if excluded.is_empty() {
                        String::new()
                    } else {
                        format!(" (excluded: {})", excluded.join(", "))
                    }
                );
            }
        }

        out.push('\n');
        let estimates: Vec<&CallEstimate> = t
            .sources
            .iter()
            .flat_map(|s| s.findings.api_calls.iter())
            .collect();
        let width = estimates
            .iter()
            .map(|e| e.service.len() + 1 + e.operation.len())
            .max()
            .unwrap_or(0);
        let _ = writeln!(
            out,
            "  {:<width$}  {:>9}  {:>9}  ESTIMATE ASSUMES",
            "API CALLS PER HOUR", "CALLS/H", "SHARE/H"
        );
        for e in estimates {
            let name = format!("{} {}", e.service, e.operation);
            let mut assumes = e.assumes.clone();
            if let Some(p) = &e.per_active {
                assumes = format!("{assumes}; +{:.0}/h per {}", p.calls_per_hour, p.per);
            }
            if e.over_share() {
                assumes = format!("OVER THE SHARE: polls will wait for the budget; {assumes}");
            }
            let _ = writeln!(
                out,
                "  {name:<width$}  {:>9.0}  {:>9.0}  {assumes}",
                e.calls_per_hour, e.share_per_hour
            );
        }
    }
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::findings::grant;

    #[test]
    fn every_action_the_exporter_calls_has_a_statement_to_add() {
        for op in services::operations() {
            let Some(action) = op.iam_action else {
                continue;
            };
            let fix = grant(action);
            assert!(fix.contains("add statement \""), "{action}: {fix}");
        }
        assert_eq!(
            grant("states:DescribeMapRun"),
            "allow states:DescribeMapRun on \"arn:aws:states:*:*:mapRun:*\": add statement \"StepFunctionsDescribeMapRun\" of deploy/iam/policy.json to the exporter's policy"
        );
    }
}
