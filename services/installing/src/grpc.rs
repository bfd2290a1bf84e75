//! `InstallingService` (tasks, jobs, the install report) and `JobAgentService` (the agents' job stream
//! and their results).

use std::pin::Pin;

use patchbay_proto::installing::v1 as pb;
use patchbay_proto::installing::v1::installing_service_server::InstallingService;
use patchbay_proto::installing::v1::job_agent_service_server::JobAgentService;
use patchbay_proto::request_actor;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::domain::state::JobStatus;
use crate::domain::{InstallingError, JobEntry, TaskEntry};
use crate::service::{Installing, InstallingServiceError};
use crate::view::InstallingView;

#[derive(Debug, Clone)]
pub struct InstallingApi {
    installing: Installing,
}

impl InstallingApi {
    pub fn new(installing: Installing) -> Self {
        Self { installing }
    }
}

#[derive(Debug, Clone)]
pub struct JobAgentApi {
    installing: Installing,
    /// Cancelled when the server shuts down: every job stream then ends, so the server can drain
    /// and the agents reconnect (to another replica, or to this one once it is back).
    shutdown: CancellationToken,
}

impl JobAgentApi {
    pub fn new(installing: Installing, shutdown: CancellationToken) -> Self {
        Self {
            installing,
            shutdown,
        }
    }
}

fn to_status(error: InstallingServiceError) -> Status {
    match error {
        InstallingServiceError::Domain(error) => match error {
            InstallingError::UnknownTask(_) | InstallingError::UnknownJob(_) => {
                Status::not_found(error.to_string())
            }
            InstallingError::UnknownDevice(_) | InstallingError::BadCredential(_) => {
                Status::unauthenticated(error.to_string())
            }
            InstallingError::NotYourJob { .. } => Status::permission_denied(error.to_string()),
            InstallingError::JobNotDispatched { .. } => {
                Status::failed_precondition(error.to_string())
            }
            InstallingError::InvalidTask(_) | InstallingError::NoOutcome => {
                Status::invalid_argument(error.to_string())
            }
        },
        InstallingServiceError::Busy(_) => Status::aborted(error.to_string()),
        InstallingServiceError::Store(e) if e.is_transient() => Status::unavailable(e.to_string()),
        other => Status::internal(other.to_string()),
    }
}

fn task_message(view: &InstallingView, task: &TaskEntry) -> pb::InstallTask {
    let created = &task.created;
    let mut jobs = pb::JobCounts::default();
    for entry in view.jobs.values() {
        if entry.job.task_id != created.task_id {
            continue;
        }
        match entry.status {
            JobStatus::Queued => jobs.queued += 1,
            JobStatus::Dispatched => jobs.dispatched += 1,
            JobStatus::Succeeded => jobs.succeeded += 1,
            JobStatus::Failed => jobs.failed += 1,
            JobStatus::RebootRequired => jobs.reboot_required += 1,
            JobStatus::Cancelled => jobs.cancelled += 1,
        }
    }
    pb::InstallTask {
        task_id: created.task_id.clone(),
        name: created.name.clone(),
        kind: created.kind,
        rules: created.rules.clone(),
        targets: created.targets.clone(),
        update_ids: created.update_ids.clone(),
        schedule: created.schedule.clone(),
        runs: task.runs,
        last_run_status: task.last_run_status.clone(),
        jobs: Some(jobs),
    }
}

fn job_message(view: &InstallingView, entry: &JobEntry) -> pb::JobEntry {
    let job = &entry.job;
    let details = view.updates.get(&job.update_id).map(|u| &u.details);
    pb::JobEntry {
        job: Some(job.clone()),
        status: entry.status.to_proto() as i32,
        reason: entry.reason.clone(),
        queued_at: entry.queued_at.to_rfc3339(),
        finished_at: entry
            .finished_at
            .map(|at| at.to_rfc3339())
            .unwrap_or_default(),
        hostname: view
            .devices
            .get(&job.device_id)
            .map(|d| d.hostname.clone())
            .unwrap_or_default(),
        title: details.map(|d| d.title.clone()).unwrap_or_default(),
        vendor: details.map(|d| d.vendor.clone()).unwrap_or_default(),
        product: details.map(|d| d.product.clone()).unwrap_or_default(),
        task_name: view
            .tasks
            .get(&job.task_id)
            .map(|t| t.created.name.clone())
            .unwrap_or_default(),
    }
}

/// The jobs matching the filters (empty filter = any), in queueing order.
fn jobs_matching(
    view: &InstallingView,
    device_id: &str,
    task_id: &str,
    update_id: &str,
) -> Vec<pb::JobEntry> {
    let mut entries: Vec<&JobEntry> = view
        .jobs
        .values()
        .filter(|e| device_id.is_empty() || e.job.device_id == device_id)
        .filter(|e| task_id.is_empty() || e.job.task_id == task_id)
        .filter(|e| update_id.is_empty() || e.job.update_id == update_id)
        .collect();
    entries.sort_by_key(|e| e.queued_position);
    entries.iter().map(|e| job_message(view, e)).collect()
}

#[tonic::async_trait]
impl InstallingService for InstallingApi {
    async fn create_task(
        &self,
        request: Request<pb::CreateTaskRequest>,
    ) -> Result<Response<pb::InstallTask>, Status> {
        let actor = request_actor(&request);
        let task_id = self
            .installing
            .create_task(request.into_inner(), &actor)
            .await
            .map_err(to_status)?;
        let view = self.installing.view();
        let task = view
            .tasks
            .get(&task_id)
            .ok_or_else(|| Status::internal("the task was created but is not visible yet"))?;
        Ok(Response::new(task_message(&view, task)))
    }

    async fn list_tasks(
        &self,
        _request: Request<pb::ListTasksRequest>,
    ) -> Result<Response<pb::ListTasksResponse>, Status> {
        self.installing.catch_up().await.map_err(to_status)?;
        let view = self.installing.view();
        let tasks = view
            .tasks
            .values()
            .map(|task| task_message(&view, task))
            .collect();
        Ok(Response::new(pb::ListTasksResponse { tasks }))
    }

    async fn get_task(
        &self,
        request: Request<pb::GetTaskRequest>,
    ) -> Result<Response<pb::InstallTask>, Status> {
        self.installing.catch_up().await.map_err(to_status)?;
        let task_id = request.into_inner().task_id;
        let view = self.installing.view();
        let task = view
            .tasks
            .get(&task_id)
            .ok_or_else(|| to_status(InstallingError::UnknownTask(task_id.clone()).into()))?;
        Ok(Response::new(task_message(&view, task)))
    }

    async fn run_task(
        &self,
        request: Request<pb::RunTaskRequest>,
    ) -> Result<Response<pb::RunTaskResponse>, Status> {
        let actor = request_actor(&request);
        let task_id = request.into_inner().task_id;
        let run = self
            .installing
            .run_task_now(&task_id, &actor)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::RunTaskResponse { task_id, run }))
    }

    async fn list_jobs(
        &self,
        request: Request<pb::ListJobsRequest>,
    ) -> Result<Response<pb::ListJobsResponse>, Status> {
        self.installing.catch_up().await.map_err(to_status)?;
        let request = request.into_inner();
        let view = self.installing.view();
        let jobs = jobs_matching(
            &view,
            &request.device_id,
            &request.task_id,
            &request.update_id,
        );
        Ok(Response::new(pb::ListJobsResponse { jobs }))
    }

    async fn get_install_report(
        &self,
        request: Request<pb::InstallReportRequest>,
    ) -> Result<Response<pb::InstallReport>, Status> {
        self.installing.catch_up().await.map_err(to_status)?;
        let request = request.into_inner();
        let view = self.installing.view();
        let jobs = jobs_matching(&view, &request.device_id, &request.task_id, "");
        Ok(Response::new(pb::InstallReport {
            jobs,
            generated_at: chrono::Utc::now().to_rfc3339(),
        }))
    }
}

type JobStream = Pin<Box<dyn Stream<Item = Result<pb::JobAssignment, Status>> + Send>>;

#[tonic::async_trait]
impl JobAgentService for JobAgentApi {
    type StreamJobsStream = JobStream;

    async fn stream_jobs(
        &self,
        request: Request<pb::StreamJobsRequest>,
    ) -> Result<Response<Self::StreamJobsStream>, Status> {
        let request = request.into_inner();
        self.installing
            .authenticate(&request.device_id, &request.credential)
            .await
            .map_err(to_status)?;
        let (sender, receiver) = tokio::sync::mpsc::channel(64);
        let installing = self.installing.clone();
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            let device_id = request.device_id;
            let actor = format!("device:{device_id}");
            let mut changes = installing.changes();
            // Jobs sent before a disconnect and not yet reported go out again, once per connection.
            for assignment in installing.dispatched_jobs(&device_id) {
                if sender.send(Ok(assignment)).await.is_err() {
                    return;
                }
            }
            loop {
                match installing.dispatch_queued(&device_id, &actor).await {
                    Ok(assignments) => {
                        for assignment in assignments {
                            if sender.send(Ok(assignment)).await.is_err() {
                                return;
                            }
                        }
                    }
                    Err(error) => {
                        tracing::warn!(%device_id, %error, "dispatching jobs failed; the agent will reconnect");
                        let _ = sender.send(Err(to_status(error))).await;
                        return;
                    }
                }
                tokio::select! {
                    () = sender.closed() => return,
                    () = shutdown.cancelled() => return,
                    changed = changes.changed() => if changed.is_err() { return },
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }

    async fn report_job_result(
        &self,
        request: Request<pb::ReportJobResultRequest>,
    ) -> Result<Response<pb::ReportJobResultResponse>, Status> {
        self.installing
            .report_result(request.into_inner())
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::ReportJobResultResponse {}))
    }
}
