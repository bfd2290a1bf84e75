//! The command line: `patchbay server` runs the embedded all-in-one mode; client commands talk to a
//! running server over gRPC.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use patchbay_proto::system::v1::GetServerInfoRequest;
use patchbay_proto::system::v1::system_service_client::SystemServiceClient;
use patchbay_telemetry::LogFormat;
use tokio_util::sync::CancellationToken;

use crate::embedded::{EmbeddedConfig, EmbeddedServer};

#[derive(Debug, Parser)]
#[command(
    name = "patchbay",
    version,
    about = "Patch- and vulnerability-management server"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run every service in one process: SQLite logs under --data-dir, the in-process bus, one gRPC port.
    Server {
        /// Directory for the services' event logs and the bus.
        #[arg(long, env = "PATCHBAY_DATA_DIR", default_value = "./patchbay-data")]
        data_dir: PathBuf,
        /// Address of the gRPC server (every API, health and reflection).
        #[arg(long, env = "PATCHBAY_LISTEN", default_value = "127.0.0.1:50051")]
        listen: SocketAddr,
        /// Log line format on stderr.
        #[arg(
            long,
            env = "PATCHBAY_LOG_FORMAT",
            value_enum,
            default_value = "pretty"
        )]
        log_format: LogFormatArg,
    },
    /// Show a running server's version, mode and services.
    Info {
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Debug, clap::Args)]
struct ClientArgs {
    /// gRPC address of the Patchbay server.
    #[arg(
        long,
        env = "PATCHBAY_SERVER",
        default_value = "http://127.0.0.1:50051"
    )]
    server: String,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value = "table")]
    output: OutputFormat,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormatArg {
    Pretty,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum OutputFormat {
    Table,
    Json,
}

/// Parses the command line, runs the command and turns an error into a message and exit code 1.
pub async fn run() -> ExitCode {
    let cli = Cli::parse();
    match execute(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn execute(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Server {
            data_dir,
            listen,
            log_format,
        } => {
            let _telemetry = patchbay_telemetry::init(
                "patchbay",
                match log_format {
                    LogFormatArg::Pretty => LogFormat::Pretty,
                    LogFormatArg::Json => LogFormat::Json,
                },
            )?;
            let server = EmbeddedServer::build(&EmbeddedConfig { data_dir, listen }).await?;
            let shutdown = CancellationToken::new();
            tokio::spawn(stop_on_signal(shutdown.clone()));
            server.run_until_stopped(shutdown).await
        }
        Command::Info { client } => info(&client).await,
    }
}

async fn info(args: &ClientArgs) -> anyhow::Result<()> {
    let mut client = SystemServiceClient::connect(args.server.clone())
        .await
        .with_context(|| {
            format!(
                "cannot reach a Patchbay server at {}; start one with `patchbay server` or pass --server",
                args.server
            )
        })?;
    let info = client
        .get_server_info(GetServerInfoRequest {})
        .await
        .map_err(|status| anyhow::anyhow!("{}", status.message()))?
        .into_inner();
    match args.output {
        OutputFormat::Json => {
            let services: Vec<_> = info
                .services
                .iter()
                .map(|s| {
                    serde_json::json!({
                        "name": s.name, "event_count": s.event_count, "relay_lag": s.relay_lag,
                    })
                })
                .collect();
            let document = serde_json::json!({
                "version": info.version, "mode": info.mode, "services": services,
            });
            println!("{}", serde_json::to_string_pretty(&document)?);
        }
        OutputFormat::Table => {
            println!("Patchbay {} ({} mode)", info.version, info.mode);
            let mut table = comfy_table::Table::new();
            table.load_style(comfy_table::presets::UTF8_FULL_CONDENSED);
            table.set_header(["service", "events", "not yet relayed"]);
            for service in &info.services {
                table.add_row([
                    service.name.clone(),
                    service.event_count.to_string(),
                    service.relay_lag.to_string(),
                ]);
            }
            println!("{table}");
        }
    }
    Ok(())
}

/// Cancels `shutdown` on Ctrl-C or SIGTERM.
async fn stop_on_signal(shutdown: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM; stop with Ctrl-C");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        () = terminate => {}
    }
    tracing::info!("shutting down");
    shutdown.cancel();
}
