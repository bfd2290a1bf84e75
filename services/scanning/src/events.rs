//! The scanning service's events and their encoding.

use patchbay_eventstore::NewEvent;
use patchbay_proto::scanning::v1 as pb;

patchbay_proto::event_enum! {
    /// Every event the scanning service writes to its log.
    pub enum ScanningEvent {
        DeviceRegistered(pb::DeviceRegistered),
        InventoryReported(pb::InventoryReported),
        DeviceGroupsSet(pb::DeviceGroupsSet),
        ScanTaskCreated(pb::ScanTaskCreated),
        ScanStarted(pb::ScanStarted),
        ScanTaskPaused(pb::ScanTaskPaused),
        ScanTaskResumed(pb::ScanTaskResumed),
        ScanTaskStopped(pb::ScanTaskStopped),
        ScanCompleted(pb::ScanCompleted),
        ScanTaskCompleted(pb::ScanTaskCompleted),
        CatalogEventObserved(pb::CatalogEventObserved),
    }
}

pub const SCHEMA_VERSION: u32 = 1;

/// A stored scanning event this Patchbay cannot read.
pub type DecodeError = patchbay_proto::EventDecodeError;

impl ScanningEvent {
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
