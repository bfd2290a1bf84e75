//! The embedded all-in-one mode: every service's SQLite log under one data directory, the in-process
//! bus, and one gRPC port.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use patchbay_bus::{Bus, Subjects};
use patchbay_eventstore::StoreOptions;
use tokio_util::sync::CancellationToken;

use crate::host::{Host, Operations};
use crate::services::SERVICES;

/// Where the embedded server keeps its files and listens.
#[derive(Debug, Clone)]
pub struct EmbeddedConfig {
    pub data_dir: PathBuf,
    /// `127.0.0.1:0` picks a free port (tests).
    pub listen: SocketAddr,
    pub operations: Operations,
}

/// A built, not yet running, embedded server.
#[derive(Debug)]
pub struct EmbeddedServer {
    host: Host,
}

impl EmbeddedServer {
    /// Opens (creating and migrating) every service's store and the bus, and binds the gRPC port.
    pub async fn build(config: &EmbeddedConfig) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&config.data_dir).with_context(|| {
            format!(
                "cannot create the data directory {}; choose another with --data-dir",
                config.data_dir.display()
            )
        })?;
        let mut stores = Vec::new();
        for service in SERVICES {
            let url = sqlite_url(&config.data_dir, service);
            let store = crate::services::open_store(service, &url, StoreOptions::default())
                .await
                .with_context(|| format!("cannot open the {service} event log at {url}"))?;
            stores.push((service, store));
        }
        let bus_url = sqlite_url(&config.data_dir, "bus");
        let bus = Bus::in_process(&bus_url, Subjects::default())
            .await
            .with_context(|| format!("cannot open the in-process bus at {bus_url}"))?;
        let content_dir = config.data_dir.join("wsus-content");
        let host = Host::open(config.listen, stores, bus, "embedded", content_dir)
            .await?
            .with_operations(config.operations.clone());
        Ok(Self { host })
    }

    /// The address the gRPC server listens on.
    pub fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        self.host.local_addr()
    }

    /// Serves until `shutdown` is cancelled.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        self.host.run_until_stopped(shutdown).await
    }
}

fn sqlite_url(data_dir: &Path, name: &str) -> String {
    format!("sqlite://{}", data_dir.join(format!("{name}.db")).display())
}
