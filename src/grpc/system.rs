//! `SystemService`: what this server runs, and how far each service's relay is behind its log.

use patchbay_bus::RELAY_CHECKPOINT;
use patchbay_eventstore::{EventStore, LogPosition};
use patchbay_proto::system::v1::system_service_server::SystemService;
use patchbay_proto::system::v1::{GetServerInfoRequest, GetServerInfoResponse, ServiceStatus};
use tonic::{Request, Response, Status};

#[derive(Debug)]
pub struct SystemApi {
    stores: Vec<(&'static str, EventStore)>,
    mode: &'static str,
}

impl SystemApi {
    pub fn new(stores: Vec<(&'static str, EventStore)>, mode: &'static str) -> Self {
        Self { stores, mode }
    }
}

#[tonic::async_trait]
impl SystemService for SystemApi {
    async fn get_server_info(
        &self,
        _request: Request<GetServerInfoRequest>,
    ) -> Result<Response<GetServerInfoResponse>, Status> {
        let mut services = Vec::with_capacity(self.stores.len());
        for (name, store) in &self.stores {
            let unavailable = |e: patchbay_eventstore::EventStoreError| {
                Status::unavailable(format!("the {name} event log cannot be read: {e}"))
            };
            let relayed = store
                .load_checkpoint(RELAY_CHECKPOINT)
                .await
                .map_err(unavailable)?;
            services.push(ServiceStatus {
                name: (*name).to_owned(),
                event_count: store
                    .count_after(LogPosition::START)
                    .await
                    .map_err(unavailable)?,
                relay_lag: store.count_after(relayed).await.map_err(unavailable)?,
            });
        }
        Ok(Response::new(GetServerInfoResponse {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            mode: self.mode.to_owned(),
            services,
        }))
    }
}
