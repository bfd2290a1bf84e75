//! The scanning service shell: registration, inventories, and scans that record what each device needs.

use std::sync::{Arc, RwLockReadGuard};

use chrono::{DateTime, Utc};

use patchbay_eventstore::{
    EventStore, EventStoreError, ExpectedVersion, LiveView, NewEvent, Positioned, StreamAppend,
    ViewError,
};
use patchbay_proto::scanning::v1 as pb;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::domain::{
    DeviceCommand, DeviceState, ScanTaskCommand, ScanTaskState, ScanningError, TaskStatus,
    credential_digest, decide_device, decide_task, evolve_device, evolve_task,
};
use crate::engine::{self, MatchingIndex};
use crate::events::{DecodeError, ScanningEvent};
use crate::group_commit::GroupCommit;
use crate::scan_payload::{ScanHeader, scan_completed_event};
use crate::view::{LastScan, ScanningView, TaskEntry};

/// The task every installation gets: all devices, weekly.
pub const DEFAULT_TASK: &str = "default";

/// Device scans appended per transaction.
const SCAN_CHUNK: usize = 1_000;
const CONFLICT_RETRIES: usize = 5;
/// How long a command waits for the view to show a write it knows is committed.
const VIEW_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum ScanningServiceError {
    #[error(transparent)]
    Domain(#[from] ScanningError),
    #[error(transparent)]
    Store(#[from] EventStoreError),
    #[error("the scanning log holds an event this Patchbay cannot read: {0}")]
    Decode(#[from] DecodeError),
    /// The thread evaluating devices failed (a bug); the scan run stops without writing results.
    #[error("evaluating the devices failed: {0}; the scan run wrote no results, run it again")]
    Evaluation(String),
}

impl From<ViewError<DecodeError>> for ScanningServiceError {
    fn from(error: ViewError<DecodeError>) -> Self {
        match error {
            ViewError::Store(error) => ScanningServiceError::Store(error),
            ViewError::Apply(error) => ScanningServiceError::Decode(error),
        }
    }
}

/// The scanning service. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Scanning {
    view: LiveView<ScanningView>,
    /// Inventory reports arrive from many agents at once; sharing commits lifts the one-fsync-per-
    /// report ceiling of the embedded (SQLite) store.
    reports: GroupCommit,
}

impl Scanning {
    pub async fn open(store: EventStore) -> Result<Self, ScanningServiceError> {
        Ok(Self {
            reports: GroupCommit::spawn(store.clone()),
            view: LiveView::open(store).await?,
        })
    }

    pub fn store(&self) -> &EventStore {
        self.view.store()
    }

    pub fn view(&self) -> RwLockReadGuard<'_, Positioned<ScanningView>> {
        self.view.read()
    }

    pub async fn catch_up(&self) -> Result<(), ScanningServiceError> {
        Ok(self.view.catch_up().await?)
    }

    /// Catches up until the view shows what `reached` asks for, or `timeout` passes; returns
    /// whether it does. For a caller that knows a write committed: on PostgreSQL a transaction
    /// open elsewhere can hold the global order back for a moment after the commit.
    pub async fn catch_up_until(
        &self,
        reached: impl Fn(&ScanningView) -> bool,
        timeout: std::time::Duration,
    ) -> Result<bool, ScanningServiceError> {
        Ok(self.view.catch_up_until(reached, timeout).await?)
    }

    pub async fn follow(self, shutdown: CancellationToken) -> Result<(), ScanningServiceError> {
        Ok(self.view.follow(shutdown).await?)
    }

    /// Creates the default "Find vulnerabilities and required updates" task (all devices, weekly).
    pub async fn ensure_default_task(&self) -> Result<(), ScanningServiceError> {
        let targets = pb::ScanTargets {
            all_devices: true,
            ..Default::default()
        };
        self.create_task(DEFAULT_TASK, targets, "weekly", "service:scanning")
            .await
    }

    /// Registers a device; returns its id and the credential its agent must present from now on.
    pub async fn register(
        &self,
        hostname: &str,
        groups: Vec<String>,
        actor: &str,
    ) -> Result<(String, String), ScanningServiceError> {
        let device_id = Uuid::now_v7().to_string();
        let credential = format!("{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple());
        let events = decide_device(
            &Default::default(),
            DeviceCommand::Register {
                device_id: device_id.clone(),
                hostname: hostname.to_owned(),
                credential_sha256: credential_digest(&credential),
                groups,
            },
        )?;
        self.store()
            .append(
                &device_stream(&device_id),
                ExpectedVersion::NoStream,
                &to_new_events(&events, actor),
            )
            .await?;
        self.catch_up().await?;
        Ok((device_id, credential))
    }

    /// Stores a device's inventory if it changed; returns whether it did. Concurrent reports are
    /// committed together, each still checked against its own device's stream version.
    pub async fn report_inventory(
        &self,
        device_id: &str,
        credential: &str,
        inventory: pb::Inventory,
    ) -> Result<bool, ScanningServiceError> {
        let stream = device_stream(device_id);
        let actor = format!("device:{device_id}");
        // The first decision is made on the view as it stands, without reading the stream's version
        // from the store: appending at the view's version conflicts if the view was behind, so a
        // report that stores something is decided on the latest state all the same. "Unchanged" and
        // refusals write nothing that could conflict, so they are confirmed on the latest version.
        let mut on_view = true;
        let mut conflicts = 0;
        loop {
            let command = DeviceCommand::ReportInventory {
                device_id: device_id.to_owned(),
                credential: credential.to_owned(),
                inventory: inventory.clone(),
            };
            let (decided, version) = if on_view {
                let view = self.view();
                match view.devices.get(device_id) {
                    // Decided under the read lock: no copy of the stored inventory.
                    Some(entry) => (decide_device(&entry.state, command), entry.stream_version),
                    None => (decide_device(&DeviceState::default(), command), 0),
                }
            } else {
                let (state, version) = self.device_state(device_id).await?;
                (decide_device(&state, command), version)
            };
            let events = match decided {
                Ok(events) if !events.is_empty() => events,
                Ok(_) | Err(_) if on_view => {
                    on_view = false;
                    continue;
                }
                Ok(_) => return Ok(false),
                Err(error) => return Err(error.into()),
            };
            let append = StreamAppend::new(
                stream.clone(),
                ExpectedVersion::Exact(version),
                to_new_events(&events, &actor),
            );
            match self.reports.append(append).await {
                Ok(_) => return Ok(true),
                // The view was behind, or another report for the device landed meanwhile: decide
                // again on the latest version.
                Err(EventStoreError::Conflict { .. }) if conflicts < CONFLICT_RETRIES => {
                    conflicts += 1;
                    on_view = false;
                }
                Err(error) => return Err(error.into()),
            }
        }
    }

    /// The device aggregate at its latest committed version: from the view once it has caught up with
    /// the stream, else (the view held back by a transaction elsewhere) folded from the stream itself.
    async fn device_state(
        &self,
        device_id: &str,
    ) -> Result<(DeviceState, u64), ScanningServiceError> {
        let stream = device_stream(device_id);
        let version = self.store().stream_version(&stream).await?.unwrap_or(0);
        let caught_up = |view: &ScanningView| {
            view.devices.get(device_id).map_or(0, |d| d.stream_version) >= version
        };
        // The view usually holds the version already (the follower applies every commit), and then
        // catching up would only re-read the log's tail, once per concurrent caller.
        if caught_up(&self.view()) || self.view.catch_up_until(caught_up, VIEW_WAIT).await? {
            let view = self.view();
            // Only the aggregate: the entry's last scan can be large and is not needed to decide.
            return Ok(view
                .devices
                .get(device_id)
                .map(|entry| (entry.state.clone(), entry.stream_version))
                .unwrap_or_default());
        }
        let mut state = DeviceState::default();
        let mut last = 0;
        for event in self.store().read_stream(&stream, 1, usize::MAX).await? {
            let decoded =
                ScanningEvent::decode(&event.event_type, event.schema_version, &event.payload)?;
            state = evolve_device(state, &decoded);
            last = event.stream_version;
        }
        Ok((state, last))
    }

    /// Runs "Find vulnerabilities and required updates" now over `targets`, as a manual task.
    pub async fn run_scan(
        &self,
        targets: pb::ScanTargets,
        actor: &str,
    ) -> Result<pb::RunScanResponse, ScanningServiceError> {
        let task_id = Uuid::now_v7().to_string();
        self.create_task(&task_id, targets, "manual", actor).await?;
        self.run_task(&task_id, actor).await
    }

    /// Creates the scan task `task_id` unless it exists.
    pub async fn create_task(
        &self,
        task_id: &str,
        targets: pb::ScanTargets,
        schedule: &str,
        actor: &str,
    ) -> Result<(), ScanningServiceError> {
        let created = decide_task(
            &ScanTaskState::default(),
            ScanTaskCommand::Create {
                task_id: task_id.to_owned(),
                name: "Find vulnerabilities and required updates".to_owned(),
                targets,
                schedule: schedule.to_owned(),
            },
        )?;
        match self
            .store()
            .append(
                &task_stream(task_id),
                ExpectedVersion::NoStream,
                &to_new_events(&created, actor),
            )
            .await
        {
            Ok(_) | Err(EventStoreError::Conflict { .. }) => Ok(()),
            Err(error) => Err(error.into()),
        }
    }

    /// Runs an existing task once: one `ScanCompleted` per targeted device with an inventory, then
    /// `ScanTaskCompleted`. Replicas racing to start the same run conflict on the task's stream, and
    /// only one runs it.
    pub async fn run_task(
        &self,
        task_id: &str,
        actor: &str,
    ) -> Result<pb::RunScanResponse, ScanningServiceError> {
        self.run_task_when(task_id, actor, |_| true).await
    }

    /// Runs the task if `wanted` still holds once the view has caught up with the task's stream.
    async fn run_task_when(
        &self,
        task_id: &str,
        actor: &str,
        wanted: impl Fn(&TaskEntry) -> bool,
    ) -> Result<pb::RunScanResponse, ScanningServiceError> {
        let stream = task_stream(task_id);
        let version = self.store().stream_version(&stream).await?.unwrap_or(0);
        let reached = |view: &ScanningView| {
            view.tasks
                .get(task_id)
                .is_some_and(|t| t.version >= version)
        };
        self.view.catch_up_until(reached, VIEW_WAIT).await?;
        let (task, devices) = {
            let view = self.view();
            let entry = view.tasks.get(task_id).cloned().unwrap_or_default();
            if !wanted(&entry) {
                // Another replica ran it meanwhile; the view now shows that run.
                return Err(ScanningError::WrongStatus {
                    task: task_id.to_owned(),
                    action: "start",
                    status: "done",
                }
                .into());
            }
            let devices = view.targeted(&entry.state.targets);
            (entry.state, devices)
        };
        let started = decide_task(
            &task,
            ScanTaskCommand::Start {
                task_id: task_id.to_owned(),
                device_ids: devices.clone(),
            },
        )?;
        self.store()
            .append(
                &stream,
                ExpectedVersion::Exact(version),
                &to_new_events(&started, actor),
            )
            .await?;
        let task = started.iter().fold(task, evolve_task);

        // One catalog position for the whole run, however long it takes.
        let (index, catalog_position) = {
            let view = self.view();
            (Arc::clone(&view.index), view.catalog_position)
        };
        // Evaluated and written a chunk at a time, so a run's findings never all sit in memory at
        // once (a device's can be ~100 kB: a 100,000-device fleet would need gigabytes).
        let (mut scanned, mut without_inventory) = (0, 0);
        for chunk in devices.chunks(SCAN_CHUNK) {
            if !self.wait_while_paused(task_id).await? {
                // Stopped while paused (an install needed the device): this run ends here.
                return Ok(pb::RunScanResponse {
                    task_id: task_id.to_owned(),
                    run: task.runs,
                    devices_scanned: scanned,
                    devices_without_inventory: without_inventory,
                });
            }
            let scans = self
                .evaluate(chunk, &index, catalog_position, task_id, task.runs)
                .await?;
            without_inventory += (chunk.len() - scans.len()) as u64;
            scanned += scans.len() as u64;
            let mut tx = self.store().begin().await?;
            for (device_id, event) in scans {
                tx.append(
                    &format!("devicescan-{device_id}"),
                    ExpectedVersion::Any,
                    &[patchbay_bus::stamped(event, actor)],
                )
                .await?;
            }
            tx.commit().await?;
        }
        // Pausing or resuming appended to the task's stream: complete at its current version.
        let version = self.store().stream_version(&stream).await?.unwrap_or(0);
        let completed = decide_task(
            &task,
            ScanTaskCommand::Complete {
                task_id: task_id.to_owned(),
                devices_scanned: scanned,
                devices_without_inventory: without_inventory,
            },
        )?;
        let appended = self
            .store()
            .append(
                &stream,
                ExpectedVersion::Exact(version),
                &to_new_events(&completed, actor),
            )
            .await?;
        // Return once this service's view shows the run as completed. A plain catch-up may stop
        // short on PostgreSQL while a transaction elsewhere holds the global order back.
        let shown = |view: &ScanningView| {
            view.tasks
                .get(task_id)
                .is_some_and(|t| t.version >= appended.stream_version)
        };
        self.view.catch_up_until(shown, VIEW_WAIT).await?;
        Ok(pb::RunScanResponse {
            task_id: task_id.to_owned(),
            run: task.runs,
            devices_scanned: scanned,
            devices_without_inventory: without_inventory,
        })
    }

    /// Runs every scheduled task whose last run finished longer ago than its schedule (daily or
    /// weekly; a task never run is due). Returns the runs made.
    pub async fn run_due_tasks(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Vec<pb::RunScanResponse>, ScanningServiceError> {
        self.catch_up().await?;
        let due: Vec<String> = {
            let view = self.view();
            view.tasks
                .iter()
                .filter(|(_, task)| is_due(task, now))
                .map(|(id, _)| id.clone())
                .collect()
        };
        let mut runs = Vec::new();
        for task_id in due {
            match self
                .run_task_when(&task_id, "service:scanning-scheduler", |task| {
                    is_due(task, now)
                })
                .await
            {
                Ok(run) => runs.push(run),
                // Another replica started this run first.
                Err(ScanningServiceError::Store(EventStoreError::Conflict { .. }))
                | Err(ScanningServiceError::Domain(ScanningError::WrongStatus {
                    action: "start",
                    ..
                })) => {}
                Err(error) => return Err(error),
            }
        }
        Ok(runs)
    }

    /// Waits while the task is paused; false if it was stopped meanwhile.
    async fn wait_while_paused(&self, task_id: &str) -> Result<bool, ScanningServiceError> {
        loop {
            self.catch_up().await?;
            match self.view().tasks.get(task_id).map(|t| t.state.status) {
                Some(TaskStatus::Paused) => {}
                Some(TaskStatus::Stopped) => return Ok(false),
                _ => return Ok(true),
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }

    /// Pauses (`pause = true`) or resumes a scan task.
    pub async fn pause_or_resume(
        &self,
        task_id: &str,
        pause: bool,
        actor: &str,
    ) -> Result<(), ScanningServiceError> {
        let stream = task_stream(task_id);
        let version = self.store().stream_version(&stream).await?.unwrap_or(0);
        let reached = |view: &ScanningView| {
            view.tasks
                .get(task_id)
                .is_some_and(|t| t.version >= version)
        };
        self.view.catch_up_until(reached, VIEW_WAIT).await?;
        let task = self
            .view()
            .tasks
            .get(task_id)
            .map(|t| t.state.clone())
            .unwrap_or_default();
        let task_id = task_id.to_owned();
        let command = if pause {
            ScanTaskCommand::Pause { task_id }
        } else {
            ScanTaskCommand::Resume { task_id }
        };
        let events = decide_task(&task, command)?;
        if !events.is_empty() {
            self.store()
                .append(
                    &stream,
                    ExpectedVersion::Exact(version),
                    &to_new_events(&events, actor),
                )
                .await?;
            self.catch_up().await?;
        }
        Ok(())
    }

    /// Replaces a device's groups.
    pub async fn set_groups(
        &self,
        device_id: &str,
        groups: Vec<String>,
        actor: &str,
    ) -> Result<(), ScanningServiceError> {
        let (state, version) = self.device_state(device_id).await?;
        let events = decide_device(
            &state,
            DeviceCommand::SetGroups {
                device_id: device_id.to_owned(),
                groups,
            },
        )?;
        if !events.is_empty() {
            self.store()
                .append(
                    &device_stream(device_id),
                    ExpectedVersion::Exact(version),
                    &to_new_events(&events, actor),
                )
                .await?;
            self.catch_up().await?;
        }
        Ok(())
    }

    /// Each device's `ScanCompleted` against `index` (devices with no inventory skipped).
    ///
    /// Only taking handles to the inventories holds the view's lock. The evaluation runs on a
    /// blocking thread: under the lock it would block the view's follower, and with it every
    /// inventory report and query waiting behind the follower; on a runtime thread it would block
    /// the other tasks of that thread. The engine reads the reported `Inventory` itself, and the
    /// payloads are encoded on its workers, straight from its borrowed findings (see
    /// [`crate::scan_payload`]).
    async fn evaluate(
        &self,
        devices: &[String],
        index: &Arc<MatchingIndex>,
        catalog_position: u64,
        task_id: &str,
        run: u64,
    ) -> Result<Vec<(String, NewEvent)>, ScanningServiceError> {
        let (ids, inventories) = {
            let view = self.view();
            let mut ids = Vec::new();
            let mut inventories = Vec::new();
            for id in devices {
                if let Some(inventory) = view
                    .devices
                    .get(id)
                    .and_then(|d| d.state.inventory.as_ref())
                {
                    ids.push(id.clone());
                    inventories.push(Arc::clone(inventory));
                }
            }
            (ids, inventories)
        };
        let index = Arc::clone(index);
        let task_id = task_id.to_owned();
        tokio::task::spawn_blocking(move || {
            let events = engine::evaluate_fleet_with(&index, &inventories, |position, findings| {
                let header = ScanHeader {
                    device_id: ids.get(position).map_or("", String::as_str),
                    task_id: &task_id,
                    run,
                    catalog_position,
                };
                scan_completed_event(&header, &findings)
            });
            ids.into_iter().zip(events).collect()
        })
        .await
        .map_err(|error| ScanningServiceError::Evaluation(error.to_string()))
    }

    /// The last scan of each device (every device when `device_ids` is empty).
    pub async fn required(
        &self,
        device_ids: &[String],
    ) -> Result<Vec<pb::DeviceRequired>, ScanningServiceError> {
        self.catch_up().await?;
        let view = self.view();
        let mut out = Vec::new();
        let wanted: Vec<&String> = if device_ids.is_empty() {
            view.devices.keys().collect()
        } else {
            device_ids.iter().collect()
        };
        for id in wanted {
            let entry = view
                .devices
                .get(id.as_str())
                .filter(|e| e.state.device_id.is_some())
                .ok_or_else(|| ScanningError::UnknownDevice(id.clone()))?;
            let scan = entry
                .last_scan
                .as_ref()
                .map(LastScan::decode)
                .transpose()?
                .unwrap_or_default();
            out.push(pb::DeviceRequired {
                device: Some(view.device_summary(id, entry)),
                vulnerabilities: found_vulnerabilities(&scan),
                required: scan.required,
                catalog_position: scan.catalog_position,
            });
        }
        Ok(out)
    }
}

/// A scan's vulnerabilities as the API gives them: each fix by its update id, where the event
/// names it by its position in `required` (a position past the end, which only a damaged payload
/// could hold, names nothing).
fn found_vulnerabilities(scan: &pb::ScanCompleted) -> Vec<pb::FoundVulnerability> {
    scan.vulnerabilities
        .iter()
        .map(|vulnerability| pb::FoundVulnerability {
            cve_id: vulnerability.cve_id.clone(),
            known_exploited: vulnerability.known_exploited,
            fixed_by: vulnerability
                .fixed_by_required
                .iter()
                .filter_map(|&position| scan.required.get(position as usize))
                .map(|required| required.update_id.clone())
                .collect(),
        })
        .collect()
}

/// Whether a scheduled task should run now: daily or weekly, not running or paused, and its last run
/// (if any) finished at least a period ago.
fn is_due(task: &TaskEntry, now: DateTime<Utc>) -> bool {
    let period = match task.state.schedule.as_str() {
        "daily" => chrono::Duration::days(1),
        "weekly" => chrono::Duration::weeks(1),
        _ => return false,
    };
    task.state.status != TaskStatus::Running
        && task.state.status != TaskStatus::Paused
        && task
            .last_completed_at
            .is_none_or(|last| now - last >= period)
}

pub fn task_stream(task_id: &str) -> String {
    format!("scantask-{task_id}")
}

fn device_stream(device_id: &str) -> String {
    format!("device-{device_id}")
}

fn to_new_events(events: &[ScanningEvent], actor: &str) -> Vec<NewEvent> {
    events
        .iter()
        .map(|event| patchbay_bus::stamped(event.to_new_event(), actor))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_a_v2_scan_when_served_then_each_fix_is_named_by_its_update_id() {
        let required = |id: &str| pb::RequiredUpdate {
            update_id: id.into(),
            ..Default::default()
        };
        let scan = pb::ScanCompleted {
            required: vec![required("u-b"), required("u-a")],
            vulnerabilities: vec![
                pb::ScanVulnerability {
                    cve_id: "CVE-2024-1".into(),
                    known_exploited: true,
                    fixed_by_required: vec![1, 0],
                },
                // A position past the end (a damaged payload) names nothing.
                pb::ScanVulnerability {
                    cve_id: "CVE-2024-2".into(),
                    known_exploited: false,
                    fixed_by_required: vec![0, 9],
                },
            ],
            ..Default::default()
        };
        assert_eq!(
            found_vulnerabilities(&scan),
            [
                pb::FoundVulnerability {
                    cve_id: "CVE-2024-1".into(),
                    known_exploited: true,
                    fixed_by: vec!["u-a".into(), "u-b".into()],
                },
                pb::FoundVulnerability {
                    cve_id: "CVE-2024-2".into(),
                    known_exploited: false,
                    fixed_by: vec!["u-b".into()],
                },
            ]
        );
    }
}
