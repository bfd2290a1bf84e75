//! The gRPC server: Patchbay's APIs plus the standard health and reflection services.

mod system;

use anyhow::Context as _;
use patchbay_catalog::Catalog;
use patchbay_catalog::grpc::CatalogApi;
use patchbay_eventstore::EventStore;
use patchbay_proto::catalog::v1::catalog_service_server::CatalogServiceServer;
use patchbay_proto::scanning::v1::agent_service_server::AgentServiceServer;
use patchbay_proto::scanning::v1::scanning_service_server::ScanningServiceServer;
use patchbay_proto::system::v1::system_service_server::SystemServiceServer;
use patchbay_scanning::Scanning;
use patchbay_scanning::grpc::{AgentApi, ScanningApi};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;

pub use system::SystemApi;

/// The services one server process hosts.
#[derive(Debug)]
pub struct Hosted {
    /// Every hosted service's log, for `SystemService`.
    pub stores: Vec<(&'static str, EventStore)>,
    pub catalog: Option<Catalog>,
    pub scanning: Option<Scanning>,
    /// "embedded" or "distributed".
    pub mode: &'static str,
}

/// Largest request accepted: KEV documents and index chunks fit well inside it.
const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// Serves every hosted API on `listener` until `shutdown` is cancelled.
pub async fn serve(
    listener: TcpListener,
    hosted: Hosted,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let Hosted {
        stores,
        catalog,
        scanning,
        mode,
    } = hosted;
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<SystemServiceServer<SystemApi>>().await;
    for (service, _) in &stores {
        health
            .set_service_status(
                format!("patchbay.{service}"),
                tonic_health::ServingStatus::Serving,
            )
            .await;
    }
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(patchbay_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .context("building the gRPC reflection service")?;
    let address = listener.local_addr()?;
    tracing::info!(%address, mode, "Patchbay gRPC server listening");
    let catalog = catalog.map(|catalog| {
        CatalogServiceServer::new(CatalogApi::new(catalog))
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
    });
    let agents = scanning.clone().map(|scanning| {
        AgentServiceServer::new(AgentApi::new(scanning))
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
    });
    let scanning = scanning.map(|scanning| ScanningServiceServer::new(ScanningApi::new(scanning)));
    tonic::transport::Server::builder()
        .add_service(health_service)
        .add_service(reflection)
        .add_service(SystemServiceServer::new(SystemApi::new(stores, mode)))
        .add_optional_service(catalog)
        .add_optional_service(agents)
        .add_optional_service(scanning)
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown.cancelled_owned())
        .await
        .context("the gRPC server failed")
}
