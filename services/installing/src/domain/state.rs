//! What the installing service knows, folded from its own log: the facts it copied from the catalog,
//! approvals and scanning, its tasks and jobs, and what the planner still has to look at.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use patchbay_eventstore::LogPosition;
use patchbay_proto::approvals::v1 as approvals;
use patchbay_proto::catalog::v1 as catalog;
use patchbay_proto::installing::v1 as pb;
use patchbay_proto::scanning::v1 as scanning;
use prost::Message as _;

use crate::events::InstallingEvent;

/// The catalog's current revision of one update.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct UpdateFacts {
    pub revision: u32,
    pub details: catalog::UpdateDetails,
    pub expired: bool,
}

impl UpdateFacts {
    /// The EULA the current revision needs: (id, text digest).
    pub fn eula(&self) -> Option<(&str, &str)> {
        self.details
            .eula
            .as_ref()
            .filter(|eula| !eula.eula_id.is_empty())
            .map(|eula| (eula.eula_id.as_str(), eula.text_sha256.as_str()))
    }
}

/// One required update of a device's latest scan.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Requirement {
    pub package: String,
    pub version: String,
    pub architecture: String,
}

#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DeviceFacts {
    pub hostname: String,
    pub groups: Vec<String>,
    pub credential_sha256: String,
    /// By update id, from the latest `ScanCompleted`.
    pub required: BTreeMap<String, Requirement>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum EulaDecision {
    Accepted,
    Declined,
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub enum JobStatus {
    Queued,
    Dispatched,
    Succeeded,
    Failed,
    RebootRequired,
    Cancelled,
}

impl JobStatus {
    /// Finished: the job will not change any more.
    pub fn is_final(self) -> bool {
        !matches!(self, JobStatus::Queued | JobStatus::Dispatched)
    }

    /// The update is on the device (or off it, for an uninstall).
    pub fn is_done(self) -> bool {
        matches!(self, JobStatus::Succeeded | JobStatus::RebootRequired)
    }

    pub fn to_proto(self) -> pb::JobStatus {
        match self {
            JobStatus::Queued => pb::JobStatus::Queued,
            JobStatus::Dispatched => pb::JobStatus::Dispatched,
            JobStatus::Succeeded => pb::JobStatus::Succeeded,
            JobStatus::Failed => pb::JobStatus::Failed,
            JobStatus::RebootRequired => pb::JobStatus::RebootRequired,
            JobStatus::Cancelled => pb::JobStatus::Cancelled,
        }
    }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct JobEntry {
    pub job: pb::Job,
    pub status: JobStatus,
    pub reason: String,
    pub queued_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    /// Version of the job's stream.
    pub version: u64,
    /// Global position of the queueing event: the order jobs are dispatched in.
    pub queued_position: u64,
    /// W3C trace context of the queueing event, so dispatching the job continues its trace.
    pub traceparent: Option<String>,
    pub tracestate: Option<String>,
}

impl JobEntry {
    pub fn kind(&self) -> pb::JobKind {
        pb::JobKind::try_from(self.job.kind).unwrap_or(pb::JobKind::Install)
    }
}

#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TaskEntry {
    pub created: pb::InstallTaskCreated,
    /// Version of the task's stream.
    pub version: u64,
    pub runs: u64,
    pub run_open: bool,
    /// Jobs of the open run.
    pub run_jobs: BTreeSet<String>,
    pub last_run_status: String,
    pub last_run_at: Option<DateTime<Utc>>,
}

/// What made the planner look at something.
pub type Trigger = &'static str;

/// The event behind a decision: the planner's events name it as their cause and carry on its
/// correlation and trace, so an audit trail and a trace lead from a job back to the scan or approval.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Cause {
    pub event_id: uuid::Uuid,
    pub correlation_id: uuid::Uuid,
    pub traceparent: Option<String>,
    pub tracestate: Option<String>,
}

/// What changed since the planner's last step, with the position of the change.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Dirty {
    #[serde(deserialize_with = "triggers::deserialize")]
    pub devices: BTreeMap<String, (LogPosition, Trigger)>,
    #[serde(deserialize_with = "triggers::deserialize")]
    pub updates: BTreeMap<String, (LogPosition, Trigger)>,
    /// Tasks whose every covered device must be planned (created, run on demand).
    #[serde(deserialize_with = "triggers::deserialize")]
    pub tasks: BTreeMap<String, (LogPosition, Trigger)>,
    /// Tasks whose open run may have finished.
    pub runs: BTreeMap<String, LogPosition>,
    /// The events at the positions above, by position.
    pub causes: BTreeMap<LogPosition, Cause>,
}

impl Dirty {
    pub fn is_empty(&self) -> bool {
        self.devices.is_empty()
            && self.updates.is_empty()
            && self.tasks.is_empty()
            && self.runs.is_empty()
    }

    fn forget_through(&mut self, position: LogPosition) {
        self.devices.retain(|_, (at, _)| *at > position);
        self.updates.retain(|_, (at, _)| *at > position);
        self.tasks.retain(|_, (at, _)| *at > position);
        self.runs.retain(|_, at| *at > position);
        self.causes = self.causes.split_off(&LogPosition {
            commit_id: position.commit_id,
            global_position: position.global_position + 1,
        });
    }
}

/// Triggers are the names of the events that set them; a snapshot stores the name and reading it
/// back finds the same static name.
mod triggers {
    use std::collections::BTreeMap;

    use patchbay_eventstore::LogPosition;
    use serde::Deserialize as _;

    use super::Trigger;

    const KNOWN: &[Trigger] = &[
        "ApprovalReset",
        "DeviceGroupsSet",
        "EulaAccepted",
        "EulaDeclined",
        "InstallJobFailed",
        "RunRequested",
        "ScanCompleted",
        "TaskCreated",
        "UpdateApproved",
        "UpdateDeclined",
        "UpdateExpired",
        "UpdatePublished",
        "UpdateRevised",
    ];

    pub(super) fn deserialize<'de, D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> Result<BTreeMap<String, (LogPosition, Trigger)>, D::Error> {
        BTreeMap::<String, (LogPosition, String)>::deserialize(deserializer)?
            .into_iter()
            .map(|(key, (position, name))| {
                KNOWN
                    .iter()
                    .find(|known| **known == name)
                    .map(|known| (key, (position, *known)))
                    .ok_or_else(|| {
                        serde::de::Error::custom(format!("unknown planner trigger {name:?}"))
                    })
            })
            .collect()
    }

    #[cfg(test)]
    mod tests {
        /// Every trigger the state sets must be known, or its snapshots would not read back.
        #[test]
        fn every_trigger_literal_is_known() {
            // Triggers are passed as `(position, "Name")` or as a `"Name",` argument line.
            let source = include_str!("state.rs");
            let mut found = 0;
            for line in source.lines().map(str::trim) {
                let name = if line.starts_with("//") {
                    continue;
                } else if let Some(start) = line.find("(position, \"") {
                    let rest = &line[start + "(position, \"".len()..];
                    &rest[..rest.find('"').unwrap_or(0)]
                } else if line.starts_with('"') && line.ends_with("\",") && line.len() > 3 {
                    &line[1..line.len() - 2]
                } else {
                    continue;
                };
                found += 1;
                assert!(super::KNOWN.contains(&name), "{name} is not in KNOWN");
            }
            assert!(
                found >= super::KNOWN.len(),
                "only {found} trigger literals found"
            );
        }
    }
}

/// A job's key: one line of work per device, update and kind.
pub type JobKey = (String, String, i32);

#[derive(Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct InstallingState {
    pub updates: HashMap<String, UpdateFacts>,
    pub updates_by_eula: HashMap<String, BTreeSet<String>>,
    pub approvals: HashMap<String, approvals::ApprovalStatus>,
    pub eulas: HashMap<(String, String), EulaDecision>,
    pub devices: BTreeMap<String, DeviceFacts>,
    /// Update id → devices whose latest scan requires it.
    pub requiring: HashMap<String, BTreeSet<String>>,
    pub tasks: BTreeMap<String, TaskEntry>,
    pub jobs: HashMap<String, JobEntry>,
    /// The latest job per device, update and kind.
    pub latest_job: HashMap<JobKey, String>,
    /// Unfinished jobs per device, in queueing order.
    pub open_jobs: HashMap<String, BTreeMap<u64, String>>,
    pub planned_through: LogPosition,
    pub planner_version: u64,
    pub dirty: Dirty,
}

/// A stored fact that does not decode.
#[derive(Debug, thiserror::Error)]
#[error("{service} {event_type} copied into the installing log does not decode: {source}")]
pub struct FactDecodeError {
    pub service: String,
    pub event_type: String,
    pub source: prost::DecodeError,
}

impl InstallingState {
    /// Folds one event of the log, recorded at `position` on `recorded_at`; `cause` is the event
    /// itself as a cause for what the planner decides on it.
    pub fn apply(
        &mut self,
        event: &InstallingEvent,
        position: LogPosition,
        stream_version: u64,
        recorded_at: DateTime<Utc>,
        cause: Option<Cause>,
    ) -> Result<(), FactDecodeError> {
        let trace = cause
            .as_ref()
            .map(|c| (c.traceparent.clone(), c.tracestate.clone()))
            .unwrap_or_default();
        if let Some(cause) = cause
            && matches!(
                event,
                InstallingEvent::ForeignEventObserved(_)
                    | InstallingEvent::InstallTaskCreated(_)
                    | InstallingEvent::InstallTaskRunRequested(_)
                    | InstallingEvent::InstallJobFailed(_)
            )
        {
            self.dirty.causes.insert(position, cause);
        }
        match event {
            InstallingEvent::InstallTaskCreated(created) => {
                let task = self.tasks.entry(created.task_id.clone()).or_default();
                task.created = created.clone();
                task.version = stream_version;
                self.dirty
                    .tasks
                    .insert(created.task_id.clone(), (position, "TaskCreated"));
            }
            InstallingEvent::InstallTaskRunRequested(requested) => {
                let task = self.tasks.entry(requested.task_id.clone()).or_default();
                task.version = stream_version;
                task.runs = requested.run;
                task.run_open = true;
                task.run_jobs.clear();
                task.last_run_status = "Running".to_owned();
                task.last_run_at = Some(recorded_at);
                if matches!(requested.trigger.as_str(), ON_DEMAND | SCHEDULE) {
                    self.dirty
                        .tasks
                        .insert(requested.task_id.clone(), (position, "RunRequested"));
                    self.dirty.runs.insert(requested.task_id.clone(), position);
                }
            }
            InstallingEvent::InstallTaskRunCompleted(completed) => {
                let task = self.tasks.entry(completed.task_id.clone()).or_default();
                task.version = stream_version;
                task.run_open = false;
                task.run_jobs.clear();
                task.last_run_status = completed.status.clone();
                task.last_run_at = Some(recorded_at);
            }
            InstallingEvent::InstallJobQueued(pb::InstallJobQueued { job: Some(job) })
            | InstallingEvent::UninstallJobQueued(pb::UninstallJobQueued { job: Some(job) }) => {
                self.queue_job(job, position, stream_version, recorded_at, trace);
            }
            InstallingEvent::InstallJobQueued(_) | InstallingEvent::UninstallJobQueued(_) => {}
            InstallingEvent::InstallJobDispatched(dispatched) => {
                if let Some(entry) = self.jobs.get_mut(&dispatched.job_id) {
                    entry.status = JobStatus::Dispatched;
                    entry.version = stream_version;
                }
            }
            InstallingEvent::InstallJobSucceeded(done) => {
                self.finish_job(
                    &done.job_id,
                    JobStatus::Succeeded,
                    "",
                    position,
                    stream_version,
                    recorded_at,
                );
            }
            InstallingEvent::InstallJobRebootRequired(done) => {
                self.finish_job(
                    &done.job_id,
                    JobStatus::RebootRequired,
                    "",
                    position,
                    stream_version,
                    recorded_at,
                );
            }
            InstallingEvent::InstallJobFailed(failed) => {
                self.finish_job(
                    &failed.job_id,
                    JobStatus::Failed,
                    &failed.reason,
                    position,
                    stream_version,
                    recorded_at,
                );
                // A retry may be due.
                self.dirty
                    .devices
                    .insert(failed.device_id.clone(), (position, "InstallJobFailed"));
            }
            InstallingEvent::InstallJobCancelled(cancelled) => {
                self.finish_job(
                    &cancelled.job_id,
                    JobStatus::Cancelled,
                    &cancelled.reason,
                    position,
                    stream_version,
                    recorded_at,
                );
            }
            InstallingEvent::PlannedThrough(planned) => {
                let through = LogPosition {
                    commit_id: planned.commit_id,
                    global_position: planned.position,
                };
                self.planned_through = self.planned_through.max(through);
                self.planner_version = stream_version;
                self.dirty.forget_through(self.planned_through);
            }
            InstallingEvent::ForeignEventObserved(observed) => {
                self.observe(observed, position)
                    .map_err(|source| FactDecodeError {
                        service: observed.service.clone(),
                        event_type: observed.event_type.clone(),
                        source,
                    })?;
            }
        }
        Ok(())
    }

    fn queue_job(
        &mut self,
        job: &pb::Job,
        position: LogPosition,
        stream_version: u64,
        recorded_at: DateTime<Utc>,
        (traceparent, tracestate): (Option<String>, Option<String>),
    ) {
        let key = (job.device_id.clone(), job.update_id.clone(), job.kind);
        self.latest_job.insert(key, job.job_id.clone());
        self.open_jobs
            .entry(job.device_id.clone())
            .or_default()
            .insert(position.global_position, job.job_id.clone());
        if let Some(task) = self.tasks.get_mut(&job.task_id)
            && task.run_open
            && task.runs == job.run
        {
            task.run_jobs.insert(job.job_id.clone());
        }
        self.jobs.insert(
            job.job_id.clone(),
            JobEntry {
                job: job.clone(),
                status: JobStatus::Queued,
                reason: String::new(),
                queued_at: recorded_at,
                finished_at: None,
                version: stream_version,
                queued_position: position.global_position,
                traceparent,
                tracestate,
            },
        );
    }

    fn finish_job(
        &mut self,
        job_id: &str,
        status: JobStatus,
        reason: &str,
        position: LogPosition,
        stream_version: u64,
        recorded_at: DateTime<Utc>,
    ) {
        let Some(entry) = self.jobs.get_mut(job_id) else {
            return;
        };
        entry.status = status;
        entry.reason = reason.to_owned();
        entry.finished_at = Some(recorded_at);
        entry.version = stream_version;
        if let Some(open) = self.open_jobs.get_mut(&entry.job.device_id) {
            open.remove(&entry.queued_position);
        }
        self.dirty.runs.insert(entry.job.task_id.clone(), position);
    }

    fn observe(
        &mut self,
        observed: &pb::ForeignEventObserved,
        position: LogPosition,
    ) -> Result<(), prost::DecodeError> {
        let payload = observed.payload.as_slice();
        match (observed.service.as_str(), observed.event_type.as_str()) {
            ("catalog", "UpdatePublished") => {
                let published = catalog::UpdatePublished::decode(payload)?;
                self.set_update(
                    published.update_id,
                    1,
                    published.details,
                    position,
                    "UpdatePublished",
                );
            }
            ("catalog", "UpdateRevised") => {
                let revised = catalog::UpdateRevised::decode(payload)?;
                self.set_update(
                    revised.update_id,
                    revised.revision,
                    revised.details,
                    position,
                    "UpdateRevised",
                );
            }
            ("catalog", "UpdateExpired") => {
                let expired = catalog::UpdateExpired::decode(payload)?;
                if let Some(update) = self.updates.get_mut(&expired.update_id) {
                    update.expired = true;
                }
                self.dirty
                    .updates
                    .insert(expired.update_id, (position, "UpdateExpired"));
            }
            ("approvals", "UpdateApproved") => {
                let approved = approvals::UpdateApproved::decode(payload)?;
                self.set_approval(
                    approved.update_id,
                    approvals::ApprovalStatus::Approved,
                    position,
                    "UpdateApproved",
                );
            }
            ("approvals", "UpdateDeclined") => {
                let declined = approvals::UpdateDeclined::decode(payload)?;
                self.set_approval(
                    declined.update_id,
                    approvals::ApprovalStatus::Declined,
                    position,
                    "UpdateDeclined",
                );
            }
            ("approvals", "ApprovalReset") => {
                let reset = approvals::ApprovalReset::decode(payload)?;
                self.set_approval(
                    reset.update_id,
                    approvals::ApprovalStatus::Undefined,
                    position,
                    "ApprovalReset",
                );
            }
            ("approvals", "EulaAccepted") => {
                let accepted = approvals::EulaAccepted::decode(payload)?;
                self.set_eula(
                    accepted.eula_id,
                    accepted.text_sha256,
                    EulaDecision::Accepted,
                    position,
                    "EulaAccepted",
                );
            }
            ("approvals", "EulaDeclined") => {
                let declined = approvals::EulaDeclined::decode(payload)?;
                self.set_eula(
                    declined.eula_id,
                    declined.text_sha256,
                    EulaDecision::Declined,
                    position,
                    "EulaDeclined",
                );
            }
            ("scanning", "DeviceRegistered") => {
                let registered = scanning::DeviceRegistered::decode(payload)?;
                let device = self.devices.entry(registered.device_id).or_default();
                device.hostname = registered.hostname;
                device.credential_sha256 = registered.credential_sha256;
                device.groups = registered.groups;
            }
            ("scanning", "DeviceGroupsSet") => {
                let set = scanning::DeviceGroupsSet::decode(payload)?;
                self.devices
                    .entry(set.device_id.clone())
                    .or_default()
                    .groups = set.groups;
                self.dirty
                    .devices
                    .insert(set.device_id, (position, "DeviceGroupsSet"));
            }
            ("scanning", "ScanCompleted") => {
                let scan = scanning::ScanCompleted::decode(payload)?;
                self.set_required(scan, position);
            }
            // Other events of those services say nothing the planner needs.
            _ => {}
        }
        Ok(())
    }

    fn set_update(
        &mut self,
        update_id: String,
        revision: u32,
        details: Option<catalog::UpdateDetails>,
        position: LogPosition,
        trigger: Trigger,
    ) {
        let details = details.unwrap_or_default();
        if let Some(eula) = details.eula.as_ref().filter(|e| !e.eula_id.is_empty()) {
            self.updates_by_eula
                .entry(eula.eula_id.clone())
                .or_default()
                .insert(update_id.clone());
        }
        self.updates.insert(
            update_id.clone(),
            UpdateFacts {
                revision,
                details,
                expired: false,
            },
        );
        self.dirty.updates.insert(update_id, (position, trigger));
    }

    fn set_approval(
        &mut self,
        update_id: String,
        status: approvals::ApprovalStatus,
        position: LogPosition,
        trigger: Trigger,
    ) {
        self.approvals.insert(update_id.clone(), status);
        self.dirty.updates.insert(update_id, (position, trigger));
    }

    fn set_eula(
        &mut self,
        eula_id: String,
        digest: String,
        decision: EulaDecision,
        position: LogPosition,
        trigger: Trigger,
    ) {
        if let Some(updates) = self.updates_by_eula.get(&eula_id) {
            for update_id in updates {
                self.dirty
                    .updates
                    .insert(update_id.clone(), (position, trigger));
            }
        }
        self.eulas.insert((eula_id, digest), decision);
    }

    fn set_required(&mut self, scan: scanning::ScanCompleted, position: LogPosition) {
        let device = self.devices.entry(scan.device_id.clone()).or_default();
        for update_id in device.required.keys() {
            if let Some(devices) = self.requiring.get_mut(update_id) {
                devices.remove(&scan.device_id);
            }
        }
        device.required = scan
            .required
            .into_iter()
            .map(|required| {
                (
                    required.update_id,
                    Requirement {
                        package: required.package_or_product,
                        version: required.required_version,
                        architecture: required.architecture,
                    },
                )
            })
            .collect();
        for update_id in device.required.keys() {
            self.requiring
                .entry(update_id.clone())
                .or_default()
                .insert(scan.device_id.clone());
        }
        self.dirty
            .devices
            .insert(scan.device_id, (position, "ScanCompleted"));
    }

    /// The job of `key` that was queued last.
    pub fn latest(&self, device_id: &str, update_id: &str, kind: pb::JobKind) -> Option<&JobEntry> {
        self.latest_job
            .get(&(device_id.to_owned(), update_id.to_owned(), kind as i32))
            .and_then(|job_id| self.jobs.get(job_id))
    }
}

/// `InstallTaskRunRequested.trigger` of a run an administrator asked for.
pub const ON_DEMAND: &str = "on demand";
/// `InstallTaskRunRequested.trigger` of a run the schedule started.
pub const SCHEDULE: &str = "schedule";
