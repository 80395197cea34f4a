//! Command-line flags, Prometheus style.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

pub const DEFAULT_LISTEN_ADDRESS: &str = "0.0.0.0:9810";
pub const DEFAULT_LOG_LEVEL: &str = "info";

#[derive(Debug, Parser)]
#[command(
    name = "aws-workflow-exporter",
    version,
    about = "Prometheus exporter for AWS Step Functions Map Runs, Transfer Family workflows and AppFlow flow runs"
)]
pub struct Cli {
    /// YAML configuration file. Without one, every source polls the default credentials' account and region.
    #[arg(long = "config.file", value_name = "PATH", global = true)]
    pub config_file: Option<PathBuf>,

    /// Address to serve on; repeat the flag to listen on several.
    #[arg(long = "web.listen-address", value_name = "ADDR", default_values_t = [DEFAULT_LISTEN_ADDRESS.to_owned()], action = clap::ArgAction::Append, global = true)]
    pub listen_addresses: Vec<String>,

    /// Path under which the metrics are served.
    #[arg(long = "web.telemetry-path", value_name = "PATH", default_value = "/metrics", value_parser = parse_telemetry_path, global = true)]
    pub telemetry_path: String,

    /// Web configuration file (exporter-toolkit format) for TLS, basic authentication and response headers.
    #[arg(long = "web.config.file", value_name = "PATH", global = true)]
    pub web_config_file: Option<PathBuf>,

    /// Enable the lifecycle endpoints: POST /-/reload and POST /-/quit.
    #[arg(long = "web.enable-lifecycle", global = true)]
    pub enable_lifecycle: bool,

    /// Maximum number of simultaneous HTTP connections; more wait until one closes.
    #[arg(long = "web.max-connections", value_name = "N", default_value_t = 512, value_parser = clap::value_parser!(u32).range(1..=1_000_000), global = true)]
    pub max_connections: u32,

    /// Log level: error, warn, info, debug, trace (or a tracing filter such as `info,aws_workflow_exporter=debug`).
    #[arg(
        long = "log.level",
        value_name = "LEVEL",
        default_value = DEFAULT_LOG_LEVEL,
        global = true
    )]
    pub log_level: String,

    /// Log format.
    #[arg(long = "log.format", value_enum, default_value = "text", global = true)]
    pub log_format: LogFormat,

    /// This replica's shard, 0 to --total-shards minus 1: it polls and exports only the resources
    /// whose hash falls on it. In a StatefulSet, pass the pod index (the
    /// apps.kubernetes.io/pod-index label through the downward API).
    #[arg(long = "shard", value_name = "N", default_value_t = 0, global = true)]
    pub shard: u32,

    /// How many replicas share the resources (and the API budget) between them.
    #[arg(
        long = "total-shards",
        value_name = "M",
        default_value_t = 1,
        global = true
    )]
    pub total_shards: u32,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// How `doctor` prints its report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate a configuration file and exit: 0 if valid, 1 with every error otherwise.
    CheckConfig {
        /// The file to check.
        path: PathBuf,
    },
    /// Check, per target and region, what the exporter needs from AWS (credentials, role,
    /// identity, each IAM action of the enabled sources, what would be watched, the API calls
    /// per hour) with read-only calls, and exit: 0 if every check passed, 1 if one failed,
    /// 2 if the configuration is invalid. Logs only errors unless --log.level names another level.
    Doctor {
        /// `table` for people, `json` for scripts (shape: docs/doctor.schema.json).
        #[arg(long = "output", value_enum, default_value = "table")]
        output: Output,
    },
    /// Run against the built-in AWS simulator with a living scenario: no AWS account needed.
    Demo {
        /// Seconds between polls (and scenario steps) in the demo.
        #[arg(
            long = "demo.poll-interval",
            value_name = "SECONDS",
            default_value_t = 5
        )]
        poll_interval_secs: u64,
    },
}

/// A telemetry path must be absolute and must not hide another endpoint.
fn parse_telemetry_path(path: &str) -> Result<String, String> {
    if !path.starts_with('/') || path == "/" {
        return Err("must start with `/` and name a path, e.g. /metrics".into());
    }
    if path.starts_with("/-/") || path == "/healthz" || path == "/readyz" {
        return Err(format!("`{path}` is taken by another endpoint"));
    }
    Ok(path.to_owned())
}
