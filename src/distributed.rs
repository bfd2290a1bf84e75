//! The distributed mode: one service per process (`patchbay serve <service>`), its log in PostgreSQL,
//! events over NATS JetStream; replicas of a service share its database and durable consumers.

use std::net::SocketAddr;

use anyhow::Context as _;
use patchbay_bus::{Bus, Subjects};
use patchbay_eventstore::StoreOptions;
use tokio_util::sync::CancellationToken;

use crate::host::{Host, Operations};

/// The services that can run on their own today.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ServiceName {
    Catalog,
    Approvals,
    Scanning,
    Installing,
    WsusSync,
}

impl ServiceName {
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceName::Catalog => "catalog",
            ServiceName::Approvals => "approvals",
            ServiceName::Scanning => "scanning",
            ServiceName::Installing => "installing",
            ServiceName::WsusSync => "wsus-sync",
        }
    }
}

#[derive(Debug, Clone)]
pub struct DistributedConfig {
    pub service: ServiceName,
    pub database_url: String,
    /// The store's connection pool size.
    pub database_max_connections: u32,
    pub nats_url: String,
    /// Subject prefix on NATS, so several Patchbays (or test runs) can share one NATS.
    pub subject_prefix: String,
    pub listen: SocketAddr,
    /// Where the WSUS sync service keeps downloaded payloads.
    pub content_dir: std::path::PathBuf,
    pub operations: Operations,
}

#[derive(Debug)]
pub struct DistributedServer {
    host: Host,
}

impl DistributedServer {
    pub async fn build(config: &DistributedConfig) -> anyhow::Result<Self> {
        let service = config.service.as_str();
        let options = StoreOptions {
            max_connections: config.database_max_connections,
            ..StoreOptions::default()
        };
        let store = crate::services::open_store(service, &config.database_url, options)
            .await
            .with_context(|| format!("cannot open the {service} event log at --database-url"))?;
        let subjects = Subjects::new(&config.subject_prefix)?;
        let bus = Bus::nats(&config.nats_url, subjects)
            .await
            .with_context(|| format!("cannot reach NATS at {}", config.nats_url))?;
        let host = Host::open(
            config.listen,
            vec![(service, store)],
            bus,
            "distributed",
            config.content_dir.clone(),
        )
        .await?
        .with_operations(config.operations.clone());
        Ok(Self { host })
    }

    pub fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        self.host.local_addr()
    }

    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        self.host.run_until_stopped(shutdown).await
    }
}
