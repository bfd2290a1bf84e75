//! The installing service shell: tasks and their runs, the planner's step, dispatching jobs to agents
//! and recording their results, all against the service's own log.

use std::sync::RwLockReadGuard;

use chrono::{DateTime, Utc};
use patchbay_bus::stamped;
use patchbay_eventstore::{
    EventStore, EventStoreError, ExpectedVersion, LiveView, LogPosition, NewEvent, Positioned,
    ViewError,
};
use patchbay_proto::installing::v1 as pb;
use patchbay_telemetry::TraceContext;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;
use uuid::Uuid;

use crate::domain::commands::authenticate;
use crate::domain::state::{Cause, ON_DEMAND, SCHEDULE};
use crate::domain::{
    InstallingError, JobCommand, StreamAppend, TaskCommand, decide_job, decide_task, plan,
};
use crate::events::{InstallingEvent, job_stream, task_stream};
use crate::view::{ApplyError, InstallingView};

/// The actor of the planner's decisions.
pub const PLANNER_ACTOR: &str = "service:installing";
const CONFLICT_RETRIES: usize = 5;

/// Longest wait for the view to show this service's own write before answering.
const VIEW_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum InstallingServiceError {
    #[error(transparent)]
    Domain(#[from] InstallingError),
    #[error(transparent)]
    Store(#[from] EventStoreError),
    #[error("the installing log holds an event this Patchbay cannot read: {0}")]
    Apply(#[from] ApplyError),
    #[error("another writer kept changing {0}; try again")]
    Busy(String),
}

impl InstallingServiceError {
    /// Worth retrying: the store was away or a concurrent writer won.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            InstallingServiceError::Store(_) | InstallingServiceError::Busy(_)
        )
    }
}

impl From<ViewError<ApplyError>> for InstallingServiceError {
    fn from(error: ViewError<ApplyError>) -> Self {
        match error {
            ViewError::Store(error) => InstallingServiceError::Store(error),
            ViewError::Apply(error) => InstallingServiceError::Apply(error),
        }
    }
}

/// The installing service. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Installing {
    view: LiveView<InstallingView>,
    server_version: semver::Version,
}

impl Installing {
    /// Opens the service on its store; `server_version` is this Patchbay's version, which updates
    /// needing a newer server are never installed on.
    pub async fn open(
        store: EventStore,
        server_version: semver::Version,
    ) -> Result<Self, InstallingServiceError> {
        Ok(Self {
            view: LiveView::open(store).await?,
            server_version,
        })
    }

    pub fn store(&self) -> &EventStore {
        self.view.store()
    }

    pub fn view(&self) -> RwLockReadGuard<'_, Positioned<InstallingView>> {
        self.view.read()
    }

    /// Catches up until the view shows a write this service just committed (on PostgreSQL a
    /// transaction open elsewhere on the server holds the global order back for a moment), so the
    /// answer and the next command see it. Gives up quietly after [`VIEW_WAIT`]; the write is
    /// committed either way.
    async fn wait_for(
        &self,
        reached: impl Fn(&InstallingView) -> bool,
    ) -> Result<(), InstallingServiceError> {
        self.view.catch_up_until(reached, VIEW_WAIT).await?;
        Ok(())
    }

    pub fn changes(&self) -> tokio::sync::watch::Receiver<LogPosition> {
        self.view.changes()
    }

    pub async fn catch_up(&self) -> Result<(), InstallingServiceError> {
        Ok(self.view.catch_up().await?)
    }

    pub async fn follow(self, shutdown: CancellationToken) -> Result<(), InstallingServiceError> {
        Ok(self.view.follow(shutdown).await?)
    }

    /// Creates an install task; returns its id.
    pub async fn create_task(
        &self,
        request: pb::CreateTaskRequest,
        actor: &str,
    ) -> Result<String, InstallingServiceError> {
        let task_id = Uuid::now_v7().to_string();
        let created = pb::InstallTaskCreated {
            task_id: task_id.clone(),
            name: request.name,
            kind: request.kind,
            rules: request.rules,
            targets: request.targets,
            update_ids: request.update_ids,
            schedule: request.schedule,
        };
        let events = decide_task(&self.view().state, TaskCommand::Create(Box::new(created)))?;
        self.store()
            .append(
                &task_stream(&task_id),
                ExpectedVersion::NoStream,
                &to_new_events(&events, actor),
            )
            .await?;
        self.wait_for(|view| view.tasks.contains_key(&task_id))
            .await?;
        Ok(task_id)
    }

    /// Starts a run of the task (on demand or by the schedule); returns the run number, or `None`
    /// when the schedule found a run still open.
    pub async fn run_task(
        &self,
        task_id: &str,
        trigger: &str,
        actor: &str,
    ) -> Result<Option<u64>, InstallingServiceError> {
        for _ in 0..CONFLICT_RETRIES {
            self.catch_up().await?;
            let (events, version) = {
                let view = self.view();
                let version = view.tasks.get(task_id).map_or(0, |t| t.version);
                let command = TaskCommand::Run {
                    task_id: task_id.to_owned(),
                    trigger: trigger.to_owned(),
                };
                (decide_task(&view.state, command)?, version)
            };
            let Some(InstallingEvent::InstallTaskRunRequested(requested)) = events.first() else {
                return Ok(None);
            };
            let run = requested.run;
            match self
                .store()
                .append(
                    &task_stream(task_id),
                    ExpectedVersion::Exact(version),
                    &to_new_events(&events, actor),
                )
                .await
            {
                Ok(appended) => {
                    self.wait_for(|view| {
                        view.tasks
                            .get(task_id)
                            .is_some_and(|t| t.version >= appended.stream_version)
                    })
                    .await?;
                    return Ok(Some(run));
                }
                Err(EventStoreError::Conflict { .. }) => continue,
                Err(error) => return Err(error.into()),
            }
        }
        Err(InstallingServiceError::Busy(format!(
            "install task {task_id}"
        )))
    }

    /// Runs the scheduled tasks that are due at `now` (daily, weekly; the first run a period after
    /// creation or the last run).
    pub async fn run_due_tasks(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Vec<(String, u64)>, InstallingServiceError> {
        let due: Vec<String> = {
            let view = self.view();
            view.tasks
                .iter()
                .filter(|(_, task)| {
                    let period = match task.created.schedule.as_str() {
                        "daily" => chrono::Duration::days(1),
                        "weekly" => chrono::Duration::weeks(1),
                        _ => return false,
                    };
                    !task.run_open && task.last_run_at.is_none_or(|at| at + period <= now)
                })
                .map(|(id, _)| id.clone())
                .collect()
        };
        let mut runs = Vec::new();
        for task_id in due {
            if let Some(run) = self.run_task(&task_id, SCHEDULE, PLANNER_ACTOR).await? {
                runs.push((task_id, run));
            }
        }
        Ok(runs)
    }

    /// Runs a task on demand.
    pub async fn run_task_now(
        &self,
        task_id: &str,
        actor: &str,
    ) -> Result<u64, InstallingServiceError> {
        self.run_task(task_id, ON_DEMAND, actor)
            .await?
            .ok_or_else(|| InstallingServiceError::Busy(format!("install task {task_id}")))
    }

    /// One planning step: decides on everything that changed and commits it with the planner's
    /// marker. Returns whether it should be called again at once (it committed, or lost a race).
    pub async fn plan_once(&self) -> Result<bool, InstallingServiceError> {
        self.catch_up().await?;
        let appends = {
            let view = self.view();
            plan(&view.state, view.position(), &self.server_version, || {
                Uuid::now_v7().to_string()
            })
        };
        if appends.is_empty() {
            return Ok(false);
        }
        match self.commit(&appends, PLANNER_ACTOR).await {
            Ok(()) => {}
            // Another replica planned, or an agent reported, meanwhile: plan again on fresh state.
            Err(InstallingServiceError::Store(EventStoreError::Conflict { .. })) => {}
            Err(error) => return Err(error),
        }
        self.catch_up().await?;
        Ok(true)
    }

    /// Commits the planner's appends in one statement (PostgreSQL) and one transaction.
    async fn commit(
        &self,
        appends: &[StreamAppend],
        actor: &str,
    ) -> Result<(), InstallingServiceError> {
        let appends: Vec<patchbay_eventstore::StreamAppend> = appends
            .iter()
            .map(|append| {
                let events = append
                    .events
                    .iter()
                    .zip(&append.causes)
                    .map(|(event, cause)| caused_by(event.to_new_event(), cause.as_ref(), actor))
                    .collect();
                patchbay_eventstore::StreamAppend::new(
                    append.stream.clone(),
                    append.expected,
                    events,
                )
            })
            .collect();
        self.store().append_streams(&appends).await?;
        Ok(())
    }

    /// Checks the agent's credential.
    pub async fn authenticate(
        &self,
        device_id: &str,
        credential: &str,
    ) -> Result<(), InstallingServiceError> {
        if authenticate(&self.view().state, device_id, credential).is_err() {
            // The registration may not have reached this service yet.
            self.catch_up().await?;
        }
        Ok(authenticate(&self.view().state, device_id, credential)?)
    }

    /// Jobs already dispatched to the device and not finished: resent when the agent reconnects.
    pub fn dispatched_jobs(&self, device_id: &str) -> Vec<pb::JobAssignment> {
        let view = self.view();
        let Some(open) = view.open_jobs.get(device_id) else {
            return Vec::new();
        };
        open.values()
            .filter_map(|job_id| view.jobs.get(job_id))
            .filter(|entry| entry.status == crate::domain::JobStatus::Dispatched)
            .map(|entry| {
                // Sent again on a new connection: a span of its own that links to the job's trace
                // rather than joining it, as replayed work does.
                let span = tracing::info_span!("job.resend", job_id = %entry.job.job_id, device_id);
                TraceContext {
                    traceparent: entry.traceparent.clone(),
                    tracestate: entry.tracestate.clone(),
                }
                .add_as_link_to(&span);
                span.in_scope(|| assignment(&view, &entry.job))
            })
            .collect()
    }

    /// Dispatches the device's queued jobs, in queueing order; returns what to send to the agent.
    /// A job another replica dispatched or the planner cancelled meanwhile is skipped.
    pub async fn dispatch_queued(
        &self,
        device_id: &str,
        actor: &str,
    ) -> Result<Vec<pb::JobAssignment>, InstallingServiceError> {
        let queued: Vec<(String, u64, pb::JobAssignment, TraceContext)> = {
            let view = self.view();
            let Some(open) = view.open_jobs.get(device_id) else {
                return Ok(Vec::new());
            };
            open.values()
                .filter_map(|job_id| view.jobs.get(job_id))
                .filter(|entry| entry.status == crate::domain::JobStatus::Queued)
                .map(|entry| {
                    (
                        entry.job.job_id.clone(),
                        entry.version,
                        assignment(&view, &entry.job),
                        TraceContext {
                            traceparent: entry.traceparent.clone(),
                            tracestate: entry.tracestate.clone(),
                        },
                    )
                })
                .collect()
        };
        let mut sent = Vec::new();
        for (job_id, version, assignment, trace) in queued {
            // Dispatching continues the trace of the decision that queued the job (a scan or an
            // approval, through the planner), so one trace reaches the agent.
            let span = tracing::info_span!("job.dispatch", %job_id, %device_id);
            trace.set_as_parent_of(&span);
            let events = decide_job(
                &self.view().state,
                JobCommand::Dispatch {
                    job_id: job_id.clone(),
                },
            )?;
            if events.is_empty() {
                continue;
            }
            let appended = {
                let _entered = span.enter();
                // Stamped with the dispatch span, so the Dispatched event carries the trace on.
                to_new_events(&events, actor)
            };
            match self
                .store()
                .append(
                    &job_stream(&job_id),
                    ExpectedVersion::Exact(version),
                    &appended,
                )
                .instrument(span)
                .await
            {
                Ok(appended) => sent.push((job_id, appended.stream_version, assignment)),
                Err(EventStoreError::Conflict { .. }) => continue,
                Err(error) => return Err(error.into()),
            }
        }
        if !sent.is_empty() {
            // The agent may report a result at once: the view must show the job dispatched by then
            // (on PostgreSQL a transaction open elsewhere can hold the global order back briefly).
            let dispatched = |view: &InstallingView| {
                sent.iter().all(|(job_id, version, _)| {
                    view.jobs
                        .get(job_id)
                        .is_some_and(|job| job.version >= *version)
                })
            };
            self.wait_for(dispatched).await?;
        }
        Ok(sent
            .into_iter()
            .map(|(_, _, assignment)| assignment)
            .collect())
    }

    /// Records an agent's result for one of its jobs.
    pub async fn report_result(
        &self,
        request: pb::ReportJobResultRequest,
    ) -> Result<(), InstallingServiceError> {
        self.authenticate(&request.device_id, &request.credential)
            .await?;
        let actor = format!("device:{}", request.device_id);
        for _ in 0..CONFLICT_RETRIES {
            self.catch_up().await?;
            let (events, version) = {
                let view = self.view();
                let version = view.jobs.get(&request.job_id).map_or(0, |j| j.version);
                let command = JobCommand::Report {
                    device_id: request.device_id.clone(),
                    job_id: request.job_id.clone(),
                    outcome: pb::JobOutcome::try_from(request.outcome)
                        .unwrap_or(pb::JobOutcome::Unspecified),
                    reason: request.reason.clone(),
                    output: request.output.clone(),
                };
                (decide_job(&view.state, command)?, version)
            };
            if events.is_empty() {
                return Ok(());
            }
            match self
                .store()
                .append(
                    &job_stream(&request.job_id),
                    ExpectedVersion::Exact(version),
                    &to_new_events(&events, &actor),
                )
                .await
            {
                Ok(appended) => {
                    self.wait_for(|view| {
                        view.jobs
                            .get(&request.job_id)
                            .is_some_and(|j| j.version >= appended.stream_version)
                    })
                    .await?;
                    return Ok(());
                }
                Err(EventStoreError::Conflict { .. }) => continue,
                Err(error) => return Err(error.into()),
            }
        }
        Err(InstallingServiceError::Busy(format!(
            "job {}",
            request.job_id
        )))
    }
}

/// What the agent receives for a job.
fn assignment(view: &InstallingView, job: &pb::Job) -> pb::JobAssignment {
    pb::JobAssignment {
        job: Some(job.clone()),
        title: view
            .updates
            .get(&job.update_id)
            .map(|u| u.details.title.clone())
            .unwrap_or_default(),
    }
}

/// A planner decision, linked to the event it was decided on: same correlation, that event as its
/// causation, its trace context (so the trace of an approval reaches the job it queued).
fn caused_by(event: NewEvent, cause: Option<&Cause>, actor: &str) -> NewEvent {
    let Some(cause) = cause else {
        return stamped(event, actor);
    };
    let mut event = event
        .actor(actor)
        .trace_context(cause.traceparent.clone(), cause.tracestate.clone());
    event.metadata.causation_id = Some(cause.event_id);
    event.metadata.correlation_id = cause.correlation_id;
    event
}

fn to_new_events(events: &[InstallingEvent], actor: &str) -> Vec<NewEvent> {
    events
        .iter()
        .map(|event| stamped(event.to_new_event(), actor))
        .collect()
}
