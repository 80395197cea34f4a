//! The services the exporter polls, one folder each, and the registry below: the only place
//! that names every service. A service's module name is also its config key under `sources:`
//! and its `source` label.
//!
//! Each service folder holds `config.rs` (its section of the file), `client.rs` (its SDK calls
//! and their [`Operation`] rows), `convert.rs` (SDK types to observations), `state.rs` (what is
//! tracked between polls), `metrics.rs` (its metric definitions and families) and `mod.rs`
//! (its [`Source`] and `build`), and `doctor.rs` (what `aws-workflow-exporter doctor` checks,
//! with the calls of its `client.rs`).

pub mod appflow_flows;
pub mod sfn_map_runs;
pub mod source;
pub mod transfer_workflows;

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::aws::operation::{Operation, GET_CALLER_IDENTITY};
use crate::aws::{Connection, Target};
use crate::config::check::Check;
use crate::doctor::findings::SourceReport;
use crate::exposition::metric::MetricDef;
use crate::exposition::self_metrics;
use crate::services::source::{Runner, Source};
use crate::tags::TagsConfig;

/// Declares the registry from one entry per service: `module(Type): "docs/metrics.md section
/// title"`, where `Type` implements [`source::Service`]. Each module provides
/// `config::{Config, Raw}` (with `enabled`, `poll_interval`, `tags` and `Raw::validate`),
/// `metrics::DEFS`, `client::OPERATIONS` and `doctor::check`.
macro_rules! registry {
    ($($service:ident($implementation:ident): $title:literal),+ $(,)?) => {
        /// The `sources` section of the file, validated: one section per service.
        #[derive(Debug, Clone)]
        pub struct SourcesConfig {
            $(pub $service: $service::config::Config,)+
        }

        /// The `sources` section as written.
        #[derive(Debug, Default, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct RawSources {
            $(#[serde(default)] pub $service: $service::config::Raw,)+
        }

        impl RawSources {
            /// Validates each section; `poll_interval` and `tags` are the top-level defaults.
            pub fn validate(
                self,
                c: &mut Check,
                poll_interval: Duration,
                tags: &TagsConfig,
            ) -> SourcesConfig {
                SourcesConfig {
                    $($service: {
                        let mut section = self.$service.validate(
                            c,
                            concat!("sources.", stringify!($service)),
                            poll_interval,
                        );
                        section.tags.inherit(tags);
                        section
                    },)+
                }
            }
        }

        impl SourcesConfig {
            /// Sources that are enabled, by their `source` label.
            pub fn enabled(&self) -> Vec<&'static str> {
                let mut out = Vec::new();
                $(if self.$service.enabled {
                    out.push(stringify!($service));
                })+
                out
            }

            /// Enables exactly the named sources (tests and the demo pick theirs this way).
            pub fn enable_only(&mut self, names: &[&str]) {
                $(self.$service.enabled = names.contains(&stringify!($service));)+
            }

            /// Sets every source's poll interval (the demo polls all of them fast).
            pub fn set_poll_interval(&mut self, interval: Duration) {
                $(self.$service.poll_interval = interval;)+
            }

            /// The settings of `source`'s section, to tell whether a reload changed them
            /// (Debug text: sections hold regular expressions, which have no equality).
            pub fn settings(&self, source: &str) -> String {
                $(if source == stringify!($service) {
                    return format!("{:?}", self.$service);
                })+
                String::new()
            }
        }

        /// One instance of every enabled source for every target; each gets only its own section.
        pub fn build(
            sources: &SourcesConfig,
            targets: &[Arc<Target>],
            started_at: f64,
        ) -> Vec<Box<dyn Source>> {
            let mut out: Vec<Box<dyn Source>> = Vec::new();
            for target in targets {
                $(if sources.$service.enabled {
                    out.push(Runner::<$service::$implementation>::boxed(
                        stringify!($service),
                        target.clone(),
                        &sources.$service,
                        sources.$service.poll_interval,
                        started_at,
                    ));
                })+
            }
            out
        }

        /// What `doctor` finds for every enabled source on one reached target: each service
        /// checks its IAM actions with its own client calls (its `doctor.rs`).
        pub async fn doctor(sources: &SourcesConfig, conn: &Arc<Connection>) -> Vec<SourceReport> {
            let mut out = Vec::new();
            $(if sources.$service.enabled {
                out.push(SourceReport {
                    source: stringify!($service),
                    findings: $service::doctor::check(conn.clone(), &sources.$service).await,
                });
            })+
            out
        }

        /// Every metric the exporter declares, by the part of the exporter that emits it.
        pub fn catalog() -> Vec<(&'static str, &'static [&'static MetricDef])> {
            vec![
                $(($title, $service::metrics::DEFS),)+
                ("The exporter itself", self_metrics::DEFS),
            ]
        }

        /// Every AWS operation the exporter can call. The IAM policy in deploy/iam is checked
        /// against this list.
        pub fn operations() -> Vec<Operation> {
            let mut out = vec![GET_CALLER_IDENTITY];
            $(out.extend_from_slice($service::client::OPERATIONS);)+
            out
        }

        /// The AWS operations a source calls, by its `source` label (none for an unknown label).
        pub fn operations_of(source: &str) -> &'static [Operation] {
            $(if source == stringify!($service) {
                return $service::client::OPERATIONS;
            })+
            &[]
        }
    };
}

registry! {
    sfn_map_runs(SfnMapRuns): "Step Functions Map Runs (source `sfn_map_runs`)",
    transfer_workflows(TransferWorkflows): "Transfer Family workflows (source `transfer_workflows`)",
    appflow_flows(AppflowFlows): "AppFlow flows (source `appflow_flows`)",
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::config::check::DEFAULT_POLL_INTERVAL;
    use crate::config::{inline_path, Config, Selection};

    #[test]
    fn iam_actions_follow_service_prefixes() {
        assert_eq!(
            super::sfn_map_runs::client::DESCRIBE_MAP_RUN.iam_action,
            Some("states:DescribeMapRun")
        );
        assert_eq!(
            super::transfer_workflows::client::LIST_EXECUTIONS.iam_action,
            Some("transfer:ListExecutions")
        );
        assert_eq!(crate::aws::operation::GET_CALLER_IDENTITY.iam_action, None);
    }

    #[test]
    fn no_file_means_one_default_target_and_all_sources() {
        let c = Config::defaults();
        assert_eq!(c.targets.len(), 1);
        assert_eq!(c.targets[0].region, None);
        assert_eq!(
            c.enabled_sources(),
            vec!["sfn_map_runs", "transfer_workflows", "appflow_flows"]
        );
        assert_eq!(c.sources.sfn_map_runs.poll_interval, DEFAULT_POLL_INTERVAL);
    }

    #[test]
    fn targets_expand_per_region_and_source_interval_defaults_to_global() {
        let c = Config::parse(
            "poll_interval: 2m\ntargets:\n  - name: prod\n    regions: [us-east-1, eu-west-1]\nsources:\n  sfn_map_runs:\n    poll_interval: 30s\n",
            &inline_path(),
        )
        .unwrap();
        assert_eq!(c.targets.len(), 2);
        assert_eq!(c.targets[1].region.as_deref(), Some("eu-west-1"));
        assert_eq!(
            c.sources.sfn_map_runs.poll_interval,
            Duration::from_secs(30)
        );
        assert_eq!(
            c.sources.transfer_workflows.poll_interval,
            Duration::from_secs(120)
        );
    }

    #[test]
    fn discovery_interval_defaults_to_five_of_the_sections_polls() {
        let c = Config::parse(
            "poll_interval: 2m
sources:
  sfn_map_runs:
    poll_interval: 30s
  transfer_workflows:
    discovery_interval: 0s
",
            &inline_path(),
        )
        .unwrap();
        let sfn = &c.sources.sfn_map_runs;
        assert_eq!(sfn.discovery_interval, Duration::from_secs(150));
        assert_eq!(
            c.sources.transfer_workflows.discovery_interval,
            Duration::ZERO
        );
        let err = Config::parse(
            "sources:\n  sfn_map_runs:\n    discovery_interval: soon\n",
            &inline_path(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("sources.sfn_map_runs.discovery_interval"),
            "{err}"
        );
    }

    #[test]
    fn selection_is_an_or_of_its_parts() {
        let c = Config::parse(
            "sources:\n  sfn_map_runs:\n    state_machines:\n      names: [ingest]\n      name_regex: '^etl-'\n",
            &inline_path(),
        )
        .unwrap();
        let s = &c.sources.sfn_map_runs.state_machines;
        assert!(s.matches("ingest", "arn:x"));
        assert!(s.matches("etl-daily", "arn:y"));
        assert!(!s.matches("other", "arn:z"));
        assert!(Selection::default().matches("anything", "arn"));
    }
}
