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

/// The schema version the scanning service writes `event_type` at, and the only one its decoder
/// reads: older payloads are upgraded on read by the store's upcasters ([`crate::upcast`]).
pub fn schema_version(event_type: &str) -> u32 {
    match event_type {
        // v2: the schedule became an enum.
        crate::upcast::SCAN_TASK_CREATED => 2,
        // v2: vulnerabilities name their fixes by position in `required`.
        crate::upcast::SCAN_COMPLETED => 2,
        _ => 1,
    }
}

/// A stored scanning event this Patchbay cannot read.
pub type DecodeError = patchbay_proto::EventDecodeError;

impl ScanningEvent {
    /// The event ready to append (fresh event id; the caller adds actor, causation, trace context).
    pub fn to_new_event(&self) -> NewEvent {
        NewEvent::new(
            self.event_type(),
            schema_version(self.event_type()),
            self.encode_payload(),
        )
    }

    /// Decodes an event at its type's current schema version; an older one must have been upcast
    /// (see [`crate::upcast::upcasters`]), or this refuses it rather than misread it.
    pub fn decode(
        event_type: &str,
        schema_version: u32,
        payload: &[u8],
    ) -> Result<Self, DecodeError> {
        Self::decode_versioned(
            event_type,
            schema_version,
            self::schema_version(event_type),
            payload,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use patchbay_proto::scanning::v1 as pb;

    #[test]
    fn scan_task_created_is_written_at_v2_and_other_events_at_v1() {
        let created = ScanningEvent::ScanTaskCreated(pb::ScanTaskCreated::default());
        let paused = ScanningEvent::ScanTaskPaused(pb::ScanTaskPaused::default());
        assert_eq!(
            (
                created.to_new_event().schema_version,
                paused.to_new_event().schema_version
            ),
            (2, 1)
        );
    }

    #[test]
    fn a_v1_scan_task_created_that_was_not_upcast_is_refused_not_misread() {
        let error = ScanningEvent::decode("ScanTaskCreated", 1, &[]).unwrap_err();
        assert!(matches!(error, DecodeError::NotUpcast { .. }), "{error}");
        assert!(error.to_string().contains("upcasters"), "{error}");
    }
}
