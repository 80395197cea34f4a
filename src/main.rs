use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use tokio::sync::{mpsc, oneshot, watch};
use tracing_subscriber::EnvFilter;

use aws_workflow_exporter::app::Exporter;
use aws_workflow_exporter::cli::{Cli, Command, LogFormat, Output, DEFAULT_LOG_LEVEL};
use aws_workflow_exporter::config::Config;
use aws_workflow_exporter::doctor;
use aws_workflow_exporter::shard::Shard;
use aws_workflow_exporter::simulator;
use aws_workflow_exporter::web::{self, Lifecycle, Limits, ReloadReply, Web, WebConfigHandle};

fn init_logging(cli: &Cli) -> anyhow::Result<()> {
    // `doctor` reports on stdout; its logs would only repeat the report, unless asked for.
    let doctor = matches!(cli.command, Some(Command::Doctor { .. }));
    let level = if doctor && cli.log_level == DEFAULT_LOG_LEVEL {
        "error"
    } else {
        &cli.log_level
    };
    let filter = EnvFilter::try_new(level)
        .with_context(|| format!("invalid --log.level `{}`", cli.log_level))?;
    // Colour only for a person at a terminal: piped to a file, journald or `kubectl logs`,
    // escape codes would garble every line. NO_COLOR (no-color.org) turns it off there too.
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.init(),
    }
    Ok(())
}

/// Turns `shutdown` true on SIGTERM or SIGINT; sends a reload request on SIGHUP.
fn handle_signals(shutdown: Arc<watch::Sender<bool>>, reloads: mpsc::Sender<ReloadReply>) {
    #[cfg(unix)]
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            tracing::warn!("cannot install a SIGHUP handler; reload with POST /-/reload");
            return;
        };
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading");
            let (reply, _outcome) = oneshot::channel();
            if reloads.send(reply).await.is_err() {
                return;
            }
        }
    });
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("SIGTERM handler");
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        tracing::info!("shutting down");
        let _ = shutdown.send(true);
    });
}

async fn serve(exporter: Exporter, cli: &Cli) -> anyhow::Result<()> {
    let web_config = match &cli.web_config_file {
        Some(path) => WebConfigHandle::load(path).context("invalid --web.config.file")?,
        None => WebConfigHandle::none(),
    };
    let (shutdown_tx, shutdown) = watch::channel(false);
    let shutdown_tx = Arc::new(shutdown_tx);
    let (reload_tx, reloads) = mpsc::channel(4);
    let web = Arc::new(Web {
        telemetry_path: cli.telemetry_path.clone(),
        config: Arc::new(web_config),
        lifecycle: cli.enable_lifecycle.then(|| Lifecycle {
            reload: reload_tx.clone(),
            quit: shutdown_tx.clone(),
        }),
        limits: Limits {
            max_connections: cli.max_connections as usize,
            ..Limits::default()
        },
    });
    let mut listeners = Vec::new();
    for address in &cli.listen_addresses {
        let listener = web::bind(address)
            .await
            .with_context(|| format!("cannot listen on {address}"))?;
        let tls = web.config.current().tls.is_some();
        tracing::info!(address = %listener.local_addr()?, path = %web.telemetry_path, tls, "serving metrics");
        listeners.push(listener);
    }
    handle_signals(shutdown_tx, reload_tx);
    exporter.run(listeners, web, reloads, shutdown).await;
    Ok(())
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match &cli.command {
        Some(Command::CheckConfig { path }) => match Config::load(path) {
            Ok(config) => {
                println!(
                    "{}: valid ({} target(s), sources: {})",
                    path.display(),
                    config.targets.len(),
                    config.enabled_sources().join(", ")
                );
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => {
                eprintln!("{e}");
                Ok(ExitCode::FAILURE)
            }
        },
        Some(Command::Doctor { output }) => Ok(run_doctor(&cli, *output).await),
        Some(Command::Demo { poll_interval_secs }) => {
            let demo = simulator::demo::start(std::time::Duration::from_secs(
                (*poll_interval_secs).max(1),
            ))
            .await?;
            tracing::info!(simulator = %demo.endpoint, "demo: the exporter polls the built-in AWS simulator");
            serve(demo.exporter, &cli).await?;
            Ok(ExitCode::SUCCESS)
        }
        None => {
            let mut config = match &cli.config_file {
                Some(path) => Config::load(path)?,
                None => Config::from_environment()?,
            };
            config.shard = Shard::new(cli.shard, cli.total_shards)?;
            tracing::info!(
                targets = config.targets.len(),
                sources = ?config.enabled_sources(),
                shard = config.shard.ordinal(),
                total_shards = config.shard.total(),
                "starting"
            );
            let mut exporter = Exporter::new(&config, None);
            if let Some(path) = &cli.config_file {
                exporter = exporter.with_config_file(path.clone());
            }
            serve(exporter, &cli).await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `doctor`: exit 2 for an invalid configuration, else the report's status.
async fn run_doctor(cli: &Cli, output: Output) -> ExitCode {
    let config = match &cli.config_file {
        Some(path) => Config::load(path),
        None => Config::from_environment(),
    };
    let mut config = match config {
        Ok(config) => config,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(doctor::EXIT_CONFIG_ERROR);
        }
    };
    config.shard = match Shard::new(cli.shard, cli.total_shards) {
        Ok(shard) => shard,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(doctor::EXIT_CONFIG_ERROR);
        }
    };
    let report = doctor::run(&config, None).await;
    match output {
        Output::Table => print!("{}", doctor::render_table(&report)),
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("the report serialises")
        ),
    }
    ExitCode::from(report.exit_code())
}

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    init_logging(&cli)?;
    run(cli).await
}
