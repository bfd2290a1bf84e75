//! The installing service's events and their encoding.

use patchbay_eventstore::NewEvent;
use patchbay_proto::installing::v1 as pb;

patchbay_proto::event_enum! {
    /// Every event the installing service writes to its log.
    pub enum InstallingEvent {
        InstallTaskCreated(pb::InstallTaskCreated),
        InstallTaskRunRequested(pb::InstallTaskRunRequested),
        InstallTaskRunCompleted(pb::InstallTaskRunCompleted),
        InstallJobQueued(pb::InstallJobQueued),
        UninstallJobQueued(pb::UninstallJobQueued),
        InstallJobDispatched(pb::InstallJobDispatched),
        InstallJobSucceeded(pb::InstallJobSucceeded),
        InstallJobFailed(pb::InstallJobFailed),
        InstallJobRebootRequired(pb::InstallJobRebootRequired),
        InstallJobCancelled(pb::InstallJobCancelled),
        PlannedThrough(pb::PlannedThrough),
        ForeignEventObserved(pb::ForeignEventObserved),
    }
}

pub const SCHEMA_VERSION: u32 = 1;

/// A stored installing event this Patchbay cannot read.
pub type DecodeError = patchbay_proto::EventDecodeError;

impl InstallingEvent {
    /// The event ready to append (fresh event id; the caller adds actor, causation, trace context).
    pub fn to_new_event(&self) -> NewEvent {
        NewEvent::new(self.event_type(), SCHEMA_VERSION, self.encode_payload())
    }

    pub fn decode(
        event_type: &str,
        schema_version: u32,
        payload: &[u8],
    ) -> Result<Self, DecodeError> {
        Self::decode_versioned(event_type, schema_version, SCHEMA_VERSION, payload)
    }
}

/// Stream of one install task.
pub fn task_stream(task_id: &str) -> String {
    format!("installtask-{task_id}")
}

/// Stream of one job (install or uninstall).
pub fn job_stream(job_id: &str) -> String {
    format!("job-{job_id}")
}

/// The planner's stream: one `PlannedThrough` per planning step, appended at an exact version so
/// that replicas planning at once cannot both commit.
pub const PLANNER_STREAM: &str = "planner";

/// Stream holding the copies of another service's events.
pub fn facts_stream(service: &str) -> String {
    format!("facts-{service}")
}
