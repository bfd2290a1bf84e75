//! `AgentService` (devices register and report) and `ScanningService` (devices, required updates, scans).

use patchbay_proto::scanning::v1 as pb;
use patchbay_proto::scanning::v1::agent_service_server::AgentService;
use patchbay_proto::scanning::v1::scanning_service_server::ScanningService;
use tonic::{Request, Response, Status};

use crate::domain::ScanningError;
use crate::service::{Scanning, ScanningServiceError};

#[derive(Debug, Clone)]
pub struct AgentApi {
    scanning: Scanning,
}

impl AgentApi {
    pub fn new(scanning: Scanning) -> Self {
        Self { scanning }
    }
}

#[derive(Debug, Clone)]
pub struct ScanningApi {
    scanning: Scanning,
}

impl ScanningApi {
    pub fn new(scanning: Scanning) -> Self {
        Self { scanning }
    }
}

fn to_status(error: ScanningServiceError) -> Status {
    match error {
        ScanningServiceError::Domain(ScanningError::UnknownDevice(id)) => {
            Status::not_found(ScanningError::UnknownDevice(id).to_string())
        }
        ScanningServiceError::Domain(ScanningError::BadCredential(id)) => {
            Status::unauthenticated(ScanningError::BadCredential(id).to_string())
        }
        ScanningServiceError::Domain(e) => Status::invalid_argument(e.to_string()),
        ScanningServiceError::Store(e) if e.is_transient() => Status::unavailable(e.to_string()),
        other => Status::internal(other.to_string()),
    }
}

#[tonic::async_trait]
impl AgentService for AgentApi {
    async fn register(
        &self,
        request: Request<pb::RegisterRequest>,
    ) -> Result<Response<pb::RegisterResponse>, Status> {
        let request = request.into_inner();
        let actor = format!(
            "agent:{}",
            request.hostname.chars().take(100).collect::<String>()
        );
        let (device_id, credential) = self
            .scanning
            .register(&request.hostname, request.groups, &actor)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::RegisterResponse {
            device_id,
            credential,
        }))
    }

    async fn report_inventory(
        &self,
        request: Request<pb::ReportInventoryRequest>,
    ) -> Result<Response<pb::ReportInventoryResponse>, Status> {
        let request = request.into_inner();
        let inventory = request
            .inventory
            .ok_or_else(|| Status::invalid_argument("the report has no inventory"))?;
        let changed = self
            .scanning
            .report_inventory(&request.device_id, &request.credential, inventory)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::ReportInventoryResponse { changed }))
    }
}

#[tonic::async_trait]
impl ScanningService for ScanningApi {
    async fn list_devices(
        &self,
        request: Request<pb::ListDevicesRequest>,
    ) -> Result<Response<pb::ListDevicesResponse>, Status> {
        let group = request.into_inner().group;
        self.scanning.catch_up().await.map_err(to_status)?;
        let view = self.scanning.view();
        let devices = view
            .devices
            .iter()
            .filter(|(_, e)| {
                e.state.device_id.is_some() && (group.is_empty() || e.state.groups.contains(&group))
            })
            .map(|(id, e)| view.device_summary(id, e))
            .collect();
        Ok(Response::new(pb::ListDevicesResponse { devices }))
    }

    async fn get_required(
        &self,
        request: Request<pb::GetRequiredRequest>,
    ) -> Result<Response<pb::GetRequiredResponse>, Status> {
        let devices = self
            .scanning
            .required(&request.into_inner().device_ids)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::GetRequiredResponse { devices }))
    }

    async fn run_scan(
        &self,
        request: Request<pb::RunScanRequest>,
    ) -> Result<Response<pb::RunScanResponse>, Status> {
        let actor = patchbay_proto::request_actor(&request);
        let targets = request.into_inner().targets.unwrap_or(pb::ScanTargets {
            all_devices: true,
            ..Default::default()
        });
        let response = self
            .scanning
            .run_scan(targets, &actor)
            .await
            .map_err(to_status)?;
        Ok(Response::new(response))
    }

    async fn pause_scan_task(
        &self,
        request: Request<pb::ScanTaskRequest>,
    ) -> Result<Response<pb::ScanTask>, Status> {
        let actor = patchbay_proto::request_actor(&request);
        let task_id = request.into_inner().task_id;
        self.scanning
            .pause_or_resume(&task_id, true, &actor)
            .await
            .map_err(to_status)?;
        self.task(&task_id)
    }

    async fn resume_scan_task(
        &self,
        request: Request<pb::ScanTaskRequest>,
    ) -> Result<Response<pb::ScanTask>, Status> {
        let actor = patchbay_proto::request_actor(&request);
        let task_id = request.into_inner().task_id;
        self.scanning
            .pause_or_resume(&task_id, false, &actor)
            .await
            .map_err(to_status)?;
        self.task(&task_id)
    }

    async fn set_device_groups(
        &self,
        request: Request<pb::SetDeviceGroupsRequest>,
    ) -> Result<Response<pb::Device>, Status> {
        let actor = patchbay_proto::request_actor(&request);
        let request = request.into_inner();
        self.scanning
            .set_groups(&request.device_id, request.groups, &actor)
            .await
            .map_err(to_status)?;
        let view = self.scanning.view();
        let entry = view.devices.get(&request.device_id).ok_or_else(|| {
            Status::not_found(ScanningError::UnknownDevice(request.device_id.clone()).to_string())
        })?;
        Ok(Response::new(
            view.device_summary(&request.device_id, entry),
        ))
    }

    async fn list_scan_tasks(
        &self,
        _request: Request<pb::ListScanTasksRequest>,
    ) -> Result<Response<pb::ListScanTasksResponse>, Status> {
        self.scanning.catch_up().await.map_err(to_status)?;
        let view = self.scanning.view();
        let tasks = view
            .tasks
            .iter()
            .map(|(id, task)| task_message(id, &task.state))
            .collect();
        Ok(Response::new(pb::ListScanTasksResponse { tasks }))
    }
}

impl ScanningApi {
    fn task(&self, task_id: &str) -> Result<Response<pb::ScanTask>, Status> {
        let view = self.scanning.view();
        let task = view.tasks.get(task_id).ok_or_else(|| {
            Status::not_found(ScanningError::UnknownTask(task_id.to_owned()).to_string())
        })?;
        Ok(Response::new(task_message(task_id, &task.state)))
    }
}

fn task_message(task_id: &str, state: &crate::domain::ScanTaskState) -> pb::ScanTask {
    pb::ScanTask {
        task_id: task_id.to_owned(),
        name: state.name.clone(),
        targets: Some(state.targets.clone()),
        schedule: state.schedule.clone(),
        status: state.status.as_str().to_owned(),
        runs: state.runs,
        last_devices_scanned: state.last_devices_scanned,
    }
}
