use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing_subscriber::EnvFilter;

use aws_workflow_exporter::app::Exporter;
use aws_workflow_exporter::cli::{Cli, Command, LogFormat};
use aws_workflow_exporter::config::Config;
use aws_workflow_exporter::shard::Shard;
use aws_workflow_exporter::simulator;

fn init_logging(cli: &Cli) -> anyhow::Result<()> {
    let filter = EnvFilter::try_new(&cli.log_level)
        .with_context(|| format!("invalid --log.level `{}`", cli.log_level))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.init(),
    }
    Ok(())
}

/// A watch channel that turns true on SIGTERM or SIGINT.
fn shutdown_signal() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
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
        let _ = tx.send(true);
    });
    rx
}

async fn serve(exporter: Exporter, address: &str) -> anyhow::Result<()> {
    let listener = TcpListener::bind(address)
        .await
        .with_context(|| format!("cannot listen on {address}"))?;
    tracing::info!(address = %listener.local_addr()?, "serving /metrics");
    exporter.run(listener, shutdown_signal()).await;
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
        Some(Command::Demo { poll_interval_secs }) => {
            let demo = simulator::demo::start(std::time::Duration::from_secs(
                (*poll_interval_secs).max(1),
            ))
            .await?;
            tracing::info!(simulator = %demo.endpoint, "demo: the exporter polls the built-in AWS simulator");
            serve(demo.exporter, &cli.listen_address).await?;
            Ok(ExitCode::SUCCESS)
        }
        None => {
            let mut config = match &cli.config_file {
                Some(path) => Config::load(path)?,
                None => Config::defaults(),
            };
            config.shard = Shard::new(cli.shard, cli.total_shards)?;
            tracing::info!(
                targets = config.targets.len(),
                sources = ?config.enabled_sources(),
                shard = config.shard.ordinal(),
                total_shards = config.shard.total(),
                "starting"
            );
            serve(Exporter::new(&config, None), &cli.listen_address).await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    init_logging(&cli)?;
    run(cli).await
}
