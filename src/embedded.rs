//! The embedded all-in-one mode: every service's SQLite log under one data directory, the in-process
//! bus, a relay per service and one gRPC port.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use patchbay_bus::{Bus, Relay, Subjects};
use patchbay_catalog::Catalog;
use patchbay_eventstore::EventStore;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::grpc;
use crate::services::SERVICES;

/// Where the embedded server keeps its files and listens.
#[derive(Debug, Clone)]
pub struct EmbeddedConfig {
    pub data_dir: PathBuf,
    /// `127.0.0.1:0` picks a free port (tests).
    pub listen: SocketAddr,
}

/// A built, not yet running, embedded server.
#[derive(Debug)]
pub struct EmbeddedServer {
    listener: TcpListener,
    stores: Vec<(&'static str, EventStore)>,
    bus: Bus,
    catalog: Catalog,
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
            let store = EventStore::connect(&url)
                .await
                .with_context(|| format!("cannot open the {service} event log at {url}"))?;
            stores.push((service, store));
        }
        let catalog_store = store_of(&stores, "catalog")?;
        let catalog = Catalog::open(catalog_store)
            .await
            .context("cannot read the catalog log")?;
        let bus_url = sqlite_url(&config.data_dir, "bus");
        let bus = Bus::in_process(&bus_url, Subjects::default())
            .await
            .with_context(|| format!("cannot open the in-process bus at {bus_url}"))?;
        let listener = TcpListener::bind(config.listen).await.with_context(|| {
            format!(
                "cannot listen on {}; is another Patchbay running? choose another with --listen",
                config.listen
            )
        })?;
        Ok(Self {
            listener,
            stores,
            bus,
            catalog,
        })
    }

    /// The address the gRPC server listens on.
    pub fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.listener.local_addr()?)
    }

    /// Serves until `shutdown` is cancelled, then stops the relays and drains requests.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let mut relays = Vec::new();
        for (service, store) in &self.stores {
            let relay = Relay::new(service, store.clone(), self.bus.clone())?;
            relays.push(tokio::spawn(relay.run(shutdown.child_token())));
        }
        let follower = tokio::spawn(self.catalog.clone().follow(shutdown.child_token()));
        let hosted = grpc::Hosted {
            stores: self.stores,
            catalog: Some(self.catalog),
            mode: "embedded",
        };
        let served = grpc::serve(self.listener, hosted, shutdown.clone()).await;
        shutdown.cancel();
        for relay in relays {
            relay.await??;
        }
        follower.await??;
        served
    }
}

fn store_of(stores: &[(&'static str, EventStore)], service: &str) -> anyhow::Result<EventStore> {
    stores
        .iter()
        .find(|(name, _)| *name == service)
        .map(|(_, store)| store.clone())
        .ok_or_else(|| anyhow::anyhow!("the {service} service has no event log"))
}

fn sqlite_url(data_dir: &Path, name: &str) -> String {
    format!("sqlite://{}", data_dir.join(format!("{name}.db")).display())
}
