//! `WsusService` over gRPC: settings, starting a sync, runs and status.

use patchbay_proto::wsus::v1 as pb;
use patchbay_proto::wsus::v1::wsus_service_server::WsusService;
use tonic::{Request, Response, Status};

use crate::domain::{ConfigRequest, DomainError, RunSummary};
use crate::service::{WsusSync, WsusSyncError};

#[derive(Debug, Clone)]
pub struct WsusApi {
    wsus: WsusSync,
}

impl WsusApi {
    pub fn new(wsus: WsusSync) -> Self {
        Self { wsus }
    }
}

fn to_status(error: WsusSyncError) -> Status {
    match error {
        WsusSyncError::Domain(error @ DomainError::InvalidInput(_)) => {
            Status::invalid_argument(error.to_string())
        }
        WsusSyncError::Domain(error @ DomainError::NotConfigured) => {
            Status::failed_precondition(error.to_string())
        }
        WsusSyncError::Domain(error @ DomainError::AlreadyRunning(_)) => {
            Status::already_exists(error.to_string())
        }
        WsusSyncError::UnknownRun(_) => Status::not_found(error.to_string()),
        WsusSyncError::Store(e) if e.is_transient() => Status::unavailable(e.to_string()),
        other => Status::internal(other.to_string()),
    }
}

/// The wire form of a run.
pub fn run_message(run: &RunSummary) -> pb::SyncRun {
    pb::SyncRun {
        run_id: run.run_id.clone(),
        state: run.state.as_str().to_owned(),
        trigger: run.trigger.clone(),
        started_at: run.started_at.map(|t| t.to_rfc3339()).unwrap_or_default(),
        finished_at: run.finished_at.map(|t| t.to_rfc3339()).unwrap_or_default(),
        phase: run.phase.clone(),
        done: run.done,
        total: run.total,
        completed: run.completed.clone(),
        failed: run.failed.clone(),
        incremental: run.incremental,
    }
}

#[tonic::async_trait]
impl WsusService for WsusApi {
    async fn set_config(
        &self,
        request: Request<pb::SetConfigRequest>,
    ) -> Result<Response<pb::WsusConfigured>, Status> {
        let actor = patchbay_proto::request_actor(&request);
        let request = request.into_inner();
        let configured = self
            .wsus
            .set_config(
                ConfigRequest {
                    upstream_url: request.upstream_url,
                    product_ids: request.product_ids,
                    classification_ids: request.classification_ids,
                    languages: request.languages,
                    schedule: request.schedule,
                    download_content: request.download_content,
                },
                &actor,
            )
            .await
            .map_err(to_status)?;
        Ok(Response::new(configured))
    }

    async fn get_status(
        &self,
        _request: Request<pb::GetStatusRequest>,
    ) -> Result<Response<pb::WsusStatus>, Status> {
        self.wsus.catch_up().await.map_err(to_status)?;
        let next_run_at = self
            .wsus
            .next_run_at()
            .map(|t| t.max(chrono::Utc::now()).to_rfc3339())
            .unwrap_or_default();
        let view = self.wsus.view();
        let (updates_known, updates_expired, categories_known) = view.counts();
        Ok(Response::new(pb::WsusStatus {
            configured: view.config.is_some(),
            config: view.config.clone(),
            config_anchor: view.upstream.config_anchor.clone().unwrap_or_default(),
            categories_anchor: view.upstream.categories_anchor.clone().unwrap_or_default(),
            updates_anchor: view
                .upstream
                .updates_anchor
                .as_ref()
                .map(|(anchor, _)| anchor.clone())
                .unwrap_or_default(),
            max_updates_per_request: view.upstream.max_updates_per_request,
            last_run: view.last_run().map(run_message),
            next_run_at,
            updates_known,
            updates_expired,
            categories_known,
        }))
    }

    async fn start_sync(
        &self,
        request: Request<pb::StartSyncRequest>,
    ) -> Result<Response<pb::SyncRun>, Status> {
        let actor = patchbay_proto::request_actor(&request);
        let (run_id, _running) = self
            .wsus
            .start_sync("manual", &actor)
            .await
            .map_err(to_status)?;
        let run = self.wsus.run(&run_id).map_err(to_status)?;
        Ok(Response::new(run_message(&run)))
    }

    async fn list_runs(
        &self,
        request: Request<pb::ListRunsRequest>,
    ) -> Result<Response<pb::ListRunsResponse>, Status> {
        let limit = match request.into_inner().limit {
            0 => 20,
            n => n as usize,
        };
        self.wsus.catch_up().await.map_err(to_status)?;
        let runs = self.wsus.runs(limit).iter().map(run_message).collect();
        Ok(Response::new(pb::ListRunsResponse { runs }))
    }

    async fn get_run(
        &self,
        request: Request<pb::GetRunRequest>,
    ) -> Result<Response<pb::SyncRun>, Status> {
        self.wsus.catch_up().await.map_err(to_status)?;
        let run = self
            .wsus
            .run(&request.into_inner().run_id)
            .map_err(to_status)?;
        Ok(Response::new(run_message(&run)))
    }
}
