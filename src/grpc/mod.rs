//! The gRPC server: Patchbay's APIs plus the standard health and reflection services.

mod system;

use anyhow::Context as _;
use patchbay_eventstore::EventStore;
use patchbay_proto::system::v1::system_service_server::SystemServiceServer;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;

pub use system::SystemApi;

/// Serves every API on `listener` until `shutdown` is cancelled.
pub async fn serve(
    listener: TcpListener,
    stores: Vec<(&'static str, EventStore)>,
    mode: &'static str,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
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
    tonic::transport::Server::builder()
        .add_service(health_service)
        .add_service(reflection)
        .add_service(SystemServiceServer::new(SystemApi::new(stores, mode)))
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown.cancelled_owned())
        .await
        .context("the gRPC server failed")
}
