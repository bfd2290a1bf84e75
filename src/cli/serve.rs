//! `patchbay server` (embedded), `patchbay serve SERVICE` (distributed) and `patchbay migrate`:
//! their settings, resolved flag > environment > settings file > default.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::ArgMatches;
use patchbay_eventstore::EventStore;
use tokio_util::sync::CancellationToken;

use super::{LogFormatArg, stop_on_signal};
use crate::distributed::{DistributedConfig, DistributedServer, ServiceName};
use crate::embedded::{EmbeddedConfig, EmbeddedServer};
use crate::host::Operations;
use crate::settings::{SettingsFile, layer};

/// Settings both server commands share.
#[derive(Debug, Clone, clap::Args)]
pub struct CommonArgs {
    /// A TOML settings file (keys: the long flag names with underscores); flags and PATCHBAY_*
    /// variables take precedence over it.
    #[arg(long, env = "PATCHBAY_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address of the Prometheus metrics endpoint (GET /metrics); none if not given.
    #[arg(long, env = "PATCHBAY_METRICS_LISTEN", value_name = "ADDR")]
    pub metrics_listen: Option<SocketAddr>,
    /// Seconds a shutdown (SIGTERM, Ctrl-C) may take to finish in-flight work before giving up.
    #[arg(
        long,
        env = "PATCHBAY_SHUTDOWN_TIMEOUT",
        value_name = "SECONDS",
        default_value_t = 20
    )]
    pub shutdown_timeout: u64,
    /// Events between two snapshots of the approvals, scanning and installing read models, which
    /// make `audit state --at` fast on long logs.
    #[arg(
        long,
        env = "PATCHBAY_SNAPSHOT_EVERY",
        value_name = "EVENTS",
        default_value_t = patchbay_eventstore::DEFAULT_SNAPSHOT_EVERY,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub snapshot_every: u64,
    /// Log line format on stderr.
    #[arg(
        long,
        env = "PATCHBAY_LOG_FORMAT",
        value_enum,
        default_value = "pretty"
    )]
    pub log_format: LogFormatArg,
}

impl CommonArgs {
    /// Fills what neither a flag nor a variable set from the settings file, if one is given.
    fn layer(&mut self, matches: &ArgMatches) -> anyhow::Result<SettingsFile> {
        let file = match &self.config {
            Some(path) => SettingsFile::load(path)?,
            None => SettingsFile::default(),
        };
        layer(
            matches,
            "metrics_listen",
            &mut self.metrics_listen,
            file.metrics_listen.map(Some),
        );
        layer(
            matches,
            "shutdown_timeout",
            &mut self.shutdown_timeout,
            file.shutdown_timeout,
        );
        layer(
            matches,
            "snapshot_every",
            &mut self.snapshot_every,
            file.snapshot_every,
        );
        layer(matches, "log_format", &mut self.log_format, file.log_format);
        Ok(file)
    }

    fn operations(&self) -> Operations {
        Operations {
            metrics_listen: self.metrics_listen,
            shutdown_timeout: Duration::from_secs(self.shutdown_timeout),
            snapshot_every: self.snapshot_every,
            ..Operations::default()
        }
    }
}

/// `patchbay server`.
#[derive(Debug, Clone, clap::Args)]
pub struct ServerArgs {
    /// Directory for the services' event logs and the bus.
    #[arg(long, env = "PATCHBAY_DATA_DIR", default_value = "./patchbay-data")]
    pub data_dir: PathBuf,
    /// Address of the gRPC server (every API, health and reflection).
    #[arg(long, env = "PATCHBAY_LISTEN", default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub common: CommonArgs,
}

impl ServerArgs {
    /// The settings after the settings file is applied.
    pub fn resolve(mut self, matches: &ArgMatches) -> anyhow::Result<Self> {
        let file = self.common.layer(matches)?;
        layer(matches, "data_dir", &mut self.data_dir, file.data_dir);
        layer(matches, "listen", &mut self.listen, file.listen);
        Ok(self)
    }
}

/// `patchbay serve SERVICE`.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    pub service: ServiceName,
    /// PostgreSQL URL of the service's own database.
    #[arg(long, env = "PATCHBAY_DATABASE_URL", value_name = "URL")]
    pub database_url: Option<String>,
    /// Most connections this process opens to the database (replicas × this must stay below
    /// PostgreSQL's max_connections).
    #[arg(
        long,
        env = "PATCHBAY_DATABASE_MAX_CONNECTIONS",
        value_name = "N",
        default_value_t = 10,
        value_parser = clap::value_parser!(u32).range(2..)
    )]
    pub database_max_connections: u32,
    /// NATS server with JetStream.
    #[arg(
        long,
        env = "PATCHBAY_NATS_URL",
        value_name = "URL",
        default_value = "nats://127.0.0.1:4222"
    )]
    pub nats_url: String,
    /// Subject prefix on NATS (every service of one Patchbay must use the same).
    #[arg(long, env = "PATCHBAY_SUBJECT_PREFIX", default_value = "patchbay")]
    pub subject_prefix: String,
    /// Address of the service's gRPC server.
    #[arg(long, env = "PATCHBAY_LISTEN", default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,
    /// wsus-sync: directory for downloaded payloads of approved updates.
    #[arg(
        long,
        env = "PATCHBAY_WSUS_CONTENT_DIR",
        default_value = "./wsus-content"
    )]
    pub content_dir: PathBuf,
    #[command(flatten)]
    pub common: CommonArgs,
}

impl ServeArgs {
    /// The settings after the settings file is applied.
    pub fn resolve(mut self, matches: &ArgMatches) -> anyhow::Result<Self> {
        let file = self.common.layer(matches)?;
        layer(
            matches,
            "database_url",
            &mut self.database_url,
            file.database_url.map(Some),
        );
        layer(
            matches,
            "database_max_connections",
            &mut self.database_max_connections,
            file.database_max_connections,
        );
        layer(matches, "nats_url", &mut self.nats_url, file.nats_url);
        layer(
            matches,
            "subject_prefix",
            &mut self.subject_prefix,
            file.subject_prefix,
        );
        layer(matches, "listen", &mut self.listen, file.listen);
        layer(
            matches,
            "content_dir",
            &mut self.content_dir,
            file.content_dir,
        );
        Ok(self)
    }

    fn config(self) -> anyhow::Result<DistributedConfig> {
        let operations = self.common.operations();
        let database_url = self.database_url.context(
            "patchbay serve needs the service's PostgreSQL database: pass --database-url, \
             set PATCHBAY_DATABASE_URL or put database_url in the --config file",
        )?;
        Ok(DistributedConfig {
            service: self.service,
            database_url,
            database_max_connections: self.database_max_connections,
            nats_url: self.nats_url,
            subject_prefix: self.subject_prefix,
            listen: self.listen,
            content_dir: self.content_dir,
            operations,
        })
    }
}

/// `patchbay migrate`.
#[derive(Debug, Clone, clap::Args)]
pub struct MigrateArgs {
    /// The database to bring to this Patchbay's schema (PostgreSQL, or sqlite://PATH).
    #[arg(long, env = "PATCHBAY_DATABASE_URL", value_name = "URL")]
    pub database_url: String,
}

pub async fn server(args: ServerArgs) -> anyhow::Result<()> {
    let _telemetry = patchbay_telemetry::init("patchbay", args.common.log_format.into())?;
    let server = EmbeddedServer::build(&EmbeddedConfig {
        data_dir: args.data_dir,
        listen: args.listen,
        operations: args.common.operations(),
    })
    .await?;
    let shutdown = CancellationToken::new();
    tokio::spawn(stop_on_signal(shutdown.clone()));
    server.run_until_stopped(shutdown).await
}

pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let _telemetry =
        patchbay_telemetry::init(args.service.as_str(), args.common.log_format.into())?;
    let server = DistributedServer::build(&args.config()?).await?;
    let shutdown = CancellationToken::new();
    tokio::spawn(stop_on_signal(shutdown.clone()));
    server.run_until_stopped(shutdown).await
}

/// Applies the event-store migrations and exits: what a deployment runs before the services start.
pub async fn migrate(args: MigrateArgs) -> anyhow::Result<()> {
    let store = EventStore::connect(&args.database_url)
        .await
        .context("cannot migrate the database at --database-url")?;
    store.close().await;
    println!(
        "database is at Patchbay {}'s schema",
        env!("CARGO_PKG_VERSION")
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory as _, FromArgMatches as _};

    use super::super::{Cli, Command};
    use super::*;

    fn serve_args(args: &[&str]) -> ServeArgs {
        let matches = Cli::command().try_get_matches_from(args).unwrap();
        let cli = Cli::from_arg_matches(&matches).unwrap();
        let Command::Serve(serve) = cli.command else {
            panic!("not serve")
        };
        let (_, sub) = matches.subcommand().unwrap();
        serve.resolve(sub).unwrap()
    }

    #[test]
    fn a_flag_beats_the_file_and_the_file_beats_the_default() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("patchbay.toml");
        std::fs::write(
            &path,
            "listen = \"0.0.0.0:6000\"\nnats_url = \"nats://from-file:4222\"\n\
             database_url = \"postgres://from-file/catalog\"\nshutdown_timeout = 7\n",
        )
        .unwrap();
        let config = path.to_str().unwrap();
        let args = serve_args(&[
            "patchbay",
            "serve",
            "catalog",
            "--config",
            config,
            "--listen",
            "127.0.0.1:7000",
        ]);
        assert_eq!(args.listen, "127.0.0.1:7000".parse().unwrap());
        assert_eq!(args.nats_url, "nats://from-file:4222");
        assert_eq!(
            args.database_url.as_deref(),
            Some("postgres://from-file/catalog")
        );
        assert_eq!(args.common.shutdown_timeout, 7);
        // Not in the file: the default.
        assert_eq!(args.subject_prefix, "patchbay");
    }

    #[test]
    fn without_a_database_url_anywhere_serve_says_where_to_give_one() {
        let args = serve_args(&["patchbay", "serve", "catalog"]);
        let error = args.config().unwrap_err().to_string();
        assert!(error.contains("--database-url"), "{error}");
        assert!(error.contains("PATCHBAY_DATABASE_URL"), "{error}");
    }
}
