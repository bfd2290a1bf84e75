//! The gRPC server: Patchbay's APIs plus the standard health and reflection services.

mod audit;
mod request_metrics;
mod system;

use anyhow::Context as _;
use patchbay_approvals::Approvals;
use patchbay_approvals::grpc::ApprovalsApi;
use patchbay_catalog::Catalog;
use patchbay_catalog::grpc::CatalogApi;
use patchbay_eventstore::EventStore;
use patchbay_installing::Installing;
use patchbay_installing::grpc::{InstallingApi, JobAgentApi};
use patchbay_proto::approvals::v1::approvals_service_server::ApprovalsServiceServer;
use patchbay_proto::audit::v1::audit_service_server::AuditServiceServer;
use patchbay_proto::catalog::v1::catalog_service_server::CatalogServiceServer;
use patchbay_proto::installing::v1::installing_service_server::InstallingServiceServer;
use patchbay_proto::installing::v1::job_agent_service_server::JobAgentServiceServer;
use patchbay_proto::scanning::v1::agent_service_server::AgentServiceServer;
use patchbay_proto::scanning::v1::scanning_service_server::ScanningServiceServer;
use patchbay_proto::system::v1::system_service_server::SystemServiceServer;
use patchbay_proto::wsus::v1::wsus_service_server::WsusServiceServer;
use patchbay_scanning::Scanning;
use patchbay_scanning::grpc::{AgentApi, ScanningApi};
use patchbay_wsus_sync::WsusSync;
use patchbay_wsus_sync::grpc::WsusApi;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::TcpIncoming;

pub use system::SystemApi;

/// The services one server process hosts.
#[derive(Debug)]
pub struct Hosted {
    /// Every hosted service's log, for `SystemService`.
    pub stores: Vec<(&'static str, EventStore)>,
    pub catalog: Option<Catalog>,
    pub approvals: Option<Approvals>,
    pub scanning: Option<Scanning>,
    pub installing: Option<Installing>,
    pub wsus: Option<WsusSync>,
    /// "embedded" or "distributed".
    pub mode: &'static str,
    /// The health statuses the host's monitor keeps up to date.
    pub health: tonic_health::server::HealthReporter,
    pub metrics: std::sync::Arc<crate::monitor::Metrics>,
}

/// One span per request, continuing the caller's trace when it sends W3C `traceparent`: the
/// first link of the trace that follows a command through events, the bus, consumers and jobs.
fn request_span(request: &tonic::codegen::http::Request<()>) -> tracing::Span {
    let span = tracing::info_span!("grpc.request", path = %request.uri().path());
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
    };
    patchbay_telemetry::TraceContext {
        traceparent: header("traceparent"),
        tracestate: header("tracestate"),
    }
    .set_as_parent_of(&span);
    span
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
        approvals,
        scanning,
        installing,
        wsus,
        mode,
        health,
        metrics,
    } = hosted;
    let rebuilder = crate::rebuild::Rebuilder {
        catalog: catalog.clone(),
        approvals: approvals.clone(),
        scanning: scanning.clone(),
        installing: installing.clone(),
        wsus: wsus.clone(),
    };
    health.set_serving::<SystemServiceServer<SystemApi>>().await;
    let health_service = tonic_health::pb::health_server::HealthServer::new(
        tonic_health::server::HealthService::from_health_reporter(health),
    );
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
    let approvals =
        approvals.map(|approvals| ApprovalsServiceServer::new(ApprovalsApi::new(approvals)));
    let agents = scanning.clone().map(|scanning| {
        AgentServiceServer::new(AgentApi::new(scanning))
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
    });
    let scanning = scanning.map(|scanning| ScanningServiceServer::new(ScanningApi::new(scanning)));
    let job_agents = installing.clone().map(|installing| {
        JobAgentServiceServer::new(JobAgentApi::new(installing, shutdown.clone()))
    });
    let installing =
        installing.map(|installing| InstallingServiceServer::new(InstallingApi::new(installing)));
    let wsus = wsus.map(|wsus| WsusServiceServer::new(WsusApi::new(wsus)));
    let audit = AuditServiceServer::new(
        audit::AuditApi::new(stores.clone(), rebuilder, shutdown.clone())
            .context("reading Patchbay's own protobuf descriptors")?,
    );
    tonic::transport::Server::builder()
        .trace_fn(request_span)
        .layer(request_metrics::RequestMetricsLayer::new(metrics))
        .add_service(health_service)
        .add_service(reflection)
        .add_service(SystemServiceServer::new(SystemApi::new(stores, mode)))
        .add_service(audit)
        .add_optional_service(catalog)
        .add_optional_service(approvals)
        .add_optional_service(agents)
        .add_optional_service(scanning)
        .add_optional_service(installing)
        .add_optional_service(job_agents)
        .add_optional_service(wsus)
        .serve_with_incoming_shutdown(
            // Without TCP_NODELAY a response's trailing frames wait for the client's delayed ACK
            // (40 ms on Linux): an agent sending one report after another got ~25 answers a
            // second per connection (docs/benchmarks.md, "Inventory ingestion").
            TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown.cancelled_owned(),
        )
        .await
        .context("the gRPC server failed")
}
