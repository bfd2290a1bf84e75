//! The command line: `patchbay server` runs the embedded all-in-one mode; the other commands are the
//! client, talking to a running server over gRPC (one command per file).

mod admin;
mod agent;
mod approval_rules;
mod approve;
mod audit;
mod devices;
mod eula;
mod events;
mod health;
mod info;
mod jobs;
mod output;
mod report;
mod serve;
mod sources;
mod tasks;
mod updates;
mod wsus;

use std::process::ExitCode;

use anyhow::Context as _;
use clap::{CommandFactory as _, FromArgMatches as _, Parser, Subcommand, ValueEnum};
use patchbay_telemetry::LogFormat;
use tokio_util::sync::CancellationToken;

use output::OutputFormat;

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
    Server(serve::ServerArgs),
    /// Run one service on its own (distributed mode): its log in PostgreSQL, events over NATS JetStream.
    ///
    /// Every setting comes from its flag, its PATCHBAY_* variable or the --config file, in that order.
    Serve(serve::ServeArgs),
    /// Bring a service's database to this version's schema and exit (run before starting services).
    Migrate(serve::MigrateArgs),
    /// Show a running server's version, mode and services.
    Info {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Ask a server's gRPC health service (exit 0 only if SERVING): for container health checks.
    Health {
        #[command(flatten)]
        client: ClientArgs,
        #[command(flatten)]
        args: health::HealthArgs,
    },
    /// Import update sources into the catalog.
    Sources {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        command: sources::SourcesCommand,
    },
    /// Run the device agent: register, report the inventory, run the install jobs the server sends.
    Agent(agent::AgentArgs),
    /// Devices, their inventories and required updates.
    Devices {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        command: devices::DevicesCommand,
    },
    /// Scans for required updates and vulnerabilities.
    Scan {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        command: devices::ScanCommand,
    },
    /// The catalog's updates.
    Updates {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        command: updates::UpdatesCommand,
    },
    /// EULAs updates need: accept or decline their current text.
    Eula {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        command: eula::EulaCommand,
    },
    /// Auto-approval rules: approve or decline matching updates as they arrive.
    ApprovalRules {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        command: approval_rules::ApprovalRulesCommand,
    },
    /// Install tasks: "Install required updates and fix vulnerabilities", "Install Windows Update updates".
    Tasks {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        command: tasks::TasksCommand,
    },
    /// Install and uninstall jobs and their results.
    Jobs {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        command: jobs::JobsCommand,
    },
    /// Administration: `admin rebuild [--verify]` rebuilds the read models from the logs.
    Admin {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        command: admin::AdminCommand,
    },
    /// Audit: `audit verify` checks each log's hash chain.
    Audit {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        command: audit::AuditCommand,
    },
    /// Every service's events, decoded: `events list` with filters, `events tail` live.
    Events {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        command: events::EventsCommand,
    },
    /// WSUS sync: synchronise Microsoft update metadata from an upstream WSUS or Microsoft Update.
    Wsus {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        command: wsus::WsusCommand,
    },
    /// Reports (`report installs`: results of installation of updates; -o table|json|csv|html).
    Report(report::ReportArgs),
}

#[derive(Debug, clap::Args)]
struct ClientArgs {
    /// gRPC address of the Patchbay server.
    #[arg(
        long,
        global = true,
        env = "PATCHBAY_SERVER",
        default_value = "http://127.0.0.1:50051"
    )]
    server: String,
    /// Output format.
    #[arg(
        short = 'o',
        long = "output",
        global = true,
        value_enum,
        default_value = "table"
    )]
    output: OutputFormat,
}

impl ClientArgs {
    async fn channel(&self) -> anyhow::Result<tonic::transport::Channel> {
        let endpoint =
            tonic::transport::Endpoint::from_shared(self.server.clone()).with_context(|| {
                format!(
                    "--server {:?} is not a URL like http://127.0.0.1:50051",
                    self.server
                )
            })?;
        endpoint.connect().await.with_context(|| {
            format!(
                "cannot reach a Patchbay server at {}; start one with `patchbay server` or pass --server",
                self.server
            )
        })
    }
}

/// A gRPC error as the server worded it.
fn status_error(status: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{} ({:?})", status.message(), status.code())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormatArg {
    Pretty,
    Json,
}

impl From<LogFormatArg> for LogFormat {
    fn from(format: LogFormatArg) -> Self {
        match format {
            LogFormatArg::Pretty => LogFormat::Pretty,
            LogFormatArg::Json => LogFormat::Json,
        }
    }
}

/// Parses the command line, runs the command and turns an error into a message and exit code 1.
pub async fn run() -> ExitCode {
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(error) => error.exit(),
    };
    // The server commands read their settings file against what the command line set.
    let sub_matches = matches
        .subcommand()
        .map(|(_, sub)| sub.clone())
        .unwrap_or_default();
    match execute(cli, &sub_matches).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn execute(cli: Cli, matches: &clap::ArgMatches) -> anyhow::Result<()> {
    match cli.command {
        Command::Server(args) => serve::server(args.resolve(matches)?).await,
        Command::Serve(args) => serve::serve(args.resolve(matches)?).await,
        Command::Migrate(args) => serve::migrate(args).await,
        Command::Info { client } => info::run(&client).await,
        Command::Health { client, args } => health::run(&client, args).await,
        Command::Sources { client, command } => sources::run(&client, command).await,
        Command::Updates { client, command } => updates::run(&client, command).await,
        Command::Eula { client, command } => eula::run(&client, command).await,
        Command::ApprovalRules { client, command } => approval_rules::run(&client, command).await,
        Command::Agent(args) => agent::run(args).await,
        Command::Tasks { client, command } => tasks::run(&client, command).await,
        Command::Jobs { client, command } => jobs::run(&client, command).await,
        Command::Report(args) => report::run(args).await,
        Command::Wsus { client, command } => wsus::run(&client, command).await,
        Command::Events { client, command } => events::run(&client, command).await,
        Command::Audit { client, command } => audit::run(&client, command).await,
        Command::Admin { client, command } => admin::run(&client, command).await,
        Command::Devices { client, command } => devices::devices(&client, command).await,
        Command::Scan { client, command } => devices::scan(&client, command).await,
    }
}

/// Cancels `shutdown` on Ctrl-C or SIGTERM.
pub(crate) async fn stop_on_signal(shutdown: CancellationToken) {
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
