//! The WSUS sync service shell: settings in, runs started (on demand or on schedule), the view kept
//! current.

use std::sync::{Arc, Mutex, RwLockReadGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use patchbay_eventstore::{
    EventStore, EventStoreError, ExpectedVersion, LiveView, Positioned, ViewError,
};
use patchbay_proto::wsus::v1 as pb;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::domain::{ConfigRequest, DomainError, RunState, RunSummary, Schedule, decide_configure};
use crate::events::{CONFIG_STREAM, DecodeError, WsusEvent, run_stream};
use crate::sync::SyncRun;
use crate::view::WsusView;

#[derive(Debug, thiserror::Error)]
pub enum WsusSyncError {
    #[error(transparent)]
    Domain(#[from] DomainError),
    #[error(transparent)]
    Store(#[from] EventStoreError),
    #[error("the WSUS sync log holds an event this Patchbay cannot read: {0}")]
    Decode(#[from] DecodeError),
    #[error("no sync run {0}; `patchbay wsus runs` lists them")]
    UnknownRun(String),
    #[error(
        "the WSUS sync log did not show a committed write within {0} s; the database may be overloaded, try again"
    )]
    Lagging(u64),
}

impl From<ViewError<DecodeError>> for WsusSyncError {
    fn from(error: ViewError<DecodeError>) -> Self {
        match error {
            ViewError::Store(error) => WsusSyncError::Store(error),
            ViewError::Apply(error) => WsusSyncError::Decode(error),
        }
    }
}

/// Longest wait for the view to show a write this service just committed (on PostgreSQL a
/// transaction open elsewhere on the server holds the global order back for a moment).
const VIEW_WAIT: Duration = Duration::from_secs(10);

/// Limits and retry policy of sync runs.
#[derive(Debug, Clone)]
pub struct SyncOptions {
    /// Longest wait for one upstream answer.
    pub request_timeout: Duration,
    /// First back-off after ServerBusy; doubles on each retry.
    pub busy_backoff: Duration,
    pub busy_retries: u32,
    /// Authorizations one run may go through (cookie expiry and InvalidCookie each cost one).
    pub max_authorizations: u32,
    /// Largest upstream answer accepted, in bytes.
    pub max_response_bytes: usize,
}

impl Default for SyncOptions {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(120),
            busy_backoff: Duration::from_secs(5),
            busy_retries: 5,
            max_authorizations: 5,
            max_response_bytes: 256 << 20,
        }
    }
}

/// The WSUS sync service. Cheap to clone.
#[derive(Debug, Clone)]
pub struct WsusSync {
    view: LiveView<WsusView>,
    options: Arc<SyncOptions>,
    /// The run this process is executing, if any.
    running: Arc<Mutex<Option<String>>>,
}

impl WsusSync {
    /// Opens the service on its store and rebuilds the view from the log.
    pub async fn open(store: EventStore, options: SyncOptions) -> Result<Self, WsusSyncError> {
        Ok(Self {
            view: LiveView::open(store).await?,
            options: Arc::new(options),
            running: Arc::new(Mutex::new(None)),
        })
    }

    /// Wakes when the view moves on (a new download request, for instance).
    pub fn changes(&self) -> tokio::sync::watch::Receiver<patchbay_eventstore::LogPosition> {
        self.view.changes()
    }

    pub fn store(&self) -> &EventStore {
        self.view.store()
    }

    pub fn view(&self) -> RwLockReadGuard<'_, Positioned<WsusView>> {
        self.view.read()
    }

    pub async fn catch_up(&self) -> Result<(), WsusSyncError> {
        Ok(self.view.catch_up().await?)
    }

    /// Catches up until `reached` holds; an error if the view does not get there in time, as the
    /// caller is about to decide on what it shows.
    pub async fn wait_for(&self, reached: impl Fn(&WsusView) -> bool) -> Result<(), WsusSyncError> {
        if self.view.catch_up_until(reached, VIEW_WAIT).await? {
            Ok(())
        } else {
            Err(WsusSyncError::Lagging(VIEW_WAIT.as_secs()))
        }
    }

    /// Catches up until the view has applied `run_id`'s stream up to `version`.
    pub async fn wait_for_run(&self, run_id: &str, version: u64) -> Result<(), WsusSyncError> {
        self.wait_for(|view| view.run_versions.get(run_id).is_some_and(|v| *v >= version))
            .await
    }

    /// Keeps the view following the log until `shutdown`.
    pub async fn follow(self, shutdown: CancellationToken) -> Result<(), WsusSyncError> {
        Ok(self.view.follow(shutdown).await?)
    }

    /// Replaces the sync settings (nothing is stored if they are unchanged).
    pub async fn set_config(
        &self,
        request: ConfigRequest,
        actor: &str,
    ) -> Result<pb::WsusConfigured, WsusSyncError> {
        self.catch_up().await?;
        let (events, version) = {
            let view = self.view();
            let events =
                decide_configure(view.config.as_ref(), request, || Uuid::new_v4().to_string())?;
            (events, view.config_version)
        };
        if !events.is_empty() {
            let new: Vec<_> = events.iter().map(|e| e.to_new_event(actor)).collect();
            let appended = self
                .store()
                .append(CONFIG_STREAM, ExpectedVersion::Exact(version), &new)
                .await?;
            self.wait_for(|view| view.config_version >= appended.stream_version)
                .await?;
        }
        self.view()
            .config
            .clone()
            .ok_or(WsusSyncError::Domain(DomainError::NotConfigured))
    }

    /// Starts a run in the background and returns its id at once.
    pub async fn start_sync(
        &self,
        trigger: &str,
        actor: &str,
    ) -> Result<(String, JoinHandle<()>), WsusSyncError> {
        let (run_id, settings) = self.begin_run(trigger, actor).await?;
        let service = self.clone();
        let (id, actor) = (run_id.clone(), actor.to_owned());
        let handle = tokio::spawn(async move { service.execute(id, settings, actor).await });
        Ok((run_id, handle))
    }

    /// Runs a sync to the end and returns how it went.
    pub async fn sync_now(&self, trigger: &str, actor: &str) -> Result<RunSummary, WsusSyncError> {
        let (run_id, settings) = self.begin_run(trigger, actor).await?;
        self.execute(run_id.clone(), settings, actor.to_owned())
            .await;
        self.run(&run_id)
    }

    /// Starts a scheduled run if one is due at `now`; returns its id.
    pub async fn run_due(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Option<(String, JoinHandle<()>)>, WsusSyncError> {
        self.catch_up().await?;
        if self.next_run_at().is_none_or(|due| due > now) {
            return Ok(None);
        }
        match self.start_sync("schedule", "service:wsus-sync").await {
            Ok(started) => Ok(Some(started)),
            Err(WsusSyncError::Domain(DomainError::AlreadyRunning(_))) => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// When the schedule next starts a run: a day (or week) after the last run started, or now
    /// if the service is configured and never ran; `None` when manual or unconfigured.
    pub fn next_run_at(&self) -> Option<DateTime<Utc>> {
        let view = self.view();
        let config = view.config.as_ref()?;
        let period = Schedule::parse(&config.schedule).ok()?.period()?;
        Some(match view.last_run().and_then(|run| run.started_at) {
            Some(started) => started + period,
            None => DateTime::<Utc>::MIN_UTC,
        })
    }

    pub fn run(&self, run_id: &str) -> Result<RunSummary, WsusSyncError> {
        self.view()
            .runs
            .get(run_id)
            .cloned()
            .ok_or_else(|| WsusSyncError::UnknownRun(run_id.to_owned()))
    }

    /// Runs, newest first.
    pub fn runs(&self, limit: usize) -> Vec<RunSummary> {
        self.view()
            .runs
            .values()
            .rev()
            .take(limit)
            .cloned()
            .collect()
    }

    async fn begin_run(
        &self,
        trigger: &str,
        actor: &str,
    ) -> Result<(String, pb::WsusConfigured), WsusSyncError> {
        self.catch_up().await?;
        let settings = self
            .view()
            .config
            .clone()
            .ok_or(DomainError::NotConfigured)?;
        let run_id = Uuid::now_v7().to_string();
        {
            let mut running = self
                .running
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(current) = running.as_ref() {
                return Err(DomainError::AlreadyRunning(current.clone()).into());
            }
            *running = Some(run_id.clone());
        }
        let started = self.record_start(&run_id, trigger, actor, &settings).await;
        if started.is_err() {
            self.finish_running();
        }
        started?;
        Ok((run_id, settings))
    }

    async fn record_start(
        &self,
        run_id: &str,
        trigger: &str,
        actor: &str,
        settings: &pb::WsusConfigured,
    ) -> Result<(), WsusSyncError> {
        // A run still "running" in the log was cut short by a stop or crash of the process that
        // ran it: say so, so the history tells the truth. Its stored revisions stay; the new run
        // resumes from the last committed anchors.
        let interrupted: Vec<String> = self
            .view()
            .runs
            .values()
            .filter(|run| run.state == RunState::Running)
            .map(|run| run.run_id.clone())
            .collect();
        for stale in interrupted {
            let failed = WsusEvent::WsusSyncFailed(pb::WsusSyncFailed {
                run_id: stale.clone(),
                phase: self.run(&stale).map(|r| r.phase).unwrap_or_default(),
                reason: "interrupted: the server stopped during the run; the next run resumed from the last stored anchors".into(),
                error_code: String::new(),
            });
            self.store()
                .append(
                    &run_stream(&stale),
                    ExpectedVersion::Any,
                    &[failed.to_new_event(actor)],
                )
                .await?;
        }
        let started = WsusEvent::WsusSyncStarted(pb::WsusSyncStarted {
            run_id: run_id.to_owned(),
            trigger: trigger.to_owned(),
            upstream_url: settings.upstream_url.clone(),
            incremental: self.view().upstream.is_incremental(),
        });
        let appended = self
            .store()
            .append(
                &run_stream(run_id),
                ExpectedVersion::NoStream,
                &[started.to_new_event(actor)],
            )
            .await?;
        self.wait_for_run(run_id, appended.stream_version).await
    }

    async fn execute(&self, run_id: String, settings: pb::WsusConfigured, actor: String) {
        let outcome = match SyncRun::new(self, &self.options, settings, run_id.clone(), actor) {
            Ok(run) => run.run().await,
            Err(error) => {
                let failed = WsusEvent::WsusSyncFailed(pb::WsusSyncFailed {
                    run_id: run_id.clone(),
                    phase: "authorization".into(),
                    reason: error.to_string(),
                    error_code: String::new(),
                });
                self.store()
                    .append(
                        &run_stream(&run_id),
                        ExpectedVersion::Any,
                        &[failed.to_new_event("service:wsus-sync")],
                    )
                    .await
                    .map(|appended| appended.stream_version)
            }
        };
        match outcome {
            Ok(appended) => {
                // The caller (sync_now, the CLI) reads the run's end from the view next.
                if let Err(error) = self.wait_for_run(&run_id, appended).await {
                    tracing::warn!(run = %run_id, %error, "the end of a WSUS sync run is not visible yet");
                }
            }
            Err(error) => {
                tracing::error!(run = %run_id, %error, "cannot record the end of a WSUS sync run")
            }
        }
        self.finish_running();
    }

    fn finish_running(&self) {
        *self
            .running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
    }
}
